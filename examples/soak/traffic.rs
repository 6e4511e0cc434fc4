//! The client side of the soak: session slots, the traffic mix and the checks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use mcp_test_support::http::sse_events;
use mcp_test_support::tcp;
use serde_json::{Value, json};
use tokio::time::Instant;
use tower_mcp_session::{SessionId, SessionManager};

/// What the client has counted.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) checked: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) duplicated: AtomicU64,
    pub(crate) wrong: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) hung: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) not_expired: AtomicU64,
    pub(crate) created: AtomicU64,
    pub(crate) deleted: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One session slot: used by one client task at a time.
#[derive(Default)]
pub(crate) struct Slot {
    session: Option<String>,
    /// Pushes sent and acknowledged, and the next one the GET stream owes.
    pushed: u64,
    received: u64,
    /// The last event id read from the GET stream.
    cursor: Option<String>,
    last_used: Option<Instant>,
    /// A sleeping slot is left alone until then, so its session idles out.
    wake_at: Option<Instant>,
}

impl Slot {
    /// Whether the slot is sleeping so that its session idles out.
    pub(crate) fn asleep(&self) -> bool {
        self.wake_at.is_some_and(|t| Instant::now() < t)
    }
}

/// xorshift64*: enough randomness for a traffic mix, no dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub(crate) struct Soak {
    pub(crate) addr: SocketAddr,
    pub(crate) client: HttpClient,
    pub(crate) manager: SessionManager,
    pub(crate) counters: Counters,
    pub(crate) idle: Duration,
    pub(crate) next_id: AtomicU64,
}

/// The outcome of one exchange.
pub(crate) enum Answer {
    Ok(http::HeaderMap, Bytes),
    Status(StatusCode),
    Hung,
}

impl Soak {
    pub(crate) async fn exchange(
        &self,
        method: Method,
        sid: Option<&str>,
        last_event_id: Option<&str>,
        body: Option<&Value>,
    ) -> Result<http::Response<hyper::body::Incoming>, Answer> {
        bump(&self.counters.requests);
        let mut req = tcp::req(self.addr, method, sid, body);
        if let Some(id) = last_event_id {
            req.headers_mut()
                .insert("last-event-id", HeaderValue::from_str(id).expect("an event id"));
        }
        match tokio::time::timeout(Duration::from_secs(10), self.client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => Ok(resp),
            Ok(Ok(resp)) => Err(Answer::Status(resp.status())),
            Ok(Err(_)) | Err(_) => Err(Answer::Hung),
        }
    }

    pub(crate) async fn whole(&self, method: Method, sid: Option<&str>, body: Option<&Value>) -> Answer {
        let resp = match self.exchange(method, sid, None, body).await {
            Ok(resp) => resp,
            Err(answer) => return answer,
        };
        let (head, body) = resp.into_parts();
        match tokio::time::timeout(Duration::from_secs(10), body.collect()).await {
            Ok(Ok(collected)) => Answer::Ok(head.headers, collected.to_bytes()),
            _ => Answer::Hung,
        }
    }

    /// Count an answer that is neither success nor an expected 404.
    pub(crate) fn refused(&self, answer: &Answer) {
        match answer {
            Answer::Hung => bump(&self.counters.hung),
            _ => bump(&self.counters.refused),
        }
    }

    pub(crate) async fn initialize(&self, slot: &mut Slot) {
        let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "soak", "version": "1"}}});
        let answer = self.whole(Method::POST, None, Some(&body)).await;
        match &answer {
            Answer::Ok(headers, _) => {
                *slot = Slot {
                    session: headers
                        .get("mcp-session-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    last_used: Some(Instant::now()),
                    ..Slot::default()
                };
                bump(&self.counters.created);
            }
            _ => self.refused(&answer),
        }
    }

    pub(crate) fn wrong(&self, what: &str) {
        bump(&self.counters.wrong);
        if std::env::var_os("SOAK_DEBUG").is_some() {
            eprintln!("wrong: {what}");
        }
    }

    pub(crate) fn lost(&self, n: u64, what: &str) {
        if n > 0 {
            self.counters.lost.fetch_add(n, Ordering::Relaxed);
            if std::env::var_os("SOAK_DEBUG").is_some() {
                eprintln!("lost {n}: {what}");
            }
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A 404 on a session: expected after a sleep, otherwise a session lost in use.
    pub(crate) fn gone(&self, slot: &mut Slot, op: &str) {
        let idle_for = slot.last_used.map(|t| t.elapsed()).unwrap_or_default();
        if idle_for >= self.idle {
            bump(&self.counters.expired);
        } else {
            self.wrong(&format!("session gone in {op} after {idle_for:?} idle"));
        }
        *slot = Slot::default();
    }

    /// Count an answer that is not a success (a 404 ends the slot's session).
    pub(crate) fn failed(&self, slot: &mut Slot, answer: &Answer, op: &str) {
        match answer {
            Answer::Status(StatusCode::NOT_FOUND) => self.gone(slot, op),
            _ => self.refused(answer),
        }
    }

    pub(crate) async fn echo_call(&self, slot: &mut Slot, sid: &str) {
        let text = format!("soak-{}", self.id());
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": text}}});
        match self.whole(Method::POST, Some(sid), Some(&call)).await {
            Answer::Ok(_, body) => {
                let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if answer["result"]["content"][0]["text"] == text.as_str() {
                    bump(&self.counters.checked);
                } else {
                    self.wrong(&format!("echo: {answer}"));
                }
            }
            other => self.failed(slot, &other, "echo_call"),
        }
    }

    pub(crate) async fn push(&self, slot: &mut Slot, sid: &str) {
        let Some(id) = SessionId::parse(sid) else {
            bump(&self.counters.wrong);
            return;
        };
        let n = slot.pushed + 1;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": n}});
        match self.manager.send(&id, &note).await {
            Ok(()) => slot.pushed = n,
            Err(tower_mcp_session::SendError::UnknownSession) => self.gone(slot, "push"),
            Err(_) => bump(&self.counters.refused),
        }
    }

    /// Read the pushes owed over a GET stream (resumed from the cursor), then drop it.
    pub(crate) async fn drain(&self, slot: &mut Slot, sid: &str) {
        let resp = match self
            .exchange(Method::GET, Some(sid), slot.cursor.as_deref(), None)
            .await
        {
            Ok(resp) => resp,
            Err(answer) => return self.failed(slot, &answer, "drain"),
        };
        let start = slot.cursor.clone();
        let mut reader = Reader::new(resp);
        if slot.cursor.is_none() {
            // A fresh GET promises no continuity: what it sends before the client drops
            // it counts as delivered. Keep the priming event's id, as a client must, so
            // the next GET resumes from it with Last-Event-ID.
            slot.cursor = reader.priming().await;
            if slot.cursor.is_none() {
                return self.lost(slot.pushed - slot.received, "drain: no priming event");
            }
        }
        while slot.received < slot.pushed {
            let Some((id, message)) = reader.message().await else {
                break;
            };
            let Some(id) = id else { continue };
            let n = message["params"]["data"].as_u64().unwrap_or(0);
            if n <= slot.received {
                bump(&self.counters.duplicated);
            } else {
                self.lost(
                    n - slot.received - 1,
                    &format!(
                        "drain: gap (got {n} id {id} after {} of {}, resumed from {:?})",
                        slot.received, slot.pushed, start
                    ),
                );
                self.counters.checked.fetch_add(1, Ordering::Relaxed);
                slot.received = n;
            }
            slot.cursor = Some(id);
        }
        if slot.received < slot.pushed {
            self.lost(slot.pushed - slot.received, "drain: missing at the end");
            slot.received = slot.pushed;
        }
        if slot.cursor.is_none() {
            slot.cursor = reader.last_id.clone();
        }
    }

    /// `slow_stream` with 3 progress events; `drop_after`: read that many events, drop
    /// the connection and resume the rest with `Last-Event-ID`.
    pub(crate) async fn streamed(&self, slot: &mut Slot, sid: &str, drop_after: Option<usize>) {
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "slow_stream", "arguments": {"count": 3, "delay_ms": 5}}});
        let resp = match self.exchange(Method::POST, Some(sid), None, Some(&call)).await {
            Ok(resp) => resp,
            Err(answer) => return self.failed(slot, &answer, "streamed"),
        };
        let mut reader = Reader::new(resp);
        let mut got = Vec::new();
        while drop_after.is_none_or(|n| got.len() < n) {
            match reader.message().await {
                Some((_, m)) => got.push(m),
                None => break,
            }
        }
        if drop_after.is_some() {
            let Some(cursor) = reader.last_id.clone() else {
                self.lost(1, "streamed: no event before the drop");
                return;
            };
            drop(reader);
            let resp = match self.exchange(Method::GET, Some(sid), Some(&cursor), None).await {
                Ok(resp) => resp,
                Err(answer) => return self.failed(slot, &answer, "streamed"),
            };
            let mut resumed = Reader::new(resp);
            while let Some((_, m)) = resumed.message().await {
                got.push(m);
            }
        }
        // progress 1, 2, 3, then the answer: each once, in order.
        let mut want = 1;
        let mut answered = false;
        for m in &got {
            if let Some(p) = m["params"]["progress"].as_u64() {
                match p.cmp(&want) {
                    std::cmp::Ordering::Less => bump(&self.counters.duplicated),
                    std::cmp::Ordering::Greater => {
                        self.lost(p - want, "streamed: gap");
                        want = p + 1;
                    }
                    std::cmp::Ordering::Equal => want += 1,
                }
            } else if m["result"]["content"][0]["text"] == "slow stream complete" {
                if answered {
                    bump(&self.counters.duplicated);
                }
                answered = true;
            } else {
                self.wrong(&format!("streamed: {m}"));
            }
        }
        let missing = 4u64.saturating_sub(want) + u64::from(!answered);
        self.lost(
            missing,
            if drop_after.is_some() {
                "streamed, resumed: missing at the end"
            } else {
                "streamed: missing at the end"
            },
        );
        self.counters.checked.fetch_add(got.len() as u64, Ordering::Relaxed);
    }

    pub(crate) async fn delete(&self, slot: &mut Slot, sid: &str) {
        match self.whole(Method::DELETE, Some(sid), None).await {
            Answer::Ok(..) => {
                bump(&self.counters.deleted);
                *slot = Slot::default();
            }
            other => self.failed(slot, &other, "delete"),
        }
    }

    /// One step of one slot.
    pub(crate) async fn step(&self, index: usize, slot: &mut Slot, rng: &mut Rng) {
        let began = Instant::now();
        let Some(sid) = slot.session.clone() else {
            return self.initialize(slot).await;
        };
        let woke = slot.wake_at.take().is_some();
        if woke {
            // It slept past the idle timeout: its session must be gone.
            match self
                .whole(
                    Method::POST,
                    Some(&sid),
                    Some(&json!({"jsonrpc": "2.0", "id": 3, "method": "ping"})),
                )
                .await
            {
                Answer::Status(StatusCode::NOT_FOUND) => bump(&self.counters.expired),
                Answer::Ok(..) => bump(&self.counters.not_expired),
                other => self.refused(&other),
            }
            *slot = Slot::default();
            return self.initialize(slot).await;
        }
        match rng.below(100) {
            0..35 => self.echo_call(slot, &sid).await,
            35..52 => {
                if slot.pushed - slot.received >= 4 {
                    self.drain(slot, &sid).await;
                } else {
                    // A push is the server's doing, not the client's: it does not keep
                    // the session from idling out, so it does not count as use here.
                    return self.push(slot, &sid).await;
                }
            }
            52..64 => self.drain(slot, &sid).await,
            64..76 => self.streamed(slot, &sid, None).await,
            76..88 => self.streamed(slot, &sid, Some(2)).await,
            88..92 => {
                self.drain(slot, &sid).await;
                if slot.session.is_some() {
                    self.delete(slot, &sid).await;
                }
            }
            92..95 if index.is_multiple_of(10) => {
                self.drain(slot, &sid).await;
                if slot.session.is_some() {
                    slot.wake_at = Some(Instant::now() + self.idle + self.idle / 2);
                }
            }
            _ => self.echo_call(slot, &sid).await,
        }
        if slot.session.is_some() {
            // The step's start: the server's idle clock started no earlier, so a
            // session found gone sooner than the idle timeout after it was lost in use.
            slot.last_used = Some(began);
        }
    }
}

/// An SSE body read event by event; `None` at its end or after 10 s of silence.
pub(crate) struct Reader {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    last_id: Option<String>,
}

impl Reader {
    pub(crate) fn new(resp: http::Response<hyper::body::Incoming>) -> Self {
        Self {
            body: resp.into_body(),
            buf: Vec::new(),
            last_id: None,
        }
    }

    /// The id of the first event, which must be the priming event (no data).
    pub(crate) async fn priming(&mut self) -> Option<String> {
        self.next_event().await.filter(|e| e.data.is_empty()).and_then(|e| e.id)
    }

    pub(crate) async fn message(&mut self) -> Option<(Option<String>, Value)> {
        while let Some(event) = self.next_event().await {
            if !event.data.is_empty() {
                return Some((event.id, serde_json::from_str(&event.data).unwrap_or(Value::Null)));
            }
        }
        None
    }

    pub(crate) async fn next_event(&mut self) -> Option<mcp_test_support::http::Event> {
        loop {
            while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(event) = sse_events(&block).into_iter().next() {
                    if event.id.is_some() {
                        self.last_id.clone_from(&event.id);
                    }
                    return Some(event);
                }
            }
            match tokio::time::timeout(Duration::from_secs(10), self.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                _ => return None,
            }
        }
    }
}
