//! Panics in format.
wit_bindgen::generate!({ path: "../../../wit/v1", world: "facility-adapter" });

#[path = "../../shared.rs"]
mod shared;

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        shared::info("panics")
    }

    fn format(check: Check) -> Result<Output, Failure> {
        panic!("plugin gave up on check {}", check.id)
    }

    fn on_moment(_at: Moment, _check: Check) -> Result<Addition, Failure> {
        Ok(shared::addition())
    }
}

export!(Plugin);
