//! Resumable SSE (issue "Resumable SSE"): every legacy SSE answer is driven to its end
//! by the layer and kept in the event log; clients that drop resume with
//! `Last-Event-ID` and get exactly what they missed, once. Checklist L9–L15, A8, M14.

use mcp_test_support::http as support;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use support::*;
use tokio::sync::mpsc;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_mcp_session::event_log::MemoryEventLog;
use tower_mcp_session::{McpBody, McpSessionLayer, SessionId};

/// An SSE body fed by a channel; flags when it is dropped (the client went away and
/// nobody drives it any more).
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
    dropped: Arc<AtomicBool>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|c| c.map(|c| Ok(Frame::data(c))))
    }
}

impl Drop for ChannelBody {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

type StreamApp = BoxCloneSyncService<
    Request<Full<Bytes>>,
    Response<McpBody<http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>>>,
    Infallible,
>;

/// The echo server for everything, except `tools/call` of `stream`: `n` progress
/// notifications then the result, `gap` apart, produced by a task that stops only when
/// nobody reads its body (the layer reads it for legacy clients).
fn streaming_app(layer: &McpSessionLayer, n: usize, gap: Duration, dropped: Arc<AtomicBool>) -> StreamApp {
    let svc = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let dropped = dropped.clone();
        async move {
            let body: Value = serde_json::from_slice(&req.body().clone().collect().await.unwrap().to_bytes()).unwrap();
            if body["method"] == "tools/call" && body["params"]["name"] == "stream" {
                let (tx, rx) = mpsc::channel(4);
                let id = body["id"].clone();
                tokio::spawn(async move {
                    for i in 0..n {
                        let note = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": i}});
                        if tx.send(Bytes::from(format!("data: {note}\n\n"))).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(gap).await;
                    }
                    let done =
                        json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": "done"}]}});
                    let _ = tx
                        .send(Bytes::from(format!("event: message\r\ndata: {done}\r\n\r\n")))
                        .await;
                });
                let mut r = Response::new(ChannelBody { rx, dropped }.boxed_unsync());
                r.headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                return Ok::<_, Infallible>(r);
            }
            let r = echo::handle(EchoOptions::default(), req).await;
            Ok(r.map(|b| b.boxed_unsync()))
        }
    });
    BoxCloneSyncService::new(tower::ServiceBuilder::new().layer(layer.clone()).service(svc))
}

async fn stream_call<B>(
    app: &BoxCloneSyncService<Request<Full<Bytes>>, Response<McpBody<B>>, Infallible>,
    sid: &str,
    id: u64,
) -> Response<McpBody<B>> {
    let body = request(id, "tools/call", json!({"name": "stream", "arguments": {}}));
    app.clone()
        .oneshot(with_body(post().header("mcp-session-id", sid), &body))
        .await
        .unwrap()
}

async fn init_on<B>(
    app: &BoxCloneSyncService<Request<Full<Bytes>>, Response<McpBody<B>>, Infallible>,
    version: &str,
) -> String
where
    B: Body<Data = Bytes> + Send + 'static,
{
    let resp = app
        .clone()
        .oneshot(with_body(post(), &initialize_body(version)))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()["mcp-session-id"].to_str().unwrap().to_owned()
}

/// Read a body until at least `want` data events have arrived (or it ends); return
/// the complete events read. Whatever a frame carried past `want` counts as received,
/// as it would for a real client.
async fn read_events<B>(body: &mut McpBody<B>, want: usize) -> (Vec<Event>, bool)
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut buf = Vec::new();
    loop {
        let complete = buf.len() - buf.windows(2).rev().position(|w| w == b"\n\n").unwrap_or(buf.len());
        let events = sse_events(&buf[..complete.min(buf.len())]);
        if !events.is_empty() && events.iter().filter(|e| !e.data.is_empty()).count() >= want {
            return (events, false);
        }
        match tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("frame in time")
        {
            Some(Ok(frame)) => buf.extend_from_slice(&frame.into_data().unwrap()),
            Some(Err(e)) => panic!("body error {e:?}"),
            None => return (sse_events(&buf), true),
        }
    }
}

async fn resume<B>(
    app: &BoxCloneSyncService<Request<Full<Bytes>>, Response<McpBody<B>>, Infallible>,
    sid: &str,
    last: &str,
) -> Response<McpBody<B>> {
    app.clone()
        .oneshot(empty(get().header("mcp-session-id", sid).header("last-event-id", last)))
        .await
        .unwrap()
}

fn data_events(events: &[Event]) -> Vec<Event> {
    events.iter().filter(|e| !e.data.is_empty()).cloned().collect()
}

/// The property: for every drop point k (and a second drop point), what the client
/// receives across its connections is the original sequence exactly: ids consecutive,
/// payloads in order, no gap, no duplicate; and the response arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_anywhere_resume_gets_exactly_the_rest() {
    const N: usize = 6;
    let dropped = Arc::new(AtomicBool::new(false));
    let layer = McpSessionLayer::new();
    let app = streaming_app(&layer, N, Duration::from_millis(2), dropped.clone());
    let sid = init_on(&app, "2025-11-25").await;
    for k in 0..=N + 1 {
        for second in [None, Some(1usize), Some(2)] {
            let mut resp = stream_call(&app, &sid, 100 + k as u64).await;
            assert_eq!(resp.status(), 200);
            let (mut got, _) = read_events(resp.body_mut(), k).await;
            // k = 0: only the priming event (id, empty data) was read.
            assert!(
                got[0].data.is_empty() && got[0].id.as_deref().is_some_and(|id| id.ends_with("-0")),
                "priming first"
            );
            drop(resp);
            let mut all = data_events(&got);
            loop {
                let cursor = got
                    .iter()
                    .rev()
                    .find_map(|e| e.id.clone())
                    .expect("an id to resume from");
                let mut again = resume(&app, &sid, &cursor).await;
                assert_eq!(again.status(), 200, "resume from {cursor}");
                let want = if let (Some(s), true) = (second, all.len() < N + 1) {
                    s
                } else {
                    usize::MAX
                };
                let (more, ended) = read_events(again.body_mut(), want).await;
                all.extend(data_events(&more));
                got = more;
                if ended || all.len() > N {
                    if !ended {
                        let (rest, ended) = read_events(again.body_mut(), usize::MAX).await;
                        assert!(ended && data_events(&rest).is_empty(), "nothing after the response");
                    }
                    break;
                }
                if got.is_empty() {
                    // Nothing new on this connection yet; go round again.
                    got = vec![Event {
                        id: Some(cursor),
                        data: String::new(),
                        retry: None,
                    }];
                }
            }
            assert_eq!(all.len(), N + 1, "k={k} second={second:?}: {all:?}");
            let stream = all[0].id.as_ref().unwrap().split('-').next().unwrap().to_owned();
            for (i, e) in all.iter().enumerate() {
                assert_eq!(
                    e.id.as_deref(),
                    Some(format!("{stream}-{}", i + 1).as_str()),
                    "consecutive ids"
                );
                let v = json(e.data.as_bytes());
                if i < N {
                    assert_eq!(v["params"]["progress"], i, "payload order");
                } else {
                    assert_eq!(v["result"]["content"][0]["text"], "done");
                    assert_eq!(v["id"], 100 + k as u64);
                }
            }
        }
    }
}

/// The response produced while the client was away is delivered on resume (rmcp
/// loses it and answers the resume with an empty 200).
#[tokio::test]
async fn response_produced_while_away_is_delivered() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let sid = initialize(&app, "2025-11-25").await;
    let body = request(7, "tools/call", json!({"name": "test_reconnection", "arguments": {}}));
    let resp = call(&app, with_body(post().header("mcp-session-id", &sid), &body)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    // The handler closed the connection right after priming: priming + retry, then end.
    let bytes = read_all(resp.into_body()).await;
    let events = sse_events(&bytes);
    assert!(
        events.iter().all(|e| e.data.is_empty()),
        "no message before the close: {events:?}"
    );
    assert!(events.iter().any(|e| e.retry == Some(1000)), "retry before closing");
    let priming = events.iter().find_map(|e| e.id.clone()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (head, body) = call(
        &app,
        empty(get().header("mcp-session-id", &sid).header("last-event-id", &priming)),
    )
    .await
    .into_parts();
    assert_eq!(head.status, 200);
    let messages = sse_messages(&read_all(body).await);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["id"], 7);
    assert_eq!(
        messages[0]["result"]["content"][0]["text"],
        "reconnection test complete"
    );
    assert_eq!(layer.manager().metrics().streams_resumed, 1);
}

/// [L13] priming only for 2025-11-25 clients; `test_tool_with_progress` sends 0/50/100.
#[tokio::test]
async fn priming_only_for_2025_11_25_and_progress_tool() {
    let app = app(&McpSessionLayer::new());
    let call_body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "p"}}});
    for (version, primed) in [("2025-06-18", false), ("2025-11-25", true), ("2025-03-26", false)] {
        let sid = initialize(&app, version).await;
        let (status, _, bytes) = send(&app, Some(&sid), &call_body).await;
        assert_eq!(status, 200);
        let events = sse_events(&bytes);
        assert_eq!(events[0].data.is_empty(), primed, "{version}: {events:?}");
        let messages = sse_messages(&bytes);
        let progress: Vec<_> = messages
            .iter()
            .filter_map(|m| m["params"]["progress"].as_i64())
            .collect();
        assert_eq!(progress, vec![0, 50, 100]);
        assert_eq!(
            messages.last().unwrap()["result"]["content"][0]["text"],
            "progress complete"
        );
        assert!(
            data_events(&events).iter().all(|e| e.id.is_some()),
            "every event has an id"
        );
    }
}

/// [L12] resumption never crosses sessions; guessed, malformed and foreign ids are
/// rejected with a terminal error, never an empty 200.
#[tokio::test]
async fn foreign_guessed_and_malformed_cursors_are_rejected() {
    let app = app(&McpSessionLayer::new());
    let a = initialize(&app, "2025-11-25").await;
    let b = initialize(&app, "2025-11-25").await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": 1}}});
    let (_, _, bytes) = send(&app, Some(&a), &body).await;
    let a_id = sse_events(&bytes).into_iter().find_map(|e| e.id).unwrap();
    let stream = a_id.split('-').next().unwrap().to_owned();
    let cases = [
        (b.as_str(), a_id.clone(), 400, "unknown_event_id"),
        (a.as_str(), "0123456789abcdef-1".to_owned(), 400, "unknown_event_id"),
        (a.as_str(), "not-an-id".to_owned(), 400, "unknown_event_id"),
        (a.as_str(), format!("{stream}-01"), 400, "unknown_event_id"),
    ];
    for (sid, cursor, status, reason) in cases {
        let (head, body) = call(
            &app,
            empty(
                get()
                    .header("mcp-session-id", sid)
                    .header("last-event-id", cursor.as_str()),
            ),
        )
        .await
        .into_parts();
        assert_rejected(head.status, &read_all(body).await, status, -32000, reason);
    }
    // The owner can still replay it (the stream finished; nothing after its end).
    let (head, body) = call(
        &app,
        empty(
            get()
                .header("mcp-session-id", &a)
                .header("last-event-id", a_id.as_str()),
        ),
    )
    .await
    .into_parts();
    assert_eq!(head.status, 200);
    assert_eq!(sse_messages(&read_all(body).await).len(), 4);
}

/// An evicted cursor gets 410 Gone, not a silent gap.
#[tokio::test]
async fn evicted_cursor_is_410() {
    let log = MemoryEventLog::builder().max_events_per_stream(4).build();
    let layer = McpSessionLayer::builder().event_log(log).build();
    let dropped = Arc::new(AtomicBool::new(false));
    let app = streaming_app(&layer, 10, Duration::ZERO, dropped);
    let sid = init_on(&app, "2025-11-25").await;
    let resp = stream_call(&app, &sid, 1).await;
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let events = data_events(&sse_events(&bytes));
    assert_eq!(events.len(), 11, "a reader that keeps up gets everything");
    let first = events[0].id.clone().unwrap();
    let resp = resume(&app, &sid, &first).await;
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_rejected(status, &body, 410, -32000, "events_evicted");
    let recent = events[8].id.clone().unwrap();
    let resp = resume(&app, &sid, &recent).await;
    assert_eq!(resp.status(), 200);
    let rest = data_events(&sse_events(&resp.into_body().collect().await.unwrap().to_bytes()));
    assert_eq!(rest.len(), 2, "the retained tail replays");
}

/// [L15] disconnect is not cancellation for legacy sessions; [M14] for 2026-07-28 it is:
/// the inner body is dropped at once and nothing is stored.
#[tokio::test]
async fn disconnect_semantics_per_era() {
    let layer = McpSessionLayer::new();
    let dropped = Arc::new(AtomicBool::new(false));
    let app = streaming_app(&layer, 50, Duration::from_millis(5), dropped.clone());
    let sid = init_on(&app, "2025-06-18").await;
    let resp = stream_call(&app, &sid, 1).await;
    drop(resp);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !dropped.load(Ordering::SeqCst),
        "legacy: the layer keeps driving the inner body"
    );

    let modern = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "stream", "arguments": {}, "_meta": modern_meta()}});
    let req = with_body(post().header("mcp-protocol-version", "2026-07-28"), &modern);
    let mut resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("mcp-session-id").is_none());
    assert_eq!(resp.headers()["x-accel-buffering"], "no", "[M15]");
    let first = resp.body_mut().frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(
        !String::from_utf8_lossy(&first).contains("id:"),
        "no event ids in 2026-07-28 streams"
    );
    let flag = Arc::new(AtomicBool::new(false));
    let app2 = streaming_app(&layer, 50, Duration::from_millis(5), flag.clone());
    let resp = app2
        .clone()
        .oneshot(with_body(post().header("mcp-protocol-version", "2026-07-28"), &modern))
        .await
        .unwrap();
    drop(resp);
    assert!(
        flag.load(Ordering::SeqCst),
        "modern: dropping the response drops the inner body at once"
    );
}

/// Head-of-line isolation: a stream nobody reads while its handler floods it does not
/// delay other requests of the same session or of other sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_stream_blocks_nobody() {
    let layer = McpSessionLayer::new();
    let dropped = Arc::new(AtomicBool::new(false));
    let app = streaming_app(&layer, 5_000, Duration::ZERO, dropped);
    let a = init_on(&app, "2025-11-25").await;
    let b = init_on(&app, "2025-11-25").await;
    let stalled = stream_call(&app, &a, 1).await; // never read
    let ping = |sid: String, id: u64| {
        let app = app.clone();
        async move {
            let resp = app
                .oneshot(with_body(
                    post().header("mcp-session-id", &sid),
                    &request(id, "ping", json!({})),
                ))
                .await
                .unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
    };
    let both = async { tokio::join!(ping(a.clone(), 2), ping(b.clone(), 3)) };
    let ((sa, ba), (sb, bb)) = tokio::time::timeout(Duration::from_secs(5), both)
        .await
        .expect("other requests complete promptly");
    assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK));
    assert_eq!(json(&ba)["id"], 2);
    assert_eq!(json(&bb)["id"], 3);
    drop(stalled);
}

/// [L9][L10] the GET stream carries pushed messages, each on exactly one stream, to the
/// right session only; a second GET takes the stream over.
#[tokio::test]
async fn push_reaches_only_the_target_session() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let manager = layer.manager();
    let a = initialize(&app, "2025-11-25").await;
    let b = initialize(&app, "2025-11-25").await;
    let mut stream_a = call(&app, empty(get().header("mcp-session-id", &a))).await;
    let mut stream_b = call(&app, empty(get().header("mcp-session-id", &b))).await;
    assert_eq!(stream_a.headers()["content-type"], "text/event-stream");
    let note = |n: u64| json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"n": n}});
    manager.send(&SessionId::parse(&a).unwrap(), &note(1)).await.unwrap();
    manager.send(&SessionId::parse(&a).unwrap(), &note(2)).await.unwrap();
    let (got_a, _) = read_events(stream_a.body_mut(), 2).await;
    let msgs: Vec<_> = data_events(&got_a)
        .iter()
        .map(|e| json(e.data.as_bytes())["params"]["n"].clone())
        .collect();
    assert_eq!(msgs, vec![json!(1), json!(2)]);
    // B got nothing but its priming event.
    let nothing = tokio::time::timeout(Duration::from_millis(100), read_events(stream_b.body_mut(), 1)).await;
    assert!(nothing.is_err(), "session B must not see A's messages");
    // A message delivered once: a new GET (no Last-Event-ID) does not repeat it, and
    // takes over from the first GET, which ends.
    let mut second = call(&app, empty(get().header("mcp-session-id", &a))).await;
    let (rest, ended) = read_events(stream_a.body_mut(), usize::MAX).await;
    assert!(
        ended && data_events(&rest).is_empty(),
        "the first GET ended without repeats"
    );
    manager.send(&SessionId::parse(&a).unwrap(), &note(3)).await.unwrap();
    let (got, _) = read_events(second.body_mut(), 1).await;
    let msgs: Vec<_> = data_events(&got)
        .iter()
        .map(|e| json(e.data.as_bytes())["params"]["n"].clone())
        .collect();
    assert_eq!(msgs, vec![json!(3)]);
    // notify_me: the tool pushes to the caller's own GET stream.
    let (status, _, body) = send(
        &app,
        Some(&a),
        &request(9, "tools/call", json!({"name": "notify_me", "arguments": {}})),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (got, _) = read_events(second.body_mut(), 1).await;
    assert_eq!(
        json(data_events(&got)[0].data.as_bytes())["params"]["data"],
        "hello from notify_me"
    );
    assert_eq!(manager.broadcast(&note(4)).await, Ok(2), "both live sessions get it");
}

/// Keep-alive comments on idle streams, and server-initiated polling closes with retry.
#[tokio::test(start_paused = true)]
async fn keep_alive_and_polling() {
    let layer = McpSessionLayer::builder()
        .sse_keep_alive(Some(Duration::from_secs(15)))
        .sse_poll_after(Some(Duration::from_secs(60)))
        .sse_retry(Duration::from_millis(2500))
        .build();
    let app = app(&layer);
    let sid = initialize(&app, "2025-11-25").await;
    let mut stream = call(&app, empty(get().header("mcp-session-id", &sid))).await;
    // Frames are copied and dropped, as a server writing them would: a frame held
    // counts as unwritten, and a stream that holds them past the write timeout is cut.
    let priming = stream
        .body_mut()
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap()
        .to_vec();
    assert!(String::from_utf8_lossy(&priming).contains("retry: 2500"));
    let keep_alive = stream
        .body_mut()
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap()
        .to_vec();
    assert!(keep_alive.starts_with(b":"), "comment line: {keep_alive:?}");
    let mut tail = Vec::new();
    while let Some(frame) = stream.body_mut().frame().await {
        tail.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert!(
        String::from_utf8_lossy(&tail).contains("retry: 2500"),
        "retry sent before the polling close"
    );
}

/// Counting appends through the layer: 2026-07-28 answers never touch the event log.
#[tokio::test]
async fn modern_streams_store_nothing() {
    let appends = Arc::new(AtomicUsize::new(0));
    let log = counting_log::CountingLog {
        inner: MemoryEventLog::new(),
        appends: appends.clone(),
    };
    let layer = McpSessionLayer::builder().event_log(log).build();
    let dropped = Arc::new(AtomicBool::new(false));
    let app = streaming_app(&layer, 3, Duration::ZERO, dropped);
    let modern = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "stream", "arguments": {}, "_meta": modern_meta()}});
    let resp = app
        .clone()
        .oneshot(with_body(post().header("mcp-protocol-version", "2026-07-28"), &modern))
        .await
        .unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(sse_messages(&bytes).len(), 4);
    assert_eq!(appends.load(Ordering::SeqCst), 0);
    let sid = init_on(&app, "2025-06-18").await;
    let resp = stream_call(&app, &sid, 3).await;
    let _ = resp.into_body().collect().await.unwrap();
    assert_eq!(appends.load(Ordering::SeqCst), 4, "legacy streams are logged");
}

mod counting_log {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use tower_mcp_session::SessionId;
    use tower_mcp_session::event_log::{EventLog, EventLogError, MemoryEventLog, ReadOutcome, StreamKey};
    use tower_mcp_session::store::BoxFuture;

    pub(crate) struct CountingLog {
        pub(crate) inner: MemoryEventLog,
        pub(crate) appends: Arc<AtomicUsize>,
    }

    impl EventLog for CountingLog {
        fn open<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>> {
            self.inner.open(key)
        }
        fn append<'a>(&'a self, key: &'a StreamKey, data: Bytes) -> BoxFuture<'a, Result<u64, EventLogError>> {
            self.appends.fetch_add(1, Ordering::SeqCst);
            self.inner.append(key, data)
        }
        fn finish<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>> {
            self.inner.finish(key)
        }
        fn read_after<'a>(
            &'a self,
            key: &'a StreamKey,
            after: u64,
            max: usize,
        ) -> BoxFuture<'a, Result<ReadOutcome, EventLogError>> {
            self.inner.read_after(key, after, max)
        }
        fn wait_after<'a>(&'a self, key: &'a StreamKey, after: u64) -> BoxFuture<'a, ()> {
            self.inner.wait_after(key, after)
        }
        fn mark_delivered<'a>(&'a self, key: &'a StreamKey, seq: u64) -> BoxFuture<'a, Result<(), EventLogError>> {
            self.inner.mark_delivered(key, seq)
        }
        fn delivered<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>> {
            self.inner.delivered(key)
        }
        fn claim_reader<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>> {
            self.inner.claim_reader(key)
        }
        fn current_reader<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>> {
            self.inner.current_reader(key)
        }
        fn remove_session<'a>(&'a self, session: &'a SessionId) -> BoxFuture<'a, Result<(), EventLogError>> {
            self.inner.remove_session(session)
        }
        fn purge_expired(&self) -> BoxFuture<'_, Result<(), EventLogError>> {
            self.inner.purge_expired()
        }
    }
}

/// Messages pushed before the client opened its GET stream are delivered on that GET,
/// once; a GET stream that expired while quiet is started again on resume instead of
/// stranding the client.
#[tokio::test(start_paused = true)]
async fn pushes_before_listening_and_expired_get_stream() {
    let log = MemoryEventLog::builder().idle_timeout(Duration::from_secs(60)).build();
    let layer = McpSessionLayer::builder().event_log(log).sse_keep_alive(None).build();
    let app = app(&layer);
    let manager = layer.manager();
    let sid = initialize(&app, "2025-11-25").await;
    let id = SessionId::parse(&sid).unwrap();
    for n in 0..3 {
        manager
            .send(
                &id,
                &json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"n": n}}),
            )
            .await
            .unwrap();
    }
    let mut stream = call(&app, empty(get().header("mcp-session-id", &sid))).await;
    let (events, _) = read_events(stream.body_mut(), 3).await;
    let got = data_events(&events);
    assert_eq!(got.len(), 3, "queued messages arrive on the first GET");
    let last = got[2].id.clone().unwrap();
    drop(stream);
    let mut again = call(&app, empty(get().header("mcp-session-id", &sid))).await;
    let quiet = tokio::time::timeout(Duration::from_secs(1), read_events(again.body_mut(), 1)).await;
    assert!(quiet.is_err(), "a new GET does not repeat delivered messages");
    drop(again);
    // Nothing pushed for longer than the log's idle timeout: the GET stream expires.
    tokio::time::advance(Duration::from_secs(120)).await;
    let resumed = call(
        &app,
        empty(
            get()
                .header("mcp-session-id", &sid)
                .header("last-event-id", last.as_str()),
        ),
    )
    .await;
    assert_eq!(
        resumed.status(),
        200,
        "an expired GET stream is started again, not refused"
    );
}

/// An inner service may stream newline-delimited JSON instead of SSE: legacy clients get
/// a resumable SSE stream with ids, 2026-07-28 clients plain SSE events.
#[tokio::test]
async fn ndjson_answers_are_framed_as_sse() {
    let layer = McpSessionLayer::new();
    let inner = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let body: Value = serde_json::from_slice(&req.into_body().collect().await.unwrap().to_bytes()).unwrap();
        if body["method"] == "initialize" {
            return Ok::<_, Infallible>(
                echo::handle(
                    EchoOptions::default(),
                    Request::post("/mcp")
                        .body(Full::new(Bytes::from(body.to_string())))
                        .unwrap(),
                )
                .await
                .map(|b| b.boxed_unsync()),
            );
        }
        let lines = format!(
            "{}\n\r\n{}",
            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}),
            json!({"jsonrpc": "2.0", "id": body["id"], "result": {}})
        );
        let mut r = Response::new(Full::new(Bytes::from(lines)).boxed_unsync());
        r.headers_mut()
            .insert("content-type", "application/x-ndjson".parse().unwrap());
        Ok(r)
    });
    let app: StreamApp = BoxCloneSyncService::new(tower::ServiceBuilder::new().layer(layer.clone()).service(inner));
    let sid = init_on(&app, "2025-06-18").await;
    let resp = app
        .clone()
        .oneshot(with_body(
            post().header("mcp-session-id", &sid),
            &request(4, "tools/call", json!({})),
        ))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let events = data_events(&sse_events(&bytes));
    assert_eq!(events.len(), 2, "the last line counts without its newline");
    assert!(events.iter().all(|e| e.id.is_some()), "legacy: resumable, with ids");
    assert_eq!(json(events[1].data.as_bytes())["id"], 4);

    let modern = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"_meta": modern_meta()}});
    let resp = app
        .clone()
        .oneshot(with_body(post().header("mcp-protocol-version", "2026-07-28"), &modern))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let events = data_events(&sse_events(&bytes));
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.id.is_none()), "2026-07-28: no event ids");
}

/// Clients before 2025-11-25 do not poll: a close request from the handler must not cut
/// them off before the response (it would be lost; they have no event id to resume
/// from). 2025-11-25 clients get exactly one `retry` before the close.
#[tokio::test]
async fn close_requests_only_apply_to_polling_clients() {
    let app = app(&McpSessionLayer::new());
    let call_body = request(6, "tools/call", json!({"name": "test_reconnection", "arguments": {}}));
    for version in ["2025-03-26", "2025-06-18"] {
        let sid = initialize(&app, version).await;
        let (status, _, bytes) = send(&app, Some(&sid), &call_body).await;
        assert_eq!(status, 200);
        let messages = sse_messages(&bytes);
        assert_eq!(
            messages.len(),
            1,
            "{version}: the response arrives on the same connection"
        );
        assert_eq!(messages[0]["id"], 6);
    }
    let sid = initialize(&app, "2025-11-25").await;
    let (_, _, bytes) = send(&app, Some(&sid), &call_body).await;
    assert!(sse_messages(&bytes).is_empty());
    assert_eq!(
        String::from_utf8_lossy(&bytes).matches("retry:").count(),
        1,
        "one retry per connection"
    );
}

/// A cursor the stream never reached was never issued: 400, not 410.
#[tokio::test]
async fn cursor_ahead_of_the_stream_is_unknown() {
    let app = app(&McpSessionLayer::new());
    let sid = initialize(&app, "2025-11-25").await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "test_tool_with_progress", "arguments": {}}});
    let (_, _, bytes) = send(&app, Some(&sid), &body).await;
    let stream = sse_events(&bytes)
        .into_iter()
        .find_map(|e| e.id)
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .to_owned();
    let ahead = format!("{stream}-999");
    let (head, body) = call(
        &app,
        empty(
            get()
                .header("mcp-session-id", &sid)
                .header("last-event-id", ahead.as_str()),
        ),
    )
    .await
    .into_parts();
    assert_rejected(head.status, &read_all(body).await, 400, -32000, "unknown_event_id");
}
