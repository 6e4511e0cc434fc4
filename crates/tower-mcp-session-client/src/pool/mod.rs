//! [`ServerPool`]: client sessions with many servers, kept healthy.

mod policy;

pub use policy::{CircuitBreakerConfig, CircuitState, RetryPolicy, RpcCall};

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tower::ServiceExt;
use tower::retry::Retry;
use tower_service::Service;

use self::policy::{Breaker, CircuitBreaker};
use super::backoff::Backoff;
use super::error::{BoxError, Error};
use super::layer::McpClient;
use crate::BoxFuture;

/// One MCP session with one server, as a [`ServerPool`] uses it. Implemented by
/// [`McpClient`]; implement it yourself to pool something else.
///
/// ```no_run
/// use std::sync::Arc;
/// use tower_mcp_session_client::McpConnection;
///
/// # async fn demo(conn: Arc<dyn McpConnection>) -> Result<(), tower_mcp_session_client::Error> {
/// conn.initialize().await?;
/// let tools = conn.request("tools/list", serde_json::json!({})).await?;
/// println!("{tools} from session {:?}", conn.session_id());
/// # Ok(()) }
/// ```
pub trait McpConnection: Send + Sync + 'static {
    /// Send a JSON-RPC request; the `result`, or [`Error::Rpc`] for a JSON-RPC error.
    fn request(&self, method: &str, params: Value) -> BoxFuture<'static, Result<Value, Error>>;
    /// Run the `initialize` handshake.
    fn initialize(&self) -> BoxFuture<'static, Result<Value, Error>>;
    /// End the session.
    fn close(&self) -> BoxFuture<'static, Result<(), Error>>;
    /// Whether a session is open.
    fn is_initialized(&self) -> bool;
    /// The server-assigned session id.
    fn session_id(&self) -> Option<String>;
    /// The negotiated protocol version.
    fn protocol_version(&self) -> Option<String>;
}

impl<S, RB> McpConnection for McpClient<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    fn request(&self, method: &str, params: Value) -> BoxFuture<'static, Result<Value, Error>> {
        let this = self.clone();
        let method = method.to_owned();
        Box::pin(async move { McpClient::request(&this, &method, params).await })
    }

    fn initialize(&self) -> BoxFuture<'static, Result<Value, Error>> {
        let this = self.clone();
        Box::pin(async move { McpClient::initialize(&this).await })
    }

    fn close(&self) -> BoxFuture<'static, Result<(), Error>> {
        let this = self.clone();
        Box::pin(async move { McpClient::close(&this).await })
    }

    fn is_initialized(&self) -> bool {
        McpClient::is_initialized(self)
    }

    fn session_id(&self) -> Option<String> {
        McpClient::session_id(self)
    }

    fn protocol_version(&self) -> Option<String> {
        McpClient::protocol_version(self)
    }
}

/// Makes a fresh connection to a server, for reconnecting. Implemented for closures
/// `Fn() -> impl Future<Output = Result<C, Error>>` where `C: McpConnection`.
///
/// ```no_run
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower::Layer;
/// use tower_mcp_session_client::{McpClientLayer, ServerPool};
///
/// # async fn demo(pool: ServerPool) -> Result<(), tower_mcp_session_client::PoolError> {
/// pool.add_server_with_reconnect("search", || async {
///     let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
///     let layer = McpClientLayer::builder().endpoint("http://127.0.0.1:8080/mcp".parse().unwrap()).build();
///     Ok(layer.layer(http))
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub trait ServerFactory: Send + Sync + 'static {
    /// Connect anew (the pool initializes the connection if it is not yet).
    fn connect(&self) -> BoxFuture<'static, Result<Arc<dyn McpConnection>, Error>>;
}

impl<F, Fut, C> ServerFactory for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<C, Error>> + Send + 'static,
    C: McpConnection,
{
    fn connect(&self) -> BoxFuture<'static, Result<Arc<dyn McpConnection>, Error>> {
        let fut = self();
        Box::pin(async move { fut.await.map(|c| Arc::new(c) as Arc<dyn McpConnection>) })
    }
}

/// The health of one server in a [`ServerPool`].
///
/// ```
/// use tower_mcp_session_client::HealthState;
///
/// assert!(HealthState::Healthy.is_usable());
/// assert!(HealthState::Degraded.is_usable());
/// assert!(!HealthState::Unhealthy.is_usable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HealthState {
    /// Answering.
    Healthy,
    /// Failed its last check(s), fewer than the unhealthy threshold.
    Degraded,
    /// Failed the unhealthy threshold of checks in a row.
    Unhealthy,
    /// Being (re)connected through its factory.
    Connecting,
    /// A reconnection attempt failed; waiting for the next.
    Disconnected,
}

impl HealthState {
    /// Whether requests may still go there (healthy or degraded).
    pub fn is_usable(self) -> bool {
        matches!(self, Self::Healthy | Self::Degraded)
    }
}

/// Health checking of a [`ServerPool`].
///
/// Every `interval` each server gets a `ping` that must answer within `timeout`. The
/// first failure makes it [`Degraded`](HealthState::Degraded), `unhealthy_after`
/// failures in a row [`Unhealthy`](HealthState::Unhealthy); one success heals a
/// degraded server, `healthy_after` in a row an unhealthy one. Real requests count
/// the same way as checks (a failure that says the server is in trouble, a success).
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session_client::HealthConfig;
///
/// let health = HealthConfig::new(Duration::from_secs(30), Duration::from_secs(5))
///     .unhealthy_after(3)
///     .healthy_after(2);
/// # let _ = health;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    interval: Duration,
    timeout: Duration,
    unhealthy_after: u32,
    healthy_after: u32,
}

impl HealthConfig {
    /// Check every `interval`, each check allowed `timeout`.
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            interval: interval.max(Duration::from_millis(1)),
            timeout,
            unhealthy_after: 3,
            healthy_after: 2,
        }
    }

    /// Failures in a row that make a server unhealthy (default 3; at least 1).
    pub fn unhealthy_after(mut self, failures: u32) -> Self {
        self.unhealthy_after = failures.max(1);
        self
    }

    /// Successes in a row that make an unhealthy server healthy again (default 2).
    pub fn healthy_after(mut self, successes: u32) -> Self {
        self.healthy_after = successes.max(1);
        self
    }

    /// The longest a dead server can go unnoticed by checks alone: `unhealthy_after`
    /// rounds (a round lasts the interval, or the timeout when checks hang) plus one
    /// timeout. Failed requests count too, so traffic usually notices sooner.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session_client::HealthConfig;
    ///
    /// let h = HealthConfig::new(Duration::from_millis(100), Duration::from_millis(50)).unhealthy_after(2);
    /// assert_eq!(h.detection_time(), Duration::from_millis(250));
    /// ```
    pub fn detection_time(&self) -> Duration {
        self.interval.max(self.timeout) * self.unhealthy_after + self.timeout
    }
}

impl Default for HealthConfig {
    /// Every 30 s, 5 s timeout, unhealthy after 3 failures, healthy after 2 successes.
    fn default() -> Self {
        Self::new(Duration::from_secs(30), Duration::from_secs(5))
    }
}

/// Why a pool operation failed.
///
/// ```
/// use tower_mcp_session_client::PoolError;
///
/// assert_eq!(PoolError::TooManyServers { max: 2 }.to_string(), "the pool holds its maximum of 2 servers");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError {
    /// A server with this id is in the pool already.
    DuplicateServer(String),
    /// The pool is full.
    TooManyServers {
        /// The maximum.
        max: usize,
    },
    /// No server with this id.
    UnknownServer(String),
    /// No failover group with this id.
    UnknownGroup(String),
    /// A failover group needs at least one member, each a server of the pool.
    InvalidGroup(String),
    /// No server is healthy.
    NoHealthyServer,
    /// The server's circuit breaker is open.
    CircuitOpen(String),
    /// The request itself failed.
    Client(Error),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateServer(id) => write!(f, "server {id:?} is in the pool already"),
            Self::TooManyServers { max } => write!(f, "the pool holds its maximum of {max} servers"),
            Self::UnknownServer(id) => write!(f, "no server {id:?} in the pool"),
            Self::UnknownGroup(id) => write!(f, "no failover group {id:?}"),
            Self::InvalidGroup(why) => write!(f, "invalid failover group: {why}"),
            Self::NoHealthyServer => f.write_str("no healthy server"),
            Self::CircuitOpen(id) => write!(f, "circuit breaker of server {id:?} is open"),
            Self::Client(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Client(e) => Some(e),
            _ => None,
        }
    }
}

/// A failover group changed its active server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailoverEvent {
    /// The group.
    pub group: String,
    /// The server traffic left.
    pub from: String,
    /// The server traffic goes to now.
    pub to: String,
}

/// What a [`ServerPool`] reports to [`subscribe`](ServerPool::subscribe)rs.
///
/// ```
/// use tower_mcp_session_client::{HealthState, PoolEvent};
///
/// let e = PoolEvent::StateChanged { server: "a".into(), from: HealthState::Healthy, to: HealthState::Degraded };
/// assert!(matches!(e, PoolEvent::StateChanged { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolEvent {
    /// A server's health changed.
    StateChanged {
        /// The server.
        server: String,
        /// Before.
        from: HealthState,
        /// Now.
        to: HealthState,
    },
    /// A failover group switched servers.
    FailedOver(FailoverEvent),
    /// A server was reconnected through its factory.
    Reconnected {
        /// The server.
        server: String,
        /// Attempts it took.
        attempts: u32,
    },
}

/// One server's session as the pool sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The server's id in the pool.
    pub server: String,
    /// Its health.
    pub state: HealthState,
    /// Its circuit breaker.
    pub circuit: CircuitState,
    /// The MCP session id, if one is open.
    pub session_id: Option<String>,
    /// The negotiated protocol version.
    pub protocol_version: Option<String>,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Requests sent through the pool.
    pub requests: u64,
    /// Of those, failed ones (transport, timeout, 5xx, open circuit).
    pub failures: u64,
    /// Failed checks or requests in a row.
    pub consecutive_failures: u32,
    /// Round trip of the last successful check.
    pub last_rtt: Option<Duration>,
    /// Successful reconnections through the factory.
    pub reconnects: u64,
    /// Whether the server can be reconnected through a factory.
    pub reconnectable: bool,
}

/// How many servers are in each state.
///
/// ```
/// use tower_mcp_session_client::SessionStats;
///
/// let s = SessionStats::default();
/// assert_eq!(s.total, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// All servers.
    pub total: usize,
    /// Healthy ones.
    pub healthy: usize,
    /// Degraded ones.
    pub degraded: usize,
    /// Unhealthy ones.
    pub unhealthy: usize,
    /// Being connected.
    pub connecting: usize,
    /// Waiting to reconnect.
    pub disconnected: usize,
}

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
        self.conn.read().expect("server lock").clone()
    }

    fn state(&self) -> HealthState {
        self.health.lock().expect("health lock").state
    }

    fn info(&self) -> SessionInfo {
        let conn = self.conn();
        let health = self.health.lock().expect("health lock");
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
        if let Some(task) = self.monitor.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
        if let Ok(servers) = self.servers.get_mut() {
            for server in servers.values() {
                if let Some(task) = server.reconnect_task.lock().ok().and_then(|mut t| t.take()) {
                    task.abort();
                }
            }
        }
    }
}

/// Client sessions with many MCP servers, kept healthy.
///
/// - Servers join with [`add_server`](Self::add_server) (a ready [`McpConnection`],
///   e.g. an [`McpClient`]) or [`add_server_with_reconnect`](Self::add_server_with_reconnect)
///   (a [`ServerFactory`] the pool calls again, with exponential backoff and jitter,
///   whenever the server turns unhealthy). Up to a maximum; a duplicate id is an error.
/// - Health checks ([`start_health_monitoring`](Self::start_health_monitoring)) ping
///   every server on an interval with a timeout: see [`HealthConfig`].
/// - [`get_healthy_connection`](Self::get_healthy_connection) picks the healthy server
///   with the fewest requests in flight.
/// - Failover groups ([`add_failover_group`](Self::add_failover_group)) send traffic to
///   the primary, switch to the first healthy backup when it turns unhealthy, and back
///   when it is healthy again.
/// - Every request through the pool passes a tower [`Retry`] with the pool's
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

/// Configures a [`ServerPool`].
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session_client::{Backoff, CircuitBreakerConfig, RetryPolicy, ServerPool};
///
/// let pool = ServerPool::builder()
///     .max_servers(8)
///     .circuit_breaker(CircuitBreakerConfig::new(3, Duration::from_secs(10)))
///     .retry(RetryPolicy::new(1))
///     .reconnect_backoff(Backoff::new(Duration::from_millis(200), Duration::from_secs(30)))
///     .build();
/// assert_eq!(pool.session_count(), 0);
/// ```
pub struct ServerPoolBuilder {
    config: Config,
}

impl Default for ServerPoolBuilder {
    fn default() -> Self {
        Self {
            config: Config {
                max_servers: 64,
                health: HealthConfig::default(),
                breaker: CircuitBreakerConfig::default(),
                retry: RetryPolicy::default(),
                reconnect: Backoff::new(Duration::from_millis(250), Duration::from_secs(30)),
                connect_timeout: Duration::from_secs(10),
                request_timeout: Some(Duration::from_secs(60)),
            },
        }
    }
}

impl ServerPoolBuilder {
    /// The most servers the pool holds (default 64).
    pub fn max_servers(mut self, max: usize) -> Self {
        self.config.max_servers = max;
        self
    }

    /// Health checking (default: every 30 s, 5 s timeout, unhealthy after 3).
    pub fn health(mut self, health: HealthConfig) -> Self {
        self.config.health = health;
        self
    }

    /// The circuit breaker of every server (default: 5 failures, 30 s).
    pub fn circuit_breaker(mut self, breaker: CircuitBreakerConfig) -> Self {
        self.config.breaker = breaker;
        self
    }

    /// The retry policy of every request (default: 2 retries of idempotent methods).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }

    /// The wait between reconnection attempts (default 250 ms doubling to 30 s,
    /// jittered).
    pub fn reconnect_backoff(mut self, backoff: Backoff) -> Self {
        self.config.reconnect = backoff;
        self
    }

    /// How long one connection attempt (factory, initialize, ping) may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Deadline of each request attempt through the pool (default 60 s).
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Build the pool (no background task runs until
    /// [`start_health_monitoring`](ServerPool::start_health_monitoring)).
    pub fn build(self) -> ServerPool {
        ServerPool {
            inner: Arc::new(Inner {
                config: self.config,
                servers: RwLock::default(),
                groups: Mutex::default(),
                events: broadcast::channel(256).0,
                monitor: Mutex::new(None),
            }),
        }
    }
}

impl fmt::Debug for ServerPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerPoolBuilder").finish_non_exhaustive()
    }
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
        let servers = self.inner.servers.read().expect("pool lock");
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
        let mut servers = self.inner.servers.write().expect("pool lock");
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
                    let mut h = server.health.lock().expect("health lock");
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
            .expect("pool lock")
            .remove(id)
            .ok_or_else(|| PoolError::UnknownServer(id.to_owned()))?;
        if let Some(task) = server.reconnect_task.lock().expect("task lock").take() {
            task.abort();
        }
        {
            let mut groups = self.inner.groups.lock().expect("group lock");
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
        self.inner.servers.read().expect("pool lock").len()
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
        self.inner.servers.read().expect("pool lock").get(id).cloned()
    }

    fn servers(&self) -> Vec<Arc<Server>> {
        self.inner
            .servers
            .read()
            .expect("pool lock")
            .values()
            .cloned()
            .collect()
    }

    /// The healthy server with the fewest requests in flight (ties: fewest requests so
    /// far, then id).
    ///
    /// ```no_run
    /// # async fn demo(pool: tower_mcp_session_client::ServerPool) -> Result<(), tower_mcp_session_client::PoolError> {
    /// let server = pool.get_healthy_connection().ok_or(tower_mcp_session_client::PoolError::NoHealthyServer)?;
    /// let tools = server.request("tools/list", serde_json::json!({})).await?;
    /// # let _ = tools; Ok(()) }
    /// ```
    pub fn get_healthy_connection(&self) -> Option<PooledServer> {
        self.servers()
            .into_iter()
            .filter(|s| s.state() == HealthState::Healthy)
            .min_by_key(|s| (s.in_flight.load(Ordering::Relaxed), s.requests.load(Ordering::Relaxed)))
            .map(|server| PooledServer {
                pool: self.clone(),
                server,
            })
    }

    /// A handle on one server.
    pub fn server_handle(&self, id: &str) -> Option<PooledServer> {
        self.server(id).map(|server| PooledServer {
            pool: self.clone(),
            server,
        })
    }

    /// Send a request to server `id` through its retry policy and circuit breaker.
    ///
    /// ```no_run
    /// # async fn demo(pool: tower_mcp_session_client::ServerPool) -> Result<(), tower_mcp_session_client::PoolError> {
    /// let answer = pool.request("local", "tools/call", serde_json::json!({"name": "echo", "arguments": {"message": "hi"}})).await?;
    /// # let _ = answer; Ok(()) }
    /// ```
    pub async fn request(&self, id: &str, method: &str, params: Value) -> Result<Value, PoolError> {
        let server = self.server(id).ok_or_else(|| PoolError::UnknownServer(id.to_owned()))?;
        self.send(server, RpcCall::new(method, params)).await
    }

    async fn send(&self, server: Arc<Server>, call: RpcCall) -> Result<Value, PoolError> {
        let rpc = Rpc {
            pool: Arc::downgrade(&self.inner),
            server: server.clone(),
            timeout: self.inner.config.request_timeout,
        };
        let breaker = CircuitBreaker {
            breaker: server.breaker.clone(),
            server: server.id.clone(),
            inner: rpc,
        };
        Retry::new(self.inner.config.retry.clone(), breaker).oneshot(call).await
    }

    /// Define a failover group: traffic goes to `primary` while it is usable, to the
    /// first healthy of `backups` when it turns unhealthy, and back to `primary` when it
    /// is healthy again. Redefining a group replaces it.
    ///
    /// ```no_run
    /// # fn demo(pool: tower_mcp_session_client::ServerPool) -> Result<(), tower_mcp_session_client::PoolError> {
    /// pool.add_failover_group("search", "eu-1", ["eu-2", "us-1"])?;
    /// assert_eq!(pool.active_server("search").as_deref(), Some("eu-1"));
    /// # Ok(()) }
    /// ```
    pub fn add_failover_group<I, M>(&self, group: impl Into<String>, primary: &str, backups: I) -> Result<(), PoolError>
    where
        I: IntoIterator<Item = M>,
        M: AsRef<str>,
    {
        let servers = self.inner.servers.read().expect("pool lock");
        let mut members = Vec::new();
        for id in std::iter::once(primary.to_owned()).chain(backups.into_iter().map(|m| m.as_ref().to_owned())) {
            let Some((key, _)) = servers.get_key_value(id.as_str()) else {
                return Err(PoolError::InvalidGroup(format!("{id:?} is not in the pool")));
            };
            if members.iter().any(|m: &Arc<str>| **m == *id) {
                return Err(PoolError::InvalidGroup(format!("{id:?} is listed twice")));
            }
            members.push(key.clone());
        }
        drop(servers);
        let active = members[0].clone();
        self.inner
            .groups
            .lock()
            .expect("group lock")
            .insert(group.into(), Group { members, active });
        self.evaluate_groups();
        Ok(())
    }

    /// Forget a failover group.
    pub fn remove_failover_group(&self, group: &str) -> Result<(), PoolError> {
        self.inner
            .groups
            .lock()
            .expect("group lock")
            .remove(group)
            .map(|_| ())
            .ok_or_else(|| PoolError::UnknownGroup(group.to_owned()))
    }

    /// The server a failover group sends traffic to now.
    pub fn active_server(&self, group: &str) -> Option<String> {
        self.inner
            .groups
            .lock()
            .expect("group lock")
            .get(group)
            .map(|g| g.active.to_string())
    }

    /// Send a request to a failover group's active server.
    ///
    /// ```no_run
    /// # async fn demo(pool: tower_mcp_session_client::ServerPool) -> Result<(), tower_mcp_session_client::PoolError> {
    /// let answer = pool.request_group("search", "tools/list", serde_json::json!({})).await?;
    /// # let _ = answer; Ok(()) }
    /// ```
    pub async fn request_group(&self, group: &str, method: &str, params: Value) -> Result<Value, PoolError> {
        let active = self
            .active_server(group)
            .ok_or_else(|| PoolError::UnknownGroup(group.to_owned()))?;
        self.request(&active, method, params).await
    }

    /// Start the periodic health checks (a no-op when they run already). They stop with
    /// [`stop_health_monitoring`](Self::stop_health_monitoring) or when the pool is dropped.
    pub fn start_health_monitoring(&self) {
        let mut monitor = self.inner.monitor.lock().expect("monitor lock");
        if monitor.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let every = self.inner.config.health.interval;
        *monitor = Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let pool = ServerPool { inner };
                pool.check_health_now().await;
            }
        }));
    }

    /// Stop the periodic health checks.
    pub fn stop_health_monitoring(&self) {
        if let Some(task) = self.inner.monitor.lock().expect("monitor lock").take() {
            task.abort();
        }
    }

    /// Whether the periodic health checks run.
    pub fn is_monitoring(&self) -> bool {
        self.inner
            .monitor
            .lock()
            .expect("monitor lock")
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Check every server once, now (all in parallel), and wait for the results.
    pub async fn check_health_now(&self) {
        let mut checks = JoinSet::new();
        for server in self.servers() {
            if server.reconnecting.load(Ordering::Acquire) {
                continue;
            }
            let pool = self.clone();
            checks.spawn(async move { pool.check(&server).await });
        }
        while checks.join_next().await.is_some() {}
    }

    async fn check(&self, server: &Arc<Server>) {
        let conn = server.conn();
        let start = Instant::now();
        let outcome = tokio::time::timeout(self.inner.config.health.timeout, async {
            if !conn.is_initialized() {
                conn.initialize().await?;
            }
            conn.request("ping", json!({})).await
        })
        .await;
        match outcome {
            // A JSON-RPC error is an answer: the server is up.
            Ok(Ok(_)) | Ok(Err(Error::Rpc { .. })) => self.record_success(server, Some(start.elapsed())),
            Ok(Err(_)) | Err(_) => self.record_failure(server),
        }
    }

    fn record_success(&self, server: &Arc<Server>, rtt: Option<Duration>) {
        let next = {
            let mut h = server.health.lock().expect("health lock");
            h.failures = 0;
            h.successes = h.successes.saturating_add(1);
            if rtt.is_some() {
                h.last_rtt = rtt;
            }
            match h.state {
                HealthState::Healthy => None,
                HealthState::Degraded | HealthState::Connecting => Some(HealthState::Healthy),
                HealthState::Unhealthy | HealthState::Disconnected => {
                    Some(if h.successes >= self.inner.config.health.healthy_after {
                        HealthState::Healthy
                    } else {
                        HealthState::Degraded
                    })
                }
            }
        };
        if rtt.is_some() {
            server.breaker.success();
        }
        if let Some(next) = next {
            self.set_state(server, next);
        }
    }

    fn record_failure(&self, server: &Arc<Server>) {
        if server.reconnecting.load(Ordering::Acquire) {
            return;
        }
        let next = {
            let mut h = server.health.lock().expect("health lock");
            h.successes = 0;
            h.failures = h.failures.saturating_add(1);
            if h.failures >= self.inner.config.health.unhealthy_after || h.state == HealthState::Unhealthy {
                HealthState::Unhealthy
            } else {
                HealthState::Degraded
            }
        };
        self.set_state(server, next);
        if next == HealthState::Unhealthy && server.factory.is_some() {
            self.start_reconnect(server);
        }
    }

    fn set_state(&self, server: &Arc<Server>, to: HealthState) {
        let from = {
            let mut h = server.health.lock().expect("health lock");
            std::mem::replace(&mut h.state, to)
        };
        if from == to {
            return;
        }
        #[cfg(feature = "tracing")]
        tracing::debug!(server = %server.id, ?from, ?to, "mcp server health changed");
        let _ = self.inner.events.send(PoolEvent::StateChanged {
            server: server.id.to_string(),
            from,
            to,
        });
        self.evaluate_groups();
    }

    /// Point every failover group at the server it should use now.
    fn evaluate_groups(&self) {
        let states: BTreeMap<Arc<str>, HealthState> = self
            .inner
            .servers
            .read()
            .expect("pool lock")
            .iter()
            .map(|(id, s)| (id.clone(), s.state()))
            .collect();
        let state = |id: &Arc<str>| states.get(id).copied().unwrap_or(HealthState::Disconnected);
        let mut switched = Vec::new();
        {
            let mut groups = self.inner.groups.lock().expect("group lock");
            for (name, group) in groups.iter_mut() {
                let primary = &group.members[0];
                let active = &group.active;
                let next =
                    if state(primary) == HealthState::Healthy || (active == primary && state(primary).is_usable()) {
                        primary.clone()
                    } else if state(active).is_usable() {
                        active.clone()
                    } else {
                        group
                            .members
                            .iter()
                            .find(|m| state(m) == HealthState::Healthy)
                            .or_else(|| group.members.iter().find(|m| state(m).is_usable()))
                            .unwrap_or(active)
                            .clone()
                    };
                if next != group.active {
                    let from = std::mem::replace(&mut group.active, next.clone());
                    switched.push(FailoverEvent {
                        group: name.clone(),
                        from: from.to_string(),
                        to: next.to_string(),
                    });
                }
            }
        }
        for event in switched {
            #[cfg(feature = "tracing")]
            tracing::info!(group = %event.group, from = %event.from, to = %event.to, "mcp failover");
            let _ = self.inner.events.send(PoolEvent::FailedOver(event));
        }
    }

    fn start_reconnect(&self, server: &Arc<Server>) {
        let Some(factory) = server.factory.clone() else { return };
        if server.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let target = server.clone();
        let task = tokio::spawn(async move {
            let mut attempt = 0u32;
            loop {
                attempt = attempt.saturating_add(1);
                let Some(inner) = weak.upgrade() else { return };
                let pool = ServerPool { inner };
                pool.set_state(&target, HealthState::Connecting);
                let timeout = pool.inner.config.connect_timeout;
                let made = tokio::time::timeout(timeout, async {
                    let conn = factory.connect().await?;
                    if !conn.is_initialized() {
                        conn.initialize().await?;
                    }
                    conn.request("ping", json!({})).await?;
                    Ok::<_, Error>(conn)
                })
                .await;
                match made {
                    Ok(Ok(conn)) => {
                        let old = std::mem::replace(&mut *target.conn.write().expect("server lock"), conn);
                        // The old session is most likely gone with its server; end its
                        // streams and try a DELETE, without waiting.
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(Duration::from_secs(1), old.close()).await;
                        });
                        target.reconnects.fetch_add(1, Ordering::Relaxed);
                        {
                            let mut h = target.health.lock().expect("health lock");
                            h.failures = 0;
                            h.successes = 0;
                        }
                        target.breaker.success();
                        target.reconnecting.store(false, Ordering::Release);
                        pool.set_state(&target, HealthState::Healthy);
                        let _ = pool.inner.events.send(PoolEvent::Reconnected {
                            server: target.id.to_string(),
                            attempts: attempt,
                        });
                        return;
                    }
                    _ => {
                        pool.set_state(&target, HealthState::Disconnected);
                        let wait = pool.inner.config.reconnect.delay(attempt);
                        drop(pool);
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        });
        *server.reconnect_task.lock().expect("task lock") = Some(task);
    }
}

/// A handle on one server of a [`ServerPool`], from
/// [`get_healthy_connection`](ServerPool::get_healthy_connection).
#[derive(Clone)]
pub struct PooledServer {
    pool: ServerPool,
    server: Arc<Server>,
}

impl PooledServer {
    /// The server's id in the pool.
    pub fn id(&self) -> &str {
        &self.server.id
    }

    /// Its session now.
    pub fn info(&self) -> SessionInfo {
        self.server.info()
    }

    /// The connection itself (bypassing retry, breaker and accounting).
    pub fn connection(&self) -> Arc<dyn McpConnection> {
        self.server.conn()
    }

    /// Send a request through the server's retry policy and circuit breaker.
    ///
    /// ```no_run
    /// # async fn demo(server: tower_mcp_session_client::PooledServer) -> Result<(), tower_mcp_session_client::PoolError> {
    /// let answer = server.request("ping", serde_json::json!({})).await?;
    /// # let _ = answer; Ok(()) }
    /// ```
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, PoolError> {
        self.pool.send(self.server.clone(), RpcCall::new(method, params)).await
    }
}

impl fmt::Debug for PooledServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledServer")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

/// The innermost service of a server's stack: one attempt on the current connection,
/// counted and timed, feeding the server's health.
#[derive(Clone)]
struct Rpc {
    pool: Weak<Inner>,
    server: Arc<Server>,
    timeout: Option<Duration>,
}

impl Service<RpcCall> for Rpc {
    type Response = Value;
    type Error = PoolError;
    type Future = BoxFuture<'static, Result<Value, PoolError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), PoolError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: RpcCall) -> Self::Future {
        let server = self.server.clone();
        let pool = self.pool.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let conn = server.conn();
            server.requests.fetch_add(1, Ordering::Relaxed);
            server.in_flight.fetch_add(1, Ordering::AcqRel);
            let _in_flight = InFlight(&server.in_flight);
            let work = conn.request(&call.method, call.params);
            let result = match timeout {
                Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or(Err(Error::Timeout)),
                None => work.await,
            };
            let pool = pool.upgrade().map(|inner| ServerPool { inner });
            match &result {
                Ok(_) | Err(Error::Rpc { .. }) => {
                    if let Some(pool) = &pool {
                        pool.record_success(&server, None);
                    }
                }
                Err(e) if e.is_server_failure() => {
                    server.failures.fetch_add(1, Ordering::Relaxed);
                    if let Some(pool) = &pool {
                        pool.record_failure(&server);
                    }
                }
                Err(_) => {}
            }
            result.map_err(PoolError::Client)
        })
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Stands in for a server whose factory has not produced a connection yet.
struct Unconnected;

impl McpConnection for Unconnected {
    fn request(&self, _: &str, _: Value) -> BoxFuture<'static, Result<Value, Error>> {
        Box::pin(async { Err(Error::NotInitialized) })
    }
    fn initialize(&self) -> BoxFuture<'static, Result<Value, Error>> {
        Box::pin(async { Err(Error::NotInitialized) })
    }
    fn close(&self) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
    fn is_initialized(&self) -> bool {
        false
    }
    fn session_id(&self) -> Option<String> {
        None
    }
    fn protocol_version(&self) -> Option<String> {
        None
    }
}
