//! Properties of every mapping: no input makes one panic, and whatever one produces is
//! JSON. The layer bounds inputs by its body limit; these generate arbitrary JSON of
//! MCP-like shapes, and arbitrary bytes.

use http::StatusCode;
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::answer::{AnswerTo, InputRequired, LegacyMessage, to_legacy};
use super::context::LegacyContext;
use super::discover::{LayerCapabilities, initialize_result};
use super::http_error::{LegacyHttpError, http_error_to_legacy};
use super::mrtr::{InputResponse, input_response, legacy_request, retry_request};
use super::request::translate_request;
use crate::ProtocolVersion;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("tools/call".to_owned()),
            Just("resources/read".to_owned()),
            Just("input_required".to_owned()),
            Just("complete".to_owned()),
            Just("elicitation/create".to_owned()),
            Just("url".to_owned()),
            ".{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Keys the mappings look at, mixed with arbitrary ones, so the generator reaches the
/// interesting branches.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "jsonrpc",
            "id",
            "method",
            "params",
            "result",
            "error",
            "code",
            "message",
            "data",
            "_meta",
            "name",
            "uri",
            "resultType",
            "inputRequests",
            "requestState",
            "inputResponses",
            "mode",
            "tools",
            "outputSchema",
            "structuredContent",
            "capabilities",
            "supportedVersions",
            "elicitation",
            "sampling",
            "roots",
            "io.modelcontextprotocol/serverInfo",
            "io.modelcontextprotocol/subscriptionId",
        ])
        .prop_map(str::to_owned),
        ".{0,8}",
    ]
}

fn assert_json(bytes: &[u8]) {
    assert!(
        serde_json::from_slice::<Value>(bytes).is_ok(),
        "not JSON: {}",
        String::from_utf8_lossy(bytes)
    );
}

fn exercise(input: &[u8], value: Option<&Value>) {
    let caps =
        RawValue::from_string(r#"{"elicitation":{"url":{}},"sampling":{"tools":{}},"roots":{}}"#.into()).unwrap();
    let id = RawValue::from_string("123456789012345678901234567890".into()).unwrap();
    for version in ProtocolVersion::LEGACY {
        let ctx = LegacyContext {
            version,
            client_info: Some(&caps),
            client_capabilities: Some(&caps),
            log_level: Some("debug"),
        };
        if let Ok(req) = translate_request(input, &ctx) {
            assert_json(&req.body);
        }
        for method in ["tools/call", "resources/read", "tools/list", "prompts/get", "x"] {
            match to_legacy(input, &AnswerTo { method, client_id: &id }) {
                Ok(LegacyMessage::Answer(b) | LegacyMessage::Notification(b)) => assert_json(&b),
                Ok(LegacyMessage::InputRequired(InputRequired {
                    input_requests,
                    request_state,
                })) => {
                    for input in &input_requests {
                        if let Ok(req) = legacy_request(input, &id, &ctx) {
                            assert_json(&req.body);
                        }
                    }
                    let responses: Vec<_> = input_requests
                        .iter()
                        .map(|i| (i.key.clone(), RawValue::from_string("{}".into()).unwrap()))
                        .collect();
                    if let Ok(b) = retry_request(input, &id, &responses, request_state.as_deref()) {
                        assert_json(&b);
                    }
                }
                _ => {}
            }
            for status in [400, 404, 500] {
                if let LegacyHttpError::Answer(b) =
                    http_error_to_legacy(StatusCode::from_u16(status).unwrap(), input, &id, method)
                {
                    assert_json(&b);
                }
            }
        }
        let layer = LayerCapabilities {
            log_level: true,
            subscriptions: true,
            list_changed: true,
        };
        if let Some(value) = value
            && let Ok(result) = initialize_result(value, version, layer)
        {
            assert!(result["serverInfo"].is_object());
        }
    }
    match input_response(input) {
        Ok(InputResponse::Result(r) | InputResponse::Failed(r)) => {
            assert!(serde_json::from_str::<Value>(r.get()).is_ok())
        }
        Err(_) => {}
    }
    if let Ok(b) = retry_request(input, &id, &[], None) {
        assert_json(&b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn request_state_is_echoed_exactly(state in any::<String>(), key in ".{0,10}", id in any::<u64>()) {
        let result = serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": {
            "resultType": "input_required", "requestState": state,
            "inputRequests": {key.clone(): {"method": "roots/list"}}}});
        let client_id = RawValue::from_string(id.to_string()).unwrap();
        let to = AnswerTo { method: "tools/call", client_id: &client_id };
        let message = serde_json::to_vec(&result).unwrap();
        let Ok(LegacyMessage::InputRequired(InputRequired { input_requests, request_state })) = to_legacy(&message, &to) else {
            panic!("not input required");
        };
        prop_assert_eq!(input_requests.len(), 1);
        prop_assert_eq!(&input_requests[0].key, &key);
        let original = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#;
        let responses = vec![(key.clone(), RawValue::from_string(r#"{"roots":[]}"#.into()).unwrap())];
        let retry = retry_request(original, &client_id, &responses, request_state.as_deref()).unwrap();
        let v: Value = serde_json::from_slice(&retry).unwrap();
        prop_assert_eq!(&v["params"]["requestState"], &Value::String(state));
        prop_assert_eq!(&v["params"]["inputResponses"][&key], &serde_json::json!({"roots": []}));
        prop_assert_eq!(&v["id"], &Value::from(id));
    }

    #[test]
    fn header_names_round_trip(name in any::<String>()) {
        let value = super::header::name_value(&name);
        let text = value.to_str().unwrap();
        let decoded = match text.strip_prefix("=?base64?").and_then(|t| t.strip_suffix("?=")) {
            Some(encoded) if super::header::needs_encoding(&name) => String::from_utf8(base64_decode(encoded)).unwrap(),
            _ => text.to_owned(),
        };
        prop_assert_eq!(decoded, name);
    }

    #[test]
    fn random_json_never_panics(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        exercise(&bytes, Some(&value));
    }

    #[test]
    fn random_messages_never_panic(
        id in json_value(),
        method in prop::sample::select(vec!["tools/call", "resources/read", "prompts/get", "tools/list", "notifications/progress"]),
        params in json_value(),
        result in json_value(),
    ) {
        let request = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        exercise(&serde_json::to_vec(&request).unwrap(), None);
        let answer = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result});
        exercise(&serde_json::to_vec(&answer).unwrap(), None);
        let error = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": result});
        exercise(&serde_json::to_vec(&error).unwrap(), None);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        exercise(&bytes, None);
    }
}

#[test]
fn deep_nesting_is_carried_without_recursion() {
    // Members the mappings do not edit are skipped as raw text, not parsed into
    // values, so nesting far past serde_json's recursion limit is carried verbatim.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let body =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{deep}}}}}"#);
    let caps = RawValue::from_string(format!(r#"{{"roots":{{}},"experimental":{{"x":{deep}}}}}"#)).unwrap();
    let ctx = LegacyContext {
        version: ProtocolVersion::V2025_11_25,
        client_info: None,
        client_capabilities: Some(&caps),
        log_level: None,
    };
    let req = translate_request(body.as_bytes(), &ctx).unwrap();
    let text = std::str::from_utf8(&req.body).unwrap();
    assert!(text.contains(&format!(r#""arguments":{deep}"#)));
    // Capabilities are parsed; too deep to parse means nothing declared.
    assert!(
        text.contains(r#""io.modelcontextprotocol/clientCapabilities":{}"#),
        "{}",
        &text[text.len() - 300..]
    );
}

/// A test-only decoder for the sentinel encoding.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .map(|&c| if c == b'=' { 0 } else { u32::from(value(c)) })
            .fold(0u32, |acc, v| (acc << 6) | v);
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

#[test]
fn every_error_has_a_message_and_a_code() {
    use super::TranslateError::*;
    let all = [
        NotJson,
        NotJsonRpc,
        ParamsNotObject,
        MetaNotObject,
        MissingName,
        MethodNotHeaderSafe,
        UnknownResultType,
        InputRequiredNotAllowed,
        InvalidInputRequired,
        UnsupportedInputRequest,
        UndeclaredCapability("roots"),
        InvalidDiscover,
        NoModernVersion,
    ];
    let texts: std::collections::HashSet<String> = all.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), all.len(), "messages are distinct");
    assert_eq!(
        UndeclaredCapability("roots").to_string(),
        "client did not declare capability roots"
    );
    for e in &all {
        assert!([-32700, -32600, -32602, -32603].contains(&e.code()), "{e:?}");
    }
}
