//! The addon-compatible port: stock clients work unchanged.

mod support;

use std::time::Duration;

use blender_session_manager::mock_blender::MockAction;
use bytes::Bytes;
use serde_json::{json, Value};
use support::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/wire/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Reads until `n` newline-terminated replies arrived; returns them without newlines.
async fn read_replies(s: &mut TcpStream, n: usize) -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.iter().filter(|b| **b == b'\n').count() < n {
        let k = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk))
            .await
            .expect("reply")
            .unwrap();
        assert!(
            k > 0,
            "connection closed; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..k]);
    }
    buf.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[tokio::test]
async fn relays_the_stock_addon_replies_byte_for_byte() {
    let h = Harness::start().await;
    h.mock.without_state();
    let names = [
        "get_scene_info",
        "get_object_info_nan_inf",
        "execute_code_unicode",
        "execute_code_error",
        "unknown_command",
        "get_object_info_missing",
        "get_scene_info_203_objects",
    ];
    let mut s = h.compat().await;
    for name in names {
        let request = fixture(&format!("{name}.request"));
        let reply = fixture(&format!("{name}.reply"));
        let req: Value = serde_json::from_slice(&request).unwrap();
        h.mock.once(
            req["type"].as_str().unwrap(),
            MockAction::ReplyRaw(Bytes::from(reply.clone())),
        );
        s.write_all(&request).await.unwrap(); // stock clients send no delimiter
        let got = read_replies(&mut s, 1).await;
        assert_eq!(
            String::from_utf8_lossy(&got[0]),
            String::from_utf8_lossy(&reply),
            "{name}"
        );
        let seen = h.mock.requests().last().unwrap().clone();
        assert_eq!(seen["type"], req["type"]);
        assert_eq!(seen["params"], req["params"], "{name}: params forwarded");
    }
    assert_eq!(
        h.mock.connections_accepted(),
        1,
        "one session socket for the whole connection"
    );
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let h = Harness::start().await;
    h.mock.once(
        "first",
        MockAction::Delay(Duration::from_millis(100), Box::new(MockAction::Default)),
    );
    let mut s = h.compat().await;
    s.write_all(br#"{"type": "first", "params": {}}{"type": "second", "params": {}}"#)
        .await
        .unwrap();
    let got = read_replies(&mut s, 2).await;
    let a: Value = serde_json::from_slice(&got[0]).unwrap();
    let b: Value = serde_json::from_slice(&got[1]).unwrap();
    assert_eq!(a["result"]["command"], "first");
    assert_eq!(b["result"]["command"], "second");
    assert_eq!(h.mock.violations(), 0);
}

#[tokio::test]
async fn split_writes_and_split_utf8_are_reassembled() {
    let h = Harness::start().await;
    let mut s = h.compat().await;
    let req = r#"{"type": "echo", "params": {"text": "é漢🎲 {\"}"}}"#.as_bytes();
    for b in req {
        s.write_all(&[*b]).await.unwrap();
        s.flush().await.unwrap();
    }
    let got = read_replies(&mut s, 1).await;
    let v: Value = serde_json::from_slice(&got[0]).unwrap();
    assert_eq!(v["result"]["params"]["text"], "é漢🎲 {\"}");
}

#[tokio::test]
async fn malformed_json_gets_an_error_reply_and_the_connection_stays_usable() {
    let h = Harness::start().await;
    let mut s = h.compat().await;
    s.write_all(b"{\"type\": oops}\n{\"type\": \"ping\"}")
        .await
        .unwrap();
    let got = read_replies(&mut s, 2).await;
    let e: Value = serde_json::from_slice(&got[0]).unwrap();
    assert_eq!(e["status"], "error");
    assert!(
        e["message"].as_str().unwrap().starts_with("Invalid JSON"),
        "{e}"
    );
    let ok: Value = serde_json::from_slice(&got[1]).unwrap();
    assert_eq!(ok["status"], "success");
    s.write_all(br#"{"params": {}}"#).await.unwrap();
    let e: Value = serde_json::from_slice(&read_replies(&mut s, 1).await[0]).unwrap();
    assert_eq!(e["message"], "Invalid request: missing \"type\"");
}

#[tokio::test]
async fn each_connection_gets_its_own_session_closed_with_the_connection() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let mut a = h.compat().await;
    let mut b = h.compat().await;
    a.write_all(br#"{"type": "execute_code", "params": {"code": "print a"}}"#)
        .await
        .unwrap();
    read_replies(&mut a, 1).await;
    b.write_all(br#"{"type": "execute_code", "params": {"code": "print b"}}"#)
        .await
        .unwrap();
    read_replies(&mut b, 1).await;
    let sessions = rpc.ok("list_sessions", json!({})).await;
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let ids: Vec<_> = h
        .mock
        .requests_of("execute_code")
        .iter()
        .map(|r| r["session_id"].clone())
        .collect();
    assert_ne!(ids[0], ids[1], "two connections, two sessions");
    for s in sessions {
        assert_eq!(s["owner"], "compat");
        let hist = rpc
            .ok(
                "get_session_history",
                json!({"session_id": s["session_id"]}),
            )
            .await;
        assert_eq!(
            hist.as_array().unwrap().len(),
            1,
            "compat requests are history"
        );
    }
    drop(a);
    support::eventually("the connection's session to close", async || {
        let left = rpc.ok("list_sessions", json!({})).await;
        (left.as_array().unwrap().len() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_connection_can_attach_to_an_existing_session_by_id() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let mut s = h.compat().await;
    let req = json!({"type": "execute_code", "params": {"code": "print x"}, "session_id": id});
    s.write_all(req.to_string().as_bytes()).await.unwrap();
    read_replies(&mut s, 1).await;
    drop(s);
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert_eq!(hist.as_array().unwrap().len(), 1);
    // Attached, not owned: the session outlives the connection.
    tokio::time::sleep(Duration::from_millis(50)).await;
    rpc.ok("get_session_info", json!({"session_id": id})).await;
    let mut s = h.compat().await;
    s.write_all(br#"{"type": "ping", "session_id": "scene-20200101-000000-00000000"}"#)
        .await
        .unwrap();
    let e: Value = serde_json::from_slice(&read_replies(&mut s, 1).await[0]).unwrap();
    assert_eq!(
        e,
        json!({"status": "error", "message": "Session not found: scene-20200101-000000-00000000"})
    );
}

#[tokio::test]
async fn the_state_piggyback_is_not_shown_to_stock_clients() {
    let h = Harness::start().await;
    let mut s = h.compat().await;
    s.write_all(br#"{"type": "execute_code", "params": {"code": "add Cone"}}"#)
        .await
        .unwrap();
    let got = read_replies(&mut s, 1).await;
    // The mock writes keys sorted, so `_state` came first and is cut with its comma.
    assert_eq!(
        String::from_utf8_lossy(&got[0]),
        r#"{"result":{"executed":true,"result":""},"status":"success"}"#
    );
    assert_eq!(
        h.mock.requests()[0]["_state"],
        true,
        "the manager still asked for it"
    );
    let mut rpc = h.rpc().await;
    let sessions = rpc.ok("list_sessions", json!({})).await;
    assert_eq!(
        sessions[0]["state"]["objects"],
        json!(["Cube", "Camera", "Light", "Cone"])
    );
}

#[tokio::test]
async fn blender_being_down_is_reported_as_a_stock_error_reply() {
    let h = Harness::start().await;
    h.mock.kill().await;
    let mut s = h.compat().await;
    s.write_all(br#"{"type": "get_scene_info", "params": {}}"#)
        .await
        .unwrap();
    let e: Value = serde_json::from_slice(&read_replies(&mut s, 1).await[0]).unwrap();
    assert_eq!(e["status"], "error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("Failed to connect to Blender"),
        "{e}"
    );
}
