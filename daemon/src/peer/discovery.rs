//! Finding paired devices on the local network (ローカルネットワークでの発見), when
//! `[sync] discovery = true`: each device announces by UDP broadcast, every few seconds,
//! "device ID syncs at port P", and listens for the others' announcements. An announcement
//! from a device this one has paired, but has no address for, tells the dialler where to
//! try it (a tablet that gets a new address from the clinic's Wi-Fi every morning).
//!
//! Nothing is trusted from an announcement: it is unauthenticated, and it only says where to
//! dial. The QUIC handshake still checks the device's key against the allowlist, so a
//! forged announcement costs one failed dial, never a connection. Announcements from
//! devices that are not paired are ignored; they carry no personal data.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tsunagi_sync::DeviceId;

use super::SyncService;

/// How often a device announces itself.
const EVERY: Duration = Duration::from_secs(3);
/// What an announcement starts with (and its version).
const MAGIC: &str = "TSUNAGI-SYNC/1";
/// The largest announcement read (the real ones are under 100 bytes).
const MAX: usize = 256;

/// `TSUNAGI-SYNC/1 <device id> <port>`.
pub fn encode(id: &DeviceId, port: u16) -> Vec<u8> {
    format!("{MAGIC} {id} {port}").into_bytes()
}

/// An announcement's device and port; `None` for anything else.
pub fn decode(bytes: &[u8]) -> Option<(DeviceId, u16)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.split(' ');
    if parts.next()? != MAGIC {
        return None;
    }
    let id = parts.next()?.parse().ok()?;
    let port = parts.next()?.parse::<u16>().ok().filter(|p| *p > 0)?;
    if parts.next().is_some() {
        return None;
    }
    Some((id, port))
}

/// A UDP socket on `port` shared with other programs (and other tsunagid on this machine),
/// allowed to broadcast.
fn socket(port: u16) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    s.set_broadcast(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
    tokio::net::UdpSocket::from_std(s.into())
}

/// Announces this device to `target` (a broadcast address and port) and listens on the
/// same port until `stopping`. A socket that cannot be made is logged; sync goes on with
/// the addresses it has.
pub async fn run(
    sync: SyncService,
    me: DeviceId,
    sync_port: u16,
    target: SocketAddr,
    mut stopping: watch::Receiver<bool>,
) {
    let socket = match socket(target.port()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(port = target.port(), error = %e, "LAN discovery could not start; paired devices are dialled at their configured addresses only");
            return;
        }
    };
    let announcement = encode(&me, sync_port);
    let mut tick = tokio::time::interval(EVERY);
    let mut buf = [0u8; MAX];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = socket.send_to(&announcement, target).await {
                    tracing::debug!(%target, error = %e, "announcement not sent");
                }
            }
            got = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                let Some((id, port)) = decode(&buf[..n]) else { continue };
                if id != me {
                    sync.discovered(&id, SocketAddr::new(from.ip(), port));
                }
            }
            _ = stopping.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tsunagi_sync::DeviceKey;

    #[test]
    fn announcements_round_trip_and_nothing_else_decodes() {
        let id = DeviceKey::generate().id().clone();
        assert_eq!(decode(&encode(&id, 22800)), Some((id.clone(), 22800)));
        for bad in [
            &b""[..],
            b"TSUNAGI-SYNC/1",
            b"TSUNAGI-SYNC/2 AAAA 1",
            b"TSUNAGI-SYNC/1 not-an-id 22800",
            &[0xff, 0xfe, 0x00][..],
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        let mut extra = encode(&id, 22800);
        extra.extend_from_slice(b" more");
        assert_eq!(decode(&extra), None);
        let zero = format!("{MAGIC} {id} 0");
        assert_eq!(decode(zero.as_bytes()), None);
    }
}
