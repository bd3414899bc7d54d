//! The store on a real data directory: durability across reopen, idempotence, two keys in a
//! month, peers' records, damage of every part (each set aside loudly, nothing else lost),
//! retention with a canary, and every kind of bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

use serde_json::json;
use tsunagi_sync::event::{Event, EventError};
use tsunagi_sync::hlc::Timestamp;
use tsunagi_sync::store::{seal_record, HealthKind, OpenError, StoreConfig};
use tsunagi_sync::{DeviceKey, Month, SignedEvent, Store, StoreError};

fn nov() -> Month {
    Month::new(2026, 11).unwrap()
}

fn config(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.segment_bytes = 4096;
    c.compact_bytes = 1024;
    c
}

/// Opens the store, waiting for sled's threads of a store dropped a moment ago to let go of
/// the index.
fn open(dir: &Path) -> Store {
    Store::open_waiting(&config(dir), std::time::Duration::from_secs(10)).unwrap()
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
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

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    all_files(dir)
        .into_iter()
        .filter(|p| contains(&std::fs::read(p).unwrap_or_default(), needle))
        .collect()
}

fn segments(dir: &Path, month: Month) -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = all_files(&dir.join(format!("months/{month}")))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    s.sort();
    s
}

fn ns(store: &Store, month: Month) -> Vec<i64> {
    let events = store.events(month).unwrap();
    assert!(events.rejected.is_empty(), "{:?}", events.rejected);
    events
        .events
        .iter()
        .map(|(_, e)| e.payload["n"].as_i64().unwrap())
        .collect()
}

fn capture_n(store: &Store, range: std::ops::Range<i64>) {
    for n in range {
        store
            .capture_blocking(&format!("c{n}"), nov(), json!({"kind": "captured", "n": n}))
            .unwrap();
    }
}

#[tokio::test]
async fn events_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let device;
    {
        let store = open(dir.path());
        device = store.device().id().clone();
        for n in 0..40 {
            store
                .capture(&format!("c{n}"), nov(), json!({"n": n}))
                .await
                .unwrap();
        }
        // Small segments: the month spans several.
        assert!(segments(dir.path(), nov()).len() > 2);
    }
    let store = open(dir.path());
    assert_eq!(store.device().id(), &device, "device key kept");
    assert_eq!(ns(&store, nov()), (0..40).collect::<Vec<_>>());
    assert_eq!(store.counts(nov()).unwrap().checks, 40);
    assert!(store.health().is_empty(), "{:?}", store.health());
    assert_eq!(store.verify().unwrap().problems, vec![]);
}

#[test]
fn a_capture_made_twice_is_one_check() {
    // Issue 8: a capture carries its check id as idempotency key.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = store
        .capture_blocking("c1", nov(), json!({"kind": "captured"}))
        .unwrap();
    assert!(first.new);
    let again = store
        .capture_blocking("c1", nov(), json!({"kind": "captured", "retry": true}))
        .unwrap();
    assert_eq!((again.new, again.id), (false, first.id));
    // Eight threads capturing one new check at once write it once.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let s = store.clone();
            std::thread::spawn(move || {
                s.capture_blocking("c2", nov(), json!({"kind": "captured"}))
                    .unwrap()
            })
        })
        .collect();
    let answers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(answers.iter().filter(|a| a.new).count(), 1);
    assert!(answers.iter().all(|a| a.id == answers[0].id));
    drop(store);
    let store = open(dir.path());
    // A retry in a fresh process (which learns the month's checks from its index) is
    // still the same check.
    let later = store
        .capture_blocking("c1", nov(), json!({"kind": "captured", "retry": 2}))
        .unwrap();
    assert_eq!((later.new, later.id), (false, first.id));
    assert_eq!(store.check_events(nov(), "c1").unwrap().events.len(), 1);
    assert_eq!(store.check_events(nov(), "c2").unwrap().events.len(), 1);
    assert_eq!(store.counts(nov()).unwrap().checks, 2);
}

#[test]
fn two_devices_start_a_month_apart_and_converge() {
    // Issue 8: a month holds events sealed by keys created on two devices.
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(a_dir.path()), open(b_dir.path()));
    a.capture_blocking("a1", nov(), json!({"n": 1})).unwrap();
    a.append_blocking("a1", nov(), json!({"n": 2})).unwrap();
    b.capture_blocking("b1", nov(), json!({"n": 3})).unwrap();
    let (a_keys, b_keys) = (a.month_keys(nov()).unwrap(), b.month_keys(nov()).unwrap());
    assert_ne!(a_keys[0].0, b_keys[0].0, "each device started its own key");
    for (_, k) in &a_keys {
        b.install_month_key(nov(), *k).unwrap();
    }
    for (_, k) in &b_keys {
        a.install_month_key(nov(), *k).unwrap();
    }
    // B learns which records it lacks from A's document, fetches them, receives them twice.
    let missing = b
        .merge_month_document(nov(), &a.month_document(nov()).unwrap())
        .unwrap();
    assert_eq!(missing.len(), 2);
    for (_, body) in a.record_bodies(nov(), &missing).unwrap() {
        assert!(b.receive(nov(), &body).unwrap().new);
        assert!(
            !b.receive(nov(), &body).unwrap().new,
            "the same record twice"
        );
    }
    // A check received from a peer is the same check when captured here (a retry that
    // reached the other device first).
    let again = b.capture_blocking("a1", nov(), json!({"n": 1})).unwrap();
    assert!(!again.new, "a received check captured again");
    let missing = a
        .merge_month_document(nov(), &b.month_document(nov()).unwrap())
        .unwrap();
    for (_, body) in b.record_bodies(nov(), &missing).unwrap() {
        a.receive(nov(), &body).unwrap();
    }
    assert!(b
        .merge_month_document(nov(), &a.month_document(nov()).unwrap())
        .unwrap()
        .is_empty());
    // Both hold the same events, in the same order, sealed by two keys, after a restart.
    drop((a, b));
    let (a, b) = (open(a_dir.path()), open(b_dir.path()));
    assert_eq!(ns(&a, nov()), ns(&b, nov()));
    assert_eq!(ns(&a, nov()).len(), 3);
    assert_eq!(a.month_keys(nov()).unwrap().len(), 2);
    let mut ea = a.month_entries(nov()).unwrap();
    let mut eb = b.month_entries(nov()).unwrap();
    ea.sort();
    eb.sort();
    assert_eq!(ea, eb);
    // New records of both now use the same (smallest) key.
    assert_eq!(
        a.month_keys(nov()).unwrap()[0],
        b.month_keys(nov()).unwrap()[0]
    );
}

fn event(key: &DeviceKey, month: Month, at_ms: u64) -> Event {
    Event {
        check_id: "x1".into(),
        month,
        at: Timestamp {
            wall_ms: at_ms,
            counter: 0,
        },
        device: key.id().clone(),
        payload: json!({"n": 1}),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn bad_records_from_a_peer_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .capture_blocking("c0", nov(), json!({"n": 0}))
        .unwrap();
    let (_, key) = store.month_keys(nov()).unwrap()[0];
    let peer = DeviceKey::generate();
    let good = SignedEvent::sign(&event(&peer, nov(), nov().start_ms() + 1), &peer).unwrap();
    // A good one is accepted (the control: the cases below fail for their own reason).
    assert!(
        store
            .receive(nov(), &seal_record(nov(), &key, &good))
            .unwrap()
            .new
    );
    // A flipped bit in the sealed bytes.
    let mut tampered = seal_record(nov(), &key, &good);
    let last = tampered.len() - 3;
    tampered[last] ^= 1;
    assert!(matches!(
        store.receive(nov(), &tampered),
        Err(StoreError::Event(EventError::Malformed(_)))
    ));
    // A body whose signature does not verify.
    let mut forged = good.clone();
    forged.body = serde_json::to_vec(&event(&peer, nov(), nov().start_ms() + 2)).unwrap();
    assert!(matches!(
        store.receive(nov(), &seal_record(nov(), &key, &forged)),
        Err(StoreError::Event(EventError::BadSignature))
    ));
    // Signed by one device, claiming another.
    let other = DeviceKey::generate();
    let claims = SignedEvent::sign(&event(&peer, nov(), nov().start_ms() + 3), &peer).unwrap();
    let mut stolen = claims.clone();
    stolen.public_key = other.verifying_key().to_bytes();
    stolen.signature = other.sign(&stolen.body);
    assert!(matches!(
        store.receive(nov(), &seal_record(nov(), &key, &stolen)),
        Err(StoreError::Event(EventError::WrongDevice { .. }))
    ));
    // An event of December offered as November's.
    let dec = Month::new(2026, 12).unwrap();
    let wrong = SignedEvent::sign(&event(&peer, dec, dec.start_ms()), &peer).unwrap();
    assert!(matches!(
        store.receive(nov(), &seal_record(nov(), &key, &wrong)),
        Err(StoreError::Event(EventError::WrongMonth { .. }))
    ));
    // Written long before its visit month.
    let early = SignedEvent::sign(&event(&peer, nov(), 1_000), &peer).unwrap();
    assert!(matches!(
        store.receive(nov(), &seal_record(nov(), &key, &early)),
        Err(StoreError::Event(EventError::BeforeItsMonth { .. }))
    ));
    // From a clock an hour ahead.
    let ahead = SignedEvent::sign(&event(&peer, nov(), now_ms() + 3_600_000), &peer).unwrap();
    assert!(matches!(
        store.receive(nov(), &seal_record(nov(), &key, &ahead)),
        Err(StoreError::Clock(_))
    ));
    // Sealed with a key this device does not hold.
    let stranger = SignedEvent::sign(&event(&peer, nov(), nov().start_ms() + 4), &peer).unwrap();
    assert!(matches!(
        store.receive(nov(), &seal_record(nov(), &[7; 32], &stranger)),
        Err(StoreError::NoKey { .. })
    ));
    assert!(store.receive(nov(), b"junk").is_err());
    // Nothing refused reached the month.
    assert_eq!(store.events(nov()).unwrap().events.len(), 2);
}

#[test]
fn a_torn_tail_is_cut_and_later_records_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    capture_n(&open(dir.path()), 0..3);
    // A crash mid-write: half a record, not zeros, at the end of the last segment.
    let seg = segments(dir.path(), nov()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let torn = [0, 0, 2, 0, 9, 9, 9, 9, 1, 0, 5, 5, 5];
    bytes.extend_from_slice(&torn);
    std::fs::write(&seg, &bytes).unwrap();
    let store = open(dir.path());
    assert!(store.health().is_empty(), "a torn tail is not damage");
    assert_eq!(ns(&store, nov()), vec![0, 1, 2]);
    assert!(
        !contains(&std::fs::read(&seg).unwrap(), &torn),
        "the torn write is cut from the segment"
    );
    assert!(
        !files_containing(&dir.path().join("quarantine"), &torn).is_empty(),
        "torn bytes kept"
    );
    capture_n(&store, 3..5);
    drop(store);
    assert_eq!(ns(&open(dir.path()), nov()), vec![0, 1, 2, 3, 4]);
}

#[test]
fn damage_inside_a_segment_keeps_every_record_around_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut c = config(dir.path());
        c.segment_bytes = 1 << 20;
        let store = Store::open(&c).unwrap();
        capture_n(&store, 0..10);
    }
    let seg = segments(dir.path(), nov()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // The records end where the zeros filled ahead for appends begin.
    let used = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    let third = 32 + (used - 32) / 10 * 3 + 40;
    bytes[third] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    // The index still says everything is fine: only a rebuild would read the damage, so
    // take the index away as a damaged disk might.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = open(dir.path());
    let notes = store.health();
    assert!(
        notes.iter().any(|n| n.kind == HealthKind::SegmentDamaged),
        "{notes:?}"
    );
    let got = ns(&store, nov());
    assert_eq!(got.len(), 9, "only the damaged record is missing: {got:?}");
    assert!(!got.contains(&3));
    let quarantined = all_files(&dir.path().join("quarantine"));
    assert!(quarantined
        .iter()
        .any(|p| contains(&std::fs::read(p).unwrap(), &bytes[third - 8..third])));
    assert_eq!(store.verify().unwrap().problems, vec![]);
    capture_n(&store, 10..12);
    drop(store);
    // Reopening finds nothing new to repair, and nothing was lost since.
    let store = open(dir.path());
    assert_eq!(
        store
            .health()
            .iter()
            .filter(|n| n.kind == HealthKind::SegmentDamaged)
            .count(),
        1,
        "the note is kept, not repeated"
    );
    assert_eq!(ns(&store, nov()).len(), 11);
}

#[test]
fn a_damaged_index_is_set_aside_and_rebuilt_loudly() {
    let dir = tempfile::tempdir().unwrap();
    capture_n(&open(dir.path()), 0..25);
    // Every file of sled's overwritten with garbage.
    for f in all_files(&dir.path().join("index")) {
        let len = std::fs::metadata(&f).unwrap().len() as usize;
        std::fs::write(&f, vec![0x5a; len.max(64)]).unwrap();
    }
    let store = open(dir.path());
    assert!(
        store
            .health()
            .iter()
            .any(|n| n.kind == HealthKind::IndexRebuilt),
        "{:?}",
        store.health()
    );
    assert_eq!(ns(&store, nov()), (0..25).collect::<Vec<_>>());
    assert_eq!(store.counts(nov()).unwrap().checks, 25);
    assert!(std::fs::read_dir(dir.path()).unwrap().flatten().any(|e| e
        .file_name()
        .to_string_lossy()
        .starts_with("index.damaged-")));
}

#[test]
fn an_index_that_contradicts_the_segments_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    capture_n(&open(dir.path()), 0..5);
    {
        // The index says segment 1 holds more than it does.
        let db = sled::open(dir.path().join("index")).unwrap();
        let tree = db.open_tree("index").unwrap();
        let mut key = vec![b'W'];
        key.extend_from_slice(&nov().to_bytes());
        key.extend_from_slice(&1u32.to_be_bytes());
        tree.insert(key, &(1u64 << 40).to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store = open(dir.path());
    assert!(store
        .health()
        .iter()
        .any(|n| n.kind == HealthKind::IndexRebuilt));
    assert_eq!(ns(&store, nov()), (0..5).collect::<Vec<_>>());
}

#[test]
fn open_never_destroys_and_says_why() {
    // A store in use: the second opener is told, and waits when asked to.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(matches!(
        Store::open(&config(dir.path())),
        Err(OpenError::InUse { .. })
    ));
    let waiting = Store::open_waiting(&config(dir.path()), std::time::Duration::from_millis(200));
    assert!(matches!(waiting, Err(OpenError::InUse { .. })));
    drop(store);
    assert!(Store::open_waiting(&config(dir.path()), std::time::Duration::from_secs(10)).is_ok());

    // A data directory in the layout before segments: refused, untouched.
    let old = tempfile::tempdir().unwrap();
    std::fs::create_dir(old.path().join("db")).unwrap();
    std::fs::write(old.path().join("wal.log"), b"records").unwrap();
    let before = all_files(old.path());
    match Store::open(&config(old.path())) {
        Err(e @ OpenError::Format { found: 1, .. }) => {
            assert!(e.to_string().contains("format 1"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(all_files(old.path()), before);
    assert_eq!(
        std::fs::read(old.path().join("wal.log")).unwrap(),
        b"records"
    );

    // One written by a newer release.
    let newer = tempfile::tempdir().unwrap();
    std::fs::write(newer.path().join("FORMAT"), b"tsunagi-store 9\n").unwrap();
    assert!(matches!(
        Store::open(&config(newer.path())),
        Err(OpenError::Format { found: 9, .. })
    ));

    // A data directory that is a file.
    let file = tempfile::NamedTempFile::new().unwrap();
    assert!(matches!(
        Store::open(&config(file.path())),
        Err(OpenError::Io { .. })
    ));
}

#[test]
fn purge_leaves_no_trace_and_the_month_cannot_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let oct = Month::new(2026, 10).unwrap();
    capture_n(&store, 0..5);
    store
        .capture_blocking("o1", oct, json!({"name": "カナリア"}))
        .unwrap();
    store.append_blocking("o1", oct, json!({"n": 2})).unwrap();
    store.compact_document(oct).unwrap();
    let (_, key) = store.month_keys(oct).unwrap()[0];
    let ids: Vec<_> = store
        .events(oct)
        .unwrap()
        .events
        .iter()
        .map(|(id, _)| *id)
        .collect();
    let bodies = store.record_bodies(oct, &ids).unwrap();
    let sealed = &bodies[0].1[bodies[0].1.len() - 64..];
    // The canaries are there before the purge: the key's bytes and a record's ciphertext.
    assert!(!files_containing(dir.path(), &key).is_empty());
    assert!(!files_containing(dir.path(), sealed).is_empty());

    store.purge(oct, &json!({"checks": 1})).unwrap();
    assert!(files_containing(dir.path(), &key).is_empty());
    assert!(files_containing(dir.path(), sealed).is_empty());
    assert!(!dir.path().join("months/2026-10").exists());
    assert!(!dir.path().join("keys/2026-10").exists());
    assert!(all_files(dir.path())
        .iter()
        .all(|p| !p.to_string_lossy().contains(".tmp-")));
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.aggregates()[&oct]["checks"], 1);
    assert_eq!(store.months().unwrap(), vec![nov()]);
    assert!(matches!(
        store.capture_blocking("o2", oct, json!({})),
        Err(StoreError::Purged(_))
    ));
    // A peer cannot bring it back: not its key, not its records, not its document.
    assert!(matches!(
        store.install_month_key(oct, key),
        Err(StoreError::Purged(_))
    ));
    assert!(matches!(
        store.receive(oct, &bodies[0].1),
        Err(StoreError::Purged(_))
    ));
    let peer_doc = {
        let peer_dir = tempfile::tempdir().unwrap();
        let peer = open(peer_dir.path());
        peer.capture_blocking("p1", oct, json!({})).unwrap();
        peer.month_document(oct).unwrap()
    };
    assert!(matches!(
        store.merge_month_document(oct, &peer_doc),
        Err(StoreError::Purged(_))
    ));
    assert!(!dir.path().join("months/2026-10").exists());
    // The other month is untouched.
    assert_eq!(ns(&store, nov()), (0..5).collect::<Vec<_>>());
}

#[test]
fn an_interrupted_purge_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let oct = Month::new(2026, 10).unwrap();
    {
        let store = open(dir.path());
        store.capture_blocking("o1", oct, json!({})).unwrap();
        capture_n(&store, 0..2);
    }
    // The tombstone was written, then the process died before anything was deleted.
    std::fs::create_dir_all(dir.path().join("purged")).unwrap();
    std::fs::write(
        dir.path().join("purged/2026-10.json"),
        br#"{"month":{"year":2026,"month":10},"purged_at":"","aggregate":{"checks":1}}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("keys/2026-10/leftover.key.tmp-1-2"), b"k").unwrap();
    let store = open(dir.path());
    assert!(store
        .health()
        .iter()
        .any(|n| n.kind == HealthKind::PurgeFinished));
    assert!(!dir.path().join("months/2026-10").exists());
    assert!(!dir.path().join("keys/2026-10").exists());
    assert_eq!(store.months().unwrap(), vec![nov()]);
}

#[test]
fn open_checks_and_counts_come_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    capture_n(&store, 0..20);
    for n in 0..15 {
        store
            .append_blocking(&format!("c{n}"), nov(), json!({"kind": "resolved"}))
            .unwrap();
    }
    let open_now = store.open_checks(nov()).unwrap();
    assert_eq!(open_now.len(), 5);
    let counts = store.counts(nov()).unwrap();
    assert_eq!((counts.checks, counts.open, counts.events), (20, 5, 35));
    let info = store.check_info(nov(), "c19").unwrap().unwrap();
    assert_eq!(info.events, 1);
    store
        .append_blocking("c19", nov(), json!({"kind": "answered"}))
        .unwrap();
    assert_eq!(store.check_info(nov(), "c19").unwrap().unwrap().events, 2);
    assert_eq!(store.month_of_check("c19").unwrap(), Some(nov()));
    assert_eq!(store.month_of_check("nope").unwrap(), None);
    drop(store);
    // The same after a restart, and after the index is rebuilt from the segments.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = open(dir.path());
    assert_eq!(store.open_checks(nov()).unwrap(), open_now);
    assert_eq!(store.counts(nov()).unwrap().open, 5);
}

#[test]
fn month_documents_follow_the_segments_and_survive_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    capture_n(&store, 0..30);
    assert_eq!(store.month_entries(nov()).unwrap().len(), 30);
    let done = store.maintain().unwrap();
    assert_eq!(done.documented, 0, "already caught up");
    store.compact_document(nov()).unwrap();
    capture_n(&store, 30..35);
    assert!(store.maintain().unwrap().documented >= 5);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.month_entries(nov()).unwrap().len(), 35);
    // A damaged document is rebuilt from the segments.
    drop(store);
    std::fs::write(dir.path().join("months/2026-11/doc.snapshot"), b"junk").unwrap();
    std::fs::remove_file(dir.path().join("months/2026-11/doc.changes")).ok();
    let store = open(dir.path());
    assert_eq!(store.month_entries(nov()).unwrap().len(), 35);
}

#[test]
fn devices_and_settings_are_small_shared_documents() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let me = store.device().id().to_string();
    assert!(store.devices().unwrap().contains_key(&me));
    store.set_setting("facility", "dental").unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = open(other_dir.path());
    other
        .merge_small("devices", &store.export_small("devices").unwrap())
        .unwrap();
    assert!(other.devices().unwrap().contains_key(&me));
    assert_eq!(other.devices().unwrap().len(), 2);
    assert!(other.merge_small("settings", b"not automerge").is_err());
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.settings().unwrap()["facility"], "dental");
}

#[test]
fn bad_check_ids_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for bad in ["", "has space", &"x".repeat(65), "改行\n"] {
        assert!(matches!(
            store.capture_blocking(bad, nov(), json!({})),
            Err(StoreError::BadCheckId(_))
        ));
    }
    assert!(store.months().unwrap().is_empty());
}

/// A purge decided on counts read earlier must not take a capture acknowledged since: the
/// daemon reads a month's counts, a back-dated reception check lands in that month, then the
/// pass purges.
#[test]
fn a_purge_decided_before_a_capture_does_not_take_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let oct = Month::new(2026, 10).unwrap();
    store.capture_blocking("o1", oct, json!({"n": 1})).unwrap();
    let seen = store.counts(oct).unwrap();
    // Acknowledged between the decision and the purge.
    store.capture_blocking("o2", oct, json!({"n": 2})).unwrap();
    assert!(!store
        .purge_if_unchanged(oct, &seen, &json!({"checks": 1}))
        .unwrap());
    assert!(!store.is_purged(oct));
    assert_eq!(store.check_ids(oct).unwrap().len(), 2);
    // Decided again on what is there now, the purge goes ahead.
    let seen = store.counts(oct).unwrap();
    assert!(store
        .purge_if_unchanged(oct, &seen, &json!({"checks": 2}))
        .unwrap());
    assert!(store.is_purged(oct));
}

/// The events of a check as (id, payload) pairs, checking every record opened.
fn events_of(store: &Store, month: Month, check: &str) -> Vec<(tsunagi_sync::EventId, String)> {
    let got = store.check_events(month, check).unwrap();
    assert!(got.rejected.is_empty(), "{check}: {:?}", got.rejected);
    got.events
        .iter()
        .map(|(id, e)| (*id, e.payload.to_string()))
        .collect()
}

/// The last 64 bytes of the first record of `check`: ciphertext only that record holds.
fn ciphertext_of(store: &Store, month: Month, check: &str) -> Vec<u8> {
    let ids: Vec<_> = store
        .check_events(month, check)
        .unwrap()
        .events
        .iter()
        .map(|(id, _)| *id)
        .collect();
    let bodies = store.record_bodies(month, &ids).unwrap();
    bodies[0].1[bodies[0].1.len() - 64..].to_vec()
}

/// Issue 10 item 4 (R20, カルテ持ち越し): one open check no longer keeps a whole month of
/// personal data. The canaries — the month's old key, a removed check's ciphertext and the
/// bytes of a torn write quarantined from the month — are found before and nowhere after,
/// while the kept check reads back as it was.
#[test]
fn carrying_a_month_over_leaves_no_trace_of_the_removed_checks() {
    let dir = tempfile::tempdir().unwrap();
    let oct = Month::new(2026, 10).unwrap();
    let torn = b"torn-write-canary-2026-10";
    {
        let store = open(dir.path());
        capture_n(&store, 0..3);
        store
            .capture_blocking("kept", oct, json!({"kind": "captured", "n": 1}))
            .unwrap();
        for n in 0..4 {
            let check = format!("gone{n}");
            store
                .capture_blocking(&check, oct, json!({"kind": "captured", "name": "カナリア"}))
                .unwrap();
            store
                .append_blocking(&check, oct, json!({"kind": "resolved"}))
                .unwrap();
        }
        store
            .append_blocking("kept", oct, json!({"kind": "answered", "n": 2}))
            .unwrap();
        store.compact_document(oct).unwrap();
        store.maintain().unwrap();
    }
    // A torn write at the end of the month's last segment: quarantined at the next open.
    let last = segments(dir.path(), oct).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(torn);
    std::fs::write(&last, &bytes).unwrap();
    let store = open(dir.path());
    assert!(!files_containing(&dir.path().join("quarantine"), torn).is_empty());

    let before = events_of(&store, oct, "kept");
    assert_eq!(before.len(), 2);
    let (_, old_key) = store.month_keys(oct).unwrap()[0];
    let removed_sealed = ciphertext_of(&store, oct, "gone2");
    let kept_sealed = ciphertext_of(&store, oct, "kept");
    // The canaries are there before.
    for canary in [&old_key[..], &removed_sealed, &kept_sealed, torn] {
        assert!(!files_containing(dir.path(), canary).is_empty());
    }
    let seen = store.counts(oct).unwrap();
    assert!(store
        .purge_except(oct, &seen, &["kept".to_string()], &json!({"checks": 4}))
        .unwrap());

    // Nothing of the removed checks is left: not the old key, not their ciphertext (nor
    // the kept check's old one: it was sealed again), not the quarantined bytes.
    for canary in [&old_key[..], &removed_sealed, &kept_sealed, torn] {
        assert_eq!(files_containing(dir.path(), canary), Vec::<PathBuf>::new());
    }
    assert!(all_files(dir.path())
        .iter()
        .all(|p| !p.to_string_lossy().contains(".tmp-")));
    assert!(!dir.path().join("months/2026-10/doc.snapshot").exists());
    // The kept check reads back as it was; the month is only the kept check now.
    assert_eq!(events_of(&store, oct, "kept"), before);
    assert_eq!(store.check_ids(oct).unwrap(), vec!["kept"]);
    assert_eq!(store.open_checks(oct).unwrap(), vec!["kept"]);
    let keys = store.month_keys(oct).unwrap();
    assert_eq!(keys.len(), 1);
    assert_ne!(keys[0].1, old_key);
    let kept_ids: Vec<_> = before.iter().map(|(id, _)| *id).collect();
    let mut entries: Vec<_> = store
        .month_entries(oct)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    entries.sort();
    let mut want = kept_ids.clone();
    want.sort();
    assert_eq!(
        entries, want,
        "the month document names the kept records only"
    );
    assert_eq!(store.verify().unwrap().problems, vec![]);
    drop(store);

    // The same after a restart, and after the index is rebuilt from the segments.
    let store = open(dir.path());
    assert!(store
        .health()
        .iter()
        .all(|n| !n.kind.is_damage() && n.kind != HealthKind::CarryOverFinished));
    assert_eq!(events_of(&store, oct, "kept"), before);
    drop(store);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = open(dir.path());
    assert_eq!(events_of(&store, oct, "kept"), before);
    assert_eq!(store.check_ids(oct).unwrap(), vec!["kept"]);
    assert_eq!(store.events(oct).unwrap().events.len(), 2);
    // The other month is untouched.
    assert_eq!(ns(&store, nov()), vec![0, 1, 2]);
}

#[test]
fn carried_counts_are_kept_and_join_the_months_purge() {
    let dir = tempfile::tempdir().unwrap();
    let oct = Month::new(2026, 10).unwrap();
    let store = open(dir.path());
    store
        .capture_blocking("open1", oct, json!({"kind": "captured"}))
        .unwrap();
    for n in 0..3 {
        let check = format!("done{n}");
        store
            .capture_blocking(&check, oct, json!({"kind": "captured"}))
            .unwrap();
        store
            .append_blocking(&check, oct, json!({"kind": "resolved"}))
            .unwrap();
    }
    let keep = ["open1".to_string(), "not-a-check".to_string()];
    let seen = store.counts(oct).unwrap();
    assert_eq!((seen.checks, seen.open, seen.events), (4, 1, 7));
    let removed = json!({"checks": 3, "by_card": 2, "note": "first"});
    assert!(store.purge_except(oct, &seen, &keep, &removed).unwrap());
    let counts = store.counts(oct).unwrap();
    assert_eq!((counts.checks, counts.open, counts.events), (1, 1, 1));
    assert_eq!(store.aggregates()[&oct], removed);
    assert!(!store.is_purged(oct));

    // Every check of the month kept: nothing changes, nothing is added.
    assert!(store
        .purge_except(oct, &counts, &keep, &json!({"checks": 0}))
        .unwrap());
    assert_eq!(store.aggregates()[&oct], removed);

    // A later carry-over adds its counts field-wise.
    store
        .capture_blocking("late", oct, json!({"kind": "captured"}))
        .unwrap();
    let seen = store.counts(oct).unwrap();
    assert!(store
        .purge_except(
            oct,
            &seen,
            &keep,
            &json!({"checks": 1, "by_card": 1, "note": "second"})
        )
        .unwrap());
    let carried = json!({"checks": 4, "by_card": 3, "note": "second"});
    assert_eq!(store.aggregates()[&oct], carried);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.aggregates()[&oct], carried, "kept across a restart");

    // The month's purge adds them into its tombstone.
    store
        .append_blocking("open1", oct, json!({"kind": "resolved"}))
        .unwrap();
    let seen = store.counts(oct).unwrap();
    assert!(store
        .purge_if_unchanged(
            oct,
            &seen,
            &json!({"checks": 1, "by_card": 0, "open": 0, "note": "last"})
        )
        .unwrap());
    let whole = json!({"checks": 5, "by_card": 3, "open": 0, "note": "last"});
    assert_eq!(store.aggregates()[&oct], whole);
    assert!(!dir.path().join("carried/2026-10.json").exists());
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.aggregates()[&oct], whole);
    assert_eq!(store.aggregates().len(), 1);

    // With `keep` empty it is purge_if_unchanged, carried counts included.
    let sep = Month::new(2026, 9).unwrap();
    for check in ["s1", "s2"] {
        store
            .capture_blocking(check, sep, json!({"kind": "captured"}))
            .unwrap();
    }
    let seen = store.counts(sep).unwrap();
    assert!(store
        .purge_except(sep, &seen, &["s1".to_string()], &json!({"checks": 1}))
        .unwrap());
    let seen = store.counts(sep).unwrap();
    assert!(store
        .purge_except(sep, &seen, &[], &json!({"checks": 1}))
        .unwrap());
    assert!(store.is_purged(sep));
    assert_eq!(store.aggregates()[&sep], json!({"checks": 2}));
}

#[test]
fn a_carried_month_takes_captures_sealed_with_the_carry_over_key() {
    let dir = tempfile::tempdir().unwrap();
    let oct = Month::new(2026, 10).unwrap();
    let store = open(dir.path());
    for check in ["kept", "gone"] {
        store
            .capture_blocking(check, oct, json!({"kind": "captured"}))
            .unwrap();
    }
    let seen = store.counts(oct).unwrap();
    assert!(store
        .purge_except(oct, &seen, &["kept".to_string()], &json!({"checks": 1}))
        .unwrap());
    // A back-dated reception check and a later event of the kept check.
    let late = store
        .capture_blocking("late", oct, json!({"kind": "captured"}))
        .unwrap();
    assert!(late.new);
    store
        .append_blocking("kept", oct, json!({"kind": "resolved"}))
        .unwrap();
    // Its retry is still recognised.
    assert!(
        !store
            .capture_blocking("late", oct, json!({"kind": "captured"}))
            .unwrap()
            .new
    );
    let (key_id, key) = store.month_keys(oct).unwrap()[0];
    assert_eq!(store.month_keys(oct).unwrap().len(), 1);
    // Its record is sealed with the carry-over key: it opens with it, as a peer would.
    let body = &store.record_bodies(oct, &[late.id]).unwrap()[0].1;
    assert_eq!(&body[2..10], &key_id.0[..]);
    let peer_dir = tempfile::tempdir().unwrap();
    let peer = open(peer_dir.path());
    peer.install_month_key(oct, key).unwrap();
    assert!(peer.receive(oct, body).unwrap().new);
    assert_eq!(store.check_ids(oct).unwrap(), vec!["kept", "late"]);
    assert_eq!(store.open_checks(oct).unwrap(), vec!["late"]);
    drop(store);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = open(dir.path());
    assert_eq!(store.check_ids(oct).unwrap(), vec!["kept", "late"]);
    assert_eq!(events_of(&store, oct, "kept").len(), 2);
    assert_eq!(store.verify().unwrap().problems, vec![]);
}

/// Like purge_if_unchanged: a carry-over decided on counts read before a capture does not
/// take it, and deletes nothing.
#[test]
fn a_carry_over_decided_before_a_capture_does_not_take_it() {
    let dir = tempfile::tempdir().unwrap();
    let oct = Month::new(2026, 10).unwrap();
    let store = open(dir.path());
    for check in ["kept", "gone"] {
        store
            .capture_blocking(check, oct, json!({"kind": "captured"}))
            .unwrap();
    }
    let seen = store.counts(oct).unwrap();
    let (_, key) = store.month_keys(oct).unwrap()[0];
    store
        .capture_blocking("back-dated", oct, json!({"kind": "captured"}))
        .unwrap();
    assert!(!store
        .purge_except(oct, &seen, &["kept".to_string()], &json!({"checks": 1}))
        .unwrap());
    assert_eq!(
        store.check_ids(oct).unwrap(),
        vec!["back-dated", "gone", "kept"]
    );
    assert_eq!(
        store.month_keys(oct).unwrap(),
        vec![(store.month_keys(oct).unwrap()[0].0, key)]
    );
    assert!(!store.aggregates().contains_key(&oct));
    assert!(!dir.path().join("carried").exists());
}

/// Finds checks by the `p` field of their latest event that has one, and counts them open
/// until resolved.
#[derive(Debug)]
struct ByPatient;

impl tsunagi_sync::store::Classifier for ByPatient {
    fn version(&self) -> u32 {
        1
    }

    fn classify(&self, id: &str, events: &[Event]) -> tsunagi_sync::store::CheckClass {
        tsunagi_sync::store::OpenUntilResolved.classify(id, events)
    }

    fn lookup_keys(&self, _id: &str, events: &[Event]) -> Vec<tsunagi_sync::store::LookupKey> {
        events
            .iter()
            .rev()
            .find_map(|e| e.payload["p"].as_str())
            .map(|p| {
                let mut k = [0u8; 16];
                k[..p.len()].copy_from_slice(p.as_bytes());
                vec![k]
            })
            .unwrap_or_default()
    }
}

fn patient(p: &str) -> tsunagi_sync::store::LookupKey {
    let mut k = [0u8; 16];
    k[..p.len()].copy_from_slice(p.as_bytes());
    k
}

#[test]
fn checks_are_found_by_lookup_key_until_their_month_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.classifier = std::sync::Arc::new(ByPatient);
    let open = || Store::open_waiting(&c, std::time::Duration::from_secs(10)).unwrap();
    let oct = Month::new(2026, 10).unwrap();
    let store = open();
    for (id, month, p) in [("c1", oct, "A"), ("c2", oct, "B"), ("c3", nov(), "A")] {
        store
            .capture_blocking(id, month, json!({"kind": "captured", "p": p}))
            .unwrap();
    }
    let found = |s: &Store, p: &str| s.checks_by_key(&patient(p)).unwrap();
    let ids = |v: &[(Month, &str)]| -> Vec<(Month, String)> {
        v.iter().map(|(m, i)| (*m, i.to_string())).collect()
    };
    assert_eq!(found(&store, "A"), ids(&[(nov(), "c3"), (oct, "c1")]));
    assert_eq!(found(&store, "B"), ids(&[(oct, "c2")]));
    assert!(found(&store, "Z").is_empty());
    // A later event that changes the key moves the check: the old key no longer finds it.
    store
        .append_blocking("c1", oct, json!({"kind": "answered", "p": "C"}))
        .unwrap();
    assert_eq!(found(&store, "A"), ids(&[(nov(), "c3")]));
    assert_eq!(found(&store, "C"), ids(&[(oct, "c1")]));
    drop(store);
    // Rebuilt from the segments, the index finds the same.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = open();
    assert_eq!(found(&store, "A"), ids(&[(nov(), "c3")]));
    assert_eq!(found(&store, "C"), ids(&[(oct, "c1")]));
    assert_eq!(found(&store, "B"), ids(&[(oct, "c2")]));
    // Retention: a carried-over check is still found; the rest of its month is not.
    let seen = store.counts(oct).unwrap();
    assert!(store
        .purge_except(oct, &seen, &["c1".to_string()], &json!({"checks": 1}))
        .unwrap());
    assert_eq!(found(&store, "C"), ids(&[(oct, "c1")]));
    assert!(found(&store, "B").is_empty());
    // The whole month gone: nothing of it is found.
    let seen = store.counts(oct).unwrap();
    assert!(store
        .purge_if_unchanged(oct, &seen, &json!({"checks": 1}))
        .unwrap());
    assert!(found(&store, "C").is_empty());
    assert_eq!(found(&store, "A"), ids(&[(nov(), "c3")]));
}
