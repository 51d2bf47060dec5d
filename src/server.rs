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

use crate::api::{compat, jsonrpc};
use crate::config::Config;
use crate::jobs::sweeper;
use crate::manager::Manager;
use crate::session::{reaper, CloseReason};
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
}

/// A running manager.
pub struct Server {
    pub manager: Arc<Manager>,
    pub rpc_addr: SocketAddr,
    pub compat_addr: SocketAddr,
    tasks: JoinSet<()>,
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
    let rpc_addr = rpc.local_addr().expect("bound");
    let compat_addr = compat.local_addr().expect("bound");
    let manager = Manager::with_store(config, store);
    manager.restore(restored).await;
    manager.add_listener("jsonrpc", rpc_addr.to_string());
    manager.add_listener("compat", compat_addr.to_string());
    let shutdown = manager.shutdown_token().clone();
    let mut tasks = JoinSet::new();
    tasks.spawn(jsonrpc::serve(rpc, manager.clone(), shutdown.clone()));
    tasks.spawn(compat::serve(compat, manager.clone(), shutdown.clone()));
    tasks.spawn(reaper::run(manager.clone(), shutdown.clone()));
    tasks.spawn(sweeper::run(manager.clone(), shutdown.clone()));
    info!(
        blender = %manager.config().blender,
        jsonrpc = %rpc_addr,
        compat = %compat_addr,
        idle_timeout_s = manager.config().idle_timeout.as_secs_f64(),
        db = %manager.config().db,
        "session manager started"
    );
    Ok(Server {
        manager,
        rpc_addr,
        compat_addr,
        tasks,
    })
}

impl Server {
    /// Stops accepting, closes every session (in-flight commands finish, bounded by
    /// `grace`), and waits for the tasks.
    pub async fn shutdown(mut self, grace: Duration) {
        info!("session manager shutting down");
        self.manager.shutdown_token().cancel();
        self.manager.close_all(CloseReason::Shutdown).await;
        let tracker = self.manager.tasks().clone();
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                grace_s = grace.as_secs_f64(),
                "sessions still busy at the end of the grace period"
            );
        }
        while self.tasks.join_next().await.is_some() {}
        self.manager.store().close().await;
        info!("session manager stopped");
    }
}
