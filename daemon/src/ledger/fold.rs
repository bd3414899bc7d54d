//! The state of a check (確認の状態): a pure fold over its events, in store order
//! (hybrid-logical time, then device). Two devices holding the same events compute the same
//! state; an event seen twice changes nothing.

use chrono::NaiveDate;
use serde::Serialize;

use super::event::{
    AnswerStatus, Answered, Captured, CheckEvent, NumbersRecord, Reported, Resolved,
};
use crate::rules::claim::Moushitatesho;
use crate::rules::deadlines::{follow_up, FollowUpFacts, Treatment};

/// Query errors asking again cannot cure (kinds as recorded in `attempt-failed`): an answer
/// with a code value this client does not know, or one that contradicts itself.
pub const FINAL_ERRORS: [&str; 2] = ["unknown-code", "inconsistent"];

/// Where a check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Answered online at reception; nothing to do.
    Done,
    /// Captured offline; waiting for the qualification system (事後確認待ち).
    Waiting,
    /// Answered, but the claim basis needs staff (several matches, no 申立書, 柔整・あはき
    /// not confirmed).
    NeedsStaff,
    /// The claim basis is decided.
    Resolved,
}

/// The folded state of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckState {
    /// The check id.
    pub id: String,
    /// The capture (or online check) that opened it.
    pub captured: Captured,
    /// The 申立書, if taken.
    pub declaration: Option<Moushitatesho>,
    /// Every answer, in order.
    pub answers: Vec<Answered>,
    /// Failed reconciliation attempts.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// The claim basis now: the latest decision in store order (the same on every device),
    /// until the claim is made; decisions after that change nothing.
    pub resolution: Option<Resolved>,
    /// Decisions the current one replaced, oldest first.
    pub replaced: Vec<Resolved>,
    /// When the claim was made (請求済), which makes the claim basis final.
    pub claimed: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Staff notes.
    pub notes: Vec<String>,
    /// Numbers the patient reported later; the latest report counts.
    pub reported: Option<Reported>,
    /// What facility plugins added at its moments, in order.
    pub plugin_notes: Vec<super::event::PluginNote>,
    /// The device that wrote the capture opening the check (the first in store order), when
    /// folded from the store: this device's own checks are told from its peers' by it.
    pub captured_by: Option<tsunagi_sync::DeviceId>,
}

impl CheckState {
    /// The visit date.
    pub fn visit_date(&self) -> NaiveDate {
        self.captured.visit_date
    }

    /// Whether it was taken offline.
    pub fn was_captured_offline(&self) -> bool {
        self.captured.reason.is_some()
    }

    /// The most telling answer: a confirmation beats an invalid, which beats anything else
    /// (an answer by numbers after a refused card adds information, it does not erase it).
    pub fn best_answer(&self) -> Option<&Answered> {
        let rank = |a: &Answered| match a.status {
            AnswerStatus::Confirmed => 5,
            AnswerStatus::Invalid => 4,
            AnswerStatus::Multiple => 3,
            AnswerStatus::NotFound => 2,
            AnswerStatus::CardRefused => 1,
        };
        // max_by_key keeps the last of equals: the latest answer of the best kind.
        self.answers.iter().max_by_key(|a| rank(a))
    }

    /// Whether the clinic holds numbers for the patient (earlier data, a document, or a
    /// later report).
    pub fn knows_numbers(&self) -> bool {
        self.known_numbers().is_some()
    }

    /// The numbers the clinic holds for the patient, with the birth date when known: a later
    /// report first (the patient's own latest word), then earlier data, then the document.
    pub fn known_numbers(&self) -> Option<(&NumbersRecord, Option<NaiveDate>)> {
        if let Some(r) = &self.reported {
            return Some((&r.numbers, r.birth_date));
        }
        if let Some(k) = &self.captured.last_known {
            return Some((&k.numbers, Some(k.birth_date)));
        }
        let d = self.captured.document.as_ref()?;
        Some((d.numbers.as_ref()?, d.birth_date))
    }

    /// Whether the last query ended in an error asking again cannot cure (an answer with a
    /// code value this client does not know, or one that contradicts itself) and nothing
    /// was reported since: staff confirm another way.
    pub fn gave_up(&self) -> bool {
        self.last_error
            .as_deref()
            .is_some_and(|e| FINAL_ERRORS.contains(&e))
            && self.reported.is_none()
    }

    /// Whether numbers reported later arrived after the current decision, in time to change
    /// it (on or before the claim deadline, and before the claim): the check is asked about
    /// again.
    pub fn reopened_by_report(&self) -> bool {
        match (&self.resolution, &self.reported) {
            (Some(r), Some(rep)) => {
                self.claimed.is_none()
                    && rep.at > r.at
                    && self.due().is_none_or(|due| rep.at.date_naive() <= due)
            }
            _ => false,
        }
    }

    /// Whether the claim basis can no longer change on `today`: the claim was made, or its
    /// deadline passed.
    pub fn is_final(&self, today: NaiveDate) -> bool {
        self.claimed.is_some() || self.due().is_some_and(|due| today > due)
    }

    /// A 資格（無効）・新しい資格あり answer with nothing newer known: staff must get the new
    /// qualification's numbers from the patient before anything is claimed.
    pub fn awaits_new_qualification(&self) -> bool {
        self.reported.is_none()
            && self.best_answer().is_some_and(|a| {
                a.status == AnswerStatus::Invalid
                    && a.newer_exists
                    && !self
                        .answers
                        .iter()
                        .any(|b| b.status == AnswerStatus::Confirmed)
            })
    }

    /// Where it stands.
    pub fn phase(&self) -> Phase {
        if self.resolution.is_some() {
            if self.reopened_by_report() {
                return Phase::Waiting;
            }
            return Phase::Resolved;
        }
        if !self.was_captured_offline()
            && self
                .answers
                .iter()
                .any(|a| a.status == AnswerStatus::Confirmed)
        {
            return Phase::Done;
        }
        match self.best_answer().map(|a| a.status) {
            None if self.gave_up() => Phase::NeedsStaff,
            None => Phase::Waiting,
            Some(AnswerStatus::Multiple) => Phase::NeedsStaff,
            Some(AnswerStatus::Invalid) if self.awaits_new_qualification() => Phase::NeedsStaff,
            Some(_) if self.captured.facility.is_ryouyouhi() => Phase::NeedsStaff,
            // Nothing found and nothing else to claim with: a 申立書 must be taken (R14, R15).
            Some(AnswerStatus::NotFound | AnswerStatus::CardRefused)
                if self.declaration.is_none() && !self.knows_numbers() =>
            {
                Phase::NeedsStaff
            }
            Some(_) => Phase::Waiting,
        }
    }

    /// Whether the check still waits for 事後確認.
    pub fn is_open(&self) -> bool {
        matches!(self.phase(), Phase::Waiting | Phase::NeedsStaff)
    }

    /// The 事後確認 deadline: for 柔整・あはき the next treatment in the month, else the end of
    /// the month after (R17, R20); for facilities that claim by receipt, the claim
    /// submission date (the 10th of the following month).
    pub fn due(&self) -> Option<NaiveDate> {
        if !self.captured.facility.is_ryouyouhi() {
            return Some(crate::rules::deadlines::claim_submission_deadline(
                self.captured.visit_date,
                crate::rules::settings::RuleSettings::default().claim_submission_day,
            ));
        }
        let facts = FollowUpFacts {
            facility: self.captured.facility,
            visit: self.captured.visit_date,
            treatment: if self.captured.first_visit {
                Treatment::First
            } else {
                Treatment::Later
            },
            next_visit: self.captured.next_visit,
            data_already_held: self.captured.last_known.is_some(),
        };
        follow_up(&facts).ok().map(|f| f.due)
    }

    /// Open and past its deadline on `today`.
    pub fn is_overdue(&self, today: NaiveDate) -> bool {
        self.is_open() && self.due().is_some_and(|due| today > due)
    }
}

/// Folds one check's events. `None` when the events hold no capture (a check is opened by
/// its capture; stray events of an unknown check are kept in the store but not shown).
pub fn fold<'a>(id: &str, events: impl IntoIterator<Item = &'a CheckEvent>) -> Option<CheckState> {
    let mut state: Option<CheckState> = None;
    let mut pending = Vec::new();
    for event in events {
        match (event, state.as_mut()) {
            (CheckEvent::Captured(c), None) => {
                state = Some(CheckState {
                    id: id.to_string(),
                    captured: c.clone(),
                    declaration: None,
                    answers: Vec::new(),
                    attempts: 0,
                    last_error: None,
                    resolution: None,
                    replaced: Vec::new(),
                    claimed: None,
                    notes: Vec::new(),
                    plugin_notes: Vec::new(),
                    reported: None,
                    captured_by: None,
                });
            }
            // A second capture of the same check (a replay from another device) adds nothing.
            (CheckEvent::Captured(_), Some(_)) => {}
            (other, None) => pending.push(other),
            (other, Some(s)) => apply(s, other),
        }
    }
    let mut state = state?;
    for e in pending {
        apply(&mut state, e);
    }
    Some(state)
}

fn apply(s: &mut CheckState, event: &CheckEvent) {
    match event {
        CheckEvent::Captured(_) => {}
        CheckEvent::Answered(a) => {
            if !s.answers.contains(a) {
                s.answers.push(a.clone());
            }
        }
        CheckEvent::Declared { moushitatesho } => s.declaration = Some(moushitatesho.clone()),
        CheckEvent::AttemptFailed { error, .. } => {
            s.attempts += 1;
            s.last_error = Some(error.clone());
        }
        CheckEvent::Resolved(r) => {
            // After the claim nothing changes it; the same decision seen twice (or made by two
            // devices at different times) is one.
            let same = |a: &Resolved| {
                Resolved {
                    at: r.at,
                    replaces_because: r.replaces_because.clone(),
                    ..a.clone()
                } == *r
            };
            if s.claimed.is_none() && !s.resolution.as_ref().is_some_and(same) {
                if let Some(before) = s.resolution.replace(r.clone()) {
                    s.replaced.push(before);
                }
            }
        }
        CheckEvent::Claimed { at } => {
            if s.resolution.is_some() && s.claimed.is_none() {
                s.claimed = Some(*at);
            }
        }
        CheckEvent::NumbersReported(r) => {
            // Store order is the same on every device: the latest report wins everywhere.
            s.reported = Some(r.clone());
        }
        CheckEvent::Annotated { note } => s.notes.push(note.clone()),
        CheckEvent::PluginNoted(n) => s.plugin_notes.push(n.clone()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::FacilityType;
    use crate::ledger::event::Via;

    fn t() -> chrono::DateTime<chrono::FixedOffset> {
        chrono::DateTime::parse_from_rfc3339("2026-11-26T10:00:00+09:00").unwrap()
    }

    fn captured(facility: FacilityType) -> CheckEvent {
        CheckEvent::Captured(Captured {
            visit_date: NaiveDate::from_ymd_opt(2026, 11, 26).unwrap(),
            facility,
            first_visit: true,
            next_visit: None,
            card: None,
            document: None,
            reason: Some("timeout".into()),
            last_known: None,
            captured_at: t(),
        })
    }

    fn answer(status: AnswerStatus) -> CheckEvent {
        CheckEvent::Answered(Answered {
            via: Via::Card,
            status,
            numbers: None,
            newer_exists: false,
            birth_date: None,
            ratio_percent: None,
            insurer_name: None,
            elderly: None,
            limit_bracket: None,
            answered_at: t(),
        })
    }

    fn resolved(basis: &str) -> CheckEvent {
        CheckEvent::Resolved(Resolved {
            basis: basis.into(),
            insurer_number: "77777777".into(),
            symbol: None,
            number: "7".into(),
            branch: None,
            tekiyo: None,
            payer: None,
            summary_ja: String::new(),
            at: t(),
            replaces_because: None,
        })
    }

    #[test]
    fn replays_change_nothing_and_the_latest_decision_stands_until_claimed() {
        let events = [
            captured(FacilityType::Medical),
            answer(AnswerStatus::NotFound),
            answer(AnswerStatus::NotFound),
            captured(FacilityType::Dental),
            resolved("fushou"),
            resolved("fushou"),
            resolved("old"),
        ];
        let s = fold("c", &events).unwrap();
        assert_eq!(s.answers.len(), 1);
        assert_eq!(s.captured.facility, FacilityType::Medical);
        assert_eq!(s.resolution.as_ref().unwrap().basis, "old");
        assert_eq!(s.replaced.len(), 1, "a replayed decision is one decision");
        assert_eq!(s.replaced[0].basis, "fushou");
        // After the claim, later decisions change nothing.
        let mut claimed = events.to_vec();
        claimed.push(CheckEvent::Claimed { at: t() });
        claimed.push(resolved("current"));
        let s = fold("c", &claimed).unwrap();
        assert_eq!(s.resolution.as_ref().unwrap().basis, "old");
        assert!(s.claimed.is_some());
        assert!(s.is_final(s.visit_date()));
        // Events seen before the capture (another device's order) still count.
        let late = [
            answer(AnswerStatus::Confirmed),
            captured(FacilityType::Medical),
        ];
        assert_eq!(fold("c", &late).unwrap().answers.len(), 1);
        assert!(fold("c", &[answer(AnswerStatus::Confirmed)]).is_none());
    }

    #[test]
    fn numbers_reported_after_a_decision_reopen_it_until_the_deadline() {
        use crate::ledger::event::{NumbersRecord, Reported};
        let report = |at: chrono::DateTime<chrono::FixedOffset>| {
            CheckEvent::NumbersReported(Reported {
                numbers: NumbersRecord {
                    insurer: crate::domain::InsurerNumber::parse("06139917").unwrap(),
                    symbol: Some("1".into()),
                    number: "2".into(),
                    branch: None,
                },
                birth_date: None,
                at,
            })
        };
        let later = t() + chrono::Duration::days(1);
        let decided = [captured(FacilityType::Medical), resolved("fushou")];
        let mut events = decided.to_vec();
        events.push(report(later));
        let s = fold("c", &events).unwrap();
        assert!(s.reopened_by_report());
        assert_eq!(s.phase(), Phase::Waiting);
        // Reported after the claim deadline: the decision stands.
        let mut late = decided.to_vec();
        late.push(report(t() + chrono::Duration::days(90)));
        assert_eq!(fold("c", &late).unwrap().phase(), Phase::Resolved);
        // Reported after the claim: the decision stands.
        let mut after_claim = decided.to_vec();
        after_claim.push(CheckEvent::Claimed { at: t() });
        after_claim.push(report(later));
        assert_eq!(fold("c", &after_claim).unwrap().phase(), Phase::Resolved);
    }

    #[test]
    fn a_newer_qualification_waits_for_staff() {
        let mut invalid = match answer(AnswerStatus::Invalid) {
            CheckEvent::Answered(a) => a,
            _ => unreachable!(),
        };
        invalid.newer_exists = true;
        let s = fold(
            "c",
            &[
                captured(FacilityType::Medical),
                CheckEvent::Answered(invalid),
            ],
        )
        .unwrap();
        assert!(s.awaits_new_qualification());
        assert_eq!(s.phase(), Phase::NeedsStaff);
    }

    #[test]
    fn phases() {
        let waiting = fold("c", &[captured(FacilityType::Medical)]).unwrap();
        assert_eq!(waiting.phase(), Phase::Waiting);
        let today = waiting.visit_date();
        assert!(waiting.due().is_some_and(|d| d >= today));
        assert!(!waiting.is_overdue(today));
        assert!(waiting.is_overdue(NaiveDate::from_ymd_opt(2027, 6, 1).unwrap()));
        let multiple = fold(
            "c",
            &[
                captured(FacilityType::Medical),
                answer(AnswerStatus::Multiple),
            ],
        )
        .unwrap();
        assert_eq!(multiple.phase(), Phase::NeedsStaff);
        let judo = fold(
            "c",
            &[captured(FacilityType::Judo), answer(AnswerStatus::NotFound)],
        )
        .unwrap();
        assert_eq!(judo.phase(), Phase::NeedsStaff);
        let done = fold("c", &[captured(FacilityType::Medical), resolved("current")]).unwrap();
        assert_eq!(done.phase(), Phase::Resolved);
        assert!(!done.is_overdue(NaiveDate::from_ymd_opt(2027, 6, 1).unwrap()));
    }
}
