//! Sync between a clinic's devices (issue 12), through the real parts: two or three tsunagid
//! processes with their stores on disk, real QUIC between them on loopback, pairing through
//! the API and the CLI, the real pcscd with vpcd and the virtual card, the simulator over
//! HTTP. A home-visit tablet with no signal captures a card check; the reception PC, online,
//! receives it, confirms it (事後確認), and the tablet receives the result.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/tsunagid.rs"]
mod tsunagid;

#[path = "support/fixtures.rs"]
mod fixtures;

#[path = "support/netns.rs"]
mod netns;
use fixtures::{runtime, scenario, today};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oqs_sim::{SimHandle, Simulator};
use serde_json::{json, Value};
use tsunagi_vcard::card::VirtualCard;
use tsunagi_vcard::harness::{self, PcscdSession};
use tsunagi_vcard::vpcd::{AttachOptions, AttachedCard};

use tsunagid::Tsunagid;

/// A loopback UDP port nothing uses right now.
fn udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// A URL where nothing answers: a tablet out of signal.
fn no_signal() -> String {
    format!("http://127.0.0.1:{}", tsunagid::free_port())
}

fn sync_toml(port: u16, interval: u64) -> String {
    format!("[sync]\nlisten = \"127.0.0.1:{port}\"\n[reconcile]\ninterval_secs = {interval}\n")
}

fn device_id(d: &Tsunagid) -> String {
    let (code, peers) = d.get("/v1/peers");
    assert_eq!(code, 200, "{peers}");
    peers["device_id"].as_str().unwrap().to_string()
}

fn pair(d: &Tsunagid, other: &str, name: &str, addr: Option<u16>) {
    let mut body = json!({"id": other, "name": name});
    if let Some(p) = addr {
        body["addr"] = json!(format!("127.0.0.1:{p}"));
    }
    let (code, reply) = d.post("/v1/peers", &body);
    assert_eq!(code, 200, "{reply}");
}

/// Waits until `f` holds, failing with `what` and the logs after `max`.
fn wait_until(max: Duration, what: &str, logs: &[&Tsunagid], mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + max;
    while !f() {
        if Instant::now() > deadline {
            let logs: Vec<String> = logs.iter().map(|d| d.log_text()).collect();
            panic!("{what} within {max:?}; logs:\n{}", logs.join("\n-----\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check_of(d: &Tsunagid, id: &str) -> Option<Value> {
    let (code, view) = d.get(&format!("/v1/checks/{id}"));
    (code == 200).then_some(view)
}

/// A 資格確認書 recorded on `d` (a check made without a card); its id.
fn record_document(d: &Tsunagid) -> String {
    let (code, doc) = d.post(
        "/v1/documents",
        &json!({
            "kind": "kakuninsho",
            "visit_date": today(),
            "insurer": "06139917",
            "symbol": "1",
            "number": "2",
            "birth_date": "1980-01-01",
            "expires": today().checked_add_months(chrono::Months::new(6)),
        }),
    );
    assert_eq!(code, 200, "{doc}");
    doc["check_id"].as_str().unwrap().to_string()
}

struct Clinic {
    _sim: SimHandle,
    pc: Tsunagid,
    tablet: Tsunagid,
    pc_port: u16,
    tablet_port: u16,
    _card: AttachedCard,
    _pcscd: PcscdSession,
}

impl Clinic {
    /// The reception PC online (reconciling every second), the tablet with no signal, both
    /// paired; the tablet knows the PC's address, the PC waits for the tablet.
    fn new(card: &str) -> Self {
        let pcscd = harness::pcscd().expect("pcscd harness");
        let sim = runtime()
            .block_on(Simulator::start(scenario().sim_config()))
            .expect("simulator");
        let profile = scenario().card(card).expect("card in scenario").clone();
        let attached = harness::insert(VirtualCard::new(profile), 0, AttachOptions::default())
            .expect("insert card into vpcd slot 0");
        let (pc_port, tablet_port) = (udp_port(), udp_port());
        let pc = Tsunagid::start(
            &sim.base_url(),
            &scenario().institution_code,
            &sync_toml(pc_port, 1),
        );
        let tablet = Tsunagid::start(
            &no_signal(),
            &scenario().institution_code,
            &sync_toml(tablet_port, 3600),
        );
        let (pc_id, tablet_id) = (device_id(&pc), device_id(&tablet));
        assert_ne!(pc_id, tablet_id);
        pair(&pc, &tablet_id, "訪問用タブレット", None);
        pair(&tablet, &pc_id, "受付PC", Some(pc_port));
        Self {
            _sim: sim,
            pc,
            tablet,
            pc_port,
            tablet_port,
            _card: attached,
            _pcscd: pcscd,
        }
    }

    /// A visual check on the tablet, captured for 事後確認 (no signal).
    fn capture_on_tablet(&self) -> String {
        let (code, report) = self.tablet.post(
            "/v1/checks",
            &json!({
                "method": "visual",
                "reader": harness::reader_name(0),
                "visit_date": today(),
                "first_visit": false,
                "card_wait_secs": 10,
            }),
        );
        assert_eq!(code, 200, "{report}");
        assert_eq!(report["status"], "captured", "{report}");
        report["check_id"].as_str().unwrap().to_string()
    }

    /// Waits for the tablet's connection, captures a check on it, and waits until the PC
    /// holds it.
    fn capture_and_sync(&self) -> String {
        wait_until(
            Duration::from_secs(20),
            "the tablet connected to the PC",
            &[&self.pc, &self.tablet],
            || self.connected(),
        );
        let id = self.capture_on_tablet();
        wait_until(
            Duration::from_secs(30),
            "the PC has the tablet's check",
            &[&self.pc, &self.tablet],
            || check_of(&self.pc, &id).is_some(),
        );
        id
    }

    fn connected(&self) -> bool {
        let (_, peers) = self.pc.get("/v1/peers");
        peers["peers"][0]["connected"] == true
    }
}

#[test]
fn a_check_captured_on_a_tablet_with_no_signal_is_confirmed_by_the_reception_pc() {
    let c = Clinic::new("valid-employee");
    let id = c.capture_and_sync();
    // The PC confirms it with the qualification system.
    wait_until(
        Duration::from_secs(30),
        "the PC confirmed the tablet's check",
        &[&c.pc, &c.tablet],
        || check_of(&c.pc, &id).is_some_and(|v| v["phase"] == "resolved"),
    );
    // The result comes back to the tablet, which never reached the qualification system.
    wait_until(
        Duration::from_secs(20),
        "the tablet received the PC's result",
        &[&c.pc, &c.tablet],
        || check_of(&c.tablet, &id).is_some_and(|v| v["phase"] == "resolved"),
    );
    let on_pc = check_of(&c.pc, &id).unwrap();
    let on_tablet = check_of(&c.tablet, &id).unwrap();
    assert_eq!(on_pc["claim"], on_tablet["claim"], "{on_pc}\n{on_tablet}");
    // Status says both are connected and in step.
    wait_until(
        Duration::from_secs(10),
        "status shows the devices in step",
        &[&c.pc, &c.tablet],
        || {
            let (_, s) = c.tablet.get("/v1/status");
            let p = &s["sync"]["peers"][0];
            p["connected"] == true && p["behind"] == 0 && p["last_sync"].is_string()
        },
    );
    // Nothing personal in the logs of either device.
    for d in [&c.pc, &c.tablet] {
        let log = d.log_text();
        assert!(
            !log.contains("診療　太郎") && !log.contains("診療"),
            "{log}"
        );
    }
}

#[test]
fn a_device_that_was_away_catches_up_when_it_comes_back() {
    let c = Clinic::new("valid-employee");
    let first = c.capture_and_sync();
    // The tablet goes away (stopped: a partition), captures nothing meanwhile; the PC
    // records a document check.
    let tablet_port = c.tablet_port;
    let Clinic {
        pc,
        tablet,
        _sim,
        _card,
        _pcscd,
        ..
    } = c;
    let (_, dir) = tablet.stop_keeping_dir();
    let doc_id = record_document(&pc);
    // Back: same data directory, same device, same port.
    let tablet = Tsunagid::start_in(
        dir,
        &no_signal(),
        &scenario().institution_code,
        &sync_toml(tablet_port, 3600),
    );
    wait_until(
        Duration::from_secs(30),
        "the returning tablet received the PC's check",
        &[&pc, &tablet],
        || check_of(&tablet, &doc_id).is_some(),
    );
    // The catch-up came over the session the tablet's status shows: connected, nothing
    // behind, one record in (the PC's check; the tablet's own first check was already
    // there), and the tablet's first check is not sent back to the PC as new.
    wait_until(
        Duration::from_secs(20),
        "the tablet's status shows the catch-up",
        &[&pc, &tablet],
        || {
            let (_, s) = tablet.get("/v1/peers");
            let p = &s["peers"][0];
            p["connected"] == true
                && p["behind"] == 0
                && p["last_sync"].is_string()
                && p["records_in"] == 1
                && p["records_out"] == 0
        },
    );
    assert!(check_of(&pc, &first).is_some());
}

#[test]
fn an_unpaired_device_gets_nothing_and_is_named_in_the_log() {
    let c = Clinic::new("valid-employee");
    // A third device pairs the PC on its side; the PC never paired it.
    let stranger_port = udp_port();
    let stranger = Tsunagid::start(
        &no_signal(),
        &scenario().institution_code,
        &sync_toml(stranger_port, 3600),
    );
    let stranger_id = device_id(&stranger);
    pair(&stranger, &device_id(&c.pc), "受付PC", Some(c.pc_port));
    let id = c.capture_and_sync();
    wait_until(
        Duration::from_secs(20),
        "the PC logged the refused device by its id",
        &[&c.pc, &stranger],
        || c.pc.log_text().contains(&stranger_id),
    );
    assert!(check_of(&stranger, &id).is_none());
    let (_, s) = stranger.get("/v1/peers");
    assert_eq!(s["peers"][0]["connected"], false, "{s}");
    // Unpairing the tablet on the PC closes it out too.
    let removed = c.pc.request(
        "DELETE",
        &format!("/v1/peers/{}", device_id(&c.tablet)),
        Some(&c.pc.token),
        None,
    );
    assert_eq!(removed.status, 200, "{}", removed.text());
    assert_eq!(removed.json()["removed"], true);
    wait_until(
        Duration::from_secs(20),
        "the tablet is no longer connected",
        &[&c.pc, &c.tablet],
        || {
            let (_, s) = c.tablet.get("/v1/peers");
            s["peers"][0]["connected"] == false
        },
    );
}

/// `tsunagi` with `--config` of `d`; returns (exit code, stdout, stderr).
fn tsunagi(d: &Tsunagid, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .arg("--config")
        .arg(&d.config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The same captured check confirmed on two devices while they could not reach each other
/// ends, once they meet, with one result on both (the fold orders both devices' events the
/// same way).
#[test]
fn the_same_check_confirmed_on_two_devices_apart_ends_with_one_result() {
    let c = Clinic::new("valid-employee");
    let sim_url = c._sim.base_url();
    let (pc_port, tablet_port) = (c.pc_port, c.tablet_port);
    let id = c.capture_and_sync();
    let Clinic {
        pc,
        tablet,
        _sim,
        _card,
        _pcscd,
        ..
    } = c;
    // Apart: the PC is switched off; the tablet gets a signal and confirms the check.
    let (_, pc_dir) = pc.stop_keeping_dir();
    let (_, tablet_dir) = tablet.stop_keeping_dir();
    let institution = scenario().institution_code.clone();
    let tablet = Tsunagid::start_in(
        tablet_dir,
        &sim_url,
        &institution,
        &sync_toml(tablet_port, 3600),
    );
    let (code, pass) = tablet.post("/v1/reconcile", &json!({}));
    assert_eq!(code, 200, "{pass}");
    let on_tablet = check_of(&tablet, &id).unwrap();
    assert_eq!(on_tablet["phase"], "resolved");
    let (_, tablet_dir) = tablet.stop_keeping_dir();
    // The PC comes back while the tablet is away and confirms it too.
    let pc = Tsunagid::start_in(pc_dir, &sim_url, &institution, &sync_toml(pc_port, 3600));
    let (code, pass) = pc.post("/v1/reconcile", &json!({}));
    assert_eq!(code, 200, "{pass}");
    let on_pc = check_of(&pc, &id).unwrap();
    assert_eq!(on_pc["phase"], "resolved");
    // Two decisions, made apart: they differ at least in when they were made.
    assert_ne!(on_pc["resolution"], on_tablet["resolution"]);
    // They meet.
    let tablet = Tsunagid::start_in(
        tablet_dir,
        &sim_url,
        &institution,
        &sync_toml(tablet_port, 3600),
    );
    wait_until(
        Duration::from_secs(30),
        "both devices show the same decision",
        &[&pc, &tablet],
        || check_of(&pc, &id).unwrap() == check_of(&tablet, &id).unwrap(),
    );
    let view = check_of(&pc, &id).unwrap();
    assert_eq!(view["phase"], "resolved", "{view}");
    // The one kept is one of the two made, the same on both.
    assert!(
        view["resolution"] == on_pc["resolution"] || view["resolution"] == on_tablet["resolution"],
        "{view}"
    );
}

/// A hub (`tsunagid --no-reader`, paired with both) passes a tablet's check to a reception
/// PC the tablet is not paired with; pairing is done with the CLI.
#[test]
fn a_hub_without_a_reader_passes_checks_between_devices_paired_with_it() {
    let c = Clinic::new("valid-employee");
    let hub_port = udp_port();
    let hub = Tsunagid::start_in_with(
        tempfile::tempdir().unwrap(),
        &no_signal(),
        &scenario().institution_code,
        &sync_toml(hub_port, 3600),
        &["--no-reader"],
    );
    let (code, hub_id, err) = tsunagi(&hub, &["id"]);
    assert_eq!(code, 0, "{err}");
    let hub_id = hub_id.trim().to_string();
    assert_eq!(hub_id, device_id(&hub));
    // Unpair the tablet and the PC from each other; both pair the hub instead.
    let (tablet_id, pc_id) = (device_id(&c.tablet), device_id(&c.pc));
    let (code, out, err) = tsunagi(&c.pc, &["peer", "remove", &tablet_id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("解除しました"), "{out}");
    let (code, _, err) = tsunagi(&c.tablet, &["peer", "remove", &pc_id]);
    assert_eq!(code, 0, "{err}");
    let hub_addr = format!("127.0.0.1:{hub_port}");
    for (d, name) in [(&c.pc, "受付PC"), (&c.tablet, "訪問用タブレット")] {
        let (code, out, err) = tsunagi(
            d,
            &[
                "peer",
                "add",
                &hub_id,
                "--name",
                "院内サーバー",
                "--addr",
                &hub_addr,
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("ペアリングしました"), "{out}");
        let (code, _, err) = tsunagi(&hub, &["peer", "add", &device_id(d), "--name", name]);
        assert_eq!(code, 0, "{err}");
    }
    // A mistyped id is refused with a message that says what to type.
    let (code, _, err) = tsunagi(&hub, &["peer", "add", "ABC-DEF"]);
    assert_ne!(code, 0);
    assert!(err.contains("tsunagi id"), "{err}");
    // The hub refuses card checks, saying why.
    let (code, reply) = hub.post(
        "/v1/checks",
        &json!({"method": "visual", "visit_date": today(), "card_wait_secs": 1}),
    );
    assert_eq!(code, 409, "{reply}");
    assert!(
        reply["detail"].as_str().unwrap().contains("--no-reader"),
        "{reply}"
    );
    wait_until(
        Duration::from_secs(20),
        "both devices connected to the hub",
        &[&hub, &c.pc, &c.tablet],
        || {
            let (_, s) = hub.get("/v1/peers");
            s["peers"]
                .as_array()
                .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["connected"] == true))
        },
    );
    let id = c.capture_on_tablet();
    wait_until(
        Duration::from_secs(30),
        "the PC confirmed the tablet's check through the hub",
        &[&hub, &c.pc, &c.tablet],
        || check_of(&c.pc, &id).is_some_and(|v| v["phase"] == "resolved"),
    );
    wait_until(
        Duration::from_secs(20),
        "the result came back to the tablet through the hub",
        &[&hub, &c.pc, &c.tablet],
        || check_of(&c.tablet, &id).is_some_and(|v| v["phase"] == "resolved"),
    );
    // `tsunagi status` and `tsunagi peer list` tell staff how sync stands.
    let (code, out, err) = tsunagi(&hub, &["peer", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("受付PC") && out.contains("接続中"), "{out}");
    let (code, out, err) = tsunagi(&c.tablet, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("院内サーバー") && out.contains("この端末のID"),
        "{out}"
    );
}

/// Two devices paired without addresses find each other on the local network
/// (`[sync] discovery`, broadcast on loopback here) and sync.
#[test]
fn paired_devices_without_addresses_find_each_other_on_the_local_network() {
    let announce = udp_port();
    let discovery = format!("discovery = true\ndiscovery_addr = \"127.255.255.255:{announce}\"\n");
    let start = || {
        let port = udp_port();
        Tsunagid::start(
            &no_signal(),
            &scenario().institution_code,
            &format!(
                "[sync]\nlisten = \"127.0.0.1:{port}\"\n{discovery}[reconcile]\ninterval_secs = 3600\n"
            ),
        )
    };
    let (a, b) = (start(), start());
    pair(&a, &device_id(&b), "受付PC", None);
    pair(&b, &device_id(&a), "訪問用タブレット", None);
    let id = record_document(&a);
    wait_until(
        Duration::from_secs(30),
        "the devices found each other and synced",
        &[&a, &b],
        || check_of(&b, &id).is_some(),
    );
    assert!(
        a.log_text().contains("found on the local network")
            || b.log_text().contains("found on the local network")
    );
}

/// A paired device whose every session fails at once (here: it closes each connection with
/// an error as the session starts; in the field, a device whose disk is full) is dialled
/// again with a growing wait, not every quarter second.
#[test]
fn a_peer_whose_sessions_fail_at_once_is_dialled_with_a_growing_wait() {
    use tsunagi_sync::net::Endpoint;
    use tsunagi_sync::{DeviceId, DeviceKey};
    let port = udp_port();
    let pc = Tsunagid::start(
        &no_signal(),
        &scenario().institution_code,
        &sync_toml(port, 3600),
    );
    let pc_id: DeviceId = device_id(&pc).parse().unwrap();
    let key = DeviceKey::generate();
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let ep = {
        let _rt = runtime().enter();
        Endpoint::bind(any, &key, [pc_id].into_iter().collect()).unwrap()
    };
    let broken_port = ep.local_addr().unwrap().port();
    pair(&pc, &key.id().to_string(), "壊れた端末", Some(broken_port));
    // The broken device fails every session it is dialled for until the test ends: a
    // session is never cut by the end of the count (the endpoint's close says "shutdown",
    // an orderly end, and a dial near the 8th second would end that way).
    let ep = Arc::new(ep);
    let accepted = Arc::new(AtomicUsize::new(0));
    let broken = runtime().spawn({
        let (ep, accepted) = (ep.clone(), accepted.clone());
        async move {
            while let Some(conn) = ep.accept().await {
                if let Ok(conn) = conn {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    // The session starts (the dialler opens its stream and says hello),
                    // then fails.
                    let _ = conn.connection.accept_bi().await;
                    conn.connection.close(99u32.into(), b"broken");
                }
            }
        }
    });
    std::thread::sleep(Duration::from_secs(8));
    let accepted = accepted.load(Ordering::SeqCst);
    // Waits of 1, 2 and 4 s: dials at about 0, 1, 3 and 7 s. Redialled every 250 ms, it
    // would be more than twenty.
    assert!(
        (2..=5).contains(&accepted),
        "{accepted} connections in 8 s\n{}",
        pc.log_text()
    );
    wait_until(Duration::from_secs(10), "the failure shown", &[&pc], || {
        let (_, peers) = pc.get("/v1/peers");
        peers["peers"][0]["last_error"].is_string()
    });
    broken.abort();
    runtime().block_on(ep.close());
}

/// A real partition: the two devices in their own network namespaces, the link between them
/// cut with no goodbye (a tablet leaving the clinic's Wi-Fi), checks recorded on both sides
/// while apart, the link mended. Each side notices the silence by itself (QUIC's idle
/// timeout), holds only its own new check meanwhile, dials again, and both end with both.
#[test]
fn a_partition_between_network_namespaces_heals_and_both_sides_converge() {
    let hosts = netns::TwoHosts::new();
    const SYNC_PORT: u16 = 22800;
    let start = |ns: &str, outside: std::net::Ipv4Addr, link: std::net::Ipv4Addr| {
        Tsunagid::start_in_netns(
            tempfile::tempdir().unwrap(),
            ns,
            // No qualification system in the namespace: documents are captured.
            "http://127.0.0.1:9",
            &scenario().institution_code,
            &format!(
                "[api]\nlisten = \"{outside}:{}\"\nallow_remote = true\n\
                 [sync]\nlisten = \"{link}:{SYNC_PORT}\"\n\
                 [reconcile]\ninterval_secs = 3600\n",
                tsunagid::free_port()
            ),
        )
    };
    let a = start(&hosts.a, hosts.a_outside, hosts.a_link);
    let b = start(&hosts.b, hosts.b_outside, hosts.b_link);
    for (d, other, addr) in [
        (&a, device_id(&b), hosts.b_link),
        (&b, device_id(&a), hosts.a_link),
    ] {
        let (code, reply) = d.post(
            "/v1/peers",
            &json!({"id": other, "name": "相手", "addr": format!("{addr}:{SYNC_PORT}")}),
        );
        assert_eq!(code, 200, "{reply}");
    }
    let connected = |d: &Tsunagid| {
        let (_, peers) = d.get("/v1/peers");
        peers["peers"][0]["connected"] == true
    };
    wait_until(Duration::from_secs(30), "both connected", &[&a, &b], || {
        connected(&a) && connected(&b)
    });
    let before = record_document(&a);
    wait_until(
        Duration::from_secs(30),
        "B has A's first check",
        &[&a, &b],
        || check_of(&b, &before).is_some(),
    );

    hosts.cut();
    let on_a = record_document(&a);
    let on_b = record_document(&b);
    // Nobody said goodbye: each side finds out from the silence (idle timeout 30 s).
    wait_until(
        Duration::from_secs(60),
        "both sides noticed the partition",
        &[&a, &b],
        || !connected(&a) && !connected(&b),
    );
    assert!(
        check_of(&b, &on_a).is_none(),
        "nothing crossed the cut link"
    );
    assert!(
        check_of(&a, &on_b).is_none(),
        "nothing crossed the cut link"
    );

    hosts.mend();
    // Dialled again within the backoff (at most 30 s), then caught up both ways.
    wait_until(
        Duration::from_secs(90),
        "both sides hold both checks after the link came back",
        &[&a, &b],
        || check_of(&a, &on_b).is_some() && check_of(&b, &on_a).is_some(),
    );
    wait_until(
        Duration::from_secs(30),
        "both connected again",
        &[&a, &b],
        || connected(&a) && connected(&b),
    );
    for d in [&a, &b] {
        for id in [&before, &on_a, &on_b] {
            assert!(check_of(d, id).is_some(), "{id} on both");
        }
    }
}
