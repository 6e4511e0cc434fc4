//! The `server/discover` answers of the inner service, kept for a while: every legacy
//! `initialize` needs one, and asking the inner service each time would double the
//! cost of creating a session. A discovery may depend on the client's declared
//! capabilities and identity (both go in its `_meta`), so answers are kept per those;
//! few entries, each for a short time, so a changed server is seen soon.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::context::LegacyContext;

/// How many different discoveries are kept.
const ENTRIES: usize = 16;
/// How long one is kept.
const TTL: Duration = Duration::from_secs(60);

/// Recent `server/discover` results, keyed by what the client told about itself.
#[derive(Debug, Default)]
pub(crate) struct DiscoverCache {
    entries: Mutex<VecDeque<(u64, Instant, Arc<Value>)>>,
}

impl DiscoverCache {
    /// The key of the discovery made for the client of `ctx`.
    pub(crate) fn key(ctx: &LegacyContext<'_>) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        ctx.modern_capabilities().to_string().hash(&mut hasher);
        ctx.client_info.map(|info| info.get()).hash(&mut hasher);
        hasher.finish()
    }

    /// A discovery made for `key` less than a minute ago.
    pub(crate) fn get(&self, key: u64) -> Option<Arc<Value>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(_, at, _)| at.elapsed() < TTL);
        entries.iter().find(|(k, ..)| *k == key).map(|(.., v)| Arc::clone(v))
    }

    /// Keep `result` for `key`, dropping the oldest entry when full.
    pub(crate) fn put(&self, key: u64, result: Arc<Value>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, ..)| *k != key);
        if entries.len() >= ENTRIES {
            entries.pop_front();
        }
        entries.push_back((key, Instant::now(), result));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_kept_per_key_and_bounded() {
        let cache = DiscoverCache::default();
        for k in 0..(ENTRIES as u64 + 4) {
            cache.put(k, Arc::new(Value::from(k)));
        }
        assert!(cache.get(0).is_none(), "the oldest went");
        assert_eq!(
            cache.get(ENTRIES as u64 + 3).as_deref(),
            Some(&Value::from(ENTRIES as u64 + 3))
        );
        cache.put(5, Arc::new(Value::from("new")));
        assert_eq!(cache.get(5).as_deref(), Some(&Value::from("new")));
        assert!(cache.entries.lock().unwrap().len() <= ENTRIES);
    }
}
