//! The client subcommands: each one is "call the manager, format the reply".
//!
//! Every command connects once (authenticating first when a token is configured), issues the
//! methods it needs in order, and writes through a [`Console`]. With `--json` the manager's result
//! is printed as pretty JSON on stdout and the tables are skipped; errors still go to stderr. A
//! command returns its exit status, or a [`ClientError`] that the caller prints and maps to one.
//!
//! Everything that can be checked without the manager (the params JSON) is checked before
//! connecting, so a typo is a usage error even when no manager is running.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::format::{
    format_call_result, format_history, format_session_info, format_sessions_list, format_status,
    pretty,
};
use super::output::Console;
use super::rpc_client::{ClientError, RpcClient};
use super::{CallArgs, ClientCommand, GlobalOptions, SessionsCommand};

/// Runs one client subcommand; `Ok` carries the exit status.
pub async fn execute(
    global: &GlobalOptions,
    command: ClientCommand,
    console: &mut Console,
) -> Result<u8, ClientError> {
    match command {
        ClientCommand::Status => status(global, console).await,
        ClientCommand::Sessions(sessions) => self::sessions(global, sessions, console).await,
        ClientCommand::Call(args) => call(global, args, console).await,
        ClientCommand::Jobs(jobs) => super::jobs::execute(global, jobs, console).await,
    }
}

pub(super) async fn connect(global: &GlobalOptions) -> Result<RpcClient, ClientError> {
    RpcClient::connect_authenticated(&global.manager, global.token.as_deref()).await
}

pub(super) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Prints `result` as pretty JSON when `--json` is set; returns whether it did.
pub(super) fn print_json(global: &GlobalOptions, result: &Value, console: &mut Console) -> bool {
    if global.json {
        console.out(&pretty(result));
        console.out("\n");
    }
    global.json
}

async fn status(global: &GlobalOptions, console: &mut Console) -> Result<u8, ClientError> {
    let client = connect(global).await?;
    let status = client.call("get_manager_status", json!({})).await?;
    if !print_json(global, &status, console) {
        console.out(&format_status(&status, client.address()));
    }
    Ok(0)
}

async fn sessions(
    global: &GlobalOptions,
    command: SessionsCommand,
    console: &mut Console,
) -> Result<u8, ClientError> {
    let client = connect(global).await?;
    match command {
        SessionsCommand::List => {
            let sessions = client.call("list_sessions", json!({})).await?;
            if !print_json(global, &sessions, console) {
                console.out(&format_sessions_list(&sessions, now()));
            }
        }
        SessionsCommand::Show { session_id } => {
            let info = client
                .call("get_session_info", json!({ "session_id": session_id }))
                .await?;
            if !print_json(global, &info, console) {
                console.out(&format_session_info(&info, now()));
            }
        }
        SessionsCommand::History {
            session_id,
            limit,
            since_seq,
        } => {
            let mut params = Map::new();
            params.insert("session_id".into(), Value::String(session_id));
            if let Some(limit) = limit {
                params.insert("limit".into(), json!(limit));
            }
            if let Some(since_seq) = since_seq {
                params.insert("since_seq".into(), json!(since_seq));
            }
            let history = client
                .call("get_session_history", Value::Object(params))
                .await?;
            if !print_json(global, &history, console) {
                console.out(&format_history(&history));
            }
        }
        SessionsCommand::Close { session_id } => {
            let reply = client
                .call("close_session", json!({ "session_id": session_id }))
                .await?;
            if !print_json(global, &reply, console) {
                console.out(&format!("closed {session_id}\n"));
            }
        }
    }
    Ok(0)
}

/// Parses the `PARAMS_JSON` argument: absent means `{}`, anything but a JSON object is a usage error.
pub fn parse_params(params: Option<&str>) -> Result<Map<String, Value>, ClientError> {
    let Some(text) = params else {
        return Ok(Map::new());
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ClientError::Usage(format!(
            "PARAMS_JSON must be a JSON object like '{{\"code\": \"print(1)\"}}', got {}",
            json_type_name(&other)
        ))),
        Err(err) => Err(ClientError::Usage(format!(
            "PARAMS_JSON is not valid JSON: {err}"
        ))),
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

async fn call(
    global: &GlobalOptions,
    args: CallArgs,
    console: &mut Console,
) -> Result<u8, ClientError> {
    let params = parse_params(args.params.as_deref())?;
    let client = connect(global).await?;
    let session_id = match args.session {
        Some(session_id) => session_id,
        None => {
            let info = client.call("create_session", json!({})).await?;
            let Some(session_id) = info.get("session_id").and_then(Value::as_str) else {
                return Err(ClientError::Protocol {
                    address: client.address().to_string(),
                    reason: "create_session returned no session_id".to_string(),
                });
            };
            console.err_line(&format!("created session {session_id}"));
            session_id.to_string()
        }
    };

    let mut request = Map::new();
    request.insert("session_id".into(), Value::String(session_id));
    request.insert(
        "command_type".into(),
        Value::String(args.command_type.clone()),
    );
    request.insert("params".into(), Value::Object(params));
    let reply = client.call("send_command", Value::Object(request)).await?;

    let report = format_call_result(&reply, &args.command_type);
    if global.json {
        console.out(&pretty(&reply));
        console.out("\n");
    } else {
        console.out(&report.stdout);
        console.err(&report.stderr);
    }
    Ok(report.exit_code)
}
