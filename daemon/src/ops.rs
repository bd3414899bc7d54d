//! Operations on recorded checks (確認への操作): read one, list, record a 申立書, a document,
//! numbers the patient reports later, resolve by hand. The local API and the CLI's direct
//! mode call these same functions, with the same request types, so a command behaves and
//! prints the same either way.
//!
//! Requests are plain data (the API's JSON bodies); each is checked here, before anything is
//! written, and a refusal names the field it is about.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::FacilityType;
use crate::ledger::event::{
    CheckEvent, KnownInsurance, KnownSource, NumbersRecord, Reported, Resolved,
};
use crate::ledger::{Ledger, LedgerError};
use crate::rules::claim::{InsuranceNumbers, InsuranceType, Moushitatesho, Sex};
use crate::rules::copay::CopayRatio;
use crate::rules::settings::RuleSettings;
use crate::view::{CheckView, ListState};
use tsunagi_sync::Month;

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A field of the request is not acceptable.
    #[error("invalid {field}: {message_ja}")]
    Invalid {
        /// The field (the request's JSON name).
        field: &'static str,
        /// What is wrong, for staff.
        message_ja: String,
    },
    /// No check has this id.
    #[error("no check {0}")]
    NotFound(String),
    /// The check is already decided (by staff or the reconciler); it is left as it is.
    #[error("check {0} is already decided")]
    AlreadyDecided(String),
    /// The claim was made or its deadline passed: the claim basis cannot change.
    #[error("check {0} is final")]
    Final(String),
    /// Nothing is decided yet, so nothing can be claimed.
    #[error("check {0} has no claim basis yet")]
    NotDecided(String),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(LedgerError),
}

impl From<LedgerError> for OpError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NotFound(id) => OpError::NotFound(id),
            e => OpError::Ledger(e),
        }
    }
}

impl OpError {
    /// The message for staff.
    pub fn message_ja(&self) -> String {
        match self {
            OpError::Invalid { message_ja, .. } => message_ja.clone(),
            OpError::NotFound(id) => format!("確認 {id} は見つかりません。"),
            OpError::AlreadyDecided(id) => {
                format!("確認 {id} はすでに対応済みです（tsunagi show {id} で内容を確認できます）。")
            }
            OpError::Final(id) => format!(
                "確認 {id} は請求済み（または請求期限を過ぎています）のため、請求の根拠は変えられません。"
            ),
            OpError::NotDecided(id) => format!(
                "確認 {id} はまだ請求の根拠が決まっていないため、請求済みにできません。"
            ),
            OpError::Ledger(e) => e.message_ja(),
        }
    }

    fn invalid(field: &'static str, message_ja: impl Into<String>) -> Self {
        OpError::Invalid {
            field,
            message_ja: message_ja.into(),
        }
    }
}

/// Runs blocking ledger reads off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OpError> + Send + 'static,
) -> Result<T, OpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OpError::Ledger(LedgerError::Encode(format!("task failed: {e}"))))?
}

/// The folded check `id`, read off the async threads.
async fn load(ledger: &Ledger, id: &str) -> Result<crate::ledger::fold::CheckState, OpError> {
    let ledger = ledger.clone();
    let id = id.to_string();
    blocking(move || Ok(ledger.check(&id)?)).await
}

/// One check.
pub async fn view(ledger: &Ledger, id: &str, today: NaiveDate) -> Result<CheckView, OpError> {
    Ok(CheckView::of(&load(ledger, id).await?, today))
}

/// One check and the fold it was viewed from, read once, for callers that hand the fold on
/// (a facility plugin sees the fold, not the view).
pub async fn view_and_fold(
    ledger: &Ledger,
    id: &str,
    today: NaiveDate,
) -> Result<(CheckView, crate::ledger::fold::CheckState), OpError> {
    let state = load(ledger, id).await?;
    Ok((CheckView::of(&state, today), state))
}

/// The checks of one list, by deadline then id. Pending and overdue lists come from the
/// index (the open checks only); resolved and all read the month(s) asked for.
pub async fn list(
    ledger: &Ledger,
    state: ListState,
    month: Option<Month>,
    today: NaiveDate,
) -> Result<Vec<CheckView>, OpError> {
    let ledger = ledger.clone();
    blocking(move || {
        let months = match month {
            Some(m) => vec![m],
            None => ledger.store().months().map_err(LedgerError::from)?,
        };
        let mut out = Vec::new();
        for m in months {
            let checks = match state {
                ListState::Pending | ListState::Overdue => ledger.open_checks_of(m)?,
                ListState::Resolved | ListState::All => ledger.checks(m)?,
            };
            out.extend(
                checks
                    .iter()
                    .map(|c| CheckView::of(c, today))
                    .filter(|v| state.admits(v)),
            );
        }
        out.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
        Ok(out)
    })
    .await
}

/// The checks of `month` this device captured itself (not those synced from its peers), in
/// order of creation: what one counter's history shows.
pub async fn list_captured_by(
    ledger: &Ledger,
    month: Month,
    device: tsunagi_sync::DeviceId,
    today: NaiveDate,
) -> Result<Vec<CheckView>, OpError> {
    let ledger = ledger.clone();
    blocking(move || {
        Ok(ledger
            .checks(month)?
            .iter()
            .filter(|c| c.captured_by.as_ref() == Some(&device))
            .map(|c| CheckView::of(c, today))
            .collect())
    })
    .await
}

/// A 被保険者資格申立書 (R14) as reception fills it; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclarationRequest {
    /// 氏名.
    pub name: Option<String>,
    /// 生年月日.
    pub birth_date: Option<NaiveDate>,
    /// 性別: `male` or `female`.
    pub sex: Option<String>,
    /// 住所.
    pub address: Option<String>,
    /// 電話番号.
    pub phone: Option<String>,
    /// 保険の種類: `employee`, `kokuho` or `late-elderly`.
    pub insurance_type: Option<String>,
    /// 保険者名.
    pub insurer_name: Option<String>,
    /// 事業所名.
    pub employer: Option<String>,
    /// 負担割合 in tenths: 1, 2 or 3.
    pub copay: Option<u8>,
}

/// What recording a 申立書 did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeclarationReport {
    /// The check, after the 申立書.
    pub check: CheckView,
    /// Items left blank (Japanese labels).
    pub missing_ja: Vec<String>,
}

/// Longest free-text field accepted (a name, an address).
const TEXT_MAX: usize = 200;

fn text(field: &'static str, v: &Option<String>) -> Result<Option<String>, OpError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() > TEXT_MAX => Err(OpError::invalid(
            field,
            format!("{field} が長すぎます（{TEXT_MAX}文字まで）。"),
        )),
        Some(t) => Ok(Some(t.to_string())),
    }
}

impl DeclarationRequest {
    fn to_moushitatesho(&self, visit: NaiveDate) -> Result<Moushitatesho, OpError> {
        let sex = match self.sex.as_deref() {
            None => None,
            Some("male" | "男" | "m") => Some(Sex::Male),
            Some("female" | "女" | "f") => Some(Sex::Female),
            Some(other) => {
                return Err(OpError::invalid(
                    "sex",
                    format!(
                    "性別「{other}」が分かりません。male（男）か female（女）で指定してください。"
                ),
                ))
            }
        };
        let insurance_type = match self.insurance_type.as_deref() {
            None => None,
            Some("employee" | "社保") => Some(InsuranceType::Employee),
            Some("kokuho" | "国保") => Some(InsuranceType::Kokuho),
            Some("late-elderly" | "後期") => Some(InsuranceType::LateElderly),
            Some(other) => {
                return Err(OpError::invalid(
                    "insurance_type",
                    format!("保険の種類「{other}」が分かりません。employee・kokuho・late-elderly のいずれかです。"),
                ))
            }
        };
        let copay = match self.copay {
            None => None,
            Some(t) => Some(CopayRatio::from_tenths(t).ok_or_else(|| {
                OpError::invalid(
                    "copay",
                    format!("負担割合 {t} は指定できません（1・2・3割のいずれか）。"),
                )
            })?),
        };
        if let Some(b) = self.birth_date.filter(|b| *b > visit) {
            return Err(OpError::invalid(
                "birth_date",
                format!("生年月日（{b}）が受診日（{visit}）より後です。"),
            ));
        }
        Ok(Moushitatesho {
            name: text("name", &self.name)?,
            birth_date: self.birth_date,
            sex,
            address: text("address", &self.address)?,
            phone: text("phone", &self.phone)?,
            insurance_type,
            insurer_name: text("insurer_name", &self.insurer_name)?,
            employer_name: text("employer", &self.employer)?,
            copay,
        })
    }
}

/// Records a 申立書 for check `id`.
pub async fn declare(
    ledger: &Ledger,
    id: &str,
    request: &DeclarationRequest,
    today: NaiveDate,
) -> Result<DeclarationReport, OpError> {
    let check = load(ledger, id).await?;
    let m = request.to_moushitatesho(check.visit_date())?;
    let missing_ja = m
        .missing_fields_ja()
        .into_iter()
        .map(String::from)
        .collect();
    ledger
        .record(
            &check.id,
            check.visit_date(),
            &CheckEvent::Declared { moushitatesho: m },
        )
        .await?;
    Ok(DeclarationReport {
        check: view(ledger, &check.id, today).await?,
        missing_ja,
    })
}

/// Insurance numbers as the patient or a document gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NumbersRequest {
    /// 保険者番号 (6 or 8 digits).
    pub insurer: String,
    /// 記号.
    pub symbol: Option<String>,
    /// 番号.
    pub number: String,
    /// 枝番.
    pub branch: Option<String>,
    /// 生年月日 (needed to ask the qualification system by numbers).
    pub birth_date: Option<NaiveDate>,
}

/// What the receipt computer (or another client) already knows of the patient, sent with a
/// request (前回情報): used when the check is captured offline, for the co-payment (R13) and
/// instead of a 申立書 (R14).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KnownInsuranceRequest {
    /// 保険者番号 (6 or 8 digits).
    pub insurer: String,
    /// 記号.
    pub symbol: Option<String>,
    /// 番号.
    pub number: String,
    /// 枝番.
    pub branch: Option<String>,
    /// 生年月日.
    pub birth_date: NaiveDate,
    /// 負担割合 in tenths (1, 2 or 3), when known.
    #[schema(minimum = 1, maximum = 3)]
    pub copay_tenths: Option<u8>,
    /// The visit date it was last confirmed for, when known.
    pub confirmed_on: Option<NaiveDate>,
}

impl std::fmt::Debug for KnownInsuranceRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownInsuranceRequest")
            .field("insurer", &self.insurer)
            .finish_non_exhaustive()
    }
}

impl KnownInsuranceRequest {
    /// Checks it against a visit on `visit`; errors name the field under `known_insurance`.
    pub fn parse(&self, visit: NaiveDate) -> Result<KnownInsurance, OpError> {
        let numbers = numbers_record(
            &self.insurer,
            self.symbol.as_deref(),
            &self.number,
            self.branch.as_deref(),
        )
        .map_err(|e| OpError::invalid("known_insurance.insurer", e.message_ja()))?;
        if self.birth_date > visit {
            return Err(OpError::invalid(
                "known_insurance.birth_date",
                "前回情報の生年月日が受診日より後になっています。",
            ));
        }
        if self
            .copay_tenths
            .is_some_and(|t| crate::rules::copay::CopayRatio::from_tenths(t).is_none())
        {
            return Err(OpError::invalid(
                "known_insurance.copay_tenths",
                "前回情報の負担割合は 1・2・3（割）のいずれかで指定してください。",
            ));
        }
        let mut known = KnownInsurance::new(numbers, self.birth_date, self.copay_tenths);
        known.confirmed_on = self.confirmed_on;
        known.source = Some(KnownSource::Request);
        Ok(known)
    }
}

fn numbers_record(
    insurer: &str,
    symbol: Option<&str>,
    number: &str,
    branch: Option<&str>,
) -> Result<NumbersRecord, OpError> {
    let checked = InsuranceNumbers::new(insurer, symbol, number, branch)
        .map_err(|e| OpError::invalid("insurer", e.message_ja()))?;
    Ok(NumbersRecord {
        insurer: checked.insurer().clone(),
        symbol: checked.kigo().map(str::to_string),
        number: checked.bango().to_string(),
        branch: checked.edaban().map(str::to_string),
    })
}

/// Records numbers the patient reported after the visit; the reconciler asks by them.
pub async fn report_numbers(
    ledger: &Ledger,
    id: &str,
    request: &NumbersRequest,
    now: DateTime<FixedOffset>,
) -> Result<CheckView, OpError> {
    // Read, decide and write as one step against the reconciler and other requests.
    let _deciding = ledger.deciding(id).await;
    let check = load(ledger, id).await?;
    let numbers = numbers_record(
        &request.insurer,
        request.symbol.as_deref(),
        &request.number,
        request.branch.as_deref(),
    )?;
    if let Some(b) = request.birth_date.filter(|b| *b > check.visit_date()) {
        return Err(OpError::invalid(
            "birth_date",
            format!(
                "生年月日（{b}）が受診日（{}）より後です。",
                check.visit_date()
            ),
        ));
    }
    if check.resolution.is_some() && check.is_final(now.date_naive()) {
        return Err(OpError::Final(check.id));
    }
    ledger
        .record(
            &check.id,
            check.visit_date(),
            &CheckEvent::NumbersReported(Reported {
                numbers,
                birth_date: request.birth_date,
                at: now,
            }),
        )
        .await?;
    view(ledger, &check.id, now.date_naive()).await
}

/// Resolving a check by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// Why staff decide it by hand (kept with the check).
    pub reason: String,
}

/// Resolves an open check by hand with a reason. A check already decided is left as it is
/// and refused with a message saying so.
pub async fn resolve_by_hand(
    ledger: &Ledger,
    id: &str,
    request: &ResolveRequest,
    now: DateTime<FixedOffset>,
) -> Result<CheckView, OpError> {
    let reason = match text("reason", &Some(request.reason.clone()))? {
        Some(r) => r,
        None => {
            return Err(OpError::invalid(
                "reason",
                "手動で解決する理由を入力してください。",
            ))
        }
    };
    // Read, decide and write as one step against the reconciler and other requests.
    let _deciding = ledger.deciding(id).await;
    let check = load(ledger, id).await?;
    if !check.is_open() {
        return Err(OpError::AlreadyDecided(check.id));
    }
    let r = Resolved {
        basis: "manual".into(),
        insurer_number: String::new(),
        symbol: None,
        number: String::new(),
        branch: None,
        tekiyo: None,
        payer: None,
        summary_ja: format!("手動で解決: {reason}"),
        at: now,
        replaces_because: None,
    };
    ledger
        .record(&check.id, check.visit_date(), &CheckEvent::Resolved(r))
        .await?;
    view(ledger, &check.id, now.date_naive()).await
}

/// Marks a decided check as claimed (請求済): its claim basis is final from now on.
/// Claiming it again changes nothing.
pub async fn mark_claimed(
    ledger: &Ledger,
    id: &str,
    now: DateTime<FixedOffset>,
) -> Result<CheckView, OpError> {
    // Read, decide and write as one step against the reconciler and other requests.
    let _deciding = ledger.deciding(id).await;
    let check = load(ledger, id).await?;
    if check.resolution.is_none() || check.is_open() {
        return Err(OpError::NotDecided(check.id));
    }
    if check.claimed.is_none() {
        ledger
            .record(
                &check.id,
                check.visit_date(),
                &CheckEvent::Claimed { at: now },
            )
            .await?;
    }
    view(ledger, &check.id, now.date_naive()).await
}

/// A document shown instead of a card read (資格確認書, 保険証, マイナポータル, お知らせ).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentRequest {
    /// Document kind: `kakuninsho`, `hokensho`, `portal`, `oshirase`, `myna`.
    pub kind: String,
    /// The document's own expiry, when printed.
    pub expires: Option<NaiveDate>,
    /// The visit date; default today in Japan.
    pub visit_date: Option<NaiveDate>,
    /// 資格情報のお知らせ shown together with the My Number card.
    #[serde(default)]
    pub with_card: bool,
    /// 保険者番号 on the document.
    pub insurer: Option<String>,
    /// 記号.
    pub symbol: Option<String>,
    /// 番号.
    pub number: Option<String>,
    /// 枝番.
    pub branch: Option<String>,
    /// 生年月日.
    pub birth_date: Option<NaiveDate>,
    /// Facility type; default the configured one.
    pub facility: Option<String>,
    /// 初診・初検.
    #[serde(default)]
    pub first_visit: bool,
    /// An id the client made for this check (a ULID): the same request sent again never
    /// records a second check.
    pub check_id: Option<String>,
}

/// What recording a document did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DocumentReport {
    /// `recorded` or `refused`.
    pub status: String,
    /// The new check, when recorded.
    pub check_id: Option<String>,
    /// The document's label.
    pub kind_ja: String,
    /// Why, for staff.
    pub reason_ja: String,
    /// The rule that decided.
    pub rule: String,
    /// What the counter must do.
    pub requirements_ja: Vec<String>,
}

/// Applies the document rules (R7–R11) on the visit date and records an acceptable document
/// as a check to confirm by its numbers.
pub async fn record_document(
    ledger: &Ledger,
    request: &DocumentRequest,
    default_facility: FacilityType,
    settings: &RuleSettings,
    now: DateTime<FixedOffset>,
) -> Result<DocumentReport, OpError> {
    use crate::ledger::event::{Captured, DocumentRecord};
    use crate::rules::documents::{document_validity, DocumentKind, PresentedDocument};

    let kind: DocumentKind =
        request
            .kind
            .parse()
            .map_err(|e: crate::rules::documents::DocumentError| {
                OpError::invalid("kind", e.message_ja())
            })?;
    let visit = request.visit_date.unwrap_or_else(|| now.date_naive());
    Month::of(visit)
        .map_err(|_| OpError::invalid("visit_date", crate::ledger::visit_date_message_ja()))?;
    if request.birth_date.is_some_and(|b| b > visit) {
        return Err(OpError::invalid(
            "birth_date",
            "生年月日が受診日より後になっています。",
        ));
    }
    let facility = match &request.facility {
        Some(f) => f.parse().map_err(|e: crate::domain::DomainError| {
            OpError::invalid("facility", e.message_ja())
        })?,
        None => default_facility,
    };
    let numbers = match (&request.insurer, &request.number) {
        (Some(i), Some(n)) => Some(numbers_record(
            i,
            request.symbol.as_deref(),
            n,
            request.branch.as_deref(),
        )?),
        (None, None) => None,
        _ => {
            return Err(OpError::invalid(
                "number",
                "保険者番号と番号は両方指定してください。",
            ))
        }
    };
    let insurance = numbers
        .as_ref()
        .map(|n| InsuranceType::from_insurer(&n.insurer))
        .unwrap_or(InsuranceType::Unknown);
    let verdict = document_validity(
        &PresentedDocument {
            kind,
            expires: request.expires,
            with_card: request.with_card,
            insurance,
        },
        visit,
        settings,
    )
    .map_err(|e| OpError::invalid("kind", e.message_ja()))?;
    let mut report = DocumentReport {
        status: "refused".into(),
        check_id: None,
        kind_ja: kind.label_ja().to_string(),
        reason_ja: verdict.reason_ja.clone(),
        rule: verdict.rule.to_string(),
        requirements_ja: verdict
            .requirements
            .iter()
            .map(|r| r.label_ja().to_string())
            .collect(),
    };
    if !verdict.acceptable {
        return Ok(report);
    }
    let id = match &request.check_id {
        Some(id) => ulid::Ulid::from_string(id)
            .map(|u| u.to_string())
            .map_err(|_| {
                OpError::invalid("check_id", "check_id は ULID（26文字）で指定してください。")
            })?,
        None => crate::ledger::new_check_id(),
    };
    // What the clinic last confirmed under the document's numbers (its birth date lets the
    // reconciler ask by numbers when none was typed).
    let last_known = match &numbers {
        Some(n) => {
            let key = ledger.history_key().numbers(n);
            let ledger = ledger.clone();
            // A failed lookup costs only the history, never the record.
            blocking(move || Ok(ledger.known_patient(&[key], visit, None)?))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "patient history could not be read; recorded without it");
                    None
                })
        }
        None => None,
    };
    let capture = Captured {
        visit_date: visit,
        facility,
        first_visit: request.first_visit,
        next_visit: None,
        card: None,
        document: Some(DocumentRecord {
            kind,
            expires: request.expires,
            numbers,
            birth_date: request.birth_date,
        }),
        reason: Some("document".into()),
        last_known,
        captured_at: now,
    };
    ledger
        .record(&id, visit, &CheckEvent::Captured(capture))
        .await?;
    report.status = "recorded".into();
    report.check_id = Some(id);
    Ok(report)
}

/// A check by the numbers on an insurance document, asked at once (被保険者番号等による資格確認):
/// how a receipt computer asks, through the API or the folder interface. When the
/// qualification system cannot be reached the check is captured for 事後確認.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NumbersCheckRequest {
    /// 保険者番号 (6 or 8 digits).
    pub insurer: String,
    /// 記号.
    pub symbol: Option<String>,
    /// 番号.
    pub number: String,
    /// 枝番.
    pub branch: Option<String>,
    /// 生年月日.
    pub birth_date: NaiveDate,
    /// The visit date; default today in Japan.
    pub visit_date: Option<NaiveDate>,
    /// The patient agreed to share 限度額適用認定証 information.
    #[serde(default)]
    pub limit_consent: bool,
}

impl NumbersCheckRequest {
    /// The query, checked field by field (`file_id` is the caller's correlation id).
    pub fn query(
        &self,
        now: DateTime<FixedOffset>,
        file_id: String,
    ) -> Result<crate::oqs::InsuranceQuery, OpError> {
        let visit = self.visit_date.unwrap_or_else(|| now.date_naive());
        Month::of(visit)
            .map_err(|_| OpError::invalid("visit_date", crate::ledger::visit_date_message_ja()))?;
        if self.birth_date > visit {
            return Err(OpError::invalid(
                "birth_date",
                "生年月日が受診日より後になっています。",
            ));
        }
        let numbers = numbers_record(
            &self.insurer,
            self.symbol.as_deref(),
            &self.number,
            self.branch.as_deref(),
        )?;
        Ok(crate::oqs::InsuranceQuery {
            visit_date: visit,
            insurer: numbers.insurer,
            symbol: numbers.symbol,
            number: numbers.number,
            branch: numbers.branch,
            birth_date: self.birth_date,
            limit_consent: self.limit_consent,
            file_id,
        })
    }
}

/// What a check by numbers gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NumbersCheckReport {
    /// How it ended: `confirmed`, `invalid`, `not-found`, `multiple`, `captured` (no answer:
    /// recorded for 事後確認) or `error`.
    pub status: crate::view::ReportStatus,
    /// The check recorded for 事後確認, when captured.
    pub check_id: Option<String>,
    /// The visit date asked about.
    pub visit_date: NaiveDate,
    /// The qualification found (confirmed or invalid).
    #[schema(value_type = Option<Object>)]
    pub qualification: Option<crate::oqs::Qualification>,
    /// Every candidate, when several matched.
    #[schema(value_type = Vec<Object>)]
    pub candidates: Vec<crate::oqs::Qualification>,
    /// 資格（無効）・新しい資格あり.
    pub newer_exists: bool,
    /// Notices from the qualification system.
    pub notices: Vec<crate::view::NoticeView>,
    /// The co-payment in tenths (割), when the answer gives it.
    pub copay_tenths: Option<u8>,
    /// The error's stable name, when the system refused the request.
    pub error: Option<String>,
    /// For staff.
    pub message_ja: String,
}
