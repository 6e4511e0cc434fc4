//! [`RateLimited`]: a refusal, and the headers and error shape it is answered with.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, RETRY_AFTER};

use super::LimitScope;
use crate::util::retry_after_secs;

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// A session-creating request was refused: answer 429 with [`headers`](Self::headers).
///
/// ```
/// use std::num::NonZeroU32;
/// use tower_mcp_session::rate_limit::{CreationLimit, LimitScope, Quota};
///
/// let limit = CreationLimit::new().global(Quota::per_minute(NonZeroU32::new(1).unwrap()));
/// let (parts, ()) = http::Request::new(()).into_parts();
/// limit.check(&parts).unwrap();
/// let refused = limit.check(&parts).unwrap_err();
/// assert_eq!(refused.scope(), LimitScope::Global);
/// assert!(refused.retry_after().as_secs_f64() > 59.0);
/// ```
#[derive(Clone, Debug)]
pub struct RateLimited {
    pub(super) retry_after: Duration,
    pub(super) scope: LimitScope,
    pub(super) policy: Option<HeaderValue>,
    pub(super) draft_error: bool,
}

impl RateLimited {
    /// The earliest time from now at which the same request could succeed.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// Which quota refused the request.
    pub fn scope(&self) -> LimitScope {
        self.scope
    }

    /// Whether the refusal is answered with the draft code
    /// ([`CreationLimit::draft_error_code`](super::CreationLimit::draft_error_code)).
    pub(crate) fn draft_error(&self) -> bool {
        self.draft_error
    }

    /// The headers to send with the 429: `Retry-After` in whole seconds, rounded up and
    /// never 0 (a client told 0 retries at once and is refused again), plus
    /// `RateLimit-Policy` and `RateLimit` when enabled with
    /// [`CreationLimit::rate_limit_headers`](super::CreationLimit::rate_limit_headers).
    ///
    /// ```
    /// use tower_mcp_session::rate_limit::{CreationLimit, Quota};
    ///
    /// let limit = CreationLimit::new().global(Quota::with_period(std::time::Duration::from_millis(300)).unwrap());
    /// let (parts, ()) = http::Request::new(()).into_parts();
    /// limit.check(&parts).unwrap();
    /// let refused = limit.check(&parts).unwrap_err();
    /// assert!(refused.retry_after() < std::time::Duration::from_secs(1));
    /// let headers: Vec<_> = refused.headers().collect();
    /// assert_eq!(headers.len(), 1);
    /// assert_eq!(headers[0].0, http::header::RETRY_AFTER);
    /// assert_eq!(headers[0].1, "1");
    /// ```
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + use<> {
        let secs = retry_after_secs(self.retry_after);
        let ratelimit = self.policy.as_ref().map(|policy| {
            let now = format!("\"{}\";r=0;t={secs}", self.scope.as_str());
            let now = HeaderValue::try_from(now).expect("digits and a fixed policy name are a valid header value");
            [(RATELIMIT_POLICY, policy.clone()), (RATELIMIT, now)]
        });
        std::iter::once((RETRY_AFTER, HeaderValue::from(secs))).chain(ratelimit.into_iter().flatten())
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "too many new sessions ({} quota); retry in {} s",
            self.scope.as_str(),
            retry_after_secs(self.retry_after)
        )
    }
}

impl Error for RateLimited {}
