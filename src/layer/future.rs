//! The response future of [`McpSession`](super::McpSession).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

use crate::store::BoxFuture;
use crate::stream::McpBody;

/// Response future of [`McpSession`](super::McpSession).
///
/// Session handling awaits the store and the request body before the inner service is
/// called, so the work is one boxed future; rejections never reach the inner service.
pub struct ResponseFuture<B, E> {
    inner: BoxFuture<'static, Result<Response<McpBody<B>>, E>>,
}

impl<B, E> ResponseFuture<B, E> {
    pub(crate) fn new(inner: BoxFuture<'static, Result<Response<McpBody<B>>, E>>) -> Self {
        Self { inner }
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<McpBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
