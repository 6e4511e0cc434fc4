//! rmcp 3.11's `StreamableHttpService` with sessions switched off
//! (`legacy_session_mode = false`), behind `McpSessionLayer`: the layer mints, checks
//! and ends `Mcp-Session-Id` for 2025-era clients and makes SSE answers resumable,
//! while rmcp serves every request on its own.
//!
//! ```text
//! cargo run --example rmcp_stateless -- --addr 127.0.0.1:8080 [--json] [--no-layer]
//! ```
//!
//! `--json` asks rmcp for `application/json` answers (`json_response`) instead of
//! one-event SSE streams; `--no-layer` serves rmcp alone, for comparison.

use mcp_test_support::rmcp as rmcp_common;

use std::net::SocketAddr;

use axum::Router;
use axum::serve::ListenerExt;
use tower_mcp_session::McpSessionLayer;

struct Args {
    addr: SocketAddr,
    json: bool,
    layer: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8080".parse().expect("valid"),
        json: false,
        layer: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--addr" => {
                let value = it.next().ok_or("--addr needs a value")?;
                args.addr = value.parse().map_err(|e| format!("--addr: {e}"))?;
            }
            "--json" => args.json = true,
            "--no-layer" => args.layer = false,
            "-h" | "--help" => {
                println!("usage: rmcp_stateless [--addr IP:PORT] [--json] [--no-layer]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("rmcp_stateless: {e}");
        std::process::exit(2);
    });
    let rmcp = rmcp_common::stateless(args.json);
    let app = if args.layer {
        Router::new().route_service("/mcp", rmcp).layer(McpSessionLayer::new())
    } else {
        Router::new().route_service("/mcp", rmcp)
    };
    let listener = tokio::net::TcpListener::bind(args.addr).await.unwrap_or_else(|e| {
        eprintln!("rmcp_stateless: cannot bind {}: {e}", args.addr);
        std::process::exit(1);
    });
    println!(
        "rmcp (stateless{}) {} on http://{}/mcp",
        if args.json { ", JSON answers" } else { "" },
        if args.layer { "behind McpSessionLayer" } else { "alone" },
        listener.local_addr().expect("bound")
    );
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.expect("server error");
}
