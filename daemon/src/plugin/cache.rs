//! The compile cache: each component is compiled once and its artifact kept on disk.
//!
//! An artifact is named `<sha256 of the component>-<engine key>.cwasm`, where the engine key is
//! a sha256 over `Engine::precompile_compatibility_hash()` (wasmtime's version, the target and
//! every setting that changes generated code). A changed plugin or a changed engine therefore
//! never finds a stale artifact; old ones are simply not read again.
//!
//! # Why deserialising is sound here
//!
//! `Component::deserialize_file` is `unsafe` because an artifact is native code that wasmtime
//! maps and runs as is: bytes not produced by wasmtime's own compiler could do anything. This
//! module only ever deserialises files it wrote itself:
//! - the directory is created by the host with mode `0700`, and a directory (or an artifact)
//!   that group or others could write is refused, so only the daemon's own user can put a file
//!   there, and that user can already replace the daemon binary and its data;
//! - an artifact is written to a fresh temporary file (`create_new`, `0600`) in that directory,
//!   synced, and renamed into place, so no reader sees a half-written one;
//! - the file name carries the engine key, and wasmtime checks the artifact's own header
//!   against the engine again before mapping it; anything that fails to deserialise is deleted
//!   and compiled anew.
//!
//! The plugin's *source* bytes are never deserialised: they are compiled with the safe
//! `Engine::precompile_component`, after their signature was verified.

use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use super::{CacheStats, HostError};

/// The on-disk cache of compiled components.
#[derive(Debug)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A `Hasher` that feeds sha256, so the engine's compatibility hash gives a key that is
/// stable across processes (std's `DefaultHasher` makes no such promise).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        // Unused: the key is read from the full digest.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl CompileCache {
    /// Opens (creating, `0700`) the cache directory for this engine.
    pub fn open(dir: &Path, engine: &Engine) -> Result<Self, HostError> {
        let err = |source| HostError::CacheDir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
        let mut hasher = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..12]);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_key,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Where the artifact of a component with this sha256 lives.
    pub fn artifact_path(&self, digest: &[u8; 32]) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", hex::encode(digest), self.engine_key))
    }

    /// The counts so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// The compiled component, from the cache when it is there; `true` when it was.
    pub fn component(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &[u8; 32],
    ) -> Result<(Component, bool), String> {
        let path = self.artifact_path(digest);
        if path.exists() {
            match self.load_own_artifact(engine, &path) {
                Ok(component) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((component, true));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding plugin cache entry");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let artifact = engine
            .precompile_component(wasm)
            .map_err(|e| format!("{e:#}"))?;
        self.misses.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.store(&path, &artifact) {
            // Not fatal: the plugin still runs, it is just compiled again next time.
            tracing::warn!(path = %path.display(), error = %e, "cannot write plugin cache entry");
        }
        // SAFETY: `artifact` was produced a moment ago by `precompile_component` of this very
        // engine, in this process; it never left memory we own.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &artifact) };
        component.map(|c| (c, false)).map_err(|e| format!("{e:#}"))
    }

    fn load_own_artifact(&self, engine: &Engine, path: &Path) -> Result<Component, String> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [self.dir.as_path(), path] {
                let mode = std::fs::metadata(p)
                    .map_err(|e| e.to_string())?
                    .permissions()
                    .mode();
                if mode & 0o022 != 0 {
                    return Err(format!(
                        "{} is writable by others (mode {:o}); not trusted",
                        p.display(),
                        mode & 0o777
                    ));
                }
            }
        }
        // SAFETY: see the module documentation: only the host writes into this directory
        // (created 0700, checked not group/other-writable just above), each file through a
        // temporary file and a rename, so `path` holds an artifact this host's engine
        // produced; wasmtime checks its header against the engine before mapping it.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize_file(engine, path) };
        component.map_err(|e| format!("{e:#}"))
    }

    fn store(&self, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let result = (|| {
            let mut file = options.open(&tmp)?;
            file.write_all(artifact)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}
