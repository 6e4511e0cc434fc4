//! The client side of MCP Streamable HTTP sessions, for servers behind
//! `tower-mcp-session` or any other Streamable HTTP implementation.
//!
//! Two pieces:
//!
//! - [`McpClientLayer`] wraps any tower HTTP client service (hyper-util's legacy
//!   `Client`, or anything else `Service<Request<B>, Response = Response<RB>>`) into an
//!   [`McpClient`]: it captures and sends `Mcp-Session-Id` and `MCP-Protocol-Version`,
//!   re-initializes once when the server answers 404 for the session, gives SSE answers a
//!   body that resumes by itself with `Last-Event-ID` and yields each event once, and
//!   closes sessions with `DELETE` plus every stream it still has open.
//! - [`ServerPool`] keeps sessions with many servers: health checks with states
//!   (healthy, degraded, unhealthy, connecting, disconnected), least-loaded selection,
//!   failover groups that switch over and back, reconnection through a factory with
//!   backoff, and a circuit breaker and retry policy per server.
//!
//! Everything here speaks the session revisions (2025-03-26, 2025-06-18, 2025-11-25);
//! 2026-07-28 has no sessions to keep.
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::Layer;
//! use tower_mcp_session_client::McpClientLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_mcp_session_client::Error> {
//! let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let layer = McpClientLayer::builder()
//!     .endpoint("http://127.0.0.1:8080/mcp".parse().unwrap())
//!     .build();
//! let client = layer.layer(http);
//! let answer = client
//!     .request("tools/call", serde_json::json!({"name": "echo", "arguments": {"message": "hi"}}))
//!     .await?;
//! println!("{answer}");
//! client.close().await?;
//! # Ok(()) }
//! ```

mod backoff;
mod body;
mod calls;
mod error;
mod handler;
mod layer;
mod pool;
mod service;
mod session;

pub use backoff::Backoff;
pub use body::{ClientEvent, McpClientBody};
pub use error::{BoxError, Error};
pub use layer::{McpClientLayer, McpClientLayerBuilder};
pub use pool::{
    CircuitBreakerConfig, CircuitState, FailoverEvent, HealthConfig, HealthState, McpConnection, PoolError, PoolEvent,
    PooledServer, RetryPolicy, RpcCall, ServerFactory, ServerPool, ServerPoolBuilder, SessionInfo, SessionStats,
};
pub use service::{McpClient, ResponseFuture};
pub use session::{ClientStats, Expired, ReinitDecision, Reinitialize, SessionEvent};

/// A boxed, sendable future. Private until the core's `store::BoxFuture` is public API
/// the client can name; the two are the same type.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
