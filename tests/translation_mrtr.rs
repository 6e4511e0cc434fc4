//! Translation mode's multi round-trip requests: a 2026-07-28-only handler asks for
//! client input with `InputRequiredResult`; a 2025-era client gets server → client
//! requests on its call's stream, answers them, and sees one final answer under its own
//! id. The inner service is the echo server behind the guard of
//! `mcp_test_support::modern_only`, which proves it never saw a legacy message.

use mcp_test_support::http as support;
use mcp_test_support::modern_only::{Shared, methods, modern_only_app, no_legacy_reached, translating};

use serde_json::{Value, json};
use support::*;
use tower_mcp_session::{McpBody, McpSessionLayer};

/// A session of a client declaring `capabilities` in `version`.
async fn session(app: &App, version: &str, capabilities: Value) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": capabilities,
        "clientInfo": {"name": "mrtr-client", "version": "1.0"}}});
    let (status, headers, body) = send(app, None, &init).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    headers["mcp-session-id"].to_str().unwrap().to_owned()
}

/// Call tool `name`; the answer must be a stream.
async fn call_tool(app: &App, sid: &str, id: u64, name: &str, arguments: Value) -> SseReader<McpBody<EchoBody>> {
    let call = request(id, "tools/call", json!({"name": name, "arguments": arguments}));
    let response = support::call(app, with_body(post().header("mcp-session-id", sid), &call)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    SseReader::new(response.into_body())
}

/// POST the client's answer `reply` (a `result` or an `error` member) to `request`.
async fn answer(app: &App, sid: &str, request: &Value, reply: (&str, Value)) {
    let mut message = json!({"jsonrpc": "2.0", "id": request["id"]});
    message[reply.0] = reply.1;
    let (status, _, body) = send(app, Some(sid), &message).await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
}

const SAMPLING: &str = "sampling";

fn sample(text: &str) -> (&'static str, Value) {
    (
        "result",
        json!({"role": "assistant", "content": {"type": "text", "text": text}, "model": "test-model"}),
    )
}

/// The tool calls the inner service got (each a modern request).
fn tool_calls(seen: &Shared) -> Vec<Value> {
    let seen = seen.lock().unwrap();
    seen.requests
        .iter()
        .filter(|(_, m)| m["method"] == "tools/call")
        .map(|(_, m)| m.clone())
        .collect()
}

fn apps() -> Vec<(&'static str, McpSessionLayer, EchoOptions)> {
    // The handler answers with JSON or with a stream: the rounds are the same.
    [false, true]
        .into_iter()
        .map(|sse| {
            let options = EchoOptions {
                sse_tool_calls: sse,
                manager: None,
            };
            (if sse { "sse" } else { "json" }, translating(), options)
        })
        .collect()
}

#[tokio::test]
async fn sampling_through_mrtr_is_one_request_and_one_answer_for_the_client() {
    for (label, layer, options) in apps() {
        let (app, seen) = modern_only_app(&layer, options);
        let sid = session(&app, "2025-11-25", json!({SAMPLING: {}})).await;
        let mut stream = call_tool(&app, &sid, 7, "test_sampling", json!({"prompt": "Say hi"})).await;
        let (_, asked) = stream.next_message().await.expect("the sampling request");
        assert_eq!(asked["method"], "sampling/createMessage", "{label}: {asked}");
        assert!(
            asked["id"].as_str().is_some_and(|id| id.starts_with("mcp-srv-")),
            "{asked}"
        );
        assert_eq!(asked["params"]["messages"][0]["content"]["text"], "Say hi");
        assert_eq!(asked["params"]["maxTokens"], 100);
        answer(&app, &sid, &asked, sample("hi there")).await;
        let (_, done) = stream.next_message().await.expect("the final answer");
        assert_eq!(done["id"], 7, "{label}: the client's own id: {done}");
        assert_eq!(done["result"]["content"][0]["text"], "LLM response: hi there", "{done}");
        assert!(done["result"].get("resultType").is_none(), "{done}");
        assert!(
            stream.next_message().await.is_none(),
            "{label}: the stream ends with the answer"
        );

        let calls = tool_calls(&seen);
        assert_eq!(calls.len(), 2, "{label}: the call and one retry: {calls:?}");
        let retry = &calls[1]["params"];
        assert_ne!(calls[1]["id"], calls[0]["id"], "a retry goes under a new id");
        assert_eq!(retry["requestState"], "echo:test_sampling:asked", "the state exactly");
        assert_eq!(retry["inputResponses"]["ask"]["content"]["text"], "hi there");
        assert_eq!(retry["arguments"]["prompt"], "Say hi", "the original params stay");
        assert!(calls[0]["params"].get("inputResponses").is_none());
        assert_eq!(
            methods(&seen),
            ["server/discover", "tools/list", "tools/call", "tools/call"],
            "{label}: the layer looked the tool up first (its `Mcp-Param-*` headers)"
        );
        no_legacy_reached(&seen);
    }
}

#[tokio::test]
async fn elicitation_rounds_keep_the_form_and_the_users_answer() {
    let (app, seen) = modern_only_app(&translating(), EchoOptions::default());
    let sid = session(&app, "2025-11-25", json!({"elicitation": {"form": {}}})).await;
    let mut stream = call_tool(&app, &sid, 3, "test_elicitation_sep1330_enums", json!({})).await;
    let (_, asked) = stream.next_message().await.unwrap();
    assert_eq!(asked["method"], "elicitation/create", "{asked}");
    let schema = &asked["params"]["requestedSchema"]["properties"];
    assert_eq!(schema["legacyEnum"]["enumNames"][0], "Option One", "{asked}");
    let content = json!({"untitledSingle": "option2", "titledMulti": ["value1", "value3"]});
    answer(
        &app,
        &sid,
        &asked,
        ("result", json!({"action": "accept", "content": content})),
    )
    .await;
    let (_, done) = stream.next_message().await.unwrap();
    assert_eq!(done["id"], 3);
    let text = done["result"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, format!("Elicitation completed: action=accept, content={content}"));
    no_legacy_reached(&seen);
}

#[tokio::test]
async fn elicitation_loses_its_mode_for_a_2025_06_18_client() {
    let (app, seen) = modern_only_app(&translating(), EchoOptions::default());
    let sid = session(&app, "2025-06-18", json!({"elicitation": {}})).await;
    let mut stream = call_tool(&app, &sid, 4, "test_elicitation", json!({"message": "Who are you?"})).await;
    let (_, asked) = stream.next_message().await.unwrap();
    assert_eq!(asked["method"], "elicitation/create");
    assert_eq!(asked["params"]["message"], "Who are you?");
    assert!(asked["params"].get("mode").is_none(), "2025-06-18 has no mode: {asked}");
    answer(&app, &sid, &asked, ("result", json!({"action": "decline"}))).await;
    let (_, done) = stream.next_message().await.unwrap();
    assert_eq!(
        done["result"]["content"][0]["text"],
        "User response: action=decline, content=null"
    );
    no_legacy_reached(&seen);
}

#[tokio::test]
async fn a_client_error_ends_the_request_with_that_error() {
    let (app, seen) = modern_only_app(&translating(), EchoOptions::default());
    let sid = session(&app, "2025-11-25", json!({SAMPLING: {}})).await;
    let mut stream = call_tool(&app, &sid, 9, "test_sampling", json!({"prompt": "no"})).await;
    let (_, asked) = stream.next_message().await.unwrap();
    let refusal = json!({"code": -1, "message": "User rejected sampling"});
    answer(&app, &sid, &asked, ("error", refusal.clone())).await;
    let (_, done) = stream.next_message().await.unwrap();
    assert_eq!(done["id"], 9);
    assert_eq!(done["error"]["code"], -1, "{done}");
    assert_eq!(done["error"]["message"], "User rejected sampling");
    assert!(stream.next_message().await.is_none());
    // 2026-07-28 cannot carry an error in `inputResponses`: no retry went in.
    assert_eq!(tool_calls(&seen).len(), 1);
    no_legacy_reached(&seen);
}

#[tokio::test]
async fn input_the_client_cannot_give_is_an_error_answer_not_a_request() {
    let (app, seen) = modern_only_app(&translating(), EchoOptions::default());
    // No sampling capability declared.
    let sid = session(&app, "2025-11-25", json!({"roots": {}})).await;
    let mut stream = call_tool(&app, &sid, 5, "test_sampling", json!({"prompt": "x"})).await;
    let (_, done) = stream.next_message().await.unwrap();
    assert_eq!(done["id"], 5, "no request reached the client: {done}");
    assert_eq!(done["error"]["code"], -32603, "{done}");
    assert!(stream.next_message().await.is_none());
    no_legacy_reached(&seen);
}

#[tokio::test]
async fn a_round_in_progress_resumes_on_a_new_connection() {
    let (app, seen) = modern_only_app(&translating(), EchoOptions::default());
    let sid = session(&app, "2025-11-25", json!({SAMPLING: {}})).await;
    let mut stream = call_tool(&app, &sid, 6, "test_sampling", json!({"prompt": "resume me"})).await;
    // The priming event (no data) gives the cursor; the client drops the connection
    // right after it, before reading the request.
    let priming = stream.next_event().await.expect("a priming event");
    assert!(priming.data.is_empty(), "{priming:?}");
    let cursor = priming.id.expect("an event id");
    drop(stream);
    let resume = empty(get().header("mcp-session-id", &sid).header("last-event-id", &cursor));
    let response = support::call(&app, resume).await;
    assert_eq!(response.status(), 200);
    let mut resumed = SseReader::new(response.into_body());
    let (_, asked) = resumed.next_message().await.expect("the request, again");
    assert_eq!(asked["method"], "sampling/createMessage");
    answer(&app, &sid, &asked, sample("resumed")).await;
    let (_, done) = resumed.next_message().await.expect("the final answer");
    assert_eq!(done["id"], 6);
    assert_eq!(done["result"]["content"][0]["text"], "LLM response: resumed");
    assert!(resumed.next_message().await.is_none(), "exactly the rest");
    no_legacy_reached(&seen);
}

#[tokio::test]
async fn a_server_that_keeps_asking_is_cut_off_after_the_round_bound() {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::Request;
    use http_body_util::{BodyExt, Full};
    use tower::util::BoxCloneSyncService;

    // Every `tools/call` asks again, whatever it carries; the rest is the echo server.
    let inner = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let (parts, body) = req.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let message: Value = serde_json::from_slice(&bytes).unwrap();
        if message["method"] == "tools/call" {
            let asked = json!({"jsonrpc": "2.0", "id": message["id"], "result": {
                "resultType": "input_required",
                "inputRequests": {"again": {"method": "roots/list"}},
                "requestState": "more"}});
            let response = http::Response::builder()
                .header("content-type", "application/json")
                .body(
                    Full::new(Bytes::from(asked.to_string()))
                        .map_err(|e| match e {})
                        .boxed(),
                )
                .unwrap();
            return Ok::<_, Infallible>(response);
        }
        Ok(mcp_test_support::echo::handle(EchoOptions::default(), Request::from_parts(parts, Full::new(bytes))).await)
    });
    let layer = translating();
    let app: App = BoxCloneSyncService::new(tower::ServiceBuilder::new().layer(layer).service(inner));
    let sid = session(&app, "2025-11-25", json!({"roots": {}})).await;
    let mut stream = call_tool(&app, &sid, 8, "anything", json!({})).await;
    let mut asked_times = 0;
    let done = loop {
        let (_, message) = stream.next_message().await.expect("a request or the answer");
        if message["method"] == "roots/list" {
            asked_times += 1;
            answer(&app, &sid, &message, ("result", json!({"roots": []}))).await;
            continue;
        }
        break message;
    };
    assert_eq!(asked_times, 8, "the round bound");
    assert_eq!(done["id"], 8);
    assert_eq!(done["error"]["code"], -32603, "{done}");
    assert!(stream.next_message().await.is_none());
}
