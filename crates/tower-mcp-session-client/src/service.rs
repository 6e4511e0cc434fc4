//! The [`McpClient`] service: its handle on the session, and the tower `Service`
//! whose calls hand the work to a [`Handler`](crate::handler::Handler).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower::ServiceExt;
use tower_service::Service;

use super::body::{Connector, McpClientBody};
use super::error::{BoxError, Error};
use super::session::{ClientStats, Shared};
use crate::BoxFuture;
use tower_mcp_session::{ProtocolVersion, SessionId};

use crate::handler::Handler;

/// The MCP client service built by [`McpClientLayer`](crate::McpClientLayer): see there for what it does.
///
/// As a tower service it takes any `Request<B>` whose body can be rebuilt from bytes
/// (`B: From<Bytes>`, e.g. `Full<Bytes>`), because a request may be sent twice (after a
/// re-initialization). Its convenience calls ([`initialize`](Self::initialize),
/// [`request`](Self::request), [`close`](Self::close), …) need an inner service over
/// `Request<Full<Bytes>>`.
pub struct McpClient<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S> McpClient<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the client.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The session id in force (`None` before `initialize`, after a close, or with a
    /// server that runs without sessions).
    pub fn session_id(&self) -> Option<SessionId> {
        crate::session::snapshot_id(&self.shared.snapshot())
    }

    /// The protocol version the server chose in `initialize`.
    ///
    /// `None` also when the server named a version that is not a `YYYY-MM-DD` revision;
    /// the client still sends that version back in `MCP-Protocol-Version`.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.shared.snapshot().version.and_then(|v| v.parse().ok())
    }

    /// Whether `initialize` succeeded and the session was not closed or lost since.
    pub fn is_initialized(&self) -> bool {
        self.shared.is_initialized()
    }

    /// The session's counters.
    pub fn stats(&self) -> ClientStats {
        self.shared.stats()
    }

    /// SSE streams of this session open right now.
    pub fn open_streams(&self) -> usize {
        self.shared.streams.len()
    }
}

impl<S: Clone> Clone for McpClient<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> fmt::Debug for McpClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpClient")
            .field("session_id", &self.session_id())
            .finish_non_exhaustive()
    }
}

/// Response future of [`McpClient`].
///
/// Capturing the session, re-initializing and retrying await the network several times,
/// so the work is one boxed future.
pub struct ResponseFuture<RB> {
    inner: BoxFuture<'static, Result<Response<McpClientBody<RB>>, Error>>,
}

impl<RB> Future for ResponseFuture<RB> {
    type Output = Result<Response<McpClientBody<RB>>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<RB> fmt::Debug for ResponseFuture<RB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B, RB> Service<Request<B>> for McpClient<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<McpClientBody<RB>>;
    type Error = Error;
    type Future = ResponseFuture<RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::transport)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service goes into the future; a clone stays for the next call.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let connector = connector::<S, B, RB>(self.inner.clone());
        let handler = Handler {
            shared: self.shared.clone(),
            connector,
        };
        ResponseFuture {
            inner: Box::pin(handler.serve(ready, req)),
        }
    }
}

/// A type-erased way to send more requests through clones of the inner service.
pub(crate) fn connector<S, B, RB>(service: S) -> Connector<RB>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: From<Bytes> + Send + 'static,
    RB: 'static,
{
    let service = Mutex::new(service);
    Arc::new(move |req: Request<Bytes>| {
        let svc = service.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Box::pin(async move { svc.oneshot(req.map(B::from)).await.map_err(Error::transport) })
    })
}
