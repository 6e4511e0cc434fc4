//! Translation mode: a 2025-era client's `notifications/cancelled` ends the request in
//! the 2026-07-28 inner service, whose only cancellation is its response being dropped.
//! The inner service here is the echo server, plus two tools that never finish and
//! report when their response is dropped. The cancellation may land on another
//! instance than the one running the request: two layers sharing a store and an event
//! log stand for two instances (in one process, here; over a private `redis-server`
//! in the last test).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use mcp_test_support::echo::{self, EchoBody};
use mcp_test_support::http as support;
use serde_json::{Value, json};
use support::*;
use tower::util::BoxCloneSyncService;
use tower_mcp_session::McpSessionLayer;
use tower_mcp_session::event_log::MemoryEventLog;
use tower_mcp_session::store::MemoryStore;

/// Counts the inner responses dropped before they finished.
#[derive(Default)]
struct Dropped(AtomicUsize);

struct OnDrop(Arc<Dropped>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The echo server, with `hang_json` (the answer never comes) and `hang_sse` (a
/// progress notification, then nothing).
fn app(dropped: Arc<Dropped>) -> App {
    app_on(McpSessionLayer::builder().translate_to_modern(true).build(), dropped)
}

/// [`app`] behind `layer`.
fn app_on(layer: McpSessionLayer, dropped: Arc<Dropped>) -> App {
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let dropped = dropped.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let message: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            assert_eq!(
                message.pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion"),
                Some(&json!("2026-07-28")),
                "only 2026-07-28 requests reach the handler"
            );
            match message.pointer("/params/name").and_then(Value::as_str) {
                Some("hang_json") => {
                    let _guard = OnDrop(dropped);
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                Some("hang_sse") => {
                    let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                        "params": {"progressToken": "p", "progress": 1}});
                    let first = Bytes::from(format!("event: message\ndata: {progress}\n\n"));
                    let guard = OnDrop(dropped);
                    let events =
                        futures_util::stream::once(async move { Ok::<_, Infallible>(http_body::Frame::data(first)) })
                            .chain(futures_util::stream::once(async move {
                                let _guard = guard;
                                std::future::pending::<()>().await;
                                unreachable!()
                            }));
                    let body: EchoBody = BodyExt::boxed(StreamBody::new(events));
                    let mut response = Response::new(body);
                    response
                        .headers_mut()
                        .insert("content-type", "text/event-stream".parse().unwrap());
                    Ok::<_, Infallible>(response)
                }
                _ => Ok(echo::handle(EchoOptions::default(), Request::from_parts(parts, Full::new(bytes))).await),
            }
        }
    });
    BoxCloneSyncService::new(tower::ServiceBuilder::new().layer(layer).service(inner))
}

async fn session(app: &App) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "cancelling-client", "version": "1.0"}}});
    let (status, headers, body) = send(app, None, &init).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    headers["mcp-session-id"].to_str().unwrap().to_owned()
}

async fn cancel(app: &App, sid: &str, request_id: Value) {
    let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": request_id, "reason": "the user gave up"}});
    let (status, _, body) = send(app, Some(sid), &note).await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
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

/// A `tools/call` of `hang_json` under `id`, sent on `app` in the background: its
/// POST is held until the call is cancelled.
fn held_call(app: &App, sid: &str, id: u64) -> tokio::task::JoinHandle<(http::StatusCode, http::HeaderMap, Bytes)> {
    let call = request(id, "tools/call", json!({"name": "hang_json", "arguments": {}}));
    let (app, sid) = (app.clone(), sid.to_owned());
    tokio::spawn(async move { send(&app, Some(&sid), &call).await })
}

/// The held POST of `pending` is answered with the cancellation error under `id`.
async fn answered_cancelled(pending: tokio::task::JoinHandle<(http::StatusCode, http::HeaderMap, Bytes)>, id: u64) {
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the held POST is answered")
        .unwrap();
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["id"], id, "{answer}");
    assert_eq!(answer["error"]["code"], -32800, "{answer}");
}

#[tokio::test]
async fn a_cancelled_call_awaiting_a_json_answer_is_dropped_inside() {
    let dropped = Arc::new(Dropped::default());
    let app = app(dropped.clone());
    let sid = session(&app).await;
    let pending = held_call(&app, &sid, 7);
    // Another session's cancellation of the same id, and one of another id, reach
    // nothing.
    let other = session(&app).await;
    cancel(&app, &other, json!(7)).await;
    cancel(&app, &sid, json!(8)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!pending.is_finished(), "the call still runs");
    assert_eq!(dropped.0.load(Ordering::SeqCst), 0);

    cancel(&app, &sid, json!(7)).await;
    answered_cancelled(pending, 7).await;
    assert_eq!(dropped.0.load(Ordering::SeqCst), 1, "the inner call was dropped");

    // The session goes on.
    let (status, _, body) = send(&app, Some(&sid), &request(9, "tools/list", json!({}))).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("\"tools\""));
}

#[tokio::test]
async fn a_cancelled_streamed_call_ends_its_stream_without_an_answer() {
    let dropped = Arc::new(Dropped::default());
    let app = app(dropped.clone());
    let sid = session(&app).await;
    let call = request(11, "tools/call", json!({"name": "hang_sse", "arguments": {}}));
    let response = support::call(&app, with_body(post().header("mcp-session-id", &sid), &call)).await;
    assert_eq!(response.status(), 200);
    let mut stream = SseReader::new(response.into_body());
    let (_, progress) = stream.next_message().await.expect("the progress notification");
    assert_eq!(progress["method"], "notifications/progress");

    cancel(&app, &sid, json!(11)).await;
    let rest = tokio::time::timeout(Duration::from_secs(10), stream.next_message())
        .await
        .expect("the stream ends");
    assert!(rest.is_none(), "no answer follows a cancellation: {rest:?}");
    until("the inner stream is dropped", || dropped.0.load(Ordering::SeqCst) == 1).await;
    // A second cancellation of the finished request reaches nothing.
    cancel(&app, &sid, json!(11)).await;
    assert_eq!(dropped.0.load(Ordering::SeqCst), 1);
}

/// Two instances sharing one store and one event log, each with its own inner service
/// (their drops counted together).
fn two_instances(dropped: &Arc<Dropped>) -> (App, App) {
    let store = MemoryStore::new();
    let log = Arc::new(MemoryEventLog::new());
    let instance = || {
        let layer = McpSessionLayer::builder()
            .translate_to_modern(true)
            .store(store.clone())
            .event_log(log.clone())
            .build();
        app_on(layer, dropped.clone())
    };
    (instance(), instance())
}

#[tokio::test]
async fn a_cancellation_landing_on_another_instance_ends_a_held_call() {
    let dropped = Arc::new(Dropped::default());
    let (a, b) = two_instances(&dropped);
    let sid = session(&a).await;
    let pending = held_call(&a, &sid, 21);
    // A cancellation of another id, on the other instance, reaches nothing.
    cancel(&b, &sid, json!(22)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!pending.is_finished(), "the call still runs");
    assert_eq!(dropped.0.load(Ordering::SeqCst), 0);

    cancel(&b, &sid, json!(21)).await;
    answered_cancelled(pending, 21).await;
    assert_eq!(
        dropped.0.load(Ordering::SeqCst),
        1,
        "the inner call was dropped on its own instance"
    );
}

#[tokio::test]
async fn a_cancellation_landing_on_another_instance_ends_a_streamed_call() {
    let dropped = Arc::new(Dropped::default());
    let (a, b) = two_instances(&dropped);
    let sid = session(&a).await;
    let call = request(31, "tools/call", json!({"name": "hang_sse", "arguments": {}}));
    let response = support::call(&a, with_body(post().header("mcp-session-id", &sid), &call)).await;
    assert_eq!(response.status(), 200);
    let mut stream = SseReader::new(response.into_body());
    let (_, progress) = stream.next_message().await.expect("the progress notification");
    assert_eq!(progress["method"], "notifications/progress");

    cancel(&b, &sid, json!(31)).await;
    let rest = tokio::time::timeout(Duration::from_secs(10), stream.next_message())
        .await
        .expect("the stream ends");
    assert!(rest.is_none(), "no answer follows a cancellation: {rest:?}");
    until("the inner stream is dropped", || dropped.0.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test]
async fn a_cancellation_that_arrives_first_still_reaches_its_request() {
    // The client's cancellation overtakes its request (another instance, a slow
    // balancer): the request, once it runs, finds the cancellation waiting.
    let dropped = Arc::new(Dropped::default());
    let (a, b) = two_instances(&dropped);
    let sid = session(&a).await;
    cancel(&b, &sid, json!("late")).await;
    let call = json!({"jsonrpc": "2.0", "id": "late", "method": "tools/call",
        "params": {"name": "hang_json", "arguments": {}}});
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), send(&a, Some(&sid), &call))
        .await
        .expect("answered");
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["error"]["code"], -32800, "{answer}");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn over_redis_a_cancellation_reaches_the_instance_running_the_request() {
    use mcp_test_support::redis_server::RedisServer;
    use tower_mcp_session_redis::{RedisEventLog, RedisSessionStore};

    let server = RedisServer::start();
    let dropped = Arc::new(Dropped::default());
    let mut instances = Vec::new();
    for _ in 0..2 {
        let conn = server.connect().await;
        let layer = McpSessionLayer::builder()
            .translate_to_modern(true)
            .store(RedisSessionStore::new(conn.clone()))
            .event_log(RedisEventLog::new(conn))
            .build();
        instances.push(app_on(layer, dropped.clone()));
    }
    let (a, b) = (instances[0].clone(), instances[1].clone());
    let sid = session(&a).await;
    let pending = held_call(&a, &sid, 41);
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel(&b, &sid, json!(41)).await;
    answered_cancelled(pending, 41).await;
    assert_eq!(dropped.0.load(Ordering::SeqCst), 1);
}
