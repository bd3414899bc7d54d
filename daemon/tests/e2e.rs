//! End-to-end checks through the real parts: the `tsunagi` binary talks to the real pcscd,
//! whose vpcd reader slot holds the virtual card from `tests/vcard`, and asks the simulator
//! from `tests/oqs-sim` over HTTP.
//!
//! pcscd is one per machine, so every test takes the harness's exclusive session first.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{runtime, scenario};

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use oqs_sim::{FaultMode, MalformedKind, SimHandle, Simulator};
use tsunagi_vcard::card::{
    BlockedStatus, CardProfile, VirtualCard, JPKI_AID, KENHOJO_AID, KENMEN_AID,
};
use tsunagi_vcard::harness::{self, PcscdSession};
use tsunagi_vcard::vpcd::{AttachOptions, AttachedCard};

/// One test's world: pcscd held, a simulator running, a card on slot 0.
struct World {
    sim: SimHandle,
    card: Option<AttachedCard>,
    data_dir: Option<std::path::PathBuf>,
    config: Option<std::path::PathBuf>,
    _pcscd: PcscdSession,
}

impl World {
    fn new() -> Self {
        let pcscd = harness::pcscd().expect("pcscd harness");
        let sim = runtime()
            .block_on(Simulator::start(scenario().sim_config()))
            .expect("simulator");
        Self {
            sim,
            card: None,
            data_dir: None,
            config: None,
            _pcscd: pcscd,
        }
    }

    fn with_card(mut self, profile: CardProfile, options: AttachOptions) -> Self {
        // Waits for pcscd to see the slot empty, then the new card present.
        let attached = harness::insert(VirtualCard::new(profile), 0, options)
            .expect("insert card into vpcd slot 0");
        self.card = Some(attached);
        self
    }

    fn card(self, name: &str) -> Self {
        let profile = scenario().card(name).expect("card in scenario").clone();
        self.with_card(profile, AttachOptions::default())
    }

    fn tsunagi(&self, args: &[&str], stdin: &str) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsunagi"));
        cmd.args(args)
            .env("TSUNAGI_OQS_URL", self.sim.base_url())
            .env("TSUNAGI_INSTITUTION_CODE", &scenario().institution_code)
            .env("TSUNAGI_OQS_TIMEOUT_MS", "1500")
            .env_remove("TSUNAGI_DATA_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.data_dir {
            cmd.env("TSUNAGI_DATA_DIR", dir);
        }
        match &self.config {
            Some(c) => cmd.env("TSUNAGI_CONFIG", c),
            None => cmd.env("TSUNAGI_CONFIG", "/nonexistent/tsunagi.toml"),
        };
        run(cmd, stdin)
    }

    fn check(&self, method: &str, stdin: &str, extra: &[&str]) -> Run {
        let reader = harness::reader_name(0);
        let mut args = vec![
            "check",
            "--method",
            method,
            "--reader",
            reader.as_str(),
            "--card-wait",
            "10",
        ];
        args.extend_from_slice(extra);
        self.tsunagi(&args, stdin)
    }

    fn log(&self) -> tsunagi_vcard::card::ApduLog {
        self.card.as_ref().expect("card attached").log()
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run(mut cmd: Command, stdin: &str) -> Run {
    let mut child = cmd.spawn().expect("spawn tsunagi");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait tsunagi");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn assert_never_touched_individual_number(world: &World) {
    let log = world.log();
    assert!(log.was_selected(&JPKI_AID), "the JPKI application was used");
    assert!(
        !log.was_selected(&KENHOJO_AID),
        "card-info AP must never be selected"
    );
    assert!(
        !log.was_selected(&KENMEN_AID),
        "card-surface AP must never be selected"
    );
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"))
}

#[test]
fn valid_card_visual() {
    let w = World::new().card("valid-employee");
    let r = w.check("visual", "", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("有効"), "{r:?}");
    assert!(r.stdout.contains("目視"), "{r:?}");
    // Visual needs no PIN: no VERIFY and no signature.
    let log = w.log();
    assert!(
        log.entries()
            .iter()
            .all(|e| e.command.get(1) != Some(&0x20)),
        "no VERIFY in visual"
    );
    assert_never_touched_individual_number(&w);
}

#[test]
fn valid_card_pin_json() {
    let w = World::new().card("valid-employee");
    let r = w.check("pin", "1234\n", &["--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = json(&r);
    assert_eq!(v["status"], "confirmed", "{r:?}");
    assert_eq!(v["method"], "pin");
    assert!(v["qualification"]["insurer_number"].is_string(), "{r:?}");
    // The card verified the PIN and signed: VERIFY with data, then 80 2A.
    let log = w.log();
    let cmds: Vec<Vec<u8>> = log.entries().iter().map(|e| e.command.clone()).collect();
    assert!(
        cmds.iter().any(|c| c.len() > 4 && c[1] == 0x20),
        "VERIFY with data sent"
    );
    assert!(
        cmds.iter().any(|c| c[0] == 0x80 && c[1] == 0x2A),
        "signature asked"
    );
    assert_never_touched_individual_number(&w);
    // The PIN never reaches the output.
    assert!(
        !r.stdout.contains("1234") && !r.stderr.contains("1234"),
        "{r:?}"
    );
}

#[test]
fn invalid_qualification() {
    let w = World::new().card("lost");
    let r = w.check("visual", "", &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("資格（無効）"), "{r:?}");
}

#[test]
fn invalid_with_newer_qualification() {
    let w = World::new().card("lost-newer");
    let r = w.check("visual", "", &["--json"]);
    assert_eq!(r.code, 1, "{r:?}");
    let v = json(&r);
    assert_eq!(v["status"], "invalid", "{r:?}");
    assert_eq!(v["newer_exists"], true, "{r:?}");
}

#[test]
fn no_qualification_information() {
    let w = World::new().card("no-coverage");
    let r = w.check("visual", "", &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("資格情報なし"), "{r:?}");
}

#[test]
fn several_matches() {
    let w = World::new().card("multiple");
    let r = w.check("visual", "", &["--json"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(json(&r)["status"], "multiple", "{r:?}");
}

#[test]
fn wrong_pin_says_how_many_tries_remain() {
    let w = World::new().card("valid-employee");
    // One wrong PIN, then no more input: the check stops and tells the tries left.
    let r = w.check("pin", "0000\n", &[]);
    assert_eq!(r.code, 1, "{r:?}");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("残り2回"), "{r:?}");
    // A second run reads the counter again before trying: still 2 left, then correct.
    let r = w.check("pin", "1234\n", &[]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn last_try_needs_confirmation() {
    let profile = scenario()
        .card("valid-employee")
        .unwrap()
        .clone()
        .with_pin_tries_left(1);
    let w = World::new().with_card(profile, AttachOptions::default());
    let r = w.check("pin", "1234\n", &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("残り回数が1回"),
        "{r:?}"
    );
    // Only the empty status query was sent: the last try was not spent.
    let verifies: Vec<_> = w
        .log()
        .entries()
        .into_iter()
        .filter(|e| e.command.get(1) == Some(&0x20))
        .collect();
    assert!(!verifies.is_empty());
    assert!(
        verifies.iter().all(|e| e.command.len() == 4),
        "no PIN was sent"
    );
    // With explicit confirmation the check goes through.
    let r = w.check("pin", "1234\n", &["--confirm-last-try"]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn blocked_pin_is_reported() {
    for blocked in [
        BlockedStatus::Sw63C0,
        BlockedStatus::Sw6983,
        BlockedStatus::Sw6984,
    ] {
        let profile = scenario()
            .card("valid-employee")
            .unwrap()
            .clone()
            .with_pin_tries_left(0)
            .with_blocked_sw(blocked);
        let w = World::new().with_card(profile, AttachOptions::default());
        let r = w.check("pin", "1234\n", &[]);
        assert_eq!(r.code, 1, "{blocked:?}: {r:?}");
        assert!(r.stdout.contains("ロック"), "{blocked:?}: {r:?}");
    }
}

#[test]
fn photo_less_card_refused_for_visual() {
    let w = World::new().card("infant");
    let r = w.check("visual", "", &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("暗証番号"), "{r:?}");
    // With the PIN the same card is confirmed.
    let r = w.check("pin", "1234\n", &[]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn expired_certificate_within_grace_is_still_checkable() {
    let w = World::new().card("expired-2m");
    let r = w.check("visual", "", &["--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = json(&r);
    assert_eq!(v["status"], "confirmed");
    assert!(
        !v["notices"].as_array().unwrap().is_empty(),
        "grace notice: {r:?}"
    );
}

#[test]
fn expired_certificate_beyond_grace_is_refused() {
    let w = World::new().card("expired-4m");
    let r = w.check("visual", "", &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("有効期限"), "{r:?}");
}

#[test]
fn revoked_certificate_is_refused() {
    let w = World::new().card("revoked");
    let r = w.check("visual", "", &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("失効"), "{r:?}");
}

#[test]
fn card_removed_mid_read() {
    let profile = scenario().card("valid-employee").unwrap().clone();
    let w = World::new().with_card(
        profile,
        AttachOptions {
            remove_after_commands: Some(3),
        },
    );
    let r = w.check("visual", "", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("カードが離れました") || r.stderr.contains("カードが離れました"),
        "{r:?}"
    );
}

#[test]
fn no_reader() {
    let mut w = World::new();
    w._pcscd
        .start_pcscd_without_readers()
        .expect("pcscd without readers");
    let r = w.tsunagi(&["check", "--method", "visual", "--card-wait", "2"], "");
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("カードリーダーが接続されていません"),
        "{r:?}"
    );
    let r = w.tsunagi(&["readers"], "");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("カードリーダーが接続されていません"),
        "{r:?}"
    );
}

#[test]
fn named_reader_missing() {
    let w = World::new();
    let r = w.tsunagi(
        &[
            "check",
            "--method",
            "visual",
            "--reader",
            "存在しないリーダー",
            "--card-wait",
            "2",
        ],
        "",
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("見つかりません"), "{r:?}");
    assert!(
        r.stderr.contains(&harness::reader_name(0)),
        "lists the readers that exist: {r:?}"
    );
}

#[test]
fn pcscd_not_running() {
    let mut w = World::new();
    w._pcscd.stop_pcscd().expect("stop pcscd");
    let r = w.tsunagi(&["readers"], "");
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("pcscd"), "{r:?}");
    let r = w.tsunagi(&["check", "--method", "visual", "--card-wait", "2"], "");
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("pcscd"), "{r:?}");
}

#[test]
fn readers_lists_the_virtual_slots() {
    let w = World::new().card("valid-employee");
    // pcscd notices an inserted card within its polling interval.
    std::thread::sleep(Duration::from_millis(500));
    let r = w.tsunagi(&["readers", "--json"], "");
    assert_eq!(r.code, 0, "{r:?}");
    let v = json(&r);
    let slot0 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == harness::reader_name(0))
        .unwrap_or_else(|| panic!("slot 0 listed: {r:?}"));
    assert_eq!(slot0["card_present"], true, "{r:?}");
}

fn fault_case(mode: FaultMode, delay: Option<Duration>, expect: &str) {
    let w = World::new().card("valid-employee");
    let faults = w.sim.faults();
    faults.set_mode(mode);
    if let Some(d) = delay {
        faults.set_delay(d);
    }
    let r = w.check("visual", "", &["--json"]);
    assert_eq!(r.code, 2, "{r:?}");
    let v = json(&r);
    assert_eq!(v["status"], "error", "{r:?}");
    assert_eq!(v["error"], expect, "{r:?}");
    assert_eq!(v["transient"], true, "{r:?}");
    assert!(
        v["message_ja"].as_str().unwrap().contains("接続できません")
            || v["message_ja"].as_str().unwrap().contains("後で"),
        "{r:?}"
    );
    // The line comes back: the same card is confirmed.
    faults.clear();
    let r = w.check("visual", "", &[]);
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn fault_refused() {
    fault_case(FaultMode::Refuse, None, "unreachable");
}

#[test]
fn fault_slow_answer_times_out() {
    fault_case(
        FaultMode::None,
        Some(Duration::from_millis(4000)),
        "timeout",
    );
}

#[test]
fn fault_server_error() {
    fault_case(FaultMode::ServerError(503), None, "server-error");
}

#[test]
fn fault_malformed_body() {
    for kind in [
        MalformedKind::TruncatedJson,
        MalformedKind::NotJson,
        MalformedKind::WrongTypes,
    ] {
        fault_case(FaultMode::Malformed(kind), None, "malformed");
    }
}

#[test]
fn fault_rate_limited() {
    fault_case(
        FaultMode::RateLimit {
            retry_after_secs: 5,
        },
        None,
        "rate-limited",
    );
}

#[test]
fn fault_system_error() {
    fault_case(FaultMode::SystemError, None, "system-error");
}

#[test]
fn offline_capture_then_reconcile_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new();
    w.data_dir = Some(dir.path().to_path_buf());
    w.sim.faults().set_mode(FaultMode::Refuse);
    let mut ids = Vec::new();
    for (card, method, pin) in [
        ("valid-employee", "visual", ""),
        ("valid-dependant", "pin", "1234\n"),
        ("lost", "visual", ""),
        ("no-coverage", "visual", ""),
    ] {
        w.card = None; // the previous card leaves the reader
        w = w.card(card);
        let r = w.check(method, pin, &["--json", "--first-visit"]);
        assert_eq!(r.code, 3, "{card}: {r:?}");
        let v = json(&r);
        assert_eq!(v["status"], "captured", "{r:?}");
        let lines = v["instructions_ja"].to_string();
        assert!(lines.contains("3割"), "co-payment instruction: {r:?}");
        assert!(
            lines.contains("申立書"),
            "first visit needs a 申立書: {r:?}"
        );
        ids.push(v["check_id"].as_str().unwrap().to_string());
    }
    // Text mode tells the operator too.
    let r = w.check("visual", "", &[]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stdout.contains("オフライン受付"), "{r:?}");
    ids.push(
        r.stdout
            .split("確認ID: ")
            .nth(1)
            .unwrap()
            .split('）')
            .next()
            .unwrap()
            .to_string(),
    );

    let r = w.tsunagi(
        &[
            "declare",
            &ids[3],
            "--name",
            "申立　花子",
            "--address",
            "東京都架空区1-2-3",
            "--phone",
            "03-0000-0000",
            "--birth-date",
            "1990-01-02",
            "--sex",
            "female",
        ],
        "",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = w.tsunagi(&["pending", "--json"], "");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(json(&r).as_array().unwrap().len(), 5, "{r:?}");
    let r = w.tsunagi(&["status", "--json"], "");
    assert_eq!(json(&r)["line"], "offline", "{r:?}");
    assert_eq!(json(&r)["queue"], 5, "{r:?}");

    // The line comes back.
    w.sim.faults().clear();
    let r = w.tsunagi(&["reconcile", "--now", "--json"], "");
    assert_eq!(r.code, 0, "{r:?}");
    // The fifth (no coverage, no 申立書 yet) waits for staff.
    assert_eq!(json(&r)["resolved"], 4, "{r:?}");
    assert_eq!(json(&r)["needs_staff"], 1, "{r:?}");
    let basis = |id: &str| {
        let r = w.tsunagi(&["show", id, "--json"], "");
        assert_eq!(r.code, 0, "{r:?}");
        json(&r)["resolution"].clone()
    };
    assert_eq!(basis(&ids[0])["basis"], "current");
    assert_eq!(
        basis(&ids[1])["basis"],
        "current",
        "the PIN proof made offline is accepted later"
    );
    assert_eq!(basis(&ids[2])["basis"], "old");
    let fushou = basis(&ids[3]);
    assert_eq!(fushou["basis"], "fushou");
    assert_eq!(fushou["insurer_number"], "77777777");
    let r = w.tsunagi(&["show", &ids[3]], "");
    assert!(
        r.stdout.contains("摘要欄") && r.stdout.contains("東京都架空区1-2-3"),
        "{r:?}"
    );
    let r = w.tsunagi(&["pending"], "");
    assert!(
        r.stdout.contains("1件") && r.stdout.contains(&ids[4]),
        "{r:?}"
    );
    let r = w.tsunagi(&["show", &ids[4]], "");
    assert!(
        r.stdout.contains("資格情報なし") && r.stdout.contains("申立書"),
        "{r:?}"
    );
    let r = w.tsunagi(&["status", "--json"], "");
    assert_eq!(json(&r)["line"], "online", "{r:?}");
    assert_eq!(json(&r)["queue"], 1, "{r:?}");
}

#[test]
fn tsunagid_watches_the_reader_and_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut w = World::new().card("valid-employee");
    let config = dir.path().join("tsunagi.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ninstitution_code = {:?}\n[oqs]\nurl = {:?}\n[reconcile]\ninterval_secs = 1\n[api]\nlisten = \"127.0.0.1:{}\"\n",
            data.display().to_string(),
            scenario().institution_code,
            w.sim.base_url(),
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        ),
    )
    .unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_tsunagid"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let slot = harness::reader_name(0);
    let card_on_slot = |want: bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = tsunagi::service::read_status(&data, Duration::from_secs(5));
            if status.as_ref().is_some_and(|s| {
                s.readers
                    .iter()
                    .any(|r| r.name == slot && r.card_present == want)
            }) {
                return status.unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tsunagid never saw card_present={want} on {slot}: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    card_on_slot(true);
    w.card = None; // the patient takes the card back
    let status = card_on_slot(false);
    assert!(status.readers_problem.is_none(), "{status:?}");
    // While tsunagid runs, `tsunagi status` asks it (the store is the daemon's alone).
    w.config = Some(config.clone());
    let r = w.tsunagi(&["status"], "");
    assert!(
        r.stdout
            .contains(&format!("カードリーダー: {slot}（カードなし）")),
        "{r:?}"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let exit = daemon.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}
