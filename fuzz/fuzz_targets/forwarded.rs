//! The `X-Forwarded-For` / `Forwarded` walk behind a trusted proxy.
//!
//! Invariants: never panics; without the header the answer is the peer; and what lies
//! left of the first untrusted address (counted from the right) never matters: when the
//! walk ends on an address that is not a trusted proxy, putting any text in front of
//! the header gives the same answer, so a client cannot choose its own key.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use tower_mcp_session::fuzzing::client_ip;

#[derive(Debug, Arbitrary)]
struct Input {
    rfc7239: bool,
    lines: Vec<String>,
    prefix: String,
    trusted: Vec<(bool, u128, u8)>,
}

fuzz_target!(|input: Input| {
    let trusted: Vec<IpNet> = input
        .trusted
        .iter()
        .take(4)
        .filter_map(|&(v4, bits, len)| {
            let ip = if v4 {
                IpAddr::V4(Ipv4Addr::from(bits as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(bits))
            };
            IpNet::new(ip, len % if v4 { 33 } else { 129 }).ok().map(|n| n.trunc())
        })
        .chain(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()])
        .collect();
    let peer: IpAddr = "10.0.0.1".parse().unwrap();
    let name = HeaderName::from_static(if input.rfc7239 { "forwarded" } else { "x-forwarded-for" });
    let mut headers = HeaderMap::new();
    assert_eq!(client_ip(&headers, input.rfc7239, peer, &trusted), peer);
    let lines: Vec<&String> = input.lines.iter().take(4).collect();
    for line in &lines {
        if let Ok(v) = HeaderValue::from_str(line) {
            headers.append(name.clone(), v);
        }
    }
    let answer = client_ip(&headers, input.rfc7239, peer, &trusted);
    let is_trusted = trusted.iter().any(|n| n.contains(&answer));
    if !is_trusted {
        // Put client-controlled text in front of the first line.
        let mut values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
        let Some(first) = values.first_mut() else {
            panic!("an untrusted answer {answer} without a header");
        };
        let mut text = input.prefix.into_bytes();
        text.push(b',');
        text.extend_from_slice(first.as_bytes());
        // Past the per-line bound the cut would fall elsewhere; that is another case.
        let Ok(v) = HeaderValue::from_bytes(&text) else {
            return;
        };
        if text.len() > 4096 {
            return;
        }
        *first = v;
        let mut padded = HeaderMap::new();
        for v in values {
            padded.append(name.clone(), v);
        }
        assert_eq!(client_ip(&padded, input.rfc7239, peer, &trusted), answer);
    }
});
