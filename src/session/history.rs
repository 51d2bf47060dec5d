//! Command history of one session: a bounded ring of entries, oldest first.
//!
//! Entries hold results as [`RawJson`] (cheap to clone: a reference-counted slice of
//! the reply); results above the configured size are stored as a truncation marker,
//! so a thousand 16 MB screenshots cannot exhaust memory.

use std::collections::VecDeque;

use serde::Serialize;
use serde_json::Value;

use crate::raw_json::RawJson;

/// Outcome of one command as recorded in history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    Success,
    Error,
    Timeout,
    Disconnected,
    Cancelled,
}

impl CommandStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Success => "success",
            CommandStatus::Error => "error",
            CommandStatus::Timeout => "timeout",
            CommandStatus::Disconnected => "disconnected",
            CommandStatus::Cancelled => "cancelled",
        }
    }
}

/// One command a caller issued.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub seq: u64,
    pub command: String,
    pub params: RawJson,
    pub status: CommandStatus,
    pub result: Option<RawJson>,
    pub error: Option<Value>,
    pub timestamp: f64,
    pub duration: f64,
    pub job_id: Option<String>,
}

/// The last `limit` entries of a session.
#[derive(Debug)]
pub struct History {
    entries: VecDeque<HistoryEntry>,
    limit: usize,
}

impl History {
    pub fn new(limit: usize) -> Self {
        History {
            entries: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    pub fn push(&mut self, entry: HistoryEntry) {
        if self.entries.len() == self.limit {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// With `since_seq`: the first `limit` entries after it (for tailing).
    /// Without: the last `limit` entries. Oldest first either way.
    pub fn query(&self, limit: Option<usize>, since_seq: Option<u64>) -> Vec<HistoryEntry> {
        let limit = limit.unwrap_or(usize::MAX);
        match since_seq {
            Some(since) => self
                .entries
                .iter()
                .filter(|e| e.seq > since)
                .take(limit)
                .cloned()
                .collect(),
            None => {
                let skip = self.entries.len().saturating_sub(limit);
                self.entries.iter().skip(skip).cloned().collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> HistoryEntry {
        HistoryEntry {
            seq,
            command: "ping".into(),
            params: RawJson::empty_object(),
            status: CommandStatus::Success,
            result: None,
            error: None,
            timestamp: 0.0,
            duration: 0.0,
            job_id: None,
        }
    }

    #[test]
    fn keeps_the_last_limit_entries_and_queries_both_ways() {
        let mut h = History::new(3);
        for s in 1..=5 {
            h.push(entry(s));
        }
        let seqs = |v: Vec<HistoryEntry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(h.query(None, None)), vec![3, 4, 5]);
        assert_eq!(seqs(h.query(Some(2), None)), vec![4, 5]);
        assert_eq!(seqs(h.query(Some(1), Some(3))), vec![4]);
        assert_eq!(seqs(h.query(None, Some(5))), Vec::<u64>::new());
        let v = serde_json::to_value(&h.query(Some(1), None)[0]).unwrap();
        for key in [
            "seq",
            "command",
            "params",
            "status",
            "result",
            "error",
            "timestamp",
            "duration",
            "job_id",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["status"], "success");
    }
}
