//! Server → client requests and fan-out across two instances sharing one
//! `redis-server`, over real sockets: the tool waits on A while the client's answer is
//! POSTed to B; a client drops between request and answer and resumes elsewhere;
//! answers from anywhere but the asking session and principal are refused; a
//! subscription made on A is notified from B. Needs `redis-server` on PATH.
#![cfg(feature = "redis")]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_test_support::echo::{EchoOptions, echo_service};
use mcp_test_support::http::{SseReader, assert_rejected, json};
use mcp_test_support::redis_server::RedisServer;
use serde_json::{Value, json};
use tower_mcp_session::{McpSessionLayer, Principal, RequestError, SessionId};
use tower_mcp_session_redis::{RedisEventLog, RedisSessionStore};

/// One instance: its own connection, store, log and layer, on its own port. A request's
/// `x-user` header stands for what an authentication layer in front would establish.
struct Instance {
    layer: McpSessionLayer,
    addr: SocketAddr,
}

impl Instance {
    async fn start(server: &RedisServer) -> Self {
        let conn = server.connect().await;
        let layer = McpSessionLayer::builder()
            .store(RedisSessionStore::new(conn.clone()))
            .event_log(RedisEventLog::new(conn))
            .client_request_timeout(Duration::from_secs(20))
            .build();
        let options = EchoOptions {
            manager: Some(layer.manager()),
            ..Default::default()
        };
        let app = tower::ServiceBuilder::new()
            .map_request(|mut req: Request<Incoming>| {
                let user = req
                    .headers()
                    .get("x-user")
                    .and_then(|v| v.to_str().ok())
                    .map(Principal::new);
                if let Some(user) = user {
                    req.extensions_mut().insert(user);
                }
                req
            })
            .layer(layer.clone())
            .service(echo_service(options));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { layer, addr }
    }
}

#[derive(Default, Clone, Copy)]
struct As<'a> {
    session: Option<&'a str>,
    user: Option<&'a str>,
    last_event_id: Option<&'a str>,
}

async fn send(at: &Instance, method: Method, who: As<'_>, body: Option<&Value>) -> Response<Incoming> {
    let accept = if method == Method::GET {
        "text/event-stream"
    } else {
        "application/json, text/event-stream"
    };
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{}/mcp", at.addr))
        .header("accept", accept)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25");
    for (name, value) in [
        ("mcp-session-id", who.session),
        ("x-user", who.user),
        ("last-event-id", who.last_event_id),
    ] {
        if let Some(value) = value {
            b = b.header(name, value);
        }
    }
    let body = Full::new(body.map(|b| Bytes::from(b.to_string())).unwrap_or_default());
    let client = Client::builder(TokioExecutor::new()).build_http();
    tokio::time::timeout(Duration::from_secs(10), client.request(b.body(body).unwrap()))
        .await
        .expect("answer in time")
        .expect("HTTP exchange")
}

async fn post(at: &Instance, who: As<'_>, body: &Value) -> (StatusCode, Bytes) {
    let response = send(at, Method::POST, who, Some(body)).await;
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes())
}

async fn initialize(at: &Instance, user: Option<&str>, capabilities: Value) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": capabilities,
        "clientInfo": {"name": "two-instance-client", "version": "1.0"}}});
    let response = send(at, Method::POST, As { user, ..As::default() }, Some(&body)).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.headers()["mcp-session-id"].to_str().unwrap().to_owned()
}

fn sampling_call(prompt: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
           "params": {"name": "test_sampling", "arguments": {"prompt": prompt}}})
}

fn sample(id: &str, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {
        "role": "assistant", "content": {"type": "text", "text": text}, "model": "m", "stopReason": "endTurn"}})
}

/// POST `test_sampling` on `at` and read its stream up to the layer's request: the
/// reader, the minted id, and the request's event id.
async fn ask(at: &Instance, who: As<'_>) -> (SseReader<Incoming>, String, String) {
    let response = send(at, Method::POST, who, Some(&sampling_call("hello"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut reader = SseReader::new(response.into_body());
    let (event_id, request) = reader.next_message().await.expect("the sampling request");
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let id = request["id"].as_str().expect("a minted string id").to_owned();
    (reader, id, event_id.expect("the request is a resumable event"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_posted_to_b_reaches_the_tool_waiting_on_a() {
    let server = RedisServer::start();
    let (a, b) = (Instance::start(&server).await, Instance::start(&server).await);
    let session = initialize(&a, None, json!({"sampling": {}})).await;
    let who = As {
        session: Some(&session),
        ..As::default()
    };
    let (mut on_a, id, _) = ask(&a, who).await;

    let (status, body) = post(&b, who, &sample(&id, "from b")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&body));
    let (_, result) = on_a.next_message().await.expect("the tool's answer on A");
    assert_eq!(result["id"], 7);
    assert_eq!(result["result"]["content"][0]["text"], "LLM response: from b");
    assert!(on_a.next_message().await.is_none(), "the stream ends with the answer");

    // Answered once, on either instance.
    for at in [&a, &b] {
        let (status, body) = post(at, who, &sample(&id, "again")).await;
        assert_rejected(status, &body, 400, -32600, "unexpected_response");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_answers_on_b_and_resumes_on_b() {
    let server = RedisServer::start();
    let (a, b) = (Instance::start(&server).await, Instance::start(&server).await);
    let session = initialize(&a, None, json!({"sampling": {}})).await;
    let who = As {
        session: Some(&session),
        ..As::default()
    };
    let (on_a, id, event_id) = ask(&a, who).await;
    drop(on_a); // a disconnect is not a cancellation

    let (status, _) = post(&b, who, &sample(&id, "after the drop")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let resume = send(
        &b,
        Method::GET,
        As {
            last_event_id: Some(&event_id),
            ..who
        },
        None,
    )
    .await;
    assert_eq!(resume.status(), StatusCode::OK);
    let mut on_b = SseReader::new(resume.into_body());
    let (_, result) = on_b.next_message().await.expect("the tool's answer after the resume");
    assert_eq!(result["id"], 7);
    assert_eq!(result["result"]["content"][0]["text"], "LLM response: after the drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_from_elsewhere_are_refused_on_every_instance() {
    let server = RedisServer::start();
    let (a, b) = (Instance::start(&server).await, Instance::start(&server).await);
    let victim = initialize(&a, Some("alice"), json!({"sampling": {}})).await;
    let attacker = initialize(&b, Some("mallory"), json!({"sampling": {}})).await;
    let alice = As {
        session: Some(&victim),
        user: Some("alice"),
        ..As::default()
    };
    let (mut on_a, id, _) = ask(&a, alice).await;

    for at in [&a, &b] {
        // No session.
        let (status, body) = post(at, As::default(), &sample(&id, "injected")).await;
        assert_rejected(status, &body, 400, -32000, "session_id_required");
        // The attacker's own session.
        let mallory = As {
            session: Some(&attacker),
            user: Some("mallory"),
            ..As::default()
        };
        let (status, body) = post(at, mallory, &sample(&id, "injected")).await;
        assert_rejected(status, &body, 400, -32600, "unexpected_response");
        // The victim's session id, by another principal or none: as if it did not exist.
        for user in [Some("mallory"), None] {
            let stolen = As { user, ..alice };
            let (status, body) = post(at, stolen, &sample(&id, "injected")).await;
            assert_rejected(status, &body, 404, -32001, "session_not_found");
        }
        // An id nobody minted, in the right session.
        let forged = format!("mcp-srv-{}", "f".repeat(32));
        let (status, body) = post(at, alice, &sample(&forged, "injected")).await;
        assert_rejected(status, &body, 400, -32600, "unexpected_response");
    }

    let (status, _) = post(&b, alice, &sample(&id, "genuine")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, result) = on_a.next_message().await.unwrap();
    assert_eq!(result["result"]["content"][0]["text"], "LLM response: genuine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_on_b_asks_a_client_listening_on_a() {
    let server = RedisServer::start();
    let (a, b) = (Instance::start(&server).await, Instance::start(&server).await);
    let session = initialize(&a, None, json!({"roots": {"listChanged": true}})).await;
    let who = As {
        session: Some(&session),
        ..As::default()
    };
    let listening = send(&a, Method::GET, who, None).await;
    assert_eq!(listening.status(), StatusCode::OK);
    let mut on_a = SseReader::new(listening.into_body());

    let id = SessionId::parse(&session).unwrap();
    let manager = b.layer.manager();
    let asking = tokio::spawn(async move { manager.request(&id, "roots/list", Value::Null).await });
    let (_, request) = on_a.next_message().await.expect("the request on A's GET stream");
    assert_eq!(request["method"], "roots/list");
    let minted = request["id"].as_str().unwrap().to_owned();
    let roots = json!({"jsonrpc": "2.0", "id": minted, "result": {"roots": [{"uri": "file:///work"}]}});
    let (status, _) = post(&a, who, &roots).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let answer = asking.await.unwrap().expect("B's request is answered");
    assert_eq!(answer["roots"][0]["uri"], "file:///work");

    // Undeclared: refused on B before anything reaches A.
    let id = SessionId::parse(&session).unwrap();
    let refused = b
        .layer
        .manager()
        .request(&id, "sampling/createMessage", json!({}))
        .await;
    assert!(matches!(refused, Err(RequestError::NotDeclared { .. })), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_made_on_a_is_notified_from_b_once() {
    let server = RedisServer::start();
    let (a, b) = (Instance::start(&server).await, Instance::start(&server).await);
    let subscriber = initialize(&a, None, json!({})).await;
    let bystander = initialize(&b, None, json!({})).await;
    let sub = As {
        session: Some(&subscriber),
        ..As::default()
    };
    let subscribe = json!({"jsonrpc": "2.0", "id": 3, "method": "resources/subscribe", "params": {"uri": "file:///a"}});
    let (status, body) = post(&a, sub, &subscribe).await;
    assert!(status.is_success(), "{status} {}", String::from_utf8_lossy(&body));

    let mut on_a = SseReader::new(send(&a, Method::GET, sub, None).await.into_body());
    let by = As {
        session: Some(&bystander),
        ..As::default()
    };
    let mut bystander_on_a = SseReader::new(send(&a, Method::GET, by, None).await.into_body());

    assert_eq!(b.layer.manager().notify_subscribers("file:///a").await, Ok(1));
    let note = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": 1}});
    assert_eq!(b.layer.manager().broadcast(&note).await, Ok(2));

    let (_, updated) = on_a.next_message().await.unwrap();
    assert_eq!(updated["method"], "notifications/resources/updated");
    assert_eq!(updated["params"]["uri"], "file:///a");
    // Once each, in order: the broadcast follows the update directly.
    assert_eq!(on_a.next_message().await.unwrap().1, note);
    assert_eq!(bystander_on_a.next_message().await.unwrap().1, note);
    assert_eq!(
        a.layer
            .manager()
            .broadcast(&json(b"{\"jsonrpc\":\"2.0\",\"method\":\"x\"}"))
            .await,
        Ok(2)
    );
    assert_eq!(on_a.next_message().await.unwrap().1["method"], "x");
    assert_eq!(bystander_on_a.next_message().await.unwrap().1["method"], "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_handle_counts_and_ends_sessions_of_every_instance() {
    let server = RedisServer::start();
    let (a, b) = (Instance::start(&server).await, Instance::start(&server).await);
    for at in [&a, &b, &b] {
        initialize(at, Some("carol"), json!({})).await;
    }
    let dave_began = tokio::time::Instant::now();
    let dave = initialize(&a, Some("dave"), json!({})).await;
    assert_eq!(a.layer.manager().admin().count().await.unwrap(), 4);
    assert_eq!(b.layer.manager().admin().count().await.unwrap(), 4);
    let ended = a
        .layer
        .manager()
        .admin()
        .terminate_principal(&Principal::new("carol"))
        .await;
    assert_eq!(ended.unwrap(), 3);
    assert_eq!(b.layer.manager().admin().count().await.unwrap(), 1);
    let info = b
        .layer
        .manager()
        .admin()
        .inspect(&SessionId::parse(&dave).unwrap())
        .await
        .unwrap();
    let info = info.expect("live");
    assert_eq!(info.record.principal(), Some(&Principal::new("dave")));

    // Last activity, as another instance sees it: the time since dave's last request,
    // by Redis' clock, which a request on either instance starts again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let dave_id = SessionId::parse(&dave).unwrap();
    let admin = b.layer.manager().admin();
    let idle = admin.inspect(&dave_id).await.unwrap().expect("live").idle_for;
    // Slack below for the keep-alive touch the layer may make as the request ends.
    assert!(idle >= Duration::from_millis(300), "idle {idle:?} after a 400 ms wait");
    assert!(
        idle <= dave_began.elapsed() + Duration::from_millis(30),
        "idle {idle:?}"
    );
    let ping_began = tokio::time::Instant::now();
    let before = std::time::SystemTime::now();
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let dave_again = As {
        session: Some(&dave),
        user: Some("dave"),
        ..As::default()
    };
    let (status, _) = post(&a, dave_again, &ping).await;
    assert_eq!(status, StatusCode::OK);
    let info = admin.inspect(&dave_id).await.unwrap().expect("live");
    assert!(
        info.idle_for <= ping_began.elapsed() + Duration::from_millis(30),
        "{:?}",
        info.idle_for
    );
    let slack = Duration::from_millis(30);
    assert!(
        info.last_activity + slack >= before && info.last_activity <= std::time::SystemTime::now() + slack,
        "last activity {:?} is not during the ping",
        info.last_activity
    );
}
