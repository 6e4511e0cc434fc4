//! The response body of the layer: the inner body untouched, a rejection, or a
//! resumable SSE stream read from the event log.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::decode::Decoder;
use super::outbox::Flight;
use super::reader::Reader;
use crate::lifecycle::sessions::BusyGuard;
use crate::sse::encode_event;
use crate::store::{BoxError, BoxFuture};

pin_project! {
    /// Response body of [`McpSession`](crate::McpSession).
    ///
    /// Modern requests and plain JSON answers carry the inner service's body unchanged;
    /// legacy SSE answers become a resumable stream of events with layer-assigned ids;
    /// refusals carry a JSON-RPC error.
    ///
    /// Its error is the inner body's, or [`WriteTimeout`] when the client of a
    /// resumable stream stopped reading (the server then closes the connection).
    ///
    /// ```
    /// use http_body::Body;
    /// use tower_mcp_session::McpBody;
    ///
    /// let body: McpBody<http_body_util::Empty<bytes::Bytes>> = McpBody::empty();
    /// assert!(body.is_end_stream());
    /// ```
    pub struct McpBody<B> {
        #[pin]
        kind: Kind<B>,
        // Holds the session busy until the body is finished or dropped.
        busy: Option<Arc<BusyGuard>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
        Prefixed { prefix: Option<Bytes>, body: Pin<Box<B>> },
        Stream {
            reader: Option<Reader>,
            pending: Option<BoxFuture<'static, (Reader, Option<Bytes>)>>,
            // Frames handed to the server and not yet written.
            flight: Arc<Flight>,
            // Since when no frame was written while some wait: (written count, deadline).
            stall: Option<(u64, Pin<Box<tokio::time::Sleep>>)>,
            write_timeout: std::time::Duration,
        },
        Framed { decoder: Decoder, body: Pin<Box<B>>, ended: bool },
        // Several bodies as one stream of frames, taken in turn as they are ready (a
        // translated batch: each request's stream, and the answers that came as JSON).
        Joined { parts: Vec<Pin<Box<McpBody<B>>>>, next: usize },
    }
}

impl<B> McpBody<B> {
    /// An empty body.
    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
            busy: None,
        }
    }

    pub(crate) fn inner(body: B, busy: Option<Arc<BusyGuard>>) -> Self {
        Self {
            kind: Kind::Inner { body },
            busy,
        }
    }

    pub(crate) fn prefixed(prefix: Bytes, body: Pin<Box<B>>) -> Self {
        Self {
            kind: Kind::Prefixed {
                prefix: (!prefix.is_empty()).then_some(prefix),
                body,
            },
            busy: None,
        }
    }

    /// An NDJSON body framed as SSE events (no ids) as it arrives.
    pub(crate) fn framed(body: B, decoder: Decoder, busy: Option<Arc<BusyGuard>>) -> Self {
        Self {
            kind: Kind::Framed {
                decoder,
                body: Box::pin(body),
                ended: false,
            },
            busy,
        }
    }

    /// `parts` as one body: each frame whole, from whichever part has one first (in
    /// turn, so none starves); it ends when every part has ended.
    pub(crate) fn joined(parts: Vec<McpBody<B>>) -> Self {
        Self {
            kind: Kind::Joined {
                parts: parts.into_iter().map(Box::pin).collect(),
                next: 0,
            },
            busy: None,
        }
    }

    pub(crate) fn stream(reader: Reader) -> Self {
        Self {
            kind: Kind::Stream {
                write_timeout: reader.write_timeout(),
                reader: Some(reader),
                pending: None,
                flight: Arc::default(),
                stall: None,
            },
            busy: None,
        }
    }
}

impl<B> Body for McpBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = match this.kind.project() {
            KindProj::Inner { body } => ready!(body.poll_frame(cx)).map(|f| f.map_err(Into::into)),
            KindProj::Full { data } => data.take().map(|d| Ok(Frame::data(d))),
            KindProj::Prefixed { prefix, body } => match prefix.take() {
                Some(p) => Some(Ok(Frame::data(p))),
                None => ready!(body.as_mut().poll_frame(cx)).map(|f| f.map_err(Into::into)),
            },
            KindProj::Stream {
                reader,
                pending,
                flight,
                stall,
                write_timeout,
            } => {
                if flight.pending() {
                    // The server holds frames it has not written: the client is not
                    // reading as fast as we produce. Wait for progress while the
                    // server's share is full; cut the connection when none comes.
                    flight.register(cx.waker());
                    let written = flight.written();
                    if stall.as_ref().is_none_or(|(seen, _)| *seen != written) {
                        *stall = Some((written, Box::pin(tokio::time::sleep(*write_timeout))));
                    }
                    let (_, deadline) = stall.as_mut().expect("set above");
                    if deadline.as_mut().poll(cx).is_ready() {
                        reader.take();
                        pending.take();
                        this.busy.take();
                        return Poll::Ready(Some(Err(Box::new(WriteTimeout))));
                    }
                    if flight.full() {
                        return Poll::Pending;
                    }
                } else {
                    *stall = None;
                }
                'chunk: {
                    if pending.is_none() {
                        let Some(r) = reader.as_mut() else {
                            return Poll::Ready(None);
                        };
                        // What needs no waiting is taken here: a boxed `next_chunk` moves
                        // the whole reader in and out for every frame.
                        if let Some(chunk) = r.buffered() {
                            if chunk.is_none() {
                                reader.take();
                            }
                            break 'chunk chunk.map(|c| Ok(Frame::data(flight.track(c))));
                        }
                        let r = reader.take().expect("looked at above");
                        *pending = Some(Box::pin(r.next_chunk()));
                    }
                    let fut = pending.as_mut().expect("set above");
                    let (r, chunk) = ready!(fut.as_mut().poll(cx));
                    *pending = None;
                    if chunk.is_some() {
                        *reader = Some(r);
                    }
                    chunk.map(|c| Ok(Frame::data(flight.track(c))))
                }
            }
            KindProj::Framed { decoder, body, ended } => loop {
                let mut out = BytesMut::new();
                // A message over the bound ends the stream: it cannot be framed whole.
                while let Ok(Some(message)) = decoder.next_message() {
                    encode_event(&mut out, None, &message);
                }
                if *ended {
                    if let Some(last) = decoder.finish() {
                        encode_event(&mut out, None, &last);
                    }
                    break (!out.is_empty()).then(|| Ok(Frame::data(out.freeze())));
                }
                if !out.is_empty() {
                    break Some(Ok(Frame::data(out.freeze())));
                }
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            decoder.push(&data);
                        }
                    }
                    Some(Err(e)) => break Some(Err(e.into())),
                    None => *ended = true,
                }
            },
            KindProj::Joined { parts, next } => 'joined: loop {
                if parts.is_empty() {
                    break None;
                }
                let n = parts.len();
                for k in 0..n {
                    let at = (*next + k) % n;
                    match parts[at].as_mut().poll_frame(cx) {
                        Poll::Ready(Some(frame)) => {
                            *next = (at + 1) % n;
                            break 'joined Some(frame);
                        }
                        Poll::Ready(None) => {
                            parts.remove(at);
                            *next = 0;
                            continue 'joined;
                        }
                        Poll::Pending => {}
                    }
                }
                return Poll::Pending;
            },
        };
        if polled.is_none() {
            // Done: the busy period ends with the body, not when the client goes away later.
            this.busy.take();
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
            Kind::Prefixed { prefix, body } => prefix.is_none() && body.is_end_stream(),
            Kind::Stream { reader, pending, .. } => reader.is_none() && pending.is_none(),
            Kind::Framed { .. } => false,
            Kind::Joined { parts, .. } => parts.iter().all(|p| p.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            _ => SizeHint::default(),
        }
    }
}

impl<B> fmt::Debug for McpBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Full { .. } => "full",
            Kind::Prefixed { .. } => "prefixed",
            Kind::Stream { .. } => "stream",
            Kind::Framed { .. } => "framed",
            Kind::Joined { .. } => "joined",
        };
        f.debug_struct("McpBody").field("kind", &kind).finish()
    }
}

/// The error ending a resumable stream whose client stopped reading: frames handed to
/// the server stayed unwritten for the layer's
/// [`sse_write_timeout`](crate::McpSessionLayerBuilder::sse_write_timeout).
///
/// ```
/// use tower_mcp_session::WriteTimeout;
///
/// assert_eq!(WriteTimeout.to_string(), "the client stopped reading the event stream");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteTimeout;

impl fmt::Display for WriteTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the client stopped reading the event stream")
    }
}

impl std::error::Error for WriteTimeout {}
