//! Failover groups: a primary, backups in order, and the server traffic goes to now.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use serde_json::Value;

use super::{FailoverEvent, Group, HealthState, PoolError, PoolEvent, ServerPool};

impl ServerPool {
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
        let servers = self.inner.servers.read().unwrap_or_else(PoisonError::into_inner);
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
            .unwrap_or_else(PoisonError::into_inner)
            .insert(group.into(), Group { members, active });
        self.evaluate_groups();
        Ok(())
    }

    /// Forget a failover group.
    pub fn remove_failover_group(&self, group: &str) -> Result<(), PoolError> {
        self.inner
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(group)
            .map(|_| ())
            .ok_or_else(|| PoolError::UnknownGroup(group.to_owned()))
    }

    /// The server a failover group sends traffic to now.
    pub fn active_server(&self, group: &str) -> Option<String> {
        self.inner
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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

    /// Point every failover group at the server it should use now.
    pub(super) fn evaluate_groups(&self) {
        let states: BTreeMap<Arc<str>, HealthState> = self
            .inner
            .servers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, s)| (id.clone(), s.state()))
            .collect();
        let state = |id: &Arc<str>| states.get(id).copied().unwrap_or(HealthState::Disconnected);
        let mut switched = Vec::new();
        {
            let mut groups = self.inner.groups.lock().unwrap_or_else(PoisonError::into_inner);
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
}
