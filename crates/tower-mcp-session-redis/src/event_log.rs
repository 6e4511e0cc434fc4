//! The Redis event log: [`RedisEventLog`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use tokio::sync::Notify;

use tower_mcp_session::SessionId;
use tower_mcp_session::event_log::{
    EventLog, EventLogError, ProducerLease, ProducerState, ReadOutcome, StoredEvent, StreamId, StreamKey,
};
use tower_mcp_session::store::BoxFuture;

use crate::connection::{BadReply, RedisConnection, bounded, millis, session_base};
use crate::event_log_local::LocalStreams;

use crate::event_log_scripts::{
    APPEND_SCRIPT, FINISH_SCRIPT, OPEN_SCRIPT, READ_SCRIPT, READER_STATE_SCRIPT, REMOVE_SESSION_SCRIPT,
};

/// An [`EventLog`] in Redis (one server or a Cluster).
///
/// # Data layout
///
/// All keys of one session start with `{prefix}{<session-id>}` (the id, escaped, is the
/// Redis Cluster hash tag, exactly as in [`RedisSessionStore`](crate::RedisSessionStore)), so every stream of a
/// session lives in one slot and each operation is one script on one node. For a
/// stream with id `<sid>` (16 hex digits):
///
/// | key | type | holds |
/// |---|---|---|
/// | `…:ev:<sid>:m` | hash | `last` (newest sequence number), `bytes` (payload bytes retained), `fin` (`1` once finished), and while a producer holds a lease `lex` (when it runs out, ms on the server's clock) and `lnt` (its note) |
/// | `…:ev:<sid>` | list | the retained payloads, oldest first |
/// | `…:evs` | sorted set | the session's streams, scored by when they were opened |
/// | `…:evl` | hash | stream id → newest sequence number, for unfinished streams: a stream whose keys expired and that is opened again goes on from there, so no event id is issued twice |
///
/// Sequence numbers are contiguous, so the list needs no ids: the oldest retained event
/// has number `last - LLEN + 1`, and the event after cursor `c` sits at list index
/// `c + 1 - first`. A cursor below `first - 1` was trimmed and is reported as
/// [`ReadOutcome::Evicted`]; a stream whose hash is gone is
/// [`ReadOutcome::UnknownStream`]. Every key carries a TTL (the
/// [stream TTL](crate::RedisEventLogBuilder::stream_ttl)), refreshed by every open, append and
/// finish, so streams of sessions that expired without anyone calling
/// [`remove_session`](EventLog::remove_session) disappear by themselves.
///
/// # Why a list and a script, not Redis Streams
///
/// One script per append does everything atomically in one round trip: checks that the
/// stream exists and is not finished, assigns the next sequence number, pushes the
/// payload, trims the ring buffer by count *and* by bytes, and refreshes the TTLs.
/// Redis Streams would add nothing this design needs and cost where it matters:
///
/// - `XADD MAXLEN` trims by count only. Trimming by bytes needs the sizes of the
///   entries dropped; a list hands them over for free (`LPOP` returns the payload),
///   while a stream needs an extra `XRANGE` pass.
/// - Stream entry ids (`<ms>-<n>`) are a second numbering to keep in step with the
///   sequence numbers; with contiguous sequence numbers, list positions are enough.
/// - The main gift of Streams, `XREAD BLOCK`, holds a connection per blocked reader
///   (blocking on the shared multiplexed connection would stall every other command
///   behind it), and in a Cluster one call can only watch keys of one slot. See
///   below for how readers are woken instead.
///
/// `LRANGE` costs O(offset + count); the offset is bounded by the ring buffer's length,
/// so a read from any retained cursor is cheap.
///
/// # Waking readers
///
/// [`wait_after`](EventLog::wait_after) returns at once when an append or finish of a
/// stream in the same shard happens *in this process* (an in-memory notifier), and
/// otherwise polls the stream's hash with a backoff from
/// [`poll_interval`](crate::RedisEventLogBuilder::poll_interval)'s lower bound to its upper
/// bound, which picks up appends made by other instances. Waking early is allowed by
/// the trait, so a shared notifier per shard is enough.
///
/// # Round trips
///
/// `open`, `append`, `finish`, `read_after` and `remove_session` are one script each;
/// `wait_after` is one small `HMGET` per poll. All go over one multiplexed
/// connection, so appends to different streams are pipelined rather than queued behind
/// each other's round trips.
///
/// One exception saves the read-back of a single-answer stream: a stream this process
/// opened, whose every event it appended (numbered 1, 2, … by Redis with no gap, so no
/// other instance appended) and which its own last append finished, is remembered for
/// a second (up to 4,096 streams and 16 MiB, and only within the stream's retention
/// bounds), and its first read to the end (its live reader's) and `wait_after` on it
/// are answered from memory; every later read asks Redis. A finished stream takes no
/// more events, and streams this process drops to make room are forgotten at once, so
/// the one read gets what Redis holds; only a drop made by another instance within that
/// second goes unseen by it, as if the read had come just before. So a single-answer
/// SSE call costs two scripts here: open, and append-and-finish.
///
/// # Retention
///
/// Per stream: at most [`max_events`](crate::RedisEventLogBuilder::max_events) events and
/// [`max_bytes`](crate::RedisEventLogBuilder::max_bytes) payload bytes (the newest event is
/// always kept, even if it alone is larger). Per session: at most
/// [`max_session_bytes`](crate::RedisEventLogBuilder::max_session_bytes) payload bytes (oldest
/// events of finished streams go first), and at most
/// [`max_streams`](crate::RedisEventLogBuilder::max_streams) streams; opening one more drops
/// the longest-finished stream, and fails with [`EventLogError::TooManyStreams`] when
/// none has finished. Over time: the stream TTL.
///
/// # Outages
///
/// Every operation is bounded by [`op_timeout`](crate::RedisEventLogBuilder::op_timeout) and
/// fails with [`EventLogError::Unavailable`] while Redis cannot be reached. A
/// [`finish`](EventLog::finish) that fails that way is also retried in the background
/// (backoff up to 2 s, for at most the stream TTL): the producer is gone by then, and
/// without the mark a reader resuming the stream would wait for events that never come.
///
/// # Durability
///
/// As for sessions, persistence is the server's: with `appendonly yes` and
/// `appendfsync always` every acknowledged append survives a crash; with `everysec`
/// (the usual choice) up to about a second of events can be lost, and a client
/// resuming past them is told [`ReadOutcome::Evicted`] (a cursor beyond the newest
/// retained event is treated as evicted, never as "wait for more"), so it restarts
/// rather than silently missing events. Without persistence a restart loses every
/// stream ([`ReadOutcome::UnknownStream`]).
///
/// # Example
///
/// ```no_run
/// use bytes::Bytes;
/// use tower_mcp_session::SessionId;
/// use tower_mcp_session::event_log::{EventLog, ReadOutcome, StreamId, StreamKey};
/// use tower_mcp_session_redis::RedisEventLog;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
/// let log = RedisEventLog::builder(client.get_connection_manager().await?)
///     .max_events(500)
///     .build();
/// let key = StreamKey::new(SessionId::parse("s1").unwrap(), StreamId::random());
/// log.open(&key).await?;
/// assert_eq!(log.append(&key, Bytes::from_static(b"{}")).await?, 1);
/// let read = log.read_after(&key, 0, 100).await?;
/// assert!(matches!(read, ReadOutcome::Events { last_seq: 1, .. }));
/// # Ok(())
/// # }
/// ```
pub struct RedisEventLog {
    pub(crate) inner: Arc<Inner>,
}

impl Clone for RedisEventLog {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl fmt::Debug for RedisEventLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEventLog")
            .field("conn", &self.inner.conn)
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) conn: RedisConnection,
    pub(crate) cfg: Config,
    pub(crate) notify: Box<[Notify]>,
    /// The streams this process produced whole, read here without a round trip.
    pub(crate) local: LocalStreams,
}

/// In-process notifiers, shared by streams whose ids fall in the same shard.
pub(crate) const SHARDS: usize = 64;

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) prefix: String,
    pub(crate) max_events: u64,
    pub(crate) max_bytes: u64,
    pub(crate) max_streams: u64,
    pub(crate) max_session_bytes: u64,
    pub(crate) ttl: Duration,
    pub(crate) op_timeout: Duration,
    pub(crate) poll_min: Duration,
    pub(crate) poll_max: Duration,
}

impl Config {
    /// How long the numbering of a session's unfinished streams outlives their keys: a
    /// day (the layer's default session lifetime), or the stream TTL if longer, so a
    /// session kept busy by other requests never sees a stream id numbered twice.
    pub(crate) fn numbering_ttl(&self) -> Duration {
        self.ttl.max(Duration::from_secs(24 * 60 * 60))
    }
}

/// The keys of one stream: session base, index, numbering, meta, list.
pub(crate) struct Keys {
    base: String,
    index: String,
    numbering: String,
    pub(crate) meta: String,
    list: String,
    stream: String,
}

impl Inner {
    pub(crate) fn keys(&self, key: &StreamKey) -> Keys {
        let base = session_base(&self.cfg.prefix, key.session());
        let stream = key.stream().to_string();
        Keys {
            index: format!("{base}:evs"),
            numbering: format!("{base}:evl"),
            meta: format!("{base}:ev:{stream}:m"),
            list: format!("{base}:ev:{stream}"),
            base,
            stream,
        }
    }

    pub(crate) fn shard(&self, key: &StreamKey) -> &Notify {
        // Stream ids are random, so their low bits spread streams evenly.
        &self.notify[(key.stream().raw() % SHARDS as u64) as usize]
    }

    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, EventLogError> {
        let mut conn = self.conn.clone();
        bounded(self.cfg.op_timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(EventLogError::Unavailable)
    }
}

impl Inner {
    async fn reader_state(&self, key: &StreamKey, op: &str, value: u64) -> Result<u64, EventLogError> {
        let k = self.keys(key);
        let mut inv = READER_STATE_SCRIPT.prepare_invoke();
        inv.key(&k.meta).arg(op).arg(value);
        match self.run::<i64>(&inv).await? {
            n if n < 0 => Err(EventLogError::UnknownStream),
            n => Ok(n.unsigned_abs()),
        }
    }

    async fn open(&self, key: &StreamKey, lease: Option<&ProducerLease>) -> Result<(), EventLogError> {
        let k = self.keys(key);
        let (lease_ms, note) = lease.map_or((0, &[][..]), |l| (millis(l.duration()).max(1), &l.note()[..]));
        let mut inv = OPEN_SCRIPT.prepare_invoke();
        inv.key(&k.index)
            .key(&k.meta)
            .key(&k.list)
            .key(&k.numbering)
            .arg(&k.stream)
            .arg(millis(self.cfg.ttl))
            .arg(self.cfg.max_streams)
            .arg(&k.base)
            .arg(millis(self.cfg.numbering_ttl()))
            .arg(lease_ms)
            .arg(note);
        let reply: Vec<Value> = self.run(&inv).await?;
        match reply.first().and_then(int) {
            Some(-3) => Err(EventLogError::TooManyStreams {
                limit: usize::try_from(self.cfg.max_streams).unwrap_or(usize::MAX),
            }),
            Some(1) => {
                // The streams dropped to make room are gone for this process's readers
                // too.
                for dropped in &reply[1..] {
                    if let Value::BulkString(id) = dropped
                        && let Some(raw) = std::str::from_utf8(id)
                            .ok()
                            .and_then(|h| u64::from_str_radix(h, 16).ok())
                    {
                        self.local
                            .forget(&StreamKey::new(key.session().clone(), StreamId::from_raw(raw)));
                    }
                }
                self.local.opened(key);
                Ok(())
            }
            _ => Err(bad("open")),
        }
    }

    /// Mode: '0' append, '1' append and finish, '2' end an abandoned stream (see `APPEND`).
    pub(crate) async fn append(&self, key: &StreamKey, data: Bytes, mode: &str) -> Result<u64, EventLogError> {
        let appended = self.append_in_redis(key, data.clone(), mode).await;
        match mode {
            "0" | "1" => {
                let seq = appended.as_ref().ok().copied();
                let limits = (self.cfg.max_events, self.cfg.max_bytes);
                self.local.appended(key, &data, seq, mode == "1", limits);
            }
            _ => self.local.forget(key),
        }
        appended
    }

    async fn append_in_redis(&self, key: &StreamKey, data: Bytes, mode: &str) -> Result<u64, EventLogError> {
        let k = self.keys(key);
        let mut inv = APPEND_SCRIPT.prepare_invoke();
        inv.key(&k.index)
            .key(&k.meta)
            .key(&k.list)
            .key(&k.numbering)
            .arg(&data[..])
            .arg(self.cfg.max_events)
            .arg(self.cfg.max_bytes)
            .arg(millis(self.cfg.ttl))
            .arg(mode)
            .arg(self.cfg.max_session_bytes)
            .arg(&k.base)
            .arg(&k.stream)
            .arg(millis(self.cfg.numbering_ttl()));
        let seq: i64 = self.run(&inv).await?;
        match seq {
            -1 => Err(EventLogError::UnknownStream),
            -2 => Err(EventLogError::Finished),
            -4 => Err(EventLogError::Finished),
            n if n > 0 => {
                self.shard(key).notify_waiters();
                Ok(n.unsigned_abs())
            }
            _ => Err(bad("append")),
        }
    }

    async fn finish(&self, key: &StreamKey) -> Result<(), EventLogError> {
        self.local.forget(key);
        let k = self.keys(key);
        let mut inv = FINISH_SCRIPT.prepare_invoke();
        inv.key(&k.index)
            .key(&k.meta)
            .key(&k.list)
            .key(&k.numbering)
            .arg(millis(self.cfg.ttl))
            .arg(&k.stream)
            .arg(&k.base);
        match self.run::<i64>(&inv).await? {
            -1 => Err(EventLogError::UnknownStream),
            _ => {
                self.shard(key).notify_waiters();
                Ok(())
            }
        }
    }

    /// Retry a failed `finish` with a backoff until it lands, the stream is gone, the
    /// stream's TTL has passed (its keys are gone by then too), or the log is dropped.
    fn retry_finish(self: &Arc<Self>, key: StreamKey) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        let give_up = tokio::time::Instant::now() + self.cfg.ttl;
        runtime.spawn(async move {
            let mut delay = Duration::from_millis(100);
            while tokio::time::Instant::now() < give_up {
                tokio::time::sleep(delay).await;
                let Some(inner) = weak.upgrade() else { return };
                if !matches!(inner.finish(&key).await, Err(EventLogError::Unavailable(_))) {
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        });
    }
}

pub(crate) fn bad(what: &'static str) -> EventLogError {
    EventLogError::Unavailable(Box::new(BadReply(what)))
}

/// An unknown stream has no delivery mark and no claim: the contract's 0.
fn or_zero(state: Result<u64, EventLogError>) -> Result<u64, EventLogError> {
    match state {
        Err(EventLogError::UnknownStream) => Ok(0),
        other => other,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

impl EventLog for RedisEventLog {
    fn open<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>> {
        Box::pin(self.inner.open(key, None))
    }

    /// One script, as `open`: the lease is set only when the stream is made.
    fn open_leased<'a>(
        &'a self,
        key: &'a StreamKey,
        lease: &'a ProducerLease,
    ) -> BoxFuture<'a, Result<(), EventLogError>> {
        Box::pin(self.inner.open(key, Some(lease)))
    }

    fn renew_lease<'a>(&'a self, key: &'a StreamKey, duration: Duration) -> BoxFuture<'a, Result<bool, EventLogError>> {
        Box::pin(self.inner.renew_lease(key, duration))
    }

    fn producer<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<ProducerState, EventLogError>> {
        Box::pin(self.inner.producer(key))
    }

    /// One script, the append's: lease check, append and finish in one step.
    fn end_abandoned<'a>(
        &'a self,
        key: &'a StreamKey,
        final_event: Bytes,
    ) -> BoxFuture<'a, Result<Option<u64>, EventLogError>> {
        Box::pin(self.inner.end_abandoned(key, final_event))
    }

    fn append<'a>(&'a self, key: &'a StreamKey, data: Bytes) -> BoxFuture<'a, Result<u64, EventLogError>> {
        Box::pin(self.inner.append(key, data, "0"))
    }

    /// One script: the event is appended and the stream finished in one round trip.
    fn append_last<'a>(&'a self, key: &'a StreamKey, data: Bytes) -> BoxFuture<'a, Result<u64, EventLogError>> {
        Box::pin(self.inner.append(key, data, "1"))
    }

    fn finish<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>> {
        Box::pin(async move {
            match self.inner.finish(key).await {
                Err(EventLogError::Unavailable(e)) => {
                    // The producer is going away; if the mark is lost, readers that
                    // resume this stream wait for events that never come until its
                    // TTL. Keep trying in the background once Redis is back.
                    self.inner.retry_finish(key.clone());
                    Err(EventLogError::Unavailable(e))
                }
                other => other,
            }
        })
    }

    fn mark_delivered<'a>(&'a self, key: &'a StreamKey, seq: u64) -> BoxFuture<'a, Result<(), EventLogError>> {
        // The contract: marking an unknown stream does nothing (it is no error).
        Box::pin(async move { or_zero(self.inner.reader_state(key, "mark", seq).await).map(drop) })
    }

    fn delivered<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>> {
        Box::pin(async move { or_zero(self.inner.reader_state(key, "dlv", 0).await) })
    }

    fn claim_reader<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>> {
        Box::pin(self.inner.reader_state(key, "claim", 0))
    }

    fn current_reader<'a>(&'a self, key: &'a StreamKey) -> BoxFuture<'a, Result<u64, EventLogError>> {
        Box::pin(async move { or_zero(self.inner.reader_state(key, "rdr", 0).await) })
    }

    fn read_after<'a>(
        &'a self,
        key: &'a StreamKey,
        after: u64,
        max: usize,
    ) -> BoxFuture<'a, Result<ReadOutcome, EventLogError>> {
        Box::pin(async move {
            if let Some(known) = self.inner.local.read_after(key, after, max) {
                return Ok(known);
            }
            let k = self.inner.keys(key);
            let mut inv = READ_SCRIPT.prepare_invoke();
            inv.key(&k.meta).key(&k.list).arg(after).arg(max);
            let reply: Vec<Value> = self.inner.run(&inv).await?;
            let mut it = reply.into_iter();
            let head = it.next().as_ref().and_then(int).ok_or_else(|| bad("read"))?;
            match head {
                -1 => return Ok(ReadOutcome::UnknownStream),
                -2 => {
                    let mut bound = || {
                        it.next()
                            .as_ref()
                            .and_then(int)
                            .map(i64::unsigned_abs)
                            .ok_or_else(|| bad("read"))
                    };
                    let last_seq = bound()?;
                    let first_retained = bound()?;
                    return Ok(ReadOutcome::Evicted {
                        first_retained,
                        last_seq,
                    });
                }
                n if n < 0 => return Err(bad("read")),
                _ => {}
            }
            let last_seq = head.unsigned_abs();
            let fin = it.next().as_ref().and_then(int).ok_or_else(|| bad("read"))? == 1;
            let mut events = Vec::with_capacity(it.len());
            for (seq, item) in (after + 1..).zip(it) {
                let Value::BulkString(data) = item else {
                    return Err(bad("read payload"));
                };
                events.push(StoredEvent {
                    seq,
                    data: Bytes::from(data),
                });
            }
            let reached_end = after + events.len() as u64 == last_seq;
            Ok(ReadOutcome::Events {
                events,
                last_seq,
                finished: fin && reached_end,
            })
        })
    }

    fn wait_after<'a>(&'a self, key: &'a StreamKey, after: u64) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if self.inner.local.has_after(key, after) {
                // Known here, and finished: nothing to wait for.
                return;
            }
            let meta = self.inner.keys(key).meta;
            let shard = self.inner.shard(key);
            let mut delay = self.inner.cfg.poll_min;
            loop {
                let notified = shard.notified();
                let mut notified = std::pin::pin!(notified);
                // Registered before the timer starts, so an append in this process
                // during the wait is never missed.
                notified.as_mut().enable();
                if tokio::time::timeout(delay, notified).await.is_ok() {
                    return;
                }
                let mut conn = self.inner.conn.clone();
                let cmd = redis::cmd("HMGET").arg(&meta).arg("last").arg("fin").to_owned();
                let polled: Result<(Option<u64>, Option<String>), _> =
                    bounded(self.inner.cfg.op_timeout, cmd.query_async(&mut conn)).await;
                match polled {
                    // Gone, finished or moved on: the caller's next read tells which. A
                    // cursor beyond the newest event reads as Evicted, so it must not wait
                    // either: no append would ever bring `last` down to it.
                    Ok((None, _)) => return,
                    Ok((Some(last), fin)) if last != after || fin.as_deref() == Some("1") => return,
                    Ok(_) => {}
                    // An unreachable backend: let the caller's next read report it
                    // (after the delay just slept, so a caller that retries cannot spin).
                    Err(_) => return,
                }
                delay = (delay * 2).min(self.inner.cfg.poll_max);
            }
        })
    }

    fn remove_session<'a>(&'a self, session: &'a SessionId) -> BoxFuture<'a, Result<(), EventLogError>> {
        Box::pin(async move {
            let base = session_base(&self.inner.cfg.prefix, session);
            let index = format!("{base}:evs");
            let mut inv = REMOVE_SESSION_SCRIPT.prepare_invoke();
            inv.key(&index).arg(&base);
            self.inner.local.forget_session(session);
            self.inner.run::<i64>(&inv).await?;
            // Readers of the removed streams learn it on their next read.
            for n in self.inner.notify.iter() {
                n.notify_waiters();
            }
            Ok(())
        })
    }

    fn purge_expired(&self) -> BoxFuture<'_, Result<(), EventLogError>> {
        // Every key carries its own TTL: Redis drops expired streams by itself.
        Box::pin(async { Ok(()) })
    }
}
