//! The あはき plugin (あん摩マッサージ指圧・はり・きゅう, 受領委任).
//!
//! Like 柔整, it writes the 療養費支給申請書 fields (保険者番号, 記号番号, 被保険者/被扶養者 when
//! derivable; no 枝番) and the confirm-afterwards notes for an unconfirmed check; there is no
//! 資格不詳 claim for 療養費. The read-aloud text spells the numbers digit by digit: many
//! practitioners are visually impaired and copy the numbers onto the form from it. The wording
//! is the shared [`ryoyohi`] formatter.
#![deny(unsafe_code)]

use tsunagi_plugin_common::bindings::Guest;
use tsunagi_plugin_common::types::{Addition, Check, Facility, Failure, Info, Moment, Output};
use tsunagi_plugin_common::{ryoyohi, Profile, Words};

/// The あはき plugin's identity and words.
pub const PROFILE: Profile = Profile {
    facility: Facility::Ahaki,
    name: "あはき（あん摩マッサージ指圧・はり・きゅう）",
    version: env!("CARGO_PKG_VERSION"),
    words: Words {
        act: "施術",
        day: "施術日",
        first: "初検",
        next_time: "次回の施術時",
    },
};

/// The あはき plugin (the type the WIT world is exported for).
#[derive(Debug)]
pub struct Ahaki;

impl Guest for Ahaki {
    fn describe() -> Info {
        PROFILE.describe()
    }

    fn format(check: Check) -> Result<Output, Failure> {
        ryoyohi::format(&PROFILE, &check)
    }

    fn on_moment(at: Moment, check: Check) -> Result<Addition, Failure> {
        ryoyohi::on_moment(&PROFILE, at, &check)
    }
}

/// The component's exports. Only for wasm: natively (tests) the C-ABI symbols would be noise.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod export {
    use super::Ahaki;
    tsunagi_plugin_common::bindings::export!(Ahaki with_types_in tsunagi_plugin_common::bindings);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_plugin_common::golden::{run, Form};

    #[test]
    fn golden() {
        // It formats the shared golden checks as `golden/ahaki.txt` records.
        run::<Ahaki>(
            env!("CARGO_MANIFEST_DIR"),
            "ahaki",
            Facility::Ahaki,
            Form::Ryoyohi,
        );
    }
}
