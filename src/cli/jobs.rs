//! `jobs list|show|wait|cancel`: following the jobs the manager runs (DESIGN §5).
//!
//! `list`, `show` and `cancel` are one call each (`show` adds a `get_job_result` for a batch, whose
//! per-command replies only that method returns). `wait` is a loop of rounds on one connection:
//!
//! 1. `get_job` — the record, for the progress display;
//! 2. `get_job_result {wait}` — a long poll the manager answers as soon as the job finishes, or when
//!    `wait` (at most [`WAIT_ROUND`], and never past `--timeout`) runs out.
//!
//! The round length only sets how often the progress is refreshed: a finished job is seen at once
//! through the long poll. The calls of a round are made one after the other, so the requests a wait
//! makes follow from the manager's answers alone. A manager that answers a long poll early is not
//! polled again before the round is over, so the loop cannot spin. While a call is in flight the
//! live display (a terminal on stderr) is redrawn every [`TICK`] so its spinner and clock move.
//!
//! Exit statuses of `wait`: 0 the job completed, 1 it failed or was cancelled, [`EXIT_TIMED_OUT`]
//! when `--timeout` ran out first, 130 when interrupted at the terminal. In the last two cases the
//! job keeps running in the manager, and the message says how to pick it up again.
//!
//! Like [`super::format`], the formatters here are pure functions of the manager's JSON (and "now"
//! where an age is shown), tolerant of missing fields.

use std::future::Future;
use std::io::IsTerminal;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::time::{Instant, MissedTickBehavior};

use super::commands::{connect, now, print_json};
use super::format::{
    display, error_text, human_duration, key_values, one_line_preview, pretty, printed_output,
    when, PREVIEW_CHARS,
};
use super::output::Console;
use super::progress::{
    is_finished, terminal_width, JobProgress, ProgressDisplay, ProgressMode, DEFAULT_LINE_WIDTH,
};
use super::rpc_client::{ClientError, RpcClient};
use super::table::Table;
use super::GlobalOptions;

/// The statuses a job can have, in the order it goes through them.
pub const JOB_STATUSES: [&str; 5] = ["pending", "processing", "completed", "failed", "cancelled"];

/// Longest `wait` of one `get_job_result` long poll in `jobs wait`; the progress refresh period.
pub const WAIT_ROUND: Duration = Duration::from_secs(1);

/// Redraw period of the live progress line.
pub const TICK: Duration = Duration::from_millis(100);

/// Lines of a result `jobs show` prints before cutting it.
pub const SHOW_RESULT_LINES: usize = 40;

/// Exit status of `jobs wait` when `--timeout` ran out before the job finished.
pub const EXIT_TIMED_OUT: u8 = 4;

/// Exit status of `jobs wait` stopped with Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Placeholder for a value the manager did not send.
const MISSING: &str = "-";

/// Printed after a `job_not_found` error.
const JOB_NOT_FOUND_HINT: &str = "finished jobs are kept for the manager's --job-ttl (1 h by \
                                  default); `jobs list` shows the jobs it still has";

/// Width of the "params" preview in `jobs show`.
const SHOW_PARAMS_CHARS: usize = 100;

/// `jobs …`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum JobsCommand {
    /// List jobs, newest first, with their progress, age and duration
    List {
        /// Only the jobs of this session
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// Only the jobs with this status
        #[arg(long, value_name = "STATUS", value_parser = JOB_STATUSES)]
        status: Option<String>,
    },
    /// Show one job: status, times, progress, error and result
    Show {
        /// Job ID
        #[arg(value_name = "ID")]
        job_id: String,
    },
    /// Wait for a job to finish, showing its progress, then print its result
    ///
    /// Exits 0 when the job completed, 1 when it failed or was cancelled, and 4 when --timeout
    /// ran out first (the job keeps running).
    Wait {
        /// Job ID
        #[arg(value_name = "ID")]
        job_id: String,
        /// Stop waiting after S seconds (default: until the job finishes)
        #[arg(long, value_name = "S", value_parser = parse_timeout)]
        timeout: Option<Duration>,
    },
    /// Cancel a job: a queued one never runs, a running one's result is discarded
    Cancel {
        /// Job ID
        #[arg(value_name = "ID")]
        job_id: String,
    },
}

/// Parses `--timeout`: seconds, integer or decimal, zero or more.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("`{text}` is not zero or more seconds"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` seconds is too long"))
}

/// Runs one `jobs` subcommand; `Ok` carries the exit status.
pub(super) async fn execute(
    global: &GlobalOptions,
    command: JobsCommand,
    console: &mut Console,
) -> Result<u8, ClientError> {
    let outcome = match command {
        JobsCommand::List { session, status } => list(global, session, status, console).await,
        JobsCommand::Show { job_id } => show(global, &job_id, console).await,
        JobsCommand::Wait { job_id, timeout } => wait(global, &job_id, timeout, console).await,
        JobsCommand::Cancel { job_id } => cancel(global, &job_id, console).await,
    };
    match outcome {
        Err(err) if err.rpc_kind() == Some("job_not_found") => {
            console.err_line(&format!("error: {err}"));
            console.err_line(JOB_NOT_FOUND_HINT);
            Ok(err.exit_code())
        }
        other => other,
    }
}

async fn list(
    global: &GlobalOptions,
    session: Option<String>,
    status: Option<String>,
    console: &mut Console,
) -> Result<u8, ClientError> {
    let mut params = Map::new();
    if let Some(session) = session {
        params.insert("session_id".into(), Value::String(session));
    }
    if let Some(status) = status {
        params.insert("status".into(), Value::String(status));
    }
    let client = connect(global).await?;
    let jobs = client.call("list_jobs", Value::Object(params)).await?;
    if !print_json(global, &jobs, console) {
        console.out(&format_jobs_list(&jobs, now()));
    }
    Ok(0)
}

async fn show(
    global: &GlobalOptions,
    job_id: &str,
    console: &mut Console,
) -> Result<u8, ClientError> {
    let client = connect(global).await?;
    let job = client.call("get_job", json!({ "job_id": job_id })).await?;
    if print_json(global, &job, console) {
        return Ok(0);
    }
    // A batch's per-command replies come with its result, not with its record.
    let results = if is_batch(&job) && !matches!(status_of(&job), "pending" | "unknown") {
        let result = client
            .call("get_job_result", json!({ "job_id": job_id }))
            .await?;
        result.get("results").filter(|r| r.is_array()).cloned()
    } else {
        None
    };
    console.out(&format_job(&job, results.as_ref(), now()));
    Ok(0)
}

async fn cancel(
    global: &GlobalOptions,
    job_id: &str,
    console: &mut Console,
) -> Result<u8, ClientError> {
    let client = connect(global).await?;
    let reply = client
        .call("cancel_job", json!({ "job_id": job_id }))
        .await?;
    if !print_json(global, &reply, console) {
        console.out(&format_cancel(&reply, job_id));
    }
    Ok(0)
}

async fn wait(
    global: &GlobalOptions,
    job_id: &str,
    timeout: Option<Duration>,
    console: &mut Console,
) -> Result<u8, ClientError> {
    let terminal = matches!(console, Console::Terminal);
    let mode = if terminal && std::io::stderr().is_terminal() {
        ProgressMode::Live {
            // One column spare: writing the last column makes some terminals wrap.
            width: terminal_width().map_or(DEFAULT_LINE_WIDTH, |w| w.saturating_sub(1)),
        }
    } else {
        ProgressMode::Lines
    };
    let options = WaitOptions {
        timeout,
        round: WAIT_ROUND,
        mode,
        json: global.json,
        stop_on_interrupt: terminal,
    };
    let client = connect(global).await?;
    wait_for_job(&client, job_id, &options, console).await
}

/// How [`wait_for_job`] waits and reports.
#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// Give up after this long; `None` waits until the job finishes.
    pub timeout: Option<Duration>,
    /// Longest long poll, and so the progress refresh period ([`WAIT_ROUND`] from the command line).
    pub round: Duration,
    /// How progress is shown on stderr.
    pub mode: ProgressMode,
    /// Print the final `get_job_result` as JSON instead of the formatted result.
    pub json: bool,
    /// Stop waiting on Ctrl-C with a note that the job keeps running (only for the real terminal:
    /// it installs a process-wide signal handler).
    pub stop_on_interrupt: bool,
}

/// Why the polling loop stopped, with the last `get_job_result` answer.
enum Ending {
    Finished(Value),
    TimedOut(Value),
}

/// Waits for `job_id` over `client`, showing progress, then prints the outcome; returns the exit
/// status (see the module documentation).
pub async fn wait_for_job(
    client: &RpcClient,
    job_id: &str,
    options: &WaitOptions,
    console: &mut Console,
) -> Result<u8, ClientError> {
    let mut progress = ProgressDisplay::new(options.mode);
    let polled = {
        let polling = poll_until_done(client, job_id, options, &mut progress, console);
        if options.stop_on_interrupt {
            tokio::select! {
                polled = polling => Some(polled),
                () = interrupted() => None,
            }
        } else {
            Some(polling.await)
        }
    };
    progress.clear(console);

    let Some(polled) = polled else {
        console.err_line(&format!(
            "stopped waiting; job {job_id} keeps running in the manager \
             (`jobs wait {job_id}` to wait again, `jobs cancel {job_id}` to stop it)"
        ));
        return Ok(EXIT_INTERRUPTED);
    };
    let (job, ending) = polled?;
    match ending {
        Ending::Finished(result) => {
            let report = format_wait_result(&result, &job, job_id);
            if options.json {
                console.out(&pretty(&result));
                console.out("\n");
            } else {
                console.out(&report.stdout);
                console.err(&report.stderr);
            }
            Ok(report.exit_code)
        }
        Ending::TimedOut(result) => {
            if options.json {
                console.out(&pretty(&result));
                console.out("\n");
            }
            let status = match result.get("status").and_then(Value::as_str) {
                Some(status) => status,
                None => status_of(&job),
            };
            let waited = options.timeout.unwrap_or_default().as_secs_f64();
            console.err_line(&format!(
                "still {status} after {waited}s; jobs wait {job_id} to keep waiting"
            ));
            Ok(EXIT_TIMED_OUT)
        }
    }
}

/// Resolves on Ctrl-C; never, when the signal cannot be watched.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The rounds of `jobs wait` (module documentation); returns the last job record and why it
/// stopped.
async fn poll_until_done(
    client: &RpcClient,
    job_id: &str,
    options: &WaitOptions,
    progress: &mut ProgressDisplay,
    console: &mut Console,
) -> Result<(Value, Ending), ClientError> {
    // A timeout too long to add to the clock is no timeout.
    let deadline = options.timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let job = animated(
            client.call("get_job", json!({ "job_id": job_id })),
            progress,
            console,
        )
        .await?;
        progress.update(&job, console);

        let round_began = Instant::now();
        let wait = match deadline {
            Some(deadline) => deadline
                .saturating_duration_since(round_began)
                .min(options.round),
            None => options.round,
        };
        let request = json!({ "job_id": job_id, "wait": seconds_value(wait) });
        let result = animated(client.call("get_job_result", request), progress, console).await?;
        if is_finished(status_of(&result)) {
            return Ok((job, Ending::Finished(result)));
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok((job, Ending::TimedOut(result)));
        }
        // An early answer (a manager that does not long-poll) must not make this loop spin.
        animated(
            tokio::time::sleep_until(round_began + wait),
            progress,
            console,
        )
        .await;
    }
}

/// Awaits `work`, redrawing the live progress line every [`TICK`] meanwhile.
async fn animated<F: Future>(
    work: F,
    progress: &mut ProgressDisplay,
    console: &mut Console,
) -> F::Output {
    if !progress.animates() {
        return work.await;
    }
    tokio::pin!(work);
    let mut ticks = tokio::time::interval_at(Instant::now() + TICK, TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            output = &mut work => return output,
            _ = ticks.tick() => progress.tick(console),
        }
    }
}

/// A duration as the manager's seconds: an integer when whole, else milliseconds as a decimal.
pub fn seconds_value(duration: Duration) -> Value {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        json!((millis / 1000) as u64)
    } else {
        json!(millis as f64 / 1000.0)
    }
}

fn status_of(value: &Value) -> &str {
    value
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
}

fn is_batch(job: &Value) -> bool {
    job.get("type").and_then(Value::as_str) == Some("batch")
}

/// The `{command_type, params}` list of a batch job's params; empty for other jobs.
fn batch_commands(job: &Value) -> &[Value] {
    job.get("params")
        .and_then(|p| p.get("commands"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn number(value: Option<&Value>) -> Option<f64> {
    value.and_then(Value::as_f64)
}

/// Seconds a job ran: start to finish, or start to `now` while it is still processing.
fn run_seconds(job: &Value, now: f64) -> Option<f64> {
    let started = number(job.get("started_at"))?;
    match number(job.get("finished_at")) {
        Some(finished) => Some(finished - started),
        None if status_of(job) == "processing" => Some(now - started),
        None => None,
    }
}

/// `3/10  render frame 3`, `3/10`, the message alone, or `-`.
fn progress_summary(job: &Value) -> String {
    let progress = JobProgress::from_job(job);
    match (progress.counts(), progress.message) {
        (Some(counts), Some(message)) => format!("{counts}  {message}"),
        (Some(counts), None) => counts,
        (None, Some(message)) => message,
        (None, None) => MISSING.to_string(),
    }
}

/// A job error `{"kind", "message"}` as `message (kind)`.
fn error_summary(error: Option<&Value>) -> Option<String> {
    let error = error.filter(|e| !e.is_null())?;
    let kind = error.get("kind").and_then(Value::as_str);
    match (error_text(Some(error)), kind) {
        (Some(message), Some(kind)) if message != kind => Some(format!("{message} ({kind})")),
        (Some(message), _) => Some(message),
        (None, Some(kind)) => Some(kind.to_string()),
        (None, None) => Some(display(Some(error))),
    }
}

/// The message of a Blender `status: error` reply envelope.
fn reply_error(reply: Option<&Value>) -> Option<String> {
    let reply = reply?;
    if reply.get("status").and_then(Value::as_str) != Some("error") {
        return None;
    }
    reply
        .get("message")
        .map(|m| display(Some(m)))
        .or_else(|| error_text(reply.get("error")))
}

/// The text standing for a Blender reply envelope: for `status: success`, an `execute_code`
/// result's printed output or a string as-is and other values as pretty JSON; nothing for
/// `status: error` (the job's error says it) or null; any other value as pretty JSON.
pub fn reply_body(reply: &Value) -> Option<String> {
    match reply.get("status").and_then(Value::as_str) {
        Some("success") => {
            let result = reply.get("result").unwrap_or(&Value::Null);
            Some(match (printed_output(result), result) {
                (Some(printed), _) => printed.to_string(),
                (None, Value::String(text)) => text.clone(),
                (None, other) => pretty(other),
            })
        }
        Some("error") => None,
        _ if reply.is_null() => None,
        _ => Some(pretty(reply)),
    }
}

/// One line per command of a batch: its number, command type, the status of its reply and a
/// preview of the result or error. Commands without a reply are `not run` once the job finished.
pub fn format_batch_results(results: &[Value], commands: &[Value], finished: bool) -> String {
    let mut table = Table::new(["#", "COMMAND", "STATUS", "RESULT"]);
    for i in 0..results.len().max(commands.len()) {
        let command = commands.get(i).and_then(|c| c.get("command_type"));
        let (status, preview) = match results.get(i) {
            Some(reply) => {
                let status = reply.get("status").and_then(Value::as_str);
                let preview = match status {
                    Some("success") => {
                        one_line_preview(reply.get("result").unwrap_or(&Value::Null), PREVIEW_CHARS)
                    }
                    Some("error") => reply_error(Some(reply))
                        .map(|m| one_line_preview(&Value::String(m), PREVIEW_CHARS))
                        .unwrap_or_else(|| MISSING.to_string()),
                    _ => one_line_preview(reply, PREVIEW_CHARS),
                };
                (display(reply.get("status")), preview)
            }
            None if finished => ("not run".to_string(), MISSING.to_string()),
            None => (MISSING.to_string(), MISSING.to_string()),
        };
        table.push_row([(i + 1).to_string(), display(command), status, preview]);
    }
    table.render()
}

/// The `jobs list` table from a `list_jobs` result; `now` is Unix seconds.
pub fn format_jobs_list(jobs: &Value, now: f64) -> String {
    let Some(jobs) = jobs.as_array() else {
        return format!("{}\n", display(Some(jobs)));
    };
    if jobs.is_empty() {
        return "no jobs\n".to_string();
    }
    let mut table = Table::new([
        "JOB", "SESSION", "TYPE", "STATUS", "PROGRESS", "AGE", "DURATION",
    ]);
    for job in jobs {
        table.push_row([
            display(job.get("id")),
            display(job.get("session_id")),
            display(job.get("type")),
            display(job.get("status")),
            JobProgress::from_job(job)
                .counts()
                .unwrap_or_else(|| MISSING.to_string()),
            number(job.get("created_at"))
                .map_or_else(|| MISSING.to_string(), |t| human_duration(now - t)),
            run_seconds(job, now).map_or_else(|| MISSING.to_string(), human_duration),
        ]);
    }
    table.render()
}

/// The `jobs show` layout from a `get_job` record, plus a batch's `results` from
/// `get_job_result`; `now` is Unix seconds. The result is cut at [`SHOW_RESULT_LINES`] lines.
pub fn format_job(job: &Value, results: Option<&Value>, now: f64) -> String {
    let status = status_of(job);
    let mut pairs = vec![
        ("job".to_string(), display(job.get("id"))),
        ("status".to_string(), display(job.get("status"))),
        ("type".to_string(), display(job.get("type"))),
        ("session".to_string(), display(job.get("session_id"))),
        ("created".to_string(), when(job.get("created_at"), now)),
        ("started".to_string(), when(job.get("started_at"), now)),
        ("finished".to_string(), when(job.get("finished_at"), now)),
    ];
    if status == "pending" {
        pairs.push(("position".to_string(), display(job.get("position"))));
    }
    pairs.push(("progress".to_string(), progress_summary(job)));
    if is_batch(job) {
        pairs.push((
            "commands".to_string(),
            batch_commands(job).len().to_string(),
        ));
    } else {
        match job.get("params") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) if map.is_empty() => {}
            Some(params) => pairs.push((
                "params".to_string(),
                one_line_preview(params, SHOW_PARAMS_CHARS),
            )),
        }
    }
    let error = error_summary(job.get("error")).or_else(|| reply_error(job.get("result")));
    if let Some(error) = error {
        pairs.push(("error".to_string(), error));
    }
    match job.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) if map.is_empty() => {}
        Some(metadata) => pairs.push(("metadata".to_string(), display(Some(metadata)))),
    }
    let mut out = key_values(&pairs, "");

    let job_id = display(job.get("id"));
    let results = results
        .or_else(|| job.get("result").filter(|r| r.is_array()))
        .and_then(Value::as_array);
    if let Some(results) = results {
        out.push_str("\nresults\n");
        for line in format_batch_results(results, batch_commands(job), is_finished(status)).lines()
        {
            out.push_str(&format!("  {line}\n"));
        }
    } else if let Some(body) = job.get("result").and_then(reply_body) {
        out.push_str("\nresult\n");
        out.push_str(&indented_excerpt(&body, SHOW_RESULT_LINES, &job_id));
    }
    out
}

/// `text` indented by two spaces, at most `max_lines` lines of it, then a note of what was left out.
fn indented_excerpt(text: &str, max_lines: usize, job_id: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    if lines.is_empty() {
        return "  (no output)\n".to_string();
    }
    let mut out = String::new();
    for line in lines.iter().take(max_lines) {
        let line = format!("  {line}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if lines.len() > max_lines {
        out.push_str(&format!(
            "  … {} more lines; `jobs show {job_id} --json` prints the whole result\n",
            lines.len() - max_lines
        ));
    }
    out
}

/// What `jobs wait` prints and how it exits, decided from the final `get_job_result`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitReport {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: u8,
}

/// The outcome of `jobs wait` from the final `get_job_result` and the job's record (for a batch's
/// command types). The result goes to stdout as [`reply_body`] renders it (whole: it is the
/// command's output) or, for a batch, one line per command; a failure or a cancellation is an
/// `error:` line on stderr and exit 1.
pub fn format_wait_result(result: &Value, job: &Value, job_id: &str) -> WaitReport {
    let status = status_of(result);
    let mut stdout = match result.get("results").and_then(Value::as_array) {
        Some(results) => format_batch_results(results, batch_commands(job), true),
        None => result
            .get("result")
            .and_then(reply_body)
            .unwrap_or_default(),
    };
    if !stdout.is_empty() && !stdout.ends_with('\n') {
        stdout.push('\n');
    }
    let (stderr, exit_code) = match status {
        "completed" => (String::new(), 0),
        "failed" => {
            let reason = error_summary(result.get("error"))
                .or_else(|| reply_error(result.get("result")))
                .unwrap_or_else(|| "no reason given".to_string());
            (format!("error: job {job_id} failed: {reason}\n"), 1)
        }
        "cancelled" => (format!("error: job {job_id} was cancelled\n"), 1),
        other => (format!("error: job {job_id} ended {other}\n"), 1),
    };
    WaitReport {
        stdout,
        stderr,
        exit_code,
    }
}

/// What `jobs cancel` prints for a `cancel_job` reply (the record plus `cancel`: `removed`,
/// `discarded` or `finished`).
pub fn format_cancel(reply: &Value, job_id: &str) -> String {
    let id = reply.get("id").and_then(Value::as_str).unwrap_or(job_id);
    let status = status_of(reply);
    match reply.get("cancel").and_then(Value::as_str) {
        Some("removed") => {
            format!("cancelled {id}: removed from the queue, never sent to Blender\n")
        }
        Some("discarded") => {
            format!("cancelled {id}: Blender is still running it; its result will be discarded\n")
        }
        Some("finished") => format!("{id} already {status}: nothing to cancel\n"),
        _ if status == "cancelled" => format!("cancelled {id}\n"),
        _ => format!("{id} is {status}\n"),
    }
}
