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

mod scan;
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
    let env = match scan::envelope(raw) {
        Some(env) => env,
        None => serde_envelope(raw)?,
    };
    from_envelope(env)
}

/// The envelope as serde_json reads it: the reference the scan agrees with, and the
/// judge of every body the scan leaves to it.
fn serde_envelope(raw: &str) -> Result<Envelope<'_>, PeekError> {
    serde_json::from_str(raw).map_err(classify_error)
}

fn from_envelope(env: Envelope<'_>) -> Result<Peeked, PeekError> {
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
/// a notification: the client expects an answer the layer could not route as one. A
/// string id must be a Unicode string: the JSON grammar lets an escape name a lone
/// surrogate (RFC 8259, section 8.2), which no answer's id could be compared with.
fn valid_id(id: &RawValue) -> bool {
    let text = id.get();
    match text.as_bytes().first() {
        Some(b'"') => !text.contains('\\') || serde_json::from_str::<String>(text).is_ok(),
        // Most ids are short integers, which every float holds: no need to parse them.
        Some(b'-' | b'0'..=b'9') if is_short_integer(text) => true,
        // A number no float can hold (`1E999`) is one no answer could echo.
        Some(b'-' | b'0'..=b'9') => text.parse::<f64>().is_ok_and(f64::is_finite),
        _ => false,
    }
}

/// `-?[0-9]{1,15}`.
fn is_short_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
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
        // Within one unit in the last place: serde_json's default number reader rounds
        // an integer too wide for f64 to a neighbour of the nearest value, so an inner
        // service re-serializing it may print the next float over (found by the
        // `jsonrpc_peek` fuzz target).
        _ => matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y || neighbours(x, y)),
    }
}

/// Two finite floats of one sign, one unit in the last place apart.
fn neighbours(x: f64, y: f64) -> bool {
    x.is_finite()
        && y.is_finite()
        && x.is_sign_positive() == y.is_sign_positive()
        && x.to_bits().abs_diff(y.to_bits()) == 1
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
mod tests;
