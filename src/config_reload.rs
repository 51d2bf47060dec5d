//! What a reload may change in place, and what needs a restart.
//!
//! Listen addresses, the database and the log format are fixed for the life of the
//! process (sockets are bound, the store is open, the log subscriber is installed):
//! a reload that changes them reports them as needing a restart and keeps the
//! running values. Everything else applies to what starts after the reload.

use crate::config::Config;

/// One setting a reload would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub setting: &'static str,
    pub old: String,
    pub new: String,
    /// Applied without a restart.
    pub live: bool,
}

impl Config {
    /// The settings that differ between `self` (running) and `new`.
    pub fn changes(&self, new: &Config) -> Vec<ConfigChange> {
        let mut out = Vec::new();
        let mut diff = |setting: &'static str, old: String, new: String, live: bool| {
            if old != new {
                out.push(ConfigChange {
                    setting,
                    old,
                    new,
                    live,
                });
            }
        };
        let secs = |d: std::time::Duration| format!("{}", d.as_secs_f64());
        let list = |c: &Config| {
            c.backends
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        diff(
            "listen",
            self.listen.to_string(),
            new.listen.to_string(),
            false,
        );
        diff(
            "compat_listen",
            self.compat_listen.to_string(),
            new.compat_listen.to_string(),
            false,
        );
        diff(
            "http_listen",
            self.http_listen.to_string(),
            new.http_listen.to_string(),
            false,
        );
        diff("db", self.db.clone(), new.db.clone(), false);
        diff(
            "log_format",
            format!("{:?}", self.log_format),
            format!("{:?}", new.log_format),
            false,
        );
        diff("backends", list(self), list(new), true);
        for (setting, old, new) in [
            ("idle_timeout", self.idle_timeout, new.idle_timeout),
            ("sweep_interval", self.sweep_interval, new.sweep_interval),
            ("command_timeout", self.command_timeout, new.command_timeout),
            ("connect_timeout", self.connect_timeout, new.connect_timeout),
            ("sync_wait", self.sync_wait, new.sync_wait),
            (
                "shutdown_timeout",
                self.shutdown_timeout,
                new.shutdown_timeout,
            ),
            ("health_interval", self.health_interval, new.health_interval),
            ("health_timeout", self.health_timeout, new.health_timeout),
            ("job_ttl", self.job_ttl, new.job_ttl),
        ] {
            diff(setting, secs(old), secs(new), true);
        }
        for (setting, old, new) in [
            ("max_sessions", self.max_sessions, new.max_sessions),
            ("max_queue", self.max_queue, new.max_queue),
            ("history_limit", self.history_limit, new.history_limit),
            ("max_frame_bytes", self.max_frame_bytes, new.max_frame_bytes),
            (
                "health_failures",
                self.health_failures as usize,
                new.health_failures as usize,
            ),
        ] {
            diff(setting, old.to_string(), new.to_string(), true);
        }
        diff(
            "token",
            if self.token.is_some() {
                "(set)"
            } else {
                "(none)"
            }
            .into(),
            if new.token.is_some() {
                "(set)"
            } else {
                "(none)"
            }
            .into(),
            true,
        );
        if self.token.is_some() && new.token.is_some() && self.token != new.token {
            out.push(ConfigChange {
                setting: "token",
                old: "(set)".into(),
                new: "(set, changed)".into(),
                live: true,
            });
        }
        out
    }
}

impl Config {
    /// Puts back the running value of a setting that cannot change without a
    /// restart (see [`Config::changes`]).
    pub fn keep_running_setting(&mut self, setting: &str, running: &Config) {
        match setting {
            "listen" => self.listen = running.listen,
            "compat_listen" => self.compat_listen = running.compat_listen,
            "http_listen" => self.http_listen = running.http_listen,
            "db" => self.db = running.db.clone(),
            "log_format" => self.log_format = running.log_format,
            _ => {}
        }
    }
}
