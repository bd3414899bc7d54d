//! Shared fixtures for the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::ffi::CString;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use tsunagi_vcard::card::CardProfile;
use tsunagi_vcard::pki;

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// A card with a certificate from a fresh test CA (keys from the cached pool).
pub fn profile(label: &str) -> CardProfile {
    let keys = pki::key_pool(2).unwrap();
    let ca = pki::TestCa::generate(keys[0].clone(), date(2023, 7, 16), date(2033, 7, 15)).unwrap();
    let cert = ca
        .issue_user_auth(
            &keys[1].to_public_key(),
            1001,
            date(2024, 4, 1),
            date(2029, 3, 31),
        )
        .unwrap();
    CardProfile::new(label, &keys[1], cert, ca.certificate_der().to_vec()).unwrap()
}

/// Connects to the card in `reader`, waiting for pcscd to see it.
pub fn connect(ctx: &pcsc::Context, reader: &str) -> pcsc::Card {
    let name = CString::new(reader).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ctx.connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY) {
            Ok(card) => return card,
            Err(e) if Instant::now() > deadline => panic!("connect {reader}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Sends an APDU; returns (data, sw). A response shorter than a status word is an error too:
/// pcscd sometimes returns an empty response when a vpcd card vanishes mid-exchange.
pub fn tx(card: &pcsc::Card, apdu: &[u8]) -> Result<(Vec<u8>, u16), String> {
    let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE];
    let r = card
        .transmit(apdu, &mut buf)
        .map_err(|e| format!("{e:?}"))?;
    let n = r.len();
    if n < 2 {
        return Err(format!("short response {r:02X?}"));
    }
    Ok((
        r[..n - 2].to_vec(),
        u16::from_be_bytes([r[n - 2], r[n - 1]]),
    ))
}

pub fn readers(ctx: &pcsc::Context) -> Vec<String> {
    match ctx.list_readers_owned() {
        Ok(rs) => rs
            .into_iter()
            .map(|r| r.to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Attaches a card to `slot` once the slot is empty, and returns when pcscd sees it.
pub fn insert(
    profile: &tsunagi_vcard::card::CardProfile,
    slot: u8,
    options: tsunagi_vcard::vpcd::AttachOptions,
) -> tsunagi_vcard::vpcd::AttachedCard {
    tsunagi_vcard::harness::insert(
        tsunagi_vcard::card::VirtualCard::new(profile.clone()),
        slot,
        options,
    )
    .unwrap()
}
