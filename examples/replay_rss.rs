//! Resident memory of a server replaying one large event to connections that never
//! read (issue 12): one 3.9 MB SSE answer, then `GET`s resuming it from its start whose
//! clients read nothing (a 4 KiB receive buffer each).
//!
//! ```text
//! cargo run --example replay_rss -- 200
//! ```
//!
//! Prints the server process's VmRSS (Linux, `/proc/self/status`) before the answer,
//! after it, and with the non-reading connections held open; then how many of them the
//! write timeout (here 5 s) has cut.

use mcp_test_support::echo as common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tower::ServiceBuilder;
use tower_mcp_session::McpSessionLayer;

type Boxed = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// One request over a fresh connection, read to its end: (head, body).
async fn exchange(addr: std::net::SocketAddr, request: String) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).await.unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (
        String::from_utf8_lossy(&all[..split]).into_owned(),
        all[split + 4..].to_vec(),
    )
}

fn post(body: &Value, session: Option<&str>) -> String {
    let body = body.to_string();
    let session = session.map(|s| format!("mcp-session-id: {s}\r\n")).unwrap_or_default();
    format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nmcp-protocol-version: 2025-06-18\r\n\
         {session}connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::main]
async fn main() {
    let connections: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(200);
    let layer = McpSessionLayer::builder()
        .sse_write_timeout(Duration::from_secs(5))
        .build();
    let inner = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let body: Value = serde_json::from_slice(&req.body().clone().collect().await.unwrap().to_bytes()).unwrap();
        if body["method"] == "tools/call" {
            let text = "x".repeat(3_900_000);
            let done =
                json!({"jsonrpc": "2.0", "id": body["id"], "result": {"content": [{"type": "text", "text": text}]}});
            let mut r: Response<Boxed> =
                Response::new(Full::new(Bytes::from(format!("data: {done}\n\n"))).boxed_unsync());
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            return Ok::<_, Infallible>(r);
        }
        Ok(common::handle(common::EchoOptions::default(), req)
            .await
            .map(|b| b.boxed_unsync()))
    });
    let service = ServiceBuilder::new().layer(layer).service(inner);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service.clone();
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
            });
        }
    });

    let (head, _) = exchange(addr, post(&common_init(), None)).await;
    let session = head
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .expect("a session")
        .trim()
        .to_owned();
    let before = rss_mib();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "big", "arguments": {}}});
    let (_, answer) = exchange(addr, post(&call, Some(&session))).await;
    let text = String::from_utf8_lossy(&answer);
    let stream = text
        .split("id: ")
        .nth(1)
        .and_then(|rest| rest.split('-').next())
        .expect("an event id")
        .to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = rss_mib();

    let mut held = Vec::new();
    for _ in 0..connections {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut conn = socket.connect(addr).await.unwrap();
        let get = format!(
            "GET /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\
             mcp-protocol-version: 2025-06-18\r\nmcp-session-id: {session}\r\nlast-event-id: {stream}-0\r\n\r\n"
        );
        conn.write_all(get.as_bytes()).await.unwrap();
        held.push(conn);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let replaying = rss_mib();
    println!("connections: {connections}, event: 3.9 MB");
    println!("VmRSS before the answer:         {before:7.1} MiB");
    println!("VmRSS with the event stored:     {stored:7.1} MiB");
    println!("VmRSS with the replays held:     {replaying:7.1} MiB");

    // Past the write timeout the server has cut the connections that never read.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut cut = 0;
    for stream in &mut held {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    cut += 1;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => break,
            }
        }
    }
    println!("VmRSS after the write timeout:   {:7.1} MiB", rss_mib());
    println!("connections cut by the server:   {cut} of {connections}");
}

fn common_init() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "replay_rss", "version": "0"}}})
}
