//! The manager's side of the Blender addon protocol.
//!
//! A [`link::BlenderLink`] is one keep-alive TCP connection to an addon, owned by
//! exactly one session task, so it never has two requests in flight. [`reply`]
//! parses only the envelope of a reply (`status`, `message`, `_state`) and keeps the
//! `result` as raw bytes. [`request`] writes requests in the addon's format.
//! [`backoff`] spaces out reconnect attempts to a backend that refuses them.

pub mod backend;
pub mod backoff;
pub mod link;
pub mod reply;
pub mod request;
