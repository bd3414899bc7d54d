//! Staff helpers on the command line (Japanese): `tsunagi rules kakuninsho|exemption|document`
//! and `tsunagi report usage`.
//!
//! Flags are read as strings and parsed here so every bad value is refused with a Japanese
//! message ([`CliError::message_ja`]) rather than clap's English one. The question-driven
//! commands ask the rules for the next missing fact and, when interactive, put that one
//! question to staff; otherwise they say which flag is missing.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use chrono::NaiveDate;

use crate::domain::{DomainError, FacilityType, InsurerNumber};
use crate::report::data::UsageData;
use crate::report::{build_report, chart, parse_counts, render_table, ReportError};
use crate::rules::calendar::{date_ja, parse_date, DateError, YearMonth};
use crate::rules::claim::InsuranceType;
use crate::rules::documents::{
    document_validity, fallback_order_ja, DocumentError, DocumentKind, PresentedDocument,
    Requirement,
};
use crate::rules::exemption::{
    mandate_exemption, ExemptionError, ExemptionFacts, ExemptionQuestion, PlannedEnd, Practitioner,
};
use crate::rules::kakuninsho::{
    kakuninsho_eligibility, CertificateState, Issuance, KakuninshoError, KakuninshoFacts,
    KakuninshoQuestion, NewbornChoice, Registration,
};
use crate::rules::{RuleSettings, Step};

/// `tsunagi rules …`.
#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// 資格確認書が交付されるか.
    Kakuninsho(KakuninshoArgs),
    /// 柔整・あはき施術所のオンライン資格確認義務の免除.
    Exemption(ExemptionArgs),
    /// 提示された書類が受診日に有効か.
    Document(DocumentArgs),
}

/// `tsunagi report …`.
#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// マイナ保険証の利用率レポート.
    Usage(UsageArgs),
}

/// Flags of `rules kakuninsho` (unanswered questions are asked when interactive).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KakuninshoArgs {
    /// 判定日（既定: 今日）.
    #[arg(long)]
    pub date: Option<String>,
    /// 新生児の加入手続きか（はい/いいえ）.
    #[arg(long)]
    pub newborn: Option<String>,
    /// 保護者が資格確認書を希望するか（はい/いいえ）.
    #[arg(long)]
    pub guardian_wants_kakuninsho: Option<String>,
    /// カードの状態: none（なし）/ unregistered（登録なし）/ registered（登録済み）/ cancelled（解除）.
    #[arg(long)]
    pub card: Option<String>,
    /// 電子証明書の有効期限切れの日付（切れていなければ no）.
    #[arg(long)]
    pub certificate_expired: Option<String>,
    /// DV等で自己情報の閲覧を停止しているか（はい/いいえ）.
    #[arg(long)]
    pub viewing_blocked: Option<String>,
    /// 後期高齢者医療の被保険者か（はい/いいえ）.
    #[arg(long)]
    pub late_elderly: Option<String>,
    /// 生年月日.
    #[arg(long)]
    pub birth: Option<String>,
    /// マイナ保険証での受診が困難か（はい/いいえ）.
    #[arg(long)]
    pub difficult: Option<String>,
    /// カードの紛失・更新中か（はい/いいえ）.
    #[arg(long)]
    pub lost: Option<String>,
}

/// Flags of `rules exemption`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ExemptionArgs {
    /// 施術所の種類: judo（柔整）/ ahaki（あはき）.
    #[arg(long)]
    pub facility: Option<String>,
    /// 常勤施術者の生年月日（人数分。視覚障害は 1950-01-01:視覚）.
    #[arg(long = "practitioner")]
    pub practitioners: Vec<String>,
    /// 廃止・休止の日付（未定 / none）.
    #[arg(long)]
    pub closure: Option<String>,
    /// 受領委任の取扱いをやめる日付（未定 / none）.
    #[arg(long)]
    pub end_juryo_inin: Option<String>,
}

/// Flags of `rules document`.
#[derive(Debug, Clone, clap::Args)]
pub struct DocumentArgs {
    /// 書類: myna / portal / oshirase / kakuninsho / hokensho.
    pub kind: String,
    /// 有効期限（マイナ保険証は電子証明書の有効期限）.
    #[arg(long)]
    pub expires: Option<String>,
    /// 受診日（既定: 今日）.
    #[arg(long)]
    pub visit: Option<String>,
    /// マイナンバーカードもあわせて提示されたか.
    #[arg(long)]
    pub with_card: bool,
    /// 保険者番号（保険の種類の判定に使う）.
    #[arg(long)]
    pub insurer: Option<String>,
}

/// Flags of `report usage`.
#[derive(Debug, Clone, clap::Args)]
pub struct UsageArgs {
    /// 対象月 YYYY-MM（既定: 先月）.
    #[arg(long)]
    pub month: Option<String>,
    /// 自院の件数ファイル（年-月,マイナ保険証件数,オンライン資格確認件数）. Without it, the
    /// counts come from the clinic's recorded checks (`--data-dir`).
    #[arg(long)]
    pub counts: Option<PathBuf>,
    /// The ledger of recorded checks (the counts of each month, kept after retention too).
    #[arg(long, env = "TSUNAGI_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// 都道府県（東京都 / 東京 / 13）.
    #[arg(long)]
    pub prefecture: String,
    /// 施設種別: medical / dental / pharmacy / judo / ahaki / home-nursing.
    #[arg(long, default_value = "medical")]
    pub facility: String,
    /// 病院（医科のとき、診療所ではなく病院と比べる）.
    #[arg(long)]
    pub hospital: bool,
    /// グラフを書き出すPNGファイル.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// 日本語フォント（既定: IPAPゴシック）.
    #[arg(long, default_value = chart::DEFAULT_FONT)]
    pub font: PathBuf,
}

/// A command that could not run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A date or month.
    #[error(transparent)]
    Date(#[from] DateError),
    /// A document kind or its facts.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// An insurer number or facility type.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Contradictory 資格確認書 facts.
    #[error(transparent)]
    Kakuninsho(#[from] KakuninshoError),
    /// Bad exemption facts.
    #[error(transparent)]
    Exemption(#[from] ExemptionError),
    /// The report.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// An answer that means nothing.
    #[error("cannot understand {answer:?} for {what}")]
    BadAnswer {
        /// What was asked (Japanese).
        what: String,
        /// What was typed.
        answer: String,
        /// The accepted answers (Japanese).
        expected: String,
    },
    /// A question left unanswered in non-interactive use (or at end of input).
    #[error("missing answer for --{flag}")]
    MissingAnswer {
        /// The question (Japanese).
        question: String,
        /// The flag that answers it.
        flag: String,
    },
    /// The ledger could not be read.
    #[error("ledger: {message}")]
    Ledger {
        /// The message for staff.
        message: String,
    },
    /// No source of counts was given.
    #[error("no counts: neither --counts nor --data-dir")]
    NoCounts,
    /// The counts file cannot be read.
    #[error("cannot read {path}: {source}")]
    CountsFile {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the output failed.
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    /// The message shown to staff.
    pub fn message_ja(&self) -> String {
        match self {
            CliError::Date(e) => e.message_ja(),
            CliError::Document(e) => e.message_ja(),
            CliError::Domain(e) => e.message_ja(),
            CliError::Kakuninsho(e) => e.message_ja(),
            CliError::Exemption(e) => e.message_ja(),
            CliError::Report(e) => e.message_ja(),
            CliError::BadAnswer {
                what,
                answer,
                expected,
            } => {
                format!("{what}への回答「{answer}」が分かりません。{expected}で答えてください。")
            }
            CliError::MissingAnswer { question, flag } => {
                format!("次の質問に答えが必要です: {question}（--{flag} で指定できます）")
            }
            CliError::Ledger { message } => message.clone(),
            CliError::NoCounts => "件数がありません。--data-dir（記録した確認）か --counts（件数ファイル）を指定してください。".into(),
            CliError::CountsFile { path, .. } => format!(
                "件数ファイル {} を読めません。パスを確認してください。",
                path.display()
            ),
            CliError::Io(_) => "結果を書き出せませんでした。出力先（画面・ファイル）を確認してください。".into(),
        }
    }
}

const YES_NO: &str = "はい/いいえ（yes/no）";

fn parse_yes_no(what: &str, s: &str) -> Result<bool, CliError> {
    match s.trim().to_lowercase().as_str() {
        "はい" | "y" | "yes" | "true" | "1" | "有" | "あり" => Ok(true),
        "いいえ" | "n" | "no" | "false" | "0" | "無" | "なし" => Ok(false),
        _ => Err(CliError::BadAnswer {
            what: what.to_string(),
            answer: s.trim().to_string(),
            expected: YES_NO.to_string(),
        }),
    }
}

fn parse_registration(what: &str, s: &str) -> Result<Registration, CliError> {
    match s.trim() {
        "1" | "none" | "なし" | "カードなし" => Ok(Registration::NoCard),
        "2" | "unregistered" | "登録なし" | "未登録" => Ok(Registration::NotRegistered),
        "3" | "registered" | "登録済み" | "登録" => Ok(Registration::Registered),
        "4" | "cancelled" | "解除" => Ok(Registration::CancelledByRequest),
        other => Err(CliError::BadAnswer {
            what: what.to_string(),
            answer: other.to_string(),
            expected: "1〜4 または none / unregistered / registered / cancelled".to_string(),
        }),
    }
}

fn is_none_word(s: &str) -> bool {
    matches!(
        s.trim().to_lowercase().as_str(),
        "" | "no" | "none" | "いいえ" | "なし" | "切れていない"
    )
}

fn parse_certificate(s: &str) -> Result<CertificateState, CliError> {
    if is_none_word(s) {
        return Ok(CertificateState::Valid);
    }
    Ok(CertificateState::ExpiredOn(parse_date(s)?))
}

fn parse_planned_end(s: &str) -> Result<PlannedEnd, CliError> {
    let t = s.trim();
    if is_none_word(t) {
        return Ok(PlannedEnd::None);
    }
    if matches!(t, "未定" | "undecided" | "予定のみ") {
        return Ok(PlannedEnd::WithoutDate);
    }
    Ok(PlannedEnd::On(parse_date(t)?))
}

fn parse_practitioner(s: &str) -> Result<Practitioner, CliError> {
    let (date, mark) = s.trim().split_once(':').unwrap_or((s.trim(), ""));
    let visually_impaired = match mark.trim() {
        "" => false,
        "視覚" | "視覚障害" | "blind" | "vi" => true,
        other => {
            return Err(CliError::BadAnswer {
                what: "施術者".to_string(),
                answer: other.to_string(),
                expected: "生年月日のあとに :視覚（視覚障害のとき）".to_string(),
            })
        }
    };
    Ok(Practitioner {
        birth_date: parse_date(date)?,
        visually_impaired,
    })
}

fn parse_practitioners(s: &str) -> Result<Vec<Practitioner>, CliError> {
    s.split([',', '、'])
        .filter(|p| !p.trim().is_empty())
        .map(parse_practitioner)
        .collect()
}

/// Asks one question; re-asks after an answer it cannot use; end of input = missing answer.
fn ask<T>(
    question: &str,
    flag: &str,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
    interactive: bool,
    parse: impl Fn(&str) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let missing = || CliError::MissingAnswer {
        question: question.to_string(),
        flag: flag.to_string(),
    };
    if !interactive {
        return Err(missing());
    }
    loop {
        write!(out, "{question}\n> ")?;
        out.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            return Err(missing());
        }
        match parse(line.trim()) {
            Ok(v) => return Ok(v),
            Err(e) => writeln!(out, "{}", e.message_ja())?,
        }
    }
}

fn opt<T>(
    v: &Option<String>,
    parse: impl Fn(&str) -> Result<T, CliError>,
) -> Result<Option<T>, CliError> {
    v.as_deref().map(parse).transpose()
}

fn run_kakuninsho(
    a: &KakuninshoArgs,
    today: NaiveDate,
    settings: &RuleSettings,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
    interactive: bool,
) -> Result<i32, CliError> {
    use KakuninshoQuestion as Q;
    let on = opt(&a.date, |s| Ok(parse_date(s)?))?.unwrap_or(today);
    let yn = |q: Q| move |s: &str| parse_yes_no(q.text_ja(), s);
    let mut f = KakuninshoFacts {
        newborn_enrolment: opt(&a.newborn, yn(Q::NewbornEnrolment))?,
        newborn_choice: opt(&a.guardian_wants_kakuninsho, yn(Q::NewbornChoice))?.map(choice),
        registration: opt(&a.card, |s| {
            parse_registration(Q::Registration.text_ja(), s)
        })?,
        certificate: opt(&a.certificate_expired, parse_certificate)?,
        viewing_blocked: opt(&a.viewing_blocked, yn(Q::ViewingBlocked))?,
        late_elderly: opt(&a.late_elderly, yn(Q::LateElderly))?,
        birth_date: opt(&a.birth, |s| Ok(parse_date(s)?))?,
        difficult_to_use: opt(&a.difficult, yn(Q::DifficultToUse))?,
        lost_or_renewing: opt(&a.lost, yn(Q::LostOrRenewing))?,
    };
    fn choice(wants: bool) -> NewbornChoice {
        if wants {
            NewbornChoice::Kakuninsho
        } else {
            NewbornChoice::RegisterCardLater
        }
    }
    let outcome = loop {
        match kakuninsho_eligibility(&f, on, settings)? {
            Step::Decided(o) => break o,
            Step::Ask(q) => {
                let t = q.text_ja();
                match q {
                    Q::NewbornEnrolment => {
                        f.newborn_enrolment =
                            Some(ask(t, "newborn", out, input, interactive, yn(q))?)
                    }
                    Q::NewbornChoice => {
                        f.newborn_choice = Some(choice(ask(
                            t,
                            "guardian-wants-kakuninsho",
                            out,
                            input,
                            interactive,
                            yn(q),
                        )?))
                    }
                    Q::Registration => {
                        f.registration = Some(ask(t, "card", out, input, interactive, |s| {
                            parse_registration(t, s)
                        })?)
                    }
                    Q::Certificate => {
                        f.certificate = Some(ask(
                            t,
                            "certificate-expired",
                            out,
                            input,
                            interactive,
                            parse_certificate,
                        )?)
                    }
                    Q::ViewingBlocked => {
                        f.viewing_blocked =
                            Some(ask(t, "viewing-blocked", out, input, interactive, yn(q))?)
                    }
                    Q::LateElderly => {
                        f.late_elderly =
                            Some(ask(t, "late-elderly", out, input, interactive, yn(q))?)
                    }
                    Q::BirthDate => {
                        f.birth_date = Some(ask(t, "birth", out, input, interactive, |s| {
                            Ok(parse_date(s)?)
                        })?)
                    }
                    Q::DifficultToUse => {
                        f.difficult_to_use =
                            Some(ask(t, "difficult", out, input, interactive, yn(q))?)
                    }
                    Q::LostOrRenewing => {
                        f.lost_or_renewing = Some(ask(t, "lost", out, input, interactive, yn(q))?)
                    }
                }
            }
        }
    };
    writeln!(out, "資格確認書: {}", outcome.issuance.label_ja())?;
    writeln!(out, "理由: {}", outcome.reason_ja)?;
    writeln!(
        out,
        "根拠: {}（判定日 {}）",
        outcome.rule.source_ja(),
        date_ja(on)
    )?;
    Ok(if outcome.issuance == Issuance::NotIssued {
        1
    } else {
        0
    })
}

fn run_exemption(
    a: &ExemptionArgs,
    settings: &RuleSettings,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
    interactive: bool,
) -> Result<i32, CliError> {
    let mut f = ExemptionFacts {
        facility: opt(&a.facility, |s| Ok(s.trim().parse::<FacilityType>()?))?,
        practitioners: if a.practitioners.is_empty() {
            None
        } else {
            Some(
                a.practitioners
                    .iter()
                    .map(|p| parse_practitioner(p))
                    .collect::<Result<_, _>>()?,
            )
        },
        closure: opt(&a.closure, parse_planned_end)?,
        end_of_juryo_inin: opt(&a.end_juryo_inin, parse_planned_end)?,
    };
    let outcome = loop {
        match mandate_exemption(&f, settings)? {
            Step::Decided(o) => break o,
            Step::Ask(q) => {
                let t = q.text_ja();
                match q {
                    ExemptionQuestion::Facility => {
                        f.facility = Some(ask(t, "facility", out, input, interactive, |s| {
                            Ok(s.trim().parse::<FacilityType>()?)
                        })?)
                    }
                    ExemptionQuestion::Practitioners => {
                        f.practitioners = Some(ask(
                            t,
                            "practitioner",
                            out,
                            input,
                            interactive,
                            parse_practitioners,
                        )?)
                    }
                    ExemptionQuestion::Closure => {
                        f.closure = Some(ask(
                            t,
                            "closure",
                            out,
                            input,
                            interactive,
                            parse_planned_end,
                        )?)
                    }
                    ExemptionQuestion::EndOfJuryoInin => {
                        f.end_of_juryo_inin = Some(ask(
                            t,
                            "end-juryo-inin",
                            out,
                            input,
                            interactive,
                            parse_planned_end,
                        )?)
                    }
                }
            }
        }
    };
    let head = if outcome.reason.is_some() {
        "オンライン資格確認の義務: 免除されます（やむを得ない事由に該当）"
    } else {
        "オンライン資格確認の義務: 免除されません"
    };
    writeln!(out, "{head}")?;
    for line in &outcome.explanation_ja {
        writeln!(out, "・{line}")?;
    }
    writeln!(out, "根拠: {}", outcome.rule.source_ja())?;
    Ok(if outcome.reason.is_some() { 0 } else { 1 })
}

fn run_document(
    a: &DocumentArgs,
    today: NaiveDate,
    settings: &RuleSettings,
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    let kind: DocumentKind = a.kind.parse()?;
    let visit = opt(&a.visit, |s| Ok(parse_date(s)?))?.unwrap_or(today);
    let expires = opt(&a.expires, |s| Ok(parse_date(s)?))?;
    let insurance = match &a.insurer {
        Some(n) => InsuranceType::from_insurer(&InsurerNumber::parse(n)?),
        None => InsuranceType::Unknown,
    };
    let doc = PresentedDocument {
        kind,
        expires,
        with_card: a.with_card,
        insurance,
    };
    let v = document_validity(&doc, visit, settings)?;
    let head = if v.acceptable {
        "受け付けられます"
    } else {
        "受け付けられません"
    };
    // An old card past its last day is named as expired, so the line never reads as if the
    // card itself were still valid (R11).
    let expired_old_card = kind == DocumentKind::OldHokensho
        && expires.is_some_and(|e| e.min(settings.old_hokensho_last_day) < visit);
    let label = if expired_old_card {
        "有効期限切れの健康保険証"
    } else {
        kind.label_ja()
    };
    writeln!(out, "{label}（受診日 {}）: {head}", date_ja(visit))?;
    writeln!(out, "理由: {}", v.reason_ja)?;
    if !v.requirements.is_empty() {
        writeln!(out, "対応:")?;
        for r in &v.requirements {
            writeln!(out, "・{}", r.label_ja())?;
        }
    }
    if v.requirements.contains(&Requirement::FallBack) {
        writeln!(
            out,
            "・確認の順: {}。負担割合は通常どおり（3割・未就学児2割・70歳以上は直近の割合）で、10割にはしません。",
            fallback_order_ja(visit, settings)
        )?;
    }
    writeln!(out, "根拠: {}", v.rule.source_ja())?;
    Ok(if v.acceptable { 0 } else { 1 })
}

/// Runs a `rules` command. Exit code 0 = eligible/acceptable, 1 = not; errors → `Err`.
pub fn run_rules(
    cmd: &RulesCommand,
    today: NaiveDate,
    settings: &RuleSettings,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
    interactive: bool,
) -> Result<i32, CliError> {
    match cmd {
        RulesCommand::Kakuninsho(a) => run_kakuninsho(a, today, settings, out, input, interactive),
        RulesCommand::Exemption(a) => run_exemption(a, settings, out, input, interactive),
        RulesCommand::Document(a) => run_document(a, today, settings, out),
    }
}

/// The clinic's monthly counts from its recorded checks: マイナ保険証 (card) checks and all
/// online checks, live months from the index's counts, ended months from their kept counts.
fn counts_from_ledger(
    dir: &std::path::Path,
) -> Result<Vec<(YearMonth, crate::rules::incentive::UsageCounts)>, CliError> {
    use crate::ledger::tags;
    let fail = |e: crate::ledger::LedgerError| CliError::Ledger {
        message: e.message_ja(),
    };
    let ledger = crate::ledger::Ledger::open(dir).map_err(fail)?;
    // A month carried over (its open checks kept past retention) has both kept counts for
    // what left and live counts for what stays: the two are added.
    let mut sums: std::collections::BTreeMap<tsunagi_sync::Month, (u64, u64)> =
        std::collections::BTreeMap::new();
    let mut push = |month: tsunagi_sync::Month, card: u64, total: u64| -> Result<(), CliError> {
        let e = sums.entry(month).or_default();
        e.0 += card;
        e.1 += total;
        Ok(())
    };
    for (month, counts) in &ledger.store().aggregates() {
        let n = |k: &str| {
            counts
                .get(k)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        push(*month, n("by_card"), n("checks"))?;
    }
    for month in ledger.store().months().map_err(|e| fail(e.into()))? {
        let counts = ledger.counts(month).map_err(fail)?;
        let by_card = counts.tags[tags::BY_CARD.trailing_zeros() as usize];
        push(month, by_card, counts.checks)?;
    }
    let mut out = Vec::new();
    for (month, (card, total)) in sums {
        let ym = YearMonth::parse(&month.to_string())?;
        out.push((ym, crate::rules::incentive::UsageCounts { card, total }));
    }
    Ok(out)
}

/// Runs a `report` command. Exit code 0 on success; errors → `Err`.
pub fn run_report(
    cmd: &ReportCommand,
    today: NaiveDate,
    out: &mut dyn Write,
) -> Result<i32, CliError> {
    match cmd {
        ReportCommand::Usage(a) => {
            let month = match &a.month {
                Some(m) => YearMonth::parse(m)?,
                None => YearMonth::of(today).plus(-1),
            };
            let facility: FacilityType = a.facility.trim().parse()?;
            let counts = match (&a.counts, &a.data_dir) {
                (Some(file), _) => {
                    let text =
                        std::fs::read_to_string(file).map_err(|source| CliError::CountsFile {
                            path: file.clone(),
                            source,
                        })?;
                    parse_counts(&text)?
                }
                (None, Some(dir)) => counts_from_ledger(dir)?,
                (None, None) => return Err(CliError::NoCounts),
            };
            let data = UsageData::october_2024().map_err(ReportError::from)?;
            let report = build_report(&data, &counts, month, facility, a.hospital, &a.prefecture)?;
            write!(out, "{}", render_table(&report))?;
            if let Some(png) = &a.png {
                chart::render_png(&report, png, &a.font)?;
                writeln!(out, "グラフを {} に保存しました。", png.display())?;
            }
            Ok(0)
        }
    }
}
