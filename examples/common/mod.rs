//! A small but real stateless MCP server used by the examples, tests and benchmarks:
//! `initialize`, `ping`, `tools/list`, `tools/call` and `server/discover`, answering
//! 2025-era and 2026-07-28 requests alike. It knows nothing about sessions; the layer
//! in front of it supplies them.
#![allow(dead_code)]

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
use tower_mcp_session::{Session, SessionManager, SseControl};

pub type EchoBody = BoxBody<Bytes, Infallible>;

/// The revisions the echo server speaks.
const LEGACY_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];
const MODERN_VERSION: &str = "2026-07-28";

/// How the echo server answers.
#[derive(Clone, Default)]
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
            // A response from the client: accepted, nothing to answer.
            return status(StatusCode::ACCEPTED);
        };
        let Some(id) = message.get("id").cloned() else {
            return status(StatusCode::ACCEPTED);
        };
        let modern = is_modern(&message);
        if method == "tools/call" {
            let name = message.pointer("/params/name").and_then(Value::as_str).unwrap_or("");
            match name {
                "test_tool_with_progress" => return self.progress_tool(id, &message),
                "test_reconnection" => return self.reconnection_tool(id),
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
            "server/discover" => result(
                id,
                json!({
                    "supportedVersions": [MODERN_VERSION],
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "tower-mcp-session-echo", "version": env!("CARGO_PKG_VERSION")},
                }),
            ),
            "logging/setLevel" if !modern => {
                let level = message.pointer("/params/level").cloned().unwrap_or(Value::Null);
                if let Some(session) = &self.session {
                    let _ = session.set_attribute("logLevel", level).await;
                }
                result(id, json!({}))
            }
            "tools/list" => result(id, json!({"tools": tools()})),
            "tools/call" => self.call_tool(id, message).await,
            _ => error(id, -32601, "Method not found"),
        }
    }

    async fn call_tool(&self, id: Value, message: &Value) -> Value {
        let name = message.pointer("/params/name").and_then(Value::as_str).unwrap_or("");
        match name {
            "echo" => {
                let text = message
                    .pointer("/params/arguments/message")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                result(id, text_result(text))
            }
            "notify_me" => {
                let (Some(manager), Some(session)) = (&self.options.manager, &self.session) else {
                    return result(
                        id,
                        json!({"content": [{"type": "text", "text": "no session to notify"}], "isError": true}),
                    );
                };
                let note = json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/message",
                    "params": {"level": "info", "logger": "echo", "data": "hello from notify_me"},
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
        sse_task(move |tx| async move {
            if let Some(token) = token {
                for (i, progress) in [0, 50, 100].into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
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
            send_event(&tx, &result(id, text_result("progress complete"))).await;
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
}

fn tools() -> Value {
    let empty = json!({"type": "object", "properties": {}});
    json!([
        {"name": "echo", "description": "Echo the message back.",
         "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}},
        {"name": "test_tool_with_progress", "description": "Report progress 0, 50, 100, then answer.", "inputSchema": empty},
        {"name": "test_reconnection", "description": "Close the connection after priming, answer on reconnection.", "inputSchema": empty},
        {"name": "notify_me", "description": "Push a notification to the caller's GET stream.", "inputSchema": empty},
    ])
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
