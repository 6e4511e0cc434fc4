//! The per-server request stack of a [`ServerPool`](super::ServerPool): a tower
//! [`Retry`](tower::retry::Retry) with [`RetryPolicy`] around a circuit breaker around
//! the connection.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tower::retry::Policy;
use tower_service::Service;

use super::PoolError;
use crate::BoxFuture;
use crate::backoff::Backoff;

/// One JSON-RPC request as the pool's per-server stack carries it.
///
/// ```
/// use tower_mcp_session_client::RpcCall;
///
/// let call = RpcCall::new("tools/list", serde_json::json!({}));
/// assert_eq!(call.method, "tools/list");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RpcCall {
    /// The JSON-RPC method.
    pub method: String,
    /// Its params.
    pub params: Value,
}

impl RpcCall {
    /// A call of `method` with `params`.
    pub fn new(method: impl Into<String>, params: Value) -> Self {
        Self {
            method: method.into(),
            params,
        }
    }
}

/// Methods retried by default: those that change nothing on the server.
const IDEMPOTENT: &[&str] = &[
    "ping",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
];

/// When a pool retries a failed request: a tower [`Policy`] over [`RpcCall`].
///
/// Only failures that say the server is in trouble (transport errors, timeouts, 5xx,
/// broken streams) are retried, never a JSON-RPC error, and by default only methods
/// that change nothing (`ping`, `*/list`, `resources/read`, `prompts/get`, …): a
/// `tools/call` that timed out may have run, so retrying it is the caller's decision
/// ([`retry_methods`](Self::retry_methods)).
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session_client::{Backoff, RetryPolicy};
///
/// let policy = RetryPolicy::new(3)
///     .backoff(Backoff::new(Duration::from_millis(20), Duration::from_millis(500)))
///     .retry_methods(["tools/call"]);
/// # let _ = policy;
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    max_retries: u32,
    backoff: Backoff,
    methods: Option<Arc<HashSet<String>>>,
    attempt: u32,
}

impl RetryPolicy {
    /// Up to `max_retries` retries of idempotent methods, 50 ms doubling to 1 s, jittered.
    pub fn new(max_retries: u32) -> Self {
        Self {
            max_retries,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(1)),
            methods: Some(Arc::new(IDEMPOTENT.iter().map(|m| (*m).to_owned()).collect())),
            attempt: 0,
        }
    }

    /// Never retry.
    ///
    /// ```
    /// let never = tower_mcp_session_client::RetryPolicy::never();
    /// # let _ = never;
    /// ```
    pub fn never() -> Self {
        Self::new(0)
    }

    /// The wait between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Retry these methods too.
    pub fn retry_methods<I, M>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        let mut set = self.methods.as_deref().cloned().unwrap_or_default();
        set.extend(methods.into_iter().map(Into::into));
        self.methods = Some(Arc::new(set));
        self
    }

    /// Retry every method.
    pub fn retry_all_methods(mut self) -> Self {
        self.methods = None;
        self
    }

    fn allows(&self, method: &str) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }
}

impl Default for RetryPolicy {
    /// Two retries of idempotent methods.
    fn default() -> Self {
        Self::new(2)
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Policy<RpcCall, Value, PoolError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, req: &mut RpcCall, result: &mut Result<Value, PoolError>) -> Option<Self::Future> {
        match result {
            Err(PoolError::Client(e)) if e.is_server_failure() && self.allows(&req.method) => {
                if self.attempt >= self.max_retries {
                    return None;
                }
                self.attempt += 1;
                Some(tokio::time::sleep(self.backoff.delay(self.attempt)))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &RpcCall) -> Option<RpcCall> {
        Some(req.clone())
    }
}

/// A circuit breaker's settings.
///
/// After `failure_threshold` server failures in a row the circuit opens: requests fail
/// at once with [`PoolError::CircuitOpen`] for `open_for`; then one probe request is
/// let through (half-open), and its outcome closes or reopens the circuit. A successful
/// health check closes it too.
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session_client::CircuitBreakerConfig;
///
/// let breaker = CircuitBreakerConfig::new(5, Duration::from_secs(30));
/// # let _ = breaker;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    failure_threshold: u32,
    open_for: Duration,
}

impl CircuitBreakerConfig {
    /// Open after `failure_threshold` failures in a row, for `open_for`.
    pub fn new(failure_threshold: u32, open_for: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            open_for,
        }
    }
}

impl Default for CircuitBreakerConfig {
    /// Five failures, thirty seconds.
    fn default() -> Self {
        Self::new(5, Duration::from_secs(30))
    }
}

/// Where a server's circuit breaker stands.
///
/// ```
/// use tower_mcp_session_client::CircuitState;
///
/// assert_ne!(CircuitState::Closed, CircuitState::Open);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitState {
    /// Requests flow.
    Closed,
    /// Requests fail at once.
    Open,
    /// One probe request is allowed through.
    HalfOpen,
}

#[derive(Debug)]
struct BreakerState {
    state: CircuitState,
    failures: u32,
    opened_at: Instant,
    probing: bool,
}

/// The shared state of one server's breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: CircuitBreakerConfig,
    state: Mutex<BreakerState>,
}

impl Breaker {
    pub(crate) fn new(config: CircuitBreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(BreakerState {
                state: CircuitState::Closed,
                failures: 0,
                opened_at: Instant::now(),
                probing: false,
            }),
        }
    }

    pub(crate) fn state(&self) -> CircuitState {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.state == CircuitState::Open && s.opened_at.elapsed() >= self.config.open_for {
            CircuitState::HalfOpen
        } else {
            s.state
        }
    }

    fn admit(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match s.state {
            CircuitState::Closed => true,
            CircuitState::Open if s.opened_at.elapsed() >= self.config.open_for => {
                s.state = CircuitState::HalfOpen;
                s.probing = true;
                true
            }
            CircuitState::Open => false,
            CircuitState::HalfOpen if s.probing => false,
            CircuitState::HalfOpen => {
                s.probing = true;
                true
            }
        }
    }

    pub(crate) fn success(&self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.state = CircuitState::Closed;
        s.failures = 0;
        s.probing = false;
    }

    fn failure(&self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.probing = false;
        match s.state {
            CircuitState::Closed => {
                s.failures += 1;
                if s.failures >= self.config.failure_threshold {
                    s.state = CircuitState::Open;
                    s.opened_at = Instant::now();
                }
            }
            CircuitState::HalfOpen | CircuitState::Open => {
                s.state = CircuitState::Open;
                s.opened_at = Instant::now();
            }
        }
    }

    /// The request ended without saying anything about the server (a JSON-RPC error,
    /// a cancelled call): let the next probe through.
    fn neutral(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).probing = false;
    }
}

/// The breaker as a tower service in front of `S`. Admission happens in `call`, never
/// in `poll_ready`.
#[derive(Clone)]
pub(crate) struct CircuitBreaker<S> {
    pub(crate) breaker: Arc<Breaker>,
    pub(crate) server: Arc<str>,
    pub(crate) inner: S,
}

impl<S> Service<RpcCall> for CircuitBreaker<S>
where
    S: Service<RpcCall, Response = Value, Error = PoolError>,
    S::Future: Send + 'static,
{
    type Response = Value;
    type Error = PoolError;
    type Future = BoxFuture<'static, Result<Value, PoolError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PoolError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: RpcCall) -> Self::Future {
        if !self.breaker.admit() {
            let server = self.server.to_string();
            return Box::pin(async move { Err(PoolError::CircuitOpen(server)) });
        }
        let breaker = self.breaker.clone();
        let call = self.inner.call(req);
        Box::pin(async move {
            let mut guard = Outcome { breaker: Some(breaker) };
            let result = call.await;
            let breaker = guard.breaker.take().expect("set above");
            match &result {
                Ok(_) => breaker.success(),
                Err(PoolError::Client(e)) if e.is_server_failure() => breaker.failure(),
                Err(_) => breaker.neutral(),
            }
            result
        })
    }
}

/// Releases a half-open probe when the call is dropped before finishing.
struct Outcome {
    breaker: Option<Arc<Breaker>>,
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if let Some(b) = self.breaker.take() {
            b.neutral();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let b = Breaker::new(CircuitBreakerConfig::new(2, Duration::ZERO));
        assert!(b.admit());
        b.failure();
        assert_eq!(b.state(), CircuitState::Closed);
        b.failure();
        // open_for is zero: it reads half-open at once and lets one probe through.
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert!(b.admit());
        assert!(!b.admit(), "only one probe at a time");
        b.success();
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn breaker_stays_open_during_cooldown() {
        let b = Breaker::new(CircuitBreakerConfig::new(1, Duration::from_secs(60)));
        b.failure();
        assert_eq!(b.state(), CircuitState::Open);
        assert!(!b.admit());
    }

    #[test]
    fn retry_policy_retries_only_server_failures_of_allowed_methods() {
        use crate::Error;
        let mut p = RetryPolicy::new(1).backoff(Backoff::new(Duration::ZERO, Duration::ZERO));
        let mut ping = RpcCall::new("ping", Value::Null);
        let mut call = RpcCall::new("tools/call", Value::Null);
        let transport = || Err(PoolError::Client(Error::Timeout));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(p.clone().retry(&mut call, &mut transport()).is_none());
            let mut rpc = Err(PoolError::Client(Error::Rpc {
                code: -1,
                message: String::new(),
                data: None,
            }));
            assert!(p.clone().retry(&mut ping, &mut rpc).is_none());
            assert!(p.retry(&mut ping, &mut transport()).is_some());
            assert!(p.retry(&mut ping, &mut transport()).is_none(), "one retry only");
        });
    }
}
