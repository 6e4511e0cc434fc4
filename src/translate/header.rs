//! Header values of a translated request: `Mcp-Method` and the `Mcp-Name` encoding.
//!
//! The rule (2026-07-28 `basic/transports/streamable-http.mdx`, "Value Encoding"): a
//! value is sent as it is when it is plain header text — visible ASCII, with interior
//! spaces or tabs, nothing leading or trailing — and does not itself look like the
//! sentinel; otherwise it is sent as `=?base64?` + base64 (standard alphabet, padded)
//! of its UTF-8 bytes + `?=`.

use http::HeaderValue;

use super::TranslateError;

const PREFIX: &str = "=?base64?";
const SUFFIX: &str = "?=";

/// The `Mcp-Name` header value for the body value `name`.
pub(crate) fn name_value(name: &str) -> HeaderValue {
    let text = if needs_encoding(name) {
        let mut out = String::with_capacity(PREFIX.len() + SUFFIX.len() + name.len().div_ceil(3) * 4);
        out.push_str(PREFIX);
        base64(name.as_bytes(), &mut out);
        out.push_str(SUFFIX);
        out
    } else {
        name.to_owned()
    };
    // Both branches produce visible ASCII with interior spaces/tabs only, which
    // `HeaderValue` always accepts; the empty value is the fallback for the impossible.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Mcp-Method` header value for `method`. The sentinel encoding is defined for
/// `Mcp-Name` and `Mcp-Param-*` only, so a method that is not plain header text
/// cannot be sent.
pub(crate) fn method_value(method: &str) -> Result<HeaderValue, TranslateError> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TranslateError::MethodNotHeaderSafe);
    }
    HeaderValue::from_str(method).map_err(|_| TranslateError::MethodNotHeaderSafe)
}

/// Whether `value` must be sent in the sentinel encoding.
pub(crate) fn needs_encoding(value: &str) -> bool {
    let plain_byte = |b: u8| b.is_ascii_graphic() || b == b' ' || b == b'\t';
    let edge_space = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    let bytes = value.as_bytes();
    !bytes.iter().all(|&b| plain_byte(b))
        || edge_space(bytes.first())
        || edge_space(bytes.last())
        // A plain value that looks encoded is encoded, so decoding is unambiguous.
        || (value.starts_with(PREFIX) && value.ends_with(SUFFIX))
}

/// Append the standard, padded base64 of `input` to `out`.
fn base64(input: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(v: &str) -> String {
        name_value(v).to_str().unwrap().to_owned()
    }

    #[test]
    fn spec_encoding_examples() {
        // The table of the 2026-07-28 transport page, "Value Encoding".
        assert_eq!(name("us-west1"), "us-west1");
        assert_eq!(name("Hello, 世界"), "=?base64?SGVsbG8sIOS4lueVjA==?=");
        assert_eq!(name(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(name("line1\nline2"), "=?base64?bGluZTEKbGluZTI=?=");
        assert_eq!(name("=?base64?literal?="), "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=");
    }

    #[test]
    fn plain_names_pass_unchanged() {
        for plain in [
            "get_weather",
            "file:///projects/myapp/config.json",
            "a b",
            "a\tb",
            "?=",
            "=?base64?",
            "",
        ] {
            assert!(!needs_encoding(plain), "{plain:?}");
            assert_eq!(name(plain), plain);
        }
    }

    #[test]
    fn unsafe_names_are_encoded() {
        for bad in [
            " lead", "trail ", "\tlead", "trail\t", "nul\0", "del\x7f", "bell\x07", "cr\r", "é", "日本",
        ] {
            assert!(needs_encoding(bad), "{bad:?}");
            let v = name(bad);
            assert!(v.starts_with(PREFIX) && v.ends_with(SUFFIX), "{bad:?} → {v}");
        }
    }

    #[test]
    fn base64_lengths_and_padding() {
        let enc = |s: &[u8]| {
            let mut out = String::new();
            base64(s, &mut out);
            out
        };
        assert_eq!(enc(b""), "");
        assert_eq!(enc(b"f"), "Zg==");
        assert_eq!(enc(b"fo"), "Zm8=");
        assert_eq!(enc(b"foo"), "Zm9v");
        assert_eq!(enc(b"foob"), "Zm9vYg==");
        assert_eq!(enc(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn methods_must_be_plain() {
        assert_eq!(method_value("tools/call").unwrap(), "tools/call");
        for bad in ["", "a b", "é", "x\n", "\t"] {
            assert_eq!(
                method_value(bad).unwrap_err(),
                TranslateError::MethodNotHeaderSafe,
                "{bad:?}"
            );
        }
    }
}
