//! The checks behind [`session_store`](super::session_store): one group per promise area,
//! each on a backend of its own, all running at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::time::{Instant, sleep, sleep_until};

use super::{EPS, Handles, LONG, Late, answer, expiry, failed, fresh_id, in_time, patiently, record, timed};
use crate::CloseReason;
use crate::session::SessionId;
use crate::store::{Attributes, Expiry, Replaced, SessionStore, Slot, StoreError};

/// Store handles as the checks pass them around.
type Store = Arc<dyn SessionStore>;

/// The idle timeout of the timed checks.
const IDLE: Duration = Duration::from_millis(800);

/// A short idle timeout, for sessions meant to expire.
const SHORT: Duration = Duration::from_millis(300);

/// How long after expiry `take_expired` may take to report a session.
const REPORT_WITHIN: Duration = Duration::from_secs(5);

pub(super) async fn run<M, MF>(make: M)
where
    M: Fn() -> MF,
    MF: Future<Output = Handles>,
{
    tokio::join!(
        async { cap(make().await).await },
        async { slot_lapse(make().await).await },
        async { create_and_load(make().await).await },
        async { activity(make().await).await },
        async { lifetime(make().await).await },
        async { delete(make().await).await },
        async { attributes(make().await).await },
        async { take_expired(make().await).await },
        async { concurrent_sweeps(make().await).await },
        async { shortened_idle(make().await).await },
        async { idle_sessions(make().await).await },
    );
}

/// Run `n` calls at once as tasks, spread over both handles; their answers in order.
async fn race<T, F, Fut>(h: &Handles, n: usize, call: F) -> Vec<T>
where
    F: Fn(Store, usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(call(Arc::clone(h.by(i)), i))).collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        match task.await {
            Ok(answer) => answers.push(answer),
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("SessionStore conformance: a concurrent call did not finish: {e}"),
            },
        }
    }
    answers
}

async fn create(store: &Store, id: &SessionId, attributes: &Map<String, Value>, expiry: Expiry, slot: Option<Slot>) {
    answer("create", store.create(&record(id), attributes, expiry, slot).await);
}

async fn reserve_ok(store: &Store, cap: usize, hold: Duration, promise: &str) -> Slot {
    match store.reserve(cap, hold).await {
        Ok(slot) => slot,
        Err(StoreError::Full) => broken!(promise, "reserve(cap {cap}) answered Full"),
        Err(e) => failed("reserve", e),
    }
}

async fn reserve_full(store: &Store, cap: usize, promise: &str) {
    match store.reserve(cap, LONG).await {
        Err(StoreError::Full) => {}
        Ok(slot) => broken!(promise, "reserve(cap {cap}) gave slot {slot:?}"),
        Err(e) => failed("reserve", e),
    }
}

fn live(store: &Store, id: &SessionId) -> impl Future<Output = bool> {
    let (store, id) = (Arc::clone(store), id.clone());
    async move { answer("load", store.load(&id, None).await).is_some() }
}

/// Every reader finds no session `id`, and none of them brings it back.
async fn expect_gone(store: &Store, id: &SessionId, promise: &str) {
    let seen = [
        ("load", answer("load", store.load(id, None).await).is_some()),
        ("load with refresh", answer("load", store.load(id, Some(LONG)).await).is_some()),
        ("touch", answer("touch", store.touch(id, LONG).await)),
        ("attributes", answer("attributes", store.attributes(id).await).is_some()),
        (
            "replace_attributes",
            answer("replace_attributes", store.replace_attributes(id, 0, &Map::new()).await) != Replaced::Missing,
        ),
        ("delete", answer("delete", store.delete(id).await)),
        ("load after all that", answer("load", store.load(id, None).await).is_some()),
    ];
    for (step, found) in seen {
        ensure!(!found, promise, "`{step}` still found session {id}");
    }
}

/// `reserve` is exact under concurrency; cancel gives places back; sessions hold them.
async fn cap(h: Handles) {
    const CAP: usize = 5;
    const CALLERS: usize = 40;
    let exact = "reserve succeeds only while live sessions plus outstanding slots number fewer than cap, \
                 atomically with every other reserve (across instances)";
    let answers = race(&h, CALLERS, |store, _| async move { store.reserve(CAP, LONG).await }).await;
    let mut slots = Vec::new();
    for answer in answers {
        match answer {
            Ok(slot) => slots.push(slot),
            Err(StoreError::Full) => {}
            Err(e) => failed("reserve", e),
        }
    }
    ensure!(slots.len() == CAP, exact, "{CALLERS} concurrent reserves against cap {CAP} took {} slots", slots.len());
    reserve_full(&h.a, CAP, exact).await;

    answer("cancel", h.a.cancel(slots[0]).await);
    let back = reserve_ok(&h.b, CAP, LONG, "cancel gives the slot's place back").await;
    reserve_full(&h.a, CAP, "cancel gives back exactly one place").await;
    answer("cancel", h.b.cancel(slots[0]).await);
    reserve_full(&h.a, CAP, "cancelling a slot that was cancelled already does nothing").await;

    let id = fresh_id("cap");
    create(&h.a, &id, &Map::new(), expiry(LONG, LONG), Some(slots[1])).await;
    reserve_full(&h.b, CAP, "create consumes the slot: the session holds its place toward the cap").await;
    answer("cancel", h.b.cancel(slots[1]).await);
    reserve_full(&h.a, CAP, "cancelling a consumed slot does nothing").await;
    ensure!(answer("delete", h.b.delete(&id).await), "delete of a live session returns true", "false for {id}");
    let freed = reserve_ok(&h.a, CAP, LONG, "delete frees the session's place toward the cap").await;

    for slot in [slots[2], slots[3], slots[4], back, freed] {
        answer("cancel", h.a.cancel(slot).await);
    }
    let ids: Vec<SessionId> = (0..3).map(|_| fresh_id("cap")).collect();
    for id in &ids {
        create(&h.a, id, &Map::new(), expiry(LONG, LONG), None).await;
    }
    reserve_full(&h.b, 3, "live sessions count toward the cap, also those created without a slot").await;
    let one = reserve_ok(&h.b, 4, LONG, "reserve succeeds while live sessions plus slots are below cap").await;
    // Three sessions and one slot against a cap of six: room for exactly two more.
    let answers = race(&h, CALLERS, |store, _| async move { store.reserve(6, LONG).await.is_ok() }).await;
    let taken = answers.iter().filter(|ok| **ok).count();
    ensure!(taken == 2, exact, "with 3 sessions and 1 slot, {CALLERS} concurrent reserves against cap 6 took {taken}");
    answer("cancel", h.a.cancel(one).await);
}

/// An unused slot lapses after its hold; an expired session holds no place.
async fn slot_lapse(h: Handles) {
    let h = &h;
    patiently("a slot lapses after its hold; an expired session holds no place", || slot_lapse_once(h)).await;
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
    ensure!(matches!(second, Err(StoreError::Full)), "a slot holds its place until it lapses", "{second:?}");

    sleep_until(w1.end + hold + EPS).await;
    let promise = "a slot neither consumed nor cancelled lapses `hold` after reserve";
    let (third, w3) = timed(reserve_ok(&h.b, 1, hold, promise)).await;

    // A session created with the lapsed slot still takes a place: the cap counts sessions.
    let id = fresh_id("lapse");
    let (_, wc) = timed(create(&h.a, &id, &Map::new(), expiry(SHORT, LONG), Some(first))).await;
    let (over, w) = timed(h.b.reserve(2, hold)).await;
    in_time(w.end < wc.start + SHORT && w.end < w3.start + hold)?;
    let promise = "live sessions count toward the cap, also one created with a lapsed slot";
    ensure!(matches!(over, Err(StoreError::Full)), promise, "one session and one slot, reserve(cap 2) gave {over:?}");
    answer("cancel", h.a.cancel(third).await);

    sleep_until(wc.end + SHORT + EPS).await;
    let room = reserve_ok(&h.a, 1, hold, "an expired session holds no place toward the cap, taken or not").await;
    answer("cancel", h.a.cancel(room).await);
    Ok(())
}

/// What `create` stores, `Exists` writing nothing, and answers for unknown ids.
async fn create_and_load(h: Handles) {
    let id = fresh_id("create");
    let mine = record(&id);
    let attrs = object(json!({"k": "v", "n": [1, 2, 3]}));
    answer("create", h.a.create(&mine, &attrs, expiry(LONG, LONG), None).await);

    let stored = "load returns the record create stored";
    let Some(found) = answer("load", h.b.load(&id, None).await) else {
        broken!(stored, "load found no session {id} right after create")
    };
    ensure!(found.id() == &id, stored, "id {:?}", found.id());
    ensure!(found.protocol_version() == mine.protocol_version(), stored, "{:?}", found.protocol_version());
    ensure!(found.principal() == mine.principal(), stored, "principal {:?}", found.principal());
    let json = |raw: Option<&serde_json::value::RawValue>| raw.map(|r| serde_json::from_str::<Value>(r.get()).ok());
    ensure!(json(found.client_info()) == json(mine.client_info()), stored, "clientInfo {:?}", found.client_info());
    ensure!(
        json(found.client_capabilities()) == json(mine.client_capabilities()),
        stored,
        "capabilities {:?}",
        found.client_capabilities()
    );
    let drift = match found.created_at().duration_since(mine.created_at()) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    ensure!(drift < Duration::from_millis(1), stored, "created_at off by {drift:?}");
    let initial = Attributes { map: attrs.clone(), version: 0 };
    let seen = answer("attributes", h.a.attributes(&id).await);
    ensure!(seen.as_ref() == Some(&initial), "create stores the attributes at version 0", "{seen:?}");

    let exists = "create of an id a live session has fails with Exists, writing nothing";
    let slot = reserve_ok(&h.b, 2, LONG, "reserve succeeds while live sessions plus slots are below cap").await;
    let other = crate::SessionRecord::new(id.clone(), crate::ProtocolVersion::V2025_03_26);
    let again = h.b.create(&other, &object(json!({"other": 1})), expiry(SHORT, SHORT), Some(slot)).await;
    ensure!(matches!(again, Err(StoreError::Exists)), exists, "the second create answered {again:?}");
    let kept = answer("load", h.a.load(&id, None).await).map(|r| r.protocol_version());
    ensure!(kept == Some(mine.protocol_version()), exists, "the record now reads {kept:?}");
    let seen = answer("attributes", h.a.attributes(&id).await);
    ensure!(seen.as_ref() == Some(&initial), exists, "the attributes now read {seen:?}");
    reserve_full(&h.a, 2, "a create refused with Exists leaves its slot outstanding").await;
    answer("cancel", h.a.cancel(slot).await);
    let spare = reserve_ok(&h.a, 2, LONG, "cancel gives back the slot of a refused create").await;
    answer("cancel", h.a.cancel(spare).await);
    sleep(SHORT + EPS).await;
    ensure!(live(&h.b, &id).await, exists, "the refused create's short expiry ended the session");

    let contested = fresh_id("create");
    let answers = race(&h, 8, |store, _| {
        let id = contested.clone();
        async move { store.create(&record(&id), &Map::new(), expiry(LONG, LONG), None).await }
    })
    .await;
    let won = answers.iter().filter(|a| a.is_ok()).count();
    let lost = answers.iter().filter(|a| matches!(a, Err(StoreError::Exists))).count();
    let promise = "of concurrent creates of one id exactly one succeeds and the others fail with Exists";
    ensure!(won == 1 && lost == 7, promise, "{answers:?}");

    let unknown = fresh_id("unknown");
    let none = "a store has no session that was never created";
    ensure!(answer("load", h.a.load(&unknown, None).await).is_none(), none, "load found one");
    ensure!(answer("load", h.a.load(&unknown, Some(LONG)).await).is_none(), none, "load with refresh found one");
    ensure!(!answer("touch", h.a.touch(&unknown, LONG).await), none, "touch returned true");
    ensure!(answer("attributes", h.a.attributes(&unknown).await).is_none(), none, "attributes found some");
    let replaced = answer("replace_attributes", h.a.replace_attributes(&unknown, 0, &Map::new()).await);
    ensure!(replaced == Replaced::Missing, none, "replace_attributes answered {replaced:?}");
    ensure!(!answer("delete", h.a.delete(&unknown).await), none, "delete returned true");
    ensure!(answer("load", h.a.load(&unknown, None).await).is_none(), none, "a write created it");
}

/// Refresh and touch extend idle expiry; plain reads and attribute writes do not.
async fn activity(h: Handles) {
    let h = &h;
    patiently("refresh and touch extend the idle expiry; reads and attribute writes do not", || activity_once(h)).await;
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
    ensure!(answer("load", found).is_some(), promise, "load with refresh found no {refreshed}");
    ensure!(answer("touch", was_live), promise, "touch returned false for {touched}");
    ensure!(answer("load", plain).is_some(), promise, "load found no {read}");
    ensure!(answer("attributes", attrs).is_some(), promise, "attributes found no {written}");
    let replaced = answer("replace_attributes", replaced);
    ensure!(replaced == Replaced::Done, "replace_attributes with the stored version is Done", "{replaced:?}");

    // Past the creation deadline, before the refreshed ones.
    sleep_until(base + IDLE + IDLE / 4).await;
    let (r_live, w1) = timed(live(&h.a, &refreshed)).await;
    let (t_live, w2) = timed(live(&h.b, &touched)).await;
    in_time(w1.end < wr.start + IDLE && w2.end < wt.start + IDLE)?;
    let promise = "load with a refresh pushes the idle expiry to `refresh` from now";
    ensure!(r_live, promise, "{refreshed} was gone `idle` after create although loaded with a refresh since");
    ensure!(t_live, "touch pushes the idle expiry to `idle` from now", "{touched} was gone `idle` after create");
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
async fn lifetime(h: Handles) {
    let h = &h;
    patiently("the lifetime ends a session even if it is touched all the time", || lifetime_once(h)).await;
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
            ensure!(found, "a session kept active is live until its lifetime", "{id} gone in round {round}");
            last = w;
        }
    }
    expect_gone(&h.b, &id, "a session past its lifetime is gone for every reader").await;
    Ok(())
}

/// Delete succeeds once across instances, and takes the attributes with it.
async fn delete(h: Handles) {
    let id = fresh_id("delete");
    create(&h.a, &id, &object(json!({"a": 1})), expiry(LONG, LONG), None).await;
    let answers = race(&h, 16, |store, _| {
        let id = id.clone();
        async move { answer("delete", store.delete(&id).await) }
    })
    .await;
    let wins = answers.iter().filter(|won| **won).count();
    let promise = "delete returns true for exactly one of any number of concurrent calls, across instances";
    ensure!(wins == 1, promise, "{wins} of 16 concurrent deletes returned true");
    expect_gone(&h.a, &id, "a deleted session is gone for every reader").await;
    expect_gone(&h.b, &id, "a deleted session is gone for every reader").await;

    let promise = "delete removes a session and its attributes: the id can be created anew, with its own";
    let again = h.b.create(&record(&id), &Map::new(), expiry(LONG, LONG), None).await;
    ensure!(again.is_ok(), promise, "create after delete answered {again:?}");
    let seen = answer("attributes", h.a.attributes(&id).await);
    ensure!(seen == Some(Attributes::default()), promise, "the new session's attributes read {seen:?}");
    ensure!(answer("delete", h.a.delete(&id).await), "delete of a live session returns true", "false for {id}");
}

/// Compare-and-set on attributes, alone and under contention.
async fn attributes(h: Handles) {
    let id = fresh_id("attributes");
    create(&h.a, &id, &object(json!({"k": "v"})), expiry(LONG, LONG), None).await;
    let read = |store: Store| {
        let id = id.clone();
        async move { answer("attributes", store.attributes(&id).await).expect("the session is live") }
    };
    let replace = |store: &Store, expected: u64, map: Value| {
        let (store, id) = (Arc::clone(store), id.clone());
        async move { answer("replace_attributes", store.replace_attributes(&id, expected, &object(map)).await) }
    };

    let conflict = "replace_attributes with a version other than the stored one is a Conflict and writes nothing";
    let done = "replace_attributes with the stored version is Done, stores the map and adds one to the version";
    let got = replace(&h.b, 1, json!({"k": "wrong"})).await;
    ensure!(got == Replaced::Conflict, conflict, "expected version 1 against 0: {got:?}");
    let seen = read(Arc::clone(&h.a)).await;
    ensure!(seen.version == 0 && seen.map == object(json!({"k": "v"})), conflict, "{seen:?}");
    let got = replace(&h.b, 0, json!({"k": "v2"})).await;
    ensure!(got == Replaced::Done, done, "{got:?}");
    let seen = read(Arc::clone(&h.a)).await;
    ensure!(seen.version == 1 && seen.map == object(json!({"k": "v2"})), done, "{seen:?}");
    let got = replace(&h.a, 0, json!({})).await;
    ensure!(got == Replaced::Conflict, conflict, "expected version 0 against 1: {got:?}");
    let got = replace(&h.a, 1, json!({})).await;
    ensure!(got == Replaced::Done, done, "{got:?}");
    let seen = read(Arc::clone(&h.b)).await;
    ensure!(seen.version == 2 && seen.map.is_empty(), done, "after replacing with an empty map: {seen:?}");

    const WRITERS: usize = 8;
    let lost = "concurrent compare-and-set writers that retry on Conflict lose nothing";
    let tries = race(&h, WRITERS, |store, i| {
        let id = id.clone();
        async move {
            for attempt in 1..=500usize {
                let mut current = answer("attributes", store.attributes(&id).await).expect("the session is live");
                current.map.insert(format!("writer-{i}"), json!(i));
                match answer("replace_attributes", store.replace_attributes(&id, current.version, &current.map).await) {
                    Replaced::Done => return attempt,
                    Replaced::Conflict => continue,
                    Replaced::Missing => broken!(lost, "replace_attributes said Missing for a live session"),
                }
            }
            broken!(lost, "writer {i} met a Conflict 500 times in a row")
        }
    })
    .await;
    let seen = read(Arc::clone(&h.a)).await;
    let keys: HashSet<&str> = seen.map.keys().map(String::as_str).collect();
    let want: HashSet<String> = (0..WRITERS).map(|i| format!("writer-{i}")).collect();
    let want: HashSet<&str> = want.iter().map(String::as_str).collect();
    ensure!(keys == want, lost, "keys {keys:?} after {tries:?} tries");
    let version = 2 + WRITERS as u64;
    ensure!(seen.version == version, done, "version {} after {WRITERS} more Done replaces from 2", seen.version);
}

/// Expired sessions are reported once, with their reason; deleted and live ones never.
async fn take_expired(h: Handles) {
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
        ensure!(answer("delete", h.b.delete(&id).await), "delete of a live session returns true", "false");
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
    ensure!(!answer("delete", h.a.delete(&late_delete).await), promise, "true for expired {late_delete}");
    let promise = "create succeeds when only an expired session has the id";
    let again = h.a.create(&record(&recreated), &Map::new(), expiry(LONG, LONG), None).await;
    ensure!(again.is_ok(), promise, "create over expired {recreated} answered {again:?}");
    kept.push(recreated.clone());

    const MAX: usize = 4;
    let mut reported: HashMap<SessionId, CloseReason> = HashMap::new();
    let once = "each expired session is reported by take_expired exactly once";
    loop {
        for calls in 1.. {
            let batch = answer("take_expired", h.by(calls).take_expired(MAX).await);
            let n = batch.sessions.len();
            ensure!(n <= MAX, "take_expired removes up to `max` sessions", "{n} with max {MAX}");
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
                ensure!(reported.insert(gone.id.clone(), gone.reason).is_none(), once, "{} twice", gone.id);
            }
            if !batch.more {
                break;
            }
            ensure!(calls < 1000, "take_expired says `more` only while it may find more", "1000 calls in a row");
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
        ensure!(live(&h.a, id).await, "take_expired removes only expired sessions", "{id} is gone");
    }
}

/// Two instances sweeping at once share the expired sessions out, each exactly once.
async fn concurrent_sweeps(h: Handles) {
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
        ensure!(seen.insert(id.clone()), promise, "{id} reported twice by two concurrent sweepers");
    }
    let missing = ids.len() - seen.len();
    ensure!(missing == 0, promise, "{missing} of {SESSIONS} never reported within 5 s by two concurrent sweepers");
}

/// A touch with a shorter idle timeout than before brings the expiry forward, for readers
/// and for `take_expired` alike (alone in its backend, so no other expiry hides a lapse).
async fn shortened_idle(h: Handles) {
    let [shortened, kept] = ["shortened", "kept"].map(fresh_id);
    for id in [&shortened, &kept] {
        create(&h.a, id, &Map::new(), expiry(LONG, LONG), None).await;
    }
    let (found, w) = timed(h.b.touch(&shortened, SHORT)).await;
    ensure!(answer("touch", found), "touch of a live session returns true", "false for {shortened}");
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
        ensure!(batch.sessions.is_empty(), "take_expired reports only sessions that expired", "{batch:?}");
        let promise = "take_expired reports every expired session (within 5 s of expiry), also one whose idle \
                       timeout a touch shortened";
        ensure!(Instant::now() < deadline, promise, "{shortened} never reported");
        sleep(Duration::from_millis(100)).await;
    }
    ensure!(live(&h.b, &kept).await, "take_expired removes only expired sessions", "{kept} is gone");
}

/// Idle sessions are listed least recently active first, bounded, without expired ones.
async fn idle_sessions(h: Handles) {
    let h = &h;
    patiently("idle_sessions lists live idle sessions, least recently active first", || async move {
        let ids = ["oldest", "middle", "newest", "expiring"].map(fresh_id);
        let outcome = idle_sessions_once(h, &ids).await;
        for id in &ids {
            answer("delete", h.a.delete(id).await);
        }
        outcome
    })
    .await;
}

async fn idle_sessions_once(h: &Handles, ids: &[SessionId; 4]) -> Result<(), Late> {
    let [oldest, middle, newest, expiring] = ids;
    for id in [oldest, middle, newest] {
        create(&h.a, id, &Map::new(), expiry(LONG, LONG), None).await;
    }
    create(&h.b, expiring, &Map::new(), expiry(Duration::from_millis(250), LONG), None).await;
    let base = Instant::now();
    let step = Duration::from_millis(300);
    let mut windows = Vec::new();
    for (n, id) in [oldest, middle, newest].into_iter().enumerate() {
        sleep_until(base + step * (n as u32 + 1)).await;
        let (found, w) = timed(h.by(n).touch(id, LONG)).await;
        ensure!(answer("touch", found), "touch of a live session returns true", "false for {id}");
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
    ensure!(one == want[..1], "idle_sessions lists at most `max` sessions, the oldest", "{one:?}");
    let all = answer("idle_sessions", h.b.idle_sessions(Duration::ZERO, 10).await);
    let want = vec![oldest.clone(), middle.clone(), newest.clone()];
    ensure!(all == want, "idle_sessions never lists an expired session", "{all:?}, want {want:?}");
    Ok(())
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => unreachable!("not an object: {other}"),
    }
}
