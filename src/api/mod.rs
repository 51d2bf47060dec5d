//! Front doors: thin translators from a caller's protocol to [`Manager`](crate::manager::Manager) calls.
//!
//! [`jsonrpc`] serves JSON-RPC 2.0 over NDJSON; [`compat`] speaks the stock addon's
//! protocol so existing Blender MCP servers work unchanged; [`http`] serves REST
//! over the same method table, seed 000's queue routes, `/healthz` and `/metrics`.
//! [`methods`] is the JSON-RPC method table, [`params`] checks named params,
//! [`rpc`] builds envelopes.

pub mod accept;
pub mod compat;
pub mod http;
pub mod jsonrpc;
pub mod methods;
pub mod params;
pub mod rpc;
