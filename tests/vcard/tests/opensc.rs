//! OpenSC's own JPKI driver (written independently of us) reads and uses the virtual card
//! through pcscd: if it accepts the emulation, the emulation matches the real command set at
//! least as far as OpenSC uses it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use sha2::Sha256;
use tsunagi_vcard::card::{KENHOJO_AID, KENMEN_AID};
use tsunagi_vcard::harness::{self, reader_name};
use tsunagi_vcard::pki;
use tsunagi_vcard::vpcd::AttachOptions;

const PKCS11_MODULE: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .env("OPENSC_DRIVER", "jpki")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    eprintln!(
        "$ {program} {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn opensc_reads_the_certificate_and_pins() {
    let _pcscd = harness::pcscd().unwrap();
    let p = common::profile("opensc-read");
    let card = common::insert(&p, 0, AttachOptions::default());
    let reader = reader_name(0);

    // Driver detection without forcing: the ATR alone makes OpenSC pick jpki.
    let out = Command::new("opensc-tool")
        .args(["--reader", &reader, "--name"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "jpki", "{out:?}");

    let out = run("pkcs15-tool", &["--reader", &reader, "--list-certificates"]);
    assert!(out.status.success());
    let listing = stdout(&out);
    assert!(
        listing.contains("User Authentication Certificate"),
        "{listing}"
    );
    assert!(listing.contains("000a"), "{listing}");

    let out = run(
        "pkcs15-tool",
        &["--reader", &reader, "--read-certificate", "01"],
    );
    assert!(out.status.success());
    assert_eq!(pem_to_der(&stdout(&out)), p.auth_certificate_der);
    let out = run(
        "pkcs15-tool",
        &["--reader", &reader, "--read-certificate", "03"],
    );
    assert_eq!(pem_to_der(&stdout(&out)), p.ca_certificate_der);

    let out = run("pkcs15-tool", &["--reader", &reader, "--list-pins"]);
    let pins = stdout(&out);
    assert!(pins.contains("User Authentication PIN"), "{pins}");
    assert!(pins.contains("Tries left     : 3"), "{pins}");

    let out = run(
        "pkcs15-tool",
        &[
            "--reader",
            &reader,
            "--verify-pin",
            "--auth-id",
            "01",
            "--pin",
            "9999",
        ],
    );
    assert!(!out.status.success() || stdout(&out).contains("incorrect"));
    let log = card.log();
    assert!(log.entries().iter().any(|e| e.command.get(1) == Some(&0x20)
        && e.command.len() > 4
        && e.response_sw == 0x63C2));
    assert!(!log.was_selected(&KENHOJO_AID) && !log.was_selected(&KENMEN_AID));
}

#[test]
fn opensc_pkcs11_signs_with_the_user_auth_key() {
    let _pcscd = harness::pcscd().unwrap();
    let p = common::profile("opensc-sign");
    let _card = common::insert(&p, 0, AttachOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let msg = dir.path().join("msg");
    let sig = dir.path().join("sig");
    std::fs::write(&msg, b"qualification check challenge").unwrap();
    let out = run(
        "pkcs11-tool",
        &[
            "--module",
            PKCS11_MODULE,
            "--token-label",
            "JPKI (User Authentication PIN)",
            "--login",
            "--pin",
            "1234",
            "--sign",
            "--mechanism",
            "SHA256-RSA-PKCS",
            "--id",
            "01",
            "--input-file",
            &msg.to_string_lossy(),
            "--output-file",
            &sig.to_string_lossy(),
        ],
    );
    assert!(out.status.success());
    let signature = std::fs::read(&sig).unwrap();
    let public = pki::certificate_public_key(&p.auth_certificate_der).unwrap();
    VerifyingKey::<Sha256>::new(public)
        .verify(
            b"qualification check challenge",
            &Signature::try_from(signature.as_slice()).unwrap(),
        )
        .expect("OpenSC's signature verifies with the certificate key");
}
