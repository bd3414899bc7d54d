//! The 50,000-check month: its size on disk, how fast a fresh process starts on it and runs a
//! reconcile pass over its open checks, and how much memory that takes.
//!
//! The writer builds one month (2025-04) as a clinic's month looks at its end: N checks
//! captured with [`Store::capture`] (realistic `captured` payloads), then a `resolved` event
//! appended with [`Store::append`] to every check but 10, which stay open — about 2N events.
//! The bench's own [`Classifier`] (open until `resolved`, plus two counters) is used by
//! every process, as the daemon's would be. The writer then runs [`Store::maintain`] (month
//! documents caught up and compacted) and closes the store. Its own VmRSS along the way is
//! printed too (what a daemon that wrote the month itself would hold; not the target's
//! measure).
//!
//! Measured, each beside its target (DESIGN.md "Targets"):
//!
//! 1. Bytes on disk, split by part (segments, documents, index, keys, other), against the
//!    sealed records' bytes (the segments less their 32-byte headers). Target: total ≤ 2×.
//! 2. A fresh process (this binary re-executed with `--open DIR`, so its RSS is not the
//!    writer's), `RUNS` times: `Store::open` + listing the open checks of every month
//!    (target ≤ 300 ms); a reconcile-like pass over the 10 open checks — `check_info` +
//!    `check_events`, then one durable `append` each, one check after another and then all
//!    10 at once (target ≤ 20 ms); VmRSS/VmHWM after the pass (target ≤ 60 MB); then RSS
//!    with the month document loaded, labelled apart (sync loads it; a pass does not).
//! 3. `tsunagi pending` never decrypts the month: the open checks and their events read
//!    through the index, against reading the whole month with `events(month)`.
//!
//! Baselines for the ratios: the fresh process's RSS before it opens the store (memory), and
//! reading the whole month with `events(month)` in the same process (time). Each run appends
//! 20 events that keep their checks open, so every run finds the same 10 open checks.
//!
//! Env: `TSUNAGI_BENCH_DIR` (parent of the temp dir), `TSUNAGI_BENCH_CHECKS` (N, 50,000),
//! `TSUNAGI_BENCH_RUNS` (fresh processes, 5).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bench_parent, captured_payload, env_u64, mib, ms, ratio, verdict, BenchResult};
use tsunagi_sync::store::{CheckClass, Classifier, StoreConfig};
use tsunagi_sync::{Event, Month, Store};

/// Checks left open.
const OPEN: u64 = 10;
/// Concurrent writers while building the month (group commit makes this fast).
const WRITERS: usize = 32;
/// Start target: `Store::open` + the open checks listed.
const START_TARGET: Duration = Duration::from_millis(300);
/// Reconcile pass target with 10 open checks.
const PASS_TARGET: Duration = Duration::from_millis(20);
/// The daemon's memory budget (60 MB, decimal).
const RSS_TARGET: u64 = 60_000_000;
/// Size on disk target, as a multiple of the sealed records' bytes.
const DISK_TARGET: f64 = 2.0;

/// Counter bit: captured with face recognition.
const TAG_FACE: u32 = 1 << 0;
/// Counter bit: resolved as valid.
const TAG_VALID: u32 = 1 << 1;

/// The bench's classifier: a check is open until an event with `"kind": "resolved"`; it
/// counts face captures and valid resolutions. Every process of the bench uses it (a
/// different classifier version would make the index classify every check again at open).
#[derive(Debug, Clone, Copy, Default)]
struct BenchClassifier;

impl Classifier for BenchClassifier {
    fn version(&self) -> u32 {
        1
    }

    fn classify(&self, _check_id: &str, events: &[Event]) -> CheckClass {
        let mut class = CheckClass {
            open: true,
            tags: 0,
        };
        for e in events {
            if e.payload["type"] == "captured" && e.payload["method"] == "face" {
                class.tags |= TAG_FACE;
            }
            if e.payload["kind"] == "resolved" {
                class.open = false;
                if e.payload["result"] == "valid" {
                    class.tags |= TAG_VALID;
                }
            }
        }
        class
    }
}

fn config(dir: &Path) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    config.classifier = Arc::new(BenchClassifier);
    config
}

fn month() -> BenchResult<Month> {
    Month::new(2025, 4).ok_or_else(|| "bad month".into())
}

fn check_id(k: u64) -> String {
    format!("c{k:06}")
}

/// Whether check `k` of `n` stays open: 10 spread over the month.
fn stays_open(k: u64, n: u64) -> bool {
    let stride = (n / OPEN).max(1);
    k.is_multiple_of(stride) && k / stride < OPEN
}

fn runtime() -> BenchResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[derive(Debug, Clone, Copy)]
enum Write {
    Capture,
    Resolve,
}

/// Writes one event for each check number in `ks`, `WRITERS` at a time.
async fn write_all(store: &Store, month: Month, ks: Vec<u64>, what: Write) -> BenchResult<()> {
    let ks = Arc::new(ks);
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let (store, ks, next) = (store.clone(), ks.clone(), next.clone());
        set.spawn(async move {
            while let Some(&k) = ks.get(next.fetch_add(1, Ordering::Relaxed)) {
                let id = check_id(k);
                match what {
                    Write::Capture => store.capture(&id, month, captured_payload(k)).await?,
                    Write::Resolve => {
                        let payload = serde_json::json!({
                            "kind": "resolved",
                            "result": "valid",
                            "basis": "oqs",
                            "insurer": format!("06{:06}", k % 1_000_000),
                            "resolved_at": format!("2025-04-{:02}T10:00:00+09:00", 1 + k % 28),
                        });
                        store.append(&id, month, payload).await?
                    }
                };
            }
            BenchResult::Ok(())
        });
    }
    while let Some(joined) = set.join_next().await {
        joined??;
    }
    Ok(())
}

/// Bytes of the files of one part of the data directory.
#[derive(Debug, Clone, Copy, Default)]
struct Part {
    apparent: u64,
    allocated: u64,
    files: u64,
}

/// Every file under `dir`, by part: segments (`months/*/*.seg`), documents
/// (`months/*/doc.*`), index (`index/`), keys (`keys/`), other.
fn disk_parts(dir: &Path) -> BenchResult<BTreeMap<&'static str, Part>> {
    use std::os::unix::fs::MetadataExt;
    fn walk(
        path: &Path,
        out: &mut Vec<(std::path::PathBuf, std::fs::Metadata)>,
    ) -> BenchResult<()> {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(&entry.path(), out)?;
            } else {
                out.push((entry.path(), meta));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    let mut parts = BTreeMap::new();
    for name in ["segments", "documents", "index", "keys", "other"] {
        parts.insert(name, Part::default());
    }
    for (path, meta) in files {
        let rel = path.strip_prefix(dir)?;
        let top = rel.components().next().map(|c| c.as_os_str().to_owned());
        let file = rel
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let part = match top.as_deref().and_then(|t| t.to_str()) {
            Some("months") if file.ends_with(".seg") => "segments",
            Some("months") if file.starts_with("doc.") => "documents",
            Some("index") => "index",
            Some("keys") => "keys",
            _ => "other",
        };
        if let Some(p) = parts.get_mut(part) {
            p.apparent += meta.len();
            p.allocated += meta.blocks() * 512;
            p.files += 1;
        }
    }
    Ok(parts)
}

/// The writer: builds the month, maintains it, closes the store, measures the disk.
fn write_month(dir: &Path, n: u64) -> BenchResult<()> {
    let month = month()?;
    let runtime = runtime()?;
    let store = Store::open(&config(dir))?;
    let all: Vec<u64> = (0..n).collect();
    let resolve: Vec<u64> = all.iter().copied().filter(|&k| !stays_open(k, n)).collect();
    let resolved = resolve.len();

    let rss_open = common::rss()?.0;
    let t = Instant::now();
    runtime.block_on(write_all(&store, month, all, Write::Capture))?;
    let captured = t.elapsed();
    let rss_captured = common::rss()?.0;
    let t = Instant::now();
    runtime.block_on(write_all(&store, month, resolve, Write::Resolve))?;
    let appended = t.elapsed();
    let rss_appended = common::rss()?.0;
    let counts = store.counts(month)?;
    let t = Instant::now();
    let maintenance = store.maintain()?;
    let maintained = t.elapsed();
    let rss_maintained = common::rss()?.0;
    drop(store);
    drop(runtime);
    let (rss_closed, hwm) = common::rss()?;

    println!("write ({WRITERS} concurrent writers, 2 tokio workers):");
    println!(
        "  capture x{n}: {}  ({:.0} captures/s)",
        secs(captured),
        n as f64 / captured.as_secs_f64().max(1e-9)
    );
    println!(
        "  append 'resolved' x{resolved}: {}  ({:.0} appends/s)",
        secs(appended),
        resolved as f64 / appended.as_secs_f64().max(1e-9)
    );
    println!(
        "  maintain (documents caught up + compacted): {}  ({} event ids documented, {} compacted)",
        secs(maintained),
        maintenance.documented,
        maintenance.compacted
    );
    println!(
        "the month {month} holds {} checks, {} events, {} open; counters: face {}, resolved valid {}",
        counts.checks,
        counts.events,
        counts.open,
        counts.tags[0],
        counts.tags[1]
    );

    println!(
        "writer's VmRSS (a process that wrote the month itself; not the target's measure): open {} MiB, after captures {} MiB, after appends {} MiB, after maintain {} MiB, store closed {} MiB; VmHWM {} MiB",
        mib(rss_open),
        mib(rss_captured),
        mib(rss_appended),
        mib(rss_maintained),
        mib(rss_closed),
        mib(hwm)
    );

    let parts = disk_parts(dir)?;
    // The records' bytes: what the segments use (not the zeros filled ahead for appends),
    // less their headers.
    let (used, used_files) = common::segment_files(dir)?;
    let records = used.saturating_sub(used_files * common::SEGMENT_HEADER);
    let total_apparent: u64 = parts.values().map(|p| p.apparent).sum();
    let total_allocated: u64 = parts.values().map(|p| p.allocated).sum();
    println!();
    println!("1. bytes on disk (store closed, after maintain):");
    println!(
        "  {:<12} {:>6} {:>12} {:>12} {:>10}",
        "part", "files", "apparent MiB", "allocated MiB", "x records"
    );
    for (name, p) in &parts {
        println!(
            "  {name:<12} {:>6} {:>12} {:>12} {:>9.3}x",
            p.files,
            mib(p.apparent),
            mib(p.allocated),
            p.apparent as f64 / records.max(1) as f64
        );
    }
    println!(
        "  {:<12} {:>6} {:>12} {:>12}",
        "total",
        parts.values().map(|p| p.files).sum::<u64>(),
        mib(total_apparent),
        mib(total_allocated)
    );
    println!(
        "  sealed records' bytes (segments' used bytes less {}-byte headers; commit frames included): {} MiB = {:.0} B/event, {:.0} B/check",
        common::SEGMENT_HEADER,
        mib(records),
        records as f64 / counts.events.max(1) as f64,
        records as f64 / counts.checks.max(1) as f64
    );
    let worse = total_apparent.max(total_allocated);
    let r = worse as f64 / records.max(1) as f64;
    println!(
        "  total / records = {:.2}x apparent, {:.2}x allocated   (target <= {DISK_TARGET}x): {}",
        total_apparent as f64 / records.max(1) as f64,
        total_allocated as f64 / records.max(1) as f64,
        verdict(r <= DISK_TARGET)
    );
    Ok(())
}

/// One reconcile-like step for an open check: read it through the index, then append one
/// durable event that keeps it open (the qualification system did not answer).
/// Returns the time of the read and of the append.
async fn reconcile_one(store: &Store, month: Month, id: &str) -> BenchResult<(Duration, Duration)> {
    let t = Instant::now();
    let info = store
        .check_info(month, id)?
        .ok_or_else(|| format!("open check {id} has no index entry"))?;
    let events = store.check_events(month, id)?;
    if events.events.len() != info.events || !events.rejected.is_empty() {
        return Err(format!(
            "check {id}: index says {} events, read {} (+{} rejected)",
            info.events,
            events.events.len(),
            events.rejected.len()
        )
        .into());
    }
    let read = t.elapsed();
    let payload = serde_json::json!({
        "kind": "attempt",
        "result": "unreachable",
        "events_seen": info.events,
    });
    let t = Instant::now();
    store.append(id, month, payload).await?;
    Ok((read, t.elapsed()))
}

/// What one fresh process measured, printed as `@name value` lines for the parent.
#[derive(Debug, Default)]
struct Figures(Vec<(&'static str, f64)>);

impl Figures {
    fn ms(&mut self, name: &'static str, d: Duration) {
        self.0.push((name, d.as_secs_f64() * 1e3));
    }

    fn bytes(&mut self, name: &'static str, b: u64) {
        self.0.push((name, b as f64));
    }
}

/// The fresh process: open, list, reconcile pass, memory, then the whole month.
fn open_month(dir: &Path) -> BenchResult<()> {
    let runtime = runtime()?;
    let mut f = Figures::default();
    let (base, _) = common::rss()?;

    let t = Instant::now();
    let store = Store::open(&config(dir))?;
    let opened = t.elapsed();
    let t = Instant::now();
    let mut pending = Vec::new();
    for m in store.months()? {
        for id in store.open_checks(m)? {
            pending.push((m, id));
        }
    }
    let listed = t.elapsed();
    let (rss_started, _) = common::rss()?;

    // The pass, one check after another.
    let t = Instant::now();
    let mut read = Duration::ZERO;
    let mut appends = Vec::new();
    runtime.block_on(async {
        for (m, id) in &pending {
            let (r, a) = reconcile_one(&store, *m, id).await?;
            read += r;
            appends.push(a);
        }
        BenchResult::Ok(())
    })?;
    let pass = t.elapsed();
    let (rss_pass, hwm_pass) = common::rss()?;
    let append_stats = common::stats(&mut appends);

    // The same pass with every check at once: the appends share group commits.
    let t = Instant::now();
    runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (m, id) in pending.clone() {
            let store = store.clone();
            set.spawn(async move { reconcile_one(&store, m, &id).await });
        }
        while let Some(joined) = set.join_next().await {
            joined??;
        }
        BenchResult::Ok(())
    })?;
    let pass_concurrent = t.elapsed();

    // Sync's view: the month documents loaded (held by the store until `maintain`).
    let t = Instant::now();
    let mut documents = Vec::new();
    for m in store.months()? {
        documents.push(store.month_document(m)?);
    }
    let doc_time = t.elapsed();
    let doc_bytes: usize = documents.iter().map(Vec::len).sum();
    let (rss_doc, hwm_doc) = common::rss()?;
    drop(documents);

    // `tsunagi pending` against the whole month.
    let t = Instant::now();
    let mut pending_events = 0;
    for m in store.months()? {
        for id in store.open_checks(m)? {
            pending_events += store.check_events(m, &id)?.events.len();
        }
    }
    let pending_time = t.elapsed();
    let t = Instant::now();
    let mut month_events = 0;
    for m in store.months()? {
        month_events += store.events(m)?.events.len();
    }
    let whole = t.elapsed();
    let (rss_whole, hwm_whole) = common::rss()?;
    drop(store);

    println!(
        "fresh process: {} open checks found; RSS before opening {} MiB (the memory baseline)",
        pending.len(),
        mib(base)
    );
    println!(
        "  Store::open {} ms + list open checks {} ms = {} ms   (target <= {} ms)",
        ms(opened),
        ms(listed),
        ms(opened + listed),
        START_TARGET.as_millis()
    );
    println!(
        "  reconcile pass, one check after another: {} ms (reads: check_info + check_events {} ms; 10 durable appends the rest)   (target <= {} ms)",
        ms(pass),
        ms(read),
        PASS_TARGET.as_millis()
    );
    println!(
        "    its {} appends: median {} ms, max {} ms each",
        appends.len(),
        ms(append_stats.p50),
        ms(append_stats.max)
    );
    println!(
        "  reconcile pass, all {} checks at once:    {} ms",
        pending.len(),
        ms(pass_concurrent)
    );
    println!(
        "  RSS after open: {} MiB; after the pass: VmRSS {} MiB, VmHWM {} MiB (+{} MiB over the baseline)",
        mib(rss_started),
        mib(rss_pass),
        mib(hwm_pass),
        mib(hwm_pass.saturating_sub(base))
    );
    println!(
        "  month document (sync only, not the pass): {} KiB in {} ms; RSS with it held: VmRSS {} MiB, VmHWM {} MiB",
        doc_bytes / 1024,
        ms(doc_time),
        mib(rss_doc),
        mib(hwm_doc)
    );
    println!(
        "  pending (open_checks + check_events of {} checks, {pending_events} events): {} ms; whole month events(): {month_events} events in {} ms = {:.0}x",
        pending.len(),
        ms(pending_time),
        ms(whole),
        ratio(whole, pending_time)
    );
    println!(
        "  RSS after reading the whole month: VmRSS {} MiB, VmHWM {} MiB",
        mib(rss_whole),
        mib(hwm_whole)
    );

    f.ms("open", opened);
    f.ms("list", listed);
    f.ms("start", opened + listed);
    f.ms("read", read);
    f.ms("pass", pass);
    f.ms("append_p50", append_stats.p50);
    f.ms("pass_concurrent", pass_concurrent);
    f.ms("document", doc_time);
    f.ms("pending", pending_time);
    f.ms("whole", whole);
    f.bytes("open_checks", pending.len() as u64);
    f.bytes("base", base);
    f.bytes("rss_pass", rss_pass);
    f.bytes("hwm_pass", hwm_pass);
    f.bytes("rss_doc", rss_doc);
    f.bytes("hwm_doc", hwm_doc);
    f.bytes("hwm_whole", hwm_whole);
    for (name, v) in f.0 {
        println!("@{name} {v}");
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--open") {
        let dir = args.get(pos + 1).ok_or("--open needs a directory")?;
        return open_month(Path::new(dir));
    }
    let n = env_u64("TSUNAGI_BENCH_CHECKS", 50_000).max(OPEN);
    let runs = env_u64("TSUNAGI_BENCH_RUNS", 5).max(1);
    let tmp = tempfile::tempdir_in(bench_parent())?;
    let dir = tmp.path().join("store");
    println!(
        "month bench: {n} checks, {runs} fresh processes, dir {}",
        dir.display()
    );
    write_month(&dir, n)?;

    println!();
    println!("2./3. fresh processes (`--open`), run 1 in full:");
    let exe = std::env::current_exe()?;
    let mut figures: HashMap<String, Vec<f64>> = HashMap::new();
    for run in 0..runs {
        let out = std::process::Command::new(&exe)
            .arg("--open")
            .arg(&dir)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            print!("{text}");
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            return Err(format!("the --open process failed: {}", out.status).into());
        }
        for line in text.lines() {
            if let Some(fig) = line.strip_prefix('@') {
                let mut it = fig.split_whitespace();
                if let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse().ok())) {
                    figures.entry(k.to_string()).or_default().push(v);
                }
            } else if run == 0 {
                println!("{line}");
            }
        }
    }

    let mut get = |k: &str| -> (f64, f64) {
        let v = figures
            .get_mut(k)
            .map(|v| v.as_mut_slice())
            .unwrap_or(&mut []);
        let max = v.iter().copied().fold(0.0, f64::max);
        (median(v), max)
    };
    let mb = |b: f64| b / (1024.0 * 1024.0);
    let start_target = Some(START_TARGET.as_secs_f64() * 1e3);
    let pass_target = Some(PASS_TARGET.as_secs_f64() * 1e3);
    let rss_target = Some(RSS_TARGET as f64);

    println!();
    println!("summary over {runs} fresh processes:");
    println!(
        "  {:<50} {:>11} {:>11}   {:<13} verdict (on the max)",
        "", "median", "max", "target"
    );
    // (label, figure, whether it is a time (else bytes), target)
    let rows = [
        (
            "start: Store::open + list open checks",
            "start",
            true,
            start_target,
        ),
        ("  Store::open", "open", true, None),
        (
            "  list open checks (months, open_checks)",
            "list",
            true,
            None,
        ),
        (
            "reconcile pass, 10 checks one after another",
            "pass",
            true,
            pass_target,
        ),
        (
            "  of which reads (check_info + check_events)",
            "read",
            true,
            None,
        ),
        (
            "  median append of a pass (durable)",
            "append_p50",
            true,
            None,
        ),
        (
            "reconcile pass, 10 checks at once",
            "pass_concurrent",
            true,
            pass_target,
        ),
        (
            "pending: open_checks + check_events of the 10",
            "pending",
            true,
            None,
        ),
        (
            "whole month: events(month) (time baseline)",
            "whole",
            true,
            None,
        ),
        ("month document loaded (sync)", "document", true, None),
        ("RSS before opening (memory baseline)", "base", false, None),
        ("VmRSS after the pass", "rss_pass", false, rss_target),
        ("VmHWM after the pass", "hwm_pass", false, rss_target),
        (
            "VmRSS with the month document held (sync)",
            "rss_doc",
            false,
            None,
        ),
        (
            "VmHWM with the month document held (sync)",
            "hwm_doc",
            false,
            None,
        ),
        (
            "VmHWM after reading the whole month",
            "hwm_whole",
            false,
            None,
        ),
    ];
    for (label, key, time, target) in rows {
        let (med, max) = get(key);
        let (med, max, unit, target_text) = if time {
            (med, max, "ms", target.map(|t| format!("<= {t:.0} ms")))
        } else {
            (
                mb(med),
                mb(max),
                "MiB",
                target.map(|t| format!("<= {:.1} MiB", mb(t))),
            )
        };
        let met = target.map_or("", |t| verdict(if time { max <= t } else { mb(t) >= max }));
        let prec = if time { 3 } else { 1 };
        println!(
            "  {label:<50} {med:>8.prec$} {unit:<3}{max:>8.prec$} {unit:<3}   {:<13} {met}",
            target_text.unwrap_or_default()
        );
    }
    println!("  (the 60 MB target is {:.1} MiB)", mb(RSS_TARGET as f64));
    let (start, _) = get("start");
    let (pass, _) = get("pass");
    let (pending, _) = get("pending");
    let (whole, _) = get("whole");
    let (base, _) = get("base");
    let (hwm_pass, _) = get("hwm_pass");

    println!();
    println!("ratios (medians):");
    println!(
        "  VmHWM after the pass / RSS before opening          = {:.2}x ({:+.1} MiB)",
        hwm_pass / base.max(1.0),
        mb(hwm_pass - base)
    );
    println!(
        "  start / events(month)                              = {:.3}x",
        start / whole.max(1e-9)
    );
    println!(
        "  reconcile pass (one after another) / events(month) = {:.3}x",
        pass / whole.max(1e-9)
    );
    println!(
        "  events(month) / pending path                       = {:.0}x (pending never reads the month)",
        whole / pending.max(1e-9)
    );
    Ok(())
}
