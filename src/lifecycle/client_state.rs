//! What the layer itself remembers of a session on the client's behalf: resource
//! subscriptions (`resources/subscribe` / `resources/unsubscribe`) and the log level
//! (`logging/setLevel`). Both live in the session's attributes, under keys with the
//! reserved `mcp:` prefix, so every instance sharing the store sees them and the
//! attribute bounds bound them.

use serde_json::Value;

use super::SessionError;
use super::sessions::Sessions;
use crate::session::SessionId;

/// The attribute holding the session's subscribed resource URIs, as a JSON array.
pub(crate) const SUBSCRIPTIONS: &str = "mcp:subscriptions";
/// The attribute holding the level from the client's last `logging/setLevel`.
pub(crate) const LOG_LEVEL: &str = "mcp:logLevel";

/// The URIs in a subscriptions attribute.
pub(crate) fn uris(value: Option<&Value>) -> impl Iterator<Item = &str> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Record that the client subscribed to (or, with `subscribed` false, unsubscribed
/// from) `uri`.
pub(crate) async fn set_subscription(
    sessions: &Sessions,
    id: &SessionId,
    uri: &str,
    subscribed: bool,
) -> Result<(), SessionError> {
    sessions
        .update_attribute(id, SUBSCRIPTIONS, |current| {
            let has = uris(current).any(|u| u == uri);
            if has == subscribed {
                return None;
            }
            let mut next: Vec<Value> = uris(current)
                .filter(|u| *u != uri)
                .map(|u| Value::String(u.to_owned()))
                .collect();
            if subscribed {
                next.push(Value::String(uri.to_owned()));
            }
            Some(if next.is_empty() {
                Value::Null
            } else {
                Value::Array(next)
            })
        })
        .await
}

/// Record the client's log level.
pub(crate) async fn set_log_level(sessions: &Sessions, id: &SessionId, level: &str) -> Result<(), SessionError> {
    sessions
        .update_attribute(id, LOG_LEVEL, |current| {
            (current.and_then(Value::as_str) != Some(level)).then(|| Value::String(level.to_owned()))
        })
        .await
}

/// Whether the client of `id` is subscribed to `uri`; `false` when there is no session.
pub(crate) async fn is_subscribed(sessions: &Sessions, id: &SessionId, uri: &str) -> Result<bool, SessionError> {
    let current = sessions.attribute(id, SUBSCRIPTIONS).await?;
    Ok(uris(current.as_ref()).any(|u| u == uri))
}
