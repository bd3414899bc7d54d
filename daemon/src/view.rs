//! The one check model (確認の表示モデル) every client sees: the local API's JSON,
//! `tsunagi show --json` and `tsunagi pending --json`, and later the plugins' records, the
//! folder interface's XML and the tray.
//!
//! Two shapes: [`CheckView`], a check as the ledger holds it (folded from its events), and
//! [`CheckReport`], what one reception check just did (the answer, or the capture and what to
//! do now). Both are plain data with stable snake_case names, serialised and parsed the same
//! way by the daemon and its clients, so a command prints the same whether it went through
//! the API or opened the store itself. Personal fields are in them (that is what reception and
//! the receipt computer need), so their `Debug` prints ids and states only: they are never
//! logged.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{FacilityType, IdentityMethod};
use crate::ledger::event::{AnswerStatus, Via};
use crate::ledger::fold::{CheckState, Phase};
use crate::oqs::Qualification;

/// Where a check stands (確認の状態).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckPhase {
    /// Answered online at reception; nothing to do.
    Done,
    /// Captured offline; waiting for the qualification system (事後確認待ち).
    Waiting,
    /// The claim basis needs staff (several matches, no 申立書, 柔整・あはき not confirmed).
    NeedsStaff,
    /// The claim basis is decided.
    Resolved,
}

impl From<Phase> for CheckPhase {
    fn from(p: Phase) -> Self {
        match p {
            Phase::Done => CheckPhase::Done,
            Phase::Waiting => CheckPhase::Waiting,
            Phase::NeedsStaff => CheckPhase::NeedsStaff,
            Phase::Resolved => CheckPhase::Resolved,
        }
    }
}

impl CheckPhase {
    /// The phase as staff read it.
    pub fn label_ja(self) -> &'static str {
        match self {
            CheckPhase::Done => "確認済み",
            CheckPhase::Waiting => "事後確認待ち",
            CheckPhase::NeedsStaff => "要対応",
            CheckPhase::Resolved => "請求根拠決定",
        }
    }
}

/// On what the claim is made (請求の根拠).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClaimBasis {
    /// The qualification valid on the visit date.
    Current,
    /// The qualification the patient held before (旧資格).
    Old,
    /// Insurer unknown (不詳): claimed with the 申立書 to the place the rules name.
    Fushou,
    /// Decided by staff by hand, with a reason.
    Manual,
}

impl ClaimBasis {
    /// The basis as stored in a `Resolved` event.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimBasis::Current => "current",
            ClaimBasis::Old => "old",
            ClaimBasis::Fushou => "fushou",
            ClaimBasis::Manual => "manual",
        }
    }

    /// Parses the stored text; `None` for a basis this version does not know.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "current" => ClaimBasis::Current,
            "old" => ClaimBasis::Old,
            "fushou" => ClaimBasis::Fushou,
            "manual" => ClaimBasis::Manual,
            _ => return None,
        })
    }
}

/// What the qualification system said (資格確認結果).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// 有効.
    Confirmed,
    /// 資格（無効）.
    Invalid,
    /// 資格情報なし.
    NotFound,
    /// 複数該当.
    Multiple,
    /// The card was refused; the numbers must be asked for.
    CardRefused,
}

impl AnswerKind {
    /// The outcome as staff read it (資格確認結果).
    pub fn label_ja(self) -> &'static str {
        match self {
            AnswerKind::Confirmed => "有効",
            AnswerKind::Invalid => "資格（無効）",
            AnswerKind::NotFound => "資格情報なし",
            AnswerKind::Multiple => "複数該当",
            AnswerKind::CardRefused => "カードでは確認できず",
        }
    }
}

impl From<AnswerStatus> for AnswerKind {
    fn from(s: AnswerStatus) -> Self {
        match s {
            AnswerStatus::Confirmed => AnswerKind::Confirmed,
            AnswerStatus::Invalid => AnswerKind::Invalid,
            AnswerStatus::NotFound => AnswerKind::NotFound,
            AnswerStatus::Multiple => AnswerKind::Multiple,
            AnswerStatus::CardRefused => AnswerKind::CardRefused,
        }
    }
}

/// Insurance numbers (保険者番号・記号・番号・枝番).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NumbersView {
    /// 保険者番号 (6 digits for 国保, 8 for the others).
    pub insurer: String,
    /// 記号.
    pub symbol: Option<String>,
    /// 番号.
    pub number: String,
    /// 枝番.
    pub branch: Option<String>,
}

impl fmt::Debug for NumbersView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NumbersView")
            .field("insurer", &self.insurer)
            .finish_non_exhaustive()
    }
}

/// The most telling answer the qualification system gave for a check.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnswerView {
    /// The outcome.
    pub status: AnswerKind,
    /// Asked with the card (`card`) or with insurance numbers (`insurance`).
    pub via: String,
    /// The qualification's numbers (confirmed or invalid).
    pub numbers: Option<NumbersView>,
    /// A newer qualification exists (資格（無効）・新しい資格あり).
    pub newer_exists: bool,
    /// 生年月日 from the answer.
    pub birth_date: Option<NaiveDate>,
    /// 負担割合 in percent, when the answer gave one.
    pub ratio_percent: Option<u8>,
    /// When it was answered (RFC 3339, JST).
    pub answered_at: DateTime<FixedOffset>,
}

impl fmt::Debug for AnswerView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerView")
            .field("status", &self.status)
            .field("via", &self.via)
            .finish_non_exhaustive()
    }
}

/// The decided claim basis, as the claim's fields.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResolutionView {
    /// On what the claim is made.
    pub basis: ClaimBasis,
    /// The claim's 保険者番号 field.
    pub insurer_number: String,
    /// 記号 field.
    pub symbol: Option<String>,
    /// 番号 field.
    pub number: String,
    /// 枝番 field.
    pub branch: Option<String>,
    /// 摘要欄 text (不詳 claims).
    pub tekiyo: Option<String>,
    /// Where a 不詳 claim goes.
    pub payer: Option<String>,
    /// What was decided, for staff.
    pub summary_ja: String,
    /// When (RFC 3339, JST).
    pub at: DateTime<FixedOffset>,
    /// Why it replaced the decision before it, when it did.
    pub replaces_because: Option<String>,
}

impl fmt::Debug for ResolutionView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolutionView")
            .field("basis", &self.basis)
            .finish_non_exhaustive()
    }
}

/// One check as the ledger holds it (確認).
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckView {
    /// The check id (ULID).
    pub id: String,
    /// 受診日 / 施術日.
    pub visit_date: NaiveDate,
    /// The facility type.
    #[schema(value_type = String, example = "medical")]
    pub facility: FacilityType,
    /// 初診・初検.
    pub first_visit: bool,
    /// The next booked visit (柔整・あはき confirm then).
    pub next_visit: Option<NaiveDate>,
    /// How identity was confirmed at the card (`visual` 目視, `pin` 暗証番号); absent when a
    /// document was shown instead of a card.
    #[schema(value_type = Option<String>, example = "pin")]
    pub method: Option<IdentityMethod>,
    /// The card certificate's serial (hex), when a card was read.
    pub certificate_serial: Option<String>,
    /// The document shown instead of a card (`kakuninsho`, `hokensho`, `portal`, …).
    pub document: Option<String>,
    /// Where it stands.
    pub phase: CheckPhase,
    /// Taken while the qualification system did not answer (オフライン受付).
    pub captured_offline: bool,
    /// Why it was captured (the query error, kebab-case), when it was.
    pub reason: Option<String>,
    /// The 事後確認 deadline.
    pub due: Option<NaiveDate>,
    /// Still open and past its deadline today.
    pub overdue: bool,
    /// Failed reconciliation attempts.
    pub attempts: u32,
    /// The last failure (kebab-case).
    pub last_error: Option<String>,
    /// The most telling answer so far.
    pub answer: Option<AnswerView>,
    /// A 被保険者資格申立書 was recorded.
    pub declared: bool,
    /// Numbers the clinic holds for the patient (earlier data, a document, or reported later).
    pub known_numbers: Option<NumbersView>,
    /// What reception knew of the patient at the check (前回確認情報), when anything.
    pub earlier: Option<EarlierView>,
    /// The facility's plugin's output for this check, when a plugin is configured.
    pub facility_output: Option<FacilityView>,
    /// What facility plugins added when the check was captured or resolved, in order.
    pub plugin_notes: Vec<crate::ledger::event::PluginNote>,
    /// The decided claim basis (provisional until claimed or its deadline passes).
    pub resolution: Option<ResolutionView>,
    /// Earlier decisions the current one replaced, oldest first.
    pub history: Vec<ResolutionView>,
    /// When the claim was made (請求済); the claim basis is then final.
    pub claimed_at: Option<DateTime<FixedOffset>>,
    /// The claim basis can no longer change (claimed, or the claim deadline passed).
    pub final_basis: bool,
    /// Staff notes.
    pub notes: Vec<String>,
    /// What staff must do next, when anything.
    pub next_step_ja: Option<String>,
}

impl fmt::Debug for CheckView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Numbers, birth dates and the 申立書 are personal data: never in logs.
        f.debug_struct("CheckView")
            .field("id", &self.id)
            .field("visit_date", &self.visit_date)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

fn resolution_view(r: &crate::ledger::event::Resolved) -> ResolutionView {
    ResolutionView {
        basis: ClaimBasis::parse(&r.basis).unwrap_or(ClaimBasis::Manual),
        insurer_number: r.insurer_number.clone(),
        symbol: r.symbol.clone(),
        number: r.number.clone(),
        branch: r.branch.clone(),
        tekiyo: r.tekiyo.clone(),
        payer: r.payer.clone(),
        summary_ja: r.summary_ja.clone(),
        at: r.at,
        replaces_because: r.replaces_because.clone(),
    }
}

fn numbers_view(n: &crate::ledger::event::NumbersRecord) -> NumbersView {
    NumbersView {
        insurer: n.insurer.to_string(),
        symbol: n.symbol.clone(),
        number: n.number.clone(),
        branch: n.branch.clone(),
    }
}

impl CheckView {
    /// The view of a folded check on `today` (which decides "overdue").
    pub fn of(c: &CheckState, today: NaiveDate) -> Self {
        let phase = CheckPhase::from(c.phase());
        let known = c.known_numbers().map(|(numbers, _)| numbers);
        CheckView {
            id: c.id.clone(),
            visit_date: c.visit_date(),
            facility: c.captured.facility,
            first_visit: c.captured.first_visit,
            next_visit: c.captured.next_visit,
            method: c.captured.card.as_ref().map(|card| card.method),
            certificate_serial: c.captured.card.as_ref().map(|card| card.serial.clone()),
            document: c
                .captured
                .document
                .as_ref()
                .map(|d| d.kind.as_str().to_string()),
            phase,
            captured_offline: c.was_captured_offline(),
            reason: c.captured.reason.clone(),
            due: c.due(),
            overdue: c.is_overdue(today),
            attempts: c.attempts,
            last_error: c.last_error.clone(),
            answer: c.best_answer().map(|a| AnswerView {
                status: a.status.into(),
                via: match a.via {
                    Via::Card => "card".into(),
                    Via::Insurance => "insurance".into(),
                },
                numbers: a.numbers.as_ref().map(numbers_view),
                newer_exists: a.newer_exists,
                birth_date: a.birth_date,
                ratio_percent: a.ratio_percent,
                answered_at: a.answered_at,
            }),
            declared: c.declaration.is_some(),
            known_numbers: known.map(numbers_view),
            earlier: c.captured.last_known.as_ref().map(EarlierView::of),
            facility_output: None,
            plugin_notes: c.plugin_notes.clone(),
            resolution: c.resolution.as_ref().map(resolution_view),
            history: c.replaced.iter().map(resolution_view).collect(),
            claimed_at: c.claimed,
            final_basis: c.resolution.is_some() && c.is_final(today),
            notes: c.notes.clone(),
            next_step_ja: next_step_ja(c).map(str::to_string),
        }
    }

    /// Whether the check still waits for 事後確認 or staff.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, CheckPhase::Waiting | CheckPhase::NeedsStaff)
    }
}

/// What staff must do for a check that needs them.
fn next_step_ja(c: &CheckState) -> Option<&'static str> {
    if c.phase() != Phase::NeedsStaff {
        return None;
    }
    if c.awaits_new_qualification() {
        return Some(
            "新しい資格があります。新しい保険の番号（保険者番号・記号・番号）を患者さんに確認して記録してください（tsunagi amend）。請求期限の直前まで分からなければ旧資格で請求します。",
        );
    }
    Some(match c.best_answer().map(|a| a.status) {
        Some(AnswerStatus::Multiple) => {
            "複数の資格が該当しました。患者さんに保険を確認してください。"
        }
        _ if c.captured.facility.is_ryouyouhi() => {
            "柔整・あはき: 資格が確認できるまで申請できません。次回施術時に確認してください。"
        }
        _ => {
            "資格が確認できませんでした。被保険者資格申立書を記録するか、患者さんから保険の番号を聞いて記録してください。"
        }
    })
}

/// Which checks a list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListState {
    /// Waiting for 事後確認 or staff.
    #[default]
    Pending,
    /// Pending and past the deadline.
    Overdue,
    /// Decided or answered (nothing left to do).
    Resolved,
    /// Every check.
    All,
}

impl ListState {
    /// Whether `view` belongs in this list.
    pub fn admits(self, view: &CheckView) -> bool {
        match self {
            ListState::Pending => view.is_open(),
            ListState::Overdue => view.overdue,
            ListState::Resolved => !view.is_open(),
            ListState::All => true,
        }
    }
}

/// How a reception check ended (確認結果の区分).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// 有効.
    Confirmed,
    /// 資格（無効）.
    Invalid,
    /// 資格情報なし.
    NotFound,
    /// 複数該当.
    Multiple,
    /// The qualification system did not answer: captured for 事後確認 (オフライン受付).
    Captured,
    /// The card or the qualification system refused the check (wrong PIN, blocked PIN,
    /// certificate expired or revoked, …): not confirmed.
    Refused,
    /// The check could not be made (reader, card fault, request rejected, no answer and
    /// nowhere to capture).
    Error,
}

/// A notice the qualification system attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NoticeView {
    /// The system's code.
    pub code: String,
    /// What to tell the patient.
    pub message_ja: String,
}

/// The card's certificate, as far as reception needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateView {
    /// Serial (hex).
    pub serial: String,
    /// Last valid day.
    pub not_after: NaiveDate,
}

/// What one reception check did (資格確認の結果).
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckReport {
    /// How it ended.
    pub status: ReportStatus,
    /// The check's id in the ledger, when it was recorded.
    pub check_id: Option<String>,
    /// How identity was confirmed (`visual`, `pin`).
    #[schema(value_type = String, example = "visual")]
    pub method: IdentityMethod,
    /// The visit date the qualification was checked for.
    pub visit_date: NaiveDate,
    /// The card's certificate, when it was read.
    pub certificate: Option<CertificateView>,
    /// Command APDUs sent to the card.
    pub apdus: u32,
    /// The qualification found (confirmed or invalid).
    #[schema(value_type = Option<Object>)]
    pub qualification: Option<Qualification>,
    /// Every candidate, when several matched.
    #[schema(value_type = Vec<Object>)]
    pub candidates: Vec<Qualification>,
    /// 資格（無効）・新しい資格あり.
    pub newer_exists: bool,
    /// Notices from the qualification system.
    pub notices: Vec<NoticeView>,
    /// The error's stable name (kebab-case), when the check ended in one.
    pub error: Option<String>,
    /// Whether asking again later can help.
    pub transient: bool,
    /// PIN tries left after a wrong PIN.
    pub pin_tries_left: Option<u8>,
    /// The headline for staff.
    pub message_ja: String,
    /// What to do now, one instruction per line (captured checks).
    pub instructions_ja: Vec<String>,
    /// The co-payment to collect, in tenths (割), when known: the answer's, or for a
    /// captured check the one R13 gives from age and what the clinic last confirmed.
    pub copay_tenths: Option<u8>,
    /// What reception knew of the patient before this check, when anything.
    pub earlier: Option<EarlierView>,
    /// The facility's plugin's output for the recorded check, when a plugin is configured.
    pub facility_output: Option<FacilityView>,
}

/// What the facility's plugin made of a check (施設別の表示): the claim form's fields, the
/// screen's lines, the text read aloud, warnings and the next step — beside the raw check,
/// never instead of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FacilityView {
    /// The plugin that made it.
    pub plugin: String,
    /// Its output, when it gave one.
    pub output: Option<FacilityOutput>,
    /// Why there is none, for staff (the plugin failed, is disabled, or does not serve this
    /// facility type); the raw check above still stands.
    pub error_ja: Option<String>,
}

/// A plugin's output for one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FacilityOutput {
    /// The claim form's fields, in form order.
    pub claim_fields: Vec<ClaimField>,
    /// Lines for the reception screen.
    pub display: Vec<String>,
    /// What is read aloud.
    pub read_aloud: String,
    /// Warnings.
    pub warnings: Vec<FacilityWarning>,
    /// The next step, if any.
    pub next_action: Option<NextAction>,
}

/// One field of a claim form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClaimField {
    /// Stable key (`insurer-number`, …).
    pub key: String,
    /// The form's label.
    pub label: String,
    /// The value as written.
    pub value: String,
}

/// A warning from the facility's plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FacilityWarning {
    /// Stable code (kebab-case).
    pub code: String,
    /// `info`, `caution` or `warning`.
    pub severity: String,
    /// The text, for staff.
    pub message: String,
}

/// What staff must do next, by the facility's plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NextAction {
    /// Stable code (kebab-case).
    pub code: String,
    /// The instruction, for staff.
    pub label: String,
    /// By when.
    pub due: Option<NaiveDate>,
}

/// What reception knew of a patient before a check (前回確認情報), and where from.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EarlierView {
    /// `history` (this clinic's earlier confirmed check) or `request` (sent with the
    /// request, by the receipt computer).
    pub source: String,
    /// The earlier check, when from history.
    pub check_id: Option<String>,
    /// The visit date it was confirmed for, when known.
    pub confirmed_on: Option<NaiveDate>,
    /// The numbers.
    pub numbers: NumbersView,
    /// 生年月日.
    pub birth_date: NaiveDate,
    /// 負担割合 in tenths (1–3), when confirmed.
    pub copay_tenths: Option<u8>,
}

impl fmt::Debug for EarlierView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EarlierView")
            .field("source", &self.source)
            .field("check_id", &self.check_id)
            .finish_non_exhaustive()
    }
}

impl EarlierView {
    /// The view of earlier data.
    pub fn of(k: &crate::ledger::event::KnownInsurance) -> Self {
        use crate::ledger::event::KnownSource;
        let (source, check_id) = match &k.source {
            Some(KnownSource::History { check_id }) => ("history", Some(check_id.clone())),
            Some(KnownSource::Request) | None => ("request", None),
        };
        Self {
            source: source.into(),
            check_id,
            confirmed_on: k.confirmed_on,
            numbers: numbers_view(&k.numbers),
            birth_date: k.birth_date,
            copay_tenths: k.copay_tenths,
        }
    }
}

impl fmt::Debug for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckReport")
            .field("status", &self.status)
            .field("check_id", &self.check_id)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}
