//! The 薬局 plugin (保険薬局).
//!
//! A pharmacy claims 調剤 on the same insurance fields as a clinic (保険者番号・記号・番号・枝番
//! from the claim basis, 7-filled for 資格不詳), so the wording is the shared [`receipt`]
//! formatter; where a clinic says 診療 the pharmacy says 調剤 (調剤日, 次回の調剤時). This crate
//! names the facility and exports the WIT world.
#![deny(unsafe_code)]

use tsunagi_plugin_common::bindings::Guest;
use tsunagi_plugin_common::types::{Addition, Check, Facility, Failure, Info, Moment, Output};
use tsunagi_plugin_common::{receipt, Profile, Words};

/// The 薬局 plugin's identity and words.
pub const PROFILE: Profile = Profile {
    facility: Facility::Pharmacy,
    name: "薬局（保険薬局）",
    version: env!("CARGO_PKG_VERSION"),
    words: Words {
        act: "調剤",
        day: "調剤日",
        first: "初回",
        next_time: "次回の調剤時",
    },
};

/// The 薬局 plugin (the type the WIT world is exported for).
#[derive(Debug)]
pub struct Pharmacy;

impl Guest for Pharmacy {
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
    use super::Pharmacy;
    tsunagi_plugin_common::bindings::export!(Pharmacy with_types_in tsunagi_plugin_common::bindings);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_plugin_common::golden::{run, Form};

    #[test]
    fn golden() {
        // It formats the shared golden checks as `golden/pharmacy.txt` records.
        run::<Pharmacy>(
            env!("CARGO_MANIFEST_DIR"),
            "pharmacy",
            Facility::Pharmacy,
            Form::Receipt,
        );
    }
}
