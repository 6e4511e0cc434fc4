//! [`McpSessionLayer`]: configuration and construction.

mod future;
mod modern;
mod negotiate;
mod service;

pub use future::ResponseFuture;
pub(crate) use negotiate::media_type;
pub use service::McpSession;

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tower_layer::Layer;

use crate::ProtocolVersion;
use crate::event_log::{EventLog, MemoryEventLog};
use crate::manager::SessionManager;
use crate::metrics::Counters;
use crate::rate_limit::CreationLimit;
use crate::security::{Guard, HostPolicy, OriginPolicy};
use crate::engine::periodic::Periodic;
use crate::engine::sessions::{CloseListener, SessionPolicy, Sessions, run_detached};
use crate::session::{AtCapacity, CloseReason, MakeSessionId, RandomSessionId, SessionId, SessionRecord};
use crate::store::{MemoryStore, SessionStore};
use crate::stream::{SseConfig, Streams};

type CreatedHook = Arc<dyn Fn(&SessionRecord) + Send + Sync>;

/// Everything the services of one layer share.
pub(crate) struct Shared {
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) ids: Arc<dyn MakeSessionId>,
    pub(crate) guard: Guard,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_initialize_response_bytes: usize,
    pub(crate) store_timeout: Duration,
    pub(crate) client_termination: bool,
    pub(crate) bind_principal: bool,
    pub(crate) modern_only: bool,
    pub(crate) strict_modern_headers: bool,
    pub(crate) modern_versions: Vec<ProtocolVersion>,
    pub(crate) legacy_versions: Vec<ProtocolVersion>,
    pub(crate) sse: Arc<SseConfig>,
    pub(crate) streams: Streams,
    pub(crate) counters: Counters,
    pub(crate) on_created: Option<CreatedHook>,
    pub(crate) creation_limit: Option<CreationLimit>,
    keep_alive: Periodic<Shared>,
    expiry_sweep: Periodic<Shared>,
    local_sweep: Periodic<Shared>,
}

impl Shared {
    /// Every version this endpoint serves, for error messages that must name them.
    pub(crate) fn supported_versions(&self) -> Vec<String> {
        let legacy = if self.modern_only {
            &[][..]
        } else {
            &self.legacy_versions[..]
        };
        legacy
            .iter()
            .chain(&self.modern_versions)
            .map(ToString::to_string)
            .collect()
    }
}

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
    shared: Arc<Shared>,
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
        SessionManager::new(self.shared.clone())
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
        McpSession::new(inner, self.shared.clone())
    }
}

/// Configuration for [`McpSessionLayer`]. Every setting has a safe default.
///
/// | setting | default |
/// |---|---|
/// | [`store`](Self::store) | [`MemoryStore::new()`] |
/// | [`max_sessions`](Self::max_sessions) | 10,000 |
/// | [`at_capacity`](Self::at_capacity) | refuse, `Retry-After: 5` |
/// | [`idle_timeout`](Self::idle_timeout) | 30 min |
/// | [`max_lifetime`](Self::max_lifetime) | 24 h |
/// | [`max_attribute_keys`](Self::max_attribute_keys) / [`max_attribute_bytes`](Self::max_attribute_bytes) | 64 / 64 KiB per session |
/// | [`sweep_interval`](Self::sweep_interval) | 30 s |
/// | [`event_log`](Self::event_log) | [`MemoryEventLog::new()`] |
/// | [`session_ids`](Self::session_ids) | [`RandomSessionId`] (128 bits, CSPRNG) |
/// | [`allow_host`](Self::allow_host) | loopback names only (`localhost`, `127.0.0.1`, `[::1]`) |
/// | [`allow_origin`](Self::allow_origin) | absent `Origin`, or a loopback origin |
/// | [`max_body_bytes`](Self::max_body_bytes) | 4 MiB |
/// | [`client_termination`](Self::client_termination) | `true` (`DELETE` ends a session) |
/// | [`bind_principal`](Self::bind_principal) | `true` |
/// | [`modern_only`](Self::modern_only) | `false` (serve both eras) |
/// | [`strict_modern_headers`](Self::strict_modern_headers) | `false` (the inner service validates) |
/// | [`sse_retry`](Self::sse_retry) | 1 s |
/// | [`sse_keep_alive`](Self::sse_keep_alive) | 15 s |
/// | [`sse_poll_after`](Self::sse_poll_after) | none (connections stay open) |
/// | [`max_reader_lag`](Self::max_reader_lag) | 512 events |
/// | [`store_timeout`](Self::store_timeout) | 1 s |
/// | [`rate_limit`](Self::rate_limit) | none (creation is not rate-limited) |
/// | [`local_state_sweep`](Self::local_state_sweep) | 60 s |
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
pub struct McpSessionLayerBuilder {
    store: Option<Arc<dyn SessionStore>>,
    log: Option<Arc<dyn EventLog>>,
    policy: SessionPolicy,
    ids: Arc<dyn MakeSessionId>,
    guard: Guard,
    max_body_bytes: usize,
    max_initialize_response_bytes: usize,
    store_timeout: Duration,
    client_termination: bool,
    bind_principal: bool,
    modern_only: bool,
    strict_modern_headers: bool,
    sse: SseConfig,
    on_created: Option<CreatedHook>,
    on_closed: Vec<CloseListener>,
    creation_limit: Option<CreationLimit>,
    local_sweep: Duration,
}

impl Default for McpSessionLayerBuilder {
    fn default() -> Self {
        Self {
            store: None,
            log: None,
            policy: SessionPolicy::default(),
            ids: Arc::new(RandomSessionId),
            guard: Guard::default(),
            max_body_bytes: 4 << 20,
            max_initialize_response_bytes: 1 << 20,
            store_timeout: Duration::from_secs(1),
            client_termination: true,
            bind_principal: true,
            modern_only: false,
            strict_modern_headers: false,
            sse: SseConfig::default(),
            on_created: None,
            on_closed: Vec::new(),
            creation_limit: None,
            local_sweep: Duration::from_secs(60),
        }
    }
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
    pub fn max_sessions(mut self, max: Option<usize>) -> Self {
        self.policy.max_sessions = max;
        self
    }

    /// What to do when the cap is reached (default: refuse, retry after 5 seconds).
    pub fn at_capacity(mut self, policy: AtCapacity) -> Self {
        self.policy.at_capacity = policy;
        self
    }

    /// End a session once it has been idle this long (default 30 minutes; at least
    /// 1 ms). Idle time counts from the end of the session's last request or stream: a
    /// session with one in flight never idles out, and server-to-client traffic is not
    /// activity.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.policy.idle_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// End a session this long after it was created, busy or not (default 24 hours).
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.policy.max_lifetime = lifetime;
        self
    }

    /// Allow at most this many attribute keys per session (default 64); a write past it
    /// fails with [`SessionError::AttributeLimit`](crate::SessionError::AttributeLimit).
    pub fn max_attribute_keys(mut self, max: usize) -> Self {
        self.policy.max_attribute_keys = max;
        self
    }

    /// Allow at most this many bytes of attributes per session, measured as the
    /// attributes serialized as one JSON object (default 64 KiB).
    pub fn max_attribute_bytes(mut self, max: usize) -> Self {
        self.policy.max_attribute_bytes = max;
        self
    }

    /// How often the store is asked for sessions that expired, so close hooks hear of
    /// them and their streams are dropped (default 30 s; at least 10 ms). Expired
    /// sessions are refused at once whatever this is.
    pub fn sweep_interval(mut self, every: Duration) -> Self {
        self.policy.sweep_interval = every.max(Duration::from_millis(10));
        self
    }

    /// Make session ids with `ids` instead of 128 random bits.
    pub fn session_ids(mut self, ids: impl MakeSessionId) -> Self {
        self.ids = Arc::new(ids);
        self
    }

    /// Also serve requests whose `Host` is `host` (any port) or `host:port` (that port).
    /// Loopback names are always served unless [`allow_any_host`](Self::allow_any_host).
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        if let HostPolicy::AllowList(list) = &mut self.guard.hosts {
            list.push(host.into());
        }
        self
    }

    /// Serve any `Host` (for deployments behind a proxy that checks it, or that
    /// authenticate every request).
    pub fn allow_any_host(mut self) -> Self {
        self.guard.hosts = HostPolicy::Any;
        self
    }

    /// Also accept browser requests from `origin` (`scheme://host[:port]`, exact).
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        if let OriginPolicy::AllowList(list) = &mut self.guard.origins {
            list.push(origin.into());
        }
        self
    }

    /// Accept any `Origin`. Only for servers that authenticate every request.
    pub fn allow_any_origin(mut self) -> Self {
        self.guard.origins = OriginPolicy::Any;
        self
    }

    /// Refuse POST bodies over `bytes` with 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Whether `DELETE` may end a session (`true`); `false` answers `DELETE` with 405,
    /// as the specification allows.
    pub fn client_termination(mut self, allowed: bool) -> Self {
        self.client_termination = allowed;
        self
    }

    /// Bind each session to the [`Principal`](crate::Principal) that created it
    /// (`true`); a request with another principal gets 404.
    pub fn bind_principal(mut self, bind: bool) -> Self {
        self.bind_principal = bind;
        self
    }

    /// Serve only 2026-07-28 and later: `GET` and `DELETE` get 405, legacy requests get
    /// 400 naming the supported versions.
    pub fn modern_only(mut self, only: bool) -> Self {
        self.modern_only = only;
        self
    }

    /// Validate the 2026-07-28 request headers in the layer (`MCP-Protocol-Version`
    /// equal to `_meta`, `Mcp-Method` and `Mcp-Name` equal to the body, required `_meta`
    /// fields) instead of leaving it to the inner service.
    pub fn strict_modern_headers(mut self, strict: bool) -> Self {
        self.strict_modern_headers = strict;
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

    /// How long a new SSE response waits for its first event so headers, priming event
    /// and first event go out together (default 20 ms).
    pub fn first_event_wait(mut self, wait: Duration) -> Self {
        self.sse.first_event_wait = wait;
        self
    }

    /// How long a store or event-log call may take before the request is answered
    /// with 503.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self.sse.log_timeout = timeout;
        self
    }

    /// Rate-limit session creation (`initialize` without a session) with `limit`;
    /// refusals get 429 with `Retry-After`. Requests on established sessions and
    /// 2026-07-28 requests are never limited by it.
    pub fn rate_limit(mut self, limit: CreationLimit) -> Self {
        self.creation_limit = Some(limit);
        self
    }

    /// How often this instance checks its per-session stream state against the store
    /// (default 60 s). A shared store cannot tell every instance about sessions that
    /// expired by TTL or were deleted through another instance; the check forgets the
    /// local state of those, so memory stays bounded. The memory store needs no check.
    pub fn local_state_sweep(mut self, every: Duration) -> Self {
        self.local_sweep = every.max(Duration::from_millis(10));
        self
    }

    /// Call `hook` with the record of every session this layer creates.
    pub fn on_session_created(mut self, hook: impl Fn(&SessionRecord) + Send + Sync + 'static) -> Self {
        self.on_created = Some(Arc::new(hook));
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
        let keep_alive_every = self.policy.keep_alive_every();
        let sweep_every = self.policy.sweep_interval;
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            // The engine's own listener comes first; it holds the layer weakly, so the
            // sessions → listener → layer path is no cycle.
            let weak = weak.clone();
            let mut listeners: Vec<CloseListener> = vec![Arc::new(move |id: &SessionId, reason: CloseReason| {
                if let Some(shared) = weak.upgrade() {
                    shared.session_closed(id, reason);
                }
            })];
            listeners.extend(self.on_closed);
            Shared {
                sessions: Arc::new(Sessions::new(store, self.policy, self.store_timeout, listeners)),
                log,
                ids: self.ids,
                guard: self.guard,
                max_body_bytes: self.max_body_bytes,
                max_initialize_response_bytes: self.max_initialize_response_bytes,
                store_timeout: self.store_timeout,
                client_termination: self.client_termination,
                bind_principal: self.bind_principal,
                modern_only: self.modern_only,
                strict_modern_headers: self.strict_modern_headers,
                modern_versions: vec![ProtocolVersion::V2026_07_28],
                legacy_versions: ProtocolVersion::LEGACY.to_vec(),
                sse: Arc::new(self.sse),
                streams: Streams::default(),
                counters: Counters::default(),
                on_created: self.on_created,
                creation_limit: self.creation_limit,
                keep_alive: Periodic::new(keep_alive_every, |shared| {
                    Box::pin(async move { shared.sessions.keep_alive().await })
                }),
                expiry_sweep: Periodic::new(sweep_every, |shared| {
                    Box::pin(async move {
                        shared.sessions.sweep_expired().await;
                    })
                }),
                local_sweep: Periodic::new(self.local_sweep, |shared| {
                    Box::pin(async move { shared.sweep_local_streams().await })
                }),
            }
        });
        McpSessionLayer { shared }
    }
}

impl Shared {
    /// Start, once each and from inside a runtime, the engine's background work:
    /// keep-alive of busy sessions, the expiry sweep that tells close hooks, and the
    /// check that forgets local stream state of sessions ended elsewhere.
    pub(crate) fn ensure_maintenance(self: &Arc<Self>) {
        self.keep_alive.ensure(self);
        self.expiry_sweep.ensure(self);
        self.local_sweep.ensure(self);
    }

    /// Forget local stream state of idle sessions the store no longer knows. A shared
    /// store reports expiry to one instance only, and a `DELETE` served elsewhere to
    /// none here; without this, each such session would leave its (small) local state
    /// behind for good.
    pub(crate) async fn sweep_local_streams(&self) {
        for id in self.streams.idle_sessions() {
            if let Ok(false) = self.sessions.contains(&id).await {
                self.streams.remove_session(&id);
            }
        }
    }

    fn session_closed(self: &Arc<Self>, id: &SessionId, reason: CloseReason) {
        self.counters.session_closed(reason);
        self.streams.remove_session(id);
        #[cfg(feature = "tracing")]
        tracing::debug!(session = %id, reason = reason.as_str(), "session closed");
        let log = self.log.clone();
        let id = id.clone();
        run_detached(async move {
            let _ = log.remove_session(&id).await;
        });
    }
}

impl fmt::Debug for McpSessionLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpSessionLayerBuilder")
            .field("guard", &self.guard)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("client_termination", &self.client_termination)
            .field("bind_principal", &self.bind_principal)
            .field("modern_only", &self.modern_only)
            .field("strict_modern_headers", &self.strict_modern_headers)
            .field("sse", &self.sse)
            .finish_non_exhaustive()
    }
}
