//! Reading a client address out of `X-Forwarded-For` or `Forwarded` (RFC 7239).
//!
//! Each proxy appends the address it received the request from to the *right* end of
//! the chain, so only the right end is written by machines we trust; everything to the
//! left may have been sent by the client itself. The walk therefore starts at the right
//! and stops at the first address that is not a trusted proxy: that address was written
//! by a trusted proxy and is the real client as far as anyone can tell.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::HeaderMap;
use http::header::{FORWARDED, HeaderName};
use ipnet::IpNet;

/// Bytes read from the end of each header line; anything further left is ignored.
///
/// Trusted hops sit at the right end, so a client that pads the header cannot push
/// them out of view, and the work per line stays bounded whatever the client sends.
pub(crate) const MAX_LINE_TAIL: usize = 4096;

/// Entries examined, counted from the right across all lines of the header.
pub(crate) const MAX_HOPS: usize = 32;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Which header the trusted proxies write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Syntax {
    XForwardedFor,
    Forwarded,
}

impl Syntax {
    fn header(self) -> HeaderName {
        match self {
            Self::XForwardedFor => X_FORWARDED_FOR,
            Self::Forwarded => FORWARDED,
        }
    }
}

/// Whether `ip` (already canonical) falls in one of the trusted ranges.
pub(crate) fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client address behind the trusted proxy `peer`.
///
/// Walks the chain from the right past trusted proxies and returns the first address
/// that is not one. When the walk cannot go on (the chain ends, an entry names no
/// address, or a bound is reached) the answer is the last address it established, which
/// is then a trusted proxy: a client can never choose its own key by writing entries.
pub(crate) fn client_ip(headers: &HeaderMap, syntax: Syntax, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    let mut current = peer;
    let mut budget = MAX_HOPS;
    // Header lines are one list in order, so the last line holds the rightmost entries.
    for line in headers.get_all(syntax.header()).iter().rev() {
        let bytes = line.as_bytes();
        let cut = bytes.len() > MAX_LINE_TAIL;
        let tail = if cut {
            &bytes[bytes.len() - MAX_LINE_TAIL..]
        } else {
            bytes
        };
        let mut entries = tail.rsplit(|b| *b == b',').peekable();
        while let Some(entry) = entries.next() {
            if budget == 0 || (cut && entries.peek().is_none()) {
                // Out of budget, or the leftmost piece of a cut line: a fragment, never
                // read as an address.
                return current;
            }
            budget -= 1;
            let Ok(entry) = std::str::from_utf8(entry) else {
                return current;
            };
            let entry = entry.trim_matches([' ', '\t']);
            if entry.is_empty() {
                // `a,,b` or a trailing comma: nothing was said, nothing to follow.
                continue;
            }
            let node = match syntax {
                Syntax::XForwardedFor => parse_node(entry),
                Syntax::Forwarded => forwarded_for(entry).and_then(parse_node),
            };
            let Some(ip) = node.map(|ip| ip.to_canonical()) else {
                // `unknown`, an obfuscated identifier or garbage, written by a trusted
                // hop: we cannot see past it, and must not guess.
                return current;
            };
            if !is_trusted(ip, trusted) {
                return ip;
            }
            current = ip;
        }
    }
    current
}

/// The `for=` value of one `Forwarded` element, quotes removed.
///
/// Elements are split on `,` without regard to quoting: the standard parameters
/// (`for`, `by`, `host`, `proto`) never contain a comma, and a garbled element only
/// stops the walk.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        Some(
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value),
        )
    })
}

/// An address from a node: `ip`, `ipv4:port`, `[ipv6]` or `[ipv6]:port`. The port (which
/// RFC 7239 allows to be obfuscated) is ignored; `unknown` and `_obfuscated` names give
/// `None`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (host, _port) = node.split_once(':')?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn headers(name: HeaderName, lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(name.clone(), HeaderValue::from_str(line).unwrap());
        }
        map
    }

    fn xff(lines: &[&str], peer: &str) -> IpAddr {
        let trusted = nets(&["10.0.0.0/8"]);
        client_ip(
            &headers(X_FORWARDED_FOR, lines),
            Syntax::XForwardedFor,
            ip(peer),
            &trusted,
        )
    }

    #[test]
    fn nodes() {
        assert_eq!(parse_node("192.0.2.1"), Some(ip("192.0.2.1")));
        assert_eq!(parse_node("192.0.2.1:8080"), Some(ip("192.0.2.1")));
        assert_eq!(parse_node("192.0.2.1:_port"), Some(ip("192.0.2.1")));
        assert_eq!(parse_node("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("[2001:db8::1]:4711"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("[2001:db8::1]x"), None);
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node("_hidden"), None);
        assert_eq!(parse_node("example.com:80"), None);
    }

    #[test]
    fn forwarded_elements() {
        assert_eq!(
            forwarded_for("for=192.0.2.60;proto=http;by=203.0.113.43"),
            Some("192.0.2.60")
        );
        assert_eq!(
            forwarded_for("proto=https; For=\"[2001:db8:cafe::17]:4711\""),
            Some("[2001:db8:cafe::17]:4711")
        );
        assert_eq!(forwarded_for("by=10.0.0.1"), None);
    }

    #[test]
    fn walks_from_the_right_past_trusted_hops() {
        assert_eq!(xff(&["6.6.6.6, 203.0.113.9, 10.0.0.2"], "10.0.0.1"), ip("203.0.113.9"));
    }

    #[test]
    fn lines_are_one_list_in_order() {
        assert_eq!(
            xff(&["6.6.6.6", "203.0.113.9", "10.0.0.2, 10.0.0.3"], "10.0.0.1"),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn all_trusted_gives_the_leftmost() {
        assert_eq!(xff(&["10.1.1.1, 10.0.0.2"], "10.0.0.1"), ip("10.1.1.1"));
    }

    #[test]
    fn no_header_gives_the_peer() {
        assert_eq!(xff(&[], "10.0.0.1"), ip("10.0.0.1"));
    }

    #[test]
    fn empty_entries_are_skipped() {
        assert_eq!(xff(&["203.0.113.9,, 10.0.0.2,"], "10.0.0.1"), ip("203.0.113.9"));
    }

    #[test]
    fn unparseable_entry_stops_at_the_last_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(xff(&["1.2.3.4, garbage, 10.0.0.2"], "10.0.0.1"), ip("10.0.0.2"));
        let h = headers(FORWARDED, &["for=1.2.3.4, for=_hidden, for=10.0.0.2"]);
        assert_eq!(
            client_ip(&h, Syntax::Forwarded, ip("10.0.0.1"), &trusted),
            ip("10.0.0.2")
        );
        let h = headers(FORWARDED, &["for=unknown"]);
        assert_eq!(
            client_ip(&h, Syntax::Forwarded, ip("10.0.0.1"), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_with_quoted_ipv6_and_ports() {
        let trusted = nets(&["2001:db8:ffff::/48", "10.0.0.0/8"]);
        let h = headers(
            FORWARDED,
            &["for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=\"[2001:db8:ffff::1]\""],
        );
        assert_eq!(
            client_ip(&h, Syntax::Forwarded, ip("10.0.0.1"), &trusted),
            ip("2001:db8:cafe::17")
        );
    }

    #[test]
    fn ipv4_mapped_entries_are_ipv4() {
        assert_eq!(
            xff(&["::ffff:203.0.113.9, ::ffff:10.0.0.2"], "10.0.0.1"),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn padding_cannot_hide_the_trusted_end() {
        let padded = format!("{}203.0.113.9, 10.0.0.2", "1.1.1.1, ".repeat(1000));
        assert_eq!(xff(&[&padded], "10.0.0.1"), ip("203.0.113.9"));
    }

    #[test]
    fn the_walk_is_bounded() {
        // More trusted hops than the budget: the walk gives up on a trusted address
        // rather than reading the client-written entry at the far left.
        let many = format!("6.6.6.6, {}", vec!["10.9.9.9"; MAX_HOPS + 1].join(", "));
        assert_eq!(xff(&[&many], "10.0.0.1"), ip("10.9.9.9"));

        // A cut line never yields its leftmost fragment: the line is `61.2.3.4,…10.9.9.9`
        // padded so that the cut falls just after the `6`, leaving `1.2.3.4` at the edge.
        let pad = " ".repeat(MAX_LINE_TAIL - "1.2.3.4,10.9.9.9".len());
        let long = format!("61.2.3.4,{pad}10.9.9.9");
        assert_eq!(long.len(), MAX_LINE_TAIL + 1);
        assert_eq!(xff(&[&long], "10.0.0.1"), ip("10.9.9.9"));
    }
}
