//! The checks of [`SessionStore::list`]: a walk lists every live session once, pages
//! respect `max`, ended sessions stay out, and cursors from callers never fail.

use std::collections::{BTreeSet, HashMap};

use serde_json::Map;
use tokio::time::sleep;

use super::store::{Store, create};
use super::{EPS, Handles, LONG, SHORT, answer, expiry, fresh_id};
use crate::session::SessionId;
use crate::store::SessionPage;

/// No walk in these checks needs more pages than this; a backend whose cursor does not
/// advance is caught here instead of looping forever.
const PAGE_LIMIT: usize = 1000;

/// Walk every page with `max` per page, alternating handles; every id with how often it
/// came up.
async fn walk(h: &Handles, max: usize, promise: &str) -> HashMap<SessionId, usize> {
    let mut seen = HashMap::new();
    let mut cursor: Option<String> = None;
    for page in 0..PAGE_LIMIT {
        let store: &Store = h.by(page);
        let SessionPage { sessions, next } = answer("list", store.list(cursor.as_deref(), max).await);
        ensure!(
            sessions.len() <= max.max(1),
            promise,
            "list(max {max}) gave a page of {} sessions",
            sessions.len()
        );
        for id in sessions {
            *seen.entry(id).or_insert(0) += 1;
        }
        match next {
            Some(next) => cursor = Some(next),
            None => return seen,
        }
    }
    broken!(promise, "a walk with max {max} did not end after {PAGE_LIMIT} pages")
}

pub(super) async fn list(h: Handles) {
    let promise = "a walk of `list` from the first page until `next` is None lists every session live for the \
                   whole walk exactly once, and never one that ended before it";
    let empty = walk(&h, 10, promise).await;
    ensure!(empty.is_empty(), promise, "an empty store listed {:?}", empty.keys());

    let live: BTreeSet<SessionId> = (0..23).map(|i| fresh_id(&format!("list{i}"))).collect();
    for (i, id) in live.iter().enumerate() {
        create(h.by(i), id, &Map::new(), expiry(LONG, LONG), None).await;
    }
    let deleted = fresh_id("list-deleted");
    create(&h.a, &deleted, &Map::new(), expiry(LONG, LONG), None).await;
    answer("delete", h.b.delete(&deleted).await);
    let expired = fresh_id("list-expired");
    create(&h.a, &expired, &Map::new(), expiry(SHORT, LONG), None).await;
    sleep(SHORT + EPS * 4).await;

    for max in [0, 1, 4, 23, 100] {
        let seen = walk(&h, max, promise).await;
        for id in &live {
            let times = seen.get(id).copied().unwrap_or(0);
            ensure!(
                times == 1,
                promise,
                "with max {max}, live session {id} was listed {times} times"
            );
        }
        ensure!(
            !seen.contains_key(&deleted),
            promise,
            "with max {max}, a deleted session was listed"
        );
        ensure!(
            !seen.contains_key(&expired),
            promise,
            "with max {max}, an expired session was listed"
        );
        let strangers: Vec<_> = seen.keys().filter(|id| !live.contains(*id)).collect();
        ensure!(
            strangers.is_empty(),
            promise,
            "with max {max}, listed sessions never created: {strangers:?}"
        );
    }

    // Sessions come and go while a walk is under way: the ones live throughout are
    // listed once, the others at most once.
    let promise_churn = "sessions created or ended during a walk of `list` are listed at most once, and the \
                         ones live for the whole walk exactly once";
    let doomed: Vec<SessionId> = live.iter().step_by(3).cloned().collect();
    let mut seen: HashMap<SessionId, usize> = HashMap::new();
    let mut cursor: Option<String> = None;
    let mut born = Vec::new();
    for page in 0..PAGE_LIMIT {
        if page < doomed.len() {
            answer("delete", h.by(page).delete(&doomed[page]).await);
            let newcomer = fresh_id(&format!("list-new{page}"));
            create(h.by(page + 1), &newcomer, &Map::new(), expiry(LONG, LONG), None).await;
            born.push(newcomer);
        }
        let SessionPage { sessions, next } = answer("list", h.by(page).list(cursor.as_deref(), 2).await);
        for id in sessions {
            *seen.entry(id).or_insert(0) += 1;
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        ensure!(
            page + 1 < PAGE_LIMIT,
            promise_churn,
            "the walk did not end after {PAGE_LIMIT} pages"
        );
    }
    for id in &live {
        let times = seen.get(id).copied().unwrap_or(0);
        if doomed.contains(id) {
            ensure!(
                times <= 1,
                promise_churn,
                "session {id}, deleted during the walk, was listed {times} times"
            );
        } else {
            ensure!(
                times == 1,
                promise_churn,
                "session {id}, live throughout, was listed {times} times"
            );
        }
    }
    for id in &born {
        let times = seen.get(id).copied().unwrap_or(0);
        ensure!(
            times <= 1,
            promise_churn,
            "session {id}, created during the walk, was listed {times} times"
        );
    }

    let promise_cursor = "`list` answers a cursor it never gave with a page, never an error";
    for junk in [
        "",
        " ",
        "(",
        "[",
        "-",
        "+",
        "\u{0}\u{7f}",
        "zzzz",
        "é",
        &"x".repeat(10_000),
    ] {
        let page = h.a.list(Some(junk), 5).await;
        ensure!(
            page.is_ok(),
            promise_cursor,
            "cursor {:?}… answered {page:?}",
            junk.get(..20).unwrap_or(junk)
        );
    }
}
