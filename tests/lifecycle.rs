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
use tower_mcp_session::store::MemoryStore;
use tower_mcp_session::{AtCapacity, CloseReason, McpSessionLayer, McpSessionLayerBuilder, RejectionKind, SessionId};

type Closed = Arc<Mutex<HashMap<String, Vec<CloseReason>>>>;

fn recording_layer(builder: McpSessionLayerBuilder) -> (McpSessionLayer, Closed) {
    let closed: Closed = Arc::default();
    let c = closed.clone();
    let layer = builder
        .on_session_closed(move |id, reason| c.lock().unwrap().entry(id.to_string()).or_default().push(reason))
        .build();
    (layer, closed)
}

/// 1,000 parallel initializes against a cap of 100 under the refuse policy: exactly 100
/// sessions, exactly 900 answers of 503 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_is_exact_under_concurrency_refuse() {
    let layer = McpSessionLayer::builder().max_sessions(Some(100)).build();
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
    let store = MemoryStore::new();
    let (layer, closed) = recording_layer(
        McpSessionLayer::builder()
            .store(store.clone())
            .max_sessions(Some(100))
            .at_capacity(AtCapacity::EvictIdle {
                min_idle: Duration::ZERO,
                retry_after: Duration::from_secs(1),
            }),
    );
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
            // The map's length counts every session it holds, expired or not: an upper
            // bound of the live count.
            while !stop.load(Ordering::SeqCst) {
                max_seen.fetch_max(store.len(), Ordering::SeqCst);
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
    let (layer, closed) = recording_layer(
        McpSessionLayer::builder()
            .idle_timeout(Duration::from_secs(60))
            .max_lifetime(Duration::from_secs(600))
            .sweep_interval(Duration::from_secs(5)),
    );
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
    // Expiry reaches the close hook at the next sweep (every 5 s here).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let closed = closed.lock().unwrap().clone();
    assert_eq!(closed[&idle], vec![CloseReason::Idle]);
    assert_eq!(closed[&active], vec![CloseReason::Lifetime]);
    assert_eq!(layer.manager().metrics().active_sessions, Some(0));
}

/// Server-side pushes do not keep a session alive; an open GET stream (a client
/// attached) does.
#[tokio::test(start_paused = true)]
async fn server_traffic_does_not_keep_a_session_alive() {
    let (layer, closed) = recording_layer(
        McpSessionLayer::builder()
            .idle_timeout(Duration::from_secs(60))
            .sweep_interval(Duration::from_secs(1)),
    );
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
    // Five minutes pass, in steps: the engine's keep-alive runs as time goes by.
    for _ in 0..30 {
        tokio::time::advance(Duration::from_secs(10)).await;
    }
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
    let (layer, closed) = recording_layer(McpSessionLayer::builder());
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

/// The inner service sees the session and what the layer keeps in its attributes (the
/// client's log level).
#[tokio::test]
async fn inner_service_sees_the_session_and_its_log_level() {
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
    let (level, info) = in_session(&layer, &sid, |session| async move {
        (
            session.log_level().await.unwrap(),
            session.record().client_info().map(|c| c.get().to_owned()),
        )
    })
    .await;
    assert_eq!(level.as_deref(), Some("debug"));
    assert_eq!(info.as_deref(), Some(r#"{"name":"test-client","version":"1.0"}"#));
}

/// Run `f` with the [`Session`](tower_mcp_session::Session) of one `ping` on `sid`,
/// inside the inner service behind `layer`, and give back what it returned.
async fn in_session<T, F, Fut>(layer: &McpSessionLayer, sid: &str, f: F) -> T
where
    T: Send + 'static,
    F: Fn(tower_mcp_session::Session) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
{
    use tower::ServiceExt;
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let probe = tower::service_fn(move |req: http::Request<http_body_util::Full<bytes::Bytes>>| {
        let (s, f) = (s.clone(), f.clone());
        async move {
            let session = req.extensions().get::<tower_mcp_session::Session>().cloned().unwrap();
            *s.lock().unwrap() = Some(f(session).await);
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
        }
    });
    let svc = tower::ServiceBuilder::new().layer(layer.clone()).service(probe);
    let response = svc
        .oneshot(with_body(
            post().header("mcp-session-id", sid),
            &request(2, "ping", json!({})),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    seen.lock().unwrap().take().expect("the inner service ran")
}

/// An inner service that keeps state in attributes: `initialize` sets `greeting` while
/// it answers; `tools/call` answers with the session's attributes.
type AttributeApp = tower::util::BoxCloneSyncService<
    http::Request<http_body_util::Full<bytes::Bytes>>,
    http::Response<tower_mcp_session::McpBody<http_body_util::Full<bytes::Bytes>>>,
    std::convert::Infallible,
>;

fn attribute_app(layer: &McpSessionLayer) -> AttributeApp {
    let inner = tower::service_fn(|req: http::Request<http_body_util::Full<bytes::Bytes>>| async move {
        use http_body_util::BodyExt;
        let session = req.extensions().get::<tower_mcp_session::Session>().cloned();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let message: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let session = session.expect("every legacy request has a session");
        let result = if message["method"] == "initialize" {
            session.set_attribute("greeting", json!("hello")).await.unwrap();
            json!({"protocolVersion": LEGACY, "capabilities": {}, "serverInfo": {"name": "t", "version": "1"}})
        } else {
            json!({"attributes": session.attributes().await.unwrap()})
        };
        let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": result});
        let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(answer.to_string())));
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok::<_, std::convert::Infallible>(response)
    });
    tower::util::BoxCloneSyncService::new(tower::ServiceBuilder::new().layer(layer.clone()).service(inner))
}

/// Attributes the inner service writes while it answers `initialize` are stored with the
/// session (they used to be dropped).
#[tokio::test]
async fn attributes_written_during_initialize_persist() {
    use tower::ServiceExt;
    let layer = McpSessionLayer::new();
    let svc = attribute_app(&layer);
    let response = svc
        .clone()
        .oneshot(with_body(post(), &initialize_body(LEGACY)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let sid = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let response = svc
        .oneshot(with_body(
            post().header("mcp-session-id", &sid),
            &request(2, "tools/call", json!({"name": "x"})),
        ))
        .await
        .unwrap();
    use http_body_util::BodyExt;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(json(&body)["result"]["attributes"], json!({"greeting": "hello"}));
}

/// The attribute bounds hold for every write, and a refused write changes nothing.
#[tokio::test]
async fn attribute_bounds_hold_and_refusals_change_nothing() {
    use tower_mcp_session::SessionError;
    let layer = McpSessionLayer::builder()
        .max_attribute_keys(2)
        .max_attribute_bytes(64)
        .build();
    let app = app(&layer);
    let sid = initialize(&app, LEGACY).await;
    let (third_key, too_big, map) = in_session(&layer, &sid, |session| async move {
        session.set_attribute("a", json!(1)).await.unwrap();
        session.set_attribute("b", json!(2)).await.unwrap();
        let third_key = session.set_attribute("c", json!(3)).await;
        let too_big = session.set_attribute("a", json!("x".repeat(100))).await;
        // Replacing within the bounds and removing still work.
        session.set_attribute("a", json!(10)).await.unwrap();
        session.set_attribute("b", serde_json::Value::Null).await.unwrap();
        (third_key, too_big, session.attributes().await.unwrap())
    })
    .await;
    assert!(matches!(third_key, Err(SessionError::AttributeLimit)), "{third_key:?}");
    assert!(matches!(too_big, Err(SessionError::AttributeLimit)), "{too_big:?}");
    assert_eq!(serde_json::Value::Object(map), json!({"a": 10}));
}

/// A panicking close hook neither silences the hooks after it nor stops the sweep.
#[tokio::test(start_paused = true)]
async fn a_panicking_close_hook_does_not_silence_the_others() {
    let (layer, closed) = recording_layer(
        McpSessionLayer::builder()
            .on_session_closed(|_, _| panic!("a broken hook"))
            .idle_timeout(Duration::from_secs(10))
            .sweep_interval(Duration::from_secs(1)),
    );
    let app = app(&layer);
    let deleted = initialize(&app, LEGACY).await;
    let idle = initialize(&app, LEGACY).await;
    let response = call(&app, empty(delete().header("mcp-session-id", &deleted))).await;
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::advance(Duration::from_secs(11)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let closed = closed.lock().unwrap().clone();
    assert_eq!(closed.get(&deleted), Some(&vec![CloseReason::Deleted]));
    assert_eq!(closed.get(&idle), Some(&vec![CloseReason::Idle]));
}

/// At the cap, expired sessions are cleared before a newcomer is refused, and their end
/// is still reported once.
#[tokio::test(start_paused = true)]
async fn refusal_at_the_cap_first_clears_expired_sessions() {
    let (layer, closed) = recording_layer(
        McpSessionLayer::builder()
            .max_sessions(Some(1))
            .idle_timeout(Duration::from_secs(60))
            .sweep_interval(Duration::from_secs(3600)),
    );
    let app = app(&layer);
    let first = initialize(&app, LEGACY).await;
    assert_eq!(
        send(&app, None, &initialize_body(LEGACY)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    let second = initialize(&app, LEGACY).await;
    assert_ne!(first, second);
    let closed = closed.lock().unwrap().clone();
    assert_eq!(closed.get(&first), Some(&vec![CloseReason::Idle]));
    assert!(!closed.contains_key(&second));
}

/// Evict-idle ends the least recently active session old enough, never a younger one.
#[tokio::test(start_paused = true)]
async fn evict_idle_takes_the_least_recently_active_eligible_session() {
    let (layer, closed) = recording_layer(McpSessionLayer::builder().max_sessions(Some(3)).at_capacity(
        AtCapacity::EvictIdle {
            min_idle: Duration::from_secs(10),
            retry_after: Duration::from_secs(1),
        },
    ));
    let app = app(&layer);
    let a = initialize(&app, LEGACY).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let b = initialize(&app, LEGACY).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let c = initialize(&app, LEGACY).await;
    // Nobody has been idle for 10 s yet: refused.
    assert_eq!(
        send(&app, None, &initialize_body(LEGACY)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(
        send(&app, Some(&a), &request(1, "ping", json!({}))).await.0,
        StatusCode::OK
    );
    let d = initialize(&app, LEGACY).await;
    let closed = closed.lock().unwrap().clone();
    assert_eq!(
        closed.get(&b),
        Some(&vec![CloseReason::Evicted]),
        "b was the least recently active"
    );
    for kept in [&a, &c, &d] {
        assert!(!closed.contains_key(kept), "{kept} kept");
    }
}

/// The engine's background work holds the layer weakly: dropping the layer lets the
/// store go.
#[tokio::test(start_paused = true)]
async fn background_work_ends_with_the_layer() {
    let store = Arc::new(MemoryStore::new());
    let layer = McpSessionLayer::builder()
        .store(store.clone())
        .sweep_interval(Duration::from_secs(1))
        .build();
    let app = app(&layer);
    let _ = initialize(&app, LEGACY).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(Arc::strong_count(&store) > 1, "the layer holds the store");
    drop(app);
    drop(layer);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(Arc::strong_count(&store), 1, "no background task kept the layer alive");
}

/// The layer's sweep purges the event log: an abandoned stream leaves memory without
/// anyone touching it.
#[tokio::test(start_paused = true)]
async fn the_sweep_purges_the_event_log() {
    use tower_mcp_session::event_log::{EventLog, MemoryEventLog, StreamId, StreamKey};
    let log = MemoryEventLog::builder().idle_timeout(Duration::from_secs(60)).build();
    let layer = McpSessionLayer::builder()
        .event_log(log.clone())
        .sweep_interval(Duration::from_secs(1))
        .build();
    let app = app(&layer);
    let sid = initialize(&app, LEGACY).await;
    let key = StreamKey::new(SessionId::parse(&sid).unwrap(), StreamId::random());
    log.open(&key).await.unwrap();
    assert_eq!(log.stream_count(), 1);
    tokio::time::advance(Duration::from_secs(61)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(log.stream_count(), 0);
}
