//! Benchmark: the folder interface's round trip (issue 13), as a receipt computer meets it,
//! beside the same check through the API in the same run.
//!
//! The simulator runs in-process; a release `tsunagid` (`CARGO_BIN_EXE_tsunagid`) with its
//! default folder settings (`req` watched with inotify, and looked into every 200 ms) serves
//! a folder root on the bench's disk. For each of `TSUNAGI_BENCH_REQUESTS` requests (1,000) by
//! a patient the simulator confirms, in turn:
//!
//! - **API**: `POST /v1/insurance-checks` over one keep-alive connection, timed until the
//!   whole answer has arrived;
//! - **folder**: the request file is written beside `req` and renamed in (the clock starts at
//!   the rename); the bench's own inotify watch on `req` notes when the kernel reports the
//!   rename (the directory-watch latency, reported apart); the result is waited for in `res`
//!   (the same watch reports its link into `res`; the clock stops there), then read whole, checked to
//!   be a confirmed answer, and removed (collected) before the next.
//!
//! Beside them, in the same loop, a baseline: a new file of the result's size written and
//! fdatasynced on the same disk (what a whole, durable result costs in a new file; the API
//! writes nothing; the folder interface writes into a spare file it made ready ahead, see
//! `folders/spares.rs`, and falls back to a new file).
//!
//! Printed: p50, p99 and max of each; the folder's p50 and p99 over the API's, whole, less
//! each request's own watch latency (target ≤ 1.5×, plus the watch latency), and less the
//! durable write as well.
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

/// One request file, renamed into `req`: the time until its result is in `res`, until the
/// kernel reported the rename to a watch of `req`, and the result's size.
fn folder_round_trip(
    root: &Path,
    id: &str,
    bytes: &[u8],
    watcher: &mut inotify::Inotify,
    buffer: &mut [u8],
) -> (Duration, Duration, usize) {
    let staging = root.join(format!("staging-{id}"));
    std::fs::write(&staging, bytes).expect("staging file");
    let req = root.join("req").join(format!("OQSsiquc01req_{id}.xml"));
    let res = root.join("res").join(format!("OQSsiquc01res_{id}.xml"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let t = Instant::now();
    std::fs::rename(&staging, &req).expect("rename into req");
    // The bench's own watch reports the request's rename and the result's link as the kernel
    // sees them (no polling in the measurement).
    let (wanted_req, wanted_res) = (
        format!("OQSsiquc01req_{id}.xml"),
        format!("OQSsiquc01res_{id}.xml"),
    );
    let mut watched = None;
    let mut answered = None;
    while answered.is_none() {
        assert!(Instant::now() < deadline, "no result for {id}");
        let events = watcher
            .read_events_blocking(buffer)
            .expect("inotify events");
        for e in events {
            let Some(name) = e.name.map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if name == wanted_req && watched.is_none() {
                watched = Some(t.elapsed());
            } else if name == wanted_res && answered.is_none() {
                answered = Some(t.elapsed());
            }
        }
    }
    let took = answered.unwrap_or_default();
    let text = std::fs::read_to_string(&res).expect("result");
    assert!(
        text.contains("<QualificationValidity>1</QualificationValidity>"),
        "not a confirmed answer:\n{text}"
    );
    std::fs::remove_file(&res).expect("collect the result");
    (took, watched.unwrap_or_default(), text.len())
}

/// What a whole, durable result costs on this disk in a new file: `size` bytes written and
/// fdatasynced (the folder interface does this when it has no spare ready; the API writes
/// nothing).
fn durable_write(dir: &Path, size: usize) -> Duration {
    use std::io::Write;
    let path = dir.join("result.tmp");
    let bytes = vec![b'x'; size];
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).expect("scratch file");
    f.write_all(&bytes).expect("write");
    f.sync_data().expect("fdatasync");
    let took = t.elapsed();
    drop(f);
    std::fs::remove_file(&path).expect("remove scratch");
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
    let root = dir.path().join("oqs");
    std::fs::create_dir_all(&root).expect("root");
    let daemon = Tsunagid::start_with(
        dir.path(),
        &sim.base_url(),
        &s.institution_code,
        &format!("[folders]\nroot = {:?}\n", root.display().to_string()),
    );
    let wait = Instant::now() + Duration::from_secs(10);
    while !root.join("req").is_dir() {
        assert!(Instant::now() < wait, "req not made");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The daemon makes its watch within a second of the folder being there.
    std::thread::sleep(Duration::from_millis(1500));
    let mut watcher = inotify::Inotify::init().expect("inotify");
    watcher
        .watches()
        .add(root.join("req"), inotify::WatchMask::MOVED_TO)
        .expect("watch req");
    watcher
        .watches()
        .add(
            root.join("res"),
            inotify::WatchMask::CREATE | inotify::WatchMask::MOVED_TO,
        )
        .expect("watch res");

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
            .post(daemon.url("/v1/insurance-checks"))
            .bearer_auth(&daemon.token)
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

    let (mut api, mut folder, mut watch, mut less_watch, mut sync) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut buffer = [0u8; 4096];
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    for i in 0..n + WARMUP {
        let a = api_once();
        let id = format!("r{i}");
        let (f, w, size) = folder_round_trip(&root, &id, &request(&id), &mut watcher, &mut buffer);
        let d = durable_write(&scratch, size);
        if i >= WARMUP {
            api.push(a);
            folder.push(f);
            watch.push(w);
            less_watch.push(f.saturating_sub(w));
            sync.push(d);
        }
    }
    println!("Folder round trip, {n} requests each (after {WARMUP} untimed), one at a time:");
    let (api50, api99) = row("API POST /v1/insurance-checks", &mut api);
    let (f50, f99) = row("folder: rename into req -> result in res", &mut folder);
    row("  of which the directory watch (inotify)", &mut watch);
    let (x50, x99) = row("folder less its own watch latency", &mut less_watch);
    let (s50, s99) = row(
        "baseline: new file of the result's size + fdatasync",
        &mut sync,
    );
    let met = |r: f64| if r <= 1.5 { "met" } else { "NOT MET" };
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "folder / API: p50 {:.2}x, p99 {:.2}x;  less the watch: p50 {:.2}x ({}), p99 {:.2}x ({})  target <= 1.5x plus the watch",
        ratio(f50, api50),
        ratio(f99, api99),
        ratio(x50, api50),
        met(ratio(x50, api50)),
        ratio(x99, api99),
        met(ratio(x99, api99)),
    );
    println!(
        "folder less its watch and one durable write of its result / API: p50 {:.2}x, p99 {:.2}x",
        ratio(x50.saturating_sub(s50), api50),
        ratio(x99.saturating_sub(s99), api99),
    );
    let (status, took) = daemon.stop();
    match status {
        Some(s) if s.success() => {}
        other => {
            println!("tsunagid stop: {other:?} after {took:?}  NOT MET");
            std::process::exit(1);
        }
    }
}
