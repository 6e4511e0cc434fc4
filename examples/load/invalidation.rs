//! `--only invalidation`: how soon a session deleted on one instance is refused on
//! another. Two `b-redis` servers share one redis-server (each store with its local
//! cache, as `echo_server --redis` builds it). Per round: a session is created on A
//! and used twice on B (so B has it cached), then deleted on A; B is then called back
//! to back until it answers 404. The delay is measured from the moment A's DELETE
//! answer arrived, so it is what a client acting on that answer could see; calls B
//! answered 200 meanwhile are counted as stale.

use std::time::{Duration, Instant};

use http::StatusCode;
use mcp_test_support::redis_server::RedisServer;

use super::{Conn, Server, histogram, loadavg};

/// Rounds measured (after 20 not measured).
const ROUNDS: usize = 2000;
const WARMUP_ROUNDS: usize = 20;

pub(super) async fn run(lifetime: &str) {
    println!("\n### DELETE on instance A, seen on instance B (Redis, local cache)\n");
    let redis = RedisServer::start();
    let args = ["--lifetime", lifetime, "--max-sessions", "100000"];
    let a = Server::start_on("b-redis", &args, Some(&redis.url()));
    let b = Server::start_on("b-redis", &args, Some(&redis.url()));
    let mut on_a = Conn::open(a.addr, "2025-06-18").await;
    let mut on_b = Conn::open(b.addr, "2025-06-18").await;
    let mut delay = histogram();
    let mut stale_total = 0u64;
    let mut worst_stale = 0u64;
    let mut cached_on_b = 0usize;
    for round in 0..WARMUP_ROUNDS + ROUNDS {
        assert!(on_a.handshake().await, "initialize on A");
        on_b.session = on_a.session.clone();
        for _ in 0..2 {
            assert_eq!(on_b.call_status().await, StatusCode::OK, "the session works on B");
        }
        let deleted = on_a.delete().await;
        assert!(deleted.is_success(), "DELETE on A answered {deleted}");
        let answered = Instant::now();
        let mut stale = 0u64;
        loop {
            match on_b.call_status().await {
                StatusCode::NOT_FOUND => break,
                StatusCode::OK => stale += 1,
                other => panic!("B answered {other}"),
            }
            assert!(
                answered.elapsed() < Duration::from_secs(60),
                "B never refused the deleted session"
            );
        }
        let waited = answered.elapsed();
        if round >= WARMUP_ROUNDS {
            delay.record(waited.as_micros().max(1) as u64).expect("in range");
            stale_total += stale;
            worst_stale = worst_stale.max(stale);
            cached_on_b += usize::from(stale > 0);
        }
    }
    println!(
        "| rounds | p50 µs | p90 µs | p99 µs | max µs | rounds with a stale 200 | stale 200s (total / worst round) | load |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {ROUNDS} | {} | {} | {} | {} | {cached_on_b} | {stale_total} / {worst_stale} | {} |",
        delay.value_at_quantile(0.5),
        delay.value_at_quantile(0.9),
        delay.value_at_quantile(0.99),
        delay.max(),
        loadavg()
    );
    println!(
        "\nThe delay includes the 404 call itself (one request to B); a round with no stale 200 saw the deletion on B's first call after A answered."
    );
    drop((a, b));
}
