//! Turning manager replies into text for people.
//!
//! Every function here is pure: it takes the JSON the manager returned (plus "now" where an age is
//! shown) and returns the text to print, so the layouts can be tested without a terminal or a
//! manager. The formatters are deliberately tolerant: a key the manager does not send (an older or
//! newer manager, or a field that is null) shows as `-` instead of failing, because a status screen
//! that refuses to render is worse than one with a gap.
//!
//! Conventions: ages and uptimes use [`human_duration`] (`12s`, `3m04s`, `1h02m`, `2d03h`); command
//! durations are milliseconds; times of day are local `HH:MM:SS`; previews are one line, at most
//! [`PREVIEW_CHARS`] characters, ending in `…` when cut.

use serde_json::Value;

use super::table::Table;

/// Width of the RESULT preview in the history table.
pub const PREVIEW_CHARS: usize = 60;

/// Width of the "last result" preview in `sessions show`.
const SHOW_PREVIEW_CHARS: usize = 100;

/// Placeholder for a value the manager did not send.
const MISSING: &str = "-";

/// What `call` prints and how it exits, decided from a `send_command` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallReport {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: u8,
}

/// An age or uptime for people: `12s`, `3m04s`, `1h02m`, `2d03h`. Negative or non-finite inputs
/// (clock skew, missing data) count as zero.
pub fn human_duration(seconds: f64) -> String {
    let total = if seconds.is_finite() && seconds > 0.0 {
        seconds.floor() as u64
    } else {
        0
    };
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total % 86_400 / 3_600,
        total % 3_600 / 60,
        total % 60,
    );
    if total < 60 {
        format!("{secs}s")
    } else if total < 3_600 {
        format!("{minutes}m{secs:02}s")
    } else if total < 86_400 {
        format!("{hours}h{minutes:02}m")
    } else {
        format!("{days}d{hours:02}h")
    }
}

/// A command duration given in seconds, shown in milliseconds: `0.4ms`, `12ms`, `1520ms`.
pub fn format_millis(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    if !ms.is_finite() || ms < 0.0 {
        MISSING.to_string()
    } else if ms < 10.0 {
        let text = format!("{ms:.1}");
        format!("{}ms", text.strip_suffix(".0").unwrap_or(&text))
    } else {
        format!("{}ms", ms.round() as u64)
    }
}

/// A Unix timestamp (float seconds) as local `HH:MM:SS`.
pub fn local_clock(timestamp: f64) -> String {
    local_time(timestamp, "%H:%M:%S")
}

/// A Unix timestamp (float seconds) as local `YYYY-MM-DD HH:MM:SS`.
pub fn local_datetime(timestamp: f64) -> String {
    local_time(timestamp, "%Y-%m-%d %H:%M:%S")
}

fn local_time(timestamp: f64, pattern: &str) -> String {
    if !timestamp.is_finite() {
        return MISSING.to_string();
    }
    let secs = timestamp.floor();
    let nanos = ((timestamp - secs) * 1e9) as u32;
    match chrono::DateTime::from_timestamp(secs as i64, nanos.min(999_999_999)) {
        Some(utc) => utc
            .with_timezone(&chrono::Local)
            .format(pattern)
            .to_string(),
        None => MISSING.to_string(),
    }
}

/// Cuts `text` to at most `max_chars` characters, ending in `…` when anything was cut.
pub fn truncate_chars(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let keep = max_chars.saturating_sub(1);
    let mut out: String = text.chars().take(keep).collect();
    out.push('…');
    out
}

/// One line of text standing for a command result: the printed output of an `execute_code` result,
/// a string as itself, anything else as compact JSON; newlines shown as `\n`, then truncated.
pub fn one_line_preview(value: &Value, max_chars: usize) -> String {
    let text = match printed_output(value) {
        Some(text) => text.to_string(),
        None => match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        },
    };
    let flat: String = text
        .trim_end()
        .chars()
        .filter(|c| *c != '\r')
        .map(|c| if c == '\t' { ' ' } else { c })
        .collect::<String>()
        .replace('\n', "\\n");
    truncate_chars(&flat, max_chars)
}

/// The captured stdout of an `execute_code` result (`{"executed": true, "result": "<stdout>"}`).
pub fn printed_output(result: &Value) -> Option<&str> {
    let object = result.as_object()?;
    if !object.contains_key("executed") {
        return None;
    }
    object.get("result")?.as_str()
}

/// A value for a table cell or key/value line: strings bare, null or absent as `-`, the rest as
/// compact JSON.
pub fn display(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => MISSING.to_string(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

fn yes_no(value: Option<&Value>) -> String {
    match value {
        Some(Value::Bool(true)) => "yes".to_string(),
        Some(Value::Bool(false)) => "no".to_string(),
        other => display(other),
    }
}

fn number(value: Option<&Value>) -> Option<f64> {
    value.and_then(Value::as_f64)
}

/// `key  value` lines with the keys aligned.
pub(super) fn key_values(pairs: &[(String, String)], indent: &str) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let pad = width - key.chars().count();
        let line = format!("{indent}{key}{}  {value}", " ".repeat(pad));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Name → value lines for a JSON object (listeners, counts); anything else on one line.
fn nested_key_values(value: Option<&Value>) -> String {
    match value {
        Some(Value::Object(map)) if !map.is_empty() => {
            let pairs: Vec<(String, String)> = map
                .iter()
                .map(|(k, v)| (k.clone(), display(Some(v))))
                .collect();
            key_values(&pairs, "  ")
        }
        Some(Value::Object(_)) => "  none\n".to_string(),
        other => format!("  {}\n", display(other)),
    }
}

/// The `status` screen from a `get_manager_status` result.
pub fn format_status(status: &Value, manager_address: &str) -> String {
    let mut pairs = vec![
        ("manager".to_string(), manager_address.to_string()),
        ("version".to_string(), display(status.get("version"))),
        (
            "uptime".to_string(),
            match status.get("uptime") {
                Some(Value::Number(n)) => human_duration(n.as_f64().unwrap_or(0.0)),
                other => display(other),
            },
        ),
    ];
    for flag in ["draining", "paused"] {
        if let Some(value) = status.get(flag) {
            pairs.push((flag.to_string(), yes_no(Some(value))));
        }
    }
    let mut out = key_values(&pairs, "");

    out.push_str("\nlisteners\n");
    out.push_str(&nested_key_values(status.get("listeners")));
    out.push_str("\ncounts\n");
    out.push_str(&nested_key_values(status.get("counts")));

    out.push_str("\nbackends\n");
    match status.get("backends").and_then(Value::as_array) {
        Some(backends) if !backends.is_empty() => {
            let mut table = Table::new([
                "NAME",
                "ADDRESS",
                "STATE",
                "WEIGHT",
                "SESSIONS",
                "LATENCY",
                "LAST ERROR",
            ]);
            for backend in backends {
                let latency = match number(backend.get("latency_ms")) {
                    Some(ms) if ms < 10.0 => format!("{ms:.1}ms"),
                    Some(ms) => format!("{}ms", ms.round() as i64),
                    None => MISSING.to_string(),
                };
                let last_error = backend
                    .get("last_error")
                    .map(|e| one_line_preview(e, PREVIEW_CHARS));
                table.push_row([
                    display(backend.get("name")),
                    display(backend.get("address")),
                    match backend.get("paused") {
                        Some(Value::Bool(true)) => {
                            format!("{} (paused)", display(backend.get("state")))
                        }
                        _ => display(backend.get("state")),
                    },
                    display(backend.get("weight")),
                    display(backend.get("sessions")),
                    latency,
                    match last_error {
                        Some(text) if text != "null" => text,
                        _ => MISSING.to_string(),
                    },
                ]);
            }
            out.push_str(&table.render());
        }
        _ => out.push_str("  none\n"),
    }
    out
}

/// `host:port` of a session's Blender backend, from `blender.host` / `blender.port` (or `backend`).
fn backend_address(info: &Value) -> String {
    let blender = info.get("blender");
    let host = blender.and_then(|b| b.get("host"));
    let port = blender.and_then(|b| b.get("port"));
    match (host, port) {
        (Some(h), Some(p)) if !h.is_null() && !p.is_null() => {
            format!("{}:{}", display(Some(h)), display(Some(p)))
        }
        _ => match info.get("backend") {
            Some(Value::Object(backend)) => display(backend.get("address")),
            other => display(other),
        },
    }
}

/// Seconds since the session's last activity: from `last_activity` and `now`, else `idle_seconds`.
fn idle_seconds(info: &Value, now: f64) -> Option<f64> {
    match number(info.get("last_activity")) {
        Some(last) => Some(now - last),
        None => number(info.get("idle_seconds")),
    }
}

/// The `sessions list` table from a `list_sessions` result; `now` is Unix seconds.
pub fn format_sessions_list(sessions: &Value, now: f64) -> String {
    let Some(sessions) = sessions.as_array() else {
        return format!("{}\n", display(Some(sessions)));
    };
    if sessions.is_empty() {
        return "no open sessions\n".to_string();
    }
    let mut table = Table::new([
        "SESSION",
        "BACKEND",
        "CONNECTED",
        "COMMANDS",
        "IDLE",
        "LAST COMMAND",
    ]);
    for info in sessions {
        table.push_row([
            display(info.get("session_id")),
            backend_address(info),
            yes_no(info.get("blender").and_then(|b| b.get("connected"))),
            display(info.get("command_count")),
            idle_seconds(info, now).map_or_else(|| MISSING.to_string(), human_duration),
            display(info.get("state").and_then(|s| s.get("last_command"))),
        ]);
    }
    table.render()
}

/// A timestamp as local date and time plus its age: `2026-01-06 10:15:30 (3m04s ago)`.
pub(super) fn when(value: Option<&Value>, now: f64) -> String {
    match number(value) {
        Some(ts) => format!("{} ({} ago)", local_datetime(ts), human_duration(now - ts)),
        None => display(value),
    }
}

/// The `sessions show` layout from a `get_session_info` result; `now` is Unix seconds.
pub fn format_session_info(info: &Value, now: f64) -> String {
    let blender = info.get("blender");
    let state = info.get("state");
    let connection = match blender.and_then(|b| b.get("connected")) {
        Some(Value::Bool(true)) => "connected",
        Some(Value::Bool(false)) => "not connected",
        _ => "connection unknown",
    };

    let mut pairs = vec![
        ("session".to_string(), display(info.get("session_id"))),
        ("created".to_string(), when(info.get("created_at"), now)),
        (
            "last activity".to_string(),
            when(info.get("last_activity"), now),
        ),
        (
            "blender".to_string(),
            format!("{} ({connection})", backend_address(info)),
        ),
        (
            "last heartbeat".to_string(),
            when(blender.and_then(|b| b.get("last_heartbeat")), now),
        ),
        (
            "last error".to_string(),
            display(blender.and_then(|b| b.get("last_error"))),
        ),
        ("commands".to_string(), display(info.get("command_count"))),
    ];
    if let Some(queued) = info.get("queued") {
        pairs.push(("queued".to_string(), display(Some(queued))));
    }
    if let Some(backend) = info.get("backend").filter(|b| !b.is_null()) {
        pairs.push(("backend".to_string(), display(Some(backend))));
    }
    match info.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) if map.is_empty() => {}
        Some(metadata) => pairs.push(("metadata".to_string(), display(Some(metadata)))),
    }
    pairs.push((
        "last command".to_string(),
        display(state.and_then(|s| s.get("last_command"))),
    ));
    pairs.push((
        "last result".to_string(),
        match state.and_then(|s| s.get("last_result")) {
            None | Some(Value::Null) => MISSING.to_string(),
            Some(result) => one_line_preview(result, SHOW_PREVIEW_CHARS),
        },
    ));
    pairs.push((
        "selection".to_string(),
        display(state.and_then(|s| s.get("selection"))),
    ));
    if let Some(Value::Array(selected)) = state.and_then(|s| s.get("selected")) {
        let names: Vec<String> = selected.iter().map(|v| display(Some(v))).collect();
        pairs.push((
            "selected".to_string(),
            if names.is_empty() {
                MISSING.to_string()
            } else {
                names.join(", ")
            },
        ));
    }

    let mut out = key_values(&pairs, "");
    match state.and_then(|s| s.get("objects")) {
        Some(Value::Array(objects)) => {
            out.push_str(&format!("\nobjects ({})\n", objects.len()));
            for object in objects {
                out.push_str(&format!("  {}\n", display(Some(object))));
            }
        }
        other => out.push_str(&format!("\nobjects  {}\n", display(other))),
    }
    out
}

/// The `sessions history` table from a `get_session_history` result.
pub fn format_history(entries: &Value) -> String {
    let Some(entries) = entries.as_array() else {
        return format!("{}\n", display(Some(entries)));
    };
    if entries.is_empty() {
        return "no history\n".to_string();
    }
    let mut table = Table::new(["SEQ", "TIME", "COMMAND", "STATUS", "DURATION", "RESULT"]);
    for entry in entries {
        let status = entry.get("status").and_then(Value::as_str);
        let result = if status == Some("success") {
            match entry.get("result") {
                None => MISSING.to_string(),
                Some(result) => one_line_preview(result, PREVIEW_CHARS),
            }
        } else {
            error_text(entry.get("error"))
                .map(|message| one_line_preview(&Value::String(message), PREVIEW_CHARS))
                .unwrap_or_else(|| MISSING.to_string())
        };
        table.push_row([
            display(entry.get("seq")),
            number(entry.get("timestamp")).map_or_else(|| MISSING.to_string(), local_clock),
            display(entry.get("command")),
            display(entry.get("status")),
            number(entry.get("duration")).map_or_else(|| MISSING.to_string(), format_millis),
            result,
        ]);
    }
    table.render()
}

/// The message of a history entry's `error` (`{"kind", "message"}`), or its kind, or the text.
pub(super) fn error_text(error: Option<&Value>) -> Option<String> {
    match error? {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        Value::Object(map) => map
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| map.get("kind").and_then(Value::as_str))
            .map(str::to_string),
        other => Some(other.to_string()),
    }
}

/// What `call` prints for a `send_command` result.
///
/// `success`: the result — an `execute_code` result's printed output as-is, a string as-is, other
/// values as pretty JSON — on stdout, exit 0. `error`: Blender's message on stderr, exit 1.
/// `pending`: the job id on stdout and a note that the command keeps running, exit 0. Anything
/// else: the whole reply as pretty JSON.
pub fn format_call_result(reply: &Value, command_type: &str) -> CallReport {
    let mut report = CallReport {
        stdout: String::new(),
        stderr: String::new(),
        exit_code: 0,
    };
    match reply.get("status").and_then(Value::as_str) {
        Some("success") => {
            let result = reply.get("result").unwrap_or(&Value::Null);
            let text = match (printed_output(result), result) {
                (Some(printed), _) => printed.to_string(),
                (None, Value::String(text)) => text.clone(),
                (None, other) => pretty(other),
            };
            report.stdout = text;
        }
        Some("error") => {
            let message = reply
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| error_text(reply.get("error")))
                .unwrap_or_else(|| "(no message)".to_string());
            report.stderr =
                format!("error: Blender reported an error for {command_type}: {message}");
            report.exit_code = 1;
        }
        Some("pending") => {
            let job = display(reply.get("job_id"));
            report.stdout = format!(
                "pending: job {job}\n{command_type} keeps running in the manager; nothing is lost. \
                 Follow it with `jobs wait {job}`."
            );
        }
        Some("cancelled") => {
            let job = display(reply.get("job_id"));
            report.stderr = format!("error: job {job} ({command_type}) was cancelled");
            report.exit_code = 1;
        }
        _ => report.stdout = pretty(reply),
    }
    for text in [&mut report.stdout, &mut report.stderr] {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
    }
    report
}

/// Pretty JSON, as `--json` prints it.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("a JSON value always serialises")
}
