//! The request-header readers: the Host / Origin guard, `Accept`, `Mcp-Session-Id`,
//! `MCP-Protocol-Version` and `Content-Type`.
//!
//! Invariants: never panics; the guard lets a request through exactly when a plain
//! model of the rules does (every authority the request names is a well-formed
//! `host[:port]` that is loopback or listed; an `Origin`, when present, is `null` and
//! listed, or a well-formed `http(s)://host[:port]` that is loopback or listed); `Accept`
//! of both types implies each alone; a session id is accepted exactly when it is 1 to
//! 256 visible ASCII characters; a version header read as valid prints back as sent.
#![no_main]

use arbitrary::Arbitrary;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_mcp_session::SessionId;
use tower_mcp_session::fuzzing::{accepts_all, guard_check, media_type, version_header};
use tower_mcp_session::headers::MCP_PROTOCOL_VERSION;

#[derive(Debug, Arbitrary)]
struct Input {
    hosts: Vec<Vec<u8>>,
    authority: Option<String>,
    origin: Option<Vec<u8>>,
    allow_host: Option<String>,
    allow_origin: Option<String>,
    accept: Vec<Vec<u8>>,
    session_id: String,
    version: Option<Vec<u8>>,
    content_type: Option<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    let mut headers = HeaderMap::new();
    let mut add = |name: http::HeaderName, value: &[u8]| {
        HeaderValue::from_bytes(value)
            .ok()
            .map(|v| headers.append(name, v))
            .is_some()
    };
    let hosts: Vec<&[u8]> = input
        .hosts
        .iter()
        .take(3)
        .map(Vec::as_slice)
        .filter(|h| add(HOST, h))
        .collect();
    let origin = input.origin.as_deref().filter(|o| add(ORIGIN, o));
    for a in input.accept.iter().take(4) {
        add(ACCEPT, a);
    }
    let version = input.version.as_deref().filter(|v| add(MCP_PROTOCOL_VERSION, v));
    if let Some(c) = &input.content_type {
        add(CONTENT_TYPE, c);
    }

    let host_list: Vec<String> = input.allow_host.into_iter().collect();
    let origin_list: Vec<String> = input.allow_origin.into_iter().collect();
    let allowed = guard_check(&headers, input.authority.as_deref(), &host_list, &origin_list);
    let expected =
        origin.is_none_or(|o| origin_ok(o, &origin_list)) && hosts_ok(&hosts, input.authority.as_deref(), &host_list);
    assert_eq!(
        allowed, expected,
        "hosts {hosts:?} authority {:?} origin {origin:?} lists {host_list:?} {origin_list:?}",
        input.authority
    );

    const BOTH: &[&str] = &["application/json", "text/event-stream"];
    if accepts_all(&headers, BOTH) {
        assert!(accepts_all(&headers, &BOTH[..1]) && accepts_all(&headers, &BOTH[1..]));
    }

    let id = SessionId::parse(&input.session_id);
    let valid =
        (1..=256).contains(&input.session_id.len()) && input.session_id.bytes().all(|b| (0x21..=0x7e).contains(&b));
    assert_eq!(id.is_some(), valid);
    if let Some(id) = id {
        assert_eq!(id.as_str(), input.session_id);
    }

    match (version_header(&headers), version) {
        (Ok(None), None) => {}
        (Ok(Some(v)), Some(sent)) => assert_eq!(v.to_string().as_bytes(), sent.trim_ascii()),
        (Err(()), Some(_)) => {}
        (got, sent) => panic!("version header {got:?} for {sent:?}"),
    }
    if let Some(m) = media_type(&headers) {
        assert!(!m.contains(';') && m.trim() == m);
    }
});

// The model: the rules as the README states them, written without the layer's code.

fn authority(text: &str) -> Option<(String, Option<&str>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let close = rest.find(']')?;
        let inside = &rest[..close];
        let ok = !inside.is_empty() && inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !ok {
            return None;
        }
        let after = &rest[close + 1..];
        let port = if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':')?)
        };
        (&text[..close + 2], port)
    } else {
        let mut parts = text.splitn(2, ':');
        let host = parts.next().unwrap();
        let port = parts.next();
        let label = |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !host.split('.').all(label) {
            return None;
        }
        (host, port)
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    Some((host.to_ascii_lowercase(), port))
}

fn loopback(host: &str) -> bool {
    host == "localhost" || host == "127.0.0.1" || host == "[::1]" || host.ends_with(".localhost")
}

fn host_ok(text: &str, list: &[String]) -> bool {
    let text = text.trim();
    let Some((host, _)) = authority(text) else {
        return false;
    };
    loopback(&host)
        || list
            .iter()
            .any(|e| e.eq_ignore_ascii_case(&host) || e.eq_ignore_ascii_case(text))
}

fn hosts_ok(hosts: &[&[u8]], uri: Option<&str>, list: &[String]) -> bool {
    // Every authority the request names must pass, and it must name one.
    let header_ok = match hosts {
        [] => true,
        [one] => std::str::from_utf8(one).is_ok_and(|h| host_ok(h, list)),
        _ => false,
    };
    header_ok && (!hosts.is_empty() || uri.is_some()) && uri.is_none_or(|u| host_ok(u, list))
}

fn parse_origin(text: &str) -> Option<(String, String, Option<&str>)> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (host, port) = authority(rest)?;
    Some((scheme, host, port))
}

fn origin_ok(origin: &[u8], list: &[String]) -> bool {
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let origin = origin.trim();
    if origin.eq_ignore_ascii_case("null") {
        return list.iter().any(|e| e.eq_ignore_ascii_case(origin));
    }
    let Some(parsed) = parse_origin(origin) else {
        return false;
    };
    loopback(&parsed.1) || list.iter().filter_map(|e| parse_origin(e.trim())).any(|e| e == parsed)
}
