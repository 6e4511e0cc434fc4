//! What the Redis session store and the Redis event log share: the connection type,
//! key naming and the time bound on every operation.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use tower_mcp_session::SessionId;
use tower_mcp_session::store::BoxError;

/// A connection to Redis: one server (through a reconnecting
/// [`ConnectionManager`]) or a Redis Cluster (through a
/// [`ClusterConnection`]).
///
/// Both are multiplexed: cloning is cheap and every clone shares one socket per
/// node, so concurrent operations are pipelined instead of waiting for each other.
/// Build one with `From`:
///
/// ```no_run
/// use tower_mcp_session_redis::RedisConnection;
///
/// # async fn run() -> redis::RedisResult<()> {
/// // One server.
/// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
/// let single = RedisConnection::from(client.get_connection_manager().await?);
///
/// // A cluster.
/// let cluster = redis::cluster::ClusterClient::new(vec!["redis://127.0.0.1:7000/"])?;
/// let cluster = RedisConnection::from(cluster.get_async_connection().await?);
/// # let _ = (single, cluster);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisConnection(Conn);

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// Whether this is a connection to a Redis Cluster.
    ///
    /// ```no_run
    /// # use tower_mcp_session_redis::RedisConnection;
    /// # async fn run() -> redis::RedisResult<()> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
    /// let conn = RedisConnection::from(client.get_connection_manager().await?);
    /// assert!(!conn.is_cluster());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Conn::Cluster(_))
    }
}

impl From<ConnectionManager> for RedisConnection {
    fn from(conn: ConnectionManager) -> Self {
        Self(Conn::Single(conn))
    }
}

impl From<ClusterConnection> for RedisConnection {
    fn from(conn: ClusterConnection) -> Self {
        Self(Conn::Cluster(conn))
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_cluster() { "cluster" } else { "single" };
        f.debug_tuple("RedisConnection").field(&kind).finish()
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// An operation that did not finish within the configured bound.
#[derive(Debug)]
pub(crate) struct OpTimedOut(pub(crate) Duration);

impl fmt::Display for OpTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis operation did not finish within {:?}", self.0)
    }
}

impl std::error::Error for OpTimedOut {}

/// A reply the scripts never produce: the keys were changed by something else, or the
/// prefix is shared with another program.
#[derive(Debug)]
pub(crate) struct BadReply(pub(crate) &'static str);

impl fmt::Display for BadReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected reply from redis: {}", self.0)
    }
}

impl std::error::Error for BadReply {}

/// Run `fut` with the operation bound: a backend that hangs (a stopped server, a
/// partitioned network) must turn into an error the layer can answer 503 with, not
/// into a request that never ends.
pub(crate) async fn bounded<T>(
    limit: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, BoxError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Box::new(e)),
        Err(_) => Err(Box::new(OpTimedOut(limit))),
    }
}

/// `{prefix}{<session>}`: the common start of every key of one session.
///
/// The braces make the session id the Redis Cluster hash tag, so all keys of a session
/// live in one slot and one script can touch them together. Braces and `%` inside the
/// id are percent-escaped: a client-chosen id such as `}x` would otherwise end the tag
/// early (or leave it empty, which hashes the whole key and scatters the session over
/// slots). The escape is injective, so distinct ids keep distinct keys, and no key
/// suffix used by this crate contains `}`, so one session's keys can never spell
/// another session's.
pub(crate) fn session_base(prefix: &str, id: &SessionId) -> String {
    let id = id.as_str();
    let mut out = String::with_capacity(prefix.len() + id.len() + 2);
    out.push_str(prefix);
    out.push('{');
    for c in id.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out.push('}');
    out
}

/// Milliseconds, saturating, for script arguments.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_base_escapes_braces() {
        let id = SessionId::parse("a}b{c%").unwrap();
        assert_eq!(session_base("mcp:", &id), "mcp:{a%7Db%7Bc%25}");
        let plain = SessionId::parse("abc").unwrap();
        assert_eq!(session_base("p:", &plain), "p:{abc}");
        // An id that spells the escape of another id stays distinct.
        let tricky = SessionId::parse("a%7Db").unwrap();
        let real = SessionId::parse("a}b").unwrap();
        assert_ne!(session_base("", &tricky), session_base("", &real));
    }
}
