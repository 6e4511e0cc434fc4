//! The client's error type.

use std::fmt;

use http::StatusCode;

/// A boxed error from an inner service or body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a client call, a response body or a session operation failed.
///
/// ```
/// use tower_mcp_session_client::Error;
///
/// let e = Error::ResumeExhausted { attempts: 5 };
/// assert_eq!(e.to_string(), "SSE stream could not be resumed after 5 attempts");
/// assert!(!e.is_transport());
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The inner HTTP service or a response body failed (connection refused, reset, …).
    Transport(BoxError),
    /// The server answered with a status the operation cannot use.
    Status(StatusCode),
    /// The server no longer knows the session (404) and it was not, or could not be,
    /// re-initialized.
    SessionExpired,
    /// Re-initializing an expired session failed.
    Reinitialize(Box<Error>),
    /// The session was closed with [`McpClient::close`](super::McpClient::close) while
    /// this stream still waited for its response.
    SessionClosed,
    /// An SSE stream broke before its response and cannot be resumed: the server sent no
    /// event id, or answered the resuming `GET` with 405.
    NotResumable,
    /// An SSE stream broke and every reconnection attempt failed.
    ResumeExhausted {
        /// Attempts made in a row without receiving a new event.
        attempts: u32,
    },
    /// One SSE event was larger than the configured bound.
    EventTooLarge {
        /// The bound, in bytes.
        limit: usize,
    },
    /// The server sent something that is not a valid MCP message for this exchange.
    Protocol(String),
    /// The server answered the request with a JSON-RPC error.
    Rpc {
        /// The JSON-RPC error code.
        code: i64,
        /// The error message.
        message: String,
        /// The error's `data`, if any.
        data: Option<serde_json::Value>,
    },
    /// A convenience call needs an endpoint; set one with
    /// [`McpClientLayerBuilder::endpoint`](super::McpClientLayerBuilder::endpoint).
    NoEndpoint,
    /// A session operation needs a session, and none is open.
    NotInitialized,
    /// The operation did not finish in time.
    Timeout,
}

impl Error {
    /// Whether this is a transport failure (the server may never have seen the request).
    pub fn is_transport(&self) -> bool {
        matches!(self, Self::Transport(_))
    }

    /// Whether the failure says something about the server's health: transport errors,
    /// timeouts, 5xx statuses and broken streams. A JSON-RPC error is a healthy answer.
    pub fn is_server_failure(&self) -> bool {
        match self {
            Self::Transport(_) | Self::Timeout | Self::ResumeExhausted { .. } | Self::NotResumable => true,
            Self::Status(s) => s.is_server_error(),
            Self::Reinitialize(inner) => inner.is_server_failure(),
            _ => false,
        }
    }

    pub(crate) fn transport(e: impl Into<BoxError>) -> Self {
        Self::Transport(e.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "transport error: {e}"),
            Self::Status(s) => write!(f, "unexpected HTTP status {s}"),
            Self::SessionExpired => f.write_str("session expired (404) and was not re-initialized"),
            Self::Reinitialize(e) => write!(f, "re-initializing the session failed: {e}"),
            Self::SessionClosed => f.write_str("session closed by the client"),
            Self::NotResumable => f.write_str("SSE stream broke before its response and cannot be resumed"),
            Self::ResumeExhausted { attempts } => {
                write!(f, "SSE stream could not be resumed after {attempts} attempts")
            }
            Self::EventTooLarge { limit } => write!(f, "SSE event larger than {limit} bytes"),
            Self::Protocol(m) => write!(f, "protocol error: {m}"),
            Self::Rpc { code, message, .. } => write!(f, "JSON-RPC error {code}: {message}"),
            Self::NoEndpoint => f.write_str("no endpoint configured"),
            Self::NotInitialized => f.write_str("no session: initialize first"),
            Self::Timeout => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Transport(e) => Some(&**e),
            Self::Reinitialize(e) => Some(&**e),
            _ => None,
        }
    }
}
