//! The measured scenarios: latency, big replies, throughput, scale.
//!
//! Cells of one scenario run in interleaved rounds (round r starts at a different
//! path, so no path always runs first or last), and each cell keeps every round.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::client::{self, AsyncConn, Conn, Expect, ReadBuf};
use crate::procs::{self, cpu_mark, cpu_percent};
use crate::stats::Pcts;

/// How a path is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Straight to the backend, one keep-alive connection per session.
    Direct,
    /// Through HAProxy in TCP mode.
    Haproxy,
    /// Through the manager's addon-compatible port (one connection = one session).
    Compat,
    /// Through the manager's JSON-RPC port (`create_session`, then `send_command`).
    Rpc,
    /// Stock-style: a new connection to the backend for every request.
    Reconnect,
    /// Straight to the backend with the request the manager sends (`session_id` and
    /// `_state: true`, so the addon piggybacks its scene state): separates what the
    /// addon spends on the manager's extras from what the manager itself adds.
    DirectAsManager,
}

#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub kind: Kind,
    pub addr: SocketAddr,
    /// The process in the middle (manager or HAProxy), for CPU% and RSS.
    pub proxy_pid: Option<u32>,
    /// The manager's JSON-RPC address (status polls between cells).
    pub rpc: Option<SocketAddr>,
}

/// A persistent blocking client of one target (one session).
pub struct Client {
    conn: Conn,
    req: Vec<u8>,
    expect: Expect,
    session: Option<String>,
}

impl Client {
    pub fn open(t: &Target, command: &str) -> io::Result<Client> {
        let mut conn = Conn::connect(t.addr)?;
        let (req, expect, session) = match t.kind {
            Kind::Rpc => {
                let id = client::create_session(&mut conn)?;
                (
                    client::rpc_send_command(&id, command),
                    Expect::Rpc,
                    Some(id),
                )
            }
            Kind::DirectAsManager => (as_manager_request(command), Expect::Addon, None),
            _ => (client::addon_request(command), Expect::Addon, None),
        };
        Ok(Client {
            conn,
            req,
            expect,
            session,
        })
    }

    /// One round trip; `Ok(false)` when the reply is not a success.
    pub fn once(&mut self) -> io::Result<bool> {
        self.conn
            .roundtrip(&self.req, self.expect)
            .map(|(_, ok)| ok)
    }

    /// One round trip; returns the reply length.
    pub fn once_len(&mut self) -> io::Result<(usize, bool)> {
        self.conn.roundtrip(&self.req, self.expect)
    }

    /// Closes a JSON-RPC session (compat sessions close with their connection).
    pub fn close(mut self) {
        if let Some(id) = self.session.take() {
            let _ = self.conn.call_value(&client::rpc_request(
                9,
                "close_session",
                &json!({"session_id": id}),
            ));
        }
    }
}

/// Rotates `items` left by `r` (interleaving: each round starts elsewhere).
fn rotated<T: Clone>(items: &[T], r: usize) -> Vec<T> {
    let mut v = items.to_vec();
    if !v.is_empty() {
        let k = r % v.len();
        v.rotate_left(k);
    }
    v
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencyResult {
    pub name: String,
    pub kind: Kind,
    pub rounds: Vec<Pcts>,
    pub best: Pcts,
    pub errors: usize,
}

pub struct LatencyPlan {
    pub rounds: usize,
    pub samples: usize,
    pub reconnect_samples: usize,
    pub warmup: usize,
}

/// Round-trip latency of one session per target, `command` with an instant reply.
pub fn latency(
    targets: &[Target],
    command: &str,
    plan: &LatencyPlan,
) -> io::Result<Vec<LatencyResult>> {
    let mut clients: Vec<Option<Client>> = Vec::new();
    for t in targets {
        clients.push(match t.kind {
            Kind::Reconnect => None,
            _ => Some(Client::open(t, command).map_err(|e| {
                io::Error::other(format!("{}: cannot open a session: {e}", t.name))
            })?),
        });
    }
    let mut results: Vec<LatencyResult> = targets
        .iter()
        .map(|t| LatencyResult {
            name: t.name.clone(),
            kind: t.kind,
            rounds: vec![],
            best: Pcts::default(),
            errors: 0,
        })
        .collect();
    let reconnect_req = client::addon_request(command);
    let mut rb = ReadBuf::new();
    let order: Vec<usize> = (0..targets.len()).collect();
    for r in 0..plan.rounds {
        for i in rotated(&order, r) {
            let t = &targets[i];
            let n = if t.kind == Kind::Reconnect {
                plan.reconnect_samples
            } else {
                plan.samples
            };
            let mut samples = Vec::with_capacity(n);
            let mut errors = 0;
            let warm = if t.kind == Kind::Reconnect {
                plan.warmup.min(n / 4)
            } else {
                plan.warmup
            };
            for k in 0..warm + n {
                let start = Instant::now();
                let ok = match &mut clients[i] {
                    Some(c) => c.once(),
                    None => client::reconnect_roundtrip(t.addr, &reconnect_req, &mut rb),
                };
                let took = start.elapsed();
                match ok {
                    Ok(true) => {
                        if k >= warm {
                            samples.push(took.as_nanos() as u64);
                        }
                    }
                    Ok(false) => errors += 1,
                    Err(e) => {
                        return Err(io::Error::other(format!(
                            "{}: round trip failed: {e}",
                            t.name
                        )))
                    }
                }
            }
            let p = Pcts::from_ns(&mut samples);
            eprintln!(
                "  latency round {}/{} {:<22} p50 {:>8.1} µs  p99 {:>8.1} µs  p999 {:>8.1} µs{}",
                r + 1,
                plan.rounds,
                t.name,
                p.p50_us,
                p.p99_us,
                p.p999_us,
                if errors > 0 {
                    format!("  ({errors} error replies)")
                } else {
                    String::new()
                }
            );
            results[i].rounds.push(p);
            results[i].errors += errors;
        }
    }
    for c in clients.into_iter().flatten() {
        c.close();
    }
    for r in &mut results {
        r.best = Pcts::best_of(&r.rounds);
    }
    Ok(results)
}

#[derive(Clone, Debug, Serialize)]
pub struct BigResult {
    pub name: String,
    pub reply_bytes: usize,
    pub times_s: Vec<f64>,
    pub best_s: f64,
    pub median_s: f64,
    pub best_mb_s: f64,
    pub reads: Option<usize>,
    pub errors: usize,
}

pub struct BigPlan {
    pub rounds: usize,
    pub reps: usize,
    pub stock_rounds: usize,
}

/// Time to fetch one big reply, per target, plus the stock client's re-parse
/// reassembly straight from the backend (`stock`).
pub fn big(
    targets: &[Target],
    stock: Option<SocketAddr>,
    plan: &BigPlan,
) -> io::Result<Vec<BigResult>> {
    let mut clients = Vec::new();
    for t in targets {
        clients
            .push(Client::open(t, "big_reply").map_err(|e| {
                io::Error::other(format!("{}: cannot open a session: {e}", t.name))
            })?);
    }
    let mut times: Vec<Vec<f64>> = vec![vec![]; targets.len()];
    let mut sizes = vec![0usize; targets.len()];
    let mut errors = vec![0usize; targets.len()];
    let mut stock_times = vec![];
    let mut stock_size = 0;
    let mut stock_reads = 0;
    let mut stock_conn = match stock {
        Some(addr) => {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(180)))?;
            Some(s)
        }
        None => None,
    };
    let order: Vec<usize> = (0..targets.len()).collect();
    for r in 0..plan.rounds {
        for i in rotated(&order, r) {
            for _ in 0..plan.reps {
                let start = Instant::now();
                let (n, ok) = clients[i].once_len().map_err(|e| {
                    io::Error::other(format!("{}: big reply failed: {e}", targets[i].name))
                })?;
                let took = start.elapsed().as_secs_f64();
                if ok {
                    times[i].push(took);
                    sizes[i] = n;
                } else {
                    errors[i] += 1;
                }
            }
            eprintln!(
                "  big reply round {}/{} {:<22} best {:>8.1} ms",
                r + 1,
                plan.rounds,
                targets[i].name,
                times[i].iter().copied().fold(f64::INFINITY, f64::min) * 1e3
            );
        }
        if r < plan.stock_rounds {
            if let Some(s) = stock_conn.as_mut() {
                let start = Instant::now();
                let (n, reads) = client::stock_reparse_roundtrip(s, "big_reply")?;
                let took = start.elapsed().as_secs_f64();
                stock_times.push(took);
                stock_size = n;
                stock_reads = reads;
                eprintln!(
                    "  big reply round {}/{} {:<22} {:>8.1} ms ({reads} reads)",
                    r + 1,
                    plan.rounds,
                    "stock re-parse",
                    took * 1e3
                );
            }
        }
    }
    for c in clients {
        c.close();
    }
    let mut out: Vec<BigResult> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| summarize_big(&t.name, sizes[i], &times[i], None, errors[i]))
        .collect();
    if stock.is_some() {
        out.push(summarize_big(
            "stock re-parse (direct)",
            stock_size,
            &stock_times,
            Some(stock_reads),
            0,
        ));
    }
    Ok(out)
}

fn summarize_big(
    name: &str,
    bytes: usize,
    times: &[f64],
    reads: Option<usize>,
    errors: usize,
) -> BigResult {
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let best = if best.is_finite() { best } else { 0.0 };
    BigResult {
        name: name.to_string(),
        reply_bytes: bytes,
        times_s: times.to_vec(),
        best_s: best,
        median_s: crate::stats::median(times),
        best_mb_s: if best > 0.0 {
            bytes as f64 / 1e6 / best
        } else {
            0.0
        },
        reads,
        errors,
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TpRound {
    pub commands_per_s: f64,
    pub completed: u64,
    pub latency: Pcts,
    pub proxy_cpu_pct: Option<f64>,
    pub proxy_cpu_us_per_cmd: Option<f64>,
    pub proxy_rss_bytes: Option<u64>,
    pub mock_cpu_pct: f64,
    pub client_cpu_pct: f64,
    pub errors: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct TpResult {
    pub name: String,
    pub kind: Kind,
    pub sessions: usize,
    pub rounds: Vec<TpRound>,
    /// The round with the most commands per second.
    pub best: TpRound,
}

pub struct TpPlan {
    pub rounds: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub client_threads: usize,
}

fn client_runtime(threads: usize) -> tokio::runtime::Runtime {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime")
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .expect("client runtime")
    }
}

/// Closed-loop throughput: `sessions` connections (each its own session), each
/// sending the next command as soon as the previous reply is in.
pub fn throughput(
    targets: &[Target],
    sessions: usize,
    mock_pid: u32,
    plan: &TpPlan,
) -> io::Result<Vec<TpResult>> {
    let rt = client_runtime(plan.client_threads);
    let mut results: Vec<TpResult> = targets
        .iter()
        .map(|t| TpResult {
            name: t.name.clone(),
            kind: t.kind,
            sessions,
            rounds: vec![],
            best: TpRound::default(),
        })
        .collect();
    let order: Vec<usize> = (0..targets.len()).collect();
    for r in 0..plan.rounds {
        for i in rotated(&order, r) {
            let t = &targets[i];
            let round = rt
                .block_on(tp_cell(t, sessions, mock_pid, plan, "get_scene_info"))
                .map_err(|e| io::Error::other(format!("{} × {sessions}: {e}", t.name)))?;
            eprintln!(
                "  throughput round {}/{} {:<22} {:>5} sessions {:>9.0} cmd/s  p50 {:>8.1} µs  p99 {:>9.1} µs  proxy CPU {:>5.1}%  client CPU {:>5.1}%{}",
                r + 1,
                plan.rounds,
                t.name,
                sessions,
                round.commands_per_s,
                round.latency.p50_us,
                round.latency.p99_us,
                round.proxy_cpu_pct.unwrap_or(0.0),
                round.client_cpu_pct,
                if round.errors > 0 {
                    format!("  ({} errors)", round.errors)
                } else {
                    String::new()
                }
            );
            results[i].rounds.push(round);
        }
    }
    for r in &mut results {
        r.best = r
            .rounds
            .iter()
            .max_by(|a, b| a.commands_per_s.total_cmp(&b.commands_per_s))
            .cloned()
            .unwrap_or_default();
    }
    Ok(results)
}

struct WorkerOut {
    conn: AsyncConn,
    session: Option<String>,
    completed: u64,
    lat: Vec<u64>,
    errors: usize,
}

async fn open_async(
    t: &Target,
    command: &str,
) -> io::Result<(AsyncConn, Vec<u8>, Expect, Option<String>)> {
    let mut conn = AsyncConn::connect(t.addr).await?;
    Ok(match t.kind {
        Kind::Rpc => {
            let id = client::create_session_async(&mut conn).await?;
            let req = client::rpc_send_command(&id, command);
            (conn, req, Expect::Rpc, Some(id))
        }
        Kind::DirectAsManager => (conn, as_manager_request(command), Expect::Addon, None),
        _ => (conn, client::addon_request(command), Expect::Addon, None),
    })
}

/// The request line the manager sends for `command` (with `session_id` and `_state`).
fn as_manager_request(command: &str) -> Vec<u8> {
    format!(
        "{{\"type\":\"{command}\",\"params\":{{}},\"session_id\":\"bench-direct\",\"_state\":true}}\n"
    )
    .into_bytes()
}

async fn tp_cell(
    t: &Target,
    sessions: usize,
    mock_pid: u32,
    plan: &TpPlan,
    command: &str,
) -> io::Result<TpRound> {
    // Connect (and create sessions) 50 at a time, untimed.
    let mut opened = Vec::with_capacity(sessions);
    while opened.len() < sessions {
        let batch = (sessions - opened.len()).min(50);
        let conns = futures::future::join_all((0..batch).map(|_| open_async(t, command))).await;
        for c in conns {
            opened.push(c?);
        }
    }
    let start = tokio::time::Instant::now();
    let t0 = start + plan.warmup;
    let t1 = t0 + plan.measure;
    let mut handles = Vec::with_capacity(sessions);
    for (conn, req, expect, session) in opened {
        handles.push(tokio::spawn(async move {
            let (t0, t1) = (t0.into_std(), t1.into_std());
            let mut out = WorkerOut {
                conn,
                session,
                completed: 0,
                lat: Vec::with_capacity(1024),
                errors: 0,
            };
            loop {
                let s = Instant::now();
                if s >= t1 {
                    break;
                }
                match out.conn.roundtrip(&req, expect).await {
                    Ok(ok) => {
                        let e = Instant::now();
                        if !ok {
                            out.errors += 1;
                            if out.errors > 100 {
                                break;
                            }
                        } else if e >= t0 && e <= t1 {
                            out.completed += 1;
                            out.lat.push(e.duration_since(s).as_nanos() as u64);
                        }
                    }
                    Err(_) => {
                        out.errors += 1;
                        break;
                    }
                }
            }
            out
        }));
    }
    let mut pids = vec![mock_pid, std::process::id()];
    if let Some(p) = t.proxy_pid {
        pids.push(p);
    }
    let sampler = {
        let pids = pids.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(t0).await;
            let a = cpu_mark(&pids);
            tokio::time::sleep_until(t1).await;
            let b = cpu_mark(&pids);
            let rss = pids.get(2).map(|p| proc_rss(*p));
            (a, b, rss)
        })
    };
    let mut completed = 0;
    let mut errors = 0;
    let mut lat = Vec::new();
    let mut leftovers = Vec::with_capacity(sessions);
    for h in handles {
        let out = h
            .await
            .map_err(|e| io::Error::other(format!("worker: {e}")))?;
        completed += out.completed;
        errors += out.errors;
        lat.extend_from_slice(&out.lat);
        leftovers.push((out.conn, out.session));
    }
    let (a, b, rss) = sampler
        .await
        .map_err(|e| io::Error::other(format!("sampler: {e}")))?;
    let cpu = cpu_percent(&a, &b);
    // Close JSON-RPC sessions; compat sessions close with their connections.
    let mut left = leftovers.into_iter();
    loop {
        let batch: Vec<_> = left.by_ref().take(50).collect();
        if batch.is_empty() {
            break;
        }
        futures::future::join_all(batch.into_iter().map(|(mut conn, session)| async move {
            if let Some(id) = session {
                let _ = client::close_session_async(&mut conn, &id).await;
            }
        }))
        .await;
    }
    if let Some(rpc) = t.rpc {
        wait_for_no_sessions(rpc).await;
    } else {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = plan.measure.as_secs_f64();
    let proxy_cpu = cpu.get(2).copied();
    Ok(TpRound {
        commands_per_s: completed as f64 / secs,
        completed,
        latency: Pcts::from_ns(&mut lat),
        proxy_cpu_pct: proxy_cpu,
        proxy_cpu_us_per_cmd: proxy_cpu
            .filter(|_| completed > 0)
            .map(|pct| pct / 100.0 * secs / completed as f64 * 1e6),
        proxy_rss_bytes: rss,
        mock_cpu_pct: cpu[0],
        client_cpu_pct: cpu[1],
        errors,
    })
}

/// `bench load`: one closed-loop cell against an address, for profiling.
pub fn load(t: &Target, sessions: usize, seconds: Duration, command: &str) -> io::Result<String> {
    let plan = TpPlan {
        rounds: 1,
        warmup: Duration::from_millis(200),
        measure: seconds,
        client_threads: 1,
    };
    let rt = client_runtime(1);
    let r = rt.block_on(tp_cell(t, sessions, std::process::id(), &plan, command))?;
    Ok(format!(
        "{:.0} cmd/s, p50 {:.1} µs, p99 {:.1} µs, {} errors",
        r.commands_per_s, r.latency.p50_us, r.latency.p99_us, r.errors
    ))
}

fn proc_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// The manager's `get_manager_status` counts.
pub async fn manager_counts(rpc: SocketAddr) -> io::Result<serde_json::Value> {
    let mut c = AsyncConn::connect(rpc).await?;
    let r = client::rpc_result(
        c.call_value(&client::rpc_request(1, "get_manager_status", &json!({})))
            .await?,
    )?;
    Ok(r["counts"].clone())
}

/// Waits (up to 10 s) until the manager reports no live session.
async fn wait_for_no_sessions(rpc: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match manager_counts(rpc).await {
            Ok(c) if c["sessions"].as_u64() == Some(0) => return,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    eprintln!("  note: the manager at {rpc} still reports sessions 10 s after a cell");
}

#[derive(Clone, Debug, Serialize)]
pub struct ScaleResult {
    pub sessions: usize,
    pub baseline_rss_bytes: u64,
    pub after_rss_bytes: u64,
    pub per_session_bytes: f64,
    pub create_session: Pcts,
    pub reported_sessions: u64,
    pub reported_backend_connections: u64,
    pub idle_cpu_pct: f64,
    pub create_all_s: f64,
    /// `create_session` p50 over the first and the last tenth of the sessions
    /// (does creating get slower as sessions pile up?).
    pub create_p50_first_tenth_us: f64,
    pub create_p50_last_tenth_us: f64,
}

/// 10,000 sessions (each with its live backend socket) on a fresh manager and mock:
/// memory per idle session and `create_session` latency including the connect.
pub fn scale(bin: &Path, n: usize, dir: &Path) -> io::Result<ScaleResult> {
    let (mock, mock_addr) = procs::start_mock(128, 128)?;
    let mgr = procs::start_manager(
        bin,
        "scale",
        mock_addr,
        ":memory:",
        &["--max-sessions".into(), (n + 100).to_string()],
        dir,
    )?;
    let mut conn = Conn::connect(mgr.rpc)?;
    // Warm the paths once (first-use allocations), then settle and take the baseline.
    let mut warm = vec![];
    for _ in 0..10 {
        warm.push(client::create_session(&mut conn)?);
    }
    for id in warm {
        client::rpc_result(conn.call_value(&client::rpc_request(
            2,
            "close_session",
            &json!({"session_id": id}),
        ))?)?;
    }
    std::thread::sleep(Duration::from_millis(1000));
    let baseline = mgr.proc.rss();
    let mut samples = Vec::with_capacity(n);
    let all = Instant::now();
    for k in 0..n {
        let s = Instant::now();
        client::create_session(&mut conn)
            .map_err(|e| io::Error::other(format!("create_session #{k}: {e}")))?;
        samples.push(s.elapsed().as_nanos() as u64);
    }
    let create_all_s = all.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(1000));
    let a = cpu_mark(&[mgr.proc.pid()]);
    std::thread::sleep(Duration::from_millis(2000));
    let b = cpu_mark(&[mgr.proc.pid()]);
    let after = mgr.proc.rss();
    let counts = client::rpc_result(conn.call_value(&client::rpc_request(
        3,
        "get_manager_status",
        &json!({}),
    ))?)?["counts"]
        .clone();
    let tenth = (n / 10).max(1);
    let first = Pcts::from_ns(&mut samples[..tenth].to_vec()).p50_us;
    let last = Pcts::from_ns(&mut samples[n - tenth..].to_vec()).p50_us;
    let create = Pcts::from_ns(&mut samples);
    drop(conn);
    drop(mgr);
    drop(mock);
    Ok(ScaleResult {
        sessions: n,
        baseline_rss_bytes: baseline,
        after_rss_bytes: after,
        per_session_bytes: (after as f64 - baseline as f64) / n as f64,
        create_session: create,
        reported_sessions: counts["sessions"].as_u64().unwrap_or(0),
        reported_backend_connections: counts["backend_connections"].as_u64().unwrap_or(0),
        idle_cpu_pct: cpu_percent(&a, &b)[0],
        create_all_s,
        create_p50_first_tenth_us: first,
        create_p50_last_tenth_us: last,
    })
}
