//! How a session's Blender link behaves when Blender misbehaves.

mod support;

use std::time::Duration;

use blender_session_manager::mock_blender::{MockAction, MockBlender};
use bytes::Bytes;
use serde_json::json;
use support::{Harness, Rpc};

async fn send(
    rpc: &mut Rpc,
    id: &str,
    command: &str,
) -> Result<serde_json::Value, serde_json::Value> {
    rpc.call(
        "send_command",
        json!({"session_id": id, "command_type": command}),
    )
    .await
}

#[tokio::test]
async fn blender_error_reply_is_a_normal_reply_and_keeps_the_socket() {
    let h = Harness::start().await;
    h.mock.once(
        "execute_code",
        MockAction::Reply(json!({"status": "error", "message": "Error executing code: boom"})),
    );
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let r = send(&mut rpc, &id, "execute_code").await.unwrap();
    assert_eq!(r["status"], "error");
    assert_eq!(r["message"], "Error executing code: boom");
    assert_eq!(
        send(&mut rpc, &id, "ping").await.unwrap()["status"],
        "success"
    );
    assert_eq!(h.mock.connections_accepted(), 1);
}

#[tokio::test(start_paused = true)]
async fn command_timeout_closes_the_socket_so_a_late_reply_is_never_taken_for_the_next() {
    let h = Harness::start_with(|c| {
        c.command_timeout = Duration::from_secs(180);
        c.sync_wait = Duration::from_secs(600); // wait past the timeout, no job hand-over
    })
    .await;
    // The first reply comes after 200 s: past the timeout.
    h.mock.once(
        "slow",
        MockAction::Delay(
            Duration::from_secs(200),
            Box::new(MockAction::Reply(
                json!({"status": "success", "result": "late"}),
            )),
        ),
    );
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let e = send(&mut rpc, &id, "slow").await.unwrap_err();
    assert_eq!(e["code"], -32003);
    assert_eq!(e["data"]["kind"], "blender_timeout");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .starts_with("Timeout waiting for Blender response"));
    // The next command goes over a new socket and gets its own reply.
    let r = send(&mut rpc, &id, "ping").await.unwrap();
    assert_eq!(r["result"]["command"], "ping");
    assert_eq!(h.mock.connections_accepted(), 2);
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert_eq!(hist[0]["status"], "timeout");
    assert_eq!(hist[0]["error"]["kind"], "blender_timeout");
    assert_eq!(hist[1]["status"], "success");
}

#[tokio::test]
async fn blender_closing_mid_command_fails_it_at_once_and_the_session_survives() {
    let h = Harness::start().await;
    h.mock.once("render", MockAction::CloseMidCommand);
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let e = send(&mut rpc, &id, "render").await.unwrap_err();
    assert_eq!(e["code"], -32010);
    assert_eq!(e["message"], "Blender closed the connection during render");
    assert_eq!(e["data"]["kind"], "blender_disconnected");
    assert_eq!(
        send(&mut rpc, &id, "ping").await.unwrap()["status"],
        "success"
    );
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert_eq!(hist[0]["status"], "disconnected");
}

#[tokio::test]
async fn blender_closing_in_the_middle_of_a_reply_is_a_disconnect() {
    let h = Harness::start().await;
    h.mock.once(
        "render",
        MockAction::CutMidReply(Bytes::from_static(
            br#"{"status": "success", "result": {"ima"#,
        )),
    );
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let e = send(&mut rpc, &id, "render").await.unwrap_err();
    assert_eq!(e["code"], -32010, "{e}");
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert_eq!(hist[0]["status"], "disconnected");
    assert_eq!(
        send(&mut rpc, &id, "ping").await.unwrap()["status"],
        "success"
    );
}

#[tokio::test]
async fn blender_error_replies_keep_their_traceback() {
    let h = Harness::start().await;
    h.mock.once(
        "execute_code",
        MockAction::Reply(json!({"status": "error", "message": "NameError: x", "traceback": "Traceback (most recent call last):\n..."})),
    );
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let r = send(&mut rpc, &id, "execute_code").await.unwrap();
    assert_eq!(r["message"], "NameError: x");
    assert!(r["traceback"].as_str().unwrap().starts_with("Traceback"));
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert!(hist[0]["error"]["traceback"]
        .as_str()
        .unwrap()
        .starts_with("Traceback"));
}

#[tokio::test]
async fn blender_resetting_mid_command_fails_it_with_blender_disconnected() {
    let h = Harness::start().await;
    h.mock.once("render", MockAction::Reset);
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let e = send(&mut rpc, &id, "render").await.unwrap_err();
    assert_eq!(e["code"], -32010);
    assert_eq!(
        send(&mut rpc, &id, "ping").await.unwrap()["status"],
        "success"
    );
}

#[tokio::test]
async fn garbage_from_blender_is_a_bad_reply_and_the_socket_is_replaced() {
    let h = Harness::start().await;
    h.mock.once(
        "weird",
        MockAction::Garbage(Bytes::from_static(b"<html>oops</html>\n")),
    );
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let e = send(&mut rpc, &id, "weird").await.unwrap_err();
    assert_eq!(e["code"], -32011);
    assert_eq!(e["data"]["kind"], "blender_bad_reply");
    assert_eq!(
        send(&mut rpc, &id, "ping").await.unwrap()["status"],
        "success"
    );
    assert_eq!(h.mock.connections_accepted(), 2);
}

#[tokio::test]
async fn replies_without_delimiter_split_or_with_nan_are_read() {
    let h = Harness::start().await;
    // Python's json.dumps emits NaN; the manager's JSON-RPC reply must stay valid JSON.
    h.mock.once("nan", MockAction::ReplyRaw(Bytes::from_static(br#"{"status": "success", "result": {"location": [NaN, Infinity, 1.0], "name": "NaN {\"}"}}"#)));
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let r = send(&mut rpc, &id, "nan").await.unwrap();
    assert_eq!(
        r["result"],
        json!({"location": [null, null, 1.0], "name": "NaN {\"}"})
    );
}

#[tokio::test]
async fn oversized_reply_is_refused_with_too_large() {
    let h = Harness::start_with(|c| c.max_frame_bytes = 4096).await;
    let big = "y".repeat(10_000);
    h.mock.once(
        "big",
        MockAction::Reply(json!({"status": "success", "result": big})),
    );
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let e = send(&mut rpc, &id, "big").await.unwrap_err();
    assert_eq!(e["code"], -32006);
    assert_eq!(e["message"], "Message exceeds 4096 bytes");
    assert_eq!(
        send(&mut rpc, &id, "ping").await.unwrap()["status"],
        "success"
    );
}

#[tokio::test]
async fn blender_dying_while_idle_is_noticed_without_a_command() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let backend = h.mock.addr();
    h.mock.kill().await;
    // The session notices on its own, without a command.
    let info = support::eventually("the session to notice", async || {
        let info = rpc.ok("get_session_info", json!({"session_id": id})).await;
        (info["blender"]["connected"] == false).then_some(info)
    })
    .await;
    let last_error = info["blender"]["last_error"].as_str().unwrap();
    assert!(
        last_error.contains("closed the connection while idle"),
        "{info}"
    );
    // Blender comes back on the same port: the next command just works.
    let back = MockBlender::start_on(backend).await.unwrap();
    let r = send(&mut rpc, &id, "ping").await.unwrap();
    assert_eq!(r["status"], "success");
    assert_eq!(back.connections_accepted(), 1);
}

#[tokio::test]
async fn survives_blender_restart_mid_command() {
    let h = Harness::start().await;
    h.mock.once("render", MockAction::NoReply);
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let backend = h.mock.addr();
    let pending = rpc
        .send(
            "send_command",
            json!({"session_id": id, "command_type": "render"}),
        )
        .await;
    h.mock.wait_for_request("render").await;
    h.mock.kill().await;
    let reply = rpc.read_reply().await;
    assert_eq!(reply["id"], pending);
    assert_eq!(reply["error"]["code"], -32010);
    let back = MockBlender::start_on(backend).await.unwrap();
    assert_eq!(
        send(&mut rpc, &id, "ping").await.unwrap()["status"],
        "success"
    );
    assert_eq!(back.requests_of("ping").len(), 1);
    assert_eq!(
        back.requests_of("ping")[0]["session_id"],
        id.as_str(),
        "same session id on the new socket"
    );
}

#[tokio::test]
async fn while_blender_is_down_commands_fail_fast_and_say_when_the_next_attempt_is_due() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    h.mock.kill().await;
    // First command: one connect attempt, refused.
    let e1 = loop {
        let e = send(&mut rpc, &id, "ping").await.unwrap_err();
        if e["code"] == -32002 {
            break e;
        }
        // The idle watcher may not have dropped the dead socket yet: a write on it
        // fails as blender_disconnected, which is also a correct, immediate outcome.
        assert_eq!(e["code"], -32010, "{e}");
    };
    assert!(e1["message"].as_str().unwrap().contains("refused"), "{e1}");
    // Immediately after: in backoff, no new attempt, and the message says when.
    let e2 = send(&mut rpc, &id, "ping").await.unwrap_err();
    assert_eq!(e2["code"], -32002);
    assert!(
        e2["message"].as_str().unwrap().contains("next attempt in"),
        "{e2}"
    );
}

#[tokio::test]
async fn never_two_requests_in_flight_and_commands_run_in_order() {
    let h = Harness::start().await;
    h.mock.always(
        "work",
        MockAction::Delay(Duration::from_millis(2), Box::new(MockAction::Default)),
    );
    // 100 callers on separate connections, all on one session (the same workload
    // runs through a fragmenting link in tests/faults.rs).
    support::chaos::callers_on_one_session(&h, 100).await;
}
