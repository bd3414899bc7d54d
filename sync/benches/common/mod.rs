//! Shared helpers of the store benchmarks: realistic payloads, percentiles, bench dirs,
//! env knobs, and this process's memory and I/O as Linux reports them.

// Each bench binary uses a subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

/// A small deterministic generator (xorshift64*), so payloads vary between checks without
/// pulling a seeded RNG into the bench and every run writes the same bytes.
#[derive(Debug)]
pub struct Gen(u64);

impl Gen {
    /// A generator from a seed (0 is mapped to a fixed non-zero state).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 24) as u8).collect()
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

const FAMILY: [(&str, &str); 6] = [
    ("山田", "ヤマダ"),
    ("佐藤", "サトウ"),
    ("鈴木", "スズキ"),
    ("高橋", "タカハシ"),
    ("田中", "タナカ"),
    ("渡辺", "ワタナベ"),
];
const GIVEN: [(&str, &str); 6] = [
    ("太郎", "タロウ"),
    ("花子", "ハナコ"),
    ("一郎", "イチロウ"),
    ("美咲", "ミサキ"),
    ("健太", "ケンタ"),
    ("陽子", "ヨウコ"),
];

/// A `captured` payload as the daemon writes it after a card read: certificate serial, a
/// 256-byte (RSA-2048) signature in base64, the challenge, method, visit date, facility and
/// the patient's self-declaration. About 600 bytes of JSON.
pub fn captured_payload(n: u64) -> serde_json::Value {
    let mut g = Gen::new(n + 1);
    let b64 = base64::engine::general_purpose::STANDARD;
    let (family, family_kana) = FAMILY[g.below(FAMILY.len() as u64) as usize];
    let (given, given_kana) = GIVEN[g.below(GIVEN.len() as u64) as usize];
    let day = 1 + g.below(28);
    serde_json::json!({
        "type": "captured",
        "cert_serial": format!("{:016X}", g.next_u64()),
        "signature": b64.encode(g.bytes(256)),
        "challenge": b64.encode(g.bytes(32)),
        "method": "face",
        "visit_date": format!("2025-04-{day:02}"),
        "facility": "1312345678",
        "declaration": {
            "name": format!("{family} {given}"),
            "kana": format!("{family_kana} {given_kana}"),
            "address": format!("東京都千代田区神田{}丁目{}-{}", 1 + g.below(3), 1 + g.below(20), 1 + g.below(30)),
            "phone": format!("03-{:04}-{:04}", g.below(10_000), g.below(10_000)),
        },
    })
}

/// What a bench returns: errors are reported, never unwrapped.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Environment variable `name` as a number, else `default` (also when it does not parse).
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

/// The directory benches write into: `TSUNAGI_BENCH_DIR`, else the system temp dir.
pub fn bench_parent() -> PathBuf {
    std::env::var_os("TSUNAGI_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Latency statistics of a sorted sample.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

/// Nearest-rank percentiles of `samples` (sorted in place).
pub fn stats(samples: &mut [Duration]) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| -> Duration {
        if samples.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// A duration in milliseconds with three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// `a / b` as a float (a zero `b` counts as 1 ns).
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// "met" or "NOT MET".
pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT MET"
    }
}

/// (VmRSS, VmHWM) of this process in bytes, from /proc/self/status.
pub fn rss() -> BenchResult<(u64, u64)> {
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

/// What this process wrote so far, from /proc/self/io.
#[derive(Debug, Clone, Copy, Default)]
pub struct Io {
    /// Bytes passed to write calls (`wchar`).
    pub wchar: u64,
    /// Bytes sent to the block layer (`write_bytes`; 0 where the kernel does not count).
    pub write_bytes: u64,
}

impl Io {
    /// This process's counters now.
    pub fn now() -> BenchResult<Self> {
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
            (Some(wchar), Some(write_bytes)) => Ok(Self { wchar, write_bytes }),
            _ => Err("no wchar/write_bytes in /proc/self/io".into()),
        }
    }

    /// What was written since `earlier`.
    pub fn since(self, earlier: Io) -> Io {
        Io {
            wchar: self.wchar.saturating_sub(earlier.wchar),
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
        }
    }
}

/// Bytes of a segment header (`sync/src/store/segment.rs`): a segment file is this header
/// followed by whole record frames.
pub const SEGMENT_HEADER: u64 = 32;

/// (bytes used, files) of the segment files `DIR/months/YYYY-MM/*.seg` of a store. A
/// segment is zero-filled ahead of its end for appends (`PREALLOCATE` in
/// `sync/src/store/segments.rs`); "used" stops at its last non-zero byte.
pub fn segment_files(store_dir: &Path) -> BenchResult<(u64, u64)> {
    let months = store_dir.join("months");
    let mut total = (0, 0);
    if !months.exists() {
        return Ok(total);
    }
    for month in std::fs::read_dir(&months)? {
        let month = month?;
        if !month.file_type()?.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(month.path())? {
            let f = f?;
            if f.path().extension().is_some_and(|e| e == "seg") {
                let bytes = std::fs::read(f.path())?;
                total.0 += bytes
                    .iter()
                    .rposition(|b| *b != 0)
                    .map_or(0, |p| p as u64 + 1);
                total.1 += 1;
            }
        }
    }
    Ok(total)
}

/// The machine's load as Linux reports it: the 1-minute load average and, where the kernel
/// has pressure stall information, the share of the last 10 s in which some runnable task
/// waited for a CPU. On a machine shared with builds, a capture's tail is then the
/// scheduler's (every wake-up waits for a time slice), not the store's or the disk's.
pub fn machine_load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let cpu = std::fs::read_to_string("/proc/pressure/cpu")
        .ok()
        .and_then(|s| {
            let some = s.lines().find(|l| l.starts_with("some"))?;
            let avg10 = some.split_whitespace().find(|f| f.starts_with("avg10="))?;
            Some(avg10.trim_start_matches("avg10=").to_string())
        })
        .unwrap_or_else(|| "?".into());
    format!("load average {load}, CPU pressure (some, avg10) {cpu}%")
}
