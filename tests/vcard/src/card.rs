//! The virtual card: what is on it ([`CardProfile`]) and how it answers APDUs.

use std::sync::{Arc, Mutex};

use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// JPKI AP (公的個人認証AP).
pub const JPKI_AID: [u8; 10] = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];
/// 券面事項入力補助AP (card-info input support AP, holds the My Number).
pub const KENHOJO_AID: [u8; 10] = [0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x08];
/// 券面AP (card-surface AP, images of the card face).
pub const KENMEN_AID: [u8; 10] = [0xD3, 0x92, 0x10, 0x00, 0x31, 0x00, 0x01, 0x01, 0x04, 0x02];

/// Errors building a card.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// The private key could not be encoded as PKCS#8.
    #[error("encoding the card key: {0}")]
    Key(#[from] rsa::pkcs8::Error),
    /// The PKCS#8 key in a profile could not be decoded.
    #[error("decoding the card key: {0}")]
    KeyDecode(rsa::pkcs8::Error),
}

/// Which status word a blocked PIN answers with (cards differ: 63C0, 6983, 6984).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BlockedStatus {
    /// `69 83` authentication method blocked (the emulator default, see jpki-card.md 2.3).
    #[default]
    Sw6983,
    /// `63 C0` zero tries left.
    Sw63C0,
    /// `69 84` reference data not usable.
    Sw6984,
}

impl BlockedStatus {
    /// The status word as a number.
    pub fn sw(self) -> u16 {
        match self {
            BlockedStatus::Sw6983 => 0x6983,
            BlockedStatus::Sw63C0 => 0x63C0,
            BlockedStatus::Sw6984 => 0x6984,
        }
    }
}

/// What the token EF (JPKI `0006`) holds: it tells a physical card from a smartphone's JPKI
/// applet (jpki-card.md §1.1), which matters because a smartphone gets no grace period (R6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Token {
    /// A physical card: `JPKIAPICCTOKEN2`.
    #[default]
    Card,
    /// An older physical card: `JPKIAPICCTOKEN`.
    OlderCard,
    /// A smartphone's JPKI applet (スマホ用電子証明書): `JPKIAPGPSETOKEN`.
    Smartphone,
    /// No token EF at all: its SELECT answers `6A 82`.
    Absent,
}

impl Token {
    /// The EF's ASCII content before the NUL padding; `None` when the EF is absent.
    pub fn text(self) -> Option<&'static [u8]> {
        match self {
            Token::Card => Some(b"JPKIAPICCTOKEN2"),
            Token::OlderCard => Some(b"JPKIAPICCTOKEN"),
            Token::Smartphone => Some(b"JPKIAPGPSETOKEN"),
            Token::Absent => None,
        }
    }
}

/// Whether the user-authentication PIN is set. A 顔認証マイナンバーカード (issued from
/// 2023-12-15) has no PIN at all; what its chip answers is not in any public source
/// (jpki-card.md §3.3), so both ISO 7816-4 ways of saying "no reference data" can be played.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PinSetup {
    /// A normal card: the 4-digit PIN of the profile.
    #[default]
    Set,
    /// No PIN: the PIN EF `0018` exists but VERIFY (with or without data) answers `6A 88`
    /// (referenced data not found). Signing is never allowed.
    NotSet,
    /// No PIN: there is no PIN EF, so its SELECT answers `6A 82`. Signing is never allowed.
    NotSetNoEf,
}

/// Everything that is on one card. Serialize/Deserialize (JSON file for the `vcard` binary);
/// byte fields are hex strings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CardProfile {
    /// A name for logs and tests.
    pub label: String,
    /// The user-authentication certificate (EF 000A), DER.
    #[serde(with = "hex_bytes")]
    pub auth_certificate_der: Vec<u8>,
    /// The user-authentication private key (EF 0017), PKCS#8 DER.
    #[serde(with = "hex_bytes")]
    pub auth_key_pkcs8_der: Vec<u8>,
    /// The CA certificate (EF 000B), DER.
    #[serde(with = "hex_bytes")]
    pub ca_certificate_der: Vec<u8>,
    /// The 4-digit user-auth PIN (the card-info AP PIN is the same, as most holders choose).
    pub pin: String,
    /// Tries left on the user-auth PIN (max 3).
    pub pin_tries_left: u8,
    /// What a blocked PIN answers.
    #[serde(default)]
    pub blocked_sw: BlockedStatus,
    /// 12-digit synthetic number held in the card-info AP (kenhojo); Tsunagi must never read it.
    pub individual_number: String,
    /// Card-info AP: name (synthetic).
    pub name: String,
    /// Card-info AP: address (synthetic).
    pub address: String,
    /// Card-info AP: birth date `YYYYMMDD` (synthetic).
    pub birth_date: String,
    /// Card-info AP: sex, one ASCII digit (1 male, 2 female, 9 not applicable).
    pub sex: String,
    /// The token EF: a card or a smartphone.
    #[serde(default)]
    pub token: Token,
    /// Whether the user-auth PIN is set (not on a 顔認証マイナンバーカード).
    #[serde(default)]
    pub pin_setup: PinSetup,
    /// Answer at most this many data bytes at once and announce the rest with `61 xx`, to
    /// be fetched with GET RESPONSE: a T=0 card behind a reader that does not chain by
    /// itself (jpki-card.md §2.5). `None`: every answer whole.
    #[serde(default)]
    pub chain_after: Option<u8>,
}

/// Maximum tries of the 4-digit PINs.
pub const PIN_MAX_TRIES: u8 = 3;

impl CardProfile {
    /// pin "1234", 3 tries, Sw6983, a synthetic individual number derived from the label.
    pub fn new(
        label: &str,
        auth_key: &RsaPrivateKey,
        auth_certificate_der: Vec<u8>,
        ca_certificate_der: Vec<u8>,
    ) -> Result<Self, CardError> {
        let key = auth_key.to_pkcs8_der()?;
        Ok(Self {
            label: label.to_owned(),
            auth_certificate_der,
            auth_key_pkcs8_der: key.as_bytes().to_vec(),
            ca_certificate_der,
            pin: "1234".to_owned(),
            pin_tries_left: PIN_MAX_TRIES,
            blocked_sw: BlockedStatus::default(),
            individual_number: synthetic_individual_number(label),
            name: format!("試験 {label}"),
            address: "東京都千代田区霞が関1-2-3 テスト".to_owned(),
            birth_date: "19800401".to_owned(),
            sex: "1".to_owned(),
            token: Token::default(),
            pin_setup: PinSetup::default(),
            chain_after: None,
        })
    }

    /// Sets the token EF (a smartphone's applet instead of a card, say).
    pub fn with_token(mut self, token: Token) -> Self {
        self.token = token;
        self
    }

    /// Makes this a 顔認証マイナンバーカード: no PIN, answered as `setup` says.
    pub fn without_pin(mut self, setup: PinSetup) -> Self {
        self.pin_setup = setup;
        self
    }

    /// Chains every answer longer than `n` bytes (1 or more) with `61 xx`.
    pub fn with_chain_after(mut self, n: u8) -> Self {
        self.chain_after = Some(n.max(1));
        self
    }

    /// Sets the tries left on the user-auth PIN (0 = blocked).
    pub fn with_pin_tries_left(mut self, n: u8) -> Self {
        self.pin_tries_left = n.min(PIN_MAX_TRIES);
        self
    }

    /// Sets what a blocked PIN answers.
    pub fn with_blocked_sw(mut self, s: BlockedStatus) -> Self {
        self.blocked_sw = s;
        self
    }

    /// Sets the PIN.
    pub fn with_pin(mut self, pin: &str) -> Self {
        self.pin = pin.to_owned();
        self
    }
}

/// A 12-digit number with a valid My Number check digit, derived from the label so that it is
/// stable, but obviously synthetic (it is never a real person's number by construction only
/// in the sense that it is random-looking; tests must treat it as sensitive anyway).
fn synthetic_individual_number(label: &str) -> String {
    let digest = Sha256::digest(label.as_bytes());
    let digits: Vec<u32> = digest.iter().take(11).map(|b| u32::from(*b) % 10).collect();
    let mut s: String = digits
        .iter()
        .filter_map(|d| char::from_digit(*d, 10))
        .collect();
    s.push(char::from_digit(check_digit(&digits), 10).unwrap_or('0'));
    s
}

/// The My Number check digit over the first 11 digits (weights per the 番号法 ordinance).
fn check_digit(digits: &[u32]) -> u32 {
    // n counts from the rightmost of the 11 digits, starting at 1.
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, p)| {
            let n = i as u32 + 1;
            let q = if n <= 6 { n + 1 } else { n - 5 };
            p * q
        })
        .sum();
    let r = sum % 11;
    if r <= 1 {
        0
    } else {
        11 - r
    }
}

/// One command as the card saw it, with PIN data redacted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The command APDU; for VERIFY (and other PIN commands) the data bytes are replaced by
    /// `0xFF` with the length kept, so `command.len() > 4` still shows that a PIN was sent.
    pub command: Vec<u8>,
    /// The status word the card answered.
    pub response_sw: u16,
}

/// A shared, append-only log of the APDUs a card received. Clones share the same log, so a
/// handle stays valid after the card has moved into a serving thread.
#[derive(Clone, Debug, Default)]
pub struct ApduLog {
    inner: Arc<Mutex<Vec<LogEntry>>>,
}

impl ApduLog {
    /// A snapshot of all entries so far, oldest first.
    pub fn entries(&self) -> Vec<LogEntry> {
        self.lock().clone()
    }

    /// True if any SELECT by DF name named exactly `aid` (whether or not it succeeded).
    pub fn was_selected(&self, aid: &[u8]) -> bool {
        self.lock().iter().any(|e| {
            let c = &e.command;
            c.len() >= 5
                && c[1] == 0xA4
                && c[2] == 0x04
                && usize::from(c[4]) == aid.len()
                && c.get(5..5 + aid.len()) == Some(aid)
        })
    }

    /// Forgets everything logged so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn push(&self, entry: LogEntry) {
        self.lock().push(entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LogEntry>> {
        // A panic while holding the lock cannot leave a Vec half-pushed; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The ATR of a contact My Number card, the one OpenSC's jpki driver matches.
pub const ATR: [u8; 9] = [0x3B, 0xE0, 0x00, 0xFF, 0x81, 0x31, 0xFE, 0x45, 0x14];

/// Status words used here.
mod sw {
    pub const OK: u16 = 0x9000;
    pub const WRONG_LENGTH: u16 = 0x6700;
    pub const SECURITY_NOT_SATISFIED: u16 = 0x6982;
    pub const NOT_ALLOWED: u16 = 0x6986;
    pub const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    pub const NOT_FOUND: u16 = 0x6A82;
    pub const REFERENCE_DATA_NOT_FOUND: u16 = 0x6A88;
    pub const WRONG_P1P2: u16 = 0x6A86;
    pub const WRONG_OFFSET: u16 = 0x6B00;
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;
    pub const NO_DIAGNOSIS: u16 = 0x6F00;
}

/// The three applications on the card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum App {
    Jpki,
    Kenhojo,
    Kenmen,
}

#[derive(Clone, Debug)]
enum EfKind {
    /// A transparent EF; `pin` names the PIN EF that must be verified before reading.
    Data { bytes: Vec<u8>, pin: Option<u16> },
    /// A PIN (VERIFY target); the index into `VirtualCard::pins`.
    Pin(usize),
    /// A private key usable after verifying `pin`.
    Key { pin: u16 },
}

#[derive(Clone, Debug)]
struct Ef {
    app: App,
    fid: u16,
    kind: EfKind,
}

#[derive(Clone, Debug)]
struct PinSlot {
    /// No reference data at all: VERIFY answers `6A 88` (a 顔認証 card's user-auth PIN).
    not_set: bool,
    /// `None`: no PIN value is known, so every try is wrong (the signing PIN here).
    value: Option<Vec<u8>>,
    tries_left: u8,
    max_tries: u8,
}

/// A parsed command APDU (ISO 7816-4 cases 1 to 4, short and extended).
struct Apdu<'a> {
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &'a [u8],
    /// Expected response length; `None` when absent, 256 or 65536 for a zero Le.
    le: Option<usize>,
}

impl<'a> Apdu<'a> {
    fn parse(b: &'a [u8]) -> Option<Self> {
        let (header, body) = (b.get(..4)?, &b[4..]);
        let (data, le): (&[u8], Option<usize>) = match body.len() {
            0 => (&[], None),
            1 => (&[], Some(short_le(body[0]))),
            _ if body[0] != 0 => {
                let lc = usize::from(body[0]);
                match body.len() - 1 {
                    n if n == lc => (&body[1..], None),
                    n if n == lc + 1 => (&body[1..=lc], Some(short_le(body[lc + 1]))),
                    _ => return None,
                }
            }
            3 => (&[], Some(extended_le(body[1], body[2]))),
            n if n > 3 => {
                let lc = usize::from(u16::from_be_bytes([body[1], body[2]]));
                match n - 3 {
                    m if m == lc && lc > 0 => (&body[3..], None),
                    m if m == lc + 2 && lc > 0 => (
                        &body[3..3 + lc],
                        Some(extended_le(body[3 + lc], body[4 + lc])),
                    ),
                    _ => return None,
                }
            }
            _ => return None,
        };
        Some(Self {
            cla: header[0],
            ins: header[1],
            p1: header[2],
            p2: header[3],
            data,
            le,
        })
    }
}

fn short_le(b: u8) -> usize {
    if b == 0 {
        256
    } else {
        usize::from(b)
    }
}

fn extended_le(hi: u8, lo: u8) -> usize {
    match u16::from_be_bytes([hi, lo]) {
        0 => 65536,
        n => usize::from(n),
    }
}

/// A software My Number card: the JPKI AP with the user-authentication key and certificate,
/// plus the card-info (kenhojo) and card-surface (kenmen) APs holding synthetic personal data.
#[derive(Debug)]
pub struct VirtualCard {
    profile: CardProfile,
    key: Option<RsaPrivateKey>,
    efs: Vec<Ef>,
    pins: Vec<PinSlot>,
    blocked_sw: BlockedStatus,
    powered: bool,
    current_app: Option<App>,
    current_ef: Option<usize>,
    /// PIN EF ids verified since the current application was selected.
    verified: Vec<u16>,
    /// The rest of a chained answer, waiting for GET RESPONSE.
    pending: Vec<u8>,
    log: ApduLog,
}

const EF_JPKI_TOKEN: u16 = 0x0006;
const EF_JPKI_AUTH_CERT: u16 = 0x000A;
const EF_JPKI_AUTH_CA: u16 = 0x000B;
const EF_JPKI_AUTH_KEY: u16 = 0x0017;
const EF_JPKI_AUTH_PIN: u16 = 0x0018;
const EF_JPKI_SIGN_PIN: u16 = 0x001B;
const EF_KENHOJO_PIN: u16 = 0x0011;
const EF_KENMEN_PIN_A: u16 = 0x0013;

impl VirtualCard {
    /// A powered card built from `profile`. A key that does not decode is logged, and
    /// signing then answers `6F 00`, so that a broken profile still shows up in tests.
    pub fn new(profile: CardProfile) -> Self {
        let key = match RsaPrivateKey::from_pkcs8_der(&profile.auth_key_pkcs8_der) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(label = %profile.label, error = %e, "card profile key does not decode");
                None
            }
        };
        let pin = profile.pin.as_bytes().to_vec();
        let pins = vec![
            PinSlot {
                not_set: profile.pin_setup != PinSetup::Set,
                value: Some(pin.clone()),
                tries_left: profile.pin_tries_left.min(PIN_MAX_TRIES),
                max_tries: PIN_MAX_TRIES,
            },
            // No signing certificate is issued on this card, so its PIN is never known.
            PinSlot {
                not_set: false,
                value: None,
                tries_left: 5,
                max_tries: 5,
            },
            PinSlot {
                not_set: false,
                value: Some(pin),
                tries_left: PIN_MAX_TRIES,
                max_tries: PIN_MAX_TRIES,
            },
            PinSlot {
                not_set: false,
                value: Some(profile.individual_number.as_bytes().to_vec()),
                tries_left: 10,
                max_tries: 10,
            },
        ];
        let data = |app, fid, bytes: Vec<u8>, pin| Ef {
            app,
            fid,
            kind: EfKind::Data { bytes, pin },
        };
        let mut efs = vec![
            data(
                App::Jpki,
                EF_JPKI_AUTH_CERT,
                profile.auth_certificate_der.clone(),
                None,
            ),
            data(
                App::Jpki,
                EF_JPKI_AUTH_CA,
                profile.ca_certificate_der.clone(),
                None,
            ),
            Ef {
                app: App::Jpki,
                fid: EF_JPKI_AUTH_KEY,
                kind: EfKind::Key {
                    pin: EF_JPKI_AUTH_PIN,
                },
            },
            Ef {
                app: App::Jpki,
                fid: EF_JPKI_AUTH_PIN,
                kind: EfKind::Pin(0),
            },
            Ef {
                app: App::Jpki,
                fid: EF_JPKI_SIGN_PIN,
                kind: EfKind::Pin(1),
            },
            Ef {
                app: App::Kenhojo,
                fid: EF_KENHOJO_PIN,
                kind: EfKind::Pin(2),
            },
            data(
                App::Kenhojo,
                0x0001,
                kenhojo_number(&profile.individual_number),
                Some(EF_KENHOJO_PIN),
            ),
            data(
                App::Kenhojo,
                0x0002,
                kenhojo_basic_four(&profile),
                Some(EF_KENHOJO_PIN),
            ),
            Ef {
                app: App::Kenmen,
                fid: EF_KENMEN_PIN_A,
                kind: EfKind::Pin(3),
            },
            data(
                App::Kenmen,
                0x0002,
                kenmen_face(&profile),
                Some(EF_KENMEN_PIN_A),
            ),
        ];
        if let Some(text) = profile.token.text() {
            let mut token = text.to_vec();
            token.resize(32, 0);
            efs.insert(0, data(App::Jpki, EF_JPKI_TOKEN, token, None));
        }
        if profile.pin_setup == PinSetup::NotSetNoEf {
            efs.retain(|ef| !(ef.app == App::Jpki && ef.fid == EF_JPKI_AUTH_PIN));
        }
        Self {
            blocked_sw: profile.blocked_sw,
            profile,
            key,
            efs,
            pins,
            powered: true,
            current_app: None,
            current_ef: None,
            verified: Vec::new(),
            pending: Vec::new(),
            log: ApduLog::default(),
        }
    }

    /// The profile the card was built from (PIN counters as at construction).
    pub fn profile(&self) -> &CardProfile {
        &self.profile
    }

    /// Tries left on the user-authentication PIN now.
    pub fn pin_tries_left(&self) -> u8 {
        self.pins.first().map_or(0, |p| p.tries_left)
    }

    /// The answer to reset.
    pub fn atr(&self) -> Vec<u8> {
        ATR.to_vec()
    }

    /// Power on: a fresh session with nothing selected or verified.
    pub fn power_on(&mut self) {
        self.powered = true;
        self.clear_session();
    }

    /// Power off: the card answers nothing useful until powered on again.
    pub fn power_off(&mut self) {
        self.powered = false;
        self.clear_session();
    }

    /// Warm reset: like power-off plus power-on.
    pub fn reset(&mut self) {
        self.power_on();
    }

    /// A handle on the card's APDU log that stays valid after the card moves.
    pub fn log(&self) -> ApduLog {
        self.log.clone()
    }

    /// Processes one command APDU and returns the response (data, then SW1 SW2). Never
    /// panics: malformed input yields an error status word.
    pub fn transmit(&mut self, apdu: &[u8]) -> Vec<u8> {
        let (mut data, mut status) = if self.powered {
            match Apdu::parse(apdu) {
                Some(cmd) => {
                    // Whatever was left of a chained answer is gone once another command
                    // comes (ISO 7816-4: GET RESPONSE must follow at once).
                    if (cmd.cla, cmd.ins) != (0x00, 0xC0) {
                        self.pending.clear();
                    }
                    self.dispatch(&cmd)
                }
                None => (Vec::new(), sw::WRONG_LENGTH),
            }
        } else {
            (Vec::new(), sw::NO_DIAGNOSIS)
        };
        if status == sw::OK {
            if let Some(n) = self.profile.chain_after {
                let n = usize::from(n.max(1));
                if data.len() > n {
                    let mut rest = data.split_off(n);
                    rest.append(&mut self.pending);
                    self.pending = rest;
                }
            }
            if !self.pending.is_empty() {
                // 61 xx: xx more bytes wait (00 when 256 or more do).
                status = 0x6100 | (self.pending.len().min(256) & 0xFF) as u16;
            }
        }
        self.log.push(LogEntry {
            command: redact(apdu),
            response_sw: status,
        });
        data.extend_from_slice(&status.to_be_bytes());
        data
    }

    fn clear_session(&mut self) {
        self.current_app = None;
        self.current_ef = None;
        self.verified.clear();
        self.pending.clear();
    }

    fn dispatch(&mut self, cmd: &Apdu<'_>) -> (Vec<u8>, u16) {
        match (cmd.cla, cmd.ins) {
            (0x00, 0xA4) => (Vec::new(), self.select(cmd)),
            (0x00, 0xB0) => self.read_binary(cmd),
            (0x00, 0x20) => (Vec::new(), self.verify(cmd)),
            (0x80, 0x2A) => self.sign(cmd),
            (0x00, 0xC0) => self.get_response(cmd),
            (0x00 | 0x80, _) => (Vec::new(), sw::INS_NOT_SUPPORTED),
            _ => (Vec::new(), sw::CLA_NOT_SUPPORTED),
        }
    }

    fn select(&mut self, cmd: &Apdu<'_>) -> u16 {
        match cmd.p1 {
            0x04 => {
                let app = if cmd.data == JPKI_AID {
                    App::Jpki
                } else if cmd.data == KENHOJO_AID {
                    App::Kenhojo
                } else if cmd.data == KENMEN_AID {
                    App::Kenmen
                } else if cmd.data.is_empty() {
                    return sw::WRONG_LENGTH;
                } else {
                    return sw::NOT_FOUND;
                };
                if self.current_app != Some(app) {
                    self.verified.clear();
                }
                self.current_app = Some(app);
                self.current_ef = None;
                sw::OK
            }
            // Select an EF by id, either "under the current DF" (02) or "any" (00).
            0x00 | 0x02 => {
                let [hi, lo] = match cmd.data {
                    [hi, lo] => [*hi, *lo],
                    _ => return sw::WRONG_LENGTH,
                };
                let fid = u16::from_be_bytes([hi, lo]);
                match self.find_ef(|ef| ef.fid == fid) {
                    Some(i) => {
                        self.current_ef = Some(i);
                        sw::OK
                    }
                    None => sw::NOT_FOUND,
                }
            }
            _ => sw::WRONG_P1P2,
        }
    }

    fn find_ef(&self, pred: impl Fn(&Ef) -> bool) -> Option<usize> {
        let app = self.current_app?;
        self.efs.iter().position(|ef| ef.app == app && pred(ef))
    }

    fn read_binary(&mut self, cmd: &Apdu<'_>) -> (Vec<u8>, u16) {
        if !cmd.data.is_empty() {
            return (Vec::new(), sw::WRONG_LENGTH);
        }
        let Some(le) = cmd.le else {
            return (Vec::new(), sw::WRONG_LENGTH);
        };
        let offset = if cmd.p1 & 0x80 != 0 {
            // Short EF identifier in P1, offset in P2; it also selects the EF.
            let sfi = cmd.p1 & 0x1F;
            match self.find_ef(|ef| (ef.fid & 0x1F) == u16::from(sfi) && ef.fid <= 0x1F) {
                Some(i) => self.current_ef = Some(i),
                None => return (Vec::new(), sw::NOT_FOUND),
            }
            usize::from(cmd.p2)
        } else {
            usize::from(u16::from_be_bytes([cmd.p1, cmd.p2]))
        };
        let Some(ef) = self.current_ef.and_then(|i| self.efs.get(i)) else {
            return (Vec::new(), sw::NOT_ALLOWED);
        };
        let EfKind::Data { bytes, pin } = &ef.kind else {
            return (Vec::new(), sw::NOT_ALLOWED);
        };
        if let Some(pin) = pin {
            if !self.verified.contains(pin) {
                return (Vec::new(), sw::SECURITY_NOT_SATISFIED);
            }
        }
        if offset >= bytes.len() {
            return (Vec::new(), sw::WRONG_OFFSET);
        }
        let end = bytes.len().min(offset + le);
        (bytes[offset..end].to_vec(), sw::OK)
    }

    fn verify(&mut self, cmd: &Apdu<'_>) -> u16 {
        if cmd.p1 != 0x00 {
            return sw::WRONG_P1P2;
        }
        let ef_index = match cmd.p2 {
            0x80 => self.current_ef,
            p2 if p2 & 0xE0 == 0x80 => {
                let sfi = u16::from(p2 & 0x1F);
                self.find_ef(|ef| ef.fid == sfi && matches!(ef.kind, EfKind::Pin(_)))
            }
            _ => return sw::WRONG_P1P2,
        };
        let Some(ef) = ef_index.and_then(|i| self.efs.get(i)) else {
            return sw::NOT_ALLOWED;
        };
        let (fid, EfKind::Pin(slot)) = (ef.fid, &ef.kind) else {
            return sw::NOT_ALLOWED;
        };
        let blocked_sw = self.blocked_sw.sw();
        let Some(pin) = self.pins.get_mut(*slot) else {
            return sw::NO_DIAGNOSIS;
        };
        if pin.not_set {
            return sw::REFERENCE_DATA_NOT_FOUND;
        }
        if pin.tries_left == 0 {
            return blocked_sw;
        }
        if cmd.data.is_empty() {
            return 0x63C0 | u16::from(pin.tries_left);
        }
        if pin.value.as_deref() == Some(cmd.data) {
            pin.tries_left = pin.max_tries;
            if !self.verified.contains(&fid) {
                self.verified.push(fid);
            }
            sw::OK
        } else {
            pin.tries_left -= 1;
            self.verified.retain(|v| *v != fid);
            // The last wrong try answers 63C0 whatever the card's blocked status word is.
            0x63C0 | u16::from(pin.tries_left)
        }
    }

    /// GET RESPONSE: the next piece of a chained answer, at most Le bytes.
    fn get_response(&mut self, cmd: &Apdu<'_>) -> (Vec<u8>, u16) {
        if (cmd.p1, cmd.p2) != (0x00, 0x00) {
            return (Vec::new(), sw::WRONG_P1P2);
        }
        if self.pending.is_empty() {
            return (Vec::new(), sw::CONDITIONS_NOT_SATISFIED);
        }
        let take = cmd.le.unwrap_or(256).min(self.pending.len());
        (self.pending.drain(..take).collect(), sw::OK)
    }

    fn sign(&mut self, cmd: &Apdu<'_>) -> (Vec<u8>, u16) {
        if (cmd.p1, cmd.p2) != (0x00, 0x80) {
            return (Vec::new(), sw::WRONG_P1P2);
        }
        let Some(ef) = self.current_ef.and_then(|i| self.efs.get(i)) else {
            return (Vec::new(), sw::NOT_ALLOWED);
        };
        let EfKind::Key { pin } = ef.kind else {
            return (Vec::new(), sw::NOT_ALLOWED);
        };
        if !self.verified.contains(&pin) {
            return (Vec::new(), sw::SECURITY_NOT_SATISFIED);
        }
        // PKCS#1 v1.5 type 1 needs at least 11 bytes of padding in a 256-byte block.
        if cmd.data.is_empty() || cmd.data.len() > 256 - 11 {
            return (Vec::new(), sw::WRONG_LENGTH);
        }
        let Some(key) = &self.key else {
            return (Vec::new(), sw::NO_DIAGNOSIS);
        };
        // The card pads whatever it is given: the DigestInfo is the "hash" with no prefix.
        match key.sign(Pkcs1v15Sign::new_unprefixed(), cmd.data) {
            Ok(sig) => (sig, sw::OK),
            Err(e) => {
                tracing::warn!(error = %e, "virtual card signing failed");
                (Vec::new(), sw::NO_DIAGNOSIS)
            }
        }
    }
}

/// PIN-carrying commands (VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER) keep their
/// header and length but lose the PIN bytes.
fn redact(apdu: &[u8]) -> Vec<u8> {
    let mut out = apdu.to_vec();
    if matches!(apdu.get(1), Some(0x20 | 0x24 | 0x2C)) && apdu.len() > 5 {
        // Extended Lc is 00 hi lo; short Lc is one byte.
        let start = if apdu[4] == 0 && apdu.len() > 7 { 7 } else { 5 };
        out[start..].fill(0xFF);
    }
    out
}

/// Kenhojo EF 0001: `FF 10 0C` + 12 ASCII digits + `FF FF` filler (17 bytes).
fn kenhojo_number(number: &str) -> Vec<u8> {
    let mut v = vec![0xFF, 0x10, 0x0C];
    let mut digits = number.as_bytes().to_vec();
    digits.resize(12, b'0');
    v.extend_from_slice(&digits);
    v.extend_from_slice(&[0xFF, 0xFF]);
    v
}

/// A two-byte private-class tag `DF xx` with a BER length.
fn tlv(tag: [u8; 2], value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&tag);
    ber_length(value.len(), out);
    out.extend_from_slice(value);
}

fn ber_length(len: usize, out: &mut Vec<u8>) {
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        _ => {
            let l = u16::try_from(len).unwrap_or(u16::MAX);
            out.push(0x82);
            out.extend_from_slice(&l.to_be_bytes());
        }
    }
}

/// `FF 20` { `DF 21` offsets, then the given fields tagged `DF 22`, `DF 23`, … }.
fn ff20_with_offsets(fields: &[&[u8]]) -> Vec<u8> {
    let mut body_fields = Vec::new();
    let mut offsets = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        offsets.push(body_fields.len());
        tlv([0xDF, 0x22 + i as u8], f, &mut body_fields);
    }
    // The header holds each field's offset from the start of the FF 20 value; it precedes
    // them, so shift by its own encoded size.
    let header_len = 3 + 2 * fields.len();
    let mut header_value = Vec::new();
    for o in offsets {
        let o = u16::try_from(o + header_len).unwrap_or(u16::MAX);
        header_value.extend_from_slice(&o.to_be_bytes());
    }
    let mut body = Vec::new();
    tlv([0xDF, 0x21], &header_value, &mut body);
    body.extend_from_slice(&body_fields);
    let mut out = vec![0xFF, 0x20];
    ber_length(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// Kenhojo EF 0002: the basic four (name, address, birth date, sex).
fn kenhojo_basic_four(p: &CardProfile) -> Vec<u8> {
    ff20_with_offsets(&[
        p.name.as_bytes(),
        p.address.as_bytes(),
        p.birth_date.as_bytes(),
        p.sex.as_bytes(),
    ])
}

/// Kenmen EF 0002: a minimal face record (birth date and sex only; no images).
fn kenmen_face(p: &CardProfile) -> Vec<u8> {
    ff20_with_offsets(&[p.birth_date.as_bytes(), p.sex.as_bytes()])
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s.trim()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::pki;

    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;
    use sha2::Sha256;

    fn date(y: i32, m: u32, d: u32) -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn profile() -> CardProfile {
        let keys = pki::key_pool(2).unwrap();
        let ca =
            pki::TestCa::generate(keys[0].clone(), date(2023, 7, 16), date(2033, 7, 15)).unwrap();
        let cert = ca
            .issue_user_auth(
                &keys[1].to_public_key(),
                77,
                date(2024, 1, 1),
                date(2029, 1, 1),
            )
            .unwrap();
        CardProfile::new("card-test", &keys[1], cert, ca.certificate_der().to_vec()).unwrap()
    }

    fn sw_of(r: &[u8]) -> u16 {
        u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]])
    }

    fn ok(card: &mut VirtualCard, apdu: &[u8]) -> Vec<u8> {
        let r = card.transmit(apdu);
        assert_eq!(
            sw_of(&r),
            0x9000,
            "{} -> {}",
            hex::encode(apdu),
            hex::encode(&r)
        );
        r[..r.len() - 2].to_vec()
    }

    fn select_aid(aid: &[u8]) -> Vec<u8> {
        let mut v = vec![0x00, 0xA4, 0x04, 0x0C, aid.len() as u8];
        v.extend_from_slice(aid);
        v
    }

    fn select_ef(fid: u16) -> Vec<u8> {
        let [h, l] = fid.to_be_bytes();
        vec![0x00, 0xA4, 0x02, 0x0C, 0x02, h, l]
    }

    fn verify(pin: &[u8]) -> Vec<u8> {
        let mut v = vec![0x00, 0x20, 0x00, 0x80];
        if !pin.is_empty() {
            v.push(pin.len() as u8);
            v.extend_from_slice(pin);
        }
        v
    }

    fn digest_info(msg: &[u8]) -> Vec<u8> {
        let mut v = vec![
            0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ];
        v.extend_from_slice(&Sha256::digest(msg));
        v
    }

    fn sign_apdu(di: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80, 0x2A, 0x00, 0x80, di.len() as u8];
        v.extend_from_slice(di);
        v.push(0x00);
        v
    }

    #[test]
    fn the_daemon_sequence_works_end_to_end() {
        let p = profile();
        let mut card = VirtualCard::new(p.clone());
        let log = card.log();
        assert_eq!(card.atr(), ATR.to_vec());
        ok(&mut card, &select_aid(&JPKI_AID));
        ok(&mut card, &select_ef(0x000A));
        // OpenSC style: 4 bytes, then 256-byte chunks, then the exact remainder.
        let head = ok(&mut card, &[0x00, 0xB0, 0x00, 0x00, 0x04]);
        let total = usize::from(u16::from_be_bytes([head[2], head[3]])) + 4;
        let mut cert = Vec::new();
        while cert.len() < total {
            let [hi, lo] = (cert.len() as u16).to_be_bytes();
            let want = (total - cert.len()).min(256);
            let le = if want == 256 { 0 } else { want as u8 };
            let chunk = ok(&mut card, &[0x00, 0xB0, hi, lo, le]);
            assert_eq!(chunk.len(), want);
            cert.extend_from_slice(&chunk);
        }
        assert_eq!(cert, p.auth_certificate_der);
        ok(&mut card, &select_ef(0x000B));
        let ca_head = ok(&mut card, &[0x00, 0xB0, 0x00, 0x00, 0x00]);
        assert_eq!(ca_head[..], p.ca_certificate_der[..256]);

        ok(&mut card, &select_ef(0x0018));
        assert_eq!(sw_of(&card.transmit(&verify(b""))), 0x63C3);
        ok(&mut card, &verify(b"1234"));
        ok(&mut card, &select_ef(0x0017));
        let di = digest_info(b"challenge");
        let sig = ok(&mut card, &sign_apdu(&di));
        assert_eq!(sig.len(), 256);
        let public = pki::certificate_public_key(&cert).unwrap();
        VerifyingKey::<Sha256>::new(public)
            .verify(b"challenge", &Signature::try_from(sig.as_slice()).unwrap())
            .expect("signature verifies with the certificate key");

        let entries = log.entries();
        assert!(log.was_selected(&JPKI_AID));
        assert!(!log.was_selected(&KENHOJO_AID));
        assert!(!log.was_selected(&KENMEN_AID));
        let pin_entry = entries
            .iter()
            .find(|e| e.command.len() > 4 && e.command[1] == 0x20)
            .unwrap();
        assert_eq!(
            pin_entry.command,
            vec![0x00, 0x20, 0x00, 0x80, 0x04, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(pin_entry.response_sw, 0x9000);
        assert!(entries
            .iter()
            .all(|e| !e.command.windows(4).any(|w| w == b"1234")));
    }

    #[test]
    fn signing_needs_a_verified_pin_in_the_current_application() {
        let mut card = VirtualCard::new(profile());
        ok(&mut card, &select_aid(&JPKI_AID));
        ok(&mut card, &select_ef(0x0017));
        let di = digest_info(b"x");
        assert_eq!(sw_of(&card.transmit(&sign_apdu(&di))), 0x6982);
        ok(&mut card, &select_ef(0x0018));
        ok(&mut card, &verify(b"1234"));
        // No key EF selected: the PIN EF is current.
        assert_eq!(sw_of(&card.transmit(&sign_apdu(&di))), 0x6986);
        // Another AP clears the verification.
        ok(&mut card, &select_aid(&KENHOJO_AID));
        ok(&mut card, &select_aid(&JPKI_AID));
        ok(&mut card, &select_ef(0x0017));
        assert_eq!(sw_of(&card.transmit(&sign_apdu(&di))), 0x6982);
        // So does a reset.
        ok(&mut card, &select_ef(0x0018));
        ok(&mut card, &verify(b"1234"));
        card.reset();
        ok(&mut card, &select_aid(&JPKI_AID));
        ok(&mut card, &select_ef(0x0017));
        assert_eq!(sw_of(&card.transmit(&sign_apdu(&di))), 0x6982);
        // Wrong P1/P2 and oversize data.
        assert_eq!(
            sw_of(&card.transmit(&[0x80, 0x2A, 0x9E, 0x9A, 0x01, 0x00])),
            0x6A86
        );
    }

    #[test]
    fn wrong_pins_count_down_and_block_per_variant() {
        for (variant, blocked) in [
            (BlockedStatus::Sw6983, 0x6983),
            (BlockedStatus::Sw63C0, 0x63C0),
            (BlockedStatus::Sw6984, 0x6984),
        ] {
            let mut card = VirtualCard::new(profile().with_blocked_sw(variant));
            ok(&mut card, &select_aid(&JPKI_AID));
            ok(&mut card, &select_ef(0x0018));
            assert_eq!(sw_of(&card.transmit(&verify(b"0000"))), 0x63C2);
            assert_eq!(sw_of(&card.transmit(&verify(b""))), 0x63C2);
            // A correct PIN resets the counter.
            ok(&mut card, &verify(b"1234"));
            assert_eq!(sw_of(&card.transmit(&verify(b""))), 0x63C3);
            assert_eq!(sw_of(&card.transmit(&verify(b"0000"))), 0x63C2);
            assert_eq!(sw_of(&card.transmit(&verify(b"0000"))), 0x63C1);
            assert_eq!(sw_of(&card.transmit(&verify(b"0000"))), 0x63C0);
            assert_eq!(card.pin_tries_left(), 0);
            assert_eq!(sw_of(&card.transmit(&verify(b""))), blocked);
            assert_eq!(sw_of(&card.transmit(&verify(b"1234"))), blocked);
            // Blocking survives power cycles.
            card.power_off();
            card.power_on();
            ok(&mut card, &select_aid(&JPKI_AID));
            ok(&mut card, &select_ef(0x0018));
            assert_eq!(sw_of(&card.transmit(&verify(b"1234"))), blocked);
        }
        let mut card = VirtualCard::new(profile().with_pin_tries_left(1).with_pin("4321"));
        ok(&mut card, &select_aid(&JPKI_AID));
        ok(&mut card, &select_ef(0x0018));
        assert_eq!(sw_of(&card.transmit(&verify(b""))), 0x63C1);
        ok(&mut card, &verify(b"4321"));
        assert_eq!(sw_of(&card.transmit(&verify(b""))), 0x63C3);
        // VERIFY by SFI without selecting the PIN EF.
        ok(&mut card, &select_ef(0x000A));
        ok(
            &mut card,
            &[0x00, 0x20, 0x00, 0x98, 0x04, b'4', b'3', b'2', b'1'],
        );
    }

    #[test]
    fn malformed_and_unknown_commands_get_error_status_words() {
        let mut card = VirtualCard::new(profile());
        let cases: &[(&[u8], u16)] = &[
            (&[], 0x6700),
            (&[0x00], 0x6700),
            (&[0x00, 0xA4, 0x04], 0x6700),
            (&[0x00, 0xA4, 0x04, 0x0C, 0x05, 0x01], 0x6700),
            (&[0xA0, 0xA4, 0x04, 0x0C, 0x01, 0x01], 0x6E00),
            (&[0x00, 0xCA, 0x01, 0x00, 0x00], 0x6D00),
            (&[0x00, 0xA4, 0x04, 0x0C, 0x06, 0xA0, 0, 0, 0, 1, 1], 0x6A82),
            (&[0x00, 0xA4, 0x04, 0x00, 0x00], 0x6700),
            (&[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x0A], 0x6A82), // no AP selected
            (&[0x00, 0xB0, 0x00, 0x00, 0x00], 0x6986),
            (&[0x00, 0x20, 0x00, 0x80], 0x6986),
        ];
        for (apdu, want) in cases {
            assert_eq!(sw_of(&card.transmit(apdu)), *want, "{}", hex::encode(apdu));
        }
        ok(&mut card, &select_aid(&JPKI_AID));
        assert_eq!(sw_of(&card.transmit(&select_ef(0x0001))), 0x6A82);
        ok(&mut card, &select_ef(0x000A));
        assert_eq!(
            sw_of(&card.transmit(&[0x00, 0xB0, 0x7F, 0x00, 0x00])),
            0x6B00
        );
        assert_eq!(sw_of(&card.transmit(&[0x00, 0xB0, 0x00, 0x00])), 0x6700);
        ok(&mut card, &select_ef(0x0017));
        assert_eq!(
            sw_of(&card.transmit(&[0x00, 0xB0, 0x00, 0x00, 0x00])),
            0x6986
        );
        // SFI read with extended Le returns the whole EF.
        let whole = ok(&mut card, &[0x00, 0xB0, 0x8A, 0x00, 0x00, 0x00, 0x00]);
        assert_eq!(whole, card.profile().auth_certificate_der);
        card.power_off();
        assert_eq!(sw_of(&card.transmit(&select_aid(&JPKI_AID))), 0x6F00);
        card.power_on();
        ok(&mut card, &select_aid(&JPKI_AID));

        // Arbitrary bytes never panic.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..300);
            let mut apdu: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if len >= 2 && rng.gen_bool(0.5) {
                apdu[0] = if rng.gen_bool(0.5) { 0x00 } else { 0x80 };
                apdu[1] = [0xA4, 0xB0, 0x20, 0x2A][rng.gen_range(0..4)];
            }
            let r = card.transmit(&apdu);
            assert!(r.len() >= 2);
        }
    }

    #[test]
    fn the_card_info_ap_holds_the_number_behind_its_pin() {
        let p = profile();
        let mut card = VirtualCard::new(p.clone());
        ok(&mut card, &select_aid(&KENHOJO_AID));
        ok(&mut card, &select_ef(0x0001));
        assert_eq!(
            sw_of(&card.transmit(&[0x00, 0xB0, 0x00, 0x00, 0x11])),
            0x6982
        );
        ok(&mut card, &select_ef(0x0011));
        ok(&mut card, &verify(b"1234"));
        ok(&mut card, &select_ef(0x0001));
        let number = ok(&mut card, &[0x00, 0xB0, 0x00, 0x00, 0x11]);
        assert_eq!(&number[..3], &[0xFF, 0x10, 0x0C]);
        assert_eq!(&number[3..15], p.individual_number.as_bytes());
        ok(&mut card, &select_ef(0x0002));
        let four = ok(&mut card, &[0x00, 0xB0, 0x00, 0x00, 0x00]);
        assert_eq!(&four[..2], &[0xFF, 0x20]);
        let name = p.name.as_bytes();
        assert!(four.windows(name.len()).any(|w| w == name));
        // The offsets header points at the DF 22 tag.
        let body_start = if four[2] == 0x81 { 4 } else { 3 };
        let first = usize::from(u16::from_be_bytes([
            four[body_start + 3],
            four[body_start + 4],
        ]));
        assert_eq!(
            &four[body_start + first..body_start + first + 2],
            &[0xDF, 0x22]
        );

        ok(&mut card, &select_aid(&KENMEN_AID));
        ok(&mut card, &select_ef(0x0013));
        ok(&mut card, &verify(p.individual_number.as_bytes()));
        ok(&mut card, &select_ef(0x0002));
        ok(&mut card, &[0x00, 0xB0, 0x00, 0x00, 0x00]);
        assert!(card.log().was_selected(&KENHOJO_AID));
    }

    #[test]
    fn the_token_ef_tells_a_card_from_a_smartphone() {
        for (token, want) in [
            (Token::Card, Some(&b"JPKIAPICCTOKEN2"[..])),
            (Token::OlderCard, Some(&b"JPKIAPICCTOKEN"[..])),
            (Token::Smartphone, Some(&b"JPKIAPGPSETOKEN"[..])),
            (Token::Absent, None),
        ] {
            let mut card = VirtualCard::new(profile().with_token(token));
            ok(&mut card, &select_aid(&JPKI_AID));
            match want {
                Some(text) => {
                    ok(&mut card, &select_ef(0x0006));
                    let read = ok(&mut card, &[0x00, 0xB0, 0x00, 0x00, 0x20]);
                    assert_eq!(read.len(), 32, "{token:?}");
                    assert_eq!(&read[..text.len()], text, "{token:?}");
                    assert!(read[text.len()..].iter().all(|b| *b == 0), "{token:?}");
                }
                None => assert_eq!(sw_of(&card.transmit(&select_ef(0x0006))), 0x6A82),
            }
        }
    }

    #[test]
    fn a_face_authentication_card_has_no_pin() {
        // The PIN EF without reference data: 6A 88 to every VERIFY, and no signature ever.
        let mut card = VirtualCard::new(profile().without_pin(PinSetup::NotSet));
        ok(&mut card, &select_aid(&JPKI_AID));
        ok(&mut card, &select_ef(0x0018));
        assert_eq!(sw_of(&card.transmit(&verify(b""))), 0x6A88);
        assert_eq!(sw_of(&card.transmit(&verify(b"1234"))), 0x6A88);
        ok(&mut card, &select_ef(0x0017));
        assert_eq!(
            sw_of(&card.transmit(&sign_apdu(&digest_info(b"x")))),
            0x6982
        );
        // The certificate is there as on any card.
        ok(&mut card, &select_ef(0x000A));
        ok(&mut card, &[0x00, 0xB0, 0x00, 0x00, 0x04]);
        // No PIN EF at all.
        let mut card = VirtualCard::new(profile().without_pin(PinSetup::NotSetNoEf));
        ok(&mut card, &select_aid(&JPKI_AID));
        assert_eq!(sw_of(&card.transmit(&select_ef(0x0018))), 0x6A82);
        ok(&mut card, &select_ef(0x0017));
        assert_eq!(
            sw_of(&card.transmit(&sign_apdu(&digest_info(b"x")))),
            0x6982
        );
    }

    #[test]
    fn long_answers_can_be_chained_with_61xx() {
        let p = profile().with_chain_after(100);
        let mut card = VirtualCard::new(p.clone());
        ok(&mut card, &select_aid(&JPKI_AID));
        ok(&mut card, &select_ef(0x000A));
        // 256 asked: 100 now, 61 9C announces the other 156.
        let r = card.transmit(&[0x00, 0xB0, 0x00, 0x00, 0x00]);
        assert_eq!(sw_of(&r), 0x619C);
        let mut got = r[..r.len() - 2].to_vec();
        // A GET RESPONSE for all of it still comes in pieces of 100.
        let r = card.transmit(&[0x00, 0xC0, 0x00, 0x00, 0x9C]);
        assert_eq!(sw_of(&r), 0x6138);
        got.extend_from_slice(&r[..r.len() - 2]);
        got.extend(ok(&mut card, &[0x00, 0xC0, 0x00, 0x00, 0x38]));
        assert_eq!(got, p.auth_certificate_der[..256]);
        // Nothing is pending any more; another command drops a pending rest.
        assert_eq!(
            sw_of(&card.transmit(&[0x00, 0xC0, 0x00, 0x00, 0x10])),
            0x6985
        );
        assert_eq!(
            sw_of(&card.transmit(&[0x00, 0xB0, 0x00, 0x00, 0x00])),
            0x619C
        );
        ok(&mut card, &select_ef(0x000A));
        assert_eq!(
            sw_of(&card.transmit(&[0x00, 0xC0, 0x00, 0x00, 0x10])),
            0x6985
        );
        // Short answers are not chained.
        assert_eq!(ok(&mut card, &[0x00, 0xB0, 0x00, 0x00, 0x04]).len(), 4);
    }

    #[test]
    fn check_digit_matches_a_known_example() {
        // 12345678901 → check digit 8 (worked example commonly used for the algorithm).
        let d: Vec<u32> = "12345678901"
            .chars()
            .map(|c| c.to_digit(10).unwrap())
            .collect();
        assert_eq!(check_digit(&d), 8);
        let n = synthetic_individual_number("alice");
        assert_eq!(n.len(), 12);
        assert!(n.chars().all(|c| c.is_ascii_digit()));
        assert_eq!(n, synthetic_individual_number("alice"));
    }

    #[test]
    fn profile_round_trips_through_json() {
        let keys = pki::key_pool(1).unwrap();
        let p = CardProfile::new("alice", &keys[0], vec![1, 2, 3], vec![4, 5])
            .unwrap()
            .with_pin("9876")
            .with_pin_tries_left(2)
            .with_blocked_sw(BlockedStatus::Sw6984)
            .with_token(Token::Smartphone)
            .without_pin(PinSetup::NotSet)
            .with_chain_after(64);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"010203\""));
        let q: CardProfile = serde_json::from_str(&json).unwrap();
        assert_eq!(q.auth_certificate_der, vec![1, 2, 3]);
        assert_eq!(q.auth_key_pkcs8_der, p.auth_key_pkcs8_der);
        assert_eq!(q.pin, "9876");
        assert_eq!(q.pin_tries_left, 2);
        assert_eq!(q.blocked_sw, BlockedStatus::Sw6984);
        assert_eq!(q.token, Token::Smartphone);
        assert_eq!(q.pin_setup, PinSetup::NotSet);
        assert_eq!(q.chain_after, Some(64));
        // A profile written before these fields existed still loads, as a normal card.
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        for k in ["token", "pin_setup", "chain_after"] {
            old.as_object_mut().unwrap().remove(k);
        }
        let r: CardProfile = serde_json::from_value(old).unwrap();
        assert_eq!(
            (r.token, r.pin_setup, r.chain_after),
            (Token::Card, PinSetup::Set, None)
        );
    }
}
