//! The checks of [`SessionStore::idle_for`]: it counts from the last `create`, refreshing
//! `load` or `touch` and from nothing else, it is never more than the time that really
//! passed, and a session that is not live has none.
//!
//! Every bound here is on logical time, from the stamps of the steps: the backend did
//! each step somewhere inside its window, so the idle time it reports lies between the
//! end of the activity and the start of the question (less the slack `EPS`) and the
//! start of the activity and the end of the question (plus `EPS`).

use std::time::Duration;

use serde_json::{Map, json};
use tokio::time::sleep;

use super::store::{Store, create, object};
use super::{EPS, Handles, LONG, Late, SHORT, Window, answer, expiry, fresh_id, in_time, patiently, timed};
use crate::session::SessionId;

/// How long the checks leave a session alone.
const WAIT: Duration = Duration::from_millis(400);

/// A lifetime short enough that it, not the idle timeout, bounds the session's expiry
/// (a backend deriving idle time from a TTL capped by the lifetime is caught), yet long
/// enough to outlast every attempt.
const CAPPED_LIFETIME: Duration = Duration::from_secs(60);

pub(super) async fn last_activity(h: Handles) {
    let h = &h;
    patiently(
        "idle_for counts from the last create, refresh or touch, and never more than the time that passed",
        || last_activity_once(h),
    )
    .await;
    gone(h).await;
}

/// The idle time of `id` through `store`, which must find the session live.
async fn idle(store: &Store, id: &SessionId, promise: &str) -> (Duration, Window) {
    let (found, window) = timed(store.idle_for(id)).await;
    match answer("idle_for", found) {
        Some(idle) => (idle, window),
        None => broken!(promise, "idle_for found no live session {id}"),
    }
}

/// `seen` lies within what the windows of the last activity and of the question allow.
fn within(seen: Duration, activity: Window, question: Window, promise: &str, what: &str) {
    let most = question.end.duration_since(activity.start) + EPS;
    ensure!(
        seen <= most,
        promise,
        "{what}: idle_for said {seen:?}, but at most {most:?} had passed since the activity began"
    );
    let least = question
        .start
        .saturating_duration_since(activity.end)
        .saturating_sub(EPS);
    ensure!(
        seen >= least,
        promise,
        "{what}: idle_for said {seen:?}, but at least {least:?} had passed since the activity ended"
    );
}

async fn last_activity_once(h: &Handles) -> Result<(), Late> {
    let promise = "idle_for is the time since the session's last create, refreshing load or touch";
    let [plain, capped, refreshed, touched] = ["plain", "capped", "refreshed", "touched"].map(fresh_id);
    let (_, made_plain) = timed(create(&h.a, &plain, &Map::new(), expiry(LONG, LONG), None)).await;
    let (_, made_capped) = timed(create(&h.b, &capped, &Map::new(), expiry(LONG, CAPPED_LIFETIME), None)).await;
    create(&h.a, &refreshed, &Map::new(), expiry(LONG, LONG), None).await;
    create(&h.b, &touched, &Map::new(), expiry(LONG, LONG), None).await;

    // Fresh: about nothing, and never more than has passed.
    let (fresh, asked) = idle(&h.b, &plain, promise).await;
    within(fresh, made_plain, asked, promise, "right after create");

    sleep(WAIT).await;
    // Reads and attribute writes are not activity.
    answer("load", h.a.load(&plain, None).await);
    answer("attributes", h.b.attributes(&plain).await);
    answer(
        "replace_attributes",
        h.a.replace_attributes(&plain, 0, &object(json!({"k": 1}))).await,
    );
    let (grown, asked) = idle(&h.a, &plain, promise).await;
    within(
        grown,
        made_plain,
        asked,
        promise,
        "after a wait with reads and an attribute write",
    );
    ensure!(
        grown >= fresh,
        promise,
        "idle time went down from {fresh:?} to {grown:?} with no activity between"
    );
    let (aged, asked) = idle(&h.a, &capped, promise).await;
    within(
        aged,
        made_capped,
        asked,
        promise,
        "a session whose lifetime bounds its expiry",
    );

    // A refreshing load and a touch start the count again.
    let (found, loaded) = timed(h.b.load(&refreshed, Some(LONG))).await;
    ensure!(
        answer("load", found).is_some(),
        promise,
        "load with refresh found no {refreshed}"
    );
    let (was_live, touch) = timed(h.a.touch(&touched, LONG)).await;
    ensure!(answer("touch", was_live), promise, "touch returned false for {touched}");
    let (since_load, asked_load) = idle(&h.a, &refreshed, promise).await;
    let (since_touch, asked_touch) = idle(&h.b, &touched, promise).await;
    // Only an attempt whose questions came well before a wait's worth of time after the
    // activity tells a reset count from one that went on since create.
    in_time(
        asked_load.end.duration_since(loaded.start) + EPS < WAIT
            && asked_touch.end.duration_since(touch.start) + EPS < WAIT,
    )?;
    within(since_load, loaded, asked_load, promise, "after a refreshing load");
    within(since_touch, touch, asked_touch, promise, "after a touch");
    for id in [&plain, &capped, &refreshed, &touched] {
        answer("delete", h.a.delete(id).await);
    }
    Ok(())
}

/// Unknown, deleted and expired sessions have no idle time.
async fn gone(h: &Handles) {
    let promise = "idle_for is None for a session that is not live";
    let unknown = fresh_id("idle-unknown");
    let found = answer("idle_for", h.a.idle_for(&unknown).await);
    ensure!(found.is_none(), promise, "a session never created: {found:?}");

    let deleted = fresh_id("idle-deleted");
    create(&h.a, &deleted, &Map::new(), expiry(LONG, LONG), None).await;
    answer("delete", h.b.delete(&deleted).await);
    let found = answer("idle_for", h.a.idle_for(&deleted).await);
    ensure!(found.is_none(), promise, "a deleted session: {found:?}");

    let expired = fresh_id("idle-expired");
    create(&h.b, &expired, &Map::new(), expiry(SHORT, LONG), None).await;
    sleep(SHORT + EPS * 4).await;
    let found = answer("idle_for", h.a.idle_for(&expired).await);
    ensure!(found.is_none(), promise, "a session past its idle timeout: {found:?}");
}
