//! The messages devices exchange (同期メッセージ) and their byte form.
//!
//! A hand-written binary form rather than JSON: a month of 50,000 records crosses the wire
//! as its bytes at rest, not as base64 of them. Every count is checked against the bytes
//! that remain before anything is allocated, so a hostile length cannot make a peer
//! reserve memory it was never sent.

use crate::event::{EventId, Month};
use crate::store::SharedDoc;

/// The protocol version in [`Message::Hello`]; a peer speaking another is refused.
pub const PROTOCOL: u16 = 1;

/// The most ids one [`Message::Want`] may carry.
pub const MAX_WANT: usize = 8192;
/// The most keys one [`Message::Keys`] may carry (a month has one per device that started
/// it apart, plus a carry-over key).
pub const MAX_KEYS: usize = 16;
/// The most records one [`Message::Records`] may carry.
pub const MAX_RECORDS: usize = 8192;
/// The most months a [`Message::Hello`] may name (a device holds a few; purged months
/// accumulate a tombstone each, about a dozen a year).
pub const MAX_MONTHS: usize = 1200;

/// One message of the sync protocol.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    /// The first message each way: the months the sender holds and those it purged.
    Hello {
        /// [`PROTOCOL`].
        protocol: u16,
        /// Months held (their documents are synced).
        months: Vec<Month>,
        /// Months whose retention ended on the sender: the receiver ends them too.
        purged: Vec<Month>,
    },
    /// A month's keys (only ever inside the authenticated channel).
    Keys {
        /// The month.
        month: Month,
        /// Its keys.
        keys: Vec<[u8; 32]>,
    },
    /// An automerge sync message for a shared document.
    Doc {
        /// Which document.
        doc: SharedDoc,
        /// The automerge message (`automerge::sync::Message::encode`).
        sync: Vec<u8>,
    },
    /// Records the sender lacks, by id.
    Want {
        /// Their month.
        month: Month,
        /// Their ids.
        ids: Vec<EventId>,
    },
    /// Record bodies, answering a [`Message::Want`].
    Records {
        /// Their month.
        month: Month,
        /// The bodies (as `Store::record_bodies` gives them).
        bodies: Vec<Vec<u8>>,
    },
}

impl std::fmt::Debug for Message {
    // Never prints keys or record bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Hello {
                protocol,
                months,
                purged,
            } => f
                .debug_struct("Hello")
                .field("protocol", protocol)
                .field("months", months)
                .field("purged", purged)
                .finish(),
            Message::Keys { month, keys } => f
                .debug_struct("Keys")
                .field("month", month)
                .field("keys", &keys.len())
                .finish(),
            Message::Doc { doc, sync } => f
                .debug_struct("Doc")
                .field("doc", doc)
                .field("bytes", &sync.len())
                .finish(),
            Message::Want { month, ids } => f
                .debug_struct("Want")
                .field("month", month)
                .field("ids", &ids.len())
                .finish(),
            Message::Records { month, bodies } => f
                .debug_struct("Records")
                .field("month", month)
                .field("records", &bodies.len())
                .finish(),
        }
    }
}

/// A message that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed sync message: {0}")]
pub struct WireError(pub String);

const HELLO: u8 = 1;
const KEYS: u8 = 2;
const DOC: u8 = 3;
const WANT: u8 = 4;
const RECORDS: u8 = 5;

const DOC_MONTH: u8 = 0;
const DOC_DEVICES: u8 = 1;
const DOC_SETTINGS: u8 = 2;

impl Message {
    /// The byte form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Message::Hello {
                protocol,
                months,
                purged,
            } => {
                out.push(HELLO);
                out.extend_from_slice(&protocol.to_be_bytes());
                put_months(&mut out, months);
                put_months(&mut out, purged);
            }
            Message::Keys { month, keys } => {
                out.push(KEYS);
                out.extend_from_slice(&month.to_bytes());
                put_len(&mut out, keys.len());
                for k in keys {
                    out.extend_from_slice(k);
                }
            }
            Message::Doc { doc, sync } => {
                out.push(DOC);
                match doc {
                    SharedDoc::Month(m) => {
                        out.push(DOC_MONTH);
                        out.extend_from_slice(&m.to_bytes());
                    }
                    SharedDoc::Devices => out.push(DOC_DEVICES),
                    SharedDoc::Settings => out.push(DOC_SETTINGS),
                }
                put_bytes(&mut out, sync);
            }
            Message::Want { month, ids } => {
                out.push(WANT);
                out.extend_from_slice(&month.to_bytes());
                put_len(&mut out, ids.len());
                for id in ids {
                    out.extend_from_slice(&id.0);
                }
            }
            Message::Records { month, bodies } => {
                out.push(RECORDS);
                out.extend_from_slice(&month.to_bytes());
                put_len(&mut out, bodies.len());
                for b in bodies {
                    put_bytes(&mut out, b);
                }
            }
        }
        out
    }

    /// From [`Message::encode`]; trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader { bytes, pos: 0 };
        let message = match r.u8()? {
            HELLO => Message::Hello {
                protocol: u16::from_be_bytes(r.array()?),
                months: r.months()?,
                purged: r.months()?,
            },
            KEYS => {
                let month = r.month()?;
                let n = r.count(32, MAX_KEYS)?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(r.array()?);
                }
                Message::Keys { month, keys }
            }
            DOC => {
                let doc = match r.u8()? {
                    DOC_MONTH => SharedDoc::Month(r.month()?),
                    DOC_DEVICES => SharedDoc::Devices,
                    DOC_SETTINGS => SharedDoc::Settings,
                    other => return Err(WireError(format!("unknown document kind {other}"))),
                };
                Message::Doc {
                    doc,
                    sync: r.bytes()?.to_vec(),
                }
            }
            WANT => {
                let month = r.month()?;
                let n = r.count(16, MAX_WANT)?;
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(EventId(r.array()?));
                }
                Message::Want { month, ids }
            }
            RECORDS => {
                let month = r.month()?;
                let n = r.count(4, MAX_RECORDS)?;
                let mut bodies = Vec::with_capacity(n);
                for _ in 0..n {
                    bodies.push(r.bytes()?.to_vec());
                }
                Message::Records { month, bodies }
            }
            other => return Err(WireError(format!("unknown message kind {other}"))),
        };
        if r.pos != bytes.len() {
            return Err(WireError(format!(
                "{} bytes after the message",
                bytes.len() - r.pos
            )));
        }
        Ok(message)
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

fn put_months(out: &mut Vec<u8>, months: &[Month]) {
    put_len(out, months.len());
    for m in months {
        out.extend_from_slice(&m.to_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| WireError(format!("truncated at byte {}", self.pos)))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let b = self.take(N)?;
        b.try_into()
            .map_err(|_| WireError(format!("truncated at byte {}", self.pos)))
    }

    /// A count of at most `max` items of at least `min` bytes each, refused if the rest
    /// cannot hold them.
    fn count(&mut self, min: usize, max: usize) -> Result<usize, WireError> {
        let n = u32::from_be_bytes(self.array()?) as usize;
        if n > max {
            return Err(WireError(format!(
                "{n} items announced, at most {max} allowed"
            )));
        }
        let left = self.bytes.len() - self.pos;
        if n.saturating_mul(min) > left {
            return Err(WireError(format!("{n} items announced, {left} bytes left")));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = u32::from_be_bytes(self.array()?) as usize;
        self.take(n)
    }

    fn month(&mut self) -> Result<Month, WireError> {
        let b: [u8; 3] = self.array()?;
        Month::from_bytes(b).ok_or_else(|| WireError("not a month".into()))
    }

    fn months(&mut self) -> Result<Vec<Month>, WireError> {
        let n = self.count(3, MAX_MONTHS)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.month()?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn samples() -> Vec<Message> {
        let m = Month::new(2026, 11).unwrap();
        vec![
            Message::Hello {
                protocol: PROTOCOL,
                months: vec![m],
                purged: vec![Month::new(2026, 1).unwrap()],
            },
            Message::Keys {
                month: m,
                keys: vec![[7; 32], [8; 32]],
            },
            Message::Doc {
                doc: SharedDoc::Month(m),
                sync: vec![1, 2, 3],
            },
            Message::Doc {
                doc: SharedDoc::Devices,
                sync: vec![],
            },
            Message::Want {
                month: m,
                ids: vec![EventId([9; 16])],
            },
            Message::Records {
                month: m,
                bodies: vec![vec![1; 40], vec![]],
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn every_cut_of_every_message_is_refused_not_misread() {
        for m in samples() {
            let bytes = m.encode();
            for cut in 0..bytes.len() {
                assert!(
                    Message::decode(&bytes[..cut]).is_err(),
                    "{m:?} cut at {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Message::decode(&longer).is_err());
        }
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let mut b = vec![WANT];
        b.extend_from_slice(&Month::new(2026, 11).unwrap().to_bytes());
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        let e = Message::decode(&b).unwrap_err();
        assert!(e.0.contains("items announced"), "{e}");
        // Within the bytes sent but above what a message may carry.
        let want = Message::Want {
            month: Month::new(2026, 11).unwrap(),
            ids: vec![EventId([1; 16]); MAX_WANT + 1],
        };
        let e = Message::decode(&want.encode()).unwrap_err();
        assert!(e.0.contains("at most 8192"), "{e}");
    }
}
