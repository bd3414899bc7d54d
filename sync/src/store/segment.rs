//! Segment files (セグメント): the month's append-only record logs, the source of truth.
//!
//! A month directory holds numbered segments `00000001.seg`, `00000002.seg`, … Each begins
//! with a 32-byte header and continues with records:
//!
//! ```text
//! header: "TSGSEG\0\x02" | month (3) | 0 | number u32 | left u32 | left_len u64 | crc32 u32
//! frame:  len u32 | crc32 u32 (over len and body) | body (len bytes)
//! record: version 1 | flags 0 | key id (8) | event id (16) | sealed event
//! commit: version 1 | flags 1 | group length u32 | group crc32 u32 | 16 zero bytes
//! ```
//!
//! Records are written in groups (one per group commit), each closed by a commit frame that
//! gives the group's length and checksum. A record counts only inside a whole, committed
//! group. So what a crash cut short — even a group whose later sectors reached the disk
//! before its earlier ones — is told apart from damage: anything after the last committed
//! group is an unfinished write (never acknowledged: a group is acknowledged only once its
//! commit frame is fsynced), while bad bytes *followed by* a committed group are damage.
//!
//! All integers are big-endian. `left`/`left_len` say that segment `left` of the same month
//! ends at `left_len`: a segment is left either because it is full, or because an append to
//! it failed and could not be rolled back. Bytes past `left_len` were never acknowledged and
//! are never read, even when the failed write reached the disk. This is how a failed
//! append is "closed" durably without having to truncate a file the disk refuses to change.
//!
//! This module is pure: encoding, decoding and scanning bytes. The I/O lives in
//! [`super::segments`].

use crate::event::{EventId, Month};

use super::keys::KeyId;

/// Bytes of a segment header.
pub(crate) const HEADER_LEN: u64 = 32;
const MAGIC: [u8; 8] = *b"TSGSEG\x00\x02";
/// Bytes before a frame's body.
pub(crate) const FRAME_HEAD: usize = 8;
const BODY_VERSION: u8 = 1;
/// Bytes of a body before the sealed event (and the whole body of a commit frame).
const BODY_HEAD: usize = 1 + 1 + 8 + 16;
/// The `flags` of a commit frame.
const COMMIT: u8 = 1;
/// The largest record body accepted: a sealed event is a few KiB. Bigger ones are refused
/// before they are written.
pub(crate) const MAX_BODY: usize = 256 * 1024;

/// A segment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The month.
    pub month: Month,
    /// The segment's number (from 1).
    pub number: u32,
    /// The segment left for this one, and where its valid bytes end.
    pub left: Option<(u32, u64)>,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut out = [0u8; HEADER_LEN as usize];
        out[..8].copy_from_slice(&MAGIC);
        out[8..11].copy_from_slice(&self.month.to_bytes());
        out[12..16].copy_from_slice(&self.number.to_be_bytes());
        let (left, left_len) = self.left.unwrap_or((0, 0));
        out[16..20].copy_from_slice(&left.to_be_bytes());
        out[20..28].copy_from_slice(&left_len.to_be_bytes());
        let crc = crc32fast::hash(&out[..28]);
        out[28..32].copy_from_slice(&crc.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..HEADER_LEN as usize)?;
        if bytes[..8] != MAGIC || crc32fast::hash(&bytes[..28]).to_be_bytes() != bytes[28..32] {
            return None;
        }
        let month = Month::from_bytes([bytes[8], bytes[9], bytes[10]])?;
        let number = u32::from_be_bytes(bytes[12..16].try_into().ok()?);
        let left = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
        let left_len = u64::from_be_bytes(bytes[20..28].try_into().ok()?);
        Some(Self {
            month,
            number,
            left: (left != 0).then_some((left, left_len)),
        })
    }
}

/// The file name of segment `number`.
pub(crate) fn file_name(number: u32) -> String {
    format!("{number:08}.seg")
}

/// The number of a segment file name.
pub(crate) fn parse_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
        .filter(|n| *n > 0)
}

/// One record: a sealed event, the key that sealed it, and its id.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The month key that sealed it.
    pub key_id: KeyId,
    /// The event's id.
    pub id: EventId,
    /// The sealed signed event.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("key_id", &self.key_id)
            .field("id", &self.id)
            .field("sealed_len", &self.sealed.len())
            .finish()
    }
}

impl Record {
    /// The associated data the event is sealed with: the record cannot be moved to another
    /// month, key or id without failing to open.
    pub(crate) fn aad(month: Month, key_id: KeyId, id: EventId) -> [u8; 27] {
        let mut aad = [0u8; 27];
        aad[..3].copy_from_slice(&month.to_bytes());
        aad[3..11].copy_from_slice(&key_id.0);
        aad[11..].copy_from_slice(&id.0);
        aad
    }

    /// The record's body (what a frame carries and a peer receives).
    pub(crate) fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BODY_HEAD + self.sealed.len());
        out.push(BODY_VERSION);
        out.push(0);
        out.extend_from_slice(&self.key_id.0);
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.sealed);
        out
    }

    /// From [`Record::body`].
    pub(crate) fn from_body(body: &[u8]) -> Option<Self> {
        if body.len() < BODY_HEAD || body[0] != BODY_VERSION || body[1] != 0 {
            return None;
        }
        let key_id = KeyId(body[2..10].try_into().ok()?);
        let id = EventId(body[10..26].try_into().ok()?);
        Some(Self {
            key_id,
            id,
            sealed: body[BODY_HEAD..].to_vec(),
        })
    }

    /// The framed record, as appended to a segment.
    pub(crate) fn frame(&self) -> Vec<u8> {
        frame(&self.body())
    }

    /// An 8-byte digest of the body: what the month document records for sync.
    pub(crate) fn digest(&self) -> [u8; 8] {
        use sha2::Digest;
        let sum = sha2::Sha256::digest(self.body());
        let mut out = [0u8; 8];
        out.copy_from_slice(&sum[..8]);
        out
    }
}

/// Closes a group of framed records: the commit frame that follows them.
pub(crate) fn commit(group: &[u8]) -> Vec<u8> {
    let mut body = [0u8; BODY_HEAD];
    body[0] = BODY_VERSION;
    body[1] = COMMIT;
    body[2..6].copy_from_slice(&(group.len() as u32).to_be_bytes());
    body[6..10].copy_from_slice(&crc32fast::hash(group).to_be_bytes());
    frame(&body)
}

/// The group length and checksum of a commit frame's body.
fn commit_of(body: &[u8]) -> Option<(usize, u32)> {
    if body.len() != BODY_HEAD || body[0] != BODY_VERSION || body[1] != COMMIT {
        return None;
    }
    let len = u32::from_be_bytes(body[2..6].try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(body[6..10].try_into().ok()?);
    Some((len, crc))
}

/// Frames `body`: its length, a checksum over length and body, the body.
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_be_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(body);
    let mut out = Vec::with_capacity(FRAME_HEAD + body.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(&hasher.finalize().to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// What is found at a position of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A whole frame with a good checksum: its body and its total length.
    Good(&'a [u8], usize),
    /// The bytes end before the frame does (a write cut short).
    Short,
    /// A frame that cannot be right: impossible length or bad checksum.
    Bad,
}

/// Decodes the frame at the start of `buf`.
pub(crate) fn decode_frame(buf: &[u8]) -> Frame<'_> {
    decode_frame_within(buf, BODY_HEAD..=MAX_BODY)
}

/// Decodes the frame at the start of `buf` whose body length must lie in `lengths` (a
/// document frame may hold a whole snapshot, far larger than a record).
pub(crate) fn decode_frame_within(
    buf: &[u8],
    lengths: std::ops::RangeInclusive<usize>,
) -> Frame<'_> {
    if buf.len() < FRAME_HEAD {
        return Frame::Short;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !lengths.contains(&len) {
        return Frame::Bad;
    }
    let Some(body) = buf.get(FRAME_HEAD..FRAME_HEAD + len) else {
        return Frame::Short;
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&buf[..4]);
    hasher.update(body);
    if hasher.finalize().to_be_bytes() != buf[4..8] {
        return Frame::Bad;
    }
    Frame::Good(body, FRAME_HEAD + len)
}

/// A record found by a scan, with where it is.
#[derive(Debug)]
pub(crate) struct Found {
    /// Offset of its frame in the segment.
    pub offset: u64,
    /// Length of its frame.
    pub len: u32,
    /// The record.
    pub record: Record,
}

/// How a scan of a segment's bytes ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// At the end of the bytes, after a committed group.
    Clean,
    /// Nothing committed after `at`: an unfinished write, never acknowledged. It is set
    /// aside and cut.
    Torn {
        /// Where the unfinished write begins (the end of the last committed group).
        at: u64,
        /// Whether its bytes are all zero (nothing worth keeping).
        zeros: bool,
    },
    /// Bad bytes at `at` with committed groups after them: damage. The damaged bytes are
    /// quarantined and the records of the committed groups after them (`recovered`) saved
    /// again.
    Damaged {
        /// Where the damage begins (the end of the last committed group before it).
        at: u64,
    },
}

/// The result of scanning a segment's bytes.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Records of the committed groups before the end or the damage, in order.
    pub records: Vec<Found>,
    /// Records of committed groups found after damage.
    pub recovered: Vec<Found>,
    /// How it ended.
    pub end: End,
}

/// The records of one group, `bytes` (which start at segment offset `base`), if they all
/// parse back to back.
fn group_records(bytes: &[u8], base: u64) -> Option<Vec<Found>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match decode_frame(&bytes[pos..]) {
            Frame::Good(body, len) => {
                out.push(Found {
                    offset: base + pos as u64,
                    len: len as u32,
                    record: Record::from_body(body)?,
                });
                pos += len;
            }
            Frame::Short | Frame::Bad => return None,
        }
    }
    Some(out)
}

/// Scans `bytes`, which start at offset `base` of a segment at a group boundary.
pub(crate) fn scan(bytes: &[u8], base: u64) -> Scan {
    let mut records = Vec::new();
    let mut committed = 0usize;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Frame::Good(body, len) = decode_frame(&bytes[pos..]) else {
            break;
        };
        if let Some((group_len, crc)) = commit_of(body) {
            let group = &bytes[committed..pos];
            if group.len() != group_len || crc32fast::hash(group) != crc {
                break;
            }
            let Some(found) = group_records(group, base + committed as u64) else {
                break;
            };
            records.extend(found);
            committed = pos + len;
        } else if Record::from_body(body).is_none() {
            break;
        }
        pos += len;
    }
    let at = base + committed as u64;
    if committed == bytes.len() {
        return Scan {
            records,
            recovered: Vec::new(),
            end: End::Clean,
        };
    }
    let recovered = resync(&bytes[committed..], at);
    let end = if recovered.is_empty() {
        End::Torn {
            at,
            zeros: bytes[committed..].iter().all(|b| *b == 0),
        }
    } else {
        End::Damaged { at }
    };
    Scan {
        records,
        recovered,
        end,
    }
}

/// Finds committed groups in damaged bytes: at each offset, a commit frame whose group —
/// the bytes just before it — has the length and checksum it names and parses as records.
/// (A false match needs two 32-bit checksums to agree on random bytes; a record must then
/// also open with a month key before it is trusted, see `recovery`.)
fn resync(bytes: &[u8], base: u64) -> Vec<Found> {
    let mut out = Vec::new();
    let mut pos = 1usize;
    let mut floor = 0usize;
    while pos + FRAME_HEAD <= bytes.len() {
        if let Frame::Good(body, len) = decode_frame(&bytes[pos..]) {
            if let Some((group_len, crc)) = commit_of(body) {
                if let Some(start) = pos.checked_sub(group_len).filter(|s| *s >= floor) {
                    let group = &bytes[start..pos];
                    if crc32fast::hash(group) == crc {
                        if let Some(found) = group_records(group, base + start as u64) {
                            out.extend(found);
                            pos += len;
                            floor = pos;
                            continue;
                        }
                    }
                }
            }
        }
        pos += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(n: u8) -> Record {
        Record {
            key_id: KeyId([n; 8]),
            id: EventId([n; 16]),
            sealed: vec![n; 40 + n as usize],
        }
    }

    #[test]
    fn header_round_trips_and_refuses_damage() {
        let h = Header {
            month: Month::new(2026, 11).unwrap(),
            number: 7,
            left: Some((6, 1234)),
        };
        let bytes = h.encode();
        assert_eq!(Header::decode(&bytes), Some(h));
        let first = Header { left: None, ..h };
        assert_eq!(Header::decode(&first.encode()), Some(first));
        let mut bad = bytes;
        bad[13] ^= 1;
        assert_eq!(Header::decode(&bad), None);
        assert_eq!(Header::decode(&bytes[..20]), None);
    }

    #[test]
    fn file_names() {
        assert_eq!(file_name(3), "00000003.seg");
        assert_eq!(parse_file_name("00000003.seg"), Some(3));
        for bad in [
            "00000000.seg",
            "3.seg",
            "0000000a.seg",
            "00000003.seg.tmp-1",
            "x",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    /// A group of records `ns`, framed and committed.
    fn group(ns: &[u8]) -> Vec<u8> {
        let mut g: Vec<u8> = ns.iter().flat_map(|n| rec(*n).frame()).collect();
        g.extend_from_slice(&commit(&g));
        g
    }

    fn ids(found: &[Found]) -> Vec<u8> {
        found.iter().map(|f| f.record.id.0[0]).collect()
    }

    #[test]
    fn a_scan_reads_every_committed_record_and_ends_clean() {
        let mut bytes = group(&[0, 1]);
        bytes.extend(group(&[2]));
        let s = scan(&bytes, 32);
        assert_eq!(s.end, End::Clean);
        assert_eq!(ids(&s.records), vec![0, 1, 2]);
        assert_eq!(s.records[0].offset, 32);
    }

    #[test]
    fn records_without_their_commit_are_an_unfinished_write() {
        // It ignores whole records whose group never committed (the crash came before).
        let mut bytes = group(&[0, 1]);
        let committed = bytes.len() as u64;
        bytes.extend(rec(2).frame());
        bytes.extend(rec(3).frame());
        let s = scan(&bytes, 0);
        assert_eq!(ids(&s.records), vec![0, 1]);
        assert_eq!(
            s.end,
            End::Torn {
                at: committed,
                zeros: false
            }
        );
    }

    #[test]
    fn a_group_torn_out_of_order_is_unfinished_not_damage() {
        // Later sectors of one write reached the disk, earlier ones did not: the group's
        // last record and its commit frame are whole, its first record is not.
        let mut bytes = group(&[0]);
        let committed = bytes.len();
        let mut torn = group(&[1, 2]);
        for b in &mut torn[..20] {
            *b = 0;
        }
        bytes.extend(&torn);
        let s = scan(&bytes, 0);
        assert_eq!(ids(&s.records), vec![0]);
        assert!(s.recovered.is_empty(), "{:?}", s.recovered);
        assert_eq!(
            s.end,
            End::Torn {
                at: committed as u64,
                zeros: false
            }
        );
    }

    #[test]
    fn it_tells_a_torn_tail_from_damage() {
        let mut bytes = group(&[0, 1, 2]);
        let three = bytes.len();
        let last = group(&[3]);
        // It calls a write cut short a torn tail.
        let mut torn = bytes.clone();
        torn.extend_from_slice(&last[..last.len() / 2]);
        let s = scan(&torn, 0);
        assert_eq!(s.records.len(), 3);
        assert_eq!(
            s.end,
            End::Torn {
                at: three as u64,
                zeros: false
            }
        );
        // It calls zeros at the end a torn tail with nothing to keep.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 100]);
        assert_eq!(
            scan(&zeros, 0).end,
            End::Torn {
                at: three as u64,
                zeros: true
            }
        );
        // It calls a bad byte with committed groups after it damage, and finds their
        // records (not those of the damaged group).
        bytes.extend(group(&[4]));
        bytes.extend(group(&[5, 6]));
        bytes[three + 12] ^= 0xff; // inside record 4
        let mut damaged = group(&[7]);
        let first = damaged.len();
        damaged.extend(&bytes);
        damaged[first + 12] ^= 0xff; // inside record 0
        let s = scan(&damaged, 0);
        assert_eq!(ids(&s.records), vec![7]);
        assert_eq!(s.end, End::Damaged { at: first as u64 });
        assert_eq!(ids(&s.recovered), vec![5, 6]);
    }
    #[test]
    fn impossible_lengths_are_bad_not_short() {
        let mut f = rec(1).frame();
        f[0] = 0xff;
        assert_eq!(decode_frame(&f), Frame::Bad);
        assert_eq!(decode_frame(&[0; 8]), Frame::Bad);
        assert_eq!(decode_frame(&[0; 3]), Frame::Short);
    }
}
