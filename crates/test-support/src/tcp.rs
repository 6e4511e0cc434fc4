//! The echo server behind a layer on a real loopback socket, served by hyper, and
//! hyper's client to drive it: what an in-process `oneshot` cannot show (connections
//! that close mid-stream, a request answered on one connection while its stream is
//! read on another).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tower_mcp_session::McpSessionLayer;

use crate::echo::{self, EchoOptions};

/// Serve the echo server with `options` behind `layer` on a free loopback port, with
/// or without `TCP_NODELAY`, until the runtime ends.
pub async fn serve(layer: &McpSessionLayer, options: EchoOptions, nodelay: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = tower::ServiceBuilder::new()
        .layer(layer.clone())
        .service(echo::echo_service(options));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(nodelay).unwrap();
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// A hyper HTTP/1 client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A new client (its own connection pool).
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A request to `/mcp` at `addr` accepting JSON and SSE, with a JSON body if given.
pub fn req(addr: SocketAddr, method: Method, session: Option<&str>, body: Option<&Value>) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json");
    if let Some(s) = session {
        b = b.header("mcp-session-id", s);
    }
    b.body(Full::new(body.map(|b| Bytes::from(b.to_string())).unwrap_or_default()))
        .unwrap()
}

/// Read a whole answer; the body must end within 10 s.
pub async fn read_body(resp: Response<Incoming>) -> (StatusCode, HeaderMap, Bytes) {
    let (head, body) = resp.into_parts();
    let bytes = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (head.status, head.headers, bytes)
}
