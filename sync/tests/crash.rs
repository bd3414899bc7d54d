//! Concurrent crash torture, as a real process: `store-torture` runs four capturers, a
//! reconciler, document maintenance with tiny segments and compaction thresholds, and now
//! and then a purge, and is killed with SIGKILL at random points. After every kill the
//! store opens, every acknowledged capture is there exactly once, every acknowledged event
//! is there, no month is unreadable, nothing was set aside as damage, and a purged month
//! left no file behind.
//!
//! `TSUNAGI_CRASH_ITERATIONS` sets the number of kills (default 200; a soak runs 1,000 or
//! more). Each round checks what it added; twenty times in a run (at least every tenth
//! round) and at the end, everything acknowledged so far is checked again — so a run costs
//! about what it wrote, not the square of its history.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;
use support::{assert_all_there, assert_no_damage, captures_of, record, Acked, Torture};
use tsunagi_sync::store::StoreConfig;
use tsunagi_sync::{Month, Store};

#[test]
fn sigkill_never_loses_an_acknowledged_write() {
    let iterations: usize = std::env::var("TSUNAGI_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Acked::default();
    let mut purged: BTreeSet<Month> = BTreeSet::new();
    let mut rng = rand::thread_rng();
    let mut next = 0u64;
    for round in 0..iterations {
        let context = format!("round {round}");
        let torture = Torture::start(dir.path(), next);
        // Kill at a random moment, after a random number of acknowledgements (0..60).
        let mut lines = torture.wait_for(rng.gen_range(0..60), &context);
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..5000)));
        lines.extend(torture.kill(&context, || {}));

        let store = Store::open_waiting(&StoreConfig::new(dir.path()), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{context}: store does not open: {e}"));
        assert_no_damage(&store, &context);
        let mut this_round = Acked::default();
        purged.extend(record(lines, &mut this_round, &mut next));
        // Round numbers also advance the start, so successive writers never share ids.
        next += 4;
        for (check, month) in &this_round.captures {
            assert_eq!(
                captures_of(&store, *month, check, &context),
                1,
                "{context}: acknowledged capture {check} of {month} lost or doubled"
            );
        }
        acked.captures.extend(this_round.captures);
        acked.events.extend(this_round.events);
        let every = (iterations / 20).max(10);
        if round % every == every - 1 || round + 1 == iterations {
            assert_all_there(&store, &acked, &context);
            for month in store.months().unwrap() {
                let counts = store.counts(month).unwrap();
                assert_eq!(
                    counts.checks as usize,
                    store.check_ids(month).unwrap().len(),
                    "{context}: counts of {month}"
                );
                assert_eq!(
                    counts.open as usize,
                    store.open_checks(month).unwrap().len(),
                    "{context}: open count of {month}"
                );
            }
        }
        for month in &purged {
            assert!(store.is_purged(*month), "{context}: {month} came back");
        }
        // Every tombstoned month — also one whose purge the kill interrupted — is gone.
        for month in store.aggregates().keys() {
            for gone in [format!("months/{month}"), format!("keys/{month}")] {
                assert!(
                    !dir.path().join(&gone).exists(),
                    "{context}: {gone} outlived its purge"
                );
            }
        }
        drop(store);
    }
    eprintln!(
        "{iterations} kills: {} captures, {} later events, {} months purged, {} records verified",
        acked.captures.len(),
        acked.events.len(),
        purged.len(),
        Store::open_waiting(&StoreConfig::new(dir.path()), Duration::from_secs(10))
            .unwrap()
            .verify()
            .unwrap()
            .records
    );
    assert!(
        acked.captures.len() > iterations,
        "the writer made progress: {}",
        acked.captures.len()
    );
    assert!(!acked.events.is_empty(), "the reconciler made progress");
}
