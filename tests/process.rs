//! The binary as users run it: start-up, refusals, signals, and the CLI client.

mod manager_process;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use blender_session_manager::mock_blender::MockBlender;
use manager_process::{clean_command, rpc_call, serve_command, temp_dir, ManagerProcess};

#[test]
fn refuses_a_non_loopback_listen_without_a_token() {
    let out = clean_command()
        .args(["--listen", "0.0.0.0:0", "--compat-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--listen 0.0.0.0:0") && err.contains("--token"),
        "{err}"
    );
}

#[test]
fn a_listener_that_cannot_bind_names_the_flag_and_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = clean_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--compat-listen", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("--compat-listen {addr}: cannot listen")),
        "{err}"
    );
}

#[test]
fn env_vars_configure_serve() {
    let out = clean_command()
        .env("SESSION_MANAGER_IDLE_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SESSION_MANAGER_IDLE_TIMEOUT: \"soon\""));
}

#[test]
fn stops_cleanly_on_sigterm_and_logs_the_story() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockBlender::start());
    let mut m = ManagerProcess::start(&["--blender", &mock.addr().to_string()]);
    let out = m.client(&["call", "execute_code", r#"{"code": "print hello"}"#]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
    let created = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(created.starts_with("created session scene-"), "{created}");
    let id = created.trim().trim_start_matches("created session ");
    m.wait_log(|l| l.contains("session created, Blender connected") && l.contains(id));
    let before = m.seen.len();
    m.signal(libc::SIGTERM);
    let status = m.wait_exit();
    assert!(status.success(), "{status:?}");
    // Everything logged after the session was connected, up to the exit.
    let rest = &m.seen[before..];
    assert!(
        rest.iter().any(|l| l.contains("session closed")
            && l.contains(id)
            && l.contains("reason=shutdown")),
        "{rest:#?}"
    );
    assert!(
        rest.iter().any(|l| l.contains("session manager stopped")),
        "{rest:#?}"
    );
    // Per-command lines are debug: at the default level a command logs nothing.
    let per_command = ["command sent", "response", "job submitted"];
    assert!(
        !rest
            .iter()
            .any(|l| per_command.iter().any(|p| l.contains(p))),
        "{rest:#?}"
    );
    let _ = m.compat;
}

#[test]
fn debug_level_logs_every_command() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockBlender::start());
    let mut m = ManagerProcess::start_with_log(
        &["--blender", &mock.addr().to_string()],
        "info,blender_session_manager=debug",
    );
    let out = m.client(&["call", "execute_code", r#"{"code": "print hello"}"#]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.wait_log(|l| {
        l.contains("DEBUG") && l.contains("job submitted") && l.contains("job_type=execute_code")
    });
    m.wait_log(|l| l.contains("DEBUG") && l.contains("command sent") && l.contains("execute_code"));
    m.wait_log(|l| l.contains("DEBUG") && l.contains("response") && l.contains("status=success"));
}

#[test]
fn cli_lists_shows_and_closes_sessions() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockBlender::start());
    let m = ManagerProcess::start(&["--blender", &mock.addr().to_string()]);
    let out = m.client(&["call", "get_scene_info"]);
    assert!(out.status.success());
    let id = String::from_utf8_lossy(&out.stderr)
        .trim()
        .trim_start_matches("created session ")
        .to_string();
    let list = m.client(&["sessions", "list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains(&id) && list.contains("get_scene_info"),
        "{list}"
    );
    let hist = m.client(&["sessions", "history", &id]);
    assert!(String::from_utf8_lossy(&hist.stdout).contains("success"));
    let json = m.client(&["--json", "sessions", "show", &id]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v["state"]["objects"],
        serde_json::json!(["Cube", "Camera", "Light"])
    );
    let closed = m.client(&["sessions", "close", &id]);
    assert!(String::from_utf8_lossy(&closed.stdout).contains(&format!("closed {id}")));
    let gone = m.client(&["sessions", "show", &id]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("Session not found"));
    let status = m.client(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains(&mock.addr().to_string()));
}

#[test]
fn cli_says_when_the_manager_cannot_be_reached() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = clean_command()
        .args(["--manager", &free.to_string(), "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the manager"));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut child = serve_command()
        .args(["--blender", "127.0.0.1:1", "--log-format", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let read = BufReader::new(child.stderr.take().unwrap()).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    read.unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["message"], "session manager started");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["backends"], "127.0.0.1:1");
    assert!(v["jsonrpc"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[test]
fn a_result_survives_sigkill_right_after_the_job_completed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockBlender::start());
    mock.once(
        "stuck",
        blender_session_manager::mock_blender::MockAction::NoReply,
    );
    let dir = temp_dir("sigkill");
    let db = dir.join("manager.db").to_string_lossy().into_owned();
    let backend = mock.addr().to_string();
    let mut m = ManagerProcess::start(&["--blender", &backend, "--db", &db]);
    let id = rpc_call(m.rpc, "create_session", serde_json::json!({}))["result"]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let submit = |command: &str| {
        rpc_call(
            m.rpc,
            "submit_job",
            serde_json::json!({"session_id": id, "command_type": command}),
        )["result"]["job_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let done = submit("execute_code");
    let r = rpc_call(
        m.rpc,
        "get_job_result",
        serde_json::json!({"job_id": done, "wait": 10}),
    );
    assert_eq!(r["result"]["status"], "completed");
    let stuck = submit("stuck");
    rt.block_on(mock.wait_for_request("stuck"));
    // kill -9: no chance to flush anything.
    m.child.kill().unwrap();
    m.child.wait().unwrap();

    let m2 = ManagerProcess::start(&["--blender", &backend, "--db", &db]);
    let r = rpc_call(
        m2.rpc,
        "get_job_result",
        serde_json::json!({"job_id": done}),
    );
    assert_eq!(r["result"]["status"], "completed", "{r}");
    assert_eq!(r["result"]["result"]["status"], "success");
    let r = rpc_call(m2.rpc, "get_job", serde_json::json!({"job_id": stuck}));
    assert_eq!(r["result"]["status"], "failed");
    assert_eq!(r["result"]["error"]["kind"], "manager_restarted");
    assert!(r["result"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("may or may not"));
    let h = rpc_call(
        m2.rpc,
        "get_session_history",
        serde_json::json!({"session_id": id}),
    );
    assert_eq!(h["result"][0]["job_id"], done.as_str());
    drop(m2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unusable_database_path_is_a_clear_start_up_error() {
    let dir = temp_dir("unusable");
    let file = dir.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    // A path under a regular file cannot be created, even by root.
    let db = file.join("manager.db").to_string_lossy().into_owned();
    let out = clean_command()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--compat-listen",
            "127.0.0.1:0",
            "--db",
            &db,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("--db {db}")), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_lists_shows_and_waits_for_jobs() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt.block_on(MockBlender::start());
    let m = ManagerProcess::start(&["--blender", &mock.addr().to_string()]);
    let out = m.client(&[
        "--json",
        "call",
        "execute_code",
        r#"{"code": "print done"}"#,
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = v["job_id"].as_str().unwrap().to_string();
    let list = m.client(&["jobs", "list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains(&job) && list.contains("completed"), "{list}");
    let show = m.client(&["jobs", "show", &job]);
    assert!(String::from_utf8_lossy(&show.stdout).contains("done"));
    let wait = m.client(&["jobs", "wait", &job]);
    assert!(wait.status.success());
    assert_eq!(String::from_utf8_lossy(&wait.stdout).trim(), "done");
    let missing = m.client(&["jobs", "show", "job-nope"]);
    assert_eq!(missing.status.code(), Some(1));
}
