//! Translation mode's change notifications: a 2025-era client learns of changes on its
//! GET stream (`notifications/*/list_changed`, and `notifications/resources/updated`
//! for the URIs it subscribed to); a 2026-07-28 server sends them only on a
//! `subscriptions/listen` stream a client holds open. While a legacy client has its GET
//! stream attached here, the layer holds one listen stream against the inner service
//! for that session and appends what comes on it to the session's standalone stream,
//! where it is resumable like any push.
//!
//! One listener per session: it lives exactly as long as the GET connection's reader,
//! which holds the session's reader claim in the shared log; a newer GET elsewhere takes
//! the claim over, this reader ends, and this listener with it. The opted-in URIs are
//! the session's subscriptions: a subscribe on this instance reopens the listen at once
//! and is answered once the new listen is acknowledged and the old one dropped (so an
//! update right after it is delivered, and none after an unsubscribe); one on another
//! instance takes effect within [`RECHECK`]. The new listen is acknowledged before the
//! old one is dropped, so nothing falls between them.
//!
//! A listen stream is not resumable: when it drops, or when the client resumes its GET
//! after a gap, what changed meanwhile is unknown, so the layer sends one notification
//! of each kind the server accepted (a list changed, each subscribed URI updated). A
//! client re-reads a little more; it misses nothing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::oneshot;
use tower_service::Service;

use crate::SessionRecord;
use crate::engine::Engine;
use crate::headers::{LAST_EVENT_ID, MCP_SESSION_ID};
use crate::lifecycle::client_state::{LOG_LEVEL, SUBSCRIPTIONS, uris};
use crate::store::BoxError;
use crate::stream::decode::{Decoder, StreamFormat};
use crate::translate::answer::{AnswerTo, LegacyMessage, to_legacy};
use crate::translate::context::LegacyContext;
use crate::translate::raw::RawObject;
use crate::translate::request::layer_request;

/// How often the subscriptions are read again, for changes made on other instances.
pub(crate) const RECHECK: Duration = Duration::from_secs(10);
/// The longest wait before opening a listen stream again after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Subscribed URIs passed to one listen request (the attribute bound holds fewer).
const MAX_URIS: usize = 1024;

/// What the listener of one session needs.
pub(super) struct Listener<S> {
    pub(super) inner: S,
    pub(super) engine: Arc<Engine>,
    pub(super) record: Arc<SessionRecord>,
    /// The GET's head: its authorization and other headers go with every listen.
    pub(super) parts: Parts,
    /// The GET resumed an earlier one: changes during the gap are unknown.
    pub(super) after_gap: bool,
}

/// One open listen stream.
struct Listening<B> {
    body: std::pin::Pin<Box<B>>,
    decoder: Decoder,
    /// The URIs it was opened with.
    uris: Vec<String>,
}

/// Why a listen stream could not be opened.
enum OpenError {
    /// The inner service does not serve `subscriptions/listen`: asking again will not
    /// help.
    Unsupported,
    /// Worth another try later.
    Failed,
}

impl<B> Listening<B>
where
    B: Body<Data = Bytes>,
{
    /// The next message, or `None` when the stream ended.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            match self.decoder.next_message() {
                Ok(Some(message)) => return Some(message),
                Ok(None) => {}
                Err(_) => return None,
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(chunk) = frame.into_data() {
                        self.decoder.push(&chunk);
                    }
                }
                Some(Err(_)) | None => return self.decoder.finish(),
            }
        }
    }
}

impl<S, ResBody> Listener<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + Send,
{
    /// Run until `reader_gone` fires (the GET connection ended) or the inner service
    /// turns out not to serve `subscriptions/listen`.
    pub(super) fn spawn(self, reader_gone: oneshot::Receiver<()>) {
        tokio::spawn(async move {
            tokio::select! {
                () = self.run() => {}
                _ = reader_gone => {}
            }
        });
    }

    async fn run(self) {
        let Listener {
            inner,
            engine,
            record,
            parts,
            after_gap,
        } = self;
        let sink = Sink { engine, record };
        let changed = sink.engine.in_flight().watch_subscriptions(sink.record.id());
        let mut after_gap = after_gap;
        let mut failures = 0u32;
        let mut opened = 0u64;
        let mut current: Option<Listening<ResBody>> = None;
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The local change this listener is opening a listen for, marked applied once
        // that listen is acknowledged (the subscribe that made it waits for that).
        let mut applying: Option<u64> = None;
        loop {
            let wanted = sink.subscriptions().await;
            // Open the next stream; the current one (if any) is read meanwhile.
            opened += 1;
            let next = {
                let open = open(inner.clone(), parts.clone(), &sink, opened, wanted.clone());
                let mut open = std::pin::pin!(open);
                loop {
                    let Some(old) = current.as_mut() else {
                        break open.await;
                    };
                    tokio::select! {
                        next = &mut open => break next,
                        message = old.next() => match message {
                            Some(message) => sink.deliver(&message).await,
                            None => {
                                current = None;
                                after_gap = true;
                            }
                        },
                    }
                }
            };
            let mut listening = match next {
                Ok((listening, accepted)) => {
                    failures = 0;
                    if after_gap {
                        sink.catch_up(&accepted).await;
                    }
                    listening
                }
                Err(OpenError::Unsupported) => {
                    if let Some(change) = applying.take() {
                        changed.applied(change);
                    }
                    return;
                }
                Err(OpenError::Failed) => {
                    // Recorded, and in effect at the next open: the subscribe need not
                    // wait for that.
                    if let Some(change) = applying.take() {
                        changed.applied(change);
                    }
                    failures += 1;
                    if current.is_none() {
                        after_gap = true;
                    }
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
            };
            drop(current.take());
            if let Some(change) = applying.take() {
                changed.applied(change);
            }
            // Read it until it ends or the subscriptions change.
            loop {
                tokio::select! {
                    message = listening.next() => match message {
                        Some(message) => sink.deliver(&message).await,
                        None => {
                            after_gap = true;
                            break;
                        }
                    },
                    _ = async {
                        tokio::select! {
                            () = changed.changed() => {}
                            _ = recheck.tick() => {}
                        }
                    } => {
                        let change = changed.requested();
                        if sink.subscriptions().await != listening.uris {
                            after_gap = false;
                            applying = Some(change);
                            current = Some(listening);
                            break;
                        }
                        changed.applied(change);
                    }
                }
            }
        }
    }
}

/// The method of the notification that the server's tools changed.
const TOOLS_CHANGED: &[u8] = b"notifications/tools/list_changed";

/// Where a listener's notifications go: the session's standalone stream.
struct Sink {
    engine: Arc<Engine>,
    record: Arc<SessionRecord>,
}

impl Sink {
    /// The session's subscribed URIs, sorted.
    async fn subscriptions(&self) -> Vec<String> {
        let value = self
            .engine
            .sessions()
            .attribute(self.record.id(), SUBSCRIPTIONS)
            .await
            .ok()
            .flatten();
        let mut list: Vec<String> = uris(value.as_ref()).take(MAX_URIS).map(str::to_owned).collect();
        list.sort();
        list.dedup();
        list
    }

    /// Put one message of the listen stream on the session's GET stream, in the legacy
    /// shape. The listen's own answer (its end) and anything but notifications stay
    /// here.
    async fn deliver(&self, message: &[u8]) {
        let to = AnswerTo {
            method: "subscriptions/listen",
            client_id: LISTEN_ANSWER_ID.get_or_init(|| RawValue::from_string("null".into()).expect("JSON")),
        };
        if let Ok(LegacyMessage::Notification(note)) = to_legacy(message, &to) {
            if note.windows(TOOLS_CHANGED.len()).any(|w| w == TOOLS_CHANGED) {
                // What the layer learnt of the tools' headers may be out of date.
                self.engine.tool_headers().changed();
            }
            self.push(note).await;
        }
    }

    /// One notification of each kind the server accepted: what changed while no listen
    /// stream was open is unknown.
    async fn catch_up(&self, accepted: &Value) {
        for (flag, kind) in [
            ("toolsListChanged", "tools"),
            ("promptsListChanged", "prompts"),
            ("resourcesListChanged", "resources"),
        ] {
            if accepted.get(flag) == Some(&Value::Bool(true)) {
                let note = format!(r#"{{"jsonrpc":"2.0","method":"notifications/{kind}/list_changed"}}"#);
                self.push(Bytes::from(note)).await;
            }
        }
        let subscribed = accepted.get("resourceSubscriptions").and_then(Value::as_array);
        for uri in subscribed.into_iter().flatten().filter_map(Value::as_str) {
            let note = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                "params": {"uri": uri}});
            self.push(Bytes::from(note.to_string())).await;
        }
    }

    async fn push(&self, note: Bytes) {
        // A full log or a store outage loses this notification; the stream itself stays
        // consistent (no id is skipped), and the next change notifies again.
        if self.engine.outbound().push(self.record.id(), note).await.is_err() {
            #[cfg(feature = "tracing")]
            tracing::debug!(session = %self.record.id(), "a listen notification could not be stored");
        }
    }
}

/// Send `subscriptions/listen` and read up to its acknowledgment; the stream and
/// what the server accepted.
async fn open<S, ResBody>(
    mut inner: S,
    mut parts: Parts,
    sink: &Sink,
    n: u64,
    uris: Vec<String>,
) -> Result<(Listening<ResBody>, Value), OpenError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    let level = sink
        .engine
        .sessions()
        .attribute(sink.record.id(), LOG_LEVEL)
        .await
        .ok()
        .flatten();
    let ctx = LegacyContext::from_record(&sink.record, level.as_ref().and_then(Value::as_str));
    let id = RawValue::from_string(format!("\"mcp-layer-listen-{n}\"")).expect("a JSON string");
    let notifications = serde_json::json!({
        "toolsListChanged": true,
        "promptsListChanged": true,
        "resourcesListChanged": true,
        "resourceSubscriptions": uris,
    });
    let params = serde_json::json!({ "notifications": notifications }).to_string();
    let extra = RawObject::from_slice(params.as_bytes()).map_err(|_| OpenError::Unsupported)?;
    let modern = layer_request(&id, "subscriptions/listen", extra, &ctx).map_err(|_| OpenError::Unsupported)?;
    parts.method = Method::POST;
    parts.headers.remove(MCP_SESSION_ID);
    parts.headers.remove(LAST_EVENT_ID);
    parts
        .headers
        .insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in &modern.headers {
        parts.headers.insert(name, value.clone());
    }
    if std::future::poll_fn(|cx| inner.poll_ready(cx)).await.is_err() {
        return Err(OpenError::Failed);
    }
    let Ok(response) = inner.call(Request::from_parts(parts, Full::new(modern.body))).await else {
        return Err(OpenError::Failed);
    };
    let (head, body) = response.into_parts();
    let format = StreamFormat::of(&head.headers).filter(|_| head.status.is_success());
    let Some(format) = format else {
        // A refusal (unknown method, a 4xx) will not change; a server error may.
        return Err(if head.status.is_server_error() {
            OpenError::Failed
        } else {
            OpenError::Unsupported
        });
    };
    let mut listening = Listening {
        body: Box::pin(body),
        decoder: Decoder::new(format, sink.engine.config().sse.max_event_bytes),
        uris,
    };
    // The acknowledgment comes first; it says what the server accepted.
    while let Some(message) = listening.next().await {
        let Ok(value) = serde_json::from_slice::<Value>(&message) else {
            continue;
        };
        if value["method"] == "notifications/subscriptions/acknowledged" {
            let accepted = value.pointer("/params/notifications").cloned().unwrap_or_default();
            return Ok((listening, accepted));
        }
        if value.get("method").is_none() {
            // An answer before any acknowledgment: the server refused the listen.
            return Err(OpenError::Unsupported);
        }
        sink.deliver(&message).await;
    }
    Err(OpenError::Failed)
}

static LISTEN_ANSWER_ID: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.clamp(1, 6).saturating_sub(1)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_bound() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert!(backoff(u32::MAX) <= MAX_BACKOFF);
    }
}
