//! The in-process session store: [`MemoryStore`].
//!
//! Sessions live in a sharded concurrent map, so the request path takes one shard's read
//! lock and a few atomic operations; nothing on that path is global. Expiry is data: each
//! entry carries its idle and lifetime deadlines, lookups treat a passed deadline as
//! gone, and [`take_expired`](SessionStore::take_expired) removes and reports them.

use std::collections::{BTreeSet, BinaryHeap};
use std::fmt;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dashmap::mapref::entry::Entry as MapEntry;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::{
    Attributes, BoxFuture, Expired, ExpiredBatch, Expiry, Replaced, SessionPage, SessionStore, Slot, StoreError,
};
use crate::session::{CloseReason, SessionId, SessionRecord};
use crate::util::{FastDashMap, FastHashMap};

/// Below this many slots the table is too small for shrinking to be worth a rehash.
const SHRINK_ABOVE: usize = 4096;

/// The most sessions one [`list`](SessionStore::list) page holds, whatever `max` says:
/// a page is built under the order lock.
const MAX_PAGE: usize = 1024;

/// A [`SessionStore`] in this process's memory: the default store.
///
/// Cloning is cheap and every clone is the same store. It keeps what the contract asks
/// and nothing more; the session cap, timeouts, attribute bounds and close listeners
/// are configured on the layer, which enforces them for every backend alike.
///
/// - **Exact cap.** [`reserve`](SessionStore::reserve) takes a place with a
///   compare-and-swap only while live sessions plus outstanding slots are below the cap.
/// - **Expiry is data.** An entry whose idle or lifetime deadline has passed reads as
///   gone at once; [`take_expired`](SessionStore::take_expired) removes it, in one pass
///   over the map that it skips while no deadline can have passed. A full
///   [`reserve`](SessionStore::reserve) clears lapsed slots only; the engine then takes
///   expired sessions, so every expiry is reported once.
/// - **Attributes** are allocated only when a session first gets one.
///
/// An idle session with a 32-character id, no client info and no attributes costs about
/// 300 bytes (`cargo run --release --example memory_store_footprint`).
///
/// ```
/// use std::time::Duration;
/// use serde_json::Map;
/// use tower_mcp_session::store::{Expiry, MemoryStore, SessionStore};
/// use tower_mcp_session::{ProtocolVersion, SessionId, SessionRecord};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let id = SessionId::parse("abc").unwrap();
/// let expiry = Expiry { idle: Duration::from_secs(60), lifetime: Duration::from_secs(3600) };
///
/// let slot = store.reserve(10, Duration::from_secs(5)).await?;
/// let record = SessionRecord::new(id.clone(), ProtocolVersion::V2025_06_18);
/// store.create(&record, &Map::new(), expiry, Some(slot)).await?;
///
/// let found = store.load(&id, Some(expiry.idle)).await?.expect("live");
/// assert_eq!(found.id(), &id);
/// assert!(store.delete(&id).await?);
/// assert!(store.load(&id, None).await?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl MemoryStore {
    /// An empty store.
    ///
    /// ```
    /// use tower_mcp_session::store::MemoryStore;
    ///
    /// let store = MemoryStore::new();
    /// assert_eq!(store.len(), 0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// How many sessions the map holds, expired ones not yet taken included.
    ///
    /// ```
    /// use tower_mcp_session::store::MemoryStore;
    ///
    /// assert!(MemoryStore::new().is_empty());
    /// ```
    pub fn len(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Whether the map holds no session.
    ///
    /// ```
    /// use tower_mcp_session::store::MemoryStore;
    ///
    /// assert!(MemoryStore::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.inner.sessions.is_empty()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.inner.sessions.len())
            .field("occupied", &self.inner.occupied.load(Ordering::Relaxed))
            .finish()
    }
}

/// One session in the map. Kept small: it is paid for every live session.
struct Entry {
    record: Arc<SessionRecord>,
    /// Lifetime deadline in store nanoseconds.
    lifetime_end: u64,
    /// Last activity in store nanoseconds.
    last_active: AtomicU64,
    /// The idle timeout last asked for, in nanoseconds.
    idle: AtomicU64,
    /// Allocated on the first attribute write.
    attributes: Mutex<Option<Box<Attributes>>>,
}

impl Entry {
    fn expired(&self, now: u64) -> Option<CloseReason> {
        if now >= self.lifetime_end {
            return Some(CloseReason::Lifetime);
        }
        let idle_end = self
            .last_active
            .load(Ordering::Acquire)
            .saturating_add(self.idle.load(Ordering::Acquire));
        (now >= idle_end).then_some(CloseReason::Idle)
    }

    /// Count activity at `now` with idle timeout `idle`. Returns the new idle deadline when
    /// it may be sooner than the one before (a shorter timeout than the last), for the
    /// caller to bring the next expiry pass forward.
    fn refresh(&self, now: u64, idle: Duration) -> Option<u64> {
        let idle = nanos(idle);
        let before = self.idle.swap(idle, Ordering::AcqRel);
        self.last_active.fetch_max(now, Ordering::AcqRel);
        (idle < before).then(|| now.saturating_add(idle))
    }
}

struct Inner {
    sessions: FastDashMap<SessionId, Entry>,
    /// Sessions in the map plus outstanding slots; never above the cap a reserve saw.
    occupied: AtomicUsize,
    /// Outstanding slots and when each lapses (store nanoseconds).
    slots: Mutex<FastHashMap<u64, u64>>,
    next_slot: AtomicU64,
    /// Store time is nanoseconds since this instant, so stamps fit in an atomic.
    epoch: Instant,
    /// No session can expire before this (store nanoseconds): a pass before it would
    /// find nothing.
    next_pass_at: AtomicU64,
    /// Removed (expired, replaced by a `create` of the same id, or found by a pass past
    /// the batch size), not yet reported by `take_expired`.
    unreported: Mutex<Vec<Expired>>,
    /// Every id in `sessions`, sorted, so `list` pages by "ids after the cursor". Only
    /// `create` and removals write it (never the request path); it is locked with no
    /// shard lock held.
    order: Mutex<BTreeSet<SessionId>>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            sessions: FastDashMap::default(),
            occupied: AtomicUsize::new(0),
            slots: Mutex::new(FastHashMap::default()),
            next_slot: AtomicU64::new(1),
            epoch: Instant::now(),
            next_pass_at: AtomicU64::new(u64::MAX),
            unreported: Mutex::new(Vec::new()),
            order: Mutex::new(BTreeSet::new()),
        }
    }
}

impl Inner {
    fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.epoch))
    }

    fn try_take_place(&self, cap: usize) -> bool {
        self.occupied
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1))
            .is_ok()
    }

    fn reserve(&self, cap: usize, hold: Duration) -> Result<Slot, StoreError> {
        // Only lapsed slots are cleared here: expired sessions are the engine's to take
        // (through `take_expired`), so that each of their ends is reported.
        if !(self.try_take_place(cap) || self.drop_lapsed_slots(self.now()) && self.try_take_place(cap)) {
            return Err(StoreError::Full);
        }
        let token = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let lapses_at = self.now().saturating_add(nanos(hold));
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, lapses_at);
        Ok(Slot::new(token))
    }

    /// Forget lapsed slots; whether any was.
    fn drop_lapsed_slots(&self, now: u64) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let before = slots.len();
        slots.retain(|_, lapses_at| *lapses_at > now);
        let lapsed = before - slots.len();
        self.occupied.fetch_sub(lapsed, Ordering::AcqRel);
        lapsed > 0
    }

    /// Take a slot out of the outstanding set; whether it was there.
    fn consume_slot(&self, slot: Slot) -> bool {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&slot.token())
            .is_some()
    }

    fn cancel(&self, slot: Slot) {
        if self.consume_slot(slot) {
            self.occupied.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn create(
        &self,
        record: &SessionRecord,
        attributes: &Map<String, Value>,
        expiry: Expiry,
        slot: Option<Slot>,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let entry = Entry {
            record: Arc::new(record.clone()),
            lifetime_end: now.saturating_add(nanos(expiry.lifetime)),
            last_active: AtomicU64::new(now),
            idle: AtomicU64::new(nanos(expiry.idle)),
            attributes: Mutex::new((!attributes.is_empty()).then(|| {
                Box::new(Attributes {
                    map: attributes.clone(),
                    version: 0,
                })
            })),
        };
        let deadline = entry.lifetime_end.min(now.saturating_add(nanos(expiry.idle)));
        match self.sessions.entry(record.id().clone()) {
            MapEntry::Occupied(mut taken) => {
                // An id that only an expired session still holds is free: that session
                // is gone for every reader, so it is reported and replaced.
                let Some(reason) = taken.get().expired(now) else {
                    return Err(StoreError::Exists);
                };
                self.unreported
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Expired {
                        id: record.id().clone(),
                        reason,
                    });
                taken.insert(entry);
                // The replaced session's place passes to the new one.
                if let Some(slot) = slot {
                    self.cancel(slot);
                }
            }
            MapEntry::Vacant(vacant) => {
                vacant.insert(entry);
                let consumed = slot.is_some_and(|slot| self.consume_slot(slot));
                if !consumed {
                    // No slot, or one that lapsed: the session takes a place of its own.
                    self.occupied.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
        self.order_mut().insert(record.id().clone());
        self.next_pass_at.fetch_min(deadline, Ordering::AcqRel);
        Ok(())
    }

    fn load(&self, id: &SessionId, refresh: Option<Duration>) -> Option<Arc<SessionRecord>> {
        let now = self.now();
        let entry = self.sessions.get(id)?;
        if entry.expired(now).is_some() {
            return None;
        }
        if let Some(idle) = refresh {
            self.refreshed(entry.refresh(now, idle));
        }
        Some(Arc::clone(&entry.record))
    }

    fn touch(&self, id: &SessionId, idle: Duration) -> bool {
        let now = self.now();
        let Some(entry) = self.sessions.get(id) else {
            return false;
        };
        if entry.expired(now).is_some() {
            return false;
        }
        self.refreshed(entry.refresh(now, idle));
        true
    }

    /// A refresh with a shorter idle timeout can move a deadline before `next_pass_at`;
    /// without this, `take_expired` would skip the pass that finds it until some other
    /// deadline came due (the conformance suite's `shortened_idle` check). Only then is
    /// the shared atomic written, so the request path stays free of global writes.
    fn refreshed(&self, sooner: Option<u64>) {
        if let Some(deadline) = sooner {
            self.next_pass_at.fetch_min(deadline, Ordering::AcqRel);
        }
    }

    fn delete(&self, id: &SessionId) -> bool {
        let now = self.now();
        // An expired session is left for `take_expired`, which reports it.
        let removed = self
            .sessions
            .remove_if(id, |_, entry| entry.expired(now).is_none())
            .is_some();
        if removed {
            self.occupied.fetch_sub(1, Ordering::AcqRel);
            self.unorder(id);
        }
        removed
    }

    fn order_mut(&self) -> std::sync::MutexGuard<'_, BTreeSet<SessionId>> {
        self.order.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drop `id` from the order, unless a `create` of the same id got back into the map
    /// since its removal (the map is the truth; the order follows it).
    fn unorder(&self, id: &SessionId) {
        let mut order = self.order_mut();
        if !self.sessions.contains_key(id) {
            order.remove(id);
        }
    }

    fn list(&self, cursor: Option<&str>, max: usize) -> SessionPage {
        let start = match cursor.map(SessionId::parse) {
            None => Bound::Unbounded,
            Some(Some(after)) => Bound::Excluded(after),
            // Not a session id, so not a cursor this store gave: the walk is over.
            Some(None) => return SessionPage::default(),
        };
        let now = self.now();
        let want = max.clamp(1, MAX_PAGE);
        let order = self.order_mut();
        let rest = order.range((start, Bound::Unbounded));
        let mut sessions = Vec::new();
        let mut more = false;
        for id in rest {
            if sessions.len() == want {
                more = true;
                break;
            }
            let live = self.sessions.get(id).is_some_and(|entry| entry.expired(now).is_none());
            if live {
                sessions.push(id.clone());
            }
        }
        let next = if more {
            sessions.last().map(|id| id.as_str().to_owned())
        } else {
            None
        };
        SessionPage { sessions, next }
    }

    fn attributes(&self, id: &SessionId) -> Option<Attributes> {
        let entry = self.sessions.get(id)?;
        if entry.expired(self.now()).is_some() {
            return None;
        }
        let attributes = entry.attributes.lock().unwrap_or_else(PoisonError::into_inner);
        Some(attributes.as_deref().cloned().unwrap_or_default())
    }

    fn replace_attributes(&self, id: &SessionId, expected: u64, map: &Map<String, Value>) -> Replaced {
        let Some(entry) = self.sessions.get(id) else {
            return Replaced::Missing;
        };
        if entry.expired(self.now()).is_some() {
            return Replaced::Missing;
        }
        let mut slot = entry.attributes.lock().unwrap_or_else(PoisonError::into_inner);
        let version = slot.as_ref().map_or(0, |a| a.version);
        if version != expected {
            return Replaced::Conflict;
        }
        let version = version + 1;
        match slot.as_mut() {
            Some(attributes) => {
                attributes.map.clone_from(map);
                attributes.version = version;
            }
            None => {
                *slot = Some(Box::new(Attributes {
                    map: map.clone(),
                    version,
                }));
            }
        }
        Replaced::Done
    }

    fn take_expired(&self, max: usize) -> ExpiredBatch {
        let mut unreported = self.unreported.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.now();
        if unreported.len() < max && now >= self.next_pass_at.load(Ordering::Acquire) {
            let removed = self.pass(now);
            unreported.extend(removed);
        }
        let take = unreported.len().min(max);
        let sessions: Vec<Expired> = unreported.drain(..take).collect();
        // A burst of expiries leaves a large queue behind; give its memory back once it
        // has been drained, so a quiet store holds nothing for the sessions it lost.
        if unreported.capacity() > 64 && unreported.len() < unreported.capacity() / 4 {
            unreported.shrink_to_fit();
        }
        ExpiredBatch {
            more: !unreported.is_empty(),
            sessions,
        }
    }

    /// One pass over every session: remove the expired ones and work out when the next
    /// one can expire.
    fn pass(&self, now: u64) -> Vec<Expired> {
        // Publish "unknown" first: creates racing with the scan lower it again with
        // `fetch_min`, so none of their deadlines is lost.
        self.next_pass_at.store(u64::MAX, Ordering::Release);
        let mut next = u64::MAX;
        let mut expired = Vec::new();
        for item in self.sessions.iter() {
            let entry = item.value();
            if entry.expired(now).is_some() {
                expired.push(item.key().clone());
                continue;
            }
            let idle_end = entry
                .last_active
                .load(Ordering::Acquire)
                .saturating_add(entry.idle.load(Ordering::Acquire));
            next = next.min(entry.lifetime_end).min(idle_end);
        }
        // Removal happens after the scan: the iterator holds shard read locks. Each
        // removal re-checks under the write lock, so a session refreshed since the scan
        // stays.
        let mut removed = Vec::with_capacity(expired.len());
        for id in expired {
            let mut reason = None;
            let taken = self.sessions.remove_if(&id, |_, entry| {
                reason = entry.expired(now);
                reason.is_some()
            });
            if let (Some((id, entry)), Some(reason)) = (taken, reason) {
                next = next.min(entry.lifetime_end);
                self.occupied.fetch_sub(1, Ordering::AcqRel);
                self.unorder(&id);
                removed.push(Expired { id, reason });
            }
        }
        // Hash tables keep their capacity when entries leave; after a burst of sessions
        // has expired, give the memory back too. The quarter threshold keeps a population
        // that merely fluctuates from being rehashed on every pass.
        if !removed.is_empty() {
            let capacity = self.sessions.capacity();
            if capacity > SHRINK_ABOVE && self.sessions.len() < capacity / 4 {
                self.sessions.shrink_to_fit();
            }
        }
        self.next_pass_at.fetch_min(next, Ordering::AcqRel);
        removed
    }

    fn idle_for(&self, id: &SessionId) -> Option<Duration> {
        let now = self.now();
        let entry = self.sessions.get(id)?;
        if entry.expired(now).is_some() {
            return None;
        }
        let since = now.saturating_sub(entry.last_active.load(Ordering::Acquire));
        Some(Duration::from_nanos(since))
    }

    fn idle_sessions(&self, idle_for: Duration, max: usize) -> Vec<SessionId> {
        let now = self.now();
        let idle_for = nanos(idle_for);
        // A bounded max-heap keeps the `max` oldest stamps seen.
        let mut oldest: BinaryHeap<(u64, SessionId)> = BinaryHeap::new();
        for item in self.sessions.iter() {
            let entry = item.value();
            if entry.expired(now).is_some() {
                continue;
            }
            let stamp = entry.last_active.load(Ordering::Acquire);
            if now.saturating_sub(stamp) < idle_for {
                continue;
            }
            if oldest.len() < max || oldest.peek().is_some_and(|(newest, _)| stamp < *newest) {
                oldest.push((stamp, item.key().clone()));
                if oldest.len() > max {
                    oldest.pop();
                }
            }
        }
        oldest.into_sorted_vec().into_iter().map(|(_, id)| id).collect()
    }
}

// Every future is lazy: nothing happens unless it is polled, as for a remote backend.
impl SessionStore for MemoryStore {
    fn reserve(&self, cap: usize, hold: Duration) -> BoxFuture<'_, Result<Slot, StoreError>> {
        Box::pin(async move { self.inner.reserve(cap, hold) })
    }

    fn cancel(&self, slot: Slot) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner.cancel(slot);
            Ok(())
        })
    }

    fn create<'a>(
        &'a self,
        record: &'a SessionRecord,
        attributes: &'a Map<String, Value>,
        expiry: Expiry,
        slot: Option<Slot>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.inner.create(record, attributes, expiry, slot) })
    }

    fn load<'a>(
        &'a self,
        id: &'a SessionId,
        refresh: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>> {
        Box::pin(async move { Ok(self.inner.load(id, refresh)) })
    }

    fn touch<'a>(&'a self, id: &'a SessionId, idle: Duration) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(self.inner.touch(id, idle)) })
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(self.inner.delete(id)) })
    }

    fn attributes<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Attributes>, StoreError>> {
        Box::pin(async move { Ok(self.inner.attributes(id)) })
    }

    fn replace_attributes<'a>(
        &'a self,
        id: &'a SessionId,
        expected: u64,
        map: &'a Map<String, Value>,
    ) -> BoxFuture<'a, Result<Replaced, StoreError>> {
        Box::pin(async move { Ok(self.inner.replace_attributes(id, expected, map)) })
    }

    fn take_expired(&self, max: usize) -> BoxFuture<'_, Result<ExpiredBatch, StoreError>> {
        Box::pin(async move { Ok(self.inner.take_expired(max)) })
    }

    fn list<'a>(&'a self, cursor: Option<&'a str>, max: usize) -> BoxFuture<'a, Result<SessionPage, StoreError>> {
        Box::pin(async move { Ok(self.inner.list(cursor, max)) })
    }

    fn idle_sessions(&self, idle_for: Duration, max: usize) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        Box::pin(async move { Ok(self.inner.idle_sessions(idle_for, max)) })
    }

    fn idle_for<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        Box::pin(async move { Ok(self.inner.idle_for(id)) })
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
