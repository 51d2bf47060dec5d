//! Health probes: one task and one persistent probe connection per backend.
//!
//! Concurrency design: the probe task owns its connection (never a session's socket,
//! so a probe is never pipelined behind a command). Every `health_interval` it sends
//! one probe and waits for the reply within `health_timeout`. It skips a round while
//! a command of the backend's sessions is in flight (Blender runs one command at a
//! time: a probe would queue behind it and prove nothing) and while the backend or
//! the manager is paused (an operator is restarting Blender). The first request on a
//! new probe connection is `get_addon_info`: when its capabilities list `ping`, the
//! probe is `ping` (answered off Blender's main thread by the project's addon);
//! otherwise `get_addon_info` itself, which a stock addon answers "Unknown command
//! type" — any reply means alive. `health_failures` failures in a row mark the
//! backend down (its sessions' commands then fail at once); one success marks it up.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backend::Backend;
use super::pool::HealthSettings;
use crate::pause::Pause;
use crate::wire::{Frame, JsonFrameCodec, NewlinePolicy};

/// Replies to probes are small; anything bigger is not an addon.
const PROBE_MAX_FRAME: usize = 1024 * 1024;

/// What a probe task reads live: timing (a reload changes it) and the manager's
/// pause switch.
pub struct ProbeEnv {
    pub settings: Arc<Mutex<HealthSettings>>,
    pub pause: Arc<Pause>,
}

struct ProbeConn {
    reader: FramedRead<OwnedReadHalf, JsonFrameCodec>,
    writer: OwnedWriteHalf,
    command: &'static str,
}

/// Probes `backend` until `shutdown` fires or the backend is forgotten.
pub async fn run(backend: Arc<Backend>, env: ProbeEnv, shutdown: CancellationToken) {
    let mut conn: Option<ProbeConn> = None;
    loop {
        let settings = *env.settings.lock();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = backend.stop.cancelled() => return,
            _ = tokio::time::sleep(settings.interval) => {}
        }
        if env.pause.is_paused() || backend.pause.is_paused() || backend.in_flight() > 0 {
            continue;
        }
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = backend.stop.cancelled() => return,
            r = tokio::time::timeout(settings.timeout, probe(&backend, &mut conn, settings.timeout)) => r,
        };
        let outcome = match outcome {
            Ok(r) => r,
            Err(_) => Err(format!(
                "health probe got no answer within {}s",
                settings.timeout.as_secs_f64()
            )),
        };
        match outcome {
            Ok(round_trip) => {
                if backend.probe_succeeded(round_trip) {
                    info!(backend = %backend.name, address = %backend.address, "backend is up again");
                }
            }
            Err(error) => {
                conn = None;
                debug!(backend = %backend.name, error = %error, "health probe failed");
                if backend.probe_failed(error.clone(), settings.failures) {
                    warn!(
                        backend = %backend.name, address = %backend.address, error = %error,
                        failures = settings.failures,
                        "backend marked down: its sessions' commands fail at once until a probe succeeds"
                    );
                }
            }
        }
    }
}

/// One probe; opens (and sizes up) the probe connection first when there is none.
async fn probe(
    backend: &Backend,
    conn: &mut Option<ProbeConn>,
    timeout: Duration,
) -> Result<Duration, String> {
    if conn.is_none() {
        let stream = backend.dial_probe(timeout).await?;
        let (read, writer) = stream.into_split();
        let mut fresh = ProbeConn {
            reader: FramedRead::new(
                read,
                JsonFrameCodec::new(NewlinePolicy::Stream, PROBE_MAX_FRAME),
            ),
            writer,
            command: "get_addon_info",
        };
        let info = exchange(&mut fresh, "get_addon_info").await?;
        let has_ping = info["result"]["capabilities"]
            .as_array()
            .is_some_and(|caps| caps.iter().any(|c| c == "ping"));
        if has_ping {
            fresh.command = "ping";
        }
        *conn = Some(fresh);
    }
    let c = conn.as_mut().expect("opened above");
    let started = Instant::now();
    exchange(c, c.command).await?;
    Ok(started.elapsed())
}

/// Sends one probe request and reads one reply; any JSON reply counts.
async fn exchange(conn: &mut ProbeConn, command: &str) -> Result<serde_json::Value, String> {
    let line = format!("{{\"type\": \"{command}\", \"params\": {{}}}}\n");
    conn.writer
        .write_all(line.as_bytes())
        .await
        .map_err(|e| format!("health probe could not be sent: {e}"))?;
    match conn.reader.next().await {
        Some(Ok(Frame::Value(frame))) => {
            Ok(serde_json::from_slice(&frame.strict_bytes()).unwrap_or_default())
        }
        Some(Ok(Frame::Invalid(e))) => Err(format!("health probe got an unframeable reply: {e}")),
        Some(Err(e)) => Err(format!("health probe connection failed: {e}")),
        None => Err("Blender closed the health probe connection".into()),
    }
}
