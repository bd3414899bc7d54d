//! Benchmark: 事後確認 of a backlog. N captured checks (default 10,000) are drained by ONE
//! forced reconcile pass against the in-process simulator, with the real store on disk.
//!
//! Design target: "reconcile: 10,000 captured checks drained against the simulator in
//! ≤ 10 s".
//!
//! Half the checks carry a card (visual method, certificates of the scenario's valid, lost,
//! kouki and kokuho cards, cycled); the other half carry no card, only the numbers and birth
//! date the clinic remembers of a synthetic patient. Each drain runs on a freshly captured
//! ledger. As a baseline measured in the same run, the same number of bare
//! `query_by_insurance` calls at the same concurrency (8) and no ledger shows how much of
//! the drain is the qualification system and how much the ledger. A breakdown of the ledger's
//! whole-month reads and per-check steps (mean of 200) shows where the ledger's time goes.
//!
//! A drain that makes no query for STALL seconds is reported as stalled and the process
//! exits with status 2: sled 0.34's `flush_async` can deadlock when several run at once
//! (spacejam/sled#1308), which `Ledger::record` does twice per check at concurrency > 1,
//! and a hung bench tells nothing.
//!
//! Run: `cargo bench -p tsunagi --bench reconcile`. `TSUNAGI_BENCH_CHECKS` sets N;
//! `TSUNAGI_BENCH_CONCURRENCY` the reconciler's and the baseline's concurrency (default 8).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::NaiveDate;
use oqs_sim::model::{InsuranceKey, Population};
use oqs_sim::scenario::{self, Scenario};
use oqs_sim::{SimHandle, Simulator};
use tokio::sync::Semaphore;
use tsunagi::check::now_jst;
use tsunagi::domain::{FacilityType, IdentityMethod, InsurerNumber};
use tsunagi::ledger::event::{Captured, CardRecord, CheckEvent, KnownInsurance, NumbersRecord};
use tsunagi::ledger::{new_check_id, Ledger};
use tsunagi::oqs::{InsuranceQuery, OqsClient, OqsConfig};
use tsunagi::reconcile::{PassReport, ReconcileConfig, Reconciler};
use tsunagi_sync::Month;

/// Seed of the synthetic patients (their numbers start with it, zero-padded).
const SEED: u64 = 42;
/// Cards whose checks all resolve: confirmed, or 資格（無効） with numbers (旧資格).
const CARDS: [&str; 4] = ["valid-employee", "lost", "kouki", "kokuho"];
/// A drain without a single query for this long is stuck, not slow (a check takes ~1 ms).
const STALL: Duration = Duration::from_secs(20);
/// Repeated drains are skipped once one drain takes longer than this.
const REPEAT_BUDGET: Duration = Duration::from_secs(60);

fn numbers(key: &InsuranceKey) -> NumbersRecord {
    NumbersRecord {
        insurer: InsurerNumber::parse(&key.insurer.wire()).expect("insurer number"),
        symbol: key.symbol.clone(),
        number: key.number.clone(),
        branch: key.branch.clone(),
    }
}

/// The captured events, built once and written into every fresh ledger.
fn captures(s: &Scenario, keys: &[InsuranceKey], n: usize, today: NaiveDate) -> Vec<Captured> {
    let now = now_jst();
    let certs: Vec<String> = CARDS
        .iter()
        .map(|c| {
            base64::engine::general_purpose::STANDARD
                .encode(&s.card(c).expect("scenario card").auth_certificate_der)
        })
        .collect();
    (0..n)
        .map(|i| {
            let by_card = i % 2 == 0;
            let card = by_card.then(|| CardRecord {
                method: IdentityMethod::Visual,
                certificate: certs[(i / 2) % certs.len()].clone(),
                challenge: None,
                signature: None,
                serial: String::new(),
            });
            let last_known = (!by_card).then(|| {
                let key = &keys[(i / 2) % keys.len()];
                KnownInsurance::new(numbers(key), key.birthdate, Some(3))
            });
            Captured {
                visit_date: today,
                facility: FacilityType::Medical,
                first_visit: by_card,
                next_visit: None,
                card,
                document: None,
                reason: Some("unreachable".into()),
                last_known,
                captured_at: now,
            }
        })
        .collect()
}

/// Writes every capture into a fresh ledger, each durable (the events are the same
/// `CheckEvent` JSON `Ledger::record` writes).
fn capture_into(dir: &std::path::Path, events: &[Captured]) -> (Ledger, Vec<String>, Duration) {
    let t = Instant::now();
    let ledger = Ledger::open(dir).expect("ledger");
    let mut ids = Vec::with_capacity(events.len());
    for c in events {
        let id = new_check_id();
        let payload = serde_json::to_value(CheckEvent::Captured(c.clone())).expect("json");
        let month = Month::of(c.visit_date).expect("visit month");
        ledger
            .store()
            .capture_blocking(&id, month, payload)
            .expect("capture");
        ids.push(id);
    }
    (ledger, ids, t.elapsed())
}

fn client(sim: &SimHandle, s: &Scenario) -> OqsClient {
    OqsClient::new(OqsConfig {
        base_url: sim.base_url(),
        institution_code: s.institution_code.clone(),
        timeout: Duration::from_secs(10),
    })
    .expect("client")
}

/// N bare searches by numbers, `concurrency` at a time, no ledger.
async fn baseline(
    client: &OqsClient,
    keys: &[InsuranceKey],
    n: usize,
    concurrency: usize,
    today: NaiveDate,
) -> Duration {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let t = Instant::now();
    for i in 0..n {
        let key = &keys[i % keys.len()];
        let nr = numbers(key);
        let query = InsuranceQuery {
            visit_date: today,
            insurer: nr.insurer,
            symbol: nr.symbol,
            number: nr.number,
            branch: nr.branch,
            birth_date: key.birthdate,
            limit_consent: false,
            file_id: format!("bench-{i}"),
        };
        let client = client.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            client.query_by_insurance(&query).await.is_ok()
        });
    }
    let mut failed = 0usize;
    while let Some(done) = tasks.join_next().await {
        if !matches!(done, Ok(true)) {
            failed += 1;
        }
    }
    let took = t.elapsed();
    assert_eq!(failed, 0, "baseline queries failed");
    took
}

/// Returns the simulator's request count once it has not moved for [`STALL`].
async fn stalled(sim: &SimHandle) -> u64 {
    let mut last = sim.request_count();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = sim.request_count();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= STALL {
            return now;
        }
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

fn main() {
    let n: usize = std::env::var("TSUNAGI_BENCH_CHECKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
        .max(2);
    let concurrency: usize = std::env::var("TSUNAGI_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ReconcileConfig::default().concurrency)
        .max(1);
    let today = now_jst().date_naive();
    let s = scenario::standard(today).expect("scenario");
    // Synthetic patients for the numbers-only half, served by the simulator too.
    let synthetic = Population::synthetic(SEED, n.div_ceil(2));
    let keys = synthetic.insurance_keys();
    let mut config = s.sim_config();
    for p in synthetic.people() {
        config.population.add(p.clone());
    }
    let population = config.population.len();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sim = rt.block_on(Simulator::start(config)).expect("simulator");
    let client = client(&sim, &s);
    let events = captures(&s, &keys, n, today);

    println!("reconcile bench: N = {n} checks ({} by card, {} by numbers), population {population}, concurrency {concurrency}",
        n.div_ceil(2), n / 2);

    // Warm up the connection pool and the simulator's login.
    rt.block_on(baseline(&client, &keys, 16, concurrency, today));
    let base = rt.block_on(baseline(&client, &keys, n, concurrency, today));

    let mut setups = Vec::new();
    let mut drains = Vec::new();
    let mut reports: Vec<PassReport> = Vec::new();
    let mut last: Option<(tempfile::TempDir, Ledger, Vec<String>)> = None;
    for run in 0..3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ledger, ids, setup) = capture_into(dir.path(), &events);
        setups.push(setup);
        let before = sim.request_count();
        let config = ReconcileConfig {
            concurrency,
            ..ReconcileConfig::default()
        };
        let reconciler = Reconciler::new(ledger.clone(), client.clone(), config);
        let t = Instant::now();
        let outcome = rt.block_on(async {
            tokio::select! {
                r = reconciler.run_pass(now_jst(), true) => Ok(r.expect("pass")),
                at = stalled(&sim) => Err(at),
            }
        });
        let drain = t.elapsed();
        let report = match outcome {
            Ok(r) => r,
            Err(at) => {
                println!(
                    "run {}: capture {:>9.1} ms   drain STALLED: no query for {} s after {} of {n} queries ({:.1} s in); \
                     sled flush_async deadlock (spacejam/sled#1308)?",
                    run + 1,
                    ms(setup),
                    STALL.as_secs(),
                    at - before,
                    drain.as_secs_f64(),
                );
                // The store's threads are stuck for good; nothing more can be measured.
                std::process::exit(2);
            }
        };
        let queries = sim.request_count() - before;
        println!(
            "run {}: capture {:>9.1} ms   drain {:>10.1} ms   {:>8.1} checks/s   queries {queries}   {report:?}",
            run + 1,
            ms(setup),
            ms(drain),
            n as f64 / drain.as_secs_f64(),
        );
        drains.push(drain);
        reports.push(report);
        last = Some((dir, ledger, ids));
        if drain > REPEAT_BUDGET {
            println!(
                "(drain over {}s: further runs skipped)",
                REPEAT_BUDGET.as_secs()
            );
            break;
        }
    }

    let drain = median(drains.clone());
    let setup = median(setups);
    let report = reports[drains.iter().position(|d| *d == drain).unwrap_or(0)];
    println!("---");
    println!("capture setup (median)     {:>10.1} ms", ms(setup));
    println!(
        "drain, one pass (median of {}) {:>7.1} ms   {:>8.1} checks/s   target 10000 ms{}",
        drains.len(),
        ms(drain),
        n as f64 / drain.as_secs_f64(),
        if n == 10_000 {
            if drain <= Duration::from_secs(10) {
                "  MET"
            } else {
                "  MISSED"
            }
        } else {
            ""
        }
    );
    println!(
        "  examined {}  resolved {}  needs_staff {}  failed {}  backing_off {}",
        report.examined, report.resolved, report.needs_staff, report.failed, report.backing_off
    );
    println!(
        "baseline: {n} bare query_by_insurance {:>8.1} ms   {:>8.1} queries/s",
        ms(base),
        n as f64 / base.as_secs_f64()
    );
    println!(
        "drain / baseline            {:>10.1}x   ledger overhead {:.1} ms ({:.3} ms per check)",
        drain.as_secs_f64() / base.as_secs_f64(),
        ms(drain.saturating_sub(base)),
        ms(drain.saturating_sub(base)) / n as f64
    );

    // Where the ledger's time goes, on the drained ledger (N checks, each with its captured,
    // answered and resolved events, all in one month): the whole-month reads a pass does
    // once, and the mean of SAMPLES of each per-check step (one check() and two durable
    // writes per check).
    if let Some((_dir, ledger, ids)) = &last {
        const SAMPLES: usize = 200;
        let month = Month::of(today).expect("month");
        let sample: Vec<&String> = ids.iter().step_by((ids.len() / SAMPLES).max(1)).collect();
        let mean = |d: Duration| ms(d) / sample.len() as f64;
        let (ev, t_events) = time(|| ledger.store().events(month).expect("events"));
        let (open, t_open) = time(|| ledger.open_checks().expect("open"));
        let (_, t_check) = time(|| {
            for id in &sample {
                ledger.check(id).expect("check");
            }
        });
        let (_, t_check_events) = time(|| {
            for id in &sample {
                ledger
                    .store()
                    .check_events(month, id)
                    .expect("check events");
            }
        });
        let note = |i: usize| {
            serde_json::to_value(CheckEvent::Annotated {
                note: format!("bench {i}"),
            })
            .expect("json")
        };
        let (_, t_append) = time(|| {
            for (i, id) in sample.iter().enumerate() {
                ledger
                    .store()
                    .append_blocking(id, month, note(i))
                    .expect("append");
            }
        });
        let (_, t_record) = time(|| {
            rt.block_on(async {
                for (i, id) in sample.iter().enumerate() {
                    let event = CheckEvent::Annotated {
                        note: format!("bench durable {i}"),
                    };
                    ledger.record(id, today, &event).await.expect("record");
                }
            })
        });
        println!(
            "--- ledger after the drain ({} events, {} open); per-check steps: mean of {}",
            ev.events.len(),
            open.len(),
            sample.len()
        );
        println!(
            "store.events(month)          {:>9.1} ms   ({:.1} us per event: read, open, decode)",
            ms(t_events),
            ms(t_events) * 1e3 / ev.events.len().max(1) as f64
        );
        println!(
            "ledger.open_checks()         {:>9.1} ms   (once per pass)",
            ms(t_open)
        );
        println!(
            "ledger.check(id)             {:>9.3} ms   (once per check)",
            mean(t_check)
        );
        println!(
            "store.check_events(m, id)    {:>9.3} ms   (indexed read of one check)",
            mean(t_check_events)
        );
        println!(
            "store.append_blocking        {:>9.3} ms   (sign, seal, segment append + fdatasync, index)",
            mean(t_append)
        );
        println!(
            "ledger.record, sequential    {:>9.3} ms   (the same through the async path)",
            mean(t_record)
        );
    }
    rt.block_on(sim.shutdown());
}
