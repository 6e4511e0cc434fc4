//! The W3C trace context a client sends in `params._meta`, as the OpenTelemetry
//! conventions for MCP propagate it: read in the same pass as the rest of the peek.

use std::borrow::Cow;

/// Longest `traceparent` kept. Version 00 is 55 characters; later versions may append
/// fields, so some room is left.
const MAX_TRACEPARENT: usize = 256;
/// Longest `tracestate` kept: W3C asks propagators to carry at least 512 characters.
const MAX_TRACESTATE: usize = 1024;
/// Longest `baggage` kept: the W3C limit for the whole header.
const MAX_BAGGAGE: usize = 8192;

/// The W3C trace context of one JSON-RPC message: `traceparent`, `tracestate` and
/// `baggage` from its `params._meta`, as the OpenTelemetry semantic conventions for
/// MCP carry them.
///
/// The layer puts it in the extensions of the request the inner service gets and
/// hands it to the hook of
/// [`on_trace_context`](crate::McpSessionLayerBuilder::on_trace_context), which can
/// make the client's span the parent of the layer's server span (with
/// `tracing-opentelemetry`, say) without this crate depending on OpenTelemetry.
/// Values longer than the W3C limits (and non-string values) are left out.
///
/// ```
/// use tower_mcp_session::TraceContext;
///
/// // What an `opentelemetry::propagation::Extractor` over it reads.
/// fn get<'a>(context: &'a TraceContext, key: &str) -> Option<&'a str> {
///     context.get(key)
/// }
/// let none = TraceContext::default();
/// assert_eq!(get(&none, "traceparent"), None);
/// assert_eq!(TraceContext::KEYS, ["traceparent", "tracestate", "baggage"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    traceparent: Option<String>,
    tracestate: Option<String>,
    baggage: Option<String>,
}

impl TraceContext {
    /// The `_meta` keys it reads, in the order [`get`](Self::get) knows them.
    pub const KEYS: [&'static str; 3] = ["traceparent", "tracestate", "baggage"];

    /// Built from what the peek found; `None` when no member is usable.
    pub(crate) fn from_meta(
        traceparent: Option<Cow<'_, str>>,
        tracestate: Option<Cow<'_, str>>,
        baggage: Option<Cow<'_, str>>,
    ) -> Option<Box<Self>> {
        if traceparent.is_none() && tracestate.is_none() && baggage.is_none() {
            return None;
        }
        let keep = |value: Option<Cow<'_, str>>, max: usize| value.filter(|v| v.len() <= max).map(Cow::into_owned);
        let context = Self {
            traceparent: keep(traceparent, MAX_TRACEPARENT),
            tracestate: keep(tracestate, MAX_TRACESTATE),
            baggage: keep(baggage, MAX_BAGGAGE),
        };
        let empty = context.traceparent.is_none() && context.tracestate.is_none() && context.baggage.is_none();
        (!empty).then(|| Box::new(context))
    }

    /// `_meta.traceparent`.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// `_meta.tracestate`.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// `_meta.baggage`.
    pub fn baggage(&self) -> Option<&str> {
        self.baggage.as_deref()
    }

    /// The value of one of [`KEYS`](Self::KEYS), matched case-insensitively as
    /// propagators look header names up.
    pub fn get(&self, key: &str) -> Option<&str> {
        if key.eq_ignore_ascii_case("traceparent") {
            self.traceparent()
        } else if key.eq_ignore_ascii_case("tracestate") {
            self.tracestate()
        } else if key.eq_ignore_ascii_case("baggage") {
            self.baggage()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_absence() {
        assert_eq!(TraceContext::from_meta(None, None, None), None);
        let long = "a".repeat(MAX_TRACEPARENT + 1);
        assert_eq!(TraceContext::from_meta(Some(long.into()), None, None), None);
        let context = TraceContext::from_meta(None, Some("k=v".into()), Some("u=1".into())).unwrap();
        assert_eq!(context.get("TraceState"), Some("k=v"));
        assert_eq!(context.get("baggage"), Some("u=1"));
        assert_eq!(context.get("traceparent"), None);
        assert_eq!(context.get("other"), None);
    }
}
