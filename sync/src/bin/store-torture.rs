//! Drives a store as hard as it can from several tasks at once, printing each write the
//! moment it is acknowledged. The crash test kills it with SIGKILL at random moments and
//! checks that every acknowledged write is still there, exactly once.
//!
//! Usage: `store-torture DIR START` — check ids are `c<START + n>`. Tasks:
//! - four capturers, each capturing checks into one of three months (and sometimes
//!   capturing the same check again, which must change nothing): `ack <check> <month>`;
//! - a reconciler appending events to acknowledged checks, resolving some:
//!   `add <check> <month> <event id>`;
//! - maintenance (month documents caught up and compacted) in a loop;
//! - now and then a scratch month captured into and purged: `purged <month>`.
//!
//! Segments are tiny (16 KiB) and documents compact at 4 KiB, so every path runs often.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tsunagi_sync::store::StoreConfig;
use tsunagi_sync::{Month, Store, StoreError};

const CAPTURERS: u64 = 4;

fn say(out: &Mutex<std::io::Stdout>, line: String) {
    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn month(n: u64) -> Option<Month> {
    Month::new(2026, 10 + (n % 3) as u32)
}

async fn run(dir: String, start: u64) -> Result<(), StoreError> {
    let mut config = StoreConfig::new(std::path::Path::new(&dir));
    config.segment_bytes = 16 * 1024;
    config.compact_bytes = 4 * 1024;
    // The test's own handle of the store may still be letting go of it.
    let store = Store::open_waiting(&config, std::time::Duration::from_secs(10))
        .map_err(|e| StoreError::Task(e.to_string()))?;
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Month)>();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..CAPTURERS {
        let store = store.clone();
        let out = out.clone();
        let acked_tx = acked_tx.clone();
        tasks.spawn(async move {
            let mut n = start + t;
            loop {
                let check = format!("c{n}");
                let Some(m) = month(n) else {
                    return Ok(());
                };
                let payload = serde_json::json!({"kind": "captured", "n": n});
                let first = store.capture(&check, m, payload.clone()).await?;
                say(&out, format!("ack {check} {m}"));
                if n.is_multiple_of(7) {
                    // A retry of an acknowledged capture writes nothing.
                    let again = store.capture(&check, m, payload).await?;
                    if again.new || again.id != first.id {
                        eprintln!("store-torture: a repeated capture of {check} wrote again");
                        std::process::exit(3);
                    }
                }
                let _ = acked_tx.send((check, m));
                n += CAPTURERS;
            }
        });
    }
    drop(acked_tx);
    {
        let store = store.clone();
        let out = out.clone();
        tasks.spawn(async move {
            let mut k = 0u64;
            while let Some((check, m)) = acked_rx.recv().await {
                k += 1;
                let kind = if k.is_multiple_of(3) {
                    "resolved"
                } else {
                    "answered"
                };
                let added = store
                    .append(&check, m, serde_json::json!({"kind": kind}))
                    .await?;
                say(&out, format!("add {check} {m} {}", added.id));
            }
            Ok(())
        });
    }
    {
        let store = store.clone();
        tasks.spawn(async move {
            loop {
                let s = store.clone();
                tokio::task::spawn_blocking(move || s.maintain())
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))??;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        });
    }
    if start % 5 == 1 {
        let store = store.clone();
        let out = out.clone();
        tasks.spawn(async move {
            // A month far from the others, filled a little, then purged while all the
            // other tasks write.
            let Some(scratch) = Month::new(2001, 1 + (start % 12) as u32) else {
                return Ok(());
            };
            for i in 0..5 {
                match store
                    .capture(
                        &format!("s{start}-{i}"),
                        scratch,
                        serde_json::json!({"kind": "captured"}),
                    )
                    .await
                {
                    Ok(_) | Err(StoreError::Purged(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let s = store.clone();
            tokio::task::spawn_blocking(move || {
                s.purge(scratch, &serde_json::json!({"checks": 5}))
            })
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
            say(&out, format!("purged {scratch}"));
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| StoreError::Task(e.to_string()))??;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: store-torture DIR START");
        return std::process::ExitCode::from(2);
    };
    let start: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(run(dir, start)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store-torture: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
