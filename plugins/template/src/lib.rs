//! A minimal Tsunagi facility plugin (プラグインのひな形), commented for plugin authors.
//!
//! A plugin is a WebAssembly component that exports the WIT world `facility-adapter` from
//! `wit/v1/clinic.wit` (package `tsunagi:clinic@1.0.0`): three functions, no imports of the host.
//!
//! - `describe()` says who the plugin is and which facility types it serves.
//! - `format(check)` turns one qualification check into the facility's output: claim fields,
//!   display lines, read-aloud text, warnings and the next action.
//! - `on-moment(at, check)` returns the warnings and next action to record when a check is
//!   captured for 事後確認 (`captured`) or its claim basis is decided (`resolved`).
//!
//! The plugin sees the check only: no card data, no secrets, no clock, no files, no network.
//! Every date it needs is in the check as `YYYY-MM-DD` text (Japan time). It must not panic on
//! the host's data: return `Failure::Incomplete` with a Japanese message instead.
//!
//! This template serves 医科 and writes the claim basis's numbers as they are; the shipped
//! plugins (`plugins/medical` and the others) show the full wording.

// `generate!` reads the WIT and writes, in this module: the types of `tsunagi:clinic/types`
// under `tsunagi::clinic::types`, the `Guest` trait with the three exports, and `export!`.
// `path` is relative to this crate's Cargo.toml.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../../wit/v1",
        world: "facility-adapter",
    });
}

use bindings::tsunagi::clinic::types::{
    Addition, Basis, Check, Facility, Failure, Field, Info, Moment, Output, Severity, Warning,
};
use bindings::Guest;

/// The plugin (the type the world is exported for).
#[derive(Debug)]
pub struct Template;

impl Guest for Template {
    /// Who the plugin is. The host lists it with `tsunagi plugin list` and routes checks of the
    /// facility types named here to it.
    fn describe() -> Info {
        Info {
            name: "ひな形プラグイン（医科）".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            facilities: vec![Facility::Medical],
        }
    }

    /// The check formatted for the facility.
    fn format(check: Check) -> Result<Output, Failure> {
        // Refuse another facility's check, with a message staff can act on.
        if check.facility != Facility::Medical {
            return Err(Failure::Unsupported(
                "このプラグインは医科用です。この施設種類の確認は扱えません。".to_string(),
            ));
        }
        // The host decides the claim basis (current, 旧資格, 不詳 with 7-filled numbers) and
        // derives the numbers to write; a plugin words it, it does not decide it.
        let Some(claim) = check.claim else {
            return Ok(Output {
                claim_fields: Vec::new(),
                display: vec!["請求: 未確定".to_string()],
                read_aloud: "請求の根拠はまだ決まっていません。".to_string(),
                warnings: Vec::new(),
                next_action: None,
            });
        };
        let n = claim.numbers;
        let field = |key: &str, label: &str, value: String| Field {
            key: key.to_string(),
            label: label.to_string(),
            value,
        };
        let basis = match claim.basis {
            Basis::Current => "現資格",
            Basis::Old => "旧資格",
            Basis::Unknown => "資格不詳",
        };
        let mut warnings = Vec::new();
        if check.overdue {
            // Codes are stable kebab-case for programs; messages are Japanese for staff.
            warnings.push(Warning {
                code: "follow-up-overdue".to_string(),
                severity: Severity::Warning,
                message: "事後確認の期限を過ぎています。".to_string(),
            });
        }
        Ok(Output {
            // Stable keys in form order; labels as the form prints them.
            claim_fields: vec![
                field("insurer-number", "保険者番号", n.insurer.clone()),
                field("symbol", "記号", n.symbol.unwrap_or_default()),
                field("number", "番号", n.number),
                field("branch", "枝番", n.branch.unwrap_or_default()),
            ],
            display: vec![format!("請求: {basis}"), claim.summary],
            // Short, natural Japanese; spell digits out where staff must copy them.
            read_aloud: format!("{basis}で請求します。"),
            warnings,
            next_action: None,
        })
    }

    /// What the plugin adds at a moment; an empty addition is fine.
    fn on_moment(_at: Moment, check: Check) -> Result<Addition, Failure> {
        if check.facility != Facility::Medical {
            return Err(Failure::Unsupported(
                "このプラグインは医科用です。この施設種類の確認は扱えません。".to_string(),
            ));
        }
        Ok(Addition {
            warnings: Vec::new(),
            next_action: None,
        })
    }
}

// Emits the component's exports. Only for wasm, so that `cargo test` on the host does not
// define C-ABI symbols named `format` or `describe` in the test binary.
#[cfg(target_arch = "wasm32")]
bindings::export!(Template with_types_in bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_facility_is_unsupported() {
        // It refuses a 歯科 check, in Japanese.
        let check = Check {
            id: "01JV7K0000000000000000TMPL".to_string(),
            facility: Facility::Dental,
            visit_date: "2026-05-12".to_string(),
            first_visit: false,
            next_visit: None,
            identity: bindings::tsunagi::clinic::types::Identity::Pin,
            document: None,
            captured_offline: false,
            answer: None,
            qualification: None,
            known_numbers: None,
            copay_tenths: None,
            claim: None,
            declaration: None,
            due: None,
            overdue: false,
        };
        assert!(matches!(
            Template::format(check),
            Err(Failure::Unsupported(_))
        ));
    }
}
