//! Shared test helpers: the echo server behind a layer, request builders, body readers
//! and a small SSE reader that reads the layer's output the way a client does.
#![allow(dead_code)]

pub use crate::echo;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_mcp_session::{McpBody, McpSessionLayer};

pub use echo::{EchoBody, EchoOptions};

/// The echo server behind a layer, boxed so every test names one type.
pub type App = BoxCloneSyncService<Request<Full<Bytes>>, Response<McpBody<EchoBody>>, Infallible>;

/// The echo server behind `layer`.
pub fn app(layer: &McpSessionLayer) -> App {
    app_with(
        layer,
        EchoOptions {
            sse_tool_calls: false,
            manager: Some(layer.manager()),
        },
    )
}

/// The echo server with `options` behind `layer`.
pub fn app_with(layer: &McpSessionLayer, options: EchoOptions) -> App {
    BoxCloneSyncService::new(
        tower::ServiceBuilder::new()
            .layer(layer.clone())
            .service(echo::echo_service(options)),
    )
}

/// The legacy revision the tests speak unless they test another.
pub const LEGACY: &str = "2025-06-18";

/// An `initialize` request (id 0) asking for `version`.
pub fn initialize_body(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {"roots": {}},
        "clientInfo": {"name": "test-client", "version": "1.0"}}})
}

/// A JSON-RPC request.
pub fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The `_meta` of a 2026-07-28 request.
pub fn modern_meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}})
}

/// A POST with the headers a well-behaved client sends.
pub fn post() -> http::request::Builder {
    Request::post("http://localhost/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

/// A POST with only `Host`: for tests of the negotiation headers.
pub fn bare_post() -> http::request::Builder {
    Request::post("http://localhost/mcp").header("host", "localhost")
}

/// `builder` with `body` serialized as JSON.
pub fn with_body(builder: http::request::Builder, body: &Value) -> Request<Full<Bytes>> {
    builder.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

/// A GET that asks for the session's SSE stream.
pub fn get() -> http::request::Builder {
    Request::get("http://localhost/mcp")
        .header("host", "localhost")
        .header("accept", "text/event-stream")
}

/// A DELETE that ends a session.
pub fn delete() -> http::request::Builder {
    Request::delete("http://localhost/mcp").header("host", "localhost")
}

/// `builder` with an empty body.
pub fn empty(builder: http::request::Builder) -> Request<Full<Bytes>> {
    builder.body(Full::new(Bytes::new())).unwrap()
}

/// Send `req` through `app`, failing the test after 10 s.
pub async fn call(app: &App, req: Request<Full<Bytes>>) -> Response<McpBody<EchoBody>> {
    tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(req))
        .await
        .expect("response in time")
        .unwrap()
}

/// POST `body` (with an optional session) and return status, headers and the body.
pub async fn send(app: &App, session: Option<&str>, body: &Value) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut b = post();
    if let Some(s) = session {
        b = b.header("mcp-session-id", s);
    }
    let response = call(app, with_body(b, body)).await;
    let (head, body) = response.into_parts();
    (head.status, head.headers, read_all(body).await)
}

/// A response body to its end, failing the test after 10 s. Each frame is copied and
/// dropped as it comes, as a server writing it to a socket would: the layer holds back
/// a stream whose frames nobody lets go of (a client that does not read).
pub async fn read_all(body: McpBody<EchoBody>) -> Bytes {
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                out.extend_from_slice(&data);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("body in time");
    Bytes::from(out)
}

/// `bytes` as JSON; panics with the text when it is not.
pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Start a session at `version`; returns its id.
pub async fn initialize(app: &App, version: &str) -> String {
    let (status, headers, body) = send(app, None, &initialize_body(version)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    headers
        .get("mcp-session-id")
        .expect("session id on initialize")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Assert a rejection: status, JSON-RPC error code and reason.
pub fn assert_rejected(status: StatusCode, body: &[u8], want_status: u16, code: i64, reason: &str) {
    assert_eq!(status.as_u16(), want_status, "{}", String::from_utf8_lossy(body));
    let v = json(body);
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["error"]["data"]["reason"], reason, "{v}");
}

/// One SSE event as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `id` field, if the event had one.
    pub id: Option<String>,
    /// The data lines, joined with `\n`.
    pub data: String,
    /// The `retry` field, if the event had one.
    pub retry: Option<u64>,
}

/// Read a complete SSE byte stream into events (comments skipped; events with only a
/// `retry` field are reported with empty data and no id).
pub fn sse_events(bytes: &[u8]) -> Vec<Event> {
    let text = std::str::from_utf8(bytes).expect("SSE is UTF-8");
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        if block.trim().is_empty() {
            continue;
        }
        let mut ev = Event {
            id: None,
            data: String::new(),
            retry: None,
        };
        let mut has_field = false;
        let mut data_lines = Vec::new();
        for line in block.lines() {
            if line.starts_with(':') {
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .map(|(n, v)| (n, v.strip_prefix(' ').unwrap_or(v)))
                .unwrap_or((line, ""));
            has_field = true;
            match name {
                "id" => ev.id = Some(value.to_owned()),
                "data" => data_lines.push(value.to_owned()),
                "retry" => ev.retry = value.parse().ok(),
                _ => {}
            }
        }
        ev.data = data_lines.join("\n");
        if has_field {
            events.push(ev);
        }
    }
    events
}

/// The JSON-RPC messages in an SSE stream (events with data).
pub fn sse_messages(bytes: &[u8]) -> Vec<Value> {
    sse_events(bytes)
        .into_iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| json(e.data.as_bytes()))
        .collect()
}

/// A store that counts what the layer asks of it and can be made slow.
pub mod counting {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::time::Duration;

    use serde_json::{Map, Value};
    use tower_mcp_session::store::{
        Attributes, BoxFuture, ExpiredBatch, Expiry, MemoryStore, Replaced, SessionPage, SessionStore, Slot, StoreError,
    };
    use tower_mcp_session::{SessionId, SessionRecord};

    /// A [`MemoryStore`] that counts `acquire` calls and can delay every call.
    #[derive(Debug, Clone, Default)]
    pub struct CountingStore {
        /// The store doing the work.
        pub inner: MemoryStore,
        /// Lookups made for requests (loads that count as activity).
        pub acquires: Arc<AtomicUsize>,
        /// The delay before every call, in milliseconds (0: none).
        pub delay_ms: Arc<AtomicU64>,
    }

    impl CountingStore {
        /// Count and delay the calls to `inner`.
        pub fn new(inner: MemoryStore) -> Self {
            Self {
                inner,
                ..Default::default()
            }
        }
        /// Loads that count as activity: one per request that resolves a session.
        pub fn acquires(&self) -> usize {
            self.acquires.load(Ordering::SeqCst)
        }
        /// Delay every later call by `d`.
        pub fn set_delay(&self, d: Duration) {
            self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
        }
        async fn pause(&self) {
            let ms = self.delay_ms.load(Ordering::SeqCst);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
    }

    impl SessionStore for CountingStore {
        fn reserve(&self, cap: usize, hold: Duration) -> BoxFuture<'_, Result<Slot, StoreError>> {
            Box::pin(async move {
                self.pause().await;
                self.inner.reserve(cap, hold).await
            })
        }
        fn cancel(&self, slot: Slot) -> BoxFuture<'_, Result<(), StoreError>> {
            self.inner.cancel(slot)
        }
        fn create<'a>(
            &'a self,
            record: &'a SessionRecord,
            attributes: &'a Map<String, Value>,
            expiry: Expiry,
            slot: Option<Slot>,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.inner.create(record, attributes, expiry, slot)
        }
        fn load<'a>(
            &'a self,
            id: &'a SessionId,
            refresh: Option<Duration>,
        ) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>> {
            if refresh.is_some() {
                self.acquires.fetch_add(1, Ordering::SeqCst);
            }
            Box::pin(async move {
                self.pause().await;
                self.inner.load(id, refresh).await
            })
        }
        fn touch<'a>(&'a self, id: &'a SessionId, idle: Duration) -> BoxFuture<'a, Result<bool, StoreError>> {
            self.inner.touch(id, idle)
        }
        fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>> {
            self.inner.delete(id)
        }
        fn attributes<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Attributes>, StoreError>> {
            self.inner.attributes(id)
        }
        fn replace_attributes<'a>(
            &'a self,
            id: &'a SessionId,
            expected: u64,
            map: &'a Map<String, Value>,
        ) -> BoxFuture<'a, Result<Replaced, StoreError>> {
            self.inner.replace_attributes(id, expected, map)
        }
        fn take_expired(&self, max: usize) -> BoxFuture<'_, Result<ExpiredBatch, StoreError>> {
            self.inner.take_expired(max)
        }
        fn idle_sessions(&self, idle_for: Duration, max: usize) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
            self.inner.idle_sessions(idle_for, max)
        }
        fn list<'a>(&'a self, cursor: Option<&'a str>, max: usize) -> BoxFuture<'a, Result<SessionPage, StoreError>> {
            self.inner.list(cursor, max)
        }
        fn idle_for<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
            self.inner.idle_for(id)
        }
    }
}

/// Reads an SSE response body event by event, as a client that keeps the stream open
/// does (for streams that end only after the test acts on what they sent).
#[derive(Debug)]
pub struct SseReader<B> {
    body: std::pin::Pin<Box<B>>,
    buffer: Vec<u8>,
}

impl<B> SseReader<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    /// A reader of `body`.
    pub fn new(body: B) -> Self {
        Self {
            body: Box::pin(body),
            buffer: Vec::new(),
        }
    }

    /// The next event, or `None` when the stream ended; fails the test after 10 s.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                if let Some(event) = sse_events(&block).into_iter().next() {
                    return Some(event);
                }
                continue;
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("an SSE event in time");
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => panic!("SSE body failed: {e:?}"),
                None => return None,
            }
        }
    }

    /// The next event that carries a message, with its SSE id.
    pub async fn next_message(&mut self) -> Option<(Option<String>, Value)> {
        while let Some(event) = self.next_event().await {
            if !event.data.is_empty() {
                return Some((event.id, json(event.data.as_bytes())));
            }
        }
        None
    }
}
