//! Era-aware session layer for MCP Streamable HTTP servers.
//!
//! See the crate README for the full story and `ARCHITECTURE.md` for the map of the code;
//! the architecture in one line: era classification → session resolution
//! ([`Session`], over a [`store::SessionStore`]) → inner call → SSE rewrite (resumable
//! streams in an [`event_log::EventLog`]) → stores behind traits.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod engine;
mod era;
pub mod event_log;
pub mod headers;
mod jsonrpc;
mod layer;
mod lifecycle;
mod manager;
mod metrics;
mod outbound;
mod periodic;
pub mod rate_limit;
mod rejection;
mod security;
pub mod session;
pub mod sse;
pub mod store;
mod stream;
mod util;

pub use era::{InvalidProtocolVersion, ProtocolVersion};
pub use layer::{McpSession, McpSessionLayer, McpSessionLayerBuilder, ResponseFuture};
pub use lifecycle::{AtCapacity, Session, SessionError};
pub use manager::{SendError, SessionManager};
pub use metrics::Metrics;
pub use outbound::RequestError;
pub use rejection::RejectionKind;
pub use session::{CloseReason, MakeSessionId, Principal, RandomSessionId, SessionId, SessionRecord};
pub use stream::SseControl;
pub use stream::{McpBody, WriteTimeout};
