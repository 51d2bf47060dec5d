//! Prunes finished jobs after the job TTL, on the idle sweep's interval, and at
//! once when finished jobs' results pass the byte bound.

use std::sync::Arc;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::manager::Manager;

pub async fn run(manager: Arc<Manager>, shutdown: CancellationToken) {
    let period = manager.config().sweep_interval;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => manager.prune_jobs().await,
            _ = manager.jobs().over_budget() => manager.prune_jobs().await,
        }
    }
}
