//! Translation mode (`translate_to_modern`): a 2025-era message of an established
//! session, for an inner service that speaks only 2026-07-28. The mappings themselves
//! are `translate/`'s; this file decides, per message, what the layer serves itself
//! and what goes in, and turns the inner service's answers back.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;
use serde_json::value::RawValue;
use tower_service::Service;

use super::client_messages::{accepted, cancelled_request, minted_answer};
use super::post::InSession;
use super::rounds::{Relay, Start};
use super::running::{Running, cancel};
use super::service::{Answer, Handler};
use crate::SessionRecord;
use crate::engine::Engine;
use crate::headers::{LAST_EVENT_ID, MCP_SESSION_ID};
use crate::jsonrpc::{self, MessageKind, Peeked};
use crate::lifecycle::SessionError;
use crate::lifecycle::client_state::{LOG_LEVEL, set_log_level, set_subscription};
use crate::lifecycle::sessions::BusyGuard;
use crate::rejection::{Rejection, RejectionKind};
use crate::store::BoxError;
use crate::stream::McpBody;
use crate::stream::decode::{Decoder, StreamFormat};
use crate::stream::policy::{StreamOf, resumable};
use crate::translate::answer::{AnswerTo, InputRequired, LegacyMessage, to_legacy};
use crate::translate::context::{LOG_LEVELS, LegacyContext};
use crate::translate::http_error::{LegacyHttpError, http_error_to_legacy};
use crate::translate::request::{LegacyRoute, LocalKind, ModernRequest, route, translate_request};

/// What the answers to one translated request are turned back with: the legacy
/// method and the client's own id.
pub(super) struct Translated {
    pub(super) method: String,
    pub(super) client_id: Box<RawValue>,
}

impl Translated {
    pub(super) fn to(&self) -> AnswerTo<'_> {
        AnswerTo {
            method: &self.method,
            client_id: &self.client_id,
        }
    }

    /// An error answer to the client's request.
    pub(super) fn error(&self, code: i64, message: &str) -> Bytes {
        jsonrpc::error_body(Some(&self.client_id), code, message, None)
    }
}

/// A JSON answer of the layer's own.
fn json_answer<B>(body: Bytes) -> Response<McpBody<B>> {
    let mut response = Response::new(McpBody::full(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

impl<S, ResBody> Handler<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    /// A legacy message other than `initialize`, in translation mode.
    pub(super) async fn translated(mut self, parts: Parts, bytes: Bytes, message: Peeked) -> Answer<ResBody, S::Error> {
        if let Some(id) = minted_answer(&message, &bytes) {
            let is_response = matches!(message.kind, MessageKind::Response);
            return self.client_answer(parts, bytes, id, is_response).await;
        }
        let (method, is_request) = match &message.kind {
            MessageKind::Request { method, .. } => (method.clone(), true),
            MessageKind::Notification { method } => (method.clone(), false),
            // A 2026-07-28 server sends the client no requests, so no answer but to the
            // layer's own ones can be meant for it.
            MessageKind::Response => return Ok(self.reject(Rejection::new(RejectionKind::UnexpectedResponse))),
        };
        let (record, busy) = match Self::resolve(&self.engine, &parts).await {
            Ok(found) => found,
            Err(rejection) => return Ok(self.reject(rejection.with_id(message.id()))),
        };
        let client_id = message.id().map(ToOwned::to_owned);
        let local_error =
            |code: i64, text: &str| json_answer(jsonrpc::error_body(client_id.as_deref(), code, text, None));
        let kind = match route(&method, is_request) {
            LegacyRoute::Forward => {
                let Some(client_id) = client_id.clone() else {
                    return Ok(accepted());
                };
                let level = match self.engine.sessions().attribute(record.id(), LOG_LEVEL).await {
                    Ok(level) => level,
                    Err(_) => return Ok(self.reject(Rejection::store_unavailable().with_id(Some(&client_id)))),
                };
                let ctx = LegacyContext::from_record(&record, level.as_ref().and_then(Value::as_str));
                let mut modern = match translate_request(&bytes, &ctx) {
                    Ok(modern) => modern,
                    Err(e) => return Ok(local_error(e.code(), "The request could not be translated")),
                };
                if method == "tools/call" {
                    self.add_param_headers(&parts, &record, &ctx, &bytes, &mut modern)
                        .await?;
                }
                let running = Running::register(&self.engine, record.id(), client_id.get());
                let translated = Arc::new(Translated { method, client_id });
                let parts = modern_parts(parts, &modern);
                let level = level.and_then(|level| level.as_str().map(str::to_owned));
                let call = Call {
                    record,
                    busy,
                    translated,
                    log_level: level,
                    running,
                };
                return self.call_translated(parts, modern.body, call).await;
            }
            LegacyRoute::ServeLocally(kind) => kind,
        };
        Ok(match kind {
            LocalKind::Ping => local_result(client_id.as_deref()),
            LocalKind::SetLevel => {
                let level = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|m| m.pointer("/params/level").and_then(Value::as_str).map(str::to_owned))
                    .filter(|level| LOG_LEVELS.contains(&level.as_str()));
                let Some(level) = level else {
                    return Ok(local_error(-32602, "Invalid log level"));
                };
                match set_log_level(self.engine.sessions(), record.id(), &level).await {
                    Ok(()) => local_result(client_id.as_deref()),
                    Err(_) => self.reject(Rejection::store_unavailable().with_id(client_id.as_deref())),
                }
            }
            // Recorded in the session; the session's listener (`listen.rs`) passes them
            // to the inner service in its `subscriptions/listen`.
            LocalKind::Subscribe | LocalKind::Unsubscribe => {
                let uri = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|m| m.pointer("/params/uri").and_then(Value::as_str).map(str::to_owned));
                let Some(uri) = uri else {
                    return Ok(local_error(-32602, "A resource URI is required"));
                };
                let subscribed = matches!(kind, LocalKind::Subscribe);
                match set_subscription(self.engine.sessions(), record.id(), &uri, subscribed).await {
                    Ok(()) => {
                        // Answered once this instance's listener has its listen reopened
                        // with the change (bounded: a stuck inner service does not hold
                        // the client's request).
                        let applied = self.engine.in_flight().subscriptions_changed(record.id());
                        applied.wait(SUBSCRIBE_APPLY_WAIT).await;
                        local_result(client_id.as_deref())
                    }
                    Err(SessionError::AttributeLimit) => {
                        self.reject(Rejection::new(RejectionKind::SubscriptionLimit).with_id(client_id.as_deref()))
                    }
                    Err(SessionError::Ended) => {
                        self.reject(Rejection::new(RejectionKind::SessionNotFound).with_id(client_id.as_deref()))
                    }
                    Err(_) => self.reject(Rejection::store_unavailable().with_id(client_id.as_deref())),
                }
            }
            LocalKind::Unsupported | LocalKind::Initialize => local_error(-32601, "Method not found"),
            // The inner request ends (its answer is not sent), on whichever instance
            // it runs (`running.rs`).
            LocalKind::Cancelled => {
                if let Some(id) = cancelled_request(&bytes) {
                    cancel(&self.engine, record.id(), id.get()).await;
                }
                accepted()
            }
            // No handshake to complete, nothing to forward.
            LocalKind::Initialized | LocalKind::RootsListChanged | LocalKind::Discard => accepted(),
        })
    }
}

/// How long a `resources/subscribe` or `unsubscribe` waits for the session's listener
/// here to reopen its listen with the change before it is answered anyway.
const SUBSCRIBE_APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Learn the tools' `x-mcp-header` annotations from a `tools/list` answer.
pub(super) fn learn_tools(engine: &Engine, answer: &[u8]) {
    if let Ok(message) = serde_json::from_slice::<Value>(answer)
        && let Some(result) = message.get("result")
    {
        engine.tool_headers().learn(result);
    }
}

/// One translated request on its way in: its session and how its answers go back.
struct Call {
    record: Arc<SessionRecord>,
    busy: BusyGuard,
    translated: Arc<Translated>,
    log_level: Option<String>,
    /// Its entry among the requests running here, which a cancellation completes.
    running: Running,
}

/// The answer to a request the client cancelled before its answer: the client no
/// longer waits for it, but an HTTP request needs a response.
const CANCELLED: (i64, &str) = (-32800, "Request cancelled");

/// An empty result, the answer to what 2026-07-28 removed (`ping`, `setLevel`).
fn local_result<B>(id: Option<&RawValue>) -> Response<McpBody<B>> {
    let id = id.map_or("null", RawValue::get);
    json_answer(Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#)))
}

/// The request parts a translated request goes in with: the legacy session's headers
/// stay here, the 2026-07-28 ones are set.
pub(super) fn modern_parts(mut parts: Parts, modern: &ModernRequest) -> Parts {
    parts.headers.remove(MCP_SESSION_ID);
    parts.headers.remove(LAST_EVENT_ID);
    parts.headers.remove(CONTENT_LENGTH);
    for (name, value) in &modern.headers {
        parts.headers.insert(name, value.clone());
    }
    parts
}

/// What the inner service's first answer leads to: rounds on a stream, or the answer.
type FirstAnswer<B> = Result<Start<B>, Box<Response<McpBody<B>>>>;

/// What a translated request's JSON answer (or HTTP error) comes to.
enum JsonAnswer<B> {
    /// The answer for the client (boxed: the enum would otherwise be as large as a
    /// response with its body).
    Done(Box<Response<McpBody<B>>>),
    /// The inner service asks for input: an MRTR round on a stream.
    InputRequired(InputRequired),
}

/// The inner service's answer to a translated request, when it is not a stream:
/// JSON answers in the legacy shape, HTTP errors as JSON-RPC error answers.
async fn translated_answer<B>(
    engine: &Engine,
    translated: &Translated,
    head: http::response::Parts,
    body: B,
) -> JsonAnswer<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let done = |answer: Bytes| JsonAnswer::Done(Box::new(json_answer(answer)));
    let limit = engine.config().sse.max_event_bytes;
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return done(translated.error(-32603, "The server's answer could not be read")),
    };
    if !head.status.is_success() {
        return match http_error_to_legacy(head.status, &bytes, &translated.client_id, &translated.method) {
            LegacyHttpError::Answer(answer) => done(answer),
            LegacyHttpError::Keep => JsonAnswer::Done(Box::new(Response::from_parts(head, McpBody::full(bytes)))),
        };
    }
    if head.status != StatusCode::OK {
        return done(translated.error(-32603, "The server sent no answer"));
    }
    match to_legacy(&bytes, &translated.to()) {
        Ok(LegacyMessage::Answer(answer)) => {
            if translated.method == "tools/list" {
                learn_tools(engine, &answer);
            }
            done(answer)
        }
        Ok(LegacyMessage::InputRequired(input)) => JsonAnswer::InputRequired(input),
        Ok(LegacyMessage::Notification(_) | LegacyMessage::Drop) => {
            done(translated.error(-32603, "The server sent no answer"))
        }
        Err(e) if e.answers_request() => {
            done(translated.error(e.code(), "The server's answer could not be translated"))
        }
        Err(_) => done(translated.error(-32603, "The server sent no answer")),
    }
}

impl<S, ResBody> Handler<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    /// Call the inner service with a translated request. A JSON answer goes back as
    /// JSON; a streamed one, or one that asks for client input, becomes a resumable
    /// stream fed by a [`Relay`], which runs the MRTR rounds.
    async fn call_translated(mut self, parts: Parts, body: Bytes, call: Call) -> Answer<ResBody, S::Error> {
        let Call {
            record,
            busy,
            translated,
            log_level,
            running,
        } = call;
        let engine = self.engine.clone();
        let template = parts.clone();
        let mut req = Request::from_parts(parts, Full::new(body.clone()));
        let call = InSession::prepare(&engine, &mut req, &record, true);
        // Until the answer starts, a cancellation drops the inner call, which for a
        // 2026-07-28 service is the cancellation.
        let first = async {
            let response = self.inner.call(req).await?;
            let (head, inner_body) = response.into_parts();
            let first: FirstAnswer<ResBody> = match StreamFormat::of(&head.headers).filter(|_| head.status.is_success())
            {
                Some(format) => Ok(Start::Stream(format, inner_body)),
                None => match Box::pin(translated_answer(&engine, &translated, head, inner_body)).await {
                    JsonAnswer::Done(answer) => Err(answer),
                    JsonAnswer::InputRequired(input) => Ok(Start::InputRequired(input)),
                },
            };
            Ok::<_, S::Error>(first)
        };
        let first = tokio::select! {
            first = first => first,
            () = running.cancelled() => return Ok(json_answer(translated.error(CANCELLED.0, CANCELLED.1))),
        };
        let start = match first? {
            Ok(start) => start,
            Err(answer) => return Ok(*answer),
        };
        let Some((stream_id, live)) = call.stream else {
            return Ok(json_answer(translated.error(-32603, "Internal error")));
        };
        let max_message_bytes = engine.config().sse.max_event_bytes;
        // The client's id: the answer it gets should this instance stop mid-stream.
        let request = Some(translated.client_id.clone());
        let relay = Relay {
            inner: self.inner.clone(),
            parts: template,
            original: body,
            translated,
            session: call.session,
            record: record.clone(),
            log_level,
            wait: engine.outbound().default_wait,
            max_message_bytes,
            engine: engine.clone(),
        };
        let (relay_body, rounds) = relay.start(start);
        engine.ensure_maintenance();
        // Before the task starts: its requests to the client wait for the stream.
        let related = call.related.opening();
        // A session's pumps end with it; a drain waits for them. A cancellation drops
        // the rounds, and with them the inner stream: the client's stream ends without
        // an answer, as a cancelled request has none.
        engine.streams().spawn_pump(
            record.id(),
            Box::pin(async move {
                tokio::select! {
                    () = rounds => {}
                    () = running.cancelled() => {}
                }
            }),
        );
        let mut head = Response::new(()).into_parts().0;
        head.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        let made = Box::pin(resumable(
            engine.stream_setup(),
            record,
            head,
            relay_body,
            Arc::new(busy),
            StreamOf {
                id: stream_id,
                live,
                related,
                request,
            },
            // The relay's messages may outgrow the inner ones a little (the client's id
            // in place of a retry's).
            Decoder::new(StreamFormat::Sse, max_message_bytes.saturating_mul(2)),
        ))
        .await;
        Ok(made.unwrap_or_else(|rejection| self.reject(rejection)))
    }
}
