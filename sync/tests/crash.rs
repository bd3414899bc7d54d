//! Crash safety: the writer is killed with SIGKILL at random points during appends and
//! compactions; after every restart the store opens and every acknowledged check is there,
//! exactly once. `TSUNAGI_CRASH_ITERATIONS` sets the number of kills (default 200; run a few
//! thousand by hand for a soak).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::Rng;
use tsunagi_sync::store::StoreConfig;
use tsunagi_sync::{Month, Store};

#[test]
fn sigkill_never_loses_an_acknowledged_check() {
    let iterations: usize = std::env::var("TSUNAGI_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let month = Month::new(2026, 11).unwrap();
    let mut acked: BTreeSet<String> = BTreeSet::new();
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
                if let Some(id) = line.strip_prefix("ack ") {
                    let _ = tx.send(id.to_string());
                }
            }
        });
        // Kill at a random moment, after a random number of acknowledgements (0..40).
        let wait_acks = rng.gen_range(0..40);
        let mut seen = 0;
        while seen < wait_acks {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(id) => {
                    acked.insert(id);
                    seen += 1;
                }
                Err(_) => panic!("round {round}: the writer stopped acknowledging"),
            }
        }
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..3000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(rx.try_iter());

        let store = Store::open(&StoreConfig::new(dir.path()))
            .unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
        let events = store.events(month).unwrap();
        assert!(
            events.rejected.is_empty(),
            "round {round}: {:?}",
            events.rejected
        );
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (_, e) in &events.events {
            *counts.entry(e.check_id.clone()).or_default() += 1;
        }
        for id in &acked {
            assert_eq!(
                counts.get(id),
                Some(&1),
                "round {round}: acknowledged check {id} lost or doubled"
            );
        }
        next = counts
            .keys()
            .filter_map(|k| k.strip_prefix('c')?.parse::<u64>().ok())
            .max()
            .map_or(next, |m| m + 1)
            .max(next);
        drop(store);
    }
    assert!(
        acked.len() > iterations,
        "the writer made progress: {}",
        acked.len()
    );
}
