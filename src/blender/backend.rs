//! Shared health figures of one Blender backend, fed by every link to it.
//!
//! Links update these after each connect attempt and each reply; the status method
//! reads them. Plain atomics and a small mutex: nothing here is held across awaits.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::clock::unix_now;
use crate::config::BackendAddr;

#[derive(Debug)]
pub struct BackendStats {
    pub address: BackendAddr,
    last_success: Mutex<Option<f64>>,
    last_failure: Mutex<Option<(f64, String)>>,
    /// Exponentially weighted round-trip time in microseconds (0 = unknown).
    latency_us: AtomicU64,
}

impl BackendStats {
    pub fn new(address: BackendAddr) -> Self {
        BackendStats {
            address,
            last_success: Mutex::new(None),
            last_failure: Mutex::new(None),
            latency_us: AtomicU64::new(0),
        }
    }

    pub fn record_success(&self, round_trip: Option<std::time::Duration>) {
        *self.last_success.lock() = Some(unix_now());
        if let Some(rt) = round_trip {
            let sample = rt.as_micros().min(u128::from(u64::MAX)) as u64;
            let old = self.latency_us.load(Ordering::Relaxed);
            let new = if old == 0 {
                sample
            } else {
                (old * 7 + sample) / 8
            };
            self.latency_us.store(new.max(1), Ordering::Relaxed);
        }
    }

    pub fn record_failure(&self, error: impl Into<String>) {
        *self.last_failure.lock() = Some((unix_now(), error.into()));
    }

    /// `up` unless the latest event was a failed connect.
    pub fn state(&self) -> &'static str {
        let ok = *self.last_success.lock();
        match (&*self.last_failure.lock(), ok) {
            (Some((failed_at, _)), Some(ok_at)) if *failed_at > ok_at => "down",
            (Some(_), None) => "down",
            _ => "up",
        }
    }

    pub fn status(&self, sessions: usize) -> Value {
        let latency = self.latency_us.load(Ordering::Relaxed);
        json!({
            "name": self.address.to_string(),
            "address": self.address.to_string(),
            "state": self.state(),
            "sessions": sessions,
            "last_error": self.last_failure.lock().as_ref().map(|(_, e)| e.clone()),
            "latency_ms": (latency > 0).then(|| latency as f64 / 1000.0),
        })
    }
}
