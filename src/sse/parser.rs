//! An incremental SSE reader following the WHATWG `text/event-stream` rules.
//!
//! The layer reads the inner service's SSE answers with it (to re-emit each message
//! with its own event id), and tests read the layer's output with it exactly the way a
//! browser or SDK client would, including the awkward parts (chunk boundaries inside a
//! CRLF pair or a UTF-8 sequence, a BOM, CR-only line ends).

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The field names the reader acts on.
const FIELDS: [&[u8]; 4] = [b"data", b"event", b"id", b"retry"];

/// Digits of `u64::MAX`: a longer `retry:` value is ignored whatever follows.
const MAX_RETRY_DIGITS: usize = 20;

/// What an unfinished line will do once complete, as far as its bytes so far tell.
enum Partial {
    /// It may still matter: keep it.
    Pending,
    /// It will be ignored whatever follows: drop its bytes.
    Ignored,
    /// It will overflow the event whatever follows.
    Overflow,
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field of this event; `None` when absent or empty (a browser would
    /// report `"message"`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`, always valid UTF-8 (invalid sequences are
    /// replaced by U+FFFD, as the standard decodes the stream).
    pub data: Bytes,
    /// The `id:` field given in this event, if any. The id that persists across events
    /// (what a client resumes from) is [`SseParser::last_event_id`].
    pub id: Option<String>,
    /// The `retry:` value given in this event, if any and valid.
    pub retry: Option<u64>,
}

/// Why the reader refused the input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseError {
    /// One event (its data, event name and id, or a single unfinished line) grew past
    /// the bound given to [`SseParser::new`]. The event is dropped; reading resumes after
    /// the blank line that ends it.
    EventTooLarge {
        /// The bound that was exceeded, in bytes.
        limit: usize,
    },
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EventTooLarge { limit } => write!(f, "SSE event larger than {limit} bytes"),
        }
    }
}

impl std::error::Error for SseError {}

/// Reads SSE events from bytes that arrive in arbitrary pieces.
///
/// Feed input with [`push`](Self::push), then call [`next_event`](Self::next_event)
/// until it returns `Ok(None)`; do that after every push, and the reader holds at most
/// `max_event_bytes` plus the latest chunk. When the input ends, call
/// [`finish`](Self::finish): an event without its closing blank line is discarded, as
/// the standard requires.
///
/// Choices the standard leaves to the embedder:
/// - A block with no `data:` line is not an event, even if it has `retry:` or `id:`.
///   Those still take effect at once: see [`reconnection_time`](Self::reconnection_time)
///   and [`last_event_id`](Self::last_event_id).
/// - `retry:` must be at most 20 ASCII digits that fit a `u64`; anything else is ignored.
/// - The bound holds for the event's data, name and id however the input is cut: an
///   unfinished line already too long for the event overflows it at once, with the same
///   outcome as the whole line read in one piece, and an id too long for the bound
///   overflows even if it holds NUL (which would otherwise make it ignored).
/// - Comment lines are dropped as they arrive, so a long comment costs no memory.
pub struct SseParser {
    max: usize,
    /// Unprocessed input; always starts at the beginning of a line (or inside a line
    /// whose first bytes were dropped, see `line_dropped`).
    input: BytesMut,
    /// Leading bytes of `input` already searched for a line break, so a long line fed
    /// in small chunks is not rescanned each time.
    scanned: usize,
    bom_checked: bool,
    /// The last line ended with CR: an LF at the start of the next input completes a
    /// CRLF pair and is not a blank line.
    after_cr: bool,
    /// The rest of the current line is dropped (a comment, or an oversized event).
    discard_line: bool,
    /// Bytes of the current line were dropped already, so it is not a blank line.
    line_dropped: bool,
    /// The current event overflowed; everything up to its blank line is dropped.
    skipping: bool,
    data: BytesMut,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    /// Bytes held for the event under construction.
    size: usize,
    last_event_id: String,
    reconnection_time: Option<u64>,
}

impl SseParser {
    /// A reader that refuses any event holding more than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max: max_event_bytes,
            input: BytesMut::new(),
            scanned: 0,
            bom_checked: false,
            after_cr: false,
            discard_line: false,
            line_dropped: false,
            skipping: false,
            data: BytesMut::new(),
            event: None,
            id: None,
            retry: None,
            size: 0,
            last_event_id: String::new(),
            reconnection_time: None,
        }
    }

    /// Add the next piece of input; it may end anywhere.
    pub fn push(&mut self, chunk: &[u8]) {
        self.input.extend_from_slice(chunk);
    }

    /// The next complete event, `Ok(None)` when more input is needed.
    ///
    /// After [`SseError::EventTooLarge`] the reader stays usable: the oversized event
    /// is skipped and later events are returned normally.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        loop {
            if !self.bom_checked {
                if self.input.len() < BOM.len() && BOM.starts_with(&self.input) {
                    return Ok(None);
                }
                if self.input.starts_with(BOM) {
                    self.input.advance(BOM.len());
                }
                self.bom_checked = true;
            }
            if self.after_cr {
                match self.input.first() {
                    None => return Ok(None),
                    Some(b'\n') => self.input.advance(1),
                    Some(_) => {}
                }
                self.after_cr = false;
            }

            let Some(rel) = memchr::memchr2(b'\n', b'\r', &self.input[self.scanned..]) else {
                return self.hold_partial_line().map(|()| None);
            };
            let end = self.scanned + rel;
            let blank = end == 0 && !self.line_dropped;
            let outcome = if blank {
                if self.skipping {
                    self.skipping = false;
                    self.reset_event();
                    Ok(None)
                } else {
                    Ok(self.dispatch())
                }
            } else if self.discard_line || self.skipping {
                Ok(None)
            } else {
                self.field(end)
            };

            let cr = self.input[end] == b'\r';
            self.input.advance(end + 1);
            self.scanned = 0;
            self.discard_line = false;
            self.line_dropped = false;
            if cr {
                match self.input.first() {
                    Some(b'\n') => self.input.advance(1),
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            match outcome {
                Ok(None) => continue,
                other => return other,
            }
        }
    }

    /// End of input: drop whatever is incomplete and get ready for a new stream.
    ///
    /// Per the standard, an event whose closing blank line never arrived is not
    /// dispatched, so call this only after [`next_event`](Self::next_event) returned
    /// `Ok(None)`. Returns whether anything was discarded. The last event id and the
    /// reconnection time are kept: a client carries them into its next connection.
    pub fn finish(&mut self) -> bool {
        let discarded = !self.input.is_empty()
            || self.line_dropped
            || self.size > 0
            || !self.data.is_empty()
            || self.event.is_some()
            || self.id.is_some()
            || self.skipping;
        self.input = BytesMut::new();
        self.scanned = 0;
        self.bom_checked = false;
        self.after_cr = false;
        self.discard_line = false;
        self.line_dropped = false;
        self.skipping = false;
        self.data = BytesMut::new();
        self.reset_event();
        discarded
    }

    /// The id a client would send as `Last-Event-ID`: the last `id:` field seen, kept
    /// across events (empty when none, or when the server cleared it with an empty id).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The last valid `retry:` value seen, in milliseconds, whether or not its block
    /// was dispatched as an event.
    pub fn reconnection_time(&self) -> Option<u64> {
        self.reconnection_time
    }

    /// Bytes currently held (input not yet consumed plus the event under construction).
    ///
    /// After [`next_event`](Self::next_event) returned `Ok(None)` this is at most twice
    /// the bound plus a few bytes: the event, and an unfinished `id:` or `event:` line
    /// that may still replace the one the event holds.
    pub fn buffered_bytes(&self) -> usize {
        self.input.len() + self.size
    }

    /// No line break in the input: keep the partial line only while it may still count.
    ///
    /// Whatever the chunking, the outcome must be the one of reading the whole line at
    /// once, so a partial line is judged only on what its final form cannot change:
    /// once its field is known to be ignored (a comment, an unknown name, a `retry:`
    /// that can no longer be a `u64`) its bytes go; once its value alone is larger than
    /// what the event may still hold (the decoded text is never shorter than the raw
    /// bytes) the event overflows exactly as the complete line would make it.
    fn hold_partial_line(&mut self) -> Result<(), SseError> {
        if self.input.is_empty() {
            // One huge chunk must not pin its buffer for the rest of the stream.
            if self.input.capacity() > 2 * self.max.max(1 << 13) {
                self.input = BytesMut::new();
            }
            return Ok(());
        }
        self.scanned = self.input.len();
        let verdict = if self.discard_line || self.skipping {
            Partial::Ignored
        } else {
            self.judge_partial()
        };
        match verdict {
            Partial::Pending => Ok(()),
            Partial::Ignored => {
                self.drop_partial_line();
                Ok(())
            }
            Partial::Overflow => {
                self.drop_partial_line();
                // The rest of the event is dropped too, as `field` does for a whole line.
                self.skipping = true;
                Err(self.overflow())
            }
        }
    }

    fn drop_partial_line(&mut self) {
        self.input.clear();
        self.scanned = 0;
        self.discard_line = true;
        self.line_dropped = true;
    }

    /// What the unfinished line `input[..]` will do once complete, as far as known.
    fn judge_partial(&self) -> Partial {
        let line = &self.input[..];
        let Some(colon) = memchr::memchr(b':', line) else {
            // Without a colon the whole line is the name: it can still become a field
            // we read only while it is a prefix of one.
            return if FIELDS.iter().any(|f| f.starts_with(line)) {
                Partial::Pending
            } else {
                Partial::Ignored
            };
        };
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let held = |old: usize| self.size - old + value.len();
        let over = match &line[..colon] {
            b"data" => self.size + value.len() + 1 > self.max,
            b"event" => held(self.event.as_ref().map_or(0, String::len)) > self.max,
            b"id" => held(self.id.as_ref().map_or(0, String::len)) > self.max,
            b"retry" => {
                return if value.len() <= MAX_RETRY_DIGITS && value.iter().all(u8::is_ascii_digit) {
                    Partial::Pending
                } else {
                    Partial::Ignored
                };
            }
            _ => return Partial::Ignored,
        };
        if over { Partial::Overflow } else { Partial::Pending }
    }

    /// Interpret the complete line `input[..end]` as a field.
    fn field(&mut self, end: usize) -> Result<Option<SseEvent>, SseError> {
        let line = &self.input[..end];
        let (name, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                let text = lossy(value);
                self.size += text.len() + 1;
                if self.size <= self.max {
                    // The line and its newline in one allocation, not two.
                    self.data.reserve(text.len() + 1);
                    self.data.extend_from_slice(text.as_bytes());
                    self.data.extend_from_slice(b"\n");
                }
            }
            b"event" => {
                let text = lossy(value).into_owned();
                self.size += text.len();
                self.size -= self.event.as_ref().map_or(0, String::len);
                self.event = Some(text);
            }
            // An id too long for the event overflows even if it holds NUL: a partial line
            // cannot wait for the NUL that might come (see `hold_partial_line`).
            b"id" if self.size - self.id.as_ref().map_or(0, String::len) + value.len() > self.max => {
                self.size = self.max + 1;
            }
            // An id holding NUL is ignored entirely, as the standard says.
            b"id" if !value.contains(&0) => {
                let text = lossy(value).into_owned();
                self.size += text.len();
                self.size -= self.id.as_ref().map_or(0, String::len);
                self.last_event_id.clone_from(&text);
                self.id = Some(text);
            }
            b"retry" => {
                if let Some(ms) = parse_digits(value) {
                    self.retry = Some(ms);
                    self.reconnection_time = Some(ms);
                }
            }
            // Comments (empty name) and unknown fields are ignored.
            _ => {}
        }
        if self.size > self.max {
            self.skipping = true;
            return Err(self.overflow());
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        if self.data.is_empty() {
            self.reset_event();
            return None;
        }
        // Every data line added a trailing LF; the standard drops the last one.
        self.data.truncate(self.data.len() - 1);
        let event = SseEvent {
            event: self.event.take().filter(|e| !e.is_empty()),
            data: self.data.split().freeze(),
            id: self.id.take(),
            retry: self.retry.take(),
        };
        self.size = 0;
        Some(event)
    }

    fn overflow(&mut self) -> SseError {
        self.reset_event();
        SseError::EventTooLarge { limit: self.max }
    }

    fn reset_event(&mut self) {
        self.data.clear();
        self.event = None;
        self.id = None;
        self.retry = None;
        self.size = 0;
    }
}

impl std::fmt::Debug for SseParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseParser")
            .field("max_event_bytes", &self.max)
            .field("buffered_bytes", &self.buffered_bytes())
            .field("last_event_id", &self.last_event_id)
            .finish_non_exhaustive()
    }
}

/// At most [`MAX_RETRY_DIGITS`] ASCII digits, so an unfinished `retry:` line is judged
/// from its first bytes whatever follows (leading zeros included).
fn parse_digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > MAX_RETRY_DIGITS {
        return None;
    }
    value.iter().try_fold(0u64, |n, &c| {
        if c.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        } else {
            None
        }
    })
}

/// `String::from_utf8_lossy`, with the valid case (nearly every field) checked first:
/// the plain check is several times cheaper than the lossy walk, and gives the same text.
fn lossy(value: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(value),
    }
}

#[cfg(test)]
mod tests;
