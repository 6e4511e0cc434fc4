//! [`SessionStore::take_expired`] for [`RedisSessionStore`](super::RedisSessionStore):
//! due members of the sessions index, each checked against its record on its
//! session's node, then settled in one script so each expiry is reported once.

use futures_util::future::join_all;
use tower_mcp_session::store::{Expired, ExpiredBatch, StoreError};
use tower_mcp_session::{CloseReason, SessionId};

use super::Inner;
use super::record::bad;
use super::scripts::{CHECK_SCRIPT, DUE_SCRIPT, SETTLE_SCRIPT};
#[cfg(doc)]
use tower_mcp_session::store::SessionStore;

/// The most index members one [`take_expired`](SessionStore::take_expired) call
/// checks, whatever `max` it is given.
const CHECK_BATCH: usize = 256;

/// What a check found about one due index member.
enum Verdict {
    Live { next_check: i64 },
    Deleted,
    Gone { reason: CloseReason },
}

/// A due member, `<dl>:<id>`, with its parts.
struct Due {
    member: String,
    deadline: String,
    id: Option<SessionId>,
}

impl Due {
    fn parse(member: String) -> Self {
        let (deadline, id) = member
            .split_once(':')
            .map_or((String::new(), None), |(dl, id)| (dl.to_owned(), SessionId::parse(id)));
        Self { member, deadline, id }
    }
}

impl Inner {
    async fn check(&self, due: &Due) -> Result<Verdict, StoreError> {
        let Some(id) = &due.id else {
            // Not a member this store wrote: nothing to report.
            return Ok(Verdict::Deleted);
        };
        let mut inv = CHECK_SCRIPT.prepare_invoke();
        inv.key(self.meta(id)).key(self.tombstone(id)).arg(&due.deadline);
        let reply: Vec<i64> = self.run(&inv).await?;
        let &[state, now, expires_at] = reply.as_slice() else {
            return Err(bad("check"));
        };
        Ok(match state {
            1 => Verdict::Live { next_check: expires_at },
            2 => Verdict::Deleted,
            _ => {
                let deadline: i64 = due.deadline.parse().unwrap_or(i64::MAX);
                let reason = if now >= deadline {
                    CloseReason::Lifetime
                } else {
                    CloseReason::Idle
                };
                Verdict::Gone { reason }
            }
        })
    }

    pub(super) async fn take_expired(&self, max: usize) -> Result<ExpiredBatch, StoreError> {
        let batch = max.min(CHECK_BATCH);
        if batch == 0 {
            return Ok(ExpiredBatch::default());
        }
        let mut inv = DUE_SCRIPT.prepare_invoke();
        inv.key(&self.sessions_key).key(&self.slots_key).arg(batch);
        let members: Vec<String> = self.run(&inv).await?;
        if members.is_empty() {
            return Ok(ExpiredBatch::default());
        }
        let more = members.len() == batch;
        let due: Vec<Due> = members.into_iter().map(Due::parse).collect();
        // Concurrently: over the multiplexed connection these go out pipelined, each to
        // its session's node.
        let verdicts = join_all(due.iter().map(|d| self.check(d))).await;
        let mut settle = SETTLE_SCRIPT.prepare_invoke();
        settle.key(&self.sessions_key).key(&self.ids_key);
        let mut reasons = Vec::new();
        let mut first_error = None;
        for (d, verdict) in due.iter().zip(verdicts) {
            match verdict {
                Ok(Verdict::Live { next_check }) => settle.arg(&d.member).arg("l").arg(next_check),
                Ok(Verdict::Deleted) => settle.arg(&d.member).arg("d").arg(0),
                Ok(Verdict::Gone { reason }) => {
                    reasons.push((d.member.as_str(), reason));
                    settle.arg(&d.member).arg("g").arg(0)
                }
                // Left as it is: the next call checks it again.
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
        }
        let removed: Vec<String> = self.run(&settle).await?;
        if removed.is_empty()
            && let Some(e) = first_error
        {
            return Err(e);
        }
        let sessions = removed
            .iter()
            .filter_map(|member| {
                let (_, reason) = reasons.iter().find(|(m, _)| *m == member)?;
                let id = due.iter().find(|d| &d.member == member)?.id.clone()?;
                Some(Expired { id, reason: *reason })
            })
            .collect();
        Ok(ExpiredBatch { sessions, more })
    }
}
