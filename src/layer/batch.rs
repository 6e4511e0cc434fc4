//! JSON-RPC batches: only 2025-03-26 sessions may send them, never with `initialize`
//! and never under a 2026-07-28 `MCP-Protocol-Version`. Answers to the layer's own
//! requests are taken out first; the rest goes to the inner service.

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use super::client_messages::{BatchRest, accepted, take_batch_answers};
use super::service::{Answer, Handler};
use crate::ProtocolVersion;
use crate::era::VersionHeader;
use crate::jsonrpc::{MessageKind, Peeked};
use crate::rejection::{Rejection, RejectionKind};
use crate::store::BoxError;

impl<S, ResBody> Handler<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    pub(super) async fn batch(
        self,
        parts: Parts,
        bytes: Bytes,
        version: VersionHeader,
        items: Vec<Peeked>,
    ) -> Answer<ResBody, S::Error> {
        // 2026-07-28 has no batches, so there is nothing for the inner service to judge:
        // the refusal is the same whether the layer validates modern headers or not.
        if matches!(version, VersionHeader::Present(v) if v.is_modern()) {
            return Ok(self.reject(Rejection::new(RejectionKind::BatchNotAllowed)));
        }
        if self.engine.config().modern_only {
            return Ok(self.reject(Rejection::new(RejectionKind::HeaderMismatch)));
        }
        if items.iter().any(Peeked::is_initialize)
            || !matches!(
                version,
                VersionHeader::Absent | VersionHeader::Present(ProtocolVersion::V2025_03_26)
            )
        {
            return Ok(self.reject(Rejection::new(RejectionKind::BatchNotAllowed)));
        }
        let (record, busy) = match Self::resolve(&self.engine, &parts).await {
            Ok(found) => found,
            Err(rejection) => return Ok(self.reject(rejection)),
        };
        if !record.protocol_version().allows_batches() {
            return Ok(self.reject(Rejection::new(RejectionKind::BatchNotAllowed)));
        }
        let (bytes, items) = match take_batch_answers(&self.engine, &record, bytes, items).await {
            Ok(BatchRest::Items(bytes, items)) => (bytes, items),
            Ok(BatchRest::Empty) => return Ok(accepted()),
            Err(rejection) => return Ok(self.reject(rejection)),
        };
        if self.engine.config().translate {
            // A 2026-07-28 inner service takes no batches, and translation does not yet
            // split one into single requests: refused, never passed on as it is.
            return Ok(self.reject(Rejection::new(RejectionKind::BatchNotAllowed)));
        }
        let has_request = items.iter().any(|m| matches!(m.kind, MessageKind::Request { .. }));
        self.call_in_session(parts, bytes, record, busy, has_request, None)
            .await
    }
}
