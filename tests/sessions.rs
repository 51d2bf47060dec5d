//! Sessions over JSON-RPC: ids, info, state, history, snapshots, limits.

mod support;

use blender_session_manager::mock_blender::MockAction;
use serde_json::json;
use support::Harness;

fn is_session_id(s: &str) -> bool {
    blender_session_manager::session::id::is_valid(s)
}

#[tokio::test]
async fn creates_a_session_with_a_live_blender_socket() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let info = rpc
        .ok("create_session", json!({"metadata": {"user": "ada"}}))
        .await;
    let id = info["session_id"].as_str().unwrap();
    assert!(is_session_id(id), "{id}");
    assert_eq!(info["blender"]["connected"], true);
    assert_eq!(info["blender"]["port"], h.mock.addr().port());
    assert_eq!(info["blender"]["last_error"], json!(null));
    assert_eq!(info["command_count"], 0);
    assert_eq!(info["metadata"]["user"], "ada");
    assert!(info["created_at"].as_f64().unwrap() > 1.7e9);
    assert_eq!(
        h.mock.connections_accepted(),
        1,
        "socket opened at creation"
    );
    let again = rpc.ok("get_session_info", json!({"session_id": id})).await;
    assert_eq!(again["session_id"], id);
    let listed = rpc.ok("list_sessions", json!({})).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn keeps_one_socket_across_many_commands() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    for i in 0..20 {
        let r = rpc
            .ok("send_command", json!({"session_id": id, "command_type": "execute_code", "params": {"code": format!("print {i}")}}))
            .await;
        assert_eq!(r["status"], "success");
        assert_eq!(r["result"]["result"], format!("{i}\n"));
        assert_eq!(r["seq"], i + 1);
        assert!(r["duration"].as_f64().unwrap() >= 0.0);
        // Every command runs as a job; a sync send_command says which.
        assert!(r["job_id"].as_str().unwrap().starts_with("job-"), "{r}");
    }
    assert_eq!(h.mock.connections_accepted(), 1);
    let info = rpc.ok("get_session_info", json!({"session_id": id})).await;
    assert_eq!(info["command_count"], 20);
    assert_eq!(info["state"]["last_command"], "execute_code");
    assert_eq!(
        info["state"]["last_result"],
        json!({"executed": true, "result": "19\n"})
    );
}

#[tokio::test]
async fn session_is_created_even_when_blender_is_down() {
    let mock = blender_session_manager::mock_blender::MockBlender::start().await;
    let backend = mock.backend();
    mock.kill().await;
    drop(mock);
    let server = blender_session_manager::server::start(support::config(backend))
        .await
        .unwrap();
    let mut rpc = support::Rpc::connect(server.rpc_addr).await;
    let info = rpc.ok("create_session", json!({})).await;
    assert_eq!(info["blender"]["connected"], false);
    assert!(
        info["blender"]["last_error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{info}"
    );
    let id = info["session_id"].as_str().unwrap();
    let e = rpc
        .err(
            "send_command",
            json!({"session_id": id, "command_type": "ping"}),
        )
        .await;
    assert_eq!(e["code"], -32002);
    assert_eq!(e["data"]["kind"], "blender_unavailable");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("Failed to connect to Blender: 127.0.0.1:"),
        "{e}"
    );
}

/// `create_session` makes the first connect on the caller's task; a caller that
/// goes away during it must not leave a session without its task.
#[tokio::test]
async fn a_caller_gone_during_the_first_connect_leaves_a_working_session() {
    use blender_session_manager::session::handle::{CommandOrigin, CommandRequest, SessionOwner};
    use futures::FutureExt;

    let h = Harness::start().await;
    let manager = h.server.manager.clone();
    let create = manager.create_session(SessionOwner::Rpc, json!({}));
    // One poll: the session is registered and its connect is under way (a
    // connect's first poll never sees the socket writable); then the caller drops it.
    assert!(
        create.now_or_never().is_none(),
        "create_session finished on its first poll"
    );
    let sessions = manager.list_sessions();
    assert_eq!(sessions.len(), 1, "the session stays registered");
    let handle = manager.session(&sessions[0].session_id).unwrap();
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        handle.submit(CommandRequest {
            command_type: "get_scene_info".into(),
            params: None,
            origin: CommandOrigin::Rpc,
        }),
    )
    .await
    .expect("the session has a task that runs its commands")
    .expect("the command ran");
    assert!(outcome.result.expect("Blender answered").success);
    assert!(manager.session_info(handle.id()).unwrap().blender.connected);
}

#[tokio::test]
async fn unknown_and_closed_sessions_answer_session_not_found() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let e = rpc
        .err(
            "get_session_info",
            json!({"session_id": "scene-20260101-000000-deadbeef"}),
        )
        .await;
    assert_eq!(e["code"], -32001);
    assert_eq!(
        e["message"],
        "Session not found: scene-20260101-000000-deadbeef"
    );
    assert_eq!(e["data"]["kind"], "session_not_found");

    let id = rpc.create().await;
    rpc.ok(
        "send_command",
        json!({"session_id": id, "command_type": "ping"}),
    )
    .await;
    assert_eq!(
        rpc.ok("close_session", json!({"session_id": id})).await,
        json!({"closed": true})
    );
    for (m, p) in [
        ("get_session_info", json!({"session_id": id})),
        ("close_session", json!({"session_id": id})),
        (
            "send_command",
            json!({"session_id": id, "command_type": "ping"}),
        ),
        ("update_state", json!({"session_id": id, "state": {}})),
        ("take_snapshot", json!({"session_id": id})),
    ] {
        assert_eq!(rpc.err(m, p).await["code"], -32001, "{m}");
    }
    // History stays readable after close.
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert_eq!(hist.as_array().unwrap().len(), 1);
    assert_eq!(
        rpc.ok("get_snapshots", json!({"session_id": id})).await,
        json!([])
    );
    h.mock
        .wait_until("the session socket to close", |m| m.open_connections() == 0)
        .await;
}

#[tokio::test]
async fn history_records_each_caller_command_with_its_outcome() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    rpc.ok(
        "send_command",
        json!({"session_id": id, "command_type": "execute_code", "params": {"code": "print hi"}}),
    )
    .await;
    let r = rpc.ok("send_command", json!({"session_id": id, "command_type": "get_object_info", "params": {"name": "Nope"}})).await;
    assert_eq!(
        r,
        json!({"status": "error", "message": "Object not found: Nope", "duration": r["duration"], "seq": 2, "job_id": r["job_id"]})
    );
    let error_job = r["job_id"].as_str().unwrap().to_string();
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    let hist = hist.as_array().unwrap();
    assert_eq!(hist.len(), 2);
    let first = &hist[0];
    assert_eq!(first["seq"], 1);
    assert_eq!(first["command"], "execute_code");
    assert_eq!(first["params"], json!({"code": "print hi"}));
    assert_eq!(first["status"], "success");
    assert_eq!(first["result"], json!({"executed": true, "result": "hi\n"}));
    assert_eq!(first["error"], json!(null));
    assert!(first["job_id"].as_str().unwrap().starts_with("job-"));
    assert_eq!(
        hist[1]["job_id"],
        error_job.as_str(),
        "history names the command's job"
    );
    assert!(first["timestamp"].as_f64().unwrap() > 1.7e9);
    assert_eq!(hist[1]["status"], "error");
    assert_eq!(
        hist[1]["error"],
        json!({"kind": "blender_error", "message": "Object not found: Nope"})
    );
    // limit and since_seq
    let last = rpc
        .ok("get_session_history", json!({"session_id": id, "limit": 1}))
        .await;
    assert_eq!(last[0]["seq"], 2);
    let after = rpc
        .ok(
            "get_session_history",
            json!({"session_id": id, "since_seq": 1}),
        )
        .await;
    assert_eq!(after.as_array().unwrap().len(), 1);
    assert_eq!(after[0]["seq"], 2);
    // The manager's own requests (snapshot) are not history.
    rpc.ok("take_snapshot", json!({"session_id": id})).await;
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert_eq!(hist.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn history_keeps_the_last_history_limit_entries() {
    let h = Harness::start_with(|c| c.history_limit = 5).await;
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    for _ in 0..8 {
        rpc.ok(
            "send_command",
            json!({"session_id": id, "command_type": "ping"}),
        )
        .await;
    }
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    let seqs: Vec<u64> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![4, 5, 6, 7, 8]);
    let info = rpc.ok("get_session_info", json!({"session_id": id})).await;
    assert_eq!(info["command_count"], 8);
}

#[tokio::test]
async fn large_results_are_truncated_in_history_but_whole_in_the_reply() {
    let h = Harness::start().await;
    let big = "x".repeat(200_000);
    h.mock.once(
        "get_viewport_screenshot",
        MockAction::Reply(json!({"status": "success", "result": {"image": big}})),
    );
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let r = rpc
        .ok(
            "send_command",
            json!({"session_id": id, "command_type": "get_viewport_screenshot"}),
        )
        .await;
    assert_eq!(r["result"]["image"].as_str().unwrap().len(), 200_000);
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    let stored = &hist[0]["result"];
    assert_eq!(stored["_truncated"], true, "{stored}");
    assert!(stored["bytes"].as_u64().unwrap() > 200_000);
    assert!(stored["preview"].as_str().unwrap().len() <= 1024);
    let info = rpc.ok("get_session_info", json!({"session_id": id})).await;
    assert_eq!(info["state"]["last_result"]["_truncated"], true);
}

#[tokio::test]
async fn state_follows_the_scene_from_the_state_piggyback() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    rpc.ok(
        "send_command",
        json!({"session_id": id, "command_type": "execute_code", "params": {"code": "add Sphere"}}),
    )
    .await;
    let info = rpc.ok("get_session_info", json!({"session_id": id})).await;
    assert_eq!(
        info["state"]["objects"],
        json!(["Cube", "Camera", "Light", "Sphere"])
    );
    assert_eq!(info["state"]["selection"], "Sphere");
    // Every request asked for the piggyback and named the session.
    for r in h.mock.requests() {
        assert_eq!(r["_state"], true);
        assert_eq!(r["session_id"], id.as_str());
    }
}

#[tokio::test]
async fn state_follows_get_scene_info_from_a_stock_addon() {
    let h = Harness::start().await;
    h.mock.without_state();
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    rpc.ok(
        "send_command",
        json!({"session_id": id, "command_type": "execute_code", "params": {"code": "add Torus"}}),
    )
    .await;
    let info = rpc.ok("get_session_info", json!({"session_id": id})).await;
    assert_eq!(
        info["state"]["objects"],
        json!([]),
        "a stock addon sends no state with execute_code"
    );
    rpc.ok(
        "send_command",
        json!({"session_id": id, "command_type": "get_scene_info"}),
    )
    .await;
    let info = rpc.ok("get_session_info", json!({"session_id": id})).await;
    assert_eq!(
        info["state"]["objects"],
        json!(["Cube", "Camera", "Light", "Torus"])
    );
}

#[tokio::test]
async fn update_state_merges_keys_and_validates_known_ones() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let st = rpc.ok("update_state", json!({"session_id": id, "state": {"objects": ["Cube", "Camera"], "selection": "Cube", "goal": "red cube"}})).await;
    assert_eq!(st["objects"], json!(["Cube", "Camera"]));
    assert_eq!(st["goal"], "red cube");
    let st = rpc
        .ok(
            "update_state",
            json!({"session_id": id, "state": {"selection": "Camera"}}),
        )
        .await;
    assert_eq!(st["goal"], "red cube", "merge keeps other keys");
    assert_eq!(st["selection"], "Camera");
    let e = rpc
        .err(
            "update_state",
            json!({"session_id": id, "state": {"objects": 3}}),
        )
        .await;
    assert_eq!(e["code"], -32602);
    assert_eq!(
        e["message"],
        "Invalid params: state.objects: expected a list of strings"
    );
}

#[tokio::test]
async fn snapshots_store_the_scene_with_a_timestamp() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let s1 = rpc.ok("take_snapshot", json!({"session_id": id})).await;
    assert_eq!(s1["snapshot_id"], 1);
    assert_eq!(s1["session_id"], id.as_str());
    assert_eq!(s1["scene"]["object_count"], 3);
    assert!(s1["timestamp"].as_f64().unwrap() > 1.7e9);
    h.mock.set_objects(&["Only"]);
    rpc.ok("take_snapshot", json!({"session_id": id})).await;
    let all = rpc.ok("get_snapshots", json!({"session_id": id})).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(all[1]["scene"]["objects"][0]["name"], "Only");
    assert_eq!(all[1]["state"]["objects"], json!(["Only"]));
}

#[tokio::test]
async fn refuses_sessions_beyond_max_sessions() {
    let h = Harness::start_with(|c| c.max_sessions = 2).await;
    let mut rpc = h.rpc().await;
    let a = rpc.create().await;
    rpc.create().await;
    let e = rpc.err("create_session", json!({})).await;
    assert_eq!(e["code"], -32008);
    assert_eq!(e["message"], "Session limit reached (2)");
    rpc.ok("close_session", json!({"session_id": a})).await;
    rpc.create().await;
}

#[tokio::test]
async fn a_number_beyond_f64_in_a_result_does_not_break_session_info() {
    let h = Harness::start().await;
    // Python's json.dumps(10**400) sends this; the manager keeps it verbatim.
    let nines = "9".repeat(400);
    let big = format!("{{\"status\":\"success\",\"result\":{nines}}}");
    h.mock
        .once("big", MockAction::ReplyRaw(bytes::Bytes::from(big)));
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    // serde_json cannot hold such a number, so these replies are checked as text.
    let mut raw = async |method: &str, params: serde_json::Value| {
        rpc.send(method, params).await;
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut rpc.reader, &mut line)
            .await
            .unwrap();
        line
    };
    let sent = raw(
        "send_command",
        json!({"session_id": id, "command_type": "big"}),
    )
    .await;
    assert!(
        sent.contains(&nines) && sent.contains(r#""status":"success""#),
        "{sent}"
    );
    let info = raw("get_session_info", json!({"session_id": id})).await;
    assert!(
        info.contains(r#""last_command":"big""#) && info.contains(&nines),
        "{info}"
    );
    let list = raw("list_sessions", json!({})).await;
    assert!(list.contains(&id) && list.contains(&nines), "{list}");
}
