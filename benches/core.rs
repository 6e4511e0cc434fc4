//! Micro-benchmarks of the public API and of the whole layer around a trivial inner
//! service.
//!
//! Run with `cargo bench --bench core`. Groups:
//!
//! - `session_id`: one [`RandomSessionId`] (128 bits from the OS CSPRNG, hex).
//! - `memory_store_10k`: creation (`reserve` + `create`) and lookup (`load` with a
//!   refresh) in a `MemoryStore` holding 10,000 sessions.
//! - `layer`: one request through `McpSessionLayer` with `tower::ServiceExt::oneshot`,
//!   request built and answer body read to its end, against `baseline_*`: the same
//!   request and inner service without the layer. The difference is the layer's cost,
//!   JSON-RPC peeking included (the peek is crate-private, so it is measured here).
//! - `sse`: the framing the layer applies to SSE answers (encode one event, read one
//!   event back), through the public `sse` reader and encoder.
//!
//! Instruction counts: with `LAYER_PROBE=<scenario>:<requests>` in the environment the
//! binary skips criterion and sends that many requests of one scenario (`baseline`,
//! `json`, `modern`, `sse`, `baseline_sse`, `initialize`, `baseline_initialize`) through
//! the same services. `benches/instructions.sh` runs it under callgrind at two lengths
//! and prints instructions per request: exact and repeatable figures on a shared,
//! noisy machine, where timings drift by tens of percent.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};
use tower_mcp_session::event_log::StreamId;
use tower_mcp_session::sse::EventId;
use tower_mcp_session::sse::{SseParser, encode_event};
use tower_mcp_session::store::{Expiry, MemoryStore, SessionStore};
use tower_mcp_session::{
    MakeSessionId, McpSession, McpSessionLayer, ProtocolVersion, RandomSessionId, SessionId, SessionRecord,
};

/// `MemoryStore` futures never wait: poll once with a no-op waker.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("MemoryStore futures complete on first poll"),
    }
}

fn bench_session_id(c: &mut Criterion) {
    c.bench_function("session_id/random", |b| {
        b.iter(|| black_box(RandomSessionId.make_session_id()))
    });
}

const HOLD: Duration = Duration::from_secs(60);
const EXPIRY: Expiry = Expiry {
    idle: Duration::from_secs(1800),
    lifetime: Duration::from_secs(86_400),
};

fn bench_memory_store(c: &mut Criterion) {
    const N: usize = 10_000;
    const BATCH: usize = 1_000;
    let store = MemoryStore::new();
    let ids: Vec<SessionId> = (0..N).map(|_| RandomSessionId.make_session_id()).collect();
    let no_attributes = serde_json::Map::new();
    for id in &ids {
        let slot = ready(store.reserve(N + BATCH, HOLD)).expect("below the cap");
        let record = SessionRecord::new(id.clone(), ProtocolVersion::V2025_06_18);
        ready(store.create(&record, &no_attributes, EXPIRY, Some(slot))).expect("fresh id");
    }
    let mut group = c.benchmark_group("memory_store_10k");
    // Creation: time BATCH creations on top of the 10k, then remove them untimed so
    // the population stays between 10k and 11k.
    group.bench_function("create", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH as u64) as usize;
                let fresh: Vec<SessionId> = (0..n).map(|_| RandomSessionId.make_session_id()).collect();
                let start = Instant::now();
                for id in &fresh {
                    let slot = ready(store.reserve(N + BATCH, HOLD)).expect("below the cap");
                    let record = SessionRecord::new(id.clone(), ProtocolVersion::V2025_06_18);
                    ready(store.create(&record, &no_attributes, EXPIRY, Some(slot))).expect("fresh id");
                }
                total += start.elapsed();
                for id in &fresh {
                    ready(store.delete(id)).expect("removed");
                }
                left -= n as u64;
            }
            total
        })
    });
    let mut i = 0usize;
    group.bench_function("lookup", |b| {
        b.iter(|| {
            // Scattered order, so the map's cache misses are paid.
            i = (i + 7919) % ids.len();
            let id = &ids[i];
            black_box(
                ready(store.load(id, Some(EXPIRY.idle)))
                    .expect("store works")
                    .expect("live"),
            );
        })
    });
    group.finish();
}

const INIT_ANSWER: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"bench","version":"1"}}}"#;
const CALL_ANSWER: &str =
    r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"hello"}],"isError":false}}"#;
const SSE_ANSWER: &str = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hello\"}],\"isError\":false}}\n\n";

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
const LEGACY_CALL: &str =
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#;
const MODERN_CALL: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;

/// The trivial inner service: a fixed answer chosen by the `x-answer` header, body
/// never read. What it costs is what `baseline_*` measures.
async fn trivial(req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (body, content_type) = match req.headers().get("x-answer").map(|v| v.as_bytes()) {
        Some(b"init") => (INIT_ANSWER, "application/json"),
        Some(b"sse") => (SSE_ANSWER, "text/event-stream"),
        _ => (CALL_ANSWER, "application/json"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    Ok(response)
}

fn post(
    answer: &'static str,
    session: Option<&str>,
    version: Option<&'static str>,
    body: &'static str,
) -> Request<Full<Bytes>> {
    let mut builder = Request::post("http://localhost/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-answer", answer);
    if let Some(session) = session {
        builder = builder.header("mcp-session-id", session);
    }
    if let Some(version) = version {
        builder = builder.header("mcp-protocol-version", version);
    }
    builder
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("valid request")
}

/// One request through `service`, answer read to its end.
async fn round_trip<S, B>(service: S, req: Request<Full<Bytes>>) -> usize
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let response = service.oneshot(req).await.expect("infallible");
    assert!(response.status().is_success(), "{}", response.status());
    response.into_body().collect().await.expect("body").to_bytes().len()
}

/// What the layer rows and `LAYER_PROBE` measure: a current-thread runtime, the memory
/// store (room for `max_sessions`), the trivial inner service behind the layer (the inner
/// service alone is `service.get_ref()`), and one established session.
#[allow(clippy::type_complexity)]
fn layer_fixture(
    max_sessions: usize,
) -> (
    tokio::runtime::Runtime,
    Arc<dyn SessionStore>,
    McpSession<
        impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send + 'static>
        + Copy
        + Send
        + 'static,
    >,
    String,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(MemoryStore::new());
    let layer = McpSessionLayer::builder()
        .store(store.clone())
        .max_sessions(Some(max_sessions))
        .build();
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(trivial));
    let session = rt.block_on(async {
        let response = service
            .clone()
            .oneshot(post("init", None, None, INITIALIZE))
            .await
            .unwrap();
        response.headers()["mcp-session-id"].to_str().unwrap().to_owned()
    });
    (rt, store, service, session)
}

fn bench_layer(c: &mut Criterion) {
    let (rt, store, service, session) = layer_fixture(100_000);
    let inner = *service.get_ref();

    let mut group = c.benchmark_group("layer");
    group.bench_function("baseline_json", |b| {
        b.iter(|| rt.block_on(round_trip(inner, post("call", None, Some("2026-07-28"), MODERN_CALL))))
    });
    group.bench_function("modern_pass_through", |b| {
        b.iter(|| {
            rt.block_on(round_trip(
                service.clone(),
                post("call", None, Some("2026-07-28"), MODERN_CALL),
            ))
        })
    });
    group.bench_function("legacy_call_json", |b| {
        b.iter(|| {
            rt.block_on(round_trip(
                service.clone(),
                post("call", Some(&session), Some("2025-06-18"), LEGACY_CALL),
            ))
        })
    });
    group.bench_function("baseline_initialize", |b| {
        b.iter(|| rt.block_on(round_trip(inner, post("init", None, None, INITIALIZE))))
    });
    // Sessions are removed untimed after each batch so the store stays small.
    group.bench_function("initialize", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(1_000);
                    let mut made = Vec::with_capacity(n as usize);
                    let start = Instant::now();
                    for _ in 0..n {
                        let response = service
                            .clone()
                            .oneshot(post("init", None, None, INITIALIZE))
                            .await
                            .unwrap();
                        let id = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
                        black_box(response.into_body().collect().await.unwrap());
                        made.push(id);
                    }
                    total += start.elapsed();
                    for id in made {
                        let id = SessionId::parse(&id).unwrap();
                        store.delete(&id).await.unwrap();
                    }
                    left -= n;
                }
                total
            })
        })
    });
    group.bench_function("baseline_sse", |b| {
        b.iter(|| rt.block_on(round_trip(inner, post("sse", None, Some("2026-07-28"), MODERN_CALL))))
    });
    group.bench_function("legacy_call_sse", |b| {
        b.iter(|| {
            rt.block_on(round_trip(
                service.clone(),
                post("sse", Some(&session), Some("2025-06-18"), LEGACY_CALL),
            ))
        })
    });
    group.finish();
}

fn bench_sse(c: &mut Criterion) {
    let payload = CALL_ANSWER.as_bytes();
    let id = EventId::new(StreamId::random(), 7);
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    let mut out = BytesMut::with_capacity(4096);
    group.bench_with_input(
        BenchmarkId::new("encode_event", payload.len()),
        payload,
        |b, payload| {
            b.iter(|| {
                out.clear();
                encode_event(&mut out, Some(id), black_box(payload));
                black_box(out.len())
            })
        },
    );
    let mut wire = BytesMut::new();
    encode_event(&mut wire, Some(id), payload);
    let wire = wire.freeze();
    group.bench_with_input(BenchmarkId::new("parse_event", payload.len()), &wire, |b, wire| {
        b.iter(|| {
            let mut parser = SseParser::new(1 << 20);
            parser.push(black_box(wire));
            black_box(parser.next_event().expect("valid").expect("one event"))
        })
    });
    group.finish();
}

/// `LAYER_PROBE=<scenario>:<requests>`: send the requests of one scenario, nothing else.
fn probe(spec: &str) {
    let (scenario, count) = spec.split_once(':').expect("LAYER_PROBE=<scenario>:<requests>");
    let count: usize = count.parse().expect("a number of requests");
    let (rt, _store, service, session) = layer_fixture(count + 10);
    let inner = *service.get_ref();
    rt.block_on(async {
        let mut bytes = 0;
        for _ in 0..count {
            let session = Some(session.as_str());
            bytes += match scenario {
                "baseline" => round_trip(inner, post("call", None, Some("2026-07-28"), MODERN_CALL)).await,
                "modern" => round_trip(service.clone(), post("call", None, Some("2026-07-28"), MODERN_CALL)).await,
                "json" => round_trip(service.clone(), post("call", session, Some("2025-06-18"), LEGACY_CALL)).await,
                "baseline_sse" => round_trip(inner, post("sse", None, Some("2026-07-28"), MODERN_CALL)).await,
                "sse" => round_trip(service.clone(), post("sse", session, Some("2025-06-18"), LEGACY_CALL)).await,
                "baseline_initialize" => round_trip(inner, post("init", None, None, INITIALIZE)).await,
                "initialize" => round_trip(service.clone(), post("init", None, None, INITIALIZE)).await,
                other => panic!("unknown scenario {other}"),
            };
        }
        black_box(bytes);
    });
}

criterion_group!(benches, bench_session_id, bench_memory_store, bench_layer, bench_sse);

fn main() {
    if let Ok(spec) = std::env::var("LAYER_PROBE") {
        return probe(&spec);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
