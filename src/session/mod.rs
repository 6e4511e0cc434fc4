//! What a session is, as data: its id, its record, the principal it is bound to, and
//! why sessions end. The handle the inner service sees is [`Session`](crate::Session).

mod id;

pub(crate) use id::fill_random;
pub use id::{MAX_SESSION_ID_LEN, MakeSessionId, RandomSessionId, SessionId};

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::value::RawValue;

use crate::ProtocolVersion;

/// The authenticated subject a request acts for.
///
/// An authentication layer in front of [`McpSessionLayer`](crate::McpSessionLayer)
/// inserts it into the request extensions. A session remembers the principal that
/// created it; a request presenting the session under another principal is answered
/// exactly like an unknown session (404), so the answer reveals nothing. Bind the
/// *subject* (a user id), not the token: tokens are refreshed, subjects stay.
///
/// ```
/// use tower_mcp_session::Principal;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(Principal::new("user-42"));
/// assert_eq!(req.extensions().get::<Principal>().unwrap().as_str(), "user-42");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Principal(Arc<str>);

impl Principal {
    /// A principal for the subject `subject`.
    pub fn new(subject: impl Into<Arc<str>>) -> Self {
        Self(subject.into())
    }

    /// The subject as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Principal").field(&&*self.0).finish()
    }
}

/// Why a session ended. Every session ends exactly once, with one of these.
///
/// ```
/// use tower_mcp_session::CloseReason;
///
/// assert_eq!(CloseReason::Idle.as_str(), "idle");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent `DELETE`.
    Deleted,
    /// No request arrived within the idle timeout.
    Idle,
    /// The session reached its absolute lifetime.
    Lifetime,
    /// The session was evicted to make room for a new one at the session cap.
    Evicted,
    /// The application ended it (through [`Session::close`](crate::Session::close) or the manager).
    Closed,
}

impl CloseReason {
    /// A stable lowercase name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Idle => "idle",
            Self::Lifetime => "lifetime",
            Self::Evicted => "evicted",
            Self::Closed => "closed",
        }
    }

    /// All reasons, in a fixed order (used for per-reason counters).
    pub const ALL: [Self; 5] = [Self::Deleted, Self::Idle, Self::Lifetime, Self::Evicted, Self::Closed];

    pub(crate) fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// What a session knows about itself from its `initialize` exchange. Immutable once
/// the session exists; application state goes in attributes instead.
///
/// ```
/// use tower_mcp_session::{ProtocolVersion, SessionId, SessionRecord};
///
/// let record = SessionRecord::new(SessionId::parse("abc").unwrap(), ProtocolVersion::V2025_06_18);
/// assert_eq!(record.protocol_version(), ProtocolVersion::V2025_06_18);
/// assert!(record.principal().is_none());
/// ```
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub(crate) id: SessionId,
    pub(crate) protocol_version: ProtocolVersion,
    pub(crate) created_at: SystemTime,
    pub(crate) client_info: Option<Box<RawValue>>,
    pub(crate) client_capabilities: Option<Box<RawValue>>,
    pub(crate) principal: Option<Principal>,
}

impl SessionRecord {
    /// A record for a session negotiated at `protocol_version`, created now.
    pub fn new(id: SessionId, protocol_version: ProtocolVersion) -> Self {
        Self {
            id,
            protocol_version,
            created_at: SystemTime::now(),
            client_info: None,
            client_capabilities: None,
            principal: None,
        }
    }

    /// Attach the principal the session is bound to.
    pub fn with_principal(mut self, principal: Option<Principal>) -> Self {
        self.principal = principal;
        self
    }

    /// Attach the client's `clientInfo` and `capabilities` (raw JSON from `initialize`).
    pub fn with_client(mut self, info: Option<Box<RawValue>>, capabilities: Option<Box<RawValue>>) -> Self {
        self.client_info = info;
        self.client_capabilities = capabilities;
        self
    }

    /// Set the creation time (stores that reload records use this).
    pub fn with_created_at(mut self, created_at: SystemTime) -> Self {
        self.created_at = created_at;
        self
    }

    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The protocol version negotiated at `initialize`.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.protocol_version
    }

    /// When the session was created.
    pub fn created_at(&self) -> SystemTime {
        self.created_at
    }

    /// The client's `clientInfo` from `initialize`, as raw JSON.
    pub fn client_info(&self) -> Option<&RawValue> {
        self.client_info.as_deref()
    }

    /// The client's `capabilities` from `initialize`, as raw JSON.
    pub fn client_capabilities(&self) -> Option<&RawValue> {
        self.client_capabilities.as_deref()
    }

    /// The principal the session is bound to, if any.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }
}
