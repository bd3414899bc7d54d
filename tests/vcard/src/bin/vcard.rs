//! `vcard --profile FILE.json [--slot 0]`: puts a virtual My Number card into a vpcd slot of
//! the running pcscd and serves it until Ctrl-C or end of stdin (for manual use and demos).
//! `--init LABEL` first writes a fresh profile (test CA, cached key) to FILE.json.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tsunagi_vcard::card::{CardProfile, VirtualCard};
use tsunagi_vcard::harness::{reader_name, slot_addr};
use tsunagi_vcard::pki;
use tsunagi_vcard::vpcd::{attach, AttachOptions};

#[derive(Parser, Debug)]
#[command(about = "Serve a virtual My Number card through vpcd")]
struct Args {
    /// The card profile (JSON).
    #[arg(long)]
    profile: PathBuf,
    /// The vpcd slot (0 → 127.0.0.1:35963).
    #[arg(long, default_value_t = 0)]
    slot: u8,
    /// Write a new profile with this label to --profile first.
    #[arg(long)]
    init: Option<String>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vcard: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(label) = &args.init {
        std::fs::write(
            &args.profile,
            serde_json::to_vec_pretty(&new_profile(label)?)?,
        )?;
    }
    let profile: CardProfile = serde_json::from_slice(&std::fs::read(&args.profile)?)?;
    let label = profile.label.clone();
    let card = attach(
        VirtualCard::new(profile),
        slot_addr(args.slot),
        AttachOptions::default(),
    )?;
    eprintln!(
        "vcard: card {label:?} inserted in {:?}; end stdin (Ctrl-D) or Ctrl-C to remove",
        reader_name(args.slot)
    );
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    card.remove();
    Ok(())
}

fn new_profile(label: &str) -> Result<CardProfile, Box<dyn std::error::Error>> {
    let keys = pki::key_pool(2)?;
    let today = chrono::Local::now().date_naive();
    let ca = pki::TestCa::generate(
        keys[0].clone(),
        today - chrono::Days::new(365),
        today + chrono::Days::new(3650),
    )?;
    let cert = ca.issue_user_auth(
        &keys[1].to_public_key(),
        rand::random::<u32>().into(),
        today - chrono::Days::new(30),
        today + chrono::Days::new(5 * 365),
    )?;
    Ok(CardProfile::new(
        label,
        &keys[1],
        cert,
        ca.certificate_der().to_vec(),
    )?)
}
