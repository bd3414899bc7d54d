//! `tsunagi pending | show | reconcile | declare | status`: the checks waiting for 事後確認.

use std::io::Write;
use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Args;
use serde_json::json;

use super::check::{io_error, open_ledger, oqs_client, CommandError};
use super::OqsArgs;
use crate::check::now_jst;
use crate::ledger::event::{AnswerStatus, CheckEvent};
use crate::ledger::fold::{CheckState, Phase};
use crate::reconcile::{ReconcileConfig, Reconciler};
use crate::rules::claim::{InsuranceType, Moushitatesho, Sex};
use crate::rules::copay::CopayRatio;

/// Where the checks are.
#[derive(Debug, Args)]
pub struct DataDir {
    /// The data directory (the ledger).
    #[arg(long, env = "TSUNAGI_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// `tsunagi pending`.
#[derive(Debug, Args)]
pub struct PendingArgs {
    /// Only checks past their deadline.
    #[arg(long)]
    pub overdue: bool,
    /// JSON for programs.
    #[arg(long)]
    pub json: bool,
    /// The ledger.
    #[command(flatten)]
    pub dir: DataDir,
}

/// `tsunagi show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The check id.
    pub id: String,
    /// JSON for programs.
    #[arg(long)]
    pub json: bool,
    /// The ledger.
    #[command(flatten)]
    pub dir: DataDir,
}

/// `tsunagi reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Ask now for every open check, ignoring retry delays.
    #[arg(long)]
    pub now: bool,
    /// JSON for programs.
    #[arg(long)]
    pub json: bool,
    /// The ledger.
    #[command(flatten)]
    pub dir: DataDir,
    /// The qualification system.
    #[command(flatten)]
    pub oqs: OqsArgs,
}

/// `tsunagi declare`: the 被保険者資格申立書 (R14).
#[derive(Debug, Args)]
pub struct DeclareArgs {
    /// The check id.
    pub id: String,
    /// 氏名.
    #[arg(long)]
    pub name: Option<String>,
    /// 生年月日 (YYYY-MM-DD).
    #[arg(long)]
    pub birth_date: Option<NaiveDate>,
    /// 性別: male / female.
    #[arg(long)]
    pub sex: Option<String>,
    /// 住所.
    #[arg(long)]
    pub address: Option<String>,
    /// 電話番号.
    #[arg(long)]
    pub phone: Option<String>,
    /// 保険の種類: employee / kokuho / late-elderly.
    #[arg(long)]
    pub insurance_type: Option<String>,
    /// 保険者名.
    #[arg(long)]
    pub insurer_name: Option<String>,
    /// 事業所名.
    #[arg(long)]
    pub employer: Option<String>,
    /// 負担割合 in tenths (1, 2 or 3).
    #[arg(long)]
    pub copay: Option<u8>,
    /// The ledger.
    #[command(flatten)]
    pub dir: DataDir,
}

/// `tsunagi status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// JSON for programs.
    #[arg(long)]
    pub json: bool,
    /// The ledger.
    #[command(flatten)]
    pub dir: DataDir,
    /// The qualification system.
    #[command(flatten)]
    pub oqs: OqsArgs,
}

fn ledger_error(e: crate::ledger::LedgerError) -> CommandError {
    CommandError::new(e.message_ja())
}

fn phase_ja(c: &CheckState) -> &'static str {
    match c.phase() {
        Phase::Done => "確認済み",
        Phase::Waiting => "事後確認待ち",
        Phase::NeedsStaff => "要対応",
        Phase::Resolved => "請求根拠決定",
    }
}

fn check_json(c: &CheckState, today: NaiveDate) -> serde_json::Value {
    json!({
        "id": c.id,
        "visit_date": c.visit_date().to_string(),
        "facility": c.captured.facility,
        "phase": c.phase(),
        "due": c.due().map(|d| d.to_string()),
        "overdue": c.is_overdue(today),
        "reason": c.captured.reason,
        "attempts": c.attempts,
        "last_error": c.last_error,
        "answer": c.best_answer().map(|a| a.status),
        "declaration": c.declaration.is_some(),
        "resolution": c.resolution,
    })
}

fn what_is_missing_ja(c: &CheckState) -> Option<&'static str> {
    if c.phase() != Phase::NeedsStaff {
        return None;
    }
    Some(match c.best_answer().map(|a| a.status) {
        Some(AnswerStatus::Multiple) => {
            "複数の資格が該当しました。患者さんに保険を確認してください。"
        }
        _ if c.captured.facility.is_ryouyouhi() => {
            "柔整・あはき: 資格が確認できるまで申請できません。次回施術時に確認してください。"
        }
        _ => {
            "資格が確認できませんでした。被保険者資格申立書を記録してください（tsunagi declare）。"
        }
    })
}

/// `tsunagi pending`.
pub fn pending(args: &PendingArgs, out: &mut dyn Write) -> Result<i32, CommandError> {
    let ledger = open_ledger(&args.dir.data_dir)?;
    let today = now_jst().date_naive();
    let mut open = ledger.open_checks().map_err(ledger_error)?;
    if args.overdue {
        open.retain(|c| c.is_overdue(today));
    }
    open.sort_by_key(|c| (c.due(), c.id.clone()));
    if args.json {
        let list: Vec<_> = open.iter().map(|c| check_json(c, today)).collect();
        writeln!(out, "{}", serde_json::Value::Array(list)).map_err(io_error)?;
        return Ok(0);
    }
    if open.is_empty() {
        writeln!(out, "事後確認を待っている確認はありません。").map_err(io_error)?;
        return Ok(0);
    }
    writeln!(out, "事後確認待ち: {}件", open.len()).map_err(io_error)?;
    for c in &open {
        let due = c
            .due()
            .map(|d| d.format("%Y年%-m月%-d日").to_string())
            .unwrap_or_else(|| "—".into());
        let overdue = if c.is_overdue(today) {
            "【期限超過】"
        } else {
            ""
        };
        writeln!(
            out,
            "  {}  受診日 {}  {}  {}  期限 {}{}",
            c.id,
            c.visit_date().format("%Y-%m-%d"),
            c.captured.facility.label_ja(),
            phase_ja(c),
            due,
            overdue
        )
        .map_err(io_error)?;
    }
    Ok(0)
}

/// `tsunagi show`.
pub fn show(args: &ShowArgs, out: &mut dyn Write) -> Result<i32, CommandError> {
    let ledger = open_ledger(&args.dir.data_dir)?;
    let today = now_jst().date_naive();
    let c = ledger.check(&args.id).map_err(ledger_error)?;
    if args.json {
        writeln!(out, "{}", check_json(&c, today)).map_err(io_error)?;
        return Ok(0);
    }
    writeln!(out, "確認ID: {}", c.id).map_err(io_error)?;
    writeln!(
        out,
        "受診日: {}  施設: {}",
        c.visit_date(),
        c.captured.facility.label_ja()
    )
    .map_err(io_error)?;
    writeln!(out, "状態: {}", phase_ja(&c)).map_err(io_error)?;
    if let Some(due) = c.due().filter(|_| c.is_open()) {
        let overdue = if c.is_overdue(today) {
            "（期限超過）"
        } else {
            ""
        };
        writeln!(out, "事後確認の期限: {due}{overdue}").map_err(io_error)?;
    }
    if let Some(card) = &c.captured.card {
        writeln!(
            out,
            "カード: 証明書シリアル {}（本人確認: {}）",
            card.serial,
            card.method.label_ja()
        )
        .map_err(io_error)?;
    }
    if let Some(a) = c.best_answer() {
        let label = match a.status {
            AnswerStatus::Confirmed => "有効",
            AnswerStatus::Invalid if a.newer_exists => "資格（無効）・新しい資格あり",
            AnswerStatus::Invalid => "資格（無効）",
            AnswerStatus::NotFound => "資格情報なし",
            AnswerStatus::Multiple => "複数該当",
            AnswerStatus::CardRefused => "カードでは確認できず",
        };
        writeln!(out, "資格確認結果: {label}").map_err(io_error)?;
    }
    if let Some(r) = &c.resolution {
        writeln!(out, "請求の根拠: {}", r.summary_ja).map_err(io_error)?;
        write_claim_fields(out, r, "  ").map_err(io_error)?;
    }
    if let Some(m) = what_is_missing_ja(&c) {
        writeln!(out, "対応: {m}").map_err(io_error)?;
    }
    if let Some(e) = &c.last_error {
        writeln!(out, "最後の照会エラー: {e}（{}回）", c.attempts).map_err(io_error)?;
    }
    Ok(0)
}

/// The claim's fields of a decided check, for staff.
pub fn write_claim_fields(
    out: &mut dyn Write,
    r: &crate::ledger::event::Resolved,
    indent: &str,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{indent}保険者番号 {}  記号 {}  番号 {}",
        r.insurer_number,
        r.symbol.as_deref().unwrap_or("—"),
        r.number
    )?;
    if let Some(t) = &r.tekiyo {
        writeln!(out, "{indent}摘要欄: {t}")?;
    }
    if let Some(p) = &r.payer {
        writeln!(out, "{indent}請求先: {p}")?;
    }
    Ok(())
}

/// `tsunagi reconcile`.
pub async fn reconcile(args: &ReconcileArgs, out: &mut dyn Write) -> Result<i32, CommandError> {
    let ledger = open_ledger(&args.dir.data_dir)?;
    let (client, _) = oqs_client(&args.oqs)?;
    let reconciler = Reconciler::new(ledger, client, ReconcileConfig::default());
    let report = reconciler
        .run_pass(now_jst(), args.now)
        .await
        .map_err(ledger_error)?;
    if args.json {
        writeln!(out, "{}", json!(report)).map_err(io_error)?;
    } else {
        writeln!(
            out,
            "事後確認: 対象 {}件、請求根拠決定 {}件、要対応 {}件、照会失敗 {}件（後で再試行）",
            report.examined, report.resolved, report.needs_staff, report.failed
        )
        .map_err(io_error)?;
    }
    Ok(if report.failed > 0 { 2 } else { 0 })
}

/// `tsunagi declare`.
pub async fn declare(args: &DeclareArgs, out: &mut dyn Write) -> Result<i32, CommandError> {
    let sex = match args.sex.as_deref() {
        None => None,
        Some("male" | "男" | "m") => Some(Sex::Male),
        Some("female" | "女" | "f") => Some(Sex::Female),
        Some(other) => {
            return Err(CommandError::new(format!(
                "性別「{other}」が分かりません。male（男）か female（女）で指定してください。"
            )))
        }
    };
    let insurance_type = match args.insurance_type.as_deref() {
        None => None,
        Some("employee" | "社保") => Some(InsuranceType::Employee),
        Some("kokuho" | "国保") => Some(InsuranceType::Kokuho),
        Some("late-elderly" | "後期") => Some(InsuranceType::LateElderly),
        Some(other) => {
            return Err(CommandError::new(format!(
            "保険の種類「{other}」が分かりません。employee・kokuho・late-elderly のいずれかです。"
        )))
        }
    };
    let copay = match args.copay {
        None => None,
        Some(t) => Some(CopayRatio::from_tenths(t).ok_or_else(|| {
            CommandError::new(format!(
                "負担割合 {t} は指定できません（1・2・3割のいずれか）。"
            ))
        })?),
    };
    let ledger = open_ledger(&args.dir.data_dir)?;
    let check = ledger.check(&args.id).map_err(ledger_error)?;
    if let Some(b) = args.birth_date {
        if b > check.visit_date() {
            return Err(CommandError::new(format!(
                "生年月日（{b}）が受診日（{}）より後です。",
                check.visit_date()
            )));
        }
    }
    let m = Moushitatesho {
        name: args.name.clone(),
        birth_date: args.birth_date,
        sex,
        address: args.address.clone(),
        phone: args.phone.clone(),
        insurance_type,
        insurer_name: args.insurer_name.clone(),
        employer_name: args.employer.clone(),
        copay,
    };
    let missing = m.missing_fields_ja();
    ledger
        .record(
            &check.id,
            check.visit_date(),
            &CheckEvent::Declared { moushitatesho: m },
        )
        .await
        .map_err(ledger_error)?;
    writeln!(out, "申立書を記録しました（確認ID: {}）。", check.id).map_err(io_error)?;
    if !missing.is_empty() {
        writeln!(out, "未記入の項目: {}", missing.join("・")).map_err(io_error)?;
    }
    Ok(0)
}

/// `tsunagi status`: from tsunagid's status file while it runs, else asked directly.
pub async fn status(args: &StatusArgs, out: &mut dyn Write) -> Result<i32, CommandError> {
    use crate::check::health::LineState;
    let from_daemon =
        crate::service::read_status(&args.dir.data_dir, std::time::Duration::from_secs(60));
    let (line, queue, overdue, daemon, repairs) = match &from_daemon {
        Some(s) => (s.line, s.queue, s.overdue, true, s.store_repairs.clone()),
        None => {
            let ledger = open_ledger(&args.dir.data_dir)?;
            let repairs: Vec<_> = ledger
                .store()
                .health()
                .into_iter()
                .filter(|n| n.kind.is_damage())
                .collect();
            let today = now_jst().date_naive();
            let open = ledger.open_checks().map_err(ledger_error)?;
            let overdue = open.iter().filter(|c| c.is_overdue(today)).count();
            let (client, _) = oqs_client(&args.oqs)?;
            let line = match client.probe().await {
                Ok(()) => LineState::Online,
                Err(e) if e.is_transient() => LineState::Offline,
                Err(_) => LineState::Degraded,
            };
            (line, open.len(), overdue, false, repairs)
        }
    };
    if args.json {
        writeln!(
            out,
            "{}",
            json!({
                "line": line,
                "queue": queue,
                "overdue": overdue,
                "daemon": daemon,
                "readers": from_daemon.as_ref().map(|s| &s.readers),
                "readers_problem": from_daemon.as_ref().and_then(|s| s.readers_problem.as_ref()),
                "store_repairs": repairs,
            })
        )
        .map_err(io_error)?;
    } else {
        writeln!(out, "回線: {}", line.label_ja()).map_err(io_error)?;
        writeln!(out, "事後確認待ち: {queue}件（うち期限超過 {overdue}件）").map_err(io_error)?;
        if let Some(s) = &from_daemon {
            for r in &s.readers {
                let card = if r.card_present {
                    "カードあり"
                } else {
                    "カードなし"
                };
                writeln!(out, "カードリーダー: {}（{card}）", r.name).map_err(io_error)?;
            }
            if let Some(p) = &s.readers_problem {
                writeln!(out, "カードリーダー: {p}").map_err(io_error)?;
            }
        }
        for note in &repairs {
            writeln!(
                out,
                "保存データの修復: {}",
                crate::ledger::health_note_ja(note)
            )
            .map_err(io_error)?;
        }
        if !daemon {
            writeln!(
                out,
                "（tsunagid は動いていません。事後確認は tsunagi reconcile で行えます）"
            )
            .map_err(io_error)?;
        }
    }
    Ok(0)
}

/// `tsunagi record-document`: a document shown instead of a card read (資格確認書, the old
/// 保険証 while valid, マイナポータル, 資格情報のお知らせ with the card).
#[derive(Debug, Args)]
pub struct RecordDocumentArgs {
    /// Document kind: kakuninsho, hokensho, portal, oshirase, myna.
    pub kind: String,
    /// The document's own expiry (YYYY-MM-DD), when it has one.
    #[arg(long)]
    pub expires: Option<String>,
    /// Visit date (YYYY-MM-DD); default today in Japan.
    #[arg(long)]
    pub visit_date: Option<String>,
    /// 資格情報のお知らせ shown together with the My Number card.
    #[arg(long)]
    pub with_card: bool,
    /// 保険者番号 on the document (6 or 8 digits).
    #[arg(long)]
    pub insurer: Option<String>,
    /// 記号.
    #[arg(long)]
    pub symbol: Option<String>,
    /// 番号.
    #[arg(long)]
    pub number: Option<String>,
    /// 枝番.
    #[arg(long)]
    pub branch: Option<String>,
    /// 生年月日 (YYYY-MM-DD).
    #[arg(long)]
    pub birth_date: Option<String>,
    /// Facility type.
    #[arg(long, env = "TSUNAGI_FACILITY", default_value = "medical")]
    pub facility: String,
    /// First visit (初診・初検).
    #[arg(long)]
    pub first_visit: bool,
    /// JSON for programs.
    #[arg(long)]
    pub json: bool,
    /// The ledger.
    #[command(flatten)]
    pub dir: DataDir,
}

/// `tsunagi record-document`: applies the document rules (R7–R11) on the visit date, and
/// records an acceptable document as a check to confirm by its numbers.
pub async fn record_document(
    args: &RecordDocumentArgs,
    out: &mut dyn Write,
) -> Result<i32, CommandError> {
    use crate::ledger::event::{Captured, DocumentRecord, NumbersRecord};
    use crate::rules::calendar::parse_date;
    use crate::rules::claim::InsuranceNumbers;
    use crate::rules::documents::{document_validity, DocumentKind, PresentedDocument};
    use crate::rules::settings::RuleSettings;

    let bad = |m: String| CommandError::new(m);
    let kind: DocumentKind = args
        .kind
        .parse()
        .map_err(|e: crate::rules::documents::DocumentError| bad(e.message_ja()))?;
    let date = |s: &Option<String>| -> Result<Option<NaiveDate>, CommandError> {
        s.as_deref()
            .map(|d| parse_date(d).map_err(|e| bad(e.message_ja())))
            .transpose()
    };
    let now = now_jst();
    let visit = match &args.visit_date {
        Some(text) => crate::cli::parse_visit_date(text).map_err(bad)?,
        None => now.date_naive(),
    };
    let expires = date(&args.expires)?;
    let birth_date = date(&args.birth_date)?;
    if birth_date.is_some_and(|b| b > visit) {
        return Err(bad("生年月日が受診日より後になっています。".into()));
    }
    let facility: crate::domain::FacilityType = args
        .facility
        .parse()
        .map_err(|e: crate::domain::DomainError| bad(e.message_ja()))?;
    let numbers = match (&args.insurer, &args.number) {
        (Some(i), Some(n)) => {
            let checked =
                InsuranceNumbers::new(i, args.symbol.as_deref(), n, args.branch.as_deref())
                    .map_err(|e| bad(e.message_ja()))?;
            Some(NumbersRecord {
                insurer: checked.insurer().clone(),
                symbol: checked.kigo().map(str::to_string),
                number: checked.bango().to_string(),
                branch: checked.edaban().map(str::to_string),
            })
        }
        (None, None) => None,
        _ => return Err(bad("保険者番号と番号は両方指定してください。".into())),
    };
    let insurance = numbers
        .as_ref()
        .map(|n| crate::rules::claim::InsuranceType::from_insurer(&n.insurer))
        .unwrap_or(crate::rules::claim::InsuranceType::Unknown);
    let verdict = document_validity(
        &PresentedDocument {
            kind,
            expires,
            with_card: args.with_card,
            insurance,
        },
        visit,
        &RuleSettings::default(),
    )
    .map_err(|e| bad(e.message_ja()))?;
    if !verdict.acceptable {
        if args.json {
            writeln!(out, "{}", json!({"status": "refused", "reason_ja": verdict.reason_ja, "rule": verdict.rule.to_string()}))
                .map_err(io_error)?;
        } else {
            writeln!(out, "この書類では受け付けられません: {}", verdict.reason_ja)
                .map_err(io_error)?;
            for r in &verdict.requirements {
                writeln!(out, "・{}", r.label_ja()).map_err(io_error)?;
            }
        }
        return Ok(1);
    }
    let ledger = open_ledger(&args.dir.data_dir)?;
    let id = crate::ledger::new_check_id();
    let capture = Captured {
        visit_date: visit,
        facility,
        first_visit: args.first_visit,
        next_visit: None,
        card: None,
        document: Some(DocumentRecord {
            kind,
            expires,
            numbers,
            birth_date,
        }),
        reason: Some("document".into()),
        last_known: None,
        captured_at: now,
    };
    ledger
        .record(&id, visit, &CheckEvent::Captured(capture))
        .await
        .map_err(ledger_error)?;
    if args.json {
        writeln!(
            out,
            "{}",
            json!({"status": "recorded", "check_id": id, "reason_ja": verdict.reason_ja})
        )
        .map_err(io_error)?;
    } else {
        writeln!(out, "{}を記録しました（確認ID: {id}）。", kind.label_ja()).map_err(io_error)?;
        writeln!(out, "{}", verdict.reason_ja).map_err(io_error)?;
        for r in &verdict.requirements {
            writeln!(out, "・{}", r.label_ja()).map_err(io_error)?;
        }
    }
    Ok(0)
}
