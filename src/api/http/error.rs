//! Errors as HTTP responses: the JSON-RPC error object under `"error"`, with a
//! status code that fits its kind.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ManagerError;

/// Seconds a caller refused for a full queue is told to wait (`Retry-After`).
pub const QUEUE_FULL_RETRY_AFTER_S: u64 = 1;

/// The status code of an error kind.
pub fn status_of(err: &ManagerError) -> StatusCode {
    match err {
        ManagerError::Parse(_)
        | ManagerError::InvalidRequest(_)
        | ManagerError::InvalidParams { .. } => StatusCode::BAD_REQUEST,
        ManagerError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        ManagerError::MethodNotFound(_)
        | ManagerError::SessionNotFound(_)
        | ManagerError::JobNotFound(_) => StatusCode::NOT_FOUND,
        ManagerError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        ManagerError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
        ManagerError::Capacity(_) | ManagerError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ManagerError::BlenderUnavailable { .. }
        | ManagerError::BlenderDisconnected { .. }
        | ManagerError::BadReply { .. } => StatusCode::BAD_GATEWAY,
        ManagerError::BlenderTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        ManagerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A failure answered as `{"error": {"code", "message", "data"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub error: ManagerError,
    /// Overrides [`status_of`] (405 for a known path with the wrong method).
    pub status: Option<StatusCode>,
}

impl From<ManagerError> for ApiError {
    fn from(error: ManagerError) -> Self {
        ApiError {
            error,
            status: None,
        }
    }
}

/// The error body, the same object a JSON-RPC caller gets as `error`.
pub fn body(err: &ManagerError) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "error": {"code": err.code(), "message": err.to_string(), "data": err.data()}
    }))
    .expect("error object serialises")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| status_of(&self.error));
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self.error, "HTTP request failed");
        }
        let mut res = (status, body(&self.error)).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match &self.error {
            ManagerError::QueueFull { .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(QUEUE_FULL_RETRY_AFTER_S),
                );
            }
            ManagerError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"blender-session-manager\""),
                );
            }
            _ => {}
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_fitting_status() {
        let cases = [
            (ManagerError::Parse("x".into()), 400),
            (ManagerError::InvalidRequest("x".into()), 400),
            (ManagerError::invalid_params("p", "x"), 400),
            (ManagerError::Unauthorized("wrong token"), 401),
            (ManagerError::SessionNotFound("s".into()), 404),
            (ManagerError::JobNotFound("j".into()), 404),
            (ManagerError::MethodNotFound("m".into()), 404),
            (ManagerError::TooLarge { limit: 1 }, 413),
            (
                ManagerError::QueueFull {
                    size: 1,
                    capacity: 1,
                },
                429,
            ),
            (ManagerError::Capacity(1), 503),
            (ManagerError::ShuttingDown, 503),
            (
                ManagerError::BlenderUnavailable {
                    address: "a".into(),
                    reason: "r".into(),
                },
                502,
            ),
            (
                ManagerError::BlenderDisconnected {
                    command: "c".into(),
                },
                502,
            ),
            (ManagerError::BadReply { reason: "r".into() }, 502),
            (
                ManagerError::BlenderTimeout {
                    command: "c".into(),
                    seconds: 1.0,
                },
                504,
            ),
            (ManagerError::Internal("x".into()), 500),
        ];
        for (err, code) in cases {
            assert_eq!(status_of(&err).as_u16(), code, "{err}");
        }
    }
}
