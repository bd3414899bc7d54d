//! What the end-to-end tests share: today in Japan, the simulator's standard scenario made
//! once per test binary, and one runtime for the simulator and other async parts.
//!
//! Include with `#[path = "support/fixtures.rs"] mod fixtures;`.
#![allow(dead_code, clippy::expect_used)]

use std::sync::OnceLock;

use oqs_sim::scenario::{self, Scenario};

/// Today in Japan.
pub fn today() -> chrono::NaiveDate {
    tsunagi::check::now_jst().date_naive()
}

/// The standard scenario (cards, people, coverage) as of today.
pub fn scenario() -> &'static Scenario {
    static S: OnceLock<Scenario> = OnceLock::new();
    S.get_or_init(|| scenario::standard(today()).expect("standard scenario"))
}

/// A two-worker runtime shared by the tests of one binary.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}
