//! [`McpSession`]: the service. Per request: origin/host guard → era classification →
//! session resolution → inner call → SSE rewrite.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::ALLOW;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use super::future::ResponseFuture;
use crate::engine::Engine;
use crate::era::VersionHeader;
use crate::headers::MCP_SESSION_ID;
use crate::jsonrpc::Peeked;
use crate::lifecycle::sessions::BusyGuard;
use crate::rejection::{Rejection, RejectionKind};
use crate::session::{Principal, SessionId};
use crate::store::BoxError;
use crate::stream::McpBody;
use crate::{ProtocolVersion, SessionRecord as Record};

/// The service made by [`McpSessionLayer`](crate::McpSessionLayer).
///
/// The inner service receives `http::Request<Full<Bytes>>`: the layer reads (and
/// bounds) each POST body to classify it, then hands the same bytes on.
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tower::service_fn;
/// use tower_mcp_session::{McpSession, McpSessionLayer};
/// use tower_layer::Layer;
///
/// let inner = service_fn(|_req: http::Request<Full<Bytes>>| async {
///     Ok::<_, Infallible>(http::Response::new(Full::<Bytes>::default()))
/// });
/// let service: McpSession<_> = McpSessionLayer::new().layer(inner);
/// let _inner = service.get_ref();
/// ```
pub struct McpSession<S> {
    inner: S,
    engine: Arc<Engine>,
}

impl<S> McpSession<S> {
    pub(crate) fn new(inner: S, engine: Arc<Engine>) -> Self {
        Self { inner, engine }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the layer's service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for McpSession<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            engine: self.engine.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for McpSession<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpSession")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for McpSession<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    type Response = Response<McpBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The ready service goes into the future; a clone stays for the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let engine = self.engine.clone();
        // Spans start once the request is known to be a JSON-RPC message (or a GET or
        // DELETE): see `telemetry/`.
        let future = async move { Handler { engine, inner }.serve(req).await };
        ResponseFuture::new(Box::pin(future))
    }
}

pub(super) type Answer<B, E> = Result<Response<McpBody<B>>, E>;

/// One request's worth of the service: the engine and the inner service ready to call.
/// Each method of the transport has its own file with its own `impl` block.
pub(super) struct Handler<S> {
    pub(super) engine: Arc<Engine>,
    pub(super) inner: S,
}

impl<S, ResBody> Handler<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    pub(super) async fn serve<ReqBody>(self, req: Request<ReqBody>) -> Answer<ResBody, S::Error>
    where
        ReqBody: Body + Send + 'static,
        ReqBody::Data: Send,
        ReqBody::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        let authority = parts.uri.authority().map(|a| a.as_str());
        if let Err(kind) = self.engine.config().guard.check(&parts.headers, authority) {
            return Ok(self.refuse(Rejection::new(kind)));
        }
        let version = VersionHeader::read(&parts.headers);
        let modern_header = matches!(version, VersionHeader::Present(v) if v.is_modern());
        match parts.method {
            Method::POST => self.post(parts, body, version).await,
            Method::GET | Method::DELETE if self.engine.config().modern_only => {
                Ok(self.refuse(self.method_not_allowed()))
            }
            // 2026-07-28 has no GET stream and no DELETE: the inner service answers.
            Method::GET | Method::DELETE if modern_header => self.pass_through(parts, Bytes::new()).await,
            // Rare paths are boxed so the common one's future stays small: every request
            // pays for moving the largest path's state into the response future's box.
            Method::GET => {
                let span_parts = crate::telemetry::HttpParts::of(&parts);
                Box::pin(crate::telemetry::http_request(span_parts, self.get(parts, version))).await
            }
            Method::DELETE => {
                let span_parts = crate::telemetry::HttpParts::of(&parts);
                Box::pin(crate::telemetry::http_request(span_parts, self.delete(parts, version))).await
            }
            _ => Ok(self.refuse(self.method_not_allowed())),
        }
    }

    pub(super) fn method_not_allowed(&self) -> Rejection {
        let allow = match (
            self.engine.config().modern_only,
            self.engine.config().client_termination,
        ) {
            (true, _) => "POST",
            (false, true) => "GET, POST, DELETE",
            (false, false) => "GET, POST",
        };
        Rejection::new(RejectionKind::MethodNotAllowed).header(ALLOW, HeaderValue::from_static(allow))
    }

    /// The answer to a refusal inside an operation (a routed message, a GET or a
    /// DELETE): it carries its kind in the extensions for the telemetry, which takes
    /// it off before the answer leaves the layer.
    pub(super) fn reject(&self, rejection: Rejection) -> Response<McpBody<ResBody>> {
        let kind = rejection.kind;
        #[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(unused_mut))]
        let mut response = self.refuse(rejection);
        #[cfg(any(feature = "tracing", feature = "metrics"))]
        response.extensions_mut().insert(kind);
        let _ = kind;
        response
    }

    /// The answer to a refusal before any operation began (nothing to mark).
    pub(super) fn refuse(&self, rejection: Rejection) -> Response<McpBody<ResBody>> {
        self.engine.counters().rejected(rejection.kind);
        #[cfg(feature = "tracing")]
        tracing::debug!(
            reason = rejection.kind.reason(),
            status = rejection.kind.status().as_u16(),
            "request rejected"
        );
        rejection.into_response().map(McpBody::full)
    }

    /// A legacy request's `MCP-Protocol-Version`: absent is fine (the negotiated version
    /// applies), anything else must be a supported 2025 revision.
    pub(super) fn legacy_version(&self, version: VersionHeader) -> Result<Option<ProtocolVersion>, Rejection> {
        match version {
            VersionHeader::Absent => Ok(None),
            VersionHeader::Present(v) if self.engine.config().legacy_versions.contains(&v) => Ok(Some(v)),
            _ => Err(Rejection::new(RejectionKind::UnsupportedProtocolVersion)
                .data("supported", self.engine.supported_versions().into())),
        }
    }

    pub(super) fn legacy_on_modern_only(&self, version: VersionHeader, message: &Peeked) -> Rejection {
        let requested = match (version, &message.initialize) {
            (VersionHeader::Present(v), _) => Some(v.to_string()),
            (_, Some(init)) => init.protocol_version.clone(),
            _ => None,
        };
        match requested {
            Some(requested) => Rejection::new(RejectionKind::UnsupportedModernVersion)
                .with_id(message.id())
                .data("supported", self.engine.supported_versions().into())
                .data("requested", requested.into()),
            // No version anywhere: the required header is missing (2026-07-28 rules).
            None => Rejection::new(RejectionKind::HeaderMismatch).with_id(message.id()),
        }
    }

    /// Find the session a legacy request names and mark it busy.
    pub(super) async fn resolve(engine: &Engine, parts: &Parts) -> Result<(Arc<Record>, BusyGuard), Rejection> {
        let mut values = parts.headers.get_all(MCP_SESSION_ID).iter();
        let Some(value) = values.next() else {
            return Err(Rejection::new(RejectionKind::MissingSessionId));
        };
        // Checked before any lookup, so a malformed id costs the store nothing.
        let id = match (values.next(), value.to_str().ok().and_then(SessionId::parse)) {
            (None, Some(id)) => id,
            _ => return Err(Rejection::new(RejectionKind::MalformedSessionId)),
        };
        let busy = match engine.sessions().acquire(&id).await {
            Ok(Some(busy)) => busy,
            Ok(None) => return Err(Rejection::new(RejectionKind::SessionNotFound)),
            Err(_) => return Err(Rejection::store_unavailable()),
        };
        let record = busy.record().clone();
        crate::telemetry::session(&id);
        crate::telemetry::protocol_version(record.protocol_version());
        // Another principal's session looks exactly like an unknown one.
        if engine.config().bind_principal && record.principal() != parts.extensions.get::<Principal>() {
            return Err(Rejection::new(RejectionKind::SessionNotFound));
        }
        Ok((record, busy))
    }
}
