//! One job: a command (or a batch of commands) of a session, with its status,
//! timestamps, progress and outcome.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::unix_now;
use crate::error::ManagerError;
use crate::raw_json::RawJson;
use crate::session::CommandOutcome;

/// Where a job is in its life. `completed`, `failed` and `cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "processing" => JobStatus::Processing,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }
}

/// What a job runs.
#[derive(Debug, Clone)]
pub enum JobKind {
    Single {
        command_type: String,
        params: Option<RawJson>,
    },
    Batch {
        commands: Vec<(String, Option<RawJson>)>,
        stop_on_error: bool,
    },
}

/// `{"current", "total", "message"}`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Progress {
    pub current: usize,
    pub total: usize,
    pub message: Option<String>,
}

#[derive(Debug)]
pub(crate) struct JobState {
    pub status: JobStatus,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    /// When it finished, on tokio's clock (for the TTL).
    pub finished_instant: Option<Instant>,
    pub progress: Progress,
    /// Blender's reply envelope (single command).
    pub result: Option<RawJson>,
    pub error: Option<Value>,
    /// One reply envelope per command (batch).
    pub results: Vec<RawJson>,
    /// The outcome of a single command, for the caller waiting synchronously.
    pub outcome: Option<CommandOutcome>,
}

/// A job shared by the table, its session task and waiters.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    /// Submission order, manager-wide.
    pub ord: u64,
    pub session_id: String,
    pub kind: JobKind,
    pub metadata: Value,
    pub created_at: f64,
    pub(crate) state: Mutex<JobState>,
    status_tx: watch::Sender<JobStatus>,
    pending_count: Arc<AtomicUsize>,
}

impl Job {
    pub(crate) fn new(
        id: String,
        ord: u64,
        session_id: String,
        kind: JobKind,
        metadata: Value,
        pending_count: Arc<AtomicUsize>,
    ) -> Job {
        let total = match &kind {
            JobKind::Single { .. } => 1,
            JobKind::Batch { commands, .. } => commands.len(),
        };
        Job::with_state(
            id,
            ord,
            session_id,
            kind,
            metadata,
            unix_now(),
            JobState {
                status: JobStatus::Pending,
                started_at: None,
                finished_at: None,
                finished_instant: None,
                progress: Progress {
                    current: 0,
                    total,
                    message: None,
                },
                result: None,
                error: None,
                results: Vec::new(),
                outcome: None,
            },
            pending_count,
        )
    }

    // The parts of a job read back from the store, as they are.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn with_state(
        id: String,
        ord: u64,
        session_id: String,
        kind: JobKind,
        metadata: Value,
        created_at: f64,
        state: JobState,
        pending_count: Arc<AtomicUsize>,
    ) -> Job {
        if state.status == JobStatus::Pending {
            pending_count.fetch_add(1, Ordering::AcqRel);
        }
        let (status_tx, _) = watch::channel(state.status);
        Job {
            id,
            ord,
            session_id,
            kind,
            metadata,
            created_at,
            state: Mutex::new(state),
            status_tx,
            pending_count,
        }
    }

    pub fn job_type(&self) -> &str {
        match &self.kind {
            JobKind::Single { command_type, .. } => command_type,
            JobKind::Batch { .. } => "batch",
        }
    }

    /// The params as submitted: a command's params, or `{"commands", "stop_on_error"}`.
    pub fn params(&self) -> Value {
        match &self.kind {
            JobKind::Single { params, .. } => params.as_ref().map_or(json!({}), RawJson::to_value),
            JobKind::Batch {
                commands,
                stop_on_error,
            } => json!({
                "commands": commands.iter().map(|(c, p)| json!({
                    "command_type": c,
                    "params": p.as_ref().map_or(json!({}), RawJson::to_value),
                })).collect::<Vec<_>>(),
                "stop_on_error": stop_on_error,
            }),
        }
    }

    pub fn status(&self) -> JobStatus {
        self.state.lock().status
    }

    /// Moves the job to `to` and wakes waiters. Leaving `pending` frees a queue slot.
    fn transition(&self, st: &mut JobState, to: JobStatus) {
        if st.status == JobStatus::Pending && to != JobStatus::Pending {
            self.pending_count.fetch_sub(1, Ordering::AcqRel);
        }
        st.status = to;
        if to.is_final() {
            st.finished_at = Some(unix_now());
            st.finished_instant = Some(Instant::now());
        }
        self.status_tx.send_replace(to);
    }

    /// `pending` → `processing`. Returns `false` if the job is no longer pending
    /// (cancelled while queued): it must not be sent to Blender.
    pub(crate) fn start(&self) -> bool {
        let mut st = self.state.lock();
        if st.status != JobStatus::Pending {
            return false;
        }
        st.started_at = Some(unix_now());
        self.transition(&mut st, JobStatus::Processing);
        true
    }

    pub(crate) fn set_progress(&self, current: usize, message: Option<String>) {
        let mut st = self.state.lock();
        st.progress.current = current;
        st.progress.message = message;
    }

    /// Records a finished command of a batch. Returns `false` if the job was
    /// cancelled meanwhile (the batch stops).
    pub(crate) fn push_batch_result(&self, envelope: RawJson) -> bool {
        let mut st = self.state.lock();
        if st.status == JobStatus::Cancelled {
            return false;
        }
        st.results.push(envelope);
        true
    }

    /// Ends a running job. A job cancelled while it ran keeps `cancelled` and its
    /// late result is discarded.
    pub(crate) fn finish(
        &self,
        finished: crate::persist::Finished,
        outcome: Option<CommandOutcome>,
    ) {
        let mut st = self.state.lock();
        if st.status.is_final() {
            return;
        }
        st.result = finished.result;
        st.error = finished.error;
        st.outcome = outcome;
        self.transition(&mut st, finished.status);
        st.finished_at = Some(finished.at);
    }

    /// Cancels: a pending job leaves the queue (never reaches Blender); a running one
    /// is marked cancelled and its result will be discarded. Returns what happened:
    /// `removed`, `discarded` or `finished` (nothing to do).
    pub fn cancel(&self, why: &str) -> &'static str {
        let mut st = self.state.lock();
        let what = match st.status {
            JobStatus::Pending => "removed",
            JobStatus::Processing => "discarded",
            _ => return "finished",
        };
        st.error = Some(json!({"kind": "cancelled", "message": why}));
        self.transition(&mut st, JobStatus::Cancelled);
        what
    }

    /// Waits until the job is final or `wait` passes (or `give_up` fires); returns
    /// the status then.
    pub async fn wait_final(
        &self,
        wait: Duration,
        give_up: &tokio_util::sync::CancellationToken,
    ) -> JobStatus {
        let mut rx = self.status_tx.subscribe();
        let done = async {
            let _ = rx.wait_for(|s| s.is_final()).await;
        };
        tokio::select! {
            _ = done => {}
            _ = tokio::time::sleep(wait) => {}
            _ = give_up.cancelled() => {}
        }
        self.status()
    }

    /// The outcome of a finished single-command job (in this process).
    pub fn outcome(&self) -> Option<CommandOutcome> {
        self.state.lock().outcome.clone()
    }

    pub fn finished_instant(&self) -> Option<Instant> {
        self.state.lock().finished_instant
    }

    /// The job record (position filled in by the table).
    pub fn record(&self, position: Option<usize>) -> JobRecord {
        let st = self.state.lock();
        JobRecord {
            id: self.id.clone(),
            session_id: self.session_id.clone(),
            status: st.status,
            job_type: self.job_type().to_string(),
            params: self.params(),
            created_at: self.created_at,
            started_at: st.started_at,
            finished_at: st.finished_at,
            progress: st.progress.clone(),
            position,
            result: st.result.clone(),
            error: st.error.clone(),
            metadata: self.metadata.clone(),
        }
    }

    /// `get_job_result`'s shape.
    pub fn result_view(&self) -> JobResult {
        let st = self.state.lock();
        JobResult {
            job_id: self.id.clone(),
            status: st.status,
            result: st.result.clone(),
            error: st.error.clone(),
            results: matches!(self.kind, JobKind::Batch { .. }).then(|| st.results.clone()),
        }
    }
}

/// The job record of the protocol.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub session_id: String,
    pub status: JobStatus,
    #[serde(rename = "type")]
    pub job_type: String,
    pub params: Value,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub progress: Progress,
    pub position: Option<usize>,
    pub result: Option<RawJson>,
    pub error: Option<Value>,
    pub metadata: Value,
}

/// `get_job_result`'s result.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    pub job_id: String,
    pub status: JobStatus,
    pub result: Option<RawJson>,
    pub error: Option<Value>,
    pub results: Option<Vec<RawJson>>,
}

/// Blender's reply envelope as strict JSON: `{"status": "success", "result": ...}`
/// or `{"status": "error", "message": ...[, "traceback": ...]}`.
pub fn envelope(
    outcome: &Result<crate::blender::reply::BlenderReply, ManagerError>,
) -> Option<RawJson> {
    let reply = outcome.as_ref().ok()?;
    if reply.success {
        let mut out = Vec::with_capacity(reply.result.len() + 32);
        out.extend_from_slice(b"{\"status\":\"success\",\"result\":");
        out.extend_from_slice(reply.result.bytes());
        out.push(b'}');
        Some(RawJson::from_validated(bytes::Bytes::from(out)))
    } else {
        let mut v =
            json!({"status": "error", "message": reply.message.clone().unwrap_or_default()});
        if let Some(tb) = &reply.traceback {
            v["traceback"] = Value::String(tb.clone());
        }
        Some(RawJson::from_value(&v))
    }
}
