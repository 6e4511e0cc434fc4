//! Content negotiation checks: `Accept` and `Content-Type`.

use http::HeaderMap;
use http::header::ACCEPT;

/// Whether `Accept` lists every one of `needed` (`type/subtype`, fewer than 32), directly
/// or through a wildcard, with a non-zero quality.
pub(crate) fn accepts_all(headers: &HeaderMap, needed: &[&str]) -> bool {
    debug_assert!(needed.len() < 32, "one bit per needed type");
    let all = (1u32 << needed.len()) - 1;
    let mut found = 0u32;
    // Bytes, not `str`: the header is scanned once, without UTF-8 checks; at most 64
    // ranges are looked at, however long the header. Plain loops: the same walk through
    // chained `split` iterators cost several times as much.
    let mut left = 64usize;
    for value in headers.get_all(ACCEPT) {
        let mut rest = value.as_bytes();
        loop {
            if left == 0 {
                return found == all;
            }
            left -= 1;
            let (range, next) = match memchr::memchr(b',', rest) {
                Some(comma) => (&rest[..comma], Some(&rest[comma + 1..])),
                None => (rest, None),
            };
            let (media, params) = match memchr::memchr(b';', range) {
                Some(semicolon) => (&range[..semicolon], Some(&range[semicolon + 1..])),
                None => (range, None),
            };
            let refused = params.is_some_and(|p| p.split(|&b| b == b';').any(is_zero_quality));
            if !refused {
                let media = media.trim_ascii();
                for (i, want) in needed.iter().enumerate() {
                    if media_matches(media, want.as_bytes()) {
                        found |= 1 << i;
                    }
                }
                if found == all {
                    return true;
                }
            }
            match next {
                Some(next) => rest = next,
                None => break,
            }
        }
    }
    found == all
}

/// `q=0` (or `q=0.000`): the range is refused.
fn is_zero_quality(param: &[u8]) -> bool {
    let param = param.trim_ascii();
    let Some(value) = param.strip_prefix(b"q=").or_else(|| param.strip_prefix(b"Q=")) else {
        return false;
    };
    std::str::from_utf8(value)
        .ok()
        .and_then(|q| q.trim().parse::<f32>().ok())
        .is_some_and(|q| q <= 0.0)
}

fn media_matches(range: &[u8], want: &[u8]) -> bool {
    // An exact match first: most clients send lowercase types, and it is cheaper.
    if range == want || range == b"*/*" || range.eq_ignore_ascii_case(want) {
        return true;
    }
    // `type/*`
    match (range.strip_suffix(b"/*"), want.iter().position(|&b| b == b'/')) {
        (Some(range_type), Some(slash)) => range_type.eq_ignore_ascii_case(&want[..slash]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::is_json_content;
    use http::HeaderValue;
    use http::header::CONTENT_TYPE;

    fn h(accept: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for a in accept {
            m.append(ACCEPT, HeaderValue::from_str(a).unwrap());
        }
        m
    }

    const BOTH: &[&str] = &["application/json", "text/event-stream"];

    #[test]
    fn accept_table() {
        assert!(accepts_all(&h(&["application/json, text/event-stream"]), BOTH));
        assert!(accepts_all(&h(&["application/json", "text/event-stream"]), BOTH));
        assert!(accepts_all(&h(&["*/*"]), BOTH));
        assert!(accepts_all(&h(&["application/*, text/*"]), BOTH));
        assert!(accepts_all(&h(&["Application/JSON;q=0.9, text/event-stream"]), BOTH));
        assert!(!accepts_all(&h(&["application/json"]), BOTH));
        assert!(!accepts_all(&h(&["text/event-stream"]), BOTH));
        assert!(!accepts_all(&h(&[]), BOTH));
        assert!(!accepts_all(&h(&["application/json, text/event-stream;q=0"]), BOTH));
        assert!(accepts_all(&h(&["text/event-stream"]), &["text/event-stream"]));
        assert!(accepts_all(
            &h(&[" application/json ;q=0.5 , text/event-stream;Q=1"]),
            BOTH
        ));
        assert!(!accepts_all(&h(&["application/json;q=0.000, text/event-stream"]), BOTH));
        assert!(!accepts_all(&h(&["application/*;q=0, text/*"]), BOTH));
        assert!(!accepts_all(&h(&["application/jsonx, text/event-streamx"]), BOTH));
        assert!(!accepts_all(&h(&["application, text/"]), BOTH));
        // Only the first 64 ranges count: a header cannot make the layer scan forever.
        let long = format!("{}application/json, text/event-stream", "a/b, ".repeat(64));
        assert!(!accepts_all(&h(&[&long]), BOTH));
    }

    #[test]
    fn content_type() {
        let mut m = HeaderMap::new();
        assert!(!is_json_content(&m));
        m.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json_content(&m));
        m.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json_content(&m));
    }
}
