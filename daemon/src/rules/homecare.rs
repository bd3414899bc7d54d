//! R19: 訪問看護・訪問診療 (居宅同意取得型): the card at the first visit, re-queries after.

use chrono::NaiveDate;

use super::{RuleId, RuleSettings};
use crate::domain::IdentityMethod;

/// What to do at a home visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeVisitPlan {
    /// First visit: read the card at home on the facility's activated device.
    CardAtHome {
        /// The identity methods allowed on that date.
        methods: Vec<IdentityMethod>,
    },
    /// Later visit while care continues: no card; re-query (再照会) from the station's terminal.
    Requery,
    /// No signal at the home: apply R13–R16 now and re-query on return.
    RequeryOnReturn,
}

impl HomeVisitPlan {
    /// The rule.
    pub fn rule(&self) -> RuleId {
        RuleId(19)
    }

    /// Japanese instruction.
    pub fn label_ja(&self) -> String {
        match self {
            HomeVisitPlan::CardAtHome { methods } => {
                let m: Vec<&str> = methods.iter().map(|m| m.label_ja()).collect();
                format!(
                    "初回訪問: 患者宅で施設の端末にカードを読み取り、{}で本人確認します。",
                    m.join("または")
                )
            }
            HomeVisitPlan::Requery => {
                "継続中の訪問: カードは不要です。事業所の端末から初回の情報で再照会します。"
                    .to_string()
            }
            HomeVisitPlan::RequeryOnReturn => {
                "電波がないため、通常の負担割合で受け付け、戻ってから再照会します（事後確認）。"
                    .to_string()
            }
        }
    }
}

/// R19: the plan for a home visit on `visit`.
pub fn home_visit_plan(
    first_visit: bool,
    has_signal: bool,
    visit: NaiveDate,
    settings: &RuleSettings,
) -> HomeVisitPlan {
    if !has_signal {
        return HomeVisitPlan::RequeryOnReturn;
    }
    if first_visit {
        let mut methods = vec![IdentityMethod::Pin];
        if visit >= settings.home_visual_from {
            methods.push(IdentityMethod::Visual);
        }
        HomeVisitPlan::CardAtHome { methods }
    } else {
        HomeVisitPlan::Requery
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::rules::parse_date;

    #[test]
    fn home_visit_table() {
        let s = RuleSettings::default();
        let pin = HomeVisitPlan::CardAtHome {
            methods: vec![IdentityMethod::Pin],
        };
        let both = HomeVisitPlan::CardAtHome {
            methods: vec![IdentityMethod::Pin, IdentityMethod::Visual],
        };
        let rows = [
            (
                "R19",
                "first visit 2024-09-30: PIN only",
                true,
                true,
                "2024-09-30",
                pin,
            ),
            (
                "R19",
                "first visit 2024-10-01: PIN or visual",
                true,
                true,
                "2024-10-01",
                both,
            ),
            (
                "R19",
                "later visit: re-query",
                false,
                true,
                "2025-01-10",
                HomeVisitPlan::Requery,
            ),
            (
                "R19",
                "no signal: re-query on return",
                true,
                false,
                "2025-01-10",
                HomeVisitPlan::RequeryOnReturn,
            ),
        ];
        for (rule, case, first, signal, visit, want) in rows {
            let got = home_visit_plan(first, signal, parse_date(visit).unwrap(), &s);
            assert_eq!(got.rule().to_string(), rule);
            assert_eq!(got, want, "{rule} {case}");
        }
    }
}
