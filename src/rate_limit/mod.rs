//! Rate limiting of session creation.
//!
//! A [`CreationLimit`] decides whether an `initialize` request without a session may
//! create one. Requests on established sessions are never counted, so a busy session is
//! never slowed by a flood of newcomers, and a flood of newcomers is cheap to refuse:
//! [`check`](CreationLimit::check) runs before anything else is done for the request.
//!
//! Two quotas, both optional and combinable, both [GCRA] as implemented by `governor`:
//!
//! - [`global`](CreationLimit::global): all new sessions of this process;
//! - [`per_key`](CreationLimit::per_key): one bucket per [`RateLimitKey`], found by a
//!   [`KeyExtractor`] — the peer address ([`PeerIp`]), the client address behind
//!   trusted proxies ([`ForwardedIp`]), the authenticated [`Principal`](crate::Principal)
//!   ([`PrincipalKey`]), or a closure of your own.
//!
//! ```
//! use std::num::NonZeroU32;
//! use tower_mcp_session::rate_limit::{CreationLimit, ForwardedIp, PeerAddr, Quota};
//!
//! let limit = CreationLimit::new()
//!     // 200 new sessions a second for the whole process, in bursts of up to 400…
//!     .global(Quota::per_second(NonZeroU32::new(200).unwrap()).allow_burst(NonZeroU32::new(400).unwrap()))
//!     // …and 10 a minute per client address, as reported by our load balancers.
//!     .per_key(
//!         Quota::per_minute(NonZeroU32::new(10).unwrap()),
//!         ForwardedIp::x_forwarded_for(["10.0.0.0/8".parse().unwrap()]),
//!     );
//!
//! let (mut parts, ()) = http::Request::new(()).into_parts();
//! parts.extensions.insert(PeerAddr("198.51.100.7:50000".parse().unwrap()));
//! for _ in 0..10 {
//!     assert!(limit.check(&parts).is_ok());
//! }
//! let refused = limit.check(&parts).unwrap_err();
//! assert!(refused.retry_after().as_secs() <= 6);
//! ```
//!
//! # Both quotas: nobody pays for a refusal
//!
//! governor takes a cell whenever it allows one, so checking one quota and then the
//! other could spend a cell of the first on a request the second refuses. The order
//! used here spends nothing on a refused request:
//!
//! 1. a dry run of the global quota (governor decides, the state is left untouched);
//! 2. the per-key quota, which takes the key's cell if allowed;
//! 3. the global quota for real.
//!
//! The three steps run under one short lock, so step 3 always agrees with step 1. The
//! order matters beyond fairness: were the global quota charged first, one client
//! hammering with its own bucket empty would drain the global quota for everyone. Here
//! a client refused by its own quota costs the others nothing, and when the process is
//! at its global limit, refused clients keep their per-key cells.
//!
//! # Requests without a key
//!
//! When the extractor finds no key (no peer address, no principal), the request is
//! counted in one bucket shared by all such requests, under the same per-key quota. It
//! is never refused for lack of a key and never let through unlimited; if many of
//! your clients legitimately have no key, fix the extractor (see [`PeerIp`] for axum's
//! `ConnectInfo`) rather than raising the quota.
//!
//! # Keeping per-key state bounded
//!
//! Every distinct key costs an entry (about 70 bytes). An entry whose bucket has been
//! full again for a while carries no information, so a sweeper removes such entries
//! (governor's `retain_recent`: a key goes once its bucket has been full for one
//! replenish interval) and shrinks the map every
//! [`sweep_interval`](CreationLimit::sweep_interval) (60 s by default). A sweep of a
//! million entries takes 10–30 ms, on tokio's blocking pool, locking one map shard at a
//! time. The sweeper is a tokio
//! task started by the first [`check`](CreationLimit::check) made inside a tokio runtime
//! (with the time driver enabled, as `#[tokio::main]` does); it holds the limiter only
//! weakly and ends as soon as the last clone of the [`CreationLimit`] is dropped.
//! Outside tokio, call [`sweep`](CreationLimit::sweep) yourself.
//!
//! # Several instances
//!
//! governor's state lives in this process. Behind a load balancer with `n` instances,
//! each instance enforces its own quotas, so the cluster admits up to `n` times each
//! quota. Size a per-instance quota as *cluster quota / n*. That is exact only when the
//! balancer spreads new connections evenly: with sticky or skewed balancing, one client
//! may land on one instance and be limited at 1/n of what you meant, while clients
//! spread over all instances get the full cluster quota. Per-key quotas suffer most from
//! this (a client's requests usually stick to one instance); round up, or let the
//! balancer enforce per-client limits if they must be exact.
//!
//! [GCRA]: https://en.wikipedia.org/wiki/Generic_cell_rate_algorithm

pub(crate) mod forwarded;
mod global;
mod key;
mod refusal;

pub use governor::Quota;
pub use ipnet::IpNet;
pub use key::{ForwardedIp, KeyExtractor, PeerAddr, PeerIp, PrincipalKey, RateLimitKey};
pub use refusal::RateLimited;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::periodic::Periodic;
use governor::clock::{Clock, Reference};
use governor::{DefaultKeyedRateLimiter, NotUntil};
use http::header::HeaderValue;
use http::request::Parts;

use crate::util::retry_after_secs;
use global::{GlobalLimiter, Probe};

const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// `None` is the shared bucket of requests for which no key was found.
type Bucket = Option<RateLimitKey>;

/// Limits how fast new sessions are created, globally and per client.
///
/// Cheap to clone; clones share their state. Each builder method returns a limiter with
/// fresh state, so configure it fully before use. See the [module docs](self) for the
/// order of checks, the unkeyed bucket, the sweeper and multi-instance deployments.
///
/// ```
/// use std::num::NonZeroU32;
/// use tower_mcp_session::rate_limit::{CreationLimit, PrincipalKey, Quota};
///
/// let limit = CreationLimit::new()
///     .per_key(Quota::per_minute(NonZeroU32::new(5).unwrap()), PrincipalKey)
///     .rate_limit_headers(true);
/// # let _ = limit;
/// ```
#[derive(Clone)]
pub struct CreationLimit {
    inner: Arc<Inner>,
}

/// What the builder collects; every builder call makes new state from it.
#[derive(Clone)]
struct Config {
    global: Option<Quota>,
    per_key: Option<(Quota, Arc<dyn KeyExtractor>)>,
    headers: bool,
    draft_error: bool,
    sweep_interval: Duration,
}

struct Inner {
    config: Config,
    global: Option<GlobalLimiter>,
    keyed: Option<Keyed>,
    /// Serialises checks when both quotas are set, so the global dry run and the
    /// global take see the same state.
    both: Mutex<()>,
    /// Drops stale per-key entries; ends with the last clone.
    sweeper: Periodic<Inner>,
}

struct Keyed {
    limiter: DefaultKeyedRateLimiter<Bucket>,
    extractor: Arc<dyn KeyExtractor>,
}

impl Default for CreationLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl CreationLimit {
    /// A limiter with no quota: every check passes until a quota is set.
    pub fn new() -> Self {
        Self::from_config(Config {
            global: None,
            per_key: None,
            headers: false,
            draft_error: false,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        })
    }

    fn from_config(config: Config) -> Self {
        let sweep_interval = config.sweep_interval;
        let global = config.global.map(global::limiter);
        let keyed = config.per_key.as_ref().map(|(quota, extractor)| Keyed {
            // The dashmap-backed store: concurrent, with `retain_recent` and
            // `shrink_to_fit` for the sweeper, and SipHash, so clients choosing their
            // keys cannot force collisions.
            limiter: DefaultKeyedRateLimiter::dashmap(*quota),
            extractor: Arc::clone(extractor),
        });
        Self {
            inner: Arc::new(Inner {
                global,
                keyed,
                both: Mutex::new(()),
                sweeper: Periodic::new(sweep_interval, |inner| {
                    Box::pin(async move {
                        // A sweep of a million stale entries takes tens of milliseconds:
                        // too long to hold an async worker.
                        let _ = tokio::task::spawn_blocking(move || inner.sweep()).await;
                    })
                }),
                config,
            }),
        }
    }

    fn reconfigure(self, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.inner.config.clone();
        f(&mut config);
        Self::from_config(config)
    }

    /// Limit all new sessions of this process to `quota`.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tower_mcp_session::rate_limit::{CreationLimit, Quota};
    ///
    /// let limit = CreationLimit::new().global(Quota::per_second(NonZeroU32::new(2).unwrap()));
    /// let (parts, ()) = http::Request::new(()).into_parts();
    /// assert!(limit.check(&parts).is_ok());
    /// assert!(limit.check(&parts).is_ok());
    /// assert!(limit.check(&parts).is_err());
    /// ```
    pub fn global(self, quota: Quota) -> Self {
        self.reconfigure(|c| c.global = Some(quota))
    }

    /// Limit new sessions to `quota` per key, as found by `extractor`.
    ///
    /// Requests for which `extractor` finds no key share one bucket with the same quota.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tower_mcp_session::rate_limit::{CreationLimit, PeerAddr, PeerIp, Quota};
    ///
    /// let limit = CreationLimit::new().per_key(Quota::per_minute(NonZeroU32::new(1).unwrap()), PeerIp::new());
    /// let request = |peer: &str| {
    ///     let (mut parts, ()) = http::Request::new(()).into_parts();
    ///     parts.extensions.insert(PeerAddr(peer.parse().unwrap()));
    ///     parts
    /// };
    /// assert!(limit.check(&request("192.0.2.1:1000")).is_ok());
    /// assert!(limit.check(&request("192.0.2.1:2000")).is_err());
    /// assert!(limit.check(&request("192.0.2.2:1000")).is_ok());
    /// ```
    pub fn per_key(self, quota: Quota, extractor: impl KeyExtractor) -> Self {
        let extractor: Arc<dyn KeyExtractor> = Arc::new(extractor);
        self.reconfigure(|c| c.per_key = Some((quota, extractor)))
    }

    /// Also describe the quota in refusals with the IETF draft `RateLimit-Policy` and
    /// `RateLimit` headers (off by default; `Retry-After` is always sent).
    ///
    /// The GCRA quota is described as `q` = burst size per `w` = time to refill the
    /// whole burst, in seconds; a refusal reports `r=0` and `t` = `Retry-After`.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tower_mcp_session::rate_limit::{CreationLimit, Quota};
    ///
    /// let limit = CreationLimit::new()
    ///     .global(Quota::per_minute(NonZeroU32::new(1).unwrap()))
    ///     .rate_limit_headers(true);
    /// let (parts, ()) = http::Request::new(()).into_parts();
    /// limit.check(&parts).unwrap();
    /// let headers: http::HeaderMap = limit.check(&parts).unwrap_err().headers().collect();
    /// assert_eq!(headers["ratelimit-policy"], r#""global";q=1;w=60"#);
    /// assert!(headers["ratelimit"].to_str().unwrap().starts_with(r#""global";r=0;t="#));
    /// ```
    pub fn rate_limit_headers(self, enabled: bool) -> Self {
        self.reconfigure(|c| c.headers = enabled)
    }

    /// Answer refusals with the draft MCP rate-limit error as well (default off): the
    /// JSON-RPC error code becomes `-32023` and `error.data.retryAfterMs` says when to
    /// try again; the status stays 429 with `Retry-After` and the reason `rate_limited`.
    /// Off by default while the code is a draft: clients written against the released
    /// revisions expect `-32000`.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tower_mcp_session::rate_limit::{CreationLimit, Quota};
    ///
    /// let limit = CreationLimit::new()
    ///     .global(Quota::per_minute(NonZeroU32::new(10).unwrap()))
    ///     .draft_error_code(true);
    /// # let _ = limit;
    /// ```
    pub fn draft_error_code(self, enabled: bool) -> Self {
        self.reconfigure(|c| c.draft_error = enabled)
    }

    /// How often stale per-key entries are removed (default 60 s; at least 1 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::rate_limit::CreationLimit;
    ///
    /// let limit = CreationLimit::new().sweep_interval(Duration::from_secs(10));
    /// # let _ = limit;
    /// ```
    pub fn sweep_interval(self, interval: Duration) -> Self {
        self.reconfigure(|c| c.sweep_interval = interval.max(Duration::from_millis(1)))
    }

    /// Decide whether the request may create a session; on `Ok` its cells are taken.
    ///
    /// Synchronous and cheap (a lock-free map lookup per quota, plus one uncontended
    /// lock when both quotas are set). Call it once per session-creating request.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use tower_mcp_session::rate_limit::{CreationLimit, Quota};
    ///
    /// let limit = CreationLimit::new().global(Quota::per_hour(NonZeroU32::new(1).unwrap()));
    /// let (parts, ()) = http::Request::new(()).into_parts();
    /// assert!(limit.check(&parts).is_ok());
    /// let refused = limit.check(&parts).unwrap_err();
    /// let mut response = http::Response::builder().status(429);
    /// for (name, value) in refused.headers() {
    ///     response = response.header(name, value);
    /// }
    /// let response = response.body(()).unwrap();
    /// assert!(response.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 3599);
    /// ```
    pub fn check(&self, parts: &Parts) -> Result<(), RateLimited> {
        let inner = &*self.inner;
        match (&inner.global, &inner.keyed) {
            (None, None) => Ok(()),
            (Some(global), None) => global
                .check_key(&Probe::Take)
                .map_err(|n| inner.refusal(LimitScope::Global, &n, global.clock())),
            (None, Some(keyed)) => {
                self.start_sweeper();
                let bucket = keyed.extractor.extract(parts);
                inner.take_key(keyed, &bucket)
            }
            (Some(global), Some(keyed)) => {
                self.start_sweeper();
                // The extractor runs outside the lock: it is user code.
                let bucket = keyed.extractor.extract(parts);
                // Nothing under the lock can panic, so a poisoned lock guards no broken
                // state.
                let _serial = inner.both.lock().unwrap_or_else(PoisonError::into_inner);
                global
                    .check_key(&Probe::DryRun)
                    .map_err(|n| inner.refusal(LimitScope::Global, &n, global.clock()))?;
                inner.take_key(keyed, &bucket)?;
                // Only this locked section changes the global state and time only moves
                // forward, so this agrees with the dry run.
                global
                    .check_key(&Probe::Take)
                    .map_err(|n| inner.refusal(LimitScope::Global, &n, global.clock()))
            }
        }
    }

    /// Remove per-key entries that carry no information (their bucket has been full for
    /// at least one replenish interval) and release the memory they held.
    ///
    /// The sweeper does this every [`sweep_interval`](Self::sweep_interval) inside a
    /// tokio runtime; call it yourself elsewhere.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session::rate_limit::{CreationLimit, PeerAddr, PeerIp, Quota};
    ///
    /// let limit = CreationLimit::new().per_key(Quota::with_period(Duration::from_millis(1)).unwrap(), PeerIp::new());
    /// for port in 0..100u16 {
    ///     let (mut parts, ()) = http::Request::new(()).into_parts();
    ///     parts.extensions.insert(PeerAddr(([192, 0, 2, port as u8], port).into()));
    ///     limit.check(&parts).unwrap();
    /// }
    /// assert_eq!(limit.tracked_keys(), 100);
    /// std::thread::sleep(Duration::from_millis(5));
    /// limit.sweep();
    /// assert_eq!(limit.tracked_keys(), 0);
    /// ```
    pub fn sweep(&self) {
        self.inner.sweep();
    }

    /// How many per-key entries are held now (0 without a per-key quota).
    ///
    /// ```
    /// use tower_mcp_session::rate_limit::CreationLimit;
    ///
    /// assert_eq!(CreationLimit::new().tracked_keys(), 0);
    /// ```
    pub fn tracked_keys(&self) -> usize {
        self.inner.keyed.as_ref().map_or(0, |k| k.limiter.len())
    }

    fn start_sweeper(&self) {
        self.inner.sweeper.ensure(&self.inner);
    }
}

impl Inner {
    fn take_key(&self, keyed: &Keyed, bucket: &Bucket) -> Result<(), RateLimited> {
        keyed
            .limiter
            .check_key(bucket)
            .map_err(|n| self.refusal(LimitScope::Key, &n, keyed.limiter.clock()))
    }

    fn refusal<C: Clock>(&self, scope: LimitScope, not_until: &NotUntil<C::Instant>, clock: &C) -> RateLimited
    where
        C::Instant: Reference,
    {
        let retry_after = not_until.wait_time_from(clock.now());
        let policy = self.config.headers.then(|| {
            let quota = not_until.quota();
            let window = retry_after_secs(quota.burst_size_replenished_in());
            let value = format!("\"{}\";q={};w={window}", scope.as_str(), quota.burst_size());
            HeaderValue::try_from(value).expect("digits and a fixed policy name are a valid header value")
        });
        RateLimited {
            retry_after,
            scope,
            policy,
            draft_error: self.config.draft_error,
        }
    }

    fn sweep(&self) {
        if let Some(keyed) = &self.keyed {
            keyed.limiter.retain_recent();
            keyed.limiter.shrink_to_fit();
        }
    }
}

impl fmt::Debug for CreationLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.config;
        f.debug_struct("CreationLimit")
            .field("global", &c.global)
            .field("per_key", &c.per_key.as_ref().map(|(quota, _)| quota))
            .field("rate_limit_headers", &c.headers)
            .field("sweep_interval", &c.sweep_interval)
            .field("tracked_keys", &self.tracked_keys())
            .finish()
    }
}

/// Which quota refused a request.
///
/// ```
/// use tower_mcp_session::rate_limit::LimitScope;
///
/// assert_eq!(LimitScope::Key.as_str(), "per-key");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitScope {
    /// The process-wide quota.
    Global,
    /// The quota of the request's key (or of the shared unkeyed bucket).
    Key,
}

impl LimitScope {
    /// A stable lowercase name, for logs, metrics and the `RateLimit` policy name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Key => "per-key",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn quota(n: u32) -> Quota {
        Quota::per_hour(NonZeroU32::new(n).unwrap())
    }

    fn from(peer: &str) -> Parts {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.extensions.insert(PeerAddr(peer.parse().unwrap()));
        parts
    }

    #[tokio::test(start_paused = true)]
    async fn sweeper_sweeps_and_stops_with_the_last_clone() {
        let limit = CreationLimit::new()
            .per_key(Quota::with_period(Duration::from_millis(1)).unwrap(), PeerIp::new())
            .sweep_interval(Duration::from_secs(60));
        let clone = limit.clone();
        for i in 0..50u8 {
            limit.check(&from(&format!("192.0.2.{i}:1"))).unwrap();
        }
        assert_eq!(limit.tracked_keys(), 50);
        // governor's clock is the real one: let the buckets refill for real.
        std::thread::sleep(Duration::from_millis(5));
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(clone.tracked_keys(), 0);

        let signal = limit.inner.sweeper.stop_signal();
        drop(limit);
        tokio::task::yield_now().await;
        assert!(signal.upgrade().is_some(), "a clone is alive, so is the sweeper");
        drop(clone);
        // The drop wakes the sweeper; no timer has to fire for it to end.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(signal.upgrade().is_none(), "the sweeper ended with the last clone");
    }

    #[test]
    fn no_runtime_no_sweeper_and_no_panic() {
        let limit = CreationLimit::new().per_key(quota(1), PeerIp::new());
        assert!(limit.check(&from("192.0.2.1:1")).is_ok());
        assert!(!limit.inner.sweeper.is_started());
    }

    #[test]
    fn without_quotas_everything_passes() {
        let limit = CreationLimit::new();
        for _ in 0..1000 {
            assert!(limit.check(&from("192.0.2.1:1")).is_ok());
        }
    }

    #[test]
    fn policy_names_its_scope() {
        let limit = CreationLimit::new()
            .per_key(Quota::per_second(NonZeroU32::new(3).unwrap()), PeerIp::new())
            .rate_limit_headers(true);
        for _ in 0..3 {
            limit.check(&from("192.0.2.1:1")).unwrap();
        }
        let refused = limit.check(&from("192.0.2.1:1")).unwrap_err();
        let headers: http::HeaderMap = refused.headers().collect();
        assert_eq!(headers["ratelimit-policy"], "\"per-key\";q=3;w=1");
        assert_eq!(headers["ratelimit"], "\"per-key\";r=0;t=1");
        assert_eq!(headers["retry-after"], "1");
        assert!(refused.to_string().contains("per-key"));
    }
}
