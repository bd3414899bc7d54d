//! A minimal WebDriver client for the reception page's tests and benchmark: chromedriver on a
//! free port and one headless Chromium session (Debian's `chromium` and `chromium-driver`)
//! with a fresh profile, driven with a few JSON calls over the workspace's `reqwest` (no extra
//! TLS stack, nothing more to build on a two-core machine). Every wait has a deadline and
//! says what it waited for.
//!
//! Include after `support/fixtures.rs` as `mod fixtures;`:
//! `#[path = "support/browser.rs"] mod browser;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fixtures::runtime;

/// What a page may take to show something after it was asked (a loaded two-core machine
/// running a debug daemon and a browser).
pub const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// chromedriver on a free port, and one headless Chromium session with a fresh profile.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// WebDriver's key codes.
pub const TAB: char = '\u{E004}';
pub const ENTER: char = '\u{E007}';
pub const SPACE: char = '\u{E00D}';
pub const ARROW_UP: char = '\u{E013}';
pub const ARROW_DOWN: char = '\u{E015}';

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    pub fn start() -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian chromium-driver; scripts/setup-system.sh installs it)");
        let http = runtime().block_on(async {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap()
        });
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().unwrap();
        let mut this = Self {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        this.wait_driver();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            // 1024 wide: the screenshots committed under docs/page stay small.
            "--window-size=1024,900",
            "--lang=ja",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!(
            "--user-data-dir={}",
            this._profile.path().display()
        )])
        .collect::<Vec<_>>();
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
                }
            }
        });
        let answer = this.call("POST", "/session", Some(caps));
        this.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_string();
        this
    }

    fn wait_driver(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.driver.try_wait().unwrap() {
                panic!("chromedriver exited at start: {status}");
            }
            let url = format!("{}/status", self.base);
            let http = self.http.clone();
            let ready = runtime().block_on(async move {
                match http.get(url).send().await {
                    Ok(r) => r.json::<Value>().await.ok(),
                    Err(_) => None,
                }
            });
            if ready.is_some_and(|v| v["value"]["ready"] == true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test with its message.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let (status, v) = runtime().block_on(async move {
            let r = req.send().await.expect("WebDriver request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        });
        assert!(status < 400, "WebDriver {path} failed ({status}): {v}");
        v["value"].clone()
    }

    pub fn s(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
    }

    pub fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.s("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{id}/click")),
            Some(json!({})),
        );
    }

    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.call("GET", &self.s(&format!("/element/{id}/text")), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Saves a PNG of the page as `<name>.png` in `$TSUNAGI_PAGE_SHOTS`, when that is set
    /// (to look at the page's states; nothing is asserted on pixels).
    pub fn shot(&self, name: &str) {
        let Some(dir) = std::env::var_os("TSUNAGI_PAGE_SHOTS") else {
            return;
        };
        use base64::Engine;
        let png = self.call("GET", &self.s("/screenshot"), None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .unwrap();
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    /// Presses one key (a WebDriver key code such as TAB or ENTER) on whatever has focus.
    pub fn key(&self, key: char) {
        let k = key.to_string();
        self.call(
            "POST",
            &self.s("/actions"),
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                    {"type": "keyDown", "value": k}, {"type": "keyUp", "value": k}
                ]}]}),
            ),
        );
    }

    /// Types `text` key by key on whatever has focus, as a keyboard would.
    pub fn type_text(&self, text: &str) {
        let actions: Vec<Value> = text
            .chars()
            .flat_map(|c| {
                let k = c.to_string();
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.call(
            "POST",
            &self.s("/actions"),
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// Empties a text field.
    pub fn clear_field(&self, css: &str) {
        let id = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{id}/clear")),
            Some(json!({})),
        );
    }

    /// Whether the element `css` is shown (its box takes space).
    pub fn shown(&self, css: &str) -> bool {
        let css = serde_json::to_string(css).unwrap();
        self.js(&format!(
            "const e = document.querySelector({css}); return e !== null && e.getClientRects().length > 0"
        )) == Value::Bool(true)
    }

    /// Saves a shot of the whole page's height (at most 1800 px), then restores the window.
    pub fn shot_full(&self, name: &str) {
        if std::env::var_os("TSUNAGI_PAGE_SHOTS").is_none() {
            return;
        }
        let rect = self.call("GET", &self.s("/window/rect"), None);
        let height = self
            .js("return document.documentElement.scrollHeight")
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 1800);
        // The window's height includes the browser's frame: a little more than the page.
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({"width": rect["width"], "height": height + 120})),
        );
        self.js("window.scrollTo(0, 0); return true");
        self.shot(name);
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({"width": rect["width"], "height": rect["height"]})),
        );
    }

    /// Tabs through the page until `id` has focus (at most `max` presses).
    pub fn tab_to(&self, id: &str, max: usize) {
        let focused =
            format!("return document.activeElement && document.activeElement.id === '{id}'");
        for _ in 0..max {
            if self.js(&focused) == Value::Bool(true) {
                return;
            }
            self.key(TAB);
        }
        assert_eq!(
            self.js(&focused),
            Value::Bool(true),
            "#{id} never took the focus by Tab"
        );
    }

    pub fn cookies(&self) -> Vec<Value> {
        self.call("GET", &self.s("/cookie"), None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Narrows the window to 640 CSS px (a 1280 px screen at 200 % zoom) and waits until
    /// `what` has reflowed into it: nothing scrolls sideways.
    pub fn reflows_at_200_percent(&self, what: &str) {
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({"width": 640, "height": 900})),
        );
        self.wait_until(
            what,
            "return window.innerWidth <= 660 && document.documentElement.scrollWidth <= window.innerWidth",
        );
    }

    /// Waits until `script` returns `true`; fails with `what` and the page's text.
    pub fn wait_until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.js(script) == Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                let body = self.js("return document.body ? document.body.innerText : ''");
                panic!(
                    "the page never showed {what} within {WAIT:?}; it shows:\n{}",
                    body.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let http = self.http.clone();
            let _ = runtime().block_on(async move {
                tokio::time::timeout(Duration::from_secs(10), http.delete(url).send()).await
            });
        }
        // Only the chromedriver this test started, by its own handle.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
