//! The operator's handle, `SessionManager::admin()`, on one instance with the memory
//! backends: count, list in pages, inspect (last activity included), terminate one,
//! terminate a principal's. The cross-instance count and last activity over Redis are
//! in `redis_client_requests.rs`.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use mcp_test_support::http as support;
use serde_json::json;
use support::{App, call, empty, get, initialize_body, post, request, send, with_body};
use tower_mcp_session::{McpSessionLayer, Principal, SessionId};

async fn initialize_as(app: &App, user: &str) -> String {
    let req = with_body(post().extension(Principal::new(user)), &initialize_body("2025-11-25"));
    let response = call(app, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.headers()["mcp-session-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn count_list_inspect_and_terminate() {
    let layer = McpSessionLayer::builder().bind_principal(false).build();
    let app = support::app(&layer);
    let admin = layer.manager().admin();
    let alice = [initialize_as(&app, "alice").await, initialize_as(&app, "alice").await];
    let bob = initialize_as(&app, "bob").await;
    assert_eq!(admin.count().await.unwrap(), 3);

    // Two pages of two at most: every session once.
    let mut seen = HashSet::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = admin.list(cursor.as_deref(), 2).await.unwrap();
        assert!(page.sessions.len() <= 2);
        for id in page.sessions {
            assert!(seen.insert(id.to_string()), "listed twice: {id}");
        }
        pages += 1;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert!(pages >= 2);
    let want: HashSet<String> = [alice[0].clone(), alice[1].clone(), bob.clone()].into();
    assert_eq!(seen, want);

    // Inspect: the record, the layer's own attributes, the reader attached here.
    let (status, _, _) = send(
        &app,
        Some(&bob),
        &request(2, "resources/subscribe", json!({"uri": "file:///x"})),
    )
    .await;
    assert!(status.is_success());
    let listening = call(&app, empty(get().header("mcp-session-id", &bob))).await;
    assert_eq!(listening.status(), StatusCode::OK);
    let bob_id = SessionId::parse(&bob).unwrap();
    let info = admin.inspect(&bob_id).await.unwrap().expect("live");
    assert_eq!(info.record.principal(), Some(&Principal::new("bob")));
    assert_eq!(info.attributes["mcp:subscriptions"], json!(["file:///x"]));
    assert_eq!(info.readers_here, 1);
    drop(listening);

    // A principal's sessions end together; the others stay.
    assert_eq!(admin.terminate_principal(&Principal::new("alice")).await.unwrap(), 2);
    assert_eq!(admin.terminate_principal(&Principal::new("alice")).await.unwrap(), 0);
    assert_eq!(admin.count().await.unwrap(), 1);
    let (status, _, _) = send(&app, Some(&alice[0]), &request(3, "ping", json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a terminated session is gone");

    // A manager's close is the admin's terminate: the session ends once.
    assert!(layer.manager().close(&bob_id).await.unwrap());
    assert!(!admin.terminate(&bob_id).await.unwrap());
    assert!(admin.inspect(&bob_id).await.unwrap().is_none());
    assert_eq!(admin.count().await.unwrap(), 0);
}

/// `inspect` tells how long a session has been idle: from its `initialize`, then from
/// its last request; reading it (and the admin's other reads) is not activity. Paused
/// time, so the figures are exact.
#[tokio::test(start_paused = true)]
async fn inspect_tells_the_last_activity() {
    let layer = McpSessionLayer::builder()
        .bind_principal(false)
        .idle_timeout(Duration::from_secs(600))
        .build();
    let app = support::app(&layer);
    let admin = layer.manager().admin();
    let session = initialize_as(&app, "erin").await;
    let id = SessionId::parse(&session).unwrap();
    // Let the detached touch at the end of the request land before the clock moves.
    settle().await;

    tokio::time::advance(Duration::from_secs(42)).await;
    let info = admin.inspect(&id).await.unwrap().expect("live");
    assert_eq!(info.idle_for, Duration::from_secs(42));
    let now = SystemTime::now();
    let last = info.last_activity;
    assert!(last <= now && now.duration_since(last).unwrap() >= Duration::from_secs(42));
    assert_eq!(admin.count().await.unwrap(), 1);
    tokio::time::advance(Duration::from_secs(8)).await;
    assert_eq!(
        admin.inspect(&id).await.unwrap().expect("live").idle_for,
        Duration::from_secs(50),
        "inspecting and counting are not activity"
    );

    let (status, _, _) = send(&app, Some(&session), &request(1, "ping", json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    settle().await;
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        admin.inspect(&id).await.unwrap().expect("live").idle_for,
        Duration::from_secs(5)
    );
}

/// Lets detached tasks (the layer's end-of-request touch) run without moving the clock.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}
