//! The capture log (捕捉ログ): the write-ahead log that makes a capture durable with one
//! fsync of a small append, before the event reaches the month document in sled.
//!
//! A capture is acknowledged once its record is in this log and the log is fsynced
//! (concurrent captures share one fsync). The record then goes into sled without waiting;
//! a checkpoint (sled flushed and fsynced) empties the log. On open, records not yet in
//! their document are replayed; a torn last record — a crash mid-write, never acknowledged —
//! ends the replay. Records hold sealed bytes only, like the documents.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::event::Month;

const MAGIC: u8 = 0xA1;
const HEADER: usize = 1 + 4 + 8;

/// One logged event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The month document it belongs to.
    pub month: Month,
    /// The event id.
    pub id: String,
    /// The sealed event.
    pub sealed: Vec<u8>,
}

/// The log.
#[derive(Debug)]
pub struct Wal {
    file: Mutex<File>,
    sync_fd: File,
    written: AtomicU64,
    synced: AtomicU64,
    sync_turn: Mutex<()>,
}

fn encode(r: &Record) -> Vec<u8> {
    let month = r.month.to_string();
    let mut body = Vec::with_capacity(8 + r.id.len() + r.sealed.len());
    body.extend_from_slice(month.as_bytes()); // always 7 bytes: YYYY-MM
    body.push(r.id.len() as u8);
    body.extend_from_slice(r.id.as_bytes());
    body.extend_from_slice(&r.sealed);
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&Sha256::digest(&body)[..8]);
    out.extend_from_slice(&body);
    out
}

/// Reads records until the end or the first damaged one (a torn tail); returns them and
/// the length of the intact prefix.
fn decode_all(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut used = 0;
    while used < bytes.len() {
        let Some((record, len)) = decode_one(&bytes[used..]) else {
            break;
        };
        records.push(record);
        used += len;
    }
    (records, used)
}

fn decode_one(buf: &[u8]) -> Option<(Record, usize)> {
    if buf.len() < HEADER || buf[0] != MAGIC {
        return None;
    }
    let len = u32::from_be_bytes(buf[1..5].try_into().ok()?) as usize;
    let body = buf.get(HEADER..HEADER + len)?;
    if Sha256::digest(body)[..8] != buf[5..13] {
        return None;
    }
    let month: Month = std::str::from_utf8(body.get(..7)?).ok()?.parse().ok()?;
    let id_len = *body.get(7)? as usize;
    let id = std::str::from_utf8(body.get(8..8 + id_len)?)
        .ok()?
        .to_string();
    let sealed = body.get(8 + id_len..)?.to_vec();
    Some((Record { month, id, sealed }, HEADER + len))
}

impl Wal {
    /// Opens (or creates) the log; returns it with the records it holds.
    pub fn open(path: &Path) -> std::io::Result<(Self, Vec<Record>)> {
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, intact) = decode_all(&bytes);
        if intact < bytes.len() {
            tracing::warn!(
                records = records.len(),
                "capture log ends in a torn record (a crash mid-write); it was never acknowledged"
            );
            // Cut it off, or the next records would follow the damage and be lost with it.
            file.set_len(intact as u64)?;
            file.sync_data()?;
        }
        let sync_fd = file.try_clone()?;
        Ok((
            Self {
                file: Mutex::new(file),
                sync_fd,
                written: AtomicU64::new(0),
                synced: AtomicU64::new(0),
                sync_turn: Mutex::new(()),
            },
            records,
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a record (not yet durable); returns its ticket for [`Wal::sync`].
    pub fn append(&self, record: &Record) -> std::io::Result<u64> {
        let bytes = encode(record);
        let mut file = self.lock();
        file.write_all(&bytes)?;
        Ok(self.written.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Waits until the record with `ticket` is on disk; one fsync serves every record
    /// appended before it started (group commit). Runs on the calling (blocking) thread, so
    /// the capture's path has no hop to another thread.
    pub fn sync_blocking(&self, ticket: u64) -> std::io::Result<()> {
        let _turn = self.sync_turn.lock().unwrap_or_else(|p| p.into_inner());
        if self.synced.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        let target = self.written.load(Ordering::SeqCst);
        self.sync_fd.sync_data()?;
        self.synced.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }

    /// Empties the log once `persisted` (sled flushed and fsynced) has run while appends
    /// were held back.
    pub fn checkpoint(
        &self,
        persisted: impl FnOnce() -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let file = self.lock();
        persisted()?;
        file.set_len(0)?;
        file.sync_data()?;
        // Everything appended so far is in sled now, durably.
        self.synced
            .fetch_max(self.written.load(Ordering::SeqCst), Ordering::SeqCst);
        Ok(())
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.lock().metadata().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(n: u8) -> Record {
        Record {
            month: Month::new(2026, 11).unwrap(),
            id: format!("{n:032x}"),
            sealed: vec![n; 40 + n as usize],
        }
    }

    #[test]
    fn records_survive_reopen_and_a_torn_tail_ends_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        {
            let (wal, old) = Wal::open(&path).unwrap();
            assert!(old.is_empty());
            for n in 0..3 {
                let t = wal.append(&rec(n)).unwrap();
                wal.sync_blocking(t).unwrap();
            }
        }
        // A crash mid-write: half a record at the end.
        let mut bytes = std::fs::read(&path).unwrap();
        let half = encode(&rec(9));
        bytes.extend_from_slice(&half[..half.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();
        let (wal, records) = Wal::open(&path).unwrap();
        assert_eq!(records, vec![rec(0), rec(1), rec(2)]);
        // The torn tail was cut: a record appended now is read back after the others.
        let t = wal.append(&rec(3)).unwrap();
        wal.sync_blocking(t).unwrap();
        drop(wal);
        let (wal, records) = Wal::open(&path).unwrap();
        assert_eq!(records, vec![rec(0), rec(1), rec(2), rec(3)]);
        wal.checkpoint(|| Ok(())).unwrap();
        assert!(wal.is_empty());
        drop(wal);
        assert!(Wal::open(&path).unwrap().1.is_empty());
        // Garbage is never mistaken for records.
        std::fs::write(&path, b"\xA1garbage that is not a record").unwrap();
        assert!(Wal::open(&path).unwrap().1.is_empty());
    }
}
