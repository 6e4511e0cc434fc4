//! Soak harness: the echo server behind `McpSessionLayer` in this process on
//! 127.0.0.1, and a client keeping thousands of sessions busy with mixed traffic for
//! minutes, checking every event it is owed.
//!
//! ```text
//! cargo run --release --example soak -- --sessions 10000 --minutes 30
//! cargo run --release --features redis --example soak -- --sessions 10000 --minutes 30 --redis redis://127.0.0.1:6379/
//! ```
//!
//! Each session slot, one client at a time, does a random mix of: JSON calls (the
//! answer must echo the request), pushes (`SessionManager::send`, acknowledged by
//! `Ok`), draining its pushes over a GET stream resumed with `Last-Event-ID` and then
//! dropped, streamed calls read to the end (`slow_stream`: progress 1..=3, then the
//! answer), streamed calls dropped after two events and resumed with `Last-Event-ID`
//! (the rest must come, once), and DELETE followed by a new `initialize`. Every tenth
//! slot also sleeps past the idle timeout (`--idle-secs`, default 30) from time to
//! time: its session must be gone when it wakes (404, then a new `initialize`), and no
//! other session may be.
//!
//! Every `--report-secs` (default 60) it prints resident memory (`VmRSS` of
//! `/proc/self/status`, the resident field of `/proc/self/statm` in kB; client and
//! server share the process), the Tokio runtime's alive tasks (`num_alive_tasks`),
//! live sessions and events checked. After the warm-up (`--warmup-minutes`, default a
//! fifth of the run, and at least the log's finished-stream retention (`--retention-secs`,
//! default the memory log's 5 min) plus the idle timeout and half a minute, since memory
//! climbs until the first finished streams age out) and at the end, the traffic pauses until nothing is in flight and
//! idle connections are closed, and RSS and tasks are sampled there: the verdict
//! compares those two samples (growth under 5 %, tasks within 5 % or 2 of the
//! baseline) and requires zero lost, duplicated or wrong events, zero unexpected
//! refusals and zero hung requests. Exit code 1 on failure. It stops by itself after
//! `--minutes`. `SOAK_DEBUG=1` prints each lost event and each session found gone.

mod traffic;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_test_support::echo::EchoOptions;
use mcp_test_support::tcp;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tower_mcp_session::McpSessionLayer;
use tower_mcp_session::event_log::MemoryEventLog;

use traffic::{Counters, Rng, Slot, Soak};

struct Args {
    sessions: usize,
    minutes: f64,
    warmup_minutes: Option<f64>,
    idle_secs: u64,
    concurrency: usize,
    report_secs: u64,
    retention_secs: Option<u64>,
    redis: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        sessions: 10_000,
        minutes: 30.0,
        warmup_minutes: None,
        idle_secs: 30,
        concurrency: 64,
        report_secs: 60,
        retention_secs: None,
        redis: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let bad = |e: std::num::ParseIntError| format!("{flag}: {e}");
        match flag.as_str() {
            "--sessions" => args.sessions = value()?.parse().map_err(bad)?,
            "--minutes" => args.minutes = value()?.parse().map_err(|e| format!("--minutes: {e}"))?,
            "--warmup-minutes" => {
                args.warmup_minutes = Some(value()?.parse().map_err(|e| format!("--warmup-minutes: {e}"))?)
            }
            "--idle-secs" => args.idle_secs = value()?.parse().map_err(bad)?,
            "--concurrency" => args.concurrency = value()?.parse().map_err(bad)?,
            "--report-secs" => args.report_secs = value()?.parse().map_err(bad)?,
            "--retention-secs" => args.retention_secs = Some(value()?.parse().map_err(bad)?),
            "--redis" => args.redis = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "usage: soak [--sessions N] [--minutes M] [--warmup-minutes W] [--idle-secs S] \
                     [--concurrency C] [--report-secs R] [--retention-secs S] [--redis URL]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.sessions == 0 || args.concurrency == 0 || args.minutes <= 0.0 {
        return Err("--sessions, --concurrency and --minutes must be positive".into());
    }
    Ok(args)
}

/// Resident memory in kB.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("soak: {e}");
        std::process::exit(2);
    });
    let idle = Duration::from_secs(args.idle_secs.max(1));
    let mut builder = McpSessionLayer::builder()
        .idle_timeout(idle)
        .sweep_interval(Duration::from_secs(2))
        .max_sessions(Some(args.sessions * 2));
    // Finished streams stay in the log this long (the memory log's default: 5 min),
    // so memory reaches its plateau only after that: the warm-up must cover it.
    let retention = Duration::from_secs(args.retention_secs.unwrap_or(300));
    if let Some(url) = &args.redis {
        builder = with_redis(builder, url, args.sessions * 2).await;
    } else if args.retention_secs.is_some() {
        builder = builder.event_log(MemoryEventLog::builder().finished_retention(retention).build());
    }
    let layer = builder.build();
    let options = EchoOptions {
        sse_tool_calls: false,
        manager: Some(layer.manager()),
    };
    let addr = tcp::serve(&layer, options, true).await;
    // Idle pooled connections close quickly, so a quiet moment has none left.
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(Duration::from_millis(500))
        .build_http();
    let soak = Arc::new(Soak {
        addr,
        client,
        manager: layer.manager(),
        counters: Counters::default(),
        idle,
        next_id: AtomicU64::new(1),
    });
    let slots: Arc<Vec<Mutex<Slot>>> = Arc::new((0..args.sessions).map(|_| Mutex::new(Slot::default())).collect());
    let start = Instant::now();
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    // Default warm-up: a fifth of the run, and at least the retention plus the idle
    // timeout and half a minute (when the run is long enough for that to be a warm-up).
    let settle = (retention + idle).as_secs_f64() / 60.0 + 0.5;
    let warmup_minutes = args
        .warmup_minutes
        .unwrap_or_else(|| (args.minutes / 5.0).max(settle.min(args.minutes / 2.0)));
    let warmup = Duration::from_secs_f64(warmup_minutes * 60.0);
    println!(
        "soak: {} sessions, {} clients, {:.1} min (warm-up {:.1} min), idle timeout {:?}, {} store, server on http://{addr}/mcp",
        args.sessions,
        args.concurrency,
        args.minutes,
        warmup.as_secs_f64() / 60.0,
        idle,
        if args.redis.is_some() { "Redis" } else { "memory" },
    );

    let paused = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (soak, slots, paused, in_flight, stop) = (
            soak.clone(),
            slots.clone(),
            paused.clone(),
            in_flight.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1));
            // First pass: every slot gets its session, in order.
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                if paused.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let index = if i < slots.len() {
                    i
                } else {
                    rng.below(slots.len() as u64) as usize
                };
                i += args.concurrency;
                let Ok(mut slot) = slots[index].try_lock() else {
                    continue;
                };
                if slot.asleep() {
                    continue;
                }
                in_flight.fetch_add(1, Ordering::SeqCst);
                if paused.load(Ordering::SeqCst) {
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                soak.step(index, &mut slot, &mut rng).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }));
    }

    // A quiet moment: no request in flight, idle connections closed.
    let quiet_sample = async |label: &str| -> (u64, usize) {
        paused.store(true, Ordering::SeqCst);
        while in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let sample = (rss_kb(), alive_tasks());
        println!("  quiet sample ({label}): RSS {} kB, {} tasks", sample.0, sample.1);
        paused.store(false, Ordering::SeqCst);
        sample
    };

    let mut baseline = None;
    let mut next_report = start + Duration::from_secs(args.report_secs.max(1));
    let mut peak_after_warmup = 0;
    loop {
        let now = Instant::now();
        if now >= start + total {
            break;
        }
        if baseline.is_none() && now >= start + warmup {
            baseline = Some(quiet_sample("end of warm-up").await);
        }
        if now >= next_report {
            next_report += Duration::from_secs(args.report_secs.max(1));
            let rss = rss_kb();
            if baseline.is_some() {
                peak_after_warmup = peak_after_warmup.max(rss);
            }
            let c = &soak.counters;
            println!(
                "{:>5.1} min  RSS {rss} kB  tasks {}  sessions {}  requests {}  events checked {}  \
                 lost {}  duplicated {}  wrong {}  refused {}  hung {}  expired {}",
                start.elapsed().as_secs_f64() / 60.0,
                alive_tasks(),
                layer.manager().admin().count().await.unwrap_or(0),
                c.requests.load(Ordering::Relaxed),
                c.checked.load(Ordering::Relaxed),
                c.lost.load(Ordering::Relaxed),
                c.duplicated.load(Ordering::Relaxed),
                c.wrong.load(Ordering::Relaxed),
                c.refused.load(Ordering::Relaxed),
                c.hung.load(Ordering::Relaxed),
                c.expired.load(Ordering::Relaxed),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end = quiet_sample("end").await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.await;
    }
    let base = baseline.unwrap_or(end);
    let c = &soak.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let rss_growth = (end.0 as f64 - base.0 as f64) / base.0.max(1) as f64 * 100.0;
    let task_growth = (end.1 as f64 - base.1 as f64) / base.1.max(1) as f64 * 100.0;
    let rss_ok = rss_growth < 5.0;
    let tasks_ok = end.1 <= base.1 + 2 || task_growth < 5.0;
    let events_ok = get(&c.lost) == 0 && get(&c.duplicated) == 0 && get(&c.wrong) == 0;
    let answers_ok = get(&c.refused) == 0 && get(&c.hung) == 0 && get(&c.not_expired) == 0;
    println!(
        "verdict after {:.1} min: RSS {} → {} kB ({rss_growth:+.2} %, peak after warm-up {peak_after_warmup} kB) {}; \
         tasks {} → {} ({task_growth:+.2} %) {}; {} requests, {} events checked, lost {}, duplicated {}, wrong {} {}; \
         refused {}, hung {}, sessions created {}, deleted {}, expired {}, not expired when due {} {}",
        start.elapsed().as_secs_f64() / 60.0,
        base.0,
        end.0,
        verdict(rss_ok),
        base.1,
        end.1,
        verdict(tasks_ok),
        get(&c.requests),
        get(&c.checked),
        get(&c.lost),
        get(&c.duplicated),
        get(&c.wrong),
        verdict(events_ok),
        get(&c.refused),
        get(&c.hung),
        get(&c.created),
        get(&c.deleted),
        get(&c.expired),
        get(&c.not_expired),
        verdict(answers_ok),
    );
    if !(rss_ok && tasks_ok && events_ok && answers_ok) {
        std::process::exit(1);
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "FAILED" }
}

#[cfg(feature = "redis")]
async fn with_redis(
    builder: tower_mcp_session::McpSessionLayerBuilder,
    url: &str,
    max_sessions: usize,
) -> tower_mcp_session::McpSessionLayerBuilder {
    mcp_test_support::echo::with_redis(builder, url, Some(max_sessions))
        .await
        .unwrap_or_else(|e| {
            eprintln!("soak: {e}");
            std::process::exit(2);
        })
}

#[cfg(not(feature = "redis"))]
async fn with_redis(
    _builder: tower_mcp_session::McpSessionLayerBuilder,
    _url: &str,
    _max_sessions: usize,
) -> tower_mcp_session::McpSessionLayerBuilder {
    eprintln!(
        "soak: --redis needs the `redis` feature (cargo run --release --features redis --example soak -- --redis URL)"
    );
    std::process::exit(2);
}
