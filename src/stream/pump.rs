//! The pump: drives an inner service's streaming answer to its end and appends each
//! message to the event log. It runs as its own task, so a client that disconnects does
//! not cancel the work (2025-era semantics); the events wait in the log for a resume.

use std::sync::Arc;

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;

use super::decode::Decoder;
use crate::event_log::{EventLog, StreamKey};
use crate::store::BusyGuard;

/// Pump `body` into the stream `key`, then mark the stream finished.
///
/// `busy` keeps the session from idling out while the request is still being worked on,
/// attached client or not.
pub(crate) async fn pump<B>(body: B, mut decoder: Decoder, key: StreamKey, log: Arc<dyn EventLog>, busy: Arc<BusyGuard>)
where
    B: Body<Data = Bytes> + Send + 'static,
{
    let mut body = std::pin::pin!(body);
    'body: loop {
        let chunk = match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            Some(Err(_)) => {
                trace_stream(&key, "inner stream body failed; ending the stream");
                break;
            }
            None => {
                if let Some(last) = decoder.finish() {
                    let _ = log.append(&key, last).await;
                }
                break;
            }
        };
        decoder.push(&chunk);
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => {
                    if log.append(&key, message).await.is_err() {
                        // An event that cannot be stored cannot be delivered exactly once;
                        // stop here (dropping the inner body cancels its work) rather than
                        // leave a silent gap.
                        trace_stream(&key, "event log append failed; ending the stream");
                        break 'body;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    trace_stream(&key, "inner message over the size limit; ending the stream");
                    break 'body;
                }
            }
        }
    }
    let _ = log.finish(&key).await;
    drop(busy);
}

fn trace_stream(_key: &StreamKey, _what: &str) {
    #[cfg(feature = "tracing")]
    tracing::debug!(session = %_key.session(), stream = %_key.stream(), "{_what}");
}
