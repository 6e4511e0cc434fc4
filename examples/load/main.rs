//! Load harness: starts each server as a child process on 127.0.0.1, drives it over
//! keep-alive HTTP/1.1 connections with a hyper client, and prints Markdown tables.
//!
//! ```text
//! cargo run --release --example load                      # everything (≈ 15 min)
//! cargo run --release --example load -- --only throughput --duration 5
//! cargo run --release --example load -- --only memory --mem-sizes 10000,100000,1000000
//! ```
//!
//! With the `redis` feature the Redis rows (`b-redis`, `b-redis-sse`) join the
//! throughput, creation and memory scenarios; `--servers` picks rows in every scenario:
//!
//! ```text
//! cargo run --release --features redis --example load                 # everything, Redis rows too
//! cargo run --release --features redis --example load -- --only throughput,creation --servers b,b-redis,b-redis-sse
//! cargo run --release --features redis --example load -- --only memory --servers b-redis --mem-sizes 10000,100000,1000000
//! ```
//!
//! Servers (`--serve KIND` runs one; the driver starts them itself):
//!
//! | kind | what |
//! |---|---|
//! | `a` | the echo MCP server of `examples/common`, no layer |
//! | `b` | the same behind `McpSessionLayer` (memory store) |
//! | `c` | rmcp 3.11 `StreamableHttpService`, stateful (`LocalSessionManager`) |
//! | `d` | rmcp 3.11 stateless (`legacy_session_mode = false`), alone |
//! | `e` | rmcp 3.11 stateless behind `McpSessionLayer` |
//! | `f` | floor: a fixed JSON answer, request never parsed |
//! | `b-redis` | (b) with `RedisSessionStore` (local cache on) and `RedisEventLog` over one `ConnectionManager`, built as `echo_server --redis` builds them (`--redis URL`; `redis` feature) |
//! | `t` | `examples/rmcp_modern.rs`: rmcp 3.11 serving only 2026-07-28, behind the layer in translation mode, driven as a 2025-06-18 client (build it first: `cargo build --release --all-features --example rmcp_modern`) |
//!
//! `--only invalidation` (`redis` feature): two `b-redis` servers on one redis-server;
//! how long after a `DELETE` on one the other answers the session with 404
//! (`invalidation.rs`).
//!
//! `--sse` makes the echo server of (a), (b) and `b-redis` answer `tools/call` as SSE
//! (rows `a-sse`, `b-sse`, `b-redis-sse`; with the layer, resumable streams in its event
//! log).
//!
//! Every server stops by itself after `--lifetime` seconds (default 900) and the driver
//! kills each one when its scenario ends. TCP_NODELAY is on unless `--no-nodelay`.
//!
//! For every `b-redis` server the driver starts its own `redis-server` (from `PATH`, as
//! `tests/support/redis_server.rs` does for the tests: a free loopback port, a temporary
//! directory, no persistence) and kills it after the server. Those rows report the
//! redis-server's CPU per request beside the server's, and in the memory scenario its
//! `used_memory` and VmRSS beside the server's VmRSS, since the deployment pays for both
//! processes. The session cap is `--max-sessions`, as for (b), and sessions are kept by
//! Redis for the store's default idle timeout (30 min), well beyond any measurement.

#[cfg(feature = "redis")]
mod invalidation;

use mcp_test_support::echo as common;
#[cfg(feature = "redis")]
use mcp_test_support::redis_server;
use mcp_test_support::rmcp as rmcp_common;

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::serve::ListenerExt;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tower_mcp_session::McpSessionLayer;

// ---------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct ServeArgs {
    kind: String,
    addr: Option<SocketAddr>,
    nodelay: bool,
    max_sessions: usize,
    sse: bool,
    json: bool,
    lifetime: u64,
    /// `--redis URL`, for `b-redis`.
    redis: Option<String>,
}

const FLOOR_ANSWER: &str =
    r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"hello"}],"isError":false}}"#;

async fn floor(_req: Request<axum::body::Body>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(FLOOR_ANSWER.as_bytes())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn session_layer(max_sessions: usize) -> McpSessionLayer {
    McpSessionLayer::builder().max_sessions(Some(max_sessions)).build()
}

fn serve(args: ServeArgs) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let echo = common::EchoOptions {
            sse_tool_calls: args.sse,
            manager: None,
        };
        let app = match args.kind.as_str() {
            "a" => Router::new().route_service("/mcp", common::echo_service(echo)),
            "b" => Router::new()
                .route_service("/mcp", common::echo_service(echo))
                .layer(session_layer(args.max_sessions)),
            "c" => Router::new().route_service("/mcp", rmcp_common::stateful()),
            "d" => Router::new().route_service("/mcp", rmcp_common::stateless(args.json)),
            "e" => Router::new()
                .route_service("/mcp", rmcp_common::stateless(args.json))
                .layer(session_layer(args.max_sessions)),
            "f" => Router::new().route_service("/mcp", tower::service_fn(floor)),
            #[cfg(feature = "redis")]
            "b-redis" => {
                let url = args.redis.as_deref().expect("--serve b-redis needs --redis URL");
                let builder = common::with_redis(McpSessionLayer::builder(), url, Some(args.max_sessions))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                Router::new()
                    .route_service("/mcp", common::echo_service(echo))
                    .layer(builder.build())
            }
            #[cfg(not(feature = "redis"))]
            "b-redis" => panic!(
                "--serve b-redis (--redis {:?}) needs the `redis` feature: cargo run --release --features redis --example load",
                args.redis
            ),
            other => panic!("unknown server kind {other}"),
        };
        let addr = args.addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        println!("LISTENING {}", listener.local_addr().unwrap());
        let nodelay = args.nodelay;
        let listener = listener.tap_io(move |tcp| {
            let _ = tcp.set_nodelay(nodelay);
        });
        let lifetime = Duration::from_secs(args.lifetime);
        tokio::select! {
            r = axum::serve(listener, app) => r.expect("server"),
            _ = tokio::time::sleep(lifetime) => {}
        }
    });
}

// ---------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------

struct Server {
    child: Child,
    addr: SocketAddr,
    /// The redis-server of a `b-redis` server. Fields drop after `Drop::drop` has
    /// killed the server, so Redis outlives its client.
    #[cfg(feature = "redis")]
    redis: Option<redis_server::RedisServer>,
}

impl Server {
    fn start(kind: &str, extra: &[&str]) -> Server {
        #[cfg(feature = "redis")]
        let redis = (kind == "b-redis").then(redis_server::RedisServer::start);
        #[cfg(feature = "redis")]
        let url = redis.as_ref().map(|r| r.url());
        #[cfg(not(feature = "redis"))]
        let url: Option<String> = None;
        let mut server = Self::start_on(kind, extra, url.as_deref());
        #[cfg(feature = "redis")]
        {
            server.redis = redis;
        }
        server
    }

    /// A server of `kind` whose Redis (if any) is the one at `redis_url`, shared with
    /// other servers. Kind `t` is `examples/rmcp_modern.rs`, built beside this harness.
    fn start_on(kind: &str, extra: &[&str], redis_url: Option<&str>) -> Server {
        let own = std::env::current_exe().expect("own path");
        let mut command = if kind == "t" {
            let sibling = own.with_file_name("rmcp_modern");
            assert!(
                sibling.exists(),
                "row t needs the rmcp_modern example: cargo build --release --all-features --example rmcp_modern"
            );
            let mut command = Command::new(sibling);
            command.args(["--addr", "127.0.0.1:0"]);
            command
        } else {
            let mut command = Command::new(own);
            command.args(["--serve", kind]).args(extra);
            command
        };
        if kind == "t" {
            // rmcp_modern takes only its own flags: the lifetime.
            if let Some(at) = extra.iter().position(|a| *a == "--lifetime") {
                command.args(["--lifetime", extra[at + 1]]);
            }
        }
        if let Some(url) = redis_url {
            command.args(["--redis", url]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("server output");
        // Ours say `LISTENING <addr>`; rmcp_modern says `... on http://<addr>/mcp`.
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .or_else(|| line.split("http://").nth(1).and_then(|rest| rest.split('/').next()))
            .unwrap_or_else(|| panic!("server said {line:?}"))
            .parse()
            .expect("address");
        Server {
            child,
            addr,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// CPU time the server process has run so far, all threads, in ns (schedstat).
    fn cpu_ns(&self) -> u64 {
        cpu_ns(self.child.id())
    }

    /// Resident set of the server process, from /proc/<pid>/status.
    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// The process id of the server's redis-server, if it has one.
    #[cfg(feature = "redis")]
    fn redis_pid(&self) -> Option<u32> {
        self.redis.as_ref().and_then(redis_server::RedisServer::pid)
    }

    #[cfg(not(feature = "redis"))]
    fn redis_pid(&self) -> Option<u32> {
        None
    }
}

/// CPU time process `pid` has run so far, all threads, in ns (schedstat).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// Resident set of process `pid`, from /proc/<pid>/status.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"VERSION","capabilities":{"roots":{"listChanged":true}},"clientInfo":{"name":"load","version":"1.0.0"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const CALL: &str =
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#;

struct Conn {
    tx: SendRequest<Full<Bytes>>,
    host: String,
    version: &'static str,
    session: Option<String>,
}

struct Answer {
    status: StatusCode,
    session: Option<String>,
    body: Bytes,
}

impl Conn {
    async fn open(addr: SocketAddr, version: &'static str) -> Conn {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Conn {
            tx,
            host: addr.to_string(),
            version,
            session: None,
        }
    }

    async fn post(&mut self, body: Bytes, version_header: bool) -> Answer {
        let mut req = Request::post("/mcp")
            .header("host", &self.host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if version_header {
            req = req.header("mcp-protocol-version", self.version);
        }
        if let Some(session) = &self.session {
            req = req.header("mcp-session-id", session);
        }
        self.tx.ready().await.expect("connection alive");
        let response = self
            .tx
            .send_request(req.body(Full::new(body)).unwrap())
            .await
            .expect("response");
        let status = response.status();
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.into_body().collect().await.expect("body").to_bytes();
        Answer { status, session, body }
    }

    /// initialize + notifications/initialized; keeps the session id if one came back.
    async fn handshake(&mut self) -> bool {
        self.session = None;
        let init = Bytes::from(INITIALIZE.replace("VERSION", self.version));
        let answer = self.post(init, false).await;
        if answer.status != StatusCode::OK {
            return false;
        }
        self.session = answer.session;
        let ack = self.post(Bytes::from_static(INITIALIZED.as_bytes()), true).await;
        ack.status == StatusCode::ACCEPTED
    }

    /// DELETE of the connection's session; the status.
    #[cfg(feature = "redis")]
    async fn delete(&mut self) -> StatusCode {
        let mut req = Request::delete("/mcp")
            .header("host", &self.host)
            .header("mcp-protocol-version", self.version);
        if let Some(session) = &self.session {
            req = req.header("mcp-session-id", session);
        }
        self.tx.ready().await.expect("connection alive");
        let response = self
            .tx
            .send_request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .expect("response");
        let status = response.status();
        let _ = response.into_body().collect().await;
        status
    }

    /// A `tools/call`; its status.
    #[cfg(feature = "redis")]
    async fn call_status(&mut self) -> StatusCode {
        self.post(Bytes::from_static(CALL.as_bytes()), true).await.status
    }

    async fn call(&mut self) -> bool {
        let answer = self.post(Bytes::from_static(CALL.as_bytes()), true).await;
        answer.status == StatusCode::OK && contains(&answer.body, b"\"text\":\"hello\"")
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds")
}

#[derive(Clone, Copy)]
struct Timing {
    warmup: Duration,
    duration: Duration,
}

#[derive(Clone, Copy)]
struct Measured {
    /// Server CPU time (all threads, user + system) per successful request, in µs.
    cpu_us: f64,
    /// The same for the server's redis-server, if it has one.
    redis_cpu_us: Option<f64>,
    rate: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
}

/// N connections run `op` back to back; latencies recorded after the warm-up.
async fn drive<F, Fut>(
    server: &Server,
    conns: usize,
    timing: Timing,
    version: &'static str,
    sessions: bool,
    op: F,
) -> Measured
where
    F: Fn(Conn) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = (Conn, bool)> + Send,
{
    let addr = server.addr;
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + timing.warmup;
    let end = measure_from + timing.duration;
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let op = op.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr, version).await;
            if sessions {
                assert!(conn.handshake().await, "handshake failed");
            }
            tokio::time::sleep_until(start.into()).await;
            let mut hist = histogram();
            let mut ok = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let (back, good) = op(conn).await;
                conn = back;
                if t0 >= measure_from {
                    if good {
                        ok += 1;
                        hist.record(t0.elapsed().as_micros().max(1) as u64).ok();
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (hist, ok)
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_from = server.cpu_ns();
    let redis_from = server.redis_pid().map(cpu_ns);
    tokio::time::sleep_until(end.into()).await;
    let cpu_to = server.cpu_ns();
    let redis_to = server.redis_pid().map(cpu_ns);
    let mut hist = histogram();
    let mut ok = 0;
    for task in tasks {
        let (h, n) = task.await.expect("worker");
        hist.add(h).unwrap();
        ok += n;
    }
    let per_request = |from: u64, to: u64| to.saturating_sub(from) as f64 / 1000.0 / ok.max(1) as f64;
    Measured {
        cpu_us: per_request(cpu_from, cpu_to),
        redis_cpu_us: redis_from.zip(redis_to).map(|(from, to)| per_request(from, to)),
        rate: ok as f64 / timing.duration.as_secs_f64(),
        p50_us: hist.value_at_quantile(0.50),
        p99_us: hist.value_at_quantile(0.99),
        errors: errors.load(Ordering::Relaxed),
    }
}

fn needs_session(kind: &str) -> bool {
    matches!(kind, "b" | "c" | "e" | "b-redis" | "t")
}

/// `--servers a,b-sse,...`: only the rows (of every scenario) whose label starts with one
/// of these words.
static SERVERS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

fn selected(label: &str) -> bool {
    let first = label.split(' ').next().unwrap_or("");
    SERVERS.get().is_none_or(|list| list.iter().any(|s| s == first))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The median of `runs` by rate, with the spread of rates and the median p50/p99.
struct Summary {
    cpu_us: f64,
    redis_cpu_us: Option<f64>,
    rate: f64,
    min: f64,
    max: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
    load: String,
}

fn summarize(runs: &[Measured], load: String) -> Summary {
    let mut rates: Vec<f64> = runs.iter().map(|m| m.rate).collect();
    rates.sort_by(f64::total_cmp);
    let mut p50: Vec<u64> = runs.iter().map(|m| m.p50_us).collect();
    let mut p99: Vec<u64> = runs.iter().map(|m| m.p99_us).collect();
    p50.sort_unstable();
    p99.sort_unstable();
    let mut cpu: Vec<f64> = runs.iter().map(|m| m.cpu_us).collect();
    cpu.sort_by(f64::total_cmp);
    let mut redis_cpu: Vec<f64> = runs.iter().filter_map(|m| m.redis_cpu_us).collect();
    redis_cpu.sort_by(f64::total_cmp);
    Summary {
        cpu_us: cpu[cpu.len() / 2],
        redis_cpu_us: redis_cpu.get(redis_cpu.len() / 2).copied(),
        rate: rates[rates.len() / 2],
        min: rates[0],
        max: rates[rates.len() - 1],
        p50_us: p50[p50.len() / 2],
        p99_us: p99[p99.len() / 2],
        errors: runs.iter().map(|m| m.errors).sum(),
        load,
    }
}

/// One row per case, each measured `repeat` times in interleaved rounds (so a burst
/// of outside load hits one run of many cases rather than every run of one case).
async fn rounds<C, F, Fut>(cases: &[C], repeat: usize, mut run: F) -> Vec<Summary>
where
    F: FnMut(&C) -> Fut,
    Fut: Future<Output = Measured>,
{
    let mut runs: Vec<Vec<Measured>> = vec![Vec::new(); cases.len()];
    let mut loads: Vec<Vec<String>> = vec![Vec::new(); cases.len()];
    for _ in 0..repeat {
        for (i, case) in cases.iter().enumerate() {
            runs[i].push(run(case).await);
            loads[i].push(loadavg().split(' ').next().unwrap_or("").to_owned());
        }
    }
    runs.iter().zip(loads).map(|(r, l)| summarize(r, l.join("/"))).collect()
}

/// Prints one row per case: `rate` is the unit of the rate column (`req/s`), `per` what
/// the CPU is divided by (`req`). Redis-backed rows go to a second table that adds the
/// redis-server's CPU and the sum of both, so the rows without Redis read as before.
fn print_rates(rate: &str, per: &str, rows: &[(&str, usize, Summary)]) {
    println!("| server | conns | {rate} | (min–max) | server CPU µs/{per} | p50 µs | p99 µs | errors | load |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (label, conns, s) in rows.iter().filter(|(_, _, s)| s.redis_cpu_us.is_none()) {
        println!(
            "| {label} | {conns} | {:.0} | ({:.0}–{:.0}) | {:.1} | {} | {} | {} | {} |",
            s.rate, s.min, s.max, s.cpu_us, s.p50_us, s.p99_us, s.errors, s.load
        );
    }
    if rows.iter().all(|(_, _, s)| s.redis_cpu_us.is_none()) {
        return;
    }
    println!(
        "\nWith the Redis store: CPU of the server process and of its redis-server (same machine, same cores), and their sum.\n"
    );
    println!(
        "| server | conns | {rate} | (min–max) | server CPU µs/{per} | redis-server CPU µs/{per} | total CPU µs/{per} | p50 µs | p99 µs | errors | load |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (label, conns, s) in rows {
        let Some(redis_cpu) = s.redis_cpu_us else { continue };
        println!(
            "| {label} | {conns} | {:.0} | ({:.0}–{:.0}) | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
            s.rate,
            s.min,
            s.max,
            s.cpu_us,
            redis_cpu,
            s.cpu_us + redis_cpu,
            s.p50_us,
            s.p99_us,
            s.errors,
            s.load
        );
    }
}

/// The Redis rows of the throughput scenario: kind, label, server arguments.
#[cfg(feature = "redis")]
const REDIS_THROUGHPUT: &[(&str, &str, &[&str])] = &[
    ("b-redis", "b-redis echo + layer (Redis store)", &[]),
    (
        "b-redis",
        "b-redis-sse echo SSE answers + layer (Redis store and event log)",
        &["--sse"],
    ),
];
#[cfg(not(feature = "redis"))]
const REDIS_THROUGHPUT: &[(&str, &str, &[&str])] = &[];

/// The Redis rows of the creation scenario: kind, label.
#[cfg(feature = "redis")]
const REDIS_CREATION: &[(&str, &str)] = &[("b-redis", "b-redis echo + layer (Redis store)")];
#[cfg(not(feature = "redis"))]
const REDIS_CREATION: &[(&str, &str)] = &[];

async fn throughput(timing: Timing, lifetime: &str, repeat: usize) {
    println!("\n### tools/call echo on established sessions\n");
    println!(
        "Median of {repeat} runs (req/s min–max in brackets); p50/p99 in µs, medians of the runs; 1-min load average at the end of each run.\n"
    );
    let servers: &[(&str, &str, &[&str])] = &[
        ("f", "f floor (fixed JSON)", &[]),
        ("a", "a echo, no layer", &[]),
        ("b", "b echo + layer", &[]),
        ("c", "c rmcp stateful (SSE)", &[]),
        ("d", "d rmcp stateless (SSE)", &[]),
        ("e", "e rmcp stateless (SSE) + layer", &[]),
        ("d", "d' rmcp stateless (JSON)", &["--json"]),
        ("e", "e' rmcp stateless (JSON) + layer", &["--json"]),
        ("a", "a-sse echo SSE answers, no layer", &["--sse"]),
        ("b", "b-sse echo SSE answers + layer", &["--sse"]),
        ("t", "t rmcp modern-only + layer translating (legacy client)", &[]),
    ];
    let cases: Vec<(&str, &str, &[&str], usize)> = servers
        .iter()
        .chain(REDIS_THROUGHPUT)
        .filter(|(_, label, _)| selected(label))
        .flat_map(|&(k, l, e)| [1usize, 8, 32].map(|n| (k, l, e, n)))
        .collect();
    let results = rounds(&cases, repeat, |&(kind, _, extra, conns)| {
        let mut args = vec!["--lifetime", lifetime, "--max-sessions", "100000"];
        args.extend_from_slice(extra);
        let server = Server::start(kind, &args);
        async move {
            let m = drive(
                &server,
                conns,
                timing,
                "2025-06-18",
                needs_session(kind),
                |mut c: Conn| async move {
                    let ok = c.call().await;
                    (c, ok)
                },
            )
            .await;
            drop(server);
            m
        }
    })
    .await;
    let rows: Vec<_> = cases
        .iter()
        .zip(results)
        .map(|(&(_, label, _, conns), s)| (label, conns, s))
        .collect();
    print_rates("req/s", "req", &rows);
}

async fn nagle(timing: Timing, lifetime: &str, repeat: usize) {
    println!("\n### TCP_NODELAY on/off on the server, 1 connection\n");
    println!("| server | version | nodelay | req/s | (min–max) | p50 µs | p99 µs | errors | load |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let servers: &[(&str, &str, &[&str], &'static str)] = &[
        ("b", "b echo + layer (JSON)", &[], "2025-06-18"),
        ("b", "b-sse echo SSE + layer (priming)", &["--sse"], "2025-11-25"),
        ("c", "c rmcp stateful (SSE, priming)", &[], "2025-11-25"),
    ];
    let cases: Vec<_> = servers
        .iter()
        .filter(|(_, label, _, _)| selected(label))
        .flat_map(|&(k, l, e, v)| [true, false].map(|nd| (k, l, e, v, nd)))
        .collect();
    let results = rounds(&cases, repeat, |&(kind, _, extra, version, nodelay)| {
        let mut args = vec!["--lifetime", lifetime, "--max-sessions", "100000"];
        args.extend_from_slice(extra);
        if !nodelay {
            args.push("--no-nodelay");
        }
        let server = Server::start(kind, &args);
        async move {
            let m = drive(&server, 1, timing, version, true, |mut c: Conn| async move {
                let ok = c.call().await;
                (c, ok)
            })
            .await;
            drop(server);
            m
        }
    })
    .await;
    for ((_, label, _, version, nodelay), s) in cases.iter().zip(results) {
        println!(
            "| {label} | {version} | {} | {:.0} | ({:.0}–{:.0}) | {} | {} | {} | {} |",
            if *nodelay { "on" } else { "off" },
            s.rate,
            s.min,
            s.max,
            s.p50_us,
            s.p99_us,
            s.errors,
            s.load
        );
    }
}

async fn creation(timing: Timing, lifetime: &str, repeat: usize) {
    println!("\n### Session creation (initialize only)\n");
    let servers = [
        ("b", "b echo + layer"),
        ("c", "c rmcp stateful"),
        ("e", "e rmcp stateless + layer"),
    ];
    let cases: Vec<_> = servers
        .iter()
        .chain(REDIS_CREATION)
        .filter(|(_, label)| selected(label))
        .flat_map(|&(k, l)| [1usize, 32].map(|n| (k, l, n)))
        .collect();
    let results = rounds(&cases, repeat, |&(kind, _, conns)| {
        let server = Server::start(kind, &["--lifetime", lifetime, "--max-sessions", "10000000"]);
        async move {
            let m = drive(&server, conns, timing, "2025-06-18", false, |mut c: Conn| async move {
                c.session = None;
                let answer = c
                    .post(Bytes::from(INITIALIZE.replace("VERSION", c.version)), false)
                    .await;
                let ok = answer.status == StatusCode::OK && answer.session.is_some();
                (c, ok)
            })
            .await;
            drop(server);
            m
        }
    })
    .await;
    let rows: Vec<_> = cases
        .iter()
        .zip(results)
        .map(|(&(_, label, conns), s)| (label, conns, s))
        .collect();
    print_rates("sessions/s", "session", &rows);
}

/// Create `n` sessions (initialize + initialized) over 32 connections, as fast as the
/// server allows.
async fn create_sessions(addr: SocketAddr, n: u64) -> (u64, Duration) {
    let next = Arc::new(AtomicU64::new(0));
    let made = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (next, made) = (next.clone(), made.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr, "2025-06-18").await;
            while next.fetch_add(1, Ordering::Relaxed) < n {
                if conn.handshake().await && conn.session.is_some() {
                    made.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (made.load(Ordering::Relaxed), t0.elapsed())
}

async fn memory(sizes: &[u64], rmcp_sizes: &[u64], lifetime: &str) {
    let cases: Vec<_> = sizes
        .iter()
        .map(|&n| ("b", "b echo + layer (MemoryStore)", n))
        .chain(rmcp_sizes.iter().map(|&n| ("c", "c rmcp stateful", n)))
        .filter(|(_, label, _)| selected(label))
        .collect();
    if !cases.is_empty() {
        println!("\n### Resident memory per live session (VmRSS of the server process)\n");
        println!(
            "| server | sessions | created | RSS before (MiB) | RSS after (MiB) | bytes/session | creation time (s) | load avg |"
        );
        println!("|---|---|---|---|---|---|---|---|");
    }
    for (kind, label, n) in cases {
        let cap = (n + 1000).to_string();
        let server = Server::start(kind, &["--lifetime", lifetime, "--max-sessions", &cap]);
        // Warm the server: 32 connections, a few sessions, so connection buffers and
        // runtime threads exist before the baseline is read.
        create_sessions(server.addr, 64).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = server.rss_kib();
        let (made, took) = create_sessions(server.addr, n).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let after = server.rss_kib();
        println!(
            "| {label} | {n} | {made} | {:.1} | {:.1} | {:.0} | {:.1} | {} |",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            (after.saturating_sub(before) * 1024) as f64 / made.max(1) as f64,
            took.as_secs_f64(),
            loadavg()
        );
    }
    #[cfg(feature = "redis")]
    if selected("b-redis") {
        redis_memory::run(sizes, lifetime).await;
    }
}

/// The memory scenario of `b-redis`: what the server process and its redis-server each
/// hold per live session.
#[cfg(feature = "redis")]
mod redis_memory {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use redis::aio::MultiplexedConnection;

    use super::{Server, create_sessions, loadavg, rss_kib};

    /// The key of the store's session cap (the default prefix `mcp:`).
    const LIVE_KEY: &str = "mcp:{%live}";

    pub(super) async fn run(sizes: &[u64], lifetime: &str) {
        println!("\n### Resident memory per live session with the Redis store (server process + redis-server)\n");
        println!(
            "Server VmRSS; redis-server `used_memory` (INFO memory) and VmRSS; total = server RSS + redis-server RSS growth per session. \
             Cap `--max-sessions` = sessions + 1000, as for (b); keys = DBSIZE after.\n"
        );
        println!(
            "| server | sessions | created | keys | server RSS before → after (MiB) | server bytes/session | \
             redis used_memory before → after (MiB) | used_memory bytes/session | redis RSS before → after (MiB) | \
             redis RSS bytes/session | total RSS bytes/session | creation time (s) | load avg |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let mut notes = Vec::new();
        for &n in sizes {
            let cap = (n + 1000).to_string();
            let server = Server::start("b-redis", &["--lifetime", lifetime, "--max-sessions", &cap]);
            let redis = server.redis.as_ref().expect("a b-redis server has a redis-server");
            let redis_pid = redis.pid().expect("redis-server running");
            let mut con = redis::Client::open(redis.url())
                .expect("redis url")
                .get_multiplexed_async_connection()
                .await
                .expect("connect to the redis-server");
            create_sessions(server.addr, 64).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (before, used_before, redis_before) =
                (server.rss_kib(), used_memory(&mut con).await, rss_kib(redis_pid));
            let (made, took) = create_sessions(server.addr, n).await;
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let (after, used_after, redis_after) = (server.rss_kib(), used_memory(&mut con).await, rss_kib(redis_pid));
            let keys: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.expect("DBSIZE");
            let mib = |kib: u64| kib as f64 / 1024.0;
            let per_session = |from: u64, to: u64| to.saturating_sub(from) as f64 / made.max(1) as f64;
            let server_per = per_session(before * 1024, after * 1024);
            let redis_per = per_session(redis_before * 1024, redis_after * 1024);
            println!(
                "| b-redis echo + layer (RedisSessionStore) | {n} | {made} | {keys} | {:.1} → {:.1} | {server_per:.0} | \
                 {:.1} → {:.1} | {:.0} | {:.1} → {:.1} | {redis_per:.0} | {:.0} | {:.1} | {} |",
                mib(before),
                mib(after),
                used_before as f64 / 1048576.0,
                used_after as f64 / 1048576.0,
                per_session(used_before, used_after),
                mib(redis_before),
                mib(redis_after),
                server_per + redis_per,
                took.as_secs_f64(),
                loadavg()
            );
            notes.push(format!(
                "- {n} sessions, {keys} keys: {}",
                key_breakdown(&mut con, keys).await
            ));
        }
        println!("\nRedis keys by pattern (a sample of 200 `RANDOMKEY`s; bytes by `MEMORY USAGE … SAMPLES 0`):\n");
        for note in notes {
            println!("{note}");
        }
    }

    async fn used_memory(con: &mut MultiplexedConnection) -> u64 {
        let info: String = redis::cmd("INFO").arg("memory").query_async(con).await.expect("INFO");
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn memory_usage(con: &mut MultiplexedConnection, key: &str) -> u64 {
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(con)
            .await
            .expect("MEMORY USAGE");
        bytes.unwrap_or(0)
    }

    /// `mcp:{<session id>}:ev:<stream id>:m` → `mcp:{ID}:ev:SID:m`.
    fn key_pattern(key: &str) -> String {
        let (Some(open), Some(close)) = (key.find('{'), key.find('}')) else {
            return key.to_owned();
        };
        let tail: Vec<&str> = key[close..]
            .split(':')
            .map(|part| {
                if part.len() == 16 && part.bytes().all(|b| b.is_ascii_hexdigit()) {
                    "SID"
                } else {
                    part
                }
            })
            .collect();
        format!("{}ID{}", &key[..=open], tail.join(":"))
    }

    /// Per key pattern: type, estimated count and mean size; the cap's sorted set apart.
    async fn key_breakdown(con: &mut MultiplexedConnection, keys: u64) -> String {
        let mut sample = BTreeSet::new();
        for _ in 0..200 {
            let key: Option<String> = redis::cmd("RANDOMKEY").query_async(con).await.expect("RANDOMKEY");
            if let Some(key) = key.filter(|k| k != LIVE_KEY) {
                sample.insert(key);
            }
        }
        // pattern → (type, sampled keys, bytes)
        let mut patterns: BTreeMap<String, (String, u64, u64)> = BTreeMap::new();
        for key in &sample {
            let kind: String = redis::cmd("TYPE").arg(key).query_async(con).await.expect("TYPE");
            let bytes = memory_usage(con, key).await;
            let entry = patterns.entry(key_pattern(key)).or_insert((kind, 0, 0));
            entry.1 += 1;
            entry.2 += bytes;
        }
        let live: u64 = redis::cmd("ZCARD").arg(LIVE_KEY).query_async(con).await.expect("ZCARD");
        let others = keys.saturating_sub(u64::from(live > 0));
        let mut parts: Vec<String> = patterns
            .iter()
            .map(|(pattern, (kind, n, bytes))| {
                format!(
                    "`{pattern}` {kind} ≈{:.0} keys ({n} of {} sampled), {:.0} B each",
                    others as f64 * *n as f64 / sample.len().max(1) as f64,
                    sample.len(),
                    *bytes as f64 / *n as f64
                )
            })
            .collect();
        if live > 0 {
            let bytes = memory_usage(con, LIVE_KEY).await;
            parts.push(format!(
                "`{LIVE_KEY}` zset, {live} members, {bytes} B = {:.0} B/member",
                bytes as f64 / live as f64
            ));
        }
        parts.join("; ")
    }
}

fn list(value: &str) -> Vec<u64> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("number"))
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut serve_args = ServeArgs {
        nodelay: true,
        max_sessions: 100_000,
        lifetime: 900,
        ..Default::default()
    };
    let mut serving = false;
    let mut only: Vec<String> = vec![];
    let mut timing = Timing {
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(5),
    };
    let mut mem_sizes = vec![10_000, 100_000, 1_000_000];
    let mut rmcp_mem_sizes = vec![10_000];
    let mut repeat = 3usize;
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--serve" => {
                serving = true;
                serve_args.kind = value();
            }
            "--addr" => serve_args.addr = Some(value().parse().expect("address")),
            "--no-nodelay" => serve_args.nodelay = false,
            "--max-sessions" => serve_args.max_sessions = value().parse().expect("number"),
            "--sse" => serve_args.sse = true,
            "--json" => serve_args.json = true,
            "--lifetime" => serve_args.lifetime = value().parse().expect("seconds"),
            "--redis" => serve_args.redis = Some(value()),
            "--only" => only = value().split(',').map(str::to_owned).collect(),
            "--duration" => timing.duration = Duration::from_secs_f64(value().parse().expect("seconds")),
            "--warmup" => timing.warmup = Duration::from_secs_f64(value().parse().expect("seconds")),
            "--mem-sizes" => mem_sizes = list(&value()),
            "--rmcp-mem-sizes" => rmcp_mem_sizes = list(&value()),
            "--repeat" => repeat = value().parse().expect("number"),
            "--servers" => {
                let _ = SERVERS.set(value().split(',').map(str::to_owned).collect());
            }
            "-h" | "--help" => {
                println!(
                    "usage: load [--only throughput,nagle,creation,memory,invalidation] [--duration S] [--warmup S] [--repeat N] \
                     [--servers a,b,b-sse,b-redis,b-redis-sse,..] [--mem-sizes N,..] [--rmcp-mem-sizes N,..]\n       \
                     load --serve a|b|c|d|e|f|b-redis [--addr A] [--no-nodelay] [--max-sessions N] [--sse] [--json] \
                     [--lifetime S] [--redis URL]"
                );
                return;
            }
            other => panic!("unknown argument {other}"),
        }
    }
    if serving {
        return serve(serve_args);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let wants = |what: &str| only.is_empty() || only.iter().any(|o| o == what);
    let lifetime = serve_args.lifetime.to_string();
    rt.block_on(async {
        println!(
            "load harness: {} cores, load avg {}, warm-up {:?}, measured {:?} per row",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            loadavg(),
            timing.warmup,
            timing.duration
        );
        if wants("throughput") {
            throughput(timing, &lifetime, repeat).await;
        }
        if wants("nagle") {
            nagle(timing, &lifetime, repeat).await;
        }
        if wants("creation") {
            creation(
                Timing {
                    warmup: Duration::from_millis(500),
                    duration: Duration::from_secs(3),
                },
                &lifetime,
                repeat,
            )
            .await;
        }
        if wants("memory") {
            memory(&mem_sizes, &rmcp_mem_sizes, &lifetime).await;
        }
        #[cfg(feature = "redis")]
        if wants("invalidation") {
            invalidation::run(&lifetime).await;
        }
    });
}
