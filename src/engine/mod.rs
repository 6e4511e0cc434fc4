//! The engine: the state one layer's services, its manager and its streams share.
//!
//! One [`Engine`] per [`McpSessionLayer`](crate::McpSessionLayer). Its fields are
//! private: the layer's services read the settings through [`Engine::config`] and reach
//! sessions, the event log and local stream state through the accessors, so the
//! engine alone decides what happens when a session ends or maintenance is due.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::timeout;

use crate::ProtocolVersion;
use crate::drain::Drain;
use crate::event_log::EventLog;
use crate::lifecycle::sessions::{CloseListener, SessionPolicy, Sessions};
use crate::metrics::{Counters, Metrics};
use crate::outbound::Outbound;
use crate::periodic::Periodic;
use crate::rate_limit::CreationLimit;
use crate::security::Guard;
use crate::session::{CloseReason, MakeSessionId, RandomSessionId, SessionId, SessionRecord};
use crate::store::SessionStore;
use crate::stream::policy::StreamSetup;
use crate::stream::{SseConfig, Streams};
use crate::translate::cache::DiscoverCache;
use crate::translate::in_flight::InFlight;
use crate::translate::param_headers::ToolHeaders;
use crate::util::run_detached;

/// Told about every session the layer creates.
pub(crate) type CreatedHook = Arc<dyn Fn(&SessionRecord) + Send + Sync>;

/// The layer's settings, as the builder leaves them.
pub(crate) struct Config {
    pub(crate) ids: Arc<dyn MakeSessionId>,
    pub(crate) guard: Guard,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_initialize_response_bytes: usize,
    pub(crate) store_timeout: Duration,
    pub(crate) client_termination: bool,
    pub(crate) bind_principal: bool,
    pub(crate) modern_only: bool,
    /// Translation mode: the inner service speaks only 2026-07-28.
    pub(crate) translate: bool,
    pub(crate) strict_modern_headers: bool,
    pub(crate) modern_versions: Vec<ProtocolVersion>,
    pub(crate) legacy_versions: Vec<ProtocolVersion>,
    pub(crate) sse: Arc<SseConfig>,
    pub(crate) on_created: Option<CreatedHook>,
    pub(crate) creation_limit: Option<CreationLimit>,
    pub(crate) local_sweep: Duration,
    /// Whether the engine spawns its background work on the Tokio runtime (else the
    /// application runs [`SessionManager::maintenance`](crate::SessionManager::maintenance)).
    pub(crate) spawn_maintenance: bool,
    /// How long a request to the client waits for its answer by default.
    pub(crate) client_request_timeout: Duration,
    /// Told each message's trace context before its span is entered.
    #[cfg(feature = "tracing")]
    pub(crate) trace_hook: Option<crate::telemetry::TraceHook>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ids: Arc::new(RandomSessionId),
            guard: Guard::default(),
            max_body_bytes: 4 << 20,
            max_initialize_response_bytes: 1 << 20,
            store_timeout: Duration::from_secs(1),
            client_termination: true,
            bind_principal: true,
            modern_only: false,
            translate: false,
            strict_modern_headers: false,
            modern_versions: vec![ProtocolVersion::V2026_07_28],
            legacy_versions: ProtocolVersion::LEGACY.to_vec(),
            sse: Arc::new(SseConfig::default()),
            on_created: None,
            creation_limit: None,
            local_sweep: Duration::from_secs(60),
            spawn_maintenance: true,
            client_request_timeout: Duration::from_secs(60),
            #[cfg(feature = "tracing")]
            trace_hook: None,
        }
    }
}

/// Everything the services of one layer share.
pub(crate) struct Engine {
    config: Config,
    sessions: Arc<Sessions>,
    log: Arc<dyn EventLog>,
    outbound: Arc<Outbound>,
    streams: Streams,
    /// The drain switch and what is in flight here.
    drain: Arc<Drain>,
    counters: Counters,
    discoveries: DiscoverCache,
    in_flight: Arc<InFlight>,
    tool_headers: ToolHeaders,
    keep_alive: Periodic<Engine>,
    expiry_sweep: Periodic<Engine>,
    local_sweep: Periodic<Engine>,
}

impl Engine {
    pub(crate) fn new(
        config: Config,
        store: Arc<dyn SessionStore>,
        log: Arc<dyn EventLog>,
        policy: SessionPolicy,
        on_closed: Vec<CloseListener>,
    ) -> Arc<Self> {
        let keep_alive_every = policy.keep_alive_every();
        let sweep_every = policy.sweep_interval;
        let lifetime = policy.max_lifetime;
        #[cfg(feature = "metrics")]
        let store = crate::metrics::store::Timed::wrap(store);
        Arc::new_cyclic(|weak: &Weak<Engine>| {
            // The engine's own listener comes first; it holds the engine weakly, so the
            // sessions → listener → engine path is no cycle.
            let weak = weak.clone();
            let mut listeners: Vec<CloseListener> = vec![Arc::new(move |id: &SessionId, reason: CloseReason| {
                if let Some(engine) = weak.upgrade() {
                    engine.session_closed(id, reason);
                }
            })];
            listeners.extend(on_closed);
            let drain = Arc::new(Drain::default());
            Engine {
                sessions: Arc::new(Sessions::new(store, policy, config.store_timeout, listeners)),
                outbound: Arc::new(Outbound::new(
                    log.clone(),
                    config.store_timeout,
                    config.client_request_timeout,
                    drain.clone(),
                )),
                log,
                streams: Streams::new(drain.clone()),
                drain,
                counters: Counters::new(lifetime),
                discoveries: DiscoverCache::default(),
                in_flight: Arc::default(),
                tool_headers: ToolHeaders::default(),
                keep_alive: Periodic::new(keep_alive_every, |engine| {
                    Box::pin(async move { engine.sessions.keep_alive().await })
                }),
                expiry_sweep: Periodic::new(sweep_every, |engine| {
                    Box::pin(async move { engine.sweep_and_purge().await })
                }),
                local_sweep: Periodic::new(config.local_sweep, |engine| {
                    Box::pin(async move { engine.sweep_local_streams().await })
                }),
                config,
            }
        })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// How often a caller-driven maintenance loop should run a round: often enough for
    /// the keep-alive of busy sessions.
    pub(crate) fn maintenance_every(&self) -> Duration {
        self.keep_alive.every().min(self.expiry_sweep.every())
    }

    /// What the stream policy needs: the log, local stream state, SSE settings.
    pub(crate) fn stream_setup(&self) -> StreamSetup<'_> {
        StreamSetup {
            log: &self.log,
            streams: &self.streams,
            sse: &self.config.sse,
            timeout: self.config.store_timeout,
        }
    }

    pub(crate) fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// Requests to clients and the routing of their answers.
    pub(crate) fn outbound(&self) -> &Arc<Outbound> {
        &self.outbound
    }

    pub(crate) fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    pub(crate) fn streams(&self) -> &Streams {
        &self.streams
    }

    /// The drain switch and the in-flight counts.
    pub(crate) fn drain(&self) -> &Arc<Drain> {
        &self.drain
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Recent `server/discover` answers of the inner service (translation mode).
    pub(crate) fn discoveries(&self) -> &DiscoverCache {
        &self.discoveries
    }

    /// The layer's counters.
    /// The `x-mcp-header` annotations of the inner service's tools, as learnt.
    pub(crate) fn tool_headers(&self) -> &ToolHeaders {
        &self.tool_headers
    }

    /// Translated requests running here, for legacy cancellations.
    pub(crate) fn in_flight(&self) -> &Arc<InFlight> {
        &self.in_flight
    }

    pub(crate) fn metrics(&self) -> Metrics {
        self.counters.snapshot(self.streams.session_count())
    }

    /// Every version this endpoint serves, for error messages that must name them.
    /// The revisions an error to a 2026-07-28-style request names. In translation mode
    /// the inner service's `server/discover` (passed through untouched) lists only the
    /// modern revisions, and an error must not name more than discovery does; the
    /// legacy ones are reached through `initialize`, not through `_meta`.
    pub(crate) fn versions_for_modern_errors(&self) -> Vec<String> {
        if self.config.translate {
            self.config.modern_versions.iter().map(ToString::to_string).collect()
        } else {
            self.supported_versions()
        }
    }

    pub(crate) fn supported_versions(&self) -> Vec<String> {
        let legacy = if self.config.modern_only {
            &[][..]
        } else {
            &self.config.legacy_versions[..]
        };
        legacy
            .iter()
            .chain(&self.config.modern_versions)
            .map(ToString::to_string)
            .collect()
    }

    /// Start, once each and from inside a runtime, the engine's background work:
    /// keep-alive of busy sessions, the expiry sweep that tells close hooks and purges
    /// the event log, and the check that forgets local stream state of sessions ended
    /// elsewhere.
    pub(crate) fn ensure_maintenance(self: &Arc<Self>) {
        if !self.config.spawn_maintenance {
            return;
        }
        self.keep_alive.ensure(self);
        self.expiry_sweep.ensure(self);
        self.local_sweep.ensure(self);
    }

    /// One round of every maintenance job, for runtimes where the engine cannot spawn
    /// its own tasks.
    pub(crate) async fn maintain_once(&self) {
        // The sweep refreshes busy sessions first: that is the keep-alive.
        self.sweep_and_purge().await;
        self.sweep_local_streams().await;
    }

    /// Take expired sessions (close hooks hear of them) and purge the event log.
    async fn sweep_and_purge(&self) {
        self.sessions.sweep().await;
        let _ = timeout(self.config.store_timeout, self.log.purge_expired()).await;
    }

    /// Forget local stream state of idle sessions the store no longer knows. A shared
    /// store reports expiry to one instance only, and a `DELETE` served elsewhere to
    /// none here; without this, each such session would leave its (small) local state
    /// behind for good.
    async fn sweep_local_streams(&self) {
        for id in self.streams.idle_sessions() {
            if let Ok(false) = self.sessions.contains(&id).await {
                self.streams.remove_session(&id);
            }
        }
    }

    fn session_closed(&self, id: &SessionId, reason: CloseReason) {
        self.counters.session_closed(id, reason);
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

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("guard", &self.config.guard)
            .field("sse", &self.config.sse)
            .finish_non_exhaustive()
    }
}
