//! `EventId::parse` (what `Last-Event-ID` goes through).
//!
//! Invariants: never panics; accepts exactly the canonical form (`Display` gives the
//! input back), which a plain reading of the grammar `[0-9a-f]{16} "-" (0 | [1-9][0-9]*)`
//! with a `u64` sequence also accepts; any (stream, seq) pair round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_mcp_session::event_log::StreamId;
use tower_mcp_session::sse::EventId;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 16 {
        let stream = u64::from_le_bytes(data[..8].try_into().unwrap());
        let seq = u64::from_le_bytes(data[8..16].try_into().unwrap());
        let id = EventId::new(StreamId::from_raw(stream), seq);
        assert_eq!(EventId::parse(&id.to_string()), Some(id));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = EventId::parse(text);
    if let Some(id) = parsed {
        assert_eq!(id.to_string(), text);
    }
    assert_eq!(parsed.is_some(), canonical(text), "{text:?}");
});

/// The grammar, read independently of the parser.
fn canonical(text: &str) -> bool {
    let Some((stream, seq)) = text.split_once('-') else {
        return false;
    };
    let hex = stream.len() == 16 && stream.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let digits = !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) && (seq == "0" || !seq.starts_with('0'));
    hex && digits && seq.parse::<u64>().is_ok()
}
