//! The file layer (ファイル層): every file the store writes itself goes through [`Vfs`].
//!
//! Like SQLite's VFS, this is one narrow interface under the store with two implementations:
//! [`OsFs`], the real file system, and [`sim::SimFs`], an in-memory file system for tests that
//! forgets (and reorders) every write not yet made durable when a crash is simulated, and
//! that can fail any chosen write with disk-full, EIO or a short write. The store's
//! durability contract is stated in terms of this interface:
//!
//! - [`VFile::sync_data`] makes the file's bytes and length durable (fdatasync);
//! - [`Vfs::sync_dir`] makes the directory's entries durable (created, renamed, removed
//!   names): a new file is not durable until its directory is synced;
//! - [`Vfs::rename`] within one directory is atomic: after a crash the target holds the old
//!   file or the new one.
//!
//! Nothing else is promised. sled (the rebuildable index) writes its own files and is not
//! behind this layer; the store never relies on sled for anything acknowledged.

pub mod sim;

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, read only.
    Read,
    /// An existing file, read and write.
    ReadWrite,
    /// Read and write; created (mode 600) if missing.
    Create,
    /// Read and write; created (mode 600), failing with `AlreadyExists` if present.
    CreateNew,
}

/// An open file. Positioned reads and writes only: the store keeps its own offsets.
pub trait VFile: Send + Sync + fmt::Debug {
    /// The file's current length.
    fn size(&self) -> io::Result<u64>;
    /// Reads at `offset`; returns how many bytes were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes at `offset`; returns how many bytes were written (maybe fewer than asked).
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Cuts or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's bytes and length durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
}

/// A held exclusive lock on a path; released when dropped.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// The file system under the store.
pub trait Vfs: Send + Sync + fmt::Debug {
    /// Opens `path`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>>;
    /// Renames `from` to `to` (same directory), replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates one directory (mode 700); `AlreadyExists` if present.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// The names in a directory, sorted.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Whether `path` is a directory (`None` if it does not exist).
    fn is_dir(&self, path: &Path) -> io::Result<Option<bool>>;
    /// Takes an exclusive lock on `path` (created if missing) without waiting:
    /// `WouldBlock` if another holder has it.
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
    /// The permission bits of `path` (a simulated file system has only private files).
    fn mode(&self, _path: &Path) -> io::Result<u32> {
        Ok(0o600)
    }
}

/// Reads exactly `buf.len()` bytes at `offset` (`UnexpectedEof` if the file is shorter).
pub fn read_exact_at(file: &dyn VFile, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf` at `offset`. On error some prefix may have been written: the caller
/// rolls back (see `store::segments`).
pub fn write_all_at(file: &dyn VFile, buf: &[u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.write_at(&buf[done..], offset + done as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The whole content of a file.
pub fn read_file(vfs: &dyn Vfs, path: &Path) -> io::Result<Vec<u8>> {
    let file = vfs.open(path, OpenMode::Read)?;
    let len = usize::try_from(file.size()?).map_err(io::Error::other)?;
    let mut buf = vec![0; len];
    read_exact_at(file.as_ref(), &mut buf, 0)?;
    Ok(buf)
}

/// Whether a name is one of the temporary files [`write_atomic`] makes (left behind only by
/// a crash; removed at open and by a purge).
pub fn is_temporary(name: &str) -> bool {
    name.contains(".tmp-")
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never
/// half of one: a uniquely named temporary file in the same directory, written and fsynced,
/// renamed over the target, then the directory fsynced.
pub fn write_atomic(vfs: &dyn Vfs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    // Unique per process and per call, so two writers never share a temporary file.
    let tmp = dir.join(format!(
        "{name}.tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = (|| {
        let file = vfs.open(&tmp, OpenMode::CreateNew)?;
        write_all_at(file.as_ref(), bytes, 0)?;
        file.sync_data()?;
        vfs.rename(&tmp, path)
    })();
    if let Err(e) = written {
        // Best effort: a temporary file left here is removed at the next open.
        let _ = vfs.remove_file(&tmp);
        return Err(e);
    }
    vfs.sync_dir(dir)
}

/// Creates `path` (and missing parents), each made durable in its parent before returning.
///
/// A directory that exists is not taken for a durable one: an earlier call may have created
/// it and then failed to sync its parent. So the parent of the first directory found is
/// synced again (one fsync, cheap when nothing changed).
pub fn create_dir_all_durable(vfs: &dyn Vfs, path: &Path) -> io::Result<()> {
    match vfs.is_dir(path)? {
        Some(true) => return vfs.sync_dir(parent(path)),
        Some(false) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is not a directory", path.display()),
            ))
        }
        None => {}
    }
    let up = parent(path);
    if up != path {
        create_dir_all_durable(vfs, up)?;
    }
    match vfs.create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    vfs.sync_dir(up)
}

/// Removes a directory and everything in it, then makes the removal durable in its parent.
/// A missing directory is not an error.
pub fn remove_dir_all_durable(vfs: &dyn Vfs, path: &Path) -> io::Result<()> {
    let names = match vfs.read_dir(path) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names {
        let child = path.join(&name);
        if vfs.is_dir(&child)? == Some(true) {
            remove_dir_all_durable(vfs, &child)?;
        } else {
            match vfs.remove_file(&child) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    match vfs.remove_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    vfs.sync_dir(parent(path))
}

/// The directory holding `path`: `.` for a bare name, the root for the root.
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        Some(_) => Path::new("."),
        None => path,
    }
}

/// Whether an I/O error means the disk is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(28)
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

impl OsFs {
    /// The real file system, shared.
    pub fn shared() -> Arc<dyn Vfs> {
        Arc::new(OsFs)
    }
}

#[derive(Debug)]
struct OsFile(std::fs::File);

impl VFile for OsFile {
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        self.0.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        self.0.write_at(buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

#[derive(Debug)]
struct OsLock {
    _file: std::fs::File,
}

impl LockGuard for OsLock {}

impl Vfs for OsFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                options.write(true);
            }
            OpenMode::Create => {
                options.write(true).create(true).mode(0o600);
            }
            OpenMode::CreateNew => {
                options.write(true).create_new(true).mode(0o600);
            }
        }
        Ok(Arc::new(OsFile(options.open(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn is_dir(&self, path: &Path) -> io::Result<Option<bool>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(m.is_dir())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(OsLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn mode(&self, path: &Path) -> io::Result<u32> {
        use std::os::unix::fs::PermissionsExt;
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFs;
        let path = dir.path().join("a");
        write_atomic(&fs, &path, b"one").unwrap();
        write_atomic(&fs, &path, b"two").unwrap();
        assert_eq!(read_file(&fs, &path).unwrap(), b"two");
        assert_eq!(fs.read_dir(dir.path()).unwrap(), vec!["a".to_string()]);
    }

    #[test]
    fn a_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFs;
        let path = dir.path().join("LOCK");
        let held = fs.try_lock(&path).unwrap();
        let again = fs.try_lock(&path).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::WouldBlock);
        drop(held);
        fs.try_lock(&path).unwrap();
    }
}
