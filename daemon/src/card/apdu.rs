//! Command and response APDUs (ISO 7816-4), short form only.
//!
//! Tsunagi sends short APDUs and reads long files in chunks: extended length works only when
//! both the reader driver and the card support it, and the JPKI clients in the wild (OpenSC,
//! myna, jpki-rs) all stay with short APDUs.
//!
//! Two status words are not answers but requests to ask again (ISO 7816-4 §5.1.3, and
//! jpki-card.md §2.5): `61 xx` (more data waits: fetch it with GET RESPONSE, the T=0 way a
//! reader that does not chain by itself shows it) and `6C xx` (wrong Le: send the same command
//! again with Le = xx). [`StatusWord::more_data`], [`StatusWord::exact_le`],
//! [`Command::get_response`] and [`Command::with_le`] give the pieces; the session follows
//! them (`jpki::JpkiSession`), so no flow above it ever sees either status word.

use std::fmt;

use der::zeroize::Zeroize;

/// A status word (SW1 SW2) returned by the card.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusWord(pub u16);

impl StatusWord {
    /// `90 00`: success.
    pub const OK: StatusWord = StatusWord(0x9000);
    /// `69 82`: security status not satisfied.
    pub const SECURITY_NOT_SATISFIED: StatusWord = StatusWord(0x6982);
    /// `69 83`: authentication method blocked.
    pub const AUTH_BLOCKED: StatusWord = StatusWord(0x6983);
    /// `69 84`: reference data not usable.
    pub const REFERENCE_DATA_UNUSABLE: StatusWord = StatusWord(0x6984);
    /// `6A 82`: file or application not found.
    pub const NOT_FOUND: StatusWord = StatusWord(0x6A82);
    /// `6A 88`: referenced data (here: the PIN's reference data) not found.
    pub const REFERENCE_DATA_NOT_FOUND: StatusWord = StatusWord(0x6A88);
    /// `62 82`: end of file reached before Le bytes were read (a warning: the data is good).
    pub const END_OF_FILE: StatusWord = StatusWord(0x6282);

    /// SW1.
    pub fn sw1(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// SW2.
    pub fn sw2(self) -> u8 {
        (self.0 & 0xFF) as u8
    }

    /// Whether the card answered `90 00`.
    pub fn is_ok(self) -> bool {
        self == Self::OK
    }

    /// `63 Cx`: a PIN status or wrong-PIN answer carrying the tries left.
    pub fn pin_tries_left(self) -> Option<u8> {
        (self.sw1() == 0x63 && self.sw2() & 0xF0 == 0xC0).then_some(self.sw2() & 0x0F)
    }

    /// `61 xx`: the answer goes on; `xx` more bytes (`00` = 256 or more) wait for a GET
    /// RESPONSE. Returns the Le to ask with.
    pub fn more_data(self) -> Option<u8> {
        (self.sw1() == 0x61).then_some(self.sw2())
    }

    /// `6C xx`: the command's Le was wrong; `xx` (`00` = 256) is the length to ask for.
    pub fn exact_le(self) -> Option<u8> {
        (self.sw1() == 0x6C).then_some(self.sw2())
    }

    /// Whether this status means the PIN is blocked: `63 C0`, `69 83` or `69 84`.
    ///
    /// No public source shows what a real card answers once the counter is exhausted, and ISO
    /// 7816-4 allows all three, so a client must treat each as "blocked".
    pub fn is_pin_blocked(self) -> bool {
        self == StatusWord(0x63C0)
            || self == Self::AUTH_BLOCKED
            || self == Self::REFERENCE_DATA_UNUSABLE
    }
}

impl fmt::Debug for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X}", self.0)
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X} {:02X}", self.sw1(), self.sw2())
    }
}

/// A short command APDU.
///
/// A secret command (VERIFY) wipes its bytes when dropped, so the PIN does not linger in
/// freed memory; it is never printed and never sent twice (see [`Command::with_le`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    bytes: Vec<u8>,
    /// Whether the data field is secret (VERIFY): never printed.
    secret: bool,
    /// Whether the last byte is an Le (cases 2 and 4).
    has_le: bool,
}

impl Command {
    /// Builds `CLA INS P1 P2 [Lc data] [Le]`. `data` must be at most 255 bytes; `le` of
    /// `Some(0)` asks for up to 256 bytes.
    ///
    /// Returns `None` when the data does not fit a short APDU.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8], le: Option<u8>) -> Option<Self> {
        let lc = u8::try_from(data.len()).ok()?;
        // Sized once, so the data (a PIN, for VERIFY) is written to this buffer only and no
        // reallocation leaves a copy behind in freed memory.
        let mut bytes = Vec::with_capacity(4 + 1 + data.len() + 1);
        bytes.extend_from_slice(&[cla, ins, p1, p2]);
        if !data.is_empty() {
            bytes.push(lc);
            bytes.extend_from_slice(data);
        }
        if let Some(le) = le {
            bytes.push(le);
        }
        Some(Self {
            bytes,
            secret: false,
            has_le: le.is_some(),
        })
    }

    /// GET RESPONSE `00 C0 00 00 le`: fetches the rest of an answer the card announced with
    /// `61 xx`.
    pub fn get_response(le: u8) -> Self {
        Self {
            bytes: vec![0x00, 0xC0, 0x00, 0x00, le],
            secret: false,
            has_le: true,
        }
    }

    /// The same command with another Le, to answer a `6C xx`. `None` for a command that has
    /// no Le (the card cannot mean it) and for a secret one: a VERIFY is never sent twice
    /// on the card's say-so, since a second try could cost the patient a PIN try.
    pub fn with_le(&self, le: u8) -> Option<Self> {
        if !self.has_le || self.secret {
            return None;
        }
        let mut bytes = self.bytes.clone();
        let last = bytes.last_mut()?;
        *last = le;
        Some(Self {
            bytes,
            secret: false,
            has_le: true,
        })
    }

    /// Marks the data field as secret, so `Debug` hides it and drop wipes it.
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    /// Whether the data field is secret.
    pub fn is_secret(&self) -> bool {
        self.secret
    }

    /// The encoded command.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The instruction byte.
    pub fn ins(&self) -> u8 {
        self.bytes[1]
    }
}

impl Drop for Command {
    fn drop(&mut self) {
        if self.secret {
            // `Zeroize` writes through volatile stores the optimiser may not drop, which a
            // plain `fill(0)` before the free does not promise. (`der` re-exports the crate;
            // rsa's pkcs8 dependency always enables it.)
            self.bytes.zeroize();
        }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            write!(f, "{} <redacted>", hex::encode_upper(&self.bytes[..4]))
        } else {
            write!(f, "{}", hex::encode_upper(&self.bytes))
        }
    }
}

/// A response APDU: data followed by the status word.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    data: Vec<u8>,
    sw: StatusWord,
}

impl Response {
    /// A response from its parts (used to join a chained answer).
    pub fn new(data: Vec<u8>, sw: StatusWord) -> Self {
        Self { data, sw }
    }

    /// Splits raw response bytes into data and status word. Fewer than two bytes is malformed.
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let split = raw.len().checked_sub(2)?;
        let (data, sw) = raw.split_at(split);
        Some(Self {
            data: data.to_vec(),
            sw: StatusWord(u16::from_be_bytes([sw[0], sw[1]])),
        })
    }

    /// The data field.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Takes the data field.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// The status word.
    pub fn sw(&self) -> StatusWord {
        self.sw
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response({} bytes, {:?})", self.data.len(), self.sw)
    }
}

/// The header of a DER TLV: how many bytes the whole element takes.
///
/// Accepts the short form and the long forms `81 LL` and `82 LL LL` (a certificate on the card
/// is 1–2 KB, so longer forms are refused as implausible). Returns `None` when `prefix` is too
/// short to tell or the encoding is not a definite length that fits.
pub fn der_total_len(prefix: &[u8]) -> Option<usize> {
    let tag = *prefix.first()?;
    // Multi-byte tags do not occur at the top of an X.509 certificate.
    if tag & 0x1F == 0x1F {
        return None;
    }
    let first = *prefix.get(1)?;
    match first {
        0x00..=0x7F => Some(2 + usize::from(first)),
        0x81 => Some(3 + usize::from(*prefix.get(2)?)),
        0x82 => {
            let len = u16::from_be_bytes([*prefix.get(2)?, *prefix.get(3)?]);
            Some(4 + usize::from(len))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn command_encoding() {
        // It encodes a case-3 SELECT by AID with no Le.
        let aid = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];
        let c = Command::new(0x00, 0xA4, 0x04, 0x0C, &aid, None).unwrap();
        assert_eq!(hex::encode(c.as_bytes()), "00a4040c0ad392f000260100000001");
        // It encodes a case-1 empty VERIFY.
        let v = Command::new(0x00, 0x20, 0x00, 0x80, &[], None).unwrap();
        assert_eq!(v.as_bytes(), &[0x00, 0x20, 0x00, 0x80]);
        // It encodes a case-2 READ BINARY with Le=00.
        let r = Command::new(0x00, 0xB0, 0x01, 0x00, &[], Some(0)).unwrap();
        assert_eq!(r.as_bytes(), &[0x00, 0xB0, 0x01, 0x00, 0x00]);
        // It refuses data longer than a short APDU carries.
        assert!(Command::new(0, 0, 0, 0, &[0; 256], None).is_none());
        // It hides secret data in Debug.
        let pin = Command::new(0x00, 0x20, 0x00, 0x80, b"1234", None)
            .unwrap()
            .secret();
        assert!(!format!("{pin:?}").contains("31323334"));
    }

    #[test]
    fn response_parsing() {
        // It splits data and status word.
        let r = Response::parse(&[1, 2, 0x90, 0x00]).unwrap();
        assert_eq!(r.data(), &[1, 2]);
        assert!(r.sw().is_ok());
        // It treats a bare status word as an empty data field.
        assert_eq!(
            Response::parse(&[0x63, 0xC2])
                .unwrap()
                .sw()
                .pin_tries_left(),
            Some(2)
        );
        // It rejects truncated responses.
        assert!(Response::parse(&[0x90]).is_none());
        assert!(Response::parse(&[]).is_none());
    }

    #[test]
    fn status_words() {
        // It reads the tries left from 63 Cx only.
        assert_eq!(StatusWord(0x63C3).pin_tries_left(), Some(3));
        assert_eq!(StatusWord(0x6300).pin_tries_left(), None);
        // It treats all three blocked encodings as blocked, and not 63 C1.
        for sw in [0x63C0, 0x6983, 0x6984] {
            assert!(StatusWord(sw).is_pin_blocked(), "{sw:04X}");
        }
        assert!(!StatusWord(0x63C1).is_pin_blocked());
    }

    #[test]
    fn asking_again() {
        // It reads the Le of a 61xx and of a 6Cxx, and nothing else.
        assert_eq!(StatusWord(0x6110).more_data(), Some(0x10));
        assert_eq!(StatusWord(0x6100).more_data(), Some(0x00));
        assert_eq!(StatusWord(0x9000).more_data(), None);
        assert_eq!(StatusWord(0x6C58).exact_le(), Some(0x58));
        assert_eq!(StatusWord(0x6A82).exact_le(), None);
        // It encodes GET RESPONSE.
        assert_eq!(
            Command::get_response(0x9C).as_bytes(),
            &[0, 0xC0, 0, 0, 0x9C]
        );
        // It replaces the Le of a case-2 command.
        let read = Command::new(0x00, 0xB0, 0x02, 0x00, &[], Some(0)).unwrap();
        assert_eq!(
            read.with_le(0x58).unwrap().as_bytes(),
            &[0, 0xB0, 2, 0, 0x58]
        );
        // It replaces the Le of a case-4 command and keeps the data.
        let sign = Command::new(0x80, 0x2A, 0x00, 0x80, &[1, 2, 3], Some(0)).unwrap();
        assert_eq!(
            sign.with_le(0x10).unwrap().as_bytes(),
            &[0x80, 0x2A, 0, 0x80, 3, 1, 2, 3, 0x10]
        );
        // It refuses to invent an Le for a case-1 or case-3 command.
        let select = Command::new(0x00, 0xA4, 0x02, 0x0C, &[0, 0x0A], None).unwrap();
        assert!(select.with_le(0x10).is_none());
        // It never re-sends a secret command.
        let verify = Command::new(0x00, 0x20, 0x00, 0x80, b"1234", Some(0))
            .unwrap()
            .secret();
        assert!(verify.is_secret());
        assert!(verify.with_le(0x10).is_none());
    }

    #[test]
    fn der_lengths() {
        // It reads the long form used by every RSA-2048 certificate.
        assert_eq!(der_total_len(&[0x30, 0x82, 0x04, 0x1F]), Some(0x41F + 4));
        // It reads the one-byte long form and the short form.
        assert_eq!(der_total_len(&[0x30, 0x81, 0x90]), Some(0x93));
        assert_eq!(der_total_len(&[0x30, 0x10]), Some(0x12));
        // It gives up on truncated or indefinite or huge lengths.
        assert_eq!(der_total_len(&[0x30]), None);
        assert_eq!(der_total_len(&[0x30, 0x82, 0x04]), None);
        assert_eq!(der_total_len(&[0x30, 0x80]), None);
        assert_eq!(der_total_len(&[0x30, 0x84, 0, 0, 0, 1]), None);
        assert_eq!(der_total_len(&[0x1F, 0x01]), None);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Response::parse(&bytes);
            let _ = der_total_len(&bytes);
        }
    }
}
