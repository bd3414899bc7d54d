//! R35, R37: the usage rate and the incentive tier (医療DX推進体制整備加算) it reaches.

use std::fmt;

use super::calendar::YearMonth;
use super::RuleId;
use crate::domain::FacilityType;

/// Which definition a rate uses (R35).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateBasis {
    /// Card checks ÷ all online checks (published until November 2025; Tsunagi's own).
    OnlineCheck,
    /// People using the card ÷ receipts (headline from the December 2025 publication).
    Receipt,
}

impl RateBasis {
    /// Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self {
            RateBasis::OnlineCheck => "オンライン資格確認件数ベース",
            RateBasis::Receipt => "レセプト件数ベース",
        }
    }
}

/// A usage rate in hundredths of a percent (1567 = 15.67%).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsageRate(pub u32);

impl UsageRate {
    /// Parses `15.67` (percent, at most two decimals).
    pub fn parse_percent(s: &str) -> Option<Self> {
        let (int, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
        if int.is_empty()
            || frac.len() > 2
            || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let i: u32 = int.parse().ok()?;
        let f: u32 = format!("{frac:0<2}").parse().ok()?;
        let v = i.checked_mul(100)?.checked_add(f)?;
        (v <= 10_000).then_some(Self(v))
    }

    /// As a float percentage (for charts).
    pub fn as_percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl fmt::Display for UsageRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}%", self.0 / 100, self.0 % 100)
    }
}

/// Card checks and all online checks in a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageCounts {
    /// Checks by マイナ保険証.
    pub card: u64,
    /// All online checks.
    pub total: u64,
}

impl UsageCounts {
    /// The rate rounded half up to hundredths of a percent; `None` when there were no checks.
    pub fn rate(self) -> Option<UsageRate> {
        if self.total == 0 || self.card > self.total {
            return None;
        }
        let num = u128::from(self.card) * 10_000 * 2 + u128::from(self.total);
        let v = num / (u128::from(self.total) * 2);
        u32::try_from(v).ok().map(UsageRate)
    }

    /// Whether the exact (unrounded) rate is at least `percent`%.
    pub fn reaches(self, percent: u32) -> bool {
        self.total > 0
            && u128::from(self.card) * 100 >= u128::from(percent) * u128::from(self.total)
    }

    /// Adds two periods.
    pub fn plus(self, other: UsageCounts) -> UsageCounts {
        UsageCounts {
            card: self.card.saturating_add(other.card),
            total: self.total.saturating_add(other.total),
        }
    }
}

/// The scheme in force in a claim month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncentiveScheme {
    /// No usage-rate tiers (before October 2024).
    None,
    /// 医療DX推進体制整備加算: tier 1/2/3 thresholds in percent.
    Dx([u32; 3]),
    /// 2026 revision: 電子的診療情報連携体制整備加算, all tiers need at least this rate.
    Renkei(u32),
}

/// R37: the scheme for a claim month.
pub fn incentive_scheme(claim: YearMonth) -> IncentiveScheme {
    let ym = |y, m| YearMonth::new(y, m).unwrap_or(claim);
    let table: [(YearMonth, YearMonth, [u32; 3]); 5] = [
        (ym(2024, 10), ym(2024, 12), [15, 10, 5]),
        (ym(2025, 1), ym(2025, 3), [30, 20, 10]),
        (ym(2025, 4), ym(2025, 9), [45, 30, 15]),
        (ym(2025, 10), ym(2026, 2), [60, 40, 25]),
        (ym(2026, 3), ym(2026, 5), [70, 50, 30]),
    ];
    if claim < ym(2024, 10) {
        return IncentiveScheme::None;
    }
    for (from, to, t) in table {
        if (from..=to).contains(&claim) {
            return IncentiveScheme::Dx(t);
        }
    }
    IncentiveScheme::Renkei(30)
}

/// The tier reached in a claim month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncentiveResult {
    /// The claim month.
    pub claim_month: YearMonth,
    /// The scheme.
    pub scheme: IncentiveScheme,
    /// The month whose rate counted (the best of the 3rd–5th month before).
    pub best_month: Option<(YearMonth, UsageCounts)>,
    /// Tier 1–3 reached (Dx), or 1 when the Renkei minimum is met; `None` = none.
    pub tier: Option<u8>,
    /// Always R37.
    pub rule: RuleId,
    /// Explanation for staff.
    pub note_ja: String,
}

/// R37: the tier a facility reaches in `claim`, from its monthly counts (any order; months
/// outside the 3rd–5th before the claim month are ignored).
pub fn incentive_tier(
    claim: YearMonth,
    facility: FacilityType,
    history: &[(YearMonth, UsageCounts)],
) -> IncentiveResult {
    let scheme = incentive_scheme(claim);
    let window = [claim.plus(-5), claim.plus(-4), claim.plus(-3)];
    let best = history
        .iter()
        .filter(|(m, c)| window.contains(m) && c.rate().is_some())
        // Compare exact ratios: card1/total1 vs card2/total2.
        .max_by(|(_, a), (_, b)| {
            (u128::from(a.card) * u128::from(b.total))
                .cmp(&(u128::from(b.card) * u128::from(a.total)))
        })
        .copied();
    let mut result = IncentiveResult {
        claim_month: claim,
        scheme,
        best_month: best,
        tier: None,
        rule: RuleId(37),
        note_ja: String::new(),
    };
    if facility.is_ryouyouhi() {
        result.scheme = IncentiveScheme::None;
        result.note_ja = "柔整・あはきには利用率に応じた加算はありません。".to_string();
        return result;
    }
    let Some((month, counts)) = best else {
        result.note_ja = format!(
            "{}の算定には{}〜{}の利用率が必要ですが、記録がありません。",
            claim.label_ja(),
            window[0].label_ja(),
            window[2].label_ja()
        );
        return result;
    };
    let rate = counts.rate().map(|r| r.to_string()).unwrap_or_default();
    match scheme {
        IncentiveScheme::None => {
            result.note_ja = format!("{}は利用率による加算の区分がありません。", claim.label_ja());
        }
        IncentiveScheme::Dx(t) => {
            result.tier = t
                .iter()
                .position(|p| counts.reaches(*p))
                .map(|i| i as u8 + 1);
            result.note_ja = match result.tier {
                Some(tier) => format!(
                    "{}請求: {}の利用率 {rate} で医療DX推進体制整備加算の利用率区分{tier}（基準 {}%/{}%/{}%）に達します。",
                    claim.label_ja(), month.label_ja(), t[0], t[1], t[2]
                ),
                None => format!(
                    "{}請求: 最高の利用率 {rate}（{}）は最低基準 {}% に届きません。",
                    claim.label_ja(), month.label_ja(), t[2]
                ),
            };
        }
        IncentiveScheme::Renkei(min) => {
            result.tier = counts.reaches(min).then_some(1);
            result.note_ja = format!(
                "{}請求: 2026年改定の電子的診療情報連携体制整備加算は利用率{min}%以上が必要です。{}の利用率 {rate} は{}。",
                claim.label_ja(),
                month.label_ja(),
                if result.tier.is_some() { "基準を満たします" } else { "基準に届きません" }
            );
        }
    }
    result
}

#[cfg(test)]
mod tests {
    // Rule tables read best as inline tuples.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]
    use super::*;
    use proptest::prelude::*;

    fn ym(s: &str) -> YearMonth {
        YearMonth::parse(s).unwrap()
    }

    fn c(card: u64, total: u64) -> UsageCounts {
        UsageCounts { card, total }
    }

    #[test]
    fn rate_rounding() {
        assert_eq!(
            c(34_121_001, 217_694_389).rate(),
            Some(UsageRate(1567)),
            "R36 national"
        );
        assert_eq!(c(1, 3).rate().unwrap().to_string(), "33.33%");
        assert_eq!(c(2, 3).rate().unwrap().to_string(), "66.67%");
        assert_eq!(c(0, 0).rate(), None);
        assert_eq!(c(5, 4).rate(), None);
        assert_eq!(UsageRate::parse_percent("15.67"), Some(UsageRate(1567)));
        assert_eq!(UsageRate::parse_percent("7.5"), Some(UsageRate(750)));
        assert_eq!(UsageRate::parse_percent("x"), None);
        // 14.996% rounds to 15.00% but does not reach 15%.
        assert!(!c(14_996, 100_000).reaches(15));
        assert!(c(15, 100).reaches(15));
    }

    #[test]
    fn incentive_table() {
        let f = FacilityType::Medical;
        let rows: Vec<(&str, &str, &str, Vec<(&str, UsageCounts)>, Option<u8>)> = vec![
            (
                "R37",
                "2024-09 claim: no scheme",
                "2024-09",
                vec![("2024-05", c(50, 100))],
                None,
            ),
            (
                "R37",
                "2024-10 claim, 15% in 2024-05: tier 1",
                "2024-10",
                vec![("2024-05", c(15, 100))],
                Some(1),
            ),
            (
                "R37",
                "2024-12 claim, 10% in 2024-09: tier 2",
                "2024-12",
                vec![("2024-09", c(10, 100))],
                Some(2),
            ),
            (
                "R37",
                "2024-12 claim, 4.99%: none",
                "2024-12",
                vec![("2024-09", c(499, 10_000))],
                None,
            ),
            (
                "R37",
                "2025-01 claim, best of three: 30%",
                "2025-01",
                vec![
                    ("2024-08", c(30, 100)),
                    ("2024-09", c(5, 100)),
                    ("2024-10", c(20, 100)),
                ],
                Some(1),
            ),
            (
                "R37",
                "2025-01 claim ignores the 2nd month before",
                "2025-01",
                vec![("2024-11", c(90, 100))],
                None,
            ),
            (
                "R37",
                "2025-03 claim: 30/20/10",
                "2025-03",
                vec![("2024-12", c(10, 100))],
                Some(3),
            ),
            (
                "R37",
                "2025-04 claim: 45/30/15",
                "2025-04",
                vec![("2024-12", c(29, 100))],
                Some(3),
            ),
            (
                "R37",
                "2025-09 claim: 45",
                "2025-09",
                vec![("2025-06", c(45, 100))],
                Some(1),
            ),
            (
                "R37",
                "2025-10 claim: 60/40/25",
                "2025-10",
                vec![("2025-06", c(45, 100))],
                Some(2),
            ),
            (
                "R37",
                "2026-02 claim: 25 reaches 3",
                "2026-02",
                vec![("2025-10", c(25, 100))],
                Some(3),
            ),
            (
                "R37",
                "2026-03 claim: 70/50/30",
                "2026-03",
                vec![("2025-10", c(25, 100))],
                None,
            ),
            (
                "R37",
                "2026-05 claim: 70",
                "2026-05",
                vec![("2025-12", c(70, 100))],
                Some(1),
            ),
            (
                "R37",
                "2026-06 claim: 2026 revision, 30% met",
                "2026-06",
                vec![("2026-01", c(30, 100))],
                Some(1),
            ),
            (
                "R37",
                "2026-06 claim: 29% not met",
                "2026-06",
                vec![("2026-01", c(29, 100))],
                None,
            ),
        ];
        for (rule, case, claim, hist, want) in rows {
            let h: Vec<(YearMonth, UsageCounts)> =
                hist.into_iter().map(|(m, c)| (ym(m), c)).collect();
            let r = incentive_tier(ym(claim), f, &h);
            assert_eq!(r.tier, want, "{rule} {case}: {}", r.note_ja);
            assert_eq!(r.rule.to_string(), rule);
        }
        let r = incentive_tier(
            ym("2025-01"),
            FacilityType::Judo,
            &[(ym("2024-09"), c(90, 100))],
        );
        assert_eq!(
            (r.tier, r.scheme),
            (None, IncentiveScheme::None),
            "R37 no incentive for 柔整"
        );
    }

    proptest! {
        #[test]
        fn higher_rate_never_lower_tier(card in 0u64..1000, extra in 0u64..1000, total in 1000u64..2000, m in 0i32..30) {
            let claim = ym("2024-10").plus(m);
            let lo = incentive_tier(claim, FacilityType::Dental, &[(claim.plus(-3), c(card, total))]);
            let hi = incentive_tier(claim, FacilityType::Dental, &[(claim.plus(-3), c((card + extra).min(total), total))]);
            // Tier 1 is the best: a higher rate gives a tier number no larger.
            match (lo.tier, hi.tier) {
                (Some(a), Some(b)) => prop_assert!(b <= a),
                (Some(_), None) => prop_assert!(false, "higher rate lost its tier"),
                _ => {}
            }
        }
    }
}
