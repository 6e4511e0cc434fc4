//! Translation mode and `x-mcp-header` (2026-07-28): a tool whose input schema marks
//! an argument for a header expects the client to repeat it in `Mcp-Param-<name>`. A
//! 2025-era client does not know that; the layer learns the annotations from the
//! `tools/list` answers it translates and adds the headers to the calls.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_test_support::echo::{self, EchoBody};
use mcp_test_support::http as support;
use serde_json::{Value, json};
use support::*;
use tower::util::BoxCloneSyncService;
use tower_mcp_session::McpSessionLayer;

/// The echo server, whose `tools/list` is one tool, `regional`, with its `region`
/// argument marked for the `Mcp-Param-Region` header; a call without the header is
/// refused as a 2026-07-28 server does, one with it says what the header held.
fn app() -> App {
    let layer = McpSessionLayer::builder().translate_to_modern(true).build();
    let inner = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let (parts, body) = req.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let message: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let json_answer = |status: StatusCode, value: Value| {
            let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok::<Response<EchoBody>, Infallible>(response)
        };
        let id = message["id"].clone();
        match message["method"].as_str() {
            Some("tools/list") => json_answer(
                StatusCode::OK,
                json!({"jsonrpc": "2.0", "id": id, "result": {"resultType": "complete", "tools": [
                    {"name": "regional", "inputSchema": {"type": "object", "properties": {
                        "region": {"type": "string", "x-mcp-header": "Region"}}}}]}}),
            ),
            Some("tools/call") if message["params"]["name"] == "regional" => {
                let header = parts
                    .headers
                    .get("mcp-param-region")
                    .map(|v| v.to_str().unwrap().to_owned());
                if header.is_none() {
                    return json_answer(
                        StatusCode::BAD_REQUEST,
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32020,
                            "message": "Mcp-Param-Region is required"}}),
                    );
                }
                json_answer(
                    StatusCode::OK,
                    json!({"jsonrpc": "2.0", "id": id, "result": {"resultType": "complete",
                        "content": [{"type": "text", "text": format!("served in {}", header.unwrap())}]}}),
                )
            }
            _ => Ok(echo::handle(EchoOptions::default(), Request::from_parts(parts, Full::new(bytes))).await),
        }
    });
    BoxCloneSyncService::new(tower::ServiceBuilder::new().layer(layer).service(inner))
}

#[tokio::test]
async fn a_listed_tool_gets_its_param_headers_on_every_call() {
    let app = app();
    let sid = initialize(&app, "2025-11-25").await;
    let call = request(
        2,
        "tools/call",
        json!({"name": "regional", "arguments": {"region": "eu-west"}}),
    );
    // Before the client listed the tools, the layer does not know the annotation: the
    // server's refusal reaches the client as a JSON-RPC error answer.
    let (status, _, body) = send(&app, Some(&sid), &call).await;
    assert_eq!(status, 200);
    assert!(json(&body)["error"].is_object(), "{}", String::from_utf8_lossy(&body));

    let (_, _, body) = send(&app, Some(&sid), &request(1, "tools/list", json!({}))).await;
    assert_eq!(json(&body)["result"]["tools"][0]["name"], "regional");
    let (status, _, body) = send(&app, Some(&sid), &call).await;
    assert_eq!(status, 200);
    assert_eq!(
        json(&body)["result"]["content"][0]["text"],
        "served in eu-west",
        "{}",
        String::from_utf8_lossy(&body)
    );
    // Another session of the same layer benefits too: the tools are the server's.
    let other = initialize(&app, "2025-06-18").await;
    let call = request(
        3,
        "tools/call",
        json!({"name": "regional", "arguments": {"region": "Zürich"}}),
    );
    let (_, _, body) = send(&app, Some(&other), &call).await;
    assert_eq!(
        json(&body)["result"]["content"][0]["text"],
        "served in =?base64?WsO8cmljaA==?=",
        "non-ASCII goes in the sentinel encoding"
    );
}
