//! Persistence: sessions, history, snapshots and jobs in one SQLite file.
//!
//! All writes go through a single writer thread that owns the write connection
//! (rusqlite is blocking, so it is a plain `std::thread`, never a tokio worker).
//! [`Store::write`] only puts the operation on a channel and returns a
//! [`Committed`] future. The writer takes one request, drains whatever else is
//! queued at that moment (up to 1024 operations), applies them all in one
//! transaction and commits once: under load many writes share one COMMIT — group
//! commit — instead of paying one log sync each. Only after COMMIT returned does
//! it resolve the futures of that batch, so a caller that waits on its
//! `Committed` before replying never tells anyone something the file does not
//! hold. Each request runs in its own savepoint: one that fails is rolled back
//! alone and its future resolves with the error; a failed transaction resolves
//! every future of the batch with the error and is logged with the path; the
//! writer keeps going either way. Dropping a `Committed` does not cancel the write.
//!
//! The file runs in WAL mode with `synchronous=NORMAL`: a commit is in the
//! write-ahead log (in the operating system's cache) when COMMIT returns, so
//! everything acknowledged survives `kill -9` of the process; it is not synced to
//! disk on every commit, so a power loss or kernel crash may lose the last
//! transactions (never corrupt the file).
//!
//! Queries ([`Store::session_history`], [`Store::snapshots`]) run on
//! `spawn_blocking` with separate read connections; WAL lets them read the last
//! committed state while the writer writes.
//!
//! The schema version is kept in `PRAGMA user_version` and brought up to date by
//! migrations at open; a file from a newer build is refused. `--db :memory:` gives
//! a disabled store: writes are dropped and resolve at once, queries find nothing,
//! and nothing outlives the process.

mod read;
pub mod rows;
mod schema;
mod writer;

pub use rows::*;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::oneshot;

use writer::{Msg, Writer};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = schema::SCHEMA_VERSION;

/// The path that gives a disabled store.
pub const MEMORY_PATH: &str = ":memory:";

/// Read connections kept open between queries.
const IDLE_READERS: usize = 4;

/// What went wrong, naming the `--db` flag and the path.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The file or its directory cannot be opened or created.
    #[error("--db {path}: cannot open: {reason}")]
    CannotOpen { path: String, reason: String },
    /// The file exists but is not an SQLite database.
    #[error("--db {path}: not a SQLite database ({detail})")]
    NotDatabase { path: String, detail: String },
    /// The file was written by a build with a newer schema.
    #[error("--db {path}: written by a newer version (schema {found}, this build knows {known})")]
    NewerSchema {
        path: String,
        found: i64,
        known: i64,
    },
    /// Bringing the schema up to date failed (nothing of that step was kept).
    #[error("--db {path}: cannot migrate to schema {version}: {reason}")]
    Migration {
        path: String,
        version: i64,
        reason: String,
    },
    /// A write was rolled back.
    #[error("--db {path}: write failed: {reason}")]
    Write { path: String, reason: String },
    /// A query failed.
    #[error("--db {path}: query failed: {reason}")]
    Read { path: String, reason: String },
    /// The store was closed before the write could be queued or answered.
    #[error("--db {path}: the store is closed")]
    Closed { path: String },
}

/// What the store held at open: what a restarting manager restores.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    /// Sessions not closed, oldest first.
    pub sessions: Vec<RestoredSession>,
    /// All jobs, in submission order (ascending `ord`).
    pub jobs: Vec<JobRow>,
}

/// One open session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredSession {
    pub row: SessionRow,
    /// The last `history_limit` entries, oldest first.
    pub history: Vec<HistoryRow>,
    /// The last `snapshot_limit` snapshots, oldest first.
    pub snapshots: Vec<SnapshotRow>,
}

/// One change to the file.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Inserts the session or replaces all of its row's columns (a closed session
    /// stays closed).
    UpsertSession(SessionRow),
    /// Sets `closed_at` and `close_reason`; the session leaves [`Restored`] but its
    /// history stays queryable until pruned.
    CloseSession {
        id: String,
        closed_at: f64,
        reason: String,
    },
    /// Inserts (or replaces the same `seq`), then deletes this session's rows with
    /// `seq <= seq - history_limit`.
    History(HistoryRow),
    /// Inserts (or replaces the same id), then keeps only the session's last
    /// `snapshot_limit` snapshots.
    Snapshot(SnapshotRow),
    /// Inserts or replaces the job.
    UpsertJob(JobRow),
    DeleteJobs(Vec<String>),
    /// Deletes sessions closed before this time, with their history and snapshots.
    PruneClosedSessions {
        closed_before: f64,
    },
}

/// Resolves once the transaction holding the write committed (`Err` if it failed
/// or the store closed first). Dropping it does not cancel the write.
#[derive(Debug)]
pub struct Committed(CommittedState);

#[derive(Debug)]
enum CommittedState {
    Ready(Result<(), StoreError>),
    Waiting {
        rx: oneshot::Receiver<Result<(), StoreError>>,
        path: Arc<str>,
    },
}

impl Future for Committed {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = match &mut self.0 {
            CommittedState::Ready(r) => return Poll::Ready(r.clone()),
            CommittedState::Waiting { rx, path } => match Pin::new(rx).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(r)) => r,
                Poll::Ready(Err(_)) => Err(StoreError::Closed {
                    path: path.to_string(),
                }),
            },
        };
        self.0 = CommittedState::Ready(outcome.clone());
        Poll::Ready(outcome)
    }
}

impl Committed {
    fn ready(r: Result<(), StoreError>) -> Self {
        Committed(CommittedState::Ready(r))
    }

    /// Already resolved `Ok`: what a write to the disabled store gives.
    pub fn nothing_to_write() -> Self {
        Committed::ready(Ok(()))
    }
}

/// Handle to the store; cheap to clone. The last handle dropped stops the writer
/// after it committed everything queued (blocking the dropping thread meanwhile;
/// call [`Store::close`] from async code instead).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: Arc<str>,
    /// `None` for the disabled (`:memory:`) store.
    live: Option<Live>,
}

struct Live {
    tx: mpsc::Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
    committed: Arc<AtomicU64>,
    readers: Arc<Readers>,
}

/// Read connections, opened on demand and kept for reuse.
struct Readers {
    path: Arc<str>,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let popped = self.idle.lock().pop();
        let conn = match popped {
            Some(c) => c,
            None => schema::open_reader(&self.path)?,
        };
        let out = f(&conn).map_err(|e| StoreError::Read {
            path: self.path.to_string(),
            reason: e.to_string(),
        });
        let mut idle = self.idle.lock();
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        out
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(live) = &self.live {
            live.readers.idle.lock().clear();
            let _ = live.tx.send(Msg::Stop(None));
            if let Some(handle) = live.thread.lock().take() {
                let _ = handle.join();
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("persistent", &self.is_persistent())
            .finish()
    }
}

impl Store {
    /// `path == ":memory:"`: a disabled store — writes are dropped, `write`
    /// resolves at once, queries return `None`, and `Restored` is empty.
    ///
    /// Otherwise: creates parent directories, opens or creates the file, checks it
    /// is SQLite, runs migrations, sets WAL + `synchronous=NORMAL` + a busy
    /// timeout, loads [`Restored`] and starts the writer thread. `history_limit`
    /// and `snapshot_limit` (at least 1) bound what is kept per session and what
    /// `Restored` returns.
    pub fn open(
        path: &str,
        history_limit: usize,
        snapshot_limit: usize,
    ) -> Result<(Store, Restored), StoreError> {
        let shared: Arc<str> = Arc::from(path);
        if path == MEMORY_PATH {
            let store = Store {
                inner: Arc::new(Inner {
                    path: shared,
                    live: None,
                }),
            };
            return Ok((store, Restored::default()));
        }
        let history_limit = history_limit.max(1);
        let snapshot_limit = snapshot_limit.max(1);
        let conn = schema::open_writer(path)?;
        let restored = read::load_restored(&conn, history_limit, snapshot_limit).map_err(|e| {
            StoreError::Read {
                path: path.to_string(),
                reason: e.to_string(),
            }
        })?;
        let readers = Arc::new(Readers {
            path: shared.clone(),
            idle: Mutex::new(Vec::new()),
        });
        // Open one reader now so a problem shows at start-up, not on the first query.
        readers.with(|_| Ok(()))?;
        let committed = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            conn,
            path: path.to_string(),
            history_limit: i64::try_from(history_limit).unwrap_or(i64::MAX),
            snapshot_limit: i64::try_from(snapshot_limit).unwrap_or(i64::MAX),
            committed: committed.clone(),
            rx,
        };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::CannotOpen {
                path: path.to_string(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        tracing::info!(
            path,
            sessions = restored.sessions.len(),
            jobs = restored.jobs.len(),
            "store opened"
        );
        let store = Store {
            inner: Arc::new(Inner {
                path: shared,
                live: Some(Live {
                    tx,
                    thread: Mutex::new(Some(thread)),
                    committed,
                    readers,
                }),
            }),
        };
        Ok((store, restored))
    }

    /// `false` for the disabled (`:memory:`) store.
    pub fn is_persistent(&self) -> bool {
        self.inner.live.is_some()
    }

    /// The path given to [`Store::open`].
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// Transactions the writer has committed since open (0 when disabled).
    pub fn transactions_committed(&self) -> u64 {
        self.inner
            .live
            .as_ref()
            .map_or(0, |l| l.committed.load(Ordering::Relaxed))
    }

    /// Queues a write; the returned future resolves once the transaction holding
    /// it committed (`Err` if that transaction failed). Dropping the future does
    /// not cancel the write.
    pub fn write(&self, op: WriteOp) -> Committed {
        self.write_all(vec![op])
    }

    /// Queues several writes that commit together (same transaction, all or none).
    pub fn write_all(&self, ops: Vec<WriteOp>) -> Committed {
        let Some(live) = &self.inner.live else {
            return Committed::ready(Ok(()));
        };
        let (done, rx) = oneshot::channel();
        if live.tx.send(Msg::Write { ops, done }).is_err() {
            return Committed::ready(Err(self.closed()));
        }
        Committed(CommittedState::Waiting {
            rx,
            path: self.inner.path.clone(),
        })
    }

    /// Resolves when everything queued so far has committed (`Err` if the
    /// transaction it rode along with failed). Once the store is closed there is
    /// nothing left to wait for and it resolves `Ok`.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match self.write_all(Vec::new()).await {
            Err(StoreError::Closed { .. }) => Ok(()),
            other => other,
        }
    }

    /// History of any session (open or closed) still in the file, oldest first:
    /// with `since_seq`, the first `limit` rows with `seq > since_seq`; otherwise
    /// the last `limit`. `None` if the file has no such session (or the store is
    /// disabled). Sees what has committed.
    pub async fn session_history(
        &self,
        session_id: &str,
        limit: Option<usize>,
        since_seq: Option<u64>,
    ) -> Result<Option<Vec<HistoryRow>>, StoreError> {
        let id = session_id.to_string();
        self.query(move |c| read::session_history(c, &id, limit, since_seq))
            .await
            .map(Option::flatten)
    }

    /// Snapshots of a session still in the file, oldest first; `None` if there is
    /// no such session (or the store is disabled).
    pub async fn snapshots(
        &self,
        session_id: &str,
    ) -> Result<Option<Vec<SnapshotRow>>, StoreError> {
        let id = session_id.to_string();
        self.query(move |c| read::snapshots(c, &id))
            .await
            .map(Option::flatten)
    }

    /// Stops the writer after it committed everything queued so far and closed
    /// the file. Writes queued afterwards resolve with [`StoreError::Closed`].
    /// Also done when the last handle is dropped.
    pub async fn close(&self) {
        let Some(live) = &self.inner.live else {
            return;
        };
        // With no reader left open, the writer's close is the last one: it
        // checkpoints the log into the main file and removes it.
        live.readers.idle.lock().clear();
        let (ack, acked) = oneshot::channel();
        if live.tx.send(Msg::Stop(Some(ack))).is_ok() {
            // An error here means the writer already ended (after another Stop).
            let _ = acked.await;
        }
        let handle = live.thread.lock().take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    /// Runs a query on a read connection off the async workers. `Ok(None)` when
    /// the store is disabled.
    async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<Option<T>, StoreError> {
        let Some(live) = &self.inner.live else {
            return Ok(None);
        };
        let readers = live.readers.clone();
        let path = self.inner.path.clone();
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(|e| StoreError::Read {
                path: path.to_string(),
                reason: e.to_string(),
            })?
            .map(Some)
    }

    fn closed(&self) -> StoreError {
        StoreError::Closed {
            path: self.inner.path.to_string(),
        }
    }
}
