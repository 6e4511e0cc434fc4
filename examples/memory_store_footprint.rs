//! Memory per idle session in `MemoryStore`: 32-character ids, no client info, no
//! attributes.
//!
//! Run with `cargo run --release --example memory_store_footprint`. Prints, for 100k
//! and 1M sessions, the heap bytes per session (counted by a wrapping allocator) and
//! the resident-set growth per session (from `/proc/self/statm`, Linux only), then the
//! heap left once every session has expired and been swept.
#![allow(unsafe_code)] // a counting global allocator is the measuring instrument

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use serde_json::Map;
use tower_mcp_session::store::{Expiry, MemoryStore, SessionStore};
use tower_mcp_session::{MakeSessionId, ProtocolVersion, RandomSessionId, SessionRecord};

struct Counting;

static HEAP: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is
// updated on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP.fetch_add(new_size, Ordering::Relaxed);
        HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("MemoryStore futures complete on first poll"),
    }
}

/// Resident set size in bytes (4 KiB pages assumed), or 0 off Linux.
fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    for n in [100_000usize, 1_000_000] {
        let idle = Duration::from_secs(1);
        let store = MemoryStore::new();
        let expiry = Expiry {
            idle,
            lifetime: Duration::from_secs(3600),
        };
        let no_attributes = Map::new();
        let (heap0, rss0) = (HEAP.load(Ordering::Relaxed), resident());
        for _ in 0..n {
            // The id is created here and kept only by the store, so its bytes count.
            let id = RandomSessionId.make_session_id();
            let slot = ready(store.reserve(n, Duration::from_secs(60))).expect("below the cap");
            let record = SessionRecord::new(id, ProtocolVersion::V2025_06_18);
            ready(store.create(&record, &no_attributes, expiry, Some(slot))).expect("fresh id");
        }
        let (heap1, rss1) = (HEAP.load(Ordering::Relaxed), resident());
        println!(
            "{n:>9} sessions: heap {:.0} B/session, resident {:.0} B/session",
            (heap1 - heap0) as f64 / n as f64,
            rss1.saturating_sub(rss0) as f64 / n as f64,
        );

        std::thread::sleep(idle);
        let mut swept = 0;
        loop {
            let batch = ready(store.take_expired(64 * 1024)).expect("memory store");
            swept += batch.sessions.len();
            if !batch.more {
                break;
            }
        }
        let heap2 = HEAP.load(Ordering::Relaxed);
        println!(
            "{n:>9} sessions: swept {swept}, left {}, heap left {} B",
            store.len(),
            heap2.saturating_sub(heap0),
        );
        drop(store);
    }
}
