//! A good formatter built against a compatible API version 1.1.0: what 1.0 has, plus a new
//! type and a new export the 1.0 host never calls.
wit_bindgen::generate!({ path: "../wit-v1-1", world: "facility-adapter" });

#[path = "../../shared.rs"]
mod shared;

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        shared::info("v1-1")
    }

    fn format(check: Check) -> Result<Output, Failure> {
        Ok(shared::output(&check))
    }

    fn on_moment(_at: Moment, _check: Check) -> Result<Addition, Failure> {
        Ok(shared::addition())
    }

    fn ticket(check: Check) -> Ticket {
        Ticket {
            lines: vec![check.id],
        }
    }
}

export!(Plugin);
