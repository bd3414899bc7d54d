//! Small pieces of Japanese staff text (表示・読み上げの部品).
//!
//! Everything here is total: malformed input (a date that is not `YYYY-MM-DD`, a number with
//! letters in it) is shown as given rather than rejected, because a plugin must never panic on
//! the host's data and staff are better served by the raw text than by nothing.
#![forbid(unsafe_code)]

use crate::types::{AnswerStatus, Facility, Identity, Numbers};

/// The facility type's short name (医科, 歯科, …).
pub fn facility_ja(facility: Facility) -> &'static str {
    match facility {
        Facility::Medical => "医科",
        Facility::Dental => "歯科",
        Facility::Pharmacy => "薬局",
        Facility::Judo => "柔整",
        Facility::Ahaki => "あはき",
        Facility::HomeNursing => "訪問看護",
    }
}

/// How identity was confirmed, as staff say it (本人確認の方法).
pub fn identity_ja(identity: Identity) -> &'static str {
    match identity {
        Identity::Visual => "マイナ保険証・目視",
        Identity::Pin => "マイナ保険証・暗証番号",
        Identity::Document => "書類の提示",
    }
}

/// The qualification system's answer, as the screen words it (資格確認結果).
pub fn answer_ja(answer: AnswerStatus, newer_exists: bool) -> &'static str {
    match answer {
        AnswerStatus::Confirmed => "有効",
        AnswerStatus::Invalid if newer_exists => "資格（無効）・新しい資格あり",
        AnswerStatus::Invalid => "資格（無効）",
        AnswerStatus::NotFound => "資格情報なし",
        AnswerStatus::Multiple => "複数該当",
        AnswerStatus::CardRefused => "カードが使えません",
    }
}

/// A document's name from its code (提示書類).
///
/// Codes the plugin does not know are shown as given, in brackets, so a new code on the host is
/// visible rather than silently renamed.
pub fn document_ja(code: &str) -> String {
    match code {
        "kakuninsho" => "資格確認書".to_string(),
        "hokensho" => "従来の健康保険証".to_string(),
        "portal" => "マイナポータルの資格情報画面".to_string(),
        "oshirase" => "資格情報のお知らせ".to_string(),
        other => format!("提示された書類（{other}）"),
    }
}

/// 負担割合 in tenths as written (`3` → `3割`).
pub fn copay_ja(tenths: u8) -> String {
    format!("{tenths}割")
}

/// A `YYYY-MM-DD` date as `2026年5月31日`; anything else as given.
pub fn date_ja(date: &str) -> String {
    match parse_date(date) {
        Some((y, m, d)) => format!("{y}年{m}月{d}日"),
        None => date.to_string(),
    }
}

/// A `YYYY-MM-DD` date as `5月31日` (for reading aloud); anything else as given.
pub fn date_short_ja(date: &str) -> String {
    match parse_date(date) {
        Some((_, m, d)) => format!("{m}月{d}日"),
        None => date.to_string(),
    }
}

fn parse_date(date: &str) -> Option<(u32, u32, u32)> {
    let mut parts = date.split('-');
    let y = parts.next()?;
    let m = parts.next()?;
    let d = parts.next()?;
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some((y, m, d))
}

/// Digits read one by one in katakana, the way numbers are dictated (`0613` → `ゼロ、ロク、イチ、サン`).
///
/// Text-to-speech reads `06130012` as one large number; staff copying a 保険者番号 need each
/// digit. Runs of other characters (a 記号 such as `千代田`) are kept as one piece.
pub fn digits_kana(s: &str) -> String {
    let mut pieces: Vec<String> = Vec::new();
    let mut run = String::new();
    for c in s.chars() {
        match digit_kana(c) {
            Some(kana) => {
                if !run.is_empty() {
                    pieces.push(std::mem::take(&mut run));
                }
                pieces.push(kana.to_string());
            }
            None if c.is_whitespace() || c == '-' || c == '・' => {
                if !run.is_empty() {
                    pieces.push(std::mem::take(&mut run));
                }
            }
            None => run.push(c),
        }
    }
    if !run.is_empty() {
        pieces.push(run);
    }
    pieces.join("、")
}

fn digit_kana(c: char) -> Option<&'static str> {
    const KANA: [&str; 10] = [
        "ゼロ",
        "イチ",
        "ニ",
        "サン",
        "ヨン",
        "ゴ",
        "ロク",
        "ナナ",
        "ハチ",
        "キュウ",
    ];
    let value = match c {
        '0'..='9' => c.to_digit(10),
        // Full-width digits, as some documents and receipt software write them.
        '０'..='９' => Some(u32::from(c) - u32::from('０')),
        _ => None,
    }?;
    KANA.get(usize::try_from(value).ok()?).copied()
}

/// The numbers on one line (`保険者番号 06130012　記号 1234　番号 5678　枝番 00`).
pub fn numbers_line(numbers: &Numbers) -> String {
    let mut line = format!("保険者番号 {}", or_blank(&numbers.insurer));
    if let Some(symbol) = non_empty(numbers.symbol.as_deref()) {
        line.push_str(&format!("　記号 {symbol}"));
    }
    line.push_str(&format!("　番号 {}", or_blank(&numbers.number)));
    if let Some(branch) = non_empty(numbers.branch.as_deref()) {
        line.push_str(&format!("　枝番 {branch}"));
    }
    line
}

/// 記号番号 as the 療養費支給申請書 writes them: one box, 記号・番号.
pub fn symbol_number(numbers: &Numbers) -> String {
    match non_empty(numbers.symbol.as_deref()) {
        Some(symbol) => format!("{symbol}・{}", numbers.number),
        None => numbers.number.clone(),
    }
}

/// `Some(s)` unless it is absent or blank.
pub fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

fn or_blank(s: &str) -> &str {
    if s.trim().is_empty() {
        "（未記入）"
    } else {
        s
    }
}

/// Whether a field is filled with the digit 7 to its length, as a 不詳 claim writes it.
///
/// The 保険者番号 may also be `77777779`: receipt software that checks the last digit as a
/// check digit rejects `77777777`, and the ministry allows the 9 for that case.
pub fn is_seven_filled(value: &str, insurer: bool) -> bool {
    let all_sevens = !value.is_empty() && value.chars().all(|c| c == '7');
    all_sevens || (insurer && value == "77777779")
}

/// Whether staff text carries an internal rule id such as `R15` (it must not).
pub fn has_rule_id(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    chars.windows(2).enumerate().any(|(i, w)| {
        let starts_word = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        w[0] == 'R' && w[1].is_ascii_digit() && starts_word
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_read_one_by_one() {
        // It reads each digit, keeps other text whole and drops separators.
        assert_eq!(digits_kana("0613"), "ゼロ、ロク、イチ、サン");
        assert_eq!(digits_kana("千代田12"), "千代田、イチ、ニ");
        assert_eq!(digits_kana("１２-3"), "イチ、ニ、サン");
        assert_eq!(digits_kana(""), "");
    }

    #[test]
    fn dates_are_written_in_japanese_or_left_alone() {
        assert_eq!(date_ja("2026-05-31"), "2026年5月31日");
        assert_eq!(date_short_ja("2026-05-01"), "5月1日");
        // It shows malformed dates as given rather than failing.
        assert_eq!(date_ja("2026/5/31"), "2026/5/31");
        assert_eq!(date_ja("2026-13-01"), "2026-13-01");
    }

    #[test]
    fn seven_fill_accepts_the_check_digit_variant_for_the_insurer_only() {
        assert!(is_seven_filled("77777777", true));
        assert!(is_seven_filled("77777779", true));
        assert!(!is_seven_filled("77777779", false));
        assert!(!is_seven_filled("99999999", true));
        assert!(!is_seven_filled("", false));
    }

    #[test]
    fn rule_ids_are_found() {
        assert!(has_rule_id("see R15"));
        assert!(has_rule_id("R1"));
        assert!(!has_rule_id("ARM64 は R のあと数字なし"));
        assert!(!has_rule_id("USR1"));
    }
}
