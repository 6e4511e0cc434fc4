//! The in-memory store against the public `SessionStore` conformance suite.
#![cfg(feature = "conformance")]

use tower_mcp_session::conformance;
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
