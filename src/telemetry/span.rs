//! The server span of an MCP operation, through `tracing`.

use std::sync::Arc;

use http::Version;
use http::request::Parts;
use tracing::Span;
use tracing::field::Empty;

use super::Outcome;
use crate::ProtocolVersion;
use crate::jsonrpc::{MessageKind, Peeked, TraceContext};
use crate::metrics::labels::version_label;

/// What [`on_trace_context`](crate::McpSessionLayerBuilder::on_trace_context) installs.
pub(crate) type TraceHook = Arc<dyn Fn(&Span, &TraceContext) + Send + Sync>;

/// Longest tool or prompt name put in a span's name: past it, the name is only the
/// method (a target that long is no low-cardinality name).
const MAX_TARGET_IN_NAME: usize = 128;

/// Longest client text recorded in a field (a method, a name, a URI, an id): the
/// body may be megabytes, and every exporter would copy it into each span.
const MAX_FIELD: usize = 1024;

/// `text` cut to at most [`MAX_FIELD`] bytes, at a character boundary.
fn bounded(text: &str) -> &str {
    if text.len() <= MAX_FIELD {
        return text;
    }
    let mut end = MAX_FIELD;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Every field a server span may get, declared up front (`tracing` records only
/// declared fields). One callsite per kind of span, so each has its own interest cache.
macro_rules! server_span {
    ($name:literal, $parts:expr) => {
        tracing::info_span!(
            $name,
            otel.name = Empty,
            otel.kind = "server",
            otel.status_code = Empty,
            otel.status_description = Empty,
            mcp.method.name = Empty,
            mcp.session.id = Empty,
            mcp.protocol.version = Empty,
            jsonrpc.request.id = Empty,
            gen_ai.operation.name = Empty,
            gen_ai.tool.name = Empty,
            gen_ai.prompt.name = Empty,
            mcp.resource.uri = Empty,
            error.type = Empty,
            rpc.response.status_code = Empty,
            mcp.rejection.reason = Empty,
            http.request.method = Empty,
            network.transport = "tcp",
            network.protocol.name = "http",
            network.protocol.version = http_version($parts.version),
            traceparent = Empty,
            tracestate = Empty,
        )
    };
}

fn http_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The span of one JSON-RPC message, named `{mcp.method.name} {target}`.
pub(super) fn message(
    parts: &Parts,
    message: &Peeked,
    version: Option<ProtocolVersion>,
    hook: Option<&TraceHook>,
) -> Span {
    let span = server_span!("mcp", parts);
    if span.is_disabled() {
        return span;
    }
    if let Some(method) = message.method() {
        span.record("mcp.method.name", bounded(method));
        let name = message.modern.name.as_deref();
        let target = match method {
            "tools/call" => {
                span.record("gen_ai.operation.name", "execute_tool");
                name.inspect(|n| {
                    span.record("gen_ai.tool.name", bounded(n));
                })
            }
            "prompts/get" => name.inspect(|n| {
                span.record("gen_ai.prompt.name", bounded(n));
            }),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" | "notifications/resources/updated" => {
                // A URI is no low-cardinality target: an attribute, never the name.
                if let Some(uri) = name {
                    span.record("mcp.resource.uri", bounded(uri));
                }
                None
            }
            _ => None,
        };
        match target.filter(|t| t.len() <= MAX_TARGET_IN_NAME) {
            Some(target) => span.record("otel.name", format!("{method} {target}")),
            None => span.record("otel.name", bounded(method)),
        };
    }
    if let MessageKind::Request { id, .. } = &message.kind {
        record_id(&span, id.get());
    }
    if let Some(text) = version.and_then(version_label) {
        span.record("mcp.protocol.version", text);
    }
    if let Some(trace) = &message.trace {
        // Baggage is not recorded: it is for propagation, and may carry what a trace
        // backend should not store. The hook and the extension still get it.
        if let Some(parent) = trace.traceparent() {
            span.record("traceparent", parent);
        }
        if let Some(state) = trace.tracestate() {
            span.record("tracestate", state);
        }
        if let Some(hook) = hook {
            hook(&span, trace);
        }
    }
    span
}

/// `jsonrpc.request.id`: a string id as its text, a number as written.
fn record_id(span: &Span, raw: &str) {
    if let Some(text) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"'))
        && !text.contains('\\')
    {
        span.record("jsonrpc.request.id", bounded(text));
    } else if raw.starts_with('"') {
        if let Ok(text) = serde_json::from_str::<String>(raw) {
            span.record("jsonrpc.request.id", bounded(&text));
        }
    } else {
        span.record("jsonrpc.request.id", bounded(raw));
    }
}

/// The span of a batch.
pub(super) fn batch(parts: &Parts, version: Option<ProtocolVersion>) -> Span {
    let span = server_span!("mcp", parts);
    if !span.is_disabled() {
        span.record("otel.name", "batch");
        if let Some(text) = version.and_then(version_label) {
            span.record("mcp.protocol.version", text);
        }
    }
    span
}

/// The span of a GET (the session's SSE stream) or DELETE.
pub(super) fn http(parts: &super::HttpParts) -> Span {
    let span = server_span!("mcp", parts);
    if !span.is_disabled() {
        let method = parts.method.as_str();
        span.record("http.request.method", method);
        span.record(
            "otel.name",
            if method == "GET" {
                "GET stream"
            } else {
                "DELETE session"
            },
        );
    }
    span
}

/// Mark a failed operation: `error.type` and the span status.
pub(super) fn finish(span: &Span, outcome: Outcome) {
    let Some(error) = outcome.error_type() else {
        return;
    };
    span.record("error.type", error);
    span.record("otel.status_code", "ERROR");
    if let Outcome::Rejected(kind) = outcome {
        span.record("rpc.response.status_code", error);
        span.record("mcp.rejection.reason", kind.reason());
        // The conventions' status description: the JSON-RPC error's message.
        span.record("otel.status_description", kind.message());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_is_bounded() {
        assert_eq!(bounded("tools/call"), "tools/call");
        let long = "é".repeat(MAX_FIELD);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_FIELD && cut.len() > MAX_FIELD - 2);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
