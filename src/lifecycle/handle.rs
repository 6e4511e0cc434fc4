//! [`Session`]: the handle the inner service finds in the request extensions.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value};

use super::sessions::{Sessions, apply};
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
    state: State,
}

impl Session {
    pub(crate) fn live(record: Arc<SessionRecord>, sessions: Arc<Sessions>) -> Self {
        Self {
            record,
            sessions,
            state: State::Live,
        }
    }

    /// A handle for a session `initialize` is about to create; its attributes wait in
    /// the handle until [`take_pending`](Self::take_pending).
    pub(crate) fn pending(record: Arc<SessionRecord>, sessions: Arc<Sessions>) -> Self {
        Self {
            record,
            sessions,
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
