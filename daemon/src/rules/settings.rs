//! Dates the ministry has moved before, as settings (defaults = the values in rules.md).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Builds a constant date; the arguments are literals checked by the tests.
fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    // Only called with literal, valid dates below; MIN is an unreachable fallback, not a
    // silent default for user input.
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

/// Field lengths of the receipt's 保険者番号 and 記号・番号 for the 7-fill (R15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimFieldLengths {
    /// Digits of the 保険者番号 field.
    pub insurer: usize,
    /// Characters the receipt software gives the 記号 field.
    pub kigo: usize,
    /// Characters the receipt software gives the 番号 field.
    pub bango: usize,
}

impl Default for ClaimFieldLengths {
    fn default() -> Self {
        // 8 is fixed by the insurer number; 記号・番号 lengths depend on the receipt software,
        // so the operator can change them; 8 and 9 mirror the widths the disaster 9-fill uses.
        Self {
            insurer: 8,
            kigo: 8,
            bango: 9,
        }
    }
}

/// Every date a rule depends on that the ministry has moved before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSettings {
    /// Receipts of a month are submitted by this day of the following month.
    pub claim_submission_day: u32,
    /// R2: cards applied for before the first birthday from this date carry no photo.
    pub infant_card_from: NaiveDate,
    /// R6: smartphone マイナ保険証 usable from this date.
    pub smartphone_from: NaiveDate,
    /// R11: last day an unexpired old 健康保険証 is valid.
    pub old_hokensho_last_day: NaiveDate,
    /// R11: temporary acceptance of expired cards / お知らせ alone for 国保 and 後期 from.
    pub expired_acceptance_kokuho_from: NaiveDate,
    /// R11: temporary acceptance for all insurers from.
    pub expired_acceptance_all_from: NaiveDate,
    /// R11: last day of the temporary acceptance (not extended).
    pub expired_acceptance_until: NaiveDate,
    /// R19: visual identity check at home allowed from.
    pub home_visual_from: NaiveDate,
    /// R23: cancellation of the insurance registration possible from.
    pub registration_cancel_from: NaiveDate,
    /// R26: last day of the 後期高齢者 provisional period (everyone gets a 資格確認書).
    pub late_elderly_provisional_until: NaiveDate,
    /// R26: the age of 85 is measured on this date after the provisional period.
    pub late_elderly_age_reference: NaiveDate,
    /// R33: practitioners' age of 70 is measured on this date (April 2024).
    pub exemption_age_reference: NaiveDate,
    /// R33: closure / end of 受領委任 must fall on or before this date.
    pub exemption_end_by: NaiveDate,
    /// R15: receipt field lengths for the 7-fill.
    pub claim_fields: ClaimFieldLengths,
}

impl Default for RuleSettings {
    fn default() -> Self {
        Self {
            claim_submission_day: 10,
            infant_card_from: ymd(2024, 12, 2),
            smartphone_from: ymd(2025, 9, 19),
            old_hokensho_last_day: ymd(2025, 12, 1),
            expired_acceptance_kokuho_from: ymd(2025, 8, 1),
            expired_acceptance_all_from: ymd(2025, 12, 2),
            expired_acceptance_until: ymd(2026, 3, 31),
            home_visual_from: ymd(2024, 10, 1),
            registration_cancel_from: ymd(2024, 10, 28),
            late_elderly_provisional_until: ymd(2026, 7, 31),
            late_elderly_age_reference: ymd(2026, 8, 1),
            exemption_age_reference: ymd(2024, 4, 1),
            exemption_end_by: ymd(2025, 12, 2),
            claim_fields: ClaimFieldLengths::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_dates() {
        let s = RuleSettings::default();
        // None of the literals fell back to MIN.
        for d in [
            s.infant_card_from,
            s.smartphone_from,
            s.old_hokensho_last_day,
            s.expired_acceptance_kokuho_from,
            s.expired_acceptance_all_from,
            s.expired_acceptance_until,
            s.home_visual_from,
            s.registration_cancel_from,
            s.late_elderly_provisional_until,
            s.late_elderly_age_reference,
            s.exemption_age_reference,
            s.exemption_end_by,
        ] {
            assert_ne!(d, NaiveDate::MIN);
        }
        assert_eq!(s.late_elderly_provisional_until.to_string(), "2026-07-31");
        assert_eq!(s.old_hokensho_last_day.to_string(), "2025-12-01");
        assert_eq!(s.expired_acceptance_until.to_string(), "2026-03-31");
    }
}
