//! Jobs: lifecycle, sync-to-job hand-over, capacity, cancel, batches, TTL.

mod support;

use std::time::Duration;

use blender_session_manager::mock_blender::MockAction;
use serde_json::{json, Value};
use support::{Harness, Rpc};

fn slow(ms: u64) -> MockAction {
    MockAction::Delay(Duration::from_millis(ms), Box::new(MockAction::Default))
}

async fn submit(rpc: &mut Rpc, id: &str, command: &str, params: Value) -> String {
    let r = rpc
        .ok(
            "submit_job",
            json!({"session_id": id, "command_type": command, "params": params}),
        )
        .await;
    assert_eq!(r["status"], "pending");
    r["job_id"].as_str().unwrap().to_string()
}

async fn result(rpc: &mut Rpc, job: &str) -> Value {
    rpc.ok("get_job_result", json!({"job_id": job, "wait": 30}))
        .await
}

#[tokio::test]
async fn a_job_goes_pending_processing_completed_with_timestamps() {
    let h = Harness::start().await;
    h.mock.once("render", slow(200));
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let job = submit(&mut rpc, &id, "render", json!({"frame": 1})).await;
    h.mock.wait_for_request("render").await;
    let running = rpc.ok("get_job", json!({"job_id": job})).await;
    assert_eq!(running["status"], "processing");
    assert_eq!(running["type"], "render");
    assert_eq!(running["params"], json!({"frame": 1}));
    assert_eq!(running["session_id"], id.as_str());
    assert_eq!(running["position"], Value::Null);
    assert!(running["started_at"].as_f64().is_some());
    assert_eq!(running["finished_at"], Value::Null);
    let r = result(&mut rpc, &job).await;
    assert_eq!(r["status"], "completed");
    assert_eq!(
        r["result"],
        json!({"status": "success", "result": {"command": "render", "params": {"frame": 1}}})
    );
    assert_eq!(r["results"], Value::Null);
    let done = rpc.ok("get_job", json!({"job_id": job})).await;
    let (c, s, f) = (
        done["created_at"].as_f64().unwrap(),
        done["started_at"].as_f64().unwrap(),
        done["finished_at"].as_f64().unwrap(),
    );
    assert!(c <= s && s <= f, "{c} {s} {f}");
    assert!(
        f - s >= 0.15,
        "finished after the 200 ms command: {}",
        f - s
    );
    assert_eq!(
        done["progress"],
        json!({"current": 1, "total": 1, "message": null})
    );
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert_eq!(hist[0]["job_id"], job.as_str());
    let e = rpc.err("get_job", json!({"job_id": "job-nope"})).await;
    assert_eq!(e["code"], -32005);
    assert_eq!(e["message"], "Job not found: job-nope");
}

#[tokio::test]
async fn send_command_hands_over_to_a_job_when_the_wait_passes() {
    let h = Harness::start().await;
    h.mock.once("bake", slow(400));
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let r = rpc
        .ok(
            "send_command",
            json!({"session_id": id, "command_type": "bake", "wait": 0.05}),
        )
        .await;
    assert_eq!(r["status"], "pending", "{r}");
    let job = r["job_id"].as_str().unwrap().to_string();
    // The caller goes away; the command keeps running and its result is kept.
    drop(rpc);
    let mut later = h.rpc().await;
    let r = result(&mut later, &job).await;
    assert_eq!(r["status"], "completed");
    assert_eq!(r["result"]["result"]["command"], "bake");
    let hist = later
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert_eq!(hist[0]["status"], "success");
}

#[tokio::test]
async fn the_queue_refuses_beyond_capacity_and_recovers() {
    let h = Harness::start_with(|c| c.max_queue = 2).await;
    h.mock.once("first", MockAction::NoReply);
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let running = submit(&mut rpc, &id, "first", json!({})).await;
    h.mock.wait_for_request("first").await;
    let a = submit(&mut rpc, &id, "a", json!({})).await;
    submit(&mut rpc, &id, "b", json!({})).await;
    let e = rpc
        .err("submit_job", json!({"session_id": id, "command_type": "c"}))
        .await;
    assert_eq!(e["code"], -32004);
    assert_eq!(e["message"], "Queue full (2/2)");
    assert_eq!(e["data"]["kind"], "queue_full");
    // A sync send_command counts too.
    let e = rpc
        .err(
            "send_command",
            json!({"session_id": id, "command_type": "c"}),
        )
        .await;
    assert_eq!(e["code"], -32004);
    let q = rpc.ok("get_queue_status", json!({})).await;
    assert_eq!(
        (
            q["pending"].clone(),
            q["processing"].clone(),
            q["capacity"].clone()
        ),
        (json!(2), json!(1), json!(2))
    );
    assert_eq!(q["queue_size"], 3);
    assert_eq!(q["current_task"], running.as_str());
    assert_eq!(q["tasks"][&a]["status"], "pending");
    // Cancelling a pending job frees its slot at once.
    rpc.ok("cancel_job", json!({"job_id": a})).await;
    submit(&mut rpc, &id, "c", json!({})).await;
}

#[tokio::test]
async fn cancelling_a_pending_job_removes_it_and_it_never_reaches_blender() {
    let h = Harness::start().await;
    h.mock.once("long", slow(300));
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let long = submit(&mut rpc, &id, "long", json!({})).await;
    let queued = submit(&mut rpc, &id, "never", json!({})).await;
    let after = submit(&mut rpc, &id, "after", json!({})).await;
    let rec = rpc.ok("get_job", json!({"job_id": after})).await;
    assert_eq!(rec["position"], 2, "behind the other pending job");
    let c = rpc.ok("cancel_job", json!({"job_id": queued})).await;
    assert_eq!(c["cancel"], "removed");
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["error"]["kind"], "cancelled");
    assert_eq!(result(&mut rpc, &after).await["status"], "completed");
    assert_eq!(result(&mut rpc, &long).await["status"], "completed");
    assert!(
        h.mock.requests_of("never").is_empty(),
        "a cancelled pending job never reaches Blender"
    );
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    let commands: Vec<_> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["command"].clone())
        .collect();
    assert_eq!(
        commands,
        vec![json!("long"), json!("after")],
        "no history for the cancelled job"
    );
    let again = rpc.ok("cancel_job", json!({"job_id": long})).await;
    assert_eq!(again["cancel"], "finished");
    assert_eq!(again["status"], "completed");
}

#[tokio::test]
async fn cancelling_a_running_job_discards_its_late_result() {
    let h = Harness::start().await;
    h.mock.once("render", slow(300));
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let job = submit(&mut rpc, &id, "render", json!({})).await;
    h.mock.wait_for_request("render").await;
    let c = rpc.ok("cancel_job", json!({"job_id": job})).await;
    assert_eq!(c["cancel"], "discarded");
    // The session goes on with the next command once Blender has answered.
    let r = rpc
        .ok(
            "send_command",
            json!({"session_id": id, "command_type": "ping"}),
        )
        .await;
    assert_eq!(r["status"], "success");
    let r = result(&mut rpc, &job).await;
    assert_eq!(r["status"], "cancelled");
    assert_eq!(r["result"], Value::Null, "the late result is discarded");
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert_eq!(
        hist[0]["status"], "cancelled",
        "Blender ran it; history says it was cancelled"
    );
}

#[tokio::test]
async fn a_batch_reports_progress_and_keeps_partial_results() {
    let h = Harness::start().await;
    h.mock.once(
        "step",
        MockAction::Delay(Duration::from_millis(300), Box::new(MockAction::Default)),
    );
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let commands = json!([
        {"command_type": "one"},
        {"command_type": "step", "params": {"n": 2}},
        {"command_type": "get_object_info", "params": {"name": "Missing"}},
        {"command_type": "four"},
    ]);
    let r = rpc
        .ok(
            "submit_batch",
            json!({"session_id": id, "commands": commands}),
        )
        .await;
    let job = r["job_id"].as_str().unwrap().to_string();
    h.mock.wait_for_request("step").await;
    let mid = rpc.ok("get_job", json!({"job_id": job})).await;
    assert_eq!(mid["type"], "batch");
    assert_eq!(mid["progress"]["total"], 4);
    assert_eq!(mid["progress"]["current"], 1);
    assert_eq!(mid["progress"]["message"], "step");
    let r = result(&mut rpc, &job).await;
    assert_eq!(r["status"], "completed", "every command ran: {r}");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(
        results[2],
        json!({"status": "error", "message": "Object not found: Missing"})
    );
    assert_eq!(results[3]["status"], "success");
    let hist = rpc
        .ok("get_session_history", json!({"session_id": id}))
        .await;
    assert_eq!(hist.as_array().unwrap().len(), 4);
    assert!(hist
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["job_id"] == job.as_str()));

    // stop_on_error: stops at the failure, keeps what ran, ends failed.
    let commands = json!([{"command_type": "one"}, {"command_type": "get_object_info", "params": {"name": "Missing"}}, {"command_type": "never"}]);
    let r = rpc
        .ok(
            "submit_batch",
            json!({"session_id": id, "commands": commands, "stop_on_error": true}),
        )
        .await;
    let r = result(&mut rpc, r["job_id"].as_str().unwrap()).await;
    assert_eq!(r["status"], "failed");
    assert_eq!(r["results"].as_array().unwrap().len(), 2);
    assert_eq!(r["error"]["kind"], "batch_stopped");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("command 2 of 3"),
        "{r}"
    );
    assert!(h.mock.requests_of("never").is_empty());
    let e = rpc
        .err(
            "submit_batch",
            json!({"session_id": id, "commands": [{"params": {}}]}),
        )
        .await;
    assert_eq!(
        e["message"],
        "Invalid params: commands[0]: command_type: expected a string"
    );
}

#[tokio::test]
async fn a_blender_error_fails_the_job_and_keeps_the_envelope() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let job = submit(&mut rpc, &id, "get_object_info", json!({"name": "Nope"})).await;
    let r = result(&mut rpc, &job).await;
    assert_eq!(r["status"], "failed");
    assert_eq!(
        r["error"],
        json!({"kind": "blender_error", "message": "Object not found: Nope"})
    );
    assert_eq!(
        r["result"],
        json!({"status": "error", "message": "Object not found: Nope"})
    );
    let listed = rpc
        .ok("list_jobs", json!({"session_id": id, "status": "failed"}))
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(
        rpc.ok("list_jobs", json!({"status": "completed"})).await,
        json!([])
    );
}

#[tokio::test]
async fn closing_a_session_cancels_its_queued_jobs() {
    let h = Harness::start().await;
    h.mock.once("long", slow(200));
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let long = submit(&mut rpc, &id, "long", json!({})).await;
    let queued = submit(&mut rpc, &id, "queued", json!({})).await;
    h.mock.wait_for_request("long").await;
    rpc.ok("close_session", json!({"session_id": id})).await;
    assert_eq!(
        result(&mut rpc, &long).await["status"],
        "completed",
        "the running one finishes"
    );
    let r = result(&mut rpc, &queued).await;
    assert_eq!(r["status"], "cancelled");
    assert!(h.mock.requests_of("queued").is_empty());
}

#[tokio::test(start_paused = true)]
async fn finished_jobs_are_pruned_after_the_ttl() {
    let h = Harness::start_with(|c| {
        c.job_ttl = Duration::from_secs(100);
        c.sweep_interval = Duration::from_secs(10);
    })
    .await;
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let job = submit(&mut rpc, &id, "ping", json!({})).await;
    assert_eq!(result(&mut rpc, &job).await["status"], "completed");
    tokio::time::sleep(Duration::from_secs(95)).await;
    rpc.ok("get_job", json!({"job_id": job})).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let e = rpc.err("get_job", json!({"job_id": job})).await;
    assert_eq!(e["code"], -32005);
}

#[tokio::test]
async fn get_job_result_long_polls_until_the_job_finishes() {
    let h = Harness::start().await;
    h.mock.once("render", slow(300));
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let job = submit(&mut rpc, &id, "render", json!({})).await;
    let quick = rpc.ok("get_job_result", json!({"job_id": job})).await;
    assert!(
        matches!(quick["status"].as_str(), Some("pending" | "processing")),
        "{quick}"
    );
    let r = rpc
        .ok("get_job_result", json!({"job_id": job, "wait": 30}))
        .await;
    assert_eq!(r["status"], "completed");
}

#[tokio::test]
async fn a_sync_caller_whose_job_is_cancelled_is_told_so() {
    let h = Harness::start().await;
    h.mock.once("render", slow(300));
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let waiting = rpc
        .send(
            "send_command",
            json!({"session_id": id, "command_type": "render", "wait": 10}),
        )
        .await;
    h.mock.wait_for_request("render").await;
    let mut other = h.rpc().await;
    let jobs = other.ok("list_jobs", json!({"session_id": id})).await;
    let job = jobs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        other.ok("cancel_job", json!({"job_id": job})).await["cancel"],
        "discarded"
    );
    let reply = rpc.read_reply().await;
    assert_eq!(reply["id"], waiting);
    assert_eq!(reply["result"]["status"], "cancelled", "{reply}");
    assert_eq!(reply["result"]["job_id"], job.as_str());
    other
        .ok("get_session_info", json!({"session_id": id}))
        .await;
}

#[tokio::test]
async fn a_batch_whose_last_command_fails_with_stop_on_error_still_completed() {
    let h = Harness::start().await;
    let mut rpc = h.rpc().await;
    let id = rpc.create().await;
    let commands = json!([{"command_type": "one"}, {"command_type": "get_object_info", "params": {"name": "Missing"}}]);
    let r = rpc
        .ok(
            "submit_batch",
            json!({"session_id": id, "commands": commands, "stop_on_error": true}),
        )
        .await;
    let r = result(&mut rpc, r["job_id"].as_str().unwrap()).await;
    assert_eq!(r["status"], "completed", "every command ran: {r}");
    assert_eq!(r["results"][1]["status"], "error");
}
