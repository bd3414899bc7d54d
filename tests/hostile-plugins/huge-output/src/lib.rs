//! Returns megabytes from format.
wit_bindgen::generate!({ path: "../../../wit/v1", world: "facility-adapter" });

#[path = "../../shared.rs"]
mod shared;

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        shared::info("huge-output")
    }

    fn format(check: Check) -> Result<Output, Failure> {
        let mut out = shared::output(&check);
        // 4 MiB of display lines: far over any sane output limit, well under memory limits.
        out.display = vec!["あ".repeat(1024); 1365];
        Ok(out)
    }

    fn on_moment(_at: Moment, _check: Check) -> Result<Addition, Failure> {
        Ok(shared::addition())
    }
}

export!(Plugin);
