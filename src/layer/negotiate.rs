//! Content negotiation checks: `Accept` and `Content-Type`.

use http::HeaderMap;
use http::header::{ACCEPT, CONTENT_TYPE};

/// Whether `Accept` lists every one of `needed` (`type/subtype`), directly or through
/// a wildcard, with a non-zero quality.
pub(crate) fn accepts_all(headers: &HeaderMap, needed: &[&str]) -> bool {
    let ranges: Vec<&str> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .take(64)
        .filter(|range| !has_zero_quality(range))
        .map(|range| range.split(';').next().unwrap_or("").trim())
        .collect();
    needed
        .iter()
        .all(|want| ranges.iter().any(|range| media_matches(range, want)))
}

fn has_zero_quality(range: &str) -> bool {
    range.split(';').skip(1).any(|p| {
        let p = p.trim();
        p.strip_prefix("q=")
            .or_else(|| p.strip_prefix("Q="))
            .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
    })
}

fn media_matches(range: &str, want: &str) -> bool {
    if range == "*/*" || range.eq_ignore_ascii_case(want) {
        return true;
    }
    match (range.split_once('/'), want.split_once('/')) {
        (Some((rt, "*")), Some((wt, _))) => rt.eq_ignore_ascii_case(wt),
        _ => false,
    }
}

/// The media type of `Content-Type`, without parameters (`charset`, …).
pub(crate) fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or("").trim())
}

/// Whether `Content-Type` is `application/json` (parameters such as `charset` allowed).
pub(crate) fn is_json_content(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m.eq_ignore_ascii_case("application/json"))
}

/// Whether a response is an SSE stream.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m.eq_ignore_ascii_case("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
