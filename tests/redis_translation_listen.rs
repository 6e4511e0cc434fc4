//! Translation mode's change notifications across two instances sharing a private
//! `redis-server`: the session's listener lives with its GET connection, a
//! subscription made on the other instance reaches it, and a GET taken over by the
//! other instance moves the listener there. The inner services are the echo server
//! made 2026-07-28-only (`mcp_test_support::modern_only`); their change tools share
//! one hub per process, so this file's tests run one at a time.
#![cfg(feature = "redis")]

use std::time::Duration;

use mcp_test_support::echo;
use mcp_test_support::http as support;
use mcp_test_support::modern_only::{Shared, modern_only_app, no_legacy_reached};
use mcp_test_support::redis_server::RedisServer;
use serde_json::{Value, json};
use support::*;
use tower_mcp_session::{McpBody, McpSessionLayer};
use tower_mcp_session_redis::{RedisEventLog, RedisSessionStore};

type Stream = SseReader<McpBody<EchoBody>>;

async fn instance(server: &RedisServer) -> (App, Shared) {
    let conn = server.connect().await;
    let layer = McpSessionLayer::builder()
        .translate_to_modern(true)
        .store(RedisSessionStore::new(conn.clone()))
        .event_log(RedisEventLog::new(conn))
        .build();
    modern_only_app(&layer, EchoOptions::default())
}

async fn open_get(app: &App, sid: &str) -> Stream {
    let response = support::call(app, empty(get().header("mcp-session-id", sid))).await;
    assert_eq!(response.status(), 200);
    let mut stream = SseReader::new(response.into_body());
    assert!(stream.next_event().await.expect("priming").data.is_empty());
    stream
}

async fn ok(app: &App, sid: &str, message: &Value) {
    let (status, _, body) = send(app, Some(sid), message).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

/// The URIs of the newest listen request `seen` got.
fn listening_to(seen: &Shared) -> Option<Value> {
    let seen = seen.lock().unwrap();
    seen.requests
        .iter()
        .rev()
        .find(|(_, m)| m["method"] == "subscriptions/listen")
        .map(|(_, m)| m["params"]["notifications"]["resourceSubscriptions"].clone())
}

async fn until(what: &str, within: Duration, done: impl Fn() -> bool) {
    tokio::time::timeout(within, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_on_b_reaches_the_listener_on_a_and_a_takeover_moves_it() {
    let server = tokio::task::block_in_place(RedisServer::start);
    let (a, seen_a) = instance(&server).await;
    let (b, seen_b) = instance(&server).await;
    let sid = initialize(&a, "2025-11-25").await;
    let mut get_a = open_get(&a, &sid).await;
    until("A listens", Duration::from_secs(10), || {
        listening_to(&seen_a).is_some() && echo::open_listens() == 1
    })
    .await;

    // Subscribed on B: A's listener sees it at its next check (within 10 s).
    ok(
        &b,
        &sid,
        &request(1, "resources/subscribe", json!({"uri": "test://redis/a"})),
    )
    .await;
    until("A's listen has the URI", Duration::from_secs(15), || {
        listening_to(&seen_a) == Some(json!(["test://redis/a"]))
    })
    .await;
    let call = |id: u64, uri: &str| {
        request(
            id,
            "tools/call",
            json!({"name": "touch_resource", "arguments": {"uri": uri}}),
        )
    };
    ok(&b, &sid, &call(2, "test://redis/a")).await;
    let (_, note) = get_a.next_message().await.expect("the update, on A's GET stream");
    assert_eq!(note["method"], "notifications/resources/updated");
    assert_eq!(note["params"]["uri"], "test://redis/a");
    assert!(listening_to(&seen_b).is_none(), "B holds no listen while A has the GET");

    // A newer GET on B takes the session's stream over, and the listener with it.
    let mut get_b = open_get(&b, &sid).await;
    until("B listens", Duration::from_secs(10), || listening_to(&seen_b).is_some()).await;
    assert_eq!(listening_to(&seen_b), Some(json!(["test://redis/a"])));
    let changed = |id: u64, kind: &str| {
        request(
            id,
            "tools/call",
            json!({"name": "trigger_list_changed", "arguments": {"kind": kind}}),
        )
    };
    ok(&a, &sid, &changed(3, "tools")).await;
    // A's reader meets the taken-over claim and ends; its listener goes with it.
    assert!(get_a.next_message().await.is_none(), "A's GET ends after the take-over");
    until("one listen is left", Duration::from_secs(10), || {
        echo::open_listens() == 1
    })
    .await;
    ok(&a, &sid, &changed(4, "prompts")).await;
    let mut after = Vec::new();
    while let Ok(Some((_, note))) = tokio::time::timeout(Duration::from_secs(2), get_b.next_message()).await {
        after.push(note["method"].as_str().unwrap_or_default().to_owned());
    }
    let tools = after
        .iter()
        .filter(|m| *m == "notifications/tools/list_changed")
        .count();
    let prompts = after
        .iter()
        .filter(|m| *m == "notifications/prompts/list_changed")
        .count();
    // The first change after a take-over may come from both listeners (A's until its
    // reader noticed); once A's is gone, each change comes once.
    assert!((1..=2).contains(&tools), "{after:?}");
    assert_eq!(prompts, 1, "{after:?}");
    assert_eq!(after.len(), tools + prompts, "{after:?}");
    no_legacy_reached(&seen_a);
    no_legacy_reached(&seen_b);
}
