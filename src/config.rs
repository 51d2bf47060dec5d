//! Configuration of `serve`: flags, environment, the config file, and validation.
//!
//! Each setting has a flag (`--idle-timeout`), an environment variable
//! (`SESSION_MANAGER_IDLE_TIMEOUT`) and a config-file key (`idle_timeout`, see
//! [`crate::config_file`]); the first of them that is set wins, then the default.
//! `BLENDER_HOST` / `BLENDER_PORT` are honoured as in blender-mcp when no backend is
//! given any other way. [`ServeArgs`] is what the command line says; [`Config`] is
//! the validated, typed result the server runs on; [`Resolved`] adds where each
//! setting came from. Nothing here reads the process environment: it is handed in
//! as a lookup function, so tests (and reloads, which use a snapshot) choose it.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::config_file::ConfigFile;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `text` or `json` (any case), as the environment and the config file give it.
pub fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{s:?} is not a log format (text or json)")),
    }
}

/// Flags of `blender-session-manager serve`.
///
/// Every flag is optional here: one not given falls back to its environment
/// variable, then to the config file, then to its default ([`Config::resolve`]).
/// Clap's own `env` and `default_value` are not used, since they would hide which
/// of those supplied a value; the help texts say the variable and the default.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of these settings (keys: the flag names with _ for -)
    /// [env: SESSION_MANAGER_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// JSON-RPC 2.0 (NDJSON over TCP) listen address
    /// [env: SESSION_MANAGER_LISTEN] [default: 127.0.0.1:9880]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Addon-compatible listen address (point stock Blender MCP servers here)
    /// [env: SESSION_MANAGER_COMPAT_LISTEN] [default: 127.0.0.1:9877]
    #[arg(long, value_name = "ADDR")]
    pub compat_listen: Option<String>,
    /// HTTP listen address (REST, seed 000's /mcp routes, /healthz, /metrics)
    /// [env: SESSION_MANAGER_HTTP_LISTEN] [default: 127.0.0.1:9881]
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// Blender backend [NAME=]HOST:PORT[/WEIGHT]; repeat (or separate with commas) for
    /// several [env: SESSION_MANAGER_BLENDER] [default: 127.0.0.1:9876, or
    /// BLENDER_HOST/BLENDER_PORT]
    #[arg(long, value_name = "BACKEND", value_delimiter = ',')]
    pub blender: Vec<String>,
    /// Seconds without activity after which a session is closed
    /// [env: SESSION_MANAGER_IDLE_TIMEOUT] [default: 300]
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub idle_timeout: Option<Duration>,
    /// Seconds between idle sweeps [env: SESSION_MANAGER_SWEEP_INTERVAL] [default: 60]
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub sweep_interval: Option<Duration>,
    /// Seconds to wait for Blender's reply to one command
    /// [env: SESSION_MANAGER_COMMAND_TIMEOUT] [default: 180]
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub command_timeout: Option<Duration>,
    /// Seconds to wait for a TCP connect to Blender
    /// [env: SESSION_MANAGER_CONNECT_TIMEOUT] [default: 5]
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub connect_timeout: Option<Duration>,
    /// Seconds a graceful stop lets running commands finish before exiting anyway
    /// [env: SESSION_MANAGER_SHUTDOWN_TIMEOUT] [default: 30]
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub shutdown_timeout: Option<Duration>,
    /// Seconds between health probes of each backend (while none of its commands runs)
    /// [env: SESSION_MANAGER_HEALTH_INTERVAL] [default: 2]
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub health_interval: Option<Duration>,
    /// Seconds a health probe may take before it counts as failed
    /// [env: SESSION_MANAGER_HEALTH_TIMEOUT] [default: 2]
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub health_timeout: Option<Duration>,
    /// Failed probes in a row after which a backend is marked down
    /// [env: SESSION_MANAGER_HEALTH_FAILURES] [default: 3]
    #[arg(long, value_name = "N")]
    pub health_failures: Option<u32>,
    /// Seconds `send_command` waits before answering `pending` with a job id
    /// [env: SESSION_MANAGER_SYNC_WAIT] [default: 30]
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub sync_wait: Option<Duration>,
    /// Maximum number of open sessions [env: SESSION_MANAGER_MAX_SESSIONS] [default: 1000]
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Pending jobs allowed manager-wide (sync send_command included)
    /// [env: SESSION_MANAGER_MAX_QUEUE] [default: 100]
    #[arg(long, value_name = "N")]
    pub max_queue: Option<usize>,
    /// Seconds finished jobs are kept before they are pruned
    /// [env: SESSION_MANAGER_JOB_TTL] [default: 3600]
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub job_ttl: Option<Duration>,
    /// History entries kept per session (at least 1)
    /// [env: SESSION_MANAGER_HISTORY_LIMIT] [default: 1000]
    #[arg(long, value_name = "N")]
    pub history_limit: Option<usize>,
    /// Largest JSON message accepted on any socket, in bytes
    /// [env: SESSION_MANAGER_MAX_FRAME_BYTES] [default: 67108864]
    #[arg(long, value_name = "N")]
    pub max_frame_bytes: Option<usize>,
    /// Log format on stderr [env: SESSION_MANAGER_LOG_FORMAT] [default: text]
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// SQLite database file; `:memory:` keeps nothing [env: SESSION_MANAGER_DB]
    /// [default: the user's data directory, e.g.
    /// ~/.local/share/blender-session-manager/manager.db]
    #[arg(long, value_name = "PATH")]
    pub db: Option<String>,
}

/// A Blender backend address as given (host name kept for display and connects).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl std::str::FromStr for BackendAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: expected HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: port {port:?} is not a number from 0 to 65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{s:?}: missing host"));
        }
        Ok(BackendAddr {
            host: host.to_string(),
            port,
        })
    }
}

/// One Blender backend: a name (unique; the address when not given), its address,
/// and its weight in placement (a backend of weight 2 takes twice the sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    pub name: String,
    pub address: BackendAddr,
    pub weight: u32,
}

impl BackendSpec {
    pub fn new(address: BackendAddr) -> Self {
        BackendSpec {
            name: address.to_string(),
            address,
            weight: 1,
        }
    }
}

impl std::fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name != self.address.to_string() {
            write!(f, "{}=", self.name)?;
        }
        write!(f, "{}", self.address)?;
        if self.weight != 1 {
            write!(f, "/{}", self.weight)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for BackendSpec {
    type Err = String;
    /// `[NAME=]HOST:PORT[/WEIGHT]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (name, rest) = match s.split_once('=') {
            Some((n, r)) => (Some(n.trim()), r),
            None => (None, s),
        };
        let (addr, weight) = match rest.rsplit_once('/') {
            Some((a, w)) => {
                let w: u32 = w
                    .trim()
                    .parse()
                    .map_err(|_| format!("{s:?}: weight {w:?} is not a whole number from 1 up"))?;
                (a, w)
            }
            None => (rest, 1),
        };
        let address: BackendAddr = addr.parse()?;
        let spec = BackendSpec {
            name: name
                .map(str::to_string)
                .unwrap_or_else(|| address.to_string()),
            address,
            weight,
        };
        spec.check().map_err(|e| format!("{s:?}: {e}"))?;
        Ok(spec)
    }
}

impl BackendSpec {
    /// Name and weight rules shared by flags and the config file.
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("empty backend name".into());
        }
        if self
            .name
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == '=')
        {
            return Err(format!(
                "backend name {:?} may not contain spaces, commas or '='",
                self.name
            ));
        }
        if self.weight == 0 {
            return Err("weight must be at least 1".into());
        }
        Ok(())
    }
}

/// Refuses two backends with one name or one address.
pub fn check_backends(backends: &[BackendSpec]) -> Result<(), String> {
    if backends.is_empty() {
        return Err("no Blender backend configured".into());
    }
    for (i, b) in backends.iter().enumerate() {
        b.check()?;
        for other in &backends[..i] {
            if other.name == b.name {
                return Err(format!("two backends are named {:?}", b.name));
            }
            if other.address == b.address {
                return Err(format!("two backends have the address {}", b.address));
            }
        }
    }
    Ok(())
}

/// The validated configuration the server runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub compat_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// Blender backends, in the order given (at least one).
    pub backends: Vec<BackendSpec>,
    pub idle_timeout: Duration,
    pub sweep_interval: Duration,
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    pub sync_wait: Duration,
    pub shutdown_timeout: Duration,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub health_failures: u32,
    pub max_sessions: usize,
    pub max_queue: usize,
    pub job_ttl: Duration,
    pub history_limit: usize,
    pub max_frame_bytes: usize,
    pub token: Option<String>,
    pub log_format: LogFormat,
    pub db: String,
    /// Results above this many bytes are stored truncated in history and state.
    pub history_result_limit: usize,
    /// Snapshots kept per session.
    pub snapshot_limit: usize,
    /// Scenes above this many bytes are stored truncated in snapshots.
    pub snapshot_scene_limit: usize,
    /// Closed sessions whose history stays readable.
    pub closed_session_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9880".parse().unwrap(),
            compat_listen: "127.0.0.1:9877".parse().unwrap(),
            http_listen: "127.0.0.1:9881".parse().unwrap(),
            backends: vec![BackendSpec::new(BackendAddr {
                host: "127.0.0.1".into(),
                port: 9876,
            })],
            idle_timeout: Duration::from_secs(300),
            sweep_interval: Duration::from_secs(60),
            command_timeout: Duration::from_secs(180),
            connect_timeout: Duration::from_secs(5),
            sync_wait: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            health_interval: Duration::from_secs(2),
            health_timeout: Duration::from_secs(2),
            health_failures: 3,
            max_sessions: 1000,
            max_queue: 100,
            job_ttl: Duration::from_secs(3600),
            history_limit: 1000,
            max_frame_bytes: 64 * 1024 * 1024,
            token: None,
            log_format: LogFormat::Text,
            db: ":memory:".into(),
            history_result_limit: 16 * 1024,
            snapshot_limit: 100,
            snapshot_scene_limit: 1024 * 1024,
            closed_session_limit: 1000,
        }
    }
}

/// Why a configuration was refused. The message names the flag, environment
/// variable or config-file key (with its file and line) at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Where a setting's value came from, in precedence order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::File => "file",
            Source::Default => "default",
        }
    }
}

/// Every setting of `serve`, by config-file key, in the order they are shown.
/// `backends` is the `--blender` flag (`SESSION_MANAGER_BLENDER`); every other key
/// is its flag with `_` for `-`.
pub const SETTINGS: [&str; 21] = [
    "listen",
    "compat_listen",
    "http_listen",
    "backends",
    "idle_timeout",
    "sweep_interval",
    "command_timeout",
    "connect_timeout",
    "sync_wait",
    "shutdown_timeout",
    "health_interval",
    "health_timeout",
    "health_failures",
    "max_sessions",
    "max_queue",
    "job_ttl",
    "history_limit",
    "max_frame_bytes",
    "token",
    "log_format",
    "db",
];

/// The flag of a setting: `--idle-timeout`, `--blender`.
pub fn flag_name(key: &str) -> String {
    match key {
        "backends" => "--blender".into(),
        _ => format!("--{}", key.replace('_', "-")),
    }
}

/// The environment variable of a setting: `SESSION_MANAGER_IDLE_TIMEOUT`.
pub fn env_name(key: &str) -> String {
    match key {
        "backends" => "SESSION_MANAGER_BLENDER".into(),
        _ => format!("SESSION_MANAGER_{}", key.to_ascii_uppercase()),
    }
}

/// Settings that take effect on a reload; the others (what is bound or opened at
/// start-up) need a restart.
pub fn is_live(setting: &str) -> bool {
    !matches!(
        setting,
        "listen" | "compat_listen" | "http_listen" | "db" | "log_format"
    )
}

impl Config {
    /// This configuration with the settings [`is_live`] refuses taken from
    /// `running`: what a reload puts in force.
    pub fn keeping_restart_settings(mut self, running: &Config) -> Config {
        self.listen = running.listen;
        self.compat_listen = running.compat_listen;
        self.http_listen = running.http_listen;
        self.db = running.db.clone();
        self.log_format = running.log_format;
        self
    }
}

/// One setting that differs between two configurations (see [`Config::changes`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigChange {
    /// The config-file key (`idle_timeout`, `backends`, ...).
    pub setting: &'static str,
    pub old: String,
    pub new: String,
    /// `false` when the running manager keeps the old value until a restart.
    pub live: bool,
}

/// A configuration with where each setting came from, and the file read (if any).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    pub file: Option<PathBuf>,
    sources: HashMap<&'static str, Source>,
}

impl Resolved {
    pub fn source(&self, setting: &str) -> Source {
        self.sources
            .get(setting)
            .copied()
            .unwrap_or(Source::Default)
    }

    /// The effective configuration as `check-config` prints it: one line per
    /// setting with its value (the token never shown) and where it came from.
    pub fn report(&self) -> String {
        let settings = self.config.settings();
        let width = settings.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in settings {
            let source = self.source(key).as_str();
            out.push_str(&format!("{key:<16}  {value:<width$}  ({source})\n"));
        }
        out
    }
}

/// The layers under the flags: the environment and the config file. Records where
/// each setting came from, so an error names the one at fault.
struct Layers<'a, E> {
    env: &'a E,
    file: &'a ConfigFile,
    sources: HashMap<&'static str, Source>,
}

impl<E: Fn(&str) -> Option<String>> Layers<'_, E> {
    /// The flag's value, else the environment variable's (parsed), else the file's;
    /// `None` means the default.
    fn pick<T>(
        &mut self,
        key: &'static str,
        flag: Option<T>,
        parse: impl Fn(&str) -> Result<T, String>,
        file: Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        if flag.is_some() {
            self.sources.insert(key, Source::Flag);
            return Ok(flag);
        }
        let var = env_name(key);
        if let Some(raw) = (self.env)(&var).filter(|s| !s.trim().is_empty()) {
            self.sources.insert(key, Source::Env);
            return parse(&raw)
                .map(Some)
                .map_err(|e| ConfigError(format!("{var}: {e}")));
        }
        if file.is_some() {
            self.sources.insert(key, Source::File);
        }
        Ok(file)
    }

    fn seconds(
        &mut self,
        key: &'static str,
        flag: Option<Duration>,
        file: Option<Duration>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        Ok(self
            .pick(key, flag, parse_seconds, file)?
            .unwrap_or(default))
    }

    fn count<T: std::str::FromStr>(
        &mut self,
        key: &'static str,
        flag: Option<T>,
        file: Option<T>,
        default: T,
    ) -> Result<T, ConfigError> {
        let parse = |s: &str| {
            s.trim()
                .parse::<T>()
                .map_err(|_| format!("{s:?} is not a whole number in range"))
        };
        Ok(self.pick(key, flag, parse, file)?.unwrap_or(default))
    }

    fn listen(
        &mut self,
        key: &'static str,
        flag: &Option<String>,
        file: &Option<String>,
        default: SocketAddr,
    ) -> Result<SocketAddr, ConfigError> {
        let text = |s: &str| Ok(s.trim().to_string());
        match self.pick(key, flag.clone(), text, file.clone())? {
            Some(value) => resolve_listen(&self.label(key), &value),
            None => Ok(default),
        }
    }

    /// How an error names a setting: by the layer its value came from.
    fn label(&self, key: &str) -> String {
        match self.sources.get(key) {
            Some(Source::Env) => env_name(key),
            Some(Source::File) => self.file.label(key),
            _ => flag_name(key),
        }
    }
}

impl Config {
    /// Validates command-line arguments over the environment and the config file.
    /// `env` looks up environment variables (injected so tests need not touch the
    /// process environment). The token is the global `--token` option, shared with
    /// the client subcommands.
    pub fn from_args(
        args: &ServeArgs,
        token: Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::resolve(args, token, env).map(|r| r.config)
    }

    /// [`Config::from_args`], keeping where each setting came from. Precedence:
    /// flag > environment (`SESSION_MANAGER_*`) > config file (`--config`, else
    /// `SESSION_MANAGER_CONFIG`) > default. `token` is what clap read for the global
    /// `--token`, itself flag > `SESSION_MANAGER_TOKEN`.
    pub fn resolve(
        args: &ServeArgs,
        token: Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Resolved, ConfigError> {
        let given = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        let path = args
            .config
            .clone()
            .or_else(|| given(env("SESSION_MANAGER_CONFIG")).map(PathBuf::from));
        let file = match &path {
            Some(path) => ConfigFile::read(path)?,
            None => ConfigFile::default(),
        };
        let mut l = Layers {
            env: &env,
            file: &file,
            sources: HashMap::new(),
        };
        let d = Config::default();
        let text = |s: &str| Ok(s.trim().to_string());

        let listen = l.listen("listen", &args.listen, &file.listen, d.listen)?;
        let compat_listen = l.listen(
            "compat_listen",
            &args.compat_listen,
            &file.compat_listen,
            d.compat_listen,
        )?;
        let http_listen = l.listen(
            "http_listen",
            &args.http_listen,
            &file.http_listen,
            d.http_listen,
        )?;

        let flag_backends = args
            .blender
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse::<BackendSpec>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError(format!("--blender {e}")))?;
        let backends = l.pick(
            "backends",
            (!flag_backends.is_empty()).then_some(flag_backends),
            parse_backend_list,
            file.backends.clone(),
        )?;
        let backends = match backends {
            Some(b) => b,
            None => {
                let host = given(env("BLENDER_HOST"));
                let port = given(env("BLENDER_PORT"));
                if host.is_some() || port.is_some() {
                    l.sources.insert("backends", Source::Env);
                }
                let port = match port {
                    Some(p) => p.trim().parse::<u16>().map_err(|_| {
                        ConfigError(format!("BLENDER_PORT {p:?} is not a port number"))
                    })?,
                    None => 9876,
                };
                let host = host.unwrap_or_else(|| "127.0.0.1".into());
                vec![BackendSpec::new(BackendAddr { host, port })]
            }
        };
        check_backends(&backends)
            .map_err(|e| ConfigError(format!("{}: {e}", l.label("backends"))))?;

        let env_token = given(env("SESSION_MANAGER_TOKEN"));
        let token = match (given(token), env_token, given(file.token.clone())) {
            (Some(t), from_env, _) => {
                let source = if from_env.as_ref() == Some(&t) {
                    Source::Env
                } else {
                    Source::Flag
                };
                l.sources.insert("token", source);
                Some(t)
            }
            (None, Some(t), _) => {
                l.sources.insert("token", Source::Env);
                Some(t)
            }
            (None, None, Some(t)) => {
                l.sources.insert("token", Source::File);
                Some(t)
            }
            (None, None, None) => None,
        };
        for (key, address) in [("listen", listen), ("http_listen", http_listen)] {
            if token.is_none() && !address.ip().is_loopback() {
                return Err(ConfigError(format!(
                    "{} {address}: refusing to listen beyond loopback without a token; \
                     set --token (or SESSION_MANAGER_TOKEN, or token in the config file) \
                     so callers must authenticate",
                    l.label(key)
                )));
            }
        }
        if !compat_listen.ip().is_loopback() {
            return Err(ConfigError(format!(
                "{} {compat_listen}: the addon-compatible port cannot carry a token, \
                 so it only binds loopback addresses (for example 127.0.0.1:9877)",
                l.label("compat_listen")
            )));
        }

        // The flag, environment variable, file value and default of one setting.
        macro_rules! layered {
            ($kind:ident $key:ident) => {
                l.$kind(stringify!($key), args.$key, file.$key, d.$key)?
            };
        }
        let idle_timeout = layered!(seconds idle_timeout);
        let sweep_interval = layered!(seconds sweep_interval);
        let command_timeout = layered!(seconds command_timeout);
        let connect_timeout = layered!(seconds connect_timeout);
        let sync_wait = layered!(seconds sync_wait);
        let shutdown_timeout = layered!(seconds shutdown_timeout);
        let health_interval = layered!(seconds health_interval);
        let health_timeout = layered!(seconds health_timeout);
        let job_ttl = layered!(seconds job_ttl);
        for (key, value) in [
            ("sweep_interval", sweep_interval),
            ("command_timeout", command_timeout),
            ("connect_timeout", connect_timeout),
            ("health_interval", health_interval),
            ("health_timeout", health_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError(format!(
                    "{} must be above 0 seconds",
                    l.label(key)
                )));
            }
        }
        let health_failures = layered!(count health_failures);
        if health_failures == 0 {
            return Err(ConfigError(format!(
                "{} must be at least 1",
                l.label("health_failures")
            )));
        }
        let max_sessions = layered!(count max_sessions);
        let max_queue = layered!(count max_queue);
        let history_limit = layered!(count history_limit);
        let max_frame_bytes = layered!(count max_frame_bytes);
        if max_frame_bytes < 1024 {
            return Err(ConfigError(format!(
                "{} must be at least 1024",
                l.label("max_frame_bytes")
            )));
        }
        let log_format = l
            .pick(
                "log_format",
                args.log_format,
                parse_log_format,
                file.log_format,
            )?
            .unwrap_or_default();
        let db = match l.pick("db", given(args.db.clone()), text, given(file.db.clone()))? {
            Some(db) => db,
            None => default_db_path(&env).ok_or_else(|| {
                ConfigError(
                    "--db: no data directory found (set HOME, XDG_DATA_HOME or LOCALAPPDATA, or pass --db PATH)"
                        .into(),
                )
            })?,
        };
        let sources = l.sources;
        Ok(Resolved {
            config: Config {
                listen,
                compat_listen,
                http_listen,
                backends,
                idle_timeout,
                sweep_interval,
                command_timeout,
                connect_timeout,
                sync_wait,
                shutdown_timeout,
                health_interval,
                health_timeout,
                health_failures,
                max_sessions,
                max_queue,
                job_ttl,
                history_limit: history_limit.max(1),
                max_frame_bytes,
                token,
                log_format,
                db,
                ..d
            },
            file: path,
            sources,
        })
    }

    /// A loader for [`crate::manager::Manager::set_config_loader`]: resolves the
    /// configuration as `serve` did at start-up — the same flags, the environment as
    /// it was then (`env`, a snapshot), the config file read again on every call.
    pub fn loader(
        args: ServeArgs,
        token: Option<String>,
        env: HashMap<String, String>,
    ) -> crate::manager::ConfigLoader {
        Arc::new(move || Config::from_args(&args, token.clone(), |k| env.get(k).cloned()))
    }

    /// Every setting in [`SETTINGS`] order, by config-file key, with its value as
    /// text; the token shows as `(set)` or `(none)`, never its value.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let s = |d: Duration| format!("{}", d.as_secs_f64());
        let backends = self
            .backends
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let token = if self.token.is_some() {
            "(set)"
        } else {
            "(none)"
        };
        let values = [
            self.listen.to_string(),
            self.compat_listen.to_string(),
            self.http_listen.to_string(),
            backends,
            s(self.idle_timeout),
            s(self.sweep_interval),
            s(self.command_timeout),
            s(self.connect_timeout),
            s(self.sync_wait),
            s(self.shutdown_timeout),
            s(self.health_interval),
            s(self.health_timeout),
            self.health_failures.to_string(),
            self.max_sessions.to_string(),
            self.max_queue.to_string(),
            s(self.job_ttl),
            self.history_limit.to_string(),
            self.max_frame_bytes.to_string(),
            token.to_string(),
            self.log_format.as_str().to_string(),
            self.db.clone(),
        ];
        SETTINGS.into_iter().zip(values).collect()
    }

    /// What differs from `self` (the running configuration) in `new`, setting by
    /// setting in [`SETTINGS`] order. A token is never shown: a changed one reads
    /// `(set)` → `(set, changed)`.
    pub fn changes(&self, new: &Config) -> Vec<ConfigChange> {
        self.settings()
            .into_iter()
            .zip(new.settings())
            .filter_map(|((setting, old), (_, shown))| {
                let shown = if setting == "token" {
                    match (&self.token, &new.token) {
                        (a, b) if a == b => return None,
                        (Some(_), Some(_)) => "(set, changed)".to_string(),
                        _ => shown,
                    }
                } else if old == shown {
                    return None;
                } else {
                    shown
                };
                Some(ConfigChange {
                    setting,
                    old,
                    new: shown,
                    live: is_live(setting),
                })
            })
            .collect()
    }
}

/// A comma-separated list of `[NAME=]HOST:PORT[/WEIGHT]`, as `SESSION_MANAGER_BLENDER`
/// gives it.
fn parse_backend_list(s: &str) -> Result<Vec<BackendSpec>, String> {
    s.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect()
}

fn resolve_listen(label: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .to_socket_addrs()
        .map_err(|e| ConfigError(format!("{label} {value}: {e}")))?
        .next()
        .ok_or_else(|| ConfigError(format!("{label} {value}: resolves to no address")))
}

/// `$XDG_DATA_HOME/blender-session-manager/manager.db`, else under
/// `$HOME/.local/share`.
pub fn default_db_path(env: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let var = |k: &str| env(k).filter(|s| !s.is_empty());
    let base = match (var("XDG_DATA_HOME"), var("HOME"), var("LOCALAPPDATA")) {
        (Some(d), _, _) => std::path::PathBuf::from(d),
        (None, Some(home), _) => std::path::PathBuf::from(home).join(".local").join("share"),
        // Windows: %LOCALAPPDATA%\blender-session-manager\manager.db
        (None, None, Some(local)) => std::path::PathBuf::from(local),
        (None, None, None) => return None,
    };
    Some(
        base.join("blender-session-manager")
            .join("manager.db")
            .to_string_lossy()
            .into_owned(),
    )
}

/// Parses seconds (integer or float) into a duration.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    seconds(v).map_err(|e| format!("{s:?} {e}"))
}

/// A number of seconds as a duration; the error completes "VALUE …".
pub fn seconds(v: f64) -> Result<Duration, String> {
    if !v.is_finite() || v < 0.0 {
        return Err("must be a non-negative number of seconds".into());
    }
    Duration::try_from_secs_f64(v).map_err(|_| "is too many seconds".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> ServeArgs {
        let mut all = vec!["t"];
        all.extend_from_slice(args);
        T::try_parse_from(all).unwrap().serve
    }

    /// A config file under the temp directory, unique to this process and `name`.
    fn write_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bsm-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    #[test]
    fn durations_accept_floats() {
        let a = parse(&["--idle-timeout", "1.5", "--command-timeout", "2"]);
        assert_eq!(a.idle_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(a.command_timeout, Some(Duration::from_secs(2)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("1e300").is_err());
    }

    #[test]
    fn blender_env_fallback() {
        let a = parse(&["--db", ":memory:"]);
        let c = Config::from_args(&a, None, |k| match k {
            "BLENDER_HOST" => Some("10.0.0.5".into()),
            "BLENDER_PORT" => Some("7777".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.backends[0].address.to_string(), "10.0.0.5:7777");
        let a = parse(&["--blender", "localhost:9999", "--db", ":memory:"]);
        let c =
            Config::from_args(&a, None, |k| k.starts_with("BLENDER_").then(|| "1".into())).unwrap();
        assert_eq!(c.backends[0].address.to_string(), "localhost:9999");
    }

    #[test]
    fn several_backends_with_names_and_weights() {
        let a = parse(&[
            "--blender",
            "a=127.0.0.1:9001/3,127.0.0.1:9002",
            "--blender",
            "c=localhost:9003",
            "--db",
            ":memory:",
        ]);
        let c = Config::from_args(&a, None, |_| None).unwrap();
        let got: Vec<String> = c
            .backends
            .iter()
            .map(|b| format!("{}|{}|{}", b.name, b.address, b.weight))
            .collect();
        assert_eq!(
            got,
            [
                "a|127.0.0.1:9001|3",
                "127.0.0.1:9002|127.0.0.1:9002|1",
                "c|localhost:9003|1"
            ]
        );
        assert_eq!(c.backends[0].to_string(), "a=127.0.0.1:9001/3");
        assert_eq!(c.backends[1].to_string(), "127.0.0.1:9002");
        for (bad, why) in [
            (
                "a=127.0.0.1:1,a=127.0.0.1:2",
                "two backends are named \"a\"",
            ),
            (
                "127.0.0.1:1,x=127.0.0.1:1",
                "two backends have the address 127.0.0.1:1",
            ),
            ("a=127.0.0.1:1/0", "weight must be at least 1"),
            ("a=127.0.0.1:1/x", "weight \"x\""),
            ("=127.0.0.1:1", "empty backend name"),
        ] {
            let a = parse(&["--blender", bad, "--db", ":memory:"]);
            let e = Config::from_args(&a, None, |_| None)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("--blender") && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn refuses_non_loopback_without_token() {
        let a = parse(&["--listen", "0.0.0.0:9880", "--db", ":memory:"]);
        let e = Config::from_args(&a, None, |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--token"), "{e}");
        let a = parse(&["--listen", "0.0.0.0:9880", "--db", ":memory:"]);
        assert!(Config::from_args(&a, Some("s3cret".into()), |_| None).is_ok());
        let a = parse(&["--compat-listen", "0.0.0.0:9877", "--db", ":memory:"]);
        let e = Config::from_args(&a, Some("s3cret".into()), |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--compat-listen"), "{e}");
        let a = parse(&["--http-listen", "0.0.0.0:9881", "--db", ":memory:"]);
        let e = Config::from_args(&a, None, |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--http-listen 0.0.0.0:9881:") && e.contains("--token"),
            "{e}"
        );
        let c = Config::from_args(&a, Some("s3cret".into()), |_| None).unwrap();
        assert_eq!(c.http_listen.to_string(), "0.0.0.0:9881");
    }

    #[test]
    fn http_listen_defaults_to_loopback_9881() {
        let a = parse(&["--db", ":memory:"]);
        let c = Config::from_args(&a, None, |_| None).unwrap();
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:9881");
        assert_eq!(Config::default().http_listen, c.http_listen);
        let a = parse(&["--http-listen", "127.0.0.1:0", "--db", ":memory:"]);
        let c = Config::from_args(&a, None, |_| None).unwrap();
        assert_eq!(c.http_listen.port(), 0);
        let a = parse(&["--http-listen", "nope", "--db", ":memory:"]);
        let e = Config::from_args(&a, None, |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--http-listen nope:"), "{e}");
    }

    #[test]
    fn db_defaults_to_the_data_directory() {
        let a = parse(&[]);
        let c = Config::from_args(&a, None, |k| (k == "HOME").then(|| "/home/ada".into())).unwrap();
        assert_eq!(
            c.db,
            "/home/ada/.local/share/blender-session-manager/manager.db"
        );
        let c = Config::from_args(&a, None, |k| (k == "XDG_DATA_HOME").then(|| "/data".into()))
            .unwrap();
        assert_eq!(c.db, "/data/blender-session-manager/manager.db");
        let a = parse(&["--db", ":memory:"]);
        assert_eq!(
            Config::from_args(&a, None, |_| None).unwrap().db,
            ":memory:"
        );
        assert!(Config::from_args(&parse(&[]), None, |_| None).is_err());
        let c = Config::from_args(&parse(&[]), None, |k| {
            (k == "LOCALAPPDATA").then(|| "C:/Users/ada/AppData/Local".into())
        })
        .unwrap();
        assert!(c.db.starts_with("C:/Users/ada/AppData/Local"), "{}", c.db);
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let a = parse(&["--command-timeout", "0", "--db", ":memory:"]);
        let e = Config::from_args(&a, None, |_| None)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--command-timeout must be above 0 seconds");
    }

    #[test]
    fn bad_backend_names_the_flag() {
        let a = parse(&["--blender", "nohost", "--db", ":memory:"]);
        let e = Config::from_args(&a, None, |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--blender"), "{e}");
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let file = write_file("precedence", "idle_timeout = 10\nmax_queue = 7\n");
        let file = file.to_str().unwrap();
        let env = env_of(&[
            ("SESSION_MANAGER_IDLE_TIMEOUT", "20"),
            ("SESSION_MANAGER_MAX_QUEUE", "8"),
            ("SESSION_MANAGER_DB", ":memory:"),
        ]);
        let r = Config::resolve(
            &parse(&["--config", file, "--idle-timeout", "30"]),
            None,
            &env,
        )
        .unwrap();
        assert_eq!(r.config.idle_timeout, Duration::from_secs(30));
        assert_eq!(r.source("idle_timeout"), Source::Flag);
        assert_eq!(r.config.max_queue, 8);
        assert_eq!(r.source("max_queue"), Source::Env);
        assert_eq!(r.source("db"), Source::Env);
        let r = Config::resolve(
            &parse(&["--config", file, "--db", ":memory:"]),
            None,
            |_| None,
        )
        .unwrap();
        assert_eq!(r.config.idle_timeout, Duration::from_secs(10));
        assert_eq!(r.source("idle_timeout"), Source::File);
        assert_eq!(r.config.max_queue, 7);
        assert_eq!(r.config.sync_wait, Duration::from_secs(30));
        assert_eq!(r.source("sync_wait"), Source::Default);
        assert_eq!(r.source("db"), Source::Flag);
        assert_eq!(r.file.as_deref(), Some(std::path::Path::new(file)));
        let r = Config::resolve(&parse(&["--db", ":memory:"]), None, |_| None).unwrap();
        assert_eq!(r.config.idle_timeout, Duration::from_secs(300));
        assert_eq!(r.source("idle_timeout"), Source::Default);
        assert_eq!(r.file, None);
    }

    #[test]
    fn the_config_file_can_come_from_the_environment() {
        let from_env = write_file("from-env", "max_sessions = 11\n");
        let from_flag = write_file("from-flag", "max_sessions = 12\n");
        let env = env_of(&[
            ("SESSION_MANAGER_CONFIG", from_env.to_str().unwrap()),
            ("SESSION_MANAGER_DB", ":memory:"),
        ]);
        let c = Config::from_args(&parse(&[]), None, &env).unwrap();
        assert_eq!(c.max_sessions, 11);
        let a = parse(&["--config", from_flag.to_str().unwrap()]);
        assert_eq!(Config::from_args(&a, None, &env).unwrap().max_sessions, 12);
    }

    #[test]
    fn every_setting_can_come_from_the_file() {
        let file = write_file(
            "every",
            r#"
listen = "127.0.0.1:1"
compat_listen = "127.0.0.1:2"
http_listen = "127.0.0.1:3"
idle_timeout = 4
sweep_interval = 5
command_timeout = 6
connect_timeout = 7
sync_wait = 8
shutdown_timeout = 9
health_interval = 10
health_timeout = 11
health_failures = 12
max_sessions = 13
max_queue = 14
job_ttl = 15
history_limit = 16
max_frame_bytes = 1700
log_format = "json"
db = ":memory:"
token = "from-the-file"

[[backends]]
name = "a"
address = "127.0.0.1:9001"
weight = 2
"#,
        );
        let a = parse(&["--config", file.to_str().unwrap()]);
        let r = Config::resolve(&a, None, |_| None).unwrap();
        for key in SETTINGS {
            assert_eq!(r.source(key), Source::File, "{key}");
        }
        let c = &r.config;
        assert_eq!(c.health_failures, 12);
        assert_eq!(c.max_frame_bytes, 1700);
        assert_eq!(c.token.as_deref(), Some("from-the-file"));
        assert_eq!(c.backends[0].to_string(), "a=127.0.0.1:9001/2");
        let values: Vec<String> = c.settings().into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            values,
            [
                "127.0.0.1:1",
                "127.0.0.1:2",
                "127.0.0.1:3",
                "a=127.0.0.1:9001/2",
                "4",
                "5",
                "6",
                "7",
                "8",
                "9",
                "10",
                "11",
                "12",
                "13",
                "14",
                "15",
                "16",
                "1700",
                "(set)",
                "json",
                ":memory:"
            ]
        );
    }

    #[test]
    fn env_values_are_parsed_and_named_when_wrong() {
        let cases = [
            (
                "SESSION_MANAGER_IDLE_TIMEOUT",
                "soon",
                "SESSION_MANAGER_IDLE_TIMEOUT: \"soon\" is not a number of seconds",
            ),
            (
                "SESSION_MANAGER_MAX_QUEUE",
                "-1",
                "SESSION_MANAGER_MAX_QUEUE: \"-1\" is not a whole number",
            ),
            (
                "SESSION_MANAGER_LOG_FORMAT",
                "xml",
                "SESSION_MANAGER_LOG_FORMAT: \"xml\" is not a log format",
            ),
            (
                "SESSION_MANAGER_BLENDER",
                "a=h:1,nohost",
                "SESSION_MANAGER_BLENDER: \"nohost\": expected HOST:PORT",
            ),
            (
                "SESSION_MANAGER_LISTEN",
                "nope",
                "SESSION_MANAGER_LISTEN nope:",
            ),
            (
                "SESSION_MANAGER_SWEEP_INTERVAL",
                "0",
                "SESSION_MANAGER_SWEEP_INTERVAL must be above 0 seconds",
            ),
        ];
        for (var, value, want) in cases {
            let env = env_of(&[(var, value), ("SESSION_MANAGER_DB", ":memory:")]);
            let e = Config::from_args(&parse(&[]), None, env).unwrap_err().0;
            assert!(e.starts_with(want), "{var}={value}: {e}");
        }
        let env = env_of(&[
            ("SESSION_MANAGER_BLENDER", "a=127.0.0.1:1/2, b=127.0.0.1:2"),
            ("SESSION_MANAGER_LOG_FORMAT", "JSON"),
            ("SESSION_MANAGER_IDLE_TIMEOUT", ""),
            ("SESSION_MANAGER_DB", ":memory:"),
        ]);
        let c = Config::from_args(&parse(&[]), None, env).unwrap();
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(
            c.idle_timeout,
            Duration::from_secs(300),
            "empty means unset"
        );
    }

    #[test]
    fn file_values_at_fault_are_named_by_file_line_and_key() {
        for (name, text, want) in [
            ("zero", "\ncommand_timeout = 0\n", ":2: command_timeout must be above 0 seconds"),
            ("frames", "max_frame_bytes = 10\n", ":1: max_frame_bytes must be at least 1024"),
            ("failures", "health_failures = 0\n", ":1: health_failures must be at least 1"),
            ("open", "http_listen = \"0.0.0.0:1\"\n", ":1: http_listen 0.0.0.0:1: refusing to listen beyond loopback"),
            ("compat", "compat_listen = \"0.0.0.0:1\"\n", ":1: compat_listen 0.0.0.0:1: the addon-compatible port"),
            ("bad-listen", "listen = \"nope\"\n", ":1: listen nope:"),
            (
                "dupes",
                "[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[backends]]\nname = \"a\"\naddress = \"127.0.0.1:2\"\n",
                ":1: backends: two backends are named \"a\"",
            ),
            (
                "same-address",
                "blender = [\"a=127.0.0.1:1\", \"b=127.0.0.1:1\"]\n",
                ":1: backends: two backends have the address 127.0.0.1:1",
            ),
        ] {
            let file = write_file(name, text);
            let a = parse(&["--config", file.to_str().unwrap(), "--db", ":memory:"]);
            let e = Config::from_args(&a, None, |_| None).unwrap_err().0;
            assert_eq!(
                e.strip_prefix(file.to_str().unwrap()).map(|rest| rest.starts_with(want)),
                Some(true),
                "{name}: {e}"
            );
        }
        let file = write_file("open-with-token", "listen = \"0.0.0.0:1\"\ntoken = \"t\"\n");
        let a = parse(&["--config", file.to_str().unwrap(), "--db", ":memory:"]);
        assert!(Config::from_args(&a, None, |_| None).is_ok());
    }

    #[test]
    fn backends_from_the_file_beat_blender_host() {
        let file = write_file("backends", "[[backends]]\naddress = \"127.0.0.1:9001\"\n");
        let a = parse(&["--config", file.to_str().unwrap(), "--db", ":memory:"]);
        let env = env_of(&[("BLENDER_HOST", "10.0.0.5"), ("BLENDER_PORT", "7777")]);
        let r = Config::resolve(&a, None, &env).unwrap();
        assert_eq!(r.config.backends[0].to_string(), "127.0.0.1:9001");
        assert_eq!(r.source("backends"), Source::File);
        let r = Config::resolve(&parse(&["--db", ":memory:"]), None, &env).unwrap();
        assert_eq!(r.config.backends[0].to_string(), "10.0.0.5:7777");
        assert_eq!(r.source("backends"), Source::Env);
        let a = parse(&[
            "--config",
            file.to_str().unwrap(),
            "--blender",
            "127.0.0.1:9002",
            "--db",
            ":memory:",
        ]);
        let r = Config::resolve(&a, None, &env).unwrap();
        assert_eq!(r.config.backends[0].to_string(), "127.0.0.1:9002");
        assert_eq!(r.source("backends"), Source::Flag);
    }

    #[test]
    fn the_token_says_where_it_came_from_and_never_what_it_is() {
        let file = write_file("token", "token = \"file-secret\"\n");
        let a = parse(&["--config", file.to_str().unwrap(), "--db", ":memory:"]);
        let r = Config::resolve(&a, None, |_| None).unwrap();
        assert_eq!(r.config.token.as_deref(), Some("file-secret"));
        assert_eq!(r.source("token"), Source::File);
        // clap hands over SESSION_MANAGER_TOKEN as the token when no flag is given.
        let env = env_of(&[("SESSION_MANAGER_TOKEN", "env-secret")]);
        let r = Config::resolve(&a, Some("env-secret".into()), &env).unwrap();
        assert_eq!(r.config.token.as_deref(), Some("env-secret"));
        assert_eq!(r.source("token"), Source::Env);
        let r = Config::resolve(&a, Some("flag-secret".into()), &env).unwrap();
        assert_eq!(r.config.token.as_deref(), Some("flag-secret"));
        assert_eq!(r.source("token"), Source::Flag);
        let report = r.report();
        assert!(!report.contains("secret"), "{report}");
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("token ") && l.contains("(set)") && l.ends_with("(flag)")),
            "{report}"
        );
    }

    #[test]
    fn the_report_lists_every_setting_with_its_source() {
        let file = write_file("report", "idle_timeout = 1.5\n");
        let a = parse(&["--config", file.to_str().unwrap(), "--max-queue", "5"]);
        let env = env_of(&[("SESSION_MANAGER_DB", ":memory:")]);
        let report = Config::resolve(&a, None, &env).unwrap().report();
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines.len(), SETTINGS.len(), "{report}");
        for (line, key) in lines.iter().zip(SETTINGS) {
            assert!(line.starts_with(&format!("{key} ")), "{line}");
        }
        let line = |key: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(&format!("{key} ")))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(line("idle_timeout"), ["idle_timeout", "1.5", "(file)"]);
        assert_eq!(line("max_queue"), ["max_queue", "5", "(flag)"]);
        assert_eq!(line("db"), ["db", ":memory:", "(env)"]);
        assert_eq!(line("listen"), ["listen", "127.0.0.1:9880", "(default)"]);
        assert_eq!(line("token"), ["token", "(none)", "(default)"]);
    }

    #[test]
    fn changes_lists_what_differs_and_whether_it_applies_live() {
        let old = Config::default();
        assert_eq!(old.changes(&old.clone()), []);
        let mut new = old.clone();
        new.idle_timeout = Duration::from_millis(2500);
        new.listen = "127.0.0.1:1".parse().unwrap();
        new.backends.push("b=127.0.0.1:9002/2".parse().unwrap());
        new.log_format = LogFormat::Json;
        new.token = Some("s3cret".into());
        let got = old.changes(&new);
        let want = [
            ("listen", "127.0.0.1:9880", "127.0.0.1:1", false),
            (
                "backends",
                "127.0.0.1:9876",
                "127.0.0.1:9876,b=127.0.0.1:9002/2",
                true,
            ),
            ("idle_timeout", "300", "2.5", true),
            ("token", "(none)", "(set)", true),
            ("log_format", "text", "json", false),
        ];
        let got_tuples: Vec<(&str, &str, &str, bool)> = got
            .iter()
            .map(|c| (c.setting, c.old.as_str(), c.new.as_str(), c.live))
            .collect();
        assert_eq!(got_tuples, want);
        let mut other_token = new.clone();
        other_token.token = Some("another".into());
        let got = new.changes(&other_token);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].old.as_str(), got[0].new.as_str()),
            ("(set)", "(set, changed)")
        );
        assert!(!format!("{got:?}").contains("another"));
        for key in SETTINGS {
            let restart = ["listen", "compat_listen", "http_listen", "db", "log_format"];
            assert_eq!(is_live(key), !restart.contains(&key), "{key}");
        }
    }

    #[test]
    fn the_loader_reads_the_file_again_on_every_call() {
        let file = write_file("loader", "max_queue = 1\n");
        let a = parse(&["--config", file.to_str().unwrap(), "--max-sessions", "3"]);
        let env = HashMap::from([("SESSION_MANAGER_DB".to_string(), ":memory:".to_string())]);
        let load = Config::loader(a, None, env);
        let c = load().unwrap();
        assert_eq!(
            (c.max_queue, c.max_sessions, c.db.as_str()),
            (1, 3, ":memory:")
        );
        std::fs::write(&file, "max_queue = 2\nmax_sessions = 9\n").unwrap();
        let c = load().unwrap();
        assert_eq!((c.max_queue, c.max_sessions), (2, 3), "the flag still wins");
        std::fs::write(&file, "max_queue = \"many\"\n").unwrap();
        let e = load().unwrap_err().0;
        assert!(e.contains(":1: max_queue: expected a whole number"), "{e}");
    }

    #[test]
    fn the_example_config_file_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/manager.toml");
        let file = ConfigFile::read(std::path::Path::new(path)).unwrap();
        let a = parse(&["--config", path]);
        let env = env_of(&[("HOME", "/home/ada")]);
        let r = Config::resolve(&a, None, &env).unwrap();
        // Every setting of the example is spelled out (some commented out).
        let text = std::fs::read_to_string(path).unwrap();
        for key in SETTINGS {
            let shown = if key == "backends" {
                "[[backends]]"
            } else {
                key
            };
            assert!(text.contains(shown), "the example does not mention {key}");
        }
        assert!(file.backends.is_some_and(|b| b.len() >= 2));
        assert!(r.config.backends.len() >= 2);
    }

    #[test]
    fn help_says_each_flags_variable_and_default() {
        let cmd = T::command();
        let defaults: HashMap<&str, String> = Config::default().settings().into_iter().collect();
        for key in SETTINGS.into_iter().filter(|k| *k != "token") {
            let id = if key == "backends" { "blender" } else { key };
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_id() == id)
                .unwrap_or_else(|| panic!("no flag for {key}"));
            let help = arg.get_help().unwrap().to_string();
            assert!(
                help.contains(&format!("[env: {}]", env_name(key))),
                "{key}: {help}"
            );
            if !["backends", "db"].contains(&key) {
                assert!(
                    help.contains(&format!("[default: {}]", defaults[key])),
                    "{key}: {help}"
                );
            }
        }
    }
}
