//! A good formatter built against API version 2.
wit_bindgen::generate!({ path: "../wit-v2", world: "facility-adapter" });

#[path = "../../shared.rs"]
mod shared;

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        shared::info("v2")
    }

    fn format(check: Check) -> Result<Output, Failure> {
        Ok(shared::output(&check))
    }

    fn on_moment(_at: Moment, _check: Check) -> Result<Addition, Failure> {
        Ok(shared::addition())
    }
}

export!(Plugin);
