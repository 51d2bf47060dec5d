//! Child processes (mock, managers, HAProxy, headless Blender), their /proc figures,
//! and cleanup: every child is registered, killed on drop, on Ctrl-C / SIGTERM, and
//! (through `PR_SET_PDEATHSIG`) when the bench itself dies.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Pids of live children, for the signal handler.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn register(pid: u32) {
    CHILDREN.lock().unwrap().push(pid);
}

fn unregister(pid: u32) {
    CHILDREN.lock().unwrap().retain(|p| *p != pid);
}

/// Sends SIGTERM to every registered child, waits up to 3 s, then SIGKILL.
pub fn kill_all_children() {
    let pids: Vec<u32> = CHILDREN.lock().unwrap().clone();
    for &pid in &pids {
        // SAFETY: kill(2) on a pid this process spawned and still owns (not yet reaped).
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    for &pid in &pids {
        while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
            if proc_state(pid) == Some('Z') {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if proc_state(pid).is_some_and(|s| s != 'Z') {
            // SAFETY: as above.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// On Ctrl-C or SIGTERM: stop every child and exit 130.
pub fn install_signal_handler() {
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        });
        eprintln!("\nbench: interrupted; stopping child processes");
        kill_all_children();
        std::process::exit(130);
    });
}

/// Raises the soft open-files limit to the hard one (children inherit it).
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return lim.rlim_max;
            }
        }
        lim.rlim_cur
    }
}

/// A running child, stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
pub struct Proc {
    child: Child,
    _stdin: Option<ChildStdin>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> std::io::Result<Proc> {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl in the forked child before exec; async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        register(child.id());
        let stdin = child.stdin.take();
        Ok(Proc {
            child,
            _stdin: stdin,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stop(&mut self) {
        if self.alive() {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && self.alive() {
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.alive() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        unregister(self.child.id());
    }

    /// Resident set size now, in bytes.
    pub fn rss(&self) -> u64 {
        proc_status_kb(self.pid(), "VmRSS:").unwrap_or(0) * 1024
    }

    /// Peak resident set size, in bytes.
    pub fn hwm(&self) -> u64 {
        proc_status_kb(self.pid(), "VmHWM:").unwrap_or(0) * 1024
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf with a valid name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process (all threads), from /proc/<pid>/stat.
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / clock_ticks()))
}

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// CPU figures of a set of processes between two instants.
#[derive(Clone, Debug)]
pub struct CpuMark {
    at: Instant,
    cpu: Vec<Duration>,
}

pub fn cpu_mark(pids: &[u32]) -> CpuMark {
    CpuMark {
        at: Instant::now(),
        cpu: pids
            .iter()
            .map(|p| proc_cpu(*p).unwrap_or_default())
            .collect(),
    }
}

/// Per process: CPU% (100 = one core) between two marks.
pub fn cpu_percent(a: &CpuMark, b: &CpuMark) -> Vec<f64> {
    let wall = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    a.cpu
        .iter()
        .zip(&b.cpu)
        .map(|(x, y)| y.saturating_sub(*x).as_secs_f64() / wall * 100.0)
        .collect()
}

/// Waits (bounded) for a line of `stdout` that starts with `prefix`; returns the rest.
pub fn read_announcement(
    stdout: std::process::ChildStdout,
    prefix: &str,
    timeout: Duration,
) -> std::io::Result<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = prefix.to_string();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(_) => {
                    if let Some(rest) = line.trim_end().strip_prefix(&wanted) {
                        let _ = tx.send(Some(rest.trim().to_string()));
                        // Keep draining so the child never blocks on a full pipe.
                        let mut sink = Vec::new();
                        let _ = lines.read_to_end(&mut sink);
                        return;
                    }
                }
            }
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(std::io::Error::other(format!(
            "child exited before printing {prefix}"
        ))),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no {prefix} line in time"),
        )),
    }
}

/// The instant mock, as `bench mock`, in its own process.
pub fn start_mock(small: usize, big: usize) -> std::io::Result<(Proc, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "mock",
        "--listen",
        "127.0.0.1:0",
        "--reply-bytes",
        &small.to_string(),
        "--big-reply-bytes",
        &big.to_string(),
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let mut p = Proc::spawn(cmd)?;
    let out = p.take_stdout().expect("piped");
    let addr = read_announcement(out, "MOCK_LISTENING", Duration::from_secs(10))?;
    let addr = addr
        .parse()
        .map_err(|_| std::io::Error::other(format!("mock printed {addr:?}")))?;
    Ok((p, addr))
}

/// Extra environment for every manager started (`--manager-env`, for experiments).
static MANAGER_ENV: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

pub fn set_manager_env(vars: Vec<(String, String)>) {
    let _ = MANAGER_ENV.set(vars);
}

/// A manager process and its front-door addresses.
pub struct ManagerProc {
    pub proc: Proc,
    pub rpc: SocketAddr,
    pub compat: SocketAddr,
}

/// Starts `bin serve` against `backend`, on ephemeral loopback ports, logging to a file
/// (default text format and level). The environment's manager settings are cleared so
/// only the flags given here (and the defaults) apply.
pub fn start_manager(
    bin: &Path,
    name: &str,
    backend: SocketAddr,
    db: &str,
    extra: &[String],
    dir: &Path,
) -> std::io::Result<ManagerProc> {
    let log = dir.join(format!("manager-{name}.log"));
    let log_file = std::fs::File::create(&log)?;
    let mut cmd = Command::new(bin);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--compat-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--blender",
        &backend.to_string(),
        "--db",
        db,
    ])
    .args(extra)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(log_file);
    for (k, _) in std::env::vars() {
        if k.starts_with("SESSION_MANAGER_") || k.starts_with("BLENDER_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in MANAGER_ENV.get().map(Vec::as_slice).unwrap_or_default() {
        if k == "RUST_LOG" {
            // The start-up line (info, from the server module) carries the addresses.
            cmd.env(k, format!("{v},blender_session_manager::server=info"));
        } else {
            cmd.env(k, v);
        }
    }
    let mut proc = Proc::spawn(cmd)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("session manager started")) {
            let field = |key: &str| -> Option<SocketAddr> {
                let at = line.find(&format!(" {key}="))? + key.len() + 2;
                line[at..].split_whitespace().next()?.parse().ok()
            };
            match (field("jsonrpc"), field("compat")) {
                (Some(rpc), Some(compat)) => return Ok(ManagerProc { proc, rpc, compat }),
                _ => {
                    return Err(std::io::Error::other(format!(
                        "cannot read the manager's addresses from: {line}"
                    )))
                }
            }
        }
        if !proc.alive() || Instant::now() > deadline {
            return Err(std::io::Error::other(format!(
                "manager {name} did not start; its log:\n{}",
                text.lines().rev().take(20).collect::<Vec<_>>().join("\n")
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free loopback port (bound, read, released; HAProxy then binds it).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// HAProxy in TCP mode in front of `backend` (foreground, its own process).
pub fn start_haproxy(
    backend: SocketAddr,
    name: &str,
    dir: &Path,
) -> std::io::Result<(Proc, SocketAddr)> {
    let bin = which("haproxy").ok_or_else(|| std::io::Error::other("haproxy not found"))?;
    for _attempt in 0..5 {
        let port = free_port()?;
        let cfg = dir.join(format!("haproxy-{name}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "global\n    maxconn 8000\n\n\
                 defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 300s\n    timeout server 300s\n\n\
                 frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\n\
                 backend be\n    server mock {backend}\n"
            ),
        )?;
        let log = std::fs::File::create(dir.join(format!("haproxy-{name}.log")))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut p = Proc::spawn(cmd)?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && p.alive() {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok((p, addr));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        p.stop();
    }
    Err(std::io::Error::other("haproxy did not start (see its log)"))
}

/// A headless Blender with the project's addon (`blender_addon/headless.py`).
pub fn start_blender(
    python: &Path,
    repo: &Path,
    dir: &Path,
) -> std::io::Result<(Proc, SocketAddr)> {
    let ready = dir.join("blender-ready");
    let _ = std::fs::remove_file(&ready);
    let log = std::fs::File::create(dir.join("blender.log"))?;
    let mut cmd = Command::new(python);
    cmd.arg(repo.join("blender_addon/headless.py"))
        .args(["--host", "127.0.0.1", "--port", "0", "--ready-file"])
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut p = Proc::spawn(cmd)?;
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline && p.alive() {
        if let Ok(s) = std::fs::read_to_string(&ready) {
            if let Ok(addr) = s.trim().parse() {
                return Ok((p, addr));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(std::io::Error::other(
        "headless Blender did not become ready (see blender.log)",
    ))
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A command's trimmed stdout, if it ran and succeeded.
pub fn command_output(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// nproc, CPU model, memory, kernel, load: what the figures were measured on.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    serde_json::json!({
        "nproc": nproc,
        "cpu_model": model,
        "mem_total_gib": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": kernel,
    })
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
