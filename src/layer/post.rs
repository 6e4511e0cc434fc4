//! `POST` of one 2025-era message on an established session: read and bound the body,
//! peek at it, route it, and call the inner service in the session.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use serde_json::value::RawValue;
use tower_service::Service;

use super::client_messages::minted_answer;
use super::negotiate::accepts_all;
use super::service::{Answer, Handler};
use crate::SessionRecord as Record;
use crate::engine::Engine;
use crate::era::{Era, VersionHeader, classify};
use crate::event_log::StreamId;
use crate::headers::is_json_content;
use crate::jsonrpc::{self, MessageKind, PeekError, Peeked};
use crate::lifecycle::Session;
use crate::lifecycle::sessions::BusyGuard;
use crate::outbound::RelatedStream;
use crate::rejection::{Rejection, RejectionKind};
use crate::store::BoxError;
use crate::stream::decode::{Decoder, StreamFormat};
use crate::stream::policy::{StreamOf, resumable};
use crate::stream::{LiveStream, McpBody, SseControl};
use crate::telemetry::{Operation, in_span};

const BOTH_TYPES: &[&str] = &["application/json", "text/event-stream"];

/// Route one peeked message by era. A macro, not a method: each handler's future is
/// then awaited in `post`'s own state, not nested one level deeper (every level is one
/// more copy of a large future per request).
macro_rules! route {
    ($handler:expr, $parts:expr, $bytes:expr, $version:expr, $single:expr) => {{
        let (handler, parts, bytes, version, single) = ($handler, $parts, $bytes, $version, $single);
        let has_modern_meta = single.modern.protocol_version.is_some();
        match classify(version, has_modern_meta) {
            Era::Modern => handler.modern(parts, bytes, single).await,
            Era::Legacy if handler.engine.config().modern_only => {
                Ok(handler.reject(handler.legacy_on_modern_only(version, &single)))
            }
            Era::Legacy => match handler.legacy_version(version) {
                Err(rejection) => Ok(handler.reject(rejection.with_id(single.id()))),
                Ok(_) if single.is_initialize() => Box::pin(handler.initialize(parts, bytes, single)).await,
                Ok(_) if handler.engine.config().translate => Box::pin(handler.translated(parts, bytes, single)).await,
                Ok(_) => handler.legacy_message(parts, bytes, single).await,
            },
        }
    }};
}

impl<S, ResBody> Handler<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    pub(super) async fn post<ReqBody>(
        self,
        parts: Parts,
        body: ReqBody,
        version: VersionHeader,
    ) -> Answer<ResBody, S::Error>
    where
        ReqBody: Body + Send + 'static,
        ReqBody::Data: Send,
        ReqBody::Error: Into<BoxError>,
    {
        if !is_json_content(&parts.headers) {
            return Ok(self.refuse(Rejection::new(RejectionKind::UnsupportedMediaType)));
        }
        if !accepts_all(&parts.headers, BOTH_TYPES) {
            return Ok(self.refuse(Rejection::new(RejectionKind::NotAcceptable)));
        }
        let bytes = match Self::read_body(&self.engine, &parts, body).await {
            Ok(bytes) => bytes,
            Err(rejection) => return Ok(self.refuse(rejection)),
        };
        let message = match jsonrpc::peek_body(&bytes) {
            Ok(message) => message,
            Err(PeekError::Parse) => return Ok(self.refuse(Rejection::new(RejectionKind::ParseError))),
            Err(PeekError::InvalidRequest) => return Ok(self.refuse(Rejection::new(RejectionKind::InvalidRequest))),
        };
        let mut single = match message {
            jsonrpc::Body::Single(single) => single,
            jsonrpc::Body::Batch(items) => {
                let operation = Operation::batch(&parts, version, &items);
                let mut answer = in_span!(operation, Box::pin(self.batch(parts, bytes, version, items)));
                operation.finish(&mut answer);
                return answer;
            }
        };
        let mut parts = parts;
        let operation = Operation::message(
            &mut parts,
            version,
            &mut single,
            #[cfg(feature = "tracing")]
            self.engine.config().trace_hook.as_ref(),
        );
        #[cfg(feature = "tracing")]
        if let Some(span) = operation.enabled_span() {
            // Boxed: with a subscriber listening the span costs more than the box, and
            // the future of the common path stays as small as without telemetry.
            let routed = async move { route!(self, parts, bytes, version, single) };
            let mut answer = Box::pin(tracing::Instrument::instrument(routed, span)).await;
            operation.finish(&mut answer);
            return answer;
        }
        let mut answer = route!(self, parts, bytes, version, single);
        operation.finish(&mut answer);
        answer
    }

    pub(super) async fn read_body<ReqBody>(engine: &Engine, parts: &Parts, body: ReqBody) -> Result<Bytes, Rejection>
    where
        ReqBody: Body + Send + 'static,
        ReqBody::Data: Send,
        ReqBody::Error: Into<BoxError>,
    {
        let limit = engine.config().max_body_bytes;
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(Rejection::new(RejectionKind::PayloadTooLarge));
        }
        collect_bounded(body, limit).await
    }

    pub(super) async fn legacy_message(self, parts: Parts, bytes: Bytes, message: Peeked) -> Answer<ResBody, S::Error> {
        if let Some(id) = minted_answer(&message, &bytes) {
            let is_response = matches!(message.kind, MessageKind::Response);
            return self.client_answer(parts, bytes, id, is_response).await;
        }
        let (record, busy) = match Self::resolve(&self.engine, &parts).await {
            Ok(found) => found,
            Err(rejection) => return Ok(self.reject(rejection.with_id(message.id()))),
        };
        if let Err(rejection) = Self::record_client_state(&self.engine, &record, &message, &bytes).await {
            return Ok(self.reject(rejection.with_id(message.id())));
        }
        let is_request = matches!(message.kind, MessageKind::Request { .. });
        let request_id = message.id().filter(|_| is_request);
        self.call_in_session(parts, bytes, record, busy, is_request, request_id)
            .await
    }

    /// Call the inner service for a request of an established session and turn an SSE
    /// answer into a resumable stream. `request_id` is the id of the one request the
    /// answer is for (none for a batch): with it the stream gets a producer lease.
    pub(super) async fn call_in_session(
        mut self,
        parts: Parts,
        bytes: Bytes,
        record: Arc<Record>,
        busy: BusyGuard,
        expects_answer: bool,
        request_id: Option<&RawValue>,
    ) -> Answer<ResBody, S::Error> {
        let request = request_id.map(ToOwned::to_owned);
        let engine = self.engine.clone();
        let mut req = Request::from_parts(parts, Full::new(bytes));
        let call = InSession::prepare(&engine, &mut req, &record, expects_answer);
        let response = self.inner.call(req).await?;
        let (head, body) = response.into_parts();
        let busy = Arc::new(busy);
        let format = StreamFormat::of(&head.headers).filter(|_| head.status.is_success());
        let (Some((stream_id, live)), Some(format)) = (call.stream, format) else {
            return Ok(Response::from_parts(head, McpBody::inner(body, Some(busy))));
        };
        // Boxed: the stream's setup is only paid for by streamed answers, and it keeps
        // the future of every other request small.
        engine.ensure_maintenance();
        let related = call.related.opening();
        let made = Box::pin(resumable(
            engine.stream_setup(),
            record,
            head,
            body,
            busy,
            StreamOf {
                id: stream_id,
                live,
                related,
                request,
                producer: None,
            },
            Decoder::new(format, engine.config().sse.max_event_bytes),
        ))
        .await;
        Ok(made.unwrap_or_else(|rejection| self.reject(rejection)))
    }
}

/// What a request of an established session goes in with, besides itself: the
/// [`Session`] handle and, when it expects an answer, the stream that answer may become.
pub(super) struct InSession {
    /// The answer's stream, should it be one.
    pub(super) stream: Option<(StreamId, Arc<LiveStream>)>,
    /// Where requests to the client made while serving it go.
    pub(super) related: RelatedGuard,
    /// The handle the inner service gets.
    pub(super) session: Session,
}

impl InSession {
    /// Put the session handle (and the stream control) into `req`'s extensions.
    pub(super) fn prepare(
        engine: &Engine,
        req: &mut Request<Full<Bytes>>,
        record: &Arc<Record>,
        expects_answer: bool,
    ) -> Self {
        let stream = expects_answer.then(|| (StreamId::random(), Arc::new(LiveStream::default())));
        let related = stream.as_ref().map(|(id, _)| Arc::new(RelatedStream::new(*id)));
        let session = Session::live(
            record.clone(),
            engine.sessions().clone(),
            engine.outbound().clone(),
            related.clone(),
        );
        req.extensions_mut().insert(session.clone());
        if let Some((stream_id, live)) = &stream {
            req.extensions_mut().insert(SseControl {
                live: live.clone(),
                stream: *stream_id,
            });
        }
        // Whatever becomes of the call, requests to the client waiting to learn where
        // to go are told.
        Self {
            stream,
            related: RelatedGuard(related),
            session,
        }
    }
}

/// Tells a request's [`RelatedStream`] that its answer is no stream unless
/// [`opening`](Self::opening) hands it on first: an error, a JSON answer, and a dropped
/// call all mean "elsewhere".
pub(super) struct RelatedGuard(Option<Arc<RelatedStream>>);

impl RelatedGuard {
    pub(super) fn opening(mut self) -> Option<Arc<RelatedStream>> {
        let related = self.0.take();
        if let Some(related) = &related {
            related.opening();
        }
        related
    }
}

impl Drop for RelatedGuard {
    fn drop(&mut self) {
        if let Some(related) = self.0.take() {
            related.elsewhere();
        }
    }
}

/// Read a request body of at most `limit` bytes. A body that arrives in one piece (the
/// usual case) is handed on as that piece, without copying it.
async fn collect_bounded<B>(body: B, limit: usize) -> Result<Bytes, Rejection>
where
    B: Body,
{
    let mut body = std::pin::pin!(body);
    let mut whole: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        // The client broke off or sent a malformed body: nothing to parse.
        let frame = frame.map_err(|_| Rejection::new(RejectionKind::ParseError))?;
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let n = data.remaining();
        if n == 0 {
            continue;
        }
        len = len.saturating_add(n);
        if len > limit {
            return Err(Rejection::new(RejectionKind::PayloadTooLarge));
        }
        if whole.is_none() && joined.is_empty() {
            whole = Some(data.copy_to_bytes(n));
        } else {
            if let Some(first) = whole.take() {
                joined.reserve(len);
                joined.extend_from_slice(&first);
            }
            joined.put(data);
        }
    }
    Ok(whole.unwrap_or_else(|| joined.freeze()))
}
