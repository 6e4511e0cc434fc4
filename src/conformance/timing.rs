//! The checks behind [`session_store`](super::session_store) that take real time: slots
//! lapsing, idle and lifetime expiry, `take_expired` and `idle_sessions`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, json};
use tokio::time::{Instant, sleep, sleep_until};

use super::store::{create, expect_gone, live, object, race, reserve_ok};
use super::{EPS, Handles, LONG, Late, SHORT, answer, expiry, failed, fresh_id, in_time, patiently, record, timed};
use crate::CloseReason;
use crate::session::SessionId;
use crate::store::{Replaced, StoreError};

/// The idle timeout of the timed checks.
const IDLE: Duration = Duration::from_millis(800);

/// How long after expiry `take_expired` may take to report a session.
const REPORT_WITHIN: Duration = Duration::from_secs(5);

/// An unused slot lapses after its hold; an expired session holds no place.
pub(super) async fn slot_lapse(h: Handles) {
    let h = &h;
    patiently(
        "a slot lapses after its hold; an expired session holds no place",
        || slot_lapse_once(h),
    )
    .await;
}

async fn slot_lapse_once(h: &Handles) -> Result<(), Late> {
    let hold = Duration::from_millis(400);
    let (first, w1) = timed(h.a.reserve(1, hold)).await;
    let first = match first {
        Ok(slot) => slot,
        Err(e) => failed("reserve", e),
    };
    let (second, w2) = timed(h.b.reserve(1, hold)).await;
    in_time(w2.end < w1.start + hold)?;
    ensure!(
        matches!(second, Err(StoreError::Full)),
        "a slot holds its place until it lapses",
        "{second:?}"
    );

    sleep_until(w1.end + hold + EPS).await;
    let promise = "a slot neither consumed nor cancelled lapses `hold` after reserve";
    let (third, w3) = timed(reserve_ok(&h.b, 1, hold, promise)).await;

    // A session created with the lapsed slot still takes a place: the cap counts sessions.
    let id = fresh_id("lapse");
    let (_, wc) = timed(create(&h.a, &id, &Map::new(), expiry(SHORT, LONG), Some(first))).await;
    let (over, w) = timed(h.b.reserve(2, hold)).await;
    in_time(w.end < wc.start + SHORT && w.end < w3.start + hold)?;
    let promise = "live sessions count toward the cap, also one created with a lapsed slot";
    ensure!(
        matches!(over, Err(StoreError::Full)),
        promise,
        "one session and one slot, reserve(cap 2) gave {over:?}"
    );
    answer("cancel", h.a.cancel(third).await);

    sleep_until(wc.end + SHORT + EPS).await;
    // An expired session may hold its place until it is taken (the engine takes expired
    // sessions when `reserve` says Full, so their ends are reported); once taken it holds
    // none.
    loop {
        let batch = answer("take_expired", h.a.take_expired(64).await);
        if !batch.more {
            break;
        }
    }
    let room = reserve_ok(
        &h.a,
        1,
        hold,
        "an expired session, once taken, holds no place toward the cap",
    )
    .await;
    answer("cancel", h.a.cancel(room).await);
    Ok(())
}

/// Refresh and touch extend idle expiry; plain reads and attribute writes do not.
pub(super) async fn activity(h: Handles) {
    let h = &h;
    patiently(
        "refresh and touch extend the idle expiry; reads and attribute writes do not",
        || activity_once(h),
    )
    .await;
}

async fn activity_once(h: &Handles) -> Result<(), Late> {
    let [refreshed, touched, read, written] = ["refreshed", "touched", "read", "written"].map(fresh_id);
    let start = Instant::now();
    for id in [&refreshed, &touched, &read, &written] {
        create(&h.a, id, &Map::new(), expiry(IDLE, LONG), None).await;
    }
    let base = Instant::now();

    sleep_until(base + IDLE / 2).await;
    let (found, wr) = timed(h.b.load(&refreshed, Some(IDLE))).await;
    let (was_live, wt) = timed(h.a.touch(&touched, IDLE)).await;
    let (plain, _) = timed(h.b.load(&read, None)).await;
    let (attrs, _) = timed(h.a.attributes(&written)).await;
    let (replaced, w) = timed(h.b.replace_attributes(&written, 0, &object(json!({"k": 1})))).await;
    in_time(w.end < start + IDLE)?;
    let promise = "a session is live until `idle` after its last activity";
    ensure!(
        answer("load", found).is_some(),
        promise,
        "load with refresh found no {refreshed}"
    );
    ensure!(answer("touch", was_live), promise, "touch returned false for {touched}");
    ensure!(answer("load", plain).is_some(), promise, "load found no {read}");
    ensure!(
        answer("attributes", attrs).is_some(),
        promise,
        "attributes found no {written}"
    );
    let replaced = answer("replace_attributes", replaced);
    ensure!(
        replaced == Replaced::Done,
        "replace_attributes with the stored version is Done",
        "{replaced:?}"
    );

    // Past the creation deadline, before the refreshed ones.
    sleep_until(base + IDLE + IDLE / 4).await;
    let (r_live, w1) = timed(live(&h.a, &refreshed)).await;
    let (t_live, w2) = timed(live(&h.b, &touched)).await;
    in_time(w1.end < wr.start + IDLE && w2.end < wt.start + IDLE)?;
    let promise = "load with a refresh pushes the idle expiry to `refresh` from now";
    ensure!(
        r_live,
        promise,
        "{refreshed} was gone `idle` after create although loaded with a refresh since"
    );
    ensure!(
        t_live,
        "touch pushes the idle expiry to `idle` from now",
        "{touched} was gone `idle` after create"
    );
    let promise = "load without a refresh changes nothing: the session still idles out `idle` after its last activity";
    expect_gone(&h.a, &read, promise).await;
    let promise = "replace_attributes does not change expiry, and reading attributes is not activity";
    expect_gone(&h.b, &written, promise).await;

    // The plain loads just made must not have extended the refreshed sessions either.
    sleep_until(wr.end.max(wt.end) + IDLE + EPS).await;
    let promise = "a session not active for `idle` is gone for every reader (a plain load is not activity)";
    expect_gone(&h.b, &refreshed, promise).await;
    expect_gone(&h.a, &touched, promise).await;
    Ok(())
}

/// The lifetime ends a session however busy it is.
pub(super) async fn lifetime(h: Handles) {
    let h = &h;
    patiently("the lifetime ends a session even if it is touched all the time", || {
        lifetime_once(h)
    })
    .await;
}

async fn lifetime_once(h: &Handles) -> Result<(), Late> {
    let idle = Duration::from_millis(400);
    let life = Duration::from_millis(1200);
    let id = fresh_id("lifetime");
    let (_, created) = timed(create(&h.a, &id, &Map::new(), expiry(idle, life), None)).await;
    let mut last = created;
    for round in 0usize.. {
        sleep(Duration::from_millis(100)).await;
        let store = h.by(round);
        let (found, w) = if round % 2 == 0 {
            timed(async { answer("touch", store.touch(&id, idle).await) }).await
        } else {
            timed(async { answer("load", store.load(&id, Some(idle)).await).is_some() }).await
        };
        if w.start > created.end + life + EPS {
            let promise = "the lifetime ends a session even if it is touched all the time";
            ensure!(!found, promise, "{id} was still live past its lifetime (round {round})");
            break;
        }
        if w.end < created.start + life {
            in_time(w.end < last.start + idle)?;
            ensure!(
                found,
                "a session kept active is live until its lifetime",
                "{id} gone in round {round}"
            );
            last = w;
        }
    }
    expect_gone(&h.b, &id, "a session past its lifetime is gone for every reader").await;
    Ok(())
}

/// Expired sessions are reported once, with their reason; deleted and live ones never.
pub(super) async fn take_expired(h: Handles) {
    let mut expected: HashMap<SessionId, &str> = HashMap::new();
    // Sessions take_expired must never report: deleted ones, and ones still live.
    let mut deleted: Vec<SessionId> = Vec::new();
    let mut kept: Vec<SessionId> = Vec::new();
    for _ in 0..7 {
        let id = fresh_id("idle");
        create(&h.a, &id, &Map::new(), expiry(SHORT, LONG), None).await;
        expected.insert(id, "idle");
    }
    for _ in 0..4 {
        let id = fresh_id("life");
        create(&h.b, &id, &Map::new(), expiry(LONG, Duration::from_millis(500)), None).await;
        expected.insert(id, "lifetime");
    }
    let [recreated, late_delete] = ["recreated", "late-delete"].map(fresh_id);
    for id in [&recreated, &late_delete] {
        create(&h.b, id, &Map::new(), expiry(SHORT, LONG), None).await;
        expected.insert(id.clone(), "idle");
    }
    for _ in 0..3 {
        let id = fresh_id("deleted");
        create(&h.a, &id, &Map::new(), expiry(SHORT, LONG), None).await;
        ensure!(
            answer("delete", h.b.delete(&id).await),
            "delete of a live session returns true",
            "false"
        );
        deleted.push(id);
    }
    for _ in 0..3 {
        let id = fresh_id("live");
        create(&h.b, &id, &Map::new(), expiry(LONG, LONG), None).await;
        kept.push(id);
    }
    let expired_at = Instant::now() + Duration::from_millis(500) + EPS;
    sleep_until(expired_at).await;

    let promise = "delete returns true only when the session was live";
    ensure!(
        !answer("delete", h.a.delete(&late_delete).await),
        promise,
        "true for expired {late_delete}"
    );
    let promise = "create succeeds when only an expired session has the id";
    let again =
        h.a.create(&record(&recreated), &Map::new(), expiry(LONG, LONG), None)
            .await;
    ensure!(
        again.is_ok(),
        promise,
        "create over expired {recreated} answered {again:?}"
    );
    kept.push(recreated.clone());

    const MAX: usize = 4;
    let mut reported: HashMap<SessionId, CloseReason> = HashMap::new();
    let once = "each expired session is reported by take_expired exactly once";
    loop {
        for calls in 1.. {
            let batch = answer("take_expired", h.by(calls).take_expired(MAX).await);
            let n = batch.sessions.len();
            ensure!(
                n <= MAX,
                "take_expired removes up to `max` sessions",
                "{n} with max {MAX}"
            );
            for gone in batch.sessions {
                let Some(kind) = expected.get(&gone.id) else {
                    let promise = "take_expired reports only sessions that expired and were not deleted";
                    broken!(promise, "it reported {gone:?}")
                };
                let right = match *kind {
                    "idle" => gone.reason == CloseReason::Idle,
                    _ => matches!(gone.reason, CloseReason::Lifetime | CloseReason::Idle),
                };
                let promise = "take_expired gives the reason: Idle for an idle expiry, Lifetime (or Idle when \
                               the backend cannot tell) for the lifetime";
                ensure!(right, promise, "{} ({kind}) reported as {:?}", gone.id, gone.reason);
                ensure!(
                    reported.insert(gone.id.clone(), gone.reason).is_none(),
                    once,
                    "{} twice",
                    gone.id
                );
            }
            if !batch.more {
                break;
            }
            ensure!(
                calls < 1000,
                "take_expired says `more` only while it may find more",
                "1000 calls in a row"
            );
        }
        if reported.len() == expected.len() {
            break;
        }
        if Instant::now() > expired_at + REPORT_WITHIN {
            let missing: Vec<_> = expected.keys().filter(|id| !reported.contains_key(*id)).collect();
            let promise = "take_expired reports every expired session (within 5 s of expiry, looping while `more`)";
            broken!(promise, "never reported: {missing:?}");
        }
        sleep(Duration::from_millis(100)).await;
    }
    let last = answer("take_expired", h.a.take_expired(MAX).await);
    ensure!(last.sessions.is_empty(), once, "reported again: {:?}", last.sessions);
    for id in &kept {
        ensure!(
            live(&h.a, id).await,
            "take_expired removes only expired sessions",
            "{id} is gone"
        );
    }
}

/// Two instances sweeping at once share the expired sessions out, each exactly once.
pub(super) async fn concurrent_sweeps(h: Handles) {
    const SESSIONS: usize = 30;
    let mut ids = HashSet::new();
    for i in 0..SESSIONS {
        let id = fresh_id("swept");
        create(h.by(i), &id, &Map::new(), expiry(SHORT, LONG), None).await;
        ids.insert(id);
    }
    let expired_at = Instant::now() + SHORT + EPS;
    sleep_until(expired_at).await;
    let total = Arc::new(AtomicUsize::new(0));
    let sweeps = race(&h, 2, |store, _| {
        let total = Arc::clone(&total);
        async move {
            let mut mine = Vec::new();
            while total.load(Ordering::Acquire) < SESSIONS && Instant::now() < expired_at + REPORT_WITHIN {
                let batch = answer("take_expired", store.take_expired(2).await);
                total.fetch_add(batch.sessions.len(), Ordering::AcqRel);
                let more = batch.more;
                mine.extend(batch.sessions.into_iter().map(|e| e.id));
                if !more {
                    sleep(Duration::from_millis(20)).await;
                }
            }
            mine
        }
    })
    .await;
    let mut seen = HashSet::new();
    let promise = "each expired session is reported exactly once across every instance sharing the backend";
    for id in sweeps.into_iter().flatten() {
        ensure!(ids.contains(&id), promise, "reported {id}, never created here");
        ensure!(
            seen.insert(id.clone()),
            promise,
            "{id} reported twice by two concurrent sweepers"
        );
    }
    let missing = ids.len() - seen.len();
    ensure!(
        missing == 0,
        promise,
        "{missing} of {SESSIONS} never reported within 5 s by two concurrent sweepers"
    );
}

/// A touch with a shorter idle timeout than before brings the expiry forward, for readers
/// and for `take_expired` alike (alone in its backend, so no other expiry hides a lapse).
pub(super) async fn shortened_idle(h: Handles) {
    let [shortened, kept] = ["shortened", "kept"].map(fresh_id);
    for id in [&shortened, &kept] {
        create(&h.a, id, &Map::new(), expiry(LONG, LONG), None).await;
    }
    let (found, w) = timed(h.b.touch(&shortened, SHORT)).await;
    ensure!(
        answer("touch", found),
        "touch of a live session returns true",
        "false for {shortened}"
    );
    sleep_until(w.end + SHORT + EPS).await;
    let promise = "touch pushes the idle expiry to `idle` from now, also when that is sooner than before";
    expect_gone(&h.a, &shortened, promise).await;
    let deadline = Instant::now() + REPORT_WITHIN;
    loop {
        let batch = answer("take_expired", h.by(0).take_expired(8).await);
        if let Some(gone) = batch.sessions.iter().find(|e| e.id == shortened) {
            let promise = "take_expired gives the reason: Idle for an idle expiry";
            ensure!(gone.reason == CloseReason::Idle, promise, "{gone:?}");
            break;
        }
        ensure!(
            batch.sessions.is_empty(),
            "take_expired reports only sessions that expired",
            "{batch:?}"
        );
        let promise = "take_expired reports every expired session (within 5 s of expiry), also one whose idle \
                       timeout a touch shortened";
        ensure!(Instant::now() < deadline, promise, "{shortened} never reported");
        sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        live(&h.b, &kept).await,
        "take_expired removes only expired sessions",
        "{kept} is gone"
    );
}

/// Idle sessions are listed least recently active first, bounded, without expired ones.
pub(super) async fn idle_sessions(h: Handles) {
    let h = &h;
    patiently(
        "idle_sessions lists live idle sessions, least recently active first",
        || async move {
            let ids = ["oldest", "middle", "newest", "expiring"].map(fresh_id);
            let outcome = idle_sessions_once(h, &ids).await;
            for id in &ids {
                answer("delete", h.a.delete(id).await);
            }
            outcome
        },
    )
    .await;
}

async fn idle_sessions_once(h: &Handles, ids: &[SessionId; 4]) -> Result<(), Late> {
    let [oldest, middle, newest, expiring] = ids;
    for id in [oldest, middle, newest] {
        create(&h.a, id, &Map::new(), expiry(LONG, LONG), None).await;
    }
    create(
        &h.b,
        expiring,
        &Map::new(),
        expiry(Duration::from_millis(250), LONG),
        None,
    )
    .await;
    let base = Instant::now();
    let step = Duration::from_millis(300);
    let mut windows = Vec::new();
    for (n, id) in [oldest, middle, newest].into_iter().enumerate() {
        sleep_until(base + step * (n as u32 + 1)).await;
        let (found, w) = timed(h.by(n).touch(id, LONG)).await;
        ensure!(
            answer("touch", found),
            "touch of a live session returns true",
            "false for {id}"
        );
        windows.push(w);
    }
    // Not activity: must not make the oldest look recent.
    answer("load", h.b.load(oldest, None).await);
    sleep_until(base + step * 4 + step / 2).await;
    let threshold = step * 2;
    let (listed, q) = timed(h.a.idle_sessions(threshold, 10)).await;
    let listed = match listed {
        Ok(listed) => listed,
        Err(StoreError::Unsupported) => return Ok(()),
        Err(e) => failed("idle_sessions", e),
    };
    in_time(windows[0].end < windows[1].start && windows[1].end < windows[2].start)?;
    in_time(q.start > windows[1].end + threshold + EPS && q.end + EPS < windows[2].start + threshold)?;
    let promise = "idle_sessions lists live sessions idle for at least `idle_for`, least recently active first";
    let want = vec![oldest.clone(), middle.clone()];
    ensure!(listed == want, promise, "{listed:?}, want {want:?}");
    let one = answer("idle_sessions", h.b.idle_sessions(threshold, 1).await);
    ensure!(
        one == want[..1],
        "idle_sessions lists at most `max` sessions, the oldest",
        "{one:?}"
    );
    let all = answer("idle_sessions", h.b.idle_sessions(Duration::ZERO, 10).await);
    let want = vec![oldest.clone(), middle.clone(), newest.clone()];
    ensure!(
        all == want,
        "idle_sessions never lists an expired session",
        "{all:?}, want {want:?}"
    );
    Ok(())
}
