//! Session-creation rate limiting: check latency, and memory held for many keys before
//! and after a sweep.
//!
//! `cargo bench --bench rate_limit` prints the memory report first, then runs criterion.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use http::request::Parts;
use std::num::NonZeroU32;
use tower_mcp_session::rate_limit::{CreationLimit, ForwardedIp, PeerAddr, PeerIp, Quota, RateLimitKey};

/// Keys drawn at random from this many distinct values.
const KEY_SPACE: u64 = 1 << 20;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn peer(parts: &mut Parts, n: u32) {
    let ip = std::net::Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff));
    parts.extensions.insert(PeerAddr((ip, 443).into()));
}

fn unlimited() -> Quota {
    Quota::per_second(NonZeroU32::MAX)
}

fn checks(c: &mut Criterion) {
    let mut g = c.benchmark_group("check");
    let (mut parts, ()) = http::Request::new(()).into_parts();
    peer(&mut parts, 1);

    let limit = CreationLimit::new().per_key(unlimited(), PeerIp::new());
    g.bench_function("one_key_allowed", |b| b.iter(|| limit.check(black_box(&parts))));

    let limit = CreationLimit::new().per_key(Quota::per_hour(NonZeroU32::MIN), PeerIp::new());
    let _ = limit.check(&parts);
    g.bench_function("one_key_refused", |b| b.iter(|| limit.check(black_box(&parts))));

    let limit = CreationLimit::new()
        .global(unlimited())
        .per_key(unlimited(), PeerIp::new());
    g.bench_function("one_key_global_and_keyed", |b| {
        b.iter(|| limit.check(black_box(&parts)))
    });

    let xff = ForwardedIp::x_forwarded_for(["10.0.0.0/8".parse().unwrap()]);
    let limit = CreationLimit::new().per_key(unlimited(), xff);
    let (mut proxied, ()) = http::Request::builder()
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.1.1.1")
        .body(())
        .unwrap()
        .into_parts();
    peer(&mut proxied, 2);
    g.bench_function("one_key_forwarded_3_hops", |b| {
        b.iter(|| limit.check(black_box(&proxied)))
    });

    // Random keys from a space of 2^20: the map holds up to a million entries, and
    // most checks miss the CPU caches, as with a real crowd of clients.
    let counter = AtomicU64::new(0);
    let random = move |_: &Parts| {
        let n = splitmix(counter.fetch_add(1, Ordering::Relaxed)) % KEY_SPACE;
        Some(RateLimitKey::Number(n))
    };
    let limit = CreationLimit::new().per_key(unlimited(), random);
    g.bench_function("random_keys_2^20", |b| b.iter(|| limit.check(black_box(&parts))));
    g.finish();
}

/// Resident set size, from /proc/self/statm (Linux).
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (pages * 4096) as f64 / (1024.0 * 1024.0)
}

fn memory_report() {
    const KEYS: u32 = 1_000_000;
    const PERIOD: Duration = Duration::from_secs(3);
    let rss0 = rss_mib();
    // One cell per 3 s per key. governor's `retain_recent` forgets a key once its
    // theoretical arrival time is one period in the past: 6 s after its only request.
    let limit = CreationLimit::new().per_key(Quota::with_period(PERIOD).unwrap(), PeerIp::new());
    let (mut parts, ()) = http::Request::new(()).into_parts();
    let start = Instant::now();
    for n in 0..KEYS {
        peer(&mut parts, n);
        limit.check(&parts).unwrap();
    }
    let inserted = start.elapsed();
    let last_insert = Instant::now();
    let rss1 = rss_mib();
    println!(
        "memory: {} distinct keys inserted in {inserted:.2?} ({:.0} ns/check); tracked {}; RSS {rss0:.1} -> {rss1:.1} MiB ({:.0} B/key)",
        KEYS,
        inserted.as_nanos() as f64 / f64::from(KEYS),
        limit.tracked_keys(),
        (rss1 - rss0) * 1024.0 * 1024.0 / f64::from(KEYS),
    );

    let t = Instant::now();
    limit.sweep();
    println!(
        "memory: sweep while keys are fresh took {:.2?}: tracked {}, RSS {:.1} MiB",
        t.elapsed(),
        limit.tracked_keys(),
        rss_mib()
    );

    std::thread::sleep((2 * PERIOD).saturating_sub(last_insert.elapsed()) + Duration::from_millis(100));
    let t = Instant::now();
    limit.sweep();
    println!(
        "memory: sweep once keys are stale took {:.2?}: tracked {}, RSS {:.1} MiB",
        t.elapsed(),
        limit.tracked_keys(),
        rss_mib()
    );
    drop(limit);
    println!("memory: limiter dropped: RSS {:.1} MiB", rss_mib());
}

fn main() {
    // `cargo test --all-targets` runs this binary too; keep that quick.
    if std::env::args().any(|a| a == "--bench") {
        memory_report();
    }
    let mut c = Criterion::default().configure_from_args();
    checks(&mut c);
    c.final_summary();
}
