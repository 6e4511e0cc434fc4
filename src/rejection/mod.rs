//! Rejections: every request the layer refuses gets an HTTP status, a JSON-RPC error
//! body with a stable code and reason, and never internal error text.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use serde_json::value::RawValue;

use crate::jsonrpc;

/// Why the layer refused a request. Each kind has a fixed HTTP status, JSON-RPC error
/// code and reason string (in `error.data.reason`); all three are stable.
///
/// The codes follow the MCP reference SDKs where the specification is silent
/// (`-32000` for transport-level refusals, `-32001` for an unknown session) and the
/// specification where it speaks (`-32020`, `-32022`, `-32602` for 2026-07-28 requests;
/// `-32700`, `-32600` from JSON-RPC).
///
/// ```
/// use http::StatusCode;
/// use tower_mcp_session::RejectionKind;
///
/// let kind = RejectionKind::SessionNotFound;
/// assert_eq!(kind.status(), StatusCode::NOT_FOUND);
/// assert_eq!(kind.code(), -32001);
/// assert_eq!(kind.reason(), "session_not_found");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// `Origin` present and not allowed (DNS-rebinding and CSRF protection). 403.
    ForbiddenOrigin,
    /// `Host` not in the allow-list (DNS-rebinding protection). 403.
    ForbiddenHost,
    /// An HTTP method the endpoint does not serve. 405, with `Allow`.
    MethodNotAllowed,
    /// `Accept` does not list the content types the transport requires. 406.
    NotAcceptable,
    /// A POST body that is not `application/json`. 415.
    UnsupportedMediaType,
    /// A POST body over the configured limit. 413.
    PayloadTooLarge,
    /// A body that is not JSON. 400, `-32700`.
    ParseError,
    /// JSON that is not a JSON-RPC message. 400, `-32600`.
    InvalidRequest,
    /// A JSON-RPC batch outside a 2025-03-26 session, or a batch holding `initialize`. 400, `-32600`.
    BatchNotAllowed,
    /// A legacy request other than `initialize` without `Mcp-Session-Id`. 400.
    MissingSessionId,
    /// An `Mcp-Session-Id` that is not 1–256 visible ASCII characters. 400.
    MalformedSessionId,
    /// An unknown, expired or deleted session, or one bound to another principal. 404, `-32001`.
    SessionNotFound,
    /// A legacy `MCP-Protocol-Version` that is malformed or not supported. 400.
    UnsupportedProtocolVersion,
    /// A 2026-07-28 request whose headers are missing or disagree with its body. 400, `-32020`.
    HeaderMismatch,
    /// A 2026-07-28-era request for a revision the server does not implement, or a
    /// legacy `initialize` on a modern-only endpoint. 400, `-32022`, with
    /// `error.data.supported` and `error.data.requested`.
    UnsupportedModernVersion,
    /// A 2026-07-28 request without the required `_meta` fields. 400, `-32602`.
    MissingRequestMeta,
    /// Session creation refused by the rate limit. 429, with `Retry-After`; `-32000`,
    /// or the draft `-32023` with `error.data.retryAfterMs` when opted in
    /// ([`CreationLimit::draft_error_code`](crate::rate_limit::CreationLimit::draft_error_code)).
    RateLimited,
    /// Session cap reached and nothing could be evicted. 503, with `Retry-After`.
    AtCapacity,
    /// The session store or event log failed or timed out. 503, with `Retry-After`.
    StoreUnavailable,
    /// A `Last-Event-ID` that names no stream of this session. 400.
    UnknownEventId,
    /// The inner service's answer to `initialize` could not be read (over 1 MiB, or the
    /// body failed). 502, `-32603`.
    InvalidUpstreamResponse,
    /// A `Last-Event-ID` whose later events were dropped by retention: the gap cannot
    /// be filled, so the stream cannot be resumed. 410.
    EventsEvicted,
    /// `initialize` carried more `clientInfo` and `capabilities` than a session record
    /// keeps ([`max_client_metadata_bytes`](crate::McpSessionLayerBuilder::max_client_metadata_bytes)).
    /// 400, `-32602`.
    ClientMetadataTooLarge,
    /// A JSON-RPC response (or `notifications/cancelled`) for a request id the layer
    /// minted that no request of this session awaits: unknown, answered already, or
    /// given up on. 400, `-32600`.
    UnexpectedResponse,
    /// `resources/subscribe` past what the session may hold (its subscriptions live in
    /// its attributes, under their bounds). 400, `-32602`.
    SubscriptionLimit,
    /// The inner service answered a legacy `initialize` with an `Mcp-Session-Id` of its
    /// own: it keeps sessions itself (rmcp without its stateless switch, for one), so
    /// every later request would fail inside it with an id the layer minted. 502,
    /// `-32603`; logged once per process. Turn the inner service's sessions off.
    UpstreamSessionId,
    /// A streamed answer in a session that holds as many unfinished streams as the
    /// event log keeps per session: the answer cannot be made resumable, so it is not
    /// sent raw either. 429, with `Retry-After`.
    TooManyStreams,
    /// The event log holds its whole memory budget and nothing finished can be dropped
    /// to make room. 503, with `Retry-After`.
    EventLogFull,
    /// `initialize` on an instance that is draining
    /// ([`SessionManager::drain`](crate::SessionManager::drain)): it creates no new
    /// sessions, so the client should try again, through the balancer, elsewhere. 503,
    /// with `Retry-After`.
    Draining,
}

impl RejectionKind {
    /// The HTTP status of the answer.
    pub fn status(self) -> StatusCode {
        use RejectionKind::*;
        match self {
            ForbiddenOrigin | ForbiddenHost => StatusCode::FORBIDDEN,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            SessionNotFound => StatusCode::NOT_FOUND,
            RateLimited | TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
            AtCapacity | StoreUnavailable | EventLogFull | Draining => StatusCode::SERVICE_UNAVAILABLE,
            EventsEvicted => StatusCode::GONE,
            InvalidUpstreamResponse | UpstreamSessionId => StatusCode::BAD_GATEWAY,
            ParseError
            | InvalidRequest
            | BatchNotAllowed
            | MissingSessionId
            | MalformedSessionId
            | UnsupportedProtocolVersion
            | HeaderMismatch
            | UnsupportedModernVersion
            | MissingRequestMeta
            | UnknownEventId
            | ClientMetadataTooLarge
            | UnexpectedResponse
            | SubscriptionLimit => StatusCode::BAD_REQUEST,
        }
    }

    /// The JSON-RPC error code of the answer.
    pub fn code(self) -> i64 {
        use RejectionKind::*;
        match self {
            ParseError => -32700,
            InvalidRequest | BatchNotAllowed | UnexpectedResponse => -32600,
            MissingRequestMeta | ClientMetadataTooLarge | SubscriptionLimit => -32602,
            SessionNotFound => -32001,
            HeaderMismatch => -32020,
            UnsupportedModernVersion => -32022,
            InvalidUpstreamResponse | UpstreamSessionId => -32603,
            _ => -32000,
        }
    }

    /// A stable snake_case reason, sent as `error.data.reason` and used in metrics.
    pub fn reason(self) -> &'static str {
        use RejectionKind::*;
        match self {
            ForbiddenOrigin => "forbidden_origin",
            ForbiddenHost => "forbidden_host",
            MethodNotAllowed => "method_not_allowed",
            NotAcceptable => "not_acceptable",
            UnsupportedMediaType => "unsupported_media_type",
            PayloadTooLarge => "payload_too_large",
            ParseError => "parse_error",
            InvalidRequest => "invalid_request",
            BatchNotAllowed => "batch_not_allowed",
            MissingSessionId => "session_id_required",
            MalformedSessionId => "malformed_session_id",
            SessionNotFound => "session_not_found",
            UnsupportedProtocolVersion => "unsupported_protocol_version",
            HeaderMismatch => "header_mismatch",
            UnsupportedModernVersion => "unsupported_protocol_version",
            MissingRequestMeta => "missing_request_meta",
            RateLimited => "rate_limited",
            AtCapacity => "at_capacity",
            StoreUnavailable => "store_unavailable",
            UnknownEventId => "unknown_event_id",
            EventsEvicted => "events_evicted",
            InvalidUpstreamResponse => "bad_upstream_response",
            ClientMetadataTooLarge => "client_metadata_too_large",
            UnexpectedResponse => "unexpected_response",
            SubscriptionLimit => "subscription_limit",
            UpstreamSessionId => "upstream_session_id",
            TooManyStreams => "too_many_streams",
            EventLogFull => "event_log_full",
            Draining => "draining",
        }
    }

    pub(crate) fn message(self) -> &'static str {
        use RejectionKind::*;
        match self {
            ForbiddenOrigin => "Forbidden: Origin not allowed",
            ForbiddenHost => "Forbidden: Host not allowed",
            MethodNotAllowed => "Method not allowed",
            NotAcceptable => "Not Acceptable: client must accept application/json and text/event-stream",
            UnsupportedMediaType => "Unsupported Media Type: Content-Type must be application/json",
            PayloadTooLarge => "Payload too large",
            ParseError => "Parse error",
            InvalidRequest => "Invalid Request",
            BatchNotAllowed => "Invalid Request: batches are only allowed in 2025-03-26 sessions",
            MissingSessionId => "Bad Request: Mcp-Session-Id header is required",
            MalformedSessionId => "Bad Request: malformed Mcp-Session-Id header",
            SessionNotFound => "Session not found",
            UnsupportedProtocolVersion => "Bad Request: unsupported MCP-Protocol-Version",
            HeaderMismatch => "Header mismatch",
            UnsupportedModernVersion => "Unsupported protocol version",
            MissingRequestMeta => "Invalid params: missing request _meta",
            RateLimited => "Too many sessions created; retry later",
            AtCapacity => "Server at session capacity; retry later",
            StoreUnavailable => "Session store unavailable; retry later",
            UnknownEventId => "Bad Request: unknown Last-Event-ID",
            EventsEvicted => "Gone: events after Last-Event-ID are no longer retained",
            InvalidUpstreamResponse => "Internal error",
            ClientMetadataTooLarge => "Invalid params: clientInfo and capabilities are too large",
            UnexpectedResponse => "Invalid Request: no request of this session awaits this response",
            SubscriptionLimit => "Invalid params: the session holds as many subscriptions as it may",
            UpstreamSessionId => "Internal error: the server behind the session layer keeps sessions of its own",
            TooManyStreams => "Too many open streams in this session; retry later",
            EventLogFull => "Event log full; retry later",
            Draining => "Server instance shutting down; retry later",
        }
    }

    /// Every kind, in a fixed order (for per-kind counters).
    pub const ALL: [Self; 29] = {
        use RejectionKind::*;
        [
            ForbiddenOrigin,
            ForbiddenHost,
            MethodNotAllowed,
            NotAcceptable,
            UnsupportedMediaType,
            PayloadTooLarge,
            ParseError,
            InvalidRequest,
            BatchNotAllowed,
            MissingSessionId,
            MalformedSessionId,
            SessionNotFound,
            UnsupportedProtocolVersion,
            HeaderMismatch,
            UnsupportedModernVersion,
            MissingRequestMeta,
            RateLimited,
            AtCapacity,
            StoreUnavailable,
            UnknownEventId,
            EventsEvicted,
            InvalidUpstreamResponse,
            ClientMetadataTooLarge,
            UnexpectedResponse,
            SubscriptionLimit,
            UpstreamSessionId,
            TooManyStreams,
            EventLogFull,
            Draining,
        ]
    };

    pub(crate) fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// The draft MCP JSON-RPC code for a rate-limited request (opt-in).
const DRAFT_RATE_LIMITED_CODE: i64 = -32023;

/// A refusal on its way to becoming a response.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub(crate) kind: RejectionKind,
    id: Option<Box<RawValue>>,
    /// A JSON-RPC code other than the kind's, for opt-in draft codes.
    code: Option<i64>,
    retry_after: Option<Duration>,
    extra_data: Option<serde_json::Map<String, serde_json::Value>>,
    extra_headers: Vec<(HeaderName, HeaderValue)>,
}

/// The last event of a request's stream whose producer is gone (the instance running
/// the request stopped renewing its lease): a JSON-RPC error answer to request `id`,
/// code `-32603`, `data.reason` `producer_lost`. Not a refusal with a status: it is
/// written into the event log and read by whoever tails the stream.
pub(crate) fn producer_lost_answer(id: Option<&RawValue>) -> Bytes {
    let data = serde_json::json!({ "reason": "producer_lost" });
    jsonrpc::error_body(
        id,
        -32603,
        "the server instance handling this request stopped",
        Some(&data),
    )
}

impl Rejection {
    /// The store or event log failed or did not answer in time: 503, try again in a
    /// second.
    pub(crate) fn store_unavailable() -> Self {
        Self::new(RejectionKind::StoreUnavailable).retry_after(std::time::Duration::from_secs(1))
    }

    pub(crate) fn new(kind: RejectionKind) -> Self {
        Self {
            kind,
            id: None,
            code: None,
            retry_after: None,
            extra_data: None,
            extra_headers: Vec::new(),
        }
    }

    /// Echo the request id when it is known (the answer is then an ordinary JSON-RPC
    /// error for that request).
    pub(crate) fn with_id(mut self, id: Option<&RawValue>) -> Self {
        self.id = id.map(ToOwned::to_owned);
        self
    }

    /// A refusal by the rate limiter in the draft MCP shape: code `-32023` and
    /// `data.retryAfterMs`, same status, headers and reason as [`RejectionKind::RateLimited`].
    pub(crate) fn draft_rate_limited(mut self, wait: Duration) -> Self {
        self.code = Some(DRAFT_RATE_LIMITED_CODE);
        let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        self.data("retryAfterMs", millis.into())
    }

    pub(crate) fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    pub(crate) fn data(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra_data
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value);
        self
    }

    pub(crate) fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.extra_headers.push((name, value));
        self
    }

    pub(crate) fn into_response(self) -> Response<Bytes> {
        let mut data = self.extra_data.unwrap_or_default();
        data.insert("reason".to_owned(), self.kind.reason().into());
        let data = serde_json::Value::Object(data);
        let code = self.code.unwrap_or(self.kind.code());
        let body = jsonrpc::error_body(self.id.as_deref(), code, self.kind.message(), Some(&data));
        let mut response = Response::new(body);
        *response.status_mut() = self.kind.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(wait) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(crate::util::retry_after_secs(wait)));
        }
        if self.kind == RejectionKind::MethodNotAllowed && !self.extra_headers.iter().any(|(n, _)| n == ALLOW) {
            headers.insert(ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        }
        for (name, value) in self.extra_headers {
            headers.insert(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_is_an_error_status() {
        let mut seen = std::collections::HashSet::new();
        for kind in RejectionKind::ALL {
            assert!(seen.insert(kind));
            assert!(kind.status().is_client_error() || kind.status().is_server_error());
            assert_eq!(RejectionKind::ALL[kind.index()], kind);
        }
    }

    #[test]
    fn response_shape() {
        let r = Rejection::new(RejectionKind::AtCapacity)
            .retry_after(Duration::from_millis(200))
            .into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "1");
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["id"], serde_json::Value::Null);
        assert_eq!(v["error"]["code"], -32000);
        assert_eq!(v["error"]["data"]["reason"], "at_capacity");
    }
}
