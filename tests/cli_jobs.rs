//! Tests of `jobs list|show|wait|cancel` against a fake manager (`support_cli`).
//!
//! Each test checks the exact requests the client sent and the exact text it printed. `jobs wait`
//! runs under tokio's paused clock: the fake answers a `get_job_result` long poll only when its
//! `wait` has passed (or at once when the job is finished), so rounds, timeouts and the pauses
//! between polls take no real time and the request sequence is exact.

mod support_cli;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use blender_session_manager::cli::format::local_datetime;
use blender_session_manager::cli::jobs::{
    format_batch_results, format_cancel, format_job, format_jobs_list, format_wait_result,
    reply_body, seconds_value, wait_for_job, WaitOptions, EXIT_TIMED_OUT, WAIT_ROUND,
};
use blender_session_manager::cli::progress::{
    bar, render_live_line, render_plain_line, JobProgress, ProgressMode,
};
use blender_session_manager::cli::{
    run_to_output, ClientCommand, Console, GlobalOptions, JobsCommand, RpcClient,
};
use clap::Parser;
use serde_json::{json, Value};
use support_cli::{not_found, now, FakeManager, Reply};
use tokio::time::Instant;

const SESSION: &str = "scene-20260106-101530-a1b2c3d4";
const JOB: &str = "job-3f2a9c1e";
const T0: f64 = 1767694530.25;

/// A job record as `get_job` returns it; tests override fields.
fn job(status: &str) -> Value {
    json!({
        "id": JOB, "session_id": SESSION, "status": status, "type": "execute_code",
        "params": {"code": "print('hi')"}, "created_at": T0, "started_at": null,
        "finished_at": null, "progress": {"current": 0, "total": 0, "message": null},
        "position": null, "result": null, "error": null, "metadata": {}
    })
}

fn with(mut value: Value, changes: Value) -> Value {
    for (key, change) in changes.as_object().unwrap() {
        value[key] = change.clone();
    }
    value
}

fn progress(current: u64, total: u64, message: &str) -> Value {
    json!({"current": current, "total": total, "message": message})
}

/// A `get_job_result` answer.
fn job_result(status: &str, result: Value, error: Value) -> Value {
    json!({"job_id": JOB, "status": status, "result": result, "error": error, "results": null})
}

fn success(result: Value) -> Value {
    json!({"status": "success", "result": result})
}

fn jobs(command: JobsCommand) -> ClientCommand {
    ClientCommand::Jobs(command)
}

fn wait_command(timeout: Option<Duration>) -> ClientCommand {
    jobs(JobsCommand::Wait {
        job_id: JOB.to_string(),
        timeout,
    })
}

fn job_not_found(job_id: &str) -> Reply {
    Reply::Error {
        code: -32005,
        kind: "job_not_found",
        message: format!("Job not found: {job_id}"),
    }
}

/// A fake manager whose job goes through `records`, one per `get_job` (the last one repeats);
/// `get_job_result` reports the current record's status, long-polling `wait` seconds unless it is
/// finished, when it answers `final_result` at once.
async fn scripted_job(records: Vec<Value>, final_result: Value) -> FakeManager {
    let step = Arc::new(AtomicUsize::new(0));
    let current = move |advance: bool| {
        let index = if advance {
            step.fetch_add(1, Ordering::SeqCst)
        } else {
            step.load(Ordering::SeqCst).saturating_sub(1)
        };
        records[index.min(records.len() - 1)].clone()
    };
    FakeManager::start(move |method, params| match method {
        "get_job" => Reply::Result(current(true)),
        "get_job_result" => {
            let record = current(false);
            let status = record["status"].as_str().unwrap();
            if matches!(status, "completed" | "failed" | "cancelled") {
                Reply::Result(final_result.clone())
            } else {
                let wait = params["wait"]
                    .as_f64()
                    .expect("wait is a number of seconds");
                Reply::Delayed(
                    Duration::from_secs_f64(wait),
                    job_result(status, Value::Null, Value::Null),
                )
            }
        }
        other => not_found(other),
    })
    .await
}

/// The `wait` of every `get_job_result` request, after checking the requests alternate
/// `get_job`, `get_job_result` for `JOB`.
fn waits(manager: &FakeManager) -> Vec<Value> {
    let requests = manager.requests();
    let mut waits = Vec::new();
    for pair in requests.chunks(2) {
        assert_eq!(pair[0]["method"], "get_job");
        assert_eq!(pair[0]["params"], json!({"job_id": JOB}));
        assert_eq!(pair[1]["method"], "get_job_result");
        assert_eq!(pair[1]["params"]["job_id"], JOB);
        assert_eq!(pair[1]["params"].as_object().unwrap().len(), 2);
        waits.push(pair[1]["params"]["wait"].clone());
    }
    waits
}

// ---------------------------------------------------------------------------------------------
// list

#[tokio::test]
async fn jobs_list_sends_the_filters_and_renders_the_table() {
    let now = now();
    let listed = json!([
        with(
            job("processing"),
            json!({
            "id": "job-00000003", "type": "render", "created_at": now - 20.2,
            "started_at": now - 12.4, "progress": progress(3, 10, "render frame 3")})
        ),
        with(
            job("pending"),
            json!({
            "id": "job-00000002", "created_at": now - 5.5, "position": 1})
        ),
        with(
            job("completed"),
            json!({
            "id": "job-00000001", "session_id": "scene-20260106-101600-00ff00ff",
            "type": "batch", "created_at": now - 3725.0, "started_at": now - 3724.5,
            "finished_at": now - 3700.0, "progress": progress(3, 3, "done")})
        ),
    ]);
    let canned = listed.clone();
    let manager = FakeManager::start(move |_, _| Reply::Result(canned.clone())).await;

    let output = run_to_output(
        &manager.global(),
        jobs(JobsCommand::List {
            session: Some(SESSION.to_string()),
            status: Some("processing".to_string()),
        }),
    )
    .await;

    assert_eq!(manager.methods(), ["list_jobs"]);
    assert_eq!(
        manager.requests()[0]["params"],
        json!({"session_id": SESSION, "status": "processing"})
    );
    assert_eq!(output.stderr, "");
    assert_eq!(output.exit_code, 0);
    assert_eq!(
        output.stdout,
        "\
JOB           SESSION                         TYPE          STATUS      PROGRESS  AGE    DURATION
job-00000003  scene-20260106-101530-a1b2c3d4  render        processing  3/10      20s    12s
job-00000002  scene-20260106-101530-a1b2c3d4  execute_code  pending     -         5s     -
job-00000001  scene-20260106-101600-00ff00ff  batch         completed   3/3       1h02m  24s
"
    );

    let json_output = run_to_output(
        &GlobalOptions {
            json: true,
            ..manager.global()
        },
        jobs(JobsCommand::List {
            session: None,
            status: None,
        }),
    )
    .await;
    assert_eq!(manager.requests()[1]["params"], json!({}));
    assert_eq!(
        serde_json::from_str::<Value>(&json_output.stdout).unwrap(),
        listed
    );
}

#[tokio::test]
async fn jobs_list_says_so_when_there_are_none() {
    let manager = FakeManager::start(|_, _| Reply::Result(json!([]))).await;
    let output = run_to_output(
        &manager.global(),
        jobs(JobsCommand::List {
            session: None,
            status: Some("failed".to_string()),
        }),
    )
    .await;
    assert_eq!(manager.requests()[0]["params"], json!({"status": "failed"}));
    assert_eq!(output.stdout, "no jobs\n");
    assert_eq!(output.exit_code, 0);
}

#[test]
fn jobs_list_tolerates_missing_fields() {
    assert_eq!(
        format_jobs_list(&json!([{"id": "job-a"}]), 100.0),
        "JOB    SESSION  TYPE  STATUS  PROGRESS  AGE  DURATION\njob-a  -        -     -       -         -    -\n"
    );
}

// ---------------------------------------------------------------------------------------------
// show

#[tokio::test]
async fn jobs_show_asks_for_the_record_and_lays_it_out() {
    let manager = FakeManager::start(|method, params| match method {
        "get_job" => Reply::Result(with(
            job("pending"),
            json!({"id": params["job_id"], "position": 2, "created_at": now() - 5.2}),
        )),
        other => not_found(other),
    })
    .await;

    let output = run_to_output(
        &manager.global(),
        jobs(JobsCommand::Show {
            job_id: JOB.to_string(),
        }),
    )
    .await;

    assert_eq!(manager.methods(), ["get_job"]);
    assert_eq!(manager.requests()[0]["params"], json!({"job_id": JOB}));
    assert_eq!(output.exit_code, 0);
    let text = &output.stdout;
    assert!(text.starts_with(&format!("job       {JOB}\n")), "{text}");
    assert!(text.contains("\nstatus    pending\n"), "{text}");
    assert!(text.contains(" (5s ago)\nstarted   -\n"), "{text}");
    assert!(text.ends_with("\nposition  2\nprogress  -\nparams    {\"code\":\"print('hi')\"}\n"));
}

#[test]
fn show_of_a_pending_job_gives_its_place_in_the_queue() {
    let record = with(
        job("pending"),
        json!({"type": "render", "params": {"frames": [1, 3]}, "position": 2}),
    );
    assert_eq!(
        format_job(&record, None, T0 + 5.0),
        format!(
            "\
job       {JOB}
status    pending
type      render
session   {SESSION}
created   {} (5s ago)
started   -
finished  -
position  2
progress  -
params    {{\"frames\":[1,3]}}
",
            local_datetime(T0)
        )
    );
}

#[test]
fn show_of_a_processing_job_gives_its_progress_and_no_position() {
    let record = with(
        job("processing"),
        json!({"type": "render", "params": {}, "started_at": T0 + 1.0,
               "progress": progress(3, 10, "render frame 3"),
               "metadata": {"by": "nightly"}}),
    );
    assert_eq!(
        format_job(&record, None, T0 + 13.0),
        format!(
            "\
job       {JOB}
status    processing
type      render
session   {SESSION}
created   {} (13s ago)
started   {} (12s ago)
finished  -
progress  3/10  render frame 3
metadata  {{\"by\":\"nightly\"}}
",
            local_datetime(T0),
            local_datetime(T0 + 1.0)
        )
    );
}

#[test]
fn show_of_a_completed_job_prints_the_code_output() {
    let record = with(
        job("completed"),
        json!({"started_at": T0 + 1.0, "finished_at": T0 + 2.5,
               "result": success(json!({"executed": true, "result": "Cube\nCamera\n"}))}),
    );
    let text = format_job(&record, None, T0 + 62.0);
    assert!(
        text.ends_with(&format!(
            "\
finished  {} (59s ago)
progress  -
params    {{\"code\":\"print('hi')\"}}

result
  Cube
  Camera
",
            local_datetime(T0 + 2.5)
        )),
        "{text}"
    );

    let silent = with(
        record,
        json!({"result": success(json!({"executed": true, "result": ""}))}),
    );
    assert!(format_job(&silent, None, T0).ends_with("\nresult\n  (no output)\n"));
}

#[test]
fn show_of_a_failed_job_gives_the_error_and_no_result() {
    let message = "NameError: name 'x' is not defined";
    let record = with(
        job("failed"),
        json!({"started_at": T0 + 1.0, "finished_at": T0 + 1.2,
               "error": {"kind": "blender_error", "message": message},
               "result": {"status": "error", "message": message}}),
    );
    let text = format_job(&record, None, T0 + 2.0);
    assert!(
        text.ends_with(&format!(
            "\nparams    {{\"code\":\"print('hi')\"}}\nerror     {message} (blender_error)\n"
        )),
        "{text}"
    );
    // Without a job error, the Blender reply's message stands in.
    let record = with(record, json!({"error": null}));
    assert!(format_job(&record, None, T0).ends_with(&format!("\nerror     {message}\n")));
}

#[test]
fn show_cuts_a_long_result_with_a_note() {
    let items: Vec<u64> = (0..50).collect();
    let record = with(job("completed"), json!({"result": success(json!(items))}));
    let text = format_job(&record, None, T0);
    let result = text.split("\nresult\n").nth(1).unwrap();
    let lines: Vec<&str> = result.lines().collect();
    assert_eq!(lines.len(), 41, "{result}");
    assert_eq!(lines[0], "  [");
    assert_eq!(lines[39], "    38,");
    assert_eq!(
        lines[40],
        format!("  … 12 more lines; `jobs show {JOB} --json` prints the whole result")
    );
}

#[tokio::test]
async fn jobs_show_of_a_batch_fetches_and_lists_the_per_command_results() {
    let record = with(
        job("failed"),
        json!({"type": "batch", "started_at": T0, "finished_at": T0 + 1.0,
               "progress": progress(2, 3, "execute_code"),
               "params": {"commands": [
                   {"command_type": "get_scene_info", "params": {}},
                   {"command_type": "execute_code", "params": {"code": "boom()"}},
                   {"command_type": "render", "params": {}}], "stop_on_error": true},
               "error": {"kind": "blender_error", "message": "boom"}}),
    );
    let results = json!([
        success(json!({"name": "Scene"})),
        {"status": "error", "message": "boom"}
    ]);
    let canned = (record.clone(), results.clone());
    let manager = FakeManager::start(move |method, _| match method {
        "get_job" => Reply::Result(canned.0.clone()),
        "get_job_result" => Reply::Result(json!({"job_id": JOB, "status": "failed",
            "result": null, "error": {"kind": "blender_error", "message": "boom"},
            "results": canned.1.clone()})),
        other => not_found(other),
    })
    .await;

    let output = run_to_output(
        &manager.global(),
        jobs(JobsCommand::Show {
            job_id: JOB.to_string(),
        }),
    )
    .await;

    assert_eq!(manager.methods(), ["get_job", "get_job_result"]);
    assert_eq!(manager.requests()[1]["params"], json!({"job_id": JOB}));
    assert!(
        output.stdout.ends_with(
            "\
progress  2/3  execute_code
commands  3
error     boom (blender_error)

results
  #  COMMAND         STATUS   RESULT
  1  get_scene_info  success  {\"name\":\"Scene\"}
  2  execute_code    error    boom
  3  render          not run  -
"
        ),
        "{}",
        output.stdout
    );
}

#[tokio::test]
async fn jobs_show_with_json_prints_the_record_only() {
    let record = with(job("processing"), json!({"type": "batch"}));
    let canned = record.clone();
    let manager = FakeManager::start(move |_, _| Reply::Result(canned.clone())).await;
    let output = run_to_output(
        &GlobalOptions {
            json: true,
            ..manager.global()
        },
        jobs(JobsCommand::Show {
            job_id: JOB.to_string(),
        }),
    )
    .await;
    assert_eq!(manager.methods(), ["get_job"]);
    assert_eq!(
        output.stdout,
        format!("{}\n", serde_json::to_string_pretty(&record).unwrap())
    );
}

// ---------------------------------------------------------------------------------------------
// wait

#[tokio::test(start_paused = true)]
async fn jobs_wait_prints_a_line_per_change_then_the_result() {
    let records = vec![
        with(job("pending"), json!({"position": 2})),
        with(job("pending"), json!({"position": 1})),
        with(
            job("processing"),
            json!({"started_at": T0, "progress": progress(1, 3, "render frame 1")}),
        ),
        with(
            job("processing"),
            json!({"started_at": T0, "progress": progress(1, 3, "render frame 1")}),
        ),
        with(
            job("processing"),
            json!({"started_at": T0, "progress": progress(2, 3, "render frame 2")}),
        ),
        with(
            job("completed"),
            json!({"progress": progress(3, 3, "done")}),
        ),
    ];
    let finished = job_result(
        "completed",
        success(json!({"executed": true, "result": "rendered 3 frames\n"})),
        Value::Null,
    );
    let manager = scripted_job(records, finished).await;
    let began = Instant::now();

    let output = run_to_output(&manager.global(), wait_command(None)).await;

    assert_eq!(
        output.stderr,
        "\
pending (position 2)
pending (position 1)
processing 1/3  render frame 1
processing 2/3  render frame 2
"
    );
    assert_eq!(output.stdout, "rendered 3 frames\n");
    assert_eq!(output.exit_code, 0);
    assert_eq!(WAIT_ROUND, Duration::from_secs(1));
    assert_eq!(waits(&manager), vec![json!(1); 6]);
    // Five unfinished rounds of one long poll each; the finished job answered at once.
    assert_eq!(began.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn jobs_wait_exits_1_when_the_job_failed() {
    let message = "NameError: name 'x' is not defined";
    let error = json!({"kind": "blender_error", "message": message});
    let manager = scripted_job(
        vec![
            with(job("processing"), json!({"started_at": T0})),
            with(job("failed"), json!({"error": error})),
        ],
        job_result(
            "failed",
            json!({"status": "error", "message": message}),
            error.clone(),
        ),
    )
    .await;

    let output = run_to_output(&manager.global(), wait_command(None)).await;

    assert_eq!(
        output.stderr,
        format!("processing\nerror: job {JOB} failed: {message} (blender_error)\n")
    );
    assert_eq!(output.stdout, "");
    assert_eq!(output.exit_code, 1);
    assert_eq!(waits(&manager).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn jobs_wait_exits_1_when_the_job_was_cancelled() {
    let manager = scripted_job(
        vec![job("cancelled")],
        job_result("cancelled", Value::Null, Value::Null),
    )
    .await;

    let output = run_to_output(&manager.global(), wait_command(None)).await;

    assert_eq!(output.stderr, format!("error: job {JOB} was cancelled\n"));
    assert_eq!(output.stdout, "");
    assert_eq!(output.exit_code, 1);
    assert_eq!(waits(&manager), vec![json!(1)]);
}

#[tokio::test(start_paused = true)]
async fn jobs_wait_gives_up_at_the_timeout_and_says_how_to_resume() {
    let manager = scripted_job(
        vec![with(
            job("processing"),
            json!({"started_at": T0, "progress": progress(0, 0, "baking")}),
        )],
        Value::Null,
    )
    .await;
    let began = Instant::now();

    let output = run_to_output(
        &manager.global(),
        wait_command(Some(Duration::from_millis(2500))),
    )
    .await;

    assert_eq!(
        output.stderr,
        format!(
            "processing  baking\nstill processing after 2.5s; jobs wait {JOB} to keep waiting\n"
        )
    );
    assert_eq!(output.stdout, "");
    assert_eq!(output.exit_code, EXIT_TIMED_OUT);
    assert_eq!(output.exit_code, 4);
    // Long polls never reach past the deadline.
    assert_eq!(waits(&manager), vec![json!(1), json!(1), json!(0.5)]);
    assert_eq!(began.elapsed(), Duration::from_millis(2500));
}

#[tokio::test(start_paused = true)]
async fn jobs_wait_with_a_zero_timeout_looks_once() {
    let manager = scripted_job(
        vec![with(job("pending"), json!({"position": 3}))],
        Value::Null,
    )
    .await;

    let output = run_to_output(&manager.global(), wait_command(Some(Duration::ZERO))).await;

    assert_eq!(
        output.stderr,
        format!("pending (position 3)\nstill pending after 0s; jobs wait {JOB} to keep waiting\n")
    );
    assert_eq!(output.exit_code, 4);
    assert_eq!(waits(&manager), vec![json!(0)]);
}

#[tokio::test(start_paused = true)]
async fn a_manager_that_does_not_long_poll_is_asked_once_a_round() {
    // Answers every get_job_result at once, as if it ignored `wait`.
    let manager = FakeManager::start(|method, _| match method {
        "get_job" => Reply::Result(job("processing")),
        "get_job_result" => Reply::Result(job_result("processing", Value::Null, Value::Null)),
        other => not_found(other),
    })
    .await;
    let began = Instant::now();

    let output = run_to_output(
        &manager.global(),
        wait_command(Some(Duration::from_secs(3))),
    )
    .await;

    assert_eq!(output.exit_code, 4);
    assert_eq!(
        waits(&manager),
        vec![json!(1), json!(1), json!(1), json!(0)],
        "one round a second, then a last look at the deadline"
    );
    assert_eq!(began.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn jobs_wait_with_json_prints_the_final_job_result() {
    let finished = job_result(
        "failed",
        json!({"status": "error", "message": "boom"}),
        json!({"kind": "blender_error", "message": "boom"}),
    );
    let manager = scripted_job(vec![job("failed")], finished.clone()).await;

    let output = run_to_output(
        &GlobalOptions {
            json: true,
            ..manager.global()
        },
        wait_command(None),
    )
    .await;

    assert_eq!(
        output.stdout,
        format!("{}\n", serde_json::to_string_pretty(&finished).unwrap())
    );
    assert_eq!(output.stderr, "");
    assert_eq!(output.exit_code, 1, "a failed job still fails the wait");
}

#[tokio::test(start_paused = true)]
async fn jobs_wait_for_a_batch_prints_a_line_per_command() {
    let record = with(
        job("processing"),
        json!({"type": "batch", "started_at": T0, "progress": progress(1, 2, "execute_code"),
               "params": {"commands": [
                   {"command_type": "get_scene_info", "params": {}},
                   {"command_type": "execute_code", "params": {"code": "print(1)"}}]}}),
    );
    let done = with(record.clone(), json!({"status": "completed"}));
    let finished = json!({"job_id": JOB, "status": "completed", "result": null, "error": null,
        "results": [success(json!({"name": "Scene", "objects": 3})),
                    success(json!({"executed": true, "result": "1\n"}))]});
    let manager = scripted_job(vec![record, done], finished).await;

    let output = run_to_output(&manager.global(), wait_command(None)).await;

    assert_eq!(output.stderr, "processing 1/2  execute_code\n");
    assert_eq!(
        output.stdout,
        "\
#  COMMAND         STATUS   RESULT
1  get_scene_info  success  {\"name\":\"Scene\",\"objects\":3}
2  execute_code    success  1
"
    );
    assert_eq!(output.exit_code, 0);
}

#[tokio::test(start_paused = true)]
async fn the_live_display_redraws_one_line_in_place_and_erases_it_at_the_end() {
    let manager = scripted_job(
        vec![
            with(
                job("processing"),
                json!({"started_at": null, "created_at": null,
                       "progress": progress(1, 4, "render frame 1")}),
            ),
            with(job("completed"), json!({})),
        ],
        job_result("completed", success(json!("ok")), Value::Null),
    )
    .await;
    let client = RpcClient::connect(&manager.address).await.unwrap();
    let options = WaitOptions {
        timeout: None,
        round: Duration::from_secs(1),
        mode: ProgressMode::Live { width: 60 },
        json: false,
        stop_on_interrupt: false,
    };
    let mut console = Console::captured();

    let code = wait_for_job(&client, JOB, &options, &mut console)
        .await
        .unwrap();

    let output = console.into_output(code);
    assert_eq!(output.exit_code, 0);
    assert_eq!(output.stdout, "ok\n");
    let stderr = &output.stderr;
    assert!(!stderr.contains('\n'), "redrawn in place: {stderr:?}");
    let frames: Vec<&str> = stderr.split('\r').filter(|f| !f.is_empty()).collect();
    // The first draw, ten ticks during the one-second long poll, and the erase.
    assert_eq!(frames.len(), 12, "{stderr:?}");
    assert_eq!(
        frames[0],
        "[#####---------------] 1/4  render frame 1  0s\x1b[K"
    );
    assert_eq!(
        frames[10],
        "[#####---------------] 1/4  render frame 1  1s\x1b[K"
    );
    assert_eq!(frames[11], "\x1b[K");
}

#[test]
fn wait_results_pick_stdout_stderr_and_the_exit_status() {
    let completed = format_wait_result(
        &job_result("completed", success(json!({"name": "Scene"})), Value::Null),
        &job("completed"),
        JOB,
    );
    assert_eq!(completed.stdout, "{\n  \"name\": \"Scene\"\n}\n");
    assert_eq!((completed.stderr.as_str(), completed.exit_code), ("", 0));

    // A failure without a job error falls back to Blender's message, then to a placeholder.
    let failed = format_wait_result(
        &job_result(
            "failed",
            json!({"status": "error", "message": "no camera"}),
            Value::Null,
        ),
        &job("failed"),
        JOB,
    );
    assert_eq!(
        failed.stderr,
        format!("error: job {JOB} failed: no camera\n")
    );
    assert_eq!(failed.exit_code, 1);
    let bare = format_wait_result(
        &job_result("failed", Value::Null, Value::Null),
        &json!({}),
        JOB,
    );
    assert_eq!(
        bare.stderr,
        format!("error: job {JOB} failed: no reason given\n")
    );

    assert_eq!(reply_body(&success(json!("text"))).as_deref(), Some("text"));
    assert_eq!(
        reply_body(&json!({"status": "error", "message": "x"})),
        None
    );
    assert_eq!(reply_body(&Value::Null), None);
    assert_eq!(reply_body(&json!([1])).as_deref(), Some("[\n  1\n]"));
}

#[test]
fn batch_results_mark_commands_that_did_not_run() {
    let commands = [json!({"command_type": "a"}), json!({"command_type": "b"})];
    let results = [json!({"status": "success", "result": {"executed": true, "result": "x\ny\n"}})];
    assert_eq!(
        format_batch_results(&results, &commands, false),
        "#  COMMAND  STATUS   RESULT\n1  a        success  x\\ny\n2  b        -        -\n"
    );
    assert!(format_batch_results(&results, &commands, true).ends_with("2  b        not run  -\n"));
}

#[test]
fn wait_seconds_are_whole_when_they_can_be() {
    assert_eq!(seconds_value(Duration::from_secs(5)), json!(5));
    assert_eq!(seconds_value(Duration::from_millis(2500)), json!(2.5));
    assert_eq!(seconds_value(Duration::from_millis(20)), json!(0.02));
    assert_eq!(seconds_value(Duration::ZERO), json!(0));
}

// ---------------------------------------------------------------------------------------------
// the progress line

fn processing(current: u64, total: u64, message: Option<&str>) -> JobProgress {
    JobProgress::from_job(&json!({
        "status": "processing",
        "progress": {"current": current, "total": total, "message": message},
    }))
}

#[test]
fn the_bar_fills_whole_cells() {
    assert_eq!(bar(0.0, 10), "[----------]");
    assert_eq!(bar(0.35, 10), "[###-------]");
    assert_eq!(bar(0.999, 10), "[#########-]");
    assert_eq!(bar(1.0, 10), "[##########]");
    assert_eq!(bar(1.7, 4), "[####]", "clamped");
    assert_eq!(bar(-0.5, 4), "[----]");
    assert_eq!(bar(f64::NAN, 4), "[----]");
}

#[test]
fn the_live_line_shows_bar_counts_message_and_time() {
    assert_eq!(
        render_live_line(
            &processing(3, 10, Some("render frame 3")),
            Some(12.7),
            0,
            79
        ),
        "[######--------------] 3/10  render frame 3  12s"
    );
    assert_eq!(
        render_live_line(&processing(10, 10, None), Some(75.0), 0, 79),
        "[####################] 10/10  1m15s"
    );
}

#[test]
fn without_a_total_the_live_line_spins() {
    let pending = JobProgress::from_job(&json!({"status": "pending", "position": 2}));
    let frames: Vec<String> = (0..5)
        .map(|tick| render_live_line(&pending, Some(3.0), tick, 79))
        .collect();
    assert_eq!(
        frames,
        [
            "| pending (position 2)  3s",
            "/ pending (position 2)  3s",
            "- pending (position 2)  3s",
            "\\ pending (position 2)  3s",
            "| pending (position 2)  3s",
        ]
    );
    assert_eq!(
        render_live_line(&processing(0, 0, Some("baking")), None, 1, 79),
        "/ processing  baking"
    );
    // A single command is 0/1 until it is done: an empty bar would look stuck.
    assert_eq!(
        render_live_line(&processing(0, 1, Some("sleep")), Some(12.0), 2, 79),
        "- processing  sleep  12s"
    );
}

#[test]
fn the_live_line_fits_the_terminal() {
    let long = processing(1, 2, Some(&"x".repeat(200)));
    let line = render_live_line(&long, Some(5.0), 0, 50);
    assert_eq!(line.chars().count(), 50, "{line}");
    assert!(
        line.starts_with("[##########----------] 1/2  xxx"),
        "{line}"
    );
    assert!(line.ends_with("x…  5s"), "{line}");
    // Too narrow for any message: it is left out rather than cut to nothing.
    assert_eq!(
        render_live_line(&long, Some(5.0), 0, 34),
        "[##########----------] 1/2  5s"
    );
}

#[test]
fn plain_lines_carry_status_counts_and_message() {
    assert_eq!(
        render_plain_line(&processing(1, 3, Some("render\nframe 1"))),
        "processing 1/3  render frame 1"
    );
    assert_eq!(render_plain_line(&processing(0, 0, None)), "processing");
    assert_eq!(
        render_plain_line(&JobProgress::from_job(&json!({"status": "pending"}))),
        "pending"
    );
    assert_eq!(
        render_plain_line(&JobProgress::from_job(&json!({}))),
        "unknown"
    );
}

#[test]
fn elapsed_time_counts_from_the_start_or_from_queueing() {
    let record = json!({"status": "processing", "created_at": 100.0, "started_at": 110.0});
    assert_eq!(JobProgress::from_job(&record).elapsed(125.0), Some(15.0));
    let pending = json!({"status": "pending", "created_at": 100.0});
    assert_eq!(JobProgress::from_job(&pending).elapsed(103.0), Some(3.0));
    assert_eq!(
        JobProgress::from_job(&pending).elapsed(90.0),
        Some(0.0),
        "clock skew"
    );
    assert_eq!(
        JobProgress::from_job(&json!({"status": "pending"})).elapsed(1.0),
        None
    );
}

// ---------------------------------------------------------------------------------------------
// cancel

#[tokio::test]
async fn jobs_cancel_explains_what_happened() {
    let cases = [
        (
            with(job("cancelled"), json!({"cancel": "removed"})),
            format!("cancelled {JOB}: removed from the queue, never sent to Blender\n"),
        ),
        (
            with(job("cancelled"), json!({"cancel": "discarded"})),
            format!("cancelled {JOB}: Blender is still running it; its result will be discarded\n"),
        ),
        (
            with(job("completed"), json!({"cancel": "finished"})),
            format!("{JOB} already completed: nothing to cancel\n"),
        ),
    ];
    for (reply, expected) in cases {
        let canned = reply.clone();
        let manager = FakeManager::start(move |_, _| Reply::Result(canned.clone())).await;
        let output = run_to_output(
            &manager.global(),
            jobs(JobsCommand::Cancel {
                job_id: JOB.to_string(),
            }),
        )
        .await;
        assert_eq!(manager.methods(), ["cancel_job"]);
        assert_eq!(manager.requests()[0]["params"], json!({"job_id": JOB}));
        assert_eq!(output.stdout, expected);
        assert_eq!(output.stderr, "");
        assert_eq!(output.exit_code, 0);
    }
}

#[test]
fn cancel_replies_without_the_cancel_member_still_read_well() {
    assert_eq!(
        format_cancel(&job("cancelled"), JOB),
        format!("cancelled {JOB}\n")
    );
    assert_eq!(
        format_cancel(&job("failed"), JOB),
        format!("{JOB} is failed\n")
    );
    assert_eq!(
        format_cancel(&json!({"cancel": "finished", "status": "failed"}), "job-x"),
        "job-x already failed: nothing to cancel\n"
    );
}

// ---------------------------------------------------------------------------------------------
// errors

#[tokio::test]
async fn an_unknown_job_is_an_error_with_a_hint_for_every_subcommand() {
    let manager =
        FakeManager::start(|_, params| job_not_found(params["job_id"].as_str().unwrap())).await;
    let expected = "error: Job not found: job-gone (job_not_found, code -32005)\n\
                    finished jobs are kept for the manager's --job-ttl (1 h by default); \
                    `jobs list` shows the jobs it still has\n";
    let commands = [
        JobsCommand::Show {
            job_id: "job-gone".into(),
        },
        JobsCommand::Wait {
            job_id: "job-gone".into(),
            timeout: None,
        },
        JobsCommand::Cancel {
            job_id: "job-gone".into(),
        },
    ];
    for command in commands {
        let output = run_to_output(&manager.global(), jobs(command)).await;
        assert_eq!(output.stderr, expected);
        assert_eq!(output.stdout, "");
        assert_eq!(output.exit_code, 1);
    }
    assert_eq!(manager.methods(), ["get_job", "get_job", "cancel_job"]);
}

#[tokio::test]
async fn other_errors_pass_through_unchanged() {
    let manager = FakeManager::start(|_, _| Reply::Error {
        code: -32007,
        kind: "unauthorized",
        message: "Unauthorized: authenticate with the manager's token first".to_string(),
    })
    .await;
    let output = run_to_output(
        &manager.global(),
        jobs(JobsCommand::List {
            session: None,
            status: None,
        }),
    )
    .await;
    assert_eq!(
        output.stderr,
        "error: Unauthorized: authenticate with the manager's token first (unauthorized, code -32007)\n"
    );
    assert_eq!(output.exit_code, 1);
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

fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
    TestCli::try_parse_from(std::iter::once("bsm").chain(args.iter().copied())).map(|c| c.command)
}

#[test]
fn the_jobs_command_line_parses() {
    match parse(&["jobs", "wait", JOB, "--timeout", "2.5"]).unwrap() {
        ClientCommand::Jobs(JobsCommand::Wait { job_id, timeout }) => {
            assert_eq!(job_id, JOB);
            assert_eq!(timeout, Some(Duration::from_millis(2500)));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse(&["jobs", "wait", JOB]).unwrap(),
        ClientCommand::Jobs(JobsCommand::Wait { timeout: None, .. })
    ));
    match parse(&[
        "jobs",
        "list",
        "--session",
        SESSION,
        "--status",
        "pending",
        "--json",
    ])
    .unwrap()
    {
        ClientCommand::Jobs(JobsCommand::List { session, status }) => {
            assert_eq!(session.as_deref(), Some(SESSION));
            assert_eq!(status.as_deref(), Some("pending"));
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        &["jobs", "list", "--status", "done"][..],
        &["jobs", "wait", JOB, "--timeout", "-1"],
        &["jobs", "wait", JOB, "--timeout", "soon"],
        &["jobs", "wait", JOB, "--timeout", "inf"],
        &["jobs", "show"],
        &["jobs", "frobnicate"],
    ] {
        let err = parse(bad).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{bad:?}");
    }
}

#[test]
fn the_jobs_help_names_every_subcommand() {
    use clap::CommandFactory;
    TestCli::command().debug_assert();
    let mut command = TestCli::command();
    let help = command
        .find_subcommand_mut("jobs")
        .unwrap()
        .render_help()
        .to_string();
    for name in ["list", "show", "wait", "cancel"] {
        assert!(help.contains(&format!("\n  {name} ")), "{help}");
    }
    let top = TestCli::command().render_help().to_string();
    assert!(top.contains("Inspect, wait for and cancel jobs"), "{top}");
}
