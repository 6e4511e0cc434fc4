//! The session half of the engine: what the layer does with any [`SessionStore`].
//!
//! Backends only store; here live the parts every backend would otherwise write again:
//! busy counting and keep-alive (a session with a request or stream in flight never
//! idles out), the cap policy (refuse, or evict the least recently active idle session),
//! bounded attributes with compare-and-set, and close listeners told once per session.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::{Instant, timeout};

use super::{AtCapacity, SessionError};
use crate::session::{CloseReason, SessionId, SessionRecord};
use crate::store::{Expiry, Replaced, SessionPage, SessionStore, Slot, StoreError};
use crate::util::{FastDashMap, run_detached};

/// Where a walk of every live session (page after page of [`SessionStore::list`])
/// stands; [`Sessions::next_page`] moves it on.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    cursor: Option<String>,
    done: bool,
}

/// Told once for every session that ends, with the reason.
pub(crate) type CloseListener = Arc<dyn Fn(&SessionId, CloseReason) + Send + Sync>;

/// How many times an attribute write re-reads after losing a compare-and-set race.
const ATTRIBUTE_RETRIES: usize = 32;

/// How many eviction candidates one attempt asks the store for.
const EVICTION_CANDIDATES: usize = 8;

/// How many times one creation makes room for itself before it is refused. Room made can
/// be taken by a racing creation; a bound keeps a flood from turning into an eviction storm.
const RESERVE_ATTEMPTS: usize = 8;

/// After making room found nothing, how long before trying again: a flood of refused
/// creations then costs one failed reserve each, not a store scan each.
const QUIET_AFTER_FRUITLESS: Duration = Duration::from_millis(100);

/// Expired sessions taken per store call during a sweep, and calls per sweep at most.
const SWEEP_BATCH: usize = 512;
const SWEEP_CALLS: usize = 64;

/// The session policy: bounds and timeouts the engine enforces for every backend.
#[derive(Debug, Clone)]
pub(crate) struct SessionPolicy {
    pub(crate) max_sessions: Option<usize>,
    pub(crate) at_capacity: AtCapacity,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_lifetime: Duration,
    pub(crate) max_attribute_keys: usize,
    pub(crate) max_attribute_bytes: usize,
    /// What a record keeps of the client's `initialize`: `clientInfo` plus
    /// `capabilities`, raw JSON bytes.
    pub(crate) max_client_metadata_bytes: usize,
    pub(crate) sweep_interval: Duration,
    /// How long a reservation may wait for the inner service's answer to `initialize`.
    pub(crate) reservation_hold: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            max_sessions: Some(10_000),
            at_capacity: AtCapacity::default(),
            idle_timeout: Duration::from_secs(30 * 60),
            max_lifetime: Duration::from_secs(24 * 60 * 60),
            max_attribute_keys: 64,
            max_attribute_bytes: 64 * 1024,
            max_client_metadata_bytes: 8 * 1024,
            sweep_interval: Duration::from_secs(30),
            reservation_hold: Duration::from_secs(60),
        }
    }
}

impl SessionPolicy {
    pub(crate) fn expiry(&self) -> Expiry {
        Expiry {
            idle: self.idle_timeout,
            lifetime: self.max_lifetime,
        }
    }

    /// How often busy sessions are touched: often enough that neither the idle timeout
    /// nor the evict-idle threshold can pass while they are busy.
    pub(crate) fn keep_alive_every(&self) -> Duration {
        let mut every = self.idle_timeout / 3;
        if let AtCapacity::EvictIdle { min_idle, .. } = self.at_capacity {
            every = every.min(min_idle / 2);
        }
        every.max(Duration::from_millis(10))
    }
}

/// What one attempt to make room at the cap found.
enum Room {
    /// A place was freed.
    Made,
    /// Candidates existed but racing callers freed them first: worth trying again.
    Raced,
    /// Nothing to free: further attempts wait out the quiet period.
    None,
}

/// Why the engine could not make room for a new session.
#[derive(Debug)]
pub(crate) enum ReserveError {
    AtCapacity { retry_after: Duration },
    Unavailable,
}

/// Open busy periods of one session on this instance.
struct Busy {
    count: u32,
    /// When the store last heard of activity from this instance.
    refreshed: Instant,
}

pub(crate) struct Sessions {
    store: Arc<dyn SessionStore>,
    policy: SessionPolicy,
    store_timeout: Duration,
    busy: FastDashMap<SessionId, Busy>,
    listeners: Vec<CloseListener>,
    /// Store-clock nanoseconds (since `epoch`) before which making room is not retried.
    quiet_until: AtomicU64,
    epoch: Instant,
    /// Set once the store said it cannot list idle sessions: eviction is then off.
    eviction_unsupported: AtomicBool,
}

impl Sessions {
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        policy: SessionPolicy,
        store_timeout: Duration,
        listeners: Vec<CloseListener>,
    ) -> Self {
        Self {
            store,
            policy,
            store_timeout,
            busy: FastDashMap::default(),
            listeners,
            quiet_until: AtomicU64::new(0),
            epoch: Instant::now(),
            eviction_unsupported: AtomicBool::new(false),
        }
    }

    async fn call<T>(&self, step: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        match timeout(self.store_timeout, step).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::backend(std::io::Error::from(std::io::ErrorKind::TimedOut))),
        }
    }

    fn clock(&self) -> u64 {
        u64::try_from(Instant::now().saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Take a place toward the cap for a session about to be created (`None`: no cap).
    pub(crate) async fn reserve(&self) -> Result<Option<Slot>, ReserveError> {
        let Some(cap) = self.policy.max_sessions else {
            return Ok(None);
        };
        let retry_after = self.policy.at_capacity.retry_after();
        for _ in 0..RESERVE_ATTEMPTS {
            match self.call(self.store.reserve(cap, self.policy.reservation_hold)).await {
                Ok(slot) => return Ok(Some(slot)),
                Err(StoreError::Full) => {}
                Err(_) => return Err(ReserveError::Unavailable),
            }
            if self.clock() < self.quiet_until.load(Ordering::Acquire) {
                break;
            }
            match self.make_room().await {
                Room::Made | Room::Raced => {}
                Room::None => {
                    let quiet = self.clock().saturating_add(QUIET_AFTER_FRUITLESS.as_nanos() as u64);
                    self.quiet_until.store(quiet, Ordering::Release);
                    break;
                }
            }
        }
        Err(ReserveError::AtCapacity { retry_after })
    }

    /// Free places: expired sessions first, then (under evict-idle) the least recently
    /// active idle session not busy here.
    async fn make_room(&self) -> Room {
        if self.sweep_expired().await > 0 {
            return Room::Made;
        }
        let AtCapacity::EvictIdle { min_idle, .. } = self.policy.at_capacity else {
            return Room::None;
        };
        if self.eviction_unsupported.load(Ordering::Acquire) {
            return Room::None;
        }
        // Sessions busy here may be among the oldest; ask for enough to get past them.
        let wanted = EVICTION_CANDIDATES + self.busy.len();
        let candidates = match self.call(self.store.idle_sessions(min_idle, wanted)).await {
            Ok(candidates) => candidates,
            Err(StoreError::Unsupported) => {
                self.eviction_unsupported.store(true, Ordering::Release);
                #[cfg(feature = "tracing")]
                tracing::warn!("the session store cannot list idle sessions; evict-idle falls back to refusing");
                return Room::None;
            }
            Err(_) => return Room::None,
        };
        let mut room = Room::None;
        for id in candidates {
            // Busy here means a request or stream is in flight: never evicted.
            if self.busy.contains_key(&id) {
                continue;
            }
            if matches!(self.call(self.store.delete(&id)).await, Ok(true)) {
                self.closed(&id, CloseReason::Evicted);
                return Room::Made;
            }
            // Someone else ended it first: room was made, for someone.
            room = Room::Raced;
        }
        room
    }

    /// Give back a place that will not be used. Nobody waits for it: the answer that
    /// prompted it must not wait on a store that may be down, and a slot whose cancel
    /// is lost lapses by itself after the hold.
    pub(crate) fn cancel(self: &Arc<Self>, slot: Option<Slot>) {
        if let Some(slot) = slot {
            let sessions = Arc::clone(self);
            run_detached(async move {
                let _ = sessions.call(sessions.store.cancel(slot)).await;
            });
        }
    }

    /// Store a session created by `initialize`, with the attributes the inner service
    /// set while answering it.
    pub(crate) async fn create(
        self: &Arc<Self>,
        record: &SessionRecord,
        attributes: &Map<String, Value>,
        slot: Option<Slot>,
    ) -> Result<(), StoreError> {
        let result = self
            .call(self.store.create(record, attributes, self.policy.expiry(), slot))
            .await;
        if result.is_err() {
            self.cancel(slot);
        }
        result
    }

    /// Find a live session and open a busy period on it; the request counts as activity.
    pub(crate) async fn acquire(self: &Arc<Self>, id: &SessionId) -> Result<Option<BusyGuard>, StoreError> {
        let Some(record) = self.call(self.store.load(id, Some(self.policy.idle_timeout))).await? else {
            return Ok(None);
        };
        let now = Instant::now();
        self.busy
            .entry(id.clone())
            .and_modify(|busy| {
                busy.count += 1;
                busy.refreshed = now;
            })
            .or_insert(Busy {
                count: 1,
                refreshed: now,
            });
        Ok(Some(BusyGuard {
            sessions: Arc::clone(self),
            record,
        }))
    }

    /// Whether a live session has this id, without counting as activity.
    pub(crate) async fn contains(&self, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self.record(id).await?.is_some())
    }

    /// Whether `id` has a request or stream in flight on this instance.
    pub(crate) fn is_busy_here(&self, id: &SessionId) -> bool {
        self.busy.contains_key(id)
    }

    /// One page of the live sessions (see [`SessionStore::list`]).
    pub(crate) async fn list(&self, cursor: Option<&str>, max: usize) -> Result<SessionPage, StoreError> {
        self.call(self.store.list(cursor, max)).await
    }

    /// The next page of `walk`, pages of at most `max`; `None` once the walk is over.
    pub(crate) async fn next_page(&self, walk: &mut Walk, max: usize) -> Result<Option<Vec<SessionId>>, StoreError> {
        if walk.done {
            return Ok(None);
        }
        let page = self.list(walk.cursor.as_deref(), max).await?;
        walk.done = page.next.is_none();
        walk.cursor = page.next;
        Ok(Some(page.sessions))
    }

    /// The record of the live session `id`, without counting as activity.
    pub(crate) async fn record(&self, id: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.call(self.store.load(id, None)).await
    }

    /// How long the session `id` has gone without activity; `None` when it is not live.
    pub(crate) async fn idle_for(&self, id: &SessionId) -> Result<Option<Duration>, StoreError> {
        self.call(self.store.idle_for(id)).await
    }

    fn release(self: &Arc<Self>, id: &SessionId) {
        let idle = self.policy.idle_timeout;
        let removed = self
            .busy
            .remove_if_mut(id, |_, busy| {
                busy.count = busy.count.saturating_sub(1);
                busy.count == 0
            })
            .map(|(_, busy)| busy.refreshed);
        let Some(refreshed) = removed else { return };
        // The idle clock restarts now. A period that began (and refreshed the store)
        // within a twentieth of the timeout needs no second refresh: an established
        // session then costs one store call per request, and may end at most a twentieth
        // of the timeout early.
        if refreshed.elapsed() < idle / 20 {
            return;
        }
        let sessions = Arc::clone(self);
        let id = id.clone();
        run_detached(async move {
            let _ = sessions.call(sessions.store.touch(&id, idle)).await;
        });
    }

    /// End a session now; whether it was live. Listeners hear `reason`.
    pub(crate) async fn end(&self, id: &SessionId, reason: CloseReason) -> Result<bool, StoreError> {
        let ended = self.call(self.store.delete(id)).await?;
        if ended {
            self.closed(id, reason);
        }
        Ok(ended)
    }

    /// Tell every listener that `id` ended. Only the caller whose store step removed the
    /// session gets here, so each session is reported once.
    pub(crate) fn closed(&self, id: &SessionId, reason: CloseReason) {
        for listener in &self.listeners {
            // A panicking listener must not silence the others, nor stop the sweep.
            if catch_unwind(AssertUnwindSafe(|| listener(id, reason))).is_err() {
                #[cfg(feature = "tracing")]
                tracing::error!(session = %id, reason = reason.as_str(), "a session close listener panicked");
            }
        }
    }

    /// The periodic sweep: refresh busy sessions first, so a late keep-alive (a stalled
    /// runtime, a jump of the clock) can never let the sweep end a session in use here,
    /// then take what expired.
    pub(crate) async fn sweep(&self) {
        self.keep_alive().await;
        self.sweep_expired().await;
    }

    /// Take what the store found expired and tell the listeners; how many ended.
    async fn sweep_expired(&self) -> usize {
        let mut ended = 0;
        for _ in 0..SWEEP_CALLS {
            let Ok(batch) = self.call(self.store.take_expired(SWEEP_BATCH)).await else {
                break;
            };
            for expired in &batch.sessions {
                self.closed(&expired.id, expired.reason);
            }
            ended += batch.sessions.len();
            if !batch.more {
                break;
            }
        }
        ended
    }

    /// Refresh every session busy here, so long requests and attached streams never let
    /// it idle out.
    pub(crate) async fn keep_alive(&self) {
        let idle = self.policy.idle_timeout;
        let ids: Vec<SessionId> = self.busy.iter().map(|e| e.key().clone()).collect();
        for id in ids {
            if let Ok(true) = self.call(self.store.touch(&id, idle)).await
                && let Some(mut busy) = self.busy.get_mut(&id)
            {
                busy.refreshed = Instant::now();
            }
        }
    }

    pub(crate) async fn attribute(&self, id: &SessionId, key: &str) -> Result<Option<Value>, SessionError> {
        let attributes = self
            .call(self.store.attributes(id))
            .await
            .map_err(SessionError::Store)?;
        Ok(attributes.and_then(|mut a| a.map.remove(key)))
    }

    pub(crate) async fn attributes(&self, id: &SessionId) -> Result<Map<String, Value>, SessionError> {
        let attributes = self
            .call(self.store.attributes(id))
            .await
            .map_err(SessionError::Store)?;
        Ok(attributes.map(|a| a.map).unwrap_or_default())
    }

    /// Set (or with `null` remove) one attribute within the bounds, by compare-and-set
    /// so concurrent writers from any instance never lose each other's keys.
    pub(crate) async fn set_attribute(&self, id: &SessionId, key: &str, value: Value) -> Result<(), SessionError> {
        self.update_attribute(id, key, |_| Some(value.clone())).await
    }

    /// Replace one attribute with what `change` makes of its current value (`None` or
    /// `null` removes it; `change` returning `None` writes nothing), by compare-and-set,
    /// so concurrent writers on any instance lose no update.
    pub(crate) async fn update_attribute(
        &self,
        id: &SessionId,
        key: &str,
        change: impl Fn(Option<&Value>) -> Option<Value>,
    ) -> Result<(), SessionError> {
        for _ in 0..ATTRIBUTE_RETRIES {
            let Some(mut current) = self
                .call(self.store.attributes(id))
                .await
                .map_err(SessionError::Store)?
            else {
                return Err(SessionError::Ended);
            };
            let expected = current.version;
            let Some(value) = change(current.map.get(key)) else {
                return Ok(());
            };
            apply(&mut current.map, key, value);
            self.check_bounds(&current.map)?;
            match self
                .call(self.store.replace_attributes(id, expected, &current.map))
                .await
                .map_err(SessionError::Store)?
            {
                Replaced::Done => return Ok(()),
                Replaced::Missing => return Err(SessionError::Ended),
                Replaced::Conflict => continue,
            }
        }
        Err(SessionError::Contended)
    }

    /// Whether a record's client metadata fits the record bound.
    pub(crate) fn record_fits(&self, record: &SessionRecord) -> bool {
        let len = |raw: Option<&serde_json::value::RawValue>| raw.map_or(0, |r| r.get().len());
        len(record.client_info()) + len(record.client_capabilities()) <= self.policy.max_client_metadata_bytes
    }

    /// Whether `map` fits the attribute bounds: key count, and bytes as a JSON object.
    pub(crate) fn check_bounds(&self, map: &Map<String, Value>) -> Result<(), SessionError> {
        if map.len() > self.policy.max_attribute_keys || json_len(map) > self.policy.max_attribute_bytes {
            return Err(SessionError::AttributeLimit);
        }
        Ok(())
    }
}

/// Write `value` under `key`; `null` removes the key.
pub(crate) fn apply(map: &mut Map<String, Value>, key: &str, value: Value) {
    if value.is_null() {
        map.remove(key);
    } else {
        map.insert(key.to_owned(), value);
    }
}

/// The length of `value` serialized as JSON, without building the text.
fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing into a sink that never fails cannot fail; if it somehow did, treating the
    // value as unboundedly large refuses it.
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// One busy period of a session: made by [`Sessions::acquire`], it ends when dropped,
/// so the idle clock restarts when the last request, response stream or attached reader
/// of the session is done, however it ends.
pub(crate) struct BusyGuard {
    sessions: Arc<Sessions>,
    record: Arc<SessionRecord>,
}

impl BusyGuard {
    pub(crate) fn record(&self) -> &Arc<SessionRecord> {
        &self.record
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.sessions.release(self.record.id());
    }
}

impl std::fmt::Debug for BusyGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusyGuard").field("session", self.record.id()).finish()
    }
}

/// A busy period on a fresh in-memory session, for unit tests that need one.
#[cfg(test)]
pub(crate) async fn test_guard(id: &SessionId) -> BusyGuard {
    let store = Arc::new(crate::store::MemoryStore::new());
    let sessions = Arc::new(Sessions::new(
        store,
        SessionPolicy::default(),
        Duration::from_secs(1),
        Vec::new(),
    ));
    let record = SessionRecord::new(id.clone(), crate::ProtocolVersion::V2025_06_18);
    sessions.create(&record, &Map::new(), None).await.expect("memory store");
    sessions.acquire(id).await.expect("memory store").expect("just created")
}
