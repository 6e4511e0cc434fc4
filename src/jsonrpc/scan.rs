//! A one-pass scan of the message shapes clients actually send, in front of the
//! serde_json reading of [`Envelope`]: it walks the bytes once, with no visitor
//! machinery, and borrows every value it keeps.
//!
//! It only ever answers for bodies it can judge with certainty, and then answers
//! exactly what serde_json would. Anything else (an escape in a string, a number that is
//! not a short integer, a duplicated envelope member, deep nesting, any syntax error, a
//! member of an unexpected type where serde_json would refuse it) makes it give way, and
//! serde_json reads the body and says what is wrong with it, as it always did.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::{Envelope, Lenient, MetaPeek, ParamsPeek, Text};

/// Far below serde_json's own recursion limit, so the scan never accepts what that
/// limit would refuse.
const MAX_DEPTH: usize = 64;

/// Integers of at most this many digits read the same as any number type serde_json
/// might give them; longer ones, fractions and exponents are left to serde_json, which
/// refuses some of them (`1e999` where a text member is read).
const MAX_DIGITS: usize = 15;

/// The envelope of `raw`, or `None` when serde_json must judge it.
pub(super) fn envelope(raw: &str) -> Option<Envelope<'_>> {
    let mut scan = Scanner { text: raw, pos: 0 };
    let mut envelope = Envelope {
        jsonrpc: None,
        method: None,
        id: None,
        params: None,
        result: None,
        error: None,
    };
    scan.ws();
    scan.envelope(&mut envelope)?;
    scan.ws();
    (scan.pos == raw.len()).then_some(envelope)
}

/// Where the first quote, backslash or control character of `bytes` is. Eight bytes are
/// looked at per step (the classic "has a byte below n" word tricks): strings are most
/// of a message, and a byte at a time costs several times more.
fn stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH;
    let is_stop = |b: &u8| *b == b'"' || *b == b'\\' || *b < 0x20;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(chunk.try_into().expect("eight bytes"));
        let quote = below(word ^ (ONES * u64::from(b'"')), 1);
        let backslash = below(word ^ (ONES * u64::from(b'\\')), 1);
        // The word test only says where to look; the bytes decide.
        if (below(word, 0x20) | quote | backslash) != 0
            && let Some(i) = chunk.iter().position(is_stop)
        {
            return Some(offset + i);
        }
        offset += 8;
    }
    chunks.remainder().iter().position(is_stop).map(|i| offset + i)
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// After a member's value: `Some(true)` at the closing brace (consumed), `Some(false)`
    /// after a comma, `None` on anything else.
    fn next_member(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let byte = self.peek()?;
        self.pos += 1;
        match byte {
            b',' => {
                self.ws();
                Some(false)
            }
            _ if byte == close => Some(true),
            _ => None,
        }
    }

    /// A string with neither escapes nor control characters: its contents.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let bytes = &self.text.as_bytes()[start..];
        let len = stop(bytes)?;
        if bytes[len] != b'"' {
            return None;
        }
        self.pos = start + len + 1;
        Some(&self.text[start..start + len])
    }

    /// `"key":`, leaving the position at the value.
    fn key(&mut self) -> Option<&'a str> {
        let key = self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(key)
    }

    /// Opens an object: `Some(true)` when it is empty (and already closed).
    fn open(&mut self, depth: usize) -> Option<bool> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(true);
        }
        Some(false)
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let rest = &self.text.as_bytes()[self.pos..];
        rest.starts_with(word.as_bytes()).then(|| self.pos += word.len())
    }

    fn number(&mut self) -> Option<()> {
        if self.peek()? == b'-' {
            self.pos += 1;
        }
        let start = self.pos;
        let digits = self.text.as_bytes()[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let leading_zero = digits > 1 && self.text.as_bytes()[start] == b'0';
        if digits == 0 || digits > MAX_DIGITS || leading_zero {
            return None;
        }
        self.pos += digits;
        // A fraction or an exponent is left for serde_json: the caller's check of what
        // follows the value refuses it.
        Some(())
    }

    /// Any value, checked and skipped.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => {
                if self.open(depth)? {
                    return Some(());
                }
                loop {
                    self.key()?;
                    self.value(depth + 1)?;
                    if self.next_member(b'}')? {
                        return Some(());
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.pos += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.pos += 1;
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    if self.next_member(b']')? {
                        return Some(());
                    }
                }
            }
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// Whether the value here is `null` (then consumed).
    fn null(&mut self) -> bool {
        self.peek() == Some(b'n') && self.literal("null").is_some()
    }

    /// Any value, as raw JSON.
    fn raw(&mut self, depth: usize) -> Option<&'a RawValue> {
        let start = self.pos;
        self.value(depth)?;
        serde_json::from_str(&self.text[start..self.pos]).ok()
    }

    /// `Option<&RawValue>`: `null` is none.
    fn optional_raw(&mut self, depth: usize) -> Option<Option<&'a RawValue>> {
        if self.null() {
            return Some(None);
        }
        self.raw(depth).map(Some)
    }

    /// `Option<Cow<str>>` of the envelope: `null` is none, any type but a string is
    /// serde_json's error to report.
    fn optional_str(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null() {
            return Some(None);
        }
        self.string().map(|s| Some(Cow::Borrowed(s)))
    }

    /// `Option<IgnoredAny>`: `null` is none.
    fn ignored(&mut self, depth: usize) -> Option<Option<IgnoredAny>> {
        if self.null() {
            return Some(None);
        }
        self.value(depth).map(|()| Some(IgnoredAny))
    }

    /// A lenient text: a string is itself, any other value is absent.
    fn text(&mut self, depth: usize) -> Option<Text<'a>> {
        if self.peek()? == b'"' {
            return self.string().map(|s| Text(Some(Cow::Borrowed(s))));
        }
        self.value(depth).map(|()| Text(None))
    }

    /// Fills `envelope` in place: the peeked structs are large, and moving them out of
    /// every nested call would cost more than the scan itself.
    fn envelope(&mut self, envelope: &mut Envelope<'a>) -> Option<()> {
        if self.open(0)? {
            return Some(());
        }
        let mut seen = 0u8;
        loop {
            let key = self.key()?;
            let bit = match key {
                "jsonrpc" => 1,
                "method" => 2,
                "id" => 4,
                "params" => 8,
                "result" => 16,
                "error" => 32,
                _ => 0,
            };
            // A repeated member is serde_json's "duplicate field" to report.
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match key {
                "jsonrpc" => envelope.jsonrpc = self.optional_str()?,
                "method" => envelope.method = self.optional_str()?,
                "id" => envelope.id = Some(self.raw(1)?),
                "params" => self.params(&mut envelope.params)?,
                "result" => envelope.result = self.ignored(1)?,
                "error" => envelope.error = self.ignored(1)?,
                _ => self.value(1)?,
            }
            if self.next_member(b'}')? {
                return Some(());
            }
        }
    }

    /// `Option<Lenient<ParamsPeek>>`.
    fn params(&mut self, slot: &mut Option<Lenient<ParamsPeek<'a>>>) -> Option<()> {
        if self.null() {
            *slot = None;
            return Some(());
        }
        let params = &mut slot.insert(Lenient(ParamsPeek::default())).0;
        if self.peek()? != b'{' {
            return self.value(1);
        }
        if self.open(1)? {
            return Some(());
        }
        loop {
            // Repeats are allowed here: the last one counts, as in the serde reading.
            match self.key()? {
                "_meta" => self.meta(&mut params.meta)?,
                "name" => params.name = self.text(2)?,
                "uri" => params.uri = self.text(2)?,
                "protocolVersion" => params.protocol_version = self.text(2)?,
                "clientInfo" => params.client_info = self.optional_raw(2)?,
                "capabilities" => params.capabilities = self.optional_raw(2)?,
                _ => self.value(2)?,
            }
            if self.next_member(b'}')? {
                return Some(());
            }
        }
    }

    /// `Option<Lenient<MetaPeek>>`, unwrapped.
    fn meta(&mut self, slot: &mut Option<MetaPeek<'a>>) -> Option<()> {
        if self.null() {
            *slot = None;
            return Some(());
        }
        let meta = slot.insert(MetaPeek::default());
        if self.peek()? != b'{' {
            return self.value(2);
        }
        if self.open(2)? {
            return Some(());
        }
        loop {
            match self.key()? {
                "io.modelcontextprotocol/protocolVersion" => meta.protocol_version = self.text(3)?,
                "io.modelcontextprotocol/clientCapabilities" => meta.client_capabilities = self.optional_raw(3)?,
                "traceparent" => meta.traceparent = self.text(3)?,
                "tracestate" => meta.tracestate = self.text(3)?,
                "baggage" => meta.baggage = self.text(3)?,
                _ => self.value(3)?,
            }
            if self.next_member(b'}')? {
                return Some(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{from_envelope, serde_envelope};
    use super::*;

    const SEEDS: &[&str] = &[
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#,
        r#" { "jsonrpc" : "2.0" , "method" : "notifications/initialized" , "params" : null } "#,
        r#"{"jsonrpc":"2.0","id":"a-1","result":{"content":[{"type":"text","text":"x"}],"isError":false}}"#,
        r#"{"jsonrpc":"2.0","id":-7,"error":{"code":-32601,"message":"no"}}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"ping","result":null,"error":null}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///a","name":7,"_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"a=b","baggage":"k=v","x":[1,true,false,null,{}]}}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"m","params":[1,2,{"a":[]}],"extra":{"deep":[[[]]]}}"#,
        r#"{"jsonrpc":"2.0","id":5,"method":"m","params":{"name":"a","name":null,"_meta":"text","capabilities":null}}"#,
        r#"{"jsonrpc":"2.0","id":6,"method":"m","params":{"_meta":{"io.modelcontextprotocol/clientCapabilities":null}}}"#,
        r#"{}"#,
    ];

    /// The reference: what serde_json alone makes of `raw`.
    fn reference(raw: &str) -> String {
        format!("{:?}", serde_envelope(raw).and_then(from_envelope))
    }

    /// Whenever the scan answers, it answers what serde_json does.
    fn agrees(raw: &str) -> bool {
        match envelope(raw) {
            Some(env) => {
                assert_eq!(format!("{:?}", from_envelope(env)), reference(raw), "{raw}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn stop_finds_the_first_stop_byte_wherever_it_is() {
        for len in 0..40 {
            for at in 0..len {
                for byte in [b'"', b'\\', 0x00, 0x1f] {
                    let mut text = vec![b'a'; len];
                    text[at] = byte;
                    // Bytes that sit next to the stops in value must not count.
                    for (i, b) in text.iter_mut().enumerate() {
                        if i != at && i % 3 == 0 {
                            *b = [b' ', b'!', b'#', b'[', b']', 0x7f, 0xc3][i % 7];
                        }
                    }
                    assert_eq!(stop(&text), Some(at), "{text:?}");
                }
            }
            assert_eq!(stop(&vec![b'z'; len]), None);
        }
    }

    #[test]
    fn answers_the_common_shapes() {
        for seed in SEEDS {
            assert!(agrees(seed), "the scan gave way on {seed}");
        }
    }

    #[test]
    fn agrees_with_serde_json_on_every_nearby_body() {
        const INSERTS: &[&str] = &[
            "\"",
            "\\",
            ",",
            "}",
            "{",
            "]",
            "[",
            ":",
            "0",
            "1",
            "-",
            ".",
            "e",
            " ",
            "\n",
            "\u{1}",
            "n",
            "null",
            "é",
            r#""id":1,"#,
            r#""method":"x","#,
            r#""jsonrpc":"2.0","#,
            "1e999",
            "12345678901234567890",
        ];
        for seed in SEEDS {
            for cut in (0..=seed.len()).filter(|&i| seed.is_char_boundary(i)) {
                let (head, tail) = seed.split_at(cut);
                agrees(head);
                if let Some(next) = tail.chars().next() {
                    agrees(&format!("{head}{}", &tail[next.len_utf8()..]));
                }
                for insert in INSERTS {
                    agrees(&format!("{head}{insert}{tail}"));
                }
            }
        }
    }

    #[test]
    fn gives_way_where_serde_json_must_judge() {
        for raw in [
            r#"{"jsonrpc":"2.0","id":1,"method":"a\"b"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"name":1e999}}"#,
            r#"{"jsonrpc":"2.0","id":01,"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m"} x"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m",}"#,
            r#"{"jsonrpc":true,"id":1,"method":"m"}"#,
            r#"{"jsonrpc":2}"#,
        ] {
            assert!(envelope(raw).is_none(), "{raw}");
        }
        let deep = format!(
            r#"{{"jsonrpc":"2.0","method":"m","x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(envelope(&deep).is_none());
    }
}
