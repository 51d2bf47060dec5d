//! The `--config` file of `serve`: TOML, one top-level key per flag.
//!
//! Keys are the flag names with `-` turned into `_` (`command_timeout = 180`,
//! `http_listen = "127.0.0.1:9881"`). Durations are numbers of seconds, integers or
//! floats. Backends are `[[backends]]` tables (`address`, optional `name` and
//! `weight`), or a `blender` list of strings in the flag's `[NAME=]HOST:PORT[/WEIGHT]`
//! form. Every value is read with its position first and typed afterwards, so each
//! error names the file, the line and the key at fault; an unknown key is an error.
//! What the values mean together with the other layers (a listen address that does
//! not resolve, a zero timeout, two backends with one name) is checked by
//! [`crate::config`], which names the key the same way through [`ConfigFile::label`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::{Spanned, Value};

use crate::config::{parse_log_format, seconds, BackendAddr, BackendSpec, ConfigError, LogFormat};

/// What a config file sets: each key it gives, typed; `None` for the keys it leaves out.
#[derive(Debug, Clone, Default)]
pub struct ConfigFile {
    /// The file read (empty for [`ConfigFile::default`], which sets nothing).
    pub path: PathBuf,
    pub listen: Option<String>,
    pub compat_listen: Option<String>,
    pub http_listen: Option<String>,
    /// From `[[backends]]` or `blender`.
    pub backends: Option<Vec<BackendSpec>>,
    pub idle_timeout: Option<Duration>,
    pub sweep_interval: Option<Duration>,
    pub command_timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub sync_wait: Option<Duration>,
    pub shutdown_timeout: Option<Duration>,
    pub health_interval: Option<Duration>,
    pub health_timeout: Option<Duration>,
    pub health_failures: Option<u32>,
    pub max_sessions: Option<usize>,
    pub max_queue: Option<usize>,
    pub job_ttl: Option<Duration>,
    pub history_limit: Option<usize>,
    pub max_frame_bytes: Option<usize>,
    pub log_format: Option<LogFormat>,
    pub db: Option<String>,
    pub token: Option<String>,
    /// The line each given setting is on (`backends` for either spelling).
    lines: HashMap<&'static str, usize>,
}

/// The file as TOML gives it: positioned values, not yet typed. Unknown keys are
/// refused here, by serde, with their position.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    listen: Option<Spanned<Value>>,
    compat_listen: Option<Spanned<Value>>,
    http_listen: Option<Spanned<Value>>,
    blender: Option<Spanned<Value>>,
    backends: Option<Spanned<RawBackends>>,
    idle_timeout: Option<Spanned<Value>>,
    sweep_interval: Option<Spanned<Value>>,
    command_timeout: Option<Spanned<Value>>,
    connect_timeout: Option<Spanned<Value>>,
    sync_wait: Option<Spanned<Value>>,
    shutdown_timeout: Option<Spanned<Value>>,
    health_interval: Option<Spanned<Value>>,
    health_timeout: Option<Spanned<Value>>,
    health_failures: Option<Spanned<Value>>,
    max_sessions: Option<Spanned<Value>>,
    max_queue: Option<Spanned<Value>>,
    job_ttl: Option<Spanned<Value>>,
    history_limit: Option<Spanned<Value>>,
    max_frame_bytes: Option<Spanned<Value>>,
    log_format: Option<Spanned<Value>>,
    db: Option<Spanned<Value>>,
    token: Option<Spanned<Value>>,
}

/// One `[[backends]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[backends]] table")]
struct RawBackend {
    name: Option<Spanned<Value>>,
    address: Option<Spanned<Value>>,
    weight: Option<Spanned<Value>>,
}

/// The `[[backends]]` array; its own type so a wrong shape says what was expected.
struct RawBackends(Vec<Spanned<RawBackend>>);

impl<'de> Deserialize<'de> for RawBackends {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Tables;
        impl<'de> Visitor<'de> for Tables {
            type Value = RawBackends;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("backends as [[backends]] tables")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawBackends, A::Error> {
                let mut all = Vec::new();
                while let Some(table) = seq.next_element()? {
                    all.push(table);
                }
                Ok(RawBackends(all))
            }
        }
        deserializer.deserialize_seq(Tables)
    }
}

/// Turns positioned values into typed ones, naming the file, line and key on error.
struct Reader<'a> {
    path: &'a Path,
    text: &'a str,
    lines: HashMap<&'static str, usize>,
}

impl Reader<'_> {
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    fn error(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        why: impl std::fmt::Display,
    ) -> ConfigError {
        ConfigError(format!(
            "{}:{}: {key}: {why}",
            self.path.display(),
            self.line(span)
        ))
    }

    /// Records where `key` is and hands its value to `typed`.
    fn take<T>(
        &mut self,
        key: &'static str,
        value: Option<Spanned<Value>>,
        typed: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(value) = value else {
            return Ok(None);
        };
        self.lines.insert(key, self.line(value.span()));
        typed(value.get_ref())
            .map(Some)
            .map_err(|why| self.error(value.span(), key, why))
    }

    fn string(
        &mut self,
        key: &'static str,
        v: Option<Spanned<Value>>,
    ) -> Result<Option<String>, ConfigError> {
        self.take(key, v, |v| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(wrong_type("a string", other)),
        })
    }

    fn seconds(
        &mut self,
        key: &'static str,
        v: Option<Spanned<Value>>,
    ) -> Result<Option<Duration>, ConfigError> {
        self.take(key, v, |v| match v {
            Value::Integer(n) => u64::try_from(*n)
                .map(Duration::from_secs)
                .map_err(|_| format!("{n} must be a non-negative number of seconds")),
            Value::Float(f) => seconds(*f).map_err(|e| format!("{f:?} {e}")),
            other => Err(wrong_type("a number of seconds", other)),
        })
    }

    fn count<T: TryFrom<i64>>(
        &mut self,
        key: &'static str,
        v: Option<Spanned<Value>>,
    ) -> Result<Option<T>, ConfigError> {
        self.take(key, v, |v| match v {
            Value::Integer(n) => {
                T::try_from(*n).map_err(|_| format!("{n} is not a whole number in range"))
            }
            other => Err(wrong_type("a whole number", other)),
        })
    }

    /// `blender = "SPEC"` or `blender = ["SPEC", ...]`, in the flag's form.
    fn blender(
        &mut self,
        v: Option<Spanned<Value>>,
    ) -> Result<Option<Vec<BackendSpec>>, ConfigError> {
        let Some(v) = v else {
            return Ok(None);
        };
        self.lines.insert("backends", self.line(v.span()));
        let specs: Vec<&Value> = match v.get_ref() {
            Value::Array(items) => items.iter().collect(),
            one @ Value::String(_) => vec![one],
            other => {
                let why = wrong_type("a list of \"[NAME=]HOST:PORT[/WEIGHT]\" strings", other);
                return Err(self.error(v.span(), "blender", why));
            }
        };
        specs
            .into_iter()
            .map(|spec| match spec {
                Value::String(s) => s.parse::<BackendSpec>(),
                other => Err(wrong_type("a \"[NAME=]HOST:PORT[/WEIGHT]\" string", other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(|why| self.error(v.span(), "blender", why))
    }

    fn backends(&mut self, tables: Spanned<RawBackends>) -> Result<Vec<BackendSpec>, ConfigError> {
        self.lines.insert("backends", self.line(tables.span()));
        let mut all = Vec::new();
        for (i, table) in tables.into_inner().0.into_iter().enumerate() {
            let key = format!("backends[{i}]");
            let at = table.span();
            let table = table.into_inner();
            let text = |field: &str, v: &Spanned<Value>| match v.get_ref() {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.error(
                    v.span(),
                    &format!("{key}.{field}"),
                    wrong_type("a string", other),
                )),
            };
            let address = table.address.as_ref().ok_or_else(|| {
                self.error(at.clone(), &key, "address = \"HOST:PORT\" is missing")
            })?;
            let parsed = text("address", address)?
                .parse::<BackendAddr>()
                .map_err(|e| self.error(address.span(), &format!("{key}.address"), e))?;
            let name = match &table.name {
                Some(name) => text("name", name)?,
                None => parsed.to_string(),
            };
            let weight = match &table.weight {
                None => 1,
                Some(w) => match w.get_ref() {
                    Value::Integer(n) => u32::try_from(*n).map_err(|_| {
                        self.error(
                            w.span(),
                            &format!("{key}.weight"),
                            format!("{n} is not a whole number from 1 up"),
                        )
                    })?,
                    other => {
                        return Err(self.error(
                            w.span(),
                            &format!("{key}.weight"),
                            wrong_type("a whole number", other),
                        ))
                    }
                },
            };
            let spec = BackendSpec {
                name,
                address: parsed,
                weight,
            };
            spec.check().map_err(|e| self.error(at.clone(), &key, e))?;
            all.push(spec);
        }
        Ok(all)
    }
}

impl ConfigFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "{}: cannot read the config file: {e}",
                path.display()
            ))
        })?;
        ConfigFile::parse(path, &text)
    }

    /// Parses `text`, the contents of `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        let mut r = Reader {
            path,
            text,
            lines: HashMap::new(),
        };
        let backends = match (raw.backends, raw.blender) {
            (Some(tables), None) => Some(r.backends(tables)?),
            (None, list) => r.blender(list)?,
            (Some(_), Some(list)) => return Err(r.error(
                list.span(),
                "blender",
                "give the backends either as [[backends]] tables or as a blender list, not both",
            )),
        };
        Ok(ConfigFile {
            path: path.to_path_buf(),
            listen: r.string("listen", raw.listen)?,
            compat_listen: r.string("compat_listen", raw.compat_listen)?,
            http_listen: r.string("http_listen", raw.http_listen)?,
            backends,
            idle_timeout: r.seconds("idle_timeout", raw.idle_timeout)?,
            sweep_interval: r.seconds("sweep_interval", raw.sweep_interval)?,
            command_timeout: r.seconds("command_timeout", raw.command_timeout)?,
            connect_timeout: r.seconds("connect_timeout", raw.connect_timeout)?,
            sync_wait: r.seconds("sync_wait", raw.sync_wait)?,
            shutdown_timeout: r.seconds("shutdown_timeout", raw.shutdown_timeout)?,
            health_interval: r.seconds("health_interval", raw.health_interval)?,
            health_timeout: r.seconds("health_timeout", raw.health_timeout)?,
            health_failures: r.count("health_failures", raw.health_failures)?,
            max_sessions: r.count("max_sessions", raw.max_sessions)?,
            max_queue: r.count("max_queue", raw.max_queue)?,
            job_ttl: r.seconds("job_ttl", raw.job_ttl)?,
            history_limit: r.count("history_limit", raw.history_limit)?,
            max_frame_bytes: r.count("max_frame_bytes", raw.max_frame_bytes)?,
            log_format: r.take("log_format", raw.log_format, |v| match v {
                Value::String(s) => parse_log_format(s),
                other => Err(wrong_type("\"text\" or \"json\"", other)),
            })?,
            db: r.string("db", raw.db)?,
            token: r.string("token", raw.token)?,
            lines: r.lines,
        })
    }

    /// How an error names a setting this file gave: `FILE:LINE: key`.
    pub fn label(&self, key: &str) -> String {
        match self.lines.get(key) {
            Some(line) => format!("{}:{line}: {key}", self.path.display()),
            None => format!("{}: {key}", self.path.display()),
        }
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn wrong_type(expected: &str, got: &Value) -> String {
    let shown = match got {
        Value::String(s) => format!(" {s:?}"),
        Value::Integer(n) => format!(" {n}"),
        Value::Float(f) => format!(" {f:?}"),
        Value::Boolean(b) => format!(" {b}"),
        _ => String::new(),
    };
    format!("expected {expected}, found {}{shown}", got.type_str())
}

/// A TOML syntax error or an unknown key: `FILE:LINE: what`, on one line.
fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e
        .span()
        .map(|span| format!(":{}", line_of(text, span.start)))
        .unwrap_or_default();
    let message = e.message().trim().replace('\n', "; ");
    let message = match message.strip_prefix("unknown field ") {
        Some(rest) => format!("unknown key {rest}"),
        None => message,
    };
    ConfigError(format!("{}{at}: {message}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse(Path::new("/etc/bsm.toml"), text).map_err(|e| e.0)
    }

    #[test]
    fn every_key_reads_its_type() {
        let f = parse(
            r#"
listen = "127.0.0.1:1"
compat_listen = "127.0.0.1:2"
http_listen = "127.0.0.1:3"
idle_timeout = 1.5
sweep_interval = 2
command_timeout = 3
connect_timeout = 4
sync_wait = 0
shutdown_timeout = 0.25
health_interval = 6
health_timeout = 7
health_failures = 8
max_sessions = 9
max_queue = 10
job_ttl = 11
history_limit = 12
max_frame_bytes = 2048
log_format = "json"
db = ":memory:"
token = "s3cret"

[[backends]]
address = "127.0.0.1:9001"
"#,
        )
        .unwrap();
        assert_eq!(f.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(f.compat_listen.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(f.http_listen.as_deref(), Some("127.0.0.1:3"));
        assert_eq!(f.idle_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(f.sweep_interval, Some(Duration::from_secs(2)));
        assert_eq!(f.command_timeout, Some(Duration::from_secs(3)));
        assert_eq!(f.connect_timeout, Some(Duration::from_secs(4)));
        assert_eq!(f.sync_wait, Some(Duration::ZERO));
        assert_eq!(f.shutdown_timeout, Some(Duration::from_millis(250)));
        assert_eq!(f.health_interval, Some(Duration::from_secs(6)));
        assert_eq!(f.health_timeout, Some(Duration::from_secs(7)));
        assert_eq!(f.health_failures, Some(8));
        assert_eq!(f.max_sessions, Some(9));
        assert_eq!(f.max_queue, Some(10));
        assert_eq!(f.job_ttl, Some(Duration::from_secs(11)));
        assert_eq!(f.history_limit, Some(12));
        assert_eq!(f.max_frame_bytes, Some(2048));
        assert_eq!(f.log_format, Some(LogFormat::Json));
        assert_eq!(f.db.as_deref(), Some(":memory:"));
        assert_eq!(f.token.as_deref(), Some("s3cret"));
        assert_eq!(
            f.backends.as_ref().unwrap()[0].to_string(),
            "127.0.0.1:9001"
        );
        assert_eq!(f.label("max_queue"), "/etc/bsm.toml:15: max_queue");
        assert_eq!(f.label("backends"), "/etc/bsm.toml:23: backends");
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        let f = parse("# nothing here\n").unwrap();
        assert!(f.listen.is_none() && f.backends.is_none() && f.idle_timeout.is_none());
    }

    #[test]
    fn backends_tables_take_names_and_weights() {
        let f = parse(
            r#"
[[backends]]
name = "big"
address = "127.0.0.1:9001"
weight = 3

[[backends]]
address = "localhost:9002"
"#,
        )
        .unwrap();
        let got: Vec<String> = f
            .backends
            .unwrap()
            .iter()
            .map(|b| format!("{}|{}|{}", b.name, b.address, b.weight))
            .collect();
        assert_eq!(
            got,
            ["big|127.0.0.1:9001|3", "localhost:9002|localhost:9002|1"]
        );
    }

    #[test]
    fn a_blender_list_in_flag_form_is_accepted() {
        let f = parse(r#"blender = ["a=127.0.0.1:9001/2", "127.0.0.1:9002"]"#).unwrap();
        let b = f.backends.unwrap();
        assert_eq!(b[0].to_string(), "a=127.0.0.1:9001/2");
        assert_eq!(b[1].to_string(), "127.0.0.1:9002");
        let f = parse(r#"blender = "127.0.0.1:9003""#).unwrap();
        assert_eq!(f.backends.unwrap()[0].to_string(), "127.0.0.1:9003");
        let e = parse("blender = [\"nohost\"]").unwrap_err();
        assert!(e.starts_with("/etc/bsm.toml:1: blender: \"nohost\""), "{e}");
        let e = parse("blender = [\"127.0.0.1:1\"]\n[[backends]]\naddress = \"127.0.0.1:2\"\n")
            .unwrap_err();
        assert!(
            e.starts_with("/etc/bsm.toml:1: blender: give the backends either"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_file_and_line() {
        let e = parse("listen = \"127.0.0.1:1\"\nidle_timout = 3\n").unwrap_err();
        assert!(
            e.starts_with("/etc/bsm.toml:2: unknown key `idle_timout`"),
            "{e}"
        );
        let e = parse("[[backends]]\naddress = \"127.0.0.1:1\"\nport = 2\n").unwrap_err();
        assert!(e.starts_with("/etc/bsm.toml:3: unknown key `port`"), "{e}");
        assert!(e.contains("`address`"), "{e}");
        let e = parse("[serve]\nlisten = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(e.contains("unknown key `serve`"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_key_and_line() {
        for (text, want) in [
            (
                "idle_timeout = \"soon\"",
                "1: idle_timeout: expected a number of seconds, found string \"soon\"",
            ),
            (
                "\n\ncommand_timeout = -1",
                "3: command_timeout: -1 must be a non-negative",
            ),
            (
                "sync_wait = 1e300",
                "1: sync_wait: 1e300 is too many seconds",
            ),
            (
                "job_ttl = nan",
                "1: job_ttl: NaN must be a non-negative number of seconds",
            ),
            (
                "max_queue = 1.5",
                "1: max_queue: expected a whole number, found float 1.5",
            ),
            (
                "max_sessions = -3",
                "1: max_sessions: -3 is not a whole number in range",
            ),
            (
                "health_failures = 5000000000",
                "1: health_failures: 5000000000 is not a whole number in range",
            ),
            (
                "listen = 9880",
                "1: listen: expected a string, found integer 9880",
            ),
            (
                "log_format = \"xml\"",
                "1: log_format: \"xml\" is not a log format",
            ),
            (
                "log_format = true",
                "1: log_format: expected \"text\" or \"json\", found boolean true",
            ),
            ("token = 5", "1: token: expected a string, found integer 5"),
            ("db = []", "1: db: expected a string, found array"),
            ("blender = 5", "1: blender: expected a list of"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                e.starts_with(&format!("/etc/bsm.toml:{want}")),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn bad_backend_tables_name_the_entry() {
        for (text, want) in [
            ("backends = 3", "/etc/bsm.toml:1: invalid type: integer `3`, expected backends as [[backends]] tables"),
            ("[[backends]]\nname = \"a\"\n", "/etc/bsm.toml:1: backends[0]: address = \"HOST:PORT\" is missing"),
            ("[[backends]]\naddress = \"nohost\"\n", "/etc/bsm.toml:2: backends[0].address: \"nohost\": expected HOST:PORT"),
            ("[[backends]]\naddress = 9001\n", "/etc/bsm.toml:2: backends[0].address: expected a string, found integer 9001"),
            ("[[backends]]\naddress = \"h:1\"\n[[backends]]\naddress = \"h:2\"\nweight = 0\n", "/etc/bsm.toml:3: backends[1]: weight must be at least 1"),
            ("[[backends]]\naddress = \"h:1\"\nweight = -2\n", "/etc/bsm.toml:3: backends[0].weight: -2 is not a whole number from 1 up"),
            ("[[backends]]\naddress = \"h:1\"\nname = \"a b\"\n", "/etc/bsm.toml:1: backends[0]: backend name \"a b\" may not contain"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(want), "{text}: {e}");
        }
    }

    #[test]
    fn syntax_errors_and_duplicate_keys_give_the_line() {
        let e = parse("listen = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n").unwrap_err();
        assert!(e.starts_with("/etc/bsm.toml:2: "), "{e}");
        let e = parse("idle_timeout = \n").unwrap_err();
        assert!(e.starts_with("/etc/bsm.toml:1: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = ConfigFile::read(Path::new("/nonexistent/bsm.toml"))
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("/nonexistent/bsm.toml: cannot read the config file"),
            "{e}"
        );
    }
}
