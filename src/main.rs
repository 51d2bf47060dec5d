//! `blender-session-manager`: `serve` (the default) runs the manager; the other
//! subcommands are clients of a running manager.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use blender_session_manager::cli::{self, ClientCommand, GlobalOptions};
use blender_session_manager::config::{Config, ServeArgs};
use blender_session_manager::manager::Manager;
use blender_session_manager::mcp::{self, McpArgs};
use blender_session_manager::{logging, server};

#[derive(Parser)]
#[command(
    name = "blender-session-manager",
    version,
    about = "Sessions, history and keep-alive links between AI tools and Blender",
    long_about = "Sessions, history and keep-alive links between AI tools and Blender.\n\n\
                  With no subcommand, runs `serve`."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalOptions,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the manager (the default when no subcommand is given)
    Serve(Box<ServeArgs>),
    /// Run a stdio MCP server over a running manager (for Claude Desktop, Cursor, Claude Code)
    Mcp(McpArgs),
    /// Check a `serve --config` file and print the settings it results in
    ///
    /// The file is read as `serve --config FILE` reads it, under the same environment
    /// (SESSION_MANAGER_*, BLENDER_HOST/BLENDER_PORT) and with no flags. Prints every
    /// setting, its value and where it came from (env, file or default; the token
    /// only as `(set)`). Exits 0 when the configuration is valid, 2 with the error
    /// otherwise.
    CheckConfig(CheckConfigArgs),
    #[command(flatten)]
    Client(ClientCommand),
}

#[derive(clap::Args)]
struct CheckConfigArgs {
    /// The TOML file to check
    file: PathBuf,
}

/// `blender-session-manager --listen X` means `serve --listen X`.
fn with_default_subcommand(mut args: Vec<String>) -> Vec<String> {
    let cmd = Cli::command();
    let names: Vec<String> = cmd
        .get_subcommands()
        .flat_map(|s| {
            std::iter::once(s.get_name().to_string()).chain(s.get_all_aliases().map(str::to_string))
        })
        .chain(["help".to_string()])
        .collect();
    let has_subcommand = args.iter().skip(1).any(|a| names.contains(a));
    let wants_info = args
        .iter()
        .skip(1)
        .any(|a| matches!(a.as_str(), "-h" | "--help" | "-V" | "--version"));
    if !has_subcommand && !wants_info {
        args.insert(1.min(args.len()), "serve".into());
    }
    args
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(with_default_subcommand(std::env::args().collect()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.command.expect("a subcommand is always set") {
        Command::Serve(args) => {
            let code = runtime.block_on(serve(*args, cli.global));
            // After a forced stop, tasks may still wait on Blender (or on a blocking
            // store read): exit without waiting for them.
            runtime.shutdown_background();
            code
        }
        Command::CheckConfig(args) => check_config(&args.file),
        Command::Mcp(args) => {
            // stdout carries the MCP protocol only: logs go to stderr.
            let _guard = logging::init(Default::default(), "warn,blender_session_manager=info");
            runtime.block_on(mcp::run(&cli.global, args))
        }
        Command::Client(command) => {
            let _guard = logging::init(Default::default(), "warn");
            runtime.block_on(cli::run(&cli.global, command))
        }
    }
}

/// The process environment, taken once: `serve` resolves its configuration from it
/// and reloads resolve against the same snapshot.
fn environment() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let env = environment();
    let args = ServeArgs {
        config: Some(file.to_path_buf()),
        ..ServeArgs::default()
    };
    match Config::resolve(&args, None, |k| env.get(k).cloned()) {
        Ok(resolved) => {
            println!("{}: valid", file.display());
            print!("{}", resolved.report());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: ServeArgs, global: GlobalOptions) -> ExitCode {
    let env = environment();
    let config = match Config::from_args(&args, global.token.clone(), |k| env.get(k).cloned()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // The log format may come from the environment or the config file.
    let _guard = logging::init(config.log_format, "info");
    // Before start-up, so a SIGHUP or SIGTERM arriving meanwhile is not lost (or,
    // for SIGHUP, fatal).
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot handle signals: {e}");
            return ExitCode::from(1);
        }
    };
    raise_open_files_limit();
    let server = match server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    server
        .manager
        .set_config_loader(Config::loader(args, global.token, env));
    while signals.next().await == Signal::Reload {
        reload(&server.manager).await;
    }
    let grace = server.manager.config().shutdown_timeout;
    tokio::select! {
        _ = server.shutdown(grace) => ExitCode::SUCCESS,
        _ = signals.stop() => {
            eprintln!("second signal: exiting without waiting for running commands");
            ExitCode::from(130)
        }
    }
}

/// SIGHUP: read the configuration again. Whatever happens, the server keeps running.
async fn reload(manager: &Manager) {
    tracing::info!("SIGHUP: reloading the configuration");
    match manager.reload_config().await {
        Ok(outcome) => {
            // The manager lists what changed as `ConfigChange`s under "changes".
            let changes = outcome.get("changes").and_then(|c| c.as_array());
            for change in changes.into_iter().flatten() {
                let text = |k: &str| match change.get(k) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let live = change.get("live").and_then(|l| l.as_bool()).unwrap_or(true);
                tracing::info!(
                    setting = %text("setting"),
                    old = %text("old"),
                    new = %text("new"),
                    "{}",
                    if live { "setting changed" } else { "setting changed; needs a restart" }
                );
            }
            tracing::info!(result = %outcome, "SIGHUP: configuration reloaded");
        }
        Err(e) => tracing::warn!(
            error = %e,
            "SIGHUP: configuration reload refused; the running configuration is kept"
        ),
    }
}

/// The signals `serve` acts on, each registered once for the life of the process,
/// so a signal arriving between two waits is kept rather than lost.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal: SIGTERM or SIGINT (Ctrl-C) is `Stop`, SIGHUP `Reload`.
    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }

    /// The next SIGTERM or SIGINT; SIGHUP is ignored meanwhile.
    async fn stop(&mut self) {
        while self.next().await != Signal::Stop {}
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    Stop,
    Reload,
}

/// Each session holds a socket: raise the soft open-files limit to the hard one.
fn raise_open_files_limit() {
    #[cfg(unix)]
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                tracing::debug!(
                    from = lim.rlim_cur,
                    to = lim.rlim_max,
                    "raised open-files limit"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed_and_defaults_to_serve() {
        Cli::command().debug_assert();
        let a = |v: &[&str]| with_default_subcommand(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(a(&["bsm"]), vec!["bsm", "serve"]);
        assert_eq!(
            a(&["bsm", "--listen", "x"]),
            vec!["bsm", "serve", "--listen", "x"]
        );
        assert_eq!(
            a(&["bsm", "--manager", "h:1", "status"]),
            vec!["bsm", "--manager", "h:1", "status"]
        );
        assert_eq!(a(&["bsm", "--help"]), vec!["bsm", "--help"]);
        assert_eq!(
            a(&["bsm", "check-config", "m.toml"]),
            vec!["bsm", "check-config", "m.toml"]
        );
        let cli = Cli::try_parse_from(a(&["bsm", "--token", "t", "--idle-timeout", "2"])).unwrap();
        assert_eq!(cli.global.token.as_deref(), Some("t"));
        assert!(
            matches!(cli.command, Some(Command::Serve(ref s)) if s.idle_timeout == Some(std::time::Duration::from_secs(2)))
        );
    }
}
