//! Opens a socket with std::net (imports wasi:sockets).
wit_bindgen::generate!({ path: "../../../wit/v1", world: "facility-adapter" });

#[path = "../../shared.rs"]
mod shared;

struct Plugin;

impl Guest for Plugin {
    fn describe() -> Info {
        shared::info("uses-net")
    }

    fn format(check: Check) -> Result<Output, Failure> {
        let mut out = shared::output(&check);
        if let Ok(stream) = std::net::TcpStream::connect("127.0.0.1:80") {
            out.display.push(format!("{:?}", stream.peer_addr()));
        }
        Ok(out)
    }

    fn on_moment(_at: Moment, _check: Check) -> Result<Addition, Failure> {
        Ok(shared::addition())
    }
}

export!(Plugin);
