//! TEMP STUB (replaced by merge)
use super::*;
/// stub
#[derive(Clone, Default)]
pub struct MemoryEventLog;
/// stub
pub struct MemoryEventLogBuilder;
impl MemoryEventLog {
    /// stub
    pub fn new() -> Self {
        Self
    }
}
impl EventLog for MemoryEventLog {
    fn open<'a>(&'a self, _key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>> {
        todo!()
    }
    fn append<'a>(&'a self, _key: &'a StreamKey, _data: Bytes) -> BoxFuture<'a, Result<u64, EventLogError>> {
        todo!()
    }
    fn finish<'a>(&'a self, _key: &'a StreamKey) -> BoxFuture<'a, Result<(), EventLogError>> {
        todo!()
    }
    fn read_after<'a>(
        &'a self,
        _key: &'a StreamKey,
        _after: u64,
        _max: usize,
    ) -> BoxFuture<'a, Result<ReadOutcome, EventLogError>> {
        todo!()
    }
    fn wait_after<'a>(&'a self, _key: &'a StreamKey, _after: u64) -> BoxFuture<'a, ()> {
        todo!()
    }
    fn remove_session<'a>(&'a self, _session: &'a SessionId) -> BoxFuture<'a, Result<(), EventLogError>> {
        todo!()
    }
}
