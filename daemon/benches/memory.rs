//! Benchmark: the memory of a real `tsunagid` holding a 50,000-check month, with the six
//! facility plugins loaded and without them, in the same run.
//!
//! Design target (DESIGN.md "Targets"): "daemon RSS ≤ 60 MB with a 50,000-check month open
//! and all plugins loaded".
//!
//! The bench writes one month (this month, so the daemon's retention keeps it) into a data
//! directory with the daemon's own ledger: N checks (default 50,000) as reception records
//! them online — a `captured` event with the card's certificate and an `answered` event with
//! the confirmed qualification — spread over the six facility types, and 10 captured offline
//! that stay open (the qualification system is unreachable in this bench, so they stay open
//! in every run). The six shipped plugins are built from `plugins/` for wasm32-wasip2, signed
//! with a fresh key and put in a plugin directory of their own.
//!
//! Then the release `tsunagid` Cargo built for this bench runs on that data directory (started
//! by the integration tests' harness, `tests/support/tsunagid.rs`), one process at a time, alternating two configurations that differ only in `[plugins]`:
//! - **none**: no trusted key and an empty plugin directory (the baseline);
//! - **six**: the six plugins' directory and their key.
//!
//! Each run waits until the daemon listens (and, for six, until the six are loaded), reads
//! 600 checks through `GET /v1/checks/{id}` (all six facility types; with plugins each read
//! formats the check in its plugin) and the pending list, then takes tsunagid's VmRSS and
//! VmHWM from `/proc/<pid>/status` and stops it with SIGTERM. Medians over
//! `TSUNAGI_BENCH_RUNS` (3) runs of each. A first, untimed "six" run fills the compile cache
//! (as the first start after an install does); its figures are printed apart, because the
//! compilation's peak is in its VmHWM.
//!
//! Run: `cargo bench -p tsunagi --bench memory`. Env: `TSUNAGI_BENCH_CHECKS` (50,000),
//! `TSUNAGI_BENCH_RUNS` (3), `TSUNAGI_BENCH_DIR` (parent of the temp dir).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/plugins.rs"]
mod guests;
#[path = "../tests/support/tsunagid.rs"]
mod tsunagid;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use tempfile::TempDir;
use tsunagi::check::now_jst;
use tsunagi::domain::{FacilityType, IdentityMethod, InsurerNumber};
use tsunagi::ledger::event::{
    AnswerStatus, Answered, Captured, CardRecord, CheckEvent, KnownInsurance, NumbersRecord, Via,
};
use tsunagi::ledger::{new_check_id, Ledger};
use tsunagi::plugin::sign::signature_path;
use tsunagi::plugin::SecretKey;
use tsunagi_sync::Month;
use tsunagid::Tsunagid;

/// Checks left open (captured offline, never answered).
const OPEN: usize = 10;
/// Concurrent writers while the month is written (the store commits them in groups).
const WRITERS: usize = 32;
/// Checks read (and formatted) through the API in each run.
const READS: usize = 600;
/// The memory budget, 60 MB (decimal, as the store's month bench counts it).
const RSS_TARGET_KIB: u64 = 60_000_000 / 1024;
/// How long the plugins may take to load once tsunagid listens.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// VmRSS and VmHWM of a process, in KiB.
fn rss_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

// ----- the month -----

/// The events of check `i`: online (captured + answered) or, for the last `OPEN`, captured
/// offline and open.
fn events_of(
    i: usize,
    n: usize,
    certs: &[String],
    now: chrono::DateTime<chrono::FixedOffset>,
) -> Vec<CheckEvent> {
    let numbers = NumbersRecord {
        insurer: InsurerNumber::parse(&format!("06{:06}", 130_000 + i % 900)).expect("insurer"),
        symbol: Some(format!("練馬{}", i % 97)),
        number: format!("{:07}", i),
        branch: Some("00".into()),
    };
    let visit_date = now.date_naive();
    let facility = FacilityType::ALL[i % FacilityType::ALL.len()];
    let card = CardRecord {
        method: IdentityMethod::Visual,
        certificate: certs[i % certs.len()].clone(),
        challenge: None,
        signature: None,
        serial: format!("{:016X}", i),
    };
    if i >= n - OPEN {
        return vec![CheckEvent::Captured(Captured {
            visit_date,
            facility,
            first_visit: true,
            next_visit: None,
            card: Some(card),
            document: None,
            reason: Some("unreachable".into()),
            last_known: Some(KnownInsurance::new(
                numbers,
                chrono::NaiveDate::from_ymd_opt(1980, 4, 1).expect("date"),
                Some(3),
            )),
            captured_at: now,
        })];
    }
    vec![
        CheckEvent::Captured(Captured {
            visit_date,
            facility,
            first_visit: i.is_multiple_of(5),
            next_visit: None,
            card: Some(card),
            document: None,
            reason: None,
            last_known: None,
            captured_at: now,
        }),
        CheckEvent::Answered(Answered {
            via: Via::Card,
            status: AnswerStatus::Confirmed,
            numbers: Some(numbers),
            newer_exists: false,
            birth_date: chrono::NaiveDate::from_ymd_opt(1960 + (i % 50) as i32, 4, 1),
            ratio_percent: Some(30),
            insurer_name: Some("全国健康保険協会 東京支部".into()),
            elderly: None,
            limit_bracket: None,
            answered_at: now,
        }),
    ]
}

/// Writes the month into `data_dir` with the daemon's ledger; returns the check ids.
fn write_month(data_dir: &Path, n: usize) -> Vec<String> {
    let scenario = oqs_sim::scenario::standard(now_jst().date_naive()).expect("scenario");
    let certs: Arc<Vec<String>> = Arc::new(
        ["valid-employee", "valid-dependant", "kouki", "kokuho"]
            .iter()
            .map(|c| {
                base64::engine::general_purpose::STANDARD.encode(
                    &scenario
                        .card(c)
                        .expect("scenario card")
                        .auth_certificate_der,
                )
            })
            .collect(),
    );
    let ids: Arc<Vec<String>> = Arc::new((0..n).map(|_| new_check_id()).collect());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ledger = Ledger::open(data_dir).expect("ledger");
    let now = now_jst();
    let month = Month::of(now.date_naive()).expect("month");
    let next = Arc::new(AtomicUsize::new(0));
    runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..WRITERS {
            let (store, ids, certs, next) = (
                ledger.store().clone(),
                ids.clone(),
                certs.clone(),
                next.clone(),
            );
            set.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { break };
                    for event in events_of(i, n, &certs, now) {
                        let payload = serde_json::to_value(&event).expect("json");
                        match event {
                            CheckEvent::Captured(_) => store.capture(id, month, payload).await,
                            _ => store.append(id, month, payload).await,
                        }
                        .expect("write");
                    }
                }
            });
        }
        while let Some(done) = set.join_next().await {
            done.expect("writer");
        }
    });
    ledger.store().maintain().expect("maintain");
    drop(ledger);
    Arc::try_unwrap(ids).expect("writers done")
}

// ----- tsunagid -----

/// One figure of one run.
#[derive(Debug, Clone, Copy)]
struct Run {
    rss: u64,
    hwm: u64,
    took: Duration,
}

/// Starts tsunagid on `dir`'s data directory with `extra_toml`, waits for `plugins` loaded
/// plugins, reads the sample checks, measures, stops it and gives the directory back.
fn run_once(dir: TempDir, extra_toml: &str, plugins: usize, sample: &[String]) -> (Run, TempDir) {
    let started = Instant::now();
    // The qualification system is unreachable: the open checks stay open in every run.
    let d = Tsunagid::start_in(dir, "http://127.0.0.1:9", "1319900017", extra_toml);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let (_, status) = d.get("/v1/status");
        let loaded = status["plugins"]
            .as_array()
            .map_or(0, |ps| ps.iter().filter(|p| p["state"] == "loaded").count());
        if loaded == plugins {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{loaded} of {plugins} plugins loaded: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut formatted = 0;
    for id in sample {
        let (code, v) = d.get(&format!("/v1/checks/{id}"));
        assert_eq!(code, 200, "{v}");
        if v["facility_output"]["output"].is_object() {
            formatted += 1;
        }
    }
    let expected = if plugins == 0 { 0 } else { sample.len() };
    assert_eq!(formatted, expected, "checks formatted by a plugin");
    let (_, pending) = d.get("/v1/checks?state=pending");
    assert_eq!(
        pending["checks"].as_array().map_or(0, Vec::len),
        OPEN,
        "open checks"
    );
    let took = started.elapsed();
    let (rss, hwm) = rss_of(d.pid());
    let (status, dir) = d.stop_keeping_dir();
    assert!(status.success(), "tsunagid stopped with {status}");
    (Run { rss, hwm, took }, dir)
}

fn main() {
    let n = env_usize("TSUNAGI_BENCH_CHECKS", 50_000).max(OPEN + 6);
    let runs = env_usize("TSUNAGI_BENCH_RUNS", 3).max(1);
    let parent = std::env::var_os("TSUNAGI_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mut root = tempfile::tempdir_in(parent).expect("bench dir");
    let data_dir = tsunagid::data_dir_of(root.path());

    let key = SecretKey::generate();
    let plugin_dir = root.path().join("plugins");
    std::fs::create_dir_all(&plugin_dir).expect("plugin dir");
    // The shipped plugins are named after the facility type they serve.
    for name in FacilityType::ALL.map(FacilityType::as_str) {
        let wasm = std::fs::read(guests::facility_plugin(name)).expect("plugin built");
        let path = plugin_dir.join(format!("{name}.wasm"));
        std::fs::write(signature_path(&path), key.sign(&wasm).to_text()).expect("signature");
        std::fs::write(&path, wasm).expect("plugin");
    }
    let empty_dir = root.path().join("no-plugins");
    std::fs::create_dir_all(&empty_dir).expect("empty plugin dir");
    let none = format!(
        "[reconcile]\ninterval_secs = 3600\n[plugins]\ndir = {:?}\n",
        empty_dir.display().to_string()
    );
    let six = format!(
        "[reconcile]\ninterval_secs = 3600\n[plugins]\ndir = {:?}\ntrusted_keys = [\"{}\"]\n",
        plugin_dir.display().to_string(),
        key.public()
    );

    let t = Instant::now();
    let ids = write_month(&data_dir, n);
    println!(
        "month written: {n} checks ({} open) in {:.1} s, {} on disk",
        OPEN,
        t.elapsed().as_secs_f64(),
        mib(du_kib(&data_dir))
    );
    let step = (n / READS).max(1);
    let sample: Vec<String> = ids.iter().step_by(step).take(READS).cloned().collect();

    let (cold, dir) = run_once(root, &six, FacilityType::ALL.len(), &sample);
    root = dir;
    println!(
        "first start with six (compile cache empty: compiles): VmRSS {}, VmHWM {}, {:.1} s to serve",
        mib(cold.rss),
        mib(cold.hwm),
        cold.took.as_secs_f64()
    );
    let (mut base, mut with) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (run, dir) = run_once(root, &none, 0, &sample);
        base.push(run);
        let (run, dir) = run_once(dir, &six, FacilityType::ALL.len(), &sample);
        with.push(run);
        root = dir;
    }
    let figure = |v: &[Run], f: fn(&Run) -> u64| median(v.iter().map(f).collect());
    let (base_rss, base_hwm) = (figure(&base, |r| r.rss), figure(&base, |r| r.hwm));
    let (with_rss, with_hwm) = (figure(&with, |r| r.rss), figure(&with, |r| r.hwm));
    println!(
        "tsunagid with a {n}-check month open, {} checks read, medians of {runs} runs (warm compile cache):",
        sample.len()
    );
    println!(
        "  no plugins:  VmRSS {}  VmHWM {}",
        mib(base_rss),
        mib(base_hwm)
    );
    println!(
        "  six plugins: VmRSS {}  VmHWM {}  (+{} / +{}; ×{:.2} / ×{:.2} the baseline)",
        mib(with_rss),
        mib(with_hwm),
        mib(with_rss.saturating_sub(base_rss)),
        mib(with_hwm.saturating_sub(base_hwm)),
        with_rss as f64 / base_rss.max(1) as f64,
        with_hwm as f64 / base_hwm.max(1) as f64,
    );
    for (label, v) in [("none", &base), ("six", &with)] {
        let each: Vec<String> = v
            .iter()
            .map(|r| format!("{}/{}", mib(r.rss), mib(r.hwm)))
            .collect();
        println!("  runs ({label}, VmRSS/VmHWM): {}", each.join(", "));
    }
    let verdict = if with_hwm <= RSS_TARGET_KIB {
        "MET"
    } else if with_rss <= RSS_TARGET_KIB {
        "MET by VmRSS, NOT by VmHWM"
    } else {
        "NOT MET"
    };
    println!(
        "target: daemon RSS ≤ 60 MB ({}) with the month open and all plugins loaded: {verdict}",
        mib(RSS_TARGET_KIB)
    );
}

/// Apparent bytes under `dir`, in KiB.
fn du_kib(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(p) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    walk(dir) / 1024
}
