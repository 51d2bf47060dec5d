//! `/v1` routes: each one is a JSON-RPC method whose named params come from the
//! path (`{id}`), the query string and the JSON body (the body holds the method's
//! other params, under the same names).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::{reply, Arg, Id, JsonBody, QueryArgs, Shared};
use crate::api::http::ApiError;
use crate::error::ManagerError;

/// The body's params plus the path's id under `key`; a body naming another id is refused.
fn with_id(
    mut params: Map<String, Value>,
    key: &str,
    id: String,
) -> Result<Map<String, Value>, ManagerError> {
    match params.remove(key) {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == id => {}
        Some(_) => {
            return Err(ManagerError::invalid_params(
                key,
                "differs from the id in the path",
            ))
        }
    }
    params.insert(key.to_string(), Value::String(id));
    Ok(params)
}

fn id_only(key: &str, id: String) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.to_string(), Value::String(id));
    m
}

async fn run(
    manager: &Shared,
    method: &'static str,
    params: Result<Map<String, Value>, ManagerError>,
    status: StatusCode,
) -> Response {
    match params {
        Ok(p) => reply(manager, method, p, status).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /v1/sessions` `{"metadata"?, "backend"?}` → `create_session` (201).
pub(super) async fn create_session(State(m): State<Shared>, body: JsonBody) -> Response {
    reply(&m, "create_session", body.or_empty(), StatusCode::CREATED).await
}

/// `GET /v1/sessions` → `list_sessions`.
pub(super) async fn list_sessions(State(m): State<Shared>) -> Response {
    reply(&m, "list_sessions", Map::new(), StatusCode::OK).await
}

/// `GET /v1/sessions/{id}` → `get_session_info`.
pub(super) async fn session_info(State(m): State<Shared>, Id(id): Id) -> Response {
    reply(
        &m,
        "get_session_info",
        id_only("session_id", id),
        StatusCode::OK,
    )
    .await
}

/// `DELETE /v1/sessions/{id}` → `close_session`.
pub(super) async fn close_session(State(m): State<Shared>, Id(id): Id) -> Response {
    reply(
        &m,
        "close_session",
        id_only("session_id", id),
        StatusCode::OK,
    )
    .await
}

/// `POST /v1/sessions/{id}/commands` `{"command_type", "params"?, "wait"?}` → `send_command`.
pub(super) async fn send_command(State(m): State<Shared>, Id(id): Id, body: JsonBody) -> Response {
    let params = match body.0 {
        Some(b) => with_id(b, "session_id", id),
        None => Err(ManagerError::InvalidRequest(
            "expected a JSON object body with command_type".into(),
        )),
    };
    run(&m, "send_command", params, StatusCode::OK).await
}

/// `GET /v1/sessions/{id}/history?limit=&since_seq=` → `get_session_history`.
pub(super) async fn history(State(m): State<Shared>, Id(id): Id, q: QueryArgs) -> Response {
    let params = q
        .params(&[("limit", Arg::Count), ("since_seq", Arg::Count)])
        .and_then(|p| with_id(p, "session_id", id));
    run(&m, "get_session_history", params, StatusCode::OK).await
}

/// `PATCH /v1/sessions/{id}/state` `{"state": {...}}` → `update_state`.
pub(super) async fn update_state(State(m): State<Shared>, Id(id): Id, body: JsonBody) -> Response {
    let params = with_id(body.or_empty(), "session_id", id);
    run(&m, "update_state", params, StatusCode::OK).await
}

/// `GET /v1/sessions/{id}/snapshots` → `get_snapshots`.
pub(super) async fn snapshots(State(m): State<Shared>, Id(id): Id) -> Response {
    reply(
        &m,
        "get_snapshots",
        id_only("session_id", id),
        StatusCode::OK,
    )
    .await
}

/// `POST /v1/sessions/{id}/snapshots` → `take_snapshot` (201).
pub(super) async fn take_snapshot(State(m): State<Shared>, Id(id): Id) -> Response {
    reply(
        &m,
        "take_snapshot",
        id_only("session_id", id),
        StatusCode::CREATED,
    )
    .await
}

/// `POST /v1/jobs`: `{"session_id", "command_type", "params"?, "metadata"?}` →
/// `submit_job`, or `{"session_id", "commands", "stop_on_error"?, "metadata"?}` →
/// `submit_batch` (202).
pub(super) async fn submit_job(State(m): State<Shared>, body: JsonBody) -> Response {
    let Some(body) = body.0 else {
        return ApiError::from(ManagerError::InvalidRequest(
            "expected a JSON object body with session_id and command_type (or commands)".into(),
        ))
        .into_response();
    };
    let method = if body.contains_key("commands") {
        "submit_batch"
    } else {
        "submit_job"
    };
    reply(&m, method, body, StatusCode::ACCEPTED).await
}

/// `GET /v1/jobs?session_id=&status=` → `list_jobs`.
pub(super) async fn list_jobs(State(m): State<Shared>, q: QueryArgs) -> Response {
    let params = q.params(&[("session_id", Arg::Text), ("status", Arg::Text)]);
    run(&m, "list_jobs", params, StatusCode::OK).await
}

/// `GET /v1/jobs/{id}` → `get_job`.
pub(super) async fn get_job(State(m): State<Shared>, Id(id): Id) -> Response {
    reply(&m, "get_job", id_only("job_id", id), StatusCode::OK).await
}

/// `GET /v1/jobs/{id}/result?wait=` → `get_job_result` (long-poll up to `wait` s).
pub(super) async fn job_result(State(m): State<Shared>, Id(id): Id, q: QueryArgs) -> Response {
    let params = q
        .params(&[("wait", Arg::Seconds)])
        .and_then(|p| with_id(p, "job_id", id));
    run(&m, "get_job_result", params, StatusCode::OK).await
}

/// `DELETE /v1/jobs/{id}` → `cancel_job`.
pub(super) async fn cancel_job(State(m): State<Shared>, Id(id): Id) -> Response {
    reply(&m, "cancel_job", id_only("job_id", id), StatusCode::OK).await
}

/// `GET /v1/tools` → `list_tools`.
pub(super) async fn list_tools(State(m): State<Shared>) -> Response {
    reply(&m, "list_tools", Map::new(), StatusCode::OK).await
}

/// `POST /v1/tools/call` `{"name", "arguments"?, "session_id"?}` → `handle_tool_call`.
pub(super) async fn call_tool(State(m): State<Shared>, body: JsonBody) -> Response {
    reply(&m, "handle_tool_call", body.or_empty(), StatusCode::OK).await
}

/// `GET /v1/status` → `get_manager_status`.
pub(super) async fn status(State(m): State<Shared>) -> Response {
    reply(&m, "get_manager_status", Map::new(), StatusCode::OK).await
}

/// `GET /v1/queue` → `get_queue_status`.
pub(super) async fn queue(State(m): State<Shared>) -> Response {
    reply(&m, "get_queue_status", Map::new(), StatusCode::OK).await
}
