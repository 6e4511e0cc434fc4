//! The session's other direction: requests from the server to the client
//! (`sampling/createMessage`, `elicitation/create`, `roots/list`, …) and the way their
//! answers find the one future waiting for them, on whichever instance it waits.
//!
//! Everything goes through the event log, so one mechanism serves one process and many:
//! - The layer mints the request's JSON-RPC id: a prefix and 128 random bits. The id
//!   names a *reply stream* of the session (its stream id is a hash of the id), opened
//!   before the request leaves.
//! - The request is appended to the client request's SSE stream when it has one, else
//!   to the session's standalone stream: resumable like every other event there.
//! - The client's answer, POSTed to any instance in the same session, is appended to
//!   the reply stream with [`EventLog::append_last`], which also finishes it: the first
//!   answer wins, a second or a forged one finds no open reply stream and is refused.
//!   Another session's answer looks in another session's streams and finds nothing.
//! - The asker tails its reply stream with [`EventLog::wait_after`].

pub(crate) mod capability;
mod related;

pub(crate) use related::RelatedStream;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::time::{Instant, timeout, timeout_at};

use crate::drain::{Drain, Kind};
use crate::event_log::{EventLog, EventLogError, ReadOutcome, StreamId, StreamKey, derived_stream, standalone_stream};
use crate::session::{SessionId, SessionRecord, fill_random};
use crate::util::{hex_encode, run_detached};

/// What every id the layer mints starts with; ids without it belong to the inner service.
const ID_PREFIX: &str = "mcp-srv-";
/// The prefix and 32 hex digits.
const ID_LEN: usize = ID_PREFIX.len() + 32;

/// Why a request to the client did not get a result.
///
/// ```
/// use tower_mcp_session::RequestError;
///
/// let e = RequestError::NotDeclared { capability: "sampling" };
/// assert_eq!(e.to_string(), "the client did not declare the `sampling` capability");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RequestError {
    /// The client did not declare the capability this request needs (`sampling`,
    /// `sampling.tools`, `elicitation`, `elicitation.form`, `elicitation.url`, `roots`);
    /// nothing was sent.
    NotDeclared {
        /// The missing capability, as a path in the client's `capabilities`.
        capability: &'static str,
    },
    /// The client answered with a JSON-RPC error.
    Rejected {
        /// The error's code.
        code: i64,
        /// The error's message.
        message: String,
        /// The error's data, if any.
        data: Option<Value>,
    },
    /// The client cancelled the request (`notifications/cancelled`).
    Cancelled {
        /// The reason the client gave, if any.
        reason: Option<String>,
    },
    /// No answer came in time; the client was told the request is cancelled.
    Timeout,
    /// The session ended (deleted, expired, closed) before an answer came.
    SessionEnded,
    /// The request was made for a session that does not exist yet: while the inner
    /// service answers the `initialize` that creates it.
    NotEstablished,
    /// `params` is neither an object nor absent, or the method is empty.
    InvalidRequest,
    /// The session has as many open streams as the event log allows: too many requests
    /// are waiting for answers at once.
    TooManyPending,
    /// The event log failed or timed out.
    Unavailable,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotDeclared { capability } => {
                write!(f, "the client did not declare the `{capability}` capability")
            }
            Self::Rejected { code, message, .. } => write!(f, "the client answered with error {code}: {message}"),
            Self::Cancelled { reason: Some(reason) } => write!(f, "the client cancelled the request: {reason}"),
            Self::Cancelled { reason: None } => f.write_str("the client cancelled the request"),
            Self::Timeout => f.write_str("the client did not answer in time"),
            Self::SessionEnded => f.write_str("the session ended before the client answered"),
            Self::NotEstablished => f.write_str("the session is not established yet"),
            Self::InvalidRequest => f.write_str("the request's method or params are invalid"),
            Self::TooManyPending => f.write_str("too many requests to this client are pending"),
            Self::Unavailable => f.write_str("the event log is unavailable"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Whether `id` (a JSON-RPC id as raw JSON) is one the layer minted.
pub(crate) fn minted(id: &RawValue) -> Option<&str> {
    let text = id.get().strip_prefix('"')?.strip_suffix('"')?;
    let digits = text.strip_prefix(ID_PREFIX)?;
    (text.len() == ID_LEN && digits.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())).then_some(text)
}

/// The reply stream an id names. A forged id names a stream nobody opened.
fn reply_stream(id: &str) -> StreamId {
    // Tagged, so no id can name a session's standalone stream.
    derived_stream(b"reply:", id)
}

fn mint() -> String {
    let mut random = [0u8; 16];
    fill_random(&mut random);
    let mut hex = [0u8; 32];
    hex_encode(&random, &mut hex);
    let mut id = String::with_capacity(ID_LEN);
    id.push_str(ID_PREFIX);
    id.extend(hex.iter().map(|&b| char::from(b)));
    id
}

/// What became of a POSTed answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Stored for its asker.
    Delivered,
    /// Nobody waits for this id in this session (unknown, answered, timed out).
    NoWaiter,
    /// The event log failed.
    Unavailable,
}

/// Server → client requests over one event log: shared by a layer's engine and every
/// [`Session`](crate::Session) handle it makes.
pub(crate) struct Outbound {
    log: Arc<dyn EventLog>,
    /// How long one event-log call may take.
    step: Duration,
    /// How long a request waits for its answer unless told otherwise.
    pub(crate) default_wait: Duration,
    /// Where waits for an answer are counted, for a drain.
    drain: Arc<Drain>,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("default_wait", &self.default_wait)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    pub(crate) fn new(log: Arc<dyn EventLog>, step: Duration, default_wait: Duration, drain: Arc<Drain>) -> Self {
        Self {
            log,
            step,
            default_wait,
            drain,
        }
    }

    /// Queue `message` on `session`'s standalone stream.
    pub(crate) async fn push(&self, session: &SessionId, message: Bytes) -> Result<StreamKey, EventLogError> {
        push_standalone(&*self.log, self.step, session, message).await
    }

    async fn step<T>(&self, call: impl Future<Output = Result<T, EventLogError>>) -> Result<T, EventLogError> {
        bounded(self.step, call).await
    }

    /// Put a message on the related stream when there is one, else on the standalone
    /// stream; returns where it went.
    async fn place(
        &self,
        session: &SessionId,
        related: Option<&RelatedStream>,
        message: Bytes,
    ) -> Result<StreamKey, EventLogError> {
        if let Some(stream) = match related {
            Some(related) => related.stream(self.step).await,
            None => None,
        } {
            let key = StreamKey::new(session.clone(), stream);
            match self.step(self.log.append(&key, message.clone())).await {
                Ok(_) => return Ok(key),
                // The answer stream ended (or expired) meanwhile: the request is no
                // longer related to anything the client reads, so it goes standalone.
                Err(EventLogError::Finished | EventLogError::UnknownStream) => {}
                Err(e) => return Err(e),
            }
        }
        self.push(session, message).await
    }

    /// Send `method` with `params` to the client of `record`'s session and wait up to
    /// `wait` for its answer.
    pub(crate) async fn ask(
        &self,
        record: &SessionRecord,
        related: Option<&RelatedStream>,
        method: &str,
        params: Option<Value>,
        wait: Duration,
    ) -> Result<Value, RequestError> {
        if method.is_empty() || params.as_ref().is_some_and(|p| !p.is_object()) {
            return Err(RequestError::InvalidRequest);
        }
        let declared = record
            .client_capabilities()
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
        if let Some(capability) = capability::missing(method, params.as_ref(), declared.as_ref()) {
            return Err(RequestError::NotDeclared { capability });
        }
        let deadline = Instant::now() + wait;
        // Only this process can hand the answer to the asker: a drain waits for it.
        let _waiting = self.drain.track(Kind::ClientRequest);
        let id = mint();
        let session = record.id();
        let reply = StreamKey::new(session.clone(), reply_stream(&id));
        match self.step(self.log.open(&reply)).await {
            Ok(()) => {}
            Err(EventLogError::TooManyStreams { .. }) => return Err(RequestError::TooManyPending),
            Err(_) => return Err(RequestError::Unavailable),
        }
        let request = Request {
            jsonrpc: "2.0",
            id: &id,
            method,
            params: params.as_ref(),
        };
        let message = Bytes::from(serde_json::to_vec(&request).map_err(|_| RequestError::InvalidRequest)?);
        // From here on, a wait that ends without an answer tells the client.
        let mut pending = Pending {
            log: self.log.clone(),
            step: self.step,
            reply: Some(reply.clone()),
            id: id.clone(),
            sent_on: None,
        };
        match self.place(session, related, message).await {
            Ok(key) => pending.sent_on = Some(key),
            Err(_) => return Err(RequestError::Unavailable),
        }
        let answer = self.await_answer(&reply, deadline).await;
        // Answered, ended by the client, or nobody left to tell.
        if matches!(
            answer,
            Ok(_) | Err(RequestError::Rejected { .. } | RequestError::Cancelled { .. } | RequestError::SessionEnded)
        ) {
            pending.settled();
        }
        if answer == Err(RequestError::Timeout) {
            // An answer that raced the deadline still counts: close the reply stream,
            // then look once more.
            let reply = pending.reply.take();
            if let Some(reply) = reply {
                let _ = self.step(self.log.finish(&reply)).await;
                if let Ok(ReadOutcome::Events { events, .. }) = self.step(self.log.read_after(&reply, 0, 1)).await
                    && let Some(event) = events.first()
                {
                    pending.sent_on = None;
                    return parse_answer(&event.data);
                }
            }
        }
        answer
    }

    async fn await_answer(&self, reply: &StreamKey, deadline: Instant) -> Result<Value, RequestError> {
        loop {
            match self.step(self.log.read_after(reply, 0, 1)).await {
                Ok(ReadOutcome::Events { events, .. }) if !events.is_empty() => return parse_answer(&events[0].data),
                Ok(ReadOutcome::Events { finished: false, .. }) => {}
                // Finished without an answer, dropped, or retention-evicted: the only
                // things that do that to an unanswered reply stream are the session's
                // end and the log dropping the session's streams.
                Ok(_) => return Err(RequestError::SessionEnded),
                // A shared log that blinked: try again until the deadline, not in a
                // tight loop.
                Err(_) => {
                    if timeout_at(deadline, tokio::time::sleep(Duration::from_millis(50)))
                        .await
                        .is_err()
                    {
                        return Err(RequestError::Timeout);
                    }
                    continue;
                }
            }
            if timeout_at(deadline, self.log.wait_after(reply, 0)).await.is_err() {
                return Err(RequestError::Timeout);
            }
        }
    }

    /// Hand a POSTed answer (a response, an error, or `notifications/cancelled`) for the
    /// minted `id` to whoever waits for it in `session`.
    pub(crate) async fn deliver(&self, session: &SessionId, id: &str, message: Bytes) -> Delivery {
        let reply = StreamKey::new(session.clone(), reply_stream(id));
        match self.step(self.log.append_last(&reply, message)).await {
            Ok(_) => Delivery::Delivered,
            Err(EventLogError::UnknownStream | EventLogError::Finished) => Delivery::NoWaiter,
            Err(_) => Delivery::Unavailable,
        }
    }
}

/// One event-log call, at most `step` long.
async fn bounded<T>(step: Duration, call: impl Future<Output = Result<T, EventLogError>>) -> Result<T, EventLogError> {
    timeout(step, call)
        .await
        .unwrap_or_else(|_| Err(EventLogError::Unavailable("event log call timed out".into())))
}

/// Open `session`'s standalone stream if needed and append `message` to it.
async fn push_standalone(
    log: &dyn EventLog,
    step: Duration,
    session: &SessionId,
    message: Bytes,
) -> Result<StreamKey, EventLogError> {
    let key = StreamKey::new(session.clone(), standalone_stream(session));
    bounded(step, log.open(&key)).await?;
    bounded(step, log.append(&key, message)).await?;
    Ok(key)
}

#[derive(serde::Serialize)]
struct Request<'a> {
    jsonrpc: &'static str,
    id: &'a str,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a Value>,
}

/// A request whose wait has not ended with an answer: when it is dropped (timeout, the
/// handler gave up, its future was dropped), the reply stream is closed so a late answer
/// is refused, and the client is told with `notifications/cancelled` on the stream the
/// request went out on.
struct Pending {
    log: Arc<dyn EventLog>,
    step: Duration,
    reply: Option<StreamKey>,
    id: String,
    sent_on: Option<StreamKey>,
}

impl Pending {
    fn settled(&mut self) {
        self.reply = None;
        self.sent_on = None;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let (reply, sent_on) = (self.reply.take(), self.sent_on.take());
        if reply.is_none() && sent_on.is_none() {
            return;
        }
        let (log, step, id) = (self.log.clone(), self.step, std::mem::take(&mut self.id));
        run_detached(async move {
            if let Some(reply) = reply {
                let _ = bounded(step, log.finish(&reply)).await;
            }
            let Some(key) = sent_on else { return };
            let notice = serde_json::json!({
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": id, "reason": "the server stopped waiting for an answer"},
            });
            let notice = Bytes::from(notice.to_string());
            let sent = bounded(step, log.append(&key, notice.clone())).await;
            if let Err(EventLogError::Finished | EventLogError::UnknownStream) = sent {
                let _ = push_standalone(&*log, step, key.session(), notice).await;
            }
        });
    }
}

/// Read what the client POSTed for a minted id.
fn parse_answer(data: &[u8]) -> Result<Value, RequestError> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        result: Option<Value>,
        #[serde(default)]
        error: Option<ErrorObject>,
        #[serde(default)]
        method: Option<String>,
        #[serde(default)]
        params: Option<CancelParams>,
    }
    #[derive(Deserialize)]
    struct ErrorObject {
        #[serde(default)]
        code: i64,
        #[serde(default)]
        message: String,
        #[serde(default)]
        data: Option<Value>,
    }
    #[derive(Deserialize)]
    struct CancelParams {
        #[serde(default)]
        reason: Option<Value>,
    }
    let Ok(answer) = serde_json::from_slice::<Answer>(data) else {
        // The layer only stores what parsed as JSON-RPC; anything else is not an answer.
        return Err(RequestError::Rejected {
            code: -32603,
            message: "the client's answer could not be read".into(),
            data: None,
        });
    };
    match answer {
        Answer {
            result: Some(result), ..
        } => Ok(result),
        Answer { error: Some(e), .. } => Err(RequestError::Rejected {
            code: e.code,
            message: e.message,
            data: e.data,
        }),
        Answer {
            method: Some(_),
            params,
            ..
        } => Err(RequestError::Cancelled {
            reason: params
                .and_then(|p| p.reason)
                .and_then(|r| r.as_str().map(str::to_owned)),
        }),
        // `"result": null` is a result.
        _ => Ok(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::{mint, minted, parse_answer, reply_stream};
    use crate::RequestError;

    #[test]
    fn minted_ids_are_recognized_and_others_are_not() {
        let id = mint();
        let raw = RawValue::from_string(format!("\"{id}\"")).unwrap();
        assert_eq!(minted(&raw), Some(id.as_str()));
        assert_ne!(mint(), id);
        for other in [
            "1",
            "\"mcp-srv-\"",
            "\"mcp-srv-0123\"",
            "\"MCP-SRV-0123456789abcdef0123456789abcdef\"",
            "\"mcp-srv-0123456789ABCDEF0123456789abcdef\"",
            "\"mcp-srv-0123456789abcdef0123456789abcdeg\"",
        ] {
            assert_eq!(minted(&RawValue::from_string(other.into()).unwrap()), None, "{other}");
        }
        assert_ne!(reply_stream(&id), reply_stream(&mint()));
    }

    #[test]
    fn answers_are_read() {
        assert_eq!(
            parse_answer(br#"{"jsonrpc":"2.0","id":"x","result":{"a":1}}"#),
            Ok(serde_json::json!({"a": 1}))
        );
        assert_eq!(
            parse_answer(br#"{"jsonrpc":"2.0","id":"x","error":{"code":-1,"message":"no"}}"#),
            Err(RequestError::Rejected {
                code: -1,
                message: "no".into(),
                data: None
            })
        );
        assert_eq!(
            parse_answer(
                br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"x","reason":"user"}}"#
            ),
            Err(RequestError::Cancelled {
                reason: Some("user".into())
            })
        );
    }
}
