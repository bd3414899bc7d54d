//! QUIC between paired devices (端末間同期の通信路), each side pinned to the other's device key.
//!
//! A clinic's devices talk directly, with no CA and no server that vouches for them: the only
//! trust is the pairing, an [`Allowlist`] of [`DeviceId`]s that a person confirmed on both
//! devices. So the TLS handshake is authenticated by the device keys themselves:
//!
//! - **Raw public keys (RFC 7250) on both sides.** Each device presents its ed25519 public key
//!   as a bare SubjectPublicKeyInfo, not a certificate. There is no issuer, no validity
//!   period and no name to check, so none is ignored by accident: the key *is* the identity,
//!   and its SHA-256 is the [`DeviceId`] (see [`crate::device`]).
//! - **Mutual, pinned, in the handshake.** The server requires a client key; both ends run the
//!   same verifier, which refuses any key whose id is not on the allowlist *at that moment*
//!   (the list is shared and read at every handshake, so a device removed while running is
//!   refused at its next handshake), and the client also refuses a server that is not the
//!   device it dialled. A refusal aborts the handshake with a TLS alert: no connection exists
//!   for an unpaired peer, so nothing can forget to check it later. Each refusal is logged as
//!   a warning with the presented device id and the address.
//! - **The handshake signature is verified.** A public key is public: anyone who has watched
//!   a paired device's handshake can present its key. What proves possession is the TLS 1.3
//!   CertificateVerify signature over the handshake transcript, which the verifier checks with
//!   the presented key (`verify_tls13_signature_with_raw_key`, ring's ed25519). A verifier that
//!   only compared keys would let that replay in (see the tests, "replayed key").
//! - **TLS 1.3 only, ring only.** Raw public keys exist only in TLS 1.3 in rustls, QUIC
//!   requires 1.3 anyway, and 1.2's signature rules are looser; the 1.2 verify methods
//!   refuse. One crypto provider (ring) keeps aws-lc-rs and its C build out.
//! - **The dialler waits to be welcomed.** In TLS 1.3 a client completes its side of the
//!   handshake before the server has checked the client's key, so quinn would report success
//!   to a client that is about to be refused. The accepting side therefore opens a first
//!   unidirectional stream with a short welcome once its verifier accepted the key, and
//!   [`Endpoint::connect`] returns only after reading it (or the refusal).
//! - **Every handshake is a full one.** Session tickets, resumption and 0-RTT are off: a
//!   resumed session would skip the key check, and with it the allowlist.
//!
//! The main types are [`Endpoint`] (one UDP socket that accepts and dials), [`PeerConnection`]
//! (a quinn connection and the verified id of the device at the other end), [`Allowlist`], and
//! the framing helpers [`write_msg`] / [`read_msg`]. Out of scope here: reconnecting with
//! backoff, discovery, and the sync protocol that runs over the connection.

mod frame;
mod tls;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;

use crate::device::{DeviceId, DeviceKey};
use tls::{PeerVerifier, RefusalSlot};

pub use frame::{read_msg, write_msg, MAX_FRAME};
pub use tls::ALPN;

/// The application close code of an orderly shutdown ([`Endpoint::close`]).
pub const CLOSE_SHUTDOWN: u32 = 1;
/// The reason sent with [`CLOSE_SHUTDOWN`].
pub const CLOSE_SHUTDOWN_REASON: &[u8] = b"shutdown";
/// The application close code when a connection whose TLS handshake succeeded is dropped
/// anyway (no welcome, a peer key that should not have passed the verifier).
pub const CLOSE_REFUSED: u32 = 2;

/// What an accepting endpoint sends, on the first unidirectional stream it opens, once its
/// verifier accepted the dialling device.
const WELCOME: &[u8] = b"ok";
/// How long a handshake may take, welcome included, before it is abandoned. Without it a
/// peer that keeps the handshake alive but never finishes it would hold `accept` until the
/// idle timeout, which keep-alives and its own packets keep pushing back.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an idle connection is pinged, so NATs keep it and a dead peer is noticed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long a connection (or a handshake) may hear nothing before it is dropped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the verifier refused a peer's handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The key's device id is not on the allowlist (never paired, removed, or the key
    /// changed).
    Unpaired,
    /// The key is paired, but it is not the device this side dialled.
    NotExpected {
        /// The device that was dialled.
        expected: DeviceId,
    },
    /// The handshake signature does not verify under the presented key: the peer shows a key
    /// it does not hold.
    BadSignature,
    /// What was presented is not an ed25519 raw public key.
    NotEd25519Key,
    /// The peer sent a chain; a device presents its one key.
    Chain,
    /// The other side aborted the handshake with this TLS alert (it refused us, or we
    /// offered nothing it accepts).
    ByPeer {
        /// The alert as quinn reports it.
        alert: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unpaired => f.write_str("not paired"),
            Self::NotExpected { expected } => write!(f, "not the dialled device {expected}"),
            Self::BadSignature => f.write_str("bad handshake signature"),
            Self::NotEd25519Key => f.write_str("not an ed25519 raw public key"),
            Self::Chain => f.write_str("presented a certificate chain"),
            Self::ByPeer { alert } => write!(f, "refused by the peer: {alert}"),
        }
    }
}

/// The UDP receive buffer asked for (the kernel caps it at `net.core.rmem_max`;
/// `packaging/60-tsunagi-sync.conf` raises that cap). A month
/// sent to a new device arrives faster than the receiver, busy verifying and writing, reads
/// it; with the default buffer (about 200 KiB) datagrams overflowing it are dropped and sent
/// again, and a third more bytes crossed the wire than the month holds.
const RECV_BUFFER: usize = 4 << 20;

/// A UDP socket bound to `addr` with the larger receive buffer.
fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer only costs resends.
    if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER) {
        tracing::debug!(error = %e, "cannot enlarge the UDP receive buffer");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// What went wrong on the transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The UDP socket could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// quinn would not start the connection (bad address, endpoint stopping, …).
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// quinn's reason.
        source: quinn::ConnectError,
    },
    /// The handshake did not complete, for a reason other than a refusal by either side
    /// (timed out, network unreachable, connection lost).
    #[error("handshake with {addr}: {source}")]
    Handshake {
        /// The peer's address.
        addr: SocketAddr,
        /// quinn's reason.
        source: quinn::ConnectionError,
    },
    /// The handshake was refused, by our verifier (then `peer` names the presented key's
    /// device) or by the other side.
    #[error("handshake with {addr} refused ({}): {reason}", peer_or_unknown(.peer))]
    Refused {
        /// The peer's address.
        addr: SocketAddr,
        /// The device id of the key the peer presented, when our side saw one.
        peer: Option<DeviceId>,
        /// Why.
        reason: Refusal,
    },
    /// The server at `addr` is a paired device, but not the one dialled.
    #[error("{addr} is device {found}, not the expected {expected}")]
    WrongPeer {
        /// The address dialled.
        addr: SocketAddr,
        /// The device dialled.
        expected: DeviceId,
        /// The device that answered.
        found: DeviceId,
    },
    /// The endpoint is closed.
    #[error("endpoint closed")]
    Closed,
    /// A frame longer than the reader's limit (nothing of its body was read).
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame: {got} of {expected} bytes")]
    Truncated {
        /// Bytes the frame (its length prefix, or its body) should have had.
        expected: u64,
        /// Bytes that came.
        got: u64,
    },
    /// A stream failed (reset, stopped, or its connection lost).
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS or QUIC configuration could not be built (a bug, not a peer's doing).
    #[error("transport configuration: {reason}")]
    Config {
        /// rustls's or quinn's message.
        reason: String,
    },
}

fn peer_or_unknown(peer: &Option<DeviceId>) -> String {
    peer.as_ref()
        .map_or_else(|| "device unknown".to_owned(), |id| format!("device {id}"))
}

/// The paired devices: a cheaply clonable, shared set of [`DeviceId`]s.
///
/// Clones share one set. The verifiers read it at every handshake, so adding or removing a
/// device takes effect at the next handshake; connections already up are not touched (close
/// them if a removal must cut them).
#[derive(Debug, Clone, Default)]
pub struct Allowlist(Arc<RwLock<HashSet<DeviceId>>>);

impl Allowlist {
    /// An empty list: nothing can connect.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows `id`. Returns whether it was new.
    pub fn add(&self, id: DeviceId) -> bool {
        // A panic while holding the lock cannot leave a half-updated HashSet behind
        // (insert/remove are complete or not done), so a poisoned lock is still a valid set.
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id)
    }

    /// Disallows `id`. Returns whether it was there.
    pub fn remove(&self, id: &DeviceId) -> bool {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
    }

    /// Whether `id` is allowed now.
    pub fn contains(&self, id: &DeviceId) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }

    /// The allowed ids now, sorted.
    pub fn snapshot(&self) -> Vec<DeviceId> {
        let mut ids: Vec<DeviceId> = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        ids.sort();
        ids
    }
}

impl FromIterator<DeviceId> for Allowlist {
    fn from_iter<I: IntoIterator<Item = DeviceId>>(iter: I) -> Self {
        Self(Arc::new(RwLock::new(iter.into_iter().collect())))
    }
}

/// A connection to a paired device whose key was verified in the handshake.
#[derive(Debug, Clone)]
pub struct PeerConnection {
    /// The device at the other end, from the key it proved in the handshake.
    pub peer: DeviceId,
    /// The QUIC connection.
    pub connection: quinn::Connection,
}

/// An incoming connection whose handshake is still to run ([`Endpoint::accept_incoming`]).
#[derive(Debug)]
pub struct Handshaking {
    addr: SocketAddr,
    started: Result<(quinn::Connecting, RefusalSlot), NetError>,
}

impl Handshaking {
    /// Where it comes from.
    pub fn remote_address(&self) -> SocketAddr {
        self.addr
    }

    /// Runs the handshake (bounded by [`HANDSHAKE_TIMEOUT`]): the peer's key is checked
    /// against the allowlist and its signature verified, and the welcome sent.
    pub async fn finish(self) -> Result<PeerConnection, NetError> {
        let addr = self.addr;
        let (connecting, slot) = self.started?;
        let handshake = async {
            let connection = connecting
                .await
                .map_err(|e| handshake_error(e, &slot, addr))?;
            Endpoint::welcome(connection, addr).await
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .unwrap_or(Err(NetError::Handshake {
                addr,
                source: quinn::ConnectionError::TimedOut,
            }))
    }
}

/// One UDP socket that accepts connections from paired devices and dials them.
///
/// Dropping it without [`Endpoint::close`] closes connections abruptly (code 0).
#[derive(Debug)]
pub struct Endpoint {
    inner: quinn::Endpoint,
    provider: Arc<CryptoProvider>,
    presented: Arc<CertifiedKey>,
    allow: Allowlist,
    transport: Arc<quinn::TransportConfig>,
}

impl Endpoint {
    /// Binds `addr` (port 0 for any) for device `key`, accepting and dialling only devices
    /// on `allow`.
    pub fn bind(addr: SocketAddr, key: &DeviceKey, allow: Allowlist) -> Result<Self, NetError> {
        Self::bind_presenting(addr, tls::certified_key(key.signing_key()), allow)
    }

    /// Binds with an arbitrary presented key: production passes the device's own; tests pass
    /// a forged one (a paired device's public key with another device's signer).
    pub(crate) fn bind_presenting(
        addr: SocketAddr,
        presented: Arc<CertifiedKey>,
        allow: Allowlist,
    ) -> Result<Self, NetError> {
        let provider = tls::provider();
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(KEEP_ALIVE))
            .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
                // 30 000 ms fits a u32; the cast is exact.
                IDLE_TIMEOUT.as_millis() as u32,
            ))));
        let transport = Arc::new(transport);
        // The endpoint's default server config; `accept` replaces it per handshake with one
        // whose verifier knows the remote address (for the refusal log and error).
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let verifier = PeerVerifier::new(
            allow.clone(),
            None,
            unspecified,
            RefusalSlot::default(),
            &provider,
        );
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(tls::server_config(
            &provider, &presented, verifier,
        )?));
        server.transport_config(transport.clone());
        let inner = udp_socket(addr)
            .and_then(|socket| {
                quinn::Endpoint::new(
                    quinn::EndpointConfig::default(),
                    Some(server),
                    socket,
                    Arc::new(quinn::TokioRuntime),
                )
            })
            .map_err(|source| NetError::Bind { addr, source })?;
        Ok(Self {
            inner,
            provider,
            presented,
            allow,
            transport,
        })
    }

    /// The bound address (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.inner.local_addr().map_err(NetError::Io)
    }

    /// The allowlist this endpoint checks (a handle on the shared set).
    pub fn allowlist(&self) -> &Allowlist {
        &self.allow
    }

    /// Dials `addr` and completes a handshake with the device `expected`, which must also be
    /// on the allowlist. Any other key is refused in the handshake. Returns once the other
    /// side has accepted us too (its welcome), within [`HANDSHAKE_TIMEOUT`].
    ///
    /// Cancel safety: cancel-safe; dropping the future abandons the handshake.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: &DeviceId,
    ) -> Result<PeerConnection, NetError> {
        let slot = RefusalSlot::default();
        let verifier = PeerVerifier::new(
            self.allow.clone(),
            Some(expected.clone()),
            addr,
            slot.clone(),
            &self.provider,
        );
        let crypto = tls::client_config(&self.provider, &self.presented, verifier)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        let connecting = self
            .inner
            .connect_with(config, addr, tls::SERVER_NAME)
            .map_err(|source| match source {
                quinn::ConnectError::EndpointStopping => NetError::Closed,
                source => NetError::Connect { addr, source },
            })?;
        let handshake = async {
            let connection = connecting
                .await
                .map_err(|e| handshake_error(e, &slot, addr))?;
            let peer = peer_of(&connection, addr)?;
            if peer != *expected {
                // The verifier already refused any other key; this is a second lock.
                connection.close(quinn::VarInt::from_u32(CLOSE_REFUSED), b"wrong peer");
                return Err(NetError::WrongPeer {
                    addr,
                    expected: expected.clone(),
                    found: peer,
                });
            }
            // In TLS 1.3 the client finishes its handshake before the server has checked the
            // client's key, so quinn reports success even to a client the server is about to
            // refuse. The server's welcome, sent only after its verifier accepted us, settles
            // it: a refusal arrives instead as the connection's close.
            let mut recv = connection
                .accept_uni()
                .await
                .map_err(|e| handshake_error(e, &slot, addr))?;
            match recv.read_to_end(WELCOME.len()).await {
                Ok(bytes) if bytes == WELCOME => Ok(PeerConnection { peer, connection }),
                Err(quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(e))) => {
                    Err(handshake_error(e, &slot, addr))
                }
                Ok(_) | Err(_) => {
                    connection.close(quinn::VarInt::from_u32(CLOSE_REFUSED), b"bad welcome");
                    Err(NetError::Handshake {
                        addr,
                        source: quinn::ConnectionError::LocallyClosed,
                    })
                }
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .unwrap_or(Err(NetError::Handshake {
                addr,
                source: quinn::ConnectionError::TimedOut,
            }))
    }

    /// The next incoming connection, once its handshake is complete; `None` once the endpoint
    /// is closed.
    ///
    /// An `Err` is one refused or failed attempt (already logged when refused); keep calling
    /// to accept the next one. Handshakes are completed one at a time, so a peer that stalls
    /// its handshake holds this call for at most [`HANDSHAKE_TIMEOUT`].
    ///
    /// Cancel safety: cancel-safe while waiting for an attempt; dropping the future during a
    /// handshake abandons that attempt.
    pub async fn accept(&self) -> Option<Result<PeerConnection, NetError>> {
        Some(self.accept_incoming().await?.finish().await)
    }

    /// The next incoming connection, its handshake not yet run: [`Handshaking::finish`]
    /// runs it. A server that accepts from many devices finishes each in its own task, so
    /// a peer that stalls its handshake does not hold up the others. `None` once closed.
    pub async fn accept_incoming(&self) -> Option<Handshaking> {
        let incoming = self.inner.accept().await?;
        let addr = incoming.remote_address();
        let slot = RefusalSlot::default();
        let verifier =
            PeerVerifier::new(self.allow.clone(), None, addr, slot.clone(), &self.provider);
        let crypto = match tls::server_config(&self.provider, &self.presented, verifier) {
            Ok(crypto) => crypto,
            Err(e) => {
                incoming.refuse();
                return Some(Handshaking {
                    addr,
                    started: Err(e),
                });
            }
        };
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        let started = match incoming.accept_with(Arc::new(config)) {
            Ok(connecting) => Ok((connecting, slot)),
            Err(e) => Err(handshake_error(e, &slot, addr)),
        };
        Some(Handshaking { addr, started })
    }

    /// Checks the verified peer and tells it it was accepted (see `connect`).
    async fn welcome(
        connection: quinn::Connection,
        addr: SocketAddr,
    ) -> Result<PeerConnection, NetError> {
        let peer = peer_of(&connection, addr)?;
        let mut send = connection
            .open_uni()
            .await
            .map_err(|source| NetError::Handshake { addr, source })?;
        send.write_all(WELCOME)
            .await
            .map_err(std::io::Error::from)?;
        // Err only if already finished or reset, which this fresh stream is not.
        let _ = send.finish();
        Ok(PeerConnection { peer, connection })
    }

    /// Closes every connection with [`CLOSE_SHUTDOWN`] and waits until the peers were told
    /// (or the idle timeout passed). Later `accept` calls return `None`.
    ///
    /// Like quinn's close, this proves nothing about what the peer application read.
    ///
    /// Cancel safety: cancel-safe; the connections are closed at the first poll, and dropping
    /// the future only stops waiting.
    pub async fn close(&self) {
        self.inner.close(
            quinn::VarInt::from_u32(CLOSE_SHUTDOWN),
            CLOSE_SHUTDOWN_REASON,
        );
        self.inner.wait_idle().await;
    }
}

/// The device id proven in `connection`'s handshake.
fn peer_of(connection: &quinn::Connection, addr: SocketAddr) -> Result<DeviceId, NetError> {
    let key = connection
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|chain| chain.first().and_then(|spki| tls::key_of_spki(spki)));
    match key {
        Some(key) => Ok(DeviceId::of(&key)),
        // Unreachable: the verifier accepted exactly such a key. Refuse rather than assume.
        None => {
            connection.close(quinn::VarInt::from_u32(CLOSE_REFUSED), b"no peer key");
            Err(NetError::Refused {
                addr,
                peer: None,
                reason: Refusal::NotEd25519Key,
            })
        }
    }
}

/// Turns a failed handshake into the most precise error: our verifier's refusal if it made
/// one, the peer's TLS alert if it refused us, else quinn's reason.
fn handshake_error(
    error: quinn::ConnectionError,
    slot: &RefusalSlot,
    addr: SocketAddr,
) -> NetError {
    if let Some((peer, reason)) = slot.take() {
        return match (reason, peer) {
            (Refusal::NotExpected { expected }, Some(found)) => NetError::WrongPeer {
                addr,
                expected,
                found,
            },
            (reason, peer) => NetError::Refused { addr, peer, reason },
        };
    }
    match &error {
        // TLS alerts travel as QUIC "crypto errors", codes 0x100..=0x1ff (RFC 9001 §4.8).
        quinn::ConnectionError::ConnectionClosed(close)
            if (0x100..0x200).contains(&u64::from(close.error_code)) =>
        {
            tracing::warn!(addr = %addr, alert = %close, "handshake refused by peer");
            NetError::Refused {
                addr,
                peer: None,
                reason: Refusal::ByPeer {
                    alert: close.to_string(),
                },
            }
        }
        _ => NetError::Handshake {
            addr,
            source: error,
        },
    }
}
