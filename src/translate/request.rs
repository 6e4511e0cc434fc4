//! A legacy request → the 2026-07-28 request the inner service is sent, and which
//! legacy messages never reach the inner service at all.

use std::borrow::Cow;

use bytes::Bytes;
use http::HeaderMap;
use http::HeaderValue;

use super::context::LegacyContext;
use super::header;
use super::raw::{self, RawObject};
use super::{MODERN_VERSION, TranslateError};
use crate::headers::{MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION};

/// Where a legacy message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegacyRoute {
    /// Translate it ([`translate_request`]) and send it to the inner service.
    Forward,
    /// The layer answers it (a request) or absorbs it (a notification) itself.
    ServeLocally(LocalKind),
}

/// What the layer does with a legacy message it serves itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalKind {
    /// `initialize`: answered from `server/discover` ([`super::discover`]).
    Initialize,
    /// `ping`: removed in 2026-07-28; answered with an empty result.
    Ping,
    /// `logging/setLevel`: removed in 2026-07-28; the level is recorded in the session
    /// and sent in every later request's `_meta`.
    SetLevel,
    /// `resources/subscribe`: removed in 2026-07-28; kept in the session and served
    /// through the layer's `subscriptions/listen`.
    Subscribe,
    /// `resources/unsubscribe`: as `Subscribe`.
    Unsubscribe,
    /// `notifications/initialized`: there is no handshake to complete in 2026-07-28.
    Initialized,
    /// `notifications/roots/list_changed`: removed in 2026-07-28. A modern server asks
    /// for roots inside each request that needs them (MRTR), so it never holds a stale
    /// list the notification would invalidate; nothing is sent on.
    RootsListChanged,
    /// `notifications/cancelled`: on Streamable HTTP, 2026-07-28 cancels a request by
    /// closing its response stream, so the layer drops the inner request's stream.
    Cancelled,
    /// Any other notification: 2026-07-28 defines no client → server notification
    /// over Streamable HTTP (transport page, "Sending Messages"), so there is nothing to
    /// forward it as; it is accepted and dropped (`notifications/progress` from a
    /// client, which only concerned server → client requests, is one of these).
    Discard,
    /// A request the layer refuses as an unknown method: `tasks/*` (2025-11-25 tasks
    /// moved to an extension with another protocol, and translation never advertises
    /// them), and `server/discover` / `subscriptions/listen`, which do not exist in any
    /// legacy revision and would bypass the session if forwarded.
    Unsupported,
}

/// Route a legacy message by its method; `is_request` says whether it has an id.
/// Responses (the client's answers to the layer's own requests) are not routed here:
/// the layer takes them before any translation.
pub(crate) fn route(method: &str, is_request: bool) -> LegacyRoute {
    use LocalKind::*;
    let local = |kind| LegacyRoute::ServeLocally(kind);
    if !is_request {
        return local(match method {
            "notifications/initialized" => Initialized,
            "notifications/roots/list_changed" => RootsListChanged,
            "notifications/cancelled" => Cancelled,
            _ => Discard,
        });
    }
    match method {
        "initialize" => local(Initialize),
        "ping" => local(Ping),
        "logging/setLevel" => local(SetLevel),
        "resources/subscribe" => local(Subscribe),
        "resources/unsubscribe" => local(Unsubscribe),
        "server/discover" | "subscriptions/listen" => local(Unsupported),
        m if m.starts_with("tasks/") => local(Unsupported),
        _ => LegacyRoute::Forward,
    }
}

/// A 2026-07-28 request, ready for the inner service.
#[derive(Debug, Clone)]
pub(crate) struct ModernRequest {
    /// The JSON-RPC body.
    pub(crate) body: Bytes,
    /// The headers to set on the POST (`MCP-Protocol-Version`, `Mcp-Method`, and
    /// `Mcp-Name` where the method has one). A retry of the request
    /// ([`super::mrtr::retry_request`]) keeps the same method and name, so the same
    /// headers.
    pub(crate) headers: HeaderMap,
}

/// Rewrite the legacy request `body` into a 2026-07-28 request for the session `ctx`.
///
/// Kept byte for byte: the id (string, number, or integer wider than 64 bits), the
/// method, every member of `params` and of `params._meta` (`progressToken`, trace
/// context) — except the per-request protocol fields, which come from the session
/// ([`LegacyContext::fill_meta`]), and `inputResponses` / `requestState`, which a
/// legacy client has no business sending: the layer alone runs the multi round-trip
/// requests of a translated session, and forwarding them would let a client replay
/// request state on a request it never got it for.
pub(crate) fn translate_request(body: &[u8], ctx: &LegacyContext<'_>) -> Result<ModernRequest, TranslateError> {
    let mut message = RawObject::from_slice(body)?;
    let method = message.get_str("method").ok_or(TranslateError::NotJsonRpc)?;
    if message.get("id").is_none_or(raw::is_null) {
        return Err(TranslateError::NotJsonRpc);
    }
    let mut params = message
        .object("params")
        .map_err(|()| TranslateError::ParamsNotObject)?
        .unwrap_or_default();
    params.remove("inputResponses");
    params.remove("requestState");
    let name = name_source(&method)
        .map(|field| params.get_str(field).ok_or(TranslateError::MissingName))
        .transpose()?;
    set_meta(&mut params, ctx)?;
    message.set_object("params", &params);
    Ok(ModernRequest {
        body: message.to_bytes(),
        headers: headers(&method, name.as_deref())?,
    })
}

/// Fill `params._meta` from `ctx`, keeping what else it holds.
pub(crate) fn set_meta(params: &mut RawObject<'_>, ctx: &LegacyContext<'_>) -> Result<(), TranslateError> {
    let mut meta = params
        .object("_meta")
        .map_err(|()| TranslateError::MetaNotObject)?
        .unwrap_or_default();
    ctx.fill_meta(&mut meta);
    params.set_object("_meta", &meta);
    Ok(())
}

/// The body member `Mcp-Name` mirrors, for the methods that have one (transport page,
/// "Standard Request Headers").
fn name_source(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// The 2026-07-28 request headers for `method` and its `Mcp-Name` source value.
pub(crate) fn headers(method: &str, name: Option<&str>) -> Result<HeaderMap, TranslateError> {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(MCP_PROTOCOL_VERSION, HeaderValue::from_static(MODERN_VERSION));
    headers.insert(MCP_METHOD, header::method_value(method)?);
    if let Some(name) = name {
        headers.insert(MCP_NAME, header::name_value(name));
    }
    Ok(headers)
}

/// A fresh request `{"jsonrpc","id","method","params":{"_meta":…}}` from the layer
/// itself (`server/discover`, `subscriptions/listen`), with `extra` params.
pub(crate) fn layer_request(
    id: &serde_json::value::RawValue,
    method: &str,
    extra: RawObject<'_>,
    ctx: &LegacyContext<'_>,
) -> Result<ModernRequest, TranslateError> {
    let mut params = extra;
    set_meta(&mut params, ctx)?;
    let mut message = RawObject::new();
    message.set("jsonrpc", Cow::Owned(raw::raw_string("2.0")));
    message.set("id", Cow::Owned(id.to_owned()));
    message.set("method", Cow::Owned(raw::raw_string(method)));
    message.set_object("params", &params);
    Ok(ModernRequest {
        body: message.to_bytes(),
        headers: headers(method, None)?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;
    use serde_json::{Value, json};

    use super::*;
    use crate::ProtocolVersion;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    fn translate(body: &str) -> Result<ModernRequest, TranslateError> {
        let caps = raw(r#"{"roots":{"listChanged":true},"sampling":{}}"#);
        let info = raw(r#"{"name":"legacy-client","version":"1.0"}"#);
        let ctx = LegacyContext {
            version: ProtocolVersion::V2025_06_18,
            client_info: Some(&info),
            client_capabilities: Some(&caps),
            log_level: Some("info"),
        };
        translate_request(body.as_bytes(), &ctx)
    }

    fn header<'h>(req: &'h ModernRequest, name: &http::HeaderName) -> Option<&'h str> {
        req.headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn tools_call_gets_meta_and_headers() {
        let req = translate(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_weather","arguments":{"location":"Seattle, WA","n":12345678901234567890123},"_meta":{"progressToken":"p1","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"a=b","baggage":"k=v"}}}"#,
        )
        .unwrap();
        let body = std::str::from_utf8(&req.body).unwrap();
        // Numbers the mapping does not touch keep their exact spelling.
        assert!(body.contains(r#""n":12345678901234567890123"#), "{body}");
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["id"], json!(7));
        assert_eq!(v["method"], "tools/call");
        assert_eq!(v["params"]["arguments"]["location"], "Seattle, WA");
        assert_eq!(
            v["params"]["_meta"],
            json!({
                "progressToken": "p1",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "tracestate": "a=b",
                "baggage": "k=v",
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {"roots": {}, "sampling": {}},
                "io.modelcontextprotocol/clientInfo": {"name": "legacy-client", "version": "1.0"},
                "io.modelcontextprotocol/logLevel": "info"
            })
        );
        assert_eq!(header(&req, &MCP_PROTOCOL_VERSION), Some("2026-07-28"));
        assert_eq!(header(&req, &MCP_METHOD), Some("tools/call"));
        assert_eq!(header(&req, &MCP_NAME), Some("get_weather"));
    }

    #[test]
    fn name_headers_per_method() {
        let req = translate(r#"{"jsonrpc":"2.0","id":"r-1","method":"resources/read","params":{"uri":"file:///projects/myapp/config.json"}}"#).unwrap();
        assert_eq!(header(&req, &MCP_NAME), Some("file:///projects/myapp/config.json"));
        let req = translate(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"Grüße"}}"#).unwrap();
        assert_eq!(header(&req, &MCP_NAME), Some("=?base64?R3LDvMOfZQ==?="));
        let req = translate(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":" x"}}"#).unwrap();
        assert_eq!(header(&req, &MCP_NAME), Some("=?base64?IHg=?="));
        let req = translate(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\u0007b"}}"#).unwrap();
        assert_eq!(header(&req, &MCP_NAME), Some("=?base64?YQdi?="));
        // Methods without a name get no Mcp-Name.
        let req = translate(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert_eq!(header(&req, &MCP_NAME), None);
        assert_eq!(header(&req, &MCP_METHOD), Some("tools/list"));
    }

    #[test]
    fn missing_params_get_a_params_object() {
        let req = translate(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            v["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
            "2026-07-28"
        );
        let req = translate(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":null}"#).unwrap();
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert!(v["params"]["_meta"].is_object());
    }

    #[test]
    fn ids_of_every_kind_are_kept_exactly() {
        for id in [
            "0",
            "-3",
            "\"abc\"",
            "\"\\u00e9\"",
            "123456789012345678901234567890",
            "1.5e3",
        ] {
            let req = translate(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping-like/x"}}"#)).unwrap();
            let body = std::str::from_utf8(&req.body).unwrap();
            assert!(body.contains(&format!(r#""id":{id}"#)), "{body}");
        }
    }

    #[test]
    fn smuggled_round_trip_state_is_removed() {
        let req = translate(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","inputResponses":{"k":{}},"requestState":"forged"}}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert!(v["params"].get("inputResponses").is_none());
        assert!(v["params"].get("requestState").is_none());
    }

    #[test]
    fn malformed_requests_are_errors() {
        use TranslateError::*;
        let cases = [
            ("not json", NotJson),
            ("[]", NotJson),
            (r#"{"jsonrpc":"2.0","method":"tools/list"}"#, NotJsonRpc),
            (r#"{"jsonrpc":"2.0","id":null,"method":"tools/list"}"#, NotJsonRpc),
            (r#"{"jsonrpc":"2.0","id":1}"#, NotJsonRpc),
            (r#"{"jsonrpc":"2.0","id":1,"method":5}"#, NotJsonRpc),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}"#,
                ParamsNotObject,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":"x"}}"#,
                MetaNotObject,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
                MissingName,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":3}}"#,
                MissingName,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}"#,
                MissingName,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/ca ll"}"#,
                MethodNotHeaderSafe,
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":"outil/é"}"#, MethodNotHeaderSafe),
        ];
        for (body, want) in cases {
            assert_eq!(translate(body).unwrap_err(), want, "{body}");
        }
        assert_eq!(NotJson.code(), -32700);
        assert_eq!(NotJsonRpc.code(), -32600);
        assert_eq!(MissingName.code(), -32602);
    }

    #[test]
    fn routes() {
        use LegacyRoute::*;
        use LocalKind::*;
        let requests = [
            ("initialize", ServeLocally(Initialize)),
            ("ping", ServeLocally(Ping)),
            ("logging/setLevel", ServeLocally(SetLevel)),
            ("resources/subscribe", ServeLocally(Subscribe)),
            ("resources/unsubscribe", ServeLocally(Unsubscribe)),
            ("tasks/get", ServeLocally(Unsupported)),
            ("tasks/list", ServeLocally(Unsupported)),
            ("server/discover", ServeLocally(Unsupported)),
            ("subscriptions/listen", ServeLocally(Unsupported)),
            ("tools/call", Forward),
            ("tools/list", Forward),
            ("resources/read", Forward),
            ("resources/templates/list", Forward),
            ("prompts/get", Forward),
            ("completion/complete", Forward),
            ("x-vendor/anything", Forward),
        ];
        for (method, want) in requests {
            assert_eq!(route(method, true), want, "{method}");
        }
        let notifications = [
            ("notifications/initialized", ServeLocally(Initialized)),
            ("notifications/roots/list_changed", ServeLocally(RootsListChanged)),
            ("notifications/cancelled", ServeLocally(Cancelled)),
            ("notifications/progress", ServeLocally(Discard)),
            ("notifications/x-vendor", ServeLocally(Discard)),
            ("tools/call", ServeLocally(Discard)),
        ];
        for (method, want) in notifications {
            assert_eq!(route(method, false), want, "{method}");
        }
    }

    #[test]
    fn layer_requests_carry_the_session_meta() {
        let ctx = LegacyContext {
            version: ProtocolVersion::V2025_03_26,
            client_info: None,
            client_capabilities: None,
            log_level: None,
        };
        let id = raw(r#""layer-1""#);
        let req = layer_request(&id, "server/discover", RawObject::new(), &ctx).unwrap();
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc": "2.0", "id": "layer-1", "method": "server/discover", "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}
            }}})
        );
        assert_eq!(header(&req, &MCP_METHOD), Some("server/discover"));
    }
}
