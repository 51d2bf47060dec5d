//! The idle reaper: every `sweep_interval`, closes sessions idle past `idle_timeout`.
//!
//! A session with a command queued or running is not idle, and a session owned by an
//! open compat connection is never reaped (it ends with its connection). The sweep is
//! one pass over the registry under its lock, reading each session's last activity.

use std::sync::Arc;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::manager::Manager;
use crate::session::CloseReason;

/// Runs sweeps until `shutdown` fires.
pub async fn run(manager: Arc<Manager>, shutdown: CancellationToken) {
    let period = manager.config().sweep_interval;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {
                let timeout = manager.config().idle_timeout;
                let closed = manager.cleanup_idle_sessions(timeout, CloseReason::Idle).await;
                if !closed.is_empty() {
                    tracing::debug!(count = closed.len(), "idle sweep closed sessions");
                }
            }
        }
    }
}
