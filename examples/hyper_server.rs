//! The echo MCP server behind `McpSessionLayer` on plain hyper, without axum:
//! `hyper_util` for the connection, `tower::ServiceBuilder` for the layer.
//!
//! ```text
//! cargo run --example hyper_server -- 127.0.0.1:8081
//! ```

use mcp_test_support::echo as common;

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;
use tower_mcp_session::McpSessionLayer;
use tower_mcp_session::rate_limit::PeerAddr;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:8081")
        .parse()
        .expect("an IP:PORT");
    let layer = McpSessionLayer::new();
    let options = common::EchoOptions {
        sse_tool_calls: false,
        manager: Some(layer.manager()),
    };
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(common::echo_service(options));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "echo MCP server (hyper) listening on http://{}/mcp",
        listener.local_addr()?
    );
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        // The peer address travels in the request extensions (rate limiting reads it).
        let service = ServiceBuilder::new()
            .map_request(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                req
            })
            .service(service.clone());
        tokio::spawn(async move {
            let conn = auto::Builder::new(TokioExecutor::new());
            let _ = conn
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
        });
    }
}
