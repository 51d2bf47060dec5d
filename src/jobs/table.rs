//! The manager-wide table of jobs: lookup, listing, capacity and pruning.
//!
//! One `parking_lot` mutex over the map and the submission order; held for map
//! operations only. The pending count is an atomic every job shares, so capacity
//! checks cost nothing and stay exact as jobs start, finish or are cancelled.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::job::{Counters, Job, JobKind, JobRecord, JobState, JobStatus};
use crate::error::ManagerError;

#[derive(Default)]
struct Inner {
    jobs: HashMap<String, Arc<Job>>,
    /// The same jobs, in submission order.
    order: VecDeque<Arc<Job>>,
}

pub struct JobTable {
    inner: Mutex<Inner>,
    counters: Arc<Counters>,
    next_ord: AtomicU64,
    /// Changed by a reload; jobs already queued above a lowered capacity stay.
    capacity: AtomicUsize,
}

/// Mints `job-YYYYMMDD-HHMMSS-xxxxxxxx`.
pub fn mint_id() -> String {
    format!(
        "job-{}-{:08x}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        rand::random::<u32>()
    )
}

impl JobTable {
    pub fn new(capacity: usize) -> Self {
        JobTable {
            inner: Mutex::default(),
            counters: Arc::default(),
            next_ord: AtomicU64::new(1),
            capacity: AtomicUsize::new(capacity),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity, Ordering::Relaxed);
    }

    pub fn pending(&self) -> usize {
        self.counters.pending.load(Ordering::Acquire)
    }

    /// Bytes of results the finished jobs keep (as counted when they finished).
    pub fn kept_bytes(&self) -> usize {
        self.counters.kept_bytes.load(Ordering::Acquire)
    }

    /// Resolves when finished jobs' results have gone past
    /// [`crate::manager::MAX_FINISHED_JOB_BYTES`] since the last prune.
    pub async fn over_budget(&self) {
        self.counters.over_budget.notified().await
    }

    /// Creates a pending job, refusing it when `counted` and the queue is full.
    pub fn create(
        &self,
        session_id: &str,
        kind: JobKind,
        metadata: Value,
        counted: bool,
    ) -> Result<Arc<Job>, ManagerError> {
        let mut inner = self.inner.lock();
        let pending = self.pending();
        if counted && pending >= self.capacity() {
            return Err(ManagerError::QueueFull {
                size: pending,
                capacity: self.capacity(),
            });
        }
        let id = loop {
            let id = mint_id();
            if !inner.jobs.contains_key(&id) {
                break id;
            }
        };
        let ord = self.next_ord.fetch_add(1, Ordering::AcqRel);
        let job = Arc::new(Job::new(
            id.clone(),
            ord,
            session_id.to_string(),
            kind,
            metadata,
            self.counters.clone(),
        ));
        inner.order.push_back(job.clone());
        inner.jobs.insert(id, job.clone());
        Ok(job)
    }

    /// Puts back a job restored from the store.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn restore(
        &self,
        id: String,
        ord: u64,
        session_id: String,
        kind: JobKind,
        metadata: Value,
        created_at: f64,
        state: JobState,
    ) -> Arc<Job> {
        let job = Arc::new(Job::with_state(
            id.clone(),
            ord,
            session_id,
            kind,
            metadata,
            created_at,
            state,
            self.counters.clone(),
        ));
        self.next_ord
            .fetch_max(ord.saturating_add(1), Ordering::AcqRel);
        let mut inner = self.inner.lock();
        inner.order.push_back(job.clone());
        inner.jobs.insert(id, job.clone());
        job
    }

    pub fn get(&self, id: &str) -> Result<Arc<Job>, ManagerError> {
        self.inner
            .lock()
            .jobs
            .get(id)
            .cloned()
            .ok_or_else(|| ManagerError::JobNotFound(id.to_string()))
    }

    /// 1-based place of a pending job among its session's pending jobs.
    pub fn position(&self, job: &Job) -> Option<usize> {
        if job.status() != JobStatus::Pending {
            return None;
        }
        let inner = self.inner.lock();
        let ahead = inner
            .order
            .iter()
            .filter(|j| {
                j.session_id == job.session_id
                    && j.ord < job.ord
                    && j.status() == JobStatus::Pending
            })
            .count();
        Some(ahead + 1)
    }

    pub fn record(&self, job: &Job) -> JobRecord {
        job.record(self.position(job))
    }

    /// Records, newest first, filtered by session and status.
    pub fn list(&self, session_id: Option<&str>, status: Option<JobStatus>) -> Vec<JobRecord> {
        let jobs: Vec<Arc<Job>> = {
            let inner = self.inner.lock();
            inner
                .order
                .iter()
                .rev()
                .filter(|j| session_id.is_none_or(|s| j.session_id == s))
                .filter(|j| status.is_none_or(|s| j.status() == s))
                .cloned()
                .collect()
        };
        jobs.iter().map(|j| self.record(j)).collect()
    }

    /// Jobs of one session that are still pending, in order.
    pub fn pending_of(&self, session_id: &str) -> Vec<Arc<Job>> {
        let inner = self.inner.lock();
        inner
            .order
            .iter()
            .filter(|j| j.session_id == session_id && j.status() == JobStatus::Pending)
            .cloned()
            .collect()
    }

    /// Removes jobs finished more than `ttl` ago, then the oldest finished jobs
    /// beyond `max_kept` jobs or `max_bytes` of kept results; returns their ids.
    pub fn prune(
        &self,
        ttl: Duration,
        now: Instant,
        max_kept: usize,
        max_bytes: usize,
    ) -> Vec<String> {
        let mut inner = self.inner.lock();
        // One walk, newest first: a job past the TTL goes; the other finished jobs
        // stay while both budgets last. (It runs every 1,024 submissions under
        // load, over ~10,000 jobs: no lookups or hashing per job.)
        let (mut kept, mut bytes) = (0usize, 0usize);
        let mut gone = Vec::new();
        let mut dropped_bytes = 0;
        let mut drop_at = vec![false; inner.order.len()];
        for (i, job) in inner.order.iter().enumerate().rev() {
            let Some((at, size)) = job.finished_and_kept_bytes() else {
                continue;
            };
            let drop = if now.saturating_duration_since(at) > ttl {
                true
            } else {
                kept += 1;
                bytes += size;
                kept > max_kept || bytes > max_bytes
            };
            if drop {
                drop_at[i] = true;
                gone.push(job.id.clone());
                dropped_bytes += size;
            }
        }
        self.counters.take_kept(dropped_bytes);
        if !gone.is_empty() {
            for id in &gone {
                inner.jobs.remove(id);
            }
            let mut i = 0;
            inner.order.retain(|_| {
                i += 1;
                !drop_at[i - 1]
            });
        }
        gone
    }

    /// Seed 000's queue status plus counts and capacity.
    pub fn queue_status(&self) -> Value {
        let inner = self.inner.lock();
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        let mut current: Option<(u64, String)> = None;
        for job in inner.jobs.values() {
            let st = job.status();
            *counts.entry(st.as_str()).or_default() += 1;
            if st == JobStatus::Processing && current.as_ref().is_none_or(|(o, _)| job.ord < *o) {
                current = Some((job.ord, job.id.clone()));
            }
        }
        let mut tasks = Map::new();
        for j in inner.order.iter().rev().take(100) {
            tasks.insert(
                j.id.clone(),
                json!({"status": j.status(), "type": j.job_type(), "created_at": j.created_at}),
            );
        }
        let n = |k| counts.get(k).copied().unwrap_or(0);
        json!({
            "queue_size": n("pending") + n("processing"),
            "pending": n("pending"),
            "processing": n("processing"),
            "completed": n("completed"),
            "failed": n("failed"),
            "cancelled": n("cancelled"),
            "capacity": self.capacity(),
            "current_task": current.map(|(_, id)| id),
            "tasks": tasks,
        })
    }

    pub fn len(&self) -> usize {
        self.inner.lock().jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counts for `get_manager_status`.
#[derive(Debug, Serialize)]
pub struct JobCounts {
    pub pending: usize,
    pub total: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::{Finished, Persist};
    use crate::store::Store;

    fn finish(job: &Job, bytes: usize) {
        let persist = Persist::new(Store::open(":memory:", 10, 10).unwrap().0);
        let result = crate::raw_json::RawJson::from_value(&"x".repeat(bytes - 2));
        futures::executor::block_on(job.finish(
            Finished {
                status: JobStatus::Completed,
                result: Some(super::super::job::Envelope::Whole(result)),
                error: None,
                at: 0.0,
            },
            None,
            &persist,
        ));
    }

    fn single() -> JobKind {
        JobKind::Single {
            command_type: "ping".into(),
            params: None,
        }
    }

    #[test]
    fn results_past_the_byte_bound_wake_the_sweeper() {
        use futures::FutureExt;
        let t = JobTable::new(10);
        let c = &t.counters;
        c.add_kept(crate::manager::MAX_FINISHED_JOB_BYTES);
        assert!(t.over_budget().now_or_never().is_none(), "at the bound");
        c.add_kept(1);
        assert!(t.over_budget().now_or_never().is_some(), "past the bound");
        c.take_kept(1);
        assert_eq!(t.kept_bytes(), crate::manager::MAX_FINISHED_JOB_BYTES);
    }

    #[test]
    fn keeps_the_newest_finished_jobs_within_count_and_bytes() {
        let t = JobTable::new(100);
        let jobs: Vec<_> = (0..6)
            .map(|_| t.create("s", single(), Value::Null, true).unwrap())
            .collect();
        for j in &jobs[..5] {
            assert!(futures::executor::block_on(async {
                let p = Persist::new(Store::open(":memory:", 10, 10).unwrap().0);
                j.start(&p).await.is_some()
            }));
            finish(j, 100);
        }
        let now = Instant::now();
        // Count bound: the 3 newest finished stay; the pending one is never pruned.
        let gone = t.prune(Duration::from_secs(3600), now, 3, usize::MAX);
        let mut gone_sorted = gone.clone();
        gone_sorted.sort();
        let mut want = vec![jobs[0].id.clone(), jobs[1].id.clone()];
        want.sort();
        assert_eq!(gone_sorted, want);
        assert!(t.get(&jobs[5].id).is_ok());
        // Byte bound: 250 bytes keeps two of the 100-byte results.
        let gone = t.prune(Duration::from_secs(3600), now, usize::MAX, 250);
        assert_eq!(gone, vec![jobs[2].id.clone()]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.kept_bytes(), 200, "the kept results are counted");
        let listed: Vec<_> = t.list(None, None).into_iter().map(|r| r.id).collect();
        let want: Vec<_> = [5, 4, 3].iter().map(|&i| jobs[i].id.clone()).collect();
        assert_eq!(
            listed, want,
            "the order left behind is the jobs kept, newest first"
        );
        // Past the TTL every finished job goes, whatever the budgets.
        let later = now + Duration::from_secs(2);
        let mut gone = t.prune(Duration::from_secs(1), later, usize::MAX, usize::MAX);
        gone.sort();
        let mut want = vec![jobs[3].id.clone(), jobs[4].id.clone()];
        want.sort();
        assert_eq!(gone, want);
        assert_eq!(t.len(), 1);
        assert_eq!(t.kept_bytes(), 0);
        assert_eq!(t.pending_of("s").len(), 1);
        assert_eq!(t.position(&jobs[5]), Some(1));
    }
}
