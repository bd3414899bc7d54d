//! Patient history at reception (issue 10, item 1), through the real parts: tsunagid as a
//! process with its store on disk, the real pcscd with vpcd and the virtual card, the
//! simulator over HTTP. A patient checked while the line was up is remembered by a keyed
//! hash of the card's public key; when the line is down the next time, the capture tells
//! staff the co-payment the clinic last confirmed (R13) and does not ask for a 申立書 (R14).
//! What the receipt computer sends with a request is used the same way.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/tsunagid.rs"]
mod tsunagid;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{runtime, scenario, today};

use chrono::{Months, NaiveDate};
use oqs_sim::{FaultMode, SimHandle, Simulator};
use serde_json::{json, Value};
use tsunagi_vcard::card::VirtualCard;
use tsunagi_vcard::harness::{self, PcscdSession};
use tsunagi_vcard::vpcd::{AttachOptions, AttachedCard};

use tsunagid::Tsunagid;

/// pcscd, the simulator, one card on slot 0, and tsunagid.
struct World {
    sim: SimHandle,
    d: Tsunagid,
    _card: AttachedCard,
    _pcscd: PcscdSession,
}

impl World {
    fn with(card: &str) -> Self {
        let pcscd = harness::pcscd().expect("pcscd harness");
        let sim = runtime()
            .block_on(Simulator::start(scenario().sim_config()))
            .expect("simulator");
        let profile = scenario().card(card).expect("card in scenario").clone();
        let attached = harness::insert(VirtualCard::new(profile), 0, AttachOptions::default())
            .expect("insert card into vpcd slot 0");
        // Only explicit requests ask the qualification system.
        let d = Tsunagid::start(
            &sim.base_url(),
            &scenario().institution_code,
            "[reconcile]\ninterval_secs = 3600\n",
        );
        Self {
            sim,
            d,
            _card: attached,
            _pcscd: pcscd,
        }
    }

    /// A visual check on slot 0 through the API.
    fn check(&self, visit: NaiveDate, first_visit: bool, extra: Value) -> Value {
        let mut body = json!({
            "method": "visual",
            "reader": harness::reader_name(0),
            "visit_date": visit,
            "first_visit": first_visit,
            "card_wait_secs": 10,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (code, report) = self.d.post("/v1/checks", &body);
        assert_eq!(code, 200, "{report}");
        report
    }

    fn line_down(&self) {
        self.sim.faults().set_mode(FaultMode::Refuse);
    }
}

fn last_month() -> NaiveDate {
    today().checked_sub_months(Months::new(1)).unwrap()
}

fn instructions(report: &Value) -> String {
    report["instructions_ja"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

const ASKS_DECLARATION: &str = "被保険者資格申立書（";

/// A returning patient's check captured offline, after one confirmed while the line was up.
fn returning_offline(card: &str) -> (World, String, Value) {
    let w = World::with(card);
    let before = w.check(last_month(), true, json!({}));
    assert_eq!(before["status"], "confirmed", "{before}");
    let first = before["check_id"].as_str().unwrap().to_string();
    w.line_down();
    let report = w.check(today(), false, json!({}));
    assert_eq!(report["status"], "captured", "{report}");
    (w, first, report)
}

#[test]
fn a_returning_1wari_patient_captured_offline_is_told_1wari() {
    let (w, first, report) = returning_offline("kouki");
    let text = instructions(&report);
    assert_eq!(report["copay_tenths"], 1, "{report}");
    assert!(text.contains("1割"), "{text}");
    assert!(!text.contains("3割で"), "{text}");
    assert!(!text.contains(ASKS_DECLARATION), "{text}");
    assert_eq!(report["earlier"]["source"], "history", "{report}");
    assert_eq!(report["earlier"]["check_id"], first.as_str(), "{report}");
    assert_eq!(
        report["earlier"]["confirmed_on"],
        last_month().to_string(),
        "{report}"
    );
    // The capture keeps what staff were told it was based on.
    let id = report["check_id"].as_str().unwrap();
    let (code, view) = w.d.get(&format!("/v1/checks/{id}"));
    assert_eq!(code, 200, "{view}");
    assert_eq!(view["earlier"]["copay_tenths"], 1, "{view}");
    assert_eq!(view["known_numbers"]["insurer"], "39139912", "{view}");
    // Nothing personal in the daemon's log: not the birth date, not the numbers.
    let log = w.d.log_text();
    assert!(!log.contains("00720045"), "{log}");
    assert!(!log.contains("1942-01-30"), "{log}");
}

#[test]
fn a_preschool_child_captured_offline_is_told_2wari() {
    let (_w, _, report) = returning_offline("preschool");
    assert_eq!(report["copay_tenths"], 2, "{report}");
    let text = instructions(&report);
    assert!(text.contains("2割"), "{text}");
    assert!(!text.contains(ASKS_DECLARATION), "{text}");
}

#[test]
fn a_first_visit_is_asked_for_a_declaration_and_a_return_visit_with_history_is_not() {
    let w = World::with("valid-employee");
    // Never seen, line down: the 申立書 is asked for, no co-payment is claimed to be known.
    w.line_down();
    let first = w.check(last_month(), true, json!({}));
    assert_eq!(first["status"], "captured", "{first}");
    assert!(instructions(&first).contains(ASKS_DECLARATION), "{first}");
    assert!(first["earlier"].is_null(), "{first}");
    assert!(first["copay_tenths"].is_null(), "{first}");
    // A capture is not a confirmation: it teaches nothing, so the patient is still unknown.
    let again = w.check(today(), true, json!({}));
    assert!(instructions(&again).contains(ASKS_DECLARATION), "{again}");

    // The line comes back and the patient is confirmed; the next time it is down, a new
    // 初診 of this patient needs no 申立書: the clinic knows the qualification.
    w.sim.faults().clear();
    let w = wait_online(w);
    let confirmed = w.check(last_month(), false, json!({}));
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    w.line_down();
    let known = w.check(today(), true, json!({}));
    assert_eq!(known["status"], "captured", "{known}");
    let text = instructions(&known);
    assert!(!text.contains(ASKS_DECLARATION), "{text}");
    assert!(text.contains("口頭で確認"), "{text}");
    assert_eq!(known["copay_tenths"], 3, "{known}");
    assert_eq!(
        known["earlier"]["check_id"], confirmed["check_id"],
        "{known}"
    );
}

fn wait_online(w: World) -> World {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, s) = w.d.get("/v1/status");
        if s["line"] == "online" {
            return w;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "line still not online: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn what_the_receipt_computer_sends_is_used_and_checked() {
    let w = World::with("valid-employee");
    w.line_down();
    let known = json!({"known_insurance": {
        "insurer": "06139999", "symbol": "練馬12", "number": "0004471", "branch": "01",
        "birth_date": "1950-04-01", "copay_tenths": 1
    }});
    let report = w.check(today(), true, known);
    assert_eq!(report["status"], "captured", "{report}");
    assert_eq!(report["copay_tenths"], 1, "{report}");
    assert_eq!(report["earlier"]["source"], "request", "{report}");
    let text = instructions(&report);
    assert!(text.contains("レセコン"), "{text}");
    assert!(!text.contains(ASKS_DECLARATION), "{text}");

    // A ratio that cannot be is refused before the card is touched, naming the field.
    let (code, problem) = w.d.post(
        "/v1/checks",
        &json!({
            "method": "visual", "reader": harness::reader_name(0),
            "known_insurance": {"insurer": "06139999", "number": "1", "birth_date": "1950-04-01",
                                "copay_tenths": 10}
        }),
    );
    assert_eq!(code, 400, "{problem}");
    assert_eq!(
        problem["field"], "known_insurance.copay_tenths",
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("負担割合"),
        "{problem}"
    );
}

#[test]
fn a_document_finds_the_history_of_its_numbers() {
    let w = World::with("valid-employee");
    let confirmed = w.check(last_month(), false, json!({}));
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    let q = &confirmed["qualification"];
    // A 資格確認書 with the same numbers, typed full-width and without a birth date: the
    // check still knows the patient's birth date (so it can be asked about by numbers).
    let (code, doc) = w.d.post(
        "/v1/documents",
        &json!({
            "kind": "kakuninsho",
            "visit_date": today(),
            "expires": today().checked_add_months(Months::new(6)).unwrap(),
            "insurer": q["insurer_number"],
            "symbol": "練馬１２",
            "number": q["number"],
            "branch": q["branch"],
        }),
    );
    assert_eq!(code, 200, "{doc}");
    assert_eq!(doc["status"], "recorded", "{doc}");
    let id = doc["check_id"].as_str().unwrap();
    let (_, view) = w.d.get(&format!("/v1/checks/{id}"));
    assert_eq!(view["earlier"]["source"], "history", "{view}");
    assert_eq!(view["earlier"]["check_id"], confirmed["check_id"], "{view}");
    assert_eq!(view["earlier"]["birth_date"], q["birth_date"], "{view}");
    // Another family member's 枝番 is another patient: nothing is found.
    let (_, other) = w.d.post(
        "/v1/documents",
        &json!({
            "kind": "kakuninsho",
            "visit_date": today(),
            "expires": today().checked_add_months(Months::new(6)).unwrap(),
            "insurer": q["insurer_number"],
            "symbol": q["symbol"],
            "number": q["number"],
            "branch": "99",
        }),
    );
    let id = other["check_id"].as_str().unwrap();
    let (_, view) = w.d.get(&format!("/v1/checks/{id}"));
    assert!(view["earlier"].is_null(), "{view}");
}
