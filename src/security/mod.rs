//! DNS-rebinding and cross-origin protection: the `Host` and `Origin` checks every
//! request passes before anything else happens.
//!
//! The defaults suit the most common deployment, a server on a developer's machine:
//! only loopback host names (`localhost`, `127.0.0.1`, `[::1]`, any port) are served,
//! and an `Origin`, when present, must be a loopback origin too. A public deployment
//! names its host names and browser origins on the layer builder.

use http::HeaderMap;
use http::header::{HOST, ORIGIN};

use crate::rejection::RejectionKind;

/// Which `Host` values are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPolicy {
    /// Loopback names plus the listed ones.
    AllowList(Vec<String>),
    /// Any host (the deployment protects itself some other way).
    Any,
}

/// Which `Origin` values are accepted when the header is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OriginPolicy {
    /// Loopback origins plus the listed ones (exact `scheme://host[:port]`).
    AllowList(Vec<String>),
    /// Any origin.
    Any,
}

#[derive(Debug, Clone)]
pub(crate) struct Guard {
    pub(crate) hosts: HostPolicy,
    pub(crate) origins: OriginPolicy,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            hosts: HostPolicy::AllowList(Vec::new()),
            origins: OriginPolicy::AllowList(Vec::new()),
        }
    }
}

impl Guard {
    /// Check `Origin` first (the spec's MUST: present and invalid → 403), then `Host`.
    pub(crate) fn check(&self, headers: &HeaderMap, uri_authority: Option<&str>) -> Result<(), RejectionKind> {
        if let Some(origin) = headers.get(ORIGIN) {
            let ok = match &self.origins {
                OriginPolicy::Any => true,
                OriginPolicy::AllowList(list) => origin.to_str().is_ok_and(|o| origin_allowed(o, list)),
            };
            if !ok {
                return Err(RejectionKind::ForbiddenOrigin);
            }
        }
        if let HostPolicy::AllowList(list) = &self.hosts {
            // Every authority the request names must be served, and it must name one:
            // HTTP/2 carries it in the URI instead of a Host header, an absolute-form
            // HTTP/1.1 target in both. A Host header that cannot be read, or a second
            // one, is refused rather than skipped for the other source.
            let mut hosts = headers.get_all(HOST).iter();
            let (header_ok, header) = match (hosts.next(), hosts.next()) {
                (None, _) => (uri_authority.is_some(), None),
                (Some(h), None) => match h.to_str() {
                    Ok(h) => (host_allowed(h, list), Some(h)),
                    Err(_) => (false, None),
                },
                (Some(_), Some(_)) => (false, None),
            };
            // An authority spelled exactly as the header already passed the same check.
            if !header_ok || uri_authority.is_some_and(|a| Some(a) != header && !host_allowed(a, list)) {
                return Err(RejectionKind::ForbiddenHost);
            }
        }
        Ok(())
    }
}

/// Split `host[:port]` into its host (a `[v6]` literal with its brackets, or
/// dot-separated labels of letters, digits, `-` and `_`) and its port (1 to 5 digits).
/// Anything else (an empty label, userinfo, a path, a query, a fragment, a second
/// colon) gives `None`: both checks refuse what they cannot read exactly.
fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, after) = authority.split_at(end + 1);
        let address = &host[1..end];
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return None;
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (host, port)
    } else {
        // Byte loops, not `split_once`/`split`: this runs twice on every request, and the
        // generic pattern searches cost several times the check itself.
        let (host, port) = match authority.bytes().position(|b| b == b':') {
            Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
            None => (authority, None),
        };
        let mut label = 0usize;
        for b in host.bytes() {
            match b {
                b'.' if label == 0 => return None,
                b'.' => label = 0,
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => label += 1,
                _ => return None,
            }
        }
        if label == 0 {
            return None;
        }
        (host, port)
    };
    if port.is_some_and(|p| !port_ok(p)) {
        return None;
    }
    Some((host, port))
}

fn port_ok(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// Host names compare without regard to ASCII case; comparing in place spares every
/// request a lowercased copy of its host.
fn is_loopback_host(host: &str) -> bool {
    const SUFFIX: &[u8] = b".localhost";
    let bytes = host.as_bytes();
    host.eq_ignore_ascii_case("localhost")
        || host == "127.0.0.1"
        || host == "[::1]"
        || (bytes.len() >= SUFFIX.len() && bytes[bytes.len() - SUFFIX.len()..].eq_ignore_ascii_case(SUFFIX))
}

/// Whether a `Host` value (or URI authority) is served. The whole value must be a
/// well-formed `host[:port]`, not merely contain a host: that is what keeps the
/// `.localhost` suffix rule honest, since `evil.com/.localhost` or `evil.com#.localhost`
/// end in `.localhost` but are not host names at all.
fn host_allowed(authority: &str, list: &[String]) -> bool {
    // Unicode `trim`, as the rules are written: the two sources (a `Host` value read
    // with `to_str`, a URI authority) are visible ASCII anyway, but the function takes
    // any text (the fuzzer's model holds it to the rules with a vertical tab too).
    let authority = authority.trim();
    let Some((host, _)) = split_authority(authority) else {
        return false;
    };
    if is_loopback_host(host) {
        return true;
    }
    // An entry without a port allows the name on any port; with a port, only that one.
    list.iter()
        .any(|entry| entry.eq_ignore_ascii_case(host) || entry.eq_ignore_ascii_case(authority))
}

fn origin_allowed(origin: &str, list: &[String]) -> bool {
    let origin = origin.trim();
    // An opaque origin (sandboxed frames, `file:` pages) has no host to judge: it is
    // accepted only when the deployment lists it.
    if origin.eq_ignore_ascii_case("null") {
        return list.iter().any(|o| o.eq_ignore_ascii_case(origin));
    }
    let Some(origin) = Origin::parse(origin) else {
        return false;
    };
    is_loopback_host(origin.host)
        || list
            .iter()
            .filter_map(|entry| Origin::parse(entry.trim()))
            .any(|entry| entry.same(&origin))
}

/// A serialized origin, `scheme "://" host [":" port]` and nothing else.
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<&'a str>,
}

impl<'a> Origin<'a> {
    /// Anything beyond the three parts (path, query, fragment, userinfo, an empty
    /// label) is refused rather than skipped: each would let a foreign origin end in,
    /// or begin with, a loopback name.
    fn parse(text: &'a str) -> Option<Self> {
        let (scheme, authority) = text.split_once("://")?;
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return None;
        }
        let (host, port) = split_authority(authority)?;
        Some(Self { scheme, host, port })
    }

    fn same(&self, other: &Origin<'_>) -> bool {
        self.scheme.eq_ignore_ascii_case(other.scheme)
            && self.host.eq_ignore_ascii_case(other.host)
            && self.port == other.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn check(guard: &Guard, host: Option<&str>, origin: Option<&str>) -> Result<(), RejectionKind> {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(HOST, HeaderValue::from_str(v).unwrap());
        }
        if let Some(v) = origin {
            h.insert(ORIGIN, HeaderValue::from_str(v).unwrap());
        }
        guard.check(&h, None)
    }

    #[test]
    fn defaults_serve_loopback_only() {
        let g = Guard::default();
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:3000",
            "[::1]:9",
            "[::1]",
            "LOCALHOST:1",
        ] {
            assert_eq!(check(&g, Some(host), None), Ok(()), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost:abc",
            "[::1]x",
            "",
        ] {
            assert_eq!(check(&g, Some(host), None), Err(RejectionKind::ForbiddenHost), "{host}");
        }
        assert_eq!(check(&g, None, None), Err(RejectionKind::ForbiddenHost));
        assert_eq!(
            check(&g, Some("localhost"), Some("http://evil.example")),
            Err(RejectionKind::ForbiddenOrigin)
        );
        assert_eq!(check(&g, Some("localhost"), Some("http://localhost:5173")), Ok(()));
        assert_eq!(
            check(&g, Some("localhost"), Some("null")),
            Err(RejectionKind::ForbiddenOrigin)
        );
    }

    #[test]
    fn origins_are_parsed_not_matched_by_suffix() {
        let g = Guard::default();
        for origin in [
            "http://localhost",
            "https://localhost:5173",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://[::1]",
            "HTTP://LOCALHOST:3000",
            "http://app.localhost:3000",
        ] {
            assert_eq!(check(&g, Some("localhost"), Some(origin)), Ok(()), "{origin}");
        }
        for origin in [
            "http://x.com/.localhost",
            "http://evil.com#.localhost",
            "http://evil.com?.localhost",
            "http://evil.com\\.localhost",
            "http://localhost.evil.com",
            "http://user@localhost",
            "http://localhost@evil.com",
            "http://localhost:80/",
            "http://localhost/",
            "http://[::1]:80/",
            "http://[::1]x",
            "http://127.0.0.1.nip.io",
            "http://.localhost",
            "http://localhost:",
            "http://localhost:8o",
            "http://localhost:80:80",
            "http://%6cocalhost",
            "ftp://localhost",
            "ws://localhost",
            "http:/localhost",
            "//localhost",
            "localhost",
            "http://",
        ] {
            assert_eq!(
                check(&g, Some("localhost"), Some(origin)),
                Err(RejectionKind::ForbiddenOrigin),
                "{origin}"
            );
        }
        let listed = Guard {
            hosts: HostPolicy::AllowList(Vec::new()),
            origins: OriginPolicy::AllowList(vec!["https://app.example.com".into(), "null".into()]),
        };
        for origin in ["https://app.example.com", "HTTPS://App.Example.COM", "null"] {
            assert_eq!(check(&listed, Some("localhost"), Some(origin)), Ok(()), "{origin}");
        }
        for origin in [
            "https://app.example.com/",
            "https://app.example.com#x",
            "https://user@app.example.com",
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://evil.com/https://app.example.com",
        ] {
            assert_eq!(
                check(&listed, Some("localhost"), Some(origin)),
                Err(RejectionKind::ForbiddenOrigin),
                "{origin}"
            );
        }
    }

    #[test]
    fn hosts_are_parsed_not_matched_by_suffix() {
        // Found by fuzzing: the `.localhost` rule was applied to the raw value, so text
        // that is no host name at all, but ends in `.localhost`, was served.
        let listed = Guard {
            hosts: HostPolicy::AllowList(vec!["mcp.example.com".into(), "api.example.com:443".into()]),
            origins: OriginPolicy::Any,
        };
        for guard in [&Guard::default(), &listed] {
            for host in [
                "evil.com/.localhost",
                "evil.com#.localhost",
                "evil.com?.localhost",
                "evil.com\\.localhost",
                "evil@.localhost",
                "evil.com:80/.localhost",
                ".localhost",
                "a..localhost",
                "evillocalhost",
                "localhost.evil",
                "localhost.evil:8080",
                "localhost:80:80",
                "localhost:",
                "[::1]:",
                "[]",
                "[::1",
                "127.0.0.1.evil.example",
                "evilmcp.example.com",
                "mcp.example.com.evil",
                "x.mcp.example.com",
                "mcp.example.com/",
                "mcp.example.com@evil",
                "api.example.com:4430",
                "evilapi.example.com:443",
            ] {
                assert_eq!(
                    check(guard, Some(host), None),
                    Err(RejectionKind::ForbiddenHost),
                    "{host}"
                );
            }
            for host in ["app.localhost", "a.b.localhost:3000", "localhost", "[::1]:80"] {
                assert_eq!(check(guard, Some(host), None), Ok(()), "{host}");
            }
        }
        for host in ["mcp.example.com", "MCP.example.com:8443", "api.example.com:443"] {
            assert_eq!(check(&listed, Some(host), None), Ok(()), "{host}");
        }
    }

    #[test]
    fn every_authority_a_request_names_is_checked() {
        let g = Guard::default();
        let with = |hosts: &[&[u8]], uri: Option<&str>| {
            let mut h = HeaderMap::new();
            for v in hosts {
                h.append(HOST, HeaderValue::from_bytes(v).unwrap());
            }
            g.check(&h, uri)
        };
        assert_eq!(with(&[], Some("localhost:8080")), Ok(()));
        assert_eq!(with(&[b"localhost"], Some("127.0.0.1")), Ok(()));
        assert_eq!(with(&[], None), Err(RejectionKind::ForbiddenHost));
        // An unreadable Host used to fall back to the URI's authority.
        assert_eq!(
            with(&[b"evil.example\xff"], Some("localhost")),
            Err(RejectionKind::ForbiddenHost)
        );
        assert_eq!(
            with(&[b"localhost", b"evil.example"], None),
            Err(RejectionKind::ForbiddenHost)
        );
        assert_eq!(
            with(&[b"evil.example"], Some("localhost")),
            Err(RejectionKind::ForbiddenHost)
        );
        assert_eq!(
            with(&[b"localhost"], Some("evil.example")),
            Err(RejectionKind::ForbiddenHost)
        );
    }

    #[test]
    fn allow_lists() {
        let g = Guard {
            hosts: HostPolicy::AllowList(vec!["mcp.example.com".into(), "api.example.com:443".into()]),
            origins: OriginPolicy::AllowList(vec!["https://app.example.com".into()]),
        };
        assert_eq!(check(&g, Some("mcp.example.com:8443"), None), Ok(()));
        assert_eq!(check(&g, Some("api.example.com:443"), None), Ok(()));
        assert_eq!(
            check(&g, Some("api.example.com:444"), None),
            Err(RejectionKind::ForbiddenHost)
        );
        assert_eq!(
            check(&g, Some("mcp.example.com"), Some("https://app.example.com")),
            Ok(())
        );
        assert_eq!(
            check(&g, Some("mcp.example.com"), Some("https://app.example.com.evil")),
            Err(RejectionKind::ForbiddenOrigin)
        );
        let open = Guard {
            hosts: HostPolicy::Any,
            origins: OriginPolicy::Any,
        };
        assert_eq!(check(&open, Some("anything"), Some("http://evil.example")), Ok(()));
    }
}
