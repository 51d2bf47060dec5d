//! JSON-RPC 2.0 over NDJSON on `--listen`.
//!
//! Concurrency design, per connection: a reader loop decodes lines with the NDJSON
//! codec and spawns one task per request, so requests run concurrently and replies
//! may come back out of order (matched by `id`). The socket's write half sits behind
//! an async mutex: a request task whose reply is ready writes it itself when no one
//! else is writing (no hop to another task); otherwise the reply goes through a
//! channel to the connection's writer task, which batches what is ready before
//! flushing. At most [`MAX_IN_FLIGHT`] requests per connection are in progress: the
//! reader holds a semaphore permit per request, released only after the reply is
//! written (by whichever task wrote it), so a caller that never reads stops its own
//! reader through TCP backpressure and costs bounded memory, without slowing anyone
//! else. A caller that reads nothing for the command timeout while a reply waits is
//! dropped: the write half is closed and later replies are discarded. A request task is not cancelled when its caller disconnects: the session
//! still runs the command and records the result. `authenticate` is handled inline
//! by the reader, so requests pipelined behind it see its effect.

use std::net::SocketAddr;
use std::sync::Arc;

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::{methods, rpc};
use crate::error::ManagerError;
use crate::manager::Manager;
use crate::wire::{Frame, FrameError, JsonFrameCodec, NewlinePolicy};

/// Requests per connection in progress (running, or reply not yet written).
pub const MAX_IN_FLIGHT: usize = 64;

type Outgoing = (rpc::Response, Option<OwnedSemaphorePermit>);

/// The connection's write half, shared by its request tasks and its writer task;
/// `None` once the caller was dropped for not reading.
type Sink = Arc<tokio::sync::Mutex<Option<BufWriter<OwnedWriteHalf>>>>;

/// Accepts connections until `shutdown` fires.
pub async fn serve(listener: TcpListener, manager: Arc<Manager>, shutdown: CancellationToken) {
    super::accept::accept_loop("jsonrpc", listener, shutdown, move |stream, peer| {
        connection(stream, peer, manager.clone())
    })
    .await
}

async fn connection(stream: TcpStream, peer: SocketAddr, manager: Arc<Manager>) {
    debug!(%peer, "JSON-RPC connection opened");
    let (read, write) = stream.into_split();
    let codec = JsonFrameCodec::new(NewlinePolicy::Ndjson, manager.config().max_frame_bytes);
    let mut frames = FramedRead::with_capacity(read, codec, 16 * 1024);
    let (tx, rx) = mpsc::unbounded_channel::<Outgoing>();
    let stall = manager.config().command_timeout;
    let sink: Sink = Arc::new(tokio::sync::Mutex::new(Some(BufWriter::with_capacity(
        64 * 1024,
        write,
    ))));
    let writer = tokio::spawn(write_replies(sink.clone(), rx, stall));
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let token = manager.config().token.clone();
    let mut authenticated = token.is_none();
    // A drain keeps open connections answering (new sessions are refused with
    // -32009, running commands still reply) until in-flight work is done.
    let drained = manager.drained_token().clone();

    loop {
        let permit = tokio::select! {
            _ = drained.cancelled() => break,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let frame = tokio::select! {
            _ = drained.cancelled() => break,
            f = frames.next() => f,
        };
        let frame = match frame {
            None => break,
            Some(Err(e)) => {
                debug!(%peer, error = %e, "JSON-RPC read failed");
                break;
            }
            Some(Ok(Frame::Invalid(FrameError::TooLarge { limit }))) => {
                let _ = tx.send((
                    rpc::Response::whole(rpc::failure(None, &ManagerError::TooLarge { limit })),
                    Some(permit),
                ));
                continue;
            }
            Some(Ok(Frame::Invalid(e))) => {
                let _ = tx.send((
                    rpc::Response::whole(rpc::failure(None, &ManagerError::Parse(e.to_string()))),
                    Some(permit),
                ));
                continue;
            }
            Some(Ok(Frame::Value(frame))) => frame,
        };
        let request = match rpc::parse_request(&frame.strict_bytes()) {
            Ok(r) => r,
            Err((id, e)) => {
                let _ = tx.send((
                    rpc::Response::whole(rpc::failure(id.as_deref(), &e)),
                    Some(permit),
                ));
                continue;
            }
        };
        if request.method == "authenticate" {
            let reply = authenticate(
                token.as_deref(),
                request.params.as_deref(),
                &mut authenticated,
            );
            if let Some(id) = request.id.as_deref() {
                let bytes = match reply {
                    Ok(()) => rpc::success(id, br#"{"authenticated":true}"#),
                    Err(e) => rpc::failure(Some(id), &e),
                };
                let _ = tx.send((rpc::Response::whole(bytes), Some(permit)));
            }
            continue;
        }
        if !authenticated {
            let e = ManagerError::Unauthorized("authenticate with the manager's token first");
            if let Some(id) = request.id.as_deref() {
                let _ = tx.send((
                    rpc::Response::whole(rpc::failure(Some(id), &e)),
                    Some(permit),
                ));
            }
            continue;
        }
        let manager = manager.clone();
        let tx = tx.clone();
        let sink = sink.clone();
        tokio::spawn(async move {
            // A bug in a method must still answer the caller, not leave it waiting.
            let call = methods::call_body(&manager, &request.method, request.params.as_deref());
            let result = match AssertUnwindSafe(call).catch_unwind().await {
                Ok(r) => r,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("panic");
                    tracing::error!(method = %request.method, panic = what, "method panicked");
                    Err(ManagerError::Internal(format!(
                        "{} failed: {what}",
                        request.method
                    )))
                }
            };
            if let Some(id) = request.id.as_deref() {
                let reply = match result {
                    Ok(body) => rpc::Response::success(id, body),
                    Err(e) => rpc::Response::whole(rpc::failure(Some(id), &e)),
                };
                deliver(&sink, &tx, reply, permit, stall).await;
            }
        });
    }
    drop(tx);
    let _ = writer.await;
    debug!(%peer, "JSON-RPC connection closed");
}

fn authenticate(
    token: Option<&str>,
    params: Option<&serde_json::value::RawValue>,
    authenticated: &mut bool,
) -> Result<(), ManagerError> {
    let mut p = super::params::Params::from_raw(params)?;
    let given = p.string("token")?;
    p.finish()?;
    match token {
        None => Ok(()),
        Some(t) if constant_time_eq(t.as_bytes(), given.as_bytes()) => {
            *authenticated = true;
            Ok(())
        }
        Some(_) => {
            info!("JSON-RPC authentication failed");
            Err(ManagerError::Unauthorized("wrong token"))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes one reply into `out` (parts bigger than its buffer go to the socket
/// directly, without a copy).
async fn put(out: &mut BufWriter<OwnedWriteHalf>, r: &rpc::Response) -> std::io::Result<()> {
    out.write_all(&r.head).await?;
    for part in &r.body {
        out.write_all(part).await?;
    }
    out.write_all(r.tail).await
}

/// Runs a write of replies, giving up after `stall`. On failure the write half is
/// closed (`None`): the caller is dropped and later replies are discarded.
async fn write_or_drop(
    out: &mut Option<BufWriter<OwnedWriteHalf>>,
    stall: std::time::Duration,
    write: impl AsyncFnOnce(&mut BufWriter<OwnedWriteHalf>) -> std::io::Result<()>,
) -> bool {
    let Some(w) = out.as_mut() else {
        return false;
    };
    match tokio::time::timeout(stall, write(w)).await {
        Ok(Ok(())) => return true,
        Ok(Err(_)) => {}
        Err(_) => tracing::info!(
            stall_s = stall.as_secs_f64(),
            "JSON-RPC caller stopped reading replies; closing"
        ),
    }
    *out = None;
    false
}

/// Hands a finished request's reply to the socket: written and flushed from this
/// task when no one else is writing, else queued for the writer task. The permit
/// is released once the reply is written (or discarded).
async fn deliver(
    sink: &Sink,
    tx: &mpsc::UnboundedSender<Outgoing>,
    reply: rpc::Response,
    permit: OwnedSemaphorePermit,
    stall: std::time::Duration,
) {
    let Ok(mut out) = sink.try_lock() else {
        let _ = tx.send((reply, Some(permit)));
        return;
    };
    write_or_drop(&mut out, stall, async |w| {
        put(w, &reply).await?;
        w.flush().await
    })
    .await;
    drop(permit);
}

/// Writes the replies queued while the socket was busy, flushing when nothing
/// more is ready; each permit is released once its reply is handed to the socket.
/// A caller that reads nothing for `stall` while a reply waits is dropped.
async fn write_replies(
    sink: Sink,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    stall: std::time::Duration,
) {
    while let Some((reply, permit)) = rx.recv().await {
        let mut out = sink.lock().await;
        let written = write_or_drop(&mut out, stall, async |w| {
            put(w, &reply).await?;
            drop(permit);
            while let Ok((reply, permit)) = rx.try_recv() {
                put(w, &reply).await?;
                drop(permit);
            }
            w.flush().await
        })
        .await;
        if !written {
            break;
        }
    }
}
