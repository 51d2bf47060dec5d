//! Idle reaping under tokio's paused clock.

mod support;

use std::time::Duration;

use blender_session_manager::mock_blender::MockAction;
use serde_json::json;
use support::Harness;
use tokio::io::AsyncWriteExt;

#[tokio::test(start_paused = true)]
async fn reaps_session_idle_past_timeout_on_the_sweep() {
    let h = Harness::start().await; // defaults: idle 300 s, sweep 60 s
    let mut rpc = h.rpc().await;
    let idle = rpc.create().await;
    let busy_later = rpc.create().await;
    tokio::time::sleep(Duration::from_secs(250)).await;
    rpc.ok(
        "send_command",
        json!({"session_id": busy_later, "command_type": "ping"}),
    )
    .await;
    // At 300 s the idle one is exactly at the timeout: the 300 s sweep keeps it.
    tokio::time::sleep(Duration::from_secs(55)).await;
    rpc.ok("get_session_info", json!({"session_id": idle}))
        .await;
    // The sweep at 360 s closes it; the one used at 250 s stays.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let e = rpc
        .err("get_session_info", json!({"session_id": idle}))
        .await;
    assert_eq!(e["code"], -32001);
    rpc.ok("get_session_info", json!({"session_id": busy_later}))
        .await;
    // The reaped session's socket was closed.
    h.mock
        .wait_until("one open Blender socket", |m| m.open_connections() == 1)
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_session_with_a_command_running_is_not_idle() {
    let h = Harness::start_with(|c| {
        c.idle_timeout = Duration::from_secs(10);
        c.sweep_interval = Duration::from_secs(5);
        c.sync_wait = Duration::from_secs(120);
    })
    .await;
    h.mock.once(
        "bake",
        MockAction::Delay(Duration::from_secs(60), Box::new(MockAction::Default)),
    );
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let r = rpc
        .ok(
            "send_command",
            json!({"session_id": id, "command_type": "bake"}),
        )
        .await;
    assert_eq!(
        r["status"], "success",
        "the 60 s command was not cut by the 10 s idle timeout"
    );
    rpc.ok("get_session_info", json!({"session_id": id})).await;
}

#[tokio::test(start_paused = true)]
async fn a_session_owned_by_an_open_compat_connection_is_never_reaped() {
    let h = Harness::start_with(|c| {
        c.idle_timeout = Duration::from_secs(10);
        c.sweep_interval = Duration::from_secs(5);
    })
    .await;
    let mut compat = h.compat().await;
    compat
        .write_all(br#"{"type": "ping", "params": {}}"#)
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::io::AsyncReadExt::read(&mut compat, &mut buf)
        .await
        .unwrap();
    assert!(n > 0);
    let mut rpc = h.rpc().await;
    rpc.create().await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    let sessions = rpc.ok("list_sessions", json!({})).await;
    let owners: Vec<_> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["owner"].clone())
        .collect();
    assert_eq!(
        owners,
        vec![json!("compat")],
        "the JSON-RPC session was reaped, the compat one kept"
    );
}

#[tokio::test(start_paused = true)]
async fn cleanup_idle_sessions_closes_by_the_given_timeout() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let a = rpc.create().await;
    tokio::time::sleep(Duration::from_secs(50)).await;
    let b = rpc.create().await;
    let r = rpc
        .ok("cleanup_idle_sessions", json!({"timeout": 30}))
        .await;
    assert_eq!(r, json!({"closed": [a]}));
    rpc.ok("get_session_info", json!({"session_id": b})).await;
}

#[tokio::test]
async fn an_absurd_cleanup_timeout_is_an_invalid_param_not_a_hang() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let e = rpc
        .err("cleanup_idle_sessions", json!({"timeout": 1e300}))
        .await;
    assert_eq!(e["code"], -32602);
    assert_eq!(
        e["message"],
        "Invalid params: timeout: too large a number of seconds"
    );
}
