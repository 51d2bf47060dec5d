//! The JSON-RPC port: framing, errors, concurrency, authentication, tools.

mod support;

use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use blender_session_manager::mock_blender::MockAction;
use serde_json::json;
use support::{Harness, Rpc};

#[tokio::test]
async fn parse_error_on_one_line_then_the_next_line_is_read_normally() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    rpc.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\n")
        .await;
    let e = rpc.read_reply().await;
    assert_eq!(e["error"]["code"], -32700);
    assert_eq!(e["id"], json!(null));
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Parse error: "));
    rpc.send_raw(b"not json at all\n").await;
    assert_eq!(rpc.read_reply().await["error"]["code"], -32700);
    // Two requests on one line, and blank lines, are fine.
    rpc.send_raw(b"\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"list_tools\"}{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"list_sessions\"}\n\n").await;
    let mut ids = vec![
        rpc.read_reply().await["id"].clone(),
        rpc.read_reply().await["id"].clone(),
    ];
    ids.sort_by_key(|v| v.as_u64());
    assert_eq!(ids, vec![json!(2), json!(3)]);
}

#[tokio::test]
async fn invalid_requests_methods_and_params_are_named() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    rpc.send_raw(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"list_tools\"}]\n")
        .await;
    let e = rpc.read_reply().await;
    assert_eq!(e["error"]["code"], -32600);
    assert_eq!(e["error"]["data"]["kind"], "invalid_request");
    let e = rpc.err("no_such_method", json!({})).await;
    assert_eq!(e["code"], -32601);
    assert_eq!(e["message"], "Method not found: no_such_method");
    let e = rpc.err("send_command", json!({"session_id": "x"})).await;
    assert_eq!(e["code"], -32602);
    assert_eq!(e["message"], "Invalid params: command_type: missing");
    assert_eq!(e["data"]["param"], "command_type");
    let e = rpc
        .err("get_session_info", json!({"session_id": "x", "sesion": 1}))
        .await;
    assert_eq!(e["message"], "Invalid params: sesion: unknown parameter");
    let e = rpc
        .err(
            "send_command",
            json!({"session_id": "x", "command_type": "ping", "params": [1]}),
        )
        .await;
    assert_eq!(e["message"], "Invalid params: params: expected an object");
}

#[tokio::test]
async fn notifications_get_no_reply() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    rpc.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"create_session\"}\n")
        .await;
    // The next reply is for the request after the notification.
    let listed = rpc.ok("list_sessions", json!({})).await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "the notification still ran"
    );
}

#[tokio::test]
async fn oversized_request_is_refused_and_the_next_line_works() {
    let h = Harness::start_with(|c| c.max_frame_bytes = 2048).await;
    let mut rpc = h.rpc().await;
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{{\"p\":\"{}\"}}}}\n",
        "z".repeat(5000)
    );
    rpc.send_raw(big.as_bytes()).await;
    let e = rpc.read_reply().await;
    assert_eq!(e["error"]["code"], -32006);
    assert_eq!(e["error"]["message"], "Message exceeds 2048 bytes");
    rpc.ok("list_sessions", json!({})).await;
}

#[tokio::test]
async fn requests_on_one_connection_run_concurrently_and_replies_match_by_id() {
    let h = Harness::start().await;
    h.mock.once(
        "slow",
        MockAction::Delay(Duration::from_millis(300), Box::new(MockAction::Default)),
    );
    let mut rpc = h.rpc().await;
    let a = rpc.create().await;
    let b = rpc.create().await;
    let slow = rpc
        .send(
            "send_command",
            json!({"session_id": a, "command_type": "slow"}),
        )
        .await;
    let fast = rpc
        .send(
            "send_command",
            json!({"session_id": b, "command_type": "ping"}),
        )
        .await;
    let first = rpc.read_reply().await;
    let second = rpc.read_reply().await;
    assert_eq!(
        first["id"], fast,
        "the fast command on another session is not held behind the slow one"
    );
    assert_eq!(second["id"], slow);
    assert_eq!(second["result"]["result"]["command"], "slow");
}

#[tokio::test]
async fn big_results_come_back_whole_between_small_replies() {
    let h = Harness::start().await;
    // Bigger than the writer's buffer, with escapes and non-ASCII text in it.
    let big: String = "é\"\\ab\n".repeat(40 * 1024);
    h.mock.always(
        "big",
        MockAction::Reply(json!({"status": "success", "result": {"text": big, "n": 1.5}})),
    );
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let mut lines = String::new();
    for (n, command) in ["ping", "big", "ping", "big", "ping"].iter().enumerate() {
        lines.push_str(&format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": n, "method": "send_command", "params": {"session_id": id, "command_type": command}})
        ));
    }
    rpc.send_raw(lines.as_bytes()).await;
    let mut replies: Vec<_> = Vec::new();
    for _ in 0..5 {
        replies.push(rpc.read_reply().await);
    }
    replies.sort_by_key(|r| r["id"].as_u64());
    for (n, r) in replies.iter().enumerate() {
        assert_eq!(r["id"], n, "{r}");
        assert_eq!(r["result"]["status"], "success");
        if n % 2 == 1 {
            assert_eq!(r["result"]["result"]["text"], big.as_str());
            assert_eq!(r["result"]["result"]["n"], 1.5);
        } else {
            assert_eq!(r["result"]["result"]["command"], "ping");
        }
    }
}

/// A caller on its own session that sends `n` commands with 256 KiB replies and
/// reads none of them: returns its connection and session id.
async fn start_hog(h: &Harness, n: usize) -> (Rpc, String) {
    let big = "b".repeat(256 * 1024);
    h.mock.always(
        "big",
        MockAction::Reply(json!({"status": "success", "result": big})),
    );
    let mut hog = h.rpc().await;
    let id = hog.create().await;
    let line = format!(
        "{}\n",
        json!({"jsonrpc": "2.0", "id": 1, "method": "send_command", "params": {"session_id": id, "command_type": "big"}})
    );
    for _ in 0..n {
        hog.send_raw(line.as_bytes()).await;
    }
    (hog, id)
}

#[tokio::test]
async fn a_caller_that_never_reads_does_not_slow_anyone_else() {
    let h = Harness::start().await;
    let (_hog, id) = start_hog(&h, 200).await;
    // Another caller is served normally meanwhile.
    let mut other = h.rpc().await;
    let mine = other.create().await;
    for _ in 0..10 {
        let r = other
            .ok(
                "send_command",
                json!({"session_id": mine, "command_type": "ping"}),
            )
            .await;
        assert_eq!(r["status"], "success");
    }
    // The hog's session stopped being fed once its replies backed up (bounded work).
    let info = other
        .ok("get_session_info", json!({"session_id": id}))
        .await;
    assert!(info["command_count"].as_u64().unwrap() < 200, "{info}");
}

#[tokio::test]
async fn a_caller_that_stops_reading_is_dropped_after_the_command_timeout() {
    let h = Harness::start_with(|c| c.command_timeout = Duration::from_millis(300)).await;
    // 100 replies of 256 KiB: far more than the socket buffers hold.
    let (mut hog, id) = start_hog(&h, 100).await;
    // Not reading for well over the timeout; then what was sent before the manager
    // gave up, and the end of the stream.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut replies = 0;
    loop {
        let mut reply = String::new();
        let n = tokio::time::timeout(Duration::from_secs(60), hog.reader.read_line(&mut reply))
            .await
            .expect("the manager closes the connection")
            .unwrap();
        if n == 0 {
            break;
        }
        replies += 1;
    }
    assert!(replies < 100, "every reply was written: {replies}");
    // Everyone else is still served.
    let mut other = h.rpc().await;
    let r = other
        .ok(
            "send_command",
            json!({"session_id": id, "command_type": "ping"}),
        )
        .await;
    assert_eq!(r["status"], "success");
}

#[tokio::test]
async fn a_caller_disconnecting_mid_command_does_not_cancel_it() {
    let h = Harness::start().await;
    h.mock.once(
        "render",
        MockAction::Delay(Duration::from_millis(200), Box::new(MockAction::Default)),
    );
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    rpc.send(
        "send_command",
        json!({"session_id": id, "command_type": "render"}),
    )
    .await;
    h.mock.wait_for_request("render").await;
    drop(rpc);
    let mut other = h.rpc().await;
    let e = support::eventually("the command to be recorded", async || {
        let hist = other
            .ok("get_session_history", json!({"session_id": id}))
            .await;
        hist.as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(e["command"], "render");
    assert_eq!(e["status"], "success");
}

#[tokio::test]
async fn with_a_token_callers_must_authenticate_first() {
    let h = Harness::start_with(|c| c.token = Some("s3cret".into())).await;
    let mut rpc = h.rpc().await;
    let e = rpc.err("list_sessions", json!({})).await;
    assert_eq!(e["code"], -32007);
    assert_eq!(
        e["message"],
        "Unauthorized: authenticate with the manager's token first"
    );
    let e = rpc.err("authenticate", json!({"token": "guess"})).await;
    assert_eq!(e["code"], -32007);
    assert_eq!(e["message"], "Unauthorized: wrong token");
    // Pipelined right behind authenticate: sees its effect.
    rpc.send("authenticate", json!({"token": "s3cret"})).await;
    rpc.send("list_sessions", json!({})).await;
    assert_eq!(
        rpc.read_reply().await["result"],
        json!({"authenticated": true})
    );
    assert_eq!(rpc.read_reply().await["result"], json!([]));
    // Another connection is not authenticated by this one.
    let mut other = Rpc::connect(h.server.rpc_addr).await;
    assert_eq!(other.err("list_sessions", json!({})).await["code"], -32007);
}

#[tokio::test]
async fn list_tools_returns_the_catalogue() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let tools = rpc.ok("list_tools", json!({})).await;
    let names: Vec<_> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "execute_blender_code",
            "get_scene_info",
            "get_object_info",
            "get_viewport_screenshot"
        ]
    );
    assert_eq!(tools[2]["input_schema"]["required"], json!(["object_name"]));
}

#[tokio::test]
async fn handle_tool_call_creates_a_session_and_maps_tool_names() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let r = rpc
        .ok(
            "handle_tool_call",
            json!({"name": "execute_blender_code", "arguments": {"code": "print hello"}}),
        )
        .await;
    let id = r["session_id"].as_str().unwrap().to_string();
    assert!(blender_session_manager::session::id::is_valid(&id));
    assert_eq!(r["result"]["status"], "success");
    assert_eq!(r["result"]["result"]["result"], "hello\n");
    assert_eq!(h.mock.requests_of("execute_code").len(), 1);
    // Reusing the session, with the id inside the arguments as MCP servers send it.
    let r = rpc.ok("handle_tool_call", json!({"name": "get_object_info", "arguments": {"object_name": "Cube", "session_id": id}})).await;
    assert_eq!(r["session_id"], id.as_str());
    assert_eq!(
        h.mock.requests_of("get_object_info")[0]["params"],
        json!({"name": "Cube"})
    );
    assert_eq!(
        rpc.ok("list_sessions", json!({}))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert_eq!(hist.as_array().unwrap().len(), 2);
    let e = rpc
        .err(
            "handle_tool_call",
            json!({"name": "get_object_info", "arguments": {}}),
        )
        .await;
    assert_eq!(
        e["message"],
        "Invalid params: arguments.object_name: missing"
    );
}

#[tokio::test]
async fn get_manager_status_reports_listeners_backend_and_counts() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    rpc.create().await;
    let s = rpc.ok("get_manager_status", json!({})).await;
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["listeners"]["jsonrpc"], h.server.rpc_addr.to_string());
    assert_eq!(s["listeners"]["compat"], h.server.compat_addr.to_string());
    assert_eq!(s["backends"][0]["address"], h.mock.addr().to_string());
    assert_eq!(s["backends"][0]["state"], "up");
    assert_eq!(s["backends"][0]["sessions"], 1);
    assert_eq!(s["counts"]["sessions"], 1);
    assert_eq!(s["draining"], false);
}
