//! The manager's side of the Blender addon protocol.
//!
//! A [`link::BlenderLink`] is one keep-alive TCP connection to an addon, owned by
//! exactly one session task, so it never has two requests in flight. [`reply`]
//! parses only the envelope of a reply (`status`, `message`, `_state`) and keeps the
//! `result` as raw bytes. [`request`] writes requests in the addon's format.
//! [`backoff`] spaces out reconnect attempts to a backend that refuses them.
//! A [`backend::Backend`] is one Blender's shared figures and single-flight connect
//! gate; the [`pool::BackendPool`] holds them and places new sessions; [`health`]
//! probes each backend over a connection of its own.

pub mod backend;
pub mod backoff;
pub mod health;
pub mod link;
pub mod pool;
pub mod reply;
pub mod request;
