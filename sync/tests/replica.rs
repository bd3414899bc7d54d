//! Convergence of the sync protocol (`replica::Session`), in memory: real stores (on the
//! simulated file system, sled in a temp dir), messages carried by queues instead of QUIC,
//! so many random histories run per test. Each case prints its seed when it fails;
//! `TSUNAGI_REPLICA_CASES` sets how many run, `TSUNAGI_REPLICA_SEED` the first seed.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use automerge::sync::SyncDoc;
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc, ScalarValue, ROOT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tsunagi_sync::replica::{Host, Message, Session, SessionError};
use tsunagi_sync::store::{DocError, StoreConfig, SyncState};
use tsunagi_sync::vfs::sim::SimFs;
use tsunagi_sync::vfs::Vfs;
use tsunagi_sync::{DeviceId, DeviceKey, Event, Month, SharedDoc, SignedEvent, Store, StoreError};

/// Ends a month when a peer did (what tsunagid's host does once it checked the month's
/// retention).
struct PurgeToo;

impl Host for PurgeToo {
    fn purge_month(&self, store: &Store, month: Month) -> Result<bool, StoreError> {
        store.purge(month, &json!({}))?;
        Ok(true)
    }
}

fn month(m: u32) -> Month {
    Month::new(2026, m).unwrap()
}

struct Device {
    store: Store,
    config: StoreConfig,
    _index: tempfile::TempDir,
}

impl Device {
    /// The store closed and opened again (as after a restart).
    fn reopen(self) -> Self {
        let Device {
            store,
            config,
            _index,
        } = self;
        drop(store);
        Device {
            store: Store::open(&config).unwrap(),
            config,
            _index,
        }
    }
}

fn device() -> Device {
    let fs = SimFs::new();
    let index = tempfile::tempdir().unwrap();
    let vfs: Arc<dyn Vfs> = fs;
    let mut c = StoreConfig::new(Path::new("/data"));
    c.vfs = vfs;
    c.index_dir = index.path().join("index");
    c.segment_bytes = 64 * 1024;
    c.compact_bytes = 8 * 1024;
    Device {
        store: Store::open(&c).unwrap(),
        config: c,
        _index: index,
    }
}

/// The session on each side of a link and the queue towards each side (to b, to a).
type Up = (Session, Session, VecDeque<Vec<u8>>, VecDeque<Vec<u8>>);

/// A link between devices `a` and `b`: a session on each side and a queue each way, while
/// it is up.
struct Link {
    a: usize,
    b: usize,
    up: Option<Up>,
}

struct World {
    devices: Vec<Device>,
    links: Vec<Link>,
    host: Arc<dyn Host>,
    seed: u64,
}

impl World {
    fn new(n: usize, seed: u64) -> Self {
        let devices: Vec<Device> = (0..n).map(|_| device()).collect();
        let mut links = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                links.push(Link { a, b, up: None });
            }
        }
        Self {
            devices,
            links,
            host: Arc::new(PurgeToo),
            seed,
        }
    }

    fn id(&self, d: usize) -> DeviceId {
        self.devices[d].store.device().id().clone()
    }

    fn connect(&mut self, l: usize) {
        if self.links[l].up.is_some() {
            return;
        }
        let (a, b) = (self.links[l].a, self.links[l].b);
        let mut sa = Session::new(self.id(b), self.host.clone());
        let mut sb = Session::new(self.id(a), self.host.clone());
        // What a link's write queue lets each step hand out: unlimited, one record at a
        // time, or a few; the rest goes when the queue "drains" (see `deliver`).
        let budget = match self.seed % 3 {
            0 => usize::MAX,
            1 => 1,
            _ => 4096,
        };
        sa.set_send_budget(budget);
        sb.set_send_budget(budget);
        let to_b: VecDeque<Vec<u8>> = sa
            .start(&self.devices[a].store)
            .unwrap()
            .iter()
            .map(Message::encode)
            .collect();
        let to_a: VecDeque<Vec<u8>> = sb
            .start(&self.devices[b].store)
            .unwrap()
            .iter()
            .map(Message::encode)
            .collect();
        self.links[l].up = Some((sa, sb, to_b, to_a));
    }

    fn disconnect(&mut self, l: usize) {
        self.links[l].up = None;
    }

    /// Device `d` changed: each of its sessions says what its peer now lacks.
    fn changed(&mut self, d: usize, except: Option<usize>) {
        for l in 0..self.links.len() {
            if Some(l) == except {
                continue;
            }
            let link = &mut self.links[l];
            let Some((sa, sb, to_b, to_a)) = link.up.as_mut() else {
                continue;
            };
            if link.a == d {
                to_b.extend(
                    sa.local_change(&self.devices[d].store)
                        .unwrap()
                        .iter()
                        .map(Message::encode),
                );
            } else if link.b == d {
                to_a.extend(
                    sb.local_change(&self.devices[d].store)
                        .unwrap()
                        .iter()
                        .map(Message::encode),
                );
            }
        }
    }

    /// Delivers one message on link `l` (from a side with something queued); false if
    /// nothing was queued.
    fn deliver(&mut self, l: usize, prefer_a: bool) -> bool {
        let link = &mut self.links[l];
        let (a, b) = (link.a, link.b);
        let Some((sa, sb, to_b, to_a)) = link.up.as_mut() else {
            return false;
        };
        // A side whose queue has drained sends the records it still owes, as a link does
        // when its writer says so.
        if to_b.is_empty() && sa.has_unsent() {
            to_b.extend(
                sa.send_more(&self.devices[a].store)
                    .unwrap()
                    .iter()
                    .map(Message::encode),
            );
        }
        if to_a.is_empty() && sb.has_unsent() {
            to_a.extend(
                sb.send_more(&self.devices[b].store)
                    .unwrap()
                    .iter()
                    .map(Message::encode),
            );
        }
        let a_first = prefer_a && !to_b.is_empty() || to_a.is_empty();
        let (receiver, session, out, bytes) = if a_first {
            let Some(m) = to_b.pop_front() else {
                return false;
            };
            (b, sb, to_a, m)
        } else {
            let Some(m) = to_a.pop_front() else {
                return false;
            };
            (a, sa, to_b, m)
        };
        let before = session.stats().records_in;
        let (send, refused) = session
            .receive(&self.devices[receiver].store, &bytes)
            .unwrap_or_else(|e| panic!("seed {}: session failed: {e}", self.seed));
        assert!(
            refused.is_empty(),
            "seed {}: refused {refused:?}",
            self.seed
        );
        out.extend(send.iter().map(Message::encode));
        if session.stats().records_in != before {
            // New records here: pass them on to the receiver's other peers.
            self.changed(receiver, Some(l));
        }
        true
    }

    /// Connects everything and delivers until nothing is queued.
    fn settle(&mut self) {
        for l in 0..self.links.len() {
            self.connect(l);
        }
        for round in 0.. {
            assert!(round < 100_000, "seed {}: sync does not settle", self.seed);
            let mut any = false;
            for l in 0..self.links.len() {
                while self.deliver(l, round % 2 == 0) {
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
    }

    /// Every device holds the same months, the same records and the same events.
    fn assert_converged(&self) {
        let first = snapshot(&self.devices[0].store);
        for (i, d) in self.devices.iter().enumerate().skip(1) {
            let other = snapshot(&d.store);
            assert_eq!(
                first.keys().collect::<Vec<_>>(),
                other.keys().collect::<Vec<_>>(),
                "seed {}: device {i} holds other months",
                self.seed
            );
            for (m, events) in &first {
                assert_eq!(
                    events, &other[m],
                    "seed {}: device {i} differs in {m}",
                    self.seed
                );
            }
        }
        for link in &self.links {
            let (sa, sb, _, _) = link.up.as_ref().unwrap();
            assert_eq!(
                (sa.behind_docs(), sb.behind_docs()),
                (vec![], vec![]),
                "seed {}: a session is behind ({} / {})",
                self.seed,
                link.a,
                link.b
            );
        }
    }
}

/// Month → (check, event id, signer, payload) of every event.
fn snapshot(store: &Store) -> BTreeMap<Month, BTreeSet<(String, String, String, String)>> {
    let mut out = BTreeMap::new();
    for m in store.months().unwrap() {
        let events = store.events(m).unwrap();
        assert!(events.rejected.is_empty(), "{:?}", events.rejected);
        out.insert(
            m,
            events
                .events
                .iter()
                .map(|(id, e)| {
                    (
                        e.check_id.clone(),
                        id.to_string(),
                        e.device.to_string(),
                        e.payload.to_string(),
                    )
                })
                .collect(),
        );
    }
    out
}

fn cases(default: u64) -> (u64, u64) {
    let n = std::env::var("TSUNAGI_REPLICA_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    let seed = std::env::var("TSUNAGI_REPLICA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    (seed, n)
}

/// A random history: captures and reconciliations on random devices in two months, links
/// going down and up, messages delivered in random order; then everything connects.
fn random_history(devices: usize, steps: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = World::new(devices, seed);
    let mut checks: Vec<(Month, String)> = Vec::new();
    for step in 0..steps {
        match rng.gen_range(0..10) {
            0..=2 => {
                let d = rng.gen_range(0..devices);
                let m = month(rng.gen_range(10..=11));
                let id = format!("c{seed}-{step}");
                w.devices[d]
                    .store
                    .capture_blocking(&id, m, json!({"captured": {"device": d}}))
                    .unwrap();
                checks.push((m, id));
                w.changed(d, None);
            }
            3 if !checks.is_empty() => {
                // A reconciliation, possibly of the same check on two devices apart.
                let d = rng.gen_range(0..devices);
                let (m, id) = checks[rng.gen_range(0..checks.len())].clone();
                w.devices[d]
                    .store
                    .append_blocking(&id, m, json!({"resolved": {"by": d, "step": step}}))
                    .unwrap();
                w.changed(d, None);
            }
            4 => {
                let l = rng.gen_range(0..w.links.len());
                if w.links[l].up.is_some() {
                    w.disconnect(l);
                } else {
                    w.connect(l);
                }
            }
            _ => {
                let l = rng.gen_range(0..w.links.len());
                let prefer = rng.gen_bool(0.5);
                for _ in 0..rng.gen_range(1..6) {
                    w.deliver(l, prefer);
                }
            }
        }
    }
    w.settle();
    w.assert_converged();
    // Every check captured anywhere is everywhere.
    for d in &w.devices {
        for (m, id) in &checks {
            assert!(
                !d.store.check_events(*m, id).unwrap().events.is_empty(),
                "seed {seed}: {id} missing"
            );
        }
    }
}

#[test]
fn two_devices_converge_after_random_partitions() {
    let (seed, n) = cases(30);
    for s in seed..seed + n {
        random_history(2, 60, s);
    }
}

#[test]
fn five_devices_converge_after_random_partitions() {
    let (seed, n) = cases(8);
    for s in seed..seed + n {
        random_history(5, 80, s);
    }
}

#[test]
fn a_month_purged_while_a_peer_was_away_stays_purged() {
    let mut w = World::new(2, 0);
    let m = month(9);
    w.devices[0]
        .store
        .capture_blocking("old", m, json!({"captured": {}}))
        .unwrap();
    w.settle();
    w.assert_converged();
    // Apart: device 0 ends the month; device 1 still writes to it.
    w.disconnect(0);
    w.devices[0].store.purge(m, &json!({"checks": 1})).unwrap();
    w.devices[1]
        .store
        .append_blocking("old", m, json!({"resolved": {}}))
        .unwrap();
    w.settle();
    for (i, d) in w.devices.iter().enumerate() {
        assert!(d.store.is_purged(m), "device {i} still holds {m}");
        assert!(!d.store.months().unwrap().contains(&m), "device {i}");
        assert!(d.store.month_keys(m).unwrap_or_default().is_empty());
    }
    // And it stays so: more rounds bring nothing back.
    w.changed(1, None);
    w.changed(0, None);
    w.settle();
    assert!(!w.devices[0].store.months().unwrap().contains(&m));
}

/// A paired peer that sends records signed by a device the clinic does not know, a
/// record whose bytes differ from its digest, and a message that is not one.
#[test]
fn bad_records_are_refused_and_the_session_goes_on() {
    let honest = device();
    let target = device();
    let m = month(11);
    honest
        .store
        .capture_blocking("good", m, json!({"captured": {}}))
        .unwrap();
    let host: Arc<dyn Host> = Arc::new(PurgeToo);
    let mut from = Session::new(target.store.device().id().clone(), host.clone());
    let mut to = Session::new(honest.store.device().id().clone(), host);
    // Hello and the first round, so the target knows the month and its key.
    let mut queue: VecDeque<(bool, Vec<u8>)> = from
        .start(&honest.store)
        .unwrap()
        .iter()
        .map(|m| (true, m.encode()))
        .collect();
    queue.extend(
        to.start(&target.store)
            .unwrap()
            .iter()
            .map(|m| (false, m.encode())),
    );
    // Before the records reach the target, tamper with them on the way.
    let stranger = DeviceKey::generate();
    let mut tampered = 0;
    while let Some((to_target, bytes)) = queue.pop_front() {
        let bytes = match Message::decode(&bytes).unwrap() {
            Message::Records { month, mut bodies } if to_target => {
                // A record by a stranger, sealed with the month's real key (a paired
                // peer holds it), and a good record with one byte changed.
                let key = honest.store.month_keys(month).unwrap()[0].1;
                let event = Event {
                    check_id: "forged".into(),
                    month,
                    at: tsunagi_sync::Timestamp {
                        wall_ms: month.start_ms() + 1000,
                        counter: 0,
                    },
                    device: stranger.id().clone(),
                    payload: json!({"captured": {}}),
                };
                let signed = SignedEvent::sign(&event, &stranger).unwrap();
                bodies.push(tsunagi_sync::store::seal_record(month, &key, &signed));
                let mut changed = bodies[0].clone();
                let last = changed.len() - 1;
                changed[last] ^= 1;
                bodies.insert(0, changed);
                tampered += 1;
                Message::Records { month, bodies }.encode()
            }
            other => other.encode(),
        };
        let (store, session) = if to_target {
            (&target.store, &mut to)
        } else {
            (&honest.store, &mut from)
        };
        let (send, refused) = session.receive(store, &bytes).unwrap();
        if tampered == 1 && refused.len() == 2 {
            tampered += 1;
            assert!(
                refused[0].what.contains("differs from its digest"),
                "{refused:?}"
            );
            // A forged record the peer's document does not name is refused before it is
            // even opened.
            assert!(
                refused[1].what.contains("not in the month document"),
                "{refused:?}"
            );
        } else {
            assert!(refused.is_empty(), "{refused:?}");
        }
        queue.extend(send.iter().map(|m| (!to_target, m.encode())));
    }
    assert_eq!(tampered, 2, "the records were tampered with and refused");
    // The good record arrived; neither bad one did.
    let events = target.store.events(m).unwrap();
    let checks: BTreeSet<String> = events
        .events
        .iter()
        .map(|(_, e)| e.check_id.clone())
        .collect();
    assert_eq!(checks, BTreeSet::from(["good".to_string()]));
    assert_eq!(to.stats().refused, 2);
    // A message that is not one ends the session.
    assert!(matches!(
        to.receive(&target.store, &[99, 1, 2]),
        Err(SessionError::Wire(_))
    ));
    // Another protocol version too.
    let mut fresh = Session::new(honest.store.device().id().clone(), Arc::new(PurgeToo));
    let hello = Message::Hello {
        protocol: 9,
        months: vec![],
        purged: vec![],
    };
    assert!(matches!(
        fresh.receive(&target.store, &hello.encode()),
        Err(SessionError::Protocol(9))
    ));
}

/// A record signed by a device that is not one of the clinic's is refused even when the
/// document names it (a paired peer that put it there).
#[test]
fn a_record_by_a_stranger_is_refused() {
    let target = device();
    let m = month(11);
    target
        .store
        .capture_blocking("mine", m, json!({"captured": {}}))
        .unwrap();
    let key = target.store.month_keys(m).unwrap()[0].1;
    let stranger = DeviceKey::generate();
    let event = Event {
        check_id: "forged".into(),
        month: m,
        at: tsunagi_sync::Timestamp {
            wall_ms: m.start_ms() + 1000,
            counter: 0,
        },
        device: stranger.id().clone(),
        payload: json!({"captured": {}}),
    };
    let body =
        tsunagi_sync::store::seal_record(m, &key, &SignedEvent::sign(&event, &stranger).unwrap());
    let signers = std::collections::HashSet::from([target.store.device().id().clone()]);
    let checks = tsunagi_sync::store::ReceiveChecks {
        expected: None,
        signers: Some(&signers),
    };
    let answers = target
        .store
        .receive_many(m, std::slice::from_ref(&body), &checks);
    assert!(
        matches!(&answers[0], Err(StoreError::UnknownSigner(d)) if d == stranger.id()),
        "{answers:?}"
    );
    assert!(target
        .store
        .check_events(m, "forged")
        .unwrap()
        .events
        .is_empty());
    // Once the clinic knows the device, the same record is taken.
    let signers = std::collections::HashSet::from([stranger.id().clone()]);
    let checks = tsunagi_sync::store::ReceiveChecks {
        expected: None,
        signers: Some(&signers),
    };
    let answers = target.store.receive_many(m, &[body], &checks);
    assert!(answers[0].as_ref().unwrap().new);
    assert_eq!(
        target.store.check_events(m, "forged").unwrap().events.len(),
        1
    );
}

/// Two devices' endpoints on loopback, each allowing the other, and `b` connected to `a`:
/// (`a`'s endpoint, `b`'s, `a`'s side of the connection, `b`'s).
async fn connected(
    a: &DeviceKey,
    b: &DeviceKey,
) -> (
    tsunagi_sync::net::Endpoint,
    tsunagi_sync::net::Endpoint,
    tsunagi_sync::net::PeerConnection,
    tsunagi_sync::net::PeerConnection,
) {
    use tsunagi_sync::net::{Allowlist, Endpoint};
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let a_ep = Endpoint::bind(any, a, [b.id().clone()].into_iter().collect()).unwrap();
    let b_ep = Endpoint::bind(any, b, Allowlist::new()).unwrap();
    b_ep.allowlist().add(a.id().clone());
    let addr = a_ep.local_addr().unwrap();
    let (accepted, dialled) = tokio::join!(a_ep.accept(), b_ep.connect(addr, a.id()));
    (a_ep, b_ep, accepted.unwrap().unwrap(), dialled.unwrap())
}

/// Over real QUIC, two devices that each hold more megabytes than a link lets wait in its
/// write queue (`WRITE_QUEUE_BYTES`), the other lacking all of it (each side's records fill
/// the other's flow-control windows at once, and each side hands its records out as its
/// queue drains), both end with everything.
#[test]
fn two_devices_each_sending_the_other_a_month_over_quic_both_finish() {
    use std::time::Duration;
    use tokio::sync::watch;
    use tsunagi_sync::replica::link::Link;

    let (a, b) = (device(), device());
    // About 6 KB a record: 2,500 of them are more than half again a full write queue.
    let payload = json!({"captured": {"note": "x".repeat(6000)}});
    const { assert!(2500 * 6000 > tsunagi_sync::replica::link::WRITE_QUEUE_BYTES * 3 / 2) };
    for i in 0..2500 {
        a.store
            .capture_blocking(&format!("a{i}"), month(10), payload.clone())
            .unwrap();
        b.store
            .capture_blocking(&format!("b{i}"), month(11), payload.clone())
            .unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Only `a` is told to stop: `b` learns it from `a`'s orderly close.
        let (stop, stopping) = watch::channel(false);
        let (_never, not_stopping) = watch::channel(false);
        let link = |store: &Store, stopping: &watch::Receiver<bool>| Link {
            store: store.clone(),
            changed: watch::channel(0u64).0,
            stopping: stopping.clone(),
            observe: Arc::new(|_: &Session| {}),
            on_received: Arc::new(|| {}),
        };
        let (a_link, b_link) = (link(&a.store, &stopping), link(&b.store, &not_stopping));
        let (a_ep, b_ep, a_conn, b_conn) = connected(a.store.device(), b.store.device()).await;
        let host: Arc<dyn Host> = Arc::new(PurgeToo);
        let a_task = {
            let session = Session::new(a_conn.peer.clone(), host.clone());
            tokio::spawn(async move { a_link.run(&a_conn, false, session).await })
        };
        let b_task = {
            let session = Session::new(b_conn.peer.clone(), host);
            tokio::spawn(async move { b_link.run(&b_conn, true, session).await })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (a_store, b_store) = (a.store.clone(), b.store.clone());
            let done = tokio::task::spawn_blocking(move || {
                a_store.counts(month(11)).map(|c| c.events).unwrap_or(0) == 2500
                    && b_store.counts(month(10)).map(|c| c.events).unwrap_or(0) == 2500
            })
            .await
            .unwrap();
            if done {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the two devices did not finish sending each other their months"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = stop.send(true);
        // An orderly close, on either side, reports what the session did.
        let a_stats = a_task.await.unwrap().unwrap();
        let b_stats = b_task.await.unwrap().unwrap();
        assert_eq!((a_stats.records_in, b_stats.records_in), (2500, 2500));
        assert_eq!((a_stats.records_out, b_stats.records_out), (2500, 2500));
        a_ep.close().await;
        b_ep.close().await;
    });
    for (d, m) in [(&a, month(11)), (&b, month(10))] {
        assert!(d.store.missing_records(m).unwrap().is_empty());
    }
}

/// A paired peer that asks for a whole month and then reads nothing holds at most a link's
/// write queue of this device's records (and what QUIC's flow-control window takes), not the
/// month; once it reads, the rest follows.
#[test]
fn a_peer_that_asks_for_a_month_and_reads_nothing_is_sent_only_a_queue_of_it() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    use tokio::sync::watch;
    use tsunagi_sync::net;
    use tsunagi_sync::replica::link::{Link, WRITE_QUEUE_BYTES};

    const RECORDS: u64 = 1500;
    let a = device();
    let m = month(10);
    // About 12 KB a record: the month is twice a full write queue.
    let payload = json!({"captured": {"note": "x".repeat(12_000)}});
    for i in 0..RECORDS {
        a.store
            .capture_blocking(&format!("a{i}"), m, payload.clone())
            .unwrap();
    }
    let ids: Vec<_> = a
        .store
        .events(m)
        .unwrap()
        .events
        .iter()
        .map(|(id, _)| *id)
        .collect();
    let record_len = a.store.record_bodies(m, &ids[..1]).unwrap()[0].1.len() as u64;
    assert!(RECORDS * record_len > 2 * WRITE_QUEUE_BYTES as u64);
    let b_key = DeviceKey::generate();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sent = Arc::new(AtomicU64::new(0));
        let (stop, stopping) = watch::channel(false);
        let link = Link {
            store: a.store.clone(),
            changed: watch::channel(0u64).0,
            stopping,
            observe: {
                let sent = sent.clone();
                Arc::new(move |s: &Session| sent.store(s.stats().records_out, Ordering::SeqCst))
            },
            on_received: Arc::new(|| {}),
        };
        let (a_ep, b_ep, a_conn, b_conn) = connected(a.store.device(), &b_key).await;
        let a_task = {
            let session = Session::new(a_conn.peer.clone(), Arc::new(PurgeToo));
            tokio::spawn(async move { link.run(&a_conn, false, session).await })
        };
        // The peer: its hello and a want for the whole month, then silence.
        let (mut send, mut recv) = b_conn.connection.open_bi().await.unwrap();
        let hello = Message::Hello {
            protocol: tsunagi_sync::replica::PROTOCOL,
            months: vec![m],
            purged: vec![],
        };
        net::write_msg(&mut send, &hello.encode()).await.unwrap();
        for chunk in ids.chunks(tsunagi_sync::replica::wire::MAX_WANT) {
            let want = Message::Want {
                month: m,
                ids: chunk.to_vec(),
            };
            net::write_msg(&mut send, &want.encode()).await.unwrap();
        }
        // Until what was handed out stops growing.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut last, mut since) = (u64::MAX, Instant::now());
        loop {
            let now = sent.load(Ordering::SeqCst);
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() > Duration::from_millis(1500) {
                break;
            }
            assert!(Instant::now() < deadline, "the link never settled");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The queue, the stream's window (QUIC's default, 1.25 MB) and one batch in hand.
        let held = last * record_len;
        let bound = WRITE_QUEUE_BYTES as u64 + 3 * 1024 * 1024;
        assert!(last > 0, "something was sent");
        assert!(
            held <= bound,
            "{last} records ({held} B) handed out to a peer that reads nothing (bound {bound} B)"
        );
        // The peer reads: everything follows, each record once.
        let mut received = 0u64;
        while received < RECORDS {
            let bytes = tokio::time::timeout(
                Duration::from_secs(60),
                net::read_msg(&mut recv, tsunagi_sync::replica::link::MAX_MESSAGE),
            )
            .await
            .expect("the rest of the month came")
            .unwrap()
            .expect("the stream stays open");
            if let Message::Records { bodies, .. } = Message::decode(&bytes).unwrap() {
                received += bodies.len() as u64;
            }
        }
        assert_eq!(received, RECORDS);
        assert_eq!(sent.load(Ordering::SeqCst), RECORDS);
        let _ = stop.send(true);
        let _ = a_task.await;
        a_ep.close().await;
        b_ep.close().await;
    });
}

/// `n` small checks captured on `d` in `month`: their records' ids, in order.
fn small_checks(d: &Device, month: Month, n: usize) -> Vec<tsunagi_sync::EventId> {
    (0..n)
        .map(|i| {
            d.store
                .capture_blocking(&format!("c{i}"), month, json!({"captured": {"n": i}}))
                .unwrap()
                .id
        })
        .collect()
}

/// A session of `d` with a stranger's device that has said its hello (holding nothing).
fn greeted(d: &Device) -> Session {
    let peer = DeviceKey::generate().id().clone();
    let mut s = Session::new(peer, Arc::new(PurgeToo));
    s.start(&d.store).unwrap();
    let hello = Message::Hello {
        protocol: tsunagi_sync::replica::PROTOCOL,
        months: vec![],
        purged: vec![],
    };
    s.receive(&d.store, &hello.encode()).unwrap();
    s
}

/// The record bodies `messages` carry, in order.
fn bodies_in(messages: Vec<Message>) -> Vec<Vec<u8>> {
    messages
        .into_iter()
        .flat_map(|m| match m {
            Message::Records { bodies, .. } => bodies,
            _ => vec![],
        })
        .collect()
}

/// Runs the sessions `sa` (on `a`) and `sb` (on `b`) until neither has anything to send;
/// with `drop_records_to_a`, the records `b` sends `a` are lost on the way.
fn run_pair(a: &Device, sa: &mut Session, b: &Device, sb: &mut Session, drop_records_to_a: bool) {
    let mut to_b: VecDeque<Message> = sa.start(&a.store).unwrap().into();
    let mut to_a: VecDeque<Message> = sb.start(&b.store).unwrap().into();
    for _ in 0..10_000 {
        if to_b.is_empty() && sa.has_unsent() {
            to_b.extend(sa.send_more(&a.store).unwrap());
        }
        if to_a.is_empty() && sb.has_unsent() {
            to_a.extend(sb.send_more(&b.store).unwrap());
        }
        if let Some(m) = to_b.pop_front() {
            to_a.extend(sb.receive(&b.store, &m.encode()).unwrap().0);
        } else if let Some(m) = to_a.pop_front() {
            if drop_records_to_a && matches!(m, Message::Records { .. }) {
                continue;
            }
            to_b.extend(sa.receive(&a.store, &m.encode()).unwrap().0);
        } else {
            return;
        }
    }
    panic!("the sessions did not settle");
}

/// Records asked of one peer that arrive through another (a tablet's checks, asked of the
/// hub and brought by the tablet itself) are no longer waited for: once they are in, the
/// session that asked counts nothing behind, though the first peer never sent them.
#[test]
fn records_asked_of_one_peer_that_arrive_through_another_are_not_waited_for() {
    let (tablet, hub, reception) = (device(), device(), device());
    let m = month(11);
    small_checks(&tablet, m, 3);
    // A session with `peer`.
    let with = |peer: &Device| Session::new(peer.store.device().id().clone(), Arc::new(PurgeToo));
    // The hub holds the tablet's records.
    let (mut th, mut ht) = (with(&hub), with(&tablet));
    run_pair(&tablet, &mut th, &hub, &mut ht, false);
    assert_eq!(hub.store.counts(m).unwrap().events, 3);
    // The reception PC asks the hub for them; the hub's answer is lost.
    let (mut rh, mut hr) = (with(&hub), with(&reception));
    run_pair(&reception, &mut rh, &hub, &mut hr, true);
    assert_eq!(reception.store.counts(m).unwrap().events, 0);
    assert!(rh.behind_docs().contains(&SharedDoc::Month(m)));
    // The tablet brings them itself; the session with the hub hears of the change.
    let (mut rt, mut tr) = (with(&tablet), with(&reception));
    run_pair(&reception, &mut rt, &tablet, &mut tr, false);
    assert_eq!(reception.store.counts(m).unwrap().events, 3);
    rh.local_change(&reception.store).unwrap();
    assert_eq!(rh.behind_docs(), vec![]);
    assert_eq!(rh.stats().records_in, 0);
}

/// A peer that asks for the same record again and again (and many copies of it in one
/// message) gets it once per session: what it can make this device read and send is
/// bounded by the month, not by its asking.
#[test]
fn a_record_asked_for_again_and_again_is_sent_once() {
    let d = device();
    let m = month(11);
    let appended = d
        .store
        .capture_blocking("once", m, json!({"captured": {}}))
        .unwrap();
    let mut s = greeted(&d);
    let want = Message::Want {
        month: m,
        ids: vec![appended.id; 1000],
    };
    let mut sent = 0;
    for _ in 0..5 {
        let (reply, _) = s.receive(&d.store, &want.encode()).unwrap();
        sent += bodies_in(reply).len();
    }
    assert_eq!(sent, 1);
    assert_eq!(s.stats().records_out, 1);
}

/// A peer that asks for a whole month is handed records only as far as the send budget (the
/// room in the link's write queue) allows; the rest waits as ids and goes, each once and
/// in the order asked, as the queue drains. Asked again meanwhile, nothing is queued twice.
#[test]
fn a_month_asked_for_at_once_is_handed_out_as_the_queue_drains() {
    let d = device();
    let m = month(10);
    let ids = small_checks(&d, m, 40);
    let mut s = greeted(&d);
    let one_record = d.store.record_bodies(m, &ids[..1]).unwrap()[0].1.len();
    // Room for about three records per step.
    s.set_send_budget(3 * one_record - 1);
    let want = Message::Want {
        month: m,
        ids: ids.clone(),
    };
    let (reply, _) = s.receive(&d.store, &want.encode()).unwrap();
    let mut sent = bodies_in(reply);
    assert_eq!(sent.len(), 3, "three records fit the first step");
    assert!(s.has_unsent());
    // The same want again while most still wait: nothing more is queued.
    let (reply, _) = s.receive(&d.store, &want.encode()).unwrap();
    sent.extend(bodies_in(reply));
    let mut steps = 0;
    while s.has_unsent() {
        steps += 1;
        assert!(steps < 100, "send_more makes progress");
        let more = bodies_in(s.send_more(&d.store).unwrap());
        assert!(
            !more.is_empty() && more.len() <= 3,
            "{} records in one step",
            more.len()
        );
        sent.extend(more);
    }
    // Nothing is handed out with no room, and all of it once, in the order asked.
    s.set_send_budget(0);
    assert!(s.send_more(&d.store).unwrap().is_empty());
    let held: std::collections::HashMap<_, _> = d
        .store
        .record_bodies(m, &ids)
        .unwrap()
        .into_iter()
        .collect();
    let in_order: Vec<&Vec<u8>> = ids.iter().map(|id| &held[id]).collect();
    assert_eq!(sent.iter().collect::<Vec<_>>(), in_order);
    assert_eq!(s.stats().records_out, 40);
}

/// A peer that reads nothing and asks for ids nobody has makes this device hold at most the
/// month's events and the ids it may be owed, not whatever it sends.
#[test]
fn made_up_ids_asked_for_by_a_peer_that_reads_nothing_are_bounded() {
    let d = device();
    let m = month(8);
    let real = small_checks(&d, m, 5);
    let mut s = greeted(&d);
    s.set_send_budget(0);
    let mut sent = 0;
    for round in 0u32..14 {
        let ids: Vec<_> = (0..tsunagi_sync::replica::wire::MAX_WANT as u32 - 5)
            .map(|i| {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&round.to_le_bytes());
                b[4..8].copy_from_slice(&i.to_le_bytes());
                tsunagi_sync::EventId(b)
            })
            .chain(real.iter().copied())
            .collect();
        let (reply, _) = s
            .receive(&d.store, &Message::Want { month: m, ids }.encode())
            .unwrap();
        sent += bodies_in(reply).len();
    }
    assert_eq!(sent, 0, "no room, nothing sent");
    // 14 × 8,187 made-up ids asked for; the month's 5 and 100,000 owed at most wait.
    assert_eq!(s.unsent(), 5 + 100_000);
}

/// Records go in messages of about a megabyte however the store is read (it is read a few
/// hundred ids at a time): every message is one group commit and one fsync on the peer.
#[test]
fn records_asked_for_go_in_as_few_messages_as_their_size_allows() {
    let d = device();
    let m = month(9);
    let ids = small_checks(&d, m, 600);
    let mut s = greeted(&d);
    let want = Message::Want { month: m, ids };
    let (reply, _) = s.receive(&d.store, &want.encode()).unwrap();
    let records: Vec<usize> = reply
        .iter()
        .filter_map(|msg| match msg {
            Message::Records { bodies, .. } => Some(bodies.len()),
            _ => None,
        })
        .collect();
    // 600 small records (well under a megabyte in all): one message.
    assert_eq!(records, [600]);
}

/// Runs automerge's sync protocol between `peer` (a paired device's copy of a document,
/// edited by hand) and `store`'s document `doc` until neither has more to say; the first
/// refusal ends it.
fn sync_into(store: &Store, doc: SharedDoc, peer: &mut AutoCommit) -> Result<(), StoreError> {
    let (mut theirs, mut ours) = (SyncState::new(), SyncState::new());
    for _ in 0..50 {
        let from_peer = peer.sync().generate_sync_message(&mut theirs);
        if let Some(m) = &from_peer {
            store.receive_sync_message(doc, &mut ours, &m.clone().encode())?;
        }
        let (reply, _) = store.sync_message(doc, &mut ours)?;
        if let Some(r) = &reply {
            let r = automerge::sync::Message::decode(r).unwrap();
            peer.sync().receive_sync_message(&mut theirs, r).unwrap();
        }
        if from_peer.is_none() && reply.is_none() {
            return Ok(());
        }
    }
    panic!("sync did not settle");
}

fn refused(outcome: &Result<(), StoreError>) -> bool {
    matches!(outcome, Err(StoreError::Document(DocError::Refused(_))))
}

/// A devices-document entry naming `key`, as a device registers itself.
fn device_entry(key: &ed25519_dalek::VerifyingKey) -> String {
    let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    json!({"public_key": hex, "added_at": "2026-12-01T00:00:00Z"}).to_string()
}

/// Puts `n` entries for made-up events, each with an 8-byte digest.
fn put_many(doc: &mut AutoCommit, n: usize) {
    for _ in 0..n {
        let id = tsunagi_sync::EventId(rand::random());
        doc.put(ROOT, id.to_string(), ScalarValue::Bytes(vec![3; 8]))
            .unwrap();
    }
}

/// [`put_many`], and `key` put by two actors at once with two digests (a conflict).
fn put_many_with_a_conflict(doc: &mut AutoCommit, n: usize, key: &str) {
    put_many(doc, n);
    let mut other = doc.fork();
    doc.put(ROOT, key, ScalarValue::Bytes(vec![4; 8])).unwrap();
    other
        .put(ROOT, key, ScalarValue::Bytes(vec![5; 8]))
        .unwrap();
    doc.merge(&mut other).unwrap();
    assert_eq!(doc.get_all(ROOT, key).unwrap().len(), 2);
}

/// A new device's month document starts empty, and a peer's first sync message brings
/// every entry: two digests for one of them are refused there too, and nothing is kept.
#[test]
fn a_new_device_refuses_a_first_month_document_with_two_digests_for_an_event() {
    let target = device();
    let m = month(11);
    let mut peer = AutoCommit::new();
    let id = tsunagi_sync::EventId(rand::random()).to_string();
    put_many_with_a_conflict(&mut peer, 200, &id);
    let outcome = sync_into(&target.store, SharedDoc::Month(m), &mut peer);
    assert!(refused(&outcome), "{outcome:?}");
    assert_eq!(target.store.month_entries(m).unwrap(), vec![]);
    // Without the conflict the same document is taken whole.
    let mut peer = AutoCommit::new();
    put_many(&mut peer, 200);
    sync_into(&target.store, SharedDoc::Month(m), &mut peer).unwrap();
    assert_eq!(target.store.month_entries(m).unwrap().len(), 200);
    assert_eq!(target.store.missing_records(m).unwrap().len(), 200);
}

/// A paired device can write anything into its copy of a shared document; automerge would
/// apply any well-formed change, and honest devices would relay it. Each change that
/// breaks a document's shape is refused and kept neither in memory nor on disk; a good
/// change from the same device is then taken.
#[test]
fn document_changes_that_break_a_documents_shape_are_refused_and_not_kept() {
    let target = device();
    let other = device();
    let m = month(11);
    target
        .store
        .capture_blocking("mine", m, json!({"captured": {}}))
        .unwrap();
    other
        .store
        .capture_blocking("theirs", m, json!({"captured": {}}))
        .unwrap();
    let entries = target.store.month_entries(m).unwrap();
    let own = entries[0].0.to_string();
    let (theirs, their_digest) = other.store.month_entries(m).unwrap()[0];
    let theirs = theirs.to_string();
    let key = |k: &str| k.to_string();
    type Edit = Box<dyn Fn(&mut AutoCommit)>;
    let month_edits: Vec<(&str, Edit)> = vec![
        (
            "a key that is not an event id",
            Box::new(|d| {
                d.put(ROOT, "hello", ScalarValue::Bytes(vec![0; 8]))
                    .unwrap()
            }),
        ),
        (
            "an entry deleted",
            Box::new({
                let own = key(&own);
                move |d| d.delete(ROOT, own.as_str()).unwrap()
            }),
        ),
        (
            "a digest changed",
            Box::new({
                let own = key(&own);
                move |d| {
                    d.put(ROOT, own.as_str(), ScalarValue::Bytes(vec![1; 8]))
                        .unwrap()
                }
            }),
        ),
        (
            "a digest of 3 bytes",
            Box::new({
                let theirs = key(&theirs);
                move |d| {
                    d.put(ROOT, theirs.as_str(), ScalarValue::Bytes(vec![0; 3]))
                        .unwrap()
                }
            }),
        ),
        (
            "text instead of a digest",
            Box::new({
                let theirs = key(&theirs);
                move |d| d.put(ROOT, theirs.as_str(), "text").unwrap()
            }),
        ),
        (
            "an object",
            Box::new({
                let theirs = key(&theirs);
                move |d| {
                    d.put_object(ROOT, theirs.as_str(), ObjType::Map).unwrap();
                }
            }),
        ),
        (
            "an event id spelled in capitals (a second digest for the same event)",
            Box::new({
                let theirs = theirs.to_uppercase();
                move |d| {
                    d.put(ROOT, theirs.as_str(), ScalarValue::Bytes(vec![2; 8]))
                        .unwrap()
                }
            }),
        ),
        // Many keys at once are read in one pass over the month (a new device's first
        // sync): the same checks hold there.
        (
            "a digest changed among many new entries",
            Box::new({
                let own = key(&own);
                move |d| {
                    put_many(d, 100);
                    d.put(ROOT, own.as_str(), ScalarValue::Bytes(vec![1; 8]))
                        .unwrap()
                }
            }),
        ),
        (
            "two digests for one new entry among many",
            Box::new({
                let theirs = key(&theirs);
                move |d| put_many_with_a_conflict(d, 100, &theirs)
            }),
        ),
    ];
    let doc = SharedDoc::Month(m);
    for (what, edit) in &month_edits {
        let mut peer = AutoCommit::load(&target.store.month_document(m).unwrap()).unwrap();
        edit(&mut peer);
        let outcome = sync_into(&target.store, doc, &mut peer);
        assert!(refused(&outcome), "{what}: {outcome:?}");
        assert_eq!(target.store.month_entries(m).unwrap(), entries, "{what}");
        let kept = AutoCommit::load(&target.store.month_document(m).unwrap()).unwrap();
        assert_eq!(
            kept.keys(ROOT).collect::<Vec<_>>(),
            vec![own.clone()],
            "{what}"
        );
    }
    // The same after a restart: nothing of the refused changes reached the disk.
    let target = target.reopen();
    assert_eq!(target.store.month_entries(m).unwrap(), entries);
    // A good change is taken: the other device's event, with its digest.
    let mut peer = AutoCommit::load(&target.store.month_document(m).unwrap()).unwrap();
    peer.put(
        ROOT,
        theirs.as_str(),
        ScalarValue::Bytes(their_digest.to_vec()),
    )
    .unwrap();
    sync_into(&target.store, doc, &mut peer).unwrap();
    assert_eq!(target.store.month_entries(m).unwrap().len(), 2);

    // The devices document: an entry names its own device's key, and never goes.
    let devices = target.store.devices().unwrap();
    let me = target.store.device().id().to_string();
    let stranger = DeviceKey::generate();
    let device_edits: Vec<(&str, Edit)> = vec![
        (
            "this device deleted",
            Box::new({
                let me = me.clone();
                move |d| d.delete(ROOT, me.as_str()).unwrap()
            }),
        ),
        (
            "a device named with another's key",
            Box::new({
                let (id, wrong) = (stranger.id().clone(), target.store.device().verifying_key());
                move |d| d.put(ROOT, id.to_string(), device_entry(&wrong)).unwrap()
            }),
        ),
        (
            "a key that is not a device id",
            Box::new(move |d| d.put(ROOT, "reception", "{}").unwrap()),
        ),
    ];
    for (what, edit) in &device_edits {
        let mut peer = AutoCommit::load(&target.store.export_small("devices").unwrap()).unwrap();
        edit(&mut peer);
        let outcome = sync_into(&target.store, SharedDoc::Devices, &mut peer);
        assert!(refused(&outcome), "{what}: {outcome:?}");
        assert_eq!(target.store.devices().unwrap(), devices, "{what}");
    }
    let mut peer = AutoCommit::load(&target.store.export_small("devices").unwrap()).unwrap();
    let id = stranger.id().clone();
    peer.put(
        ROOT,
        id.to_string(),
        device_entry(&stranger.verifying_key()),
    )
    .unwrap();
    sync_into(&target.store, SharedDoc::Devices, &mut peer).unwrap();
    assert!(target
        .store
        .devices()
        .unwrap()
        .contains_key(&id.to_string()));
}

/// A session that refused a peer's change to a document reports it with the peer, stops
/// syncing that document with it (it would resend the same change forever) and counts
/// it as behind; the peer's other messages are still taken.
#[test]
fn a_session_stops_syncing_a_document_whose_change_it_refused() {
    let target = device();
    let peer_store = device();
    let m = month(11);
    target
        .store
        .capture_blocking("mine", m, json!({"captured": {}}))
        .unwrap();
    let mut session = Session::new(peer_store.store.device().id().clone(), Arc::new(PurgeToo));
    let hello = Message::Hello {
        protocol: tsunagi_sync::replica::PROTOCOL,
        months: vec![m],
        purged: vec![],
    };
    session.receive(&target.store, &hello.encode()).unwrap();
    let doc = SharedDoc::Month(m);
    let mut peer = AutoCommit::load(&target.store.month_document(m).unwrap()).unwrap();
    peer.put(ROOT, "hello", ScalarValue::Bytes(vec![0; 8]))
        .unwrap();
    // The peer's side of the automerge protocol, until its change is sent and refused.
    let mut theirs = SyncState::new();
    let mut bad = None;
    for _ in 0..10 {
        let Some(sync) = peer.sync().generate_sync_message(&mut theirs) else {
            break;
        };
        let message = Message::Doc {
            doc,
            sync: sync.encode(),
        }
        .encode();
        let (send, refusals) = session.receive(&target.store, &message).unwrap();
        if !refusals.is_empty() {
            assert_eq!(refusals.len(), 1, "{refusals:?}");
            assert!(refusals[0].what.contains("hello"), "{refusals:?}");
            assert!(send.is_empty(), "{send:?}");
            bad = Some(message);
            break;
        }
        for m in send {
            if let Message::Doc { sync, .. } = m {
                let sync = automerge::sync::Message::decode(&sync).unwrap();
                peer.sync().receive_sync_message(&mut theirs, sync).unwrap();
            }
        }
    }
    let bad = bad.expect("the change was sent and refused");
    assert_eq!(session.stats().refused, 1);
    assert_eq!(session.behind_docs(), vec![doc]);
    // Sent again: ignored, not refused again.
    let (send, refusals) = session.receive(&target.store, &bad).unwrap();
    assert!(send.is_empty() && refusals.is_empty());
    // Nothing more of that document goes to this peer, even after a local write.
    target
        .store
        .capture_blocking("later", m, json!({"captured": {}}))
        .unwrap();
    let out = session.local_change(&target.store).unwrap();
    assert!(
        !out.iter()
            .any(|m| matches!(m, Message::Doc { doc: d, .. } if *d == doc)),
        "{out:?}"
    );
    // The devices document still syncs.
    assert!(out.iter().any(|m| matches!(
        m,
        Message::Doc {
            doc: SharedDoc::Devices,
            ..
        }
    )));
}

/// A change that arrives before the change it depends on waits in the document (automerge
/// queues it) and is applied when that one comes: the queue lives in the document this
/// device holds in memory, not only in a file read again for each message.
#[test]
fn a_change_that_arrives_before_the_one_it_depends_on_is_applied_when_that_one_comes() {
    let target = device();
    let mut peer = AutoCommit::load(&target.store.export_small("devices").unwrap()).unwrap();
    let (x, y) = (DeviceKey::generate(), DeviceKey::generate());
    peer.put(ROOT, x.id().to_string(), device_entry(&x.verifying_key()))
        .unwrap();
    peer.commit();
    let first = peer.get_last_local_change().unwrap().raw_bytes().to_vec();
    peer.put(ROOT, y.id().to_string(), device_entry(&y.verifying_key()))
        .unwrap();
    peer.commit();
    let second = peer.get_last_local_change().unwrap().raw_bytes().to_vec();
    // Each change in a sync message of its own, the second first: nothing to apply yet.
    let heads = peer.get_heads();
    let message = |change: &[u8]| {
        automerge::sync::Message {
            heads: heads.clone(),
            need: vec![],
            have: vec![],
            changes: vec![change.to_vec()].into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        }
        .encode()
    };
    let mut state = SyncState::new();
    let devices = SharedDoc::Devices;
    let store = &target.store;
    store
        .receive_sync_message(devices, &mut state, &message(&second))
        .unwrap();
    assert!(!store.devices().unwrap().contains_key(&y.id().to_string()));
    // Then the first: both are applied.
    store
        .receive_sync_message(devices, &mut state, &message(&first))
        .unwrap();
    let devices = target.store.devices().unwrap();
    assert!(devices.contains_key(&x.id().to_string()), "{devices:?}");
    assert!(devices.contains_key(&y.id().to_string()), "{devices:?}");
}
