//! Feature `metrics`: `mcp.server.store.duration`, timed around every call the layer
//! makes to its `SessionStore`, by wrapping the store it is given. The wrapper costs
//! one more boxed future per store call, and only with the feature on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::facade::store_call;
use crate::session::{SessionId, SessionRecord};
use crate::store::{
    Attributes, BoxFuture, ExpiredBatch, Expiry, Replaced, SessionPage, SessionStore, Slot, StoreError,
};

/// A store whose every call is timed.
pub(crate) struct Timed(Arc<dyn SessionStore>);

impl Timed {
    pub(crate) fn wrap(store: Arc<dyn SessionStore>) -> Arc<dyn SessionStore> {
        Arc::new(Self(store))
    }
}

fn timed<'a, T: Send + 'a>(
    operation: &'static str,
    call: BoxFuture<'a, Result<T, StoreError>>,
) -> BoxFuture<'a, Result<T, StoreError>> {
    Box::pin(async move {
        let started = Instant::now();
        let result = call.await;
        store_call(operation, started.elapsed().as_secs_f64());
        result
    })
}

impl SessionStore for Timed {
    fn reserve(&self, cap: usize, hold: Duration) -> BoxFuture<'_, Result<Slot, StoreError>> {
        timed("reserve", self.0.reserve(cap, hold))
    }

    fn cancel(&self, slot: Slot) -> BoxFuture<'_, Result<(), StoreError>> {
        timed("cancel", self.0.cancel(slot))
    }

    fn create<'a>(
        &'a self,
        record: &'a SessionRecord,
        attributes: &'a Map<String, Value>,
        expiry: Expiry,
        slot: Option<Slot>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        timed("create", self.0.create(record, attributes, expiry, slot))
    }

    fn load<'a>(
        &'a self,
        id: &'a SessionId,
        refresh: Option<Duration>,
    ) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>> {
        timed("load", self.0.load(id, refresh))
    }

    fn touch<'a>(&'a self, id: &'a SessionId, idle: Duration) -> BoxFuture<'a, Result<bool, StoreError>> {
        timed("touch", self.0.touch(id, idle))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>> {
        timed("delete", self.0.delete(id))
    }

    fn attributes<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Attributes>, StoreError>> {
        timed("attributes", self.0.attributes(id))
    }

    fn replace_attributes<'a>(
        &'a self,
        id: &'a SessionId,
        expected: u64,
        map: &'a Map<String, Value>,
    ) -> BoxFuture<'a, Result<Replaced, StoreError>> {
        timed("replace_attributes", self.0.replace_attributes(id, expected, map))
    }

    fn take_expired(&self, max: usize) -> BoxFuture<'_, Result<ExpiredBatch, StoreError>> {
        timed("take_expired", self.0.take_expired(max))
    }

    fn idle_sessions(&self, idle_for: Duration, max: usize) -> BoxFuture<'_, Result<Vec<SessionId>, StoreError>> {
        timed("idle_sessions", self.0.idle_sessions(idle_for, max))
    }

    fn list<'a>(&'a self, cursor: Option<&'a str>, max: usize) -> BoxFuture<'a, Result<SessionPage, StoreError>> {
        timed("list", self.0.list(cursor, max))
    }

    fn idle_for<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Duration>, StoreError>> {
        timed("idle_for", self.0.idle_for(id))
    }
}
