//! Redis backends for [`tower-mcp-session`](tower_mcp_session): a [`SessionStore`] and an
//! [`EventLog`], on one Redis server or a Redis Cluster, so several server instances
//! behind a load balancer share sessions and resumable streams.
//!
//! Written against the public API of `tower-mcp-session` alone: the store keeps
//! records, the cap and expiry reports; busy counting, keep-alive, cap policy, close
//! listeners and attribute bounds are the layer's.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_mcp_session::McpSessionLayer;
//!
//! # async fn run() -> redis::RedisResult<()> {
//! // Both backends on one connection to one server.
//! let redis = tower_mcp_session_redis::connect("redis://127.0.0.1:6379/").await?;
//! let layer = redis
//!     .configure(McpSessionLayer::builder())
//!     .idle_timeout(Duration::from_secs(30 * 60))
//!     .build();
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! The `redis` crate is re-exported ([`redis`]) for what a deployment must name of it
//! (a Cluster client, TLS URLs need one of its TLS features, enabled in your own
//! `Cargo.toml` on the same major version, `redis = "1"`).
//! For settings, [`RedisSessionStore::builder`] and [`RedisEventLog::builder`] take a
//! [`RedisConnection`] that both may share.
//!
//! [`SessionStore`]: tower_mcp_session::store::SessionStore
//! [`EventLog`]: tower_mcp_session::event_log::EventLog
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod connect;
mod connection;
mod event_log;
mod event_log_builder;
mod event_log_lease;
mod event_log_local;
mod event_log_scripts;
mod store;

pub use connect::{RedisBackends, connect};
pub use connection::RedisConnection;
pub use event_log::RedisEventLog;
pub use event_log_builder::RedisEventLogBuilder;
/// The `redis` crate this one is built on, for the types a deployment names (a
/// Cluster client, errors).
pub use redis;
pub use store::{RedisSessionStore, RedisSessionStoreBuilder};
