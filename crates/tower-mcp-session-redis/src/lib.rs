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
//! use tower_mcp_session_redis::{RedisConnection, RedisEventLog, RedisSessionStore};
//!
//! # async fn run() -> redis::RedisResult<()> {
//! let client = redis::Client::open("redis://127.0.0.1:6379/")?;
//! let conn = RedisConnection::from(client.get_connection_manager().await?);
//! let layer = McpSessionLayer::builder()
//!     .store(RedisSessionStore::new(conn.clone()))
//!     .event_log(RedisEventLog::new(conn))
//!     .idle_timeout(Duration::from_secs(30 * 60))
//!     .build();
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! [`SessionStore`]: tower_mcp_session::store::SessionStore
//! [`EventLog`]: tower_mcp_session::event_log::EventLog
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod connection;
mod event_log;
mod event_log_scripts;
mod store;

pub use connection::RedisConnection;
pub use event_log::{RedisEventLog, RedisEventLogBuilder};
pub use store::{RedisSessionStore, RedisSessionStoreBuilder};
