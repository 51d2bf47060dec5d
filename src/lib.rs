//! Blender Session Manager: one long-running process between language-model tools
//! and Blender's addon.
//!
//! How the parts fit (data takes one path, front door → core → session → link → codec):
//! - [`wire`] frames JSON values on byte streams (one incremental codec for every socket);
//! - [`blender`] is the manager's side of the addon protocol: keep-alive links,
//!   reply envelopes, backoff;
//! - [`session`] holds sessions — one task per session owning its link and FIFO —
//!   their history and state, the registry and the idle reaper;
//! - [`jobs`] turns every command into a job that outlives its caller's patience;
//! - [`store`] is the SQLite file everything is written through; [`persist`] maps
//!   memory to rows and back;
//! - [`manager`] is the core every front door calls;
//! - [`api`] holds the front doors: JSON-RPC over NDJSON, the addon-compatible port
//!   and HTTP (REST, seed 000's queue routes, health);
//! - [`metrics`] counts commands and queue waits for `GET /metrics` (Prometheus);
//! - [`server`] binds and runs it all; [`config`] resolves and validates the
//!   settings (flags, environment, the [`config_file`]);
//! - [`cli`] is the command-line client of a running manager;
//! - [`mcp`] is the stdio MCP server over a running manager (`mcp` subcommand);
//! - [`mock_blender`] is a scriptable stand-in addon for tests and benchmarks.

pub mod api;
pub mod blender;
pub mod cli;
pub mod clock;
pub mod config;
pub mod config_file;
pub mod error;
pub mod jobs;
pub mod logging;
pub mod manager;
pub mod mcp;
pub mod metrics;
pub mod mock_blender;
pub mod pause;
pub mod persist;
pub mod raw_json;
pub mod server;
pub mod session;
pub mod store;
pub mod tools;
pub mod wire;
