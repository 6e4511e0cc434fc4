//! Where sessions live: the [`SessionStore`] trait and its implementations.
//!
//! The layer talks to the store through `Arc<dyn SessionStore>`, so a store is chosen at
//! run time. [`MemoryStore`] is the default; the `redis` feature adds a store shared by
//! many instances.

mod memory;

pub use memory::{AtCapacity, MemoryStore, MemoryStoreBuilder};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::session::{CloseReason, SessionId, SessionRecord};
use crate::util::BoxFuture;

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use self::redis::{RedisSessionStore, RedisSessionStoreBuilder};
#[cfg(feature = "redis")]
pub use crate::redis_common::RedisConnection;

/// A callback told, exactly once per session, that the session ended and why.
pub type CloseListener = Arc<dyn Fn(&SessionId, CloseReason) + Send + Sync>;

/// A boxed error from a store's backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a store could not do what was asked.
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session::store::StoreError;
///
/// let full = StoreError::AtCapacity { retry_after: Duration::from_secs(5) };
/// assert_eq!(full.to_string(), "the session store is at capacity");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The session cap is reached and no session could make room; the layer answers 503
    /// with `Retry-After`.
    AtCapacity {
        /// How long the client should wait before trying again.
        retry_after: Duration,
    },
    /// The backend could not be reached or failed; the layer answers 503.
    Unavailable(BoxError),
    /// An attribute write would take the session past the store's bound on the number
    /// or total size of its attributes; nothing was written. The bound keeps one
    /// session from growing without limit; it is the application's error, not the
    /// client's, and the layer never produces it.
    AttributeLimit,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AtCapacity { .. } => f.write_str("the session store is at capacity"),
            Self::Unavailable(_) => f.write_str("the session store is unavailable"),
            Self::AttributeLimit => f.write_str("the session's attributes would exceed the store's limit"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(e) => Some(&**e),
            Self::AtCapacity { .. } | Self::AttributeLimit => None,
        }
    }
}

/// Room for one new session, held between the capacity check and the store write.
///
/// The layer reserves *before* it calls the inner service with `initialize`, so the
/// session cap holds exactly under any concurrency: two racing initializes can never
/// both take the last slot. Dropping a reservation gives the slot back; [`commit`]
/// hands it to the session just written.
///
/// [`commit`]: Reservation::commit
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use tower_mcp_session::store::Reservation;
///
/// let used = Arc::new(AtomicUsize::new(1));
/// let u = used.clone();
/// drop(Reservation::new(move || { u.fetch_sub(1, Ordering::SeqCst); }));
/// assert_eq!(used.load(Ordering::SeqCst), 0);
/// ```
pub struct Reservation {
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Reservation {
    /// A reservation that runs `release` unless it is committed.
    pub fn new(release: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self {
            release: Some(Box::new(release)),
        }
    }

    /// A reservation with nothing to give back (stores without a cap).
    pub fn unlimited() -> Self {
        Self { release: None }
    }

    /// Keep the slot: it now belongs to a stored session.
    pub fn commit(mut self) {
        self.release = None;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("armed", &self.release.is_some())
            .finish()
    }
}

/// Storage for sessions: object safe, so the layer holds an `Arc<dyn SessionStore>`.
///
/// The layer's use of a store, per request:
/// - `initialize`: [`reserve`](Self::reserve) before the inner call, then
///   [`insert`](Self::insert) if the inner service answered with an `InitializeResult`
///   (dropping the reservation otherwise).
/// - every other legacy request: [`acquire`](Self::acquire) (one lookup that also marks
///   the session busy) and, when the request and its response stream are done,
///   [`release`](Self::release), which starts the idle clock.
/// - `DELETE`: [`remove`](Self::remove).
///
/// Implementations enforce idle timeout and lifetime: `acquire` never returns an
/// expired session. They call every registered close listener exactly once per session.
pub trait SessionStore: Send + Sync + 'static {
    /// Make room for one new session, or fail with [`StoreError::AtCapacity`].
    fn reserve(&self) -> BoxFuture<'_, Result<Reservation, StoreError>>;

    /// Store a new session in the room `reservation` holds.
    fn insert(
        &self,
        reservation: Reservation,
        record: SessionRecord,
    ) -> BoxFuture<'_, Result<Arc<SessionRecord>, StoreError>>;

    /// Look a live session up and mark it busy (a request in flight or a stream
    /// attached); `None` when it does not exist, expired or was closed.
    fn acquire<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>>;

    /// Whether a live session with this id exists. Unlike [`acquire`](Self::acquire) it
    /// neither marks the session busy nor counts as activity: server-side traffic must
    /// not keep a session alive.
    fn contains<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// End one busy period begun by [`acquire`](Self::acquire); the idle clock
    /// restarts when the last busy period of the session ends. Never blocks.
    fn release(&self, id: &SessionId);

    /// End a session; `Ok(true)` when it existed. Close listeners run with `reason`.
    fn remove<'a>(&'a self, id: &'a SessionId, reason: CloseReason) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Read one application attribute of a session.
    fn attribute<'a>(&'a self, id: &'a SessionId, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, StoreError>>;

    /// Write one application attribute; `Value::Null` removes it.
    ///
    /// Stores bound each session's attributes; a write past the bound fails with
    /// [`StoreError::AttributeLimit`] and changes nothing.
    fn set_attribute<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// All application attributes of a session.
    fn attributes<'a>(&'a self, id: &'a SessionId)
    -> BoxFuture<'a, Result<serde_json::Map<String, Value>, StoreError>>;

    /// Register a listener told about every session that ends.
    fn add_close_listener(&self, listener: CloseListener);

    /// How many sessions are live, when the store can tell cheaply.
    fn len_hint(&self) -> Option<usize> {
        None
    }
}

/// Holds one busy period of a session open: made after a successful
/// [`SessionStore::acquire`], it calls [`SessionStore::release`] when dropped, so the
/// idle clock starts when the last request, response stream or attached reader of the
/// session is done, however it ends.
pub(crate) struct BusyGuard {
    store: Arc<dyn SessionStore>,
    id: SessionId,
}

impl BusyGuard {
    pub(crate) fn new(store: Arc<dyn SessionStore>, id: SessionId) -> Self {
        Self { store, id }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.store.release(&self.id);
    }
}
