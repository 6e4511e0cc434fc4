//! The checks behind [`session_store`](super::session_store) that need no clock: the cap,
//! create and load, delete and attributes; and the runner that starts every group at once,
//! each on a backend of its own.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::time::sleep;

use super::{EPS, Handles, LONG, SHORT, answer, expiry, failed, fresh_id, record, timing};
use crate::session::SessionId;
use crate::store::{Attributes, Expiry, Replaced, SessionStore, Slot, StoreError};

/// Store handles as the checks pass them around.
pub(super) type Store = Arc<dyn SessionStore>;

pub(super) async fn run<M, MF>(make: M)
where
    M: Fn() -> MF,
    MF: Future<Output = Handles>,
{
    tokio::join!(
        async { cap(make().await).await },
        async { timing::slot_lapse(make().await).await },
        async { create_and_load(make().await).await },
        async { timing::activity(make().await).await },
        async { timing::lifetime(make().await).await },
        async { delete(make().await).await },
        async { attributes(make().await).await },
        async { timing::take_expired(make().await).await },
        async { timing::concurrent_sweeps(make().await).await },
        async { timing::shortened_idle(make().await).await },
        async { timing::idle_sessions(make().await).await },
        async { super::listing::list(make().await).await },
        async { super::last_activity::last_activity(make().await).await },
    );
}

/// Run `n` calls at once as tasks, spread over both handles; their answers in order.
pub(super) async fn race<T, F, Fut>(h: &Handles, n: usize, call: F) -> Vec<T>
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

pub(super) async fn create(
    store: &Store,
    id: &SessionId,
    attributes: &Map<String, Value>,
    expiry: Expiry,
    slot: Option<Slot>,
) {
    answer("create", store.create(&record(id), attributes, expiry, slot).await);
}

pub(super) async fn reserve_ok(store: &Store, cap: usize, hold: Duration, promise: &str) -> Slot {
    match store.reserve(cap, hold).await {
        Ok(slot) => slot,
        Err(StoreError::Full) => broken!(promise, "reserve(cap {cap}) answered Full"),
        Err(e) => failed("reserve", e),
    }
}

pub(super) async fn reserve_full(store: &Store, cap: usize, promise: &str) {
    match store.reserve(cap, LONG).await {
        Err(StoreError::Full) => {}
        Ok(slot) => broken!(promise, "reserve(cap {cap}) gave slot {slot:?}"),
        Err(e) => failed("reserve", e),
    }
}

pub(super) fn live(store: &Store, id: &SessionId) -> impl Future<Output = bool> {
    let (store, id) = (Arc::clone(store), id.clone());
    async move { answer("load", store.load(&id, None).await).is_some() }
}

/// Every reader finds no session `id`, and none of them brings it back.
pub(super) async fn expect_gone(store: &Store, id: &SessionId, promise: &str) {
    let seen = [
        ("load", answer("load", store.load(id, None).await).is_some()),
        (
            "load with refresh",
            answer("load", store.load(id, Some(LONG)).await).is_some(),
        ),
        ("touch", answer("touch", store.touch(id, LONG).await)),
        ("attributes", answer("attributes", store.attributes(id).await).is_some()),
        (
            "replace_attributes",
            answer("replace_attributes", store.replace_attributes(id, 0, &Map::new()).await) != Replaced::Missing,
        ),
        ("delete", answer("delete", store.delete(id).await)),
        (
            "load after all that",
            answer("load", store.load(id, None).await).is_some(),
        ),
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
    ensure!(
        slots.len() == CAP,
        exact,
        "{CALLERS} concurrent reserves against cap {CAP} took {} slots",
        slots.len()
    );
    reserve_full(&h.a, CAP, exact).await;

    answer("cancel", h.a.cancel(slots[0]).await);
    let back = reserve_ok(&h.b, CAP, LONG, "cancel gives the slot's place back").await;
    reserve_full(&h.a, CAP, "cancel gives back exactly one place").await;
    answer("cancel", h.b.cancel(slots[0]).await);
    reserve_full(&h.a, CAP, "cancelling a slot that was cancelled already does nothing").await;

    let id = fresh_id("cap");
    create(&h.a, &id, &Map::new(), expiry(LONG, LONG), Some(slots[1])).await;
    reserve_full(
        &h.b,
        CAP,
        "create consumes the slot: the session holds its place toward the cap",
    )
    .await;
    answer("cancel", h.b.cancel(slots[1]).await);
    reserve_full(&h.a, CAP, "cancelling a consumed slot does nothing").await;
    ensure!(
        answer("delete", h.b.delete(&id).await),
        "delete of a live session returns true",
        "false for {id}"
    );
    let freed = reserve_ok(&h.a, CAP, LONG, "delete frees the session's place toward the cap").await;

    for slot in [slots[2], slots[3], slots[4], back, freed] {
        answer("cancel", h.a.cancel(slot).await);
    }
    let ids: Vec<SessionId> = (0..3).map(|_| fresh_id("cap")).collect();
    for id in &ids {
        create(&h.a, id, &Map::new(), expiry(LONG, LONG), None).await;
    }
    reserve_full(
        &h.b,
        3,
        "live sessions count toward the cap, also those created without a slot",
    )
    .await;
    let one = reserve_ok(
        &h.b,
        4,
        LONG,
        "reserve succeeds while live sessions plus slots are below cap",
    )
    .await;
    // Three sessions and one slot against a cap of six: room for exactly two more.
    let answers = race(
        &h,
        CALLERS,
        |store, _| async move { store.reserve(6, LONG).await.is_ok() },
    )
    .await;
    let taken = answers.iter().filter(|ok| **ok).count();
    ensure!(
        taken == 2,
        exact,
        "with 3 sessions and 1 slot, {CALLERS} concurrent reserves against cap 6 took {taken}"
    );
    answer("cancel", h.a.cancel(one).await);
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
    ensure!(
        found.protocol_version() == mine.protocol_version(),
        stored,
        "{:?}",
        found.protocol_version()
    );
    ensure!(
        found.principal() == mine.principal(),
        stored,
        "principal {:?}",
        found.principal()
    );
    let json = |raw: Option<&serde_json::value::RawValue>| raw.map(|r| serde_json::from_str::<Value>(r.get()).ok());
    ensure!(
        json(found.client_info()) == json(mine.client_info()),
        stored,
        "clientInfo {:?}",
        found.client_info()
    );
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
    let initial = Attributes {
        map: attrs.clone(),
        version: 0,
    };
    let seen = answer("attributes", h.a.attributes(&id).await);
    ensure!(
        seen.as_ref() == Some(&initial),
        "create stores the attributes at version 0",
        "{seen:?}"
    );

    let exists = "create of an id a live session has fails with Exists, writing nothing";
    let slot = reserve_ok(
        &h.b,
        2,
        LONG,
        "reserve succeeds while live sessions plus slots are below cap",
    )
    .await;
    let other = crate::SessionRecord::new(id.clone(), crate::ProtocolVersion::V2025_03_26);
    let again =
        h.b.create(&other, &object(json!({"other": 1})), expiry(SHORT, SHORT), Some(slot))
            .await;
    ensure!(
        matches!(again, Err(StoreError::Exists)),
        exists,
        "the second create answered {again:?}"
    );
    let kept = answer("load", h.a.load(&id, None).await).map(|r| r.protocol_version());
    ensure!(
        kept == Some(mine.protocol_version()),
        exists,
        "the record now reads {kept:?}"
    );
    let seen = answer("attributes", h.a.attributes(&id).await);
    ensure!(
        seen.as_ref() == Some(&initial),
        exists,
        "the attributes now read {seen:?}"
    );
    reserve_full(&h.a, 2, "a create refused with Exists leaves its slot outstanding").await;
    answer("cancel", h.a.cancel(slot).await);
    let spare = reserve_ok(&h.a, 2, LONG, "cancel gives back the slot of a refused create").await;
    answer("cancel", h.a.cancel(spare).await);
    sleep(SHORT + EPS).await;
    ensure!(
        live(&h.b, &id).await,
        exists,
        "the refused create's short expiry ended the session"
    );

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
    ensure!(
        answer("load", h.a.load(&unknown, None).await).is_none(),
        none,
        "load found one"
    );
    ensure!(
        answer("load", h.a.load(&unknown, Some(LONG)).await).is_none(),
        none,
        "load with refresh found one"
    );
    ensure!(
        !answer("touch", h.a.touch(&unknown, LONG).await),
        none,
        "touch returned true"
    );
    ensure!(
        answer("attributes", h.a.attributes(&unknown).await).is_none(),
        none,
        "attributes found some"
    );
    let replaced = answer(
        "replace_attributes",
        h.a.replace_attributes(&unknown, 0, &Map::new()).await,
    );
    ensure!(
        replaced == Replaced::Missing,
        none,
        "replace_attributes answered {replaced:?}"
    );
    ensure!(
        !answer("delete", h.a.delete(&unknown).await),
        none,
        "delete returned true"
    );
    ensure!(
        answer("load", h.a.load(&unknown, None).await).is_none(),
        none,
        "a write created it"
    );
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
    ensure!(
        seen == Some(Attributes::default()),
        promise,
        "the new session's attributes read {seen:?}"
    );
    ensure!(
        answer("delete", h.a.delete(&id).await),
        "delete of a live session returns true",
        "false for {id}"
    );
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
        async move {
            answer(
                "replace_attributes",
                store.replace_attributes(&id, expected, &object(map)).await,
            )
        }
    };

    let conflict = "replace_attributes with a version other than the stored one is a Conflict and writes nothing";
    let done = "replace_attributes with the stored version is Done, stores the map and adds one to the version";
    let got = replace(&h.b, 1, json!({"k": "wrong"})).await;
    ensure!(
        got == Replaced::Conflict,
        conflict,
        "expected version 1 against 0: {got:?}"
    );
    let seen = read(Arc::clone(&h.a)).await;
    ensure!(
        seen.version == 0 && seen.map == object(json!({"k": "v"})),
        conflict,
        "{seen:?}"
    );
    let got = replace(&h.b, 0, json!({"k": "v2"})).await;
    ensure!(got == Replaced::Done, done, "{got:?}");
    let seen = read(Arc::clone(&h.a)).await;
    ensure!(
        seen.version == 1 && seen.map == object(json!({"k": "v2"})),
        done,
        "{seen:?}"
    );
    let got = replace(&h.a, 0, json!({})).await;
    ensure!(
        got == Replaced::Conflict,
        conflict,
        "expected version 0 against 1: {got:?}"
    );
    let got = replace(&h.a, 1, json!({})).await;
    ensure!(got == Replaced::Done, done, "{got:?}");
    let seen = read(Arc::clone(&h.b)).await;
    ensure!(
        seen.version == 2 && seen.map.is_empty(),
        done,
        "after replacing with an empty map: {seen:?}"
    );

    const WRITERS: usize = 8;
    let lost = "concurrent compare-and-set writers that retry on Conflict lose nothing";
    let tries = race(&h, WRITERS, |store, i| {
        let id = id.clone();
        async move {
            for attempt in 1..=500usize {
                let mut current = answer("attributes", store.attributes(&id).await).expect("the session is live");
                current.map.insert(format!("writer-{i}"), json!(i));
                match answer(
                    "replace_attributes",
                    store.replace_attributes(&id, current.version, &current.map).await,
                ) {
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
    ensure!(
        seen.version == version,
        done,
        "version {} after {WRITERS} more Done replaces from 2",
        seen.version
    );
}

pub(super) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => unreachable!("not an object: {other}"),
    }
}
