//! R1, R2, R4: how the holder of a card is identified.

use chrono::NaiveDate;

use super::calendar::anniversary;
use super::{RuleId, RuleSettings};
use crate::domain::IdentityMethod;

/// R4: clinic software never reads or keeps the 12-digit individual number; online use relies
/// on the certificate only.
pub const MAY_READ_INDIVIDUAL_NUMBER: bool = false;

/// What kind of card the patient holds; nothing on the chip tells, the operator (or the OQS
/// answer) does (R2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardKind {
    /// A card with a photo.
    Standard,
    /// A card applied for before the first birthday (from 2024-12-02): no photo.
    InfantNoPhoto,
}

/// R2: the card kind a child's card has, from the birth date and the application date.
pub fn card_kind_for(birth: NaiveDate, applied_on: NaiveDate, settings: &RuleSettings) -> CardKind {
    if applied_on >= settings.infant_card_from && applied_on < anniversary(birth, 1) {
        CardKind::InfantNoPhoto
    } else {
        CardKind::Standard
    }
}

/// R2: an infant card is valid until the 5th birthday (inclusive).
pub fn infant_card_valid_until(birth: NaiveDate) -> NaiveDate {
    anniversary(birth, 5)
}

/// R1, R2: the identity methods a card allows, in the reader's order of preference. The
/// operator may switch between them; staff never take the card from the patient.
pub fn allowed_identity_methods(kind: CardKind) -> &'static [IdentityMethod] {
    match kind {
        CardKind::Standard => &[IdentityMethod::Pin, IdentityMethod::Visual],
        // No photo to compare: only the PIN proves the holder.
        CardKind::InfantNoPhoto => &[IdentityMethod::Pin],
    }
}

/// R1, R2: whether `method` may be used with `kind`, and which rule says so.
pub fn identity_method_allowed(kind: CardKind, method: IdentityMethod) -> (bool, RuleId) {
    let allowed = allowed_identity_methods(kind).contains(&method);
    let rule = match kind {
        CardKind::Standard => RuleId(1),
        CardKind::InfantNoPhoto => RuleId(2),
    };
    (allowed, rule)
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
    fn identity_table() {
        use IdentityMethod::*;
        let rows = [
            ("R1", "standard card, PIN", CardKind::Standard, Pin, true),
            (
                "R1",
                "standard card, visual",
                CardKind::Standard,
                Visual,
                true,
            ),
            ("R2", "infant card, PIN", CardKind::InfantNoPhoto, Pin, true),
            (
                "R2",
                "infant card, visual refused",
                CardKind::InfantNoPhoto,
                Visual,
                false,
            ),
        ];
        for (rule, case, kind, method, want) in rows {
            let (got, id) = identity_method_allowed(kind, method);
            assert_eq!(got, want, "{rule} {case}");
            assert_eq!(id.to_string(), rule, "{case}");
        }
        const { assert!(!MAY_READ_INDIVIDUAL_NUMBER, "R4") };
    }

    #[test]
    fn infant_card_table() {
        let s = RuleSettings::default();
        let rows = [
            (
                "R2",
                "applied the day before 2024-12-02",
                "2024-06-01",
                "2024-12-01",
                CardKind::Standard,
            ),
            (
                "R2",
                "applied on 2024-12-02",
                "2024-06-01",
                "2024-12-02",
                CardKind::InfantNoPhoto,
            ),
            (
                "R2",
                "applied the day before the 1st birthday",
                "2024-12-10",
                "2025-12-09",
                CardKind::InfantNoPhoto,
            ),
            (
                "R2",
                "applied on the 1st birthday",
                "2024-12-10",
                "2025-12-10",
                CardKind::Standard,
            ),
            (
                "R2",
                "born before, applied under 1",
                "2024-03-01",
                "2025-01-15",
                CardKind::InfantNoPhoto,
            ),
        ];
        for (rule, case, birth, applied, want) in rows {
            assert_eq!(
                card_kind_for(d(birth), d(applied), &s),
                want,
                "{rule} {case}"
            );
        }
        assert_eq!(infant_card_valid_until(d("2025-01-15")), d("2030-01-15"));
    }
}
