//! 2026-07-28 requests (spec-digest §7B M2–M6, M8–M13, M19) and dual-era routing (§7D).

use mcp_test_support::http as support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use support::*;
use tower::ServiceExt;
use tower_mcp_session::{McpSessionLayer, RejectionKind};

const MODERN: &str = "2026-07-28";

fn modern_call(id: u64, method: &str, mut params: Value) -> Value {
    params["_meta"] = modern_meta();
    request(id, method, params)
}

/// A POST carrying every 2026-07-28 header for `body`.
fn modern_post(body: &Value) -> http::request::Builder {
    let mut b = post()
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", body["method"].as_str().unwrap());
    if let Some(name) = body.pointer("/params/name").and_then(Value::as_str) {
        b = b.header("mcp-name", name);
    }
    b
}

fn strict() -> App {
    app(&McpSessionLayer::builder().strict_modern_headers(true).build())
}

async fn answer(app: &App, req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, Bytes) {
    let (head, body) = call(app, req).await.into_parts();
    (head.status, head.headers, read_all(body).await)
}

/// [M2][M3][D2] a modern request is served whatever `Mcp-Session-Id` it carries, and no
/// session id is ever minted or echoed on a modern answer.
#[tokio::test]
async fn m2_m3_d2_session_header_ignored_never_minted() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let call_echo = modern_call(1, "tools/call", json!({"name": "echo", "arguments": {"message": "m"}}));
    for session in [None, Some("deadbeef"), Some("has space")] {
        let mut b = modern_post(&call_echo);
        if let Some(s) = session {
            b = b.header("mcp-session-id", s);
        }
        let (status, headers, body) = answer(&app, with_body(b, &call_echo)).await;
        assert_eq!(status, StatusCode::OK, "{session:?}");
        assert!(headers.get("mcp-session-id").is_none());
        assert_eq!(json(&body)["result"]["content"][0]["text"], "m");
    }
    let m = layer.manager().metrics();
    assert_eq!((m.sessions_created, m.modern_requests), (0, 3));
}

/// The inner service gets a modern request byte for byte, headers included.
#[tokio::test]
async fn modern_requests_pass_through_untouched() {
    let seen: Arc<Mutex<Option<(http::HeaderMap, Bytes)>>> = Arc::default();
    let s = seen.clone();
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let s = s.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            *s.lock().unwrap() = Some((parts.headers, bytes));
            let mut r = Response::new(Full::new(Bytes::from_static(
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
            )));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r.headers_mut()
                .insert("mcp-session-id", "inner-minted".parse().unwrap());
            Ok::<_, Infallible>(r)
        }
    });
    let svc = tower::ServiceBuilder::new()
        .layer(McpSessionLayer::new())
        .service(inner);
    let raw = Bytes::from_static(b"{ \"jsonrpc\":\"2.0\", \"id\":1, \"method\":\"tools/list\", \"params\":{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\",\"io.modelcontextprotocol/clientCapabilities\":{}}} }");
    let req = post()
        .header("mcp-protocol-version", MODERN)
        .header("mcp-session-id", "whatever")
        .header("last-event-id", "00000000000000ff-3")
        .body(Full::new(raw.clone()))
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("mcp-session-id").is_none(),
        "never echoed, even if the inner service sets one"
    );
    let (headers, bytes) = seen.lock().unwrap().take().unwrap();
    assert_eq!(bytes, raw);
    assert_eq!(headers["mcp-session-id"], "whatever");
    assert_eq!(headers["last-event-id"], "00000000000000ff-3");
}

/// [M4][M5] a modern-only endpoint answers GET and DELETE with 405 and `Allow: POST`.
#[tokio::test]
async fn m4_m5_modern_only_get_delete_405() {
    let app = app(&McpSessionLayer::builder().modern_only(true).build());
    for req in [
        empty(get()),
        empty(get().header("last-event-id", "00000000000000ff-1")),
        empty(delete()),
        empty(delete().header("mcp-session-id", "abc")),
    ] {
        let (status, headers, body) = answer(&app, req).await;
        assert_rejected(status, &body, 405, -32000, "method_not_allowed");
        assert_eq!(headers["allow"], "POST");
    }
}

/// [M6] `Last-Event-ID` on a modern POST is ignored: normal processing, no replay.
#[tokio::test]
async fn m6_last_event_id_ignored() {
    let app = app(&McpSessionLayer::new());
    let body = modern_call(3, "tools/list", json!({}));
    let (status, headers, bytes) = answer(
        &app,
        with_body(modern_post(&body).header("last-event-id", "00000000000000ff-1"), &body),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert!(json(&bytes)["result"]["tools"].is_array());
}

/// [M8]–[M12] strict validation of the 2026-07-28 headers.
#[tokio::test]
async fn m8_to_m12_strict_header_validation() {
    let app = strict();
    let echo = modern_call(9, "tools/call", json!({"name": "echo", "arguments": {"message": "x"}}));
    // [M8] no MCP-Protocol-Version (the body's _meta makes it modern).
    let no_header = bare_post()
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo");
    let (s, _, b) = answer(&app, with_body(no_header, &echo)).await;
    assert_rejected(s, &b, 400, -32020, "header_mismatch");
    assert_eq!(json(&b)["id"], 9);
    // [M9] header 2026-07-28, _meta 1900-01-01.
    let mut odd = echo.clone();
    odd["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("1900-01-01");
    let (s, _, b) = answer(&app, with_body(modern_post(&odd), &odd)).await;
    assert_rejected(s, &b, 400, -32020, "header_mismatch");
    // [M10] both 1900-01-01 → -32022 naming what is supported.
    let req = with_body(modern_post(&odd).header("mcp-protocol-version", "1900-01-01"), &odd);
    let mut req = req;
    req.headers_mut()
        .insert("mcp-protocol-version", "1900-01-01".parse().unwrap());
    let (s, _, b) = answer(&app, req).await;
    assert_rejected(s, &b, 400, -32022, "unsupported_protocol_version");
    let v = json(&b);
    assert_eq!(v["id"], 9);
    assert_eq!(v["error"]["data"]["requested"], "1900-01-01");
    assert!(
        v["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!(MODERN))
    );
    // [M11] missing _meta fields → -32602.
    for drop_field in [
        "io.modelcontextprotocol/protocolVersion",
        "io.modelcontextprotocol/clientCapabilities",
    ] {
        let mut missing = echo.clone();
        missing["params"]["_meta"].as_object_mut().unwrap().remove(drop_field);
        let (s, _, b) = answer(&app, with_body(modern_post(&echo), &missing)).await;
        if drop_field.ends_with("protocolVersion") {
            // Without _meta's version the body is not modern-shaped; the modern header
            // still routes it to modern validation.
            assert_eq!(s, StatusCode::BAD_REQUEST);
        }
        assert_rejected(s, &b, 400, -32602, "missing_request_meta");
    }
    // [M12] Mcp-Method missing or wrong, Mcp-Name missing or wrong.
    let cases: Vec<Request<Full<Bytes>>> = vec![
        with_body(
            post().header("mcp-protocol-version", MODERN).header("mcp-name", "echo"),
            &echo,
        ),
        with_body(
            post()
                .header("mcp-protocol-version", MODERN)
                .header("mcp-method", "tools/list")
                .header("mcp-name", "echo"),
            &echo,
        ),
        with_body(
            post()
                .header("mcp-protocol-version", MODERN)
                .header("mcp-method", "tools/call"),
            &echo,
        ),
        with_body(
            post()
                .header("mcp-protocol-version", MODERN)
                .header("mcp-method", "tools/call")
                .header("mcp-name", "other"),
            &echo,
        ),
        with_body(
            post()
                .header("mcp-protocol-version", MODERN)
                .header("mcp-method", "tools/call")
                .header("mcp-name", "=?base64?!!?="),
            &echo,
        ),
    ];
    for req in cases {
        let (s, _, b) = answer(&app, req).await;
        assert_rejected(s, &b, 400, -32020, "header_mismatch");
    }
    // All correct, and the base64 sentinel decoded before comparison.
    let (s, _, _) = answer(&app, with_body(modern_post(&echo), &echo)).await;
    assert_eq!(s, StatusCode::OK);
    let mut tool = echo.clone();
    tool["params"]["name"] = json!("échø");
    let req = with_body(
        post()
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", "tools/call")
            .header("mcp-name", "=?base64?w6ljaMO4?="),
        &tool,
    );
    let (s, _, b) = answer(&app, req).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    assert_eq!(
        json(&b)["error"]["code"],
        -32602,
        "reached the inner service, which knows no such tool"
    );
}

/// [M13] an unknown (or removed) method on a modern request → 404 + -32601 from the
/// server behind the layer.
#[tokio::test]
async fn m13_unknown_method_404() {
    let app = strict();
    for method in ["foo/bar", "ping"] {
        let body = modern_call(4, method, json!({}));
        let (s, _, b) = answer(&app, with_body(modern_post(&body), &body)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(json(&b)["error"]["code"], -32601);
    }
}

/// [M19] a modern-only endpoint refuses legacy initialize with 400 naming its versions;
/// a legacy request without any version header gets -32020 (header missing).
#[tokio::test]
async fn m19_modern_only_rejects_legacy() {
    let app = app(&McpSessionLayer::builder().modern_only(true).build());
    let (s, h, b) = send(&app, None, &initialize_body("2025-06-18")).await;
    assert_rejected(s, &b, 400, -32022, "unsupported_protocol_version");
    assert!(h.get("mcp-session-id").is_none());
    let v = json(&b);
    assert_eq!(v["error"]["data"]["supported"], json!([MODERN]));
    assert_eq!(v["error"]["data"]["requested"], "2025-06-18");
    assert_eq!(v["id"], 0);
    let (s, _, b) = send(&app, None, &request(1, "tools/list", json!({}))).await;
    assert_rejected(s, &b, 400, -32020, "header_mismatch");
    let req = with_body(
        post().header("mcp-protocol-version", "2025-06-18"),
        &request(1, "tools/list", json!({})),
    );
    let (s, _, b) = answer(&app, req).await;
    assert_rejected(s, &b, 400, -32022, "unsupported_protocol_version");
    let body = modern_call(2, "tools/list", json!({}));
    assert_eq!(
        answer(&app, with_body(modern_post(&body), &body)).await.0,
        StatusCode::OK
    );
}

/// [D1][D3][D4] one endpoint, both eras: initialize → legacy session; legacy header →
/// legacy validation; GET/DELETE with a modern header → the inner service decides.
#[tokio::test]
async fn d1_d3_d4_dual_era_routing() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    // [D1]
    let sid = initialize(&app, "2025-11-25").await;
    // [D3]
    let req = with_body(
        post().header("mcp-protocol-version", "2025-11-25"),
        &request(1, "tools/list", json!({})),
    );
    assert_eq!(answer(&app, req).await.0, StatusCode::BAD_REQUEST);
    let req = with_body(
        post()
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", "unknown"),
        &request(1, "tools/list", json!({})),
    );
    assert_eq!(answer(&app, req).await.0, StatusCode::NOT_FOUND);
    let req = with_body(
        post()
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", &sid),
        &request(1, "tools/list", json!({})),
    );
    assert_eq!(answer(&app, req).await.0, StatusCode::OK);
    // [D2] a modern request in the same process needs no session.
    let body = modern_call(2, "tools/list", json!({}));
    assert_eq!(
        answer(&app, with_body(modern_post(&body), &body)).await.0,
        StatusCode::OK
    );
    // [D4] GET/DELETE naming 2026-07-28 are the inner service's business (the echo server
    // has no GET endpoint and says 405); without a session header they would be 400.
    for req in [
        empty(get().header("mcp-protocol-version", MODERN)),
        empty(delete().header("mcp-protocol-version", MODERN)),
    ] {
        assert_eq!(answer(&app, req).await.0, StatusCode::METHOD_NOT_ALLOWED);
    }
    assert_eq!(answer(&app, empty(delete())).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(layer.manager().metrics().active_sessions, Some(1));
}

/// Without strict validation, malformed modern requests reach the inner service, which
/// owns that validation.
#[tokio::test]
async fn lenient_mode_leaves_validation_to_the_inner_service() {
    let app = app(&McpSessionLayer::new());
    let echo = modern_call(
        5,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "through"}}),
    );
    let req = with_body(post().header("mcp-protocol-version", MODERN), &echo);
    let (s, _, b) = answer(&app, req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&b)["result"]["content"][0]["text"], "through");
}

/// A 2026-era `initialize` is not a handshake: the inner service refuses the unknown
/// method (404, -32601); no session is minted.
#[tokio::test]
async fn modern_initialize_is_an_unknown_method() {
    let layer = McpSessionLayer::builder().strict_modern_headers(true).build();
    let app = app(&layer);
    let body = modern_call(7, "initialize", json!({}));
    let (s, h, b) = answer(&app, with_body(modern_post(&body), &body)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json(&b)["error"]["code"], -32601);
    assert!(h.get("mcp-session-id").is_none());
    assert_eq!(layer.manager().metrics().sessions_created, 0);
}

/// A version that is not even a date, the same in header and body: unsupported
/// (-32022), not a mismatch.
#[tokio::test]
async fn non_date_version_is_unsupported_not_mismatched() {
    let app = strict();
    let mut body = modern_call(8, "server/discover", json!({}));
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("v999.0.0");
    let mut req = with_body(modern_post(&body), &body);
    req.headers_mut()
        .insert("mcp-protocol-version", "v999.0.0".parse().unwrap());
    let (s, _, b) = answer(&app, req).await;
    assert_rejected(s, &b, 400, -32022, "unsupported_protocol_version");
    assert_eq!(json(&b)["error"]["data"]["requested"], "v999.0.0");
}

/// 2026-07-28 has no batches: a batch whose `MCP-Protocol-Version` names it is refused
/// with 400 / -32600 `batch_not_allowed` in every mode, and never reaches the inner
/// service.
#[tokio::test]
async fn modern_batch_is_not_allowed_in_any_mode() {
    let batch = json!([
        modern_call(1, "tools/list", json!({})),
        modern_call(2, "tools/list", json!({}))
    ]);
    let layers = [
        McpSessionLayer::new(),
        McpSessionLayer::builder().strict_modern_headers(true).build(),
        McpSessionLayer::builder().modern_only(true).build(),
    ];
    for layer in layers {
        let app = app(&layer);
        let req = with_body(post().header("mcp-protocol-version", MODERN), &batch);
        let (s, h, b) = answer(&app, req).await;
        assert_rejected(s, &b, 400, -32600, "batch_not_allowed");
        assert!(h.get("mcp-session-id").is_none());
        let m = layer.manager().metrics();
        assert_eq!((m.rejected(RejectionKind::BatchNotAllowed), m.modern_requests), (1, 0));
    }
}
