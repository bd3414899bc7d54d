//! Files of the folder interface, written whole: a reader (the receipt computer, or tsunagid
//! after a crash) sees a file complete or not at all, and a result file is never overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// This process's mark in its temporary names: random rather than the pid, which a process
/// after a reboot may be given again, so a start can tell its own files from leftovers.
fn process_mark() -> u32 {
    static MARK: OnceLock<u32> = OnceLock::new();
    *MARK.get_or_init(rand::random)
}

/// A temporary name beside `name` in `dir`: hidden, unique in this process, never one of the
/// interface's names.
fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.tsunagi-{:08x}-{n}.tmp", process_mark()))
}

/// Removes temporary files another process left in `dir` (a crash between writing one and
/// linking it) once they are older than `age`: younger ones may belong to a process writing
/// now. Returns how many went.
pub fn sweep_leftovers(dir: &Path, age: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let ours = format!(".tsunagi-{:08x}-", process_mark());
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let leftover =
            name.starts_with('.') && name.ends_with(".tmp") && name.contains(".tsunagi-");
        if !leftover || name.contains(&ours) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|a| a >= age);
        if old && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
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

/// A temporary file made ready for a result before the result is known (予備ファイル): one
/// block of it is written and durable, so filling it later is an overwrite and a smaller size
/// to sync, not a new allocation. A new file's sync commits its allocation to the file
/// system's journal; this one commits only its size. On ext4 here: about 0.2 ms against
/// about 0.4 ms for a new file (`daemon/benches/folders.rs` measures the round trip).
///
/// Dropping it removes the temporary file (a blocking call: drop it on the blocking pool).
#[derive(Debug)]
pub struct Prepared {
    file: std::fs::File,
    tmp: PathBuf,
    made: std::time::Instant,
}

/// Prepares a file in `dir` for a result to come (see [`Prepared`]).
pub fn prepare(dir: &Path) -> std::io::Result<Prepared> {
    use std::os::unix::fs::MetadataExt;
    let tmp = tmp_path(dir, "spare");
    let file = std::fs::File::create(&tmp)?;
    let prepared = Prepared {
        file,
        tmp,
        made: std::time::Instant::now(),
    };
    // One block of the file system: a result that fits is made smaller within it, which
    // frees no block (freeing one costs as much as allocating).
    let block = prepared.file.metadata()?.blksize().clamp(512, 65536);
    let zeros = vec![0u8; usize::try_from(block).unwrap_or(4096)];
    (&prepared.file).write_all(&zeros)?;
    prepared.file.sync_data()?;
    Ok(prepared)
}

impl Prepared {
    /// Whether its file is still in its folder (another program may have removed it).
    pub fn is_there(&self) -> bool {
        std::fs::symlink_metadata(&self.tmp).is_ok()
    }

    /// How long ago it was made: a result written into it keeps that as its birth time
    /// (what Windows shows as its creation time through a share).
    pub fn age(&self) -> std::time::Duration {
        self.made.elapsed()
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Writes `dir/name` whole unless it exists: `Ok(false)` when a file of that name is already
/// there (it is left untouched).
pub fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<bool> {
    write_new_into(dir, name, bytes, &mut None)
}

/// [`write_new`], into the prepared file when there is one (taken only when the result is
/// written). A prepared file that another program removed meanwhile costs only the time: the
/// result goes into a new file.
pub fn write_new_into(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    prepared: &mut Option<Prepared>,
) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let target = dir.join(name);
    // A result waiting for its predecessor to be collected is tried at every look: no
    // temporary file is written and synced only to find the name taken.
    if target.exists() {
        return Ok(false);
    }
    if let Some(p) = prepared.take() {
        let placed = p
            .file
            .write_all_at(bytes, 0)
            .and_then(|()| p.file.set_len(bytes.len() as u64))
            .and_then(|()| p.file.sync_data())
            .and_then(|()| link_new(&p.tmp, &target));
        drop(p);
        match placed {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => return placed_in(dir, other),
        }
    }
    let tmp = tmp_path(dir, name);
    let placed = write_synced(&tmp, bytes).and_then(|()| link_new(&tmp, &target));
    let _ = std::fs::remove_file(&tmp);
    placed_in(dir, placed)
}

/// Gives `tmp` the name `target` unless a file has it: `Ok(false)` then.
fn link_new(tmp: &Path, target: &Path) -> std::io::Result<bool> {
    // A hard link never replaces an existing file; a share without hard links gets a rename
    // after a look (racy only against another writer of our own names).
    match std::fs::hard_link(tmp, target) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) if target.exists() => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(e),
        Err(_) => std::fs::rename(tmp, target).map(|()| true),
    }
}

/// A file placed in `dir` is made durable there.
fn placed_in(dir: &Path, placed: std::io::Result<bool>) -> std::io::Result<bool> {
    if matches!(placed, Ok(true)) {
        sync_dir(dir);
    }
    placed
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
    // Sized by the file's length (at most `limit`), so it is read in one go.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0) + 1);
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

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_prepared_file_takes_results_shorter_and_longer_than_its_block() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, bytes) in [
            ("short.xml", vec![b'a'; 10]),
            ("long.xml", vec![b'b'; 10_000]),
        ] {
            let mut spare = Some(prepare(dir.path()).unwrap());
            let ino = std::fs::metadata(&spare.as_ref().unwrap().tmp)
                .unwrap()
                .ino();
            assert_eq!(
                std::fs::metadata(&spare.as_ref().unwrap().tmp)
                    .unwrap()
                    .len(),
                std::fs::metadata(dir.path())
                    .unwrap()
                    .blksize()
                    .clamp(512, 65536),
                "one block, written"
            );
            assert!(write_new_into(dir.path(), name, &bytes, &mut spare).unwrap());
            assert!(spare.is_none(), "taken");
            let target = dir.path().join(name);
            assert_eq!(std::fs::read(&target).unwrap(), bytes, "exactly the result");
            assert_eq!(
                std::fs::metadata(&target).unwrap().ino(),
                ino,
                "the prepared file"
            );
        }
        assert_eq!(names_in(dir.path()), vec!["long.xml", "short.xml"]);
    }

    #[test]
    fn a_prepared_file_is_kept_while_the_name_is_taken_and_costs_only_time_when_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.xml"), b"first").unwrap();
        let mut spare = Some(prepare(dir.path()).unwrap());
        assert!(!write_new_into(dir.path(), "a.xml", b"second", &mut spare).unwrap());
        assert!(spare.is_some(), "not used, so kept for the next");
        assert_eq!(std::fs::read(dir.path().join("a.xml")).unwrap(), b"first");
        // Another program clears what it does not know from the folder.
        std::fs::remove_file(&spare.as_ref().unwrap().tmp).unwrap();
        assert!(write_new_into(dir.path(), "b.xml", b"result", &mut spare).unwrap());
        assert_eq!(std::fs::read(dir.path().join("b.xml")).unwrap(), b"result");
        assert_eq!(
            names_in(dir.path()),
            vec!["a.xml", "b.xml"],
            "no temporary file left"
        );
        // Dropped unused, it leaves nothing either.
        drop(prepare(dir.path()).unwrap());
        assert_eq!(names_in(dir.path()), vec!["a.xml", "b.xml"]);
    }

    #[test]
    fn only_old_temporary_files_of_other_runs_are_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
        let make = |name: &str, aged: bool| {
            let f = std::fs::File::create(dir.path().join(name)).unwrap();
            if aged {
                f.set_modified(old).unwrap();
            }
        };
        make(".OQSsiquc01res_x.xml.tsunagi-0badcafe-3.tmp", true);
        make(".spare.tsunagi-0badcafe-4.tmp", true);
        make(".spare.tsunagi-0badcafe-5.tmp", false);
        make(".unrelated", true);
        make("OQSsiquc01res_y.xml", true);
        let mine = prepare(dir.path()).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&mine.tmp)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(
            sweep_leftovers(dir.path(), std::time::Duration::from_secs(60)),
            2
        );
        let mut kept = vec![
            ".spare.tsunagi-0badcafe-5.tmp".to_string(),
            ".unrelated".to_string(),
            "OQSsiquc01res_y.xml".to_string(),
            mine.tmp.file_name().unwrap().to_string_lossy().into_owned(),
        ];
        kept.sort();
        assert_eq!(names_in(dir.path()), kept);
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
