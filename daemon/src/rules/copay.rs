//! R13: the co-payment when the online check fails. Never 10割 while the patient is presumed
//! insured: the type cannot even express it.

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
    /// 70 and over with no confirmed data: ask (申立書's 負担割合).
    SeventyPlusUnknown,
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
                "70歳以上で確認済みの負担割合がありません。申立書の負担割合（1〜3割）を本人に確認してください。10割にはしません。".to_string(),
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
