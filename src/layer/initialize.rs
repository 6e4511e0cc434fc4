//! `initialize`: reserve a place, let the inner service answer, and create the session
//! only if it answered with an `InitializeResult`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tower_service::Service;

use super::service::{Answer, Handler};
use serde_json::value::RawValue;

use crate::ProtocolVersion;
use crate::headers::{MCP_SESSION_ID, is_event_stream, is_json_content};
use crate::jsonrpc::{self, InitializeOutcome, Peeked};
use crate::lifecycle::Session;
use crate::lifecycle::sessions::ReserveError;
use crate::rejection::{Rejection, RejectionKind};
use crate::session::{Principal, SessionRecord};
use crate::sse::SseParser;
use crate::store::BoxError;
use crate::stream::McpBody;

impl<S, ResBody> Handler<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    pub(super) async fn initialize(mut self, parts: Parts, bytes: Bytes, message: Peeked) -> Answer<ResBody, S::Error> {
        let engine = self.engine.clone();
        let request_id = message.id().map(ToOwned::to_owned);
        if engine.drain().is_draining() {
            // A draining instance takes on no new session; one second is enough for the
            // balancer to send the retry to another instance.
            let rejection = Rejection::new(RejectionKind::Draining)
                .with_id(message.id())
                .retry_after(std::time::Duration::from_secs(1));
            return Ok(self.reject(rejection));
        }
        if let Some(limit) = &engine.config().creation_limit
            && let Err(limited) = limit.check(&parts)
        {
            // Checked before anything is reserved: a refusal leaves no state behind.
            let mut rejection = Rejection::new(RejectionKind::RateLimited).with_id(message.id());
            if limited.draft_error() {
                rejection = rejection.draft_rate_limited(limited.retry_after());
            }
            for (name, value) in limited.headers() {
                rejection = rejection.header(name, value);
            }
            return Ok(self.reject(rejection));
        }
        let init = message.initialize.unwrap_or_default();
        let id = engine.config().ids.make_session_id();
        let principal = parts.extensions.get::<Principal>().cloned();
        let requested = init
            .protocol_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(ProtocolVersion::V2025_03_26);
        let pending = SessionRecord::new(id.clone(), requested)
            .with_client(init.client_info, init.capabilities)
            .with_principal(principal);
        if !engine.sessions().record_fits(&pending) {
            // Refused before anything is reserved: no store ever holds such a record.
            return Ok(
                self.reject(Rejection::new(RejectionKind::ClientMetadataTooLarge).with_id(request_id.as_deref()))
            );
        }
        let slot = match engine.sessions().reserve().await {
            Ok(slot) => slot,
            Err(ReserveError::AtCapacity { retry_after }) => {
                return Ok(self.reject(
                    Rejection::new(RejectionKind::AtCapacity)
                        .with_id(request_id.as_deref())
                        .retry_after(retry_after),
                ));
            }
            Err(ReserveError::Unavailable) => {
                return Ok(self.reject(Rejection::store_unavailable().with_id(request_id.as_deref())));
            }
        };
        // The inner service may want the id it is about to hand out; the session
        // becomes real only if the answer is a successful InitializeResult.
        let handle = Session::pending(
            Arc::new(pending.clone()),
            engine.sessions().clone(),
            engine.outbound().clone(),
        );
        let request_id = request_id.expect("initialize is a request, so it has an id");
        let exchanged = if engine.config().translate {
            self.discover(parts, &pending, &request_id, handle.clone()).await
        } else {
            self.exchange(parts, bytes, &request_id, handle.clone()).await
        };
        let (mut head, outcome, body) = match exchanged {
            Ok(Ok(answered)) => answered,
            Ok(Err(rejection)) => {
                engine.sessions().cancel(slot);
                return Ok(self.reject(rejection.with_id(Some(&request_id))));
            }
            Err(error) => {
                engine.sessions().cancel(slot);
                return Err(error);
            }
        };
        let Some(InitializeOutcome::Succeeded(negotiated)) = outcome else {
            // A failed initialize leaves nothing behind: its place is given back.
            engine.sessions().cancel(slot);
            return Ok(Response::from_parts(head, body));
        };
        let record = SessionRecord {
            protocol_version: negotiated,
            ..pending
        };
        // Attributes the inner service set while answering are stored with the session.
        let attributes = handle.take_pending();
        match engine.sessions().create(&record, &attributes, slot).await {
            Ok(()) => {
                engine.ensure_maintenance();
                engine.counters().session_created(&record);
                crate::telemetry::session(record.id());
                crate::telemetry::protocol_version(negotiated);
                if let Some(hook) = &engine.config().on_created {
                    hook(&record);
                }
                #[cfg(feature = "tracing")]
                tracing::debug!(session = %record.id(), version = %negotiated, "session created");
            }
            _ => return Ok(self.reject(Rejection::store_unavailable().with_id(Some(&request_id)))),
        }
        head.headers.insert(
            MCP_SESSION_ID,
            HeaderValue::from_str(id.as_str()).expect("session ids are visible ASCII"),
        );
        head.headers.remove(CONTENT_LENGTH);
        Ok(Response::from_parts(head, body))
    }
    /// Hand `initialize` to the inner service and read what it answered.
    async fn exchange(
        &mut self,
        parts: Parts,
        bytes: Bytes,
        request_id: &RawValue,
        handle: Session,
    ) -> Result<Result<Answered<ResBody>, Rejection>, S::Error> {
        let engine = self.engine.clone();
        let mut req = Request::from_parts(parts, Full::new(bytes));
        req.extensions_mut().insert(handle);
        let (head, body) = self.inner.call(req).await?.into_parts();
        if head.headers.contains_key(MCP_SESSION_ID) {
            // The inner service keeps sessions of its own: its id would be replaced by
            // ours and every later request would fail inside it. Refuse loudly now
            // rather than let that happen silently on the next call.
            warn_upstream_session_id();
            return Ok(Err(Rejection::new(RejectionKind::UpstreamSessionId)));
        }
        let (outcome, body) = if !head.status.is_success() {
            (None, McpBody::inner(body, None))
        } else if is_json_content(&head.headers) {
            match Limited::new(body, engine.config().max_initialize_response_bytes)
                .collect()
                .await
            {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    (jsonrpc::initialize_outcome(&bytes, request_id), McpBody::full(bytes))
                }
                Err(_) => return Ok(Err(Rejection::new(RejectionKind::InvalidUpstreamResponse))),
            }
        } else if is_event_stream(&head.headers) {
            scan_initialize_stream(
                body,
                request_id,
                engine.config().max_initialize_response_bytes,
                engine.config().sse.max_event_bytes,
            )
            .await
        } else {
            (None, McpBody::inner(body, None))
        };
        Ok(Ok((head, outcome, body)))
    }
}

/// What the inner service's answer to `initialize` came to: the response head, whether
/// it created a session at which version, and the body to send on.
pub(super) type Answered<B> = (http::response::Parts, Option<InitializeOutcome>, McpBody<B>);

/// Say once per process why `initialize` answers 502: the fix is in the application's
/// wiring, so one line in the log is enough, and a flood of them would bury it.
fn warn_upstream_session_id() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(feature = "tracing")]
        tracing::warn!(
            "the inner service answered initialize with its own Mcp-Session-Id: it keeps \
             sessions itself, so McpSessionLayer refuses these initialize requests (502, \
             upstream_session_id); switch the inner service's sessions off (rmcp: \
             StreamableHttpServerConfig::with_legacy_session_mode(false))"
        );
    });
}

/// Read an SSE answer to `initialize` until the response to it shows up (or the bound
/// is reached), and give back what was read followed by the rest of the body.
async fn scan_initialize_stream<B>(
    body: B,
    request_id: &serde_json::value::RawValue,
    max_bytes: usize,
    max_event_bytes: usize,
) -> (Option<InitializeOutcome>, McpBody<B>)
where
    B: Body<Data = Bytes> + Send + 'static,
{
    let mut body = Box::pin(body);
    let mut seen = BytesMut::new();
    let mut parser = SseParser::new(max_event_bytes.min(max_bytes));
    let mut outcome = None;
    'scan: while seen.len() <= max_bytes {
        let Some(Ok(frame)) = body.frame().await else { break };
        let Ok(data) = frame.into_data() else { continue };
        parser.push(&data);
        seen.extend_from_slice(&data);
        while let Ok(Some(event)) = parser.next_event() {
            if let Some(found) = jsonrpc::initialize_outcome(&event.data, request_id) {
                outcome = Some(found);
                break 'scan;
            }
        }
    }
    (outcome, McpBody::prefixed(seen.freeze(), body))
}
