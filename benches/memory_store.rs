//! `MemoryStore` hot-path costs: one request's load with refresh, and one expiry sweep
//! that finds nothing, at 10k and 1M live sessions.
//!
//! Run with `cargo bench --bench memory_store`.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::time::Duration;

use serde_json::Map;
use tower_mcp_session::store::{Expiry, MemoryStore, SessionStore};
use tower_mcp_session::{MakeSessionId, ProtocolVersion, RandomSessionId, SessionId, SessionRecord};

/// The store's futures never wait, so polling once with a no-op waker measures the
/// store itself rather than an executor.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("MemoryStore futures complete on first poll"),
    }
}

const EXPIRY: Expiry = Expiry {
    idle: Duration::from_secs(1800),
    lifetime: Duration::from_secs(86_400),
};

fn populated(n: usize) -> (MemoryStore, Vec<SessionId>) {
    let store = MemoryStore::new();
    let ids: Vec<SessionId> = (0..n).map(|_| RandomSessionId.make_session_id()).collect();
    for id in &ids {
        let slot = ready(store.reserve(n, Duration::from_secs(60))).expect("below the cap");
        let record = SessionRecord::new(id.clone(), ProtocolVersion::V2025_06_18);
        ready(store.create(&record, &Map::new(), EXPIRY, Some(slot))).expect("fresh id");
    }
    (store, ids)
}

fn bench(c: &mut Criterion) {
    for n in [10_000, 1_000_000] {
        let (store, ids) = populated(n);

        let mut group = c.benchmark_group("memory_store/load_refresh");
        // Visit sessions in a scattered order so the larger map pays its cache misses.
        let mut i = 0usize;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                i = (i + 7919) % ids.len();
                let id = &ids[i];
                black_box(ready(store.load(id, Some(EXPIRY.idle))).unwrap());
            })
        });
        group.finish();

        let mut group = c.benchmark_group("memory_store/sweep_nothing_expired");
        group.sample_size(10);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| black_box(ready(store.take_expired(1024)).unwrap()))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
