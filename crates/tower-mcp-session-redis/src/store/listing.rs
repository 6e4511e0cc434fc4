//! [`SessionStore::list`] for [`RedisSessionStore`](super::RedisSessionStore): pages of
//! the `{prefix}{%index}:ids` sorted set (members `<id> <dl>`, all scored 0) in byte
//! order, each member checked against its record so that only live sessions of the same
//! incarnation are listed.

use futures_util::future::join_all;
use tower_mcp_session::SessionId;
use tower_mcp_session::store::{SessionPage, StoreError};

use super::Inner;
#[cfg(doc)]
use tower_mcp_session::store::SessionStore;

/// The most sessions one [`list`](SessionStore::list) page holds, whatever `max` says.
const MAX_PAGE: usize = 1000;

/// A cursor longer than any this store gives (an id, a space, a deadline) was not
/// given by it.
const MAX_CURSOR: usize = 512;

impl Inner {
    pub(super) async fn list(&self, cursor: Option<&str>, max: usize) -> Result<SessionPage, StoreError> {
        let start = match cursor {
            None => "-".to_owned(),
            Some(after) if after.len() <= MAX_CURSOR => format!("({after}"),
            Some(_) => return Ok(SessionPage::default()),
        };
        let want = max.clamp(1, MAX_PAGE);
        let cmd = redis::cmd("ZRANGEBYLEX")
            .arg(&self.ids_key)
            .arg(start)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(want + 1)
            .to_owned();
        let mut members: Vec<String> = self.query(&cmd).await?;
        let next = (members.len() > want).then(|| members[want - 1].clone());
        members.truncate(want);
        // A member outlives its session until a sweep settles the expiry: only those
        // whose record of the same incarnation is still there are listed.
        let listed: Vec<(SessionId, String)> = members
            .iter()
            .filter_map(|m| {
                let (id, deadline) = m.rsplit_once(' ')?;
                Some((SessionId::parse(id)?, deadline.to_owned()))
            })
            .collect();
        let checks = join_all(listed.iter().map(|(id, deadline)| async move {
            let cmd = redis::cmd("HGET").arg(self.meta(id)).arg("dl").to_owned();
            let stored: Option<String> = self.query(&cmd).await?;
            Ok::<_, StoreError>(stored.as_deref() == Some(deadline.as_str()))
        }))
        .await;
        let mut sessions = Vec::with_capacity(listed.len());
        for ((id, _), live) in listed.into_iter().zip(checks) {
            if live? {
                sessions.push(id);
            }
        }
        Ok(SessionPage { sessions, next })
    }
}
