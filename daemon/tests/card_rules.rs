//! The card's own rules, applied by the daemon at the counter before any query (issue 10,
//! item 3): the certificate judged on the visit date (R3 grace, R6 none for a smartphone),
//! the photo-less infant card (R2), the 顔認証 card without a PIN, and a card that chains its
//! answers with `61 xx` — through the real parts: the `tsunagi` binary (or, where only the
//! operator can say what the card is, the same workflow in-process) over the real pcscd and
//! vpcd with the virtual card, asking the simulator.
//!
//! The simulator judges certificates too; these tests never rely on that. Every refusal
//! asserts the simulator saw no search at all, and every check that must go through places
//! the visit where the daemon's judgement and any simulator's agree.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{runtime, scenario, today};

use std::io::Write;
use std::process::{Command, Output, Stdio};

use chrono::{Months, NaiveDate};
use oqs_sim::{FaultMode, SimHandle, Simulator};
use tsunagi::card::reader::Readers;
use tsunagi::card::{Pin, PinEntry};
use tsunagi::check::capture::VisitContext;
use tsunagi::check::workflow::{self, CheckRequest, Reception};
use tsunagi::domain::{FacilityType, IdentityMethod};
use tsunagi::ledger::Ledger;
use tsunagi::oqs::{OqsClient, OqsConfig};
use tsunagi::rules::identity::CardKind;
use tsunagi::view::{CheckReport, ReportStatus};
use tsunagi_vcard::card::{CardProfile, PinSetup, Token, VirtualCard};
use tsunagi_vcard::harness::{self, PcscdSession};
use tsunagi_vcard::vpcd::{AttachOptions, AttachedCard};

fn months_from_today(n: i32) -> NaiveDate {
    let m = Months::new(n.unsigned_abs());
    if n < 0 {
        today().checked_sub_months(m).unwrap()
    } else {
        today().checked_add_months(m).unwrap()
    }
}

fn card(name: &str) -> CardProfile {
    scenario().card(name).expect("card in scenario").clone()
}

/// One test's world: pcscd held, a simulator, a card on slot 0, a fresh data directory.
struct World {
    sim: SimHandle,
    _card: Option<AttachedCard>,
    data_dir: tempfile::TempDir,
    _pcscd: PcscdSession,
}

impl World {
    fn with(profile: CardProfile) -> Self {
        let pcscd = harness::pcscd().expect("pcscd harness");
        let sim = runtime()
            .block_on(Simulator::start(scenario().sim_config()))
            .expect("simulator");
        let attached = harness::insert(VirtualCard::new(profile), 0, AttachOptions::default())
            .expect("insert card into vpcd slot 0");
        Self {
            sim,
            _card: Some(attached),
            data_dir: tempfile::tempdir().unwrap(),
            _pcscd: pcscd,
        }
    }

    fn offline(self) -> Self {
        self.sim.faults().set_mode(FaultMode::Refuse);
        self
    }

    fn tsunagi(&self, args: &[&str], stdin: &str) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsunagi"));
        cmd.args(args)
            .env("TSUNAGI_OQS_URL", self.sim.base_url())
            .env("TSUNAGI_INSTITUTION_CODE", &scenario().institution_code)
            .env("TSUNAGI_OQS_TIMEOUT_MS", "1500")
            .env("TSUNAGI_DATA_DIR", self.data_dir.path())
            .env("TSUNAGI_CONFIG", "/nonexistent/tsunagi.toml")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
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

    /// `tsunagi check --json` on slot 0 for `visit_date`.
    fn check(&self, method: &str, stdin: &str, visit_date: NaiveDate) -> (Run, serde_json::Value) {
        let reader = harness::reader_name(0);
        let visit = visit_date.to_string();
        let r = self.tsunagi(
            &[
                "check",
                "--json",
                "--method",
                method,
                "--reader",
                &reader,
                "--card-wait",
                "10",
                "--visit-date",
                &visit,
            ],
            stdin,
        );
        let v = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"));
        (r, v)
    }

    /// Checks recorded so far.
    fn recorded(&self) -> usize {
        let r = self.tsunagi(&["pending", "--json"], "");
        assert_eq!(r.code, 0, "{r:?}");
        serde_json::from_str::<serde_json::Value>(&r.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
            .as_array()
            .map_or(0, Vec::len)
    }

    /// The same workflow `tsunagi check` runs, in this process, with an operator who can say
    /// what the card is — which the CLI cannot yet (see `Operator`).
    fn perform(&self, method: IdentityMethod, operator: Operator) -> (CheckReport, usize) {
        let ledger = Ledger::open(&self.data_dir.path().join("in-process")).unwrap();
        let client = OqsClient::new(OqsConfig {
            base_url: self.sim.base_url(),
            institution_code: scenario().institution_code.clone(),
            timeout: std::time::Duration::from_millis(1500),
        })
        .unwrap();
        let transport = Readers::connect()
            .and_then(|r| r.open(&harness::reader_name(0)))
            .expect("card on slot 0");
        let request = CheckRequest {
            method,
            visit: VisitContext {
                visit_date: today(),
                facility: FacilityType::Medical,
                first_visit: false,
                next_visit: None,
                last_known: None,
            },
            check_id: None,
        };
        let report = runtime()
            .block_on(workflow::perform(
                Reception {
                    ledger: Some(&ledger),
                    client: Some(&client),
                    institution_code: &scenario().institution_code,
                    settings: &tsunagi::rules::settings::RuleSettings::default(),
                },
                transport,
                &request,
                Box::new(operator),
                tsunagi::check::now_jst(),
            ))
            .unwrap();
        let open = ledger.open_checks().unwrap().len();
        (report, open)
    }
}

/// The operator at the counter: the PIN the patient types, and what the operator sees on the
/// card. The CLI has no way yet to say "this card has no photo" (R2: nothing on the chip
/// tells), so these cases run the workflow in-process with this entry.
struct Operator {
    pin: Option<&'static str>,
    kind: CardKind,
}

impl PinEntry for Operator {
    fn pin(&mut self, _tries_left: u8) -> Option<Pin> {
        self.pin.take().and_then(Pin::parse)
    }
    fn confirm_last_try(&mut self) -> bool {
        false
    }
    fn wrong_pin(&mut self, _tries_left: u8) {}
    fn card_kind(&self) -> CardKind {
        self.kind
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

/// A refusal at the counter: exit 1, `refused`, the stable name, and the simulator asked
/// nothing.
fn assert_refused_at_counter(w: &World, r: &Run, v: &serde_json::Value, name: &str) {
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(v["status"], "refused", "{r:?}");
    assert_eq!(v["error"], name, "{r:?}");
    assert!(v["check_id"].is_null(), "nothing recorded: {r:?}");
    assert_eq!(
        w.sim.request_count(),
        0,
        "the simulator saw no search: {r:?}"
    );
}

fn message(v: &serde_json::Value) -> String {
    v["message_ja"].as_str().unwrap_or_default().to_string()
}

#[test]
fn expired_two_months_before_the_visit_is_checked_with_a_notice() {
    // Expired two months before today; the visit is today.
    let w = World::with(card("expired-2m"));
    let (r, v) = w.check("visual", "", today());
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(v["status"], "confirmed", "{r:?}");
    assert!(
        !v["notices"].as_array().unwrap().is_empty(),
        "a notice to renew: {r:?}"
    );
    assert_eq!(w.sim.request_count(), 1, "{r:?}");
}

#[test]
fn expired_four_months_before_the_visit_is_refused_at_the_counter() {
    let w = World::with(card("expired-4m"));
    let (r, v) = w.check("visual", "", today());
    assert_refused_at_counter(&w, &r, &v, "certificate-expired");
    let m = message(&v);
    assert!(m.contains("有効期限") && m.contains("猶予"), "{m}");
    // What to do now, in the order it is tried.
    let (a, b, c) = (
        m.find("資格確認書").unwrap(),
        m.find("マイナポータル").unwrap(),
        m.find("申立書").unwrap(),
    );
    assert!(a < b && b < c, "{m}");
    assert!(!m.contains("R3") && !m.contains("R12"), "no rule ids: {m}");
    // The PIN method is refused the same way, before any PIN is typed.
    let (r, v) = w.check("pin", "1234\n", today());
    assert_refused_at_counter(&w, &r, &v, "certificate-expired");
}

#[test]
fn the_grace_is_judged_on_the_visit_date_not_today() {
    // In its grace today, but the visit is two months on: four months after expiry.
    let w = World::with(card("expired-2m"));
    let (r, v) = w.check("visual", "", months_from_today(2));
    assert_refused_at_counter(&w, &r, &v, "certificate-expired");
    assert_eq!(w.recorded(), 0);
    drop(w); // one world at a time: it holds pcscd
             // Past its grace today, but the visit was two months ago: in the grace on that day. The
             // line is down, so the check is captured — the daemon let it through.
    let w = World::with(card("expired-4m")).offline();
    let (r, v) = w.check("visual", "", months_from_today(-2));
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(v["status"], "captured", "{r:?}");
    assert_eq!(w.recorded(), 1);
}

#[test]
fn offline_the_card_past_its_grace_is_still_refused_and_not_captured() {
    let w = World::with(card("expired-4m")).offline();
    let (r, v) = w.check("visual", "", today());
    assert_refused_at_counter(&w, &r, &v, "certificate-expired");
    assert_eq!(w.recorded(), 0, "nothing recorded for 事後確認");
    drop(w);
    // The card in its grace is captured as any other.
    let w = World::with(card("expired-2m")).offline();
    let (r, v) = w.check("visual", "", today());
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(v["status"], "captured", "{r:?}");
    assert_eq!(w.recorded(), 1);
}

#[test]
fn a_smartphone_gets_no_grace() {
    // The same certificate as the card in its grace, read from a phone (token EF).
    let phone = card("expired-2m").with_token(Token::Smartphone);
    let w = World::with(phone);
    let (r, v) = w.check("visual", "", today());
    assert_refused_at_counter(&w, &r, &v, "smartphone-certificate-expired");
    let m = message(&v);
    assert!(
        m.contains("スマートフォン") && m.contains("猶予期間がありません"),
        "{m}"
    );
    drop(w);
    // Offline too: refused, not captured.
    let w = World::with(card("expired-2m").with_token(Token::Smartphone)).offline();
    let (r, v) = w.check("visual", "", today());
    assert_refused_at_counter(&w, &r, &v, "smartphone-certificate-expired");
    assert_eq!(w.recorded(), 0);
    drop(w);
    // A phone whose certificate is valid is checked as a card is.
    let w = World::with(card("valid-employee").with_token(Token::Smartphone));
    let (r, v) = w.check("visual", "", today());
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(v["status"], "confirmed", "{r:?}");
}

#[test]
fn a_face_authentication_card_asked_for_a_pin_is_sent_to_the_visual_check() {
    for setup in [PinSetup::NotSet, PinSetup::NotSetNoEf] {
        let w = World::with(card("valid-employee").without_pin(setup));
        let (r, v) = w.check("pin", "1234\n", today());
        assert_refused_at_counter(&w, &r, &v, "no-pin-set");
        let m = message(&v);
        assert!(m.contains("顔認証") && m.contains("目視"), "{setup:?}: {m}");
        assert!(!m.contains("ICチップ"), "not a chip fault: {m}");
        // The visual check goes through.
        let (r, v) = w.check("visual", "", today());
        assert_eq!(r.code, 0, "{setup:?}: {r:?}");
        assert_eq!(v["status"], "confirmed", "{r:?}");
    }
}

#[test]
fn an_infant_card_is_pin_only_in_the_daemon_itself() {
    // The operator says the card has no photo: the visual method is refused before the card
    // is read and before any query.
    let w = World::with(card("infant"));
    let (report, open) = w.perform(
        IdentityMethod::Visual,
        Operator {
            pin: None,
            kind: CardKind::InfantNoPhoto,
        },
    );
    assert_eq!(report.status, ReportStatus::Refused, "{report:?}");
    assert_eq!(report.error.as_deref(), Some("photo-less-needs-pin"));
    assert!(report.message_ja.contains("暗証番号"), "{report:?}");
    assert_eq!(w.sim.request_count(), 0, "no search: {report:?}");
    assert_eq!(open, 0, "nothing recorded");
    // With the PIN it is checked.
    let (report, _) = w.perform(
        IdentityMethod::Pin,
        Operator {
            pin: Some("1234"),
            kind: CardKind::InfantNoPhoto,
        },
    );
    assert_eq!(report.status, ReportStatus::Confirmed, "{report:?}");
}

#[test]
fn a_blocked_pin_on_an_infant_card_points_past_the_visual_check() {
    let w = World::with(card("infant").with_pin_tries_left(0));
    let (report, open) = w.perform(
        IdentityMethod::Pin,
        Operator {
            pin: Some("1234"),
            kind: CardKind::InfantNoPhoto,
        },
    );
    assert_eq!(report.status, ReportStatus::Refused, "{report:?}");
    assert_eq!(report.error.as_deref(), Some("photo-less-pin-blocked"));
    let m = &report.message_ja;
    assert!(
        !m.contains("目視で本人確認して") && !m.contains("切り替え"),
        "{m}"
    );
    assert!(m.contains("資格確認書") && m.contains("市区町村"), "{m}");
    assert_eq!(w.sim.request_count(), 0);
    assert_eq!(open, 0);
    // Through the CLI, which cannot be told the card has no photo, the blocked message is
    // right for both kinds of card: visual only for a card with a photo.
    let (r, v) = w.check("pin", "1234\n", today());
    assert_refused_at_counter(&w, &r, &v, "pin-blocked");
    let m = message(&v);
    assert!(m.contains("顔写真付きのカードなら目視"), "{m}");
    assert!(
        m.contains("顔写真のないカード") && m.contains("資格確認書"),
        "{m}"
    );
}

#[test]
fn a_card_that_chains_its_answers_is_read_through_pcscd() {
    // Every answer over 100 bytes comes in pieces behind 61 xx: the certificate and the
    // 256-byte signature are fetched with GET RESPONSE.
    let w = World::with(card("valid-employee").with_chain_after(100));
    let (r, v) = w.check("pin", "1234\n", today());
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(v["status"], "confirmed", "{r:?}");
    assert!(
        w._card
            .as_ref()
            .unwrap()
            .log()
            .entries()
            .iter()
            .any(|e| e.command.get(1) == Some(&0xC0)),
        "GET RESPONSE was sent"
    );
}

/// The same rule through the command line: `--photo-less` is the operator's word that the
/// card has no photo; the visual method is then refused before any query.
#[test]
fn tsunagi_check_photo_less_visual_is_refused_before_any_query() {
    let w = World::with(card("infant"));
    let reader = harness::reader_name(0);
    let r = w.tsunagi(
        &[
            "check",
            "--json",
            "--photo-less",
            "--method",
            "visual",
            "--reader",
            &reader,
            "--card-wait",
            "10",
        ],
        "",
    );
    let v: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"));
    assert_refused_at_counter(&w, &r, &v, "photo-less-needs-pin");
}
