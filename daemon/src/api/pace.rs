//! Pacing of read requests (読み取りの流量制限): token buckets shared by every read route, so
//! a client that polls in a tight loop (a tray or a receipt computer gone wrong) cannot take the
//! CPU that reception checks need on a two-core counter PC. While a reception request is in
//! flight, reads go through a bucket ten times narrower. Reception routes (checks, documents,
//! records) are never paced.
//!
//! A read over the budget waits its turn (an async sleep costs nothing); one that would wait
//! longer than [`MAX_WAIT`] is refused with 429 and `Retry-After`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::Problem;

/// The longest a read waits for its turn before it is refused.
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// A token bucket: `rate` tokens a second, holding at most a tenth of a second's worth, so
/// short bursts pass at once and a sustained flood is slowed to `rate`.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    burst: Duration,
    /// The theoretical time of the next read at the steady rate (GCRA): a read may go at once
    /// while this is no more than `burst` ahead of now.
    next_free: Mutex<Instant>,
}

impl Pacer {
    /// `rate` reads a second (at least 1).
    pub fn new(rate: u32) -> Self {
        let rate = rate.max(1);
        Self {
            interval: Duration::from_secs(1) / rate,
            burst: Duration::from_millis(100),
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// How long this read must wait, or `Err(retry_after)` when the wait would be too long.
    /// Taking a turn is decided at once; the caller sleeps outside the lock.
    pub fn turn(&self, now: Instant) -> Result<Duration, Duration> {
        let mut next = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        let start = (*next).max(now);
        let wait = start
            .saturating_duration_since(now)
            .saturating_sub(self.burst);
        if wait > MAX_WAIT {
            return Err(wait - MAX_WAIT + Duration::from_secs(1));
        }
        *next = start + self.interval;
        Ok(wait)
    }
}

/// The read buckets the token API and the reception page share, and the reception requests
/// in flight that narrow them.
#[derive(Debug)]
pub struct Pacing {
    reads: Pacer,
    reads_during_reception: Pacer,
    reception: Arc<AtomicUsize>,
}

impl Pacing {
    /// `rate` reads a second; a tenth of it while a reception request is in flight.
    pub fn new(rate: u32) -> Self {
        Self {
            reads: Pacer::new(rate),
            reads_during_reception: Pacer::new(rate / 10),
            reception: Arc::default(),
        }
    }
}

/// Reads wait their turn in the shared budget; reception requests (every POST) pass at once.
pub async fn pace_reads(State(app): State<Arc<Pacing>>, request: Request, next: Next) -> Response {
    // A reconcile pass is not reception: it neither narrows the reads nor is counted.
    if request.method() != Method::GET && request.uri().path() != "/v1/reconcile" {
        /// Counts a reception request out when it ends, however it ends.
        struct InFlight(Arc<AtomicUsize>);
        impl Drop for InFlight {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        app.reception.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(app.reception.clone());
        return next.run(request).await;
    }
    if request.method() == Method::GET {
        let pacer = if app.reception.load(Ordering::SeqCst) > 0 {
            &app.reads_during_reception
        } else {
            &app.reads
        };
        match pacer.turn(Instant::now()) {
            Ok(wait) if wait.is_zero() => {}
            Ok(wait) => tokio::time::sleep(wait).await,
            Err(retry_after) => {
                let mut response = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too-many-reads",
                    "Too many reads",
                    "問い合わせが多すぎます。少し待ってからもう一度お試しください（状態の変化は /v1/events で受け取れます）。",
                )
                .into_response();
                if let Ok(v) =
                    header::HeaderValue::from_str(&retry_after.as_secs().max(1).to_string())
                {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return response;
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_pass_floods_are_slowed_then_refused() {
        let p = Pacer::new(1000);
        let t0 = Instant::now() + Duration::from_secs(1);
        // A burst of 100 ms worth goes at once.
        for _ in 0..=100 {
            assert_eq!(p.turn(t0), Ok(Duration::ZERO));
        }
        // Then each read waits one interval more than the one before.
        assert_eq!(p.turn(t0), Ok(Duration::from_millis(1)));
        assert_eq!(p.turn(t0), Ok(Duration::from_millis(2)));
        // A flood queues up to MAX_WAIT, then is refused without taking a turn.
        let mut refused = 0;
        for _ in 0..2000 {
            if p.turn(t0).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 2000 - 998);
        // Time passing refills the bucket.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(p.turn(later), Ok(Duration::ZERO));
        // A steady reader under the rate never waits.
        let q = Pacer::new(1000);
        for i in 0..1000u64 {
            assert_eq!(
                q.turn(t0 + Duration::from_millis(2 * i)),
                Ok(Duration::ZERO)
            );
        }
    }
}
