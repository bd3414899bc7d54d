//! A document instead of a card: the rules decide on the visit date whether it is accepted;
//! an accepted one is recorded and confirmed afterwards by its numbers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

use oqs_sim::{scenario, Simulator};
use tsunagi::check::now_jst;

fn tsunagi(data: &std::path::Path, url: &str, inst: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args(args)
        .env("TSUNAGI_DATA_DIR", data)
        .env("TSUNAGI_OQS_URL", url)
        .env("TSUNAGI_INSTITUTION_CODE", inst)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn documents_are_judged_recorded_and_confirmed_by_their_numbers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let today = now_jst().date_naive();
    let s = scenario::standard(today).unwrap();
    let sim = rt.block_on(Simulator::start(s.sim_config())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = sim.base_url();
    let inst = s.institution_code.clone();
    let run = |args: &[&str]| tsunagi(dir.path(), &url, &inst, args);

    // The old 保険証 is not accepted after its own end (2025-12-01 at the latest).
    let (code, text) = run(&["record-document", "hokensho", "--expires", "2027-03-31"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("受け付けられません"), "{text}");
    // Impossible dates and bad numbers are refused in Japanese.
    let (code, text) = run(&["record-document", "kakuninsho", "--expires", "2026-02-30"]);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("存在しない日付"), "{text}");
    let (code, text) = run(&[
        "record-document",
        "kakuninsho",
        "--expires",
        "2027-07-31",
        "--insurer",
        "12AB5678",
        "--number",
        "1",
    ]);
    assert_ne!(code, 0, "{text}");
    let (code, text) = run(&["record-document", "passport"]);
    assert_ne!(code, 0, "{text}");

    // A valid 資格確認書 with the patient's numbers: recorded, then confirmed by numbers.
    let key = s.insurance_of("valid-employee").unwrap();
    let insurer = key.insurer.wire().trim().to_string();
    let birth = key.birthdate.to_string();
    let mut args = vec![
        "record-document",
        "kakuninsho",
        "--expires",
        "2027-07-31",
        "--json",
        "--insurer",
        &insurer,
        "--number",
        &key.number,
        "--birth-date",
        &birth,
    ];
    if let Some(sym) = key.symbol.as_deref() {
        args.extend(["--symbol", sym]);
    }
    if let Some(b) = key.branch.as_deref() {
        args.extend(["--branch", b]);
    }
    let (code, text) = run(&args);
    assert_eq!(code, 0, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let id = v["check_id"].as_str().unwrap().to_string();
    let (code, text) = run(&["reconcile", "--now", "--json"]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(&["show", &id, "--json"]);
    assert_eq!(code, 0, "{text}");
    let shown: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(shown["resolution"]["basis"], "current", "{text}");
    assert_eq!(shown["resolution"]["insurer_number"], insurer, "{text}");

    // The usage report counts the recorded checks: one check this month, none by card.
    let month = today.format("%Y-%m").to_string();
    let (code, text) = run(&[
        "report",
        "usage",
        "--month",
        &month,
        "--prefecture",
        "東京都",
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("0.00%"), "{text}");
    rt.block_on(sim.shutdown());
}
