//! The レセプト formatter (医科・歯科・調剤, and the base of 訪問看護).
//!
//! It writes the claim fields from the claim basis the host decided, in the order the ministry
//! gives (current numbers, then the old qualification, then 資格不詳): 保険者番号, 記号, 番号,
//! 枝番, and for 不詳 the 摘要欄 text and the payer. A 不詳 claim's numbers are the digit 7 to
//! each field's length (`77777779` where receipt software checks the last digit); the host fills
//! them, and this formatter refuses (`failure::incomplete`) a 不詳 claim whose fields are not
//! 7-filled rather than print a receipt the payer would bounce, or one mixed up with the
//! 9-filled disaster claims.
//!
//! Before a basis is decided it shows the numbers it has (the confirmed answer, else those the
//! facility holds, marked unconfirmed), so staff can work, and it says what to do next.
#![forbid(unsafe_code)]

use crate::facts::{Facts, Source};
use crate::notes::{action, warning, MomentCodes};
use crate::text::{
    answer_ja, copay_ja, date_ja, date_short_ja, digits_kana, document_ja, identity_ja,
    is_seven_filled, non_empty, numbers_line,
};
use crate::types::{
    Addition, AnswerStatus, Basis, Check, Failure, Field, Identity, Moment, NextAction, Output,
    Severity, Warning,
};
use crate::Profile;

/// The codes a receipt plugin reports at each moment.
pub const MOMENTS: MomentCodes = MomentCodes {
    captured: &[
        "captured-offline",
        "not-confirmed",
        "qualification-invalid",
        "newer-qualification",
        "qualification-not-found",
        "multiple-qualifications",
        "card-refused",
        "follow-up",
        "ask-new-numbers",
    ],
    resolved: &[
        "old-qualification",
        "declaration-required",
        "take-declaration",
        "ask-numbers",
        "ask-new-numbers",
    ],
};

/// What a facility adds to the receipt formatter's own notes (施設ごとの追記).
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// Warnings appended after the formatter's own.
    pub warnings: Vec<Warning>,
    /// A next action that replaces the formatter's, when set.
    pub next_action: Option<NextAction>,
}

/// The check formatted for a receipt (`format`).
pub fn format(profile: &Profile, check: &Check) -> Result<Output, Failure> {
    format_with(profile, check, |_, _| Extra::default())
}

/// The check formatted for a receipt, with what the facility adds (`extra` sees the facts and
/// the formatter's own next action) worked in before the display and read-aloud are written.
pub fn format_with(
    profile: &Profile,
    check: &Check,
    extra: impl Fn(&Facts<'_>, Option<&NextAction>) -> Extra,
) -> Result<Output, Failure> {
    profile.ensure_serves(check)?;
    let facts = Facts::of(check);
    ensure_unknown_is_seven_filled(&facts)?;
    let mut warnings = warnings(profile, &facts);
    let mut next_action = next_action(profile, &facts);
    let added = extra(&facts, next_action.as_ref());
    warnings.extend(added.warnings);
    if added.next_action.is_some() {
        next_action = added.next_action;
    }
    Ok(Output {
        claim_fields: claim_fields(&facts),
        display: display(profile, &facts, next_action.as_ref()),
        read_aloud: read_aloud(&facts, next_action.as_ref()),
        warnings,
        next_action,
    })
}

/// What a receipt plugin adds at a moment (`on-moment`).
pub fn on_moment(profile: &Profile, at: Moment, check: &Check) -> Result<Addition, Failure> {
    let output = format(profile, check)?;
    Ok(MOMENTS.select(at, &output.warnings, output.next_action.as_ref()))
}

fn ensure_unknown_is_seven_filled(facts: &Facts<'_>) -> Result<(), Failure> {
    let Some(claim) = facts.claim() else {
        return Ok(());
    };
    if claim.basis != Basis::Unknown {
        return Ok(());
    }
    let n = &claim.numbers;
    let symbol_ok = match non_empty(n.symbol.as_deref()) {
        Some(symbol) => is_seven_filled(symbol, false),
        None => true,
    };
    if is_seven_filled(&n.insurer, true) && symbol_ok && is_seven_filled(&n.number, false) {
        return Ok(());
    }
    Err(Failure::Incomplete(
        "資格不詳の請求ですが、保険者番号・記号・番号が7で埋められていません。\
         このままではレセプトを作れません。請求の根拠を決め直してください。"
            .to_string(),
    ))
}

pub(crate) fn field(key: &str, label: &str, value: impl Into<String>) -> Field {
    Field {
        key: key.to_string(),
        label: label.to_string(),
        value: value.into(),
    }
}

/// The receipt's fields, in form order.
fn claim_fields(facts: &Facts<'_>) -> Vec<Field> {
    let mut fields = Vec::new();
    match facts.numbers {
        Some((n, _)) => {
            fields.push(field("insurer-number", "保険者番号", n.insurer.trim()));
            fields.push(field(
                "symbol",
                "記号",
                non_empty(n.symbol.as_deref()).unwrap_or_default(),
            ));
            fields.push(field("number", "番号", n.number.trim()));
            fields.push(field(
                "branch",
                "枝番",
                non_empty(n.branch.as_deref()).unwrap_or_default(),
            ));
        }
        None => {
            for (key, label) in [
                ("insurer-number", "保険者番号"),
                ("symbol", "記号"),
                ("number", "番号"),
                ("branch", "枝番"),
            ] {
                fields.push(field(key, label, ""));
            }
        }
    }
    fields.push(field("basis", "請求区分", basis_ja(facts)));
    fields.push(field(
        "copay",
        "負担割合",
        facts.copay_tenths().map(copay_ja).unwrap_or_default(),
    ));
    if let Some(claim) = facts.claim().filter(|c| c.basis == Basis::Unknown) {
        fields.push(field("remarks", "摘要欄", remarks(facts, claim)));
        fields.push(field(
            "payer",
            "請求先",
            non_empty(claim.payer.as_deref()).unwrap_or("支払基金または国保連（どちらでも可）"),
        ));
    }
    fields
}

fn basis_ja(facts: &Facts<'_>) -> &'static str {
    match facts.numbers.map(|(_, source)| source) {
        Some(Source::Claim(Basis::Current)) | Some(Source::Online) => "現資格",
        Some(Source::Claim(Basis::Old)) => "旧資格",
        Some(Source::Claim(Basis::Unknown)) => "資格不詳",
        Some(Source::Held) | None => "未確定",
    }
}

/// The 摘要欄 text: the host's, else what the 申立書 gives (address, employer, contact).
fn remarks(facts: &Facts<'_>, claim: &crate::types::Claim) -> String {
    if let Some(text) = non_empty(claim.remarks.as_deref()) {
        return text.to_string();
    }
    let Some(d) = facts.check.declaration.as_ref() else {
        return String::new();
    };
    let parts: Vec<String> = [
        ("住所", d.address.as_deref()),
        ("事業所", d.employer.as_deref()),
        ("連絡先", d.phone.as_deref()),
    ]
    .into_iter()
    .filter_map(|(label, value)| non_empty(value).map(|v| format!("{label} {v}")))
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("被保険者資格申立書による。{}", parts.join("、"))
    }
}

/// The result in a few words, for the first display line.
pub(crate) fn result_ja(facts: &Facts<'_>) -> String {
    let check = facts.check;
    let shown = check.document.as_deref().map(document_ja);
    match (check.answer, &shown) {
        (Some(AnswerStatus::Confirmed), Some(doc)) if check.identity == Identity::Document => {
            format!("有効（{doc}を提示・オンラインで確認済み）")
        }
        (Some(answer), _) => {
            let how = if check.identity == Identity::Document {
                shown.clone().unwrap_or_else(|| "書類の提示".to_string())
            } else {
                identity_ja(check.identity).to_string()
            };
            format!("{}（{how}）", answer_ja(answer, facts.newer_exists))
        }
        (None, Some(doc)) if facts.confirmed => format!("{doc}で確認"),
        (None, _) if check.captured_offline => "未確認（オフライン受付）".to_string(),
        (None, Some(doc)) => format!("未確認（{doc}を提示）"),
        (None, None) => "未確認".to_string(),
    }
}

/// The screen's first lines, the same on every form: the day (and 初診・初検), the result,
/// the insurer.
pub(crate) fn display_head(profile: &Profile, facts: &Facts<'_>) -> Vec<String> {
    let check = facts.check;
    let w = &profile.words;
    let first = if check.first_visit {
        format!("（{}）", w.first)
    } else {
        String::new()
    };
    let mut lines = vec![
        format!("{}: {}{first}", w.day, date_ja(&check.visit_date)),
        format!("結果: {}", result_ja(facts)),
    ];
    if let Some(name) = facts.insurer_name() {
        lines.push(format!("保険者: {name}"));
    }
    lines
}

/// The screen's last lines, the same on every form: the 事後確認 deadline while the check
/// still needs confirming (`open`), then what to do.
pub(crate) fn display_tail(
    lines: &mut Vec<String>,
    check: &Check,
    open: bool,
    next: Option<&NextAction>,
) {
    if let Some(due) = check.due.as_deref().filter(|_| open) {
        let late = if check.overdue { "・期限切れ" } else { "" };
        lines.push(format!("事後確認の期限: {}{late}", date_ja(due)));
    }
    lines.push(match next {
        Some(a) => format!("対応: {}", a.label),
        None => "対応: なし".to_string(),
    });
}

/// The end of what is read aloud, the same on every form: an overdue deadline, then what to
/// do.
pub(crate) fn read_aloud_tail(parts: &mut Vec<String>, check: &Check, next: Option<&NextAction>) {
    if check.overdue {
        if let Some(due) = check.due.as_deref() {
            parts.push(format!(
                "事後確認の期限、{}を過ぎています。",
                date_short_ja(due)
            ));
        }
    }
    if let Some(a) = next {
        parts.push(a.label.clone());
    }
}

fn display(profile: &Profile, facts: &Facts<'_>, next: Option<&NextAction>) -> Vec<String> {
    let mut lines = display_head(profile, facts);
    match facts.numbers {
        Some((n, Source::Held)) => {
            lines.push(format!("番号: {}（以前の情報・未確認）", numbers_line(n)))
        }
        Some((n, _)) => lines.push(format!("番号: {}", numbers_line(n))),
        None => lines.push("番号: まだ分かりません".to_string()),
    }
    let claim_line = match facts.claim() {
        Some(c) => {
            let basis = match c.basis {
                Basis::Current => "現資格で請求".to_string(),
                Basis::Old => "旧資格で請求（資格を失う前の番号）".to_string(),
                Basis::Unknown => format!(
                    "資格不詳で請求（番号欄は7で埋める・請求先 {}）",
                    non_empty(c.payer.as_deref()).unwrap_or("支払基金または国保連")
                ),
            };
            let fixed = if c.final_ { "・確定" } else { "" };
            format!("請求: {basis}{fixed}")
        }
        None => "請求: 未確定".to_string(),
    };
    lines.push(claim_line);
    if let Some(summary) = facts.claim().and_then(|c| non_empty(Some(&c.summary))) {
        lines.push(format!("　{summary}"));
    }
    lines.push(match facts.copay_tenths() {
        Some(t) if facts.open => format!("窓口負担: {}（通常の負担割合）を受け取る", copay_ja(t)),
        Some(t) => format!("窓口負担: {}を受け取る", copay_ja(t)),
        None => "窓口負担: 通常の負担割合を受け取る（割合は確認中）".to_string(),
    });
    display_tail(&mut lines, facts.check, facts.open, next);
    lines
}

/// The result as the first sentence read aloud.
pub(crate) fn result_sentence(facts: &Facts<'_>) -> String {
    let check = facts.check;
    let shown = check.document.as_deref().map(document_ja);
    match check.answer {
        Some(AnswerStatus::Confirmed) => "資格は有効です。".to_string(),
        Some(AnswerStatus::Invalid) if facts.newer_exists => {
            "資格は無効で、新しい資格があります。".to_string()
        }
        Some(AnswerStatus::Invalid) => "資格は無効です。".to_string(),
        Some(AnswerStatus::NotFound) => "資格情報が見つかりません。".to_string(),
        Some(AnswerStatus::Multiple) => "資格が複数見つかりました。".to_string(),
        Some(AnswerStatus::CardRefused) => "カードが使えません。".to_string(),
        None => match &shown {
            Some(doc) if facts.confirmed => format!("{doc}で確認しました。"),
            _ if check.captured_offline => {
                "資格確認システムにつながらないため、オフラインで受け付けました。".to_string()
            }
            _ => "資格はまだ確認できていません。".to_string(),
        },
    }
}

fn read_aloud(facts: &Facts<'_>, next: Option<&NextAction>) -> String {
    let check = facts.check;
    let mut parts: Vec<String> = Vec::new();
    parts.push(result_sentence(facts));
    match facts.basis() {
        Some(Basis::Old) => parts.push("旧資格で請求します。".to_string()),
        Some(Basis::Unknown) => parts.push("資格不詳で請求します。".to_string()),
        _ => {}
    }
    parts.push(match facts.copay_tenths() {
        Some(t) if facts.open => format!("負担割合は、通常どおり{}です。", copay_ja(t)),
        Some(t) => format!("負担割合は{}です。", copay_ja(t)),
        None => "負担割合は、通常の割合で受け付けます。".to_string(),
    });
    // Digits help where staff must check the numbers with the patient: held or old numbers.
    let whose = match facts.numbers {
        Some((n, Source::Held)) => Some((n, "控えの")),
        Some((n, Source::Claim(Basis::Old))) => Some((n, "旧資格の")),
        _ => None,
    };
    if let Some((n, whose)) = whose.filter(|(n, _)| !n.insurer.trim().is_empty()) {
        parts.push(format!(
            "{whose}保険者番号は、{}です。",
            digits_kana(n.insurer.trim())
        ));
    }
    read_aloud_tail(&mut parts, check, next);
    parts.concat()
}

fn warnings(profile: &Profile, facts: &Facts<'_>) -> Vec<Warning> {
    let check = facts.check;
    let mut out = Vec::new();
    if check.overdue {
        let due = check.due.as_deref().map(date_ja).unwrap_or_default();
        out.push(warning(
            "follow-up-overdue",
            Severity::Warning,
            format!("事後確認の期限（{due}）を過ぎています。すぐに資格を確認してください。"),
        ));
    }
    if facts.open && check.captured_offline && check.answer.is_none() {
        out.push(warning(
            "captured-offline",
            Severity::Caution,
            format!(
                "資格確認システムにつながらない間に受け付けました。資格はまだ確認できていません。{}は通常の負担割合で行い、後で事後確認します。",
                profile.words.act
            ),
        ));
    } else if facts.open && check.answer.is_none() {
        out.push(warning(
            "not-confirmed",
            Severity::Caution,
            "資格はまだオンラインで確認していません。",
        ));
    }
    out.extend(answer_warning(facts));
    if let Some((_, Source::Held)) = facts.numbers {
        out.push(warning(
            "provisional-numbers",
            Severity::Info,
            "請求欄の番号は以前の情報です。確認が済むまで確定しません。",
        ));
    }
    match facts.claim() {
        Some(c) if c.basis == Basis::Unknown => {
            out.push(match check.declaration {
                Some(_) => warning(
                    "declaration-required",
                    Severity::Caution,
                    "資格不詳で請求します。被保険者資格申立書を請求の根拠として保管してください。",
                ),
                None => warning(
                    "declaration-required",
                    Severity::Warning,
                    "資格不詳で請求するには被保険者資格申立書が必要です。まだ受け取っていません。",
                ),
            });
        }
        Some(c) if c.basis == Basis::Old && !c.final_ => out.push(warning(
            "old-qualification",
            Severity::Info,
            "旧資格（資格を失う前の番号）で請求します。新しい番号が分かれば現資格の請求に切り替えます。",
        )),
        _ => {}
    }
    out.extend(document_warning(facts));
    out
}

/// What the qualification system's answer means for staff, when it is not simply 有効.
pub(crate) fn answer_warning(facts: &Facts<'_>) -> Option<Warning> {
    let answer = facts.check.answer?;
    Some(match answer {
        AnswerStatus::Confirmed => return None,
        AnswerStatus::Invalid if facts.newer_exists => warning(
            "newer-qualification",
            Severity::Caution,
            "新しい資格があります。新しい保険の番号を患者さんに確認してください。",
        ),
        AnswerStatus::Invalid => warning(
            "qualification-invalid",
            Severity::Caution,
            "資格（無効）でした。保険が変わっていないか患者さんに確認してください。",
        ),
        AnswerStatus::NotFound => warning(
            "qualification-not-found",
            Severity::Caution,
            "資格情報が見つかりませんでした。加入したばかりの保険は、まだ登録されていないことがあります。",
        ),
        AnswerStatus::Multiple => warning(
            "multiple-qualifications",
            Severity::Caution,
            "複数の資格が該当しました。いま使っている保険を患者さんに確認してください。",
        ),
        AnswerStatus::CardRefused => warning(
            "card-refused",
            Severity::Caution,
            "カードが使えませんでした。保険者番号などを資格確認書やマイナポータルの画面で確認してください。",
        ),
    })
}

/// A note on the document shown, worded only for the dates on which it counts.
pub(crate) fn document_warning(facts: &Facts<'_>) -> Option<Warning> {
    let check = facts.check;
    if check.identity != Identity::Document {
        return None;
    }
    let code = check.document.as_deref()?;
    // ISO dates compare as text. The old 健康保険証 and a お知らせ alone were accepted, after an
    // online lookup, only until the end of the temporary measure on 2026-03-31.
    let after_measure = check.visit_date.as_str() > "2026-03-31";
    Some(match code {
        "kakuninsho" => warning(
            "document-shown",
            Severity::Info,
            "資格確認書で受け付けました。有効期限を確認してください。",
        ),
        "portal" => warning(
            "document-shown",
            Severity::Info,
            "マイナポータルの資格情報画面で受け付けました。画面の番号で請求できます。",
        ),
        "hokensho" if after_measure => warning(
            "document-not-accepted",
            Severity::Warning,
            "従来の健康保険証は、2026年4月1日からは使えません。マイナ保険証か資格確認書を提示してもらってください。",
        ),
        "hokensho" => warning(
            "document-shown",
            Severity::Caution,
            "従来の健康保険証で受け付けました。有効期限と、オンラインでの番号の確認を忘れずに。",
        ),
        "oshirase" if after_measure => warning(
            "document-not-accepted",
            Severity::Warning,
            "資格情報のお知らせだけでは受け付けられません。マイナ保険証と一緒に提示してもらってください。",
        ),
        "oshirase" => warning(
            "document-shown",
            Severity::Caution,
            "資格情報のお知らせで受け付けました。オンラインで番号を確認してください。",
        ),
        other => warning(
            "document-shown",
            Severity::Info,
            format!("{}で受け付けました。", document_ja(other)),
        ),
    })
}

fn next_action(profile: &Profile, facts: &Facts<'_>) -> Option<NextAction> {
    let check = facts.check;
    let next_time = profile.words.next_time;
    if check.overdue {
        return Some(action(
            "follow-up-overdue",
            "すぐにオンライン資格確認で再照会し、請求の根拠を決めてください。",
            check.due.clone(),
        ));
    }
    if facts.settled {
        return None;
    }
    if let Some(claim) = facts.claim() {
        match claim.basis {
            Basis::Unknown if check.declaration.is_none() => {
                return Some(action(
                    "take-declaration",
                    "被保険者資格申立書を書いてもらってください。",
                    check.due.clone(),
                ));
            }
            Basis::Unknown => {
                return Some(action(
                    "ask-numbers",
                    "保険者番号が分かったら、書類の写真などで知らせてもらうよう患者さんに伝えてください。",
                    check.due.clone(),
                ));
            }
            Basis::Old => {
                return Some(action(
                    "ask-new-numbers",
                    format!("{next_time}に、新しい保険の番号を患者さんに確認してください。"),
                    facts.follow_up_due(),
                ));
            }
            Basis::Current if !facts.open => return None,
            Basis::Current => {}
        }
    }
    if !facts.open {
        return None;
    }
    if check.captured_offline && check.answer.is_none() {
        return Some(action(
            "follow-up",
            "資格確認システムが使えるようになったら、再照会してください。",
            check.due.clone(),
        ));
    }
    if facts.newer_exists {
        return Some(action(
            "ask-new-numbers",
            format!("{next_time}に、新しい保険の番号を患者さんに確認してください。"),
            facts.follow_up_due(),
        ));
    }
    Some(action(
        "follow-up",
        format!("{next_time}に、資格を確認してください。"),
        facts.follow_up_due(),
    ))
}
