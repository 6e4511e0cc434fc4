// The README is the front page: what a user reads first on docs.rs is what they read on
// the repository, and its Rust blocks are compiled as doctests so neither can rot.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod drain;
mod engine;
mod era;
pub mod event_log;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
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
// Translation mode's mappings. The multi round-trip ones (`mrtr`) and the answer
// shape's input requests are not called by the layer yet; the allowance goes when
// `layer/` runs MRTR rounds.
mod telemetry;
#[allow(dead_code)]
mod translate;
mod util;

pub use drain::DrainReport;
pub use era::{InvalidProtocolVersion, ProtocolVersion};
pub use jsonrpc::TraceContext;
pub use layer::{McpSession, McpSessionLayer, McpSessionLayerBuilder, ResponseFuture};
pub use lifecycle::{AtCapacity, Session, SessionError};
pub use manager::{SendError, SessionAdmin, SessionInfo, SessionManager};
pub use metrics::Metrics;
pub use outbound::RequestError;
pub use rejection::RejectionKind;
pub use session::{CloseReason, MakeSessionId, Principal, RandomSessionId, SessionId, SessionRecord};
pub use stream::SseControl;
pub use stream::{McpBody, WriteTimeout};
