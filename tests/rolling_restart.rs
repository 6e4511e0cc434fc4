//! A rolling restart with real processes: two `echo_server` instances sharing a private
//! `redis-server`, a client that round-robins over them like a load balancer, and
//! continuous traffic (tool calls, SSE calls with progress, a `GET` stream per session
//! receiving pushes, resumes with `Last-Event-ID`). Instance A is stopped with SIGTERM
//! (it drains), started again on the same port, then B. Nothing may be lost, nothing
//! duplicated, no live session may get a 404, every call must be answered.
//!
//! The example binary is built by running `cargo build --example echo_server
//! --all-features` with the cargo that runs this test (`env!("CARGO")`), in the target
//! directory and profile of this test's own executable: after `cargo test
//! --all-features` that build is already fresh, and run alone the test still works.
#![cfg(all(feature = "redis", unix))]

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mcp_test_support::redis_server::{RedisServer, free_port};
use serde_json::{Value, json};
use tower_mcp_session::sse::SseParser;

#[path = "rolling_restart/fleet.rs"]
mod fleet;

use fleet::{Balancer, Instance, echo_binary, get, post, send_to};

const VERSION: &str = "2025-11-25";
const SESSIONS: usize = 4;

fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "rolling", "version": "1"}}})
}

async fn create_session(lb: &Balancer) -> String {
    let response = lb.send(|addr| post(addr, None, &initialize_body())).await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = response.into_body().collect().await;
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = lb.send(|addr| post(addr, Some(&id), &initialized)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    id
}

/// One logical SSE stream read over as many connections as it takes: what arrived.
#[derive(Default)]
struct StreamLog {
    parser: Option<SseParser>,
    /// Every event id seen (must never repeat).
    ids: Vec<String>,
    /// Every JSON message seen.
    messages: Vec<Value>,
    connections: usize,
    /// Told of every message as it arrives.
    counter: Option<Arc<AtomicUsize>>,
}

impl StreamLog {
    fn parser(&mut self) -> &mut SseParser {
        self.parser.get_or_insert_with(|| SseParser::new(1 << 20))
    }

    /// Read one connection's body to its end (or until `stop`); whether it ended
    /// cleanly.
    async fn read(&mut self, response: Response<Incoming>, stop: Option<&AtomicBool>) -> bool {
        self.connections += 1;
        let mut body = response.into_body();
        let clean = loop {
            let frame = tokio::select! {
                frame = body.frame() => frame,
                () = tokio::time::sleep(Duration::from_millis(50)), if stop.is_some() => {
                    if stop.is_some_and(|s| s.load(Ordering::SeqCst)) { break true; }
                    continue;
                }
            };
            match frame {
                None => break true,
                Some(Err(_)) => break false,
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    self.parser().push(&data);
                    while let Ok(Some(event)) = self.parser().next_event() {
                        if let Some(id) = event.id.filter(|id| !id.is_empty()) {
                            self.ids.push(id);
                        }
                        if !event.data.is_empty() {
                            self.messages
                                .push(serde_json::from_slice(&event.data).expect("JSON event"));
                            if let Some(counter) = &self.counter {
                                counter.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                }
            }
        };
        self.parser().finish();
        clean
    }

    fn last_event_id(&mut self) -> String {
        self.parser().last_event_id().to_owned()
    }

    /// The client's reconnection delay, as the server last set it (capped for the test).
    fn retry(&mut self) -> Duration {
        Duration::from_millis(self.parser().reconnection_time().unwrap_or(100).min(1_000))
    }
}

/// A session's `GET` stream, reconnected (resuming with `Last-Event-ID`) whenever it
/// ends, until `stop`.
async fn listen(lb: Arc<Balancer>, session: String, stop: Arc<AtomicBool>, pushes: Arc<AtomicUsize>) -> StreamLog {
    let mut log = StreamLog {
        counter: Some(pushes),
        ..StreamLog::default()
    };
    while !stop.load(Ordering::SeqCst) {
        let last = log.last_event_id();
        let response = lb.send(|addr| get(addr, &session, &last)).await;
        if response.status() != StatusCode::OK {
            lb.fail(format!("GET answered {}", response.status()));
            return log;
        }
        log.read(response, Some(&stop)).await;
        if !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(log.retry()).await;
        }
    }
    log
}

/// A streamed tool call read to its answer, resuming the stream elsewhere whenever its
/// connection ends first.
async fn progress_call(
    lb: &Balancer,
    pinned: Option<(SocketAddr, tokio::sync::oneshot::Sender<()>)>,
    session: &str,
    id: u64,
    interval_ms: u64,
) -> StreamLog {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "test_tool_with_progress", "arguments": {"intervalMs": interval_ms},
        "_meta": {"progressToken": format!("t{id}")}}});
    let mut log = StreamLog::default();
    let response = match pinned {
        Some((addr, started)) => {
            let response = send_to(addr, post(addr, Some(session), &body))
                .await
                .expect("pinned call sent");
            // The layer answers once the pump runs.
            let _ = started.send(());
            response
        }
        None => lb.send(|addr| post(addr, Some(session), &body)).await,
    };
    assert_eq!(response.status(), StatusCode::OK);
    log.read(response, None).await;
    for _ in 0..100 {
        if log.messages.iter().any(|m| m.get("id") == Some(&json!(id))) {
            return log;
        }
        tokio::time::sleep(log.retry()).await;
        let last = log.last_event_id();
        let response = lb.send(|addr| get(addr, session, &last)).await;
        if response.status() != StatusCode::OK {
            lb.fail(format!("resume of call {id} answered {}", response.status()));
            return log;
        }
        log.read(response, None).await;
    }
    lb.fail(format!("call {id} never answered"));
    log
}

/// Check a progress call's stream: progress 0, 50, 100 and the answer, each once.
fn check_progress(lb: &Balancer, id: u64, log: &StreamLog) {
    let progress: Vec<&Value> = log
        .messages
        .iter()
        .filter_map(|m| m.pointer("/params/progress"))
        .collect();
    let answers = log.messages.iter().filter(|m| m.get("id") == Some(&json!(id))).count();
    if progress != [&json!(0), &json!(50), &json!(100)] || answers != 1 || log.messages.len() != 4 {
        lb.fail(format!(
            "call {id}: progress {progress:?}, {answers} answers, {:?}",
            log.messages
        ));
    }
    let unique: HashSet<&String> = log.ids.iter().collect();
    if unique.len() != log.ids.len() {
        lb.fail(format!("call {id}: repeated event ids {:?}", log.ids));
    }
}

/// What one session's traffic did.
#[derive(Default)]
struct Traffic {
    calls: usize,
    answered: usize,
    pushes: Vec<String>,
    resumed_streams: usize,
}

/// Calls until `stop`: an echo, a push to the session's own `GET` stream, a streamed
/// call with progress.
async fn traffic(lb: Arc<Balancer>, n: usize, session: String, stop: Arc<AtomicBool>) -> Traffic {
    let mut done = Traffic::default();
    let mut id = 1_000 * n as u64;
    while !stop.load(Ordering::SeqCst) {
        id += 1;
        let text = format!("s{n}-{id}");
        let echo = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": text}}});
        done.calls += 1;
        let response = lb.send(|addr| post(addr, Some(&session), &echo)).await;
        let answer: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap_or(Value::Null);
        match answer.pointer("/result/content/0/text") {
            Some(got) if got == &json!(text) => done.answered += 1,
            _ => lb.fail(format!("echo {id}: {answer}")),
        }

        id += 1;
        let tag = format!("push-s{n}-{id}");
        let push = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "notify_me", "arguments": {"data": tag}}});
        done.calls += 1;
        let response = lb.send(|addr| post(addr, Some(&session), &push)).await;
        let answer: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap_or(Value::Null);
        match answer.pointer("/result/content/0/text") {
            Some(got) if got == &json!("notification sent") => {
                done.answered += 1;
                done.pushes.push(tag);
            }
            _ => lb.fail(format!("notify_me {id}: {answer}")),
        }

        id += 1;
        done.calls += 1;
        let log = progress_call(&lb, None, &session, id, 100).await;
        check_progress(&lb, id, &log);
        done.answered += usize::from(log.messages.iter().any(|m| m.get("id") == Some(&json!(id))));
        done.resumed_streams += usize::from(log.connections > 1);
    }
    done
}

/// Stop instance `i` the way an orchestrator does, while traffic runs, and start it
/// again on the same port. Returns the drain report line it printed.
async fn restart(
    lb: &Arc<Balancer>,
    instance: Instance,
    i: usize,
    binary: &PathBuf,
    redis: &str,
    session: &str,
) -> (Instance, String) {
    let addr = lb.addrs[i];
    // A slow streamed call pinned to this instance: its pump is running when the
    // signal arrives, so the drain has something to wait for.
    let (started, running) = tokio::sync::oneshot::channel();
    let slow = {
        let (lb, session) = (lb.clone(), session.to_owned());
        tokio::spawn(async move { progress_call(&lb, Some((addr, started)), &session, 900_000 + i as u64, 600).await })
    };
    running.await.expect("the slow call started");
    instance.terminate();
    instance.wait_line("draining");

    // A new session is refused here, with the drain's own answer.
    let refused = send_to(addr, post(addr, None, &initialize_body()))
        .await
        .expect("draining instance answers");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], -32000);
    assert_eq!(body["error"]["data"]["reason"], "draining");
    // A new GET is sent elsewhere at once: a `retry` and the end, no events.
    let got = send_to(addr, get(addr, session, ""))
        .await
        .expect("draining instance answers");
    assert_eq!(got.status(), StatusCode::OK);
    let bytes = got.into_body().collect().await.unwrap().to_bytes();
    assert!(bytes.starts_with(b"retry: "), "{bytes:?}");
    assert!(!bytes.windows(3).any(|w| w == b"id:"), "{bytes:?}");

    // The balancer notices a little later, as real ones do.
    tokio::time::sleep(Duration::from_millis(200)).await;
    lb.in_rotation[i].store(false, Ordering::SeqCst);
    let report = instance.wait_line("drain");
    let status = instance.wait();
    assert!(status.success(), "echo_server exited with {status}");
    let slow_log = slow.await.unwrap();
    check_progress(lb, 900_000 + i as u64, &slow_log);
    assert!(slow_log.connections > 1, "the drain ended the slow call's connection");

    // Back in rotation before it even starts, as a balancer without health checks
    // would have it: requests meanwhile find nobody there and go to the other one.
    lb.in_rotation[i].store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let instance = Instance::start(binary, addr, redis);
    instance.wait_line("listening");
    (instance, report.last().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_traffic_loses_nothing() {
    let t0 = std::time::Instant::now();
    let phase = |what: &str| println!("{:>6} ms  {what}", t0.elapsed().as_millis());
    let binary = echo_binary();
    phase("example built");
    let redis = RedisServer::start();
    let url = redis.url();
    let addrs = [0, 1].map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())));
    let a = Instance::start(&binary, addrs[0], &url);
    let b = Instance::start(&binary, addrs[1], &url);
    a.wait_line("listening");
    b.wait_line("listening");
    let lb = Arc::new(Balancer {
        addrs,
        in_rotation: [AtomicBool::new(true), AtomicBool::new(true)],
        next: AtomicUsize::new(0),
        resent: AtomicUsize::new(0),
        draining_refusals: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
    });

    let stop_calls = Arc::new(AtomicBool::new(false));
    let stop_listening = Arc::new(AtomicBool::new(false));
    let pushes_seen = Arc::new(AtomicUsize::new(0));
    let mut sessions = Vec::new();
    let (mut listeners, mut workers) = (Vec::new(), Vec::new());
    for n in 0..SESSIONS {
        let session = create_session(&lb).await;
        listeners.push(tokio::spawn(listen(
            lb.clone(),
            session.clone(),
            stop_listening.clone(),
            pushes_seen.clone(),
        )));
        workers.push(tokio::spawn(traffic(
            lb.clone(),
            n,
            session.clone(),
            stop_calls.clone(),
        )));
        sessions.push(session);
    }
    // New sessions keep coming during the restarts too.
    let creator = {
        let (lb, stop) = (lb.clone(), stop_calls.clone());
        tokio::spawn(async move {
            let mut created = 0;
            while !stop.load(Ordering::SeqCst) {
                create_session(&lb).await;
                created += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            created
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    phase("traffic running");
    let (a, report_a) = restart(&lb, a, 0, &binary, &url, &sessions[0]).await;
    phase("A restarted");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (b, report_b) = restart(&lb, b, 1, &binary, &url, &sessions[1]).await;
    phase("B restarted");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_calls.store(true, Ordering::SeqCst);

    let mut done = Vec::new();
    for worker in workers {
        done.push(worker.await.unwrap());
    }
    let created = creator.await.unwrap();
    phase("traffic stopped");
    // Every acknowledged push reaches its GET stream; give the streams time to get
    // them (a liveness bound, not a timing assertion).
    let expected: usize = done.iter().map(|t| t.pushes.len()).sum();
    for _ in 0..300 {
        if pushes_seen.load(Ordering::SeqCst) >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A little longer, so that a duplicate would have time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    phase("pushes delivered");
    stop_listening.store(true, Ordering::SeqCst);
    let mut streams = Vec::new();
    for listener in listeners {
        streams.push(listener.await.unwrap());
    }

    let failures = lb.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:#?}");
    for (n, (traffic, stream)) in done.iter().zip(&streams).enumerate() {
        assert_eq!(traffic.calls, traffic.answered, "session {n}: every call answered");
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for message in &stream.messages {
            let data = message.pointer("/params/data").and_then(Value::as_str).unwrap_or("?");
            *seen.entry(data).or_default() += 1;
        }
        for tag in &traffic.pushes {
            assert_eq!(seen.get(tag.as_str()), Some(&1), "session {n}: push {tag} seen once");
        }
        assert_eq!(
            stream.messages.len(),
            traffic.pushes.len(),
            "session {n}: nothing else on the GET stream"
        );
        let unique: HashSet<&String> = stream.ids.iter().collect();
        assert_eq!(unique.len(), stream.ids.len(), "session {n}: no event id twice");
        assert!(
            stream.connections >= 2,
            "session {n}: the GET stream was moved by a drain"
        );
    }
    for report in [&report_a, &report_b] {
        assert_eq!(report, "drained: nothing left in flight");
    }
    let resumed: usize = done.iter().map(|t| t.resumed_streams).sum();
    let calls: usize = done.iter().map(|t| t.calls).sum();
    println!(
        "calls {calls}, pushes {expected}, sessions created during the run {created}, streamed calls resumed \
         elsewhere {resumed}, initialize refused while draining {}, requests sent again {}",
        lb.draining_refusals.load(Ordering::Relaxed),
        lb.resent.load(Ordering::Relaxed),
    );
    drop((a, b));
}
