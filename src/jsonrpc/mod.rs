//! Just enough JSON-RPC to route a request: what kind of message a body holds, its id
//! and method, and the few parameters the layer needs. The inner service still gets
//! the body byte for byte.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::ProtocolVersion;

/// A JSON-RPC request id, kept as raw JSON so it is echoed back exactly.
pub(crate) type RequestId = Box<RawValue>;

/// The shape of one JSON-RPC message.
#[derive(Debug, Clone)]
pub(crate) enum MessageKind {
    Request { id: RequestId, method: String },
    Notification { method: String },
    Response,
}

/// One peeked message with the parameters the layer looks at.
#[derive(Debug, Clone)]
pub(crate) struct Peeked {
    pub(crate) kind: MessageKind,
    /// For `initialize`: the client's requested version, info and capabilities.
    pub(crate) initialize: Option<InitializeParams>,
    /// For modern requests: what `params._meta` and the name fields say.
    pub(crate) modern: ModernParams,
}

impl Peeked {
    pub(crate) fn method(&self) -> Option<&str> {
        match &self.kind {
            MessageKind::Request { method, .. } | MessageKind::Notification { method } => Some(method),
            MessageKind::Response => None,
        }
    }

    pub(crate) fn id(&self) -> Option<&RawValue> {
        match &self.kind {
            MessageKind::Request { id, .. } => Some(id),
            _ => None,
        }
    }

    pub(crate) fn is_initialize(&self) -> bool {
        matches!(&self.kind, MessageKind::Request { method, .. } if method == "initialize")
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct InitializeParams {
    /// The revision the client asked for, as sent.
    pub(crate) protocol_version: Option<String>,
    pub(crate) client_info: Option<Box<RawValue>>,
    pub(crate) capabilities: Option<Box<RawValue>>,
}

/// What a request body says about the 2026-07-28 request metadata.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModernParams {
    /// `_meta["io.modelcontextprotocol/protocolVersion"]`, as text.
    pub(crate) protocol_version: Option<String>,
    pub(crate) has_client_capabilities: bool,
    pub(crate) has_meta: bool,
    /// `params.name` (tools/call, prompts/get) or `params.uri` (resources/read).
    pub(crate) name: Option<String>,
}

/// The body of a POST: one message or a batch.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Single(Peeked),
    Batch(Vec<Peeked>),
}

/// Why a body could not be peeked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeekError {
    /// Not JSON at all (-32700).
    Parse,
    /// JSON, but not a JSON-RPC message or batch (-32600).
    InvalidRequest,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(default)]
    result: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct ParamsPeek<'a> {
    #[serde(borrow, default, rename = "_meta")]
    meta: Option<MetaPeek<'a>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uri: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "protocolVersion")]
    protocol_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "clientInfo")]
    client_info: Option<&'a RawValue>,
    #[serde(borrow, default)]
    capabilities: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct MetaPeek<'a> {
    #[serde(borrow, default, rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "io.modelcontextprotocol/clientCapabilities")]
    client_capabilities: Option<&'a RawValue>,
}

/// Peek at a POST body. Batches are returned as such; whether they are allowed is the
/// caller's decision (2025-03-26 only).
pub(crate) fn peek_body(body: &[u8]) -> Result<Body, PeekError> {
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    if first == Some(b'[') {
        let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(classify_error)?;
        if items.is_empty() {
            return Err(PeekError::InvalidRequest);
        }
        let peeked = items
            .into_iter()
            .map(|raw| peek_message(raw.get().as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Body::Batch(peeked));
    }
    peek_message(body).map(Body::Single)
}

fn classify_error(e: serde_json::Error) -> PeekError {
    match e.classify() {
        serde_json::error::Category::Data => PeekError::InvalidRequest,
        _ => PeekError::Parse,
    }
}

fn peek_message(raw: &[u8]) -> Result<Peeked, PeekError> {
    let env: Envelope<'_> = serde_json::from_slice(raw).map_err(classify_error)?;
    if env.jsonrpc.as_deref() != Some("2.0") {
        return Err(PeekError::InvalidRequest);
    }
    let kind = match (env.method, env.id) {
        (Some(method), Some(id)) if valid_id(id) => MessageKind::Request {
            id: id.to_owned(),
            method: method.into_owned(),
        },
        (Some(_), Some(_)) => return Err(PeekError::InvalidRequest),
        (Some(method), None) => MessageKind::Notification {
            method: method.into_owned(),
        },
        (None, _) if env.result.is_some() || env.error.is_some() => MessageKind::Response,
        (None, _) => return Err(PeekError::InvalidRequest),
    };
    let mut initialize = None;
    let mut modern = ModernParams::default();
    if let Some(params) = env.params {
        // Params that are not an object (an array, say) carry nothing the layer reads.
        if let Ok(p) = serde_json::from_str::<ParamsPeek<'_>>(params.get()) {
            if matches!(&kind, MessageKind::Request { method, .. } if method == "initialize") {
                initialize = Some(InitializeParams {
                    protocol_version: p.protocol_version.map(Cow::into_owned),
                    client_info: p.client_info.map(ToOwned::to_owned),
                    capabilities: p.capabilities.map(ToOwned::to_owned),
                });
            }
            if let Some(meta) = p.meta {
                modern.has_meta = true;
                modern.protocol_version = meta.protocol_version.map(Cow::into_owned);
                modern.has_client_capabilities = meta.client_capabilities.is_some();
            }
            modern.name = p.name.or(p.uri).map(Cow::into_owned);
        }
    } else if matches!(&kind, MessageKind::Request { method, .. } if method == "initialize") {
        initialize = Some(InitializeParams::default());
    }
    Ok(Peeked {
        kind,
        initialize,
        modern,
    })
}

/// JSON-RPC ids are strings or numbers (null is tolerated by nobody the layer serves).
fn valid_id(id: &RawValue) -> bool {
    matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
}

/// What the layer learns from the inner service's answer to `initialize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InitializeOutcome {
    /// A JSON-RPC result carrying `protocolVersion`: the session can be created.
    Succeeded(ProtocolVersion),
    /// An error, or a result that is not an `InitializeResult`.
    Failed,
}

#[derive(Deserialize)]
struct ResponsePeek<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<ResultPeek<'a>>,
}

#[derive(Deserialize)]
struct ResultPeek<'a> {
    #[serde(borrow, default, rename = "protocolVersion")]
    protocol_version: Option<Cow<'a, str>>,
}

/// Read a JSON-RPC message and, if it is the response to request `id`, whether it is a
/// successful `InitializeResult`. `None` when the message answers something else.
pub(crate) fn initialize_outcome(message: &[u8], id: &RawValue) -> Option<InitializeOutcome> {
    let Ok(peek) = serde_json::from_slice::<ResponsePeek<'_>>(message) else {
        return None;
    };
    if peek.id.map(RawValue::get) != Some(id.get()) {
        return None;
    }
    let version = peek
        .result
        .and_then(|r| r.protocol_version)
        .and_then(|v| v.parse().ok());
    Some(version.map_or(InitializeOutcome::Failed, InitializeOutcome::Succeeded))
}

/// Serialize a JSON-RPC error response. `id` is `null` when the request id is unknown.
pub(crate) fn error_body(id: Option<&RawValue>, code: i64, message: &str, data: Option<&serde_json::Value>) -> Bytes {
    #[derive(serde::Serialize)]
    struct ErrorObject<'a> {
        code: i64,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a serde_json::Value>,
    }
    #[derive(serde::Serialize)]
    struct ErrorResponse<'a> {
        jsonrpc: &'static str,
        id: Option<&'a RawValue>,
        error: ErrorObject<'a>,
    }
    let body = ErrorResponse {
        jsonrpc: "2.0",
        id,
        error: ErrorObject { code, message, data },
    };
    Bytes::from(serde_json::to_vec(&body).expect("error responses always serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(body: &str) -> Peeked {
        match peek_body(body.as_bytes()).unwrap() {
            Body::Single(p) => p,
            Body::Batch(_) => panic!("batch"),
        }
    }

    #[test]
    fn kinds() {
        let p = single(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert_eq!(p.method(), Some("tools/list"));
        assert_eq!(p.id().unwrap().get(), "1");
        let p = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert!(matches!(p.kind, MessageKind::Notification { .. }));
        let p = single(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#);
        assert!(matches!(p.kind, MessageKind::Response));
    }

    #[test]
    fn errors() {
        assert_eq!(peek_body(b"{not json").unwrap_err(), PeekError::Parse);
        assert_eq!(peek_body(b"").unwrap_err(), PeekError::Parse);
        assert_eq!(peek_body(b"42").unwrap_err(), PeekError::InvalidRequest);
        assert_eq!(peek_body(b"{}").unwrap_err(), PeekError::InvalidRequest);
        assert_eq!(peek_body(b"[]").unwrap_err(), PeekError::InvalidRequest);
        assert_eq!(
            peek_body(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#).unwrap_err(),
            PeekError::InvalidRequest
        );
        assert_eq!(
            peek_body(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#).unwrap_err(),
            PeekError::InvalidRequest
        );
        assert_eq!(
            peek_body(br#"{"jsonrpc":"2.0","id":1,"method":3}"#).unwrap_err(),
            PeekError::InvalidRequest
        );
    }

    #[test]
    fn initialize_and_modern_params() {
        let p = single(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"roots":{}},"clientInfo":{"name":"c","version":"1"}}}"#,
        );
        assert!(p.is_initialize());
        let init = p.initialize.unwrap();
        assert_eq!(init.client_info.unwrap().get(), r#"{"name":"c","version":"1"}"#);
        let p = single(
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
        );
        assert_eq!(p.modern.protocol_version.as_deref(), Some("2026-07-28"));
        assert!(p.modern.has_client_capabilities);
        assert_eq!(p.modern.name.as_deref(), Some("echo"));
    }

    #[test]
    fn batch() {
        let Body::Batch(items) =
            peek_body(br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#).unwrap()
        else {
            panic!("not a batch");
        };
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn initialize_outcomes() {
        let id = RawValue::from_string("7".into()).unwrap();
        let ok = br#"{"jsonrpc":"2.0","id":7,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}"#;
        assert_eq!(
            initialize_outcome(ok, &id),
            Some(InitializeOutcome::Succeeded(ProtocolVersion::V2025_11_25))
        );
        let err = br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"bad"}}"#;
        assert_eq!(initialize_outcome(err, &id), Some(InitializeOutcome::Failed));
        let other = br#"{"jsonrpc":"2.0","id":8,"result":{"protocolVersion":"2025-11-25"}}"#;
        assert_eq!(initialize_outcome(other, &id), None);
        let note = br#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#;
        assert_eq!(initialize_outcome(note, &id), None);
    }

    #[test]
    fn error_bodies() {
        let b = error_body(None, -32001, "Session not found", None);
        assert_eq!(
            &b[..],
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}"#
        );
    }
}
