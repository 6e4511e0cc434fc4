//! What translation mode keeps running on this instance: the translated requests in
//! flight, so that a legacy `notifications/cancelled` can end one, and the sessions'
//! listeners (`layer/listen.rs`), so that a `resources/subscribe` here reaches its
//! session's listener at once. A 2025-era client cancels with a
//! notification naming its request id; a 2026-07-28 handler learns of a cancellation
//! only by its response stream being dropped. The layer holds the inner call (or the
//! task relaying its stream and MRTR rounds), so it is the one to drop it.
//!
//! Entries live exactly as long as their request: a [`Registration`] removes its entry
//! when dropped, so the map never holds more than the requests running here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::SessionId;
use crate::event_log::{StreamKey, derived_stream};

/// A request id in one spelling, matching as `jsonrpc`'s id comparison does: strings
/// decoded (`"a"` and `"\u0061"` are one id), integers exactly whatever their size,
/// and a number that is not written as an integer by its value (`7.0` is `7`).
fn canonical(id: &str) -> Option<String> {
    /// Integers up to this size are exact as floats, so both spellings meet there.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let number = |x: f64| (x.is_finite()).then(|| format!("n{x}"));
    match serde_json::from_str::<Value>(id).ok()? {
        Value::String(s) => Some(format!("s{s}")),
        Value::Number(n) if !id.contains(['.', 'e', 'E']) => {
            // An integer: exact text (no leading zeros in JSON; `-0` is `0`), unless a
            // float spelling can name it too.
            let text = id.trim().trim_start_matches('-');
            match n.as_f64() {
                Some(x) if x.abs() <= EXACT => number(x),
                _ if text == "0" => number(0.0),
                _ => Some(format!("i{}", id.trim())),
            }
        }
        Value::Number(n) => number(n.as_f64()?),
        _ => None,
    }
}

type Key = (SessionId, String);

/// The marker stream of the request `canonical` (a [`canonical`] id) of `session`.
fn marker_of(session: &SessionId, canonical: &str) -> StreamKey {
    StreamKey::new(session.clone(), derived_stream(b"cancelled\0", canonical))
}

/// The translated requests running on this instance, by session and client id.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    entries: Mutex<HashMap<Key, Arc<Notify>>>,
    watchers: Mutex<HashMap<SessionId, Vec<Arc<Watched>>>>,
}

/// One listener's side of a watch: woken on a change, and telling which change it has
/// applied (its listen reopened with it), so the request that made the change can wait
/// for that before it is answered.
#[derive(Debug)]
struct Watched {
    notify: Notify,
    requested: AtomicU64,
    applied: watch::Sender<u64>,
}

/// What a change made here waits for: each listener of the session to apply it.
#[derive(Debug)]
pub(crate) struct Applied {
    waits: Vec<(watch::Receiver<u64>, u64)>,
}

impl Applied {
    /// Completes when every listener applied the change, or after `at_most`.
    pub(crate) async fn wait(self, at_most: std::time::Duration) {
        let all = async {
            for (mut rx, wanted) in self.waits {
                // A listener that went away meanwhile applies nothing more: fine.
                let _ = rx.wait_for(|applied| *applied >= wanted).await;
            }
        };
        let _ = tokio::time::timeout(at_most, all).await;
    }
}

/// A listener's interest in its session's subscriptions; dropping it ends the interest.
#[derive(Debug)]
pub(crate) struct SubscriptionWatch {
    owner: Arc<InFlight>,
    session: SessionId,
    watched: Arc<Watched>,
}

impl SubscriptionWatch {
    /// Completes after the session's subscriptions changed on this instance.
    pub(crate) async fn changed(&self) {
        self.watched.notify.notified().await;
    }

    /// The newest change asked for: read it before reading the subscriptions, and pass
    /// it to [`applied`](Self::applied) once they are in effect.
    pub(crate) fn requested(&self) -> u64 {
        self.watched.requested.load(Ordering::SeqCst)
    }

    /// The changes up to `change` are in effect.
    pub(crate) fn applied(&self, change: u64) {
        self.watched.applied.send_if_modified(|applied| {
            let newer = change > *applied;
            if newer {
                *applied = change;
            }
            newer
        });
    }
}

impl Drop for SubscriptionWatch {
    fn drop(&mut self) {
        let mut watchers = self.owner.watchers();
        if let Some(list) = watchers.get_mut(&self.session) {
            list.retain(|w| !Arc::ptr_eq(w, &self.watched));
            if list.is_empty() {
                watchers.remove(&self.session);
            }
        }
    }
}

/// One request's entry: [`Registration::cancelled`] completes when the client cancels
/// the request; dropping the registration forgets it.
#[derive(Debug)]
pub(crate) struct Registration {
    owner: Arc<InFlight>,
    key: Option<Key>,
    notify: Arc<Notify>,
}

impl InFlight {
    /// Note the request `id` (raw JSON) of `session` as running here. An id that is not
    /// a string or number cannot be cancelled; its registration never completes.
    pub(crate) fn register(self: &Arc<Self>, session: &SessionId, id: &str) -> Registration {
        let notify = Arc::new(Notify::new());
        let key = canonical(id).map(|id| (session.clone(), id));
        if let Some(key) = &key {
            // A client that reuses the id of a running request breaks JSON-RPC's rule;
            // the newer request is the one a cancellation then names.
            self.lock().insert(key.clone(), Arc::clone(&notify));
        }
        Registration {
            owner: Arc::clone(self),
            key,
            notify,
        }
    }

    /// Where a cancellation of the request `id` (raw JSON) of `session` is left for
    /// the instance running it, when that is not this one: a stream of the session
    /// every instance derives alike from the id (see `layer/running.rs`). `None` for
    /// an id that cannot be cancelled.
    pub(crate) fn marker(session: &SessionId, id: &str) -> Option<StreamKey> {
        Some(marker_of(session, &canonical(id)?))
    }

    /// Cancel the request `id` (raw JSON) of `session`, if it runs here: whether it did.
    pub(crate) fn cancel(&self, session: &SessionId, id: &str) -> bool {
        let Some(id) = canonical(id) else {
            return false;
        };
        match self.lock().remove(&(session.clone(), id)) {
            Some(notify) => {
                // A stored permit: a request between two waits still sees it.
                notify.notify_one();
                true
            }
            None => false,
        }
    }

    /// Watch `session`'s subscriptions for changes made on this instance.
    pub(crate) fn watch_subscriptions(self: &Arc<Self>, session: &SessionId) -> SubscriptionWatch {
        let watched = Arc::new(Watched {
            notify: Notify::new(),
            requested: AtomicU64::new(0),
            applied: watch::Sender::new(0),
        });
        self.watchers()
            .entry(session.clone())
            .or_default()
            .push(Arc::clone(&watched));
        SubscriptionWatch {
            owner: Arc::clone(self),
            session: session.clone(),
            watched,
        }
    }

    /// `session`'s subscriptions changed here: wake its watchers; what to wait for
    /// until they have applied the change.
    pub(crate) fn subscriptions_changed(&self, session: &SessionId) -> Applied {
        let mut waits = Vec::new();
        if let Some(list) = self.watchers().get(session) {
            for watched in list {
                let wanted = watched.requested.fetch_add(1, Ordering::SeqCst) + 1;
                waits.push((watched.applied.subscribe(), wanted));
                watched.notify.notify_one();
            }
        }
        Applied { waits }
    }

    fn watchers(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Vec<Arc<Watched>>>> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Notify>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Registration {
    /// Completes when the client cancels the request.
    pub(crate) async fn cancelled(&self) {
        self.notify.notified().await;
    }

    /// Where another instance leaves a cancellation of this request (see
    /// [`InFlight::marker`]); `None` for an id that cannot be cancelled.
    pub(crate) fn marker(&self) -> Option<StreamKey> {
        self.key.as_ref().map(|(session, id)| marker_of(session, id))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut entries = self.owner.lock();
            // Only our own entry: a newer request with the same id may have replaced it.
            if entries.get(&key).is_some_and(|n| Arc::ptr_eq(n, &self.notify)) {
                entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn session(name: &str) -> SessionId {
        SessionId::parse(name).unwrap()
    }

    #[tokio::test]
    async fn a_cancellation_reaches_the_request_it_names_only() {
        let in_flight = Arc::new(InFlight::default());
        let seven = in_flight.register(&session("a"), "7");
        let other = in_flight.register(&session("b"), "7");
        assert!(!in_flight.cancel(&session("a"), "8"), "no such request");
        assert!(in_flight.cancel(&session("a"), "7.0"), "equal ids are one request");
        tokio::time::timeout(Duration::from_secs(5), seven.cancelled())
            .await
            .expect("the request sees its cancellation");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), other.cancelled())
                .await
                .is_err(),
            "another session's request with the same id runs on"
        );
        assert!(!in_flight.cancel(&session("a"), "7"), "a cancellation counts once");
        // Integers too wide for a float stay apart, as the layer's id comparison has it.
        let wide = in_flight.register(&session("a"), "123456789012345678901234567");
        assert!(!in_flight.cancel(&session("a"), "123456789012345678901234568"));
        assert!(in_flight.cancel(&session("a"), "123456789012345678901234567"));
        drop(wide);
    }

    #[tokio::test]
    async fn entries_end_with_their_requests() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.register(&session("a"), r#""x""#);
        let reused = in_flight.register(&session("a"), r#""\u0078""#);
        drop(first);
        assert_eq!(in_flight.len(), 1, "the newer request keeps its entry");
        assert!(in_flight.cancel(&session("a"), r#""x""#));
        drop(reused);
        let _odd = in_flight.register(&session("a"), "null");
        assert_eq!(in_flight.len(), 0, "nothing is left, and an unusable id is not kept");
    }

    #[tokio::test]
    async fn a_subscription_change_wakes_the_session_watchers_only() {
        let in_flight = Arc::new(InFlight::default());
        let watch = in_flight.watch_subscriptions(&session("a"));
        let other = in_flight.watch_subscriptions(&session("b"));
        let applied = in_flight.subscriptions_changed(&session("a"));
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("woken");
        let change = watch.requested();
        let waiting = tokio::spawn(applied.wait(Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the change waits until it is applied");
        watch.applied(change);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("applied")
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), other.changed())
                .await
                .is_err()
        );
        drop(watch);
        drop(other);
        assert!(in_flight.watchers().is_empty(), "watches end with their listeners");
    }
}
