//! The paired devices (ペアリング済みの端末): `peers.json` in the data directory, this
//! device's own list. Pairing is explicit and on both sides (as in Syncthing): a device
//! talks only to devices it added, and only if they added it too — each side's list is
//! checked in its own TLS handshake. The list is not synced: one device cannot pair another.
//!
//! Written whole to a temporary file, fsynced and renamed into place, so a power cut leaves
//! the old list or the new, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tsunagi_sync::DeviceId;

/// One paired device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Peer {
    /// Its device id (`tsunagi id` on that device).
    #[schema(value_type = String)]
    pub id: DeviceId,
    /// A name for staff (受付PC, 訪問用タブレット1).
    #[serde(default)]
    pub name: Option<String>,
    /// Where to reach it (`HOST:PORT`); none for a device that only connects here (a
    /// tablet that comes and goes).
    #[serde(default)]
    pub addr: Option<String>,
}

/// Why the list could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BookError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a list of peers.
    #[error("{path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A device cannot pair with itself.
    #[error("a device cannot be paired with itself")]
    Itself,
    /// An address that is not `HOST:PORT`.
    #[error("address {0:?} is not HOST:PORT")]
    BadAddr(String),
}

impl BookError {
    /// The message for staff.
    pub fn message_ja(&self) -> String {
        match self {
            BookError::Io { path, source } => format!(
                "ペアリング一覧（{}）を読み書きできません: {}",
                path.display(),
                crate::domain::io_error_ja(source)
            ),
            BookError::Damaged { path, reason } => format!(
                "ペアリング一覧（{}）が壊れています（{reason}）。ファイルを確認するか、削除してからペアリングをやり直してください。",
                path.display()
            ),
            BookError::Itself => "この端末自身はペアリングできません。相手の端末で `tsunagi id` を実行して表示されたIDを指定してください。".into(),
            BookError::BadAddr(a) => format!(
                "接続先「{a}」は「ホスト名:ポート番号」の形ではありません（例: 192.168.1.10:22800）。"
            ),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    peers: Vec<Peer>,
}

/// The list's file in a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("peers.json")
}

/// The paired devices (none if the file does not exist).
pub fn load(data_dir: &Path) -> Result<Vec<Peer>, BookError> {
    let path = path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(BookError::Io { path, source }),
    };
    let file: File = serde_json::from_slice(&bytes).map_err(|e| BookError::Damaged {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(file.peers)
}

fn save(data_dir: &Path, peers: &[Peer]) -> Result<(), BookError> {
    let path = path(data_dir);
    let io = |source| BookError::Io {
        path: path.clone(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(&File {
        peers: peers.to_vec(),
    })
    .map_err(|e| io(std::io::Error::other(e)))?;
    // Unique per write: two processes (tsunagid, a CLI on a stopped daemon) never share one.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("json.tmp-{}-{n}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })?;
    // The rename is durable only with its directory.
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// Checks an address: `HOST:PORT` with a port number.
pub fn check_addr(addr: &str) -> Result<(), BookError> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(BookError::BadAddr(addr.to_string())),
    }
}

/// Serialises read-modify-write of the list within this process (concurrent API requests).
static ONE_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_writer() -> std::sync::MutexGuard<'static, ()> {
    // Guards no data.
    ONE_WRITER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds `peer` (or updates its name and address); returns the list.
pub fn add(data_dir: &Path, me: &DeviceId, peer: Peer) -> Result<Vec<Peer>, BookError> {
    let _one = one_writer();
    if &peer.id == me {
        return Err(BookError::Itself);
    }
    if let Some(a) = &peer.addr {
        check_addr(a)?;
    }
    let mut peers = load(data_dir)?;
    match peers.iter_mut().find(|p| p.id == peer.id) {
        Some(p) => {
            if peer.name.is_some() {
                p.name = peer.name;
            }
            if peer.addr.is_some() {
                p.addr = peer.addr;
            }
        }
        None => peers.push(peer),
    }
    save(data_dir, &peers)?;
    Ok(peers)
}

/// Removes `id`; returns whether it was paired.
pub fn remove(data_dir: &Path, id: &DeviceId) -> Result<bool, BookError> {
    let _one = one_writer();
    let mut peers = load(data_dir)?;
    let before = peers.len();
    peers.retain(|p| &p.id != id);
    if peers.len() == before {
        return Ok(false);
    }
    save(data_dir, &peers)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tsunagi_sync::DeviceKey;

    #[test]
    fn peers_are_added_updated_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let me = DeviceKey::generate().id().clone();
        let other = DeviceKey::generate().id().clone();
        assert!(load(dir.path()).unwrap().is_empty());
        let peer = Peer {
            id: other.clone(),
            name: Some("訪問用タブレット".into()),
            addr: None,
        };
        add(dir.path(), &me, peer.clone()).unwrap();
        let updated = Peer {
            id: other.clone(),
            name: None,
            addr: Some("192.168.1.20:22800".into()),
        };
        let peers = add(dir.path(), &me, updated).unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].name.as_deref(), Some("訪問用タブレット"));
        assert_eq!(peers[0].addr.as_deref(), Some("192.168.1.20:22800"));
        assert!(matches!(
            add(
                dir.path(),
                &me,
                Peer {
                    id: me.clone(),
                    name: None,
                    addr: None
                }
            ),
            Err(BookError::Itself)
        ));
        assert!(matches!(
            add(
                dir.path(),
                &me,
                Peer {
                    id: other.clone(),
                    name: None,
                    addr: Some("nohost".into())
                }
            ),
            Err(BookError::BadAddr(_))
        ));
        assert!(remove(dir.path(), &other).unwrap());
        assert!(!remove(dir.path(), &other).unwrap());
        assert!(load(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_list_is_reported_not_emptied() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), b"{not json").unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(
            e.message_ja().contains("壊れています"),
            "{}",
            e.message_ja()
        );
        assert_eq!(std::fs::read(path(dir.path())).unwrap(), b"{not json");
    }
}
