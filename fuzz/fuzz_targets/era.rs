//! Era classification: the `MCP-Protocol-Version` header and the body's `_meta`.
//!
//! Invariants: never panics; a version parses exactly when it is a `YYYY-MM-DD` date
//! with month 1-12 and day 1-31, and then prints back as sent; versions order as their
//! text does; a request is modern exactly when its header names 2026-07-28 or later or
//! its body carries `_meta`'s protocol version.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_mcp_session::ProtocolVersion;
use tower_mcp_session::fuzzing::{is_modern, peek_body, version_header};
use tower_mcp_session::headers::MCP_PROTOCOL_VERSION;

#[derive(Debug, Arbitrary)]
struct Input {
    a: String,
    b: String,
    header: Option<Vec<u8>>,
    body: Vec<u8>,
}

fn date(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b[r.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| text[r].parse::<u32>().unwrap())
    };
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits(0..4).is_some()
        && digits(5..7).is_some_and(|m| (1..=12).contains(&m))
        && digits(8..10).is_some_and(|d| (1..=31).contains(&d))
}

fuzz_target!(|input: Input| {
    let a = input.a.parse::<ProtocolVersion>();
    assert_eq!(a.is_ok(), date(&input.a), "{:?}", input.a);
    if let Ok(v) = &a {
        assert_eq!(v.to_string(), input.a);
    }
    if let (Ok(a), Ok(b)) = (a, input.b.parse::<ProtocolVersion>()) {
        assert_eq!(a.cmp(&b), input.a.cmp(&input.b));
        assert_eq!(a.is_modern(), input.a.as_str() >= "2026-07-28");
    }

    let mut headers = HeaderMap::new();
    if let Some(v) = input.header.as_deref().and_then(|h| HeaderValue::from_bytes(h).ok()) {
        headers.insert(MCP_PROTOCOL_VERSION, v);
    }
    let header_modern = matches!(version_header(&headers), Ok(Some(v)) if v.is_modern());
    let meta = match peek_body(&input.body) {
        Ok((false, messages)) => messages[0].modern_version.is_some(),
        _ => false,
    };
    assert_eq!(is_modern(&headers, meta), header_modern || meta);
});
