//! Wall-clock time in the protocol's format.
//!
//! Durations and idle checks use `tokio::time::Instant` (so tests can pause time);
//! times shown to callers are Unix seconds as floats, from the wall clock.

/// Seconds since the Unix epoch as a float.
pub fn unix_now() -> f64 {
    let now = chrono::Utc::now();
    now.timestamp() as f64 + f64::from(now.timestamp_subsec_micros()) / 1e6
}
