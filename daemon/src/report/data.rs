//! The seed's October 2024 usage figures (R36), extracted once into
//! `daemon/data/usage-2024-10.json` and compiled into the binary.

use serde::Deserialize;

use crate::rules::incentive::{UsageCounts, UsageRate};

/// The data file, embedded so the report works without the repository at hand.
const USAGE_2024_10: &str = include_str!("../../data/usage-2024-10.json");

/// The facility categories the ministry publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeedCategory {
    /// 病院.
    Hospital,
    /// 医科診療所.
    MedicalClinic,
    /// 歯科診療所.
    DentalClinic,
    /// 薬局.
    Pharmacy,
}

impl SeedCategory {
    /// All four, in the seed's order.
    pub const ALL: [SeedCategory; 4] = [
        SeedCategory::Hospital,
        SeedCategory::MedicalClinic,
        SeedCategory::DentalClinic,
        SeedCategory::Pharmacy,
    ];

    /// Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self {
            SeedCategory::Hospital => "病院",
            SeedCategory::MedicalClinic => "医科診療所",
            SeedCategory::DentalClinic => "歯科診療所",
            SeedCategory::Pharmacy => "薬局",
        }
    }
}

/// National totals.
#[derive(Debug, Clone, Deserialize)]
pub struct National {
    /// All online checks.
    pub total: u64,
    /// Checks by card.
    pub card: u64,
    /// Published rate, percent with two decimals.
    pub rate: String,
    /// Change from the previous month, percentage points.
    pub change_points: String,
}

/// National totals of one category.
#[derive(Debug, Clone, Deserialize)]
pub struct CategoryTotal {
    /// The category.
    pub category: SeedCategory,
    /// Japanese label as printed.
    pub label: String,
    /// All online checks.
    pub total: u64,
    /// Checks by card.
    pub card: u64,
}

/// A prefecture's overall rate.
#[derive(Debug, Clone, Deserialize)]
pub struct PrefectureRate {
    /// JIS code 1–47.
    pub code: u8,
    /// Full name (東京都).
    pub name: String,
    /// Short name used in the per-type tables (東京).
    pub short: String,
    /// Published rate.
    pub rate: String,
    /// Change from September 2024, percentage points.
    pub change_points: String,
}

/// One row of a per-type prefecture table.
#[derive(Debug, Clone, Deserialize)]
pub struct RankRow {
    /// Rank in October 2024.
    pub rank: u8,
    /// Rank in September 2024.
    pub prev_rank: u8,
    /// Short prefecture name.
    pub prefecture: String,
    /// Published rate.
    pub rate: String,
    /// Checks by card.
    pub card: u64,
    /// All online checks.
    pub total: u64,
}

/// A per-type prefecture table.
#[derive(Debug, Clone, Deserialize)]
pub struct CategoryTable {
    /// The category.
    pub category: SeedCategory,
    /// 47 rows, by rank.
    pub rows: Vec<RankRow>,
}

/// A later national figure (online-check basis).
#[derive(Debug, Clone, Deserialize)]
pub struct LaterFigure {
    /// `YYYY-MM`.
    pub month: String,
    /// Rate, percent.
    pub rate: String,
}

/// The whole data file.
#[derive(Debug, Clone, Deserialize)]
pub struct UsageData {
    /// `2024-10`.
    pub month: String,
    /// `online-check`.
    pub basis: String,
    /// Where the figures come from.
    pub source: String,
    /// Corrections made to obvious typos in the seed.
    pub corrections: Vec<String>,
    /// National totals.
    pub national: National,
    /// National totals per category.
    pub facility_types: Vec<CategoryTotal>,
    /// Prefecture overall rates, JIS order.
    pub prefectures: Vec<PrefectureRate>,
    /// Per-category prefecture tables.
    pub by_facility_type: Vec<CategoryTable>,
    /// R36's later national figures.
    pub later_national: Vec<LaterFigure>,
}

/// The embedded data could not be read (a build defect, reported rather than panicking).
#[derive(Debug, thiserror::Error)]
#[error("embedded usage data is invalid: {0}")]
pub struct DataError(#[from] serde_json::Error);

impl UsageData {
    /// The embedded October 2024 figures.
    pub fn october_2024() -> Result<Self, DataError> {
        Ok(serde_json::from_str(USAGE_2024_10)?)
    }

    /// National counts.
    pub fn national_counts(&self) -> UsageCounts {
        UsageCounts {
            card: self.national.card,
            total: self.national.total,
        }
    }

    /// National counts of a category.
    pub fn category_counts(&self, c: SeedCategory) -> Option<UsageCounts> {
        self.facility_types
            .iter()
            .find(|t| t.category == c)
            .map(|t| UsageCounts {
                card: t.card,
                total: t.total,
            })
    }

    /// A prefecture by full name, short name or JIS code.
    pub fn prefecture(&self, query: &str) -> Option<&PrefectureRate> {
        let q = query.trim();
        let code: Option<u8> = q.parse().ok();
        self.prefectures
            .iter()
            .find(|p| p.name == q || p.short == q || Some(p.code) == code)
    }

    /// A prefecture's row in a category table.
    pub fn prefecture_row(&self, c: SeedCategory, short: &str) -> Option<&RankRow> {
        self.by_facility_type
            .iter()
            .find(|t| t.category == c)
            .and_then(|t| t.rows.iter().find(|r| r.prefecture == short))
    }

    /// A prefecture's overall counts: the sum of its four category rows.
    pub fn prefecture_counts(&self, short: &str) -> UsageCounts {
        SeedCategory::ALL
            .iter()
            .filter_map(|c| self.prefecture_row(*c, short))
            .fold(UsageCounts::default(), |acc, r| {
                acc.plus(UsageCounts {
                    card: r.card,
                    total: r.total,
                })
            })
    }

    /// R36's later national figures, parsed.
    pub fn later(&self) -> Vec<(String, UsageRate)> {
        self.later_national
            .iter()
            .filter_map(|f| UsageRate::parse_percent(&f.rate).map(|r| (f.month.clone(), r)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn totals_match_the_seed() {
        let d = UsageData::october_2024().unwrap();
        // R36: the seed's headline figures.
        assert_eq!(d.national.total, 217_694_389);
        assert_eq!(d.national.card, 34_121_001);
        assert_eq!(d.national_counts().rate().unwrap().to_string(), "15.67%");
        assert_eq!(d.national.rate, "15.67");
        let want = [
            (SeedCategory::Hospital, 13_735_667, 3_840_623),
            (SeedCategory::MedicalClinic, 90_570_748, 11_692_591),
            (SeedCategory::DentalClinic, 15_088_920, 3_319_469),
            (SeedCategory::Pharmacy, 98_299_054, 15_268_318),
        ];
        let mut sum = UsageCounts::default();
        for (c, total, card) in want {
            let got = d.category_counts(c).unwrap();
            assert_eq!((got.total, got.card), (total, card), "{c:?}");
            sum = sum.plus(got);
            // The 47 prefecture rows add up to the national figure of the category.
            let t = d.by_facility_type.iter().find(|t| t.category == c).unwrap();
            assert_eq!(t.rows.len(), 47);
            let rows = t.rows.iter().fold(UsageCounts::default(), |a, r| {
                a.plus(UsageCounts {
                    card: r.card,
                    total: r.total,
                })
            });
            assert_eq!(
                (rows.total, rows.card),
                (total, card),
                "{c:?} prefecture sum"
            );
            // Ranks 1..=47 in order, and each printed rate matches its counts.
            for (i, r) in t.rows.iter().enumerate() {
                assert_eq!(usize::from(r.rank), i + 1);
                let rate = UsageCounts {
                    card: r.card,
                    total: r.total,
                }
                .rate()
                .unwrap();
                assert_eq!(
                    Some(rate),
                    UsageRate::parse_percent(&r.rate),
                    "{c:?} {}",
                    r.prefecture
                );
            }
        }
        assert_eq!((sum.total, sum.card), (217_694_389, 34_121_001));
        // The 47 prefectures' overall rates match the sums of their category rows.
        assert_eq!(d.prefectures.len(), 47);
        for p in &d.prefectures {
            let counts = d.prefecture_counts(&p.short);
            assert_eq!(
                counts.rate(),
                UsageRate::parse_percent(&p.rate),
                "{}",
                p.name
            );
        }
        assert_eq!(d.prefecture("東京都").unwrap().rate, "14.01");
        assert_eq!(d.prefecture("沖縄").unwrap().rate, "7.43");
        assert_eq!(d.prefecture("13").unwrap().short, "東京");
        assert!(d.prefecture("東京府").is_none());
        assert_eq!(d.later().len(), 9);
    }
}
