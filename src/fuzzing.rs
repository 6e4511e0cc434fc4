//! Entry points for the fuzz targets in `fuzz/`, compiled only with `--cfg fuzzing`
//! (which `cargo fuzz` sets): thin wrappers over crate-private parsers, so the targets
//! drive the code the layer runs without widening the public API. Not part of the API.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::era::{Era, VersionHeader};
use crate::jsonrpc::{self, MessageKind, PeekError};
use crate::security::{Guard, HostPolicy, OriginPolicy};

/// One peeked message, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `"request"`, `"notification"` or `"response"`.
    pub kind: &'static str,
    /// The request id as raw JSON text.
    pub id: Option<String>,
    pub method: Option<String>,
    /// `_meta`'s protocol version: what makes a body modern.
    pub modern_version: Option<String>,
    pub initialize_version: Option<String>,
}

/// `jsonrpc::peek_body`: `Ok((is_batch, messages))`, or the JSON-RPC error code.
pub fn peek_body(body: &[u8]) -> Result<(bool, Vec<Message>), i64> {
    let convert = |p: jsonrpc::Peeked| Message {
        kind: match p.kind {
            MessageKind::Request { .. } => "request",
            MessageKind::Notification { .. } => "notification",
            MessageKind::Response => "response",
        },
        id: p.id().map(|id| id.get().to_owned()),
        method: p.method().map(str::to_owned),
        modern_version: p.modern.protocol_version.clone(),
        initialize_version: p.initialize.as_ref().and_then(|i| i.protocol_version.clone()),
    };
    match jsonrpc::peek_body(body) {
        Ok(jsonrpc::Body::Single(p)) => Ok((false, vec![convert(p)])),
        Ok(jsonrpc::Body::Batch(items)) => Ok((true, items.into_iter().map(convert).collect())),
        Err(PeekError::Parse) => Err(-32700),
        Err(PeekError::InvalidRequest) => Err(-32600),
    }
}

/// Whether `message` answers request `id` and, if so, whether it succeeded.
pub fn initialize_outcome(message: &[u8], id: &str) -> Option<Option<crate::ProtocolVersion>> {
    let id = serde_json::value::RawValue::from_string(id.to_owned()).ok()?;
    jsonrpc::initialize_outcome(message, &id).map(|o| match o {
        jsonrpc::InitializeOutcome::Succeeded(v) => Some(v),
        jsonrpc::InitializeOutcome::Failed => None,
    })
}

/// The Host and Origin guard with `hosts` and `origins` allow-listed (besides loopback).
pub fn guard_check(headers: &HeaderMap, uri_authority: Option<&str>, hosts: &[String], origins: &[String]) -> bool {
    let guard = Guard {
        hosts: HostPolicy::AllowList(hosts.to_vec()),
        origins: OriginPolicy::AllowList(origins.to_vec()),
    };
    guard.check(headers, uri_authority).is_ok()
}

/// The `Accept` check the layer makes of a POST (JSON and SSE) or a GET (SSE).
pub fn accepts_all(headers: &HeaderMap, needed: &[&str]) -> bool {
    crate::layer::negotiate::accepts_all(headers, needed)
}

/// `Forwarded` (`rfc7239 = true`) or `X-Forwarded-For` walk from a trusted `peer`.
pub fn client_ip(headers: &HeaderMap, rfc7239: bool, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    use crate::rate_limit::forwarded::{Syntax, client_ip};
    let syntax = if rfc7239 {
        Syntax::Forwarded
    } else {
        Syntax::XForwardedFor
    };
    client_ip(headers, syntax, peer, trusted)
}

/// What the `MCP-Protocol-Version` header says: `Err(())` when present but invalid.
pub fn version_header(headers: &HeaderMap) -> Result<Option<crate::ProtocolVersion>, ()> {
    match VersionHeader::read(headers) {
        VersionHeader::Absent => Ok(None),
        VersionHeader::Invalid => Err(()),
        VersionHeader::Present(v) => Ok(Some(v)),
    }
}

/// The era the layer gives a request (true: 2026-07-28).
pub fn is_modern(headers: &HeaderMap, has_modern_meta: bool) -> bool {
    crate::era::classify(VersionHeader::read(headers), has_modern_meta) == Era::Modern
}

/// `Content-Type`'s media type.
pub fn media_type(headers: &HeaderMap) -> Option<&str> {
    crate::headers::media_type(headers)
}

/// Translation mode's mappings, on a session negotiated at the `version`-th legacy
/// revision with the given raw `capabilities` / `client_info` JSON (ignored when not
/// JSON) and log level. Each returns the bytes the layer would send, or the error code.
pub struct Translation {
    record: crate::SessionRecord,
    log_level: Option<String>,
}

impl Translation {
    pub fn new(version: u8, capabilities: &str, client_info: &str, log_level: Option<String>) -> Self {
        use serde_json::value::RawValue;
        let legacy = crate::ProtocolVersion::LEGACY;
        let version = legacy[usize::from(version) % legacy.len()];
        let id = crate::SessionId::parse("0123456789abcdef0123456789abcdef").expect("a valid id");
        let raw = |text: &str| RawValue::from_string(text.to_owned()).ok();
        let record = crate::SessionRecord::new(id, version).with_client(raw(client_info), raw(capabilities));
        Self { record, log_level }
    }

    fn context(&self) -> crate::translate::context::LegacyContext<'_> {
        crate::translate::context::LegacyContext::from_record(&self.record, self.log_level.as_deref())
    }

    /// A legacy request → (modern body, header values).
    pub fn request(&self, body: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), i64> {
        crate::translate::request::translate_request(body, &self.context())
            .map(|m| {
                (
                    m.body.to_vec(),
                    m.headers.values().map(|v| v.as_bytes().to_vec()).collect(),
                )
            })
            .map_err(|e| e.code())
    }

    /// A modern answer or notification to `method` → the legacy bytes relayed, if any.
    pub fn answer(&self, message: &[u8], method: &str, client_id: &str) -> Result<Option<Vec<u8>>, i64> {
        use crate::translate::answer::{AnswerTo, LegacyMessage, to_legacy};
        let id = serde_json::value::RawValue::from_string(client_id.to_owned()).map_err(|_| 0)?;
        let to = AnswerTo { method, client_id: &id };
        match to_legacy(message, &to).map_err(|e| e.code())? {
            LegacyMessage::Answer(b) | LegacyMessage::Notification(b) => Ok(Some(b.to_vec())),
            LegacyMessage::InputRequired(_) | LegacyMessage::Drop => Ok(None),
        }
    }

    /// A modern HTTP error answer → the legacy answer body, or `None` (kept as it is).
    pub fn http_error(&self, status: u16, body: &[u8], client_id: &str, method: &str) -> Option<Vec<u8>> {
        use crate::translate::http_error::{LegacyHttpError, http_error_to_legacy};
        let status = http::StatusCode::from_u16(status).ok()?;
        let id = serde_json::value::RawValue::from_string(client_id.to_owned()).ok()?;
        match http_error_to_legacy(status, body, &id, method) {
            LegacyHttpError::Answer(b) => Some(b.to_vec()),
            LegacyHttpError::Keep => None,
        }
    }

    /// A `server/discover` result → the legacy `InitializeResult`.
    pub fn initialize_result(&self, discover: &[u8], flags: u8) -> Option<Vec<u8>> {
        use crate::translate::discover::{LayerCapabilities, initialize_result};
        let discover: serde_json::Value = serde_json::from_slice(discover).ok()?;
        let layer = LayerCapabilities {
            log_level: flags & 1 != 0,
            subscriptions: flags & 2 != 0,
            list_changed: flags & 4 != 0,
        };
        let result = initialize_result(&discover, self.record.protocol_version(), layer).ok()?;
        serde_json::to_vec(&result).ok()
    }

    /// The MRTR retry of `original` under `new_id` with `responses` and `state`.
    pub fn retry(
        &self,
        original: &[u8],
        new_id: &str,
        responses: &[(String, String)],
        state: Option<&str>,
    ) -> Result<Vec<u8>, i64> {
        use serde_json::value::RawValue;
        let raw = |text: &str| RawValue::from_string(text.to_owned()).map_err(|_| 0);
        let id = raw(new_id)?;
        let responses = responses
            .iter()
            .map(|(k, v)| raw(v).map(|v| (k.clone(), v)))
            .collect::<Result<Vec<_>, _>>()?;
        let state = state.map(raw).transpose()?;
        crate::translate::mrtr::retry_request(original, &id, &responses, state.as_deref())
            .map(|b| b.to_vec())
            .map_err(|e| e.code())
    }
}
