//! Which headers cross the proxy. Hop-by-hop headers describe one connection, not the
//! message (RFC 9110, section 7.6.1), so they stop here in both directions; so does
//! every header the `Connection` header names.

use http::header::{CONNECTION, HOST, HeaderName, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderValue};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Remove the hop-by-hop headers of `headers`, and `Host` (the client sets it from the
/// upstream address).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
        HOST,
    ] {
        headers.remove(name);
    }
    // `Proxy-Authorization` and `Proxy-Authenticate` are for this proxy, not the server.
    headers.remove(http::header::PROXY_AUTHORIZATION);
    headers.remove(http::header::PROXY_AUTHENTICATE);
}

/// Append `peer` to `X-Forwarded-For` (after any value a proxy in front of this one
/// set), so the upstream can tell clients apart.
pub(crate) fn append_forwarded_for(headers: &mut HeaderMap, peer: std::net::IpAddr) {
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(before) if !before.trim().is_empty() => format!("{before}, {peer}"),
        _ => peer.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert(HOST, HeaderValue::from_static("proxy.local"));
        h.insert("accept", HeaderValue::from_static("application/json"));
        h.insert("mcp-protocol-version", HeaderValue::from_static("2025-11-25"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "mcp-protocol-version"]);
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, "127.0.0.1".parse().unwrap());
        assert_eq!(h[X_FORWARDED_FOR], "127.0.0.1");
        append_forwarded_for(&mut h, "::1".parse().unwrap());
        assert_eq!(h[X_FORWARDED_FOR], "127.0.0.1, ::1");
    }
}
