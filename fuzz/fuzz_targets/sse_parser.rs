//! The SSE reader, with the input cut at arbitrary points.
//!
//! Input: `[max] [n] [n chunk lengths] [stream bytes]`. Invariants: never panics; the
//! events, errors, last event id, reconnection time and `finish` outcome are the same
//! whether the stream arrives in one piece or in the chosen chunks; every event is
//! within the bound (data valid UTF-8, no NUL in an id); and after each chunk is read
//! the reader holds at most twice the bound plus a field prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_mcp_session::sse::{SseError, SseEvent, SseParser};

/// `retry: ` and the 20 digits of `u64::MAX`: the longest line held beyond the bound.
const SLACK: usize = 27;

/// After a chunk is read: the event (at most `max`), plus an unfinished line that may
/// replace the event's `id` or name (its value at most `max`), plus a field prefix.
fn held_bound(max: usize) -> usize {
    2 * max + SLACK
}

#[derive(Debug, PartialEq)]
struct Outcome {
    items: Vec<Result<SseEvent, SseError>>,
    last_event_id: String,
    reconnection_time: Option<u64>,
    discarded: bool,
}

fn read(max: usize, chunks: &[&[u8]]) -> Outcome {
    let mut parser = SseParser::new(max);
    let mut items = Vec::new();
    for chunk in chunks {
        parser.push(chunk);
        loop {
            match parser.next_event() {
                Ok(None) => break,
                Ok(Some(event)) => {
                    assert!(event.data.len() <= max, "data {} over {max}", event.data.len());
                    assert!(std::str::from_utf8(&event.data).is_ok());
                    assert!(event.id.as_ref().is_none_or(|id| !id.contains('\0')));
                    items.push(Ok(event));
                }
                Err(e) => items.push(Err(e)),
            }
        }
        assert!(
            parser.buffered_bytes() <= held_bound(max),
            "{} bytes held, bound {max}",
            parser.buffered_bytes()
        );
    }
    Outcome {
        items,
        last_event_id: parser.last_event_id().to_owned(),
        reconnection_time: parser.reconnection_time(),
        discarded: parser.finish(),
    }
}

fuzz_target!(|data: &[u8]| {
    let [max, n, rest @ ..] = data else {
        return;
    };
    let max = usize::from(*max);
    let n = usize::from(*n % 16).min(rest.len());
    let (lengths, stream) = rest.split_at(n);
    let mut chunks = Vec::new();
    let mut at = 0;
    for &len in lengths {
        let end = (at + usize::from(len)).min(stream.len());
        chunks.push(&stream[at..end]);
        at = end;
    }
    chunks.push(&stream[at..]);
    let whole = read(max, &[stream]);
    assert_eq!(read(max, &chunks), whole, "chunks {chunks:?}");
});
