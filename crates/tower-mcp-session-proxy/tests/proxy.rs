//! The proxy over real loopback sockets: a stateless upstream (the echo server with no
//! layer), the layer plus [`Upstream`] in front of it, hyper's client driving both.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_test_support::echo::{self, EchoOptions};
use mcp_test_support::http::{initialize_body, modern_meta, request, sse_events};
use mcp_test_support::tcp::{client, read_body, req};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_mcp_session::McpSessionLayer;
use tower_mcp_session::rate_limit::PeerAddr;
use tower_mcp_session_proxy::Upstream;

/// Serve `service` on a free loopback port; each request carries its peer address.
async fn serve<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let service = service.clone().map_request(move |mut r: Request<Incoming>| {
                r.extensions_mut().insert(PeerAddr(peer));
                r
            });
            let service = hyper_util::service::TowerToHyperService::new(service);
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// The echo server with no layer: a stateless upstream. Records the headers of every
/// request it gets.
async fn upstream(options: EchoOptions, seen: Arc<Mutex<Vec<HeaderMap>>>) -> SocketAddr {
    serve(tower::service_fn(move |req: Request<Incoming>| {
        let (options, seen) = (options.clone(), seen.clone());
        async move {
            seen.lock().unwrap().push(req.headers().clone());
            Ok::<_, Infallible>(echo::handle(options, req).await)
        }
    }))
    .await
}

/// The layer and the proxy in front of `upstream_url`.
async fn proxy(upstream: Upstream) -> SocketAddr {
    let layer = McpSessionLayer::builder().allow_any_host().build();
    let service = tower::ServiceBuilder::new()
        .map_request(|r: Request<Incoming>| r.map(|b| b.boxed()))
        .layer(layer)
        .service(upstream);
    // The layer hands `Full<Bytes>` on; it takes any body.
    serve(tower::util::BoxCloneSyncService::new(
        service.map_err(|e: Infallible| match e {}),
    ))
    .await
}

async fn proxied(options: EchoOptions) -> (SocketAddr, Arc<Mutex<Vec<HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let up = upstream(options, seen.clone()).await;
    (proxy(Upstream::new(&format!("http://{up}/mcp")).unwrap()).await, seen)
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

async fn initialize(addr: SocketAddr) -> String {
    let resp = client()
        .request(req(addr, Method::POST, None, Some(&initialize_body("2025-11-25"))))
        .await
        .unwrap();
    let (status, headers, body) = read_body(resp).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["result"]["protocolVersion"], "2025-11-25");
    headers["mcp-session-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_stateless_upstream_gets_sessions_through_the_proxy() {
    let (addr, _) = proxied(EchoOptions::default()).await;
    let sid = initialize(addr).await;
    let call = request(2, "tools/call", json!({"name": "echo", "arguments": {"message": "hi"}}));
    let (status, _, body) = read_body(
        client()
            .request(req(addr, Method::POST, Some(&sid), Some(&call)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["id"], 2);
    assert!(
        body.windows(2).any(|w| w == b"hi"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // The layer, not the upstream, knows the sessions.
    let (status, _, _) = read_body(
        client()
            .request(req(addr, Method::POST, None, Some(&call)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = read_body(
        client()
            .request(req(addr, Method::DELETE, Some(&sid), None))
            .await
            .unwrap(),
    )
    .await;
    assert!(status.is_success(), "{status}");
    let (status, _, _) = read_body(
        client()
            .request(req(addr, Method::POST, Some(&sid), Some(&call)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_upstream_sse_answer_streams_through_and_resumes() {
    let options = EchoOptions {
        sse_tool_calls: true,
        manager: None,
    };
    let (addr, _) = proxied(options).await;
    let sid = initialize(addr).await;
    let call = request(
        3,
        "tools/call",
        json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "p"}}),
    );
    let resp = client()
        .request(req(addr, Method::POST, Some(&sid), Some(&call)))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    // Read until the first progress event, then drop the connection mid-stream.
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    let last_id = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.extend_from_slice(&data);
        }
        let events = sse_events(&seen[..seen.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)]);
        if let Some(e) = events.iter().find(|e| e.data.contains("notifications/progress")) {
            break e.id.clone().expect("a resumable event id");
        }
    };
    drop(body);
    // Resume: the rest, the final answer once, nothing twice.
    let mut resume = req(addr, Method::GET, Some(&sid), None);
    resume.headers_mut().insert("last-event-id", last_id.parse().unwrap());
    resume
        .headers_mut()
        .insert("accept", "text/event-stream".parse().unwrap());
    let (status, _, rest) = read_body(client().request(resume).await.unwrap()).await;
    assert_eq!(status, 200);
    let rest = sse_events(&rest);
    let messages: Vec<Value> = rest
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| json_of(e.data.as_bytes()))
        .collect();
    let progress: Vec<_> = messages
        .iter()
        .filter_map(|m| m["params"]["progress"].as_u64())
        .collect();
    assert_eq!(progress, [50, 100], "the events after the first progress, each once");
    let answers: Vec<_> = messages.iter().filter(|m| m["id"] == 3).collect();
    assert_eq!(answers.len(), 1);
    assert!(answers[0]["result"].is_object());
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_with_a_json_rpc_error() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let addr = proxy(Upstream::new(&format!("http://{closed}/mcp")).unwrap()).await;
    let init = {
        let mut body = initialize_body("2025-11-25");
        body["id"] = json!("init-1");
        body
    };
    let (status, headers, body) = read_body(
        client()
            .request(req(addr, Method::POST, None, Some(&init)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 502);
    assert!(!headers.contains_key("mcp-session-id"));
    let body = json_of(&body);
    assert_eq!(body["id"], "init-1");
    assert_eq!(body["error"]["code"], -32603);
    assert_eq!(body["error"]["message"], "Upstream MCP server unavailable");
    assert!(
        !body.to_string().contains(&closed.port().to_string()),
        "no upstream address in the answer"
    );
    // A 2026-07-28 request, passed through by the layer, gets the same.
    let modern = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {"_meta": modern_meta()}});
    let mut r = req(addr, Method::POST, None, Some(&modern));
    r.headers_mut()
        .insert("mcp-protocol-version", "2026-07-28".parse().unwrap());
    let (status, _, body) = read_body(client().request(r).await.unwrap()).await;
    assert_eq!(status, 502);
    assert_eq!(json_of(&body)["id"], 9);
}

#[tokio::test]
async fn a_silent_upstream_is_504() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    // Accepts, reads nothing, answers nothing; keeps the sockets open.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let upstream = Upstream::builder(&format!("http://{silent}/mcp"))
        .unwrap()
        .response_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let addr = proxy(upstream).await;
    let (status, _, body) = read_body(
        client()
            .request(req(addr, Method::POST, None, Some(&initialize_body("2025-11-25"))))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 504);
    assert_eq!(json_of(&body)["id"], 0);
    assert_eq!(
        json_of(&body)["error"]["message"],
        "Upstream MCP server did not answer in time"
    );
}

#[tokio::test]
async fn an_upstream_with_sessions_of_its_own_is_refused() {
    let stateful = serve(tower::service_fn(|req: Request<Incoming>| async move {
        let mut resp = echo::handle(EchoOptions::default(), req).await;
        resp.headers_mut()
            .insert("mcp-session-id", "upstream-own".parse().unwrap());
        Ok::<_, Infallible>(resp)
    }))
    .await;
    let addr = proxy(Upstream::new(&format!("http://{stateful}/mcp")).unwrap()).await;
    let (status, headers, body) = read_body(
        client()
            .request(req(addr, Method::POST, None, Some(&initialize_body("2025-11-25"))))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 502);
    assert_ne!(
        headers.get("mcp-session-id").map(|v| v.as_bytes()),
        Some(&b"upstream-own"[..])
    );
    assert_eq!(json_of(&body)["error"]["data"]["reason"], "upstream_session_id");
}

#[tokio::test]
async fn what_crosses_the_proxy_and_what_stays() {
    let (addr, seen) = proxied(EchoOptions::default()).await;
    let sid = initialize(addr).await;
    let call = request(2, "tools/list", json!({}));
    let mut r = req(addr, Method::POST, Some(&sid), Some(&call));
    r.headers_mut().insert("connection", "x-private".parse().unwrap());
    r.headers_mut()
        .insert("x-private", "for the proxy only".parse().unwrap());
    r.headers_mut().insert("x-trace", "kept".parse().unwrap());
    r.headers_mut()
        .insert("mcp-protocol-version", "2025-11-25".parse().unwrap());
    let (status, _, _) = read_body(client().request(r).await.unwrap()).await;
    assert_eq!(status, 200);
    let seen = seen.lock().unwrap();
    let got = seen.last().expect("the upstream got the call");
    assert!(!got.contains_key("mcp-session-id"), "the layer's session id stays here");
    assert!(!got.contains_key("x-private"));
    assert_eq!(got["x-trace"], "kept");
    assert_eq!(got["mcp-protocol-version"], "2025-11-25");
    assert_eq!(got["x-forwarded-for"], "127.0.0.1");
    assert!(got["host"].to_str().unwrap().starts_with("127.0.0.1:"));
    assert_ne!(
        got["host"].to_str().unwrap(),
        addr.to_string(),
        "Host names the upstream"
    );
}

#[tokio::test]
async fn modern_requests_pass_through_untouched() {
    let (addr, seen) = proxied(EchoOptions::default()).await;
    let modern = json!({"jsonrpc": "2.0", "id": "m1", "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "modern"}, "_meta": modern_meta()}});
    let mut r = req(addr, Method::POST, None, Some(&modern));
    r.headers_mut()
        .insert("mcp-protocol-version", "2026-07-28".parse().unwrap());
    r.headers_mut().insert("mcp-method", "tools/call".parse().unwrap());
    r.headers_mut().insert("mcp-name", "echo".parse().unwrap());
    let (status, headers, body) = read_body(client().request(r).await.unwrap()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(!headers.contains_key("mcp-session-id"));
    let body = json_of(&body);
    assert_eq!(body["id"], "m1");
    assert!(body.to_string().contains("modern"));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.last().unwrap()["mcp-name"], "echo");
}

/// `Full` bodies are what the layer hands on; any client body type works in front.
#[allow(dead_code)]
fn takes_the_layers_requests(u: Upstream) -> impl tower::Service<Request<Full<Bytes>>> {
    u
}
