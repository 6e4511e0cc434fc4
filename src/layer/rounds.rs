//! Translation mode's streamed answers and multi round-trip requests (MRTR), for a
//! 2025-era client of a 2026-07-28 inner service.
//!
//! A 2026-07-28 handler that needs input from the client answers with an
//! `InputRequiredResult`; a 2025-era client knows only server → client requests. The
//! layer bridges the two on the POST's resumable stream. Each input request goes to
//! the client as a request of its own, through the session's outbound requests, so its
//! answer may be POSTed to any instance; the answers are gathered and the original
//! request is sent again with `inputResponses` and the exact `requestState`, under a
//! new id, for at most [`MAX_ROUNDS`] rounds. The client sees its one request, the
//! requests to it, and one final answer under its own id.
//!
//! A [`Relay`] runs the rounds in a task of its own, registered with the session's
//! pumps: a client that goes away does not stop them (2025-era semantics), the
//! session's end does. It writes legacy messages into a [`RelayBody`], which the
//! stream's pump stores in the event log like any inner SSE answer, so every message,
//! requests to the client included, is resumable with `Last-Event-ID`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::request::Parts;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tower_service::Service;

use super::translated::{Translated, learn_tools};
use crate::SessionRecord;
use crate::engine::Engine;
use crate::lifecycle::Session;
use crate::outbound::RequestError;
use crate::store::BoxError;
use crate::stream::decode::{Decoder, StreamFormat};
use crate::translate::answer::{InputRequired, LegacyMessage, to_legacy};
use crate::translate::context::LegacyContext;
use crate::translate::http_error::{LegacyHttpError, http_error_to_legacy};
use crate::translate::mrtr::{InputResponse, input_response, legacy_params, retry_request};

/// Rounds one request may take: a server that keeps asking is cut off with an error
/// answer instead of holding the client's request forever.
pub(crate) const MAX_ROUNDS: usize = 8;
/// Input requests one round may carry (each becomes an open request to the client).
pub(crate) const MAX_INPUTS_PER_ROUND: usize = 16;
/// Messages the relay may run ahead of the pump.
const QUEUE: usize = 16;

/// What the relay starts from: the inner service's first answer.
pub(super) enum Start<B> {
    /// A streamed answer, still to be read.
    Stream(StreamFormat, B),
    /// A JSON answer that asked for input.
    InputRequired(InputRequired),
}

/// Everything a translated request's rounds need.
pub(super) struct Relay<S> {
    pub(super) inner: S,
    /// The modern request's head, for every retry (the headers apply unchanged).
    pub(super) parts: Parts,
    /// The modern request as first sent; retries are built from it.
    pub(super) original: Bytes,
    pub(super) translated: Arc<Translated>,
    /// The handle the inner service got; requests to the client go through it, on the
    /// POST's stream.
    pub(super) session: Session,
    pub(super) record: Arc<SessionRecord>,
    pub(super) log_level: Option<String>,
    /// How long a request to the client may wait for its answer.
    pub(super) wait: Duration,
    /// The bound on one message of the inner service.
    pub(super) max_message_bytes: usize,
    /// Where a streamed `tools/list` answer's annotations are learnt.
    pub(super) engine: Arc<Engine>,
}

/// How a relayed request ended, for the final message.
enum Outcome {
    /// The final answer went out.
    Answered,
    /// Another round: the server asked for input.
    Input(InputRequired),
    /// Nothing more to send (the session ended).
    Silent,
}

impl<S, ResBody> Relay<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    /// The body the pump reads and the task that fills it.
    pub(super) fn start(self, start: Start<ResBody>) -> (RelayBody, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared::default());
        let body = RelayBody {
            rx,
            shared: Arc::clone(&shared),
            taken: 0,
        };
        let out = Out { tx, shared, sent: 0 };
        (body, self.run(start, out))
    }

    async fn run(mut self, start: Start<ResBody>, mut out: Out) {
        let mut outcome = match start {
            Start::Stream(format, body) => self.relay_stream(format, body, &mut out).await,
            Start::InputRequired(input) => Outcome::Input(input),
        };
        let mut rounds = 0;
        while let Outcome::Input(input) = outcome {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                out.send(self.error(-32603, "The server asked for client input too many times"))
                    .await;
                return;
            }
            // Whatever the server sent before asking is stored first: the requests to
            // the client go to the same stream directly.
            out.flushed().await;
            if out.tx.is_closed() {
                // The stream was refused or its pump stopped: no one would see them.
                return;
            }
            let responses = match self.ask_client(&input).await {
                Ok(responses) => responses,
                Err(Some(answer)) => {
                    out.send(answer).await;
                    return;
                }
                Err(None) => return,
            };
            let id = retry_id(rounds);
            let retry = match retry_request(&self.original, &id, &responses, input.request_state.as_deref()) {
                Ok(retry) => retry,
                Err(e) => {
                    out.send(self.error(e.code(), "The request could not be retried")).await;
                    return;
                }
            };
            outcome = self.call(retry, &mut out).await;
        }
    }

    /// Send a retry to the inner service and relay its answer.
    async fn call(&mut self, body: Bytes, out: &mut Out) -> Outcome {
        if std::future::poll_fn(|cx| self.inner.poll_ready(cx)).await.is_err() {
            out.send(self.error(-32603, "The server is unavailable")).await;
            return Outcome::Answered;
        }
        let mut req = Request::from_parts(self.parts.clone(), Full::new(body));
        req.extensions_mut().insert(self.session.clone());
        let Ok(response) = self.inner.call(req).await else {
            out.send(self.error(-32603, "The server failed to answer")).await;
            return Outcome::Answered;
        };
        let (head, body) = response.into_parts();
        let format = StreamFormat::of(&head.headers).filter(|_| head.status.is_success());
        if let Some(format) = format {
            return self.relay_stream(format, body, out).await;
        }
        let answer = match Limited::new(body, self.max_message_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                out.send(self.error(-32603, "The server's answer could not be read"))
                    .await;
                return Outcome::Answered;
            }
        };
        if !head.status.is_success() {
            let t = &self.translated;
            let legacy = match http_error_to_legacy(head.status, &answer, &t.client_id, &t.method) {
                LegacyHttpError::Answer(legacy) => legacy,
                // An authorization challenge cannot reach the client in the middle of
                // a stream: the request fails.
                LegacyHttpError::Keep => self.error(-32603, "The server refused the retried request"),
            };
            out.send(legacy).await;
            return Outcome::Answered;
        }
        match self.message(&answer) {
            Relayed::Final(answer) => {
                out.send(answer).await;
                Outcome::Answered
            }
            Relayed::Input(input) => Outcome::Input(input),
            Relayed::Notification(_) | Relayed::Nothing => {
                out.send(self.error(-32603, "The server sent no answer")).await;
                Outcome::Answered
            }
        }
    }

    /// Relay a streamed answer: its notifications as they come, then its final answer,
    /// or the input it asks for.
    async fn relay_stream(&mut self, format: StreamFormat, body: ResBody, out: &mut Out) -> Outcome {
        let mut decoder = Decoder::new(format, self.max_message_bytes);
        let mut body = std::pin::pin!(body);
        loop {
            let frame = body.frame().await;
            let ended = match frame {
                Some(Ok(frame)) => {
                    if let Ok(chunk) = frame.into_data() {
                        decoder.push(&chunk);
                    }
                    false
                }
                Some(Err(_)) | None => true,
            };
            loop {
                let message = match decoder.next_message() {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(_) => {
                        out.send(self.error(-32603, "The server's answer is too large")).await;
                        return Outcome::Answered;
                    }
                };
                match self.message(&message) {
                    Relayed::Final(answer) => {
                        out.send(answer).await;
                        return Outcome::Answered;
                    }
                    Relayed::Input(input) => return Outcome::Input(input),
                    Relayed::Notification(note) => {
                        if !out.send(note).await {
                            // The pump stopped (the session ended): no one to tell.
                            return Outcome::Silent;
                        }
                    }
                    Relayed::Nothing => {}
                }
            }
            if ended {
                if let Some(tail) = decoder.finish() {
                    match self.message(&tail) {
                        Relayed::Final(answer) => {
                            out.send(answer).await;
                            return Outcome::Answered;
                        }
                        Relayed::Input(input) => return Outcome::Input(input),
                        Relayed::Notification(note) => {
                            out.send(note).await;
                        }
                        Relayed::Nothing => {}
                    }
                }
                out.send(self.error(-32603, "The server ended its answer without a result"))
                    .await;
                return Outcome::Answered;
            }
        }
    }

    /// One message of the inner service, as the legacy client gets it.
    fn message(&self, message: &[u8]) -> Relayed {
        match to_legacy(message, &self.translated.to()) {
            Ok(LegacyMessage::Answer(answer)) => {
                if self.translated.method == "tools/list" {
                    learn_tools(&self.engine, &answer);
                }
                Relayed::Final(answer)
            }
            Ok(LegacyMessage::Notification(note)) => Relayed::Notification(note),
            Ok(LegacyMessage::InputRequired(input)) => Relayed::Input(input),
            Ok(LegacyMessage::Drop) => Relayed::Nothing,
            // An answer the legacy client could not take still answers its request.
            Err(e) if e.answers_request() => {
                Relayed::Final(self.error(e.code(), "The server's answer could not be translated"))
            }
            Err(_) => Relayed::Nothing,
        }
    }

    /// Ask the client every input request of one round, at once; their results by key.
    /// `Err(Some(answer))`: the request ends with that answer; `Err(None)`: the session
    /// ended, nothing to send.
    async fn ask_client(&mut self, input: &InputRequired) -> Result<Vec<(String, Box<RawValue>)>, Option<Bytes>> {
        if input.input_requests.len() > MAX_INPUTS_PER_ROUND {
            return Err(Some(
                self.error(-32603, "The server asked for too many client inputs at once"),
            ));
        }
        let ctx = LegacyContext::from_record(&self.record, self.log_level.as_deref());
        let mut asks = JoinSet::new();
        for (index, request) in input.input_requests.iter().enumerate() {
            let elicitation_id = elicitation_id(index);
            let params = match legacy_params(request, &elicitation_id, &ctx) {
                Ok((params, _)) => params.map(|p| p.to_json()),
                Err(e) => {
                    return Err(Some(
                        self.error(e.code(), "The server asked for input the client cannot give"),
                    ));
                }
            };
            let params = match params.map(|p| serde_json::from_str::<Value>(&p)) {
                None => Value::Null,
                Some(Ok(params)) => params,
                Some(Err(_)) => return Err(Some(self.error(-32603, "The server's input request is invalid"))),
            };
            let session = self.session.clone();
            let method = request.method.clone();
            let wait = self.wait;
            asks.spawn(async move { (index, session.request_timeout(&method, params, wait).await) });
        }
        let mut results: Vec<Option<Box<RawValue>>> = vec![None; input.input_requests.len()];
        // Dropping `asks` on an early return aborts the other requests, and each tells
        // the client it is cancelled.
        while let Some(joined) = asks.join_next().await {
            let Ok((index, answer)) = joined else {
                return Err(Some(self.error(-32603, "Internal error")));
            };
            match answer {
                Ok(result) => results[index] = Some(crate::translate::raw::to_raw(&result)),
                Err(e) => return Err(self.failed(e)),
            }
        }
        let mut responses = Vec::with_capacity(results.len());
        for (request, result) in input.input_requests.iter().zip(results) {
            let result = result.ok_or_else(|| Some(self.error(-32603, "Internal error")))?;
            // The client's result, checked as an answer would be.
            let answer = format!(r#"{{"jsonrpc":"2.0","id":0,"result":{}}}"#, result.get());
            match input_response(answer.as_bytes()) {
                Ok(InputResponse::Result(result)) => responses.push((request.key.clone(), result)),
                _ => return Err(Some(self.error(-32603, "The client's answer is invalid"))),
            }
        }
        Ok(responses)
    }

    /// The final answer when a request to the client failed.
    fn failed(&self, error: RequestError) -> Option<Bytes> {
        let t = &self.translated;
        Some(match error {
            // The client's own error (a user who declined sampling, say) ends the
            // request: 2026-07-28 cannot carry an error in `inputResponses`.
            RequestError::Rejected { code, message, data } => {
                crate::jsonrpc::error_body(Some(&t.client_id), code, &message, data.as_ref())
            }
            RequestError::Cancelled { .. } => self.error(-32603, "The client cancelled the server's request for input"),
            RequestError::Timeout => self.error(
                -32603,
                "The client did not answer the server's request for input in time",
            ),
            RequestError::NotDeclared { .. } => self.error(
                -32603,
                "The server asked for input the client did not declare it can give",
            ),
            RequestError::SessionEnded => return None,
            _ => self.error(-32603, "The server's request for input could not be delivered"),
        })
    }

    fn error(&self, code: i64, message: &str) -> Bytes {
        self.translated.error(code, message)
    }
}

/// What one message of the inner service becomes.
enum Relayed {
    Final(Bytes),
    Notification(Bytes),
    Input(InputRequired),
    Nothing,
}

/// The id of the `round`-th retry. 2026-07-28 asks for a new id per retry; the inner
/// service answers it on this request's own response, so it needs to be unique only
/// among the request's rounds.
fn retry_id(round: usize) -> Box<RawValue> {
    RawValue::from_string(format!("\"mcp-layer-retry-{round}\"")).expect("a JSON string")
}

/// The `elicitationId` a 2025-11-25 URL-mode elicitation needs (2026-07-28 has none):
/// random, so unique in the session.
fn elicitation_id(index: usize) -> String {
    let mut random = [0u8; 8];
    crate::session::fill_random(&mut random);
    let mut hex = [0u8; 16];
    crate::util::hex_encode(&random, &mut hex);
    format!("mcp-elicitation-{}-{index}", String::from_utf8_lossy(&hex))
}

/// What the relay and its body share: how far the pump has read.
#[derive(Default)]
struct Shared {
    /// The count of messages taken when the pump last found the queue empty: every
    /// message up to it has been stored (the pump asks for more only after storing).
    empty_at: AtomicU64,
    idle: Notify,
}

/// The relay's end of the queue.
struct Out {
    tx: mpsc::Sender<Bytes>,
    shared: Arc<Shared>,
    sent: u64,
}

impl Out {
    /// Queue one legacy message; false when the pump is gone.
    async fn send(&mut self, message: Bytes) -> bool {
        if self.tx.send(sse_event(&message)).await.is_err() {
            return false;
        }
        self.sent += 1;
        true
    }

    /// Wait until the pump has stored everything sent so far (or stopped reading).
    async fn flushed(&self) {
        loop {
            let notified = self.shared.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.shared.empty_at.load(Ordering::Acquire) >= self.sent || self.tx.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// The legacy messages of a translated request as an SSE body, for the pump.
pub(super) struct RelayBody {
    rx: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
    taken: u64,
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                self.taken += 1;
                Poll::Ready(Some(Ok(Frame::data(event))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                self.shared.empty_at.store(self.taken, Ordering::Release);
                self.shared.idle.notify_waiters();
                Poll::Pending
            }
        }
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        // The pump stopped: a relay waiting for it must not wait forever.
        self.rx.close();
        self.shared.idle.notify_waiters();
    }
}

/// One message as an SSE event. A message kept byte for byte may hold raw line breaks
/// between its tokens; each line becomes a `data:` line, which the reader joins with
/// `\n` (JSON whitespace) again.
fn sse_event(message: &[u8]) -> Bytes {
    let mut event = BytesMut::with_capacity(message.len() + 16);
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        for (i, part) in line.split(|&b| b == b'\r').enumerate() {
            if i > 0 {
                event.put_slice(b"\n");
            }
            event.put_slice(b"data: ");
            event.put_slice(part);
        }
        event.put_slice(b"\n");
    }
    event.put_slice(b"\n");
    event.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::decode::StreamFormat;

    fn decode(event: &[u8]) -> Vec<Bytes> {
        let mut decoder = Decoder::new(StreamFormat::Sse, 1 << 20);
        decoder.push(event);
        let mut out = Vec::new();
        while let Ok(Some(message)) = decoder.next_message() {
            out.push(message);
        }
        out
    }

    #[test]
    fn sse_events_carry_messages_with_line_breaks() {
        for message in [
            &br#"{"a":1}"#[..],
            b"{\n  \"a\": 1\n}",
            b"{\r\n\"a\":\r1}",
            b"{\"a\":\n\n1}",
        ] {
            let decoded = decode(&sse_event(message));
            assert_eq!(decoded.len(), 1, "{message:?}");
            let value: Value = serde_json::from_slice(&decoded[0]).unwrap();
            assert_eq!(value, serde_json::json!({"a": 1}));
        }
    }

    #[tokio::test]
    async fn flushed_waits_until_the_pump_has_asked_for_more() {
        let (tx, rx) = mpsc::channel(4);
        let shared = Arc::new(Shared::default());
        let mut body = RelayBody {
            rx,
            shared: Arc::clone(&shared),
            taken: 0,
        };
        let mut out = Out { tx, shared, sent: 0 };
        assert!(out.send(Bytes::from_static(b"{}")).await);
        let mut flushed = Box::pin(out.flushed());
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(flushed.as_mut().poll(&mut cx).is_pending(), "nothing read yet");
        // The pump takes the message: not yet stored.
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        assert!(flushed.as_mut().poll(&mut cx).is_pending(), "taken is not stored");
        // The pump asks for more: everything before is stored.
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert!(flushed.as_mut().poll(&mut cx).is_ready());
    }
}
