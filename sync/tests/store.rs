//! The store on a real sled directory: durability across reopen, idempotence, convergence,
//! retention with a canary, and every kind of bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use serde_json::json;
use tsunagi_sync::event::{Event, EventError};
use tsunagi_sync::hlc::Timestamp;
use tsunagi_sync::store::StoreConfig;
use tsunagi_sync::{DeviceKey, Month, SignedEvent, Store, StoreError};

fn nov() -> Month {
    Month::new(2026, 11).unwrap()
}

/// Opens the store, waiting briefly for a handle dropped a moment ago to let go (a capture
/// enters its document just after its acknowledgement).
fn open(dir: &Path) -> Store {
    Store::open_waiting(&StoreConfig::new(dir), std::time::Duration::from_secs(5)).unwrap()
}

/// sled directly (a test that damages the files), once the store has let go.
fn sled_open(path: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("sled: {e}"),
        }
    }
}

fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn events_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let device;
    {
        let store = open(dir.path());
        device = store.device().id().clone();
        for n in 0..5 {
            store
                .append_durable(&format!("c{n}"), nov(), json!({"n": n}))
                .await
                .unwrap();
        }
    }
    let store = open(dir.path());
    assert_eq!(store.device().id(), &device, "device key kept");
    let events = store.events(nov()).unwrap();
    assert!(events.rejected.is_empty());
    let order: Vec<i64> = events
        .events
        .iter()
        .map(|(_, e)| e.payload["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4]);
    assert_eq!(store.event_count(nov()).unwrap(), 5);
    assert_eq!(store.version().unwrap(), tsunagi_sync::store::STORE_VERSION);
    // Compaction keeps everything and survives a reopen too.
    let c = store.compact(nov()).unwrap();
    assert_eq!(c.chunks, 5);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.events(nov()).unwrap().events.len(), 5);
}

#[tokio::test]
async fn the_same_event_twice_or_from_two_stores_converges() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = open(a_dir.path());
    let b = open(b_dir.path());
    a.append("c1", nov(), json!({"kind": "captured"})).unwrap();
    // The month key is shared by paired devices.
    let key = a.keys().get(nov()).unwrap();
    b.keys().install(nov(), key).unwrap();
    b.append("c1", nov(), json!({"kind": "answered"})).unwrap();
    // Exchange whole documents both ways, twice (replays change nothing).
    for _ in 0..2 {
        let doc_a = a.export_month(nov()).unwrap();
        let doc_b = b.export_month(nov()).unwrap();
        b.merge_changes(nov(), &doc_a).unwrap();
        a.merge_changes(nov(), &doc_b).unwrap();
    }
    let ea = a.events(nov()).unwrap();
    let eb = b.events(nov()).unwrap();
    assert!(ea.rejected.is_empty() && eb.rejected.is_empty());
    assert_eq!(ea.events.len(), 2);
    assert_eq!(
        ea.events.iter().map(|e| &e.0).collect::<Vec<_>>(),
        eb.events.iter().map(|e| &e.0).collect::<Vec<_>>(),
        "same events in the same order on both devices"
    );
    // A hostile peer cannot swap an event's body for another.
    let mut hostile = b.export_month(nov()).unwrap();
    for (_, body) in hostile.bodies.iter_mut() {
        body.iter_mut().for_each(|x| *x ^= 0x55);
    }
    a.merge_changes(nov(), &hostile).unwrap();
    let after = a.events(nov()).unwrap();
    assert!(after.rejected.is_empty());
    assert_eq!(after.events.len(), 2);
    // A signed event applied again is the same key: nothing new.
    let events = a.events(nov()).unwrap();
    let (_, first) = &events.events[0];
    let key_a = DeviceKey::generate();
    let again = Event {
        device: key_a.id().clone(),
        ..first.clone()
    };
    let signed = SignedEvent::sign(&again, &key_a).unwrap();
    let id1 = a.insert_signed(&signed).unwrap();
    let id2 = a.insert_signed(&signed).unwrap();
    assert_eq!(id1, id2);
    assert_eq!(a.events(nov()).unwrap().events.len(), 3);
}

#[tokio::test]
async fn bad_signatures_and_clocks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append("c1", nov(), json!({})).unwrap();
    let peer = DeviceKey::generate();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let event = |wall_ms| Event {
        check_id: "c2".into(),
        month: nov(),
        at: Timestamp {
            wall_ms,
            counter: 0,
        },
        device: peer.id().clone(),
        payload: json!({"kind": "answered"}),
    };
    let mut tampered = SignedEvent::sign(&event(now), &peer).unwrap();
    tampered.body[5] ^= 1;
    assert!(matches!(
        store.insert_signed(&tampered),
        Err(StoreError::Event(EventError::BadSignature))
    ));
    let future = SignedEvent::sign(&event(now + 3_600_000), &peer).unwrap();
    assert!(matches!(
        store.insert_signed(&future),
        Err(StoreError::Clock(_))
    ));
    let past = SignedEvent::sign(&event(1_000), &peer).unwrap();
    assert!(matches!(
        store.insert_signed(&past),
        Err(StoreError::Event(EventError::BeforeItsMonth { .. }))
    ));
    // A peer's document carrying a forged value: reported when read, the rest stays usable.
    let mut forged = automerge::AutoCommit::new();
    use automerge::transaction::Transactable;
    forged
        .put(
            automerge::ROOT,
            "0000feedface",
            automerge::ScalarValue::Bytes(vec![1, 2, 3]),
        )
        .unwrap();
    let forged = tsunagi_sync::store::MonthExport {
        document: forged.save(),
        bodies: vec![("0000feedface".into(), b"not a sealed event".to_vec())],
    };
    store.merge_changes(nov(), &forged).unwrap();
    let events = store.events(nov()).unwrap();
    assert_eq!(events.events.len(), 1);
    assert_eq!(events.rejected.len(), 1);
    assert_eq!(events.rejected[0].stored_as, "0000feedface");
    // Garbage instead of changes is refused without harm.
    let garbage = tsunagi_sync::store::MonthExport {
        document: b"not automerge".to_vec(),
        bodies: Vec::new(),
    };
    assert!(store.merge_changes(nov(), &garbage).is_err());
    assert_eq!(store.events(nov()).unwrap().events.len(), 1);
}

#[tokio::test]
async fn a_truncated_chunk_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for n in 0..3 {
            store
                .append_durable(&format!("c{n}"), nov(), json!({}))
                .await
                .unwrap();
        }
    }
    {
        // Cut the last change chunk in half, as a torn write would.
        let db = sled_open(&dir.path().join("db"));
        let chunks = db.open_tree("chunks").unwrap();
        let (key, value) = chunks.last().unwrap().unwrap();
        chunks.insert(key, &value[..value.len() / 2]).unwrap();
        db.flush().unwrap();
    }
    let store = open(dir.path());
    let events = store.events(nov()).unwrap();
    assert_eq!(events.events.len(), 2, "the intact events remain");
    assert_eq!(store.quarantined().unwrap(), 1);
    // And the store goes on.
    store.append_durable("c9", nov(), json!({})).await.unwrap();
    drop(store);
    assert_eq!(open(dir.path()).events(nov()).unwrap().events.len(), 3);
}

#[test]
fn a_damaged_database_is_reported_and_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.append("c1", nov(), json!({})).unwrap();
        store.flush_blocking().unwrap();
    }
    for f in all_files(&dir.path().join("db")) {
        std::fs::write(&f, vec![0xA5u8; 4096]).unwrap();
    }
    match Store::open(&StoreConfig::new(dir.path())) {
        Err(StoreError::Corrupt { .. }) => {}
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a garbage database must not open silently"),
    }
    let (store, aside) = Store::open_or_recover(&StoreConfig::new(dir.path())).unwrap();
    assert!(aside.unwrap().exists(), "the damaged files are kept");
    store.append("c2", nov(), json!({})).unwrap();
    assert_eq!(store.events(nov()).unwrap().events.len(), 1);
}

#[test]
fn a_newer_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("version", &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(
        Store::open(&StoreConfig::new(dir.path())),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

#[tokio::test]
async fn purge_leaves_no_trace_of_the_canary() {
    let dir = tempfile::tempdir().unwrap();
    let canary = "カナリア山田花子";
    let store = open(dir.path());
    store
        .append_durable("c1", nov(), json!({"kind": "captured", "name": canary}))
        .await
        .unwrap();
    let oct = Month::new(2026, 10).unwrap();
    store.append_durable("c0", oct, json!({})).await.unwrap();
    store.compact(nov()).unwrap();
    // Before the purge the data is there (readable with the key)…
    let events = store.events(nov()).unwrap();
    assert_eq!(events.events[0].1.payload["name"], canary);
    let key = store.keys().get(nov()).unwrap();
    // …but never in plain text on disk.
    for f in all_files(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!contains(&bytes, canary.as_bytes()), "{}", f.display());
    }
    store.purge(nov(), &json!({"checks": 1})).unwrap();
    assert!(matches!(store.events(nov()), Err(StoreError::Purged(_))));
    assert!(matches!(
        store.append("c2", nov(), json!({})),
        Err(StoreError::Purged(_))
    ));
    drop(store);
    // No file holds the canary or the month key that could open what sled's old segments
    // might still hold.
    for f in all_files(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!contains(&bytes, canary.as_bytes()), "{}", f.display());
        assert!(!contains(&bytes, &key), "month key left in {}", f.display());
    }
    let store = open(dir.path());
    assert_eq!(store.aggregates().unwrap()[&nov()], json!({"checks": 1}));
    assert_eq!(store.months().unwrap(), vec![oct], "other months untouched");
    assert_eq!(store.events(oct).unwrap().events.len(), 1);
}

#[tokio::test]
async fn one_check_is_read_alone_and_the_index_follows_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for n in 0..10 {
        store
            .append(&format!("c{n}"), nov(), json!({"n": n}))
            .unwrap();
    }
    assert_eq!(store.month_of_check("c3").unwrap(), Some(nov()));
    assert_eq!(store.month_of_check("nope").unwrap(), None);
    store.append("c3", nov(), json!({"n": "again"})).unwrap();
    let c3 = store.check_events(nov(), "c3").unwrap();
    assert_eq!(c3.events.len(), 2);
    assert!(c3.events.iter().all(|(_, e)| e.check_id == "c3"));
    // A peer's document invalidates the index; it is rebuilt on the next read.
    let other_dir = tempfile::tempdir().unwrap();
    let other = open(other_dir.path());
    other
        .keys()
        .install(nov(), store.keys().get(nov()).unwrap())
        .unwrap();
    other.append("c3", nov(), json!({"n": "peer"})).unwrap();
    store
        .merge_changes(nov(), &other.export_month(nov()).unwrap())
        .unwrap();
    assert_eq!(store.check_events(nov(), "c3").unwrap().events.len(), 3);
}

#[test]
fn a_store_in_use_is_reported_not_mistaken_for_damage() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    first.append("c1", nov(), json!({})).unwrap();
    first.flush_blocking().unwrap();
    assert!(matches!(
        Store::open(&StoreConfig::new(dir.path())),
        Err(StoreError::InUse { .. })
    ));
    // Recovery must never move a store that is merely in use.
    assert!(matches!(
        Store::open_or_recover(&StoreConfig::new(dir.path())),
        Err(StoreError::InUse { .. })
    ));
    let waiting = std::thread::spawn({
        let dir = dir.path().to_path_buf();
        move || Store::open_waiting(&StoreConfig::new(&dir), std::time::Duration::from_secs(10))
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(first);
    let second = waiting.join().unwrap().unwrap();
    assert_eq!(second.events(nov()).unwrap().events.len(), 1);
}

#[test]
fn devices_and_settings_are_small_shared_documents() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = open(a_dir.path());
    let b = open(b_dir.path());
    let a_id = a.device().id().to_string();
    assert!(
        a.devices().unwrap().contains_key(&a_id),
        "a device registers itself"
    );
    a.set_setting("retention.extra_months", "1").unwrap();
    drop(a);
    let a = open(a_dir.path());
    assert_eq!(
        a.devices().unwrap().len(),
        1,
        "registered once, across restarts"
    );
    assert_eq!(a.settings().unwrap()["retention.extra_months"], "1");
    // Paired devices merge each other's documents.
    b.merge_small("devices", &a.export_small("devices").unwrap())
        .unwrap();
    b.merge_small("settings", &a.export_small("settings").unwrap())
        .unwrap();
    let devices = b.devices().unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices[&a_id].contains("public_key"));
    assert_eq!(b.settings().unwrap()["retention.extra_months"], "1");
    assert!(b.merge_small("devices", b"garbage").is_err());
    assert_eq!(b.devices().unwrap().len(), 2);
}
