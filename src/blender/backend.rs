//! One Blender backend: where it is, how much it takes, whether it is healthy, and
//! the gate every session's connect to it goes through.
//!
//! Concurrency design: a `Backend` is shared (`Arc`) by the pool, its probe task and
//! the links of the sessions pinned to it. Counters and switches are atomics; the
//! figures a status read shows sit behind small `parking_lot` mutexes never held
//! across an `.await`. Connects are single-flight: an attempt holds the async
//! `gate`; a link that waited for the gate while another attempt ran takes that
//! attempt's outcome instead of dialling again (a failure is shared, a success lets
//! it dial its own socket), and while the shared backoff runs links fail at once
//! with the time of the next attempt. So twenty sessions finding Blender gone make
//! one attempt per backoff step between them, not twenty. While the probe task has
//! marked the backend down, links do not dial at all; only the probe does.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::link::LinkSettings;
use crate::clock::unix_now;
use crate::config::{BackendAddr, BackendSpec};
use crate::pause::Pause;

/// Health and connect figures of one backend.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub address: BackendAddr,
    weight: AtomicU32,
    settings: Mutex<LinkSettings>,
    /// Live sessions pinned here.
    sessions: AtomicUsize,
    /// Commands (and snapshots) sent and not yet answered.
    in_flight: AtomicUsize,
    down: AtomicBool,
    draining: AtomicBool,
    /// Removed from the configuration; stays until its sessions end.
    retired: AtomicBool,
    pub pause: Pause,
    probe_failures: AtomicU32,
    gate: tokio::sync::Mutex<()>,
    /// Bumped when a gated attempt finishes, so waiters know to share its outcome.
    generation: AtomicU64,
    backoff: Mutex<(Backoff, Option<String>)>,
    connect_attempts: AtomicU64,
    probe_connects: AtomicU64,
    last_success: Mutex<Option<f64>>,
    last_failure: Mutex<Option<(f64, String)>>,
    last_probe: Mutex<Option<(f64, bool)>>,
    /// Exponentially weighted round-trip time in microseconds (0 = unknown).
    latency_us: AtomicU64,
    /// Stops the probe task.
    pub(crate) stop: CancellationToken,
}

impl Backend {
    pub fn new(spec: &BackendSpec, settings: LinkSettings) -> Self {
        Backend {
            name: spec.name.clone(),
            address: spec.address.clone(),
            weight: AtomicU32::new(spec.weight.max(1)),
            settings: Mutex::new(settings),
            sessions: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            pause: Pause::default(),
            probe_failures: AtomicU32::new(0),
            gate: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            backoff: Mutex::new((Backoff::default(), None)),
            connect_attempts: AtomicU64::new(0),
            probe_connects: AtomicU64::new(0),
            last_success: Mutex::new(None),
            last_failure: Mutex::new(None),
            last_probe: Mutex::new(None),
            latency_us: AtomicU64::new(0),
            stop: CancellationToken::new(),
        }
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub(crate) fn set_weight(&self, weight: u32) {
        self.weight.store(weight.max(1), Ordering::Relaxed);
    }

    /// Timeouts and limits for the next command (a reload changes them; a command
    /// already sent keeps the ones it started with).
    pub fn settings(&self) -> LinkSettings {
        *self.settings.lock()
    }

    pub(crate) fn set_settings(&self, settings: LinkSettings) {
        *self.settings.lock() = settings;
    }

    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    /// Counts one session on this backend until the returned seat drops.
    pub(crate) fn seat(self: &Arc<Self>) -> Seat {
        self.sessions.fetch_add(1, Ordering::AcqRel);
        Seat(self.clone())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts a request in flight until the guard drops (also when the request's
    /// future is dropped half-way).
    pub(crate) fn busy(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self)
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire) || self.is_retired()
    }

    /// Returns whether it changed.
    pub(crate) fn set_draining(&self, draining: bool) -> bool {
        self.draining.swap(draining, Ordering::AcqRel) != draining
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Takes new sessions: up, not draining, not retired.
    pub fn accepts_sessions(&self) -> bool {
        !self.is_down() && !self.is_draining()
    }

    /// `up`, `down` or `draining` (a down backend is `down` even while draining).
    pub fn state(&self) -> &'static str {
        if self.is_down() {
            "down"
        } else if self.is_draining() {
            "draining"
        } else {
            "up"
        }
    }

    /// Why a command to this backend fails at once while it is down.
    pub fn down_reason(&self) -> String {
        let failures = self.probe_failures.load(Ordering::Acquire);
        let last = self
            .last_failure
            .lock()
            .as_ref()
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| "no answer".into());
        format!(
            "backend {} is down ({failures} failed health probes in a row; last: {last}); \
             commands fail at once until a probe succeeds",
            self.name
        )
    }

    /// Connects a session's socket through the single-flight gate (see the module
    /// docs). The error is the reason, for a `blender_unavailable` message.
    pub async fn connect(&self) -> Result<TcpStream, String> {
        if self.is_down() {
            return Err(self.down_reason());
        }
        let seen = self.generation.load(Ordering::Acquire);
        let gate = self.gate.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            // Another attempt finished while this one waited for the gate.
            let shared_failure = self.backoff.lock().1.clone();
            if let Some(failure) = shared_failure {
                return Err(self.backoff_message(&failure));
            }
            drop(gate);
            let outcome = self.dial().await;
            if let Err(e) = &outcome {
                let _gate = self.gate.lock().await;
                self.attempt_finished(Err(e.clone()));
            }
            return outcome;
        }
        let pending = {
            let b = self.backoff.lock();
            b.0.check(Instant::now())
                .err()
                .map(|_| b.1.clone().unwrap_or_default())
        };
        if let Some(failure) = pending {
            return Err(self.backoff_message(&failure));
        }
        let outcome = self.dial().await;
        self.attempt_finished(outcome.as_ref().map(|_| ()).map_err(Clone::clone));
        drop(gate);
        outcome
    }

    /// Records a gated attempt's outcome (called with the gate held).
    fn attempt_finished(&self, outcome: Result<(), String>) {
        {
            match outcome {
                Ok(()) => self.clear_backoff(),
                Err(e) => {
                    let mut b = self.backoff.lock();
                    b.0.record_failure(Instant::now());
                    b.1 = Some(e);
                }
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn backoff_message(&self, failure: &str) -> String {
        match self.backoff.lock().0.check(Instant::now()) {
            Err(wait) => format!("{failure}; next attempt in {:.2}s", wait.as_secs_f64()),
            Ok(()) => failure.to_string(),
        }
    }

    /// One TCP connect, bounded by the connect timeout.
    async fn dial(&self) -> Result<TcpStream, String> {
        self.connect_attempts.fetch_add(1, Ordering::Relaxed);
        let outcome = dial(&self.address, self.settings().connect_timeout).await;
        match &outcome {
            Ok(_) => self.record_success(None),
            Err(e) => self.record_failure(e.clone()),
        }
        outcome
    }

    /// The probe's own connect: not gated, not refused while down.
    pub(crate) async fn dial_probe(&self, timeout: Duration) -> Result<TcpStream, String> {
        self.probe_connects.fetch_add(1, Ordering::Relaxed);
        dial(&self.address, timeout).await
    }

    /// Socket connects made for sessions (not probes) since start.
    pub fn connect_attempts(&self) -> u64 {
        self.connect_attempts.load(Ordering::Relaxed)
    }

    pub fn probe_connects(&self) -> u64 {
        self.probe_connects.load(Ordering::Relaxed)
    }

    pub fn record_success(&self, round_trip: Option<Duration>) {
        *self.last_success.lock() = Some(unix_now());
        if let Some(rt) = round_trip {
            let sample = rt.as_micros().min(u128::from(u64::MAX)) as u64;
            let old = self.latency_us.load(Ordering::Relaxed);
            let new = if old == 0 {
                sample
            } else {
                (old * 7 + sample) / 8
            };
            self.latency_us.store(new.max(1), Ordering::Relaxed);
        }
    }

    pub fn record_failure(&self, error: impl Into<String>) {
        *self.last_failure.lock() = Some((unix_now(), error.into()));
    }

    /// A probe answered: the backend is up (again). Returns whether it was down.
    pub(crate) fn probe_succeeded(&self, round_trip: Duration) -> bool {
        *self.last_probe.lock() = Some((unix_now(), true));
        self.probe_failures.store(0, Ordering::Release);
        self.record_success(Some(round_trip));
        let was_down = self.down.swap(false, Ordering::AcqRel);
        if was_down {
            // Sessions may connect at once: the probe just did.
            self.clear_backoff();
        }
        was_down
    }

    /// A probe failed; after `threshold` in a row the backend is down. Returns
    /// whether this failure marked it down.
    pub(crate) fn probe_failed(&self, error: String, threshold: u32) -> bool {
        *self.last_probe.lock() = Some((unix_now(), false));
        self.record_failure(error);
        let failures = self.probe_failures.fetch_add(1, Ordering::AcqRel) + 1;
        failures >= threshold && !self.down.swap(true, Ordering::AcqRel)
    }

    /// Forgets probe failures (after a resume: the operator says it is back).
    pub(crate) fn reset_health(&self) {
        self.probe_failures.store(0, Ordering::Release);
        self.down.store(false, Ordering::Release);
        self.clear_backoff();
    }

    /// The next connect may be made at once.
    fn clear_backoff(&self) {
        let mut b = self.backoff.lock();
        b.0.record_success();
        b.1 = None;
    }

    pub fn status(&self) -> Value {
        let latency = self.latency_us.load(Ordering::Relaxed);
        let last_failure = self.last_failure.lock().clone();
        json!({
            "name": self.name,
            "address": self.address.to_string(),
            "state": self.state(),
            "weight": self.weight(),
            "sessions": self.sessions(),
            "in_flight": self.in_flight(),
            "paused": self.pause.is_paused(),
            "draining": self.is_draining(),
            "retired": self.is_retired(),
            "last_error": last_failure.as_ref().map(|(_, e)| e.clone()),
            "last_error_at": last_failure.as_ref().map(|(at, _)| *at),
            "latency_ms": (latency > 0).then(|| latency as f64 / 1000.0),
            "probe_failures": self.probe_failures.load(Ordering::Acquire),
            "last_probe_at": self.last_probe.lock().map(|(at, _)| at),
            "last_probe_ok": self.last_probe.lock().map(|(_, ok)| ok),
            "connect_attempts": self.connect_attempts(),
        })
    }
}

/// A session counted on a backend; held by the session's task (or dropped on a
/// path where the task never starts), so the count cannot leak.
#[derive(Debug)]
pub(crate) struct Seat(Arc<Backend>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request in flight on a backend; see [`Backend::busy`].
pub(crate) struct InFlight<'a>(&'a Backend);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn dial(address: &BackendAddr, timeout: Duration) -> Result<TcpStream, String> {
    let target = (address.host.as_str(), address.port);
    match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within connect timeout {}s",
            timeout.as_secs_f64()
        )),
    }
}
