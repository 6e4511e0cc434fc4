//! What a legacy session contributes to every modern request.
//!
//! A 2026-07-28 server keeps no state between requests (`basic/index.mdx`,
//! "Statelessness"): each request names its protocol version and the client's
//! capabilities in `params._meta`, and should name the client. A legacy client said all
//! of that once, in `initialize`, and set its log level once, with `logging/setLevel`;
//! the session remembers it, and this context carries it into each translated request.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::raw::{self, RawObject};
use super::{META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL, META_PROTOCOL_VERSION, MODERN_VERSION};
use crate::ProtocolVersion;
use crate::session::SessionRecord;

/// The log levels of both eras (RFC 5424 severities, `LoggingLevel` in every schema).
pub(crate) const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The client capabilities both eras define with one meaning. Everything else a
/// legacy client declares is left out (see [`LegacyContext::modern_capabilities`]).
const SHARED_CAPABILITIES: [&str; 4] = ["experimental", "roots", "sampling", "elicitation"];

/// One legacy session, as the modern requests made on its behalf see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LegacyContext<'a> {
    /// The legacy revision negotiated at `initialize`: the answers are shaped for it.
    pub(crate) version: ProtocolVersion,
    /// The client's `clientInfo` from `initialize`.
    pub(crate) client_info: Option<&'a RawValue>,
    /// The client's `capabilities` from `initialize`.
    pub(crate) client_capabilities: Option<&'a RawValue>,
    /// The level of the client's last `logging/setLevel` (`client_state::LOG_LEVEL`).
    pub(crate) log_level: Option<&'a str>,
}

impl<'a> LegacyContext<'a> {
    /// The context of the session `record` with the log level the layer recorded.
    pub(crate) fn from_record(record: &'a SessionRecord, log_level: Option<&'a str>) -> Self {
        Self {
            version: record.protocol_version(),
            client_info: record.client_info(),
            client_capabilities: record.client_capabilities(),
            log_level,
        }
    }

    /// The legacy capabilities as a value (for the capability checks of server →
    /// client requests); `None` when the client declared none or sent no object.
    pub(crate) fn legacy_capabilities(&self) -> Option<Value> {
        self.client_capabilities
            .filter(|raw| raw::is_object(raw))
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
    }

    /// The 2026-07-28 `ClientCapabilities` equivalent to what the client declared.
    ///
    /// Kept: `experimental`, `sampling` (with its 2025-11-25 `context` / `tools`),
    /// `elicitation` (an empty object meant form mode in 2025-06-18 and still does in
    /// 2026-07-28, whose `ClientCapabilities` documents `{}` as implicit form mode).
    /// `roots` becomes `{}`: 2026-07-28 removed `notifications/roots/list_changed`, so
    /// `roots.listChanged` has no meaning there. Dropped: `tasks` (2025-11-25; moved to
    /// the `io.modelcontextprotocol/tasks` extension with a different protocol, so the
    /// legacy declaration does not promise it) and every key neither era defines — a
    /// server must not rely on what the client has not declared, so the map errs on
    /// declaring less. Entries that are not objects are not declarations and are
    /// dropped too. Always an object: the field is required.
    pub(crate) fn modern_capabilities(&self) -> Value {
        let mut out = Map::new();
        if let Some(Value::Object(declared)) = self.legacy_capabilities() {
            for key in SHARED_CAPABILITIES {
                match declared.get(key) {
                    Some(Value::Object(_)) if key == "roots" => {
                        out.insert(key.to_owned(), Value::Object(Map::new()));
                    }
                    Some(value @ Value::Object(_)) => {
                        out.insert(key.to_owned(), value.clone());
                    }
                    _ => {}
                }
            }
        }
        Value::Object(out)
    }

    /// The log level to put in `_meta`, when the client set a valid one. Without it
    /// a 2026-07-28 server sends no log messages, exactly as a legacy server that was
    /// never sent `logging/setLevel` may stay silent.
    pub(crate) fn modern_log_level(&self) -> Option<&'a str> {
        self.log_level.filter(|level| LOG_LEVELS.contains(level))
    }

    /// Write the per-request protocol fields into `meta`, replacing any the client
    /// sent: the session, not the message, is the source of truth for them. Other
    /// members (`progressToken`, `traceparent`, `tracestate`, `baggage`, vendor keys)
    /// are left as they are.
    pub(crate) fn fill_meta(&self, meta: &mut RawObject<'_>) {
        meta.set(META_PROTOCOL_VERSION, Cow::Owned(raw::raw_string(MODERN_VERSION)));
        meta.set_value(META_CLIENT_CAPABILITIES, &self.modern_capabilities());
        match self.client_info.filter(|raw| raw::is_object(raw)) {
            Some(info) => meta.set(META_CLIENT_INFO, Cow::Owned(info.to_owned())),
            None => drop(meta.remove(META_CLIENT_INFO)),
        }
        match self.modern_log_level() {
            Some(level) => meta.set(META_LOG_LEVEL, Cow::Owned(raw::raw_string(level))),
            None => drop(meta.remove(META_LOG_LEVEL)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::session::SessionId;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    fn ctx(caps: Option<&RawValue>) -> LegacyContext<'_> {
        LegacyContext {
            version: ProtocolVersion::V2025_11_25,
            client_info: None,
            client_capabilities: caps,
            log_level: None,
        }
    }

    #[test]
    fn capabilities_of_each_revision_map() {
        // 2025-03-26: roots with listChanged, sampling.
        let caps = raw(r#"{"roots":{"listChanged":true},"sampling":{}}"#);
        assert_eq!(
            ctx(Some(&caps)).modern_capabilities(),
            json!({"roots": {}, "sampling": {}})
        );
        // 2025-06-18: elicitation as an empty object (form mode).
        let caps = raw(r#"{"elicitation":{},"experimental":{"x":{"y":1}}}"#);
        assert_eq!(
            ctx(Some(&caps)).modern_capabilities(),
            json!({"experimental": {"x": {"y": 1}}, "elicitation": {}})
        );
        // 2025-11-25: modes, sampling tools/context, tasks dropped.
        let caps = raw(
            r#"{"elicitation":{"form":{},"url":{}},"sampling":{"tools":{},"context":{}},"tasks":{"requests":{}},"vendor":{}}"#,
        );
        assert_eq!(
            ctx(Some(&caps)).modern_capabilities(),
            json!({"sampling": {"tools": {}, "context": {}}, "elicitation": {"form": {}, "url": {}}})
        );
    }

    #[test]
    fn absent_or_malformed_capabilities_declare_nothing() {
        assert_eq!(ctx(None).modern_capabilities(), json!({}));
        for bad in [
            "[]",
            "null",
            "1",
            r#""roots""#,
            r#"{"roots":true,"sampling":null,"elicitation":[]}"#,
        ] {
            let caps = raw(bad);
            assert_eq!(ctx(Some(&caps)).modern_capabilities(), json!({}), "{bad}");
        }
    }

    #[test]
    fn log_level_only_when_valid() {
        let mut c = ctx(None);
        assert_eq!(c.modern_log_level(), None);
        c.log_level = Some("warning");
        assert_eq!(c.modern_log_level(), Some("warning"));
        c.log_level = Some("verbose");
        assert_eq!(c.modern_log_level(), None);
    }

    #[test]
    fn from_record_reads_the_session() {
        let record = SessionRecord::new(SessionId::parse("s").unwrap(), ProtocolVersion::V2025_06_18)
            .with_client(Some(raw(r#"{"name":"c","version":"1"}"#)), Some(raw(r#"{"roots":{}}"#)));
        let c = LegacyContext::from_record(&record, Some("info"));
        assert_eq!(c.version, ProtocolVersion::V2025_06_18);
        assert_eq!(c.client_info.unwrap().get(), r#"{"name":"c","version":"1"}"#);
        let mut meta =
            RawObject::from_slice(br#"{"progressToken":7,"io.modelcontextprotocol/logLevel":"debug"}"#).unwrap();
        c.fill_meta(&mut meta);
        let meta: Value = serde_json::from_str(&meta.to_json()).unwrap();
        assert_eq!(
            meta,
            json!({
                "progressToken": 7,
                "io.modelcontextprotocol/logLevel": "info",
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {"roots": {}},
                "io.modelcontextprotocol/clientInfo": {"name": "c", "version": "1"}
            })
        );
    }

    #[test]
    fn stray_client_fields_are_replaced_by_the_session() {
        let c = ctx(None);
        let mut meta = RawObject::from_slice(
            br#"{"io.modelcontextprotocol/clientInfo":{"name":"forged","version":"0"},"io.modelcontextprotocol/logLevel":"debug"}"#,
        )
        .unwrap();
        c.fill_meta(&mut meta);
        assert!(!meta.contains(super::super::META_CLIENT_INFO));
        assert!(!meta.contains(META_LOG_LEVEL));
    }
}
