//! A fake manager for the command-line client's tests.
//!
//! The fake is a tiny JSON-RPC server on `127.0.0.1:0`: it reads NDJSON requests, records each one,
//! and answers from a per-test closure (a result, an error object, a delayed result, or closing the
//! connection). Replies are written by their own tasks, so a delayed reply lets a later request's
//! reply overtake it, the way the real manager may answer out of order.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use blender_session_manager::cli::GlobalOptions;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How the fake manager answers one request.
pub enum Reply {
    Result(Value),
    Error {
        code: i64,
        kind: &'static str,
        message: String,
    },
    Delayed(Duration, Value),
    /// Close the connection without answering.
    Close,
}

pub type Handler = Arc<dyn Fn(&str, &Value) -> Reply + Send + Sync>;

pub struct FakeManager {
    pub address: String,
    pub requests: Arc<Mutex<Vec<Value>>>,
}

impl FakeManager {
    pub async fn start(handler: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let recorded = Arc::clone(&requests);
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve_connection(
                    socket,
                    Arc::clone(&handler),
                    Arc::clone(&recorded),
                ));
            }
        });
        FakeManager { address, requests }
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().clone()
    }

    pub fn methods(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r["method"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    pub fn global(&self) -> GlobalOptions {
        GlobalOptions {
            manager: self.address.clone(),
            token: None,
            json: false,
        }
    }
}

async fn serve_connection(
    socket: tokio::net::TcpStream,
    handler: Handler,
    recorded: Arc<Mutex<Vec<Value>>>,
) {
    let (read_half, mut write_half) = socket.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if write_half.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut lines = BufReader::new(read_half).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let request: Value = serde_json::from_str(&line).expect("client sent invalid JSON");
        recorded.lock().push(request.clone());
        let id = request["id"].clone();
        let method = request["method"].as_str().unwrap_or_default().to_string();
        let reply = handler(&method, &request["params"]);
        let tx = tx.clone();
        let envelope = |body: (&str, Value)| {
            let mut reply = json!({"jsonrpc": "2.0", "id": id});
            reply[body.0] = body.1;
            format!("{reply}\n")
        };
        match reply {
            Reply::Result(result) => {
                let _ = tx.send(envelope(("result", result)));
            }
            Reply::Error {
                code,
                kind,
                message,
            } => {
                let error = json!({"code": code, "message": message, "data": {"kind": kind}});
                let _ = tx.send(envelope(("error", error)));
            }
            Reply::Delayed(delay, result) => {
                let line = envelope(("result", result));
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(line);
                });
            }
            Reply::Close => {
                writer.abort();
                return;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// The answer to a method a test did not expect: an error, so the client does not hang, while the
/// recorded requests still show the stray call.
pub fn not_found(method: &str) -> Reply {
    Reply::Error {
        code: -32601,
        kind: "method_not_found",
        message: format!("Method not found: {method}"),
    }
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// An address nothing listens on: bind a port, then free it.
pub async fn refused_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}
