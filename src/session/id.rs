//! Session identifiers: how they are made and what a valid one looks like.

use std::fmt;
use std::sync::Arc;

/// The longest session id the layer accepts from a client, in bytes.
///
/// Ids the layer mints are 32 characters; a custom [`MakeSessionId`] may produce longer
/// ones up to this bound. Anything longer is rejected with 400 before any store lookup,
/// so a client cannot make the layer hash or store arbitrary amounts of data.
pub const MAX_SESSION_ID_LEN: usize = 256;

/// A session identifier: 1 to [`MAX_SESSION_ID_LEN`] visible ASCII characters
/// (0x21–0x7E), as every 2025 revision requires.
///
/// Cloning is cheap (a reference count).
///
/// ```
/// use tower_mcp_session::SessionId;
///
/// let id = SessionId::parse("a1b2c3").unwrap();
/// assert_eq!(id.as_str(), "a1b2c3");
/// assert!(SessionId::parse("has space").is_none());
/// assert!(SessionId::parse("").is_none());
/// assert!(SessionId::parse("é").is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// Validate `s` as a session id; `None` when it is empty, too long or holds a
    /// character outside 0x21–0x7E.
    pub fn parse(s: &str) -> Option<Self> {
        Self::is_valid(s.as_bytes()).then(|| Self(Arc::from(s)))
    }

    /// Whether `bytes` is a syntactically valid session id.
    pub(crate) fn is_valid(bytes: &[u8]) -> bool {
        !bytes.is_empty() && bytes.len() <= MAX_SESSION_ID_LEN && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SessionId").field(&&*self.0).finish()
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Makes new session ids.
///
/// Implemented for closures returning a [`SessionId`], so a custom scheme (a signed
/// token, a prefix per region) is one line. Whatever it returns must stay unguessable:
/// the id is a bearer of state, and the MCP security guidance asks for secure,
/// non-deterministic ids.
///
/// ```
/// use tower_mcp_session::{MakeSessionId, RandomSessionId, SessionId};
///
/// let make = |  | {
///     let random = RandomSessionId.make_session_id();
///     SessionId::parse(&format!("eu-{random}")).unwrap()
/// };
/// assert!(make.make_session_id().as_str().starts_with("eu-"));
/// ```
pub trait MakeSessionId: Send + Sync + 'static {
    /// Return a fresh, unguessable session id.
    fn make_session_id(&self) -> SessionId;
}

impl<F> MakeSessionId for F
where
    F: Fn() -> SessionId + Send + Sync + 'static,
{
    fn make_session_id(&self) -> SessionId {
        self()
    }
}

/// The default id maker: 128 bits from the operating system's CSPRNG, as 32 lowercase
/// hex characters.
///
/// ```
/// use tower_mcp_session::{MakeSessionId, RandomSessionId};
///
/// let a = RandomSessionId.make_session_id();
/// let b = RandomSessionId.make_session_id();
/// assert_eq!(a.as_str().len(), 32);
/// assert_ne!(a, b);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomSessionId;

impl MakeSessionId for RandomSessionId {
    fn make_session_id(&self) -> SessionId {
        let mut bytes = [0u8; 16];
        fill_random(&mut bytes);
        let mut text = [0u8; 32];
        crate::util::hex_encode(&bytes, &mut text);
        // Hex digits are visible ASCII, so the id is valid by construction.
        SessionId(Arc::from(std::str::from_utf8(&text).expect("hex is ASCII")))
    }
}

/// Fill `buf` from the OS CSPRNG.
///
/// The OS generator failing is not something a server can recover from safely:
/// continuing with predictable ids would be worse than stopping, so this panics.
pub(crate) fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_bounds() {
        assert!(SessionId::parse(&"a".repeat(MAX_SESSION_ID_LEN)).is_some());
        assert!(SessionId::parse(&"a".repeat(MAX_SESSION_ID_LEN + 1)).is_none());
        assert!(SessionId::parse("!~").is_some());
        assert!(SessionId::parse("a\tb").is_none());
        assert!(SessionId::parse("a\u{7f}").is_none());
    }

    #[test]
    fn random_ids_are_distinct_hex() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| RandomSessionId.make_session_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.as_str().bytes().all(|b| b.is_ascii_hexdigit())));
    }
}
