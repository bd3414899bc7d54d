//! Concurrent crash torture, as a real process: `store-torture` runs four capturers, a
//! reconciler, document maintenance with tiny segments and compaction thresholds, and now
//! and then a purge, and is killed with SIGKILL at random points. After every kill the
//! store opens, every acknowledged capture is there exactly once, every acknowledged event
//! is there, no month is unreadable, nothing was set aside as damage, and a purged month
//! left no file behind.
//!
//! `TSUNAGI_CRASH_ITERATIONS` sets the number of kills (default 200; `scripts/soak.sh`
//! runs 1,000 or more). Each round checks what it added plus, every tenth round and at the
//! end, everything acknowledged so far — so a round costs what it wrote, not the history.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::Rng;
use tsunagi_sync::store::StoreConfig;
use tsunagi_sync::{EventId, Month, Store};

#[derive(Debug)]
enum Line {
    Ack(String, Month),
    Add(String, Month, EventId),
    Purged(Month),
}

fn parse(line: &str) -> Option<Line> {
    let mut w = line.split_whitespace();
    match w.next()? {
        "ack" => Some(Line::Ack(w.next()?.to_string(), w.next()?.parse().ok()?)),
        "add" => Some(Line::Add(
            w.next()?.to_string(),
            w.next()?.parse().ok()?,
            w.next()?.parse().ok()?,
        )),
        "purged" => Some(Line::Purged(w.next()?.parse().ok()?)),
        _ => None,
    }
}

fn check_capture(store: &Store, round: usize, check: &str, month: Month) {
    let events = store.check_events(month, check).unwrap();
    assert!(
        events.rejected.is_empty(),
        "round {round}: {check}: {:?}",
        events.rejected
    );
    let captures = events
        .events
        .iter()
        .filter(|(_, e)| e.payload["kind"] == "captured")
        .count();
    assert_eq!(
        captures, 1,
        "round {round}: acknowledged capture {check} of {month} lost or doubled"
    );
}

#[test]
fn sigkill_never_loses_an_acknowledged_write() {
    let iterations: usize = std::env::var("TSUNAGI_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let mut captures: BTreeMap<String, Month> = BTreeMap::new();
    let mut added: Vec<(String, Month, EventId)> = Vec::new();
    let mut purged: BTreeSet<Month> = BTreeSet::new();
    let mut rng = rand::thread_rng();
    let mut next = 0u64;
    for round in 0..iterations {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-torture"))
            .arg(dir.path())
            .arg(next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(parsed) = parse(&line) {
                    let _ = tx.send(parsed);
                }
            }
        });
        // Kill at a random moment, after a random number of acknowledgements (0..60).
        let wait_acks = rng.gen_range(0..60);
        let mut lines = Vec::new();
        while lines.len() < wait_acks {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) => lines.push(l),
                Err(_) => panic!("round {round}: the writer stopped acknowledging"),
            }
        }
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..5000)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "round {round}: the writer exited by itself ({status}); see its stderr above"
        );
        reader.join().unwrap();
        lines.extend(rx.try_iter());

        let store = Store::open_waiting(&StoreConfig::new(dir.path()), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
        let damage: Vec<_> = store
            .health()
            .into_iter()
            .filter(|n| n.kind.is_damage())
            .collect();
        assert!(damage.is_empty(), "round {round}: {damage:?}");
        let mut new_captures = Vec::new();
        for line in lines {
            match line {
                Line::Ack(check, month) => {
                    next = next.max(check[1..].parse::<u64>().unwrap() + 1);
                    captures.insert(check.clone(), month);
                    new_captures.push((check, month));
                }
                Line::Add(check, month, id) => added.push((check, month, id)),
                Line::Purged(month) => {
                    purged.insert(month);
                }
            }
        }
        // Round numbers also advance the start, so successive writers never share ids.
        next += 4;
        for (check, month) in &new_captures {
            check_capture(&store, round, check, *month);
        }
        let full = round % 10 == 9 || round + 1 == iterations;
        if full {
            for (check, month) in &captures {
                check_capture(&store, round, check, *month);
            }
            for (check, month, id) in &added {
                let events = store.check_events(*month, check).unwrap();
                assert!(
                    events.events.iter().any(|(e, _)| e == id),
                    "round {round}: acknowledged event {id} of {check} lost"
                );
            }
            let report = store.verify().unwrap();
            assert!(
                report.problems.is_empty(),
                "round {round}: {:?}",
                report.problems
            );
            for month in store.months().unwrap() {
                let counts = store.counts(month).unwrap();
                assert_eq!(
                    counts.checks as usize,
                    store.check_ids(month).unwrap().len(),
                    "round {round}: counts of {month}"
                );
                assert_eq!(
                    counts.open as usize,
                    store.open_checks(month).unwrap().len(),
                    "round {round}: open count of {month}"
                );
            }
        }
        for month in &purged {
            assert!(store.is_purged(*month), "round {round}: {month} came back");
        }
        // Every tombstoned month — also one whose purge the kill interrupted — is gone.
        for month in store.aggregates().keys() {
            for gone in [format!("months/{month}"), format!("keys/{month}")] {
                assert!(
                    !dir.path().join(&gone).exists(),
                    "round {round}: {gone} outlived its purge"
                );
            }
        }
        drop(store);
    }
    eprintln!(
        "{iterations} kills: {} captures, {} later events, {} months purged, {} records verified",
        captures.len(),
        added.len(),
        purged.len(),
        Store::open_waiting(&StoreConfig::new(dir.path()), Duration::from_secs(10))
            .unwrap()
            .verify()
            .unwrap()
            .records
    );
    assert!(
        captures.len() > iterations,
        "the writer made progress: {}",
        captures.len()
    );
    assert!(!added.is_empty(), "the reconciler made progress");
}
