//! [`Session`]: the handle the inner service finds in the request extensions.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};

use super::client_state;
use super::sessions::{Sessions, apply};
use crate::outbound::{Outbound, RelatedStream, RequestError};
use crate::session::{CloseReason, SessionId, SessionRecord};
use crate::store::StoreError;

/// Why a session operation failed.
///
/// ```
/// use tower_mcp_session::SessionError;
///
/// assert_eq!(SessionError::Ended.to_string(), "the session has ended");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionError {
    /// The write would take the session past its bound on the number or total size of
    /// its attributes; nothing was written. It is the application's error, not the
    /// client's: the bound keeps one session from growing without limit.
    AttributeLimit,
    /// The session has ended (or, during `initialize`, was never created).
    Ended,
    /// Writers on this session kept racing; nothing was written. Retry later.
    Contended,
    /// The store failed or timed out.
    Store(StoreError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AttributeLimit => "the session's attributes would exceed their bound",
            Self::Ended => "the session has ended",
            Self::Contended => "concurrent attribute writes kept conflicting",
            Self::Store(_) => "the session store is unavailable",
        })
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// Where a handle's attributes live: in the store, or — while the inner service answers
/// the `initialize` that creates the session — in the handle until the session is stored
/// (`None` from then on: later writes through any clone go to the store).
#[derive(Clone)]
enum State {
    Live,
    Pending(Arc<Mutex<Option<Map<String, Value>>>>),
}

impl State {
    /// The waiting attributes, while the session is not stored yet.
    fn pending(&self) -> Option<std::sync::MutexGuard<'_, Option<Map<String, Value>>>> {
        match self {
            Self::Live => None,
            Self::Pending(map) => {
                let guard = map.lock().unwrap_or_else(PoisonError::into_inner);
                guard.is_some().then_some(guard)
            }
        }
    }
}

/// The session a request belongs to, as the inner service sees it.
///
/// [`McpSessionLayer`](crate::McpSessionLayer) puts a `Session` into the extensions of
/// every legacy request that belongs to a session, including the `initialize` request
/// that is about to create one. Attributes are small JSON values the application keeps
/// between requests (log level, resource subscriptions, …); they live in the session
/// store, so with a shared store every instance sees them. Attributes written while the
/// inner service answers `initialize` are kept with the handle and stored with the
/// session when it is created (and dropped with it if `initialize` fails).
///
/// ```
/// use tower_mcp_session::Session;
///
/// async fn handler(req: http::Request<http_body_util::Full<bytes::Bytes>>) {
///     if let Some(session) = req.extensions().get::<Session>() {
///         let level = session.attribute("logLevel").await.ok().flatten();
///         println!("session {} at level {level:?}", session.id());
///     }
/// }
/// # let _ = handler;
/// ```
#[derive(Clone)]
pub struct Session {
    record: Arc<SessionRecord>,
    sessions: Arc<Sessions>,
    outbound: Arc<Outbound>,
    /// The answer stream of the client request this handle came with, if any: where
    /// requests to the client go while it is open.
    related: Option<Arc<RelatedStream>>,
    state: State,
}

impl Session {
    pub(crate) fn live(
        record: Arc<SessionRecord>,
        sessions: Arc<Sessions>,
        outbound: Arc<Outbound>,
        related: Option<Arc<RelatedStream>>,
    ) -> Self {
        Self {
            record,
            sessions,
            outbound,
            related,
            state: State::Live,
        }
    }

    /// A handle for a session `initialize` is about to create; its attributes wait in
    /// the handle until [`take_pending`](Self::take_pending).
    pub(crate) fn pending(record: Arc<SessionRecord>, sessions: Arc<Sessions>, outbound: Arc<Outbound>) -> Self {
        Self {
            record,
            sessions,
            outbound,
            related: None,
            state: State::Pending(Arc::new(Mutex::new(Some(Map::new())))),
        }
    }

    /// The attributes written to a pending handle, leaving it empty; later writes to
    /// any clone of it go to the store.
    pub(crate) fn take_pending(&self) -> Map<String, Value> {
        self.state.pending().and_then(|mut map| map.take()).unwrap_or_default()
    }

    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.record.id
    }

    /// The record: negotiated version, client info and capabilities, principal.
    pub fn record(&self) -> &SessionRecord {
        &self.record
    }

    /// Read one application attribute.
    pub async fn attribute(&self, key: &str) -> Result<Option<Value>, SessionError> {
        if let Some(map) = self.state.pending() {
            return Ok(map.as_ref().and_then(|m| m.get(key).cloned()));
        }
        self.sessions.attribute(self.id(), key).await
    }

    /// Set (or, with `Value::Null`, remove) one application attribute.
    ///
    /// Fails with [`SessionError::AttributeLimit`] past the layer's bounds
    /// ([`max_attribute_keys`](crate::McpSessionLayerBuilder::max_attribute_keys),
    /// [`max_attribute_bytes`](crate::McpSessionLayerBuilder::max_attribute_bytes)) and
    /// with [`SessionError::Ended`] once the session is gone.
    pub async fn set_attribute(&self, key: &str, value: Value) -> Result<(), SessionError> {
        if let Some(mut map) = self.state.pending() {
            let mut next = map.clone().unwrap_or_default();
            apply(&mut next, key, value);
            self.sessions.check_bounds(&next)?;
            *map = Some(next);
            return Ok(());
        }
        self.sessions.set_attribute(self.id(), key, value).await
    }

    /// All application attributes.
    pub async fn attributes(&self) -> Result<Map<String, Value>, SessionError> {
        if let Some(map) = self.state.pending() {
            return Ok(map.clone().unwrap_or_default());
        }
        self.sessions.attributes(self.id()).await
    }

    /// Send a request to the client and wait for its answer: the `result` on success.
    ///
    /// The layer mints the JSON-RPC id (unguessable, good only in this session) and
    /// sends the request on the SSE stream of the client request this handle came with
    /// while that stream is open, else on the session's standalone `GET` stream, where
    /// it waits for the client's next `GET` if nobody listens. Both are resumable: a
    /// client that drops and resumes still gets the request and can still answer. The
    /// answer may arrive at any instance sharing the event log; only a POST in this
    /// session, from its principal, with this id reaches this call, and only once.
    ///
    /// `params` is the request's `params` object (`Value::Null` for none). The wait ends
    /// after the layer's [`client_request_timeout`](crate::McpSessionLayerBuilder::client_request_timeout)
    /// (see [`request_timeout`](Self::request_timeout) to choose), when the client
    /// cancels, or when the session ends; a request the client did not declare the
    /// capability for (`sampling`, `elicitation` and its modes, `roots`) is refused
    /// before it is sent. Dropping the future withdraws the request: the client is told
    /// with `notifications/cancelled`, and a late answer is refused.
    ///
    /// ```
    /// use serde_json::json;
    /// use tower_mcp_session::{RequestError, Session};
    ///
    /// async fn ask_for_a_summary(session: &Session, text: &str) -> Result<String, RequestError> {
    ///     let params = json!({
    ///         "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
    ///         "maxTokens": 200,
    ///     });
    ///     let result = session.request("sampling/createMessage", params).await?;
    ///     Ok(result["content"]["text"].as_str().unwrap_or_default().to_owned())
    /// }
    /// # let _ = ask_for_a_summary;
    /// ```
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, RequestError> {
        self.request_timeout(method, params, self.outbound.default_wait).await
    }

    /// [`request`](Self::request), waiting at most `wait` for the answer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use serde_json::{Value, json};
    /// use tower_mcp_session::{RequestError, Session};
    ///
    /// async fn roots(session: &Session) -> Result<Value, RequestError> {
    ///     session.request_timeout("roots/list", Value::Null, Duration::from_secs(5)).await
    /// }
    /// # let _ = roots;
    /// ```
    pub async fn request_timeout(&self, method: &str, params: Value, wait: Duration) -> Result<Value, RequestError> {
        if matches!(self.state, State::Pending(_)) {
            return Err(RequestError::NotEstablished);
        }
        let params = (!params.is_null()).then_some(params);
        let asked = self
            .outbound
            .ask(&self.record, self.related.as_deref(), method, params, wait)
            .await;
        match asked {
            // The reply stream vanished: the session's end, unless the store says it
            // lives (the log dropped it on its own); then the answer is lost.
            Err(RequestError::SessionEnded) => match self.sessions.contains(self.id()).await {
                Ok(false) => Err(RequestError::SessionEnded),
                _ => Err(RequestError::Unavailable),
            },
            other => other,
        }
    }

    /// The resource URIs the client subscribed to with `resources/subscribe` (and has not
    /// unsubscribed from), as the layer recorded them. The layer records them in the
    /// session's attributes under `mcp:subscriptions` (the `mcp:` prefix is the layer's),
    /// so every instance sharing the store sees them.
    ///
    /// ```
    /// use tower_mcp_session::Session;
    ///
    /// async fn watching(session: &Session, uri: &str) -> bool {
    ///     session.subscriptions().await.is_ok_and(|uris| uris.iter().any(|u| u == uri))
    /// }
    /// # let _ = watching;
    /// ```
    pub async fn subscriptions(&self) -> Result<Vec<String>, SessionError> {
        let value = self.attribute(client_state::SUBSCRIPTIONS).await?;
        Ok(client_state::uris(value.as_ref()).map(str::to_owned).collect())
    }

    /// The level of the client's last `logging/setLevel` (`"debug"`, `"info"`, …), as
    /// the layer recorded it (attribute `mcp:logLevel`); `None` before any.
    ///
    /// ```
    /// use tower_mcp_session::Session;
    ///
    /// async fn wants_debug(session: &Session) -> bool {
    ///     session.log_level().await.ok().flatten().as_deref() == Some("debug")
    /// }
    /// # let _ = wants_debug;
    /// ```
    pub async fn log_level(&self) -> Result<Option<String>, SessionError> {
        let value = self.attribute(client_state::LOG_LEVEL).await?;
        Ok(value.and_then(|v| v.as_str().map(str::to_owned)))
    }

    /// End the session now; later requests with its id get 404. `Ok(false)` when it had
    /// ended already.
    pub async fn close(&self) -> Result<bool, SessionError> {
        self.sessions
            .end(self.id(), CloseReason::Closed)
            .await
            .map_err(SessionError::Store)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}
