//! PC/SC readers through pcscd (the `pcsc` crate): listing readers, waiting for a card to be
//! placed, and carrying APDUs.
//!
//! The calls block, so the check runs them on a blocking thread. A reader name is chosen by
//! the operator (`--reader`) or, without one, the first reader that has a card wins.
//!
//! A check's APDUs all go inside one PC/SC transaction ([`Transport::exclusive`]): the
//! connection is shared (other programs may watch the reader), and without a transaction
//! another program's command could land between our VERIFY and our signature, or use the
//! verified state after us. The transaction ends with a card reset, so that state is gone
//! before anyone else gets the card; `pcsc::Transaction`'s drop ends it on a panic too.

use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};

use pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};

use super::{CardError, Transport};

impl CardError {
    fn from_pcsc(err: pcsc::Error) -> Self {
        match err {
            pcsc::Error::NoReadersAvailable => CardError::NoReaders,
            pcsc::Error::NoService | pcsc::Error::ServiceStopped => CardError::ServiceNotRunning,
            pcsc::Error::RemovedCard
            | pcsc::Error::ResetCard
            | pcsc::Error::NoSmartcard
            | pcsc::Error::UnpoweredCard
            | pcsc::Error::UnresponsiveCard => CardError::Removed,
            other => CardError::Pcsc(other),
        }
    }
}

/// One reader as pcscd reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReaderInfo {
    /// The reader's name, e.g. `Virtual PCD 00 00`.
    pub name: String,
    /// Whether a card is in (or on) it.
    pub card_present: bool,
}

/// A connection to pcscd.
pub struct Readers {
    ctx: Context,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Readers")
    }
}

/// The readers as pcscd sees them now, or what staff are told when they cannot be seen
/// (pcscd not running, no reader). Blocks: call it off the async threads.
pub fn snapshot() -> (Vec<ReaderInfo>, Option<String>) {
    match Readers::connect().and_then(|r| r.list()) {
        Ok(list) if list.is_empty() => (list, Some(CardError::NoReaders.message_ja())),
        Ok(list) => (list, None),
        Err(e) => (Vec::new(), Some(e.message_ja())),
    }
}

impl Readers {
    /// Connects to pcscd.
    pub fn connect() -> Result<Self, CardError> {
        Context::establish(Scope::User)
            .map(|ctx| Self { ctx })
            .map_err(CardError::from_pcsc)
    }

    /// Lists the readers and whether each holds a card.
    pub fn list(&self) -> Result<Vec<ReaderInfo>, CardError> {
        let names = self
            .ctx
            .list_readers_owned()
            .map_err(CardError::from_pcsc)?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut states: Vec<ReaderState> = names
            .into_iter()
            .map(|n| ReaderState::new(n, State::UNAWARE))
            .collect();
        self.ctx
            .get_status_change(Duration::ZERO, &mut states)
            .map_err(CardError::from_pcsc)?;
        Ok(states
            .iter()
            .map(|s| ReaderInfo {
                name: s.name().to_string_lossy().into_owned(),
                card_present: is_present(s),
            })
            .collect())
    }

    /// Waits until a card is on `reader` (or on any reader when `None`) and returns the name
    /// of the reader that holds it. A card already in place counts at once.
    pub fn wait_for_card(
        &self,
        reader: Option<&str>,
        timeout: Duration,
    ) -> Result<String, CardError> {
        let deadline = Instant::now() + timeout;
        loop {
            let names = self
                .ctx
                .list_readers_owned()
                .map_err(CardError::from_pcsc)?;
            let wanted: Vec<CString> = match reader {
                Some(name) => {
                    let found: Vec<CString> = names
                        .iter()
                        .filter(|n| n.to_bytes() == name.as_bytes())
                        .cloned()
                        .collect();
                    if found.is_empty() {
                        return Err(CardError::ReaderNotFound {
                            name: name.to_string(),
                            available: names
                                .iter()
                                .map(|n| n.to_string_lossy().into_owned())
                                .collect(),
                        });
                    }
                    found
                }
                None if names.is_empty() => return Err(CardError::NoReaders),
                None => names,
            };
            let mut states: Vec<ReaderState> = wanted
                .into_iter()
                .map(|n| ReaderState::new(n, State::UNAWARE))
                .collect();
            // Learn the current state first, then wait for a change.
            self.ctx
                .get_status_change(Duration::ZERO, &mut states)
                .map_err(CardError::from_pcsc)?;
            if let Some(s) = states.iter().find(|s| is_present(s)) {
                return Ok(s.name().to_string_lossy().into_owned());
            }
            for s in &mut states {
                s.sync_current_state();
            }
            // Also wake when readers come or go, so a reader plugged in meanwhile is seen.
            states.push(ReaderState::new(pnp(), State::UNAWARE));
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(CardError::NoCardInTime);
            }
            match self.ctx.get_status_change(remaining, &mut states) {
                Ok(()) => {
                    if let Some(s) = states.iter().find(|s| s.name() != pnp() && is_present(s)) {
                        return Ok(s.name().to_string_lossy().into_owned());
                    }
                }
                Err(pcsc::Error::Timeout) => return Err(CardError::NoCardInTime),
                Err(e) => return Err(CardError::from_pcsc(e)),
            }
        }
    }

    /// Connects to the card in `reader`.
    pub fn open(&self, reader: &str) -> Result<PcscTransport, CardError> {
        let name = CString::new(reader).map_err(|_| CardError::ReaderNotFound {
            name: reader.to_string(),
            available: Vec::new(),
        })?;
        let card = self
            .ctx
            .connect(&name, ShareMode::Shared, Protocols::ANY)
            .map_err(CardError::from_pcsc)?;
        Ok(PcscTransport { card })
    }
}

fn pnp() -> &'static CStr {
    pcsc::PNP_NOTIFICATION()
}

fn is_present(s: &ReaderState) -> bool {
    let e = s.event_state();
    e.contains(State::PRESENT) && !e.contains(State::MUTE)
}

/// APDUs over a pcscd card connection.
pub struct PcscTransport {
    card: pcsc::Card,
}

impl std::fmt::Debug for PcscTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PcscTransport")
    }
}

impl Transport for PcscTransport {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardError> {
        transmit_on(&self.card, command)
    }

    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport) -> Result<(), CardError>,
    ) -> Result<(), CardError> {
        let transaction = match self.card.transaction2() {
            Ok(t) => t,
            // The card was reset since we connected (by pcscd or another program): our
            // handle must learn that before it may hold the card. Reconnect once, then go.
            Err((card, pcsc::Error::ResetCard)) => {
                card.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard)
                    .map_err(CardError::from_pcsc)?;
                card.transaction().map_err(CardError::from_pcsc)?
            }
            Err((_, e)) => return Err(CardError::from_pcsc(e)),
        };
        let result = body(&mut InTransaction { card: &transaction });
        // Reset, not leave: the PIN's verified state must be gone before the card is
        // anyone else's. A failure here (the card left) changes nothing for the check; the
        // transaction's drop then ends it as far as pcscd still can.
        if let Err((_transaction, e)) = transaction.end(Disposition::ResetCard) {
            tracing::debug!(error = %e, "ending the card transaction failed");
        }
        result
    }
}

/// The card while this process holds its transaction.
struct InTransaction<'a> {
    card: &'a pcsc::Card,
}

impl Transport for InTransaction<'_> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardError> {
        transmit_on(self.card, command)
    }
}

fn transmit_on(card: &pcsc::Card, command: &[u8]) -> Result<Vec<u8>, CardError> {
    // 256 data bytes plus the status word, the most a short APDU answers.
    let mut buf = [0u8; 258];
    match card.transmit(command, &mut buf) {
        Ok(answer) if answer.len() >= 2 => Ok(answer.to_vec()),
        Ok(_) => Err(diagnose(card, None)),
        Err(e) => Err(diagnose(card, Some(e))),
    }
}

/// Tells a card pulled out mid-exchange from other failures. pcscd reports a vanished card
/// inconsistently (an empty answer, "not transacted", "removed") and notices the removal only
/// at its next poll, so the card's presence is asked a few times.
fn diagnose(card: &pcsc::Card, error: Option<pcsc::Error>) -> CardError {
    for _ in 0..5 {
        match card.status2_owned() {
            Ok(status) if status.status().contains(pcsc::Status::PRESENT) => {}
            Ok(_) => return CardError::Removed,
            Err(e) if CardError::from_pcsc(e).is_removed() => return CardError::Removed,
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    match error {
        Some(e) => CardError::from_pcsc(e),
        None => CardError::TruncatedResponse,
    }
}
