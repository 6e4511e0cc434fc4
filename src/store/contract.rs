//! The [`SessionStore`] contract: what a backend stores and the atomic steps only it can
//! take. Everything else — busy counting, keep-alive, cap policy, close listeners,
//! attribute and record bounds — is done once, for every backend, by the layer's engine.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::session::{CloseReason, SessionId, SessionRecord};

/// A boxed, sendable future: what every store and event-log method returns, so the
/// traits stay object safe (`Arc<dyn SessionStore>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A boxed error from a backend's driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a store could not do what was asked. Each variant is a refusal the engine tells
/// apart; a backend maps its driver's failures to [`Backend`](Self::Backend).
///
/// ```
/// use tower_mcp_session::store::StoreError;
///
/// assert_eq!(StoreError::Full.to_string(), "the session store is at capacity");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// [`SessionStore::reserve`]: live sessions and outstanding slots already reach the cap.
    Full,
    /// [`SessionStore::create`]: a session with this id exists already; nothing was written.
    Exists,
    /// The backend does not offer this operation (only
    /// [`SessionStore::idle_sessions`] may answer this).
    Unsupported,
    /// The backend could not be reached or failed.
    Backend(BoxError),
}

impl StoreError {
    /// Wrap a driver error.
    ///
    /// ```
    /// use tower_mcp_session::store::StoreError;
    ///
    /// let e = StoreError::backend(std::io::Error::other("connection refused"));
    /// assert!(matches!(e, StoreError::Backend(_)));
    /// ```
    pub fn backend(error: impl Into<BoxError>) -> Self {
        Self::Backend(error.into())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full => "the session store is at capacity",
            Self::Exists => "a session with this id exists already",
            Self::Unsupported => "the session store does not support this operation",
            Self::Backend(_) => "the session store is unavailable",
        })
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(e) => Some(&**e),
            _ => None,
        }
    }
}

/// A place toward the session cap, taken by [`SessionStore::reserve`] before the inner
/// service answers `initialize`, and either consumed by [`SessionStore::create`] or
/// given back by [`SessionStore::cancel`]. A slot neither consumed nor given back lapses
/// by itself after the `hold` passed to `reserve`, so a crashed instance leaks nothing.
///
/// The token is the backend's own: whatever it needs to find the slot again.
///
/// ```
/// use tower_mcp_session::store::Slot;
///
/// let slot = Slot::new(42);
/// assert_eq!(slot.token(), 42);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot(u64);

impl Slot {
    /// A slot known to the backend by `token`.
    pub const fn new(token: u64) -> Self {
        Self(token)
    }

    /// The backend's token.
    pub const fn token(self) -> u64 {
        self.0
    }
}

/// How long a session lives, as the engine asks the backend to enforce it.
///
/// A session expires at the earlier of `idle` after its last [`create`], [`load`] with
/// a refresh, or [`touch`], and `lifetime` after its [`create`], both by the backend's
/// clock. An expired session is gone for every reader at once, whether or not the
/// backend has removed it yet.
///
/// [`create`]: SessionStore::create
/// [`load`]: SessionStore::load
/// [`touch`]: SessionStore::touch
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session::store::Expiry;
///
/// let expiry = Expiry { idle: Duration::from_secs(1800), lifetime: Duration::from_secs(86_400) };
/// assert!(expiry.idle < expiry.lifetime);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// How long the session may go without activity.
    pub idle: Duration,
    /// How long the session may live at all.
    pub lifetime: Duration,
}

/// A session's application attributes with the version they were read at, for
/// [`SessionStore::replace_attributes`]'s compare-and-set.
///
/// ```
/// use tower_mcp_session::store::Attributes;
///
/// let attrs = Attributes::default();
/// assert_eq!(attrs.version, 0);
/// assert!(attrs.map.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    /// The attributes, one JSON value per key.
    pub map: Map<String, Value>,
    /// Starts at 0 when the session is created; every successful replace adds one.
    pub version: u64,
}

/// What [`SessionStore::replace_attributes`] did.
///
/// ```
/// use tower_mcp_session::store::Replaced;
///
/// assert_ne!(Replaced::Done, Replaced::Conflict);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    /// Written; the stored version is now the expected one plus one.
    Done,
    /// The stored version was not the expected one; nothing was written.
    Conflict,
    /// No live session has this id; nothing was written.
    Missing,
}

/// A session that ended without anyone deleting it, as reported by
/// [`SessionStore::take_expired`].
///
/// ```
/// use tower_mcp_session::{CloseReason, SessionId};
/// use tower_mcp_session::store::Expired;
///
/// let gone = Expired { id: SessionId::parse("s1").unwrap(), reason: CloseReason::Idle };
/// assert_eq!(gone.reason, CloseReason::Idle);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The session.
    pub id: SessionId,
    /// [`CloseReason::Idle`] or [`CloseReason::Lifetime`], as far as the backend can
    /// tell (a backend that cannot tell says `Idle`).
    pub reason: CloseReason,
}

/// One step of [`SessionStore::take_expired`].
///
/// ```
/// use tower_mcp_session::store::ExpiredBatch;
///
/// let none = ExpiredBatch::default();
/// assert!(none.sessions.is_empty() && !none.more);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiredBatch {
    /// Sessions found expired and removed in this step; each is reported once, to one
    /// caller, across every instance sharing the store.
    pub sessions: Vec<Expired>,
    /// Whether calling again now may find more (the backend stopped at its bound).
    pub more: bool,
}

/// One page of [`SessionStore::list`]: live session ids in the backend's order, and the
/// cursor of the next page.
///
/// ```
/// use tower_mcp_session::store::SessionPage;
///
/// let last = SessionPage::default();
/// assert!(last.sessions.is_empty() && last.next.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionPage {
    /// The sessions of this page, at most the `max` asked for.
    pub sessions: Vec<SessionId>,
    /// Where the next page starts, to pass back to [`SessionStore::list`]; `None` when
    /// the walk is complete. Opaque: only the backend that gave it knows its form.
    pub next: Option<String>,
}

/// Storage for sessions, as a backend implements it.
///
/// The engine behind [`McpSessionLayer`](crate::McpSessionLayer) calls it like this:
/// - `initialize`: [`reserve`](Self::reserve) (only with a session cap) before the inner
///   call, then [`create`](Self::create) if the inner service answered with an
///   `InitializeResult`, or [`cancel`](Self::cancel) if not.
/// - every other 2025-era request: [`load`](Self::load) with a refresh (one step that
///   reads the session and counts as activity); while the request or its stream is in
///   flight, [`touch`](Self::touch) every third of the idle timeout; once more when it
///   ends.
/// - `DELETE` and explicit closes: [`delete`](Self::delete).
/// - attribute writes: [`attributes`](Self::attributes), then
///   [`replace_attributes`](Self::replace_attributes), retried on conflict.
/// - periodically: [`take_expired`](Self::take_expired), to tell close listeners about
///   sessions that expired.
/// - at the cap, with the evict-idle policy: [`idle_sessions`](Self::idle_sessions),
///   then [`delete`](Self::delete) of a candidate.
/// - fan-out to every session or every subscriber of a resource, and the admin
///   listing: [`list`](Self::list), page after page.
/// - the admin handle's look at one session: [`idle_for`](Self::idle_for).
///
/// Every method is one atomic step with respect to every other call on the same
/// session, from any instance sharing the backend. There are no default methods: a
/// backend says what it does for each. The engine bounds what it writes (record size,
/// attribute count and bytes) before calling, so a backend need not re-check them; it
/// must not grow anything else a client can make it hold. Prove a backend with
/// the `conformance` module (feature `conformance`).
///
/// `Arc<T>` is a store wherever `T` is, so one store can be shared with other code.
pub trait SessionStore: Send + Sync + 'static {
    /// Take one place toward `cap`: succeeds only while stored sessions plus outstanding
    /// slots number fewer than `cap`, atomically with every other `reserve`, `create` and
    /// `delete`; otherwise [`StoreError::Full`]. Lapsed slots never count. An expired
    /// session may keep its place until [`take_expired`](Self::take_expired) takes it:
    /// on `Full` the engine takes expired sessions (so their ends are reported) and
    /// tries again. A slot not consumed or cancelled lapses `hold` after this call.
    fn reserve(&self, cap: usize, hold: Duration) -> BoxFuture<'_, Result<Slot, StoreError>>;

    /// Give back a slot that will not be used. Cancelling a lapsed or consumed slot does
    /// nothing.
    fn cancel(&self, slot: Slot) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Store a new session with `attributes` (version 0) and `expiry`, consuming `slot`
    /// when one is given (the session then holds that place toward the cap until it
    /// ends). Fails with [`StoreError::Exists`], writing nothing, when a live session has
    /// the id already.
    fn create<'a>(
        &'a self,
        record: &'a SessionRecord,
        attributes: &'a Map<String, Value>,
        expiry: Expiry,
        slot: Option<Slot>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The live session `id`, or `None` when there is none (never created, expired or
    /// deleted). With `refresh`, the same step pushes the idle expiry to `refresh` from
    /// now, never past the lifetime: this is how a request counts as activity. Without
    /// it, the read changes nothing.
    ///
    /// A backend that caches in the process (to spare the round trip) may answer from
    /// its cache, provided it never answers a session past its expiry, sees a deletion
    /// through this handle at once, and sees one through another handle within a
    /// bound it documents and tests (the Redis store's `local_cache`: pub/sub
    /// delivery; measured in `BENCHMARKS.md`). Its refreshes may then be spaced out,
    /// which makes idle expiry earlier by at most the spacing, never later.
    fn load<'a>(
        &'a self,
        id: &'a SessionId,
        refresh: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>>;

    /// Push the idle expiry of a live session to `idle` from now (never past its
    /// lifetime); `Ok(false)` when there is no live session `id`.
    fn touch<'a>(&'a self, id: &'a SessionId, idle: Duration) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Remove a session, its attributes and its place toward the cap. `Ok(true)` for
    /// exactly one of any number of concurrent calls, across instances, and only when
    /// the session was live; a session removed here is never reported by
    /// [`take_expired`](Self::take_expired).
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// The attributes of a live session with their version; `None` when there is none.
    /// Reading is not activity.
    fn attributes<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Attributes>, StoreError>>;

    /// Replace the attributes of a live session with `map`, only if their stored version
    /// is `expected` (compare-and-set). Does not change the session's expiry.
    fn replace_attributes<'a>(
        &'a self,
        id: &'a SessionId,
        expected: u64,
        map: &'a Map<String, Value>,
    ) -> BoxFuture<'a, Result<Replaced, StoreError>>;

    /// Remove up to `max` sessions that have expired and report them. Each expired
    /// session is reported exactly once across every instance sharing the backend,
    /// unless [`delete`](Self::delete) got it first. A backend bounds the work of one
    /// call and says in [`ExpiredBatch::more`] whether to call again now. The engine
    /// calls it every sweep interval; a backend documents how long after expiry it
    /// reports a session at the most.
    fn take_expired(&self, max: usize) -> BoxFuture<'_, Result<ExpiredBatch, StoreError>>;

    /// Up to `max` live sessions with no activity for at least `idle_for`, least
    /// recently active first, for the evict-idle cap policy. A backend that cannot
    /// answer this cheaply says [`StoreError::Unsupported`], and the engine then
    /// refuses newcomers at the cap instead of evicting.
    fn idle_sessions(&self, idle_for: Duration, max: usize) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>>;

    /// One page of the live sessions, across every instance sharing the backend: up to
    /// `max` of them (at least one when any is left, whatever `max` says; a backend may
    /// cap a page lower), starting at `cursor` (`None` for the first page, else the
    /// [`SessionPage::next`] of the previous one). A walk from the first page until
    /// `next` is `None` lists every session that was live for the whole walk exactly
    /// once, never one that ended before the walk began, and sessions created or ended
    /// during the walk at most once. A cursor the backend never gave may be answered
    /// with any page or an empty one, but never with an error or a panic: cursors come
    /// back from callers. Reading is not activity.
    fn list<'a>(&'a self, cursor: Option<&'a str>, max: usize) -> BoxFuture<'a, Result<SessionPage, StoreError>>;

    /// How long the live session `id` has gone without activity, by the backend's
    /// clock: the time since its last [`create`](Self::create), [`load`](Self::load)
    /// with a refresh, or [`touch`](Self::touch) took effect — exactly the steps that
    /// push its idle expiry. Nothing else is activity: plain loads, attribute reads and
    /// writes, [`list`](Self::list) and this call change nothing. `None` when there is
    /// no live session `id` (never created, expired or deleted).
    ///
    /// The answer is never more than the time that really passed since that activity
    /// (a backend may round down to its clock's granularity), also when the session's
    /// lifetime, not its idle timeout, is what ends it next. The admin handle reads it
    /// for [`SessionAdmin::inspect`](crate::SessionAdmin::inspect); it is off the
    /// request path and may cost a round trip of its own.
    fn idle_for<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Duration>, StoreError>>;
}

impl<T: SessionStore + ?Sized> SessionStore for Arc<T> {
    fn reserve(&self, cap: usize, hold: Duration) -> BoxFuture<'_, Result<Slot, StoreError>> {
        (**self).reserve(cap, hold)
    }

    fn cancel(&self, slot: Slot) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).cancel(slot)
    }

    fn create<'a>(
        &'a self,
        record: &'a SessionRecord,
        attributes: &'a Map<String, Value>,
        expiry: Expiry,
        slot: Option<Slot>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).create(record, attributes, expiry, slot)
    }

    fn load<'a>(
        &'a self,
        id: &'a SessionId,
        refresh: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>> {
        (**self).load(id, refresh)
    }

    fn touch<'a>(&'a self, id: &'a SessionId, idle: Duration) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).touch(id, idle)
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).delete(id)
    }

    fn attributes<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Attributes>, StoreError>> {
        (**self).attributes(id)
    }

    fn replace_attributes<'a>(
        &'a self,
        id: &'a SessionId,
        expected: u64,
        map: &'a Map<String, Value>,
    ) -> BoxFuture<'a, Result<Replaced, StoreError>> {
        (**self).replace_attributes(id, expected, map)
    }

    fn take_expired(&self, max: usize) -> BoxFuture<'_, Result<ExpiredBatch, StoreError>> {
        (**self).take_expired(max)
    }

    fn idle_sessions(&self, idle_for: Duration, max: usize) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        (**self).idle_sessions(idle_for, max)
    }

    fn list<'a>(&'a self, cursor: Option<&'a str>, max: usize) -> BoxFuture<'a, Result<SessionPage, StoreError>> {
        (**self).list(cursor, max)
    }

    fn idle_for<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        (**self).idle_for(id)
    }
}
