//! rmcp 3.11 tools behind the layer through `tower_mcp_session_rmcp::service`, over a
//! real loopback socket: the session seen from inside a tool (id, parsed client info
//! and capabilities, typed attributes kept across calls), and the `Host` list agreed
//! between the layer and rmcp.

use std::net::SocketAddr;

use axum::Router;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rmcp::model::ProgressNotificationParam;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, tool, tool_router};
use serde_json::{Value, json};
use tower_mcp_session_rmcp::{CurrentSession, OptionalSession};

const VERSION: &str = "2025-06-18";

#[derive(Clone)]
struct Probe;

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Visits {
    count: u32,
    clients: Vec<String>,
}

#[tool_router(server_handler)]
impl Probe {
    #[tool(description = "Report what the session knows.")]
    async fn probe(&self, session: CurrentSession) -> Result<String, ErrorData> {
        let client = session.client_info().expect("clientInfo parsed as an Implementation");
        let roots = session
            .client_capabilities()
            .expect("capabilities parsed")
            .roots
            .is_some();
        let mut visits: Visits = session.get("visits").await?.unwrap_or_default();
        visits.count += 1;
        visits.clients.push(client.name.clone());
        session.set("visits", &visits).await?;
        Ok(json!({
            "id": session.id().as_str(),
            "version": session.protocol_version().to_string(),
            "client": client.name,
            "client_version": client.version,
            "roots": roots,
            "count": visits.count,
        })
        .to_string())
    }

    #[tool(description = "Count to three with progress.")]
    async fn count(&self, context: RequestContext<RoleServer>) -> Result<String, ErrorData> {
        let token = context
            .meta
            .get_progress_token()
            .expect("the test sends a progress token");
        for i in 1..=3u32 {
            let progress = ProgressNotificationParam::new(token.clone(), f64::from(i)).with_total(3.0);
            context.peer.notify_progress(progress).await.expect("progress sent");
        }
        Ok("counted".to_owned())
    }

    #[tool(description = "Whether the request has a session.")]
    fn has_session(&self, OptionalSession(session): OptionalSession) -> String {
        session.is_some().to_string()
    }
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

struct Peer {
    client: Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    host: String,
}

impl Peer {
    fn new(addr: SocketAddr, host: &str) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            addr,
            host: host.to_owned(),
        }
    }

    /// POST `body`; the status, the session id header and the JSON-RPC message.
    async fn post(&self, session: Option<&str>, body: Value) -> (StatusCode, Option<String>, Value) {
        let (status, id, bytes) = self.send(http::Method::POST, session, None, Some(body)).await;
        (status, id, message(&bytes))
    }

    /// Any request; the status, the session id header and the whole body.
    async fn send(
        &self,
        method: http::Method,
        session: Option<&str>,
        last_event_id: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Option<String>, Bytes) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}/mcp", self.addr))
            .header("host", &self.host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = session {
            req = req
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", VERSION);
        }
        if let Some(cursor) = last_event_id {
            req = req.header("last-event-id", cursor);
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let response = self.client.request(req.body(Full::new(body)).unwrap()).await.unwrap();
        let status = response.status();
        let id = response
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, id, bytes)
    }

    async fn initialize(&self) -> (StatusCode, Option<String>, Value) {
        self.post(
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": VERSION, "capabilities": {"roots": {"listChanged": true}},
                "clientInfo": {"name": "probe-client", "version": "9.1"}}}),
        )
        .await
    }

    async fn call(&self, session: &str, tool: &str) -> Value {
        let (status, _, message) = self
            .post(
                Some(session),
                json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": {}}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{message}");
        let text = message["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("a text result: {message}"));
        serde_json::from_str(text).unwrap_or(Value::String(text.to_owned()))
    }
}

/// The JSON-RPC message of an answer, JSON or SSE (the event that carries an `id`).
fn message(body: &[u8]) -> Value {
    if let Ok(value) = serde_json::from_slice(body) {
        return value;
    }
    let text = std::str::from_utf8(body).unwrap();
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.trim_start())
                .collect();
            serde_json::from_str::<Value>(&data.join("\n")).ok()
        })
        .find(|m| m.get("id").is_some())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_tool_sees_its_session_typed() {
    let (manager, mcp) = tower_mcp_session_rmcp::service(|| Ok(Probe)).build();
    let peer = Peer::new(serve(Router::new().route_service("/mcp", mcp)).await, "localhost");
    let (status, session, _) = peer.initialize().await;
    assert_eq!(status, StatusCode::OK);
    let session = session.expect("the layer mints the id");
    let (ack, _, _) = peer
        .post(
            Some(&session),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
    assert_eq!(ack, StatusCode::ACCEPTED);

    let first = peer.call(&session, "probe").await;
    assert_eq!(first["id"], session.as_str());
    assert_eq!(first["version"], VERSION);
    assert_eq!(first["client"], "probe-client");
    assert_eq!(first["client_version"], "9.1");
    assert_eq!(first["roots"], true);
    assert_eq!(first["count"], 1);
    // The typed attribute was stored in the session and read back on the next call
    // (rmcp made a fresh handler for it: the state is the layer's).
    let second = peer.call(&session, "probe").await;
    assert_eq!(second["count"], 2);
    assert_eq!(peer.call(&session, "has_session").await, Value::Bool(true));
    assert_eq!(manager.metrics().sessions_created, 1);
}

#[tokio::test]
async fn an_allowed_host_is_served_by_the_layer_and_by_rmcp() {
    let (_, mcp) = tower_mcp_session_rmcp::service(|| Ok(Probe))
        .allow_host("mcp.example.com")
        .build();
    let addr = serve(Router::new().route_service("/mcp", mcp)).await;
    // Without the shared list, rmcp (whose default list is loopback only) would answer
    // this with a plain-text 403 after the layer let it through.
    let peer = Peer::new(addr, "mcp.example.com");
    let (status, session, message) = peer.initialize().await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(message["result"]["protocolVersion"], VERSION);
    let session = session.unwrap();
    assert_eq!(peer.call(&session, "has_session").await, Value::Bool(true));

    // A host in neither list is refused by the layer, with its JSON-RPC body.
    let stranger = Peer::new(addr, "evil.example.net");
    let (status, _, message) = stranger.initialize().await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(message["error"]["data"]["reason"], "forbidden_host");
}

#[tokio::test]
async fn the_layer_and_rmcp_share_the_body_bound() {
    let (_, mcp) = tower_mcp_session_rmcp::service(|| Ok(Probe))
        .max_body_bytes(1024)
        .build();
    let peer = Peer::new(serve(Router::new().route_service("/mcp", mcp)).await, "localhost");
    let (status, _, message) = peer
        .post(
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x".repeat(2048)}}),
        )
        .await;
    // The layer's 413, with a JSON-RPC body: rmcp's plain-text one is never seen.
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(message["error"]["data"]["reason"], "payload_too_large");
}

/// `(id, message)` of each SSE event that carries data.
fn events(body: &[u8]) -> Vec<(String, Value)> {
    std::str::from_utf8(body)
        .unwrap()
        .split("\n\n")
        .filter_map(|event| {
            let id = event
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .map(|i| i.trim().to_owned());
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.trim_start())
                .collect();
            let message = serde_json::from_str::<Value>(&data.join("\n")).ok()?;
            Some((id.expect("every message event has an id"), message))
        })
        .collect()
}

/// The README's promise: rmcp's progress notifications go out on a stream the layer
/// made resumable, so a client that dropped after the first one gets exactly the rest.
#[tokio::test]
async fn progress_from_a_tool_is_resumable() {
    let (_, mcp) = tower_mcp_session_rmcp::service(|| Ok(Probe)).build();
    let peer = Peer::new(serve(Router::new().route_service("/mcp", mcp)).await, "localhost");
    let (_, session, _) = peer.initialize().await;
    let session = session.unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "count", "arguments": {}, "_meta": {"progressToken": "p-1"}}});
    let (status, _, body) = peer.send(http::Method::POST, Some(&session), None, Some(call)).await;
    assert_eq!(status, StatusCode::OK);
    let seen = events(&body);
    let progress: Vec<_> = seen
        .iter()
        .filter(|(_, m)| m["method"] == "notifications/progress")
        .map(|(_, m)| {
            (
                m["params"]["progressToken"].clone(),
                m["params"]["progress"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        progress,
        [(json!("p-1"), 1.0), (json!("p-1"), 2.0), (json!("p-1"), 3.0)],
        "{seen:?}"
    );
    assert_eq!(seen.last().unwrap().1["id"], 7, "the answer comes last");

    // Resume after the first progress event: the two others and the answer, once each.
    let (first_id, _) = &seen[0];
    let (status, _, replay) = peer.send(http::Method::GET, Some(&session), Some(first_id), None).await;
    assert_eq!(status, StatusCode::OK);
    let replayed: Vec<_> = events(&replay).into_iter().map(|(id, _)| id).collect();
    let expected: Vec<_> = seen[1..].iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(replayed, expected);
}
