//! The map of sessions by id.
//!
//! Concurrency design: one `parking_lot` mutex over two maps — live sessions (with
//! their mailboxes) and recently closed ones (records only, so their history and
//! snapshots stay readable). The lock is held for map operations only; nothing
//! awaits under it. Minting and the capacity check happen under the same lock as the
//! insert, so ids are unique and `max_sessions` is never overshot under concurrency.
//! Lock order is always registry, then a session's own lock: closing checks and marks
//! the session under both, so a close (or a reap) and a new command never interleave.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::disconnect::DisconnectReason;
use super::handle::{Session, SessionData, SessionHandle};
use crate::error::ManagerError;

#[derive(Default)]
struct Inner {
    /// Set at shutdown: no session may be added after the last one was closed.
    shutting_down: bool,
    live: HashMap<String, SessionHandle>,
    closed: HashMap<String, Arc<Session>>,
    closed_order: VecDeque<String>,
}

pub struct SessionRegistry {
    inner: Mutex<Inner>,
    /// Changed by a reload; sessions already open above a lowered limit stay.
    max_sessions: AtomicUsize,
    closed_limit: usize,
}

impl SessionRegistry {
    pub fn new(max_sessions: usize, closed_limit: usize) -> Self {
        SessionRegistry {
            inner: Mutex::new(Inner::default()),
            max_sessions: AtomicUsize::new(max_sessions),
            closed_limit,
        }
    }

    pub fn max_sessions(&self) -> usize {
        self.max_sessions.load(Ordering::Relaxed)
    }

    pub fn set_max_sessions(&self, max: usize) {
        self.max_sessions.store(max, Ordering::Relaxed);
    }

    /// Inserts a new session built by `make` from a freshly minted, unused id.
    pub fn insert_new(
        &self,
        mut mint: impl FnMut() -> String,
        make: impl FnOnce(String) -> SessionHandle,
    ) -> Result<SessionHandle, ManagerError> {
        let mut inner = self.inner.lock();
        if inner.shutting_down {
            return Err(ManagerError::ShuttingDown);
        }
        let max = self.max_sessions();
        if inner.live.len() >= max {
            return Err(ManagerError::Capacity(max));
        }
        let id = loop {
            let id = mint();
            if !inner.live.contains_key(&id) && !inner.closed.contains_key(&id) {
                break id;
            }
        };
        let handle = make(id.clone());
        inner.live.insert(id, handle.clone());
        Ok(handle)
    }

    /// Puts back a session restored from the store, with its own id.
    pub fn insert_restored(&self, handle: SessionHandle) -> Result<(), ManagerError> {
        let mut inner = self.inner.lock();
        if inner.live.contains_key(handle.id()) {
            return Err(ManagerError::InvalidRequest(format!(
                "duplicate session {}",
                handle.id()
            )));
        }
        inner.live.insert(handle.id().to_string(), handle);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<SessionHandle> {
        self.inner.lock().live.get(id).cloned()
    }

    /// A live or recently closed session's record.
    pub fn get_any(&self, id: &str) -> Option<Arc<Session>> {
        let inner = self.inner.lock();
        inner
            .live
            .get(id)
            .map(|h| h.session.clone())
            .or_else(|| inner.closed.get(id).cloned())
    }

    /// Removes a live session and starts closing it.
    pub fn close(&self, id: &str, reason: DisconnectReason) -> Option<SessionHandle> {
        self.close_if(id, reason, |_, _| true)
    }

    /// Closes a live session if `still` holds for it under the session's lock (the
    /// reaper's check that it is still idle).
    pub(crate) fn close_if(
        &self,
        id: &str,
        reason: DisconnectReason,
        still: impl FnOnce(&Session, &SessionData) -> bool,
    ) -> Option<SessionHandle> {
        let mut inner = self.inner.lock();
        let handle = inner.live.get(id)?.clone();
        if !handle.close_if(reason, still) {
            return None;
        }
        inner.live.remove(id);
        inner.closed.insert(id.to_string(), handle.session.clone());
        inner.closed_order.push_back(id.to_string());
        while inner.closed_order.len() > self.closed_limit {
            if let Some(old) = inner.closed_order.pop_front() {
                inner.closed.remove(&old);
            }
        }
        Some(handle)
    }

    /// Refuses new sessions from now on and returns the live ones.
    pub fn begin_shutdown(&self) -> Vec<SessionHandle> {
        let mut inner = self.inner.lock();
        inner.shutting_down = true;
        inner.live.values().cloned().collect()
    }

    pub fn live(&self) -> Vec<SessionHandle> {
        self.inner.lock().live.values().cloned().collect()
    }

    /// Ids of live sessions for which `pred` holds (one pass under the lock).
    pub fn select(&self, mut pred: impl FnMut(&Session) -> bool) -> Vec<String> {
        self.inner
            .lock()
            .live
            .values()
            .filter(|h| pred(&h.session))
            .map(|h| h.session.id.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
