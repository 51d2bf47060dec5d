//! The session task: runs a session's commands one at a time over its link.
//!
//! Concurrency design: the task owns the [`BlenderLink`] and the receiving end of the
//! session's mailbox. Its loop waits, in priority order, for the session to start
//! closing, for the next message, or for the idle link to show it died. Each command
//! is awaited to completion before the next message is taken, so at most one request
//! is ever in flight on the socket and commands run in FIFO order. Closing does not
//! interrupt the current command (its result is recorded); queued commands then fail
//! with `session_not_found` and the socket is closed. Killing is closing that does
//! interrupt it: the socket is dropped at once and the command is recorded as
//! cancelled.
//!
//! Pausing (the whole manager or the session's backend) stops the loop from taking
//! the next message: it stays in the mailbox, in order, until both switches are off.
//! A message taken just as a pause began (the loop was already waiting for it) is held
//! by the task before it runs, with the idle socket still watched, so a Blender
//! restarted during the pause gets the held command over a fresh socket.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::disconnect::DisconnectReason;
use super::handle::{CommandOrigin, CommandOutcome, CommandRequest, Session, SessionMsg};
use super::history::{CommandStatus, HistoryEntry};
use super::state::Snapshot;
use crate::blender::backend::Seat;
use crate::blender::link::BlenderLink;
use crate::blender::request;
use crate::clock::unix_now;
use crate::error::ManagerError;
use crate::jobs::job::envelope;
use crate::jobs::{Job, JobKind, JobStatus};
use crate::metrics::Metrics;
use crate::pause::{all_resumed, Pause};
use crate::persist::{Finished, Persist};
use crate::raw_json::RawJson;

/// Sizes the task needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActorLimits {
    pub history_result_limit: usize,
    pub snapshot_limit: usize,
    pub snapshot_scene_limit: usize,
}

/// What the task shares with the rest of the manager.
pub(crate) struct ActorServices {
    pub persist: Persist,
    pub metrics: Arc<Metrics>,
    /// The whole-manager pause switch (the backend's is `session.backend.pause`).
    pub pause: Arc<Pause>,
}

pub(crate) struct SessionActor {
    session: Arc<Session>,
    link: BlenderLink,
    rx: mpsc::UnboundedReceiver<SessionMsg>,
    limits: ActorLimits,
    persist: Persist,
    metrics: Arc<Metrics>,
    /// The whole-manager pause switch (the backend's is `session.backend.pause`).
    pause: Arc<Pause>,
    /// Counts the session on its backend while the task lives.
    _seat: Seat,
}

impl SessionActor {
    /// `link` is the session's link: already connected for a new session (its
    /// creator made the first attempt), not yet for a restored one.
    pub(crate) fn new(
        session: Arc<Session>,
        link: BlenderLink,
        rx: mpsc::UnboundedReceiver<SessionMsg>,
        limits: ActorLimits,
        services: ActorServices,
        seat: Seat,
    ) -> Self {
        let ActorServices {
            persist,
            metrics,
            pause,
        } = services;
        SessionActor {
            link,
            session,
            rx,
            limits,
            persist,
            metrics,
            pause,
            _seat: seat,
        }
    }

    fn paused(&self) -> bool {
        self.pause.is_paused() || self.session.backend.pause.is_paused()
    }

    /// Waits out a pause with a message in hand; `false` if the session started
    /// closing meanwhile. The idle socket is still watched: Blender is typically
    /// restarted during a pause, and the held message must then go out over a
    /// fresh socket, not the dead one.
    async fn hold_while_paused(&mut self) -> bool {
        let closing = self.session.closing.clone();
        let (pause, backend) = (self.pause.clone(), self.session.backend.clone());
        let switches = [&*pause, &backend.pause];
        loop {
            tokio::select! {
                biased;
                _ = closing.cancelled() => return false,
                why = self.link.watch_idle() => self.idle_link_died(why),
                _ = all_resumed(&switches) => return true,
            }
        }
    }

    /// The idle socket closed or spoke out of turn: drop it, so the next command
    /// reconnects instead of hitting it.
    fn idle_link_died(&mut self, why: DisconnectReason) {
        let detail = match why {
            DisconnectReason::ProtocolError => "Blender sent data while no command was in flight",
            _ => "Blender closed the connection while idle",
        };
        warn!(session = %self.session.id, backend = %self.session.backend.name, reason = %why, detail, "dropping idle Blender connection");
        self.metrics.disconnected(why);
        self.link.drop_connection(detail);
        self.sync_link_status();
    }

    /// Runs the session until it closes.
    pub(crate) async fn run(mut self) {
        let id = self.session.id.clone();
        self.session.data.lock().connected = self.link.is_connected();
        let closing = self.session.closing.clone();
        let (pause, backend) = (self.pause.clone(), self.session.backend.clone());
        let switches = [&*pause, &backend.pause];
        // One wait for the close, registered once rather than once per message.
        let closed = closing.cancelled();
        tokio::pin!(closed);
        loop {
            let paused = self.paused();
            tokio::select! {
                // Order matters: closing first; then a dead idle socket, so a command
                // arriving at the same moment reconnects instead of hitting it.
                biased;
                _ = &mut closed => break,
                why = self.link.watch_idle() => self.idle_link_died(why),
                // Closing is the first branch, so a pause never holds a close up.
                _ = all_resumed(&switches), if paused => {}
                msg = self.rx.recv(), if !paused => match msg {
                    Some(msg) => {
                        // A pause may have begun while this message was awaited.
                        if self.paused() && !self.hold_while_paused().await {
                            self.refuse(msg).await;
                            break;
                        }
                        self.handle(msg).await;
                    }
                    None => break,
                },
            }
        }
        // Closing: refuse what is still queued, then close the socket.
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            self.refuse(msg).await;
        }
        self.link.close();
        self.sync_link_status();
        debug!(session = %id, "session task finished");
    }

    async fn handle(&mut self, msg: SessionMsg) {
        match msg {
            SessionMsg::Command { request, reply } => {
                let outcome = self.execute(request, None).await;
                self.session.pending.fetch_sub(1, Ordering::AcqRel);
                let _ = reply.send(outcome);
            }
            SessionMsg::Snapshot { reply } => {
                let snap = self.snapshot().await;
                self.session.pending.fetch_sub(1, Ordering::AcqRel);
                let _ = reply.send(snap);
            }
            SessionMsg::Job(job) => {
                self.run_job(&job).await;
                self.session.pending.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// A message the closing session will not run.
    async fn refuse(&mut self, msg: SessionMsg) {
        self.session.pending.fetch_sub(1, Ordering::AcqRel);
        match msg {
            // At shutdown a queued job stays pending: it runs again after a restart.
            SessionMsg::Job(_)
                if self.session.close_reason() == Some(DisconnectReason::Shutdown) => {}
            SessionMsg::Job(job) => {
                if let Err(e) = job
                    .cancel("the session closed before the job ran", &self.persist)
                    .await
                {
                    warn!(job = %job.id, error = %e, "could not record a cancelled job");
                }
            }
            // Dropping the reply sender tells the waiter the session is gone.
            other => drop(other),
        }
    }

    fn sync_link_status(&self) {
        let mut d = self.session.data.lock();
        d.connected = self.link.is_connected();
        if let Some(e) = self.link.last_error() {
            d.last_error = Some(e.to_string());
        }
    }

    /// Runs a job: one command, or a batch in order with progress. A job cancelled
    /// while queued is skipped without reaching Blender.
    async fn run_job(&mut self, job: &Arc<Job>) {
        let Some(started) = job.start(&self.persist).await else {
            return;
        };
        self.metrics
            .job_started((unix_now() - job.created_at).max(0.0));
        // `processing` is on disk before Blender sees the command: after a crash the
        // job is reported as interrupted, never run a second time.
        self.persist.settle(started, &job.id).await;
        if job.cancelling() {
            // Cancelled while `processing` was being written: nothing reached Blender.
            return;
        }
        match &job.kind {
            JobKind::Single {
                command_type,
                params,
            } => {
                job.set_progress(0, Some(command_type.clone()));
                let req = CommandRequest {
                    command_type: command_type.clone(),
                    params: params.clone(),
                    origin: CommandOrigin::Rpc,
                };
                let outcome = self.execute(req, Some(job)).await;
                let (status, error) = match &outcome.result {
                    Ok(r) if r.success => (JobStatus::Completed, None),
                    Ok(r) => (
                        JobStatus::Failed,
                        Some(serde_json::json!({
                            "kind": "blender_error",
                            "message": r.message.clone().unwrap_or_default(),
                        })),
                    ),
                    Err(e) => (JobStatus::Failed, Some(e.summary())),
                };
                job.set_progress(1, None);
                let finished = Finished {
                    status,
                    result: envelope(&outcome.result),
                    error,
                    at: unix_now(),
                };
                self.finish_job(job, finished, Some(outcome)).await;
            }
            JobKind::Batch {
                commands,
                stop_on_error,
            } => {
                let total = commands.len();
                let mut stopped: Option<(&str, String)> = None;
                for (i, (command_type, params)) in commands.iter().enumerate() {
                    if job.cancelling() {
                        break;
                    }
                    if self.session.is_closed() {
                        // The session is closing (or the manager stopping): a batch
                        // ends between commands instead of running past the drain.
                        stopped = Some((
                            "session_closed",
                            format!("the session closed after {i} of {total} commands"),
                        ));
                        break;
                    }
                    job.set_progress(i, Some(command_type.clone()));
                    let req = CommandRequest {
                        command_type: command_type.clone(),
                        params: params.clone(),
                        origin: CommandOrigin::Rpc,
                    };
                    let outcome = self.execute(req, Some(job)).await;
                    let env = envelope(&outcome.result)
                        .map(|e| e.to_raw())
                        .unwrap_or_else(|| {
                            let msg = outcome.result.as_ref().err().map(ToString::to_string);
                            RawJson::from_value(
                                &serde_json::json!({"status": "error", "message": msg}),
                            )
                        });
                    let ok = matches!(&outcome.result, Ok(r) if r.success);
                    if !job.push_batch_result(env) {
                        break;
                    }
                    job.set_progress(i + 1, None);
                    // Stopping early fails the batch; a failing last command stops
                    // nothing, so a batch whose every command ran is `completed`.
                    if !ok && *stop_on_error && i + 1 < total {
                        let why = match &outcome.result {
                            Ok(r) => r.message.clone().unwrap_or_default(),
                            Err(e) => e.to_string(),
                        };
                        stopped = Some((
                            "batch_stopped",
                            format!(
                                "stopped at command {} of {total} ({command_type}): {why}",
                                i + 1
                            ),
                        ));
                        break;
                    }
                }
                let finished = match stopped {
                    Some((kind, message)) => Finished {
                        status: JobStatus::Failed,
                        result: None,
                        error: Some(serde_json::json!({"kind": kind, "message": message})),
                        at: unix_now(),
                    },
                    None => Finished {
                        status: JobStatus::Completed,
                        result: None,
                        error: None,
                        at: unix_now(),
                    },
                };
                self.finish_job(job, finished, None).await;
            }
        }
    }

    /// Writes a job's final row, then publishes it (unless it was cancelled while
    /// running: then it stays cancelled, its late result discarded).
    async fn finish_job(
        &self,
        job: &Arc<Job>,
        finished: Finished,
        outcome: Option<CommandOutcome>,
    ) {
        job.finish(finished, outcome, &self.persist).await;
    }

    async fn execute(&mut self, req: CommandRequest, job: Option<&Arc<Job>>) -> CommandOutcome {
        let started = Instant::now();
        let timestamp = unix_now();
        let seq = {
            let mut d = self.session.data.lock();
            d.next_seq += 1;
            d.running = Some(req.command_type.clone());
            d.next_seq
        };
        let line = request::build(
            &req.command_type,
            req.params.as_ref(),
            Some(&self.session.id),
        );
        debug!(session = %self.session.id, command = %req.command_type, seq, "command sent");
        let result = {
            let killed = self.session.killed.clone();
            let answer = tokio::select! {
                r = self.link.request(&req.command_type, &line) => Some(r),
                _ = killed.cancelled() => None,
            };
            match answer {
                Some(r) => r,
                None => {
                    // An operator killed the session: abandon the command (Blender
                    // may still run it) and its socket, whose reply would come late.
                    self.link
                        .drop_connection("the session was killed during a command");
                    Err((
                        ManagerError::SessionNotFound(self.session.id.clone()),
                        Some(DisconnectReason::Killed),
                    ))
                }
            }
        };
        if let Err((_, Some(why))) = &result {
            self.metrics.disconnected(*why);
        }
        let duration = started.elapsed().as_secs_f64();

        let (status, stored_result, error) = match &result {
            Ok(reply) if reply.success => (
                CommandStatus::Success,
                Some(reply.result.truncated(self.limits.history_result_limit)),
                None,
            ),
            Ok(reply) => (
                CommandStatus::Error,
                Some(reply.result.truncated(self.limits.history_result_limit)),
                Some(match &reply.traceback {
                    Some(tb) => serde_json::json!({
                        "kind": "blender_error",
                        "message": reply.message.clone().unwrap_or_default(),
                        "traceback": tb,
                    }),
                    None => serde_json::json!({
                        "kind": "blender_error",
                        "message": reply.message.clone().unwrap_or_default(),
                    }),
                }),
            ),
            Err((_, Some(DisconnectReason::Killed))) => (
                CommandStatus::Cancelled,
                None,
                Some(serde_json::json!({
                    "kind": "killed",
                    "message": "the session was killed during this command; Blender may still run it",
                    "disconnect": "killed",
                })),
            ),
            Err((e, drop)) => {
                let status = match (e, drop) {
                    (ManagerError::BlenderTimeout { .. }, _) => CommandStatus::Timeout,
                    (ManagerError::BlenderDisconnected { .. }, _) => CommandStatus::Disconnected,
                    _ => CommandStatus::Error,
                };
                let mut summary = e.summary();
                if let (Some(why), Some(map)) = (drop, summary.as_object_mut()) {
                    map.insert("disconnect".into(), why.as_str().into());
                }
                (status, None, Some(summary))
            }
        };
        let status = if job.is_some_and(|j| j.status() == JobStatus::Cancelled) {
            CommandStatus::Cancelled
        } else {
            status
        };
        self.metrics
            .command_finished(&req.command_type, status, duration);
        match &result {
            Ok(reply) => debug!(
                session = %self.session.id, command = %req.command_type, seq,
                status = %if reply.success { "success" } else { "error" },
                duration_s = format_args!("{duration:.3}"),
                "response"
            ),
            Err((e, drop)) => warn!(
                session = %self.session.id, command = %req.command_type, seq,
                status = %status.as_str(), error = %e,
                link = %drop.map(DisconnectReason::as_str).unwrap_or("kept"),
                duration_s = format_args!("{duration:.3}"),
                "command failed"
            ),
        }
        let entry = HistoryEntry {
            seq,
            command: req.command_type.clone(),
            params: req
                .params
                .map(|p| p.truncated(self.limits.history_result_limit))
                .unwrap_or_else(RawJson::empty_object),
            status,
            result: stored_result.clone(),
            error,
            timestamp,
            duration,
            job_id: job.map(|j| j.id.clone()),
        };
        {
            let mut d = self.session.data.lock();
            d.running = None;
            d.command_count += 1;
            d.last_activity = Instant::now();
            d.last_activity_unix = unix_now();
            d.connected = self.link.is_connected();
            match &result {
                Ok(reply) => {
                    d.last_heartbeat = Some(d.last_activity_unix);
                    d.last_error = None;
                    if let Some(st) = &reply.addon_state {
                        d.state.apply_addon_state(st);
                    } else if reply.success && req.command_type == "get_scene_info" {
                        d.state.apply_scene_info(&reply.result);
                    }
                }
                Err((e, _)) => d.last_error = Some(e.to_string()),
            }
            d.state.last_command = Some(req.command_type.clone());
            d.state.last_result = stored_result;
        }
        // On disk before the entry is visible and before the caller is answered.
        self.persist.command_recorded(&self.session, &entry).await;
        self.session.data.lock().history.push(entry);
        CommandOutcome {
            seq,
            timestamp,
            duration,
            result: result.map_err(|(e, _)| e),
        }
    }

    /// Asks Blender for the scene and stores a snapshot (not a history entry: the
    /// manager issued this request, not the caller).
    async fn snapshot(&mut self) -> Result<Snapshot, ManagerError> {
        let line = request::build("get_scene_info", None, Some(&self.session.id));
        let result = self.link.request("get_scene_info", &line).await;
        let snap = {
            let mut d = self.session.data.lock();
            d.connected = self.link.is_connected();
            d.last_activity = Instant::now();
            d.last_activity_unix = unix_now();
            let reply = match result {
                Ok(reply) if reply.success => reply,
                Ok(reply) => {
                    return Err(ManagerError::BadReply {
                        reason: format!(
                            "get_scene_info failed: {}",
                            reply.message.unwrap_or_default()
                        ),
                    })
                }
                Err((e, _)) => {
                    d.last_error = Some(e.to_string());
                    return Err(e);
                }
            };
            d.last_heartbeat = Some(d.last_activity_unix);
            if let Some(st) = &reply.addon_state {
                d.state.apply_addon_state(st);
            } else {
                d.state.apply_scene_info(&reply.result);
            }
            d.next_snapshot += 1;
            Snapshot {
                snapshot_id: d.next_snapshot,
                session_id: self.session.id.clone(),
                timestamp: unix_now(),
                scene: reply.result.truncated(self.limits.snapshot_scene_limit),
                state: d.state.clone(),
            }
        };
        let row = Persist::session_row(&self.session);
        self.persist.snapshot_taken(&snap, row).await;
        let mut d = self.session.data.lock();
        if d.snapshots.len() >= self.limits.snapshot_limit {
            d.snapshots.pop_front();
        }
        d.snapshots.push_back(snap.clone());
        Ok(snap)
    }
}
