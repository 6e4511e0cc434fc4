//! Translation mode: a 2026-07-28-only inner service behind the layer serves 2025-era
//! clients. The inner service is the echo server behind a guard that records every
//! request it gets and refuses (and counts) any that is not a 2026-07-28 request: the
//! proof that the handler never saw a legacy message.

use mcp_test_support::http as support;
use mcp_test_support::modern_only::{methods, modern_only_app, no_legacy_reached, translating};

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use support::*;
use tower_mcp_session::McpSessionLayer;

#[tokio::test]
async fn initialize_is_answered_from_server_discover() {
    let layer = translating();
    let (app, seen) = modern_only_app(&layer, EchoOptions::default());
    for version in ["2025-11-25", "2025-06-18", "2025-03-26"] {
        let (status, headers, body) = send(&app, None, &initialize_body(version)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(headers.contains_key("mcp-session-id"));
        let answer = json(&body);
        assert_eq!(answer["id"], 0);
        let result = &answer["result"];
        assert_eq!(result["protocolVersion"], version, "the client's own revision");
        assert_eq!(result["serverInfo"]["name"], "tower-mcp-session-echo");
        assert!(result["capabilities"]["tools"].is_object());
        for modern_only in ["resultType", "ttlMs", "cacheScope", "supportedVersions"] {
            assert!(result.get(modern_only).is_none(), "{modern_only} in {result}");
        }
    }
    // One discovery for the three clients of one kind.
    assert_eq!(methods(&seen), ["server/discover"]);
    // A revision the layer does not speak gets the newest legacy one.
    let (_, _, body) = send(&app, None, &initialize_body("2024-11-05")).await;
    assert_eq!(json(&body)["result"]["protocolVersion"], "2025-11-25");
    no_legacy_reached(&seen);
}

#[tokio::test]
async fn legacy_calls_go_in_as_modern_requests_and_answers_come_back_legacy() {
    let layer = translating();
    let (app, seen) = modern_only_app(&layer, EchoOptions::default());
    let sid = initialize(&app, "2025-11-25").await;
    let (status, _, body) = send(&app, Some(&sid), &request(7, "tools/list", json!({}))).await;
    assert_eq!(status, 200);
    let list = json(&body);
    assert_eq!(list["id"], 7);
    assert!(list["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()));
    for modern_only in ["resultType", "ttlMs", "cacheScope"] {
        assert!(list["result"].get(modern_only).is_none(), "{modern_only} in {list}");
    }
    let call = request(
        8,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "héllo"}, "_meta": {"progressToken": "t1"}}),
    );
    let (status, _, body) = send(&app, Some(&sid), &call).await;
    assert_eq!(status, 200);
    let answer = json(&body);
    assert_eq!(answer["id"], 8);
    assert!(answer.to_string().contains("héllo"), "{answer}");
    assert!(answer["result"].get("resultType").is_none());

    let seen_now = seen.lock().unwrap();
    let (headers, message) = seen_now.requests.last().unwrap();
    assert_eq!(headers["mcp-method"], "tools/call");
    assert_eq!(headers["mcp-name"], "echo");
    assert!(
        !headers.contains_key("mcp-session-id"),
        "the session stays in the layer"
    );
    let meta = &message["params"]["_meta"];
    assert_eq!(meta["progressToken"], "t1", "the client's own _meta is kept");
    assert_eq!(meta["io.modelcontextprotocol/clientInfo"]["name"], "test-client");
    assert!(meta["io.modelcontextprotocol/clientCapabilities"].is_object());
    assert_eq!(message["id"], 8, "the client's id goes in");
    drop(seen_now);
    no_legacy_reached(&seen);
}

#[tokio::test]
async fn what_2026_removed_is_served_by_the_layer() {
    let layer = translating();
    let (app, seen) = modern_only_app(&layer, EchoOptions::default());
    let sid = initialize(&app, "2025-06-18").await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, _) = send(&app, Some(&sid), &initialized).await;
    assert_eq!(status, 202);
    let (status, _, body) = send(&app, Some(&sid), &request(2, "ping", json!({}))).await;
    assert_eq!(
        (status, json(&body)),
        (StatusCode::OK, json!({"jsonrpc": "2.0", "id": 2, "result": {}}))
    );
    let (_, _, body) = send(
        &app,
        Some(&sid),
        &request(3, "logging/setLevel", json!({"level": "warning"})),
    )
    .await;
    assert_eq!(json(&body)["result"], json!({}));
    let (_, _, body) = send(
        &app,
        Some(&sid),
        &request(4, "logging/setLevel", json!({"level": "loud"})),
    )
    .await;
    assert_eq!(json(&body)["error"]["code"], -32602);
    // The level goes with every later request.
    send(&app, Some(&sid), &request(5, "tools/list", json!({}))).await;
    {
        let seen = seen.lock().unwrap();
        let (_, message) = seen.requests.last().unwrap();
        assert_eq!(
            message["params"]["_meta"]["io.modelcontextprotocol/logLevel"],
            "warning"
        );
    }
    // Kept by the layer for its `subscriptions/listen` (tests/translation_listen.rs);
    // the inner service sees no such method.
    let (_, _, body) = send(
        &app,
        Some(&sid),
        &request(6, "resources/subscribe", json!({"uri": "x:a"})),
    )
    .await;
    assert_eq!(json(&body)["result"], json!({}));
    let (_, _, body) = send(&app, Some(&sid), &request(7, "resources/subscribe", json!({}))).await;
    assert_eq!(json(&body)["error"]["code"], -32602, "a URI is required");
    assert_eq!(methods(&seen), ["server/discover", "tools/list"]);
    no_legacy_reached(&seen);
}

#[tokio::test]
async fn http_errors_of_the_inner_service_become_json_rpc_answers() {
    let layer = translating();
    let (app, seen) = modern_only_app(&layer, EchoOptions::default());
    let sid = initialize(&app, "2025-11-25").await;
    // The echo server answers an unknown 2026-07-28 method with 404 + -32601.
    let (status, headers, body) = send(&app, Some(&sid), &request(9, "prompts/list", json!({}))).await;
    assert_eq!(status, 200, "a legacy client gets an answer, not a transport failure");
    assert_eq!(headers["content-type"], "application/json");
    let answer = json(&body);
    assert_eq!(answer["id"], 9);
    assert_eq!(answer["error"]["code"], -32601);
    no_legacy_reached(&seen);
}

#[tokio::test]
async fn streamed_answers_are_translated_and_resumable() {
    let layer = translating();
    let options = EchoOptions {
        sse_tool_calls: true,
        manager: None,
    };
    let (app, seen) = modern_only_app(&layer, options);
    let sid = initialize(&app, "2025-11-25").await;
    let call = request(
        11,
        "tools/call",
        json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "p"}}),
    );
    let (status, headers, body) = send(&app, Some(&sid), &call).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let events = sse_events(&body);
    let messages: Vec<Value> = events
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| json(e.data.as_bytes()))
        .collect();
    let progress: Vec<_> = messages
        .iter()
        .filter_map(|m| m["params"]["progress"].as_u64())
        .collect();
    assert_eq!(progress, [0, 50, 100]);
    let answer = messages.iter().find(|m| m["id"] == 11).expect("the final answer");
    assert!(answer["result"].get("resultType").is_none(), "{answer}");
    // Every event is resumable: after the first progress event, the rest.
    let first = events
        .iter()
        .find(|e| e.data.contains("notifications/progress"))
        .and_then(|e| e.id.clone())
        .unwrap();
    let resumed = call_get(&app, &sid, &first).await;
    let rest: Vec<Value> = sse_events(&resumed)
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| json(e.data.as_bytes()))
        .collect();
    assert_eq!(
        rest.iter()
            .filter_map(|m| m["params"]["progress"].as_u64())
            .collect::<Vec<_>>(),
        [50, 100]
    );
    assert_eq!(rest.iter().filter(|m| m["id"] == 11).count(), 1);
    no_legacy_reached(&seen);
}

async fn call_get(app: &App, sid: &str, last_event_id: &str) -> Bytes {
    let req = empty(
        get()
            .header("mcp-session-id", sid)
            .header("last-event-id", last_event_id),
    );
    let resp = call(app, req).await;
    assert_eq!(resp.status(), 200);
    read_all(resp.into_body()).await
}

#[tokio::test]
async fn modern_requests_still_pass_through_and_sessions_still_hold() {
    let layer = translating();
    let (app, seen) = modern_only_app(&layer, EchoOptions::default());
    let modern = json!({"jsonrpc": "2.0", "id": "m", "method": "tools/list", "params": {"_meta": modern_meta()}});
    let resp = call(
        &app,
        with_body(post().header("mcp-protocol-version", "2026-07-28"), &modern),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("mcp-session-id"));
    let body = json(&read_all(resp.into_body()).await);
    assert_eq!(
        body["result"]["resultType"], "complete",
        "a modern client gets the modern answer"
    );
    // A legacy request without a live session is still the layer's to refuse.
    let (status, _, body) = send(
        &app,
        Some("0123456789abcdef0123456789abcdef"),
        &request(1, "tools/list", json!({})),
    )
    .await;
    assert_rejected(status, &body, 404, -32001, "session_not_found");
    no_legacy_reached(&seen);
}

#[tokio::test]
async fn batches_outside_2025_03_26_are_refused_never_passed_on() {
    // A 2025-03-26 session's batches are translated (tests/translation_batch.rs); no
    // later revision has batches.
    let layer = translating();
    let (app, seen) = modern_only_app(&layer, EchoOptions::default());
    let sid = initialize(&app, "2025-06-18").await;
    let batch = json!([request(1, "tools/list", json!({})), request(2, "tools/list", json!({}))]);
    let (status, _, body) = send(&app, Some(&sid), &batch).await;
    assert_rejected(status, &body, 400, -32600, "batch_not_allowed");
    let old = initialize(&app, "2025-03-26").await;
    let response = support::call(
        &app,
        with_body(
            post()
                .header("mcp-session-id", &old)
                .header("mcp-protocol-version", "2026-07-28"),
            &batch,
        ),
    )
    .await;
    let status = response.status();
    let body = read_all(response.into_body()).await;
    assert_rejected(status, &body, 400, -32600, "batch_not_allowed");
    assert_eq!(methods(&seen), ["server/discover"], "nothing of either batch went in");
    no_legacy_reached(&seen);
}

#[tokio::test]
async fn an_unsupported_modern_version_is_told_the_versions_discovery_lists() {
    // The inner service's `server/discover` names only 2026-07-28; an error to a
    // 2026-07-28-style request must not name more (the legacy revisions are served
    // through `initialize`).
    let layer = McpSessionLayer::builder()
        .translate_to_modern(true)
        .strict_modern_headers(true)
        .build();
    let (app, seen) = modern_only_app(&layer, EchoOptions::default());
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2099-01-01",
        "io.modelcontextprotocol/clientCapabilities": {}});
    let req = with_body(
        post()
            .header("mcp-protocol-version", "2099-01-01")
            .header("mcp-method", "tools/list"),
        &request(1, "tools/list", json!({"_meta": meta})),
    );
    let response = support::call(&app, req).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json(&read_all(response.into_body()).await);
    assert_eq!(body["error"]["code"], -32022, "{body}");
    assert_eq!(body["error"]["data"]["supported"], json!(["2026-07-28"]), "{body}");
    assert!(methods(&seen).is_empty());
}
