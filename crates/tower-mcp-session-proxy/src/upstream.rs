//! [`Upstream`]: the service that forwards each request the layer hands it to the
//! upstream server, and its builder.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower_mcp_session::headers::MCP_SESSION_ID;
use tower_mcp_session::rate_limit::PeerAddr;
use tower_service::Service;

use crate::body::UpstreamBody;
use crate::gateway::{GatewayFailure, gateway_answer};
use crate::headers::{append_forwarded_for, strip_hop_by_hop};

/// Why an upstream address was not taken.
///
/// ```
/// use tower_mcp_session_proxy::{InvalidUpstream, Upstream};
///
/// assert_eq!(Upstream::new("ftp://127.0.0.1/mcp").unwrap_err(), InvalidUpstream::Scheme);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidUpstream {
    /// Not an absolute URL with a host.
    Url,
    /// Neither `http` nor `https`.
    Scheme,
    /// An `https` upstream needs a client with a TLS connector:
    /// [`UpstreamBuilder::build_with_client`].
    HttpsNeedsConnector,
}

impl fmt::Display for InvalidUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Url => "the upstream must be an absolute URL such as http://127.0.0.1:3000/mcp",
            Self::Scheme => "the upstream URL must be http or https",
            Self::HttpsNeedsConnector => "an https upstream needs a client with a TLS connector (build_with_client)",
        })
    }
}

impl std::error::Error for InvalidUpstream {}

/// Where requests go: the upstream's scheme, host and MCP endpoint path.
#[derive(Debug)]
struct Target {
    scheme: Scheme,
    authority: Authority,
    path: PathAndQuery,
}

impl Target {
    fn parse(url: &str) -> Result<Self, InvalidUpstream> {
        let uri: Uri = url.parse().map_err(|_| InvalidUpstream::Url)?;
        let parts = uri.into_parts();
        let scheme = parts.scheme.ok_or(InvalidUpstream::Url)?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(InvalidUpstream::Scheme);
        }
        let authority = parts.authority.ok_or(InvalidUpstream::Url)?;
        let path = parts.path_and_query.unwrap_or_else(|| PathAndQuery::from_static("/"));
        Ok(Self {
            scheme,
            authority,
            path,
        })
    }

    /// The upstream endpoint, with the client's query when the endpoint has none of
    /// its own.
    fn uri(&self, query: Option<&str>) -> Uri {
        let path = match query {
            Some(q) if self.path.query().is_none() => format!("{}?{q}", self.path.path())
                .parse()
                .unwrap_or_else(|_| self.path.clone()),
            _ => self.path.clone(),
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .expect("parts of a valid URI")
    }
}

#[derive(Debug, Clone)]
struct Settings {
    response_timeout: Duration,
    forward_session_id: bool,
    forwarded_for: bool,
}

/// A tower service forwarding MCP requests to an upstream Streamable HTTP server: put
/// [`McpSessionLayer`](tower_mcp_session::McpSessionLayer) in front of it and a
/// server in any language gets sessions, resumable streams and rate limits.
///
/// The upstream should be stateless (the layer keeps the sessions; one that mints its
/// own `Mcp-Session-Id` is refused by the layer with 502 `upstream_session_id`). Each
/// request goes to the upstream's endpoint with its method, headers (hop-by-hop ones
/// and `Mcp-Session-Id` removed, `X-Forwarded-For` appended when the peer address is
/// known) and body; the answer comes back as it arrives, so an SSE answer streams
/// through. Connections are pooled. When the upstream cannot be reached the client
/// gets 502, when it gives no answer head within the response timeout 504, both with
/// a JSON-RPC error answer for the request's id (`-32603`).
///
/// ```
/// use tower_mcp_session::McpSessionLayer;
/// use tower_mcp_session_proxy::Upstream;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let upstream = Upstream::new("http://127.0.0.1:3000/mcp").unwrap();
/// let service = tower::ServiceBuilder::new()
///     .layer(McpSessionLayer::new())
///     .service(upstream);
/// # drop(service);
/// # }
/// ```
pub struct Upstream<C = HttpConnector> {
    client: Client<C, Full<Bytes>>,
    target: Arc<Target>,
    settings: Arc<Settings>,
}

impl Upstream {
    /// Forward to `url` (an `http` URL) with the default settings.
    pub fn new(url: &str) -> Result<Self, InvalidUpstream> {
        Self::builder(url)?.build()
    }

    /// Settings for forwarding to `url`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session_proxy::Upstream;
    ///
    /// let upstream = Upstream::builder("http://127.0.0.1:3000/mcp")
    ///     .unwrap()
    ///     .response_timeout(Duration::from_secs(10))
    ///     .build()
    ///     .unwrap();
    /// # drop(upstream);
    /// ```
    pub fn builder(url: &str) -> Result<UpstreamBuilder, InvalidUpstream> {
        Ok(UpstreamBuilder {
            target: Target::parse(url)?,
            settings: Settings {
                response_timeout: Duration::from_secs(30),
                forward_session_id: false,
                forwarded_for: true,
            },
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
        })
    }
}

impl<C> Clone for Upstream<C>
where
    C: Clone,
{
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            target: Arc::clone(&self.target),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<C> fmt::Debug for Upstream<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("target", &self.target)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Settings of an [`Upstream`]; every one has a default.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `response_timeout` | 30 s | until the upstream's answer head; a stream's body may then run as long as it runs |
/// | `connect_timeout` | 5 s | TCP connect to the upstream |
/// | `pool_idle_timeout` | 90 s | how long an idle pooled connection is kept |
/// | `pool_max_idle_per_host` | 64 | idle connections kept |
/// | `forward_session_id` | `false` | also send the layer's `Mcp-Session-Id` upstream (for logs); the upstream must not answer with one of its own |
/// | `forwarded_for` | `true` | append the peer address (`rate_limit::PeerAddr` in the request's extensions) to `X-Forwarded-For` |
///
/// ```
/// use tower_mcp_session_proxy::Upstream;
///
/// let builder = Upstream::builder("http://127.0.0.1:3000/mcp").unwrap().forwarded_for(false);
/// # drop(builder);
/// ```
#[derive(Debug)]
pub struct UpstreamBuilder {
    target: Target,
    settings: Settings,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
}

impl UpstreamBuilder {
    /// How long to wait for the upstream's answer head (default 30 s); then 504.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_mcp_session_proxy::Upstream;
    /// let b = Upstream::builder("http://127.0.0.1:3000/mcp").unwrap().response_timeout(Duration::from_secs(5));
    /// # drop(b);
    /// ```
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.settings.response_timeout = timeout;
        self
    }

    /// How long a TCP connect to the upstream may take (default 5 s); then 502.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_mcp_session_proxy::Upstream;
    /// let b = Upstream::builder("http://127.0.0.1:3000/mcp").unwrap().connect_timeout(Duration::from_secs(1));
    /// # drop(b);
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long an idle pooled connection is kept (default 90 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_mcp_session_proxy::Upstream;
    /// let b = Upstream::builder("http://127.0.0.1:3000/mcp").unwrap().pool_idle_timeout(Duration::from_secs(30));
    /// # drop(b);
    /// ```
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle connections to the upstream are kept (default 64).
    ///
    /// ```
    /// # use tower_mcp_session_proxy::Upstream;
    /// let b = Upstream::builder("http://127.0.0.1:3000/mcp").unwrap().pool_max_idle_per_host(8);
    /// # drop(b);
    /// ```
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool_max_idle_per_host = n;
        self
    }

    /// Whether the layer's `Mcp-Session-Id` is also sent upstream (default `false`:
    /// the upstream is stateless and has no use for it).
    ///
    /// ```
    /// # use tower_mcp_session_proxy::Upstream;
    /// let b = Upstream::builder("http://127.0.0.1:3000/mcp").unwrap().forward_session_id(true);
    /// # drop(b);
    /// ```
    pub fn forward_session_id(mut self, forward: bool) -> Self {
        self.settings.forward_session_id = forward;
        self
    }

    /// Whether the peer address is appended to `X-Forwarded-For` (default `true`).
    ///
    /// ```
    /// # use tower_mcp_session_proxy::Upstream;
    /// let b = Upstream::builder("http://127.0.0.1:3000/mcp").unwrap().forwarded_for(false);
    /// # drop(b);
    /// ```
    pub fn forwarded_for(mut self, append: bool) -> Self {
        self.settings.forwarded_for = append;
        self
    }

    /// An upstream over plain HTTP with hyper's pooled client.
    ///
    /// ```
    /// # use tower_mcp_session_proxy::{InvalidUpstream, Upstream};
    /// let https = Upstream::builder("https://mcp.example.com/mcp").unwrap().build();
    /// assert_eq!(https.unwrap_err(), InvalidUpstream::HttpsNeedsConnector);
    /// ```
    pub fn build(self) -> Result<Upstream, InvalidUpstream> {
        if self.target.scheme != Scheme::HTTP {
            return Err(InvalidUpstream::HttpsNeedsConnector);
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .build(connector);
        Ok(self.build_with_client(client))
    }

    /// An upstream reached through `client`, for instance one with a TLS connector
    /// (`hyper-rustls`) for an `https` upstream. The pool settings of this builder do
    /// not apply; the client's own do.
    ///
    /// ```
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// # use tower_mcp_session_proxy::Upstream;
    ///
    /// let client = Client::builder(TokioExecutor::new()).build_http();
    /// let upstream = Upstream::builder("http://127.0.0.1:3000/mcp").unwrap().build_with_client(client);
    /// # drop(upstream);
    /// ```
    pub fn build_with_client<C>(self, client: Client<C, Full<Bytes>>) -> Upstream<C> {
        Upstream {
            client,
            target: Arc::new(self.target),
            settings: Arc::new(self.settings),
        }
    }
}

impl<C> Service<Request<Full<Bytes>>> for Upstream<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    type Response = Response<UpstreamBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The pool opens connections on demand; there is nothing to wait for here.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let client = self.client.clone();
        let target = Arc::clone(&self.target);
        let settings = Arc::clone(&self.settings);
        ResponseFuture {
            inner: Box::pin(async move { Ok(forward(client, &target, &settings, req).await) }),
        }
    }
}

/// The future of [`Upstream`]'s `call`. Boxed: it awaits a network round trip, next to
/// which one allocation is nothing.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, Infallible>> + Send>>,
}

impl Future for ResponseFuture {
    type Output = Result<Response<UpstreamBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

async fn forward<C>(
    client: Client<C, Full<Bytes>>,
    target: &Target,
    settings: &Settings,
    req: Request<Full<Bytes>>,
) -> Response<UpstreamBody>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let (mut parts, body) = req.into_parts();
    let Ok(collected) = body.collect().await;
    let bytes = collected.to_bytes();
    strip_hop_by_hop(&mut parts.headers);
    if !settings.forward_session_id {
        parts.headers.remove(MCP_SESSION_ID);
    }
    if settings.forwarded_for
        && let Some(PeerAddr(peer)) = parts.extensions.get::<PeerAddr>()
    {
        append_forwarded_for(&mut parts.headers, peer.ip());
    }
    // A fresh request: the layer's extensions (the session handle) stay on this side.
    let mut upstream_req = Request::new(Full::new(bytes.clone()));
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = target.uri(parts.uri.query());
    *upstream_req.headers_mut() = parts.headers;
    match tokio::time::timeout(settings.response_timeout, client.request(upstream_req)).await {
        Ok(Ok(response)) => {
            let (mut head, body) = response.into_parts();
            strip_hop_by_hop(&mut head.headers);
            Response::from_parts(head, UpstreamBody::upstream(body))
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, upstream = %target.authority, "upstream request failed");
            gateway_answer(GatewayFailure::Unreachable, &bytes)
        }
        Err(_) => {
            tracing::warn!(upstream = %target.authority, "upstream answer head timed out");
            gateway_answer(GatewayFailure::Timeout, &bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_keeps_its_path_and_takes_the_query() {
        let t = Target::parse("http://127.0.0.1:3000/mcp").unwrap();
        assert_eq!(t.uri(None).to_string(), "http://127.0.0.1:3000/mcp");
        assert_eq!(t.uri(Some("a=1")).to_string(), "http://127.0.0.1:3000/mcp?a=1");
        let t = Target::parse("http://h/mcp?key=k").unwrap();
        assert_eq!(t.uri(Some("a=1")).to_string(), "http://h/mcp?key=k");
        let t = Target::parse("http://h").unwrap();
        assert_eq!(t.uri(None).to_string(), "http://h/");
        assert_eq!(Target::parse("/mcp").unwrap_err(), InvalidUpstream::Url);
        assert_eq!(Target::parse("not a url").unwrap_err(), InvalidUpstream::Url);
    }
}
