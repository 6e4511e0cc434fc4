//! Era translation: the pure mappings between the 2025-era wire format a legacy
//! client speaks and the 2026-07-28 format a modern-only inner service speaks.
//!
//! The functions the layer calls in translation mode (`layer/translated.rs`), with no
//! I/O of their own (the [`cache`] of discoveries is the one piece of state). The
//! multi round-trip mappings ([`mrtr`]) are not called by the layer yet, so the module
//! is `#[allow(dead_code)]` in `lib.rs` until MRTR rounds are run.
//!
//! One file per direction or concern:
//! - [`context`]: what a legacy session contributes to every modern request
//!   (`_meta` protocol version, client capabilities and info, log level).
//! - [`request`]: a legacy request → the modern request and its headers; which legacy
//!   methods the layer serves itself ([`request::route`]).
//! - [`header`]: the `Mcp-Name` value encoding (the base64 sentinel).
//! - [`discover`]: the `server/discover` request and the `InitializeResult` built from
//!   its answer.
//! - [`answer`]: modern answers and notifications → the legacy shape; the
//!   [`answer::AnswerShape`] of a result (complete or input required).
//! - [`http_error`]: a 2026 HTTP error answer → a legacy JSON-RPC error answer.
//! - [`mrtr`]: multi round-trip requests ↔ legacy server → client requests, and the
//!   retry of the original request.
//! - [`raw`]: the order- and byte-preserving JSON object every mapping edits.
//! - [`cache`]: recent `server/discover` answers.
//!
//! Every mapping keeps what it does not need to change byte for byte (see [`raw`]):
//! ids, arguments and results can hold integers wider than 64 bits, which a round trip
//! through `serde_json::Value` would turn into floats. Inputs are bounded by the
//! layer's body limit; no input can make a mapping panic (see `tests.rs`).

pub(crate) mod answer;
pub(crate) mod cache;
pub(crate) mod context;
pub(crate) mod discover;
pub(crate) mod header;
pub(crate) mod http_error;
pub(crate) mod in_flight;
pub(crate) mod mrtr;
pub(crate) mod param_headers;
pub(crate) mod raw;
pub(crate) mod request;

#[cfg(test)]
mod tests;

use std::fmt;

/// The protocol version every translated request names: translation speaks only
/// 2026-07-28 to the inner service.
pub(crate) const MODERN_VERSION: &str = "2026-07-28";

/// `_meta` key of the request's protocol version (2026-07-28 `RequestMetaObject`).
pub(crate) const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the request's client capabilities (required in 2026-07-28).
pub(crate) const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the request's client info (SHOULD in 2026-07-28).
pub(crate) const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key of the request's log level (replaces `logging/setLevel`).
pub(crate) const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key of a result's server info (2026-07-28 `ResultMetaObject`).
pub(crate) const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key tagging notifications of a `subscriptions/listen` stream.
pub(crate) const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// Why a message could not be translated.
///
/// The request-side variants are the legacy client's fault (the layer answers them
/// with [`code`](Self::code), an invalid-request or invalid-params error); the
/// answer-side variants are the inner service's (an internal error for the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TranslateError {
    /// The bytes are not a JSON object.
    NotJson,
    /// A JSON object that is not the JSON-RPC message expected here (a request without
    /// `method` or `id`, an answer without `result` or `error`).
    NotJsonRpc,
    /// `params` is present but not an object (MCP params are always objects).
    ParamsNotObject,
    /// `params._meta` is present but not an object.
    MetaNotObject,
    /// `tools/call` / `prompts/get` without a string `name`, `resources/read` without
    /// a string `uri`: the `Mcp-Name` header has no source.
    MissingName,
    /// The method cannot be an `Mcp-Method` header value (not visible ASCII; the
    /// sentinel encoding is defined for `Mcp-Name` only).
    MethodNotHeaderSafe,
    /// A `resultType` the 2026-07-28 core does not define (it MUST be treated as invalid).
    UnknownResultType,
    /// `input_required` on a method that may not return it (only `tools/call`,
    /// `resources/read`, `prompts/get` may).
    InputRequiredNotAllowed,
    /// An `InputRequiredResult` or one of its input requests is malformed.
    InvalidInputRequired,
    /// An input request method other than sampling, elicitation or roots.
    UnsupportedInputRequest,
    /// An input request the legacy client did not declare (or whose revision cannot
    /// express it); the path names the capability, e.g. `"elicitation.url"`.
    UndeclaredCapability(&'static str),
    /// A `server/discover` result without a capabilities object.
    InvalidDiscover,
    /// The inner service does not list 2026-07-28 among its supported versions.
    NoModernVersion,
}

impl TranslateError {
    /// The JSON-RPC error code a legacy client is answered with.
    pub(crate) fn code(&self) -> i64 {
        match self {
            Self::NotJson => -32700,
            Self::NotJsonRpc => -32600,
            Self::ParamsNotObject | Self::MetaNotObject | Self::MissingName | Self::MethodNotHeaderSafe => -32602,
            _ => -32603,
        }
    }

    /// Whether this error, met in an answer of the inner service, still makes the
    /// final answer to the client's request (an error answer under its id): the
    /// answer was there but cannot be taken by a legacy client. Other errors mean the
    /// message was no answer at all.
    pub(crate) fn answers_request(&self) -> bool {
        matches!(
            self,
            Self::UnknownResultType
                | Self::InputRequiredNotAllowed
                | Self::InvalidInputRequired
                | Self::UnsupportedInputRequest
                | Self::UndeclaredCapability(_)
        )
    }
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::NotJson => "message is not a JSON object",
            Self::NotJsonRpc => "message is not the expected JSON-RPC message",
            Self::ParamsNotObject => "params is not an object",
            Self::MetaNotObject => "params._meta is not an object",
            Self::MissingName => "request lacks the name or uri it is routed by",
            Self::MethodNotHeaderSafe => "method cannot be sent as a header value",
            Self::UnknownResultType => "result has an unknown resultType",
            Self::InputRequiredNotAllowed => "input_required answer to a method that cannot take one",
            Self::InvalidInputRequired => "malformed input_required result",
            Self::UnsupportedInputRequest => "input request of an unsupported method",
            Self::UndeclaredCapability(path) => return write!(f, "client did not declare capability {path}"),
            Self::InvalidDiscover => "server/discover result has no capabilities object",
            Self::NoModernVersion => "inner service does not support 2026-07-28",
        };
        f.write_str(text)
    }
}

impl std::error::Error for TranslateError {}
