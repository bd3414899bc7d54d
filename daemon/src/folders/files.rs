//! Files of the folder interface, written whole: a reader (the receipt computer, or tsunagid
//! after a crash) sees a file complete or not at all, and a result file is never overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A temporary name beside `name` in `dir`: hidden, unique in this process, never one of the
/// interface's names.
fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.tsunagi-{}-{n}.tmp", std::process::id()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    // The contents and the size a new file needs; its times are not worth a second write.
    f.sync_data()
}

/// Makes the directory's entries durable (a new or renamed file survives a power cut).
/// Some shares cannot sync a directory; the file itself was synced.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `dir/name` whole unless it exists: `Ok(false)` when a file of that name is already
/// there (it is left untouched).
pub fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<bool> {
    let target = dir.join(name);
    // A result waiting for its predecessor to be collected is tried at every look: no
    // temporary file is written and synced only to find the name taken.
    if target.exists() {
        return Ok(false);
    }
    let tmp = tmp_path(dir, name);
    let result = write_synced(&tmp, bytes).and_then(|()| {
        // A hard link never replaces an existing file; a share without hard links gets a
        // rename after a look (racy only against another writer of our own names).
        match std::fs::hard_link(&tmp, &target) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(_) if target.exists() => Ok(false),
            Err(_) => std::fs::rename(&tmp, &target).map(|()| true),
        }
    });
    let _ = std::fs::remove_file(&tmp);
    if matches!(result, Ok(true)) {
        sync_dir(dir);
    }
    result
}

/// Writes `path` whole, replacing what was there.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tmp_path(dir, &name);
    let result = write_synced(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else {
        sync_dir(dir);
    }
    result
}

/// Removes `path`; a file already gone (another program moved it) is not an error.
pub fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Reads a request file, at most `limit` bytes: `Ok(None)` when it is gone, `Err(size)` inside
/// when it is larger. Opened without following a link and without waiting: a FIFO or a device
/// named like a request is refused rather than read (it could block the reader for ever).
pub fn read_request(path: &Path, limit: u64) -> std::io::Result<Option<Result<Vec<u8>, u64>>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > limit {
        return Ok(Some(Err(meta.len())));
    }
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Ok(Some(Err(bytes.len() as u64)));
    }
    Ok(Some(Ok(bytes)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_result_is_never_overwritten_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(write_new(dir.path(), "a.xml", b"first").expect("write"));
        assert!(!write_new(dir.path(), "a.xml", b"second").expect("write"));
        assert_eq!(std::fs::read(dir.path().join("a.xml")).unwrap(), b"first");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.xml")]);
    }

    #[test]
    fn reads_are_bounded_and_refuse_what_is_not_a_plain_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("r.xml");
        assert!(read_request(&p, 4).unwrap().is_none());
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_request(&p, 4).unwrap(), Some(Err(5)));
        assert_eq!(read_request(&p, 5).unwrap(), Some(Ok(b"12345".to_vec())));
        // A link is not followed; a FIFO is not waited on.
        let link = dir.path().join("link.xml");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(read_request(&link, 5).is_err());
        let fifo = dir.path().join("fifo.xml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(read_request(&fifo, 5).is_err());
        std::fs::create_dir(dir.path().join("d.xml")).unwrap();
        assert!(read_request(&dir.path().join("d.xml"), 5).is_err());
    }
}
