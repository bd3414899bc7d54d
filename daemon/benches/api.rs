//! Benchmark: the local HTTP API (ローカルAPI) of a real `tsunagid` process, as the receipt
//! computer and the reception page meet it, with ratios against baselines measured in the
//! same run (issue 9, "same-run ratios").
//!
//! The bench starts the simulator in-process and spawns the release `tsunagid` Cargo built
//! for this bench (`CARGO_BIN_EXE_tsunagid`: `cargo bench` builds a package's binaries
//! whenever one of its benches is selected), with its data directory on the disk the bench
//! directory is on, the API on a free loopback port and `[reconcile] interval_secs = 3600`,
//! so that no pass runs while it is measured (the one pass at start finds nothing open).
//! The client is `reqwest` over one keep-alive HTTP/1.1 connection, one request at a time;
//! each request is built (and its body serialised) before the clock starts and timed until
//! its whole body has arrived.
//!
//! Figures (p50, p99 and max of each; nearest-rank percentiles):
//!
//! - **Reading one check**, `GET /v1/checks/{id}`: the first read of each check (the daemon
//!   folds it from the store: index lookup, segment read, open, verify, fold) and cached
//!   reads (the ledger's fold cache answers while the check has no new event). Beside them,
//!   the same reads in-process: `Ledger::check` on a separate data directory on the same
//!   disk holding the same kind of checks (first and cached), and `ops::view` (what the
//!   handler runs: the hop to the blocking pool, the fold, the view), so the HTTP share can
//!   be read off. The segments were just written, so "first read" means first for the fold
//!   cache, not for the OS page cache.
//! - **Capture through the API**, `POST /v1/documents` with an acceptable 資格確認書 (the
//!   document rules run, then the check is recorded durably before the answer; no card is
//!   needed). Baseline: one append of the same size as the record frame (measured: the bytes
//!   the captures added to the daemon's segments, averaged) plus `fdatasync`, into a file on
//!   the same filesystem, run before and after the captures; ratios use the worse p99 of the
//!   two passes and both are printed (as `tsunagi-sync`'s capture bench does). Beside it,
//!   the same capture in-process (`ops::record_document` on the separate ledger), and the
//!   same request with a 資格確認書 that expired yesterday, which the rules refuse (R10)
//!   before anything is written: HTTP, JSON and the rules alone.
//! - **Capture under load**: `wrk -t1 -c8 --latency` against `GET /v1/status` with the
//!   bearer token, as a second process, while the captures run again. Printed: capture p99
//!   loaded vs unloaded (target ≤ 2×) and wrk's requests/s and latency percentiles. wrk's
//!   run lasts at least `TSUNAGI_BENCH_WRK_SECS` and long enough for the captures at three
//!   times their unloaded pace; captures start one second into it and stop before it ends.
//!   The bench only asks for wrk: without it (`apt-get install -y wrk` on Debian) the loaded
//!   figures are skipped and the rest still runs. Beside both capture cases it prints where
//!   the CPU went while they ran (/proc: the machine's busy share, tsunagid, wrk and the
//!   bench in CPUs), because on a small machine wrk, tsunagid and the client share the
//!   same few cores and the loaded ratio is then mostly a measure of that.
//! - `GET /v1/status` unloaded: the API's floor (authentication, routing, a small JSON
//!   body; no store).
//!
//! At the end tsunagid gets SIGTERM and must exit 0 within 10 s; otherwise the bench exits 1
//! after printing its figures.
//!
//! The bench directory is a temp dir in `TSUNAGI_BENCH_DIR`, else the system temp dir,
//! unless that is a tmpfs (fdatasync would cost nothing there and the baseline would mean
//! nothing): then Cargo's target tmp dir, on the disk of the build.
//!
//! Run: `cargo bench -p tsunagi --bench api`. Env: `TSUNAGI_BENCH_CAPTURES` (captures per
//! case, 1,000, at least 300), `TSUNAGI_BENCH_READS` (reads per case, 2,000),
//! `TSUNAGI_BENCH_WRK_SECS` (10), `TSUNAGI_BENCH_DIR`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Months, NaiveDate};
use serde_json::{json, Value};
use tsunagi::check::now_jst;
use tsunagi::domain::FacilityType;
use tsunagi::ledger::Ledger;
use tsunagi::ops::{self, DocumentRequest};
use tsunagi::rules::settings::RuleSettings;

/// Untimed requests before each timed case (connection, month key, segment, caches).
const WARMUP: usize = 20;
/// Fewest captures a capture case may have and still be reported without a warning.
const MIN_CAPTURES: usize = 300;
/// The fold cache's size (`ledger::FOLD_CACHE`): cached reads cycle over fewer checks than
/// this, so that none is evicted between its reads.
const CACHED_IDS: usize = 1_000;

// ----- numbers -----

/// Latency figures of one sample.
#[derive(Debug, Clone, Copy)]
struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Nearest-rank percentiles of `samples` (sorted in place).
fn stats(samples: &mut [Duration]) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| -> Duration {
        if samples.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    Stats {
        n: samples.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `a / b` (a zero `b` counts as 1 ns).
fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT MET"
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

// ----- the bench directory -----

/// The filesystem type `path` is on, from the longest matching mount point in /proc/mounts.
fn fs_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, at, kind) = (f.next()?, f.next()?, f.next()?);
            Some((PathBuf::from(at.replace("\\040", " ")), kind.to_string()))
        })
        .filter(|(at, _)| path.starts_with(at))
        .max_by_key(|(at, _)| at.components().count())
        .map(|(_, kind)| kind)
}

/// A temp dir on a real disk (see the module doc), and its filesystem type.
fn bench_root() -> (tempfile::TempDir, String) {
    let mut parent = std::env::var_os("TSUNAGI_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mut kind = fs_type(&parent).unwrap_or_else(|| "unknown".into());
    if kind == "tmpfs" || kind == "ramfs" {
        println!(
            "{} is on {kind}: fdatasync costs nothing there, using Cargo's target tmp dir instead",
            parent.display()
        );
        parent = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&parent).expect("target tmp dir");
        kind = fs_type(&parent).unwrap_or_else(|| "unknown".into());
    }
    (tempfile::tempdir_in(&parent).expect("bench dir"), kind)
}

/// Bytes used by the segment files `DIR/months/YYYY-MM/*.seg` of a store. Segments are
/// zero-filled ahead of their end for appends; "used" stops at the last non-zero byte.
fn segment_bytes(data_dir: &Path) -> u64 {
    let Ok(months) = std::fs::read_dir(data_dir.join("months")) else {
        return 0;
    };
    let mut total = 0;
    for month in months.flatten() {
        let Ok(files) = std::fs::read_dir(month.path()) else {
            continue;
        };
        for f in files.flatten() {
            if f.path().extension().is_some_and(|e| e == "seg") {
                let bytes = std::fs::read(f.path()).unwrap_or_default();
                total += bytes
                    .iter()
                    .rposition(|b| *b != 0)
                    .map_or(0, |p| p as u64 + 1);
            }
        }
    }
    total
}

/// The baseline: `n` appends of `size` bytes to one open file, each followed by
/// `sync_data()` (fdatasync), after a few untimed ones.
fn append_fdatasync(path: &Path, size: u64, n: usize) -> Vec<Duration> {
    let body = vec![b'x'; size as usize];
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("baseline file");
    let mut out = Vec::with_capacity(n);
    for i in 0..WARMUP + n {
        let t = Instant::now();
        f.write_all(&body).expect("append");
        f.sync_data().expect("fdatasync");
        if i >= WARMUP {
            out.push(t.elapsed());
        }
    }
    out
}

// ----- tsunagid -----

#[path = "support/tsunagid.rs"]
mod tsunagid;
use tsunagid::{Tsunagid, STOP_TIMEOUT};

// ----- requests -----

/// A 資格確認書 with the patient's numbers that expires on `expires`: acceptable when that is
/// after the visit (recorded as a check), refused (R10) when it is before (nothing written).
fn document_body(expires: NaiveDate) -> Value {
    json!({
        "kind": "kakuninsho",
        "expires": expires.to_string(),
        "insurer": "06139917",
        "symbol": "1",
        "number": "2",
        "birth_date": "1980-01-01",
    })
}

/// `POST /v1/documents`: the time from sending to the whole answer, and the answer, whose
/// `status` must be `expect` (`recorded` or `refused`).
async fn post_document(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
    expect: &str,
) -> (Duration, Value) {
    let req = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .build()
        .expect("request");
    let t = Instant::now();
    let resp = client.execute(req).await.expect("POST /v1/documents");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("answer");
    let took = t.elapsed();
    let v: Value = serde_json::from_slice(&bytes).expect("JSON answer");
    assert!(status.is_success(), "POST /v1/documents: {status} {v}");
    assert_eq!(v["status"], expect, "document not {expect}: {v}");
    (took, v)
}

/// `GET url` with the token: the time from sending to the whole answer.
async fn get(client: &reqwest::Client, url: &str, token: &str) -> Duration {
    let req = client.get(url).bearer_auth(token).build().expect("request");
    let t = Instant::now();
    let resp = client.execute(req).await.expect("GET");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("answer");
    let took = t.elapsed();
    assert!(
        status.is_success(),
        "GET {url}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    took
}

/// Up to `n` captures, one at a time, stopping early when `stop` says so; their times and
/// check ids, and the wall time.
async fn captures(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
    n: usize,
    mut stop: impl FnMut() -> bool,
) -> (Vec<Duration>, Vec<String>, Duration) {
    let mut times = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    let start = Instant::now();
    while times.len() < n && !stop() {
        let (t, answer) = post_document(client, url, token, body, "recorded").await;
        times.push(t);
        ids.push(answer["check_id"].as_str().expect("check_id").to_string());
    }
    (times, ids, start.elapsed())
}

// ----- wrk -----

/// What wrk printed, and the figures read from it.
struct WrkRun {
    output: String,
    requests_per_sec: Option<f64>,
    p50: Option<Duration>,
    p99: Option<Duration>,
    non_2xx: Option<u64>,
}

/// A wrk duration ("123.45us", "1.20ms", "2.00s").
fn wrk_duration(s: &str) -> Option<Duration> {
    let (num, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1e-6)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else {
        return None;
    };
    Some(Duration::from_secs_f64(num.parse::<f64>().ok()? * scale))
}

fn parse_wrk(output: String) -> WrkRun {
    let field = |prefix: &str| -> Option<String> {
        output
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|rest| rest.trim().to_string())
    };
    WrkRun {
        requests_per_sec: field("Requests/sec:").and_then(|v| v.parse().ok()),
        p50: field("50%").and_then(|v| wrk_duration(&v)),
        p99: field("99%").and_then(|v| wrk_duration(&v)),
        non_2xx: field("Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()),
        output,
    }
}

fn spawn_wrk(url: &str, token: &str, secs: u64) -> Child {
    Command::new("wrk")
        .args(["-t1", "-c8", &format!("-d{secs}s"), "--latency", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wrk")
}

fn wrk_available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

// ----- CPU -----

/// (busy, total) ticks of all CPUs together, from /proc/stat.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// utime + stime of process `pid`, in ticks, from /proc/<pid>/stat.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command, is in parentheses and may hold spaces: count from after it.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3; utime and stime are fields 14 and 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU counters at one moment: the machine's and some processes'.
struct CpuMark {
    machine: Option<(u64, u64)>,
    procs: Vec<(&'static str, u32, Option<u64>)>,
}

fn cpu_mark(procs: &[(&'static str, u32)]) -> CpuMark {
    CpuMark {
        machine: machine_ticks(),
        procs: procs
            .iter()
            .map(|&(name, pid)| (name, pid, process_ticks(pid)))
            .collect(),
    }
}

/// Where the CPU went since `mark`: the machine's busy share, and each process in CPUs.
fn cpu_since(mark: &CpuMark, cpus: usize) -> String {
    let (Some((busy0, total0)), Some((busy1, total1))) = (mark.machine, machine_ticks()) else {
        return "CPU use unknown (no /proc/stat)".into();
    };
    let total = (total1 - total0).max(1) as f64;
    // Ticks of one CPU over the window.
    let one = total / cpus.max(1) as f64;
    let mut out = format!(
        "machine {:.0}% busy of {cpus} CPUs",
        100.0 * (busy1 - busy0) as f64 / total
    );
    for (name, pid, before) in &mark.procs {
        if let (Some(b), Some(a)) = (before, process_ticks(*pid)) {
            out.push_str(&format!(", {name} {:.2} CPUs", (a - b) as f64 / one));
        }
    }
    out
}

// ----- output -----

fn header() {
    println!(
        "{:<52} {:>6} {:>9} {:>9} {:>9}  ratio",
        "figure", "n", "p50 ms", "p99 ms", "max ms"
    );
}

fn row(name: &str, s: &Stats, note: &str) {
    println!(
        "{name:<52} {:>6} {:>9.3} {:>9.3} {:>9.3}  {note}",
        s.n,
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
}

fn main() {
    let bench_start = Instant::now();
    let n_captures = env_usize("TSUNAGI_BENCH_CAPTURES", 1_000).max(MIN_CAPTURES);
    let n_reads = env_usize("TSUNAGI_BENCH_READS", 2_000).max(100);
    let wrk_min_secs = env_usize("TSUNAGI_BENCH_WRK_SECS", 10).max(3) as u64;

    let (root_dir, fs_kind) = bench_root();
    let root = root_dir.path();
    let today = now_jst().date_naive();
    let scenario = oqs_sim::scenario::standard(today).expect("scenario");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sim = rt
        .block_on(oqs_sim::Simulator::start(scenario.sim_config()))
        .expect("simulator");
    let t_start = Instant::now();
    let daemon = Tsunagid::start(root, &sim.base_url(), &scenario.institution_code);
    let started = t_start.elapsed();
    println!(
        "api bench: tsunagid {} (pid {}) on {}, ready in {:.0} ms; dir {} ({fs_kind}); {} CPUs; \
         {n_captures} captures per case, {n_reads} reads per case",
        env!("CARGO_BIN_EXE_tsunagid"),
        daemon.pid(),
        daemon.addr,
        ms(started),
        root.display(),
        std::thread::available_parallelism().map_or(0, usize::from),
    );

    // One client, so one keep-alive connection: requests go one at a time.
    let client = rt.block_on(async {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build()
            .expect("client")
    });
    let token = daemon.token.clone();
    let body = document_body(
        today
            .checked_add_months(Months::new(12))
            .expect("a date a year ahead"),
    );
    let expired = document_body(today.pred_opt().expect("yesterday"));
    let documents = daemon.url("/v1/documents");
    let status_url = daemon.url("/v1/status");

    // Warm-up: the connection, the month's key and segment, the index.
    let mut all_ids = Vec::new();
    rt.block_on(async {
        for _ in 0..WARMUP {
            let (_, answer) = post_document(&client, &documents, &token, &body, "recorded").await;
            all_ids.push(answer["check_id"].as_str().expect("check_id").to_string());
            get(&client, &status_url, &token).await;
        }
    });

    // ---- GET /v1/status unloaded: the floor of any request.
    let mut status_times: Vec<Duration> = rt.block_on(async {
        let mut out = Vec::with_capacity(n_reads);
        for _ in 0..n_reads {
            out.push(get(&client, &status_url, &token).await);
        }
        out
    });

    // ---- POST /v1/documents refused: HTTP, JSON and the rules, nothing written.
    let mut refused_times: Vec<Duration> = rt.block_on(async {
        for _ in 0..WARMUP {
            post_document(&client, &documents, &token, &expired, "refused").await;
        }
        let mut out = Vec::with_capacity(n_reads);
        for _ in 0..n_reads {
            out.push(
                post_document(&client, &documents, &token, &expired, "refused")
                    .await
                    .0,
            );
        }
        out
    });

    // ---- Captures unloaded, between two baseline passes.
    let seg_before = segment_bytes(&daemon.data_dir);
    let probe = rt.block_on(captures(&client, &documents, &token, &body, WARMUP, || {
        false
    }));
    let frame =
        ((segment_bytes(&daemon.data_dir) - seg_before) as f64 / WARMUP as f64).round() as u64;
    all_ids.extend(probe.1);
    println!(
        "one capture adds {frame} B to the daemon's segment (mean of {WARMUP}): the baseline appends {frame} B + fdatasync"
    );
    let mut base1 = append_fdatasync(&root.join("baseline-1"), frame, n_captures);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let daemon_pid = daemon.pid();
    let mark = cpu_mark(&[("tsunagid", daemon_pid), ("bench", std::process::id())]);
    let (mut unloaded, ids, unloaded_wall) = rt.block_on(captures(
        &client,
        &documents,
        &token,
        &body,
        n_captures,
        || false,
    ));
    all_ids.extend(ids);
    let unloaded_cpu = cpu_since(&mark, cpus);

    // ---- Captures under wrk's load on GET /v1/status.
    let mut loaded: Option<(Vec<Duration>, WrkRun, u64, String)> = None;
    if wrk_available() {
        // Long enough for the captures at a third of their unloaded pace, plus the ramp.
        let secs = wrk_min_secs.max((2.0 + 3.0 * unloaded_wall.as_secs_f64()).ceil() as u64);
        let mut wrk = spawn_wrk(&status_url, &token, secs);
        let wrk_start = Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        let end = wrk_start + Duration::from_secs(secs) - Duration::from_millis(500);
        let mark = cpu_mark(&[
            ("tsunagid", daemon_pid),
            ("wrk", wrk.id()),
            ("bench", std::process::id()),
        ]);
        let (times, ids, _) = rt.block_on(captures(
            &client,
            &documents,
            &token,
            &body,
            n_captures,
            || Instant::now() >= end || matches!(wrk.try_wait(), Ok(Some(_))),
        ));
        let loaded_cpu = cpu_since(&mark, cpus);
        all_ids.extend(ids);
        let out = wrk.wait_with_output().expect("wrk output");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "wrk failed ({}):\n{text}", out.status);
        loaded = Some((times, parse_wrk(text), secs, loaded_cpu));
    } else {
        println!(
            "wrk not found: the loaded figures are skipped. Install it with `apt-get install -y wrk` (Debian, Ubuntu)."
        );
    }
    let mut base2 = append_fdatasync(&root.join("baseline-2"), frame, n_captures);

    // ---- Reading one check through the API: each check once (first read), then cached.
    let (mut api_first, mut api_cached) = rt.block_on(async {
        let mut first = Vec::with_capacity(all_ids.len());
        for id in &all_ids {
            first.push(get(&client, &daemon.url(&format!("/v1/checks/{id}")), &token).await);
        }
        let cycle = &all_ids[..all_ids.len().min(CACHED_IDS)];
        let mut cached = Vec::with_capacity(n_reads);
        for i in 0..n_reads {
            let id = &cycle[i % cycle.len()];
            cached.push(get(&client, &daemon.url(&format!("/v1/checks/{id}")), &token).await);
        }
        (first, cached)
    });

    // ---- The same in-process, on a separate ledger on the same disk.
    let ledger = Ledger::open(&root.join("inproc-data")).expect("in-process ledger");
    let settings = RuleSettings::default();
    let request: DocumentRequest = serde_json::from_value(body.clone()).expect("request");
    let record = |ledger: &Ledger| {
        let ledger = ledger.clone();
        let request = request.clone();
        let settings = settings.clone();
        async move {
            let t = Instant::now();
            let r = ops::record_document(
                &ledger,
                &request,
                FacilityType::Medical,
                &settings,
                now_jst(),
            )
            .await
            .expect("record_document");
            let took = t.elapsed();
            assert_eq!(r.status, "recorded", "{r:?}");
            (took, r.check_id.expect("check id"))
        }
    };
    let n_local = n_reads.max(all_ids.len());
    let (mut local_capture, local_ids) = rt.block_on(async {
        for _ in 0..WARMUP {
            record(&ledger).await;
        }
        let mut times = Vec::with_capacity(n_local);
        let mut ids = Vec::with_capacity(n_local);
        for _ in 0..n_local {
            let (t, id) = record(&ledger).await;
            times.push(t);
            ids.push(id);
        }
        (times, ids)
    });
    let time_check = |id: &str| {
        let t = Instant::now();
        std::hint::black_box(ledger.check(id).expect("check"));
        t.elapsed()
    };
    let mut local_first: Vec<Duration> = local_ids.iter().map(|id| time_check(id)).collect();
    let cycle = &local_ids[..local_ids.len().min(CACHED_IDS)];
    let mut local_cached: Vec<Duration> = (0..n_reads)
        .map(|i| time_check(&cycle[i % cycle.len()]))
        .collect();
    let mut local_view: Vec<Duration> = rt.block_on(async {
        let mut out = Vec::with_capacity(n_reads);
        for i in 0..n_reads {
            let id = &cycle[i % cycle.len()];
            let t = Instant::now();
            std::hint::black_box(ops::view(&ledger, id, today).await.expect("view"));
            out.push(t.elapsed());
        }
        out
    });
    drop(ledger);

    // ---- Stop tsunagid.
    let log_tail = daemon.log_text();
    let (exit, stop_took) = daemon.stop();
    rt.block_on(sim.shutdown());

    // ---- Figures.
    let b1 = stats(&mut base1);
    let b2 = stats(&mut base2);
    let base = if b2.p99 > b1.p99 { b2 } else { b1 };
    let status_s = stats(&mut status_times);
    let refused = stats(&mut refused_times);
    let unl = stats(&mut unloaded);
    let lcap = stats(&mut local_capture);
    let af = stats(&mut api_first);
    let ac = stats(&mut api_cached);
    let lf = stats(&mut local_first);
    let lc = stats(&mut local_cached);
    let lv = stats(&mut local_view);

    println!();
    header();
    println!("-- read one check");
    row(
        "GET /v1/checks/{id}, first read",
        &af,
        &format!(
            "p50 {:.1}x, p99 {:.1}x in-process first read",
            ratio(af.p50, lf.p50),
            ratio(af.p99, lf.p99)
        ),
    );
    row(
        "GET /v1/checks/{id}, cached fold",
        &ac,
        &format!(
            "p50 {:.1}x, p99 {:.1}x in-process cached",
            ratio(ac.p50, lc.p50),
            ratio(ac.p99, lc.p99)
        ),
    );
    row("in-process Ledger::check, first read", &lf, "baseline");
    row("in-process Ledger::check, cached fold", &lc, "baseline");
    row(
        "in-process ops::view, cached (hop + fold + view)",
        &lv,
        "what the handler runs",
    );
    row(
        "GET /v1/status, unloaded (no store)",
        &status_s,
        "the API's floor",
    );
    println!("-- capture (POST /v1/documents: rules + durable record)");
    row(
        &format!("baseline 1: append {frame} B + fdatasync"),
        &b1,
        "",
    );
    row(
        &format!("baseline 2: append {frame} B + fdatasync"),
        &b2,
        "",
    );
    row(
        "capture through the API, unloaded",
        &unl,
        &format!(
            "p99 {:.2}x baseline p99 (p50 {:.2}x)",
            ratio(unl.p99, base.p99),
            ratio(unl.p50, base.p50)
        ),
    );
    row(
        "capture in-process, ops::record_document",
        &lcap,
        &format!("p99 {:.2}x baseline p99", ratio(lcap.p99, base.p99)),
    );
    row(
        "POST /v1/documents refused (R10: nothing written)",
        &refused,
        "HTTP + JSON + rules",
    );
    println!("CPU during the unloaded captures: {unloaded_cpu}");
    let drift = ratio(b1.p99.max(b2.p99), b1.p99.min(b2.p99));
    println!(
        "(ratios use the worse baseline p99, {:.3} ms{})",
        ms(base.p99),
        if drift > 1.5 {
            format!("; WARNING: the two passes differ {drift:.1}x at p99, the disk changed during the run")
        } else {
            String::new()
        }
    );
    let mut loaded_ratio = None;
    if let Some((mut times, wrk, secs, loaded_cpu)) = loaded {
        let ld = stats(&mut times);
        let r = ratio(ld.p99, unl.p99);
        loaded_ratio = Some(r);
        println!("-- under load: wrk -t1 -c8 -d{secs}s on GET /v1/status, captures as above");
        row(
            "capture through the API, loaded",
            &ld,
            &format!(
                "p99 {r:.2}x unloaded p99 (p50 {:.2}x)",
                ratio(ld.p50, unl.p50)
            ),
        );
        println!("CPU during the loaded captures: {loaded_cpu}");
        if ld.n < MIN_CAPTURES {
            println!(
                "WARNING: only {} captures fit in wrk's run (wanted at least {MIN_CAPTURES})",
                ld.n
            );
        }
        println!(
            "wrk GET /v1/status: {} req/s, latency p50 {} ms, p99 {} ms{}",
            wrk.requests_per_sec
                .map_or("?".into(), |v| format!("{v:.0}")),
            wrk.p50.map_or("?".into(), |d| format!("{:.3}", ms(d))),
            wrk.p99.map_or("?".into(), |d| format!("{:.3}", ms(d))),
            match wrk.non_2xx {
                Some(n) => format!("; {n} answers were not 2xx"),
                None => "; all answers 2xx".into(),
            }
        );
        println!("wrk's output:");
        for l in wrk.output.lines().filter(|l| !l.trim().is_empty()) {
            println!("  | {l}");
        }
    }

    println!();
    println!("targets");
    if let Some(r) = loaded_ratio {
        println!(
            "  capture p99 under load / unloaded           {r:>6.2}x  (<= 2x)  {}",
            verdict(r <= 2.0)
        );
    }
    // Reported beside one fsync, as the issue asks; the ≤ 2x target is the store's own
    // (in-process, `cargo bench -p tsunagi-sync --bench capture`), not the API's.
    let r = ratio(unl.p99, base.p99);
    println!("  capture p99 through the API / baseline p99  {r:>6.2}x  (figure; no target)");
    let exit_ok = exit.is_some_and(|s| s.success());
    match exit {
        Some(s) => println!(
            "tsunagid on SIGTERM: {s} after {:.0} ms  {}",
            ms(stop_took),
            verdict(exit_ok)
        ),
        None => {
            println!("tsunagid on SIGTERM: still running after {STOP_TIMEOUT:?}, killed  NOT MET")
        }
    }
    let warnings = log_tail.lines().filter(|l| !l.trim().is_empty()).count();
    if warnings > 0 {
        println!("tsunagid logged {warnings} lines at warn or above before the stop:");
        for l in log_tail.lines().take(10) {
            println!("  | {l}");
        }
    }
    println!("bench took {:.1} s", bench_start.elapsed().as_secs_f64());
    if !exit_ok {
        std::process::exit(1);
    }
}
