//! Tests of the command-line client against a fake manager (`support_cli`).
//!
//! The fake records every request and answers from a per-test closure; replies may overtake each
//! other, the way the real manager may answer out of order. Tests drive the client's pub API
//! (`run_to_output`, `RpcClient`, the formatters) and check the exact requests sent and the exact
//! text printed.

mod support_cli;

use std::time::Duration;

use blender_session_manager::cli::format::{
    format_call_result, format_history, format_millis, format_session_info, format_sessions_list,
    format_status, human_duration, local_clock, one_line_preview, truncate_chars,
};
use blender_session_manager::cli::table::Table;
use blender_session_manager::cli::{
    parse_params, run_to_output, CallArgs, ClientCommand, ClientError, GlobalOptions, RpcClient,
    SessionsCommand,
};
use clap::Parser;
use serde_json::{json, Value};
use support_cli::{not_found, now, refused_address, FakeManager, Reply};

const SESSION: &str = "scene-20260106-101530-a1b2c3d4";

fn session_info(id: &str) -> Value {
    json!({
        "session_id": id,
        "created_at": 1704528000.123,
        "last_activity": 1704528015.456,
        "blender": {"connected": true, "host": "127.0.0.1", "port": 9876,
                    "last_heartbeat": 1704528015.456, "last_error": null},
        "state": {"objects": ["Cube", "Camera", "Light", "Cube.001"], "selection": "Cube.001",
                  "last_command": "execute_code",
                  "last_result": {"executed": true, "result": "Cube.001\n"}},
        "command_count": 5
    })
}

fn call_command(command_type: &str, params: Option<&str>, session: Option<&str>) -> ClientCommand {
    ClientCommand::Call(CallArgs {
        command_type: command_type.to_string(),
        params: params.map(str::to_string),
        session: session.map(str::to_string),
    })
}

// ---------------------------------------------------------------------------------------------
// call

#[tokio::test]
async fn call_without_session_creates_one_then_sends_the_command_to_it() {
    let manager = FakeManager::start(|method, _| match method {
        "create_session" => Reply::Result(session_info(SESSION)),
        "send_command" => Reply::Result(json!({
            "status": "success",
            "result": {"executed": true, "result": "Cube.001\n"},
            "duration": 0.012, "seq": 1, "job_id": "job-1"
        })),
        other => not_found(other),
    })
    .await;

    let output = run_to_output(
        &manager.global(),
        call_command("execute_code", Some(r#"{"code": "print(1)"}"#), None),
    )
    .await;

    assert_eq!(manager.methods(), ["create_session", "send_command"]);
    let requests = manager.requests();
    assert_eq!(requests[0]["jsonrpc"], "2.0");
    assert_eq!(requests[0]["params"], json!({}));
    assert_eq!(
        requests[1]["params"],
        json!({"session_id": SESSION, "command_type": "execute_code",
               "params": {"code": "print(1)"}})
    );
    assert_ne!(requests[0]["id"], requests[1]["id"], "ids must be unique");
    assert_eq!(output.stderr, format!("created session {SESSION}\n"));
    assert_eq!(
        output.stdout, "Cube.001\n",
        "execute_code stdout printed as-is"
    );
    assert_eq!(output.exit_code, 0);
}

#[tokio::test]
async fn call_with_session_sends_only_the_command() {
    let manager = FakeManager::start(|_, _| {
        Reply::Result(
            json!({"status": "success", "result": {"name": "Scene", "object_count": 3},
                             "duration": 0.2, "seq": 4, "job_id": "job-4"}),
        )
    })
    .await;

    let command = ClientCommand::Call(CallArgs {
        command_type: "get_scene_info".to_string(),
        params: None,
        session: Some(SESSION.to_string()),
    });
    let output = run_to_output(&manager.global(), command).await;

    assert_eq!(manager.methods(), ["send_command"]);
    assert_eq!(
        manager.requests()[0]["params"],
        json!({"session_id": SESSION, "command_type": "get_scene_info", "params": {}})
    );
    assert_eq!(output.stderr, "");
    assert_eq!(
        output.stdout,
        "{\n  \"name\": \"Scene\",\n  \"object_count\": 3\n}\n"
    );
    assert_eq!(output.exit_code, 0);
}

#[tokio::test]
async fn call_with_a_token_authenticates_before_anything_else() {
    let manager = FakeManager::start(|method, _| match method {
        "authenticate" => Reply::Result(json!({"authenticated": true})),
        "create_session" => Reply::Result(session_info(SESSION)),
        _ => Reply::Result(
            json!({"status": "success", "result": "ok", "duration": 0.001,
                                  "seq": 1, "job_id": "j"}),
        ),
    })
    .await;
    let global = GlobalOptions {
        token: Some("s3cret".to_string()),
        ..manager.global()
    };

    let output = run_to_output(&global, call_command("ping", None, None)).await;

    assert_eq!(
        manager.methods(),
        ["authenticate", "create_session", "send_command"]
    );
    assert_eq!(manager.requests()[0]["params"], json!({"token": "s3cret"}));
    assert_eq!(output.stdout, "ok\n");
    assert_eq!(output.exit_code, 0);
}

#[tokio::test]
async fn a_wrong_token_stops_the_command_with_the_unauthorized_error() {
    let manager = FakeManager::start(|method, _| match method {
        "authenticate" => Reply::Error {
            code: -32007,
            kind: "unauthorized",
            message: "Unauthorized: wrong token".to_string(),
        },
        other => not_found(other),
    })
    .await;
    let global = GlobalOptions {
        token: Some("nope".to_string()),
        ..manager.global()
    };

    let output = run_to_output(&global, ClientCommand::Status).await;

    assert_eq!(manager.methods(), ["authenticate"]);
    assert_eq!(
        output.stderr,
        "error: Unauthorized: wrong token (unauthorized, code -32007)\n"
    );
    assert_eq!(output.exit_code, 1);
}

#[tokio::test]
async fn call_with_a_blender_error_reply_exits_1_with_the_message() {
    let manager = FakeManager::start(|_, _| {
        Reply::Result(
            json!({"status": "error", "message": "Object not found: Cube.002",
                             "duration": 0.003, "seq": 2, "job_id": "j"}),
        )
    })
    .await;

    let output = run_to_output(
        &manager.global(),
        call_command(
            "get_object_info",
            Some(r#"{"name":"Cube.002"}"#),
            Some(SESSION),
        ),
    )
    .await;

    assert_eq!(output.stdout, "");
    assert_eq!(
        output.stderr,
        "error: Blender reported an error for get_object_info: Object not found: Cube.002\n"
    );
    assert_eq!(output.exit_code, 1);
}

#[tokio::test]
async fn call_that_outlives_wait_prints_the_job_id() {
    let manager =
        FakeManager::start(|_, _| Reply::Result(json!({"status": "pending", "job_id": "job-42"})))
            .await;

    let output = run_to_output(
        &manager.global(),
        call_command("render", None, Some(SESSION)),
    )
    .await;

    assert!(
        output.stdout.starts_with("pending: job job-42\n"),
        "{}",
        output.stdout
    );
    assert!(output.stdout.contains("render keeps running"));
    assert_eq!(output.exit_code, 0);
}

#[tokio::test]
async fn call_whose_job_was_cancelled_exits_1() {
    let manager = FakeManager::start(|_, _| {
        Reply::Result(
            json!({"status": "cancelled", "message": "cancelled by the caller", "job_id": "job-7"}),
        )
    })
    .await;
    let output = run_to_output(
        &manager.global(),
        call_command("render", None, Some(SESSION)),
    )
    .await;
    assert_eq!(output.stderr, "error: job job-7 (render) was cancelled\n");
    assert_eq!(output.exit_code, 1);
}

#[tokio::test]
async fn call_with_json_prints_the_raw_reply() {
    let reply = json!({"status": "error", "message": "boom", "duration": 0.5, "seq": 3,
                       "job_id": "job-3"});
    let canned = reply.clone();
    let manager = FakeManager::start(move |_, _| Reply::Result(canned.clone())).await;
    let global = GlobalOptions {
        json: true,
        ..manager.global()
    };

    let output = run_to_output(&global, call_command("x", None, Some(SESSION))).await;

    let printed: Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(printed, reply);
    assert_eq!(
        output.stdout,
        format!("{}\n", serde_json::to_string_pretty(&reply).unwrap())
    );
    assert_eq!(output.exit_code, 1, "an error status still fails the call");
}

#[tokio::test]
async fn call_rejects_params_that_are_not_a_json_object_before_connecting() {
    let manager = FakeManager::start(|method, _| not_found(method)).await;

    let not_object = run_to_output(
        &manager.global(),
        call_command("execute_code", Some("[1, 2]"), None),
    )
    .await;
    assert_eq!(not_object.exit_code, 2);
    assert!(
        not_object
            .stderr
            .starts_with("error: PARAMS_JSON must be a JSON object"),
        "{}",
        not_object.stderr
    );
    assert!(not_object.stderr.contains("got an array"));

    let not_json = run_to_output(
        &manager.global(),
        call_command("execute_code", Some("{code: 1}"), None),
    )
    .await;
    assert_eq!(not_json.exit_code, 2);
    assert!(
        not_json
            .stderr
            .starts_with("error: PARAMS_JSON is not valid JSON: key must be a string"),
        "{}",
        not_json.stderr
    );

    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(manager.requests().is_empty());
}

#[test]
fn parse_params_accepts_objects_and_defaults_to_empty() {
    assert!(parse_params(None).unwrap().is_empty());
    let params = parse_params(Some(r#"{"code": "import bpy", "n": 2}"#)).unwrap();
    assert_eq!(params["code"], "import bpy");
    assert_eq!(params["n"], 2);
    for bad in ["\"text\"", "3", "null", "true", ""] {
        match parse_params(Some(bad)) {
            Err(err @ ClientError::Usage(_)) => assert_eq!(err.exit_code(), 2),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// errors and the client

#[tokio::test]
async fn an_error_reply_becomes_a_typed_error_with_code_and_kind() {
    let manager = FakeManager::start(|_, params| Reply::Error {
        code: -32001,
        kind: "session_not_found",
        message: format!(
            "Session not found: {}",
            params["session_id"].as_str().unwrap()
        ),
    })
    .await;

    let client = RpcClient::connect(&manager.address).await.unwrap();
    let err = client
        .call("get_session_info", json!({"session_id": "scene-x"}))
        .await
        .unwrap_err();
    match &err {
        ClientError::Rpc {
            code,
            kind,
            message,
            data,
        } => {
            assert_eq!(*code, -32001);
            assert_eq!(kind, "session_not_found");
            assert_eq!(message, "Session not found: scene-x");
            assert_eq!(data["kind"], "session_not_found");
        }
        other => panic!("expected an Rpc error, got {other:?}"),
    }
    assert_eq!(err.rpc_code(), Some(-32001));
    assert_eq!(err.rpc_kind(), Some("session_not_found"));
    assert_eq!(err.exit_code(), 1);

    let output = run_to_output(
        &manager.global(),
        ClientCommand::Sessions(SessionsCommand::Show {
            session_id: "scene-y".into(),
        }),
    )
    .await;
    assert_eq!(
        output.stderr,
        "error: Session not found: scene-y (session_not_found, code -32001)\n"
    );
    assert_eq!(output.stdout, "");
    assert_eq!(output.exit_code, 1);
}

#[tokio::test]
async fn a_refused_connection_names_the_address_and_how_to_start_the_manager() {
    let address = refused_address().await;

    let err = RpcClient::connect(&address).await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot reach the manager at {address}: connection refused — is it running? \
             start it with scripts/start_manager.sh"
        )
    );
    assert_eq!(err.exit_code(), 3);

    let global = GlobalOptions {
        manager: address.clone(),
        token: None,
        json: false,
    };
    let output = run_to_output(&global, ClientCommand::Status).await;
    assert_eq!(output.exit_code, 3);
    assert_eq!(output.stderr, format!("error: {err}\n"));
}

#[tokio::test]
async fn replies_out_of_order_reach_the_right_callers() {
    let manager = FakeManager::start(|method, _| match method {
        "slow" => Reply::Delayed(Duration::from_millis(200), json!("slow result")),
        _ => Reply::Result(json!("fast result")),
    })
    .await;
    let client = RpcClient::connect(&manager.address).await.unwrap();

    let slow = client.call("slow", json!({}));
    let fast = async {
        // Make sure the slow request is sent first.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let result = client.call("fast", json!({})).await;
        (result, std::time::Instant::now())
    };
    let (slow, (fast, fast_done)) = tokio::join!(slow, fast);
    let slow_done = std::time::Instant::now();

    assert_eq!(slow.unwrap(), "slow result");
    assert_eq!(fast.unwrap(), "fast result");
    assert!(
        fast_done < slow_done,
        "the fast reply must not wait for the slow one"
    );
    assert_eq!(manager.methods(), ["slow", "fast"]);
}

#[tokio::test]
async fn a_manager_that_hangs_up_mid_request_fails_the_request() {
    let manager = FakeManager::start(|method, _| match method {
        "close_me" => Reply::Close,
        _ => Reply::Result(json!(true)),
    })
    .await;
    let client = RpcClient::connect(&manager.address).await.unwrap();
    assert_eq!(client.call("ok", json!({})).await.unwrap(), true);

    let err = client.call("close_me", json!({})).await.unwrap_err();
    assert!(matches!(err, ClientError::Disconnected { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 3);

    // Later calls on the dead connection fail at once instead of hanging.
    let again = tokio::time::timeout(Duration::from_secs(2), client.call("ok", json!({})))
        .await
        .expect("a call on a closed connection must not hang");
    assert!(matches!(again, Err(ClientError::Disconnected { .. })));
}

// ---------------------------------------------------------------------------------------------
// sessions

#[tokio::test]
async fn sessions_list_shows_a_table_with_idle_time() {
    let now = now();
    let mut first = session_info(SESSION);
    first["last_activity"] = json!(now - 184.3);
    let mut second = session_info("scene-20260106-101600-00ff00ff");
    second["last_activity"] = json!(now - 12.4);
    second["blender"]["connected"] = json!(false);
    second["blender"]["port"] = json!(19876);
    second["command_count"] = json!(12);
    second["state"]["last_command"] = Value::Null;
    let sessions = json!([first, second]);
    let canned = sessions.clone();
    let manager = FakeManager::start(move |_, _| Reply::Result(canned.clone())).await;

    let output = run_to_output(
        &manager.global(),
        ClientCommand::Sessions(SessionsCommand::List),
    )
    .await;

    assert_eq!(manager.methods(), ["list_sessions"]);
    assert_eq!(output.exit_code, 0);
    assert_eq!(
        output.stdout,
        "\
SESSION                         BACKEND          CONNECTED  COMMANDS  IDLE   LAST COMMAND
scene-20260106-101530-a1b2c3d4  127.0.0.1:9876   yes        5         3m04s  execute_code
scene-20260106-101600-00ff00ff  127.0.0.1:19876  no         12        12s    -
"
    );

    let json_output = run_to_output(
        &GlobalOptions {
            json: true,
            ..manager.global()
        },
        ClientCommand::Sessions(SessionsCommand::List),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&json_output.stdout).unwrap(),
        sessions
    );
}

#[test]
fn sessions_list_tolerates_missing_keys_and_empty_lists() {
    assert_eq!(format_sessions_list(&json!([]), 0.0), "no open sessions\n");
    let text = format_sessions_list(&json!([{"session_id": "scene-a"}]), 100.0);
    assert_eq!(
        text,
        "SESSION  BACKEND  CONNECTED  COMMANDS  IDLE  LAST COMMAND\nscene-a  -        -          -         -     -\n"
    );
    // idle_seconds is used when last_activity is missing.
    let text = format_sessions_list(&json!([{"session_id": "s", "idle_seconds": 3725}]), 0.0);
    assert!(text.contains("1h02m"), "{text}");
}

#[tokio::test]
async fn sessions_show_lays_out_info_and_objects() {
    let manager = FakeManager::start(|_, params| {
        Reply::Result(session_info(params["session_id"].as_str().unwrap()))
    })
    .await;

    let output = run_to_output(
        &manager.global(),
        ClientCommand::Sessions(SessionsCommand::Show {
            session_id: SESSION.into(),
        }),
    )
    .await;

    assert_eq!(manager.requests()[0]["method"], "get_session_info");
    assert_eq!(
        manager.requests()[0]["params"],
        json!({"session_id": SESSION})
    );
    let text = &output.stdout;
    assert!(
        text.starts_with(&format!("session         {SESSION}\n")),
        "{text}"
    );
    assert!(text.contains("\nblender         127.0.0.1:9876 (connected)\n"));
    assert!(text.contains("\ncommands        5\n"));
    assert!(text.contains("\nlast command    execute_code\n"));
    assert!(text.contains("\nlast result     Cube.001\n"));
    assert!(text.contains("\nselection       Cube.001\n"));
    assert!(text.contains("\nlast error      -\n"));
    assert!(
        text.ends_with("\nobjects (4)\n  Cube\n  Camera\n  Light\n  Cube.001\n"),
        "{text}"
    );
}

#[test]
fn session_info_shows_ages_relative_to_now() {
    let info = session_info(SESSION);
    let text = format_session_info(&info, 1704528015.456 + 65.0);
    let created = blender_session_manager::cli::format::local_datetime(1704528000.123);
    assert!(
        text.contains(&format!("\ncreated         {created} (1m20s ago)\n")),
        "{text}"
    );
    let text = format_session_info(&json!({"session_id": "s"}), 0.0);
    assert!(
        text.contains("blender         - (connection unknown)"),
        "{text}"
    );
    assert!(text.ends_with("\nobjects  -\n"), "{text}");
}

#[tokio::test]
async fn sessions_history_sends_limit_and_since_seq_and_renders_the_table() {
    let timestamp = 1704528000.5;
    let long_output = format!("{}\n", "x".repeat(100));
    let entries = json!([
        {"seq": 1, "command": "get_scene_info", "params": {}, "status": "success",
         "result": {"name": "Scene"}, "error": null, "timestamp": timestamp,
         "duration": 0.0123, "job_id": "j1"},
        {"seq": 2, "command": "execute_code", "params": {"code": "..."}, "status": "success",
         "result": {"executed": true, "result": long_output}, "error": null,
         "timestamp": timestamp + 61.0, "duration": 1.5, "job_id": "j2"},
        {"seq": 10, "command": "render", "params": {}, "status": "timeout", "result": null,
         "error": {"kind": "blender_timeout", "message": "Timeout waiting for Blender response"},
         "timestamp": timestamp + 3600.0, "duration": 180.0, "job_id": "j3"}
    ]);
    let canned = entries.clone();
    let manager = FakeManager::start(move |_, _| Reply::Result(canned.clone())).await;

    let output = run_to_output(
        &manager.global(),
        ClientCommand::Sessions(SessionsCommand::History {
            session_id: SESSION.into(),
            limit: Some(20),
            since_seq: Some(0),
        }),
    )
    .await;

    assert_eq!(manager.methods(), ["get_session_history"]);
    assert_eq!(
        manager.requests()[0]["params"],
        json!({"session_id": SESSION, "limit": 20, "since_seq": 0})
    );
    let t = |offset: f64| local_clock(timestamp + offset);
    let preview = format!("{}…", "x".repeat(59));
    let expected = format!(
        "\
SEQ  TIME      COMMAND         STATUS   DURATION  RESULT
1    {}  get_scene_info  success  12ms      {{\"name\":\"Scene\"}}
2    {}  execute_code    success  1500ms    {preview}
10   {}  render          timeout  180000ms  Timeout waiting for Blender response
",
        t(0.0),
        t(61.0),
        t(3600.0)
    );
    assert_eq!(output.stdout, expected);
    assert_eq!(preview.chars().count(), 60);
}

#[tokio::test]
async fn sessions_history_without_options_sends_only_the_id() {
    let manager = FakeManager::start(|_, _| Reply::Result(json!([]))).await;
    let output = run_to_output(
        &manager.global(),
        ClientCommand::Sessions(SessionsCommand::History {
            session_id: SESSION.into(),
            limit: None,
            since_seq: None,
        }),
    )
    .await;
    assert_eq!(
        manager.requests()[0]["params"],
        json!({"session_id": SESSION})
    );
    assert_eq!(output.stdout, "no history\n");
}

#[test]
fn history_tolerates_odd_entries() {
    let text = format_history(&json!([
        {"seq": 1, "command": "x", "status": "error", "error": {"kind": "blender_error"}},
        {"seq": 2, "status": "disconnected", "error": "Blender closed the connection during x"},
        {}
    ]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "SEQ  TIME  COMMAND  STATUS        DURATION  RESULT"
    );
    assert_eq!(
        lines[1],
        "1    -     x        error         -         blender_error"
    );
    assert_eq!(
        lines[2],
        "2    -     -        disconnected  -         Blender closed the connection during x"
    );
    assert_eq!(lines[3], "-    -     -        -             -         -");
}

#[tokio::test]
async fn sessions_close_prints_closed_id() {
    let manager = FakeManager::start(|_, _| Reply::Result(json!({"closed": true}))).await;
    let output = run_to_output(
        &manager.global(),
        ClientCommand::Sessions(SessionsCommand::Close {
            session_id: SESSION.into(),
        }),
    )
    .await;
    assert_eq!(manager.methods(), ["close_session"]);
    assert_eq!(
        manager.requests()[0]["params"],
        json!({"session_id": SESSION})
    );
    assert_eq!(output.stdout, format!("closed {SESSION}\n"));
    assert_eq!(output.exit_code, 0);
}

// ---------------------------------------------------------------------------------------------
// status

#[tokio::test]
async fn status_prints_summary_listeners_counts_and_backends() {
    let manager = FakeManager::start(|_, _| {
        Reply::Result(json!({
            "version": "0.1.0",
            "uptime": 3725.9,
            "draining": false,
            "listeners": {"jsonrpc": "127.0.0.1:9880", "compat": "127.0.0.1:9877"},
            "backends": [
                {"name": "local", "address": "127.0.0.1:9876", "state": "up", "sessions": 3,
                 "weight": 1, "last_error": null, "latency_ms": 1.234, "paused": true},
                {"name": "farm-b", "address": "10.0.0.7:9876", "state": "down", "sessions": 0,
                 "weight": 2, "last_error": "connection refused", "paused": false}
            ],
            "counts": {"sessions": 3, "jobs_pending": 0}
        }))
    })
    .await;

    let output = run_to_output(&manager.global(), ClientCommand::Status).await;

    assert_eq!(manager.methods(), ["get_manager_status"]);
    assert_eq!(output.exit_code, 0);
    let expected = format!(
        "\
manager   {}
version   0.1.0
uptime    1h02m
draining  no

listeners
  compat   127.0.0.1:9877
  jsonrpc  127.0.0.1:9880

counts
  jobs_pending  0
  sessions      3

backends
NAME    ADDRESS         STATE        WEIGHT  SESSIONS  LATENCY  LAST ERROR
local   127.0.0.1:9876  up (paused)  1       3         1.2ms    -
farm-b  10.0.0.7:9876   down         2       0         -        connection refused
",
        manager.address
    );
    assert_eq!(output.stdout, expected);
}

#[test]
fn status_tolerates_an_empty_result() {
    assert_eq!(
        format_status(&json!({}), "h:1"),
        "manager  h:1\nversion  -\nuptime   -\n\nlisteners\n  -\n\ncounts\n  -\n\nbackends\n  none\n"
    );
}

// ---------------------------------------------------------------------------------------------
// formatting helpers

#[test]
fn human_durations_pick_two_units() {
    assert_eq!(human_duration(0.0), "0s");
    assert_eq!(human_duration(12.9), "12s");
    assert_eq!(human_duration(59.99), "59s");
    assert_eq!(human_duration(60.0), "1m00s");
    assert_eq!(human_duration(184.0), "3m04s");
    assert_eq!(human_duration(3599.0), "59m59s");
    assert_eq!(human_duration(3725.0), "1h02m");
    assert_eq!(human_duration(2.0 * 86400.0 + 3.0 * 3600.0 + 5.0), "2d03h");
    assert_eq!(human_duration(-5.0), "0s");
    assert_eq!(human_duration(f64::NAN), "0s");
}

#[test]
fn durations_are_shown_in_milliseconds() {
    assert_eq!(format_millis(0.0004), "0.4ms");
    assert_eq!(format_millis(0.002), "2ms");
    assert_eq!(format_millis(0.0123), "12ms");
    assert_eq!(format_millis(1.52), "1520ms");
    assert_eq!(format_millis(-1.0), "-");
}

#[test]
fn previews_are_one_line_and_cut_at_the_limit() {
    assert_eq!(truncate_chars("abcdef", 6), "abcdef");
    assert_eq!(truncate_chars("abcdefg", 6), "abcde…");
    assert_eq!(truncate_chars("ééééééé", 3), "éé…");
    assert_eq!(
        one_line_preview(&json!({"executed": true, "result": "a\nb\n"}), 60),
        "a\\nb"
    );
    assert_eq!(one_line_preview(&json!("tab\there"), 60), "tab here");
    assert_eq!(one_line_preview(&json!([1, 2]), 60), "[1,2]");
    assert_eq!(one_line_preview(&json!(null), 60), "null");
}

#[test]
fn tables_align_columns_to_the_widest_cell() {
    let mut table = Table::new(["A", "LONG HEADER", "C"]);
    table.push_row(["wide cell", "x", "last"]);
    table.push_row(["y", "z", ""]);
    assert_eq!(
        table.render(),
        "A          LONG HEADER  C\nwide cell  x            last\ny          z\n"
    );
    assert_eq!(table.len(), 2);
}

#[test]
fn call_results_print_by_status() {
    let plain = format_call_result(&json!({"status": "success", "result": "done"}), "x");
    assert_eq!((plain.stdout.as_str(), plain.exit_code), ("done\n", 0));
    let empty = format_call_result(
        &json!({"status": "success", "result": {"executed": true, "result": ""}}),
        "execute_code",
    );
    assert_eq!(empty.stdout, "");
    let unknown = format_call_result(&json!({"weird": 1}), "x");
    assert_eq!(unknown.stdout, "{\n  \"weird\": 1\n}\n");
}

// ---------------------------------------------------------------------------------------------
// command line

#[derive(Parser, Debug)]
struct TestCli {
    #[command(flatten)]
    global: GlobalOptions,
    #[command(subcommand)]
    command: ClientCommand,
}

#[test]
fn global_options_are_accepted_after_the_subcommand() {
    let cli = TestCli::try_parse_from([
        "bsm",
        "call",
        "execute_code",
        r#"{"code":"print(1)"}"#,
        "--session",
        SESSION,
        "--json",
        "--manager",
        "10.0.0.2:9880",
    ])
    .unwrap();
    assert!(cli.global.json);
    assert_eq!(cli.global.manager, "10.0.0.2:9880");
    match cli.command {
        ClientCommand::Call(args) => {
            assert_eq!(args.command_type, "execute_code");
            assert_eq!(args.params.as_deref(), Some(r#"{"code":"print(1)"}"#));
            assert_eq!(args.session.as_deref(), Some(SESSION));
        }
        other => panic!("{other:?}"),
    }

    let cli = TestCli::try_parse_from([
        "bsm",
        "--token",
        "t",
        "sessions",
        "history",
        SESSION,
        "--limit",
        "5",
        "--since-seq",
        "7",
    ])
    .unwrap();
    assert_eq!(cli.global.token.as_deref(), Some("t"));
    assert!(matches!(
        cli.command,
        ClientCommand::Sessions(SessionsCommand::History {
            limit: Some(5),
            since_seq: Some(7),
            ..
        })
    ));

    let err = TestCli::try_parse_from(["bsm", "sessions", "show"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn the_command_line_definition_is_consistent() {
    use clap::CommandFactory;
    TestCli::command().debug_assert();
    let help = TestCli::command().render_long_help().to_string();
    assert!(help.contains("--manager <HOST:PORT>"), "{help}");
    assert!(help.contains("SESSION_MANAGER_TOKEN"), "{help}");
}
