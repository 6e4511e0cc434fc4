//! The pump: drives an inner service's SSE response body to its end and appends each
//! message to the event log. It runs as its own task, so a client that disconnects does
//! not cancel the work (2025-era semantics); the events wait in the log for a resume.

use std::sync::Arc;

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;

use crate::event_log::{EventLog, StreamKey};
use crate::sse::SseParser;
use crate::store::BusyGuard;

/// Pump `body` into the stream `key`, then mark the stream finished.
///
/// `busy` keeps the session from idling out while the request is still being worked on,
/// attached client or not.
pub(crate) async fn pump<B>(
    body: B,
    key: StreamKey,
    log: Arc<dyn EventLog>,
    max_event_bytes: usize,
    busy: Arc<BusyGuard>,
) where
    B: Body<Data = Bytes> + Send + 'static,
{
    let mut body = std::pin::pin!(body);
    let mut parser = SseParser::new(max_event_bytes);
    'body: while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            trace_stream(&key, "inner SSE body failed; ending the stream");
            break;
        };
        let Ok(data) = frame.into_data() else { continue };
        parser.push(&data);
        loop {
            match parser.next_event() {
                Ok(Some(event)) => {
                    // Empty events are the inner service's own priming or keep-alives; the
                    // layer sends its own. Only `message` events carry JSON-RPC.
                    let is_message = event.event.as_deref().is_none_or(|e| e == "message");
                    if !is_message || event.data.is_empty() {
                        continue;
                    }
                    if log.append(&key, event.data).await.is_err() {
                        // An event that cannot be stored cannot be delivered exactly once;
                        // stop here (dropping the inner body cancels its work) rather than
                        // leave a silent gap.
                        trace_stream(&key, "event log append failed; ending the stream");
                        break 'body;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    trace_stream(&key, "inner SSE event over the size limit; ending the stream");
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
