//! Health checks, the state machine they drive, and reconnection through a factory.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{HealthState, PoolEvent, Server, ServerPool};
use crate::error::Error;

impl ServerPool {
    /// Start the periodic health checks (a no-op when they run already). They stop with
    /// [`stop_health_monitoring`](Self::stop_health_monitoring) or when the pool is dropped.
    pub fn start_health_monitoring(&self) {
        let mut monitor = self.inner.monitor.lock().unwrap_or_else(PoisonError::into_inner);
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
        if let Some(task) = self.inner.monitor.lock().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }

    /// Whether the periodic health checks run.
    pub fn is_monitoring(&self) -> bool {
        self.inner
            .monitor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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

    pub(super) fn record_success(&self, server: &Arc<Server>, rtt: Option<Duration>) {
        let next = {
            let mut h = server.health.lock().unwrap_or_else(PoisonError::into_inner);
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

    pub(super) fn record_failure(&self, server: &Arc<Server>) {
        if server.reconnecting.load(Ordering::Acquire) {
            return;
        }
        let next = {
            let mut h = server.health.lock().unwrap_or_else(PoisonError::into_inner);
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

    pub(super) fn set_state(&self, server: &Arc<Server>, to: HealthState) {
        let from = {
            let mut h = server.health.lock().unwrap_or_else(PoisonError::into_inner);
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

    pub(super) fn start_reconnect(&self, server: &Arc<Server>) {
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
                        let old =
                            std::mem::replace(&mut *target.conn.write().unwrap_or_else(PoisonError::into_inner), conn);
                        // The old session is most likely gone with its server; end its
                        // streams and try a DELETE, without waiting.
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(Duration::from_secs(1), old.close()).await;
                        });
                        target.reconnects.fetch_add(1, Ordering::Relaxed);
                        {
                            let mut h = target.health.lock().unwrap_or_else(PoisonError::into_inner);
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
        *server.reconnect_task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
    }
}
