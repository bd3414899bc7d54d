//! A release `tsunagid` process for the benches (`CARGO_BIN_EXE_tsunagid`): its data directory
//! under the bench's directory, the API on a free loopback port, no reconcile pass while
//! measured. Include with `#[path = "support/tsunagid.rs"] mod tsunagid;`.
#![allow(dead_code, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long tsunagid may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long tsunagid may take to stop on SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `tsunagid`; dropping it kills the process (a failed bench leaves none behind).
pub struct Tsunagid {
    child: Option<Child>,
    /// Where its API listens.
    pub addr: SocketAddr,
    /// Its API token.
    pub token: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl Tsunagid {
    /// Starts it with its files under `root`; returns once its API answers.
    pub fn start(root: &Path, oqs_url: &str, institution: &str) -> Self {
        Self::start_with(root, oqs_url, institution, "")
    }

    /// [`Tsunagid::start`] with more configuration (TOML sections appended).
    pub fn start_with(root: &Path, oqs_url: &str, institution: &str, extra_toml: &str) -> Self {
        let data_dir = root.join("daemon-data");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = root.join("tsunagid.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\ninstitution_code = {institution:?}\n\
                 [oqs]\nurl = {oqs_url:?}\ntimeout_ms = 2000\n\
                 [api]\nlisten = \"{addr}\"\n\
                 [reconcile]\ninterval_secs = 3600\n{extra_toml}",
                data_dir.display().to_string(),
            ),
        )
        .expect("config");
        let log = root.join("tsunagid.log");
        let child = Command::new(env!("CARGO_BIN_EXE_tsunagid"))
            .arg("--config")
            .arg(&config)
            .env("TSUNAGI_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn tsunagid");
        let mut d = Self {
            child: Some(child),
            addr,
            token: String::new(),
            data_dir,
            log,
        };
        d.token = d.wait_ready();
        d
    }

    /// Waits for the token file (`<data_dir>/api.token`) and the listening port.
    fn wait_ready(&mut self) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        let token_file = self.data_dir.join("api.token");
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "tsunagid exited during start ({status}); log:\n{}",
                    self.log_text()
                );
            }
            let token = std::fs::read_to_string(&token_file)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty());
            if let Some(token) = token {
                if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                    return token;
                }
            }
            assert!(
                Instant::now() < deadline,
                "tsunagid did not listen on {} within {START_TIMEOUT:?}; log:\n{}",
                self.addr,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Its log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as systemd sends it; the exit status (None: not within [`STOP_TIMEOUT`],
    /// then killed) and how long it took.
    pub fn stop(mut self) -> (Option<ExitStatus>, Duration) {
        let mut child = self.child.take().expect("running");
        let t = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -TERM failed");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (Some(status), t.elapsed());
            }
            if t.elapsed() >= STOP_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return (None, t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Tsunagid {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
