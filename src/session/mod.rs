//! Sessions: one task per session owning its Blender link and its FIFO of commands.
//!
//! Concurrency design: a session is split in two. The [`actor`] is a task that owns
//! the session's [`BlenderLink`](crate::blender::link::BlenderLink) and receives
//! commands by message, running them one at a time in arrival order. The [`Session`]
//! record (behind an `Arc`) holds what callers read — info, state, history,
//! snapshots — under a `parking_lot` mutex that is only held for plain memory
//! updates, never across an `.await`, so `get_session_info` answers at once even
//! while a long command runs. The [`registry`] maps ids to handles; the [`reaper`]
//! sweeps it for idle sessions.

pub mod actor;
pub mod disconnect;
pub mod handle;
pub mod history;
pub mod id;
pub mod reaper;
pub mod registry;
pub mod state;

pub use disconnect::DisconnectReason;
pub use handle::{CommandOrigin, CommandOutcome, Session, SessionHandle};
pub use history::{CommandStatus, HistoryEntry};
pub use registry::SessionRegistry;
pub use state::{SceneState, Snapshot};
