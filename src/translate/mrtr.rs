//! Multi round-trip requests ↔ legacy server → client requests.
//!
//! A 2026-07-28 server that needs input answers `InputRequiredResult` with
//! `inputRequests` (sampling, elicitation, roots) and an opaque `requestState`; the
//! client retries the original request under a new id with `inputResponses` (same
//! keys) and the exact `requestState`, both members of `params`
//! (2026-07-28 `schema.ts`, `InputResponseRequestParams`; `basic/patterns/mrtr.mdx`).
//! A legacy client instead answers server → client requests. The layer turns each
//! input request into one ([`legacy_request`]), each answer into an `inputResponses`
//! entry ([`input_response`]), and retries ([`retry_request`]).

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::Value;
use serde_json::value::RawValue;

use super::TranslateError;
use super::context::LegacyContext;
use super::raw::{self, RawObject};
use crate::ProtocolVersion;
use crate::outbound::capability;

/// One entry of `inputRequests`.
#[derive(Debug, Clone)]
pub(crate) struct InputRequest {
    /// The server-assigned key; the `inputResponses` entry goes under it.
    pub(crate) key: String,
    /// `sampling/createMessage`, `elicitation/create` or `roots/list`.
    pub(crate) method: String,
    /// The request's params object, as sent.
    pub(crate) params: Option<Box<RawValue>>,
}

/// The three request kinds an input request may be (`InputRequest` in 2026-07-28
/// `schema.ts`), each of which a legacy server could send as a request of its own.
const INPUT_METHODS: [&str; 3] = ["sampling/createMessage", "elicitation/create", "roots/list"];

/// The entries of an `inputRequests` map.
pub(crate) fn input_requests(map: &RawObject<'_>) -> Result<Vec<InputRequest>, TranslateError> {
    let mut out = Vec::new();
    for (key, value) in map.last_entries() {
        let request = RawObject::from_raw(value).ok_or(TranslateError::InvalidInputRequired)?;
        let method = request.get_str("method").ok_or(TranslateError::InvalidInputRequired)?;
        if !INPUT_METHODS.contains(&method.as_str()) {
            return Err(TranslateError::UnsupportedInputRequest);
        }
        let params = request
            .object("params")
            .map_err(|()| TranslateError::InvalidInputRequired)?;
        if params.is_none() && method != "roots/list" {
            // Sampling and elicitation requests require params; roots' are optional.
            return Err(TranslateError::InvalidInputRequired);
        }
        out.push(InputRequest {
            key: key.to_owned(),
            method,
            params: params.map(|p| p.to_raw()),
        });
    }
    Ok(out)
}

/// A legacy server → client request for one input request.
#[derive(Debug, Clone)]
pub(crate) struct LegacyServerRequest {
    /// The JSON-RPC request body, under the layer-minted id.
    pub(crate) body: Bytes,
    /// The legacy capability it needs (`"sampling"`, `"elicitation"`, `"roots"`).
    pub(crate) capability: &'static str,
}

/// The legacy request for `input` under the layer-minted `id`, for the client of `ctx`.
///
/// Refused with [`TranslateError::UndeclaredCapability`] when the client did not
/// declare what it needs (the same checks as every server → client request of the
/// layer, `outbound::capability`), or its revision cannot express it: elicitation
/// came with 2025-06-18, URL mode with 2025-11-25. The 2026-07-28 server was told
/// only the capabilities the client declared, so such a request is the server's fault.
///
/// Params are kept as sent, except that elicitation is rewritten for the revision:
/// before 2025-11-25 `mode` did not exist (only form mode did), so a `"form"` mode is
/// removed; for 2025-11-25 URL mode, `elicitationId` is required there but was removed
/// in 2026-07-28, so the minted id stands in for it (unique in the session, as the
/// ids the layer mints are).
pub(crate) fn legacy_request(
    input: &InputRequest,
    id: &RawValue,
    ctx: &LegacyContext<'_>,
) -> Result<LegacyServerRequest, TranslateError> {
    let (params, capability) = legacy_params(input, &id_text(id), ctx)?;
    let mut message = RawObject::new();
    message.set("jsonrpc", Cow::Owned(raw::raw_string("2.0")));
    message.set("id", Cow::Owned(id.to_owned()));
    message.set("method", Cow::Owned(raw::raw_string(&input.method)));
    if let Some(params) = &params {
        message.set_object("params", params);
    }
    Ok(LegacyServerRequest {
        body: message.to_bytes(),
        capability,
    })
}

/// The params of the legacy request for `input` (see [`legacy_request`]) and the
/// capability it needs; `elicitation_id` stands in for a URL-mode elicitation's id.
pub(crate) fn legacy_params<'a>(
    input: &'a InputRequest,
    elicitation_id: &str,
    ctx: &LegacyContext<'_>,
) -> Result<(Option<RawObject<'a>>, &'static str), TranslateError> {
    let params_value: Option<Value> = input.params.as_ref().and_then(|p| serde_json::from_str(p.get()).ok());
    let declared = ctx.legacy_capabilities();
    if let Some(missing) = capability::missing(&input.method, params_value.as_ref(), declared.as_ref()) {
        return Err(TranslateError::UndeclaredCapability(missing));
    }
    let mut params = match &input.params {
        Some(p) => RawObject::from_raw(p).ok_or(TranslateError::InvalidInputRequired)?,
        None => RawObject::new(),
    };
    let capability = match input.method.as_str() {
        "sampling/createMessage" => "sampling",
        "roots/list" => "roots",
        _ => {
            let url_mode = params.get_str("mode").as_deref() == Some("url");
            if ctx.version < ProtocolVersion::V2025_06_18 {
                return Err(TranslateError::UndeclaredCapability("elicitation"));
            }
            if url_mode && ctx.version < ProtocolVersion::V2025_11_25 {
                return Err(TranslateError::UndeclaredCapability("elicitation.url"));
            }
            if ctx.version < ProtocolVersion::V2025_11_25 {
                params.remove("mode");
            } else if url_mode && !params.contains("elicitationId") {
                params.set("elicitationId", Cow::Owned(raw::raw_string(elicitation_id)));
            }
            "elicitation"
        }
    };
    let keep = input.params.is_some() || !params.is_empty();
    Ok((keep.then_some(params), capability))
}

/// An id as text: a string id's content, a number's digits.
fn id_text(id: &RawValue) -> String {
    serde_json::from_str::<String>(id.get()).unwrap_or_else(|_| id.get().to_owned())
}

/// What the legacy client answered one input request with.
#[derive(Debug, Clone)]
pub(crate) enum InputResponse {
    /// A result: the `inputResponses` entry, as the client sent it (`ElicitResult`,
    /// `CreateMessageResult`, `ListRootsResult` have one shape in every revision; a
    /// server ignores members it does not know).
    Result(Box<RawValue>),
    /// A JSON-RPC error (e.g. the user rejected sampling). 2026-07-28 has no way to
    /// carry an error in `inputResponses`, and a retry without the entry would only
    /// be asked again (`mrtr.mdx`, "Error Handling"), so the original request ends
    /// with [`failed_answer`] carrying this error object.
    Failed(Box<RawValue>),
}

/// The client's answer `message` to a layer-minted request.
pub(crate) fn input_response(message: &[u8]) -> Result<InputResponse, TranslateError> {
    let obj = RawObject::from_slice(message)?;
    if let Some(result) = obj.borrowed("result") {
        if !raw::is_object(result) {
            return Err(TranslateError::NotJsonRpc);
        }
        return Ok(InputResponse::Result(result.to_owned()));
    }
    let error = obj.object("error").ok().flatten().ok_or(TranslateError::NotJsonRpc)?;
    let code_ok = error
        .get("code")
        .is_some_and(|c| serde_json::from_str::<i64>(c.get()).is_ok());
    let message_ok = error.get_str("message").is_some();
    if !code_ok || !message_ok {
        return Err(TranslateError::NotJsonRpc);
    }
    Ok(InputResponse::Failed(error.to_raw()))
}

/// The final answer to the client's original request `client_id` when the client
/// failed an input request with `error`.
pub(crate) fn failed_answer(client_id: &RawValue, error: &RawValue) -> Bytes {
    let mut answer = RawObject::new();
    answer.set("jsonrpc", Cow::Owned(raw::raw_string("2.0")));
    answer.set("id", Cow::Owned(client_id.to_owned()));
    answer.set("error", Cow::Owned(error.to_owned()));
    answer.to_bytes()
}

/// The retry of `original` (the translated modern request the layer last sent):
/// same method and params, the id `new_id`, `params.inputResponses` built from
/// `responses` (key → result), and `params.requestState` set to exactly
/// `request_state` — or removed when the server sent none, as the spec requires.
/// The headers of the original request apply unchanged.
pub(crate) fn retry_request(
    original: &[u8],
    new_id: &RawValue,
    responses: &[(String, Box<RawValue>)],
    request_state: Option<&RawValue>,
) -> Result<Bytes, TranslateError> {
    let mut message = RawObject::from_slice(original)?;
    if message.get_str("method").is_none() {
        return Err(TranslateError::NotJsonRpc);
    }
    let mut params = message
        .object("params")
        .map_err(|()| TranslateError::ParamsNotObject)?
        .unwrap_or_default();
    let mut map = RawObject::new();
    for (key, value) in responses {
        map.set(key.as_str(), Cow::Borrowed(&**value));
    }
    params.set_object("inputResponses", &map);
    match request_state {
        Some(state) => params.set("requestState", Cow::Borrowed(state)),
        None => drop(params.remove("requestState")),
    }
    message.set_object("params", &params);
    message.set("id", Cow::Owned(new_id.to_owned()));
    Ok(message.to_bytes())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    fn requests(map: Value) -> Result<Vec<InputRequest>, TranslateError> {
        let text = map.to_string();
        let obj = RawObject::from_slice(text.as_bytes()).unwrap();
        input_requests(&obj)
    }

    fn ctx(version: ProtocolVersion, caps: &RawValue) -> LegacyContext<'_> {
        LegacyContext {
            version,
            client_info: None,
            client_capabilities: Some(caps),
            log_level: None,
        }
    }

    fn legacy(input: &InputRequest, version: ProtocolVersion, caps: &str) -> Result<Value, TranslateError> {
        let caps = raw(caps);
        let id = raw(r#""srv-1""#);
        let req = legacy_request(input, &id, &ctx(version, &caps))?;
        Ok(serde_json::from_slice(&req.body).unwrap())
    }

    fn spec_inputs() -> Vec<InputRequest> {
        // Raw text, not `json!`: the map's order is the server's.
        let text = r#"{
            "github_login": {"method": "elicitation/create", "params": {"mode": "form", "message": "Please provide your GitHub username",
                "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}},
            "capital_of_france": {"method": "sampling/createMessage", "params": {"messages": [{"role": "user",
                "content": {"type": "text", "text": "What is the capital of France?"}}], "systemPrompt": "You are a helpful assistant.", "maxTokens": 100}},
            "roots": {"method": "roots/list"}
        }"#;
        input_requests(&RawObject::from_slice(text.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn spec_input_requests_parse_in_order() {
        let inputs = spec_inputs();
        let keys: Vec<&str> = inputs.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["github_login", "capital_of_france", "roots"]);
        assert!(inputs[2].params.is_none());
        // A repeated key counts once, with its last value (as JSON parsers read it).
        let dup = requests(json!({})).unwrap();
        assert!(dup.is_empty());
        let text = r#"{"k":{"method":"roots/list"},"k":{"method":"sampling/createMessage","params":{"messages":[],"maxTokens":1}}}"#;
        let dup = input_requests(&RawObject::from_slice(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(dup.len(), 1);
        assert_eq!(dup[0].method, "sampling/createMessage");
    }

    #[test]
    fn malformed_input_requests_are_errors() {
        use TranslateError::*;
        for (map, want) in [
            (json!({"k": 1}), InvalidInputRequired),
            (json!({"k": {"params": {}}}), InvalidInputRequired),
            (
                json!({"k": {"method": "tools/call", "params": {}}}),
                UnsupportedInputRequest,
            ),
            (json!({"k": {"method": "ping"}}), UnsupportedInputRequest),
            (json!({"k": {"method": "elicitation/create"}}), InvalidInputRequired),
            (
                json!({"k": {"method": "sampling/createMessage", "params": [1]}}),
                InvalidInputRequired,
            ),
        ] {
            assert_eq!(requests(map.clone()).err(), Some(want), "{map}");
        }
    }

    #[test]
    fn legacy_requests_per_method_and_revision() {
        let inputs = spec_inputs();
        let all = r#"{"elicitation":{},"sampling":{},"roots":{"listChanged":true}}"#;
        // 2025-11-25 keeps `mode`.
        let v = legacy(&inputs[0], ProtocolVersion::V2025_11_25, all).unwrap();
        assert_eq!(v["method"], "elicitation/create");
        assert_eq!(v["id"], "srv-1");
        assert_eq!(v["params"]["mode"], "form");
        // 2025-06-18 had no `mode`.
        let v = legacy(&inputs[0], ProtocolVersion::V2025_06_18, all).unwrap();
        assert!(v["params"].get("mode").is_none());
        assert_eq!(v["params"]["message"], "Please provide your GitHub username");
        // 2025-03-26 had no elicitation at all.
        assert_eq!(
            legacy(&inputs[0], ProtocolVersion::V2025_03_26, all).err(),
            Some(TranslateError::UndeclaredCapability("elicitation"))
        );
        let v = legacy(&inputs[1], ProtocolVersion::V2025_03_26, all).unwrap();
        assert_eq!(v["method"], "sampling/createMessage");
        assert_eq!(v["params"]["maxTokens"], 100);
        let caps = raw(all);
        let id = raw("1");
        assert_eq!(
            legacy_request(&inputs[1], &id, &ctx(ProtocolVersion::V2025_03_26, &caps))
                .unwrap()
                .capability,
            "sampling"
        );
        let v = legacy(&inputs[2], ProtocolVersion::V2025_03_26, all).unwrap();
        assert_eq!(v, json!({"jsonrpc": "2.0", "id": "srv-1", "method": "roots/list"}));
    }

    #[test]
    fn undeclared_capabilities_are_refused() {
        let inputs = spec_inputs();
        let v = ProtocolVersion::V2025_11_25;
        assert_eq!(
            legacy(&inputs[0], v, "{}").unwrap_err(),
            TranslateError::UndeclaredCapability("elicitation")
        );
        assert_eq!(
            legacy(&inputs[1], v, r#"{"roots":{}}"#).unwrap_err(),
            TranslateError::UndeclaredCapability("sampling")
        );
        assert_eq!(
            legacy(&inputs[2], v, r#"{"sampling":{}}"#).unwrap_err(),
            TranslateError::UndeclaredCapability("roots")
        );
        let tools = requests(
            json!({"k": {"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 1, "tools": []}}}),
        )
        .unwrap();
        assert_eq!(
            legacy(&tools[0], v, r#"{"sampling":{}}"#).unwrap_err(),
            TranslateError::UndeclaredCapability("sampling.tools")
        );
        assert!(legacy(&tools[0], v, r#"{"sampling":{"tools":{}}}"#).is_ok());
    }

    #[test]
    fn url_elicitation_gets_an_id_on_2025_11_25_only() {
        let url = requests(json!({"k": {"method": "elicitation/create", "params": {"mode": "url", "message": "Sign in", "url": "https://example.com/auth"}}})).unwrap();
        let v = legacy(&url[0], ProtocolVersion::V2025_11_25, r#"{"elicitation":{"url":{}}}"#).unwrap();
        assert_eq!(v["params"]["elicitationId"], "srv-1");
        assert_eq!(
            legacy(&url[0], ProtocolVersion::V2025_11_25, r#"{"elicitation":{"form":{}}}"#).unwrap_err(),
            TranslateError::UndeclaredCapability("elicitation.url")
        );
        assert_eq!(
            legacy(&url[0], ProtocolVersion::V2025_06_18, r#"{"elicitation":{"url":{}}}"#).unwrap_err(),
            TranslateError::UndeclaredCapability("elicitation.url")
        );
        // A numeric minted id gives its digits.
        let caps = raw(r#"{"elicitation":{"url":{}}}"#);
        let id = raw("12345678901234567890123");
        let req = legacy_request(&url[0], &id, &ctx(ProtocolVersion::V2025_11_25, &caps)).unwrap();
        let text = std::str::from_utf8(&req.body).unwrap();
        assert!(text.contains(r#""elicitationId":"12345678901234567890123""#), "{text}");
        assert!(text.contains(r#""id":12345678901234567890123"#), "{text}");
    }

    #[test]
    fn client_answers_become_input_responses() {
        let accept = br#"{"jsonrpc":"2.0","id":"srv-1","result":{"action":"accept","content":{"name":"octocat"}}}"#;
        let InputResponse::Result(result) = input_response(accept).unwrap() else {
            panic!()
        };
        assert_eq!(result.get(), r#"{"action":"accept","content":{"name":"octocat"}}"#);
        let rejected =
            br#"{"jsonrpc":"2.0","id":"srv-1","error":{"code":-1,"message":"User rejected sampling request"}}"#;
        let InputResponse::Failed(error) = input_response(rejected).unwrap() else {
            panic!()
        };
        let client_id = raw("7");
        let answer: Value = serde_json::from_slice(&failed_answer(&client_id, &error)).unwrap();
        assert_eq!(
            answer,
            json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -1, "message": "User rejected sampling request"}})
        );
        for bad in [
            &br#"{"jsonrpc":"2.0","id":1}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"result":[]}"#,
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":1}}"#,
            b"nope",
        ] {
            assert!(input_response(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn retry_keeps_everything_but_id_and_round_state() {
        let original = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t","arguments":{"n":123456789012345678901234567890},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}},"requestState":"old","inputResponses":{"old":{}}}}"#;
        let responses = vec![
            (
                "github_login".to_owned(),
                raw(r#"{"action":"accept","content":{"name":"octocat"}}"#),
            ),
            (
                "capital_of_france".to_owned(),
                raw(
                    r#"{"role":"assistant","content":{"type":"text","text":"Paris"},"model":"m","stopReason":"endTurn"}"#,
                ),
            ),
        ];
        let state = raw(r#""opaque\u00e9 \"token\"""#);
        let id = raw(r#""retry-1""#);
        let retry = retry_request(original, &id, &responses, Some(&state)).unwrap();
        let text = std::str::from_utf8(&retry).unwrap();
        assert_eq!(
            text,
            r#"{"jsonrpc":"2.0","id":"retry-1","method":"tools/call","params":{"name":"t","arguments":{"n":123456789012345678901234567890},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}},"requestState":"opaque\u00e9 \"token\"","inputResponses":{"github_login":{"action":"accept","content":{"name":"octocat"}},"capital_of_france":{"role":"assistant","content":{"type":"text","text":"Paris"},"model":"m","stopReason":"endTurn"}}}}"#
        );
        // Without state from the server, the retry carries none.
        let retry = retry_request(original, &raw("8"), &[], None).unwrap();
        let v: Value = serde_json::from_slice(&retry).unwrap();
        assert!(v["params"].get("requestState").is_none());
        assert_eq!(v["params"]["inputResponses"], json!({}));
        assert_eq!(v["id"], 8);
        // Not a request.
        assert_eq!(
            retry_request(b"{}", &id, &[], None).unwrap_err(),
            TranslateError::NotJsonRpc
        );
        assert_eq!(
            retry_request(b"[", &id, &[], None).unwrap_err(),
            TranslateError::NotJson
        );
        assert_eq!(
            retry_request(br#"{"method":"m","params":1}"#, &id, &[], None).unwrap_err(),
            TranslateError::ParamsNotObject
        );
    }
}
