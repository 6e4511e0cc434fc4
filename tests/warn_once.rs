//! The two wiring mistakes that would otherwise fail silently are logged, once each per
//! process however often they happen: an inner service that mints its own
//! `Mcp-Session-Id`, and a creation limit keyed by peer address that finds none.
//! Alone in its test binary: "once per process" is what it checks.
#![cfg(feature = "tracing")]

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_mcp_session::McpSessionLayer;
use tower_mcp_session::rate_limit::{CreationLimit, PeerIp, Quota};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata};

/// Collects the messages of WARN events.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Message<'a>(&'a mut String);

impl Visit for Message<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == Level::WARN {
            let mut text = String::new();
            event.record(&mut Message(&mut text));
            self.0.lock().unwrap().push(text);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Warnings {
    fn count(&self, needle: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|m| m.contains(needle)).count()
    }
}

fn initialize() -> Request<Full<Bytes>> {
    Request::post("http://localhost/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        )))
        .unwrap()
}

/// An inner service that keeps sessions of its own: it answers `initialize` with its
/// own `Mcp-Session-Id`.
async fn stateful_inner(_req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("mcp-session-id", "inner-id")
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}"#,
        )))
        .unwrap())
}

#[tokio::test]
async fn each_wiring_mistake_is_logged_once() {
    let warnings = Warnings::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());

    let limited = McpSessionLayer::builder()
        .rate_limit(CreationLimit::new().per_key(Quota::per_second(NonZeroU32::new(1000).unwrap()), PeerIp::new()))
        .build();
    let service = ServiceBuilder::new().layer(limited).service(service_fn(stateful_inner));
    for _ in 0..3 {
        // No peer address in the extensions (no PeerAddr, no ConnectInfo), and an inner
        // service that mints its own id: both mistakes, three times.
        let answer = service.clone().oneshot(initialize()).await.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
        assert!(answer.headers().get("mcp-session-id").is_none());
    }
    assert_eq!(warnings.count("its own Mcp-Session-Id"), 1, "{:?}", warnings.0);
    assert_eq!(warnings.count("found no peer address"), 1, "{:?}", warnings.0);
}
