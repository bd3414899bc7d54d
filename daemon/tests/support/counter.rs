//! The reception page's world for the browser and read-aloud tests: pcscd held, the
//! simulator, a card of the standard scenario on vpcd slot 0, and tsunagid (its own reconcile
//! timer off: only a test's explicit pass asks about a capture).
//!
//! Include after `support/tsunagid.rs` and `support/fixtures.rs` as `mod tsunagid;` and
//! `mod fixtures;`: `#[path = "support/counter.rs"] mod counter;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oqs_sim::{FaultMode, SimHandle, Simulator};
use serde_json::{json, Value};
use tsunagi_vcard::card::{CardProfile, VirtualCard};
use tsunagi_vcard::harness::{self, PcscdSession};
use tsunagi_vcard::vpcd::{AttachOptions, AttachedCard};

use crate::fixtures::{runtime, scenario};
use crate::tsunagid::Tsunagid;

/// What the daemon may take to show a state asked of it (a loaded two-core machine).
const WAIT: Duration = Duration::from_secs(30);

/// pcscd held, a simulator, a valid card on slot 0, and tsunagid (its own reconcile timer
/// off: only the test's explicit pass asks about a capture).
pub struct World {
    pub d: Tsunagid,
    pub sim: SimHandle,
    card: Option<AttachedCard>,
    _pcscd: PcscdSession,
}

/// A card of the standard scenario, by name.
pub fn card(name: &str) -> CardProfile {
    scenario()
        .card(name)
        .unwrap_or_else(|| panic!("no card {name} in the scenario"))
        .clone()
}

impl World {
    pub fn new() -> Self {
        Self::with_card(card("valid-employee"))
    }

    pub fn with_card(profile: CardProfile) -> Self {
        Self::configured(profile, "")
    }

    /// A world whose tsunagid has `extra` configuration besides the test's own.
    pub fn configured(profile: CardProfile, extra: &str) -> Self {
        let pcscd = harness::pcscd().expect("pcscd harness");
        let sim = runtime()
            .block_on(Simulator::start(scenario().sim_config()))
            .expect("simulator");
        let card = harness::insert(VirtualCard::new(profile), 0, AttachOptions::default())
            .expect("insert card into vpcd slot 0");
        let d = Tsunagid::start(
            &sim.base_url(),
            &scenario().institution_code,
            &format!("[reconcile]\ninterval_secs = 3600\n{extra}"),
        );
        Self {
            d,
            sim,
            card: Some(card),
            _pcscd: pcscd,
        }
    }

    /// Takes the card off slot 0 and puts `profile` there.
    pub fn swap_card(&mut self, profile: CardProfile) {
        drop(self.card.take());
        self.card = Some(
            harness::insert(VirtualCard::new(profile), 0, AttachOptions::default())
                .expect("insert card into vpcd slot 0"),
        );
    }

    /// `tsunagi open --print` through the daemon's configuration: the sign-in address.
    pub fn open_url(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
            .args(["open", "--print"])
            .env("TSUNAGI_CONFIG", &self.d.config)
            .env_remove("TSUNAGI_DATA_DIR")
            .env_remove("TSUNAGI_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("run tsunagi open");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tsunagi open --print failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let url = stdout.trim().to_string();
        let prefix = format!("http://{}/page/signin?code=", self.d.addr);
        assert!(url.starts_with(&prefix), "sign-in address: {url}");
        assert!(
            !url.contains(&self.d.token),
            "the token never goes to the browser"
        );
        url
    }

    /// A visual check for `visit` through the token API while the qualification system
    /// refuses (the line stays refused after it): the capture's report.
    pub fn capture_through_the_api(&self, visit: chrono::NaiveDate) -> Value {
        self.sim.faults().set_mode(FaultMode::Refuse);
        let (code, report) = self.d.post(
            "/v1/checks",
            &json!({"method": "visual", "visit_date": visit, "card_wait_secs": 10}),
        );
        assert_eq!(code, 200, "{report}");
        assert_eq!(report["status"], "captured", "{report}");
        report
    }

    pub fn checks(&self, state: &str) -> Vec<Value> {
        let (code, list) = self.d.get(&format!("/v1/checks?state={state}"));
        assert_eq!(code, 200, "{list}");
        list["checks"].as_array().expect("checks").clone()
    }

    pub fn wait_line(&self, want: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (code, s) = self.d.get("/v1/status");
            assert_eq!(code, 200, "{s}");
            if s["line"] == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the line never became {want} within {WAIT:?}: {s}\nlog:\n{}",
                self.d.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
