//! `tsunagi check` and `tsunagi readers`: the card path over pcscd.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use crate::card::reader::Readers;
use crate::card::{CardError, Pin, PinEntry};
use crate::check::{self, now_jst, CheckError};
use crate::oqs::{OqsClient, OqsConfig};

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

/// `tsunagi check`: one check over pcscd. Returns the exit code.
pub async fn check(args: &CheckArgs, out: &mut dyn Write) -> Result<i32, CommandError> {
    let (client, institution) = oqs_client(&args.oqs)?;
    let now = now_jst();
    let visit_date = args.visit_date.unwrap_or_else(|| now.date_naive());
    // Connect first, so a stopped pcscd is reported before the operator is asked for a card.
    let readers = Readers::connect().map_err(|e| CommandError::new(e.message_ja()))?;
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
    .map_err(|e| CommandError::new(e.to_string()))?
    .map_err(|e| CommandError::new(e.message_ja()))?;
    let entry = TerminalPinEntry::new(args.confirm_last_try);
    // When tsunagid says the line is down, capture at once instead of waiting out the budget.
    let known_offline = args.data_dir.as_deref().is_some_and(|dir| {
        crate::service::read_status(dir, Duration::from_secs(60))
            .is_some_and(|s| s.line == crate::check::health::LineState::Offline)
    });
    let outcome = check::run(
        transport,
        args.method,
        visit_date,
        now,
        (!known_offline).then_some(&client),
        &institution,
        Box::new(entry),
    )
    .await;
    match outcome {
        Ok(outcome) => {
            if let Some(dir) = &args.data_dir {
                if let Some(code) = record(dir, args, &outcome, visit_date, now, out).await? {
                    return Ok(code);
                }
            }
            if args.json {
                let json = render::outcome_json(&outcome, visit_date);
                writeln!(out, "{json}").map_err(io_error)?;
            } else {
                render::outcome_text(&outcome, visit_date, out).map_err(io_error)?;
            }
            Ok(render::exit_code(&outcome))
        }
        Err(e) => {
            if args.json {
                writeln!(out, "{}", render::error_json(&e)).map_err(io_error)?;
            } else {
                writeln!(out, "{}", e.message_ja()).map_err(io_error)?;
            }
            Ok(render::error_exit_code(&e))
        }
    }
}

/// Exit code of a check captured for 事後確認.
pub const EXIT_CAPTURED: i32 = 3;

/// Records the check in the ledger: a check answered at reception as a record, one the
/// qualification system could not answer as a capture. Returns the exit code when the check
/// was captured (the caller prints the answer otherwise).
async fn record(
    dir: &std::path::Path,
    args: &CheckArgs,
    outcome: &check::CheckOutcome,
    visit_date: chrono::NaiveDate,
    now: chrono::DateTime<chrono::FixedOffset>,
    out: &mut dyn Write,
) -> Result<Option<i32>, CommandError> {
    use crate::check::capture::{captured, instructions_ja, VisitContext};
    use crate::ledger::event::CheckEvent;
    use crate::reconcile::answered;
    let visit = VisitContext {
        visit_date,
        facility: args.facility,
        first_visit: args.first_visit,
        next_visit: args.next_visit,
        last_known: None,
    };
    let reason = match &outcome.answer {
        Err(e) if e.is_transient() => Some(e.kind()),
        _ => None,
    };
    let ledger = open_ledger(dir)?;
    let id = crate::ledger::new_check_id();
    let capture = captured(outcome, &visit, reason, now);
    let store = |e: crate::ledger::LedgerError| CommandError::new(e.message_ja());
    ledger
        .record(&id, visit_date, &CheckEvent::Captured(capture.clone()))
        .await
        .map_err(store)?;
    match &outcome.answer {
        Ok(answer) => {
            let event = answered(crate::ledger::event::Via::Card, answer, now);
            ledger
                .record(&id, visit_date, &CheckEvent::Answered(event))
                .await
                .map_err(store)?;
            Ok(None)
        }
        Err(e) if e.is_transient() => {
            let lines = instructions_ja(&capture);
            if args.json {
                let v = serde_json::json!({
                    "status": "captured",
                    "check_id": id,
                    "error": e.kind(),
                    "method": outcome.evidence.method.as_str(),
                    "visit_date": visit_date.to_string(),
                    "instructions_ja": lines,
                });
                writeln!(out, "{v}").map_err(io_error)?;
            } else {
                writeln!(out, "オフライン受付（確認ID: {id}）").map_err(io_error)?;
                for l in lines {
                    writeln!(out, "・{l}").map_err(io_error)?;
                }
            }
            Ok(Some(EXIT_CAPTURED))
        }
        Err(_) => Ok(None),
    }
}

/// Opens the ledger, with the message staff see if it cannot be.
pub fn open_ledger(dir: &std::path::Path) -> Result<crate::ledger::Ledger, CommandError> {
    crate::ledger::Ledger::open(dir).map_err(|e| CommandError::new(e.message_ja()))
}

/// An output failure.
pub fn io_error(e: std::io::Error) -> CommandError {
    CommandError::new(format!("出力に失敗しました: {e}"))
}

/// PIN entry on the terminal: without echo on a TTY, else one line per try from stdin.
///
/// The PIN never goes to logs or output.
#[derive(Debug)]
pub struct TerminalPinEntry {
    interactive: bool,
    confirm_last_try: bool,
}

impl TerminalPinEntry {
    /// `confirm_last_try` pre-approves the last try when nobody can be asked.
    pub fn new(confirm_last_try: bool) -> Self {
        Self {
            interactive: std::io::stdin().is_terminal(),
            confirm_last_try,
        }
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
}

impl From<CheckError> for CommandError {
    fn from(e: CheckError) -> Self {
        CommandError::new(e.message_ja())
    }
}
