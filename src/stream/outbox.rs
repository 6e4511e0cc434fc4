//! What one connection has left to send, and how much of it the server still holds.
//!
//! Two things bound the memory a client can make the server hold by opening connections
//! and not reading them:
//!
//! - [`Outbox`] encodes events lazily, a frame at a time, and long payload lines go out
//!   as slices of the bytes the event log stores (`Bytes` clones share the buffer), so a
//!   replay of a 4 MB event to 200 connections holds the event once, not 200 times. Only
//!   framing and short lines are copied, at most [`FRAME`] bytes at a time.
//! - [`Flight`] counts the frames handed to the HTTP server that it has not written to
//!   the socket yet (a frame's bytes are released when the server drops them). The body
//!   stops producing past [`MAX_FRAMES_IN_FLIGHT`] frames or [`MAX_BYTES_IN_FLIGHT`]
//!   bytes, and a connection that makes no progress for the write timeout is cut.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use bytes::{BufMut, Bytes, BytesMut};

use crate::event_log::{StoredEvent, StreamId};
use crate::sse::{EventId, MAX_EVENT_ID_LEN, put_data_line, put_id};

/// The most copied bytes one frame carries, and the size of the pieces long payload
/// lines are sliced into.
pub(crate) const FRAME: usize = 16 << 10;

/// Payload lines at least this long are shared with the log rather than copied.
const SHARE_MIN: usize = 1 << 10;

/// The framing around a one-line event: `id: <id>\n`, `data: `, and the two newlines
/// that end the line and the event, with some room for a few more lines.
const EVENT_FRAMING: usize = 4 + MAX_EVENT_ID_LEN + 1 + 6 + 2 + 32;

/// Frames handed to the server and not yet written past which the body waits. Kept
/// under hyper's own queue limit (16 buffers, about 400 KiB), so that the server keeps
/// polling the body while it waits, and the write timeout can fire.
pub(crate) const MAX_FRAMES_IN_FLIGHT: usize = 12;

/// Bytes handed to the server and not yet written past which the body waits.
pub(crate) const MAX_BYTES_IN_FLIGHT: usize = 192 << 10;

/// Events to send on one connection, encoded as SSE a frame at a time.
#[derive(Debug)]
pub(crate) struct Outbox {
    stream: StreamId,
    /// Copied bytes (framing, short lines, priming, comments) waiting to go out, before
    /// anything queued after them.
    buf: BytesMut,
    events: VecDeque<StoredEvent>,
    /// The event being encoded and the offset of its next line; past its end when only
    /// the closing blank line is left.
    current: Option<(Bytes, usize)>,
    /// A long line going out as shared slices: the payload and the range left.
    long: Option<(Bytes, usize, usize)>,
}

impl Outbox {
    pub(crate) fn new(stream: StreamId) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            events: VecDeque::new(),
            current: None,
            long: None,
        }
    }

    /// Small bytes to send after what is queued (priming, `retry`, comments).
    pub(crate) fn small(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub(crate) fn push_event(&mut self, event: StoredEvent) {
        self.events.push_back(event);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.events.is_empty() && self.current.is_none() && self.long.is_none()
    }

    /// The next frame: at most [`FRAME`] copied bytes plus one short line, or one slice
    /// of a stored payload. `None` when nothing is left.
    pub(crate) fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some((data, start, end)) = self.long.take() {
                let cut = end.min(start + FRAME);
                if cut < end {
                    self.long = Some((data.clone(), cut, end));
                } else {
                    self.buf.put_u8(b'\n');
                }
                return Some(data.slice(start..cut));
            }
            if self.buf.len() >= FRAME {
                return Some(self.buf.split().freeze());
            }
            let Some((data, pos)) = &mut self.current else {
                let Some(event) = self.events.pop_front() else {
                    break;
                };
                // A short event is copied whole: room for it at once, since the buffer
                // starts empty after every `split` and grew by doubling, reallocating
                // about five times per event. Long payloads go out shared, not copied.
                if event.data.len() < SHARE_MIN {
                    self.buf.reserve(EVENT_FRAMING + event.data.len());
                }
                put_id(&mut self.buf, EventId::new(self.stream, event.seq));
                self.current = Some((event.data, 0));
                continue;
            };
            if *pos > data.len() {
                // Every line is out: the blank line ends the event.
                self.buf.put_u8(b'\n');
                self.current = None;
                continue;
            }
            // Lines split at `\n`, `\r\n` and `\r`, exactly as `encode_event` does.
            let rest = &data[*pos..];
            let (len, skip) = match memchr::memchr2(b'\n', b'\r', rest) {
                Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => (i, 2),
                Some(i) => (i, 1),
                // The last line; moving past the end marks the event as written.
                None => (rest.len(), 1),
            };
            let (start, end) = (*pos, *pos + len);
            *pos = end + skip;
            if len >= SHARE_MIN {
                self.buf.put_slice(b"data: ");
                self.long = Some((data.clone(), start, end));
                return Some(self.buf.split().freeze());
            }
            put_data_line(&mut self.buf, &data[start..end]);
        }
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// The frames of one connection that the server holds and has not written yet.
#[derive(Debug, Default)]
pub(crate) struct Flight {
    frames: AtomicUsize,
    bytes: AtomicUsize,
    /// How many frames were written, ever: progress, for the write timeout.
    written: AtomicU64,
    waker: Mutex<Option<Waker>>,
}

impl Flight {
    /// `frame`, tracked: its release (the server dropping it once written) is counted.
    pub(crate) fn track(self: &Arc<Self>, frame: Bytes) -> Bytes {
        self.frames.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(frame.len(), Ordering::AcqRel);
        Bytes::from_owner(Tracked {
            frame,
            flight: Arc::clone(self),
        })
    }

    /// Whether the server holds as much of this connection as it may.
    pub(crate) fn full(&self) -> bool {
        self.frames.load(Ordering::Acquire) >= MAX_FRAMES_IN_FLIGHT
            || self.bytes.load(Ordering::Acquire) >= MAX_BYTES_IN_FLIGHT
    }

    /// Whether the server holds any frame of this connection.
    pub(crate) fn pending(&self) -> bool {
        self.frames.load(Ordering::Acquire) > 0
    }

    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Wake `waker` when a frame is written.
    pub(crate) fn register(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *slot {
            Some(w) if w.will_wake(waker) => {}
            other => *other = Some(waker.clone()),
        }
    }
}

/// A frame with its release counted.
struct Tracked {
    frame: Bytes,
    flight: Arc<Flight>,
}

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.frame
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let flight = &self.flight;
        flight.bytes.fetch_sub(self.frame.len(), Ordering::AcqRel);
        flight.frames.fetch_sub(1, Ordering::AcqRel);
        flight.written.fetch_add(1, Ordering::AcqRel);
        let waker = flight.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::encode_event;

    fn drain(outbox: &mut Outbox) -> Vec<Bytes> {
        std::iter::from_fn(|| outbox.next_frame()).collect()
    }

    fn events(payloads: &[&[u8]]) -> Outbox {
        let mut outbox = Outbox::new(StreamId::from_raw(9));
        for (seq, p) in (1..).zip(payloads) {
            outbox.push_event(StoredEvent {
                seq,
                data: Bytes::copy_from_slice(p),
            });
        }
        outbox
    }

    #[test]
    fn frames_concatenate_to_the_plain_encoding() {
        let long = "x".repeat(3 * FRAME + 5);
        let mixed = format!("a\r\n{long}\rb\n\n{long}");
        let cases: [&[u8]; 9] = [
            b"",
            b"\n",
            b"a\r",
            b"a\r\nb",
            b"{\"jsonrpc\":\"2.0\"}",
            long.as_bytes(),
            mixed.as_bytes(),
            b" lead\n",
            b"x\n\nid: evil\rretry: 1\r\n\r\nevent: e",
        ];
        let mut outbox = events(&cases);
        let mut want = BytesMut::new();
        for (seq, p) in (1..).zip(cases) {
            encode_event(&mut want, Some(EventId::new(StreamId::from_raw(9), seq)), p);
        }
        let frames = drain(&mut outbox);
        assert_eq!(frames.concat(), want.to_vec());
        assert!(frames.iter().all(|f| f.len() <= FRAME + SHARE_MIN + 64));
        assert!(outbox.is_empty());
    }

    #[test]
    fn long_lines_are_shared_with_the_stored_event() {
        let stored = Bytes::from(vec![b'y'; 4 << 20]);
        let mut outbox = Outbox::new(StreamId::from_raw(1));
        outbox.push_event(StoredEvent {
            seq: 1,
            data: stored.clone(),
        });
        let range = stored.as_ptr() as usize..stored.as_ptr() as usize + stored.len();
        let mut shared = 0;
        let mut copied = 0;
        while let Some(frame) = outbox.next_frame() {
            if range.contains(&(frame.as_ptr() as usize)) {
                shared += frame.len();
            } else {
                copied += frame.len();
            }
        }
        assert_eq!(shared, stored.len());
        assert!(copied < 64, "only framing is copied, {copied} bytes were");
    }

    #[test]
    fn flight_counts_frames_until_they_are_dropped() {
        let flight = Arc::new(Flight::default());
        let frames: Vec<Bytes> = (0..MAX_FRAMES_IN_FLIGHT)
            .map(|_| flight.track(Bytes::from_static(b"data: x\n\n")))
            .collect();
        assert!(flight.full() && flight.pending());
        let copy = frames[0].clone();
        drop(frames);
        assert!(!flight.full() && flight.pending(), "a clone still holds its frame");
        drop(copy);
        assert!(!flight.pending());
        assert_eq!(flight.written(), MAX_FRAMES_IN_FLIGHT as u64);
    }
}
