//! The command-line client: subcommands that talk to a running manager over its JSON-RPC port.
//!
//! `status`, `sessions list|show|history|close`, `jobs list|show|wait|cancel` and `call` each open
//! one connection to `--manager` (default `127.0.0.1:9880`), authenticate when `--token` is set,
//! call the methods of DESIGN §4.1 and print either readable tables or, with `--json`, the raw
//! results. The pieces:
//!
//! - [`rpc_client`]: a reusable async JSON-RPC 2.0 client over NDJSON (requests matched to replies by
//!   `id`, typed errors); other subcommands build on it.
//! - [`format`] and [`table`]: pure functions from manager replies to text.
//! - [`output`]: the [`Console`] that text goes through, the terminal or a string in tests.
//! - `commands`: one function per subcommand tying the three together.
//! - [`jobs`] and [`progress`]: the `jobs` subcommands, with `jobs wait`'s polling loop and its
//!   progress line.
//!
//! Exit statuses: 0 success, 1 the manager or Blender refused (a JSON-RPC error, a Blender
//! `status: error` reply), 2 usage error, 3 the manager could not be reached or dropped the
//! connection; `jobs wait` adds 4 when its `--timeout` ran out. Errors print as `error: <message>`;
//! JSON-RPC errors as `error: <message> (<kind>, code <code>)`.

mod commands;
pub mod format;
pub mod jobs;
pub mod output;
pub mod progress;
pub mod rpc_client;
pub mod table;

pub use commands::parse_params;
pub use jobs::JobsCommand;
pub use output::{CommandOutput, Console};
pub use rpc_client::{ClientError, RpcClient};

/// Options shared by every client subcommand, accepted before or after it.
#[derive(clap::Args, Debug, Clone)]
pub struct GlobalOptions {
    /// Manager JSON-RPC address
    #[arg(
        long,
        global = true,
        env = "SESSION_MANAGER_MANAGER",
        default_value = "127.0.0.1:9880",
        value_name = "HOST:PORT"
    )]
    pub manager: String,
    /// Token for a manager started with --token
    #[arg(
        long,
        global = true,
        env = "SESSION_MANAGER_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print raw JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

/// The client subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ClientCommand {
    /// Show the manager's status: version, uptime, listeners, backends, counts
    Status,
    /// Inspect and close sessions
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Send one Blender command through the manager
    Call(CallArgs),
    /// Inspect, wait for and cancel jobs
    #[command(subcommand)]
    Jobs(JobsCommand),
}

/// `sessions …`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum SessionsCommand {
    /// List open sessions with their backend, command count and idle time
    List,
    /// Show one session: connection, state, objects
    Show {
        /// Session ID (scene-YYYYMMDD-HHMMSS-xxxxxxxx)
        #[arg(value_name = "ID")]
        session_id: String,
    },
    /// Show the commands a session ran, oldest first
    History {
        /// Session ID (scene-YYYYMMDD-HHMMSS-xxxxxxxx)
        #[arg(value_name = "ID")]
        session_id: String,
        /// Show at most the last N entries
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// Show only entries with a sequence number above N
        #[arg(long, value_name = "N")]
        since_seq: Option<u64>,
    },
    /// Close a session and its Blender connection
    Close {
        /// Session ID (scene-YYYYMMDD-HHMMSS-xxxxxxxx)
        #[arg(value_name = "ID")]
        session_id: String,
    },
}

/// `call COMMAND_TYPE [PARAMS_JSON] [--session ID]`
#[derive(clap::Args, Debug, Clone)]
pub struct CallArgs {
    /// Blender command type, forwarded verbatim (execute_code, get_scene_info, …)
    #[arg(value_name = "COMMAND_TYPE")]
    pub command_type: String,
    /// Command params as a JSON object, e.g. '{"code": "print(1)"}' (default {})
    #[arg(value_name = "PARAMS_JSON")]
    pub params: Option<String>,
    /// Run in this session instead of creating a new one
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
}

/// Runs a client subcommand against the manager, printing to the terminal.
pub async fn run(global: &GlobalOptions, command: ClientCommand) -> std::process::ExitCode {
    let mut console = Console::Terminal;
    let code = run_with_console(global, command, &mut console).await;
    std::process::ExitCode::from(code)
}

/// Runs a client subcommand and returns what it printed and its exit status instead of printing.
pub async fn run_to_output(global: &GlobalOptions, command: ClientCommand) -> CommandOutput {
    let mut console = Console::captured();
    let code = run_with_console(global, command, &mut console).await;
    console.into_output(code)
}

/// Runs a client subcommand writing through `console`; errors are printed there as
/// `error: …` and turned into the exit status.
pub async fn run_with_console(
    global: &GlobalOptions,
    command: ClientCommand,
    console: &mut Console,
) -> u8 {
    match commands::execute(global, command, console).await {
        Ok(code) => code,
        Err(err) => {
            console.err_line(&format!("error: {err}"));
            err.exit_code()
        }
    }
}
