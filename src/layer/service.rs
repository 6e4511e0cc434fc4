//! [`McpSession`]: the service. Per request: origin/host guard → era classification →
//! session resolution → inner call → SSE rewrite.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tokio::time::timeout;
use tower_service::Service;

use super::future::ResponseFuture;
use super::negotiate::{accepts_all, is_event_stream, is_json_content};
use super::{Shared, modern};
use crate::body::McpBody;
use crate::era::{Era, VersionHeader, classify};
use crate::event_log::{ReadOutcome, StreamId, StreamKey};
use crate::headers::{LAST_EVENT_ID, MCP_SESSION_ID, X_ACCEL_BUFFERING};
use crate::jsonrpc::{self, InitializeOutcome, MessageKind, PeekError, Peeked};
use crate::rejection::{Rejection, RejectionKind};
use crate::session::{Principal, Session, SessionId, SessionRecord};
use crate::sse::EventId;
use crate::sse::SseParser;
use crate::engine::sessions::{BusyGuard, ReserveError};
use crate::store::BoxError;
use crate::stream::decode::{Decoder, StreamFormat};
use crate::stream::reader::{Reader, Start};
use crate::stream::{LiveStream, SseControl, pump::pump, standalone_stream};
use crate::{ProtocolVersion, SessionRecord as Record};

const BOTH_TYPES: &[&str] = &["application/json", "text/event-stream"];
const SSE_TYPE: &[&str] = &["text/event-stream"];

/// The service made by [`McpSessionLayer`](crate::McpSessionLayer).
///
/// The inner service receives `http::Request<Full<Bytes>>`: the layer reads (and
/// bounds) each POST body to classify it, then hands the same bytes on.
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tower::service_fn;
/// use tower_mcp_session::{McpSession, McpSessionLayer};
/// use tower_layer::Layer;
///
/// let inner = service_fn(|_req: http::Request<Full<Bytes>>| async {
///     Ok::<_, Infallible>(http::Response::new(Full::<Bytes>::default()))
/// });
/// let service: McpSession<_> = McpSessionLayer::new().layer(inner);
/// let _inner = service.get_ref();
/// ```
pub struct McpSession<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> McpSession<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the layer's service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for McpSession<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for McpSession<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpSession")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for McpSession<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    type Response = Response<McpBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The ready service goes into the future; a clone stays for the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        #[cfg(feature = "tracing")]
        // `session` is filled in once the request's session is known.
        let span = tracing::debug_span!("mcp", method = %req.method(), session = tracing::field::Empty);
        let future = async move { Handler { shared, inner }.serve(req).await };
        #[cfg(feature = "tracing")]
        let future = tracing::Instrument::instrument(future, span);
        ResponseFuture::new(Box::pin(future))
    }
}

type Answer<B, E> = Result<Response<McpBody<B>>, E>;

struct Handler<S> {
    shared: Arc<Shared>,
    inner: S,
}

impl<S, ResBody> Handler<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    async fn serve<ReqBody>(self, req: Request<ReqBody>) -> Answer<ResBody, S::Error>
    where
        ReqBody: Body + Send + 'static,
        ReqBody::Data: Send,
        ReqBody::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        let authority = parts.uri.authority().map(|a| a.as_str());
        if let Err(kind) = self.shared.guard.check(&parts.headers, authority) {
            return Ok(self.reject(Rejection::new(kind)));
        }
        let version = VersionHeader::read(&parts.headers);
        let modern_header = matches!(version, VersionHeader::Present(v) if v.is_modern());
        match parts.method {
            Method::POST => self.post(parts, body, version).await,
            Method::GET | Method::DELETE if self.shared.modern_only => Ok(self.reject(self.method_not_allowed())),
            // 2026-07-28 has no GET stream and no DELETE: the inner service answers.
            Method::GET | Method::DELETE if modern_header => self.pass_through(parts, Bytes::new()).await,
            // Rare paths are boxed so the common one's future stays small: every request
            // pays for moving the largest path's state into the response future's box.
            Method::GET => Box::pin(self.get(parts, version)).await,
            Method::DELETE => Box::pin(self.delete(parts, version)).await,
            _ => Ok(self.reject(self.method_not_allowed())),
        }
    }

    fn method_not_allowed(&self) -> Rejection {
        let allow = match (self.shared.modern_only, self.shared.client_termination) {
            (true, _) => "POST",
            (false, true) => "GET, POST, DELETE",
            (false, false) => "GET, POST",
        };
        Rejection::new(RejectionKind::MethodNotAllowed).header(ALLOW, HeaderValue::from_static(allow))
    }

    fn reject(&self, rejection: Rejection) -> Response<McpBody<ResBody>> {
        self.shared.counters.rejected(rejection.kind);
        #[cfg(feature = "tracing")]
        tracing::debug!(
            reason = rejection.kind.reason(),
            status = rejection.kind.status().as_u16(),
            "request rejected"
        );
        rejection.into_response().map(McpBody::full)
    }

    async fn post<ReqBody>(self, parts: Parts, body: ReqBody, version: VersionHeader) -> Answer<ResBody, S::Error>
    where
        ReqBody: Body + Send + 'static,
        ReqBody::Data: Send,
        ReqBody::Error: Into<BoxError>,
    {
        if !is_json_content(&parts.headers) {
            return Ok(self.reject(Rejection::new(RejectionKind::UnsupportedMediaType)));
        }
        if !accepts_all(&parts.headers, BOTH_TYPES) {
            return Ok(self.reject(Rejection::new(RejectionKind::NotAcceptable)));
        }
        let bytes = match Self::read_body(&self.shared, &parts, body).await {
            Ok(bytes) => bytes,
            Err(rejection) => return Ok(self.reject(rejection)),
        };
        let message = match jsonrpc::peek_body(&bytes) {
            Ok(message) => message,
            Err(PeekError::Parse) => return Ok(self.reject(Rejection::new(RejectionKind::ParseError))),
            Err(PeekError::InvalidRequest) => return Ok(self.reject(Rejection::new(RejectionKind::InvalidRequest))),
        };
        let single = match message {
            jsonrpc::Body::Single(single) => single,
            jsonrpc::Body::Batch(items) => return Box::pin(self.batch(parts, bytes, version, items)).await,
        };
        let has_modern_meta = single.modern.protocol_version.is_some();
        match classify(version, has_modern_meta) {
            Era::Modern => self.modern(parts, bytes, single).await,
            Era::Legacy if self.shared.modern_only => Ok(self.reject(self.legacy_on_modern_only(version, &single))),
            Era::Legacy => {
                if let Err(rejection) = self.legacy_version(version) {
                    return Ok(self.reject(rejection.with_id(single.id())));
                }
                if single.is_initialize() {
                    Box::pin(self.initialize(parts, bytes, single)).await
                } else {
                    self.legacy_message(parts, bytes, single).await
                }
            }
        }
    }

    async fn read_body<ReqBody>(shared: &Shared, parts: &Parts, body: ReqBody) -> Result<Bytes, Rejection>
    where
        ReqBody: Body + Send + 'static,
        ReqBody::Data: Send,
        ReqBody::Error: Into<BoxError>,
    {
        let limit = shared.max_body_bytes;
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

    /// A legacy request's `MCP-Protocol-Version`: absent is fine (the negotiated version
    /// applies), anything else must be a supported 2025 revision.
    fn legacy_version(&self, version: VersionHeader) -> Result<Option<ProtocolVersion>, Rejection> {
        match version {
            VersionHeader::Absent => Ok(None),
            VersionHeader::Present(v) if self.shared.legacy_versions.contains(&v) => Ok(Some(v)),
            _ => Err(Rejection::new(RejectionKind::UnsupportedProtocolVersion)
                .data("supported", self.shared.supported_versions().into())),
        }
    }

    fn legacy_on_modern_only(&self, version: VersionHeader, message: &Peeked) -> Rejection {
        let requested = match (version, &message.initialize) {
            (VersionHeader::Present(v), _) => Some(v.to_string()),
            (_, Some(init)) => init.protocol_version.clone(),
            _ => None,
        };
        match requested {
            Some(requested) => Rejection::new(RejectionKind::UnsupportedModernVersion)
                .with_id(message.id())
                .data("supported", self.shared.supported_versions().into())
                .data("requested", requested.into()),
            // No version anywhere: the required header is missing (2026-07-28 rules).
            None => Rejection::new(RejectionKind::HeaderMismatch).with_id(message.id()),
        }
    }

    async fn modern(self, parts: Parts, bytes: Bytes, message: Peeked) -> Answer<ResBody, S::Error> {
        if self.shared.strict_modern_headers {
            let shared = self.shared.clone();
            if let Err(rejection) = modern::validate(&parts.headers, &message, &shared.modern_versions, || {
                shared.supported_versions()
            }) {
                return Ok(self.reject(rejection));
            }
        }
        self.pass_through(parts, bytes).await
    }

    /// Hand a request to the inner service untouched and its answer back untouched,
    /// except that no session id ever leaves on a 2026-07-28 answer.
    async fn pass_through(mut self, parts: Parts, bytes: Bytes) -> Answer<ResBody, S::Error> {
        self.shared.counters.modern();
        let response = self.inner.call(Request::from_parts(parts, Full::new(bytes))).await?;
        let (mut head, body) = response.into_parts();
        head.headers.remove(MCP_SESSION_ID);
        match StreamFormat::of(&head.headers).filter(|_| head.status.is_success()) {
            Some(StreamFormat::Sse) => {
                let headers = &mut head.headers;
                headers
                    .entry(X_ACCEL_BUFFERING)
                    .or_insert(HeaderValue::from_static("no"));
                headers
                    .entry(CACHE_CONTROL)
                    .or_insert(HeaderValue::from_static("no-cache"));
                Ok(Response::from_parts(head, McpBody::inner(body, None)))
            }
            Some(StreamFormat::Ndjson) => {
                // Framed as it arrives; dropping the answer still drops the inner body.
                let decoder = Decoder::new(StreamFormat::Ndjson, self.shared.sse.max_event_bytes);
                set_sse_headers(&mut head);
                Ok(Response::from_parts(head, McpBody::framed(body, decoder, None)))
            }
            None => Ok(Response::from_parts(head, McpBody::inner(body, None))),
        }
    }

    async fn initialize(mut self, parts: Parts, bytes: Bytes, message: Peeked) -> Answer<ResBody, S::Error> {
        let shared = self.shared.clone();
        let request_id = message.id().map(ToOwned::to_owned);
        if let Some(limit) = &shared.creation_limit
            && let Err(limited) = limit.check(&parts)
        {
            // Checked before anything is reserved: a refusal leaves no state behind.
            let mut rejection = Rejection::new(RejectionKind::RateLimited).with_id(message.id());
            for (name, value) in limited.headers() {
                rejection = rejection.header(name, value);
            }
            return Ok(self.reject(rejection));
        }
        let slot = match shared.sessions.reserve().await {
            Ok(slot) => slot,
            Err(ReserveError::AtCapacity { retry_after }) => {
                return Ok(self.reject(
                    Rejection::new(RejectionKind::AtCapacity)
                        .with_id(message.id())
                        .retry_after(retry_after),
                ));
            }
            Err(ReserveError::Unavailable) => return Ok(self.reject(store_unavailable().with_id(message.id()))),
        };
        let init = message.initialize.unwrap_or_default();
        let id = shared.ids.make_session_id();
        #[cfg(feature = "tracing")]
        tracing::Span::current().record("session", id.as_str());
        let principal = parts.extensions.get::<Principal>().cloned();
        let requested = init
            .protocol_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(ProtocolVersion::V2025_03_26);
        let pending = SessionRecord::new(id.clone(), requested)
            .with_client(init.client_info, init.capabilities)
            .with_principal(principal);
        let mut req = Request::from_parts(parts, Full::new(bytes));
        // The inner service may want the id it is about to hand out; the session
        // becomes real only if the answer is a successful InitializeResult.
        let handle = Session::pending(Arc::new(pending.clone()), shared.sessions.clone());
        req.extensions_mut().insert(handle.clone());
        let response = match self.inner.call(req).await {
            Ok(response) => response,
            Err(error) => {
                shared.sessions.cancel(slot).await;
                return Err(error);
            }
        };
        let (mut head, body) = response.into_parts();
        let request_id = request_id.expect("initialize is a request, so it has an id");
        let (outcome, body) = if !head.status.is_success() {
            (None, McpBody::inner(body, None))
        } else if is_json_content(&head.headers) {
            match Limited::new(body, shared.max_initialize_response_bytes).collect().await {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    (jsonrpc::initialize_outcome(&bytes, &request_id), McpBody::full(bytes))
                }
                Err(_) => {
                    shared.sessions.cancel(slot).await;
                    return Ok(
                        self.reject(Rejection::new(RejectionKind::InvalidUpstreamResponse).with_id(Some(&request_id)))
                    );
                }
            }
        } else if is_event_stream(&head.headers) {
            scan_initialize_stream(
                body,
                &request_id,
                shared.max_initialize_response_bytes,
                shared.sse.max_event_bytes,
            )
            .await
        } else {
            (None, McpBody::inner(body, None))
        };
        let Some(InitializeOutcome::Succeeded(negotiated)) = outcome else {
            // A failed initialize leaves nothing behind: its place is given back.
            shared.sessions.cancel(slot).await;
            return Ok(Response::from_parts(head, body));
        };
        let record = SessionRecord {
            protocol_version: negotiated,
            ..pending
        };
        // Attributes the inner service set while answering are stored with the session.
        let attributes = handle.take_pending();
        match shared.sessions.create(&record, &attributes, slot).await {
            Ok(()) => {
                shared.ensure_maintenance();
                shared.counters.session_created();
                if let Some(hook) = &shared.on_created {
                    hook(&record);
                }
                #[cfg(feature = "tracing")]
                tracing::debug!(session = %record.id(), version = %negotiated, "session created");
            }
            _ => return Ok(self.reject(store_unavailable().with_id(Some(&request_id)))),
        }
        head.headers.insert(
            MCP_SESSION_ID,
            HeaderValue::from_str(id.as_str()).expect("session ids are visible ASCII"),
        );
        head.headers.remove(CONTENT_LENGTH);
        Ok(Response::from_parts(head, body))
    }

    /// Find the session a legacy request names and mark it busy.
    async fn resolve(shared: &Shared, parts: &Parts) -> Result<(Arc<Record>, BusyGuard), Rejection> {
        let mut values = parts.headers.get_all(MCP_SESSION_ID).iter();
        let Some(value) = values.next() else {
            return Err(Rejection::new(RejectionKind::MissingSessionId));
        };
        // Checked before any lookup, so a malformed id costs the store nothing.
        let id = match (values.next(), value.to_str().ok().and_then(SessionId::parse)) {
            (None, Some(id)) => id,
            _ => return Err(Rejection::new(RejectionKind::MalformedSessionId)),
        };
        let busy = match shared.sessions.acquire(&id).await {
            Ok(Some(busy)) => busy,
            Ok(None) => return Err(Rejection::new(RejectionKind::SessionNotFound)),
            Err(_) => return Err(store_unavailable()),
        };
        let record = busy.record().clone();
        #[cfg(feature = "tracing")]
        tracing::Span::current().record("session", id.as_str());
        // Another principal's session looks exactly like an unknown one.
        if shared.bind_principal && record.principal() != parts.extensions.get::<Principal>() {
            return Err(Rejection::new(RejectionKind::SessionNotFound));
        }
        Ok((record, busy))
    }

    async fn legacy_message(self, parts: Parts, bytes: Bytes, message: Peeked) -> Answer<ResBody, S::Error> {
        let (record, busy) = match Self::resolve(&self.shared, &parts).await {
            Ok(found) => found,
            Err(rejection) => return Ok(self.reject(rejection.with_id(message.id()))),
        };
        let is_request = matches!(message.kind, MessageKind::Request { .. });
        self.call_in_session(parts, bytes, record, busy, is_request).await
    }

    async fn batch(
        self,
        parts: Parts,
        bytes: Bytes,
        version: VersionHeader,
        items: Vec<Peeked>,
    ) -> Answer<ResBody, S::Error> {
        if matches!(version, VersionHeader::Present(v) if v.is_modern()) {
            if self.shared.strict_modern_headers {
                return Ok(self.reject(Rejection::new(RejectionKind::InvalidRequest)));
            }
            return self.pass_through(parts, bytes).await;
        }
        if self.shared.modern_only {
            return Ok(self.reject(Rejection::new(RejectionKind::HeaderMismatch)));
        }
        if items.iter().any(Peeked::is_initialize)
            || !matches!(
                version,
                VersionHeader::Absent | VersionHeader::Present(ProtocolVersion::V2025_03_26)
            )
        {
            return Ok(self.reject(Rejection::new(RejectionKind::BatchNotAllowed)));
        }
        let (record, busy) = match Self::resolve(&self.shared, &parts).await {
            Ok(found) => found,
            Err(rejection) => return Ok(self.reject(rejection)),
        };
        if !record.protocol_version().allows_batches() {
            return Ok(self.reject(Rejection::new(RejectionKind::BatchNotAllowed)));
        }
        let has_request = items.iter().any(|m| matches!(m.kind, MessageKind::Request { .. }));
        self.call_in_session(parts, bytes, record, busy, has_request).await
    }

    /// Call the inner service for a request of an established session and turn an SSE
    /// answer into a resumable stream.
    async fn call_in_session(
        mut self,
        parts: Parts,
        bytes: Bytes,
        record: Arc<Record>,
        busy: BusyGuard,
        expects_answer: bool,
    ) -> Answer<ResBody, S::Error> {
        let shared = self.shared.clone();
        let mut req = Request::from_parts(parts, Full::new(bytes));
        req.extensions_mut()
            .insert(Session::live(record.clone(), shared.sessions.clone()));
        let stream = expects_answer.then(|| (StreamId::random(), Arc::new(LiveStream::default())));
        if let Some((stream_id, live)) = &stream {
            req.extensions_mut().insert(SseControl {
                live: live.clone(),
                stream: *stream_id,
            });
        }
        let response = self.inner.call(req).await?;
        let (head, body) = response.into_parts();
        let busy = Arc::new(busy);
        let format = StreamFormat::of(&head.headers).filter(|_| head.status.is_success());
        let (Some((stream_id, live)), Some(format)) = (stream, format) else {
            return Ok(Response::from_parts(head, McpBody::inner(body, Some(busy))));
        };
        // Boxed: the stream's setup is only paid for by streamed answers, and it keeps
        // the future of every other request small.
        Ok(Box::pin(resumable(shared, record, head, body, busy, (stream_id, live), format)).await)
    }

    async fn get(self, parts: Parts, version: VersionHeader) -> Answer<ResBody, S::Error> {
        if let Err(rejection) = self.legacy_version(version) {
            return Ok(self.reject(rejection));
        }
        if !accepts_all(&parts.headers, SSE_TYPE) {
            return Ok(self.reject(Rejection::new(RejectionKind::NotAcceptable)));
        }
        let (record, busy) = match Self::resolve(&self.shared, &parts).await {
            Ok(found) => found,
            Err(rejection) => return Ok(self.reject(rejection)),
        };
        let shared = self.shared.clone();
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
                match timeout(shared.store_timeout, shared.log.read_after(&key, event_id.seq(), 1)).await {
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
                    Ok(Err(_)) | Err(_) => return Ok(self.reject(store_unavailable())),
                }
            }
        };
        let (key, cursor, priming) = match resumed {
            Some((key, cursor)) => {
                shared.counters.resumed();
                (key, cursor, false)
            }
            None => match fresh_cursor(&shared, &standalone).await {
                Ok(cursor) => (standalone.clone(), cursor, primes),
                Err(rejection) => return Ok(self.reject(rejection)),
            },
        };
        shared.ensure_maintenance();
        // The standalone stream is the one several instances may serve at once: claim
        // it in the shared log so only the newest GET sends.
        let claim = if key == standalone {
            match timeout(shared.store_timeout, shared.log.claim_reader(&key)).await {
                Ok(Ok(claim)) => Some(claim),
                _ => return Ok(self.reject(store_unavailable())),
            }
        } else {
            None
        };
        let live = shared.streams.live(&key);
        let start = Start {
            cursor,
            close_epoch: live.close_epoch(),
            priming,
            polling: primes,
            claim,
        };
        let attachment = live.attach();
        let reader = Reader::new(shared.log.clone(), key, shared.sse.clone(), attachment, start, busy);
        let mut response = Response::new(McpBody::stream(reader));
        set_sse_headers(&mut response);
        Ok(response)
    }

    async fn delete(self, parts: Parts, version: VersionHeader) -> Answer<ResBody, S::Error> {
        if !self.shared.client_termination {
            return Ok(self.reject(self.method_not_allowed()));
        }
        if let Err(rejection) = self.legacy_version(version) {
            return Ok(self.reject(rejection));
        }
        let (record, busy) = match Self::resolve(&self.shared, &parts).await {
            Ok(found) => found,
            Err(rejection) => return Ok(self.reject(rejection)),
        };
        drop(busy);
        let removed = self.shared.sessions.end(record.id(), crate::CloseReason::Deleted).await;
        match removed {
            Ok(true) => {
                let mut response = Response::new(McpBody::empty());
                *response.status_mut() = StatusCode::OK;
                Ok(response)
            }
            // Someone else ended it between the lookup and now.
            Ok(false) => Ok(self.reject(Rejection::new(RejectionKind::SessionNotFound))),
            Err(_) => Ok(self.reject(store_unavailable())),
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

/// Turn a streamed answer of an established session into a resumable SSE stream: a pump
/// drives the inner body into the event log, and the response reads it back from the start.
async fn resumable<B>(
    shared: Arc<Shared>,
    record: Arc<Record>,
    mut head: http::response::Parts,
    body: B,
    busy: Arc<BusyGuard>,
    (stream_id, live): (StreamId, Arc<LiveStream>),
    format: StreamFormat,
) -> Response<McpBody<B>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    let decoder = Decoder::new(format, shared.sse.max_event_bytes);
    let key = StreamKey::new(record.id().clone(), stream_id);
    if !matches!(timeout(shared.store_timeout, shared.log.open(&key)).await, Ok(Ok(()))) {
        // Without a log the stream cannot be resumable; still deliver it live.
        #[cfg(feature = "tracing")]
        tracing::warn!(session = %record.id(), "event log unavailable; stream is not resumable");
        if format == StreamFormat::Ndjson {
            set_sse_headers(&mut head);
            return Response::from_parts(head, McpBody::framed(body, decoder, Some(busy)));
        }
        return Response::from_parts(head, McpBody::inner(body, Some(busy)));
    }
    shared.ensure_maintenance();
    shared.streams.adopt(&key, &live);
    shared.streams.spawn_pump(
        record.id(),
        pump(body, decoder, key.clone(), shared.log.clone(), busy.clone()),
    );
    if live.close_epoch() == 0 {
        // Let a quick answer catch up with the headers: one write instead of several,
        // so latency does not hinge on TCP_NODELAY.
        let _ = timeout(shared.sse.first_event_wait, shared.log.wait_after(&key, 0)).await;
    }
    let attachment = live.attach();
    let primes = record.protocol_version().supports_priming();
    let start = Start {
        cursor: 0,
        close_epoch: 0,
        priming: primes,
        polling: primes,
        claim: None,
    };
    let reader = Reader::new(shared.log.clone(), key, shared.sse.clone(), attachment, start, busy);
    set_sse_headers(&mut head);
    Response::from_parts(head, McpBody::stream(reader))
}

/// Where a `GET` without `Last-Event-ID` starts on the session's standalone stream:
/// after the last event this instance delivered, so messages pushed while nobody
/// listened are delivered once and nothing is repeated. If those were already dropped
/// by retention, the client gets what is still held; a fresh connection promises no
/// continuity.
async fn fresh_cursor(shared: &Shared, key: &StreamKey) -> Result<u64, Rejection> {
    let wait = shared.store_timeout;
    if !matches!(timeout(wait, shared.log.open(key)).await, Ok(Ok(()))) {
        return Err(store_unavailable());
    }
    // What this instance delivered, or what any instance recorded in a shared log.
    let local = shared.streams.live(key).delivered();
    let shared_mark = timeout(wait, shared.log.delivered(key)).await;
    let delivered = match shared_mark {
        Ok(Ok(seq)) => local.max(seq),
        _ => return Err(store_unavailable()),
    };
    match timeout(wait, shared.log.read_after(key, delivered, 0)).await {
        Ok(Ok(ReadOutcome::Events { .. })) => Ok(delivered),
        // The stream was started again after expiring; its numbering restarted.
        Ok(Ok(ReadOutcome::Evicted { last_seq, .. })) if delivered > last_seq => Ok(last_seq),
        Ok(Ok(ReadOutcome::Evicted { first_retained, .. })) => Ok(first_retained.saturating_sub(1)),
        _ => Err(store_unavailable()),
    }
}

fn store_unavailable() -> Rejection {
    Rejection::new(RejectionKind::StoreUnavailable).retry_after(std::time::Duration::from_secs(1))
}

trait SseHead {
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

fn set_sse_headers(head: &mut impl SseHead) {
    let headers = head.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    headers.remove(CONTENT_LENGTH);
}

/// Read an SSE answer to `initialize` until the response to it shows up (or the bound
/// is reached), and give back what was read followed by the rest of the body.
async fn scan_initialize_stream<B>(
    body: B,
    request_id: &serde_json::value::RawValue,
    max_bytes: usize,
    max_event_bytes: usize,
) -> (Option<InitializeOutcome>, McpBody<B>)
where
    B: Body<Data = Bytes> + Send + 'static,
{
    let mut body = Box::pin(body);
    let mut seen = BytesMut::new();
    let mut parser = SseParser::new(max_event_bytes.min(max_bytes));
    let mut outcome = None;
    'scan: while seen.len() <= max_bytes {
        let Some(Ok(frame)) = body.frame().await else { break };
        let Ok(data) = frame.into_data() else { continue };
        parser.push(&data);
        seen.extend_from_slice(&data);
        while let Ok(Some(event)) = parser.next_event() {
            if let Some(found) = jsonrpc::initialize_outcome(&event.data, request_id) {
                outcome = Some(found);
                break 'scan;
            }
        }
    }
    (outcome, McpBody::prefixed(seen.freeze(), body))
}
