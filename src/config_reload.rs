//! What a reload may change in place, and what needs a restart.
//!
//! Listen addresses, the database and the log format are fixed for the life of the
//! process (sockets are bound, the store is open, the log subscriber is installed):
//! a reload that changes them reports them as needing a restart and keeps the
//! running values. Everything else applies to what starts after the reload.

use crate::config::Config;

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
