//! The addon-compatible port: the stock addon's protocol, served by the manager.
//!
//! Concurrency design: one task per caller connection. It reads requests with the
//! stream codec (no delimiter needed; pipelined and split writes are fine) and
//! handles them strictly one after another — the next request is read only after the
//! previous reply is written — so replies come back in request order. The first
//! request creates a session owned by the connection, or attaches to the one named by
//! a top-level `"session_id"`; closing the connection closes an owned session.
//! Replies are Blender's bytes as received (minus the `_state` member the manager
//! asked for), followed by a newline; transport failures become the stock
//! `{"status": "error", "message": ...}` reply so stock clients report them.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::error::ManagerError;
use crate::manager::Manager;
use crate::raw_json::RawJson;
use crate::session::handle::{CommandRequest, SessionOwner};
use crate::session::{CommandOrigin, DisconnectReason, SessionHandle};
use crate::wire::{Frame, FrameError, JsonFrame, JsonFrameCodec, NewlinePolicy};

/// Accepts connections until `shutdown` fires.
pub async fn serve(listener: TcpListener, manager: Arc<Manager>, shutdown: CancellationToken) {
    let token = shutdown.clone();
    super::accept::accept_loop("compat", listener, shutdown, move |stream, peer| {
        connection(stream, peer, manager.clone(), token.clone())
    })
    .await
}

#[derive(Deserialize)]
struct CompatRequest<'a> {
    #[serde(rename = "type")]
    command_type: Option<String>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(default)]
    session_id: Option<String>,
}

/// `{"status": "error", "message": ...}` as the stock addon words its errors.
pub fn error_reply(message: &str) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({"status": "error", "message": message}))
            .expect("serialises"),
    )
}

/// What one request turned into: the command, or the error reply to send.
fn parse(frame: &JsonFrame) -> Result<(String, Option<RawJson>, Option<String>), String> {
    let strict = frame.strict_bytes();
    if strict.first() != Some(&b'{') {
        return Err(
            "Invalid request: expected a JSON object like {\"type\": ..., \"params\": {...}}"
                .into(),
        );
    }
    let req: CompatRequest<'_> =
        serde_json::from_slice(&strict).map_err(|e| format!("Invalid request: {e}"))?;
    let command = req
        .command_type
        .ok_or("Invalid request: missing \"type\"")?;
    let params = match req.params {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) if raw.get().starts_with('{') => Some(RawJson::from_validated(
            Bytes::copy_from_slice(raw.get().as_bytes()),
        )),
        Some(_) => return Err("Invalid request: \"params\" must be an object".into()),
    };
    Ok((command, params, req.session_id))
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    manager: Arc<Manager>,
    shutdown: CancellationToken,
) {
    debug!(%peer, "compat connection opened");
    let (read, mut write) = stream.split();
    let codec = JsonFrameCodec::new(NewlinePolicy::Stream, manager.config().max_frame_bytes);
    let mut frames = FramedRead::with_capacity(read, codec, 16 * 1024);
    // The session this connection uses, and whether the connection owns it.
    let mut session: Option<(SessionHandle, bool)> = None;

    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break,
            f = frames.next() => f,
        };
        let (reply, close_after) = match frame {
            None | Some(Err(_)) => break,
            Some(Ok(Frame::Invalid(FrameError::TooLarge { limit }))) => (
                error_reply(&ManagerError::TooLarge { limit }.to_string()),
                true,
            ),
            Some(Ok(Frame::Invalid(e))) => (error_reply(&format!("Invalid JSON: {e}")), false),
            Some(Ok(Frame::Value(frame))) => match parse(&frame) {
                Err(msg) => (error_reply(&msg), false),
                Ok((command, params, attach)) => {
                    match ensure_session(&manager, &mut session, attach, peer).await {
                        Err(e) => (error_reply(&e.to_string()), false),
                        Ok(handle) => {
                            let outcome = handle
                                .submit(CommandRequest {
                                    command_type: command,
                                    params,
                                    origin: CommandOrigin::Compat,
                                })
                                .await;
                            let reply = match outcome.and_then(|o| o.result) {
                                Ok(reply) => reply.relay_bytes(),
                                Err(e) => error_reply(&e.to_string()),
                            };
                            (reply, false)
                        }
                    }
                }
            },
        };
        // Reply and newline in one vectored write: one packet for a small reply, and
        // no copy of a big one.
        let mut framed = reply.chain(&b"\n"[..]);
        let written = write.write_all_buf(&mut framed);
        // A caller that stops reading must not hold its session open forever.
        let stall = manager.config().command_timeout;
        match tokio::time::timeout(stall, written).await {
            Ok(Ok(())) if !close_after => {}
            _ => break,
        }
    }
    if let Some((handle, true)) = session {
        if manager
            .close_session(handle.id(), DisconnectReason::CallerDisconnected)
            .await
            .is_ok()
        {
            info!(session = %handle.id(), %peer, "compat connection closed its session");
        }
    }
    debug!(%peer, "compat connection closed");
}

/// The connection's session: attached by id, or created on first use.
async fn ensure_session(
    manager: &Arc<Manager>,
    session: &mut Option<(SessionHandle, bool)>,
    attach: Option<String>,
    peer: SocketAddr,
) -> Result<SessionHandle, ManagerError> {
    if let Some((handle, _)) = session {
        if handle.session.is_closed() {
            return Err(ManagerError::SessionNotFound(handle.id().to_string()));
        }
        return Ok(handle.clone());
    }
    let (handle, owned) = match attach {
        Some(id) => (manager.session(&id)?, false),
        None => {
            let meta = serde_json::json!({"created_by": "compat", "peer": peer.to_string()});
            (
                manager.create_session(SessionOwner::Compat, meta).await?,
                true,
            )
        }
    };
    *session = Some((handle.clone(), owned));
    Ok(handle)
}
