//! The manager core: the one place front doors call into.
//!
//! Data takes one path: front door → [`Manager`] → session task → Blender link →
//! codec. The manager owns the registry, the configuration and the backend figures;
//! it creates sessions (spawning their tasks on a shared `TaskTracker`), routes
//! commands to them, and answers the read-only queries from the shared session
//! records. It never holds a lock across an `.await`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::blender::backend::BackendStats;
use crate::blender::link::{BlenderLink, LinkSettings};
use crate::clock::unix_now;
use crate::config::Config;
use crate::error::ManagerError;
use crate::raw_json::RawJson;
use crate::session::actor::{ActorLimits, SessionActor};
use crate::session::handle::{CommandRequest, SessionData, SessionInfo, SessionOwner};
use crate::session::{
    id, CloseReason, CommandOrigin, CommandOutcome, HistoryEntry, SceneState, Session,
    SessionHandle, SessionRegistry, Snapshot,
};

pub struct Manager {
    config: Config,
    registry: SessionRegistry,
    backend: Arc<BackendStats>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    started: Instant,
    started_unix: f64,
    listeners: parking_lot::Mutex<Vec<(String, String)>>,
}

impl Manager {
    pub fn new(config: Config) -> Arc<Manager> {
        Arc::new(Manager {
            registry: SessionRegistry::new(config.max_sessions, config.closed_session_limit),
            backend: Arc::new(BackendStats::new(config.blender.clone())),
            config,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            started: Instant::now(),
            started_unix: unix_now(),
            listeners: Default::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn registry(&self) -> &SessionRegistry {
        &self.registry
    }

    /// Tasks spawned on behalf of sessions and connections.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub(crate) fn add_listener(&self, name: &str, addr: String) {
        self.listeners.lock().push((name.to_string(), addr));
    }

    /// Creates a session and makes its first connect attempt before returning.
    pub async fn create_session(
        &self,
        owner: SessionOwner,
        metadata: Value,
    ) -> Result<SessionHandle, ManagerError> {
        if self.shutdown.is_cancelled() {
            return Err(ManagerError::ShuttingDown);
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let handle = self.registry.insert_new(id::mint, |id| SessionHandle {
            session: Arc::new(Session::new(
                id,
                self.config.blender.clone(),
                owner,
                metadata,
                self.config.history_limit,
            )),
            tx,
        })?;
        let settings = LinkSettings {
            connect_timeout: self.config.connect_timeout,
            command_timeout: self.config.command_timeout,
            max_frame_bytes: self.config.max_frame_bytes,
        };
        let link = BlenderLink::new(settings, self.backend.clone());
        let limits = ActorLimits {
            history_result_limit: self.config.history_result_limit,
            snapshot_limit: self.config.snapshot_limit,
            snapshot_scene_limit: self.config.snapshot_scene_limit,
        };
        let actor = SessionActor::new(handle.session.clone(), link, rx, limits);
        let (ready_tx, ready_rx) = oneshot::channel();
        info!(session = %handle.id(), backend = %self.config.blender, owner = %serde_json::to_value(owner).unwrap_or_default().as_str().unwrap_or("rpc"), "session created");
        self.tasks.spawn(actor.run(ready_tx));
        let _ = ready_rx.await;
        Ok(handle)
    }

    pub fn session(&self, id: &str) -> Result<SessionHandle, ManagerError> {
        self.registry
            .get(id)
            .ok_or_else(|| ManagerError::SessionNotFound(id.to_string()))
    }

    /// A live or recently closed session's record (history and snapshots only).
    fn any_session(&self, id: &str) -> Result<Arc<Session>, ManagerError> {
        self.registry
            .get_any(id)
            .ok_or_else(|| ManagerError::SessionNotFound(id.to_string()))
    }

    pub fn session_info(&self, id: &str) -> Result<SessionInfo, ManagerError> {
        Ok(self.session(id)?.session.info())
    }

    pub fn list_sessions(&self) -> Vec<SessionInfo> {
        let mut all: Vec<_> = self.registry.live();
        all.sort_by(|a, b| a.session.created_at.total_cmp(&b.session.created_at));
        all.iter().map(|h| h.session.info()).collect()
    }

    pub fn close_session(&self, id: &str, reason: CloseReason) -> Result<(), ManagerError> {
        self.registry
            .close(id, reason)
            .ok_or_else(|| ManagerError::SessionNotFound(id.to_string()))?;
        info!(session = %id, reason = %reason.as_str(), "session closed");
        Ok(())
    }

    pub async fn send_command(
        &self,
        id: &str,
        command_type: String,
        params: Option<RawJson>,
        origin: CommandOrigin,
    ) -> Result<CommandOutcome, ManagerError> {
        let handle = self.session(id)?;
        handle
            .submit(CommandRequest {
                command_type,
                params,
                origin,
            })
            .await
    }

    pub fn update_state(
        &self,
        id: &str,
        keys: Map<String, Value>,
    ) -> Result<SceneState, ManagerError> {
        let handle = self.session(id)?;
        let session = &handle.session;
        session.touch();
        let mut d = session.data.lock();
        d.state.merge(keys)?;
        Ok(d.state.clone())
    }

    pub fn history(
        &self,
        id: &str,
        limit: Option<usize>,
        since_seq: Option<u64>,
    ) -> Result<Vec<HistoryEntry>, ManagerError> {
        let session = self.any_session(id)?;
        let d = session.data.lock();
        Ok(d.history.query(limit, since_seq))
    }

    pub async fn take_snapshot(&self, id: &str) -> Result<Snapshot, ManagerError> {
        self.session(id)?.snapshot().await
    }

    pub fn snapshots(&self, id: &str) -> Result<Vec<Snapshot>, ManagerError> {
        let session = self.any_session(id)?;
        let d = session.data.lock();
        Ok(d.snapshots.iter().cloned().collect())
    }

    /// Closes sessions idle for longer than `timeout` (not busy, not compat-owned)
    /// and returns the ids it closed. Idleness is checked again under the session's
    /// lock at the moment of closing, so a command arriving meanwhile keeps it open.
    pub fn cleanup_idle_sessions(&self, timeout: Duration, reason: CloseReason) -> Vec<String> {
        let now = Instant::now();
        let is_idle = |s: &Session, d: &SessionData| {
            s.owner != SessionOwner::Compat
                && s.idle_for_locked(d, now).is_some_and(|i| i > timeout)
        };
        let candidates = self.registry.select(|s| is_idle(s, &s.data.lock()));
        let mut closed = Vec::new();
        for id in candidates {
            if self.registry.close_if(&id, reason, is_idle).is_some() {
                info!(session = %id, reason = %reason.as_str(), idle_timeout_s = timeout.as_secs_f64(), "session reaped");
                closed.push(id);
            }
        }
        closed
    }

    /// Refuses new sessions and closes every live one (at shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        for h in self.registry.begin_shutdown() {
            let _ = self.close_session(h.id(), reason);
        }
    }

    pub fn status(&self) -> Value {
        let sessions = self.registry.len();
        let live = self.registry.live();
        let busy = live.iter().filter(|h| h.session.pending() > 0).count();
        let connected = live
            .iter()
            .filter(|h| h.session.data.lock().connected)
            .count();
        let listeners: Map<String, Value> = self
            .listeners
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime": self.started.elapsed().as_secs_f64(),
            "started_at": self.started_unix,
            "draining": self.shutdown.is_cancelled(),
            "paused": false,
            "listeners": listeners,
            "backends": [self.backend.status(sessions)],
            "counts": {
                "sessions": sessions,
                "busy_sessions": busy,
                "backend_connections": connected,
                "max_sessions": self.config.max_sessions,
            },
        })
    }
}
