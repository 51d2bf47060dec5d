//! The reaper sweep over 100,000 link-less sessions, in process.
//!
//! Sessions are put in a [`Manager`] the way a restart restores them (each with its
//! session task, no backend socket: restored sessions reconnect lazily), then
//! `Manager::cleanup_idle_sessions` — the function the reaper calls every
//! `sweep_interval` — is timed. A log subscriber like the manager's (text, `info`,
//! non-blocking writer, here into a sink) is installed so the per-session "session
//! reaped" lines cost what they cost in the service.

use std::time::{Duration, Instant};

use serde::Serialize;

use blender_session_manager::config::{BackendSpec, Config};
use blender_session_manager::manager::Manager;
use blender_session_manager::session::DisconnectReason;
use blender_session_manager::store::{Restored, RestoredSession, SessionRow};

#[derive(Clone, Debug, Serialize)]
pub struct SweepResult {
    pub sessions: usize,
    /// Sweeps that find nothing to reap (the steady state): every run, in ms.
    pub scan_only_ms: Vec<f64>,
    pub scan_only_best_ms: f64,
    pub scan_only_median_ms: f64,
    /// One sweep that reaps 1% of the sessions.
    pub reap_1pct_ms: f64,
    pub reap_1pct_closed: usize,
    /// One sweep that reaps every remaining session.
    pub reap_all_ms: f64,
    pub reap_all_closed: usize,
    pub restore_s: f64,
}

fn rows(n: usize, offset: usize) -> Restored {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    Restored {
        sessions: (0..n)
            .map(|i| RestoredSession {
                row: SessionRow {
                    id: format!("scene-20260101-000000-{:08x}", offset + i),
                    created_at: now,
                    backend: "127.0.0.1:9".into(),
                    owner: "rpc".into(),
                    metadata: "{}".into(),
                    state: "{}".into(),
                    command_count: 0,
                    next_seq: 0,
                    next_snapshot: 0,
                    last_activity: now,
                },
                history: vec![],
                snapshots: vec![],
            })
            .collect(),
        jobs: vec![],
    }
}

pub fn run(n: usize, scan_runs: usize) -> std::io::Result<SweepResult> {
    let (writer, _guard) = blender_session_manager::logging::Batcher::start(std::io::sink());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let config = Config {
            max_sessions: n * 2,
            backends: vec![BackendSpec::new("127.0.0.1:9".parse().expect("address"))],
            ..Config::default()
        };
        let manager = Manager::new(config);
        let old = n / 100;
        let restore_started = Instant::now();
        manager.restore(rows(old, 0)).await;
        let old_done = Instant::now();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let young_started = tokio::time::Instant::now();
        manager.restore(rows(n - old, old)).await;
        let restore_s = restore_started.elapsed().as_secs_f64() - 1.5;
        assert_eq!(manager.registry().len(), n, "all sessions restored");
        let _ = old_done;

        // Steady state: nothing is idle past an hour.
        let mut scan = Vec::with_capacity(scan_runs);
        for _ in 0..scan_runs {
            let s = Instant::now();
            let closed = manager
                .cleanup_idle_sessions(Duration::from_secs(3600), DisconnectReason::Idle)
                .await;
            scan.push(s.elapsed().as_secs_f64() * 1e3);
            assert!(closed.is_empty());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // 1%: a timeout between the two batches' ages reaps exactly the old batch.
        let timeout = young_started.elapsed() + Duration::from_millis(700);
        let s = Instant::now();
        let closed_1 = manager
            .cleanup_idle_sessions(timeout, DisconnectReason::Idle)
            .await;
        let reap_1pct_ms = s.elapsed().as_secs_f64() * 1e3;
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Everything left.
        let s = Instant::now();
        let closed_all = manager
            .cleanup_idle_sessions(Duration::ZERO, DisconnectReason::Idle)
            .await;
        let reap_all_ms = s.elapsed().as_secs_f64() * 1e3;
        let mut sorted = scan.clone();
        sorted.sort_by(f64::total_cmp);
        Ok(SweepResult {
            sessions: n,
            scan_only_best_ms: sorted.first().copied().unwrap_or(0.0),
            scan_only_median_ms: crate::stats::median(&scan),
            scan_only_ms: scan,
            reap_1pct_ms,
            reap_1pct_closed: closed_1.len(),
            reap_all_ms,
            reap_all_closed: closed_all.len(),
            restore_s,
        })
    })
}
