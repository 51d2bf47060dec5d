//! Soak test of the Blender Session Manager (`scripts/soak.sh` runs it; not in CI).
//!
//! `soak run --minutes N` starts, on 127.0.0.1 only, a mock addon (this binary as
//! `soak mock`, its own process) and the release manager (`--db :memory:`), and runs
//! a mixed workload against the manager's JSON-RPC port for N minutes:
//!
//! * callers, each with a connection and a session, sending instant commands, slow
//!   ones (the mock sleeps), bulky replies (64 KiB) and jobs (submit, then long-poll
//!   the result), with a random think time; every reply is checked against its
//!   request (the mock echoes the command, its params and the session id);
//! * random caller disconnects: a caller sends a command and hangs up at once, then
//!   reconnects, closes that session (its command still in flight) and opens another;
//! * session churners: create, a few commands, close, again;
//! * a backend restart every few minutes: the mock is killed (SIGKILL) and started
//!   again on the same port; errors that a restart explains (`-32010` disconnected,
//!   `-32002` unavailable, during the restart and a backoff's worth after) are
//!   counted as expected, any other error fails the run;
//! * once a second the manager's RSS (/proc/PID/status), every ten seconds its
//!   `/metrics` and `get_manager_status`.
//!
//! It prints a line per minute (latency p50/p99 per class, errors, disconnects,
//! restarts, RSS) and a summary, and exits 1 if a budget is broken: instant-command
//! p99 in any minute (default 50 ms), slow-command p99 over the mock's delay (default
//! 50 ms), the RSS ceiling (default 512 MiB), an unexpected error or mismatched
//! reply, two requests in flight on one backend socket, the manager dying, or a
//! gauge not back to zero once every session is closed at the end.

use std::io::{BufRead, BufReader as StdBufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blender_session_manager::wire::{Frame, JsonFrameCodec, NewlinePolicy};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;

#[derive(Parser)]
#[command(name = "soak", about = "Soak test of the Blender Session Manager")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the soak and print the summary (exit 1 if a budget is broken)
    Run(RunArgs),
    /// Serve as the mock addon (used by `run`, in its own process)
    Mock {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// The manager binary
    #[arg(long, default_value = "target/release/blender-session-manager")]
    manager_bin: PathBuf,
    /// How long the workload runs
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Seconds between backend restarts (default 120, at most half the run)
    #[arg(long)]
    restart_every: Option<f64>,
    /// Milliseconds the backend stays down at each restart
    #[arg(long, default_value_t = 500)]
    down_ms: u64,
    /// Callers with a long-lived session each
    #[arg(long, default_value_t = 24)]
    callers: usize,
    /// Session churners (create, a few commands, close)
    #[arg(long, default_value_t = 2)]
    churners: usize,
    /// Longest think time between a caller's commands, in milliseconds
    #[arg(long, default_value_t = 10)]
    think_ms: u64,
    /// How long the mock takes for a slow command, in milliseconds
    #[arg(long, default_value_t = 200)]
    slow_ms: u64,
    /// Chance that a caller hangs up right after sending a command
    #[arg(long, default_value_t = 0.005)]
    disconnect_rate: f64,
    /// Budget: p99 of instant commands in every minute, in milliseconds
    #[arg(long, default_value_t = 50.0)]
    p99_budget_ms: f64,
    /// Budget: p99 of slow commands over the mock's delay, in milliseconds
    #[arg(long, default_value_t = 50.0)]
    slow_overhead_budget_ms: f64,
    /// Ceiling of the manager's RSS, in MiB
    #[arg(long, default_value_t = 512.0)]
    rss_ceiling_mib: f64,
    /// The manager's --job-ttl in seconds. Every command is a job, kept with its
    /// whole result this long, so memory holds about rate x TTL jobs: at this
    /// workload's ~1,800 commands/s the default 3,600 s would hold millions, so the
    /// soak keeps them briefly and watches for growth beyond that.
    #[arg(long, default_value_t = 10)]
    job_ttl: u64,
    /// The manager's --sweep-interval in seconds (finished jobs are pruned then)
    #[arg(long, default_value_t = 5)]
    sweep_interval: u64,
    /// The manager's log file (default: a file in the temporary directory)
    #[arg(long)]
    log: Option<PathBuf>,
    /// Seed of the workload's randomness
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Mock { listen } => match run_mock(listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("soak mock: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Run(args) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            match rt.block_on(run(args)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("soak: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The mock addon.

/// One thread; answers each request in order. A request's `params.sleep_ms` makes
/// it slow, `params.pad` adds that many bytes to the reply. The reply echoes the
/// command type, the params and the session id. Two requests in flight on one
/// socket print a `SOAK_MOCK_VIOLATION` line, which the driver counts.
fn run_mock(listen: SocketAddr) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        println!("SOAK_MOCK_LISTENING {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        // Ends when the driver goes away.
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = [0u8; 64];
            while std::io::stdin().read(&mut sink).is_ok_and(|n| n > 0) {}
        });
        tokio::pin!(stdin_closed);
        loop {
            tokio::select! {
                _ = &mut stdin_closed => return Ok(()),
                a = listener.accept() => match a {
                    Ok((stream, _)) => {
                        tokio::spawn(mock_connection(stream));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
            }
        }
    })
}

async fn mock_connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let reader = {
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            let mut frames =
                FramedRead::new(read, JsonFrameCodec::new(NewlinePolicy::Stream, 1 << 26));
            while let Some(Ok(frame)) = frames.next().await {
                let Frame::Value(f) = frame else { continue };
                let v: Value = serde_json::from_slice(&f.strict_bytes()).unwrap_or(Value::Null);
                if in_flight.fetch_add(1, Ordering::SeqCst) > 0 {
                    println!("SOAK_MOCK_VIOLATION a request arrived while another was in flight");
                }
                if tx.send(v).is_err() {
                    break;
                }
            }
        })
    };
    while let Some(req) = rx.recv().await {
        let params = req.get("params").cloned().unwrap_or(Value::Null);
        if let Some(ms) = params["sleep_ms"].as_u64() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let mut result = json!({
            "command": req["type"],
            "params": params,
            "session_id": req["session_id"],
        });
        if let Some(pad) = params["pad"].as_u64() {
            result["pad"] = Value::String("x".repeat(pad.min(1 << 24) as usize));
        }
        let bytes = serde_json::to_vec(&json!({"status": "success", "result": result})).unwrap();
        in_flight.fetch_sub(1, Ordering::SeqCst);
        if write.write_all(&bytes).await.is_err() {
            break;
        }
    }
    reader.abort();
}

// ---------------------------------------------------------------------------
// Child processes.

/// A child process killed (SIGKILL) and reaped when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then up to `grace` for a clean exit; `Some(code)` if it exited.
    fn terminate(&mut self, grace: Duration) -> Option<i32> {
        // SAFETY: sending a signal to our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Children die with the driver (PR_SET_PDEATHSIG), even if it is killed.
fn spawn(mut cmd: Command) -> std::io::Result<Proc> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Ok(Proc {
        child: cmd.spawn()?,
    })
}

/// Starts the mock on `listen` and waits for its address line; a thread then counts
/// the violations it reports.
fn start_mock(
    listen: SocketAddr,
    violations: Arc<AtomicU64>,
) -> std::io::Result<(Proc, SocketAddr)> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["mock", "--listen", &listen.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut proc = spawn(cmd)?;
    let stdout = proc.child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in StdBufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("SOAK_MOCK_LISTENING ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr.trim().to_string());
                }
            } else if line.starts_with("SOAK_MOCK_VIOLATION") {
                violations.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| std::io::Error::other("the mock did not start"))?;
    let addr = addr
        .parse()
        .map_err(|_| std::io::Error::other(format!("bad mock address {addr:?}")))?;
    Ok((proc, addr))
}

/// A port free right now on 127.0.0.1.
fn free_port() -> std::io::Result<SocketAddr> {
    StdTcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// User plus system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

// ---------------------------------------------------------------------------
// JSON-RPC client.

struct Rpc {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
}

/// No reply within this long is a failure of the run, not a slow command.
const REPLY_LIMIT: Duration = Duration::from_secs(60);

impl Rpc {
    async fn connect(addr: SocketAddr) -> std::io::Result<Rpc> {
        let s = TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        let (r, w) = s.into_split();
        Ok(Rpc {
            reader: BufReader::new(r),
            writer: w,
            next_id: 0,
        })
    }

    async fn send(&mut self, method: &str, params: Value) -> std::io::Result<u64> {
        self.next_id += 1;
        let mut line = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}),
        )?;
        line.push(b'\n');
        self.writer.write_all(&line).await?;
        Ok(self.next_id)
    }

    /// `Ok(Ok(result))`, `Ok(Err(error object))`, or `Err` when the connection failed
    /// or the reply was not this request's.
    async fn call(&mut self, method: &str, params: Value) -> std::io::Result<Result<Value, Value>> {
        let id = self.send(method, params).await?;
        let mut line = String::new();
        let n = tokio::time::timeout(REPLY_LIMIT, self.reader.read_line(&mut line))
            .await
            .map_err(|_| {
                std::io::Error::other(format!("no reply to {method} within {REPLY_LIMIT:?}"))
            })??;
        if n == 0 {
            return Err(std::io::Error::other(format!(
                "connection closed waiting for {method}"
            )));
        }
        let reply: Value = serde_json::from_str(&line)
            .map_err(|e| std::io::Error::other(format!("reply is not JSON ({e}): {line}")))?;
        if reply["id"] != id {
            return Err(std::io::Error::other(format!(
                "reply to request {} arrived for request {id}: {line}",
                reply["id"]
            )));
        }
        Ok(match reply.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(reply["result"].clone()),
        })
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("no HTTP reply"))??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP head"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("GET {path}: {head}")));
    }
    Ok(body.to_string())
}

// ---------------------------------------------------------------------------
// What the run records.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Instant,
    Slow,
    Bulk,
    Job,
}

const CLASSES: [Class; 4] = [Class::Instant, Class::Slow, Class::Bulk, Class::Job];

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Instant => "instant",
            Class::Slow => "slow",
            Class::Bulk => "bulk",
            Class::Job => "job",
        }
    }
}

#[derive(Default)]
struct Minute {
    /// Round trips in microseconds, per class.
    latency: [Vec<u32>; 4],
    expected_errors: u64,
    unexpected_errors: u64,
    disconnects: u64,
    restarts: u64,
    sessions_created: u64,
    sessions_closed: u64,
    rss_max: u64,
}

struct Ctx {
    args: RunArgs,
    rpc_addr: SocketAddr,
    start: Instant,
    minutes: usize,
    stats: Mutex<Vec<Minute>>,
    restarts: Mutex<Vec<Restart>>,
    /// The first unexpected events, for the summary.
    problems: Mutex<Vec<String>>,
    problem_count: AtomicU64,
    stopping: AtomicBool,
}

/// One backend restart, and the errors it explained.
struct Restart {
    down: Instant,
    up: Option<Instant>,
    errors: u64,
    last_error: Option<Instant>,
}

/// After a restart, errors stay explained for this long: a link that failed to
/// connect while the backend was down waits out its backoff (capped at 5 s).
const RESTART_GRACE: Duration = Duration::from_secs(7);

impl Ctx {
    fn minute_of(&self, at: Instant) -> usize {
        ((at.duration_since(self.start).as_secs() / 60) as usize).min(self.minutes - 1)
    }

    fn with_minute(&self, at: Instant, f: impl FnOnce(&mut Minute)) {
        let i = self.minute_of(at);
        f(&mut self.stats.lock()[i]);
    }

    fn latency(&self, class: Class, started: Instant, took: Duration) {
        let us = took.as_micros().min(u32::MAX as u128) as u32;
        let i = CLASSES.iter().position(|c| *c == class).unwrap();
        self.with_minute(started, |m| m.latency[i].push(us));
    }

    fn problem(&self, what: String) {
        let n = self.problem_count.fetch_add(1, Ordering::SeqCst);
        if n < 20 {
            eprintln!("soak: {what}");
            self.problems.lock().push(what);
        }
    }

    /// Whether a restart explains a failure of a request that ran from `from` to
    /// `to` (and if so, counts it against that restart).
    fn restart_explains(&self, from: Instant, to: Instant) -> bool {
        let mut restarts = self.restarts.lock();
        let hit = restarts.iter_mut().rev().find(|r| {
            let end = r.up.map_or(to, |u| u + RESTART_GRACE);
            from <= end && to >= r.down
        });
        match hit {
            Some(r) => {
                r.errors += 1;
                r.last_error = Some(r.last_error.map_or(to, |l| l.max(to)));
                true
            }
            None => false,
        }
    }

    /// Records an error reply; `Ok` if a restart explains it.
    fn error(&self, what: &str, e: &Value, from: Instant) {
        let to = Instant::now();
        let code = e["code"].as_i64().unwrap_or(0);
        if matches!(code, -32010 | -32002) && self.restart_explains(from, to) {
            self.with_minute(from, |m| m.expected_errors += 1);
        } else {
            self.with_minute(from, |m| m.unexpected_errors += 1);
            self.problem(format!("{what}: unexpected error {e}"));
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------
// The workload.

/// A connection to the manager, retried once a second; `None` once the run is
/// stopping and the manager cannot be reached.
async fn connect(ctx: &Ctx) -> Option<Rpc> {
    loop {
        match Rpc::connect(ctx.rpc_addr).await {
            Ok(r) => return Some(r),
            Err(e) => {
                ctx.problem(format!("cannot connect to the manager: {e}"));
                if ctx.stopping() {
                    return None;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// `None` when the connection failed (recorded; the caller reconnects).
async fn call(
    ctx: &Ctx,
    rpc: &mut Rpc,
    method: &str,
    params: Value,
) -> Option<Result<Value, Value>> {
    match rpc.call(method, params).await {
        Ok(r) => Some(r),
        Err(e) => {
            ctx.problem(format!("{method}: {e}"));
            None
        }
    }
}

async fn create_session(ctx: &Ctx, rpc: &mut Rpc) -> Option<String> {
    match call(ctx, rpc, "create_session", json!({})).await? {
        Ok(info) => {
            ctx.with_minute(Instant::now(), |m| m.sessions_created += 1);
            info["session_id"].as_str().map(str::to_string)
        }
        Err(e) => {
            ctx.problem(format!("create_session: {e}"));
            None
        }
    }
}

async fn close_session(ctx: &Ctx, rpc: &mut Rpc, id: &str) {
    match call(ctx, rpc, "close_session", json!({"session_id": id})).await {
        Some(Ok(_)) => ctx.with_minute(Instant::now(), |m| m.sessions_closed += 1),
        Some(Err(e)) => ctx.problem(format!("close_session {id}: {e}")),
        None => {}
    }
}

/// One command of `class`, checked against its request. `None` if the connection
/// failed.
async fn command(
    ctx: &Ctx,
    rpc: &mut Rpc,
    id: &str,
    class: Class,
    tag: &str,
    rng: &mut StdRng,
) -> Option<()> {
    let (command_type, params) = match class {
        Class::Instant => {
            let c = ["ping", "get_object_info", "execute_code"][rng.random_range(0..3)];
            (c, json!({"tag": tag}))
        }
        Class::Slow => ("render", json!({"tag": tag, "sleep_ms": ctx.args.slow_ms})),
        Class::Bulk => (
            "get_viewport_screenshot",
            json!({"tag": tag, "pad": 64 * 1024}),
        ),
        Class::Job => ("bake", json!({"tag": tag})),
    };
    let started = Instant::now();
    if class == Class::Job {
        let submitted = call(
            ctx,
            rpc,
            "submit_job",
            json!({"session_id": id, "command_type": command_type, "params": params}),
        )
        .await?;
        let job = match submitted {
            Ok(j) => j["job_id"].as_str().unwrap_or_default().to_string(),
            Err(e) => {
                ctx.error("submit_job", &e, started);
                return Some(());
            }
        };
        let r = call(
            ctx,
            rpc,
            "get_job_result",
            json!({"job_id": job, "wait": 30}),
        )
        .await?;
        match r {
            Ok(r) if r["status"] == "completed" => {
                if !serde_json::to_string(&r["result"])
                    .unwrap_or_default()
                    .contains(tag)
                {
                    ctx.problem(format!("job {job}: result is not its request's: {r}"));
                }
                ctx.latency(class, started, started.elapsed());
            }
            Ok(r) => {
                // A failed job carries the error its command got.
                let e = r["error"].clone();
                let code = match e["kind"].as_str() {
                    Some("blender_disconnected") => -32010,
                    Some("blender_unavailable") => -32002,
                    _ => 0,
                };
                ctx.error(
                    &format!("job {job} ended {}", r["status"]),
                    &json!({"code": code, "job": r}),
                    started,
                );
            }
            Err(e) => ctx.error("get_job_result", &e, started),
        }
        return Some(());
    }
    let r = call(
        ctx,
        rpc,
        "send_command",
        json!({"session_id": id, "command_type": command_type, "params": params}),
    )
    .await?;
    let took = started.elapsed();
    match r {
        Ok(r) => {
            let result = &r["result"];
            let matched = r["status"] == "success"
                && result["command"] == command_type
                && result["params"]["tag"] == tag
                && result["session_id"] == id;
            if matched {
                ctx.latency(class, started, took);
            } else {
                ctx.with_minute(started, |m| m.unexpected_errors += 1);
                let mut shown = r.to_string();
                shown.truncate(300);
                ctx.problem(format!(
                    "{command_type} {tag}: reply is not its request's: {shown}"
                ));
            }
        }
        Err(e) => ctx.error(command_type, &e, started),
    }
    Some(())
}

fn pick_class(rng: &mut StdRng) -> Class {
    match rng.random_range(0..100) {
        0..80 => Class::Instant,
        80..88 => Class::Slow,
        88..92 => Class::Bulk,
        _ => Class::Job,
    }
}

/// A caller with a long-lived session; now and then it hangs up mid-command.
async fn caller(ctx: Arc<Ctx>, w: usize) {
    let mut rng = StdRng::seed_from_u64(ctx.args.seed.wrapping_mul(1000).wrapping_add(w as u64));
    let Some(mut rpc) = connect(&ctx).await else {
        return;
    };
    let mut session = create_session(&ctx, &mut rpc).await;
    let mut n = 0u64;
    while !ctx.stopping() {
        let think = rng.random_range(0..=ctx.args.think_ms);
        tokio::time::sleep(Duration::from_millis(think)).await;
        let Some(id) = session.clone() else {
            let Some(fresh) = connect(&ctx).await else {
                return;
            };
            rpc = fresh;
            session = create_session(&ctx, &mut rpc).await;
            continue;
        };
        n += 1;
        let tag = format!("c{w}-{n}");
        let class = pick_class(&mut rng);
        if rng.random_bool(ctx.args.disconnect_rate.clamp(0.0, 1.0)) {
            // Hang up with the command in flight; the manager still runs it.
            let _ = rpc
                .send(
                    "send_command",
                    json!({"session_id": id, "command_type": "render", "params": {"tag": tag, "sleep_ms": ctx.args.slow_ms}}),
                )
                .await;
            drop(rpc);
            ctx.with_minute(Instant::now(), |m| m.disconnects += 1);
            let Some(fresh) = connect(&ctx).await else {
                return;
            };
            rpc = fresh;
            close_session(&ctx, &mut rpc, &id).await;
            session = create_session(&ctx, &mut rpc).await;
            continue;
        }
        if command(&ctx, &mut rpc, &id, class, &tag, &mut rng)
            .await
            .is_none()
        {
            let Some(fresh) = connect(&ctx).await else {
                return;
            };
            rpc = fresh;
        }
    }
    if let Some(id) = session {
        close_session(&ctx, &mut rpc, &id).await;
    }
}

/// Creates a session, runs a few instant commands on it, closes it; again.
async fn churner(ctx: Arc<Ctx>, w: usize) {
    let mut rng = StdRng::seed_from_u64(ctx.args.seed.wrapping_mul(7919).wrapping_add(w as u64));
    let Some(mut rpc) = connect(&ctx).await else {
        return;
    };
    let mut n = 0u64;
    while !ctx.stopping() {
        let Some(id) = create_session(&ctx, &mut rpc).await else {
            let Some(fresh) = connect(&ctx).await else {
                return;
            };
            rpc = fresh;
            continue;
        };
        for _ in 0..rng.random_range(1..=5) {
            n += 1;
            let tag = format!("ch{w}-{n}");
            if command(&ctx, &mut rpc, &id, Class::Instant, &tag, &mut rng)
                .await
                .is_none()
            {
                let Some(fresh) = connect(&ctx).await else {
                    return;
                };
                rpc = fresh;
            }
        }
        close_session(&ctx, &mut rpc, &id).await;
        tokio::time::sleep(Duration::from_millis(
            rng.random_range(0..=ctx.args.think_ms),
        ))
        .await;
    }
}

// ---------------------------------------------------------------------------
// Reporting.

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// One minute's line; returns the budget breaches it shows.
fn report_minute(ctx: &Ctx, i: usize, m: &mut Minute) -> Vec<String> {
    let mut breaches = Vec::new();
    let mut parts = Vec::new();
    for (k, class) in CLASSES.iter().enumerate() {
        let v = &mut m.latency[k];
        v.sort_unstable();
        let (p50, p99) = (percentile(v, 50.0), percentile(v, 99.0));
        parts.push(format!(
            "{} {} p50 {} p99 {}",
            class.name(),
            v.len(),
            ms(p50),
            ms(p99)
        ));
        if *class == Class::Instant && p99 > ctx.args.p99_budget_ms {
            breaches.push(format!(
                "minute {}: instant p99 {p99:.2} ms over the {} ms budget",
                i + 1,
                ctx.args.p99_budget_ms
            ));
        }
        let slow_budget = ctx.args.slow_ms as f64 + ctx.args.slow_overhead_budget_ms;
        if *class == Class::Slow && p99 > slow_budget {
            breaches.push(format!(
                "minute {}: slow p99 {p99:.1} ms over the {slow_budget} ms budget",
                i + 1
            ));
        }
    }
    println!(
        "min {:>2} | {} | errors {} expected, {} unexpected | disconnects {} | restarts {} | sessions +{} -{} | RSS max {:.1} MiB",
        i + 1,
        parts.join(" | "),
        m.expected_errors,
        m.unexpected_errors,
        m.disconnects,
        m.restarts,
        m.sessions_created,
        m.sessions_closed,
        mib(m.rss_max)
    );
    breaches
}

// ---------------------------------------------------------------------------
// The run.

async fn run(args: RunArgs) -> std::io::Result<bool> {
    if args.minutes.is_nan() || args.minutes <= 0.0 {
        return Err(std::io::Error::other("--minutes must be above 0"));
    }
    let manager_bin = std::fs::canonicalize(&args.manager_bin).map_err(|e| {
        std::io::Error::other(format!(
            "manager binary {}: {e} (build it with cargo build --release)",
            args.manager_bin.display()
        ))
    })?;
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let restart_every = Duration::from_secs_f64(
        args.restart_every
            .unwrap_or_else(|| 120f64.min(args.minutes * 60.0 / 2.0))
            .max(1.0),
    );

    let violations = Arc::new(AtomicU64::new(0));
    let (mut mock, mock_addr) = start_mock(free_port()?, violations.clone())?;
    let (rpc_addr, compat_addr, http_addr) = (free_port()?, free_port()?, free_port()?);
    let log_path = args.log.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("soak-manager-{}.log", std::process::id()))
    });
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(&manager_bin);
    cmd.arg("serve")
        .args(["--listen", &rpc_addr.to_string()])
        .args(["--compat-listen", &compat_addr.to_string()])
        .args(["--http-listen", &http_addr.to_string()])
        .args(["--blender", &mock_addr.to_string()])
        .args(["--db", ":memory:"])
        .args(["--max-sessions", "10000", "--max-queue", "10000"])
        .args(["--job-ttl", &args.job_ttl.to_string()])
        .args(["--sweep-interval", &args.sweep_interval.to_string()])
        .env_remove("SESSION_MANAGER_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut manager = spawn(cmd)?;
    let pid = manager.pid();
    let ready = Instant::now();
    while TcpStream::connect(rpc_addr).await.is_err() {
        if ready.elapsed() > Duration::from_secs(10) || manager.exited().is_some() {
            return Err(std::io::Error::other(format!(
                "the manager did not start; see {}",
                log_path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_start = rss_bytes(pid).unwrap_or(0);
    let cpu_start = cpu_seconds(pid).unwrap_or(0.0);
    let minutes = (args.minutes.ceil() as usize).max(1);
    println!(
        "soak: {:.1} min against {} (pid {pid}, log {}); mock on {mock_addr}, restarted every {:.0} s; \
         {} callers + {} churners, think <= {} ms, slow {} ms, disconnect rate {}",
        args.minutes,
        manager_bin.display(),
        log_path.display(),
        restart_every.as_secs_f64(),
        args.callers,
        args.churners,
        args.think_ms,
        args.slow_ms,
        args.disconnect_rate
    );
    let ctx = Arc::new(Ctx {
        args: args.clone(),
        rpc_addr,
        start: Instant::now(),
        minutes,
        stats: Mutex::new((0..minutes).map(|_| Minute::default()).collect()),
        restarts: Mutex::new(Vec::new()),
        problems: Mutex::new(Vec::new()),
        problem_count: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
    });

    let mut workers = Vec::new();
    for w in 0..args.callers {
        workers.push(tokio::spawn(caller(ctx.clone(), w)));
    }
    for w in 0..args.churners {
        workers.push(tokio::spawn(churner(ctx.clone(), w)));
    }

    // The monitor: RSS every second, metrics every ten, restarts on schedule, a line
    // per minute.
    let end = ctx.start + duration;
    let mut next_restart = ctx.start + restart_every;
    let mut reported = 0usize;
    let mut rss_max = rss_start;
    let mut breaches = Vec::new();
    let mut tick = 0u64;
    let mut manager_died = None;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tick += 1;
        let now = Instant::now();
        if let Some(status) = manager.exited() {
            manager_died = Some(status);
            break;
        }
        if let Some(rss) = rss_bytes(pid) {
            rss_max = rss_max.max(rss);
            ctx.with_minute(now, |m| m.rss_max = m.rss_max.max(rss));
            if mib(rss) > args.rss_ceiling_mib {
                breaches.push(format!(
                    "RSS {:.1} MiB over the {} MiB ceiling",
                    mib(rss),
                    args.rss_ceiling_mib
                ));
                break;
            }
        }
        if tick.is_multiple_of(10) {
            if let Err(e) = http_get(http_addr, "/metrics").await {
                ctx.problem(format!("GET /metrics: {e}"));
            }
        }
        if now >= next_restart && now + Duration::from_secs(5) < end {
            let down = Instant::now();
            ctx.restarts.lock().push(Restart {
                down,
                up: None,
                errors: 0,
                last_error: None,
            });
            mock.kill();
            tokio::time::sleep(Duration::from_millis(args.down_ms)).await;
            let mut started = None;
            for _ in 0..50 {
                match start_mock(mock_addr, violations.clone()) {
                    Ok(m) => {
                        started = Some(m.0);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            mock = started.ok_or_else(|| std::io::Error::other("the mock did not come back"))?;
            if let Some(last) = ctx.restarts.lock().last_mut() {
                last.up = Some(Instant::now());
            }
            ctx.with_minute(down, |m| m.restarts += 1);
            next_restart += restart_every;
        }
        // A minute is reported 2 s after it ends, once its last commands are in.
        let minute =
            ctx.minute_of(ctx.start + ctx.start.elapsed().saturating_sub(Duration::from_secs(2)));
        while reported < minute {
            let mut m = std::mem::take(&mut ctx.stats.lock()[reported]);
            breaches.extend(report_minute(&ctx, reported, &mut m));
            ctx.stats.lock()[reported] = m;
            reported += 1;
        }
    }

    // Stop: every worker closes its sessions.
    ctx.stopping.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + REPLY_LIMIT;
    for w in workers {
        let _ = tokio::time::timeout_at(deadline, w).await;
    }
    while reported < minutes {
        let mut m = std::mem::take(&mut ctx.stats.lock()[reported]);
        breaches.extend(report_minute(&ctx, reported, &mut m));
        ctx.stats.lock()[reported] = m;
        reported += 1;
    }

    // Quiesce: every gauge back to zero.
    let mut final_counts = Value::Null;
    let mut quiet = false;
    if manager_died.is_none() {
        let mut admin = connect(&ctx).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(admin) = admin.as_mut().filter(|_| Instant::now() < deadline) {
            if let Some(Ok(status)) = call(&ctx, admin, "get_manager_status", json!({})).await {
                final_counts = status["counts"].clone();
                let c = &final_counts;
                quiet = [
                    "sessions",
                    "busy_sessions",
                    "backend_connections",
                    "jobs_pending",
                    "jobs_processing",
                ]
                .iter()
                .all(|k| c[*k] == 0);
                if quiet {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match http_get(http_addr, "/metrics").await {
            Err(e) => {
                quiet = false;
                ctx.problem(format!("GET /metrics after the run: {e}"));
            }
            Ok(metrics) => {
                for line in metrics.lines().filter(|l| {
                    l.starts_with("session_manager_sessions ")
                        || l.starts_with("session_manager_backend_connections ")
                        || l.starts_with("session_manager_jobs{status=\"pending\"}")
                        || l.starts_with("session_manager_jobs{status=\"processing\"}")
                }) {
                    if !line.ends_with(" 0") {
                        quiet = false;
                        ctx.problem(format!("/metrics after the run: {line}"));
                    }
                }
            }
        }
    }
    let rss_end = rss_bytes(pid).unwrap_or(0);
    let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu_start;
    let elapsed = ctx.start.elapsed().as_secs_f64();
    let exit = if manager_died.is_none() {
        manager.terminate(Duration::from_secs(30))
    } else {
        None
    };
    drop(mock);

    // Summary.
    let stats = ctx.stats.lock();
    let mut all: [Vec<u32>; 4] = Default::default();
    let (mut expected, mut unexpected, mut disconnects, mut restarts, mut created, mut closed) =
        (0, 0, 0, 0, 0, 0);
    for m in stats.iter() {
        for (into, from) in all.iter_mut().zip(&m.latency) {
            into.extend_from_slice(from);
        }
        expected += m.expected_errors;
        unexpected += m.unexpected_errors;
        disconnects += m.disconnects;
        restarts += m.restarts;
        created += m.sessions_created;
        closed += m.sessions_closed;
    }
    println!("== soak summary");
    println!(
        "ran {:.1} min; {} commands and jobs answered ({:.0}/s); {} sessions created, {} closed; \
         {} caller disconnects; {} backend restarts",
        elapsed / 60.0,
        all.iter().map(Vec::len).sum::<usize>(),
        all.iter().map(Vec::len).sum::<usize>() as f64 / elapsed,
        created,
        closed,
        disconnects,
        restarts
    );
    for (k, class) in CLASSES.iter().enumerate() {
        all[k].sort_unstable();
        let v = &all[k];
        println!(
            "  {:<8} n {:>8}  p50 {:>7} ms  p99 {:>7} ms  p99.9 {:>7} ms  max {:>7} ms",
            class.name(),
            v.len(),
            ms(percentile(v, 50.0)),
            ms(percentile(v, 99.0)),
            ms(percentile(v, 99.9)),
            ms(v.last().map_or(f64::NAN, |x| *x as f64 / 1000.0))
        );
    }
    println!(
        "errors: {expected} explained by backend restarts, {unexpected} unexpected; \
         backend pipelining violations: {}",
        violations.load(Ordering::SeqCst)
    );
    println!(
        "manager: RSS {:.1} MiB at start, {:.1} MiB max (ceiling {} MiB), {:.1} MiB at the end; \
         CPU {:.1} s ({:.0}% of one core)",
        mib(rss_start),
        mib(rss_max),
        args.rss_ceiling_mib,
        mib(rss_end),
        cpu,
        100.0 * cpu / elapsed
    );
    for (i, r) in ctx.restarts.lock().iter().enumerate() {
        let up = r.up.unwrap_or(r.down);
        let recovered = r
            .last_error
            .map_or(0.0, |l| l.saturating_duration_since(up).as_secs_f64());
        println!(
            "  restart {} at {:.0} s: down {:.2} s; {} errors, the last {:.2} s after it came back",
            i + 1,
            r.down.duration_since(ctx.start).as_secs_f64(),
            up.duration_since(r.down).as_secs_f64(),
            r.errors,
            recovered
        );
    }
    println!("after closing every session: counts {final_counts}");

    let mut failures = breaches;
    if let Some(status) = manager_died {
        failures.push(format!(
            "the manager exited during the run ({status}); see {}",
            log_path.display()
        ));
    }
    if unexpected > 0 || ctx.problem_count.load(Ordering::SeqCst) > 0 {
        failures.push(format!(
            "{} unexpected event(s), the first: {:?}",
            ctx.problem_count.load(Ordering::SeqCst),
            ctx.problems.lock()
        ));
    }
    if violations.load(Ordering::SeqCst) > 0 {
        failures.push("two requests were in flight on one backend socket".into());
    }
    if manager_died.is_none() && !quiet {
        failures.push(format!(
            "gauges not back to zero after closing every session: {final_counts}"
        ));
    }
    if manager_died.is_none() && exit != Some(0) {
        failures.push(format!(
            "the manager did not stop cleanly on SIGTERM (exit {exit:?})"
        ));
    }
    if mib(rss_max) > args.rss_ceiling_mib && !failures.iter().any(|f| f.contains("ceiling")) {
        failures.push(format!("RSS {:.1} MiB over the ceiling", mib(rss_max)));
    }
    if failures.is_empty() {
        if args.log.is_none() {
            let _ = std::fs::remove_file(&log_path);
        }
        println!(
            "PASS: instant p99 under {} ms every minute, slow p99 under {} ms, RSS under {} MiB",
            args.p99_budget_ms,
            args.slow_ms as f64 + args.slow_overhead_budget_ms,
            args.rss_ceiling_mib
        );
        Ok(true)
    } else {
        for f in &failures {
            println!("FAIL: {f}");
        }
        println!("the manager's log: {}", log_path.display());
        Ok(false)
    }
}
