//! The work of one call: session headers, the 404 check, re-initialization and the
//! retry, capturing the session from `initialize`, and wrapping SSE answers in bodies
//! that resume.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};
use tower_service::Service;

use super::body::{Connector, McpClientBody, Resume, SseStream, is_event_stream, is_json, response_in};
use super::error::{BoxError, Error};
use super::session::{Expired, ReinitDecision, Reinitialize, SessionEvent, SessionSnapshot, Shared, StreamGuard};
use tower_mcp_session::headers::{LAST_EVENT_ID, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};

use crate::session::session_id_of;
use crate::session::snapshot_id;
use tower_mcp_session::SessionId;

pub(crate) const ACCEPT_BOTH: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");
pub(crate) const ACCEPT_SSE: HeaderValue = HeaderValue::from_static("text/event-stream");
pub(crate) const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// What the client keeps of a request to send it again or resume its stream.
#[derive(Clone)]
struct Template {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Template {
    fn of(parts: &Parts) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        }
    }

    fn request(&self, method: Method, body: Bytes, session: &SessionSnapshot) -> Request<Bytes> {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = self.uri.clone();
        let mut headers = self.headers.clone();
        headers.remove(CONTENT_LENGTH);
        apply_session(&mut headers, session);
        *req.headers_mut() = headers;
        req
    }

    /// Headers for the `GET` that resumes a stream of this request.
    fn resume_headers(&self, session: &SessionSnapshot) -> HeaderMap {
        let mut headers = self.headers.clone();
        for name in [CONTENT_TYPE, CONTENT_LENGTH, LAST_EVENT_ID] {
            headers.remove(name);
        }
        headers.insert(ACCEPT, ACCEPT_SSE);
        apply_session(&mut headers, session);
        headers
    }
}

/// Put the session's headers on a request. Without a session the caller's own headers
/// stay, so an application managing ids itself is not overruled.
pub(crate) fn apply_session(headers: &mut HeaderMap, session: &SessionSnapshot) {
    // A session id is visible ASCII, so it is always a valid header value.
    if let Some(id) = &session.id
        && let Ok(value) = HeaderValue::from_str(id.as_str())
    {
        headers.insert(MCP_SESSION_ID, value);
    }
    if let Some(version) = session.version.as_deref()
        // The header exists since 2025-06-18.
        && version != "2025-03-26"
        && let Ok(value) = HeaderValue::from_str(version)
    {
        headers.insert(MCP_PROTOCOL_VERSION, value);
    }
}

fn ensure_post_headers(headers: &mut HeaderMap) {
    headers.entry(ACCEPT).or_insert(ACCEPT_BOTH);
    headers.entry(CONTENT_TYPE).or_insert(JSON);
}

enum Checked<RB> {
    /// Not a lost session: hand the response on.
    Pass(Response<RB>),
    /// A 404 that is not about the session (its body was read).
    Read(Response<Bytes>),
    /// The server no longer knows the session (its body was read).
    Expired(Response<Bytes>),
}

/// The work of one call. Holds nothing of the inner service but the type-erased
/// connector, so the call's future is `Send` without the service being `Sync`.
pub(crate) struct Handler<RB> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) connector: Connector<RB>,
}

impl<RB> Handler<RB>
where
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    pub(crate) async fn serve<S, B>(self, ready: S, req: Request<B>) -> Result<Response<McpClientBody<RB>>, Error>
    where
        S: Service<Request<B>, Response = Response<RB>>,
        S::Error: Into<BoxError>,
        B: Body + From<Bytes>,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = req.into_parts();
        let bytes = body.collect().await.map_err(Error::transport)?.to_bytes();
        match parts.method {
            Method::POST => {
                ensure_post_headers(&mut parts.headers);
                let message: Option<Value> = serde_json::from_slice(&bytes).ok();
                let method = message
                    .as_ref()
                    .and_then(|m| m.get("method"))
                    .and_then(Value::as_str)
                    .map(ToOwned::to_owned);
                let id = message
                    .as_ref()
                    .filter(|_| method.is_some())
                    .and_then(|m| m.get("id"))
                    .cloned();
                if method.as_deref() == Some("initialize")
                    && let (Some(message), Some(id)) = (message, id.clone())
                {
                    return self.initialize(ready, parts, bytes, message, id).await;
                }
                self.in_session(ready, parts, bytes, id, true).await
            }
            Method::GET => {
                parts.headers.entry(ACCEPT).or_insert(ACCEPT_SSE);
                self.in_session(ready, parts, bytes, None, true).await
            }
            // DELETE and anything else: session headers, no recovery (a 404 to a DELETE
            // means the session is gone already).
            _ => self.in_session(ready, parts, bytes, None, false).await,
        }
    }

    async fn first_call<S, B>(mut ready: S, parts: Parts, bytes: Bytes) -> Result<Response<RB>, Error>
    where
        S: Service<Request<B>, Response = Response<RB>>,
        S::Error: Into<BoxError>,
        B: From<Bytes>,
    {
        ready
            .call(Request::from_parts(parts, B::from(bytes)))
            .await
            .map_err(Error::transport)
    }

    async fn in_session<S, B>(
        self,
        ready: S,
        mut parts: Parts,
        bytes: Bytes,
        request_id: Option<Value>,
        recover: bool,
    ) -> Result<Response<McpClientBody<RB>>, Error>
    where
        S: Service<Request<B>, Response = Response<RB>>,
        S::Error: Into<BoxError>,
        B: From<Bytes>,
    {
        let template = Template::of(&parts);
        let snapshot = self.shared.snapshot();
        apply_session(&mut parts.headers, &snapshot);
        let response = Self::first_call(ready, parts, bytes.clone()).await?;
        let checked = if recover {
            self.check(response, &snapshot).await?
        } else {
            Checked::Pass(response)
        };
        match checked {
            Checked::Pass(response) => Ok(self.wrap(response, &template, &snapshot, request_id)),
            Checked::Read(response) => Ok(response.map(McpClientBody::full)),
            Checked::Expired(response) => match self.recover(&template, &snapshot).await {
                Ok(true) => {
                    self.shared.counters.retried_requests.fetch_add(1, Ordering::Relaxed);
                    let snapshot = self.shared.snapshot();
                    let req = template.request(template.method.clone(), bytes, &snapshot);
                    let response = (self.connector)(req).await?;
                    Ok(self.wrap(response, &template, &snapshot, request_id))
                }
                Ok(false) => Ok(response.map(McpClientBody::full)),
                Err(e) => Err(Error::Reinitialize(Box::new(e))),
            },
        }
    }

    /// Is this response the server saying it no longer knows the session?
    async fn check(&self, response: Response<RB>, sent: &SessionSnapshot) -> Result<Checked<RB>, Error> {
        if response.status() != StatusCode::NOT_FOUND || sent.id.is_none() {
            return Ok(Checked::Pass(response));
        }
        let (head, body) = response.into_parts();
        let bytes = Limited::new(body, 64 << 10)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        // 404 + "method not found" is a 2026-07-28 answer about the method, not the session.
        let method_not_found = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.pointer("/error/code").and_then(Value::as_i64))
            == Some(-32601);
        let response = Response::from_parts(head, bytes);
        Ok(if method_not_found {
            Checked::Read(response)
        } else {
            Checked::Expired(response)
        })
    }

    fn wrap(
        &self,
        response: Response<RB>,
        template: &Template,
        session: &SessionSnapshot,
        request_id: Option<Value>,
    ) -> Response<McpClientBody<RB>> {
        if response.status().is_success() && is_event_stream(response.headers()) {
            let resume = Resume {
                connector: self.connector.clone(),
                uri: template.uri.clone(),
                headers: template.resume_headers(session),
            };
            let guard = StreamGuard::register(&self.shared, request_id.is_some());
            response.map(|body| McpClientBody::sse(SseStream::new(body, request_id, Some(resume), guard)))
        } else {
            let limit = self.shared.config.max_json_bytes;
            response.map(|body| McpClientBody::inner(body, limit))
        }
    }

    /// The caller's own `initialize`: remember it for replay, capture the session.
    async fn initialize<S, B>(
        self,
        ready: S,
        mut parts: Parts,
        bytes: Bytes,
        message: Value,
        id: Value,
    ) -> Result<Response<McpClientBody<RB>>, Error>
    where
        S: Service<Request<B>, Response = Response<RB>>,
        S::Error: Into<BoxError>,
        B: From<Bytes>,
    {
        self.shared.set_init_message(message);
        self.shared.set_init_template(parts.uri.clone(), parts.headers.clone());
        parts.headers.remove(MCP_SESSION_ID);
        let template = Template::of(&parts);
        let response = Self::first_call(ready, parts, bytes).await?;
        let (response, result) = self.capture(response, &template, &id).await?;
        if let Some(result) = result {
            self.established(response.headers(), &result);
        }
        Ok(response)
    }

    /// Read an `initialize` answer up to its response; give back the response with a body
    /// that still yields everything, and the InitializeResult when it succeeded.
    async fn capture(
        &self,
        response: Response<RB>,
        template: &Template,
        id: &Value,
    ) -> Result<(Response<McpClientBody<RB>>, Option<Value>), Error> {
        if !response.status().is_success() {
            let limit = self.shared.config.max_json_bytes;
            return Ok((response.map(|b| McpClientBody::inner(b, limit)), None));
        }
        let session = SessionSnapshot {
            id: response.headers().get(MCP_SESSION_ID).and_then(session_id_of),
            version: None,
            generation: 0,
        };
        if is_event_stream(response.headers()) {
            let resume = Resume {
                connector: self.connector.clone(),
                uri: template.uri.clone(),
                headers: template.resume_headers(&session),
            };
            let guard = StreamGuard::register(&self.shared, true);
            let (head, body) = response.into_parts();
            let mut stream = SseStream::new(body, Some(id.clone()), Some(resume), guard);
            let mut seen = Vec::new();
            let mut result = None;
            while let Some(event) = std::future::poll_fn(|cx| stream.poll_event(cx)).await {
                let event = event?;
                let answer = event.json().ok().and_then(|m| response_in(&m, id).cloned());
                seen.push(event);
                if let Some(answer) = answer {
                    result = answer.get("result").cloned();
                    break;
                }
            }
            let mut body = McpClientBody::sse(stream);
            body.stash(seen);
            return Ok((Response::from_parts(head, body), result));
        }
        let (head, body) = response.into_parts();
        let bytes = Limited::new(body, self.shared.config.max_json_bytes)
            .collect()
            .await
            .map_err(Error::transport)?
            .to_bytes();
        let result = if is_json(&head.headers) || !bytes.is_empty() {
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|m| response_in(&m, id).and_then(|a| a.get("result")).cloned())
        } else {
            None
        };
        Ok((Response::from_parts(head, McpClientBody::full(bytes)), result))
    }

    fn established(&self, headers: &HeaderMap, result: &Value) -> Option<SessionId> {
        let id = headers.get(MCP_SESSION_ID).and_then(session_id_of);
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .map(ToOwned::to_owned);
        self.shared.establish(id.clone(), version.clone());
        self.shared.counters.initializations.fetch_add(1, Ordering::Relaxed);
        self.shared.emit(SessionEvent::Initialized {
            session_id: id.clone(),
            protocol_version: version.as_deref().and_then(|v| v.parse().ok()),
        });
        id
    }

    /// The session expired: re-initialize once (unless the policy says no). `Ok(true)`
    /// when a session is in force afterwards and the request may be sent again.
    async fn recover(&self, template: &Template, sent: &SessionSnapshot) -> Result<bool, Error> {
        let shared = &self.shared;
        let _one_at_a_time = shared.reinit_lock.lock().await;
        let current = shared.snapshot();
        if current.generation != sent.generation {
            // Another request re-initialized (or the session was closed) meanwhile.
            return Ok(current.id.is_some());
        }
        // `check` only reports an expiry for a request that carried a session id.
        let Some(old) = snapshot_id(sent) else {
            return Ok(false);
        };
        shared.counters.expirations.fetch_add(1, Ordering::Relaxed);
        shared.emit(SessionEvent::Expired {
            session_id: old.clone(),
        });
        let init = shared.init_message();
        let decision = match &shared.config.reinitialize {
            Reinitialize::Transparent => ReinitDecision::Replay,
            Reinitialize::Never => ReinitDecision::GiveUp,
            Reinitialize::Ask(decide) => decide(&Expired {
                session_id: old.clone(),
                initialize_params: init.as_ref().and_then(|m| m.get("params").cloned()),
            }),
        };
        let (Some(mut message), params) = (init, decision) else {
            shared.forget(Some(sent.generation));
            return Ok(false);
        };
        match params {
            ReinitDecision::Replay => {}
            ReinitDecision::ReplayWith(p) => message["params"] = p,
            ReinitDecision::GiveUp => {
                shared.forget(Some(sent.generation));
                return Ok(false);
            }
        }
        let id = json!(format!("tower-mcp-session-reinit-{}", shared.next_request_id()));
        message["id"] = id.clone();
        match self.handshake(template, &message, &id).await {
            Ok(new) => {
                shared.counters.reinitializations.fetch_add(1, Ordering::Relaxed);
                shared.emit(SessionEvent::Reinitialized { old, new });
                Ok(true)
            }
            Err(e) => {
                shared.forget(Some(sent.generation));
                shared.emit(SessionEvent::ReinitializeFailed {
                    old,
                    reason: e.to_string(),
                });
                Err(e)
            }
        }
    }

    /// `initialize` + `notifications/initialized` on a fresh session.
    async fn handshake(&self, template: &Template, message: &Value, id: &Value) -> Result<Option<SessionId>, Error> {
        let mut headers = self
            .shared
            .init_template()
            .map(|(_, h)| h)
            .unwrap_or_else(|| template.headers.clone());
        for name in [MCP_SESSION_ID, MCP_PROTOCOL_VERSION, LAST_EVENT_ID, CONTENT_LENGTH] {
            headers.remove(name);
        }
        headers.insert(CONTENT_TYPE, JSON);
        headers.insert(ACCEPT, ACCEPT_BOTH);
        let post = Template {
            method: Method::POST,
            uri: template.uri.clone(),
            headers,
        };
        let none = SessionSnapshot::default();
        let body = Bytes::from(serde_json::to_vec(message).map_err(|e| Error::Protocol(e.to_string()))?);
        let response = (self.connector)(post.request(Method::POST, body, &none)).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Status(status));
        }
        let (response, result) = self.capture(response, &post, id).await?;
        let Some(result) = result else {
            return Err(Error::Protocol("initialize was not answered with a result".into()));
        };
        let new = self.established(response.headers(), &result);
        drop(response);
        let note = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let session = self.shared.snapshot();
        let answer = (self.connector)(post.request(Method::POST, note, &session)).await?;
        if !answer.status().is_success() {
            return Err(Error::Status(answer.status()));
        }
        Ok(new)
    }
}
