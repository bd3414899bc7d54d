//! Calendar helpers the rules share: month ends, legal age, and parsing staff input.

use std::fmt;

use chrono::{Datelike, Days, Months, NaiveDate};

/// A date typed by staff that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// Not in the `YYYY-MM-DD` shape.
    #[error("date {0:?} is not YYYY-MM-DD")]
    Format(String),
    /// Shaped like a date but does not exist (2月30日).
    #[error("date {year}-{month}-{day} does not exist")]
    Impossible {
        /// Year as typed.
        year: i32,
        /// Month as typed.
        month: u32,
        /// Day as typed.
        day: u32,
    },
    /// Not in the `YYYY-MM` shape, or the month is not 1–12.
    #[error("month {0:?} is not YYYY-MM")]
    MonthFormat(String),
}

impl DateError {
    /// The message shown to staff.
    pub fn message_ja(&self) -> String {
        match self {
            DateError::Format(s) => format!(
                "日付「{s}」を読み取れません。2025-04-01 のように 年-月-日 で入力してください。"
            ),
            DateError::Impossible { year, month, day } => {
                format!("{year}年{month}月{day}日 は存在しない日付です。日付を確認してください。")
            }
            DateError::MonthFormat(s) => {
                format!("年月「{s}」を読み取れません。2024-10 のように 年-月 で入力してください。")
            }
        }
    }
}

/// Parses `YYYY-MM-DD` (or `YYYY/MM/DD`), telling a malformed string from an impossible date.
pub fn parse_date(input: &str) -> Result<NaiveDate, DateError> {
    let s = input.trim();
    let parts: Vec<&str> = s.split(['-', '/']).collect();
    let numeric = |p: &str| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit());
    if parts.len() != 3 || parts[0].len() != 4 || !parts.iter().all(|p| numeric(p)) {
        return Err(DateError::Format(s.to_string()));
    }
    let (Ok(year), Ok(month), Ok(day)) = (
        parts[0].parse::<i32>(),
        parts[1].parse::<u32>(),
        parts[2].parse::<u32>(),
    ) else {
        return Err(DateError::Format(s.to_string()));
    };
    NaiveDate::from_ymd_opt(year, month, day).ok_or(DateError::Impossible { year, month, day })
}

/// A calendar month (claim month, usage month).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    year: i32,
    month: u32,
}

impl YearMonth {
    /// Builds a month; `None` unless 1 ≤ month ≤ 12.
    pub fn new(year: i32, month: u32) -> Option<Self> {
        (1..=12).contains(&month).then_some(Self { year, month })
    }

    /// Parses `YYYY-MM`.
    pub fn parse(input: &str) -> Result<Self, DateError> {
        let s = input.trim();
        let err = || DateError::MonthFormat(s.to_string());
        let (y, m) = s.split_once(['-', '/']).ok_or_else(err)?;
        if y.len() != 4 || m.is_empty() || m.len() > 2 {
            return Err(err());
        }
        if !y.chars().chain(m.chars()).all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        let year = y.parse().map_err(|_| err())?;
        let month = m.parse().map_err(|_| err())?;
        Self::new(year, month).ok_or_else(err)
    }

    /// The month a date falls in.
    pub fn of(date: NaiveDate) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    /// Year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// Month, 1–12.
    pub fn month(self) -> u32 {
        self.month
    }

    /// This month shifted by `n` months (negative = earlier).
    pub fn plus(self, n: i32) -> Self {
        let index = self.year * 12 + (self.month as i32 - 1) + n;
        Self {
            year: index.div_euclid(12),
            month: index.rem_euclid(12) as u32 + 1,
        }
    }

    /// The first day.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The last day.
    pub fn last_day(self) -> NaiveDate {
        end_of_month(self.first_day())
    }

    /// Japanese label, e.g. `2024年10月`.
    pub fn label_ja(self) -> String {
        format!("{}年{}月", self.year, self.month)
    }
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The last day of the month `date` falls in.
pub fn end_of_month(date: NaiveDate) -> NaiveDate {
    end_of_nth_month_after(date, 0)
}

/// The last day of the `n`th month after the month of `date` (0 = the same month).
pub fn end_of_nth_month_after(date: NaiveDate, n: u32) -> NaiveDate {
    let first = date.with_day(1).unwrap_or(date);
    first
        .checked_add_months(Months::new(n + 1))
        .and_then(|d| d.checked_sub_days(Days::new(1)))
        .unwrap_or(NaiveDate::MAX)
}

/// Age on `on` as Japanese law counts it (年齢計算ニ関スル法律): a year is completed at the end
/// of the day before the birthday, so someone born on 1 April is already older on 31 March.
/// `None` if `on` is before the birth.
pub fn legal_age_on(birth: NaiveDate, on: NaiveDate) -> Option<u32> {
    if on < birth {
        return None;
    }
    let next = on.succ_opt().unwrap_or(on);
    let mut age = next.year() - birth.year();
    if (next.month(), next.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    u32::try_from(age).ok()
}

/// The day a person legally reaches `age` (the day before the birthday).
pub fn date_reaching_age(birth: NaiveDate, age: u32) -> NaiveDate {
    anniversary(birth, age).pred_opt().unwrap_or(NaiveDate::MIN)
}

/// The `years`th birthday; a 29 February birth falls on 1 March in common years.
pub fn anniversary(birth: NaiveDate, years: u32) -> NaiveDate {
    let year = birth.year() + years as i32;
    NaiveDate::from_ymd_opt(year, birth.month(), birth.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, 3, 1))
        .unwrap_or(NaiveDate::MAX)
}

/// Japanese date label, e.g. `2025年5月31日`.
pub fn date_ja(d: NaiveDate) -> String {
    format!("{}年{}月{}日", d.year(), d.month(), d.day())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn parse_date_table() {
        assert_eq!(parse_date("2025-02-28"), Ok(d("2025-02-28")));
        assert_eq!(parse_date("2024/2/29"), Ok(d("2024-02-29")));
        assert_eq!(
            parse_date("2025-02-30"),
            Err(DateError::Impossible {
                year: 2025,
                month: 2,
                day: 30
            })
        );
        assert!(parse_date("2025-02-30")
            .unwrap_err()
            .message_ja()
            .contains("2025年2月30日"));
        assert!(matches!(parse_date("20250230"), Err(DateError::Format(_))));
        assert!(matches!(
            parse_date("2025-1x-01"),
            Err(DateError::Format(_))
        ));
        assert!(matches!(parse_date(""), Err(DateError::Format(_))));
    }

    #[test]
    fn months() {
        let m = YearMonth::parse("2024-10").unwrap();
        assert_eq!(m.plus(3).to_string(), "2025-01");
        assert_eq!(m.plus(-10).to_string(), "2023-12");
        assert_eq!(m.last_day(), d("2024-10-31"));
        assert!(YearMonth::parse("2024-13").is_err());
        assert!(YearMonth::parse("24-10").is_err());
        assert!(YearMonth::parse("2024-1a").is_err());
    }

    #[test]
    fn month_ends_and_ages() {
        assert_eq!(end_of_month(d("2024-02-10")), d("2024-02-29"));
        assert_eq!(end_of_nth_month_after(d("2025-02-28"), 3), d("2025-05-31"));
        assert_eq!(end_of_nth_month_after(d("2025-11-30"), 1), d("2025-12-31"));
        // Born 1 April: reaches the age on 31 March.
        assert_eq!(legal_age_on(d("1954-04-01"), d("2024-03-31")), Some(70));
        assert_eq!(legal_age_on(d("1954-04-01"), d("2024-03-30")), Some(69));
        assert_eq!(legal_age_on(d("1954-04-02"), d("2024-04-01")), Some(70));
        assert_eq!(legal_age_on(d("1954-04-03"), d("2024-04-01")), Some(69));
        assert_eq!(legal_age_on(d("2025-01-01"), d("2024-12-31")), None);
        assert_eq!(date_reaching_age(d("2019-04-02"), 6), d("2025-04-01"));
    }
}
