//! The SSE event id the layer writes and reads back from `Last-Event-ID`.

use std::fmt;

use crate::event_log::StreamId;

/// The `id:` of an SSE event on a resumable stream: which stream, and where in it.
///
/// On the wire it reads `{stream}-{seq}`: the stream as 16 lowercase hex digits, a dash,
/// and the sequence number in decimal. Putting the stream in the id is what lets a
/// `Last-Event-ID` name the stream to resume (2025-11-25 asks for exactly that) and keeps
/// ids unique across all streams of a session, since each stream counts on its own.
///
/// Sequence number 0 is the priming event sent before anything else: it carries no
/// payload and resuming from it replays the whole stream. Stored events start at 1.
///
/// ```
/// use tower_mcp_session::event_log::StreamId;
/// use tower_mcp_session::sse::EventId;
///
/// let id = EventId::new(StreamId::from_raw(255), 3);
/// assert_eq!(id.to_string(), "00000000000000ff-3");
/// assert_eq!(EventId::parse("00000000000000ff-3"), Some(id));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId {
    stream: StreamId,
    seq: u64,
}

/// Longest textual form: 16 hex digits, a dash and the 20 digits of `u64::MAX`.
pub(crate) const MAX_EVENT_ID_LEN: usize = 16 + 1 + 20;

impl EventId {
    /// The id of event `seq` of `stream`.
    ///
    /// ```
    /// use tower_mcp_session::event_log::StreamId;
    /// use tower_mcp_session::sse::EventId;
    ///
    /// let priming = EventId::new(StreamId::from_raw(1), 0);
    /// assert_eq!(priming.seq(), 0);
    /// ```
    pub const fn new(stream: StreamId, seq: u64) -> Self {
        Self { stream, seq }
    }

    /// The stream the event belongs to.
    ///
    /// ```
    /// use tower_mcp_session::event_log::StreamId;
    /// use tower_mcp_session::sse::EventId;
    ///
    /// let id = EventId::new(StreamId::from_raw(9), 4);
    /// assert_eq!(id.stream(), StreamId::from_raw(9));
    /// ```
    pub const fn stream(self) -> StreamId {
        self.stream
    }

    /// The event's sequence number in its stream (0 for the priming event).
    ///
    /// ```
    /// use tower_mcp_session::event_log::StreamId;
    /// use tower_mcp_session::sse::EventId;
    ///
    /// assert_eq!(EventId::new(StreamId::from_raw(9), 4).seq(), 4);
    /// ```
    pub const fn seq(self) -> u64 {
        self.seq
    }

    /// Read an id in the exact form [`Display`](fmt::Display) writes; `None` for anything
    /// else.
    ///
    /// The check is strict on purpose: `Last-Event-ID` comes from the client, and
    /// accepting only the canonical spelling means one event has exactly one id, so an id
    /// cannot be varied (case, padding, signs, leading zeros) to probe the log.
    ///
    /// ```
    /// use tower_mcp_session::sse::EventId;
    ///
    /// assert!(EventId::parse("00000000000000ff-0").is_some());
    /// assert!(EventId::parse("00000000000000FF-0").is_none()); // uppercase
    /// assert!(EventId::parse("00000000000000ff-01").is_none()); // leading zero
    /// assert!(EventId::parse("ff-1").is_none()); // not 16 digits
    /// assert!(EventId::parse("00000000000000ff-18446744073709551616").is_none()); // > u64
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        // Length first: it bounds all later work and rejects oversized input at once.
        if b.len() < 18 || b.len() > MAX_EVENT_ID_LEN || b[16] != b'-' {
            return None;
        }
        let mut stream = 0u64;
        for &c in &b[..16] {
            let nibble = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            stream = (stream << 4) | u64::from(nibble);
        }
        let digits = &b[17..];
        if digits.len() > 1 && digits[0] == b'0' {
            return None;
        }
        let mut seq = 0u64;
        for &c in digits {
            if !c.is_ascii_digit() {
                return None;
            }
            seq = seq.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        }
        Some(Self::new(StreamId::from_raw(stream), seq))
    }

    /// Write the textual form into `buf` and return the written part; no allocation, so
    /// the frame encoder can use it per event.
    pub(crate) fn encode(self, buf: &mut [u8; MAX_EVENT_ID_LEN]) -> &[u8] {
        crate::util::hex_encode(&self.stream.raw().to_be_bytes(), &mut buf[..16]);
        buf[16] = b'-';
        let mut digits = [0u8; 20];
        let seq = crate::util::format_decimal(self.seq, &mut digits);
        let len = seq.len();
        buf[17..17 + len].copy_from_slice(seq);
        &buf[..17 + len]
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; MAX_EVENT_ID_LEN];
        let text = self.encode(&mut buf);
        // The encoder writes only ASCII hex, '-' and digits.
        f.write_str(std::str::from_utf8(text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_matches_the_documented_form() {
        assert_eq!(
            EventId::new(StreamId::from_raw(255), 3).to_string(),
            "00000000000000ff-3"
        );
        assert_eq!(EventId::new(StreamId::from_raw(0), 0).to_string(), "0000000000000000-0");
        assert_eq!(
            EventId::new(StreamId::from_raw(u64::MAX), u64::MAX).to_string(),
            "ffffffffffffffff-18446744073709551615"
        );
    }

    #[test]
    fn parse_rejects_everything_but_the_canonical_form() {
        let bad = [
            "",
            "-",
            "00000000000000ff",
            "00000000000000ff-",
            "0000000000000ff-1",
            "000000000000000ff-1",
            "00000000000000fF-1",
            "00000000000000fg-1",
            "00000000000000ff-00",
            "00000000000000ff-+1",
            "00000000000000ff--1",
            "00000000000000ff-1 ",
            " 00000000000000ff-1",
            "00000000000000ff_1",
            "00000000000000ff-1a",
            "00000000000000ff-18446744073709551616",
            "00000000000000ff-99999999999999999999",
            "00000000000000ff-1é",
        ];
        for s in bad {
            assert_eq!(EventId::parse(s), None, "{s:?}");
        }
        assert_eq!(
            EventId::parse("ffffffffffffffff-18446744073709551615"),
            Some(EventId::new(StreamId::from_raw(u64::MAX), u64::MAX))
        );
        assert!(EventId::parse(&"0".repeat(4096)).is_none());
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(stream in any::<u64>(), seq in any::<u64>()) {
            let id = EventId::new(StreamId::from_raw(stream), seq);
            prop_assert_eq!(EventId::parse(&id.to_string()), Some(id));
        }

        #[test]
        fn parse_never_panics_and_accepts_only_canonical_text(s in "\\PC{0,3000}") {
            if let Some(id) = EventId::parse(&s) {
                prop_assert_eq!(id.to_string(), s);
            }
        }

        #[test]
        fn parse_of_near_misses_is_canonical(s in "[0-9a-fA-F]{14,18}-[0-9]{0,22}") {
            if let Some(id) = EventId::parse(&s) {
                prop_assert_eq!(id.to_string(), s);
            }
        }
    }
}
