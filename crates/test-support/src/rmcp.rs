//! The `echo` tool as an rmcp 3.11 server, for the comparison examples, the load
//! harness and the rmcp-behind-the-layer test.
#![allow(dead_code)]

use std::sync::Arc;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{schemars, tool, tool_router};

/// The arguments of the `echo` tool.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub message: String,
}

/// A tools-only server with one tool, `echo`.
#[derive(Debug, Clone, Default)]
pub struct RmcpEcho;

#[tool_router(server_handler)]
impl RmcpEcho {
    #[tool(name = "echo", description = "Echo the message back.")]
    fn echo(&self, Parameters(EchoArgs { message }): Parameters<EchoArgs>) -> String {
        message
    }
}

/// rmcp with its own sessions (`legacy_session_mode = true`, rmcp's default), answering
/// with SSE as rmcp does by default in that mode.
pub fn stateful() -> StreamableHttpService<RmcpEcho, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_allowed_hosts(["localhost", "127.0.0.1", "::1"]);
    StreamableHttpService::new(|| Ok(RmcpEcho), Arc::new(LocalSessionManager::default()), config)
}

/// rmcp with sessions off: every request is served on its own, `initialize` included.
/// `json_response` makes plain request/response tools answer with
/// `application/json` rather than a one-event SSE stream.
pub fn stateless(json_response: bool) -> StreamableHttpService<RmcpEcho, NeverSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(json_response)
        .with_allowed_hosts(["localhost", "127.0.0.1", "::1"]);
    StreamableHttpService::new(|| Ok(RmcpEcho), Arc::new(NeverSessionManager::default()), config)
}
