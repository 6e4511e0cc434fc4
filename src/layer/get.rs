//! `GET`: attach to the session's standalone stream, or resume any stream of the
//! session with `Last-Event-ID`.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tokio::time::timeout;
use tower_service::Service;

use super::listen::Listener;
use super::negotiate::accepts_all;
use super::service::{Answer, Handler};
use crate::era::VersionHeader;
use crate::event_log::{ReadOutcome, StreamKey};
use crate::headers::LAST_EVENT_ID;
use crate::rejection::{Rejection, RejectionKind};
use crate::sse::EventId;
use crate::store::BoxError;
use crate::stream::policy::{drained_get, fresh_cursor, set_sse_headers};
use crate::stream::reader::{Reader, Start};
use crate::stream::{McpBody, standalone_stream};

const SSE_TYPE: &[&str] = &["text/event-stream"];

impl<S, ResBody> Handler<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    pub(super) async fn get(self, parts: Parts, version: VersionHeader) -> Answer<ResBody, S::Error> {
        if let Err(rejection) = self.legacy_version(version) {
            return Ok(self.reject(rejection));
        }
        if !accepts_all(&parts.headers, SSE_TYPE) {
            return Ok(self.reject(Rejection::new(RejectionKind::NotAcceptable)));
        }
        let (record, busy) = match Self::resolve(&self.engine, &parts).await {
            Ok(found) => found,
            Err(rejection) => return Ok(self.reject(rejection)),
        };
        let engine = self.engine.clone();
        if engine.drain().is_draining() {
            // Served (the session is live), but not from here: see `drained_get`.
            drop(busy);
            return Ok(drained_get(&engine.config().sse));
        }
        let busy = Arc::new(busy);
        let standalone = StreamKey::new(record.id().clone(), standalone_stream(record.id()));
        let primes = record.protocol_version().supports_priming();
        let resumed = match parts.headers.get(LAST_EVENT_ID) {
            None => None,
            Some(value) => {
                let Some(event_id) = value.to_str().ok().and_then(EventId::parse) else {
                    return Ok(self.reject(Rejection::new(RejectionKind::UnknownEventId)));
                };
                let key = StreamKey::new(record.id().clone(), event_id.stream());
                match timeout(
                    engine.config().store_timeout,
                    engine.log().read_after(&key, event_id.seq(), 1),
                )
                .await
                {
                    Ok(Ok(ReadOutcome::Events { .. })) => Some((key, event_id.seq())),
                    // The GET stream expired while nothing was pushed: start it afresh
                    // rather than strand a client that did nothing wrong.
                    Ok(Ok(ReadOutcome::UnknownStream)) if key == standalone => None,
                    Ok(Ok(ReadOutcome::UnknownStream)) => {
                        return Ok(self.reject(Rejection::new(RejectionKind::UnknownEventId)));
                    }
                    // A sequence number the stream never reached was never issued.
                    Ok(Ok(ReadOutcome::Evicted { last_seq, .. })) if event_id.seq() > last_seq => {
                        return Ok(self.reject(Rejection::new(RejectionKind::UnknownEventId)));
                    }
                    Ok(Ok(ReadOutcome::Evicted { .. })) => {
                        return Ok(self.reject(Rejection::new(RejectionKind::EventsEvicted)));
                    }
                    Ok(Err(_)) | Err(_) => return Ok(self.reject(Rejection::store_unavailable())),
                }
            }
        };
        let resumed_standalone = resumed.as_ref().is_some_and(|(key, _)| *key == standalone);
        let (key, cursor, priming) = match resumed {
            Some((key, cursor)) => {
                engine.counters().resumed();
                (key, cursor, false)
            }
            None => match fresh_cursor(engine.stream_setup(), &standalone).await {
                Ok(cursor) => (standalone.clone(), cursor, primes),
                Err(rejection) => return Ok(self.reject(rejection)),
            },
        };
        engine.ensure_maintenance();
        // The standalone stream is the one several instances may serve at once: claim
        // it in the shared log so only the newest GET sends.
        let claim = if key == standalone {
            match timeout(engine.config().store_timeout, engine.log().claim_reader(&key)).await {
                Ok(Ok(claim)) => Some(claim),
                _ => return Ok(self.reject(Rejection::store_unavailable())),
            }
        } else {
            None
        };
        let live = engine.streams().live(&key);
        let start = Start {
            cursor,
            close_epoch: live.close_epoch(),
            priming,
            polling: primes,
            claim,
            ends_on_drain: true,
            // A resumed request stream: its producer may be gone already. The
            // standalone stream has no lease to look at.
            producer_check: (key != standalone).then_some(std::time::Duration::ZERO),
        };
        let listens = engine.config().translate && key == standalone;
        let attachment = live.attach();
        let mut reader = Reader::new(
            engine.log().clone(),
            key,
            engine.config().sse.clone(),
            attachment,
            start,
            busy,
            engine.streams().drain(),
        );
        if listens {
            // Translation mode: the session's change notifications come from a
            // `subscriptions/listen` the layer holds while this reader lives.
            let (tied, reader_gone) = tokio::sync::oneshot::channel::<()>();
            reader = reader.tie(tied);
            Listener {
                inner: self.inner.clone(),
                engine: engine.clone(),
                record,
                parts,
                after_gap: resumed_standalone,
            }
            .spawn(reader_gone);
        }
        let mut response = Response::new(McpBody::stream(reader));
        set_sse_headers(&mut response);
        Ok(response)
    }
}
