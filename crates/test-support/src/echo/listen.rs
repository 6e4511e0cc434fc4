//! The echo server's 2026-07-28 `subscriptions/listen`: a POST whose SSE answer stays
//! open, first `notifications/subscriptions/acknowledged` with what was accepted, then
//! the change notifications the client opted in to, each tagged with the listen
//! request's id. Changes come from three tools a 2026-07-28 client can call (not listed
//! by `tools/list`, as they exist for tests only):
//!
//! - `trigger_list_changed` `{kind}` — `tools` (default), `prompts` or `resources`:
//!   the matching `notifications/…/list_changed`;
//! - `touch_resource` `{uri}` — `notifications/resources/updated` for `uri`;
//! - `end_listens` — every open listen stream ends (with its `complete` result), as a
//!   server does when it restarts or sheds load.
//!
//! Every echo server of one process shares the same changes, so tests use URIs of
//! their own.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{EchoBody, Response, result, send_event, sse_task, text_result};

/// A change, or the order to end every listen stream.
#[derive(Debug, Clone)]
enum Change {
    Notify(Value),
    EndAll,
}

fn hub() -> &'static broadcast::Sender<Change> {
    static HUB: OnceLock<broadcast::Sender<Change>> = OnceLock::new();
    HUB.get_or_init(|| broadcast::channel(256).0)
}

static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Listen streams open right now, in this process.
pub fn open_listens() -> usize {
    OPEN.load(Ordering::SeqCst)
}

/// Listen requests answered so far, in this process.
pub fn listens_opened() -> usize {
    OPENED.load(Ordering::SeqCst)
}

static OPENED: AtomicUsize = AtomicUsize::new(0);

struct Open;

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What one listen request opted in to.
#[derive(Debug, Default)]
struct OptedIn {
    list_changed: BTreeSet<&'static str>,
    uris: BTreeSet<String>,
}

impl OptedIn {
    fn of(message: &Value) -> Self {
        let asked = message.pointer("/params/notifications").cloned().unwrap_or_default();
        let mut opted = OptedIn::default();
        for (flag, kind) in [
            ("toolsListChanged", "tools"),
            ("promptsListChanged", "prompts"),
            ("resourcesListChanged", "resources"),
        ] {
            if asked.get(flag) == Some(&Value::Bool(true)) {
                opted.list_changed.insert(kind);
            }
        }
        if let Some(uris) = asked.get("resourceSubscriptions").and_then(Value::as_array) {
            opted.uris = uris.iter().filter_map(Value::as_str).map(str::to_owned).collect();
        }
        opted
    }

    fn accepted(&self) -> Value {
        let mut accepted = json!({});
        for kind in &self.list_changed {
            accepted[format!("{kind}ListChanged")] = Value::Bool(true);
        }
        if !self.uris.is_empty() {
            accepted["resourceSubscriptions"] = json!(self.uris);
        }
        accepted
    }

    fn wants(&self, note: &Value) -> bool {
        let method = note["method"].as_str().unwrap_or_default();
        match method.strip_prefix("notifications/") {
            Some("resources/updated") => note
                .pointer("/params/uri")
                .and_then(Value::as_str)
                .is_some_and(|uri| self.uris.contains(uri)),
            Some(rest) => rest
                .strip_suffix("/list_changed")
                .is_some_and(|kind| self.list_changed.contains(kind)),
            None => false,
        }
    }
}

/// Tag `note` with the subscription it goes out on.
fn tagged(mut note: Value, id: &Value) -> Value {
    note["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] = id.clone();
    note
}

/// Answer a `subscriptions/listen` request: the stream stays open until the client
/// drops it or `end_listens` is called.
pub(super) fn listen(id: Value, message: &Value) -> Response<EchoBody> {
    let opted = OptedIn::of(message);
    let mut changes = hub().subscribe();
    OPEN.fetch_add(1, Ordering::SeqCst);
    OPENED.fetch_add(1, Ordering::SeqCst);
    let open = Open;
    sse_task(move |tx| async move {
        let _open = open;
        let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": opted.accepted()}});
        if !send_event(&tx, &tagged(ack, &id)).await {
            return;
        }
        loop {
            // A client that drops the stream ends the subscription at once, not at the
            // next change.
            let change = tokio::select! {
                change = changes.recv() => change,
                () = tx.closed() => return,
            };
            match change {
                Ok(Change::Notify(note)) if opted.wants(&note) => {
                    if !send_event(&tx, &tagged(note, &id)).await {
                        return;
                    }
                }
                Ok(Change::Notify(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Ok(Change::EndAll) | Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        let done = json!({"resultType": "complete",
            "_meta": {"io.modelcontextprotocol/subscriptionId": id}});
        send_event(&tx, &result(id.clone(), done)).await;
    })
}

/// The tools that make changes, or `None` for another tool.
pub(super) fn trigger(name: &str, message: &Value) -> Option<Value> {
    let argument = |key: &str| {
        message
            .pointer(&format!("/params/arguments/{key}"))
            .and_then(Value::as_str)
    };
    let change = match name {
        "trigger_list_changed" => {
            let kind = argument("kind").unwrap_or("tools");
            if !["tools", "prompts", "resources"].contains(&kind) {
                return Some(json!({"content": [{"type": "text", "text": "unknown kind"}], "isError": true}));
            }
            Change::Notify(json!({"jsonrpc": "2.0", "method": format!("notifications/{kind}/list_changed")}))
        }
        "touch_resource" => {
            let uri = argument("uri").unwrap_or_default();
            Change::Notify(json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                "params": {"uri": uri}}))
        }
        "end_listens" => Change::EndAll,
        _ => return None,
    };
    let reached = hub().send(change).unwrap_or(0);
    Some(text_result(&format!("{reached} listen streams reached")))
}
