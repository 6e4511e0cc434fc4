//! [`McpSessionLayer`]: configuration and construction.

mod ask;
mod batch;
mod client_messages;
mod delete;
mod future;
mod get;
mod initialize;
mod listen;
mod modern;
pub(crate) mod negotiate;
mod post;
mod rounds;
mod running;
mod service;
mod translated;

pub use future::ResponseFuture;
pub use service::McpSession;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::engine::{Config, Engine};
use crate::event_log::{EventLog, MemoryEventLog};
use crate::lifecycle::AtCapacity;
use crate::lifecycle::sessions::{CloseListener, SessionPolicy};
use crate::manager::SessionManager;
use crate::rate_limit::CreationLimit;
use crate::security::{HostPolicy, OriginPolicy};
use crate::session::{CloseReason, MakeSessionId, SessionId, SessionRecord};
use crate::store::{MemoryStore, SessionStore};
use crate::stream::SseConfig;

/// A tower [`Layer`] that gives MCP Streamable HTTP services sessions, resumable SSE and
/// era-aware routing.
///
/// Requests of the 2025 revisions (2025-03-26, 2025-06-18, 2025-11-25) get full session
/// semantics: `Mcp-Session-Id` minted on a successful `initialize`, validated on every
/// later request (400 missing or malformed, 404 unknown or expired), ended by `DELETE`;
/// SSE answers become resumable streams with `Last-Event-ID`. Requests of 2026-07-28,
/// which has no sessions, pass through untouched. One endpoint serves both, so a
/// stateless server gets every legacy client served by putting this layer in front.
///
/// `McpSessionLayer::new()` uses an in-memory store and event log with safe defaults;
/// [`McpSessionLayer::builder`] changes any of them.
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tower::{ServiceBuilder, service_fn};
/// use tower_mcp_session::McpSessionLayer;
///
/// # async fn handle(_req: http::Request<Full<Bytes>>) -> Result<http::Response<Full<Bytes>>, Infallible> {
/// #     Ok(http::Response::new(Full::default()))
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service = ServiceBuilder::new()
///     .layer(McpSessionLayer::new())
///     .service(service_fn(handle));
/// # let _ = service;
/// # }
/// ```
#[derive(Clone)]
pub struct McpSessionLayer {
    engine: Arc<Engine>,
}

impl McpSessionLayer {
    /// A layer with the in-memory store and event log and every default.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Start configuring a layer.
    pub fn builder() -> McpSessionLayerBuilder {
        McpSessionLayerBuilder::default()
    }

    /// A handle for the application: push messages to sessions, close sessions, read
    /// metrics.
    pub fn manager(&self) -> SessionManager {
        SessionManager::new(self.engine.clone())
    }
}

impl Default for McpSessionLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for McpSessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpSessionLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for McpSessionLayer {
    type Service = McpSession<S>;

    fn layer(&self, inner: S) -> Self::Service {
        McpSession::new(inner, self.engine.clone())
    }
}

/// Configuration for [`McpSessionLayer`]. Every setting has a safe default.
///
/// Each method below says what it sets; the [configuration table](crate#configuration)
/// of the crate documentation lists them all with their defaults in one place (a test
/// keeps that table and these methods in agreement).
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session::McpSessionLayer;
///
/// let layer = McpSessionLayer::builder()
///     .max_sessions(Some(1_000))
///     .idle_timeout(Duration::from_secs(600))
///     .allow_host("mcp.example.com")
///     .allow_origin("https://app.example.com")
///     .sse_keep_alive(Some(Duration::from_secs(10)))
///     .build();
/// # let _ = layer;
/// ```
#[derive(Default)]
pub struct McpSessionLayerBuilder {
    config: Config,
    store: Option<Arc<dyn SessionStore>>,
    log: Option<Arc<dyn EventLog>>,
    policy: SessionPolicy,
    sse: SseConfig,
    on_closed: Vec<CloseListener>,
}

impl McpSessionLayerBuilder {
    /// Keep sessions in `store` (any [`SessionStore`]; an `Arc` of one shares it with
    /// other code).
    pub fn store(mut self, store: impl SessionStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Keep resumable streams in `log` (any [`EventLog`]; an `Arc` of one shares it).
    pub fn event_log(mut self, log: impl EventLog) -> Self {
        self.log = Some(Arc::new(log));
        self
    }

    /// Hold at most this many sessions (default 10,000; `None`: no cap). The bound is
    /// exact under any concurrency and, with a shared store, across instances: it counts
    /// live sessions plus `initialize` requests in flight. `Some(0)` refuses every session.
    ///
    /// ```
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let layer = McpSessionLayer::builder().max_sessions(Some(50_000)).build();
    /// # let _ = layer;
    /// ```
    pub fn max_sessions(mut self, max: Option<usize>) -> Self {
        self.policy.max_sessions = max;
        self
    }

    /// What to do when the cap is reached (default: refuse, retry after 5 seconds).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::{AtCapacity, McpSessionLayer};
    ///
    /// let layer = McpSessionLayer::builder()
    ///     .at_capacity(AtCapacity::Refuse { retry_after: Duration::from_secs(30) })
    ///     .build();
    /// # let _ = layer;
    /// ```
    pub fn at_capacity(mut self, policy: AtCapacity) -> Self {
        self.policy.at_capacity = policy;
        self
    }

    /// End a session once it has been idle this long (default 30 minutes; at least
    /// 1 ms). Idle time counts from the end of the session's last request or stream: a
    /// session with one in flight never idles out, and server-to-client traffic is not
    /// activity.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let layer = McpSessionLayer::builder().idle_timeout(Duration::from_secs(10 * 60)).build();
    /// # let _ = layer;
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.policy.idle_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// End a session this long after it was created, busy or not (default 24 hours).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let layer = McpSessionLayer::builder().max_lifetime(Duration::from_secs(8 * 3600)).build();
    /// # let _ = layer;
    /// ```
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.policy.max_lifetime = lifetime;
        self
    }

    /// Allow at most this many attribute keys per session (default 64); a write past it
    /// fails with [`SessionError::AttributeLimit`](crate::SessionError::AttributeLimit).
    ///
    /// ```
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let layer = McpSessionLayer::builder().max_attribute_keys(16).build();
    /// # let _ = layer;
    /// ```
    pub fn max_attribute_keys(mut self, max: usize) -> Self {
        self.policy.max_attribute_keys = max;
        self
    }

    /// Allow at most this many bytes of attributes per session, measured as the
    /// attributes serialized as one JSON object (default 64 KiB).
    ///
    /// ```
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let layer = McpSessionLayer::builder().max_attribute_bytes(16 * 1024).build();
    /// # let _ = layer;
    /// ```
    pub fn max_attribute_bytes(mut self, max: usize) -> Self {
        self.policy.max_attribute_bytes = max;
        self
    }

    /// Keep at most this many bytes of the client's `clientInfo` and `capabilities`
    /// (raw JSON, together) in a session record (default 8 KiB). An `initialize` with
    /// more is refused with 400 and JSON-RPC `-32602` before anything is reserved, so a
    /// client cannot make any store hold large records.
    ///
    /// ```
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let layer = McpSessionLayer::builder().max_client_metadata_bytes(4096).build();
    /// # let _ = layer;
    /// ```
    pub fn max_client_metadata_bytes(mut self, max: usize) -> Self {
        self.policy.max_client_metadata_bytes = max;
        self
    }

    /// How often the store is asked for sessions that expired, so close hooks hear of
    /// them and their streams are dropped (default 30 s; at least 10 ms). Expired
    /// sessions are refused at once whatever this is.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let layer = McpSessionLayer::builder().sweep_interval(Duration::from_secs(5)).build();
    /// # let _ = layer;
    /// ```
    pub fn sweep_interval(mut self, every: Duration) -> Self {
        self.policy.sweep_interval = every.max(Duration::from_millis(10));
        self
    }

    /// Make session ids with `ids` instead of 128 random bits.
    pub fn session_ids(mut self, ids: impl MakeSessionId) -> Self {
        self.config.ids = Arc::new(ids);
        self
    }

    /// Also serve requests whose `Host` is `host` (any port) or `host:port` (that port).
    /// Loopback names are always served unless [`allow_any_host`](Self::allow_any_host).
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        if let HostPolicy::AllowList(list) = &mut self.config.guard.hosts {
            list.push(host.into());
        }
        self
    }

    /// Serve any `Host` (for deployments behind a proxy that checks it, or that
    /// authenticate every request).
    pub fn allow_any_host(mut self) -> Self {
        self.config.guard.hosts = HostPolicy::Any;
        self
    }

    /// Also accept browser requests from `origin` (`scheme://host[:port]`, exact).
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        if let OriginPolicy::AllowList(list) = &mut self.config.guard.origins {
            list.push(origin.into());
        }
        self
    }

    /// Accept any `Origin`. Only for servers that authenticate every request.
    pub fn allow_any_origin(mut self) -> Self {
        self.config.guard.origins = OriginPolicy::Any;
        self
    }

    /// Refuse POST bodies over `bytes` with 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.config.max_body_bytes = bytes;
        self
    }

    /// Whether `DELETE` may end a session (`true`); `false` answers `DELETE` with 405,
    /// as the specification allows.
    pub fn client_termination(mut self, allowed: bool) -> Self {
        self.config.client_termination = allowed;
        self
    }

    /// Bind each session to the [`Principal`](crate::Principal) that created it
    /// (`true`); a request with another principal gets 404.
    pub fn bind_principal(mut self, bind: bool) -> Self {
        self.config.bind_principal = bind;
        self
    }

    /// Serve only 2026-07-28 and later: `GET` and `DELETE` get 405, legacy requests get
    /// 400 naming the supported versions.
    pub fn modern_only(mut self, only: bool) -> Self {
        self.config.modern_only = only;
        self
    }

    /// Translation mode: the inner service speaks only 2026-07-28, and the layer
    /// serves every 2025-era client in the client's own revision, with sessions and
    /// resumable streams as always (2026-07-28 requests still pass through).
    ///
    /// `initialize` is answered from the inner service's `server/discover` (kept a
    /// minute per client kind); `ping`, `logging/setLevel` and the notifications 2026
    /// removed are served by the layer; every other request goes in as a 2026-07-28
    /// request (`_meta` and headers from the session, the client's id kept) and its
    /// answers, streamed or not, come back in the legacy shape, HTTP errors as JSON-RPC
    /// error answers. Wins over `modern_only(true)`.
    ///
    /// Not yet translated (each answered with a clear JSON-RPC error rather than passed
    /// on): an `InputRequiredResult` (the multi round-trip requests that would become
    /// sampling, elicitation or roots requests to the client), `resources/subscribe`
    /// and the GET stream's notifications (served from `subscriptions/listen`), and
    /// 2025-03-26 batches.
    ///
    /// ```
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let layer = McpSessionLayer::builder().translate_to_modern(true).build();
    /// # drop(layer);
    /// ```
    pub fn translate_to_modern(mut self, translate: bool) -> Self {
        self.config.translate = translate;
        self
    }

    /// Validate the 2026-07-28 request headers in the layer (`MCP-Protocol-Version`
    /// equal to `_meta`, `Mcp-Method` and `Mcp-Name` equal to the body, required `_meta`
    /// fields) instead of leaving it to the inner service.
    pub fn strict_modern_headers(mut self, strict: bool) -> Self {
        self.config.strict_modern_headers = strict;
        self
    }

    /// The `retry` sent with priming events and before server-initiated closes.
    pub fn sse_retry(mut self, retry: Duration) -> Self {
        self.sse.retry = retry;
        self
    }

    /// Send an SSE comment on an idle stream this often (`None`: never).
    pub fn sse_keep_alive(mut self, every: Option<Duration>) -> Self {
        self.sse.keep_alive = every;
        self
    }

    /// Close each SSE connection (not the stream) after this long, sending `retry`
    /// first, so clients poll instead of holding connections (2025-11-25 clients).
    pub fn sse_poll_after(mut self, after: Option<Duration>) -> Self {
        self.sse.poll_after = after;
        self
    }

    /// Disconnect a reader that falls this many events behind its stream after having
    /// caught up once (a stalled client); the events stay in the log for a resume.
    pub fn max_reader_lag(mut self, events: u64) -> Self {
        self.sse.max_reader_lag = events;
        self
    }

    /// Cut an SSE connection whose client has stopped reading: the server holds a few
    /// frames of it unwritten (at most 12 frames or 192 KiB; more is not produced) and
    /// none of them was written for this long (default 30 s). The body ends with an
    /// error, so the server closes the connection; the events stay in the log for the
    /// client's resume.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let layer = McpSessionLayer::builder().sse_write_timeout(Duration::from_secs(10)).build();
    /// # let _ = layer;
    /// ```
    pub fn sse_write_timeout(mut self, timeout: Duration) -> Self {
        self.sse.write_timeout = timeout;
        self
    }

    /// The lease the instance running a request's SSE stream holds on it (default
    /// 10 s, at least 10 ms), renewed every third of it while the request runs. When
    /// that instance dies mid-stream, a client resuming elsewhere gets the stored events
    /// and then, once the lease has lapsed, a JSON-RPC error answer to its request
    /// (`-32603`, `data.reason` `producer_lost`) that ends the stream, instead of a
    /// stream that stays open with nothing more to come. Shorter leases tell clients
    /// sooner and cost more event-log writes; the renewals of a slow request must reach
    /// the log within the lease. Every instance sharing a log should use the same lease.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let layer = McpSessionLayer::builder().sse_producer_lease(Duration::from_secs(5)).build();
    /// # let _ = layer;
    /// ```
    pub fn sse_producer_lease(mut self, lease: Duration) -> Self {
        self.sse.producer_lease = lease.max(Duration::from_millis(10));
        self
    }

    /// How long a new SSE response waits for its first event so headers, priming event
    /// and first event go out together (default 20 ms).
    pub fn first_event_wait(mut self, wait: Duration) -> Self {
        self.sse.first_event_wait = wait;
        self
    }

    /// How long a store or event-log call may take before the request is answered
    /// with 503.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.config.store_timeout = timeout;
        self.sse.log_timeout = timeout;
        self
    }

    /// How long a request to the client ([`Session::request`](crate::Session::request))
    /// waits for its answer unless the caller chooses (default 60 s). When it passes,
    /// the client is told with `notifications/cancelled` and a late answer is refused.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let layer = McpSessionLayer::builder().client_request_timeout(Duration::from_secs(300)).build();
    /// # let _ = layer;
    /// ```
    pub fn client_request_timeout(mut self, wait: Duration) -> Self {
        self.config.client_request_timeout = wait;
        self
    }

    /// Rate-limit session creation (`initialize` without a session) with `limit`;
    /// refusals get 429 with `Retry-After`. Requests on established sessions and
    /// 2026-07-28 requests are never limited by it.
    pub fn rate_limit(mut self, limit: CreationLimit) -> Self {
        self.config.creation_limit = Some(limit);
        self
    }

    /// How often this instance checks its per-session stream state against the store
    /// (default 60 s). A shared store cannot tell every instance about sessions that
    /// expired by TTL or were deleted through another instance; the check forgets the
    /// local state of those, so memory stays bounded. The memory store needs no check.
    pub fn local_state_sweep(mut self, every: Duration) -> Self {
        self.config.local_sweep = every.max(Duration::from_millis(10));
        self
    }

    /// Whether the layer runs its background work (keep-alive of busy sessions, the
    /// expiry sweep, the event-log purge) as tasks on the Tokio runtime it is first
    /// used in (`true`, the default). With `false`, run
    /// [`SessionManager::maintenance`] yourself; without either, sessions in use idle
    /// out and expiries are never reported.
    ///
    /// ```
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let layer = McpSessionLayer::builder().spawn_maintenance(false).build();
    /// # let _ = layer;
    /// ```
    pub fn spawn_maintenance(mut self, spawn: bool) -> Self {
        self.config.spawn_maintenance = spawn;
        self
    }

    /// Call `hook` with the record of every session this layer creates.
    pub fn on_session_created(mut self, hook: impl Fn(&SessionRecord) + Send + Sync + 'static) -> Self {
        self.config.on_created = Some(Arc::new(hook));
        self
    }

    /// Call `hook` with the W3C trace context a client put in a message's
    /// `params._meta` (`traceparent`, `tracestate`, `baggage`), right after the
    /// message's server span is created and before it is first entered. This is where a
    /// `tracing-opentelemetry` setup makes the client's span the parent:
    /// `span.set_parent(propagator.extract(&extractor_over(context)))`. Feature
    /// `tracing`; not called when no subscriber wants the span.
    ///
    /// ```
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let layer = McpSessionLayer::builder()
    ///     .on_trace_context(|span, context| {
    ///         // e.g. `span.set_parent(cx)` with the context extracted from `context`.
    ///         let _ = (span, context.traceparent());
    ///     })
    ///     .build();
    /// # let _ = layer;
    /// ```
    #[cfg(feature = "tracing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
    pub fn on_trace_context(
        mut self,
        hook: impl Fn(&tracing::Span, &crate::TraceContext) + Send + Sync + 'static,
    ) -> Self {
        self.config.trace_hook = Some(Arc::new(hook));
        self
    }

    /// Call `hook` once for every session that ends, with the reason.
    pub fn on_session_closed(mut self, hook: impl Fn(&SessionId, CloseReason) + Send + Sync + 'static) -> Self {
        self.on_closed.push(Arc::new(hook));
        self
    }

    /// Build the layer.
    pub fn build(self) -> McpSessionLayer {
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let log = self.log.unwrap_or_else(|| Arc::new(MemoryEventLog::new()));
        let mut config = self.config;
        config.sse = Arc::new(self.sse);
        // Translation serves legacy clients; refusing them would contradict it.
        config.modern_only &= !config.translate;
        McpSessionLayer {
            engine: Engine::new(config, store, log, self.policy, self.on_closed),
        }
    }
}

impl fmt::Debug for McpSessionLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpSessionLayerBuilder")
            .field("guard", &self.config.guard)
            .field("max_body_bytes", &self.config.max_body_bytes)
            .field("client_termination", &self.config.client_termination)
            .field("bind_principal", &self.config.bind_principal)
            .field("modern_only", &self.config.modern_only)
            .field("translate_to_modern", &self.config.translate)
            .field("strict_modern_headers", &self.config.strict_modern_headers)
            .field("policy", &self.policy)
            .field("sse", &self.sse)
            .finish_non_exhaustive()
    }
}
