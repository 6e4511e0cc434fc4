//! Translation mode's change notifications: a 2025-era client's GET stream and
//! `resources/subscribe` served from a `subscriptions/listen` stream the layer holds
//! against a 2026-07-28-only handler (the echo server behind the guard of
//! `mcp_test_support::modern_only`, which proves it never saw a legacy message).
//!
//! The echo server's change tools share one hub per process (`end_listens` ends every
//! listen stream), so these tests run one at a time.

use std::time::Duration;

use mcp_test_support::echo;
use mcp_test_support::http as support;
use mcp_test_support::modern_only::{Shared, modern_only_app, no_legacy_reached, translating};
use serde_json::{Value, json};
use support::*;
use tower_mcp_session::McpBody;

type Stream = SseReader<McpBody<EchoBody>>;

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE_AT_A_TIME.lock().await
}

async fn session(app: &App) -> (String, Value) {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "listening-client", "version": "1.0"}}});
    let (status, headers, body) = send(app, None, &init).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let sid = headers["mcp-session-id"].to_str().unwrap().to_owned();
    (sid, json(&body)["result"].clone())
}

/// Open the GET stream (resuming after `last_event_id`), past its priming event.
async fn open_get(app: &App, sid: &str, last_event_id: Option<&str>) -> Stream {
    let mut builder = get().header("mcp-session-id", sid);
    if let Some(id) = last_event_id {
        builder = builder.header("last-event-id", id);
    }
    let response = support::call(app, empty(builder)).await;
    assert_eq!(response.status(), 200);
    let mut stream = SseReader::new(response.into_body());
    if last_event_id.is_none() {
        let priming = stream.next_event().await.expect("priming");
        assert!(priming.data.is_empty());
    }
    stream
}

/// Call a tool of the echo server's hub (through translation, as the client would).
async fn tool(app: &App, sid: &str, id: u64, name: &str, arguments: Value) {
    let call = request(id, "tools/call", json!({"name": name, "arguments": arguments}));
    let (status, _, body) = send(app, Some(sid), &call).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

async fn subscribe(app: &App, sid: &str, id: u64, method: &str, uri: &str) {
    let (status, _, body) = send(app, Some(sid), &request(id, method, json!({"uri": uri}))).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body), json!({"jsonrpc": "2.0", "id": id, "result": {}}));
}

/// The listen requests the handler got, newest last: the URIs each opted in to.
fn listens(seen: &Shared) -> Vec<Value> {
    let seen = seen.lock().unwrap();
    seen.requests
        .iter()
        .filter(|(_, m)| m["method"] == "subscriptions/listen")
        .map(|(_, m)| m["params"]["notifications"]["resourceSubscriptions"].clone())
        .collect()
}

async fn until(what: &str, done: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// The next message on `stream`, which must be a notification in the legacy shape.
async fn notification(stream: &mut Stream) -> (String, Value) {
    let (id, message) = stream.next_message().await.expect("a notification");
    assert!(message.get("id").is_none(), "{message}");
    assert!(
        message
            .pointer("/params/_meta/io.modelcontextprotocol~1subscriptionId")
            .is_none(),
        "the subscription tag is the layer's business: {message}"
    );
    (id.expect("resumable: an event id"), message)
}

#[tokio::test]
async fn list_changes_and_subscribed_updates_reach_the_get_stream() {
    let _one = serial().await;
    let layer = translating();
    let (app, seen) = modern_only_app(&layer, EchoOptions::default());
    let (sid, init) = session(&app).await;
    assert_eq!(init["capabilities"]["resources"]["subscribe"], true, "{init}");
    assert_eq!(init["capabilities"]["tools"]["listChanged"], true, "{init}");
    let mut stream = open_get(&app, &sid, None).await;
    until("the layer listens", || listens(&seen).len() == 1).await;
    assert_eq!(listens(&seen)[0], json!([]));

    tool(&app, &sid, 1, "trigger_list_changed", json!({"kind": "tools"})).await;
    let (_, note) = notification(&mut stream).await;
    assert_eq!(
        note,
        json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    );

    // The subscribe is answered once the listen runs with it, the old one dropped: an
    // update right after the answer is delivered.
    subscribe(&app, &sid, 2, "resources/subscribe", "test://listen/a").await;
    assert_eq!(listens(&seen).last(), Some(&json!(["test://listen/a"])));
    // The echo server counts a listen as gone when its task sees the stream dropped.
    until("the old listen is gone", || echo::open_listens() == 1).await;
    tool(&app, &sid, 3, "touch_resource", json!({"uri": "test://listen/other"})).await;
    tool(&app, &sid, 4, "touch_resource", json!({"uri": "test://listen/a"})).await;
    let (_, note) = notification(&mut stream).await;
    assert_eq!(note["method"], "notifications/resources/updated");
    assert_eq!(note["params"]["uri"], "test://listen/a", "only the subscribed URI");

    subscribe(&app, &sid, 5, "resources/unsubscribe", "test://listen/a").await;
    assert_eq!(listens(&seen).last(), Some(&json!([])), "and none after an unsubscribe");
    tool(&app, &sid, 6, "touch_resource", json!({"uri": "test://listen/a"})).await;
    tool(&app, &sid, 7, "trigger_list_changed", json!({"kind": "prompts"})).await;
    let (_, note) = notification(&mut stream).await;
    assert_eq!(
        note["method"], "notifications/prompts/list_changed",
        "the unsubscribed update never came"
    );
    no_legacy_reached(&seen);
}

#[tokio::test]
async fn a_dropped_listen_is_reopened_and_a_resume_catches_up() {
    let _one = serial().await;
    let layer = translating();
    let (app, seen) = modern_only_app(&layer, EchoOptions::default());
    let (sid, _) = session(&app).await;
    subscribe(&app, &sid, 1, "resources/subscribe", "test://listen/b").await;
    let mut stream = open_get(&app, &sid, None).await;
    until("the layer listens", || !listens(&seen).is_empty()).await;
    let before = listens(&seen).len();

    // The server ends every listen stream; the layer opens its own again and, not
    // knowing what changed meanwhile, says that everything may have.
    tool(&app, &sid, 2, "end_listens", json!({})).await;
    let mut caught_up = Vec::new();
    for _ in 0..4 {
        let (_, note) = notification(&mut stream).await;
        caught_up.push(note);
    }
    assert!(listens(&seen).len() > before, "reopened");
    let methods: Vec<&str> = caught_up.iter().map(|n| n["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods,
        [
            "notifications/tools/list_changed",
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
            "notifications/resources/updated",
        ]
    );
    assert_eq!(caught_up[3]["params"]["uri"], "test://listen/b");
    tool(&app, &sid, 3, "touch_resource", json!({"uri": "test://listen/b"})).await;
    let (last_id, note) = notification(&mut stream).await;
    assert_eq!(note["params"]["uri"], "test://listen/b", "the new listen delivers");

    // The client goes away, then resumes: the listen goes with the GET connection and
    // comes back with the resume, which catches up as well.
    drop(stream);
    until("the listen ends with the GET", || echo::open_listens() == 0).await;
    let mut resumed = open_get(&app, &sid, Some(&last_id)).await;
    let (_, note) = notification(&mut resumed).await;
    assert_eq!(note["method"], "notifications/tools/list_changed", "{note}");
    no_legacy_reached(&seen);
}

#[tokio::test]
async fn the_listen_ends_with_the_session() {
    let _one = serial().await;
    let layer = translating();
    let (app, seen) = modern_only_app(&layer, EchoOptions::default());
    let (sid, _) = session(&app).await;
    let mut stream = open_get(&app, &sid, None).await;
    until("the layer listens", || !listens(&seen).is_empty()).await;
    until("the echo server counts the listen", || echo::open_listens() == 1).await;
    let response = support::call(&app, empty(delete().header("mcp-session-id", &sid))).await;
    assert!(response.status().is_success());
    assert!(stream.next_message().await.is_none(), "the GET stream ends");
    until("the listen ends with the session", || echo::open_listens() == 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        listens(&seen).len(),
        1,
        "no listen is opened again for an ended session"
    );
}
