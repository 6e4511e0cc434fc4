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
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mcp_test_support::redis_server::{RedisServer, free_port};
use serde_json::{Value, json};
use tower_mcp_session::sse::SseParser;

const VERSION: &str = "2025-11-25";
const SESSIONS: usize = 4;

/// Build the example (a no-op when it is fresh); the path of the binary.
fn echo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // <target>/<profile>/deps/rolling_restart-<hash>
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("profile directory");
    let target_dir = profile_dir.parent().expect("target directory");
    let profile = profile_dir.file_name().and_then(|n| n.to_str()).expect("profile name");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "--example", "echo_server", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        // All features, as CI's `cargo test --all-features` builds the example: then
        // this is a no-op, and the binary other tests find there never loses a feature.
        .arg("--all-features");
    match profile {
        "debug" => {}
        "release" => {
            cargo.arg("--release");
        }
        other => {
            cargo.args(["--profile", other]);
        }
    }
    let status = cargo.status().expect("run cargo to build the echo_server example");
    assert!(status.success(), "cargo build --example echo_server failed: {status}");
    profile_dir.join("examples").join("echo_server")
}

/// One `echo_server` process and the lines it prints.
struct Instance {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Instance {
    fn start(binary: &PathBuf, addr: SocketAddr, redis: &str) -> Self {
        let mut child = Command::new(binary)
            .args(["--addr", &addr.to_string(), "--redis", redis, "--drain-seconds", "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start echo_server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Wait for a line containing `what`; the lines before it.
    fn wait_line(&self, what: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(what) => {
                    seen.push(line);
                    return seen;
                }
                Ok(line) => seen.push(line),
                Err(e) => panic!("echo_server never printed {what:?} ({e}); printed {seen:?}"),
            }
        }
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Wait for the process to exit; its status.
    fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for echo_server")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Why a request got no answer.
#[derive(Debug)]
enum Unsent {
    /// Nothing listens there (the instance is down or not up yet).
    Refused,
    /// The connection ended before an answer: the listener went away with the
    /// connection still in its backlog.
    Closed,
}

/// One request on a connection of its own, as a balancer that does not pool would
/// send it.
async fn send_to(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, Unsent> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|_| Unsent::Refused)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Unsent::Closed)?;
    tokio::spawn(conn);
    sender.send_request(req).await.map_err(|_| Unsent::Closed)
}

/// The client side of a round-robin balancer over the two instances.
struct Balancer {
    addrs: [SocketAddr; 2],
    in_rotation: [AtomicBool; 2],
    next: AtomicUsize,
    /// Requests sent again because an instance was down or closed the connection.
    resent: AtomicUsize,
    /// `initialize` answered 503 `draining` and sent to the other instance.
    draining_refusals: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Balancer {
    fn pick(&self) -> SocketAddr {
        for _ in 0..2 {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % 2;
            if self.in_rotation[i].load(Ordering::SeqCst) {
                return self.addrs[i];
            }
        }
        self.addrs[self.next.load(Ordering::Relaxed) % 2]
    }

    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }

    /// Send `build(addr)` to the next instance in rotation, trying the next one when
    /// an instance is down or refuses a new session because it drains.
    async fn send(&self, build: impl Fn(SocketAddr) -> Request<Full<Bytes>>) -> Response<Incoming> {
        for _ in 0..400 {
            let addr = self.pick();
            match send_to(addr, build(addr)).await {
                Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    let (head, body) = response.into_parts();
                    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                    let reason = serde_json::from_slice::<Value>(&bytes).ok();
                    let reason = reason.as_ref().and_then(|v| v.pointer("/error/data/reason"));
                    if reason == Some(&json!("draining")) && head.headers.contains_key("retry-after") {
                        self.draining_refusals.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    panic!("503 from {addr}: {}", String::from_utf8_lossy(&bytes));
                }
                Ok(response) => {
                    if response.status() == StatusCode::NOT_FOUND {
                        self.fail(format!("404 from {addr} for a live session"));
                    }
                    return response;
                }
                Err(Unsent::Refused) => {}
                Err(Unsent::Closed) => {}
            }
            self.resent.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no instance answered in 400 attempts");
    }
}

fn post(addr: SocketAddr, session: Option<&str>, body: &Value) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json");
    if let Some(session) = session {
        b = b
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", VERSION);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

fn get(addr: SocketAddr, session: &str, last_event_id: &str) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{addr}/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", VERSION);
    if !last_event_id.is_empty() {
        b = b.header("last-event-id", last_event_id);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

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
    let mut log = StreamLog::default();
    while !stop.load(Ordering::SeqCst) {
        let last = log.last_event_id();
        let response = lb.send(|addr| get(addr, &session, &last)).await;
        if response.status() != StatusCode::OK {
            lb.fail(format!("GET answered {}", response.status()));
            return log;
        }
        let before = log.messages.len();
        log.read(response, Some(&stop)).await;
        pushes.fetch_add(log.messages.len() - before, Ordering::SeqCst);
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
    let binary = echo_binary();
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

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (a, report_a) = restart(&lb, a, 0, &binary, &url, &sessions[0]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (b, report_b) = restart(&lb, b, 1, &binary, &url, &sessions[1]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_calls.store(true, Ordering::SeqCst);

    let mut done = Vec::new();
    for worker in workers {
        done.push(worker.await.unwrap());
    }
    let created = creator.await.unwrap();
    // Every acknowledged push reaches its GET stream; give the streams time to get
    // them (a liveness bound, not a timing assertion).
    let expected: usize = done.iter().map(|t| t.pushes.len()).sum();
    for _ in 0..300 {
        if pushes_seen.load(Ordering::SeqCst) >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
