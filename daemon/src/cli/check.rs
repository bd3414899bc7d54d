//! `tsunagi check` and `tsunagi readers`: the card path over pcscd.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use crate::api::CheckStartRequest;
use crate::card::reader::Readers;
use crate::card::{CardError, Pin, PinEntry};
use crate::check::capture::VisitContext;
use crate::check::workflow::{self, CheckRequest, Reception};
use crate::check::{now_jst, CheckError};
use crate::domain::IdentityMethod;
use crate::oqs::{OqsClient, OqsConfig};
use crate::view::CheckReport;

use super::client::{ApiClient, Target};
use super::render;
use super::{CheckArgs, OqsArgs, ReadersArgs};

/// A failure of a CLI command, with the message staff see.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    /// Japanese message for the operator.
    pub message: String,
}

impl CommandError {
    /// A message for staff.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Builds the qualification-system client from the flags.
pub fn oqs_client(args: &OqsArgs) -> Result<(OqsClient, String), CommandError> {
    let Some(code) = args.institution_code.clone() else {
        return Err(CommandError::new(
            "医療機関コード（10桁）が設定されていません。--institution か環境変数 TSUNAGI_INSTITUTION_CODE で指定してください。",
        ));
    };
    let config = OqsConfig {
        base_url: args.oqs_url.clone(),
        institution_code: code.clone(),
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let client = OqsClient::new(config).map_err(|e| CommandError::new(e.message_ja()))?;
    Ok((client, code))
}

/// `tsunagi readers`: lists readers. Returns the exit code.
pub fn readers(args: &ReadersArgs, out: &mut dyn Write) -> Result<i32, CommandError> {
    let readers = Readers::connect()
        .and_then(|r| r.list())
        .map_err(|e| CommandError::new(e.message_ja()))?;
    if args.json {
        let text =
            serde_json::to_string_pretty(&readers).map_err(|e| CommandError::new(e.to_string()))?;
        writeln!(out, "{text}").map_err(io_error)?;
        return Ok(0);
    }
    if readers.is_empty() {
        writeln!(out, "{}", CardError::NoReaders.message_ja()).map_err(io_error)?;
        return Ok(1);
    }
    writeln!(out, "カードリーダー（{}台）:", readers.len()).map_err(io_error)?;
    for r in &readers {
        let card = if r.card_present {
            "カードあり"
        } else {
            "カードなし"
        };
        writeln!(out, "  {}  [{card}]", r.name).map_err(io_error)?;
    }
    Ok(0)
}

/// `tsunagi check`: one check, through tsunagid when it runs, else over pcscd here.
/// Returns the exit code.
pub async fn check(
    args: &CheckArgs,
    config: &std::path::Path,
    out: &mut dyn Write,
) -> Result<i32, CommandError> {
    let report = match super::client::target(config, args.data_dir.as_deref()).await? {
        Target::Daemon(api) => {
            if !args.json {
                writeln!(out, "マイナンバーカードをリーダーに置いてください…").map_err(io_error)?;
                out.flush().map_err(io_error)?;
            }
            check_through(&api, args).await?
        }
        Target::Direct(dir) => {
            let settings = super::settings::rule_settings(config)?;
            let (mut report, recorded) = check_here(args, dir.as_deref(), &settings, out).await?;
            // The facility's plugin on the recorded check, beside the report, as tsunagid
            // gives it.
            if let Some((view, state)) = recorded {
                report.facility_output =
                    super::plugin::direct_facility_output(config, state, &view).await;
            }
            report
        }
    };
    if args.json {
        let text = serde_json::to_string(&report).map_err(|e| CommandError::new(e.to_string()))?;
        writeln!(out, "{text}").map_err(io_error)?;
    } else if before_the_card(&report) {
        // Nothing was read: the reader side failed, like any command's error.
        return Err(CommandError::new(report.message_ja));
    } else {
        render::report_text(&report, out).map_err(io_error)?;
    }
    Ok(super::exit::of_report(&report))
}

/// A check that failed before any card was read (pcscd, the reader, no card placed).
fn before_the_card(report: &CheckReport) -> bool {
    matches!(
        report.error.as_deref(),
        Some("service-not-running" | "no-readers" | "reader-not-found" | "no-card" | "pcsc")
    ) && report.certificate.is_none()
}

/// A check recorded here: its view and the fold it was viewed from.
type Recorded = Option<(crate::view::CheckView, crate::ledger::fold::CheckState)>;

/// The check over pcscd in this process, recorded in `dir` when given (then also returned as
/// recorded).
async fn check_here(
    args: &CheckArgs,
    dir: Option<&std::path::Path>,
    settings: &crate::rules::settings::RuleSettings,
    out: &mut dyn Write,
) -> Result<(CheckReport, Recorded), CommandError> {
    let (client, institution) = oqs_client(&args.oqs)?;
    let now = now_jst();
    let visit_date = args.visit_date.unwrap_or_else(|| now.date_naive());
    let last_known = args
        .known
        .request()
        .map(|k| k.parse(visit_date))
        .transpose()
        .map_err(|e| CommandError::new(e.message_ja()))?;
    let request = CheckRequest {
        method: args.method,
        visit: VisitContext {
            visit_date,
            facility: args.facility,
            first_visit: args.first_visit,
            next_visit: args.next_visit,
            last_known,
        },
        check_id: None,
    };
    // Connect first, so a stopped pcscd is reported before the operator is asked for a card.
    let readers = match Readers::connect() {
        Ok(r) => r,
        Err(e) => return Ok((workflow::card_failure(&request, &CheckError::Card(e)), None)),
    };
    if !args.json {
        writeln!(out, "マイナンバーカードをリーダーに置いてください…").map_err(io_error)?;
        out.flush().map_err(io_error)?;
    }
    let reader = args.reader.clone();
    let wait = args.card_wait();
    let transport = tokio::task::spawn_blocking(move || {
        let name = readers.wait_for_card(reader.as_deref(), wait)?;
        readers.open(&name)
    })
    .await
    .map_err(|e| CommandError::new(e.to_string()))?;
    let transport = match transport {
        Ok(t) => t,
        Err(e) => return Ok((workflow::card_failure(&request, &CheckError::Card(e)), None)),
    };
    let ledger = dir.map(open_ledger).transpose()?;
    let entry = TerminalPinEntry::new(args.confirm_last_try).photo_less(args.photo_less);
    let report = workflow::perform(
        Reception {
            ledger: ledger.as_ref(),
            client: Some(&client),
            institution_code: &institution,
            settings,
        },
        transport,
        &request,
        Box::new(entry),
        now,
    )
    .await
    .map_err(|e| CommandError::new(e.message_ja()))?;
    let recorded = match (&ledger, &report.check_id) {
        // The check is recorded; a read that fails now only costs the plugin's output.
        (Some(ledger), Some(id)) => crate::ops::view_and_fold(ledger, id, now.date_naive())
            .await
            .ok(),
        _ => None,
    };
    Ok((report, recorded))
}

/// The check through tsunagid: the PIN is asked here first and travels in the request body;
/// a wrong PIN or an unconfirmed last try is asked again as the terminal would.
async fn check_through(api: &ApiClient, args: &CheckArgs) -> Result<CheckReport, CommandError> {
    let mut entry = TerminalPinEntry::new(args.confirm_last_try);
    let mut request = CheckStartRequest {
        reader: args.reader.clone(),
        method: args.method.as_str().to_string(),
        pin: None,
        confirm_last_try: args.confirm_last_try,
        visit_date: args.visit_date,
        facility: Some(args.facility.as_str().to_string()),
        first_visit: args.first_visit,
        next_visit: args.next_visit,
        card_wait_secs: Some(args.card_wait),
        // One id for every try of this check: a request repeated after a lost answer never
        // records a second check.
        check_id: Some(crate::ledger::new_check_id()),
        photo_less: args.photo_less,
        known_insurance: args.known.request(),
    };
    let mut tries_left = 3;
    loop {
        if args.method == IdentityMethod::Pin && request.pin.is_none() {
            match entry.pin(tries_left) {
                Some(pin) => request.pin = Some(pin.digits().to_string()),
                None => {
                    return Ok(workflow::card_failure(
                        &CheckRequest {
                            method: args.method,
                            visit: VisitContext {
                                visit_date: args
                                    .visit_date
                                    .unwrap_or_else(|| now_jst().date_naive()),
                                facility: args.facility,
                                first_visit: args.first_visit,
                                next_visit: args.next_visit,
                                last_known: None,
                            },
                            check_id: None,
                        },
                        &CheckError::Card(CardError::Cancelled),
                    ))
                }
            }
        }
        let report: CheckReport = api.post("/v1/checks", &request).await?;
        match (report.error.as_deref(), report.pin_tries_left) {
            (Some("wrong-pin"), Some(left)) if left > 0 => {
                entry.wrong_pin(left);
                tries_left = left;
                request.pin = None;
            }
            (Some("last-try-not-confirmed"), _) if !request.confirm_last_try => {
                if !entry.confirm_last_try() {
                    return Ok(report);
                }
                request.confirm_last_try = true;
            }
            _ => return Ok(report),
        }
    }
}

/// Opens the ledger, with the message staff see if it cannot be.
pub fn open_ledger(dir: &std::path::Path) -> Result<crate::ledger::Ledger, CommandError> {
    crate::ledger::Ledger::open(dir).map_err(|e| CommandError::new(e.message_ja()))
}

/// An output failure.
pub fn io_error(e: std::io::Error) -> CommandError {
    CommandError::new(format!(
        "結果を書き出せませんでした: {}。",
        crate::domain::io_error_ja(&e)
    ))
}

/// PIN entry on the terminal: without echo on a TTY, else one line per try from stdin.
///
/// The PIN never goes to logs or output.
#[derive(Debug)]
pub struct TerminalPinEntry {
    interactive: bool,
    confirm_last_try: bool,
    photo_less: bool,
}

impl TerminalPinEntry {
    /// `confirm_last_try` pre-approves the last try when nobody can be asked.
    pub fn new(confirm_last_try: bool) -> Self {
        Self {
            interactive: std::io::stdin().is_terminal(),
            confirm_last_try,
            photo_less: false,
        }
    }

    /// The operator says the card has no photo (R2).
    pub fn photo_less(mut self, photo_less: bool) -> Self {
        self.photo_less = photo_less;
        self
    }
}

impl PinEntry for TerminalPinEntry {
    fn pin(&mut self, tries_left: u8) -> Option<Pin> {
        if self.interactive {
            loop {
                let prompt = format!("暗証番号（4桁）を入力してください（残り{tries_left}回）: ");
                let line = rpassword::prompt_password(prompt).ok()?;
                if line.trim().is_empty() {
                    return None;
                }
                match Pin::parse(&line) {
                    Some(pin) => return Some(pin),
                    None => eprintln!("暗証番号は数字4桁です。もう一度入力してください（空のまま Enter で取り消し）。"),
                }
            }
        } else {
            let mut line = String::new();
            let read = std::io::stdin().lock().read_line(&mut line).ok()?;
            if read == 0 {
                return None;
            }
            let pin = Pin::parse(&line);
            if pin.is_none() {
                eprintln!("標準入力の暗証番号が数字4桁ではありません。");
            }
            pin
        }
    }

    fn confirm_last_try(&mut self) -> bool {
        if self.confirm_last_try {
            return true;
        }
        if !self.interactive {
            eprintln!("暗証番号の残り回数が1回です。間違えるとロックされるため、--confirm-last-try を付けない限り入力しません。");
            return false;
        }
        eprint!(
            "暗証番号の残り回数が1回です。間違えるとカードがロックされます。入力しますか？ [y/N]: "
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).is_err() {
            return false;
        }
        matches!(answer.trim(), "y" | "Y" | "yes" | "はい")
    }

    fn wrong_pin(&mut self, tries_left: u8) {
        eprintln!("{}", CardError::WrongPin { tries_left }.message_ja());
    }

    fn card_kind(&self) -> crate::rules::identity::CardKind {
        if self.photo_less {
            crate::rules::identity::CardKind::InfantNoPhoto
        } else {
            crate::rules::identity::CardKind::Standard
        }
    }
}

impl From<CheckError> for CommandError {
    fn from(e: CheckError) -> Self {
        CommandError::new(e.message_ja())
    }
}
