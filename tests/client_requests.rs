//! Server → client requests (`Session::request`, `SessionManager::request`) on one
//! instance with the memory backends: the request goes on the POST's stream or the GET
//! stream, the client's answer reaches exactly its asker, and everything else — another
//! session's answer, a forged or repeated id, an undeclared capability — is refused.
//! The two-instance version over Redis is in `redis_layer.rs`.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use mcp_test_support::http as support;
use serde_json::{Value, json};
use support::{App, SseReader, app, assert_rejected, call, empty, get, post, send, with_body};
use tower_mcp_session::{McpSessionLayer, RequestError, SessionId};

/// `initialize` declaring what the client can be asked.
fn initialize_with(capabilities: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": capabilities,
        "clientInfo": {"name": "asked-client", "version": "1.0"}}})
}

async fn session_with(app: &App, capabilities: Value) -> String {
    let (status, headers, body) = send(app, None, &initialize_with(capabilities)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    headers["mcp-session-id"].to_str().unwrap().to_owned()
}

fn tool_call(id: u64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

/// Start `test_sampling` and read its stream up to the request the layer sent.
async fn sampling_started(
    app: &App,
    session: &str,
) -> (
    SseReader<tower_mcp_session::McpBody<support::EchoBody>>,
    String,
    Option<String>,
) {
    let req = with_body(
        post().header("mcp-session-id", session),
        &tool_call(7, "test_sampling", json!({"prompt": "hello"})),
    );
    let response = call(app, req).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut reader = SseReader::new(response.into_body());
    let (event_id, request) = reader.next_message().await.expect("the sampling request");
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    assert_eq!(request["params"]["messages"][0]["content"]["text"], "hello");
    let id = request["id"].as_str().expect("a string id").to_owned();
    (reader, id, event_id)
}

fn answer(id: &str, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {
        "role": "assistant", "content": {"type": "text", "text": text}, "model": "m", "stopReason": "endTurn"}})
}

#[tokio::test]
async fn a_tool_asks_on_its_own_stream_and_gets_the_answer() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let session = session_with(&app, json!({"sampling": {}})).await;
    let (mut reader, id, event_id) = sampling_started(&app, &session).await;
    // The request is an event of the resumable stream, under a layer-minted id.
    assert!(event_id.is_some(), "the request carries an event id");
    assert!(id.starts_with("mcp-srv-") && id.len() == 40, "{id}");

    let (status, _, body) = send(&app, Some(&session), &answer(&id, "hi there")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&body));
    let (_, result) = reader.next_message().await.expect("the tool's answer");
    assert_eq!(result["id"], 7);
    assert_eq!(result["result"]["content"][0]["text"], "LLM response: hi there");
    assert!(reader.next_message().await.is_none(), "the stream ends with the answer");

    // Answered once: the same id again is refused, not delivered twice.
    let (status, _, body) = send(&app, Some(&session), &answer(&id, "again")).await;
    assert_rejected(status, &body, 400, -32600, "unexpected_response");
}

#[tokio::test]
async fn answers_from_elsewhere_never_reach_the_asker() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let victim = session_with(&app, json!({"sampling": {}})).await;
    let attacker = session_with(&app, json!({"sampling": {}})).await;
    let (mut reader, id, _) = sampling_started(&app, &victim).await;

    // No session at all.
    let (status, _, body) = send(&app, None, &answer(&id, "injected")).await;
    assert_rejected(status, &body, 400, -32000, "session_id_required");
    // Another session: its reply streams are its own.
    let (status, _, body) = send(&app, Some(&attacker), &answer(&id, "injected")).await;
    assert_rejected(status, &body, 400, -32600, "unexpected_response");
    // A minted-looking id nobody minted, in the right session.
    let forged = format!("mcp-srv-{}", "0".repeat(32));
    let (status, _, body) = send(&app, Some(&victim), &answer(&forged, "injected")).await;
    assert_rejected(status, &body, 400, -32600, "unexpected_response");
    // An error answer with a wrong id changes nothing either.
    let wrong_error = json!({"jsonrpc": "2.0", "id": forged, "error": {"code": -1, "message": "x"}});
    let (status, _, body) = send(&app, Some(&victim), &wrong_error).await;
    assert_rejected(status, &body, 400, -32600, "unexpected_response");

    let (status, _, _) = send(&app, Some(&victim), &answer(&id, "genuine")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, result) = reader.next_message().await.unwrap();
    assert_eq!(result["result"]["content"][0]["text"], "LLM response: genuine");
}

#[tokio::test]
async fn a_client_that_drops_resumes_and_still_answers() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let session = session_with(&app, json!({"sampling": {}})).await;
    let (reader, id, event_id) = sampling_started(&app, &session).await;
    drop(reader); // disconnect is not cancellation

    let (status, _, _) = send(&app, Some(&session), &answer(&id, "after the drop")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let resume = get()
        .header("mcp-session-id", &session)
        .header("last-event-id", event_id.unwrap());
    let response = call(&app, empty(resume)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut reader = SseReader::new(response.into_body());
    let (_, result) = reader.next_message().await.expect("the answer after the resume");
    assert_eq!(result["id"], 7);
    assert_eq!(result["result"]["content"][0]["text"], "LLM response: after the drop");
}

#[tokio::test]
async fn an_undeclared_capability_is_refused_before_anything_is_sent() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let session = session_with(&app, json!({"roots": {}})).await;
    let req = with_body(
        post().header("mcp-session-id", &session),
        &tool_call(3, "test_elicitation", json!({"message": "name?"})),
    );
    let response = call(&app, req).await;
    let mut reader = SseReader::new(response.into_body());
    let (_, only) = reader.next_message().await.unwrap();
    assert_eq!(only["id"], 3, "no request went to the client first: {only}");
    assert_eq!(
        only["result"]["content"][0]["text"],
        "the client did not declare the elicitation capability"
    );

    let manager = layer.manager();
    let id = SessionId::parse(&session).unwrap();
    let asked = manager
        .request(&id, "sampling/createMessage", json!({"messages": []}))
        .await;
    assert_eq!(asked, Err(RequestError::NotDeclared { capability: "sampling" }));
    let url = json!({"mode": "url", "url": "https://example.com/x", "message": "m", "elicitationId": "e"});
    let session = session_with(&app, json!({"elicitation": {"form": {}}})).await;
    let id = SessionId::parse(&session).unwrap();
    let asked = manager.request(&id, "elicitation/create", url).await;
    assert_eq!(
        asked,
        Err(RequestError::NotDeclared {
            capability: "elicitation.url"
        })
    );
}

/// Open the session's GET stream.
async fn listen(app: &App, session: &str) -> SseReader<tower_mcp_session::McpBody<support::EchoBody>> {
    let response = call(app, empty(get().header("mcp-session-id", session))).await;
    assert_eq!(response.status(), StatusCode::OK);
    SseReader::new(response.into_body())
}

#[tokio::test]
async fn the_manager_asks_on_the_get_stream_even_before_the_client_listens() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let session = session_with(&app, json!({"roots": {"listChanged": true}})).await;
    let id = SessionId::parse(&session).unwrap();
    let manager = layer.manager();
    let asking = tokio::spawn(async move { manager.request(&id, "roots/list", Value::Null).await });
    // Nobody listens yet: the request waits in the standalone stream.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut stream = listen(&app, &session).await;
    let (_, request) = stream.next_message().await.unwrap();
    assert_eq!(request["method"], "roots/list");
    assert!(request.get("params").is_none(), "no params were given: {request}");
    let reply = json!({"jsonrpc": "2.0", "id": request["id"], "result": {"roots": [{"uri": "file:///w"}]}});
    let (status, _, _) = send(&app, Some(&session), &reply).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let got = asking.await.unwrap().unwrap();
    assert_eq!(got["roots"][0]["uri"], "file:///w");
}

#[tokio::test]
async fn errors_cancellation_timeout_and_session_end_are_told_apart() {
    let layer = McpSessionLayer::builder()
        .client_request_timeout(Duration::from_millis(300))
        .build();
    let app = app(&layer);
    let manager = layer.manager();
    let session = session_with(&app, json!({"roots": {}})).await;
    let id = SessionId::parse(&session).unwrap();
    let mut stream = listen(&app, &session).await;

    let ask = |manager: tower_mcp_session::SessionManager, id: SessionId| {
        tokio::spawn(async move { manager.request(&id, "roots/list", Value::Null).await })
    };

    // The client answers with an error.
    let asking = ask(manager.clone(), id.clone());
    let (_, request) = stream.next_message().await.unwrap();
    let refusal = json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "no roots"}});
    assert_eq!(send(&app, Some(&session), &refusal).await.0, StatusCode::ACCEPTED);
    assert_eq!(
        asking.await.unwrap(),
        Err(RequestError::Rejected {
            code: -32601,
            message: "no roots".into(),
            data: None
        })
    );

    // The client cancels.
    let asking = ask(manager.clone(), id.clone());
    let (_, request) = stream.next_message().await.unwrap();
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": request["id"], "reason": "user declined"}});
    assert_eq!(send(&app, Some(&session), &cancel).await.0, StatusCode::ACCEPTED);
    assert_eq!(
        asking.await.unwrap(),
        Err(RequestError::Cancelled {
            reason: Some("user declined".into())
        })
    );

    // Nobody answers: timeout, the client is told, and a late answer is refused.
    let asking = ask(manager.clone(), id.clone());
    let (_, request) = stream.next_message().await.unwrap();
    assert_eq!(asking.await.unwrap(), Err(RequestError::Timeout));
    let (_, notice) = stream.next_message().await.unwrap();
    assert_eq!(notice["method"], "notifications/cancelled");
    assert_eq!(notice["params"]["requestId"], request["id"]);
    let late = json!({"jsonrpc": "2.0", "id": request["id"], "result": {"roots": []}});
    let (status, _, body) = send(&app, Some(&session), &late).await;
    assert_rejected(status, &body, 400, -32600, "unexpected_response");

    // The session ends while a request waits.
    let asking = ask(manager.clone(), id.clone());
    let _ = stream.next_message().await.unwrap();
    let response = call(&app, empty(support::delete().header("mcp-session-id", &session))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(asking.await.unwrap(), Err(RequestError::SessionEnded));
}

#[tokio::test]
async fn dropping_the_future_withdraws_the_request() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let session = session_with(&app, json!({"roots": {}})).await;
    let id = SessionId::parse(&session).unwrap();
    let mut stream = listen(&app, &session).await;
    let manager = layer.manager();
    let asking = tokio::spawn(async move { manager.request(&id, "roots/list", Value::Null).await });
    let (_, request) = stream.next_message().await.unwrap();
    asking.abort();
    let _ = asking.await;
    let (_, notice) = stream.next_message().await.unwrap();
    assert_eq!(notice["method"], "notifications/cancelled");
    assert_eq!(notice["params"]["requestId"], request["id"]);
    let late = json!({"jsonrpc": "2.0", "id": request["id"], "result": {"roots": []}});
    let (status, _, body) = send(&app, Some(&session), &late).await;
    assert_rejected(status, &body, 400, -32600, "unexpected_response");
}

#[tokio::test]
async fn answers_to_ids_the_layer_did_not_mint_still_reach_the_inner_service() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let session = session_with(&app, json!({})).await;
    // The echo server answers every response it gets with 202; the layer does not
    // claim ids it did not mint, whatever they look like.
    for id in [json!(5), json!("echo-1"), json!("mcp-srv-short")] {
        let reply = json!({"jsonrpc": "2.0", "id": id, "result": {}});
        let (status, _, body) = send(&app, Some(&session), &reply).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{id}: {}", String::from_utf8_lossy(&body));
    }
}

#[tokio::test]
async fn subscriptions_and_log_level_are_recorded_for_the_session() {
    let layer = McpSessionLayer::builder().max_attribute_bytes(512).build();
    let app = app(&layer);
    let session = session_with(&app, json!({})).await;
    let id = SessionId::parse(&session).unwrap();
    let subscribe =
        |uri: &str| json!({"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": uri}});
    let unsubscribe =
        |uri: &str| json!({"jsonrpc": "2.0", "id": 2, "method": "resources/unsubscribe", "params": {"uri": uri}});
    for uri in ["file:///a", "file:///b", "file:///a"] {
        send(&app, Some(&session), &subscribe(uri)).await;
    }
    send(&app, Some(&session), &unsubscribe("file:///b")).await;
    let level = json!({"jsonrpc": "2.0", "id": 3, "method": "logging/setLevel", "params": {"level": "warning"}});
    send(&app, Some(&session), &level).await;
    // A level that is not one is the inner service's to refuse and is not recorded.
    let bogus = json!({"jsonrpc": "2.0", "id": 4, "method": "logging/setLevel", "params": {"level": "loud"}});
    send(&app, Some(&session), &bogus).await;

    let handle = layer.manager().session(&id).await.unwrap().unwrap();
    assert_eq!(handle.subscriptions().await.unwrap(), vec!["file:///a".to_owned()]);
    assert_eq!(handle.log_level().await.unwrap().as_deref(), Some("warning"));

    // Subscriptions live under the attribute bounds: past them, a clear refusal.
    let long = format!("file:///{}", "x".repeat(600));
    let (status, _, body) = send(&app, Some(&session), &subscribe(&long)).await;
    assert_rejected(status, &body, 400, -32602, "subscription_limit");
    assert_eq!(support::json(&body)["id"], 1);
    assert_eq!(handle.subscriptions().await.unwrap(), vec!["file:///a".to_owned()]);
}

#[tokio::test]
async fn a_handler_that_asks_before_answering_with_json_uses_the_get_stream() {
    use std::convert::Infallible;
    use tower::ServiceExt;
    use tower_mcp_session::Session;

    trait CollectBytes {
        async fn collect_bytes(self) -> Bytes;
    }
    impl CollectBytes for http_body_util::Full<Bytes> {
        async fn collect_bytes(self) -> Bytes {
            http_body_util::BodyExt::collect(self).await.unwrap().to_bytes()
        }
    }

    // A hand-written handler: asks the client, then answers the tool call with JSON.
    let inner = tower::service_fn(|req: http::Request<http_body_util::Full<Bytes>>| async move {
        let session = req.extensions().get::<Session>().cloned();
        let message: Value = serde_json::from_slice(req.body().clone().collect_bytes().await.as_ref()).unwrap();
        let body = match session.filter(|_| message["method"] == "tools/call") {
            Some(session) => {
                let roots = session.request("roots/list", Value::Null).await;
                json!({"jsonrpc": "2.0", "id": 1, "result": {"roots": roots.ok()}})
            }
            None if message["method"] == "initialize" => json!({"jsonrpc": "2.0", "id": 0, "result": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "s", "version": "1"}}}),
            None => Value::Null,
        };
        let response = http::Response::builder()
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(body.to_string())))
            .unwrap();
        Ok::<_, Infallible>(response)
    });
    let layer = McpSessionLayer::new();
    let service = tower::ServiceBuilder::new().layer(layer.clone()).service(inner);
    let init = with_body(post(), &initialize_with(json!({"roots": {}})));
    let response = service.clone().oneshot(init).await.unwrap();
    let session = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();

    let get = service
        .clone()
        .oneshot(empty(get().header("mcp-session-id", &session)))
        .await
        .unwrap();
    let mut stream = SseReader::new(get.into_body());
    let call = tool_call(1, "x", json!({}));
    let calling = tokio::spawn({
        let service = service.clone();
        let req = with_body(post().header("mcp-session-id", &session), &call);
        async move { service.oneshot(req).await.unwrap() }
    });
    let (_, request) = stream.next_message().await.expect("the request on the GET stream");
    assert_eq!(request["method"], "roots/list");
    let reply = json!({"jsonrpc": "2.0", "id": request["id"], "result": {"roots": []}});
    let answered = service
        .clone()
        .oneshot(with_body(post().header("mcp-session-id", &session), &reply))
        .await
        .unwrap();
    assert_eq!(answered.status(), StatusCode::ACCEPTED);
    let response = calling.await.unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(support::json(&body)["result"]["roots"], json!({"roots": []}));
}

/// 2025-03-26 clients may answer inside a batch: the layer takes out the answers to its
/// own requests and passes the rest on.
#[tokio::test]
async fn answers_inside_a_2025_03_26_batch_reach_the_asker() {
    let layer = McpSessionLayer::new();
    let app = app(&layer);
    let mut init = initialize_with(json!({"sampling": {}}));
    init["params"]["protocolVersion"] = json!("2025-03-26");
    let (status, headers, _) = send(&app, None, &init).await;
    assert_eq!(status, StatusCode::OK);
    let session = headers["mcp-session-id"].to_str().unwrap().to_owned();

    // The answer beside a request: the answer is delivered, the request answered.
    let (mut reader, id, _) = sampling_started(&app, &session).await;
    let forged = format!("mcp-srv-{}", "e".repeat(32));
    let batch = json!([
        answer(&forged, "injected"),
        answer(&id, "batched"),
        {"jsonrpc": "2.0", "id": 11, "method": "ping"},
    ]);
    let (status, _, body) = send(&app, Some(&session), &batch).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answers: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        answers.as_array().map(Vec::len),
        Some(1),
        "only the ping is answered: {answers}"
    );
    assert_eq!(answers[0]["id"], 11);
    let (_, result) = reader.next_message().await.expect("the tool's answer");
    assert_eq!(result["result"]["content"][0]["text"], "LLM response: batched");

    // A batch of nothing but an answer: 202, delivered.
    let (mut reader, id, _) = sampling_started(&app, &session).await;
    let (status, _, _) = send(&app, Some(&session), &json!([answer(&id, "alone")])).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, result) = reader.next_message().await.expect("the tool's answer");
    assert_eq!(result["result"]["content"][0]["text"], "LLM response: alone");
    // The same answer again is dropped, not delivered twice nor forwarded.
    let (status, _, _) = send(&app, Some(&session), &json!([answer(&id, "again")])).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        reader.next_message().await.is_none(),
        "the stream ended with the one answer"
    );
}
