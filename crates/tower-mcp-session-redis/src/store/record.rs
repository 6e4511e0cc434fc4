//! The session record as fields of its Redis hash, and back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};
use tower_mcp_session::store::{Attributes, StoreError};
use tower_mcp_session::{Principal, ProtocolVersion, SessionId, SessionRecord};

use crate::connection::BadReply;

/// The record fields `load` reads back, in this order (`HMGET`).
pub(super) const RECORD_FIELDS: [&str; 5] = ["v", "c", "i", "k", "p"];

pub(super) fn bad(what: &'static str) -> StoreError {
    StoreError::backend(BadReply(what))
}

/// The record and its attributes as hash fields; the scripts add the deadline `dl`,
/// the last activity `la` and the attribute version `av`.
pub(super) fn encode(record: &SessionRecord, attributes: &Map<String, Json>) -> Vec<(&'static str, String)> {
    let created = record
        .created_at()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut fields = vec![("v", record.protocol_version().to_string()), ("c", created.to_string())];
    if let Some(info) = record.client_info() {
        fields.push(("i", info.get().to_owned()));
    }
    if let Some(caps) = record.client_capabilities() {
        fields.push(("k", caps.get().to_owned()));
    }
    if let Some(principal) = record.principal() {
        fields.push(("p", principal.as_str().to_owned()));
    }
    // No field at all for no attributes: most sessions never get one.
    if !attributes.is_empty() {
        fields.push(("a", Json::Object(attributes.clone()).to_string()));
    }
    fields
}

fn text(value: Value) -> Result<Option<String>, StoreError> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(raw) => String::from_utf8(raw).map(Some).map_err(|_| bad("record field")),
        _ => Err(bad("record field")),
    }
}

/// The record from the `RECORD_FIELDS` values; `None` when the hash is gone.
pub(super) fn decode(id: &SessionId, reply: Value) -> Result<Option<SessionRecord>, StoreError> {
    let items = match reply {
        Value::Nil => return Ok(None),
        Value::Array(items) if items.len() == RECORD_FIELDS.len() => items,
        _ => return Err(bad("session record")),
    };
    let mut it = items.into_iter();
    let mut next = || text(it.next().unwrap_or(Value::Nil));
    let Some(version) = next()? else {
        // `HMGET` of a missing key answers nils: no session.
        return Ok(None);
    };
    let version = version
        .parse::<ProtocolVersion>()
        .map_err(|_| bad("protocol version"))?;
    let created: u64 = next()?.unwrap_or_default().parse().unwrap_or(0);
    let raw = |s: Option<String>| s.map(RawValue::from_string).transpose();
    let info = raw(next()?).map_err(|_| bad("clientInfo"))?;
    let caps = raw(next()?).map_err(|_| bad("capabilities"))?;
    let principal = next()?.map(Principal::new);
    Ok(Some(
        SessionRecord::new(id.clone(), version)
            .with_created_at(SystemTime::UNIX_EPOCH + Duration::from_millis(created))
            .with_client(info, caps)
            .with_principal(principal),
    ))
}

/// The attributes from `HMGET v a av`; `None` when the hash is gone.
pub(super) fn decode_attributes(
    reply: (Option<String>, Option<String>, Option<String>),
) -> Result<Option<Attributes>, StoreError> {
    let (version_field, map, av) = reply;
    if version_field.is_none() {
        return Ok(None);
    }
    let map = match map {
        None => Map::new(),
        Some(text) => match serde_json::from_str(&text) {
            Ok(Json::Object(map)) => map,
            _ => return Err(bad("attributes")),
        },
    };
    let version = av
        .as_deref()
        .unwrap_or("0")
        .parse()
        .map_err(|_| bad("attribute version"))?;
    Ok(Some(Attributes { map, version }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let id = SessionId::parse("s1").unwrap();
        let record = SessionRecord::new(id.clone(), ProtocolVersion::V2025_06_18)
            .with_created_at(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
            .with_client(Some(RawValue::from_string(r#"{"name":"c"}"#.into()).unwrap()), None)
            .with_principal(Some(Principal::new("u")));
        let fields = encode(&record, &Map::new());
        let reply = Value::Array(
            RECORD_FIELDS
                .iter()
                .map(|name| {
                    fields
                        .iter()
                        .find(|(f, _)| f == name)
                        .map_or(Value::Nil, |(_, v)| Value::BulkString(v.clone().into_bytes()))
                })
                .collect(),
        );
        let back = decode(&id, reply).unwrap().unwrap();
        assert_eq!(back.created_at(), record.created_at());
        assert_eq!(back.client_info().unwrap().get(), r#"{"name":"c"}"#);
        assert!(back.client_capabilities().is_none());
        assert_eq!(back.principal().unwrap().as_str(), "u");
        assert!(decode(&id, Value::Array(vec![Value::Nil; 5])).unwrap().is_none());
    }

    #[test]
    fn attributes_decode() {
        assert_eq!(decode_attributes((None, None, None)).unwrap(), None);
        let empty = decode_attributes((Some("2025-06-18".into()), None, Some("0".into())))
            .unwrap()
            .unwrap();
        assert_eq!(empty, Attributes::default());
        let some = decode_attributes((Some("v".into()), Some(r#"{"k":1}"#.into()), Some("3".into())))
            .unwrap()
            .unwrap();
        assert_eq!((some.map["k"].as_i64(), some.version), (Some(1), 3));
    }
}
