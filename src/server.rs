//! Starting and stopping the manager: bind listeners, spawn front doors and the reaper.
//!
//! [`start`] is a function, not a global: tests bind `127.0.0.1:0`, start the server
//! in-process, and talk raw bytes to the returned addresses. Every spawned task races
//! its work against one `CancellationToken`; [`Server::shutdown`] cancels it, closes
//! the sessions (each finishes its in-flight command) and waits for their tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::info;

use crate::api::{compat, http, jsonrpc};
use crate::config::Config;
use crate::jobs::sweeper;
use crate::manager::Manager;
use crate::session::{reaper, DisconnectReason};
use crate::store::Store;

/// Why the manager could not start; names the flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{flag} {address}: cannot listen: {source}")]
    Listen {
        flag: &'static str,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("--db {path}: in use by another running manager (lock file {lock}); stop it, or give this one its own --db")]
    InUse { path: String, lock: String },
}

/// An exclusive lock on `<db>.lock` held for the life of the process: two managers
/// on one file would both restore the same sessions and run the same queued jobs.
/// `None` for `:memory:` or when the directory cannot be prepared (opening the store
/// then reports that).
fn lock_database(db: &str) -> Result<Option<std::fs::File>, StartError> {
    if db == crate::store::MEMORY_PATH {
        return Ok(None);
    }
    let path = std::path::Path::new(db);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if std::fs::create_dir_all(dir).is_err() {
            return Ok(None);
        }
    }
    let lock = format!("{db}.lock");
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
    else {
        return Ok(None);
    };
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0;
        if taken {
            return Err(StartError::InUse {
                path: db.to_string(),
                lock,
            });
        }
    }
    Ok(Some(file))
}

/// A running manager.
pub struct Server {
    pub manager: Arc<Manager>,
    pub rpc_addr: SocketAddr,
    pub compat_addr: SocketAddr,
    pub http_addr: SocketAddr,
    tasks: JoinSet<()>,
    /// Released when the server is dropped.
    _db_lock: Option<std::fs::File>,
}

async fn bind(flag: &'static str, address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen {
            flag,
            address,
            source,
        })
}

/// Opens the store, binds every listener, restores what the store held, and
/// starts serving.
pub async fn start(config: Config) -> Result<Server, StartError> {
    let db_lock = lock_database(&config.db)?;
    let (db, limits) = (
        config.db.clone(),
        (config.history_limit, config.snapshot_limit),
    );
    let (store, restored) =
        tokio::task::spawn_blocking(move || Store::open(&db, limits.0, limits.1))
            .await
            .expect("store open task")?;
    let rpc = bind("--listen", config.listen).await?;
    let compat = bind("--compat-listen", config.compat_listen).await?;
    let http_listener = bind("--http-listen", config.http_listen).await?;
    let rpc_addr = rpc.local_addr().expect("bound");
    let compat_addr = compat.local_addr().expect("bound");
    let http_addr = http_listener.local_addr().expect("bound");
    let manager = Manager::with_store(config, store);
    manager.restore(restored).await;
    manager.add_listener("jsonrpc", rpc_addr.to_string());
    manager.add_listener("compat", compat_addr.to_string());
    manager.add_listener("http", http_addr.to_string());
    let shutdown = manager.shutdown_token().clone();
    let mut tasks = JoinSet::new();
    tasks.spawn(jsonrpc::serve(rpc, manager.clone(), shutdown.clone()));
    tasks.spawn(compat::serve(compat, manager.clone(), shutdown.clone()));
    tasks.spawn(http::serve(
        http_listener,
        manager.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(reaper::run(manager.clone(), shutdown.clone()));
    manager.pool().start_probes(shutdown.clone());
    tasks.spawn(sweeper::run(manager.clone(), shutdown.clone()));
    let backends: Vec<String> = manager
        .config()
        .backends
        .iter()
        .map(ToString::to_string)
        .collect();
    info!(
        backends = %backends.join(","),
        jsonrpc = %rpc_addr,
        compat = %compat_addr,
        http = %http_addr,
        idle_timeout_s = manager.config().idle_timeout.as_secs_f64(),
        db = %manager.config().db,
        "session manager started"
    );
    Ok(Server {
        manager,
        rpc_addr,
        compat_addr,
        http_addr,
        tasks,
        _db_lock: db_lock,
    })
}

impl Server {
    /// Stops accepting, closes every session (in-flight commands finish, bounded by
    /// `grace`), and waits for the tasks.
    pub async fn shutdown(mut self, grace: Duration) {
        info!("session manager shutting down");
        self.manager.shutdown_token().cancel();
        self.manager.close_all(DisconnectReason::Shutdown).await;
        let tracker = self.manager.tasks().clone();
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                grace_s = grace.as_secs_f64(),
                "sessions still busy at the end of the grace period"
            );
        }
        // In-flight commands are done (or out of time): sync callers still waiting
        // on queued jobs now answer `pending`.
        self.manager.drained_token().cancel();
        while self.tasks.join_next().await.is_some() {}
        self.manager.pool().probes_stopped().await;
        self.manager.store().close().await;
        info!("session manager stopped");
    }
}
