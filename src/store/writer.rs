//! The writer thread: the only owner of the write connection.
//!
//! It blocks for one request, drains whatever else is already queued (up to
//! [`MAX_BATCH_OPS`] operations), applies the lot in one transaction and commits,
//! then answers every request of the batch. Each request runs inside its own
//! savepoint, so a request that fails (a constraint, say) is rolled back alone
//! and answered with its error while the rest of the batch commits. A failed
//! COMMIT answers the whole batch with the error; the thread keeps serving.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::{StoreError, WriteOp};

/// Upper bound on the operations one transaction collects from the queue (a
/// single `write_all` larger than this still commits whole).
pub(crate) const MAX_BATCH_OPS: usize = 1024;

pub(crate) type Reply = oneshot::Sender<Result<(), StoreError>>;

pub(crate) enum Msg {
    /// Operations that commit together; an empty list is a flush marker.
    Write { ops: Vec<WriteOp>, done: Reply },
    /// Commit what came before, close the connection, answer, and end the thread.
    Stop(Option<oneshot::Sender<()>>),
}

struct Request {
    ops: Vec<WriteOp>,
    done: Reply,
}

pub(crate) struct Writer {
    pub conn: Connection,
    pub path: String,
    pub history_limit: i64,
    pub snapshot_limit: i64,
    pub committed: Arc<AtomicU64>,
    pub rx: Receiver<Msg>,
}

impl Writer {
    pub fn run(self) {
        let Writer {
            conn,
            path,
            history_limit,
            snapshot_limit,
            committed,
            rx,
        } = self;
        let apply = Apply {
            conn: &conn,
            path: &path,
            history_limit,
            snapshot_limit,
        };
        let mut batch: Vec<Request> = Vec::new();
        let mut stop_acks = Vec::new();
        let mut stopping = false;
        while !stopping {
            let mut take = |msg: Msg, batch: &mut Vec<Request>, n: &mut usize| match msg {
                Msg::Write { ops, done } => {
                    *n += ops.len();
                    batch.push(Request { ops, done });
                    true
                }
                Msg::Stop(ack) => {
                    stop_acks.extend(ack);
                    false
                }
            };
            let Ok(first) = rx.recv() else {
                break; // every Store handle is gone
            };
            let mut n = 0;
            stopping = !take(first, &mut batch, &mut n);
            while !stopping && n < MAX_BATCH_OPS {
                match rx.try_recv() {
                    Ok(msg) => stopping = !take(msg, &mut batch, &mut n),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            if n == 0 {
                // Only flush markers: everything before them is already answered.
                for r in batch.drain(..) {
                    let _ = r.done.send(Ok(()));
                }
                continue;
            }
            match apply.batch(&batch) {
                Ok(outcomes) => {
                    committed.fetch_add(1, Ordering::Relaxed);
                    for (r, outcome) in batch.drain(..).zip(outcomes) {
                        if let Err(e) = &outcome {
                            tracing::error!(path, error = %e, "store write rolled back");
                        }
                        let _ = r.done.send(outcome);
                    }
                }
                Err(e) => {
                    let e = StoreError::Write {
                        path: path.clone(),
                        reason: e.to_string(),
                    };
                    tracing::error!(path, error = %e, requests = batch.len(), "store transaction failed");
                    for r in batch.drain(..) {
                        let _ = r.done.send(Err(e.clone()));
                    }
                }
            }
        }
        // Closing the last connection checkpoints the log into the main file.
        if let Err((_, e)) = conn.close() {
            tracing::warn!(path, error = %e, "closing the database");
        }
        tracing::debug!(path, "store writer stopped");
        for ack in stop_acks {
            let _ = ack.send(());
        }
    }
}

struct Apply<'c> {
    conn: &'c Connection,
    path: &'c str,
    history_limit: i64,
    snapshot_limit: i64,
}

impl Apply<'_> {
    fn exec(&self, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(p)
    }

    /// One transaction for the batch; per-request outcomes if it committed.
    fn batch(&self, batch: &[Request]) -> rusqlite::Result<Vec<Result<(), StoreError>>> {
        self.exec("BEGIN IMMEDIATE", [])?;
        match self.requests(batch) {
            Ok(outcomes) => match self.exec("COMMIT", []) {
                Ok(_) => Ok(outcomes),
                Err(e) => {
                    self.rollback();
                    Err(e)
                }
            },
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    fn requests(&self, batch: &[Request]) -> rusqlite::Result<Vec<Result<(), StoreError>>> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for r in batch {
            if r.ops.is_empty() {
                outcomes.push(Ok(()));
                continue;
            }
            self.exec("SAVEPOINT request", [])?;
            match r.ops.iter().try_for_each(|op| self.op(op)) {
                Ok(()) => {
                    self.exec("RELEASE request", [])?;
                    outcomes.push(Ok(()));
                }
                Err(e) => {
                    self.exec("ROLLBACK TO request", [])?;
                    self.exec("RELEASE request", [])?;
                    outcomes.push(Err(StoreError::Write {
                        path: self.path.to_string(),
                        reason: e.to_string(),
                    }));
                }
            }
        }
        Ok(outcomes)
    }

    fn op(&self, op: &WriteOp) -> rusqlite::Result<()> {
        match op {
            WriteOp::UpsertSession(s) => {
                // An upsert leaves closed_at/close_reason alone: a late update of a
                // closed session must not reopen it.
                self.exec(
                    "INSERT INTO sessions (id, created_at, backend, owner, metadata, state, \
                     command_count, next_seq, next_snapshot, last_activity) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                     ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, \
                     backend = excluded.backend, owner = excluded.owner, \
                     metadata = excluded.metadata, state = excluded.state, \
                     command_count = excluded.command_count, next_seq = excluded.next_seq, \
                     next_snapshot = excluded.next_snapshot, \
                     last_activity = excluded.last_activity",
                    params![
                        s.id,
                        s.created_at,
                        s.backend,
                        s.owner,
                        s.metadata,
                        s.state,
                        s.command_count,
                        s.next_seq,
                        s.next_snapshot,
                        s.last_activity
                    ],
                )?;
            }
            WriteOp::CloseSession {
                id,
                closed_at,
                reason,
            } => {
                self.exec(
                    "UPDATE sessions SET closed_at = ?2, close_reason = ?3 WHERE id = ?1",
                    params![id, closed_at, reason],
                )?;
            }
            WriteOp::History(h) => {
                self.exec(
                    "INSERT OR REPLACE INTO history (session_id, seq, command, params, status, \
                     result, error, timestamp, duration, job_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        h.session_id,
                        h.seq,
                        h.command,
                        h.params,
                        h.status,
                        h.result,
                        h.error,
                        h.timestamp,
                        h.duration,
                        h.job_id
                    ],
                )?;
                self.exec(
                    "DELETE FROM history WHERE session_id = ?1 AND seq <= ?2",
                    params![h.session_id, h.seq.saturating_sub(self.history_limit)],
                )?;
            }
            WriteOp::Snapshot(s) => {
                self.exec(
                    "INSERT OR REPLACE INTO snapshots (session_id, snapshot_id, timestamp, \
                     scene, state) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![s.session_id, s.snapshot_id, s.timestamp, s.scene, s.state],
                )?;
                self.exec(
                    "DELETE FROM snapshots WHERE session_id = ?1 AND snapshot_id <= \
                     (SELECT snapshot_id FROM snapshots WHERE session_id = ?1 \
                      ORDER BY snapshot_id DESC LIMIT 1 OFFSET ?2)",
                    params![s.session_id, self.snapshot_limit],
                )?;
            }
            WriteOp::UpsertJob(j) => {
                self.exec(
                    "INSERT OR REPLACE INTO jobs (id, ord, session_id, status, job_type, params, \
                     created_at, started_at, finished_at, progress, result, error, results, \
                     metadata) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                    params![
                        j.id,
                        j.ord,
                        j.session_id,
                        j.status,
                        j.job_type,
                        j.params,
                        j.created_at,
                        j.started_at,
                        j.finished_at,
                        j.progress,
                        j.result,
                        j.error,
                        j.results,
                        j.metadata
                    ],
                )?;
            }
            WriteOp::DeleteJobs(ids) => {
                for id in ids {
                    self.exec("DELETE FROM jobs WHERE id = ?1", [id])?;
                }
            }
            WriteOp::PruneClosedSessions { closed_before } => {
                const CLOSED: &str =
                    "(SELECT id FROM sessions WHERE closed_at IS NOT NULL AND closed_at < ?1)";
                self.exec(
                    &format!("DELETE FROM history WHERE session_id IN {CLOSED}"),
                    [closed_before],
                )?;
                self.exec(
                    &format!("DELETE FROM snapshots WHERE session_id IN {CLOSED}"),
                    [closed_before],
                )?;
                self.exec(
                    "DELETE FROM sessions WHERE closed_at IS NOT NULL AND closed_at < ?1",
                    [closed_before],
                )?;
            }
        }
        Ok(())
    }
}
