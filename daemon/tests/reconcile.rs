//! 事後確認 against the real simulator over HTTP, with the real store on disk: checks
//! captured while the line is down are confirmed when it returns, each to the right claim
//! basis (R15, R17); two reconcilers on one ledger converge; failures back off.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use base64::Engine;
use oqs_sim::scenario::{self, Scenario};
use oqs_sim::{FaultMode, Simulator};
use tsunagi::check::now_jst;
use tsunagi::domain::{FacilityType, IdentityMethod, InsurerNumber};
use tsunagi::ledger::event::{Captured, CardRecord, CheckEvent, KnownInsurance, NumbersRecord};
use tsunagi::ledger::fold::Phase;
use tsunagi::ledger::{new_check_id, Ledger};
use tsunagi::oqs::{OqsClient, OqsConfig};
use tsunagi::reconcile::{ReconcileConfig, Reconciler};
use tsunagi::rules::claim::Moushitatesho;
use tsunagi::service::MonthSummary;

struct Case {
    card: &'static str,
    facility: FacilityType,
    last_known: bool,
    declared: bool,
}

fn capture(s: &Scenario, case: &Case) -> Captured {
    let now = now_jst();
    let profile = s.card(case.card).unwrap();
    // A patient without any coverage on record has no numbers to remember.
    let last_known = case
        .last_known
        .then(|| s.insurance_of(case.card))
        .flatten()
        .map(|key| {
            KnownInsurance::new(
                NumbersRecord {
                    insurer: InsurerNumber::parse(&key.insurer.wire()).unwrap(),
                    symbol: key.symbol.clone(),
                    number: key.number.clone(),
                    branch: key.branch.clone(),
                },
                key.birthdate,
                Some(3),
            )
        });
    Captured {
        visit_date: now.date_naive(),
        facility: case.facility,
        first_visit: !case.last_known,
        next_visit: None,
        card: Some(CardRecord {
            method: IdentityMethod::Visual,
            certificate: base64::engine::general_purpose::STANDARD
                .encode(&profile.auth_certificate_der),
            challenge: None,
            signature: None,
            serial: String::new(),
        }),
        document: None,
        reason: Some("unreachable".into()),
        last_known,
        captured_at: now,
    }
}

async fn capture_all(ledger: &Ledger, s: &Scenario, cases: &[Case]) -> Vec<String> {
    let mut ids = Vec::new();
    for case in cases {
        let id = new_check_id();
        let c = capture(s, case);
        let visit = c.visit_date;
        ledger
            .record(&id, visit, &CheckEvent::Captured(c))
            .await
            .unwrap();
        if case.declared {
            let m = Moushitatesho {
                name: Some("申立　花子".into()),
                address: Some("東京都架空区1-2-3".into()),
                phone: Some("03-0000-0000".into()),
                ..Moushitatesho::default()
            };
            ledger
                .record(&id, visit, &CheckEvent::Declared { moushitatesho: m })
                .await
                .unwrap();
        }
        ids.push(id);
    }
    ids
}

fn client(base_url: String, s: &Scenario) -> OqsClient {
    OqsClient::new(OqsConfig {
        base_url,
        institution_code: s.institution_code.clone(),
        timeout: Duration::from_millis(1500),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_checks_reconcile_to_the_right_claim_basis() {
    let s = scenario::standard(now_jst().date_naive()).unwrap();
    let sim = Simulator::start(s.sim_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let cases = [
        Case {
            card: "valid-employee",
            facility: FacilityType::Medical,
            last_known: false,
            declared: false,
        },
        // Lost coverage; the clinic holds the old numbers: 旧資格請求.
        Case {
            card: "lost",
            facility: FacilityType::Medical,
            last_known: true,
            declared: false,
        },
        // Nothing found, 申立書 taken: 不詳, 7-filled.
        Case {
            card: "no-coverage",
            facility: FacilityType::Dental,
            last_known: false,
            declared: true,
        },
        // Nothing found and no 申立書: staff must take one.
        Case {
            card: "no-coverage",
            facility: FacilityType::Pharmacy,
            last_known: false,
            declared: false,
        },
        // 柔整: no 不詳 claim exists; stays open until confirmed.
        Case {
            card: "no-coverage",
            facility: FacilityType::Judo,
            last_known: false,
            declared: true,
        },
        // Revoked card, but the clinic knows the numbers: confirmed by numbers.
        Case {
            card: "revoked",
            facility: FacilityType::Medical,
            last_known: true,
            declared: false,
        },
    ];
    let ids = capture_all(&ledger, &s, &cases).await;

    // The line is down: every query fails, is recorded, and backs off.
    sim.faults().set_mode(FaultMode::Refuse);
    let reconciler = Reconciler::new(
        ledger.clone(),
        client(sim.base_url(), &s),
        ReconcileConfig::default(),
    );
    let report = reconciler.run_pass(now_jst(), false).await.unwrap();
    assert_eq!(
        report.failed,
        cases.len(),
        "every check has a card to ask with: {report:?}"
    );
    let again = reconciler.run_pass(now_jst(), false).await.unwrap();
    assert_eq!(again.backing_off, report.failed, "{again:?}");
    let failing = ledger.check(&ids[0]).unwrap();
    assert_eq!(failing.attempts, 1);
    assert_eq!(failing.last_error.as_deref(), Some("unreachable"));
    assert_eq!(failing.phase(), Phase::Waiting);

    // The line is back.
    sim.faults().clear();
    let report = reconciler.run_pass(now_jst(), true).await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");

    let basis = |i: usize| {
        ledger
            .check(&ids[i])
            .unwrap()
            .resolution
            .map(|r| (r.basis, r.insurer_number))
    };
    let valid = s.insurance_of("valid-employee").unwrap();
    assert_eq!(
        basis(0),
        Some(("current".into(), valid.insurer.wire().trim().to_string()))
    );
    let lost = ledger.check(&ids[1]).unwrap();
    assert_eq!(lost.resolution.as_ref().unwrap().basis, "old", "{lost:?}");
    let fushou = ledger.check(&ids[2]).unwrap().resolution.unwrap();
    assert_eq!(fushou.basis, "fushou");
    assert_eq!(fushou.insurer_number, "77777777");
    assert!(fushou.number.chars().all(|c| c == '7'));
    assert!(fushou.tekiyo.unwrap().contains("東京都架空区1-2-3"));
    let no_declaration = ledger.check(&ids[3]).unwrap();
    assert_eq!(no_declaration.phase(), Phase::NeedsStaff);
    assert!(no_declaration.resolution.is_none());
    let judo = ledger.check(&ids[4]).unwrap();
    assert_eq!(judo.phase(), Phase::NeedsStaff);
    assert!(judo.resolution.is_none(), "no 7-filled 療養費 claim");
    let revoked = ledger.check(&ids[5]).unwrap();
    assert_eq!(
        revoked.resolution.as_ref().unwrap().basis,
        "current",
        "{revoked:?}"
    );
    assert_eq!(ledger.open_checks().unwrap().len(), 2);

    // A pass reads only the index's counts and the open checks: they say what folding every
    // check says, also once the index is rebuilt from the segments.
    let today = now_jst().date_naive();
    let month = tsunagi_sync::Month::of(today).unwrap();
    let summaries = |ledger: &Ledger| {
        let mut folded = MonthSummary::default();
        ledger
            .for_each_check(month, |c| folded.add(&c, today))
            .unwrap();
        let indexed = MonthSummary::from_counts(
            &ledger.counts(month).unwrap(),
            &ledger.open_checks_of(month).unwrap(),
            today,
        );
        (folded, indexed)
    };
    let (folded, indexed) = summaries(&ledger);
    assert_eq!(indexed, folded);
    assert_eq!(
        (folded.checks, folded.by_card, folded.captured_offline),
        (6, 6, 6)
    );
    assert_eq!((folded.fushou, folded.old, folded.open), (1, 1, 2));
    drop((ledger, reconciler));
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    assert_eq!(summaries(&ledger), (folded, folded));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reconcilers_on_one_ledger_converge() {
    let s = scenario::standard(now_jst().date_naive()).unwrap();
    let sim = Simulator::start(s.sim_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let cases: Vec<Case> = ["valid-employee", "kouki", "kokuho", "lost", "no-coverage"]
        .into_iter()
        .cycle()
        .take(20)
        .map(|card| Case {
            card,
            facility: FacilityType::Medical,
            last_known: true,
            declared: true,
        })
        .collect();
    let ids = capture_all(&ledger, &s, &cases).await;
    let a = Reconciler::new(
        ledger.clone(),
        client(sim.base_url(), &s),
        ReconcileConfig::default(),
    );
    let b = Reconciler::new(
        ledger.clone(),
        client(sim.base_url(), &s),
        ReconcileConfig::default(),
    );
    let (ra, rb) = tokio::join!(a.run_pass(now_jst(), true), b.run_pass(now_jst(), true));
    ra.unwrap();
    rb.unwrap();
    // Everything is decided once; a third pass finds nothing to do.
    for id in &ids {
        let c = ledger.check(id).unwrap();
        assert_eq!(c.phase(), Phase::Resolved, "{c:?}");
    }
    let first: Vec<_> = ids
        .iter()
        .map(|id| ledger.check(id).unwrap().resolution.unwrap().basis)
        .collect();
    let third = a.run_pass(now_jst(), true).await.unwrap();
    assert_eq!(third.examined, 0);
    let after: Vec<_> = ids
        .iter()
        .map(|id| ledger.check(id).unwrap().resolution.unwrap().basis)
        .collect();
    assert_eq!(first, after);
    sim.shutdown().await;
}

/// A claim basis can change its mind until the claim is made: a 不詳 decision is replaced
/// once the patient reports numbers the system confirms; a 資格（無効）・新しい資格あり answer
/// waits for staff and is then claimed on the new numbers; after the claim nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_replaced_by_later_numbers_until_claimed() {
    use tsunagi::ops::{self, NumbersRequest};
    let s = scenario::standard(now_jst().date_naive()).unwrap();
    let sim = Simulator::start(s.sim_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let cases = [
        Case {
            card: "no-coverage",
            facility: FacilityType::Medical,
            last_known: false,
            declared: true,
        },
        Case {
            card: "lost-newer",
            facility: FacilityType::Medical,
            last_known: false,
            declared: false,
        },
    ];
    let ids = capture_all(&ledger, &s, &cases).await;
    let reconciler = Reconciler::new(
        ledger.clone(),
        client(sim.base_url(), &s),
        ReconcileConfig::default(),
    );
    reconciler.run_pass(now_jst(), true).await.unwrap();
    let fushou = ledger.check(&ids[0]).unwrap();
    assert_eq!(fushou.resolution.as_ref().unwrap().basis, "fushou");
    let newer = ledger.check(&ids[1]).unwrap();
    assert!(newer.awaits_new_qualification(), "{newer:?}");
    assert_eq!(newer.phase(), Phase::NeedsStaff);
    assert!(
        newer.resolution.is_none(),
        "no 旧資格 claim while the new one is looked for"
    );

    // The patients report numbers: the first ones the system confirms, the second the new
    // qualification's.
    let report = |name: &str| {
        let key = s.insurance_of(name).unwrap();
        NumbersRequest {
            insurer: key.insurer.wire().trim().to_string(),
            symbol: key.symbol.clone(),
            number: key.number.clone(),
            branch: key.branch.clone(),
            birth_date: Some(key.birthdate),
        }
    };
    let seen = ops::report_numbers(&ledger, &ids[0], &report("valid-employee"), now_jst())
        .await
        .unwrap();
    assert!(
        seen.is_open(),
        "a report re-opens a decided check: {seen:?}"
    );
    ops::report_numbers(&ledger, &ids[1], &report("lost-newer"), now_jst())
        .await
        .unwrap();
    let pass = reconciler.run_pass(now_jst(), true).await.unwrap();
    assert_eq!(pass.failed, 0, "{pass:?}");

    let replaced = ledger.check(&ids[0]).unwrap();
    let now_basis = replaced.resolution.as_ref().unwrap();
    assert_eq!(now_basis.basis, "current", "{replaced:?}");
    assert_eq!(
        now_basis.insurer_number,
        s.insurance_of("valid-employee")
            .unwrap()
            .insurer
            .wire()
            .trim()
    );
    assert!(now_basis.replaces_because.is_some());
    assert_eq!(replaced.replaced.len(), 1);
    assert_eq!(replaced.replaced[0].basis, "fushou");
    let view = tsunagi::view::CheckView::of(&replaced, now_jst().date_naive());
    assert_eq!(view.history.len(), 1);
    assert!(!view.final_basis);

    let new_one = ledger.check(&ids[1]).unwrap();
    let r = new_one
        .resolution
        .as_ref()
        .expect("claimed on the new numbers");
    assert_eq!(r.basis, "current", "{new_one:?}");
    assert_eq!(
        r.insurer_number,
        s.insurance_of("lost-newer").unwrap().insurer.wire().trim()
    );

    // Claimed: final; a later report is refused and changes nothing.
    let claimed = ops::mark_claimed(&ledger, &ids[0], now_jst())
        .await
        .unwrap();
    assert!(claimed.final_basis && claimed.claimed_at.is_some());
    let refused = ops::report_numbers(&ledger, &ids[0], &report("kokuho"), now_jst()).await;
    assert!(
        matches!(refused, Err(ops::OpError::Final(_))),
        "{refused:?}"
    );
    let after = ledger.check(&ids[0]).unwrap();
    assert_eq!(after.resolution.as_ref().unwrap().basis, "current");
    sim.shutdown().await;
}
