//! A scriptable stand-in for the Blender addon, for tests and benchmarks.
//!
//! It speaks the addon protocol on `127.0.0.1` (port 0 by default), keeps a toy scene
//! (a list of object names), and answers each command with a default reply or with a
//! scripted [`MockAction`]: a reply, a delay, closing or resetting mid-command,
//! cutting a reply short, garbage, a reply without delimiter, or silence. It records every request.
//!
//! Concurrency design: per connection, a reader task decodes requests with the
//! project's codec and hands them to a processor task that answers them in order. The
//! reader counts requests not yet answered; if a second one arrives while the first
//! is still being processed, that is a pipelining violation — the manager promised
//! never to have two requests in flight on one socket — and dropping the mock with
//! any violation recorded panics, failing the test.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::BackendAddr;
use crate::wire::{Frame, JsonFrameCodec, NewlinePolicy};

/// How the mock answers one request.
#[derive(Debug, Clone)]
pub enum MockAction {
    /// Reply with this value (serialised, no delimiter, like the stock addon).
    Reply(Value),
    /// Write these exact bytes as the reply.
    ReplyRaw(Bytes),
    /// Wait, then act.
    Delay(Duration, Box<MockAction>),
    /// Close the connection (FIN) without replying.
    CloseMidCommand,
    /// Reset the connection (RST) without replying.
    Reset,
    /// Write bytes that are not JSON, and no reply.
    Garbage(Bytes),
    /// Write the start of a reply, then close the connection.
    CutMidReply(Bytes),
    /// Never reply (the connection stays open).
    NoReply,
    /// The default behaviour for the command.
    Default,
}

#[derive(Default)]
struct Shared {
    once: Mutex<HashMap<String, VecDeque<MockAction>>>,
    always: Mutex<HashMap<String, MockAction>>,
    requests: Mutex<Vec<Value>>,
    objects: Mutex<Vec<String>>,
    accepted: AtomicUsize,
    open: AtomicUsize,
    violations: AtomicUsize,
    no_state: AtomicBool,
    changed: Notify,
}

/// A running mock addon.
pub struct MockBlender {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl MockBlender {
    /// Starts on `127.0.0.1:0` with the default scene (Cube, Camera, Light).
    pub async fn start() -> MockBlender {
        Self::start_on("127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind mock Blender")
    }

    /// Starts on a given address (to come back on the same port after [`kill`](Self::kill)).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<MockBlender> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        *shared.objects.lock() = vec!["Cube".into(), "Camera".into(), "Light".into()];
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        {
            let (shared, stop, t) = (shared.clone(), stop.clone(), tasks.clone());
            tasks.spawn(async move {
                loop {
                    let (stream, _) = tokio::select! {
                        _ = stop.cancelled() => return,
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    };
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    shared.changed.notify_waiters();
                    t.spawn(serve_connection(stream, shared.clone(), stop.clone()));
                }
            });
        }
        Ok(MockBlender {
            addr,
            shared,
            stop,
            tasks,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn backend(&self) -> BackendAddr {
        BackendAddr {
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
        }
    }

    /// The next request of `command` gets `action` (queued in order).
    pub fn once(&self, command: &str, action: MockAction) {
        self.shared
            .once
            .lock()
            .entry(command.to_string())
            .or_default()
            .push_back(action);
    }

    /// Every request of `command` gets `action` (after any `once` actions).
    pub fn always(&self, command: &str, action: MockAction) {
        self.shared
            .always
            .lock()
            .insert(command.to_string(), action);
    }

    /// Behave like a stock addon: no `_state` piggyback.
    pub fn without_state(&self) {
        self.shared.no_state.store(true, Ordering::SeqCst);
    }

    pub fn set_objects(&self, names: &[&str]) {
        *self.shared.objects.lock() = names.iter().map(|s| s.to_string()).collect();
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().clone()
    }

    /// Requests of one command type.
    pub fn requests_of(&self, command: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["type"] == command)
            .collect()
    }

    pub fn connections_accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    pub fn violations(&self) -> usize {
        self.shared.violations.load(Ordering::SeqCst)
    }

    /// Waits (up to 10 s of real or paused time) until `pred` holds.
    pub async fn wait_until(&self, what: &str, mut pred: impl FnMut(&MockBlender) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.shared.changed.notified();
            if pred(self) {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => panic!("mock Blender: timed out waiting for {what}"),
            }
        }
    }

    /// Waits until a request of `command` has arrived.
    pub async fn wait_for_request(&self, command: &str) {
        self.wait_until(&format!("a {command} request"), |m| {
            !m.requests_of(command).is_empty()
        })
        .await
    }

    /// Simulates Blender dying: stops listening and drops every connection (FIN).
    pub async fn kill(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for MockBlender {
    fn drop(&mut self) {
        self.stop.cancel();
        let v = self.violations();
        if v > 0 && !std::thread::panicking() {
            panic!(
                "mock Blender saw {v} request(s) pipelined behind one in flight on the same socket"
            );
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, stop: CancellationToken) {
    shared.open.fetch_add(1, Ordering::SeqCst);
    // Waiters on `open_connections` rise too (the accept loop's notice came first).
    shared.changed.notify_waiters();
    let (read, mut write) = stream.into_split();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let conn_stop = CancellationToken::new();
    let reader = {
        let (in_flight, shared, conn_stop) = (in_flight.clone(), shared.clone(), conn_stop.clone());
        tokio::spawn(async move {
            let mut frames =
                FramedRead::new(read, JsonFrameCodec::new(NewlinePolicy::Stream, 1 << 28));
            loop {
                let next = tokio::select! {
                    _ = conn_stop.cancelled() => break,
                    f = frames.next() => f,
                };
                match next {
                    Some(Ok(Frame::Value(f))) => {
                        let v: Value =
                            serde_json::from_slice(&f.strict_bytes()).unwrap_or(Value::Null);
                        if in_flight.fetch_add(1, Ordering::SeqCst) > 0 {
                            shared.violations.fetch_add(1, Ordering::SeqCst);
                        }
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Some(Ok(Frame::Invalid(_))) => continue,
                    _ => break,
                }
            }
        })
    };
    let mut last_state: Option<Value> = None;
    loop {
        let req = tokio::select! {
            _ = stop.cancelled() => break,
            r = rx.recv() => match r { Some(r) => r, None => break },
        };
        shared.requests.lock().push(req.clone());
        shared.changed.notify_waiters();
        let command = req["type"].as_str().unwrap_or("").to_string();
        let action = {
            let scripted = shared
                .once
                .lock()
                .get_mut(&command)
                .and_then(VecDeque::pop_front);
            scripted
                .or_else(|| shared.always.lock().get(&command).cloned())
                .unwrap_or(MockAction::Default)
        };
        let mut action = action;
        while let MockAction::Delay(d, next) = action {
            action = tokio::select! {
                _ = stop.cancelled() => MockAction::CloseMidCommand,
                _ = tokio::time::sleep(d) => *next,
            };
        }
        let bytes = match action {
            MockAction::Reply(v) => Some(Bytes::from(serde_json::to_vec(&v).unwrap())),
            MockAction::ReplyRaw(b) => Some(b),
            MockAction::Default => Some(default_reply(&shared, &req, &mut last_state)),
            MockAction::CloseMidCommand => break,
            MockAction::Reset => {
                let _ = write.as_ref().set_zero_linger();
                break;
            }
            MockAction::Garbage(b) => {
                let _ = write.write_all(&b).await;
                None
            }
            MockAction::CutMidReply(b) => {
                let _ = write.write_all(&b).await;
                break;
            }
            MockAction::NoReply => {
                stop.cancelled().await;
                break;
            }
            MockAction::Delay(..) => None,
        };
        if let Some(bytes) = bytes {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        } else {
            in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
    conn_stop.cancel();
    let _ = reader.await;
    drop(write);
    shared.open.fetch_sub(1, Ordering::SeqCst);
    shared.changed.notify_waiters();
}

fn default_reply(shared: &Shared, req: &Value, last_state: &mut Option<Value>) -> Bytes {
    let params = &req["params"];
    let result = match req["type"].as_str().unwrap_or("") {
        "get_scene_info" => {
            let objects = shared.objects.lock().clone();
            json!({
                "name": "Scene",
                "object_count": objects.len(),
                "objects": objects.iter().map(|n| json!({"name": n, "type": "MESH", "location": [0.0, 0.0, 0.0]})).collect::<Vec<_>>(),
            })
        }
        "execute_code" => {
            // Toy language: "add NAME" adds an object; "print TEXT" prints.
            let code = params["code"].as_str().unwrap_or("");
            let mut out = String::new();
            for line in code.lines() {
                if let Some(name) = line.strip_prefix("add ") {
                    shared.objects.lock().push(name.trim().to_string());
                } else if let Some(text) = line.strip_prefix("print ") {
                    out.push_str(text);
                    out.push('\n');
                }
            }
            json!({"executed": true, "result": out})
        }
        "get_addon_info" => json!({
            "name": "mock",
            "version": "0.0.0",
            "capabilities": ["ping", "get_addon_info", "get_scene_info", "execute_code", "get_object_info"],
        }),
        "get_object_info" => {
            let name = params["name"].as_str().unwrap_or("");
            if !shared.objects.lock().iter().any(|o| o == name) {
                return Bytes::from(
                    serde_json::to_vec(
                        &json!({"status": "error", "message": format!("Object not found: {name}")}),
                    )
                    .unwrap(),
                );
            }
            json!({"name": name, "type": "MESH", "location": [0.0, 0.0, 0.0]})
        }
        other => json!({"command": other, "params": params}),
    };
    let mut reply = json!({"status": "success", "result": result});
    if req["_state"] == true && !shared.no_state.load(Ordering::SeqCst) {
        let objects = shared.objects.lock().clone();
        let state = json!({"objects": objects, "selection": [], "active": objects.last()});
        if last_state.as_ref() != Some(&state) {
            reply["_state"] = state.clone();
            *last_state = Some(state);
        }
    }
    Bytes::from(serde_json::to_vec(&reply).unwrap())
}
