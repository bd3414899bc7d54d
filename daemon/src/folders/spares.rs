//! Result files made ready ahead in `res` (予備ファイル), so a receipt computer waits for an
//! answer's contents to be written and synced, not for a new file's allocation
//! ([`files::Prepared`]). A few are kept while requests come; each result takes one, and the
//! pool is filled again on the blocking pool after it. Without one (none ready, or the
//! folder is a share that cannot prepare) a result goes into a new file as before: spares
//! only save time.
//!
//! A result keeps its spare's birth time (Windows shows it as the creation time through a
//! share), so spares are made again once they are [`Limits::max_age`] old, and none are kept
//! when no request came for [`Limits::idle`]: an idle clinic's disk is left alone, and a
//! result is never born long before its request.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::files::{self, Prepared};
use super::lock;

/// How many are kept: one for each request answered at once.
const KEPT: usize = super::CONCURRENT;

/// When spares are checked, made again and given up.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How often a full pool is checked for spares another program removed (a receipt
    /// computer that clears what it does not know from `res`) or grown old.
    pub check_every: Duration,
    /// Older spares are made again.
    pub max_age: Duration,
    /// None are kept once no request came for this long.
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            check_every: Duration::from_secs(5),
            max_age: Duration::from_secs(60),
            idle: Duration::from_secs(600),
        }
    }
}

/// The pool, shared by the jobs (cheap to clone).
#[derive(Clone, Default)]
pub struct Spares {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    limits: Limits,
    files: Mutex<Vec<Prepared>>,
    /// A fill runs now (one at a time: a share that hangs holds one blocking thread).
    filling: AtomicBool,
    /// Closed at shutdown: a fill that finishes after it removes what it made.
    closed: AtomicBool,
    /// When the spares were last checked.
    checked: Mutex<Option<Instant>>,
    /// The last fill could not make a spare (a folder that refuses them is not asked again
    /// before the next check).
    failed: AtomicBool,
    /// When a result last asked for a spare.
    asked: Mutex<Option<Instant>>,
}

impl Spares {
    #[cfg(test)]
    fn with_limits(limits: Limits) -> Self {
        Self {
            inner: Arc::new(Inner {
                limits,
                ..Inner::default()
            }),
        }
    }

    /// Runs `f` with a spare when one is ready; one `f` did not use is kept for the next.
    /// Blocking (an unused spare may be removed): call on the blocking pool.
    pub fn with<T>(&self, f: impl FnOnce(&mut Option<Prepared>) -> T) -> T {
        *lock(&self.inner.asked) = Some(Instant::now());
        let mut spare = lock(&self.inner.files).pop();
        let out = f(&mut spare);
        if let Some(s) = spare {
            self.put(s);
        }
        out
    }

    /// Keeps `spare` unless the pool is closed or full (a fill may have made more while jobs
    /// held some): then it is removed.
    fn put(&self, spare: Prepared) {
        let mut files = lock(&self.inner.files);
        // Under the lock, so none is kept after `close` took them.
        if self.inner.closed.load(Ordering::Acquire) || files.len() >= KEPT {
            drop(files);
            drop(spare);
            return;
        }
        files.push(spare);
    }

    fn wanted(&self) -> bool {
        lock(&self.inner.asked).is_some_and(|t| t.elapsed() < self.inner.limits.idle)
    }

    /// Checks and fills the pool in `dir` in the background when it is due: the pool lacks
    /// spares while requests come, or its last check is [`Limits::check_every`] old. One
    /// fill at a time.
    pub fn fill(&self, dir: PathBuf) {
        if self.inner.closed.load(Ordering::Acquire) {
            return;
        }
        let limits = self.inner.limits;
        let checked = lock(&self.inner.checked).is_some_and(|t| t.elapsed() < limits.check_every);
        let lacking = self.wanted()
            && lock(&self.inner.files).len() < KEPT
            && !self.inner.failed.load(Ordering::Acquire);
        if checked && !lacking {
            return;
        }
        if self.inner.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        // Not waited for: a fill only makes files for this pool, and one it makes after the
        // pool closed is removed at once.
        tokio::task::spawn_blocking(move || {
            let wanted = me.wanted();
            let kept = std::mem::take(&mut *lock(&me.inner.files));
            let (good, dropped): (Vec<_>, Vec<_>) = kept
                .into_iter()
                .partition(|s| wanted && s.age() < limits.max_age && s.is_there());
            drop(dropped);
            for spare in good {
                me.put(spare);
            }
            *lock(&me.inner.checked) = Some(Instant::now());
            me.inner.failed.store(false, Ordering::Release);
            while wanted
                && !me.inner.closed.load(Ordering::Acquire)
                && lock(&me.inner.files).len() < KEPT
            {
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

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(f).await.unwrap()
    }

    /// Fills and waits for the fill to end.
    async fn filled(spares: &Spares, dir: &std::path::Path) {
        spares.fill(dir.to_path_buf());
        let deadline = Instant::now() + Duration::from_secs(10);
        while spares.inner.filling.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "fill did not end");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A result's turn: asks for a spare and takes it when `take`.
    async fn result(spares: &Spares, take: bool) -> bool {
        let s = spares.clone();
        blocking(move || {
            s.with(|spare| {
                let had = spare.is_some();
                if take {
                    drop(spare.take());
                }
                had
            })
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spares_are_made_once_results_come_and_none_is_left_when_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spares = Spares::default();
        filled(&spares, dir.path()).await;
        assert!(names(dir.path()).is_empty(), "none before a request came");
        assert!(!result(&spares, true).await, "the first result had none");
        filled(&spares, dir.path()).await;
        assert_eq!(names(dir.path()).len(), KEPT);
        // One not used goes back; one used is gone from the pool.
        assert!(result(&spares, false).await);
        assert_eq!(lock(&spares.inner.files).len(), KEPT);
        assert!(result(&spares, true).await);
        assert_eq!(lock(&spares.inner.files).len(), KEPT - 1);
        assert_eq!(names(dir.path()).len(), KEPT - 1);
        // Never more than KEPT, however many come back.
        let (s, d) = (spares.clone(), dir.path().to_path_buf());
        blocking(move || {
            for _ in 0..3 {
                s.put(files::prepare(&d).unwrap());
            }
        })
        .await;
        assert_eq!(names(dir.path()).len(), KEPT);
        let s = spares.clone();
        blocking(move || s.close()).await;
        assert!(names(dir.path()).is_empty(), "closed: no spare left");
        // A fill after the end makes nothing; a spare made after it is removed.
        filled(&spares, dir.path()).await;
        let (s, d) = (spares.clone(), dir.path().to_path_buf());
        blocking(move || s.put(files::prepare(&d).unwrap())).await;
        assert!(names(dir.path()).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spares_removed_by_another_program_or_grown_old_are_made_again_and_idle_ones_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = Limits {
            check_every: Duration::from_millis(100),
            max_age: Duration::from_millis(400),
            idle: Duration::from_millis(1500),
        };
        let spares = Spares::with_limits(limits);
        result(&spares, true).await;
        filled(&spares, dir.path()).await;
        let first = names(dir.path());
        assert_eq!(first.len(), KEPT);
        // A receipt computer clears what it does not know from res: at the next check, the
        // pool is made again, full.
        for n in &first {
            std::fs::remove_file(dir.path().join(n)).unwrap();
        }
        tokio::time::sleep(limits.check_every).await;
        filled(&spares, dir.path()).await;
        let second = names(dir.path());
        assert_eq!(second.len(), KEPT);
        assert_eq!(
            lock(&spares.inner.files).len(),
            KEPT,
            "no spare whose file is gone"
        );
        // Grown old: made again.
        tokio::time::sleep(limits.max_age).await;
        filled(&spares, dir.path()).await;
        let third = names(dir.path());
        assert_eq!(third.len(), KEPT);
        assert!(third.iter().all(|n| !second.contains(n)), "all made again");
        // No request for `idle`: none kept.
        tokio::time::sleep(limits.idle).await;
        filled(&spares, dir.path()).await;
        assert!(names(dir.path()).is_empty(), "an idle pool keeps nothing");
        assert!(lock(&spares.inner.files).is_empty());
    }
}
