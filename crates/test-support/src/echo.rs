//! A small but real stateless MCP server used by the examples, tests and benchmarks:
//! `initialize`, `ping`, `tools/list`, `tools/call` and `server/discover`, answering
//! 2025-era and 2026-07-28 requests alike. It knows nothing about sessions; the layer
//! in front of it supplies them.
//!
//! Besides its own tools it carries the tools the official conformance suite
//! (`@modelcontextprotocol/conformance`) calls, so `tests/interop/run.sh` can drive the
//! layer with it: content tools, logging, sampling and elicitation (server-to-client
//! requests on a POST stream, answered by a separate POST; see `echo/asks.rs`), and the
//! 2026-07-28 diagnostic tools `test_missing_capability` and `test_logging_tool`. For
//! 2026-07-28 clients it also serves `subscriptions/listen` (`echo/listen.rs`).
#![allow(dead_code)]

mod asks;
mod listen;

pub use listen::{listens_opened, open_listens};

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tower_mcp_session::{RequestError, Session, SessionManager, SseControl};

/// The echo server's response body: JSON, or an SSE stream fed by a task.
pub type EchoBody = BoxBody<Bytes, Infallible>;

/// The revisions the echo server speaks.
const LEGACY_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];
const MODERN_VERSION: &str = "2026-07-28";

/// How the echo server answers.
#[derive(Debug, Clone, Default)]
pub struct EchoOptions {
    /// Answer `tools/call echo` as an SSE stream instead of a JSON body.
    pub sse_tool_calls: bool,
    /// Lets `notify_me` push to the caller's GET stream.
    pub manager: Option<SessionManager>,
}

/// The echo server as a tower service over any request body.
pub fn echo_service<B>(
    options: EchoOptions,
) -> impl tower::Service<Request<B>, Response = Response<EchoBody>, Error = Infallible, Future = impl Send>
+ Clone
+ Send
+ Sync
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    tower::service_fn(move |req: Request<B>| {
        let options = options.clone();
        async move { Ok::<_, Infallible>(handle(options, req).await) }
    })
}

/// Answer one request (what [`echo_service`] does per call).
pub async fn handle<B>(options: EchoOptions, req: Request<B>) -> Response<EchoBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    if req.method() != http::Method::POST {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = body.collect().await.map(|c| c.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(message) = serde_json::from_slice::<Value>(&bytes) else {
        return json_response(StatusCode::BAD_REQUEST, error(Value::Null, -32700, "Parse error"));
    };
    let ctx = Ctx {
        options,
        session: parts.extensions.get::<Session>().cloned(),
        control: parts.extensions.get::<SseControl>().cloned(),
    };
    if let Value::Array(items) = message {
        // A 2025-03-26 batch: answer every request in one JSON array.
        let mut answers = Vec::new();
        for item in items {
            if let Some(answer) = ctx.answer_json(&item).await {
                answers.push(answer);
            }
        }
        return if answers.is_empty() {
            status(StatusCode::ACCEPTED)
        } else {
            json_response(StatusCode::OK, Value::Array(answers))
        };
    }
    ctx.handle(message).await
}

struct Ctx {
    options: EchoOptions,
    session: Option<Session>,
    control: Option<SseControl>,
}

fn is_modern(message: &Value) -> bool {
    message
        .pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion")
        .is_some()
}

impl Ctx {
    async fn handle(&self, message: Value) -> Response<EchoBody> {
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            // A response from the client to a request the echo server did not make
            // (the layer keeps those it made): accepted, nothing to answer.
            return status(StatusCode::ACCEPTED);
        };
        let Some(id) = message.get("id").cloned() else {
            return status(StatusCode::ACCEPTED);
        };
        let modern = is_modern(&message);
        if method == "subscriptions/listen" && modern {
            return listen::listen(id, &message);
        }
        if method == "tools/call" {
            let name = message.pointer("/params/name").and_then(Value::as_str).unwrap_or("");
            match name {
                "test_tool_with_progress" => return self.progress_tool(id, &message),
                "slow_stream" => return slow_stream_tool(id, &message),
                "test_reconnection" => return self.reconnection_tool(id),
                "test_tool_with_logging" | "test_logging_tool" => return logging_tool(id, &message),
                _ if !modern && asks::NAMES.contains(&name) => return self.client_request_tool(id, name, &message),
                "test_missing_capability" if modern && !declares(&message, "sampling") => {
                    let mut answer = error(id, -32021, "Missing required client capability");
                    answer["error"]["data"] = json!({"requiredCapabilities": {"sampling": {}}});
                    return json_response(StatusCode::BAD_REQUEST, answer);
                }
                // A streamed `InputRequiredResult`: `test_streaming_elicitation` always
                // (a 2026-07-28 conformance check reads its stream), the others when
                // every tool call streams.
                _ if modern
                    && asks::NAMES.contains(&name)
                    && (self.options.sse_tool_calls || name == "test_streaming_elicitation") =>
                {
                    let answer = self.answer(id, method, &message).await;
                    return sse_once(answer);
                }
                "echo" if self.options.sse_tool_calls => {
                    let answer = self.answer(id, method, &message).await;
                    return sse_once(answer);
                }
                _ => {}
            }
        }
        let answer = self.answer(id, method, &message).await;
        let code = answer.pointer("/error/code").and_then(Value::as_i64);
        let status = if modern && code == Some(-32601) {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        json_response(status, answer)
    }

    async fn answer_json(&self, message: &Value) -> Option<Value> {
        let method = message.get("method")?.as_str()?;
        let id = message.get("id")?.clone();
        Some(self.answer(id, method, message).await)
    }

    async fn answer(&self, id: Value, method: &str, message: &Value) -> Value {
        let mut answer = self.answer_legacy_shape(id, method, message).await;
        if is_modern(message) {
            modern_result_fields(method, &mut answer);
        }
        answer
    }

    async fn answer_legacy_shape(&self, id: Value, method: &str, message: &Value) -> Value {
        let modern = is_modern(message);
        match method {
            "initialize" if !modern => {
                let asked = message
                    .pointer("/params/protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let version = if LEGACY_VERSIONS.contains(&asked) {
                    asked
                } else {
                    LEGACY_VERSIONS[2]
                };
                result(
                    id,
                    json!({
                        "protocolVersion": version,
                        "capabilities": {"tools": {"listChanged": true}, "logging": {}},
                        "serverInfo": {"name": "tower-mcp-session-echo", "version": env!("CARGO_PKG_VERSION")},
                    }),
                )
            }
            "ping" if !modern => result(id, json!({})),
            "server/discover" => {
                let info = json!({"name": "tower-mcp-session-echo", "version": env!("CARGO_PKG_VERSION")});
                // A dual-era server: every revision it speaks, 2025 ones included (the
                // layer's UnsupportedProtocolVersionError lists the same set).
                let mut versions: Vec<&str> = LEGACY_VERSIONS.to_vec();
                versions.push(MODERN_VERSION);
                result(
                    id,
                    json!({
                        "supportedVersions": versions,
                        "capabilities": {"tools": {"listChanged": true}, "resources": {"subscribe": true, "listChanged": true}},
                        "serverInfo": info,
                        "_meta": {"io.modelcontextprotocol/serverInfo": info},
                    }),
                )
            }
            // The layer records the level for the session (`Session::log_level`).
            "logging/setLevel" if !modern => result(id, json!({})),
            "tools/list" => result(id, json!({"tools": tools()})),
            "tools/call" => self.call_tool(id, message).await,
            _ => error(id, -32601, "Method not found"),
        }
    }

    async fn call_tool(&self, id: Value, message: &Value) -> Value {
        let name = message.pointer("/params/name").and_then(Value::as_str).unwrap_or("");
        if is_modern(message)
            && let Some(done) = listen::trigger(name, message)
        {
            return result(id, done);
        }
        match name {
            "echo" => {
                let text = message
                    .pointer("/params/arguments/message")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                result(id, text_result(text))
            }
            "test_simple_text" => result(id, text_result("This is a simple text response for testing.")),
            "test_image_content" => result(id, json!({"content": [image_content()]})),
            "test_audio_content" => result(
                id,
                json!({"content": [{"type": "audio", "data": WAV_SILENCE_BASE64, "mimeType": "audio/wav"}]}),
            ),
            "test_embedded_resource" => result(
                id,
                json!({"content": [{"type": "resource", "resource": {
                    "uri": "test://embedded-resource",
                    "mimeType": "text/plain",
                    "text": "This is an embedded resource content.",
                }}]}),
            ),
            "test_multiple_content_types" => result(
                id,
                json!({"content": [
                    {"type": "text", "text": "Multiple content types test:"},
                    image_content(),
                    {"type": "resource", "resource": {
                        "uri": "test://mixed-content-resource",
                        "mimeType": "application/json",
                        "text": "{\"test\":\"data\",\"value\":123}",
                    }},
                ]}),
            ),
            "test_error_handling" => result(
                id,
                json!({"content": [{"type": "text", "text": "This tool intentionally returns an error for testing"}], "isError": true}),
            ),
            "json_schema_2020_12_tool" => result(id, text_result("schema tool called")),
            "test_missing_capability" => result(id, text_result("sampling capability declared")),
            // 2026-07-28 has no server → client requests: these tools ask through
            // multi round-trip requests (`InputRequiredResult`, then a retry).
            _ if asks::NAMES.contains(&name) => result(id, asks::modern_round(name, message)),
            "notify_me" => {
                let (Some(manager), Some(session)) = (&self.options.manager, &self.session) else {
                    return result(
                        id,
                        json!({"content": [{"type": "text", "text": "no session to notify"}], "isError": true}),
                    );
                };
                // `arguments.data`, when given, is what the push carries, so a test can
                // tell pushes apart.
                let data = message
                    .pointer("/params/arguments/data")
                    .cloned()
                    .unwrap_or_else(|| json!("hello from notify_me"));
                let note = json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/message",
                    "params": {"level": "info", "logger": "echo", "data": data},
                });
                match manager.send(session.id(), &note).await {
                    Ok(()) => result(id, text_result("notification sent")),
                    Err(e) => result(
                        id,
                        json!({"content": [{"type": "text", "text": e.to_string()}], "isError": true}),
                    ),
                }
            }
            _ => error(id, -32602, "Unknown tool"),
        }
    }

    fn progress_tool(&self, id: Value, message: &Value) -> Response<EchoBody> {
        let token = message.pointer("/params/_meta/progressToken").cloned();
        let modern = is_modern(message);
        // `intervalMs` (at most 5 s) stretches the call, for tests that need it running.
        let interval = message
            .pointer("/params/arguments/intervalMs")
            .and_then(Value::as_u64)
            .map_or(50, |ms| ms.min(5_000));
        sse_task(move |tx| async move {
            if let Some(token) = token {
                for (i, progress) in [0, 50, 100].into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(interval)).await;
                    }
                    let note = json!({
                        "jsonrpc": "2.0",
                        "method": "notifications/progress",
                        "params": {"progressToken": token, "progress": progress, "total": 100},
                    });
                    if !send_event(&tx, &note).await {
                        return;
                    }
                }
            }
            let mut answer = result(id, text_result("progress complete"));
            if modern {
                modern_result_fields("tools/call", &mut answer);
            }
            send_event(&tx, &answer).await;
        })
    }

    fn reconnection_tool(&self, id: Value) -> Response<EchoBody> {
        if let Some(control) = &self.control {
            // Free the connection right after the priming event; the answer arrives on
            // the client's reconnection with Last-Event-ID.
            control.close_connection();
        }
        sse_task(move |tx| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            send_event(&tx, &result(id, text_result("reconnection test complete"))).await;
        })
    }

    /// The tools of `echo/asks.rs`: send a request to the client on this POST's SSE stream,
    /// wait for the client to POST the answer, then answer the tool call.
    fn client_request_tool(&self, id: Value, name: &str, message: &Value) -> Response<EchoBody> {
        let arguments = message.pointer("/params/arguments").unwrap_or(&Value::Null);
        let Some(ask) = asks::ask(name, arguments) else {
            return json_response(StatusCode::OK, error(id, -32602, "Unknown tool"));
        };
        let Some(session) = self.session.clone() else {
            return json_response(StatusCode::OK, result(id, error_text("no session")));
        };
        sse_task(move |tx| async move {
            // The layer sends the request on this POST's stream, routes the client's
            // answer back from whichever instance it reaches, and refuses a request the
            // client has no capability for.
            let answer = match session.request(ask.method, ask.params.clone()).await {
                Ok(got) => match ask.answer_text(&got) {
                    Ok(text) => result(id, text_result(&text)),
                    Err(text) => result(id, error_text(&text)),
                },
                Err(RequestError::NotDeclared { capability }) => result(
                    id,
                    error_text(&format!("the client did not declare the {capability} capability")),
                ),
                Err(e) => result(id, error_text(&format!("client request failed: {e}"))),
            };
            send_event(&tx, &answer).await;
        })
    }
}

/// The most progress events `slow_stream` sends, and the longest pause between them:
/// a client chooses both, so both are bounded.
const SLOW_STREAM_MAX_COUNT: u64 = 1_000;
const SLOW_STREAM_MAX_DELAY_MS: u64 = 1_000;

/// `slow_stream`: `count` progress events (`progress` 1..=count, default 20) `delay_ms`
/// apart (default 50), then the answer. Chaos and soak runs use it to keep events in
/// flight long enough to kill or drop something mid-stream.
fn slow_stream_tool(id: Value, message: &Value) -> Response<EchoBody> {
    let arg = |name: &str, default: u64, max: u64| {
        message
            .pointer(&format!("/params/arguments/{name}"))
            .and_then(Value::as_u64)
            .unwrap_or(default)
            .min(max)
    };
    let count = arg("count", 20, SLOW_STREAM_MAX_COUNT);
    let delay = Duration::from_millis(arg("delay_ms", 50, SLOW_STREAM_MAX_DELAY_MS));
    let token = message
        .pointer("/params/_meta/progressToken")
        .cloned()
        .unwrap_or_else(|| id.clone());
    sse_task(move |tx| async move {
        for progress in 1..=count {
            let note = json!({
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {"progressToken": token, "progress": progress, "total": count},
            });
            if !send_event(&tx, &note).await {
                return;
            }
            tokio::time::sleep(delay).await;
        }
        send_event(&tx, &result(id, text_result("slow stream complete"))).await;
    })
}

/// A tool result that reports an error in its text.
fn error_text(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

/// Whether a 2026-07-28 request declares a client capability in its `_meta`.
fn declares(message: &Value, capability: &str) -> bool {
    message
        .pointer("/params/_meta/io.modelcontextprotocol~1clientCapabilities")
        .and_then(|caps| caps.get(capability))
        .is_some()
}

/// `test_tool_with_logging` (2025) and `test_logging_tool` (2026-07-28): three log
/// messages ~50 ms apart on the response stream, then the answer. A 2026-07-28 request
/// gets log messages only when its `_meta` asks for a log level.
fn logging_tool(id: Value, message: &Value) -> Response<EchoBody> {
    let modern = is_modern(message);
    let wants_logs = !modern
        || message
            .pointer("/params/_meta/io.modelcontextprotocol~1logLevel")
            .is_some();
    sse_task(move |tx| async move {
        if wants_logs {
            let lines = [
                "Tool execution started",
                "Tool processing data",
                "Tool execution completed",
            ];
            for (i, line) in lines.into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let note = json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/message",
                    "params": {"level": "info", "logger": "echo", "data": line},
                });
                if !send_event(&tx, &note).await {
                    return;
                }
            }
        }
        let mut answer = result(id, text_result("logging tool finished"));
        if modern {
            modern_result_fields("tools/call", &mut answer);
        }
        send_event(&tx, &answer).await;
    })
}

/// The fields every 2026-07-28 result carries (`resultType`), plus the caching hints
/// of list and discover results.
fn modern_result_fields(method: &str, answer: &mut Value) {
    let Some(result) = answer.get_mut("result").and_then(Value::as_object_mut) else {
        return;
    };
    result.entry("resultType").or_insert(json!("complete"));
    if matches!(method, "tools/list" | "server/discover") {
        result.entry("cacheScope").or_insert(json!("public"));
        result.entry("ttlMs").or_insert(json!(0));
    }
}

/// A 1x1 red PNG.
const PNG_RED_PIXEL_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

/// A WAV file holding two samples of silence (8 kHz, 8-bit mono).
const WAV_SILENCE_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQIAAACAgA==";

fn image_content() -> Value {
    json!({"type": "image", "data": PNG_RED_PIXEL_BASE64, "mimeType": "image/png"})
}

fn tools() -> Value {
    let empty = json!({"type": "object", "properties": {}});
    let mut tools = json!([
        {"name": "echo", "description": "Echo the message back.",
         "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}},
        {"name": "test_tool_with_progress", "description": "Report progress 0, 50, 100 (`intervalMs` apart, default 50), then answer.",
         "inputSchema": {"type": "object", "properties": {"intervalMs": {"type": "integer"}}}},
        {"name": "test_reconnection", "description": "Close the connection after priming, answer on reconnection.", "inputSchema": empty},
        {"name": "notify_me", "description": "Push a notification (its `data` given or fixed) to the caller's GET stream.",
         "inputSchema": {"type": "object", "properties": {"data": {"type": "string"}}}},
        {"name": "slow_stream", "description": "Send `count` progress events `delay_ms` apart, then answer.",
         "inputSchema": {"type": "object", "properties": {"count": {"type": "integer"}, "delay_ms": {"type": "integer"}}}},
        // The tools the official conformance suite calls.
        {"name": "test_simple_text", "description": "Answer with one text block.", "inputSchema": empty},
        {"name": "test_image_content", "description": "Answer with a PNG image.", "inputSchema": empty},
        {"name": "test_audio_content", "description": "Answer with a WAV clip.", "inputSchema": empty},
        {"name": "test_embedded_resource", "description": "Answer with an embedded resource.", "inputSchema": empty},
        {"name": "test_multiple_content_types", "description": "Answer with text, image and resource.", "inputSchema": empty},
        {"name": "test_error_handling", "description": "Answer with a tool error.", "inputSchema": empty},
        {"name": "test_tool_with_logging", "description": "Log three messages on the response stream, then answer.", "inputSchema": empty},
        {"name": "test_logging_tool", "description": "Log on the response stream only when the request asks for a log level.", "inputSchema": empty},
        {"name": "test_missing_capability", "description": "Needs the sampling client capability (2026-07-28).", "inputSchema": empty},
        {"name": "json_schema_2020_12_tool", "description": "Tool with JSON Schema 2020-12 features",
         "inputSchema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                                  "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
            "properties": {
                "name": {"type": "string"},
                "address": {"$ref": "#/$defs/address"},
                "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                "phone": {"type": "string"},
                "email": {"type": "string"},
            },
            "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
            "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
            "then": {"required": ["phone"]},
            "else": {"required": ["email"]},
            "additionalProperties": false,
         }},
    ]);
    if let Some(list) = tools.as_array_mut() {
        list.extend(asks::descriptions());
    }
    tools
}

fn text_result(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}]})
}

fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn status(status: StatusCode) -> Response<EchoBody> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = status;
    r
}

fn json_response(status: StatusCode, value: Value) -> Response<EchoBody> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn sse_head(body: EchoBody) -> Response<EchoBody> {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn sse_once(message: Value) -> Response<EchoBody> {
    sse_head(Full::new(Bytes::from(format!("event: message\ndata: {message}\n\n"))).boxed())
}

/// An SSE answer whose events a task produces. When the client goes away the channel
/// closes and the task stops (what 2026-07-28 asks; the layer keeps legacy streams going
/// by reading them to the end itself).
fn sse_task<F, Fut>(produce: F) -> Response<EchoBody>
where
    F: FnOnce(mpsc::Sender<Bytes>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(produce(tx));
    sse_head(ChannelBody { rx }.boxed())
}

async fn send_event(tx: &mpsc::Sender<Bytes>, message: &Value) -> bool {
    tx.send(Bytes::from(format!("event: message\ndata: {message}\n\n")))
        .await
        .is_ok()
}

struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

/// `echo_server --redis URL` and `load --serve b-redis`: sessions and streams in Redis
/// (`RedisSessionStore` and `RedisEventLog` from `tower-mcp-session-redis`), one
/// reconnecting connection for both; the session cap (on the layer) applies only when
/// `max_sessions` is given.
#[cfg(feature = "redis")]
pub async fn with_redis(
    builder: tower_mcp_session::McpSessionLayerBuilder,
    url: &str,
    max_sessions: Option<usize>,
) -> Result<tower_mcp_session::McpSessionLayerBuilder, String> {
    use std::time::Duration;

    use redis::aio::ConnectionManagerConfig;
    use tower_mcp_session_redis::{RedisEventLog, RedisSessionStore};

    let client = redis::Client::open(url).map_err(|e| format!("bad Redis URL {url}: {e}"))?;
    // Reconnect attempts back off to at most a second, so the server recovers quickly
    // once Redis is back; requests meanwhile get 503 with Retry-After.
    let config = ConnectionManagerConfig::new().set_max_delay(Duration::from_secs(1));
    let conn = client
        .get_connection_manager_with_config(config)
        .await
        .map_err(|e| format!("cannot connect to Redis at {url}: {e}"))?;
    // The store's local cache, invalidated through pub/sub on its own connection, as
    // `tower_mcp_session_redis::connect` sets it up.
    let store = RedisSessionStore::builder(conn.clone()).local_cache(client).build();
    Ok(builder
        .store(store)
        .event_log(RedisEventLog::new(conn))
        .max_sessions(max_sessions))
}
