//! rmcp 3.11 with its sessions off (`legacy_session_mode = false`) behind
//! `McpSessionLayer`, over a real loopback socket: the layer supplies the sessions a
//! 2025-era client expects from a server that keeps none.

use mcp_test_support::rmcp as rmcp_common;

use std::net::SocketAddr;

use axum::Router;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tower_mcp_session::McpSessionLayer;

const VERSION: &str = "2025-06-18";

/// Serve the composition on an ephemeral loopback port until the test ends.
async fn start(json_response: bool) -> SocketAddr {
    serve(
        Router::new()
            .route_service("/mcp", rmcp_common::stateless(json_response))
            .layer(McpSessionLayer::new()),
    )
    .await
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    /// The JSON-RPC message in the answer, whether it came as JSON or as SSE events.
    fn message(&self) -> Value {
        let is_sse = self
            .headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if !is_sse {
            return serde_json::from_slice(&self.body).expect("a JSON body");
        }
        let text = std::str::from_utf8(&self.body).expect("UTF-8 stream");
        text.split("\n\n")
            .filter_map(|event| {
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                let data = data.join("\n");
                (!data.is_empty()).then(|| serde_json::from_str::<Value>(&data).expect("JSON event data"))
            })
            .find(|m| m.get("id").is_some())
            .expect("an SSE event carrying the response")
    }
}

struct Peer {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
}

impl Peer {
    fn new(addr: SocketAddr) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            url: format!("http://{addr}/mcp"),
        }
    }

    async fn send(&self, method: Method, session: Option<&str>, body: Option<Value>) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(&self.url)
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = session {
            req = req
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", VERSION);
        }
        let body = match body {
            Some(body) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(body.to_string()))
            }
            None => Full::default(),
        };
        let response = self.client.request(req.body(body).unwrap()).await.unwrap();
        let (head, body) = response.into_parts();
        let body = tokio::time::timeout(std::time::Duration::from_secs(5), body.collect())
            .await
            .expect("the answer ends")
            .unwrap()
            .to_bytes();
        Answer {
            status: head.status,
            headers: head.headers,
            body,
        }
    }

    async fn initialize(&self) -> String {
        let answer = self
            .send(
                Method::POST,
                None,
                Some(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": VERSION, "capabilities": {},
                    "clientInfo": {"name": "rmcp-behind-layer", "version": "1"}}})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.message()["result"]["protocolVersion"], VERSION);
        let id = answer
            .headers
            .get("mcp-session-id")
            .expect("the layer mints a session id")
            .to_str()
            .unwrap()
            .to_owned();
        let ack = self
            .send(
                Method::POST,
                Some(&id),
                Some(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
            )
            .await;
        assert_eq!(ack.status, StatusCode::ACCEPTED);
        id
    }

    async fn echo(&self, session: &str, text: &str) -> Answer {
        self.send(
            Method::POST,
            Some(session),
            Some(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"message": text}}})),
        )
        .await
    }
}

async fn session_lifecycle(json_response: bool) {
    let peer = Peer::new(start(json_response).await);

    // 1. initialize gets an id from the layer (rmcp itself keeps no sessions).
    let session = peer.initialize().await;
    assert_eq!(session.len(), 32, "{session}");

    // 2. tools/call echo on that session.
    let answer = peer.echo(&session, "hello through the layer").await;
    assert_eq!(answer.status, StatusCode::OK);
    let message = answer.message();
    assert_eq!(message["id"], 2);
    assert_eq!(message["result"]["content"][0]["text"], "hello through the layer");
    assert!(answer.headers.get("mcp-session-id").is_none());

    // 3. an id the layer never minted is unknown: 404.
    let unknown = peer.echo("0123456789abcdef0123456789abcdef", "x").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.message()["error"]["code"], -32001);

    // 4. DELETE ends the session; afterwards the id is unknown.
    let deleted = peer.send(Method::DELETE, Some(&session), None).await;
    assert!(deleted.status.is_success(), "{}", deleted.status);
    let after = peer.echo(&session, "x").await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rmcp_stateless_gets_sessions_from_the_layer_sse_answers() {
    session_lifecycle(false).await;
}

#[tokio::test]
async fn rmcp_stateless_gets_sessions_from_the_layer_json_answers() {
    session_lifecycle(true).await;
}

#[tokio::test]
async fn sse_answers_become_resumable_events() {
    let peer = Peer::new(start(false).await);
    let session = peer.initialize().await;
    let answer = peer.echo(&session, "with an id").await;
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    let text = std::str::from_utf8(&answer.body).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("id:")),
        "the layer numbers the events it relays: {text}"
    );
}

/// The trap of forgetting rmcp's stateless switch: rmcp mints its own `Mcp-Session-Id`,
/// which the layer would replace, and every later call would fail inside rmcp. The
/// layer refuses the `initialize` instead, with a reason that names the cause.
#[tokio::test]
async fn rmcp_stateful_behind_the_layer_is_refused_with_a_distinct_reason() {
    let layer = McpSessionLayer::new();
    let manager = layer.manager();
    let addr = serve(
        Router::new()
            .route_service("/mcp", rmcp_common::stateful())
            .layer(layer),
    )
    .await;
    let peer = Peer::new(addr);
    for _ in 0..2 {
        let answer = peer
            .send(
                Method::POST,
                None,
                Some(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": VERSION, "capabilities": {},
                    "clientInfo": {"name": "rmcp-stateful", "version": "1"}}})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
        assert!(answer.headers.get("mcp-session-id").is_none(), "neither id leaves");
        let message = answer.message();
        assert_eq!(message["id"], 1);
        assert_eq!(message["error"]["code"], -32603);
        assert_eq!(message["error"]["data"]["reason"], "upstream_session_id");
    }
    // Nothing was created, and the reserved places were given back.
    let metrics = manager.metrics();
    assert_eq!(metrics.sessions_created, 0);
    assert_eq!(metrics.active_sessions, Some(0));
    assert_eq!(metrics.rejected(tower_mcp_session::RejectionKind::UpstreamSessionId), 2);
}
