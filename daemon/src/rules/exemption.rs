//! R31–R33: the online-check mandate and the exemption of 柔整・あはき施術所 (notice of
//! 2024-11-06): which reason applies, or why none does.

use chrono::NaiveDate;

use super::calendar::{date_ja, legal_age_on};
use super::{RuleId, RuleSettings, Step};
use crate::domain::FacilityType;

/// A full-time (常勤) practitioner: works all the hours the facility sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Practitioner {
    /// Birth date.
    pub birth_date: NaiveDate,
    /// Visually impaired (counts for あはき only).
    pub visually_impaired: bool,
}

/// A decided end (closure/suspension, or the end of 受領委任).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlannedEnd {
    /// Nothing decided.
    None,
    /// Planned without a concrete date (does not qualify).
    WithoutDate,
    /// Decided for this date.
    On(NaiveDate),
}

/// The facts; `None` = not asked yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExemptionFacts {
    /// The facility type.
    pub facility: Option<FacilityType>,
    /// Every full-time practitioner.
    pub practitioners: Option<Vec<Practitioner>>,
    /// Closure or suspension.
    pub closure: Option<PlannedEnd>,
    /// End of 受領委任.
    pub end_of_juryo_inin: Option<PlannedEnd>,
}

/// The next question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExemptionQuestion {
    /// Facility type.
    Facility,
    /// Full-time practitioners.
    Practitioners,
    /// Closure or suspension.
    Closure,
    /// End of 受領委任.
    EndOfJuryoInin,
}

impl ExemptionQuestion {
    /// The question put to staff.
    pub fn text_ja(self) -> &'static str {
        match self {
            ExemptionQuestion::Facility => "施術所の種類は？ judo（柔整）/ ahaki（あはき）",
            ExemptionQuestion::Practitioners => "常勤の施術者全員の生年月日を入力してください（カンマ区切り。視覚障害の方は日付の後に :視覚 。例 1950-01-01,1948-05-05:視覚）",
            ExemptionQuestion::Closure => "廃止・休止を決めていますか？ 日付が決まっていれば日付、未定なら「未定」、予定がなければ空欄",
            ExemptionQuestion::EndOfJuryoInin => "受領委任の取扱いをやめることを決めていますか？ 日付が決まっていれば日付、未定なら「未定」、予定がなければ空欄",
        }
    }
}

/// The exemption reason that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExemptionReason {
    /// R33-1: every full-time practitioner is 70+ as of April 2024 (あはき: or visually impaired).
    ElderlyPractitioners,
    /// R33-2: closure or suspension decided for this date.
    Closure(NaiveDate),
    /// R33-3: the end of 受領委任 decided for this date.
    EndOfJuryoInin(NaiveDate),
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExemptionOutcome {
    /// The reason that applies, or `None`: the mandate applies.
    pub reason: Option<ExemptionReason>,
    /// The rule (R33; R31/R32 for other facilities).
    pub rule: RuleId,
    /// Explanation for staff: why it applies, or one line per reason that does not.
    pub explanation_ja: Vec<String>,
}

/// Facts that cannot be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExemptionError {
    /// No practitioner given.
    #[error("no full-time practitioner given")]
    NoPractitioners,
    /// A practitioner born after the reference date.
    #[error("practitioner born {0} after the reference date")]
    BornAfterReference(NaiveDate),
}

impl ExemptionError {
    /// The message shown to staff.
    pub fn message_ja(&self) -> String {
        match self {
            ExemptionError::NoPractitioners => {
                "常勤の施術者が1人も入力されていません。全員の生年月日を入力してください。"
                    .to_string()
            }
            ExemptionError::BornAfterReference(d) => format!(
                "生年月日 {} は基準日（2024年4月）より後です。生年月日を確認してください。",
                date_ja(*d)
            ),
        }
    }
}

fn end_qualifies(end: PlannedEnd, by: NaiveDate, what: &str) -> Result<NaiveDate, String> {
    match end {
        PlannedEnd::None => Err(format!("{what}の予定はありません。")),
        PlannedEnd::WithoutDate => Err(format!(
            "{what}は具体的な日付が決まっていないため対象外です。"
        )),
        PlannedEnd::On(d) if d <= by => Ok(d),
        PlannedEnd::On(d) => Err(format!(
            "{what}の日付（{}）が{}より後のため対象外です。",
            date_ja(d),
            date_ja(by)
        )),
    }
}

/// R31–R33: whether the facility is exempt from the mandate, or the next question.
pub fn mandate_exemption(
    facts: &ExemptionFacts,
    settings: &RuleSettings,
) -> Result<Step<ExemptionOutcome, ExemptionQuestion>, ExemptionError> {
    let Some(facility) = facts.facility else {
        return Ok(Step::Ask(ExemptionQuestion::Facility));
    };
    if !facility.is_ryouyouhi() {
        let (rule, text) = if facility == FacilityType::HomeNursing {
            (32, "訪問看護ステーションは2024年12月2日から義務化されています（経過措置は2024年10月31日までの届出分のみ）。この免除は柔整・あはき施術所のみが対象です。")
        } else {
            (31, "医療機関・薬局は2023年4月1日から義務化されています（紙レセプトの施設等を除く）。この免除は柔整・あはき施術所のみが対象です。")
        };
        return Ok(Step::Decided(ExemptionOutcome {
            reason: None,
            rule: RuleId(rule),
            explanation_ja: vec![text.to_string()],
        }));
    }
    let Some(practitioners) = &facts.practitioners else {
        return Ok(Step::Ask(ExemptionQuestion::Practitioners));
    };
    if practitioners.is_empty() {
        return Err(ExemptionError::NoPractitioners);
    }
    let reference = settings.exemption_age_reference;
    let mut not_exempt = Vec::new();
    let ahaki = facility == FacilityType::Ahaki;
    let mut all_qualify = true;
    for p in practitioners {
        let age = legal_age_on(p.birth_date, reference)
            .ok_or(ExemptionError::BornAfterReference(p.birth_date))?;
        let ok = age >= 70 || (ahaki && p.visually_impaired);
        if !ok {
            all_qualify = false;
            not_exempt.push(format!(
                "常勤施術者（{}生）は2024年4月時点で{age}歳で、70歳未満です{}。",
                date_ja(p.birth_date),
                if ahaki {
                    "（視覚障害もなし）"
                } else {
                    ""
                }
            ));
        }
    }
    if all_qualify {
        let what = if ahaki {
            "70歳以上または視覚障害者"
        } else {
            "70歳以上"
        };
        return Ok(Step::Decided(ExemptionOutcome {
            reason: Some(ExemptionReason::ElderlyPractitioners),
            rule: RuleId(33),
            explanation_ja: vec![format!("常勤の施術者全員が2024年4月時点で{what}のため、義務化の対象外です（やむを得ない事由1）。")],
        }));
    }
    let Some(closure) = facts.closure else {
        return Ok(Step::Ask(ExemptionQuestion::Closure));
    };
    match end_qualifies(closure, settings.exemption_end_by, "廃止・休止") {
        Ok(d) => {
            return Ok(Step::Decided(ExemptionOutcome {
                reason: Some(ExemptionReason::Closure(d)),
                rule: RuleId(33),
                explanation_ja: vec![format!("{}に廃止・休止することが決まっているため、義務化の対象外です（やむを得ない事由2）。", date_ja(d))],
            }))
        }
        Err(why) => not_exempt.push(why),
    }
    let Some(end) = facts.end_of_juryo_inin else {
        return Ok(Step::Ask(ExemptionQuestion::EndOfJuryoInin));
    };
    match end_qualifies(end, settings.exemption_end_by, "受領委任の取扱いの終了") {
        Ok(d) => {
            return Ok(Step::Decided(ExemptionOutcome {
                reason: Some(ExemptionReason::EndOfJuryoInin(d)),
                rule: RuleId(33),
                explanation_ja: vec![format!("{}に受領委任の取扱いをやめることが決まっているため、義務化の対象外です（やむを得ない事由3）。", date_ja(d))],
            }))
        }
        Err(why) => not_exempt.push(why),
    }
    not_exempt.push("いずれの事由にも当たらないため、2024年12月2日からオンライン資格確認が義務です。個別に地方厚生（支）局・都道府県から連絡が来ることがあります。".to_string());
    Ok(Step::Decided(ExemptionOutcome {
        reason: None,
        rule: RuleId(33),
        explanation_ja: not_exempt,
    }))
}

#[cfg(test)]
mod tests {
    // Rule tables read best as inline tuples.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]
    use super::*;
    use crate::rules::parse_date;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    fn p(birth: &str, blind: bool) -> Practitioner {
        Practitioner {
            birth_date: d(birth),
            visually_impaired: blind,
        }
    }

    #[test]
    fn exemption_table() {
        use ExemptionReason::*;
        use FacilityType::*;
        use PlannedEnd as E;
        let s = RuleSettings::default();
        let rows: Vec<(
            &str,
            &str,
            FacilityType,
            Vec<Practitioner>,
            PlannedEnd,
            PlannedEnd,
            Option<ExemptionReason>,
        )> = vec![
            (
                "R33",
                "柔整, sole practitioner born 1954-04-01 (70 on 2024-03-31)",
                Judo,
                vec![p("1954-04-01", false)],
                E::None,
                E::None,
                Some(ElderlyPractitioners),
            ),
            (
                "R33",
                "柔整, born 1954-04-02 (70 on 04-01)",
                Judo,
                vec![p("1954-04-02", false)],
                E::None,
                E::None,
                Some(ElderlyPractitioners),
            ),
            (
                "R33",
                "柔整, born 1954-04-03: 69",
                Judo,
                vec![p("1954-04-03", false)],
                E::None,
                E::None,
                None,
            ),
            (
                "R33",
                "柔整, one of two is 60",
                Judo,
                vec![p("1940-01-01", false), p("1964-01-01", false)],
                E::None,
                E::None,
                None,
            ),
            (
                "R33",
                "柔整, visually impaired does not count",
                Judo,
                vec![p("1980-01-01", true)],
                E::None,
                E::None,
                None,
            ),
            (
                "R33",
                "あはき, visually impaired counts",
                Ahaki,
                vec![p("1980-01-01", true), p("1950-01-01", false)],
                E::None,
                E::None,
                Some(ElderlyPractitioners),
            ),
            (
                "R33",
                "closure on 2025-12-02",
                Judo,
                vec![p("1980-01-01", false)],
                E::On(d("2025-12-02")),
                E::None,
                Some(Closure(d("2025-12-02"))),
            ),
            (
                "R33",
                "closure on 2025-12-03",
                Judo,
                vec![p("1980-01-01", false)],
                E::On(d("2025-12-03")),
                E::None,
                None,
            ),
            (
                "R33",
                "closure without a date",
                Ahaki,
                vec![p("1980-01-01", false)],
                E::WithoutDate,
                E::None,
                None,
            ),
            (
                "R33",
                "end of 受領委任 on 2025-06-30",
                Ahaki,
                vec![p("1980-01-01", false)],
                E::None,
                E::On(d("2025-06-30")),
                Some(EndOfJuryoInin(d("2025-06-30"))),
            ),
            (
                "R33",
                "end of 受領委任 without date",
                Ahaki,
                vec![p("1980-01-01", false)],
                E::None,
                E::WithoutDate,
                None,
            ),
        ];
        for (rule, case, facility, ps, closure, end, want) in rows {
            let facts = ExemptionFacts {
                facility: Some(facility),
                practitioners: Some(ps),
                closure: Some(closure),
                end_of_juryo_inin: Some(end),
            };
            let Step::Decided(o) = mandate_exemption(&facts, &s).unwrap() else {
                panic!("{case}: asked")
            };
            assert_eq!(o.reason, want, "{rule} {case}: {:?}", o.explanation_ja);
            assert_eq!(o.rule.to_string(), rule);
            assert!(!o.explanation_ja.is_empty());
        }
    }

    #[test]
    fn other_facilities_and_bad_input() {
        let s = RuleSettings::default();
        for (f, rule) in [
            (FacilityType::Medical, "R31"),
            (FacilityType::Pharmacy, "R31"),
            (FacilityType::HomeNursing, "R32"),
        ] {
            let facts = ExemptionFacts {
                facility: Some(f),
                ..Default::default()
            };
            let Step::Decided(o) = mandate_exemption(&facts, &s).unwrap() else {
                panic!()
            };
            assert_eq!((o.reason, o.rule.to_string().as_str()), (None, rule));
        }
        let facts = ExemptionFacts {
            facility: Some(FacilityType::Judo),
            practitioners: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(
            mandate_exemption(&facts, &s),
            Err(ExemptionError::NoPractitioners)
        );
        let facts = ExemptionFacts {
            facility: Some(FacilityType::Judo),
            ..Default::default()
        };
        assert_eq!(
            mandate_exemption(&facts, &s),
            Ok(Step::Ask(ExemptionQuestion::Practitioners))
        );
    }
}
