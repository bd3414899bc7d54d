//! The 歯科 plugin (歯科診療所).
//!
//! A dental clinic's receipt takes the same insurance fields as a medical one (保険者番号・記号・
//! 番号・枝番 from the claim basis, 7-filled for 資格不詳), so the wording is the shared
//! [`receipt`] formatter with dental words (歯科診療, 次回の歯科受診時). This crate names the
//! facility and exports the WIT world.
#![deny(unsafe_code)]

use tsunagi_plugin_common::bindings::Guest;
use tsunagi_plugin_common::types::{Addition, Check, Facility, Failure, Info, Moment, Output};
use tsunagi_plugin_common::{receipt, Profile, Words};

/// The 歯科 plugin's identity and words.
pub const PROFILE: Profile = Profile {
    facility: Facility::Dental,
    name: "歯科（歯科診療所）",
    version: env!("CARGO_PKG_VERSION"),
    words: Words {
        act: "歯科診療",
        day: "受診日",
        first: "初診",
        next_time: "次回の歯科受診時",
    },
};

/// The 歯科 plugin (the type the WIT world is exported for).
#[derive(Debug)]
pub struct Dental;

impl Guest for Dental {
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
    use super::Dental;
    tsunagi_plugin_common::bindings::export!(Dental with_types_in tsunagi_plugin_common::bindings);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_plugin_common::golden::{run, Form};

    #[test]
    fn golden() {
        // It formats the shared golden checks as `golden/dental.txt` records.
        run::<Dental>(
            env!("CARGO_MANIFEST_DIR"),
            "dental",
            Facility::Dental,
            Form::Receipt,
        );
    }
}
