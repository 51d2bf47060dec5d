//! HTTP on `--http-listen` (axum): REST over the JSON-RPC method table, seed 000's
//! queue routes, `GET /healthz` and `GET /metrics`.
//!
//! Both doors share one implementation: each REST route builds the named params of
//! the matching JSON-RPC method from its path, query and body and calls
//! [`methods::call`], so a 2xx body is exactly that method's `result` and an error
//! body is its error object under `"error"` (see [`error`] for status codes).
//! Seed 000's routes (`POST /mcp`, `GET /mcp/task/{id}`, `POST /mcp/status`, in
//! [`seed`]) answer in the seed's shapes, with ISO 8601 times.
//!
//! Concurrency design: a method runs in a task of its own and the handler awaits
//! it, so a caller hanging up does not cancel the work half-way (a job half
//! submitted, a session half created); the session still runs the command and
//! records it, as on the JSON-RPC port. Bodies are read up to `--max-frame-bytes`.
//! With `--token` every route but `/healthz` needs `Authorization: Bearer <token>`.
//! At shutdown the listener stops accepting at once; requests in progress finish
//! (waits end when the drain is over), bounded by [`DRAIN_GRACE`].

pub mod error;
mod rest;
mod seed;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::methods;
use crate::error::ManagerError;
use crate::manager::Manager;
pub use error::ApiError;

/// How long requests still open after the drain may take before the server stops.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// The content type of `GET /metrics` (Prometheus text format 0.0.4).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Shared = Arc<Manager>;

/// Every route, with the token check in front of all but `/healthz`.
pub fn router(manager: Arc<Manager>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/v1/sessions",
            post(rest::create_session).get(rest::list_sessions),
        )
        .route(
            "/v1/sessions/{id}",
            get(rest::session_info).delete(rest::close_session),
        )
        .route("/v1/sessions/{id}/commands", post(rest::send_command))
        .route("/v1/sessions/{id}/history", get(rest::history))
        .route(
            "/v1/sessions/{id}/state",
            axum::routing::patch(rest::update_state),
        )
        .route(
            "/v1/sessions/{id}/snapshots",
            get(rest::snapshots).post(rest::take_snapshot),
        )
        .route("/v1/jobs", post(rest::submit_job).get(rest::list_jobs))
        .route("/v1/jobs/{id}", get(rest::get_job).delete(rest::cancel_job))
        .route("/v1/jobs/{id}/result", get(rest::job_result))
        .route("/v1/tools", get(rest::list_tools))
        .route("/v1/tools/call", post(rest::call_tool))
        .route("/v1/status", get(rest::status))
        .route("/v1/queue", get(rest::queue))
        .route("/mcp", post(seed::submit))
        .route("/mcp/task/{id}", get(seed::task))
        .route("/mcp/status", post(seed::status))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            manager.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(guarded)
        .with_state(manager)
}

/// Serves until `shutdown` fires, then lets open requests finish (bounded).
pub async fn serve(listener: TcpListener, manager: Arc<Manager>, shutdown: CancellationToken) {
    let drained = manager.drained_token().clone();
    let app = router(manager);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
    let out_of_time = async {
        drained.cancelled().await;
        tokio::time::sleep(DRAIN_GRACE).await;
    };
    tokio::select! {
        r = std::future::IntoFuture::into_future(server) => {
            if let Err(e) = r {
                warn!(error = %e, "HTTP server failed");
            }
        }
        _ = out_of_time => {
            info!(grace_s = DRAIN_GRACE.as_secs_f64(), "HTTP requests still open after the drain; stopping");
        }
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of an `Authorization` header (scheme case-insensitive).
fn bearer(value: &HeaderValue) -> Option<&str> {
    let v = value.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn require_token(State(manager): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(token) = manager.config().token.as_deref() {
        match req.headers().get(header::AUTHORIZATION).and_then(bearer) {
            None => {
                return ApiError::from(ManagerError::Unauthorized(
                    "send the manager's token as Authorization: Bearer <token>",
                ))
                .into_response()
            }
            Some(given) if !constant_time_eq(given.as_bytes(), token.as_bytes()) => {
                info!(path = %req.uri().path(), "HTTP authentication failed");
                return ApiError::from(ManagerError::Unauthorized("wrong token")).into_response();
            }
            Some(_) => {}
        }
    }
    next.run(req).await
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ManagerError::MethodNotFound(format!("{method} {}", uri.path())).into()
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError {
        error: ManagerError::MethodNotFound(format!("{method} {}", uri.path())),
        status: Some(StatusCode::METHOD_NOT_ALLOWED),
    }
}

/// `200 {"status": "ok", ...}`, or `503 {"status": "draining"}` once shutdown began.
async fn healthz(State(manager): State<Shared>) -> Response {
    if manager.shutdown_token().is_cancelled() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"status":"draining"}"#.to_vec(),
        );
    }
    let body = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "sessions": manager.registry().len(),
        "jobs_pending": manager.jobs().pending(),
        "queue_capacity": manager.jobs().capacity(),
    });
    json_response(StatusCode::OK, body.to_string().into_bytes())
}

async fn metrics(State(manager): State<Shared>) -> Response {
    let text = manager.metrics().render(&manager);
    let mut res = text.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    res
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// Runs a JSON-RPC method in a task of its own (a caller hanging up does not cancel
/// it) and returns its serialised `result`.
pub(crate) async fn call(
    manager: &Shared,
    method: &'static str,
    params: Map<String, Value>,
) -> Result<Vec<u8>, ManagerError> {
    let raw = serde_json::value::to_raw_value(&Value::Object(params))
        .map_err(|e| ManagerError::Internal(format!("params could not be serialised: {e}")))?;
    let manager = manager.clone();
    let task = tokio::spawn(async move { methods::call(&manager, method, Some(&raw)).await });
    joined(method, task.await)
}

/// A finished task's value; a panic in it is an internal error, not a lost reply.
pub(crate) fn joined<T>(
    what: &str,
    r: Result<Result<T, ManagerError>, tokio::task::JoinError>,
) -> Result<T, ManagerError> {
    match r {
        Ok(r) => r,
        Err(e) => {
            let why = if e.is_panic() {
                let panic = e.into_panic();
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into())
            } else {
                "cancelled".into()
            };
            tracing::error!(method = %what, panic = %why, "HTTP request task failed");
            Err(ManagerError::Internal(format!("{what} failed: {why}")))
        }
    }
}

/// A method's result as a response with `status` (or its error).
pub(crate) async fn reply(
    manager: &Shared,
    method: &'static str,
    params: Map<String, Value>,
    status: StatusCode,
) -> Response {
    match call(manager, method, params).await {
        Ok(body) => json_response(status, body),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A path parameter (`{id}`); a malformed one is a 400 in the usual error shape.
pub(crate) struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Id(id))
            .map_err(|e| ManagerError::InvalidRequest(e.body_text()).into())
    }
}

/// The query string as ordered pairs.
pub(crate) struct QueryArgs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryArgs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryArgs(v))
            .map_err(|e| ManagerError::InvalidRequest(e.body_text()).into())
    }
}

/// How a query parameter is read.
#[derive(Clone, Copy)]
pub(crate) enum Arg {
    /// A non-negative integer.
    Count,
    /// A non-negative number of seconds.
    Seconds,
    Text,
}

impl QueryArgs {
    /// Named params from the query, each as its JSON type; an unknown name is refused
    /// as the JSON-RPC method would refuse it.
    pub(crate) fn params(self, known: &[(&str, Arg)]) -> Result<Map<String, Value>, ManagerError> {
        let mut out = Map::new();
        for (key, value) in self.0 {
            let Some((_, arg)) = known.iter().find(|(k, _)| *k == key) else {
                return Err(ManagerError::invalid_params(key, "unknown parameter"));
            };
            let v = match arg {
                Arg::Text => Value::String(value),
                Arg::Count => value.trim().parse::<u64>().map(Value::from).map_err(|_| {
                    ManagerError::invalid_params(&key, "expected a non-negative integer")
                })?,
                Arg::Seconds => value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Value::from)
                    .ok_or_else(|| {
                        ManagerError::invalid_params(&key, "expected a non-negative number")
                    })?,
            };
            out.insert(key, v);
        }
        Ok(out)
    }
}

/// A JSON object body (`None` when the body is empty), read up to
/// `--max-frame-bytes`: larger is 413 `too_large`, malformed JSON 400 `parse_error`,
/// anything but an object 400 `invalid_request`.
pub(crate) struct JsonBody(pub Option<Map<String, Value>>);

impl JsonBody {
    /// The object, or `{}` for an empty body.
    pub(crate) fn or_empty(self) -> Map<String, Value> {
        self.0.unwrap_or_default()
    }
}

impl FromRequest<Shared> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, ApiError> {
        let limit = state.config().max_frame_bytes;
        let bytes = read_limited(req.into_body(), limit).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(None));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(JsonBody(Some(m))),
            Ok(_) => Err(ManagerError::InvalidRequest("expected a JSON object body".into()).into()),
            Err(e) => Err(ManagerError::Parse(e.to_string()).into()),
        }
    }
}

async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ManagerError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ManagerError::InvalidRequest(format!("could not read the body: {e}")))?;
        if out.len() + chunk.len() > limit {
            return Err(ManagerError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_and_compared() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(bearer(&h("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&h("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&h("Basic abc")), None);
        assert_eq!(bearer(&h("Bearer")), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn query_params_are_typed_and_unknown_ones_refused() {
        let q = |pairs: &[(&str, &str)]| {
            QueryArgs(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let known = [
            ("limit", Arg::Count),
            ("wait", Arg::Seconds),
            ("s", Arg::Text),
        ];
        let p = q(&[("limit", "5"), ("wait", "0.5"), ("s", "x")])
            .params(&known)
            .unwrap();
        assert_eq!(Value::Object(p), json!({"limit": 5, "wait": 0.5, "s": "x"}));
        let e = q(&[("limit", "-1")]).params(&known).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid params: limit: expected a non-negative integer"
        );
        let e = q(&[("wait", "inf")]).params(&known).unwrap_err();
        assert_eq!(e.kind(), "invalid_params");
        let e = q(&[("limt", "1")]).params(&known).unwrap_err();
        assert_eq!(e.to_string(), "Invalid params: limt: unknown parameter");
    }
}
