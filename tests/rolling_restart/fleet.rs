//! The fleet of the rolling-restart test: `echo_server` processes, and a client that
//! balances requests over them.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::VERSION;

/// Build the example (a no-op when it is fresh); the path of the binary.
pub(crate) fn echo_binary() -> PathBuf {
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
pub(crate) struct Instance {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Instance {
    pub(crate) fn start(binary: &PathBuf, addr: SocketAddr, redis: &str) -> Self {
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
    pub(crate) fn wait_line(&self, what: &str) -> Vec<String> {
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

    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Wait for the process to exit; its status.
    pub(crate) fn wait(mut self) -> std::process::ExitStatus {
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
pub(crate) enum Unsent {
    /// Nothing listens there (the instance is down or not up yet).
    Refused,
    /// The connection ended before an answer: the listener went away with the
    /// connection still in its backlog.
    Closed,
}

/// One request on a connection of its own, as a balancer that does not pool would
/// send it.
pub(crate) async fn send_to(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, Unsent> {
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
pub(crate) struct Balancer {
    pub(crate) addrs: [SocketAddr; 2],
    pub(crate) in_rotation: [AtomicBool; 2],
    pub(crate) next: AtomicUsize,
    /// Requests sent again because an instance was down or closed the connection.
    pub(crate) resent: AtomicUsize,
    /// `initialize` answered 503 `draining` and sent to the other instance.
    pub(crate) draining_refusals: AtomicUsize,
    pub(crate) failures: Mutex<Vec<String>>,
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

    pub(crate) fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }

    /// Send `build(addr)` to the next instance in rotation, trying the next one when
    /// an instance is down or refuses a new session because it drains.
    pub(crate) async fn send(&self, build: impl Fn(SocketAddr) -> Request<Full<Bytes>>) -> Response<Incoming> {
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

pub(crate) fn post(addr: SocketAddr, session: Option<&str>, body: &Value) -> Request<Full<Bytes>> {
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

pub(crate) fn get(addr: SocketAddr, session: &str, last_event_id: &str) -> Request<Full<Bytes>> {
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
