//! The 柔整 plugin (柔道整復, 受領委任).
//!
//! It writes the 療養費支給申請書 fields (保険者番号, 記号番号 in one box, 被保険者/被扶養者 when
//! the insurer type decides it; no 枝番) and, when the online check could not be done, says how
//! the check must be confirmed: a first treatment (初検) afterwards without fail, a later one
//! orally when the data is held. There is no 資格不詳 claim for 療養費. The wording is the shared
//! [`ryoyohi`] formatter, also used by あはき.
#![deny(unsafe_code)]

use tsunagi_plugin_common::bindings::Guest;
use tsunagi_plugin_common::types::{Addition, Check, Facility, Failure, Info, Moment, Output};
use tsunagi_plugin_common::{ryoyohi, Profile, Words};

/// The 柔整 plugin's identity and words.
pub const PROFILE: Profile = Profile {
    facility: Facility::Judo,
    name: "柔整（柔道整復）",
    version: env!("CARGO_PKG_VERSION"),
    words: Words {
        act: "施術",
        day: "施術日",
        first: "初検",
        next_time: "次回の施術時",
    },
};

/// The 柔整 plugin (the type the WIT world is exported for).
#[derive(Debug)]
pub struct Judo;

impl Guest for Judo {
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
    use super::Judo;
    tsunagi_plugin_common::bindings::export!(Judo with_types_in tsunagi_plugin_common::bindings);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_plugin_common::golden::{run, Form};

    #[test]
    fn golden() {
        // It formats the shared golden checks as `golden/judo.txt` records.
        run::<Judo>(
            env!("CARGO_MANIFEST_DIR"),
            "judo",
            Facility::Judo,
            Form::Ryoyohi,
        );
    }
}
