//! The 医科 plugin (病院・医科診療所).
//!
//! It turns a folded qualification check into what a hospital or medical clinic needs: the
//! receipt's (レセプト) 保険者番号・記号・番号・枝番 from the claim basis the host decided (the
//! current numbers, the old qualification, or 資格不詳 with its 7-filled fields, 摘要欄 text and
//! payer), the 負担割合 to collect, the reception screen's lines, the text read aloud, warnings
//! and the next step. The wording lives in `tsunagi-plugin-common` ([`receipt`]), shared with
//! 歯科 and 薬局; this crate only names the facility and its words, and exports the WIT world.
#![deny(unsafe_code)]

use tsunagi_plugin_common::bindings::Guest;
use tsunagi_plugin_common::types::{Addition, Check, Facility, Failure, Info, Moment, Output};
use tsunagi_plugin_common::{receipt, Profile, Words};

/// The 医科 plugin's identity and words.
pub const PROFILE: Profile = Profile {
    facility: Facility::Medical,
    name: "医科（病院・医科診療所）",
    version: env!("CARGO_PKG_VERSION"),
    words: Words {
        act: "診療",
        day: "受診日",
        first: "初診",
        next_time: "次回の診療時",
    },
};

/// The 医科 plugin (the type the WIT world is exported for).
#[derive(Debug)]
pub struct Medical;

impl Guest for Medical {
    fn describe() -> Info {
        PROFILE.describe()
    }

    fn format(check: Check) -> Result<Output, Failure> {
        receipt::format(&PROFILE, &check)
    }

    fn on_moment(at: Moment, check: Check) -> Result<Addition, Failure> {
        receipt::on_moment(&PROFILE, at, &check)
    }
}

/// The component's exports. Only for wasm: natively (tests) the C-ABI symbols would be noise.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod export {
    use super::Medical;
    tsunagi_plugin_common::bindings::export!(Medical with_types_in tsunagi_plugin_common::bindings);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_plugin_common::golden::{run, Form};

    #[test]
    fn golden() {
        // It formats the shared golden checks as `golden/medical.txt` records.
        run::<Medical>(
            env!("CARGO_MANIFEST_DIR"),
            "medical",
            Facility::Medical,
            Form::Receipt,
        );
    }
}
