//! The convenience calls of [`McpClient`]: JSON-RPC over the configured endpoint,
//! and closing the session.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::Full;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_service::Service;

use super::body::McpClientBody;
use super::error::{BoxError, Error};
use super::session::{SessionEvent, SessionSnapshot};
use tower_mcp_session::headers::LAST_EVENT_ID;

use crate::handler::{ACCEPT_BOTH, ACCEPT_SSE, JSON, apply_session};
use crate::service::McpClient;

/// The convenience calls: JSON-RPC over the endpoint set with
/// [`McpClientLayerBuilder::endpoint`](crate::McpClientLayerBuilder::endpoint), through this same service (so they get every
/// behaviour of the layer).
impl<S, RB> McpClient<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    fn endpoint(&self) -> Result<Uri, Error> {
        self.shared.config.endpoint.clone().ok_or(Error::NoEndpoint)
    }

    fn post_request(&self, body: &Value) -> Result<Request<Full<Bytes>>, Error> {
        let mut req = Request::new(Full::new(Bytes::from(
            serde_json::to_vec(body).map_err(|e| Error::Protocol(e.to_string()))?,
        )));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.endpoint()?;
        let headers = req.headers_mut();
        headers.extend(self.shared.config.default_headers.clone());
        headers.insert(CONTENT_TYPE, JSON);
        headers.insert(ACCEPT, ACCEPT_BOTH);
        Ok(req)
    }

    async fn timed<T>(&self, work: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        match self.shared.config.request_timeout {
            Some(limit) => tokio::time::timeout(limit, work).await.map_err(|_| Error::Timeout)?,
            None => work.await,
        }
    }

    /// Send `initialize` with the configured parameters, then
    /// `notifications/initialized`; returns the `InitializeResult`.
    ///
    /// ```no_run
    /// # use tower_mcp_session_client::McpClientLayer;
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// let result = client.initialize().await?;
    /// println!("server: {}", result["serverInfo"]["name"]);
    /// println!("session: {:?}", client.session_id());
    /// # Ok(()) }
    /// ```
    pub async fn initialize(&self) -> Result<Value, Error> {
        self.timed(self.initialize_inner()).await
    }

    async fn initialize_inner(&self) -> Result<Value, Error> {
        let params = self
            .shared
            .config
            .initialize_params
            .clone()
            .unwrap_or_else(|| json!({}));
        let id = json!(self.shared.next_request_id());
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": params});
        let response = self.clone().oneshot(self.post_request(&message)?).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Status(status));
        }
        let answer = response.into_body().into_response(&id).await?;
        let result = rpc_result(answer)?;
        self.notify_inner("notifications/initialized", None).await?;
        Ok(result)
    }

    /// Send a JSON-RPC request and wait for its result (reading an SSE answer to its
    /// end, resuming it if it breaks). Initializes first if no session is open yet.
    /// A JSON-RPC error comes back as [`Error::Rpc`].
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// let result = client
    ///     .request("tools/call", serde_json::json!({"name": "echo", "arguments": {"message": "hi"}}))
    ///     .await?;
    /// assert_eq!(result["content"][0]["text"], "hi");
    /// # Ok(()) }
    /// ```
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, Error> {
        self.timed(async {
            self.ensure_initialized().await?;
            let id = json!(self.shared.next_request_id());
            let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            let response = self.clone().oneshot(self.post_request(&message)?).await?;
            let status = response.status();
            if status == StatusCode::NOT_FOUND && self.session_id().is_none() {
                return Err(Error::SessionExpired);
            }
            if !status.is_success() {
                return Err(Error::Status(status));
            }
            rpc_result(response.into_body().into_response(&id).await?)
        })
        .await
    }

    /// Send a JSON-RPC request and return the raw response, whose body is a resuming
    /// stream when the server answers with SSE (progress notifications and all).
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// let response = client
    ///     .send("tools/call", serde_json::json!({"name": "test_tool_with_progress", "arguments": {}}))
    ///     .await?;
    /// let mut body = response.into_body();
    /// while let Some(event) = body.next_event().await {
    ///     println!("{:?}", event?.json());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, method: &str, params: Value) -> Result<Response<McpClientBody<RB>>, Error> {
        self.ensure_initialized().await?;
        let id = json!(self.shared.next_request_id());
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.clone().oneshot(self.post_request(&message)?).await
    }

    /// Send a JSON-RPC notification (`202 Accepted` expected).
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// client.notify("notifications/roots/list_changed", None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), Error> {
        self.timed(self.notify_inner(method, params)).await
    }

    async fn notify_inner(&self, method: &str, params: Option<Value>) -> Result<(), Error> {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        let response = self.clone().oneshot(self.post_request(&message)?).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Error::Status(response.status()))
        }
    }

    /// `ping`, timed: how long the round trip took.
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// let rtt = client.ping().await?;
    /// println!("{rtt:?}");
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<Duration, Error> {
        let start = tokio::time::Instant::now();
        self.request("ping", json!({})).await?;
        Ok(start.elapsed())
    }

    /// Open the session's standalone `GET` stream for server-initiated messages. It
    /// resumes by itself and ends when the session is closed.
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// let mut stream = client.listen().await?;
    /// while let Some(message) = stream.next_event().await {
    ///     println!("{:?}", message?.json());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn listen(&self) -> Result<McpClientBody<RB>, Error> {
        self.ensure_initialized().await?;
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = self.endpoint()?;
        req.headers_mut().extend(self.shared.config.default_headers.clone());
        req.headers_mut().insert(ACCEPT, ACCEPT_SSE);
        let response = self.clone().oneshot(req).await?;
        let status = response.status();
        let body = response.into_body();
        if status != StatusCode::OK {
            return Err(Error::Status(status));
        }
        if !body.is_sse() {
            return Err(Error::Protocol("the GET stream is not text/event-stream".into()));
        }
        Ok(body)
    }

    async fn ensure_initialized(&self) -> Result<(), Error> {
        if self.shared.is_initialized() || self.shared.config.initialize_params.is_none() {
            return Ok(());
        }
        let _one_at_a_time = self.shared.init_lock.lock().await;
        if self.shared.is_initialized() {
            return Ok(());
        }
        self.initialize_inner().await.map(|_| ())
    }

    /// End the session: `DELETE` it (405, "the server does not let clients end
    /// sessions", and 404, "already gone", count as success), then end every SSE stream
    /// of the session still open and forget the session.
    ///
    /// Streams still waiting for a response end with [`Error::SessionClosed`]; use
    /// [`close_gracefully`](Self::close_gracefully) to let them finish first.
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// client.close().await?;
    /// assert_eq!(client.open_streams(), 0);
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<(), Error> {
        let snapshot = self.shared.snapshot();
        let deleted = match snapshot.id.clone() {
            Some(_) => self.timed(self.delete(&snapshot)).await,
            None => Ok(()),
        };
        self.shared.streams.close_all();
        let old = self.shared.forget(None);
        self.shared.emit(SessionEvent::Closed { session_id: old });
        deleted
    }

    /// Like [`close`](Self::close), but first waits (at most `grace`) for the streams
    /// still waiting for their responses to get them.
    ///
    /// ```no_run
    /// # async fn demo(client: tower_mcp_session_client::McpClient<hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<bytes::Bytes>>>) -> Result<(), tower_mcp_session_client::Error> {
    /// client.close_gracefully(std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn close_gracefully(&self, grace: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let changed = self.shared.streams.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.shared.streams.awaiting() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break;
            }
        }
        self.close().await
    }

    async fn delete(&self, session: &SessionSnapshot) -> Result<(), Error> {
        let (uri, mut headers) = match self.shared.init_template() {
            Some((uri, headers)) => (self.shared.config.endpoint.clone().unwrap_or(uri), headers),
            None => (self.endpoint()?, self.shared.config.default_headers.clone()),
        };
        for name in [CONTENT_TYPE, CONTENT_LENGTH, LAST_EVENT_ID] {
            headers.remove(name);
        }
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.method_mut() = Method::DELETE;
        *req.uri_mut() = uri;
        apply_session(&mut headers, session);
        *req.headers_mut() = headers;
        let response = self.inner.clone().oneshot(req).await.map_err(Error::transport)?;
        match response.status() {
            s if s.is_success() || s == StatusCode::METHOD_NOT_ALLOWED || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(Error::Status(s)),
        }
    }
}

/// The `result` of a JSON-RPC response, or its error.
fn rpc_result(answer: Value) -> Result<Value, Error> {
    if let Some(error) = answer.get("error") {
        return Err(Error::Rpc {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            data: error.get("data").cloned(),
        });
    }
    answer
        .get("result")
        .cloned()
        .ok_or_else(|| Error::Protocol("response without result or error".into()))
}
