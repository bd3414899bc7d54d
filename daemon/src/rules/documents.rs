//! R7–R11: whether a document the patient presents is valid on the visit date.

use std::str::FromStr;

use chrono::NaiveDate;

use super::calendar::date_ja;
use super::certificate::{certificate_usability, DataScope, ReadVia};
use super::claim::InsuranceType;
use super::{RuleId, RuleSettings};

/// A document the patient may present at the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocumentKind {
    /// R7: the マイナ保険証 (checked online).
    MynaHokensho,
    /// R8: the マイナポータル qualification screen or its PDF.
    MynaPortal,
    /// R9: 資格情報のお知らせ.
    Oshirase,
    /// R10: 資格確認書.
    Kakuninsho,
    /// R11: the old 健康保険証.
    OldHokensho,
}

impl DocumentKind {
    /// Every kind, in a stable order.
    pub const ALL: [DocumentKind; 5] = [
        DocumentKind::MynaHokensho,
        DocumentKind::MynaPortal,
        DocumentKind::Oshirase,
        DocumentKind::Kakuninsho,
        DocumentKind::OldHokensho,
    ];

    /// The CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::MynaHokensho => "myna",
            DocumentKind::MynaPortal => "portal",
            DocumentKind::Oshirase => "oshirase",
            DocumentKind::Kakuninsho => "kakuninsho",
            DocumentKind::OldHokensho => "hokensho",
        }
    }

    /// The Japanese name.
    pub fn label_ja(self) -> &'static str {
        match self {
            DocumentKind::MynaHokensho => "マイナ保険証",
            DocumentKind::MynaPortal => "マイナポータルの資格情報画面（PDF）",
            DocumentKind::Oshirase => "資格情報のお知らせ",
            DocumentKind::Kakuninsho => "資格確認書",
            DocumentKind::OldHokensho => "健康保険証（従来の保険証）",
        }
    }

    /// Whether the validity depends on an expiry date that must be given.
    pub fn needs_expiry(self) -> bool {
        matches!(
            self,
            DocumentKind::MynaHokensho | DocumentKind::Kakuninsho | DocumentKind::OldHokensho
        )
    }
}

/// A document kind that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// The name matches no kind.
    #[error("unknown document kind {0:?}")]
    UnknownKind(String),
    /// The kind needs an expiry date and none was given.
    #[error("document {0:?} needs its expiry date")]
    MissingExpiry(DocumentKind),
}

impl DocumentError {
    /// The message shown to staff.
    pub fn message_ja(&self) -> String {
        match self {
            DocumentError::UnknownKind(s) => {
                let names: Vec<String> = DocumentKind::ALL
                    .iter()
                    .map(|k| format!("{}（{}）", k.as_str(), k.label_ja()))
                    .collect();
                format!(
                    "書類の種類「{s}」は分かりません。次のいずれかを指定してください: {}",
                    names.join("、")
                )
            }
            DocumentError::MissingExpiry(k) => format!(
                "{}は有効期限で判断します。--expires に有効期限（マイナ保険証は電子証明書の有効期限）を入力してください。",
                k.label_ja()
            ),
        }
    }
}

impl FromStr for DocumentKind {
    type Err = DocumentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let kind = match s.trim() {
            "myna" | "myna-card" | "mynumber" | "マイナ保険証" | "マイナンバーカード" => {
                DocumentKind::MynaHokensho
            }
            "portal" | "myna-portal" | "pdf" | "マイナポータル" => DocumentKind::MynaPortal,
            "oshirase" | "notice" | "資格情報のお知らせ" | "お知らせ" => {
                DocumentKind::Oshirase
            }
            "kakuninsho" | "資格確認書" => DocumentKind::Kakuninsho,
            "hokensho" | "insurance-card" | "保険証" | "健康保険証" => {
                DocumentKind::OldHokensho
            }
            other => return Err(DocumentError::UnknownKind(other.to_string())),
        };
        Ok(kind)
    }
}

/// What the counter must do besides accepting the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Run the online check with the card (R7).
    OnlineCardCheck,
    /// Only insurance data comes back (certificate grace, R3).
    InsuranceDataOnly,
    /// The card must be presented too (R9).
    PresentCardToo,
    /// Confirm the numbers by an online lookup by number (R11 temporary measure).
    OnlineLookupByNumber,
    /// Ask the patient to bring the マイナ保険証 or a 資格確認書 next time.
    AskForValidDocumentNextTime,
    /// The numbers on it may be used for the claim (R8).
    NumbersUsableForClaim,
    /// Fall back per R12 (事後確認, 申立書).
    FallBack,
}

impl Requirement {
    /// Japanese instruction.
    pub fn label_ja(self) -> &'static str {
        match self {
            Requirement::OnlineCardCheck => "カードリーダーでオンライン資格確認を行う",
            Requirement::InsuranceDataOnly => "資格情報のみ取得できる（薬剤・診療情報は不可）",
            Requirement::PresentCardToo => "マイナンバーカードとあわせて提示してもらう",
            Requirement::OnlineLookupByNumber => {
                "記載の番号でオンライン資格確認（照会番号検索）を行い資格を確認する"
            }
            Requirement::AskForValidDocumentNextTime => {
                "次回はマイナ保険証か資格確認書を持参するよう案内する"
            }
            Requirement::NumbersUsableForClaim => "記載の番号を請求に使用できる",
            Requirement::FallBack => {
                "ほかの確認方法を順に試し、どれも使えなければ被保険者資格申立書で受け付ける"
            }
        }
    }
}

/// R12 (with R10, R11): the fall-back order at the counter when the card cannot be used, as
/// staff read it. The old 健康保険証 is named only while it is valid on `visit` (R11), so the
/// order never sends staff to a document that no longer counts.
pub fn fallback_order_ja(visit: NaiveDate, settings: &RuleSettings) -> String {
    let documents = if visit <= settings.old_hokensho_last_day {
        "有効な資格確認書か健康保険証"
    } else {
        "有効な資格確認書"
    };
    format!(
        "目視モードへの切替 → 縮退運用 → マイナポータルの資格情報画面（PDF） → {documents} → 被保険者資格申立書"
    )
}

/// R8, R10, R11: the documents that can stand in for the card, joined for a staff message.
///
/// With the visit date, the old 健康保険証 is named only while it is valid that day (R11);
/// without one, only documents that count on any date (each by its own expiry) are named.
pub fn substitute_documents_ja(visit: Option<NaiveDate>, settings: &RuleSettings) -> String {
    let mut names = vec!["資格確認書"];
    if visit.is_some_and(|v| v <= settings.old_hokensho_last_day) {
        names.push("有効期限内の健康保険証");
    }
    names.push("マイナポータルの資格情報画面（PDF）");
    names.join("・")
}

/// R9, R10, R11: the documents whose numbers staff can query with while the patient's card is
/// at the counter (the お知らせ counts together with the card), joined for a staff message.
/// The old 健康保険証 is named as [`substitute_documents_ja`] names it.
pub fn numbers_documents_ja(visit: Option<NaiveDate>, settings: &RuleSettings) -> String {
    let mut names = vec!["資格確認書", "資格情報のお知らせ"];
    if visit.is_some_and(|v| v <= settings.old_hokensho_last_day) {
        names.push("有効期限内の健康保険証");
    }
    names.join("・")
}

/// R11: the temporary acceptance of an expired 保険証 or a お知らせ alone, as a sentence for
/// staff, on the visit dates it covers; `None` on other dates (and without a date).
pub fn temporary_acceptance_note_ja(
    visit: Option<NaiveDate>,
    settings: &RuleSettings,
) -> Option<String> {
    let v = visit?;
    let until = date_ja(settings.expired_acceptance_until);
    let how =
        "記載の番号でオンライン資格確認を行い、資格を確認できれば通常の負担割合で受け付けられます";
    if temporary_acceptance(v, InsuranceType::Employee, settings) {
        Some(format!(
            "{until}までは、期限切れの保険証や資格情報のお知らせしかない場合も、{how}。"
        ))
    } else if temporary_acceptance(v, InsuranceType::Kokuho, settings) {
        Some(format!(
            "国民健康保険・後期高齢者医療の方は、{until}までは、期限切れの保険証や資格情報のお知らせしかない場合も、{how}。"
        ))
    } else {
        None
    }
}

/// A document as presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedDocument {
    /// The kind.
    pub kind: DocumentKind,
    /// Its expiry (for the マイナ保険証: the certificate's), last valid day.
    pub expires: Option<NaiveDate>,
    /// Whether the マイナンバーカード is presented with it (matters for the お知らせ).
    pub with_card: bool,
    /// The insurance type, from the insurer number when known.
    pub insurance: InsuranceType,
}

/// The answer for a document on a visit date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentVerdict {
    /// Whether the document can be accepted (at the normal co-payment).
    pub acceptable: bool,
    /// The rule that decided.
    pub rule: RuleId,
    /// What the counter must do.
    pub requirements: Vec<Requirement>,
    /// Explanation for staff.
    pub reason_ja: String,
}

/// R11: whether the temporary acceptance of an expired card / お知らせ alone covers this visit.
fn temporary_acceptance(visit: NaiveDate, insurance: InsuranceType, s: &RuleSettings) -> bool {
    if visit > s.expired_acceptance_until {
        return false;
    }
    if visit >= s.expired_acceptance_all_from {
        return true;
    }
    visit >= s.expired_acceptance_kokuho_from
        && matches!(
            insurance,
            InsuranceType::Kokuho | InsuranceType::LateElderly
        )
}

fn temporary_verdict(
    what: &str,
    visit: NaiveDate,
    doc: &PresentedDocument,
    s: &RuleSettings,
) -> DocumentVerdict {
    if temporary_acceptance(visit, doc.insurance, s) {
        DocumentVerdict {
            acceptable: true,
            rule: RuleId(11),
            requirements: vec![
                Requirement::OnlineLookupByNumber,
                Requirement::AskForValidDocumentNextTime,
            ],
            reason_ja: format!(
                "{what}単独では有効ではありませんが、{}までの暫定措置として、オンラインで番号を照会して資格を確認できれば通常の負担割合で受け付けられます。",
                date_ja(s.expired_acceptance_until)
            ),
        }
    } else {
        let why = if visit > s.expired_acceptance_until {
            format!(
                "暫定措置は{}で終了しています。",
                date_ja(s.expired_acceptance_until)
            )
        } else if doc.insurance == InsuranceType::Unknown
            && visit >= s.expired_acceptance_kokuho_from
        {
            format!(
                "{}までは、暫定措置の対象は国保・後期高齢者のみです。保険者番号で保険の種類を確認してください。",
                date_ja(s.expired_acceptance_all_from.pred_opt().unwrap_or(s.expired_acceptance_all_from))
            )
        } else {
            "この受診日は暫定措置の対象外です。".to_string()
        };
        DocumentVerdict {
            acceptable: false,
            rule: RuleId(11),
            requirements: vec![Requirement::FallBack],
            reason_ja: format!("{what}単独では受け付けられません。{why}"),
        }
    }
}

/// R7–R11: whether `doc` is valid on `visit`, and what it requires.
pub fn document_validity(
    doc: &PresentedDocument,
    visit: NaiveDate,
    settings: &RuleSettings,
) -> Result<DocumentVerdict, DocumentError> {
    let expiry = || doc.expires.ok_or(DocumentError::MissingExpiry(doc.kind));
    let verdict = match doc.kind {
        DocumentKind::MynaHokensho => {
            let a = certificate_usability(expiry()?, visit, ReadVia::Card, settings);
            let mut requirements = Vec::new();
            if a.usable {
                requirements.push(Requirement::OnlineCardCheck);
                if a.scope == DataScope::InsuranceOnly {
                    requirements.push(Requirement::InsuranceDataOnly);
                }
            } else {
                requirements.push(Requirement::FallBack);
            }
            DocumentVerdict {
                acceptable: a.usable,
                rule: if a.usable && a.scope == DataScope::Full {
                    RuleId(7)
                } else {
                    a.rule
                },
                requirements,
                reason_ja: a.note_ja,
            }
        }
        DocumentKind::MynaPortal => DocumentVerdict {
            acceptable: true,
            rule: RuleId(8),
            requirements: vec![Requirement::NumbersUsableForClaim],
            reason_ja:
                "マイナポータルの資格情報画面（またはそのPDF）は有効です。ほかのカードは不要です。"
                    .to_string(),
        },
        DocumentKind::Oshirase => {
            if doc.with_card {
                DocumentVerdict {
                    acceptable: true,
                    rule: RuleId(9),
                    requirements: vec![Requirement::PresentCardToo, Requirement::NumbersUsableForClaim],
                    reason_ja: "資格情報のお知らせは、マイナンバーカードとあわせて提示された場合に限り使えます（カードリーダーが使えないとき）。".to_string(),
                }
            } else {
                temporary_verdict("資格情報のお知らせ", visit, doc, settings)
            }
        }
        DocumentKind::Kakuninsho => {
            let e = expiry()?;
            let late = if doc.insurance == InsuranceType::LateElderly {
                "後期高齢者の資格確認書は毎年8月1日に更新されます。"
            } else {
                ""
            };
            if visit <= e {
                DocumentVerdict {
                    acceptable: true,
                    rule: RuleId(10),
                    requirements: vec![Requirement::NumbersUsableForClaim],
                    reason_ja: format!(
                        "資格確認書は有効期限（{}）内で有効です。{late}",
                        date_ja(e)
                    ),
                }
            } else {
                DocumentVerdict {
                    acceptable: false,
                    rule: RuleId(10),
                    requirements: vec![Requirement::FallBack],
                    reason_ja: format!(
                        "資格確認書の有効期限（{}）が切れています。新しい資格確認書かマイナ保険証を確認してください。{late}",
                        date_ja(e)
                    ),
                }
            }
        }
        DocumentKind::OldHokensho => {
            let e = expiry()?;
            let last = e.min(settings.old_hokensho_last_day);
            if visit <= last {
                DocumentVerdict {
                    acceptable: true,
                    rule: RuleId(11),
                    requirements: vec![Requirement::NumbersUsableForClaim],
                    reason_ja: format!(
                        "保険証は{}まで有効です（記載事項に変更があった場合はそれより前に失効します）。",
                        date_ja(last)
                    ),
                }
            } else {
                let what = format!("有効期限切れの保険証（{}まで）", date_ja(last));
                temporary_verdict(&what, visit, doc, settings)
            }
        }
    };
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    // Rule tables read best as inline tuples.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]
    use super::*;
    use crate::rules::parse_date;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn document_table() {
        let s = RuleSettings::default();
        use DocumentKind::*;
        use InsuranceType::*;
        let rows: [(
            &str,
            &str,
            DocumentKind,
            Option<&str>,
            bool,
            InsuranceType,
            &str,
            bool,
        ); 22] = [
            (
                "R7",
                "card valid",
                MynaHokensho,
                Some("2027-01-01"),
                false,
                Employee,
                "2025-06-01",
                true,
            ),
            (
                "R3",
                "card in grace",
                MynaHokensho,
                Some("2025-02-14"),
                false,
                Employee,
                "2025-05-31",
                true,
            ),
            (
                "R3",
                "card after grace",
                MynaHokensho,
                Some("2025-02-14"),
                false,
                Employee,
                "2025-06-01",
                false,
            ),
            (
                "R8",
                "portal",
                MynaPortal,
                None,
                false,
                Unknown,
                "2026-06-01",
                true,
            ),
            (
                "R9",
                "お知らせ with card",
                Oshirase,
                None,
                true,
                Employee,
                "2026-06-01",
                true,
            ),
            (
                "R11",
                "お知らせ alone, employee, 2025-12-01",
                Oshirase,
                None,
                false,
                Employee,
                "2025-12-01",
                false,
            ),
            (
                "R11",
                "お知らせ alone, employee, 2025-12-02",
                Oshirase,
                None,
                false,
                Employee,
                "2025-12-02",
                true,
            ),
            (
                "R11",
                "お知らせ alone, 国保, 2025-07-31",
                Oshirase,
                None,
                false,
                Kokuho,
                "2025-07-31",
                false,
            ),
            (
                "R11",
                "お知らせ alone, 国保, 2025-08-01",
                Oshirase,
                None,
                false,
                Kokuho,
                "2025-08-01",
                true,
            ),
            (
                "R11",
                "お知らせ alone, 2026-03-31",
                Oshirase,
                None,
                false,
                Employee,
                "2026-03-31",
                true,
            ),
            (
                "R11",
                "お知らせ alone, 2026-04-01",
                Oshirase,
                None,
                false,
                Kokuho,
                "2026-04-01",
                false,
            ),
            (
                "R10",
                "確認書 on expiry",
                Kakuninsho,
                Some("2026-07-31"),
                false,
                LateElderly,
                "2026-07-31",
                true,
            ),
            (
                "R10",
                "確認書 day after expiry",
                Kakuninsho,
                Some("2026-07-31"),
                false,
                LateElderly,
                "2026-08-01",
                false,
            ),
            (
                "R11",
                "old card, own expiry later, 2025-11-30",
                OldHokensho,
                Some("2027-03-31"),
                false,
                Employee,
                "2025-11-30",
                true,
            ),
            (
                "R11",
                "old card, 2025-12-01",
                OldHokensho,
                Some("2027-03-31"),
                false,
                Employee,
                "2025-12-01",
                true,
            ),
            (
                "R11",
                "old card, 2025-12-02 under the measure",
                OldHokensho,
                Some("2027-03-31"),
                false,
                Employee,
                "2025-12-02",
                true,
            ),
            (
                "R11",
                "old card, own expiry the day before",
                OldHokensho,
                Some("2025-05-31"),
                false,
                Employee,
                "2025-05-31",
                true,
            ),
            (
                "R11",
                "old card expired, employee, 2025-06-01",
                OldHokensho,
                Some("2025-05-31"),
                false,
                Employee,
                "2025-06-01",
                false,
            ),
            (
                "R11",
                "old 国保 card expired 07-31, on 08-01",
                OldHokensho,
                Some("2025-07-31"),
                false,
                Kokuho,
                "2025-08-01",
                true,
            ),
            (
                "R11",
                "old 後期 card expired, 2025-10-01",
                OldHokensho,
                Some("2025-07-31"),
                false,
                LateElderly,
                "2025-10-01",
                true,
            ),
            (
                "R11",
                "old card, 2026-03-31",
                OldHokensho,
                Some("2025-07-31"),
                false,
                Employee,
                "2026-03-31",
                true,
            ),
            (
                "R11",
                "old card, 2026-04-01",
                OldHokensho,
                Some("2025-07-31"),
                false,
                Kokuho,
                "2026-04-01",
                false,
            ),
        ];
        for (rule, case, kind, expires, with_card, insurance, visit, want) in rows {
            let doc = PresentedDocument {
                kind,
                expires: expires.map(d),
                with_card,
                insurance,
            };
            let v = document_validity(&doc, d(visit), &s).unwrap();
            assert_eq!(v.acceptable, want, "{rule} {case}: {}", v.reason_ja);
            assert_eq!(v.rule.to_string(), rule, "{case}");
        }
    }

    #[test]
    fn bad_document_input() {
        let e = "passport".parse::<DocumentKind>().unwrap_err();
        assert!(e.message_ja().contains("passport"));
        assert_eq!(
            "資格確認書".parse::<DocumentKind>(),
            Ok(DocumentKind::Kakuninsho)
        );
        let doc = PresentedDocument {
            kind: DocumentKind::Kakuninsho,
            expires: None,
            with_card: false,
            insurance: InsuranceType::Unknown,
        };
        assert_eq!(
            document_validity(&doc, d("2025-01-01"), &RuleSettings::default()),
            Err(DocumentError::MissingExpiry(DocumentKind::Kakuninsho))
        );
    }

    #[test]
    fn staff_text_names_the_old_card_only_while_it_counts() {
        // It names the old 健康保険証 up to its last day (R11, 2025-12-01), never after; the
        // temporary measure for an expired card or a お知らせ alone is named from 2025-08-01
        // (国保・後期) and 2025-12-02 (all) to 2026-03-31, never after (R11).
        let s = RuleSettings::default();
        // (case, visit, old card named, temporary note: None / Some(all insurers))
        let rows: [(&str, &str, bool, Option<bool>); 7] = [
            ("R11 before the 国保 measure", "2025-07-31", true, None),
            ("R11 国保 measure starts", "2025-08-01", true, Some(false)),
            ("R11 old card's last day", "2025-12-01", true, Some(false)),
            ("R11 all insurers' measure", "2025-12-02", false, Some(true)),
            ("R11 measure's last day", "2026-03-31", false, Some(true)),
            ("R11 measure ended", "2026-04-01", false, None),
            ("R11 much later", "2027-01-15", false, None),
        ];
        for (case, visit, named, note) in rows {
            let v = Some(d(visit));
            for text in [
                substitute_documents_ja(v, &s),
                numbers_documents_ja(v, &s),
                fallback_order_ja(d(visit), &s),
            ] {
                assert_eq!(text.contains("健康保険証"), named, "{case}: {text}");
                assert!(text.contains("資格確認書"), "{case}: {text}");
                assert!(!text.contains('R'), "{case}: {text}");
            }
            let got = temporary_acceptance_note_ja(v, &s);
            match (note, &got) {
                (None, None) => {}
                (Some(all), Some(t)) => {
                    assert!(t.contains("2026年3月31日"), "{case}: {t}");
                    assert_eq!(!t.starts_with("国民健康保険"), all, "{case}: {t}");
                }
                _ => panic!("{case}: {got:?}"),
            }
        }
        // Without a date only what counts on any date is named.
        assert!(!substitute_documents_ja(None, &s).contains("健康保険証"));
        assert!(!numbers_documents_ja(None, &s).contains("健康保険証"));
        assert_eq!(temporary_acceptance_note_ja(None, &s), None);
    }

    #[test]
    fn requirement_labels_carry_no_rule_ids() {
        // It says the fall-back in words: staff do not know "R12".
        let label = Requirement::FallBack.label_ja();
        assert!(
            !label.contains("R12") && label.contains("被保険者資格申立書"),
            "{label}"
        );
    }
}
