//! The MCP tool surface: the manager's catalogue plus session and job tools.
//!
//! [`BlenderMcp`] implements rmcp's `ServerHandler` by hand for `tools/list` and `tools/call`,
//! because half of its tools are not known at compile time: the Blender tools are whatever the
//! manager's `list_tools` returns. The other half — sessions and jobs — are ordinary
//! `#[tool]` methods collected by `#[tool_router]`. A call whose name the router knows goes to
//! the router; any other name is forwarded to the manager's `handle_tool_call`, which maps it to
//! a Blender command (or refuses an unknown tool with a message the model can read).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, JsonObject,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{schemars, tool, tool_router, ErrorData as McpError, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::content;
use super::link::{ManagerLink, Retry};

/// Default seconds `get_job_result` waits: under the 60 s after which most MCP clients give up
/// on a tool call, with room for the reply to travel.
pub const DEFAULT_RESULT_WAIT: Duration = Duration::from_secs(25);

const INSTRUCTIONS: &str = "Blender through the Blender Session Manager. Every Blender tool \
    takes an optional session_id: omit it on your first call and the result's first line names \
    the new session (session_id: scene-…); pass that id on every later call so Python variables, \
    the scene state and the history carry over. Commands that may run longer than about 30 s \
    (renders, heavy scripts, big imports) should go through submit_job, then get_job_result \
    (repeat it until the job has finished); a tool call that outlives the manager's wait also \
    answers with a job_id to fetch the same way.";

/// The stdio MCP server's handler.
#[derive(Clone)]
pub struct BlenderMcp {
    link: Arc<ManagerLink>,
    result_wait: Duration,
    /// The last catalogue the manager sent, listed when it cannot be reached.
    last_catalogue: Arc<Mutex<Option<Vec<Tool>>>>,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for BlenderMcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlenderMcp")
            .field("link", &self.link)
            .field("result_wait", &self.result_wait)
            .finish_non_exhaustive()
    }
}

// ---- arguments of the session and job tools ------------------------------------------------

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionArgs {
    /// The Blender backend to use, as HOST:PORT; it must be the manager's own (this version drives one)
    #[serde(default)]
    pub backend: Option<String>,
    /// Free-form labels stored with the session, e.g. {"task": "product shot"}
    #[serde(default)]
    pub metadata: Option<JsonObject>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionArgs {
    /// Session id (scene-YYYYMMDD-HHMMSS-xxxxxxxx)
    pub session_id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryArgs {
    /// Session id (scene-YYYYMMDD-HHMMSS-xxxxxxxx)
    pub session_id: String,
    /// Return at most the last N entries
    #[serde(default)]
    pub limit: Option<u64>,
    /// Return only entries with a sequence number above this one
    #[serde(default)]
    pub since_seq: Option<u64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJobArgs {
    /// Session to run the job in; omit to create a new session (its id is returned)
    #[serde(default)]
    pub session_id: Option<String>,
    #[schemars(
        description = "Blender command type (the addon's names, not the tool names): \
                              execute_code, get_scene_info, get_object_info, \
                              get_viewport_screenshot, …"
    )]
    pub command_type: String,
    #[schemars(
        description = "The command's params: {\"code\": \"...\"} for execute_code, \
                              {\"name\": \"Cube\"} for get_object_info, {\"max_size\": 800} \
                              for get_viewport_screenshot"
    )]
    #[serde(default)]
    pub params: Option<JsonObject>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobArgs {
    /// Job id as returned by submit_job or a pending tool call
    pub job_id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobResultArgs {
    /// Job id as returned by submit_job or a pending tool call
    pub job_id: String,
    #[schemars(
        description = "Seconds to wait for the job to finish before answering \
                              (default 25; most clients give up on a tool call after 60 s, so \
                              stay well under that); 0 answers at once"
    )]
    #[serde(default)]
    pub wait: Option<f64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListJobsArgs {
    /// Only jobs of this session
    #[serde(default)]
    pub session_id: Option<String>,
    /// Only jobs in this state: pending, processing, completed, failed or cancelled
    #[serde(default)]
    pub status: Option<String>,
}

// ---- the tools -----------------------------------------------------------------------------

#[tool_router]
impl BlenderMcp {
    /// A handler calling the manager through `link`; `get_job_result` waits `result_wait` when
    /// the model gives no `wait`.
    pub fn new(link: Arc<ManagerLink>, result_wait: Duration) -> Self {
        BlenderMcp {
            link,
            result_wait,
            last_catalogue: Arc::new(Mutex::new(None)),
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Create a new Blender session and return its session_id. Optional: every \
                       Blender tool creates a session when called without session_id. Use it to \
                       start a fresh, separate piece of work (its own Python variables and \
                       history)."
    )]
    async fn create_session(
        &self,
        Parameters(args): Parameters<CreateSessionArgs>,
    ) -> CallToolResult {
        let mut params = Map::new();
        if let Some(backend) = args.backend {
            params.insert("backend".into(), Value::String(backend));
        }
        let mut metadata = args.metadata.unwrap_or_default();
        metadata
            .entry("created_by")
            .or_insert_with(|| Value::String("mcp".into()));
        params.insert("metadata".into(), Value::Object(metadata));
        match self
            .link
            .call("create_session", Value::Object(params), Retry::Never)
            .await
        {
            Ok(info) => {
                let id = info
                    .get("session_id")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                content::text(
                    Some(format!("session_id: {id}")),
                    &content::show_json(&info),
                )
            }
            Err(e) => content::client_error(&e),
        }
    }

    #[tool(
        description = "Close a session and its Blender connection when its work is done. Its \
                       history stays readable with get_session_history.",
        annotations(destructive_hint = true, idempotent_hint = true)
    )]
    async fn close_session(&self, Parameters(args): Parameters<SessionArgs>) -> CallToolResult {
        let params = json!({"session_id": args.session_id});
        match self.link.call("close_session", params, Retry::Never).await {
            Ok(_) => content::text(None, &format!("Closed session {}.", args.session_id)),
            Err(e) => content::client_error(&e),
        }
    }

    #[tool(
        description = "List the commands a session ran, oldest first, with their params, status \
                       and (shortened) results. Use it to recall what was done in a session or \
                       to check whether a command ran after a lost connection.",
        annotations(read_only_hint = true)
    )]
    async fn get_session_history(
        &self,
        Parameters(args): Parameters<HistoryArgs>,
    ) -> CallToolResult {
        let mut params = json!({"session_id": args.session_id});
        if let Some(limit) = args.limit {
            params["limit"] = json!(limit);
        }
        if let Some(since) = args.since_seq {
            params["since_seq"] = json!(since);
        }
        match self
            .link
            .call("get_session_history", params, Retry::Safe)
            .await
        {
            Ok(entries) => content::text(
                Some(format!("session_id: {}", args.session_id)),
                &content::show_json(&entries),
            ),
            Err(e) => content::client_error(&e),
        }
    }

    #[tool(
        description = "Start a Blender command as a background job and return its job_id \
                          at once. Use it for work that may take longer than about 30 seconds \
                          (renders, heavy scripts, big imports): the job keeps running however \
                          long it takes; fetch its result with get_job_result, check progress \
                          with get_job, stop it with cancel_job. Jobs of one session run one \
                          after another, in submission order."
    )]
    async fn submit_job(&self, Parameters(args): Parameters<SubmitJobArgs>) -> CallToolResult {
        let session_id = match args.session_id {
            Some(id) => id,
            None => {
                let params = json!({"metadata": {"created_by": "mcp", "tool": "submit_job"}});
                match self.link.call("create_session", params, Retry::Never).await {
                    Ok(info) => match info.get("session_id").and_then(Value::as_str) {
                        Some(id) => id.to_string(),
                        None => {
                            return content::failure(
                                None,
                                "The manager created a session but did not name it.",
                            )
                        }
                    },
                    Err(e) => return content::client_error(&e),
                }
            }
        };
        let mut params = json!({"session_id": session_id, "command_type": args.command_type,
                                "metadata": {"submitted_by": "mcp"}});
        if let Some(p) = args.params {
            params["params"] = Value::Object(p);
        }
        let header = Some(format!("session_id: {session_id}"));
        match self.link.call("submit_job", params, Retry::Never).await {
            Ok(reply) => {
                let job_id = reply.get("job_id").and_then(Value::as_str).unwrap_or("?");
                content::text(
                    header,
                    &format!(
                        "job_id: {job_id}\nstatus: pending\nCall get_job_result with job_id \
                         \"{job_id}\" to wait for its result; get_job shows progress, \
                         cancel_job stops it."
                    ),
                )
            }
            Err(e) => content::client_error(&e),
        }
    }

    #[tool(
        description = "Show a job's status (pending, processing, completed, failed, cancelled), \
                       progress and queue position without waiting. Use get_job_result to \
                       fetch what it produced.",
        annotations(read_only_hint = true)
    )]
    async fn get_job(&self, Parameters(args): Parameters<JobArgs>) -> CallToolResult {
        let params = json!({"job_id": args.job_id});
        match self.link.call("get_job", params, Retry::Safe).await {
            Ok(record) => content::text(
                Some(content::job_summary(&record)),
                &content::show_json(&record),
            ),
            Err(e) => content::client_error(&e),
        }
    }

    #[tool(
        description = "Wait up to `wait` seconds (default 25) for a job to finish and return its \
                       result: the command's output, screenshot or error. If the job is still \
                       running when the wait ends, the answer says so: call get_job_result \
                       again.",
        annotations(read_only_hint = true)
    )]
    async fn get_job_result(&self, Parameters(args): Parameters<JobResultArgs>) -> CallToolResult {
        let wait = match args.wait {
            None => self.result_wait.as_secs_f64(),
            Some(w) if w.is_finite() && w >= 0.0 => w,
            Some(_) => {
                return content::failure(None, "wait must be a number of seconds, 0 or more")
            }
        };
        let params = json!({"job_id": args.job_id, "wait": wait});
        match self.link.call("get_job_result", params, Retry::Safe).await {
            Ok(reply) => content::job_result(&reply),
            Err(e) => content::client_error(&e),
        }
    }

    #[tool(
        description = "Cancel a job. A pending job is taken out of the queue; a running one \
                       cannot be interrupted inside Blender: it is marked cancelled and its \
                       result discarded.",
        annotations(destructive_hint = true, idempotent_hint = true)
    )]
    async fn cancel_job(&self, Parameters(args): Parameters<JobArgs>) -> CallToolResult {
        let params = json!({"job_id": args.job_id});
        match self.link.call("cancel_job", params, Retry::Never).await {
            Ok(record) => {
                let what = record.get("cancel").and_then(Value::as_str).unwrap_or("");
                let mut summary = content::job_summary(&record);
                if !what.is_empty() {
                    summary.push_str(&format!("  cancel: {what}"));
                }
                content::text(None, &summary)
            }
            Err(e) => content::client_error(&e),
        }
    }

    #[tool(
        description = "List jobs known to the manager, newest first (finished ones are kept \
                       about an hour), optionally only those of one session or in one state.",
        annotations(read_only_hint = true)
    )]
    async fn list_jobs(&self, Parameters(args): Parameters<ListJobsArgs>) -> CallToolResult {
        let mut params = Map::new();
        if let Some(s) = args.session_id {
            params.insert("session_id".into(), Value::String(s));
        }
        if let Some(s) = args.status {
            params.insert("status".into(), Value::String(s));
        }
        match self
            .link
            .call("list_jobs", Value::Object(params), Retry::Safe)
            .await
        {
            Ok(jobs) => content::text(None, &content::job_lines(&jobs)),
            Err(e) => content::client_error(&e),
        }
    }
}

// ---- the catalogue -------------------------------------------------------------------------

impl BlenderMcp {
    /// The Blender tools: the manager's catalogue when it answers, else the last one it sent,
    /// else the catalogue built into this binary (the same table a manager of this version
    /// serves), so a host that lists tools before the manager is up still sees them.
    pub async fn catalogue(&self) -> Vec<Tool> {
        match self.link.call("list_tools", json!({}), Retry::Safe).await {
            Ok(reply) => {
                let tools = catalogue_tools(&reply);
                *self.last_catalogue.lock() = Some(tools.clone());
                tools
            }
            Err(e) => {
                tracing::warn!(manager = %self.link.address(), error = %e,
                               "could not fetch the tool catalogue; listing the last known or built-in one");
                self.last_catalogue
                    .lock()
                    .clone()
                    .unwrap_or_else(|| catalogue_tools(&crate::tools::catalogue()))
            }
        }
    }

    /// Every tool: the catalogue's, then the session and job tools. A catalogue tool with the
    /// name of one of ours is left out (ours would answer the call).
    pub async fn all_tools(&self) -> Vec<Tool> {
        let mut tools: Vec<Tool> = self
            .catalogue()
            .await
            .into_iter()
            .filter(|t| !self.tool_router.has_route(&t.name))
            .collect();
        tools.extend(self.tool_router.list_all());
        tools
    }

    /// Runs a catalogue tool through the manager's `handle_tool_call`.
    pub async fn call_catalogue_tool(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> CallToolResult {
        let params = json!({"name": name, "arguments": arguments.unwrap_or_default()});
        match self
            .link
            .call("handle_tool_call", params, Retry::Never)
            .await
        {
            Ok(reply) => content::tool_call_result(&reply),
            Err(e) => content::client_error(&e),
        }
    }
}

/// The manager's `[{"name", "description", "input_schema"}]` as MCP tools; malformed entries are
/// skipped.
pub fn catalogue_tools(catalogue: &Value) -> Vec<Tool> {
    let Some(items) = catalogue.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let name = item.get("name")?.as_str()?.to_string();
            let description = item
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let schema = match item.get("input_schema").or_else(|| item.get("inputSchema")) {
                Some(Value::Object(schema)) => schema.clone(),
                _ => {
                    let mut schema = JsonObject::new();
                    schema.insert("type".into(), json!("object"));
                    schema
                }
            };
            Some(Tool::new(name, description, Arc::new(schema)))
        })
        .collect()
}

impl ServerHandler for BlenderMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.all_tools().await))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if self.tool_router.has_route(&request.name) {
            let call = ToolCallContext::new(self, request, context);
            return self.tool_router.call(call).await;
        }
        let name = request.name.to_string();
        Ok(self
            .call_catalogue_tool(&name, request.arguments)
            .await
            .into())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tool_router.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_entries_become_tools_with_their_schemas() {
        let tools = catalogue_tools(&crate::tools::catalogue());
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert!(names.contains(&"execute_blender_code"));
        assert!(names.contains(&"get_viewport_screenshot"));
        for t in &tools {
            assert!(
                t.input_schema["properties"]["session_id"].is_object(),
                "{t:?}"
            );
        }
        let skipped = catalogue_tools(&json!([{"description": "no name"}, {"name": "bare"}]));
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].input_schema["type"], "object");
    }

    #[test]
    fn session_and_job_tools_are_routed_with_schemas() {
        let server = BlenderMcp::new(
            Arc::new(ManagerLink::new("127.0.0.1:1", None)),
            DEFAULT_RESULT_WAIT,
        );
        let names: Vec<String> = server
            .tool_router
            .list_all()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        for expected in [
            "cancel_job",
            "close_session",
            "create_session",
            "get_job",
            "get_job_result",
            "get_session_history",
            "list_jobs",
            "submit_job",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        let submit = server.tool_router.get("submit_job").unwrap();
        assert_eq!(submit.input_schema["required"], json!(["command_type"]));
        let result = server.tool_router.get("get_job_result").unwrap();
        assert!(result.input_schema["properties"]["wait"].is_object());
    }

    #[tokio::test]
    async fn an_unreachable_manager_lists_the_built_in_catalogue_and_errors_on_calls() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let server = BlenderMcp::new(
            Arc::new(ManagerLink::new(address, None)),
            DEFAULT_RESULT_WAIT,
        );
        let tools = server.all_tools().await;
        assert!(tools.iter().any(|t| t.name == "execute_blender_code"));
        assert!(tools.iter().any(|t| t.name == "get_job_result"));
        let r = server
            .call_catalogue_tool("get_scene_info", Some(JsonObject::new()))
            .await;
        assert_eq!(r.is_error, Some(true));
        let rmcp::model::ContentBlock::Text(t) = &r.content[0] else {
            panic!("expected text")
        };
        assert!(t.text.contains("cannot reach the manager"), "{}", t.text);
    }
}
