//! The idle reaper: every `sweep_interval`, closes sessions idle past `idle_timeout`.
//!
//! A session with a command queued or running is not idle, and a session owned by an
//! open compat connection is never reaped (it ends with its connection). The sweep is
//! one pass over the registry under its lock, reading each session's last activity.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::manager::Manager;
use crate::session::DisconnectReason;

/// Runs sweeps until `shutdown` fires.
/// The interval and the timeout are read at each sweep, so a reload changes them.
pub async fn run(manager: Arc<Manager>, shutdown: CancellationToken) {
    let mut next = tokio::time::Instant::now() + manager.config().sweep_interval;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {
                let config = manager.config();
                let closed = manager
                    .cleanup_idle_sessions(config.idle_timeout, DisconnectReason::Idle)
                    .await;
                if !closed.is_empty() {
                    tracing::debug!(count = closed.len(), "idle sweep closed sessions");
                }
                manager.pool().forget_retired();
                // Like `MissedTickBehavior::Delay`: a slow sweep pushes the next one.
                next = tokio::time::Instant::now() + manager.config().sweep_interval;
            }
        }
    }
}
