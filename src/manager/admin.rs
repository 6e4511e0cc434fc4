//! [`SessionAdmin`]: what an operator does with the sessions of a layer — count and
//! list them (across every instance sharing the store), look at one, end one or every
//! session of a principal.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::engine::Engine;
use crate::lifecycle::SessionError;
use crate::lifecycle::sessions::Walk;
use crate::session::{CloseReason, Principal, SessionId, SessionRecord};
use crate::store::SessionPage;

/// Sessions asked for per page by the walks of [`SessionAdmin::count`] and
/// [`SessionAdmin::terminate_principal`].
const WALK_PAGE: usize = 256;

/// The operator's handle on the sessions of one layer, from
/// [`SessionManager::admin`](super::SessionManager::admin). Listing and counting cover
/// every instance sharing the store; what is said about streams and requests in flight
/// is this instance's view. Cheap to clone.
///
/// Put it behind your own authentication: it names every session and its principal.
///
/// ```
/// use tower_mcp_session::McpSessionLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_mcp_session::SessionError> {
/// let admin = McpSessionLayer::new().manager().admin();
/// assert_eq!(admin.count().await?, 0);
/// let page = admin.list(None, 50).await?;
/// assert!(page.sessions.is_empty() && page.next.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SessionAdmin {
    engine: Arc<Engine>,
}

/// What [`SessionAdmin::inspect`] tells about one live session.
///
/// ```
/// use tower_mcp_session::McpSessionLayer;
/// use tower_mcp_session::SessionId;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_mcp_session::SessionError> {
/// let admin = McpSessionLayer::new().manager().admin();
/// let nobody = SessionId::parse("nobody").unwrap();
/// assert!(admin.inspect(&nobody).await?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The stored record: id, protocol version, creation time, client info and
    /// capabilities as the client sent them, principal.
    pub record: Arc<SessionRecord>,
    /// The session's attributes, the layer's own (`mcp:`-prefixed: subscriptions, log
    /// level) included.
    pub attributes: Map<String, Value>,
    /// Clients attached to the session's streams on this instance right now.
    pub readers_here: usize,
    /// Whether a request or stream of the session is in flight on this instance.
    pub busy_here: bool,
    /// How long the session has gone without activity, by the store's clock (see
    /// [`SessionStore::idle_for`](crate::store::SessionStore::idle_for)): its creation
    /// and every request count, and so do the keep-alive touches the layer makes every
    /// third of the idle timeout while a request or stream of it is in flight anywhere.
    pub idle_for: Duration,
    /// When that activity was, by this machine's clock: now less
    /// [`idle_for`](Self::idle_for), read when `inspect` answered.
    pub last_activity: SystemTime,
}

impl SessionAdmin {
    pub(super) fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    /// One page of live session ids, starting at `cursor` (`None` first, then the
    /// previous page's `next`), at most `max` (the store may cap it lower). A walk to
    /// the end names every session live throughout it once; see
    /// [`SessionStore::list`](crate::store::SessionStore::list).
    ///
    /// ```
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_mcp_session::SessionError> {
    /// let admin = McpSessionLayer::new().manager().admin();
    /// let mut cursor = None;
    /// loop {
    ///     let page = admin.list(cursor.as_deref(), 100).await?;
    ///     for id in &page.sessions {
    ///         println!("{id}");
    ///     }
    ///     match page.next {
    ///         Some(next) => cursor = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list(&self, cursor: Option<&str>, max: usize) -> Result<SessionPage, SessionError> {
        self.engine
            .sessions()
            .list(cursor, max)
            .await
            .map_err(SessionError::Store)
    }

    /// How many sessions are live, across instances: a walk of the whole list, so its
    /// cost grows with the number of sessions (the layer's
    /// [`Metrics`](crate::Metrics) count this instance's without a walk).
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
    pub async fn count(&self) -> Result<usize, SessionError> {
        let sessions = self.engine.sessions();
        let mut walk = Walk::default();
        let mut total = 0;
        while let Some(ids) = sessions
            .next_page(&mut walk, WALK_PAGE)
            .await
            .map_err(SessionError::Store)?
        {
            total += ids.len();
        }
        Ok(total)
    }

    /// The live session `id`, or `None`. Reading is not activity. Three store calls:
    /// the record, the attributes, the idle time.
    ///
    /// ```
    /// use tower_mcp_session::{McpSessionLayer, SessionId};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_mcp_session::SessionError> {
    /// let admin = McpSessionLayer::new().manager().admin();
    /// assert!(admin.inspect(&SessionId::parse("gone").unwrap()).await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn inspect(&self, id: &SessionId) -> Result<Option<SessionInfo>, SessionError> {
        let sessions = self.engine.sessions();
        let Some(record) = sessions.record(id).await.map_err(SessionError::Store)? else {
            return Ok(None);
        };
        let attributes = sessions.attributes(id).await?;
        // Ended between the two reads: gone, as if the record had not been found.
        let Some(idle_for) = sessions.idle_for(id).await.map_err(SessionError::Store)? else {
            return Ok(None);
        };
        let now = SystemTime::now();
        Ok(Some(SessionInfo {
            record,
            attributes,
            readers_here: self.engine.streams().attached_readers(id),
            busy_here: sessions.is_busy_here(id),
            idle_for,
            last_activity: now.checked_sub(idle_for).unwrap_or(now),
        }))
    }

    /// End the session `id` now, wherever its streams are served; `Ok(true)` when it
    /// was live. Close listeners hear [`CloseReason::Closed`].
    ///
    /// ```
    /// use tower_mcp_session::{McpSessionLayer, SessionId};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_mcp_session::SessionError> {
    /// let admin = McpSessionLayer::new().manager().admin();
    /// assert!(!admin.terminate(&SessionId::parse("gone").unwrap()).await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn terminate(&self, id: &SessionId) -> Result<bool, SessionError> {
        self.engine
            .sessions()
            .end(id, CloseReason::Closed)
            .await
            .map_err(SessionError::Store)
    }

    /// End every live session of `principal`, across instances; how many were ended.
    /// A walk of the whole list, reading each record.
    ///
    /// ```
    /// use tower_mcp_session::{McpSessionLayer, Principal};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_mcp_session::SessionError> {
    /// let admin = McpSessionLayer::new().manager().admin();
    /// assert_eq!(admin.terminate_principal(&Principal::new("mallory")).await?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn terminate_principal(&self, principal: &Principal) -> Result<usize, SessionError> {
        let sessions = self.engine.sessions();
        let mut walk = Walk::default();
        let mut ended = 0;
        while let Some(ids) = sessions
            .next_page(&mut walk, WALK_PAGE)
            .await
            .map_err(SessionError::Store)?
        {
            for id in &ids {
                let record = sessions.record(id).await.map_err(SessionError::Store)?;
                if record.is_some_and(|r| r.principal() == Some(principal)) && self.terminate(id).await? {
                    ended += 1;
                }
            }
        }
        Ok(ended)
    }
}

impl fmt::Debug for SessionAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionAdmin").finish_non_exhaustive()
    }
}
