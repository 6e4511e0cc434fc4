//! 2026-07-28 errors → what a legacy client expects: JSON-RPC error codes that moved,
//! and errors carried by an HTTP status turned into a JSON-RPC error answer.
//!
//! A 2026-07-28 server answers some failures with an HTTP status and a JSON-RPC body
//! (`basic/transports/streamable-http.mdx`: 400 with -32020 header mismatch, -32021
//! missing client capability, -32022 unsupported version, -32602 missing `_meta`;
//! 404 with -32601 unknown method). A legacy client reads a non-2xx answer to its POST
//! as a transport failure, not as the answer to its request, so each becomes a
//! JSON-RPC error answer under the client's id.

use std::borrow::Cow;

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;
use serde_json::value::RawValue;

use super::raw::{self, RawObject};

/// What to send the legacy client for an HTTP error answer of the inner service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LegacyHttpError {
    /// A JSON-RPC error answer body for the client's request (status 200).
    Answer(Bytes),
    /// Forward the response as it is: 401 and 403 carry the authorization challenge
    /// (`WWW-Authenticate`), which means the same in both eras and which a legacy
    /// client must see to start or step up its OAuth flow; and a status below 400 is
    /// not an error.
    Keep,
}

/// Translate an inner HTTP error answer to the legacy request `method` with id `id`.
///
/// No text of the inner service reaches the client: messages are fixed per code,
/// and `data` is dropped except `requiredCapabilities` of -32021 (a capabilities
/// object, which tells the client what to declare). Codes:
/// - -32020 (header mismatch) and -32022 (unsupported version) → -32603: the layer
///   wrote the headers and the version, so the fault is the translation's;
/// - -32021 stays: it lies in JSON-RPC's server-error range, which legacy revisions
///   leave to implementations, and no legacy code says the same;
/// - other MCP-reserved codes (-32023 … -32099, meaningless before 2026-07-28) → -32603;
/// - every other code stays (-32601 of a 404, -32602, application codes), with the
///   per-method moves of [`legacy_code`];
/// - no JSON-RPC error body: a 4xx → -32600 (invalid request), anything else → -32603.
pub(crate) fn http_error_to_legacy(status: StatusCode, body: &[u8], id: &RawValue, method: &str) -> LegacyHttpError {
    if status.as_u16() < 400 || matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return LegacyHttpError::Keep;
    }
    let error = RawObject::from_slice(body)
        .ok()
        .and_then(|message| message.object("error").ok().flatten())
        .filter(|error| error_code(error).is_some());
    let mapped = match error {
        Some(error) => legacy_error(&error, method, false),
        None => {
            let code = if status.is_client_error() { -32600 } else { -32603 };
            fixed_error(code, None)
        }
    };
    let mut answer = RawObject::new();
    answer.set("jsonrpc", Cow::Owned(raw::raw_string("2.0")));
    answer.set("id", Cow::Owned(id.to_owned()));
    answer.set_object("error", &mapped);
    LegacyHttpError::Answer(answer.to_bytes())
}

/// The legacy code for the 2026-07-28 error `code` answering `method`.
///
/// `resources/read`: -32602 → -32002. 2026-07-28 moved "resource not found" to
/// -32602 (changelog; `server/resources.mdx`, "Error Handling"); every legacy
/// revision says -32002. The layer forwards a `resources/read` only with a string
/// `uri` and writes `_meta` itself, so an invalid-params answer to one is the
/// not-found answer.
pub(crate) fn legacy_code(code: i64, method: &str) -> i64 {
    match code {
        -32602 if method == "resources/read" => -32002,
        -32021 => -32021,
        -32099..=-32020 => -32603,
        other => other,
    }
}

/// The legacy error object for the 2026-07-28 `error` answering `method`. With
/// `keep_text` (an ordinary JSON-RPC error of the inner service, meant for the client)
/// the message and data stay unless the code was rewritten to -32603; without it
/// (a transport-level refusal) they are replaced as [`http_error_to_legacy`] says.
pub(crate) fn legacy_error<'a>(error: &RawObject<'a>, method: &str, keep_text: bool) -> RawObject<'a> {
    let Some(code) = error_code(error) else {
        return fixed_error(-32603, None);
    };
    let mapped = legacy_code(code, method);
    if mapped == -32603 && code != -32603 {
        return fixed_error(mapped, None);
    }
    if keep_text {
        let mut out = error.clone();
        if mapped != code {
            out.set_value("code", &Value::from(mapped));
        }
        return out;
    }
    let data = (mapped == -32021)
        .then(|| error.object("data").ok().flatten())
        .flatten()
        .and_then(|data| {
            data.borrowed("requiredCapabilities")
                .filter(|caps| raw::is_object(caps))
        })
        .map(|caps| {
            let mut data = RawObject::new();
            data.set("requiredCapabilities", Cow::Borrowed(caps));
            data
        });
    fixed_error(mapped, data)
}

/// The integer code of a JSON-RPC error object.
fn error_code(error: &RawObject<'_>) -> Option<i64> {
    error
        .get("code")
        .and_then(|code| serde_json::from_str::<i64>(code.get()).ok())
}

/// An error object with the fixed message of `code`.
fn fixed_error<'a>(code: i64, data: Option<RawObject<'a>>) -> RawObject<'a> {
    let message = match code {
        -32700 => "Parse error",
        -32600 => "Invalid request",
        -32601 => "Method not found",
        -32602 => "Invalid params",
        -32603 => "Internal error",
        -32002 => "Resource not found",
        -32021 => "Missing required client capability",
        _ => "Request failed",
    };
    let mut out = RawObject::new();
    out.set_value("code", &Value::from(code));
    out.set("message", Cow::Owned(raw::raw_string(message)));
    if let Some(data) = data {
        out.set_object("data", &data);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn legacy(status: u16, body: &str, id: &str, method: &str) -> Value {
        let id = RawValue::from_string(id.to_owned()).unwrap();
        match http_error_to_legacy(StatusCode::from_u16(status).unwrap(), body.as_bytes(), &id, method) {
            LegacyHttpError::Answer(bytes) => serde_json::from_slice(&bytes).unwrap(),
            LegacyHttpError::Keep => panic!("kept"),
        }
    }

    #[test]
    fn modern_400s() {
        let mismatch = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32020,"message":"Header mismatch: Mcp-Name header value 'foo' does not match body value 'bar'"}}"#;
        assert_eq!(
            legacy(400, mismatch, "1", "tools/call"),
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "Internal error"}})
        );
        let missing = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32021,"message":"Elicitation required: internal path /srv/x","data":{"requiredCapabilities":{"elicitation":{}}}}}"#;
        assert_eq!(
            legacy(400, missing, "\"a\"", "tools/call"),
            json!({"jsonrpc": "2.0", "id": "a", "error": {"code": -32021, "message": "Missing required client capability",
                "data": {"requiredCapabilities": {"elicitation": {}}}}})
        );
        let unsupported = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"Unsupported","data":{"supported":["2027-01-01"],"requested":"2026-07-28"}}}"#;
        assert_eq!(
            legacy(400, unsupported, "1", "tools/call")["error"],
            json!({"code": -32603, "message": "Internal error"})
        );
        let invalid = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Missing _meta at /x","data":{"trace":"..."}}}"#;
        assert_eq!(
            legacy(400, invalid, "1", "tools/call")["error"],
            json!({"code": -32602, "message": "Invalid params"})
        );
        assert_eq!(
            legacy(400, invalid, "1", "resources/read")["error"],
            json!({"code": -32002, "message": "Resource not found"})
        );
        let reserved = r#"{"error":{"code":-32050,"message":"future"}}"#;
        assert_eq!(legacy(400, reserved, "1", "tools/call")["error"]["code"], -32603);
    }

    #[test]
    fn not_found_and_other_statuses() {
        let unknown = r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"Method not found: x"}}"#;
        assert_eq!(
            legacy(404, unknown, "3", "x/y"),
            json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32601, "message": "Method not found"}})
        );
        let id = RawValue::from_string("12345678901234567890123".into()).unwrap();
        let LegacyHttpError::Answer(bytes) =
            http_error_to_legacy(StatusCode::NOT_FOUND, unknown.as_bytes(), &id, "x/y")
        else {
            panic!()
        };
        assert!(
            std::str::from_utf8(&bytes)
                .unwrap()
                .contains(r#""id":12345678901234567890123"#)
        );
        assert_eq!(
            legacy(404, "", "1", "x")["error"],
            json!({"code": -32600, "message": "Invalid request"})
        );
        assert_eq!(legacy(413, "too big", "1", "x")["error"]["code"], -32600);
        assert_eq!(
            legacy(500, "<html>stack trace</html>", "1", "x")["error"],
            json!({"code": -32603, "message": "Internal error"})
        );
        assert_eq!(legacy(503, "", "1", "x")["error"]["code"], -32603);
        let app = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"db password is hunter2"}}"#;
        assert_eq!(
            legacy(500, app, "1", "x")["error"],
            json!({"code": -1, "message": "Request failed"})
        );
        // Not a usable error object: treated as no JSON-RPC body.
        for body in [
            r#"{"error":{"code":"x"}}"#,
            r#"{"error":{"code":1.5}}"#,
            r#"{"error":5}"#,
            "[]",
        ] {
            assert_eq!(legacy(502, body, "1", "x")["error"]["code"], -32603, "{body}");
        }
    }

    #[test]
    fn auth_and_success_statuses_are_kept() {
        let id = RawValue::from_string("1".into()).unwrap();
        for status in [
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::OK,
            StatusCode::ACCEPTED,
        ] {
            assert_eq!(
                http_error_to_legacy(status, b"", &id, "tools/call"),
                LegacyHttpError::Keep,
                "{status}"
            );
        }
    }

    #[test]
    fn code_moves() {
        assert_eq!(legacy_code(-32602, "resources/read"), -32002);
        assert_eq!(legacy_code(-32602, "prompts/get"), -32602);
        assert_eq!(legacy_code(-32020, "x"), -32603);
        assert_eq!(legacy_code(-32021, "x"), -32021);
        assert_eq!(legacy_code(-32022, "x"), -32603);
        assert_eq!(legacy_code(-32099, "x"), -32603);
        assert_eq!(legacy_code(-32019, "x"), -32019);
        assert_eq!(legacy_code(-32000, "x"), -32000);
        assert_eq!(legacy_code(-32100, "x"), -32100);
        assert_eq!(legacy_code(42, "x"), 42);
    }
}
