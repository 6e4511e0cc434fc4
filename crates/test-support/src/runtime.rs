//! The runtime the benchmarks measure on: two workers, as many as the machines the
//! figures come from have cores, so a bench measures the layer and not the scheduler.

use tokio::runtime::Runtime;

/// A multi-thread Tokio runtime with two workers and every driver on.
pub fn two_workers() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}
