//! Benchmark: one full PIN-method check through pcscd + vpcd + the virtual card + the
//! simulator, as the daemon runs it.
//!
//! Prints the median and p99 of the total, the card's share (time inside `transmit`, which
//! includes pcscd and vpcd), the qualification system's share (the HTTP exchange), and the
//! daemon's own time (total minus both), plus APDUs per check. As a baseline measured in the
//! same run it also times one bare SELECT round trip through pcscd, so the card share can be
//! read as "so many APDU round trips".
//!
//! Run: `cargo bench -p tsunagi --bench check_pin` (needs pcscd with vpcd, as the tests do).
//! `TSUNAGI_BENCH_CHECKS` sets the number of checks (default 100).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use tsunagi::card::reader::Readers;
use tsunagi::card::{Pin, PinEntry, Transport};
use tsunagi::check::{self, now_jst, CheckTimings};
use tsunagi::domain::IdentityMethod;
use tsunagi::oqs::{OqsClient, OqsConfig};
use tsunagi_vcard::card::VirtualCard;
use tsunagi_vcard::harness;
use tsunagi_vcard::vpcd::{self, AttachOptions};

struct Always1234;

impl PinEntry for Always1234 {
    fn pin(&mut self, _tries_left: u8) -> Option<Pin> {
        Pin::parse("1234")
    }
    fn confirm_last_try(&mut self) -> bool {
        false
    }
    fn wrong_pin(&mut self, _tries_left: u8) {}
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(name: &str, mut xs: Vec<Duration>, baseline: Duration) {
    xs.sort();
    let p50 = percentile(&xs, 0.5);
    let p99 = percentile(&xs, 0.99);
    println!(
        "{name:<28} p50 {:>9.3} ms   p99 {:>9.3} ms   p50/baseline {:>7.1}x",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        p50.as_secs_f64() / baseline.as_secs_f64()
    );
}

fn main() {
    let checks: usize = std::env::var("TSUNAGI_BENCH_CHECKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let today = now_jst().date_naive();
    let scenario = oqs_sim::scenario::standard(today).expect("scenario");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sim = rt
        .block_on(oqs_sim::Simulator::start(scenario.sim_config()))
        .expect("simulator");
    let client = OqsClient::new(OqsConfig {
        base_url: sim.base_url(),
        institution_code: scenario.institution_code.clone(),
        timeout: Duration::from_secs(3),
    })
    .expect("client");
    let _pcscd = harness::pcscd().expect("pcscd");
    let profile = scenario.card("valid-employee").expect("card").clone();
    let mut card = VirtualCard::new(profile);
    card.power_on();
    let _attached =
        vpcd::attach(card, harness::slot_addr(0), AttachOptions::default()).expect("attach");
    let readers = Readers::connect().expect("pcscd");
    let reader = readers
        .wait_for_card(Some(&harness::reader_name(0)), Duration::from_secs(10))
        .expect("card");

    // Baseline: one bare SELECT of the JPKI application through pcscd and vpcd.
    let mut baseline = Vec::new();
    {
        let mut t = readers.open(&reader).expect("open");
        let select = [
            0x00, 0xA4, 0x04, 0x0C, 0x0A, 0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00,
            0x01,
        ];
        for _ in 0..checks.max(20) {
            let s = Instant::now();
            t.transmit(&select).expect("select");
            baseline.push(s.elapsed());
        }
    }
    baseline.sort();
    let base = percentile(&baseline, 0.5);

    let mut all: Vec<CheckTimings> = Vec::with_capacity(checks);
    for _ in 0..checks {
        let transport = readers.open(&reader).expect("open");
        let outcome = rt
            .block_on(check::run(
                transport,
                IdentityMethod::Pin,
                today,
                now_jst(),
                Some(&client),
                &scenario.institution_code,
                Box::new(Always1234),
            ))
            .expect("check");
        assert!(outcome.answer.is_ok(), "answer: {:?}", outcome.answer);
        all.push(outcome.timings);
    }
    let apdus = all[0].apdus;
    assert!(
        all.iter().all(|t| t.apdus == apdus),
        "same APDU count every check"
    );
    println!("PIN-method check through pcscd + vpcd + oqs-sim, {checks} checks");
    println!(
        "baseline: one SELECT round trip through pcscd, p50 {:.3} ms",
        base.as_secs_f64() * 1e3
    );
    summary("total", all.iter().map(|t| t.total).collect(), base);
    summary(
        "card (pcscd+vpcd+card)",
        all.iter().map(|t| t.card).collect(),
        base,
    );
    summary(
        "qualification system",
        all.iter().map(|t| t.oqs).collect(),
        base,
    );
    summary("daemon's own", all.iter().map(|t| t.own()).collect(), base);
    println!("APDUs per check: {apdus}");
    rt.block_on(sim.shutdown());
}
