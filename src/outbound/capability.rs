//! Which client capability a server → client request needs.
//!
//! A client answers only what it declared in `initialize`; sending anything else earns a
//! "method not found" at best and confuses it at worst, so the layer refuses such a
//! request before it leaves, and tells the handler which capability was missing.

use serde_json::Value;

/// The capability `method` with `params` needs that `declared` (the client's
/// `capabilities` object) lacks, spelled as a path (`"elicitation.url"`); `None` when
/// the request may be sent. Methods without a capability of their own (`ping`,
/// extensions) always may.
pub(crate) fn missing(method: &str, params: Option<&Value>, declared: Option<&Value>) -> Option<&'static str> {
    let has = |path: &[&str]| {
        let mut at = declared;
        for step in path {
            at = at.and_then(|v| v.get(step));
        }
        at.is_some_and(|v| !v.is_null())
    };
    let param = |name: &str| params.and_then(|p| p.get(name)).filter(|v| !v.is_null());
    match method {
        "sampling/createMessage" => {
            if !has(&["sampling"]) {
                Some("sampling")
            } else if (param("tools").is_some() || param("toolChoice").is_some()) && !has(&["sampling", "tools"]) {
                // Tool use in sampling came with 2025-11-25, behind its own flag.
                Some("sampling.tools")
            } else {
                None
            }
        }
        "elicitation/create" => {
            if !has(&["elicitation"]) {
                return Some("elicitation");
            }
            let url_mode = param("mode").and_then(Value::as_str) == Some("url");
            let declares_modes = has(&["elicitation", "form"]) || has(&["elicitation", "url"]);
            if url_mode && !has(&["elicitation", "url"]) {
                Some("elicitation.url")
            } else if !url_mode && declares_modes && !has(&["elicitation", "form"]) {
                // An empty `elicitation` object means form mode (the only mode before
                // 2025-11-25); one that names modes must name `form` for it.
                Some("elicitation.form")
            } else {
                None
            }
        }
        "roots/list" => (!has(&["roots"])).then_some("roots"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::missing;

    #[test]
    fn sampling_needs_its_capability_and_tools_their_flag() {
        let caps = json!({"sampling": {}});
        assert_eq!(missing("sampling/createMessage", None, None), Some("sampling"));
        assert_eq!(missing("sampling/createMessage", None, Some(&caps)), None);
        let with_tools = json!({"tools": [], "messages": []});
        assert_eq!(
            missing("sampling/createMessage", Some(&with_tools), Some(&caps)),
            Some("sampling.tools")
        );
        let caps = json!({"sampling": {"tools": {}}});
        assert_eq!(missing("sampling/createMessage", Some(&with_tools), Some(&caps)), None);
    }

    #[test]
    fn elicitation_modes() {
        let empty = json!({"elicitation": {}});
        let form = json!({"elicitation": {"form": {}}});
        let url = json!({"elicitation": {"url": {}}});
        let url_params = json!({"mode": "url", "url": "https://example.com", "message": "m", "elicitationId": "1"});
        let form_params = json!({"message": "m", "requestedSchema": {"type": "object"}});
        assert_eq!(
            missing("elicitation/create", Some(&form_params), None),
            Some("elicitation")
        );
        assert_eq!(missing("elicitation/create", Some(&form_params), Some(&empty)), None);
        assert_eq!(missing("elicitation/create", Some(&form_params), Some(&form)), None);
        assert_eq!(
            missing("elicitation/create", Some(&form_params), Some(&url)),
            Some("elicitation.form")
        );
        assert_eq!(
            missing("elicitation/create", Some(&url_params), Some(&empty)),
            Some("elicitation.url")
        );
        assert_eq!(missing("elicitation/create", Some(&url_params), Some(&url)), None);
    }

    #[test]
    fn roots_and_others() {
        assert_eq!(
            missing("roots/list", None, Some(&json!({"sampling": {}}))),
            Some("roots")
        );
        assert_eq!(
            missing("roots/list", None, Some(&json!({"roots": {"listChanged": true}}))),
            None
        );
        assert_eq!(missing("ping", None, None), None);
        assert_eq!(missing("x-vendor/thing", None, None), None);
        // A capability explicitly set to null is not declared.
        assert_eq!(
            missing("roots/list", None, Some(&json!({"roots": null}))),
            Some("roots")
        );
    }
}
