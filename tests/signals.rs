//! Signals, on the binary: SIGHUP reloads the configuration and never stops it.
#![cfg(unix)]

mod manager_process;

use blender_session_manager::mock_blender::MockBlender;
use manager_process::{rpc_call, ManagerProcess};
use serde_json::json;

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
