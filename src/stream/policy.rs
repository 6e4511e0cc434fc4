//! Stream policy: where a fresh `GET` starts, and how a streamed answer becomes a
//! resumable stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response};
use http_body::Body;
use tokio::time::timeout;

use super::decode::Decoder;
use super::pump::pump;
use super::reader::{Reader, Start};
use super::{LiveStream, McpBody, SseConfig, Streams};
use serde_json::value::RawValue;

use crate::event_log::{EventLog, EventLogError, ProducerLease, ReadOutcome, StreamId, StreamKey, lease};
use crate::headers::X_ACCEL_BUFFERING;
use crate::lifecycle::sessions::BusyGuard;
use crate::outbound::RelatedStream;
use crate::rejection::{Rejection, RejectionKind};
use crate::session::SessionRecord;
use crate::store::BoxError;

/// What the stream policy needs of the engine.
pub(crate) struct StreamSetup<'a> {
    pub(crate) log: &'a Arc<dyn EventLog>,
    pub(crate) streams: &'a Streams,
    pub(crate) sse: &'a Arc<SseConfig>,
    /// How long one event-log call may take.
    pub(crate) timeout: Duration,
}

/// Which stream a streamed answer becomes, and the request it answers: its id, raw, when
/// the stream answers exactly one request. Only then does the stream get a producer
/// lease (the error answer that ends an abandoned stream needs the id); a batch's
/// stream goes without, as before leases.
pub(crate) struct StreamOf {
    pub(crate) id: StreamId,
    pub(crate) live: Arc<LiveStream>,
    pub(crate) related: Option<Arc<RelatedStream>>,
    pub(crate) request: Option<Box<RawValue>>,
    /// What produces the body, when that is work of the layer's own (translation
    /// mode's relay): it runs in the pump's task, so handing each message from the one
    /// to the other wakes no other thread.
    pub(crate) producer: Option<Producer>,
}

/// Work that feeds a stream's body, run beside its pump.
pub(crate) type Producer = crate::store::BoxFuture<'static, ()>;

/// `pump` and, when there is one, the `producer` feeding it, together.
async fn with_producer(pump: impl Future<Output = ()>, producer: Option<Producer>) {
    match producer {
        Some(producer) => {
            tokio::join!(pump, producer);
        }
        None => pump.await,
    }
}

/// Turn a streamed answer of an established session into a resumable SSE stream: a pump
/// drives the inner body into the event log, and the response reads it back from the start.
///
/// With a request id the stream is opened with a producer lease, which the pump renews
/// while it runs (`event_log::lease`): if this instance dies mid-stream, a reader
/// elsewhere finds the lease lapsed and ends the stream with an error answer.
pub(crate) async fn resumable<P, B>(
    setup: StreamSetup<'_>,
    record: Arc<SessionRecord>,
    mut head: http::response::Parts,
    body: P,
    busy: Arc<BusyGuard>,
    of: StreamOf,
    decoder: Decoder,
) -> Result<Response<McpBody<B>>, Rejection>
where
    P: Body<Data = Bytes> + Send + 'static,
    P::Error: Into<BoxError> + Send,
{
    let StreamOf {
        id: stream_id,
        live,
        related,
        request,
        producer,
    } = of;
    let key = StreamKey::new(record.id().clone(), stream_id);
    let lease_for = setup.sse.producer_lease;
    let lease = request.map(|id| ProducerLease::new(lease_for, Bytes::copy_from_slice(id.get().as_bytes())));
    let open = async {
        match &lease {
            Some(lease) => setup.log.open_leased(&key, lease).await,
            None => setup.log.open(&key).await,
        }
    };
    let opened = match timeout(setup.timeout, open).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(refusal(&e)),
        Err(_) => Err(Rejection::store_unavailable()),
    };
    // Requests to the client made while serving this request may now go on its stream.
    if let Some(related) = related {
        if opened.is_ok() {
            related.opened();
        } else {
            related.elsewhere();
        }
    }
    if let Err(rejection) = opened {
        // A legacy session never gets an answer it could not resume: refuse it, and
        // dropping the inner body cancels the work.
        #[cfg(feature = "tracing")]
        tracing::debug!(session = %record.id(), reason = rejection.kind.reason(), "stream refused");
        drop((body, busy, producer));
        return Err(rejection);
    }
    setup.streams.adopt(&key, &live);
    let pumping = pump(body, decoder, key.clone(), setup.log.clone(), busy.clone());
    if lease.is_some() {
        let renewing = lease::renewing(pumping, setup.log.clone(), key.clone(), lease_for);
        setup
            .streams
            .spawn_pump(record.id(), Box::pin(with_producer(renewing, producer)));
    } else {
        setup
            .streams
            .spawn_pump(record.id(), Box::pin(with_producer(pumping, producer)));
    }
    if live.close_epoch() == 0 {
        // Let a quick answer catch up with the headers: one write instead of several,
        // so latency does not hinge on TCP_NODELAY.
        let _ = timeout(setup.sse.first_event_wait, setup.log.wait_after(&key, 0)).await;
    }
    let attachment = live.attach();
    let primes = record.protocol_version().supports_priming();
    let start = Start {
        cursor: 0,
        close_epoch: 0,
        priming: primes,
        polling: primes,
        claim: None,
        // A primed client holds an event id to resume from elsewhere.
        ends_on_drain: primes,
        // A healthy pump renews well within the lease: no need to look before.
        producer_check: lease.is_some().then_some(lease_for / 2),
    };
    let reader = Reader::new(
        setup.log.clone(),
        key,
        setup.sse.clone(),
        attachment,
        start,
        busy,
        setup.streams.drain(),
    );
    set_sse_headers(&mut head);
    Ok(Response::from_parts(head, McpBody::stream(reader)))
}

/// The answer to an event-log refusal: the session's stream bound (429), the log's
/// memory budget (503 `event_log_full`), or a log that failed (503).
pub(crate) fn refusal(error: &EventLogError) -> Rejection {
    let soon = Duration::from_secs(1);
    match error {
        EventLogError::TooManyStreams { .. } => Rejection::new(RejectionKind::TooManyStreams).retry_after(soon),
        EventLogError::Full => Rejection::new(RejectionKind::EventLogFull).retry_after(soon),
        _ => Rejection::store_unavailable(),
    }
}

/// Where a `GET` without `Last-Event-ID` starts on the session's standalone stream:
/// after the last event this instance delivered, so messages pushed while nobody
/// listened are delivered once and nothing is repeated. If those were already dropped
/// by retention, the client gets what is still held; a fresh connection promises no
/// continuity.
pub(crate) async fn fresh_cursor(setup: StreamSetup<'_>, key: &StreamKey) -> Result<u64, Rejection> {
    let wait = setup.timeout;
    match timeout(wait, setup.log.open(key)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(refusal(&e)),
        Err(_) => return Err(Rejection::store_unavailable()),
    }
    // What this instance delivered, or what any instance recorded in a shared log.
    let local = setup.streams.live(key).delivered();
    let shared_mark = timeout(wait, setup.log.delivered(key)).await;
    let delivered = match shared_mark {
        Ok(Ok(seq)) => local.max(seq),
        _ => return Err(Rejection::store_unavailable()),
    };
    match timeout(wait, setup.log.read_after(key, delivered, 0)).await {
        Ok(Ok(ReadOutcome::Events { .. })) => Ok(delivered),
        // The stream was started again after expiring; its numbering restarted.
        Ok(Ok(ReadOutcome::Evicted { last_seq, .. })) if delivered > last_seq => Ok(last_seq),
        Ok(Ok(ReadOutcome::Evicted { first_retained, .. })) => Ok(first_retained.saturating_sub(1)),
        _ => Err(Rejection::store_unavailable()),
    }
}

pub(crate) trait SseHead {
    fn headers_mut(&mut self) -> &mut http::HeaderMap;
}

impl SseHead for http::response::Parts {
    fn headers_mut(&mut self) -> &mut http::HeaderMap {
        &mut self.headers
    }
}

impl<B> SseHead for Response<B> {
    fn headers_mut(&mut self) -> &mut http::HeaderMap {
        Response::headers_mut(self)
    }
}

/// The whole answer to a `GET` while this instance drains: a `retry` field and the
/// end, so the client reconnects (through the balancer, to another instance) with the
/// `Last-Event-ID` it holds, or afresh. Nothing is claimed or read: the stream's state in
/// the log is left for the instance that serves the reconnection.
pub(crate) fn drained_get<B>(sse: &SseConfig) -> Response<McpBody<B>> {
    let mut retry = bytes::BytesMut::new();
    crate::sse::encode_retry(&mut retry, u64::try_from(sse.retry.as_millis()).unwrap_or(u64::MAX));
    let mut response = Response::new(McpBody::full(retry.freeze()));
    set_sse_headers(&mut response);
    response
}

pub(crate) fn set_sse_headers(head: &mut impl SseHead) {
    let headers = head.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    headers.remove(CONTENT_LENGTH);
}
