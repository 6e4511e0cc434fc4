//! The Redis session store: [`RedisSessionStore`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::{Script, Value};
use serde_json::value::RawValue;

use super::{BoxError, CloseListener, Reservation, SessionStore, StoreError};
use crate::ProtocolVersion;
use crate::redis_common::{BadReply, RedisConnection, bounded, millis, random_token, session_base};
use crate::session::{CloseReason, Principal, SessionId, SessionRecord};
use crate::store::BoxFuture;

/// Reads `dl` before anything else so that a missing session costs one hash lookup.
/// `now` is Redis server time, so instances with skewed clocks agree on lifetimes.
const TOUCH: &str = r"
local dl = redis.call('HGET', KEYS[1], 'dl')
if not dl then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = math.min(tonumber(ARGV[1]), tonumber(dl) - now)
if ttl <= 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  return false
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if ARGV[2] == '1' then return redis.call('HGETALL', KEYS[1]) end
return 1
";

const INSERT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dl = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'dl', dl, unpack(ARGV, 3))
redis.call('DEL', KEYS[2])
redis.call('PEXPIRE', KEYS[1], math.min(tonumber(ARGV[1]), tonumber(ARGV[2])))
return dl
";

const REMOVE: &str = r"
local existed = redis.call('EXISTS', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
return existed
";

/// Attributes only exist beside a live record, with the record's remaining TTL, so an
/// attribute write can neither resurrect a session nor outlive it.
const SET_ATTR: &str = r"
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 0 end
if #ARGV >= 2 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 1
";

/// The sorted set's own TTL follows its highest score, so it disappears once every
/// member could have.
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(top[2]) - now + 1000))
  return 1
end
return redis.call('ZRANDMEMBER', KEYS[1], ARGV[4])
";

const COMMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(top[2]) - now + 1000))
return 1
";

static TOUCH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(TOUCH));
static INSERT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(INSERT));
static REMOVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REMOVE));
static SET_ATTR_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SET_ATTR));
static RESERVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RESERVE));
static COMMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(COMMIT));

/// How many cap members a full reserve checks against their records.
const SWEEP_SAMPLE: usize = 32;

/// How long a store waits after a fruitless sweep before sweeping again.
const SWEEP_QUIET: Duration = Duration::from_millis(100);

/// A [`SessionStore`] in Redis (one server or a Cluster), for servers that run several
/// instances behind a load balancer.
///
/// # Data layout
///
/// Every key of one session starts with `{prefix}{<session-id>}` (braces and `%` in the
/// id are percent-escaped). The braces make the id the Redis Cluster hash tag, so a
/// session's keys sit in one slot and each operation is one script on one node:
///
/// | key | type | holds |
/// |---|---|---|
/// | `{prefix}{<id>}:meta` | hash | the record: protocol version `v`, creation time `c` (ms since the Unix epoch), raw JSON `i` (`clientInfo`) and `k` (`capabilities`), principal `p`, and the lifetime deadline `dl` (Redis server time, ms) |
/// | `{prefix}{<id>}:attrs` | hash | application attributes, one JSON value per field |
/// | `{prefix}{%live}` | sorted set | only with [`max_sessions`](RedisSessionStoreBuilder::max_sessions): one member per live session (`s:<id>`) or pending reservation (`r:<token>`), scored by the time it can be dropped |
///
/// Every key carries a TTL; nothing this store writes outlives its session. The TTL of a
/// session's keys is `min(idle timeout, time left until the lifetime deadline)`, so Redis
/// itself ends idle and over-age sessions, even when no instance is running.
///
/// # Round trips
///
/// | operation | round trips |
/// |---|---|
/// | [`acquire`](SessionStore::acquire) | 1 (one script reads the record and refreshes the TTLs) |
/// | [`release`](SessionStore::release) | 0 for the caller (a spawned TTL refresh) |
/// | [`reserve`](SessionStore::reserve) | 0 without a cap; 1 with a cap (2 + a sample check when full) |
/// | [`insert`](SessionStore::insert) | 1; 2 with a cap (record on the session's node, counter on the cap's node) |
/// | [`remove`](SessionStore::remove) | 1; with a cap, a second one concurrently |
/// | attributes | 1 each |
///
/// # Idle time while busy
///
/// The idle clock must not run while a request or a stream of the session is in flight,
/// but Redis only knows TTLs. The store therefore counts busy periods per session in
/// this process, and while any is open a keep-alive task (started on the first
/// `acquire`, owned by the store and stopped when the last clone of the store is
/// dropped) refreshes those sessions' TTLs every third of the idle timeout. If the
/// process dies, the refreshes stop and Redis expires the session one idle timeout
/// later: nothing leaks.
///
/// When a busy period ends within a twentieth of the idle timeout of the last refresh
/// (a short request: its own `acquire` just refreshed the TTL), the store does not
/// refresh again, so an established session costs one round trip per request; in
/// exchange a session may expire up to a twentieth of the idle timeout early.
///
/// # The session cap
///
/// The cap is a sorted set on one slot. Reserving runs one script that drops members
/// whose score has passed, counts, and adds a reservation only below the cap, so the cap
/// is exact under any concurrency, across instances. A session's member is scored with
/// its lifetime deadline, an upper bound of its expiry, so acquiring a session never
/// touches the cap's node. A session that ended by idle expiry is noticed lazily: when
/// the set is full, the store checks a random sample of members against their records
/// and drops the ones whose record is gone before answering
/// [`StoreError::AtCapacity`] (at most once per 100 ms per store after a sweep that
/// found nothing, so a flood of refused requests stays cheap).
///
/// # Close listeners
///
/// Listeners registered on a store hear about sessions that *this* store removed
/// ([`remove`](SessionStore::remove) returning `Ok(true)`, exactly once across all
/// instances because the delete is atomic). Sessions that Redis expires by TTL, or that
/// another instance removes, are not reported here; keyspace notifications would need
/// server configuration and a subscriber per node, and would still be lost while no
/// instance listens. Per-session resources must therefore carry their own TTLs, as the
/// Redis event log's keys do.
///
/// # Durability
///
/// What survives a Redis crash depends on the server's persistence settings, not on
/// this crate:
///
/// | server setting | sessions after a crash or restart |
/// |---|---|
/// | no persistence (`save ""`, `appendonly no`) | all gone: clients get 404 and start over with `initialize` |
/// | RDB snapshots only | the sessions of the last snapshot; newer ones are gone, and removed sessions may come back until their TTL passes |
/// | `appendonly yes`, `appendfsync everysec` (Redis' default for AOF) | everything but about the last second of writes |
/// | `appendonly yes`, `appendfsync always` | every acknowledged write; each write waits for an fsync |
///
/// Losing a session costs a client one new `initialize`; `everysec` is the usual
/// choice. TTLs are stored as absolute times, so sessions that should have expired
/// while the server was down are gone once it is back. With replicas, a failover can
/// also lose the writes the old primary had not yet replicated.
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tower_mcp_session::store::{RedisSessionStore, SessionStore};
///
/// # async fn run() -> redis::RedisResult<()> {
/// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
/// let store: Arc<dyn SessionStore> = Arc::new(
///     RedisSessionStore::builder(client.get_connection_manager().await?)
///         .key_prefix("myapp:mcp:")
///         .idle_timeout(Duration::from_secs(15 * 60))
///         .max_sessions(10_000)
///         .build(),
/// );
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
pub struct RedisSessionStore {
    inner: Arc<Inner>,
}

impl Clone for RedisSessionStore {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("conn", &self.inner.conn)
            .field("key_prefix", &self.inner.cfg.prefix)
            .field("idle_timeout", &self.inner.cfg.idle)
            .field("max_lifetime", &self.inner.cfg.lifetime)
            .field("max_sessions", &self.inner.cfg.max_sessions)
            .field("op_timeout", &self.inner.cfg.op_timeout)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisSessionStore`].
///
/// ```no_run
/// use std::time::Duration;
/// use tower_mcp_session::store::RedisSessionStore;
///
/// # async fn run() -> redis::RedisResult<()> {
/// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
/// let store = RedisSessionStore::builder(client.get_connection_manager().await?)
///     .max_lifetime(Duration::from_secs(8 * 3600))
///     .max_sessions(5_000)
///     .retry_after(Duration::from_secs(10))
///     .op_timeout(Duration::from_millis(500))
///     .build();
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RedisSessionStoreBuilder {
    conn: RedisConnection,
    cfg: Config,
}

#[derive(Debug, Clone)]
struct Config {
    prefix: String,
    idle: Duration,
    lifetime: Duration,
    max_sessions: Option<usize>,
    op_timeout: Duration,
    retry_after: Duration,
    reservation_timeout: Duration,
}

impl RedisSessionStoreBuilder {
    /// The start of every key this store writes. Default `"mcp:"`.
    ///
    /// Give each application its own prefix. A prefix that itself contains a `{…}` hash
    /// tag pins every session to that tag's slot (still correct, but one node then holds
    /// all sessions).
    ///
    /// ```no_run
    /// # use tower_mcp_session::store::RedisSessionStore;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let store = RedisSessionStore::builder(conn).key_prefix("billing:mcp:").build();
    /// # }
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.cfg.prefix = prefix.into();
        self
    }

    /// How long a session may sit without a request before Redis drops it. Default 30
    /// minutes; at least 1 ms.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_mcp_session::store::RedisSessionStore;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let store = RedisSessionStore::builder(conn).idle_timeout(Duration::from_secs(600)).build();
    /// # }
    /// ```
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.cfg.idle = idle.max(Duration::from_millis(1));
        self
    }

    /// The longest a session may live, busy or not, measured from its creation in Redis
    /// server time. Default 24 hours; at least 1 ms.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_mcp_session::store::RedisSessionStore;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let store = RedisSessionStore::builder(conn).max_lifetime(Duration::from_secs(3600)).build();
    /// # }
    /// ```
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.cfg.lifetime = lifetime.max(Duration::from_millis(1));
        self
    }

    /// Cap the number of live sessions across every instance sharing the prefix.
    /// Default: no cap.
    ///
    /// ```no_run
    /// # use tower_mcp_session::store::RedisSessionStore;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let store = RedisSessionStore::builder(conn).max_sessions(10_000).build();
    /// # }
    /// ```
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.cfg.max_sessions = Some(max);
        self
    }

    /// The longest any single store operation may take; past it the operation fails
    /// with [`StoreError::Unavailable`] (the layer answers 503). Default 1 second.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_mcp_session::store::RedisSessionStore;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let store = RedisSessionStore::builder(conn).op_timeout(Duration::from_millis(250)).build();
    /// # }
    /// ```
    pub fn op_timeout(mut self, limit: Duration) -> Self {
        self.cfg.op_timeout = limit;
        self
    }

    /// The wait suggested to clients refused at the cap (`Retry-After`). Default 5 s.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_mcp_session::store::RedisSessionStore;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let store = RedisSessionStore::builder(conn).retry_after(Duration::from_secs(30)).build();
    /// # }
    /// ```
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.cfg.retry_after = wait;
        self
    }

    /// How long a reservation holds its slot if its holder vanishes (a crashed
    /// instance) without committing or dropping it. Should exceed the slowest
    /// `initialize`. Default 60 s.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_mcp_session::store::RedisSessionStore;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let store = RedisSessionStore::builder(conn)
    ///     .max_sessions(100)
    ///     .reservation_timeout(Duration::from_secs(20))
    ///     .build();
    /// # }
    /// ```
    pub fn reservation_timeout(mut self, hold: Duration) -> Self {
        self.cfg.reservation_timeout = hold.max(Duration::from_millis(1));
        self
    }

    /// Build the store.
    ///
    /// ```no_run
    /// # use tower_mcp_session::store::RedisSessionStore;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let store = RedisSessionStore::builder(conn).build();
    /// # }
    /// ```
    pub fn build(self) -> RedisSessionStore {
        let live_key = format!("{}{{%live}}", self.cfg.prefix);
        RedisSessionStore {
            inner: Arc::new(Inner {
                conn: self.conn,
                cfg: self.cfg,
                live_key,
                listeners: RwLock::new(Vec::new()),
                busy: Mutex::new(HashMap::new()),
                keepalive: Mutex::new(None),
                pending: Arc::new(Mutex::new(Vec::new())),
                quiet_until: Mutex::new(None),
            }),
        }
    }
}

/// Busy periods of one session in this process.
#[derive(Debug)]
struct Busy {
    count: u32,
    refreshed: tokio::time::Instant,
}

struct Inner {
    conn: RedisConnection,
    cfg: Config,
    /// The cap's sorted set, `{prefix}{%live}`. In an escaped session id `%` is always
    /// followed by `25`, `7B` or `7D`, so no session's hash tag can read `%live`.
    live_key: String,
    listeners: RwLock<Vec<CloseListener>>,
    /// Open busy periods per session in this process, and when its TTL was last
    /// refreshed.
    busy: Mutex<HashMap<SessionId, Busy>>,
    keepalive: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Reservation members this process added to the cap set and has not yet committed
    /// or given back. Every outstanding [`Reservation`] of this store owns one of them;
    /// they are interchangeable, so whichever reservation ends takes any one.
    pending: Arc<Mutex<Vec<String>>>,
    /// After a sweep that found nothing to drop, the next full reserves skip sweeping
    /// until this instant: a flood of refused `initialize` requests must not turn each
    /// refusal into dozens of Redis commands.
    quiet_until: Mutex<Option<tokio::time::Instant>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.keepalive.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

impl RedisSessionStore {
    /// A store with the default settings (see [`RedisSessionStoreBuilder`]).
    ///
    /// ```no_run
    /// use tower_mcp_session::store::RedisSessionStore;
    ///
    /// # async fn run() -> redis::RedisResult<()> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
    /// let store = RedisSessionStore::new(client.get_connection_manager().await?);
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(conn: impl Into<RedisConnection>) -> Self {
        Self::builder(conn).build()
    }

    /// A builder over `conn`, a [`ConnectionManager`](redis::aio::ConnectionManager) or
    /// a [`ClusterConnection`](redis::cluster_async::ClusterConnection).
    ///
    /// ```no_run
    /// use tower_mcp_session::store::RedisSessionStore;
    ///
    /// # async fn run() -> redis::RedisResult<()> {
    /// let nodes = vec!["redis://10.0.0.1:6379/", "redis://10.0.0.2:6379/"];
    /// let cluster = redis::cluster::ClusterClient::new(nodes)?;
    /// let store = RedisSessionStore::builder(cluster.get_async_connection().await?).build();
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(conn: impl Into<RedisConnection>) -> RedisSessionStoreBuilder {
        RedisSessionStoreBuilder {
            conn: conn.into(),
            cfg: Config {
                prefix: "mcp:".to_owned(),
                idle: Duration::from_secs(30 * 60),
                lifetime: Duration::from_secs(24 * 3600),
                max_sessions: None,
                op_timeout: Duration::from_secs(1),
                retry_after: Duration::from_secs(5),
                reservation_timeout: Duration::from_secs(60),
            },
        }
    }

    /// The idle timeout in force.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_mcp_session::store::RedisSessionStore;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// assert_eq!(RedisSessionStore::new(conn).idle_timeout(), Duration::from_secs(1800));
    /// # }
    /// ```
    pub fn idle_timeout(&self) -> Duration {
        self.inner.cfg.idle
    }

    /// The lifetime cap in force.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_mcp_session::store::RedisSessionStore;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// assert_eq!(RedisSessionStore::new(conn).max_lifetime(), Duration::from_secs(86_400));
    /// # }
    /// ```
    pub fn max_lifetime(&self) -> Duration {
        self.inner.cfg.lifetime
    }
}

impl Inner {
    fn keys(&self, id: &SessionId) -> (String, String) {
        let base = session_base(&self.cfg.prefix, id);
        (format!("{base}:meta"), format!("{base}:attrs"))
    }

    fn unavailable(e: BoxError) -> StoreError {
        StoreError::Unavailable(e)
    }

    /// One TTL refresh; `want_record` also returns the record's fields.
    async fn touch(&self, id: &SessionId, want_record: bool) -> Result<Value, StoreError> {
        let (meta, attrs) = self.keys(id);
        let mut conn = self.conn.clone();
        let mut inv = TOUCH_SCRIPT.prepare_invoke();
        inv.key(&meta)
            .key(&attrs)
            .arg(millis(self.cfg.idle))
            .arg(if want_record { "1" } else { "0" });
        bounded(self.cfg.op_timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(Self::unavailable)
    }

    fn start_keepalive(self: &Arc<Self>) {
        let mut slot = self.keepalive.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        let period = (self.cfg.idle / 3).clamp(Duration::from_millis(50), Duration::from_secs(60));
        *slot = Some(handle.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                // Hold the store only while refreshing, so dropping the last clone of the
                // store ends this task.
                let Some(inner) = weak.upgrade() else { return };
                let ids: Vec<SessionId> = {
                    let busy = inner.busy.lock().unwrap_or_else(|e| e.into_inner());
                    busy.keys().cloned().collect()
                };
                let mut set = tokio::task::JoinSet::new();
                for id in ids {
                    let inner = inner.clone();
                    set.spawn(async move {
                        // A failed refresh is retried on the next tick; the session has
                        // two more ticks before its TTL runs out.
                        if inner.touch(&id, false).await.is_ok()
                            && let Some(b) = inner.busy.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&id)
                        {
                            b.refreshed = tokio::time::Instant::now();
                        }
                    });
                }
                drop(inner);
                while set.join_next().await.is_some() {}
            }
        }));
    }

    async fn reserve(self: &Arc<Self>, max: usize) -> Result<Reservation, StoreError> {
        let token = format!("r:{}", random_token());
        let mut swept = false;
        loop {
            let mut conn = self.conn.clone();
            let mut inv = RESERVE_SCRIPT.prepare_invoke();
            inv.key(&self.live_key)
                .arg(max)
                .arg(&token)
                .arg(millis(self.cfg.reservation_timeout))
                .arg(SWEEP_SAMPLE);
            let reply: Value = bounded(self.cfg.op_timeout, inv.invoke_async(&mut conn))
                .await
                .map_err(Self::unavailable)?;
            match reply {
                Value::Int(1) => break,
                Value::Array(sample) if !swept && self.may_sweep() => {
                    swept = true;
                    if self.sweep(sample).await? == 0 {
                        *self.quiet_until.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(tokio::time::Instant::now() + SWEEP_QUIET);
                        return Err(self.at_capacity());
                    }
                }
                Value::Array(_) => return Err(self.at_capacity()),
                _ => return Err(StoreError::Unavailable(Box::new(BadReply("reserve")))),
            }
        }
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(token);
        let pending = self.pending.clone();
        let conn = self.conn.clone();
        let live_key = self.live_key.clone();
        let limit = self.cfg.op_timeout;
        let runtime = tokio::runtime::Handle::try_current().ok();
        Ok(Reservation::new(move || {
            let Some(token) = pending.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
                return;
            };
            // Giving the slot back must not block the dropping thread; if it cannot be
            // sent, the member's score lets it lapse after the reservation timeout.
            if let Some(runtime) = runtime {
                runtime.spawn(async move {
                    let mut conn = conn;
                    let cmd = redis::cmd("ZREM").arg(&live_key).arg(&token).to_owned();
                    let _ = bounded(limit, cmd.query_async::<i64>(&mut conn)).await;
                });
            }
        }))
    }

    fn may_sweep(&self) -> bool {
        let quiet = self.quiet_until.lock().unwrap_or_else(|e| e.into_inner());
        quiet.is_none_or(|until| tokio::time::Instant::now() >= until)
    }

    fn at_capacity(&self) -> StoreError {
        StoreError::AtCapacity {
            retry_after: self.cfg.retry_after,
        }
    }

    /// Drop sampled cap members whose session record is gone (expired by TTL); returns
    /// how many were dropped. Reservations lapse by their own score and are skipped.
    async fn sweep(&self, sample: Vec<Value>) -> Result<usize, StoreError> {
        let mut set = tokio::task::JoinSet::new();
        for member in sample {
            let Value::BulkString(raw) = member else { continue };
            let Ok(member) = String::from_utf8(raw) else { continue };
            let Some(id) = member.strip_prefix("s:").and_then(SessionId::parse) else {
                continue;
            };
            let meta = self.keys(&id).0;
            let mut conn = self.conn.clone();
            let limit = self.cfg.op_timeout;
            set.spawn(async move {
                let exists = bounded(limit, redis::cmd("EXISTS").arg(&meta).query_async::<i64>(&mut conn)).await;
                (member, exists)
            });
        }
        let mut dead = Vec::new();
        while let Some(done) = set.join_next().await {
            let Ok((member, exists)) = done else { continue };
            // A record that still exists, or one we could not check, stays counted:
            // dropping a live member would let the cap be exceeded.
            if let Ok(0) = exists {
                dead.push(member);
            }
        }
        if dead.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("ZREM").arg(&self.live_key).arg(&dead).to_owned();
        let removed: i64 = bounded(self.cfg.op_timeout, cmd.query_async(&mut conn))
            .await
            .map_err(Self::unavailable)?;
        Ok(usize::try_from(removed).unwrap_or(0))
    }

    async fn insert(&self, reservation: Reservation, record: SessionRecord) -> Result<Arc<SessionRecord>, StoreError> {
        let (meta, attrs) = self.keys(&record.id);
        let mut conn = self.conn.clone();
        let mut inv = INSERT_SCRIPT.prepare_invoke();
        inv.key(&meta)
            .key(&attrs)
            .arg(millis(self.cfg.idle))
            .arg(millis(self.cfg.lifetime));
        for (field, value) in encode(&record) {
            inv.arg(field).arg(value);
        }
        let deadline: i64 = bounded(self.cfg.op_timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(Self::unavailable)?;
        if deadline < 0 {
            return Err(StoreError::Unavailable(Box::new(BadReply("session id already in use"))));
        }
        if self.cfg.max_sessions.is_some() {
            // `Reservation` carries no data, so `insert` cannot tell which member is
            // `reservation`'s; any pending one of this store will do, since they are
            // interchangeable. (A reservation from another store would take a member
            // that this store's own reservation then cannot give back; it lapses.)
            let token = self.pending.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut inv = COMMIT_SCRIPT.prepare_invoke();
            inv.key(&self.live_key)
                .arg(token.as_deref().unwrap_or(""))
                .arg(format!("s:{}", record.id.as_str()))
                .arg(deadline);
            let committed = bounded(self.cfg.op_timeout, inv.invoke_async::<i64>(&mut conn)).await;
            if let Err(e) = committed {
                // An uncounted session would let the cap be exceeded: undo the record.
                // The popped reservation member lapses by its score.
                let mut undo = REMOVE_SCRIPT.prepare_invoke();
                undo.key(&meta).key(&attrs);
                let _ = bounded(self.cfg.op_timeout, undo.invoke_async::<i64>(&mut conn)).await;
                reservation.commit();
                return Err(StoreError::Unavailable(e));
            }
        }
        reservation.commit();
        Ok(Arc::new(record))
    }

    async fn remove(&self, id: &SessionId, reason: CloseReason) -> Result<bool, StoreError> {
        let (meta, attrs) = self.keys(id);
        let mut conn = self.conn.clone();
        let removed = async {
            let mut inv = REMOVE_SCRIPT.prepare_invoke();
            inv.key(&meta).key(&attrs);
            bounded(self.cfg.op_timeout, inv.invoke_async::<i64>(&mut conn)).await
        };
        // The cap lives on another slot (another node in a Cluster): send its update at
        // the same time, so removal still costs one round trip of latency.
        let uncount = self.cfg.max_sessions.map(|_| {
            let mut cap_conn = self.conn.clone();
            let cmd = redis::cmd("ZREM")
                .arg(&self.live_key)
                .arg(format!("s:{}", id.as_str()))
                .to_owned();
            let limit = self.cfg.op_timeout;
            tokio::spawn(async move { bounded(limit, cmd.query_async::<i64>(&mut cap_conn)).await })
        });
        let existed = removed.await.map_err(Self::unavailable)?;
        if let Some(uncount) = uncount {
            // A member left behind is dropped by a later sweep, as for an expired
            // session; failing here would report a removed session as still there.
            let _ = uncount.await;
        }
        if existed == 1 {
            let listeners = self.listeners.read().unwrap_or_else(|e| e.into_inner()).clone();
            for listener in listeners {
                listener(id, reason);
            }
        }
        Ok(existed == 1)
    }
}

/// The record as hash fields (the deadline `dl` is added by the script).
fn encode(record: &SessionRecord) -> Vec<(&'static str, String)> {
    let created = record
        .created_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut fields = vec![("v", record.protocol_version.to_string()), ("c", created.to_string())];
    if let Some(info) = &record.client_info {
        fields.push(("i", info.get().to_owned()));
    }
    if let Some(caps) = &record.client_capabilities {
        fields.push(("k", caps.get().to_owned()));
    }
    if let Some(principal) = &record.principal {
        fields.push(("p", principal.as_str().to_owned()));
    }
    fields
}

fn decode(id: &SessionId, reply: Value) -> Result<Option<SessionRecord>, StoreError> {
    let bad = |what| StoreError::Unavailable(Box::new(BadReply(what)));
    let items = match reply {
        Value::Nil => return Ok(None),
        Value::Array(items) => items,
        _ => return Err(bad("session record")),
    };
    let mut version = None;
    let mut created = 0u64;
    let mut info = None;
    let mut caps = None;
    let mut principal = None;
    let mut it = items.into_iter();
    while let (Some(Value::BulkString(field)), Some(Value::BulkString(value))) = (it.next(), it.next()) {
        let text = String::from_utf8(value).map_err(|_| bad("session record field"))?;
        match field.as_slice() {
            b"v" => version = Some(text.parse::<ProtocolVersion>().map_err(|_| bad("protocol version"))?),
            b"c" => created = text.parse().map_err(|_| bad("creation time"))?,
            b"i" => info = Some(RawValue::from_string(text).map_err(|_| bad("clientInfo"))?),
            b"k" => caps = Some(RawValue::from_string(text).map_err(|_| bad("capabilities"))?),
            b"p" => principal = Some(Principal::new(text)),
            _ => {}
        }
    }
    let version = version.ok_or_else(|| bad("session record without a protocol version"))?;
    Ok(Some(
        SessionRecord::new(id.clone(), version)
            .with_created_at(SystemTime::UNIX_EPOCH + Duration::from_millis(created))
            .with_client(info, caps)
            .with_principal(principal),
    ))
}

impl SessionStore for RedisSessionStore {
    fn reserve(&self) -> BoxFuture<'_, Result<Reservation, StoreError>> {
        Box::pin(async move {
            match self.inner.cfg.max_sessions {
                None => Ok(Reservation::unlimited()),
                Some(max) => self.inner.reserve(max).await,
            }
        })
    }

    fn insert(
        &self,
        reservation: Reservation,
        record: SessionRecord,
    ) -> BoxFuture<'_, Result<Arc<SessionRecord>, StoreError>> {
        Box::pin(self.inner.insert(reservation, record))
    }

    fn acquire<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>> {
        Box::pin(async move {
            let reply = self.inner.touch(id, true).await?;
            let Some(record) = decode(id, reply)? else {
                return Ok(None);
            };
            let now = tokio::time::Instant::now();
            let mut busy = self.inner.busy.lock().unwrap_or_else(|e| e.into_inner());
            let entry = busy.entry(id.clone()).or_insert(Busy {
                count: 0,
                refreshed: now,
            });
            entry.count += 1;
            // The script just refreshed the TTL.
            entry.refreshed = now;
            drop(busy);
            self.inner.start_keepalive();
            Ok(Some(Arc::new(record)))
        })
    }

    fn release(&self, id: &SessionId) {
        let since_refresh = {
            let mut busy = self.inner.busy.lock().unwrap_or_else(|e| e.into_inner());
            match busy.get_mut(id) {
                Some(b) if b.count > 1 => {
                    b.count -= 1;
                    return;
                }
                Some(b) => {
                    let since = b.refreshed.elapsed();
                    busy.remove(id);
                    since
                }
                None => return,
            }
        };
        // The idle clock restarts now. When the TTL was refreshed moments ago (by this
        // request's own acquire), refreshing again buys at most `since_refresh`: skip
        // the second round trip while that is under a twentieth of the idle timeout, so
        // a session may expire up to that much early (90 s of 30 min by default).
        if since_refresh < self.inner.cfg.idle / 20 {
            return;
        }
        // Refresh the TTL without making the caller wait.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let inner = self.inner.clone();
            let id = id.clone();
            runtime.spawn(async move {
                let _ = inner.touch(&id, false).await;
            });
        }
    }

    fn remove<'a>(&'a self, id: &'a SessionId, reason: CloseReason) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.inner.remove(id, reason))
    }

    fn contains<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            // The record's TTL already ends at the earlier of idle timeout and lifetime,
            // so existence is liveness; EXISTS refreshes nothing.
            let (meta, _) = self.inner.keys(id);
            let mut conn = self.inner.conn.clone();
            let cmd = redis::cmd("EXISTS").arg(&meta).to_owned();
            let n: i64 = bounded(self.inner.cfg.op_timeout, cmd.query_async(&mut conn))
                .await
                .map_err(Inner::unavailable)?;
            Ok(n > 0)
        })
    }

    fn attribute<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<serde_json::Value>, StoreError>> {
        Box::pin(async move {
            let (_, attrs) = self.inner.keys(id);
            let mut conn = self.inner.conn.clone();
            let cmd = redis::cmd("HGET").arg(&attrs).arg(key).to_owned();
            let raw: Option<Vec<u8>> = bounded(self.inner.cfg.op_timeout, cmd.query_async(&mut conn))
                .await
                .map_err(Inner::unavailable)?;
            raw.map(|raw| serde_json::from_slice(&raw).map_err(|e| StoreError::Unavailable(Box::new(e))))
                .transpose()
        })
    }

    fn set_attribute<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        value: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let (meta, attrs) = self.inner.keys(id);
            let mut conn = self.inner.conn.clone();
            let mut inv = SET_ATTR_SCRIPT.prepare_invoke();
            inv.key(&meta).key(&attrs).arg(key);
            if !value.is_null() {
                inv.arg(value.to_string());
            }
            bounded(self.inner.cfg.op_timeout, inv.invoke_async::<i64>(&mut conn))
                .await
                .map_err(Inner::unavailable)?;
            Ok(())
        })
    }

    fn attributes<'a>(
        &'a self,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>, StoreError>> {
        Box::pin(async move {
            let (_, attrs) = self.inner.keys(id);
            let mut conn = self.inner.conn.clone();
            let cmd = redis::cmd("HGETALL").arg(&attrs).to_owned();
            let raw: HashMap<String, Vec<u8>> = bounded(self.inner.cfg.op_timeout, cmd.query_async(&mut conn))
                .await
                .map_err(Inner::unavailable)?;
            raw.into_iter()
                .map(|(k, v)| {
                    serde_json::from_slice(&v)
                        .map(|v| (k, v))
                        .map_err(|e| StoreError::Unavailable(Box::new(e)))
                })
                .collect()
        })
    }

    fn add_close_listener(&self, listener: CloseListener) {
        self.inner
            .listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(listener);
    }
}
