//! `tower_mcp_session_redis::connect(url)`: the whole Redis setup in one call. Two
//! layers, each from its own `connect`, share sessions through one private
//! `redis-server` (needs `redis-server` on PATH).
#![cfg(feature = "redis")]

use mcp_test_support::http::{self as support, LEGACY};
use mcp_test_support::redis_server::RedisServer;

use http::StatusCode;
use tower_mcp_session::McpSessionLayer;

async fn instance(url: &str) -> (McpSessionLayer, support::App) {
    let redis = tower_mcp_session_redis::connect(url).await.expect("connect to redis");
    let layer = redis.configure(McpSessionLayer::builder()).build();
    let app = support::app(&layer);
    (layer, app)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_call_sets_up_store_and_log_shared_across_instances() {
    let server = RedisServer::start();
    let (_a_layer, a) = instance(&server.url()).await;
    let (_b_layer, b) = instance(&server.url()).await;

    let session = support::initialize(&a, LEGACY).await;
    // The session made on A is known on B: the store is Redis, not memory.
    let ping = support::request(1, "ping", serde_json::json!({}));
    let (status, _, body) = support::send(&b, Some(&session), &ping).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let keys = server.cli(&["DBSIZE"]);
    assert_ne!(keys.trim(), "0", "the session lives in Redis");

    // An id Redis does not hold is unknown on both.
    let (status, _, _) = support::send(&b, Some("0123456789abcdef0123456789abcdef"), &ping).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_bad_url_is_an_error_not_a_panic() {
    assert!(tower_mcp_session_redis::connect("not a url").await.is_err());
}
