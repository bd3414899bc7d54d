//! Usage report (R35–R37): the clinic's own マイナ保険証 usage rate beside its prefecture, its
//! facility type and the nation, with the incentive tier the rate reaches, as a text table and
//! as a printable PNG chart.
//!
//! Until the check store exists the clinic's counts come from a small CSV file
//! (`YYYY-MM,card,total` per line); [`parse_counts`] reads its text, the caller reads the file.

pub mod chart;
pub mod data;

use std::fmt::Write as _;

use crate::domain::FacilityType;
use crate::rules::calendar::YearMonth;
use crate::rules::incentive::{incentive_tier, IncentiveResult, RateBasis, UsageCounts, UsageRate};
use data::{DataError, SeedCategory, UsageData};

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The prefecture does not exist.
    #[error("unknown prefecture {0:?}")]
    UnknownPrefecture(String),
    /// A line of the counts file is malformed.
    #[error("counts file line {line}: {what}")]
    CountsLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong (Japanese).
        what: String,
    },
    /// The counts file has no line for the month.
    #[error("no counts for {0}")]
    NoCountsForMonth(YearMonth),
    /// The embedded data is broken.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The CJK font is missing or unreadable.
    #[error("font {path} unavailable")]
    Font {
        /// Where it was looked for.
        path: String,
    },
    /// Drawing the PNG failed.
    #[error("chart: {0}")]
    Chart(String),
}

impl ReportError {
    /// The message shown to staff.
    pub fn message_ja(&self) -> String {
        match self {
            ReportError::UnknownPrefecture(s) => format!(
                "都道府県「{s}」は存在しません。「東京都」「東京」または番号（13）で指定してください。"
            ),
            ReportError::CountsLine { line, what } => {
                format!("件数ファイルの{line}行目: {what}（形式: 年-月,マイナ保険証件数,オンライン資格確認件数 例 2024-10,120,800）")
            }
            ReportError::NoCountsForMonth(m) => format!("件数ファイルに{}の行がありません。", m.label_ja()),
            ReportError::Data(_) => "内蔵の利用率データを読めません。開発者に連絡してください。".to_string(),
            ReportError::Font { path } => format!(
                "グラフ用の日本語フォント {path} が見つかりません。`sudo apt-get install fonts-ipafont-gothic`（scripts/setup-system.sh）でインストールしてください。"
            ),
            ReportError::Chart(_) => "グラフを作成できませんでした。保存先のフォルダーと空き容量を確認してください。".to_string(),
        }
    }
}

/// Parses the counts file: `YYYY-MM,card,total` per line; blank lines, `#` comments and a
/// header line starting with a letter are skipped.
pub fn parse_counts(text: &str) -> Result<Vec<(YearMonth, UsageCounts)>, ReportError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        let err = |what: String| ReportError::CountsLine { line, what };
        let cols: Vec<&str> = l.split(',').map(str::trim).collect();
        if cols.len() != 3 {
            return Err(err(format!("3列ではなく{}列あります", cols.len())));
        }
        let month = YearMonth::parse(cols[0]).map_err(|e| err(e.message_ja()))?;
        let num = |s: &str, name: &str| {
            s.replace('_', "")
                .parse::<u64>()
                .map_err(|_| err(format!("{name}「{s}」が数字ではありません")))
        };
        let card = num(cols[1], "マイナ保険証件数")?;
        let total = num(cols[2], "オンライン資格確認件数")?;
        if card > total {
            return Err(err(format!(
                "マイナ保険証件数（{card}）が全体の件数（{total}）を超えています"
            )));
        }
        out.push((month, UsageCounts { card, total }));
    }
    Ok(out)
}

/// The published category a facility type is compared with (`None`: not published).
pub fn seed_category(facility: FacilityType, hospital: bool) -> Option<SeedCategory> {
    match facility {
        FacilityType::Medical if hospital => Some(SeedCategory::Hospital),
        FacilityType::Medical => Some(SeedCategory::MedicalClinic),
        FacilityType::Dental => Some(SeedCategory::DentalClinic),
        FacilityType::Pharmacy => Some(SeedCategory::Pharmacy),
        FacilityType::Judo | FacilityType::Ahaki | FacilityType::HomeNursing => None,
    }
}

/// One line of the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    /// Label (Japanese).
    pub label: String,
    /// The rate.
    pub rate: Option<UsageRate>,
    /// Counts, when known.
    pub counts: Option<UsageCounts>,
    /// Rank among 47 prefectures (with September's in brackets), when published.
    pub rank: Option<(u8, u8)>,
}

/// The report.
#[derive(Debug, Clone)]
pub struct UsageReport {
    /// The clinic's month.
    pub month: YearMonth,
    /// The facility type.
    pub facility: FacilityType,
    /// Rows: the clinic first, then prefecture and national references.
    pub rows: Vec<ReportRow>,
    /// The incentive tier in the claim months the clinic's month counts for.
    pub incentives: Vec<IncentiveResult>,
    /// R36's later national figures.
    pub later_national: Vec<(String, UsageRate)>,
    /// The month of the reference figures.
    pub reference_month: String,
    /// Notes (basis, corrections).
    pub notes: Vec<String>,
}

/// Builds the report for `month` from the clinic's monthly counts.
pub fn build_report(
    data: &UsageData,
    counts: &[(YearMonth, UsageCounts)],
    month: YearMonth,
    facility: FacilityType,
    hospital: bool,
    prefecture: &str,
) -> Result<UsageReport, ReportError> {
    let pref = data
        .prefecture(prefecture)
        .ok_or_else(|| ReportError::UnknownPrefecture(prefecture.trim().to_string()))?;
    let own = counts
        .iter()
        .filter(|(m, _)| *m == month)
        .fold(None, |acc: Option<UsageCounts>, (_, c)| {
            Some(acc.unwrap_or_default().plus(*c))
        })
        .ok_or(ReportError::NoCountsForMonth(month))?;
    let category = seed_category(facility, hospital);
    let mut rows = vec![ReportRow {
        label: format!("自院（{}）", month.label_ja()),
        rate: own.rate(),
        counts: Some(own),
        rank: None,
    }];
    let mut notes = vec![format!(
        "利用率 = マイナ保険証利用件数 ÷ オンライン資格確認利用件数（{}）。2025年12月公表分からの国の主指標はレセプト件数ベースで、ここでは使っていません。",
        RateBasis::OnlineCheck.label_ja()
    )];
    if let Some(c) = category {
        if let Some(r) = data.prefecture_row(c, &pref.short) {
            rows.push(ReportRow {
                label: format!("{}・{}", pref.name, c.label_ja()),
                rate: UsageRate::parse_percent(&r.rate),
                counts: Some(UsageCounts {
                    card: r.card,
                    total: r.total,
                }),
                rank: Some((r.rank, r.prev_rank)),
            });
        }
    } else {
        notes.push(format!(
            "{}の施設類型別・都道府県別の利用率は公表されていないため、全体の値と比べています。",
            facility.label_ja()
        ));
    }
    let pref_counts = data.prefecture_counts(&pref.short);
    let pref_rank = {
        let mut all: Vec<(u8, UsageRate)> = data
            .prefectures
            .iter()
            .filter_map(|p| UsageRate::parse_percent(&p.rate).map(|r| (p.code, r)))
            .collect();
        all.sort_by_key(|a| std::cmp::Reverse(a.1));
        all.iter()
            .position(|(code, _)| *code == pref.code)
            .map(|i| i as u8 + 1)
    };
    rows.push(ReportRow {
        label: format!("{}・全体", pref.name),
        rate: UsageRate::parse_percent(&pref.rate),
        counts: Some(pref_counts),
        rank: pref_rank.map(|r| (r, 0)),
    });
    if let Some(c) = category {
        rows.push(ReportRow {
            label: format!("全国・{}", c.label_ja()),
            rate: data.category_counts(c).and_then(|x| x.rate()),
            counts: data.category_counts(c),
            rank: None,
        });
    }
    rows.push(ReportRow {
        label: "全国・全体".to_string(),
        rate: UsageRate::parse_percent(&data.national.rate),
        counts: Some(data.national_counts()),
        rank: None,
    });
    // A month's rate counts for the claim months 3 to 5 months later.
    let incentives = (3..=5)
        .map(|k| incentive_tier(month.plus(k), facility, counts))
        .collect();
    notes.extend(data.corrections.iter().map(|c| format!("資料の補正: {c}")));
    Ok(UsageReport {
        month,
        facility,
        rows,
        incentives,
        later_national: data.later(),
        reference_month: data.month.clone(),
        notes,
    })
}

/// Display width in a terminal: CJK and full-width characters take two columns.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| if (c as u32) < 0x1100 { 1 } else { 2 })
        .sum()
}

/// Pads to `width` columns, left- or right-aligned, by display width.
fn pad(s: &str, width: usize, right: bool) -> String {
    let fill = " ".repeat(width.saturating_sub(display_width(s)));
    if right {
        format!("{fill}{s}")
    } else {
        format!("{s}{fill}")
    }
}

fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Renders the report as a plain-text table (Japanese).
pub fn render_table(r: &UsageReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "マイナ保険証 利用率レポート（{}・{}）",
        r.month.label_ja(),
        r.facility.label_ja()
    );
    let reference = YearMonth::parse(&r.reference_month)
        .map(|m| m.label_ja())
        .unwrap_or_else(|_| r.reference_month.clone());
    let _ = writeln!(s, "比較対象: {reference}の国の公表値");
    let line = |cols: [&str; 5]| {
        format!(
            "{} {} {} {} {}",
            pad(cols[0], 26, false),
            pad(cols[1], 8, true),
            pad(cols[2], 14, true),
            pad(cols[3], 14, true),
            pad(cols[4], 10, true)
        )
    };
    let _ = writeln!(
        s,
        "{}",
        line(["区分", "利用率", "マイナ保険証", "オン資件数", "順位"])
    );
    for row in &r.rows {
        let rate = row
            .rate
            .map(|x| x.to_string())
            .unwrap_or_else(|| "-".into());
        let (card, total) = row
            .counts
            .map(|c| (group_digits(c.card), group_digits(c.total)))
            .unwrap_or_else(|| ("-".into(), "-".into()));
        let rank = match row.rank {
            Some((r, 0)) => format!("{r}位"),
            Some((r, p)) => format!("{r}位({p})"),
            None => String::new(),
        };
        let _ = writeln!(s, "{}", line([&row.label, &rate, &card, &total, &rank]));
    }
    let _ = writeln!(s, "\n医療DX推進体制整備加算:");
    for i in &r.incentives {
        let _ = writeln!(s, "  {}", i.note_ja);
    }
    let _ = writeln!(s, "\nその後の全国の利用率（オンライン資格確認件数ベース）:");
    let later: Vec<String> = r
        .later_national
        .iter()
        .map(|(m, x)| format!("{m} {x}"))
        .collect();
    let _ = writeln!(s, "  {}", later.join(" / "));
    let _ = writeln!(s);
    for n in &r.notes {
        let _ = writeln!(s, "※ {n}");
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn counts_file() {
        let c = parse_counts("month,card,total\n# comment\n2024-10, 120, 800\n\n2024-11,200,900\n")
            .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0].1,
            UsageCounts {
                card: 120,
                total: 800
            }
        );
        for bad in ["2024-10,1", "2024-13,1,2", "2024-10,x,2", "2024-10,5,2"] {
            let e = parse_counts(bad).unwrap_err();
            assert!(e.message_ja().contains("1行目"), "{bad}");
        }
    }

    #[test]
    fn report_rows() {
        let d = UsageData::october_2024().unwrap();
        let counts = parse_counts("2024-10,300,1000\n").unwrap();
        let m = YearMonth::parse("2024-10").unwrap();
        let r = build_report(&d, &counts, m, FacilityType::Medical, false, "東京都").unwrap();
        assert_eq!(r.rows[0].rate, Some(UsageRate(3000)));
        assert_eq!(r.rows[1].label, "東京都・医科診療所");
        assert_eq!(r.rows[1].rank, Some((39, 38)));
        assert_eq!(r.rows.last().unwrap().rate, Some(UsageRate(1567)));
        // 2024-10 counts for claims 2025-01..03 (30/20/10): 30% reaches tier 1.
        assert_eq!(r.incentives[0].tier, Some(1));
        let t = render_table(&r);
        assert!(
            t.contains("15.67%") && t.contains("東京都・全体") && t.contains("37.14%"),
            "{t}"
        );
        assert!(matches!(
            build_report(&d, &counts, m, FacilityType::Medical, false, "東京府"),
            Err(ReportError::UnknownPrefecture(_))
        ));
        assert!(matches!(
            build_report(
                &d,
                &counts,
                m.plus(1),
                FacilityType::Medical,
                false,
                "東京都"
            ),
            Err(ReportError::NoCountsForMonth(_))
        ));
        let j = build_report(&d, &counts, m, FacilityType::Judo, false, "沖縄県").unwrap();
        assert!(j.notes.iter().any(|n| n.contains("柔整")));
    }
}
