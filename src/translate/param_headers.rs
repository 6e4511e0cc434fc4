//! `Mcp-Param-*` headers of a translated `tools/call`. A 2026-07-28 tool may mark
//! arguments with `x-mcp-header` in its input schema (on a property, or nested along
//! `properties` only); a client must then repeat each such argument in the header
//! `Mcp-Param-<name>`, and a server may refuse a call without it. A 2025-era client
//! knows nothing of this, so the layer, which is the 2026-07-28 client here, learns the
//! annotations from the `tools/list` answers it translates and adds the headers.
//!
//! Values are the argument's JSON primitive as text (a string as it is, a number or a
//! boolean as written), in the same encoding as `Mcp-Name`; an argument that is
//! missing or not a primitive gets no header.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use serde_json::Value;

use super::header::name_value;

/// How many tools' annotations are kept (a server with more is unusual; past the
/// bound, the oldest learnt are forgotten and their calls go without headers).
const MAX_TOOLS: usize = 4096;
/// Annotations per tool, and nesting depth followed.
const MAX_PER_TOOL: usize = 32;
const MAX_DEPTH: usize = 8;

/// One annotated argument: its path from the arguments' root, and the header name
/// suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParamHeader {
    path: Vec<String>,
    header: HeaderName,
}

/// The annotated arguments in `input_schema`, outermost first. Annotations that are
/// not a string naming a valid header are ignored.
pub(crate) fn annotations(input_schema: &Value) -> Vec<ParamHeader> {
    let mut found = Vec::new();
    walk(input_schema, &mut Vec::new(), &mut found);
    found
}

fn walk(schema: &Value, path: &mut Vec<String>, found: &mut Vec<ParamHeader>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    if path.len() >= MAX_DEPTH {
        return;
    }
    for (name, property) in properties {
        if found.len() >= MAX_PER_TOOL {
            return;
        }
        path.push(name.clone());
        if let Some(header) = property.get("x-mcp-header").and_then(Value::as_str)
            && let Ok(header) = HeaderName::try_from(format!("mcp-param-{header}"))
            && !header.as_str().ends_with('-')
        {
            found.push(ParamHeader {
                path: path.clone(),
                header,
            });
        }
        walk(property, path, found);
        path.pop();
    }
}

/// The headers for a call with `arguments` to a tool annotated with `params`.
pub(crate) fn headers_for(params: &[ParamHeader], arguments: Option<&Value>) -> Vec<(HeaderName, HeaderValue)> {
    let Some(arguments) = arguments else {
        return Vec::new();
    };
    params
        .iter()
        .filter_map(|param| {
            let value = param.path.iter().try_fold(arguments, |at, key| at.get(key))?;
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((param.header.clone(), name_value(&text)))
        })
        .collect()
}

/// What the layer learnt of the inner service's tools, by name: each listed tool's
/// annotated arguments (none for most), so that a tool unknown here can be told from
/// one known to need no headers.
#[derive(Debug, Default)]
pub(crate) struct ToolHeaders {
    tools: Mutex<HashMap<String, Arc<[ParamHeader]>>>,
    /// When the layer last asked the inner service for its tools itself; held while it
    /// asks, so that concurrent calls to unknown tools wait for one answer.
    asked: tokio::sync::Mutex<Option<Instant>>,
}

/// How long after asking the inner service for its tools the layer asks again for a
/// call to a tool it still does not know (a client calling a tool that does not exist
/// costs one `tools/list` per this interval, however often it calls).
pub(crate) const ASK_AGAIN_AFTER: Duration = Duration::from_secs(30);

/// What a call to an unknown tool may do: ask the inner service for its tools (the
/// permit is held while it asks), or go on with what is known.
pub(crate) enum Ask<'a> {
    /// Nobody asked recently: ask, then [`done`](AskPermit::done).
    Now(AskPermit<'a>),
    /// Asked within [`ASK_AGAIN_AFTER`] (or just now, by a call this one waited for).
    Recently,
}

/// The right to ask the inner service for its tools, held while asking.
pub(crate) struct AskPermit<'a>(tokio::sync::MutexGuard<'a, Option<Instant>>);

impl AskPermit<'_> {
    /// The asking is over (answered or not): the next may come after
    /// [`ASK_AGAIN_AFTER`].
    pub(crate) fn done(mut self) {
        *self.0 = Some(Instant::now());
    }
}

impl ToolHeaders {
    /// Learn from a `tools/list` result (modern or legacy shape: `tools` is the same).
    pub(crate) fn learn(&self, result: &Value) {
        let Some(tools) = result.get("tools").and_then(Value::as_array) else {
            return;
        };
        let mut known = self.tools.lock().unwrap_or_else(|e| e.into_inner());
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            let params = tool.get("inputSchema").map(annotations).unwrap_or_default();
            if known.len() >= MAX_TOOLS && !known.contains_key(name) {
                // Bounded: forget an arbitrary entry rather than grow.
                if let Some(evicted) = known.keys().next().cloned() {
                    known.remove(&evicted);
                }
            }
            known.insert(name.to_owned(), params.into());
        }
    }

    /// The annotated arguments of tool `name` (empty for a tool that has none), or
    /// `None` for a tool not listed through this instance.
    pub(crate) fn of(&self, name: &str) -> Option<Arc<[ParamHeader]>> {
        self.tools.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// May a call to a tool unknown here ask the inner service for its tools? Waits
    /// while another call asks.
    pub(crate) async fn may_ask(&self) -> Ask<'_> {
        let asked = self.asked.lock().await;
        match *asked {
            Some(at) if at.elapsed() < ASK_AGAIN_AFTER => Ask::Recently,
            _ => Ask::Now(AskPermit(asked)),
        }
    }

    /// The tools may have changed (`notifications/tools/list_changed`): the next call
    /// to an unknown tool asks at once.
    pub(crate) fn changed(&self) {
        if let Ok(mut asked) = self.asked.try_lock() {
            *asked = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "limit": {"type": "integer", "x-mcp-header": "Limit"},
            "plain": {"type": "string"},
            "bad": {"type": "string", "x-mcp-header": "no spaces allowed"},
            "notext": {"type": "string", "x-mcp-header": 5},
            "nested": {"type": "object", "properties": {
                "tenant": {"type": "string", "x-mcp-header": "Tenant"}}},
        }})
    }

    #[test]
    fn annotated_arguments_become_headers() {
        let params = annotations(&schema());
        let mut names: Vec<&str> = params.iter().map(|p| p.header.as_str()).collect();
        names.sort();
        assert_eq!(names, ["mcp-param-limit", "mcp-param-region", "mcp-param-tenant"]);
        let args = json!({"region": "eu-west", "limit": 10, "plain": "x",
            "nested": {"tenant": "Zürich"}});
        let headers = headers_for(&params, Some(&args));
        let mut got: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("mcp-param-limit", "10"),
                ("mcp-param-region", "eu-west"),
                ("mcp-param-tenant", "=?base64?WsO8cmljaA==?="),
            ]
        );
        assert!(
            headers_for(&params, Some(&json!({"region": ["a"]}))).is_empty(),
            "not a primitive"
        );
        assert!(headers_for(&params, None).is_empty());
    }

    #[test]
    fn what_is_learnt_is_bounded_and_follows_the_list() {
        let tools = ToolHeaders::default();
        tools.learn(&json!({"tools": [
            {"name": "a", "inputSchema": schema()},
            {"name": "b", "inputSchema": {"type": "object"}},
        ]}));
        assert_eq!(tools.of("a").map(|p| p.len()), Some(3));
        assert_eq!(tools.of("b").map(|p| p.len()), Some(0), "known, with no headers");
        assert!(tools.of("c").is_none(), "unknown");
        tools.learn(&json!({"tools": [{"name": "a", "inputSchema": {"type": "object"}}]}));
        assert_eq!(
            tools.of("a").map(|p| p.len()),
            Some(0),
            "a tool that lost its annotations sends none"
        );
        let many: Vec<Value> = (0..MAX_TOOLS + 10)
            .map(|i| json!({"name": format!("t{i}"), "inputSchema": schema()}))
            .collect();
        tools.learn(&json!({ "tools": many }));
        assert!(tools.tools.lock().unwrap().len() <= MAX_TOOLS);
    }

    #[tokio::test]
    async fn asking_for_the_tools_is_one_at_a_time_and_not_again_soon() {
        let tools = ToolHeaders::default();
        let Ask::Now(permit) = tools.may_ask().await else {
            panic!("nobody asked yet");
        };
        let waiting = tools.may_ask();
        let mut waiting = std::pin::pin!(waiting);
        assert!(
            futures_poll_once(waiting.as_mut()).is_none(),
            "a second caller waits while the first asks"
        );
        permit.done();
        assert!(matches!(waiting.await, Ask::Recently), "and then uses its answer");
        assert!(matches!(tools.may_ask().await, Ask::Recently));
        tools.changed();
        assert!(
            matches!(tools.may_ask().await, Ask::Now(_)),
            "a change asks again at once"
        );
    }

    /// Poll a future once, without a runtime's help.
    fn futures_poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        match f.poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        }
    }
}
