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
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::blender::backend::Seat;
use crate::blender::link::{BlenderLink, LinkSettings};
use crate::blender::pool::{BackendPool, HealthSettings};
use crate::clock::unix_now;
use crate::config::{Config, ConfigChange, ConfigError};
use crate::error::ManagerError;
use crate::jobs::job::{JobRecord, JobResult};
use crate::jobs::{Job, JobKind, JobStatus, JobTable};
use crate::metrics::Metrics;
use crate::persist::Persist;
use crate::raw_json::RawJson;
use crate::session::actor::{ActorLimits, ActorServices, SessionActor};
use crate::session::handle::{CommandRequest, SessionData, SessionInfo, SessionMsg, SessionOwner};
use crate::session::{
    id, CommandOrigin, CommandOutcome, DisconnectReason, HistoryEntry, SceneState, Session,
    SessionHandle, SessionRegistry, Snapshot,
};
use crate::store::{Restored, Store};

/// Finished jobs kept (memory and store), newest first, whatever the TTL says: every
/// command is a job, so under load the TTL alone would keep millions.
pub const MAX_FINISHED_JOBS: usize = 10_000;
/// Bytes of finished jobs' results kept, newest first.
pub const MAX_FINISHED_JOB_BYTES: usize = 256 * 1024 * 1024;

/// Closed sessions stay readable in the store this long.
pub const CLOSED_SESSION_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Re-reads the configuration the way the manager was started (same flags and
/// environment, the config file read again). Set by `serve`; used by SIGHUP and
/// `reload_config`.
pub type ConfigLoader = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

pub struct Manager {
    /// Replaced whole by a reload; readers take a cheap `Arc` copy.
    config: parking_lot::RwLock<Arc<Config>>,
    config_loader: parking_lot::Mutex<Option<ConfigLoader>>,
    /// Serialises reloads.
    reloading: tokio::sync::Mutex<()>,
    registry: SessionRegistry,
    jobs: JobTable,
    persist: Persist,
    pool: Arc<BackendPool>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Cancelled once in-flight commands have finished at shutdown.
    drained: CancellationToken,
    started: Instant,
    started_unix: f64,
    listeners: parking_lot::Mutex<Vec<(String, String)>>,
    metrics: Arc<Metrics>,
}

/// What `send_command` answers: the outcome, the job still running, or the job
/// cancelled meanwhile.
pub enum SendOutcome {
    Cancelled {
        job_id: String,
        error: Option<Value>,
    },
    Done {
        outcome: Box<CommandOutcome>,
        job_id: String,
    },
    Pending {
        job_id: String,
    },
}

impl Manager {
    /// A manager with a disabled store (nothing outlives the process).
    pub fn new(config: Config) -> Arc<Manager> {
        let (store, _) = Store::open(":memory:", config.history_limit, config.snapshot_limit)
            .expect("the in-memory store always opens");
        Self::with_store(config, store)
    }

    pub fn with_store(config: Config, store: Store) -> Arc<Manager> {
        Arc::new(Manager {
            jobs: JobTable::new(config.max_queue),
            persist: Persist::new(store),
            registry: SessionRegistry::new(config.max_sessions, config.closed_session_limit),
            pool: Arc::new(BackendPool::new(
                &config.backends,
                link_settings(&config),
                health_settings(&config),
            )),
            config: parking_lot::RwLock::new(Arc::new(config)),
            config_loader: Default::default(),
            reloading: Default::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            drained: CancellationToken::new(),
            started: Instant::now(),
            started_unix: unix_now(),
            listeners: Default::default(),
            metrics: Arc::default(),
        })
    }

    /// The configuration in force now (a reload swaps it).
    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    /// The backends and the pause switches.
    pub fn pool(&self) -> &Arc<BackendPool> {
        &self.pool
    }

    /// Installs how `reload_config` (and SIGHUP) re-reads the configuration.
    pub fn set_config_loader(&self, loader: ConfigLoader) {
        *self.config_loader.lock() = Some(loader);
    }

    /// Re-reads the configuration and applies what can change live. An invalid
    /// configuration is refused and the running one kept; the error says why.
    pub async fn reload_config(&self) -> Result<Value, ManagerError> {
        let loader = self.config_loader.lock().clone().ok_or_else(|| {
            ManagerError::InvalidRequest(
                "this manager was started without a configuration to reload".into(),
            )
        })?;
        let _one_at_a_time = self.reloading.lock().await;
        let new = loader().map_err(|e| {
            tracing::warn!(error = %e, "configuration reload refused; keeping the running one");
            ManagerError::invalid_params("config", e.to_string())
        })?;
        Ok(self.apply_config(new))
    }

    /// Puts a new configuration in force: timeouts and limits for what starts from
    /// now on (a command already sent keeps its timeout), the backend list (added
    /// ones take sessions at once, removed ones drain), probe timing. Listen
    /// addresses, the database and the log format need a restart; they are listed.
    pub fn apply_config(&self, new: Config) -> Value {
        let old = self.config();
        let changes = old.changes(&new);
        self.registry.set_max_sessions(new.max_sessions);
        self.jobs.set_capacity(new.max_queue);
        let pool = self
            .pool
            .apply(&new.backends, link_settings(&new), health_settings(&new));
        let (applied, restart): (Vec<&ConfigChange>, Vec<&ConfigChange>) =
            changes.iter().partition(|c| c.live);
        // Settings that need a restart keep their running values.
        *self.config.write() = Arc::new(new.keeping_restart_settings(&old));
        info!(
            changed = applied.len(),
            needs_restart = restart.len(),
            backends_added = ?pool.added,
            backends_retired = ?pool.retired,
            "configuration reloaded"
        );
        json!({
            "reloaded": true,
            "changes": changes,
            "applied": applied,
            "needs_restart": restart,
            "backends": {
                "added": pool.added,
                "retired": pool.retired,
                "reweighted": pool.reweighted,
            },
        })
    }

    /// Holds new commands (the whole manager, or one backend's sessions) until
    /// `resume`; running commands finish.
    pub fn pause(&self, backend: Option<&str>) -> Result<Value, ManagerError> {
        let changed = match backend {
            None => self.pool.pause.set(true),
            Some(name) => self.backend(name)?.pause.set(true),
        };
        if changed {
            info!(
                backend = backend.unwrap_or("(all)"),
                "paused: new commands are held in their queues"
            );
        }
        Ok(json!({"paused": true, "backend": backend, "changed": changed}))
    }

    /// Releases held commands, in order. Resuming a backend also forgets its failed
    /// probes: the operator says it is back, so its sessions may try at once.
    pub fn resume(&self, backend: Option<&str>) -> Result<Value, ManagerError> {
        let changed = match backend {
            None => self.pool.pause.set(false),
            Some(name) => {
                let b = self.backend(name)?;
                b.reset_health();
                b.pause.set(false)
            }
        };
        if changed {
            info!(
                backend = backend.unwrap_or("(all)"),
                "resumed: held commands run in order"
            );
        }
        Ok(json!({"paused": false, "backend": backend, "changed": changed}))
    }

    /// Stops (or, with `drain: false`, resumes) placing new sessions on a backend.
    pub fn drain_backend(&self, name: &str, drain: bool) -> Result<Value, ManagerError> {
        let b = self.backend(name)?;
        if b.set_draining(drain) {
            info!(backend = %name, draining = drain, sessions = b.sessions(), "backend drain changed");
        }
        Ok(b.status())
    }

    /// Closes a session at once: its running command is abandoned (recorded as
    /// cancelled; Blender may still run it), queued ones are refused.
    pub async fn kill_session(&self, id: &str) -> Result<(), ManagerError> {
        self.close_session(id, DisconnectReason::Killed).await
    }

    fn backend(&self, name: &str) -> Result<Arc<crate::blender::backend::Backend>, ManagerError> {
        self.pool.get(name).ok_or_else(|| {
            ManagerError::invalid_params(
                "backend",
                format!(
                    "unknown backend {name:?} (configured: {})",
                    self.pool.names().join(", ")
                ),
            )
        })
    }

    pub fn registry(&self) -> &SessionRegistry {
        &self.registry
    }

    pub fn jobs(&self) -> &JobTable {
        &self.jobs
    }

    pub fn store(&self) -> &Store {
        self.persist.store()
    }

    /// What `GET /metrics` reports.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Tasks spawned on behalf of sessions and connections.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Fired at shutdown once in-flight commands have finished (or the grace ran out).
    pub fn drained_token(&self) -> &CancellationToken {
        &self.drained
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
        self.create_session_on(owner, metadata, None).await
    }

    /// Creates a session on the named backend, or where placement puts it.
    pub async fn create_session_on(
        &self,
        owner: SessionOwner,
        metadata: Value,
        backend: Option<&str>,
    ) -> Result<SessionHandle, ManagerError> {
        if self.shutdown.is_cancelled() {
            return Err(ManagerError::ShuttingDown);
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let history_limit = self.config().history_limit;
        let (backend, seat) = self.pool.place(backend)?;
        let inserted = self.registry.insert_new(id::mint, |id| SessionHandle {
            session: Arc::new(Session::new(
                id,
                backend.clone(),
                owner,
                metadata,
                history_limit,
            )),
            tx,
        });
        let handle = inserted?;
        if let Err(e) = self.persist.session_created(&handle).await {
            self.registry
                .close(handle.id(), DisconnectReason::ClosedByCaller);
            return Err(ManagerError::Internal(format!(
                "could not record the session: {e}"
            )));
        }
        // The first connect attempt is made here, on the caller's task, so the
        // caller is answered without a round trip through the session task. A
        // caller that goes away during it leaves a session whose task is started
        // anyway, unconnected (see `Unstarted`).
        let unstarted = Unstarted {
            manager: self,
            handle: handle.clone(),
            parts: Some((rx, seat)),
        };
        let mut link = BlenderLink::new(backend);
        let first = link.connect().await;
        let owner = match owner {
            SessionOwner::Rpc => "rpc",
            SessionOwner::Compat => "compat",
        };
        match &first {
            Ok(()) => {
                info!(session = %handle.id(), backend = %handle.session.backend.name, address = %link.address(), owner, "session created, Blender connected")
            }
            Err(e) => {
                info!(session = %handle.id(), backend = %handle.session.backend.name, owner, "session created");
                warn!(session = %handle.id(), error = %e, "Blender not reachable at session start");
                handle.session.data.lock().last_error = Some(e.to_string());
            }
        }
        handle.session.data.lock().connected = link.is_connected();
        unstarted.start(link);
        Ok(handle)
    }

    /// Starts a session's task with its link (connected for a new session;
    /// restored sessions reconnect on their first command).
    fn spawn_session(
        &self,
        handle: &SessionHandle,
        rx: mpsc::UnboundedReceiver<SessionMsg>,
        seat: Seat,
        link: BlenderLink,
    ) {
        let config = self.config();
        let limits = ActorLimits {
            history_result_limit: config.history_result_limit,
            snapshot_limit: config.snapshot_limit,
            snapshot_scene_limit: config.snapshot_scene_limit,
        };
        let actor = SessionActor::new(
            handle.session.clone(),
            link,
            rx,
            limits,
            ActorServices {
                persist: self.persist.clone(),
                metrics: self.metrics.clone(),
                pause: self.pool.pause.clone(),
            },
            seat,
        );
        self.tasks.spawn(actor.run());
    }

    pub fn session(&self, id: &str) -> Result<SessionHandle, ManagerError> {
        self.registry
            .get(id)
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

    /// Closes a session; answered once the close is on disk.
    pub async fn close_session(
        &self,
        id: &str,
        reason: DisconnectReason,
    ) -> Result<(), ManagerError> {
        let handle = self
            .registry
            .close(id, reason)
            .ok_or_else(|| ManagerError::SessionNotFound(id.to_string()))?;
        info!(session = %id, reason = %reason.as_str(), "session closed");
        self.record_close(&handle, reason).await;
        Ok(())
    }

    /// A graceful shutdown keeps JSON-RPC sessions open in the store (they are
    /// restored on the next start); every other close is recorded.
    async fn record_close(&self, handle: &SessionHandle, reason: DisconnectReason) {
        self.metrics.disconnected(reason);
        if reason == DisconnectReason::Shutdown && handle.session.owner == SessionOwner::Rpc {
            return;
        }
        self.persist
            .session_closed(handle.id(), reason.as_str())
            .await;
    }

    /// Runs one command outside the job system (the compat port: each connection
    /// is its own FIFO and is not counted against the queue).
    pub async fn run_direct(
        &self,
        handle: &SessionHandle,
        command_type: String,
        params: Option<RawJson>,
        origin: CommandOrigin,
    ) -> Result<CommandOutcome, ManagerError> {
        handle
            .submit(CommandRequest {
                command_type,
                params,
                origin,
            })
            .await
    }

    /// Submits a job to a session's FIFO; answered once the job is on disk.
    /// Submissions to one session are serialised, so the queue order is the
    /// submission order (and the order a restart queues them again).
    pub async fn submit_job(
        &self,
        session_id: &str,
        kind: JobKind,
        metadata: Value,
    ) -> Result<Arc<Job>, ManagerError> {
        let handle = self.session(session_id)?;
        if self.shutdown.is_cancelled() {
            return Err(ManagerError::ShuttingDown);
        }
        let _in_order = handle.session.submit_lock.lock().await;
        let job = self.jobs.create(session_id, kind, metadata, true)?;
        if let Err(e) = self.persist.job_saved(&job).await {
            job.cancel_in_memory("could not be recorded");
            return Err(ManagerError::Internal(format!(
                "could not record the job, so it was not queued: {e}"
            )));
        }
        if let Err(e) = handle.enqueue_job(job.clone()) {
            if handle.session.close_reason() == Some(DisconnectReason::Shutdown)
                && handle.session.owner == SessionOwner::Rpc
            {
                // The session is restored on the next start, and this job with it.
                return Ok(job);
            }
            job.cancel_in_memory("the session closed before the job was queued");
            let _ = self.persist.job_saved(&job).await;
            return Err(e);
        }
        tracing::debug!(session = %session_id, job = %job.id, job_type = %job.job_type(), "job submitted");
        drop(_in_order);
        // Between sweeps, enforce the bounds on what is kept every so often.
        if job.ord % 1024 == 0 {
            self.prune_jobs().await;
        }
        Ok(job)
    }

    /// Submit and wait up to `wait`: the outcome, or the job id if it is still running.
    pub async fn send_command(
        &self,
        id: &str,
        command_type: String,
        params: Option<RawJson>,
        wait: Option<Duration>,
    ) -> Result<SendOutcome, ManagerError> {
        let job = self
            .submit_job(
                id,
                JobKind::Single {
                    command_type,
                    params,
                },
                Value::Null,
            )
            .await?;
        let wait = wait.unwrap_or(self.config().sync_wait);
        // At shutdown, waiting ends once the drain is over: an in-flight command
        // still answers its caller; a queued one answers `pending`.
        job.wait_final(wait, &self.drained).await;
        match job.take_outcome() {
            Some(outcome) => Ok(SendOutcome::Done {
                outcome: Box::new(outcome),
                job_id: job.id.clone(),
            }),
            None if job.status() == JobStatus::Cancelled => Ok(SendOutcome::Cancelled {
                job_id: job.id.clone(),
                error: job.record(None).error,
            }),
            None => Ok(SendOutcome::Pending {
                job_id: job.id.clone(),
            }),
        }
    }

    /// Cancels a job: `removed` (was pending), `discarded` (was running) or `finished`.
    /// Answered once the cancel is on disk.
    pub async fn cancel_job(&self, id: &str) -> Result<(JobRecord, &'static str), ManagerError> {
        let job = self.jobs.get(id)?;
        let what = job.cancel("cancelled by the caller", &self.persist).await?;
        if what != "finished" {
            info!(job = %id, what, "job cancelled");
        }
        Ok((self.jobs.record(&job), what))
    }

    /// Long-polls a job's result for up to `wait`.
    pub async fn job_result(
        &self,
        id: &str,
        wait: Option<Duration>,
    ) -> Result<JobResult, ManagerError> {
        let job = self.jobs.get(id)?;
        if let Some(wait) = wait {
            job.wait_final(wait, &self.drained).await;
        }
        Ok(job.result_view())
    }

    /// Prunes finished jobs past the TTL, and long-closed sessions from the store.
    pub async fn prune_jobs(&self) {
        let pruned = self.jobs.prune(
            self.config().job_ttl,
            Instant::now(),
            MAX_FINISHED_JOBS,
            MAX_FINISHED_JOB_BYTES,
        );
        if !pruned.is_empty() {
            tracing::debug!(count = pruned.len(), "pruned finished jobs");
        }
        self.persist.jobs_pruned(pruned).await;
        self.persist
            .prune_closed_sessions(unix_now() - CLOSED_SESSION_RETENTION.as_secs_f64())
            .await;
    }

    pub async fn update_state(
        &self,
        id: &str,
        keys: Map<String, Value>,
    ) -> Result<SceneState, ManagerError> {
        let handle = self.session(id)?;
        let session = &handle.session;
        session.touch();
        // Merge into a copy, commit that, and only then change the live state: a
        // failed write leaves nothing behind. The merge is applied to the live
        // state again (not replaced by the copy) so a command finishing meanwhile
        // keeps its own updates.
        let mut row = Persist::session_row(session);
        let mut next = session.state();
        next.merge(keys.clone())?;
        row.state = serde_json::to_string(&next).unwrap_or_else(|_| row.state.clone());
        self.persist
            .session_row_changed(row)
            .await
            .map_err(|e| ManagerError::Internal(format!("could not record the state: {e}")))?;
        let mut d = session.data.lock();
        d.state.merge(keys)?;
        Ok(d.state.clone())
    }

    /// History of a live or closed session: from memory, else from the store.
    pub async fn history(
        &self,
        id: &str,
        limit: Option<usize>,
        since_seq: Option<u64>,
    ) -> Result<Vec<HistoryEntry>, ManagerError> {
        if let Some(session) = self.registry.get_any(id) {
            return Ok(session.data.lock().history.query(limit, since_seq));
        }
        match self.store().session_history(id, limit, since_seq).await {
            Ok(Some(rows)) => Ok(rows.iter().map(Persist::history_entry).collect()),
            Ok(None) => Err(ManagerError::SessionNotFound(id.to_string())),
            Err(e) => Err(ManagerError::Internal(e.to_string())),
        }
    }

    pub async fn take_snapshot(&self, id: &str) -> Result<Snapshot, ManagerError> {
        self.session(id)?.snapshot().await
    }

    pub async fn snapshots(&self, id: &str) -> Result<Vec<Snapshot>, ManagerError> {
        if let Some(session) = self.registry.get_any(id) {
            return Ok(session.data.lock().snapshots.iter().cloned().collect());
        }
        match self.store().snapshots(id).await {
            Ok(Some(rows)) => Ok(rows.iter().map(Persist::snapshot).collect()),
            Ok(None) => Err(ManagerError::SessionNotFound(id.to_string())),
            Err(e) => Err(ManagerError::Internal(e.to_string())),
        }
    }

    /// Closes sessions idle for longer than `timeout` (not busy, not compat-owned)
    /// and returns the ids it closed. Idleness is checked again under the session's
    /// lock at the moment of closing, so a command arriving meanwhile keeps it open.
    pub async fn cleanup_idle_sessions(
        &self,
        timeout: Duration,
        reason: DisconnectReason,
    ) -> Vec<String> {
        let now = Instant::now();
        let is_idle = |s: &Session, d: &SessionData| {
            s.owner != SessionOwner::Compat
                && s.idle_for_locked(d, now).is_some_and(|i| i > timeout)
        };
        let candidates = self.registry.select(|s| is_idle(s, &s.data.lock()));
        let mut closed = Vec::new();
        for id in candidates {
            if let Some(handle) = self.registry.close_if(&id, reason, is_idle) {
                info!(session = %id, reason = %reason.as_str(), idle_timeout_s = timeout.as_secs_f64(), "session reaped");
                self.record_close(&handle, reason).await;
                closed.push(id);
            }
        }
        closed
    }

    /// Refuses new sessions and closes every live one (at shutdown).
    pub async fn close_all(&self, reason: DisconnectReason) {
        for h in self.registry.begin_shutdown() {
            let _ = self.close_session(h.id(), reason).await;
        }
    }

    /// Puts back what the store held: open sessions (reconnecting lazily) with
    /// their history, snapshots and state; finished jobs with their results;
    /// pending jobs queued again in order; jobs that were running marked failed.
    pub async fn restore(&self, restored: Restored) {
        let (mut sessions, mut requeued, mut interrupted) = (0, 0, 0);
        for rs in restored.sessions {
            let row = &rs.row;
            let owner = if row.owner == "compat" {
                SessionOwner::Compat
            } else {
                SessionOwner::Rpc
            };
            if owner == SessionOwner::Compat {
                // Its connection is gone with the old process.
                self.persist
                    .session_closed(&row.id, "manager_restarted")
                    .await;
                continue;
            }
            let backend = self.pool.adopt(&row.backend);
            let metadata = serde_json::from_str(&row.metadata).unwrap_or(Value::Null);
            let session = Session::new(
                row.id.clone(),
                backend.clone(),
                owner,
                metadata,
                self.config().history_limit,
            );
            let session = session.with_created_at(row.created_at);
            {
                let mut d = session.data.lock();
                d.state = serde_json::from_str(&row.state).unwrap_or_default();
                // A damaged row must not wrap around into huge counters.
                d.command_count = u64::try_from(row.command_count).unwrap_or(0);
                d.next_seq = u64::try_from(row.next_seq).unwrap_or(0);
                d.next_snapshot = u64::try_from(row.next_snapshot).unwrap_or(0);
                d.last_activity_unix = row.last_activity;
                for h in &rs.history {
                    d.history.push(Persist::history_entry(h));
                }
                d.snapshots = rs.snapshots.iter().map(Persist::snapshot).collect();
            }
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let handle = SessionHandle {
                session: Arc::new(session),
                tx,
            };
            if self.registry.insert_restored(handle.clone()).is_err() {
                continue;
            }
            let link = BlenderLink::new(backend.clone());
            self.spawn_session(&handle, rx, backend.seat(), link);
            sessions += 1;
        }
        for row in restored.jobs {
            let (kind, mut state) = Persist::job_parts(&row);
            let was_running = state.status == JobStatus::Processing;
            if was_running {
                state.status = JobStatus::Failed;
                state.finished_at = Some(unix_now());
                state.error = Some(json!({
                    "kind": "manager_restarted",
                    "message": "the manager restarted while this job ran: Blender may or may not have run it",
                }));
                interrupted += 1;
            }
            if state.status.is_final() {
                // Age it by its time since finishing, so the TTL still applies.
                // A damaged or future time counts as "just now"; one older than
                // this machine's clock allows expires at the first sweep.
                let age = (unix_now() - state.finished_at.unwrap_or_else(unix_now)).max(0.0);
                let now = Instant::now();
                state.finished_instant = Some(
                    Duration::try_from_secs_f64(age)
                        .ok()
                        .and_then(|age| now.checked_sub(age))
                        .unwrap_or_else(|| now.checked_sub(self.config().job_ttl).unwrap_or(now)),
                );
            }
            let metadata = serde_json::from_str(&row.metadata).unwrap_or(Value::Null);
            let job = self.jobs.restore(
                row.id.clone(),
                u64::try_from(row.ord).unwrap_or(0),
                row.session_id.clone(),
                kind,
                metadata,
                row.created_at,
                state,
            );
            match job.status() {
                JobStatus::Pending => match self
                    .session(&row.session_id)
                    .map(|h| h.enqueue_job(job.clone()))
                {
                    Ok(Ok(())) => requeued += 1,
                    _ => {
                        job.cancel_in_memory("its session no longer exists");
                        let _ = self.persist.job_saved(&job).await;
                    }
                },
                JobStatus::Failed if was_running => {
                    let _ = self.persist.job_saved(&job).await;
                }
                _ => {}
            }
        }
        if sessions + requeued + interrupted > 0 {
            info!(
                sessions,
                requeued_jobs = requeued,
                interrupted_jobs = interrupted,
                "restored from the store"
            );
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
        let queue = self.jobs.queue_status();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime": self.started.elapsed().as_secs_f64(),
            "started_at": self.started_unix,
            "draining": self.shutdown.is_cancelled(),
            "paused": self.pool.pause.is_paused(),
            "listeners": listeners,
            "backends": self.pool.status(),
            "counts": {
                "sessions": sessions,
                "busy_sessions": busy,
                "backend_connections": connected,
                "max_sessions": self.registry.max_sessions(),
                "jobs_pending": queue["pending"],
                "jobs_processing": queue["processing"],
                "jobs_kept": self.jobs.len(),
                "queue_capacity": self.jobs.capacity(),
            },
            "db": if self.store().is_persistent() { Value::String(self.config().db.clone()) } else { Value::String(":memory:".into()) },
        })
    }
}

/// Link timeouts and limits from a configuration.
fn link_settings(config: &Config) -> LinkSettings {
    LinkSettings {
        connect_timeout: config.connect_timeout,
        command_timeout: config.command_timeout,
        max_frame_bytes: config.max_frame_bytes,
    }
}

/// Probe timing from a configuration.
fn health_settings(config: &Config) -> HealthSettings {
    HealthSettings {
        interval: config.health_interval,
        timeout: config.health_timeout,
        failures: config.health_failures,
    }
}

/// A new session whose task has not been started yet. Dropped with its parts
/// still in it — the creating caller went away during the first connect — it
/// starts the task with an unconnected link, so the session is never left
/// without one (it connects on its first command, like a restored session).
struct Unstarted<'a> {
    manager: &'a Manager,
    handle: SessionHandle,
    parts: Option<(mpsc::UnboundedReceiver<SessionMsg>, Seat)>,
}

impl Unstarted<'_> {
    /// Starts the session's task with `link` (once; later calls do nothing).
    fn spawn_with(&mut self, link: BlenderLink) {
        if let Some((rx, seat)) = self.parts.take() {
            self.manager.spawn_session(&self.handle, rx, seat, link);
        }
    }

    fn start(mut self, link: BlenderLink) {
        self.spawn_with(link);
    }
}

impl Drop for Unstarted<'_> {
    fn drop(&mut self) {
        if self.parts.is_some() {
            let link = BlenderLink::new(self.handle.session.backend.clone());
            self.spawn_with(link);
        }
    }
}
