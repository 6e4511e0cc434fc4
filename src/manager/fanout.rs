//! One message to many sessions: every live session, or every session subscribed to a
//! resource, on every instance sharing the store.
//!
//! The walk is the store's [`list`](crate::store::SessionStore::list), which names each
//! session live throughout it exactly once, and each named session gets one append to
//! its standalone stream in the event log. So with shared backends one call on any
//! instance reaches every session once, wherever its `GET` stream is served; no
//! instance-to-instance messaging is involved.

use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinSet;

use super::SendError;
use crate::engine::Engine;
use crate::lifecycle::client_state::is_subscribed;
use crate::lifecycle::sessions::Walk;
use crate::session::SessionId;

/// Sessions asked for per page, and appends in flight at once.
const PAGE: usize = 128;

/// Which sessions a fan-out reaches.
#[derive(Clone)]
pub(super) enum Audience {
    /// Every live session.
    Everyone,
    /// The sessions whose client subscribed to this resource URI.
    Subscribers(Arc<str>),
}

/// Queue `message` once for each session of `audience`; how many got it. Stops at the
/// first store failure (sessions already reached keep the message).
pub(super) async fn fan_out(engine: &Arc<Engine>, audience: Audience, message: Bytes) -> Result<usize, SendError> {
    let mut walk = Walk::default();
    let mut sent = 0;
    while let Some(ids) = engine
        .sessions()
        .next_page(&mut walk, PAGE)
        .await
        .map_err(|_| SendError::Unavailable)?
    {
        let mut appends = JoinSet::new();
        for id in ids {
            appends.spawn(reach(Arc::clone(engine), audience.clone(), id, message.clone()));
        }
        while let Some(done) = appends.join_next().await {
            match done {
                Ok(Ok(true)) => sent += 1,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    appends.abort_all();
                    return Err(e);
                }
                // A panicking append is a bug elsewhere; the others still count.
                Err(_) => {}
            }
        }
    }
    Ok(sent)
}

/// Append `message` to `id`'s standalone stream if it is in `audience`; whether it was.
async fn reach(engine: Arc<Engine>, audience: Audience, id: SessionId, message: Bytes) -> Result<bool, SendError> {
    if let Audience::Subscribers(uri) = &audience {
        match is_subscribed(engine.sessions(), &id, uri).await {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(_) => return Err(SendError::Unavailable),
        }
    }
    match engine.outbound().push(&id, message).await {
        Ok(_) => Ok(true),
        Err(e) => Err(SendError::from_log(e)),
    }
}
