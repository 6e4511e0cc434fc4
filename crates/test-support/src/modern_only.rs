//! The echo server as a 2026-07-28-only inner service, for the tests of translation
//! mode: a guard records every request it gets and refuses (and counts) any that is
//! not a 2026-07-28 request, the proof that the handler never saw a legacy message.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::util::BoxCloneSyncService;
use tower_mcp_session::McpSessionLayer;

use crate::echo;
use crate::http::{App, EchoOptions};

/// What the inner service got: every 2026-07-28 request, and every other message.
#[derive(Debug, Default)]
pub struct Seen {
    /// The 2026-07-28 requests, with their headers.
    pub requests: Vec<(HeaderMap, Value)>,
    /// Everything else (each a violation).
    pub legacy: Vec<Value>,
}

/// [`Seen`], shared with the inner service.
pub type Shared = Arc<Mutex<Seen>>;

/// The echo server as a 2026-07-28-only service: a request whose header and `_meta`
/// do not both name 2026-07-28 is refused with 400 and recorded as a violation.
pub fn modern_only_app(layer: &McpSessionLayer, options: EchoOptions) -> (App, Shared) {
    let seen: Shared = Arc::default();
    let inner = {
        let seen = seen.clone();
        tower::service_fn(move |req: Request<Full<Bytes>>| {
            let (seen, options) = (seen.clone(), options.clone());
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                let message: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let header = parts.headers.get("mcp-protocol-version").map(|v| v.as_bytes().to_vec());
                let meta = message.pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion");
                let modern = header.as_deref() == Some(b"2026-07-28") && meta == Some(&json!("2026-07-28"));
                if !modern {
                    seen.lock().unwrap().legacy.push(message);
                    let mut refused = Response::new(Full::new(Bytes::from_static(b"legacy message")).boxed());
                    *refused.status_mut() = StatusCode::BAD_REQUEST;
                    return Ok::<_, Infallible>(refused.map(|b| b.map_err(|e| match e {}).boxed()));
                }
                seen.lock().unwrap().requests.push((parts.headers.clone(), message));
                let req = Request::from_parts(parts, Full::new(bytes));
                Ok(echo::handle(options, req).await)
            }
        })
    };
    let app = BoxCloneSyncService::new(tower::ServiceBuilder::new().layer(layer.clone()).service(inner));
    (app, seen)
}

/// A layer in translation mode.
pub fn translating() -> McpSessionLayer {
    McpSessionLayer::builder().translate_to_modern(true).build()
}

/// Fails the test if the inner service saw a legacy message.
#[track_caller]
pub fn no_legacy_reached(seen: &Shared) {
    let seen = seen.lock().unwrap();
    assert!(
        seen.legacy.is_empty(),
        "the inner service saw legacy messages: {:?}",
        seen.legacy
    );
}

/// The methods of the requests the inner service got, in order.
pub fn methods(seen: &Shared) -> Vec<String> {
    let seen = seen.lock().unwrap();
    seen.requests
        .iter()
        .map(|(_, m)| m["method"].as_str().unwrap_or_default().to_owned())
        .collect()
}
