//! Pure functions from the manager's JSON-RPC results to MCP tool results.
//!
//! Nothing here does I/O, so every mapping is pinned by unit tests. The rules:
//!
//! - A Blender `success` reply becomes text: the captured stdout for `execute_code`, a short
//!   caption plus an image block for anything carrying an inline `image` (the viewport
//!   screenshot), pretty JSON for the rest.
//! - A Blender `error` reply, a failed job and any error the manager answers with become a
//!   result with `isError: true` whose text is the message (and the traceback when Blender sent
//!   one), so the model reads what went wrong instead of the client showing a protocol failure.
//! - A reply that names a session starts with a `session_id: …` line, and a reply that names a
//!   job with a `job_id: …` line, so a model can copy them into its next call.
//! - A command still running when the manager stopped waiting (`pending`) is not an error: the
//!   text names the job and says to fetch it with `get_job_result`.
//! - Strings in JSON shown to the model are cut at [`MAX_STRING_CHARS`] so a stray base64 blob in
//!   a job record or history entry cannot flood the model's context.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Map, Value};

use crate::cli::ClientError;

/// Longest string kept whole when JSON is shown as text; longer ones are cut with a note.
pub const MAX_STRING_CHARS: usize = 4000;

/// `handle_tool_call`'s `{"session_id", "result": {"status", …}}` as an MCP result.
pub fn tool_call_result(reply: &Value) -> CallToolResult {
    let session = reply.get("session_id").and_then(Value::as_str);
    let header = session.map(|s| format!("session_id: {s}"));
    command_result(header, reply.get("result").unwrap_or(&Value::Null))
}

/// `send_command`'s result shape (`status` success / error / pending / cancelled) under `header`.
pub fn command_result(header: Option<String>, result: &Value) -> CallToolResult {
    let status = result.get("status").and_then(Value::as_str).unwrap_or("");
    let job_id = result.get("job_id").and_then(Value::as_str);
    match status {
        "success" => success(header, result.get("result").unwrap_or(&Value::Null)),
        "error" => failure(header, &blender_error_text(result)),
        "pending" => {
            let job_id = job_id.unwrap_or("?");
            let text = format!(
                "job_id: {job_id}\nThe command is still running: the manager stopped waiting for \
                 it, but nothing is lost. Call get_job_result with job_id \"{job_id}\" to wait \
                 for its result (get_job shows its progress, cancel_job stops it)."
            );
            CallToolResult::success(vec![ContentBlock::text(join(header, &text))])
        }
        "cancelled" => {
            let why = result
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("cancelled");
            let text = format!(
                "job_id: {}\nThe command was cancelled: {why}",
                job_id.unwrap_or("?")
            );
            failure(header, &text)
        }
        _ => failure(
            header,
            &format!("Unexpected reply from the manager: {}", show_json(result)),
        ),
    }
}

/// A Blender `success` payload: stdout, an image, or JSON.
pub fn success(header: Option<String>, payload: &Value) -> CallToolResult {
    let mut blocks = payload_blocks(header, payload);
    if blocks.is_empty() {
        blocks.push(ContentBlock::text("(no result)"));
    }
    CallToolResult::success(blocks)
}

/// An error result whose text is `header` then `message`.
pub fn failure(header: Option<String>, message: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(join(header, message))])
}

/// A manager or connection error as a tool error: `<message> (<kind>, code <code>)`.
pub fn client_error(err: &ClientError) -> CallToolResult {
    let mut text = err.to_string();
    if matches!(err, ClientError::Disconnected { .. }) {
        text.push_str(
            "\nThe next call reconnects. The request may or may not have reached the manager: \
             check get_session_history or list_jobs before repeating something that changes \
             the scene.",
        );
    }
    CallToolResult::error(vec![ContentBlock::text(text)])
}

/// `get_job_result`'s `{"job_id", "status", "result", "error", "results"}` as an MCP result.
pub fn job_result(reply: &Value) -> CallToolResult {
    let job_id = reply.get("job_id").and_then(Value::as_str).unwrap_or("?");
    let status = reply.get("status").and_then(Value::as_str).unwrap_or("?");
    let header = format!("job_id: {job_id}\nstatus: {status}");
    if let Some(Value::Array(results)) = reply.get("results") {
        return batch_result(header, status, results, reply.get("error"));
    }
    match status {
        "completed" => {
            let envelope = reply.get("result").unwrap_or(&Value::Null);
            success(Some(header), envelope.get("result").unwrap_or(&Value::Null))
        }
        "failed" => {
            let text = match reply.get("result").filter(|r| !r.is_null()) {
                Some(envelope) => blender_error_text(envelope),
                None => error_value_text(reply.get("error")),
            };
            failure(Some(header), &text)
        }
        "cancelled" => {
            let text = format!(
                "The job was cancelled: {}",
                error_value_text(reply.get("error"))
            );
            CallToolResult::success(vec![ContentBlock::text(join(Some(header), &text))])
        }
        _ => {
            let text = format!(
                "The job has not finished yet. Call get_job_result with job_id \"{job_id}\" again \
                 to keep waiting, or get_job to see its progress and queue position."
            );
            CallToolResult::success(vec![ContentBlock::text(join(Some(header), &text))])
        }
    }
}

/// A batch job: one section per command that ran.
fn batch_result(
    header: String,
    status: &str,
    results: &[Value],
    error: Option<&Value>,
) -> CallToolResult {
    let mut blocks = vec![ContentBlock::text(header)];
    for (i, envelope) in results.iter().enumerate() {
        let n = i + 1;
        match envelope.get("status").and_then(Value::as_str) {
            Some("success") => blocks.extend(payload_blocks(
                Some(format!("command {n}: success")),
                envelope.get("result").unwrap_or(&Value::Null),
            )),
            _ => blocks.push(ContentBlock::text(format!(
                "command {n}: error\n{}",
                blender_error_text(envelope)
            ))),
        }
    }
    match status {
        "completed" => CallToolResult::success(blocks),
        "failed" | "cancelled" => {
            blocks.push(ContentBlock::text(error_value_text(error)));
            if status == "failed" {
                CallToolResult::error(blocks)
            } else {
                CallToolResult::success(blocks)
            }
        }
        _ => {
            blocks.push(ContentBlock::text(
                "The batch has not finished yet: call get_job_result again to keep waiting.",
            ));
            CallToolResult::success(blocks)
        }
    }
}

/// Content blocks for a Blender `success` payload under an optional header line.
fn payload_blocks(header: Option<String>, payload: &Value) -> Vec<ContentBlock> {
    if let Some((data, mime, caption)) = inline_image(payload) {
        return vec![
            ContentBlock::text(join(header, &caption)),
            ContentBlock::image(data, mime),
        ];
    }
    let body = match payload {
        // execute_code: {"executed": true, "result": "<captured stdout>"}
        Value::Object(map) if map.contains_key("executed") => match map.get("result") {
            Some(Value::String(out)) if out.is_empty() => "(no output)".to_string(),
            Some(Value::String(out)) => out.clone(),
            _ => show_json(payload),
        },
        Value::String(s) => s.clone(),
        Value::Null => "(no result)".to_string(),
        other => show_json(other),
    };
    vec![ContentBlock::text(join(header, &body))]
}

/// `(base64, mime type, caption)` when the payload carries an inline image.
fn inline_image(payload: &Value) -> Option<(String, String, String)> {
    let map = payload.as_object()?;
    let data = map.get("image")?.as_str()?;
    let format = map
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or("png")
        .to_ascii_lowercase();
    let mime = match format.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        _ => "image/png",
    };
    let size = match (
        map.get("width").and_then(Value::as_u64),
        map.get("height").and_then(Value::as_u64),
    ) {
        (Some(w), Some(h)) => format!("{w}×{h} px "),
        _ => String::new(),
    };
    let source = match map.get("source").and_then(Value::as_str) {
        Some("render") => ", rendered from the scene camera (headless Blender)",
        Some("viewport") => ", captured from the 3D viewport",
        _ => "",
    };
    let caption = format!("Screenshot: {size}{}{source}", format.to_ascii_uppercase());
    Some((data.to_string(), mime.to_string(), caption))
}

/// `message` and, when Blender sent one, the traceback of an error envelope.
fn blender_error_text(envelope: &Value) -> String {
    let message = envelope
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("Blender reported an error");
    match envelope.get("traceback").and_then(Value::as_str) {
        Some(tb) if !tb.is_empty() => format!("{message}\n\n{}", tb.trim_end()),
        _ => message.to_string(),
    }
}

/// A job's `error` member (`{"kind", "message"}`) as `message (kind)`.
fn error_value_text(error: Option<&Value>) -> String {
    let Some(error) = error.filter(|e| !e.is_null()) else {
        return "no reason given".to_string();
    };
    let message = error.get("message").and_then(Value::as_str);
    let kind = error.get("kind").and_then(Value::as_str);
    match (message, kind) {
        (Some(m), Some(k)) => format!("{m} ({k})"),
        (Some(m), None) => m.to_string(),
        _ => show_json(error),
    }
}

/// One line per job of `list_jobs`: id, status, type, session, progress.
pub fn job_lines(jobs: &Value) -> String {
    let Some(jobs) = jobs.as_array() else {
        return show_json(jobs);
    };
    if jobs.is_empty() {
        return "No jobs.".to_string();
    }
    let mut out = format!("{} job(s), newest first:", jobs.len());
    for job in jobs {
        out.push('\n');
        out.push_str(&job_summary(job));
    }
    out
}

/// `job_id: … status: … type: … session_id: …` plus progress and queue position when known.
pub fn job_summary(job: &Value) -> String {
    let field = |k: &str| job.get(k).and_then(Value::as_str).unwrap_or("?");
    let mut line = format!(
        "job_id: {}  status: {}  type: {}  session_id: {}",
        field("id"),
        field("status"),
        field("type"),
        field("session_id")
    );
    if let Some(progress) = job.get("progress").filter(|p| p.is_object()) {
        let current = progress.get("current").and_then(Value::as_u64);
        let total = progress.get("total").and_then(Value::as_u64);
        if let (Some(c), Some(t)) = (current, total) {
            line.push_str(&format!("  progress: {c}/{t}"));
        }
        if let Some(m) = progress.get("message").and_then(Value::as_str) {
            line.push_str(&format!(" ({m})"));
        }
    }
    if let Some(p) = job.get("position").and_then(Value::as_u64) {
        line.push_str(&format!("  queue position: {p}"));
    }
    line
}

/// A plain text result: `header` then `body`.
pub fn text(header: Option<String>, body: &str) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(join(header, body))])
}

/// Pretty JSON with long strings cut.
pub fn show_json(value: &Value) -> String {
    serde_json::to_string_pretty(&cut_long_strings(value, MAX_STRING_CHARS))
        .unwrap_or_else(|_| value.to_string())
}

/// A copy of `value` whose strings longer than `max` characters end in a note of what was cut.
pub fn cut_long_strings(value: &Value, max: usize) -> Value {
    match value {
        Value::String(s) if s.chars().count() > max => {
            let kept: String = s.chars().take(max).collect();
            let cut = s.chars().count() - max;
            Value::String(format!("{kept}… [{cut} more characters not shown]"))
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| cut_long_strings(v, max)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), cut_long_strings(v, max)))
                .collect::<Map<String, Value>>(),
        ),
        other => other.clone(),
    }
}

fn join(header: Option<String>, body: &str) -> String {
    match header {
        Some(h) => format!("{h}\n{body}"),
        None => body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts(r: &CallToolResult) -> Vec<String> {
        r.content
            .iter()
            .filter_map(|c| match c {
                ContentBlock::Text(t) => Some(t.text.clone()),
                _ => None,
            })
            .collect()
    }

    fn is_error(r: &CallToolResult) -> bool {
        r.is_error == Some(true)
    }

    #[test]
    fn execute_code_output_follows_the_session_line() {
        let reply = json!({"session_id": "scene-1", "result": {"status": "success",
            "result": {"executed": true, "result": "42\n"}, "job_id": "job-1"}});
        let r = tool_call_result(&reply);
        assert!(!is_error(&r));
        assert_eq!(texts(&r), vec!["session_id: scene-1\n42\n"]);
        let reply = json!({"session_id": "scene-1", "result": {"status": "success",
            "result": {"executed": true, "result": ""}}});
        assert_eq!(
            texts(&tool_call_result(&reply)),
            vec!["session_id: scene-1\n(no output)"]
        );
    }

    #[test]
    fn screenshot_becomes_an_image_block_with_a_caption() {
        let reply = json!({"session_id": "scene-2", "result": {"status": "success", "result": {
            "image": "iVBORw0KGgo=", "width": 64, "height": 36, "format": "png", "source": "render"}}});
        let r = tool_call_result(&reply);
        assert!(!is_error(&r));
        assert_eq!(r.content.len(), 2);
        let caption = &texts(&r)[0];
        assert!(caption.starts_with("session_id: scene-2\nScreenshot: 64×36 px PNG"));
        match &r.content[1] {
            ContentBlock::Image(img) => {
                assert_eq!(img.data, "iVBORw0KGgo=");
                assert_eq!(img.mime_type, "image/png");
            }
            other => panic!("expected an image, got {other:?}"),
        }
    }

    #[test]
    fn other_results_are_json() {
        let reply = json!({"session_id": "s", "result": {"status": "success",
            "result": {"objects": [{"name": "Cube"}]}}});
        let t = &texts(&tool_call_result(&reply))[0];
        assert!(t.starts_with("session_id: s\n{"));
        let v: Value = serde_json::from_str(t.split_once('\n').unwrap().1).unwrap();
        assert_eq!(v["objects"][0]["name"], "Cube");
    }

    #[test]
    fn blender_errors_are_tool_errors_with_the_traceback() {
        let reply = json!({"session_id": "s", "result": {"status": "error",
            "message": "Code execution error: boom", "traceback": "Traceback ...\nValueError: boom\n"}});
        let r = tool_call_result(&reply);
        assert!(is_error(&r));
        assert_eq!(
            texts(&r),
            vec!["session_id: s\nCode execution error: boom\n\nTraceback ...\nValueError: boom"]
        );
    }

    #[test]
    fn pending_names_the_job_and_is_not_an_error() {
        let reply = json!({"session_id": "s", "result": {"status": "pending", "job_id": "job-9"}});
        let r = tool_call_result(&reply);
        assert!(!is_error(&r));
        let t = &texts(&r)[0];
        assert!(t.starts_with("session_id: s\njob_id: job-9\n"));
        assert!(t.contains("get_job_result"));
    }

    #[test]
    fn cancelled_commands_are_errors() {
        let reply = json!({"session_id": "s", "result": {"status": "cancelled", "job_id": "j",
            "message": "cancelled by a caller"}});
        let r = tool_call_result(&reply);
        assert!(is_error(&r));
        assert!(texts(&r)[0].contains("cancelled by a caller"));
    }

    #[test]
    fn manager_errors_keep_message_kind_and_code() {
        let err = ClientError::Rpc {
            code: -32001,
            kind: "session_not_found".into(),
            message: "Session not found: scene-x".into(),
            data: json!({"kind": "session_not_found"}),
        };
        let r = client_error(&err);
        assert!(is_error(&r));
        assert_eq!(
            texts(&r),
            vec!["Session not found: scene-x (session_not_found, code -32001)"]
        );
        let err = ClientError::Disconnected {
            address: "127.0.0.1:9880".into(),
            reason: "connection reset".into(),
        };
        assert!(texts(&client_error(&err))[0].contains("The next call reconnects"));
    }

    #[test]
    fn job_results_by_status() {
        let done = json!({"job_id": "j", "status": "completed", "result": {"status": "success",
            "result": {"executed": true, "result": "hi\n"}}, "error": null, "results": null});
        let r = job_result(&done);
        assert!(!is_error(&r));
        assert_eq!(texts(&r), vec!["job_id: j\nstatus: completed\nhi\n"]);

        let failed = json!({"job_id": "j", "status": "failed", "result": {"status": "error",
            "message": "Code execution error: nope"}, "error": {"kind": "blender_error", "message": "x"}});
        let r = job_result(&failed);
        assert!(is_error(&r));
        assert!(texts(&r)[0].ends_with("Code execution error: nope"));

        let lost = json!({"job_id": "j", "status": "failed", "result": null,
            "error": {"kind": "blender_timeout", "message": "Timeout waiting for Blender response"}});
        assert!(texts(&job_result(&lost))[0]
            .ends_with("Timeout waiting for Blender response (blender_timeout)"));

        let running = json!({"job_id": "j", "status": "processing", "result": null});
        let r = job_result(&running);
        assert!(!is_error(&r));
        assert!(texts(&r)[0].contains("has not finished yet"));

        let cancelled = json!({"job_id": "j", "status": "cancelled",
            "error": {"kind": "cancelled", "message": "cancelled by a caller"}});
        let r = job_result(&cancelled);
        assert!(!is_error(&r));
        assert!(texts(&r)[0].contains("cancelled by a caller"));
    }

    #[test]
    fn batch_results_list_each_command() {
        let reply = json!({"job_id": "b", "status": "failed",
            "results": [{"status": "success", "result": {"executed": true, "result": "1\n"}},
                        {"status": "error", "message": "bad"}],
            "error": {"kind": "blender_error", "message": "bad"}});
        let r = job_result(&reply);
        assert!(is_error(&r));
        let t = texts(&r);
        assert_eq!(t[1], "command 1: success\n1\n");
        assert_eq!(t[2], "command 2: error\nbad");
    }

    #[test]
    fn job_lines_summarise_records() {
        let jobs = json!([{"id": "j1", "status": "pending", "type": "execute_code",
            "session_id": "s", "progress": {"current": 0, "total": 1, "message": null}, "position": 2}]);
        assert_eq!(
            job_lines(&jobs),
            "1 job(s), newest first:\njob_id: j1  status: pending  type: execute_code  \
             session_id: s  progress: 0/1  queue position: 2"
        );
        assert_eq!(job_lines(&json!([])), "No jobs.");
    }

    #[test]
    fn long_strings_are_cut_in_json_shown_to_the_model() {
        let v = json!({"a": ["x".repeat(10)], "b": 1});
        let cut = cut_long_strings(&v, 4);
        assert_eq!(cut["a"][0], "xxxx… [6 more characters not shown]");
        assert_eq!(cut["b"], 1);
    }
}
