//! Allocates until memory runs out in format.
wit_bindgen::generate!({ path: "../../../wit/v1", world: "facility-adapter" });

#[path = "../../shared.rs"]
mod shared;

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        shared::info("memory-bomb")
    }

    fn format(check: Check) -> Result<Output, Failure> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
            if std::hint::black_box(hoard.len()) == usize::MAX {
                return Ok(shared::output(&check));
            }
        }
    }

    fn on_moment(_at: Moment, _check: Check) -> Result<Addition, Failure> {
        Ok(shared::addition())
    }
}

export!(Plugin);
