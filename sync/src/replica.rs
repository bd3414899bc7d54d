//! Replication with one paired device (端末間同期): the protocol's state machine, free of
//! network I/O, so the same code runs over QUIC in tsunagid and over an in-memory queue in
//! the convergence tests (thousands of cases, many seeds).
//!
//! Both sides run the same [`Session`]; each message in yields the messages to send back:
//!
//! 1. [`Message::Hello`] each way: the months held and the months purged. A month the peer
//!    purged is ended here too (if the [`Host`] agrees), so a device that was offline
//!    during a purge never brings the month back; a purged month's documents, keys and
//!    records from the peer are ignored.
//! 2. [`Message::Keys`]: every key of every month held, sent before that month's document
//!    (a month may hold several keys: two devices that each started it while apart), and
//!    again when a month gains a key.
//! 3. [`Message::Doc`]: for each shared document (devices, settings, each month), the
//!    automerge sync protocol runs until neither side has anything to send; every message
//!    received is answered by the next one generated.
//! 4. After a month document's message, the ids it names that this device holds no record
//!    of are asked for ([`Message::Want`]); the peer answers with the records
//!    ([`Message::Records`]), which are checked (the digest the document names, a
//!    signature of one of the clinic's devices, a key of the month) and written as one
//!    group.
//!
//! A new local write (or records received from another peer) is announced by
//! [`Session::local_change`], which generates what the peer now lacks: that is how a
//! capture is pushed as it happens, and how a hub passes records on.
//!
//! What the peer sends that is wrong — a record that does not verify, a document change
//! that does not load — is refused, counted and reported with the peer's id, and never
//! applied; the session goes on. A message that does not decode, or another protocol
//! version, ends the session ([`SessionError`]): the connection is closed.

pub mod link;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use automerge::ChangeHash;

use crate::device::DeviceId;
use crate::event::{EventId, Month};
use crate::store::{KeyId, ReceiveChecks, SharedDoc, Store, StoreError, SyncState};

pub use wire::{Message, WireError, PROTOCOL};

/// Ids asked for in one [`Message::Want`].
const WANT_CHUNK: usize = wire::MAX_WANT;
/// Ids a peer may be owed at once (it asked for them before they arrived here).
const MAX_OWED: usize = 100_000;
/// Record bytes sent in one [`Message::Records`] (a few records more than this at most).
const RECORDS_CHUNK: usize = 1024 * 1024;
/// Ids read from the store at a time when serving.
const SERVE_CHUNK: usize = 256;

/// What a session needs from its owner besides the store.
pub trait Host: Send + Sync {
    /// A paired peer ended `month` (its retention ended there): end it here too, and say
    /// whether it was ended. A host may refuse (`Ok(false)`), for example a month whose
    /// retention cannot have ended by this device's clock.
    fn purge_month(&self, store: &Store, month: Month) -> Result<bool, StoreError>;
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The peer sent bytes that are not a message.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The peer speaks another version of the protocol.
    #[error("peer speaks sync protocol {0}, this device {PROTOCOL}")]
    Protocol(u16),
    /// The peer sent something before its hello.
    #[error("peer sent {0} before its hello")]
    NoHello(&'static str),
    /// This device's store failed (not the peer's fault); the session is retried later.
    #[error(transparent)]
    Store(StoreError),
}

/// Something the peer sent that was refused and not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What was refused, and why (English, no personal data).
    pub what: String,
}

/// Counters of a session, for status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Messages received.
    pub messages_in: u64,
    /// Records received and written.
    pub records_in: u64,
    /// Records sent.
    pub records_out: u64,
    /// Things the peer sent that were refused.
    pub refused: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The replication state with one peer over one connection.
pub struct Session {
    peer: DeviceId,
    host: Arc<dyn Host>,
    hello: bool,
    states: BTreeMap<SharedDoc, SyncState>,
    /// Each document's heads here when a message for it was last generated.
    heads: BTreeMap<SharedDoc, Vec<ChangeHash>>,
    keys_sent: HashMap<Month, BTreeSet<KeyId>>,
    /// Ids the peer asked for that this device did not hold yet: sent when they arrive
    /// (the peer will not ask again: its document already names them).
    owed: BTreeMap<Month, BTreeSet<EventId>>,
    /// Ids sent to the peer in this session (never sent twice).
    served: HashMap<Month, HashSet<EventId>>,
    /// Ids the peer asked for, not sent yet, in the order asked: sent as the owner's write
    /// queue drains ([`Session::send_more`]), so what waits for a slow peer is ids, not
    /// record bytes.
    unsent: VecDeque<(Month, EventId)>,
    /// The ids in `unsent`, by month (asked again, they are not queued twice).
    queued: HashMap<Month, HashSet<EventId>>,
    /// Record bytes one step may hand out ([`Session::set_send_budget`]).
    budget: usize,
    /// Ids asked for and not yet received.
    wanted: BTreeMap<Month, BTreeSet<EventId>>,
    /// At the last look for wanted ids that arrived some other way: the store's
    /// [`Store::appended`] and this session's `records_in`.
    looked: Option<(u64, u64)>,
    /// Months with records refused for want of a key or of a known signer: asked for
    /// again when keys or the devices document arrive.
    retry: BTreeSet<Month>,
    /// What each month document names (event id → digest), kept between record batches;
    /// extended by what the peer's document messages name, loaded again when a record
    /// names an id it lacks (the document may have grown through another peer).
    expected: HashMap<Month, HashMap<EventId, [u8; 8]>>,
    /// Months whose whole document was compared with the records held, once per session
    /// (it may name records an earlier session did not fetch); after that, only what each
    /// message names is.
    scanned: HashSet<Month>,
    /// Documents this peer sent a change to that was refused: not synced with it again in
    /// this session (it would only send the same change again; other peers bring what
    /// honest devices wrote).
    refused_docs: BTreeSet<SharedDoc>,
    stats: SessionStats,
}

impl Session {
    /// A session with `peer`, who is paired (the transport checked its key).
    pub fn new(peer: DeviceId, host: Arc<dyn Host>) -> Self {
        Self {
            peer,
            host,
            hello: false,
            states: BTreeMap::new(),
            heads: BTreeMap::new(),
            keys_sent: HashMap::new(),
            owed: BTreeMap::new(),
            served: HashMap::new(),
            unsent: VecDeque::new(),
            queued: HashMap::new(),
            budget: usize::MAX,
            wanted: BTreeMap::new(),
            looked: None,
            retry: BTreeSet::new(),
            expected: HashMap::new(),
            scanned: HashSet::new(),
            refused_docs: BTreeSet::new(),
            stats: SessionStats::default(),
        }
    }

    /// The peer.
    pub fn peer(&self) -> &DeviceId {
        &self.peer
    }

    /// The counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// How many bytes of records the next step may hand out (the room left in the owner's
    /// write queue); the rest waits in the session, as ids, for [`Session::send_more`].
    /// Unlimited until set. One record is handed out whenever the budget is not zero, so
    /// every step with room makes progress.
    pub fn set_send_budget(&mut self, bytes: usize) {
        self.budget = bytes;
    }

    /// Whether records the peer asked for wait to be sent ([`Session::send_more`]).
    pub fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// How many ids the peer asked for wait to be sent.
    pub fn unsent(&self) -> usize {
        self.unsent.len()
    }

    /// Documents not yet known to be the same on both sides, plus months with records
    /// still on their way (either way): 0 once the two devices hold the same.
    pub fn behind(&self) -> usize {
        self.behind_docs().len()
    }

    /// The documents [`Session::behind`] counts.
    pub fn behind_docs(&self) -> Vec<SharedDoc> {
        let mut out: BTreeSet<SharedDoc> = self
            .states
            .iter()
            .filter(|(d, s)| s.their_heads.as_ref() != self.heads.get(d))
            .map(|(d, _)| *d)
            .collect();
        out.extend(
            self.wanted
                .iter()
                .filter(|(_, w)| !w.is_empty())
                .map(|(m, _)| SharedDoc::Month(*m)),
        );
        out.extend(
            self.queued
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(m, _)| SharedDoc::Month(*m)),
        );
        out.extend(&self.refused_docs);
        out.into_iter().collect()
    }

    /// The first messages: the hello, then whatever the peer may lack.
    pub fn start(&mut self, store: &Store) -> Result<Vec<Message>, SessionError> {
        let mut send = vec![Message::Hello {
            protocol: PROTOCOL,
            months: held(store)?,
            purged: store.purged_months(),
        }];
        send.extend(self.local_change(store)?);
        Ok(send)
    }

    /// Something changed here (a write, or records from another peer): what the peer
    /// now lacks.
    pub fn local_change(&mut self, store: &Store) -> Result<Vec<Message>, SessionError> {
        let mut send = Vec::new();
        let months = held(store)?;
        for &month in &months {
            let keys = store.month_keys(month).map_err(SessionError::Store)?;
            let sent = self.keys_sent.entry(month).or_default();
            if keys.iter().any(|(id, _)| !sent.contains(id)) {
                sent.extend(keys.iter().map(|(id, _)| *id));
                let keys: Vec<[u8; 32]> = keys.into_iter().map(|(_, k)| k).collect();
                for chunk in keys.chunks(wire::MAX_KEYS) {
                    send.push(Message::Keys {
                        month,
                        keys: chunk.to_vec(),
                    });
                }
            }
        }
        // Records that arrived (here or through another peer): send what is owed, and
        // stop waiting for what is no longer missing.
        // (A month not held yet keeps its entries: its first records may still come.)
        for (month, ids) in std::mem::take(&mut self.owed) {
            if ids.is_empty() {
                continue;
            }
            if months.contains(&month) {
                send.extend(self.serve(store, month, ids.into_iter().collect())?);
            } else {
                self.owed.insert(month, ids);
            }
        }
        // Stop waiting for what arrived some other way (through another peer). That
        // compares whole months, so it is done only when something besides this session's
        // own records was appended since the last look: during a first sync this runs
        // after every batch the peer sends, and a month of 50,000 ids each time made the
        // sync quadratic.
        let appended = store.appended();
        let others = self.looked.is_none_or(|(total, own)| {
            appended.saturating_sub(total) > self.stats.records_in.saturating_sub(own)
        });
        self.looked = Some((appended, self.stats.records_in));
        for (month, ids) in std::mem::take(&mut self.wanted) {
            if ids.is_empty() {
                continue;
            }
            if !months.contains(&month) || !others {
                self.wanted.insert(month, ids);
                continue;
            }
            let missing: HashSet<EventId> = store
                .missing_records(month)
                .map_err(SessionError::Store)?
                .into_iter()
                .collect();
            self.wanted.insert(
                month,
                ids.into_iter().filter(|id| missing.contains(id)).collect(),
            );
        }
        let docs = [SharedDoc::Devices, SharedDoc::Settings]
            .into_iter()
            .chain(months.into_iter().map(SharedDoc::Month));
        for doc in docs {
            if let Some(m) = self.generate(store, doc)? {
                send.push(m);
            }
        }
        Ok(send)
    }

    /// Handles one message from the peer; returns the messages to send back and what was
    /// refused.
    pub fn receive(
        &mut self,
        store: &Store,
        bytes: &[u8],
    ) -> Result<(Vec<Message>, Vec<Refusal>), SessionError> {
        let message = Message::decode(bytes)?;
        self.stats.messages_in += 1;
        let mut send = Vec::new();
        let mut refused = Vec::new();
        match message {
            Message::Hello {
                protocol,
                months: _,
                purged,
            } => {
                if protocol != PROTOCOL {
                    return Err(SessionError::Protocol(protocol));
                }
                self.hello = true;
                let here = held(store)?;
                for month in purged {
                    if !here.contains(&month) {
                        continue;
                    }
                    match self.host.purge_month(store, month) {
                        Ok(true) => {
                            tracing::info!(peer = %self.peer, %month, "month ended here too: its retention ended on a paired device");
                        }
                        Ok(false) => {
                            tracing::warn!(peer = %self.peer, %month, "a paired device ended a month that is kept here (its retention has not ended here, or it changed meanwhile)");
                        }
                        Err(e) => return Err(SessionError::Store(e)),
                    }
                }
            }
            _ if !self.hello => return Err(SessionError::NoHello("data")),
            Message::Keys { month, keys } => {
                if store.is_purged(month) || store.is_carried(month) {
                    return Ok((send, refused));
                }
                let have: HashSet<[u8; 32]> = store
                    .month_keys(month)
                    .map_err(SessionError::Store)?
                    .into_iter()
                    .map(|(_, k)| k)
                    .collect();
                for key in keys.into_iter().filter(|k| !have.contains(k)) {
                    match store.install_month_key(month, key) {
                        Ok(_) => {}
                        Err(e) if peer_fault(&e) => {
                            refused.push(self.refuse(format!("key of {month}: {e}")))
                        }
                        Err(e) => return Err(SessionError::Store(e)),
                    }
                }
                send.extend(self.retry_wanted(store)?);
            }
            Message::Doc { doc, .. } if self.refused_docs.contains(&doc) => {}
            Message::Doc { doc, sync } => {
                let state = self.states.entry(doc).or_default();
                match store.receive_sync_message(doc, state, &sync) {
                    Ok(named) => match doc {
                        SharedDoc::Month(month) => {
                            let missing = if self.scanned.insert(month) {
                                match store.missing_records(month) {
                                    Ok(missing) => missing,
                                    Err(StoreError::Purged(_)) => return Ok((send, refused)),
                                    Err(e) => return Err(SessionError::Store(e)),
                                }
                            } else {
                                named.missing
                            };
                            if let Some(expected) = self.expected.get_mut(&month) {
                                expected.extend(named.entries);
                            }
                            send.extend(self.want(month, missing));
                        }
                        SharedDoc::Devices => send.extend(self.retry_wanted(store)?),
                        SharedDoc::Settings => {}
                    },
                    Err(StoreError::Purged(_) | StoreError::Carried(_)) => {
                        self.forget(doc);
                        return Ok((send, refused));
                    }
                    Err(e) if peer_fault(&e) => {
                        refused.push(self.refuse(format!("{doc:?} sync message: {e}")));
                        self.forget(doc);
                        self.refused_docs.insert(doc);
                        return Ok((send, refused));
                    }
                    Err(e) => return Err(SessionError::Store(e)),
                }
                if let Some(m) = self.generate(store, doc)? {
                    send.push(m);
                }
            }
            Message::Want { month, ids } => {
                if store.is_purged(month) || store.is_carried(month) {
                    return Ok((send, refused));
                }
                send.extend(self.serve(store, month, ids)?);
            }
            Message::Records { month, bodies } => {
                if store.is_purged(month) || store.is_carried(month) {
                    return Ok((send, refused));
                }
                refused.extend(self.records(store, month, &bodies)?);
            }
        }
        Ok((send, refused))
    }

    fn refuse(&mut self, what: String) -> Refusal {
        self.stats.refused += 1;
        tracing::warn!(peer = %self.peer, what = %what, "refused what a peer sent");
        Refusal { what }
    }

    /// A document this device no longer syncs (its month purged or carried over): nothing
    /// is behind for it.
    fn forget(&mut self, doc: SharedDoc) {
        self.states.remove(&doc);
        self.heads.remove(&doc);
    }

    fn generate(&mut self, store: &Store, doc: SharedDoc) -> Result<Option<Message>, SessionError> {
        if self.refused_docs.contains(&doc) {
            return Ok(None);
        }
        let state = self.states.entry(doc).or_default();
        match store.sync_message(doc, state) {
            Ok((message, heads)) => {
                self.heads.insert(doc, heads);
                Ok(message.map(|sync| Message::Doc { doc, sync }))
            }
            Err(StoreError::Purged(_) | StoreError::Carried(_)) => {
                self.forget(doc);
                Ok(None)
            }
            Err(e) => Err(SessionError::Store(e)),
        }
    }

    /// Queues the records `ids` of `month` for the peer and sends what the budget allows
    /// ([`Session::send_more`]); those this device does not hold yet are owed.
    ///
    /// Each record is queued and sent at most once per session: a peer that asks for the
    /// same records again and again (or for many copies of one) gets each once. At most the
    /// month's events and [`MAX_OWED`] more wait at once, so what a peer can make this device
    /// hold is bounded by the month (made-up ids included), and what it can make it read
    /// ahead of its own reading by the budget.
    fn serve(
        &mut self,
        store: &Store,
        month: Month,
        ids: Vec<EventId>,
    ) -> Result<Vec<Message>, SessionError> {
        let events = store.counts(month).map_err(SessionError::Store)?.events;
        let limit = usize::try_from(events)
            .unwrap_or(usize::MAX)
            .saturating_add(MAX_OWED);
        let served = self.served.entry(month).or_default();
        let queued = self.queued.entry(month).or_default();
        for id in ids {
            if queued.len() >= limit {
                break;
            }
            if !served.contains(&id) && queued.insert(id) {
                self.unsent.push_back((month, id));
            }
        }
        self.send_more(store)
    }

    /// Records the peer asked for and still waits for, as messages, up to the send budget
    /// ([`Session::set_send_budget`]); ids this device does not hold yet are owed.
    pub fn send_more(&mut self, store: &Store) -> Result<Vec<Message>, SessionError> {
        let mut send = Vec::new();
        let mut left = self.budget;
        // One batch of one month's records, carried across the store reads: a message holds
        // about RECORDS_CHUNK bytes, however the ids were read.
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut size = 0;
        let mut batch_month = None;
        while left > 0 {
            let Some(&(month, _)) = self.unsent.front() else {
                break;
            };
            if batch_month != Some(month) {
                flush(&mut send, batch_month, &mut batch, &mut size);
                batch_month = Some(month);
            }
            let mut ids = Vec::with_capacity(SERVE_CHUNK);
            while ids.len() < SERVE_CHUNK {
                match self.unsent.front() {
                    Some(&(m, id)) if m == month => {
                        ids.push(id);
                        self.unsent.pop_front();
                    }
                    _ => break,
                }
            }
            // A store failure ends the session (and the link starts a new one), so what this
            // call took out of `unsent` and marked served needs no putting back. A month
            // ended here since it was asked for holds no records: its ids are owed, never
            // sent.
            let mut bodies: HashMap<EventId, Vec<u8>> = store
                .record_bodies(month, &ids)
                .map_err(SessionError::Store)?
                .into_iter()
                .collect();
            let served = self.served.entry(month).or_default();
            let owed = self.owed.entry(month).or_default();
            let queued = self.queued.entry(month).or_default();
            for (i, id) in ids.iter().enumerate() {
                if left == 0 {
                    // No room left: the rest waits, in order, for the next step.
                    for id in ids[i..].iter().rev() {
                        self.unsent.push_front((month, *id));
                    }
                    break;
                }
                queued.remove(id);
                let Some(body) = bodies.remove(id) else {
                    // Not held yet: sent when it arrives (see `owed`).
                    if owed.len() < MAX_OWED {
                        owed.insert(*id);
                    }
                    continue;
                };
                owed.remove(id);
                served.insert(*id);
                self.stats.records_out += 1;
                left = left.saturating_sub(body.len());
                size += body.len();
                batch.push(body);
                if size >= RECORDS_CHUNK || batch.len() >= wire::MAX_RECORDS {
                    flush(&mut send, batch_month, &mut batch, &mut size);
                }
            }
        }
        flush(&mut send, batch_month, &mut batch, &mut size);
        Ok(send)
    }

    fn want(&mut self, month: Month, missing: Vec<EventId>) -> Vec<Message> {
        let wanted = self.wanted.entry(month).or_default();
        let new: Vec<EventId> = missing
            .into_iter()
            .filter(|id| wanted.insert(*id))
            .collect();
        new.chunks(WANT_CHUNK)
            .map(|ids| Message::Want {
                month,
                ids: ids.to_vec(),
            })
            .collect()
    }

    /// Asks again for the records of months where some were refused for want of a key
    /// or a known signer (what just arrived may be what they lacked).
    fn retry_wanted(&mut self, store: &Store) -> Result<Vec<Message>, SessionError> {
        let mut send = Vec::new();
        for month in std::mem::take(&mut self.retry) {
            match store.missing_records(month) {
                Ok(missing) => send.extend(self.want(month, missing)),
                Err(StoreError::Purged(_)) => {}
                Err(e) => return Err(SessionError::Store(e)),
            }
        }
        Ok(send)
    }

    fn records(
        &mut self,
        store: &Store,
        month: Month,
        bodies: &[Vec<u8>],
    ) -> Result<Vec<Refusal>, SessionError> {
        let stale = self.expected.get(&month).is_some_and(|expected| {
            bodies
                .iter()
                .any(|b| crate::store::record_id(b).is_some_and(|id| !expected.contains_key(&id)))
        });
        if stale {
            self.expected.remove(&month);
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.expected.entry(month) {
            let entries = store.month_entries(month).map_err(SessionError::Store)?;
            e.insert(entries.into_iter().collect());
        }
        let mut signers: HashSet<DeviceId> = store
            .devices()
            .map_err(SessionError::Store)?
            .keys()
            .filter_map(|id| id.parse().ok())
            .collect();
        signers.insert(store.device().id().clone());
        signers.insert(self.peer.clone());
        let checks = ReceiveChecks {
            expected: self.expected.get(&month),
            signers: Some(&signers),
        };
        let answers = store.receive_many(month, bodies, &checks);
        let mut refused = Vec::new();
        let wanted = self.wanted.entry(month).or_default();
        let mut failure = None;
        let mut count = 0;
        for (body, answer) in bodies.iter().zip(answers) {
            if let Some(id) = crate::store::record_id(body) {
                wanted.remove(&id);
            }
            match answer {
                Ok(a) => {
                    if a.new {
                        self.stats.records_in += 1;
                    }
                }
                Err(e) if peer_fault(&e) => {
                    if matches!(e, StoreError::NoKey { .. } | StoreError::UnknownSigner(_)) {
                        self.retry.insert(month);
                    }
                    count += 1;
                    refused.push(format!("record of {month}: {e}"));
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            return Err(SessionError::Store(e));
        }
        self.stats.refused += count;
        // One log line per batch, however many were refused: a peer cannot flood the log.
        if let Some(first) = refused.first() {
            tracing::warn!(peer = %self.peer, refused = count, first = %first, "refused records from a peer");
        }
        Ok(refused.into_iter().map(|what| Refusal { what }).collect())
    }
}

/// Ends the batch of `month`'s records being gathered as one message, if it holds any.
fn flush(
    send: &mut Vec<Message>,
    month: Option<Month>,
    batch: &mut Vec<Vec<u8>>,
    size: &mut usize,
) {
    if let (Some(month), false) = (month, batch.is_empty()) {
        send.push(Message::Records {
            month,
            bodies: std::mem::take(batch),
        });
    }
    *size = 0;
}

/// The months whose documents this device syncs: held, not purged, not carried over.
fn held(store: &Store) -> Result<Vec<Month>, SessionError> {
    Ok(store
        .months()
        .map_err(SessionError::Store)?
        .into_iter()
        .filter(|m| !store.is_purged(*m) && !store.is_carried(*m))
        .collect())
}

/// Whether `e` is about what the peer sent (refuse it, go on) rather than this device's
/// disk (stop, try later).
fn peer_fault(e: &StoreError) -> bool {
    !matches!(
        e,
        StoreError::Write { .. }
            | StoreError::Read { .. }
            | StoreError::Index(_)
            | StoreError::WriterLost
            | StoreError::Task(_)
            | StoreError::Document(crate::store::DocError::Io { .. })
            | StoreError::Key(crate::store::KeyError::Io { .. })
    )
}
