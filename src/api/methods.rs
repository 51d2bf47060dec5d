//! The JSON-RPC method table.
//!
//! Each method checks its named params, calls the [`Manager`], and returns the
//! serialised `result`. Big Blender results pass through as raw bytes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::params::Params;
use crate::error::ManagerError;
use crate::jobs::job::Envelope;
use crate::jobs::{JobKind, JobStatus};
use crate::manager::Manager;
use crate::manager::SendOutcome;
use crate::raw_json::RawJson;
use crate::session::handle::SessionOwner;
use crate::session::{CommandOutcome, DisconnectReason};
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
    "submit_job",
    "submit_batch",
    "get_job",
    "get_job_result",
    "cancel_job",
    "list_jobs",
    "get_queue_status",
    "reload_config",
    "pause",
    "resume",
    "drain_backend",
    "kill_session",
];

/// A method's serialised `result`, in pieces: a big Blender result is one of them,
/// shared with the reply it arrived in rather than copied.
#[derive(Debug, Default)]
pub struct Body {
    parts: Vec<Bytes>,
}

impl Body {
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body in one buffer (no copy when it is one piece already).
    pub fn into_vec(mut self) -> Vec<u8> {
        if self.parts.len() == 1 {
            return Vec::from(self.parts.pop().expect("one part"));
        }
        self.parts.concat()
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body {
            parts: vec![Bytes::from(v)],
        }
    }
}

/// Blender results above this size are shared with the reply, not copied.
const SHARE_ABOVE: usize = 64 * 1024;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub job_id: Option<String>,
}

impl CommandResult {
    /// `send_command`'s result: the outcome with its job id, or `pending`.
    pub fn from_send(sent: SendOutcome) -> Result<CommandResult, ManagerError> {
        match sent {
            SendOutcome::Done { outcome, job_id } => {
                let mut r = Self::from_outcome(*outcome)?;
                r.job_id = Some(job_id);
                Ok(r)
            }
            SendOutcome::Cancelled { job_id, error } => Ok(CommandResult {
                status: "cancelled",
                result: None,
                message: error
                    .as_ref()
                    .and_then(|e| e["message"].as_str())
                    .map(str::to_string),
                traceback: None,
                duration: None,
                seq: None,
                job_id: Some(job_id),
            }),
            SendOutcome::Pending { job_id } => Ok(CommandResult {
                status: "pending",
                result: None,
                message: None,
                traceback: None,
                duration: None,
                seq: None,
                job_id: Some(job_id),
            }),
        }
    }

    /// About how many bytes the serialised result takes: enough that serialising
    /// a big Blender result never has to grow (and copy) its buffer.
    pub fn size_hint(&self) -> usize {
        256 + self.result.as_ref().map_or(0, RawJson::len)
            + self.message.as_ref().map_or(0, |m| 2 * m.len())
            + self.traceback.as_ref().map_or(0, |t| 2 * t.len())
    }

    /// Serialised: the same bytes as `serde_json::to_vec`, but a big `result` is
    /// shared with the reply it came in instead of copied.
    pub fn to_body(&self) -> Result<Body, ManagerError> {
        let Some(result) = self.result.as_ref().filter(|r| r.len() > SHARE_ABOVE) else {
            return ok_sized(self, self.size_hint());
        };
        // The fields after `result`, with the derive's names, order and skipping.
        #[derive(Serialize)]
        struct AfterResult<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            message: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            traceback: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            duration: Option<f64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            seq: Option<u64>,
            job_id: Option<&'a str>,
        }
        // What serialising the RawJson checks (the raw path takes text).
        std::str::from_utf8(result.bytes()).map_err(|e| unserialisable(&e))?;
        let mut head = Vec::with_capacity(32);
        head.extend_from_slice(b"{\"status\":");
        serde_json::to_writer(&mut head, self.status).map_err(|e| unserialisable(&e))?;
        head.extend_from_slice(b",\"result\":");
        let mut tail = serde_json::to_vec(&AfterResult {
            message: self.message.as_deref(),
            traceback: self.traceback.as_deref(),
            duration: self.duration,
            seq: self.seq,
            job_id: self.job_id.as_deref(),
        })
        .map_err(|e| unserialisable(&e))?;
        if tail == b"{}" {
            tail = b"}".to_vec();
        } else {
            tail[0] = b',';
        }
        Ok(Body {
            parts: vec![head.into(), result.bytes().clone(), tail.into()],
        })
    }

    /// A transport failure is a JSON-RPC error; a Blender error reply is a result.
    pub fn from_outcome(outcome: CommandOutcome) -> Result<CommandResult, ManagerError> {
        let reply = outcome.result?;
        Ok(if reply.success {
            CommandResult {
                status: "success",
                result: Some(reply.result),
                message: None,
                traceback: None,
                duration: Some(outcome.duration),
                seq: Some(outcome.seq),
                job_id: None,
            }
        } else {
            CommandResult {
                status: "error",
                result: None,
                message: Some(reply.message.unwrap_or_default()),
                traceback: reply.traceback,
                duration: Some(outcome.duration),
                seq: Some(outcome.seq),
                job_id: None,
            }
        })
    }
}

/// An optional number of seconds as a duration.
fn seconds(p: &mut Params, key: &str) -> Result<Option<Duration>, ManagerError> {
    p.opt_f64(key)?
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| ManagerError::invalid_params(key, "too large a number of seconds"))
        })
        .transpose()
}

/// `[{command_type, params?}]` of `submit_batch`.
fn batch_commands(v: Option<Value>) -> Result<Vec<(String, Option<RawJson>)>, ManagerError> {
    let Some(Value::Array(items)) = v else {
        return Err(ManagerError::invalid_params(
            "commands",
            "expected a list of {\"command_type\", \"params\"}",
        ));
    };
    if items.is_empty() {
        return Err(ManagerError::invalid_params(
            "commands",
            "expected at least one command",
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |what: &str| ManagerError::invalid_params(format!("commands[{i}]"), what);
            let Value::Object(mut m) = item else {
                return Err(at("expected an object"));
            };
            let command = match m.remove("command_type") {
                Some(Value::String(c)) => c,
                _ => return Err(at("command_type: expected a string")),
            };
            let params = match m.remove("params") {
                None | Some(Value::Null) => None,
                Some(v @ Value::Object(_)) => Some(RawJson::from_value(&v)),
                Some(_) => return Err(at("params: expected an object")),
            };
            if let Some(k) = m.keys().next() {
                return Err(at(&format!("{k}: unknown member")));
            }
            Ok((command, params))
        })
        .collect()
}

/// `handle_tool_call`'s result: `{"session_id", "result": <send_command's result>}`.
#[derive(Serialize)]
struct ToolResult {
    session_id: String,
    result: CommandResult,
}

fn tool_result(session_id: String, result: CommandResult) -> Result<Body, ManagerError> {
    if result
        .result
        .as_ref()
        .is_none_or(|r| r.len() <= SHARE_ABOVE)
    {
        let size = result.size_hint() + session_id.len();
        return ok_sized(&ToolResult { session_id, result }, size);
    }
    // `{"session_id":…,"result":` + the command's result (shared) + `}`.
    let mut head = b"{\"session_id\":".to_vec();
    serde_json::to_writer(&mut head, &session_id).map_err(|e| unserialisable(&e))?;
    head.extend_from_slice(b",\"result\":");
    let mut parts = vec![Bytes::from(head)];
    parts.extend(result.to_body()?.parts);
    parts.push(Bytes::from_static(b"}"));
    Ok(Body { parts })
}

fn unserialisable(e: &dyn std::fmt::Display) -> ManagerError {
    ManagerError::BadReply {
        reason: format!("result could not be serialised: {e}"),
    }
}

fn ok<T: Serialize + ?Sized>(value: &T) -> Result<Body, ManagerError> {
    ok_sized(value, 128)
}

/// [`ok`] into a buffer of `capacity` bytes to start with.
fn ok_sized<T: Serialize + ?Sized>(value: &T, capacity: usize) -> Result<Body, ManagerError> {
    let mut out = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut out, value).map_err(|e| unserialisable(&e))?;
    Ok(out.into())
}

/// Runs one method and returns its serialised `result`. `authenticate` is handled
/// by the connection, not here.
pub async fn call(
    manager: &Arc<Manager>,
    method: &str,
    raw_params: Option<&RawValue>,
) -> Result<Vec<u8>, ManagerError> {
    call_body(manager, method, raw_params)
        .await
        .map(Body::into_vec)
}

/// [`call`], with the result in the pieces it is best written in.
pub async fn call_body(
    manager: &Arc<Manager>,
    method: &str,
    raw_params: Option<&RawValue>,
) -> Result<Body, ManagerError> {
    let mut p = Params::from_raw(raw_params)?;
    match method {
        "create_session" => {
            let backend = p.opt_string("backend")?;
            let metadata = p.opt_value("metadata").unwrap_or(Value::Null);
            p.finish()?;
            let handle = manager
                .create_session_on(SessionOwner::Rpc, metadata, backend.as_deref())
                .await?;
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
            manager
                .close_session(&id, DisconnectReason::ClosedByCaller)
                .await?;
            ok(&json!({"closed": true}))
        }
        "send_command" => {
            let id = p.string("session_id")?;
            let command_type = p.string("command_type")?;
            let params = p.opt_object("params")?;
            let wait = seconds(&mut p, "wait")?;
            p.finish()?;
            let params = params.map(|m| RawJson::from_value(&m));
            let sent = manager
                .send_command(&id, command_type, params, wait)
                .await?;
            CommandResult::from_send(sent)?.to_body()
        }
        "update_state" => {
            let id = p.string("session_id")?;
            let state = p.object("state")?;
            p.finish()?;
            ok(&manager.update_state(&id, state).await?)
        }
        "get_session_history" => {
            let id = p.string("session_id")?;
            let limit = p.opt_u64("limit")?.map(|n| n as usize);
            let since = p.opt_u64("since_seq")?;
            p.finish()?;
            ok(&manager.history(&id, limit, since).await?)
        }
        "take_snapshot" => {
            let id = p.string("session_id")?;
            p.finish()?;
            ok(&manager.take_snapshot(&id).await?)
        }
        "get_snapshots" => {
            let id = p.string("session_id")?;
            p.finish()?;
            ok(&manager.snapshots(&id).await?)
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
            let closed = manager
                .cleanup_idle_sessions(timeout, DisconnectReason::Idle)
                .await;
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
            let sent = manager
                .send_command(&session_id, command, Some(params), None)
                .await?;
            tool_result(session_id, CommandResult::from_send(sent)?)
        }
        "get_manager_status" => {
            p.finish()?;
            ok(&manager.status())
        }
        "reload_config" => {
            p.finish()?;
            ok(&manager.reload_config().await?)
        }
        "pause" => {
            let backend = p.opt_string("backend")?;
            p.finish()?;
            ok(&manager.pause(backend.as_deref())?)
        }
        "resume" => {
            let backend = p.opt_string("backend")?;
            p.finish()?;
            ok(&manager.resume(backend.as_deref())?)
        }
        "drain_backend" => {
            let backend = p.string("backend")?;
            let drain = p.opt_bool("drain")?.unwrap_or(true);
            p.finish()?;
            ok(&manager.drain_backend(&backend, drain)?)
        }
        "kill_session" => {
            let id = p.string("session_id")?;
            p.finish()?;
            manager.kill_session(&id).await?;
            ok(&json!({"killed": true, "session_id": id}))
        }
        "submit_job" => {
            let id = p.string("session_id")?;
            let command_type = p.string("command_type")?;
            let params = p.opt_object("params")?.map(|m| RawJson::from_value(&m));
            let metadata = p.opt_value("metadata").unwrap_or(Value::Null);
            p.finish()?;
            let kind = JobKind::Single {
                command_type,
                params,
            };
            let job = manager.submit_job(&id, kind, metadata).await?;
            ok(&json!({"job_id": job.id, "status": "pending"}))
        }
        "submit_batch" => {
            let id = p.string("session_id")?;
            let commands = batch_commands(p.opt_value("commands"))?;
            let stop_on_error = p.opt_bool("stop_on_error")?.unwrap_or(false);
            let metadata = p.opt_value("metadata").unwrap_or(Value::Null);
            p.finish()?;
            let kind = JobKind::Batch {
                commands,
                stop_on_error,
            };
            let job = manager.submit_job(&id, kind, metadata).await?;
            ok(&json!({"job_id": job.id, "status": "pending"}))
        }
        "get_job" => {
            let id = p.string("job_id")?;
            p.finish()?;
            let job = manager.jobs().get(&id)?;
            let record = manager.jobs().record(&job);
            let size = 1024 + record.result.as_ref().map_or(0, Envelope::len);
            ok_sized(&record, size)
        }
        "get_job_result" => {
            let id = p.string("job_id")?;
            let wait = seconds(&mut p, "wait")?;
            p.finish()?;
            let view = manager.job_result(&id, wait).await?;
            let batch = view.results.iter().flatten().map(|r| r.len() + 1);
            let size = 256 + view.result.as_ref().map_or(0, Envelope::len) + batch.sum::<usize>();
            ok_sized(&view, size)
        }
        "cancel_job" => {
            let id = p.string("job_id")?;
            p.finish()?;
            let (record, what) = manager.cancel_job(&id).await?;
            let mut v = serde_json::to_value(&record).unwrap_or(Value::Null);
            v["cancel"] = Value::String(what.into());
            ok(&v)
        }
        "list_jobs" => {
            let session = p.opt_string("session_id")?;
            let status = match p.opt_string("status")? {
                None => None,
                Some(s) => Some(JobStatus::parse(&s).ok_or_else(|| {
                    ManagerError::invalid_params(
                        "status",
                        "expected pending, processing, completed, failed or cancelled",
                    )
                })?),
            };
            p.finish()?;
            ok(&manager.jobs().list(session.as_deref(), status))
        }
        "get_queue_status" => {
            p.finish()?;
            ok(&manager.jobs().queue_status())
        }
        other => Err(ManagerError::MethodNotFound(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(big: &RawJson) -> Vec<CommandResult> {
        let r =
            |status, result: Option<&RawJson>, message: Option<&str>, tail: bool| CommandResult {
                status,
                result: result.cloned(),
                message: message.map(str::to_string),
                traceback: message.map(|_| "Traceback:\n  \"x\"".to_string()),
                duration: tail.then_some(0.25),
                seq: tail.then_some(7),
                job_id: tail.then(|| "job-1".to_string()),
            };
        let small = RawJson::from_value(&serde_json::json!({"a": [1, 2]}));
        vec![
            r("success", Some(big), None, true),
            r("success", Some(big), None, false),
            r("error", Some(big), Some("bad \"thing\""), true),
            r("success", Some(&small), None, true),
            r("pending", None, None, true),
            r("error", None, Some("boom"), false),
        ]
    }

    #[test]
    fn bodies_are_the_serialised_result_with_big_results_shared() {
        let text = format!(
            r#"{{ "data" : "{}", "n" : 1.50 }}"#,
            "é\\n".repeat(SHARE_ABOVE)
        );
        let big = RawJson::parse(Bytes::from(text)).unwrap();
        for r in results(&big) {
            let expected = serde_json::to_vec(&r).unwrap();
            let body = r.to_body().unwrap();
            assert_eq!(body.len(), expected.len());
            if r.result.as_ref() == Some(&big) {
                assert!(
                    body.parts()
                        .iter()
                        .any(|p| p.as_ptr() == big.bytes().as_ptr() && p.len() == big.len()),
                    "the big result was copied"
                );
            }
            assert_eq!(
                String::from_utf8(body.into_vec()).unwrap(),
                String::from_utf8(expected).unwrap()
            );
            let tool = ToolResult {
                session_id: "scene-\"1\"".into(),
                result: r,
            };
            let expected = serde_json::to_vec(&tool).unwrap();
            let body = tool_result(tool.session_id, tool.result).unwrap();
            assert_eq!(body.into_vec(), expected);
        }
    }

    #[test]
    fn a_big_result_that_is_not_utf8_is_an_error_as_with_serde() {
        let mut bytes = b"\"".to_vec();
        bytes.extend(std::iter::repeat_n(b'a', SHARE_ABOVE));
        bytes.extend_from_slice(b"\xff\"");
        let r = CommandResult {
            status: "success",
            result: Some(RawJson::from_validated(Bytes::from(bytes))),
            message: None,
            traceback: None,
            duration: None,
            seq: None,
            job_id: None,
        };
        assert!(serde_json::to_vec(&r).is_err());
        assert!(r.to_body().is_err());
    }
}
