//! Seed 000's queue routes, in the seed's shapes: `POST /mcp` submits a task,
//! `GET /mcp/task/{id}` reads one, `POST /mcp/status` reads the queue. A task is a
//! job; times are ISO 8601 strings (UTC, `+00:00`) on these three routes only.
//!
//! Words: statuses are the seed's — `pending`, `processing`, `completed`,
//! `failed` — and a cancelled job reads `failed` (its `error.kind` is `cancelled`,
//! and `job_status` keeps the manager's own word), so a seed client polling until
//! `completed` or `failed` always stops. An async submission answers
//! `"status": "queued"`, the seed's word for pending. A job running `execute_code`
//! has `type` `execute` (what `POST /mcp` calls it); others keep their command type,
//! batches are `batch`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{joined, json_response, ApiError, Id, JsonBody, Shared};
use crate::api::methods;
use crate::api::params::Params;
use crate::error::ManagerError;
use crate::jobs::job::Progress;
use crate::jobs::{Job, JobStatus};
use crate::raw_json::RawJson;
use crate::session::handle::SessionOwner;
use crate::session::DisconnectReason;

/// A Unix time as ISO 8601 (`2026-01-06T10:15:30.123+00:00`).
pub fn iso(t: f64) -> String {
    chrono::DateTime::from_timestamp_micros((t * 1e6).round() as i64)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, false))
        .unwrap_or_default()
}

/// The seed's status word.
fn seed_status(status: &str) -> &str {
    match status {
        "cancelled" => "failed",
        other => other,
    }
}

/// The seed's task type.
fn seed_type(job_type: &str) -> &str {
    match job_type {
        "execute_code" => "execute",
        other => other,
    }
}

/// `GET /mcp/task/{id}`'s shape.
#[derive(Serialize)]
struct Task<'a> {
    id: &'a str,
    status: &'a str,
    #[serde(rename = "type")]
    task_type: &'a str,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    result: Option<crate::jobs::job::Envelope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<Vec<RawJson>>,
    error: Option<Value>,
    progress: Progress,
    position: Option<usize>,
    session_id: &'a str,
    metadata: Value,
    job_status: JobStatus,
}

fn task_body(manager: &Shared, job: &Job) -> Result<Vec<u8>, ManagerError> {
    let rec = manager.jobs().record(job);
    let results = job.result_view().results;
    let task = Task {
        id: &rec.id,
        status: seed_status(rec.status.as_str()),
        task_type: seed_type(&rec.job_type),
        created_at: iso(rec.created_at),
        started_at: rec.started_at.map(iso),
        finished_at: rec.finished_at.map(iso),
        result: rec.result.clone(),
        results,
        error: rec.error.clone(),
        progress: rec.progress.clone(),
        position: rec.position,
        session_id: &rec.session_id,
        metadata: rec.metadata.clone(),
        job_status: rec.status,
    };
    serde_json::to_vec(&task)
        .map_err(|e| ManagerError::Internal(format!("task could not be serialised: {e}")))
}

fn respond(r: Result<Vec<u8>, ManagerError>) -> Response {
    match r {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /mcp` `{"command", "type"?, "async"?, "metadata"?}`.
pub(super) async fn submit(State(m): State<Shared>, body: JsonBody) -> Response {
    let Some(body) = body.0 else {
        return ApiError::from(ManagerError::InvalidRequest(
            "expected a JSON object body: {\"command\", \"type\", \"async\", \"metadata\"}".into(),
        ))
        .into_response();
    };
    let task = tokio::spawn(submit_task(m, body));
    respond(joined("POST /mcp", task.await))
}

/// Reads the request, finds or creates the session, submits the job, and answers
/// at once (`async`) or once it finished or `--sync-wait` passed.
async fn submit_task(m: Shared, body: Map<String, Value>) -> Result<Vec<u8>, ManagerError> {
    let raw = serde_json::value::to_raw_value(&Value::Object(body))
        .map_err(|e| ManagerError::Internal(e.to_string()))?;
    let mut p = Params::from_raw(Some(&raw))?;
    let command = p.opt_value("command");
    let kind = p.opt_string("type")?.unwrap_or_else(|| "execute".into());
    let is_async = match p.opt_value("async") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(ManagerError::invalid_params(
                "async",
                "expected true or false",
            ))
        }
    };
    let mut metadata = p.opt_object("metadata")?.unwrap_or_default();
    p.finish()?;
    let session_id = match metadata.remove("session_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            return Err(ManagerError::invalid_params(
                "metadata.session_id",
                "expected a string",
            ))
        }
    };

    let mut params = Map::new();
    let method = match kind.as_str() {
        "execute" => {
            let Some(Value::String(code)) = command else {
                return Err(ManagerError::invalid_params(
                    "command",
                    "expected the Python code to run, as a string",
                ));
            };
            params.insert("command_type".into(), "execute_code".into());
            params.insert("params".into(), json!({ "code": code }));
            "submit_job"
        }
        "batch" => {
            let Some(Value::Array(items)) = metadata.remove("commands") else {
                return Err(ManagerError::invalid_params(
                    "metadata.commands",
                    "expected a list of Python code strings or {\"command_type\", \"params\"} objects",
                ));
            };
            let commands = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(code) => Ok(json!({
                        "command_type": "execute_code",
                        "params": {"code": code},
                    })),
                    obj @ Value::Object(_) => Ok(obj),
                    _ => Err(ManagerError::invalid_params(
                        format!("metadata.commands[{i}]"),
                        "expected Python code (a string) or {\"command_type\", \"params\"}",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            params.insert("commands".into(), Value::Array(commands));
            if let Some(stop) = metadata.remove("stop_on_error") {
                params.insert("stop_on_error".into(), stop);
            }
            if let Some(c) = command {
                metadata.insert("command".into(), c);
            }
            "submit_batch"
        }
        "" => {
            return Err(ManagerError::invalid_params(
                "type",
                "expected execute, batch or a command type",
            ))
        }
        command_type => {
            params.insert("command_type".into(), command_type.into());
            if let Some(p) = metadata.remove("params") {
                params.insert("params".into(), p);
            }
            if let Some(c) = command {
                metadata.insert("command".into(), c);
            }
            "submit_job"
        }
    };
    if !metadata.is_empty() {
        params.insert("metadata".into(), Value::Object(metadata));
    }

    let (session_id, created) = match session_id {
        Some(id) => (id, false),
        None => {
            let meta = json!({"created_by": "POST /mcp"});
            let h = m.create_session(SessionOwner::Rpc, meta).await?;
            (h.id().to_string(), true)
        }
    };
    params.insert("session_id".into(), Value::String(session_id.clone()));
    let raw = serde_json::value::to_raw_value(&Value::Object(params))
        .map_err(|e| ManagerError::Internal(e.to_string()))?;
    let submitted = match methods::call(&m, method, Some(&raw)).await {
        Ok(body) => body,
        Err(e) => {
            if created {
                let _ = m
                    .close_session(&session_id, DisconnectReason::ClosedByCaller)
                    .await;
            }
            return Err(e);
        }
    };
    let job_id = serde_json::from_slice::<Value>(&submitted)
        .ok()
        .and_then(|v| v["job_id"].as_str().map(str::to_string))
        .ok_or_else(|| ManagerError::Internal("submission answered no job id".into()))?;
    if is_async {
        return Ok(
            json!({"task_id": job_id, "status": "queued", "session_id": session_id})
                .to_string()
                .into_bytes(),
        );
    }
    m.job_result(&job_id, Some(m.config().sync_wait)).await?;
    let job = m.jobs().get(&job_id)?;
    task_body(&m, &job)
}

/// `GET /mcp/task/{id}`.
pub(super) async fn task(State(m): State<Shared>, Id(id): Id) -> Response {
    respond(m.jobs().get(&id).and_then(|job| task_body(&m, &job)))
}

/// `POST /mcp/status`: the queue in the seed's shape plus `capacity` and `cancelled`
/// (counted in `failed` too, as their tasks read `failed`).
pub(super) async fn status(State(m): State<Shared>) -> Response {
    let mut q = m.jobs().queue_status();
    let cancelled = q["cancelled"].as_u64().unwrap_or(0);
    let failed = q["failed"].as_u64().unwrap_or(0);
    q["failed"] = Value::from(failed + cancelled);
    if let Some(tasks) = q["tasks"].as_object_mut() {
        for t in tasks.values_mut() {
            let status = seed_status(t["status"].as_str().unwrap_or("")).to_string();
            let task_type = seed_type(t["type"].as_str().unwrap_or("")).to_string();
            let created = t["created_at"].as_f64().map(iso);
            t["status"] = Value::String(status);
            t["type"] = Value::String(task_type);
            t["created_at"] = created.map_or(Value::Null, Value::String);
        }
    }
    json_response(StatusCode::OK, q.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_8601_utc() {
        assert_eq!(iso(0.0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(iso(1704528000.123), "2024-01-06T08:00:00.123+00:00");
    }

    #[test]
    fn words_follow_the_seed() {
        assert_eq!(seed_status("cancelled"), "failed");
        assert_eq!(seed_status("pending"), "pending");
        assert_eq!(seed_type("execute_code"), "execute");
        assert_eq!(seed_type("batch"), "batch");
    }
}
