//! The 訪問看護 plugin (訪問看護ステーション, 居宅同意取得型).
//!
//! A station claims on the same insurance fields as a clinic, so the base is the shared
//! [`receipt`] formatter (when the check cannot be done, the same fall-backs apply: the normal
//! co-payment, a later confirmation, 旧資格 or 資格不詳 claims). What differs is where the check
//! happens:
//!
//! - The first visit needs the card at the patient's home, on the station's activated device,
//!   with the PIN or (from October 2024) a visual check.
//! - While care continues, later visits need no card: the station queries again (再照会) from its
//!   own terminal with the data from the first check.
//! - No ministry text covers a home with no signal. A check captured offline there is re-queried
//!   from the station's terminal on return, so that is the next action instead of "re-query when
//!   the system is back".
#![deny(unsafe_code)]

use tsunagi_plugin_common::bindings::Guest;
use tsunagi_plugin_common::notes::{action, warning, MomentCodes};
use tsunagi_plugin_common::receipt::{self, Extra};
use tsunagi_plugin_common::types::{
    Addition, Check, Facility, Failure, Identity, Info, Moment, NextAction, Output, Severity,
};
use tsunagi_plugin_common::{Facts, Profile, Words};

/// The 訪問看護 plugin's identity and words.
pub const PROFILE: Profile = Profile {
    facility: Facility::HomeNursing,
    name: "訪問看護（訪問看護ステーション）",
    version: env!("CARGO_PKG_VERSION"),
    words: Words {
        act: "訪問看護",
        day: "訪問日",
        first: "初回訪問",
        next_time: "次回の訪問時",
    },
};

/// The codes this plugin reports at each moment: the receipt's, plus the re-query on return.
pub const MOMENTS: MomentCodes = MomentCodes {
    captured: &[
        "captured-offline",
        "not-confirmed",
        "qualification-invalid",
        "newer-qualification",
        "qualification-not-found",
        "multiple-qualifications",
        "card-refused",
        "follow-up",
        "ask-new-numbers",
        "requery-on-return",
        "first-visit-card",
    ],
    resolved: receipt::MOMENTS.resolved,
};

/// Home-visit specifics (訪問看護の追記) added to the receipt formatter's notes.
fn home_visit(facts: &Facts<'_>, own: Option<&NextAction>) -> Extra {
    let check = facts.check;
    let mut extra = Extra::default();
    if check.first_visit {
        let (severity, message) = if check.identity == Identity::Document && facts.open {
            (
                Severity::Caution,
                "初回の訪問では、利用者宅でマイナ保険証を確認します（暗証番号か目視）。今回は書類で受け付けたため、次回の訪問時にカードで確認してください。",
            )
        } else {
            (
                Severity::Info,
                "初回の訪問です。利用者宅で、ステーションの利用登録した携帯端末を使い、マイナ保険証を確認します（暗証番号か目視）。",
            )
        };
        extra
            .warnings
            .push(warning("first-visit-card", severity, message));
    } else {
        extra.warnings.push(warning(
            "continuing-requery",
            Severity::Info,
            "継続中の利用者です。訪問先でカードは要りません。ステーションの端末から、初回の情報で再照会します。",
        ));
    }
    // Offline at the home: the receipt formatter's "re-query when the system is back" becomes
    // "re-query from the station's terminal on return", which is what a station can do.
    if own.is_some_and(|a| a.code == "follow-up") && check.captured_offline && facts.open {
        extra.next_action = Some(action(
            "requery-on-return",
            "電波の届く所に戻ったら、ステーションの端末から再照会してください。",
            check.due.clone(),
        ));
    }
    extra
}

/// The 訪問看護 plugin (the type the WIT world is exported for).
#[derive(Debug)]
pub struct HomeNursing;

impl Guest for HomeNursing {
    fn describe() -> Info {
        PROFILE.describe()
    }

    fn format(check: Check) -> Result<Output, Failure> {
        receipt::format_with(&PROFILE, &check, home_visit)
    }

    fn on_moment(at: Moment, check: Check) -> Result<Addition, Failure> {
        let output = receipt::format_with(&PROFILE, &check, home_visit)?;
        Ok(MOMENTS.select(at, &output.warnings, output.next_action.as_ref()))
    }
}

/// The component's exports. Only for wasm: natively (tests) the C-ABI symbols would be noise.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod export {
    use super::HomeNursing;
    tsunagi_plugin_common::bindings::export!(HomeNursing with_types_in tsunagi_plugin_common::bindings);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_plugin_common::golden::{run, Form};

    #[test]
    fn golden() {
        // It formats the shared golden checks as `golden/home-nursing.txt` records.
        run::<HomeNursing>(
            env!("CARGO_MANIFEST_DIR"),
            "home-nursing",
            Facility::HomeNursing,
            Form::Receipt,
        );
    }
}
