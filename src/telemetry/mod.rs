//! Traces and metrics of the request path, in the OpenTelemetry semantic conventions
//! for MCP (`docs/gen-ai/mcp.md` of the semantic-conventions repository).
//!
//! One [`Operation`] per POST the layer routes: a server span (feature `tracing`,
//! level INFO, target `tower_mcp_session::telemetry`) and, with feature `metrics`, one
//! `mcp.server.operation.duration` sample per JSON-RPC message. A batch
//! (2025-03-26 only) gets one span for the HTTP request, named `batch`: its messages
//! reach the inner service together and are answered together, so per-message spans
//! would all cover the same interval; its duration is recorded once per message.
//!
//! Span fields carry the conventions' dotted names, and `otel.name`, `otel.kind`,
//! `otel.status_code` as `tracing-opentelemetry` reads them. Everything that costs more
//! than a field write is skipped when no subscriber wants the span.

#[cfg(feature = "tracing")]
mod span;

use std::future::Future;

use http::Response;
use http::request::Parts;

use crate::era::VersionHeader;
use crate::jsonrpc::Peeked;
#[cfg(any(feature = "tracing", feature = "metrics"))]
use crate::metrics::labels::{code_label, status_label};
use crate::rejection::RejectionKind;
use crate::stream::McpBody;
use crate::{ProtocolVersion, SessionId};

#[cfg(feature = "tracing")]
pub(crate) use span::TraceHook;

/// How a routed request ended, as far as the layer can tell without reading the inner
/// service's answer: a refusal of the layer, an error status, or an error of the
/// inner service. JSON-RPC errors inside a 200 answer are the inner service's to
/// record: finding them would mean parsing every answer again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Rejected(RejectionKind),
    Status(u16),
    ServiceError,
}

impl Outcome {
    /// How `answer` ended; takes off the marker the handler's `reject` leaves for this.
    #[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
    fn take<B, E>(answer: &mut Result<Response<McpBody<B>>, E>) -> Self {
        match answer {
            Err(_) => Self::ServiceError,
            Ok(response) => match response.extensions_mut().remove::<RejectionKind>() {
                Some(kind) => Self::Rejected(kind),
                None if response.status().as_u16() >= 400 => Self::Status(response.status().as_u16()),
                None => Self::Ok,
            },
        }
    }

    /// `error.type`, when the operation failed.
    #[cfg(any(feature = "tracing", feature = "metrics"))]
    fn error_type(self) -> Option<&'static str> {
        match self {
            Self::Ok => None,
            Self::Rejected(kind) => Some(code_label(kind.code())),
            Self::Status(status) => Some(status_label(status)),
            Self::ServiceError => Some("_OTHER"),
        }
    }
}

/// The telemetry of one routed POST: its span and its metric samples.
pub(crate) struct Operation {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    #[cfg(feature = "metrics")]
    metric: Option<crate::metrics::facade::OperationSample>,
}

impl Operation {
    /// One JSON-RPC message. `hook` sees the message's trace context before the span
    /// is first entered; the context then goes on to the inner service in `parts`.
    pub(crate) fn message(
        parts: &mut Parts,
        version: VersionHeader,
        message: &mut Peeked,
        #[cfg(feature = "tracing")] hook: Option<&TraceHook>,
    ) -> Self {
        let version = request_version(version, message);
        #[cfg(feature = "tracing")]
        let span = span::message(parts, message, version, hook);
        if let Some(trace) = message.trace.take() {
            parts.extensions.insert(*trace);
        }
        #[cfg(feature = "metrics")]
        let metric = message.method().map(|method| {
            crate::metrics::facade::OperationSample::start(
                crate::metrics::facade::Methods::One(crate::metrics::labels::method_label(method)),
                version,
            )
        });
        let _ = version;
        Self {
            #[cfg(feature = "tracing")]
            span,
            #[cfg(feature = "metrics")]
            metric,
        }
    }

    /// A batch: one span, one duration sample per request or notification in it.
    pub(crate) fn batch(parts: &Parts, version: VersionHeader, items: &[Peeked]) -> Self {
        let version = match version {
            VersionHeader::Present(v) => Some(v),
            _ => None,
        };
        let _ = (parts, items, version);
        Self {
            #[cfg(feature = "tracing")]
            span: span::batch(parts, version),
            #[cfg(feature = "metrics")]
            metric: Some(crate::metrics::facade::OperationSample::start(
                crate::metrics::facade::Methods::Batch(
                    items
                        .iter()
                        .filter_map(Peeked::method)
                        .map(crate::metrics::labels::method_label)
                        .collect(),
                ),
                version,
            )),
        }
    }

    /// The span to run the routed request in, when a subscriber wants it.
    #[cfg(feature = "tracing")]
    pub(crate) fn enabled_span(&self) -> Option<tracing::Span> {
        (!self.span.is_disabled()).then(|| self.span.clone())
    }

    /// Record how the routed request ended.
    pub(crate) fn finish<B, E>(self, answer: &mut Result<Response<McpBody<B>>, E>) {
        let outcome = Outcome::take(answer);
        #[cfg(feature = "tracing")]
        span::finish(&self.span, outcome);
        #[cfg(feature = "metrics")]
        if let Some(metric) = self.metric {
            metric.finish(outcome.error_type());
        }
        let _ = outcome;
    }
}

/// Await a routed request inside its operation's span when a subscriber wants the
/// span. A disabled span adds no wrapper: the routed future is awaited in place, not
/// moved into an `Instrumented` (the request path's futures are large, and every move
/// is a copy).
macro_rules! in_span {
    ($operation:expr, $routed:expr) => {{
        #[cfg(feature = "tracing")]
        let answer = match $operation.enabled_span() {
            Some(span) => tracing::Instrument::instrument($routed, span).await,
            None => $routed.await,
        };
        #[cfg(not(feature = "tracing"))]
        let answer = $routed.await;
        answer
    }};
}
pub(crate) use in_span;

/// The span of a GET or DELETE (no JSON-RPC message: not an MCP operation, so no
/// duration sample), so what the layer logs while serving it has a session to go with.
pub(crate) async fn http_request<B, E>(
    parts: HttpParts,
    served: impl Future<Output = Result<Response<McpBody<B>>, E>>,
) -> Result<Response<McpBody<B>>, E> {
    #[cfg(feature = "tracing")]
    {
        let span = span::http(&parts);
        let mut answer = tracing::Instrument::instrument(served, span.clone()).await;
        span::finish(&span, Outcome::take(&mut answer));
        answer
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = parts;
        let mut answer = served.await;
        Outcome::take(&mut answer);
        answer
    }
}

/// What the span of a GET or DELETE needs of the request, which the handler takes.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) struct HttpParts {
    method: http::Method,
    version: http::Version,
}

impl HttpParts {
    pub(crate) fn of(parts: &Parts) -> Self {
        Self {
            method: parts.method.clone(),
            version: parts.version,
        }
    }
}

/// The version a request states: its header, else its `_meta` (2026-07-28), else
/// (`initialize`) the one it asks for.
fn request_version(header: VersionHeader, message: &Peeked) -> Option<ProtocolVersion> {
    if let VersionHeader::Present(v) = header {
        return Some(v);
    }
    let stated = message.modern.protocol_version.as_deref().or_else(|| {
        message
            .initialize
            .as_ref()
            .and_then(|init| init.protocol_version.as_deref())
    });
    stated.and_then(|v| v.parse().ok())
}

/// The session now known for the current operation's span.
pub(crate) fn session(id: &SessionId) {
    // The level check first: finding the current span is a thread-local lookup, and
    // with no subscriber at INFO there is none to find.
    #[cfg(feature = "tracing")]
    if tracing::level_enabled!(tracing::Level::INFO) {
        tracing::Span::current().record("mcp.session.id", id.as_str());
    }
    let _ = id;
}

/// The protocol version now known for the current operation's span (a session's
/// negotiated one).
pub(crate) fn protocol_version(version: ProtocolVersion) {
    #[cfg(feature = "tracing")]
    if tracing::level_enabled!(tracing::Level::INFO)
        && let Some(text) = crate::metrics::labels::version_label(version)
    {
        tracing::Span::current().record("mcp.protocol.version", text);
    }
    let _ = version;
}
