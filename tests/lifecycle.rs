//! Session lifecycle under load and time: the cap under concurrency (refuse and evict),
//! idle and lifetime expiry under paused time, close hooks exactly once, store outages.

use mcp_test_support::http as support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use support::counting::CountingStore;
use support::*;
use tower_mcp_session::store::{AtCapacity, MemoryStore};
use tower_mcp_session::{CloseReason, McpSessionLayer, RejectionKind, SessionId};

type Closed = Arc<Mutex<HashMap<String, Vec<CloseReason>>>>;

fn recording_layer(store: MemoryStore) -> (McpSessionLayer, Closed) {
    let closed: Closed = Arc::default();
    let c = closed.clone();
    let layer = McpSessionLayer::builder()
        .store(store)
        .on_session_closed(move |id, reason| c.lock().unwrap().entry(id.to_string()).or_default().push(reason))
        .build();
    (layer, closed)
}

/// 1,000 parallel initializes against a cap of 100 under the refuse policy: exactly 100
/// sessions, exactly 900 answers of 503 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_is_exact_under_concurrency_refuse() {
    let layer = McpSessionLayer::builder()
        .store(MemoryStore::builder().max_sessions(100).build())
        .build();
    let app = app(&layer);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, None, &initialize_body(LEGACY)).await })
        })
        .collect();
    let (mut ok, mut full) = (0, 0);
    for t in tasks {
        let (status, headers, body) = t.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_rejected(status, &body, 503, -32000, "at_capacity");
                let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!(retry >= 1);
                full += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, full), (100, 900));
    let m = layer.manager().metrics();
    assert_eq!(m.active_sessions, Some(100));
    assert_eq!(m.rejected(RejectionKind::AtCapacity), 900);
}

/// Under the evict policy, concurrent initializes never push the live count over the
/// cap, and a session with a request in flight is never evicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_policy_never_exceeds_cap_nor_evicts_busy() {
    let store = MemoryStore::builder()
        .max_sessions(100)
        .at_capacity(AtCapacity::EvictIdle {
            min_idle: Duration::ZERO,
            retry_after: Duration::from_secs(1),
        })
        .build();
    let (layer, closed) = recording_layer(store.clone());
    let app = app(&layer);
    // Ten sessions kept busy: each holds an SSE stream open (a GET) for the whole test.
    let mut busy = Vec::new();
    let mut held = Vec::new();
    for _ in 0..10 {
        let sid = initialize(&app, "2025-06-18").await;
        let response = call(&app, empty(get().header("mcp-session-id", &sid))).await;
        assert_eq!(response.status(), StatusCode::OK);
        held.push(response);
        busy.push(sid);
    }
    let max_seen = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (store, max_seen, stop) = (store.clone(), max_seen.clone(), stop.clone());
        tokio::spawn(async move {
            use tower_mcp_session::store::SessionStore;
            while !stop.load(Ordering::SeqCst) {
                max_seen.fetch_max(store.len_hint().unwrap(), Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, None, &initialize_body(LEGACY)).await.0 })
        })
        .collect();
    let mut statuses = HashMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    assert!(max_seen.load(Ordering::SeqCst) <= 100, "live count went over the cap");
    assert_eq!(
        statuses.get(&StatusCode::OK),
        Some(&1000),
        "idle sessions make room: {statuses:?}"
    );
    let closed = closed.lock().unwrap().clone();
    for sid in &busy {
        assert!(!closed.contains_key(sid), "busy session {sid} was evicted");
        assert_eq!(
            send(&app, Some(sid), &request(1, "ping", json!({}))).await.0,
            StatusCode::OK
        );
    }
    assert!(
        closed.values().all(|r| r == &[CloseReason::Evicted]),
        "each evicted session closed once"
    );
    assert_eq!(closed.len(), 1000 + 10 - 100);
    drop(held);
}

/// Idle expiry is measured from the end of the last request; lifetime caps everything;
/// the hook fires once per session, with the right reason; memory returns.
#[tokio::test(start_paused = true)]
async fn idle_and_lifetime_expiry_under_paused_time() {
    let store = MemoryStore::builder()
        .idle_timeout(Duration::from_secs(60))
        .max_lifetime(Some(Duration::from_secs(600)))
        .sweep_interval(Duration::from_secs(5))
        .build();
    let (layer, closed) = recording_layer(store);
    let app = app(&layer);
    let idle = initialize(&app, LEGACY).await;
    let active = initialize(&app, LEGACY).await;
    for _ in 0..14 {
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(
            send(&app, Some(&active), &request(1, "ping", json!({}))).await.0,
            StatusCode::OK
        );
    }
    // 560 s: `idle` idled out long ago (60 s after its initialize), `active` is alive.
    assert_eq!(
        send(&app, Some(&idle), &request(1, "ping", json!({}))).await.0,
        StatusCode::NOT_FOUND
    );
    tokio::time::advance(Duration::from_secs(45)).await;
    // 605 s: `active` was busy all along but reached its 600 s lifetime.
    assert_eq!(
        send(&app, Some(&active), &request(1, "ping", json!({}))).await.0,
        StatusCode::NOT_FOUND
    );
    let closed = closed.lock().unwrap().clone();
    assert_eq!(closed[&idle], vec![CloseReason::Idle]);
    assert_eq!(closed[&active], vec![CloseReason::Lifetime]);
    assert_eq!(layer.manager().metrics().active_sessions, Some(0));
}

/// Server-side pushes do not keep a session alive; an open GET stream (a client
/// attached) does.
#[tokio::test(start_paused = true)]
async fn server_traffic_does_not_keep_a_session_alive() {
    let store = MemoryStore::builder()
        .idle_timeout(Duration::from_secs(60))
        .sweep_interval(Duration::from_secs(1))
        .build();
    let (layer, closed) = recording_layer(store);
    let app = app(&layer);
    let manager = layer.manager();
    let sid = initialize(&app, LEGACY).await;
    let id = SessionId::parse(&sid).unwrap();
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(20)).await;
        let _ = manager
            .send(
                &id,
                &json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {}}),
            )
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(closed.lock().unwrap().get(&sid), Some(&vec![CloseReason::Idle]));

    let listening = initialize(&app, LEGACY).await;
    let stream = call(&app, empty(get().header("mcp-session-id", &listening))).await;
    assert_eq!(stream.status(), StatusCode::OK);
    tokio::time::advance(Duration::from_secs(300)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !closed.lock().unwrap().contains_key(&listening),
        "an attached client keeps its session"
    );
    drop(stream);
    tokio::time::advance(Duration::from_secs(61)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(closed.lock().unwrap().get(&listening), Some(&vec![CloseReason::Idle]));
}

/// Close hooks fire exactly once per session when DELETE races the application's close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_hook_fires_once_under_races() {
    let (layer, closed) = recording_layer(MemoryStore::new());
    let app = app(&layer);
    let manager = layer.manager();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let sid = initialize(&app, LEGACY).await;
        let (app, manager) = (app.clone(), manager.clone());
        tasks.push(tokio::spawn(async move {
            let id = SessionId::parse(&sid).unwrap();
            let delete = call(&app, empty(delete().header("mcp-session-id", &sid)));
            let close = manager.close(&id);
            let (resp, closed) = tokio::join!(delete, close);
            let deleted = resp.status() == StatusCode::OK;
            assert!(deleted ^ closed.unwrap(), "exactly one of DELETE and close ended {sid}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let closed = closed.lock().unwrap();
    assert_eq!(closed.len(), 200);
    assert!(closed.values().all(|r| r.len() == 1));
}

/// A store that does not answer in time → 503 with Retry-After, never a hang or a 500.
#[tokio::test]
async fn slow_store_is_503_with_retry_after() {
    let store = CountingStore::new(MemoryStore::new());
    let layer = McpSessionLayer::builder()
        .store(store.clone())
        .store_timeout(Duration::from_millis(50))
        .build();
    let app = app(&layer);
    let sid = initialize(&app, LEGACY).await;
    store.set_delay(Duration::from_millis(500));
    for (session, body) in [
        (Some(sid.as_str()), request(1, "ping", json!({}))),
        (None, initialize_body(LEGACY)),
    ] {
        let (status, headers, bytes) = send(&app, session, &body).await;
        assert_rejected(status, &bytes, 503, -32000, "store_unavailable");
        assert_eq!(headers["retry-after"], "1");
    }
    store.set_delay(Duration::ZERO);
    assert_eq!(
        send(&app, Some(&sid), &request(1, "ping", json!({}))).await.0,
        StatusCode::OK,
        "recovers by itself"
    );
}

/// The inner service sees the session and keeps state in its attributes.
#[tokio::test]
async fn inner_service_keeps_attributes_in_the_session() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let sid = initialize(&app, LEGACY).await;
    let (status, _, _) = send(
        &app,
        Some(&sid),
        &request(1, "logging/setLevel", json!({"level": "debug"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let probe = tower::service_fn(move |req: http::Request<http_body_util::Full<bytes::Bytes>>| {
        let s = s.clone();
        async move {
            let session = req.extensions().get::<tower_mcp_session::Session>().cloned().unwrap();
            *s.lock().unwrap() = Some((
                session.attribute("logLevel").await.unwrap(),
                session.record().client_info().map(|c| c.get().to_owned()),
            ));
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
        }
    });
    let svc = tower::ServiceBuilder::new().layer(layer.clone()).service(probe);
    use tower::ServiceExt;
    let _ = svc
        .oneshot(with_body(
            post().header("mcp-session-id", &sid),
            &request(2, "ping", json!({})),
        ))
        .await
        .unwrap();
    let (level, info) = seen.lock().unwrap().take().unwrap();
    assert_eq!(level, Some(json!("debug")));
    assert_eq!(info.as_deref(), Some(r#"{"name":"test-client","version":"1.0"}"#));
}
