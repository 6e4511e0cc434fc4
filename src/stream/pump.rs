//! The pump: drives an inner service's streaming answer to its end and appends each
//! message to the event log. It runs as its own task, so a client that disconnects does
//! not cancel the work (2025-era semantics); the events wait in the log for a resume.

use std::sync::Arc;

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;

use super::decode::Decoder;
use crate::event_log::{EventLog, StreamKey};
use crate::engine::sessions::BusyGuard;

/// Pump `body` into the stream `key`, then mark the stream finished.
///
/// When the body says it has ended (`is_end_stream`) right after a chunk, the chunk's
/// last event is stored with [`EventLog::append_last`], which finishes the stream in the
/// same step: one round trip fewer per stream for a shared log.
///
/// `busy` keeps the session from idling out while the request is still being worked on,
/// attached client or not.
pub(crate) async fn pump<B>(body: B, mut decoder: Decoder, key: StreamKey, log: Arc<dyn EventLog>, busy: Arc<BusyGuard>)
where
    B: Body<Data = Bytes> + Send + 'static,
{
    let mut body = std::pin::pin!(body);
    let mut finished = false;
    'body: loop {
        // Whether the body has ended: told by the body with its last chunk, or learnt
        // when the frames run out (then nothing new was pushed, and only the decoder's
        // unterminated tail can be left).
        let at_end = match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) => {
                    decoder.push(&chunk);
                    body.is_end_stream()
                }
                Err(_) => continue,
            },
            Some(Err(_)) => {
                trace_stream(&key, "inner stream body failed; ending the stream");
                break;
            }
            None => true,
        };
        // At the end of the body the newest event is held back: it may be the last one.
        let mut held: Option<Bytes> = None;
        loop {
            let message = match decoder.next_message() {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(_) => {
                    if let Some(earlier) = held.take() {
                        let _ = log.append(&key, earlier).await;
                    }
                    trace_stream(&key, "inner message over the size limit; ending the stream");
                    break 'body;
                }
            };
            let ready = if at_end { held.replace(message) } else { Some(message) };
            if let Some(message) = ready
                && log.append(&key, message).await.is_err()
            {
                // An event that cannot be stored cannot be delivered exactly once;
                // stop here (dropping the inner body cancels its work) rather than
                // leave a silent gap.
                trace_stream(&key, "event log append failed; ending the stream");
                break 'body;
            }
        }
        if at_end {
            let last = match (held, decoder.finish()) {
                (Some(held), Some(tail)) => {
                    if log.append(&key, held).await.is_err() {
                        trace_stream(&key, "event log append failed; ending the stream");
                        break;
                    }
                    Some(tail)
                }
                (held, tail) => held.or(tail),
            };
            if let Some(last) = last {
                finished = log.append_last(&key, last).await.is_ok();
            }
            break;
        }
    }
    if !finished {
        let _ = log.finish(&key).await;
    }
    drop(busy);
}

fn trace_stream(_key: &StreamKey, _what: &str) {
    #[cfg(feature = "tracing")]
    tracing::debug!(session = %_key.session(), stream = %_key.stream(), "{_what}");
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{Full, StreamBody};

    use super::*;
    use crate::event_log::{EventLogError, MemoryEventLog, ReadOutcome, StreamId};
    use crate::session::SessionId;
    use crate::stream::decode::StreamFormat;
    use crate::store::BoxFuture;

    /// A memory log that counts how the pump ends streams.
    struct Counting {
        log: MemoryEventLog,
        appended_last: AtomicUsize,
        finished: AtomicUsize,
    }

    impl EventLog for Counting {
        fn open<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>> {
            self.log.open(key)
        }
        fn append<'a>(&'a self, key: &'a StreamKey, data: Bytes) -> BoxFuture<'a, Result<u64, EventLogError>> {
            self.log.append(key, data)
        }
        fn append_last<'a>(&'a self, key: &'a StreamKey, data: Bytes) -> BoxFuture<'a, Result<u64, EventLogError>> {
            self.appended_last.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let seq = self.log.append(key, data).await?;
                self.log.finish(key).await?;
                Ok(seq)
            })
        }
        fn finish<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>> {
            self.finished.fetch_add(1, Ordering::SeqCst);
            self.log.finish(key)
        }
        fn read_after<'a>(
            &'a self,
            key: &'a StreamKey,
            after: u64,
            max: usize,
        ) -> BoxFuture<'a, Result<ReadOutcome, EventLogError>> {
            self.log.read_after(key, after, max)
        }
        fn wait_after<'a>(&'a self, key: &'a StreamKey, after: u64) -> BoxFuture<'a, ()> {
            self.log.wait_after(key, after)
        }
        fn remove_session<'a>(&'a self, session: &'a SessionId) -> BoxFuture<'a, Result<(), EventLogError>> {
            self.log.remove_session(session)
        }
    }

    /// Pump `body` and return (payloads stored, finished, append_last calls, finish calls).
    async fn run<B>(body: B, format: StreamFormat) -> (Vec<Bytes>, bool, usize, usize)
    where
        B: Body<Data = Bytes> + Send + 'static,
    {
        let counting = Arc::new(Counting {
            log: MemoryEventLog::new(),
            appended_last: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
        });
        let session = SessionId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let key = StreamKey::new(session.clone(), StreamId::random());
        counting.open(&key).await.unwrap();
        let busy = Arc::new(crate::engine::sessions::test_guard(&session).await);
        let log: Arc<dyn EventLog> = counting.clone();
        pump(body, Decoder::new(format, 1 << 20), key.clone(), log, busy).await;
        let ReadOutcome::Events { events, finished, .. } = counting.read_after(&key, 0, 100).await.unwrap() else {
            panic!("stream readable");
        };
        let payloads = events.into_iter().map(|e| e.data).collect();
        let (last, fin) = (
            counting.appended_last.load(Ordering::SeqCst),
            counting.finished.load(Ordering::SeqCst),
        );
        (payloads, finished, last, fin)
    }

    #[tokio::test]
    async fn a_body_that_ends_with_its_chunk_finishes_with_its_last_event() {
        let sse = Full::new(Bytes::from_static(b"event: message\ndata: a\n\ndata: b\n\n"));
        let (events, finished, last, fin) = run(sse, StreamFormat::Sse).await;
        assert_eq!(events, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        assert!(finished);
        assert_eq!((last, fin), (1, 0), "one combined step, no separate finish");

        // An NDJSON tail without its newline is the last event.
        let ndjson = Full::new(Bytes::from_static(b"{\"a\":1}\n{\"b\":2}"));
        let (events, finished, last, fin) = run(ndjson, StreamFormat::Ndjson).await;
        assert_eq!(
            events,
            vec![Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"{\"b\":2}")]
        );
        assert!(finished);
        assert_eq!((last, fin), (1, 0));
    }

    #[tokio::test]
    async fn a_body_that_cannot_tell_its_end_is_finished_separately() {
        let chunks = ["data: a\n\n", "data: b\n\n"]
            .map(|c| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(c.as_bytes()))));
        let stream = StreamBody::new(futures_util::stream::iter(chunks));
        let (events, finished, last, fin) = run(stream, StreamFormat::Sse).await;
        assert_eq!(events, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        assert!(finished);
        assert_eq!((last, fin), (0, 1));

        // Its unterminated NDJSON tail, found when the frames run out, is the last event.
        let chunks = ["{\"a\":1}\n", "{\"b\":2}"]
            .map(|c| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(c.as_bytes()))));
        let stream = StreamBody::new(futures_util::stream::iter(chunks));
        let (events, finished, last, fin) = run(stream, StreamFormat::Ndjson).await;
        assert_eq!(
            events,
            vec![Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"{\"b\":2}")]
        );
        assert!(finished);
        assert_eq!((last, fin), (1, 0));

        // A body that ends without a final event still finishes the stream.
        let (events, finished, last, fin) =
            run(Full::new(Bytes::from_static(b": comment\n\n")), StreamFormat::Sse).await;
        assert!(events.is_empty());
        assert!(finished);
        assert_eq!((last, fin), (0, 1));
    }
}
