//! Feature `metrics`: what a recorder receives after real requests through the layer
//! (the echo server behind it), read with `metrics-util`'s debugging recorder: names,
//! labels, and how many samples each series got.
#![cfg(feature = "metrics")]

use mcp_test_support::http as support;

use std::collections::BTreeMap;

use http::StatusCode;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::json;
use support::*;
use tower_mcp_session::McpSessionLayer;

/// A series: its name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// What each series holds: a counter's count, a gauge's value, a histogram's sample
/// count.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Samples(usize),
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut labels: Vec<(String, String)> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    labels.sort();
    (name.to_owned(), labels)
}

#[test]
fn names_and_labels_after_real_requests() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The layer's work, including what it runs detached, happens on this thread inside
    // the local recorder's scope.
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let layer = McpSessionLayer::new();
            let app = app(&layer);
            let session = initialize(&app, LEGACY).await;
            for id in 1..=2 {
                let call = request(
                    id,
                    "tools/call",
                    json!({"name": "echo", "arguments": {"message": "hi"}}),
                );
                let (status, _, _) = send(&app, Some(&session), &call).await;
                assert_eq!(status, StatusCode::OK);
            }
            // A method nobody knows is counted under `_OTHER`, not under its own name.
            send(&app, Some(&session), &request(3, "x/made-up", json!({}))).await;
            let (status, _, _) = send(&app, Some("no-such-session"), &request(4, "ping", json!({}))).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            let response = support::call(&app, empty(delete().header("mcp-session-id", &session))).await;
            assert_eq!(response.status(), StatusCode::OK);
            // A batch: one sample per message, each under its own method.
            let old = initialize(&app, "2025-03-26").await;
            let batch = json!([request(5, "ping", json!({})), request(6, "tools/list", json!({}))]);
            let (status, _, _) = send(&app, Some(&old), &batch).await;
            assert_eq!(status, StatusCode::OK);
            // Let the detached store calls (the touch at the end of a request) finish.
            tokio::task::yield_now().await;
        });
    });

    let mut seen: BTreeMap<Series, Value> = BTreeMap::new();
    for (key, _unit, _description, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        let value = match value {
            DebugValue::Counter(n) => Value::Counter(n),
            DebugValue::Gauge(g) => Value::Gauge(g.into_inner()),
            DebugValue::Histogram(samples) => Value::Samples(samples.len()),
        };
        seen.insert((key.name().to_owned(), labels), value);
    }
    let expect = |name: &str, labels: &[(&str, &str)], value: Value| {
        let key = series(name, labels);
        assert_eq!(seen.get(&key), Some(&value), "{key:?} in {seen:#?}");
    };
    let duration = "mcp.server.operation.duration";
    let tcp = ("network.transport", "tcp");
    expect(
        duration,
        &[("mcp.method.name", "initialize"), ("mcp.protocol.version", LEGACY), tcp],
        Value::Samples(1),
    );
    // Legacy requests without `MCP-Protocol-Version` carry no version label.
    expect(duration, &[("mcp.method.name", "tools/call"), tcp], Value::Samples(2));
    expect(duration, &[("mcp.method.name", "_OTHER"), tcp], Value::Samples(1));
    expect(
        duration,
        &[("mcp.method.name", "ping"), ("error.type", "-32001"), tcp],
        Value::Samples(1),
    );
    expect(
        duration,
        &[
            ("mcp.method.name", "initialize"),
            ("mcp.protocol.version", "2025-03-26"),
            tcp,
        ],
        Value::Samples(1),
    );
    expect(duration, &[("mcp.method.name", "ping"), tcp], Value::Samples(1));
    expect(duration, &[("mcp.method.name", "tools/list"), tcp], Value::Samples(1));
    expect(
        "mcp.server.rejections",
        &[("mcp.rejection.reason", "session_not_found")],
        Value::Counter(1),
    );
    expect("mcp.server.session.created", &[], Value::Counter(2));
    expect(
        "mcp.server.session.closed",
        &[("mcp.session.close_reason", "deleted")],
        Value::Counter(1),
    );
    expect("mcp.server.session.active", &[], Value::Gauge(1.0));
    // Not draining: the gauge is there, at 0.
    expect("mcp.server.drain.active", &[], Value::Gauge(0.0));
    expect(
        "mcp.server.session.duration",
        &[("mcp.protocol.version", LEGACY), tcp],
        Value::Samples(1),
    );
    // Every store call is timed: the six loads (three requests and the DELETE's lookup
    // in the first session, the unknown session's, the batch's), two creates and the
    // delete.
    let store = "mcp.server.store.duration";
    expect(store, &[("mcp.store.operation", "create")], Value::Samples(2));
    expect(store, &[("mcp.store.operation", "load")], Value::Samples(6));
    expect(store, &[("mcp.store.operation", "delete")], Value::Samples(1));
    // Nothing else has a name outside the documented set.
    let documented = [
        "mcp.server.operation.duration",
        "mcp.server.session.duration",
        "mcp.server.session.active",
        "mcp.server.session.created",
        "mcp.server.session.closed",
        "mcp.server.rejections",
        "mcp.server.stream.open",
        "mcp.server.stream.resumed",
        "mcp.server.event_log.evicted",
        "mcp.server.store.duration",
        "mcp.server.drain.active",
        "mcp.server.drain.in_flight",
        "mcp.server.drain.duration",
    ];
    for (name, _) in seen.keys() {
        assert!(documented.contains(&name.as_str()), "undocumented metric {name}");
    }
}

/// An SSE answer is a stream the layer writes: the open-streams gauge goes up by one
/// while the client holds it and back down once it is read to its end.
#[test]
fn open_streams_gauge() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let gauge = || {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find(|(key, ..)| key.key().name() == "mcp.server.stream.open")
            .map(|(.., value)| value)
    };
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let layer = McpSessionLayer::new();
            let app = app_with(
                &layer,
                EchoOptions {
                    sse_tool_calls: true,
                    manager: Some(layer.manager()),
                },
            );
            let session = initialize(&app, LEGACY).await;
            let call = request(1, "tools/call", json!({"name": "echo", "arguments": {"message": "hi"}}));
            let response = support::call(&app, with_body(post().header("mcp-session-id", &session), &call)).await;
            assert_eq!(response.status(), StatusCode::OK);
            // The debugging recorder's snapshots take the value (the gauge restarts at
            // zero), so each snapshot shows the change since the one before.
            assert_eq!(gauge(), Some(DebugValue::Gauge(1.0.into())), "one stream open");
            let body = read_all(response.into_body()).await;
            assert!(!sse_messages(&body).is_empty());
            assert_eq!(gauge(), Some(DebugValue::Gauge((-1.0).into())), "and closed again");
        });
    });
}

/// A drain: `drain.active` is registered at 0 with the layer and goes to 1 with the
/// drain call; `drain.in_flight` says, by kind of work, what the drain waits for; one
/// `drain.duration` sample per drain, by outcome. The first drain hits its deadline
/// with a streamed call running (its pump, and the connection of a 2025-06-18 client,
/// which holds no event id to resume from); the second, once the call is read to its
/// end, completes.
#[test]
fn drain_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let snapshot = || {
        let mut seen: BTreeMap<Series, DebugValue> = BTreeMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            if key.name().starts_with("mcp.server.drain.") {
                let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
                seen.insert(series(key.name(), &labels), value);
            }
        }
        seen
    };
    let gauge = |g: f64| DebugValue::Gauge(g.into());
    let pumps = series("mcp.server.drain.in_flight", &[("mcp.drain.work", "pump")]);
    let connections = series("mcp.server.drain.in_flight", &[("mcp.drain.work", "connection")]);
    let requests = series("mcp.server.drain.in_flight", &[("mcp.drain.work", "client_request")]);
    let active = series("mcp.server.drain.active", &[]);
    let samples = |seen: &BTreeMap<Series, DebugValue>, outcome: &str| match seen
        .get(&series("mcp.server.drain.duration", &[("mcp.drain.outcome", outcome)]))
    {
        Some(DebugValue::Histogram(samples)) => samples.len(),
        _ => 0,
    };
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let layer = McpSessionLayer::new();
            let before = snapshot();
            assert_eq!(before.get(&active), Some(&gauge(0.0)), "{before:#?}");
            assert_eq!(before.len(), 1, "only the active gauge before a drain: {before:#?}");

            let app = app(&layer);
            let session = initialize(&app, LEGACY).await;
            let progress = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
                "name": "test_tool_with_progress", "arguments": {"intervalMs": 5_000},
                "_meta": {"progressToken": "p"}}});
            let response = support::call(&app, with_body(post().header("mcp-session-id", &session), &progress)).await;
            assert_eq!(response.status(), StatusCode::OK);
            let mut stream = SseReader::new(response.into_body());
            stream.next_message().await.expect("first progress");

            let report = layer.manager().drain(std::time::Duration::from_millis(50)).await;
            assert!(!report.is_complete(), "{report}");
            let seen = snapshot();
            assert_eq!(seen.get(&active), Some(&gauge(1.0)), "{seen:#?}");
            assert_eq!(seen.get(&pumps), Some(&gauge(1.0)), "{seen:#?}");
            assert_eq!(seen.get(&connections), Some(&gauge(1.0)), "{seen:#?}");
            assert_eq!(seen.get(&requests), Some(&gauge(0.0)), "{seen:#?}");
            assert_eq!((samples(&seen, "deadline"), samples(&seen, "complete")), (1, 0));

            while stream.next_message().await.is_some() {}
            drop(stream);
            let report = layer.manager().drain(std::time::Duration::from_secs(5)).await;
            assert!(report.is_complete(), "{report}");
            let seen = snapshot();
            assert_eq!(seen.get(&pumps), Some(&gauge(0.0)), "{seen:#?}");
            assert_eq!(seen.get(&connections), Some(&gauge(0.0)), "{seen:#?}");
            assert_eq!((samples(&seen, "deadline"), samples(&seen, "complete")), (0, 1));
        });
    });
}
