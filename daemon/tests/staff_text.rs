//! Every operator message in one golden file (issue 10, item 5 "Staff text").
//!
//! Reception staff read Tsunagi's Japanese text one message at a time, in the middle of a
//! queue. This test gathers every message they can be shown — each error's `message_ja()`
//! built with realistic values, the rules' notes over representative cases and their date
//! boundaries, the offline-capture instructions, the `tsunagi rules` output, the API's problem
//! details — through the public API only, and renders them into
//! `tests/golden/staff-text.txt`, grouped by where staff meet them. Reviewing a wording change
//! is then reading a diff of that file as staff would read the screen.
//!
//! Besides the comparison, every message is checked for what staff must never see: internal
//! rule ids (`R12`), developer words (`None`, `Err(`, `panic`, English error text), a sentence
//! cut off after "、", and the old 健康保険証 named for a visit date on which it no longer
//! counts (R11: valid to 2025-12-01; an expired one only under the temporary measure to
//! 2026-03-31).
//!
//! `UPDATE_GOLDEN=1 cargo test -p tsunagi --test staff_text` rewrites the golden file.

// Test code: panics are the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate};

use tsunagi::api::problem::Problem;
use tsunagi::api::ApiStartError;
use tsunagi::card::{CardError, CardRefusal, CertificateStanding};
use tsunagi::check::capture::instructions_ja;
use tsunagi::cli::rules::{
    run_rules, CliError, DocumentArgs, ExemptionArgs, KakuninshoArgs, RulesCommand,
};
use tsunagi::domain::{DomainError, FacilityType, IdentityMethod, InsurerNumber};
use tsunagi::ledger::event::{Captured, KnownInsurance, NumbersRecord};
use tsunagi::ledger::LedgerError;
use tsunagi::ops::OpError;
use tsunagi::oqs::{Answer, Inconsistency, Notice, Qualification, QueryError};
use tsunagi::report::ReportError;
use tsunagi::rules::calendar::{date_ja, YearMonth};
use tsunagi::rules::certificate::{certificate_usability, ReadVia};
use tsunagi::rules::claim::{
    claim_basis, ClaimError, ClaimFacts, InsuranceNumbers, InsuranceType, Moushitatesho,
    NumbersError, NumbersSource,
};
use tsunagi::rules::copay::{
    copay_when_check_fails, copay_when_confirmed, ConfirmedFacts, CopayError, CopayRatio,
    ElderlyCertificate,
};
use tsunagi::rules::deadlines::{follow_up, DeadlineError, FollowUpFacts, Treatment};
use tsunagi::rules::documents::{
    document_validity, fallback_order_ja, numbers_documents_ja, substitute_documents_ja,
    temporary_acceptance_note_ja, DocumentError, DocumentKind, PresentedDocument, Requirement,
};
use tsunagi::rules::exemption::ExemptionError;
use tsunagi::rules::homecare::home_visit_plan;
use tsunagi::rules::incentive::{incentive_tier, UsageCounts};
use tsunagi::rules::kakuninsho::{KakuninshoError, KakuninshoQuestion};
use tsunagi::rules::{DateError, RuleSettings};
use tsunagi::service::config::ConfigError;
use tsunagi::service::StartupError;
use tsunagi::view::{CheckPhase, CheckReport, ReportStatus};

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn at(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

/// How strictly a text is checked for its ending.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// A sentence (or sentences) that must end properly.
    Sentence,
    /// A label, a heading, a question prompt or a fragment shown inside another message.
    Label,
    /// Several lines of output: each line is checked as a label.
    Block,
}

/// What naming the old 健康保険証 is allowed.
#[derive(Clone, Copy)]
enum Dated {
    /// Shown whatever the visit date: must not name it.
    Never,
    /// Judged on this visit date.
    On(NaiveDate),
    /// A list of the kinds a command accepts (naming a kind is not telling staff to take it).
    Listing,
}

struct Golden {
    out: String,
    problems: Vec<String>,
    tags: std::collections::BTreeSet<String>,
    settings: RuleSettings,
}

/// Where the old 健康保険証 is named (not マイナ保険証, not the card's 保険証利用登録): the
/// text before each mention.
fn old_card_mentions(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("保険証") {
        let at = from + i;
        let before = &text[..at];
        let after = &text[at + "保険証".len()..];
        if !before.ends_with("マイナ") && !after.starts_with("利用登録") {
            found.push(before.strip_suffix("健康").unwrap_or(before));
        }
        from = at + "保険証".len();
    }
    found
}

/// A standalone rule id: `R` + 1–2 digits, not inside a word or a longer number.
fn has_rule_id(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    for i in 0..chars.len() {
        if chars[i] != 'R' {
            continue;
        }
        if i > 0 && chars[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let digits = chars[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if (1..=2).contains(&digits) {
            return true;
        }
    }
    false
}

/// Three English words in a row: an error's own text (`Permission denied`, `key must be a
/// string`) rather than a flag, a code or a command named for staff to type.
fn has_english_sentence(text: &str) -> bool {
    let mut run = 0;
    for word in text.split(|c: char| c.is_whitespace() || "（）「」、。:：".contains(c)) {
        if word.len() >= 2 && word.chars().all(|c| c.is_ascii_alphabetic()) {
            run += 1;
            if run >= 3 {
                return true;
            }
        } else if !word.is_empty() {
            run = 0;
        }
    }
    false
}

/// Words that mean a developer's text reached staff.
const DEVELOPER_WORDS: &[&str] = &[
    "panic",
    "unwrap",
    "None",
    "Some(",
    "Err(",
    "Ok(",
    "{:?}",
    "Error",
    "error:",
    "os error",
    "denied",
    "No such file",
    "expected",
    "invalid",
    "failed",
    "timed out",
    "unreachable",
    "\\u{",
];

impl Golden {
    fn new() -> Self {
        Self {
            out: String::from(
                "# Tsunagi: every message reception staff can be shown\n\
                 # Generated by daemon/tests/staff_text.rs; regenerate with\n\
                 # UPDATE_GOLDEN=1 cargo test -p tsunagi --test staff_text\n\
                 # Each entry: [case] message. Dates in a case are visit (or judgement) dates.\n",
            ),
            problems: Vec::new(),
            tags: Default::default(),
            settings: RuleSettings::default(),
        }
    }

    fn section(&mut self, title: &str) {
        self.out.push_str(&format!("\n## {title}\n\n"));
    }

    fn say(&mut self, tag: &str, text: &str) {
        self.add(tag, text, Shape::Sentence, Dated::Never);
    }

    fn say_on(&mut self, tag: &str, visit: NaiveDate, text: &str) {
        self.add(tag, text, Shape::Sentence, Dated::On(visit));
    }

    fn label(&mut self, tag: &str, text: &str) {
        self.add(tag, text, Shape::Label, Dated::Never);
    }

    fn block_on(&mut self, tag: &str, visit: NaiveDate, text: &str) {
        self.add(tag, text, Shape::Block, Dated::On(visit));
    }

    fn add(&mut self, tag: &str, text: &str, shape: Shape, dated: Dated) {
        assert!(self.tags.insert(tag.to_string()), "tag {tag} used twice");
        let text = text.trim_end_matches('\n');
        if text.contains('\n') {
            self.out.push_str(&format!("[{tag}]\n"));
            for line in text.lines() {
                self.out.push_str(&format!("    {line}\n"));
            }
        } else {
            self.out.push_str(&format!("[{tag}] {text}\n"));
        }
        self.check(tag, text, shape, dated);
    }

    fn problem(&mut self, tag: &str, what: &str) {
        let p = format!("{tag}: {what}");
        if !self.problems.contains(&p) {
            self.problems.push(p);
        }
    }

    fn check(&mut self, tag: &str, text: &str, shape: Shape, dated: Dated) {
        if text.trim().is_empty() {
            self.problem(tag, "empty message");
        }
        if has_rule_id(text) {
            self.problem(tag, "internal rule id");
        }
        for w in DEVELOPER_WORDS {
            if text.contains(w) {
                self.problem(tag, "English error text");
            }
        }
        if has_english_sentence(text) {
            self.problem(tag, "English error text");
        }
        for line in text.lines() {
            // Indentation of printed output is layout, not a typo.
            let body = line.trim_start();
            for bad in ["。。", "、。", "。、", "、、", "  ", "（）"] {
                if body.contains(bad) {
                    self.problem(tag, &format!("broken punctuation {bad:?}"));
                }
            }
            let t = line.trim_end();
            if t != line {
                self.problem(tag, "trailing space");
            }
            if t.ends_with(['、', ',', '，']) {
                self.problem(tag, "ends with 、");
            }
        }
        if shape == Shape::Sentence && !text.ends_with(['。', '）', '」']) {
            self.problem(tag, "sentence does not end with 。");
        }
        let mentions = old_card_mentions(text);
        if !mentions.is_empty() {
            let s = &self.settings;
            // Under the temporary measure only an expired card is named (to be checked by an
            // online lookup by number), never a valid one.
            let only_expired = mentions.iter().all(|b| b.ends_with("期限切れの"));
            match dated {
                Dated::Never => self.problem(tag, "names the old 保険証 without a visit date"),
                Dated::On(v) if v <= s.old_hokensho_last_day => {}
                Dated::On(v) if v <= s.expired_acceptance_until && only_expired => {}
                // Refusing it names it too.
                Dated::On(_) if text.contains("受け付けられません") => {}
                Dated::On(v) => self.problem(
                    tag,
                    &format!("names the old 保険証 on {v}, when it is not valid"),
                ),
                Dated::Listing => {}
            }
        }
    }

    /// The golden file text, and the problems found.
    fn finish(self) -> (String, Vec<String>) {
        let left = self.problems;
        (self.out, left)
    }
}

/// The dates every date-dependent message is judged on: each boundary of R11 and its eve.
fn boundary_dates() -> Vec<(&'static str, NaiveDate)> {
    vec![
        ("2025-07-31", d("2025-07-31")),
        ("2025-08-01", d("2025-08-01")),
        ("2025-12-01", d("2025-12-01")),
        ("2025-12-02", d("2025-12-02")),
        ("2026-03-31", d("2026-03-31")),
        ("2026-04-01", d("2026-04-01")),
    ]
}

fn qualification(ratio_percent: Option<u8>) -> Qualification {
    Qualification {
        insurer_number: InsurerNumber::parse("06139917").unwrap(),
        insurer_name: Some("練馬区".into()),
        symbol: Some("練馬あ12".into()),
        number: "0004471".into(),
        branch: Some("01".into()),
        name: Some("山田 花子".into()),
        kana: Some("ヤマダ ハナコ".into()),
        insured_name: Some("山田 太郎".into()),
        birth_date: d("1985-06-15"),
        sex: None,
        personal_family: None,
        card_classification: None,
        ratio_percent,
        card_ratio_percent: None,
        preschool: false,
        elderly_ratio_percent: None,
        elderly_valid_from: None,
        elderly_valid_until: None,
        qualification_date: Some(d("2020-04-01")),
        disqualification_date: None,
        reason_of_loss: None,
        card_valid_from: None,
        card_valid_until: None,
        limit: None,
    }
}

fn card(g: &mut Golden) {
    g.section("カード");
    let io_denied = || pcsc::Error::NoService;
    let errors: Vec<(&str, CardError)> = vec![
        ("service-not-running", CardError::ServiceNotRunning),
        ("no-readers", CardError::NoReaders),
        (
            "reader-not-found-none",
            CardError::ReaderNotFound {
                name: "SONY FeliCa RC-S300".into(),
                available: vec![],
            },
        ),
        (
            "reader-not-found-others",
            CardError::ReaderNotFound {
                name: "SONY FeliCa RC-S300".into(),
                available: vec!["ACS ACR39U 00 00".into(), "NTT Com SCR3310 01 00".into()],
            },
        ),
        ("no-card-in-time", CardError::NoCardInTime),
        ("removed", CardError::Removed),
        ("not-my-number-card", CardError::NotMyNumberCard),
        (
            "bad-certificate",
            CardError::BadCertificate { detail: "not DER" },
        ),
        ("truncated-response", CardError::TruncatedResponse),
        ("wrong-pin-2-left", CardError::WrongPin { tries_left: 2 }),
        ("wrong-pin-1-left", CardError::WrongPin { tries_left: 1 }),
        ("pin-blocked", CardError::PinBlocked),
        ("last-try-not-confirmed", CardError::LastTryNotConfirmed),
        ("cancelled", CardError::Cancelled),
        ("pin-not-verified", CardError::PinNotVerified),
        ("signature-mismatch", CardError::SignatureMismatch),
        ("pcsc", CardError::Pcsc(io_denied())),
    ];
    for (tag, e) in errors {
        let m = e.message_ja();
        g.say(&format!("card/{tag}"), &m);
    }
    let refusals: Vec<(&str, CardRefusal)> = vec![
        (
            "certificate-expired",
            CardRefusal::CertificateExpired {
                expiry: d("2025-02-10"),
                grace_end: d("2025-05-31"),
            },
        ),
        (
            "smartphone-expired",
            CardRefusal::SmartphoneExpired {
                expiry: d("2025-10-31"),
            },
        ),
        (
            "smartphone-not-yet",
            CardRefusal::SmartphoneNotYet {
                from: d("2025-09-19"),
            },
        ),
        ("photo-less-needs-pin", CardRefusal::PhotoLessNeedsPin),
        ("photo-less-pin-blocked", CardRefusal::PhotoLessPinBlocked),
        ("no-pin-set", CardRefusal::NoPinSet),
    ];
    for (tag, r) in refusals {
        let m = CardError::Refused { reason: r }.message_ja();
        g.say(&format!("card/refused/{tag}"), &m);
    }
    // The certificate judged on the visit date (R3): the grace notice, at its boundaries.
    let s = RuleSettings::default();
    for (tag, expiry, visit) in [
        ("in-grace-first-day", "2025-02-10", "2025-02-11"),
        ("in-grace-last-day", "2025-02-10", "2025-05-31"),
    ] {
        let standing =
            tsunagi::card::judge_certificate(d(expiry), d(visit), ReadVia::Card, &s).unwrap();
        let (_, m) = standing.notice_ja().unwrap();
        g.say_on(&format!("card/notice/{tag} {visit}"), d(visit), &m);
    }
    let past =
        tsunagi::card::judge_certificate(d("2025-02-10"), d("2025-06-01"), ReadVia::Card, &s)
            .unwrap_err();
    g.say_on(
        "card/refused/beyond-grace 2025-06-01",
        d("2025-06-01"),
        &CardError::Refused { reason: past }.message_ja(),
    );
    assert!(CertificateStanding::Valid {
        expiry: d("2030-01-01")
    }
    .notice_ja()
    .is_none());
}

fn oqs(g: &mut Golden) {
    g.section("資格確認システム");
    let s = RuleSettings::default();
    let answers: Vec<(&str, Answer)> = vec![
        (
            "confirmed-3wari",
            Answer::Confirmed {
                qualification: qualification(Some(30)),
                notices: vec![],
            },
        ),
        (
            "confirmed-no-ratio",
            Answer::Confirmed {
                qualification: qualification(None),
                notices: vec![],
            },
        ),
        (
            "invalid",
            Answer::Invalid {
                qualification: qualification(Some(30)),
                newer_exists: false,
            },
        ),
        (
            "invalid-newer-exists",
            Answer::Invalid {
                qualification: qualification(Some(30)),
                newer_exists: true,
            },
        ),
        ("not-found", Answer::NotFound { notices: vec![] }),
        (
            "multiple",
            Answer::MultipleMatches(vec![qualification(Some(30)), qualification(Some(20))]),
        ),
    ];
    for (tag, a) in &answers {
        g.say(&format!("answer/{tag}"), &a.message_ja());
    }
    for (tag, a) in &answers {
        if matches!(
            a,
            Answer::Invalid {
                newer_exists: false,
                ..
            } | Answer::NotFound { .. }
        ) {
            for (date, v) in boundary_dates() {
                g.say_on(&format!("answer/{tag} {date}"), v, &a.message_ja_on(v, &s));
            }
        }
    }
    for (tag, n) in [
        (
            "expires-soon",
            Notice::new("SIM-W2001", "電子証明書の有効期限が近づいています"),
        ),
        (
            "in-grace",
            Notice::new("SIM-W2002", "電子証明書の有効期限が切れています"),
        ),
        (
            "unknown-code",
            Notice::new("OQS-W9999", "保険者からのお知らせがあります"),
        ),
        ("unknown-code-empty", Notice::new("OQS-W9998", "")),
    ] {
        g.say(&format!("notice/{tag}"), &n.message_ja());
    }
    let errors: Vec<(&str, QueryError)> = vec![
        ("certificate-expired", QueryError::CertificateExpired),
        ("certificate-revoked", QueryError::CertificateRevoked),
        ("pin-required", QueryError::PinRequired),
        (
            "card-not-accepted",
            QueryError::CardNotAccepted {
                code: "SIM-E1101".into(),
                message: "カード情報を確認できません".into(),
            },
        ),
        (
            "rejected-config",
            QueryError::Rejected {
                code: tsunagi::oqs::CONFIG_ERROR_CODE.into(),
                message: "医療機関コードは10桁の数字です".into(),
            },
        ),
        (
            "rejected",
            QueryError::Rejected {
                code: "SIM-E0101".into(),
                message: "要求内容に誤りがあります".into(),
            },
        ),
        (
            "system-error",
            QueryError::SystemError {
                code: "SIM-E0900".into(),
                message: "システムエラーが発生しました".into(),
            },
        ),
        ("timeout", QueryError::Timeout),
        ("unreachable", QueryError::Unreachable),
        ("server-error", QueryError::ServerError { status: 503 }),
        (
            "rate-limited-30s",
            QueryError::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
            },
        ),
        (
            "rate-limited",
            QueryError::RateLimited { retry_after: None },
        ),
        ("unauthorized", QueryError::Unauthorized),
        (
            "malformed",
            QueryError::Malformed {
                detail: "expected string at MessageHeader".into(),
            },
        ),
        (
            "message-error",
            QueryError::MessageError {
                code: "SIM-E0200".into(),
                message: "電文の形式に誤りがあります".into(),
            },
        ),
        (
            "unknown-code",
            QueryError::UnknownCode {
                field: "QualificationValidity".into(),
                value: "9".into(),
            },
        ),
        (
            "inconsistent-count",
            QueryError::Inconsistent(Inconsistency::ResultCount {
                validity: "1".into(),
                got: 2,
            }),
        ),
        (
            "inconsistent-date",
            QueryError::Inconsistent(Inconsistency::OtherDate {
                asked: d("2026-04-16"),
                answered: d("2026-04-15"),
            }),
        ),
        (
            "inconsistent-card",
            QueryError::Inconsistent(Inconsistency::OtherCard {
                field: "InsuredIdentificationNumber",
            }),
        ),
        (
            "inconsistent-covering",
            QueryError::Inconsistent(Inconsistency::NotCovering),
        ),
    ];
    for (tag, e) in &errors {
        g.say(&format!("query/{tag}"), &e.message_ja());
    }
    // The messages that name documents, judged on each boundary of R11.
    for (tag, e) in &errors[..4] {
        for (date, v) in boundary_dates() {
            g.say_on(&format!("query/{tag} {date}"), v, &e.message_ja_on(v, &s));
        }
    }
}

fn captured(
    visit: &str,
    facility: FacilityType,
    first_visit: bool,
    last_known: Option<KnownInsurance>,
) -> Captured {
    Captured {
        visit_date: d(visit),
        facility,
        first_visit,
        next_visit: None,
        card: None,
        document: None,
        reason: Some("unreachable".into()),
        last_known,
        captured_at: at(&format!("{visit}T09:30:00+09:00")),
    }
}

fn known(birth: &str, copay_tenths: Option<u8>) -> KnownInsurance {
    let mut k = KnownInsurance::new(
        NumbersRecord {
            insurer: InsurerNumber::parse("06139917").unwrap(),
            symbol: Some("練馬あ12".into()),
            number: "0004471".into(),
            branch: Some("01".into()),
        },
        d(birth),
        copay_tenths,
    );
    k.confirmed_on = Some(d("2026-03-10"));
    k.source = Some(tsunagi::ledger::event::KnownSource::History {
        check_id: "01JRZ3Q4C5XK8V0T9N2M7B6A1D".into(),
    });
    k
}

/// Earlier data the receipt computer sent with the request.
fn from_receipt_computer(birth: &str, copay_tenths: Option<u8>) -> KnownInsurance {
    let mut k = known(birth, copay_tenths);
    k.confirmed_on = None;
    k.source = Some(tsunagi::ledger::event::KnownSource::Request);
    k
}

fn offline(g: &mut Golden) {
    g.section("オフライン受付");
    let cases = [
        (
            "first-visit-unknown",
            captured("2026-04-16", FacilityType::Medical, true, None),
        ),
        (
            "return-visit-unknown",
            captured("2026-04-16", FacilityType::Medical, false, None),
        ),
        (
            "known-adult",
            captured(
                "2026-04-16",
                FacilityType::Medical,
                false,
                Some(known("1985-06-15", Some(3))),
            ),
        ),
        (
            "known-preschool",
            captured(
                "2026-04-16",
                FacilityType::Dental,
                false,
                Some(known("2022-05-01", Some(2))),
            ),
        ),
        (
            "known-over-70-1wari",
            captured(
                "2026-04-16",
                FacilityType::Pharmacy,
                false,
                Some(known("1950-01-10", Some(1))),
            ),
        ),
        (
            "known-over-70-no-ratio",
            captured(
                "2026-04-16",
                FacilityType::Medical,
                false,
                Some(known("1950-01-10", None)),
            ),
        ),
        (
            "known-from-receipt-computer",
            captured(
                "2026-04-16",
                FacilityType::Medical,
                true,
                Some(from_receipt_computer("1985-06-15", Some(3))),
            ),
        ),
        (
            "judo-first-visit",
            captured("2026-04-16", FacilityType::Judo, true, None),
        ),
    ];
    for (tag, c) in cases {
        let lines = instructions_ja(&c);
        for (i, l) in lines.iter().enumerate() {
            g.say_on(&format!("capture/{tag} {}", i + 1), c.visit_date, l);
        }
    }
    // What `tsunagi check` prints for a captured check.
    let c = captured("2026-04-16", FacilityType::Medical, true, None);
    let report = CheckReport {
        status: ReportStatus::Captured,
        check_id: Some("01JRZ3Q4C5XK8V0T9N2M7B6A1D".into()),
        method: IdentityMethod::Visual,
        visit_date: c.visit_date,
        certificate: None,
        apdus: 0,
        qualification: None,
        candidates: vec![],
        newer_exists: false,
        notices: vec![],
        error: Some("unreachable".into()),
        transient: true,
        pin_tries_left: None,
        message_ja: "オフライン受付（確認ID: 01JRZ3Q4C5XK8V0T9N2M7B6A1D）".into(),
        instructions_ja: instructions_ja(&c),
        copay_tenths: None,
        earlier: None,
        facility_output: None,
    };
    let mut out = Vec::new();
    tsunagi::cli::render::report_text(&report, &mut out).unwrap();
    g.block_on(
        "check-output/captured 2026-04-16",
        c.visit_date,
        &String::from_utf8(out).unwrap(),
    );
    // An answered check as printed.
    let mut report = report;
    report.status = ReportStatus::Invalid;
    report.certificate = Some(tsunagi::view::CertificateView {
        serial: "0A1B2C".into(),
        not_after: d("2029-06-15"),
    });
    report.qualification = Some(qualification(Some(30)));
    let invalid = Answer::Invalid {
        qualification: qualification(Some(30)),
        newer_exists: false,
    };
    report.message_ja = invalid.message_ja_on(d("2026-04-16"), &RuleSettings::default());
    report.instructions_ja = vec![];
    let mut out = Vec::new();
    tsunagi::cli::render::report_text(&report, &mut out).unwrap();
    g.block_on(
        "check-output/invalid 2026-04-16",
        d("2026-04-16"),
        &String::from_utf8(out).unwrap(),
    );
    for p in [
        CheckPhase::Done,
        CheckPhase::Waiting,
        CheckPhase::NeedsStaff,
        CheckPhase::Resolved,
    ] {
        g.label(&format!("phase/{p:?}"), p.label_ja());
    }
    g.label("exit-codes", tsunagi::cli::exit::HELP);
}

fn documents(g: &mut Golden) {
    g.section("書類");
    let s = RuleSettings::default();
    for k in DocumentKind::ALL {
        g.add(
            &format!("kind/{}", k.as_str()),
            k.label_ja(),
            Shape::Label,
            Dated::Listing,
        );
    }
    for r in [
        Requirement::OnlineCardCheck,
        Requirement::InsuranceDataOnly,
        Requirement::PresentCardToo,
        Requirement::OnlineLookupByNumber,
        Requirement::AskForValidDocumentNextTime,
        Requirement::NumbersUsableForClaim,
        Requirement::FallBack,
    ] {
        g.label(&format!("requirement/{r:?}"), r.label_ja());
    }
    g.add(
        "document-error/unknown-kind",
        &DocumentError::UnknownKind("shoukasho".into()).message_ja(),
        Shape::Sentence,
        Dated::Listing,
    );
    g.say(
        "document-error/missing-expiry",
        &DocumentError::MissingExpiry(DocumentKind::Kakuninsho).message_ja(),
    );
    for (date, v) in boundary_dates() {
        g.add(
            &format!("fallback-order {date}"),
            &fallback_order_ja(v, &s),
            Shape::Label,
            Dated::On(v),
        );
        g.add(
            &format!("substitutes {date}"),
            &substitute_documents_ja(Some(v), &s),
            Shape::Label,
            Dated::On(v),
        );
        g.add(
            &format!("numbers-documents {date}"),
            &numbers_documents_ja(Some(v), &s),
            Shape::Label,
            Dated::On(v),
        );
        if let Some(n) = temporary_acceptance_note_ja(Some(v), &s) {
            g.say_on(&format!("temporary-measure {date}"), v, &n);
        }
    }
    // Each document on the dates that decide it (R7–R11), as staff read the verdict.
    let doc = |kind, expires: Option<&str>, with_card, insurance| PresentedDocument {
        kind,
        expires: expires.map(d),
        with_card,
        insurance,
    };
    let cases = [
        (
            "myna valid",
            doc(
                DocumentKind::MynaHokensho,
                Some("2029-06-15"),
                false,
                InsuranceType::Unknown,
            ),
            "2026-04-16",
        ),
        (
            "myna in grace",
            doc(
                DocumentKind::MynaHokensho,
                Some("2026-02-10"),
                false,
                InsuranceType::Unknown,
            ),
            "2026-04-16",
        ),
        (
            "myna beyond grace",
            doc(
                DocumentKind::MynaHokensho,
                Some("2025-12-10"),
                false,
                InsuranceType::Unknown,
            ),
            "2026-04-16",
        ),
        (
            "portal",
            doc(
                DocumentKind::MynaPortal,
                None,
                false,
                InsuranceType::Unknown,
            ),
            "2026-04-16",
        ),
        (
            "oshirase with card",
            doc(DocumentKind::Oshirase, None, true, InsuranceType::Unknown),
            "2026-04-16",
        ),
        (
            "oshirase alone kokuho",
            doc(DocumentKind::Oshirase, None, false, InsuranceType::Kokuho),
            "2025-08-01",
        ),
        (
            "oshirase alone unknown",
            doc(DocumentKind::Oshirase, None, false, InsuranceType::Unknown),
            "2025-08-01",
        ),
        (
            "oshirase alone employee",
            doc(DocumentKind::Oshirase, None, false, InsuranceType::Employee),
            "2025-07-31",
        ),
        (
            "oshirase alone all",
            doc(DocumentKind::Oshirase, None, false, InsuranceType::Employee),
            "2026-03-31",
        ),
        (
            "oshirase alone ended",
            doc(DocumentKind::Oshirase, None, false, InsuranceType::Employee),
            "2026-04-01",
        ),
        (
            "kakuninsho valid",
            doc(
                DocumentKind::Kakuninsho,
                Some("2030-07-31"),
                false,
                InsuranceType::Employee,
            ),
            "2026-04-16",
        ),
        (
            "kakuninsho late elderly",
            doc(
                DocumentKind::Kakuninsho,
                Some("2026-07-31"),
                false,
                InsuranceType::LateElderly,
            ),
            "2026-04-16",
        ),
        (
            "kakuninsho expired",
            doc(
                DocumentKind::Kakuninsho,
                Some("2026-03-31"),
                false,
                InsuranceType::Employee,
            ),
            "2026-04-16",
        ),
        (
            "hokensho last day",
            doc(
                DocumentKind::OldHokensho,
                Some("2026-09-30"),
                false,
                InsuranceType::Employee,
            ),
            "2025-12-01",
        ),
        (
            "hokensho own expiry",
            doc(
                DocumentKind::OldHokensho,
                Some("2025-07-31"),
                false,
                InsuranceType::Employee,
            ),
            "2025-07-31",
        ),
        (
            "hokensho expired kokuho",
            doc(
                DocumentKind::OldHokensho,
                Some("2025-07-31"),
                false,
                InsuranceType::Kokuho,
            ),
            "2025-08-01",
        ),
        (
            "hokensho expired employee",
            doc(
                DocumentKind::OldHokensho,
                Some("2025-07-31"),
                false,
                InsuranceType::Employee,
            ),
            "2025-08-01",
        ),
        (
            "hokensho expired all",
            doc(
                DocumentKind::OldHokensho,
                Some("2026-09-30"),
                false,
                InsuranceType::Employee,
            ),
            "2025-12-02",
        ),
        (
            "hokensho temporary last day",
            doc(
                DocumentKind::OldHokensho,
                Some("2026-09-30"),
                false,
                InsuranceType::Employee,
            ),
            "2026-03-31",
        ),
        (
            "hokensho after measure",
            doc(
                DocumentKind::OldHokensho,
                Some("2026-09-30"),
                false,
                InsuranceType::Employee,
            ),
            "2026-04-01",
        ),
    ];
    for (tag, doc, visit) in cases {
        let v = document_validity(&doc, d(visit), &s).unwrap();
        g.say_on(&format!("verdict/{tag} {visit}"), d(visit), &v.reason_ja);
    }
    // `tsunagi rules document …` as printed.
    for (tag, kind, expires, visit, insurer) in [
        (
            "hokensho",
            "hokensho",
            Some("2026-09-30"),
            "2025-12-01",
            None,
        ),
        (
            "hokensho",
            "hokensho",
            Some("2026-09-30"),
            "2025-12-02",
            Some("06139917"),
        ),
        (
            "hokensho",
            "hokensho",
            Some("2026-09-30"),
            "2026-04-01",
            None,
        ),
        (
            "myna beyond grace",
            "myna",
            Some("2025-12-10"),
            "2025-11-30",
            None,
        ),
        (
            "myna beyond grace",
            "myna",
            Some("2025-06-10"),
            "2026-04-16",
            None,
        ),
        ("oshirase alone", "oshirase", None, "2026-04-16", None),
    ] {
        let cmd = RulesCommand::Document(DocumentArgs {
            kind: kind.into(),
            expires: expires.map(str::to_string),
            visit: Some(visit.into()),
            with_card: false,
            insurer: insurer.map(str::to_string),
        });
        let text = rules_output(&cmd, d(visit));
        g.block_on(&format!("rules-document/{tag} {visit}"), d(visit), &text);
    }
}

fn rules_output(cmd: &RulesCommand, today: NaiveDate) -> String {
    let mut out = Vec::new();
    let mut input = io::empty();
    let mut input = io::BufReader::new(&mut input);
    match run_rules(
        cmd,
        today,
        &RuleSettings::default(),
        &mut out,
        &mut input,
        false,
    ) {
        Ok(_) => String::from_utf8(out).unwrap(),
        Err(e) => format!("{}{}", String::from_utf8(out).unwrap(), e.message_ja()),
    }
}

fn follow_ups(g: &mut Golden) {
    g.section("事後確認");
    let s = RuleSettings::default();
    for (tag, birth, visit, last) in [
        ("adult", "1985-06-15", "2026-04-16", None),
        ("preschool", "2021-05-01", "2026-04-16", None),
        (
            "over-70-known",
            "1950-01-10",
            "2026-04-16",
            Some(CopayRatio::from_tenths(2).unwrap()),
        ),
        ("over-70-unknown", "1950-01-10", "2026-04-16", None),
    ] {
        let i = copay_when_check_fails(d(birth), d(visit), last).unwrap();
        g.say_on(&format!("copay-offline/{tag}"), d(visit), &i.note_ja);
    }
    let facts = |birth: &str, late: bool, card: Option<u8>, elderly: Option<u8>| ConfirmedFacts {
        birth: d(birth),
        late_elderly: late,
        card_ratio: card.and_then(CopayRatio::from_tenths),
        preschool: false,
        elderly: elderly.map(|r| ElderlyCertificate {
            ratio: CopayRatio::from_tenths(r),
            valid_from: None,
            valid_until: None,
        }),
    };
    for (tag, f) in [
        ("late-elderly", facts("1945-04-01", true, Some(1), None)),
        (
            "late-elderly-no-ratio",
            facts("1945-04-01", true, None, None),
        ),
        ("preschool", facts("2021-05-01", false, None, None)),
        (
            "over-70-certificate",
            facts("1954-01-10", false, None, Some(2)),
        ),
        (
            "over-70-no-certificate",
            facts("1954-01-10", false, None, None),
        ),
        ("adult", facts("1985-06-15", false, None, None)),
    ] {
        let i = copay_when_confirmed(&f, d("2026-04-16")).unwrap();
        g.say_on(
            &format!("copay-confirmed/{tag}"),
            d("2026-04-16"),
            &i.note_ja,
        );
    }
    let numbers =
        InsuranceNumbers::new("06139917", Some("練馬あ12"), "0004471", Some("01")).unwrap();
    let form = Moushitatesho {
        name: Some("山田 花子".into()),
        address: Some("東京都練馬区豊玉北6-12-1".into()),
        phone: Some("03-3993-1111".into()),
        insurance_type: Some(InsuranceType::Employee),
        employer_name: Some("株式会社つなぎ".into()),
        ..Default::default()
    };
    let lengths = s.claim_fields;
    for (tag, facts, facility) in [
        (
            "current",
            ClaimFacts {
                current: Some((numbers.clone(), NumbersSource::Patient)),
                past: None,
                moushitatesho: None,
                software_checks_digit: false,
            },
            FacilityType::Medical,
        ),
        (
            "old",
            ClaimFacts {
                current: None,
                past: Some(numbers.clone()),
                moushitatesho: None,
                software_checks_digit: false,
            },
            FacilityType::Medical,
        ),
        (
            "fushou",
            ClaimFacts {
                current: None,
                past: None,
                moushitatesho: Some(form.clone()),
                software_checks_digit: true,
            },
            FacilityType::Medical,
        ),
        (
            "ryouyouhi",
            ClaimFacts {
                current: None,
                past: None,
                moushitatesho: Some(form.clone()),
                software_checks_digit: false,
            },
            FacilityType::Ahaki,
        ),
    ] {
        let b = claim_basis(&facts, facility, &lengths).unwrap();
        g.say(&format!("claim/{tag}"), &b.summary_ja());
    }
    g.label("claim/missing-fields", &form.missing_fields_ja().join("・"));
    for (tag, treatment, held, facility) in [
        ("medical", Treatment::First, false, FacilityType::Medical),
        ("judo-first", Treatment::First, false, FacilityType::Judo),
        (
            "judo-later-held",
            Treatment::Later,
            true,
            FacilityType::Judo,
        ),
    ] {
        let f = follow_up(&FollowUpFacts {
            facility,
            visit: d("2026-04-16"),
            treatment,
            next_visit: Some(d("2026-04-23")),
            data_already_held: held,
        })
        .unwrap();
        g.say_on(&format!("follow-up/{tag}"), d("2026-04-16"), &f.note_ja);
    }
    for (tag, first, signal) in [
        ("home-first", true, true),
        ("home-later", false, true),
        ("home-no-signal", true, false),
    ] {
        let p = home_visit_plan(first, signal, d("2026-04-16"), &s);
        g.say(&format!("homecare/{tag}"), &p.label_ja());
    }
    for (tag, expiry, visit, via) in [
        ("card valid", "2029-06-15", "2026-04-16", ReadVia::Card),
        ("card in grace", "2026-02-10", "2026-04-16", ReadVia::Card),
        (
            "card beyond grace",
            "2025-12-10",
            "2026-04-16",
            ReadVia::Card,
        ),
        (
            "phone expired",
            "2026-02-10",
            "2026-04-16",
            ReadVia::Smartphone,
        ),
        (
            "phone too early",
            "2029-06-15",
            "2025-09-18",
            ReadVia::Smartphone,
        ),
    ] {
        let a = certificate_usability(d(expiry), d(visit), via, &s);
        g.say_on(&format!("certificate/{tag} {visit}"), d(visit), &a.note_ja);
    }
}

fn questions(g: &mut Golden) {
    g.section("資格確認書・免除の判定（tsunagi rules）");
    for q in [
        KakuninshoQuestion::NewbornEnrolment,
        KakuninshoQuestion::NewbornChoice,
        KakuninshoQuestion::Registration,
        KakuninshoQuestion::Certificate,
        KakuninshoQuestion::ViewingBlocked,
        KakuninshoQuestion::LateElderly,
        KakuninshoQuestion::BirthDate,
        KakuninshoQuestion::DifficultToUse,
        KakuninshoQuestion::LostOrRenewing,
    ] {
        g.label(&format!("kakuninsho-question/{q:?}"), q.text_ja());
    }
    let base = || KakuninshoArgs {
        newborn: Some("いいえ".into()),
        card: Some("registered".into()),
        certificate_expired: Some("no".into()),
        viewing_blocked: Some("いいえ".into()),
        late_elderly: Some("いいえ".into()),
        difficult: Some("いいえ".into()),
        lost: Some("いいえ".into()),
        ..Default::default()
    };
    let cases: Vec<(&str, &str, KakuninshoArgs)> = vec![
        (
            "no-card",
            "2025-12-01",
            KakuninshoArgs {
                card: Some("none".into()),
                ..base()
            },
        ),
        (
            "no-card",
            "2025-12-02",
            KakuninshoArgs {
                card: Some("none".into()),
                ..base()
            },
        ),
        (
            "unregistered",
            "2026-04-16",
            KakuninshoArgs {
                card: Some("unregistered".into()),
                ..base()
            },
        ),
        (
            "cancelled",
            "2026-04-16",
            KakuninshoArgs {
                card: Some("cancelled".into()),
                ..base()
            },
        ),
        (
            "newborn-kakuninsho",
            "2026-04-16",
            KakuninshoArgs {
                newborn: Some("はい".into()),
                guardian_wants_kakuninsho: Some("はい".into()),
                ..base()
            },
        ),
        (
            "newborn-card-later",
            "2026-04-16",
            KakuninshoArgs {
                newborn: Some("はい".into()),
                guardian_wants_kakuninsho: Some("いいえ".into()),
                ..base()
            },
        ),
        (
            "certificate-lapsed",
            "2026-04-16",
            KakuninshoArgs {
                certificate_expired: Some("2025-10-15".into()),
                ..base()
            },
        ),
        (
            "viewing-blocked",
            "2026-04-16",
            KakuninshoArgs {
                viewing_blocked: Some("はい".into()),
                ..base()
            },
        ),
        (
            "late-elderly-provisional",
            "2026-07-31",
            KakuninshoArgs {
                late_elderly: Some("はい".into()),
                ..base()
            },
        ),
        // The legal age rises the day before the birthday: born 1941-08-02 is 85 on 08-01.
        (
            "late-elderly-85",
            "2026-08-01",
            KakuninshoArgs {
                late_elderly: Some("はい".into()),
                birth: Some("1941-08-02".into()),
                ..base()
            },
        ),
        (
            "late-elderly-84",
            "2026-08-01",
            KakuninshoArgs {
                late_elderly: Some("はい".into()),
                birth: Some("1941-08-03".into()),
                ..base()
            },
        ),
        (
            "difficult",
            "2026-04-16",
            KakuninshoArgs {
                difficult: Some("はい".into()),
                ..base()
            },
        ),
        (
            "lost",
            "2026-04-16",
            KakuninshoArgs {
                lost: Some("はい".into()),
                ..base()
            },
        ),
        ("not-issued", "2026-04-16", base()),
        (
            "missing-answer",
            "2026-04-16",
            KakuninshoArgs {
                card: None,
                ..base()
            },
        ),
        (
            "bad-answer",
            "2026-04-16",
            KakuninshoArgs {
                viewing_blocked: Some("たぶん".into()),
                ..base()
            },
        ),
    ];
    for (tag, date, mut args) in cases {
        args.date = Some(date.into());
        let text = rules_output(&RulesCommand::Kakuninsho(args), d(date));
        g.block_on(&format!("rules-kakuninsho/{tag} {date}"), d(date), &text);
    }
    let ex = |facility: &str, practitioners: &[&str], closure: &str, end: &str| ExemptionArgs {
        facility: Some(facility.into()),
        practitioners: practitioners.iter().map(|p| p.to_string()).collect(),
        closure: Some(closure.into()),
        end_juryo_inin: Some(end.into()),
    };
    for (tag, args) in [
        (
            "all-over-70",
            ex("judo", &["1950-01-01", "1952-03-31"], "none", "none"),
        ),
        (
            "ahaki-visually-impaired",
            ex("ahaki", &["1980-01-01:視覚"], "none", "none"),
        ),
        (
            "closure-dated",
            ex("judo", &["1980-01-01"], "2025-11-30", "none"),
        ),
        (
            "closure-undecided",
            ex("judo", &["1980-01-01"], "未定", "none"),
        ),
        (
            "end-too-late",
            ex("ahaki", &["1980-01-01"], "none", "2026-01-31"),
        ),
        ("medical", ex("medical", &[], "none", "none")),
        ("home-nursing", ex("home-nursing", &[], "none", "none")),
    ] {
        let text = rules_output(&RulesCommand::Exemption(args), d("2026-04-16"));
        g.block_on(&format!("rules-exemption/{tag}"), d("2026-04-16"), &text);
    }
}

fn input_errors(g: &mut Golden) {
    g.section("入力・設定の誤り");
    g.say(
        "date/format",
        &DateError::Format("2026/4/16".into()).message_ja(),
    );
    g.say(
        "date/impossible",
        &DateError::Impossible {
            year: 2026,
            month: 2,
            day: 30,
        }
        .message_ja(),
    );
    g.say(
        "date/month-format",
        &DateError::MonthFormat("2026年4月".into()).message_ja(),
    );
    for (tag, e) in [
        (
            "insurer-length",
            DomainError::InsurerNumberLength { len: 7 },
        ),
        ("insurer-digits", DomainError::InsurerNumberNotDigits),
        (
            "unknown-facility",
            DomainError::UnknownFacility("clinic".into()),
        ),
        ("unknown-method", DomainError::UnknownMethod("face".into())),
    ] {
        g.say(&format!("domain/{tag}"), &e.message_ja());
    }
    for (tag, e) in [
        (
            "insurer",
            NumbersError::from(DomainError::InsurerNumberNotDigits),
        ),
        ("empty-bango", NumbersError::EmptyBango),
        (
            "bad-characters",
            NumbersError::BadCharacters { field: "記号" },
        ),
        ("late-elderly-kigo", NumbersError::LateElderlyWithKigo),
        ("disaster-fill", NumbersError::DisasterFill),
    ] {
        g.say(&format!("numbers/{tag}"), &e.message_ja());
    }
    g.say(
        "claim/no-moushitatesho",
        &ClaimError::NoMoushitatesho.message_ja(),
    );
    g.say(
        "copay/birth-after-visit",
        &CopayError::BirthAfterVisit {
            birth: d("2026-05-01"),
            visit: d("2026-04-16"),
        }
        .message_ja(),
    );
    g.say(
        "deadline/next-before-visit",
        &DeadlineError::NextBeforeVisit {
            visit: d("2026-04-16"),
            next: d("2026-04-09"),
        }
        .message_ja(),
    );
    g.say(
        "kakuninsho/birth-after-date",
        &KakuninshoError::BirthAfterDate {
            birth: d("2026-05-01"),
            on: d("2026-04-16"),
        }
        .message_ja(),
    );
    g.say(
        "exemption/no-practitioners",
        &ExemptionError::NoPractitioners.message_ja(),
    );
    g.say(
        "exemption/born-after-reference",
        &ExemptionError::BornAfterReference(d("2024-06-01")).message_ja(),
    );
    let cli: Vec<(&str, CliError)> = vec![
        (
            "bad-answer",
            CliError::BadAnswer {
                what: "後期高齢者医療の被保険者ですか？".into(),
                answer: "たぶん".into(),
                expected: "はい/いいえ（yes/no）".into(),
            },
        ),
        (
            "missing-answer",
            CliError::MissingAnswer {
                question: KakuninshoQuestion::LateElderly.text_ja().into(),
                flag: "late-elderly".into(),
            },
        ),
        ("no-counts", CliError::NoCounts),
        (
            "counts-file",
            CliError::CountsFile {
                path: PathBuf::from("/home/clinic/counts.csv"),
                source: io::Error::from_raw_os_error(2),
            },
        ),
        ("io", CliError::Io(io::Error::from_raw_os_error(32))),
    ];
    for (tag, e) in cli {
        g.say(&format!("cli/{tag}"), &e.message_ja());
    }
    let report: Vec<(&str, ReportError)> = vec![
        (
            "unknown-prefecture",
            ReportError::UnknownPrefecture("東京府".into()),
        ),
        (
            "counts-line",
            ReportError::CountsLine {
                line: 3,
                what: "マイナ保険証件数「12a」が数字ではありません".into(),
            },
        ),
        (
            "no-counts-for-month",
            ReportError::NoCountsForMonth(YearMonth::new(2026, 3).unwrap()),
        ),
        (
            "font",
            ReportError::Font {
                path: "/usr/share/fonts/opentype/ipafont-gothic/ipagp.ttf".into(),
            },
        ),
        (
            "chart",
            ReportError::Chart("BitMapBackend error: io error".into()),
        ),
    ];
    for (tag, e) in report {
        g.say(&format!("report/{tag}"), &e.message_ja());
    }
    // The report's incentive lines (R37) as staff read them.
    let history: Vec<(YearMonth, UsageCounts)> = (1..=12)
        .map(|m| {
            (
                YearMonth::new(2025, m).unwrap(),
                UsageCounts {
                    card: 40 * u64::from(m),
                    total: 1000,
                },
            )
        })
        .collect();
    for (tag, claim, facility) in [
        (
            "medical 2026-02",
            YearMonth::new(2026, 2).unwrap(),
            FacilityType::Medical,
        ),
        (
            "medical 2024-12 no data",
            YearMonth::new(2024, 12).unwrap(),
            FacilityType::Medical,
        ),
        ("judo", YearMonth::new(2026, 2).unwrap(), FacilityType::Judo),
    ] {
        let r = incentive_tier(claim, facility, &history);
        g.say(&format!("incentive/{tag}"), &r.note_ja);
    }
    let config: Vec<(&str, ConfigError)> = vec![
        (
            "read",
            ConfigError::Read {
                path: "/etc/tsunagi/tsunagid.toml".into(),
                source: io::Error::from_raw_os_error(13),
            },
        ),
        (
            "invalid-toml",
            parse_error("institution_code = \"0123456789\"\nfacility = \n"),
        ),
        (
            "unknown-key",
            parse_error("institution_code = \"0123456789\"\n[retention]\nextra_month = 2\n"),
        ),
        ("wrong-type", parse_error("institution_code = 123\n")),
        ("missing-code", parse_error("facility = \"medical\"\n")),
        (
            "institution-code",
            ConfigError::Invalid {
                path: "/etc/tsunagi/tsunagid.toml".into(),
                detail: "institution_code は10桁の数字です（12345）".into(),
            },
        ),
    ];
    for (tag, e) in config {
        g.say(&format!("config/{tag}"), &e.message_ja());
    }
}

/// The error of parsing a bad configuration file, as the daemon would report it.
fn parse_error(text: &str) -> ConfigError {
    match tsunagi::service::config::ServiceConfig::parse(text, "/etc/tsunagi/tsunagid.toml") {
        Ok(_) => panic!("a bad configuration parsed: {text}"),
        Err(e) => e,
    }
}

fn ledger_errors() -> Vec<(&'static str, LedgerError)> {
    use tsunagi_sync::store::OpenError;
    use tsunagi_sync::{Month, StoreError};
    let path = || "/var/lib/tsunagi/ledger".to_string();
    vec![
        (
            "open-in-use",
            LedgerError::Open(OpenError::InUse { path: path() }),
        ),
        (
            "open-permission",
            LedgerError::Open(OpenError::Permission {
                path: path(),
                source: io::Error::from_raw_os_error(13),
            }),
        ),
        (
            "open-disk-full",
            LedgerError::Open(OpenError::DiskFull {
                path: path(),
                source: io::Error::from_raw_os_error(28),
            }),
        ),
        (
            "open-io",
            LedgerError::Open(OpenError::Io {
                path: path(),
                source: io::Error::from_raw_os_error(5),
            }),
        ),
        (
            "open-format",
            LedgerError::Open(OpenError::Format {
                path: path(),
                found: 1,
                supported: 2,
            }),
        ),
        (
            "store-write",
            LedgerError::Store(StoreError::Write {
                path: path(),
                source: io::Error::from_raw_os_error(5),
            }),
        ),
        (
            "store-disk-full",
            LedgerError::Store(StoreError::Write {
                path: path(),
                source: io::Error::from_raw_os_error(28),
            }),
        ),
        (
            "store-read",
            LedgerError::Store(StoreError::Read {
                path: path(),
                source: io::Error::from_raw_os_error(5),
            }),
        ),
        (
            "store-purged",
            LedgerError::Store(StoreError::Purged(Month::new(2025, 11).unwrap())),
        ),
        (
            "store-bad-id",
            LedgerError::Store(StoreError::BadCheckId("受付 1".into())),
        ),
        ("encode", LedgerError::Encode("key must be a string".into())),
        (
            "not-found",
            LedgerError::NotFound("01JRZ3Q4C5XK8V0T9N2M7B6A1D".into()),
        ),
    ]
}

fn records_and_api(g: &mut Golden) {
    g.section("記録データ");
    for (tag, e) in ledger_errors() {
        g.say(&format!("ledger/{tag}"), &e.message_ja());
    }
    g.say(
        "ledger/visit-date",
        &tsunagi::ledger::visit_date_message_ja(),
    );
    g.say(
        "startup/in-use",
        &StartupError::Ledger(LedgerError::Open(tsunagi_sync::store::OpenError::InUse {
            path: "/var/lib/tsunagi/ledger".into(),
        }))
        .message_ja(),
    );
    let addr: std::net::SocketAddr = "127.0.0.1:8740".parse().unwrap();
    let api: Vec<(&str, ApiStartError)> = vec![
        (
            "token",
            ApiStartError::Token {
                path: "/var/lib/tsunagi/api.token".into(),
                source: io::Error::from_raw_os_error(13),
            },
        ),
        (
            "bind-in-use",
            ApiStartError::Bind {
                addr,
                source: io::Error::from(io::ErrorKind::AddrInUse),
            },
        ),
        (
            "bind-denied",
            ApiStartError::Bind {
                addr,
                source: io::Error::from_raw_os_error(13),
            },
        ),
        (
            "not-loopback",
            ApiStartError::NotLoopback("192.168.1.20:8740".parse().unwrap()),
        ),
    ];
    for (tag, e) in api {
        g.say(&format!("api-start/{tag}"), &e.message_ja());
    }
    g.say(
        "startup/api-bind-denied",
        &StartupError::Api(ApiStartError::Bind {
            addr,
            source: io::Error::from_raw_os_error(13),
        })
        .message_ja(),
    );

    g.section("API");
    g.say("problem/unauthorized", &Problem::unauthorized().detail);
    let ops: Vec<(&str, OpError)> = vec![
        (
            "invalid-insurer",
            OpError::Invalid {
                field: "insurer",
                message_ja: DomainError::InsurerNumberNotDigits.message_ja(),
            },
        ),
        (
            "not-found",
            OpError::NotFound("01JRZ3Q4C5XK8V0T9N2M7B6A1D".into()),
        ),
        (
            "already-decided",
            OpError::AlreadyDecided("01JRZ3Q4C5XK8V0T9N2M7B6A1D".into()),
        ),
        ("final", OpError::Final("01JRZ3Q4C5XK8V0T9N2M7B6A1D".into())),
        (
            "not-decided",
            OpError::NotDecided("01JRZ3Q4C5XK8V0T9N2M7B6A1D".into()),
        ),
        (
            "ledger",
            OpError::Ledger(LedgerError::Store(tsunagi_sync::StoreError::Write {
                path: "/var/lib/tsunagi/ledger".into(),
                source: io::Error::from_raw_os_error(5),
            })),
        ),
    ];
    for (tag, e) in ops {
        g.say(&format!("problem/{tag}"), &Problem::from(e).detail);
    }
}

fn render() -> (String, Vec<String>) {
    let mut g = Golden::new();
    card(&mut g);
    oqs(&mut g);
    offline(&mut g);
    documents(&mut g);
    follow_ups(&mut g);
    questions(&mut g);
    input_errors(&mut g);
    records_and_api(&mut g);
    folders(&mut g);
    g.finish()
}

/// What the receipt computer's operator reads in a result file, and staff in the status.
fn folders(g: &mut Golden) {
    use tsunagi::folders::xml::RequestError;
    use tsunagi::folders::FolderStatus;
    g.section("フォルダ連携（レセコン）");
    let errors = [
        ("request-too-large", RequestError::TooLarge(2_097_152)),
        (
            "request-encoding",
            RequestError::Encoding("宣言された文字コード「EUC-JP」".into()),
        ),
        ("request-cut", RequestError::Incomplete),
        (
            "request-not-xml",
            RequestError::NotXml("XML の書式が正しくありません（120バイト目付近）".into()),
        ),
        (
            "request-field",
            RequestError::Field {
                field: "Birthdate",
                problem: "必須の項目がありません。".into(),
            },
        ),
        ("request-other-institution", RequestError::OtherInstitution),
    ];
    for (tag, e) in errors {
        g.say(tag, &e.message_ja());
    }
    let status = FolderStatus {
        root: "/srv/oqs".into(),
        problem: Some(
            "フォルダ /srv/oqs が見つかりません。共有フォルダの接続と設定（[folders] root）を確認してください。"
                .into(),
        ),
        waiting: 2,
        held: 1,
        uncollected: 3,
        answered: 40,
        refused: 1,
        faces: 25,
    };
    g.block_on(
        "folder-status",
        today_for_golden(),
        &status.lines_ja().join("\n"),
    );
}

fn today_for_golden() -> NaiveDate {
    d("2026-04-01")
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/staff-text.txt")
}

/// A line diff that reads as blocks: each differing line with its number.
fn diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    let mut shown = 0;
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x != y {
            if shown == 40 {
                out.push_str("… (more differences)\n");
                break;
            }
            shown += 1;
            out.push_str(&format!("line {}:\n", i + 1));
            if let Some(x) = x {
                out.push_str(&format!("  - {x}\n"));
            }
            if let Some(y) = y {
                out.push_str(&format!("  + {y}\n"));
            }
        }
    }
    out
}

#[test]
fn every_staff_message_reads_right_and_matches_the_golden_file() {
    let (text, problems) = render();
    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    assert!(
        problems.is_empty(),
        "staff text problems:\n{}",
        problems.join("\n")
    );
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "staff text differs from {} (- committed, + generated); review the change and run \
         UPDATE_GOLDEN=1 cargo test -p tsunagi --test staff_text\n{}",
        path.display(),
        diff(&committed, &text)
    );
}

#[test]
fn the_checks_catch_what_they_are_for() {
    // It flags a rule id, a developer word, a cut-off sentence and the old card out of date.
    let mut g = Golden::new();
    g.say("rule-id", "確認の順（R12）で受け付けてください。");
    g.say("dev-word", "資格を確認できません: None");
    g.say("english", "記録を作れませんでした: key must be a string");
    g.say("trailing", "通常の負担割合で受け付け、");
    g.say_on("old-card", d("2026-04-01"), "保険証で確認してください。");
    g.say_on(
        "old-card-valid",
        d("2025-12-01"),
        "保険証で確認してください。",
    );
    g.say_on(
        "old-card-in-measure",
        d("2026-03-31"),
        "保険証で確認してください。期限切れの保険証でも番号で照会できます。",
    );
    g.say_on(
        "expired-card-in-measure",
        d("2026-03-31"),
        "期限切れの保険証は番号で照会できます。",
    );
    g.say("myna", "マイナ保険証で確認してください。");
    g.say("registration", "保険証利用登録を確認してください。");
    let problems = g.problems;
    for tag in [
        "rule-id",
        "dev-word",
        "english",
        "trailing",
        "old-card:",
        "old-card-in-measure",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(tag)),
            "{tag} not flagged: {problems:?}"
        );
    }
    for tag in [
        "old-card-valid",
        "expired-card-in-measure",
        "myna",
        "registration",
    ] {
        assert!(
            !problems.iter().any(|p| p.starts_with(tag)),
            "{tag} flagged: {problems:?}"
        );
    }
    assert!(!has_rule_id("SIM-W2001"));
    assert!(has_rule_id("（R13）"));
}

#[test]
fn rule_dates_are_the_documented_ones() {
    // It pins the dates the date checks above rely on (rules.md R11).
    let s = RuleSettings::default();
    assert_eq!(date_ja(s.old_hokensho_last_day), "2025年12月1日");
    assert_eq!(date_ja(s.expired_acceptance_until), "2026年3月31日");
}
