//! The capture path, "card read done → acknowledged": [`Store::append_durable`] with a
//! realistic payload, against a plain 600-byte write + fsync on the same disk in the same run.
//!
//! Prints p50/p99 of sequential captures, the ratio p99(capture)/p99(fsync) (target ≤ 2×),
//! a split of where a capture's time goes (append vs flush), and 4 concurrent capturers to
//! show whether flushes are shared (group commit).
//!
//! A last case captures into a month that already holds a compacted snapshot (what every
//! capture pays after the month's first compaction).
//!
//! Env: `TSUNAGI_BENCH_DIR` (parent of the temp dirs), `TSUNAGI_BENCH_CAPTURES` (N, 2000),
//! `TSUNAGI_BENCH_PREFILL` (events in the compacted month, 10,000).

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{bench_parent, captured_payload, ms, stats, Stats};
use tsunagi_sync::store::StoreConfig;
use tsunagi_sync::{Month, Store};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const WARMUP: u64 = 20;
const CONCURRENT_TASKS: u64 = 4;

fn month() -> BenchResult<Month> {
    Month::new(2025, 4).ok_or_else(|| "bad month".into())
}

/// The baseline: create a small file, write 600 bytes, fsync it (`sync_all`).
fn fsync_baseline(dir: &Path, n: u64) -> BenchResult<Vec<Duration>> {
    let body = vec![b'x'; 600];
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let path = dir.join(format!("f{i}"));
        let t = Instant::now();
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&body)?;
        f.sync_all()?;
        out.push(t.elapsed());
    }
    Ok(out)
}

/// A second reference: append 600 bytes to one open file and `sync_data`, closer to what a
/// log-structured store does than creating a file each time.
fn append_fdatasync(dir: &Path, n: u64) -> BenchResult<Vec<Duration>> {
    let body = vec![b'y'; 600];
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))?;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&body)?;
        f.sync_data()?;
        out.push(t.elapsed());
    }
    Ok(out)
}

/// Bytes this process passed to write calls so far (`wchar` of /proc/self/io).
fn io_written() -> BenchResult<u64> {
    let io = std::fs::read_to_string("/proc/self/io")?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no wchar in /proc/self/io".into())
}

async fn warm_up(store: &Store, prefix: &str) -> BenchResult<()> {
    for i in 0..WARMUP {
        store
            .append_durable(
                &format!("{prefix}-w{i}"),
                month()?,
                captured_payload(1_000_000 + i),
            )
            .await?;
    }
    Ok(())
}

/// N sequential captures; returns the latencies and the wall time.
async fn sequential(store: &Store, n: u64) -> BenchResult<(Vec<Duration>, Duration)> {
    let month = month()?;
    let mut out = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for i in 0..n {
        let payload = captured_payload(i);
        let id = format!("c{i}");
        let t = Instant::now();
        store.append_durable(&id, month, payload).await?;
        out.push(t.elapsed());
    }
    Ok((out, start.elapsed()))
}

/// The same captures split in two steps, to see where the time goes.
async fn split(store: &Store, n: u64) -> BenchResult<(Vec<Duration>, Vec<Duration>)> {
    let month = month()?;
    let mut appends = Vec::with_capacity(n as usize);
    let mut flushes = Vec::with_capacity(n as usize);
    for i in 0..n {
        let payload = captured_payload(500_000 + i);
        let id = format!("s{i}");
        let s = store.clone();
        let t = Instant::now();
        tokio::task::spawn_blocking(move || s.append(&id, month, payload)).await??;
        appends.push(t.elapsed());
        let t = Instant::now();
        store.flush().await?;
        flushes.push(t.elapsed());
    }
    Ok((appends, flushes))
}

/// `tasks` capturers sharing one store, `per_task` captures each.
async fn concurrent(
    store: &Store,
    tasks: u64,
    per_task: u64,
) -> BenchResult<(Vec<Duration>, Duration)> {
    let month = month()?;
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(per_task as usize);
            for i in 0..per_task {
                let payload = captured_payload(t * 1_000_000 + i);
                let id = format!("t{t}-{i}");
                let at = Instant::now();
                store.append_durable(&id, month, payload).await?;
                out.push(at.elapsed());
            }
            BenchResult::Ok(out)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    Ok((all, start.elapsed()))
}

/// Fills a month with `prefill` events (append, one flush, compaction), as a month is after
/// its first compaction; then `n` sequential captures into it.
async fn prefilled(dir: &Path, prefill: u64, n: u64) -> BenchResult<(Vec<Duration>, Duration)> {
    let month = month()?;
    let store = Store::open(&StoreConfig::new(dir))?;
    let s = store.clone();
    tokio::task::spawn_blocking(move || -> BenchResult<()> {
        for i in 0..prefill {
            s.append(&format!("f{i}"), month, captured_payload(2_000_000 + i))?;
        }
        s.flush_blocking()?;
        s.compact(month)?;
        Ok(())
    })
    .await??;
    let start = Instant::now();
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let payload = captured_payload(3_000_000 + i);
        let t = Instant::now();
        store
            .append_durable(&format!("p{i}"), month, payload)
            .await?;
        out.push(t.elapsed());
    }
    Ok((out, start.elapsed()))
}

fn row(name: &str, n: usize, s: &Stats, per_sec: Option<f64>) {
    let rate = per_sec.map_or_else(|| "-".to_string(), |r| format!("{r:.0}"));
    println!(
        "{name:<44} {n:>6} {:>10} {:>10} {:>10} {rate:>9}",
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn main() -> BenchResult<()> {
    let n: u64 = std::env::var("TSUNAGI_BENCH_CAPTURES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let parent = bench_parent();
    let tmp = tempfile::tempdir_in(&parent)?;
    let base_dir = tmp.path().join("baseline");
    std::fs::create_dir_all(&base_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    println!("capture bench: N={n}, dir {}", tmp.path().display());

    // Baseline first, then the store, then the baseline again: a drift between the two
    // baseline passes means the disk's state changed during the run.
    let mut fsync1 = fsync_baseline(&base_dir, n)?;
    let mut fdatasync = append_fdatasync(&base_dir, n)?;

    let prefill: u64 = std::env::var("TSUNAGI_BENCH_PREFILL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let (
        mut seq,
        seq_wall,
        mut appends,
        mut flushes,
        mut conc,
        conc_wall,
        mut pre,
        pre_wall,
        pre_io,
    ) = runtime.block_on(async {
        let store = Store::open(&StoreConfig::new(&tmp.path().join("seq")))?;
        warm_up(&store, "seq").await?;
        let (seq, seq_wall) = sequential(&store, n).await?;
        let (appends, flushes) = split(&store, (n / 4).max(1)).await?;
        drop(store);

        let store = Store::open(&StoreConfig::new(&tmp.path().join("conc")))?;
        warm_up(&store, "conc").await?;
        let per_task = (n / CONCURRENT_TASKS).max(1);
        let (conc, conc_wall) = concurrent(&store, CONCURRENT_TASKS, per_task).await?;
        drop(store);

        let prefill_io = io_written()?;
        let (pre, pre_wall) =
            prefilled(&tmp.path().join("prefilled"), prefill, (n / 4).max(1)).await?;
        let prefill_io = io_written()?.saturating_sub(prefill_io);
        BenchResult::Ok((
            seq, seq_wall, appends, flushes, conc, conc_wall, pre, pre_wall, prefill_io,
        ))
    })?;

    let fsync2_dir = tmp.path().join("baseline2");
    std::fs::create_dir_all(&fsync2_dir)?;
    let mut fsync2 = fsync_baseline(&fsync2_dir, n)?;

    let f1 = stats(&mut fsync1);
    let f2 = stats(&mut fsync2);
    let fd = stats(&mut fdatasync);
    let s = stats(&mut seq);
    let a = stats(&mut appends);
    let fl = stats(&mut flushes);
    let c = stats(&mut conc);
    let p = stats(&mut pre);
    let pre_rate = pre.len() as f64 / pre_wall.as_secs_f64();
    let seq_rate = seq.len() as f64 / seq_wall.as_secs_f64();
    let conc_rate = conc.len() as f64 / conc_wall.as_secs_f64();

    println!();
    println!(
        "{:<44} {:>6} {:>10} {:>10} {:>10} {:>9}",
        "case", "n", "p50 ms", "p99 ms", "max ms", "ops/s"
    );
    row("baseline: create+write+fsync (1)", fsync1.len(), &f1, None);
    row("baseline: create+write+fsync (2)", fsync2.len(), &f2, None);
    row("ref: append 600 B + fdatasync", fdatasync.len(), &fd, None);
    row(
        "capture: append_durable, 1 task",
        seq.len(),
        &s,
        Some(seq_rate),
    );
    row("  split: append (spawn_blocking)", appends.len(), &a, None);
    row("  split: flush", flushes.len(), &fl, None);
    row(
        &format!("capture: append_durable, {CONCURRENT_TASKS} tasks"),
        conc.len(),
        &c,
        Some(conc_rate),
    );
    row(
        &format!("capture into compacted {prefill}-event month"),
        pre.len(),
        &p,
        Some(pre_rate),
    );
    println!(
        "  (prefill + compaction + those captures wrote {:.0} MiB in total, by /proc/self/io)",
        pre_io as f64 / (1024.0 * 1024.0)
    );
    println!();
    println!(
        "ratio p99(capture into compacted month)/p99(fsync baseline 1) = {:.2}x",
        ratio(p.p99, f1.p99)
    );
    println!(
        "ratio p99(capture)/p99(fsync baseline 1) = {:.2}x   (target <= 2x)",
        ratio(s.p99, f1.p99)
    );
    println!(
        "ratio p99(capture)/p99(fsync baseline 2) = {:.2}x",
        ratio(s.p99, f2.p99)
    );
    println!(
        "ratio p50(capture)/p50(fsync baseline 1) = {:.2}x",
        ratio(s.p50, f1.p50)
    );
    println!(
        "group commit: {CONCURRENT_TASKS} tasks {conc_rate:.0} ops/s vs 1 task {seq_rate:.0} ops/s = {:.2}x throughput; p99 {CONCURRENT_TASKS} tasks / p99 1 task = {:.2}x",
        conc_rate / seq_rate.max(1e-9),
        ratio(c.p99, s.p99)
    );
    Ok(())
}
