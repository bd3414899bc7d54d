//! R13: the co-payment (負担割合), both when the online check fails and when it answers. Never
//! 10割 while the patient is presumed insured: the type cannot even express it.
//!
//! Two entry points, both pure:
//! * [`copay_when_check_fails`]: no answer; the ratio comes from age and the last confirmed data.
//! * [`copay_when_confirmed`]: the system answered; the ratio is derived from the birth date on
//!   the visit date, the 高齢受給者証 data (ratio and validity) and 未就学 status. The card's own
//!   ratio (InsuredPartialContributionRatio) is used only for 後期高齢者, because the public
//!   reference (oqs-messages.md §2.3) says the system sets it mainly for them: for anyone else
//!   its absence says nothing, and its presence is not what decides the ratio.

use std::fmt;

use chrono::{Datelike, NaiveDate};

use super::calendar::{date_ja, date_reaching_age, end_of_month, legal_age_on};
use super::RuleId;

/// A co-payment ratio in tenths (割). 10割 does not exist here on purpose.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum CopayRatio {
    /// 1割.
    One,
    /// 2割.
    Two,
    /// 3割.
    Three,
}

impl CopayRatio {
    /// The ratio in tenths.
    pub fn tenths(self) -> u8 {
        match self {
            CopayRatio::One => 1,
            CopayRatio::Two => 2,
            CopayRatio::Three => 3,
        }
    }

    /// From tenths (1–3); anything else is not a ratio a presumed-insured patient pays.
    pub fn from_tenths(t: u8) -> Option<Self> {
        match t {
            1 => Some(CopayRatio::One),
            2 => Some(CopayRatio::Two),
            3 => Some(CopayRatio::Three),
            _ => None,
        }
    }

    /// The ratio in percent, as the qualification system writes it (`010` → 10).
    pub fn percent(self) -> u8 {
        self.tenths() * 10
    }

    /// From a percentage (10, 20, 30); anything else is not a co-payment ratio.
    pub fn from_percent(p: u8) -> Option<Self> {
        if p.is_multiple_of(10) {
            Self::from_tenths(p / 10)
        } else {
            None
        }
    }
}

impl fmt::Display for CopayRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}割", self.tenths())
    }
}

/// Why the ratio is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopayBasis {
    /// The normal 3割.
    Standard,
    /// 義務教育就学前 (until 31 March after the 6th birthday): 2割.
    Preschool,
    /// 70 and over: the ratio of the last confirmed data.
    SeventyPlusRecord,
    /// 70 and over with no confirmed data: ask (申立書's 負担割合, or the 高齢受給者証).
    SeventyPlusUnknown,
    /// 後期高齢者医療: the ratio the answer gives for the card (`None` when it gives none).
    LateElderly,
    /// 70–74: the 高齢受給者証 valid on the visit date.
    ElderlyCertificate,
}

/// The instruction for the counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopayInstruction {
    /// The ratio to collect; `None` only when a 70+ patient has no record (ask them).
    pub ratio: Option<CopayRatio>,
    /// Why.
    pub basis: CopayBasis,
    /// Always R13.
    pub rule: RuleId,
    /// Explanation for staff.
    pub note_ja: String,
}

/// Bad facts for the co-payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopayError {
    /// The birth date is after the visit.
    #[error("birth date {birth} is after the visit {visit}")]
    BirthAfterVisit {
        /// Birth date.
        birth: NaiveDate,
        /// Visit date.
        visit: NaiveDate,
    },
}

impl CopayError {
    /// The message shown to staff.
    pub fn message_ja(&self) -> String {
        match self {
            CopayError::BirthAfterVisit { birth, visit } => format!(
                "生年月日（{}）が受診日（{}）より後になっています。生年月日を確認してください。",
                date_ja(*birth),
                date_ja(*visit)
            ),
        }
    }
}

/// The last day of 義務教育就学前: 31 March after the day the child legally turns 6.
pub fn preschool_until(birth: NaiveDate) -> NaiveDate {
    let six = date_reaching_age(birth, 6);
    let year = if six.month() >= 4 {
        six.year() + 1
    } else {
        six.year()
    };
    NaiveDate::from_ymd_opt(year, 3, 31).unwrap_or(NaiveDate::MAX)
}

/// The first day the 70+ ratio applies: the 1st of the month after the month the patient
/// legally turns 70 (born on the 1st: that very month, since they turn 70 the day before).
pub fn seventy_plus_from(birth: NaiveDate) -> NaiveDate {
    let seventy = date_reaching_age(birth, 70);
    end_of_month(seventy).succ_opt().unwrap_or(NaiveDate::MAX)
}

/// R13: the co-payment when the check fails, from the last confirmed data.
pub fn copay_when_check_fails(
    birth: NaiveDate,
    visit: NaiveDate,
    last_confirmed: Option<CopayRatio>,
) -> Result<CopayInstruction, CopayError> {
    if legal_age_on(birth, visit).is_none() {
        return Err(CopayError::BirthAfterVisit { birth, visit });
    }
    let (ratio, basis, note_ja) = if visit <= preschool_until(birth) {
        (
            Some(CopayRatio::Two),
            CopayBasis::Preschool,
            "義務教育就学前のため2割です。".to_string(),
        )
    } else if visit >= seventy_plus_from(birth) {
        match last_confirmed {
            Some(r) => (
                Some(r),
                CopayBasis::SeventyPlusRecord,
                format!("70歳以上のため、前回確認した負担割合（{r}）で受け付けます。"),
            ),
            None => (
                None,
                CopayBasis::SeventyPlusUnknown,
                "70歳以上で確認済みの負担割合がありません。高齢受給者証などで負担割合（1〜3割）を本人に確認してください。10割にはしません。".to_string(),
            ),
        }
    } else {
        (
            Some(CopayRatio::Three),
            CopayBasis::Standard,
            "通常どおり3割で受け付けます（10割にはしません）。".to_string(),
        )
    };
    Ok(CopayInstruction {
        ratio,
        basis,
        rule: RuleId(13),
        note_ja,
    })
}

/// 高齢受給者証 data from a confirmed answer (ages 70–74).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElderlyCertificate {
    /// 一部負担金割合; `None` when the answer gave none (or one that is not 1–3割).
    pub ratio: Option<CopayRatio>,
    /// 有効開始年月日.
    pub valid_from: Option<NaiveDate>,
    /// 有効終了年月日.
    pub valid_until: Option<NaiveDate>,
}

impl ElderlyCertificate {
    /// Whether the certificate covers `date`; a missing bound does not limit it.
    pub fn covers(&self, date: NaiveDate) -> bool {
        self.valid_from.is_none_or(|f| f <= date) && self.valid_until.is_none_or(|u| date <= u)
    }
}

/// What a confirmed qualification says that decides the co-payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmedFacts {
    /// 生年月日.
    pub birth: NaiveDate,
    /// 後期高齢者医療 (insurer number 39xxxxxx).
    pub late_elderly: bool,
    /// InsuredPartialContributionRatio as sent; read only when `late_elderly`.
    pub card_ratio: Option<CopayRatio>,
    /// PreschoolClassification 1 (未就学該当).
    pub preschool: bool,
    /// 高齢受給者証, when the answer carries one.
    pub elderly: Option<ElderlyCertificate>,
}

/// R13 on an answered check: the co-payment on `visit`, derived from the answer's facts.
///
/// In order: 後期高齢者 pay the ratio of their card; a child before school age (by the birth
/// date, or as the answer flags it) pays 2割; from the month after turning 70 the 高齢受給者証
/// valid on the visit date decides, and without one the ratio is unknown (`None`: staff look at
/// the certificate — never 10割); everyone else pays 3割.
pub fn copay_when_confirmed(
    facts: &ConfirmedFacts,
    visit: NaiveDate,
) -> Result<CopayInstruction, CopayError> {
    let birth = facts.birth;
    if legal_age_on(birth, visit).is_none() {
        return Err(CopayError::BirthAfterVisit { birth, visit });
    }
    let (ratio, basis, note_ja) = if facts.late_elderly {
        match facts.card_ratio {
            Some(r) => (
                Some(r),
                CopayBasis::LateElderly,
                format!("後期高齢者医療の負担割合（{r}）です。"),
            ),
            None => (
                None,
                CopayBasis::LateElderly,
                "後期高齢者医療の負担割合が資格確認の結果にありません。資格確認書などで負担割合（1〜3割）を確認してください。10割にはしません。".to_string(),
            ),
        }
    } else if facts.preschool || visit <= preschool_until(birth) {
        (
            Some(CopayRatio::Two),
            CopayBasis::Preschool,
            "義務教育就学前のため2割です。".to_string(),
        )
    } else if visit >= seventy_plus_from(birth) {
        let valid = facts
            .elderly
            .filter(|e| e.covers(visit))
            .and_then(|e| e.ratio);
        match valid {
            Some(r) => (
                Some(r),
                CopayBasis::ElderlyCertificate,
                format!("70歳以上のため、高齢受給者証の負担割合（{r}）です。"),
            ),
            None => (
                None,
                CopayBasis::SeventyPlusUnknown,
                "70歳以上ですが、受診日に有効な高齢受給者証の情報がありません。高齢受給者証で負担割合（2割または3割）を確認してください。10割にはしません。".to_string(),
            ),
        }
    } else {
        (
            Some(CopayRatio::Three),
            CopayBasis::Standard,
            "通常どおり3割です。".to_string(),
        )
    };
    Ok(CopayInstruction {
        ratio,
        basis,
        rule: RuleId(13),
        note_ja,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::rules::parse_date;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn copay_table() {
        use CopayRatio::*;
        let rows = [
            (
                "R13",
                "adult",
                "1980-05-05",
                "2025-06-01",
                None,
                Some(Three),
            ),
            (
                "R13",
                "adult ignores a stale record",
                "1980-05-05",
                "2025-06-01",
                Some(One),
                Some(Three),
            ),
            (
                "R13",
                "born 2 Apr: preschool until 31 Mar of the year after turning 6",
                "2019-04-02",
                "2026-03-31",
                None,
                Some(Two),
            ),
            (
                "R13",
                "born 2 Apr: school from 1 Apr",
                "2019-04-02",
                "2026-04-01",
                None,
                Some(Three),
            ),
            (
                "R13",
                "born 1 Apr: enters school a year earlier",
                "2019-04-01",
                "2025-03-31",
                None,
                Some(Two),
            ),
            (
                "R13",
                "born 1 Apr: 1 Apr 2025 is school age",
                "2019-04-01",
                "2025-04-01",
                None,
                Some(Three),
            ),
            (
                "R13",
                "newborn on the birth day",
                "2025-06-01",
                "2025-06-01",
                None,
                Some(Two),
            ),
            (
                "R13",
                "turns 70 on 15 May: May is still 3割",
                "1955-05-15",
                "2025-05-31",
                Some(Two),
                Some(Three),
            ),
            (
                "R13",
                "turns 70 on 15 May: June by record",
                "1955-05-15",
                "2025-06-01",
                Some(Two),
                Some(Two),
            ),
            (
                "R13",
                "born on the 1st: that month by record",
                "1955-05-01",
                "2025-05-01",
                Some(One),
                Some(One),
            ),
            (
                "R13",
                "born on the 1st: the month before is 3割",
                "1955-05-01",
                "2025-04-30",
                Some(One),
                Some(Three),
            ),
            (
                "R13",
                "70+ without record: ask",
                "1940-01-01",
                "2025-06-01",
                None,
                None,
            ),
        ];
        for (rule, case, birth, visit, record, want) in rows {
            let got = copay_when_check_fails(d(birth), d(visit), record).unwrap();
            assert_eq!(got.ratio, want, "{rule} {case}");
            assert_eq!(got.rule.to_string(), rule);
        }
    }

    #[test]
    fn birth_after_visit_is_rejected() {
        let e = copay_when_check_fails(d("2025-06-02"), d("2025-06-01"), None).unwrap_err();
        assert!(e.message_ja().contains("生年月日"));
    }

    fn facts(birth: &str) -> ConfirmedFacts {
        ConfirmedFacts {
            birth: d(birth),
            late_elderly: false,
            card_ratio: None,
            preschool: false,
            elderly: None,
        }
    }

    fn elderly(ratio: CopayRatio, from: &str, until: &str) -> Option<ElderlyCertificate> {
        Some(ElderlyCertificate {
            ratio: Some(ratio),
            valid_from: Some(d(from)),
            valid_until: Some(d(until)),
        })
    }

    /// (rule, case, facts, visit, expected ratio, expected basis).
    type ConfirmedRow = (
        &'static str,
        &'static str,
        ConfirmedFacts,
        &'static str,
        Option<CopayRatio>,
        CopayBasis,
    );

    #[test]
    fn copay_when_confirmed_table() {
        use CopayRatio::*;
        let late = |ratio| ConfirmedFacts {
            late_elderly: true,
            card_ratio: ratio,
            ..facts("1942-01-30")
        };
        let rows: Vec<ConfirmedRow> = vec![
            // It takes 後期高齢者' ratio from the card data, the one place the system sets it.
            (
                "R13",
                "後期 1割",
                late(Some(One)),
                "2026-11-26",
                Some(One),
                CopayBasis::LateElderly,
            ),
            (
                "R13",
                "後期 3割",
                late(Some(Three)),
                "2026-11-26",
                Some(Three),
                CopayBasis::LateElderly,
            ),
            // It never guesses a 後期 ratio the answer does not give.
            (
                "R13",
                "後期 without ratio",
                late(None),
                "2026-11-26",
                None,
                CopayBasis::LateElderly,
            ),
            // It ignores a card ratio sent for anyone else: an adult pays 3割.
            (
                "R13",
                "adult with a stray 1割 card ratio",
                ConfirmedFacts {
                    card_ratio: Some(One),
                    ..facts("1985-05-10")
                },
                "2026-11-26",
                Some(Three),
                CopayBasis::Standard,
            ),
            // It gives a preschool child 2割 from the birth date alone…
            (
                "R13",
                "preschool by date",
                facts("2023-11-26"),
                "2026-11-26",
                Some(Two),
                CopayBasis::Preschool,
            ),
            // …and from the answer's 未就学 flag.
            (
                "R13",
                "preschool by flag",
                ConfirmedFacts {
                    preschool: true,
                    ..facts("2019-04-01")
                },
                "2026-11-26",
                Some(Two),
                CopayBasis::Preschool,
            ),
            (
                "R13",
                "school age",
                facts("2019-04-01"),
                "2026-11-26",
                Some(Three),
                CopayBasis::Standard,
            ),
            // It reads a 70–74 patient's ratio from the 高齢受給者証 valid on the visit date.
            (
                "R13",
                "72 with 2割 certificate",
                ConfirmedFacts {
                    elderly: elderly(Two, "2026-11-01", "2027-10-31"),
                    ..facts("1954-06-15")
                },
                "2026-11-26",
                Some(Two),
                CopayBasis::ElderlyCertificate,
            ),
            // It does not use a certificate that has not started or has ended on the visit date.
            (
                "R13",
                "72 with an expired certificate",
                ConfirmedFacts {
                    elderly: elderly(Two, "2025-08-01", "2026-07-31"),
                    ..facts("1954-06-15")
                },
                "2026-11-26",
                None,
                CopayBasis::SeventyPlusUnknown,
            ),
            (
                "R13",
                "72 without certificate",
                facts("1954-06-15"),
                "2026-11-26",
                None,
                CopayBasis::SeventyPlusUnknown,
            ),
            // It keeps 3割 in the month the patient turns 70, whatever the certificate says.
            (
                "R13",
                "turns 70 on 15 May: May is 3割",
                ConfirmedFacts {
                    elderly: elderly(Two, "2025-06-01", "2026-07-31"),
                    ..facts("1955-05-15")
                },
                "2025-05-31",
                Some(Three),
                CopayBasis::Standard,
            ),
            (
                "R13",
                "turns 70 on 15 May: June by certificate",
                ConfirmedFacts {
                    elderly: elderly(Two, "2025-06-01", "2026-07-31"),
                    ..facts("1955-05-15")
                },
                "2025-06-01",
                Some(Two),
                CopayBasis::ElderlyCertificate,
            ),
        ];
        for (rule, case, f, visit, want, basis) in rows {
            let got = copay_when_confirmed(&f, d(visit)).unwrap();
            assert_eq!((got.ratio, got.basis), (want, basis), "{rule} {case}");
            assert_eq!(got.rule.to_string(), rule);
            assert!(
                !got.note_ja.contains("R13"),
                "{case}: staff text names a rule id"
            );
        }
        // It refuses a birth date after the visit.
        assert!(copay_when_confirmed(&facts("2026-11-27"), d("2026-11-26")).is_err());
    }

    #[test]
    fn percent_round_trips() {
        for r in [CopayRatio::One, CopayRatio::Two, CopayRatio::Three] {
            assert_eq!(CopayRatio::from_percent(r.percent()), Some(r));
        }
        for p in [0, 5, 25, 100] {
            assert_eq!(CopayRatio::from_percent(p), None, "{p}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_ten_wari(birth in 0i64..40_000, age_days in 0i64..40_000, rec in 0u8..4) {
            let b = d("1920-01-01") + chrono::Duration::days(birth);
            let v = b + chrono::Duration::days(age_days);
            let got = copay_when_check_fails(b, v, CopayRatio::from_tenths(rec)).unwrap();
            if let Some(r) = got.ratio {
                proptest::prop_assert!((1..=3).contains(&r.tenths()));
            }
        }
    }
}
