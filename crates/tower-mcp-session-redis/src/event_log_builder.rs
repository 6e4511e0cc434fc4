//! How a [`RedisEventLog`] is configured: its builder and the settings it carries.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::connection::RedisConnection;
use crate::event_log::{Config, Inner, RedisEventLog, SHARDS};
use crate::event_log_local::LocalStreams;

/// Builds a [`RedisEventLog`].
///
/// ```no_run
/// use std::time::Duration;
/// use tower_mcp_session_redis::RedisEventLog;
///
/// # async fn run() -> redis::RedisResult<()> {
/// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
/// let log = RedisEventLog::builder(client.get_connection_manager().await?)
///     .max_events(256)
///     .max_bytes(512 * 1024)
///     .stream_ttl(Duration::from_secs(600))
///     .build();
/// # let _ = log;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RedisEventLogBuilder {
    conn: RedisConnection,
    cfg: Config,
}

impl RedisEventLogBuilder {
    /// The start of every key. Default `"mcp:"`; sharing the prefix with the Redis
    /// session store is intended (the key names do not overlap) and keeps a session's
    /// streams in the same Cluster slot as its record.
    ///
    /// ```no_run
    /// # use tower_mcp_session_redis::RedisEventLog;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let log = RedisEventLog::builder(conn).key_prefix("billing:mcp:").build();
    /// # }
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.cfg.prefix = prefix.into();
        self
    }

    /// The most events a stream retains (at least 1). Default 1000.
    ///
    /// ```no_run
    /// # use tower_mcp_session_redis::RedisEventLog;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let log = RedisEventLog::builder(conn).max_events(100).build();
    /// # }
    /// ```
    pub fn max_events(mut self, max: u64) -> Self {
        self.cfg.max_events = max.max(1);
        self
    }

    /// The most payload bytes a stream retains. The newest event is kept even when it
    /// alone is larger. Default 1 MiB.
    ///
    /// ```no_run
    /// # use tower_mcp_session_redis::RedisEventLog;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let log = RedisEventLog::builder(conn).max_bytes(256 * 1024).build();
    /// # }
    /// ```
    pub fn max_bytes(mut self, max: u64) -> Self {
        self.cfg.max_bytes = max;
        self
    }

    /// The most streams a session keeps (at least 1). Opening one more drops the
    /// longest-finished stream; when none has finished it fails with
    /// [`EventLogError::TooManyStreams`](tower_mcp_session::event_log::EventLogError::TooManyStreams) (the layer answers 429 `too_many_streams`):
    /// an unfinished stream is never dropped to make room. Default 64.
    ///
    /// ```no_run
    /// # use tower_mcp_session_redis::RedisEventLog;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let log = RedisEventLog::builder(conn).max_streams(16).build();
    /// # }
    /// ```
    pub fn max_streams(mut self, max: u64) -> Self {
        self.cfg.max_streams = max.max(1);
        self
    }

    /// The most payload bytes all streams of one session retain together. Past it the
    /// oldest events go: from finished streams first (longest finished first), then
    /// from the stream being appended to, then from the session's other unfinished
    /// streams, largest first; an unfinished stream keeps its newest event. The same
    /// bound, with the same order, as
    /// [`MemoryEventLogBuilder::max_bytes_per_session`](tower_mcp_session::event_log::MemoryEventLogBuilder::max_bytes_per_session).
    /// Default 4 MiB.
    ///
    /// ```no_run
    /// # use tower_mcp_session_redis::RedisEventLog;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let log = RedisEventLog::builder(conn).max_session_bytes(16 << 20).build();
    /// # }
    /// ```
    pub fn max_session_bytes(mut self, max: u64) -> Self {
        self.cfg.max_session_bytes = max;
        self
    }

    /// How long a stream survives after its last open, append or finish. Default 30
    /// minutes (the layer's default idle timeout); at least 1 ms.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_mcp_session_redis::RedisEventLog;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let log = RedisEventLog::builder(conn).stream_ttl(Duration::from_secs(300)).build();
    /// # }
    /// ```
    pub fn stream_ttl(mut self, ttl: Duration) -> Self {
        self.cfg.ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// The longest any single operation may take before it fails with
    /// [`EventLogError::Unavailable`](tower_mcp_session::event_log::EventLogError::Unavailable). Default 1 second.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_mcp_session_redis::RedisEventLog;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let log = RedisEventLog::builder(conn).op_timeout(Duration::from_millis(300)).build();
    /// # }
    /// ```
    pub fn op_timeout(mut self, limit: Duration) -> Self {
        self.cfg.op_timeout = limit;
        self
    }

    /// The bounds of the poll backoff in [`wait_after`](tower_mcp_session::event_log::EventLog::wait_after), which
    /// is how appends made by *other* instances are noticed. Default 5 ms to 100 ms.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_mcp_session_redis::RedisEventLog;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let log = RedisEventLog::builder(conn)
    ///     .poll_interval(Duration::from_millis(10), Duration::from_millis(250))
    ///     .build();
    /// # }
    /// ```
    pub fn poll_interval(mut self, min: Duration, max: Duration) -> Self {
        self.cfg.poll_min = min.max(Duration::from_millis(1));
        self.cfg.poll_max = max.max(self.cfg.poll_min);
        self
    }

    /// Build the log.
    ///
    /// ```no_run
    /// # use tower_mcp_session_redis::RedisEventLog;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let log = RedisEventLog::builder(conn).build();
    /// # }
    /// ```
    pub fn build(self) -> RedisEventLog {
        RedisEventLog {
            inner: Arc::new(Inner {
                conn: self.conn,
                cfg: self.cfg,
                notify: (0..SHARDS).map(|_| Notify::new()).collect(),
                local: LocalStreams::default(),
            }),
        }
    }
}

impl RedisEventLog {
    /// A log with the default settings (see [`RedisEventLogBuilder`]).
    ///
    /// ```no_run
    /// use tower_mcp_session_redis::RedisEventLog;
    ///
    /// # async fn run() -> redis::RedisResult<()> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
    /// let log = RedisEventLog::new(client.get_connection_manager().await?);
    /// # let _ = log;
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
    /// use tower_mcp_session_redis::RedisEventLog;
    ///
    /// # async fn run() -> redis::RedisResult<()> {
    /// let cluster = redis::cluster::ClusterClient::new(vec!["redis://10.0.0.1:6379/"])?;
    /// let log = RedisEventLog::builder(cluster.get_async_connection().await?).build();
    /// # let _ = log;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(conn: impl Into<RedisConnection>) -> RedisEventLogBuilder {
        RedisEventLogBuilder {
            conn: conn.into(),
            cfg: Config {
                prefix: "mcp:".to_owned(),
                max_events: 1000,
                max_bytes: 1024 * 1024,
                max_streams: 64,
                max_session_bytes: 4 * 1024 * 1024,
                ttl: Duration::from_secs(30 * 60),
                op_timeout: Duration::from_secs(1),
                poll_min: Duration::from_millis(5),
                poll_max: Duration::from_millis(100),
            },
        }
    }

    /// The start of every key this log writes (see [`RedisEventLogBuilder::key_prefix`]).
    ///
    /// ```no_run
    /// use tower_mcp_session_redis::RedisEventLog;
    ///
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let log = RedisEventLog::builder(conn).key_prefix("app:").build();
    /// assert_eq!(log.key_prefix(), "app:");
    /// # }
    /// ```
    pub fn key_prefix(&self) -> &str {
        &self.inner.cfg.prefix
    }
}
