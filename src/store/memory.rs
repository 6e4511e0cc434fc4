//! The in-process session store: [`MemoryStore`].
//!
//! Sessions live in a sharded concurrent map, so lookups on the request path take one
//! shard's read lock and a few atomic operations; nothing on that path is global.
//! Idle and lifetime expiry are enforced on every lookup and by a background sweeper,
//! so expired sessions really leave memory even when no client ever comes back.

use std::collections::BinaryHeap;
use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use crate::util::FastDashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{CloseListener, Reservation, SessionStore, StoreError};
use crate::session::{CloseReason, SessionId, SessionRecord};
use crate::util::BoxFuture;

const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
const DEFAULT_MAX_SESSIONS: usize = 10_000;
const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
const DEFAULT_MAX_ATTRIBUTE_KEYS: usize = 64;
const DEFAULT_MAX_ATTRIBUTE_BYTES: usize = 64 * 1024;

/// A sweeper waking more often than this would burn a core for nothing.
const MIN_SWEEP_INTERVAL: Duration = Duration::from_millis(10);

/// How many times one `reserve` makes room for itself before giving up. Room made by an
/// eviction can be taken by a racing `reserve` that never waited, so one attempt is not
/// always enough; a bound keeps a creation flood from turning into an eviction storm.
const RESERVE_ATTEMPTS: usize = 8;

/// How many eviction candidates one scan remembers. A scan costs one pass over every
/// session; remembering the oldest idle ones spreads that cost over many evictions.
const CANDIDATES: usize = 1024;

/// After a scan found nothing to evict, the shortest wait before the next one. It only
/// matters with `min_idle` of zero, where a session can become eligible at any moment:
/// it caps the cost of a creation flood against an all-busy store at one scan per
/// millisecond instead of one per refused request.
const RESCAN_FLOOR: Duration = Duration::from_millis(1);

/// Below this many slots the table is too small for shrinking to be worth a rehash.
const SHRINK_ABOVE: usize = 4096;

/// What [`MemoryStore`] does when a new session would exceed
/// [`max_sessions`](MemoryStoreBuilder::max_sessions).
///
/// The default is [`Refuse`](Self::Refuse) with a 5 second `retry_after`. Under a flood
/// of new sessions, evicting existing ones hands the attacker every slot and logs real
/// users out; telling the newcomer to come back later (503 with `Retry-After`) keeps
/// the sessions already working intact. [`EvictIdle`](Self::EvictIdle) is for servers
/// whose clients routinely abandon sessions without `DELETE` and where making room for
/// a newcomer matters more than keeping a long-idle session.
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session::store::{AtCapacity, MemoryStore};
///
/// let store = MemoryStore::builder()
///     .max_sessions(1_000)
///     .at_capacity(AtCapacity::EvictIdle {
///         min_idle: Duration::from_secs(60),
///         retry_after: Duration::from_secs(2),
///     })
///     .build();
/// # let _ = store;
/// assert!(matches!(AtCapacity::default(), AtCapacity::Refuse { .. }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AtCapacity {
    /// Refuse the new session with [`StoreError::AtCapacity`].
    Refuse {
        /// How long the client is told to wait.
        retry_after: Duration,
    },
    /// Evict the least recently active idle session, if one has been idle for at
    /// least `min_idle`; otherwise refuse like [`Refuse`](Self::Refuse).
    ///
    /// A session is idle when none of its busy periods (see
    /// [`SessionStore::acquire`]) is open. A busy session is never evicted. The evicted
    /// session ends with [`CloseReason::Evicted`].
    EvictIdle {
        /// How long a session must have been idle to be evicted.
        min_idle: Duration,
        /// How long the client is told to wait when no session can be evicted.
        retry_after: Duration,
    },
}

impl AtCapacity {
    fn retry_after(self) -> Duration {
        match self {
            Self::Refuse { retry_after } | Self::EvictIdle { retry_after, .. } => retry_after,
        }
    }
}

impl Default for AtCapacity {
    fn default() -> Self {
        Self::Refuse {
            retry_after: DEFAULT_RETRY_AFTER,
        }
    }
}

#[derive(Debug, Clone)]
struct Config {
    idle_timeout: Duration,
    max_lifetime: Option<Duration>,
    max_sessions: usize,
    at_capacity: AtCapacity,
    sweep_interval: Duration,
    max_attribute_keys: usize,
    max_attribute_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            max_sessions: DEFAULT_MAX_SESSIONS,
            at_capacity: AtCapacity::default(),
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            max_attribute_keys: DEFAULT_MAX_ATTRIBUTE_KEYS,
            max_attribute_bytes: DEFAULT_MAX_ATTRIBUTE_BYTES,
        }
    }
}

/// Configures a [`MemoryStore`]; made by [`MemoryStore::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session::store::MemoryStore;
///
/// let store = MemoryStore::builder()
///     .idle_timeout(Duration::from_secs(10 * 60))
///     .max_lifetime(None)
///     .max_sessions(50_000)
///     .on_close(|id, reason| println!("session {id} ended: {}", reason.as_str()))
///     .build();
/// # let _ = store;
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct MemoryStoreBuilder {
    config: Config,
    listeners: Vec<CloseListener>,
}

impl MemoryStoreBuilder {
    /// End a session once it has been idle this long (default 30 minutes).
    ///
    /// Idle time is counted from the end of the session's last busy period, never
    /// from its start: a session with a request in flight or a stream attached does
    /// not idle out, however long that takes, and server-to-client traffic is not
    /// activity.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::store::MemoryStore;
    ///
    /// let store = MemoryStore::builder().idle_timeout(Duration::from_secs(300)).build();
    /// # let _ = store;
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// End a session this long after it was created, busy or not (default 24 hours;
    /// `None` for no limit).
    ///
    /// Age counts from the record's [`created_at`](SessionRecord::created_at), so a
    /// record reloaded with an earlier creation time keeps its age.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::store::MemoryStore;
    ///
    /// let store = MemoryStore::builder().max_lifetime(Some(Duration::from_secs(8 * 3600))).build();
    /// # let _ = store;
    /// ```
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.config.max_lifetime = lifetime;
        self
    }

    /// Hold at most this many sessions (default 10,000).
    ///
    /// The bound is exact under any concurrency: it counts live sessions plus
    /// outstanding [`Reservation`]s. Zero refuses every session.
    ///
    /// ```
    /// use tower_mcp_session::store::MemoryStore;
    ///
    /// let store = MemoryStore::builder().max_sessions(100).build();
    /// # let _ = store;
    /// ```
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.config.max_sessions = max;
        self
    }

    /// What to do when the cap is reached (default: refuse, retry after 5 seconds).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::store::{AtCapacity, MemoryStore};
    ///
    /// let store = MemoryStore::builder()
    ///     .at_capacity(AtCapacity::Refuse { retry_after: Duration::from_secs(30) })
    ///     .build();
    /// # let _ = store;
    /// ```
    pub fn at_capacity(mut self, policy: AtCapacity) -> Self {
        self.config.at_capacity = policy;
        self
    }

    /// How often the background sweeper removes expired sessions (default 30
    /// seconds; at least 10 ms).
    ///
    /// Lookups never return an expired session whatever this is set to; the sweeper
    /// bounds how long an abandoned session keeps its memory and when its close
    /// listeners hear about it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::store::MemoryStore;
    ///
    /// let store = MemoryStore::builder().sweep_interval(Duration::from_secs(5)).build();
    /// # let _ = store;
    /// ```
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.config.sweep_interval = interval.max(MIN_SWEEP_INTERVAL);
        self
    }

    /// Allow at most this many attribute keys per session (default 64).
    ///
    /// A write that would exceed it fails with [`StoreError::AttributeLimit`].
    ///
    /// ```
    /// use tower_mcp_session::store::MemoryStore;
    ///
    /// let store = MemoryStore::builder().max_attribute_keys(8).build();
    /// # let _ = store;
    /// ```
    pub fn max_attribute_keys(mut self, max: usize) -> Self {
        self.config.max_attribute_keys = max;
        self
    }

    /// Allow at most this many bytes of attributes per session, measured as the
    /// attribute map serialized as a JSON object (default 64 KiB).
    ///
    /// A write that would exceed it fails with [`StoreError::AttributeLimit`].
    ///
    /// ```
    /// use tower_mcp_session::store::MemoryStore;
    ///
    /// let store = MemoryStore::builder().max_attribute_bytes(4096).build();
    /// # let _ = store;
    /// ```
    pub fn max_attribute_bytes(mut self, max: usize) -> Self {
        self.config.max_attribute_bytes = max;
        self
    }

    /// Add a listener told about every session that ends; call again to add more.
    ///
    /// Same contract as [`SessionStore::add_close_listener`]: exactly one call per
    /// session, from whichever task ended it, so keep it short and non-blocking. A
    /// panic in a listener is caught and does not stop the others.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use tower_mcp_session::store::MemoryStore;
    ///
    /// let closed = Arc::new(AtomicUsize::new(0));
    /// let counter = closed.clone();
    /// let store = MemoryStore::builder()
    ///     .on_close(move |_id, _reason| {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///     })
    ///     .build();
    /// # let _ = store;
    /// ```
    pub fn on_close(mut self, listener: impl Fn(&SessionId, CloseReason) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Build the store.
    ///
    /// ```
    /// use tower_mcp_session::store::MemoryStore;
    ///
    /// let store = MemoryStore::builder().build();
    /// # let _ = store;
    /// ```
    pub fn build(self) -> MemoryStore {
        let config = self.config;
        MemoryStore {
            inner: Arc::new(Inner {
                sessions: FastDashMap::default(),
                occupied: AtomicUsize::new(0),
                live: AtomicUsize::new(0),
                epoch: Instant::now(),
                idle_nanos: nanos(config.idle_timeout),
                lifetime_nanos: config.max_lifetime.map(nanos),
                config,
                listeners: RwLock::new(self.listeners.into()),
                next_pass_at: AtomicU64::new(u64::MAX),
                maintenance: tokio::sync::Mutex::new(Candidates::default()),
                sweeper_started: AtomicBool::new(false),
                stop: Arc::new(Notify::new()),
            }),
        }
    }
}

impl fmt::Debug for MemoryStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStoreBuilder")
            .field("config", &self.config)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

/// A [`SessionStore`] in this process's memory: the default store.
///
/// Cloning is cheap and every clone is the same store. Defaults: idle timeout 30
/// minutes (counted from the end of the last busy period), lifetime 24 hours, at most
/// 10,000 sessions with new ones refused at the cap ([`AtCapacity`]), sweep every 30
/// seconds, attributes bounded to 64 keys and 64 KiB per session.
///
/// - **Exact cap.** [`reserve`](SessionStore::reserve) takes a slot with a
///   compare-and-swap only while the count of live sessions plus outstanding
///   reservations is below the cap, so concurrent creations can never overshoot.
///   [`insert`](SessionStore::insert) must be given a reservation from this store.
/// - **Busy sessions are safe.** [`acquire`](SessionStore::acquire) opens a busy period
///   and [`release`](SessionStore::release) closes it; a session with one open never
///   idles out and is never evicted (only `max_lifetime` ends it).
/// - **Expiry frees memory.** A sweeper task, started on the first
///   [`insert`](SessionStore::insert) made inside a Tokio runtime, removes expired
///   sessions every sweep interval. It holds only a weak reference and stops when the
///   last clone of the store is dropped. At the cap, expired sessions are removed on
///   the spot before a newcomer is refused.
/// - **Exactly-once close.** Every session ends through one removal from the map, and
///   only the caller whose removal succeeded runs the close listeners, so a `DELETE`
///   racing the sweeper or an eviction yields one event. Sessions still open when the
///   last clone is dropped end with [`CloseReason::Shutdown`].
/// - **Attributes** are allocated only when a session first gets one. On an unknown
///   session, reads find nothing and writes do nothing (the session may have just
///   ended; failing the handler for it would help nobody).
///
/// An idle session with a 32-character id, no client info and no attributes costs
/// under 300 bytes (measured: 240–290 bytes of heap, 260–300 bytes resident, at 100k
/// and 1M sessions; `examples/memory_store_footprint.rs`).
///
/// ```
/// use tower_mcp_session::store::{MemoryStore, SessionStore};
/// use tower_mcp_session::{ProtocolVersion, SessionId, SessionRecord};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let id = SessionId::parse("abc").unwrap();
///
/// let slot = store.reserve().await?;
/// store.insert(slot, SessionRecord::new(id.clone(), ProtocolVersion::V2025_06_18)).await?;
///
/// let record = store.acquire(&id).await?.expect("live");
/// assert_eq!(record.id(), &id);
/// store.release(&id);
/// assert_eq!(store.len_hint(), Some(1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl MemoryStore {
    /// A store with the default settings.
    ///
    /// ```
    /// use tower_mcp_session::store::{MemoryStore, SessionStore};
    ///
    /// let store = MemoryStore::new();
    /// assert_eq!(store.len_hint(), Some(0));
    /// ```
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to configure a store.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::store::MemoryStore;
    ///
    /// let store = MemoryStore::builder().idle_timeout(Duration::from_secs(60)).build();
    /// # let _ = store;
    /// ```
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            config: Config::default(),
            listeners: Vec::new(),
        }
    }

    /// Remove every expired session now, as the background sweeper does, and return
    /// how many were removed.
    ///
    /// Useful where no Tokio runtime drives the sweeper, or to reclaim memory at a
    /// moment of the application's choosing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::store::{MemoryStore, SessionStore};
    /// use tower_mcp_session::{ProtocolVersion, SessionId, SessionRecord};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::builder().idle_timeout(Duration::from_secs(60)).build();
    /// let id = SessionId::parse("abc").unwrap();
    /// let slot = store.reserve().await?;
    /// store.insert(slot, SessionRecord::new(id, ProtocolVersion::V2025_06_18)).await?;
    ///
    /// tokio::time::advance(Duration::from_secs(61)).await;
    /// assert_eq!(store.sweep().await, 1);
    /// assert_eq!(store.len_hint(), Some(0));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn sweep(&self) -> usize {
        let mut candidates = self.inner.maintenance.lock().await;
        self.inner.pass(self.inner.now(), &mut candidates)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("live", &self.inner.live.load(Ordering::Relaxed))
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl SessionStore for MemoryStore {
    fn reserve(&self) -> BoxFuture<'_, Result<Reservation, StoreError>> {
        Box::pin(self.inner.reserve())
    }

    fn insert(
        &self,
        reservation: Reservation,
        record: SessionRecord,
    ) -> BoxFuture<'_, Result<Arc<SessionRecord>, StoreError>> {
        // Lazy like every other future here: nothing happens unless it is polled.
        Box::pin(async move { self.inner.insert(reservation, record) })
    }

    fn acquire<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>> {
        // Lazy on purpose: an eager acquire whose future is dropped unpolled would leave
        // a busy period open forever, and the session would never idle out.
        Box::pin(async move { Ok(self.inner.acquire(id)) })
    }

    fn contains<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let now = self.inner.now();
            Ok(self
                .inner
                .sessions
                .get(id)
                .is_some_and(|e| self.inner.expiry(&e, now).is_none()))
        })
    }

    fn release(&self, id: &SessionId) {
        self.inner.release(id);
    }

    fn remove<'a>(&'a self, id: &'a SessionId, reason: CloseReason) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(self.inner.remove(id, reason)) })
    }

    fn attribute<'a>(&'a self, id: &'a SessionId, key: &'a str) -> BoxFuture<'a, Result<Option<Value>, StoreError>> {
        Box::pin(async move { Ok(self.inner.attribute(id, key)) })
    }

    fn set_attribute<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.inner.set_attribute(id, key, value) })
    }

    fn attributes<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Map<String, Value>, StoreError>> {
        Box::pin(async move { Ok(self.inner.attributes(id)) })
    }

    fn add_close_listener(&self, listener: CloseListener) {
        let mut listeners = self.inner.listeners.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = listeners.to_vec();
        next.push(listener);
        *listeners = next.into();
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.inner.live.load(Ordering::Acquire))
    }
}

/// One session in the map. Kept small: it is paid for every live session.
struct Entry {
    record: Arc<SessionRecord>,
    /// Lifetime deadline in store nanoseconds; `u64::MAX` when there is none.
    expires_at: u64,
    /// When the last busy period ended (or the session was created).
    last_active: AtomicU64,
    /// Open busy periods.
    busy: AtomicU32,
    /// Allocated on the first attribute write.
    attributes: Mutex<Option<Box<Attributes>>>,
}

struct Attributes {
    map: Map<String, Value>,
    /// Sum of [`entry_cost`] over `map`.
    bytes: usize,
}

/// The memory of one eviction scan: the oldest idle sessions it saw, oldest last.
#[derive(Default)]
struct Candidates {
    list: Vec<(u64, SessionId)>,
    /// No scan for eviction before this (store nanoseconds).
    rescan_at: u64,
}

struct Inner {
    sessions: FastDashMap<SessionId, Entry>,
    /// Live sessions plus outstanding reservations; never above the cap.
    occupied: AtomicUsize,
    /// Live sessions. Incremented before a session enters the map and decremented
    /// after it leaves, so it never exceeds `occupied`.
    live: AtomicUsize,
    /// Store time is nanoseconds since this instant, so stamps fit in an atomic.
    epoch: Instant,
    config: Config,
    idle_nanos: u64,
    lifetime_nanos: Option<u64>,
    /// Swapped whole on registration so firing never holds the lock while a listener
    /// runs (a listener may register another without deadlocking).
    listeners: RwLock<Arc<[CloseListener]>>,
    /// No session can expire before this (store nanoseconds): a full pass before it
    /// would find nothing, so a refusal at the cap needs no scan.
    next_pass_at: AtomicU64,
    /// Serializes full passes and eviction; never taken on the request path.
    maintenance: tokio::sync::Mutex<Candidates>,
    sweeper_started: AtomicBool,
    stop: Arc<Notify>,
}

impl Inner {
    fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.epoch))
    }

    /// Why `entry` has ended by `now`, if it has.
    fn expiry(&self, entry: &Entry, now: u64) -> Option<CloseReason> {
        if now >= entry.expires_at {
            return Some(CloseReason::Lifetime);
        }
        let idle_since = entry.last_active.load(Ordering::Acquire);
        // Busy is read before the stamp only for clarity; `release` stamps before it
        // decrements, so a zero count always comes with the final stamp.
        let idle = entry.busy.load(Ordering::Acquire) == 0 && now.saturating_sub(idle_since) >= self.idle_nanos;
        idle.then_some(CloseReason::Idle)
    }

    fn try_take_slot(&self) -> bool {
        let max = self.config.max_sessions;
        self.occupied
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    fn reservation(self: &Arc<Self>) -> Reservation {
        let inner = Arc::clone(self);
        Reservation::new(move || {
            inner.occupied.fetch_sub(1, Ordering::AcqRel);
        })
    }

    async fn reserve(self: &Arc<Self>) -> Result<Reservation, StoreError> {
        let evicting = matches!(self.config.at_capacity, AtCapacity::EvictIdle { .. });
        for _ in 0..RESERVE_ATTEMPTS {
            if self.try_take_slot() {
                return Ok(self.reservation());
            }
            // Under `Refuse` the only room to be made is that of expired sessions; when
            // none can have expired yet, refuse without touching the maintenance lock,
            // so a flood of refused creations costs a few atomic loads each.
            if !evicting && self.now() < self.next_pass_at.load(Ordering::Acquire) {
                break;
            }
            let mut candidates = self.maintenance.lock().await;
            if self.try_take_slot() {
                return Ok(self.reservation());
            }
            if !self.make_room(&mut candidates, self.now()) {
                break;
            }
        }
        Err(StoreError::AtCapacity {
            retry_after: self.config.at_capacity.retry_after(),
        })
    }

    /// Free one or more slots: expired sessions first, then (under `EvictIdle`) the
    /// least recently active eligible idle session. Whether anything was freed.
    fn make_room(&self, candidates: &mut Candidates, now: u64) -> bool {
        let mut scanned = false;
        if now >= self.next_pass_at.load(Ordering::Acquire) {
            scanned = true;
            if self.pass(now, candidates) > 0 {
                return true;
            }
        }
        let AtCapacity::EvictIdle { min_idle, .. } = self.config.at_capacity else {
            return false;
        };
        let min_idle = nanos(min_idle);
        loop {
            while let Some(&(stamp, _)) = candidates.list.last() {
                // Candidates are ordered by last activity and a session that became idle
                // after the scan is newer than all of them: if the oldest is not
                // eligible yet, no session is.
                if now.saturating_sub(stamp) < min_idle {
                    return false;
                }
                let Some((stamp, id)) = candidates.list.pop() else {
                    break;
                };
                // Re-checked under the shard's write lock, which `acquire` cannot hold
                // at the same time: a session acquired or released since the scan has a
                // new count or stamp and is skipped, so a busy session is never evicted.
                let unchanged = |e: &Entry| {
                    let idle = e.busy.load(Ordering::Acquire) == 0 && e.last_active.load(Ordering::Acquire) == stamp;
                    idle.then_some(CloseReason::Evicted)
                };
                if self.take(&id, unchanged).is_some() {
                    return true;
                }
            }
            if scanned || now < candidates.rescan_at {
                return false;
            }
            scanned = true;
            if self.pass(now, candidates) > 0 {
                return true;
            }
        }
    }

    /// One pass over every session: remove the expired ones, remember the oldest idle
    /// ones as eviction candidates, and work out when the next session can expire.
    /// Returns how many sessions this pass removed.
    fn pass(&self, now: u64, candidates: &mut Candidates) -> usize {
        // Publish "unknown" first: inserts racing with the scan lower it again with
        // `fetch_min`, so none of their deadlines is lost when the scan's own minimum
        // is folded in at the end.
        self.next_pass_at.store(u64::MAX, Ordering::Release);
        let evicting = matches!(self.config.at_capacity, AtCapacity::EvictIdle { .. });
        // A session that becomes idle after this instant cannot expire before this.
        let mut next = now.saturating_add(self.idle_nanos);
        let mut expired = Vec::new();
        let mut oldest: BinaryHeap<(u64, SessionId)> = BinaryHeap::new();
        for item in self.sessions.iter() {
            let entry = item.value();
            if self.expiry(entry, now).is_some() {
                expired.push(item.key().clone());
                continue;
            }
            next = next.min(entry.expires_at);
            if entry.busy.load(Ordering::Acquire) != 0 {
                continue;
            }
            let stamp = entry.last_active.load(Ordering::Acquire);
            next = next.min(stamp.saturating_add(self.idle_nanos));
            if evicting && (oldest.len() < CANDIDATES || oldest.peek().is_some_and(|(newest, _)| stamp < *newest)) {
                oldest.push((stamp, item.key().clone()));
                if oldest.len() > CANDIDATES {
                    oldest.pop();
                }
            }
        }
        // Removal happens after the scan: the iterator holds shard read locks.
        let removed = expired
            .iter()
            .filter(|id| self.take(id, |e| self.expiry(e, now)).is_some())
            .count();
        // Hash tables keep their capacity when entries leave; after a burst of sessions
        // has expired, give the table's memory back too. The quarter threshold keeps a
        // population that merely fluctuates from being rehashed on every pass.
        if removed > 0 {
            let capacity = self.sessions.capacity();
            if capacity > SHRINK_ABOVE && self.live.load(Ordering::Acquire) < capacity / 4 {
                self.sessions.shrink_to_fit();
            }
        }
        if let AtCapacity::EvictIdle { min_idle, .. } = self.config.at_capacity {
            let mut list = oldest.into_sorted_vec();
            list.reverse();
            // With candidates in hand, a rescan is only needed once they are used up.
            // With none, nothing can become eligible before `min_idle` from now.
            candidates.rescan_at = if list.is_empty() {
                now.saturating_add(nanos(min_idle.max(RESCAN_FLOOR)))
            } else {
                now
            };
            candidates.list = list;
        }
        self.next_pass_at.fetch_min(next, Ordering::AcqRel);
        removed
    }

    fn insert(
        self: &Arc<Self>,
        reservation: Reservation,
        record: SessionRecord,
    ) -> Result<Arc<SessionRecord>, StoreError> {
        let now = self.now();
        let expires_at = match self.lifetime_nanos {
            None => u64::MAX,
            Some(lifetime) => {
                let age = SystemTime::now().duration_since(record.created_at()).map_or(0, nanos);
                now.saturating_add(lifetime.saturating_sub(age))
            }
        };
        let record = Arc::new(record);
        match self.sessions.entry(record.id().clone()) {
            // Replacing would orphan the old session (no close event, a leaked slot);
            // only a broken id generator gets here.
            MapEntry::Occupied(_) => return Err(StoreError::Unavailable(Box::new(DuplicateSessionId))),
            MapEntry::Vacant(slot) => {
                // Counted while the shard is write-locked, before anyone can remove it.
                self.live.fetch_add(1, Ordering::AcqRel);
                slot.insert(Entry {
                    record: Arc::clone(&record),
                    expires_at,
                    last_active: AtomicU64::new(now),
                    busy: AtomicU32::new(0),
                    attributes: Mutex::new(None),
                });
            }
        }
        reservation.commit();
        let deadline = expires_at.min(now.saturating_add(self.idle_nanos));
        if deadline < self.next_pass_at.load(Ordering::Acquire) {
            self.next_pass_at.fetch_min(deadline, Ordering::AcqRel);
        }
        self.start_sweeper();
        Ok(record)
    }

    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeper_started.load(Ordering::Acquire) {
            return;
        }
        // Outside a runtime there is nothing to run it on; the next insert tries again.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.sweeper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = Arc::downgrade(self);
        let stop = Arc::clone(&self.stop);
        let interval = self.config.sweep_interval;
        runtime.spawn(async move {
            loop {
                // Woken early only when the store is dropped.
                if tokio::time::timeout(interval, stop.notified()).await.is_ok() {
                    return;
                }
                // Strong only for the length of one pass, so the sweeper never keeps
                // the store alive.
                let Some(inner) = store.upgrade() else { return };
                // A pass over a large store takes milliseconds (tens per million
                // sessions); on the blocking pool it does not stall the requests that
                // share this worker thread.
                let pass = tokio::task::spawn_blocking(move || {
                    let mut candidates = inner.maintenance.blocking_lock();
                    inner.pass(inner.now(), &mut candidates);
                });
                if pass.await.is_err() {
                    return;
                }
            }
        });
    }

    fn acquire(&self, id: &SessionId) -> Option<Arc<SessionRecord>> {
        let now = self.now();
        {
            let entry = self.sessions.get(id)?;
            if self.expiry(&entry, now).is_none() {
                // Counted while the shard read lock is held: removal needs the write
                // lock and re-checks the count, so a session acquired here cannot be
                // expired or evicted under the caller.
                entry.busy.fetch_add(1, Ordering::AcqRel);
                return Some(Arc::clone(&entry.record));
            }
        }
        self.take(id, |e| self.expiry(e, now));
        None
    }

    fn release(&self, id: &SessionId) {
        let Some(entry) = self.sessions.get(id) else { return };
        // An unmatched release must not refresh the idle clock.
        if entry.busy.load(Ordering::Acquire) == 0 {
            return;
        }
        // Stamp before the count drops: whoever sees the count at zero must also see
        // this stamp, or a session whose last request outlasted the idle timeout would
        // expire the moment that request ended. `fetch_max` because concurrent
        // releases may store out of order.
        entry.last_active.fetch_max(self.now(), Ordering::AcqRel);
        let _ = entry
            .busy
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    fn remove(&self, id: &SessionId, reason: CloseReason) -> bool {
        let now = self.now();
        let mut had_expired = false;
        let taken = self.take(id, |e| match self.expiry(e, now) {
            // Already over: it ends for the reason it expired, and the caller is told it
            // did not exist, exactly as if the sweeper had got there first.
            Some(expired) => {
                had_expired = true;
                Some(expired)
            }
            None => Some(reason),
        });
        taken.is_some() && !had_expired
    }

    /// The one way a session leaves the map. `decide` runs under the shard's write
    /// lock and names the close reason, or `None` to keep the session. Only the caller
    /// whose removal succeeds gets here past `remove_if`, so listeners run exactly once
    /// per session however removals race.
    fn take(&self, id: &SessionId, decide: impl FnOnce(&Entry) -> Option<CloseReason>) -> Option<CloseReason> {
        let mut reason = None;
        let (id, _entry) = self.sessions.remove_if(id, |_, entry| {
            reason = decide(entry);
            reason.is_some()
        })?;
        let reason = reason?;
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.occupied.fetch_sub(1, Ordering::AcqRel);
        self.fire(&id, reason);
        Some(reason)
    }

    fn fire(&self, id: &SessionId, reason: CloseReason) {
        let listeners = Arc::clone(&self.listeners.read().unwrap_or_else(PoisonError::into_inner));
        fire_all(&listeners, id, reason);
    }

    fn attribute(&self, id: &SessionId, key: &str) -> Option<Value> {
        let entry = self.sessions.get(id)?;
        let attributes = entry.attributes.lock().unwrap_or_else(PoisonError::into_inner);
        attributes.as_ref()?.map.get(key).cloned()
    }

    fn attributes(&self, id: &SessionId) -> Map<String, Value> {
        let Some(entry) = self.sessions.get(id) else {
            return Map::new();
        };
        let attributes = entry.attributes.lock().unwrap_or_else(PoisonError::into_inner);
        attributes.as_ref().map(|a| a.map.clone()).unwrap_or_default()
    }

    fn set_attribute(&self, id: &SessionId, key: &str, value: Value) -> Result<(), StoreError> {
        // Measured before any lock is taken: serializing a large value is the slow part.
        let cost = (!value.is_null()).then(|| entry_cost(key, &value));
        let Some(entry) = self.sessions.get(id) else {
            return Ok(());
        };
        let mut slot = entry.attributes.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(cost) = cost else {
            if let Some(attributes) = slot.as_mut() {
                if let Some(old) = attributes.map.remove(key) {
                    attributes.bytes -= entry_cost(key, &old);
                }
                if attributes.map.is_empty() {
                    *slot = None;
                }
            }
            return Ok(());
        };
        let (keys, bytes) = match slot.as_ref() {
            None => (1, cost),
            Some(attributes) => match attributes.map.get(key) {
                Some(old) => (attributes.map.len(), attributes.bytes - entry_cost(key, old) + cost),
                None => (attributes.map.len() + 1, attributes.bytes + cost),
            },
        };
        // One byte for the opening brace; each entry's cost already pays for the comma
        // or closing brace after it.
        if keys > self.config.max_attribute_keys || bytes.saturating_add(1) > self.config.max_attribute_bytes {
            return Err(StoreError::AttributeLimit);
        }
        let attributes = slot.get_or_insert_with(|| {
            Box::new(Attributes {
                map: Map::new(),
                bytes: 0,
            })
        });
        attributes.map.insert(key.to_owned(), value);
        attributes.bytes = bytes;
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.notify_one();
        let listeners = Arc::clone(self.listeners.get_mut().unwrap_or_else(PoisonError::into_inner));
        if listeners.is_empty() {
            return;
        }
        // Every session ends exactly once: those still open end now.
        for (id, _) in std::mem::take(&mut self.sessions) {
            fire_all(&listeners, &id, CloseReason::Shutdown);
        }
    }
}

fn fire_all(listeners: &[CloseListener], id: &SessionId, reason: CloseReason) {
    for listener in listeners {
        // A panicking listener must not skip the others, nor kill the sweeper (which
        // would leave expired sessions in memory for good).
        if catch_unwind(AssertUnwindSafe(|| listener(id, reason))).is_err() {
            #[cfg(feature = "tracing")]
            tracing::error!(session = %id, reason = reason.as_str(), "a session close listener panicked");
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What one attribute adds to the map serialized as a JSON object: `"key":value` and
/// the comma or closing brace after it.
fn entry_cost(key: &str, value: &Value) -> usize {
    json_len(key) + 1 + json_len(value) + 1
}

fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing a `Value` or a string into a sink that never fails cannot fail; if it
    // somehow did, treating the value as unboundedly large refuses it.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX / 4,
    }
}

/// A session was inserted under an id that is already live.
#[derive(Debug)]
struct DuplicateSessionId;

impl fmt::Display for DuplicateSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a live session already has this id")
    }
}

impl std::error::Error for DuplicateSessionId {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProtocolVersion;

    fn id(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    #[test]
    fn entry_stays_small() {
        // The map stores key and entry inline; keep the pair within one cache line.
        assert!(std::mem::size_of::<(SessionId, Entry)>() <= 64);
    }

    #[test]
    fn entry_cost_matches_serialized_map() {
        let mut map = Map::new();
        map.insert("a\"b".into(), serde_json::json!({"x": [1, 2, "é"]}));
        map.insert("level".into(), Value::from("debug"));
        let sum: usize = map.iter().map(|(k, v)| entry_cost(k, v)).sum();
        assert_eq!(1 + sum, serde_json::to_string(&map).unwrap().len());
    }

    #[tokio::test]
    async fn duplicate_id_is_refused_and_frees_its_slot() {
        let store = MemoryStore::builder().max_sessions(2).build();
        let record = || SessionRecord::new(id("dup"), ProtocolVersion::V2025_06_18);
        let slot = store.reserve().await.unwrap();
        store.insert(slot, record()).await.unwrap();
        let slot = store.reserve().await.unwrap();
        assert!(matches!(
            store.insert(slot, record()).await,
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(store.inner.occupied.load(Ordering::SeqCst), 1);
        assert_eq!(store.len_hint(), Some(1));
    }

    #[tokio::test]
    async fn unmatched_release_is_ignored() {
        let store = MemoryStore::new();
        let slot = store.reserve().await.unwrap();
        store
            .insert(slot, SessionRecord::new(id("s"), ProtocolVersion::V2025_06_18))
            .await
            .unwrap();
        store.release(&id("s"));
        store.release(&id("unknown"));
        let entry = store.inner.sessions.get(&id("s")).unwrap();
        assert_eq!(entry.busy.load(Ordering::SeqCst), 0);
    }
}
