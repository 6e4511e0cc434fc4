//! Chaos with real processes: an instance killed with SIGKILL mid-stream, `redis-server`
//! killed and restarted under load, a Redis Cluster primary killed under traffic. Needs
//! `redis-server` and `redis-cli` on PATH.
//!
//! The instances of the first two scenarios are `echo_server` example processes with
//! `--redis`. The test builds that binary itself, once per test binary: it runs the
//! `cargo` that runs the tests (`env!("CARGO")`) with `build --example echo_server`, the
//! features this test was built with, the target directory this test binary lives in
//! and its profile, so the build reuses what is compiled and the binary matches the
//! code under test. The Cluster scenario needs a Cluster connection, which the example
//! does not open, so its two instances are layers in this process on loopback sockets.
//!
//! The scenarios run one at a time (each starts several processes; the machine is
//! small), and every wait is bounded: a scenario fails instead of hanging.
#![cfg(feature = "redis")]

mod chaos_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use mcp_test_support::echo::EchoOptions;
use mcp_test_support::redis_server::{Persistence, RedisCluster, RedisServer};
use mcp_test_support::tcp;
use serde_json::Value;
use tower_mcp_session::McpSessionLayer;
use tower_mcp_session_redis::{RedisConnection, RedisEventLog, RedisSessionStore};

use chaos_support::{EchoProcess, Got, Sse, id_parts, initialize, push, serial, slow_call};

/// The progress values of `slow_stream` events, with their SSE ids, as a client got them.
fn progress_of(events: &[(String, Value)]) -> Vec<(String, u64)> {
    events
        .iter()
        .filter_map(|(id, m)| m["params"]["progress"].as_u64().map(|p| (id.clone(), p)))
        .collect()
}

/// Events `(id, message)` must be one stream's consecutive sequence numbers from
/// `from`, with no id twice.
fn assert_consecutive(events: &[(String, Value)], stream: &str, from: u64) {
    for (i, (id, _)) in events.iter().enumerate() {
        assert_eq!(
            id_parts(id),
            (stream.to_owned(), from + i as u64),
            "ids consecutive: {events:?}"
        );
    }
}

/// (a) SIGKILL an instance mid-stream. A client on A holds a GET stream receiving
/// pushes and two `slow_stream` calls (40 progress events 100 ms apart); A is killed
/// after the client has read part of each. The client resumes everything on B with
/// `Last-Event-ID`:
///
/// - the GET stream: the pushes sent while A was dead arrive on B, exactly once and in
///   order, then live pushes; together with what A delivered, every acknowledged push
///   is received exactly once;
/// - each call stream: B replays exactly the events A's pump stored after the client's
///   cursor (ids consecutive, progress values continuing where A left off, nothing
///   twice). The handler ran on A and died with it, so its later progress and its
///   answer were never produced. A held a producer lease on each call stream (1 s
///   here, `--producer-lease-ms`) that nobody renews any more: once it has lapsed, the
///   reader on B ends the stream with a JSON-RPC error answer to the call (its id, code
///   `-32603`, `data.reason` `producer_lost`), stored once in the log, so every resume
///   of the stream reads the same end. The client is told, instead of waiting on a
///   stream that stays open with keep-alives until its own request timeout: see the
///   README's limits section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_stream_resumes_on_the_other_instance() {
    let _one = serial().await;
    let redis = tokio::task::block_in_place(RedisServer::start);
    let lease = ["--producer-lease-ms", "1000"];
    let mut a = tokio::task::block_in_place(|| EchoProcess::start_with(&redis.url(), &lease));
    let b = tokio::task::block_in_place(|| EchoProcess::start_with(&redis.url(), &lease));
    let sid = initialize(a.addr).await;

    // The GET stream on A, and five pushes (acknowledged by B's tool answer) read there.
    let mut get_a = Sse::open(a.addr, Method::GET, &sid, None, None).await;
    let priming = get_a.event(Duration::from_secs(10)).await;
    assert!(
        matches!(&priming, Got::Event(e) if e.data.is_empty() && e.id.is_some()),
        "{priming:?}"
    );
    for n in 1..=5 {
        push(b.addr, &sid, n).await;
    }
    let on_a = get_a.messages(5, Duration::from_secs(10)).await;
    let (standalone, first) = id_parts(&on_a[0].0);
    assert_consecutive(&on_a, &standalone, first);

    // Two streamed calls on A; the client reads five progress events of each.
    let mut calls = Vec::new();
    for id in [100, 101] {
        let mut call = slow_call(a.addr, &sid, id, 40, 100).await;
        let got = call.messages(5, Duration::from_secs(10)).await;
        calls.push((id, call, got));
    }

    tokio::task::block_in_place(|| a.kill9());
    // A's connections break: what had reached the client before is all it has.
    for (_, call, got) in &mut calls {
        got.extend(call.messages_until_quiet(Duration::from_secs(10)).await);
        assert!(call.ended, "the connection to A is gone");
    }
    let mut on_a = on_a;
    on_a.extend(get_a.messages_until_quiet(Duration::from_secs(10)).await);
    assert!(get_a.ended);

    // Pushes while A is dead, then the GET resumed on B.
    for n in 6..=10 {
        push(b.addr, &sid, n).await;
    }
    let last_on_a = on_a.last().unwrap().0.clone();
    let mut get_b = Sse::open(b.addr, Method::GET, &sid, Some(&last_on_a), None).await;
    let mut on_b = get_b.messages(5, Duration::from_secs(10)).await;
    push(b.addr, &sid, 11).await;
    on_b.extend(get_b.messages(1, Duration::from_secs(10)).await);
    let all: Vec<(String, Value)> = on_a.iter().chain(&on_b).cloned().collect();
    assert_consecutive(&all, &standalone, first);
    let data: Vec<u64> = all.iter().map(|(_, m)| m["params"]["data"].as_u64().unwrap()).collect();
    assert_eq!(data, (1..=11).collect::<Vec<_>>(), "every push exactly once, in order");

    // Each call resumed on B from the client's cursor.
    let mut report = Vec::new();
    for (id, _, got_on_a) in &calls {
        let (stream, cursor) = id_parts(&got_on_a.last().unwrap().0);
        // From an earlier cursor, B replays what A's pump stored: the same ids and
        // contents the client had from A (then whatever A stored but never sent), and
        // ends with the error answer once A's lease has lapsed (5 s of quiet is five
        // leases).
        let mut again = Sse::open(b.addr, Method::GET, &sid, Some(&got_on_a[0].0), None).await;
        let replay = again.messages_until_quiet(Duration::from_secs(5)).await;
        assert!(again.ended, "call {id}: the abandoned stream ends");
        assert_eq!(
            replay[..got_on_a.len() - 1],
            got_on_a[1..],
            "call {id}: replay = what A sent"
        );
        drop(again);
        let mut resumed = Sse::open(b.addr, Method::GET, &sid, Some(&got_on_a.last().unwrap().0), None).await;
        let replayed = resumed.messages_until_quiet(Duration::from_secs(5)).await;
        assert!(resumed.ended, "call {id}: the resumed stream ends");
        assert_consecutive(&replayed, &stream, cursor + 1);
        assert_eq!(replayed[..], replay[got_on_a.len() - 1..], "call {id}: the rest, once");
        let (answer, replayed) = replayed.split_last().expect("at least the error answer");
        assert_eq!(answer.1["id"], *id, "call {id}: {answer:?}");
        assert_eq!(answer.1["error"]["code"], -32603, "call {id}: {answer:?}");
        assert_eq!(
            answer.1["error"]["data"]["reason"], "producer_lost",
            "call {id}: {answer:?}"
        );
        let replayed = replayed.to_vec();
        let progress: Vec<u64> = progress_of(got_on_a)
            .iter()
            .chain(&progress_of(&replayed))
            .map(|p| p.1)
            .collect();
        assert_eq!(
            progress,
            (1..=progress.len() as u64).collect::<Vec<_>>(),
            "call {id}: progress values once each, in order, no gap"
        );
        assert!(progress.len() < 40, "call {id}: the handler died before it finished");
        assert!(
            replayed
                .iter()
                .all(|(_, m)| m.get("result").is_none() && m.get("error").is_none()),
            "call {id}: the handler's answer was never produced; the error answer comes once, last"
        );
        report.push((*id, got_on_a.len(), replayed.len()));
    }

    // The session ends (DELETE on B): the GET stream held on B ends with it.
    let (status, _, _) = tcp::read_body(
        tcp::client()
            .request(tcp::req(b.addr, Method::DELETE, Some(&sid), None))
            .await
            .unwrap(),
    )
    .await;
    assert!(status.is_success(), "DELETE on B: {status}");
    for (id, seen, replayed) in &report {
        eprintln!(
            "call {id}: {seen} progress events read on A, {replayed} more stored by A's pump and replayed on B, \
             {} never produced (the handler died with A), then the producer_lost answer",
            40 - *seen - *replayed
        );
    }
    assert!(matches!(
        get_b.event(Duration::from_secs(10)).await,
        Got::End | Got::Broken
    ));
}

/// After the store came back, one session's requests may still meet a connection that
/// is reconnecting (a cluster slot whose client follows the failover later, a store call
/// timed out on a loaded machine): `503 store_unavailable` is tried again for up to
/// 10 s; any other refusal fails the test.
async fn push_recovered(addr: SocketAddr, sid: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match chaos_support::try_push(addr, sid, 0).await {
            Ok(_) => return,
            Err((StatusCode::SERVICE_UNAVAILABLE, reason))
                if reason == "store_unavailable" && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(refused) => panic!("session {sid} on {addr}: {refused:?}"),
        }
    }
}

/// A GET stream after the store came back, as [`push_recovered`] tries.
async fn open_recovered(addr: SocketAddr, sid: &str, last_event_id: Option<&str>) -> Sse {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Sse::try_open(addr, Method::GET, sid, last_event_id, None).await {
            Ok(sse) => return sse,
            Err((StatusCode::SERVICE_UNAVAILABLE, reason))
                if reason == "store_unavailable" && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(refused) => panic!("a GET stream of {sid} on {addr}: {refused:?}"),
        }
    }
}

/// (b) `redis-server` (`appendonly yes`, `appendfsync always`) killed and restarted
/// under load from two `echo_server` processes: pushes and streamed calls. During the
/// outage only `200` or `503 store_unavailable` come back, and nothing hangs. After the
/// restart the service recovers by itself, every session that was acknowledged still
/// works on both instances, and every event a client was given (a push acknowledged by
/// its tool answer, an event received on a call stream) is read back by a resume from
/// the start of its stream, with the same content and nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_aof_loses_nothing_acknowledged() {
    let _one = serial().await;
    let mut redis = tokio::task::block_in_place(|| RedisServer::start_with(Persistence::AofAlways, &[]));
    let a = tokio::task::block_in_place(|| EchoProcess::start(&redis.url()));
    let b = tokio::task::block_in_place(|| EchoProcess::start(&redis.url()));
    let addrs = [a.addr, b.addr];
    let mut sessions = Vec::new();
    for i in 0..4 {
        sessions.push(initialize(addrs[i % 2]).await);
    }
    let sessions = Arc::new(sessions);

    #[derive(Default)]
    struct Seen {
        /// session → push data acknowledged.
        pushes: BTreeMap<String, BTreeSet<u64>>,
        /// (session, stream) → (seq → message) received on call streams.
        streams: BTreeMap<(String, String), BTreeMap<u64, Value>>,
        ok: u64,
        unavailable: u64,
        other: Vec<String>,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(1));
    let mut workers = Vec::new();
    for w in 0..4usize {
        let (seen, stop, next, sessions) = (seen.clone(), stop.clone(), next.clone(), sessions.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::SeqCst) {
                let at = addrs[i % 2];
                let sid = &sessions[i % sessions.len()];
                let n = next.fetch_add(1, Ordering::SeqCst);
                if i % 2 == 0 {
                    let outcome = chaos_support::try_push(at, sid, n).await;
                    let mut s = seen.lock().unwrap();
                    match outcome {
                        Ok(true) => {
                            s.ok += 1;
                            s.pushes.entry(sid.clone()).or_default().insert(n);
                        }
                        // The push itself failed (the tool said so): not acknowledged.
                        Ok(false) => s.ok += 1,
                        Err((StatusCode::SERVICE_UNAVAILABLE, reason)) if reason == "store_unavailable" => {
                            s.unavailable += 1
                        }
                        Err((status, reason)) => s.other.push(format!("push: {status} {reason}")),
                    }
                } else {
                    match chaos_support::try_slow_call(at, sid, n, 3, 20).await {
                        Ok(events) => {
                            let mut s = seen.lock().unwrap();
                            s.ok += 1;
                            for (id, m) in events {
                                let (stream, seq) = id_parts(&id);
                                s.streams.entry((sid.clone(), stream)).or_default().insert(seq, m);
                            }
                        }
                        Err((StatusCode::SERVICE_UNAVAILABLE, reason)) if reason == "store_unavailable" => {
                            seen.lock().unwrap().unavailable += 1
                        }
                        Err((status, reason)) => seen.lock().unwrap().other.push(format!("call: {status} {reason}")),
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(600)).await;
    tokio::task::block_in_place(|| redis.stop());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| redis.restart());
    let restarted = Instant::now();
    // Recovery, with no help: both instances answer calls again.
    loop {
        let mut up = true;
        for at in addrs {
            up &= chaos_support::try_push(at, &sessions[0], 0).await.is_ok();
        }
        if up {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(20),
            "no recovery 20 s after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("recovered {:?} after the restart", restarted.elapsed());
    // Requests caught by the outage may be answered only once their Redis commands
    // give up, which can be after the restart; and an established session's requests
    // that need no Redis (the store's local cache) are served throughout.
    let during = seen.lock().unwrap().unavailable;
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("no worker panicked");
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.other.is_empty(),
        "only 200 or 503 store_unavailable: {:?}",
        seen.other
    );
    assert!(during > 0, "the traffic saw the outage");
    assert!(seen.ok > 0);

    // Every session works on both instances.
    for sid in sessions.iter() {
        for at in addrs {
            push_recovered(at, sid).await;
        }
    }
    // Every acknowledged push is in its session's GET stream, once.
    let mut pushes_checked = 0;
    for (sid, acknowledged) in &seen.pushes {
        let mut fresh = open_recovered(b.addr, sid, None).await;
        let Got::Event(priming) = fresh.event(Duration::from_secs(10)).await else {
            panic!("a priming event")
        };
        let (standalone, _) = id_parts(priming.id.as_deref().unwrap());
        drop(fresh);
        let mut replay = open_recovered(b.addr, sid, Some(&format!("{standalone}-0"))).await;
        let stored = replay.messages_until_quiet(Duration::from_secs(1)).await;
        assert_consecutive(&stored, &standalone, 1);
        let mut data = BTreeSet::new();
        for (_, m) in &stored {
            let n = m["params"]["data"].as_u64().unwrap();
            assert!(data.insert(n) || n == 0, "push {n} stored twice");
        }
        let missing: Vec<_> = acknowledged.difference(&data).collect();
        assert!(
            missing.is_empty(),
            "session {sid}: acknowledged pushes lost: {missing:?}"
        );
        pushes_checked += acknowledged.len();
    }
    // Every event received on a call stream is read back by a resume from 0.
    let mut events_checked = 0;
    for ((sid, stream), received) in &seen.streams {
        let mut replay = open_recovered(a.addr, sid, Some(&format!("{stream}-0"))).await;
        let stored: BTreeMap<u64, Value> = replay
            .messages_until_quiet(Duration::from_secs(1))
            .await
            .into_iter()
            .map(|(id, m)| (id_parts(&id).1, m))
            .collect();
        for (seq, m) in received {
            assert_eq!(
                stored.get(seq),
                Some(m),
                "event {stream}-{seq} of {sid} after the restart"
            );
        }
        events_checked += received.len();
    }
    eprintln!(
        "{} requests answered 200, {} answered 503 store_unavailable; {pushes_checked} acknowledged pushes \
         and {events_checked} received stream events in {} streams all read back after the restart",
        seen.ok,
        seen.unavailable,
        seen.streams.len()
    );
    assert!(pushes_checked > 0 && events_checked > 0);
}

/// (c) A Redis Cluster of 3 primaries and 3 replicas (`cluster-node-timeout` 1000 ms):
/// a primary is killed (SIGKILL) under traffic from two instances, its replica takes
/// over. The service recovers by itself: new sessions and calls work on both instances.
/// Every session and push whose writes had reached the replicas before the kill
/// survives, each push once. What
/// was acknowledged by the dead primary in the last moments before the kill may be
/// lost (replication is asynchronous): such a session is answered 404 (the client
/// re-initializes), never a wrong answer; the test counts and prints them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_primary_killed_fails_over_and_recovers() {
    let _one = serial().await;
    let mut cluster = tokio::task::block_in_place(|| RedisCluster::start_with(3, 1, 1000));
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let client = redis::cluster::ClusterClientBuilder::new(cluster.urls())
            .connection_timeout(Duration::from_millis(500))
            .response_timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let conn: RedisConnection = client.get_async_connection().await.unwrap().into();
        let layer = McpSessionLayer::builder()
            .store(RedisSessionStore::new(conn.clone()))
            .event_log(RedisEventLog::new(conn))
            .build();
        let options = EchoOptions {
            sse_tool_calls: false,
            manager: Some(layer.manager()),
        };
        addrs.push(tcp::serve(&layer, options, true).await);
    }
    // Sessions created before the traffic, replicated before the kill.
    let mut settled = Vec::new();
    for i in 0..12 {
        settled.push(initialize(addrs[i % 2]).await);
    }
    // Pushes to them, acknowledged and replicated before the kill.
    let next = Arc::new(AtomicU64::new(1));
    let mut replicated: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for (i, sid) in settled.iter().enumerate() {
        for _ in 0..3 {
            let n = next.fetch_add(1, Ordering::SeqCst);
            push(addrs[i % 2], sid, n).await;
            replicated.entry(sid.clone()).or_default().insert(n);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.primaries().iter().all(|&i| cluster.replicas_in_sync(i)) {
        assert!(Instant::now() < deadline, "replicas catch up within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let acknowledged = Arc::new(Mutex::new(BTreeMap::<String, BTreeSet<u64>>::new()));
    let mut workers = Vec::new();
    for w in 0..3usize {
        let (stop, created, failures, settled) = (stop.clone(), created.clone(), failures.clone(), settled.clone());
        let (next, acknowledged) = (next.clone(), acknowledged.clone());
        let addrs = addrs.clone();
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::SeqCst) {
                let at = addrs[i % 2];
                if i % 3 == 0 {
                    match chaos_support::try_initialize(at).await {
                        Ok(sid) => created.lock().unwrap().push(sid),
                        Err((StatusCode::SERVICE_UNAVAILABLE, _)) => {}
                        Err((s, r)) => failures.lock().unwrap().push(format!("initialize: {s} {r}")),
                    }
                } else {
                    let sid = &settled[i % settled.len()];
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    match chaos_support::try_push(at, sid, n).await {
                        Ok(true) => {
                            acknowledged.lock().unwrap().entry(sid.clone()).or_default().insert(n);
                        }
                        Ok(false) | Err((StatusCode::SERVICE_UNAVAILABLE, _)) => {}
                        Err((s, r)) => failures.lock().unwrap().push(format!("call: {s} {r}")),
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = cluster.primaries()[0];
    tokio::task::block_in_place(|| cluster.kill(victim));
    let killed = Instant::now();
    let before_kill = created.lock().unwrap().len();
    // The failover: the replica is promoted and every slot is served again.
    while !cluster.is_ok() || cluster.primaries().len() < 3 {
        assert!(killed.elapsed() < Duration::from_secs(30), "failover within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed_over = killed.elapsed();
    // Recovery: a new session and a call on it work on both instances.
    let mut recovered = None;
    while recovered.is_none() {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "the service recovers within 60 s of the kill"
        );
        let mut ok = true;
        for at in &addrs {
            ok &= match chaos_support::try_initialize(*at).await {
                Ok(sid) => chaos_support::try_push(*at, &sid, 0).await.is_ok(),
                Err(_) => false,
            };
        }
        if ok {
            recovered = Some(killed.elapsed());
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("no worker panicked");
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "only 200 or 503 during the failover: {failures:?}");

    // Replicated before the kill: every session survives, on both instances.
    for sid in &settled {
        for at in &addrs {
            push_recovered(*at, sid).await;
        }
    }
    // Their pushes: every one replicated before the kill is there, once; of those
    // acknowledged under traffic, the missing ones are counted.
    let acknowledged = acknowledged.lock().unwrap().clone();
    let (mut pushes_acknowledged, mut pushes_lost) = (0, Vec::new());
    for sid in &settled {
        let mut fresh = open_recovered(addrs[1], sid, None).await;
        let Got::Event(priming) = fresh.event(Duration::from_secs(10)).await else {
            panic!("a priming event")
        };
        let (standalone, _) = id_parts(priming.id.as_deref().unwrap());
        drop(fresh);
        let mut replay = open_recovered(addrs[0], sid, Some(&format!("{standalone}-0"))).await;
        let mut stored = BTreeSet::new();
        for (_, m) in replay.messages_until_quiet(Duration::from_secs(1)).await {
            let n = m["params"]["data"].as_u64().unwrap();
            assert!(stored.insert(n) || n == 0, "push {n} of {sid} stored twice");
        }
        let missing: Vec<_> = replicated[sid].difference(&stored).collect();
        assert!(missing.is_empty(), "replicated pushes of {sid} lost: {missing:?}");
        if let Some(during) = acknowledged.get(sid) {
            pushes_acknowledged += during.len();
            pushes_lost.extend(during.difference(&stored).copied());
        }
    }
    // Created under traffic: a session lost with the primary is answered 404.
    let created = created.lock().unwrap().clone();
    let mut lost = Vec::new();
    for (n, sid) in created.iter().enumerate() {
        match chaos_support::try_push(addrs[0], sid, 0).await {
            Ok(_) => {}
            Err((StatusCode::NOT_FOUND, _)) => lost.push((n, sid.clone())),
            Err((s, r)) => panic!("session {sid}: {s} {r}"),
        }
    }
    eprintln!(
        "primary {victim} killed; failover {failed_over:?}, service recovered {:?} after the kill; \
         {} sessions created under traffic ({before_kill} before the kill), {} of them lost with the primary: {lost:?}; \
         {pushes_acknowledged} pushes acknowledged under traffic, {} of them lost: {pushes_lost:?}",
        recovered.unwrap(),
        created.len(),
        lost.len(),
        pushes_lost.len()
    );
}
