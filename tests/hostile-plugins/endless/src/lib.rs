//! Loops forever in format.
wit_bindgen::generate!({ path: "../../../wit/v1", world: "facility-adapter" });

#[path = "../../shared.rs"]
mod shared;

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        shared::info("endless")
    }

    fn format(check: Check) -> Result<Output, Failure> {
        let mut n: u64 = 0;
        // black_box keeps the optimiser from proving the loop does nothing.
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
            if std::hint::black_box(check.id.len()) == usize::MAX {
                return Ok(shared::output(&check));
            }
        }
    }

    fn on_moment(_at: Moment, _check: Check) -> Result<Addition, Failure> {
        Ok(shared::addition())
    }
}

export!(Plugin);
