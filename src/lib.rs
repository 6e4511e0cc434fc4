//! Era-aware session layer for MCP Streamable HTTP servers.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod era;
pub mod event_log;
pub mod headers;
#[cfg(feature = "redis")]
mod redis_common;
pub mod session;
pub mod store;
mod util;

pub use era::ProtocolVersion;
pub use session::{CloseReason, MakeSessionId, Principal, RandomSessionId, Session, SessionId, SessionRecord};
pub use util::BoxFuture;
