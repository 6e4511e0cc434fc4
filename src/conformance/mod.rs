//! A conformance suite for backends: call it from a test of your own to prove that a
//! [`SessionStore`] or an [`EventLog`] keeps every promise written in the trait's
//! documentation.
//!
//! ```no_run
//! use tower_mcp_session::event_log::MemoryEventLog;
//! use tower_mcp_session::store::MemoryStore;
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn memory_store_conforms() {
//!     tower_mcp_session::conformance::session_store(|| async { MemoryStore::new() }).await;
//! }
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn memory_event_log_conforms() {
//!     tower_mcp_session::conformance::event_log(|limits| async move {
//!         MemoryEventLog::builder()
//!             .max_events_per_stream(limits.max_events_per_stream)
//!             .max_bytes_per_stream(limits.max_bytes_per_stream)
//!             .build()
//!     })
//!     .await;
//! }
//! ```
//!
//! # Fresh backends and second handles
//!
//! The suite runs each group of checks on a backend of its own, made by the factory you
//! pass: every call must give a fresh, empty backend that shares nothing with the ones
//! made before (a new schema, key prefix or database), because the checks count what a
//! backend holds (the session cap, the expired sessions reported).
//!
//! The promises about "every instance sharing the backend" (the exact cap, delete and
//! create exactly once, compare-and-set, expiry reported once) are checked by sending
//! concurrent calls to two handles onto one backend.
//! - [`session_store`]: both handles are the same store value. That is all an
//!   in-process backend has.
//! - [`session_store_with`]: the second handle is made by `second_handle(&first)`: give
//!   it its own connection (pool, client) onto the same data, as a second server
//!   instance would have, so the races really cross connections.
//!
//! The event log checks are the same: [`event_log`] uses one log value twice,
//! [`event_log_with`] a second handle from `second_handle(&first, limits)`. Their
//! factory is given the [`LogLimits`] (per-stream retention bounds) the group needs, so
//! that retention can be checked with a few events; it must build the log with them.
//! The stream cap per session is not checked: what `open` does there is the backend's
//! own policy, which the trait leaves open.
//!
//! # Time
//!
//! The expiry checks use real time (idle timeouts of a few hundred milliseconds and
//! `tokio::time::sleep`), never paused time: a remote backend keeps its own clock.
//! Each timed step is stamped with when it was sent and when it was answered, and a
//! check only asserts what those stamps prove; when a loaded machine or a slow backend
//! makes a step run too late to prove anything, the check is tried again, and only
//! gives up (with a message saying so) after a few late attempts. A backend must report
//! an expired session from [`take_expired`](SessionStore::take_expired) within 5 s of
//! its expiry to pass. The groups run concurrently; a whole run takes a few seconds.
//!
//! The event log checks take no time bound of the log: a waiter must notice an event,
//! a finish or a removal within 5 s, also one written through the other handle (a log
//! may poll for those).
//!
//! # Failures
//!
//! The suite panics with `SessionStore conformance: broken promise: …` (or `EventLog
//! conformance: …`) naming the promise and what was seen, or with `SessionStore
//! conformance: store call … failed` (`EventLog conformance: log call … failed`) when a
//! step that must succeed returned an error. Run it on a multi-threaded runtime
//! (`#[tokio::test(flavor = "multi_thread")]`) so that concurrent calls really overlap;
//! on a current-thread runtime they only interleave.

use std::fmt::{Debug, Display};
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::ProtocolVersion;
#[cfg(doc)]
use crate::event_log::EventLog;
use crate::session::{MakeSessionId, Principal, RandomSessionId, SessionId, SessionRecord};
use crate::store::{Expiry, SessionStore, StoreError};

/// Panic naming a broken promise unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, $promise:expr, $($detail:tt)+) => {
        if !$cond {
            $crate::conformance::broken($promise, format_args!($($detail)+))
        }
    };
}

/// Panic naming a broken promise.
macro_rules! broken {
    ($promise:expr, $($detail:tt)+) => {
        $crate::conformance::broken($promise, format_args!($($detail)+))
    };
}

/// `ensure!` for the event log suite: the failure names the `EventLog` trait.
macro_rules! log_ensure {
    ($cond:expr, $promise:expr, $($detail:tt)+) => {
        if !$cond {
            $crate::conformance::event_log::broken($promise, format_args!($($detail)+))
        }
    };
}

/// `broken!` for the event log suite.
macro_rules! log_broken {
    ($promise:expr, $($detail:tt)+) => {
        $crate::conformance::event_log::broken($promise, format_args!($($detail)+))
    };
}

mod event_log;
mod event_log_leases;
mod event_log_readers;
mod event_log_sessions;
mod event_log_streams;
mod last_activity;
mod listing;
mod store;
mod timing;

pub use event_log::{LogLimits, event_log, event_log_with};

/// Run every check of the [`SessionStore`] contract, each group on a fresh backend from
/// `fresh`; the two handles of the cross-instance checks are the same store value.
///
/// `fresh` must make an empty backend that shares nothing with the ones it made before.
/// Panics on the first broken promise (see the [module documentation](self)).
///
/// ```no_run
/// use tower_mcp_session::store::MemoryStore;
///
/// # async fn run() {
/// tower_mcp_session::conformance::session_store(|| async { MemoryStore::new() }).await;
/// # }
/// ```
pub async fn session_store<S, F, Fut>(fresh: F)
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    store::run(|| {
        let made = fresh();
        async move {
            let store: Arc<dyn SessionStore> = Arc::new(made.await);
            Handles {
                a: Arc::clone(&store),
                b: store,
            }
        }
    })
    .await;
}

/// Run every check of the [`SessionStore`] contract, each group on a fresh backend from
/// `fresh`, with the cross-instance checks split over that store and a second handle
/// onto the same backend made by `second_handle`.
///
/// `fresh` must make an empty backend that shares nothing with the ones it made before;
/// `second_handle(&store)` must make another store value that sees the same data as
/// `store` (for a networked backend: over its own connections). The future it returns
/// may not borrow `store`: copy out what it needs (a connection string, a schema name).
///
/// ```no_run
/// use tower_mcp_session::store::MemoryStore;
///
/// # async fn run() {
/// // A clone of a `MemoryStore` is the same store; a networked backend would connect anew.
/// tower_mcp_session::conformance::session_store_with(
///     || async { MemoryStore::new() },
///     |store: &MemoryStore| {
///         let same = store.clone();
///         async move { same }
///     },
/// )
/// .await;
/// # }
/// ```
pub async fn session_store_with<S, F, Fut, H, HFut>(fresh: F, second_handle: H)
where
    S: SessionStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    H: Fn(&S) -> HFut,
    HFut: Future<Output = S>,
{
    let second_handle = &second_handle;
    store::run(|| {
        let made = fresh();
        async move {
            let first = made.await;
            let second = second_handle(&first).await;
            Handles {
                a: Arc::new(first),
                b: Arc::new(second),
            }
        }
    })
    .await;
}

/// Two handles onto one backend (possibly the same value twice).
#[derive(Clone)]
struct Handles {
    a: Arc<dyn SessionStore>,
    b: Arc<dyn SessionStore>,
}

impl Handles {
    /// Alternates between the handles, so concurrent callers are spread over both.
    fn by(&self, i: usize) -> &Arc<dyn SessionStore> {
        if i.is_multiple_of(2) { &self.a } else { &self.b }
    }
}

/// How long a timed check may be late before the attempt proves nothing: slack for the
/// backend's clock granularity and rounding, not for scheduling (that is measured).
const EPS: Duration = Duration::from_millis(30);

/// Timed checks are tried this many times before a late machine fails them.
const ATTEMPTS: u32 = 3;

/// A short idle timeout, for sessions meant to expire.
const SHORT: Duration = Duration::from_millis(300);

/// Long enough never to pass during a run.
const LONG: Duration = Duration::from_secs(600);

/// When a store step took place, as far as this process can tell: the backend did it at
/// some moment between `start` and `end`.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

/// Run `step` and stamp it.
async fn timed<T>(step: impl Future<Output = T>) -> (T, Window) {
    let start = Instant::now();
    let value = step.await;
    (
        value,
        Window {
            start,
            end: Instant::now(),
        },
    )
}

/// A timed attempt whose steps ran too late to prove anything.
struct Late;

/// `Err(Late)` unless `in_time`.
fn in_time(in_time: bool) -> Result<(), Late> {
    if in_time { Ok(()) } else { Err(Late) }
}

/// Try a timed check until one attempt is in time. Between attempts it waits for what
/// the late one left (short slots, short-lived sessions) to lapse.
async fn patiently<F, Fut>(check: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Late>>,
{
    for n in 1..=ATTEMPTS {
        if attempt().await.is_ok() {
            return;
        }
        if n < ATTEMPTS {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    panic!(
        "SessionStore conformance: could not check \"{check}\": in {ATTEMPTS} attempts the store's answers came \
         too late to prove anything (the machine or the backend is too slow for the suite's timings)"
    );
}

#[track_caller]
fn broken(promise: &str, detail: impl Display) -> ! {
    panic!("SessionStore conformance: broken promise: {promise}\n  seen: {detail}")
}

/// The value of a store step that must succeed.
#[track_caller]
fn answer<T>(step: &str, result: Result<T, StoreError>) -> T {
    result.unwrap_or_else(|e| failed(step, e))
}

#[track_caller]
fn failed(step: &str, error: impl Display + Debug) -> ! {
    panic!("SessionStore conformance: store call `{step}` failed: {error} ({error:?})")
}

/// A new id no other check uses, with `tag` saying which check made it (for messages).
fn fresh_id(tag: &str) -> SessionId {
    let id = format!("conformance-{tag}-{}", RandomSessionId.make_session_id());
    SessionId::parse(&id).expect("tags are visible ASCII")
}

/// A record with every optional field set, so a backend that drops one is caught.
fn record(id: &SessionId) -> SessionRecord {
    let raw = |json: &str| RawValue::from_string(json.to_owned()).ok();
    SessionRecord::new(id.clone(), ProtocolVersion::V2025_06_18)
        .with_client(
            raw(r#"{"name":"conformance","version":"1.0"}"#),
            raw(r#"{"roots":{"listChanged":true}}"#),
        )
        .with_principal(Some(Principal::new("user-42")))
}

fn expiry(idle: Duration, lifetime: Duration) -> Expiry {
    Expiry { idle, lifetime }
}
