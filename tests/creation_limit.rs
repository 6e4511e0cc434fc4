//! Session-creation rate limiting through the layer (issue "Governor rate limits").

use mcp_test_support::http as support;

use std::net::SocketAddr;

use http::StatusCode;
use serde_json::json;
use std::num::NonZeroU32;
use support::*;
use tower_mcp_session::rate_limit::{CreationLimit, ForwardedIp, PeerAddr, PeerIp, Quota};
use tower_mcp_session::{McpSessionLayer, RejectionKind};

fn burst(n: u32) -> Quota {
    // Refill slowly enough that no cell comes back during a test.
    Quota::per_hour(NonZeroU32::new(1).unwrap()).allow_burst(NonZeroU32::new(n).unwrap())
}

fn from(addr: &str) -> http::request::Builder {
    post().extension(PeerAddr(addr.parse::<SocketAddr>().unwrap()))
}

/// A burst of N+1 initializes from one key with burst N: exactly one 429 with
/// Retry-After ≥ 1, a JSON-RPC body, and no state left behind; other keys unaffected;
/// established sessions keep working.
#[tokio::test]
async fn burst_plus_one_is_one_429() {
    let layer = McpSessionLayer::builder()
        .rate_limit(CreationLimit::new().per_key(burst(5), PeerIp::new()))
        .build();
    let app = app(&layer);
    let mut sessions = Vec::new();
    let mut refused = 0;
    for _ in 0..6 {
        let resp = call(&app, with_body(from("192.0.2.1:1000"), &initialize_body(LEGACY))).await;
        let (head, body) = resp.into_parts();
        let body = read_all(body).await;
        if head.status == StatusCode::TOO_MANY_REQUESTS {
            assert_rejected(head.status, &body, 429, -32000, "rate_limited");
            assert_eq!(json(&body)["id"], 0);
            let retry: u64 = head.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry >= 1);
            assert!(head.headers.get("mcp-session-id").is_none());
            refused += 1;
        } else {
            assert_eq!(head.status, StatusCode::OK);
            sessions.push(head.headers["mcp-session-id"].to_str().unwrap().to_owned());
        }
    }
    assert_eq!((sessions.len(), refused), (5, 1));
    let m = layer.manager().metrics();
    assert_eq!(
        (m.active_sessions, m.rejected(RejectionKind::RateLimited)),
        (Some(5), 1)
    );
    // Another client is unaffected.
    let other = call(&app, with_body(from("192.0.2.2:1000"), &initialize_body(LEGACY))).await;
    assert_eq!(other.status(), StatusCode::OK);
    // Established sessions of the limited client work at full speed: 200 calls, no 429.
    for i in 0..200 {
        let req = with_body(
            from("192.0.2.1:1000").header("mcp-session-id", &sessions[i % 5]),
            &request(i as u64, "ping", json!({})),
        );
        assert_eq!(call(&app, req).await.status(), StatusCode::OK);
    }
    // 2026-07-28 requests are never counted.
    for i in 0..20 {
        let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/list", "params": {"_meta": modern_meta()}});
        let req = with_body(
            from("192.0.2.1:1000").header("mcp-protocol-version", "2026-07-28"),
            &body,
        );
        assert_eq!(call(&app, req).await.status(), StatusCode::OK);
    }
}

/// Behind a trusted proxy the client address comes from X-Forwarded-For, walked from
/// the right: a spoofed leftmost entry does not create a new bucket.
#[tokio::test]
async fn spoofed_forwarded_for_does_not_open_a_bucket() {
    let limit = CreationLimit::new().per_key(burst(2), ForwardedIp::x_forwarded_for(["10.0.0.0/8".parse().unwrap()]));
    let app = app(&McpSessionLayer::builder().rate_limit(limit).build());
    let via_proxy = |xff: &str| from("10.0.0.5:443").header("x-forwarded-for", xff);
    for spoof in [
        "1.1.1.1, 203.0.113.9",
        "2.2.2.2, 203.0.113.9",
        "3.3.3.3, 203.0.113.9, 10.0.0.7",
    ] {
        let _ = call(&app, with_body(via_proxy(spoof), &initialize_body(LEGACY))).await;
    }
    // Three creations from the real client 203.0.113.9 (burst 2): the third was refused.
    let fourth = call(
        &app,
        with_body(via_proxy("9.9.9.9, 203.0.113.9"), &initialize_body(LEGACY)),
    )
    .await;
    assert_eq!(fourth.status(), StatusCode::TOO_MANY_REQUESTS);
    let other = call(&app, with_body(via_proxy("203.0.113.10"), &initialize_body(LEGACY))).await;
    assert_eq!(other.status(), StatusCode::OK);
    // An untrusted peer's header is ignored: the peer itself is the key.
    let direct = from("198.51.100.1:1").header("x-forwarded-for", "203.0.113.10");
    assert_eq!(
        call(&app, with_body(direct, &initialize_body(LEGACY))).await.status(),
        StatusCode::OK
    );
}

/// No peer address at all (no ConnectInfo, no PeerAddr): a shared fallback bucket,
/// never a 500 and never unlimited.
#[tokio::test]
async fn missing_peer_address_falls_back_to_a_shared_bucket() {
    let app = app(&McpSessionLayer::builder()
        .rate_limit(CreationLimit::new().per_key(burst(3), PeerIp::new()))
        .build());
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(
                call(&app, with_body(post(), &initialize_body(LEGACY)))
                    .await
                    .status()
                    .as_u16(),
            );
        }
        v
    };
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
}

/// The cap and the rate limit are distinct answers: 503 for full, 429 for too fast.
#[tokio::test]
async fn capacity_and_rate_limit_are_distinct() {
    let layer = McpSessionLayer::builder()
        .max_sessions(Some(1))
        .rate_limit(CreationLimit::new().per_key(burst(2), PeerIp::new()))
        .build();
    let app = app(&layer);
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(
                call(&app, with_body(from("192.0.2.1:1"), &initialize_body(LEGACY)))
                    .await
                    .status()
                    .as_u16(),
            );
        }
        v
    };
    assert_eq!(statuses, vec![200, 503, 429]);
}

/// Opted in, a refusal carries the draft rate-limit error (`-32023`, `retryAfterMs`) and
/// is still a 429 with `Retry-After` and reason `rate_limited`; off, the code is -32000
/// and there is no `retryAfterMs`.
#[tokio::test]
async fn the_draft_rate_limit_error_is_opt_in() {
    for draft in [true, false] {
        let limit = CreationLimit::new().global(burst(1)).draft_error_code(draft);
        let layer = McpSessionLayer::builder().rate_limit(limit).build();
        let app = app(&layer);
        let (status, _, _) = send(&app, None, &initialize_body(LEGACY)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, headers, body) = send(&app, None, &initialize_body(LEGACY)).await;
        let code = if draft { -32023 } else { -32000 };
        assert_rejected(status, &body, 429, code, "rate_limited");
        let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        let data = &json(&body)["error"]["data"];
        if draft {
            let millis = data["retryAfterMs"].as_u64().expect("retryAfterMs");
            // An hour's refill, in milliseconds; `Retry-After` is the same wait rounded up.
            assert!(millis > 3_500_000 && millis <= retry * 1000, "{millis} ms, {retry} s");
        } else {
            assert!(data.get("retryAfterMs").is_none(), "{data}");
        }
    }
}
