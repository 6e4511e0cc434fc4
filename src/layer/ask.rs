//! What translation mode asks the inner service itself, so that a 2025-era client gets
//! what only a 2026-07-28 client would know to ask for: `server/discover` to answer an
//! `initialize`, and `tools/list` to learn the `x-mcp-header` annotations of a tool
//! the client calls before any `tools/list` answer passed through this instance.
//! Both go in as 2026-07-28 requests under ids of the layer's own, with the session's
//! `_meta`, and both answers are read bounded.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;
use serde_json::value::RawValue;
use tower_service::Service;

use super::initialize::Answered;
use super::service::Handler;
use super::translated::modern_parts;
use crate::SessionRecord;
use crate::headers::{MCP_SESSION_ID, is_json_content};
use crate::jsonrpc::InitializeOutcome;
use crate::lifecycle::Session;
use crate::rejection::{Rejection, RejectionKind};
use crate::store::BoxError;
use crate::stream::McpBody;
use crate::stream::decode::{Decoder, StreamFormat};
use crate::translate::cache::DiscoverCache;
use crate::translate::context::LegacyContext;
use crate::translate::discover::{LayerCapabilities, discover_request, initialize_result, negotiate};
use crate::translate::param_headers::{Ask, headers_for};
use crate::translate::raw::{RawObject, raw_string};
use crate::translate::request::{ModernRequest, layer_request};

/// The id of the layer's `server/discover` requests.
const DISCOVER_ID: &str = "mcp-layer-discover";
/// The id of the layer's `tools/list` requests.
const TOOLS_ID: &str = "mcp-layer-tools";
/// How many pages of `tools/list` the layer reads looking for one tool.
const MAX_TOOL_PAGES: usize = 16;
/// How long a call waits for the lookup of its tool before going on without it.
const TOOL_LOOKUP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl<S, ResBody> Handler<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    /// `initialize` in translation mode: the `InitializeResult` is built from the inner
    /// service's `server/discover` (asked once a minute per kind of client), so the
    /// inner service never sees a legacy message.
    pub(super) async fn discover(
        &mut self,
        parts: Parts,
        pending: &SessionRecord,
        request_id: &RawValue,
        handle: Session,
    ) -> Result<Result<Answered<ResBody>, Rejection>, S::Error> {
        let engine = self.engine.clone();
        let ctx = LegacyContext::from_record(pending, None);
        let key = DiscoverCache::key(&ctx);
        let result = match engine.discoveries().get(key) {
            Some(result) => result,
            None => {
                let id = RawValue::from_string(format!("\"{DISCOVER_ID}\"")).expect("a JSON string");
                let Ok(modern) = discover_request(&ctx, &id) else {
                    return Ok(Err(Rejection::new(RejectionKind::InvalidUpstreamResponse)));
                };
                let limit = engine.config().max_initialize_response_bytes;
                match self.ask(parts, modern, DISCOVER_ID, handle, limit).await? {
                    Ok(result) => {
                        let result = Arc::new(result);
                        engine.discoveries().put(key, Arc::clone(&result));
                        result
                    }
                    Err(rejection) => return Ok(Err(rejection)),
                }
            }
        };
        let layer = LayerCapabilities {
            log_level: true,
            subscriptions: true,
            list_changed: true,
        };
        let Ok(initialize) = initialize_result(&result, pending.protocol_version(), layer) else {
            return Ok(Err(Rejection::new(RejectionKind::InvalidUpstreamResponse)));
        };
        let negotiated = negotiate(pending.protocol_version());
        let answer = format!(r#"{{"jsonrpc":"2.0","id":{},"result":{initialize}}}"#, request_id.get());
        let (mut head, ()) = Response::new(()).into_parts();
        head.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(Ok((
            head,
            Some(InitializeOutcome::Succeeded(negotiated)),
            McpBody::full(Bytes::from(answer)),
        )))
    }

    /// Add to a translated `tools/call` the `Mcp-Param-*` headers its tool's
    /// `x-mcp-header` annotations ask for. A tool not listed through this instance yet
    /// is looked up first: the layer pages through the inner service's `tools/list`
    /// (at most [`MAX_TOOL_PAGES`] pages, one lookup per
    /// [`ASK_AGAIN_AFTER`](crate::translate::param_headers::ASK_AGAIN_AFTER) however
    /// many calls miss). A lookup that fails leaves the call without headers: the
    /// inner service then answers it with its own error.
    pub(super) async fn add_param_headers(
        &mut self,
        parts: &Parts,
        record: &Arc<SessionRecord>,
        ctx: &LegacyContext<'_>,
        legacy: &[u8],
        modern: &mut ModernRequest,
    ) -> Result<(), S::Error> {
        #[derive(serde::Deserialize)]
        struct Call {
            params: Option<Params>,
        }
        #[derive(serde::Deserialize)]
        struct Params {
            name: Option<String>,
            /// Kept raw: parsed only for a tool that has annotated arguments.
            arguments: Option<Box<RawValue>>,
        }
        let Some(Params {
            name: Some(name),
            arguments,
        }) = serde_json::from_slice::<Call>(legacy).ok().and_then(|c| c.params)
        else {
            return Ok(());
        };
        let engine = self.engine.clone();
        let known = match engine.tool_headers().of(&name) {
            Some(known) => Some(known),
            None => match engine.tool_headers().may_ask().await {
                Ask::Now(permit) => {
                    // Bounded: calls to unknown tools wait for this lookup.
                    let lookup = self.look_up_tool(parts, record, ctx, &name);
                    if let Ok(looked) = tokio::time::timeout(TOOL_LOOKUP_WAIT, lookup).await {
                        looked?;
                    }
                    permit.done();
                    engine.tool_headers().of(&name)
                }
                Ask::Recently => engine.tool_headers().of(&name),
            },
        };
        let Some(known) = known.filter(|known| !known.is_empty()) else {
            return Ok(());
        };
        let arguments = arguments.and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
        for (header, value) in headers_for(&known, arguments.as_ref()) {
            modern.headers.insert(header, value);
        }
        Ok(())
    }

    /// Page through the inner service's `tools/list`, learning every page, until
    /// `name` is among what is known or the pages end.
    async fn look_up_tool(
        &mut self,
        parts: &Parts,
        record: &Arc<SessionRecord>,
        ctx: &LegacyContext<'_>,
        name: &str,
    ) -> Result<(), S::Error> {
        let engine = self.engine.clone();
        let id = RawValue::from_string(format!("\"{TOOLS_ID}\"")).expect("a JSON string");
        // A handle of the session for the inner service, as every request gets; these
        // answers are read whole, so no stream is related to it.
        let handle = Session::live(
            Arc::clone(record),
            engine.sessions().clone(),
            engine.outbound().clone(),
            None,
        );
        let limit = engine.config().sse.max_event_bytes;
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_TOOL_PAGES {
            let mut extra = RawObject::new();
            if let Some(cursor) = &cursor {
                extra.set("cursor", Cow::Owned(raw_string(cursor)));
            }
            let Ok(modern) = layer_request(&id, "tools/list", extra, ctx) else {
                return Ok(());
            };
            let Ok(result) = self.ask(parts.clone(), modern, TOOLS_ID, handle.clone(), limit).await? else {
                return Ok(());
            };
            engine.tool_headers().learn(&result);
            cursor = result.get("nextCursor").and_then(Value::as_str).map(str::to_owned);
            if cursor.is_none() || engine.tool_headers().of(name).is_some() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Send the layer's own request `modern`, whose id is `id`, to the inner service;
    /// the `result` of its answer (read up to `limit` bytes, JSON or a stream).
    async fn ask(
        &mut self,
        parts: Parts,
        modern: ModernRequest,
        id: &str,
        handle: Session,
        limit: usize,
    ) -> Result<Result<Value, Rejection>, S::Error> {
        let invalid = || Rejection::new(RejectionKind::InvalidUpstreamResponse);
        let parts = modern_parts(parts, &modern);
        let mut req = Request::from_parts(parts, Full::new(modern.body));
        req.extensions_mut().insert(handle);
        // A clone made ready for this request: the handler's own ready service stays
        // for the client's request.
        let mut inner = self.inner.clone();
        std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
        let (head, body) = inner.call(req).await?.into_parts();
        if head.headers.contains_key(MCP_SESSION_ID) {
            return Ok(Err(Rejection::new(RejectionKind::UpstreamSessionId)));
        }
        let format = StreamFormat::of(&head.headers);
        if !head.status.is_success() || (format.is_none() && !is_json_content(&head.headers)) {
            return Ok(Err(invalid()));
        }
        let Ok(collected) = Limited::new(body, limit).collect().await else {
            return Ok(Err(invalid()));
        };
        let bytes = collected.to_bytes();
        let mut messages = match format {
            // The answer is the message that names the layer's id; a server may send
            // notifications before it.
            Some(format) => {
                let mut decoder = Decoder::new(format, limit);
                decoder.push(&bytes);
                let mut found = Vec::new();
                while let Ok(Some(message)) = decoder.next_message() {
                    found.push(message);
                }
                found.extend(decoder.finish());
                found
            }
            None => vec![bytes],
        };
        let answer = messages.drain(..).find_map(|message| {
            let value: Value = serde_json::from_slice(&message).ok()?;
            (value.get("id").and_then(Value::as_str) == Some(id)).then_some(value)
        });
        match answer.and_then(|mut answer| answer.get_mut("result").map(Value::take)) {
            Some(result) => Ok(Ok(result)),
            None => Ok(Err(invalid())),
        }
    }
}
