//! The ministry's rules (R1–R37 of `shared/reference/rules.md`) as pure functions.
//!
//! Every function takes the date and every fact as arguments: nothing here reads the clock,
//! the network or a file, so the check workflow, the reconciler, the plugins, the reception
//! page and the staff CLI all ask the same code and get the same answer. Dates the ministry
//! has moved before live in [`RuleSettings`], whose `Default` is the documented value.
//!
//! Flows with several questions (資格確認書 eligibility, the 柔整・あはき exemption) return a
//! [`Step`]: either the decision or the next question whose answer is missing, so a caller
//! can ask staff one question at a time without the rules doing any I/O.

use std::fmt;

pub mod calendar;
pub mod certificate;
pub mod claim;
pub mod copay;
pub mod deadlines;
pub mod documents;
pub mod exemption;
pub mod homecare;
pub mod identity;
pub mod incentive;
pub mod kakuninsho;
pub mod settings;

pub use calendar::{parse_date, DateError, YearMonth};
pub use settings::{ClaimFieldLengths, RuleSettings};

/// Identifier of a rule in `rules.md` (R1–R37), carried by every answer so staff and logs can
/// say which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u8);

impl RuleId {
    /// The source of the rule in plain Japanese, for staff: a receptionist does not know
    /// "R12", but does know "the ministry's notice on what to do when the online check cannot
    /// be done". The id itself stays in code, logs and the API's `rule` fields.
    pub fn source_ja(self) -> &'static str {
        match self.0 {
            1..=6 => "マイナ保険証の使い方についての厚生労働省の案内",
            7..=10 => "受診時に提示できる書類についての厚生労働省の案内",
            11 => "マイナ保険証への移行に伴う経過措置と暫定措置（厚生労働省の事務連絡）",
            12..=16 => "オンライン資格確認ができない場合の対応（厚生労働省の通知、2023年7月10日）",
            17 | 18 => "柔整・あはきの受領委任の取扱規程",
            19 => "訪問看護・訪問診療の資格確認（居宅同意取得型）についての厚生労働省の案内",
            20 | 21 => "資格確認限定型についての案内",
            22..=30 => "資格確認書の交付についての厚生労働省の案内",
            31 | 32 => "オンライン資格確認の義務化についての厚生労働省の案内",
            33 => "柔整・あはき施術所のやむを得ない事由（厚生労働省の通知、2024年11月6日）",
            34 => "資格確認限定型の導入補助",
            35 | 36 => "マイナ保険証の利用率（厚生労働省の公表値）",
            37 => "医療DX推進体制整備加算の施設基準",
            _ => "厚生労働省の案内",
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "R{}", self.0)
    }
}

/// The outcome of one step of a question-driven flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T, Q> {
    /// Enough is known: the decision.
    Decided(T),
    /// This fact is needed next.
    Ask(Q),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_a_plain_source_for_staff() {
        // It names every rule's source in words, never by its internal id.
        for n in 1..=37 {
            let s = RuleId(n).source_ja();
            assert!(!s.is_empty() && !s.contains('R'), "R{n}: {s}");
            assert_ne!(s, RuleId(99).source_ja(), "R{n} has no source of its own");
        }
    }
}
