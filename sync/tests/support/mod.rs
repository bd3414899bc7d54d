//! What the crash, power-cut and fault tests share: the record of what was acknowledged,
//! the check that all of it is there exactly once, and driving `store-torture`.

// Each test binary uses a part of this.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tsunagi_sync::{EventId, Month, Store};

/// What was acknowledged: captures (check → month) and later events.
#[derive(Debug, Default, Clone)]
pub struct Acked {
    /// Captures, by check id.
    pub captures: BTreeMap<String, Month>,
    /// Later events: check, month, event id.
    pub events: Vec<(String, Month, EventId)>,
}

/// How many `captured` events check `check` of `month` has (its records all open).
pub fn captures_of(store: &Store, month: Month, check: &str, context: &str) -> usize {
    let events = store.check_events(month, check).unwrap();
    assert!(
        events.rejected.is_empty(),
        "{context}: {check}: {:?}",
        events.rejected
    );
    events
        .events
        .iter()
        .filter(|(_, e)| e.payload["kind"] == "captured")
        .count()
}

/// Every acknowledged capture is there exactly once, every acknowledged event is there,
/// every record opens, and nothing was repaired as damage.
pub fn assert_all_there(store: &Store, acked: &Acked, context: &str) {
    for (check, month) in &acked.captures {
        assert_eq!(
            captures_of(store, *month, check, context),
            1,
            "{context}: acknowledged capture {check} of {month} lost or doubled"
        );
    }
    for (check, month, id) in &acked.events {
        let events = store.check_events(*month, check).unwrap();
        assert!(
            events.events.iter().any(|(e, _)| e == id),
            "{context}: acknowledged event {id} of {check} lost"
        );
    }
    let report = store.verify().unwrap();
    assert!(
        report.problems.is_empty(),
        "{context}: {:?}",
        report.problems
    );
    assert_no_damage(store, context);
}

/// Recovery repaired no damage (a crash or a power cut is not damage).
pub fn assert_no_damage(store: &Store, context: &str) {
    let damage: Vec<_> = store
        .health()
        .into_iter()
        .filter(|n| n.kind.is_damage())
        .collect();
    assert!(damage.is_empty(), "{context}: {damage:?}");
}

/// A line `store-torture` prints once something is acknowledged.
#[derive(Debug)]
pub enum Line {
    /// A capture: check, month.
    Ack(String, Month),
    /// A later event: check, month, event id.
    Add(String, Month, EventId),
    /// A month purged.
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

/// A running `store-torture` and what it acknowledged so far.
pub struct Torture {
    child: Child,
    lines: mpsc::Receiver<Line>,
    reader: std::thread::JoinHandle<()>,
}

impl Torture {
    /// Starts it on `dir`, check ids from `start`.
    pub fn start(dir: &Path, start: u64) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-torture"))
            .arg(dir)
            .arg(start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(parsed) = parse(&line) {
                    let _ = tx.send(parsed);
                }
            }
        });
        Self {
            child,
            lines,
            reader,
        }
    }

    /// Waits until `captures` captures are acknowledged; returns every line so far.
    pub fn wait_for(&self, captures: usize, context: &str) -> Vec<Line> {
        let mut lines = Vec::new();
        let mut acks = 0;
        while acks < captures {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("{context}: the writer stopped acknowledging"));
            acks += usize::from(matches!(line, Line::Ack(..)));
            lines.push(line);
        }
        lines
    }

    /// Kills it with SIGKILL, runs `at_death` (while nothing else has happened yet), and
    /// returns the lines printed since the last `wait_for`.
    pub fn kill(mut self, context: &str, at_death: impl FnOnce()) -> Vec<Line> {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "{context}: the writer exited by itself ({status}); see its stderr above"
        );
        at_death();
        self.reader.join().unwrap();
        self.lines.try_iter().collect()
    }
}

/// Adds the acknowledgements of `lines` to `acked`; returns the next free check number and
/// the months purged.
pub fn record(lines: Vec<Line>, acked: &mut Acked, next: &mut u64) -> Vec<Month> {
    let mut purged = Vec::new();
    for line in lines {
        match line {
            Line::Ack(check, month) => {
                *next = (*next).max(check[1..].parse::<u64>().unwrap() + 1);
                acked.captures.insert(check, month);
            }
            Line::Add(check, month, id) => acked.events.push((check, month, id)),
            Line::Purged(month) => purged.push(month),
        }
    }
    purged
}
