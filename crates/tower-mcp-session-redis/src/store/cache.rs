//! The store's local cache: sessions this process validated recently, so that an
//! established session's requests cost no Redis round trip, kept honest by Redis
//! pub/sub.
//!
//! Why it is safe:
//! - **Ends are pushed.** Every [`delete`](super::RedisSessionStore) publishes the id on
//!   the store's invalidation channel in the same script that removes the record, and
//!   every instance with a cache subscribes to it. An entry is dropped when its id
//!   arrives, within the delivery time of Redis pub/sub.
//! - **Expiry cannot overtake an entry.** An entry is trusted for
//!   [`trust_for`]`(idle)` after the Redis round trip that refreshed the session, which
//!   is shorter than the idle timeout that round trip set, and never past the session's
//!   lifetime deadline; entries older than half that are refreshed in the background,
//!   so an active session is refreshed in Redis about every `trust_for(idle) / 2` and
//!   its idle expiry is as exact as that.
//! - **A lost channel empties the cache.** Until the subscription is confirmed, after
//!   any connection error, and when the channel falls silent (the store publishes a
//!   heartbeat every [`HEARTBEAT`]), nothing is trusted and the entries are dropped; a
//!   refresh that started before the drop does not fill the cache after it.
//! - **A reply cannot resurrect.** Ids that ended recently are remembered for a short
//!   while, so a refresh reply read before a deletion but arriving after its
//!   invalidation is not cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tower_mcp_session::{SessionId, SessionRecord};

/// The longest an entry is trusted after its last Redis round trip.
const MAX_TRUST: Duration = Duration::from_secs(30);
/// How many sessions one process keeps (past it, new ones are not cached).
const MAX_ENTRIES: usize = 100_000;
/// How often the entries are swept of those past their trust.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How many recently ended ids are remembered; past it, the cache is emptied instead.
const MAX_ENDED: usize = 65_536;
/// How often each instance publishes a heartbeat on the channel; three missed in a
/// row and the subscription is taken as lost.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long to wait before subscribing again after a failure (doubling up to the max).
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// How long an entry refreshed with idle timeout `idle` is trusted.
pub(super) fn trust_for(idle: Duration) -> Duration {
    (idle / 8).min(MAX_TRUST)
}

/// One cached session.
struct Entry {
    record: Arc<SessionRecord>,
    /// When the round trip that last refreshed it was sent.
    refreshed: Instant,
    /// The idle timeout that refresh set.
    idle: Duration,
    /// The lifetime deadline, ms since the Unix epoch (Redis' clock).
    deadline_ms: u64,
    /// A background refresh is under way.
    refreshing: bool,
}

/// What a cached lookup found.
pub(super) enum Cached {
    /// Trusted: answer with it. `refresh` when it is due for a background refresh
    /// (this caller was chosen to start it).
    Hit { record: Arc<SessionRecord>, refresh: bool },
    /// Not cached, or not trusted now: ask Redis.
    Miss,
}

/// The cache and the state of its subscription.
pub(super) struct LocalCache {
    entries: Mutex<HashMap<SessionId, Entry>>,
    /// When the entries were last swept of those past their trust (sessions nobody
    /// asks for again would otherwise stay until the bound).
    swept: Mutex<Instant>,
    ended: Mutex<HashMap<SessionId, Instant>>,
    /// The subscription is confirmed and alive.
    live: AtomicBool,
    /// Bumped whenever the entries are dropped wholesale; a fill computed in an older
    /// epoch is discarded.
    epoch: AtomicU64,
    /// How long an ended id is remembered: longer than any reply can be in flight.
    remember_ended: Duration,
    channel: String,
    client: redis::Client,
    started: std::sync::Once,
}

impl LocalCache {
    pub(super) fn new(client: redis::Client, channel: String, op_timeout: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            swept: Mutex::new(Instant::now()),
            ended: Mutex::default(),
            live: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            remember_ended: (op_timeout * 2).max(Duration::from_secs(2)),
            channel,
            client,
            started: std::sync::Once::new(),
        }
    }

    /// Start the subscriber (once, from inside the runtime); `heartbeat` publishes one
    /// heartbeat on the channel.
    pub(super) fn start<H, F>(self: &Arc<Self>, heartbeat: H)
    where
        H: Fn() -> F + Send + 'static,
        F: Future<Output = bool> + Send + 'static,
    {
        self.started.call_once(|| {
            if tokio::runtime::Handle::try_current().is_err() {
                return;
            }
            tokio::spawn(subscribe(Arc::downgrade(self), heartbeat));
        });
    }

    /// The epoch to pass to [`fill`](Self::fill) after asking Redis.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Look `id` up.
    pub(super) fn get(&self, id: &SessionId) -> Cached {
        if !self.live.load(Ordering::SeqCst) {
            return Cached::Miss;
        }
        let mut entries = lock(&self.entries);
        let Some(entry) = entries.get_mut(id) else {
            return Cached::Miss;
        };
        let age = entry.refreshed.elapsed();
        let trust = trust_for(entry.idle);
        if age >= trust || now_ms() >= entry.deadline_ms {
            entries.remove(id);
            return Cached::Miss;
        }
        let refresh = age >= trust / 2 && !entry.refreshing;
        if refresh {
            entry.refreshing = true;
        }
        Cached::Hit {
            record: Arc::clone(&entry.record),
            refresh,
        }
    }

    /// Whether a touch of `id` may be skipped: it was refreshed in Redis less than half
    /// its trust ago.
    pub(super) fn recently_refreshed(&self, id: &SessionId) -> bool {
        if !self.live.load(Ordering::SeqCst) {
            return false;
        }
        lock(&self.entries)
            .get(id)
            .is_some_and(|e| e.refreshed.elapsed() < trust_for(e.idle) / 2 && now_ms() < e.deadline_ms)
    }

    /// Redis answered a refresh sent at `sent` in epoch `epoch`: the session is live
    /// with `record` (when the caller has it) until at most `deadline_ms`.
    pub(super) fn fill(
        &self,
        id: &SessionId,
        record: Option<Arc<SessionRecord>>,
        idle: Duration,
        deadline_ms: u64,
        sent: Instant,
        epoch: u64,
    ) {
        if !self.live.load(Ordering::SeqCst) || self.epoch() != epoch || trust_for(idle).is_zero() {
            return;
        }
        if lock(&self.ended).contains_key(id) {
            return;
        }
        let mut entries = lock(&self.entries);
        self.sweep(&mut entries);
        let room = entries.len() < MAX_ENTRIES;
        match (entries.get_mut(id), record) {
            (Some(entry), record) => {
                if let Some(record) = record {
                    entry.record = record;
                }
                entry.refreshed = entry.refreshed.max(sent);
                entry.idle = idle;
                entry.deadline_ms = deadline_ms;
                entry.refreshing = false;
            }
            (None, Some(record)) if room => {
                entries.insert(
                    id.clone(),
                    Entry {
                        record,
                        refreshed: sent,
                        idle,
                        deadline_ms,
                        refreshing: false,
                    },
                );
            }
            (None, _) => {}
        }
    }

    /// Drop the entries past their trust, at most once per [`SWEEP_EVERY`].
    fn sweep(&self, entries: &mut HashMap<SessionId, Entry>) {
        let mut swept = lock(&self.swept);
        if swept.elapsed() < SWEEP_EVERY {
            return;
        }
        *swept = Instant::now();
        let now = now_ms();
        entries.retain(|_, e| e.refreshed.elapsed() < trust_for(e.idle) && now < e.deadline_ms);
    }

    /// A background refresh of `id` failed: let the next lookup try again.
    pub(super) fn refresh_failed(&self, id: &SessionId) {
        if let Some(entry) = lock(&self.entries).get_mut(id) {
            entry.refreshing = false;
        }
    }

    /// `id` ended (deleted here or elsewhere, or found gone).
    pub(super) fn ended(&self, id: &SessionId) {
        lock(&self.entries).remove(id);
        let mut ended = lock(&self.ended);
        if ended.len() >= 1024 {
            let keep = self.remember_ended;
            ended.retain(|_, at| at.elapsed() < keep);
        }
        if ended.len() >= MAX_ENDED {
            // Too many ends to remember one by one: trust nothing cached before now.
            ended.clear();
            drop(ended);
            self.drop_all();
            return;
        }
        ended.insert(id.clone(), Instant::now());
    }

    /// Forget every entry; fills computed before this are discarded.
    fn drop_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        lock(&self.entries).clear();
    }

    fn set_live(&self, live: bool) {
        if !live {
            self.live.store(false, Ordering::SeqCst);
            self.drop_all();
        } else {
            self.drop_all();
            self.live.store(true, Ordering::SeqCst);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.entries).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The session a message on the channel names; `None` for a heartbeat (empty) or
/// anything that is not a session id.
fn session_named(payload: &[u8]) -> Option<SessionId> {
    std::str::from_utf8(payload)
        .ok()
        .filter(|s| !s.is_empty())
        .and_then(SessionId::parse)
}

/// The subscriber: subscribe, drop entries as their ids arrive, publish heartbeats,
/// and start over (with the cache emptied) on any failure or silence. Ends when the
/// store is dropped.
async fn subscribe<H, F>(cache: Weak<LocalCache>, heartbeat: H)
where
    H: Fn() -> F + Send + 'static,
    F: Future<Output = bool> + Send + 'static,
{
    let mut retry = RETRY_MIN;
    loop {
        let Some(strong) = cache.upgrade() else { return };
        strong.set_live(false);
        let (client, channel) = (strong.client.clone(), strong.channel.clone());
        drop(strong);
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            pubsub.subscribe(&channel).await.ok()?;
            Some(pubsub)
        };
        let Some(pubsub) = tokio::time::timeout(RETRY_MAX, subscribed).await.ok().flatten() else {
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
            continue;
        };
        retry = RETRY_MIN;
        match cache.upgrade() {
            Some(strong) => strong.set_live(true),
            None => return,
        }
        let mut messages = pubsub.into_on_message();
        let mut beat = tokio::time::interval(HEARTBEAT);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { break };
                    last_heard = Instant::now();
                    let Some(strong) = cache.upgrade() else { return };
                    if let Some(id) = session_named(message.get_payload_bytes()) {
                        strong.ended(&id);
                    }
                }
                _ = beat.tick() => {
                    if cache.upgrade().is_none() {
                        return;
                    }
                    if last_heard.elapsed() > HEARTBEAT * 3 {
                        break;
                    }
                    // Our own heartbeat comes back through the channel: proof it works.
                    let _ = heartbeat().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_mcp_session::ProtocolVersion;

    fn cache() -> LocalCache {
        let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
        let cache = LocalCache::new(client, "c".into(), Duration::from_secs(1));
        cache.set_live(true);
        cache
    }

    fn record(id: &SessionId) -> Arc<SessionRecord> {
        Arc::new(SessionRecord::new(id.clone(), ProtocolVersion::V2025_06_18))
    }

    const IDLE: Duration = Duration::from_secs(1800);

    #[test]
    fn a_filled_entry_is_trusted_until_it_ends() {
        let cache = cache();
        let id = SessionId::parse("s1").unwrap();
        assert!(matches!(cache.get(&id), Cached::Miss));
        cache.fill(&id, Some(record(&id)), IDLE, u64::MAX, Instant::now(), cache.epoch());
        assert!(matches!(cache.get(&id), Cached::Hit { refresh: false, .. }));
        assert!(cache.recently_refreshed(&id));
        cache.ended(&id);
        assert!(matches!(cache.get(&id), Cached::Miss));
        cache.fill(&id, Some(record(&id)), IDLE, u64::MAX, Instant::now(), cache.epoch());
        assert!(
            matches!(cache.get(&id), Cached::Miss),
            "an ended id is not filled again"
        );
    }

    #[test]
    fn old_entries_are_refreshed_then_distrusted() {
        let cache = cache();
        let id = SessionId::parse("s2").unwrap();
        let trust = trust_for(IDLE);
        let half_old = Instant::now() - trust / 2 - Duration::from_millis(10);
        cache.fill(&id, Some(record(&id)), IDLE, u64::MAX, half_old, cache.epoch());
        assert!(
            matches!(cache.get(&id), Cached::Hit { refresh: true, .. }),
            "one caller refreshes"
        );
        assert!(
            matches!(cache.get(&id), Cached::Hit { refresh: false, .. }),
            "the others do not"
        );
        assert!(!cache.recently_refreshed(&id));
        let too_old = Instant::now() - trust - Duration::from_millis(10);
        let other = SessionId::parse("s3").unwrap();
        cache.fill(&other, Some(record(&other)), IDLE, u64::MAX, too_old, cache.epoch());
        assert!(matches!(cache.get(&other), Cached::Miss));
        let over_age = SessionId::parse("s4").unwrap();
        cache.fill(
            &over_age,
            Some(record(&over_age)),
            IDLE,
            now_ms() - 1,
            Instant::now(),
            cache.epoch(),
        );
        assert!(matches!(cache.get(&over_age), Cached::Miss), "past its lifetime");
    }

    #[test]
    fn entries_past_their_trust_are_swept() {
        let cache = cache();
        let trust = trust_for(IDLE);
        for n in 0..10 {
            let id = SessionId::parse(&format!("old{n}")).unwrap();
            let long_ago = Instant::now() - trust - Duration::from_millis(10);
            cache.fill(&id, Some(record(&id)), IDLE, u64::MAX, long_ago, cache.epoch());
        }
        assert_eq!(cache.len(), 10, "nobody asked for them again");
        *lock(&cache.swept) = Instant::now() - SWEEP_EVERY;
        let fresh = SessionId::parse("fresh").unwrap();
        cache.fill(
            &fresh,
            Some(record(&fresh)),
            IDLE,
            u64::MAX,
            Instant::now(),
            cache.epoch(),
        );
        assert_eq!(cache.len(), 1, "the next fill swept the old ones");
    }

    #[test]
    fn a_lost_subscription_drops_everything_and_stale_fills() {
        let cache = cache();
        let id = SessionId::parse("s5").unwrap();
        let before = cache.epoch();
        cache.fill(&id, Some(record(&id)), IDLE, u64::MAX, Instant::now(), before);
        cache.set_live(false);
        assert!(matches!(cache.get(&id), Cached::Miss));
        assert_eq!(cache.len(), 0);
        cache.set_live(true);
        cache.fill(&id, Some(record(&id)), IDLE, u64::MAX, Instant::now(), before);
        assert_eq!(cache.len(), 0, "a fill from before the loss is discarded");
    }
}
