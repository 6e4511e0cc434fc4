//! [`CurrentSession`]: the session of the request an rmcp handler serves, found where
//! rmcp's HTTP server leaves it, with typed views of what the session holds.

use std::fmt;

use rmcp::handler::server::common::{AsRequestContext, FromContextPart};
use rmcp::model::{ClientCapabilities, Extensions, Implementation};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower_mcp_session::{ProtocolVersion, Session, SessionError, SessionId};

/// The session of the request an rmcp tool or prompt is serving.
///
/// `McpSessionLayer` puts a [`Session`] in the request's extensions; rmcp's Streamable
/// HTTP server puts the request's [`http::request::Parts`] in the context of each
/// handler call. `CurrentSession` looks through both, so a tool takes it as an argument
/// like any rmcp extractor. A 2026-07-28 request has no session (that revision has
/// none): take [`OptionalSession`] where both eras are served.
///
/// Client info and capabilities come back as rmcp's own types, attributes as any
/// `serde` type.
///
/// ```
/// use rmcp::handler::server::wrapper::Parameters;
/// use rmcp::{ErrorData, schemars, tool, tool_router};
/// use tower_mcp_session_rmcp::CurrentSession;
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Note {
///     text: String,
/// }
///
/// #[derive(Clone)]
/// struct Notes;
///
/// #[tool_router(server_handler)]
/// impl Notes {
///     #[tool(description = "Remember a note for the rest of the session.")]
///     async fn remember(&self, session: CurrentSession, Parameters(note): Parameters<Note>) -> Result<String, ErrorData> {
///         let mut notes: Vec<String> = session.get("notes").await?.unwrap_or_default();
///         notes.push(note.text);
///         session.set("notes", &notes).await?;
///         let client = session.client_info().map(|c| c.name).unwrap_or_default();
///         Ok(format!("{} notes from {client}", notes.len()))
///     }
/// }
/// ```
#[derive(Clone)]
pub struct CurrentSession {
    session: Session,
}

impl CurrentSession {
    /// The session in rmcp's `extensions` ([`RequestContext::extensions`]), where it
    /// lies inside the request's [`http::request::Parts`] (or directly, if something
    /// put it there).
    ///
    /// ```
    /// use tower_mcp_session_rmcp::CurrentSession;
    ///
    /// let extensions = rmcp::model::Extensions::default();
    /// assert!(CurrentSession::from_extensions(&extensions).is_none());
    /// ```
    pub fn from_extensions(extensions: &Extensions) -> Option<Self> {
        extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Session>())
            .or_else(|| extensions.get::<Session>())
            .map(|session| Self {
                session: session.clone(),
            })
    }

    /// The session of the request `context` serves, if it has one.
    ///
    /// ```no_run
    /// use rmcp::RoleServer;
    /// use rmcp::service::RequestContext;
    /// use tower_mcp_session_rmcp::CurrentSession;
    ///
    /// fn who(context: &RequestContext<RoleServer>) -> Option<String> {
    ///     CurrentSession::from_context(context).map(|s| s.id().to_string())
    /// }
    /// ```
    pub fn from_context(context: &RequestContext<RoleServer>) -> Option<Self> {
        Self::from_extensions(&context.extensions)
    }

    /// The layer's handle: attributes as JSON, requests to the client, closing.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session's id (as the client sends it in `Mcp-Session-Id`).
    pub fn id(&self) -> &SessionId {
        self.session.id()
    }

    /// The protocol revision negotiated by `initialize`.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.session.record().protocol_version()
    }

    /// The client's `clientInfo` from `initialize`, or `None` when it sent none or one
    /// that is not an `Implementation` (the layer keeps what the client sent as is).
    pub fn client_info(&self) -> Option<Implementation> {
        parse(self.session.record().client_info())
    }

    /// The client's `capabilities` from `initialize`, or `None` when it sent none or
    /// ones rmcp cannot read.
    pub fn client_capabilities(&self) -> Option<ClientCapabilities> {
        parse(self.session.record().client_capabilities())
    }

    /// The attribute `key` read as a `T`; `None` when it is not set.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, AttributeError> {
        match self.session.attribute(key).await.map_err(AttributeError::Session)? {
            None => Ok(None),
            Some(value) => serde_json::from_value(value).map(Some).map_err(AttributeError::Type),
        }
    }

    /// Store `value` as the attribute `key` (within the layer's attribute bounds).
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), AttributeError> {
        let value = serde_json::to_value(value).map_err(AttributeError::Type)?;
        self.session
            .set_attribute(key, value)
            .await
            .map_err(AttributeError::Session)
    }
}

impl fmt::Debug for CurrentSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentSession")
            .field("id", self.id())
            .finish_non_exhaustive()
    }
}

fn parse<T: DeserializeOwned>(raw: Option<&serde_json::value::RawValue>) -> Option<T> {
    serde_json::from_str(raw?.get()).ok()
}

/// As an argument of a `#[tool]` (or prompt) function: the call fails with an
/// internal error when the request has no session, that is when the layer is not in
/// front or the request is of 2026-07-28.
impl<C: AsRequestContext> FromContextPart<C> for CurrentSession {
    fn from_context_part(context: &mut C) -> Result<Self, ErrorData> {
        Self::from_context(context.as_request_context())
            .ok_or_else(|| ErrorData::internal_error("this request has no MCP session", None))
    }
}

/// The session of the request, if it has one: the extractor for handlers that serve
/// both eras (2026-07-28 requests have no session).
///
/// ```
/// use rmcp::{tool, tool_router};
/// use tower_mcp_session_rmcp::OptionalSession;
///
/// #[derive(Clone)]
/// struct Server;
///
/// #[tool_router(server_handler)]
/// impl Server {
///     #[tool(description = "Which session am I in?")]
///     fn whoami(&self, OptionalSession(session): OptionalSession) -> String {
///         session.map_or_else(|| "no session".to_owned(), |s| s.id().to_string())
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct OptionalSession(pub Option<CurrentSession>);

impl<C: AsRequestContext> FromContextPart<C> for OptionalSession {
    fn from_context_part(context: &mut C) -> Result<Self, ErrorData> {
        Ok(Self(CurrentSession::from_context(context.as_request_context())))
    }
}

/// Why a typed attribute could not be read or written.
///
/// Turns into rmcp's [`ErrorData`] (an internal error without the details) so a tool
/// can use `?`.
///
/// ```
/// use tower_mcp_session::SessionError;
/// use tower_mcp_session_rmcp::AttributeError;
///
/// let error = AttributeError::Session(SessionError::Ended);
/// assert_eq!(error.to_string(), "the session has ended");
/// let for_the_client: rmcp::ErrorData = error.into();
/// assert_eq!(for_the_client.message, "session state unavailable");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum AttributeError {
    /// The layer could not read or write the attribute (bounds, store, ended session).
    Session(SessionError),
    /// The value is not of the type asked for, or cannot be serialized.
    Type(serde_json::Error),
}

impl fmt::Display for AttributeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session(error) => error.fmt(f),
            Self::Type(error) => write!(f, "attribute of another type: {error}"),
        }
    }
}

impl std::error::Error for AttributeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Session(error) => Some(error),
            Self::Type(error) => Some(error),
        }
    }
}

impl From<AttributeError> for ErrorData {
    fn from(_: AttributeError) -> Self {
        // No internal text reaches the client; the application logs the error itself
        // if it wants it.
        ErrorData::internal_error("session state unavailable", None)
    }
}
