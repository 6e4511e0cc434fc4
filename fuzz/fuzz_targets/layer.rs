//! The whole layer: a few arbitrary requests in a row → `McpSessionLayer` over the echo
//! server, on a fresh layer and a paused-clock runtime per input.
//!
//! Invariants: never panics (libFuzzer aborts on a panic in any task); no 5xx but 503
//! `at_capacity` (the memory store cannot be unavailable); every refusal of the layer is
//! a 4xx (or that 503) with `Content-Type: application/json` and a JSON-RPC error body
//! (`code`, fixed `message` without internal text, `data.reason`); and no answer to a
//! 2026-07-28 request carries `Mcp-Session-Id`.
//!
//! Session ids are minted by a counter (`fz0`, `fz1`, …) so an input can name the
//! session an earlier request of it created; `Last-Event-ID` can be the last event id
//! an earlier answer carried.
#![no_main]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use mcp_test_support::echo::EchoOptions;
use mcp_test_support::http::{App, app_with};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_mcp_session::sse::SseParser;
use tower_mcp_session::{McpSessionLayer, SessionId};

#[derive(Debug, Arbitrary)]
struct Input {
    config: u8,
    requests: Vec<Req>,
}

#[derive(Debug, Arbitrary)]
struct Req {
    method: u8,
    uri: u8,
    session: Choice,
    version: Choice,
    last_event_id: Choice,
    accept: Choice,
    content_type: Choice,
    extra: Vec<(u8, Vec<u8>)>,
    body: BodyChoice,
}

/// A header value: absent, one of a few meaningful values, or raw bytes.
#[derive(Debug, Arbitrary)]
enum Choice {
    Absent,
    Known(u8),
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum BodyChoice {
    Raw(Vec<u8>),
    Template {
        which: u8,
        version: u8,
        id: u8,
    },
    /// A template with bytes spliced in at `at`.
    Spliced {
        which: u8,
        at: u16,
        bytes: Vec<u8>,
    },
}

const VERSIONS: [&str; 6] = [
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
    "2024-11-05",
    "2027-01-01",
];
const ACCEPTS: [&str; 5] = [
    "application/json, text/event-stream",
    "text/event-stream",
    "application/json",
    "*/*",
    "application/json;q=0, text/event-stream",
];
const CONTENT_TYPES: [&str; 3] = ["application/json", "application/json; charset=utf-8", "text/plain"];
const EXTRA: [&str; 8] = [
    "origin",
    "host",
    "mcp-method",
    "mcp-name",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "accept",
];
const TOOLS: [&str; 6] = [
    "echo",
    "test_tool_with_progress",
    "test_reconnection",
    "notify_me",
    "test_sampling",
    "nope",
];

fn template(which: u8, version: u8, id: u8) -> Value {
    let v = VERSIONS[usize::from(version) % VERSIONS.len()];
    let id = match id % 4 {
        0 => json!(i64::from(id)),
        1 => json!(format!("r{id}")),
        2 => json!(f64::from(id) + 0.5),
        _ => json!(u64::MAX),
    };
    let meta = json!({"io.modelcontextprotocol/protocolVersion": v, "io.modelcontextprotocol/clientCapabilities": {}});
    let tool = TOOLS[usize::from(which / 16) % TOOLS.len()];
    match which % 12 {
        0 => json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
            "protocolVersion": v, "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}}}),
        1 => json!({"jsonrpc": "2.0", "id": id, "method": "ping"}),
        2 => json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}),
        3 => {
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"text": "hi"}}})
        }
        4 => json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        5 => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        6 => {
            json!([{"jsonrpc": "2.0", "id": id, "method": "ping"}, {"jsonrpc": "2.0", "method": "notifications/initialized"}])
        }
        7 => {
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}, "_meta": meta}})
        }
        8 => json!({"jsonrpc": "2.0", "id": id, "method": "server/discover", "params": {"_meta": meta}}),
        9 => json!({"jsonrpc": "2.0", "id": id, "method": "logging/setLevel", "params": {"level": "debug"}}),
        10 => json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}}),
        _ => json!([["2.0", "ping", id]]),
    }
}

struct State {
    last_session: Option<String>,
    last_event_id: Option<String>,
}

fn value(choice: &Choice, known: impl Fn(u8) -> Option<String>) -> Option<Vec<u8>> {
    match choice {
        Choice::Absent => None,
        Choice::Known(k) => known(*k).map(String::into_bytes),
        Choice::Raw(bytes) => Some(bytes.clone()),
    }
}

fn build(req: &Req, state: &State) -> Option<(Request<Full<Bytes>>, bool)> {
    let method =
        [Method::POST, Method::POST, Method::GET, Method::DELETE, Method::PUT][usize::from(req.method) % 5].clone();
    let uri = [
        "http://localhost/mcp",
        "/mcp",
        "http://evil.example/mcp",
        "http://[::1]:9/mcp",
    ][usize::from(req.uri) % 4];
    let mut b = Request::builder().method(method).uri(uri).header("host", "localhost");
    let mut headers: Vec<(&str, Vec<u8>)> = Vec::new();
    let session = value(&req.session, |k| match k % 3 {
        0 => state.last_session.clone(),
        _ => Some(format!("fz{}", k % 4)),
    });
    headers.extend(session.map(|v| ("mcp-session-id", v)));
    let version = value(&req.version, |k| {
        Some(VERSIONS[usize::from(k) % VERSIONS.len()].to_owned())
    });
    headers.extend(version.clone().map(|v| ("mcp-protocol-version", v)));
    let last = value(&req.last_event_id, |k| match k % 2 {
        0 => state.last_event_id.clone(),
        _ => Some(format!("{:016x}-{}", k, k % 3)),
    });
    headers.extend(last.map(|v| ("last-event-id", v)));
    let accept = value(&req.accept, |k| {
        Some(ACCEPTS[usize::from(k) % ACCEPTS.len()].to_owned())
    })
    .or_else(|| matches!(req.accept, Choice::Absent).then(|| ACCEPTS[0].as_bytes().to_vec()));
    headers.extend(accept.map(|v| ("accept", v)));
    let content_type = value(&req.content_type, |k| {
        Some(CONTENT_TYPES[usize::from(k) % CONTENT_TYPES.len()].to_owned())
    })
    .or_else(|| matches!(req.content_type, Choice::Absent).then(|| CONTENT_TYPES[0].as_bytes().to_vec()));
    headers.extend(content_type.map(|v| ("content-type", v)));
    for (name, v) in req.extra.iter().take(4) {
        headers.push((EXTRA[usize::from(*name) % EXTRA.len()], v.clone()));
    }
    for (name, v) in headers {
        let v = HeaderValue::from_bytes(&v).ok()?;
        b = b.header(name, v);
    }
    let body = match &req.body {
        BodyChoice::Raw(bytes) => bytes.clone(),
        BodyChoice::Template { which, version, id } => serde_json::to_vec(&template(*which, *version, *id)).unwrap(),
        BodyChoice::Spliced { which, at, bytes } => {
            let mut body = serde_json::to_vec(&template(*which, 0, 1)).unwrap();
            let at = usize::from(*at) % (body.len() + 1);
            body.splice(at..at, bytes.iter().copied());
            body
        }
    };
    let request = b.body(Full::new(Bytes::new())).ok()?;
    let modern = is_modern_request(&request, &body);
    let (parts, _) = request.into_parts();
    Some((Request::from_parts(parts, Full::new(Bytes::from(body))), modern))
}

/// Whether the layer must treat the request as 2026-07-28: the header says so, or a
/// POST body carries the 2026-07-28 `_meta`.
fn is_modern_request(request: &Request<Full<Bytes>>, body: &[u8]) -> bool {
    use tower_mcp_session::fuzzing::{is_modern, peek_body};
    let meta = request.method() == Method::POST
        && match peek_body(body) {
            Ok((false, m)) => m[0].modern_version.is_some(),
            _ => false,
        };
    is_modern(request.headers(), meta)
}

fn layer(config: u8) -> McpSessionLayer {
    let minted = Arc::new(AtomicU64::new(0));
    let mut builder = McpSessionLayer::builder()
        .session_ids(move || SessionId::parse(&format!("fz{}", minted.fetch_add(1, Ordering::Relaxed))).unwrap())
        .strict_modern_headers(config & 1 != 0)
        .client_termination(config & 2 == 0)
        .modern_only(config & 4 != 0 && config & 8 != 0)
        .max_body_bytes(if config & 16 != 0 { 64 } else { 4096 })
        .max_client_metadata_bytes(if config & 32 != 0 { 16 } else { 4096 });
    if config & 64 != 0 {
        builder = builder.max_sessions(Some(1));
    }
    builder.build()
}

/// Forbidden in what the layer writes itself: signs of internal error text.
const INTERNAL: [&str; 9] = [
    "panicked",
    "src/",
    ".rs:",
    " at line ",
    "column",
    "Error(",
    "Error {",
    "serde",
    "Backtrace",
];

async fn run(input: Input) {
    let layer = layer(input.config);
    let app: App = app_with(
        &layer,
        EchoOptions {
            sse_tool_calls: input.config & 128 != 0,
            manager: Some(layer.manager()),
        },
    );
    let mut state = State {
        last_session: None,
        last_event_id: None,
    };
    for req in input.requests.iter().take(6) {
        let Some((request, modern)) = build(req, &state) else {
            continue;
        };
        let rejected_before = rejected(&layer);
        let response = app.clone().oneshot(request).await.unwrap();
        let refused = rejected(&layer) > rejected_before;
        let (head, body) = response.into_parts();
        if modern {
            assert!(
                head.headers.get("mcp-session-id").is_none(),
                "a session id on a 2026-07-28 answer"
            );
        }
        if let Some(id) = head.headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            state.last_session = Some(id.to_owned());
        }
        let sse = head
            .headers
            .get("content-type")
            .is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream"));
        let bytes = read_body(body).await;
        if sse {
            let mut parser = SseParser::new(1 << 20);
            parser.push(&bytes);
            while let Ok(Some(_)) = parser.next_event() {}
            if !parser.last_event_id().is_empty() {
                state.last_event_id = Some(parser.last_event_id().to_owned());
            }
        }
        let status = head.status;
        if refused {
            assert!(!status.is_success(), "a refusal with {status}");
            assert_eq!(
                head.headers.get("content-type").map(|c| c.as_bytes()),
                Some(&b"application/json"[..])
            );
            let v: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("refusal body is not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes)));
            assert_eq!(v["jsonrpc"], "2.0");
            assert!(v.get("id").is_some());
            let error = &v["error"];
            assert!(error["code"].is_i64(), "{v}");
            let message = error["message"].as_str().expect("error.message");
            let reason = error["data"]["reason"].as_str().expect("error.data.reason");
            for word in INTERNAL {
                assert!(
                    !message.contains(word) && !reason.contains(word),
                    "internal text in {v}"
                );
            }
            if status.is_server_error() {
                assert_eq!((status.as_u16(), reason), (503, "at_capacity"), "{v}");
            }
        } else {
            assert!(!status.is_server_error(), "{status} from the inner service");
        }
    }
}

fn rejected(layer: &McpSessionLayer) -> u64 {
    layer.manager().metrics().rejected.iter().map(|(_, n)| n).sum()
}

/// The body to its end, or what came before it went quiet for 30 (virtual) seconds: a
/// GET stream stays open, and keep-alives are not progress.
async fn read_body<B>(body: B) -> Vec<u8>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut body = Box::pin(body);
    let mut out = Vec::new();
    for _ in 0..256 {
        match tokio::time::timeout(Duration::from_secs(30), body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if data.starts_with(b":") {
                        break;
                    }
                    out.extend_from_slice(&data);
                }
            }
            Ok(Some(Err(_))) | Ok(None) | Err(_) => break,
        }
        if out.len() > 1 << 20 {
            break;
        }
    }
    out
}

fuzz_target!(|input: Input| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(run(input));
});
