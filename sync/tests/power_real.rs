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

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand::Rng;
use support::{assert_all_there, record, Acked, Torture};
use tsunagi_sync::store::StoreConfig;
use tsunagi_sync::Store;

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
    let mut acked = Acked::default();
    let mut rng = rand::thread_rng();
    let mut next = 0u64;
    for round in 0..iterations {
        let context = format!("round {round}");
        {
            let mounted = Mounted::mount(&image, &mnt).unwrap();
            let torture = Torture::start(&mounted.at.join("data"), next);
            let mut lines = torture.wait_for(rng.gen_range(20..400), &context);
            // The power cut: the writer dies and the disk is copied at once, before the
            // page cache is written back.
            lines.extend(torture.kill(&context, || {
                run(
                    "cp",
                    &[
                        "--sparse=always",
                        &image.display().to_string(),
                        &snapshot.display().to_string(),
                    ],
                )
                .unwrap();
            }));
            record(lines, &mut acked, &mut next);
            next += 4;
        }
        // The disk as it was at the cut becomes the disk. (Later events are checked too;
        // purges in the torture use months of their own.)
        std::fs::rename(&snapshot, &image).unwrap();
        let mounted = Mounted::mount(&image, &mnt).unwrap();
        let store = Store::open_waiting(
            &StoreConfig::new(&mounted.at.join("data")),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{context}: does not open after the cut: {e}"));
        assert_all_there(&store, &acked, &context);
        drop(store);
    }
    eprintln!(
        "{iterations} power cuts on ext4 over a loop device: {} acknowledged captures and {} later events all there",
        acked.captures.len(),
        acked.events.len()
    );
}
