//! `MemoryStore` hot-path costs: one request's `acquire` + `release`, and one sweep
//! pass, at 10k and 1M live sessions.
//!
//! Run with `cargo bench --bench memory_store`.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tower_mcp_session::store::{MemoryStore, SessionStore};
use tower_mcp_session::{MakeSessionId, ProtocolVersion, RandomSessionId, SessionId, SessionRecord};

/// The store's futures never wait, so polling once with a no-op waker measures the
/// store itself rather than an executor.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("MemoryStore futures complete on first poll"),
    }
}

fn populated(n: usize) -> (MemoryStore, Vec<SessionId>) {
    let store = MemoryStore::builder().max_sessions(n).build();
    let ids: Vec<SessionId> = (0..n).map(|_| RandomSessionId.make_session_id()).collect();
    for id in &ids {
        let slot = ready(store.reserve()).expect("below the cap");
        ready(store.insert(slot, SessionRecord::new(id.clone(), ProtocolVersion::V2025_06_18))).expect("fresh id");
    }
    (store, ids)
}

fn bench(c: &mut Criterion) {
    for n in [10_000, 1_000_000] {
        let (store, ids) = populated(n);

        let mut group = c.benchmark_group("memory_store/acquire_release");
        // Visit sessions in a scattered order so the larger map pays its cache misses.
        let mut i = 0usize;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                i = (i + 7919) % ids.len();
                let id = &ids[i];
                black_box(ready(store.acquire(id)).unwrap());
                store.release(id);
            })
        });
        group.finish();

        let mut group = c.benchmark_group("memory_store/sweep_nothing_expired");
        group.sample_size(10);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| black_box(ready(store.sweep())))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
