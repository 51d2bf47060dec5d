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
use crate::manager::Manager;
use crate::session::{reaper, CloseReason};

/// A listener that could not be bound; names the flag and the address.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {address}: cannot listen: {source}")]
pub struct StartError {
    pub flag: &'static str,
    pub address: SocketAddr,
    #[source]
    pub source: std::io::Error,
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
        .map_err(|source| StartError {
            flag,
            address,
            source,
        })
}

/// Binds every listener and starts serving.
pub async fn start(config: Config) -> Result<Server, StartError> {
    let rpc = bind("--listen", config.listen).await?;
    let compat = bind("--compat-listen", config.compat_listen).await?;
    let rpc_addr = rpc.local_addr().expect("bound");
    let compat_addr = compat.local_addr().expect("bound");
    let manager = Manager::new(config);
    manager.add_listener("jsonrpc", rpc_addr.to_string());
    manager.add_listener("compat", compat_addr.to_string());
    let shutdown = manager.shutdown_token().clone();
    let mut tasks = JoinSet::new();
    tasks.spawn(jsonrpc::serve(rpc, manager.clone(), shutdown.clone()));
    tasks.spawn(compat::serve(compat, manager.clone(), shutdown.clone()));
    tasks.spawn(reaper::run(manager.clone(), shutdown.clone()));
    info!(
        blender = %manager.config().blender,
        jsonrpc = %rpc_addr,
        compat = %compat_addr,
        idle_timeout_s = manager.config().idle_timeout.as_secs_f64(),
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
        self.manager.close_all(CloseReason::Shutdown);
        let tracker = self.manager.tasks().clone();
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                grace_s = grace.as_secs_f64(),
                "sessions still busy at the end of the grace period"
            );
        }
        while self.tasks.join_next().await.is_some() {}
        info!("session manager stopped");
    }
}
