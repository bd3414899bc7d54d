//! Plugging a [`VirtualCard`] into the real pcscd through vpcd (vsmartcard): the card process
//! connects to vpcd's TCP port, and every message is a 2-byte big-endian length plus payload.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::card::{ApduLog, VirtualCard};

/// Errors attaching a card to vpcd.
#[derive(Debug, thiserror::Error)]
pub enum VpcdError {
    /// vpcd did not accept a connection in time (is pcscd running with the vpcd driver?).
    #[error("cannot connect to vpcd at {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// The last connection error.
        source: std::io::Error,
    },
    /// The serving thread could not be started.
    #[error("cannot start the card thread: {0}")]
    Thread(std::io::Error),
}

/// How an attached card behaves.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// After this many APDUs (control messages not counted), close the socket: the card is
    /// pulled out in the middle of whatever the client was doing.
    pub remove_after_commands: Option<usize>,
}

/// How long `attach` keeps retrying: pcscd may still be loading the vpcd driver.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// vpcd control bytes.
const CTRL_POWER_OFF: u8 = 0x00;
const CTRL_POWER_ON: u8 = 0x01;
const CTRL_RESET: u8 = 0x02;
const CTRL_GET_ATR: u8 = 0x04;

/// A card sitting in a vpcd slot, served by a background thread; drop = card removed (close
/// socket, join thread).
pub struct AttachedCard {
    addr: SocketAddr,
    log: ApduLog,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    stop: AtomicBool,
    /// The live connection, kept so that drop can shut it down and unblock the reader.
    stream: Mutex<Option<TcpStream>>,
}

impl Shared {
    fn set_stream(&self, s: Option<TcpStream>) {
        *self.stream.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    fn shutdown(&self) {
        if let Some(s) = self
            .stream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl std::fmt::Debug for AttachedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedCard")
            .field("addr", &self.addr)
            .field(
                "running",
                &self.thread.as_ref().is_some_and(|t| !t.is_finished()),
            )
            .finish_non_exhaustive()
    }
}

impl AttachedCard {
    /// The card's APDU log.
    pub fn log(&self) -> ApduLog {
        self.log.clone()
    }

    /// True while the card is still in the reader (it can leave by itself with
    /// `remove_after_commands`).
    pub fn is_inserted(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Pulls the card out of the reader.
    pub fn remove(self) {
        drop(self);
    }
}

impl Drop for AttachedCard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects `card` to vpcd at `addr` (see `harness::slot_addr`) and serves it from a thread.
/// If vpcd goes away (pcscd restarted), the card keeps trying to reconnect until dropped,
/// so a restarted pcscd sees it inserted again.
pub fn attach(
    card: VirtualCard,
    addr: SocketAddr,
    options: AttachOptions,
) -> Result<AttachedCard, VpcdError> {
    let stream = connect_with_retry(addr, CONNECT_PATIENCE)?;
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        stream: Mutex::new(stream.try_clone().ok()),
    });
    let log = card.log();
    let thread = std::thread::Builder::new()
        .name(format!("vcard-{}", addr.port()))
        .spawn({
            let shared = shared.clone();
            move || serve(card, stream, addr, options, &shared)
        })
        .map_err(VpcdError::Thread)?;
    Ok(AttachedCard {
        addr,
        log,
        shared,
        thread: Some(thread),
    })
}

fn connect_with_retry(addr: SocketAddr, patience: Duration) -> Result<TcpStream, VpcdError> {
    let deadline = Instant::now() + patience;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(source) if Instant::now() >= deadline => {
                return Err(VpcdError::Connect { addr, source })
            }
            Err(_) => std::thread::sleep(RETRY_PAUSE),
        }
    }
}

/// Why one connection ended.
enum End {
    /// vpcd closed or broke the connection.
    PeerGone,
    /// The card was pulled (option) or the handle dropped.
    Removed,
}

fn serve(
    mut card: VirtualCard,
    mut stream: TcpStream,
    addr: SocketAddr,
    options: AttachOptions,
    shared: &Shared,
) {
    let mut budget = options.remove_after_commands;
    loop {
        let end = serve_connection(&mut card, &mut stream, &mut budget, shared);
        let _ = stream.shutdown(Shutdown::Both);
        shared.set_stream(None);
        // Whatever happened, the card lost power.
        card.power_off();
        if matches!(end, End::Removed) || shared.stop.load(Ordering::SeqCst) {
            return;
        }
        tracing::debug!(%addr, "vpcd closed the connection; reconnecting");
        // Reconnect quietly until vpcd is back or the handle is dropped.
        stream = loop {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            match connect_with_retry(addr, Duration::from_millis(500)) {
                Ok(s) => break s,
                Err(_) => continue,
            }
        };
        shared.set_stream(stream.try_clone().ok());
        // Drop may have run between the check and the store; re-check so it cannot hang.
        if shared.stop.load(Ordering::SeqCst) {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn serve_connection(
    card: &mut VirtualCard,
    stream: &mut TcpStream,
    budget: &mut Option<usize>,
    shared: &Shared,
) -> End {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return End::Removed;
        }
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return End::PeerGone;
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut msg).is_err() {
            return End::PeerGone;
        }
        let reply = match msg.as_slice() {
            [CTRL_POWER_OFF] => {
                card.power_off();
                None
            }
            [CTRL_POWER_ON] => {
                card.power_on();
                None
            }
            [CTRL_RESET] => {
                card.reset();
                None
            }
            [CTRL_GET_ATR] => Some(card.atr()),
            [other] => {
                tracing::debug!(byte = other, "unknown vpcd control message");
                None
            }
            apdu => {
                if *budget == Some(0) {
                    return End::Removed;
                }
                if let Some(n) = budget.as_mut() {
                    *n -= 1;
                }
                Some(card.transmit(apdu))
            }
        };
        if let Some(reply) = reply {
            if send(stream, &reply).is_err() {
                return End::PeerGone;
            }
        }
        if *budget == Some(0) {
            return End::Removed;
        }
    }
}

fn send(stream: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(payload.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "reply too long"))?;
    let mut frame = Vec::with_capacity(payload.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::card::{CardProfile, ATR, JPKI_AID};
    use crate::pki;
    use std::net::TcpListener;

    /// Plays vpcd: a listener the card connects to.
    fn fake_vpcd() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    }

    fn card() -> VirtualCard {
        let keys = pki::key_pool(1).unwrap();
        VirtualCard::new(CardProfile::new("vpcd-test", &keys[0], vec![0x30, 0x00], vec![]).unwrap())
    }

    fn exchange(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
        send(s, msg).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut r = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut r).unwrap();
        r
    }

    fn select_jpki() -> Vec<u8> {
        let mut v = vec![0x00, 0xA4, 0x04, 0x0C, 0x0A];
        v.extend_from_slice(&JPKI_AID);
        v
    }

    #[test]
    fn it_speaks_the_vpcd_protocol_and_detaches_on_drop() {
        let (l, addr) = fake_vpcd();
        let attached = attach(card(), addr, AttachOptions::default()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        send(&mut s, &[CTRL_POWER_ON]).unwrap();
        assert_eq!(exchange(&mut s, &[CTRL_GET_ATR]), ATR.to_vec());
        assert_eq!(exchange(&mut s, &select_jpki()), vec![0x90, 0x00]);
        assert!(attached.log().was_selected(&JPKI_AID));
        assert!(format!("{attached:?}").contains("AttachedCard"));
        attached.remove();
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).unwrap(), 0, "socket closed on removal");
    }

    #[test]
    fn it_pulls_itself_out_after_n_commands() {
        let (l, addr) = fake_vpcd();
        let attached = attach(
            card(),
            addr,
            AttachOptions {
                remove_after_commands: Some(2),
            },
        )
        .unwrap();
        let (mut s, _) = l.accept().unwrap();
        assert_eq!(exchange(&mut s, &[CTRL_GET_ATR]), ATR.to_vec());
        assert_eq!(exchange(&mut s, &select_jpki()), vec![0x90, 0x00]);
        assert_eq!(
            exchange(&mut s, &[0x00, 0xCA, 0x00, 0x00, 0x00]),
            vec![0x6D, 0x00]
        );
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
        // It stays out: no reconnection.
        l.set_nonblocking(true).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(l.accept().is_err());
        assert!(!attached.is_inserted());
    }

    #[test]
    fn it_reconnects_when_vpcd_restarts() {
        let (l, addr) = fake_vpcd();
        let attached = attach(card(), addr, AttachOptions::default()).unwrap();
        let (s, _) = l.accept().unwrap();
        drop(s);
        let (mut s, _) = l.accept().unwrap();
        assert_eq!(exchange(&mut s, &[CTRL_GET_ATR]), ATR.to_vec());
        drop(attached);
    }

    #[test]
    fn it_gives_up_connecting_after_the_patience() {
        let (l, addr) = fake_vpcd();
        drop(l);
        let err = connect_with_retry(addr, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, VpcdError::Connect { .. }));
    }
}
