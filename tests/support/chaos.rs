//! A chaos proxy for the link between the manager and the mock Blender, in the
//! spirit of toxiproxy: the manager's `--blender` points at the proxy, the proxy
//! forwards to the mock, and a test switches faults at runtime, for every
//! connection at once or for one connection.
//!
//! Faults ([`Fault`]): pass, delay (each direction on its own), trickle (forward in
//! small pieces, so frames split across reads), black-hole (swallow bytes, forward
//! nothing, keep both sockets open), reset (RST both sides) and cut mid-frame
//! (forward the first N bytes of the next reply, then close both sides).
//!
//! Concurrency design: one task per proxied connection owns both sockets and a FIFO
//! queue per direction of `(deadline, bytes)`. Every byte read is classified by the
//! fault in force at that moment: queued (now, or now plus the delay), dropped, or
//! cut. Queues drain in order when their front item is due, so delays never reorder
//! bytes. A fault change reaches the task through a `watch` channel; a reset acts at
//! once, even on an idle connection.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use blender_session_manager::config::{BackendAddr, Config};
use blender_session_manager::mock_blender::MockBlender;
use blender_session_manager::server;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Harness, Rpc};

/// What the proxy does to a connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward both directions as they come.
    Pass,
    /// Hold bytes from the manager to Blender for `up`, and from Blender to the
    /// manager for `down`; order is kept.
    Delay { up: Duration, down: Duration },
    /// Forward both directions in writes of at most `piece` bytes, `gap` apart.
    Trickle { piece: usize, gap: Duration },
    /// Read and discard both directions; forward nothing; keep both sockets open.
    BlackHole,
    /// Reset both sides (RST) at once; new connections are reset on accept.
    Reset,
    /// Forward requests; of the replies, forward the next `n` bytes, then close
    /// both sides (FIN).
    CutReply(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Manager → Blender.
    Up,
    /// Blender → manager.
    Down,
}

struct ConnShared {
    index: usize,
    fault: watch::Sender<Fault>,
    forwarded_up: AtomicU64,
    forwarded_down: AtomicU64,
    swallowed: AtomicU64,
    /// The manager closed (or reset) its end.
    client_closed: AtomicBool,
    /// The proxy task ended: both sockets are closed.
    finished: AtomicBool,
}

struct ProxyShared {
    upstream: SocketAddr,
    default: Mutex<Fault>,
    conns: Mutex<Vec<Arc<ConnShared>>>,
    open: AtomicUsize,
    changed: Notify,
}

impl ProxyShared {
    fn notify(&self) {
        self.changed.notify_waiters();
    }
}

/// A running chaos proxy. Dropping it closes every connection.
pub struct ChaosProxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    stop: CancellationToken,
}

/// One proxied connection (the `i`-th accepted), to steer and inspect.
#[derive(Clone)]
pub struct ChaosConn {
    shared: Arc<ConnShared>,
    proxy: Arc<ProxyShared>,
}

impl ChaosProxy {
    /// Listens on `127.0.0.1:0` and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(ProxyShared {
            upstream,
            default: Mutex::new(Fault::Pass),
            conns: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            changed: Notify::new(),
        });
        let stop = CancellationToken::new();
        {
            let (shared, stop) = (shared.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    let (client, _) = tokio::select! {
                        _ = stop.cancelled() => return,
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    };
                    let conn = {
                        let mut conns = shared.conns.lock();
                        let (fault, _) = watch::channel(*shared.default.lock());
                        let conn = Arc::new(ConnShared {
                            index: conns.len(),
                            fault,
                            forwarded_up: AtomicU64::new(0),
                            forwarded_down: AtomicU64::new(0),
                            swallowed: AtomicU64::new(0),
                            client_closed: AtomicBool::new(false),
                            finished: AtomicBool::new(false),
                        });
                        conns.push(conn.clone());
                        conn
                    };
                    shared.open.fetch_add(1, Ordering::SeqCst);
                    shared.notify();
                    tokio::spawn(proxy_connection(
                        client,
                        shared.clone(),
                        conn,
                        stop.child_token(),
                    ));
                }
            });
        }
        ChaosProxy { addr, shared, stop }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy as a `--blender` address.
    pub fn backend(&self) -> BackendAddr {
        BackendAddr {
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
        }
    }

    /// Sets the fault of every open connection and of those still to come.
    pub fn set_all(&self, fault: Fault) {
        *self.shared.default.lock() = fault;
        for c in self.shared.conns.lock().iter() {
            c.fault.send_replace(fault);
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.conns.lock().len()
    }

    /// Connections whose proxy task is still running.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// The `i`-th connection accepted (from 0).
    pub fn conn(&self, i: usize) -> ChaosConn {
        let shared = self
            .shared
            .conns
            .lock()
            .get(i)
            .cloned()
            .unwrap_or_else(|| panic!("chaos proxy: no connection #{i}"));
        ChaosConn {
            shared,
            proxy: self.shared.clone(),
        }
    }

    /// The latest connection accepted.
    pub fn last(&self) -> ChaosConn {
        let n = self.accepted();
        assert!(n > 0, "chaos proxy: no connection yet");
        self.conn(n - 1)
    }

    /// Waits (up to 10 s of real or paused time) until `pred` holds.
    pub async fn wait_until(&self, what: &str, mut pred: impl FnMut(&ChaosProxy) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.shared.changed.notified();
            if pred(self) {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => panic!("chaos proxy: timed out waiting for {what}"),
            }
        }
    }

    /// Waits until `n` connections have been accepted.
    pub async fn wait_accepted(&self, n: usize) {
        self.wait_until(&format!("{n} connection(s)"), |p| p.accepted() >= n)
            .await
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ChaosConn {
    pub fn index(&self) -> usize {
        self.shared.index
    }

    pub fn set(&self, fault: Fault) {
        self.shared.fault.send_replace(fault);
    }

    /// Bytes forwarded from the manager to Blender.
    pub fn forwarded_up(&self) -> u64 {
        self.shared.forwarded_up.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from Blender to the manager.
    pub fn forwarded_down(&self) -> u64 {
        self.shared.forwarded_down.load(Ordering::SeqCst)
    }

    /// Bytes read and thrown away (black-hole).
    pub fn swallowed(&self) -> u64 {
        self.shared.swallowed.load(Ordering::SeqCst)
    }

    /// Whether the manager closed (or reset) its end of this connection.
    pub fn client_closed(&self) -> bool {
        self.shared.client_closed.load(Ordering::SeqCst)
    }

    /// Whether both sockets of this connection are closed.
    pub fn finished(&self) -> bool {
        self.shared.finished.load(Ordering::SeqCst)
    }

    /// Waits (up to 10 s) until `pred` holds for this connection.
    pub async fn wait_until(&self, what: &str, mut pred: impl FnMut(&ChaosConn) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.proxy.changed.notified();
            if pred(self) {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => panic!("chaos connection #{}: timed out waiting for {what}", self.index()),
            }
        }
    }
}

/// Closes a socket with RST instead of FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Marks the connection finished when its task ends, however it ends.
struct Finish(Arc<ProxyShared>, Arc<ConnShared>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.1.finished.store(true, Ordering::SeqCst);
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        self.0.notify();
    }
}

/// A direction's bytes waiting to be written, each with the moment it is due.
#[derive(Default)]
struct Queue {
    items: VecDeque<(Instant, Bytes)>,
}

impl Queue {
    fn due(&self) -> Option<Instant> {
        self.items.front().map(|(t, _)| *t)
    }

    fn push(&mut self, at: Instant, bytes: Bytes) {
        // Never before what is already queued: bytes keep their order.
        let at = self.items.back().map_or(at, |(last, _)| at.max(*last));
        self.items.push_back((at, bytes));
    }
}

async fn proxy_connection(
    client: TcpStream,
    proxy: Arc<ProxyShared>,
    conn: Arc<ConnShared>,
    stop: CancellationToken,
) {
    let _finish = Finish(proxy.clone(), conn.clone());
    let mut fault_rx = conn.fault.subscribe();
    if *fault_rx.borrow_and_update() == Fault::Reset {
        conn.client_closed.store(true, Ordering::SeqCst);
        reset(client);
        return;
    }
    let server = match TcpStream::connect(proxy.upstream).await {
        Ok(s) => s,
        Err(_) => {
            // Blender is not there: refuse the manager as Blender would.
            conn.client_closed.store(true, Ordering::SeqCst);
            reset(client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client, mut server) = (client, server);
    let (mut up, mut down) = (Queue::default(), Queue::default());
    let mut cbuf = vec![0u8; 64 * 1024];
    let mut sbuf = vec![0u8; 64 * 1024];
    // Reply bytes forwarded since `CutReply` was set; once the cut is made
    // (`cutting`), nothing more is read and the connection closes when `down` drains.
    let mut cut_sent = 0usize;
    let mut cutting = false;
    let mut server_gone = false;
    loop {
        if (cutting || server_gone) && down.items.is_empty() {
            // Close the manager's side with a FIN after the last forwarded byte.
            let _ = client.shutdown().await;
            return;
        }
        let (up_due, down_due) = (up.due(), down.due());
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = fault_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                match *fault_rx.borrow_and_update() {
                    Fault::Reset => {
                        conn.client_closed.store(true, Ordering::SeqCst);
                        reset(client);
                        reset(server);
                        return;
                    }
                    Fault::CutReply(_) => cut_sent = 0,
                    _ => {}
                }
            }
            r = client.read(&mut cbuf) => match r {
                Ok(0) | Err(_) => {
                    conn.client_closed.store(true, Ordering::SeqCst);
                    proxy.notify();
                    return;
                }
                Ok(n) => {
                    let fault = *fault_rx.borrow();
                    classify(Dir::Up, fault, &cbuf[..n], &mut up, &conn, &mut cut_sent, &mut cutting);
                }
            },
            r = server.read(&mut sbuf), if !server_gone && !cutting => match r {
                Ok(0) | Err(_) => server_gone = true,
                Ok(n) => {
                    let fault = *fault_rx.borrow();
                    classify(Dir::Down, fault, &sbuf[..n], &mut down, &conn, &mut cut_sent, &mut cutting);
                }
            },
            _ = sleep_until_some(up_due) => {
                let (_, bytes) = up.items.pop_front().expect("due item");
                if server.write_all(&bytes).await.is_err() {
                    return;
                }
                conn.forwarded_up.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            }
            _ = sleep_until_some(down_due) => {
                let (_, bytes) = down.items.pop_front().expect("due item");
                if client.write_all(&bytes).await.is_err() {
                    return;
                }
                conn.forwarded_down.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            }
        }
        proxy.notify();
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Decides what happens to bytes just read under `fault`.
fn classify(
    dir: Dir,
    fault: Fault,
    bytes: &[u8],
    queue: &mut Queue,
    conn: &ConnShared,
    cut_sent: &mut usize,
    cutting: &mut bool,
) {
    let now = Instant::now();
    match fault {
        Fault::Pass | Fault::Reset => queue.push(now, Bytes::copy_from_slice(bytes)),
        Fault::Delay { up, down } => {
            let d = if dir == Dir::Up { up } else { down };
            queue.push(now + d, Bytes::copy_from_slice(bytes));
        }
        Fault::Trickle { piece, gap } => {
            let mut at = now;
            for chunk in bytes.chunks(piece.max(1)) {
                at += gap;
                queue.push(at, Bytes::copy_from_slice(chunk));
            }
        }
        Fault::BlackHole => {
            conn.swallowed
                .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        }
        Fault::CutReply(_) if dir == Dir::Up => queue.push(now, Bytes::copy_from_slice(bytes)),
        Fault::CutReply(n) => {
            let take = n.saturating_sub(*cut_sent).min(bytes.len());
            if take > 0 {
                queue.push(now, Bytes::copy_from_slice(&bytes[..take]));
            }
            *cut_sent += take;
            if *cut_sent >= n {
                *cutting = true;
            }
        }
    }
}

/// A manager whose `--blender` is a chaos proxy in front of a mock Blender.
pub async fn start_behind_proxy(tweak: impl FnOnce(&mut Config)) -> (Harness, ChaosProxy) {
    let mock = MockBlender::start().await;
    let proxy = ChaosProxy::start(mock.addr()).await;
    let mut cfg = super::config(proxy.backend());
    tweak(&mut cfg);
    let server = server::start(cfg).await.expect("manager starts");
    (Harness { mock, server }, proxy)
}

/// `callers` callers, each on its own JSON-RPC connection, all sending `work` to one
/// session at once: every reply is matched to its request, Blender never sees two
/// requests in flight on the socket, and it sees them in the order of their `seq`.
/// The mock should answer `work` with a small delay so the callers really queue.
pub async fn callers_on_one_session(h: &Harness, callers: u64) {
    let mut setup = h.rpc().await;
    let id = setup.create().await;
    let mut tasks = Vec::new();
    for i in 0..callers {
        let addr = h.server.rpc_addr;
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut rpc = Rpc::connect(addr).await;
            let r = rpc
                .ok(
                    "send_command",
                    json!({"session_id": id, "command_type": "work", "params": {"i": i}}),
                )
                .await;
            assert_eq!(
                r["result"]["params"]["i"], i,
                "every reply matched to its request"
            );
            r["seq"].as_u64().unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=callers).collect::<Vec<_>>());
    assert_eq!(h.mock.violations(), 0);
    // FIFO: Blender saw the commands in seq order.
    let hist = setup
        .ok(
            "get_session_history",
            json!({"session_id": id, "limit": callers}),
        )
        .await;
    let order: Vec<_> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["params"]["i"].clone())
        .collect();
    let seen: Vec<_> = h
        .mock
        .requests_of("work")
        .iter()
        .map(|r| r["params"]["i"].clone())
        .collect();
    assert_eq!(order.len() as u64, callers);
    assert_eq!(order, seen);
}
