//! A JSON object edited member by member, every member it does not touch kept byte for
//! byte.
//!
//! Translation rewrites a handful of members (`id`, `params._meta`, `resultType`, …)
//! and must not disturb the rest: a `serde_json::Value` round trip would turn an
//! integer wider than 64 bits (a legal JSON-RPC id, or a tool argument) into a float
//! and respell numbers such as `1e2`. So members are held as raw JSON slices of the
//! input, and only the ones a mapping replaces are re-serialized.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::TranslateError;

/// The members of one JSON object, in input order, values as raw JSON.
///
/// A key may occur more than once in the input; like `serde_json::Value`, lookups see
/// the last occurrence, and replacing a key removes every occurrence.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawObject<'a> {
    entries: Vec<(Cow<'a, str>, Cow<'a, RawValue>)>,
}

impl<'a> RawObject<'a> {
    /// An object with no members.
    pub(crate) fn new() -> Self {
        Self { entries: Vec::new() }
    }

    /// Parse `bytes`, which must hold exactly one JSON object.
    pub(crate) fn from_slice(bytes: &'a [u8]) -> Result<Self, TranslateError> {
        serde_json::from_slice(bytes).map_err(|_| TranslateError::NotJson)
    }

    /// The object `raw` holds, or `None` when it holds another JSON type.
    pub(crate) fn from_raw(raw: &'a RawValue) -> Option<Self> {
        if !is_object(raw) {
            return None;
        }
        serde_json::from_str(raw.get()).ok()
    }

    /// The last value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&RawValue> {
        self.entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// The last value of `key` as parsed from the input, borrowed for as long as the
    /// input lives; `None` when absent or set since parsing. Nested objects are
    /// parsed from it, so they borrow the input too.
    pub(crate) fn borrowed(&self, key: &str) -> Option<&'a RawValue> {
        match self.entries.iter().rev().find(|(k, _)| k == key) {
            Some((_, Cow::Borrowed(v))) => Some(v),
            _ => None,
        }
    }

    /// The object under `key`: `Ok(None)` when absent or `null`, `Err(())` when it is
    /// another JSON type.
    pub(crate) fn object(&self, key: &str) -> Result<Option<RawObject<'a>>, ()> {
        match self.borrowed(key) {
            None => Ok(None),
            Some(v) if is_null(v) => Ok(None),
            Some(v) => RawObject::from_raw(v).map(Some).ok_or(()),
        }
    }

    /// The last value of `key` when it is a JSON string, unescaped.
    pub(crate) fn get_str(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|v| serde_json::from_str::<String>(v.get()).ok())
    }

    /// The last value of `key`, parsed. Use only for small members whose numbers the
    /// mapping does not carry through (capabilities, error codes).
    pub(crate) fn get_value(&self, key: &str) -> Option<Value> {
        self.get(key).and_then(|v| serde_json::from_str(v.get()).ok())
    }

    /// Whether `key` is present (with any value, `null` included).
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// Remove every occurrence of `key`; the last value is returned.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Cow<'a, RawValue>> {
        let mut last = None;
        let mut kept = Vec::with_capacity(self.entries.len());
        for (k, v) in self.entries.drain(..) {
            if k == key { last = Some(v) } else { kept.push((k, v)) }
        }
        self.entries = kept;
        last
    }

    /// Set `key` to `value`, replacing every earlier occurrence. A new key goes last;
    /// a replaced one keeps the place of its first occurrence.
    pub(crate) fn set(&mut self, key: impl Into<Cow<'a, str>>, value: Cow<'a, RawValue>) {
        let key = key.into();
        match self.entries.iter().position(|(k, _)| *k == key) {
            Some(at) => {
                self.entries[at].1 = value;
                let mut seen = false;
                self.entries.retain(|(k, _)| {
                    if *k != key {
                        return true;
                    }
                    let first = !seen;
                    seen = true;
                    first
                });
            }
            None => self.entries.push((key, value)),
        }
    }

    /// Set `key` to a value serialized now.
    pub(crate) fn set_value(&mut self, key: impl Into<Cow<'a, str>>, value: &Value) {
        self.set(key, Cow::Owned(to_raw(value)));
    }

    /// Set `key` to a nested object.
    pub(crate) fn set_object(&mut self, key: impl Into<Cow<'a, str>>, value: &RawObject<'_>) {
        self.set(key, Cow::Owned(value.to_raw()));
    }

    /// The members in input order, each key once (its last occurrence, as
    /// [`get`](Self::get) sees it).
    pub(crate) fn last_entries(&self) -> impl Iterator<Item = (&str, &RawValue)> {
        let mut seen = std::collections::HashSet::with_capacity(self.entries.len());
        let mut keep = vec![false; self.entries.len()];
        for (i, (k, _)) in self.entries.iter().enumerate().rev() {
            keep[i] = seen.insert(&**k);
        }
        self.entries
            .iter()
            .zip(keep)
            .filter(|(_, keep)| *keep)
            .map(|((k, v), _)| (&**k, &**v))
    }

    /// Whether the object has no members.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The object as JSON text.
    pub(crate) fn to_json(&self) -> String {
        let mut out = String::with_capacity(
            2 + self
                .entries
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>(),
        );
        out.push('{');
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // A `str` always serializes; the fallback is never taken.
            out.push_str(&serde_json::to_string(&**k).unwrap_or_else(|_| String::from("\"\"")));
            out.push(':');
            out.push_str(v.get());
        }
        out.push('}');
        out
    }

    /// The object as a raw JSON value.
    pub(crate) fn to_raw(&self) -> Box<RawValue> {
        // The text is a well-formed object by construction: every member is a parsed
        // raw value and every key a serialized string.
        RawValue::from_string(self.to_json()).unwrap_or_else(|_| empty_object())
    }

    /// The object as bytes, ready to send.
    pub(crate) fn to_bytes(&self) -> bytes::Bytes {
        bytes::Bytes::from(self.to_json())
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    entries.push((key.0, Cow::Borrowed(value)));
                }
                Ok(RawObject { entries })
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// A key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Whether `raw` holds a JSON object.
pub(crate) fn is_object(raw: &RawValue) -> bool {
    raw.get().trim_start().starts_with('{')
}

/// Whether `raw` holds JSON `null`.
pub(crate) fn is_null(raw: &RawValue) -> bool {
    raw.get().trim() == "null"
}

/// `value` as raw JSON.
pub(crate) fn to_raw(value: &Value) -> Box<RawValue> {
    // A `Value` always serializes to valid JSON.
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| empty_object())
}

/// A raw JSON string holding `text`.
pub(crate) fn raw_string(text: &str) -> Box<RawValue> {
    to_raw(&Value::String(text.to_owned()))
}

fn empty_object() -> Box<RawValue> {
    // `{}` is valid JSON, so `from_string` accepts it; `null` keeps this total.
    RawValue::from_string(String::from("{}")).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_members_keep_their_bytes() {
        let body = br#"{"id":123456789012345678901234567890,"a":1e2,"s":"\u00e9","n":[1.50]}"#;
        let mut obj = RawObject::from_slice(body).unwrap();
        assert_eq!(obj.get("id").unwrap().get(), "123456789012345678901234567890");
        obj.set_value("added", &serde_json::json!(true));
        assert_eq!(
            obj.to_json(),
            r#"{"id":123456789012345678901234567890,"a":1e2,"s":"\u00e9","n":[1.50],"added":true}"#
        );
    }

    #[test]
    fn duplicates_read_last_and_replace_all() {
        let mut obj = RawObject::from_slice(br#"{"k":1,"x":0,"k":2}"#).unwrap();
        assert_eq!(obj.get("k").unwrap().get(), "2");
        obj.set_value("k", &serde_json::json!(3));
        assert_eq!(obj.to_json(), r#"{"k":3,"x":0}"#);
        assert_eq!(obj.remove("x").unwrap().get(), "0");
        assert_eq!(obj.to_json(), r#"{"k":3}"#);
        assert!(obj.remove("absent").is_none());
    }

    #[test]
    fn escaped_keys_are_reserialized_escaped() {
        let obj = RawObject::from_slice(br#"{"a\"b\n":1}"#).unwrap();
        assert!(obj.contains("a\"b\n"));
        assert_eq!(obj.to_json(), r#"{"a\"b\n":1}"#);
    }

    #[test]
    fn non_objects_and_bad_json_are_refused() {
        for bad in [&b"[1]"[..], b"1", b"\"s\"", b"{", b"{\"a\":}", b"", b"\xff", b"{} {}"] {
            assert_eq!(
                RawObject::from_slice(bad).unwrap_err(),
                TranslateError::NotJson,
                "{bad:?}"
            );
        }
        let raw = RawValue::from_string("[1]".into()).unwrap();
        assert!(RawObject::from_raw(&raw).is_none());
        let raw = RawValue::from_string(" {\"a\": 1} ".trim().into()).unwrap();
        assert_eq!(RawObject::from_raw(&raw).unwrap().get("a").unwrap().get(), "1");
        assert!(is_null(&RawValue::from_string("null".into()).unwrap()));
    }
}
