//! Benchmark: the reception page in headless Chromium against a release `tsunagid`, the
//! simulator and the virtual card on pcscd (issue 14).
//!
//! - **A check drawn on the page**, by the browser's own clock (`performance` marks the page
//!   sets): from the request leaving the page to the answer drawn (the frame after the DOM
//!   changed), and the part from the answer's arrival to its drawing.
//! - **The same check through the API** (`POST /v1/checks`), from the bench process, in the
//!   same run, interleaved one for one with the page's: the baseline.
//! - **The first load**: every byte the page fetched to show itself (HTML, script, style and
//!   its first JSON answers), uncompressed, by the browser's resource timing.
//!
//! The browser cannot see the moment the card read ends inside the daemon; both ways include
//! the same card read and query, so the page's overhead is the difference of the two.
//!
//! Run: `cargo bench -p tsunagi --bench page` (needs pcscd with vpcd, chromium and
//! chromedriver, as the tests do). `TSUNAGI_BENCH_PAGE_CHECKS` sets the checks each way
//! (default 100).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/fixtures.rs"]
mod fixtures;

#[path = "../tests/support/browser.rs"]
mod browser;

#[path = "support/tsunagid.rs"]
mod tsunagid;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tsunagi_vcard::card::VirtualCard;
use tsunagi_vcard::harness;
use tsunagi_vcard::vpcd::AttachOptions;

use browser::Browser;
use fixtures::{runtime, scenario};
use tsunagid::Tsunagid;

const WARMUP: usize = 5;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(name: &str, mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&xs, 0.5), percentile(&xs, 0.99));
    println!(
        "  {name:<52} p50 {p50:8.2} ms   p99 {p99:8.2} ms   (n = {})",
        xs.len()
    );
    (p50, p99)
}

/// One check started from the page; (sent → drawn, arrived → drawn) in ms, browser clock.
fn page_check(b: &Browser) -> (f64, f64) {
    b.js("performance.clearMarks(); \
         document.getElementById('result').dataset.state = 'none'; \
         document.getElementById('start-button').click(); return true");
    b.wait_until(
        "the page's measure of the drawn answer",
        "return document.getElementById('result').dataset.state === 'confirmed' \
         && performance.getEntriesByName('tsunagi:answer-drawn').length === 1",
    );
    let v = b.js(
        "const at = (n) => performance.getEntriesByName(n)[0].startTime; \
         return [at('tsunagi:answer-drawn') - at('tsunagi:check-sent'), \
                 at('tsunagi:answer-drawn') - at('tsunagi:answer-arrived')]",
    );
    (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
}

/// The same check through the API; ms.
fn api_check(d: &Tsunagid, client: &reqwest::Client) -> f64 {
    let url = d.url("/v1/checks");
    let token = d.token.clone();
    let client = client.clone();
    runtime().block_on(async move {
        let t = Instant::now();
        let r = client
            .post(url)
            .bearer_auth(token)
            .json(&json!({"method": "visual"}))
            .send()
            .await
            .expect("POST /v1/checks");
        let status = r.status();
        let v: Value = r.json().await.expect("a report");
        let took = t.elapsed().as_secs_f64() * 1000.0;
        assert!(status.is_success(), "{status}: {v}");
        assert_eq!(v["status"], "confirmed", "{v}");
        took
    })
}

fn main() {
    let n = std::env::var("TSUNAGI_BENCH_PAGE_CHECKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100usize)
        .max(10);
    let _pcscd = harness::pcscd().expect("pcscd with vpcd");
    let sim = runtime()
        .block_on(oqs_sim::Simulator::start(scenario().sim_config()))
        .expect("simulator");
    let profile = scenario().card("valid-employee").expect("card").clone();
    let _card = harness::insert(VirtualCard::new(profile), 0, AttachOptions::default())
        .expect("insert card into vpcd slot 0");
    let root = tempfile::tempdir().expect("bench dir");
    let d = Tsunagid::start(root.path(), &sim.base_url(), &scenario().institution_code);
    let client = runtime().block_on(async {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1)
            .build()
            .expect("client")
    });

    // Signed in as `tsunagi open` does it: a one-time code for the browser.
    let code: Value = {
        let (client, url, token) = (client.clone(), d.url("/v1/page/codes"), d.token.clone());
        runtime().block_on(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .expect("page code")
                .json()
                .await
                .expect("page code JSON")
        })
    };
    let b = Browser::start();
    b.goto(code["url"].as_str().expect("sign-in address"));
    b.wait_until(
        "the reception page and its first answers",
        "return location.pathname === '/page/' && document.getElementById('check-form') !== null \
         && performance.getEntriesByType('resource').some(r => r.name.endsWith('/page/api/pending'))",
    );

    // The first load, uncompressed, as the browser counted it.
    let load = b.js(
        "const nav = performance.getEntriesByType('navigation')[0]; \
         const res = performance.getEntriesByType('resource') \
           .filter(r => !r.name.endsWith('/page/api/events')); \
         const assets = res.filter(r => !r.name.includes('/page/api/')); \
         const sum = (xs) => xs.reduce((a, r) => a + r.decodedBodySize, 0); \
         return [nav.decodedBodySize, sum(assets), sum(res), res.length + 1]",
    );
    let html = load[0].as_f64().unwrap();
    let assets = html + load[1].as_f64().unwrap();
    let total = html + load[2].as_f64().unwrap();

    for _ in 0..WARMUP {
        page_check(&b);
        api_check(&d, &client);
    }
    let (mut page, mut render, mut api) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let (sent_drawn, arrived_drawn) = page_check(&b);
        page.push(sent_drawn);
        render.push(arrived_drawn);
        api.push(api_check(&d, &client));
    }

    println!(
        "page bench: release tsunagid (pid {}), headless Chromium, virtual card on pcscd, {n} checks each way, interleaved",
        d.pid()
    );
    let (page50, page99) = summary("page: request sent -> answer drawn", page);
    summary("page: answer arrived -> answer drawn", render);
    let (api50, api99) = summary("API POST /v1/checks (baseline, same run)", api);
    println!(
        "  page / API: {:.2}x p50, {:.2}x p99; page overhead {:.2} ms p50",
        page50 / api50,
        page99 / api99,
        page50 - api50
    );
    println!(
        "  first load: {:.1} KB uncompressed (HTML + script + style {:.1} KB; {} requests, the event stream not counted); target <= 200 KB",
        total / 1000.0,
        assets / 1000.0,
        load[3]
    );
    drop(b);
    let _ = d.stop();
}
