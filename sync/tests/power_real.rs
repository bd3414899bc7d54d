//! Power loss with a real process on a real file system: `store-torture` writes to an ext4
//! file system on a loop device; it is killed, and the disk is copied at that instant — the
//! copy holds what reached the block device (everything fsynced, maybe some of the rest),
//! not what was still only in the page cache. The copy is then mounted (the ext4 journal
//! replayed, as after a power cut) and every acknowledged write must be in it.
//!
//! It needs root and loop devices. Where the machine does not allow them it says so and
//! passes without running (`TSUNAGI_POWER_REAL=require` makes that a failure);
//! `TSUNAGI_POWER_REAL_ITERATIONS` sets the number of cuts (default 10).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::Rng;
use tsunagi_sync::store::StoreConfig;
use tsunagi_sync::{Month, Store};

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A file system image mounted on a loop device; unmounted and detached when dropped.
struct Mounted {
    dev: String,
    at: PathBuf,
}

impl Mounted {
    fn mount(image: &Path, at: &Path) -> Result<Self, String> {
        let dev = run("losetup", &["-f", "--show", &image.display().to_string()])?;
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        if let Err(e) = run("mount", &[&dev, &at.display().to_string()]) {
            let _ = run("losetup", &["-d", &dev]);
            return Err(e);
        }
        Ok(Self {
            dev,
            at: at.to_path_buf(),
        })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A store dropped a moment ago may still have sled's threads closing its files.
        for _ in 0..50 {
            if run("umount", &[&self.at.display().to_string()]).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = run("losetup", &["-d", &self.dev]);
    }
}

fn new_image(path: &Path) -> Result<(), String> {
    run("truncate", &["-s", "256M", &path.display().to_string()])?;
    run("mkfs.ext4", &["-q", "-F", &path.display().to_string()]).map(|_| ())
}

/// Whether loop mounts work here.
fn machine_allows(dir: &Path) -> Result<(), String> {
    if is_root() {
        let image = dir.join("probe.img");
        new_image(&image)?;
        Mounted::mount(&image, &dir.join("probe")).map(|_| ())
    } else {
        Err("not root".into())
    }
}

fn is_root() -> bool {
    run("id", &["-u"]).is_ok_and(|u| u == "0")
}

#[test]
fn a_real_power_cut_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mode = std::env::var("TSUNAGI_POWER_REAL").unwrap_or_default();
    if mode == "0" {
        eprintln!("skipped: TSUNAGI_POWER_REAL=0");
        return;
    }
    if let Err(why) = machine_allows(dir.path()) {
        assert_ne!(mode, "require", "this machine cannot run it: {why}");
        eprintln!("skipped: this machine does not allow loop mounts ({why})");
        return;
    }
    let iterations: usize = std::env::var("TSUNAGI_POWER_REAL_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let image = dir.path().join("disk.img");
    let snapshot = dir.path().join("cut.img");
    let mnt = dir.path().join("mnt");
    new_image(&image).unwrap();
    let mut captures: BTreeMap<String, Month> = BTreeMap::new();
    let mut rng = rand::thread_rng();
    let mut next = 0u64;
    for round in 0..iterations {
        {
            let mounted = Mounted::mount(&image, &mnt).unwrap();
            let data = mounted.at.join("data");
            let mut child = Command::new(env!("CARGO_BIN_EXE_store-torture"))
                .arg(&data)
                .arg(next.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            });
            let wait = rng.gen_range(20..400);
            let mut lines = Vec::new();
            while lines
                .iter()
                .filter(|l: &&String| l.starts_with("ack "))
                .count()
                < wait
            {
                lines.push(
                    rx.recv_timeout(Duration::from_secs(30))
                        .unwrap_or_else(|_| panic!("round {round}: the writer stopped")),
                );
            }
            // The power cut: the writer dies and the disk is copied at once, before the
            // page cache is written back.
            child.kill().unwrap();
            child.wait().unwrap();
            run(
                "cp",
                &[
                    "--sparse=always",
                    &image.display().to_string(),
                    &snapshot.display().to_string(),
                ],
            )
            .unwrap();
            reader.join().unwrap();
            lines.extend(rx.try_iter());
            for line in lines {
                let mut w = line.split_whitespace();
                if let (Some("ack"), Some(check), Some(month)) = (w.next(), w.next(), w.next()) {
                    next = next.max(check[1..].parse::<u64>().unwrap() + 1);
                    captures.insert(check.to_string(), month.parse().unwrap());
                }
            }
            next += 4;
        }
        // The disk as it was at the cut becomes the disk.
        std::fs::rename(&snapshot, &image).unwrap();
        let mounted = Mounted::mount(&image, &mnt).unwrap();
        let store = Store::open_waiting(
            &StoreConfig::new(&mounted.at.join("data")),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("round {round}: does not open after the cut: {e}"));
        let damage: Vec<_> = store
            .health()
            .into_iter()
            .filter(|n| n.kind.is_damage())
            .collect();
        assert!(damage.is_empty(), "round {round}: {damage:?}");
        for (check, month) in &captures {
            let events = store.check_events(*month, check).unwrap();
            let n = events
                .events
                .iter()
                .filter(|(_, e)| e.payload["kind"] == "captured")
                .count();
            assert_eq!(
                n, 1,
                "round {round}: acknowledged capture {check} lost or doubled"
            );
        }
        assert!(store.verify().unwrap().problems.is_empty(), "round {round}");
        drop(store);
    }
    eprintln!(
        "{iterations} power cuts on ext4 over a loop device: {} acknowledged captures all there",
        captures.len()
    );
}
