//! Prometheus metrics: what the manager counts while it works, and the text
//! exposition `GET /metrics` serves.
//!
//! Recording is on the hot path (every command, every job start), so it costs a few
//! atomic adds: histograms keep one counter per bucket and a sum in nanoseconds; the
//! per-command-type histograms sit in a map behind a read-write lock taken only for
//! the lookup (never across an `.await`). Callers choose `command_type` (it is
//! forwarded to Blender verbatim), so the label is bounded: at most
//! [`MAX_COMMAND_TYPES`] distinct values, each a short identifier; anything else is
//! counted under [`OTHER`]. Gauges (sessions, connections, jobs, capacity) are read
//! from the manager when scraped, so they cost nothing in between.
//!
//! Every manager has its own [`Metrics`] (tests run many managers in one process).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::manager::Manager;
use crate::session::{CommandStatus, DisconnectReason};

/// Distinct `command_type` label values kept; the rest are folded into [`OTHER`].
pub const MAX_COMMAND_TYPES: usize = 64;
/// The label value of command types past the cap, or not short identifiers.
pub const OTHER: &str = "other";
/// Longest `command_type` kept as its own label value.
pub const MAX_LABEL_LEN: usize = 64;

/// Metric names, for the exposition and for tests.
pub mod names {
    pub const COMMAND_DURATION: &str = "session_manager_command_duration_seconds";
    pub const QUEUE_WAIT: &str = "session_manager_queue_wait_seconds";
    pub const COMMANDS: &str = "session_manager_commands_total";
    pub const SESSIONS: &str = "session_manager_sessions";
    pub const MAX_SESSIONS: &str = "session_manager_max_sessions";
    pub const BACKEND_CONNECTIONS: &str = "session_manager_backend_connections";
    pub const BACKEND_UP: &str = "session_manager_backend_up";
    pub const BACKEND_SESSIONS: &str = "session_manager_backend_sessions";
    pub const DISCONNECTS: &str = "session_manager_disconnects_total";
    pub const JOBS: &str = "session_manager_jobs";
    pub const QUEUE_CAPACITY: &str = "session_manager_queue_capacity";
    pub const UPTIME: &str = "session_manager_uptime_seconds";
}

/// Command round trips: from a millisecond to a render's minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];
/// Time in the queue: none at all up to a long backlog.
const WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0,
];

/// Command statuses in label order (as history spells them).
const STATUSES: [CommandStatus; 5] = [
    CommandStatus::Success,
    CommandStatus::Error,
    CommandStatus::Timeout,
    CommandStatus::Disconnected,
    CommandStatus::Cancelled,
];

/// A fixed-bucket histogram of seconds. Buckets hold plain (not cumulative) counts;
/// rendering sums them, so `+Inf` and `_count` always agree.
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, plus the overflow bucket.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        let i = self.bounds.partition_point(|b| *b < seconds);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let nanos = (seconds * 1e9).min(u64::MAX as f64) as u64;
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// `name_bucket{labels,le=..}`, `name_sum`, `name_count` lines.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// What one manager counts.
pub struct Metrics {
    by_type: RwLock<HashMap<Box<str>, Arc<Histogram>>>,
    other: Arc<Histogram>,
    queue_wait: Histogram,
    commands: [AtomicU64; STATUSES.len()],
    disconnects: [AtomicU64; DisconnectReason::ALL.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Whether a command type may be a label value of its own: a short identifier.
fn labelable(command_type: &str) -> bool {
    !command_type.is_empty()
        && command_type.len() <= MAX_LABEL_LEN
        && command_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            by_type: RwLock::new(HashMap::new()),
            other: Arc::new(Histogram::new(LATENCY_BUCKETS)),
            queue_wait: Histogram::new(WAIT_BUCKETS),
            commands: Default::default(),
            disconnects: Default::default(),
        }
    }

    /// The latency histogram a command type is counted in (its own, or `other`).
    fn histogram_for(&self, command_type: &str) -> Arc<Histogram> {
        if let Some(h) = self.by_type.read().get(command_type) {
            return h.clone();
        }
        if command_type == OTHER || !labelable(command_type) {
            return self.other.clone();
        }
        let mut map = self.by_type.write();
        if let Some(h) = map.get(command_type) {
            return h.clone();
        }
        if map.len() >= MAX_COMMAND_TYPES {
            return self.other.clone();
        }
        let h = Arc::new(Histogram::new(LATENCY_BUCKETS));
        map.insert(command_type.into(), h.clone());
        h
    }

    /// A command a caller issued reached its end (any status), after `seconds`.
    pub fn command_finished(&self, command_type: &str, status: CommandStatus, seconds: f64) {
        self.histogram_for(command_type).observe(seconds);
        let i = STATUSES.iter().position(|s| *s == status).unwrap_or(1);
        self.commands[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A session ended, or a session's Blender socket was dropped, for `reason`.
    pub fn disconnected(&self, reason: DisconnectReason) {
        self.disconnects[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Disconnects counted for `reason` so far (tests, status).
    pub fn disconnects(&self, reason: DisconnectReason) -> u64 {
        self.disconnects[reason.index()].load(Ordering::Relaxed)
    }

    /// A job left the queue for Blender after waiting `seconds` since submission.
    pub fn job_started(&self, seconds: f64) {
        self.queue_wait.observe(seconds);
    }

    /// Commands counted for a command type's label value so far (tests, status).
    pub fn command_count(&self, command_type: &str) -> u64 {
        self.by_type
            .read()
            .get(command_type)
            .map_or(0, |h| h.count())
    }

    /// The text exposition (format 0.0.4) with the manager's gauges read now.
    pub fn render(&self, manager: &Manager) -> String {
        let mut out = String::with_capacity(16 * 1024);

        header(
            &mut out,
            names::COMMAND_DURATION,
            "histogram",
            "Time from sending a command to Blender to its outcome, by command type \
             (at most 64 types; the rest are \"other\").",
        );
        let mut types: Vec<(Box<str>, Arc<Histogram>)> = self
            .by_type
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        types.sort_by(|a, b| a.0.cmp(&b.0));
        for (command_type, h) in &types {
            let labels = format!("command_type=\"{}\"", escape(command_type));
            h.render(&mut out, names::COMMAND_DURATION, &labels);
        }
        self.other.render(
            &mut out,
            names::COMMAND_DURATION,
            &format!("command_type=\"{OTHER}\""),
        );

        header(
            &mut out,
            names::QUEUE_WAIT,
            "histogram",
            "Time a job waited from submission until its session started it.",
        );
        self.queue_wait.render(&mut out, names::QUEUE_WAIT, "");

        header(
            &mut out,
            names::COMMANDS,
            "counter",
            "Commands that reached an outcome, by status (as in session history).",
        );
        for (i, status) in STATUSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "{}{{status=\"{}\"}} {}",
                names::COMMANDS,
                status.as_str(),
                self.commands[i].load(Ordering::Relaxed)
            );
        }

        header(
            &mut out,
            names::DISCONNECTS,
            "counter",
            "Sessions ended and Blender sockets dropped, by reason.",
        );
        for reason in DisconnectReason::ALL {
            let _ = writeln!(
                out,
                "{}{{reason=\"{}\"}} {}",
                names::DISCONNECTS,
                reason.as_str(),
                self.disconnects(reason)
            );
        }

        let status = manager.status();
        let counts = &status["counts"];
        let gauge = |out: &mut String, name: &str, help: &str, value: &serde_json::Value| {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {}", value.as_f64().unwrap_or(0.0));
        };
        gauge(
            &mut out,
            names::SESSIONS,
            "Open sessions.",
            &counts["sessions"],
        );
        gauge(
            &mut out,
            names::MAX_SESSIONS,
            "Session limit (--max-sessions).",
            &counts["max_sessions"],
        );
        gauge(
            &mut out,
            names::BACKEND_CONNECTIONS,
            "Open sessions whose Blender socket is connected.",
            &counts["backend_connections"],
        );
        header(
            &mut out,
            names::BACKEND_UP,
            "gauge",
            "1 when the backend takes sessions (health probes pass, not draining), else 0.",
        );
        let backends = status["backends"].as_array().cloned().unwrap_or_default();
        for b in &backends {
            let _ = writeln!(
                out,
                "{}{{backend=\"{}\",address=\"{}\"}} {}",
                names::BACKEND_UP,
                escape(b["name"].as_str().unwrap_or("")),
                escape(b["address"].as_str().unwrap_or("")),
                u8::from(b["state"] == "up")
            );
        }
        header(
            &mut out,
            names::BACKEND_SESSIONS,
            "gauge",
            "Open sessions pinned to each backend.",
        );
        for b in &backends {
            let _ = writeln!(
                out,
                "{}{{backend=\"{}\"}} {}",
                names::BACKEND_SESSIONS,
                escape(b["name"].as_str().unwrap_or("")),
                b["sessions"].as_u64().unwrap_or(0)
            );
        }
        header(
            &mut out,
            names::JOBS,
            "gauge",
            "Jobs kept by the manager, by status (finished ones until --job-ttl).",
        );
        let queue = manager.jobs().queue_status();
        for st in ["pending", "processing", "completed", "failed", "cancelled"] {
            let _ = writeln!(
                out,
                "{}{{status=\"{st}\"}} {}",
                names::JOBS,
                queue[st].as_u64().unwrap_or(0)
            );
        }
        gauge(
            &mut out,
            names::QUEUE_CAPACITY,
            "Pending jobs allowed manager-wide (--max-queue).",
            &counts["queue_capacity"],
        );
        gauge(
            &mut out,
            names::UPTIME,
            "Seconds since the manager started.",
            &status["uptime"],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_matches() {
        let h = Histogram::new(LATENCY_BUCKETS);
        for s in [0.0005, 0.003, 0.003, 2.0, 1000.0, f64::NAN, -1.0] {
            h.observe(s);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.001\"} 3"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 5"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"300\"} 6"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 7"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 7"), "{out}");
        assert_eq!(h.count(), 7);
        // A value on a bound falls in that bucket (le is inclusive).
        let h = Histogram::new(&[1.0]);
        h.observe(1.0);
        let mut out = String::new();
        h.render(&mut out, "y", "");
        assert!(out.contains("y_bucket{le=\"1\"} 1"), "{out}");
        assert!(out.contains("y_count 1"), "{out}");
    }

    #[test]
    fn command_types_are_capped_and_odd_ones_folded() {
        let m = Metrics::new();
        for i in 0..(MAX_COMMAND_TYPES + 10) {
            m.command_finished(&format!("cmd_{i}"), CommandStatus::Success, 0.01);
        }
        m.command_finished("has space", CommandStatus::Error, 0.01);
        m.command_finished(&"x".repeat(MAX_LABEL_LEN + 1), CommandStatus::Error, 0.01);
        assert_eq!(m.by_type.read().len(), MAX_COMMAND_TYPES);
        assert_eq!(m.other.count(), 12);
        assert_eq!(m.command_count("cmd_0"), 1);
        assert_eq!(m.command_count(&format!("cmd_{MAX_COMMAND_TYPES}")), 0);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert!(labelable("execute_code"));
        assert!(labelable("ns:get-info.v2"));
        assert!(!labelable("bad\"quote"));
        assert!(!labelable(""));
    }
}
