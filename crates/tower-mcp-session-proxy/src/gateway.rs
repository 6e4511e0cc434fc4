//! What the client gets when the upstream cannot answer: a gateway status with a
//! JSON-RPC error answer for the request's id, so an MCP client reports a failed
//! request rather than a broken transport. The text names the situation, never the
//! upstream's address or the transport's error (that goes to the log).

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use serde_json::value::RawValue;

use crate::body::UpstreamBody;

/// Why the upstream gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GatewayFailure {
    /// Connecting failed or the connection broke before the answer's head.
    Unreachable,
    /// No answer head within the response timeout.
    Timeout,
}

impl GatewayFailure {
    fn status(self) -> StatusCode {
        match self {
            Self::Unreachable => StatusCode::BAD_GATEWAY,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::Unreachable => "Upstream MCP server unavailable",
            Self::Timeout => "Upstream MCP server did not answer in time",
        }
    }
}

/// The id of the JSON-RPC request in `body`, as written; `null` when there is none
/// (a notification, a batch, or no JSON: the client then matches no request, as for any
/// transport-level error).
fn request_id(body: &[u8]) -> Box<RawValue> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<Box<RawValue>>,
    }
    // serde reads a struct from a JSON array by position, so only an object is read.
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    is_object
        .then(|| serde_json::from_slice::<Id>(body).ok())
        .flatten()
        .and_then(|m| m.id)
        .filter(|id| id.get() != "null")
        .unwrap_or_else(|| RawValue::from_string("null".to_owned()).expect("null is JSON"))
}

/// The answer to the request whose body was `request_body` when the upstream failed.
pub(crate) fn gateway_answer(failure: GatewayFailure, request_body: &[u8]) -> Response<UpstreamBody> {
    let id = request_id(request_body);
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": -32603, "message": failure.message()},
    });
    let mut response = Response::new(UpstreamBody::local(Bytes::from(body.to_string())));
    *response.status_mut() = failure.status();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_id_is_kept_as_written() {
        assert_eq!(request_id(br#"{"jsonrpc":"2.0","id":7,"method":"x"}"#).get(), "7");
        assert_eq!(request_id(br#"{"id":"a\/b"}"#).get(), r#""a\/b""#);
        assert_eq!(
            request_id(br#"{"id":123456789012345678901234567890}"#).get(),
            "123456789012345678901234567890"
        );
        for no_id in [
            &b"{\"method\":\"n\"}"[..],
            b"[{\"id\":1}]",
            b"not json",
            b"",
            b"{\"id\":null}",
        ] {
            assert_eq!(request_id(no_id).get(), "null");
        }
    }

    #[test]
    fn statuses_by_failure() {
        let r = gateway_answer(GatewayFailure::Unreachable, b"{}");
        assert_eq!(r.status(), 502);
        let r = gateway_answer(GatewayFailure::Timeout, b"{}");
        assert_eq!(r.status(), 504);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }
}
