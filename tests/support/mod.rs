//! Shared test support: an in-process manager in front of a mock Blender, and a
//! raw NDJSON JSON-RPC connection.
#![allow(dead_code)]

pub mod chaos;

use std::net::SocketAddr;
use std::time::Duration;

use blender_session_manager::config::{BackendAddr, BackendSpec, Config};
use blender_session_manager::mock_blender::MockBlender;
use blender_session_manager::server::{self, Server};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Polls `check` every 10 ms until it yields `Some`, for at most 5 s: a bounded
/// wait for something the manager does in the background.
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for {what}");
}

/// A config on ephemeral loopback ports, pointing at `blender`.
pub fn config(blender: BackendAddr) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        compat_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        backends: vec![BackendSpec::new(blender)],
        // Probes open a connection of their own and send requests; tests that count
        // the mock's connections and requests run without them (tests/backends.rs
        // exercises them).
        health_interval: std::time::Duration::from_secs(24 * 3600),
        ..Config::default()
    }
}

pub struct Harness {
    pub mock: MockBlender,
    pub server: Server,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Harness {
        let mock = MockBlender::start().await;
        let mut cfg = config(mock.backend());
        tweak(&mut cfg);
        let server = server::start(cfg).await.expect("manager starts");
        Harness { mock, server }
    }

    pub async fn rpc(&self) -> Rpc {
        Rpc::connect(self.server.rpc_addr).await
    }

    pub async fn compat(&self) -> TcpStream {
        TcpStream::connect(self.server.compat_addr).await.unwrap()
    }
}

/// A JSON-RPC connection speaking raw NDJSON.
pub struct Rpc {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
    next_id: u64,
}

impl Rpc {
    pub async fn connect(addr: SocketAddr) -> Rpc {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = s.into_split();
        Rpc {
            reader: BufReader::new(r),
            writer: w,
            next_id: 0,
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// Reads one reply line (panics after 30 s of real or paused time).
    pub async fn read_reply(&mut self) -> Value {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(600), self.reader.read_line(&mut line))
            .await
            .expect("a reply line")
            .unwrap();
        assert!(n > 0, "connection closed while waiting for a reply");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {line}"))
    }

    /// Sends a request and returns its id.
    pub async fn send(&mut self, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let mut line = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )
        .unwrap();
        line.push(b'\n');
        self.send_raw(&line).await;
        id
    }

    /// Calls and returns `Ok(result)` or `Err(error object)`.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.send(method, params).await;
        let reply = self.read_reply().await;
        assert_eq!(reply["id"], id, "reply to another request: {reply}");
        assert_eq!(reply["jsonrpc"], "2.0");
        match reply.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(reply["result"].clone()),
        }
    }

    pub async fn ok(&mut self, method: &str, params: Value) -> Value {
        self.call(method, params)
            .await
            .unwrap_or_else(|e| panic!("{method} failed: {e}"))
    }

    pub async fn err(&mut self, method: &str, params: Value) -> Value {
        match self.call(method, params).await {
            Ok(v) => panic!("{method} unexpectedly succeeded: {v}"),
            Err(e) => e,
        }
    }

    pub async fn create(&mut self) -> String {
        let info = self.ok("create_session", json!({})).await;
        info["session_id"].as_str().unwrap().to_string()
    }
}
