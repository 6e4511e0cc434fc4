//! [`McpClientLayer`] and the [`McpClient`] service it builds.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Uri};
use serde_json::{Value, json};
use tower_layer::Layer;

use super::backoff::Backoff;
use super::session::{ClientStats, Config, Reinitialize, ResumeConfig, SessionEvent, Shared};

use crate::service::McpClient;
use crate::session::snapshot_id;
use tower_mcp_session::{ProtocolVersion, SessionId};

/// The revision [`McpClient::initialize`] asks for unless told otherwise.
const DEFAULT_VERSION: ProtocolVersion = ProtocolVersion::V2025_11_25;

/// A tower [`Layer`] that turns an HTTP client service into an MCP Streamable HTTP
/// client session (2025-03-26 … 2025-11-25 revisions).
///
/// The [`McpClient`] it builds:
/// - captures `Mcp-Session-Id` and the negotiated protocol version from the response to
///   `initialize` (JSON or SSE) and puts `Mcp-Session-Id` and `MCP-Protocol-Version` on
///   every later request;
/// - when the server answers 404 for the session, re-initializes once with the original
///   `initialize` parameters (transparently, or as a [`Reinitialize::Ask`] callback
///   decides), sends `notifications/initialized`, reports a
///   [`SessionEvent::Reinitialized`] and sends the failed request again, once;
/// - answers SSE responses with a [`McpClientBody`](crate::McpClientBody) that resumes by itself
///   (`GET` + `Last-Event-ID`, the server's `retry`, jittered backoff, each event once);
/// - ends the session with [`McpClient::close`]: `DELETE`, then every open stream.
///
/// One layer is one session: every service built from it (and every clone) shares it.
/// Build one layer per server.
///
/// ```no_run
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower::ServiceBuilder;
/// use tower_mcp_session_client::McpClientLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_mcp_session_client::Error> {
/// let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let client = ServiceBuilder::new()
///     .layer(McpClientLayer::builder().endpoint("http://127.0.0.1:8080/mcp".parse().unwrap()).build())
///     .service(http);
/// client.initialize().await?;
/// let tools = client.request("tools/list", serde_json::json!({})).await?;
/// println!("{tools}");
/// client.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct McpClientLayer {
    shared: Arc<Shared>,
}

impl McpClientLayer {
    /// A layer with every default: transparent re-initialization, 5 resume attempts.
    ///
    /// ```
    /// let layer = tower_mcp_session_client::McpClientLayer::new();
    /// assert_eq!(layer.stats().initializations, 0);
    /// ```
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Start configuring a layer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mcp_session_client::{McpClientLayer, Reinitialize};
    ///
    /// let layer = McpClientLayer::builder()
    ///     .reinitialize(Reinitialize::Never)
    ///     .max_resume_attempts(3)
    ///     .request_timeout(Some(Duration::from_secs(10)))
    ///     .build();
    /// # let _ = layer;
    /// ```
    pub fn builder() -> McpClientLayerBuilder {
        McpClientLayerBuilder::default()
    }

    /// The session's counters.
    pub fn stats(&self) -> ClientStats {
        self.shared.stats()
    }

    /// The session id in force, if any.
    ///
    /// ```
    /// assert_eq!(tower_mcp_session_client::McpClientLayer::new().session_id(), None);
    /// ```
    pub fn session_id(&self) -> Option<SessionId> {
        snapshot_id(&self.shared.snapshot())
    }
}

impl Default for McpClientLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for McpClientLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpClientLayer")
            .field("session_id", &self.session_id())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for McpClientLayer {
    type Service = McpClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        McpClient {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Configures a [`McpClientLayer`].
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_session_client::{Backoff, McpClientLayer, Reinitialize, ReinitDecision};
///
/// let layer = McpClientLayer::builder()
///     .endpoint("http://127.0.0.1:8080/mcp".parse().unwrap())
///     .client_info("my-agent", "1.2.0")
///     .resume_backoff(Backoff::new(Duration::from_millis(50), Duration::from_secs(2)))
///     .reinitialize(Reinitialize::ask(|_expired| ReinitDecision::Replay))
///     .on_event(|event| println!("{event:?}"))
///     .build();
/// # let _ = layer;
/// ```
pub struct McpClientLayerBuilder {
    config: Config,
    client_name: String,
    client_version: String,
    capabilities: Value,
    protocol_version: ProtocolVersion,
    explicit_params: bool,
}

impl Default for McpClientLayerBuilder {
    fn default() -> Self {
        Self {
            config: Config {
                endpoint: None,
                initialize_params: None,
                reinitialize: Reinitialize::Transparent,
                resume: ResumeConfig {
                    max_attempts: 5,
                    backoff: Backoff::default(),
                    max_event_bytes: 4 << 20,
                    dedupe_window: 4096,
                    resume_standalone: true,
                },
                on_event: None,
                max_json_bytes: 4 << 20,
                request_timeout: Some(Duration::from_secs(60)),
                default_headers: HeaderMap::new(),
            },
            client_name: "tower-mcp-session".into(),
            client_version: env!("CARGO_PKG_VERSION").into(),
            capabilities: json!({}),
            protocol_version: DEFAULT_VERSION,
            explicit_params: false,
        }
    }
}

impl McpClientLayerBuilder {
    /// The MCP endpoint, used by the convenience calls ([`McpClient::initialize`],
    /// [`McpClient::request`], …). Requests sent through the service keep their own URI.
    pub fn endpoint(mut self, uri: Uri) -> Self {
        self.config.endpoint = Some(uri);
        self
    }

    /// `clientInfo` of [`McpClient::initialize`].
    pub fn client_info(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.client_name = name.into();
        self.client_version = version.into();
        self
    }

    /// `capabilities` of [`McpClient::initialize`] (default `{}`).
    pub fn capabilities(mut self, capabilities: Value) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// The revision [`McpClient::initialize`] asks for (default `2025-11-25`).
    ///
    /// ```
    /// use tower_mcp_session::ProtocolVersion;
    /// use tower_mcp_session_client::McpClientLayer;
    ///
    /// let layer = McpClientLayer::builder().protocol_version(ProtocolVersion::V2025_06_18).build();
    /// # let _ = layer;
    /// ```
    pub fn protocol_version(mut self, version: ProtocolVersion) -> Self {
        self.protocol_version = version;
        self
    }

    /// The whole `params` of [`McpClient::initialize`], replacing the three settings above.
    pub fn initialize_params(mut self, params: Value) -> Self {
        self.config.initialize_params = Some(params);
        self.explicit_params = true;
        self
    }

    /// What to do when the server answers 404 for the session (default: re-initialize
    /// transparently).
    pub fn reinitialize(mut self, policy: Reinitialize) -> Self {
        self.config.reinitialize = policy;
        self
    }

    /// Reconnection attempts in a row, without a new event in between, before a broken
    /// SSE stream fails with [`Error::ResumeExhausted`](crate::Error::ResumeExhausted) (default 5).
    pub fn max_resume_attempts(mut self, attempts: u32) -> Self {
        self.config.resume.max_attempts = attempts;
        self
    }

    /// The backoff between reconnections (default 100 ms doubling to 5 s, jittered). A
    /// longer `retry` from the server wins.
    pub fn resume_backoff(mut self, backoff: Backoff) -> Self {
        self.config.resume.backoff = backoff;
        self
    }

    /// The largest SSE event accepted (default 4 MiB).
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.config.resume.max_event_bytes = bytes;
        self
    }

    /// How many event ids a stream remembers to drop duplicates after a reconnection
    /// (default 4096).
    pub fn dedupe_window(mut self, ids: usize) -> Self {
        self.config.resume.dedupe_window = ids;
        self
    }

    /// Whether standalone `GET` streams reconnect when the server ends them (default
    /// true; they end only when the session is closed or gone).
    pub fn resume_standalone_streams(mut self, resume: bool) -> Self {
        self.config.resume.resume_standalone = resume;
        self
    }

    /// The largest JSON body the client reads itself (initialize answers, 404 bodies,
    /// convenience calls; default 4 MiB).
    pub fn max_json_bytes(mut self, bytes: usize) -> Self {
        self.config.max_json_bytes = bytes;
        self
    }

    /// Deadline of each convenience call, response included (default 60 s; `None` for
    /// none).
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// A header sent with every convenience call (e.g. `Authorization`).
    pub fn default_header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.config.default_headers.append(name, value);
        self
    }

    /// Called for every [`SessionEvent`]: initialized, expired, re-initialized, resumed,
    /// closed.
    pub fn on_event(mut self, hook: impl Fn(&SessionEvent) + Send + Sync + 'static) -> Self {
        self.config.on_event = Some(Arc::new(hook));
        self
    }

    /// Build the layer.
    pub fn build(mut self) -> McpClientLayer {
        if !self.explicit_params {
            self.config.initialize_params = Some(json!({
                "protocolVersion": self.protocol_version.to_string(),
                "capabilities": self.capabilities,
                "clientInfo": {"name": self.client_name, "version": self.client_version},
            }));
        }
        McpClientLayer {
            shared: Arc::new(Shared::new(self.config)),
        }
    }
}

impl fmt::Debug for McpClientLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpClientLayerBuilder").finish_non_exhaustive()
    }
}
