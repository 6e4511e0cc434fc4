//! Where a request goes: the least-loaded healthy server, a named one, and the
//! per-server stack (retry, breaker, the attempt itself) it passes.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::Value;
use tower::ServiceExt;
use tower::retry::Retry;
use tower_service::Service;

use super::policy::{CircuitBreaker, RpcCall};
use super::{HealthState, Inner, McpConnection, PoolError, Server, ServerPool, SessionInfo};
use crate::BoxFuture;
use crate::error::Error;

impl ServerPool {
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

    pub(super) async fn send(&self, server: Arc<Server>, call: RpcCall) -> Result<Value, PoolError> {
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
