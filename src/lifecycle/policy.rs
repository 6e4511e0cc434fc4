//! [`AtCapacity`]: what happens to a newcomer when the session cap is reached.

use std::time::Duration;

const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the layer does when a new session would exceed
/// [`max_sessions`](crate::McpSessionLayerBuilder::max_sessions).
///
/// The default is [`Refuse`](Self::Refuse) with a 5 second `retry_after`. Under a flood
/// of new sessions, evicting existing ones hands the attacker every slot and logs real
/// users out; telling the newcomer to come back later (503 with `Retry-After`) keeps the
/// sessions already working intact. [`EvictIdle`](Self::EvictIdle) is for servers whose
/// clients routinely abandon sessions without `DELETE`.
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session::{AtCapacity, McpSessionLayer};
///
/// let layer = McpSessionLayer::builder()
///     .max_sessions(Some(1_000))
///     .at_capacity(AtCapacity::EvictIdle {
///         min_idle: Duration::from_secs(60),
///         retry_after: Duration::from_secs(2),
///     })
///     .build();
/// # let _ = layer;
/// assert!(matches!(AtCapacity::default(), AtCapacity::Refuse { .. }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AtCapacity {
    /// Refuse the new session: 503 with `Retry-After`.
    Refuse {
        /// How long the client is told to wait.
        retry_after: Duration,
    },
    /// End the least recently active idle session, if one has been idle for at least
    /// `min_idle`; otherwise refuse like [`Refuse`](Self::Refuse).
    ///
    /// A session with a request or stream in flight on this instance is never evicted;
    /// one busy on another instance is touched at least every `min_idle / 2`, so it
    /// never looks idle for `min_idle`. The evicted session ends with
    /// [`CloseReason::Evicted`](crate::CloseReason::Evicted). It needs a store that can
    /// list idle sessions ([`MemoryStore`](crate::store::MemoryStore) can); with one that
    /// cannot, the layer refuses and logs a warning once.
    EvictIdle {
        /// How long a session must have been idle to be evicted.
        min_idle: Duration,
        /// How long the client is told to wait when no session can be evicted.
        retry_after: Duration,
    },
}

impl AtCapacity {
    pub(crate) fn retry_after(self) -> Duration {
        match self {
            Self::Refuse { retry_after } | Self::EvictIdle { retry_after, .. } => retry_after,
        }
    }
}

impl Default for AtCapacity {
    fn default() -> Self {
        Self::Refuse {
            retry_after: DEFAULT_RETRY_AFTER,
        }
    }
}
