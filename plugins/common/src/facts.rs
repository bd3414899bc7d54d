//! What a check says, read once (確認の状態).
//!
//! The formatters ask the same questions of every check (is it confirmed? still open? which
//! numbers go on the form, and where do they come from?); this module answers them in one
//! place so the 医科 and 柔整 wording cannot disagree about the facts.
#![forbid(unsafe_code)]

use crate::types::{AnswerStatus, Basis, Check, Claim, Identity, Numbers};

/// Where the numbers on the form come from (番号の出所).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The decided claim basis.
    Claim(Basis),
    /// The qualification system's confirmed answer, before a claim basis is recorded.
    Online,
    /// Numbers the facility holds (earlier visits, a document), not yet confirmed.
    Held,
}

/// The facts a formatter needs about one check.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The check.
    pub check: &'a Check,
    /// The qualification system answered 有効.
    pub confirmed_online: bool,
    /// The qualification is confirmed: online, or on an accepted document with a current claim.
    pub confirmed: bool,
    /// The claim basis can no longer change.
    pub settled: bool,
    /// Still waiting for 事後確認: neither confirmed nor settled.
    pub open: bool,
    /// A newer qualification exists (新しい資格あり).
    pub newer_exists: bool,
    /// The numbers for the form, and where they come from.
    pub numbers: Option<(&'a Numbers, Source)>,
}

impl<'a> Facts<'a> {
    /// Reads the facts of `check`.
    pub fn of(check: &'a Check) -> Self {
        let confirmed_online = check.answer == Some(AnswerStatus::Confirmed);
        let claim = check.claim.as_ref();
        let on_document = check.identity == Identity::Document
            && claim.is_some_and(|c| c.basis == Basis::Current);
        let confirmed = confirmed_online || on_document;
        let settled = claim.is_some_and(|c| c.final_);
        let newer_exists = check.qualification.as_ref().is_some_and(|q| q.newer_exists);
        let numbers = match (claim, &check.qualification, &check.known_numbers) {
            (Some(c), _, _) => Some((&c.numbers, Source::Claim(c.basis))),
            (None, Some(q), _) if confirmed_online => Some((&q.numbers, Source::Online)),
            (None, _, Some(held)) => Some((held, Source::Held)),
            _ => None,
        };
        Facts {
            check,
            confirmed_online,
            confirmed,
            settled,
            open: !confirmed && !settled,
            newer_exists,
            numbers,
        }
    }

    /// The decided claim, if any.
    pub fn claim(&self) -> Option<&'a Claim> {
        self.check.claim.as_ref()
    }

    /// The decided basis, if any.
    pub fn basis(&self) -> Option<Basis> {
        self.claim().map(|c| c.basis)
    }

    /// 負担割合 to collect, in tenths: the check's, else the qualification's, else the 申立書's.
    pub fn copay_tenths(&self) -> Option<u8> {
        let check = self.check;
        check
            .copay_tenths
            .or_else(|| check.qualification.as_ref().and_then(|q| q.copay_tenths))
            .or_else(|| check.declaration.as_ref().and_then(|d| d.copay_tenths))
    }

    /// The date by which the check should be confirmed: the 事後確認 deadline, else the next visit.
    pub fn follow_up_due(&self) -> Option<String> {
        self.check
            .due
            .clone()
            .or_else(|| self.check.next_visit.clone())
    }

    /// The 保険者名称, when the answer gave one.
    pub fn insurer_name(&self) -> Option<&'a str> {
        let q = self.check.qualification.as_ref()?;
        crate::text::non_empty(q.insurer_name.as_deref())
    }
}
