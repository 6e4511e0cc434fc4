//! The in-memory store and event log against the public conformance suites.
#![cfg(feature = "conformance")]

use tower_mcp_session::conformance;
use tower_mcp_session::event_log::MemoryEventLog;
use tower_mcp_session::store::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    conformance::session_store(|| async { MemoryStore::new() }).await;
}

/// Through `Arc` and two handles (clones share one store), as a backend author would
/// call the second entry point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_memory_store_conforms() {
    conformance::session_store_with(
        || async { std::sync::Arc::new(MemoryStore::new()) },
        |store| {
            let same = std::sync::Arc::clone(store);
            async move { same }
        },
    )
    .await;
}

fn memory_log(limits: conformance::LogLimits) -> MemoryEventLog {
    MemoryEventLog::builder()
        .max_events_per_stream(limits.max_events_per_stream)
        .max_bytes_per_stream(limits.max_bytes_per_stream)
        .max_bytes_per_session(limits.max_bytes_per_session)
        .max_streams_per_session(limits.max_streams_per_session)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_event_log_conforms() {
    conformance::event_log(|limits| async move { memory_log(limits) }).await;
}

/// Through `Arc` and two handles (clones share one log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_memory_event_log_conforms() {
    conformance::event_log_with(
        |limits| async move { std::sync::Arc::new(memory_log(limits)) },
        |log, _limits| {
            let same = std::sync::Arc::clone(log);
            async move { same }
        },
    )
    .await;
}
