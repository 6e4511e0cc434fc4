//! Producer leases of [`RedisEventLog`](crate::RedisEventLog): `lex` (when the lease
//! runs out, in milliseconds on the Redis server's clock, so instances' clocks do not
//! matter) and `lnt` (its note) in the stream's hash, set by `open`, renewed by the
//! lease script, cleared by every finish; an abandoned stream is ended by the append
//! script in its checking mode.

use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use tower_mcp_session::event_log::{EventLogError, ProducerState, StreamKey};

use crate::connection::millis;
use crate::event_log::{Inner, bad};
use crate::event_log_scripts::LEASE_SCRIPT;

impl Inner {
    pub(crate) async fn renew_lease(&self, key: &StreamKey, duration: Duration) -> Result<bool, EventLogError> {
        let reply = self.lease(key, "renew", duration).await?;
        Ok(matches!(reply.first(), Some(Value::Int(1))))
    }

    pub(crate) async fn producer(&self, key: &StreamKey) -> Result<ProducerState, EventLogError> {
        let mut reply = self.lease(key, "state", Duration::ZERO).await?.into_iter();
        match reply.next() {
            Some(Value::Int(0)) => Ok(ProducerState::Unleased),
            Some(Value::Int(1)) => Ok(ProducerState::Live),
            Some(Value::Int(2)) => match reply.next() {
                Some(Value::BulkString(note)) => Ok(ProducerState::Lapsed {
                    note: Bytes::from(note),
                }),
                _ => Err(bad("lease note")),
            },
            _ => Err(bad("lease")),
        }
    }

    pub(crate) async fn end_abandoned(&self, key: &StreamKey, event: Bytes) -> Result<Option<u64>, EventLogError> {
        match self.append(key, event, "2").await {
            Ok(seq) => Ok(Some(seq)),
            // Finished already, or its lease is live or absent: nothing to end.
            Err(EventLogError::Finished) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn lease(&self, key: &StreamKey, op: &str, duration: Duration) -> Result<Vec<Value>, EventLogError> {
        let k = self.keys(key);
        let mut inv = LEASE_SCRIPT.prepare_invoke();
        inv.key(&k.meta).arg(op).arg(millis(duration).max(1));
        self.run(&inv).await
    }
}
