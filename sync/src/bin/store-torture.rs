//! Writes checks into a store as fast as it can and prints `ack <check id>` after each one is
//! durable, compacting now and then. The crash test kills it with SIGKILL at random moments
//! and checks that every acknowledged check is still there, exactly once.
//!
//! Usage: `store-torture DIR [START]` — check ids are `c<START + n>`.

use std::io::Write;

use tsunagi_sync::store::StoreConfig;
use tsunagi_sync::{Month, Store};

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: store-torture DIR [START]");
        return std::process::ExitCode::from(2);
    };
    let start: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        let store = Store::open(&StoreConfig::new(std::path::Path::new(&dir)))?;
        let month = Month {
            year: 2026,
            month: 11,
        };
        let mut stdout = std::io::stdout().lock();
        for n in start.. {
            let check = format!("c{n}");
            store
                .append_durable(
                    &check,
                    month,
                    serde_json::json!({"kind": "captured", "n": n}),
                )
                .await?;
            let _ = writeln!(stdout, "ack {check}");
            let _ = stdout.flush();
            if n % 25 == 24 {
                store.compact(month)?;
            }
        }
        Ok::<(), tsunagi_sync::StoreError>(())
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store-torture: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
