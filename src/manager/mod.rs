//! [`SessionManager`]: the application's handle on the sessions of a layer.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::timeout;

use crate::event_log::StreamKey;
use crate::layer::Shared;
use crate::metrics::Metrics;
use crate::session::{CloseReason, SessionId};
use crate::session::SessionError;
use crate::stream::standalone_stream;

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
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownSession => "no such session",
            Self::InvalidMessage => "message is not a single JSON value",
            Self::Unavailable => "session store or event log unavailable",
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
    shared: Arc<Shared>,
}

impl SessionManager {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
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
        let shared = &self.shared;
        let wait = shared.store_timeout;
        match shared.sessions.contains(session).await {
            Ok(true) => {}
            Ok(false) => return Err(SendError::UnknownSession),
            Err(_) => return Err(SendError::Unavailable),
        }
        let key = StreamKey::new(session.clone(), standalone_stream(session));
        let appended = timeout(wait, async {
            shared.log.open(&key).await?;
            shared.log.append(&key, message).await
        })
        .await;
        match appended {
            Ok(Ok(_)) => Ok(()),
            _ => Err(SendError::Unavailable),
        }
    }

    /// Queue a message for every session with a GET stream open on this instance;
    /// returns how many were queued.
    pub async fn broadcast<T: serde::Serialize + ?Sized>(&self, message: &T) -> usize {
        let Ok(bytes) = serde_json::to_vec(message) else {
            return 0;
        };
        let bytes = Bytes::from(bytes);
        let mut sent = 0;
        for session in self.shared.streams.sessions_listening() {
            if self.append(&session, bytes.clone()).await.is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// End `session` now; `Ok(true)` when it existed. Its streams end too.
    pub async fn close(&self, session: &SessionId) -> Result<bool, SessionError> {
        self.shared
            .sessions
            .end(session, CloseReason::Closed)
            .await
            .map_err(SessionError::Store)
    }

    /// The layer's counters.
    pub fn metrics(&self) -> Metrics {
        self.shared
            .counters
            .snapshot(self.shared.streams.session_count())
    }
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager").finish_non_exhaustive()
    }
}
