//! Modern answers → the legacy shape: the final answer to a client's request, the
//! notifications before it, and the shape of a result (complete, or input required).
//!
//! What is removed from results, and why:
//! - `resultType` (2026-07-28 `schema.ts`, `Result`: required there, unknown before;
//!   only `"complete"` results reach a legacy client — `input_required` becomes an MRTR
//!   round, [`AnswerShape::InputRequired`]);
//! - `ttlMs`, `cacheScope` (`CacheableResult`, 2026-07-28 only);
//! - `_meta["io.modelcontextprotocol/serverInfo"]` (`ResultMetaObject`, 2026-07-28;
//!   a legacy client learned the server's identity at `initialize`);
//! - in `tools/call`, a `structuredContent` that is not an object, and in
//!   `tools/list`, an `outputSchema` whose root `type` is not `"object"`: 2026-07-28
//!   loosened both (changelog, SEP-2106), while 2025-06-18 and 2025-11-25 require an
//!   object there, so a client validating against its own schema would reject the
//!   whole answer. The `content` blocks still carry the result.
//!
//! Kept: every member newer than the client's own legacy revision that the legacy
//! schemas still admit (`structuredContent` objects, `title`, `outputSchema`,
//! `icons`, …). No result, tool or content type of 2025-03-26, 2025-06-18 or
//! 2025-11-25 sets `additionalProperties: false` (their `schema.json`), so an extra
//! member is valid for every legacy client, while dropping it would lose what a newer
//! client library can use.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::mrtr::InputRequest;
use super::raw::{self, RawObject};
use super::{META_SERVER_INFO, META_SUBSCRIPTION_ID, TranslateError};

/// The request a modern message answers, as the legacy client sent it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AnswerTo<'a> {
    /// The legacy method (decides the per-method mappings).
    pub(crate) method: &'a str,
    /// The client's id: the final answer carries it even when the inner service
    /// answered a retry under another id.
    pub(crate) client_id: &'a RawValue,
}

/// What a 2026-07-28 result asks of its receiver.
#[derive(Debug, Clone)]
pub(crate) enum AnswerShape {
    /// The final result (`resultType` `"complete"`, or absent as from an older server).
    Complete,
    /// An `InputRequiredResult`: answer the input requests, then retry.
    InputRequired(InputRequired),
}

/// The parts of an `InputRequiredResult` a round needs.
#[derive(Debug, Clone)]
pub(crate) struct InputRequired {
    /// The `inputRequests` entries, in the server's order.
    pub(crate) input_requests: Vec<InputRequest>,
    /// The exact `requestState` token (a JSON string, never unescaped or parsed), to
    /// echo in the retry; `None` when the server sent none (and the retry must then
    /// carry none).
    pub(crate) request_state: Option<Box<RawValue>>,
}

/// A modern message, translated for the legacy client.
#[derive(Debug, Clone)]
pub(crate) enum LegacyMessage {
    /// The final answer to the client's request, under its id.
    Answer(Bytes),
    /// A notification to relay (progress, log message, change notification).
    Notification(Bytes),
    /// The inner service needs input: run an MRTR round ([`super::mrtr`]).
    InputRequired(InputRequired),
    /// Nothing to relay (the listen stream's acknowledgment, or a request on a
    /// response stream, which 2026-07-28 forbids and no legacy client expects).
    Drop,
}

/// The methods that may answer `input_required` (2026-07-28 `mrtr.mdx`, "Supported
/// Requests").
const MRTR_METHODS: [&str; 3] = ["tools/call", "resources/read", "prompts/get"];

/// The shape of `result`, a 2026-07-28 result object answering `method`.
pub(crate) fn shape(result: &RawObject<'_>, method: &str) -> Result<AnswerShape, TranslateError> {
    if result.get("resultType").is_none() {
        return Ok(AnswerShape::Complete);
    }
    match result.get_str("resultType").as_deref() {
        Some("complete") => return Ok(AnswerShape::Complete),
        Some("input_required") => {}
        _ => return Err(TranslateError::UnknownResultType),
    }
    if !MRTR_METHODS.contains(&method) {
        return Err(TranslateError::InputRequiredNotAllowed);
    }
    let requests = result
        .object("inputRequests")
        .map_err(|()| TranslateError::InvalidInputRequired)?;
    let input_requests = match &requests {
        Some(map) => super::mrtr::input_requests(map)?,
        None => Vec::new(),
    };
    let request_state = match result.get("requestState") {
        None => None,
        Some(state) if state.get().trim_start().starts_with('"') => Some(state.to_owned()),
        Some(_) => return Err(TranslateError::InvalidInputRequired),
    };
    if requests.is_none() && request_state.is_none() {
        // The spec requires at least one of the two.
        return Err(TranslateError::InvalidInputRequired);
    }
    Ok(AnswerShape::InputRequired(InputRequired {
        input_requests,
        request_state,
    }))
}

/// Translate one message the inner service sent in answer to `to`.
pub(crate) fn to_legacy(message: &[u8], to: &AnswerTo<'_>) -> Result<LegacyMessage, TranslateError> {
    let mut obj = RawObject::from_slice(message)?;
    if obj.contains("method") {
        if obj.contains("id") {
            return Ok(LegacyMessage::Drop);
        }
        return notification(obj);
    }
    if obj.contains("result") {
        let mut result = obj.object("result").ok().flatten().ok_or(TranslateError::NotJsonRpc)?;
        if let AnswerShape::InputRequired(input) = shape(&result, to.method)? {
            return Ok(LegacyMessage::InputRequired(input));
        }
        clean_result(&mut result, to);
        obj.set_object("result", &result);
    } else if obj.contains("error") {
        let error = obj.object("error").ok().flatten().ok_or(TranslateError::NotJsonRpc)?;
        let mapped = super::http_error::legacy_error(&error, to.method, true);
        obj.set_object("error", &mapped);
    } else {
        return Err(TranslateError::NotJsonRpc);
    }
    obj.set("id", Cow::Owned(to.client_id.to_owned()));
    Ok(LegacyMessage::Answer(obj.to_bytes()))
}

/// A notification for the legacy client, without the 2026-07-28 subscription tag.
fn notification(mut obj: RawObject<'_>) -> Result<LegacyMessage, TranslateError> {
    let method = obj.get_str("method").ok_or(TranslateError::NotJsonRpc)?;
    if method == "notifications/subscriptions/acknowledged" {
        // The acknowledgment of the layer's own listen stream; legacy has no such
        // message (it learned what it gets at `initialize`).
        return Ok(LegacyMessage::Drop);
    }
    if let Ok(Some(mut params)) = obj.object("params") {
        // `subscriptionId` names the layer's listen request, an id the legacy client
        // never sent; the GET stream is its correlation.
        if strip_meta(&mut params, &[META_SUBSCRIPTION_ID]) {
            if params.is_empty() {
                // `{}` is as valid, but the notification was sent without params.
                obj.remove("params");
            } else {
                obj.set_object("params", &params);
            }
        }
    }
    Ok(LegacyMessage::Notification(obj.to_bytes()))
}

/// Remove `keys` from `obj._meta`, and `_meta` itself when that empties it; whether
/// anything changed.
fn strip_meta(obj: &mut RawObject<'_>, keys: &[&str]) -> bool {
    let Ok(Some(mut meta)) = obj.object("_meta") else {
        return false;
    };
    let mut changed = false;
    for key in keys {
        changed |= meta.remove(key).is_some();
    }
    if !changed {
        return false;
    }
    if meta.is_empty() {
        obj.remove("_meta");
    } else {
        obj.set_object("_meta", &meta);
    }
    true
}

/// Remove from a complete result what the legacy schemas do not admit.
fn clean_result(result: &mut RawObject<'_>, to: &AnswerTo<'_>) {
    result.remove("resultType");
    result.remove("ttlMs");
    result.remove("cacheScope");
    strip_meta(result, &[META_SERVER_INFO]);
    if to.method == "tools/call" && result.get("structuredContent").is_some_and(|v| !raw::is_object(v)) {
        result.remove("structuredContent");
    }
    if to.method == "tools/list"
        && let Some(cleaned) = result.borrowed("tools").and_then(clean_tools)
    {
        result.set("tools", Cow::Owned(cleaned));
    }
}

/// `tools` with every `outputSchema` a legacy client cannot accept removed; `None`
/// when nothing changes (or `tools` is not an array, which is left to the client).
fn clean_tools(tools: &RawValue) -> Option<Box<RawValue>> {
    let list: Vec<&RawValue> = serde_json::from_str(tools.get()).ok()?;
    let mut changed = false;
    let mut out = String::with_capacity(tools.get().len());
    out.push('[');
    for (i, tool) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match RawObject::from_raw(tool) {
            Some(mut obj) if obj.get("outputSchema").is_some_and(|s| !object_schema(s)) => {
                obj.remove("outputSchema");
                changed = true;
                out.push_str(&obj.to_json());
            }
            _ => out.push_str(tool.get()),
        }
    }
    out.push(']');
    changed.then(|| RawValue::from_string(out).ok()).flatten()
}

/// Whether `schema` is a JSON Schema object whose root `type` is `"object"`.
fn object_schema(schema: &RawValue) -> bool {
    RawObject::from_raw(schema).is_some_and(|s| s.get_str("type").as_deref() == Some("object"))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn translate(message: Value, method: &str, client_id: &str) -> Result<LegacyMessage, TranslateError> {
        let id = RawValue::from_string(client_id.to_owned()).unwrap();
        to_legacy(message.to_string().as_bytes(), &AnswerTo { method, client_id: &id })
    }

    fn answer(message: Value, method: &str, client_id: &str) -> Value {
        match translate(message, method, client_id).unwrap() {
            LegacyMessage::Answer(bytes) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("not an answer: {other:?}"),
        }
    }

    #[test]
    fn complete_results_lose_2026_fields_and_take_the_client_id() {
        let modern = json!({"jsonrpc": "2.0", "id": "retry-2", "result": {
            "resultType": "complete", "ttlMs": 60000, "cacheScope": "private",
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "s", "version": "1"}},
            "resources": [{"uri": "file:///a", "name": "a"}]
        }});
        let legacy = answer(modern, "resources/list", "7");
        assert_eq!(
            legacy,
            json!({"jsonrpc": "2.0", "id": 7, "result": {"resources": [{"uri": "file:///a", "name": "a"}]}})
        );
    }

    #[test]
    fn other_meta_is_kept() {
        let modern = json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "complete", "content": [],
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "s", "version": "1"}, "com.example/x": 1}}});
        let legacy = answer(modern, "tools/call", "1");
        assert_eq!(legacy["result"]["_meta"], json!({"com.example/x": 1}));
    }

    #[test]
    fn absent_result_type_is_complete() {
        let modern = json!({"jsonrpc": "2.0", "id": 1, "result": {}});
        assert_eq!(
            answer(modern, "ping", "\"p\""),
            json!({"jsonrpc": "2.0", "id": "p", "result": {}})
        );
    }

    #[test]
    fn big_integer_ids_and_numbers_survive() {
        let message = br#"{"jsonrpc":"2.0","id":5,"result":{"resultType":"complete","content":[],"structuredContent":{"n":123456789012345678901234567890}}}"#;
        let id = RawValue::from_string("98765432109876543210987654321".into()).unwrap();
        let to = AnswerTo {
            method: "tools/call",
            client_id: &id,
        };
        let LegacyMessage::Answer(bytes) = to_legacy(message, &to).unwrap() else {
            panic!()
        };
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(
            text,
            r#"{"jsonrpc":"2.0","id":98765432109876543210987654321,"result":{"content":[],"structuredContent":{"n":123456789012345678901234567890}}}"#
        );
    }

    #[test]
    fn non_object_structured_content_and_output_schema_are_dropped() {
        let modern = json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "complete",
            "content": [{"type": "text", "text": "[1,2]"}], "structuredContent": [1, 2]}});
        let legacy = answer(modern, "tools/call", "1");
        assert_eq!(
            legacy["result"],
            json!({"content": [{"type": "text", "text": "[1,2]"}]})
        );
        let modern = json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "complete", "content": [], "structuredContent": {"a": 1}}});
        assert_eq!(
            answer(modern, "tools/call", "1")["result"]["structuredContent"],
            json!({"a": 1})
        );

        let modern = json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "complete", "ttlMs": 0, "cacheScope": "public", "tools": [
            {"name": "a", "inputSchema": {"type": "object"}, "outputSchema": {"type": "array"}},
            {"name": "b", "inputSchema": {"type": "object"}, "outputSchema": {"type": "object", "properties": {}}},
            {"name": "c", "inputSchema": {"type": "object"}, "outputSchema": true},
            {"name": "d", "inputSchema": {"type": "object"}, "title": "D"}
        ]}});
        let legacy = answer(modern, "tools/list", "1");
        assert_eq!(
            legacy["result"],
            json!({"tools": [
                {"name": "a", "inputSchema": {"type": "object"}},
                {"name": "b", "inputSchema": {"type": "object"}, "outputSchema": {"type": "object", "properties": {}}},
                {"name": "c", "inputSchema": {"type": "object"}},
                {"name": "d", "inputSchema": {"type": "object"}, "title": "D"}
            ]})
        );
        // The per-method rules apply to their own methods only.
        let modern = json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "complete", "structuredContent": 3}});
        assert_eq!(answer(modern, "x/y", "1")["result"], json!({"structuredContent": 3}));
    }

    #[test]
    fn error_codes_move_back() {
        let not_found = json!({"jsonrpc": "2.0", "id": 5, "error": {"code": -32602, "message": "Resource not found", "data": {"uri": "file:///nonexistent.txt"}}});
        let legacy = answer(not_found.clone(), "resources/read", "5");
        assert_eq!(
            legacy["error"],
            json!({"code": -32002, "message": "Resource not found", "data": {"uri": "file:///nonexistent.txt"}})
        );
        // Elsewhere -32602 is still invalid params.
        assert_eq!(answer(not_found, "tools/call", "5")["error"]["code"], -32602);
        // Tool errors and application codes pass as they are.
        let app = json!({"jsonrpc": "2.0", "id": 5, "error": {"code": -1, "message": "User rejected"}});
        assert_eq!(
            answer(app, "tools/call", "\"x\"")["error"],
            json!({"code": -1, "message": "User rejected"})
        );
        // Transport codes the layer caused become internal errors.
        let mismatch =
            json!({"jsonrpc": "2.0", "id": 5, "error": {"code": -32020, "message": "Header mismatch: secret detail"}});
        assert_eq!(
            answer(mismatch, "tools/call", "5")["error"],
            json!({"code": -32603, "message": "Internal error"})
        );
    }

    #[test]
    fn unusable_error_objects_become_internal_errors() {
        for error in [
            json!({"code": "x", "message": "m"}),
            json!({"message": "m"}),
            json!({"code": 1.5}),
        ] {
            let modern = json!({"jsonrpc": "2.0", "id": 1, "error": error});
            assert_eq!(
                answer(modern, "tools/call", "1")["error"],
                json!({"code": -32603, "message": "Internal error"})
            );
        }
    }

    #[test]
    fn notifications_lose_the_subscription_tag() {
        let n = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
            "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": 1}, "uri": "file:///project/config.json"}});
        let LegacyMessage::Notification(bytes) = translate(n, "tools/call", "1").unwrap() else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "file:///project/config.json"}})
        );
        let n = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "p", "progress": 1, "_meta": {"k": 1}}});
        let LegacyMessage::Notification(bytes) = translate(n.clone(), "tools/call", "1").unwrap() else {
            panic!()
        };
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), n);
        let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged", "params": {"notifications": {}}});
        assert!(matches!(
            translate(ack, "tools/call", "1").unwrap(),
            LegacyMessage::Drop
        ));
        let request = json!({"jsonrpc": "2.0", "id": 9, "method": "sampling/createMessage", "params": {}});
        assert!(matches!(
            translate(request, "tools/call", "1").unwrap(),
            LegacyMessage::Drop
        ));
    }

    #[test]
    fn shape_reads_the_result_type() {
        let shape_of = |text: &str, method: &str| shape(&RawObject::from_slice(text.as_bytes()).unwrap(), method);
        assert!(matches!(shape_of(r#"{}"#, "tools/list"), Ok(AnswerShape::Complete)));
        assert!(matches!(
            shape_of(r#"{"resultType":"complete"}"#, "tools/list"),
            Ok(AnswerShape::Complete)
        ));
        // Escapes spell the same string.
        assert!(matches!(
            shape_of(r#"{"resultType":"\u0063omplete"}"#, "x"),
            Ok(AnswerShape::Complete)
        ));
        assert!(matches!(
            shape_of(
                r#"{"resultType":"input_required","requestState":"s"}"#,
                "resources/read"
            ),
            Ok(AnswerShape::InputRequired(_))
        ));
        assert_eq!(
            shape_of(r#"{"resultType":null}"#, "x").err(),
            Some(TranslateError::UnknownResultType)
        );
    }

    #[test]
    fn input_required_is_classified() {
        let modern = json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "input_required",
            "inputRequests": {"github_login": {"method": "elicitation/create", "params": {"mode": "form", "message": "m", "requestedSchema": {"type": "object"}}}},
            "requestState": "AEAD\u{0}-protected blob"}});
        let LegacyMessage::InputRequired(InputRequired {
            input_requests,
            request_state,
        }) = translate(modern, "tools/call", "1").unwrap()
        else {
            panic!()
        };
        assert_eq!(input_requests.len(), 1);
        assert_eq!(input_requests[0].key, "github_login");
        assert_eq!(input_requests[0].method, "elicitation/create");
        // The token is kept as sent, escapes included.
        assert_eq!(request_state.unwrap().get(), r#""AEAD\u0000-protected blob""#);
        // State only (load shedding).
        let modern =
            json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "input_required", "requestState": "s"}});
        let LegacyMessage::InputRequired(InputRequired {
            input_requests,
            request_state,
        }) = translate(modern, "prompts/get", "1").unwrap()
        else {
            panic!()
        };
        assert!(input_requests.is_empty());
        assert_eq!(request_state.unwrap().get(), r#""s""#);
    }

    #[test]
    fn malformed_answers_are_errors() {
        use TranslateError::*;
        let cases = [
            (
                json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "input_required"}}),
                "tools/call",
                InvalidInputRequired,
            ),
            (
                json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "input_required", "requestState": 5}}),
                "tools/call",
                InvalidInputRequired,
            ),
            (
                json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "input_required", "inputRequests": []}}),
                "tools/call",
                InvalidInputRequired,
            ),
            (
                json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "input_required", "requestState": "s"}}),
                "tools/list",
                InputRequiredNotAllowed,
            ),
            (
                json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "task"}}),
                "tools/call",
                UnknownResultType,
            ),
            (
                json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": 1}}),
                "tools/call",
                UnknownResultType,
            ),
            (
                json!({"jsonrpc": "2.0", "id": 1, "result": 5}),
                "tools/call",
                NotJsonRpc,
            ),
            (
                json!({"jsonrpc": "2.0", "id": 1, "error": "x"}),
                "tools/call",
                NotJsonRpc,
            ),
            (json!({"jsonrpc": "2.0", "id": 1}), "tools/call", NotJsonRpc),
            (json!({"jsonrpc": "2.0", "method": 4}), "tools/call", NotJsonRpc),
            (json!([1]), "tools/call", NotJson),
        ];
        for (message, method, want) in cases {
            assert_eq!(translate(message.clone(), method, "1").err(), Some(want), "{message}");
        }
        assert_eq!(UnknownResultType.code(), -32603);
    }
}
