//! The virtual card through the real pcscd + vpcd, driven with the `pcsc` crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{connect, profile, readers, tx};
use tsunagi_vcard::card::JPKI_AID;
use tsunagi_vcard::harness::{self, reader_name};
use tsunagi_vcard::vpcd::AttachOptions;

fn select_jpki() -> Vec<u8> {
    let mut v = vec![0x00, 0xA4, 0x04, 0x0C, 0x0A];
    v.extend_from_slice(&JPKI_AID);
    v
}

#[test]
fn pcscd_serves_the_certificate_and_pin_state() {
    let _pcscd = harness::pcscd().unwrap();
    let p = profile("pcscd-read");
    let card = common::insert(&p, 0, AttachOptions::default());
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    assert!(
        readers(&ctx).contains(&reader_name(0)),
        "{:?}",
        readers(&ctx)
    );
    let c = connect(&ctx, &reader_name(0));
    let status = c.status2_owned().unwrap();
    assert_eq!(status.atr().to_vec(), tsunagi_vcard::card::ATR.to_vec());

    assert_eq!(tx(&c, &select_jpki()).unwrap().1, 0x9000);
    assert_eq!(
        tx(&c, &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x0A])
            .unwrap()
            .1,
        0x9000
    );
    let mut cert = Vec::new();
    loop {
        let [hi, lo] = (cert.len() as u16).to_be_bytes();
        let (chunk, sw) = tx(&c, &[0x00, 0xB0, hi, lo, 0x00]).unwrap();
        assert_eq!(sw, 0x9000);
        cert.extend_from_slice(&chunk);
        if chunk.len() < 256 {
            break;
        }
    }
    assert_eq!(cert, p.auth_certificate_der);
    assert_eq!(
        tx(&c, &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x18])
            .unwrap()
            .1,
        0x9000
    );
    assert_eq!(tx(&c, &[0x00, 0x20, 0x00, 0x80]).unwrap().1, 0x63C3);
    assert!(card.log().was_selected(&JPKI_AID));
    drop(c);
    card.remove();
}

/// A vpcd card vanishing mid-exchange: pcscd 1.9.9 reports `SCARD_E_NOT_TRANSACTED` or, at
/// other times, a zero-length response; later calls see the card removed.
#[test]
fn a_card_pulled_mid_read_fails_the_transmit() {
    let _pcscd = harness::pcscd().unwrap();
    let card = common::insert(
        &profile("pcscd-pull"),
        1,
        AttachOptions {
            remove_after_commands: Some(3),
        },
    );
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    let c = connect(&ctx, &reader_name(1));
    assert_eq!(tx(&c, &select_jpki()).unwrap().1, 0x9000);
    assert_eq!(
        tx(&c, &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0x00, 0x0A])
            .unwrap()
            .1,
        0x9000
    );
    assert_eq!(tx(&c, &[0x00, 0xB0, 0x00, 0x00, 0x00]).unwrap().1, 0x9000);
    // Depending on timing pcscd answers NotTransacted / RemovedCard, or an empty response.
    let err = tx(&c, &[0x00, 0xB0, 0x01, 0x00, 0x00]).unwrap_err();
    assert!(
        [
            "NotTransacted",
            "RemovedCard",
            "ResetCard",
            "NoSmartcard",
            "CommError",
            "short response"
        ]
        .iter()
        .any(|k| err.contains(k)),
        "{err}"
    );
    // Afterwards the card is gone for good.
    assert!(tx(&c, &select_jpki()).is_err());
    let deadline = Instant::now() + Duration::from_secs(5);
    while card.is_inserted() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!card.is_inserted());
}

#[test]
fn pcscd_can_run_without_readers_and_comes_back() {
    let mut session = harness::pcscd().unwrap();
    session.start_pcscd_without_readers().unwrap();
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    assert!(readers(&ctx).is_empty(), "{:?}", readers(&ctx));
    drop(ctx);
    session.stop_pcscd().unwrap();
    assert!(pcsc::Context::establish(pcsc::Scope::User).is_err());
    drop(session);
    let _again = harness::pcscd().unwrap();
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    let rs = readers(&ctx);
    assert!(
        rs.contains(&reader_name(0)) && rs.contains(&reader_name(1)),
        "{rs:?}"
    );
}
