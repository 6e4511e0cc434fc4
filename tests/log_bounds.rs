//! Memory a client can make the server hold through the event log (issue 12): replays
//! share the stored bytes, a connection holds a bounded share of them and is cut when
//! its client stops reading, a session's stream bound is a 429 of its own, and the
//! memory log's total budget is a 503 of its own. Never an unresumable SSE answer.

use mcp_test_support::http as support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{Value, json};
use support::*;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_mcp_session::event_log::{EventLog, MemoryEventLog, ReadOutcome, StreamId, StreamKey};
use tower_mcp_session::{McpBody, McpSessionLayer, SessionId, WriteTimeout};

type Boxed = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;
type BigApp = BoxCloneSyncService<Request<Full<Bytes>>, Response<McpBody<Boxed>>, Infallible>;

/// The echo server, except `tools/call`: `big` answers one SSE event of `size` bytes,
/// `hang` an SSE stream that never ends.
fn app(layer: &McpSessionLayer, size: usize) -> BigApp {
    let svc = tower::service_fn(move |req: Request<Full<Bytes>>| async move {
        let body: Value = serde_json::from_slice(&req.body().clone().collect().await.unwrap().to_bytes()).unwrap();
        let sse = |body: Boxed| {
            let mut r = Response::new(body);
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            Ok::<_, Infallible>(r)
        };
        match body["params"]["name"]
            .as_str()
            .filter(|_| body["method"] == "tools/call")
        {
            Some("big") => {
                let text = "x".repeat(size);
                let done = json!({"jsonrpc": "2.0", "id": body["id"], "result": {"content": [{"type": "text", "text": text}]}});
                sse(Full::new(Bytes::from(format!("data: {done}\n\n"))).boxed_unsync())
            }
            Some("hang") => {
                let never = futures_util::stream::pending::<Result<http_body::Frame<Bytes>, Infallible>>();
                sse(StreamBody::new(never).boxed_unsync())
            }
            _ => Ok(echo::handle(EchoOptions::default(), req)
                .await
                .map(|b| b.boxed_unsync())),
        }
    });
    BoxCloneSyncService::new(tower::ServiceBuilder::new().layer(layer.clone()).service(svc))
}

async fn init(app: &BigApp) -> String {
    let resp = app
        .clone()
        .oneshot(with_body(post(), &initialize_body("2025-11-25")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()["mcp-session-id"].to_str().unwrap().to_owned()
}

async fn call(app: &BigApp, sid: &str, id: u64, tool: &str) -> Response<McpBody<Boxed>> {
    let body = request(id, "tools/call", json!({"name": tool, "arguments": {}}));
    app.clone()
        .oneshot(with_body(post().header("mcp-session-id", sid), &body))
        .await
        .unwrap()
}

/// Call `big` and read its answer; returns the stream's key.
async fn big_stream(app: &BigApp, sid: &str) -> StreamKey {
    let resp = call(app, sid, 2, "big").await;
    assert_eq!(resp.status(), 200);
    let bytes = drain(resp.into_body()).await;
    let events = sse_events(&bytes);
    let id = events.last().and_then(|e| e.id.clone()).expect("an event id");
    let stream = u64::from_str_radix(id.split('-').next().unwrap(), 16).unwrap();
    StreamKey::new(SessionId::parse(sid).unwrap(), StreamId::from_raw(stream))
}

/// A body to its end, each frame copied and dropped as a server writing it would.
async fn drain(mut body: McpBody<Boxed>) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        out.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    out
}

async fn resume(app: &BigApp, sid: &str, key: &StreamKey) -> Response<McpBody<Boxed>> {
    let last = format!("{}-0", key.stream());
    app.clone()
        .oneshot(empty(get().header("mcp-session-id", sid).header("last-event-id", last)))
        .await
        .unwrap()
}

/// One 1 MiB event replayed to a connection goes out as slices of the bytes the log
/// holds: only the SSE framing is copied (before, each connection held its own copy).
#[tokio::test]
async fn a_replay_shares_the_stored_payload() {
    let log = MemoryEventLog::new();
    let layer = McpSessionLayer::builder().event_log(log.clone()).build();
    let app = app(&layer, 1 << 20);
    let sid = init(&app).await;
    let key = big_stream(&app, &sid).await;
    let ReadOutcome::Events { events, .. } = log.read_after(&key, 0, 1).await.unwrap() else {
        panic!("the stream is held");
    };
    let stored = events[0].data.clone();
    let held = stored.as_ptr() as usize..stored.as_ptr() as usize + stored.len();

    let mut body = resume(&app, &sid, &key).await.into_body();
    let (mut shared, mut copied) = (0, 0);
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        if held.contains(&(data.as_ptr() as usize)) {
            shared += data.len();
        } else {
            copied += data.len();
        }
    }
    assert!(
        shared > stored.len() - 1024,
        "{shared} of {} bytes shared",
        stored.len()
    );
    assert!(copied < 1024, "{copied} bytes copied");
}

/// A connection whose frames the server cannot write (the client does not read) gets
/// a bounded number of them, then nothing more; after the write timeout without
/// progress its body fails, so the server closes it. Its events stay for a resume, and
/// a client that reads is never cut.
#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_cut_and_can_resume() {
    let layer = McpSessionLayer::builder()
        .sse_write_timeout(Duration::from_secs(30))
        .build();
    let app = app(&layer, 1 << 20);
    let sid = init(&app).await;
    let key = big_stream(&app, &sid).await;

    let mut body = resume(&app, &sid, &key).await.into_body();
    // The server holds what it could not write: frames are kept, never dropped.
    let mut unwritten = Vec::new();
    let stalled = loop {
        match tokio::time::timeout(Duration::from_secs(1), body.frame()).await {
            Ok(Some(frame)) => unwritten.push(frame.unwrap().into_data().unwrap()),
            Ok(None) => panic!("the body ended with {} frames unwritten", unwritten.len()),
            Err(_) => break unwritten.iter().map(Bytes::len).sum::<usize>(),
        }
    };
    assert!(unwritten.len() <= 12, "{} frames handed out unwritten", unwritten.len());
    assert!(stalled <= 224 << 10, "{stalled} bytes handed out unwritten");
    let cut = tokio::time::timeout(Duration::from_secs(60), body.frame())
        .await
        .expect("cut within the write timeout");
    let error = cut.expect("an error, not the end").unwrap_err();
    assert!(error.downcast_ref::<WriteTimeout>().is_some(), "{error}");
    drop(unwritten);

    // The events stayed; a reading client gets all of them.
    let bytes = drain(resume(&app, &sid, &key).await.into_body()).await;
    let messages = sse_messages(&bytes);
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0]["result"]["content"][0]["text"].as_str().map(str::len),
        Some(1 << 20)
    );
}

/// The session's stream bound answers 429 `too_many_streams` with `Retry-After`, never
/// an SSE answer without ids that could not be resumed (before: 503 and then raw SSE).
#[tokio::test]
async fn too_many_streams_is_429_never_a_raw_stream() {
    let layer = McpSessionLayer::builder()
        .event_log(MemoryEventLog::builder().max_streams_per_session(2).build())
        .build();
    let app = app(&layer, 10);
    let sid = init(&app).await;
    let first = call(&app, &sid, 2, "hang").await;
    let second = call(&app, &sid, 3, "hang").await;
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    for (id, tool) in [(4, "hang"), (5, "big")] {
        let resp = call(&app, &sid, id, tool).await;
        let (head, body) = resp.into_parts();
        assert_eq!(head.headers["content-type"], "application/json");
        assert!(head.headers.contains_key("retry-after"));
        let body = body.collect().await.unwrap().to_bytes();
        assert_rejected(head.status, &body, 429, -32000, "too_many_streams");
    }
    // JSON answers need no stream and still go through.
    let resp = app
        .clone()
        .oneshot(with_body(
            post().header("mcp-session-id", &sid),
            &request(6, "ping", json!({})),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// The memory log's total budget: when nothing finished can make room, a new stream is
/// refused with 503 `event_log_full` and `Retry-After`.
#[tokio::test]
async fn a_full_log_is_503_event_log_full() {
    let layer = McpSessionLayer::builder()
        .event_log(MemoryEventLog::builder().max_total_bytes(0).build())
        .build();
    let app = app(&layer, 10);
    let sid = init(&app).await;
    let (head, body) = call(&app, &sid, 2, "big").await.into_parts();
    assert!(head.headers.contains_key("retry-after"));
    let body = body.collect().await.unwrap().to_bytes();
    assert_rejected(head.status, &body, 503, -32000, "event_log_full");
}

/// Pushes and broadcasts to sessions that never open their `GET` stream fill only
/// their own unfinished streams. At the whole-log budget their oldest undelivered
/// pushes go (each stream keeps its newest), so broadcasting goes on and every other
/// session is still served; before, the log refused every append once full.
#[tokio::test]
async fn broadcasts_nobody_reads_cost_old_pushes_not_service() {
    let budget = 256 << 10;
    let layer = McpSessionLayer::builder()
        .event_log(MemoryEventLog::builder().max_total_bytes(budget).build())
        .build();
    let app = app(&layer, 1000);
    let mut sessions = Vec::new();
    for _ in 0..20 {
        sessions.push(init(&app).await);
    }
    let manager = layer.manager();
    let pad = "p".repeat(1024);
    // 20 sessions × 300 pushes of 1 KiB: twenty times the budget.
    for n in 0..300 {
        let note = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"n": n, "pad": pad}});
        assert_eq!(manager.broadcast(&note).await, Ok(20), "broadcast {n}");
    }
    // A streamed answer in a session of its own still gets its resumable stream.
    let fresh = init(&app).await;
    big_stream(&app, &fresh).await;
    // A session that opens its GET stream now gets the newest push.
    let resp = app
        .clone()
        .oneshot(empty(get().header("mcp-session-id", &sessions[0])))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    let newest = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                seen.extend_from_slice(&data);
            }
            if String::from_utf8_lossy(&seen).contains("\"n\":299") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(newest, Ok(true), "the newest push reaches the GET stream");
}
