//! [rmcp](https://docs.rs/rmcp) behind [`tower_mcp_session`]'s
//! [`McpSessionLayer`](tower_mcp_session::McpSessionLayer).
//!
//! - [`service`]: rmcp's Streamable HTTP service and the layer in one call, with what
//!   they must agree on set once (rmcp's sessions off, the `Host` list, the body bound).
//! - [`CurrentSession`] / [`OptionalSession`]: rmcp extractors for the session of the
//!   request a tool serves, with the client's `Implementation` and `ClientCapabilities`
//!   parsed and attributes read and written as any `serde` type.
//!
//! This crate follows rmcp's current release (3.11); the `tower-mcp-session` README
//! has a whole `main.rs` built on it.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod service;
mod session;

pub use service::{Builder, RmcpService, service};
pub use session::{AttributeError, CurrentSession, OptionalSession};
