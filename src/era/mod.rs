//! Era classification: which revision of MCP a request speaks.
//!
//! Revision 2026-07-28 removed protocol-level sessions, the GET stream and
//! resumability. Requests from clients of the earlier Streamable HTTP revisions
//! (2025-03-26, 2025-06-18, 2025-11-25) keep full session semantics. Every request
//! is classified first; everything else the layer does depends on the answer.

use std::fmt;
use std::str::FromStr;

/// A protocol revision, a date of the form `YYYY-MM-DD`.
///
/// Revisions compare by date, which is how MCP orders them.
///
/// ```
/// use tower_mcp_session::ProtocolVersion;
///
/// let v: ProtocolVersion = "2025-06-18".parse().unwrap();
/// assert!(v < ProtocolVersion::V2026_07_28);
/// assert!(!v.is_modern());
/// assert_eq!(v.to_string(), "2025-06-18");
/// assert!("2025-6-18".parse::<ProtocolVersion>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion {
    year: u16,
    month: u8,
    day: u8,
}

impl ProtocolVersion {
    /// The original HTTP+SSE revision (no Streamable HTTP).
    pub const V2024_11_05: Self = Self::new(2024, 11, 5);
    /// First Streamable HTTP revision: sessions and JSON-RPC batching.
    pub const V2025_03_26: Self = Self::new(2025, 3, 26);
    /// Batching removed; the `MCP-Protocol-Version` header appears.
    pub const V2025_06_18: Self = Self::new(2025, 6, 18);
    /// SSE polling (priming events, `retry`), Origin → 403.
    pub const V2025_11_25: Self = Self::new(2025, 11, 25);
    /// The stateless revision: no sessions, no GET stream, no resumability.
    pub const V2026_07_28: Self = Self::new(2026, 7, 28);

    /// The legacy revisions whose clients this layer gives sessions to.
    pub const LEGACY: [Self; 3] = [Self::V2025_03_26, Self::V2025_06_18, Self::V2025_11_25];

    const fn new(year: u16, month: u8, day: u8) -> Self {
        Self { year, month, day }
    }

    /// Whether this revision is 2026-07-28 or later (stateless, sessionless).
    pub fn is_modern(self) -> bool {
        self >= Self::V2026_07_28
    }

    /// Whether clients of this revision expect SSE priming events (2025-11-25 and later).
    pub fn supports_priming(self) -> bool {
        self >= Self::V2025_11_25
    }

    /// Whether this revision allows JSON-RPC batches (2025-03-26 only).
    pub fn allows_batches(self) -> bool {
        self == Self::V2025_03_26
    }
}

/// The error for a string that is not a `YYYY-MM-DD` revision date.
///
/// ```
/// use tower_mcp_session::InvalidProtocolVersion;
/// use tower_mcp_session::ProtocolVersion;
///
/// let err: InvalidProtocolVersion = "latest".parse::<ProtocolVersion>().unwrap_err();
/// assert_eq!(err.to_string(), "protocol version is not a YYYY-MM-DD date");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidProtocolVersion(());

impl fmt::Display for InvalidProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("protocol version is not a YYYY-MM-DD date")
    }
}

impl std::error::Error for InvalidProtocolVersion {}

impl FromStr for ProtocolVersion {
    type Err = InvalidProtocolVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| -> Option<u16> {
            b[r].iter().try_fold(0u16, |acc, c| {
                c.is_ascii_digit().then(|| acc * 10 + u16::from(c - b'0'))
            })
        };
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(InvalidProtocolVersion(()));
        }
        match (digits(0..4), digits(5..7), digits(8..10)) {
            (Some(year), Some(month @ 1..=12), Some(day @ 1..=31)) => Ok(Self::new(year, month as u8, day as u8)),
            _ => Err(InvalidProtocolVersion(())),
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Debug for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProtocolVersion({self})")
    }
}

impl serde::Serialize for ProtocolVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Which protocol era a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Era {
    /// 2025-03-26, 2025-06-18 or 2025-11-25: sessions, GET stream, resumability.
    Legacy,
    /// 2026-07-28 or later: stateless; the layer passes requests through.
    Modern,
}

/// What the `MCP-Protocol-Version` header of a request says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VersionHeader {
    Absent,
    Invalid,
    Present(ProtocolVersion),
}

impl VersionHeader {
    pub(crate) fn read(headers: &http::HeaderMap) -> Self {
        match headers.get(crate::headers::MCP_PROTOCOL_VERSION) {
            None => Self::Absent,
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .map_or(Self::Invalid, Self::Present),
        }
    }
}

/// Classify a request from its version header and, for POST, what its body says.
///
/// A header naming 2026-07-28 or later makes the request modern, and so does a body
/// that carries the 2026-07-28 request metadata (`_meta` with a protocol version),
/// whatever version it names: no 2025-era client sends that field, and the modern
/// validation rules are the ones that can answer it correctly. That holds for
/// `initialize` too: a 2026-era `initialize` is an unknown method for the inner service
/// to refuse, not a handshake. Anything else (no header, a 2025 revision, an
/// unparseable header without modern metadata) is legacy, where the session rules apply.
pub(crate) fn classify(header: VersionHeader, has_modern_meta: bool) -> Era {
    match header {
        VersionHeader::Present(v) if v.is_modern() => Era::Modern,
        _ if has_modern_meta => Era::Modern,
        _ => Era::Legacy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_revisions() {
        let all = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];
        let parsed: Vec<ProtocolVersion> = all.iter().map(|s| s.parse().unwrap()).collect();
        assert!(parsed.windows(2).all(|w| w[0] < w[1]));
        for (s, v) in all.iter().zip(&parsed) {
            assert_eq!(&v.to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed_versions() {
        for bad in [
            "",
            "2025-13-01",
            "2025-00-10",
            "2025-01-32",
            "20250618",
            "2025-06-18 ",
            "２０２５-06-18",
            "abcd-ef-gh",
        ] {
            assert!(bad.parse::<ProtocolVersion>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn classification_table() {
        use VersionHeader::*;
        let modern = Present(ProtocolVersion::V2026_07_28);
        let legacy = Present(ProtocolVersion::V2025_06_18);
        assert_eq!(classify(modern, false), Era::Modern);
        assert_eq!(classify(legacy, false), Era::Legacy);
        // A legacy header with modern metadata is contradictory: modern validation answers it.
        assert_eq!(classify(legacy, true), Era::Modern);
        assert_eq!(classify(Absent, true), Era::Modern);
        assert_eq!(classify(Absent, false), Era::Legacy);
        assert_eq!(classify(Invalid, false), Era::Legacy);
        assert_eq!(classify(Invalid, true), Era::Modern);
        let future = Present("2027-01-01".parse().unwrap());
        assert_eq!(classify(future, false), Era::Modern);
    }
}
