//! The client side against a peer nobody here wrote: rmcp 3.11's Streamable HTTP server,
//! both with its own sessions (stateful) and stateless behind `McpSessionLayer`.

use mcp_test_support::rmcp as rmcp_common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tower::Layer;
use tower_mcp_session::{McpSessionLayer, SessionId};
use tower_mcp_session_client::McpClientLayer;

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn http() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn layer_for(addr: SocketAddr) -> McpClientLayer {
    McpClientLayer::builder()
        .endpoint(format!("http://{addr}/mcp").parse().unwrap())
        .client_info("client-rmcp-test", "0.0.0")
        .protocol_version(tower_mcp_session::ProtocolVersion::V2025_06_18)
        .request_timeout(Some(Duration::from_secs(5)))
        .build()
}

/// rmcp keeps its own sessions: the client captures rmcp's session id, calls the echo
/// tool on it (rmcp answers with SSE), and ends it with DELETE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_rmcp_stateful() {
    let addr = serve(Router::new().route_service("/mcp", rmcp_common::stateful())).await;
    let client = layer_for(addr).layer(http());
    let init = client.initialize().await.unwrap();
    assert!(init["serverInfo"].is_object(), "{init}");
    assert!(client.session_id().is_some(), "rmcp minted a session id");
    let tools = client.request("tools/list", json!({})).await.unwrap();
    assert_eq!(tools["tools"][0]["name"], "echo");
    let answer = client
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "to rmcp"}}),
        )
        .await
        .unwrap();
    assert_eq!(answer["content"][0]["text"], "to rmcp");
    client.close().await.unwrap();
}

/// rmcp stateless behind our layer: our session ids, and when the session is ended
/// server-side the client re-initializes once by itself and the call succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_rmcp_stateless_behind_the_layer() {
    let layer = McpSessionLayer::new();
    let addr = serve(
        Router::new()
            .route_service("/mcp", rmcp_common::stateless(false))
            .layer(layer.clone()),
    )
    .await;
    let client = layer_for(addr).layer(http());
    client.initialize().await.unwrap();
    let first = client.session_id().unwrap();
    assert_eq!(first.as_str().len(), 32, "the layer's id, not rmcp's");
    let answer = client
        .request("tools/call", json!({"name": "echo", "arguments": {"message": "one"}}))
        .await
        .unwrap();
    assert_eq!(answer["content"][0]["text"], "one");
    assert!(
        layer
            .manager()
            .close(&SessionId::parse(first.as_str()).unwrap())
            .await
            .unwrap()
    );
    let answer = client
        .request("tools/call", json!({"name": "echo", "arguments": {"message": "two"}}))
        .await
        .unwrap();
    assert_eq!(answer["content"][0]["text"], "two");
    let second = client.session_id().unwrap();
    assert_ne!(first, second, "re-initialized after the 404");
    assert_eq!(client.stats().reinitializations, 1);
    client.close().await.unwrap();
    assert_eq!(layer.manager().metrics().active_sessions, Some(0));
}
