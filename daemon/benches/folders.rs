//! Benchmark: the folder interface's round trip (issue 13), as a receipt computer meets it,
//! beside the same check through the API in the same run.
//!
//! The simulator runs in-process; two release `tsunagid` processes (`CARGO_BIN_EXE_tsunagid`)
//! serve their own folder roots, one looking into `req` every 5 ms (the interface's own cost,
//! nearly without the look's wait) and one at the default 200 ms (what a clinic gets). For
//! each of `TSUNAGI_BENCH_REQUESTS` requests (1,000) by a patient the simulator confirms, in
//! turn:
//!
//! - **API**: `POST /v1/insurance-checks` to the 5 ms daemon over one keep-alive connection,
//!   timed until the whole answer has arrived;
//! - **folder**, on each daemon: the request file is written beside `req` and renamed in (the
//!   clock starts at the rename) and the result is waited for in `res` (looked for every
//!   0.2 ms; the clock stops when it is there), then read whole, checked to be a confirmed
//!   answer, and removed (collected) before the next.
//!
//! Printed: p50, p99 and max of each; the 5 ms folder's p50 and p99 over the API's (target
//! ≤ 1.5×); and the directory-watch latency reported apart: the 200 ms daemon's round trip
//! minus the 5 ms daemon's, at p50 and p99.
//!
//! Run: `cargo bench -p tsunagi --bench folders`. Env: `TSUNAGI_BENCH_REQUESTS`,
//! `TSUNAGI_BENCH_DIR` (default: the system temp dir).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/tsunagid.rs"]
mod tsunagid;

use std::path::Path;
use std::time::{Duration, Instant};

use oqs_sim::{scenario, Simulator};
use serde_json::json;
use tsunagi::check::now_jst;
use tsunagid::Tsunagid;

const WARMUP: usize = 20;
/// The daemon that measures the interface's own cost looks into `req` this often.
const FAST_POLL_MS: u64 = 5;
/// The default look interval (`[folders] poll_ms`).
const SLOW_POLL_MS: u64 = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn row(name: &str, xs: &mut [Duration]) -> (Duration, Duration) {
    xs.sort();
    let (p50, p99) = (percentile(xs, 0.50), percentile(xs, 0.99));
    println!(
        "{name:<42} p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms   (n = {})",
        ms(p50),
        ms(p99),
        ms(*xs.last().expect("samples")),
        xs.len()
    );
    (p50, p99)
}

/// One request file, renamed into `req`; the time until its result is in `res`.
fn folder_round_trip(root: &Path, id: &str, bytes: &[u8]) -> Duration {
    let staging = root.join(format!("staging-{id}"));
    std::fs::write(&staging, bytes).expect("staging file");
    let req = root.join("req").join(format!("OQSsiquc01req_{id}.xml"));
    let res = root.join("res").join(format!("OQSsiquc01res_{id}.xml"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let t = Instant::now();
    std::fs::rename(&staging, &req).expect("rename into req");
    while !res.exists() {
        assert!(Instant::now() < deadline, "no result for {id}");
        std::thread::sleep(Duration::from_micros(200));
    }
    let took = t.elapsed();
    let text = std::fs::read_to_string(&res).expect("result");
    assert!(
        text.contains("<QualificationValidity>1</QualificationValidity>"),
        "not a confirmed answer:\n{text}"
    );
    std::fs::remove_file(&res).expect("collect the result");
    took
}

fn main() {
    let n: usize = std::env::var("TSUNAGI_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let today = now_jst().date_naive();
    let s = scenario::standard(today).expect("scenario");
    let sim = rt.block_on(Simulator::start(s.sim_config())).expect("sim");
    let base = std::env::var_os("TSUNAGI_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).expect("bench dir");
    let key = s.insurance_of("valid-employee").expect("patient");

    let start = |name: &str, poll_ms: u64| {
        let root = dir.path().join(name);
        std::fs::create_dir_all(root.join("oqs")).expect("root");
        let folders = root.join("oqs");
        let d = Tsunagid::start_with(
            &root,
            &sim.base_url(),
            &s.institution_code,
            &format!(
                "[folders]\nroot = {:?}\npoll_ms = {poll_ms}\n",
                folders.display().to_string()
            ),
        );
        let wait = Instant::now() + Duration::from_secs(10);
        while !folders.join("req").is_dir() {
            assert!(Instant::now() < wait, "req not made");
            std::thread::sleep(Duration::from_millis(5));
        }
        (d, folders)
    };
    let (fast, fast_root) = start("fast", FAST_POLL_MS);
    let (slow, slow_root) = start("slow", SLOW_POLL_MS);

    let request = |file_id: &str| {
        let mut search = format!("<InsurerNumber>{}</InsurerNumber>", key.insurer.wire());
        if let Some(sym) = &key.symbol {
            search.push_str(&format!("<InsuredCardSymbol>{sym}</InsuredCardSymbol>"));
        }
        search.push_str(&format!(
            "<InsuredIdentificationNumber>{}</InsuredIdentificationNumber>",
            key.number
        ));
        if let Some(b) = &key.branch {
            search.push_str(&format!("<InsuredBranchNumber>{b}</InsuredBranchNumber>"));
        }
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><XmlMsg><MessageHeader><QualificationConfirmationDate>{}</QualificationConfirmationDate><MedicalInstitutionCode>{}</MedicalInstitutionCode><ArbitraryFileIdentifier>{file_id}</ArbitraryFileIdentifier></MessageHeader><MessageBody><QualificationConfirmSearchInfo>{search}<Birthdate>{}</Birthdate><LimitApplicationCertificateRelatedConsFlg>0</LimitApplicationCertificateRelatedConsFlg></QualificationConfirmSearchInfo></MessageBody></XmlMsg>",
            today.format("%Y%m%d"),
            s.institution_code,
            key.birthdate.format("%Y%m%d")
        )
        .into_bytes()
    };
    let body = json!({
        "insurer": key.insurer.wire().trim(),
        "symbol": key.symbol,
        "number": key.number,
        "branch": key.branch,
        "birth_date": key.birthdate,
    });
    let http = rt.block_on(async {
        reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .expect("client")
    });
    let api_once = || {
        let req = http
            .post(fast.url("/v1/insurance-checks"))
            .bearer_auth(&fast.token)
            .json(&body)
            .build()
            .expect("request");
        rt.block_on(async {
            let t = Instant::now();
            let reply = http.execute(req).await.expect("API answer");
            let status = reply.status();
            let bytes = reply.bytes().await.expect("body");
            let took = t.elapsed();
            assert!(status.is_success(), "{status}");
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
            assert_eq!(v["status"], "confirmed", "{v}");
            took
        })
    };

    let (mut api, mut folder_fast, mut folder_slow) = (Vec::new(), Vec::new(), Vec::new());
    // A request arrives at a random point of the daemon's look interval, as a receipt
    // computer's do (untimed pause, so the loop does not lock onto the looks' phase).
    let unlock = |poll_ms: u64| {
        std::thread::sleep(Duration::from_micros(
            rand::random::<u64>() % (poll_ms * 1000),
        ))
    };
    for i in 0..n + WARMUP {
        let a = api_once();
        unlock(FAST_POLL_MS);
        let f = folder_round_trip(&fast_root, &format!("f{i}"), &request(&format!("f{i}")));
        unlock(SLOW_POLL_MS);
        let w = folder_round_trip(&slow_root, &format!("s{i}"), &request(&format!("s{i}")));
        if i >= WARMUP {
            api.push(a);
            folder_fast.push(f);
            folder_slow.push(w);
        }
    }
    println!("Folder round trip, {n} requests each (after {WARMUP} untimed), one at a time:");
    let (api50, api99) = row("API POST /v1/insurance-checks", &mut api);
    let (f50, f99) = row("folder, req looked into every 5 ms", &mut folder_fast);
    let (w50, w99) = row("folder, req looked into every 200 ms", &mut folder_slow);
    let r50 = f50.as_secs_f64() / api50.as_secs_f64();
    let r99 = f99.as_secs_f64() / api99.as_secs_f64();
    let met = |r: f64| if r <= 1.5 { "met" } else { "NOT MET" };
    println!(
        "folder (5 ms) / API: p50 {r50:.2}x ({}), p99 {r99:.2}x ({})  target <= 1.5x",
        met(r50),
        met(r99)
    );
    // The 5 ms daemon's round trip still holds up to 5 ms of waiting for its look.
    let look = Duration::from_millis(FAST_POLL_MS);
    let x50 = f50.saturating_sub(look).as_secs_f64() / api50.as_secs_f64();
    let x99 = f99.saturating_sub(look).as_secs_f64() / api99.as_secs_f64();
    println!(
        "folder (5 ms) less its whole 5 ms look / API: p50 {x50:.2}x ({}), p99 {x99:.2}x ({})",
        met(x50),
        met(x99)
    );
    println!(
        "directory-watch latency (200 ms look minus 5 ms look): p50 {:.1} ms, p99 {:.1} ms",
        ms(w50.saturating_sub(f50)),
        ms(w99.saturating_sub(f99))
    );
    for d in [fast, slow] {
        let (status, took) = d.stop();
        match status {
            Some(s) if s.success() => {}
            other => {
                println!("tsunagid stop: {other:?} after {took:?}  NOT MET");
                std::process::exit(1);
            }
        }
    }
}
