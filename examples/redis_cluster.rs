//! Two instances of the echo MCP server sharing one Redis: what a deployment behind a
//! round-robin load balancer looks like, in one process. Each instance has its own
//! `McpSessionLayer`, its own Redis connection, its own `RedisSessionStore` and
//! `RedisEventLog`; they share nothing but Redis.
//!
//! ```text
//! redis-server --port 6379 &          # or any Redis you have
//! cargo run --features redis --example redis_cluster -- redis://127.0.0.1:6379
//! # instance A: http://127.0.0.1:8081/mcp
//! # instance B: http://127.0.0.1:8082/mcp
//! ```
//!
//! `--a IP:PORT` and `--b IP:PORT` choose the addresses (port 0: any free port).
//!
//! # Trying it with curl
//!
//! ```text
//! A=http://127.0.0.1:8081/mcp; B=http://127.0.0.1:8082/mcp
//! H=(-H 'content-type: application/json' -H 'accept: application/json, text/event-stream')
//!
//! # 1. A session made on A...
//! curl -si "${H[@]}" $A -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{
//!   "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
//! SID=...   # the Mcp-Session-Id header of that answer
//!
//! # ...works on B.
//! curl -s "${H[@]}" -H "mcp-session-id: $SID" $B \
//!   -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}'
//!
//! # 2. A push from A reaches the GET stream held on B. In a second terminal:
//! curl -N -H 'accept: text/event-stream' -H "mcp-session-id: $SID" $B
//! # then in the first one (notify_me pushes through the manager of the instance it runs on):
//! curl -s "${H[@]}" -H "mcp-session-id: $SID" $A \
//!   -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"notify_me","arguments":{}}}'
//! # the second terminal prints `data: {..."hello from notify_me"...}`
//!
//! # 3. A stream started on A, resumed on B. Start the progress tool on A and cut the
//! #    connection after the first progress event (`head -n 7` does it: priming event,
//! #    `retry`, then the event `<stream>-1`; the next ones are 50 ms apart):
//! curl -sN "${H[@]}" -H "mcp-session-id: $SID" $A -d '{"jsonrpc":"2.0","id":3,"method":"tools/call",
//!   "params":{"name":"test_tool_with_progress","arguments":{},"_meta":{"progressToken":"t"}}}' | head -n 7
//! # then resume on B from the last id you saw (`<stream>-1`): exactly the rest, each once.
//! curl -sN -H 'accept: text/event-stream' -H "mcp-session-id: $SID" -H 'last-event-id: <stream>-1' $B
//!
//! # 4. DELETE on B ends the session everywhere: A now answers 404.
//! curl -si -X DELETE -H "mcp-session-id: $SID" $B
//! curl -si "${H[@]}" -H "mcp-session-id: $SID" $A -d '{"jsonrpc":"2.0","id":4,"method":"ping"}'
//! ```
//!
//! Stop Redis while this runs and requests get `503` with `Retry-After`; start it again
//! and both instances recover by themselves (with `appendonly yes`, sessions survive).

use mcp_test_support::echo as common;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::any_service;
use tower_mcp_session::McpSessionLayer;

struct Args {
    url: String,
    a: SocketAddr,
    b: SocketAddr,
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut a: SocketAddr = "127.0.0.1:8081".parse().expect("valid");
    let mut b: SocketAddr = "127.0.0.1:8082".parse().expect("valid");
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--a" => a = value()?.parse().map_err(|e| format!("--a: {e}"))?,
            "--b" => b = value()?.parse().map_err(|e| format!("--b: {e}"))?,
            "-h" | "--help" => {
                println!("usage: redis_cluster REDIS_URL [--a IP:PORT] [--b IP:PORT]");
                std::process::exit(0);
            }
            other if other.starts_with('-') => return Err(format!("unknown argument {other}")),
            other if url.is_none() => url = Some(other.to_owned()),
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    let url = url.ok_or("the Redis URL is required, e.g. redis://127.0.0.1:6379")?;
    Ok(Args { url, a, b })
}

/// One instance: its own connection, store, log and layer, listening on `addr`.
async fn instance(url: &str, addr: SocketAddr) -> Result<(tokio::net::TcpListener, Router), String> {
    // Built exactly as `echo_server --redis` builds it; no session cap.
    let layer = common::with_redis(McpSessionLayer::builder(), url, None).await?.build();
    let options = common::EchoOptions {
        sse_tool_calls: false,
        manager: Some(layer.manager()),
    };
    let app = Router::new()
        .route_service("/mcp", any_service(common::echo_service(options)))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    Ok((listener, app))
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("redis_cluster: {e}");
        std::process::exit(2);
    });
    let mut servers = Vec::new();
    for (name, addr) in [("A", args.a), ("B", args.b)] {
        let (listener, app) = instance(&args.url, addr).await.unwrap_or_else(|e| {
            eprintln!("redis_cluster: instance {name}: {e}");
            std::process::exit(1);
        });
        println!("instance {name}: http://{}/mcp", listener.local_addr().expect("bound"));
        servers.push(tokio::spawn(async move { axum::serve(listener, app).await }));
    }
    println!("both share {}", args.url);
    for server in servers {
        if let Ok(Err(e)) = server.await {
            eprintln!("redis_cluster: server error: {e}");
            std::process::exit(1);
        }
    }
}
