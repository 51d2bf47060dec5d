//! Signals, on the binary: the first SIGTERM drains, a second exits at once with
//! 130, `--shutdown-timeout` bounds the drain, SIGHUP reloads and never stops it.
#![cfg(unix)]

mod manager_process;

use std::io::Write;

use blender_session_manager::mock_blender::{MockAction, MockBlender};
use manager_process::{rpc_call, wait_until_refused, ManagerProcess};
use serde_json::json;

/// A manager on `mock` with one session whose `stuck` command is in flight
/// (Blender never answers it). Returns the caller's connection, still waiting.
fn with_a_command_in_flight(
    rt: &tokio::runtime::Runtime,
    mock: &MockBlender,
    extra: &[&str],
) -> (ManagerProcess, std::net::TcpStream) {
    mock.once("stuck", MockAction::NoReply);
    let backend = mock.addr().to_string();
    let mut args = vec!["--blender", backend.as_str()];
    args.extend_from_slice(extra);
    let m = ManagerProcess::start(&args);
    let id = rpc_call(m.rpc, "create_session", json!({}))["result"]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut caller = std::net::TcpStream::connect(m.rpc).unwrap();
    let req = json!({"jsonrpc": "2.0", "id": 7, "method": "send_command",
        "params": {"session_id": id, "command_type": "stuck", "wait": 600}});
    writeln!(caller, "{req}").unwrap();
    rt.block_on(mock.wait_for_request("stuck"));
    (m, caller)
}

#[test]
fn a_second_sigterm_exits_at_once_while_a_command_is_in_flight() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockBlender::start());
    let (mut m, _caller) = with_a_command_in_flight(&rt, &mock, &[]);

    m.signal(libc::SIGTERM);
    m.wait_log(|l| l.contains("session manager shutting down"));
    // Draining: nothing new gets in, on any front door.
    wait_until_refused(m.rpc);
    wait_until_refused(m.compat);
    wait_until_refused(m.http);
    // ... and the manager waits for the command Blender is still running.
    assert!(m.is_running(), "exited with a command in flight");

    m.signal(libc::SIGTERM);
    let status = m.wait_exit();
    assert_eq!(status.code(), Some(130), "{status:?}");
    let log = m.seen.join("\n");
    assert!(
        log.contains("second signal: exiting without waiting for running commands"),
        "{log}"
    );
    assert!(!log.contains("session manager stopped"), "{log}");
}

#[test]
fn sigint_after_sigterm_also_forces_the_exit() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockBlender::start());
    let (mut m, _caller) = with_a_command_in_flight(&rt, &mock, &[]);
    m.signal(libc::SIGTERM);
    m.wait_log(|l| l.contains("session manager shutting down"));
    m.signal(libc::SIGINT);
    assert_eq!(m.wait_exit().code(), Some(130));
}

#[test]
fn shutdown_timeout_bounds_a_stuck_drain() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockBlender::start());
    let (mut m, _caller) = with_a_command_in_flight(&rt, &mock, &["--shutdown-timeout", "1"]);
    m.signal(libc::SIGTERM);
    let busy = m.wait_log(|l| l.contains("sessions still busy at the end of the grace period"));
    assert!(busy.contains("grace_s=1"), "{busy}");
    let status = m.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(
        m.seen.iter().any(|l| l.contains("session manager stopped")),
        "{}",
        m.seen.join("\n")
    );
}

#[test]
fn the_shutdown_timeout_can_come_from_the_config_file() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockBlender::start());
    let dir = manager_process::temp_dir("shutdown-file");
    let file = dir.join("manager.toml");
    std::fs::write(&file, "shutdown_timeout = 0.5\n").unwrap();
    let (mut m, _caller) =
        with_a_command_in_flight(&rt, &mock, &["--config", file.to_str().unwrap()]);
    m.signal(libc::SIGTERM);
    let busy = m.wait_log(|l| l.contains("sessions still busy at the end of the grace period"));
    assert!(busy.contains("grace_s=0.5"), "{busy}");
    assert!(m.wait_exit().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_with_a_broken_config_file_keeps_serving() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockBlender::start());
    let dir = manager_process::temp_dir("sighup-broken");
    let file = dir.join("manager.toml");
    std::fs::write(&file, "idle_timeout = 300\n").unwrap();
    let backend = mock.addr().to_string();
    let mut m = ManagerProcess::start(&["--blender", &backend, "--config", file.to_str().unwrap()]);

    std::fs::write(&file, "idle_timeout = 300\nno_such_setting = 1\n").unwrap();
    m.signal(libc::SIGHUP);
    let refused = m.wait_log(|l| l.contains("SIGHUP: configuration reload refused"));
    assert!(
        refused.contains("no_such_setting") && refused.contains(":2:"),
        "{refused}"
    );
    let status = rpc_call(m.rpc, "get_manager_status", json!({}));
    assert_eq!(
        status["result"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{status}"
    );
    assert!(m.is_running());

    // Fixed again, the next SIGHUP goes through.
    std::fs::write(&file, "idle_timeout = 120\n").unwrap();
    m.signal(libc::SIGHUP);
    m.wait_log(|l| l.contains("SIGHUP: configuration reloaded"));
    let status = rpc_call(m.rpc, "get_manager_status", json!({}));
    assert_eq!(status["result"]["draining"], false, "{status}");

    m.signal(libc::SIGTERM);
    assert!(m.wait_exit().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_without_a_config_file_reloads_flags_and_environment() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockBlender::start());
    let mut m = ManagerProcess::start(&["--blender", &mock.addr().to_string()]);
    m.signal(libc::SIGHUP);
    m.wait_log(|l| l.contains("SIGHUP: configuration reloaded"));
    m.signal(libc::SIGHUP);
    m.wait_log(|l| l.contains("SIGHUP: configuration reloaded"));
    let status = rpc_call(m.rpc, "get_manager_status", json!({}));
    assert!(status["result"]["uptime"].is_number(), "{status}");
}
