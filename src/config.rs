//! Configuration of `serve`: flags, their environment variables, and validation.
//!
//! Every flag also reads `SESSION_MANAGER_<FLAG>` (clap's `env`), so precedence is
//! flag > environment > default. `BLENDER_HOST` / `BLENDER_PORT` are honoured as in
//! blender-mcp when no backend is given any other way. [`ServeArgs`] is what the
//! command line says; [`Config`] is the validated, typed result the server runs on.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Flags of `blender-session-manager serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// JSON-RPC 2.0 (NDJSON over TCP) listen address
    #[arg(long, env = "SESSION_MANAGER_LISTEN", default_value = "127.0.0.1:9880")]
    pub listen: String,
    /// Addon-compatible listen address (point stock Blender MCP servers here)
    #[arg(
        long,
        env = "SESSION_MANAGER_COMPAT_LISTEN",
        default_value = "127.0.0.1:9877"
    )]
    pub compat_listen: String,
    /// HTTP listen address (REST, seed 000's /mcp routes, /healthz, /metrics)
    #[arg(
        long,
        env = "SESSION_MANAGER_HTTP_LISTEN",
        default_value = "127.0.0.1:9881"
    )]
    pub http_listen: String,
    /// Blender backend [NAME=]HOST:PORT[/WEIGHT]; repeat (or separate with commas) for
    /// several (default 127.0.0.1:9876, or BLENDER_HOST/BLENDER_PORT)
    #[arg(long, env = "SESSION_MANAGER_BLENDER", value_delimiter = ',')]
    pub blender: Vec<String>,
    /// Seconds without activity after which a session is closed
    #[arg(long, env = "SESSION_MANAGER_IDLE_TIMEOUT", default_value = "300", value_parser = parse_seconds)]
    pub idle_timeout: Duration,
    /// Seconds between idle sweeps
    #[arg(long, env = "SESSION_MANAGER_SWEEP_INTERVAL", default_value = "60", value_parser = parse_seconds)]
    pub sweep_interval: Duration,
    /// Seconds to wait for Blender's reply to one command
    #[arg(long, env = "SESSION_MANAGER_COMMAND_TIMEOUT", default_value = "180", value_parser = parse_seconds)]
    pub command_timeout: Duration,
    /// Seconds to wait for a TCP connect to Blender
    #[arg(long, env = "SESSION_MANAGER_CONNECT_TIMEOUT", default_value = "5", value_parser = parse_seconds)]
    pub connect_timeout: Duration,
    /// Seconds a graceful stop lets running commands finish before exiting anyway
    #[arg(long, env = "SESSION_MANAGER_SHUTDOWN_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub shutdown_timeout: Duration,
    /// Seconds between health probes of each backend (while none of its commands runs)
    #[arg(long, env = "SESSION_MANAGER_HEALTH_INTERVAL", default_value = "2", value_parser = parse_seconds)]
    pub health_interval: Duration,
    /// Seconds a health probe may take before it counts as failed
    #[arg(long, env = "SESSION_MANAGER_HEALTH_TIMEOUT", default_value = "2", value_parser = parse_seconds)]
    pub health_timeout: Duration,
    /// Failed probes in a row after which a backend is marked down
    #[arg(long, env = "SESSION_MANAGER_HEALTH_FAILURES", default_value_t = 3)]
    pub health_failures: u32,
    /// Seconds `send_command` waits before answering `pending` with a job id
    #[arg(long, env = "SESSION_MANAGER_SYNC_WAIT", default_value = "30", value_parser = parse_seconds)]
    pub sync_wait: Duration,
    /// Maximum number of open sessions
    #[arg(long, env = "SESSION_MANAGER_MAX_SESSIONS", default_value_t = 1000)]
    pub max_sessions: usize,
    /// Pending jobs allowed manager-wide (sync send_command included)
    #[arg(long, env = "SESSION_MANAGER_MAX_QUEUE", default_value_t = 100)]
    pub max_queue: usize,
    /// Seconds finished jobs are kept before they are pruned
    #[arg(long, env = "SESSION_MANAGER_JOB_TTL", default_value = "3600", value_parser = parse_seconds)]
    pub job_ttl: Duration,
    /// History entries kept per session (at least)
    #[arg(long, env = "SESSION_MANAGER_HISTORY_LIMIT", default_value_t = 1000)]
    pub history_limit: usize,
    /// Largest JSON message accepted on any socket, in bytes
    #[arg(long, env = "SESSION_MANAGER_MAX_FRAME_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_frame_bytes: usize,
    /// Log format on stderr
    #[arg(
        long,
        env = "SESSION_MANAGER_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// SQLite database file (default: the user's data directory, e.g.
    /// ~/.local/share/blender-session-manager/manager.db); `:memory:` keeps nothing
    #[arg(long, env = "SESSION_MANAGER_DB")]
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

/// Why a configuration was refused. The message names the flag at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Validates command-line arguments. `env` looks up environment variables
    /// (injected so tests need not touch the process environment).
    /// The token is the global `--token` option, shared with the client subcommands.
    pub fn from_args(
        args: &ServeArgs,
        token: Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let listen = resolve_listen("--listen", &args.listen)?;
        let compat_listen = resolve_listen("--compat-listen", &args.compat_listen)?;
        let http_listen = resolve_listen("--http-listen", &args.http_listen)?;
        let mut backends = Vec::new();
        for given in args.blender.iter().filter(|s| !s.trim().is_empty()) {
            backends.push(
                given
                    .parse::<BackendSpec>()
                    .map_err(|e| ConfigError(format!("--blender {e}")))?,
            );
        }
        if backends.is_empty() {
            let host = env("BLENDER_HOST").unwrap_or_else(|| "127.0.0.1".into());
            let port = match env("BLENDER_PORT") {
                Some(p) => p
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| ConfigError(format!("BLENDER_PORT {p:?} is not a port number")))?,
                None => 9876,
            };
            backends.push(BackendSpec::new(BackendAddr { host, port }));
        }
        check_backends(&backends).map_err(|e| ConfigError(format!("--blender: {e}")))?;
        let token = token.filter(|t| !t.is_empty());
        for (flag, address) in [("--listen", listen), ("--http-listen", http_listen)] {
            if token.is_none() && !address.ip().is_loopback() {
                return Err(ConfigError(format!(
                    "{flag} {address}: refusing to listen beyond loopback without a token; \
                     set --token (or SESSION_MANAGER_TOKEN) so callers must authenticate"
                )));
            }
        }
        if !compat_listen.ip().is_loopback() {
            return Err(ConfigError(format!(
                "--compat-listen {compat_listen}: the addon-compatible port cannot carry a token, \
                 so it only binds loopback addresses (for example 127.0.0.1:9877)"
            )));
        }
        for (flag, value) in [
            ("--sweep-interval", args.sweep_interval),
            ("--command-timeout", args.command_timeout),
            ("--connect-timeout", args.connect_timeout),
            ("--health-interval", args.health_interval),
            ("--health-timeout", args.health_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError(format!("{flag} must be above 0 seconds")));
            }
        }
        if args.health_failures == 0 {
            return Err(ConfigError("--health-failures must be at least 1".into()));
        }
        if args.max_frame_bytes < 1024 {
            return Err(ConfigError(
                "--max-frame-bytes must be at least 1024".into(),
            ));
        }
        let db = match &args.db {
            Some(db) if !db.trim().is_empty() => db.clone(),
            _ => default_db_path(&env).ok_or_else(|| {
                ConfigError(
                    "--db: no data directory found (set HOME, XDG_DATA_HOME or LOCALAPPDATA, or pass --db PATH)"
                        .into(),
                )
            })?,
        };
        Ok(Config {
            listen,
            compat_listen,
            http_listen,
            backends,
            idle_timeout: args.idle_timeout,
            sweep_interval: args.sweep_interval,
            command_timeout: args.command_timeout,
            connect_timeout: args.connect_timeout,
            sync_wait: args.sync_wait,
            shutdown_timeout: args.shutdown_timeout,
            health_interval: args.health_interval,
            health_timeout: args.health_timeout,
            health_failures: args.health_failures,
            max_sessions: args.max_sessions,
            max_queue: args.max_queue,
            job_ttl: args.job_ttl,
            history_limit: args.history_limit.max(1),
            max_frame_bytes: args.max_frame_bytes,
            token,
            log_format: args.log_format,
            db,
            ..Config::default()
        })
    }
}

fn resolve_listen(flag: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .to_socket_addrs()
        .map_err(|e| ConfigError(format!("{flag} {value}: {e}")))?
        .next()
        .ok_or_else(|| ConfigError(format!("{flag} {value}: resolves to no address")))
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
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s:?} must be a non-negative number of seconds"));
    }
    Duration::try_from_secs_f64(v).map_err(|_| format!("{s:?} is too many seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

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

    #[test]
    fn durations_accept_floats() {
        let a = parse(&["--idle-timeout", "1.5", "--command-timeout", "2"]);
        assert_eq!(a.idle_timeout, Duration::from_millis(1500));
        assert_eq!(a.command_timeout, Duration::from_secs(2));
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
        let c = Config::from_args(&a, None, |_| Some("1".into())).unwrap();
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

    fn a_default() -> ServeArgs {
        parse(&[])
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
        let c = Config::from_args(&a_default(), None, |k| {
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
}
