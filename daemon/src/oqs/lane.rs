//! Two lanes to the qualification system: reception first, 事後確認 after.
//!
//! One [`OqsClient`](super::OqsClient) serves both the reception desk, where a patient waits
//! for the answer, and the reconciler, which drains captured checks up to eight at a time. If
//! both simply raced for the line, a burst of reconcile queries would sit in front of a
//! reception check exactly when the system is slow, which is when reception can least afford
//! it. So every handle belongs to a [`Lane`]:
//!
//! * [`Lane::Reception`] never waits: it counts itself in (a [`ReceptionGuard`]) and goes.
//! * [`Lane::Background`] first takes one of a bounded number of slots (a semaphore), then waits
//!   until no reception query is in flight, then goes. A reception query that starts after a
//!   background query has gone does not stop it: the lane decides who *starts*, it never
//!   interrupts an exchange already on the wire.
//!
//! The wake-up: a background query registers its interest in the "idle" [`Notify`] *before* it
//! reads the reception count, so a reception query that ends between the read and the await
//! still wakes it (`Notified::enable`, as tokio's docs describe for `notify_waiters`).
//!
//! Cancel safety: both passes are plain values released on drop. Dropping a reception query
//! mid-flight drops its guard, which counts it out and wakes the background lane; dropping a
//! background query while it waits gives its slot back. Nothing needs cleaning up by hand.
//!
//! Out of scope: fairness between background queries (tokio's semaphore is FIFO, which is
//! enough) and any limit on reception queries (they come from people at a desk, a few at most).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// Which lane a client handle's queries take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// A patient is waiting: never held back.
    Reception,
    /// 事後確認 and other work nobody waits for at the desk.
    Background,
}

/// The lanes' shared state: one per client and all its handles.
#[derive(Debug)]
pub(crate) struct Lanes {
    /// Reception queries in flight.
    reception: AtomicUsize,
    /// Signalled when `reception` drops to zero.
    idle: Notify,
    /// Background slots (taken while waiting for reception to be idle, too).
    background: Semaphore,
    /// The size of `background`.
    limit: usize,
}

/// Permission to send one query; dropping it ends the query's turn.
#[derive(Debug)]
#[must_use = "the query's turn ends when the pass is dropped"]
pub(crate) struct Pass<'a> {
    // Both are held only for their `Drop`.
    _reception: Option<ReceptionGuard<'a>>,
    _slot: Option<SemaphorePermit<'a>>,
}

/// Counts a reception query in flight until dropped.
#[derive(Debug)]
pub(crate) struct ReceptionGuard<'a> {
    lanes: &'a Lanes,
}

impl Drop for ReceptionGuard<'_> {
    fn drop(&mut self) {
        if self.lanes.reception.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last reception query ended: every waiting background query may go.
            self.lanes.idle.notify_waiters();
        }
    }
}

impl Lanes {
    /// Lanes allowing `background_limit` background queries at once (at least one).
    pub(crate) fn new(background_limit: usize) -> Self {
        let limit = background_limit.max(1);
        Self {
            reception: AtomicUsize::new(0),
            idle: Notify::new(),
            background: Semaphore::new(limit),
            limit,
        }
    }

    /// Waits for the lane's turn (never, for reception) and returns the pass for one query.
    ///
    /// Cancel safe: dropping the future before it resolves leaves no slot taken and no count
    /// changed.
    pub(crate) async fn enter(&self, lane: Lane) -> Pass<'_> {
        match lane {
            Lane::Reception => {
                self.reception.fetch_add(1, Ordering::AcqRel);
                Pass {
                    _reception: Some(ReceptionGuard { lanes: self }),
                    _slot: None,
                }
            }
            Lane::Background => {
                // The slot first: a query holding one is counted as busy while it waits, so the
                // bound covers everything the background lane is about to send. `acquire` fails
                // only on a closed semaphore, and this one is never closed.
                let slot = self.background.acquire().await.ok();
                loop {
                    let idle = self.idle.notified();
                    tokio::pin!(idle);
                    // Registered before the count is read: see the module docs.
                    idle.as_mut().enable();
                    if self.reception.load(Ordering::Acquire) == 0 {
                        break;
                    }
                    idle.await;
                }
                Pass {
                    _reception: None,
                    _slot: slot,
                }
            }
        }
    }

    /// Reception queries in flight now.
    pub(crate) fn reception_in_flight(&self) -> usize {
        self.reception.load(Ordering::Acquire)
    }

    /// Background slots taken now (queries in flight or waiting for reception to be idle).
    pub(crate) fn background_in_flight(&self) -> usize {
        self.limit
            .saturating_sub(self.background.available_permits())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Long enough for a runnable task to have run, short enough to keep the suite quick. Used
    /// only to show that something does *not* happen; nothing is timed.
    const SETTLE: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn background_waits_while_reception_in_flight() {
        // It holds a background query back while any reception query is in flight.
        let lanes = Arc::new(Lanes::new(8));
        let first = lanes.enter(Lane::Reception).await;
        let second = lanes.enter(Lane::Reception).await;
        assert_eq!(lanes.reception_in_flight(), 2);
        let waiting = {
            let lanes = lanes.clone();
            tokio::spawn(async move {
                let _pass = lanes.enter(Lane::Background).await;
            })
        };
        tokio::time::sleep(SETTLE).await;
        assert!(!waiting.is_finished(), "went while reception was busy");
        assert_eq!(lanes.background_in_flight(), 1, "waits holding its slot");
        drop(first);
        tokio::time::sleep(SETTLE).await;
        assert!(
            !waiting.is_finished(),
            "went while one reception query remained"
        );
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken when reception became idle")
            .unwrap();
        assert_eq!(lanes.background_in_flight(), 0);
        assert_eq!(lanes.reception_in_flight(), 0);
    }

    #[tokio::test]
    async fn reception_never_waits_on_a_full_background_lane() {
        // It lets reception through while every background slot is taken.
        let lanes = Lanes::new(2);
        let a = lanes.enter(Lane::Background).await;
        let b = lanes.enter(Lane::Background).await;
        assert_eq!(lanes.background_in_flight(), 2);
        let r = tokio::time::timeout(SETTLE, lanes.enter(Lane::Reception)).await;
        assert!(r.is_ok(), "reception waited");
        drop((a, b, r));
    }

    #[tokio::test]
    async fn background_in_flight_is_bounded() {
        // It never lets more than the limit through, and a freed slot lets the next one go.
        let lanes = Lanes::new(2);
        let a = lanes.enter(Lane::Background).await;
        let _b = lanes.enter(Lane::Background).await;
        assert!(
            tokio::time::timeout(SETTLE, lanes.enter(Lane::Background))
                .await
                .is_err(),
            "a third went with a limit of two"
        );
        drop(a);
        let c = tokio::time::timeout(SETTLE, lanes.enter(Lane::Background)).await;
        assert!(c.is_ok(), "a freed slot was not reused");
        assert_eq!(Lanes::new(0).limit, 1, "a zero limit would stall");
    }

    #[tokio::test]
    async fn cancelled_queries_release_what_they_held() {
        // It gives back the slot of a background query cancelled while waiting, and counts out
        // a reception query cancelled mid-flight.
        let lanes = Arc::new(Lanes::new(1));
        let reception = {
            let lanes = lanes.clone();
            tokio::spawn(async move {
                let _pass = lanes.enter(Lane::Reception).await;
                std::future::pending::<()>().await;
            })
        };
        tokio::time::sleep(SETTLE).await;
        assert_eq!(lanes.reception_in_flight(), 1);
        // Waits for reception holding the only slot, then is cancelled.
        let r = tokio::time::timeout(SETTLE, lanes.enter(Lane::Background)).await;
        assert!(r.is_err());
        assert_eq!(
            lanes.background_in_flight(),
            0,
            "the cancelled wait kept its slot"
        );
        reception.abort();
        assert!(reception.await.unwrap_err().is_cancelled());
        assert_eq!(
            lanes.reception_in_flight(),
            0,
            "the aborted query stayed counted"
        );
        let r = tokio::time::timeout(SETTLE, lanes.enter(Lane::Background)).await;
        assert!(
            r.is_ok(),
            "background stayed blocked after the cancellations"
        );
    }
}
