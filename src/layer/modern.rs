//! Opt-in validation of 2026-07-28 requests (`strict_modern_headers`): the request
//! metadata headers must be present and agree with the body.

use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use super::service::{Answer, Handler};
use crate::ProtocolVersion;
use crate::headers::{MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION};
use crate::headers::{MCP_SESSION_ID, X_ACCEL_BUFFERING};
use crate::jsonrpc::Peeked;
use crate::rejection::{Rejection, RejectionKind};
use crate::store::BoxError;
use crate::stream::McpBody;
use crate::stream::decode::{Decoder, StreamFormat};
use crate::stream::policy::set_sse_headers;
use http::HeaderMap;

/// Methods whose target is repeated in `Mcp-Name`.
const NAMED_METHODS: [&str; 3] = ["tools/call", "resources/read", "prompts/get"];

/// Check a modern request's headers against its body, in the order that gives each
/// failure its specified error: header missing (-32020), metadata missing (-32602),
/// header ≠ metadata (-32020), version unsupported (-32022), method/name headers (-32020).
pub(crate) fn validate(
    headers: &HeaderMap,
    message: &Peeked,
    supported: &[ProtocolVersion],
    supported_text: impl FnOnce() -> Vec<String>,
) -> Result<(), Rejection> {
    let id = message.id();
    let mismatch = || Rejection::new(RejectionKind::HeaderMismatch).with_id(id);
    // Compared as text: a version that is not even a date ("v999") can still agree
    // with the body, and is then unsupported (-32022), not a mismatch.
    let Some(header_version) = headers
        .get(MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        return Err(mismatch());
    };
    let meta = &message.modern;
    let Some(meta_version) = meta.protocol_version.as_deref() else {
        return Err(Rejection::new(RejectionKind::MissingRequestMeta).with_id(id));
    };
    if !meta.has_client_capabilities {
        return Err(Rejection::new(RejectionKind::MissingRequestMeta).with_id(id));
    }
    if meta_version != header_version {
        return Err(mismatch());
    }
    if !header_version
        .parse::<ProtocolVersion>()
        .is_ok_and(|v| supported.contains(&v))
    {
        return Err(Rejection::new(RejectionKind::UnsupportedModernVersion)
            .with_id(id)
            .data("supported", supported_text().into())
            .data("requested", meta_version.into()));
    }
    let method_header = headers
        .get(MCP_METHOD)
        .and_then(|v| v.to_str().ok())
        .and_then(decode_header_value);
    if method_header.is_none() || method_header.as_deref() != message.method() {
        return Err(mismatch());
    }
    if message.method().is_some_and(|m| NAMED_METHODS.contains(&m)) {
        let name_header = headers
            .get(MCP_NAME)
            .and_then(|v| v.to_str().ok())
            .and_then(decode_header_value);
        match (name_header.as_deref(), meta.name.as_deref()) {
            (Some(h), Some(b)) if h == b => {}
            _ => return Err(mismatch()),
        }
    }
    Ok(())
}

/// Header values that are not plain ASCII travel as `=?base64?<data>?=`; decode those.
/// `None` when the sentinel form is malformed.
fn decode_header_value(value: &str) -> Option<String> {
    let Some(encoded) = value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) else {
        return Some(value.to_owned());
    };
    String::from_utf8(base64_decode(encoded)?).ok()
}

/// Standard-alphabet base64 with optional padding.
fn base64_decode(input: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let trimmed = input.trim_end_matches('=');
    if input.len() - trimmed.len() > 2 || trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    for chunk in trimmed.as_bytes().chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= sextet(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

// The 2026-07-28 path of the service: validated (when strict) and passed through.
impl<S, ResBody> Handler<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    pub(super) async fn modern(self, parts: Parts, bytes: Bytes, message: Peeked) -> Answer<ResBody, S::Error> {
        if self.engine.config().strict_modern_headers {
            let engine = self.engine.clone();
            if let Err(rejection) = validate(&parts.headers, &message, &engine.config().modern_versions, || {
                engine.versions_for_modern_errors()
            }) {
                return Ok(self.reject(rejection));
            }
        }
        self.pass_through(parts, bytes).await
    }

    /// Hand a request to the inner service untouched and its answer back untouched,
    /// except that no session id ever leaves on a 2026-07-28 answer.
    pub(super) async fn pass_through(mut self, parts: Parts, bytes: Bytes) -> Answer<ResBody, S::Error> {
        self.engine.counters().modern();
        let response = self.inner.call(Request::from_parts(parts, Full::new(bytes))).await?;
        let (mut head, body) = response.into_parts();
        head.headers.remove(MCP_SESSION_ID);
        match StreamFormat::of(&head.headers).filter(|_| head.status.is_success()) {
            Some(StreamFormat::Sse) => {
                let headers = &mut head.headers;
                headers
                    .entry(X_ACCEL_BUFFERING)
                    .or_insert(HeaderValue::from_static("no"));
                headers
                    .entry(CACHE_CONTROL)
                    .or_insert(HeaderValue::from_static("no-cache"));
                Ok(Response::from_parts(head, McpBody::inner(body, None)))
            }
            Some(StreamFormat::Ndjson) => {
                // Framed as it arrives; dropping the answer still drops the inner body.
                let decoder = Decoder::new(StreamFormat::Ndjson, self.engine.config().sse.max_event_bytes);
                set_sse_headers(&mut head);
                Ok(Response::from_parts(head, McpBody::framed(body, decoder, None)))
            }
            None => Ok(Response::from_parts(head, McpBody::inner(body, None))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_sentinel() {
        assert_eq!(decode_header_value("plain").as_deref(), Some("plain"));
        assert_eq!(decode_header_value("=?base64?aGVsbG8=?=").as_deref(), Some("hello"));
        assert_eq!(decode_header_value("=?base64?aGVsbG8?=").as_deref(), Some("hello"));
        assert_eq!(decode_header_value("=?base64?5pel5pys?=").as_deref(), Some("日本"));
        assert_eq!(decode_header_value("=?base64?!!!?="), None);
        assert_eq!(decode_header_value("=?base64?a?="), None);
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm9vYg==").unwrap(), b"foob");
    }
}
