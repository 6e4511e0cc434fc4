//! Put [`tower-mcp-session`](tower_mcp_session) in front of an MCP server written in
//! any language.
//!
//! [`Upstream`] is a tower service that forwards what the
//! [`McpSessionLayer`](tower_mcp_session::McpSessionLayer) hands it to an upstream
//! Streamable HTTP server over a pooled hyper client, streaming the answers back. A
//! stateless Python or TypeScript server behind it gets what the layer gives any inner
//! service: sessions (memory or Redis, across instances), resumable SSE with
//! `Last-Event-ID`, server push, creation limits. The repository's
//! `examples/proxy.rs` is the same thing as a program:
//!
//! ```text
//! cargo run --example proxy -- --addr 127.0.0.1:8080 --upstream http://127.0.0.1:3000/mcp
//! ```
//!
//! ```
//! use tower_mcp_session::McpSessionLayer;
//! use tower_mcp_session_proxy::Upstream;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = tower::ServiceBuilder::new()
//!     .layer(McpSessionLayer::new())
//!     .service(Upstream::new("http://127.0.0.1:3000/mcp").unwrap());
//! // Serve `service` with hyper (hyper_util::service::TowerToHyperService) or axum
//! // (`Router::route_service("/mcp", service)`).
//! # drop(service);
//! # }
//! ```
//!
//! The upstream must not keep sessions of its own (run it stateless): the layer owns
//! them, and refuses an upstream `Mcp-Session-Id` with 502 `upstream_session_id`.

mod body;
mod gateway;
mod headers;
mod upstream;

pub use body::UpstreamBody;
pub use upstream::{InvalidUpstream, ResponseFuture, Upstream, UpstreamBuilder};
