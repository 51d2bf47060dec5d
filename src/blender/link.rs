//! One keep-alive connection from a session to its Blender addon.
//!
//! Concurrency design: a `BlenderLink` is owned by exactly one session task and is
//! only ever used through `&mut self`, so "never two requests in flight on a backend
//! socket" holds by construction. Between commands the session task awaits
//! [`BlenderLink::watch_idle`] alongside its mailbox: an idle addon socket must stay
//! silent, so EOF, a reset or unexpected bytes there mean the socket is dead or out
//! of step, and it is dropped at once rather than discovered by the next command.
//!
//! Failure rules: a command makes at most one connect attempt (bounded by the
//! connect timeout), through its backend's single-flight gate and shared backoff
//! ([`Backend::connect`]); while the backend is marked down it fails at once with
//! `blender_unavailable`, without dialling. A timeout or an unparseable frame closes
//! the socket, because a late reply would otherwise be taken for the next command's;
//! an EOF or reset mid-command fails that command at once with
//! `blender_disconnected`. A well-formed `status: error` reply keeps the socket.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use super::backend::Backend;
use super::reply::BlenderReply;
use crate::config::BackendAddr;
use crate::error::ManagerError;
use crate::session::DisconnectReason;
use crate::wire::{Frame, FrameError, JsonFrameCodec, NewlinePolicy};

/// Initial read buffer of a link.
const READ_BUFFER: usize = 16 * 1024;
/// Replies above this size get their read buffer replaced afterwards, so such a
/// reply is the only user of its buffer (a job may keep it without pinning more).
pub(crate) const BIG_FRAME: usize = 1024 * 1024;

/// Timeouts and limits of a link.
#[derive(Debug, Clone, Copy)]
pub struct LinkSettings {
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub max_frame_bytes: usize,
}

struct Connection {
    reader: FramedRead<OwnedReadHalf, JsonFrameCodec>,
    writer: OwnedWriteHalf,
}

/// A keep-alive connection to one addon, reopened on demand.
pub struct BlenderLink {
    conn: Option<Connection>,
    last_error: Option<String>,
    backend: Arc<Backend>,
}

impl BlenderLink {
    pub fn new(backend: Arc<Backend>) -> Self {
        BlenderLink {
            conn: None,
            last_error: None,
            backend,
        }
    }

    pub fn address(&self) -> &BackendAddr {
        &self.backend.address
    }

    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    fn unavailable(&self, reason: impl Into<String>) -> ManagerError {
        ManagerError::BlenderUnavailable {
            address: self.backend.address.to_string(),
            reason: reason.into(),
        }
    }

    /// Makes one connect attempt (through the backend's gate) unless connected.
    pub async fn connect(&mut self) -> Result<(), ManagerError> {
        if self.conn.is_some() {
            return Ok(());
        }
        match self.backend.connect().await {
            Ok(stream) => {
                let (read, writer) = stream.into_split();
                let codec = JsonFrameCodec::new(
                    NewlinePolicy::Stream,
                    self.backend.settings().max_frame_bytes,
                );
                self.conn = Some(Connection {
                    reader: FramedRead::with_capacity(read, codec, READ_BUFFER),
                    writer,
                });
                self.last_error = None;
                Ok(())
            }
            Err(reason) => {
                self.last_error = Some(reason.clone());
                Err(self.unavailable(reason))
            }
        }
    }

    /// Sends one request line and waits for exactly one reply frame.
    pub async fn request(
        &mut self,
        command: &str,
        line: &[u8],
    ) -> Result<BlenderReply, (ManagerError, Option<DisconnectReason>)> {
        if self.backend.is_down() {
            // Fail fast: a socket to a backend that fails its probes would only
            // wait out the command timeout.
            let reason = self.backend.down_reason();
            let dropped = self.conn.is_some().then_some(DisconnectReason::BackendDown);
            self.drop_connection(reason.clone());
            return Err((self.unavailable(reason), dropped));
        }
        self.connect().await.map_err(|e| (e, None))?;
        let conn = self.conn.as_mut().expect("connected above");
        let exchange = async {
            if let Err(e) = conn.writer.write_all(line).await {
                return Err((
                    ManagerError::BlenderDisconnected {
                        command: command.to_string(),
                    },
                    DisconnectReason::BackendClosed,
                    format!("write failed: {e}"),
                ));
            }
            match conn.reader.next().await {
                Some(Ok(Frame::Value(frame))) => Ok(frame),
                Some(Ok(Frame::Invalid(FrameError::TooLarge { limit }))) => Err((
                    ManagerError::TooLarge { limit },
                    DisconnectReason::ProtocolError,
                    format!("reply to {command} exceeds {limit} bytes"),
                )),
                Some(Ok(Frame::Invalid(FrameError::Truncated))) => Err((
                    ManagerError::BlenderDisconnected {
                        command: command.to_string(),
                    },
                    DisconnectReason::BackendClosed,
                    format!(
                        "Blender closed the connection in the middle of the reply to {command}"
                    ),
                )),
                Some(Ok(Frame::Invalid(e))) => Err((
                    ManagerError::BadReply {
                        reason: e.to_string(),
                    },
                    DisconnectReason::ProtocolError,
                    format!("unframeable reply to {command}: {e}"),
                )),
                Some(Err(e)) => Err((
                    ManagerError::BlenderDisconnected {
                        command: command.to_string(),
                    },
                    DisconnectReason::BackendClosed,
                    format!("connection error during {command}: {e}"),
                )),
                None => Err((
                    ManagerError::BlenderDisconnected {
                        command: command.to_string(),
                    },
                    DisconnectReason::BackendClosed,
                    format!("Blender closed the connection during {command}"),
                )),
            }
        };
        let timeout = self.backend.settings().command_timeout;
        let sent_at = Instant::now();
        let busy = self.backend.busy();
        let answered = tokio::time::timeout(timeout, exchange).await;
        drop(busy);
        match answered {
            Err(_) => {
                self.drop_connection(format!(
                    "no reply to {command} within {}s",
                    timeout.as_secs_f64()
                ));
                Err((
                    ManagerError::BlenderTimeout {
                        command: command.to_string(),
                        seconds: timeout.as_secs_f64(),
                    },
                    Some(DisconnectReason::Timeout),
                ))
            }
            Ok(Err((err, why, detail))) => {
                self.drop_connection(detail);
                Err((err, Some(why)))
            }
            Ok(Ok(frame)) => {
                self.backend.record_success(Some(sent_at.elapsed()));
                if frame.bytes().len() > BIG_FRAME {
                    // Start the next read in a fresh small buffer: the big one is freed
                    // with this reply instead of staying with the idle link.
                    if let Some(conn) = self.conn.as_mut() {
                        let rest = conn.reader.read_buffer_mut().split();
                        let mut fresh = bytes::BytesMut::with_capacity(READ_BUFFER);
                        fresh.extend_from_slice(&rest);
                        *conn.reader.read_buffer_mut() = fresh;
                    }
                }
                BlenderReply::parse(frame)
                    .map_err(|reason| (ManagerError::BadReply { reason }, None))
            }
        }
    }

    /// Resolves when the idle socket shows it is dead or out of step; never
    /// resolves while there is no socket. Cancel-safe.
    pub async fn watch_idle(&mut self) -> DisconnectReason {
        let Some(conn) = self.conn.as_mut() else {
            return std::future::pending().await;
        };
        match conn.reader.next().await {
            None | Some(Err(_)) => DisconnectReason::BackendClosed,
            Some(Ok(_)) => DisconnectReason::ProtocolError,
        }
    }

    /// Closes the socket, remembering why.
    pub fn drop_connection(&mut self, reason: impl Into<String>) {
        self.conn = None;
        self.last_error = Some(reason.into());
    }

    /// Closes the socket at session end.
    pub fn close(&mut self) {
        self.conn = None;
    }
}
