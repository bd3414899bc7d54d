//! The `tsunagi` command line: parsing and dispatch. Operator output is Japanese; `--json`
//! output has stable English field names for programs.
//!
//! Exit codes: see [`exit`].

pub mod check;
pub mod client;
#[cfg(feature = "demo")]
pub mod demo;
pub mod exit;
pub mod ledger;
pub mod open;
pub mod peer;
pub mod plugin;
pub mod render;
pub mod rules;
pub mod settings;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::domain::IdentityMethod;

/// Tsunagi (つなぎ): My Number card qualification checks that keep working offline.
#[derive(Debug, Parser)]
#[command(name = "tsunagi", version, about, long_about = None, after_help = exit::HELP)]
pub struct Cli {
    /// tsunagid's configuration file: when tsunagid runs, commands go through its API.
    #[arg(long, global = true, env = "TSUNAGI_CONFIG", default_value = client::DEFAULT_CONFIG)]
    pub config: std::path::PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the qualification of the next card placed on the reader (資格確認).
    Check(CheckArgs),
    /// List card readers and whether a card is in each.
    Readers(ReadersArgs),
    /// Run a scripted tour with a built-in simulator and virtual cards (no hardware needed).
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// List checks waiting for 事後確認, with their deadlines.
    Pending(ledger::PendingArgs),
    /// Show one check with all it knows.
    Show(ledger::ShowArgs),
    /// Confirm captured checks with the qualification system now.
    Reconcile(ledger::ReconcileArgs),
    /// Record a document shown instead of a card (資格確認書, 保険証, マイナポータル, お知らせ).
    RecordDocument(ledger::RecordDocumentArgs),
    /// Record a 被保険者資格申立書 for a captured check.
    Declare(ledger::DeclareArgs),
    /// Record insurance numbers the patient reported after the visit (後日申告).
    Amend(ledger::AmendArgs),
    /// Mark a decided check as claimed (請求済): its claim basis is final from now on.
    Claimed(ledger::ClaimedArgs),
    /// Online / degraded / offline, queue size, overdue count.
    Status(ledger::StatusArgs),
    /// Open the reception page (受付画面) in the browser, signed in with a one-time code.
    Open(open::OpenArgs),
    /// Staff helpers that answer rule questions (資格確認書, 免除, 書類).
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Every setting the commands use, with its value and where it came from.
    Settings,
    /// Reports (マイナ保険証 usage rate).
    #[command(subcommand)]
    Report(rules::ReportCommand),
    /// Facility plugins: signing keys, signatures, the plugin directory.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// This device's id (端末ID), to pair it with another device.
    Id(peer::IdArgs),
    /// The devices this one syncs with: add, list, remove (ペアリング).
    #[command(subcommand)]
    Peer(peer::PeerCommand),
}

/// Where the qualification system is and who we are to it.
#[derive(Debug, Args)]
pub struct OqsArgs {
    /// Base URL of the qualification system (or of oqs-sim).
    #[arg(long, env = "TSUNAGI_OQS_URL", default_value = "http://127.0.0.1:8931")]
    pub oqs_url: String,
    /// This facility's 10-digit 医療機関コード.
    #[arg(long = "institution", env = "TSUNAGI_INSTITUTION_CODE")]
    pub institution_code: Option<String>,
    /// Time budget for one query, in milliseconds (reception is never held longer).
    #[arg(long, env = "TSUNAGI_OQS_TIMEOUT_MS", default_value_t = 3000)]
    pub timeout_ms: u64,
}

/// `tsunagi check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Identity method: `visual` (目視) or `pin` (暗証番号).
    #[arg(long, value_parser = parse_method)]
    pub method: IdentityMethod,
    /// Use this reader (default: the first reader with a card).
    #[arg(long)]
    pub reader: Option<String>,
    /// Print the result as JSON for programs.
    #[arg(long)]
    pub json: bool,
    /// Visit date (YYYY-MM-DD) the qualification is checked for; default today in Japan.
    #[arg(long, value_parser = parse_visit_date)]
    pub visit_date: Option<chrono::NaiveDate>,
    /// Seconds to wait for a card to be placed.
    #[arg(long, default_value_t = 30)]
    pub card_wait: u64,
    /// Allow spending the last remaining PIN try without asking (for non-interactive use,
    /// only after the patient agreed).
    #[arg(long)]
    pub confirm_last_try: bool,
    /// The qualification system.
    #[command(flatten)]
    pub oqs: OqsArgs,
    /// Where checks are recorded. With it, a check the qualification system cannot answer
    /// is captured for 事後確認 instead of failing.
    #[arg(long, env = "TSUNAGI_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Facility type: medical, dental, pharmacy, judo, ahaki, home-nursing.
    #[arg(long, env = "TSUNAGI_FACILITY", default_value = "medical", value_parser = parse_facility)]
    pub facility: crate::domain::FacilityType,
    /// The patient's first visit (初診・初検): a 申立書 is needed if the check is captured.
    #[arg(long)]
    pub first_visit: bool,
    /// The card has no photo (a card applied for before the first birthday): PIN only, no visual check.
    #[arg(long)]
    pub photo_less: bool,
    /// The next booked visit (YYYY-MM-DD), when 柔整・あはき confirm a captured check.
    #[arg(long, value_parser = parse_visit_date)]
    pub next_visit: Option<chrono::NaiveDate>,
    /// What the receipt computer knows of the patient (used if the check is captured).
    #[command(flatten)]
    pub known: KnownArgs,
}

impl CheckArgs {
    /// How long to wait for a card.
    pub fn card_wait(&self) -> Duration {
        Duration::from_secs(self.card_wait)
    }
}

/// Earlier data of the patient from the receipt computer (前回情報): the co-payment and the
/// 申立書 of a captured check follow it. Without it, the clinic's own history is used.
#[derive(Debug, Default, Args)]
pub struct KnownArgs {
    /// 保険者番号 last confirmed for the patient.
    #[arg(long, requires_all = ["known_number", "known_birth_date"])]
    pub known_insurer: Option<String>,
    /// 記号 last confirmed.
    #[arg(long, requires = "known_insurer")]
    pub known_symbol: Option<String>,
    /// 番号 last confirmed.
    #[arg(long, requires = "known_insurer")]
    pub known_number: Option<String>,
    /// 枝番 last confirmed.
    #[arg(long, requires = "known_insurer")]
    pub known_branch: Option<String>,
    /// 生年月日 (YYYY-MM-DD).
    #[arg(long, requires = "known_insurer")]
    pub known_birth_date: Option<chrono::NaiveDate>,
    /// 負担割合 last confirmed, in tenths (1, 2 or 3).
    #[arg(long, requires = "known_insurer", value_parser = clap::value_parser!(u8).range(1..=3))]
    pub known_copay: Option<u8>,
}

impl KnownArgs {
    /// The request field, when given.
    pub fn request(&self) -> Option<crate::ops::KnownInsuranceRequest> {
        Some(crate::ops::KnownInsuranceRequest {
            insurer: self.known_insurer.clone()?,
            symbol: self.known_symbol.clone(),
            number: self.known_number.clone()?,
            branch: self.known_branch.clone(),
            birth_date: self.known_birth_date?,
            copay_tenths: self.known_copay,
            confirmed_on: None,
        })
    }
}

/// `tsunagi readers`.
#[derive(Debug, Args)]
pub struct ReadersArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `tsunagi demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Pause between steps in milliseconds, to read along.
    #[arg(long, default_value_t = 0)]
    pub pause_ms: u64,
}

fn parse_facility(s: &str) -> Result<crate::domain::FacilityType, String> {
    s.parse::<crate::domain::FacilityType>()
        .map_err(|e| e.message_ja())
}

/// A visit date as staff type it, refused before anything is read or written when the
/// store could not hold its month (years 2000–2999).
pub fn parse_visit_date(s: &str) -> Result<chrono::NaiveDate, String> {
    let date = crate::rules::calendar::parse_date(s).map_err(|e| e.message_ja())?;
    tsunagi_sync::Month::of(date).map_err(|_| crate::ledger::visit_date_message_ja())?;
    Ok(date)
}

fn parse_method(s: &str) -> Result<IdentityMethod, String> {
    s.parse::<IdentityMethod>().map_err(|e| e.message_ja())
}
