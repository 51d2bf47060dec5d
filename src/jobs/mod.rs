//! Jobs: every command a caller issues runs as a job of its session.
//!
//! Concurrency design: a [`Job`] is shared (`Arc`) between the [`JobTable`] (which
//! finds, lists, counts and prunes jobs), the session task that runs it, and any
//! callers waiting for it. Its mutable part sits behind a `parking_lot` mutex held
//! only for memory updates; its status is also published on a `watch` channel, so
//! waiters (`send_command`'s sync wait, `get_job_result`'s long-poll) sleep until it
//! changes instead of polling. Capacity counts pending jobs manager-wide with one
//! atomic shared by every job, decremented when a job leaves `pending`. The
//! [`sweeper`] prunes finished jobs after the job TTL.

pub mod job;
pub mod sweeper;
pub mod table;

pub use job::{Job, JobKind, JobStatus};
pub use table::JobTable;
