//! R16, R17, R20: when a qualification that could not be checked online must be confirmed
//! after the fact (事後確認), and how long a result is kept.

use chrono::{Datelike, NaiveDate};

use super::calendar::{date_ja, end_of_month, end_of_nth_month_after};
use super::RuleId;
use crate::domain::FacilityType;

/// First or later treatment in a course (matters for 柔整・あはき, R17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// 初検 / first visit.
    First,
    /// A later treatment.
    Later,
}

/// How the follow-up is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUpKind {
    /// The numbers must be confirmed afterwards (re-query or download).
    ConfirmAfterwards,
    /// An oral confirmation suffices: the clinic already holds the data (R17 later treatment).
    OralConfirmation,
}

/// Facts about the visit whose check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowUpFacts {
    /// The facility type.
    pub facility: FacilityType,
    /// The visit (treatment) date.
    pub visit: NaiveDate,
    /// First or later treatment.
    pub treatment: Treatment,
    /// The next booked treatment, if any.
    pub next_visit: Option<NaiveDate>,
    /// Whether the clinic already holds the data from earlier treatment.
    pub data_already_held: bool,
}

/// The follow-up to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    /// How.
    pub kind: FollowUpKind,
    /// By when (the next treatment in the same month, else the end of the month after).
    pub due: NaiveDate,
    /// The last day the result can still be viewed / re-queried (R20).
    pub viewable_until: NaiveDate,
    /// The rule that decided.
    pub rule: RuleId,
    /// Explanation for staff.
    pub note_ja: String,
}

/// Bad facts for a deadline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadlineError {
    /// The next visit is before the visit.
    #[error("next visit {next} is before the visit {visit}")]
    NextBeforeVisit {
        /// The visit.
        visit: NaiveDate,
        /// The next visit.
        next: NaiveDate,
    },
}

impl DeadlineError {
    /// The message shown to staff.
    pub fn message_ja(&self) -> String {
        match self {
            DeadlineError::NextBeforeVisit { visit, next } => format!(
                "次回来院日（{}）が受診日（{}）より前です。日付を確認してください。",
                date_ja(*next),
                date_ja(*visit)
            ),
        }
    }
}

/// R20: a result can be viewed until the end of the month after the treatment month.
pub fn viewable_until(visit: NaiveDate) -> NaiveDate {
    end_of_nth_month_after(visit, 1)
}

/// R20: how long Tsunagi keeps a result: the viewing period by default; while the check is
/// unresolved it is kept (`None` = no end yet); `extra_months` is the explicit longer setting.
pub fn retention_until(visit: NaiveDate, unresolved: bool, extra_months: u32) -> Option<NaiveDate> {
    if unresolved {
        return None;
    }
    Some(end_of_nth_month_after(visit, 1 + extra_months))
}

/// The day a claim for `visit` is due: receipts (レセプト) of a month are submitted by the
/// `submission_day` (the 10th, a setting) of the following month, so a captured check must
/// be confirmed (or claimed as 不詳) by then.
pub fn claim_submission_deadline(visit: NaiveDate, submission_day: u32) -> NaiveDate {
    let first_of_next = end_of_month(visit).succ_opt().unwrap_or(NaiveDate::MAX);
    first_of_next
        .with_day(submission_day.clamp(1, 28))
        .unwrap_or(first_of_next)
}

/// R16, R17, R20: the follow-up for a visit whose check failed.
pub fn follow_up(facts: &FollowUpFacts) -> Result<FollowUp, DeadlineError> {
    if let Some(next) = facts.next_visit {
        if next < facts.visit {
            return Err(DeadlineError::NextBeforeVisit {
                visit: facts.visit,
                next,
            });
        }
    }
    let view = viewable_until(facts.visit);
    let next_in_month = facts.next_visit.filter(|n| *n <= end_of_month(facts.visit));
    let due = next_in_month.unwrap_or(view);
    let ryouyouhi = facts.facility.is_ryouyouhi();
    let (kind, rule, note_ja) = if ryouyouhi
        && facts.treatment == Treatment::Later
        && facts.data_already_held
    {
        (
            FollowUpKind::OralConfirmation,
            RuleId(17),
            "2回目以降の施術で資格情報を把握済みのため、口頭での確認で足ります。".to_string(),
        )
    } else if ryouyouhi {
        (
            FollowUpKind::ConfirmAfterwards,
            RuleId(17),
            format!(
                "初検のため、{}までに（同じ月の次回施術時など）資格を必ず確認してください。確認するまで未確認のまま残ります。",
                date_ja(due)
            ),
        )
    } else {
        (
            FollowUpKind::ConfirmAfterwards,
            RuleId(16),
            format!(
                "{}までに再照会（または資格情報のダウンロード）で資格を確認してください。結果は{}まで閲覧できます。",
                date_ja(due),
                date_ja(view)
            ),
        )
    };
    Ok(FollowUp {
        kind,
        due,
        viewable_until: view,
        rule,
        note_ja,
    })
}

/// The state of an open follow-up on `today`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUpState {
    /// Confirmed: closed.
    Confirmed,
    /// Not yet due.
    Open,
    /// Past due and unconfirmed (a 柔整・あはき check stays here until confirmed, R17).
    Overdue,
}

/// The state of a follow-up due on `due`.
pub fn follow_up_state(due: NaiveDate, today: NaiveDate, confirmed: bool) -> FollowUpState {
    if confirmed {
        FollowUpState::Confirmed
    } else if today > due {
        FollowUpState::Overdue
    } else {
        FollowUpState::Open
    }
}

#[cfg(test)]
mod claim_deadline_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn claims_are_due_on_the_tenth_of_the_next_month() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        for (visit, due) in [
            ("2026-11-01", "2026-12-10"),
            ("2026-11-30", "2026-12-10"),
            ("2026-12-31", "2027-01-10"),
            ("2027-01-31", "2027-02-10"),
        ] {
            assert_eq!(claim_submission_deadline(d(visit), 10), d(due), "{visit}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::rules::parse_date;
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn follow_up_table() {
        use FacilityType::*;
        use FollowUpKind::*;
        use Treatment::*;
        let rows = [
            (
                "R16",
                "medical, no next visit",
                Medical,
                "2025-01-15",
                First,
                None,
                false,
                ConfirmAfterwards,
                "2025-02-28",
            ),
            (
                "R16",
                "medical, 31 Jan visit",
                Medical,
                "2025-01-31",
                Later,
                None,
                true,
                ConfirmAfterwards,
                "2025-02-28",
            ),
            (
                "R16",
                "medical, next visit in month",
                Pharmacy,
                "2025-01-15",
                Later,
                Some("2025-01-20"),
                false,
                ConfirmAfterwards,
                "2025-01-20",
            ),
            (
                "R17",
                "柔整 初検, next in month",
                Judo,
                "2025-03-03",
                First,
                Some("2025-03-10"),
                false,
                ConfirmAfterwards,
                "2025-03-10",
            ),
            (
                "R17",
                "柔整 初検, next month only",
                Judo,
                "2025-03-31",
                First,
                Some("2025-04-01"),
                false,
                ConfirmAfterwards,
                "2025-04-30",
            ),
            (
                "R17",
                "あはき later, data held",
                Ahaki,
                "2025-03-03",
                Later,
                Some("2025-03-10"),
                true,
                OralConfirmation,
                "2025-03-10",
            ),
            (
                "R17",
                "あはき later, data not held",
                Ahaki,
                "2025-03-03",
                Later,
                None,
                false,
                ConfirmAfterwards,
                "2025-04-30",
            ),
            (
                "R20",
                "December visit: end of January",
                Dental,
                "2025-12-31",
                First,
                None,
                false,
                ConfirmAfterwards,
                "2026-01-31",
            ),
        ];
        for (rule, case, facility, visit, t, next, held, kind, due) in rows {
            let f = follow_up(&FollowUpFacts {
                facility,
                visit: d(visit),
                treatment: t,
                next_visit: next.map(d),
                data_already_held: held,
            })
            .unwrap();
            assert_eq!((f.kind, f.due), (kind, d(due)), "{rule} {case}");
        }
        let e = follow_up(&FollowUpFacts {
            facility: Medical,
            visit: d("2025-03-03"),
            treatment: First,
            next_visit: Some(d("2025-03-02")),
            data_already_held: false,
        })
        .unwrap_err();
        assert!(e.message_ja().contains("次回来院日"));
    }

    #[test]
    fn retention_and_state_table() {
        assert_eq!(
            retention_until(d("2025-01-10"), false, 0),
            Some(d("2025-02-28")),
            "R20 default"
        );
        assert_eq!(
            retention_until(d("2025-01-10"), true, 0),
            None,
            "R20 unresolved kept"
        );
        assert_eq!(
            retention_until(d("2025-01-10"), false, 12),
            Some(d("2026-02-28")),
            "R20 explicit setting"
        );
        let due = d("2025-02-28");
        assert_eq!(
            follow_up_state(due, d("2025-02-28"), false),
            FollowUpState::Open,
            "R17 on the due date"
        );
        assert_eq!(
            follow_up_state(due, d("2025-03-01"), false),
            FollowUpState::Overdue,
            "R17 the day after"
        );
        assert_eq!(
            follow_up_state(due, d("2025-09-01"), true),
            FollowUpState::Confirmed,
            "R17 confirmed"
        );
    }

    proptest! {
        #[test]
        fn deadline_never_before_visit(days in 0i64..20_000, gap in proptest::option::of(0i64..90), fac in 0usize..6, first: bool, held: bool) {
            let visit = d("2000-01-01") + chrono::Duration::days(days);
            let f = follow_up(&FollowUpFacts {
                facility: FacilityType::ALL[fac],
                visit,
                treatment: if first { Treatment::First } else { Treatment::Later },
                next_visit: gap.map(|g| visit + chrono::Duration::days(g)),
                data_already_held: held,
            }).unwrap();
            prop_assert!(f.due >= visit);
            prop_assert!(f.due <= f.viewable_until);
        }
    }
}
