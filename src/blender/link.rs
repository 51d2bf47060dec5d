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
//! connect timeout, spaced by [`Backoff`]); a timeout or an unparseable frame closes
//! the socket, because a late reply would otherwise be taken for the next command's;
//! an EOF or reset mid-command fails that command at once with
//! `blender_disconnected`. A well-formed `status: error` reply keeps the socket.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use super::backend::BackendStats;
use super::backoff::Backoff;
use super::reply::BlenderReply;
use crate::config::BackendAddr;
use crate::error::ManagerError;
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

/// Why a link's socket was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkDrop {
    /// Blender closed or reset the connection.
    BackendClosed,
    /// No reply within the command timeout.
    Timeout,
    /// The reply could not be framed (garbage or too large).
    Protocol,
    /// Bytes arrived while no command was in flight.
    Unsolicited,
    /// The session is closing.
    Closing,
}

impl LinkDrop {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkDrop::BackendClosed => "backend_closed",
            LinkDrop::Timeout => "timeout",
            LinkDrop::Protocol => "protocol_error",
            LinkDrop::Unsolicited => "unsolicited_data",
            LinkDrop::Closing => "closing",
        }
    }
}

/// A keep-alive connection to one addon, reopened on demand.
pub struct BlenderLink {
    addr: BackendAddr,
    settings: LinkSettings,
    conn: Option<Connection>,
    backoff: Backoff,
    last_error: Option<String>,
    stats: Arc<BackendStats>,
}

impl BlenderLink {
    pub fn new(settings: LinkSettings, stats: Arc<BackendStats>) -> Self {
        BlenderLink {
            addr: stats.address.clone(),
            settings,
            conn: None,
            backoff: Backoff::default(),
            last_error: None,
            stats,
        }
    }

    pub fn address(&self) -> &BackendAddr {
        &self.addr
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    fn unavailable(&self, reason: impl Into<String>) -> ManagerError {
        ManagerError::BlenderUnavailable {
            address: self.addr.to_string(),
            reason: reason.into(),
        }
    }

    /// Makes one connect attempt unless a backoff delay is running.
    pub async fn connect(&mut self) -> Result<(), ManagerError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        if let Err(wait) = self.backoff.check(now) {
            let last = self.last_error.clone().unwrap_or_default();
            return Err(self.unavailable(format!(
                "{last}; next attempt in {:.2}s",
                wait.as_secs_f64()
            )));
        }
        let target = (self.addr.host.as_str(), self.addr.port);
        let attempt =
            tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(target));
        let outcome = match attempt.await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within connect timeout {}s",
                self.settings.connect_timeout.as_secs_f64()
            )),
        };
        match outcome {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let (read, writer) = stream.into_split();
                let codec =
                    JsonFrameCodec::new(NewlinePolicy::Stream, self.settings.max_frame_bytes);
                self.conn = Some(Connection {
                    reader: FramedRead::with_capacity(read, codec, READ_BUFFER),
                    writer,
                });
                self.backoff.record_success();
                self.last_error = None;
                self.stats.record_success(None);
                Ok(())
            }
            Err(reason) => {
                self.backoff.record_failure(Instant::now());
                self.last_error = Some(reason.clone());
                self.stats.record_failure(reason.clone());
                Err(self.unavailable(reason))
            }
        }
    }

    /// Sends one request line and waits for exactly one reply frame.
    pub async fn request(
        &mut self,
        command: &str,
        line: &[u8],
    ) -> Result<BlenderReply, (ManagerError, Option<LinkDrop>)> {
        self.connect().await.map_err(|e| (e, None))?;
        let conn = self.conn.as_mut().expect("connected above");
        let exchange = async {
            if let Err(e) = conn.writer.write_all(line).await {
                return Err((
                    ManagerError::BlenderDisconnected {
                        command: command.to_string(),
                    },
                    LinkDrop::BackendClosed,
                    format!("write failed: {e}"),
                ));
            }
            match conn.reader.next().await {
                Some(Ok(Frame::Value(frame))) => Ok(frame),
                Some(Ok(Frame::Invalid(FrameError::TooLarge { limit }))) => Err((
                    ManagerError::TooLarge { limit },
                    LinkDrop::Protocol,
                    format!("reply to {command} exceeds {limit} bytes"),
                )),
                Some(Ok(Frame::Invalid(FrameError::Truncated))) => Err((
                    ManagerError::BlenderDisconnected {
                        command: command.to_string(),
                    },
                    LinkDrop::BackendClosed,
                    format!(
                        "Blender closed the connection in the middle of the reply to {command}"
                    ),
                )),
                Some(Ok(Frame::Invalid(e))) => Err((
                    ManagerError::BadReply {
                        reason: e.to_string(),
                    },
                    LinkDrop::Protocol,
                    format!("unframeable reply to {command}: {e}"),
                )),
                Some(Err(e)) => Err((
                    ManagerError::BlenderDisconnected {
                        command: command.to_string(),
                    },
                    LinkDrop::BackendClosed,
                    format!("connection error during {command}: {e}"),
                )),
                None => Err((
                    ManagerError::BlenderDisconnected {
                        command: command.to_string(),
                    },
                    LinkDrop::BackendClosed,
                    format!("Blender closed the connection during {command}"),
                )),
            }
        };
        let timeout = self.settings.command_timeout;
        let sent_at = Instant::now();
        match tokio::time::timeout(timeout, exchange).await {
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
                    Some(LinkDrop::Timeout),
                ))
            }
            Ok(Err((err, why, detail))) => {
                self.drop_connection(detail);
                Err((err, Some(why)))
            }
            Ok(Ok(frame)) => {
                self.stats.record_success(Some(sent_at.elapsed()));
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
    pub async fn watch_idle(&mut self) -> LinkDrop {
        let Some(conn) = self.conn.as_mut() else {
            return std::future::pending().await;
        };
        match conn.reader.next().await {
            None | Some(Err(_)) => LinkDrop::BackendClosed,
            Some(Ok(_)) => LinkDrop::Unsolicited,
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
