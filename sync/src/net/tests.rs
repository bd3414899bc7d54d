//! The transport on real quinn endpoints over loopback.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use super::*;

/// Everything logged by any test of this binary, for the tests that check a log line.
///
/// quinn runs the verifiers on its driver task, on any worker thread, so a thread-local
/// subscriber would miss them: this one is global, installed once.
fn logs() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOGS: std::sync::OnceLock<&'static std::sync::Mutex<Vec<u8>>> =
        std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer: &'static std::sync::Mutex<Vec<u8>> =
            Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || LogWriter(buffer))
            .finish();
        // Another test binary module may have set one first; then this test reads nothing
        // and says so.
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
}

struct LogWriter(&'static std::sync::Mutex<Vec<u8>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A device with its own key, allowlist and bound endpoint.
struct Device {
    key: DeviceKey,
    allow: Allowlist,
    ep: Endpoint,
}

impl Device {
    fn new() -> Self {
        Self::with_key(DeviceKey::generate())
    }

    fn with_key(key: DeviceKey) -> Self {
        let allow = Allowlist::new();
        let ep = Endpoint::bind(any_port(), &key, allow.clone()).unwrap();
        Self { key, allow, ep }
    }

    fn id(&self) -> DeviceId {
        self.key.id().clone()
    }

    fn addr(&self) -> SocketAddr {
        self.ep.local_addr().unwrap()
    }

    /// Dials `other` while `other` accepts; returns both outcomes.
    async fn dial(
        &self,
        other: &Device,
    ) -> (
        Result<PeerConnection, NetError>,
        Option<Result<PeerConnection, NetError>>,
    ) {
        let expected = other.id();
        tokio::join!(self.ep.connect(other.addr(), &expected), other.ep.accept())
    }
}

fn pair(a: &Device, b: &Device) {
    a.allow.add(b.id());
    b.allow.add(a.id());
}

/// A device that presents `shown`'s public key but holds only `holder`'s private key.
fn impostor(shown: &DeviceKey, holder: &DeviceKey, allow: Allowlist) -> Endpoint {
    let forged = Arc::new(CertifiedKey::new(
        vec![rustls::pki_types::CertificateDer::from(tls::spki_of(
            &shown.verifying_key(),
        ))],
        Arc::new(tls::DeviceSigner::new(holder.signing_key().clone())),
    ));
    Endpoint::bind_presenting(any_port(), forged, allow).unwrap()
}

fn assert_refused_by_us(result: Result<PeerConnection, NetError>, who: &DeviceId, why: Refusal) {
    match result {
        Err(NetError::Refused {
            peer: Some(peer),
            reason,
            ..
        }) => {
            assert_eq!(peer, *who);
            assert_eq!(reason, why);
        }
        other => panic!("expected a refusal of {who} ({why}), got {other:?}"),
    }
}

fn assert_refused_by_peer(result: Result<PeerConnection, NetError>) {
    assert!(
        matches!(
            result,
            Err(NetError::Refused {
                reason: Refusal::ByPeer { .. },
                ..
            })
        ),
        "expected the peer to refuse, got {result:?}"
    );
}

async fn round_trip(from: &PeerConnection, to: &PeerConnection, body: &[u8]) {
    let (mut send, _recv) = from.connection.open_bi().await.unwrap();
    write_msg(&mut send, body).await.unwrap();
    write_msg(&mut send, b"").await.unwrap();
    send.finish().unwrap();
    let (_send, mut recv) = to.connection.accept_bi().await.unwrap();
    assert_eq!(read_msg(&mut recv, 1024).await.unwrap().unwrap(), body);
    assert_eq!(read_msg(&mut recv, 1024).await.unwrap().unwrap(), b"");
    assert_eq!(read_msg(&mut recv, 1024).await.unwrap(), None);
}

// It connects paired devices both ways, each seeing the other's id, and carries messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paired_devices_connect_both_ways() {
    let a = Device::new();
    let b = Device::new();
    pair(&a, &b);

    let (client, server) = a.dial(&b).await;
    let (client, server) = (client.unwrap(), server.unwrap().unwrap());
    assert_eq!(client.peer, b.id());
    assert_eq!(server.peer, a.id());
    round_trip(&client, &server, b"hello from a").await;
    round_trip(&server, &client, "受付から".as_bytes()).await;

    let (client, server) = b.dial(&a).await;
    let (client, server) = (client.unwrap(), server.unwrap().unwrap());
    assert_eq!(client.peer, a.id());
    assert_eq!(server.peer, b.id());
    round_trip(&client, &server, b"hello from b").await;
}

// It refuses an unpaired client in the handshake, and a client refuses an unpaired server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaired_devices_are_refused_in_the_handshake() {
    let server = Device::new();
    let stranger = Device::new();
    stranger.allow.add(server.id()); // one-sided: the server never paired it
    let (dialled, accepted) = stranger.dial(&server).await;
    assert_refused_by_peer(dialled);
    assert_refused_by_us(accepted.unwrap(), &stranger.id(), Refusal::Unpaired);

    let client = Device::new();
    let unpaired_server = Device::new();
    unpaired_server.allow.add(client.id()); // one-sided the other way
    let (dialled, accepted) = client.dial(&unpaired_server).await;
    assert_refused_by_us(dialled, &unpaired_server.id(), Refusal::Unpaired);
    assert_refused_by_peer(accepted.unwrap());
}

// It refuses a device whose key changed, though its old id is still paired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_key_is_refused() {
    let a = Device::new();
    let b = Device::new();
    pair(&a, &b);
    // b reinstalled: new key, while a still lists b's old id.
    let b2 = Device::with_key(DeviceKey::generate());
    b2.allow.add(a.id());
    let (dialled, accepted) = b2.dial(&a).await;
    assert_refused_by_peer(dialled);
    assert_refused_by_us(accepted.unwrap(), &b2.id(), Refusal::Unpaired);
}

// It refuses a peer that replays a paired device's public key but cannot sign with it:
// the case a verifier that checks only the presented key would let in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_key_without_the_private_key_is_refused() {
    let a = Device::new();
    let b = Device::new();
    pair(&a, &b);
    let mallory = DeviceKey::generate();

    // As a client: shows a's key to b.
    let fake_a = impostor(&a.key, &mallory, Allowlist::from_iter([b.id()]));
    let b_id = b.id();
    let (dialled, accepted) = tokio::join!(fake_a.connect(b.addr(), &b_id), b.ep.accept());
    assert_refused_by_peer(dialled);
    assert_refused_by_us(accepted.unwrap(), &a.id(), Refusal::BadSignature);

    // As a server: shows b's key to a, who dials b's id at mallory's address.
    let fake_b = impostor(&b.key, &mallory, Allowlist::from_iter([a.id()]));
    let (dialled, accepted) = tokio::join!(
        a.ep.connect(fake_b.local_addr().unwrap(), &b_id),
        fake_b.accept()
    );
    assert_refused_by_us(dialled, &b.id(), Refusal::BadSignature);
    assert_refused_by_peer(accepted.unwrap());

    // And the honest pair still connects.
    let (client, server) = a.dial(&b).await;
    assert_eq!(client.unwrap().peer, b.id());
    assert_eq!(server.unwrap().unwrap().peer, a.id());
}

// It refuses a paired server that is not the device dialled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refuses_a_paired_server_that_is_not_the_expected_one() {
    let a = Device::new();
    let b = Device::new();
    let c = Device::new();
    pair(&a, &b);
    pair(&a, &c);
    // a expects b at c's address.
    let b_id = b.id();
    let (dialled, accepted) = tokio::join!(a.ep.connect(c.addr(), &b_id), c.ep.accept());
    match dialled {
        Err(NetError::WrongPeer {
            expected, found, ..
        }) => {
            assert_eq!(expected, b.id());
            assert_eq!(found, c.id());
        }
        other => panic!("expected WrongPeer, got {other:?}"),
    }
    assert_refused_by_peer(accepted.unwrap());
}

// It refuses a device at its next handshake once it is removed from the allowlist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_peer_is_refused_at_its_next_handshake() {
    let a = Device::new();
    let b = Device::new();
    pair(&a, &b);
    let (client, server) = a.dial(&b).await;
    let first = client.unwrap();
    let _first_server_side = server.unwrap().unwrap(); // dropping it would close the connection

    assert!(b.allow.remove(&a.id()));
    assert!(!b.allow.contains(&a.id()));
    assert_eq!(b.allow.snapshot(), Vec::<DeviceId>::new());
    let (dialled, accepted) = a.dial(&b).await;
    assert_refused_by_peer(dialled);
    assert_refused_by_us(accepted.unwrap(), &a.id(), Refusal::Unpaired);

    // The allowlist gates handshakes; the connection already up is the caller's to close.
    assert!(first.connection.close_reason().is_none());
    // Pairing again lets it back in.
    assert!(b.allow.add(a.id()));
    let (client, _server) = a.dial(&b).await;
    assert_eq!(client.unwrap().peer, b.id());
}

// It refuses an announced length above the limit before reading or allocating the body,
// and reports a stream that ends inside a frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_msg_refuses_oversized_and_truncated_frames() {
    let a = Device::new();
    let b = Device::new();
    pair(&a, &b);
    let (client, server) = a.dial(&b).await;
    let (client, server) = (client.unwrap(), server.unwrap().unwrap());

    // A 4 GiB - 1 announcement with only 3 bytes behind it: refused on the length alone.
    let mut send = client.connection.open_uni().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    send.write_all(b"abc").await.unwrap();
    send.finish().unwrap();
    let mut recv = server.connection.accept_uni().await.unwrap();
    match read_msg(&mut recv, 1024).await {
        Err(NetError::FrameTooLarge { len, max }) => {
            assert_eq!(len, u64::from(u32::MAX));
            assert_eq!(max, 1024);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    // Nothing past the length was consumed.
    assert_eq!(recv.read_to_end(16).await.unwrap(), b"abc");

    // A body cut short.
    let mut send = client.connection.open_uni().await.unwrap();
    send.write_all(&10u32.to_be_bytes()).await.unwrap();
    send.write_all(b"12345").await.unwrap();
    send.finish().unwrap();
    let mut recv = server.connection.accept_uni().await.unwrap();
    match read_msg(&mut recv, 1024).await {
        Err(NetError::Truncated { expected, got }) => assert_eq!((expected, got), (10, 5)),
        other => panic!("expected Truncated, got {other:?}"),
    }

    // A length prefix cut short.
    let mut send = client.connection.open_uni().await.unwrap();
    send.write_all(&[0, 0]).await.unwrap();
    send.finish().unwrap();
    let mut recv = server.connection.accept_uni().await.unwrap();
    match read_msg(&mut recv, 1024).await {
        Err(NetError::Truncated { expected, got }) => assert_eq!((expected, got), (4, 2)),
        other => panic!("expected Truncated, got {other:?}"),
    }

    // A frame exactly at the limit passes.
    let mut send = client.connection.open_uni().await.unwrap();
    write_msg(&mut send, &[7u8; 1024]).await.unwrap();
    send.finish().unwrap();
    let mut recv = server.connection.accept_uni().await.unwrap();
    assert_eq!(
        read_msg(&mut recv, 1024).await.unwrap().unwrap(),
        [7u8; 1024]
    );
}

// It closes orderly: the peer sees the shutdown code and reason, and accept ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_orderly() {
    let a = Device::new();
    let b = Device::new();
    pair(&a, &b);
    let (client, server) = a.dial(&b).await;
    let (client, _server) = (client.unwrap(), server.unwrap().unwrap());

    b.ep.close().await;
    match client.connection.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(CLOSE_SHUTDOWN));
            assert_eq!(&close.reason[..], CLOSE_SHUTDOWN_REASON);
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    assert!(b.ep.accept().await.is_none());
    assert!(matches!(
        b.ep.connect(a.addr(), &a.id()).await,
        Err(NetError::Closed)
    ));
}

// It logs a refusal as a warning naming the presented device and its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_is_logged_with_the_device_and_address() {
    let logs = logs();
    let server = Device::new();
    let stranger = Device::new();
    stranger.allow.add(server.id());
    let (_, accepted) = stranger.dial(&server).await;
    assert!(accepted.unwrap().is_err());
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains(&stranger.id().to_string()))
        .unwrap_or_else(|| panic!("no log line names {}:\n{text}", stranger.id()));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("refused peer"), "{line}");
    assert!(line.contains(&stranger.addr().to_string()), "{line}");
    assert!(line.contains("not paired"), "{line}");
}
