//! The shared record of a session and the handle callers use to reach its task.
//!
//! [`Session`] is what every front door reads (info, state, history, snapshots);
//! the session task is its only writer for command results. [`SessionHandle`] adds
//! the task's mailbox: [`SessionHandle::submit`] enqueues a command and waits for
//! its outcome. A caller that stops waiting does not cancel the command — the task
//! runs it and records the result regardless.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::disconnect::DisconnectReason;
use super::history::History;
use super::state::{SceneState, Snapshot};
use crate::blender::backend::Backend;
use crate::blender::reply::BlenderReply;
use crate::clock::unix_now;
use crate::error::ManagerError;
use crate::raw_json::RawJson;

/// Who opened a session; compat-owned sessions live as long as their connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionOwner {
    Rpc,
    Compat,
}

/// Which front door a command came through (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandOrigin {
    Rpc,
    Compat,
    Tool,
}

/// A command for a session's FIFO.
#[derive(Debug)]
pub struct CommandRequest {
    pub command_type: String,
    pub params: Option<RawJson>,
    pub origin: CommandOrigin,
}

/// What became of a command.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    pub seq: u64,
    pub timestamp: f64,
    pub duration: f64,
    pub result: Result<BlenderReply, ManagerError>,
}

pub(crate) enum SessionMsg {
    Command {
        request: CommandRequest,
        reply: oneshot::Sender<CommandOutcome>,
    },
    Snapshot {
        reply: oneshot::Sender<Result<Snapshot, ManagerError>>,
    },
    Job(Arc<crate::jobs::Job>),
}

/// Mutable part of a session, guarded by one mutex held only for memory updates.
#[derive(Debug)]
pub(crate) struct SessionData {
    pub last_activity: Instant,
    pub last_activity_unix: f64,
    pub command_count: u64,
    pub next_seq: u64,
    pub state: SceneState,
    pub history: History,
    pub snapshots: std::collections::VecDeque<Snapshot>,
    pub next_snapshot: u64,
    pub connected: bool,
    pub last_heartbeat: Option<f64>,
    pub last_error: Option<String>,
    pub running: Option<String>,
    pub closed: Option<DisconnectReason>,
}

/// The shared record of one session.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub created_at: f64,
    /// The backend the session is pinned to for its whole life.
    pub backend: Arc<Backend>,
    pub owner: SessionOwner,
    pub metadata: Value,
    pub(crate) data: Mutex<SessionData>,
    /// Commands queued or running.
    pub(crate) pending: AtomicUsize,
    /// Cancelled when the session closes; the task finishes its current command.
    pub(crate) closing: CancellationToken,
    /// Cancelled by `kill_session`: the task abandons its current command too.
    pub(crate) killed: CancellationToken,
    /// Held while a job is recorded and queued, so queue order is submission order.
    pub(crate) submit_lock: tokio::sync::Mutex<()>,
}

impl Session {
    pub(crate) fn new(
        id: String,
        backend: Arc<Backend>,
        owner: SessionOwner,
        metadata: Value,
        history_limit: usize,
    ) -> Self {
        let now = unix_now();
        Session {
            id,
            created_at: now,
            backend,
            owner,
            metadata,
            data: Mutex::new(SessionData {
                last_activity: Instant::now(),
                last_activity_unix: now,
                command_count: 0,
                next_seq: 0,
                state: SceneState::default(),
                history: History::new(history_limit),
                snapshots: Default::default(),
                next_snapshot: 0,
                connected: false,
                last_heartbeat: None,
                last_error: None,
                running: None,
                closed: None,
            }),
            pending: AtomicUsize::new(0),
            closing: CancellationToken::new(),
            killed: CancellationToken::new(),
            submit_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn with_created_at(mut self, created_at: f64) -> Self {
        self.created_at = created_at;
        self
    }

    /// Commands queued or running.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.closing.is_cancelled()
    }

    pub fn close_reason(&self) -> Option<DisconnectReason> {
        self.data.lock().closed
    }

    /// Marks caller activity now.
    pub(crate) fn touch(&self) {
        let mut d = self.data.lock();
        d.last_activity = Instant::now();
        d.last_activity_unix = unix_now();
    }

    /// How long the session has been idle, or `None` while it has work.
    pub fn idle_for(&self, now: Instant) -> Option<Duration> {
        self.idle_for_locked(&self.data.lock(), now)
    }

    pub(crate) fn idle_for_locked(&self, d: &SessionData, now: Instant) -> Option<Duration> {
        if self.pending() > 0 {
            return None;
        }
        Some(now.saturating_duration_since(d.last_activity))
    }

    pub fn state(&self) -> SceneState {
        self.data.lock().state.clone()
    }

    /// Session info in the seed's shape plus extra keys. A typed value (not a
    /// `serde_json::Value`), so raw results in the state are written out verbatim.
    pub fn info(&self) -> SessionInfo {
        let d = self.data.lock();
        SessionInfo {
            session_id: self.id.clone(),
            created_at: self.created_at,
            last_activity: d.last_activity_unix,
            blender: BlenderInfo {
                connected: d.connected,
                host: self.backend.address.host.clone(),
                port: self.backend.address.port,
                last_heartbeat: d.last_heartbeat,
                last_error: d.last_error.clone(),
            },
            state: d.state.clone(),
            command_count: d.command_count,
            idle_seconds: Instant::now()
                .saturating_duration_since(d.last_activity)
                .as_secs_f64(),
            queued: self.pending(),
            running: d.running.clone(),
            backend: self.backend.name.clone(),
            owner: self.owner,
            metadata: self.metadata.clone(),
        }
    }
}

/// `get_session_info`'s result.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub session_id: String,
    pub created_at: f64,
    pub last_activity: f64,
    pub blender: BlenderInfo,
    pub state: SceneState,
    pub command_count: u64,
    pub idle_seconds: f64,
    pub queued: usize,
    pub running: Option<String>,
    pub backend: String,
    pub owner: SessionOwner,
    pub metadata: Value,
}

/// The `blender` member of session info.
#[derive(Debug, Clone, Serialize)]
pub struct BlenderInfo {
    pub connected: bool,
    pub host: String,
    pub port: u16,
    pub last_heartbeat: Option<f64>,
    pub last_error: Option<String>,
}

/// A live session: its record and its task's mailbox.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub session: Arc<Session>,
    pub(crate) tx: mpsc::UnboundedSender<SessionMsg>,
}

impl std::fmt::Debug for SessionMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionMsg::Command { request, .. } => write!(f, "Command({})", request.command_type),
            SessionMsg::Snapshot { .. } => write!(f, "Snapshot"),
            SessionMsg::Job(job) => write!(f, "Job({})", job.id),
        }
    }
}

impl SessionHandle {
    pub fn id(&self) -> &str {
        &self.session.id
    }

    fn closed_error(&self) -> ManagerError {
        ManagerError::SessionNotFound(self.session.id.clone())
    }

    /// Puts a message in the mailbox. The closed check, the `pending` count and the
    /// activity stamp happen under the session's lock, the same lock the reaper
    /// holds while deciding a session is idle, so a session is never reaped
    /// between accepting a command and queueing it.
    fn enqueue(&self, msg: SessionMsg) -> Result<(), ManagerError> {
        let mut d = self.session.data.lock();
        if d.closed.is_some() {
            return Err(self.closed_error());
        }
        if self.session.backend.is_down() {
            // Fail fast rather than queue behind a backend that fails its probes.
            return Err(ManagerError::BlenderUnavailable {
                address: self.session.backend.address.to_string(),
                reason: self.session.backend.down_reason(),
            });
        }
        self.session.pending.fetch_add(1, Ordering::AcqRel);
        d.last_activity = Instant::now();
        d.last_activity_unix = unix_now();
        if self.tx.send(msg).is_err() {
            self.session.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(self.closed_error());
        }
        Ok(())
    }

    /// Enqueues a command and waits for its outcome. Dropping the returned future
    /// does not cancel the command.
    pub async fn submit(&self, request: CommandRequest) -> Result<CommandOutcome, ManagerError> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(SessionMsg::Command { request, reply })?;
        rx.await.map_err(|_| self.closed_error())
    }

    /// Queues a job behind the session's earlier work.
    pub fn enqueue_job(&self, job: Arc<crate::jobs::Job>) -> Result<(), ManagerError> {
        self.enqueue(SessionMsg::Job(job))
    }

    /// Asks the session task for a snapshot (queued behind earlier commands).
    pub async fn snapshot(&self) -> Result<Snapshot, ManagerError> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(SessionMsg::Snapshot { reply })?;
        rx.await.map_err(|_| self.closed_error())?
    }

    /// Starts closing when `still` holds for the session (checked under its lock):
    /// no new commands; the current one finishes and is recorded; queued ones fail
    /// with `session_not_found`. Returns whether it closed.
    pub(crate) fn close_if(
        &self,
        reason: DisconnectReason,
        still: impl FnOnce(&Session, &SessionData) -> bool,
    ) -> bool {
        {
            let mut d = self.session.data.lock();
            if d.closed.is_some() || !still(&self.session, &d) {
                return false;
            }
            d.closed = Some(reason);
        }
        if reason == DisconnectReason::Killed {
            self.session.killed.cancel();
        }
        self.session.closing.cancel();
        true
    }
}
