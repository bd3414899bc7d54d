//! What is read aloud for a result (読み上げ原稿): pure functions from the report the page
//! shows to the sentences spoken, in order — the patient's name from its kana, the answer, the
//! co-payment and the next step (R21).
//!
//! Each sentence is synthesised and cached on its own, so the sentences every patient hears
//! ("資格は有効です。") are made once and only the name is new.

use crate::view::{CheckReport, ReportStatus};

/// Sentences spoken at most for one result: the name, the answer, the co-payment, a step or
/// two, a notice; anything past this is on the screen.
pub const MAX_SENTENCES: usize = 8;
/// Characters at most in one sentence (a plugin's read-aloud text is its own): longer ones are
/// cut at a character boundary, so one synthesis stays short.
pub const MAX_SENTENCE_CHARS: usize = 160;

/// The sentences read aloud for `report`, in order; never empty.
///
/// When the facility's plugin wrote a read-aloud text it is used for everything after the
/// name (it knows its own claim form); otherwise the daemon's own wording.
pub fn sentences(report: &CheckReport) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(name) = name_sentence(report) {
        out.push(name);
    }
    let plugin_text = report
        .facility_output
        .as_ref()
        .and_then(|f| f.output.as_ref())
        .map(|o| o.read_aloud.trim())
        .filter(|t| !t.is_empty());
    match plugin_text {
        Some(text) => out.extend(split(text)),
        None => out.extend(own_words(report)),
    }
    out.retain(|s| !s.trim().is_empty());
    if out.is_empty() {
        out.push(fallback(report));
    }
    out.truncate(MAX_SENTENCES);
    out.into_iter().map(|s| cut(&s)).collect()
}

/// 「ｶｸｳ ﾊﾅｺさん。」: the kana the qualification system sent, never the kanji (which Open JTalk
/// may read wrongly). Only for one qualification: with several candidates nobody is named.
fn name_sentence(report: &CheckReport) -> Option<String> {
    let q = report.qualification.as_ref()?;
    let kana = q.kana.as_deref().map(str::trim).filter(|k| !k.is_empty())?;
    // The kana field is katakana and spaces; anything else is not read out as a name.
    let readable = kana.chars().all(|c| {
        c == ' '
            || c == '　'
            || ('\u{30A0}'..='\u{30FF}').contains(&c)
            || ('\u{FF65}'..='\u{FF9F}').contains(&c)
    });
    readable.then(|| format!("{kana}さん。"))
}

fn own_words(report: &CheckReport) -> Vec<String> {
    let mut out = Vec::new();
    let answer = match report.status {
        ReportStatus::Confirmed => "資格は有効です。".to_string(),
        ReportStatus::Invalid if report.newer_exists => {
            "資格は無効で、新しい資格があります。".to_string()
        }
        ReportStatus::Invalid => "資格は無効です。".to_string(),
        ReportStatus::NotFound => "資格情報が見つかりません。".to_string(),
        ReportStatus::Multiple => "資格が複数見つかりました。".to_string(),
        ReportStatus::Captured => {
            "資格確認システムにつながらないため、オフラインで受け付けました。".to_string()
        }
        ReportStatus::Refused => match report.pin_tries_left {
            Some(n) => format!("暗証番号が違います。残り{n}回です。"),
            None => report.message_ja.clone(),
        },
        ReportStatus::Error => report.message_ja.clone(),
    };
    out.extend(split(&answer));
    match (report.status, report.copay_tenths) {
        (ReportStatus::Captured, Some(t)) => {
            out.push(format!("窓口負担は、通常どおり{t}割を受け取ってください。"))
        }
        (ReportStatus::Captured, None) => {
            out.push("窓口負担は、通常の負担割合を受け取ってください。".to_string())
        }
        (_, Some(t)) => out.push(format!("負担割合は{t}割です。")),
        (_, None) => {}
    }
    // The next step: the first instruction (the rest are on the screen), then what the
    // qualification system asks to tell the patient.
    if let Some(step) = report.instructions_ja.first() {
        out.extend(split(step));
    }
    for notice in &report.notices {
        out.extend(split(&notice.message_ja));
    }
    out
}

fn fallback(report: &CheckReport) -> String {
    match report.message_ja.trim() {
        "" => "結果を画面で確認してください。".to_string(),
        m => m.to_string(),
    }
}

/// Splits after each 。, ！ or ？, keeping the mark; a last piece without one gets a 。.
fn split(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c == '\n' || c == '\r' {
            current.push('、');
            continue;
        }
        current.push(c);
        if matches!(c, '。' | '！' | '？') {
            out.push(std::mem::take(&mut current).trim().to_string());
        }
    }
    let rest = current.trim().trim_end_matches('、');
    if !rest.is_empty() {
        out.push(format!("{rest}。"));
    }
    out.retain(|s| !s.is_empty() && s != "。");
    out
}

fn cut(sentence: &str) -> String {
    if sentence.chars().count() <= MAX_SENTENCE_CHARS {
        return sentence.to_string();
    }
    let mut s: String = sentence.chars().take(MAX_SENTENCE_CHARS - 1).collect();
    s.push('。');
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::view::{FacilityOutput, FacilityView, NoticeView};

    fn report(status: ReportStatus) -> CheckReport {
        let mut r: CheckReport = serde_json::from_value(serde_json::json!({
            "status": "confirmed",
            "check_id": "01JTESTTESTTESTTESTTESTTES",
            "method": "visual",
            "visit_date": "2026-12-02",
            "certificate": null,
            "apdus": 0,
            "qualification": null,
            "candidates": [],
            "newer_exists": false,
            "notices": [],
            "error": null,
            "transient": false,
            "pin_tries_left": null,
            "message_ja": "資格を確認しました。",
            "instructions_ja": [],
            "copay_tenths": null,
            "earlier": null,
            "facility_output": null
        }))
        .unwrap();
        r.status = status;
        r
    }

    #[test]
    fn a_valid_answer_says_valid_then_the_ratio() {
        let mut r = report(ReportStatus::Confirmed);
        r.copay_tenths = Some(3);
        assert_eq!(sentences(&r), ["資格は有効です。", "負担割合は3割です。"]);
    }

    #[test]
    fn an_offline_capture_says_so_then_what_to_collect_then_the_first_step() {
        let mut r = report(ReportStatus::Captured);
        r.copay_tenths = Some(2);
        r.instructions_ja = vec![
            "被保険者資格申立書を書いてもらってください".to_string(),
            "二つ目の指示".to_string(),
        ];
        assert_eq!(
            sentences(&r),
            [
                "資格確認システムにつながらないため、オフラインで受け付けました。",
                "窓口負担は、通常どおり2割を受け取ってください。",
                "被保険者資格申立書を書いてもらってください。",
            ]
        );
        r.copay_tenths = None;
        assert_eq!(
            sentences(&r)[1],
            "窓口負担は、通常の負担割合を受け取ってください。"
        );
    }

    #[test]
    fn a_wrong_pin_says_the_tries_left_and_notices_follow_the_answer() {
        let mut r = report(ReportStatus::Refused);
        r.pin_tries_left = Some(2);
        assert_eq!(sentences(&r), ["暗証番号が違います。", "残り2回です。"]);
        let mut r = report(ReportStatus::Invalid);
        r.newer_exists = true;
        r.notices = vec![NoticeView {
            code: "1".into(),
            message_ja: "保険者に連絡してください\n至急".into(),
        }];
        assert_eq!(
            sentences(&r),
            [
                "資格は無効で、新しい資格があります。",
                "保険者に連絡してください、至急。"
            ]
        );
    }

    #[test]
    fn the_name_is_read_from_its_kana_and_only_from_kana() {
        let mut r = report(ReportStatus::Confirmed);
        let mut q: crate::oqs::Qualification = serde_json::from_value(serde_json::json!({
            "insurer_number": "06130015",
            "insurer_name": null,
            "symbol": null,
            "number": "1",
            "branch": null,
            "name": "架空 花子",
            "kana": "ｶｸｳ ﾊﾅｺ",
            "insured_name": null,
            "birth_date": "1980-01-01",
            "preschool": false
        }))
        .unwrap_or_else(|e| panic!("qualification fixture: {e}"));
        r.qualification = Some(q.clone());
        assert_eq!(sentences(&r)[0], "ｶｸｳ ﾊﾅｺさん。");
        // Kanji in the kana field (a malformed answer) is not read as a name.
        q.kana = Some("架空".into());
        r.qualification = Some(q);
        assert_eq!(sentences(&r)[0], "資格は有効です。");
    }

    #[test]
    fn a_plugins_text_replaces_the_daemons_words_and_is_bounded() {
        let mut r = report(ReportStatus::Confirmed);
        r.copay_tenths = Some(3);
        r.facility_output = Some(FacilityView {
            plugin: "shika".into(),
            output: Some(FacilityOutput {
                claim_fields: vec![],
                display: vec![],
                read_aloud: "資格は有効です。負担割合は3割です。次回は歯科検診".into(),
                warnings: vec![],
                next_action: None,
            }),
            error_ja: None,
        });
        assert_eq!(
            sentences(&r),
            [
                "資格は有効です。",
                "負担割合は3割です。",
                "次回は歯科検診。"
            ]
        );
        let long = "あ".repeat(1000) + "。";
        let many = "はい。".repeat(40);
        for text in [long, many] {
            r.facility_output
                .as_mut()
                .unwrap()
                .output
                .as_mut()
                .unwrap()
                .read_aloud = text;
            let s = sentences(&r);
            assert!(s.len() <= MAX_SENTENCES);
            assert!(s.iter().all(|x| x.chars().count() <= MAX_SENTENCE_CHARS));
        }
    }

    #[test]
    fn something_is_always_said() {
        let mut r = report(ReportStatus::Error);
        r.message_ja = String::new();
        assert_eq!(sentences(&r), ["結果を画面で確認してください。"]);
    }
}
