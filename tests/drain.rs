//! `SessionManager::drain` on one process with the memory backends: what a draining
//! instance refuses, what it ends and how, what it keeps serving, and what it waits
//! for. Two layers sharing one `MemoryStore` and `MemoryEventLog` stand for two
//! instances sharing Redis (the real-process version is `rolling_restart.rs`).

use std::time::Duration;

use http::StatusCode;
use mcp_test_support::http as support;
use serde_json::{Value, json};
use support::{App, SseReader, app, assert_rejected, call, empty, get, initialize, post, send, with_body};
use tower_mcp_session::event_log::MemoryEventLog;
use tower_mcp_session::store::MemoryStore;
use tower_mcp_session::{McpSessionLayer, SessionId};

/// A 2025-11-25 client is primed with an event id on every stream; 2025-06-18 is not.
const PRIMED: &str = "2025-11-25";
const UNPRIMED: &str = "2025-06-18";

fn progress_call(id: u64, interval_ms: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "test_tool_with_progress", "arguments": {"intervalMs": interval_ms},
        "_meta": {"progressToken": "p"}}})
}

async fn open_get(app: &App, session: &str) -> SseReader<tower_mcp_session::McpBody<support::EchoBody>> {
    let response = call(app, empty(get().header("mcp-session-id", session))).await;
    assert_eq!(response.status(), StatusCode::OK);
    SseReader::new(response.into_body())
}

#[tokio::test]
async fn a_draining_instance_refuses_new_sessions_and_serves_existing_ones() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let session = initialize(&app, PRIMED).await;
    let manager = layer.manager();
    assert!(!manager.is_draining());
    let drained = manager.drain(Duration::from_secs(10));
    assert!(
        manager.is_draining(),
        "draining from the call on, before the future is polled"
    );

    let (status, headers, body) = send(&app, None, &support::initialize_body(PRIMED)).await;
    assert_rejected(status, &body, 503, -32000, "draining");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        support::json(&body)["id"],
        0,
        "an ordinary JSON-RPC error for the request"
    );

    let echo = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "still here"}}});
    let (status, _, body) = send(&app, Some(&session), &echo).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(support::json(&body)["result"]["content"][0]["text"], "still here");

    let report = drained.await;
    assert!(report.is_complete(), "{report}");
    assert_eq!(
        manager.metrics().rejected(tower_mcp_session::RejectionKind::Draining),
        1
    );
}

#[tokio::test]
async fn a_drain_ends_get_streams_with_a_retry_and_answers_new_gets_at_once() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let manager = layer.manager();
    let session = initialize(&app, PRIMED).await;
    let id = SessionId::parse(&session).unwrap();
    let mut stream = open_get(&app, &session).await;
    let priming = stream.next_event().await.expect("priming event");
    assert!(priming.id.is_some());
    manager
        .send(&id, &json!({"jsonrpc": "2.0", "method": "notifications/one"}))
        .await
        .unwrap();
    let (one_id, one) = stream.next_message().await.expect("the first push");
    assert_eq!(one["method"], "notifications/one");

    let drained = manager.drain(Duration::from_secs(10));
    let retry = stream.next_event().await.expect("a retry before the end");
    assert_eq!((retry.retry, retry.id, retry.data.as_str()), (Some(1000), None, ""));
    assert!(stream.next_event().await.is_none(), "the connection ends");
    drop(stream);

    // A push after the cut waits in the log for the resume, wherever it happens.
    manager
        .send(&id, &json!({"jsonrpc": "2.0", "method": "notifications/two"}))
        .await
        .unwrap();
    // A new GET, fresh or resuming, gets only a retry: nothing is read or claimed here.
    for last_event_id in [None, one_id.as_deref()] {
        let mut req = get().header("mcp-session-id", &session);
        if let Some(last) = last_event_id {
            req = req.header("last-event-id", last);
        }
        let response = call(&app, empty(req)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(support::read_all(response.into_body()).await, "retry: 1000\n\n");
    }
    let report = drained.await;
    assert!(report.is_complete(), "{report}");
    // An unknown session still gets its 404, draining or not.
    let response = call(&app, empty(get().header("mcp-session-id", "nope"))).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

// A paused clock: the tool's steps wait on it, so the cut lands before its answer.
#[tokio::test(start_paused = true)]
async fn a_drain_waits_for_a_running_stream_which_another_instance_then_resumes() {
    let (store, log) = (MemoryStore::new(), MemoryEventLog::new());
    let layer_a = McpSessionLayer::builder()
        .store(store.clone())
        .event_log(log.clone())
        .build();
    let layer_b = McpSessionLayer::builder().store(store).event_log(log).build();
    let (a, b) = (app(&layer_a), app(&layer_b));
    let session = initialize(&a, PRIMED).await;

    let response = call(
        &a,
        with_body(post().header("mcp-session-id", &session), &progress_call(5, 200)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = SseReader::new(response.into_body());
    let priming = stream.next_event().await.expect("priming event");
    let mut last_id = priming.id.expect("a primed client holds an id");

    let mut drained = Box::pin(layer_a.manager().drain(Duration::from_secs(30)));
    // The connection ends after what it sent, with a retry; the stream goes on.
    let mut seen = Vec::new();
    while let Some(event) = stream.next_event().await {
        if let Some(id) = event.id {
            last_id = id;
        }
        if !event.data.is_empty() {
            seen.push(support::json(event.data.as_bytes()));
        }
    }
    assert!(seen.len() < 4, "cut before the answer: {seen:?}");
    assert!(
        futures_util::poll!(drained.as_mut()).is_pending(),
        "the drain waits for the running pump"
    );
    let report = drained.await;
    assert!(report.is_complete(), "{report}");

    // Everything went into the shared log: instance B resumes it to the answer.
    let resume = get()
        .header("mcp-session-id", &session)
        .header("last-event-id", &last_id);
    let response = call(&b, empty(resume)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut rest = SseReader::new(response.into_body());
    while let Some((_, message)) = rest.next_message().await {
        seen.push(message);
    }
    let progress: Vec<&Value> = seen.iter().filter_map(|m| m.pointer("/params/progress")).collect();
    assert_eq!(progress, [&json!(0), &json!(50), &json!(100)], "{seen:?}");
    assert_eq!(seen.iter().filter(|m| m["id"] == 5).count(), 1, "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn at_the_deadline_the_report_says_what_still_runs_and_old_clients_keep_their_stream() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let session = initialize(&app, UNPRIMED).await;
    let response = call(
        &app,
        with_body(post().header("mcp-session-id", &session), &progress_call(9, 5_000)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = SseReader::new(response.into_body());
    let (_, first) = stream.next_message().await.expect("first progress");
    assert_eq!(first["params"]["progress"], 0);

    let report = layer.manager().drain(Duration::from_millis(50)).await;
    assert!(!report.is_complete());
    assert_eq!(
        (report.pumps, report.connections, report.client_requests),
        (1, 1, 0),
        "{report}"
    );
    assert!(report.to_string().contains("1 pumps, 1 SSE connections"), "{report}");

    // Without an event id the client could not resume elsewhere: its stream stays
    // and delivers the rest here.
    let mut rest = Vec::new();
    while let Some((_, message)) = stream.next_message().await {
        rest.push(message);
    }
    assert_eq!(rest.len(), 3, "{rest:?}");
    assert_eq!(rest[2]["id"], 9);
}

#[tokio::test(start_paused = true)]
async fn a_drain_counts_requests_waiting_for_the_client() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": PRIMED, "capabilities": {"sampling": {}},
        "clientInfo": {"name": "asked", "version": "1"}}});
    let (status, headers, _) = send(&app, None, &init).await;
    assert_eq!(status, StatusCode::OK);
    let session = headers["mcp-session-id"].to_str().unwrap().to_owned();
    let ask = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "test_sampling", "arguments": {"prompt": "hi"}}});
    let response = call(&app, with_body(post().header("mcp-session-id", &session), &ask)).await;
    let mut stream = SseReader::new(response.into_body());
    let (_, request) = stream.next_message().await.expect("the sampling request");
    assert_eq!(request["method"], "sampling/createMessage");
    // The client's connection is cut by the drain; the request still waits here.
    let drained = layer.manager().drain(Duration::from_millis(50));
    while stream.next_event().await.is_some() {}
    drop(stream);
    let report = drained.await;
    assert_eq!(
        (report.pumps, report.connections, report.client_requests),
        (1, 0, 1),
        "{report}"
    );

    // The answer still reaches the asker (it may come through any instance).
    let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {
        "role": "assistant", "content": {"type": "text", "text": "hello"}, "model": "m", "stopReason": "endTurn"}});
    let (status, _, _) = send(&app, Some(&session), &answer).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let report = layer.manager().drain(Duration::from_secs(5)).await;
    assert!(report.is_complete(), "{report}");
}
