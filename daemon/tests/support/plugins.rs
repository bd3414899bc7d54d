//! Guest plugins for the plugin tests, built from `tests/hostile-plugins` for `wasm32-wasip2`.
//!
//! [`guest`] builds the whole guest workspace once per test binary (later callers wait on the
//! same `OnceLock`; concurrent test binaries are serialised by cargo's own lock on the target
//! directory) into `<target dir>/hostile-plugins`, adding the `wasm32-wasip2` target with
//! rustup first if it is missing, and returns the path of one guest's component.
//!
//! Include with `#[path = "support/plugins.rs"] mod guests;`.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const TARGET: &str = "wasm32-wasip2";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the daemon crate sits in the workspace")
        .to_path_buf()
}

fn target_dir(workspace: &str) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join(workspace.rsplit('/').next().unwrap_or(workspace))
}

fn ensure_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        })
        .unwrap_or(false);
    if !installed {
        let status = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .expect("run rustup");
        assert!(status.success(), "rustup target add {TARGET} failed");
    }
}

/// Builds the guest workspace at `workspace` (relative to the repository) and returns where
/// its components are.
fn build_all(workspace: &str) -> PathBuf {
    ensure_target();
    let manifest = workspace_root().join(workspace).join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target_dir(workspace))
        // Flags meant for the host build (a target CPU, -D warnings) are not for the guests.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run cargo for the guest plugins");
    assert!(
        output.status.success(),
        "building the guest plugins failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target_dir(workspace).join(TARGET).join("release")
}

/// The component of one guest crate (`good`, `endless`, `memory-bomb`, …).
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| build_all("tests/hostile-plugins"));
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "no component {}", path.display());
    path
}

/// The bytes of one guest's component.
pub fn guest_bytes(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).expect("read guest component")
}

/// The component of one shipped facility plugin (`medical`, `judo`, …), built from
/// `plugins/` as `plugins/build.sh` builds it.
pub fn facility_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| build_all("plugins"));
    let path = dir.join(format!("tsunagi_plugin_{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "no component {}", path.display());
    path
}
