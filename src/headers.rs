//! Header names the MCP transport uses.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName};

/// `Mcp-Session-Id`: the legacy session header (spelled `MCP-Session-Id` in 2025-11-25;
/// header names are case-insensitive).
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `MCP-Protocol-Version`: the revision a request speaks (2025-06-18 and later).
pub const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Method`: the JSON-RPC method, repeated as a header (2026-07-28).
pub const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name`: the tool, prompt or resource a request names (2026-07-28).
pub const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// `Last-Event-ID`: the SSE resume cursor.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// `X-Accel-Buffering`: tells reverse proxies not to buffer SSE.
pub const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// The media type of `Content-Type`, without parameters (`charset`, …).
pub(crate) fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    // A byte search: `str::split` goes through the generic pattern machinery, which
    // costs more than the rest of the check. `to_str` has already limited the value to
    // visible ASCII and tabs, so cutting at a `;` byte and trimming ASCII is exact.
    let end = value.bytes().position(|b| b == b';').unwrap_or(value.len());
    Some(value[..end].trim_ascii())
}

/// Whether `Content-Type` is `application/json` (parameters such as `charset` allowed).
pub(crate) fn is_json_content(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m.eq_ignore_ascii_case("application/json"))
}

/// Whether a response is an SSE stream.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m.eq_ignore_ascii_case("text/event-stream"))
}
