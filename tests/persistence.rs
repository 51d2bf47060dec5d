//! Persistence: a real SQLite file survives a restart of the manager.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use blender_session_manager::mock_blender::{MockAction, MockBlender};
use blender_session_manager::server;
use serde_json::json;
use support::Rpc;

/// A fresh database path in a directory of its own, removed on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> TempDb {
        let dir = std::env::temp_dir().join(format!(
            "bsm-{name}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDb(dir)
    }
    fn path(&self) -> String {
        self.0.join("manager.db").to_string_lossy().into_owned()
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(mock: &MockBlender, db: &TempDb) -> server::Server {
    let mut cfg = support::config(mock.backend());
    cfg.db = db.path();
    server::start(cfg).await.expect("manager starts")
}

#[tokio::test]
async fn a_restart_restores_sessions_history_snapshots_and_jobs() {
    let db = TempDb::new("restart");
    let mock = MockBlender::start().await;
    mock.once(
        "slow",
        MockAction::Delay(Duration::from_millis(300), Box::new(MockAction::Default)),
    );
    let s1 = start(&mock, &db).await;
    let mut rpc = Rpc::connect(s1.rpc_addr).await;
    let id = rpc.create().await;
    rpc.ok("send_command", json!({"session_id": id, "command_type": "execute_code", "params": {"code": "add Suzanne\nprint made"}})).await;
    rpc.ok(
        "update_state",
        json!({"session_id": id, "state": {"goal": "monkey"}}),
    )
    .await;
    rpc.ok("take_snapshot", json!({"session_id": id})).await;
    let done = rpc
        .ok(
            "submit_job",
            json!({"session_id": id, "command_type": "ping"}),
        )
        .await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    rpc.ok("get_job_result", json!({"job_id": done, "wait": 10}))
        .await;
    // One job running and one queued behind it when the manager stops.
    let running = rpc
        .ok(
            "submit_job",
            json!({"session_id": id, "command_type": "slow"}),
        )
        .await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let queued = rpc
        .ok(
            "submit_job",
            json!({"session_id": id, "command_type": "after", "params": {"x": 1}}),
        )
        .await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    mock.wait_for_request("slow").await;
    let closed = rpc.create().await;
    rpc.ok("close_session", json!({"session_id": closed})).await;
    drop(rpc);
    s1.shutdown(Duration::from_secs(10)).await;
    assert!(
        mock.requests_of("after").is_empty(),
        "the queued job did not run before the stop"
    );

    let s2 = start(&mock, &db).await;
    let mut rpc = Rpc::connect(s2.rpc_addr).await;
    let info = rpc.ok("get_session_info", json!({"session_id": id})).await;
    assert_eq!(
        info["state"]["objects"],
        json!(["Cube", "Camera", "Light", "Suzanne"])
    );
    assert_eq!(info["state"]["goal"], "monkey");
    assert_eq!(
        info["blender"]["connected"], false,
        "restored sessions reconnect lazily"
    );
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    let commands: Vec<_> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["command"].as_str().unwrap().to_string())
        .collect();
    // The re-queued job may already have run and appended its own entry.
    assert_eq!(commands[..3], ["execute_code", "ping", "slow"]);
    assert_eq!(
        hist[0]["result"],
        json!({"executed": true, "result": "made\n"})
    );
    let snaps = rpc.ok("get_snapshots", json!({"session_id": id})).await;
    assert_eq!(snaps[0]["scene"]["object_count"], 4);
    // Finished jobs keep their results; the one that finished during the drain too.
    assert_eq!(
        rpc.ok("get_job_result", json!({"job_id": done})).await["status"],
        "completed"
    );
    assert_eq!(
        rpc.ok("get_job_result", json!({"job_id": running})).await["status"],
        "completed"
    );
    // The queued one runs again after the restart, in order.
    let r = rpc
        .ok("get_job_result", json!({"job_id": queued, "wait": 10}))
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["result"]["result"]["params"], json!({"x": 1}));
    // New commands continue the numbering.
    let r = rpc
        .ok(
            "send_command",
            json!({"session_id": id, "command_type": "ping"}),
        )
        .await;
    assert_eq!(r["seq"], 5);
    // The closed session stays closed, its history still readable.
    assert_eq!(
        rpc.err("get_session_info", json!({"session_id": closed}))
            .await["code"],
        -32001
    );
    rpc.ok("get_session_history", json!({"session_id": closed}))
        .await;
    s2.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_corrupt_database_is_a_clear_start_up_error() {
    let db = TempDb::new("corrupt");
    std::fs::write(
        db.path(),
        b"this is not a database, just some bytes that are long enough",
    )
    .unwrap();
    let mock = MockBlender::start().await;
    let mut cfg = support::config(mock.backend());
    cfg.db = db.path();
    let e = server::start(cfg).await.err().expect("refused").to_string();
    assert!(e.starts_with(&format!("--db {}", db.path())), "{e}");
    assert!(e.contains("not a SQLite database"), "{e}");
}

#[tokio::test]
async fn at_shutdown_a_waiting_sync_caller_gets_pending_and_the_job_survives() {
    let db = TempDb::new("drain");
    let mock = MockBlender::start().await;
    mock.once(
        "long",
        MockAction::Delay(Duration::from_millis(300), Box::new(MockAction::Default)),
    );
    let s1 = start(&mock, &db).await;
    let mut rpc = Rpc::connect(s1.rpc_addr).await;
    let id = rpc.create().await;
    rpc.ok(
        "submit_job",
        json!({"session_id": id, "command_type": "long"}),
    )
    .await;
    mock.wait_for_request("long").await;
    // Queued behind the long one, waiting synchronously when the stop comes.
    let waiting = rpc
        .send(
            "send_command",
            json!({"session_id": id, "command_type": "queued"}),
        )
        .await;
    let mut probe = Rpc::connect(s1.rpc_addr).await;
    support::eventually("the sync command to be queued", async || {
        let info = probe
            .ok("get_session_info", json!({"session_id": id}))
            .await;
        (info["queued"] == 2).then_some(())
    })
    .await;
    let stop = tokio::spawn(s1.shutdown(Duration::from_secs(10)));
    let reply = rpc.read_reply().await;
    assert_eq!(reply["id"], waiting);
    assert_eq!(reply["result"]["status"], "pending", "{reply}");
    let job = reply["result"]["job_id"].as_str().unwrap().to_string();
    stop.await.unwrap();
    assert!(mock.requests_of("queued").is_empty());

    let s2 = start(&mock, &db).await;
    let mut rpc = Rpc::connect(s2.rpc_addr).await;
    let r = rpc
        .ok("get_job_result", json!({"job_id": job, "wait": 10}))
        .await;
    assert_eq!(
        r["status"], "completed",
        "the queued command ran after the restart: {r}"
    );
    s2.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_second_manager_on_the_same_database_is_refused() {
    let db = TempDb::new("twice");
    let mock = MockBlender::start().await;
    let first = start(&mock, &db).await;
    let mut cfg = support::config(mock.backend());
    cfg.db = db.path();
    let e = server::start(cfg).await.err().expect("refused").to_string();
    assert!(e.contains("in use by another running manager"), "{e}");
    first.shutdown(Duration::from_secs(5)).await;
    // Once the first one is gone, the file is free again.
    let again = start(&mock, &db).await;
    again.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn damaged_rows_do_not_stop_a_restore() {
    let db = TempDb::new("damaged");
    let mock = MockBlender::start().await;
    let s1 = start(&mock, &db).await;
    let mut rpc = Rpc::connect(s1.rpc_addr).await;
    let id = rpc.create().await;
    let job = rpc
        .ok(
            "submit_job",
            json!({"session_id": id, "command_type": "ping"}),
        )
        .await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    rpc.ok("get_job_result", json!({"job_id": job, "wait": 10}))
        .await;
    drop(rpc);
    s1.shutdown(Duration::from_secs(5)).await;
    // Another program scribbles over the file.
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    conn.execute("UPDATE jobs SET finished_at = -1e300, ord = -5", [])
        .unwrap();
    conn.execute("UPDATE sessions SET next_seq = -1, command_count = -7", [])
        .unwrap();
    drop(conn);
    let s2 = start(&mock, &db).await;
    let mut rpc = Rpc::connect(s2.rpc_addr).await;
    let info = rpc.ok("get_session_info", json!({"session_id": id})).await;
    assert_eq!(info["command_count"], 0);
    let r = rpc
        .ok(
            "send_command",
            json!({"session_id": id, "command_type": "ping"}),
        )
        .await;
    assert_eq!(r["status"], "success");
    s2.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_single_command_named_batch_stays_a_single_command_across_a_restart() {
    let db = TempDb::new("named-batch");
    let mock = MockBlender::start().await;
    mock.once(
        "hold",
        MockAction::Delay(Duration::from_millis(300), Box::new(MockAction::Default)),
    );
    let s1 = start(&mock, &db).await;
    let mut rpc = Rpc::connect(s1.rpc_addr).await;
    let id = rpc.create().await;
    rpc.ok(
        "submit_job",
        json!({"session_id": id, "command_type": "hold"}),
    )
    .await;
    let job = rpc
        .ok("submit_job", json!({"session_id": id, "command_type": "batch", "params": {"commands": [{"command_type": "inner"}]}}))
        .await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    mock.wait_for_request("hold").await;
    drop(rpc);
    s1.shutdown(Duration::from_secs(10)).await;
    let s2 = start(&mock, &db).await;
    let mut rpc = Rpc::connect(s2.rpc_addr).await;
    let r = rpc
        .ok("get_job_result", json!({"job_id": job, "wait": 10}))
        .await;
    assert_eq!(r["status"], "completed");
    assert_eq!(mock.requests_of("batch").len(), 1);
    assert!(mock.requests_of("inner").is_empty());
    assert_eq!(
        mock.requests_of("batch")[0]["params"]["commands"][0]["command_type"],
        "inner"
    );
    s2.shutdown(Duration::from_secs(5)).await;
}
