//! The 療養費支給申請書 formatter (柔整・あはき, 受領委任).
//!
//! The form takes the confirmed numbers: 保険者番号, 記号番号 in one box, and whether the patient
//! is the 被保険者 or a 被扶養者; 枝番 is traditionally not written. There is no 資格不詳 claim
//! for 療養費: an unconfirmed check stays open (and becomes overdue) until it is confirmed, so
//! this formatter never writes 7-filled numbers and says so when the host hands it a 不詳 basis.
//!
//! When the online check could not be done, the normal co-payment is collected and:
//! at the first treatment (初検) the numbers must be confirmed afterwards, for instance at the
//! next treatment in the month; at a later treatment an oral confirmation suffices when the
//! facility already holds the data.
#![forbid(unsafe_code)]

use crate::facts::{Facts, Source};
use crate::notes::{action, warning, MomentCodes};
use crate::receipt::{
    answer_warning, display_head, display_tail, document_warning, field, read_aloud_tail,
    result_sentence,
};
use crate::text::{
    copay_ja, date_ja, date_short_ja, digits_kana, facility_ja, non_empty, symbol_number,
};
use crate::types::{
    Addition, Basis, Check, Failure, Field, Moment, NextAction, Numbers, Output, Severity, Warning,
};
use crate::Profile;

/// The codes a 療養費 plugin reports at each moment.
pub const MOMENTS: MomentCodes = MomentCodes {
    captured: &[
        "captured-offline",
        "not-confirmed",
        "qualification-invalid",
        "newer-qualification",
        "qualification-not-found",
        "multiple-qualifications",
        "card-refused",
        "confirm-at-next-visit",
        "oral-confirmation",
        "confirm-orally",
        "ask-new-numbers",
    ],
    resolved: &[
        "no-unknown-claim",
        "old-qualification",
        "confirm-at-next-visit",
        "ask-new-numbers",
    ],
};

/// How a 療養費 check must still be confirmed (事後確認の方法).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirmation {
    /// Nothing is open.
    Done,
    /// The numbers must be confirmed afterwards: a first treatment, or no data held.
    Required,
    /// A later treatment with the data held: asking the patient suffices.
    Oral,
    /// The qualification was lost and a newer one exists: the new numbers are needed.
    NewNumbers,
}

struct Form<'a> {
    facts: Facts<'a>,
    /// The numbers for the form (never a 7-filled 不詳 claim's).
    numbers: Option<(&'a Numbers, Source)>,
    /// The host handed a 不詳 basis, which 療養費 does not have.
    unknown_basis: bool,
    confirmation: Confirmation,
}

impl<'a> Form<'a> {
    fn of(check: &'a Check) -> Self {
        let facts = Facts::of(check);
        let unknown_basis = facts.basis() == Some(Basis::Unknown);
        let numbers = if unknown_basis {
            check.known_numbers.as_ref().map(|n| (n, Source::Held))
        } else {
            facts.numbers
        };
        let open = facts.open || unknown_basis;
        let holds_data = check.known_numbers.is_some();
        let lost = facts.newer_exists || facts.basis() == Some(Basis::Old);
        let confirmation = match (open, lost, check.first_visit, holds_data) {
            (false, _, _, _) => Confirmation::Done,
            (true, true, _, _) => Confirmation::NewNumbers,
            (true, false, false, true) => Confirmation::Oral,
            (true, false, _, _) => Confirmation::Required,
        };
        Form {
            facts,
            numbers,
            unknown_basis,
            confirmation,
        }
    }
}

/// The check formatted for the 療養費支給申請書 (`format`).
pub fn format(profile: &Profile, check: &Check) -> Result<Output, Failure> {
    profile.ensure_serves(check)?;
    let form = Form::of(check);
    let warnings = warnings(profile, &form);
    let next_action = next_action(profile, &form);
    Ok(Output {
        claim_fields: claim_fields(&form),
        display: display(profile, &form, next_action.as_ref()),
        read_aloud: read_aloud(profile, &form, next_action.as_ref()),
        warnings,
        next_action,
    })
}

/// What a 療養費 plugin adds at a moment (`on-moment`).
pub fn on_moment(profile: &Profile, at: Moment, check: &Check) -> Result<Addition, Failure> {
    let output = format(profile, check)?;
    Ok(MOMENTS.select(at, &output.warnings, output.next_action.as_ref()))
}

/// 被保険者 or 被扶養者, when the insurer type alone decides it.
///
/// 国民健康保険 (6-digit 保険者番号) and 後期高齢者医療 (法別番号 39) have no 被扶養者: everyone
/// is a 被保険者. For employees' insurance the numbers do not say, so the field is left out.
fn insured_or_dependent(numbers: &Numbers) -> Option<&'static str> {
    let insurer = numbers.insurer.trim();
    let digits = insurer.chars().all(|c| c.is_ascii_digit());
    if digits && (insurer.len() == 6 || (insurer.len() == 8 && insurer.starts_with("39"))) {
        Some("被保険者")
    } else {
        None
    }
}

fn claim_fields(form: &Form<'_>) -> Vec<Field> {
    let check = form.facts.check;
    let mut fields = Vec::new();
    match form.numbers {
        Some((n, _)) => {
            fields.push(field("insurer-number", "保険者番号", n.insurer.trim()));
            fields.push(field("symbol-number", "記号番号", symbol_number(n)));
            if let Some(who) = insured_or_dependent(n) {
                fields.push(field("insured-or-dependent", "被保険者/被扶養者", who));
            }
        }
        None => {
            fields.push(field("insurer-number", "保険者番号", ""));
            fields.push(field("symbol-number", "記号番号", ""));
        }
    }
    fields.push(field(
        "first-treatment",
        "初検",
        if check.first_visit {
            "該当"
        } else {
            "非該当"
        },
    ));
    fields.push(field(
        "copay",
        "負担割合",
        form.facts.copay_tenths().map(copay_ja).unwrap_or_default(),
    ));
    fields
}

fn display(profile: &Profile, form: &Form<'_>, next: Option<&NextAction>) -> Vec<String> {
    let facts = &form.facts;
    let mut lines = display_head(profile, facts);
    match form.numbers {
        Some((n, source)) => {
            let held = if source == Source::Held {
                "（以前の情報・未確認）"
            } else {
                ""
            };
            lines.push(format!(
                "申請書: 保険者番号 {}　記号番号 {}{held}",
                n.insurer.trim(),
                symbol_number(n)
            ));
            if let Some(who) = insured_or_dependent(n) {
                lines.push(format!("被保険者/被扶養者: {who}"));
            }
        }
        None => lines.push("申請書: 番号がまだ分かりません".to_string()),
    }
    lines.push(match facts.copay_tenths() {
        Some(t) => format!("窓口負担: {}を受け取る", copay_ja(t)),
        None => "窓口負担: 通常の負担割合を受け取る（割合は確認中）".to_string(),
    });
    let open = form.confirmation != Confirmation::Done;
    display_tail(&mut lines, facts.check, open, next);
    lines
}

fn read_aloud(profile: &Profile, form: &Form<'_>, next: Option<&NextAction>) -> String {
    let facts = &form.facts;
    let check = facts.check;
    let mut parts: Vec<String> = Vec::new();
    parts.push(result_sentence(facts));
    if check.first_visit {
        parts.push(format!("{}です。", profile.words.first));
    }
    if let Some(t) = facts.copay_tenths() {
        parts.push(format!("負担割合は{}です。", copay_ja(t)));
    }
    // Practitioners who cannot read the screen copy the numbers onto the form from this.
    if let Some((n, source)) = form.numbers {
        let held = if source == Source::Held {
            "控えの"
        } else {
            ""
        };
        if !n.insurer.trim().is_empty() {
            let symbol = match non_empty(n.symbol.as_deref()) {
                Some(symbol) => format!("記号は、{}。", digits_kana(symbol)),
                None => String::new(),
            };
            parts.push(format!(
                "{held}保険者番号は、{}。{symbol}番号は、{}です。",
                digits_kana(n.insurer.trim()),
                digits_kana(n.number.trim())
            ));
        }
    }
    read_aloud_tail(&mut parts, check, next);
    parts.concat()
}

fn warnings(profile: &Profile, form: &Form<'_>) -> Vec<Warning> {
    let facts = &form.facts;
    let check = facts.check;
    let facility = facility_ja(profile.facility);
    let mut out = Vec::new();
    if check.overdue {
        let due = check.due.as_deref().map(date_ja).unwrap_or_default();
        out.push(warning(
            "follow-up-overdue",
            Severity::Warning,
            format!(
                "事後確認の期限（{due}）を過ぎています。資格を確認できるまで、申請書は出せません。"
            ),
        ));
    }
    let open = form.confirmation != Confirmation::Done;
    if open && check.captured_offline && check.answer.is_none() {
        out.push(warning(
            "captured-offline",
            Severity::Caution,
            "資格確認システムにつながらない間に受け付けました。通常の負担割合を受け取り、資格は後で確認します。",
        ));
    } else if open && check.answer.is_none() {
        out.push(warning(
            "not-confirmed",
            Severity::Caution,
            "資格はまだオンラインで確認していません。",
        ));
    }
    out.extend(answer_warning(facts));
    match form.confirmation {
        Confirmation::Required if check.first_visit => out.push(warning(
            "confirm-at-next-visit",
            Severity::Warning,
            "初検のため、資格を後で必ず確認してください（同じ月の次の施術時など）。確認できるまで申請書は出せません。",
        )),
        Confirmation::Required => out.push(warning(
            "confirm-at-next-visit",
            Severity::Warning,
            "資格情報の控えがないため、資格を後で必ず確認してください。確認できるまで申請書は出せません。",
        )),
        Confirmation::Oral => out.push(warning(
            "oral-confirmation",
            Severity::Info,
            "以前の資格情報があるため、保険に変わりがないことを口頭で確かめれば足ります。",
        )),
        // The answer's own warning (新しい資格あり) already says what to do.
        Confirmation::NewNumbers | Confirmation::Done => {}
    }
    if let Some((_, Source::Held)) = form.numbers {
        out.push(warning(
            "provisional-numbers",
            Severity::Info,
            "申請書の番号は以前の情報です。確認が済むまで確定しません。",
        ));
    }
    if form.unknown_basis {
        out.push(warning(
            "no-unknown-claim",
            Severity::Warning,
            format!(
                "{facility}の療養費には資格不詳での請求がありません。番号を7で埋めずに、資格を確認してから申請してください。"
            ),
        ));
    }
    if facts
        .claim()
        .is_some_and(|c| c.basis == Basis::Old && !c.final_)
    {
        out.push(warning(
            "old-qualification",
            Severity::Caution,
            "資格を失う前の番号です。新しい保険の番号を確認してから申請してください。",
        ));
    }
    out.extend(document_warning(facts));
    out
}

fn next_action(profile: &Profile, form: &Form<'_>) -> Option<NextAction> {
    let facts = &form.facts;
    let check = facts.check;
    let next_time = profile.words.next_time;
    let when = match check.next_visit.as_deref() {
        Some(date) => format!("{next_time}（{}）", date_short_ja(date)),
        None => next_time.to_string(),
    };
    if check.overdue {
        return Some(action(
            "follow-up-overdue",
            "患者さんに連絡して、資格を確認してください。",
            check.due.clone(),
        ));
    }
    match form.confirmation {
        Confirmation::Required => {
            return Some(action(
                "confirm-at-next-visit",
                format!("{when}に、マイナ保険証か資格確認書で資格を確認してください。"),
                facts.follow_up_due(),
            ));
        }
        Confirmation::Oral => {
            return Some(action(
                "confirm-orally",
                format!("{when}に、保険に変わりがないか口頭で確認してください。"),
                check.next_visit.clone().or_else(|| check.due.clone()),
            ));
        }
        Confirmation::NewNumbers => {
            return Some(action(
                "ask-new-numbers",
                format!("{when}に、新しい保険の番号を患者さんに確認してください。"),
                facts.follow_up_due(),
            ));
        }
        Confirmation::Done => {}
    }
    None
}
