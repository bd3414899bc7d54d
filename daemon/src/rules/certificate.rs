//! R3, R5, R6: whether a card (or phone) with an expired certificate can still be used.

use chrono::NaiveDate;

use super::calendar::{date_ja, end_of_nth_month_after};
use super::{RuleId, RuleSettings};

/// R5: the national hotline that suspends a lost card (24 hours, all year).
pub const LOST_CARD_HOTLINE: &str = "0120-95-0178";

/// How the マイナ保険証 is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadVia {
    /// The physical card on a card reader.
    Card,
    /// The smartphone マイナ保険証 on a general-purpose reader (R6).
    Smartphone,
}

/// What the online check returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataScope {
    /// Insurance data plus drug and diagnosis information.
    Full,
    /// Insurance data only (R3 grace).
    InsuranceOnly,
    /// Nothing: the check cannot be used.
    None,
}

/// The answer for a certificate on a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateAnswer {
    /// Whether the card (or phone) can be used for the online check.
    pub usable: bool,
    /// What comes back.
    pub scope: DataScope,
    /// Last day it can be used (`None` if not usable at all).
    pub usable_until: Option<NaiveDate>,
    /// The rule that decided.
    pub rule: RuleId,
    /// Explanation for staff.
    pub note_ja: String,
}

/// R3: the last day of the grace period: the end of the 3rd month after the month of expiry.
pub fn grace_end(expiry: NaiveDate) -> NaiveDate {
    end_of_nth_month_after(expiry, 3)
}

/// R3, R6: whether a certificate (or card) whose last valid day is `expiry` can be used on `on`.
pub fn certificate_usability(
    expiry: NaiveDate,
    on: NaiveDate,
    via: ReadVia,
    settings: &RuleSettings,
) -> CertificateAnswer {
    if via == ReadVia::Smartphone && on < settings.smartphone_from {
        return CertificateAnswer {
            usable: false,
            scope: DataScope::None,
            usable_until: None,
            rule: RuleId(6),
            note_ja: format!(
                "スマートフォンのマイナ保険証は{}から利用できます。カードで確認してください。",
                date_ja(settings.smartphone_from)
            ),
        };
    }
    if on <= expiry {
        return CertificateAnswer {
            usable: true,
            scope: DataScope::Full,
            usable_until: Some(expiry),
            rule: RuleId(if via == ReadVia::Smartphone { 6 } else { 3 }),
            note_ja: format!(
                "有効期限（{}）内です。通常どおり利用できます。",
                date_ja(expiry)
            ),
        };
    }
    if via == ReadVia::Smartphone {
        // R6: the phone has no grace period.
        return CertificateAnswer {
            usable: false,
            scope: DataScope::None,
            usable_until: None,
            rule: RuleId(6),
            note_ja: format!(
                "カードまたは電子証明書の有効期限（{}）が切れているため、スマートフォンでは利用できません（猶予期間なし）。",
                date_ja(expiry)
            ),
        };
    }
    let end = grace_end(expiry);
    if on <= end {
        CertificateAnswer {
            usable: true,
            scope: DataScope::InsuranceOnly,
            usable_until: Some(end),
            rule: RuleId(3),
            note_ja: format!(
                "有効期限（{}）切れですが、{}まで資格確認に利用できます（薬剤・診療情報は表示されません）。更新を案内してください。",
                date_ja(expiry),
                date_ja(end)
            ),
        }
    } else {
        CertificateAnswer {
            usable: false,
            scope: DataScope::None,
            usable_until: None,
            rule: RuleId(3),
            note_ja: format!(
                "有効期限（{}）から3か月の猶予（{}まで）も過ぎ、保険証利用登録は解除されています。資格確認書か他の方法で確認してください。",
                date_ja(expiry),
                date_ja(end)
            ),
        }
    }
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
    fn certificate_table() {
        let s = RuleSettings::default();
        use DataScope::*;
        use ReadVia::*;
        let rows = [
            (
                "R3",
                "on the expiry day",
                "2025-02-14",
                "2025-02-14",
                Card,
                true,
                Full,
            ),
            (
                "R3",
                "day after expiry: grace",
                "2025-02-14",
                "2025-02-15",
                Card,
                true,
                InsuranceOnly,
            ),
            (
                "R3",
                "February expiry, last day of May",
                "2025-02-14",
                "2025-05-31",
                Card,
                true,
                InsuranceOnly,
            ),
            (
                "R3",
                "February expiry, 1 June",
                "2025-02-14",
                "2025-06-01",
                Card,
                false,
                None,
            ),
            (
                "R3",
                "expiry on 31 Dec, end of March",
                "2025-12-31",
                "2026-03-31",
                Card,
                true,
                InsuranceOnly,
            ),
            (
                "R6",
                "phone before 2025-09-19",
                "2030-01-01",
                "2025-09-18",
                Smartphone,
                false,
                None,
            ),
            (
                "R6",
                "phone on 2025-09-19",
                "2030-01-01",
                "2025-09-19",
                Smartphone,
                true,
                Full,
            ),
            (
                "R6",
                "phone the day after expiry: no grace",
                "2025-10-01",
                "2025-10-02",
                Smartphone,
                false,
                None,
            ),
        ];
        for (rule, case, expiry, on, via, usable, scope) in rows {
            let a = certificate_usability(d(expiry), d(on), via, &s);
            assert_eq!((a.usable, a.scope), (usable, scope), "{rule} {case}");
            assert_eq!(a.rule.to_string(), rule, "{case}");
        }
        assert_eq!(grace_end(d("2025-02-28")), d("2025-05-31"));
        assert_eq!(LOST_CARD_HOTLINE, "0120-95-0178", "R5");
    }

    proptest::proptest! {
        #[test]
        fn grace_never_shorter_than_three_months(days in 0i64..40_000) {
            let expiry = d("1990-01-01") + chrono::Duration::days(days);
            let end = grace_end(expiry);
            proptest::prop_assert!(end > expiry);
            proptest::prop_assert!(end >= expiry.checked_add_months(chrono::Months::new(3)).unwrap());
        }
    }
}
