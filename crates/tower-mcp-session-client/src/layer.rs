//! [`McpClientLayer`] and the [`McpClient`] service it builds.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use super::backoff::Backoff;
use super::body::{Connector, McpClientBody, Resume, SseStream, is_event_stream, is_json, response_in};
use super::error::{BoxError, Error};
use super::session::{
    ClientStats, Config, Expired, ReinitDecision, Reinitialize, ResumeConfig, SessionEvent, SessionSnapshot, Shared,
    StreamGuard,
};
use crate::BoxFuture;
use tower_mcp_session::headers::{LAST_EVENT_ID, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};

const ACCEPT_BOTH: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");
const ACCEPT_SSE: HeaderValue = HeaderValue::from_static("text/event-stream");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
/// The revision [`McpClient::initialize`] asks for unless told otherwise.
const DEFAULT_VERSION: &str = "2025-11-25";

/// A tower [`Layer`] that turns an HTTP client service into an MCP Streamable HTTP
/// client session (2025-03-26 … 2025-11-25 revisions).
///
/// The [`McpClient`] it builds:
/// - captures `Mcp-Session-Id` and the negotiated protocol version from the response to
///   `initialize` (JSON or SSE) and puts `Mcp-Session-Id` and `MCP-Protocol-Version` on
///   every later request;
/// - when the server answers 404 for the session, re-initializes once with the original
///   `initialize` parameters (transparently, or as a [`Reinitialize::Ask`] callback
///   decides), sends `notifications/initialized`, reports a
///   [`SessionEvent::Reinitialized`] and sends the failed request again, once;
/// - answers SSE responses with a [`McpClientBody`] that resumes by itself
///   (`GET` + `Last-Event-ID`, the server's `retry`, jittered backoff, each event once);
/// - ends the session with [`McpClient::close`]: `DELETE`, then every open stream.
///
/// One layer is one session: every service built from it (and every clone) shares it.
/// Build one layer per server.
///
/// ```no_run
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower::ServiceBuilder;
/// use tower_mcp_session_client::McpClientLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_mcp_session_client::Error> {
/// let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let client = ServiceBuilder::new()
///     .layer(McpClientLayer::builder().endpoint("http://127.0.0.1:8080/mcp".parse().unwrap()).build())
///     .service(http);
/// client.initialize().await?;
/// let tools = client.request("tools/list", serde_json::json!({})).await?;
/// println!("{tools}");
/// client.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct McpClientLayer {
    shared: Arc<Shared>,
}

impl McpClientLayer {
    /// A layer with every default: transparent re-initialization, 5 resume attempts.
    ///
    /// ```
    /// let layer = tower_mcp_session_client::McpClientLayer::new();
    /// assert_eq!(layer.stats().initializations, 0);
    /// ```
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Start configuring a layer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session_client::{McpClientLayer, Reinitialize};
    ///
    /// let layer = McpClientLayer::builder()
    ///     .reinitialize(Reinitialize::Never)
    ///     .max_resume_attempts(3)
    ///     .request_timeout(Some(Duration::from_secs(10)))
    ///     .build();
    /// # let _ = layer;
    /// ```
    pub fn builder() -> McpClientLayerBuilder {
        McpClientLayerBuilder::default()
    }

    /// The session's counters.
    pub fn stats(&self) -> ClientStats {
        self.shared.stats()
    }

    /// The session id in force, if any.
    ///
    /// ```
    /// assert_eq!(tower_mcp_session_client::McpClientLayer::new().session_id(), None);
    /// ```
    pub fn session_id(&self) -> Option<String> {
        snapshot_id(&self.shared.snapshot())
    }
}

impl Default for McpClientLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for McpClientLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpClientLayer")
            .field("session_id", &self.session_id())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for McpClientLayer {
    type Service = McpClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        McpClient {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Configures a [`McpClientLayer`].
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session_client::{Backoff, McpClientLayer, Reinitialize, ReinitDecision};
///
/// let layer = McpClientLayer::builder()
///     .endpoint("http://127.0.0.1:8080/mcp".parse().unwrap())
///     .client_info("my-agent", "1.2.0")
///     .resume_backoff(Backoff::new(Duration::from_millis(50), Duration::from_secs(2)))
///     .reinitialize(Reinitialize::ask(|_expired| ReinitDecision::Replay))
///     .on_event(|event| println!("{event:?}"))
///     .build();
/// # let _ = layer;
/// ```
pub struct McpClientLayerBuilder {
    config: Config,
    client_name: String,
    client_version: String,
    capabilities: Value,
    protocol_version: String,
    explicit_params: bool,
}

impl Default for McpClientLayerBuilder {
    fn default() -> Self {
        Self {
            config: Config {
                endpoint: None,
                initialize_params: None,
                reinitialize: Reinitialize::Transparent,
                resume: ResumeConfig {
                    max_attempts: 5,
                    backoff: Backoff::default(),
                    max_event_bytes: 4 << 20,
                    dedupe_window: 4096,
                    resume_standalone: true,
                },
                on_event: None,
                max_json_bytes: 4 << 20,
                request_timeout: Some(Duration::from_secs(60)),
                default_headers: HeaderMap::new(),
            },
            client_name: "tower-mcp-session".into(),
            client_version: env!("CARGO_PKG_VERSION").into(),
            capabilities: json!({}),
            protocol_version: DEFAULT_VERSION.into(),
            explicit_params: false,
        }
    }
}

impl McpClientLayerBuilder {
    /// The MCP endpoint, used by the convenience calls ([`McpClient::initialize`],
    /// [`McpClient::request`], …). Requests sent through the service keep their own URI.
    pub fn endpoint(mut self, uri: Uri) -> Self {
        self.config.endpoint = Some(uri);
        self
    }

    /// `clientInfo` of [`McpClient::initialize`].
    pub fn client_info(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.client_name = name.into();
        self.client_version = version.into();
        self
    }

    /// `capabilities` of [`McpClient::initialize`] (default `{}`).
    pub fn capabilities(mut self, capabilities: Value) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// The revision [`McpClient::initialize`] asks for (default `2025-11-25`).
    pub fn protocol_version(mut self, version: impl Into<String>) -> Self {
        self.protocol_version = version.into();
        self
    }

    /// The whole `params` of [`McpClient::initialize`], replacing the three settings above.
    pub fn initialize_params(mut self, params: Value) -> Self {
        self.config.initialize_params = Some(params);
        self.explicit_params = true;
        self
    }

    /// What to do when the server answers 404 for the session (default: re-initialize
    /// transparently).
    pub fn reinitialize(mut self, policy: Reinitialize) -> Self {
        self.config.reinitialize = policy;
        self
    }

    /// Reconnection attempts in a row, without a new event in between, before a broken
    /// SSE stream fails with [`Error::ResumeExhausted`] (default 5).
    pub fn max_resume_attempts(mut self, attempts: u32) -> Self {
        self.config.resume.max_attempts = attempts;
        self
    }

    /// The backoff between reconnections (default 100 ms doubling to 5 s, jittered). A
    /// longer `retry` from the server wins.
    pub fn resume_backoff(mut self, backoff: Backoff) -> Self {
        self.config.resume.backoff = backoff;
        self
    }

    /// The largest SSE event accepted (default 4 MiB).
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.config.resume.max_event_bytes = bytes;
        self
    }

    /// How many event ids a stream remembers to drop duplicates after a reconnection
    /// (default 4096).
    pub fn dedupe_window(mut self, ids: usize) -> Self {
        self.config.resume.dedupe_window = ids;
        self
    }

    /// Whether standalone `GET` streams reconnect when the server ends them (default
    /// true; they end only when the session is closed or gone).
    pub fn resume_standalone_streams(mut self, resume: bool) -> Self {
        self.config.resume.resume_standalone = resume;
        self
    }

    /// The largest JSON body the client reads itself (initialize answers, 404 bodies,
    /// convenience calls; default 4 MiB).
    pub fn max_json_bytes(mut self, bytes: usize) -> Self {
        self.config.max_json_bytes = bytes;
        self
    }

    /// Deadline of each convenience call, response included (default 60 s; `None` for
    /// none).
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// A header sent with every convenience call (e.g. `Authorization`).
    pub fn default_header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.config.default_headers.append(name, value);
        self
    }

    /// Called for every [`SessionEvent`]: initialized, expired, re-initialized, resumed,
    /// closed.
    pub fn on_event(mut self, hook: impl Fn(&SessionEvent) + Send + Sync + 'static) -> Self {
        self.config.on_event = Some(Arc::new(hook));
        self
    }

    /// Build the layer.
    pub fn build(mut self) -> McpClientLayer {
        if !self.explicit_params {
            self.config.initialize_params = Some(json!({
                "protocolVersion": self.protocol_version,
                "capabilities": self.capabilities,
                "clientInfo": {"name": self.client_name, "version": self.client_version},
            }));
        }
        McpClientLayer {
            shared: Arc::new(Shared::new(self.config)),
        }
    }
}

impl fmt::Debug for McpClientLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpClientLayerBuilder").finish_non_exhaustive()
    }
}

/// The MCP client service built by [`McpClientLayer`]: see there for what it does.
///
/// As a tower service it takes any `Request<B>` whose body can be rebuilt from bytes
/// (`B: From<Bytes>`, e.g. `Full<Bytes>`), because a request may be sent twice (after a
/// re-initialization). Its convenience calls ([`initialize`](Self::initialize),
/// [`request`](Self::request), [`close`](Self::close), …) need an inner service over
/// `Request<Full<Bytes>>`.
pub struct McpClient<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> McpClient<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the client.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The session id in force (`None` before `initialize`, after a close, or with a
    /// server that runs without sessions).
    pub fn session_id(&self) -> Option<String> {
        snapshot_id(&self.shared.snapshot())
    }

    /// The protocol version the server chose in `initialize`.
    pub fn protocol_version(&self) -> Option<String> {
        self.shared.snapshot().version
    }

    /// Whether `initialize` succeeded and the session was not closed or lost since.
    pub fn is_initialized(&self) -> bool {
        self.shared.is_initialized()
    }

    /// The session's counters.
    pub fn stats(&self) -> ClientStats {
        self.shared.stats()
    }

    /// SSE streams of this session open right now.
    pub fn open_streams(&self) -> usize {
        self.shared.streams.len()
    }
}

impl<S: Clone> Clone for McpClient<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> fmt::Debug for McpClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpClient")
            .field("session_id", &self.session_id())
            .finish_non_exhaustive()
    }
}

fn snapshot_id(s: &SessionSnapshot) -> Option<String> {
    s.id.as_ref().and_then(|v| v.to_str().ok()).map(ToOwned::to_owned)
}

/// Response future of [`McpClient`].
///
/// Capturing the session, re-initializing and retrying await the network several times,
/// so the work is one boxed future.
pub struct ResponseFuture<RB> {
    inner: BoxFuture<'static, Result<Response<McpClientBody<RB>>, Error>>,
}

impl<RB> Future for ResponseFuture<RB> {
    type Output = Result<Response<McpClientBody<RB>>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<RB> fmt::Debug for ResponseFuture<RB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B, RB> Service<Request<B>> for McpClient<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<McpClientBody<RB>>;
    type Error = Error;
    type Future = ResponseFuture<RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::transport)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service goes into the future; a clone stays for the next call.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let connector = connector::<S, B, RB>(self.inner.clone());
        let handler = Handler {
            shared: self.shared.clone(),
            connector,
        };
        ResponseFuture {
            inner: Box::pin(handler.serve(ready, req)),
        }
    }
}

/// A type-erased way to send more requests through clones of the inner service.
fn connector<S, B, RB>(service: S) -> Connector<RB>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: From<Bytes> + Send + 'static,
    RB: 'static,
{
    let service = Mutex::new(service);
    Arc::new(move |req: Request<Bytes>| {
        let svc = service.lock().expect("connector lock").clone();
        Box::pin(async move { svc.oneshot(req.map(B::from)).await.map_err(Error::transport) })
    })
}

/// What the client keeps of a request to send it again or resume its stream.
#[derive(Clone)]
struct Template {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Template {
    fn of(parts: &Parts) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        }
    }

    fn request(&self, method: Method, body: Bytes, session: &SessionSnapshot) -> Request<Bytes> {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = self.uri.clone();
        let mut headers = self.headers.clone();
        headers.remove(CONTENT_LENGTH);
        apply_session(&mut headers, session);
        *req.headers_mut() = headers;
        req
    }

    /// Headers for the `GET` that resumes a stream of this request.
    fn resume_headers(&self, session: &SessionSnapshot) -> HeaderMap {
        let mut headers = self.headers.clone();
        for name in [CONTENT_TYPE, CONTENT_LENGTH, LAST_EVENT_ID] {
            headers.remove(name);
        }
        headers.insert(ACCEPT, ACCEPT_SSE);
        apply_session(&mut headers, session);
        headers
    }
}

/// Put the session's headers on a request. Without a session the caller's own headers
/// stay, so an application managing ids itself is not overruled.
fn apply_session(headers: &mut HeaderMap, session: &SessionSnapshot) {
    if let Some(id) = &session.id {
        headers.insert(MCP_SESSION_ID, id.clone());
    }
    if let Some(version) = session.version.as_deref()
        // The header exists since 2025-06-18.
        && version != "2025-03-26"
        && let Ok(value) = HeaderValue::from_str(version)
    {
        headers.insert(MCP_PROTOCOL_VERSION, value);
    }
}

fn ensure_post_headers(headers: &mut HeaderMap) {
    headers.entry(ACCEPT).or_insert(ACCEPT_BOTH);
    headers.entry(CONTENT_TYPE).or_insert(JSON);
}

enum Checked<RB> {
    /// Not a lost session: hand the response on.
    Pass(Response<RB>),
    /// A 404 that is not about the session (its body was read).
    Read(Response<Bytes>),
    /// The server no longer knows the session (its body was read).
    Expired(Response<Bytes>),
}

/// The work of one call. Holds nothing of the inner service but the type-erased
/// connector, so the call's future is `Send` without the service being `Sync`.
struct Handler<RB> {
    shared: Arc<Shared>,
    connector: Connector<RB>,
}

impl<RB> Handler<RB>
where
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    async fn serve<S, B>(self, ready: S, req: Request<B>) -> Result<Response<McpClientBody<RB>>, Error>
    where
        S: Service<Request<B>, Response = Response<RB>>,
        S::Error: Into<BoxError>,
        B: Body + From<Bytes>,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = req.into_parts();
        let bytes = body.collect().await.map_err(Error::transport)?.to_bytes();
        match parts.method {
            Method::POST => {
                ensure_post_headers(&mut parts.headers);
                let message: Option<Value> = serde_json::from_slice(&bytes).ok();
                let method = message
                    .as_ref()
                    .and_then(|m| m.get("method"))
                    .and_then(Value::as_str)
                    .map(ToOwned::to_owned);
                let id = message
                    .as_ref()
                    .filter(|_| method.is_some())
                    .and_then(|m| m.get("id"))
                    .cloned();
                if method.as_deref() == Some("initialize")
                    && let (Some(message), Some(id)) = (message, id.clone())
                {
                    return self.initialize(ready, parts, bytes, message, id).await;
                }
                self.in_session(ready, parts, bytes, id, true).await
            }
            Method::GET => {
                parts.headers.entry(ACCEPT).or_insert(ACCEPT_SSE);
                self.in_session(ready, parts, bytes, None, true).await
            }
            // DELETE and anything else: session headers, no recovery (a 404 to a DELETE
            // means the session is gone already).
            _ => self.in_session(ready, parts, bytes, None, false).await,
        }
    }

    async fn first_call<S, B>(mut ready: S, parts: Parts, bytes: Bytes) -> Result<Response<RB>, Error>
    where
        S: Service<Request<B>, Response = Response<RB>>,
        S::Error: Into<BoxError>,
        B: From<Bytes>,
    {
        ready
            .call(Request::from_parts(parts, B::from(bytes)))
            .await
            .map_err(Error::transport)
    }

    async fn in_session<S, B>(
        self,
        ready: S,
        mut parts: Parts,
        bytes: Bytes,
        request_id: Option<Value>,
        recover: bool,
    ) -> Result<Response<McpClientBody<RB>>, Error>
    where
        S: Service<Request<B>, Response = Response<RB>>,
        S::Error: Into<BoxError>,
        B: From<Bytes>,
    {
        let template = Template::of(&parts);
        let snapshot = self.shared.snapshot();
        apply_session(&mut parts.headers, &snapshot);
        let response = Self::first_call(ready, parts, bytes.clone()).await?;
        let checked = if recover {
            self.check(response, &snapshot).await?
        } else {
            Checked::Pass(response)
        };
        match checked {
            Checked::Pass(response) => Ok(self.wrap(response, &template, &snapshot, request_id)),
            Checked::Read(response) => Ok(response.map(McpClientBody::full)),
            Checked::Expired(response) => match self.recover(&template, &snapshot).await {
                Ok(true) => {
                    self.shared.counters.retried_requests.fetch_add(1, Ordering::Relaxed);
                    let snapshot = self.shared.snapshot();
                    let req = template.request(template.method.clone(), bytes, &snapshot);
                    let response = (self.connector)(req).await?;
                    Ok(self.wrap(response, &template, &snapshot, request_id))
                }
                Ok(false) => Ok(response.map(McpClientBody::full)),
                Err(e) => Err(Error::Reinitialize(Box::new(e))),
            },
        }
    }

    /// Is this response the server saying it no longer knows the session?
    async fn check(&self, response: Response<RB>, sent: &SessionSnapshot) -> Result<Checked<RB>, Error> {
        if response.status() != StatusCode::NOT_FOUND || sent.id.is_none() {
            return Ok(Checked::Pass(response));
        }
        let (head, body) = response.into_parts();
        let bytes = Limited::new(body, 64 << 10)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        // 404 + "method not found" is a 2026-07-28 answer about the method, not the session.
        let method_not_found = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.pointer("/error/code").and_then(Value::as_i64))
            == Some(-32601);
        let response = Response::from_parts(head, bytes);
        Ok(if method_not_found {
            Checked::Read(response)
        } else {
            Checked::Expired(response)
        })
    }

    fn wrap(
        &self,
        response: Response<RB>,
        template: &Template,
        session: &SessionSnapshot,
        request_id: Option<Value>,
    ) -> Response<McpClientBody<RB>> {
        if response.status().is_success() && is_event_stream(response.headers()) {
            let resume = Resume {
                connector: self.connector.clone(),
                uri: template.uri.clone(),
                headers: template.resume_headers(session),
            };
            let guard = StreamGuard::register(&self.shared, request_id.is_some());
            response.map(|body| McpClientBody::sse(SseStream::new(body, request_id, Some(resume), guard)))
        } else {
            let limit = self.shared.config.max_json_bytes;
            response.map(|body| McpClientBody::inner(body, limit))
        }
    }

    /// The caller's own `initialize`: remember it for replay, capture the session.
    async fn initialize<S, B>(
        self,
        ready: S,
        mut parts: Parts,
        bytes: Bytes,
        message: Value,
        id: Value,
    ) -> Result<Response<McpClientBody<RB>>, Error>
    where
        S: Service<Request<B>, Response = Response<RB>>,
        S::Error: Into<BoxError>,
        B: From<Bytes>,
    {
        self.shared.set_init_message(message);
        self.shared.set_init_template(parts.uri.clone(), parts.headers.clone());
        parts.headers.remove(MCP_SESSION_ID);
        let template = Template::of(&parts);
        let response = Self::first_call(ready, parts, bytes).await?;
        let (response, result) = self.capture(response, &template, &id).await?;
        if let Some(result) = result {
            self.established(response.headers(), &result);
        }
        Ok(response)
    }

    /// Read an `initialize` answer up to its response; give back the response with a body
    /// that still yields everything, and the InitializeResult when it succeeded.
    async fn capture(
        &self,
        response: Response<RB>,
        template: &Template,
        id: &Value,
    ) -> Result<(Response<McpClientBody<RB>>, Option<Value>), Error> {
        if !response.status().is_success() {
            let limit = self.shared.config.max_json_bytes;
            return Ok((response.map(|b| McpClientBody::inner(b, limit)), None));
        }
        let session = SessionSnapshot {
            id: response.headers().get(MCP_SESSION_ID).cloned(),
            version: None,
            generation: 0,
        };
        if is_event_stream(response.headers()) {
            let resume = Resume {
                connector: self.connector.clone(),
                uri: template.uri.clone(),
                headers: template.resume_headers(&session),
            };
            let guard = StreamGuard::register(&self.shared, true);
            let (head, body) = response.into_parts();
            let mut stream = SseStream::new(body, Some(id.clone()), Some(resume), guard);
            let mut seen = Vec::new();
            let mut result = None;
            while let Some(event) = std::future::poll_fn(|cx| stream.poll_event(cx)).await {
                let event = event?;
                let answer = event.json().ok().and_then(|m| response_in(&m, id).cloned());
                seen.push(event);
                if let Some(answer) = answer {
                    result = answer.get("result").cloned();
                    break;
                }
            }
            let mut body = McpClientBody::sse(stream);
            body.stash(seen);
            return Ok((Response::from_parts(head, body), result));
        }
        let (head, body) = response.into_parts();
        let bytes = Limited::new(body, self.shared.config.max_json_bytes)
            .collect()
            .await
            .map_err(Error::transport)?
            .to_bytes();
        let result = if is_json(&head.headers) || !bytes.is_empty() {
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|m| response_in(&m, id).and_then(|a| a.get("result")).cloned())
        } else {
            None
        };
        Ok((Response::from_parts(head, McpClientBody::full(bytes)), result))
    }

    fn established(&self, headers: &HeaderMap, result: &Value) -> Option<HeaderValue> {
        let id = headers.get(MCP_SESSION_ID).cloned();
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .map(ToOwned::to_owned);
        self.shared.establish(id.clone(), version.clone());
        self.shared.counters.initializations.fetch_add(1, Ordering::Relaxed);
        self.shared.emit(SessionEvent::Initialized {
            session_id: id.as_ref().and_then(|v| v.to_str().ok()).map(ToOwned::to_owned),
            protocol_version: version,
        });
        id
    }

    /// The session expired: re-initialize once (unless the policy says no). `Ok(true)`
    /// when a session is in force afterwards and the request may be sent again.
    async fn recover(&self, template: &Template, sent: &SessionSnapshot) -> Result<bool, Error> {
        let shared = &self.shared;
        let _one_at_a_time = shared.reinit_lock.lock().await;
        let current = shared.snapshot();
        if current.generation != sent.generation {
            // Another request re-initialized (or the session was closed) meanwhile.
            return Ok(current.id.is_some());
        }
        let old = snapshot_id(sent).unwrap_or_default();
        shared.counters.expirations.fetch_add(1, Ordering::Relaxed);
        shared.emit(SessionEvent::Expired {
            session_id: old.clone(),
        });
        let init = shared.init_message();
        let decision = match &shared.config.reinitialize {
            Reinitialize::Transparent => ReinitDecision::Replay,
            Reinitialize::Never => ReinitDecision::GiveUp,
            Reinitialize::Ask(decide) => decide(&Expired {
                session_id: old.clone(),
                initialize_params: init.as_ref().and_then(|m| m.get("params").cloned()),
            }),
        };
        let (Some(mut message), params) = (init, decision) else {
            shared.forget(Some(sent.generation));
            return Ok(false);
        };
        match params {
            ReinitDecision::Replay => {}
            ReinitDecision::ReplayWith(p) => message["params"] = p,
            ReinitDecision::GiveUp => {
                shared.forget(Some(sent.generation));
                return Ok(false);
            }
        }
        let id = json!(format!("tower-mcp-session-reinit-{}", shared.next_request_id()));
        message["id"] = id.clone();
        match self.handshake(template, &message, &id).await {
            Ok(new) => {
                shared.counters.reinitializations.fetch_add(1, Ordering::Relaxed);
                shared.emit(SessionEvent::Reinitialized {
                    old,
                    new: new.as_ref().and_then(|v| v.to_str().ok()).map(ToOwned::to_owned),
                });
                Ok(true)
            }
            Err(e) => {
                shared.forget(Some(sent.generation));
                shared.emit(SessionEvent::ReinitializeFailed {
                    old,
                    reason: e.to_string(),
                });
                Err(e)
            }
        }
    }

    /// `initialize` + `notifications/initialized` on a fresh session.
    async fn handshake(&self, template: &Template, message: &Value, id: &Value) -> Result<Option<HeaderValue>, Error> {
        let mut headers = self
            .shared
            .init_template()
            .map(|(_, h)| h)
            .unwrap_or_else(|| template.headers.clone());
        for name in [MCP_SESSION_ID, MCP_PROTOCOL_VERSION, LAST_EVENT_ID, CONTENT_LENGTH] {
            headers.remove(name);
        }
        headers.insert(CONTENT_TYPE, JSON);
        headers.insert(ACCEPT, ACCEPT_BOTH);
        let post = Template {
            method: Method::POST,
            uri: template.uri.clone(),
            headers,
        };
        let none = SessionSnapshot::default();
        let body = Bytes::from(serde_json::to_vec(message).map_err(|e| Error::Protocol(e.to_string()))?);
        let response = (self.connector)(post.request(Method::POST, body, &none)).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Status(status));
        }
        let (response, result) = self.capture(response, &post, id).await?;
        let Some(result) = result else {
            return Err(Error::Protocol("initialize was not answered with a result".into()));
        };
        let new = self.established(response.headers(), &result);
        drop(response);
        let note = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let session = self.shared.snapshot();
        let answer = (self.connector)(post.request(Method::POST, note, &session)).await?;
        if !answer.status().is_success() {
            return Err(Error::Status(answer.status()));
        }
        Ok(new)
    }
}

/// The convenience calls: JSON-RPC over the endpoint set with
/// [`McpClientLayerBuilder::endpoint`], through this same service (so they get every
/// behaviour of the layer).
impl<S, RB> McpClient<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    fn endpoint(&self) -> Result<Uri, Error> {
        self.shared.config.endpoint.clone().ok_or(Error::NoEndpoint)
    }

    fn post_request(&self, body: &Value) -> Result<Request<Full<Bytes>>, Error> {
        let mut req = Request::new(Full::new(Bytes::from(
            serde_json::to_vec(body).map_err(|e| Error::Protocol(e.to_string()))?,
        )));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.endpoint()?;
        let headers = req.headers_mut();
        headers.extend(self.shared.config.default_headers.clone());
        headers.insert(CONTENT_TYPE, JSON);
        headers.insert(ACCEPT, ACCEPT_BOTH);
        Ok(req)
    }

    async fn timed<T>(&self, work: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        match self.shared.config.request_timeout {
            Some(limit) => tokio::time::timeout(limit, work).await.map_err(|_| Error::Timeout)?,
            None => work.await,
        }
    }

    /// Send `initialize` with the configured parameters, then
    /// `notifications/initialized`; returns the `InitializeResult`.
    ///
    /// ```no_run
    /// # use tower_mcp_session_client::McpClientLayer;
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// let result = client.initialize().await?;
    /// println!("server: {}", result["serverInfo"]["name"]);
    /// println!("session: {:?}", client.session_id());
    /// # Ok(()) }
    /// ```
    pub async fn initialize(&self) -> Result<Value, Error> {
        self.timed(self.initialize_inner()).await
    }

    async fn initialize_inner(&self) -> Result<Value, Error> {
        let params = self
            .shared
            .config
            .initialize_params
            .clone()
            .unwrap_or_else(|| json!({}));
        let id = json!(self.shared.next_request_id());
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": params});
        let response = self.clone().oneshot(self.post_request(&message)?).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Status(status));
        }
        let answer = response.into_body().into_response(&id).await?;
        let result = rpc_result(answer)?;
        self.notify_inner("notifications/initialized", None).await?;
        Ok(result)
    }

    /// Send a JSON-RPC request and wait for its result (reading an SSE answer to its
    /// end, resuming it if it breaks). Initializes first if no session is open yet.
    /// A JSON-RPC error comes back as [`Error::Rpc`].
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// let result = client
    ///     .request("tools/call", serde_json::json!({"name": "echo", "arguments": {"message": "hi"}}))
    ///     .await?;
    /// assert_eq!(result["content"][0]["text"], "hi");
    /// # Ok(()) }
    /// ```
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, Error> {
        self.timed(async {
            self.ensure_initialized().await?;
            let id = json!(self.shared.next_request_id());
            let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            let response = self.clone().oneshot(self.post_request(&message)?).await?;
            let status = response.status();
            if status == StatusCode::NOT_FOUND && self.session_id().is_none() {
                return Err(Error::SessionExpired);
            }
            if !status.is_success() {
                return Err(Error::Status(status));
            }
            rpc_result(response.into_body().into_response(&id).await?)
        })
        .await
    }

    /// Send a JSON-RPC request and return the raw response, whose body is a resuming
    /// stream when the server answers with SSE (progress notifications and all).
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// let response = client
    ///     .send("tools/call", serde_json::json!({"name": "test_tool_with_progress", "arguments": {}}))
    ///     .await?;
    /// let mut body = response.into_body();
    /// while let Some(event) = body.next_event().await {
    ///     println!("{:?}", event?.json());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, method: &str, params: Value) -> Result<Response<McpClientBody<RB>>, Error> {
        self.ensure_initialized().await?;
        let id = json!(self.shared.next_request_id());
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.clone().oneshot(self.post_request(&message)?).await
    }

    /// Send a JSON-RPC notification (`202 Accepted` expected).
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// client.notify("notifications/roots/list_changed", None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), Error> {
        self.timed(self.notify_inner(method, params)).await
    }

    async fn notify_inner(&self, method: &str, params: Option<Value>) -> Result<(), Error> {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        let response = self.clone().oneshot(self.post_request(&message)?).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Error::Status(response.status()))
        }
    }

    /// `ping`, timed: how long the round trip took.
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// let rtt = client.ping().await?;
    /// println!("{rtt:?}");
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<Duration, Error> {
        let start = tokio::time::Instant::now();
        self.request("ping", json!({})).await?;
        Ok(start.elapsed())
    }

    /// Open the session's standalone `GET` stream for server-initiated messages. It
    /// resumes by itself and ends when the session is closed.
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// let mut stream = client.listen().await?;
    /// while let Some(message) = stream.next_event().await {
    ///     println!("{:?}", message?.json());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn listen(&self) -> Result<McpClientBody<RB>, Error> {
        self.ensure_initialized().await?;
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = self.endpoint()?;
        req.headers_mut().extend(self.shared.config.default_headers.clone());
        req.headers_mut().insert(ACCEPT, ACCEPT_SSE);
        let response = self.clone().oneshot(req).await?;
        let status = response.status();
        let body = response.into_body();
        if status != StatusCode::OK {
            return Err(Error::Status(status));
        }
        if !body.is_sse() {
            return Err(Error::Protocol("the GET stream is not text/event-stream".into()));
        }
        Ok(body)
    }

    async fn ensure_initialized(&self) -> Result<(), Error> {
        if self.shared.is_initialized() || self.shared.config.initialize_params.is_none() {
            return Ok(());
        }
        let _one_at_a_time = self.shared.init_lock.lock().await;
        if self.shared.is_initialized() {
            return Ok(());
        }
        self.initialize_inner().await.map(|_| ())
    }

    /// End the session: `DELETE` it (405, "the server does not let clients end
    /// sessions", and 404, "already gone", count as success), then end every SSE stream
    /// of the session still open and forget the session.
    ///
    /// Streams still waiting for a response end with [`Error::SessionClosed`]; use
    /// [`close_gracefully`](Self::close_gracefully) to let them finish first.
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// client.close().await?;
    /// assert_eq!(client.open_streams(), 0);
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<(), Error> {
        let snapshot = self.shared.snapshot();
        let deleted = match snapshot.id.clone() {
            Some(_) => self.timed(self.delete(&snapshot)).await,
            None => Ok(()),
        };
        self.shared.streams.close_all();
        let old = self.shared.forget(None);
        self.shared.emit(SessionEvent::Closed {
            session_id: old.as_ref().and_then(|v| v.to_str().ok()).map(ToOwned::to_owned),
        });
        deleted
    }

    /// Like [`close`](Self::close), but first waits (at most `grace`) for the streams
    /// still waiting for their responses to get them.
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// client.close_gracefully(std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn close_gracefully(&self, grace: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let changed = self.shared.streams.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.shared.streams.awaiting() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break;
            }
        }
        self.close().await
    }

    async fn delete(&self, session: &SessionSnapshot) -> Result<(), Error> {
        let (uri, mut headers) = match self.shared.init_template() {
            Some((uri, headers)) => (self.shared.config.endpoint.clone().unwrap_or(uri), headers),
            None => (self.endpoint()?, self.shared.config.default_headers.clone()),
        };
        for name in [CONTENT_TYPE, CONTENT_LENGTH, LAST_EVENT_ID] {
            headers.remove(name);
        }
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.method_mut() = Method::DELETE;
        *req.uri_mut() = uri;
        apply_session(&mut headers, session);
        *req.headers_mut() = headers;
        let response = self.inner.clone().oneshot(req).await.map_err(Error::transport)?;
        match response.status() {
            s if s.is_success() || s == StatusCode::METHOD_NOT_ALLOWED || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(Error::Status(s)),
        }
    }
}

/// The `result` of a JSON-RPC response, or its error.
fn rpc_result(answer: Value) -> Result<Value, Error> {
    if let Some(error) = answer.get("error") {
        return Err(Error::Rpc {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            data: error.get("data").cloned(),
        });
    }
    answer
        .get("result")
        .cloned()
        .ok_or_else(|| Error::Protocol("response without result or error".into()))
}
