//! The memory store's own bookkeeping; the contract itself is the conformance suite's.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_drained_expiry_burst_gives_its_memory_back() {
    let store = MemoryStore::new();
    let expiry = Expiry {
        idle: Duration::from_secs(1),
        lifetime: Duration::from_secs(60),
    };
    for n in 0..5_000 {
        let id = SessionId::parse(&format!("s{n}")).unwrap();
        let record = SessionRecord::new(id, crate::ProtocolVersion::V2025_06_18);
        store.create(&record, &Map::new(), expiry, None).await.unwrap();
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    let mut taken = 0;
    loop {
        let batch = store.take_expired(100).await.unwrap();
        taken += batch.sessions.len();
        if !batch.more {
            break;
        }
    }
    assert_eq!(taken, 5_000);
    let queue = store.inner.unreported.lock().unwrap().capacity();
    assert!(queue <= 256, "the drained queue still holds room for {queue} entries");
}

#[test]
fn entry_stays_small() {
    // The map stores key and entry inline; keep the pair within one cache line.
    assert!(std::mem::size_of::<(SessionId, Entry)>() <= 64);
}

#[tokio::test(start_paused = true)]
async fn idle_for_counts_from_the_last_refresh_or_touch() {
    let store = MemoryStore::new();
    let id = SessionId::parse("s").unwrap();
    let expiry = Expiry {
        idle: Duration::from_secs(60),
        lifetime: Duration::from_secs(90),
    };
    let record = SessionRecord::new(id.clone(), crate::ProtocolVersion::V2025_06_18);
    store.create(&record, &Map::new(), expiry, None).await.unwrap();
    assert_eq!(store.idle_for(&id).await.unwrap(), Some(Duration::ZERO));
    tokio::time::advance(Duration::from_secs(7)).await;
    assert_eq!(store.idle_for(&id).await.unwrap(), Some(Duration::from_secs(7)));
    // A plain load is not activity; a refreshing one is.
    store.load(&id, None).await.unwrap();
    assert_eq!(store.idle_for(&id).await.unwrap(), Some(Duration::from_secs(7)));
    store.load(&id, Some(expiry.idle)).await.unwrap();
    assert_eq!(store.idle_for(&id).await.unwrap(), Some(Duration::ZERO));
    tokio::time::advance(Duration::from_secs(3)).await;
    assert!(store.touch(&id, expiry.idle).await.unwrap());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(store.idle_for(&id).await.unwrap(), Some(Duration::from_secs(1)));
    // Past the lifetime the session is gone, whatever its idle time.
    tokio::time::advance(Duration::from_secs(80)).await;
    assert_eq!(store.idle_for(&id).await.unwrap(), None);
}
