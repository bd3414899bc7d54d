//! Fault injection, switchable at runtime from tests or the admin endpoint.
//!
//! [`Faults`] is a cheap clone handle over one shared state. Changing the mode to or from
//! [`FaultMode::Refuse`] wakes the listener task (through a `watch` channel), which drops or
//! rebinds the main listener. Until that task has run, connections that slip through are
//! accepted and dropped at once, so a refused client never gets an answer either way.
//! Leaving Refuse binds the port again before the call returns (the task picks the socket
//! up), so a client that asks right after `clear()` is answered, not refused.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Size of the [`MalformedKind::Huge`] answer: 200 MiB.
pub const HUGE_ANSWER_BYTES: u64 = 200 * 1024 * 1024;

/// How a malformed answer is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MalformedKind {
    /// A result envelope cut in the middle.
    TruncatedJson,
    /// Plain text with a JSON content type.
    NotJson,
    /// Numbers where the contract has strings.
    WrongTypes,
    /// A well-formed envelope of [`HUGE_ANSWER_BYTES`] (a padding element), streamed in chunks
    /// without a `Content-Length`, so that only a client reading under a limit survives it.
    /// The simulator never holds it in memory.
    Huge,
    /// The real answer to the request, well-formed, with a code value outside its table
    /// (`Sex1` = `9` in every record; OQSCD007 has 1, 2, 3).
    UnknownCodeValue,
    /// The real answer to the request, well-formed, contradicting itself: every record twice,
    /// under QualificationValidity 1 (有効 needs exactly one).
    Inconsistent,
}

/// The injected fault. JSON (admin endpoint) uses serde's default external tagging:
/// `"None"`, `"Refuse"`, `{"ServerError":503}`, `{"Malformed":"NotJson"}`,
/// `{"RateLimit":{"retry_after_secs":5}}`, `"SystemError"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultMode {
    /// Normal operation.
    None,
    /// TCP connections are refused (the listener is closed).
    Refuse,
    /// Searches answer with this HTTP status and an HTML body.
    ServerError(u16),
    /// Searches answer HTTP 200 with a broken body.
    Malformed(MalformedKind),
    /// Searches answer HTTP 429 with `Retry-After`.
    RateLimit {
        /// Seconds in the `Retry-After` header.
        retry_after_secs: u64,
    },
    /// Searches answer SegmentOfResult 9 with SIM-E0900.
    SystemError,
}

/// The full fault state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FaultState {
    pub(crate) mode: FaultMode,
    pub(crate) delay: Duration,
}

/// Clone handle to the simulator's fault switches.
#[derive(Clone, Debug)]
pub struct Faults {
    tx: Arc<watch::Sender<FaultState>>,
    main: Arc<Mutex<MainSocket>>,
}

/// The main listener's address, and the socket bound again on leaving Refuse, waiting for
/// the listener task.
#[derive(Debug, Default)]
struct MainSocket {
    addr: Option<SocketAddr>,
    ready: Option<std::net::TcpListener>,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new()
    }
}

impl Faults {
    /// No fault, no delay.
    pub fn new() -> Self {
        let (tx, _rx) = watch::channel(FaultState {
            mode: FaultMode::None,
            delay: Duration::ZERO,
        });
        Self {
            tx: Arc::new(tx),
            main: Arc::default(),
        }
    }

    /// Sets the fault mode (the delay is kept).
    pub fn set_mode(&self, m: FaultMode) {
        self.leaving_refuse(m);
        self.tx.send_modify(|s| s.mode = m);
    }

    /// Tells the switches where the main listener is, so leaving Refuse can bind it again.
    pub(crate) fn attach(&self, addr: SocketAddr) {
        self.lock_main().addr = Some(addr);
    }

    /// The socket bound on leaving Refuse, for the listener task.
    pub(crate) fn take_ready(&self) -> Option<std::net::TcpListener> {
        self.lock_main().ready.take()
    }

    fn lock_main(&self) -> std::sync::MutexGuard<'_, MainSocket> {
        self.main.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Binds the main port now when the mode leaves Refuse. Should the bind fail (the old
    /// listener not dropped yet), the listener task binds it itself, as before.
    fn leaving_refuse(&self, next: FaultMode) {
        if self.mode() != FaultMode::Refuse || next == FaultMode::Refuse {
            return;
        }
        let mut main = self.lock_main();
        let Some(addr) = main.addr else { return };
        if main.ready.is_none() {
            main.ready = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .ok();
        }
    }

    /// Sets the delay applied before every answer on the main listener.
    pub fn set_delay(&self, d: Duration) {
        self.tx.send_modify(|s| s.delay = d);
    }

    /// Back to normal: no fault, no delay.
    pub fn clear(&self) {
        self.leaving_refuse(FaultMode::None);
        self.tx.send_modify(|s| {
            s.mode = FaultMode::None;
            s.delay = Duration::ZERO;
        });
    }

    /// The current mode.
    pub fn mode(&self) -> FaultMode {
        self.tx.borrow().mode
    }

    /// The current delay.
    pub fn delay(&self) -> Duration {
        self.tx.borrow().delay
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<FaultState> {
        self.tx.subscribe()
    }
}

/// Body of `POST /_sim/faults` and answer of `GET /_sim/faults`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRequest {
    /// New mode; absent keeps the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FaultMode>,
    /// New delay in milliseconds; absent keeps the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn modes_round_trip_as_documented() {
        let m: FaultMode = serde_json::from_str(r#"{"ServerError":503}"#).unwrap();
        assert_eq!(m, FaultMode::ServerError(503));
        let m: FaultMode = serde_json::from_str(r#"{"RateLimit":{"retry_after_secs":5}}"#).unwrap();
        assert_eq!(
            m,
            FaultMode::RateLimit {
                retry_after_secs: 5
            }
        );
        let m: FaultMode = serde_json::from_str(r#"{"Malformed":"WrongTypes"}"#).unwrap();
        assert_eq!(m, FaultMode::Malformed(MalformedKind::WrongTypes));
        assert_eq!(
            serde_json::to_string(&FaultMode::Refuse).unwrap(),
            r#""Refuse""#
        );
    }

    #[test]
    fn clear_resets_mode_and_delay() {
        let f = Faults::new();
        let g = f.clone();
        g.set_mode(FaultMode::SystemError);
        g.set_delay(Duration::from_millis(5));
        assert_eq!(f.mode(), FaultMode::SystemError);
        f.clear();
        assert_eq!(g.mode(), FaultMode::None);
        assert_eq!(g.delay(), Duration::ZERO);
    }
}
