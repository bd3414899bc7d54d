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
