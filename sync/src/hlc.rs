//! Hybrid logical clock (ハイブリッド論理時計): wall-clock milliseconds plus a counter, so events
//! written on different devices order consistently even when their clocks disagree a little.
//!
//! A timestamp from a peer more than [`MAX_DRIFT`] ahead of our wall clock is refused instead of
//! being adopted: one device with a wrong clock must not drag every device's clock into the
//! future.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// How far ahead of our wall clock a remote timestamp may be.
pub const MAX_DRIFT_MS: u64 = 5 * 60 * 1000;

/// A hybrid logical clock timestamp. Ordered by (wall, counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp {
    /// Milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// Tie-breaker within one millisecond.
    pub counter: u32,
}

/// A timestamp far outside what our clock allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timestamp {remote_ms} ms is {ahead_ms} ms ahead of this device's clock")]
pub struct ClockSkew {
    /// The remote wall time.
    pub remote_ms: u64,
    /// How far ahead of ours.
    pub ahead_ms: u64,
}

/// A clock source, so tests can set the wall time.
pub trait WallClock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// The clock of one device.
pub struct Hlc<C = SystemClock> {
    wall: C,
    last: Mutex<Timestamp>,
}

impl<C> std::fmt::Debug for Hlc<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hlc").finish_non_exhaustive()
    }
}

impl Default for Hlc<SystemClock> {
    fn default() -> Self {
        Self::new(SystemClock)
    }
}

impl<C: WallClock> Hlc<C> {
    /// A clock reading `wall`.
    pub fn new(wall: C) -> Self {
        Self {
            wall,
            last: Mutex::new(Timestamp {
                wall_ms: 0,
                counter: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timestamp> {
        // A panic while holding this lock cannot leave the timestamp half-written.
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new timestamp, later than every one this clock has issued or observed.
    pub fn now(&self) -> Timestamp {
        let wall = self.wall.now_ms();
        let mut last = self.lock();
        let next = if wall > last.wall_ms {
            Timestamp {
                wall_ms: wall,
                counter: 0,
            }
        } else {
            Timestamp {
                wall_ms: last.wall_ms,
                counter: last.counter.saturating_add(1),
            }
        };
        *last = next;
        next
    }

    /// Takes a peer's timestamp into account, so our next one orders after it.
    pub fn observe(&self, remote: Timestamp) -> Result<(), ClockSkew> {
        let wall = self.wall.now_ms();
        if remote.wall_ms > wall.saturating_add(MAX_DRIFT_MS) {
            return Err(ClockSkew {
                remote_ms: remote.wall_ms,
                ahead_ms: remote.wall_ms - wall,
            });
        }
        let mut last = self.lock();
        if remote > *last {
            *last = remote;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Manual(Arc<AtomicU64>);
    impl WallClock for Manual {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn monotonic_even_when_the_wall_clock_goes_back() {
        let wall = Manual::default();
        wall.0.store(1_000, Ordering::SeqCst);
        let hlc = Hlc::new(wall.clone());
        let a = hlc.now();
        wall.0.store(500, Ordering::SeqCst);
        let b = hlc.now();
        assert!(b > a);
        assert_eq!(b.wall_ms, 1_000);
    }

    #[test]
    fn observes_peers_but_refuses_a_far_future() {
        let wall = Manual::default();
        wall.0.store(10_000, Ordering::SeqCst);
        let hlc = Hlc::new(wall);
        let remote = Timestamp {
            wall_ms: 12_000,
            counter: 7,
        };
        hlc.observe(remote).unwrap();
        assert!(hlc.now() > remote);
        let far = Timestamp {
            wall_ms: 10_000 + MAX_DRIFT_MS + 1,
            counter: 0,
        };
        assert!(hlc.observe(far).is_err());
    }
}
