//! [`ServerPool`]: client sessions with many servers, kept healthy.

mod config;
mod connection;
mod failover;
mod health;
mod policy;
mod routing;

pub use config::{
    FailoverEvent, HealthConfig, HealthState, PoolError, PoolEvent, ServerPoolBuilder, SessionInfo, SessionStats,
};
pub use connection::{McpConnection, ServerFactory};
pub use policy::{CircuitBreakerConfig, CircuitState, RetryPolicy, RpcCall};
pub use routing::PooledServer;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde_json::json;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use self::connection::Unconnected;
use self::policy::Breaker;
use super::backoff::Backoff;
use super::error::Error;

struct Health {
    state: HealthState,
    failures: u32,
    successes: u32,
    last_rtt: Option<Duration>,
}

struct Server {
    id: Arc<str>,
    conn: RwLock<Arc<dyn McpConnection>>,
    factory: Option<Arc<dyn ServerFactory>>,
    health: Mutex<Health>,
    breaker: Arc<Breaker>,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    failures: AtomicU64,
    reconnects: AtomicU64,
    reconnecting: AtomicBool,
    reconnect_task: Mutex<Option<JoinHandle<()>>>,
}

impl Server {
    fn conn(&self) -> Arc<dyn McpConnection> {
        self.conn.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn state(&self) -> HealthState {
        self.health.lock().unwrap_or_else(PoisonError::into_inner).state
    }

    fn info(&self) -> SessionInfo {
        let conn = self.conn();
        let health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        SessionInfo {
            server: self.id.to_string(),
            state: health.state,
            circuit: self.breaker.state(),
            session_id: conn.session_id(),
            protocol_version: conn.protocol_version(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            consecutive_failures: health.failures,
            last_rtt: health.last_rtt,
            reconnects: self.reconnects.load(Ordering::Relaxed),
            reconnectable: self.factory.is_some(),
        }
    }
}

struct Group {
    /// Primary first, then the backups in order of preference.
    members: Vec<Arc<str>>,
    active: Arc<str>,
}

struct Config {
    max_servers: usize,
    health: HealthConfig,
    breaker: CircuitBreakerConfig,
    retry: RetryPolicy,
    reconnect: Backoff,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
}

struct Inner {
    config: Config,
    servers: RwLock<BTreeMap<Arc<str>, Arc<Server>>>,
    groups: Mutex<BTreeMap<String, Group>>,
    events: broadcast::Sender<PoolEvent>,
    monitor: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.monitor.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
        {
            let servers = self.servers.get_mut().unwrap_or_else(PoisonError::into_inner);
            for server in servers.values() {
                if let Some(task) = server
                    .reconnect_task
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                {
                    task.abort();
                }
            }
        }
    }
}

/// Client sessions with many MCP servers, kept healthy.
///
/// - Servers join with [`add_server`](Self::add_server) (a ready [`McpConnection`],
///   e.g. an [`McpClient`](crate::McpClient)) or [`add_server_with_reconnect`](Self::add_server_with_reconnect)
///   (a [`ServerFactory`] the pool calls again, with exponential backoff and jitter,
///   whenever the server turns unhealthy). Up to a maximum; a duplicate id is an error.
/// - Health checks ([`start_health_monitoring`](Self::start_health_monitoring)) ping
///   every server on an interval with a timeout: see [`HealthConfig`].
/// - [`get_healthy_connection`](Self::get_healthy_connection) picks the healthy server
///   with the fewest requests in flight.
/// - Failover groups ([`add_failover_group`](Self::add_failover_group)) send traffic to
///   the primary, switch to the first healthy backup when it turns unhealthy, and back
///   when it is healthy again.
/// - Every request through the pool passes a tower [`Retry`](tower::retry::Retry) with the pool's
///   [`RetryPolicy`] and a per-server circuit breaker ([`CircuitBreakerConfig`]).
///
/// Cheap to clone; background tasks stop when the last clone is dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_mcp_session_client::{HealthConfig, ServerPool};
///
/// # async fn demo(primary: impl tower_mcp_session_client::McpConnection, backup: impl tower_mcp_session_client::McpConnection) -> Result<(), tower_mcp_session_client::PoolError> {
/// let pool = ServerPool::builder()
///     .max_servers(16)
///     .health(HealthConfig::new(Duration::from_secs(10), Duration::from_secs(2)))
///     .build();
/// pool.add_server("primary", primary).await?;
/// pool.add_server("backup", backup).await?;
/// pool.add_failover_group("search", "primary", ["backup"])?;
/// pool.start_health_monitoring();
/// let hits = pool.request_group("search", "tools/call", serde_json::json!({"name": "search"})).await?;
/// println!("{hits}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ServerPool {
    inner: Arc<Inner>,
}

impl Default for ServerPool {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl fmt::Debug for ServerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerPool")
            .field("servers", &self.session_count())
            .finish_non_exhaustive()
    }
}

impl ServerPool {
    /// A pool with every default.
    ///
    /// ```
    /// let pool = tower_mcp_session_client::ServerPool::new();
    /// assert_eq!(pool.session_count(), 0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Start configuring a pool.
    pub fn builder() -> ServerPoolBuilder {
        ServerPoolBuilder::default()
    }

    /// Events: health changes, failovers, reconnections.
    ///
    /// ```
    /// let pool = tower_mcp_session_client::ServerPool::new();
    /// let mut events = pool.subscribe();
    /// assert!(events.try_recv().is_err());
    /// ```
    pub fn subscribe(&self) -> broadcast::Receiver<PoolEvent> {
        self.inner.events.subscribe()
    }

    /// Add a server with a ready connection, and initialize it unless it is. Returns its
    /// state after that first contact: a server that does not answer yet is still added
    /// (unhealthy) and healed by the health checks.
    ///
    /// ```no_run
    /// # async fn demo(pool: tower_mcp_session_client::ServerPool, conn: impl tower_mcp_session_client::McpConnection) -> Result<(), tower_mcp_session_client::PoolError> {
    /// let state = pool.add_server("local", conn).await?;
    /// println!("{state:?}");
    /// # Ok(()) }
    /// ```
    pub async fn add_server(
        &self,
        id: impl Into<String>,
        connection: impl McpConnection,
    ) -> Result<HealthState, PoolError> {
        let server = self.register(id.into(), Arc::new(connection), None)?;
        Ok(self.first_contact(&server).await)
    }

    /// Add a server made by `factory`, which the pool calls again to reconnect whenever
    /// the server turns unhealthy. Returns its state after the first connection attempt;
    /// when that fails the pool keeps reconnecting in the background.
    ///
    /// ```no_run
    /// # async fn demo(pool: tower_mcp_session_client::ServerPool, factory: impl tower_mcp_session_client::ServerFactory) -> Result<(), tower_mcp_session_client::PoolError> {
    /// pool.add_server_with_reconnect("remote", factory).await?;
    /// # Ok(()) }
    /// ```
    pub async fn add_server_with_reconnect(
        &self,
        id: impl Into<String>,
        factory: impl ServerFactory,
    ) -> Result<HealthState, PoolError> {
        let id = id.into();
        let factory: Arc<dyn ServerFactory> = Arc::new(factory);
        self.check_room(&id)?;
        let attempt = tokio::time::timeout(self.inner.config.connect_timeout, factory.connect()).await;
        let (conn, connected) = match attempt {
            Ok(Ok(conn)) => (conn, true),
            _ => (Arc::new(Unconnected) as Arc<dyn McpConnection>, false),
        };
        let server = self.register(id, conn, Some(factory))?;
        if !connected {
            self.set_state(&server, HealthState::Disconnected);
            self.start_reconnect(&server);
            return Ok(server.state());
        }
        Ok(self.first_contact(&server).await)
    }

    fn check_room(&self, id: &str) -> Result<(), PoolError> {
        let servers = self.inner.servers.read().unwrap_or_else(PoisonError::into_inner);
        if servers.contains_key(id) {
            return Err(PoolError::DuplicateServer(id.to_owned()));
        }
        if servers.len() >= self.inner.config.max_servers {
            return Err(PoolError::TooManyServers {
                max: self.inner.config.max_servers,
            });
        }
        Ok(())
    }

    fn register(
        &self,
        id: String,
        conn: Arc<dyn McpConnection>,
        factory: Option<Arc<dyn ServerFactory>>,
    ) -> Result<Arc<Server>, PoolError> {
        let mut servers = self.inner.servers.write().unwrap_or_else(PoisonError::into_inner);
        if servers.contains_key(id.as_str()) {
            return Err(PoolError::DuplicateServer(id));
        }
        if servers.len() >= self.inner.config.max_servers {
            return Err(PoolError::TooManyServers {
                max: self.inner.config.max_servers,
            });
        }
        let id: Arc<str> = id.into();
        let server = Arc::new(Server {
            id: id.clone(),
            conn: RwLock::new(conn),
            factory,
            health: Mutex::new(Health {
                state: HealthState::Connecting,
                failures: 0,
                successes: 0,
                last_rtt: None,
            }),
            breaker: Arc::new(Breaker::new(self.inner.config.breaker)),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            reconnecting: AtomicBool::new(false),
            reconnect_task: Mutex::new(None),
        });
        servers.insert(id, server.clone());
        Ok(server)
    }

    /// Initialize (if needed) and ping a new server; healthy or unhealthy after it.
    async fn first_contact(&self, server: &Arc<Server>) -> HealthState {
        let conn = server.conn();
        let contact = tokio::time::timeout(self.inner.config.connect_timeout, async {
            if !conn.is_initialized() {
                conn.initialize().await?;
            }
            conn.request("ping", json!({})).await
        })
        .await;
        match contact {
            Ok(Ok(_)) | Ok(Err(Error::Rpc { .. })) => {
                self.set_state(server, HealthState::Healthy);
            }
            _ => {
                {
                    let mut h = server.health.lock().unwrap_or_else(PoisonError::into_inner);
                    h.failures = self.inner.config.health.unhealthy_after;
                }
                self.set_state(server, HealthState::Unhealthy);
                if server.factory.is_some() {
                    self.start_reconnect(server);
                }
            }
        }
        server.state()
    }

    /// Remove a server: stop reconnecting it, drop it from its failover groups and close
    /// its session.
    ///
    /// ```no_run
    /// # async fn demo(pool: tower_mcp_session_client::ServerPool) -> Result<(), tower_mcp_session_client::PoolError> {
    /// pool.remove_server("local").await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove_server(&self, id: &str) -> Result<(), PoolError> {
        let server = self
            .inner
            .servers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
            .ok_or_else(|| PoolError::UnknownServer(id.to_owned()))?;
        if let Some(task) = server
            .reconnect_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        {
            let mut groups = self.inner.groups.lock().unwrap_or_else(PoisonError::into_inner);
            for group in groups.values_mut() {
                group.members.retain(|m| &**m != id);
            }
            groups.retain(|_, g| !g.members.is_empty());
        }
        self.evaluate_groups();
        let conn = server.conn();
        let _ = tokio::time::timeout(self.inner.config.health.timeout, conn.close()).await;
        Ok(())
    }

    /// One server's session.
    ///
    /// ```
    /// let pool = tower_mcp_session_client::ServerPool::new();
    /// assert!(pool.get_session_info("nope").is_none());
    /// ```
    pub fn get_session_info(&self, id: &str) -> Option<SessionInfo> {
        self.server(id).map(|s| s.info())
    }

    /// Every server's session, ordered by id.
    ///
    /// ```
    /// let pool = tower_mcp_session_client::ServerPool::new();
    /// assert!(pool.list_sessions().is_empty());
    /// ```
    pub fn list_sessions(&self) -> Vec<SessionInfo> {
        self.servers().iter().map(|s| s.info()).collect()
    }

    /// How many servers the pool holds.
    pub fn session_count(&self) -> usize {
        self.inner.servers.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Servers per state.
    ///
    /// ```
    /// let pool = tower_mcp_session_client::ServerPool::new();
    /// assert_eq!(pool.session_stats().healthy, 0);
    /// ```
    pub fn session_stats(&self) -> SessionStats {
        let mut stats = SessionStats::default();
        for server in self.servers() {
            stats.total += 1;
            match server.state() {
                HealthState::Healthy => stats.healthy += 1,
                HealthState::Degraded => stats.degraded += 1,
                HealthState::Unhealthy => stats.unhealthy += 1,
                HealthState::Connecting => stats.connecting += 1,
                HealthState::Disconnected => stats.disconnected += 1,
            }
        }
        stats
    }

    fn server(&self, id: &str) -> Option<Arc<Server>> {
        self.inner
            .servers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn servers(&self) -> Vec<Arc<Server>> {
        self.inner
            .servers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}
