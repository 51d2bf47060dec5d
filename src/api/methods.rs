//! The JSON-RPC method table.
//!
//! Each method checks its named params, calls the [`Manager`], and returns the
//! serialised `result`. Big Blender results pass through as raw bytes.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::params::Params;
use crate::error::ManagerError;
use crate::manager::Manager;
use crate::raw_json::RawJson;
use crate::session::handle::SessionOwner;
use crate::session::{CloseReason, CommandOrigin, CommandOutcome};
use crate::tools;

/// Methods the dispatcher knows (for `method_not_found` and docs).
pub const METHODS: &[&str] = &[
    "create_session",
    "get_session_info",
    "list_sessions",
    "close_session",
    "send_command",
    "update_state",
    "get_session_history",
    "take_snapshot",
    "get_snapshots",
    "cleanup_idle_sessions",
    "list_tools",
    "handle_tool_call",
    "get_manager_status",
    "authenticate",
];

/// `send_command`'s result: Blender's reply envelope plus timing.
#[derive(Serialize)]
pub struct CommandResult {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<RawJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    pub duration: f64,
    pub seq: u64,
    pub job_id: Option<String>,
}

impl CommandResult {
    /// A transport failure is a JSON-RPC error; a Blender error reply is a result.
    pub fn from_outcome(outcome: CommandOutcome) -> Result<CommandResult, ManagerError> {
        let reply = outcome.result?;
        Ok(if reply.success {
            CommandResult {
                status: "success",
                result: Some(reply.result),
                message: None,
                traceback: None,
                duration: outcome.duration,
                seq: outcome.seq,
                job_id: None,
            }
        } else {
            CommandResult {
                status: "error",
                result: None,
                message: Some(reply.message.unwrap_or_default()),
                traceback: reply.traceback,
                duration: outcome.duration,
                seq: outcome.seq,
                job_id: None,
            }
        })
    }
}

fn ok<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ManagerError> {
    serde_json::to_vec(value).map_err(|e| ManagerError::BadReply {
        reason: format!("result could not be serialised: {e}"),
    })
}

/// Runs one method. `authenticate` is handled by the connection, not here.
pub async fn call(
    manager: &Arc<Manager>,
    method: &str,
    raw_params: Option<&RawValue>,
) -> Result<Vec<u8>, ManagerError> {
    let mut p = Params::from_raw(raw_params)?;
    match method {
        "create_session" => {
            let backend = p.opt_string("backend")?;
            let metadata = p.opt_value("metadata").unwrap_or(Value::Null);
            p.finish()?;
            if let Some(b) = backend {
                let ours = manager.config().blender.to_string();
                if b != ours {
                    return Err(ManagerError::invalid_params(
                        "backend",
                        format!("unknown backend {b:?} (this manager drives {ours})"),
                    ));
                }
            }
            let handle = manager.create_session(SessionOwner::Rpc, metadata).await?;
            ok(&handle.session.info())
        }
        "get_session_info" => {
            let id = p.string("session_id")?;
            p.finish()?;
            ok(&manager.session_info(&id)?)
        }
        "list_sessions" => {
            p.finish()?;
            ok(&manager.list_sessions())
        }
        "close_session" => {
            let id = p.string("session_id")?;
            p.finish()?;
            manager.close_session(&id, CloseReason::ClosedByCaller)?;
            ok(&json!({"closed": true}))
        }
        "send_command" => {
            let id = p.string("session_id")?;
            let command_type = p.string("command_type")?;
            let params = p.opt_object("params")?;
            p.finish()?;
            let params = params.map(|m| RawJson::from_value(&m));
            let outcome = manager
                .send_command(&id, command_type, params, CommandOrigin::Rpc)
                .await?;
            ok(&CommandResult::from_outcome(outcome)?)
        }
        "update_state" => {
            let id = p.string("session_id")?;
            let state = p.object("state")?;
            p.finish()?;
            ok(&manager.update_state(&id, state)?)
        }
        "get_session_history" => {
            let id = p.string("session_id")?;
            let limit = p.opt_u64("limit")?.map(|n| n as usize);
            let since = p.opt_u64("since_seq")?;
            p.finish()?;
            ok(&manager.history(&id, limit, since)?)
        }
        "take_snapshot" => {
            let id = p.string("session_id")?;
            p.finish()?;
            ok(&manager.take_snapshot(&id).await?)
        }
        "get_snapshots" => {
            let id = p.string("session_id")?;
            p.finish()?;
            ok(&manager.snapshots(&id)?)
        }
        "cleanup_idle_sessions" => {
            let timeout = p.opt_f64("timeout")?;
            p.finish()?;
            let timeout = match timeout {
                Some(t) => Duration::try_from_secs_f64(t).map_err(|_| {
                    ManagerError::invalid_params("timeout", "too large a number of seconds")
                })?,
                None => manager.config().idle_timeout,
            };
            let closed = manager.cleanup_idle_sessions(timeout, CloseReason::Idle);
            ok(&json!({"closed": closed}))
        }
        "list_tools" => {
            p.finish()?;
            ok(&tools::catalogue())
        }
        "handle_tool_call" => {
            let session_id = p.opt_string("session_id")?;
            let name = p.string("name")?;
            let mut arguments = p.opt_object("arguments")?.unwrap_or_default();
            p.finish()?;
            let session_id = match (session_id, arguments.remove("session_id")) {
                (Some(s), _) => Some(s),
                (None, Some(Value::String(s))) => Some(s),
                (None, None | Some(Value::Null)) => None,
                (None, Some(_)) => {
                    return Err(ManagerError::invalid_params(
                        "arguments.session_id",
                        "expected a string",
                    ))
                }
            };
            let (command, params) = tools::map_call(&name, arguments)?;
            let session_id = match session_id {
                Some(id) => {
                    manager.session(&id)?;
                    id
                }
                None => {
                    let meta = json!({"created_by": "handle_tool_call", "tool": name});
                    let h = manager.create_session(SessionOwner::Rpc, meta).await?;
                    h.id().to_string()
                }
            };
            let outcome = manager
                .send_command(&session_id, command, Some(params), CommandOrigin::Tool)
                .await?;
            #[derive(Serialize)]
            struct ToolResult {
                session_id: String,
                result: CommandResult,
            }
            ok(&ToolResult {
                session_id,
                result: CommandResult::from_outcome(outcome)?,
            })
        }
        "get_manager_status" => {
            p.finish()?;
            ok(&manager.status())
        }
        other => Err(ManagerError::MethodNotFound(other.to_string())),
    }
}
