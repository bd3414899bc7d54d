//! `tsunagi pending | show | reconcile | declare | status`: the checks waiting for 事後確認.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use clap::Args;
use serde_json::json;

use super::check::{io_error, open_ledger, oqs_client, CommandError};
use super::client::{segment, target, Target};
use super::{exit, OqsArgs};
use crate::api::{CheckList, ReconcileReport, ReconcileRequest};
use crate::check::now_jst;
use crate::ops::{
    self, DeclarationReport, DeclarationRequest, DocumentReport, DocumentRequest, NumbersRequest,
};
use crate::reconcile::Reconciler;
use crate::service::Status;
use crate::view::{AnswerKind, CheckView, ListState, ResolutionView};

/// Where the checks are.
#[derive(Debug, Args)]
pub struct DataDir {
    /// The data directory (the ledger); default the one in the configuration file.
    #[arg(long, env = "TSUNAGI_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
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

/// `tsunagi amend`: numbers the patient reported after the visit.
#[derive(Debug, Args)]
pub struct AmendArgs {
    /// The check id.
    pub id: String,
    /// 保険者番号 (6 or 8 digits).
    #[arg(long)]
    pub insurer: String,
    /// 記号.
    #[arg(long)]
    pub symbol: Option<String>,
    /// 番号.
    #[arg(long)]
    pub number: String,
    /// 枝番.
    #[arg(long)]
    pub branch: Option<String>,
    /// 生年月日 (YYYY-MM-DD), needed to ask the qualification system by numbers.
    #[arg(long)]
    pub birth_date: Option<NaiveDate>,
    /// JSON for programs.
    #[arg(long)]
    pub json: bool,
    /// The ledger.
    #[command(flatten)]
    pub dir: DataDir,
}

/// `tsunagi claimed`.
#[derive(Debug, Args)]
pub struct ClaimedArgs {
    /// The check id.
    pub id: String,
    /// JSON for programs.
    #[arg(long)]
    pub json: bool,
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

fn op_error(e: crate::ops::OpError) -> CommandError {
    CommandError::new(e.message_ja())
}

/// The ledger of a direct target.
fn direct_ledger(dir: Option<PathBuf>) -> Result<crate::ledger::Ledger, CommandError> {
    open_ledger(&Target::require_dir(dir)?)
}

/// One check as a line of the pending list.
fn pending_line(c: &CheckView, out: &mut dyn Write) -> std::io::Result<()> {
    let due = c
        .due
        .map(|d| d.format("%Y年%-m月%-d日").to_string())
        .unwrap_or_else(|| "—".into());
    let overdue = if c.overdue { "【期限超過】" } else { "" };
    writeln!(
        out,
        "  {}  受診日 {}  {}  {}  期限 {}{}",
        c.id,
        c.visit_date.format("%Y-%m-%d"),
        c.facility.label_ja(),
        c.phase.label_ja(),
        due,
        overdue
    )
}

/// `tsunagi pending`.
pub async fn pending(
    args: &PendingArgs,
    config: &Path,
    out: &mut dyn Write,
) -> Result<i32, CommandError> {
    let state = if args.overdue {
        ListState::Overdue
    } else {
        ListState::Pending
    };
    let open = match target(config, args.dir.data_dir.as_deref()).await? {
        Target::Daemon(api) => {
            let path = match state {
                ListState::Overdue => "/v1/checks?state=overdue",
                _ => "/v1/checks?state=pending",
            };
            api.get::<CheckList>(path).await?.checks
        }
        Target::Direct(dir) => {
            let ledger = direct_ledger(dir)?;
            ops::list(&ledger, state, None, now_jst().date_naive())
                .await
                .map_err(op_error)?
        }
    };
    if args.json {
        let text = serde_json::to_string(&open).map_err(|e| CommandError::new(e.to_string()))?;
        writeln!(out, "{text}").map_err(io_error)?;
        return Ok(exit::OK);
    }
    if open.is_empty() {
        writeln!(out, "事後確認を待っている確認はありません。").map_err(io_error)?;
        return Ok(exit::OK);
    }
    writeln!(out, "事後確認待ち: {}件", open.len()).map_err(io_error)?;
    for c in &open {
        pending_line(c, out).map_err(io_error)?;
    }
    Ok(exit::OK)
}

/// `tsunagi show`.
pub async fn show(
    args: &ShowArgs,
    config: &Path,
    out: &mut dyn Write,
) -> Result<i32, CommandError> {
    let c = match target(config, args.dir.data_dir.as_deref()).await? {
        Target::Daemon(api) => {
            api.get::<CheckView>(&format!("/v1/checks/{}", segment(&args.id)))
                .await?
        }
        Target::Direct(dir) => {
            let ledger = direct_ledger(dir)?;
            let (mut view, state) = ops::view_and_fold(&ledger, &args.id, now_jst().date_naive())
                .await
                .map_err(op_error)?;
            // Let go of the store before plugins load: they need none of it.
            drop(ledger);
            view.facility_output =
                super::plugin::direct_facility_output(config, state, &view).await;
            view
        }
    };
    if args.json {
        let text = serde_json::to_string(&c).map_err(|e| CommandError::new(e.to_string()))?;
        writeln!(out, "{text}").map_err(io_error)?;
        return Ok(exit::OK);
    }
    show_text(&c, out).map_err(io_error)?;
    Ok(exit::OK)
}

fn show_text(c: &CheckView, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "確認ID: {}", c.id)?;
    writeln!(
        out,
        "受診日: {}  施設: {}",
        c.visit_date,
        c.facility.label_ja()
    )?;
    writeln!(out, "状態: {}", c.phase.label_ja())?;
    if let Some(due) = c.due.filter(|_| c.is_open()) {
        let overdue = if c.overdue { "（期限超過）" } else { "" };
        writeln!(out, "事後確認の期限: {due}{overdue}")?;
    }
    if let (Some(serial), Some(method)) = (&c.certificate_serial, c.method) {
        writeln!(
            out,
            "カード: 証明書シリアル {serial}（本人確認: {}）",
            method.label_ja()
        )?;
    }
    if let Some(a) = &c.answer {
        let label = match a.status {
            AnswerKind::Invalid if a.newer_exists => "資格（無効）・新しい資格あり",
            other => other.label_ja(),
        };
        writeln!(out, "資格確認結果: {label}")?;
    }
    if let Some(n) = &c.known_numbers {
        writeln!(
            out,
            "把握している保険: 保険者番号 {}  記号 {}  番号 {}",
            n.insurer,
            n.symbol.as_deref().unwrap_or("—"),
            n.number
        )?;
    }
    if let Some(e) = &c.earlier {
        let whence = match (e.source.as_str(), e.confirmed_on) {
            ("history", Some(d)) => format!("{d} の確認より"),
            ("history", None) => "以前の確認より".to_string(),
            _ => "レセコンより".to_string(),
        };
        let copay = e.copay_tenths.map_or_else(
            || "負担割合 不明".to_string(),
            |t| format!("負担割合 {t}割"),
        );
        writeln!(out, "受付時の前回情報: {whence}（{copay}）")?;
    }
    if let Some(r) = &c.resolution {
        let state = match (c.claimed_at, c.final_basis) {
            (Some(at), _) => format!("（{} 請求済み）", at.format("%Y-%m-%d")),
            (None, true) => "（請求期限を過ぎたため確定）".to_string(),
            (None, false) => "（請求前のため、新しい情報があれば変わります）".to_string(),
        };
        writeln!(out, "請求の根拠: {}{state}", r.summary_ja)?;
        write_claim_fields(out, r, "  ")?;
        if let Some(why) = &r.replaces_because {
            writeln!(out, "  変更の理由: {why}")?;
        }
    }
    for (i, h) in c.history.iter().enumerate() {
        writeln!(
            out,
            "以前の判断{}（{}）: {}",
            i + 1,
            h.at.format("%Y-%m-%d %H:%M"),
            h.summary_ja
        )?;
    }
    if let Some(m) = &c.next_step_ja {
        writeln!(out, "対応: {m}")?;
    }
    if let Some(e) = &c.last_error {
        writeln!(out, "最後の照会エラー: {e}（{}回）", c.attempts)?;
    }
    for n in &c.notes {
        writeln!(out, "メモ: {n}")?;
    }
    for n in &c.plugin_notes {
        let when = if n.moment == "resolved" {
            "請求の根拠が決まった時"
        } else {
            "受付の記録時"
        };
        for w in &n.warnings {
            writeln!(out, "{}（{when}）: {}", n.plugin, w.message)?;
        }
        if let Some(a) = &n.next_action {
            writeln!(out, "{}（{when}）: 次の対応 {}", n.plugin, a.label)?;
        }
    }
    if let Some(f) = &c.facility_output {
        super::render::facility_text(f, out)?;
    }
    Ok(())
}

/// The claim's fields of a decided check, for staff.
pub fn write_claim_fields(
    out: &mut dyn Write,
    r: &ResolutionView,
    indent: &str,
) -> std::io::Result<()> {
    if r.basis == crate::view::ClaimBasis::Manual {
        return Ok(());
    }
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
pub async fn reconcile(
    args: &ReconcileArgs,
    config: &Path,
    out: &mut dyn Write,
) -> Result<i32, CommandError> {
    let report = match target(config, args.dir.data_dir.as_deref()).await? {
        Target::Daemon(api) => {
            api.post::<_, ReconcileReport>("/v1/reconcile", &ReconcileRequest { force: args.now })
                .await?
        }
        Target::Direct(dir) => {
            let ledger = direct_ledger(dir)?;
            let (client, _) = oqs_client(&args.oqs)?;
            // The same settings tsunagid would use (claim field lengths, check digit).
            let settings = super::settings::load_config(config)?
                .map(|c| c.reconcile_config())
                .unwrap_or_default();
            let reconciler = Reconciler::new(ledger, client, settings);
            let pass = reconciler
                .run_pass(now_jst(), args.now)
                .await
                .map_err(|e| CommandError::new(e.message_ja()))?;
            ReconcileReport { ran: true, pass }
        }
    };
    let pass = report.pass;
    if args.json {
        writeln!(out, "{}", json!(pass)).map_err(io_error)?;
    } else if !report.ran {
        writeln!(
            out,
            "資格確認システムにつながらないため、事後確認は回線が戻ってから行います（事後確認待ち {}件）。",
            pass.examined
        )
        .map_err(io_error)?;
    } else {
        writeln!(
            out,
            "事後確認: 対象 {}件、請求根拠決定 {}件、要対応 {}件、照会失敗 {}件（後で再試行）",
            pass.examined, pass.resolved, pass.needs_staff, pass.failed
        )
        .map_err(io_error)?;
    }
    Ok(if pass.failed > 0 || !report.ran {
        exit::ERROR
    } else {
        exit::OK
    })
}

/// `tsunagi declare`.
pub async fn declare(
    args: &DeclareArgs,
    config: &Path,
    out: &mut dyn Write,
) -> Result<i32, CommandError> {
    let request = DeclarationRequest {
        name: args.name.clone(),
        birth_date: args.birth_date,
        sex: args.sex.clone(),
        address: args.address.clone(),
        phone: args.phone.clone(),
        insurance_type: args.insurance_type.clone(),
        insurer_name: args.insurer_name.clone(),
        employer: args.employer.clone(),
        copay: args.copay,
    };
    let report = match target(config, args.dir.data_dir.as_deref()).await? {
        Target::Daemon(api) => {
            api.post::<_, DeclarationReport>(
                &format!("/v1/checks/{}/declaration", segment(&args.id)),
                &request,
            )
            .await?
        }
        Target::Direct(dir) => {
            let ledger = direct_ledger(dir)?;
            ops::declare(&ledger, &args.id, &request, now_jst().date_naive())
                .await
                .map_err(op_error)?
        }
    };
    writeln!(out, "申立書を記録しました（確認ID: {}）。", report.check.id).map_err(io_error)?;
    if !report.missing_ja.is_empty() {
        writeln!(out, "未記入の項目: {}", report.missing_ja.join("・")).map_err(io_error)?;
    }
    Ok(exit::OK)
}

/// Prints a check after a change, as `show` does.
fn print_changed(c: &CheckView, json: bool, out: &mut dyn Write) -> Result<i32, CommandError> {
    if json {
        let text = serde_json::to_string(c).map_err(|e| CommandError::new(e.to_string()))?;
        writeln!(out, "{text}").map_err(io_error)?;
    } else {
        show_text(c, out).map_err(io_error)?;
    }
    Ok(exit::OK)
}

/// `tsunagi amend`.
pub async fn amend(
    args: &AmendArgs,
    config: &Path,
    out: &mut dyn Write,
) -> Result<i32, CommandError> {
    let request = NumbersRequest {
        insurer: args.insurer.clone(),
        symbol: args.symbol.clone(),
        number: args.number.clone(),
        branch: args.branch.clone(),
        birth_date: args.birth_date,
    };
    let c = match target(config, args.dir.data_dir.as_deref()).await? {
        Target::Daemon(api) => {
            api.post::<_, CheckView>(
                &format!("/v1/checks/{}/numbers", segment(&args.id)),
                &request,
            )
            .await?
        }
        Target::Direct(dir) => {
            let ledger = direct_ledger(dir)?;
            ops::report_numbers(&ledger, &args.id, &request, now_jst())
                .await
                .map_err(op_error)?
        }
    };
    if !args.json {
        writeln!(
            out,
            "申告された保険の番号を記録しました。次の事後確認で照会します。"
        )
        .map_err(io_error)?;
    }
    print_changed(&c, args.json, out)
}

/// `tsunagi claimed`.
pub async fn claimed(
    args: &ClaimedArgs,
    config: &Path,
    out: &mut dyn Write,
) -> Result<i32, CommandError> {
    let c = match target(config, args.dir.data_dir.as_deref()).await? {
        Target::Daemon(api) => {
            api.post::<_, CheckView>(
                &format!("/v1/checks/{}/claimed", segment(&args.id)),
                &serde_json::json!({}),
            )
            .await?
        }
        Target::Direct(dir) => {
            let ledger = direct_ledger(dir)?;
            ops::mark_claimed(&ledger, &args.id, now_jst())
                .await
                .map_err(op_error)?
        }
    };
    if !args.json {
        writeln!(out, "請求済みにしました。請求の根拠はこれで確定です。").map_err(io_error)?;
    }
    print_changed(&c, args.json, out)
}

/// `tsunagi status`: from tsunagid while it runs, else asked here.
pub async fn status(
    args: &StatusArgs,
    config: &Path,
    out: &mut dyn Write,
) -> Result<i32, CommandError> {
    use crate::check::health::LineState;
    let (status, daemon) = match target(config, args.dir.data_dir.as_deref()).await? {
        Target::Daemon(api) => (api.get::<Status>("/v1/status").await?, true),
        Target::Direct(dir) => {
            let ledger = direct_ledger(dir)?;
            let repairs: Vec<_> = ledger
                .store()
                .health()
                .into_iter()
                .filter(|n| n.kind.is_damage())
                .collect();
            let today = now_jst().date_naive();
            let open = ops::list(&ledger, ListState::Pending, None, today)
                .await
                .map_err(op_error)?;
            let (client, _) = oqs_client(&args.oqs)?;
            let line = match client.probe().await {
                Ok(()) => LineState::Online,
                Err(e) if e.is_transient() => LineState::Offline,
                Err(_) => LineState::Degraded,
            };
            let (readers, readers_problem) = crate::card::reader::snapshot();
            (
                Status {
                    line,
                    queue: open.len(),
                    overdue: open.iter().filter(|c| c.overdue).count(),
                    last_pass: None,
                    readers,
                    readers_problem,
                    store_repairs: repairs,
                    updated_at: now_jst().to_rfc3339(),
                    pid: std::process::id(),
                    plugins: Vec::new(),
                    sync: None,
                    folders: None,
                },
                false,
            )
        }
    };
    if args.json {
        writeln!(
            out,
            "{}",
            json!({
                "line": status.line,
                "queue": status.queue,
                "overdue": status.overdue,
                "daemon": daemon,
                "readers": status.readers,
                "readers_problem": status.readers_problem,
                "store_repairs": status.store_repairs,
                "sync": status.sync,
                "folders": status.folders,
            })
        )
        .map_err(io_error)?;
    } else {
        writeln!(out, "回線: {}", status.line.label_ja()).map_err(io_error)?;
        writeln!(
            out,
            "事後確認待ち: {}件（うち期限超過 {}件）",
            status.queue, status.overdue
        )
        .map_err(io_error)?;
        for r in &status.readers {
            let card = if r.card_present {
                "カードあり"
            } else {
                "カードなし"
            };
            writeln!(out, "カードリーダー: {}（{card}）", r.name).map_err(io_error)?;
        }
        if let Some(p) = &status.readers_problem {
            writeln!(out, "カードリーダー: {p}").map_err(io_error)?;
        }
        for note in &status.store_repairs {
            writeln!(
                out,
                "保存データの修復: {}",
                crate::ledger::health_note_ja(note)
            )
            .map_err(io_error)?;
        }
        if let Some(sync) = &status.sync {
            for line in crate::cli::peer::status_lines_ja(sync) {
                writeln!(out, "{line}").map_err(io_error)?;
            }
        }
        if let Some(folders) = &status.folders {
            for line in folders.lines_ja() {
                writeln!(out, "{line}").map_err(io_error)?;
            }
        }
        if !daemon {
            eprintln!("（tsunagid は動いていません。事後確認は tsunagi reconcile で行えます）");
        }
    }
    Ok(exit::OK)
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
    config: &Path,
    out: &mut dyn Write,
) -> Result<i32, CommandError> {
    use crate::rules::calendar::parse_date;
    let bad = |m: String| CommandError::new(m);
    let date = |s: &Option<String>| -> Result<Option<NaiveDate>, CommandError> {
        s.as_deref()
            .map(|d| parse_date(d).map_err(|e| bad(e.message_ja())))
            .transpose()
    };
    let visit_date = match &args.visit_date {
        Some(text) => Some(crate::cli::parse_visit_date(text).map_err(bad)?),
        None => None,
    };
    let request = DocumentRequest {
        kind: args.kind.clone(),
        expires: date(&args.expires)?,
        visit_date,
        with_card: args.with_card,
        insurer: args.insurer.clone(),
        symbol: args.symbol.clone(),
        number: args.number.clone(),
        branch: args.branch.clone(),
        birth_date: date(&args.birth_date)?,
        facility: Some(args.facility.clone()),
        first_visit: args.first_visit,
        check_id: None,
    };
    let report = match target(config, args.dir.data_dir.as_deref()).await? {
        Target::Daemon(api) => {
            api.post::<_, DocumentReport>("/v1/documents", &request)
                .await?
        }
        Target::Direct(dir) => {
            let ledger = direct_ledger(dir)?;
            let facility = args
                .facility
                .parse()
                .map_err(|e: crate::domain::DomainError| bad(e.message_ja()))?;
            ops::record_document(
                &ledger,
                &request,
                facility,
                &super::settings::rule_settings(config)?,
                now_jst(),
            )
            .await
            .map_err(op_error)?
        }
    };
    if report.status != "recorded" {
        if args.json {
            writeln!(
                out,
                "{}",
                json!({"status": "refused", "reason_ja": report.reason_ja, "rule": report.rule})
            )
            .map_err(io_error)?;
        } else {
            writeln!(out, "この書類では受け付けられません: {}", report.reason_ja)
                .map_err(io_error)?;
            for r in &report.requirements_ja {
                writeln!(out, "・{r}").map_err(io_error)?;
            }
        }
        return Ok(exit::NOT_CONFIRMED);
    }
    if args.json {
        writeln!(
            out,
            "{}",
            json!({"status": "recorded", "check_id": report.check_id, "reason_ja": report.reason_ja})
        )
        .map_err(io_error)?;
    } else {
        writeln!(
            out,
            "{}を記録しました（確認ID: {}）。",
            report.kind_ja,
            report.check_id.as_deref().unwrap_or("")
        )
        .map_err(io_error)?;
        writeln!(out, "{}", report.reason_ja).map_err(io_error)?;
        for r in &report.requirements_ja {
            writeln!(out, "・{r}").map_err(io_error)?;
        }
    }
    Ok(exit::OK)
}
