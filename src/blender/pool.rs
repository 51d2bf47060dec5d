//! The backends a manager drives, and where a new session goes.
//!
//! Concurrency design: the list sits behind a `parking_lot` lock held only to read or
//! replace it (never across an `.await`); each [`Backend`] is an `Arc` its sessions
//! and its probe task share. Placement takes a small mutex so that choosing the
//! least-loaded backend and counting the new session on it happen as one step:
//! a burst of `create_session` calls spreads instead of piling onto the backend that
//! looked emptiest to all of them. A reload adds backends, updates weights and
//! timeouts in place, and retires removed ones: a retired backend takes no new
//! session, keeps serving the sessions pinned to it, and is forgotten once the last
//! of them ends.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backend::{Backend, Seat};
use super::health;
use super::link::LinkSettings;
use crate::config::{BackendAddr, BackendSpec};
use crate::error::ManagerError;
use crate::pause::Pause;

/// Probe timing, changed by a reload.
#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub failures: u32,
}

pub struct BackendPool {
    backends: RwLock<Vec<Arc<Backend>>>,
    placing: Mutex<()>,
    health: Arc<Mutex<HealthSettings>>,
    settings: Mutex<LinkSettings>,
    /// The whole-manager pause switch (each backend has its own too).
    pub pause: Arc<Pause>,
    /// Probe tasks (apart from session tasks, so "no session task left" stays
    /// a meaningful test of quiescence).
    probe_tasks: TaskTracker,
    /// Set by [`start_probes`](Self::start_probes): probes run until it fires.
    probes: Mutex<Option<CancellationToken>>,
}

/// What a reload did to the backend list.
#[derive(Debug, Default)]
pub struct PoolChanges {
    pub added: Vec<String>,
    pub retired: Vec<String>,
    pub reweighted: Vec<String>,
}

impl BackendPool {
    pub fn new(specs: &[BackendSpec], settings: LinkSettings, health: HealthSettings) -> Self {
        BackendPool {
            backends: RwLock::new(
                specs
                    .iter()
                    .map(|s| Arc::new(Backend::new(s, settings)))
                    .collect(),
            ),
            placing: Mutex::new(()),
            health: Arc::new(Mutex::new(health)),
            settings: Mutex::new(settings),
            pause: Arc::default(),
            probe_tasks: TaskTracker::new(),
            probes: Mutex::new(None),
        }
    }

    /// Every backend, configured ones first in their order, then retired ones.
    pub fn all(&self) -> Vec<Arc<Backend>> {
        let mut all = self.backends.read().clone();
        all.sort_by_key(|b| b.is_retired());
        all
    }

    /// A configured (not retired) backend by name, or by its `HOST:PORT`.
    pub fn get(&self, name: &str) -> Option<Arc<Backend>> {
        let all = self.backends.read();
        let configured = || all.iter().filter(|b| !b.is_retired());
        configured()
            .find(|b| b.name == name)
            .or_else(|| configured().find(|b| b.address.to_string() == name))
            .cloned()
    }

    /// The backend a restored session was pinned to, by address (then by name);
    /// one no longer configured comes back as a retired backend, so the session
    /// keeps its Blender.
    pub fn adopt(&self, pinned: &str) -> Arc<Backend> {
        {
            let all = self.backends.read();
            if let Some(b) = all
                .iter()
                .find(|b| b.address.to_string() == pinned)
                .or_else(|| all.iter().find(|b| b.name == pinned))
            {
                return b.clone();
            }
        }
        let addr: BackendAddr = match pinned.parse() {
            Ok(a) => a,
            Err(_) => return self.all()[0].clone(),
        };
        let b = Arc::new(Backend::new(&BackendSpec::new(addr), *self.settings.lock()));
        b.retire();
        self.backends.write().push(b.clone());
        self.spawn_probe(&b);
        b
    }

    pub fn health(&self) -> HealthSettings {
        *self.health.lock()
    }

    /// Picks a backend for a new session and counts the session on it. `wanted`
    /// names one; otherwise the healthy backend with the fewest sessions per unit of
    /// weight (ties: the first listed), preferring one that is not paused.
    pub(crate) fn place(&self, wanted: Option<&str>) -> Result<(Arc<Backend>, Seat), ManagerError> {
        let _placing = self.placing.lock();
        let chosen = match wanted {
            Some(name) => {
                let b = self.get(name).ok_or_else(|| {
                    let known: Vec<String> = self.names();
                    ManagerError::invalid_params(
                        "backend",
                        format!(
                            "unknown backend {name:?} (configured: {})",
                            known.join(", ")
                        ),
                    )
                })?;
                if b.is_down() {
                    return Err(ManagerError::BlenderUnavailable {
                        address: b.address.to_string(),
                        reason: b.down_reason(),
                    });
                }
                if b.is_draining() {
                    return Err(ManagerError::BlenderUnavailable {
                        address: b.address.to_string(),
                        reason: format!("backend {name} is draining: it takes no new sessions"),
                    });
                }
                b
            }
            None => {
                let all = self.backends.read();
                let open: Vec<&Arc<Backend>> =
                    all.iter().filter(|b| b.accepts_sessions()).collect();
                let running: Vec<&Arc<Backend>> = open
                    .iter()
                    .copied()
                    .filter(|b| !b.pause.is_paused())
                    .collect();
                let tier = if running.is_empty() { &open } else { &running };
                // sessions_a / weight_a < sessions_b / weight_b, without division.
                let best = tier.iter().copied().reduce(|best, b| {
                    let lhs = b.sessions() as u128 * u128::from(best.weight());
                    let rhs = best.sessions() as u128 * u128::from(b.weight());
                    if lhs < rhs {
                        b
                    } else {
                        best
                    }
                });
                match best {
                    Some(b) => b.clone(),
                    None => {
                        let why: Vec<String> = all
                            .iter()
                            .filter(|b| !b.is_retired())
                            .map(|b| format!("{} is {}", b.name, b.state()))
                            .collect();
                        return Err(ManagerError::BlenderUnavailable {
                            address: all
                                .iter()
                                .filter(|b| !b.is_retired())
                                .map(|b| b.address.to_string())
                                .collect::<Vec<_>>()
                                .join(","),
                            reason: format!("no backend takes new sessions ({})", why.join(", ")),
                        });
                    }
                }
            }
        };
        let seat = chosen.seat();
        Ok((chosen, seat))
    }

    pub fn names(&self) -> Vec<String> {
        self.backends
            .read()
            .iter()
            .filter(|b| !b.is_retired())
            .map(|b| b.name.clone())
            .collect()
    }

    /// Applies a reloaded backend list and timeouts. A backend keeps its identity
    /// (sessions, health) when its name and address are unchanged.
    pub fn apply(
        &self,
        specs: &[BackendSpec],
        settings: LinkSettings,
        health: HealthSettings,
    ) -> PoolChanges {
        *self.settings.lock() = settings;
        *self.health.lock() = health;
        let mut changes = PoolChanges::default();
        let mut added = Vec::new();
        {
            let mut all = self.backends.write();
            for b in all.iter() {
                b.set_settings(settings);
                let kept = specs
                    .iter()
                    .find(|s| s.name == b.name && s.address == b.address);
                match kept {
                    Some(spec) if !b.is_retired() && spec.weight != b.weight() => {
                        b.set_weight(spec.weight);
                        changes.reweighted.push(b.name.clone());
                    }
                    Some(_) => {}
                    None if !b.is_retired() => {
                        b.retire();
                        changes.retired.push(b.name.clone());
                    }
                    None => {}
                }
            }
            for spec in specs {
                let exists = all
                    .iter()
                    .any(|b| b.name == spec.name && b.address == spec.address && !b.is_retired());
                if !exists {
                    let b = Arc::new(Backend::new(spec, settings));
                    changes.added.push(b.name.clone());
                    all.push(b.clone());
                    added.push(b);
                }
            }
        }
        for b in &added {
            self.spawn_probe(b);
        }
        self.forget_retired();
        changes
    }

    /// Drops retired backends no session uses any more.
    pub fn forget_retired(&self) {
        let mut all = self.backends.write();
        all.retain(|b| {
            let keep = !b.is_retired() || b.sessions() > 0;
            if !keep {
                b.stop.cancel();
            }
            keep
        });
    }

    /// Starts a probe task per backend (and for backends added later) that runs
    /// until `shutdown` fires.
    pub fn start_probes(&self, shutdown: CancellationToken) {
        *self.probes.lock() = Some(shutdown);
        for b in self.all() {
            self.spawn_probe(&b);
        }
    }

    /// Waits for the probe tasks to end (after the shutdown token fired).
    pub async fn probes_stopped(&self) {
        self.probe_tasks.close();
        self.probe_tasks.wait().await;
    }

    fn spawn_probe(&self, backend: &Arc<Backend>) {
        let Some(shutdown) = self.probes.lock().clone() else {
            return;
        };
        let tasks = &self.probe_tasks;
        let env = health::ProbeEnv {
            settings: self.health.clone(),
            pause: self.pause.clone(),
        };
        tasks.spawn(health::run(backend.clone(), env, shutdown));
    }

    pub fn status(&self) -> Vec<Value> {
        self.all().iter().map(|b| b.status()).collect()
    }
}
