//! `tsunagid` as a child process, for integration tests that talk to its local HTTP API.
//!
//! # What it does
//!
//! [`Tsunagid::start`] writes a configuration into a fresh temporary directory (data directory
//! `<dir>/data`, the API on a free loopback port), spawns the `tsunagid` binary Cargo built for
//! this test, and returns once the token file exists and the port accepts a connection. The
//! process's stderr goes to a log file the test can read ([`Tsunagid::log_text`]), so a test
//! can assert what the daemon logged (or did not). Dropping the value kills the process;
//! [`Tsunagid::stop`] ends it with SIGTERM, as systemd would, and returns its exit status.
//!
//! # Configuration
//!
//! The base configuration sets `data_dir`, `institution_code`, `[oqs] url/timeout_ms`,
//! `[api] listen`, `[reconcile] interval_secs` and `[health] offline_after/probe_secs`.
//! `extra_toml` is parsed and merged into it table by table (its keys win), so it may say
//! `[api]\nmax_body_bytes = 1024` without clashing with the base `[api]` table. The address
//! and token file actually used are read back from the merged configuration.
//! [`config_text`] gives the same text for tests that spawn `tsunagid` themselves (for
//! example to watch it refuse to start: [`run_to_exit`]).
//!
//! # Reusing a data directory
//!
//! The data directory is always `<dir>/data` ([`data_dir_of`]). A test can prepare it with
//! direct-mode CLI runs (`TSUNAGI_DATA_DIR=<dir>/data tsunagi …`) and then hand the directory
//! to [`Tsunagid::start_in`]; [`Tsunagid::stop_keeping_dir`] gives the directory back for a
//! restart. Each start writes its own `tsunagid-<port>.toml` and `tsunagid-<port>.log`.
//!
//! # HTTP
//!
//! `reqwest`'s blocking client is not enabled in this workspace, so the harness owns a small
//! tokio runtime and drives the async client on it: [`Tsunagid::get`] and [`Tsunagid::post`]
//! send the bearer token and return the status with the body as JSON;
//! [`Tsunagid::request`] sends anything (no token, a wrong token, raw bytes) and returns the
//! status, headers and raw body; [`Tsunagid::sse`] reads an event stream for a while.
//! [`Tsunagid::send`] sends a request built with [`Tsunagid::client`] (any header);
//! [`Tsunagid::block_on`] covers the rest (call `send()` inside it, not before).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a start may take before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long SIGTERM may take.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `tsunagid`.
pub struct Tsunagid {
    /// The temporary directory holding the configuration, the data directory and the log.
    pub dir: TempDir,
    /// The configuration file this process was started with.
    pub config: PathBuf,
    /// `<dir>/data`.
    pub data_dir: PathBuf,
    /// Where the API listens.
    pub addr: SocketAddr,
    /// The bearer token, as read from the token file.
    pub token: String,
    /// The token file.
    pub token_file: PathBuf,
    /// The process's stderr.
    pub log: PathBuf,
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

/// One HTTP answer, whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The whole of `resp`.
    pub async fn read(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap().to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// The body as JSON; a body that is not JSON comes back as a JSON string, an empty one
    /// as `null`.
    pub fn json(&self) -> serde_json::Value {
        body_json(&self.body)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

fn body_json(body: &[u8]) -> serde_json::Value {
    if body.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// The data directory inside a test directory.
pub fn data_dir_of(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The configuration text: the base settings with `extra_toml` merged in (its keys win).
pub fn config_text(
    data_dir: &Path,
    oqs_url: &str,
    institution: &str,
    listen: SocketAddr,
    extra_toml: &str,
) -> String {
    let base = format!(
        "data_dir = {data:?}\ninstitution_code = {institution:?}\n\
         [oqs]\nurl = {oqs_url:?}\ntimeout_ms = 2000\n\
         [api]\nlisten = \"{listen}\"\n\
         [reconcile]\ninterval_secs = 2\n\
         [health]\noffline_after = 1\nprobe_secs = 1\n",
        data = data_dir.display().to_string(),
    );
    let mut table: toml::Table = base.parse().expect("base configuration");
    let extra: toml::Table = extra_toml
        .parse()
        .unwrap_or_else(|e| panic!("extra_toml is not TOML: {e}\n{extra_toml}"));
    merge(&mut table, extra);
    toml::to_string(&table).unwrap()
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Runs `tsunagid --config <config>` expected to end on its own (it refuses to start) and
/// returns its status and stderr. Fails the test if it is still running after `timeout`.
pub fn run_to_exit(config: &Path, timeout: Duration) -> (ExitStatus, String) {
    let log = config.with_extension("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tsunagid"))
        .arg("--config")
        .arg(config)
        .env("TSUNAGI_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(&log).unwrap_or_default());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tsunagid was expected to refuse to start but still ran after {timeout:?}; stderr:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Tsunagid {
    /// A fresh directory, a configuration, the process; returns once the API answers.
    pub fn start(oqs_url: &str, institution: &str, extra_toml: &str) -> Self {
        Self::start_in(
            tempfile::tempdir().unwrap(),
            oqs_url,
            institution,
            extra_toml,
        )
    }

    /// Same, in an existing directory whose `data/` may already hold a ledger.
    pub fn start_in(dir: TempDir, oqs_url: &str, institution: &str, extra_toml: &str) -> Self {
        Self::start_in_with(dir, oqs_url, institution, extra_toml, &[])
    }

    /// [`Self::start_in`] with more command-line arguments for tsunagid.
    pub fn start_in_with(
        dir: TempDir,
        oqs_url: &str,
        institution: &str,
        extra_toml: &str,
        args: &[&str],
    ) -> Self {
        Self::launch(dir, oqs_url, institution, extra_toml, args, &[])
    }

    /// [`Self::start_in`] inside the network namespace `netns` (`ip netns exec`, which execs
    /// tsunagid itself: the process is the daemon's). `extra_toml` must give an `[api]
    /// listen` the test can reach from outside the namespace.
    pub fn start_in_netns(
        dir: TempDir,
        netns: &str,
        oqs_url: &str,
        institution: &str,
        extra_toml: &str,
    ) -> Self {
        Self::launch(
            dir,
            oqs_url,
            institution,
            extra_toml,
            &[],
            &["ip", "netns", "exec", netns],
        )
    }

    fn launch(
        dir: TempDir,
        oqs_url: &str,
        institution: &str,
        extra_toml: &str,
        args: &[&str],
        wrapper: &[&str],
    ) -> Self {
        let data_dir = data_dir_of(dir.path());
        let port = free_port();
        let text = config_text(
            &data_dir,
            oqs_url,
            institution,
            SocketAddr::from(([127, 0, 0, 1], port)),
            extra_toml,
        );
        let parsed: toml::Table = text.parse().unwrap();
        let api = parsed.get("api").and_then(|v| v.as_table());
        let addr: SocketAddr = api
            .and_then(|t| t.get("listen"))
            .and_then(|v| v.as_str())
            .unwrap()
            .parse()
            .unwrap();
        let token_file = api
            .and_then(|t| t.get("token_file"))
            .and_then(|v| v.as_str())
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("api.token"));
        let config = dir.path().join(format!("tsunagid-{port}.toml"));
        std::fs::write(&config, &text).unwrap();
        let log = dir.path().join(format!("tsunagid-{port}.log"));
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(env!("CARGO_BIN_EXE_tsunagid"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_tsunagid")),
        };
        let child = command
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("TSUNAGI_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let http = rt.block_on(async {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap()
        });
        let mut this = Self {
            dir,
            config,
            data_dir,
            addr,
            token: String::new(),
            token_file,
            log,
            child: Some(child),
            rt,
            http,
        };
        this.token = this.wait_ready();
        this
    }

    /// Waits for the token file and the listening port; fails the test with the log if the
    /// process ends or the time runs out.
    fn wait_ready(&mut self) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "tsunagid exited during start ({status}); log:\n{}",
                    self.log_text()
                );
            }
            let token = std::fs::read_to_string(&self.token_file)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty());
            if let Some(token) = token {
                if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                    return token;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "tsunagid did not start listening on {} within {START_TIMEOUT:?}; log:\n{}",
                    self.addr,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The async client (drive it with [`Self::block_on`]).
    pub fn client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// Runs a future on the harness's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Any request. `token`: `None` sends no `Authorization` header. `body`: raw bytes with
    /// their content type.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some((content_type, bytes)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        self.send(req)
    }

    /// Sends a request built with [`Self::client`] and reads the whole answer. (Build it
    /// outside, send it here: `reqwest` needs the runtime from `send` on.)
    pub fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        self.rt.block_on(async move {
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("request to tsunagid failed: {e}"));
            Reply::read(resp).await
        })
    }

    /// GET with the token.
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.request("GET", path, Some(&self.token), None);
        (r.status, r.json())
    }

    /// POST a JSON body with the token.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        let r = self.request(
            "POST",
            path,
            Some(&self.token),
            Some(("application/json", bytes)),
        );
        (r.status, r.json())
    }

    /// Reads an event stream (`GET path` with the token) until `done` is true of the text
    /// received so far or `max` has passed; returns the text.
    pub fn sse(&self, path: &str, max: Duration, mut done: impl FnMut(&str) -> bool) -> String {
        let req = self
            .http
            .get(self.url(path))
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "text/event-stream")
            .timeout(max + Duration::from_secs(5));
        self.rt.block_on(async move {
            let mut resp = req.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200, "event stream refused");
            let mut text = String::new();
            let deadline = tokio::time::Instant::now() + max;
            while !done(&text) {
                match tokio::time::timeout_at(deadline, resp.chunk()).await {
                    Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
                    Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
                }
            }
            text
        })
    }

    /// Everything the process has written to stderr so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// SIGTERM, then waits (≤ [`STOP_TIMEOUT`]) for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate()
    }

    /// [`Self::stop`], giving the directory back for another start.
    pub fn stop_keeping_dir(mut self) -> (ExitStatus, TempDir) {
        let status = self.terminate();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (status, dir)
    }

    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("tsunagid already stopped");
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tsunagid did not stop within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
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
