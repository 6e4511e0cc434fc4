//! Server-sent events: the ids the layer puts on resumable streams, a reader and the
//! event encoder.
//!
//! [`EventId`] is what a client sends back in `Last-Event-ID`. [`SseParser`] reads
//! `text/event-stream` bytes the way the WHATWG rules say a client must (the
//! `tower-mcp-session-client` crate reads server streams with it); [`encode_event`]
//! writes one event the way the layer does.
//!
//! ```
//! use bytes::BytesMut;
//! use tower_mcp_session::sse::{SseParser, encode_event};
//!
//! let mut out = BytesMut::new();
//! encode_event(&mut out, None, br#"{"jsonrpc":"2.0","method":"ping"}"#);
//! let mut reader = SseParser::new(1 << 20);
//! reader.push(&out);
//! let event = reader.next_event().unwrap().expect("one whole event");
//! assert_eq!(event.data, r#"{"jsonrpc":"2.0","method":"ping"}"#);
//! ```

mod event_id;
mod frame;
mod parser;

pub use event_id::EventId;
pub(crate) use event_id::MAX_EVENT_ID_LEN;
pub use frame::encode_event;
pub(crate) use frame::{encode_comment, encode_priming, encode_retry, put_data_line, put_id};
pub use parser::{SseError, SseEvent, SseParser};

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use proptest::prelude::*;

    use super::*;
    use crate::event_log::StreamId;

    /// What a reader gives back for `data`: line breaks normalised to LF.
    fn normalise(data: &str) -> String {
        data.replace("\r\n", "\n").replace('\r', "\n")
    }

    fn feed_split(bytes: &[u8], cuts: &[prop::sample::Index], max: usize) -> (Vec<SseEvent>, usize, SseParser) {
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        let mut p = SseParser::new(max);
        let mut events = Vec::new();
        let mut errors = 0;
        for w in points.windows(2) {
            let chunk = &bytes[w[0]..w[1]];
            p.push(chunk);
            loop {
                match p.next_event() {
                    Ok(Some(e)) => events.push(e),
                    Ok(None) => break,
                    Err(_) => errors += 1,
                }
            }
            assert!(
                p.buffered_bytes() <= max + chunk.len() + 64,
                "held {} bytes",
                p.buffered_bytes()
            );
        }
        (events, errors, p)
    }

    fn data_strategy() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                4 => any::<char>(),
                2 => Just('\n'),
                2 => Just('\r'),
                1 => Just(' '),
                1 => Just(':'),
            ],
            0..48,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn encode_then_read_round_trips_in_any_split(
            events in proptest::collection::vec(
                (proptest::option::of((any::<u64>(), any::<u64>())), data_strategy(), proptest::option::of(0u64..100_000)),
                0..8,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
            bom in any::<bool>(),
        ) {
            let mut wire = BytesMut::new();
            if bom {
                wire.extend_from_slice(b"\xEF\xBB\xBF");
            }
            let mut expected_retry = None;
            for (id, data, retry) in &events {
                encode_comment(&mut wire, "keep\r\nalive");
                if let Some(ms) = retry {
                    encode_retry(&mut wire, *ms);
                    expected_retry = Some(*ms);
                }
                let id = id.map(|(s, q)| EventId::new(StreamId::from_raw(s), q));
                encode_event(&mut wire, id, data.as_bytes());
            }
            let (got, errors, mut parser) = feed_split(&wire, &cuts, 1 << 16);
            prop_assert_eq!(errors, 0);
            prop_assert_eq!(got.len(), events.len());
            for (g, (id, data, _)) in got.iter().zip(&events) {
                prop_assert_eq!(std::str::from_utf8(&g.data).unwrap(), normalise(data));
                let want_id = id.map(|(s, q)| EventId::new(StreamId::from_raw(s), q).to_string());
                prop_assert_eq!(&g.id, &want_id);
                prop_assert_eq!(g.event.as_deref(), None);
                if let Some(id) = &g.id {
                    prop_assert!(EventId::parse(id).is_some());
                }
            }
            prop_assert_eq!(parser.reconnection_time(), expected_retry);
            prop_assert!(!parser.finish(), "nothing incomplete may remain");
        }

        #[test]
        fn priming_reads_as_an_empty_event_with_its_id(stream in any::<u64>(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6)) {
            let id = EventId::new(StreamId::from_raw(stream), 0);
            let mut wire = BytesMut::new();
            encode_priming(&mut wire, id);
            let (got, _, parser) = feed_split(&wire, &cuts, 1024);
            prop_assert_eq!(got.len(), 1);
            prop_assert!(got[0].data.is_empty());
            prop_assert_eq!(parser.last_event_id(), id.to_string());
        }

        #[test]
        fn reader_never_panics_and_stays_bounded(
            bytes in proptest::collection::vec(
                prop_oneof![
                    4 => any::<u8>(),
                    2 => Just(b'\n'),
                    2 => Just(b'\r'),
                    2 => Just(b':'),
                    1 => Just(b' '),
                    1 => proptest::sample::select(vec![b'd', b'a', b't', b'i', b'e', b'v', b'n', b'r', b'y', 0, 0xEF, 0xBB, 0xBF]),
                ],
                0..512,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
            max in 0usize..64,
        ) {
            let (events, _, mut parser) = feed_split(&bytes, &cuts, max);
            for e in &events {
                prop_assert!(std::str::from_utf8(&e.data).is_ok());
                prop_assert!(e.data.len() <= max);
            }
            parser.finish();
            prop_assert_eq!(parser.buffered_bytes(), 0);
        }

        #[test]
        fn same_events_whatever_the_split(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'\n', b'\r', b':', b' ', b'd', b'a', b't', b'i', b'x', 0xC3, 0xA9]),
                0..256,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
        ) {
            let (whole, e1, _) = feed_split(&bytes, &[], 1 << 16);
            let (split, e2, _) = feed_split(&bytes, &cuts, 1 << 16);
            prop_assert_eq!(whole, split);
            prop_assert_eq!((e1, e2), (0, 0));
        }
    }
}
