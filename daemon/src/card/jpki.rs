//! The JPKI application (公的個人認証AP) of the My Number card: what a qualification check reads.
//!
//! Only four things are ever touched: the token EF (`0006`, which tells a card from a
//! smartphone), the user-authentication certificate (利用者証明用電子証明書, EF `000A`), its
//! PIN (EF `0018`) and its private key (EF `0017`). The card-info application that holds the
//! individual number is never selected; a test asserts that from the virtual card's APDU log.
//!
//! Every exchange goes through [`Transport`], so the same code runs over pcscd and over the
//! in-process virtual card of the demo. Round trips are the cost that matters on a real card,
//! so the certificate is read in as few 256-byte chunks as its DER length requires.
//!
//! [`JpkiSession`] follows `61 xx` (GET RESPONSE) and `6C xx` (same command, exact Le) itself,
//! so the flows above it only ever see final status words.

use std::time::{Duration, Instant};

use super::apdu::{der_total_len, Command, Response, StatusWord};
use super::{CardError, CardRefusal, Pin, PinState};
use crate::rules::certificate::ReadVia;

/// AID of the JPKI application.
pub const JPKI_AID: [u8; 10] = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];
const EF_AUTH_CERT: [u8; 2] = [0x00, 0x0A];
const EF_AUTH_KEY: [u8; 2] = [0x00, 0x17];
const EF_AUTH_PIN: [u8; 2] = [0x00, 0x18];
const EF_TOKEN: [u8; 2] = [0x00, 0x06];

/// The token EF holds 32 bytes of ASCII padded with NUL (jpki-card.md §1.1).
const TOKEN_LEN: u8 = 32;
/// What a smartphone's JPKI applet writes in its token EF (`JPKIAPGPSETOKEN`); a physical
/// card writes `JPKIAPICCTOKEN2` (older cards `JPKIAPICCTOKEN`).
const SMARTPHONE_TOKEN_PREFIX: &[u8] = b"JPKIAPGPSE";

/// GET RESPONSE rounds followed for one command before the card is called broken: a
/// 2 KB certificate chunk or a 256-byte signature needs at most a handful.
const MAX_GET_RESPONSE: usize = 32;
/// The most data one chained answer may carry (a short APDU answers at most 256 bytes; the
/// margin covers cards that chain in small pieces).
const MAX_CHAINED_LEN: usize = 4 * 1024;

/// The largest certificate we accept. Real ones are 1–2 KB; a bigger length is a broken card.
const MAX_CERT_LEN: usize = 8 * 1024;

/// Something that carries APDUs to a card and back: pcscd, or the demo's virtual card.
pub trait Transport: Send {
    /// Sends one command APDU and returns the raw response (data and status word).
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardError>;

    /// Runs `body` with the card to itself: over pcscd a PC/SC transaction, so no other
    /// program's APDU lands between the PIN and the signature, ended (and the card reset)
    /// on every path out of `body`, errors included. The default runs `body` directly, for
    /// transports nobody else can reach (the demo's in-process card, test scripts).
    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport) -> Result<(), CardError>,
    ) -> Result<(), CardError>
    where
        Self: Sized,
    {
        body(self)
    }
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardError> {
        (**self).transmit(command)
    }
}

/// Counts the APDUs and the time spent waiting on the card.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CardStats {
    /// Command APDUs sent.
    pub apdus: u32,
    /// Time spent inside `transmit` (the card's and the reader's share of a check).
    pub card_time: Duration,
}

/// A session with the JPKI application over some transport.
#[derive(Debug)]
pub struct JpkiSession<T> {
    transport: T,
    stats: CardStats,
}

impl<T: Transport> JpkiSession<T> {
    /// Selects the JPKI application. A card without it (another kind of card) is refused.
    pub fn open(transport: T) -> Result<Self, CardError> {
        let mut session = Self {
            transport,
            stats: CardStats::default(),
        };
        session
            .select(&Command::new(0x00, 0xA4, 0x04, 0x0C, &JPKI_AID, None))?
            .map_err(|sw| match sw {
                StatusWord::NOT_FOUND => CardError::NotMyNumberCard,
                other => CardError::Unexpected {
                    step: "select-ap",
                    sw: other,
                },
            })?;
        Ok(session)
    }

    /// APDU count and card time so far.
    pub fn stats(&self) -> CardStats {
        self.stats
    }

    /// Gives the transport back.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Reads the token EF to tell a physical card from a smartphone's JPKI applet (R6: the
    /// phone gets no grace period). A card without the EF, or one that will not let it be
    /// read, is taken for a physical card: older cards may lack it, and the qualification
    /// system still judges the certificate itself.
    pub fn read_via(&mut self) -> Result<ReadVia, CardError> {
        let selected = self.select(&Command::new(0x00, 0xA4, 0x02, 0x0C, &EF_TOKEN, None))?;
        if let Err(sw) = selected {
            tracing::debug!(%sw, "no token EF; taken for a physical card");
            return Ok(ReadVia::Card);
        }
        let response =
            self.exchange(&Command::new(0x00, 0xB0, 0x00, 0x00, &[], Some(TOKEN_LEN)))?;
        if !(response.sw().is_ok() || response.sw() == StatusWord::END_OF_FILE) {
            tracing::debug!(sw = %response.sw(), "token EF unreadable; taken for a physical card");
            return Ok(ReadVia::Card);
        }
        Ok(if response.data().starts_with(SMARTPHONE_TOKEN_PREFIX) {
            ReadVia::Smartphone
        } else {
            ReadVia::Card
        })
    }

    /// Reads the user-authentication certificate (DER), without PIN.
    pub fn read_auth_certificate(&mut self) -> Result<Vec<u8>, CardError> {
        self.select_ef(EF_AUTH_CERT, "select-cert")?;
        // The first chunk is a full 256 bytes: it carries the DER header, so one round trip
        // tells the length and already holds a quarter of the certificate.
        let first = self.read_binary(0, 0)?;
        let total = der_total_len(&first).ok_or(CardError::BadCertificate {
            detail: "certificate does not start with a DER length",
        })?;
        if total > MAX_CERT_LEN {
            return Err(CardError::BadCertificate {
                detail: "certificate length is implausibly large",
            });
        }
        let mut cert = first;
        if cert.len() > total {
            cert.truncate(total);
        }
        while cert.len() < total {
            let offset = u16::try_from(cert.len()).map_err(|_| CardError::BadCertificate {
                detail: "certificate offset out of range",
            })?;
            let want = (total - cert.len()).min(256);
            // Le=00 means 256; otherwise ask for exactly what is missing.
            let le = if want == 256 { 0 } else { want as u8 };
            let chunk = self.read_binary(offset, le)?;
            if chunk.is_empty() {
                return Err(CardError::BadCertificate {
                    detail: "card returned an empty chunk before the end of the certificate",
                });
            }
            cert.extend_from_slice(&chunk[..chunk.len().min(total - cert.len())]);
        }
        Ok(cert)
    }

    /// Reads the tries left on the user-authentication PIN without spending one (empty VERIFY).
    ///
    /// A 顔認証マイナンバーカード has no PIN at all. What such a card answers is not in any
    /// public source (jpki-card.md §3.3), so both ISO 7816-4 ways of saying "there is no
    /// reference data" read as [`PinState::NotSet`]: no PIN EF (`6A 82` to its SELECT), or
    /// `6A 88` to the status query. `69 84` stays "blocked", as the reference asks; the
    /// blocked message therefore also tells staff what to do with a photo card.
    pub fn pin_state(&mut self) -> Result<PinState, CardError> {
        match self.select(&Command::new(0x00, 0xA4, 0x02, 0x0C, &EF_AUTH_PIN, None))? {
            Ok(()) => {}
            Err(StatusWord::NOT_FOUND) => return Ok(PinState::NotSet),
            Err(sw) => {
                return Err(CardError::Unexpected {
                    step: "select-pin",
                    sw,
                })
            }
        }
        self.pin_status_of_selected()
    }

    fn pin_status_of_selected(&mut self) -> Result<PinState, CardError> {
        let cmd = Command::new(0x00, 0x20, 0x00, 0x80, &[], None);
        let response = self.exchange(&cmd)?;
        let sw = response.sw();
        if sw == StatusWord::REFERENCE_DATA_NOT_FOUND {
            return Ok(PinState::NotSet);
        }
        if sw.is_pin_blocked() {
            return Ok(PinState::Blocked);
        }
        if let Some(left) = sw.pin_tries_left() {
            return Ok(PinState::TriesLeft(left));
        }
        if sw.is_ok() {
            // Already verified in this session: the counter is at its maximum.
            return Ok(PinState::Verified);
        }
        Err(CardError::Unexpected {
            step: "pin-status",
            sw,
        })
    }

    /// Verifies the PIN. The caller must have read [`Self::pin_state`] first and obtained
    /// confirmation before spending the last try; this only sends the command.
    pub fn verify_pin(&mut self, pin: &Pin) -> Result<(), CardError> {
        let Some(cmd) = Command::new(0x00, 0x20, 0x00, 0x80, pin.digits().as_bytes(), None) else {
            return Err(CardError::Unexpected {
                step: "verify",
                sw: StatusWord(0),
            });
        };
        let response = self.exchange(&Some(cmd.secret()))?;
        let sw = response.sw();
        if sw.is_ok() {
            Ok(())
        } else if sw == StatusWord::REFERENCE_DATA_NOT_FOUND {
            Err(CardError::Refused {
                reason: CardRefusal::NoPinSet,
            })
        } else if sw.is_pin_blocked() {
            Err(CardError::PinBlocked)
        } else if let Some(left) = sw.pin_tries_left() {
            Err(CardError::WrongPin { tries_left: left })
        } else {
            Err(CardError::Unexpected { step: "verify", sw })
        }
    }

    /// Has the card sign a DER DigestInfo with the user-authentication key (after VERIFY).
    pub fn sign(&mut self, digest_info: &[u8]) -> Result<Vec<u8>, CardError> {
        self.select_ef(EF_AUTH_KEY, "select-key")?;
        let cmd = Command::new(0x80, 0x2A, 0x00, 0x80, digest_info, Some(0));
        let response = self.exchange(&cmd)?;
        match response.sw() {
            sw if sw.is_ok() && !response.data().is_empty() => Ok(response.into_data()),
            StatusWord::SECURITY_NOT_SATISFIED => Err(CardError::PinNotVerified),
            sw => Err(CardError::Unexpected { step: "sign", sw }),
        }
    }

    fn select_ef(&mut self, fid: [u8; 2], step: &'static str) -> Result<(), CardError> {
        self.select(&Command::new(0x00, 0xA4, 0x02, 0x0C, &fid, None))?
            .map_err(|sw| CardError::Unexpected { step, sw })
    }

    /// Sends a SELECT; the outer error is transport trouble, the inner one the card's refusal.
    fn select(&mut self, cmd: &Option<Command>) -> Result<Result<(), StatusWord>, CardError> {
        let response = self.exchange(cmd)?;
        Ok(if response.sw().is_ok() {
            Ok(())
        } else {
            Err(response.sw())
        })
    }

    fn read_binary(&mut self, offset: u16, le: u8) -> Result<Vec<u8>, CardError> {
        if offset > 0x7FFF {
            return Err(CardError::BadCertificate {
                detail: "certificate offset out of range",
            });
        }
        let [hi, lo] = offset.to_be_bytes();
        let response = self.exchange(&Command::new(0x00, 0xB0, hi, lo, &[], Some(le)))?;
        // 62 82 (end of file before Le bytes) still carries good data; the DER length
        // decides whether it was enough.
        if response.sw().is_ok() || response.sw() == StatusWord::END_OF_FILE {
            Ok(response.into_data())
        } else {
            Err(CardError::Unexpected {
                step: "read-cert",
                sw: response.sw(),
            })
        }
    }

    /// Sends `cmd` and follows the card's requests to ask again: `6C xx` re-sends the same
    /// command with Le = xx (once; never a secret one), `61 xx` fetches the rest with GET
    /// RESPONSE until the card says it is done, joining the pieces into one answer.
    fn exchange(&mut self, cmd: &Option<Command>) -> Result<Response, CardError> {
        // Commands are built from constants and bounded inputs; `None` means a caller bug.
        let Some(cmd) = cmd else {
            return Err(CardError::Unexpected {
                step: "encode",
                sw: StatusWord(0),
            });
        };
        let mut response = self.transmit_once(cmd)?;
        if let Some(again) = response.sw().exact_le().and_then(|le| cmd.with_le(le)) {
            response = self.transmit_once(&again)?;
        }
        let Some(mut more) = response.sw().more_data() else {
            return Ok(response);
        };
        let mut data = response.into_data();
        for _ in 0..MAX_GET_RESPONSE {
            let mut next = self.transmit_once(&Command::get_response(more))?;
            if let Some(le) = next.sw().exact_le() {
                // The card wants the GET RESPONSE itself with the exact length.
                next = self.transmit_once(&Command::get_response(le))?;
            }
            data.extend_from_slice(next.data());
            if data.len() > MAX_CHAINED_LEN {
                return Err(CardError::Unexpected {
                    step: "get-response",
                    sw: next.sw(),
                });
            }
            match next.sw().more_data() {
                Some(le) => more = le,
                None => return Ok(Response::new(data, next.sw())),
            }
        }
        Err(CardError::Unexpected {
            step: "get-response",
            sw: StatusWord(0x6100 | u16::from(more)),
        })
    }

    /// One command, one answer: counts it and the time the card took.
    fn transmit_once(&mut self, cmd: &Command) -> Result<Response, CardError> {
        let started = Instant::now();
        let raw = self.transport.transmit(cmd.as_bytes());
        self.stats.card_time += started.elapsed();
        self.stats.apdus += 1;
        let raw = raw?;
        tracing::trace!(command = ?cmd, "apdu");
        Response::parse(&raw).ok_or(CardError::TruncatedResponse)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A scripted card: answers each command with the next canned response.
    #[derive(Debug)]
    struct Script {
        answers: Vec<Vec<u8>>,
        sent: Vec<Vec<u8>>,
    }

    impl Transport for Script {
        fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardError> {
            self.sent.push(command.to_vec());
            if self.answers.is_empty() {
                return Err(CardError::Removed);
            }
            Ok(self.answers.remove(0))
        }
    }

    fn script(answers: &[&[u8]]) -> Script {
        Script {
            answers: answers.iter().map(|a| a.to_vec()).collect(),
            sent: Vec::new(),
        }
    }

    fn ok(data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        v.extend_from_slice(&[0x90, 0x00]);
        v
    }

    #[test]
    fn it_refuses_a_card_without_the_jpki_application() {
        let err = JpkiSession::open(script(&[&[0x6A, 0x82]])).unwrap_err();
        assert!(matches!(err, CardError::NotMyNumberCard));
    }

    #[test]
    fn it_reads_a_certificate_in_chunks_from_its_der_length() {
        // A 600-byte element: header 30 82 02 54 (596 + 4).
        let mut cert = vec![0x30, 0x82, 0x02, 0x54];
        cert.extend((0..596).map(|i| i as u8));
        let a = ok(&cert[..256]);
        let b = ok(&cert[256..512]);
        let c = ok(&cert[512..]);
        let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x90, 0], &a, &b, &c])).unwrap();
        assert_eq!(s.read_auth_certificate().unwrap(), cert);
        let t = s.into_transport();
        // It asks for exactly the remainder in the last chunk.
        assert_eq!(t.sent[4], vec![0x00, 0xB0, 0x02, 0x00, 88]);
        assert_eq!(t.sent.len(), 5);
    }

    #[test]
    fn it_reports_bad_der_and_truncated_answers_as_errors() {
        let mut s =
            JpkiSession::open(script(&[&[0x90, 0], &[0x90, 0], &ok(&[0x04, 0x80])])).unwrap();
        assert!(matches!(
            s.read_auth_certificate(),
            Err(CardError::BadCertificate { .. })
        ));
        let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x90]])).unwrap();
        assert!(matches!(
            s.read_auth_certificate(),
            Err(CardError::TruncatedResponse)
        ));
        // A card that stops sending data mid-certificate.
        let mut s = JpkiSession::open(script(&[
            &[0x90, 0],
            &[0x90, 0],
            &ok(&[0x30, 0x82, 0x01, 0x00]),
            &ok(&[]),
        ]))
        .unwrap();
        assert!(matches!(
            s.read_auth_certificate(),
            Err(CardError::BadCertificate { .. })
        ));
        // A card that answers an error status to READ BINARY.
        let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x90, 0], &[0x6B, 0x00]])).unwrap();
        assert!(matches!(
            s.read_auth_certificate(),
            Err(CardError::Unexpected {
                step: "read-cert",
                ..
            })
        ));
    }

    #[test]
    fn it_maps_pin_status_words() {
        let cases: &[(&[u8], PinState)] = &[
            (&[0x63, 0xC3], PinState::TriesLeft(3)),
            (&[0x63, 0xC1], PinState::TriesLeft(1)),
            (&[0x63, 0xC0], PinState::Blocked),
            (&[0x69, 0x83], PinState::Blocked),
            (&[0x69, 0x84], PinState::Blocked),
        ];
        for (sw, want) in cases {
            let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x90, 0], sw])).unwrap();
            assert_eq!(s.pin_state().unwrap(), *want, "{sw:02X?}");
        }
        let pin = Pin::parse("1234").unwrap();
        let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x63, 0xC1]])).unwrap();
        assert!(matches!(
            s.verify_pin(&pin),
            Err(CardError::WrongPin { tries_left: 1 })
        ));
        let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x69, 0x83]])).unwrap();
        assert!(matches!(s.verify_pin(&pin), Err(CardError::PinBlocked)));
    }

    #[test]
    fn it_follows_61xx_with_get_response_and_joins_the_pieces() {
        // T=0 style: the card hands out 100 bytes, then announces 0x9C more with 61 9C.
        let mut cert = vec![0x30, 0x81, 0xFD];
        cert.extend((0..0xFD).map(|i| i as u8));
        let mut first = cert[..100].to_vec();
        first.extend_from_slice(&[0x61, 0x9C]);
        let rest = ok(&cert[100..]);
        let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x90, 0], &first, &rest])).unwrap();
        assert_eq!(s.read_auth_certificate().unwrap(), cert);
        let t = s.into_transport();
        assert_eq!(t.sent[3], vec![0x00, 0xC0, 0x00, 0x00, 0x9C]);
        assert_eq!(t.sent.len(), 4);
    }

    #[test]
    fn it_follows_a_chain_of_several_61xx() {
        // A 256-byte signature handed out in three pieces (61 00 means "256 or more").
        let sig: Vec<u8> = (0..=255).collect();
        let mut a = sig[..100].to_vec();
        a.extend_from_slice(&[0x61, 0x00]);
        let mut b = sig[100..200].to_vec();
        b.extend_from_slice(&[0x61, 0x38]);
        let c = ok(&sig[200..]);
        let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x90, 0], &a, &b, &c])).unwrap();
        assert_eq!(s.sign(&[0; 51]).unwrap(), sig);
        let t = s.into_transport();
        assert_eq!(t.sent[3], vec![0x00, 0xC0, 0x00, 0x00, 0x00]);
        assert_eq!(t.sent[4], vec![0x00, 0xC0, 0x00, 0x00, 0x38]);
    }

    #[test]
    fn it_gives_up_on_a_card_that_never_stops_chaining() {
        let endless: Vec<&[u8]> =
            std::iter::repeat_n(&[0x01, 0x61, 0x01][..], MAX_GET_RESPONSE + 5).collect();
        let mut answers: Vec<&[u8]> = vec![&[0x90, 0], &[0x90, 0]];
        answers.extend(endless);
        let mut s = JpkiSession::open(script(&answers)).unwrap();
        assert!(matches!(
            s.read_auth_certificate(),
            Err(CardError::Unexpected {
                step: "get-response",
                ..
            })
        ));
    }

    #[test]
    fn it_resends_with_the_exact_le_on_6cxx() {
        // The token EF is shorter than asked: the card says 6C 10, the session asks again.
        let mut token = b"JPKIAPGPSETOKEN".to_vec();
        token.push(0);
        let mut s = JpkiSession::open(script(&[
            &[0x90, 0],
            &[0x90, 0],
            &[0x6C, 0x10],
            &ok(&token),
        ]))
        .unwrap();
        assert_eq!(s.read_via().unwrap(), ReadVia::Smartphone);
        let t = s.into_transport();
        assert_eq!(t.sent[2], vec![0x00, 0xB0, 0x00, 0x00, TOKEN_LEN]);
        assert_eq!(t.sent[3], vec![0x00, 0xB0, 0x00, 0x00, 0x10]);
        // A 6Cxx to a GET RESPONSE is followed too.
        let mut s = JpkiSession::open(script(&[
            &[0x90, 0],
            &[0x90, 0],
            &[0x61, 0x20],
            &[0x6C, 0x10],
            &ok(&token),
        ]))
        .unwrap();
        assert_eq!(s.read_via().unwrap(), ReadVia::Smartphone);
        assert_eq!(
            s.into_transport().sent[4],
            vec![0x00, 0xC0, 0x00, 0x00, 0x10]
        );
    }

    #[test]
    fn it_never_resends_a_pin_on_6cxx() {
        let pin = Pin::parse("1234").unwrap();
        let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x6C, 0x00]])).unwrap();
        assert!(matches!(
            s.verify_pin(&pin),
            Err(CardError::Unexpected { step: "verify", .. })
        ));
        assert_eq!(s.into_transport().sent.len(), 2, "the VERIFY went out once");
    }

    #[test]
    fn it_tells_a_card_from_a_smartphone_by_the_token() {
        let padded = |t: &[u8]| {
            let mut v = t.to_vec();
            v.resize(32, 0);
            ok(&v)
        };
        let cases: &[(&[u8], ReadVia)] = &[
            (&padded(b"JPKIAPICCTOKEN2"), ReadVia::Card),
            (&padded(b"JPKIAPICCTOKEN"), ReadVia::Card),
            (&padded(b"JPKIAPGPSETOKEN"), ReadVia::Smartphone),
        ];
        for (answer, want) in cases {
            let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x90, 0], answer])).unwrap();
            assert_eq!(s.read_via().unwrap(), *want, "{answer:02X?}");
        }
        // No token EF: a physical card (older cards).
        let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x6A, 0x82]])).unwrap();
        assert_eq!(s.read_via().unwrap(), ReadVia::Card);
    }

    #[test]
    fn it_reads_a_card_without_a_pin_as_not_set() {
        // No PIN EF at all.
        let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x6A, 0x82]])).unwrap();
        assert_eq!(s.pin_state().unwrap(), PinState::NotSet);
        // A PIN EF with no reference data.
        let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x90, 0], &[0x6A, 0x88]])).unwrap();
        assert_eq!(s.pin_state().unwrap(), PinState::NotSet);
        let pin = Pin::parse("1234").unwrap();
        let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x6A, 0x88]])).unwrap();
        assert!(matches!(
            s.verify_pin(&pin),
            Err(CardError::Refused {
                reason: CardRefusal::NoPinSet
            })
        ));
    }

    #[test]
    fn it_reports_signing_without_pin() {
        let mut s = JpkiSession::open(script(&[&[0x90, 0], &[0x90, 0], &[0x69, 0x82]])).unwrap();
        assert!(matches!(s.sign(&[0; 51]), Err(CardError::PinNotVerified)));
    }
}
