//! Helpers of `tests/chaos.rs`: `echo_server` processes, a client that tolerates
//! connections killed under it, and the calls the scenarios make.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mcp_test_support::http::{Event, initialize_body, request, sse_events};
use mcp_test_support::redis_server::free_port;
use mcp_test_support::tcp;
use serde_json::{Value, json};

/// One scenario at a time: each starts several processes on a small machine.
/// (Each test has its own runtime; tokio's mutex works across them, and a failed
/// scenario does not poison it for the next.)
pub(crate) async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE.lock().await
}

/// The `echo_server` example, built once per test binary with the features, target
/// directory and profile of this test binary (so the build reuses its artifacts).
fn echo_server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // <target>/<profile>/deps/chaos-<hash>
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("<target>/<profile>");
        let target_dir = profile_dir.parent().expect("<target>");
        let mut features = vec!["redis"];
        if cfg!(feature = "tracing") {
            features.push("tracing");
        }
        if cfg!(feature = "conformance") {
            features.push("conformance");
        }
        if cfg!(feature = "axum") {
            features.push("axum");
        }
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--example", "echo_server", "--no-default-features"])
            .arg("--features")
            .arg(features.join(","))
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.arg("--profile").arg(other);
            }
        }
        let status = cmd.status().expect("run cargo to build the echo_server example");
        assert!(status.success(), "building the echo_server example failed: {status}");
        let bin = profile_dir
            .join("examples")
            .join(format!("echo_server{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.exists(), "{} was built", bin.display());
        bin
    })
}

/// An `echo_server --redis URL` process on a free loopback port, killed when dropped.
pub(crate) struct EchoProcess {
    child: Option<Child>,
    /// Kept open: the server must not get EPIPE for printing.
    _stdout: Option<BufReader<ChildStdout>>,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

impl EchoProcess {
    /// Start one; blocks until it listens.
    pub(crate) fn start(redis_url: &str) -> Self {
        Self::start_with(redis_url, &[])
    }

    /// Start one with `extra` arguments; blocks until it listens.
    pub(crate) fn start_with(redis_url: &str, extra: &[&str]) -> Self {
        let bin = echo_server_bin();
        let mut last = String::new();
        for _ in 0..20 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let mut child = Command::new(bin)
                .args(["--addr", &addr.to_string(), "--redis", redis_url])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn echo_server");
            let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
            let mut line = String::new();
            // The server prints one line once it listens; EOF means it exited (most
            // likely the port was taken meanwhile).
            let _ = stdout.read_line(&mut line);
            if line.contains("listening") {
                return Self {
                    child: Some(child),
                    _stdout: Some(stdout),
                    addr,
                };
            }
            last = format!("{:?}", child.wait());
        }
        panic!("echo_server did not start: {last}");
    }

    /// SIGKILL, and wait for the process to be gone.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL echo_server");
            let _ = child.wait();
        }
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `(stream, seq)` of an event id `<stream>-<seq>`.
pub(crate) fn id_parts(id: &str) -> (String, u64) {
    let (stream, seq) = id.rsplit_once('-').expect("an event id <stream>-<seq>");
    (stream.to_owned(), seq.parse().expect("a numeric sequence number"))
}

/// What reading a stream gave.
#[derive(Debug)]
pub(crate) enum Got {
    /// A complete event.
    Event(Event),
    /// The body ended cleanly.
    End,
    /// The connection broke (the server was killed).
    Broken,
    /// Nothing within the wait.
    Quiet,
}

/// An SSE response read as a client reads it, surviving the server's death.
pub(crate) struct Sse {
    body: Incoming,
    buf: Vec<u8>,
    /// Whether the body has ended or broken.
    pub(crate) ended: bool,
}

fn with_last_event_id(
    mut req: http::Request<http_body_util::Full<Bytes>>,
    id: Option<&str>,
) -> http::Request<http_body_util::Full<Bytes>> {
    if let Some(id) = id {
        req.headers_mut()
            .insert("last-event-id", HeaderValue::from_str(id).unwrap());
    }
    req
}

async fn exchange(
    addr: SocketAddr,
    method: Method,
    sid: Option<&str>,
    last_event_id: Option<&str>,
    body: Option<&Value>,
) -> http::Response<Incoming> {
    let req = with_last_event_id(tcp::req(addr, method, sid, body), last_event_id);
    tokio::time::timeout(Duration::from_secs(10), tcp::client().request(req))
        .await
        .expect("an answer's head within 10 s: no request hangs")
        .expect("an HTTP exchange")
}

/// The status and `error.data.reason` of a refusal.
async fn refusal(resp: http::Response<Incoming>) -> (StatusCode, String) {
    let (status, _, body) = tcp::read_body(resp).await;
    let reason = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["error"]["data"]["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    (status, reason)
}

impl Sse {
    /// Send a request whose answer must be an SSE stream.
    pub(crate) async fn open(
        addr: SocketAddr,
        method: Method,
        sid: &str,
        last_event_id: Option<&str>,
        body: Option<&Value>,
    ) -> Self {
        match Self::try_open(addr, method, sid, last_event_id, body).await {
            Ok(sse) => sse,
            Err((status, reason)) => panic!("an SSE stream, got {status} {reason}"),
        }
    }

    /// [`open`](Self::open), with the refusal as an error.
    pub(crate) async fn try_open(
        addr: SocketAddr,
        method: Method,
        sid: &str,
        last_event_id: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Self, (StatusCode, String)> {
        let resp = exchange(addr, method, Some(sid), last_event_id, body).await;
        if resp.status() != StatusCode::OK {
            return Err(refusal(resp).await);
        }
        Ok(Self::new(resp))
    }

    fn new(resp: http::Response<Incoming>) -> Self {
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Self {
            body: resp.into_body(),
            buf: Vec::new(),
            ended: false,
        }
    }

    /// The next event, the end, or quiet after `within`.
    pub(crate) async fn event(&mut self, within: Duration) -> Got {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(event) = sse_events(&block).into_iter().next() {
                    return Got::Event(event);
                }
            }
            if self.ended {
                return Got::End;
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Got::Quiet,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Ok(Some(Err(_))) => {
                    self.ended = true;
                    return Got::Broken;
                }
                Ok(None) => self.ended = true,
            }
        }
    }

    /// The next `n` events that carry a message, as `(id, message)`; fails the test if
    /// they do not come within `within`.
    pub(crate) async fn messages(&mut self, n: usize, within: Duration) -> Vec<(String, Value)> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.event(within).await {
                Got::Event(e) if e.data.is_empty() => {}
                Got::Event(e) => got.push(message(e)),
                other => panic!("{n} messages within {within:?}; got {got:?}, then {other:?}"),
            }
        }
        got
    }

    /// Every message until the stream ends, breaks or is quiet for `quiet`.
    pub(crate) async fn messages_until_quiet(&mut self, quiet: Duration) -> Vec<(String, Value)> {
        let mut got = Vec::new();
        while let Got::Event(e) = self.event(quiet).await {
            if !e.data.is_empty() {
                got.push(message(e));
            }
        }
        got
    }
}

fn message(e: Event) -> (String, Value) {
    let id = e.id.expect("every message of a resumable stream has an id");
    (id, serde_json::from_str(&e.data).expect("a JSON-RPC message"))
}

/// `initialize`; the new session's id, or the refusal.
pub(crate) async fn try_initialize(addr: SocketAddr) -> Result<String, (StatusCode, String)> {
    let resp = exchange(addr, Method::POST, None, None, Some(&initialize_body("2025-11-25"))).await;
    if resp.status() != StatusCode::OK {
        return Err(refusal(resp).await);
    }
    let (_, headers, _) = tcp::read_body(resp).await;
    Ok(headers["mcp-session-id"].to_str().unwrap().to_owned())
}

/// `initialize`, which must succeed.
pub(crate) async fn initialize(addr: SocketAddr) -> String {
    try_initialize(addr)
        .await
        .unwrap_or_else(|e| panic!("initialize: {e:?}"))
}

/// `tools/call notify_me` pushing `{"data": n}` to the session's GET stream:
/// `Ok(true)` when the push was acknowledged, `Ok(false)` when the tool reported it
/// failed, or the refusal.
pub(crate) async fn try_push(addr: SocketAddr, sid: &str, n: u64) -> Result<bool, (StatusCode, String)> {
    let call = request(n, "tools/call", json!({"name": "notify_me", "arguments": {"data": n}}));
    let resp = exchange(addr, Method::POST, Some(sid), None, Some(&call)).await;
    if resp.status() != StatusCode::OK {
        return Err(refusal(resp).await);
    }
    let (_, _, body) = tcp::read_body(resp).await;
    let answer: Value = serde_json::from_slice(&body).expect("a JSON answer");
    Ok(answer["result"]["content"][0]["text"] == "notification sent")
}

/// A push that must be acknowledged.
pub(crate) async fn push(addr: SocketAddr, sid: &str, n: u64) {
    assert_eq!(try_push(addr, sid, n).await, Ok(true), "push {n} acknowledged");
}

fn slow_body(id: u64, count: u64, delay_ms: u64) -> Value {
    request(
        id,
        "tools/call",
        json!({"name": "slow_stream", "arguments": {"count": count, "delay_ms": delay_ms}}),
    )
}

/// Start `tools/call slow_stream`; its SSE answer.
pub(crate) async fn slow_call(addr: SocketAddr, sid: &str, id: u64, count: u64, delay_ms: u64) -> Sse {
    Sse::open(addr, Method::POST, sid, None, Some(&slow_body(id, count, delay_ms))).await
}

/// `tools/call slow_stream` read to its end (or until the connection ends): the
/// messages received, or the refusal.
pub(crate) async fn try_slow_call(
    addr: SocketAddr,
    sid: &str,
    id: u64,
    count: u64,
    delay_ms: u64,
) -> Result<Vec<(String, Value)>, (StatusCode, String)> {
    let resp = exchange(
        addr,
        Method::POST,
        Some(sid),
        None,
        Some(&slow_body(id, count, delay_ms)),
    )
    .await;
    if resp.status() != StatusCode::OK {
        return Err(refusal(resp).await);
    }
    Ok(Sse::new(resp).messages_until_quiet(Duration::from_secs(5)).await)
}
