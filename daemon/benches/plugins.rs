//! Facility plugins in the host: what a call costs warm, how long the six take to load with
//! a cold and a warm compile cache, and the memory they hold.
//!
//! The six shipped plugins are built from `plugins/` for wasm32-wasip2 (release), signed
//! with a fresh key and loaded from a temporary directory, as tsunagid loads them.
//!
//! Printed:
//! - per call, warm (the `medical` plugin's `format` on one realistic check, through the
//!   host as the daemon calls it: an instance reused while its calls end well): p50 / p99 / max over `TSUNAGI_BENCH_CALLS`
//!   calls (2,000), beside the same formatting written in native Rust in this file (the
//!   receipt fields, screen lines and read-aloud text of the medical plugin's main path),
//!   timed the same way in the same run. Targets: p50 ≤ 20 µs and ≤ 10× native.
//! - start: a new host loading the six with an empty cache (cold: compiles), then five times
//!   with the cache it filled (warm); medians. Target: warm ≤ 300 ms.
//! - memory: the process's VmRSS before the first host and with one host holding the six
//!   (the store issue's daemon target of 60 MB must still hold with them).
//!
//! Run: `cargo bench -p tsunagi --bench plugins`.

#[path = "../tests/support/plugins.rs"]
mod guests;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tsunagi::plugin::api;
use tsunagi::plugin::sign::signature_path;
use tsunagi::plugin::{CallLimits, HostSettings, PluginHost, SecretKey};

/// The six facility plugins, named as their facility types.
fn six() -> [&'static str; 6] {
    tsunagi::domain::FacilityType::ALL.map(tsunagi::domain::FacilityType::as_str)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn settings(cache: &Path, key: &SecretKey) -> HostSettings {
    HostSettings {
        cache_dir: cache.to_path_buf(),
        trusted_keys: vec![key.public()],
        limits: CallLimits::default(),
        grants: BTreeMap::new(),
    }
}

fn load_six(cache: &Path, key: &SecretKey, dir: &Path) -> (PluginHost, Duration) {
    let started = Instant::now();
    let host = PluginHost::new(settings(cache, key)).expect("host");
    let statuses = host.load_dir(dir);
    let took = started.elapsed();
    let loaded = statuses
        .iter()
        .filter(|s| matches!(s.state, tsunagi::plugin::PluginState::Loaded))
        .count();
    assert_eq!(loaded, 6, "{statuses:?}");
    (host, took)
}

fn sample() -> api::Check {
    let numbers = api::Numbers {
        insurer: "06139999".into(),
        symbol: Some("練馬12".into()),
        number: "0004471".into(),
        branch: Some("01".into()),
    };
    api::Check {
        id: "01JRZ3Q4C5XK8V0T9N2M7B6A1D".into(),
        facility: api::Facility::Medical,
        visit_date: "2026-12-01".into(),
        first_visit: false,
        next_visit: None,
        identity: api::Identity::Pin,
        document: None,
        captured_offline: false,
        answer: Some(api::AnswerStatus::Confirmed),
        qualification: Some(api::Qualification {
            numbers: numbers.clone(),
            insurer_name: Some("全国健康保険協会 東京支部".into()),
            birth_date: Some("1980-04-01".into()),
            copay_tenths: Some(3),
            newer_exists: false,
        }),
        known_numbers: Some(numbers.clone()),
        copay_tenths: Some(3),
        claim: Some(api::Claim {
            basis: api::Basis::Current,
            numbers,
            remarks: None,
            payer: None,
            summary: "現在の資格で通常どおり請求します。".into(),
            final_: false,
        }),
        declaration: None,
        due: None,
        overdue: false,
    }
}

/// The medical plugin's main path for a confirmed check, in native Rust: the baseline.
fn native_format(c: &api::Check) -> api::Output {
    let mut fields = Vec::new();
    let mut display = Vec::new();
    if let Some(claim) = &c.claim {
        let n = &claim.numbers;
        let field = |key: &str, label: &str, value: &str| api::Field {
            key: key.into(),
            label: label.into(),
            value: value.into(),
        };
        fields.push(field("insurer-number", "保険者番号", &n.insurer));
        fields.push(field("symbol", "記号", n.symbol.as_deref().unwrap_or("")));
        fields.push(field("number", "番号", &n.number));
        fields.push(field("branch", "枝番", n.branch.as_deref().unwrap_or("")));
        fields.push(field("basis", "請求区分", "現資格"));
        if let Some(t) = c.copay_tenths {
            fields.push(field("copay", "負担割合", &format!("{t}割")));
        }
        display.push(format!("受診日: {}", c.visit_date));
        display.push("結果: 有効（マイナ保険証・暗証番号）".into());
        if let Some(q) = &c.qualification {
            if let Some(name) = &q.insurer_name {
                display.push(format!("保険者: {name}"));
            }
        }
        display.push(format!(
            "番号: 保険者番号 {}　記号 {}　番号 {}　枝番 {}",
            n.insurer,
            n.symbol.as_deref().unwrap_or(""),
            n.number,
            n.branch.as_deref().unwrap_or("")
        ));
        display.push("請求: 現資格で請求".into());
        display.push(claim.summary.clone());
    }
    let read_aloud = match c.copay_tenths {
        Some(t) => format!("資格は有効です。負担割合は{t}割です。"),
        None => "資格は有効です。".into(),
    };
    api::Output {
        claim_fields: fields,
        display,
        read_aloud,
        warnings: Vec::new(),
        next_action: None,
    }
}

fn timed<T>(n: usize, mut f: impl FnMut() -> T) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(f());
        out.push(t.elapsed());
    }
    out.sort();
    out
}

fn main() {
    let calls: usize = std::env::var("TSUNAGI_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rss_start = rss_kib();
    let key = SecretKey::generate();
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("plugins");
    std::fs::create_dir_all(&dir).expect("plugin dir");
    let mut total_bytes = 0;
    for name in six() {
        let bytes = std::fs::read(guests::facility_plugin(name)).expect("built plugin");
        total_bytes += bytes.len();
        let path = dir.join(format!("{name}.wasm"));
        std::fs::write(signature_path(&path), key.sign(&bytes).to_text()).expect("sig");
        std::fs::write(&path, &bytes).expect("wasm");
    }
    println!("six plugins: {total_bytes} bytes of components");

    // Start, cold then warm.
    let cache = work.path().join("cache");
    let (host, cold) = load_six(&cache, &key, &dir);
    drop(host);
    let mut warm = Vec::new();
    for _ in 0..5 {
        let (host, took) = load_six(&cache, &key, &dir);
        warm.push(took);
        drop(host);
    }
    let warm = median(warm);

    // Memory: one host with the six, beside none.
    let rss_before = rss_kib();
    let (host, _) = load_six(&cache, &key, &dir);

    // Per call, warm.
    let check = sample();
    for _ in 0..100 {
        host.format("medical", &check).expect("format");
    }
    let plugin = timed(calls, || host.format("medical", &check).expect("format"));
    let rss_after = rss_kib();
    for _ in 0..100 {
        std::hint::black_box(native_format(&check));
    }
    let native = timed(calls, || native_format(&check));

    println!();
    println!("per call, warm ({calls} calls)      p50 µs    p99 µs    max µs");
    for (name, d) in [
        ("plugin format (medical)", &plugin),
        ("native Rust, same output", &native),
    ] {
        println!(
            "  {name:<30} {:>8.1}  {:>8.1}  {:>8.1}",
            us(quantile(d, 0.5)),
            us(quantile(d, 0.99)),
            us(quantile(d, 1.0))
        );
    }
    let ratio = us(quantile(&plugin, 0.5)) / us(quantile(&native, 0.5)).max(1e-3);
    let p50 = us(quantile(&plugin, 0.5));
    println!(
        "  p50 {p50:.1} µs (target ≤ 20 µs: {}); {ratio:.1}× native (target ≤ 10×: {})",
        if p50 <= 20.0 { "met" } else { "NOT MET" },
        if ratio <= 10.0 { "met" } else { "NOT MET" }
    );
    println!();
    println!(
        "start with six plugins: cold cache {:.0} ms, warm cache {:.0} ms median of 5 (target warm ≤ 300 ms: {})",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3,
        if warm <= Duration::from_millis(300) {
            "met"
        } else {
            "NOT MET"
        }
    );
    println!(
        "memory (VmRSS): at start {:.1} MiB; before the host {:.1} MiB; with six loaded and {calls} calls made {:.1} MiB (+{:.1} MiB)",
        rss_start as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        (rss_after.saturating_sub(rss_before)) as f64 / 1024.0
    );
    drop(host);
}
