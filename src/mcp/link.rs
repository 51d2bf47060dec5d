//! The MCP server's connection to the manager: opened lazily, reopened after it is lost.
//!
//! MCP hosts start their servers when they start, often before the manager is up, and keep them
//! for as long as they run, across manager restarts. So the connection is opened on first use
//! (and tried once at start-up), a manager that cannot be reached is an error for that one call,
//! and a connection found dead is dropped so the next call opens a fresh one.
//!
//! One [`RpcClient`] is shared by every tool call: it matches replies to requests by id, so calls
//! run concurrently over the one socket. The slot holding it is an async mutex, held only while
//! looking at the slot or connecting, never across a call; concurrent callers therefore share a
//! single connection attempt instead of each opening a socket.
//!
//! A call that fails because the connection dropped is retried once on a fresh connection only
//! when repeating it cannot change anything ([`Retry::Safe`]: reads and waits). A call that runs or
//! changes something in Blender or the manager is not repeated — the request may already have
//! reached the manager — and its error says so.

use std::sync::Arc;

use serde_json::Value;

use crate::cli::{ClientError, RpcClient};

/// Whether a call may be sent again after the connection dropped under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reading or waiting only: repeating it on a new connection is harmless.
    Safe,
    /// Runs a command or changes state: never sent twice.
    Never,
}

/// A reconnecting JSON-RPC connection to one manager.
pub struct ManagerLink {
    address: String,
    token: Option<String>,
    slot: tokio::sync::Mutex<Option<Arc<RpcClient>>>,
}

impl std::fmt::Debug for ManagerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerLink")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl ManagerLink {
    /// A link to the manager at `address` (`HOST:PORT`), authenticating with `token` if given.
    /// Nothing is opened until the first call or [`ManagerLink::connect`].
    pub fn new(address: impl Into<String>, token: Option<String>) -> Self {
        ManagerLink {
            address: address.into(),
            token,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// The manager's address as given.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The live connection, opening (and authenticating) one when there is none.
    pub async fn connect(&self) -> Result<Arc<RpcClient>, ClientError> {
        let mut slot = self.slot.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(Arc::clone(client));
        }
        let client =
            Arc::new(RpcClient::connect_authenticated(&self.address, self.token.as_deref()).await?);
        tracing::info!(manager = %self.address, "connected to the manager");
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Calls `method` with named `params`. A dropped connection is forgotten (the next call
    /// reconnects) and, for [`Retry::Safe`] calls, the call is sent once more on a new one.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        retry: Retry,
    ) -> Result<Value, ClientError> {
        let client = self.connect().await?;
        match client.call(method, params.clone()).await {
            Err(err @ ClientError::Disconnected { .. }) => {
                self.forget(&client).await;
                tracing::warn!(manager = %self.address, method, error = %err, "lost the connection to the manager");
                if retry == Retry::Never {
                    return Err(err);
                }
                let client = self.connect().await?;
                let result = client.call(method, params).await;
                if matches!(result, Err(ClientError::Disconnected { .. })) {
                    self.forget(&client).await;
                }
                result
            }
            other => other,
        }
    }

    /// Drops `client` from the slot unless another caller has already replaced it.
    async fn forget(&self, client: &Arc<RpcClient>) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, client)) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// Answers every request on one connection with `{"ok": <method>}`, then closes it after
    /// `replies` answers.
    async fn serve_once(listener: &TcpListener, replies: usize) {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        for _ in 0..replies {
            let line = lines.next_line().await.unwrap().unwrap();
            let req: Value = serde_json::from_str(&line).unwrap();
            let reply = json!({"jsonrpc": "2.0", "id": req["id"], "result": {"ok": req["method"]}});
            write
                .write_all(format!("{reply}\n").as_bytes())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_manager_that_is_not_up_is_an_error_for_that_call_only() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let link = ManagerLink::new(address.clone(), None);
        let err = link
            .call("list_tools", json!({}), Retry::Safe)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");

        // The manager comes up on the same port: the next call connects.
        let listener = TcpListener::bind(&address).await.unwrap();
        let server = tokio::spawn(async move { serve_once(&listener, 1).await });
        let v = link
            .call("list_tools", json!({}), Retry::Safe)
            .await
            .unwrap();
        assert_eq!(v, json!({"ok": "list_tools"}));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_connection_is_replaced_and_safe_calls_are_retried() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let link = ManagerLink::new(address, None);
        let server = tokio::spawn(async move {
            // First connection: one answer, then closed (a manager restart).
            serve_once(&listener, 1).await;
            // Second connection: answers the retried call and one more.
            serve_once(&listener, 2).await;
            listener
        });
        assert!(link.call("get_job", json!({}), Retry::Safe).await.is_ok());
        // Let the client notice the close before the next call.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let v = link.call("get_job", json!({}), Retry::Safe).await.unwrap();
        assert_eq!(v, json!({"ok": "get_job"}));
        let v = link
            .call("submit_job", json!({}), Retry::Never)
            .await
            .unwrap();
        assert_eq!(v, json!({"ok": "submit_job"}));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn unsafe_calls_are_not_repeated_after_a_drop() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let link = ManagerLink::new(address, None);
        let server = tokio::spawn(async move {
            serve_once(&listener, 1).await;
            serve_once(&listener, 1).await;
        });
        assert!(link
            .call("list_tools", json!({}), Retry::Safe)
            .await
            .is_ok());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let err = link
            .call("handle_tool_call", json!({}), Retry::Never)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Disconnected { .. }), "{err:?}");
        // The next call opens a new connection.
        assert!(link
            .call("list_tools", json!({}), Retry::Safe)
            .await
            .is_ok());
        server.await.unwrap();
    }
}
