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
