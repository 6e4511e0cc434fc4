//! Messages of an established session that the layer acts on itself before (or instead
//! of) the inner service: answers to the requests it sent the client, and the client
//! state it keeps (subscriptions, log level).

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use serde::Deserialize;
use serde_json::value::RawValue;
use tower_service::Service;

use super::service::{Answer, Handler};
use crate::SessionRecord as Record;
use crate::engine::Engine;
use crate::jsonrpc::{MessageKind, Peeked};
use crate::lifecycle::SessionError;
use crate::lifecycle::client_state::{set_log_level, set_subscription};
use crate::outbound::{Delivery, minted};
use crate::rejection::{Rejection, RejectionKind};
use crate::store::BoxError;
use crate::stream::McpBody;
use crate::translate::context::LOG_LEVELS;

/// `Some(false)` for a response, `Some(true)` for `notifications/cancelled`: the two
/// kinds of message that can be meant for the layer's own requests. `None` otherwise.
fn cancels_or_answers(message: &Peeked) -> Option<bool> {
    match &message.kind {
        MessageKind::Response => Some(false),
        MessageKind::Notification { method } if method == "notifications/cancelled" => Some(true),
        _ => None,
    }
}

/// The minted id `message` answers, when it is a response to a request the layer sent
/// or the client's `notifications/cancelled` for one. Only those two kinds of message
/// pay for the second look at the body.
pub(super) fn minted_answer(message: &Peeked, bytes: &[u8]) -> Option<String> {
    let id = named_id(bytes, cancels_or_answers(message)?)?;
    minted(id).map(str::to_owned)
}

/// The request a `notifications/cancelled` names (its `requestId`).
pub(super) fn cancelled_request(bytes: &[u8]) -> Option<&RawValue> {
    named_id(bytes, true)
}

/// The request a message names: a cancellation's `requestId`, else a response's `id`.
fn named_id(bytes: &[u8], cancels: bool) -> Option<&RawValue> {
    #[derive(Deserialize)]
    struct Reply<'a> {
        #[serde(borrow, default)]
        id: Option<&'a RawValue>,
        #[serde(borrow, default)]
        params: Option<CancelParams<'a>>,
    }
    #[derive(Deserialize)]
    struct CancelParams<'a> {
        #[serde(borrow, default, rename = "requestId")]
        request_id: Option<&'a RawValue>,
    }
    let reply: Reply<'_> = serde_json::from_slice(bytes).ok()?;
    if cancels { reply.params?.request_id } else { reply.id }
}

/// What is left of a batch once the layer took out the answers to its own requests.
pub(super) enum BatchRest {
    /// Nothing: every item was an answer or cancellation for the layer.
    Empty,
    /// These items (the body re-encoded when anything was taken out) for the inner
    /// service.
    Items(Bytes, Vec<Peeked>),
}

/// Deliver the answers and cancellations for minted ids that a 2025-03-26 batch
/// carries, as [`Handler::client_answer`] does for a single message, and hand back the
/// rest. In a batch an answer nobody awaits cannot be refused alone without losing the
/// other items, so it is dropped (never delivered, never forwarded).
pub(super) async fn take_batch_answers(
    engine: &Engine,
    record: &Record,
    bytes: Bytes,
    items: Vec<Peeked>,
) -> Result<BatchRest, Rejection> {
    if !items.iter().any(|m| cancels_or_answers(m).is_some()) {
        return Ok(BatchRest::Items(bytes, items));
    }
    // The body was peeked as a batch already, so it parses; `RawValue`s borrow from it.
    let Ok(raw) = serde_json::from_slice::<Vec<&RawValue>>(&bytes) else {
        return Ok(BatchRest::Items(bytes, items));
    };
    if raw.len() != items.len() {
        return Ok(BatchRest::Items(bytes, items));
    }
    let mut kept_raw = Vec::with_capacity(raw.len());
    let mut kept = Vec::with_capacity(items.len());
    for (item, raw) in items.into_iter().zip(raw) {
        let Some(id) = minted_answer(&item, raw.get().as_bytes()) else {
            kept_raw.push(raw);
            kept.push(item);
            continue;
        };
        let message = Bytes::copy_from_slice(raw.get().as_bytes());
        if let Delivery::Unavailable = engine.outbound().deliver(record.id(), &id, message).await {
            return Err(Rejection::store_unavailable());
        }
    }
    if kept.is_empty() {
        return Ok(BatchRest::Empty);
    }
    let mut body = Vec::with_capacity(bytes.len());
    body.push(b'[');
    for (n, raw) in kept_raw.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(raw.get().as_bytes());
    }
    body.push(b']');
    Ok(BatchRest::Items(Bytes::from(body), kept))
}

impl<S, ResBody> Handler<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    /// A client's answer (or cancellation) for the request the layer sent as `id`:
    /// stored for its asker, which waits on this or another instance. The session
    /// lookup is the usual one, principal included, so only the session's own client
    /// reaches the session's reply streams.
    pub(super) async fn client_answer(
        self,
        parts: Parts,
        bytes: Bytes,
        id: String,
        is_response: bool,
    ) -> Answer<ResBody, S::Error> {
        let (record, _busy) = match Self::resolve(&self.engine, &parts).await {
            Ok(found) => found,
            Err(rejection) => return Ok(self.reject(rejection)),
        };
        match self.engine.outbound().deliver(record.id(), &id, bytes).await {
            Delivery::Delivered => Ok(accepted()),
            // A cancellation racing the answer or the timeout is normal; an answer
            // nobody awaits is the client's mistake (or a forgery) and is said.
            Delivery::NoWaiter if !is_response => Ok(accepted()),
            Delivery::NoWaiter => Ok(self.reject(Rejection::new(RejectionKind::UnexpectedResponse))),
            Delivery::Unavailable => Ok(self.reject(Rejection::store_unavailable())),
        }
    }

    /// Record what the layer keeps of a request for its session before the inner
    /// service sees it: a subscription's URI, the log level. A request the session
    /// cannot hold more of is refused.
    pub(super) async fn record_client_state(
        engine: &Engine,
        record: &Record,
        message: &Peeked,
        bytes: &[u8],
    ) -> Result<(), Rejection> {
        #[derive(Deserialize)]
        struct Params {
            #[serde(default)]
            params: Option<Fields>,
        }
        #[derive(Deserialize)]
        struct Fields {
            #[serde(default)]
            uri: Option<serde_json::Value>,
            #[serde(default)]
            level: Option<serde_json::Value>,
        }
        let MessageKind::Request { method, .. } = &message.kind else {
            return Ok(());
        };
        let subscribe = match method.as_str() {
            "resources/subscribe" => Some(true),
            "resources/unsubscribe" => Some(false),
            "logging/setLevel" => None,
            _ => return Ok(()),
        };
        let Some(fields) = serde_json::from_slice::<Params>(bytes).ok().and_then(|p| p.params) else {
            return Ok(());
        };
        let sessions = engine.sessions();
        let recorded = match subscribe {
            Some(subscribed) => match fields.uri.as_ref().and_then(|v| v.as_str()) {
                Some(uri) => set_subscription(sessions, record.id(), uri, subscribed).await,
                None => return Ok(()),
            },
            None => match fields.level.as_ref().and_then(|v| v.as_str()) {
                Some(level) if LOG_LEVELS.contains(&level) => set_log_level(sessions, record.id(), level).await,
                _ => return Ok(()),
            },
        };
        match recorded {
            Ok(()) => Ok(()),
            Err(SessionError::AttributeLimit) => Err(Rejection::new(RejectionKind::SubscriptionLimit)),
            Err(SessionError::Ended) => Err(Rejection::new(RejectionKind::SessionNotFound)),
            Err(_) => Err(Rejection::store_unavailable()),
        }
    }
}

pub(super) fn accepted<B>() -> Response<McpBody<B>> {
    let mut response = Response::new(McpBody::empty());
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}
