//! What the pool holds: [`McpConnection`], one session with one server, and
//! [`ServerFactory`], which makes a new one to reconnect.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use serde_json::Value;
use tower_service::Service;

use crate::BoxFuture;
use crate::error::{BoxError, Error};
use crate::service::McpClient;
use tower_mcp_session::{ProtocolVersion, SessionId};

/// One MCP session with one server, as a [`ServerPool`](crate::ServerPool) uses it. Implemented by
/// [`McpClient`]; implement it yourself to pool something else.
///
/// ```no_run
/// use std::sync::Arc;
/// use tower_mcp_session_client::McpConnection;
///
/// # async fn demo(conn: Arc<dyn McpConnection>) -> Result<(), tower_mcp_session_client::Error> {
/// conn.initialize().await?;
/// let tools = conn.request("tools/list", serde_json::json!({})).await?;
/// println!("{tools} from session {:?}", conn.session_id());
/// # Ok(()) }
/// ```
pub trait McpConnection: Send + Sync + 'static {
    /// Send a JSON-RPC request; the `result`, or [`Error::Rpc`] for a JSON-RPC error.
    fn request(&self, method: &str, params: Value) -> BoxFuture<'static, Result<Value, Error>>;
    /// Run the `initialize` handshake.
    fn initialize(&self) -> BoxFuture<'static, Result<Value, Error>>;
    /// End the session.
    fn close(&self) -> BoxFuture<'static, Result<(), Error>>;
    /// Whether a session is open.
    fn is_initialized(&self) -> bool;
    /// The server-assigned session id.
    fn session_id(&self) -> Option<SessionId>;
    /// The negotiated protocol version.
    fn protocol_version(&self) -> Option<ProtocolVersion>;
}

impl<S, RB> McpConnection for McpClient<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    fn request(&self, method: &str, params: Value) -> BoxFuture<'static, Result<Value, Error>> {
        let this = self.clone();
        let method = method.to_owned();
        Box::pin(async move { McpClient::request(&this, &method, params).await })
    }

    fn initialize(&self) -> BoxFuture<'static, Result<Value, Error>> {
        let this = self.clone();
        Box::pin(async move { McpClient::initialize(&this).await })
    }

    fn close(&self) -> BoxFuture<'static, Result<(), Error>> {
        let this = self.clone();
        Box::pin(async move { McpClient::close(&this).await })
    }

    fn is_initialized(&self) -> bool {
        McpClient::is_initialized(self)
    }

    fn session_id(&self) -> Option<SessionId> {
        McpClient::session_id(self)
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        McpClient::protocol_version(self)
    }
}

/// Makes a fresh connection to a server, for reconnecting. Implemented for closures
/// `Fn() -> impl Future<Output = Result<C, Error>>` where `C: McpConnection`.
///
/// ```no_run
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower::Layer;
/// use tower_mcp_session_client::{McpClientLayer, ServerPool};
///
/// # async fn demo(pool: ServerPool) -> Result<(), tower_mcp_session_client::PoolError> {
/// pool.add_server_with_reconnect("search", || async {
///     let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
///     let layer = McpClientLayer::builder().endpoint("http://127.0.0.1:8080/mcp".parse().unwrap()).build();
///     Ok(layer.layer(http))
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub trait ServerFactory: Send + Sync + 'static {
    /// Connect anew (the pool initializes the connection if it is not yet).
    fn connect(&self) -> BoxFuture<'static, Result<Arc<dyn McpConnection>, Error>>;
}

impl<F, Fut, C> ServerFactory for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<C, Error>> + Send + 'static,
    C: McpConnection,
{
    fn connect(&self) -> BoxFuture<'static, Result<Arc<dyn McpConnection>, Error>> {
        let fut = self();
        Box::pin(async move { fut.await.map(|c| Arc::new(c) as Arc<dyn McpConnection>) })
    }
}

/// Stands in for a server whose factory has not produced a connection yet.
pub(super) struct Unconnected;

impl McpConnection for Unconnected {
    fn request(&self, _: &str, _: Value) -> BoxFuture<'static, Result<Value, Error>> {
        Box::pin(async { Err(Error::NotInitialized) })
    }
    fn initialize(&self) -> BoxFuture<'static, Result<Value, Error>> {
        Box::pin(async { Err(Error::NotInitialized) })
    }
    fn close(&self) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }
    fn is_initialized(&self) -> bool {
        false
    }
    fn session_id(&self) -> Option<SessionId> {
        None
    }
    fn protocol_version(&self) -> Option<ProtocolVersion> {
        None
    }
}
