//! 2025-era session semantics (spec-digest §7C L1–L8, L16 and §7A A1–A10), driven with
//! `tower::ServiceExt::oneshot`. Each test names the checklist items it covers.

use mcp_test_support::http as support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use support::counting::CountingStore;
use support::*;
use tower::ServiceExt;
use tower_mcp_session::store::MemoryStore;
use tower_mcp_session::{CloseReason, McpSessionLayer, Principal, RejectionKind};

fn layer() -> McpSessionLayer {
    McpSessionLayer::new()
}

/// [L1] initialize mints a session id on the InitializeResult response, and only there.
#[tokio::test]
async fn l1_initialize_mints_session_id_only_on_initialize() {
    let layer = layer();
    let app = app(&layer);
    for version in ["2025-03-26", "2025-06-18", "2025-11-25"] {
        let (status, headers, body) = send(&app, None, &initialize_body(version)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(json(&body)["result"]["protocolVersion"], version);
        let sid = headers["mcp-session-id"].to_str().unwrap().to_owned();
        let (status, headers, _) = send(&app, Some(&sid), &request(1, "tools/list", json!({}))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            headers.get("mcp-session-id").is_none(),
            "ids only on initialize responses"
        );
    }
    assert_eq!(layer.manager().metrics().sessions_created, 3);
}

/// [L1] an initialize answered as SSE gets the session id too, and the stream is intact.
#[tokio::test]
async fn l1_initialize_answered_with_sse() {
    let layer = layer();
    let inner = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        let body = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n\
                    event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"serverInfo\":{\"name\":\"s\",\"version\":\"1\"}}}\n\n";
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        Ok::<_, Infallible>(r)
    });
    let svc = tower::ServiceBuilder::new().layer(layer.clone()).service(inner);
    let resp = svc
        .oneshot(with_body(post(), &initialize_body("2025-11-25")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("mcp-session-id").is_some());
    let (_, body) = resp.into_parts();
    let body = http_body_util::BodyExt::collect(body).await.unwrap().to_bytes();
    let messages = sse_messages(&body);
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(layer.manager().metrics().active_sessions, Some(1));
}

/// [L1] the answer to initialize is found by its id as a JSON value: an inner service
/// that spells the request's id another way (escaped) still gets the session minted.
#[tokio::test]
async fn l1_initialize_answer_id_matched_as_json_value() {
    for (sent, answered) in [(json!("a/b"), r#""a\/b""#), (json!("a"), r#""\u0061""#)] {
        let layer = layer();
        let answer = format!(
            r#"{{"jsonrpc":"2.0","id":{answered},"result":{{"protocolVersion":"2025-11-25","capabilities":{{}},"serverInfo":{{"name":"s","version":"1"}}}}}}"#
        );
        let inner = tower::service_fn(move |_req: Request<Full<Bytes>>| {
            let answer = answer.clone();
            async move {
                let mut r = Response::new(Full::new(Bytes::from(answer)));
                r.headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                Ok::<_, Infallible>(r)
            }
        });
        let svc = tower::ServiceBuilder::new().layer(layer.clone()).service(inner);
        let mut init = initialize_body("2025-11-25");
        init["id"] = sent;
        let resp = svc.oneshot(with_body(post(), &init)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get("mcp-session-id").is_some(), "{answered}");
        assert_eq!(layer.manager().metrics().sessions_created, 1, "{answered}");
    }
}

/// A failed initialize (JSON-RPC error, HTTP error, non-InitializeResult) leaves nothing behind.
#[tokio::test]
async fn failed_initialize_leaves_nothing_behind() {
    let answers: Vec<(u16, &str)> = vec![
        (
            200,
            r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32602,"message":"unsupported"}}"#,
        ),
        (
            500,
            r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#,
        ),
        (200, r#"{"jsonrpc":"2.0","id":0,"result":{"capabilities":{}}}"#),
        (
            200,
            r#"{"jsonrpc":"2.0","id":99,"result":{"protocolVersion":"2025-06-18"}}"#,
        ),
    ];
    for (status, body) in answers {
        let layer = McpSessionLayer::builder().max_sessions(Some(1)).build();
        let inner = tower::service_fn(move |_req: Request<Full<Bytes>>| async move {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok::<_, Infallible>(r)
        });
        let svc = tower::ServiceBuilder::new().layer(layer.clone()).service(inner);
        for _ in 0..3 {
            // With a cap of one, a leaked reservation would turn the second try into 503.
            let resp = svc
                .clone()
                .oneshot(with_body(post(), &initialize_body(LEGACY)))
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), status);
            assert!(resp.headers().get("mcp-session-id").is_none(), "no id for {body}");
        }
        let m = layer.manager().metrics();
        assert_eq!((m.sessions_created, m.active_sessions), (0, Some(0)), "{body}");
    }
}

/// [L2] ids: visible ASCII, 128 bits of randomness (32 hex chars), all distinct; a
/// client-chosen id is never adopted.
#[tokio::test]
async fn l2_session_ids_are_random_visible_ascii_and_never_client_chosen() {
    let layer = layer();
    let app = app(&layer);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..500 {
        let sid = initialize(&app, LEGACY).await;
        assert_eq!(sid.len(), 32);
        assert!(sid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert!(seen.insert(sid));
    }
    let chosen = "attacker-chosen-id";
    let (status, headers, _) = send(&app, Some(chosen), &initialize_body(LEGACY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(headers["mcp-session-id"], chosen);
    let (status, _, body) = send(&app, Some(chosen), &request(1, "ping", json!({}))).await;
    assert_rejected(status, &body, 404, -32001, "session_not_found");
}

/// [L3] non-initialize POST, GET and DELETE without a session → 400.
#[tokio::test]
async fn l3_missing_session_is_400_on_every_method() {
    let app = app(&layer());
    let (status, _, body) = send(&app, None, &request(7, "tools/list", json!({}))).await;
    assert_rejected(status, &body, 400, -32000, "session_id_required");
    assert_eq!(json(&body)["id"], 7, "the request id is echoed when known");
    for req in [empty(get()), empty(delete())] {
        let (head, body) = call(&app, req).await.into_parts();
        let body = read_all(body).await;
        assert_rejected(head.status, &body, 400, -32000, "session_id_required");
        assert_eq!(json(&body)["id"], Value::Null);
    }
}

/// Malformed ids → 400 before any store lookup.
#[tokio::test]
async fn malformed_session_id_is_400_without_store_lookup() {
    let store = CountingStore::new(MemoryStore::new());
    let layer = McpSessionLayer::builder().store(store.clone()).build();
    let app = app(&layer);
    let long = "a".repeat(257);
    for bad in ["has space", long.as_str(), "tab\there"] {
        let req = with_body(post().header("mcp-session-id", bad), &request(1, "ping", json!({})));
        let (head, body) = call(&app, req).await.into_parts();
        assert_rejected(head.status, &read_all(body).await, 400, -32000, "malformed_session_id");
    }
    let non_ascii = http::HeaderValue::from_bytes("é".as_bytes()).unwrap();
    let req = with_body(
        post().header("mcp-session-id", non_ascii),
        &request(1, "ping", json!({})),
    );
    assert_eq!(call(&app, req).await.status(), 400);
    let twice = with_body(
        post().header("mcp-session-id", "a").header("mcp-session-id", "b"),
        &request(1, "ping", json!({})),
    );
    assert_eq!(call(&app, twice).await.status(), 400);
    assert_eq!(store.acquires(), 0, "no lookup for a malformed id");
}

/// [L4][L5] unknown → 404 -32001; after 404 a new initialize gives a different id and
/// the old one stays 404.
#[tokio::test]
async fn l4_l5_unknown_session_404_and_reinitialize() {
    let layer = layer();
    let app = app(&layer);
    let (status, _, body) = send(
        &app,
        Some("0123456789abcdef0123456789abcdef"),
        &request(1, "ping", json!({})),
    )
    .await;
    assert_rejected(status, &body, 404, -32001, "session_not_found");
    let old = initialize(&app, LEGACY).await;
    assert!(
        layer
            .manager()
            .close(&tower_mcp_session::SessionId::parse(&old).unwrap())
            .await
            .unwrap()
    );
    let (status, _, body) = send(&app, Some(&old), &request(2, "ping", json!({}))).await;
    assert_rejected(status, &body, 404, -32001, "session_not_found");
    let new = initialize(&app, LEGACY).await;
    assert_ne!(new, old);
    assert_eq!(
        send(&app, Some(&new), &request(3, "ping", json!({}))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, Some(&old), &request(4, "ping", json!({}))).await.0,
        StatusCode::NOT_FOUND
    );
}

/// [L6] DELETE: valid → 200 and then 404 everywhere; unknown → 404; missing → 400.
#[tokio::test]
async fn l6_delete_ends_the_session() {
    let closed = Arc::new(AtomicUsize::new(0));
    let c = closed.clone();
    let layer = McpSessionLayer::builder()
        .on_session_closed(move |_, reason| {
            assert_eq!(reason, CloseReason::Deleted);
            c.fetch_add(1, Ordering::SeqCst);
        })
        .build();
    let app = app(&layer);
    let sid = initialize(&app, LEGACY).await;
    let resp = call(&app, empty(delete().header("mcp-session-id", &sid))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    for req in [
        with_body(post().header("mcp-session-id", &sid), &request(1, "ping", json!({}))),
        empty(get().header("mcp-session-id", &sid)),
        empty(delete().header("mcp-session-id", &sid)),
    ] {
        let (head, body) = call(&app, req).await.into_parts();
        assert_rejected(head.status, &read_all(body).await, 404, -32001, "session_not_found");
    }
    assert_eq!(closed.load(Ordering::SeqCst), 1, "close hook fires once");
    assert_eq!(layer.manager().metrics().closed(CloseReason::Deleted), 1);
}

/// [L6] a server that does not allow client termination answers DELETE with 405.
#[tokio::test]
async fn l6_delete_405_when_termination_not_allowed() {
    let layer = McpSessionLayer::builder().client_termination(false).build();
    let app = app(&layer);
    let sid = initialize(&app, LEGACY).await;
    let (head, body) = call(&app, empty(delete().header("mcp-session-id", &sid)))
        .await
        .into_parts();
    assert_rejected(head.status, &read_all(body).await, 405, -32000, "method_not_allowed");
    assert_eq!(head.headers["allow"], "GET, POST");
    assert_eq!(
        send(&app, Some(&sid), &request(1, "ping", json!({}))).await.0,
        StatusCode::OK,
        "session survives"
    );
}

/// [L7][L8] invalid or unsupported MCP-Protocol-Version → 400; absent → accepted.
#[tokio::test]
async fn l7_l8_protocol_version_header() {
    let app = app(&layer());
    let sid = initialize(&app, LEGACY).await;
    for bad in ["1999-01-01", "garbage", "2024-11-05"] {
        let req = with_body(
            post()
                .header("mcp-session-id", &sid)
                .header("mcp-protocol-version", bad),
            &request(1, "ping", json!({})),
        );
        let (head, body) = call(&app, req).await.into_parts();
        let body = read_all(body).await;
        assert_rejected(head.status, &body, 400, -32000, "unsupported_protocol_version");
        assert!(
            json(&body)["error"]["data"]["supported"]
                .as_array()
                .unwrap()
                .contains(&json!("2025-06-18"))
        );
    }
    for good in [None, Some("2025-06-18"), Some("2025-11-25")] {
        let mut b = post().header("mcp-session-id", &sid);
        if let Some(v) = good {
            b = b.header("mcp-protocol-version", v);
        }
        assert_eq!(
            call(&app, with_body(b, &request(1, "ping", json!({})))).await.status(),
            StatusCode::OK
        );
    }
}

/// [L16][A9] a session is bound to the principal that created it; another principal
/// (or none) gets the same 404 as an unknown id.
#[tokio::test]
async fn l16_session_bound_to_principal() {
    let layer = layer();
    let app = app(&layer);
    let req = with_body(post().extension(Principal::new("alice")), &initialize_body(LEGACY));
    let resp = call(&app, req).await;
    let sid = resp.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let ping = || request(1, "ping", json!({}));
    let as_alice = with_body(
        post().header("mcp-session-id", &sid).extension(Principal::new("alice")),
        &ping(),
    );
    assert_eq!(call(&app, as_alice).await.status(), StatusCode::OK);
    let as_bob = with_body(
        post().header("mcp-session-id", &sid).extension(Principal::new("bob")),
        &ping(),
    );
    let (head, body) = call(&app, as_bob).await.into_parts();
    let bob_body = read_all(body).await;
    assert_rejected(head.status, &bob_body, 404, -32001, "session_not_found");
    let anonymous = with_body(post().header("mcp-session-id", &sid), &ping());
    assert_eq!(call(&app, anonymous).await.status(), StatusCode::NOT_FOUND);
    // Indistinguishable from an unknown id: same status, same body.
    let unknown = with_body(
        post()
            .header("mcp-session-id", "unknown")
            .extension(Principal::new("bob")),
        &ping(),
    );
    let (_, body) = call(&app, unknown).await.into_parts();
    assert_eq!(read_all(body).await, bob_body);
    // Bob could not DELETE alice's session either.
    let del = empty(delete().header("mcp-session-id", &sid).extension(Principal::new("bob")));
    assert_eq!(call(&app, del).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(layer.manager().metrics().active_sessions, Some(1));
}

/// [A1][A2] a present, disallowed Origin → 403 on every method, for every revision,
/// and the inner service never runs.
#[tokio::test]
async fn a1_a2_foreign_origin_is_403_on_every_method() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let layer = layer();
    let counting = tower::service_fn(move |req: Request<Full<Bytes>>| {
        c.fetch_add(1, Ordering::SeqCst);
        echo::handle(EchoOptions::default(), req).map(Ok::<_, Infallible>)
    });
    use futures_util::FutureExt;
    let app: App =
        tower::util::BoxCloneSyncService::new(tower::ServiceBuilder::new().layer(layer.clone()).service(counting));
    let sid = initialize(&app, "2025-03-26").await;
    let before = calls.load(Ordering::SeqCst);
    let evil = "http://evil.example";
    for req in [
        with_body(post().header("origin", evil), &initialize_body(LEGACY)),
        with_body(
            post().header("origin", evil).header("mcp-session-id", &sid),
            &request(1, "tools/call", json!({"name":"echo","arguments":{"message":"x"}})),
        ),
        with_body(
            post()
                .header("origin", evil)
                .header("mcp-protocol-version", "2026-07-28"),
            &request(1, "tools/list", json!({"_meta": modern_meta()})),
        ),
        empty(get().header("origin", evil).header("mcp-session-id", &sid)),
        empty(delete().header("origin", evil).header("mcp-session-id", &sid)),
    ] {
        let (head, body) = call(&app, req).await.into_parts();
        let body = read_all(body).await;
        assert_rejected(head.status, &body, 403, -32000, "forbidden_origin");
        assert_eq!(json(&body)["id"], Value::Null);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "no request reached the inner service"
    );
    let ok = with_body(
        post()
            .header("origin", "http://localhost:5173")
            .header("mcp-session-id", &sid),
        &request(1, "ping", json!({})),
    );
    assert_eq!(call(&app, ok).await.status(), StatusCode::OK);
}

/// [A3] DNS rebinding: a foreign Host is refused, loopback hosts are served, and a
/// configured host is served.
#[tokio::test]
async fn a3_host_allow_list() {
    let app = app(&layer());
    let init = initialize_body(LEGACY);
    let foreign = with_body(
        post()
            .header("host", "evil.example")
            .header("origin", "http://evil.example"),
        &init,
    );
    let (head, body) = call(&app, foreign).await.into_parts();
    assert_rejected(head.status, &read_all(body).await, 403, -32000, "forbidden_origin");
    let foreign_host = Request::post("/mcp")
        .header("host", "evil.example:8080")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(init.to_string())))
        .unwrap();
    let (head, body) = call(&app, foreign_host).await.into_parts();
    assert_rejected(head.status, &read_all(body).await, 403, -32000, "forbidden_host");
    // Not host names, though they end in `.localhost` (found by fuzzing).
    for host in ["evil.example/.localhost", "evil.example#.localhost", "evil@.localhost"] {
        let req = Request::post("/mcp")
            .header("host", host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Full::new(Bytes::from(init.to_string())))
            .unwrap();
        let (head, body) = call(&app, req).await.into_parts();
        assert_rejected(head.status, &read_all(body).await, 403, -32000, "forbidden_host");
    }
    for host in ["localhost:8080", "127.0.0.1:1234", "[::1]:80"] {
        let req = Request::post("/mcp")
            .header("host", host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Full::new(Bytes::from(init.to_string())))
            .unwrap();
        assert_eq!(call(&app, req).await.status(), StatusCode::OK, "{host}");
    }
    let public = app_with(
        &McpSessionLayer::builder().allow_host("mcp.example.com").build(),
        EchoOptions::default(),
    );
    let req = Request::post("/mcp")
        .header("host", "mcp.example.com")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(init.to_string())))
        .unwrap();
    assert_eq!(call(&public, req).await.status(), StatusCode::OK);
}

/// [A4][A5] requests → application/json; notifications and responses → 202, empty body.
#[tokio::test]
async fn a4_a5_content_types_and_202() {
    let app = app(&layer());
    let sid = initialize(&app, LEGACY).await;
    let (status, headers, body) = send(
        &app,
        Some(&sid),
        &request(1, "tools/call", json!({"name": "echo", "arguments": {"message": "hi"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(json(&body)["result"]["content"][0]["text"], "hi");
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, body) = send(&app, Some(&sid), &note).await;
    assert_eq!((status, body.len()), (StatusCode::ACCEPTED, 0));
    let response = json!({"jsonrpc": "2.0", "id": 5, "result": {}});
    let (status, _, body) = send(&app, Some(&sid), &response).await;
    assert_eq!((status, body.len()), (StatusCode::ACCEPTED, 0));
}

/// [A6] a notification the server cannot accept (no session) → 400, error without id.
#[tokio::test]
async fn a6_unacceptable_notification_is_4xx_without_id() {
    let app = app(&layer());
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, body) = send(&app, None, &note).await;
    assert_rejected(status, &body, 400, -32000, "session_id_required");
    assert_eq!(json(&body)["id"], Value::Null);
}

/// [A7] batches: rejected outside 2025-03-26 sessions; accepted within them.
#[tokio::test]
async fn a7_batches_only_for_2025_03_26() {
    let app = app(&layer());
    let batch = json!([request(1, "ping", json!({})), request(2, "tools/list", json!({}))]);
    let modern_session = initialize(&app, "2025-06-18").await;
    let (status, _, body) = send(&app, Some(&modern_session), &batch).await;
    assert_rejected(status, &body, 400, -32600, "batch_not_allowed");

    let old = initialize(&app, "2025-03-26").await;
    let (status, _, body) = send(&app, Some(&old), &batch).await;
    assert_eq!(status, StatusCode::OK);
    let answers = json(&body);
    assert_eq!(answers.as_array().unwrap().len(), 2, "one response per request");
    let notes = json!([{"jsonrpc": "2.0", "method": "notifications/initialized"}, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}]);
    assert_eq!(send(&app, Some(&old), &notes).await.0, StatusCode::ACCEPTED);
    let with_init = json!([initialize_body("2025-03-26")]);
    let (status, _, body) = send(&app, Some(&old), &with_init).await;
    assert_rejected(status, &body, 400, -32600, "batch_not_allowed");
    let req = with_body(
        post()
            .header("mcp-session-id", &old)
            .header("mcp-protocol-version", "2025-06-18"),
        &batch,
    );
    assert_eq!(call(&app, req).await.status(), StatusCode::BAD_REQUEST);
}

/// A request with `"id": null` is an invalid request (400, -32600), alone or in a
/// batch, never a notification; a message without `id` still is one, and a response may
/// carry a null id.
#[tokio::test]
async fn null_id_request_is_invalid_not_a_notification() {
    let layer = layer();
    let app = app(&layer);
    let sid = initialize(&app, "2025-03-26").await;
    let null_id = json!({"jsonrpc": "2.0", "id": null, "method": "ping"});
    let (status, _, body) = send(&app, Some(&sid), &null_id).await;
    assert_rejected(status, &body, 400, -32600, "invalid_request");
    let batch = json!([request(1, "ping", json!({})), null_id]);
    let (status, _, body) = send(&app, Some(&sid), &batch).await;
    assert_rejected(status, &body, 400, -32600, "invalid_request");
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(send(&app, Some(&sid), &note).await.0, StatusCode::ACCEPTED);
    let answer = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}});
    assert_eq!(send(&app, Some(&sid), &answer).await.0, StatusCode::ACCEPTED);
    assert_eq!(layer.manager().metrics().rejected(RejectionKind::InvalidRequest), 2);
}

/// A body that arrives in several frames (an empty one among them) reaches the inner
/// service byte for byte, and one exactly at the size limit is accepted.
#[tokio::test]
async fn bodies_in_several_frames_arrive_whole() {
    let message = "x".repeat(300);
    let call = request(
        7,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": message}}),
    )
    .to_string();
    let layer = McpSessionLayer::builder().max_body_bytes(call.len()).build();
    let sid = initialize(&app(&layer), LEGACY).await;
    let svc = tower::ServiceBuilder::new()
        .layer(layer.clone())
        .service(echo::echo_service(EchoOptions::default()));
    let bytes = Bytes::from(call);
    let frames = [
        bytes.slice(..10),
        Bytes::new(),
        bytes.slice(10..200),
        bytes.slice(200..),
    ];
    let stream = futures_util::stream::iter(frames.map(|f| Ok::<_, Infallible>(http_body::Frame::data(f))));
    let req = Request::post("/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .body(http_body_util::StreamBody::new(stream))
        .unwrap();
    let response = svc.oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json(&read_all(response.into_body()).await);
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["result"]["content"][0]["text"], message);
}

/// [A10] Accept → 406, Content-Type → 415, size → 413, JSON → -32700 / -32600.
#[tokio::test]
async fn a10_transport_errors() {
    let layer = McpSessionLayer::builder().max_body_bytes(1024).build();
    let app = app(&layer);
    let sid = initialize(&app, LEGACY).await;
    let ping = request(1, "ping", json!({}));
    let cases: Vec<(Request<Full<Bytes>>, u16, i64, &str)> = vec![
        (
            with_body(bare_post().header("content-type", "application/json"), &ping),
            406,
            -32000,
            "not_acceptable",
        ),
        (
            with_body(
                bare_post()
                    .header("content-type", "application/json")
                    .header("accept", "application/json"),
                &ping,
            ),
            406,
            -32000,
            "not_acceptable",
        ),
        (
            with_body(
                bare_post()
                    .header("content-type", "application/json")
                    .header("accept", "text/event-stream"),
                &ping,
            ),
            406,
            -32000,
            "not_acceptable",
        ),
        (
            with_body(
                bare_post().header("content-type", "text/plain").header("accept", "*/*"),
                &ping,
            ),
            415,
            -32000,
            "unsupported_media_type",
        ),
        (
            with_body(bare_post().header("accept", "*/*"), &ping),
            415,
            -32000,
            "unsupported_media_type",
        ),
        (
            post()
                .header("mcp-session-id", &sid)
                .body(Full::new(Bytes::from(vec![b' '; 2048])))
                .unwrap(),
            413,
            -32000,
            "payload_too_large",
        ),
        (
            post()
                .header("mcp-session-id", &sid)
                .body(Full::new(Bytes::from_static(b"{\"jsonrpc\": ")))
                .unwrap(),
            400,
            -32700,
            "parse_error",
        ),
        (
            post()
                .header("mcp-session-id", &sid)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap(),
            400,
            -32600,
            "invalid_request",
        ),
        (
            post()
                .header("mcp-session-id", &sid)
                .body(Full::new(Bytes::from_static(b"[]")))
                .unwrap(),
            400,
            -32600,
            "invalid_request",
        ),
        (
            Request::put("/mcp")
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .unwrap(),
            405,
            -32000,
            "method_not_allowed",
        ),
    ];
    for (req, status, code, reason) in cases {
        let (head, body) = call(&app, req).await.into_parts();
        let body = read_all(body).await;
        assert_rejected(head.status, &body, status, code, reason);
        assert!(
            !String::from_utf8_lossy(&body).contains("Error"),
            "no internal error text: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // A lying Content-Length is caught while reading, too.
    let (tx, body) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(4);
    for _ in 0..3 {
        tx.send(Ok(http_body::Frame::data(Bytes::from(vec![b' '; 600]))))
            .await
            .unwrap();
    }
    drop(tx);
    let mut body = body;
    let stream_body = http_body_util::StreamBody::new(futures_util::stream::poll_fn(move |cx| body.poll_recv(cx)));
    let svc = tower::ServiceBuilder::new()
        .layer(layer.clone())
        .service(echo::echo_service(EchoOptions::default()));
    let req = Request::post("/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .body(stream_body)
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
    let m = layer.manager().metrics();
    assert_eq!(m.rejected(RejectionKind::PayloadTooLarge), 2);
    assert_eq!(m.rejected(RejectionKind::NotAcceptable), 3);
}

/// A record keeps a bounded amount of the client's `initialize`: more `clientInfo` and
/// `capabilities` than the bound is refused with 400 / -32602, reserves nothing, creates
/// nothing; at the bound it is accepted.
#[tokio::test]
async fn oversized_client_metadata_is_refused_and_leaves_nothing() {
    let layer = McpSessionLayer::builder()
        .max_sessions(Some(1))
        .max_client_metadata_bytes(1024)
        .build();
    let app = app(&layer);
    let mut big = initialize_body(LEGACY);
    big["params"]["clientInfo"] = json!({"name": "x".repeat(64 * 1024), "version": "1"});
    for _ in 0..3 {
        let (status, headers, body) = send(&app, None, &big).await;
        assert_rejected(status, &body, 400, -32602, "client_metadata_too_large");
        assert!(headers.get("mcp-session-id").is_none());
        assert_eq!(json(&body)["id"], json!(0), "the error answers the request's id");
    }
    let m = layer.manager().metrics();
    assert_eq!((m.sessions_created, m.active_sessions), (0, Some(0)));
    // Within the bound (and with the cap of one still free: nothing was reserved).
    let mut fits = initialize_body(LEGACY);
    fits["params"]["clientInfo"] = json!({"name": "x".repeat(900), "version": "1"});
    assert_eq!(send(&app, None, &fits).await.0, StatusCode::OK);
}
