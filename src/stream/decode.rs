//! Reading JSON-RPC messages out of an inner service's streaming answer.
//!
//! Two forms are understood: SSE (`text/event-stream`; `message` events with data) and
//! newline-delimited JSON (`application/x-ndjson` or `application/jsonl`: one JSON-RPC
//! message per line). A handler that finds SSE framing a chore can stream NDJSON and
//! let the layer frame it; for 2025-era clients it then becomes a resumable stream too.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use crate::sse::SseParser;

/// The streaming forms the layer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamFormat {
    Sse,
    Ndjson,
}

impl StreamFormat {
    /// The streaming form of a response, if it is one.
    pub(crate) fn of(headers: &HeaderMap) -> Option<Self> {
        let mime = crate::headers::media_type(headers)?;
        if mime.eq_ignore_ascii_case("text/event-stream") {
            Some(Self::Sse)
        } else if mime.eq_ignore_ascii_case("application/x-ndjson") || mime.eq_ignore_ascii_case("application/jsonl") {
            Some(Self::Ndjson)
        } else {
            None
        }
    }
}

/// A message bigger than the configured bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

/// Turns bytes, as they arrive, into JSON-RPC messages.
pub(crate) struct Decoder {
    framing: Framing,
}

enum Framing {
    Sse(SseParser),
    Lines { buf: BytesMut, scanned: usize, max: usize },
}

impl Decoder {
    pub(crate) fn new(format: StreamFormat, max_message_bytes: usize) -> Self {
        let framing = match format {
            StreamFormat::Sse => Framing::Sse(SseParser::new(max_message_bytes)),
            StreamFormat::Ndjson => Framing::Lines {
                buf: BytesMut::new(),
                scanned: 0,
                max: max_message_bytes,
            },
        };
        Self { framing }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.framing.push(chunk);
    }

    /// The next complete message. Empty SSE events (an inner service's own priming or
    /// keep-alives) and events other than `message` carry no JSON-RPC and are
    /// skipped; so are blank lines.
    pub(crate) fn next_message(&mut self) -> Result<Option<Bytes>, TooLarge> {
        self.framing.next_message()
    }

    /// The input ended: a final NDJSON line without its newline still counts.
    pub(crate) fn finish(&mut self) -> Option<Bytes> {
        self.framing.finish()
    }
}

impl Framing {
    fn push(&mut self, chunk: &[u8]) {
        match self {
            Self::Sse(parser) => parser.push(chunk),
            Self::Lines { buf, .. } => buf.extend_from_slice(chunk),
        }
    }

    fn next_message(&mut self) -> Result<Option<Bytes>, TooLarge> {
        match self {
            Self::Sse(parser) => loop {
                match parser.next_event() {
                    Ok(Some(event)) => {
                        let is_message = event.event.as_deref().is_none_or(|e| e == "message");
                        if is_message && !event.data.is_empty() {
                            return Ok(Some(event.data));
                        }
                    }
                    Ok(None) => return Ok(None),
                    Err(_) => return Err(TooLarge),
                }
            },
            Self::Lines { buf, scanned, max } => loop {
                // `scanned` only marks bytes already known to hold no newline.
                *scanned = (*scanned).min(buf.len());
                let Some(pos) = memchr::memchr(b'\n', &buf[*scanned..]) else {
                    *scanned = buf.len();
                    // A line that cannot end within the bound never will.
                    return if buf.len() > *max { Err(TooLarge) } else { Ok(None) };
                };
                let line = buf.split_to(*scanned + pos + 1).freeze();
                *scanned = 0;
                let text = trim_ascii(&line);
                if text.len() > *max {
                    return Err(TooLarge);
                }
                if !text.is_empty() {
                    return Ok(Some(line.slice_ref(text)));
                }
            },
        }
    }

    fn finish(&mut self) -> Option<Bytes> {
        match self {
            Self::Sse(parser) => {
                parser.finish();
                None
            }
            Self::Lines { buf, scanned, max } => {
                *scanned = 0;
                let rest = std::mem::take(buf).freeze();
                let text = trim_ascii(&rest);
                (!text.is_empty() && text.len() <= *max).then(|| rest.slice_ref(text))
            }
        }
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CONTENT_TYPE;

    fn drain(d: &mut Decoder) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Some(m)) = d.next_message() {
            out.push(String::from_utf8(m.to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn ndjson_in_pieces() {
        let mut d = Decoder::new(StreamFormat::Ndjson, 64);
        d.push(b"{\"a\":1}\r\n\n{\"b\"");
        assert_eq!(drain(&mut d), vec!["{\"a\":1}"]);
        d.push(b":2}\n  {\"c\":3}");
        assert_eq!(drain(&mut d), vec!["{\"b\":2}"]);
        assert_eq!(d.finish().as_deref(), Some(&b"{\"c\":3}"[..]));
    }

    #[test]
    fn ndjson_reads_after_finish_are_empty() {
        let mut d = Decoder::new(StreamFormat::Ndjson, 64);
        d.push(b"{\"a\":1}\n{\"b\":2}");
        assert_eq!(drain(&mut d), vec!["{\"a\":1}"]);
        assert!(d.finish().is_some());
        assert_eq!(d.next_message(), Ok(None));
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn ndjson_bound() {
        let mut d = Decoder::new(StreamFormat::Ndjson, 8);
        d.push(b"0123456789");
        assert_eq!(d.next_message(), Err(TooLarge));
    }

    #[test]
    fn sse_skips_empty_and_foreign_events() {
        let mut d = Decoder::new(StreamFormat::Sse, 1024);
        d.push(b"id: 1\ndata:\n\nevent: ping\ndata: x\n\nevent: message\ndata: {}\n\ndata: [1]\n\n");
        assert_eq!(drain(&mut d), vec!["{}", "[1]"]);
    }

    #[test]
    fn formats() {
        let mut h = HeaderMap::new();
        assert_eq!(StreamFormat::of(&h), None);
        h.insert(CONTENT_TYPE, "text/event-stream; charset=utf-8".parse().unwrap());
        assert_eq!(StreamFormat::of(&h), Some(StreamFormat::Sse));
        h.insert(CONTENT_TYPE, "application/x-ndjson".parse().unwrap());
        assert_eq!(StreamFormat::of(&h), Some(StreamFormat::Ndjson));
        h.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(StreamFormat::of(&h), None);
    }
}
