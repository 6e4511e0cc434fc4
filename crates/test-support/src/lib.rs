//! Fixtures shared by the tests, examples and benchmarks of `tower-mcp-session`.
//!
//! They used to be pulled into each target by file-path includes, which compiled the
//! same file into many crates and hid dead code; one crate compiles them once.
//!
//! - [`echo`]: a small stateless MCP server (the examples' server and the tests'
//!   inner service), with the conformance suite's tools.
//! - [`http`]: the echo server behind a layer, request builders, body and SSE readers.
//! - [`modern_only`]: the echo server as a 2026-07-28-only inner service that proves
//!   translation mode never hands it a legacy message.
//! - [`rmcp`]: the `echo` tool as an rmcp server.
//! - [`tcp`]: the echo server behind a layer on a loopback socket, and a hyper client.
//! - `redis_server` (feature `redis`): private `redis-server` processes on free ports.

pub mod echo;
pub mod http;
pub mod modern_only;
#[cfg(feature = "redis")]
pub mod redis_server;
#[cfg(feature = "rmcp")]
pub mod rmcp;
pub mod runtime;
pub mod tcp;
