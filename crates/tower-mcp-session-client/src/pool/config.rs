//! The pool's settings, the states and events it reports, and its error.

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;

use super::policy::{CircuitBreakerConfig, CircuitState, RetryPolicy};
use super::{Config, Inner, ServerPool};
use crate::backoff::Backoff;
use crate::error::Error;
use tower_mcp_session::{ProtocolVersion, SessionId};

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
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) unhealthy_after: u32,
    pub(super) healthy_after: u32,
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
    pub session_id: Option<SessionId>,
    /// The negotiated protocol version.
    pub protocol_version: Option<ProtocolVersion>,
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
