//! Translation mode's mappings on arbitrary input (`src/translate/`).
//!
//! Invariants: never panics; every message a mapping produces is one JSON object; a
//! translated request keeps its id as written and names the modern protocol version;
//! an answer or an HTTP error translated for a client id carries that id; a retry
//! carries its new id and, when given, the request state exactly as written.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;
use tower_mcp_session::fuzzing::Translation;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    version: u8,
    capabilities: &'a str,
    client_info: &'a str,
    log_level: Option<String>,
    message: &'a [u8],
    method: &'a str,
    client_id: &'a str,
    status: u16,
    flags: u8,
    responses: Vec<(String, String)>,
    state: Option<&'a str>,
}

fn object(bytes: &[u8]) -> serde_json::Map<String, Value> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => map,
        Ok(other) => panic!("not an object: {other}"),
        // Members kept byte for byte may hold what a `Value` cannot (a lone surrogate
        // escape, a number beyond f64 such as an id `7e777`): still grammatical JSON.
        Err(_) => {
            let raw: Box<RawValue> = serde_json::from_slice(bytes)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)));
            assert!(raw.get().starts_with('{'), "not an object: {}", raw.get());
            serde_json::Map::new()
        }
    }
}

/// The `id` member of a JSON object, as written (`null` included: an `Option` field
/// would read a null id as no id).
fn raw_id(bytes: &[u8]) -> Option<&str> {
    let members: std::collections::BTreeMap<String, &RawValue> = serde_json::from_slice(bytes).ok()?;
    members.get("id").map(|id| id.get().trim())
}

fuzz_target!(|input: Input<'_>| {
    let t = Translation::new(input.version, input.capabilities, input.client_info, input.log_level);

    if let Ok((body, _headers)) = t.request(input.message) {
        let map = object(&body);
        if !map.is_empty() {
            assert_eq!(
                map["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
                "2026-07-28"
            );
        }
        assert_eq!(raw_id(&body), raw_id(input.message), "the id as written");
    }

    let client_id_ok = serde_json::from_str::<Box<RawValue>>(input.client_id).is_ok();
    if let Ok(Some(legacy)) = t.answer(input.message, input.method, input.client_id) {
        let map = object(&legacy);
        if client_id_ok && (map.contains_key("result") || map.contains_key("error")) {
            assert_eq!(raw_id(&legacy), Some(input.client_id.trim()), "the answer carries the client's id");
        }
    }

    if let Some(legacy) = t.http_error(input.status, input.message, input.client_id, input.method) {
        object(&legacy);
        assert_eq!(raw_id(&legacy), Some(input.client_id.trim()));
    }

    if let Some(result) = t.initialize_result(input.message, input.flags) {
        let map = object(&result);
        assert!(map["protocolVersion"].is_string());
        assert!(map["capabilities"].is_object());
    }

    if let Ok(retry) = t.retry(input.message, input.client_id, &input.responses, input.state) {
        object(&retry);
        assert_eq!(raw_id(&retry), Some(input.client_id.trim()));
        if let Some(state) = input.state {
            #[derive(serde::Deserialize)]
            struct P<'a> {
                #[serde(borrow)]
                params: Option<Q<'a>>,
            }
            #[derive(serde::Deserialize)]
            struct Q<'a> {
                #[serde(borrow, rename = "requestState")]
                request_state: Option<&'a RawValue>,
            }
            if let Ok(P { params: Some(Q { request_state: Some(s) }) }) = serde_json::from_slice::<P<'_>>(&retry) {
                assert_eq!(s.get().trim(), state.trim(), "the request state exactly as given");
            }
        }
    }
});
