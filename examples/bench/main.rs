//! The benchmark suite of the Blender Session Manager (`scripts/bench.sh` runs it).
//!
//! `bench run [--quick]` starts, on 127.0.0.1 only, an instant mock addon (this binary
//! as `bench mock`, its own process), two managers (the release binary: `--db :memory:`
//! and a file database), HAProxy in TCP mode in front of the mock when installed, and
//! measures side by side, in interleaved rounds:
//!
//! * latency of small commands over one session: direct, HAProxy, the manager's
//!   addon-compatible port and JSON-RPC port, and reconnect-per-request;
//! * throughput (commands/s) over 64 and 1,000 sessions, closed loop, with the CPU%
//!   and RSS of the process in the middle;
//! * one 16 MiB reply: direct, HAProxy, the manager, and the stock client's
//!   re-parse-the-buffer reassembly;
//! * scale: 10,000 sessions with live backend sockets on a fresh manager (memory per
//!   idle session, `create_session` latency including the connect);
//! * the reaper sweep over 100,000 link-less sessions (in process);
//! * with a `bpy` venv (`.venv`, see scripts/python_env.sh): a real headless Blender's
//!   `get_scene_info` direct, through HAProxy and through the manager.
//!
//! It prints tables and the goal verdicts, and writes `results.json` and `results.csv`.

mod client;
mod mock;
mod procs;
mod report;
mod scenarios;
mod stats;
mod sweep;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::json;

use scenarios::{Kind, Target};

#[derive(Parser)]
#[command(name = "bench", about = "Benchmarks of the Blender Session Manager")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios and write the results
    Run(RunArgs),
    /// Serve as the instant mock addon (used by `run`, in its own process)
    Mock {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Size in bytes of the reply to ordinary commands
        #[arg(long, default_value_t = 128)]
        reply_bytes: usize,
        /// Size in bytes of the reply to `big_reply`
        #[arg(long, default_value_t = 16 << 20)]
        big_reply_bytes: usize,
    },
    /// Print the tables and goal verdicts of a results.json again
    Report {
        /// A results.json written by `bench run`
        results: PathBuf,
    },
    /// Drive load at one address for a while (for profiling a running manager)
    Load {
        /// direct, direct-as-manager, compat or jsonrpc
        #[arg(long)]
        kind: String,
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 1)]
        sessions: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// ping (small reply) or big_reply
        #[arg(long, default_value = "ping")]
        command: String,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// A short smoke run (fewer rounds and samples, smaller scale)
    #[arg(long)]
    quick: bool,
    /// The manager binary (default: target/release/blender-session-manager)
    #[arg(long)]
    manager_bin: Option<PathBuf>,
    /// Where results.json and results.csv go
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Scenarios to run (comma-separated): latency,throughput,big,scale,sweep,blender
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "latency,throughput,big,scale,sweep,blender"
    )]
    only: Vec<String>,
    /// Reply size of the small commands, in bytes
    #[arg(long, default_value_t = 128)]
    reply_bytes: usize,
    /// Size of the big reply, in bytes (default 16 MiB; 4 MiB with --quick, where the
    /// stock client's quadratic reassembly of 16 MiB alone would take half a minute)
    #[arg(long)]
    big_bytes: Option<usize>,
    /// Threads of the load generator's runtime in the throughput cells
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Skip HAProxy even when it is installed
    #[arg(long)]
    no_haproxy: bool,
    /// The Python with `bpy` for the real-Blender scenario (default: .venv/bin/python)
    #[arg(long)]
    blender_python: Option<PathBuf>,
    /// KEY=VALUE set in every manager's environment (experiments, e.g. RUST_LOG=warn);
    /// by default managers run with a clean environment and default settings
    #[arg(long)]
    manager_env: Vec<String>,
}

/// How much of everything, full or quick.
pub struct Plan {
    pub lat: scenarios::LatencyPlan,
    pub big: scenarios::BigPlan,
    pub tp: scenarios::TpPlan,
    pub tp_sessions: Vec<usize>,
    pub scale_sessions: usize,
    pub sweep_sessions: usize,
    pub sweep_runs: usize,
    pub blender: scenarios::LatencyPlan,
}

impl Plan {
    fn new(quick: bool, client_threads: usize) -> Plan {
        if quick {
            Plan {
                lat: scenarios::LatencyPlan {
                    rounds: 2,
                    samples: 1000,
                    reconnect_samples: 300,
                    warmup: 200,
                },
                big: scenarios::BigPlan {
                    rounds: 1,
                    reps: 1,
                    stock_rounds: 1,
                },
                tp: scenarios::TpPlan {
                    rounds: 1,
                    warmup: Duration::from_millis(200),
                    measure: Duration::from_millis(800),
                    client_threads,
                },
                tp_sessions: vec![64, 1000],
                scale_sessions: 1000,
                sweep_sessions: 10_000,
                sweep_runs: 3,
                blender: scenarios::LatencyPlan {
                    rounds: 1,
                    samples: 200,
                    reconnect_samples: 0,
                    warmup: 50,
                },
            }
        } else {
            Plan {
                lat: scenarios::LatencyPlan {
                    rounds: 7,
                    samples: 10_000,
                    reconnect_samples: 2_000,
                    warmup: 1_000,
                },
                big: scenarios::BigPlan {
                    rounds: 3,
                    reps: 3,
                    stock_rounds: 1,
                },
                tp: scenarios::TpPlan {
                    rounds: 5,
                    warmup: Duration::from_millis(500),
                    measure: Duration::from_secs(3),
                    client_threads,
                },
                tp_sessions: vec![64, 1000],
                scale_sessions: 10_000,
                sweep_sessions: 100_000,
                sweep_runs: 7,
                blender: scenarios::LatencyPlan {
                    rounds: 5,
                    samples: 2_000,
                    reconnect_samples: 0,
                    warmup: 200,
                },
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Mock {
            listen,
            reply_bytes,
            big_reply_bytes,
        } => match mock::run(listen, reply_bytes, big_reply_bytes) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench mock: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Report { results } => {
            let doc: serde_json::Value = match std::fs::read(&results)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("bench report: {}: {e}", results.display());
                    return ExitCode::FAILURE;
                }
            };
            let mut doc = doc;
            doc["goals"] = report::goals(&doc);
            println!("{}", report::tables(&doc));
            ExitCode::SUCCESS
        }
        Cmd::Load {
            kind,
            addr,
            sessions,
            seconds,
            command,
        } => {
            let kind = match kind.as_str() {
                "direct" => Kind::Direct,
                "direct-as-manager" => Kind::DirectAsManager,
                "compat" => Kind::Compat,
                "jsonrpc" => Kind::Rpc,
                other => {
                    eprintln!("bench load: unknown --kind {other}");
                    return ExitCode::FAILURE;
                }
            };
            let t = Target {
                name: "load".into(),
                kind,
                addr,
                proxy_pid: None,
                rpc: None,
            };
            match scenarios::load(
                &t,
                sessions,
                Duration::from_secs_f64(seconds.clamp(0.1, 3600.0)),
                &command,
            ) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bench load: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Run(args) => {
            procs::install_signal_handler();
            let result = run(args);
            procs::kill_all_children();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn say(msg: &str) {
    eprintln!("[bench] {msg}");
}

fn run(args: RunArgs) -> std::io::Result<()> {
    let started = Instant::now();
    let nofile = procs::raise_nofile();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = args
        .manager_bin
        .clone()
        .unwrap_or_else(|| repo.join("target/release/blender-session-manager"));
    if !bin.is_file() {
        return Err(std::io::Error::other(format!(
            "{}: no manager binary (cargo build --release)",
            bin.display()
        )));
    }
    let want = |s: &str| args.only.iter().any(|o| o == s);
    let manager_env: Vec<(String, String)> = args
        .manager_env
        .iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    procs::set_manager_env(manager_env.clone());
    let plan = Plan::new(args.quick, args.client_threads);
    let big_bytes = args
        .big_bytes
        .unwrap_or(if args.quick { 4 << 20 } else { 16 << 20 });
    let dir = std::env::temp_dir().join(format!("bsm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let out_dir = if args.out.is_absolute() {
        args.out.clone()
    } else {
        std::env::current_dir()?.join(&args.out)
    };
    std::fs::create_dir_all(&out_dir)?;

    let haproxy_version = procs::which("haproxy").and_then(|h| {
        procs::command_output(h.to_str()?, &["-v"], &repo)
            .and_then(|v| v.lines().next().map(str::to_string))
    });
    let mut notes: Vec<String> = vec![];
    let mut meta = json!({
        "date_utc": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "commit": procs::command_output("git", &["rev-parse", "--short", "HEAD"], &repo),
        "dirty_paths": procs::command_output("git", &["status", "--porcelain", "--untracked-files=no"], &repo)
            .map(|s| s.lines().count()),
        "machine": procs::machine(),
        "loadavg_start": procs::loadavg(),
        "mode": if args.quick { "quick" } else { "full" },
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "manager_bin": bin.display().to_string(),
        "haproxy": haproxy_version,
        "open_files_limit": nofile,
        "reply_bytes": args.reply_bytes,
        "big_reply_bytes": big_bytes,
        "client_threads": args.client_threads,
        "manager_env": manager_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
    });
    let load1: f64 = procs::loadavg()
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    if load1 > 1.0 {
        let note = format!(
            "the machine was busy when the run started (1-minute load average {load1:.2} on {} CPUs): \
             other work competes for the cores, so figures are noisier and lower than on an idle machine",
            meta["machine"]["nproc"]
        );
        say(&note);
        notes.push(note);
    }
    say(&format!(
        "{} run; machine {}; load {}",
        meta["mode"].as_str().unwrap_or(""),
        meta["machine"],
        meta["loadavg_start"].as_str().unwrap_or("")
    ));
    let mut results = json!({});

    // Capacity only: 1,000 sessions and their in-flight jobs need more than the
    // default caps (max_sessions 1000, max_queue 100). Everything else is default.
    let caps: Vec<String> = ["--max-sessions", "4096", "--max-queue", "4096"]
        .iter()
        .map(|s| s.to_string())
        .collect();

    let shared = want("latency") || want("throughput") || want("big");
    if shared {
        let (mock, mock_addr) = procs::start_mock(args.reply_bytes, big_bytes)?;
        say(&format!("mock addon at {mock_addr} (pid {})", mock.pid()));
        let mem = procs::start_manager(&bin, "mem", mock_addr, ":memory:", &caps, &dir)?;
        let db_path = dir.join("manager.db");
        let file = procs::start_manager(
            &bin,
            "file",
            mock_addr,
            db_path.to_str().expect("utf-8 path"),
            &caps,
            &dir,
        )?;
        say(&format!(
            "managers: :memory: (pid {}, JSON-RPC {}, compat {}), file db (pid {})",
            mem.proc.pid(),
            mem.rpc,
            mem.compat,
            file.proc.pid()
        ));
        let haproxy = if args.no_haproxy {
            notes.push("HAProxy skipped (--no-haproxy)".into());
            None
        } else {
            match procs::start_haproxy(mock_addr, "mock", &dir) {
                Ok(h) => Some(h),
                Err(e) => {
                    let note = format!(
                        "HAProxy column skipped: {e} (install it: apt-get install -y haproxy)"
                    );
                    say(&note);
                    notes.push(note);
                    None
                }
            }
        };
        let mut targets = vec![Target {
            name: "direct".into(),
            kind: Kind::Direct,
            addr: mock_addr,
            proxy_pid: None,
            rpc: None,
        }];
        if let Some((h, addr)) = &haproxy {
            targets.push(Target {
                name: "haproxy".into(),
                kind: Kind::Haproxy,
                addr: *addr,
                proxy_pid: Some(h.pid()),
                rpc: None,
            });
        }
        for (m, tag) in [(&mem, ""), (&file, " (file db)")] {
            targets.push(Target {
                name: format!("manager compat{tag}"),
                kind: Kind::Compat,
                addr: m.compat,
                proxy_pid: Some(m.proc.pid()),
                rpc: Some(m.rpc),
            });
            targets.push(Target {
                name: format!("manager jsonrpc{tag}"),
                kind: Kind::Rpc,
                addr: m.rpc,
                proxy_pid: Some(m.proc.pid()),
                rpc: Some(m.rpc),
            });
        }
        let rss_of = |label: &str, results: &mut serde_json::Value| {
            results["manager_memory"][label] = json!({
                "mem_rss_bytes": mem.proc.rss(), "mem_hwm_bytes": mem.proc.hwm(),
                "file_rss_bytes": file.proc.rss(), "file_hwm_bytes": file.proc.hwm(),
            });
        };
        rss_of("0 at start", &mut results);

        if want("latency") {
            say("latency: one session per path, small commands, instant backend");
            let mut lt = targets.clone();
            lt.push(Target {
                name: "reconnect per request".into(),
                kind: Kind::Reconnect,
                addr: mock_addr,
                proxy_pid: None,
                rpc: None,
            });
            let r = scenarios::latency(&lt, "get_scene_info", &plan.lat)?;
            results["latency"] = serde_json::to_value(&r)?;
            rss_of("1 after latency", &mut results);
        }
        if want("throughput") {
            let mut all = vec![];
            for &n in &plan.tp_sessions {
                say(&format!("throughput: {n} sessions, closed loop"));
                let r = scenarios::throughput(&targets, n, mock.pid(), &plan.tp)?;
                all.extend(r);
                rss_of(&format!("2 after throughput × {n:>4}"), &mut results);
            }
            results["throughput"] = serde_json::to_value(&all)?;
        }
        if want("big") {
            say(&format!("big reply: {big_bytes} bytes"));
            let r = scenarios::big(&targets, Some(mock_addr), &plan.big)?;
            results["big"] = serde_json::to_value(&r)?;
            rss_of("3 after big replies", &mut results);
        }
        drop(haproxy);
        drop(file);
        drop(mem);
        drop(mock);
    }

    if want("scale") {
        say(&format!(
            "scale: {} sessions with live backend sockets (fresh manager and mock)",
            plan.scale_sessions
        ));
        let r = scenarios::scale(&bin, plan.scale_sessions, &dir)?;
        say(&format!(
            "  {} sessions: {:.0} bytes each; create_session p50 {:.1} µs; {} backend connections reported",
            r.sessions, r.per_session_bytes, r.create_session.p50_us, r.reported_backend_connections
        ));
        results["scale"] = serde_json::to_value(&r)?;
    }

    if want("sweep") {
        say(&format!(
            "reaper sweep over {} link-less sessions (in process)",
            plan.sweep_sessions
        ));
        let r = sweep::run(plan.sweep_sessions, plan.sweep_runs)?;
        say(&format!(
            "  scan-only best {:.2} ms (median {:.2}); reaping 1%: {:.2} ms; reaping all: {:.1} ms",
            r.scan_only_best_ms, r.scan_only_median_ms, r.reap_1pct_ms, r.reap_all_ms
        ));
        results["sweep"] = serde_json::to_value(&r)?;
    }

    if want("blender") {
        let python = args
            .blender_python
            .clone()
            .unwrap_or_else(|| repo.join(".venv/bin/python"));
        if !python.is_file() {
            let note = format!(
                "real-Blender scenario skipped: no {} (create the venv with scripts/python_env.sh)",
                python.display()
            );
            say(&note);
            notes.push(note);
        } else {
            say("real Blender: starting a headless Blender with the project's addon");
            match real_blender(&bin, &python, &repo, &dir, &plan, args.no_haproxy) {
                Ok(r) => results["blender"] = r,
                Err(e) => {
                    let note = format!("real-Blender scenario failed: {e}");
                    say(&note);
                    notes.push(note);
                }
            }
        }
    }

    meta["loadavg_end"] = json!(procs::loadavg());
    meta["duration_s"] = json!(started.elapsed().as_secs_f64().round());
    meta["notes"] = json!(notes);
    let doc = json!({"meta": meta, "results": results});
    let goals = report::goals(&doc);
    let doc = {
        let mut d = doc;
        d["goals"] = goals;
        d
    };
    let text = report::tables(&doc);
    println!("{text}");
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_vec_pretty(&doc)?,
    )?;
    std::fs::write(out_dir.join("results.csv"), report::csv(&doc))?;
    std::fs::write(out_dir.join("results.txt"), &text)?;
    say(&format!(
        "wrote {}/results.{{json,csv,txt}} in {:.0} s",
        out_dir.display(),
        started.elapsed().as_secs_f64()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `get_scene_info` against a real headless Blender: direct, HAProxy, manager.
fn real_blender(
    bin: &std::path::Path,
    python: &std::path::Path,
    repo: &std::path::Path,
    dir: &std::path::Path,
    plan: &Plan,
    no_haproxy: bool,
) -> std::io::Result<serde_json::Value> {
    let (blender, addr) = procs::start_blender(python, repo, dir)?;
    say(&format!(
        "  headless Blender at {addr} (pid {})",
        blender.pid()
    ));
    let mgr = procs::start_manager(bin, "blender", addr, ":memory:", &[], dir)?;
    let haproxy = if no_haproxy {
        None
    } else {
        procs::start_haproxy(addr, "blender", dir).ok()
    };
    let mut targets = vec![Target {
        name: "direct".into(),
        kind: Kind::Direct,
        addr,
        proxy_pid: None,
        rpc: None,
    }];
    if let Some((h, a)) = &haproxy {
        targets.push(Target {
            name: "haproxy".into(),
            kind: Kind::Haproxy,
            addr: *a,
            proxy_pid: Some(h.pid()),
            rpc: None,
        });
    }
    targets.push(Target {
        name: "direct, manager's request".into(),
        kind: Kind::DirectAsManager,
        addr,
        proxy_pid: None,
        rpc: None,
    });
    targets.push(Target {
        name: "manager compat".into(),
        kind: Kind::Compat,
        addr: mgr.compat,
        proxy_pid: Some(mgr.proc.pid()),
        rpc: Some(mgr.rpc),
    });
    targets.push(Target {
        name: "manager jsonrpc".into(),
        kind: Kind::Rpc,
        addr: mgr.rpc,
        proxy_pid: Some(mgr.proc.pid()),
        rpc: Some(mgr.rpc),
    });
    let r = scenarios::latency(&targets, "get_scene_info", &plan.blender)?;
    drop(haproxy);
    drop(mgr);
    drop(blender);
    Ok(serde_json::to_value(&r)?)
}
