//! A manager run as a child process, as users run it: started with `serve`, ready
//! once it logs its start-up line, observed through its log on stderr.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_blender-session-manager");

/// The binary with no `SESSION_MANAGER_*` / `BLENDER_*` from the test's environment.
pub fn clean_command() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("SESSION_MANAGER_") || k.starts_with("BLENDER_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "info");
    // Never the user's real database; tests that need a file pass --db.
    c.env("SESSION_MANAGER_DB", ":memory:");
    c
}

/// `serve` on ephemeral loopback ports (JSON-RPC, compat, HTTP); add the rest.
pub fn serve_command() -> Command {
    let mut c = clean_command();
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--compat-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ]);
    c
}

/// A scratch directory unique to this process and `name`.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bsm-proc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct ManagerProcess {
    pub child: Child,
    pub rpc: SocketAddr,
    pub compat: SocketAddr,
    pub http: SocketAddr,
    log: Receiver<String>,
    /// Every log line read so far.
    pub seen: Vec<String>,
}

fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    Some(line[start..].split_whitespace().next()?.to_string())
}

impl ManagerProcess {
    /// `serve` on ephemeral loopback ports plus `extra`; returns once the
    /// start-up line names the addresses.
    pub fn start(extra: &[&str]) -> ManagerProcess {
        Self::start_with_log(extra, "info")
    }

    /// As [`start`](Self::start), with `RUST_LOG` set to `filter`.
    pub fn start_with_log(extra: &[&str], filter: &str) -> ManagerProcess {
        let mut command = serve_command();
        command.env("RUST_LOG", filter);
        command.args(extra);
        Self::spawn(command)
    }

    /// Runs `command` (a `serve`) and waits for its start-up line.
    pub fn spawn(mut command: Command) -> ManagerProcess {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut m = ManagerProcess {
            child,
            rpc: "0.0.0.0:0".parse().unwrap(),
            compat: "0.0.0.0:0".parse().unwrap(),
            http: "0.0.0.0:0".parse().unwrap(),
            log: rx,
            seen: Vec::new(),
        };
        let line = m.wait_log(|l| l.contains("session manager started"));
        let addr = |key| field(&line, key).and_then(|a| a.parse().ok()).unwrap();
        m.rpc = addr("jsonrpc");
        m.compat = addr("compat");
        m.http = addr("http");
        m
    }

    /// Reads the log until a line matches `pred` (within 30 s) and returns it.
    pub fn wait_log(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self
                .log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "awaited log line never came; saw:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    /// Waits for the process to end (within 30 s), then reads the rest of its log.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // The log closes when the process ends (and takes its stderr with it).
            match self
                .log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("the manager did not exit; saw:\n{}", self.seen.join("\n"));
                }
            }
        }
        self.child.wait().unwrap()
    }

    /// Runs a client subcommand of the binary against this manager.
    pub fn client(&self, args: &[&str]) -> std::process::Output {
        clean_command()
            .args(["--manager", &self.rpc.to_string()])
            .args(args)
            .output()
            .unwrap()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let r = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(r, 0, "kill failed");
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One JSON-RPC request on `stream`; returns its reply.
pub fn rpc_on(
    stream: &mut std::net::TcpStream,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let req = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    writeln!(stream, "{req}").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// One JSON-RPC call over a fresh connection.
pub fn rpc_call(addr: SocketAddr, method: &str, params: serde_json::Value) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    rpc_on(&mut s, method, params)
}

/// Waits (up to 30 s) until connecting to `addr` is refused: the listener is gone.
pub fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match std::net::TcpStream::connect(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            Err(e) => panic!("connect {addr}: {e}"),
            Ok(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        // The listener closes on its own task once shutdown began: poll for it.
        std::thread::sleep(Duration::from_millis(10));
    }
}
