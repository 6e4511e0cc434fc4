//! Writing SSE frames.
//!
//! Every writer here produces whole events (ending in a blank line), so frames can be
//! concatenated in any order without one bleeding into the next.

use bytes::{BufMut, BytesMut};

use super::event_id::{EventId, MAX_EVENT_ID_LEN};

/// Append one event: an optional `id:` line, the payload as `data:` lines, a blank line.
///
/// The payload is split at every `\n`, `\r\n` and `\r`, each piece on its own `data:`
/// line, so no byte of the payload can end a line early and smuggle in a field (`id:`,
/// `retry:`, …) or end the event. A reader joins the lines with `\n`: the payload comes
/// back identical except that `\r\n` and `\r` read as `\n` (SSE cannot carry a bare CR).
/// JSON, the only payload the layer sends, is unaffected: its line breaks are whitespace.
///
/// Empty data becomes one empty `data:` line, which still dispatches an event.
pub fn encode_event(out: &mut BytesMut, id: Option<EventId>, data: &[u8]) {
    out.reserve(data.len() + 64);
    if let Some(id) = id {
        put_id(out, id);
    }
    let mut rest = data;
    loop {
        match memchr::memchr2(b'\n', b'\r', rest) {
            Some(i) => {
                put_data_line(out, &rest[..i]);
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
            }
            None => {
                put_data_line(out, rest);
                break;
            }
        }
    }
    out.put_u8(b'\n');
}

/// Append the priming event: the id and an empty `data:` line.
///
/// 2025-11-25 asks servers to send this first on every SSE stream so that a client that
/// loses the connection before any real event still holds an id to resume from.
pub(crate) fn encode_priming(out: &mut BytesMut, id: EventId) {
    out.reserve(MAX_EVENT_ID_LEN + 16);
    put_id(out, id);
    out.put_slice(b"data:\n\n");
}

/// Append a block that only sets the client's reconnection delay, in milliseconds.
///
/// Sent before the server closes a connection it means the client to re-poll. The block
/// carries no data, so a reader does not see it as a message.
pub(crate) fn encode_retry(out: &mut BytesMut, millis: u64) {
    out.reserve(32);
    out.put_slice(b"retry: ");
    let mut digits = [0u8; 20];
    out.put_slice(crate::util::format_decimal(millis, &mut digits));
    out.put_slice(b"\n\n");
}

/// Append a comment block (a keep-alive); readers skip it.
///
/// Line breaks in `text` are replaced by spaces: a comment must stay one line, or the
/// rest of the text would be read as fields.
pub(crate) fn encode_comment(out: &mut BytesMut, text: &str) {
    out.reserve(text.len() + 4);
    out.put_u8(b':');
    if !text.is_empty() {
        out.put_u8(b' ');
        let mut rest = text.as_bytes();
        while let Some(i) = memchr::memchr2(b'\n', b'\r', rest) {
            out.put_slice(&rest[..i]);
            out.put_u8(b' ');
            rest = &rest[i + 1..];
        }
        out.put_slice(rest);
    }
    out.put_slice(b"\n\n");
}

pub(crate) fn put_id(out: &mut BytesMut, id: EventId) {
    let mut buf = [0u8; MAX_EVENT_ID_LEN];
    out.put_slice(b"id: ");
    out.put_slice(id.encode(&mut buf));
    out.put_u8(b'\n');
}

pub(crate) fn put_data_line(out: &mut BytesMut, line: &[u8]) {
    if line.is_empty() {
        out.put_slice(b"data:\n");
    } else {
        // Always a space after the colon: readers strip exactly one, so a payload line
        // that itself starts with a space keeps it.
        out.put_slice(b"data: ");
        out.put_slice(line);
        out.put_u8(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_log::StreamId;

    fn frame(f: impl FnOnce(&mut BytesMut)) -> String {
        let mut out = BytesMut::new();
        f(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn event_with_id_and_multiline_data() {
        let id = EventId::new(StreamId::from_raw(255), 3);
        assert_eq!(
            frame(|o| encode_event(o, Some(id), b"a\nb\r\nc\rd")),
            "id: 00000000000000ff-3\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn newlines_cannot_inject_fields_or_end_the_event() {
        let out = frame(|o| encode_event(o, None, b"x\n\nid: evil\rretry: 1\r\n\r\nevent: e"));
        assert_eq!(
            out,
            "data: x\ndata:\ndata: id: evil\ndata: retry: 1\ndata:\ndata: event: e\n\n"
        );
        // The only blank line is the final one.
        assert_eq!(out.matches("\n\n").count(), 1);
    }

    #[test]
    fn empty_and_edge_payloads() {
        assert_eq!(frame(|o| encode_event(o, None, b"")), "data:\n\n");
        assert_eq!(frame(|o| encode_event(o, None, b"\n")), "data:\ndata:\n\n");
        assert_eq!(frame(|o| encode_event(o, None, b" lead")), "data:  lead\n\n");
    }

    #[test]
    fn priming_retry_and_comment() {
        let id = EventId::new(StreamId::from_raw(1), 0);
        assert_eq!(frame(|o| encode_priming(o, id)), "id: 0000000000000001-0\ndata:\n\n");
        assert_eq!(frame(|o| encode_retry(o, 0)), "retry: 0\n\n");
        assert_eq!(frame(|o| encode_retry(o, u64::MAX)), "retry: 18446744073709551615\n\n");
        assert_eq!(frame(|o| encode_comment(o, "")), ":\n\n");
        assert_eq!(frame(|o| encode_comment(o, "ping")), ": ping\n\n");
        assert_eq!(frame(|o| encode_comment(o, "a\nb\r\nc")), ": a b  c\n\n");
    }
}
