//! The facility's plugin at work (施設別プラグインの利用): which plugin serves the configured
//! facility type, the check as the plugin sees it (`wit/v1`'s `check`: the fold, no secrets,
//! dates as text), and its output as the check views carry it.
//!
//! A plugin never stands between staff and the check: when it fails, is disabled or serves
//! no facility here, the view says why and the raw check is shown as always.

use chrono::NaiveDate;

use crate::check::capture::copay_of;
use crate::domain::{FacilityType, IdentityMethod};
use crate::ledger::event::{AnswerStatus, NumbersRecord};
use crate::ledger::fold::CheckState;
use crate::plugin::{api, PluginHost};
use crate::rules::copay::CopayRatio;
use crate::view::{
    CheckView, ClaimBasis, ClaimField, FacilityOutput, FacilityView, FacilityWarning, NextAction,
};

/// The plugin's output for a folded check, or why there is none; `None` when no plugin
/// serves the check's facility type.
pub fn view(host: &PluginHost, state: &CheckState, view: &CheckView) -> Option<FacilityView> {
    let facility = facility_of(view.facility);
    let plugin = host.plugin_for(facility)?;
    let check = check_of(state, view);
    Some(match host.format(&plugin, &check) {
        Ok(out) => FacilityView {
            plugin,
            output: Some(output_of(out)),
            error_ja: None,
        },
        Err(e) => FacilityView {
            error_ja: Some(e.message_ja()),
            plugin,
            output: None,
        },
    })
}

/// The WIT facility of a facility type.
pub fn facility_of(f: FacilityType) -> api::Facility {
    match f {
        FacilityType::Medical => api::Facility::Medical,
        FacilityType::Dental => api::Facility::Dental,
        FacilityType::Pharmacy => api::Facility::Pharmacy,
        FacilityType::Judo => api::Facility::Judo,
        FacilityType::Ahaki => api::Facility::Ahaki,
        FacilityType::HomeNursing => api::Facility::HomeNursing,
    }
}

fn day(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn numbers(n: &NumbersRecord) -> api::Numbers {
    api::Numbers {
        insurer: n.insurer.as_wire().trim().to_string(),
        symbol: n.symbol.clone(),
        number: n.number.clone(),
        branch: n.branch.clone(),
    }
}

/// The check as the plugin sees it.
pub fn check_of(c: &CheckState, v: &CheckView) -> api::Check {
    let best = c.best_answer();
    let qualification = best
        .filter(|a| matches!(a.status, AnswerStatus::Confirmed | AnswerStatus::Invalid))
        .and_then(|a| {
            Some(api::Qualification {
                numbers: numbers(a.numbers.as_ref()?),
                insurer_name: a.insurer_name.clone(),
                birth_date: a.birth_date.map(day),
                copay_tenths: a
                    .ratio_percent
                    .and_then(CopayRatio::from_percent)
                    .map(CopayRatio::tenths),
                newer_exists: a.newer_exists,
            })
        });
    let copay_tenths = match best.map(|a| a.status) {
        Some(AnswerStatus::Confirmed) => qualification.as_ref().and_then(|q| q.copay_tenths),
        _ => copay_of(&c.captured)
            .and_then(|i| i.ratio)
            .map(CopayRatio::tenths),
    };
    let claim = v.resolution.as_ref().map(|r| api::Claim {
        basis: match r.basis {
            ClaimBasis::Current => api::Basis::Current,
            ClaimBasis::Old => api::Basis::Old,
            ClaimBasis::Fushou => api::Basis::Unknown,
            // Staff decided by hand: 7-filled numbers are a 不詳 claim, others the current.
            ClaimBasis::Manual if r.insurer_number.starts_with("7777777") => api::Basis::Unknown,
            ClaimBasis::Manual => api::Basis::Current,
        },
        numbers: api::Numbers {
            insurer: r.insurer_number.clone(),
            symbol: r.symbol.clone(),
            number: r.number.clone(),
            branch: r.branch.clone(),
        },
        remarks: r.tekiyo.clone(),
        payer: r.payer.clone(),
        summary: r.summary_ja.clone(),
        final_: v.final_basis,
    });
    api::Check {
        id: c.id.clone(),
        facility: facility_of(v.facility),
        visit_date: day(v.visit_date),
        first_visit: v.first_visit,
        next_visit: v.next_visit.map(day),
        identity: match v.method {
            Some(IdentityMethod::Pin) => api::Identity::Pin,
            Some(IdentityMethod::Visual) => api::Identity::Visual,
            None => api::Identity::Document,
        },
        document: v.document.clone(),
        // A document recorded at the counter is not a check the system failed to answer.
        captured_offline: c
            .captured
            .reason
            .as_deref()
            .is_some_and(|r| r != "document"),
        answer: best.map(|a| match a.status {
            AnswerStatus::Confirmed => api::AnswerStatus::Confirmed,
            AnswerStatus::Invalid => api::AnswerStatus::Invalid,
            AnswerStatus::NotFound => api::AnswerStatus::NotFound,
            AnswerStatus::Multiple => api::AnswerStatus::Multiple,
            AnswerStatus::CardRefused => api::AnswerStatus::CardRefused,
        }),
        qualification,
        known_numbers: c.known_numbers().map(|(n, _)| numbers(n)),
        copay_tenths,
        claim,
        declaration: c.declaration.as_ref().map(|m| api::Declaration {
            name: m.name.clone(),
            birth_date: m.birth_date.map(day),
            address: m.address.clone(),
            phone: m.phone.clone(),
            insurer_name: m.insurer_name.clone(),
            employer: m.employer_name.clone(),
            copay_tenths: m.copay.map(CopayRatio::tenths),
        }),
        due: v.due.map(day),
        overdue: v.overdue,
    }
}

/// The plugin's output as the views carry it.
pub fn output_of(o: api::Output) -> FacilityOutput {
    FacilityOutput {
        claim_fields: o
            .claim_fields
            .into_iter()
            .map(|f| ClaimField {
                key: f.key,
                label: f.label,
                value: f.value,
            })
            .collect(),
        display: o.display,
        read_aloud: o.read_aloud,
        warnings: o.warnings.into_iter().map(warning_of).collect(),
        next_action: o.next_action.map(action_of),
    }
}

/// What a plugin added at a moment, as the views carry it.
pub fn addition_of(a: api::Addition) -> (Vec<FacilityWarning>, Option<NextAction>) {
    (
        a.warnings.into_iter().map(warning_of).collect(),
        a.next_action.map(action_of),
    )
}

fn warning_of(w: api::Warning) -> FacilityWarning {
    FacilityWarning {
        code: w.code,
        severity: match w.severity {
            api::Severity::Info => "info",
            api::Severity::Caution => "caution",
            api::Severity::Warning => "warning",
        }
        .to_string(),
        message: w.message,
    }
}

/// A next action (a due date that is not a date is dropped).
fn action_of(a: api::NextAction) -> NextAction {
    NextAction {
        code: a.code,
        label: a.label,
        due: a
            .due
            .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
    }
}
