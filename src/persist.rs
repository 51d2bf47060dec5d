//! What the manager keeps in the store, and how it reads it back after a restart.
//!
//! The rule: a reply that tells a caller something (a job id, a result, a history
//! entry, a closed session) goes out only after the transaction holding it
//! committed. So the session task writes a finished command's history entry and
//! session row, or a finished job's row, and awaits the commit before publishing
//! them in memory and answering. A job's rows are queued while its lock is held, so
//! they reach the store in the order of its transitions; `processing` is committed
//! before Blender sees the command, so nothing runs twice after a crash. A batch's
//! progress is not written step by step (its commands' history entries are). With
//! `--db :memory:` the store is disabled: every write resolves at once, and the rows
//! are not even built (the hot path of every command would otherwise serialise a
//! session row, a history row and job rows only to drop them).

use serde_json::Value;

use crate::jobs::job::{Envelope, JobState, Progress};
use crate::jobs::{Job, JobKind, JobStatus};
use crate::raw_json::RawJson;
use crate::session::history::HistoryEntry;
use crate::session::{Session, SessionHandle, Snapshot};
use crate::store::{
    Committed, HistoryRow, JobRow, SessionRow, SnapshotRow, Store, StoreError, WriteOp,
};

/// The store, with the conversions between memory and rows.
#[derive(Clone)]
pub struct Persist {
    store: Store,
}

fn text<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn raw_text(v: &RawJson) -> String {
    String::from_utf8_lossy(v.bytes()).into_owned()
}

fn raw_of(s: &str) -> RawJson {
    RawJson::parse(bytes::Bytes::copy_from_slice(s.as_bytes())).unwrap_or_else(|_| RawJson::null())
}

impl Persist {
    pub fn new(store: Store) -> Self {
        Persist { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether rows are kept at all (`false` for `--db :memory:`): callers skip
    /// building rows that would be dropped.
    fn keeps_rows(&self) -> bool {
        self.store.is_persistent()
    }

    /// Commits and reports failure to the caller (who then refuses to answer "ok").
    async fn try_commit(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.store.write_all(ops).await
    }

    /// Commits something that has already happened and cannot be taken back (a
    /// command Blender ran): tries a few times, then logs loudly and goes on.
    async fn commit(&self, ops: Vec<WriteOp>) {
        if !self.keeps_rows() {
            return;
        }
        let mut delay = std::time::Duration::from_millis(50);
        for attempt in 1..=4 {
            match self.store.write_all(ops.clone()).await {
                Ok(()) => return,
                Err(e) if attempt < 4 => {
                    tracing::warn!(error = %e, attempt, "store write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    tracing::error!(error = %e, "store write failed; giving up on this record")
                }
            }
        }
    }

    /// Awaits a queued job row; a failure is logged (the job's outcome cannot be
    /// taken back).
    pub async fn settle(&self, committed: Committed, job_id: &str) {
        if let Err(e) = committed.await {
            tracing::error!(job = %job_id, error = %e, "could not record the job's state");
        }
    }

    pub fn session_row(session: &Session) -> SessionRow {
        let d = session.data.lock();
        SessionRow {
            id: session.id.clone(),
            created_at: session.created_at,
            backend: session.backend.address.to_string(),
            owner: text(&session.owner).trim_matches('"').to_string(),
            metadata: text(&session.metadata),
            state: text(&d.state),
            command_count: d.command_count as i64,
            next_seq: d.next_seq as i64,
            next_snapshot: d.next_snapshot as i64,
            last_activity: d.last_activity_unix,
        }
    }

    pub fn history_row(session_id: &str, e: &HistoryEntry) -> HistoryRow {
        HistoryRow {
            session_id: session_id.to_string(),
            seq: e.seq as i64,
            command: e.command.clone(),
            params: raw_text(&e.params),
            status: e.status.as_str().to_string(),
            result: e.result.as_ref().map(raw_text),
            error: e.error.as_ref().map(text),
            timestamp: e.timestamp,
            duration: e.duration,
            job_id: e.job_id.clone(),
        }
    }

    pub fn history_entry(row: &HistoryRow) -> HistoryEntry {
        use crate::session::CommandStatus as S;
        HistoryEntry {
            seq: row.seq as u64,
            command: row.command.clone(),
            params: raw_of(&row.params),
            status: match row.status.as_str() {
                "success" => S::Success,
                "timeout" => S::Timeout,
                "disconnected" => S::Disconnected,
                "cancelled" => S::Cancelled,
                _ => S::Error,
            },
            result: row.result.as_deref().map(raw_of),
            error: row
                .error
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok()),
            timestamp: row.timestamp,
            duration: row.duration,
            job_id: row.job_id.clone(),
        }
    }

    pub fn snapshot_row(s: &Snapshot) -> SnapshotRow {
        SnapshotRow {
            session_id: s.session_id.clone(),
            snapshot_id: s.snapshot_id as i64,
            timestamp: s.timestamp,
            scene: raw_text(&s.scene),
            state: text(&s.state),
        }
    }

    pub fn snapshot(row: &SnapshotRow) -> Snapshot {
        Snapshot {
            snapshot_id: row.snapshot_id as u64,
            session_id: row.session_id.clone(),
            timestamp: row.timestamp,
            scene: raw_of(&row.scene),
            state: serde_json::from_str(&row.state).unwrap_or_default(),
        }
    }

    /// A job's row from its locked state; `finished` overrides the in-memory
    /// outcome (it is written before it is published).
    pub(crate) fn job_row(job: &Job, st: &JobState, finished: Option<&Finished>) -> JobRow {
        let (status, result, error, finished_at) = match finished {
            Some(f) => (f.status, f.result.clone(), f.error.clone(), Some(f.at)),
            None => (
                st.status,
                st.result.clone(),
                st.error.clone(),
                st.finished_at,
            ),
        };
        let results = matches!(job.kind, JobKind::Batch { .. }).then(|| {
            let items: Vec<String> = st.results.iter().map(raw_text).collect();
            format!("[{}]", items.join(","))
        });
        let kind = match job.kind {
            JobKind::Single { .. } => "single",
            JobKind::Batch { .. } => "batch",
        };
        JobRow {
            id: job.id.clone(),
            ord: job.ord as i64,
            session_id: job.session_id.clone(),
            status: status.as_str().to_string(),
            job_type: job.job_type().to_string(),
            // The kind is stored explicitly: a single command may be called "batch".
            params: text(&serde_json::json!({"kind": kind, "params": job.params()})),
            created_at: job.created_at,
            started_at: st.started_at,
            finished_at,
            progress: text(&st.progress),
            result: result.as_ref().map(|e| raw_text(&e.to_raw())),
            error: error.as_ref().map(text),
            results,
            metadata: text(&job.metadata),
        }
    }

    /// Queues a job's row now (the caller holds the job's lock, so rows reach the
    /// store in the order of the job's transitions); await the result to know it
    /// committed.
    pub(crate) fn queue_job_row(
        &self,
        job: &Job,
        st: &JobState,
        finished: Option<&Finished>,
    ) -> Committed {
        if !self.keeps_rows() {
            return Committed::nothing_to_write();
        }
        self.store
            .write(WriteOp::UpsertJob(Self::job_row(job, st, finished)))
    }

    /// A restored job's kind and state.
    pub(crate) fn job_parts(row: &JobRow) -> (JobKind, JobState) {
        let stored: Value = serde_json::from_str(&row.params).unwrap_or(Value::Null);
        // Rows written before the kind was stored hold the params directly.
        let (is_batch, params) = match stored.get("kind") {
            Some(kind) => (kind == "batch", stored["params"].clone()),
            None => (row.job_type == "batch", stored),
        };
        let kind = if is_batch {
            let commands = params["commands"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            (
                                c["command_type"].as_str().unwrap_or_default().to_string(),
                                Some(RawJson::from_value(&c["params"])),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            JobKind::Batch {
                commands,
                stop_on_error: params["stop_on_error"].as_bool().unwrap_or(false),
            }
        } else {
            JobKind::Single {
                command_type: row.job_type.clone(),
                params: Some(RawJson::from_value(&params)),
            }
        };
        let results = row
            .results
            .as_deref()
            .and_then(|r| serde_json::from_str::<Vec<Box<serde_json::value::RawValue>>>(r).ok())
            .map(|v| v.iter().map(|r| raw_of(r.get())).collect())
            .unwrap_or_default();
        let state = JobState {
            status: JobStatus::parse(&row.status).unwrap_or(JobStatus::Failed),
            started_at: row.started_at,
            finished_at: row.finished_at,
            finished_instant: None,
            progress: serde_json::from_str::<Progress>(&row.progress).unwrap_or_default(),
            result: row.result.as_deref().map(|r| Envelope::Whole(raw_of(r))),
            error: row
                .error
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok()),
            results,
            outcome: None,
            cancel_requested: false,
        };
        (kind, state)
    }

    /// A session was created (answer after commit).
    pub async fn session_created(&self, handle: &SessionHandle) -> Result<(), StoreError> {
        if !self.keeps_rows() {
            return Ok(());
        }
        let row = Self::session_row(&handle.session);
        self.try_commit(vec![WriteOp::UpsertSession(row)]).await
    }

    /// A session row built by the caller (state about to change): answer after commit.
    pub async fn session_row_changed(&self, row: SessionRow) -> Result<(), StoreError> {
        self.try_commit(vec![WriteOp::UpsertSession(row)]).await
    }

    /// A command finished: its history entry and the session's counters and state
    /// (the session row is built here, from the session as it is now).
    pub async fn command_recorded(&self, session: &Session, entry: &HistoryEntry) {
        if !self.keeps_rows() {
            return;
        }
        let row = Self::session_row(session);
        self.commit(vec![
            WriteOp::History(Self::history_row(&row.id, entry)),
            WriteOp::UpsertSession(row),
        ])
        .await
    }

    pub async fn snapshot_taken(&self, snapshot: &Snapshot, row: SessionRow) {
        self.commit(vec![
            WriteOp::Snapshot(Self::snapshot_row(snapshot)),
            WriteOp::UpsertSession(row),
        ])
        .await
    }

    pub async fn session_closed(&self, id: &str, reason: &str) {
        self.commit(vec![WriteOp::CloseSession {
            id: id.to_string(),
            closed_at: crate::clock::unix_now(),
            reason: reason.to_string(),
        }])
        .await
    }

    /// A job's current row, committed (a job created, or cancelled before it was
    /// ever queued).
    pub async fn job_saved(&self, job: &Job) -> Result<(), StoreError> {
        let committed = {
            let st = job.state.lock();
            self.queue_job_row(job, &st, None)
        };
        committed.await
    }

    pub async fn jobs_pruned(&self, ids: Vec<String>) {
        if !ids.is_empty() {
            self.commit(vec![WriteOp::DeleteJobs(ids)]).await
        }
    }

    pub async fn prune_closed_sessions(&self, closed_before: f64) {
        self.commit(vec![WriteOp::PruneClosedSessions { closed_before }])
            .await
    }
}

/// A job's final values, written before they are published.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: JobStatus,
    pub result: Option<Envelope>,
    pub error: Option<Value>,
    pub at: f64,
}
