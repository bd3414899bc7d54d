//! The store seen from the `tsunagi` binary: visit dates the store cannot hold are refused
//! before anything is written, a data directory in another format is refused and left
//! alone, and a repair the store made is shown to staff by `tsunagi status`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;

fn tsunagi(data: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args(args)
        .env("TSUNAGI_DATA_DIR", data)
        // Nothing listens here: the line is down, which these tests do not need.
        .env("TSUNAGI_OQS_URL", "http://127.0.0.1:9")
        .env("TSUNAGI_INSTITUTION_CODE", "1319900017")
        .env("TSUNAGI_OQS_TIMEOUT_MS", "300")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_visit_date_outside_2000_to_2999_is_refused_before_anything_is_written() {
    // Issue 8: year 0226 (a typo of 2026) and 10000 are refused at the edge.
    let dir = tempfile::tempdir().unwrap();
    for date in ["0226-11-05", "1999-12-31", "3000-01-01"] {
        let (code, text) = tsunagi(
            dir.path(),
            &[
                "record-document",
                "kakuninsho",
                "--expires",
                "2027-07-31",
                "--visit-date",
                date,
            ],
        );
        assert_eq!(code, 2, "{date}: {text}");
        assert!(text.contains("2000年から2999年"), "{date}: {text}");
        let (code, text) = tsunagi(
            dir.path(),
            &["check", "--method", "visual", "--visit-date", date],
        );
        assert_ne!(code, 0, "{date}: {text}");
        assert!(text.contains("2000年から2999年"), "{date}: {text}");
    }
    let (code, text) = tsunagi(
        dir.path(),
        &["check", "--method", "visual", "--visit-date", "10000-01-01"],
    );
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("年-月-日"), "{text}");
    assert!(
        !dir.path().join("months").exists(),
        "nothing may be written for a refused date"
    );
}

#[test]
fn a_data_directory_of_the_old_layout_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("db")).unwrap();
    std::fs::write(dir.path().join("wal.log"), b"old records").unwrap();
    let (code, text) = tsunagi(dir.path(), &["pending"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("形式 1"), "{text}");
    assert_eq!(
        std::fs::read(dir.path().join("wal.log")).unwrap(),
        b"old records"
    );
    assert!(!dir.path().join("months").exists());
}

#[test]
fn status_tells_staff_what_the_store_repaired() {
    let dir = tempfile::tempdir().unwrap();
    // A store with a few checks, then its index damaged on disk.
    {
        let store =
            tsunagi_sync::Store::open(&tsunagi_sync::store::StoreConfig::new(dir.path())).unwrap();
        let month = tsunagi_sync::Month::new(2026, 11).unwrap();
        for n in 0..3 {
            store
                .capture_blocking(&format!("c{n}"), month, serde_json::json!({}))
                .unwrap();
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    for entry in std::fs::read_dir(dir.path().join("index"))
        .unwrap()
        .flatten()
    {
        if entry.path().is_file() {
            let len = entry.metadata().unwrap().len() as usize;
            std::fs::write(entry.path(), vec![0x5a; len.max(64)]).unwrap();
        }
    }
    let (code, text) = tsunagi(dir.path(), &["status"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("保存データの修復"), "{text}");
    assert!(text.contains("索引"), "{text}");
    let (_, json) = tsunagi(dir.path(), &["status", "--json"]);
    let first = json.lines().next().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(first).unwrap();
    assert_eq!(v["store_repairs"][0]["kind"], "index-rebuilt", "{v}");
}
