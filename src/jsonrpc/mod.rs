//! Just enough JSON-RPC to route a request: what kind of message a body holds, its id
//! and method, and the few parameters the layer needs. The inner service still gets
//! the body byte for byte.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::ProtocolVersion;

mod trace;

pub use trace::TraceContext;

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
    /// The W3C trace context in `params._meta`, when the client sent one (boxed: most
    /// messages carry none, and every peeked message is moved around).
    pub(crate) trace: Option<Box<TraceContext>>,
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
    // `Option`'s own deserializer reads `"id": null` as no id at all, which would make a
    // request with a null id a notification; `present` keeps the null to be judged.
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    // Read in the same pass as the envelope: the body is scanned once.
    #[serde(borrow, default)]
    params: Option<Lenient<ParamsPeek<'a>>>,
    #[serde(default)]
    result: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

/// The members of `params` the layer reads.
#[derive(Default)]
struct ParamsPeek<'a> {
    meta: Option<MetaPeek<'a>>,
    name: Text<'a>,
    uri: Text<'a>,
    protocol_version: Text<'a>,
    client_info: Option<&'a RawValue>,
    capabilities: Option<&'a RawValue>,
}

/// The members of `params._meta` the layer reads.
#[derive(Default)]
struct MetaPeek<'a> {
    protocol_version: Text<'a>,
    client_capabilities: Option<&'a RawValue>,
    traceparent: Text<'a>,
    tracestate: Text<'a>,
    baggage: Text<'a>,
}

/// A JSON string, borrowed from the body when it has no escapes; any other value is
/// read as absent.
#[derive(Default)]
struct Text<'a>(Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    fn into_owned(self) -> Option<String> {
        self.0.map(Cow::into_owned)
    }
}

/// A value the layer peeks at without judging it: whatever its JSON type, it reads as
/// something (the default when the type is unexpected), never as an error. Whether a
/// `params` is well formed is the inner service's call, so a body the layer could
/// route must not be refused here because of a member's type.
trait Peek<'de>: Default {
    fn string(text: Cow<'de, str>) -> Self {
        let _ = text;
        Self::default()
    }

    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        let _ = key;
        map.next_value::<IgnoredAny>().map(drop)
    }
}

impl<'de: 'a, 'a> Peek<'de> for Text<'a> {
    fn string(text: Cow<'de, str>) -> Self {
        Self(Some(text))
    }
}

impl<'de: 'a, 'a> Peek<'de> for ParamsPeek<'a> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "_meta" => self.meta = map.next_value::<Option<Lenient<MetaPeek<'a>>>>()?.map(|m| m.0),
            "name" => self.name = map.next_value::<Lenient<Text<'a>>>()?.0,
            "uri" => self.uri = map.next_value::<Lenient<Text<'a>>>()?.0,
            "protocolVersion" => self.protocol_version = map.next_value::<Lenient<Text<'a>>>()?.0,
            "clientInfo" => self.client_info = map.next_value()?,
            "capabilities" => self.capabilities = map.next_value()?,
            _ => map.next_value::<IgnoredAny>().map(drop)?,
        }
        Ok(())
    }
}

impl<'de: 'a, 'a> Peek<'de> for MetaPeek<'a> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "io.modelcontextprotocol/protocolVersion" => {
                self.protocol_version = map.next_value::<Lenient<Text<'a>>>()?.0;
            }
            "io.modelcontextprotocol/clientCapabilities" => self.client_capabilities = map.next_value()?,
            "traceparent" => self.traceparent = map.next_value::<Lenient<Text<'a>>>()?.0,
            "tracestate" => self.tracestate = map.next_value::<Lenient<Text<'a>>>()?.0,
            "baggage" => self.baggage = map.next_value::<Lenient<Text<'a>>>()?.0,
            _ => map.next_value::<IgnoredAny>().map(drop)?,
        }
        Ok(())
    }
}

struct Lenient<T>(T);

impl<'de, T: Peek<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor(PhantomData)).map(Lenient)
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Peek<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<T, E> {
        Ok(T::string(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        Ok(T::string(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<T, E> {
        Ok(T::string(Cow::Owned(text)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(T::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut value = T::default();
        while let Some(key) = map.next_key::<Lenient<Text<'de>>>()? {
            let key = key.0.0.unwrap_or_default();
            value.member(&key, &mut map)?;
        }
        Ok(value)
    }
}

/// Peek at a POST body. Batches are returned as such; whether they are allowed is the
/// caller's decision (2025-03-26 only).
pub(crate) fn peek_body(body: &[u8]) -> Result<Body, PeekError> {
    // One UTF-8 check of the whole body is cheaper than serde_json's check per string.
    let body = std::str::from_utf8(body).map_err(|_| PeekError::Parse)?;
    let first = body.bytes().find(|b| !b.is_ascii_whitespace());
    if first == Some(b'[') {
        let items: Vec<&RawValue> = serde_json::from_str(body).map_err(classify_error)?;
        if items.is_empty() {
            return Err(PeekError::InvalidRequest);
        }
        let peeked = items
            .into_iter()
            .map(|raw| peek_message(raw.get()))
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

fn peek_message(raw: &str) -> Result<Peeked, PeekError> {
    // A derived struct also reads from a JSON array, by position: `["2.0","ping",1]`
    // would pass for a request. A message is an object; a nested array in a batch is
    // an invalid item (a top-level array never gets here: it is a batch).
    if raw.trim_start().starts_with('[') {
        return Err(PeekError::InvalidRequest);
    }
    let env: Envelope<'_> = serde_json::from_str(raw).map_err(classify_error)?;
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
    let is_initialize = matches!(&kind, MessageKind::Request { method, .. } if method == "initialize");
    // Params that are not an object (an array, say) carry nothing the layer reads.
    let params = env.params.map(|p| p.0).unwrap_or_default();
    let initialize = is_initialize.then(|| InitializeParams {
        protocol_version: params.protocol_version.into_owned(),
        client_info: params.client_info.map(ToOwned::to_owned),
        capabilities: params.capabilities.map(ToOwned::to_owned),
    });
    let meta = params.meta.unwrap_or_default();
    let trace = TraceContext::from_meta(meta.traceparent.0, meta.tracestate.0, meta.baggage.0);
    let modern = ModernParams {
        protocol_version: meta.protocol_version.into_owned(),
        has_client_capabilities: meta.client_capabilities.is_some(),
        name: params.name.0.or(params.uri.0).map(Cow::into_owned),
    };
    Ok(Peeked {
        kind,
        initialize,
        modern,
        trace,
    })
}

/// A member that is there, whatever its value (`null` included).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// JSON-RPC request ids are strings or numbers. A `null` one is an invalid request, not
/// a notification: the client expects an answer the layer could not route as one.
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
    if !peek.id.is_some_and(|answered| same_id(answered, id)) {
        return None;
    }
    let version = peek
        .result
        .and_then(|r| r.protocol_version)
        .and_then(|v| v.parse().ok());
    Some(version.map_or(InitializeOutcome::Failed, InitializeOutcome::Succeeded))
}

/// Whether two ids are the same JSON value however each is spelled: the inner service
/// re-serializes the id it answers, and may escape what the client did not (or, like a
/// JavaScript server, print `1e0` as `1`). Strings are compared decoded; two integers
/// exactly, whatever their size (as floats, big ones would collide); any other pair of
/// numbers as floats, so `1`, `1.0` and `1e0` are one id.
fn same_id(a: &RawValue, b: &RawValue) -> bool {
    let (a, b) = (a.get(), b.get());
    if a == b {
        return true;
    }
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(b'"'), Some(b'"')) => {
            // Without escapes the text is the value, and the texts differ.
            if !a.contains('\\') && !b.contains('\\') {
                return false;
            }
            match (serde_json::from_str::<String>(a), serde_json::from_str::<String>(b)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
        }
        (Some(b'-' | b'0'..=b'9'), Some(b'-' | b'0'..=b'9')) => same_number(a, b),
        _ => false,
    }
}

/// `a` and `b` are numbers spelled differently.
fn same_number(a: &str, b: &str) -> bool {
    let is_integer = |n: &str| !n.contains(['.', 'e', 'E']);
    match (is_integer(a), is_integer(b)) {
        // JSON integers have no leading zeros: two spellings of one are `0` and `-0`.
        (true, true) => matches!((a, b), ("0", "-0") | ("-0", "0")),
        _ => matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y),
    }
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
    fn null_id_is_an_invalid_request_not_a_notification() {
        for body in [
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","method":"ping","id" : null}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":null,"method":"b"}]"#,
        ] {
            assert_eq!(
                peek_body(body.as_bytes()).unwrap_err(),
                PeekError::InvalidRequest,
                "{body}"
            );
        }
        let p = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert!(matches!(p.kind, MessageKind::Notification { .. }));
        // A response may carry a null id: the error answering an unreadable request.
        let p = single(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#);
        assert!(matches!(p.kind, MessageKind::Response));
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
    fn params_of_any_shape_are_peeked_not_judged() {
        // Member types the layer does not expect are the inner service's to refuse.
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5,"_meta":7}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1,{"a":[]}]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"text"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":{}}}}"#,
        ] {
            let p = single(body);
            assert_eq!(p.method(), Some("tools/call"), "{body}");
            assert_eq!(p.modern.protocol_version, None, "{body}");
            assert_eq!(p.modern.name, None, "{body}");
        }
        // Escaped strings are decoded; the last duplicate member wins, as in a JSON object model.
        let p = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"a","name":"e\u0063ho","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":null}}}"#,
        );
        assert_eq!(p.modern.name.as_deref(), Some("echo"));
        assert_eq!(p.modern.protocol_version.as_deref(), Some("2026-07-28"));
        assert!(
            !p.modern.has_client_capabilities,
            "null capabilities are no capabilities"
        );
        let p = single(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#);
        assert_eq!(p.modern.name.as_deref(), Some("file:///a"));
        // Broken JSON inside params is still a parse error.
        assert_eq!(
            peek_body(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":}}"#).unwrap_err(),
            PeekError::Parse
        );
        let p = single(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":[]}"#);
        assert_eq!(p.initialize.unwrap().protocol_version, None);
    }

    #[test]
    fn trace_context_in_meta() {
        let p = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"traceparent":"00-ab-cd-01","tracestate":7,"baggage":"k=v"}}}"#,
        );
        let trace = p.trace.expect("a trace context");
        assert_eq!(trace.traceparent(), Some("00-ab-cd-01"));
        assert_eq!(trace.tracestate(), None, "not a string: left out");
        assert_eq!(trace.baggage(), Some("k=v"));
        assert!(
            single(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{}}}"#)
                .trace
                .is_none()
        );
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
    fn batch_items_that_are_arrays_are_invalid() {
        // Found by fuzzing: serde reads a struct from an array by position, so these
        // batches passed as a request, a notification and a response.
        for body in [
            r#"[["2.0","ping",1]]"#,
            r#"[["2.0","notifications/initialized"]]"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"},["2.0","b",2]]"#,
            r#"[["2.0",null,null,null,{}]]"#,
            r#"[[{"jsonrpc":"2.0","id":1,"method":"a"}]]"#,
            r#"[ [] ]"#,
        ] {
            assert_eq!(
                peek_body(body.as_bytes()).unwrap_err(),
                PeekError::InvalidRequest,
                "{body}"
            );
        }
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
    fn initialize_answers_match_ids_as_json_values() {
        let answer = |id: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"2025-11-25"}}}}"#).into_bytes()
        };
        let succeeded = Some(InitializeOutcome::Succeeded(ProtocolVersion::V2025_11_25));
        let same = [
            (r#""a/b""#, r#""a\/b""#),
            (r#""a""#, r#""\u0061""#),
            ("\"\u{e9}\"", r#""\u00e9""#),
            (r#""\ud83d\ude00""#, "\"\u{1f600}\""),
            ("0", "-0"),
            ("1.5", "15e-1"),
            ("1e0", "1.0"),
            ("1", "1e0"),
            ("1", "1.0"),
            ("123456789012345678901234567890", "123456789012345678901234567890"),
        ];
        for (sent, answered) in same {
            for (a, b) in [(sent, answered), (answered, sent)] {
                let id = RawValue::from_string(a.into()).unwrap();
                assert_eq!(initialize_outcome(&answer(b), &id), succeeded, "{a} and {b}");
            }
        }
        // Big integers are compared exactly, not as the floats they round to.
        let different = [
            (r#""a""#, r#""A""#),
            (r#""1""#, "1"),
            ("1", "2.0"),
            ("18446744073709551616", "18446744073709551617"),
            ("123456789012345678901234567890", "123456789012345678901234567891"),
            (r#""a\/b""#, r#""a\\/b""#),
        ];
        for (sent, answered) in different {
            for (a, b) in [(sent, answered), (answered, sent)] {
                let id = RawValue::from_string(a.into()).unwrap();
                assert_eq!(initialize_outcome(&answer(b), &id), None, "{a} and {b}");
            }
        }
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
