//! Translation mode and `x-mcp-header` (2026-07-28): a tool whose input schema marks
//! an argument for a header expects the client to repeat it in `Mcp-Param-<name>`. A
//! 2025-era client does not know that; the layer learns the annotations from the
//! `tools/list` answers it translates, looks up a tool it has not seen listed by
//! asking `tools/list` itself, and adds the headers to the calls.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_test_support::echo::{self, EchoBody};
use mcp_test_support::http as support;
use serde_json::{Value, json};
use support::*;
use tower::util::BoxCloneSyncService;
use tower_mcp_session::McpSessionLayer;

/// How the inner service answers `tools/list`.
#[derive(Clone, Copy)]
struct Listing {
    /// Two pages: `plain` first, then (after cursor `"page-2"`) `regional`.
    paged: bool,
    /// As an SSE stream (a notification, then the answer) instead of JSON.
    sse: bool,
}

/// The `tools/list` requests the inner service got.
type Lists = Arc<Mutex<Vec<Value>>>;

/// The echo server, whose tools are `plain` and `regional`, with `regional`'s `region`
/// argument marked for the `Mcp-Param-Region` header; a call without the header is
/// refused as a 2026-07-28 server does, one with it says what the header held.
fn app(listing: Listing) -> (App, Lists) {
    let lists: Lists = Arc::default();
    let layer = McpSessionLayer::builder().translate_to_modern(true).build();
    let seen = lists.clone();
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let message: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            assert_eq!(
                parts.headers.get("mcp-protocol-version").map(|v| v.as_bytes()),
                Some(&b"2026-07-28"[..]),
                "only 2026-07-28 requests reach the handler: {message}"
            );
            let answer = |status: StatusCode, value: Value, sse: bool| {
                let (text, kind) = if sse {
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/message",
                        "params": {"level": "info", "data": "listing"}});
                    (
                        format!("event: message\ndata: {note}\n\nevent: message\ndata: {value}\n\n"),
                        "text/event-stream",
                    )
                } else {
                    (value.to_string(), "application/json")
                };
                let mut response = Response::new(Full::new(Bytes::from(text)).boxed());
                *response.status_mut() = status;
                response.headers_mut().insert("content-type", kind.parse().unwrap());
                Ok::<Response<EchoBody>, Infallible>(response)
            };
            let id = message["id"].clone();
            let plain = json!({"name": "plain", "inputSchema": {"type": "object"}});
            let regional = json!({"name": "regional", "inputSchema": {"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"}}}});
            match message["method"].as_str() {
                Some("tools/list") => {
                    seen.lock().unwrap().push(message.clone());
                    let result = match (listing.paged, message["params"]["cursor"].as_str()) {
                        (false, _) => json!({"tools": [plain, regional]}),
                        (true, None) => json!({"tools": [plain], "nextCursor": "page-2"}),
                        (true, Some(_)) => json!({"tools": [regional]}),
                    };
                    let mut result = result;
                    result["resultType"] = json!("complete");
                    answer(
                        StatusCode::OK,
                        json!({"jsonrpc": "2.0", "id": id, "result": result}),
                        listing.sse,
                    )
                }
                Some("tools/call") if message["params"]["name"] == "regional" => {
                    let header = parts
                        .headers
                        .get("mcp-param-region")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let Some(header) = header else {
                        return answer(
                            StatusCode::BAD_REQUEST,
                            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32020,
                                "message": "Mcp-Param-Region is required"}}),
                            false,
                        );
                    };
                    answer(
                        StatusCode::OK,
                        json!({"jsonrpc": "2.0", "id": id, "result": {"resultType": "complete",
                            "content": [{"type": "text", "text": format!("served in {header}")}]}}),
                        false,
                    )
                }
                _ => Ok(echo::handle(EchoOptions::default(), Request::from_parts(parts, Full::new(bytes))).await),
            }
        }
    });
    (
        BoxCloneSyncService::new(tower::ServiceBuilder::new().layer(layer).service(inner)),
        lists,
    )
}

fn regional_call(id: u64, region: &str) -> Value {
    request(
        id,
        "tools/call",
        json!({"name": "regional", "arguments": {"region": region}}),
    )
}

/// The text a `tools/call` answer carries.
fn text(body: &[u8]) -> Value {
    json(body)["result"]["content"][0]["text"].clone()
}

/// The `tools/list` requests the layer sent of its own (not the client's).
fn lookups(lists: &Lists) -> Vec<Value> {
    lists
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m["id"] == "mcp-layer-tools")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_tool_called_before_any_listing_is_looked_up_through_every_page() {
    let (app, lists) = app(Listing {
        paged: true,
        sse: false,
    });
    let sid = initialize(&app, "2025-11-25").await;
    let (status, _, body) = send(&app, Some(&sid), &regional_call(2, "eu-west")).await;
    assert_eq!(status, 200);
    assert_eq!(text(&body), "served in eu-west", "{}", String::from_utf8_lossy(&body));
    let asked = lookups(&lists);
    assert_eq!(asked.len(), 2, "both pages were read: {asked:?}");
    assert_eq!(asked[1]["params"]["cursor"], "page-2");
    for lookup in &asked {
        assert_eq!(
            lookup["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"], "2026-07-28",
            "the lookup is a 2026-07-28 request with the session's _meta: {lookup}"
        );
        assert_eq!(
            lookup["params"]["_meta"]["io.modelcontextprotocol/clientInfo"]["name"],
            "test-client"
        );
    }

    // Known now: later calls, in this session or another, go straight in.
    let (_, _, body) = send(&app, Some(&sid), &regional_call(3, "us-east")).await;
    assert_eq!(text(&body), "served in us-east");
    let other = initialize(&app, "2025-06-18").await;
    let (_, _, body) = send(&app, Some(&other), &regional_call(4, "Zürich")).await;
    assert_eq!(
        text(&body),
        "served in =?base64?WsO8cmljaA==?=",
        "non-ASCII goes in the sentinel encoding"
    );
    assert_eq!(lookups(&lists).len(), 2, "no second lookup");
}

#[tokio::test]
async fn a_tool_the_client_listed_needs_no_lookup() {
    let (app, lists) = app(Listing {
        paged: false,
        sse: false,
    });
    let sid = initialize(&app, "2025-11-25").await;
    let (_, _, body) = send(&app, Some(&sid), &request(1, "tools/list", json!({}))).await;
    assert_eq!(json(&body)["result"]["tools"][1]["name"], "regional");
    let (_, _, body) = send(&app, Some(&sid), &regional_call(2, "eu-west")).await;
    assert_eq!(text(&body), "served in eu-west");
    // A tool listed as needing no header is known too: no lookup for it either.
    let plain = request(3, "tools/call", json!({"name": "plain", "arguments": {}}));
    let (status, _, _) = send(&app, Some(&sid), &plain).await;
    assert_eq!(status, 200);
    assert!(lookups(&lists).is_empty(), "{:?}", lookups(&lists));
}

#[tokio::test]
async fn a_streamed_listing_teaches_the_layer_too() {
    let (app, lists) = app(Listing {
        paged: false,
        sse: true,
    });
    let sid = initialize(&app, "2025-11-25").await;
    let (status, _, body) = send(&app, Some(&sid), &request(1, "tools/list", json!({}))).await;
    assert_eq!(status, 200);
    let answer = sse_messages(&body)
        .into_iter()
        .find(|m| m["id"] == 1)
        .expect("the listing's answer on the stream");
    assert_eq!(answer["result"]["tools"][1]["name"], "regional");
    let (_, _, body) = send(&app, Some(&sid), &regional_call(2, "eu-west")).await;
    assert_eq!(text(&body), "served in eu-west");
    assert!(
        lookups(&lists).is_empty(),
        "learnt from the stream: {:?}",
        lookups(&lists)
    );
}

#[tokio::test]
async fn calls_to_a_tool_nobody_lists_cost_one_lookup() {
    let (app, lists) = app(Listing {
        paged: false,
        sse: false,
    });
    let sid = initialize(&app, "2025-11-25").await;
    for id in 1..=3 {
        let call = request(id, "tools/call", json!({"name": "missing", "arguments": {"x": 1}}));
        let (status, _, body) = send(&app, Some(&sid), &call).await;
        assert_eq!(status, 200);
        let answer = json(&body);
        assert_eq!(answer["id"], id);
        assert!(
            answer.get("error").is_some() || answer["result"]["isError"] == true,
            "the server's own answer to an unknown tool: {answer}"
        );
    }
    assert_eq!(lookups(&lists).len(), 1, "looked up once, not on every call");
}
