//! `McpClientLayer` against real servers on 127.0.0.1: session capture and headers,
//! resumable SSE bodies (each event once), re-initialization after 404, close.

mod client_support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use client_support::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};
use tower_mcp_session::{McpSessionLayer, SessionId};
use tower_mcp_session_client::{Error, McpClientLayer, ReinitDecision, Reinitialize, SessionEvent};

fn events_of(hook: &Arc<Mutex<Vec<SessionEvent>>>) -> Vec<SessionEvent> {
    hook.lock().unwrap().clone()
}

/// `initialize` through the layer: the session id and version are captured, and every
/// later request carries `Mcp-Session-Id` and `MCP-Protocol-Version` (checked on the
/// wire and by the server, which refuses requests without them).
#[tokio::test]
async fn initialize_captures_session_and_every_request_carries_it() {
    let server = TestServer::start(test_layer()).await;
    let recorded = Recorded::default();
    let client = client_builder(&server.url())
        .protocol_version(tower_mcp_session::ProtocolVersion::V2025_06_18)
        .build()
        .layer(recording_http(recorded.clone()));
    let result = client.initialize().await.unwrap();
    assert_eq!(result["protocolVersion"], "2025-06-18");
    let sid = client.session_id().expect("session id captured");
    assert_eq!(
        client.protocol_version(),
        Some(tower_mcp_session::ProtocolVersion::V2025_06_18)
    );

    let answer = client
        .request("tools/call", json!({"name": "echo", "arguments": {"message": "hi"}}))
        .await
        .unwrap();
    assert_eq!(answer["content"][0]["text"], "hi");

    let sent = recorded.lock().unwrap().clone();
    // initialize, notifications/initialized, tools/call
    assert_eq!(sent.len(), 3);
    assert!(
        sent[0].1.get("mcp-session-id").is_none(),
        "initialize goes without a session"
    );
    assert!(sent[0].1.get("mcp-protocol-version").is_none());
    for (_, headers, body) in &sent[1..] {
        assert_eq!(
            headers["mcp-session-id"],
            sid.as_str(),
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(headers["mcp-protocol-version"], "2025-06-18");
        assert_eq!(headers["accept"], "application/json, text/event-stream");
    }
    assert_eq!(client.stats().initializations, 1);
    assert_eq!(server.layer.manager().metrics().sessions_created, 1);
}

/// The caller's own `initialize` sent through the service (not the convenience call),
/// answered as SSE: captured all the same, and the body still yields the answer.
#[tokio::test]
async fn initialize_answered_with_sse_is_captured_and_replayed_to_the_caller() {
    // The echo server, except that `initialize` is answered as an SSE stream.
    let layer = test_layer();
    let options = EchoOptions {
        sse_tool_calls: false,
        manager: None,
    };
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let options = options.clone();
        async move {
            let body = req.body().clone().collect().await.unwrap().to_bytes();
            let is_init = serde_json::from_slice::<Value>(&body).is_ok_and(|m| m["method"] == "initialize");
            let resp = echo::handle(options, req).await;
            if !is_init {
                return Ok::<_, Infallible>(resp);
            }
            let json = resp.into_body().collect().await.unwrap().to_bytes();
            let sse = format!("event: message\ndata: {}\n\n", String::from_utf8_lossy(&json));
            let mut r = Response::new(Full::new(Bytes::from(sse)).map_err(|e| match e {}).boxed());
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            Ok(r)
        }
    });
    let svc = tower::ServiceBuilder::new().layer(layer.clone()).service(inner);
    let server = TestServer::serve(0, layer, svc).await;

    let client = McpClientLayer::new().layer(http());
    let init = json_rpc(
        7,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
    );
    let response = client.clone().oneshot(post(&server.url(), &init)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.body().is_sse());
    let sid = client.session_id().expect("captured from an SSE answer");
    assert_eq!(
        client.protocol_version(),
        Some(tower_mcp_session::ProtocolVersion::V2025_11_25)
    );
    let answer = response.into_body().into_response(&json!(7)).await.unwrap();
    assert_eq!(answer["result"]["protocolVersion"], "2025-11-25");

    // A request built by hand, without session headers: the layer adds them.
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let accepted = client.clone().oneshot(post(&server.url(), &note)).await.unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let list = client
        .clone()
        .oneshot(post(&server.url(), &json_rpc(8, "tools/list", json!({}))))
        .await
        .unwrap();
    assert_eq!(list.status(), 200, "session {sid} was sent");
    let answer = list.into_body().into_response(&json!(8)).await.unwrap();
    assert!(answer["result"]["tools"].is_array());
}

/// A progress stream cut by the network after its first event: the body reconnects with
/// `GET` + `Last-Event-ID` and the caller sees 0, 50, 100 and the result, each once.
#[tokio::test]
async fn resume_after_forced_disconnect_yields_each_event_once() {
    let server = TestServer::start(test_layer()).await;
    let client = client(&server.url());
    client.initialize().await.unwrap();
    let response = client
        .send(
            "tools/call",
            json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "p"}}),
        )
        .await
        .unwrap();
    assert!(response.body().is_sse());
    let mut body = response.into_body();
    let first = body.next_event().await.unwrap().unwrap();
    assert_eq!(first.json().unwrap()["params"]["progress"], 0);

    // Cut the TCP connection under the body.
    server.drop_connections();

    let mut events = vec![first];
    while let Some(event) = tokio::time::timeout(Duration::from_secs(5), body.next_event())
        .await
        .expect("events in time")
    {
        events.push(event.unwrap());
    }
    let messages: Vec<Value> = events.iter().map(|e| e.json().unwrap()).collect();
    let progress: Vec<i64> = messages
        .iter()
        .filter_map(|m| m["params"]["progress"].as_i64())
        .collect();
    assert_eq!(progress, vec![0, 50, 100], "{messages:?}");
    let results: Vec<&Value> = messages.iter().filter(|m| m.get("result").is_some()).collect();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["result"]["content"][0]["text"], "progress complete");
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id.clone().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "every event id once");
    let stats = client.stats();
    assert!(stats.resumptions >= 1, "{stats:?}");
    assert_eq!(stats.resume_failures, 0);
    assert_eq!(client.open_streams(), 0, "the stream unregistered when it ended");
    assert!(server.layer.manager().metrics().streams_resumed >= 1);
}

/// `test_reconnection`: the server closes the connection right after the priming event
/// and answers on the reconnection; `request` just returns the answer.
#[tokio::test]
async fn server_initiated_close_is_polled_until_the_answer() {
    let server = TestServer::start(test_layer()).await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let hook = events.clone();
    let client = client_builder(&server.url())
        .on_event(move |e| hook.lock().unwrap().push(e.clone()))
        .build()
        .layer(http());
    let answer = client
        .request("tools/call", json!({"name": "test_reconnection", "arguments": {}}))
        .await
        .unwrap();
    assert_eq!(answer["content"][0]["text"], "reconnection test complete");
    assert!(client.stats().resumptions >= 1);
    assert!(
        events_of(&events)
            .iter()
            .any(|e| matches!(e, SessionEvent::Resumed { .. })),
        "{:?}",
        events_of(&events)
    );
}

/// A server that replays inclusively after `Last-Event-ID` (the off-by-one some SDKs
/// have) and asks for `retry: 300`: the client waits at least that long, and drops the
/// duplicate.
#[tokio::test]
async fn duplicates_after_reconnection_are_dropped_and_retry_is_honoured() {
    let gets = Arc::new(Mutex::new(Vec::<(String, tokio::time::Instant)>::new()));
    let closed_at = Arc::new(Mutex::new(None::<tokio::time::Instant>));
    let (g, c) = (gets.clone(), closed_at.clone());
    let svc = tower::service_fn(move |req: Request<Incoming>| {
        let (gets, closed_at) = (g.clone(), c.clone());
        async move {
            let note =
                |n: u64| json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": n}});
            let body = if req.method() == http::Method::POST {
                *closed_at.lock().unwrap() = Some(tokio::time::Instant::now());
                format!(
                    "id: s-0\ndata:\n\nid: s-1\ndata: {}\n\nid: s-2\ndata: {}\n\nretry: 300\n\n",
                    note(1),
                    note(2)
                )
            } else {
                let last = req.headers()["last-event-id"].to_str().unwrap().to_owned();
                gets.lock().unwrap().push((last, tokio::time::Instant::now()));
                let done = json!({"jsonrpc": "2.0", "id": 1, "result": {"ok": true}});
                // Replays the event named in Last-Event-ID again.
                format!("id: s-2\ndata: {}\n\nid: s-3\ndata: {done}\n\n", note(2))
            };
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            Ok::<_, Infallible>(r)
        }
    });
    let server = TestServer::serve(0, McpSessionLayer::new(), svc).await;
    let client = McpClientLayer::builder()
        .resume_backoff(tower_mcp_session_client::Backoff::new(
            Duration::from_millis(5),
            Duration::from_millis(20),
        ))
        .build()
        .layer(http());
    let response = client
        .clone()
        .oneshot(post(&server.url(), &json_rpc(1, "tools/call", json!({"name": "x"}))))
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut got = Vec::new();
    while let Some(event) = body.next_event().await {
        got.push(event.unwrap());
    }
    let ids: Vec<_> = got.iter().map(|e| e.id.clone().unwrap()).collect();
    assert_eq!(ids, ["s-1", "s-2", "s-3"], "priming skipped, duplicate dropped");
    assert_eq!(client.stats().duplicates_dropped, 1);
    let gets = gets.lock().unwrap().clone();
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].0, "s-2");
    let waited = gets[0].1 - closed_at.lock().unwrap().unwrap();
    assert!(
        waited >= Duration::from_millis(300),
        "retry honoured: waited {waited:?}"
    );
}

/// A stream that breaks before its answer and whose server refuses resumption (405)
/// fails with `NotResumable` instead of hanging.
#[tokio::test]
async fn unresumable_stream_fails_cleanly() {
    let svc = tower::service_fn(|req: Request<Incoming>| async move {
        let mut r = if req.method() == http::Method::POST {
            let mut r = Response::new(Full::new(Bytes::from_static(b"id: a-0\ndata:\n\n")));
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r
        } else {
            Response::new(Full::new(Bytes::new()))
        };
        if req.method() == http::Method::GET {
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        }
        Ok::<_, Infallible>(r)
    });
    let server = TestServer::serve(0, McpSessionLayer::new(), svc).await;
    let client = McpClientLayer::new().layer(http());
    let response = client
        .clone()
        .oneshot(post(&server.url(), &json_rpc(1, "ping", json!({}))))
        .await
        .unwrap();
    let mut body = response.into_body();
    let outcome = tokio::time::timeout(Duration::from_secs(5), body.next_event())
        .await
        .unwrap();
    assert!(matches!(outcome, Some(Err(Error::NotResumable))), "{outcome:?}");
    assert!(body.next_event().await.is_none());
    assert_eq!(client.stats().resume_failures, 1);
}

/// The server forgets the session (closed through its manager): the next request gets
/// 404, the client re-initializes once with the original parameters, reports it, and
/// the request succeeds on the new session.
#[tokio::test]
async fn session_404_reinitializes_once_and_retries() {
    let server = TestServer::start(test_layer()).await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let hook = events.clone();
    let recorded = Recorded::default();
    let client = client_builder(&server.url())
        .client_info("replayed-client", "9.9.9")
        .on_event(move |e| hook.lock().unwrap().push(e.clone()))
        .build()
        .layer(recording_http(recorded.clone()));
    client.initialize().await.unwrap();
    let old = client.session_id().unwrap();
    assert!(
        server
            .layer
            .manager()
            .close(&SessionId::parse(old.as_str()).unwrap())
            .await
            .unwrap()
    );

    let answer = client
        .request("tools/call", json!({"name": "echo", "arguments": {"message": "again"}}))
        .await
        .unwrap();
    assert_eq!(answer["content"][0]["text"], "again");
    let new = client.session_id().unwrap();
    assert_ne!(old, new);
    let stats = client.stats();
    assert_eq!(
        (stats.expirations, stats.reinitializations, stats.retried_requests),
        (1, 1, 1)
    );
    let events = events_of(&events);
    assert!(events.contains(&SessionEvent::Expired {
        session_id: old.clone()
    }));
    assert!(events.contains(&SessionEvent::Reinitialized {
        old: old.clone(),
        new: Some(new.clone())
    }));
    // The replayed initialize carried the original parameters, then came
    // notifications/initialized on the new session.
    let sent = recorded.lock().unwrap().clone();
    let bodies: Vec<Value> = sent
        .iter()
        .map(|(_, _, b)| serde_json::from_slice(b).unwrap())
        .collect();
    let inits: Vec<&Value> = bodies.iter().filter(|b| b["method"] == "initialize").collect();
    assert_eq!(inits.len(), 2);
    assert_eq!(inits[1]["params"], inits[0]["params"]);
    assert_eq!(inits[1]["params"]["clientInfo"]["name"], "replayed-client");
    let last_two: Vec<&str> = sent[sent.len() - 2..]
        .iter()
        .map(|(_, h, _)| h["mcp-session-id"].to_str().unwrap())
        .collect();
    assert_eq!(last_two, [new.as_str(), new.as_str()]);
    assert_eq!(bodies[bodies.len() - 2]["method"], "notifications/initialized");
}

/// Many requests hit the 404 at once: one re-initialization serves them all.
#[tokio::test]
async fn concurrent_404s_reinitialize_once() {
    let server = TestServer::start(test_layer()).await;
    let client = client(&server.url());
    client.initialize().await.unwrap();
    let old = client.session_id().unwrap();
    server
        .layer
        .manager()
        .close(&SessionId::parse(old.as_str()).unwrap())
        .await
        .unwrap();
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .request(
                        "tools/call",
                        json!({"name": "echo", "arguments": {"message": format!("m{i}")}}),
                    )
                    .await
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let answer = call.await.unwrap().unwrap();
        assert_eq!(answer["content"][0]["text"], format!("m{i}"));
    }
    assert_eq!(client.stats().reinitializations, 1);
    assert_eq!(server.layer.manager().metrics().sessions_created, 2);
}

/// The callback decides: giving up hands the 404 to the caller and forgets the session.
#[tokio::test]
async fn reinitialize_callback_can_refuse() {
    let server = TestServer::start(test_layer()).await;
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    let client = client_builder(&server.url())
        .reinitialize(Reinitialize::ask(move |expired| {
            assert!(expired.initialize_params.is_some());
            a.fetch_add(1, Ordering::SeqCst);
            ReinitDecision::GiveUp
        }))
        .build()
        .layer(http());
    client.initialize().await.unwrap();
    let old = client.session_id().unwrap();
    server
        .layer
        .manager()
        .close(&SessionId::parse(old.as_str()).unwrap())
        .await
        .unwrap();
    // Through the service, the caller sees the 404 itself.
    let response = client
        .clone()
        .oneshot(post(&server.url(), &json_rpc(50, "tools/list", json!({}))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert_eq!(client.session_id(), None);
    assert!(!client.is_initialized());
    assert_eq!(client.stats().reinitializations, 0);
    // The next convenience call starts a new session by itself.
    client.request("tools/list", json!({})).await.unwrap();
    assert!(client.session_id().is_some_and(|s| s != old));
}

/// `close()`: DELETE ends the session on the server, and every stream the client still
/// has open ends (the GET stream cleanly, a POST stream still waiting with an error).
#[tokio::test]
async fn close_deletes_the_session_and_ends_its_streams() {
    let server = TestServer::start(test_layer()).await;
    let client = client(&server.url());
    client.initialize().await.unwrap();
    let sid = client.session_id().unwrap();
    let mut listening = client.listen().await.unwrap();
    // A long call whose answer will never come before the close.
    let response = client
        .send("tools/call", json!({"name": "test_reconnection", "arguments": {}}))
        .await
        .unwrap();
    let mut waiting = response.into_body();
    assert_eq!(client.open_streams(), 2);
    let reader = tokio::spawn(async move { listening.next_event().await.map(|e| e.is_ok()) });
    tokio::time::sleep(Duration::from_millis(20)).await;

    client.close().await.unwrap();
    assert_eq!(client.open_streams(), 0);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(2), reader)
            .await
            .unwrap()
            .unwrap(),
        None,
        "the GET stream ended"
    );
    assert!(matches!(waiting.next_event().await, Some(Err(Error::SessionClosed))));
    assert_eq!(client.session_id(), None);
    let manager = server.layer.manager();
    assert!(
        !manager.close(&SessionId::parse(sid.as_str()).unwrap()).await.unwrap(),
        "deleted server-side"
    );
    assert_eq!(manager.metrics().active_sessions, Some(0));
}

/// A server that does not let clients end sessions answers DELETE with 405: still a
/// successful close on the client.
#[tokio::test]
async fn close_accepts_405() {
    let server = TestServer::start(
        McpSessionLayer::builder()
            .client_termination(false)
            .sse_retry(Duration::from_millis(30))
            .build(),
    )
    .await;
    let client = client(&server.url());
    client.initialize().await.unwrap();
    client.close().await.unwrap();
    assert_eq!(client.session_id(), None);
    assert_eq!(
        server.layer.manager().metrics().active_sessions,
        Some(1),
        "server kept it"
    );
}

/// `close_gracefully` lets a stream that waits for its answer get it first.
#[tokio::test]
async fn close_gracefully_waits_for_pending_answers() {
    let server = TestServer::start(test_layer()).await;
    let client = client(&server.url());
    client.initialize().await.unwrap();
    let response = client
        .send(
            "tools/call",
            json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": 1}}),
        )
        .await
        .unwrap();
    let reader = tokio::spawn(async move { response.into_body().into_response(&json!(2)).await });
    let started = tokio::time::Instant::now();
    client.close_gracefully(Duration::from_secs(3)).await.unwrap();
    let answer = reader.await.unwrap().unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "progress complete");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(server.layer.manager().metrics().active_sessions, Some(0));
}

/// Convenience calls on a fresh client initialize by themselves, once, however many
/// race for it.
#[tokio::test]
async fn first_calls_initialize_once() {
    let server = TestServer::start(test_layer()).await;
    let client = client(&server.url());
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.request("tools/list", json!({})).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().unwrap()["tools"].is_array());
    }
    assert_eq!(client.stats().initializations, 1);
    assert_eq!(server.layer.manager().metrics().sessions_created, 1);
}

/// Read as a plain `http_body::Body`, a resumed stream is clean SSE: the re-framed
/// events parse back to the same messages, with their ids, and nothing twice.
#[tokio::test]
async fn body_reads_as_clean_sse_across_a_reconnection() {
    use tower_mcp_session::sse::SseParser;
    let server = TestServer::start(test_layer()).await;
    let client = client(&server.url());
    let response = client
        .send("tools/call", json!({"name": "test_reconnection", "arguments": {}}))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let mut parser = SseParser::new(1 << 20);
    parser.push(&bytes);
    let mut events = Vec::new();
    while let Some(e) = parser.next_event().unwrap() {
        events.push(e);
    }
    assert!(!parser.finish(), "nothing left half-framed");
    assert_eq!(events.len(), 1, "priming dropped, the answer once: {events:?}");
    assert!(events[0].id.is_some());
    let answer: Value = serde_json::from_slice(&events[0].data).unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "reconnection test complete");
    assert!(client.stats().resumptions >= 1);
}

/// The server ends the session while the client listens on its GET stream: the stream
/// does not hang; its resumption gets 404 and it fails with `SessionExpired`.
#[tokio::test]
async fn server_side_close_ends_the_listening_stream() {
    let server = TestServer::start(test_layer()).await;
    let client = client(&server.url());
    client.initialize().await.unwrap();
    let mut stream = client.listen().await.unwrap();
    let sid = client.session_id().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    server.layer.manager().close(&sid).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(3), stream.next_event())
        .await
        .expect("the stream ends in time");
    assert!(matches!(outcome, Some(Err(Error::SessionExpired))), "{outcome:?}");
    assert_eq!(client.open_streams(), 0);
}

/// The standalone GET stream resumes too: a notification pushed while the connection
/// is cut arrives after the reconnection, and nothing arrives twice.
#[tokio::test]
async fn listening_stream_resumes_after_a_cut() {
    let server = TestServer::start(test_layer()).await;
    let client = client(&server.url());
    client.initialize().await.unwrap();
    let mut stream = client.listen().await.unwrap();
    let notify = || client.request("tools/call", json!({"name": "notify_me", "arguments": {}}));
    notify().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(3), stream.next_event())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.json().unwrap()["method"], "notifications/message");
    server.drop_connections();
    // Let the HTTP client notice its pooled connection is gone before the next POST.
    tokio::time::sleep(Duration::from_millis(50)).await;
    notify().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(3), stream.next_event())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.json().unwrap()["method"], "notifications/message");
    assert_ne!(first.id, second.id);
    assert!(client.stats().resumptions >= 1);
    client.close().await.unwrap();
    assert!(stream.next_event().await.is_none(), "closed with the session");
}
