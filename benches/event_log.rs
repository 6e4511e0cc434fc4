//! Event log and SSE framing costs.
//!
//! Run: `cargo bench --bench event_log -- --warm-up-time 1 --measurement-time 3`

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tower_mcp_session::SessionId;
use tower_mcp_session::event_log::{EventLog, MemoryEventLog, ReadOutcome, StreamId, StreamKey};
use tower_mcp_session::sse::EventId;
use tower_mcp_session::sse::{SseParser, encode_event};

/// A typical JSON-RPC notification, about 200 bytes.
const PAYLOAD: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"abc-123","progress":42,"total":100,"message":"indexing files in the workspace, step 42 of 100"}}"#;

/// The memory log never suspends, so its futures finish on the first poll; polling
/// them directly keeps executor overhead out of the figures.
fn now<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the memory event log should not suspend"),
    }
}

fn key(session: usize, stream: u64) -> StreamKey {
    StreamKey::new(
        SessionId::parse(&format!("session-{session:026}")).unwrap(),
        StreamId::from_raw(stream),
    )
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _in_runtime = rt.enter();
    let payload = Bytes::from_static(PAYLOAD);
    let mut group = c.benchmark_group("append");
    const BATCH: u64 = 1000;
    group.throughput(Throughput::Elements(BATCH));

    let log = MemoryEventLog::new();
    let k = key(0, 1);
    now(log.open(&k)).unwrap();
    group.bench_function("one_stream", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                black_box(now(log.append(&k, payload.clone())).unwrap());
            }
        })
    });

    let log = MemoryEventLog::new();
    let keys: Vec<StreamKey> = (0..256).map(|i| key(i % 64, i as u64)).collect();
    for k in &keys {
        now(log.open(k)).unwrap();
    }
    group.bench_function("256_streams_64_sessions", |b| {
        let mut next = 0;
        b.iter(|| {
            for _ in 0..BATCH {
                next = (next + 1) % keys.len();
                black_box(now(log.append(&keys[next], payload.clone())).unwrap());
            }
        })
    });

    // Two threads appending to streams of different sessions: what contention costs.
    for threads in [2usize] {
        let log = MemoryEventLog::new();
        let keys: Vec<StreamKey> = (0..threads).map(|i| key(i, i as u64)).collect();
        for k in &keys {
            now(log.open(k)).unwrap();
        }
        group.bench_with_input(
            BenchmarkId::new("parallel_threads", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let per_thread = iters * BATCH / threads as u64;
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for k in &keys {
                            let (log, payload) = (&log, payload.clone());
                            s.spawn(move || {
                                for _ in 0..per_thread {
                                    black_box(now(log.append(k, payload.clone())).unwrap());
                                }
                            });
                        }
                    });
                    start.elapsed()
                })
            },
        );
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _in_runtime = rt.enter();
    const EVENTS: u64 = 10_000;
    let log = MemoryEventLog::builder()
        .max_events_per_stream(EVENTS as usize)
        .max_bytes_per_stream(64 << 20)
        .max_bytes_per_session(64 << 20)
        .build();
    let k = key(0, 1);
    now(log.open(&k)).unwrap();
    for _ in 0..EVENTS {
        now(log.append(&k, Bytes::from_static(PAYLOAD))).unwrap();
    }
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("read_after_10k", |b| {
        b.iter(|| match now(log.read_after(&k, 0, usize::MAX)).unwrap() {
            ReadOutcome::Events { events, .. } => {
                assert_eq!(events.len(), EVENTS as usize);
                black_box(events)
            }
            other => panic!("{other:?}"),
        })
    });
    group.bench_function("read_after_10k_in_batches_of_256", |b| {
        b.iter(|| {
            let mut cursor = 0;
            while cursor < EVENTS {
                match now(log.read_after(&k, cursor, 256)).unwrap() {
                    ReadOutcome::Events { events, .. } => cursor = events.last().unwrap().seq,
                    other => panic!("{other:?}"),
                }
            }
        })
    });
    group.finish();
}

fn sse(c: &mut Criterion) {
    let mut group = c.benchmark_group("sse");
    let id = EventId::new(StreamId::from_raw(0x1234_5678_9abc_def0), 123_456);
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_event_200b", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            encode_event(&mut out, Some(black_box(id)), black_box(PAYLOAD));
            black_box(out.len())
        })
    });

    const EVENTS: u64 = 1000;
    let mut wire = BytesMut::new();
    for seq in 1..=EVENTS {
        encode_event(&mut wire, Some(EventId::new(id.stream(), seq)), PAYLOAD);
    }
    let wire = wire.freeze();
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("parse_1000_events_4k_chunks", |b| {
        b.iter(|| {
            let mut parser = SseParser::new(1 << 20);
            let mut n = 0;
            for chunk in wire.chunks(4096) {
                parser.push(chunk);
                while let Some(event) = parser.next_event().unwrap() {
                    black_box(&event);
                    n += 1;
                }
            }
            assert_eq!(n, EVENTS);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = append, replay, sse
}
criterion_main!(benches);
