//! [`RedisSessionStoreBuilder`] and the constructors of [`RedisSessionStore`].

use std::sync::Arc;
use std::time::Duration;

#[cfg(doc)]
use tower_mcp_session::store::StoreError;

use super::cache::LocalCache;
use super::{Inner, RedisSessionStore};
use crate::connection::RedisConnection;

/// Builds a [`RedisSessionStore`]. Only storage options live here; timeouts and the
/// session cap are set on the layer.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_mcp_session_redis::RedisSessionStore;
///
/// # async fn run() -> redis::RedisResult<()> {
/// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
/// let store = RedisSessionStore::builder(client.get_connection_manager().await?)
///     .key_prefix("billing:mcp:")
///     .op_timeout(Duration::from_millis(500))
///     .build();
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RedisSessionStoreBuilder {
    conn: RedisConnection,
    prefix: String,
    op_timeout: Duration,
    cache_client: Option<redis::Client>,
}

impl RedisSessionStoreBuilder {
    /// The start of every key this store writes. Default `"mcp:"`.
    ///
    /// Give each application its own prefix. A prefix that itself contains a `{…}` hash
    /// tag pins every session to that tag's slot (still correct, but one node then holds
    /// all sessions).
    ///
    /// ```no_run
    /// # use tower_mcp_session_redis::RedisSessionStore;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let store = RedisSessionStore::builder(conn).key_prefix("billing:mcp:").build();
    /// # }
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest any single Redis command or script of this store may take; past it
    /// the operation fails with [`StoreError::Backend`] (the layer answers 503).
    /// Default 1 second.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tower_mcp_session_redis::RedisSessionStore;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let store = RedisSessionStore::builder(conn).op_timeout(Duration::from_millis(250)).build();
    /// # }
    /// ```
    pub fn op_timeout(mut self, limit: Duration) -> Self {
        self.op_timeout = limit;
        self
    }

    /// Keep the sessions this process validated in a local cache, so that a request of
    /// an established session costs no Redis round trip, and hear of every deletion
    /// (on any instance) through Redis pub/sub on a connection of its own, opened with
    /// `client` to the same server (any node, for a Cluster: classic pub/sub reaches
    /// every node). Off by default; [`connect`](crate::connect) turns it on.
    ///
    /// What it changes, measured in `BENCHMARKS.md`:
    /// - A cached session is answered from memory for at most `min(idle / 8, 30 s)`
    ///   after the Redis round trip that last refreshed it; from half that age on, one
    ///   request's refresh runs in the background. So an active session is refreshed in
    ///   Redis about every `min(idle / 16, 15 s)`: its idle expiry (and the last
    ///   activity the admin handle reports) is that much less exact, never later.
    /// - A `DELETE` (or eviction, or admin termination) on any instance publishes the
    ///   id in the script that removes the record; every cache drops it on receipt
    ///   (`BENCHMARKS.md` has the delay measured across two instances).
    /// - When the subscription is not confirmed, breaks, or falls silent (each
    ///   instance publishes a heartbeat every 2 s and expects to hear one within 6 s),
    ///   the cache is emptied and every request goes to Redis until it is back.
    /// - Memory: at most 100,000 sessions are cached (the records the layer already
    ///   holds while serving them, ≈ 500 bytes each in the load harness), and entries
    ///   past their trust are swept once a second.
    /// - Sessions Redis drops by itself other than by expiry (a `maxmemory` eviction
    ///   policy that evicts keys, `FLUSHALL`) are not published: their cached entries
    ///   live out their trust.
    ///
    /// ```no_run
    /// # use tower_mcp_session_redis::RedisSessionStore;
    /// # async fn run() -> redis::RedisResult<()> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
    /// let store = RedisSessionStore::builder(client.get_connection_manager().await?)
    ///     .local_cache(client)
    ///     .build();
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn local_cache(mut self, client: redis::Client) -> Self {
        self.cache_client = Some(client);
        self
    }

    /// Build the store.
    ///
    /// ```no_run
    /// # use tower_mcp_session_redis::RedisSessionStore;
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let store = RedisSessionStore::builder(conn).build();
    /// # }
    /// ```
    pub fn build(self) -> RedisSessionStore {
        let channel = format!("{}invalidate", self.prefix);
        RedisSessionStore {
            inner: Arc::new(Inner {
                sessions_key: format!("{}{{%index}}:sessions", self.prefix),
                slots_key: format!("{}{{%index}}:slots", self.prefix),
                ids_key: format!("{}{{%index}}:ids", self.prefix),
                cache: self
                    .cache_client
                    .map(|client| Arc::new(LocalCache::new(client, channel.clone(), self.op_timeout))),
                channel,
                conn: self.conn,
                prefix: self.prefix,
                op_timeout: self.op_timeout,
            }),
        }
    }
}

impl RedisSessionStore {
    /// The start of every key this store writes (see
    /// [`RedisSessionStoreBuilder::key_prefix`]).
    ///
    /// ```no_run
    /// use tower_mcp_session_redis::RedisSessionStore;
    ///
    /// # async fn run(conn: redis::aio::ConnectionManager) {
    /// let store = RedisSessionStore::builder(conn).key_prefix("app:").build();
    /// assert_eq!(store.key_prefix(), "app:");
    /// # }
    /// ```
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// A store with the default settings (see [`RedisSessionStoreBuilder`]).
    ///
    /// ```no_run
    /// use tower_mcp_session_redis::RedisSessionStore;
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
    /// use tower_mcp_session_redis::RedisSessionStore;
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
            prefix: "mcp:".to_owned(),
            op_timeout: Duration::from_secs(1),
            cache_client: None,
        }
    }
}
