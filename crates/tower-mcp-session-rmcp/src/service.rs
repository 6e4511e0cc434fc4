//! [`service`]: rmcp's Streamable HTTP service and the session layer, set up to agree.

use std::fmt;
use std::sync::Arc;

use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tower_layer::Layer;
use tower_mcp_session::{McpSession, McpSessionLayer, McpSessionLayerBuilder, SessionManager};

/// rmcp's service as it sits behind the layer: sessions off, every request served on
/// its own.
pub type RmcpService<S> = StreamableHttpService<S, NeverSessionManager>;

/// The loopback names both the layer and rmcp serve by default.
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Start building rmcp's Streamable HTTP service behind [`McpSessionLayer`], with
/// `factory` making the server handler (rmcp calls it once per request: with its
/// sessions off, every request is served on its own).
///
/// What the pair must agree on is set once, here, for both:
///
/// - rmcp's own sessions are **off** (`legacy_session_mode = false`): the layer keeps
///   them. With rmcp's sessions on, rmcp would mint an id of its own; the layer refuses
///   such an `initialize` (502 `upstream_session_id`) rather than fail every later call.
/// - the **`Host` allow-list**: [`allow_host`](Builder::allow_host) adds a name to the
///   layer's list and to rmcp's, so a name the layer lets through is never refused by
///   rmcp with a plain-text 403;
/// - the **body bound**: [`max_body_bytes`](Builder::max_body_bytes) sets both.
///
/// The layer guards `Origin` (rmcp's own check stays off, its default, so there is one
/// list to keep); everything else of the layer is set with [`layer`](Builder::layer).
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use rmcp::{tool, tool_router};
///
/// #[derive(Clone)]
/// struct Hello;
///
/// #[tool_router(server_handler)]
/// impl Hello {
///     #[tool(description = "Say hello.")]
///     fn hello(&self) -> String {
///         "hello".to_owned()
///     }
/// }
///
/// # #[tokio::main] async fn main() {
/// let (manager, mcp) = tower_mcp_session_rmcp::service(|| Ok(Hello))
///     .allow_host("mcp.example.com")
///     .layer(|layer| layer.max_sessions(Some(1_000)))
///     .build();
/// let app: Router = Router::new()
///     .route_service("/mcp", mcp)
///     .route("/health", get(|| async { "ok" }));
/// # let _ = (manager, app);
/// # }
/// ```
pub fn service<S, F>(factory: F) -> Builder<F>
where
    S: ServerHandler + Send + 'static,
    F: Fn() -> Result<S, std::io::Error> + Send + Sync + 'static,
{
    Builder {
        factory,
        layer: McpSessionLayer::builder(),
        hosts: Some(LOOPBACK.iter().map(|h| (*h).to_owned()).collect()),
        max_body_bytes: None,
        json_response: false,
        rmcp: None,
    }
}

/// Settings of rmcp's service and the layer in front of it; made by [`service`].
pub struct Builder<F> {
    factory: F,
    layer: McpSessionLayerBuilder,
    /// `None`: any host.
    hosts: Option<Vec<String>>,
    max_body_bytes: Option<usize>,
    json_response: bool,
    rmcp: Option<ConfigureRmcp>,
}

type ConfigureRmcp = Box<dyn FnOnce(StreamableHttpServerConfig) -> StreamableHttpServerConfig>;

impl<F> Builder<F> {
    /// Serve requests whose `Host` is `host` (any port) or `host:port` (that port), in
    /// the layer and in rmcp. Loopback names are always served.
    ///
    /// ```
    /// # #[derive(Clone)] struct Hello;
    /// # impl rmcp::ServerHandler for Hello {}
    /// let builder = tower_mcp_session_rmcp::service(|| Ok(Hello)).allow_host("mcp.example.com:443");
    /// # let _ = builder;
    /// ```
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        let host = host.into();
        if let Some(hosts) = &mut self.hosts {
            hosts.push(host.clone());
        }
        self.layer = self.layer.allow_host(host);
        self
    }

    /// Serve any `Host`, in the layer and in rmcp (behind a proxy that checks it).
    pub fn allow_any_host(mut self) -> Self {
        self.hosts = None;
        self.layer = self.layer.allow_any_host();
        self
    }

    /// Refuse POST bodies over `bytes` (default: the layer's 4 MiB), in both: the layer
    /// answers first, so rmcp's plain-text 413 is never seen.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = Some(bytes);
        self.layer = self.layer.max_body_bytes(bytes);
        self
    }

    /// Let rmcp answer plain request/response tools with `application/json` instead of
    /// a one-event SSE stream (default `false`). Answers that stream (progress,
    /// requests to the client) stay SSE, and the layer makes them resumable.
    pub fn json_response(mut self, json: bool) -> Self {
        self.json_response = json;
        self
    }

    /// Change any other setting of the layer.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[derive(Clone)] struct Hello;
    /// # impl rmcp::ServerHandler for Hello {}
    /// let builder = tower_mcp_session_rmcp::service(|| Ok(Hello))
    ///     .layer(|layer| layer.idle_timeout(Duration::from_secs(600)));
    /// # let _ = builder;
    /// ```
    pub fn layer(mut self, configure: impl FnOnce(McpSessionLayerBuilder) -> McpSessionLayerBuilder) -> Self {
        self.layer = configure(self.layer);
        self
    }

    /// Change any other setting of rmcp's server. The settings above are applied after
    /// it, so they hold whatever `configure` does.
    pub fn rmcp_config(
        mut self,
        configure: impl FnOnce(StreamableHttpServerConfig) -> StreamableHttpServerConfig + 'static,
    ) -> Self {
        self.rmcp = Some(Box::new(configure));
        self
    }

    /// The layer and rmcp's service, apart, for compositions of your own
    /// (`ServiceBuilder::new().layer(layer).service(rmcp)`).
    pub fn build_parts<S>(self) -> (McpSessionLayer, RmcpService<S>)
    where
        S: ServerHandler + Send + 'static,
        F: Fn() -> Result<S, std::io::Error> + Send + Sync + 'static,
    {
        let mut config = StreamableHttpServerConfig::default();
        if let Some(configure) = self.rmcp {
            config = configure(config);
        }
        config = config
            .with_legacy_session_mode(false)
            .with_json_response(self.json_response);
        config = match self.hosts {
            Some(hosts) => config.with_allowed_hosts(hosts),
            None => config.disable_allowed_hosts(),
        };
        if let Some(bytes) = self.max_body_bytes {
            config = config.with_max_request_body_bytes(bytes);
        }
        let rmcp = StreamableHttpService::new(self.factory, Arc::new(NeverSessionManager::default()), config);
        (self.layer.build(), rmcp)
    }

    /// The layer's manager (push, close, metrics) and rmcp's service wrapped in the
    /// layer, ready for `Router::route_service("/mcp", ..)`.
    pub fn build<S>(self) -> (SessionManager, McpSession<RmcpService<S>>)
    where
        S: ServerHandler + Send + 'static,
        F: Fn() -> Result<S, std::io::Error> + Send + Sync + 'static,
    {
        let (layer, rmcp) = self.build_parts();
        let manager = layer.manager();
        (manager, layer.layer(rmcp))
    }
}

impl<F> fmt::Debug for Builder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("layer", &self.layer)
            .field("hosts", &self.hosts)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("json_response", &self.json_response)
            .finish_non_exhaustive()
    }
}
