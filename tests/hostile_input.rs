//! Whatever a client sends, the layer answers: no panic, no 5xx, no hang, and every
//! refusal is a JSON-RPC error body.

use mcp_test_support::http as support;

use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use http_body_util::Full;
use proptest::prelude::*;
use support::*;
use tower_mcp_session::McpSessionLayer;

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        Just(b"2025-06-18".to_vec()),
        Just(b"2026-07-28".to_vec()),
        Just(b"0000000000000000-1".to_vec()),
        Just(b"application/json, text/event-stream".to_vec()),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        Just(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#.to_vec()),
        Just(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"x"}]"#.to_vec()),
        Just(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":7}}}"#.to_vec()),
        Just(br#"{"jsonrpc":"2.0","id":{"a":1},"method":"initialize","params":[1,2]}"#.to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_never_5xx(
        method in prop_oneof![Just(Method::POST), Just(Method::GET), Just(Method::DELETE), Just(Method::PUT)],
        session in proptest::option::of(header_value()),
        version in proptest::option::of(header_value()),
        last_event in proptest::option::of(header_value()),
        accept in proptest::option::of(header_value()),
        strict in any::<bool>(),
        body in body(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let layer = McpSessionLayer::builder().strict_modern_headers(strict).build();
            let app = app(&layer);
            let mut b = Request::builder().method(method).uri("http://localhost/mcp").header("host", "localhost").header("content-type", "application/json");
            for (name, value) in [("mcp-session-id", &session), ("mcp-protocol-version", &version), ("last-event-id", &last_event), ("accept", &accept)] {
                if let Some(v) = value.as_ref().and_then(|v| HeaderValue::from_bytes(v).ok()) {
                    b = b.header(name, v);
                }
            }
            let (head, body) = call(&app, b.body(Full::new(Bytes::from(body))).unwrap()).await.into_parts();
            prop_assert!(!head.status.is_server_error(), "{}", head.status);
            let refused_by_layer: u64 = layer.manager().metrics().rejected.iter().map(|(_, n)| n).sum();
            if refused_by_layer > 0 {
                prop_assert!(head.status.is_client_error());
                let bytes = read_all(body).await;
                let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {bytes:?}")))?;
                prop_assert!(v["error"]["code"].is_i64());
            } else if head.headers.get("content-type").is_some_and(|c| c != "text/event-stream") {
                let _ = read_all(body).await;
            }
            Ok(())
        })?;
    }
}
