//! Offline capture (オフライン受付): when the qualification system does not answer, the check
//! is written to the ledger — durably, before the operator is told — with what the card
//! proved, so it can be confirmed afterwards as of the visit date; and the operator is told
//! what to do now (R13 co-payment, R14 申立書).

use base64::Engine;
use chrono::{DateTime, FixedOffset, NaiveDate};

use super::CheckOutcome;
use crate::domain::FacilityType;
use crate::ledger::event::{Captured, CardRecord, KnownInsurance, KnownSource};
use crate::rules::calendar::date_ja;
use crate::rules::copay::{copay_when_check_fails, CopayInstruction, CopayRatio};

/// What reception knows about the visit besides the card.
#[derive(Debug, Clone)]
pub struct VisitContext {
    /// The visit date.
    pub visit_date: NaiveDate,
    /// The facility type.
    pub facility: FacilityType,
    /// First visit (初診・初検).
    pub first_visit: bool,
    /// The next booked visit.
    pub next_visit: Option<NaiveDate>,
    /// Earlier confirmed data of the patient, if the clinic holds any.
    pub last_known: Option<KnownInsurance>,
}

/// The capture event of a card check; `reason` is `None` for a check answered at reception.
pub fn captured(
    outcome: &CheckOutcome,
    visit: &VisitContext,
    reason: Option<&str>,
    now: DateTime<FixedOffset>,
) -> Captured {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    Captured {
        visit_date: visit.visit_date,
        facility: visit.facility,
        first_visit: visit.first_visit,
        next_visit: visit.next_visit,
        card: Some(CardRecord {
            method: outcome.evidence.method,
            certificate: b64(&outcome.evidence.certificate_der),
            challenge: outcome.challenge.as_ref().map(|c| b64(c.as_bytes())),
            signature: outcome.evidence.signature.as_deref().map(b64),
            serial: outcome.certificate.serial_hex.clone(),
        }),
        document: None,
        reason: reason.map(str::to_string),
        last_known: visit.last_known.clone(),
        captured_at: now,
    }
}

/// The co-payment to collect for a captured check (R13): from age and what the clinic last
/// confirmed; `None` when nothing is known of the patient (or a 70+ patient's ratio is
/// unknown).
pub fn copay_of(c: &Captured) -> Option<CopayInstruction> {
    let k = c.last_known.as_ref()?;
    let last_ratio = k.copay_tenths.and_then(CopayRatio::from_tenths);
    copay_when_check_fails(k.birth_date, c.visit_date, last_ratio).ok()
}

/// What the operator must do now, in Japanese, one instruction per line.
pub fn instructions_ja(c: &Captured) -> Vec<String> {
    let mut lines = vec![
        "資格確認システムにつながらないため、この確認を記録しました。回線が戻りしだい自動で事後確認します。"
            .to_string(),
    ];
    match copay_of(c) {
        Some(i) => lines.push(format!("窓口負担: {}", i.note_ja)),
        None => lines.push(
            "窓口負担: 通常の負担割合（前回確認した情報がなければ3割）で受け付けてください。10割にはしません。"
                .into(),
        ),
    }
    match &c.last_known {
        Some(k) => lines.push(earlier_ja(k)),
        None if !c.first_visit => lines.push(
            "再診です。レセコンにある保険情報が変わっていないか、本人に口頭で確認してください。"
                .into(),
        ),
        None => {}
    }
    // R17: after a 初検 the numbers must be confirmed later; at later treatments the oral
    // confirmation above is enough.
    if c.facility.is_ryouyouhi() && c.first_visit {
        lines.push(
            "柔整・あはき（初検）: 資格は後日（次回施術時など、当月中）に必ず確認してください。確認できるまで申請はできません。"
                .into(),
        );
    }
    if c.first_visit && c.last_known.is_none() {
        lines.push(
            "初めての来院です。被保険者資格申立書（氏名・生年月日・住所・電話番号・保険者名など）を記入してもらってください（tsunagi declare で記録できます）。"
                .into(),
        );
    }
    lines
}

/// The line telling staff what the clinic already knows of the patient: they confirm it
/// orally instead of a 申立書 (R14).
fn earlier_ja(k: &KnownInsurance) -> String {
    let n = &k.numbers;
    let mut numbers = format!("保険者番号 {}", n.insurer.as_wire().trim());
    if let Some(s) = &n.symbol {
        numbers.push_str(&format!(" 記号 {s}"));
    }
    numbers.push_str(&format!(" 番号 {}", n.number));
    if let Some(b) = &n.branch {
        numbers.push_str(&format!(" 枝番 {b}"));
    }
    let whence = match (&k.source, k.confirmed_on) {
        (Some(KnownSource::History { .. }), Some(d)) => {
            format!("{}に確認した保険", date_ja(d))
        }
        (Some(KnownSource::History { .. }), None) => "前回確認した保険".to_string(),
        (Some(KnownSource::Request) | None, _) => "レセコンから受け取った保険".to_string(),
    };
    format!(
        "{whence}: {numbers}。変わっていないか本人に口頭で確認してください（申立書は不要です）。"
    )
}
