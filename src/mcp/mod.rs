//! `blender-session-manager mcp`: a stdio MCP server in front of a running manager.
//!
//! MCP hosts (Claude Desktop, Cursor, Claude Code) launch this subcommand as a child process and
//! speak MCP over its stdin and stdout; it speaks the manager's JSON-RPC to `--manager`, exactly
//! like the command-line client. It holds no sessions, jobs or scene state of its own: the manager
//! remains the single source of truth, so what a model does through MCP is the same session, the
//! same history and the same jobs that the CLI, the HTTP API and other clients see, and it
//! survives this process being restarted by the host (which hosts do freely).
//!
//! How the MCP surface maps onto the manager:
//!
//! - **Tools** are the manager's `list_tools` catalogue (`execute_blender_code`,
//!   `get_scene_info`, `get_object_info`, `get_viewport_screenshot`, …) with their schemas as
//!   the manager sends them, each with an optional `session_id`; plus session tools
//!   (`create_session`, `close_session`, `get_session_history`) and job tools (`submit_job`,
//!   `get_job`, `get_job_result`, `cancel_job`, `list_jobs`). The catalogue is fetched on every
//!   `tools/list`; when the manager is down the last one fetched, or the one built into this
//!   binary, is listed instead so a host that starts first still sees the tools.
//! - **Sessions**: a catalogue tool call goes to `handle_tool_call`, which creates a session
//!   when the call has no `session_id`. Every result starts with a `session_id: …` line so the
//!   model can pass it on its next call and keep its Python variables and scene state.
//! - **Results** become MCP content ([`content`]): stdout as text for `execute_code`, an image
//!   block (PNG, base64 as Blender sent it) plus a caption for the screenshot, JSON text for the
//!   rest. A Blender error, a failed job and a JSON-RPC error from the manager are tool results
//!   with `isError: true` carrying the message (and `kind`, code, traceback), never protocol
//!   errors, so the model can read them and react.
//! - **Jobs**: MCP clients abandon a tool call after about 60 s. A tool call still running when
//!   the manager's own wait (30 s by default) ends answers with its `job_id` instead of failing;
//!   `submit_job` starts long work explicitly, and `get_job_result` waits up to `wait` seconds
//!   (default 25) per call, so any amount of work is started, polled and fetched in calls that
//!   each fit the client's timeout. MCP's own task protocol is not used: few clients speak it.
//! - **Connection** ([`link`]): opened at start when the manager is up, otherwise on the first
//!   call; a manager that is not reachable is a tool error for that call, never a crash, and a
//!   lost connection is reopened on the next call.
//!
//! stdout carries only the protocol; logs go to stderr (hosts keep them in their MCP logs).
//!
//! Hosts launch it from their usual `mcpServers` entry (Claude Desktop's
//! `claude_desktop_config.json`, Cursor's `.cursor/mcp.json`, Claude Code's `.mcp.json` or
//! `claude mcp add blender -- blender-session-manager mcp`); the token, when the manager has
//! one, is best passed in `env` so it stays out of process listings:
//!
//! ```json
//! {
//!   "mcpServers": {
//!     "blender": {
//!       "command": "blender-session-manager",
//!       "args": ["mcp", "--manager", "127.0.0.1:9880"],
//!       "env": { "SESSION_MANAGER_TOKEN": "…" }
//!     }
//!   }
//! }
//! ```

pub mod content;
pub mod link;
pub mod server;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;

use crate::cli::GlobalOptions;
pub use link::ManagerLink;
pub use server::BlenderMcp;

/// Options of `mcp`; the manager's address and token are the global `--manager` and `--token`.
#[derive(clap::Args, Debug, Clone)]
pub struct McpArgs {
    /// Seconds get_job_result waits for a job when the model gives no `wait` (keep it under the
    /// host's tool-call timeout, usually 60 s)
    #[arg(long, default_value = "25", value_name = "SECONDS", value_parser = parse_seconds)]
    pub result_wait: Duration,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?} is not a usable number of seconds"))
}

/// Serves MCP on stdin/stdout until the host closes stdin.
pub async fn run(global: &GlobalOptions, args: McpArgs) -> ExitCode {
    let link = Arc::new(ManagerLink::new(
        global.manager.clone(),
        global.token.clone(),
    ));
    // Connect now when the manager is up, so the first tool call is quick and a wrong token
    // shows in the host's log at once; a manager that is not up yet is fine.
    if let Err(e) = link.connect().await {
        tracing::warn!(manager = %link.address(), error = %e,
                       "could not connect to the manager yet; tool calls will retry");
    }
    let handler = BlenderMcp::new(link, args.result_wait);
    let service = match handler.serve(rmcp::transport::stdio()).await {
        Ok(service) => service,
        Err(e) => {
            tracing::error!(error = %e, "MCP session did not start");
            return ExitCode::from(1);
        }
    };
    tracing::info!(manager = %global.manager, "MCP server ready on stdio");
    match service.waiting().await {
        Ok(reason) => {
            tracing::info!(?reason, "MCP session ended");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "MCP server task failed");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_wait_parses_seconds() {
        assert_eq!(parse_seconds("25").unwrap(), Duration::from_secs(25));
        assert_eq!(parse_seconds("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
    }
}
