//! One job: a command (or a batch of commands) of a session, with its status,
//! timestamps, progress and outcome.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::unix_now;
use crate::error::ManagerError;
use crate::persist::{Finished, Persist};
use crate::raw_json::RawJson;
use crate::session::CommandOutcome;
use crate::store::Committed;

/// Where a job is in its life. `completed`, `failed` and `cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "processing" => JobStatus::Processing,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }
}

/// What a job runs.
#[derive(Debug, Clone)]
pub enum JobKind {
    Single {
        command_type: String,
        params: Option<RawJson>,
    },
    Batch {
        commands: Vec<(String, Option<RawJson>)>,
        stop_on_error: bool,
    },
}

/// `{"current", "total", "message"}`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Progress {
    pub current: usize,
    pub total: usize,
    pub message: Option<String>,
}

#[derive(Debug)]
pub(crate) struct JobState {
    pub status: JobStatus,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    /// When it finished, on tokio's clock (for the TTL).
    pub finished_instant: Option<Instant>,
    pub progress: Progress,
    /// Blender's reply envelope (single command).
    pub result: Option<Envelope>,
    pub error: Option<Value>,
    /// One reply envelope per command (batch).
    pub results: Vec<RawJson>,
    /// The outcome of a single command, for the caller waiting synchronously.
    pub outcome: Option<CommandOutcome>,
    /// A cancel is being written to the store: the job must not start or finish
    /// until it is settled.
    pub cancel_requested: bool,
}

/// A job shared by the table, its session task and waiters.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    /// Submission order, manager-wide.
    pub ord: u64,
    pub session_id: String,
    pub kind: JobKind,
    pub metadata: Value,
    pub created_at: f64,
    pub(crate) state: Mutex<JobState>,
    status_tx: watch::Sender<JobStatus>,
    /// Wakes a session task waiting for a cancel in progress to settle.
    settled: tokio::sync::Notify,
    counters: Arc<Counters>,
}

/// Counts shared by the jobs of one table.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Jobs pending: queue slots in use.
    pub pending: AtomicUsize,
    /// Bytes of results kept by finished jobs, added as each finishes (pruning takes
    /// its jobs' bytes off again).
    pub kept_bytes: AtomicUsize,
    /// Fired when a finishing job takes `kept_bytes` past
    /// [`crate::manager::MAX_FINISHED_JOB_BYTES`], so the bound is enforced at once
    /// rather than at the next periodic prune.
    pub over_budget: tokio::sync::Notify,
}

impl Counters {
    pub(crate) fn add_kept(&self, bytes: usize) {
        let total = self.kept_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if bytes > 0 && total > crate::manager::MAX_FINISHED_JOB_BYTES {
            self.over_budget.notify_one();
        }
    }

    pub(crate) fn take_kept(&self, bytes: usize) {
        let _ = self
            .kept_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(bytes))
            });
    }
}

fn kept_bytes_of(st: &JobState) -> usize {
    st.result.as_ref().map_or(0, Envelope::len) + st.results.iter().map(RawJson::len).sum::<usize>()
}

impl Job {
    pub(crate) fn new(
        id: String,
        ord: u64,
        session_id: String,
        kind: JobKind,
        metadata: Value,
        counters: Arc<Counters>,
    ) -> Job {
        let total = match &kind {
            JobKind::Single { .. } => 1,
            JobKind::Batch { commands, .. } => commands.len(),
        };
        Job::with_state(
            id,
            ord,
            session_id,
            kind,
            metadata,
            unix_now(),
            JobState {
                status: JobStatus::Pending,
                started_at: None,
                finished_at: None,
                finished_instant: None,
                progress: Progress {
                    current: 0,
                    total,
                    message: None,
                },
                result: None,
                error: None,
                results: Vec::new(),
                outcome: None,
                cancel_requested: false,
            },
            counters,
        )
    }

    // The parts of a job read back from the store, as they are.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn with_state(
        id: String,
        ord: u64,
        session_id: String,
        kind: JobKind,
        metadata: Value,
        created_at: f64,
        state: JobState,
        counters: Arc<Counters>,
    ) -> Job {
        if state.status == JobStatus::Pending {
            counters.pending.fetch_add(1, Ordering::AcqRel);
        }
        if state.status.is_final() {
            counters.add_kept(kept_bytes_of(&state));
        }
        let (status_tx, _) = watch::channel(state.status);
        Job {
            id,
            ord,
            session_id,
            kind,
            metadata,
            created_at,
            state: Mutex::new(state),
            status_tx,
            settled: tokio::sync::Notify::new(),
            counters,
        }
    }

    pub fn job_type(&self) -> &str {
        match &self.kind {
            JobKind::Single { command_type, .. } => command_type,
            JobKind::Batch { .. } => "batch",
        }
    }

    /// The params as submitted: a command's params, or `{"commands", "stop_on_error"}`.
    pub fn params(&self) -> Value {
        match &self.kind {
            JobKind::Single { params, .. } => params.as_ref().map_or(json!({}), RawJson::to_value),
            JobKind::Batch {
                commands,
                stop_on_error,
            } => json!({
                "commands": commands.iter().map(|(c, p)| json!({
                    "command_type": c,
                    "params": p.as_ref().map_or(json!({}), RawJson::to_value),
                })).collect::<Vec<_>>(),
                "stop_on_error": stop_on_error,
            }),
        }
    }

    pub fn status(&self) -> JobStatus {
        self.state.lock().status
    }

    /// Moves the job to `to` and wakes waiters. Leaving `pending` frees a queue slot;
    /// becoming final counts the results it keeps.
    fn transition(&self, st: &mut JobState, to: JobStatus) {
        if st.status == JobStatus::Pending && to != JobStatus::Pending {
            self.counters.pending.fetch_sub(1, Ordering::AcqRel);
        }
        if to.is_final() && !st.status.is_final() {
            self.counters.add_kept(kept_bytes_of(st));
        }
        st.status = to;
        if to.is_final() {
            st.finished_at = Some(unix_now());
            st.finished_instant = Some(Instant::now());
        }
        self.status_tx.send_replace(to);
    }

    /// `pending` → `processing`, with the row saying so queued to the store (in the
    /// job's lock, so rows reach the store in the order of the transitions). Returns
    /// `None` if the job is no longer pending (cancelled while queued): it must not be
    /// sent to Blender. Waits while a cancel is being written.
    pub(crate) async fn start(&self, persist: &Persist) -> Option<Committed> {
        loop {
            let settled = self.settled.notified();
            {
                let mut st = self.state.lock();
                if st.status != JobStatus::Pending {
                    return None;
                }
                if !st.cancel_requested {
                    st.started_at = Some(unix_now());
                    self.transition(&mut st, JobStatus::Processing);
                    return Some(persist.queue_job_row(self, &st, None));
                }
            }
            settled.await;
        }
    }

    /// Whether a cancel has been asked for or has happened.
    pub(crate) fn cancelling(&self) -> bool {
        let st = self.state.lock();
        st.cancel_requested || st.status == JobStatus::Cancelled
    }

    pub(crate) fn set_progress(&self, current: usize, message: Option<String>) {
        let mut st = self.state.lock();
        st.progress.current = current;
        st.progress.message = message;
    }

    /// Records a finished command of a batch. Returns `false` if the job was
    /// cancelled meanwhile (the batch stops).
    pub(crate) fn push_batch_result(&self, envelope: RawJson) -> bool {
        let mut st = self.state.lock();
        if st.status == JobStatus::Cancelled {
            return false;
        }
        st.results.push(envelope);
        true
    }

    /// Ends a running job: its final row is queued (in the job's lock), committed,
    /// and only then published. A job cancelled while it ran stays `cancelled` and its
    /// late result is discarded.
    pub(crate) async fn finish(
        &self,
        finished: Finished,
        outcome: Option<CommandOutcome>,
        persist: &Persist,
    ) {
        let committed = loop {
            let settled = self.settled.notified();
            {
                let st = self.state.lock();
                if st.status.is_final() {
                    return;
                }
                if !st.cancel_requested {
                    break persist.queue_job_row(self, &st, Some(&finished));
                }
            }
            settled.await;
        };
        persist.settle(committed, &self.id).await;
        let mut st = self.state.lock();
        if st.status.is_final() {
            return; // cancelled after the row was queued: that row came later and wins
        }
        st.result = finished.result;
        st.error = finished.error;
        st.outcome = outcome;
        self.transition(&mut st, finished.status);
        st.finished_at = Some(finished.at);
    }

    /// Cancels, durably first: the cancelled row is queued in the job's lock and
    /// committed, and only then does the status change. A pending job leaves the
    /// queue (never reaches Blender); a running one is marked cancelled and its result
    /// will be discarded. Returns `removed`, `discarded` or `finished` (nothing to do).
    pub async fn cancel(&self, why: &str, persist: &Persist) -> Result<&'static str, ManagerError> {
        let error = json!({"kind": "cancelled", "message": why});
        let at = unix_now();
        let (what, committed) = {
            let mut st = self.state.lock();
            let what = match st.status {
                JobStatus::Pending => "removed",
                JobStatus::Processing => "discarded",
                _ => return Ok("finished"),
            };
            if st.cancel_requested {
                return Ok(what); // another cancel is being written
            }
            st.cancel_requested = true;
            let row = Finished {
                status: JobStatus::Cancelled,
                result: None,
                error: Some(error.clone()),
                at,
            };
            (what, persist.queue_job_row(self, &st, Some(&row)))
        };
        let written = committed.await;
        {
            let mut st = self.state.lock();
            st.cancel_requested = false;
            if written.is_ok() && !st.status.is_final() {
                st.error = Some(error);
                self.transition(&mut st, JobStatus::Cancelled);
                st.finished_at = Some(at);
            }
        }
        self.settled.notify_waiters();
        written
            .map(|()| what)
            .map_err(|e| ManagerError::Internal(format!("could not record the cancel: {e}")))
    }

    /// Cancels in memory only (a job whose session is gone before it was ever
    /// queued, or on restore); the caller writes the row.
    pub(crate) fn cancel_in_memory(&self, why: &str) {
        let mut st = self.state.lock();
        if st.status.is_final() {
            return;
        }
        st.error = Some(json!({"kind": "cancelled", "message": why}));
        self.transition(&mut st, JobStatus::Cancelled);
    }

    /// Waits until the job is final or `wait` passes (or `give_up` fires); returns
    /// the status then.
    pub async fn wait_final(
        &self,
        wait: Duration,
        give_up: &tokio_util::sync::CancellationToken,
    ) -> JobStatus {
        let mut rx = self.status_tx.subscribe();
        let done = async {
            let _ = rx.wait_for(|s| s.is_final()).await;
        };
        tokio::select! {
            _ = done => {}
            _ = tokio::time::sleep(wait) => {}
            _ = give_up.cancelled() => {}
        }
        self.status()
    }

    /// Takes the outcome of a finished single-command job (for its sync caller;
    /// the job keeps its reply envelope).
    pub fn take_outcome(&self) -> Option<CommandOutcome> {
        self.state.lock().outcome.take()
    }

    /// Bytes of results this job keeps in memory.
    pub fn kept_bytes(&self) -> usize {
        kept_bytes_of(&self.state.lock())
    }

    /// When it finished (tokio's clock) and the bytes of results it keeps; `None`
    /// while it is not finished.
    pub fn finished_and_kept_bytes(&self) -> Option<(Instant, usize)> {
        let st = self.state.lock();
        Some((st.finished_instant?, kept_bytes_of(&st)))
    }

    pub fn finished_instant(&self) -> Option<Instant> {
        self.state.lock().finished_instant
    }

    /// The job record (position filled in by the table).
    pub fn record(&self, position: Option<usize>) -> JobRecord {
        let st = self.state.lock();
        JobRecord {
            id: self.id.clone(),
            session_id: self.session_id.clone(),
            status: st.status,
            job_type: self.job_type().to_string(),
            params: self.params(),
            created_at: self.created_at,
            started_at: st.started_at,
            finished_at: st.finished_at,
            progress: st.progress.clone(),
            position,
            result: st.result.clone(),
            error: st.error.clone(),
            metadata: self.metadata.clone(),
        }
    }

    /// `get_job_result`'s shape.
    pub fn result_view(&self) -> JobResult {
        let st = self.state.lock();
        JobResult {
            job_id: self.id.clone(),
            status: st.status,
            result: st.result.clone(),
            error: st.error.clone(),
            results: matches!(self.kind, JobKind::Batch { .. }).then(|| st.results.clone()),
        }
    }
}

/// The job record of the protocol.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub session_id: String,
    pub status: JobStatus,
    #[serde(rename = "type")]
    pub job_type: String,
    pub params: Value,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub progress: Progress,
    pub position: Option<usize>,
    pub result: Option<Envelope>,
    pub error: Option<Value>,
    pub metadata: Value,
}

/// `get_job_result`'s result.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    pub job_id: String,
    pub status: JobStatus,
    pub result: Option<Envelope>,
    pub error: Option<Value>,
    pub results: Option<Vec<RawJson>>,
}

/// Blender's reply envelope, as a job keeps it: `{"status":"success","result":…}`
/// or `{"status":"error","message":…[,"traceback":…]}` (or whatever a store row held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// `{"status":"success","result":<this>}`. The envelope is written out around
    /// the result when serialised, so the result is never copied into it.
    Success(RawJson),
    /// Any other envelope, as JSON.
    Whole(RawJson),
}

const SUCCESS_HEAD: &[u8] = b"{\"status\":\"success\",\"result\":";

impl Envelope {
    /// Bytes of its JSON text.
    pub fn len(&self) -> usize {
        match self {
            Envelope::Success(r) => SUCCESS_HEAD.len() + r.len() + 1,
            Envelope::Whole(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The envelope as one JSON value (a copy, for a success).
    pub fn to_raw(&self) -> RawJson {
        match self {
            Envelope::Success(r) => {
                let mut out = Vec::with_capacity(self.len());
                out.extend_from_slice(SUCCESS_HEAD);
                out.extend_from_slice(r.bytes());
                out.push(b'}');
                RawJson::from_validated(bytes::Bytes::from(out))
            }
            Envelope::Whole(r) => r.clone(),
        }
    }
}

impl Serialize for Envelope {
    /// The same bytes as [`Envelope::to_raw`] (compact), without building them.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        match self {
            Envelope::Success(result) => {
                let mut s = serializer.serialize_struct("Envelope", 2)?;
                s.serialize_field("status", "success")?;
                s.serialize_field("result", result)?;
                s.end()
            }
            Envelope::Whole(raw) => raw.serialize(serializer),
        }
    }
}

/// Replies above this size are kept by sharing the reply's bytes rather than a copy:
/// the link gives such a reply a buffer of its own (see `link::BIG_FRAME`), so
/// keeping it holds on to nothing else. A smaller reply shares the link's read
/// buffer with whatever came before and after it; its result is copied out.
const SHARE_ABOVE: usize = crate::blender::link::BIG_FRAME;

/// Blender's reply envelope: `{"status": "success", "result": ...}` or
/// `{"status": "error", "message": ...[, "traceback": ...]}`.
pub fn envelope(
    outcome: &Result<crate::blender::reply::BlenderReply, ManagerError>,
) -> Option<Envelope> {
    let reply = outcome.as_ref().ok()?;
    if reply.success {
        let result = if reply.frame.bytes().len() > SHARE_ABOVE {
            reply.result.clone()
        } else {
            reply.result.detached()
        };
        Some(Envelope::Success(result))
    } else {
        let mut v =
            json!({"status": "error", "message": reply.message.clone().unwrap_or_default()});
        if let Some(tb) = &reply.traceback {
            v["traceback"] = Value::String(tb.clone());
        }
        Some(Envelope::Whole(RawJson::from_value(&v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blender::reply::BlenderReply;
    use crate::wire::JsonFrame;

    fn reply(text: String) -> Result<BlenderReply, ManagerError> {
        Ok(BlenderReply::parse(JsonFrame::new(bytes::Bytes::from(text))).unwrap())
    }

    #[test]
    fn envelopes_serialise_as_their_json() {
        let small = reply(r#"{"status": "success", "result": {"a" : [1, 2.50]}}"#.into());
        let big = reply(format!(
            r#"{{"status":"success","result":"{}","_state":{{}}}}"#,
            "x".repeat(SHARE_ABOVE)
        ));
        let error = reply(r#"{"status":"error","message":"no \"Cube\"","traceback":"T"}"#.into());
        for outcome in [small, big, error] {
            let env = envelope(&outcome).unwrap();
            let text = serde_json::to_vec(&env).unwrap();
            assert_eq!(text, env.to_raw().bytes().as_ref());
            assert_eq!(text.len(), env.len());
            let v: Value = serde_json::from_slice(&text).unwrap();
            let r = outcome.as_ref().unwrap();
            if r.success {
                assert_eq!(
                    v,
                    json!({"status": "success", "result": r.result.to_value()})
                );
            } else {
                assert_eq!(
                    v,
                    json!({"status": "error", "message": "no \"Cube\"", "traceback": "T"})
                );
            }
        }
    }

    #[test]
    fn only_a_big_reply_is_shared_with_the_job() {
        let inside = |outcome: &Result<BlenderReply, ManagerError>| {
            let r = outcome.as_ref().unwrap();
            let Some(Envelope::Success(kept)) = envelope(outcome) else {
                panic!("not a success envelope");
            };
            assert_eq!(kept, r.result);
            r.frame
                .bytes()
                .as_ptr_range()
                .contains(&kept.bytes().as_ptr())
        };
        let small = reply(r#"{"status":"success","result":[1,2,3]}"#.into());
        assert!(
            !inside(&small),
            "a small result pins the link's read buffer"
        );
        let big = reply(format!(
            r#"{{"status":"success","result":"{}"}}"#,
            "x".repeat(SHARE_ABOVE)
        ));
        assert!(inside(&big), "a big result was copied");
    }
}
