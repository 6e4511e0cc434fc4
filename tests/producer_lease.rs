//! Producer leases (issue 12): the instance running a request's SSE stream holds a
//! lease on it in the event log and renews it while the request runs. When that
//! instance goes away mid-stream, a client resuming on another instance gets what was
//! stored and then, once the lease has lapsed, a JSON-RPC error answer to its request
//! (`-32603`, `data.reason` `producer_lost`) that ends the stream; before leases the
//! resumed stream stayed open with keep-alives and nothing more to come. A request
//! slower than the lease, whose instance lives, is never ended that way.
//!
//! In process, an instance going away is every handle on its layer dropped: its engine
//! goes, and with it the tasks running its pumps (aborted, as a killed process's are),
//! while the store and the log, shared with the other instance, stay.

use mcp_test_support::http as support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{Value, json};
use support::{EchoBody, EchoOptions, SseReader, echo, empty, get, initialize_body, post, request, with_body};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_mcp_session::event_log::{EventLog, MemoryEventLog};
use tower_mcp_session::store::{MemoryStore, SessionStore};
use tower_mcp_session::{McpBody, McpSessionLayer};

const LEASE: Duration = Duration::from_millis(300);

type App = BoxCloneSyncService<Request<Full<Bytes>>, Response<McpBody<EchoBody>>, Infallible>;

/// The echo server, plus two streaming tools: `stall` sends one notification and then
/// nothing, never ending (a request still being worked on); `slow` sends one, waits
/// three leases, and answers.
fn app(layer: &McpSessionLayer) -> App {
    let svc = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let bytes = req.body().clone().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let tool = body["params"]["name"].as_str().unwrap_or_default().to_owned();
        if body["method"] != "tools/call" || !matches!(tool.as_str(), "stall" | "slow") {
            return Ok::<_, Infallible>(echo::handle(EchoOptions::default(), req).await);
        }
        let note = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "working"}});
        let first = Bytes::from(format!("data: {note}\n\n"));
        let done =
            json!({"jsonrpc": "2.0", "id": body["id"], "result": {"content": [{"type": "text", "text": "done"}]}});
        let last = Bytes::from(format!("data: {done}\n\n"));
        let frames = futures_util::stream::once(async move { Ok::<_, Infallible>(http_body::Frame::data(first)) });
        let rest = futures_util::stream::once(async move {
            if tool == "stall" {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(LEASE * 3).await;
            Ok(http_body::Frame::data(last))
        });
        let body = StreamBody::new(futures_util::StreamExt::chain(frames, rest));
        let mut response = Response::new(body.boxed());
        response
            .headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        Ok(response)
    });
    BoxCloneSyncService::new(tower::ServiceBuilder::new().layer(layer.clone()).service(svc))
}

/// A layer (one instance) over the shared `store` and `log`.
fn instance(store: impl SessionStore, log: impl EventLog) -> (McpSessionLayer, App) {
    let layer = McpSessionLayer::builder()
        .store(store)
        .event_log(log)
        .sse_producer_lease(LEASE)
        .build();
    let app = app(&layer);
    (layer, app)
}

async fn initialize(app: &App) -> String {
    let resp = app
        .clone()
        .oneshot(with_body(post(), &initialize_body("2025-11-25")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()["mcp-session-id"].to_str().unwrap().to_owned()
}

/// Call `tool` with request id `id`; read the priming event and the first
/// notification; return its event id and the reader of the rest.
async fn call(app: &App, sid: &str, id: u64, tool: &str) -> (String, SseReader<McpBody<EchoBody>>) {
    let body = request(id, "tools/call", json!({"name": tool, "arguments": {}}));
    let resp = app
        .clone()
        .oneshot(with_body(post().header("mcp-session-id", sid), &body))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut reader = SseReader::new(resp.into_body());
    let (event_id, message) = reader.next_message().await.expect("the first notification");
    assert_eq!(message["method"], "notifications/message");
    (event_id.expect("an event id to resume from"), reader)
}

async fn resume(app: &App, sid: &str, last: &str) -> SseReader<McpBody<EchoBody>> {
    let resp = app
        .clone()
        .oneshot(empty(get().header("mcp-session-id", sid).header("last-event-id", last)))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "resume from {last}");
    SseReader::new(resp.into_body())
}

/// Instance A runs a stalled request and goes away; the client resumes on B.
async fn instance_goes_away(a: (McpSessionLayer, App), b: (McpSessionLayer, App)) {
    let sid = initialize(&a.1).await;
    let (last, reader) = call(&a.1, &sid, 41, "stall").await;
    // Everything of A goes: the client's connection, the service, the layer.
    drop((reader, a));
    let started = tokio::time::Instant::now();
    let mut resumed = resume(&b.1, &sid, &last).await;
    let (_, answer) = resumed
        .next_message()
        .await
        .expect("an answer once the producer's lease has lapsed");
    assert_eq!(answer["id"], 41, "{answer}");
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert_eq!(
        answer["error"]["message"], "the server instance handling this request stopped",
        "{answer}"
    );
    assert_eq!(answer["error"]["data"]["reason"], "producer_lost", "{answer}");
    assert!(resumed.next_event().await.is_none(), "the answer ends the stream");
    assert!(
        started.elapsed() < LEASE * 10,
        "the end came {:?} after the resume",
        started.elapsed()
    );
    // A later resume from the same point reads the same end: it is in the log.
    let mut again = resume(&b.1, &sid, &last).await;
    let (_, replayed) = again.next_message().await.expect("the stored answer");
    assert_eq!(replayed, answer);
    assert!(again.next_event().await.is_none());
}

/// A request slower than the lease on a living instance: its own connection and a
/// resume on the other instance both get the real answer.
async fn slow_request_is_never_abandoned(a: (McpSessionLayer, App), b: (McpSessionLayer, App)) {
    let sid = initialize(&a.1).await;
    let (_, mut own) = call(&a.1, &sid, 7, "slow").await;
    let (last, away) = call(&a.1, &sid, 8, "slow").await;
    drop(away);
    let mut resumed = resume(&b.1, &sid, &last).await;
    for (reader, id) in [(&mut own, 7), (&mut resumed, 8)] {
        let (_, answer) = reader.next_message().await.expect("the answer");
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["result"]["content"][0]["text"], "done", "{answer}");
        assert!(reader.next_message().await.is_none(), "nothing after the answer");
    }
}

fn memory_pair() -> ((McpSessionLayer, App), (McpSessionLayer, App)) {
    let (store, log) = (MemoryStore::new(), MemoryEventLog::new());
    (instance(store.clone(), log.clone()), instance(store, log))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_resume_after_the_instance_went_away_ends_with_an_error_answer() {
    let (a, b) = memory_pair();
    instance_goes_away(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_request_slower_than_its_lease_is_answered() {
    let (a, b) = memory_pair();
    slow_request_is_never_abandoned(a, b).await;
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use mcp_test_support::redis_server::RedisServer;
    use tower_mcp_session_redis::{RedisEventLog, RedisSessionStore};

    /// Two instances on one private `redis-server`, each with its own connection.
    async fn redis_pair(server: &RedisServer) -> ((McpSessionLayer, App), (McpSessionLayer, App)) {
        let mut pair = Vec::new();
        for _ in 0..2 {
            let conn = server.connect().await;
            pair.push(instance(RedisSessionStore::new(conn.clone()), RedisEventLog::new(conn)));
        }
        let b = pair.pop().unwrap();
        (pair.pop().unwrap(), b)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_resume_after_the_instance_went_away_ends_with_an_error_answer() {
        let server = RedisServer::start();
        let (a, b) = redis_pair(&server).await;
        instance_goes_away(a, b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_request_slower_than_its_lease_is_answered() {
        let server = RedisServer::start();
        let (a, b) = redis_pair(&server).await;
        slow_request_is_never_abandoned(a, b).await;
    }
}
