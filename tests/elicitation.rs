//! The echo example's elicitation tools (the conformance scenarios
//! `elicitation-sep1034-defaults`, `elicitation-sep1330-enums` and
//! `tools-call-elicitation`) over real sockets, with a scripted client: the tool call's
//! SSE stream is read on one connection, the `elicitation/create` request arrives on it,
//! the client's answer is POSTed on another connection, and the tool's result repeats
//! exactly what the client answered.

use std::net::SocketAddr;

use http::{Method, StatusCode};
use hyper::body::Incoming;
use mcp_test_support::http::{EchoOptions, SseReader, json};
use mcp_test_support::tcp::{self, HttpClient, client, read_body, req};
use serde_json::{Value, json};
use tower_mcp_session::McpSessionLayer;

struct Server {
    addr: SocketAddr,
    http: HttpClient,
    session: String,
}

impl Server {
    /// The echo server on a loopback port, and a session declaring `capabilities`.
    async fn start(capabilities: Value) -> Self {
        let layer = McpSessionLayer::new();
        let options = EchoOptions {
            sse_tool_calls: false,
            manager: Some(layer.manager()),
        };
        let addr = tcp::serve(&layer, options, true).await;
        let http = client();
        let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": capabilities,
            "clientInfo": {"name": "scripted-client", "version": "1.0"}}});
        let response = http
            .request(req(addr, Method::POST, None, Some(&initialize)))
            .await
            .unwrap();
        let (status, headers, body) = read_body(response).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let session = headers["mcp-session-id"].to_str().unwrap().to_owned();
        Self { addr, http, session }
    }

    /// Call tool `name` and read its stream up to its first message.
    async fn call(&self, name: &str, arguments: Value) -> (SseReader<Incoming>, Value) {
        let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}});
        let response = self
            .http
            .request(req(self.addr, Method::POST, Some(&self.session), Some(&call)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut stream = SseReader::new(response.into_body());
        let (_, first) = stream.next_message().await.expect("a first message");
        (stream, first)
    }

    /// Call tool `name`, which must ask `elicitation/create` first; the request.
    async fn elicitation(&self, name: &str, arguments: Value) -> (SseReader<Incoming>, Value) {
        let (stream, request) = self.call(name, arguments).await;
        assert_eq!(request["method"], "elicitation/create", "{request}");
        assert!(request["id"].is_string(), "a layer-minted id: {request}");
        (stream, request)
    }

    /// POST the client's `result` for `request` on a connection of its own.
    async fn answer(&self, request: &Value, result: Value) {
        let reply = json!({"jsonrpc": "2.0", "id": request["id"], "result": result});
        let response = client()
            .request(req(self.addr, Method::POST, Some(&self.session), Some(&reply)))
            .await
            .unwrap();
        let (status, _, body) = read_body(response).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&body));
    }
}

/// The tool's result, the last message of its stream: its text.
async fn tool_result(mut stream: SseReader<Incoming>) -> (String, bool) {
    let (_, message) = stream.next_message().await.expect("the tool's result");
    assert_eq!(message["id"], 7, "{message}");
    assert!(stream.next_message().await.is_none(), "the stream ends with the result");
    let text = message["result"]["content"][0]["text"].as_str().unwrap().to_owned();
    (text, message["result"]["isError"] == true)
}

/// `<lead>: action=<action>, content=<json>` split into the action and the content.
fn answered(text: &str, lead: &str) -> (String, Value) {
    let rest = text
        .strip_prefix(lead)
        .and_then(|t| t.strip_prefix(": action="))
        .unwrap_or_else(|| panic!("not a {lead} text: {text}"));
    let (action, content) = rest.split_once(", content=").expect("a content part");
    (action.to_owned(), json(content.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sep1034_defaults_reach_the_client_and_its_answer_reaches_the_tool() {
    let server = Server::start(json!({"elicitation": {"form": {}}})).await;
    let (stream, request) = server.elicitation("test_elicitation_sep1034_defaults", json!({})).await;
    let schema = &request["params"]["requestedSchema"];
    assert_eq!(schema["type"], "object");
    let expected = [
        ("name", "string", json!("John Doe")),
        ("age", "integer", json!(30)),
        ("score", "number", json!(95.5)),
        ("status", "string", json!("active")),
        ("verified", "boolean", json!(true)),
    ];
    let properties = schema["properties"].as_object().unwrap();
    assert_eq!(properties.len(), expected.len(), "{schema}");
    for (field, kind, default) in expected {
        assert_eq!(properties[field]["type"], kind, "{field}");
        assert_eq!(properties[field]["default"], default, "{field}");
    }
    assert_eq!(properties["status"]["enum"], json!(["active", "inactive", "pending"]));

    // The user changed every field.
    let content = json!({"name": "Jane Smith", "age": 25, "score": 88, "status": "inactive", "verified": false});
    server
        .answer(&request, json!({"action": "accept", "content": content}))
        .await;
    let (text, is_error) = tool_result(stream).await;
    assert!(!is_error, "{text}");
    assert_eq!(answered(&text, "Elicitation completed"), ("accept".to_owned(), content));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sep1330_enum_shapes_reach_the_client_and_the_picks_reach_the_tool() {
    // An empty `elicitation` capability means form mode.
    let server = Server::start(json!({"elicitation": {}})).await;
    let (stream, request) = server.elicitation("test_elicitation_sep1330_enums", json!({})).await;
    let p = &request["params"]["requestedSchema"]["properties"];
    let titled = |options: &Value| {
        let options = options.as_array().expect("an array of options");
        options.len() == 3 && options.iter().all(|o| o["const"].is_string() && o["title"].is_string())
    };
    assert_eq!(p["untitledSingle"]["type"], "string");
    assert_eq!(p["untitledSingle"]["enum"], json!(["option1", "option2", "option3"]));
    assert!(p["untitledSingle"].get("oneOf").is_none());
    assert_eq!(p["titledSingle"]["type"], "string");
    assert!(titled(&p["titledSingle"]["oneOf"]), "{p}");
    assert!(p["titledSingle"].get("enum").is_none());
    assert_eq!(p["legacyEnum"]["enum"], json!(["opt1", "opt2", "opt3"]));
    assert_eq!(p["legacyEnum"]["enumNames"].as_array().map(Vec::len), Some(3));
    assert_eq!(p["untitledMulti"]["type"], "array");
    assert_eq!(
        p["untitledMulti"]["items"]["enum"],
        json!(["option1", "option2", "option3"])
    );
    assert_eq!(p["titledMulti"]["type"], "array");
    assert!(titled(&p["titledMulti"]["items"]["anyOf"]), "{p}");
    assert!(p["titledMulti"]["items"].get("enum").is_none());

    let picks = json!({"untitledSingle": "option2", "titledSingle": "value3", "legacyEnum": "opt1",
        "untitledMulti": ["option1", "option3"], "titledMulti": ["value2"]});
    server
        .answer(&request, json!({"action": "accept", "content": picks}))
        .await;
    let (text, is_error) = tool_result(stream).await;
    assert!(!is_error, "{text}");
    assert_eq!(answered(&text, "Elicitation completed"), ("accept".to_owned(), picks));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_and_an_answer_without_action_are_reported_as_such() {
    let server = Server::start(json!({"elicitation": {"form": {}}})).await;
    let (stream, request) = server
        .elicitation("test_elicitation", json!({"message": "Who are you?"}))
        .await;
    assert_eq!(request["params"]["message"], "Who are you?");
    assert_eq!(
        request["params"]["requestedSchema"]["required"],
        json!(["username", "email"])
    );
    server.answer(&request, json!({"action": "decline"})).await;
    let (text, is_error) = tool_result(stream).await;
    assert!(!is_error, "{text}");
    assert_eq!(answered(&text, "User response"), ("decline".to_owned(), Value::Null));

    // A result that is no elicitation result: the tool says so instead of inventing one.
    let (stream, request) = server.elicitation("test_elicitation_sep1330_enums", json!({})).await;
    server.answer(&request, json!({"content": {}})).await;
    let (text, is_error) = tool_result(stream).await;
    assert!(is_error, "{text}");
    assert!(text.starts_with("the elicitation result has no action"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_form_mode_is_never_asked() {
    // URL mode only: the form the tools send is refused before anything is sent.
    let server = Server::start(json!({"elicitation": {"url": {}}})).await;
    for tool in ["test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums"] {
        let (mut stream, first) = server.call(tool, json!({})).await;
        assert_eq!(first["id"], 7, "the tool's result came first: {first}");
        assert_eq!(first["result"]["isError"], true);
        assert_eq!(
            first["result"]["content"][0]["text"],
            "the client did not declare the elicitation.form capability"
        );
        assert!(stream.next_message().await.is_none());
    }
}
