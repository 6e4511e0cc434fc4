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

/// What the layer learnt of the inner service's tools, by name.
#[derive(Debug, Default)]
pub(crate) struct ToolHeaders {
    tools: Mutex<HashMap<String, Arc<[ParamHeader]>>>,
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
            if params.is_empty() {
                known.remove(name);
                continue;
            }
            if known.len() >= MAX_TOOLS && !known.contains_key(name) {
                // Bounded: forget an arbitrary entry rather than grow.
                if let Some(evicted) = known.keys().next().cloned() {
                    known.remove(&evicted);
                }
            }
            known.insert(name.to_owned(), params.into());
        }
    }

    /// The annotated arguments of tool `name`, if it has any.
    pub(crate) fn of(&self, name: &str) -> Option<Arc<[ParamHeader]>> {
        self.tools.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
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
        assert!(tools.of("b").is_none());
        tools.learn(&json!({"tools": [{"name": "a", "inputSchema": {"type": "object"}}]}));
        assert!(tools.of("a").is_none(), "a tool that lost its annotations sends none");
        let many: Vec<Value> = (0..MAX_TOOLS + 10)
            .map(|i| json!({"name": format!("t{i}"), "inputSchema": schema()}))
            .collect();
        tools.learn(&json!({ "tools": many }));
        assert!(tools.tools.lock().unwrap().len() <= MAX_TOOLS);
    }
}
