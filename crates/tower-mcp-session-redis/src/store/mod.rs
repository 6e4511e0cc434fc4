//! The Redis session store: [`RedisSessionStore`].

mod builder;
mod cache;
mod expiry;
mod listing;
mod record;
mod scripts;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{FromRedisValue, ScriptInvocation, Value};
use serde_json::{Map, Value as Json};
use tower_mcp_session::store::{
    Attributes, BoxFuture, ExpiredBatch, Expiry, Replaced, SessionPage, SessionStore, Slot, StoreError,
};
#[cfg(doc)]
use tower_mcp_session::{CloseReason, store::Expired};
use tower_mcp_session::{SessionId, SessionRecord};

pub use self::builder::RedisSessionStoreBuilder;
use self::cache::{Cached, LocalCache};
use self::record::{RECORD_FIELDS, bad, decode, decode_attributes, encode};
use self::scripts::{
    CREATE_SCRIPT, DELETE_SCRIPT, IDLE_FOR_SCRIPT, INDEX_SCRIPT, REFRESH_SCRIPT, REPLACE_ATTRIBUTES_SCRIPT,
    RESERVE_SCRIPT, UNINDEX_SCRIPT,
};
use crate::connection::{RedisConnection, bounded, millis, session_base};

/// Durations handed to Redis are capped here (about 100 years): `PEXPIRE` refuses
/// times that overflow, and nothing needs more.
const MAX_MILLIS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// A tombstone lives at least this long (and three operation timeouts at least).
const TOMBSTONE_MIN: Duration = Duration::from_secs(10);

/// A [`SessionStore`] in Redis (one server or a Cluster), for servers that run several
/// instances behind a load balancer.
///
/// It only stores: idle timeout, lifetime and the session cap are the layer's
/// ([`McpSessionLayer::builder`](tower_mcp_session::McpSessionLayer::builder)), passed
/// in with each call; busy sessions are kept alive by the layer's `touch`es; close
/// listeners are the layer's, fed by [`take_expired`](SessionStore::take_expired).
///
/// # Data layout
///
/// Every key of one session starts with `{prefix}{<session-id>}` (braces and `%` in the
/// id are percent-escaped). The braces make the id the Redis Cluster hash tag, so a
/// session's keys sit in one slot and each operation on a session is one script on one
/// node:
///
/// | key | type | holds |
/// |---|---|---|
/// | `{prefix}{<id>}:meta` | hash | the record: protocol version `v`, creation time `c` (ms since the Unix epoch), raw JSON `i` (`clientInfo`) and `k` (`capabilities`), principal `p`; the lifetime deadline `dl` and the last activity `la` (Redis server time, ms); the attributes `a` (one JSON object, absent while empty) and their version `av` |
/// | `{prefix}{<id>}:del` | string | for a few seconds after a [`delete`](SessionStore::delete): the deleted record's `dl` (a tombstone, see below) |
/// | `{prefix}{%index}:sessions` | sorted set | one member `<dl>:<id>` per session, scored by the earliest time it can have expired (its next check) |
/// | `{prefix}{%index}:ids` | sorted set | one member `<id> <dl>` per session, all scored 0, so [`list`](SessionStore::list) pages through them in byte order (`ZRANGEBYLEX`) with the last member as the cursor |
/// | `{prefix}{%index}:slots` | sorted set | one member per [`Slot`] outstanding, scored by when it lapses |
///
/// The attributes live in the record's hash, so they end with it (by expiry or
/// deletion), and [`replace_attributes`](SessionStore::replace_attributes) is one
/// compare-and-set script on `av`. Their size is bounded by the layer before they get
/// here; nothing else in the record grows.
///
/// Every key carries a TTL; nothing this store writes outlives its session. The TTL of
/// the record is `min(idle, time left until dl)`, so Redis itself ends idle and
/// over-age sessions, even when no instance is running. The index keys expire a minute
/// after the latest deadline (or slot lapse) among their members. In an escaped
/// session id `%` is always followed by `25`, `7B` or `7D`, so no session's hash tag
/// reads `%index`.
///
/// # Round trips
///
/// | operation | round trips |
/// |---|---|
/// | [`load`](SessionStore::load) with a refresh | 1 (one script reads the record and refreshes its TTL); 0 for a session in the [local cache](RedisSessionStoreBuilder::local_cache), whose refresh then runs in the background about every `min(idle / 16, 15 s)` |
/// | [`touch`](SessionStore::touch) of a session the local cache refreshed lately | 0 |
/// | [`load`](SessionStore::load) without, [`touch`](SessionStore::touch), [`attributes`](SessionStore::attributes), [`replace_attributes`](SessionStore::replace_attributes) | 1 |
/// | a refresh or touch that shortens the idle timeout (moves expiry earlier) | one more: the index entry is re-scored so `take_expired` still reports it in time |
/// | [`reserve`](SessionStore::reserve), [`cancel`](SessionStore::cancel) | 1, on the index's node |
/// | [`create`](SessionStore::create) | 2 in sequence: the record on the session's node, then the index member (3 if that fails: the record is removed again) |
/// | [`delete`](SessionStore::delete) | 2 in sequence (record and tombstone, then the index member); 1 when there is no live session |
/// | [`take_expired`](SessionStore::take_expired) | 1 when nothing is due; else 3: due members, one check per member (sent concurrently, each on its session's node), one settling script |
/// | [`list`](SessionStore::list) | 2: one page of the ids index, then one liveness check per member (sent concurrently, each on its session's node) |
/// | [`idle_for`](SessionStore::idle_for) | 1 (`la` is written by the scripts that create and refresh, at no extra cost) |
/// | [`idle_sessions`](SessionStore::idle_sessions) | 0: unsupported |
///
/// # The session cap
///
/// [`reserve`](SessionStore::reserve) is one script on the index's slot: it drops
/// lapsed slots, counts sessions and slots, and adds a slot scored `now + hold` only
/// below the cap, so the cap is exact under any concurrency, across instances. A
/// session that expired but was not taken yet still counts: when `reserve` answers
/// [`StoreError::Full`] the layer runs `take_expired` and tries again, so the place is
/// freed as soon as the expiry is confirmed.
///
/// # Expiry reports
///
/// The sessions index is kept for every session, with or without a cap; its score is a
/// time before which the session cannot have expired (its record's expiry when last
/// looked at). [`take_expired`](SessionStore::take_expired) takes up to 256 members
/// whose score has passed, oldest first, and checks each against its record, in one
/// script on the session's node:
///
/// - the record of this incarnation (same `dl`) is there: the session was refreshed
///   since; its score moves to the record's current expiry (`ZADD XX`, which never
///   re-adds a member someone else removed);
/// - the tombstone of this incarnation is there: it was deleted; the member is
///   dropped without a report;
/// - neither: it expired. The member is removed with `ZREM`, which answers 1 to one
///   caller only, so exactly one instance reports it: as [`CloseReason::Lifetime`] when
///   `dl` has passed by the session node's clock, else [`CloseReason::Idle`].
///
/// [`ExpiredBatch::more`] is set when the call took as many due members as it may. So
/// each session is looked at about once per idle timeout while it lives (not once per
/// sweep), and the work of a call is bounded whatever the number of sessions.
///
/// **Reporting delay.** An expired session is reported by the first sweep after it
/// expired, so at most one sweep interval of the layer late (plus the time to work
/// through a backlog when more than 256 × 64 sessions expire between two sweeps, and
/// the clock difference between Cluster nodes). Two caveats: if instances sharing the
/// store pass different idle timeouts, a session refreshed with a shorter one can be
/// reported up to the difference late; and if the removal of the index member after a
/// `delete` fails (Redis unreachable, the instance gone) and the member is checked only
/// after the tombstone expired (`max(10 s, 3 × op timeout)`), that session is reported
/// once as idle after its deletion was reported.
///
/// [`idle_sessions`](SessionStore::idle_sessions) answers
/// [`StoreError::Unsupported`]: each session's last activity is in its own record
/// (`la`), and an index by last activity would cost every request a second write on
/// the index's node (breaking the one round trip of `load`). The layer then
/// refuses newcomers at the cap instead of evicting idle sessions.
///
/// # Durability
///
/// What survives a Redis crash depends on the server's persistence settings, not on
/// this crate:
///
/// | server setting | sessions after a crash or restart |
/// |---|---|
/// | no persistence (`save ""`, `appendonly no`) | all gone: clients get 404 and start over with `initialize` (and no close listener hears of them) |
/// | RDB snapshots only | the sessions of the last snapshot; newer ones are gone, and removed sessions may come back until their TTL passes |
/// | `appendonly yes`, `appendfsync everysec` (Redis' default for AOF) | everything but about the last second of writes |
/// | `appendonly yes`, `appendfsync always` | every acknowledged write; each write waits for an fsync |
///
/// Losing a session costs a client one new `initialize`; `everysec` is the usual
/// choice. TTLs are stored as absolute times, so sessions that should have expired
/// while the server was down are gone once it is back (and reported by the next
/// sweep). With replicas, a failover can also lose the writes the old primary had not
/// yet replicated.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use tower_mcp_session::McpSessionLayer;
/// use tower_mcp_session_redis::{RedisEventLog, RedisSessionStore};
///
/// # async fn run() -> redis::RedisResult<()> {
/// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
/// let conn = client.get_connection_manager().await?;
/// let layer = McpSessionLayer::builder()
///     .store(RedisSessionStore::builder(conn.clone()).key_prefix("myapp:mcp:").build())
///     .event_log(RedisEventLog::new(conn))
///     .idle_timeout(Duration::from_secs(15 * 60))
///     .max_sessions(Some(10_000))
///     .build();
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisSessionStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: RedisConnection,
    prefix: String,
    op_timeout: Duration,
    sessions_key: String,
    slots_key: String,
    ids_key: String,
    /// Where every delete publishes the id, for the instances' local caches.
    channel: String,
    cache: Option<Arc<LocalCache>>,
}

impl fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("conn", &self.inner.conn)
            .field("key_prefix", &self.inner.prefix)
            .field("op_timeout", &self.inner.op_timeout)
            .finish_non_exhaustive()
    }
}

/// Milliseconds for a script, at least 1 and at most [`MAX_MILLIS`].
fn ms(d: Duration) -> u64 {
    millis(d).clamp(1, MAX_MILLIS)
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(raw) => std::str::from_utf8(raw).ok()?.parse().ok(),
        _ => None,
    }
}

impl Inner {
    fn meta(&self, id: &SessionId) -> String {
        format!("{}:meta", session_base(&self.prefix, id))
    }

    fn tombstone(&self, id: &SessionId) -> String {
        format!("{}:del", session_base(&self.prefix, id))
    }

    fn tombstone_ttl(&self) -> u64 {
        ms((self.op_timeout * 3).max(TOMBSTONE_MIN))
    }

    async fn run<T: FromRedisValue>(&self, inv: &ScriptInvocation<'_>) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        bounded(self.op_timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(StoreError::Backend)
    }

    async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        bounded(self.op_timeout, cmd.query_async(&mut conn))
            .await
            .map_err(StoreError::Backend)
    }

    async fn reserve(&self, cap: usize, hold: Duration) -> Result<Slot, StoreError> {
        let token = getrandom::u64().map_err(|e| StoreError::backend(e.to_string()))?;
        let mut inv = RESERVE_SCRIPT.prepare_invoke();
        inv.key(&self.sessions_key)
            .key(&self.slots_key)
            .arg(cap)
            .arg(token)
            .arg(ms(hold));
        match self.run::<i64>(&inv).await? {
            1 => Ok(Slot::new(token)),
            _ => Err(StoreError::Full),
        }
    }

    async fn create(
        &self,
        record: &SessionRecord,
        attributes: &Map<String, Json>,
        expiry: Expiry,
        slot: Option<Slot>,
    ) -> Result<(), StoreError> {
        let id = record.id();
        let meta = self.meta(id);
        let mut inv = CREATE_SCRIPT.prepare_invoke();
        inv.key(&meta).arg(ms(expiry.idle)).arg(ms(expiry.lifetime));
        for (field, value) in encode(record, attributes) {
            inv.arg(field).arg(value);
        }
        let (deadline, expires_at) = match self.run::<Value>(&inv).await? {
            Value::Int(-1) => return Err(StoreError::Exists),
            Value::Array(reply) => match reply.as_slice() {
                [Value::BulkString(dl), expires] => (
                    String::from_utf8(dl.clone()).map_err(|_| bad("create"))?,
                    int(expires).ok_or_else(|| bad("create"))?,
                ),
                _ => return Err(bad("create")),
            },
            _ => return Err(bad("create")),
        };
        // The record is written before its index member: a sweep between the two sees
        // no member (and the slot still holds the place), never a member without record.
        let mut inv = INDEX_SCRIPT.prepare_invoke();
        inv.key(&self.sessions_key)
            .key(&self.slots_key)
            .key(&self.ids_key)
            .arg(format!("{deadline}:{id}"))
            .arg(expires_at)
            .arg(&deadline)
            .arg(slot.map(|s| s.token().to_string()).unwrap_or_default())
            .arg(format!("{id} {deadline}"));
        if let Err(e) = self.run::<i64>(&inv).await {
            // A session the index does not know would escape the cap and never be
            // reported: undo it. Should the undo fail too, the record still ends by its
            // TTL.
            let _ = self.query::<i64>(redis::cmd("DEL").arg(&meta)).await;
            return Err(e);
        }
        Ok(())
    }

    /// Refresh a session's expiry; `None` when it is gone, else its lifetime deadline
    /// (ms since the Unix epoch) and the record fields (an empty array unless
    /// `want_record`).
    async fn refresh(
        &self,
        id: &SessionId,
        idle: Duration,
        want_record: bool,
    ) -> Result<Option<(u64, Value)>, StoreError> {
        let mut inv = REFRESH_SCRIPT.prepare_invoke();
        inv.key(self.meta(id))
            .arg(ms(idle))
            .arg(if want_record { "1" } else { "0" });
        let Value::Array(mut items) = self.run(&inv).await? else {
            return Ok(None);
        };
        if items.len() < 2 {
            return Err(bad("refresh reply"));
        }
        let rest = items.split_off(2);
        let earlier: u64 = redis::from_redis_value(items[0].clone()).map_err(|_| bad("refresh reply"))?;
        let deadline: String = redis::from_redis_value(items[1].clone()).map_err(|_| bad("refresh reply"))?;
        let deadline_ms = deadline.parse::<u64>().map_err(|_| bad("refresh reply"))?;
        if earlier > 0 {
            // A shorter idle timeout moved the expiry before the index's next check of
            // this session: bring the check forward too, or the expiry would be reported
            // only at the old time. `XX` never re-adds a member a sweep already settled.
            self.query::<Value>(
                redis::cmd("ZADD")
                    .arg(&self.sessions_key)
                    .arg("XX")
                    .arg("LT")
                    .arg(earlier)
                    .arg(format!("{deadline}:{id}")),
            )
            .await?;
        }
        Ok(Some((deadline_ms, Value::Array(rest))))
    }

    async fn load(&self, id: &SessionId, refresh: Option<Duration>) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let reply = match refresh {
            Some(idle) => {
                let epoch = self.cache.as_ref().map(|c| c.epoch());
                let sent = Instant::now();
                let Some((deadline_ms, fields)) = self.refresh(id, idle, true).await? else {
                    return Ok(None);
                };
                let record = decode(id, fields)?.map(Arc::new);
                if let (Some(cache), Some(epoch), Some(record)) = (&self.cache, epoch, &record) {
                    cache.fill(id, Some(Arc::clone(record)), idle, deadline_ms, sent, epoch);
                }
                return Ok(record);
            }
            // The TTL ends the record at its expiry, so existence is liveness; `HMGET`
            // refreshes nothing.
            None => {
                self.query(redis::cmd("HMGET").arg(self.meta(id)).arg(&RECORD_FIELDS[..]))
                    .await?
            }
        };
        Ok(decode(id, reply)?.map(Arc::new))
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let mut inv = DELETE_SCRIPT.prepare_invoke();
        inv.key(self.meta(id))
            .key(self.tombstone(id))
            .arg(self.tombstone_ttl())
            .arg(&self.channel)
            .arg(id.as_str());
        if let Some(cache) = &self.cache {
            cache.ended(id);
        }
        // An expired session has no record left: it is not deleted here but left for
        // `take_expired`, which reports it.
        let Some(deadline) = self.run::<Option<String>>(&inv).await? else {
            return Ok(false);
        };
        // The session is gone whatever happens next: a member left behind is dropped
        // unreported by a sweep while the tombstone lives (and `list` skips it, as it
        // checks every member against its record).
        let mut inv = UNINDEX_SCRIPT.prepare_invoke();
        inv.key(&self.sessions_key)
            .key(&self.ids_key)
            .arg(format!("{deadline}:{id}"))
            .arg(format!("{id} {deadline}"));
        let _ = self.run::<i64>(&inv).await;
        Ok(true)
    }

    async fn attributes(&self, id: &SessionId) -> Result<Option<Attributes>, StoreError> {
        let cmd = redis::cmd("HMGET")
            .arg(self.meta(id))
            .arg("v")
            .arg("a")
            .arg("av")
            .to_owned();
        decode_attributes(self.query(&cmd).await?)
    }

    async fn replace_attributes(
        &self,
        id: &SessionId,
        expected: u64,
        map: &Map<String, Json>,
    ) -> Result<Replaced, StoreError> {
        let json = if map.is_empty() {
            String::new()
        } else {
            Json::Object(map.clone()).to_string()
        };
        let mut inv = REPLACE_ATTRIBUTES_SCRIPT.prepare_invoke();
        inv.key(self.meta(id)).arg(expected.to_string()).arg(json);
        match self.run::<i64>(&inv).await? {
            1 => Ok(Replaced::Done),
            0 => Ok(Replaced::Conflict),
            _ => Ok(Replaced::Missing),
        }
    }

    async fn idle_for(&self, id: &SessionId) -> Result<Option<Duration>, StoreError> {
        let mut inv = IDLE_FOR_SCRIPT.prepare_invoke();
        inv.key(self.meta(id));
        let idle: Option<u64> = self.run(&inv).await?;
        Ok(idle.map(Duration::from_millis))
    }
}

impl RedisSessionStore {
    /// `load`, answered from the local cache when it may be (see `cache.rs`).
    async fn load_cached(
        &self,
        id: &SessionId,
        refresh: Option<Duration>,
    ) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let Some(cache) = &self.inner.cache else {
            return self.inner.load(id, refresh).await;
        };
        self.start_cache(cache);
        if let Cached::Hit { record, refresh: due } = cache.get(id) {
            match refresh {
                // Off the request's path: the session stays refreshed in Redis while
                // its requests are answered from here.
                Some(idle) if due => {
                    let inner = Arc::clone(&self.inner);
                    let id = id.clone();
                    tokio::spawn(async move {
                        if inner.load(&id, Some(idle)).await.is_err()
                            && let Some(cache) = &inner.cache
                        {
                            cache.refresh_failed(&id);
                        }
                    });
                }
                _ if due => cache.refresh_failed(id),
                _ => {}
            }
            return Ok(Some(record));
        }
        self.inner.load(id, refresh).await
    }

    /// `touch`, skipped when the cache says the session was refreshed in Redis lately.
    async fn touch_cached(&self, id: &SessionId, idle: Duration) -> Result<bool, StoreError> {
        if let Some(cache) = &self.inner.cache
            && cache.recently_refreshed(id)
        {
            return Ok(true);
        }
        let epoch = self.inner.cache.as_ref().map(|c| c.epoch());
        let sent = Instant::now();
        let refreshed = self.inner.refresh(id, idle, false).await?;
        if let (Some(cache), Some(epoch), Some((deadline_ms, _))) = (&self.inner.cache, epoch, &refreshed) {
            cache.fill(id, None, idle, *deadline_ms, sent, epoch);
        }
        Ok(refreshed.is_some())
    }

    /// Start the cache's subscriber, which needs the runtime (so not at build time).
    fn start_cache(&self, cache: &Arc<LocalCache>) {
        let conn = self.inner.conn.clone();
        let (channel, timeout) = (self.inner.channel.clone(), self.inner.op_timeout);
        cache.start(move || {
            let (mut conn, channel) = (conn.clone(), channel.clone());
            async move {
                let cmd = redis::cmd("PUBLISH").arg(&channel).arg("").to_owned();
                bounded::<i64>(timeout, cmd.query_async(&mut conn)).await.is_ok()
            }
        });
    }
}

impl SessionStore for RedisSessionStore {
    fn reserve(&self, cap: usize, hold: Duration) -> BoxFuture<'_, Result<Slot, StoreError>> {
        Box::pin(self.inner.reserve(cap, hold))
    }

    fn cancel(&self, slot: Slot) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let cmd = redis::cmd("ZREM")
                .arg(&self.inner.slots_key)
                .arg(slot.token())
                .to_owned();
            self.inner.query::<i64>(&cmd).await.map(drop)
        })
    }

    fn create<'a>(
        &'a self,
        record: &'a SessionRecord,
        attributes: &'a Map<String, Json>,
        expiry: Expiry,
        slot: Option<Slot>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.inner.create(record, attributes, expiry, slot))
    }

    fn load<'a>(
        &'a self,
        id: &'a SessionId,
        refresh: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>> {
        Box::pin(self.load_cached(id, refresh))
    }

    fn touch<'a>(&'a self, id: &'a SessionId, idle: Duration) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.touch_cached(id, idle))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.inner.delete(id))
    }

    fn attributes<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Attributes>, StoreError>> {
        Box::pin(self.inner.attributes(id))
    }

    fn replace_attributes<'a>(
        &'a self,
        id: &'a SessionId,
        expected: u64,
        map: &'a Map<String, Json>,
    ) -> BoxFuture<'a, Result<Replaced, StoreError>> {
        Box::pin(self.inner.replace_attributes(id, expected, map))
    }

    fn take_expired(&self, max: usize) -> BoxFuture<'_, Result<ExpiredBatch, StoreError>> {
        Box::pin(self.inner.take_expired(max))
    }

    fn list<'a>(&'a self, cursor: Option<&'a str>, max: usize) -> BoxFuture<'a, Result<SessionPage, StoreError>> {
        Box::pin(self.inner.list(cursor, max))
    }

    /// Always [`StoreError::Unsupported`]: see the type's documentation.
    fn idle_sessions(&self, _idle_for: Duration, _max: usize) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        Box::pin(async { Err(StoreError::Unsupported) })
    }

    fn idle_for<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        Box::pin(self.inner.idle_for(id))
    }
}
