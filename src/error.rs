//! The manager's error type: one variant per JSON-RPC error code of the protocol.
//!
//! Every front door (JSON-RPC, addon-compatible port, CLI) reports failures through
//! [`ManagerError`], so the code, the machine-readable `kind` and the human message
//! stay the same wherever a caller meets them. Variants carry the identifiers that
//! make a log line actionable (session id, backend address, command).

use serde_json::{json, Value};

/// A failure a caller can see. `Display` is the message sent on the wire.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ManagerError {
    #[error("Parse error: {0}")]
    Parse(String),
    #[error("Invalid request: {0}")]
    InvalidRequest(String),
    #[error("Method not found: {0}")]
    MethodNotFound(String),
    #[error("Invalid params: {param}: {why}")]
    InvalidParams { param: String, why: String },
    #[error("Session not found: {0}")]
    SessionNotFound(String),
    #[error("Failed to connect to Blender: {address}: {reason}")]
    BlenderUnavailable { address: String, reason: String },
    #[error("Timeout waiting for Blender response ({command} after {seconds}s)")]
    BlenderTimeout { command: String, seconds: f64 },
    #[error("Queue full ({size}/{capacity})")]
    QueueFull { size: usize, capacity: usize },
    #[error("Job not found: {0}")]
    JobNotFound(String),
    #[error("Message exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("Unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("Session limit reached ({0})")]
    Capacity(usize),
    #[error("Shutting down: not accepting new sessions")]
    ShuttingDown,
    #[error("Blender closed the connection during {command}")]
    BlenderDisconnected { command: String },
    #[error("Invalid reply from Blender: {reason}")]
    BadReply { reason: String },
    #[error("Internal error: {0}")]
    Internal(String),
}

impl ManagerError {
    pub fn invalid_params(param: impl Into<String>, why: impl Into<String>) -> Self {
        ManagerError::InvalidParams {
            param: param.into(),
            why: why.into(),
        }
    }

    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            ManagerError::Parse(_) => -32700,
            ManagerError::InvalidRequest(_) => -32600,
            ManagerError::MethodNotFound(_) => -32601,
            ManagerError::InvalidParams { .. } => -32602,
            ManagerError::SessionNotFound(_) => -32001,
            ManagerError::BlenderUnavailable { .. } => -32002,
            ManagerError::BlenderTimeout { .. } => -32003,
            ManagerError::QueueFull { .. } => -32004,
            ManagerError::JobNotFound(_) => -32005,
            ManagerError::TooLarge { .. } => -32006,
            ManagerError::Unauthorized(_) => -32007,
            ManagerError::Capacity(_) => -32008,
            ManagerError::ShuttingDown => -32009,
            ManagerError::BlenderDisconnected { .. } => -32010,
            ManagerError::BadReply { .. } => -32011,
            ManagerError::Internal(_) => -32603,
        }
    }

    /// The machine-readable kind (`data.kind` on the wire, `error.kind` in history).
    pub fn kind(&self) -> &'static str {
        match self {
            ManagerError::Parse(_) => "parse_error",
            ManagerError::InvalidRequest(_) => "invalid_request",
            ManagerError::MethodNotFound(_) => "method_not_found",
            ManagerError::InvalidParams { .. } => "invalid_params",
            ManagerError::SessionNotFound(_) => "session_not_found",
            ManagerError::BlenderUnavailable { .. } => "blender_unavailable",
            ManagerError::BlenderTimeout { .. } => "blender_timeout",
            ManagerError::QueueFull { .. } => "queue_full",
            ManagerError::JobNotFound(_) => "job_not_found",
            ManagerError::TooLarge { .. } => "too_large",
            ManagerError::Unauthorized(_) => "unauthorized",
            ManagerError::Capacity(_) => "capacity",
            ManagerError::ShuttingDown => "shutting_down",
            ManagerError::BlenderDisconnected { .. } => "blender_disconnected",
            ManagerError::BadReply { .. } => "blender_bad_reply",
            ManagerError::Internal(_) => "internal_error",
        }
    }

    /// `data` member of the JSON-RPC error object: the kind plus identifiers.
    pub fn data(&self) -> Value {
        let mut data = json!({ "kind": self.kind() });
        let extra = match self {
            ManagerError::InvalidParams { param, .. } => json!({ "param": param }),
            ManagerError::SessionNotFound(id) => json!({ "session_id": id }),
            ManagerError::BlenderUnavailable { address, .. } => json!({ "backend": address }),
            ManagerError::BlenderTimeout { command, seconds } => {
                json!({ "command": command, "timeout": seconds })
            }
            ManagerError::BlenderDisconnected { command } => json!({ "command": command }),
            ManagerError::QueueFull { size, capacity } => {
                json!({ "size": size, "capacity": capacity })
            }
            ManagerError::TooLarge { limit } => json!({ "limit": limit }),
            ManagerError::Capacity(n) => json!({ "limit": n }),
            ManagerError::JobNotFound(id) => json!({ "job_id": id }),
            _ => Value::Null,
        };
        if let (Some(map), Value::Object(more)) = (data.as_object_mut(), extra) {
            map.extend(more);
        }
        data
    }

    /// `{"kind", "message"}` as stored in a history entry.
    pub fn summary(&self) -> Value {
        json!({ "kind": self.kind(), "message": self.to_string() })
    }
}
