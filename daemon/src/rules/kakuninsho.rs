//! R22–R30: whether a 資格確認書 is issued, how, and why (the flowchart, in order).

use chrono::NaiveDate;

use super::calendar::{date_ja, legal_age_on};
use super::certificate::grace_end;
use super::{RuleId, RuleSettings, Step};

/// State of the card's insurance registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// No マイナンバーカード.
    NoCard,
    /// A card, not registered for insurance use.
    NotRegistered,
    /// Registered (マイナ保険証).
    Registered,
    /// Registration cancelled at the holder's request (R23).
    CancelledByRequest,
}

/// The card's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateState {
    /// Valid (or not known to be expired).
    Valid,
    /// Expired on this date (last valid day).
    ExpiredOn(NaiveDate),
}

/// What a newborn's guardian wants at enrolment (R30).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewbornChoice {
    /// A 資格確認書 instead of registering the card.
    Kakuninsho,
    /// They mean to register the card later.
    RegisterCardLater,
}

/// The facts of the flowchart; `None` = not asked yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KakuninshoFacts {
    /// Is this a newborn's enrolment?
    pub newborn_enrolment: Option<bool>,
    /// The guardian's choice (only for a newborn).
    pub newborn_choice: Option<NewbornChoice>,
    /// Card and registration.
    pub registration: Option<Registration>,
    /// The certificate.
    pub certificate: Option<CertificateState>,
    /// Has the person blocked the viewing of their information (DV victims etc.)?
    pub viewing_blocked: Option<bool>,
    /// Is the person insured by 後期高齢者医療?
    pub late_elderly: Option<bool>,
    /// Birth date (needed for 後期高齢者 after the provisional period).
    pub birth_date: Option<NaiveDate>,
    /// Is using the card difficult (elderly, disabled, needs a helper)?
    pub difficult_to_use: Option<bool>,
    /// Is the card lost, or being renewed or reissued?
    pub lost_or_renewing: Option<bool>,
}

/// The next question of the flowchart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KakuninshoQuestion {
    /// Newborn enrolment?
    NewbornEnrolment,
    /// Guardian's choice.
    NewbornChoice,
    /// Card and registration.
    Registration,
    /// Certificate expiry.
    Certificate,
    /// Viewing blocked?
    ViewingBlocked,
    /// 後期高齢者?
    LateElderly,
    /// Birth date.
    BirthDate,
    /// Difficult to use?
    DifficultToUse,
    /// Lost or renewing?
    LostOrRenewing,
}

impl KakuninshoQuestion {
    /// The question put to staff.
    pub fn text_ja(self) -> &'static str {
        match self {
            KakuninshoQuestion::NewbornEnrolment => "新生児の保険加入手続きですか？",
            KakuninshoQuestion::NewbornChoice => "保護者は資格確認書を希望しますか？（いいえ = 後でマイナ保険証を登録する）",
            KakuninshoQuestion::Registration => "マイナンバーカードの状態は？ 1=カードなし 2=保険証利用登録なし 3=登録済み 4=本人の申請で登録解除",
            KakuninshoQuestion::Certificate => "電子証明書（またはカード）の有効期限が切れていれば、その日付を入力してください（切れていなければ空欄）",
            KakuninshoQuestion::ViewingBlocked => "DV被害等により自己情報の閲覧を停止していますか？",
            KakuninshoQuestion::LateElderly => "後期高齢者医療の被保険者ですか？",
            KakuninshoQuestion::BirthDate => "生年月日を入力してください（例 1945-04-01）",
            KakuninshoQuestion::DifficultToUse => "高齢・障害などでマイナ保険証での受診が困難（介助が必要など）ですか？",
            KakuninshoQuestion::LostOrRenewing => "カードを紛失した、または更新・再交付中ですか？",
        }
    }
}

/// How (or whether) a 資格確認書 is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuance {
    /// Issued without application (申請によらず交付).
    WithoutApplication,
    /// Issued on application to the insurer (申請により交付).
    OnApplication,
    /// Not issued; a 資格情報のお知らせ is sent instead.
    NotIssued,
}

impl Issuance {
    /// Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self {
            Issuance::WithoutApplication => "申請によらず交付されます",
            Issuance::OnApplication => "保険者への申請により交付されます",
            Issuance::NotIssued => "交付されません（資格情報のお知らせが届きます）",
        }
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KakuninshoOutcome {
    /// How.
    pub issuance: Issuance,
    /// The rule that decided.
    pub rule: RuleId,
    /// Why, for staff.
    pub reason_ja: String,
}

/// Facts that contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KakuninshoError {
    /// Birth date after the date asked about.
    #[error("birth date {birth} is after {on}")]
    BirthAfterDate {
        /// Birth date.
        birth: NaiveDate,
        /// The date asked about.
        on: NaiveDate,
    },
}

impl KakuninshoError {
    /// The message shown to staff.
    pub fn message_ja(&self) -> String {
        match self {
            KakuninshoError::BirthAfterDate { birth, on } => format!(
                "生年月日（{}）が判定日（{}）より後です。生年月日を確認してください。",
                date_ja(*birth),
                date_ja(*on)
            ),
        }
    }
}

fn decided(
    issuance: Issuance,
    rule: u8,
    reason: impl Into<String>,
) -> Result<Step<KakuninshoOutcome, KakuninshoQuestion>, KakuninshoError> {
    Ok(Step::Decided(KakuninshoOutcome {
        issuance,
        rule: RuleId(rule),
        reason_ja: reason.into(),
    }))
}

/// R22–R30: the outcome on `on`, or the next question to ask.
pub fn kakuninsho_eligibility(
    facts: &KakuninshoFacts,
    on: NaiveDate,
    settings: &RuleSettings,
) -> Result<Step<KakuninshoOutcome, KakuninshoQuestion>, KakuninshoError> {
    use Issuance::*;
    use KakuninshoQuestion as Q;
    macro_rules! need {
        ($field:ident, $q:expr) => {
            match facts.$field {
                Some(v) => v,
                None => return Ok(Step::Ask($q)),
            }
        };
    }
    if need!(newborn_enrolment, Q::NewbornEnrolment) {
        return match need!(newborn_choice, Q::NewbornChoice) {
            NewbornChoice::Kakuninsho => decided(WithoutApplication, 30, "新生児の加入手続き時に保護者が資格確認書を選んだため、交付されます。"),
            NewbornChoice::RegisterCardLater => decided(OnApplication, 30, "保護者がマイナ保険証を登録する意向のため、原則交付されません。希望すれば短い有効期限の資格確認書が交付されることがあります。"),
        };
    }
    // R22 sends it before the old 健康保険証 expires: worth saying only while such a card can
    // still be valid on the date asked about (R11).
    let before_old_card = if on <= settings.old_hokensho_last_day {
        "（お持ちの健康保険証の有効期限が切れる前に届きます）"
    } else {
        ""
    };
    match need!(registration, Q::Registration) {
        Registration::NoCard => {
            return decided(WithoutApplication, 22, format!("マイナンバーカードを持っていないため、申請によらず交付されます{before_old_card}。"))
        }
        Registration::NotRegistered => {
            return decided(WithoutApplication, 22, format!("マイナ保険証の利用登録をしていないため、申請によらず交付されます{before_old_card}。"))
        }
        Registration::CancelledByRequest => {
            return decided(
                WithoutApplication,
                23,
                format!(
                    "本人の申請で保険証利用登録を解除したため（{}以降可能）、申請によらず交付されます。",
                    date_ja(settings.registration_cancel_from)
                ),
            )
        }
        Registration::Registered => {}
    }
    if let CertificateState::ExpiredOn(expiry) = need!(certificate, Q::Certificate) {
        let end = grace_end(expiry);
        if on > end {
            return decided(
                WithoutApplication,
                24,
                format!(
                    "電子証明書の有効期限（{}）が切れ、3か月の猶予（{}まで）を過ぎても更新されていないため、申請によらず交付されます。",
                    date_ja(expiry),
                    date_ja(end)
                ),
            );
        }
    }
    if need!(viewing_blocked, Q::ViewingBlocked) {
        return decided(
            WithoutApplication,
            25,
            "DV被害等で自己情報の閲覧を停止しているため、申請によらず交付されます。",
        );
    }
    if need!(late_elderly, Q::LateElderly) {
        if on <= settings.late_elderly_provisional_until {
            return decided(
                WithoutApplication,
                26,
                format!(
                    "後期高齢者は{}までの暫定運用として、マイナ保険証の有無にかかわらず申請によらず交付されます。",
                    date_ja(settings.late_elderly_provisional_until)
                ),
            );
        }
        let birth = need!(birth_date, Q::BirthDate);
        if birth > on {
            return Err(KakuninshoError::BirthAfterDate { birth, on });
        }
        let reference = settings.late_elderly_age_reference;
        let age = legal_age_on(birth, reference).unwrap_or(0);
        if age >= 85 {
            return decided(
                WithoutApplication,
                26,
                format!(
                    "{}時点で85歳以上（{age}歳）の後期高齢者のため、申請によらず交付されます。",
                    date_ja(reference)
                ),
            );
        }
        return decided(
            OnApplication,
            26,
            format!(
                "{}時点で84歳以下の後期高齢者でマイナ保険証をお持ちのため、資格情報のお知らせが届きます。希望すれば申請により資格確認書が交付されます。",
                date_ja(reference)
            ),
        );
    }
    if need!(difficult_to_use, Q::DifficultToUse) {
        return decided(
            OnApplication,
            27,
            "マイナ保険証での受診が困難な方（要配慮者）のため、保険者への申請により交付されます。",
        );
    }
    if need!(lost_or_renewing, Q::LostOrRenewing) {
        return decided(OnApplication, 28, "カードの紛失・更新中のため、保険者への申請により交付されます（紛失時はまず 0120-95-0178 で利用停止）。");
    }
    decided(
        NotIssued,
        29,
        "有効なマイナ保険証をお持ちのため資格確認書は交付されず、資格情報のお知らせが届きます。",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::rules::parse_date;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    fn registered() -> KakuninshoFacts {
        KakuninshoFacts {
            newborn_enrolment: Some(false),
            registration: Some(Registration::Registered),
            certificate: Some(CertificateState::Valid),
            viewing_blocked: Some(false),
            late_elderly: Some(false),
            difficult_to_use: Some(false),
            lost_or_renewing: Some(false),
            ..Default::default()
        }
    }

    #[test]
    fn kakuninsho_table() {
        use Issuance::*;
        let s = RuleSettings::default();
        let base = registered();
        let late = |birth: &str| KakuninshoFacts {
            late_elderly: Some(true),
            birth_date: Some(d(birth)),
            ..base
        };
        let rows: Vec<(&str, &str, KakuninshoFacts, &str, Issuance)> = vec![
            (
                "R30",
                "newborn, guardian wants 確認書",
                KakuninshoFacts {
                    newborn_enrolment: Some(true),
                    newborn_choice: Some(NewbornChoice::Kakuninsho),
                    ..Default::default()
                },
                "2025-01-10",
                WithoutApplication,
            ),
            (
                "R30",
                "newborn, will register",
                KakuninshoFacts {
                    newborn_enrolment: Some(true),
                    newborn_choice: Some(NewbornChoice::RegisterCardLater),
                    ..Default::default()
                },
                "2025-01-10",
                OnApplication,
            ),
            (
                "R22",
                "no card",
                KakuninshoFacts {
                    registration: Some(Registration::NoCard),
                    ..base
                },
                "2025-01-10",
                WithoutApplication,
            ),
            (
                "R22",
                "card not registered",
                KakuninshoFacts {
                    registration: Some(Registration::NotRegistered),
                    ..base
                },
                "2025-01-10",
                WithoutApplication,
            ),
            (
                "R23",
                "registration cancelled",
                KakuninshoFacts {
                    registration: Some(Registration::CancelledByRequest),
                    ..base
                },
                "2025-01-10",
                WithoutApplication,
            ),
            (
                "R29",
                "R24 boundary: certificate expired 2024-10-15, 2025-01-31 still in grace",
                KakuninshoFacts {
                    certificate: Some(CertificateState::ExpiredOn(d("2024-10-15"))),
                    ..base
                },
                "2025-01-31",
                NotIssued,
            ),
            (
                "R24",
                "certificate expired 2024-10-15, 2025-02-01",
                KakuninshoFacts {
                    certificate: Some(CertificateState::ExpiredOn(d("2024-10-15"))),
                    ..base
                },
                "2025-02-01",
                WithoutApplication,
            ),
            (
                "R25",
                "DV viewing block",
                KakuninshoFacts {
                    viewing_blocked: Some(true),
                    ..base
                },
                "2025-01-10",
                WithoutApplication,
            ),
            (
                "R26",
                "後期, 2026-07-31, aged 76",
                late("1950-01-01"),
                "2026-07-31",
                WithoutApplication,
            ),
            (
                "R26",
                "後期, 2026-08-01, aged 76",
                late("1950-01-01"),
                "2026-08-01",
                OnApplication,
            ),
            (
                "R26",
                "後期, 2026-08-01, born 1941-08-02: 85 on 08-01",
                late("1941-08-02"),
                "2026-08-01",
                WithoutApplication,
            ),
            (
                "R26",
                "後期, 2026-08-01, born 1941-08-03: 84",
                late("1941-08-03"),
                "2026-08-01",
                OnApplication,
            ),
            (
                "R27",
                "difficult to use",
                KakuninshoFacts {
                    difficult_to_use: Some(true),
                    ..base
                },
                "2025-01-10",
                OnApplication,
            ),
            (
                "R28",
                "lost card",
                KakuninshoFacts {
                    lost_or_renewing: Some(true),
                    ..base
                },
                "2025-01-10",
                OnApplication,
            ),
            ("R29", "working マイナ保険証", base, "2025-01-10", NotIssued),
        ];
        for (rule, case, facts, on, want) in rows {
            let Step::Decided(o) = kakuninsho_eligibility(&facts, d(on), &s).unwrap() else {
                panic!("{rule} {case}: asked a question");
            };
            assert_eq!(o.issuance, want, "{rule} {case}");
            assert_eq!(o.rule.to_string(), rule, "{case}: {}", o.reason_ja);
        }
    }

    #[test]
    fn asks_one_question_at_a_time() {
        let s = RuleSettings::default();
        let mut f = KakuninshoFacts::default();
        let on = d("2026-09-01");
        assert_eq!(
            kakuninsho_eligibility(&f, on, &s),
            Ok(Step::Ask(KakuninshoQuestion::NewbornEnrolment))
        );
        f.newborn_enrolment = Some(false);
        assert_eq!(
            kakuninsho_eligibility(&f, on, &s),
            Ok(Step::Ask(KakuninshoQuestion::Registration))
        );
        f = KakuninshoFacts {
            late_elderly: Some(true),
            birth_date: None,
            ..registered()
        };
        assert_eq!(
            kakuninsho_eligibility(&f, on, &s),
            Ok(Step::Ask(KakuninshoQuestion::BirthDate))
        );
        f.birth_date = Some(d("2027-01-01"));
        assert!(kakuninsho_eligibility(&f, on, &s)
            .unwrap_err()
            .message_ja()
            .contains("生年月日"));
    }

    #[test]
    fn no_card_mentions_the_old_card_only_while_it_can_be_valid() {
        // It says the 資格確認書 comes before the old 健康保険証 expires only up to that card's
        // last possible day (R22 with R11: 2025-12-01).
        let s = RuleSettings::default();
        let facts = KakuninshoFacts {
            newborn_enrolment: Some(false),
            registration: Some(Registration::NoCard),
            ..Default::default()
        };
        for (case, on, named) in [
            ("R22 on the old card's last day", "2025-12-01", true),
            ("R22 the day after", "2025-12-02", false),
        ] {
            let Step::Decided(o) = kakuninsho_eligibility(&facts, d(on), &s).unwrap() else {
                panic!("{case}: not decided");
            };
            assert_eq!(o.rule.to_string(), "R22", "{case}");
            assert_eq!(
                o.reason_ja.contains("健康保険証"),
                named,
                "{case}: {}",
                o.reason_ja
            );
            assert!(o.reason_ja.ends_with('。'), "{case}: {}", o.reason_ja);
        }
    }
}
