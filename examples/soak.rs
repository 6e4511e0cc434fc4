//! Soak harness: the echo server behind `McpSessionLayer` in this process on
//! 127.0.0.1, and a client keeping thousands of sessions busy with mixed traffic for
//! minutes, checking every event it is owed.
//!
//! ```text
//! cargo run --release --example soak -- --sessions 10000 --minutes 30
//! cargo run --release --features redis --example soak -- --sessions 10000 --minutes 30 --redis redis://127.0.0.1:6379/
//! ```
//!
//! Each session slot, one client at a time, does a random mix of: JSON calls (the
//! answer must echo the request), pushes (`SessionManager::send`, acknowledged by
//! `Ok`), draining its pushes over a GET stream resumed with `Last-Event-ID` and then
//! dropped, streamed calls read to the end (`slow_stream`: progress 1..=3, then the
//! answer), streamed calls dropped after two events and resumed with `Last-Event-ID`
//! (the rest must come, once), and DELETE followed by a new `initialize`. Every tenth
//! slot also sleeps past the idle timeout (`--idle-secs`, default 30) from time to
//! time: its session must be gone when it wakes (404, then a new `initialize`), and no
//! other session may be.
//!
//! Every `--report-secs` (default 60) it prints resident memory (`VmRSS` of
//! `/proc/self/status`, the resident field of `/proc/self/statm` in kB; client and
//! server share the process), the Tokio runtime's alive tasks (`num_alive_tasks`),
//! live sessions and events checked. After the warm-up (`--warmup-minutes`, default a
//! fifth of the run, and at least the log's finished-stream retention (`--retention-secs`,
//! default the memory log's 5 min) plus the idle timeout and half a minute, since memory
//! climbs until the first finished streams age out) and at the end, the traffic pauses until nothing is in flight and
//! idle connections are closed, and RSS and tasks are sampled there: the verdict
//! compares those two samples (growth under 5 %, tasks within 5 % or 2 of the
//! baseline) and requires zero lost, duplicated or wrong events, zero unexpected
//! refusals and zero hung requests. Exit code 1 on failure. It stops by itself after
//! `--minutes`. `SOAK_DEBUG=1` prints each lost event and each session found gone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mcp_test_support::echo::EchoOptions;
use mcp_test_support::http::sse_events;
use mcp_test_support::tcp;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tower_mcp_session::event_log::MemoryEventLog;
use tower_mcp_session::{McpSessionLayer, SessionId, SessionManager};

struct Args {
    sessions: usize,
    minutes: f64,
    warmup_minutes: Option<f64>,
    idle_secs: u64,
    concurrency: usize,
    report_secs: u64,
    retention_secs: Option<u64>,
    redis: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        sessions: 10_000,
        minutes: 30.0,
        warmup_minutes: None,
        idle_secs: 30,
        concurrency: 64,
        report_secs: 60,
        retention_secs: None,
        redis: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let bad = |e: std::num::ParseIntError| format!("{flag}: {e}");
        match flag.as_str() {
            "--sessions" => args.sessions = value()?.parse().map_err(bad)?,
            "--minutes" => args.minutes = value()?.parse().map_err(|e| format!("--minutes: {e}"))?,
            "--warmup-minutes" => {
                args.warmup_minutes = Some(value()?.parse().map_err(|e| format!("--warmup-minutes: {e}"))?)
            }
            "--idle-secs" => args.idle_secs = value()?.parse().map_err(bad)?,
            "--concurrency" => args.concurrency = value()?.parse().map_err(bad)?,
            "--report-secs" => args.report_secs = value()?.parse().map_err(bad)?,
            "--retention-secs" => args.retention_secs = Some(value()?.parse().map_err(bad)?),
            "--redis" => args.redis = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "usage: soak [--sessions N] [--minutes M] [--warmup-minutes W] [--idle-secs S] \
                     [--concurrency C] [--report-secs R] [--retention-secs S] [--redis URL]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.sessions == 0 || args.concurrency == 0 || args.minutes <= 0.0 {
        return Err("--sessions, --concurrency and --minutes must be positive".into());
    }
    Ok(args)
}

/// What the client has counted.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    checked: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    wrong: AtomicU64,
    refused: AtomicU64,
    hung: AtomicU64,
    expired: AtomicU64,
    not_expired: AtomicU64,
    created: AtomicU64,
    deleted: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One session slot: used by one client task at a time.
#[derive(Default)]
struct Slot {
    session: Option<String>,
    /// Pushes sent and acknowledged, and the next one the GET stream owes.
    pushed: u64,
    received: u64,
    /// The last event id read from the GET stream.
    cursor: Option<String>,
    last_used: Option<Instant>,
    /// A sleeping slot is left alone until then, so its session idles out.
    wake_at: Option<Instant>,
}

/// xorshift64*: enough randomness for a traffic mix, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Soak {
    addr: SocketAddr,
    client: HttpClient,
    manager: SessionManager,
    counters: Counters,
    idle: Duration,
    next_id: AtomicU64,
}

/// The outcome of one exchange.
enum Answer {
    Ok(http::HeaderMap, Bytes),
    Status(StatusCode),
    Hung,
}

impl Soak {
    async fn exchange(
        &self,
        method: Method,
        sid: Option<&str>,
        last_event_id: Option<&str>,
        body: Option<&Value>,
    ) -> Result<http::Response<hyper::body::Incoming>, Answer> {
        bump(&self.counters.requests);
        let mut req = tcp::req(self.addr, method, sid, body);
        if let Some(id) = last_event_id {
            req.headers_mut()
                .insert("last-event-id", HeaderValue::from_str(id).expect("an event id"));
        }
        match tokio::time::timeout(Duration::from_secs(10), self.client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => Ok(resp),
            Ok(Ok(resp)) => Err(Answer::Status(resp.status())),
            Ok(Err(_)) | Err(_) => Err(Answer::Hung),
        }
    }

    async fn whole(&self, method: Method, sid: Option<&str>, body: Option<&Value>) -> Answer {
        let resp = match self.exchange(method, sid, None, body).await {
            Ok(resp) => resp,
            Err(answer) => return answer,
        };
        let (head, body) = resp.into_parts();
        match tokio::time::timeout(Duration::from_secs(10), body.collect()).await {
            Ok(Ok(collected)) => Answer::Ok(head.headers, collected.to_bytes()),
            _ => Answer::Hung,
        }
    }

    /// Count an answer that is neither success nor an expected 404.
    fn refused(&self, answer: &Answer) {
        match answer {
            Answer::Hung => bump(&self.counters.hung),
            _ => bump(&self.counters.refused),
        }
    }

    async fn initialize(&self, slot: &mut Slot) {
        let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "soak", "version": "1"}}});
        let answer = self.whole(Method::POST, None, Some(&body)).await;
        match &answer {
            Answer::Ok(headers, _) => {
                *slot = Slot {
                    session: headers
                        .get("mcp-session-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    last_used: Some(Instant::now()),
                    ..Slot::default()
                };
                bump(&self.counters.created);
            }
            _ => self.refused(&answer),
        }
    }

    fn wrong(&self, what: &str) {
        bump(&self.counters.wrong);
        if std::env::var_os("SOAK_DEBUG").is_some() {
            eprintln!("wrong: {what}");
        }
    }

    fn lost(&self, n: u64, what: &str) {
        if n > 0 {
            self.counters.lost.fetch_add(n, Ordering::Relaxed);
            if std::env::var_os("SOAK_DEBUG").is_some() {
                eprintln!("lost {n}: {what}");
            }
        }
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A 404 on a session: expected after a sleep, otherwise a session lost in use.
    fn gone(&self, slot: &mut Slot, op: &str) {
        let idle_for = slot.last_used.map(|t| t.elapsed()).unwrap_or_default();
        if idle_for >= self.idle {
            bump(&self.counters.expired);
        } else {
            self.wrong(&format!("session gone in {op} after {idle_for:?} idle"));
        }
        *slot = Slot::default();
    }

    /// Count an answer that is not a success (a 404 ends the slot's session).
    fn failed(&self, slot: &mut Slot, answer: &Answer, op: &str) {
        match answer {
            Answer::Status(StatusCode::NOT_FOUND) => self.gone(slot, op),
            _ => self.refused(answer),
        }
    }

    async fn echo_call(&self, slot: &mut Slot, sid: &str) {
        let text = format!("soak-{}", self.id());
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": text}}});
        match self.whole(Method::POST, Some(sid), Some(&call)).await {
            Answer::Ok(_, body) => {
                let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if answer["result"]["content"][0]["text"] == text.as_str() {
                    bump(&self.counters.checked);
                } else {
                    self.wrong(&format!("echo: {answer}"));
                }
            }
            other => self.failed(slot, &other, "echo_call"),
        }
    }

    async fn push(&self, slot: &mut Slot, sid: &str) {
        let Some(id) = SessionId::parse(sid) else {
            bump(&self.counters.wrong);
            return;
        };
        let n = slot.pushed + 1;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": n}});
        match self.manager.send(&id, &note).await {
            Ok(()) => slot.pushed = n,
            Err(tower_mcp_session::SendError::UnknownSession) => self.gone(slot, "push"),
            Err(_) => bump(&self.counters.refused),
        }
    }

    /// Read the pushes owed over a GET stream (resumed from the cursor), then drop it.
    async fn drain(&self, slot: &mut Slot, sid: &str) {
        let resp = match self
            .exchange(Method::GET, Some(sid), slot.cursor.as_deref(), None)
            .await
        {
            Ok(resp) => resp,
            Err(answer) => return self.failed(slot, &answer, "drain"),
        };
        let start = slot.cursor.clone();
        let mut reader = Reader::new(resp);
        if slot.cursor.is_none() {
            // A fresh GET promises no continuity: what it sends before the client drops
            // it counts as delivered. Keep the priming event's id, as a client must, so
            // the next GET resumes from it with Last-Event-ID.
            slot.cursor = reader.priming().await;
            if slot.cursor.is_none() {
                return self.lost(slot.pushed - slot.received, "drain: no priming event");
            }
        }
        while slot.received < slot.pushed {
            let Some((id, message)) = reader.message().await else {
                break;
            };
            let Some(id) = id else { continue };
            let n = message["params"]["data"].as_u64().unwrap_or(0);
            if n <= slot.received {
                bump(&self.counters.duplicated);
            } else {
                self.lost(
                    n - slot.received - 1,
                    &format!(
                        "drain: gap (got {n} id {id} after {} of {}, resumed from {:?})",
                        slot.received, slot.pushed, start
                    ),
                );
                self.counters.checked.fetch_add(1, Ordering::Relaxed);
                slot.received = n;
            }
            slot.cursor = Some(id);
        }
        if slot.received < slot.pushed {
            self.lost(slot.pushed - slot.received, "drain: missing at the end");
            slot.received = slot.pushed;
        }
        if slot.cursor.is_none() {
            slot.cursor = reader.last_id.clone();
        }
    }

    /// `slow_stream` with 3 progress events; `drop_after`: read that many events, drop
    /// the connection and resume the rest with `Last-Event-ID`.
    async fn streamed(&self, slot: &mut Slot, sid: &str, drop_after: Option<usize>) {
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "slow_stream", "arguments": {"count": 3, "delay_ms": 5}}});
        let resp = match self.exchange(Method::POST, Some(sid), None, Some(&call)).await {
            Ok(resp) => resp,
            Err(answer) => return self.failed(slot, &answer, "streamed"),
        };
        let mut reader = Reader::new(resp);
        let mut got = Vec::new();
        while drop_after.is_none_or(|n| got.len() < n) {
            match reader.message().await {
                Some((_, m)) => got.push(m),
                None => break,
            }
        }
        if drop_after.is_some() {
            let Some(cursor) = reader.last_id.clone() else {
                self.lost(1, "streamed: no event before the drop");
                return;
            };
            drop(reader);
            let resp = match self.exchange(Method::GET, Some(sid), Some(&cursor), None).await {
                Ok(resp) => resp,
                Err(answer) => return self.failed(slot, &answer, "streamed"),
            };
            let mut resumed = Reader::new(resp);
            while let Some((_, m)) = resumed.message().await {
                got.push(m);
            }
        }
        // progress 1, 2, 3, then the answer: each once, in order.
        let mut want = 1;
        let mut answered = false;
        for m in &got {
            if let Some(p) = m["params"]["progress"].as_u64() {
                match p.cmp(&want) {
                    std::cmp::Ordering::Less => bump(&self.counters.duplicated),
                    std::cmp::Ordering::Greater => {
                        self.lost(p - want, "streamed: gap");
                        want = p + 1;
                    }
                    std::cmp::Ordering::Equal => want += 1,
                }
            } else if m["result"]["content"][0]["text"] == "slow stream complete" {
                if answered {
                    bump(&self.counters.duplicated);
                }
                answered = true;
            } else {
                self.wrong(&format!("streamed: {m}"));
            }
        }
        let missing = 4u64.saturating_sub(want) + u64::from(!answered);
        self.lost(
            missing,
            if drop_after.is_some() {
                "streamed, resumed: missing at the end"
            } else {
                "streamed: missing at the end"
            },
        );
        self.counters.checked.fetch_add(got.len() as u64, Ordering::Relaxed);
    }

    async fn delete(&self, slot: &mut Slot, sid: &str) {
        match self.whole(Method::DELETE, Some(sid), None).await {
            Answer::Ok(..) => {
                bump(&self.counters.deleted);
                *slot = Slot::default();
            }
            other => self.failed(slot, &other, "delete"),
        }
    }

    /// One step of one slot.
    async fn step(&self, index: usize, slot: &mut Slot, rng: &mut Rng) {
        let began = Instant::now();
        let Some(sid) = slot.session.clone() else {
            return self.initialize(slot).await;
        };
        let woke = slot.wake_at.take().is_some();
        if woke {
            // It slept past the idle timeout: its session must be gone.
            match self
                .whole(
                    Method::POST,
                    Some(&sid),
                    Some(&json!({"jsonrpc": "2.0", "id": 3, "method": "ping"})),
                )
                .await
            {
                Answer::Status(StatusCode::NOT_FOUND) => bump(&self.counters.expired),
                Answer::Ok(..) => bump(&self.counters.not_expired),
                other => self.refused(&other),
            }
            *slot = Slot::default();
            return self.initialize(slot).await;
        }
        match rng.below(100) {
            0..35 => self.echo_call(slot, &sid).await,
            35..52 => {
                if slot.pushed - slot.received >= 4 {
                    self.drain(slot, &sid).await;
                } else {
                    // A push is the server's doing, not the client's: it does not keep
                    // the session from idling out, so it does not count as use here.
                    return self.push(slot, &sid).await;
                }
            }
            52..64 => self.drain(slot, &sid).await,
            64..76 => self.streamed(slot, &sid, None).await,
            76..88 => self.streamed(slot, &sid, Some(2)).await,
            88..92 => {
                self.drain(slot, &sid).await;
                if slot.session.is_some() {
                    self.delete(slot, &sid).await;
                }
            }
            92..95 if index.is_multiple_of(10) => {
                self.drain(slot, &sid).await;
                if slot.session.is_some() {
                    slot.wake_at = Some(Instant::now() + self.idle + self.idle / 2);
                }
            }
            _ => self.echo_call(slot, &sid).await,
        }
        if slot.session.is_some() {
            // The step's start: the server's idle clock started no earlier, so a
            // session found gone sooner than the idle timeout after it was lost in use.
            slot.last_used = Some(began);
        }
    }
}

/// An SSE body read event by event; `None` at its end or after 10 s of silence.
struct Reader {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    last_id: Option<String>,
}

impl Reader {
    fn new(resp: http::Response<hyper::body::Incoming>) -> Self {
        Self {
            body: resp.into_body(),
            buf: Vec::new(),
            last_id: None,
        }
    }

    /// The id of the first event, which must be the priming event (no data).
    async fn priming(&mut self) -> Option<String> {
        self.next_event().await.filter(|e| e.data.is_empty()).and_then(|e| e.id)
    }

    async fn message(&mut self) -> Option<(Option<String>, Value)> {
        while let Some(event) = self.next_event().await {
            if !event.data.is_empty() {
                return Some((event.id, serde_json::from_str(&event.data).unwrap_or(Value::Null)));
            }
        }
        None
    }

    async fn next_event(&mut self) -> Option<mcp_test_support::http::Event> {
        loop {
            while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(event) = sse_events(&block).into_iter().next() {
                    if event.id.is_some() {
                        self.last_id.clone_from(&event.id);
                    }
                    return Some(event);
                }
            }
            match tokio::time::timeout(Duration::from_secs(10), self.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                _ => return None,
            }
        }
    }
}

/// Resident memory in kB.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("soak: {e}");
        std::process::exit(2);
    });
    let idle = Duration::from_secs(args.idle_secs.max(1));
    let mut builder = McpSessionLayer::builder()
        .idle_timeout(idle)
        .sweep_interval(Duration::from_secs(2))
        .max_sessions(Some(args.sessions * 2));
    // Finished streams stay in the log this long (the memory log's default: 5 min),
    // so memory reaches its plateau only after that: the warm-up must cover it.
    let retention = Duration::from_secs(args.retention_secs.unwrap_or(300));
    if let Some(url) = &args.redis {
        builder = with_redis(builder, url, args.sessions * 2).await;
    } else if args.retention_secs.is_some() {
        builder = builder.event_log(MemoryEventLog::builder().finished_retention(retention).build());
    }
    let layer = builder.build();
    let options = EchoOptions {
        sse_tool_calls: false,
        manager: Some(layer.manager()),
    };
    let addr = tcp::serve(&layer, options, true).await;
    // Idle pooled connections close quickly, so a quiet moment has none left.
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(Duration::from_millis(500))
        .build_http();
    let soak = Arc::new(Soak {
        addr,
        client,
        manager: layer.manager(),
        counters: Counters::default(),
        idle,
        next_id: AtomicU64::new(1),
    });
    let slots: Arc<Vec<Mutex<Slot>>> = Arc::new((0..args.sessions).map(|_| Mutex::new(Slot::default())).collect());
    let start = Instant::now();
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    // Default warm-up: a fifth of the run, and at least the retention plus the idle
    // timeout and half a minute (when the run is long enough for that to be a warm-up).
    let settle = (retention + idle).as_secs_f64() / 60.0 + 0.5;
    let warmup_minutes = args
        .warmup_minutes
        .unwrap_or_else(|| (args.minutes / 5.0).max(settle.min(args.minutes / 2.0)));
    let warmup = Duration::from_secs_f64(warmup_minutes * 60.0);
    println!(
        "soak: {} sessions, {} clients, {:.1} min (warm-up {:.1} min), idle timeout {:?}, {} store, server on http://{addr}/mcp",
        args.sessions,
        args.concurrency,
        args.minutes,
        warmup.as_secs_f64() / 60.0,
        idle,
        if args.redis.is_some() { "Redis" } else { "memory" },
    );

    let paused = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (soak, slots, paused, in_flight, stop) = (
            soak.clone(),
            slots.clone(),
            paused.clone(),
            in_flight.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1));
            // First pass: every slot gets its session, in order.
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                if paused.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let index = if i < slots.len() {
                    i
                } else {
                    rng.below(slots.len() as u64) as usize
                };
                i += args.concurrency;
                let Ok(mut slot) = slots[index].try_lock() else {
                    continue;
                };
                if slot.wake_at.is_some_and(|t| Instant::now() < t) {
                    continue;
                }
                in_flight.fetch_add(1, Ordering::SeqCst);
                if paused.load(Ordering::SeqCst) {
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                soak.step(index, &mut slot, &mut rng).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }));
    }

    // A quiet moment: no request in flight, idle connections closed.
    let quiet_sample = async |label: &str| -> (u64, usize) {
        paused.store(true, Ordering::SeqCst);
        while in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let sample = (rss_kb(), alive_tasks());
        println!("  quiet sample ({label}): RSS {} kB, {} tasks", sample.0, sample.1);
        paused.store(false, Ordering::SeqCst);
        sample
    };

    let mut baseline = None;
    let mut next_report = start + Duration::from_secs(args.report_secs.max(1));
    let mut peak_after_warmup = 0;
    loop {
        let now = Instant::now();
        if now >= start + total {
            break;
        }
        if baseline.is_none() && now >= start + warmup {
            baseline = Some(quiet_sample("end of warm-up").await);
        }
        if now >= next_report {
            next_report += Duration::from_secs(args.report_secs.max(1));
            let rss = rss_kb();
            if baseline.is_some() {
                peak_after_warmup = peak_after_warmup.max(rss);
            }
            let c = &soak.counters;
            println!(
                "{:>5.1} min  RSS {rss} kB  tasks {}  sessions {}  requests {}  events checked {}  \
                 lost {}  duplicated {}  wrong {}  refused {}  hung {}  expired {}",
                start.elapsed().as_secs_f64() / 60.0,
                alive_tasks(),
                layer.manager().admin().count().await.unwrap_or(0),
                c.requests.load(Ordering::Relaxed),
                c.checked.load(Ordering::Relaxed),
                c.lost.load(Ordering::Relaxed),
                c.duplicated.load(Ordering::Relaxed),
                c.wrong.load(Ordering::Relaxed),
                c.refused.load(Ordering::Relaxed),
                c.hung.load(Ordering::Relaxed),
                c.expired.load(Ordering::Relaxed),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end = quiet_sample("end").await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.await;
    }
    let base = baseline.unwrap_or(end);
    let c = &soak.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let rss_growth = (end.0 as f64 - base.0 as f64) / base.0.max(1) as f64 * 100.0;
    let task_growth = (end.1 as f64 - base.1 as f64) / base.1.max(1) as f64 * 100.0;
    let rss_ok = rss_growth < 5.0;
    let tasks_ok = end.1 <= base.1 + 2 || task_growth < 5.0;
    let events_ok = get(&c.lost) == 0 && get(&c.duplicated) == 0 && get(&c.wrong) == 0;
    let answers_ok = get(&c.refused) == 0 && get(&c.hung) == 0 && get(&c.not_expired) == 0;
    println!(
        "verdict after {:.1} min: RSS {} → {} kB ({rss_growth:+.2} %, peak after warm-up {peak_after_warmup} kB) {}; \
         tasks {} → {} ({task_growth:+.2} %) {}; {} requests, {} events checked, lost {}, duplicated {}, wrong {} {}; \
         refused {}, hung {}, sessions created {}, deleted {}, expired {}, not expired when due {} {}",
        start.elapsed().as_secs_f64() / 60.0,
        base.0,
        end.0,
        verdict(rss_ok),
        base.1,
        end.1,
        verdict(tasks_ok),
        get(&c.requests),
        get(&c.checked),
        get(&c.lost),
        get(&c.duplicated),
        get(&c.wrong),
        verdict(events_ok),
        get(&c.refused),
        get(&c.hung),
        get(&c.created),
        get(&c.deleted),
        get(&c.expired),
        get(&c.not_expired),
        verdict(answers_ok),
    );
    if !(rss_ok && tasks_ok && events_ok && answers_ok) {
        std::process::exit(1);
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "FAILED" }
}

#[cfg(feature = "redis")]
async fn with_redis(
    builder: tower_mcp_session::McpSessionLayerBuilder,
    url: &str,
    max_sessions: usize,
) -> tower_mcp_session::McpSessionLayerBuilder {
    mcp_test_support::echo::with_redis(builder, url, Some(max_sessions))
        .await
        .unwrap_or_else(|e| {
            eprintln!("soak: {e}");
            std::process::exit(2);
        })
}

#[cfg(not(feature = "redis"))]
async fn with_redis(
    _builder: tower_mcp_session::McpSessionLayerBuilder,
    _url: &str,
    _max_sessions: usize,
) -> tower_mcp_session::McpSessionLayerBuilder {
    eprintln!(
        "soak: --redis needs the `redis` feature (cargo run --release --features redis --example soak -- --redis URL)"
    );
    std::process::exit(2);
}
