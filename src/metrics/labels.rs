//! Attribute values shared by spans and metrics, each from a fixed set: the method
//! is the client's text, and every distinct label value is a series a metrics
//! recorder keeps for good.

use crate::ProtocolVersion;
#[cfg(test)]
use crate::rejection::RejectionKind;

/// The conventions' well-known `mcp.method.name` values; metric labels take the
/// method from this list, else `_OTHER`.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const KNOWN_METHODS: [&str; 25] = [
    "completion/complete",
    "elicitation/create",
    "initialize",
    "logging/setLevel",
    "notifications/cancelled",
    "notifications/initialized",
    "notifications/message",
    "notifications/progress",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
    "notifications/roots/list_changed",
    "notifications/tools/list_changed",
    "ping",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/read",
    "resources/subscribe",
    "resources/templates/list",
    "resources/unsubscribe",
    "roots/list",
    "sampling/createMessage",
    "tools/call",
    "tools/list",
];

/// `mcp.method.name` as a metric label: bounded to the well-known methods.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or("_OTHER")
}

/// A protocol version as attribute text (the supported revisions are few and fixed).
pub(crate) fn version_label(version: ProtocolVersion) -> Option<&'static str> {
    [
        (ProtocolVersion::V2024_11_05, "2024-11-05"),
        (ProtocolVersion::V2025_03_26, "2025-03-26"),
        (ProtocolVersion::V2025_06_18, "2025-06-18"),
        (ProtocolVersion::V2025_11_25, "2025-11-25"),
        (ProtocolVersion::V2026_07_28, "2026-07-28"),
    ]
    .into_iter()
    .find(|(v, _)| *v == version)
    .map(|(_, text)| text)
}

/// A JSON-RPC error code as `error.type` text.
pub(crate) fn code_label(code: i64) -> &'static str {
    match code {
        -32700 => "-32700",
        -32600 => "-32600",
        -32601 => "-32601",
        -32602 => "-32602",
        -32603 => "-32603",
        -32001 => "-32001",
        -32020 => "-32020",
        -32022 => "-32022",
        -32000 => "-32000",
        _ => "_OTHER",
    }
}

/// An HTTP error status as `error.type` text (as the HTTP conventions spell it).
pub(crate) fn status_label(status: u16) -> &'static str {
    const TEXT: [&str; 10] = ["400", "401", "403", "404", "405", "406", "409", "410", "413", "415"];
    const SERVER: [&str; 5] = ["500", "501", "502", "503", "504"];
    let find = |list: &'static [&'static str]| list.iter().find(|t| t.parse::<u16>().ok() == Some(status)).copied();
    find(&TEXT).or_else(|| find(&SERVER)).unwrap_or("_OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("x/anything"), "_OTHER");
        assert_eq!(code_label(-32001), "-32001");
        assert_eq!(code_label(7), "_OTHER");
        assert_eq!(status_label(404), "404");
        assert_eq!(status_label(503), "503");
        assert_eq!(status_label(418), "_OTHER");
        assert_eq!(version_label(ProtocolVersion::V2025_06_18), Some("2025-06-18"));
        for kind in RejectionKind::ALL {
            assert_ne!(code_label(kind.code()), "_OTHER", "{kind:?}");
        }
    }
}
