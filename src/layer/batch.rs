//! JSON-RPC batches: only 2025-03-26 sessions may send them, never with `initialize`
//! and never under a 2026-07-28 `MCP-Protocol-Version`. Answers to the layer's own
//! requests are taken out first; the rest goes to the inner service — in translation
//! mode one message at a time, since 2026-07-28 has no batches.

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use serde_json::value::RawValue;
use tower_service::Service;

use super::client_messages::{BatchRest, accepted, take_batch_answers};
use super::service::{Answer, Handler};
use crate::ProtocolVersion;
use crate::era::VersionHeader;
use crate::headers::is_event_stream;
use crate::jsonrpc::{MessageKind, Peeked};
use crate::rejection::{Rejection, RejectionKind};
use crate::sse::encode_event;
use crate::store::BoxError;
use crate::stream::McpBody;
use crate::stream::policy::set_sse_headers;
use crate::util::join_all;

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
            drop(busy);
            return self.translated_batch(parts, bytes, items).await;
        }
        let has_request = items.iter().any(|m| matches!(m.kind, MessageKind::Request { .. }));
        self.call_in_session(parts, bytes, record, busy, has_request, None)
            .await
    }

    /// A batch in translation mode: each message is translated and sent on its own, all
    /// at once (a batch's members may be handled in any order). The answers that came
    /// as JSON form one JSON array; when any request's answer is a stream, the batch is
    /// answered with one SSE stream carrying the JSON answers first and then every
    /// request's own resumable stream (progress, requests to the client, its answer),
    /// interleaved as they come.
    async fn translated_batch(self, parts: Parts, bytes: Bytes, items: Vec<Peeked>) -> Answer<ResBody, S::Error> {
        let raw = serde_json::from_slice::<Vec<Box<RawValue>>>(&bytes)
            .ok()
            .filter(|raw| raw.len() == items.len());
        let Some(raw) = raw else {
            return Ok(self.reject(Rejection::new(RejectionKind::InvalidRequest)));
        };
        let mut calls = Vec::with_capacity(items.len());
        for (raw, message) in raw.into_iter().zip(items) {
            let mut inner = self.inner.clone();
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            let one = Handler {
                engine: self.engine.clone(),
                inner,
            };
            calls.push(Box::pin(one.translated(
                parts.clone(),
                Bytes::from(raw.get().to_owned()),
                message,
            )));
        }
        let mut answers = Vec::new();
        let mut streams = Vec::new();
        for response in join_all(calls).await {
            let (head, body) = response?.into_parts();
            if head.status == StatusCode::ACCEPTED {
                continue;
            }
            if is_event_stream(&head.headers) {
                streams.push(body);
                continue;
            }
            // A JSON answer of the layer's or the inner service's, or a refusal (every
            // refusal names the request's id).
            if let Ok(collected) = body.collect().await {
                let answer = collected.to_bytes();
                if !answer.is_empty() {
                    answers.push(answer);
                }
            }
        }
        if streams.is_empty() {
            if answers.is_empty() {
                return Ok(accepted());
            }
            let mut array = BytesMut::from(&b"["[..]);
            for (i, answer) in answers.iter().enumerate() {
                if i > 0 {
                    array.extend_from_slice(b",");
                }
                array.extend_from_slice(answer);
            }
            array.extend_from_slice(b"]");
            let mut response = Response::new(McpBody::full(array.freeze()));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return Ok(response);
        }
        let mut first = BytesMut::new();
        for answer in &answers {
            encode_event(&mut first, None, answer);
        }
        let mut bodies = vec![McpBody::full(first.freeze())];
        bodies.extend(streams);
        let mut response = Response::new(McpBody::joined(bodies));
        set_sse_headers(&mut response);
        Ok(response)
    }
}
