//! The body of a proxied answer: the upstream's, streamed as it arrives (an SSE
//! answer is never buffered), or one the proxy wrote itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;

pin_project! {
    /// The body of an answer from [`Upstream`](crate::Upstream).
    ///
    /// ```
    /// use http_body::Body;
    /// use tower_mcp_session_proxy::UpstreamBody;
    ///
    /// fn streams<B: Body<Data = bytes::Bytes>>() {}
    /// streams::<UpstreamBody>();
    /// ```
    #[derive(Debug)]
    pub struct UpstreamBody {
        #[pin]
        kind: Kind,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind {
        Upstream { #[pin] body: Incoming },
        Local { #[pin] body: Full<Bytes> },
    }
}

impl UpstreamBody {
    pub(crate) fn upstream(body: Incoming) -> Self {
        Self {
            kind: Kind::Upstream { body },
        }
    }

    pub(crate) fn local(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Local { body: Full::new(bytes) },
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project().kind.project() {
            KindProj::Upstream { body } => body.poll_frame(cx),
            KindProj::Local { body } => match body.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream { body } => body.is_end_stream(),
            Kind::Local { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream { body } => body.size_hint(),
            Kind::Local { body } => body.size_hint(),
        }
    }
}
