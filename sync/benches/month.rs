//! A month of checks: writes N `captured` events (default 50,000) with [`Store::append`] and
//! one flush, compacts, measures the size on disk, then re-executes itself with
//! `--open DIR N` so a fresh process (its RSS not polluted by the writer) times
//! `Store::open` + the first `events(month)` (load, decrypt and verify every event) and reads
//! its own VmRSS/VmHWM; the baseline is the fresh process's RSS before it opens the store.
//! Finally it times the per-event steps of `events()` on a sample, to show where time goes.
//!
//! Env: `TSUNAGI_BENCH_DIR` (parent of the temp dir), `TSUNAGI_BENCH_CHECKS` (N, 50,000).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{bench_parent, captured_payload, mib, ms};
use tsunagi_sync::hlc::Timestamp;
use tsunagi_sync::store::StoreConfig;
use tsunagi_sync::{seal, DeviceKey, Event, Month, SignedEvent, Store};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The daemon's memory budget with a full month open (design target).
const RSS_TARGET_MIB: f64 = 60.0;
const SAMPLE: usize = 5_000;
const POST_COMPACTION_CAPTURES: u64 = 20;

fn month() -> BenchResult<Month> {
    Month::new(2025, 4).ok_or_else(|| "bad month".into())
}

/// (VmRSS, VmHWM) of this process in bytes.
fn rss() -> BenchResult<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(r), Some(h)) => Ok((r, h)),
        _ => Err("no VmRSS/VmHWM in /proc/self/status".into()),
    }
}

/// (wchar, write_bytes) of this process from /proc/self/io: bytes passed to write calls,
/// and bytes sent to the block layer.
fn io_bytes() -> BenchResult<(u64, u64)> {
    let io = std::fs::read_to_string("/proc/self/io")?;
    let field = |name: &str| -> Option<u64> {
        io.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    match (field("wchar:"), field("write_bytes:")) {
        (Some(w), Some(b)) => Ok((w, b)),
        _ => Err("no wchar/write_bytes in /proc/self/io".into()),
    }
}

/// (apparent bytes, allocated bytes, files) under `dir`, recursively.
fn du(dir: &Path) -> BenchResult<(u64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0, 0);
    if !dir.exists() {
        return Ok(total);
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (a, b, c) = du(&entry.path())?;
            total = (total.0 + a, total.1 + b, total.2 + c);
        } else {
            total = (
                total.0 + meta.len(),
                total.1 + meta.blocks() * 512,
                total.2 + 1,
            );
        }
    }
    Ok(total)
}

/// Files of 1 MiB or more under `dir`, recursively.
fn big_files(dir: &Path) -> BenchResult<Vec<(std::path::PathBuf, u64)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            out.extend(big_files(&entry.path())?);
        } else if meta.len() >= 1024 * 1024 {
            out.push((entry.path(), meta.len()));
        }
    }
    out.sort();
    Ok(out)
}

/// A fresh process that loads the month's exported document with automerge alone, to
/// separate automerge's share of the memory from sled's and the store's.
fn automerge_only(file: &Path) -> BenchResult<()> {
    use automerge::ReadDoc;
    let (base, _) = rss()?;
    let bytes = std::fs::read(file)?;
    let (after_read, _) = rss()?;
    let t = Instant::now();
    let doc = automerge::AutoCommit::load(&bytes)?;
    let loaded = t.elapsed();
    let (after_load, _) = rss()?;
    let keys = doc.keys(automerge::ROOT).count();
    drop(bytes);
    let (after_drop, hwm) = rss()?;
    let delta = |x: u64| mib(x.saturating_sub(base));
    println!(
        "automerge alone, fresh process (AutoCommit::load of export_month, {keys} keys, {} ms):",
        ms(loaded)
    );
    println!(
        "  baseline {} MiB; bytes read +{} MiB; doc loaded +{} MiB; bytes dropped (doc held) +{} MiB; peak +{} MiB",
        mib(base),
        delta(after_read),
        delta(after_load),
        delta(after_drop),
        delta(hwm)
    );
    drop(doc);
    Ok(())
}

fn checks() -> u64 {
    std::env::var("TSUNAGI_BENCH_CHECKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The writer: N appends, one flush, compaction, size on disk.
fn write_month(dir: &Path, n: u64) -> BenchResult<()> {
    let month = month()?;
    let store = Store::open(&StoreConfig::new(dir))?;
    let start = Instant::now();
    let step = (n / 5).max(1);
    let mut last = Instant::now();
    let mut payload_bytes = 0u64;
    for i in 0..n {
        let payload = captured_payload(i);
        payload_bytes += serde_json::to_vec(&payload)?.len() as u64;
        store.append(&format!("c{i:06}"), month, payload)?;
        if (i + 1) % step == 0 {
            println!(
                "  appended {:>6}: last {step} took {} ({:.1} us/append)",
                i + 1,
                secs(last.elapsed()),
                last.elapsed().as_secs_f64() * 1e6 / step as f64
            );
            last = Instant::now();
        }
    }
    let appended = start.elapsed();
    let t = Instant::now();
    store.flush_blocking()?;
    let flushed = t.elapsed();
    let (before_a, before_b, _) = du(&dir.join("db"))?;
    let t = Instant::now();
    let compaction = store.compact(month)?;
    let compacted = t.elapsed();
    // A capture into a month that already has a compacted snapshot: what every capture
    // after the first compaction of the month pays.
    let (after_compact_a, after_compact_b, after_compact_files) = du(&dir.join("db"))?;
    let io_before = io_bytes()?;
    let mut post = Vec::new();
    for i in 0..POST_COMPACTION_CAPTURES {
        let t = Instant::now();
        store.append(&format!("p{i}"), month, captured_payload(n + i))?;
        store.flush_blocking()?;
        post.push(t.elapsed());
    }
    let io_after = io_bytes()?;
    let (post_a, _, _) = du(&dir.join("db"))?;
    let t = Instant::now();
    let exported = store.export_month(month)?.document;
    let export_time = t.elapsed();
    std::fs::write(dir.with_file_name("export.automerge"), &exported)?;
    drop(store);
    let (db_a, _, _) = du(&dir.join("db"))?;
    let (k_a, k_b, k_files) = du(&dir.join("keys"))?;
    println!(
        "write ({n} checks, avg payload {} B JSON):",
        payload_bytes / n.max(1)
    );
    println!(
        "  append x{n}: {}  ({:.1} us/append, {:.0} appends/s)",
        secs(appended),
        appended.as_secs_f64() * 1e6 / n.max(1) as f64,
        n as f64 / appended.as_secs_f64()
    );
    println!("  flush:        {}", secs(flushed));
    println!(
        "  compact:      {}  ({} chunks -> snapshot of {} MiB)",
        secs(compacted),
        compaction.chunks,
        mib(compaction.snapshot_bytes as u64)
    );
    println!("  total write:  {}", secs(appended + flushed + compacted));
    println!("size on disk:");
    println!(
        "  db/ before compaction: {} MiB apparent, {} MiB allocated",
        mib(before_a),
        mib(before_b)
    );
    println!(
        "  db/ after compaction:  {} MiB apparent, {} MiB allocated ({after_compact_files} files)",
        mib(after_compact_a),
        mib(after_compact_b)
    );
    let post_stats = common::stats(&mut post);
    println!(
        "  after {POST_COMPACTION_CAPTURES} more captures (append + flush, durable) into the compacted month: db/ {} MiB apparent; capture p50 {} ms, max {} ms",
        mib(post_a),
        ms(post_stats.p50),
        ms(post_stats.max)
    );
    println!(
        "    bytes written by the process during those {POST_COMPACTION_CAPTURES} captures: {} MiB (write(2): {} MiB) = {:.0} KiB per capture",
        mib(io_after.1.saturating_sub(io_before.1)),
        mib(io_after.0.saturating_sub(io_before.0)),
        io_after.0.saturating_sub(io_before.0) as f64 / 1024.0 / POST_COMPACTION_CAPTURES as f64
    );
    println!("  db/ files of 1 MiB or more (after the store is closed):");
    for (path, len) in big_files(&dir.join("db"))? {
        let shown = path.strip_prefix(dir).unwrap_or(&path);
        println!("    {:<40} {:>8} MiB", shown.display(), mib(len));
    }
    println!(
        "  export_month: {} MiB in {} ms",
        mib(exported.len() as u64),
        ms(export_time)
    );
    println!("  keys/:                 {k_a} B apparent, {k_b} B allocated ({k_files} files)");
    println!(
        "  db/ + keys/ = {} MiB apparent ({:.0} B/check; payload JSON is {:.0} B/check); snapshot alone {:.0} B/check",
        mib(db_a + k_a),
        (db_a + k_a) as f64 / n.max(1) as f64,
        payload_bytes as f64 / n.max(1) as f64,
        compaction.snapshot_bytes as f64 / n.max(1) as f64
    );
    Ok(())
}

/// The fresh process: open, load, first `events()`, RSS at each step.
fn open_month(dir: &Path, n: u64) -> BenchResult<()> {
    let month = month()?;
    let (base, _) = rss()?;
    let t = Instant::now();
    let store = Store::open(&StoreConfig::new(dir))?;
    let opened = t.elapsed();
    let (after_open, _) = rss()?;
    // event_count loads the month's document (snapshot + automerge load) without decoding.
    let t = Instant::now();
    let count = store.event_count(month)?;
    let loaded = t.elapsed();
    let (after_load, _) = rss()?;
    // The daemon's path: the check index built one event at a time, then each check read
    // alone (as the ledger folds a month), never holding the whole month's events.
    let t = Instant::now();
    let ids = store.check_ids(month)?;
    let indexed = t.elapsed();
    let t = Instant::now();
    let mut streamed = 0usize;
    for id in &ids {
        streamed += store.check_events(month, id)?.events.len();
    }
    let per_check = t.elapsed();
    let (after_stream, hwm_stream) = rss()?;
    println!(
        "streaming (the daemon's path): index of {} checks {} ms, then {} events read check by check {} ms; RSS {} MiB (delta {} MiB), peak {} MiB",
        ids.len(),
        ms(indexed),
        streamed,
        ms(per_check),
        mib(after_stream),
        mib(after_stream.saturating_sub(base)),
        mib(hwm_stream)
    );
    drop(ids);
    let t = Instant::now();
    let events = store.events(month)?;
    let read = t.elapsed();
    let (after_events, hwm_events) = rss()?;
    let accepted = events.events.len();
    let rejected = events.rejected.len();
    drop(events);
    let (after_drop, hwm) = rss()?;
    let total = opened + loaded + read;
    let delta = |x: u64| x.saturating_sub(base);
    println!("fresh process (--open): {count} events in the document, {accepted} accepted, {rejected} rejected (expected {n})");
    println!("  Store::open:                 {:>9} ms", ms(opened));
    println!("  load month document:         {:>9} ms", ms(loaded));
    println!(
        "  events() decrypt+verify all: {:>9} ms  ({:.1} us/event)",
        ms(read),
        read.as_secs_f64() * 1e6 / accepted.max(1) as f64
    );
    println!("  open + first events(), total:{:>9} ms", ms(total));
    println!(
        "RSS (baseline = fresh process before opening: {} MiB):",
        mib(base)
    );
    println!(
        "  {:<38} {:>8} MiB   delta {:>8} MiB",
        "after Store::open",
        mib(after_open),
        mib(delta(after_open))
    );
    println!(
        "  {:<38} {:>8} MiB   delta {:>8} MiB",
        "after loading the month document",
        mib(after_load),
        mib(delta(after_load))
    );
    println!(
        "  {:<38} {:>8} MiB   delta {:>8} MiB",
        "after events(), result held",
        mib(after_events),
        mib(delta(after_events))
    );
    println!(
        "  {:<38} {:>8} MiB   delta {:>8} MiB",
        "after dropping the result",
        mib(after_drop),
        mib(delta(after_drop))
    );
    println!(
        "  {:<38} {:>8} MiB   delta {:>8} MiB   (VmHWM during events(): {} MiB)",
        "peak (VmHWM)",
        mib(hwm),
        mib(delta(hwm)),
        mib(hwm_events)
    );
    let peak_mib = hwm as f64 / (1024.0 * 1024.0);
    println!(
        "  target: RSS <= {RSS_TARGET_MIB:.0} MiB with the month open -> peak {peak_mib:.1} MiB = {:.2}x target: {}",
        peak_mib / RSS_TARGET_MIB,
        if peak_mib <= RSS_TARGET_MIB { "MET" } else { "NOT MET" }
    );
    drop(store);
    Ok(())
}

/// Times, on a sample, each step `events()` runs per event: AEAD open, parse of the stored
/// form, and verify (ed25519 + JSON parse of the body).
fn per_event_costs(n_total: u64) -> BenchResult<()> {
    let month = month()?;
    let device = DeviceKey::generate();
    let key = [7u8; 32];
    let mut sealed = Vec::with_capacity(SAMPLE);
    for i in 0..SAMPLE as u64 {
        let event = Event {
            check_id: format!("c{i:06}"),
            month,
            at: Timestamp {
                wall_ms: month.start_ms() + i * 1000,
                counter: 0,
            },
            device: device.id().clone(),
            payload: captured_payload(i),
        };
        let signed = SignedEvent::sign(&event, &device)?;
        let id = signed.id();
        sealed.push((
            id.0.clone(),
            seal::seal(&key, id.0.as_bytes(), &signed.to_bytes()),
        ));
    }
    let stored_len: usize = sealed.iter().map(|(_, s)| s.len()).sum();

    let t = Instant::now();
    let mut plains = Vec::with_capacity(SAMPLE);
    for (id, s) in &sealed {
        plains.push(seal::open(&key, id.as_bytes(), s)?);
    }
    let open = t.elapsed();
    let t = Instant::now();
    let mut signeds = Vec::with_capacity(SAMPLE);
    for p in &plains {
        signeds.push(SignedEvent::from_bytes(p)?);
    }
    let parse = t.elapsed();
    let t = Instant::now();
    for s in &signeds {
        let _ = s.id();
    }
    let id = t.elapsed();
    let t = Instant::now();
    let mut events = Vec::with_capacity(SAMPLE);
    for s in &signeds {
        events.push(s.verify()?);
    }
    let verify = t.elapsed();

    let per = |d: Duration| d.as_secs_f64() * 1e6 / SAMPLE as f64;
    let sum = per(open) + per(parse) + per(id) + per(verify);
    println!(
        "per-event cost of events() steps (sample of {SAMPLE}, sealed event {} B):",
        stored_len / SAMPLE
    );
    for (name, d) in [
        ("seal::open (XChaCha20-Poly1305)", open),
        ("SignedEvent::from_bytes (JSON+b64)", parse),
        ("SignedEvent::id (SHA-256)", id),
        ("verify (ed25519 + body JSON)", verify),
    ] {
        println!(
            "  {name:<36} {:>7.1} us/event  ({:>4.0}% of steps)",
            per(d),
            100.0 * per(d) / sum
        );
    }
    println!(
        "  sum of steps {sum:.1} us/event -> {:.0} ms for {n_total} events (compare events() above; the rest is automerge reads, copies and the sort)",
        sum * n_total as f64 / 1e3
    );
    Ok(())
}

fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--open") {
        let dir = args.get(pos + 1).ok_or("--open needs a directory")?;
        let n = args
            .get(pos + 2)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(checks);
        return open_month(Path::new(dir), n);
    }
    if let Some(pos) = args.iter().position(|a| a == "--automerge") {
        let file = args.get(pos + 1).ok_or("--automerge needs a file")?;
        return automerge_only(Path::new(file));
    }
    let n = checks();
    let tmp = tempfile::tempdir_in(bench_parent())?;
    let dir = tmp.path().join("store");
    println!("month bench: {n} checks, dir {}", dir.display());
    write_month(&dir, n)?;

    let exe = std::env::current_exe()?;
    let t = Instant::now();
    let out = std::process::Command::new(exe)
        .arg("--open")
        .arg(&dir)
        .arg(n.to_string())
        .output()?;
    let child_wall = t.elapsed();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        return Err(format!("the --open process failed: {}", out.status).into());
    }
    println!(
        "  (fresh process wall time incl. exec and exit: {} ms)",
        ms(child_wall)
    );
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("--automerge")
        .arg(tmp.path().join("export.automerge"))
        .output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        return Err(format!("the --automerge process failed: {}", out.status).into());
    }
    per_event_costs(n)?;
    Ok(())
}
