//! Result files made ready ahead in `res` (予備ファイル), so a receipt computer waits for an
//! answer's contents to be written and synced, not for a new file's allocation
//! ([`files::Prepared`]). A few are kept; each result takes one, and the pool is filled again
//! on the blocking pool after it. Without one (none ready, or the folder is a share that
//! cannot prepare) a result goes into a new file as before: spares only save time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::files::{self, Prepared};
use super::lock;

/// How many are kept: one for each request answered at once.
const KEPT: usize = super::CONCURRENT;
/// How often a full pool is checked for spares another program removed (a receipt computer
/// that clears what it does not know from `res`): each would cost its result the time of a
/// new file.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The pool, shared by the jobs (cheap to clone).
#[derive(Clone, Default)]
pub struct Spares {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    files: Mutex<Vec<Prepared>>,
    /// A fill runs now (one at a time: a share that hangs holds one blocking thread).
    filling: AtomicBool,
    /// Closed at shutdown: a fill that finishes after it removes what it made.
    closed: AtomicBool,
    /// When the spares were last checked to be there.
    checked: Mutex<Option<Instant>>,
    /// The last fill could not make a spare (a folder that refuses them is not asked again
    /// before the next check).
    failed: AtomicBool,
}

impl Spares {
    /// Runs `f` with a spare when one is ready; one `f` did not use is kept for the next.
    /// Blocking (an unused spare may be removed): call on the blocking pool.
    pub fn with<T>(&self, f: impl FnOnce(&mut Option<Prepared>) -> T) -> T {
        let mut spare = lock(&self.inner.files).pop();
        let out = f(&mut spare);
        if let Some(s) = spare {
            self.put(s);
        }
        out
    }

    fn put(&self, spare: Prepared) {
        let mut files = lock(&self.inner.files);
        // Under the lock, so none is kept after `close` took them.
        if self.inner.closed.load(Ordering::Acquire) {
            drop(files);
            drop(spare);
            return;
        }
        files.push(spare);
    }

    /// Fills the pool in `dir` in the background, unless it is full (and was checked lately)
    /// or being filled.
    pub fn fill(&self, dir: PathBuf) {
        if self.inner.closed.load(Ordering::Acquire) {
            return;
        }
        let full = lock(&self.inner.files).len() >= KEPT;
        let checked = lock(&self.inner.checked).is_some_and(|t| t.elapsed() < CHECK_EVERY);
        if checked && (full || self.inner.failed.load(Ordering::Acquire)) {
            return;
        }
        if self.inner.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        // Not waited for: a fill only makes files for this pool, and one it makes after the
        // pool closed is removed at once.
        tokio::task::spawn_blocking(move || {
            let kept = std::mem::take(&mut *lock(&me.inner.files));
            let (there, gone): (Vec<_>, Vec<_>) = kept.into_iter().partition(Prepared::is_there);
            if !gone.is_empty() {
                tracing::debug!(
                    gone = gone.len(),
                    "spare result files removed by another program"
                );
            }
            drop(gone);
            for spare in there {
                me.put(spare);
            }
            *lock(&me.inner.checked) = Some(Instant::now());
            me.inner.failed.store(false, Ordering::Release);
            while !me.inner.closed.load(Ordering::Acquire) && lock(&me.inner.files).len() < KEPT {
                match files::prepare(&dir) {
                    Ok(spare) => me.put(spare),
                    Err(e) => {
                        tracing::debug!(error = %e, "no spare result file; results go into new files");
                        me.inner.failed.store(true, Ordering::Release);
                        break;
                    }
                }
            }
            me.inner.filling.store(false, Ordering::Release);
        });
    }

    /// Closes the pool: its files are removed (blocking: call on the blocking pool).
    pub fn close(&self) {
        let kept = {
            let mut files = lock(&self.inner.files);
            self.inner.closed.store(true, Ordering::Release);
            std::mem::take(&mut *files)
        };
        drop(kept);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_fills_gives_out_one_at_a_time_and_leaves_nothing_when_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spares = Spares::default();
        spares.fill(dir.path().to_path_buf());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while count(dir.path()) < KEPT || spares.inner.filling.load(Ordering::Acquire) {
            assert!(std::time::Instant::now() < deadline, "pool not filled");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(count(dir.path()), KEPT);
        // One not used goes back; one used is gone from the pool.
        let s = spares.clone();
        tokio::task::spawn_blocking(move || s.with(|spare| assert!(spare.is_some())))
            .await
            .unwrap();
        assert_eq!(lock(&spares.inner.files).len(), KEPT);
        let s = spares.clone();
        tokio::task::spawn_blocking(move || s.with(|spare| drop(spare.take())))
            .await
            .unwrap();
        assert_eq!(lock(&spares.inner.files).len(), KEPT - 1);
        assert_eq!(count(dir.path()), KEPT - 1);
        let s = spares.clone();
        tokio::task::spawn_blocking(move || s.close())
            .await
            .unwrap();
        assert_eq!(count(dir.path()), 0, "closed: no spare left");
        // A fill after the end makes nothing.
        spares.fill(dir.path().to_path_buf());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(count(dir.path()), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spare_made_after_the_pool_closed_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spares = Spares::default();
        let s = spares.clone();
        tokio::task::spawn_blocking(move || s.close())
            .await
            .unwrap();
        let (s, d) = (spares.clone(), dir.path().to_path_buf());
        tokio::task::spawn_blocking(move || s.put(files::prepare(&d).unwrap()))
            .await
            .unwrap();
        assert_eq!(count(dir.path()), 0);
    }
}
