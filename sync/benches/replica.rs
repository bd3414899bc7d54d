//! Sync between two devices over real QUIC on loopback, with the code tsunagid runs per peer
//! ([`Link::run`] over [`Endpoint`] connections pinned to each other's keys).
//!
//! Targets (DESIGN.md "Targets", issue 12 "Benchmarks"):
//!
//! 1. **A new device receives a 50,000-check month** in ≤ 5 s on loopback, with ≤ 1.2× the
//!    month's size at rest on the wire. Device A holds one month (2025-04) of N captured
//!    checks (realistic `captured` payloads, written by 32 concurrent tasks), its document
//!    compacted as at rest ([`Store::compact_document`]) and the store reopened, so nothing
//!    is loaded. Device B is empty. Each binds an [`Endpoint`] on 127.0.0.1:0 whose
//!    [`Allowlist`] holds the other; B dials A; both run [`Link::run`] with a fresh
//!    [`Session`]. Timed from the dial until B holds every record: both sessions report
//!    `behind() == 0`, B's session received N records, and B's index counts as many events
//!    as A's and names no missing record. Bytes on the wire: quinn's UDP counters
//!    (`Connection::stats()`), A's sent plus B's sent (each datagram once; the received
//!    counters are printed as a cross-check), handshake included. Size at rest: the month's
//!    sealed records (the segments' used bytes less their headers) plus its compacted
//!    document (`doc.snapshot`). Baseline in the same run: the same files' bytes (segments +
//!    snapshot) copied over one plain TCP connection on loopback. `RUNS` runs, a fresh B
//!    each time; medians printed.
//! 2. **One new check on a connected peer**: p99 ≤ 50 ms from the start of the capture on A
//!    until B's link reports records received (its `on_received` callback, timestamped
//!    there), checked against B's index afterwards. The pair is the one the last run of (1)
//!    left connected and in sync. Each check: capture on A, then bump A's link's `changed`
//!    watch (what tsunagid does after a local write). Baseline in the same run: the capture
//!    alone (durable, fdatasync) on A, from the same iterations.
//!
//! 3. **Where the time goes** (not a target): the exchange of (1) again between A and a
//!    fresh device, in memory (no QUIC), one message at a time, each side's
//!    `Session::receive` timed and its messages' bytes counted by kind (hello, keys, month
//!    document, small documents, want, records).
//!
//! Env: `TSUNAGI_BENCH_DIR` (parent of the temp dir), `TSUNAGI_BENCH_CHECKS` (N, 50,000),
//! `TSUNAGI_BENCH_RUNS` (runs of (1), 3), `TSUNAGI_BENCH_LATENCY` (checks of (2), 200),
//! `TSUNAGI_BENCH_BREAKDOWN` (0 skips (3)).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    bench_parent, captured_payload, env_u64, mib, ms, stats, verdict, BenchResult, Stats,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify};
use tsunagi_sync::net::{Allowlist, Endpoint, PeerConnection};
use tsunagi_sync::replica::link::{Link, LinkError};
use tsunagi_sync::replica::{Host, Message, Session};
use tsunagi_sync::store::StoreConfig;
use tsunagi_sync::{Month, SharedDoc, Store, StoreError};

/// Writers of the prefill (group commit makes 50,000 captures take seconds).
const WRITERS: u64 = 32;
/// Target: a new device receives the month in this time.
const FULL_TARGET: Duration = Duration::from_secs(5);
/// Target: bytes on the wire over the month's size at rest.
const WIRE_TARGET: f64 = 1.2;
/// Target: p99 of one new check until the peer has it.
const LATENCY_TARGET: Duration = Duration::from_millis(50);
/// A run that takes longer than this failed.
const GIVE_UP: Duration = Duration::from_secs(300);

/// The test host: ends no month.
struct KeepAll;

impl Host for KeepAll {
    fn purge_month(&self, _store: &Store, _month: Month) -> Result<bool, StoreError> {
        Ok(false)
    }
}

fn month() -> BenchResult<Month> {
    Month::new(2025, 4).ok_or_else(|| "bad month".into())
}

fn runtime() -> BenchResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn any_port() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Captures checks `0..n` of `month`, `WRITERS` tasks at a time.
async fn prefill(store: &Store, month: Month, n: u64) -> BenchResult<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let (store, next) = (store.clone(), next.clone());
        set.spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    return BenchResult::Ok(());
                }
                store
                    .capture(&format!("c{k:06}"), month, captured_payload(k))
                    .await?;
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        joined??;
    }
    Ok(())
}

/// The month's files at rest: (sealed records' bytes, segment files' used bytes, their
/// contents, snapshot bytes, changes bytes).
struct AtRest {
    records: u64,
    segments_used: u64,
    snapshot: u64,
    changes: u64,
    /// The bytes of the segments (used part) and the snapshot, for the TCP baseline.
    contents: Vec<u8>,
}

fn at_rest(dir: &Path, month: Month) -> BenchResult<AtRest> {
    let (used, files) = common::segment_files(dir)?;
    let mdir = dir.join("months").join(month.to_string());
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let snapshot = size(mdir.join("doc.snapshot"));
    let changes = size(mdir.join("doc.changes"));
    let mut contents = Vec::new();
    for f in std::fs::read_dir(&mdir)? {
        let path = f?.path();
        if path.extension().is_some_and(|e| e == "seg") {
            let bytes = std::fs::read(&path)?;
            let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
            contents.extend_from_slice(&bytes[..end]);
        }
    }
    contents.extend_from_slice(&std::fs::read(mdir.join("doc.snapshot"))?);
    Ok(AtRest {
        records: used.saturating_sub(files * common::SEGMENT_HEADER),
        segments_used: used,
        snapshot,
        changes,
        contents,
    })
}

/// What a side's observer saw last.
#[derive(Default)]
struct Seen {
    behind: AtomicUsize,
    records_in: AtomicU64,
    steps: AtomicU64,
}

/// One side of a connected pair.
struct Side {
    store: Store,
    endpoint: Endpoint,
    conn: PeerConnection,
    link: Arc<Link>,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<Result<(), LinkError>>,
}

/// A connected pair: A serves, B dialled.
struct Pair {
    a: Side,
    b: Side,
    /// Stops both links.
    stop: watch::Sender<bool>,
    /// Any observer saw a step.
    stepped: Arc<Notify>,
    /// When B's link reported records received.
    b_received: mpsc::UnboundedReceiver<Instant>,
}

impl Pair {
    fn synced(&self) -> bool {
        self.a.seen.steps.load(Ordering::SeqCst) > 0
            && self.b.seen.steps.load(Ordering::SeqCst) > 0
            && self.a.seen.behind.load(Ordering::SeqCst) == 0
            && self.b.seen.behind.load(Ordering::SeqCst) == 0
    }

    async fn close(self) -> BenchResult<()> {
        let _ = self.stop.send(true);
        for side in [self.a, self.b] {
            match tokio::time::timeout(Duration::from_secs(10), side.task).await {
                // Whichever side closes first, the other may see the connection lost.
                Ok(Ok(Ok(()) | Err(LinkError::Connection(_)))) => {}
                Ok(Ok(Err(e))) => return Err(format!("a link failed: {e}").into()),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err("a link did not stop".into()),
            }
            side.endpoint.close().await;
        }
        Ok(())
    }
}

fn link(
    store: &Store,
    stopping: watch::Receiver<bool>,
    seen: Arc<Seen>,
    stepped: Arc<Notify>,
    received: Option<mpsc::UnboundedSender<Instant>>,
) -> Arc<Link> {
    let (changed, _) = watch::channel(0u64);
    Arc::new(Link {
        store: store.clone(),
        changed,
        stopping,
        observe: Arc::new(move |s: &Session| {
            seen.behind.store(s.behind(), Ordering::SeqCst);
            seen.records_in
                .store(s.stats().records_in, Ordering::SeqCst);
            seen.steps.fetch_add(1, Ordering::SeqCst);
            stepped.notify_one();
        }),
        on_received: Arc::new(move || {
            let at = Instant::now();
            if let Some(tx) = &received {
                let _ = tx.send(at);
            }
        }),
    })
}

fn run_link(
    link: Arc<Link>,
    conn: PeerConnection,
    initiator: bool,
) -> tokio::task::JoinHandle<Result<(), LinkError>> {
    tokio::spawn(async move {
        let session = Session::new(conn.peer.clone(), Arc::new(KeepAll));
        link.run(&conn, initiator, session).await.map(|_| ())
    })
}

/// Binds both endpoints, B dials A, both links start. Returns the pair and the instant the
/// dial started.
async fn connect(a: &Store, b: &Store) -> BenchResult<(Pair, Instant)> {
    let (a_id, b_id) = (a.device().id().clone(), b.device().id().clone());
    let a_ep = Endpoint::bind(any_port(), a.device(), [b_id].into_iter().collect())?;
    let b_ep = Endpoint::bind(any_port(), b.device(), Allowlist::new())?;
    b_ep.allowlist().add(a_id.clone());
    let a_addr = a_ep.local_addr()?;
    let (stop, stopping) = watch::channel(false);
    let stepped = Arc::new(Notify::new());
    let (tx, b_received) = mpsc::unbounded_channel();
    let (a_seen, b_seen) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
    let a_link = link(a, stopping.clone(), a_seen.clone(), stepped.clone(), None);
    let b_link = link(b, stopping, b_seen.clone(), stepped.clone(), Some(tx));

    let start = Instant::now();
    let (accepted, dialled) = tokio::join!(a_ep.accept(), b_ep.connect(a_addr, &a_id));
    let a_conn = accepted.ok_or("A's endpoint closed")??;
    let b_conn = dialled?;
    let a_task = run_link(a_link.clone(), a_conn.clone(), false);
    let b_task = run_link(b_link.clone(), b_conn.clone(), true);
    Ok((
        Pair {
            a: Side {
                store: a.clone(),
                endpoint: a_ep,
                conn: a_conn,
                link: a_link,
                seen: a_seen,
                task: a_task,
            },
            b: Side {
                store: b.clone(),
                endpoint: b_ep,
                conn: b_conn,
                link: b_link,
                seen: b_seen,
                task: b_task,
            },
            stop,
            stepped,
            b_received,
        },
        start,
    ))
}

/// Whether B's index holds as many events of `month` as A's and misses none its document
/// names.
async fn b_holds_all(pair: &Pair, month: Month, events: u64) -> BenchResult<bool> {
    let b = pair.b.store.clone();
    let (count, missing) = tokio::task::spawn_blocking(move || {
        Ok::<_, StoreError>((b.counts(month)?.events, b.missing_records(month)?.len()))
    })
    .await??;
    Ok(count == events && missing == 0)
}

/// One run of (1).
struct Full {
    time: Duration,
    /// Datagram bytes A sent, B sent, A received, B received.
    udp: [u64; 4],
    datagrams: u64,
    records_in: u64,
}

async fn new_device(a: &Store, b: &Store, month: Month, n: u64) -> BenchResult<(Full, Pair)> {
    let a_events = a.counts(month)?.events;
    let (pair, start) = connect(a, b).await?;
    loop {
        let wait = tokio::time::timeout(Duration::from_millis(100), pair.stepped.notified());
        let _ = wait.await;
        if start.elapsed() > GIVE_UP {
            return Err(format!(
                "B did not receive the month within {GIVE_UP:?}: B received {} records, behind A {} B {}",
                pair.b.seen.records_in.load(Ordering::SeqCst),
                pair.a.seen.behind.load(Ordering::SeqCst),
                pair.b.seen.behind.load(Ordering::SeqCst),
            )
            .into());
        }
        if pair.a.task.is_finished() || pair.b.task.is_finished() {
            return Err("a link ended during the sync".into());
        }
        if pair.b.seen.records_in.load(Ordering::SeqCst) >= n
            && pair.synced()
            && b_holds_all(&pair, month, a_events).await?
        {
            break;
        }
    }
    let time = start.elapsed();
    let (sa, sb) = (
        pair.a.conn.connection.stats(),
        pair.b.conn.connection.stats(),
    );
    let full = Full {
        time,
        udp: [
            sa.udp_tx.bytes,
            sb.udp_tx.bytes,
            sa.udp_rx.bytes,
            sb.udp_rx.bytes,
        ],
        datagrams: sa.udp_tx.datagrams + sb.udp_tx.datagrams,
        records_in: pair.b.seen.records_in.load(Ordering::SeqCst),
    };
    Ok((full, pair))
}

/// The baseline of (1): `bytes` over one plain TCP connection on loopback, from connect
/// until the receiver read the last byte.
async fn tcp_copy(bytes: Arc<Vec<u8>>) -> BenchResult<Duration> {
    let listener = tokio::net::TcpListener::bind(any_port()).await?;
    let addr = listener.local_addr()?;
    let expected = bytes.len();
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = Vec::with_capacity(expected);
        s.read_to_end(&mut buf).await?;
        BenchResult::Ok(buf.len())
    });
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(&bytes).await?;
    s.shutdown().await?;
    let got = receiver.await??;
    let time = start.elapsed();
    if got != expected {
        return Err(format!("TCP copy: sent {expected} bytes, received {got}").into());
    }
    Ok(time)
}

/// (2): `count` checks captured on A, each until B has it. Returns (capture start →
/// received on B, capture alone, capture done → received on B).
async fn one_check(
    pair: &mut Pair,
    month: Month,
    count: u64,
) -> BenchResult<(Vec<Duration>, Vec<Duration>, Vec<Duration>)> {
    let (mut total, mut capture, mut after) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..count {
        // Quiet first: both sides in sync, nothing queued from the previous check.
        let quiet = Instant::now();
        while !pair.synced() && quiet.elapsed() < Duration::from_secs(5) {
            let _ = tokio::time::timeout(Duration::from_millis(10), pair.stepped.notified()).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        while pair.b_received.try_recv().is_ok() {}

        let id = format!("new{i:06}");
        let payload = captured_payload(1_000_000 + i);
        let t0 = Instant::now();
        pair.a.store.capture(&id, month, payload).await?;
        let t1 = Instant::now();
        pair.a.link.changed.send_modify(|n| *n += 1);
        loop {
            let at = tokio::time::timeout(Duration::from_secs(10), pair.b_received.recv())
                .await
                .map_err(|_| format!("check {id} did not reach B within 10 s"))?
                .ok_or("B's link ended")?;
            let b = pair.b.store.clone();
            let id2 = id.clone();
            let has = tokio::task::spawn_blocking(move || b.check_info(month, &id2)).await??;
            if has.is_some() {
                total.push(at - t0);
                capture.push(t1 - t0);
                after.push(at.saturating_duration_since(t1));
                break;
            }
        }
    }
    Ok((total, capture, after))
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "hello",
        Message::Keys { .. } => "keys",
        Message::Doc {
            doc: SharedDoc::Month(_),
            ..
        } => "doc(month)",
        Message::Doc { .. } => "doc(small)",
        Message::Want { .. } => "want",
        Message::Records { .. } => "records",
    }
}

/// Per (receiving side, message kind): messages, bytes, time in `Session::receive`.
type Tally = std::collections::BTreeMap<(char, &'static str), (u64, u64, Duration, Duration)>;

/// One message received by `side`, timed into `tally`.
fn step(
    tally: &mut Tally,
    side: char,
    session: &mut Session,
    store: &Store,
    m: Message,
) -> BenchResult<Vec<Message>> {
    let k = kind(&m);
    let bytes = m.encode();
    let t = Instant::now();
    let (reply, refused) = session.receive(store, &bytes)?;
    let took = t.elapsed();
    if let Some(r) = refused.first() {
        return Err(format!("{side} refused: {}", r.what).into());
    }
    let e = tally.entry((side, k)).or_default();
    e.0 += 1;
    e.1 += bytes.len() as u64;
    e.2 += took;
    e.3 = e.3.max(took);
    Ok(reply)
}

/// (3) Where the time goes: the same exchange between a fresh B and A, in memory (no
/// QUIC), one message at a time, each side's `Session::receive` timed by message kind.
fn breakdown(a: &Store, b: &Store) -> BenchResult<(Tally, Duration, Duration)> {
    let start = Instant::now();
    let mut sa = Session::new(b.device().id().clone(), Arc::new(KeepAll));
    let mut sb = Session::new(a.device().id().clone(), Arc::new(KeepAll));
    let t = Instant::now();
    let mut to_b: std::collections::VecDeque<Message> = sa.start(a)?.into();
    let mut to_a: std::collections::VecDeque<Message> = sb.start(b)?.into();
    let starts = t.elapsed();
    let mut tally = Tally::new();
    while !to_a.is_empty() || !to_b.is_empty() {
        if let Some(m) = to_a.pop_front() {
            to_b.extend(step(&mut tally, 'A', &mut sa, a, m)?);
        }
        if let Some(m) = to_b.pop_front() {
            to_a.extend(step(&mut tally, 'B', &mut sb, b, m)?);
        }
    }
    Ok((tally, starts, start.elapsed()))
}

fn median_d(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn median_u(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn row(name: &str, s: &Stats) {
    println!(
        "  {name:<44} p50 {:>9} ms  p99 {:>9} ms  max {:>9} ms",
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
}

fn main() -> BenchResult<()> {
    let n = env_u64("TSUNAGI_BENCH_CHECKS", 50_000).max(1);
    let runs = env_u64("TSUNAGI_BENCH_RUNS", 3).max(1);
    let latency_n = env_u64("TSUNAGI_BENCH_LATENCY", 200).max(1);
    let month = month()?;
    let tmp = tempfile::tempdir_in(bench_parent())?;
    let a_dir = tmp.path().join("a");
    println!(
        "replica bench: {n} checks, {runs} runs, {latency_n} single checks, dir {}",
        tmp.path().display()
    );
    let rt = runtime()?;

    // Device A: the month, captured, its document compacted, the store closed.
    {
        let a = Store::open(&StoreConfig::new(&a_dir))?;
        let t = Instant::now();
        rt.block_on(prefill(&a, month, n))?;
        let filled = t.elapsed();
        let t = Instant::now();
        let snapshot = a.compact_document(month)?;
        let compacted = t.elapsed();
        a.maintain()?;
        println!(
            "A: {n} checks captured by {WRITERS} tasks in {:.1} s; document compacted in {} ms ({} KiB)",
            filled.as_secs_f64(),
            ms(compacted),
            snapshot / 1024
        );
    }
    let rest = at_rest(&a_dir, month)?;
    let at_rest_bytes = rest.records + rest.snapshot;
    println!(
        "month {month} at rest: sealed records {} B ({} MiB; segments' used bytes {} B) + doc.snapshot {} B ({} KiB) = {} B ({} MiB); doc.changes {} B",
        rest.records,
        mib(rest.records),
        rest.segments_used,
        rest.snapshot,
        rest.snapshot / 1024,
        at_rest_bytes,
        mib(at_rest_bytes),
        rest.changes
    );
    let contents = Arc::new(rest.contents);

    // (1) runs, a fresh B each time; the last pair stays connected for (2).
    println!();
    println!("1. a new device receives the month (B dials A; Link::run on both; real QUIC on 127.0.0.1):");
    let mut fulls = Vec::new();
    let mut tcps = Vec::new();
    let mut kept = None;
    for run in 0..runs {
        let a = Store::open(&StoreConfig::new(&a_dir))?;
        let b = Store::open(&StoreConfig::new(&tmp.path().join(format!("b{run}"))))?;
        let (full, pair) = rt.block_on(new_device(&a, &b, month, n))?;
        let tcp = rt.block_on(tcp_copy(contents.clone()))?;
        let wire = full.udp[0] + full.udp[1];
        println!(
            "  run {}: {} ms; wire {} B ({} MiB, {} datagrams; A sent {} B, B sent {} B; received A {} B, B {} B) = {:.3}x at rest; B received {} records; TCP copy of {} MiB: {} ms",
            run + 1,
            ms(full.time),
            wire,
            mib(wire),
            full.datagrams,
            full.udp[0],
            full.udp[1],
            full.udp[2],
            full.udp[3],
            wire as f64 / at_rest_bytes.max(1) as f64,
            full.records_in,
            mib(contents.len() as u64),
            ms(tcp)
        );
        tcps.push(tcp);
        fulls.push(full);
        if run + 1 == runs {
            kept = Some(pair);
        } else {
            rt.block_on(pair.close())?;
        }
    }
    let mut times: Vec<Duration> = fulls.iter().map(|f| f.time).collect();
    let mut wires: Vec<u64> = fulls.iter().map(|f| f.udp[0] + f.udp[1]).collect();
    let max_time = times.iter().copied().max().unwrap_or_default();
    let max_wire = wires.iter().copied().max().unwrap_or_default();
    let (time, wire, tcp) = (
        median_d(&mut times),
        median_u(&mut wires),
        median_d(&mut tcps),
    );
    let wire_ratio = wire as f64 / at_rest_bytes.max(1) as f64;
    let max_ratio = max_wire as f64 / at_rest_bytes.max(1) as f64;

    // (2) on the pair the last run left connected.
    let mut pair = kept.ok_or("no pair kept")?;
    let (mut total, mut capture, mut after) =
        rt.block_on(one_check(&mut pair, month, latency_n))?;
    let (total, capture, after) = (stats(&mut total), stats(&mut capture), stats(&mut after));
    let b_stats = pair.b.seen.records_in.load(Ordering::SeqCst);
    rt.block_on(pair.close())?;

    // (3) where the time goes, in memory.
    if env_u64("TSUNAGI_BENCH_BREAKDOWN", 1) != 0 {
        let a = Store::open(&StoreConfig::new(&a_dir))?;
        let b = Store::open(&StoreConfig::new(&tmp.path().join("b-breakdown")))?;
        let (tally, starts, total) = breakdown(&a, &b)?;
        let held = b.counts(month)?.events;
        println!();
        println!(
            "3. where the time goes: the same exchange in memory (no QUIC, one message at a time): {} ms in all, B holds {held} events; both starts {} ms",
            ms(total),
            ms(starts)
        );
        println!(
            "  {:<4} {:<11} {:>8} {:>12} {:>12} {:>12}",
            "to", "kind", "messages", "bytes", "receive ms", "max ms"
        );
        for ((side, k), (count, bytes, took, max)) in &tally {
            println!(
                "  {side:<4} {k:<11} {count:>8} {bytes:>12} {:>12} {:>12}",
                ms(*took),
                ms(*max)
            );
        }
    }

    println!();
    println!("summary (medians over {runs} runs; verdicts on the median and, in brackets, the worst run):");
    println!(
        "  1. new device, {n} checks: {} ms   (target <= {} ms): {} [worst {} ms: {}]",
        ms(time),
        FULL_TARGET.as_millis(),
        verdict(time <= FULL_TARGET),
        ms(max_time),
        verdict(max_time <= FULL_TARGET)
    );
    println!(
        "     wire {} B / at rest {} B = {:.3}x   (target <= {WIRE_TARGET}x): {} [worst {:.3}x: {}]",
        wire,
        at_rest_bytes,
        wire_ratio,
        verdict(wire_ratio <= WIRE_TARGET),
        max_ratio,
        verdict(max_ratio <= WIRE_TARGET)
    );
    println!(
        "     baseline: the same {} MiB over one TCP connection: {} ms; sync / TCP copy = {:.1}x",
        mib(contents.len() as u64),
        ms(tcp),
        common::ratio(time, tcp)
    );
    println!(
        "  2. one new check on a connected peer ({latency_n} checks, B received {b_stats} records in all):"
    );
    row("capture on A -> B's link received it", &total);
    row("  capture alone on A (durable; baseline)", &capture);
    row("  capture done -> B's link received it", &after);
    println!(
        "     p99 {} ms   (target <= {} ms): {}; p99 / capture-alone p99 = {:.1}x",
        ms(total.p99),
        LATENCY_TARGET.as_millis(),
        verdict(total.p99 <= LATENCY_TARGET),
        common::ratio(total.p99, capture.p99)
    );
    Ok(())
}
