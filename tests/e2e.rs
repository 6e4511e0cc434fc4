//! End to end over real sockets on 127.0.0.1: the echo server behind the layer, served
//! by hyper, driven by hyper's client. What `oneshot` cannot show: real connections
//! closing mid-stream, and a real TCP resume.

use mcp_test_support::http as support;

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::BodyExt;
use mcp_test_support::tcp::{self, client, read_body, req};
use serde_json::{Value, json};
use support::*;
use tower_mcp_session::McpSessionLayer;

/// Serve the echo app behind `layer` on a free loopback port.
async fn serve(layer: &McpSessionLayer, nodelay: bool) -> SocketAddr {
    let options = EchoOptions {
        sse_tool_calls: true,
        manager: Some(layer.manager()),
    };
    tcp::serve(layer, options, nodelay).await
}

/// A whole legacy session over TCP: initialize, SSE tool call, push on the GET stream,
/// DELETE, then 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_session_over_tcp() {
    let layer = McpSessionLayer::new();
    let addr = serve(&layer, true).await;
    let http = client();
    let (status, headers, _) = read_body(
        http.request(req(
            addr,
            http::Method::POST,
            None,
            Some(&initialize_body("2025-11-25")),
        ))
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let sid = headers["mcp-session-id"].to_str().unwrap().to_owned();

    let call = request(
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "over tcp"}}),
    );
    let (status, headers, body) = read_body(
        http.request(req(addr, http::Method::POST, Some(&sid), Some(&call)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let events = sse_events(&body);
    assert!(events[0].data.is_empty() && events[0].id.is_some(), "priming first");
    let messages = sse_messages(&body);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["result"]["content"][0]["text"], "over tcp");

    let mut get = http
        .request(req(addr, http::Method::GET, Some(&sid), None))
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let notify = request(2, "tools/call", json!({"name": "notify_me", "arguments": {}}));
    let (status, _, _) = read_body(
        http.request(req(addr, http::Method::POST, Some(&sid), Some(&notify)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("hello from notify_me") {
        let frame = tokio::time::timeout(Duration::from_secs(5), get.body_mut().frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.extend_from_slice(&frame.into_data().unwrap());
    }
    drop(get);

    let (status, _, _) = read_body(
        http.request(req(addr, http::Method::DELETE, Some(&sid), None))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, body) = read_body(
        http.request(req(addr, http::Method::POST, Some(&sid), Some(&call)))
            .await
            .unwrap(),
    )
    .await;
    assert_rejected(status, &body, 404, -32001, "session_not_found");
}

/// A client whose TCP connection breaks mid-stream resumes on a new connection and
/// gets exactly the rest. Without TCP_NODELAY on the server, too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_broken_connection() {
    for nodelay in [true, false] {
        let layer = McpSessionLayer::new();
        let addr = serve(&layer, nodelay).await;
        let http = client();
        let (_, headers, _) = read_body(
            http.request(req(
                addr,
                http::Method::POST,
                None,
                Some(&initialize_body("2025-11-25")),
            ))
            .await
            .unwrap(),
        )
        .await;
        let sid = headers["mcp-session-id"].to_str().unwrap().to_owned();
        let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "t"}}});
        let mut resp = http
            .request(req(addr, http::Method::POST, Some(&sid), Some(&call)))
            .await
            .unwrap();
        // Read until the first progress notification, then break the connection.
        let mut buf = Vec::new();
        while !String::from_utf8_lossy(&buf).contains("\"progress\":0") {
            let frame = resp.body_mut().frame().await.unwrap().unwrap();
            buf.extend_from_slice(&frame.into_data().unwrap());
        }
        drop(resp);
        let complete = &buf[..buf.len() - buf.windows(2).rev().position(|w| w == b"\n\n").unwrap()];
        let before = sse_events(complete);
        let cursor = before.iter().rev().find_map(|e| e.id.clone()).unwrap();
        let mut resume = req(addr, http::Method::GET, Some(&sid), None);
        resume.headers_mut().insert("last-event-id", cursor.parse().unwrap());
        let (status, _, rest) = read_body(http.request(resume).await.unwrap()).await;
        assert_eq!(status, 200);
        let mut all: Vec<Value> = before
            .iter()
            .filter(|e| !e.data.is_empty())
            .map(|e| json(e.data.as_bytes()))
            .collect();
        all.extend(sse_messages(&rest));
        let progress: Vec<_> = all.iter().filter_map(|m| m["params"]["progress"].as_i64()).collect();
        assert_eq!(progress, vec![0, 50, 100], "nodelay={nodelay}");
        assert_eq!(all.last().unwrap()["id"], 5);
        assert_eq!(all.len(), 4, "each event exactly once");
    }
}

/// 2026-07-28 over TCP: no session anywhere, and a foreign Origin is refused.
#[tokio::test]
async fn modern_and_origin_over_tcp() {
    let layer = McpSessionLayer::new();
    let addr = serve(&layer, true).await;
    let http = client();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": modern_meta()}});
    let mut r = req(addr, http::Method::POST, None, Some(&body));
    r.headers_mut()
        .insert("mcp-protocol-version", "2026-07-28".parse().unwrap());
    let (status, headers, bytes) = read_body(http.request(r).await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(headers.get("mcp-session-id").is_none());
    assert!(json(&bytes)["result"]["tools"].is_array());
    let mut evil = req(addr, http::Method::POST, None, Some(&initialize_body("2025-06-18")));
    evil.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    let (status, _, bytes) = read_body(http.request(evil).await.unwrap()).await;
    assert_rejected(status, &bytes, 403, -32000, "forbidden_origin");
}
