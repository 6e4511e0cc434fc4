//! An rmcp 3.11 server that speaks only MCP 2026-07-28, served to every client era by
//! `McpSessionLayer` in translation mode (issue 14's proof with a real SDK handler).
//!
//! ```text
//! cargo run --all-features --example rmcp_modern -- --addr 127.0.0.1:8080 [--redis redis://127.0.0.1:6379]
//! ```
//!
//! The handler implements the conformance suite's "everything" interface with rmcp's
//! own types and `ServerHandler` methods:
//!
//! * tools: the content tools (`test_simple_text`, `test_image_content`,
//!   `test_audio_content`, `test_embedded_resource`, `test_multiple_content_types`,
//!   `test_error_handling`), `test_tool_with_logging` (three `notifications/message`
//!   on the call's stream) and `test_logging_tool` (the same, only when the request's
//!   `_meta` asks for a log level), `test_tool_with_progress` (0/50/100),
//!   `json_schema_2020_12_tool`, `echo`, `test_missing_capability` (-32021 unless the
//!   request declares sampling), `test_reconnection` (closes the connection after the
//!   priming event through the layer's `SseControl`, answers on the client's
//!   reconnection), `test_custom_headers` (an `x-mcp-header` parameter rmcp checks
//!   against its `Mcp-Param-Region` header), `notify_me` (every open
//!   `subscriptions/listen` that asked for tool list changes gets
//!   `notifications/tools/list_changed`; `test_trigger_tool_change`, which the
//!   2026-07-28 `server-stateless` scenario calls, adds or removes
//!   `test_dynamic_tool` and announces that), `update_watched` (those watching
//!   `test://watched-resource` get `notifications/resources/updated`), and the tools that ask the client —
//!   `test_sampling`, `test_elicitation`, `test_elicitation_sep1034_defaults`,
//!   `test_elicitation_sep1330_enums`, `test_streaming_elicitation` and the
//!   `test_input_required_result_*` tools of SEP-2322 — which ask only through multi
//!   round-trip requests (`InputRequiredResult` with `inputRequests` and a sealed
//!   `requestState`), never with a server → client request, which 2026-07-28 does not
//!   have;
//! * resources: `test://static-text`, `test://static-binary`, `test://watched-resource`,
//!   the template `test://template/{id}/data`, unknown URIs refused with the URI in the
//!   error data; `subscriptions/listen` accepted (list-changed kinds and the resource
//!   URIs it serves), which is how the layer serves `resources/subscribe` to 2025-era
//!   clients;
//! * prompts: `test_simple_prompt`, `test_prompt_with_arguments`,
//!   `test_prompt_with_embedded_resource`, `test_prompt_with_image`, and
//!   `test_input_required_result_prompt` (MRTR on `prompts/get`);
//! * `completion/complete` (prefix matches over a fixed word list).
//!
//! rmcp runs with its own sessions off (`legacy_session_mode = false`,
//! `NeverSessionManager`) and advertises 2026-07-28 alone. The layer in front
//! (`strict_modern_headers` on, so malformed 2026-07-28 requests are refused before
//! they reach rmcp, as in the echo handler's translate run) mints
//! sessions, answers `initialize` from `server/discover`, rewrites every request with the
//! 2026-07-28 header and `_meta`, turns `InputRequiredResult` rounds into
//! server → client requests for a 2025-era client, and holds a `subscriptions/listen`
//! for a legacy GET stream.
//!
//! Between the two sits a guard: a request that reaches rmcp without both the
//! `MCP-Protocol-Version: 2026-07-28` header and
//! `params._meta["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"` (a GET or
//! DELETE, with no body, is such a request too) is refused with 400 and logged with the
//! marker `LEGACY MESSAGE REACHED THE HANDLER`. `tests/interop/run.sh` runs every
//! 2025-era conformance scenario, the 2026-07-28 ones and the TypeScript and Python SDK
//! clients against this example and fails if the marker shows up in its log.
//!
//! `--redis URL` keeps the layer's sessions and resumable streams in Redis
//! (`RedisSessionStore`, `RedisEventLog`; needs the `redis` feature).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
// Logging (`notifications/message`, `logging/setLevel`) is deprecated by SEP-2577 but
// still part of 2026-07-28, and the 2025-era logging scenarios need it.
#[allow(deprecated)]
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, InputRequiredResult, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingMessageNotificationParam,
    PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, ServerCapabilities, ServerConfig, SetLevelRequestParams,
    SubscriptionFilter,
};
use rmcp::service::{RequestContext, RoleServer, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde_json::{Value, json};
use tower_mcp_session::McpSessionLayer;

#[cfg(feature = "redis")]
use mcp_test_support::echo::with_redis;

/// The one protocol version the handler serves.
const MODERN: &str = "2026-07-28";

/// A 1x1 red PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// Two samples of 8 kHz 8-bit mono silence, as a WAV file.
const WAV: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQIAAACAgA==";

/// The resources the server serves directly (`uri`, `name`, `mimeType`).
const RESOURCES: [(&str, &str, &str); 3] = [
    ("test://static-text", "Static text", "text/plain"),
    ("test://static-binary", "Static binary", "image/png"),
    ("test://watched-resource", "Watched resource", "text/plain"),
];

/// The handler. Cheap to clone: rmcp builds one per request (sessions are off).
#[derive(Clone)]
struct Everything {
    /// Seals `requestState`: a keyed SipHash (a fresh random key per process) over the
    /// state's text. Enough to tell a tampered state from a genuine one in a test
    /// server; a production server would use an HMAC (rmcp's `request-state` feature).
    seal: Arc<std::collections::hash_map::RandomState>,
    /// `notify_me` and `update_watched` ring this; every open `subscriptions/listen`
    /// whose filter accepted the change sends it (the layer delivers it on the GET
    /// stream of a 2025-era session).
    changed: tokio::sync::broadcast::Sender<Change>,
    /// Whether `tools/list` has `test_dynamic_tool`: `test_trigger_tool_change`
    /// flips it, so the change it announces is real.
    dynamic_tool: Arc<std::sync::atomic::AtomicBool>,
}

/// A change announced to the open subscriptions.
#[derive(Clone, Debug)]
enum Change {
    /// `notifications/tools/list_changed`.
    Tools,
    /// `notifications/resources/updated` for this URI.
    Resource(&'static str),
}

impl Everything {
    fn new() -> Self {
        Self {
            seal: Arc::new(std::collections::hash_map::RandomState::new()),
            changed: tokio::sync::broadcast::channel(16).0,
            dynamic_tool: Arc::default(),
        }
    }

    fn mac(&self, text: &str) -> String {
        let mut h = self.seal.build_hasher();
        h.write(text.as_bytes());
        format!("{:016x}", h.finish())
    }

    /// `text` with its seal appended.
    fn sealed(&self, text: &str) -> String {
        format!("{text}.{}", self.mac(text))
    }

    /// The text of a sealed state, or `None` when the seal does not match.
    fn unsealed<'a>(&self, state: &'a str) -> Option<&'a str> {
        let (text, mac) = state.rsplit_once('.')?;
        (self.mac(text) == mac).then_some(text)
    }
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, McpError> {
    serde_json::from_value(value).map_err(|e| McpError::internal_error(format!("building a result: {e}"), None))
}

/// A complete 2026-07-28 result built from JSON: rmcp's constructors set
/// `resultType: "complete"`, deserializing leaves it out, so it is added here.
fn complete<T: serde::de::DeserializeOwned>(mut value: Value) -> Result<T, McpError> {
    if let Some(object) = value.as_object_mut() {
        object.entry("resultType").or_insert(json!("complete"));
    }
    from_json(value)
}

fn text_result(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}]})
}

fn error_result(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}], "isError": true})
}

fn form(message: &str, properties: Value, required: &[&str]) -> Value {
    json!({"method": "elicitation/create", "params": {
        "message": message,
        "requestedSchema": {"type": "object", "properties": properties, "required": required},
    }})
}

fn sample(text: &str, max_tokens: u32) -> Value {
    json!({"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
        "maxTokens": max_tokens,
    }})
}

fn list_roots() -> Value {
    json!({"method": "roots/list", "params": {}})
}

/// One round of a tool (or prompt) that asks the client: either it needs input
/// (`inputRequests`, the state to seal), or it is done with a result.
enum Round {
    Ask(Value, String),
    Done(Value),
}

/// The `tools/list` entries, built once.
fn tools() -> &'static Value {
    static TOOLS: std::sync::LazyLock<Value> = std::sync::LazyLock::new(tool_list);
    &TOOLS
}

/// The tools as rmcp's type, for `get_tool` (asked on every call).
fn parsed_tools() -> &'static [rmcp::model::Tool] {
    static PARSED: std::sync::LazyLock<Vec<rmcp::model::Tool>> = std::sync::LazyLock::new(|| {
        let listed = tools().as_array().into_iter().flatten();
        listed
            .filter_map(|tool| serde_json::from_value(tool.clone()).ok())
            .collect()
    });
    &PARSED
}

fn tool_list() -> Value {
    let empty = json!({"type": "object", "properties": {}});
    let plain = |name: &str, description: &str| json!({"name": name, "description": description, "inputSchema": empty});
    json!([
        {"name": "echo", "description": "Echo the message back.",
         "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}},
        plain("test_simple_text", "Answer with one text block."),
        plain("test_image_content", "Answer with a PNG image."),
        plain("test_audio_content", "Answer with a WAV clip."),
        plain("test_embedded_resource", "Answer with an embedded resource."),
        plain("test_multiple_content_types", "Answer with text, image and resource."),
        plain("test_error_handling", "Answer with a tool error."),
        plain("test_tool_with_logging", "Log three messages on the call's stream, then answer."),
        plain("test_logging_tool", "Log on the call's stream only when the request asks for a log level."),
        plain("test_missing_capability", "Needs the sampling client capability."),
        plain("notify_me", "Announce a tool list change to every open subscription."),
        plain("test_trigger_tool_change", "Add or remove test_dynamic_tool and announce the change to every open subscription."),
        plain("update_watched", "Announce that test://watched-resource changed, to the subscriptions that watch it."),
        plain("test_reconnection", "Close the connection after priming, answer on reconnection."),
        plain("test_streaming_elicitation", "Elicit a confirmation (MRTR, on the call's stream)."),
        {"name": "test_tool_with_progress", "description": "Report progress 0, 50, 100, then answer.",
         "inputSchema": {"type": "object", "properties": {"intervalMs": {"type": "integer"}}}},
        {"name": "test_sampling", "description": "Ask the client for an LLM sample (MRTR).",
         "inputSchema": {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}},
        {"name": "test_elicitation", "description": "Ask the client for user input (MRTR).",
         "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}},
        plain("test_elicitation_sep1034_defaults", "Elicit a form whose fields have defaults of every primitive type (MRTR)."),
        plain("test_elicitation_sep1330_enums", "Elicit a form with every enum shape (MRTR)."),
        plain("test_input_required_result_elicitation", "SEP-2322: ask the user's name."),
        plain("test_input_required_result_sampling", "SEP-2322: ask for a sample."),
        plain("test_input_required_result_list_roots", "SEP-2322: ask for the client's roots."),
        plain("test_input_required_result_request_state", "SEP-2322: ask for a confirmation, with requestState."),
        plain("test_input_required_result_multiple_inputs", "SEP-2322: ask three things at once."),
        plain("test_input_required_result_multi_round", "SEP-2322: ask in two rounds."),
        plain("test_input_required_result_tampered_state", "SEP-2322: refuse a tampered requestState."),
        plain("test_input_required_result_capabilities", "SEP-2322: ask only what the client declared."),
        // SEP-2243: `region` travels in an `Mcp-Param-Region` header too; rmcp checks the
        // header against the body (through `get_tool`).
        {"name": "test_custom_headers", "description": "Answer with the region, sent in a header as well.",
         "inputSchema": {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
                         "required": ["region"]}},
        {"name": "json_schema_2020_12_tool", "description": "Tool with JSON Schema 2020-12 features",
         "inputSchema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                                  "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
            "properties": {
                "name": {"type": "string"},
                "address": {"$ref": "#/$defs/address"},
                "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                "phone": {"type": "string"},
                "email": {"type": "string"},
            },
            "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
            "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
            "then": {"required": ["phone"]},
            "else": {"required": ["email"]},
            "additionalProperties": false,
         }},
    ])
}

/// The fixed answers of the content tools.
fn content_tool(name: &str, arguments: &Value) -> Option<Value> {
    let image = json!({"type": "image", "data": PNG, "mimeType": "image/png"});
    Some(match name {
        "echo" => text_result(arguments.get("message").and_then(Value::as_str).unwrap_or("")),
        "test_simple_text" => text_result("This is a simple text response for testing."),
        "test_image_content" => json!({"content": [image]}),
        "test_audio_content" => json!({"content": [{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]}),
        "test_embedded_resource" => json!({"content": [{"type": "resource", "resource": {
            "uri": "test://embedded-resource", "mimeType": "text/plain",
            "text": "This is an embedded resource content.",
        }}]}),
        "test_multiple_content_types" => json!({"content": [
            {"type": "text", "text": "Multiple content types test:"},
            image,
            {"type": "resource", "resource": {
                "uri": "test://mixed-content-resource", "mimeType": "application/json",
                "text": "{\"test\":\"data\",\"value\":123}",
            }},
        ]}),
        "test_error_handling" => error_result("This tool intentionally returns an error for testing"),
        "json_schema_2020_12_tool" => text_result("schema tool called"),
        "test_dynamic_tool" => text_result("dynamic tool called"),
        "test_custom_headers" => text_result(format!(
            "region: {}",
            arguments.get("region").and_then(Value::as_str).unwrap_or("")
        )),
        _ => return None,
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
        pairs.iter().map(|(c, t)| json!({"const": c, "title": t})).collect()
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

/// The text of a sampling answer, if it has one.
fn sampled_text(answer: &Value) -> Option<&str> {
    answer.pointer("/content/text").and_then(Value::as_str)
}

/// `action=<action>, content=<json>` of an elicitation answer.
fn elicited(answer: &Value) -> Result<String, String> {
    let action = answer
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the elicitation result has no action: {answer}"))?;
    let content = answer.get("content").unwrap_or(&Value::Null);
    Ok(format!("action={action}, content={content}"))
}

/// The elicited `content.<field>` string of an accepted answer.
fn field<'a>(answer: &'a Value, name: &str) -> Option<&'a str> {
    answer.pointer(&format!("/content/{name}")).and_then(Value::as_str)
}

/// Whether a response in `inputResponses` looks like what `method` answers with; a
/// wrong shape is asked again (SEP-2322 lets the server re-request).
fn fits(method: &str, answer: &Value) -> bool {
    match method {
        "elicitation/create" => answer.get("action").and_then(Value::as_str).is_some(),
        "sampling/createMessage" => answer.get("content").is_some_and(Value::is_object),
        "roots/list" => answer.get("roots").is_some_and(Value::is_array),
        _ => false,
    }
}

impl Everything {
    /// One round of an asking tool: `responses` are the client's answers so far
    /// (`inputResponses`), `state` the unsealed `requestState` (`""` on the first call).
    fn ask_round(
        &self,
        name: &str,
        arguments: &Value,
        responses: &HashMap<String, Value>,
        state: &str,
        caps: &Value,
    ) -> Option<Round> {
        // `key`: the request asked; answers of the wrong shape (or none) ask again.
        let one = |key: &str, request: Value, done: &dyn Fn(&Value) -> Value| -> Round {
            let method = request["method"].as_str().unwrap_or_default().to_owned();
            match responses.get(key) {
                Some(answer) if fits(&method, answer) => Round::Done(done(answer)),
                _ => Round::Ask(json!({ key: request }), format!("{name}:1")),
            }
        };
        let argument = |key: &str| arguments.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
        Some(match name {
            "test_sampling" => one("ask", sample(&argument("prompt"), 100), &|a| match sampled_text(a) {
                Some(text) => text_result(format!("LLM response: {text}")),
                None => error_result(format!("the sampling result has no text content: {a}")),
            }),
            "test_elicitation" => one(
                "ask",
                form(
                    &argument("message"),
                    json!({
                        "username": {"type": "string", "description": "User's response"},
                        "email": {"type": "string", "description": "User's email address"},
                    }),
                    &["username", "email"],
                ),
                &|a| match elicited(a) {
                    Ok(t) => text_result(format!("User response: {t}")),
                    Err(t) => error_result(t),
                },
            ),
            "test_streaming_elicitation" => one(
                "ask",
                form(
                    "Confirm to go on",
                    json!({"confirmed": {"type": "boolean", "description": "Go on?"}}),
                    &["confirmed"],
                ),
                &|a| match elicited(a) {
                    Ok(t) => text_result(format!("Elicitation completed: {t}")),
                    Err(t) => error_result(t),
                },
            ),
            "test_elicitation_sep1034_defaults" | "test_elicitation_sep1330_enums" => {
                let (message, schema) = if name.ends_with("defaults") {
                    ("Defaults are filled in: accept or change them", defaults_schema())
                } else {
                    ("Pick from each list", enums_schema())
                };
                one("ask", form(message, schema, &[]), &|a| match elicited(a) {
                    Ok(t) => text_result(format!("Elicitation completed: {t}")),
                    Err(t) => error_result(t),
                })
            }
            "test_input_required_result_elicitation" => one(
                "user_name",
                form("What is your name?", json!({"name": {"type": "string"}}), &["name"]),
                &|a| text_result(format!("Hello, {}!", field(a, "name").unwrap_or("stranger"))),
            ),
            "test_input_required_result_sampling" => one(
                "capital_question",
                sample("What is the capital of France?", 100),
                &|a| text_result(format!("The model said: {}", sampled_text(a).unwrap_or(""))),
            ),
            "test_input_required_result_list_roots" => one("client_roots", list_roots(), &|a| {
                let uris: Vec<&str> = a["roots"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.get("uri").and_then(Value::as_str))
                    .collect();
                text_result(format!("The client has {} root(s): {}", uris.len(), uris.join(", ")))
            }),
            "test_input_required_result_request_state" | "test_input_required_result_tampered_state" => one(
                "confirm",
                form("Please confirm", json!({"ok": {"type": "boolean"}}), &["ok"]),
                &|a| {
                    text_result(format!(
                        "state-ok: confirmed {}",
                        a.pointer("/content/ok").unwrap_or(&Value::Null)
                    ))
                },
            ),
            "test_input_required_result_multiple_inputs" => {
                let all = ["user_name", "greeting", "client_roots"];
                let requests = [
                    form("What is your name?", json!({"name": {"type": "string"}}), &["name"]),
                    sample("Generate a greeting", 50),
                    list_roots(),
                ];
                let answered = all.iter().zip(&requests).all(|(key, request)| {
                    responses
                        .get(*key)
                        .is_some_and(|a| fits(request["method"].as_str().unwrap_or_default(), a))
                });
                if answered {
                    Round::Done(text_result(format!(
                        "Got all three: name={}, greeting={}, roots={}",
                        field(&responses["user_name"], "name").unwrap_or(""),
                        sampled_text(&responses["greeting"]).unwrap_or(""),
                        responses["client_roots"]["roots"].as_array().map_or(0, Vec::len)
                    )))
                } else {
                    let map: serde_json::Map<String, Value> =
                        all.iter().map(|k| (*k).to_owned()).zip(requests).collect();
                    Round::Ask(Value::Object(map), format!("{name}:1"))
                }
            }
            "test_input_required_result_multi_round" => {
                let step1 = form(
                    "Step 1: What is your name?",
                    json!({"name": {"type": "string"}}),
                    &["name"],
                );
                let step2 = form(
                    "Step 2: What is your favorite color?",
                    json!({"color": {"type": "string"}}),
                    &["color"],
                );
                // Round 2's state carries the name from round 1.
                if let Some(who) = state.strip_prefix(&format!("{name}:2:")) {
                    match responses.get("step2") {
                        Some(a) if fits("elicitation/create", a) => Round::Done(text_result(format!(
                            "{who} likes {}",
                            field(a, "color").unwrap_or("no color")
                        ))),
                        _ => Round::Ask(json!({"step2": step2}), state.to_owned()),
                    }
                } else {
                    match responses.get("step1") {
                        Some(a) if fits("elicitation/create", a) => Round::Ask(
                            json!({"step2": step2}),
                            format!("{name}:2:{}", field(a, "name").unwrap_or("someone")),
                        ),
                        _ => Round::Ask(json!({"step1": step1}), format!("{name}:1")),
                    }
                }
            }
            "test_input_required_result_capabilities" => {
                // Only what the client declared in this request's _meta.
                let mut asks = serde_json::Map::new();
                if caps.get("elicitation").is_some() {
                    asks.insert(
                        "user_name".into(),
                        form("What is your name?", json!({"name": {"type": "string"}}), &["name"]),
                    );
                }
                if caps.get("sampling").is_some() {
                    asks.insert("greeting".into(), sample("Generate a greeting", 50));
                }
                if caps.get("roots").is_some() {
                    asks.insert("client_roots".into(), list_roots());
                }
                let answered = asks.iter().all(|(k, r)| {
                    responses
                        .get(k)
                        .is_some_and(|a| fits(r["method"].as_str().unwrap_or_default(), a))
                });
                if asks.is_empty() || answered {
                    Round::Done(text_result(format!("asked for: {:?}", asks.keys().collect::<Vec<_>>())))
                } else {
                    Round::Ask(Value::Object(asks), format!("{name}:1"))
                }
            }
            _ => return None,
        })
    }
}

/// `inputResponses` as a map of JSON values (absent: empty).
fn responses_of(input: Option<&rmcp::model::InputResponses>) -> HashMap<String, Value> {
    input
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

#[allow(deprecated)]
impl ServerHandler for Everything {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_completions()
            .enable_logging()
            .build();
        ServerConfig::new(capabilities)
            .with_protocol_version(ProtocolVersion::V_2026_07_28)
            .with_server_info(rmcp::model::Implementation::new(
                "rmcp-modern",
                env!("CARGO_PKG_VERSION"),
            ))
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(vec![ProtocolVersion::V_2026_07_28])
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        parsed_tools().iter().find(|t| t.name == name).cloned()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut list = tools().clone();
        if self.dynamic_tool.load(std::sync::atomic::Ordering::SeqCst)
            && let Some(list) = list.as_array_mut()
        {
            list.push(
                json!({"name": "test_dynamic_tool", "description": "Present while toggled on.",
                             "inputSchema": {"type": "object", "properties": {}}}),
            );
        }
        complete(json!({"tools": list}))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let arguments = request.arguments.clone().map(Value::Object).unwrap_or(Value::Null);
        let name = request.name.as_ref();
        if let Some(answer) = content_tool(name, &arguments) {
            return Ok(CallToolResponse::Complete(complete::<CallToolResult>(answer)?));
        }
        match name {
            "test_tool_with_progress" => {
                let interval = arguments
                    .get("intervalMs")
                    .and_then(Value::as_u64)
                    .map_or(50, |ms| ms.min(5_000));
                if let Some(token) = context.meta.get_progress_token() {
                    for (i, progress) in [0, 50, 100].into_iter().enumerate() {
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(interval)).await;
                        }
                        let note: ProgressNotificationParam =
                            from_json(json!({"progressToken": token, "progress": progress, "total": 100}))?;
                        let _ = context.peer.notify_progress(note).await;
                    }
                }
                return Ok(CallToolResponse::Complete(complete(text_result("progress complete"))?));
            }
            "test_tool_with_logging" | "test_logging_tool" => {
                // 2026-07-28 logs only at the request's asking (`_meta` logLevel); the
                // 2025-era scenario's tool always logs.
                if name == "test_logging_tool" && context.meta.log_level().is_none() {
                    return Ok(CallToolResponse::Complete(complete(text_result(
                        "no log level, no logs",
                    ))?));
                }
                for (i, line) in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ]
                .into_iter()
                .enumerate()
                {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let note: LoggingMessageNotificationParam =
                        from_json(json!({"level": "info", "logger": "rmcp-modern", "data": line}))?;
                    let _ = context.peer.notify_logging_message(note).await;
                }
                return Ok(CallToolResponse::Complete(complete(text_result(
                    "logging tool finished",
                ))?));
            }
            "test_missing_capability" => {
                let declared = context.meta.client_capabilities().is_some_and(|c| c.sampling.is_some());
                if !declared {
                    return Err(McpError::missing_required_client_capability(from_json(
                        json!({"sampling": {}}),
                    )?));
                }
                return Ok(CallToolResponse::Complete(complete(text_result(
                    "sampling capability declared",
                ))?));
            }
            "notify_me" | "test_trigger_tool_change" | "update_watched" => {
                if name == "test_trigger_tool_change" {
                    self.dynamic_tool.fetch_xor(true, std::sync::atomic::Ordering::SeqCst);
                }
                let change = if name == "update_watched" {
                    Change::Resource("test://watched-resource")
                } else {
                    Change::Tools
                };
                let listening = self.changed.send(change).unwrap_or(0);
                return Ok(CallToolResponse::Complete(complete(text_result(format!(
                    "notification sent to {listening} subscription(s)"
                )))?));
            }
            "test_reconnection" => {
                // The layer's handle on this call's SSE stream: close the connection
                // right after the priming event; the answer reaches the client when it
                // reconnects with Last-Event-ID.
                let control = context
                    .extensions
                    .get::<http::request::Parts>()
                    .and_then(|parts| parts.extensions.get::<tower_mcp_session::SseControl>());
                if let Some(control) = control {
                    control.close_connection();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Ok(CallToolResponse::Complete(complete(text_result(
                    "reconnection test complete",
                ))?));
            }
            _ => {}
        }
        let responses = responses_of(request.input_responses.as_ref());
        let state = match request.request_state.as_deref() {
            None => String::new(),
            Some(sealed) => match self.unsealed(sealed) {
                // The state names the tool it was minted for.
                Some(text) if text.split(':').next() == Some(name) => text.to_owned(),
                _ => {
                    return Err(McpError::invalid_params(
                        "requestState failed its integrity check",
                        Some(json!({"tool": name})),
                    ));
                }
            },
        };
        let caps = context
            .meta
            .0
            .get("io.modelcontextprotocol/clientCapabilities")
            .cloned()
            .unwrap_or(Value::Null);
        match self.ask_round(name, &arguments, &responses, &state, &caps) {
            Some(Round::Done(answer)) => Ok(CallToolResponse::Complete(complete(answer)?)),
            Some(Round::Ask(requests, next)) => {
                let mut ask: Value = json!({"resultType": "input_required", "inputRequests": requests});
                ask["requestState"] = json!(self.sealed(&next));
                Ok(CallToolResponse::InputRequired(from_json::<InputRequiredResult>(ask)?))
            }
            None => Err(McpError::invalid_params(format!("unknown tool {name}"), None)),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let resources: Vec<Value> = RESOURCES
            .iter()
            .map(|(uri, name, mime)| json!({"uri": uri, "name": name, "description": format!("{name} for testing"), "mimeType": mime}))
            .collect();
        complete(json!({"resources": resources}))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        complete(json!({"resourceTemplates": [{
            "uriTemplate": "test://template/{id}/data",
            "name": "Template data",
            "description": "JSON data for an id",
            "mimeType": "application/json",
        }]}))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri.as_str();
        let content = match uri {
            "test://static-text" => {
                json!({"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."})
            }
            "test://static-binary" => json!({"uri": uri, "mimeType": "image/png", "blob": PNG}),
            "test://watched-resource" => {
                json!({"uri": uri, "mimeType": "text/plain", "text": "Watched resource content."})
            }
            _ => match uri
                .strip_prefix("test://template/")
                .and_then(|rest| rest.strip_suffix("/data"))
            {
                Some(id) if !id.is_empty() && !id.contains('/') => json!({
                    "uri": uri,
                    "mimeType": "application/json",
                    "text": json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")}).to_string(),
                }),
                _ => {
                    return Err(McpError::resource_not_found(
                        "Resource not found",
                        Some(json!({"uri": uri})),
                    ));
                }
            },
        };
        Ok(ReadResourceResponse::Complete(complete::<ReadResourceResult>(
            json!({"contents": [content]}),
        )?))
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        // Every list-changed kind, and the resources this server serves.
        let mut accepted = requested.clone();
        if let Some(uris) = accepted.resource_subscriptions.as_mut() {
            uris.retain(|u| RESOURCES.iter().any(|(uri, ..)| uri == u) || u.starts_with("test://template/"));
        }
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        // Open until the client (the layer) cancels it; `notify_me` calls announce a
        // tool list change meanwhile (the sink drops kinds the filter did not accept).
        let mut changed = self.changed.subscribe();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                got = changed.recv() => match got {
                    Ok(Change::Tools) => {
                        if context.accepted().tools_list_changed == Some(true) {
                            let _ = context.sink().notify_tool_list_changed().await;
                        }
                    }
                    Ok(Change::Resource(uri)) => {
                        let watched = context.accepted().resource_subscriptions.as_ref();
                        if watched.is_some_and(|uris| uris.iter().any(|u| u == uri)) {
                            let _ = context.sink().notify_resource_updated(uri).await;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        complete(json!({"prompts": [
            {"name": "test_simple_prompt", "description": "A prompt with no arguments."},
            {"name": "test_prompt_with_arguments", "description": "A prompt with two arguments.",
             "arguments": [
                {"name": "arg1", "description": "First test argument", "required": true},
                {"name": "arg2", "description": "Second test argument", "required": true},
             ]},
            {"name": "test_prompt_with_embedded_resource", "description": "A prompt embedding a resource.",
             "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": true}]},
            {"name": "test_prompt_with_image", "description": "A prompt with an image."},
            {"name": "test_input_required_result_prompt", "description": "SEP-2322: a prompt that asks for context first."},
        ]}))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let argument = |key: &str| {
            request
                .arguments
                .as_ref()
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let user = |content: Value| json!({"role": "user", "content": content});
        let messages = match request.name.as_str() {
            "test_simple_prompt" => vec![user(
                json!({"type": "text", "text": "This is a simple prompt for testing."}),
            )],
            "test_prompt_with_arguments" => vec![user(json!({"type": "text", "text": format!(
                "Prompt with arguments: arg1='{}', arg2='{}'", argument("arg1"), argument("arg2")
            )}))],
            "test_prompt_with_embedded_resource" => vec![
                user(json!({"type": "resource", "resource": {
                    "uri": argument("resourceUri"), "mimeType": "text/plain",
                    "text": "Embedded resource content for testing.",
                }})),
                user(json!({"type": "text", "text": "Please process the embedded resource above."})),
            ],
            "test_prompt_with_image" => vec![
                user(json!({"type": "image", "data": PNG, "mimeType": "image/png"})),
                user(json!({"type": "text", "text": "Please analyze the image above."})),
            ],
            "test_input_required_result_prompt" => {
                let responses = responses_of(request.input_responses.as_ref());
                match responses.get("user_context") {
                    Some(a) if fits("elicitation/create", a) => vec![user(json!({"type": "text", "text": format!(
                        "Answer with this context in mind: {}", field(a, "context").unwrap_or("none")
                    )}))],
                    _ => {
                        return Ok(GetPromptResponse::InputRequired(from_json(json!({
                            "resultType": "input_required",
                            "inputRequests": {"user_context": form(
                                "What context should the prompt use?",
                                json!({"context": {"type": "string"}}),
                                &["context"],
                            )},
                        }))?));
                    }
                }
            }
            other => return Err(McpError::invalid_params(format!("unknown prompt {other}"), None)),
        };
        Ok(GetPromptResponse::Complete(complete::<GetPromptResult>(
            json!({"messages": messages}),
        )?))
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        const WORDS: [&str; 8] = ["paris", "park", "party", "test", "testing", "hello", "world", "data"];
        let prefix = request.argument.value.to_lowercase();
        let values: Vec<&str> = WORDS.iter().copied().filter(|w| w.starts_with(&prefix)).collect();
        complete(json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}))
    }

    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        Ok(())
    }
}

/// Refuses (400) and logs with the marker any request that is not a 2026-07-28 one:
/// the header and `_meta` must both name 2026-07-28. Bodyless GET and DELETE requests
/// are refused too (2026-07-28 has neither).
/// The `_meta` protocol version of a JSON-RPC message, read without building the
/// whole message.
fn meta_version(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Message {
        params: Option<Params>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(rename = "_meta")]
        meta: Option<Meta>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
        version: Option<String>,
    }
    serde_json::from_slice::<Message>(bytes).ok()?.params?.meta?.version
}

async fn modern_only(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 20).await else {
        return http::StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let header_ok = parts.headers.get("mcp-protocol-version").map(|v| v.as_bytes()) == Some(MODERN.as_bytes());
    let meta_ok = meta_version(&bytes).as_deref() == Some(MODERN);
    // Everything the layer sends rmcp in translation mode (requests, and any
    // notification it passes on) must carry both.
    if !(header_ok && meta_ok) {
        eprintln!(
            "LEGACY MESSAGE REACHED THE HANDLER: {} {} (header {:?}) {}",
            parts.method,
            parts.uri,
            parts.headers.get("mcp-protocol-version"),
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        );
        return (http::StatusCode::BAD_REQUEST, "not a 2026-07-28 request").into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

#[cfg(not(feature = "redis"))]
async fn with_redis(
    _builder: tower_mcp_session::McpSessionLayerBuilder,
    _url: &str,
    _max_sessions: Option<usize>,
) -> Result<tower_mcp_session::McpSessionLayerBuilder, String> {
    Err("--redis needs the `redis` feature: cargo run --all-features --example rmcp_modern -- --redis URL".to_owned())
}

struct Args {
    addr: SocketAddr,
    redis: Option<String>,
    /// `--lifetime S`: stop by itself after this long (the load harness sets it).
    lifetime: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8080".parse().expect("valid"),
        redis: None,
        lifetime: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--redis" => args.redis = Some(value()?),
            "--lifetime" => args.lifetime = Some(value()?.parse().map_err(|e| format!("--lifetime: {e}"))?),
            "-h" | "--help" => {
                println!("usage: rmcp_modern [--addr IP:PORT] [--redis URL] [--lifetime SECONDS]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("rmcp_modern: {e}");
        std::process::exit(2);
    });
    // `strict_modern_headers`: the layer itself refuses malformed 2026-07-28 requests
    // (header/_meta mismatch, missing _meta), as for the echo handler's translate run.
    let mut builder = McpSessionLayer::builder()
        .translate_to_modern(true)
        .strict_modern_headers(true);
    if let Some(url) = &args.redis {
        builder = with_redis(builder, url, None).await.unwrap_or_else(|e| {
            eprintln!("rmcp_modern: {e}");
            std::process::exit(2);
        });
    }
    let layer = builder.build();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_allowed_hosts(["localhost", "127.0.0.1", "::1"]);
    let handler = Everything::new();
    let rmcp = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let app = Router::new()
        .route_service("/mcp", rmcp)
        .layer(axum::middleware::from_fn(modern_only))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(args.addr).await.unwrap_or_else(|e| {
        eprintln!("rmcp_modern: cannot bind {}: {e}", args.addr);
        std::process::exit(1);
    });
    println!(
        "rmcp (2026-07-28 only) behind McpSessionLayer in translation mode on http://{}/mcp{}",
        listener.local_addr().expect("bound"),
        args.redis
            .as_deref()
            .map(|u| format!(" (sessions in {u})"))
            .unwrap_or_default()
    );
    let serving = axum::serve(listener, app);
    match args.lifetime {
        Some(seconds) => {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(seconds), serving).await;
        }
        None => serving.await.expect("server error"),
    }
}
