//! [`SessionManager`]: the application's handle on the sessions of a layer.

mod admin;
mod fanout;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

pub use self::admin::{SessionAdmin, SessionInfo};
use self::fanout::{Audience, fan_out};
use crate::drain::DrainReport;
use crate::engine::Engine;
use crate::event_log::EventLogError;
use crate::lifecycle::{Session, SessionError};
use crate::metrics::Metrics;
use crate::outbound::RequestError;
#[cfg(doc)]
use crate::session::CloseReason;
use crate::session::SessionId;

/// Why a message could not be queued for a session.
///
/// ```
/// use tower_mcp_session::SendError;
///
/// assert_eq!(SendError::UnknownSession.to_string(), "no such session");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The session does not exist (never did, expired, or was deleted).
    UnknownSession,
    /// The message is not a single JSON value.
    InvalidMessage,
    /// The store or event log failed or timed out.
    Unavailable,
    /// The event log is at its memory budget and nothing it holds can go to make room
    /// (see [`MemoryEventLog`](crate::event_log::MemoryEventLog)); retry later.
    Full,
}

impl SendError {
    /// What a failed append of the event log means to a sender.
    pub(crate) fn from_log(error: EventLogError) -> Self {
        match error {
            EventLogError::Full => Self::Full,
            _ => Self::Unavailable,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownSession => "no such session",
            Self::InvalidMessage => "message is not a single JSON value",
            Self::Unavailable => "session store or event log unavailable",
            Self::Full => "event log full",
        })
    }
}

impl std::error::Error for SendError {}

/// The application's handle on the sessions of one [`McpSessionLayer`](crate::McpSessionLayer):
/// push server-initiated messages, end sessions, read metrics. Cheap to clone.
///
/// Messages sent to a session go to its standalone stream, the one a client opens with
/// `GET`: each message is stored once and delivered on exactly one stream. A client
/// that is not listening yet gets the messages when it opens its `GET` stream; one that
/// dropped gets them by resuming with `Last-Event-ID`. With a shared event log
/// ([`RedisEventLog`](crate::event_log)), any instance can send to a session whose
/// stream another instance serves.
///
/// ```
/// use tower_mcp_session::{McpSessionLayer, SendError, SessionId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = McpSessionLayer::new();
/// let manager = layer.manager();
/// let note = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
/// let unknown = SessionId::parse("nope").unwrap();
/// assert_eq!(manager.send(&unknown, &note).await, Err(SendError::UnknownSession));
/// # }
/// ```
#[derive(Clone)]
pub struct SessionManager {
    engine: Arc<Engine>,
}

impl SessionManager {
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    /// Queue a JSON-RPC message (notification or request) for `session`'s GET stream.
    pub async fn send<T: serde::Serialize + ?Sized>(&self, session: &SessionId, message: &T) -> Result<(), SendError> {
        let bytes = serde_json::to_vec(message).map_err(|_| SendError::InvalidMessage)?;
        self.append(session, Bytes::from(bytes)).await
    }

    /// Queue an already serialized JSON-RPC message for `session`'s GET stream.
    pub async fn send_raw(&self, session: &SessionId, message: Bytes) -> Result<(), SendError> {
        if serde_json::from_slice::<serde::de::IgnoredAny>(&message).is_err() {
            return Err(SendError::InvalidMessage);
        }
        self.append(session, message).await
    }

    async fn append(&self, session: &SessionId, message: Bytes) -> Result<(), SendError> {
        match self.engine.sessions().contains(session).await {
            Ok(true) => {}
            Ok(false) => return Err(SendError::UnknownSession),
            Err(_) => return Err(SendError::Unavailable),
        }
        match self.engine.outbound().push(session, message).await {
            Ok(_) => Ok(()),
            Err(e) => Err(SendError::from_log(e)),
        }
    }

    /// A handle on the live session `id`, as the inner service gets it in a request's
    /// extensions (without a request: requests to the client made through it go on the
    /// standalone stream); `Ok(None)` when there is no such session.
    ///
    /// ```
    /// use tower_mcp_session::{McpSessionLayer, SessionId};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let manager = McpSessionLayer::new().manager();
    /// let unknown = SessionId::parse("no-such-session").unwrap();
    /// assert!(manager.session(&unknown).await.unwrap().is_none());
    /// # }
    /// ```
    pub async fn session(&self, id: &SessionId) -> Result<Option<Session>, SessionError> {
        let engine = &self.engine;
        let record = engine.sessions().record(id).await.map_err(SessionError::Store)?;
        Ok(record.map(|record| Session::live(record, engine.sessions().clone(), engine.outbound().clone(), None)))
    }

    /// Send a request to the client of `session` on its standalone stream and wait for
    /// the answer, as [`Session::request`] does; [`RequestError::SessionEnded`] when
    /// there is no such session.
    ///
    /// ```
    /// use serde_json::Value;
    /// use tower_mcp_session::{McpSessionLayer, RequestError, SessionId};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let manager = McpSessionLayer::new().manager();
    /// let unknown = SessionId::parse("no-such-session").unwrap();
    /// let asked = manager.request(&unknown, "roots/list", Value::Null).await;
    /// assert_eq!(asked, Err(RequestError::SessionEnded));
    /// # }
    /// ```
    pub async fn request(&self, session: &SessionId, method: &str, params: Value) -> Result<Value, RequestError> {
        match self.session(session).await {
            Ok(Some(handle)) => handle.request(method, params).await,
            Ok(None) => Err(RequestError::SessionEnded),
            Err(_) => Err(RequestError::Unavailable),
        }
    }

    /// Queue a message for every live session, on every instance sharing the store and
    /// event log, once per session, on its standalone stream (a client that is not
    /// listening gets it when it opens its `GET` stream); returns how many sessions it
    /// was queued for. On an error some sessions may have it already.
    ///
    /// ```
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let manager = McpSessionLayer::new().manager();
    /// let note = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
    /// assert_eq!(manager.broadcast(&note).await, Ok(0));
    /// # }
    /// ```
    pub async fn broadcast<T: serde::Serialize + ?Sized>(&self, message: &T) -> Result<usize, SendError> {
        let bytes = serde_json::to_vec(message).map_err(|_| SendError::InvalidMessage)?;
        fan_out(&self.engine, Audience::Everyone, Bytes::from(bytes)).await
    }

    /// Queue `notifications/resources/updated` for `uri` for every session whose client
    /// subscribed to it (`resources/subscribe`, as the layer records it), on every
    /// instance, once per session; returns how many sessions it was queued for.
    ///
    /// ```
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let manager = McpSessionLayer::new().manager();
    /// assert_eq!(manager.notify_subscribers("file:///notes.txt").await, Ok(0));
    /// # }
    /// ```
    pub async fn notify_subscribers(&self, uri: &str) -> Result<usize, SendError> {
        let note = serde_json::json!({
            "jsonrpc": "2.0",
            "method": "notifications/resources/updated",
            "params": {"uri": uri},
        });
        self.send_to_subscribers(uri, &note).await
    }

    /// Queue `message` for every session whose client subscribed to `uri`, on every
    /// instance, once per session; returns how many sessions it was queued for. For
    /// messages other than the plain `notifications/resources/updated` that
    /// [`notify_subscribers`](Self::notify_subscribers) sends.
    ///
    /// ```
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let manager = McpSessionLayer::new().manager();
    /// let note = serde_json::json!({
    ///     "jsonrpc": "2.0",
    ///     "method": "notifications/resources/updated",
    ///     "params": {"uri": "file:///notes.txt", "_meta": {"revision": 7}},
    /// });
    /// assert_eq!(manager.send_to_subscribers("file:///notes.txt", &note).await, Ok(0));
    /// # }
    /// ```
    pub async fn send_to_subscribers<T: serde::Serialize + ?Sized>(
        &self,
        uri: &str,
        message: &T,
    ) -> Result<usize, SendError> {
        let bytes = serde_json::to_vec(message).map_err(|_| SendError::InvalidMessage)?;
        fan_out(&self.engine, Audience::Subscribers(uri.into()), Bytes::from(bytes)).await
    }

    /// End `session` now; `Ok(true)` when it existed. Its streams end too. The same
    /// step as [`SessionAdmin::terminate`]: close listeners hear
    /// [`CloseReason::Closed`].
    ///
    /// ```
    /// use tower_mcp_session::{McpSessionLayer, SessionId};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let manager = McpSessionLayer::new().manager();
    /// let unknown = SessionId::parse("no-such-session").unwrap();
    /// assert!(!manager.close(&unknown).await.unwrap());
    /// # }
    /// ```
    pub async fn close(&self, session: &SessionId) -> Result<bool, SessionError> {
        self.admin().terminate(session).await
    }

    /// The layer's background work — keep-alive of busy sessions, the expiry sweep that
    /// tells close hooks and purges the event log, the check for sessions ended
    /// elsewhere — as a future that runs until the layer is dropped.
    ///
    /// Only needed with [`spawn_maintenance(false)`](crate::McpSessionLayerBuilder::spawn_maintenance),
    /// for runtimes where the layer cannot spawn tasks itself; run it on whatever executor
    /// the application has.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = McpSessionLayer::builder().spawn_maintenance(false).build();
    /// let maintenance = layer.manager().maintenance();
    /// drop(layer);
    /// // With the layer gone, the loop ends at its next round.
    /// tokio::time::timeout(Duration::from_secs(120), maintenance).await.unwrap();
    /// # }
    /// ```
    pub fn maintenance(&self) -> impl Future<Output = ()> + Send + 'static {
        let engine = Arc::downgrade(&self.engine);
        async move {
            let Some(every) = engine.upgrade().map(|e| e.maintenance_every()) else {
                return;
            };
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(engine) = engine.upgrade() else { return };
                engine.maintain_once().await;
            }
        }
    }

    /// Drain this instance for a rolling deploy, and resolve once nothing is in flight
    /// here or `deadline` has passed, with what was still running.
    ///
    /// From the call on (not only once the future is polled), the instance:
    ///
    /// - refuses `initialize`: 503 with `Retry-After` and reason `draining`, so the
    ///   client creates its session on another instance;
    /// - ends every SSE connection attached here after what it has sent so far, with a
    ///   `retry` field, so the client reconnects, through the balancer, to another
    ///   instance and resumes with `Last-Event-ID` from the shared event log. A POST
    ///   stream of a client older than 2025-11-25, which holds no event id until its
    ///   first event, is left to end by itself. New `GET`s are answered the same way at
    ///   once (a `retry`, then the end), claiming nothing;
    /// - keeps serving every other request of existing sessions (a balancer may still
    ///   route some here) and keeps driving running streamed answers into the log, where
    ///   the resumed readers elsewhere find them.
    ///
    /// The future waits for this instance's pumps, SSE connections and server → client
    /// requests awaiting an answer. Only a shared store and event log (Redis) let
    /// another instance take over; with the memory backends, draining only ends things
    /// cleanly. 2026-07-28 requests have no sessions and are the HTTP server's to
    /// finish. A drain cannot be undone: stop the process after it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let manager = McpSessionLayer::new().manager();
    /// let drained = manager.drain(Duration::from_secs(30));
    /// assert!(manager.is_draining()); // initialize is refused from here on
    /// let report = drained.await;
    /// assert!(report.is_complete(), "{report}");
    /// # }
    /// ```
    pub fn drain(&self, deadline: Duration) -> impl Future<Output = DrainReport> + Send + 'static {
        let engine = self.engine.clone();
        let first = engine.drain().begin();
        #[cfg(feature = "metrics")]
        if first {
            crate::metrics::facade::drain_begun();
        }
        #[cfg(feature = "tracing")]
        tracing::info!(
            deadline_ms = deadline.as_millis(),
            "draining: no new sessions, SSE clients sent elsewhere"
        );
        let _ = first;
        async move {
            #[cfg(feature = "metrics")]
            let observe = crate::metrics::facade::drain_in_flight;
            #[cfg(not(feature = "metrics"))]
            let observe = |_: &DrainReport| {};
            let report = engine.drain().settle(deadline, observe).await;
            #[cfg(feature = "metrics")]
            crate::metrics::facade::drain_ended(&report);
            report
        }
    }

    /// Whether [`drain`](Self::drain) was called: a readiness check should fail from
    /// then on, so the balancer stops sending new clients here.
    ///
    /// ```
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// assert!(!McpSessionLayer::new().manager().is_draining());
    /// ```
    pub fn is_draining(&self) -> bool {
        self.engine.drain().is_draining()
    }

    /// The operator's handle: count, list, inspect and end sessions (see
    /// [`SessionAdmin`]).
    ///
    /// ```
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_mcp_session::SessionError> {
    /// assert_eq!(McpSessionLayer::new().manager().admin().count().await?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn admin(&self) -> SessionAdmin {
        SessionAdmin::new(self.engine.clone())
    }

    /// The layer's counters.
    pub fn metrics(&self) -> Metrics {
        self.engine.metrics()
    }
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager").finish_non_exhaustive()
    }
}
