//! A small asynchronous JSON-RPC 2.0 client for the manager's NDJSON port.
//!
//! The manager speaks one JSON object per line in each direction and may answer the requests of one
//! connection out of order, so the client keeps a table of requests in flight keyed by their `id`.
//! A single reader task owns the read half of the socket: it splits the stream at newlines, parses
//! each line's envelope and hands the reply to the waiting caller through a oneshot channel. Writers
//! share the write half behind an async mutex, so several requests may be issued concurrently from
//! one [`RpcClient`] (the `jobs` and `mcp` subcommands rely on that).
//!
//! The table of pending requests and the "connection is gone" flag live under one plain mutex that is
//! never held across an `.await`. Checking the flag and registering a request happen under the same
//! lock, so a request can never be registered after the reader has drained the table and be left
//! waiting forever: once the connection ends every pending and future request fails with
//! [`ClientError::Disconnected`].
//!
//! Errors are typed per cause so the command layer can pick the exit status: the manager could not be
//! reached ([`ClientError::Unreachable`], with the address and a hint to start it), the manager
//! answered with a JSON-RPC error ([`ClientError::Rpc`], carrying `code`, `data.kind` and `message`),
//! the connection dropped, or the reply was not valid JSON-RPC.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long [`RpcClient::connect`] waits for the TCP connection before giving up.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call to the manager did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection to the manager could not be opened.
    #[error(
        "cannot reach the manager at {address}: {reason} — is it running? start it with scripts/start_manager.sh"
    )]
    Unreachable { address: String, reason: String },

    /// The manager answered the request with a JSON-RPC error object.
    #[error("{message} ({kind}, code {code})")]
    Rpc {
        code: i64,
        /// `data.kind` of the error object (`session_not_found`, `unauthorized`, …); `unknown` when absent.
        kind: String,
        message: String,
        /// The whole `data` member, for callers that want more than the kind.
        data: Value,
    },

    /// The connection ended before the reply to a request arrived.
    #[error("lost the connection to the manager at {address}: {reason}")]
    Disconnected { address: String, reason: String },

    /// The manager sent something that is not a JSON-RPC reply we can use.
    #[error("unexpected reply from the manager at {address}: {reason}")]
    Protocol { address: String, reason: String },

    /// The command line asked for something impossible (bad params JSON, negative wait, …).
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    /// Exit status for this error: 2 for usage errors, 3 when the manager cannot be reached or went
    /// away, 1 for everything the manager refused.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 2,
            ClientError::Unreachable { .. } | ClientError::Disconnected { .. } => 3,
            ClientError::Rpc { .. } | ClientError::Protocol { .. } => 1,
        }
    }

    /// The JSON-RPC error code, when the manager answered with an error.
    pub fn rpc_code(&self) -> Option<i64> {
        match self {
            ClientError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The JSON-RPC error kind (`data.kind`), when the manager answered with an error.
    pub fn rpc_kind(&self) -> Option<&str> {
        match self {
            ClientError::Rpc { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

type ReplySender = oneshot::Sender<Result<Value, ClientError>>;

/// Requests waiting for replies, plus the reason the connection ended once it has.
#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, ReplySender>,
    closed: Option<String>,
}

/// A connection to the manager's JSON-RPC port. Cheap to share behind an `Arc`; every method takes
/// `&self` and requests may run concurrently.
pub struct RpcClient {
    address: String,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl RpcClient {
    /// Connects to the manager at `address` (`HOST:PORT`) within [`DEFAULT_CONNECT_TIMEOUT`].
    pub async fn connect(address: &str) -> Result<Self, ClientError> {
        Self::connect_with_timeout(address, DEFAULT_CONNECT_TIMEOUT).await
    }

    /// Connects within `timeout`; a refusal, a resolution failure or the timeout all become
    /// [`ClientError::Unreachable`] naming the address.
    pub async fn connect_with_timeout(
        address: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let unreachable = |reason: String| ClientError::Unreachable {
            address: address.to_string(),
            reason,
        };
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(unreachable(describe_io_error(&err))),
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {}",
                    describe_timeout(timeout)
                )))
            }
        };
        // Requests are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let (read_half, write_half) = stream.into_split();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let reader = tokio::spawn(read_replies(
            read_half,
            Arc::clone(&pending),
            address.to_string(),
        ));
        Ok(RpcClient {
            address: address.to_string(),
            writer: tokio::sync::Mutex::new(write_half),
            pending,
            next_id: AtomicU64::new(1),
            reader,
        })
    }

    /// Connects and, when a token is given, authenticates before returning.
    pub async fn connect_authenticated(
        address: &str,
        token: Option<&str>,
    ) -> Result<Self, ClientError> {
        let client = Self::connect(address).await?;
        if let Some(token) = token {
            client.authenticate(token).await?;
        }
        Ok(client)
    }

    /// The address this client is connected to, as given.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Calls `authenticate {"token"}`; required first on a manager started with `--token`.
    pub async fn authenticate(&self, token: &str) -> Result<Value, ClientError> {
        self.call("authenticate", json!({ "token": token })).await
    }

    /// Sends one request and waits for its reply. `params` should be an object (the manager takes
    /// named params); the `result` member is returned, an `error` member becomes
    /// [`ClientError::Rpc`].
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock();
            if let Some(reason) = &pending.closed {
                return Err(self.disconnected(reason.clone()));
            }
            pending.waiting.insert(id, tx);
        }

        let request = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let mut line = serde_json::to_vec(&request).expect("a JSON value always serialises");
        line.push(b'\n');
        let written = {
            let mut writer = self.writer.lock().await;
            match writer.write_all(&line).await {
                Ok(()) => writer.flush().await,
                Err(err) => Err(err),
            }
        };
        if let Err(err) = written {
            self.pending.lock().waiting.remove(&id);
            return Err(self.disconnected(describe_io_error(&err)));
        }

        match rx.await {
            Ok(reply) => reply,
            // The reader always answers or drains; a dropped sender means it was torn down.
            Err(_) => Err(self.disconnected("the connection was closed".to_string())),
        }
    }

    fn disconnected(&self, reason: String) -> ClientError {
        ClientError::Disconnected {
            address: self.address.clone(),
            reason,
        }
    }
}

impl Drop for RpcClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads newline-delimited replies until the connection ends, delivering each to its caller; then
/// fails every request still waiting.
async fn read_replies(read_half: OwnedReadHalf, pending: Arc<Mutex<Pending>>, address: String) {
    let mut reader = BufReader::new(read_half);
    let mut line = Vec::new();
    let reason = loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => break "the manager closed the connection".to_string(),
            Ok(_) => {}
            Err(err) => break describe_io_error(&err),
        }
        let text = trim_ascii_whitespace(&line);
        if text.is_empty() {
            continue;
        }
        let Ok(reply) = serde_json::from_slice::<Value>(text) else {
            // A line we cannot parse cannot be matched to a request; skip it like the manager skips
            // a bad line of ours.
            continue;
        };
        let Some(id) = reply.get("id").and_then(Value::as_u64) else {
            // Notifications, or an error about a request the manager could not parse (id null).
            continue;
        };
        let Some(sender) = pending.lock().waiting.remove(&id) else {
            continue;
        };
        let _ = sender.send(decode_reply(reply, &address));
    };

    let drained: Vec<ReplySender> = {
        let mut pending = pending.lock();
        pending.closed = Some(reason.clone());
        pending.waiting.drain().map(|(_, sender)| sender).collect()
    };
    for sender in drained {
        let _ = sender.send(Err(ClientError::Disconnected {
            address: address.clone(),
            reason: reason.clone(),
        }));
    }
}

/// Turns one reply envelope into the caller's result.
fn decode_reply(mut reply: Value, address: &str) -> Result<Value, ClientError> {
    if let Some(error) = reply.get_mut("error").filter(|e| !e.is_null()) {
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message = match error.get("message") {
            Some(Value::String(message)) => message.clone(),
            Some(other) => other.to_string(),
            None => "(no message)".to_string(),
        };
        let data = error
            .get_mut("data")
            .map(Value::take)
            .unwrap_or(Value::Null);
        let kind = data
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        return Err(ClientError::Rpc {
            code,
            kind,
            message,
            data,
        });
    }
    match reply.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => Err(ClientError::Protocol {
            address: address.to_string(),
            reason: "reply has neither result nor error".to_string(),
        }),
    }
}

fn trim_ascii_whitespace(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// A short, lower-case reason for a socket error ("connection refused"), without the OS error number.
fn describe_io_error(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        io::ErrorKind::ConnectionAborted => "connection aborted".to_string(),
        io::ErrorKind::BrokenPipe => "the manager closed the connection".to_string(),
        io::ErrorKind::TimedOut => "timed out".to_string(),
        io::ErrorKind::AddrNotAvailable => "address not available".to_string(),
        _ => {
            let text = err.to_string();
            let text = match text.find(" (os error") {
                Some(cut) => text[..cut].to_string(),
                None => text,
            };
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

fn describe_timeout(timeout: Duration) -> String {
    if timeout.subsec_millis() == 0 {
        format!("{} s", timeout.as_secs())
    } else {
        format!("{:.1} s", timeout.as_secs_f64())
    }
}
