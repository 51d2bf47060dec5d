//! The rows the store keeps, as plain data.
//!
//! Each struct mirrors one table. Columns that hold JSON (`metadata`, `state`,
//! `params`, `result`, `error`, `scene`, `progress`, `results`) are JSON text,
//! stored and returned exactly as given: the store never parses or re-encodes them.
//! Times are Unix seconds.

/// A session (table `sessions`), without its close columns: those are set by
/// [`WriteOp::CloseSession`](super::WriteOp::CloseSession).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub created_at: f64,
    /// Blender address the session talks to, as text.
    pub backend: String,
    /// `rpc` or `compat`.
    pub owner: String,
    /// JSON object given at creation.
    pub metadata: String,
    /// JSON of the session's scene state.
    pub state: String,
    pub command_count: i64,
    pub next_seq: i64,
    pub next_snapshot: i64,
    pub last_activity: f64,
}

/// One history entry of a session (table `history`, key `(session_id, seq)`).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub session_id: String,
    pub seq: i64,
    pub command: String,
    /// JSON.
    pub params: String,
    /// `success`, `error`, `timeout`, `disconnected` or `cancelled`.
    pub status: String,
    /// JSON.
    pub result: Option<String>,
    /// JSON.
    pub error: Option<String>,
    pub timestamp: f64,
    pub duration: f64,
    pub job_id: Option<String>,
}

/// One snapshot of a session's scene (table `snapshots`, key `(session_id, snapshot_id)`).
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRow {
    pub session_id: String,
    pub snapshot_id: i64,
    pub timestamp: f64,
    /// JSON: the `get_scene_info` result.
    pub scene: String,
    /// JSON: the session's state right after the snapshot.
    pub state: String,
}

/// One job (table `jobs`, key `id`; `ord` is the submission order).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: String,
    /// Submission order, ascending; restored jobs come back sorted by it.
    pub ord: i64,
    pub session_id: String,
    /// `pending`, `processing`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// The job's `type` (`command`, `batch`, ...).
    pub job_type: String,
    /// JSON.
    pub params: String,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    /// JSON: `{"current", "total", "message"}`.
    pub progress: String,
    /// JSON.
    pub result: Option<String>,
    /// JSON.
    pub error: Option<String>,
    /// JSON: per-command results of a batch.
    pub results: Option<String>,
    /// JSON.
    pub metadata: String,
}
