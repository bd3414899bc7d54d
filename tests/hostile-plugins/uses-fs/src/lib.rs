//! Reads a file with std::fs (imports wasi:filesystem).
wit_bindgen::generate!({ path: "../../../wit/v1", world: "facility-adapter" });

#[path = "../../shared.rs"]
mod shared;

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        shared::info("uses-fs")
    }

    fn format(check: Check) -> Result<Output, Failure> {
        let mut out = shared::output(&check);
        if let Ok(text) = std::fs::read_to_string("/etc/hostname") {
            out.display.push(text);
        }
        Ok(out)
    }

    fn on_moment(_at: Moment, _check: Check) -> Result<Addition, Failure> {
        Ok(shared::addition())
    }
}

export!(Plugin);
