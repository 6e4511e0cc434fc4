//! Session-creation rate limiting through the public API only.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use http::request::Parts;
use tower_mcp_session::Principal;
use tower_mcp_session::rate_limit::{
    CreationLimit, ForwardedIp, KeyExtractor, LimitScope, PeerAddr, PeerIp, PrincipalKey, Quota, RateLimitKey,
};

fn per_hour(n: u32) -> Quota {
    Quota::per_hour(NonZeroU32::new(n).unwrap())
}

fn parts(peer: Option<&str>, xff: &[&str]) -> Parts {
    let mut req = http::Request::builder();
    for line in xff {
        req = req.header("x-forwarded-for", *line);
    }
    let (mut parts, ()) = req.body(()).unwrap().into_parts();
    if let Some(peer) = peer {
        parts.extensions.insert(PeerAddr(peer.parse().unwrap()));
    }
    parts
}

fn from(peer: &str) -> Parts {
    parts(Some(peer), &[])
}

fn trusted_xff() -> ForwardedIp {
    ForwardedIp::x_forwarded_for(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()])
}

#[test]
fn burst_plus_one_gives_exactly_one_refusal() {
    const BURST: u32 = 5;
    let limit = CreationLimit::new().per_key(per_hour(BURST), PeerIp::new());
    let results: Vec<_> = (0..=BURST).map(|_| limit.check(&from("192.0.2.1:1000"))).collect();
    let refusals: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(refusals.len(), 1);
    assert!(results.last().unwrap().is_err(), "the refusal is the (N+1)th check");
    let refused = refusals[0];
    assert_eq!(refused.scope(), LimitScope::Key);
    assert!(refused.retry_after() >= Duration::from_secs(1));
    let retry: u64 = refused
        .headers()
        .find(|(name, _)| name == http::header::RETRY_AFTER)
        .unwrap()
        .1
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // One cell per 720 s.
    assert!((1..=720).contains(&retry), "{retry}");

    // Other keys are unaffected.
    for i in 2..10 {
        assert!(limit.check(&from(&format!("192.0.2.{i}:1000"))).is_ok());
    }
}

#[test]
fn sub_second_waits_say_one_second() {
    let limit = CreationLimit::new().per_key(Quota::with_period(Duration::from_millis(200)).unwrap(), PeerIp::new());
    limit.check(&from("192.0.2.1:1")).unwrap();
    let refused = limit.check(&from("192.0.2.1:1")).unwrap_err();
    assert!(refused.retry_after() > Duration::ZERO);
    assert!(refused.retry_after() <= Duration::from_millis(200));
    let headers: http::HeaderMap = refused.headers().collect();
    assert_eq!(headers.len(), 1, "RateLimit headers are off by default");
    assert_eq!(headers[http::header::RETRY_AFTER], "1");
}

#[test]
fn spoofed_leftmost_entries_do_not_create_buckets() {
    let limit = CreationLimit::new().per_key(per_hour(2), trusted_xff());
    // The client at 203.0.113.9 invents a new leftmost entry on every request; our
    // proxy at 10.0.0.5 appends the real address.
    for i in 0..2 {
        let spoof = format!("198.51.100.{i}, 203.0.113.9");
        assert!(limit.check(&parts(Some("10.0.0.5:4000"), &[&spoof])).is_ok());
    }
    for i in 2..20 {
        let spoof = format!("198.51.100.{i}, 203.0.113.9");
        assert!(limit.check(&parts(Some("10.0.0.5:4000"), &[&spoof])).is_err());
        // Also as a separate header line before the proxy's.
        let spoof = format!("198.51.100.{i}");
        assert!(
            limit
                .check(&parts(Some("10.0.0.5:4000"), &[&spoof, "203.0.113.9"]))
                .is_err()
        );
    }
    assert_eq!(limit.tracked_keys(), 1);
    // Another real client behind the same proxy has its own bucket.
    assert!(
        limit
            .check(&parts(Some("10.0.0.5:4000"), &["198.51.100.1, 203.0.113.10"]))
            .is_ok()
    );
}

#[test]
fn proxy_chain_is_walked_from_the_right() {
    let xff = trusted_xff();
    let key = xff.extract(&parts(Some("10.0.0.5:1"), &["6.6.6.6, 203.0.113.9, 10.1.2.3"]));
    assert_eq!(key, Some(RateLimitKey::Ip("203.0.113.9".parse().unwrap())));
}

#[test]
fn untrusted_peer_headers_are_ignored() {
    let limit = CreationLimit::new().per_key(per_hour(1), trusted_xff());
    assert!(limit.check(&parts(Some("203.0.113.9:1"), &["198.51.100.1"])).is_ok());
    // A different claimed client, same untrusted peer: same bucket.
    assert!(limit.check(&parts(Some("203.0.113.9:1"), &["198.51.100.2"])).is_err());
    let key = trusted_xff().extract(&parts(Some("203.0.113.9:1"), &["198.51.100.1"]));
    assert_eq!(key, Some(RateLimitKey::Ip("203.0.113.9".parse().unwrap())));
}

#[test]
fn ipv6_clients_are_grouped_by_slash_64() {
    let limit = CreationLimit::new().per_key(per_hour(1), PeerIp::new());
    assert!(limit.check(&from("[2001:db8:1:2::1]:1")).is_ok());
    assert!(limit.check(&from("[2001:db8:1:2:ffff:ffff:ffff:ffff]:1")).is_err());
    assert!(limit.check(&from("[2001:db8:1:3::1]:1")).is_ok());

    // The same through trusted proxies, and with a configured prefix.
    let limit = CreationLimit::new().per_key(per_hour(1), trusted_xff().ipv6_prefix(48));
    assert!(limit.check(&parts(Some("[fd00::1]:1"), &["2001:db8:1:2::1"])).is_ok());
    assert!(limit.check(&parts(Some("[fd00::1]:1"), &["2001:db8:1:3::1"])).is_err());
    assert!(limit.check(&parts(Some("[fd00::1]:1"), &["2001:db8:2::1"])).is_ok());
}

#[test]
fn ipv4_mapped_ipv6_is_ipv4() {
    let key = PeerIp::new().extract(&from("[::ffff:192.0.2.1]:1"));
    assert_eq!(key, Some(RateLimitKey::Ip("192.0.2.1".parse::<IpAddr>().unwrap())));
    let limit = CreationLimit::new().per_key(per_hour(1), PeerIp::new());
    assert!(limit.check(&from("192.0.2.1:1")).is_ok());
    assert!(limit.check(&from("[::ffff:192.0.2.1]:1")).is_err());
}

#[test]
fn requests_without_a_key_share_one_bucket() {
    let limit = CreationLimit::new().per_key(per_hour(2), PeerIp::new());
    assert!(limit.check(&parts(None, &[])).is_ok());
    assert!(limit.check(&parts(None, &[])).is_ok());
    let refused = limit.check(&parts(None, &[])).unwrap_err();
    assert_eq!(refused.scope(), LimitScope::Key);
    // Keyed clients are unaffected.
    assert!(limit.check(&from("192.0.2.1:1")).is_ok());

    let limit = CreationLimit::new().per_key(per_hour(1), PrincipalKey);
    assert!(limit.check(&parts(None, &[])).is_ok());
    assert!(limit.check(&parts(None, &[])).is_err());
}

#[test]
fn principal_and_closure_keys() {
    let limit = CreationLimit::new().per_key(per_hour(1), PrincipalKey);
    let as_user = |user: &str| {
        let mut p = from("192.0.2.1:1");
        p.extensions.insert(Principal::new(user));
        p
    };
    assert!(limit.check(&as_user("alice")).is_ok());
    assert!(limit.check(&as_user("alice")).is_err());
    assert!(limit.check(&as_user("bob")).is_ok());

    let by_tenant = |parts: &Parts| {
        let tenant = parts.headers.get("x-tenant")?.to_str().ok()?;
        Some(RateLimitKey::from(tenant))
    };
    let limit = CreationLimit::new().per_key(per_hour(1), by_tenant);
    let tenant = |t: &str| {
        let (parts, ()) = http::Request::builder()
            .header("x-tenant", t)
            .body(())
            .unwrap()
            .into_parts();
        parts
    };
    assert!(limit.check(&tenant("a")).is_ok());
    assert!(limit.check(&tenant("a")).is_err());
    assert!(limit.check(&tenant("b")).is_ok());
}

#[test]
fn keyed_refusals_cost_no_global_cells() {
    let limit = CreationLimit::new()
        .global(per_hour(3))
        .per_key(per_hour(1), PeerIp::new());
    assert!(limit.check(&from("192.0.2.1:1")).is_ok());
    for _ in 0..20 {
        let refused = limit.check(&from("192.0.2.1:1")).unwrap_err();
        assert_eq!(refused.scope(), LimitScope::Key);
    }
    // Two global cells are left, whatever the first client did.
    assert!(limit.check(&from("192.0.2.2:1")).is_ok());
    assert!(limit.check(&from("192.0.2.3:1")).is_ok());
    let refused = limit.check(&from("192.0.2.4:1")).unwrap_err();
    assert_eq!(refused.scope(), LimitScope::Global);
}

#[test]
fn global_refusals_cost_no_key_cells() {
    let limit = CreationLimit::new()
        .global(per_hour(1))
        .per_key(per_hour(1), PeerIp::new());
    assert!(limit.check(&from("192.0.2.1:1")).is_ok());
    for i in 2..50 {
        let refused = limit.check(&from(&format!("192.0.2.{i}:1"))).unwrap_err();
        assert_eq!(refused.scope(), LimitScope::Global);
    }
    // The refused clients never reached their per-key buckets: nothing was taken from
    // them, and no state was kept for them.
    assert_eq!(limit.tracked_keys(), 1);
}

#[test]
fn combined_checks_are_exact_under_concurrency() {
    let limit = CreationLimit::new()
        .global(per_hour(100))
        .per_key(per_hour(3), PeerIp::new());
    let admitted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let limit = limit.clone();
                s.spawn(move || {
                    (0..400)
                        .filter(|i| limit.check(&from(&format!("192.0.{t}.{}:1", i % 50))).is_ok())
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    // 400 distinct keys × 3 cells would admit 1200; the global quota stops at exactly 100.
    assert_eq!(admitted, 100);
}

#[test]
fn rate_limit_headers_describe_the_quota() {
    let limit = CreationLimit::new()
        .per_key(Quota::per_minute(NonZeroU32::new(10).unwrap()), PeerIp::new())
        .rate_limit_headers(true);
    for _ in 0..10 {
        limit.check(&from("192.0.2.1:1")).unwrap();
    }
    let refused = limit.check(&from("192.0.2.1:1")).unwrap_err();
    let headers: http::HeaderMap = refused.headers().collect();
    assert_eq!(headers["ratelimit-policy"], r#""per-key";q=10;w=60"#);
    let retry = headers["retry-after"].to_str().unwrap();
    assert_eq!(headers["ratelimit"], format!(r#""per-key";r=0;t={retry}"#).as_str());
}

#[test]
fn sweep_forgets_stale_keys() {
    let limit = CreationLimit::new().per_key(Quota::with_period(Duration::from_millis(1)).unwrap(), PeerIp::new());
    let lasting = CreationLimit::new().per_key(per_hour(1), PeerIp::new());
    for i in 0..200u8 {
        let p = from(&format!("192.0.2.{i}:1"));
        limit.check(&p).unwrap();
        lasting.check(&p).unwrap();
    }
    assert_eq!(limit.tracked_keys(), 200);
    std::thread::sleep(Duration::from_millis(10));
    limit.sweep();
    lasting.sweep();
    assert_eq!(limit.tracked_keys(), 0);
    // Keys whose bucket is still draining are kept: forgetting them would hand the
    // client a fresh burst.
    assert_eq!(lasting.tracked_keys(), 200);
}

#[tokio::test(start_paused = true)]
async fn sweeper_runs_inside_tokio() {
    let limit = CreationLimit::new()
        .per_key(Quota::with_period(Duration::from_millis(1)).unwrap(), PeerIp::new())
        .sweep_interval(Duration::from_secs(30));
    for i in 0..100u8 {
        limit.check(&from(&format!("192.0.2.{i}:1"))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(limit.tracked_keys(), 100);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(limit.tracked_keys(), 0);
}
