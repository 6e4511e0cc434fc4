//! The echo server's tools that ask the client something before they answer: what each
//! one sends (`sampling/createMessage` or `elicitation/create`, with which params) and
//! how it words the client's answer in its result.
//!
//! They are the tools of the conformance scenarios `tools-call-sampling`,
//! `tools-call-elicitation`, `elicitation-sep1034-defaults` (a form whose fields carry
//! defaults of every primitive type) and `elicitation-sep1330-enums` (the five enum
//! shapes: untitled and titled single-select, the legacy `enumNames`, untitled and
//! titled multi-select), and `test_streaming_elicitation` of the 2026-07-28 check that
//! a request stream carries no independent requests. The scenarios check the request
//! the client receives; the
//! interop clients and `tests/elicitation.rs` also check the tool's result, so the
//! result text repeats what the client answered, as JSON. A 2025-era session asks with
//! a server → client request; a 2026-07-28 call with a multi round-trip request
//! ([`modern_round`]).

use serde_json::{Value, json};

/// The names of the tools this module serves.
pub(super) const NAMES: [&str; 5] = [
    "test_sampling",
    "test_elicitation",
    "test_elicitation_sep1034_defaults",
    "test_elicitation_sep1330_enums",
    "test_streaming_elicitation",
];

/// What a tool asks the client.
pub(super) struct Ask {
    /// The request's method.
    pub(super) method: &'static str,
    /// The request's params.
    pub(super) params: Value,
    /// How the tool words the client's answer.
    wording: Wording,
}

enum Wording {
    /// `LLM response: <text>`.
    Sample,
    /// `User response: action=<action>, content=<json>` (`tools-call-elicitation`).
    UserResponse,
    /// `Elicitation completed: action=<action>, content=<json>` (the SEP scenarios).
    Completed,
}

/// What tool `name` asks, given its call's `arguments`; `None` for another tool.
pub(super) fn ask(name: &str, arguments: &Value) -> Option<Ask> {
    let argument = |key: &str| arguments.get(key).and_then(Value::as_str).unwrap_or("");
    let (method, params, wording) = match name {
        "test_sampling" => (
            "sampling/createMessage",
            json!({
                "messages": [{"role": "user", "content": {"type": "text", "text": argument("prompt")}}],
                "maxTokens": 100,
            }),
            Wording::Sample,
        ),
        "test_elicitation" => (
            "elicitation/create",
            form(
                argument("message"),
                json!({
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"},
                }),
                &["username", "email"],
            ),
            Wording::UserResponse,
        ),
        "test_elicitation_sep1034_defaults" => (
            "elicitation/create",
            form("Defaults are filled in: accept or change them", defaults_schema(), &[]),
            Wording::Completed,
        ),
        "test_elicitation_sep1330_enums" => (
            "elicitation/create",
            form("Pick from each list", enums_schema(), &[]),
            Wording::Completed,
        ),
        "test_streaming_elicitation" => (
            "elicitation/create",
            form(
                "Confirm to go on",
                json!({"confirmed": {"type": "boolean", "description": "Go on?"}}),
                &["confirmed"],
            ),
            Wording::Completed,
        ),
        _ => return None,
    };
    Some(Ask {
        method,
        params,
        wording,
    })
}

impl Ask {
    /// The text of the tool's result for the client's `answer`, or an error text when
    /// the answer lacks what the tool reads.
    pub(super) fn answer_text(&self, answer: &Value) -> Result<String, String> {
        if let Wording::Sample = self.wording {
            return match answer.pointer("/content/text").and_then(Value::as_str) {
                Some(text) => Ok(format!("LLM response: {text}")),
                None => Err(format!("the sampling result has no text content: {answer}")),
            };
        }
        let Some(action) = answer.get("action").and_then(Value::as_str) else {
            return Err(format!("the elicitation result has no action: {answer}"));
        };
        // `content` is absent when the user declined or cancelled.
        let content = answer.get("content").unwrap_or(&Value::Null);
        let lead = match self.wording {
            Wording::UserResponse => "User response",
            _ => "Elicitation completed",
        };
        Ok(format!("{lead}: action={action}, content={content}"))
    }
}

/// A 2026-07-28 call of tool `name` (multi round-trip): the first call answers with
/// an `InputRequiredResult` asking the client; the retry, carrying the client's answer
/// in `inputResponses` and the `requestState` of the first answer, gets the result.
pub(super) fn modern_round(name: &str, message: &Value) -> Value {
    let arguments = message.pointer("/params/arguments").unwrap_or(&Value::Null);
    let failed = |text: String| json!({"content": [{"type": "text", "text": text}], "isError": true});
    let Some(ask) = ask(name, arguments) else {
        return failed(format!("unknown tool {name}"));
    };
    // The state names the tool, so a retry of another call is caught.
    let state = format!("echo:{name}:asked");
    let Some(answer) = message.pointer("/params/inputResponses/ask") else {
        return json!({
            "resultType": "input_required",
            "inputRequests": {"ask": {"method": ask.method, "params": ask.params}},
            "requestState": state,
        });
    };
    if message.pointer("/params/requestState").and_then(Value::as_str) != Some(state.as_str()) {
        return failed(format!("the retry lost its requestState: {message}"));
    }
    match ask.answer_text(answer) {
        Ok(text) => json!({"content": [{"type": "text", "text": text}]}),
        Err(text) => failed(text),
    }
}

/// `elicitation/create` params for a form-mode request. `mode` is left out, as the
/// scenarios send it: form is what a request without one means.
fn form(message: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "message": message,
        "requestedSchema": {"type": "object", "properties": properties, "required": required},
    })
}

/// SEP-1034: a default on every primitive type a form field may have.
fn defaults_schema() -> Value {
    json!({
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {"type": "string", "description": "User status",
                   "enum": ["active", "inactive", "pending"], "default": "active"},
        "verified": {"type": "boolean", "description": "Verification status", "default": true},
    })
}

/// SEP-1330: the five ways a form field offers choices.
fn enums_schema() -> Value {
    let titled = |pairs: [(&str, &str); 3]| -> Vec<Value> {
        pairs
            .into_iter()
            .map(|(value, title)| json!({"const": value, "title": title}))
            .collect()
    };
    json!({
        "untitledSingle": {"type": "string", "description": "One of three plain values",
                           "enum": ["option1", "option2", "option3"]},
        "titledSingle": {"type": "string", "description": "One of three values shown by title",
                         "oneOf": titled([("value1", "First Option"), ("value2", "Second Option"), ("value3", "Third Option")])},
        "legacyEnum": {"type": "string", "description": "One of three values, titles the deprecated way",
                       "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]},
        "untitledMulti": {"type": "array", "description": "Any of three plain values",
                          "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
        "titledMulti": {"type": "array", "description": "Any of three values shown by title",
                        "items": {"anyOf": titled([("value1", "First Choice"), ("value2", "Second Choice"), ("value3", "Third Choice")])}},
    })
}

/// The `tools/list` entries of these tools.
pub(super) fn descriptions() -> [Value; 5] {
    let empty = json!({"type": "object", "properties": {}});
    [
        json!({"name": "test_sampling", "description": "Ask the client for an LLM sample.",
               "inputSchema": {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}}),
        json!({"name": "test_elicitation", "description": "Ask the client for user input.",
               "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}}),
        json!({"name": "test_elicitation_sep1034_defaults",
               "description": "Elicit a form whose fields have defaults of every primitive type.",
               "inputSchema": empty}),
        json!({"name": "test_elicitation_sep1330_enums",
               "description": "Elicit a form with every enum shape.",
               "inputSchema": empty.clone()}),
        json!({"name": "test_streaming_elicitation",
               "description": "Elicit a confirmation; on 2026-07-28 the request for input comes on the call's stream.",
               "inputSchema": empty}),
    ]
}
