//! [`McpClientBody`]: the response body of [`McpClient`](super::McpClient), with SSE
//! streams that resume by themselves.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde_json::Value;
use tokio::time::Sleep;

use super::error::{BoxError, Error};
use super::session::{SessionEvent, StreamGuard};
use tower_mcp_session::headers::LAST_EVENT_ID;
// The core keeps its SSE reader out of its public API; the client is released with it.
use crate::BoxFuture;
use tower_mcp_session::sse::{SseError, SseEvent, SseParser, encode_event};

/// Sends one request through the client's inner service (type-erased so bodies need not
/// name the service).
pub(crate) type Connector<B> =
    Arc<dyn Fn(Request<Bytes>) -> BoxFuture<'static, Result<Response<B>, Error>> + Send + Sync>;

/// One message of a response: an SSE event, or the whole body of a JSON response.
///
/// ```
/// use bytes::Bytes;
/// use tower_mcp_session_client::ClientEvent;
///
/// let e = ClientEvent::new(Some("7".into()), Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#));
/// assert_eq!(e.json().unwrap()["id"], 1);
/// assert!(e.is_response_to(&serde_json::json!(1)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientEvent {
    /// The SSE event id, if the server gave one.
    pub id: Option<String>,
    /// The SSE event name, if any.
    pub event: Option<String>,
    /// The payload: one JSON-RPC message (or, for 2025-03-26 batches, an array).
    pub data: Bytes,
}

impl ClientEvent {
    /// An unnamed event.
    pub fn new(id: Option<String>, data: Bytes) -> Self {
        Self { id, event: None, data }
    }

    /// The payload as JSON.
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.data)
    }

    /// Whether the payload is the JSON-RPC response (result or error) to request `id`.
    pub fn is_response_to(&self, id: &Value) -> bool {
        self.json().is_ok_and(|v| response_in(&v, id).is_some())
    }
}

/// The response to request `id` inside `message` (an object or a batch array).
pub(crate) fn response_in<'a>(message: &'a Value, id: &Value) -> Option<&'a Value> {
    let is_answer = |m: &Value| {
        m.get("method").is_none() && m.get("id") == Some(id) && (m.get("result").is_some() || m.get("error").is_some())
    };
    match message {
        Value::Array(items) => items.iter().find(|m| is_answer(m)),
        m if is_answer(m) => Some(m),
        _ => None,
    }
}

pin_project! {
    /// Response body of [`McpClient`](super::McpClient).
    ///
    /// JSON answers pass through untouched. SSE answers (`text/event-stream`) are read
    /// event by event and re-framed, so the caller sees one clean stream even when the
    /// connection underneath broke: when it breaks before the JSON-RPC response to the
    /// request arrived, the body reconnects with `GET` + `Last-Event-ID`, waits what the
    /// server's `retry` field asks (or a jittered backoff, whichever is longer, for a
    /// bounded number of attempts in a row without progress) and yields every event
    /// exactly once: events whose id it already delivered are dropped. Priming events
    /// (an id with empty data) carry no message and are not yielded.
    ///
    /// Standalone `GET` streams resume the same way until the session is closed.
    /// [`McpClient::close`](super::McpClient::close) ends every stream of the session.
    ///
    /// Read it as any [`Body`], or message by message with
    /// [`next_event`](Self::next_event):
    ///
    /// ```no_run
    /// # use tower_mcp_session_client::McpClientBody;
    /// # async fn read(mut body: McpClientBody<http_body_util::Full<bytes::Bytes>>) {
    /// while let Some(event) = body.next_event().await {
    ///     let event = event.expect("stream failed for good");
    ///     println!("{}", String::from_utf8_lossy(&event.data));
    /// }
    /// # }
    /// ```
    pub struct McpClientBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B, buf: BytesMut, limit: usize, done: bool },
        Full { data: Option<Bytes> },
        Sse { stream: Box<SseStream<B>> },
    }
}

impl<B> McpClientBody<B> {
    pub(crate) fn inner(body: B, limit: usize) -> Self {
        Self {
            kind: Kind::Inner {
                body,
                buf: BytesMut::new(),
                limit,
                done: false,
            },
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    pub(crate) fn sse(stream: SseStream<B>) -> Self {
        Self {
            kind: Kind::Sse {
                stream: Box::new(stream),
            },
        }
    }

    /// Whether this body is an SSE stream (and so resumes by itself).
    ///
    /// ```
    /// # use tower_mcp_session_client::McpClientBody;
    /// let body = McpClientBody::<http_body_util::Empty<bytes::Bytes>>::empty();
    /// assert!(!body.is_sse());
    /// ```
    pub fn is_sse(&self) -> bool {
        matches!(self.kind, Kind::Sse { .. })
    }

    /// The last SSE event id received: where the stream would resume from.
    ///
    /// ```
    /// # use tower_mcp_session_client::McpClientBody;
    /// let body = McpClientBody::<http_body_util::Empty<bytes::Bytes>>::empty();
    /// assert_eq!(body.last_event_id(), None);
    /// ```
    pub fn last_event_id(&self) -> Option<&str> {
        match &self.kind {
            Kind::Sse { stream } => Some(stream.parser.last_event_id()).filter(|id| !id.is_empty()),
            _ => None,
        }
    }

    /// An empty body.
    ///
    /// ```
    /// # use http_body::Body;
    /// # use tower_mcp_session_client::McpClientBody;
    /// assert!(McpClientBody::<http_body_util::Empty<bytes::Bytes>>::empty().is_end_stream());
    /// ```
    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    pub(crate) fn stash(&mut self, events: Vec<ClientEvent>) {
        match &mut self.kind {
            Kind::Sse { stream } => {
                for e in events.into_iter().rev() {
                    stream.stash.push_front(e);
                }
            }
            Kind::Full { data } => {
                // Only a JSON body becomes Full, and it is one event.
                if let Some(e) = events.into_iter().next() {
                    *data = Some(e.data);
                }
            }
            Kind::Inner { .. } => {}
        }
    }
}

impl<B> McpClientBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    /// Poll for the next message: an SSE event, or the whole of a JSON body.
    pub fn poll_event(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<ClientEvent, Error>>> {
        match self.project().kind.project() {
            KindProj::Sse { stream } => stream.poll_event(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(ClientEvent::new(None, d)))),
            KindProj::Inner {
                mut body,
                buf,
                limit,
                done,
            } => loop {
                if *done {
                    return Poll::Ready(None);
                }
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            if buf.len() + data.len() > *limit {
                                *done = true;
                                return Poll::Ready(Some(Err(Error::Protocol(format!(
                                    "response body larger than {limit} bytes"
                                )))));
                            }
                            buf.put(data);
                        }
                    }
                    Some(Err(e)) => {
                        *done = true;
                        return Poll::Ready(Some(Err(Error::transport(e))));
                    }
                    None => {
                        *done = true;
                        let data = std::mem::take(buf).freeze();
                        return Poll::Ready((!data.is_empty()).then(|| Ok(ClientEvent::new(None, data))));
                    }
                }
            },
        }
    }

    /// The next message: an SSE event (resuming the stream when it breaks), or the
    /// whole of a JSON body. `None` when the body has ended.
    ///
    /// ```no_run
    /// # use tower_mcp_session_client::McpClientBody;
    /// # async fn read(mut body: McpClientBody<http_body_util::Full<bytes::Bytes>>) -> Result<(), tower_mcp_session_client::Error> {
    /// if let Some(event) = body.next_event().await {
    ///     let message = event?.json().expect("JSON");
    ///     println!("{message}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_event(&mut self) -> Option<Result<ClientEvent, Error>>
    where
        B: Unpin,
    {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_event(cx)).await
    }

    /// Read until the JSON-RPC response to request `id` and return that message (with
    /// its `result` or `error`); other messages before it are dropped.
    ///
    /// ```no_run
    /// # use tower_mcp_session_client::McpClientBody;
    /// # async fn read(body: McpClientBody<http_body_util::Full<bytes::Bytes>>) -> Result<(), tower_mcp_session_client::Error> {
    /// let message = body.into_response(&serde_json::json!(1)).await?;
    /// println!("{}", message["result"]);
    /// # Ok(()) }
    /// ```
    pub async fn into_response(self, id: &Value) -> Result<Value, Error> {
        let mut body = Box::pin(self);
        while let Some(event) = std::future::poll_fn(|cx| body.as_mut().poll_event(cx)).await {
            let event = event?;
            let Ok(message) = event.json() else { continue };
            if let Some(answer) = response_in(&message, id) {
                return Ok(answer.clone());
            }
        }
        Err(Error::Protocol(
            "the response ended without an answer to the request".into(),
        ))
    }
}

impl<B> Body for McpClientBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body, .. } => body.poll_frame(cx).map_err(Error::transport),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Sse { stream } => match ready!(stream.poll_event(cx)) {
                Some(Ok(event)) => Poll::Ready(Some(Ok(Frame::data(frame(&event))))),
                Some(Err(e)) => Poll::Ready(Some(Err(e))),
                None => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body, .. } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
            Kind::Sse { stream } => matches!(stream.phase, Phase::Done) && stream.stash.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body, .. } => body.size_hint(),
            Kind::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Sse { .. } => SizeHint::default(),
        }
    }
}

impl<B> fmt::Debug for McpClientBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "Inner",
            Kind::Full { .. } => "Full",
            Kind::Sse { .. } => "Sse",
        };
        f.debug_struct("McpClientBody").field("kind", &kind).finish()
    }
}

/// Write one event back as SSE. Ids and names come from the parser, which never lets a
/// line break into them; the data lines are written by the crate's encoder.
fn frame(event: &ClientEvent) -> Bytes {
    let mut out = BytesMut::with_capacity(event.data.len() + 64);
    if let Some(id) = &event.id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    if let Some(name) = &event.event {
        out.put_slice(b"event: ");
        out.put_slice(name.as_bytes());
        out.put_u8(b'\n');
    }
    encode_event(&mut out, None, &event.data);
    out.freeze()
}

/// How a stream body reconnects: the request it sends and through what.
pub(crate) struct Resume<B> {
    pub(crate) connector: Connector<B>,
    pub(crate) uri: Uri,
    /// Headers of the resuming `GET`: the original request's (credentials included) and
    /// the session's, with `Accept: text/event-stream`.
    pub(crate) headers: HeaderMap,
}

enum Phase<B> {
    Reading,
    Waiting(Pin<Box<Sleep>>),
    Connecting(BoxFuture<'static, Result<Response<B>, Error>>),
    Done,
}

/// Ids already delivered, remembered up to a window.
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
    window: usize,
}

impl Seen {
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= self.window
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// The state of one resuming SSE stream.
pub(crate) struct SseStream<B> {
    body: Option<Pin<Box<B>>>,
    parser: SseParser,
    stash: VecDeque<ClientEvent>,
    seen: Seen,
    /// The request whose response ends the wait; `None` for a standalone `GET` stream.
    request_id: Option<Value>,
    answered: bool,
    /// Reconnection attempts in a row without progress.
    attempts: u32,
    /// Bytes arrived since the last (re)connection.
    progressed: bool,
    phase: Phase<B>,
    resume: Option<Resume<B>>,
    failure: Option<Error>,
    guard: StreamGuard,
}

impl<B> SseStream<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(body: B, request_id: Option<Value>, resume: Option<Resume<B>>, guard: StreamGuard) -> Self {
        let cfg = &guard.shared().config.resume;
        Self {
            body: Some(Box::pin(body)),
            parser: SseParser::new(cfg.max_event_bytes),
            stash: VecDeque::new(),
            seen: Seen {
                set: HashSet::new(),
                order: VecDeque::new(),
                window: cfg.dedupe_window.max(1),
            },
            request_id,
            answered: false,
            attempts: 0,
            progressed: false,
            phase: Phase::Reading,
            resume,
            failure: None,
            guard,
        }
    }

    fn waiting_for_answer(&self) -> bool {
        self.request_id.is_some() && !self.answered
    }

    fn finish(&mut self) {
        self.body = None;
        self.phase = Phase::Done;
        // Unregister at once, not when the caller drops the body.
        self.guard.release();
    }

    fn fail(&mut self, error: Error) {
        if matches!(
            error,
            Error::NotResumable | Error::ResumeExhausted { .. } | Error::SessionExpired | Error::Status(_)
        ) {
            self.guard
                .shared()
                .counters
                .resume_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        self.failure = Some(error);
        self.finish();
    }

    pub(crate) fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<ClientEvent, Error>>> {
        if let Some(event) = self.stash.pop_front() {
            return Poll::Ready(Some(Ok(event)));
        }
        loop {
            if let Some(error) = self.failure.take() {
                return Poll::Ready(Some(Err(error)));
            }
            if matches!(self.phase, Phase::Done) {
                return Poll::Ready(None);
            }
            self.guard.slot.register(cx.waker());
            if self.guard.slot.is_closed() {
                let waiting = self.waiting_for_answer();
                self.finish();
                return Poll::Ready(waiting.then_some(Err(Error::SessionClosed)));
            }
            match &mut self.phase {
                Phase::Reading => {
                    match self.parser.next_event() {
                        Ok(Some(event)) => {
                            if let Some(event) = self.accept(event) {
                                return Poll::Ready(Some(Ok(event)));
                            }
                            continue;
                        }
                        Ok(None) => {}
                        Err(SseError::EventTooLarge { limit }) => {
                            self.fail(Error::EventTooLarge { limit });
                            continue;
                        }
                        // The reader's error set may grow; a refusal the client does
                        // not know ends the stream rather than being skipped.
                        Err(other) => {
                            self.fail(Error::Protocol(format!("unreadable SSE stream: {other:?}")));
                            continue;
                        }
                    }
                    let Some(body) = self.body.as_mut() else {
                        self.broken();
                        continue;
                    };
                    match body.as_mut().poll_frame(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(frame))) => {
                            if let Ok(data) = frame.into_data() {
                                if !data.is_empty() {
                                    self.progressed = true;
                                }
                                self.parser.push(&data);
                            }
                        }
                        Poll::Ready(Some(Err(_))) | Poll::Ready(None) => self.broken(),
                    }
                }
                Phase::Waiting(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    self.phase = Phase::Connecting(self.connect());
                }
                Phase::Connecting(connecting) => {
                    let result = ready!(connecting.as_mut().poll(cx));
                    self.connected(result);
                }
                Phase::Done => return Poll::Ready(None),
            }
        }
    }

    /// An event arrived: remember its id, drop it if already delivered or empty.
    fn accept(&mut self, event: SseEvent) -> Option<ClientEvent> {
        if let Some(id) = event.id.as_deref().filter(|id| !id.is_empty())
            && !self.seen.insert(id)
        {
            self.guard
                .shared()
                .counters
                .duplicates_dropped
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if event.data.is_empty() {
            return None;
        }
        let event = ClientEvent {
            id: event.id,
            event: event.event,
            data: event.data,
        };
        if let Some(id) = &self.request_id
            && !self.answered
            && event.is_response_to(id)
        {
            self.answered = true;
            self.guard.answered();
        }
        Some(event)
    }

    /// The connection ended (cleanly or not): done, or reconnect.
    fn broken(&mut self) {
        self.body = None;
        self.parser.finish();
        if self.request_id.is_some() && self.answered {
            self.finish();
            return;
        }
        let cfg = &self.guard.shared().config.resume;
        if self.request_id.is_none() && !cfg.resume_standalone {
            self.finish();
            return;
        }
        let has_cursor = !self.parser.last_event_id().is_empty();
        if self.resume.is_none() || (self.request_id.is_some() && !has_cursor) {
            self.fail(Error::NotResumable);
            return;
        }
        self.schedule();
    }

    fn schedule(&mut self) {
        if std::mem::take(&mut self.progressed) {
            self.attempts = 0;
        }
        self.attempts += 1;
        let cfg = &self.guard.shared().config.resume;
        if self.attempts > cfg.max_attempts {
            let attempts = self.attempts - 1;
            self.fail(Error::ResumeExhausted { attempts });
            return;
        }
        let server = self
            .parser
            .reconnection_time()
            .map(Duration::from_millis)
            .unwrap_or_default();
        let delay = server.max(cfg.backoff.delay(self.attempts));
        self.phase = Phase::Waiting(Box::pin(tokio::time::sleep(delay)));
    }

    fn connect(&self) -> BoxFuture<'static, Result<Response<B>, Error>> {
        let resume = self.resume.as_ref().expect("only resumable streams reconnect");
        let mut req = Request::new(Bytes::new());
        *req.method_mut() = http::Method::GET;
        *req.uri_mut() = resume.uri.clone();
        *req.headers_mut() = resume.headers.clone();
        let cursor = self.parser.last_event_id();
        if !cursor.is_empty()
            && let Ok(value) = HeaderValue::from_str(cursor)
        {
            req.headers_mut().insert(LAST_EVENT_ID, value);
        }
        (resume.connector)(req)
    }

    fn connected(&mut self, result: Result<Response<B>, Error>) {
        match result {
            Ok(response) if response.status() == StatusCode::OK && is_event_stream(response.headers()) => {
                let shared = self.guard.shared().clone();
                shared.counters.resumptions.fetch_add(1, Ordering::Relaxed);
                shared.emit(SessionEvent::Resumed {
                    last_event_id: self.parser.last_event_id().to_owned(),
                    attempt: self.attempts,
                });
                self.body = Some(Box::pin(response.into_body()));
                self.phase = Phase::Reading;
            }
            Ok(response) => match response.status() {
                StatusCode::NOT_FOUND => self.fail(Error::SessionExpired),
                StatusCode::METHOD_NOT_ALLOWED => self.fail(Error::NotResumable),
                s if s.is_server_error()
                    || s == StatusCode::TOO_MANY_REQUESTS
                    || s == StatusCode::REQUEST_TIMEOUT
                    || s.is_success() =>
                {
                    self.schedule()
                }
                s => self.fail(Error::Status(s)),
            },
            Err(_) => self.schedule(),
        }
    }
}

pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    content_type_is(headers, "text/event-stream")
}

pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    content_type_is(headers, "application/json")
}

fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}
