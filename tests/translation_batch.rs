//! Translation mode and 2025-03-26 batches: a 2026-07-28 inner service takes no
//! batches, so the layer sends each message on its own and answers the batch as one —
//! a JSON array, or one SSE stream when a request's answer streams. The inner service
//! is the echo server behind the guard of `mcp_test_support::modern_only`.

use std::collections::BTreeMap;

use mcp_test_support::http as support;
use mcp_test_support::modern_only::{methods, modern_only_app, no_legacy_reached, translating};
use serde_json::{Value, json};
use support::*;

async fn batch(app: &App, sid: &str, items: Value) -> (u16, String, Vec<u8>) {
    let response = support::call(app, with_body(post().header("mcp-session-id", sid), &items)).await;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = read_all(response.into_body()).await.to_vec();
    (status, content_type, body)
}

/// The answers by id.
fn by_id(answers: Vec<Value>) -> BTreeMap<u64, Value> {
    answers
        .into_iter()
        .filter(|m| m.get("id").is_some())
        .map(|m| (m["id"].as_u64().expect("the client's numeric id"), m))
        .collect()
}

#[tokio::test]
async fn a_batch_of_json_answers_is_answered_with_one_array() {
    let (app, seen) = modern_only_app(&translating(), EchoOptions::default());
    let sid = initialize(&app, "2025-03-26").await;
    let items = json!([
        request(1, "ping", json!({})),
        request(2, "tools/list", json!({})),
        request(3, "tools/call", json!({"name": "echo", "arguments": {"message": "in a batch"}})),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        request(4, "no/such/method", json!({})),
    ]);
    let (status, content_type, body) = batch(&app, &sid, items).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "application/json");
    let answers: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(answers.len(), 4, "one answer per request, none for the notification");
    let answers = by_id(answers);
    assert_eq!(answers[&1]["result"], json!({}));
    assert!(answers[&2]["result"]["tools"].is_array());
    assert!(
        answers[&2]["result"].get("resultType").is_none(),
        "the legacy shape: {}",
        answers[&2]
    );
    assert_eq!(answers[&3]["result"]["content"][0]["text"], "in a batch");
    assert_eq!(answers[&4]["error"]["code"], -32601);
    let mut got = methods(&seen);
    got.sort();
    assert_eq!(got, ["no/such/method", "server/discover", "tools/call", "tools/list"]);
    no_legacy_reached(&seen);

    let only_notes = json!([{"jsonrpc": "2.0", "method": "notifications/initialized"}]);
    let (status, _, _) = batch(&app, &sid, only_notes).await;
    assert_eq!(status, 202, "nothing to answer");
}

#[tokio::test]
async fn a_batch_with_a_streamed_answer_is_answered_with_one_stream() {
    let (app, seen) = modern_only_app(&translating(), EchoOptions::default());
    let sid = initialize(&app, "2025-03-26").await;
    let items = json!([
        request(1, "tools/list", json!({})),
        request(
            2,
            "tools/call",
            json!({"name": "test_tool_with_progress", "arguments": {},
            "_meta": {"progressToken": "batch-progress"}})
        ),
        request(
            3,
            "tools/call",
            json!({"name": "test_tool_with_progress", "arguments": {"intervalMs": 10},
            "_meta": {"progressToken": "other-progress"}})
        ),
    ]);
    let (status, content_type, body) = batch(&app, &sid, items).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "text/event-stream");
    let messages = sse_messages(&body);
    let progress: Vec<(&str, u64)> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            (
                m["params"]["progressToken"].as_str().unwrap(),
                m["params"]["progress"].as_u64().unwrap(),
            )
        })
        .collect();
    for token in ["batch-progress", "other-progress"] {
        let values: Vec<u64> = progress.iter().filter(|p| p.0 == token).map(|p| p.1).collect();
        assert_eq!(values, [0, 50, 100], "{token}: every progress notification, in order");
    }
    let answers = by_id(messages);
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert!(answers[&1]["result"]["tools"].is_array());
    for id in [2, 3] {
        assert!(answers[&id]["result"]["content"].is_array(), "{}", answers[&id]);
    }
    // The streamed answers are resumable, as always: their events carry ids.
    let events = sse_events(&body);
    assert!(
        events
            .iter()
            .filter(|e| !e.data.is_empty())
            .filter(|e| e.id.is_some())
            .count()
            >= 8,
        "{events:?}"
    );
    no_legacy_reached(&seen);
}
