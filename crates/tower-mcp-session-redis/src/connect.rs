//! [`connect`]: both backends on one connection, from a URL, in one call.

use tower_mcp_session::McpSessionLayerBuilder;

use crate::{RedisConnection, RedisEventLog, RedisSessionStore};

/// The session store and the event log on one shared [`RedisConnection`], with their
/// default settings; made by [`connect`].
///
/// Sharing is what a deployment wants: the connection is multiplexed, so the store and
/// the log pipeline over one socket instead of holding two.
#[derive(Debug, Clone)]
pub struct RedisBackends {
    /// Where sessions live.
    pub store: RedisSessionStore,
    /// Where resumable streams live.
    pub event_log: RedisEventLog,
}

impl RedisBackends {
    /// Both backends over `conn` (a single server or a Cluster).
    ///
    /// ```no_run
    /// # async fn run() -> redis::RedisResult<()> {
    /// use tower_mcp_session_redis::{RedisBackends, RedisConnection};
    ///
    /// let cluster = redis::cluster::ClusterClient::new(vec!["redis://127.0.0.1:7000/"])?;
    /// let backends = RedisBackends::new(RedisConnection::from(cluster.get_async_connection().await?));
    /// # let _ = backends;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(conn: impl Into<RedisConnection>) -> Self {
        let conn = conn.into();
        Self {
            store: RedisSessionStore::new(conn.clone()),
            event_log: RedisEventLog::new(conn),
        }
    }

    /// Put both in `builder`: `.store(..)` and `.event_log(..)` in one step.
    ///
    /// ```no_run
    /// # async fn run() -> redis::RedisResult<()> {
    /// use tower_mcp_session::McpSessionLayer;
    ///
    /// let redis = tower_mcp_session_redis::connect("redis://127.0.0.1:6379/").await?;
    /// let layer = redis.configure(McpSessionLayer::builder()).build();
    /// # let _ = layer;
    /// # Ok(())
    /// # }
    /// ```
    pub fn configure(self, builder: McpSessionLayerBuilder) -> McpSessionLayerBuilder {
        builder.store(self.store).event_log(self.event_log)
    }
}

impl RedisConnection {
    /// Connect to the one Redis server at `url` (`redis://host:port/db`,
    /// `rediss://..` needs one of the `redis` crate's TLS features), through a
    /// reconnecting connection manager.
    ///
    /// ```no_run
    /// # async fn run() -> redis::RedisResult<()> {
    /// let conn = tower_mcp_session_redis::RedisConnection::connect("redis://127.0.0.1:6379/").await?;
    /// assert!(!conn.is_cluster());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        Ok(Self::from(client.get_connection_manager().await?))
    }
}

/// Connect to the Redis server at `url` and make the session store and event log on
/// that one connection: the whole Redis setup of a deployment in one call. The store
/// keeps a local cache of validated sessions, invalidated through pub/sub
/// ([`RedisSessionStoreBuilder::local_cache`](crate::RedisSessionStoreBuilder::local_cache)).
///
/// ```no_run
/// # async fn run() -> redis::RedisResult<()> {
/// use tower_mcp_session::McpSessionLayer;
///
/// let redis = tower_mcp_session_redis::connect("redis://127.0.0.1:6379/").await?;
/// let layer = McpSessionLayer::builder()
///     .store(redis.store)
///     .event_log(redis.event_log)
///     .build();
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
pub async fn connect(url: &str) -> redis::RedisResult<RedisBackends> {
    let client = redis::Client::open(url)?;
    let conn = RedisConnection::from(client.get_connection_manager().await?);
    Ok(RedisBackends {
        store: RedisSessionStore::builder(conn.clone()).local_cache(client).build(),
        event_log: RedisEventLog::new(conn),
    })
}
