//! Fan-out from the manager on one instance with the memory backends: `broadcast` to
//! every live session and `notify_subscribers` to the sessions the layer recorded as
//! subscribed, each message once per session, on its GET stream. The two-instance
//! version over Redis is in `redis_client_requests.rs`.

use http::StatusCode;
use mcp_test_support::http as support;
use serde_json::{Value, json};
use support::{App, SseReader, app, call, empty, get, initialize, request, send};
use tower_mcp_session::{McpSessionLayer, SessionId};

type Reader = SseReader<tower_mcp_session::McpBody<support::EchoBody>>;

async fn listen(app: &App, session: &str) -> Reader {
    let response = call(app, empty(get().header("mcp-session-id", session))).await;
    assert_eq!(response.status(), StatusCode::OK);
    SseReader::new(response.into_body())
}

async fn subscribe(app: &App, session: &str, method: &str, uri: &str) {
    let (status, _, body) = send(app, Some(session), &request(5, method, json!({"uri": uri}))).await;
    assert!(
        status.is_success(),
        "{method}: {status} {}",
        String::from_utf8_lossy(&body)
    );
}

fn note(n: u64) -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": n}})
}

#[tokio::test]
async fn subscribers_and_everyone_get_each_message_once() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let manager = layer.manager();
    let (one, two, three) = (
        initialize(&app, "2025-11-25").await,
        initialize(&app, "2025-11-25").await,
        initialize(&app, "2025-06-18").await,
    );
    subscribe(&app, &one, "resources/subscribe", "file:///a").await;
    subscribe(&app, &two, "resources/subscribe", "file:///a").await;
    subscribe(&app, &two, "resources/unsubscribe", "file:///a").await;
    subscribe(&app, &three, "resources/subscribe", "file:///b").await;

    // Not listening yet: the messages wait in each session's standalone stream.
    assert_eq!(manager.notify_subscribers("file:///a").await, Ok(1));
    assert_eq!(manager.notify_subscribers("file:///nobody").await, Ok(0));
    assert_eq!(manager.broadcast(&note(1)).await, Ok(3));

    let mut on_one = listen(&app, &one).await;
    let (_, updated) = on_one.next_message().await.unwrap();
    assert_eq!(updated["method"], "notifications/resources/updated");
    assert_eq!(updated["params"]["uri"], "file:///a");
    assert_eq!(on_one.next_message().await.unwrap().1, note(1));

    // Unsubscribed and subscribed elsewhere: the broadcast is their first message.
    let mut on_two = listen(&app, &two).await;
    assert_eq!(on_two.next_message().await.unwrap().1, note(1));
    let mut on_three = listen(&app, &three).await;
    assert_eq!(on_three.next_message().await.unwrap().1, note(1));

    // Listening now: the next messages come once each, in order, with nothing between.
    assert_eq!(manager.notify_subscribers("file:///b").await, Ok(1));
    assert_eq!(manager.broadcast(&note(2)).await, Ok(3));
    assert_eq!(on_one.next_message().await.unwrap().1, note(2));
    assert_eq!(on_two.next_message().await.unwrap().1, note(2));
    let (_, updated) = on_three.next_message().await.unwrap();
    assert_eq!(updated["params"]["uri"], "file:///b");
    assert_eq!(on_three.next_message().await.unwrap().1, note(2));

    // An ended session is no longer reached.
    assert!(manager.close(&SessionId::parse(&two).unwrap()).await.unwrap());
    assert_eq!(manager.broadcast(&note(3)).await, Ok(2));
    assert_eq!(on_one.next_message().await.unwrap().1, note(3));
}

#[tokio::test]
async fn a_broadcast_walks_every_page_of_sessions() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let mut sessions = Vec::new();
    for _ in 0..300 {
        sessions.push(initialize(&app, "2025-11-25").await);
    }
    assert_eq!(layer.manager().broadcast(&note(7)).await, Ok(300));
    for session in [&sessions[0], &sessions[150], &sessions[299]] {
        let mut reader = listen(&app, session).await;
        assert_eq!(reader.next_message().await.unwrap().1, note(7));
    }
}

#[tokio::test]
async fn a_message_that_is_not_json_is_refused_before_anything_is_sent() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    initialize(&app, "2025-11-25").await;
    // A map with non-string keys cannot be serialized to JSON.
    let bad: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
    assert_eq!(
        layer.manager().broadcast(&bad).await,
        Err(tower_mcp_session::SendError::InvalidMessage)
    );
}
