//! The server spans of the OpenTelemetry conventions for MCP, as a subscriber sees
//! them: real requests through the layer (the echo server behind it), a capturing
//! `tracing-subscriber` layer collecting each closed span's name and fields, and exact
//! checks of names and attribute values.
#![cfg(feature = "tracing")]

use mcp_test_support::http as support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;
use support::*;
use tower::ServiceExt;
use tower_mcp_session::{McpSessionLayer, RejectionKind, TraceContext};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// What the trace-context hook was called with: the span's id and the context.
type Hooked = (Option<tracing::Id>, TraceContext);

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A closed span: its static name and the fields recorded on it (as text).
#[derive(Debug, Clone)]
struct Captured {
    name: &'static str,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Clone, Default)]
struct Spans {
    open: Arc<Mutex<BTreeMap<u64, Captured>>>,
    closed: Arc<Mutex<Vec<Captured>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        // Only the layer's server spans (its events carry no span of their own).
        if !attrs.metadata().target().starts_with("tower_mcp_session") {
            return;
        }
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let span = Captured {
            name: attrs.metadata().name(),
            fields,
        };
        self.open.lock().unwrap().insert(id.into_u64(), span);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(span) = self.open.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }
    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(span) = self.open.lock().unwrap().remove(&id.into_u64()) {
            self.closed.lock().unwrap().push(span);
        }
    }
}

impl Spans {
    /// The spans closed so far, forgetting them.
    fn take(&self) -> Vec<Captured> {
        std::mem::take(&mut *self.closed.lock().unwrap())
    }

    fn only(&self) -> Captured {
        let mut spans = self.take();
        assert_eq!(spans.len(), 1, "one server span: {spans:#?}");
        spans.pop().unwrap()
    }
}

/// Every field a span carries, exactly.
fn assert_fields(span: &Captured, want: &[(&str, &str)]) {
    let want: BTreeMap<String, String> = want.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    assert_eq!(span.fields, want, "{span:#?}");
}

/// The fields every server span has.
const CONSTANT: [(&str, &str); 4] = [
    ("otel.kind", "server"),
    ("network.transport", "tcp"),
    ("network.protocol.name", "http"),
    ("network.protocol.version", "1.1"),
];

fn with_constant<'a>(more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    CONSTANT.iter().copied().chain(more.iter().copied()).collect()
}

#[tokio::test]
async fn initialize_call_with_trace_context_and_refusal() {
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let hooked: Arc<Mutex<Vec<Hooked>>> = Arc::default();
    let seen = hooked.clone();
    let layer = McpSessionLayer::builder()
        .on_trace_context(move |span, context| seen.lock().unwrap().push((span.id(), context.clone())))
        .build();
    let app = app(&layer);

    let session = initialize(&app, LEGACY).await;
    let span = spans.only();
    assert_eq!(span.name, "mcp");
    assert_fields(
        &span,
        &with_constant(&[
            ("otel.name", "initialize"),
            ("mcp.method.name", "initialize"),
            ("jsonrpc.request.id", "0"),
            ("mcp.protocol.version", LEGACY),
            ("mcp.session.id", &session),
        ]),
    );

    // A tool call in the session, with the client's trace context in `_meta`.
    let call = json!({"jsonrpc": "2.0", "id": "req-7", "method": "tools/call", "params": {
        "name": "echo", "arguments": {"message": "hi"},
        "_meta": {"traceparent": TRACEPARENT, "tracestate": "rojo=00f067aa0ba902b7", "baggage": "user=alice"}}});
    let (status, _, body) = send(&app, Some(&session), &call).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let span = spans.only();
    assert_fields(
        &span,
        &with_constant(&[
            ("otel.name", "tools/call echo"),
            ("mcp.method.name", "tools/call"),
            ("gen_ai.operation.name", "execute_tool"),
            ("gen_ai.tool.name", "echo"),
            ("jsonrpc.request.id", "req-7"),
            ("mcp.protocol.version", LEGACY),
            ("mcp.session.id", &session),
            ("traceparent", TRACEPARENT),
            ("tracestate", "rojo=00f067aa0ba902b7"),
        ]),
    );
    // The hook saw the whole context (baggage included) on the span that was recorded.
    let hooked = std::mem::take(&mut *hooked.lock().unwrap());
    assert_eq!(hooked.len(), 1, "one message with a trace context");
    let (span_id, context) = &hooked[0];
    assert!(span_id.is_some(), "the hook gets the live span");
    assert_eq!(context.traceparent(), Some(TRACEPARENT));
    assert_eq!(context.tracestate(), Some("rojo=00f067aa0ba902b7"));
    assert_eq!(context.baggage(), Some("user=alice"));

    // A refusal: the session is unknown.
    let response = call_app(
        &app,
        with_body(
            post().header("mcp-session-id", "no-such-session"),
            &request(3, "tools/call", json!({"name": "echo"})),
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response.extensions().get::<RejectionKind>().is_none(),
        "the telemetry's marker does not leave the layer"
    );
    let span = spans.only();
    assert_fields(
        &span,
        &with_constant(&[
            ("otel.name", "tools/call echo"),
            ("mcp.method.name", "tools/call"),
            ("gen_ai.operation.name", "execute_tool"),
            ("gen_ai.tool.name", "echo"),
            ("jsonrpc.request.id", "3"),
            ("error.type", "-32001"),
            ("rpc.response.status_code", "-32001"),
            ("mcp.rejection.reason", "session_not_found"),
            ("otel.status_code", "ERROR"),
            ("otel.status_description", "Session not found"),
        ]),
    );

    // A refusal before any message is known (not JSON): no span, and no marker either.
    let response = call_app(
        &app,
        bare_post()
            .header("content-type", "text/plain")
            .header("accept", "application/json, text/event-stream")
            .body(Full::new(Bytes::from_static(b"hi")))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(response.extensions().get::<RejectionKind>().is_none());
    assert!(spans.take().is_empty(), "no message, no span");

    // A resource read: the URI is an attribute, not part of the name; a notification
    // has no request id.
    send(
        &app,
        Some(&session),
        &request(4, "resources/read", json!({"uri": "file:///a.txt"})),
    )
    .await;
    let span = spans.only();
    assert_eq!(span.field("otel.name"), Some("resources/read"));
    assert_eq!(span.field("mcp.resource.uri"), Some("file:///a.txt"));
    send(
        &app,
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    let span = spans.only();
    assert_eq!(span.field("otel.name"), Some("notifications/initialized"));
    assert_eq!(span.field("jsonrpc.request.id"), None);

    // GET and DELETE are no MCP operations, but get a span with the session.
    let response = call_app(&app, empty(get())).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let span = spans.only();
    assert_fields(
        &span,
        &with_constant(&[
            ("otel.name", "GET stream"),
            ("http.request.method", "GET"),
            ("error.type", "-32000"),
            ("rpc.response.status_code", "-32000"),
            ("mcp.rejection.reason", "session_id_required"),
            ("otel.status_code", "ERROR"),
            (
                "otel.status_description",
                "Bad Request: Mcp-Session-Id header is required",
            ),
        ]),
    );
    let response = call_app(&app, empty(delete().header("mcp-session-id", &session))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let span = spans.only();
    assert_eq!(span.field("otel.name"), Some("DELETE session"));
    assert_eq!(span.field("mcp.session.id"), Some(session.as_str()));
    assert_eq!(span.field("error.type"), None);
}

async fn call_app(app: &App, req: Request<Full<Bytes>>) -> Response<tower_mcp_session::McpBody<EchoBody>> {
    support::call(app, req).await
}

/// A batch (2025-03-26) is one span for the HTTP request, named `batch`.
#[tokio::test]
async fn batch_span() {
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let session = initialize(&app, "2025-03-26").await;
    spans.take();
    let batch = json!([request(1, "ping", json!({})), request(2, "tools/list", json!({}))]);
    let (status, _, body) = send(&app, Some(&session), &batch).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let span = spans.only();
    assert_fields(
        &span,
        &with_constant(&[
            ("otel.name", "batch"),
            ("mcp.session.id", &session),
            ("mcp.protocol.version", "2025-03-26"),
        ]),
    );
}

/// A 2026-07-28 request passes through without a session; its span has the version
/// from `_meta`, and the inner service finds the trace context in the extensions.
#[tokio::test]
async fn modern_request_and_trace_context_extension() {
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let inner = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let parent = req
            .extensions()
            .get::<TraceContext>()
            .and_then(|c| c.traceparent().map(str::to_owned));
        let body = json!({"jsonrpc": "2.0", "id": 1, "result": {"parent": parent}});
        Ok::<_, Infallible>(
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
        )
    });
    let service = tower::ServiceBuilder::new()
        .layer(McpSessionLayer::new())
        .service(inner);
    let mut meta = modern_meta();
    meta["traceparent"] = json!(TRACEPARENT);
    let message = request(1, "prompts/get", json!({"name": "greeting", "_meta": meta}));
    let response = service
        .oneshot(with_body(post().header("mcp-protocol-version", "2026-07-28"), &message))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json(&read_body(response.into_body()).await);
    assert_eq!(answer["result"]["parent"], TRACEPARENT, "{answer}");
    let span = spans.only();
    assert_fields(
        &span,
        &with_constant(&[
            ("otel.name", "prompts/get greeting"),
            ("mcp.method.name", "prompts/get"),
            ("gen_ai.prompt.name", "greeting"),
            ("jsonrpc.request.id", "1"),
            ("mcp.protocol.version", "2026-07-28"),
            ("traceparent", TRACEPARENT),
        ]),
    );
}

async fn read_body<B: http_body::Body>(body: B) -> Bytes
where
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    body.collect().await.unwrap().to_bytes()
}
