//! `tsunagid` as a process: it notices the line is down, drains captured checks once the
//! simulator answers again, ends a month whose retention is over (a canary name leaves no
//! trace in the data directory), and stops cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Months;
use oqs_sim::scenario;
use oqs_sim::{FaultMode, Simulator};
use tsunagi::check::now_jst;
use tsunagi::domain::{FacilityType, IdentityMethod};
use tsunagi::ledger::event::{Captured, CardRecord, CheckEvent};
use tsunagi::ledger::{new_check_id, Ledger};
use tsunagi::rules::claim::Moushitatesho;
use tsunagi::service::{read_status, Status};

const CANARY: &str = "カナリア保存期間太郎";

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

/// A loopback port free now (the daemon's API listens there).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(dir: &Path, what: &str, ok: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = read_status(dir, Duration::from_secs(5)) {
            if ok(&s) {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "tsunagid never reported {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn tsunagid_drains_the_queue_and_ends_old_months() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let today = now_jst().date_naive();
    let s = scenario::standard(today).unwrap();
    let sim = rt.block_on(Simulator::start(s.sim_config())).unwrap();
    sim.faults().set_mode(FaultMode::Refuse);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Three captured checks: today's; one three months ago with a 申立書 (the canary); and a
    // 柔整 check of that month no answer can decide (no 不詳 claim exists for 柔整, R17), which
    // stays open and is carried over when the rest of its month goes (R20).
    let old_visit = today.checked_sub_months(Months::new(3)).unwrap();
    let mut judo_id = String::new();
    {
        let ledger = Ledger::open(&data).unwrap();
        for (card, visit, facility) in [
            ("valid-employee", today, FacilityType::Medical),
            ("no-coverage", old_visit, FacilityType::Medical),
            ("no-coverage", old_visit, FacilityType::Judo),
        ] {
            let cert = &s.card(card).unwrap().auth_certificate_der;
            let id = new_check_id();
            if facility == FacilityType::Judo {
                judo_id = id.clone();
            }
            let c = Captured {
                visit_date: visit,
                facility,
                first_visit: true,
                next_visit: None,
                card: Some(CardRecord {
                    method: IdentityMethod::Visual,
                    certificate: base64::engine::general_purpose::STANDARD.encode(cert),
                    challenge: None,
                    signature: None,
                    serial: String::new(),
                }),
                document: None,
                reason: Some("unreachable".into()),
                last_known: None,
                captured_at: now_jst(),
            };
            rt.block_on(ledger.record(&id, visit, &CheckEvent::Captured(c)))
                .unwrap();
            if visit == old_visit && facility == FacilityType::Medical {
                let m = Moushitatesho {
                    name: Some(CANARY.into()),
                    address: Some("架空県架空市1-1".into()),
                    phone: Some("0120-000-000".into()),
                    ..Moushitatesho::default()
                };
                rt.block_on(ledger.record(&id, visit, &CheckEvent::Declared { moushitatesho: m }))
                    .unwrap();
            }
        }
        // The canary is there (readable with the month key) before its month ends.
        let old = ledger
            .checks(tsunagi_sync::Month::of(old_visit).unwrap())
            .unwrap();
        assert_eq!(
            old[0].declaration.as_ref().unwrap().name.as_deref(),
            Some(CANARY)
        );
    }

    let config = dir.path().join("tsunagi.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\ninstitution_code = {:?}\n[oqs]\nurl = {:?}\ntimeout_ms = 1000\n\
             [reconcile]\ninterval_secs = 1\n[health]\noffline_after = 1\nprobe_secs = 1\n\
             [api]\nlisten = \"127.0.0.1:{}\"\n",
            data.display().to_string(),
            s.institution_code,
            sim.base_url(),
            free_port()
        ),
    )
    .unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_tsunagid"))
        .arg("--config")
        .arg(&config)
        .env("TSUNAGI_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let down = wait_for(&data, "offline", |s| {
        s.line.label_ja().contains("オフライン")
    });
    assert_eq!(down.queue, 3, "{down:?}");
    // While the daemon runs, commands go through it (the store is the daemon's alone).
    let pending = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args(["pending", "--json"])
        .env("TSUNAGI_CONFIG", &config)
        .env_remove("TSUNAGI_DATA_DIR")
        .output()
        .unwrap();
    assert!(pending.status.success(), "{pending:?}");
    let listed: serde_json::Value = serde_json::from_slice(&pending.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");

    sim.faults().clear();
    // A pass drains the queue but for the 柔整 check; the next carries that one over and
    // ends the rest of the old month.
    let up = wait_for(&data, "a pass after the queue drained", |s| {
        s.queue == 1
            && s.last_pass
                .is_some_and(|p| p.examined == 1 && p.resolved == 0)
    });
    assert_eq!(up.overdue, 1, "the 柔整 check is past its deadline: {up:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !files_containing(&data, CANARY.as_bytes()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the old month's canary never went"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The carried check is still there, open, through the daemon.
    let shown = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args(["show", &judo_id, "--json"])
        .env("TSUNAGI_CONFIG", &config)
        .env_remove("TSUNAGI_DATA_DIR")
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let judo: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(judo["phase"], "needs_staff", "{judo}");

    // Stop: SIGTERM ends it promptly and cleanly.
    let pid = daemon.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = daemon.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "tsunagid did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");

    // The old month is gone with its key; its counts remain; today's check stays.
    let hits = files_containing(&data, CANARY.as_bytes());
    assert!(hits.is_empty(), "canary found in {hits:?}");
    let ledger = Ledger::open(&data).unwrap();
    let aggregates = ledger.store().aggregates();
    let old_month = tsunagi_sync::Month::of(old_visit).unwrap();
    assert_eq!(aggregates[&old_month]["checks"], 1, "{aggregates:?}");
    assert_eq!(aggregates[&old_month]["fushou"], 1, "{aggregates:?}");
    // The month holds only the carried check now, under its carry-over key.
    assert_eq!(ledger.store().month_keys(old_month).unwrap().len(), 1);
    assert_eq!(
        ledger.store().check_ids(old_month).unwrap(),
        vec![judo_id.clone()]
    );
    let mut remaining = Vec::new();
    for month in ledger.store().months().unwrap() {
        remaining.extend(ledger.checks(month).unwrap());
    }
    assert_eq!(remaining.len(), 2);
    let today_check = remaining.iter().find(|c| c.id != judo_id).unwrap();
    assert_eq!(today_check.resolution.as_ref().unwrap().basis, "current");
    rt.block_on(sim.shutdown());
}
