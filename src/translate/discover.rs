//! `initialize` in translation mode: the `server/discover` request the layer sends the
//! inner service, and the legacy `InitializeResult` built from its answer.
//!
//! `server/discover` (2026-07-28 `schema.ts`, `DiscoverResult`) gives the supported
//! versions, `capabilities`, optional `instructions`, and the server's identity in
//! `_meta["io.modelcontextprotocol/serverInfo"]` (there is no `serverInfo` member).

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::context::LegacyContext;
use super::raw::RawObject;
use super::request::{ModernRequest, layer_request};
use super::{META_SERVER_INFO, MODERN_VERSION, TranslateError};
use crate::ProtocolVersion;

/// What the layer itself serves a translated session, beyond what the inner service
/// offers. Each flag adds to the `InitializeResult` only what is true with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LayerCapabilities {
    /// The layer answers `logging/setLevel` and sends the level in `_meta`: with an
    /// inner `logging` capability, legacy logging works end to end.
    pub(crate) log_level: bool,
    /// The layer serves `resources/subscribe` from a `subscriptions/listen` stream.
    pub(crate) subscriptions: bool,
    /// The layer delivers list-changed notifications from a `subscriptions/listen`
    /// stream on the legacy GET stream.
    pub(crate) list_changed: bool,
}

/// The `server/discover` request for a session being initialized, with the modern
/// `_meta` of `ctx` (the client's declared capabilities and info: a server may tailor
/// its answer to them) and the layer-minted `id`.
pub(crate) fn discover_request(ctx: &LegacyContext<'_>, id: &RawValue) -> Result<ModernRequest, TranslateError> {
    layer_request(id, "server/discover", RawObject::new(), ctx)
}

/// The legacy revision the layer answers an `initialize` for `requested` with: the
/// client's own when the layer serves it, else the newest legacy revision (the legacy
/// negotiation rule: the server answers with a version it supports, the client
/// disconnects if it cannot use it).
pub(crate) fn negotiate(requested: ProtocolVersion) -> ProtocolVersion {
    if ProtocolVersion::LEGACY.contains(&requested) {
        requested
    } else {
        ProtocolVersion::LEGACY[ProtocolVersion::LEGACY.len() - 1]
    }
}

/// The legacy `InitializeResult` for `requested`, from the `result` of the inner
/// service's `server/discover` answer and what the layer serves itself.
///
/// Capabilities: only those every legacy revision defines with the same meaning, and
/// only when true through translation:
/// - `experimental`, `completions`, `prompts`, `resources`, `tools` as the inner
///   service declares them;
/// - `listChanged` flags only when the layer delivers list changes
///   ([`LayerCapabilities::list_changed`]), `resources.subscribe` only when it serves
///   subscriptions; both came from `subscriptions/listen` in 2026-07-28;
/// - `logging` only when the inner service logs and the layer handles `setLevel`;
/// - dropped: `extensions` (2026-07-28 only) and any key neither era defines — a
///   legacy client must not be promised what it cannot use.
///
/// `serverInfo` (required in every legacy revision) comes from the discovery's
/// `_meta`; a server that omits it (it SHOULD send it) is named `"unknown"` rather
/// than failing the handshake. `instructions` is kept when it is a string.
pub(crate) fn initialize_result(
    discover: &Value,
    requested: ProtocolVersion,
    layer: LayerCapabilities,
) -> Result<Value, TranslateError> {
    let supported = discover.get("supportedVersions").and_then(Value::as_array);
    if !supported.is_some_and(|versions| versions.iter().any(|v| v.as_str() == Some(MODERN_VERSION))) {
        return Err(TranslateError::NoModernVersion);
    }
    let Some(Value::Object(inner)) = discover.get("capabilities") else {
        return Err(TranslateError::InvalidDiscover);
    };
    let mut result = Map::new();
    result.insert(
        "protocolVersion".into(),
        Value::String(negotiate(requested).to_string()),
    );
    result.insert("capabilities".into(), Value::Object(legacy_capabilities(inner, layer)));
    let server_info = discover
        .get("_meta")
        .and_then(|meta| meta.get(META_SERVER_INFO))
        .filter(|info| {
            info.get("name").is_some_and(Value::is_string) && info.get("version").is_some_and(Value::is_string)
        })
        .cloned()
        .unwrap_or_else(|| json!({"name": "unknown", "version": "unknown"}));
    result.insert("serverInfo".into(), server_info);
    if let Some(instructions) = discover.get("instructions").filter(|v| v.is_string()) {
        result.insert("instructions".into(), instructions.clone());
    }
    Ok(Value::Object(result))
}

/// The legacy `ServerCapabilities` for the inner service's 2026-07-28 ones.
fn legacy_capabilities(inner: &Map<String, Value>, layer: LayerCapabilities) -> Map<String, Value> {
    let mut out = Map::new();
    let object = |key: &str| inner.get(key).and_then(Value::as_object);
    let flag = |features: &Map<String, Value>, key: &str| features.get(key).and_then(Value::as_bool) == Some(true);
    for key in ["experimental", "completions"] {
        if let Some(value) = object(key) {
            out.insert(key.into(), Value::Object(value.clone()));
        }
    }
    if object("logging").is_some() && layer.log_level {
        out.insert("logging".into(), Value::Object(Map::new()));
    }
    for key in ["prompts", "tools"] {
        if let Some(features) = object(key) {
            let mut mapped = Map::new();
            if layer.list_changed && flag(features, "listChanged") {
                mapped.insert("listChanged".into(), Value::Bool(true));
            }
            out.insert(key.into(), Value::Object(mapped));
        }
    }
    if let Some(features) = object("resources") {
        let mut mapped = Map::new();
        if layer.subscriptions && flag(features, "subscribe") {
            mapped.insert("subscribe".into(), Value::Bool(true));
        }
        if layer.list_changed && flag(features, "listChanged") {
            mapped.insert("listChanged".into(), Value::Bool(true));
        }
        out.insert("resources".into(), Value::Object(mapped));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ALL: LayerCapabilities = LayerCapabilities {
        log_level: true,
        subscriptions: true,
        list_changed: true,
    };

    fn discovery(capabilities: Value) -> Value {
        json!({
            "resultType": "complete",
            "supportedVersions": ["2026-07-28"],
            "capabilities": capabilities,
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "ExampleServer", "version": "1.0.0", "title": "Example"}},
            "instructions": "Prefer get_weather.",
            "ttlMs": 3600000,
            "cacheScope": "public"
        })
    }

    #[test]
    fn spec_example_becomes_an_initialize_result() {
        let d = discovery(json!({"tools": {}, "resources": {}}));
        let r = initialize_result(&d, ProtocolVersion::V2025_06_18, ALL).unwrap();
        assert_eq!(
            r,
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}, "resources": {}},
                "serverInfo": {"name": "ExampleServer", "version": "1.0.0", "title": "Example"},
                "instructions": "Prefer get_weather."
            })
        );
    }

    #[test]
    fn negotiation_keeps_supported_and_falls_back_to_newest() {
        let d = discovery(json!({}));
        for (asked, got) in [
            ("2025-03-26", "2025-03-26"),
            ("2025-06-18", "2025-06-18"),
            ("2025-11-25", "2025-11-25"),
            ("2024-11-05", "2025-11-25"),
            ("2025-09-09", "2025-11-25"),
            ("2026-07-28", "2025-11-25"),
        ] {
            let r = initialize_result(&d, asked.parse().unwrap(), ALL).unwrap();
            assert_eq!(r["protocolVersion"], got, "{asked}");
        }
    }

    #[test]
    fn capability_flags_need_the_layer_and_the_server() {
        let caps = json!({
            "logging": {}, "completions": {}, "experimental": {"x": {}},
            "prompts": {"listChanged": true}, "tools": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": true},
            "extensions": {"io.modelcontextprotocol/tasks": {}}, "vendor": {}
        });
        let d = discovery(caps);
        let r = initialize_result(&d, ProtocolVersion::V2025_11_25, ALL).unwrap();
        assert_eq!(
            r["capabilities"],
            json!({
                "experimental": {"x": {}}, "completions": {}, "logging": {},
                "prompts": {"listChanged": true}, "tools": {"listChanged": true},
                "resources": {"subscribe": true, "listChanged": true}
            })
        );
        let none = LayerCapabilities::default();
        let r = initialize_result(&d, ProtocolVersion::V2025_11_25, none).unwrap();
        assert_eq!(
            r["capabilities"],
            json!({"experimental": {"x": {}}, "completions": {}, "prompts": {}, "tools": {}, "resources": {}})
        );
        // The layer alone cannot make a capability the server lacks.
        let d = discovery(json!({"resources": {"subscribe": false}, "tools": {"listChanged": "yes"}}));
        let r = initialize_result(&d, ProtocolVersion::V2025_11_25, ALL).unwrap();
        assert_eq!(r["capabilities"], json!({"tools": {}, "resources": {}}));
    }

    #[test]
    fn missing_server_info_and_instructions() {
        let d = json!({"supportedVersions": ["2026-07-28"], "capabilities": {}, "instructions": 5,
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "x"}}});
        let r = initialize_result(&d, ProtocolVersion::V2025_03_26, ALL).unwrap();
        assert_eq!(r["serverInfo"], json!({"name": "unknown", "version": "unknown"}));
        assert!(r.get("instructions").is_none());
    }

    #[test]
    fn invalid_discoveries_are_errors() {
        let v = ProtocolVersion::V2025_11_25;
        let no_modern = json!({"supportedVersions": ["2027-01-01"], "capabilities": {}});
        assert_eq!(
            initialize_result(&no_modern, v, ALL).unwrap_err(),
            TranslateError::NoModernVersion
        );
        assert_eq!(
            initialize_result(&json!({}), v, ALL).unwrap_err(),
            TranslateError::NoModernVersion
        );
        assert_eq!(
            initialize_result(&json!([1]), v, ALL).unwrap_err(),
            TranslateError::NoModernVersion
        );
        let no_caps = json!({"supportedVersions": ["2026-07-28"], "capabilities": []});
        assert_eq!(
            initialize_result(&no_caps, v, ALL).unwrap_err(),
            TranslateError::InvalidDiscover
        );
    }

    #[test]
    fn discover_request_has_modern_meta_and_headers() {
        let caps = RawValue::from_string(r#"{"elicitation":{}}"#.into()).unwrap();
        let ctx = LegacyContext {
            version: ProtocolVersion::V2025_06_18,
            client_info: None,
            client_capabilities: Some(&caps),
            log_level: None,
        };
        let id = RawValue::from_string("18446744073709551616".into()).unwrap();
        let req = discover_request(&ctx, &id).unwrap();
        let body = std::str::from_utf8(&req.body).unwrap();
        assert!(body.contains(r#""id":18446744073709551616"#), "{body}");
        let v: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["method"], "server/discover");
        assert_eq!(
            v["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"],
            json!({"elicitation": {}})
        );
        assert_eq!(req.headers.get(crate::headers::MCP_METHOD).unwrap(), "server/discover");
        assert_eq!(
            req.headers.get(crate::headers::MCP_PROTOCOL_VERSION).unwrap(),
            "2026-07-28"
        );
    }
}
