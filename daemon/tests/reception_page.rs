//! The reception page (issue 14) in a real browser: headless Chromium from Debian driven over
//! WebDriver (chromedriver), against a live `tsunagid`, the simulator from `tests/oqs-sim` and
//! the virtual card on the machine's pcscd.
//!
//! - Sign-in: `tsunagi open --print` (the CLI's way to the daemon, identity proof included)
//!   gives a one-time address; the browser gets an `HttpOnly; SameSite=Strict` cookie and the
//!   page; the same address a second time is refused.
//! - Without the session nothing under `/page/` answers; a write from another origin is
//!   refused with 403 and makes no check.
//! - A visual check shows 有効 and the 負担割合; the line dropping shows the offline banner
//!   with the co-payment; reconciled later, the pending list empties by itself (no reload).
//! - A capture offers the 申立書 (R14), filled with the keyboard and saved through the same
//!   operation as the token API's; 資格情報なし offers it too.
//! - A wrong PIN on the pad says how many tries are left; the last try is not sent without
//!   the patient's consent; no PIN reaches the daemon's log. A photo-less card goes by PIN
//!   only (R2).
//! - The month's history (R20) lists the viewable checks, page's and API's, newest first,
//!   without numbers or birth dates; the document helper answers R10/R11 cases and records
//!   an acceptable document with its numbers.
//! - Each result state has its colour, icon and words (`TSUNAGI_PAGE_SHOTS=<dir>` saves the
//!   PNGs committed under `docs/page/`).
//!
//! The WebDriver client is `support/browser.rs` (shared with the page's benchmark). Every
//! wait has a deadline and says what it waited for; nothing is asserted after a fixed sleep.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/tsunagid.rs"]
mod tsunagid;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{runtime, scenario, today};

#[path = "support/page.rs"]
mod page;
use page::{page_request, send_no_redirect, session_cookie};

#[path = "support/counter.rs"]
mod counter;
use counter::{card, World};

#[path = "support/browser.rs"]
mod browser;
use browser::{Browser, ARROW_DOWN, ARROW_UP, ENTER, SPACE, TAB};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oqs_sim::{FaultMode, Simulator};
use serde_json::json;
use tsunagi_vcard::harness;

use tsunagid::Tsunagid;

/// What a page may take to show something after it was asked (a loaded two-core machine
/// running a debug daemon and a browser).
const PAGE_WAIT: Duration = Duration::from_secs(30);

fn institution() -> &'static str {
    &scenario().institution_code
}

/// The first day of the month before last.
fn first_of_the_month_before_last() -> chrono::NaiveDate {
    use chrono::Datelike;
    let this_month = today().with_day(1).unwrap();
    (this_month - chrono::Duration::days(32))
        .with_day(1)
        .unwrap()
}

/// The line drops (the simulator refuses) and a visual check from the page is captured.
fn capture_on_the_page(w: &World, b: &Browser) {
    w.sim.faults().set_mode(FaultMode::Refuse);
    assert_eq!(
        visual_check(b, &["confirmed", "captured", "error", "refused"]),
        "captured",
        "{}",
        b.text("#result")
    );
}

/// The page signed in through `tsunagi open --print`, with the event stream open.
fn signed_in(w: &World) -> (Browser, String) {
    let url = w.open_url();
    let b = Browser::start();
    b.goto(&url);
    b.wait_until(
        "the reception page after sign-in",
        "return location.pathname === '/page/' && document.getElementById('check-form') !== null",
    );
    (b, url)
}

/// Starts a visual check from the page with the keyboard-free path a mouse user takes and
/// waits for the result's state to be one of `states`.
fn visual_check(b: &Browser, states: &[&str]) -> String {
    b.js("document.getElementById('result').dataset.state = 'none'; return true");
    b.click("#start-button");
    let wanted = serde_json::to_string(states).unwrap();
    b.wait_until(
        &format!("a result in {states:?}"),
        &format!("return {wanted}.includes(document.getElementById('result').dataset.state)"),
    );
    b.js("return document.getElementById('result').dataset.state")
        .as_str()
        .unwrap()
        .to_string()
}

// ----- the tests -----

#[test]
fn signed_in_with_a_code_a_visual_check_shows_valid_and_the_copay() {
    let w = World::new();
    let (b, url) = signed_in(&w);

    // The cookie: HttpOnly, SameSite=Strict, the whole site's path.
    let cookies = b.cookies();
    let session = cookies
        .iter()
        .find(|c| c["name"] == format!("tsunagi_page_{}", w.d.addr.port()))
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    assert_eq!(session["path"], "/", "{session}");
    assert_eq!(
        b.js("return document.cookie"),
        json!(""),
        "the script cannot read the session"
    );

    // The readers come through the event stream: the card on slot 0 is seen.
    let reader = harness::reader_name(0);
    b.wait_until(
        "the reader with its card",
        &format!(
            "return [...document.querySelectorAll('#readers li')].some(li => li.textContent.includes({}) && li.textContent.includes('カードあり'))",
            serde_json::to_string(&reader).unwrap()
        ),
    );

    // Keyboard only: Tab to the button, Enter.
    b.tab_to("start-button", 30);
    b.key(ENTER);
    b.wait_until(
        "a result after the keyboard started the check",
        "return document.getElementById('result').dataset.state !== 'none'",
    );
    let state = b.js("return document.getElementById('result').dataset.state");
    assert_eq!(state, json!("confirmed"), "{}", b.text("#result"));
    b.shot("confirmed");
    let result = b.text("#result");
    assert!(result.contains("有効"), "{result}");
    assert!(result.contains("負担割合"), "{result}");
    assert!(result.contains('割'), "{result}");
    // The state is told by an icon and words as well as colour.
    assert_eq!(
        b.js("return document.querySelector('#result .icon').textContent"),
        json!("✓")
    );
    // Recorded once, by the daemon's own check.
    let all = w.checks("all");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["method"], "visual", "{:?}", all[0]);
    assert_eq!(all[0]["answer"]["status"], "confirmed", "{:?}", all[0]);
    let copay = all[0]["answer"]["ratio_percent"].as_u64().unwrap() / 10;
    assert!(result.contains(&format!("負担割合 {copay}割")), "{result}");

    // At 200 % zoom (half the CSS width) the page reflows: nothing scrolls sideways.
    b.reflows_at_200_percent("the page reflowed into 640 px");

    // The same sign-in address again: refused, said in Japanese, no new cookie.
    let before = b.cookies().len();
    b.call("DELETE", &b.s("/cookie"), None);
    b.goto(&url);
    b.wait_until(
        "the refusal of a used code",
        "return document.body.innerText.includes('tsunagi open')",
    );
    assert!(
        b.cookies().is_empty(),
        "a used code set no cookie (had {before})"
    );
    b.goto(&w.d.url("/page/"));
    b.wait_until(
        "the sign-in instructions without a session",
        "return document.body.innerText.includes('tsunagi open') && document.getElementById('check-form') === null",
    );

    // The page's headers, and its first load well under 200 KB.
    let cookie = session_cookie(&w.d);
    let mut total = 0;
    for (path, kind) in [
        ("/page/", "text/html"),
        ("/page/app.js", "text/javascript"),
        ("/page/style.css", "text/css"),
    ] {
        let r = page_request(&w.d, "GET", path, Some(&cookie), None, None);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type")
                .unwrap_or_default()
                .starts_with(kind),
            "{path}: {:?}",
            r.header("content-type")
        );
        assert!(
            r.header("content-security-policy")
                .unwrap_or_default()
                .contains("default-src 'self'"),
            "{path}"
        );
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
        total += r.body.len();
    }
    assert!(total < 60_000, "first load is {total} bytes");
    let index = page_request(&w.d, "GET", "/page/", Some(&cookie), None, None).text();
    assert!(!index.contains("<script>"), "no inline script");
}

/// A page script gone wrong that reads in a tight loop is paced like any API client: the
/// flood is slowed, then refused with 429 and Retry-After; a page write sent in the middle of
/// it goes through. Requests without a session are refused before they are paced: they spend
/// nothing of the budget the API's clients share.
#[test]
fn page_reads_in_a_flood_are_paced_and_a_write_still_goes_through() {
    let sim = runtime()
        .block_on(Simulator::start(scenario().sim_config()))
        .expect("simulator");
    let d = Tsunagid::start(
        &sim.base_url(),
        institution(),
        "[api]\nreads_per_second = 10\n",
    );
    let session = session_cookie(&d);
    let origin = format!("http://{}", d.addr);
    // 60 at once: `cookie` None is a request without a session; the write is a 申立書 for a
    // check that does not exist (refused for that, never for the flood).
    let flood = |cookie: Option<String>, write: bool| -> Vec<(u16, Option<String>)> {
        let (url, client) = (d.url("/page/api/status"), d.client());
        let declaration = d.url(&format!("/page/api/checks/{}/declaration", "0".repeat(26)));
        let origin = origin.clone();
        d.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..60 {
                let mut req = if write && i == 30 {
                    client
                        .post(declaration.clone())
                        .header("origin", origin.clone())
                        .header("content-type", "application/json")
                        .body("{}")
                } else {
                    client.get(url.clone())
                };
                if let Some(c) = &cookie {
                    req = req.header("cookie", c.clone());
                }
                set.spawn(async move {
                    let r = req.send().await.unwrap();
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    (r.status().as_u16(), retry)
                });
            }
            let mut out = Vec::new();
            while let Some(r) = set.join_next().await {
                out.push(r.unwrap());
            }
            out
        })
    };
    let strangers = flood(None, false);
    assert!(strangers.iter().all(|(s, _)| *s == 401), "{strangers:?}");
    // The budget is whole: a few reads in a row all pass.
    for _ in 0..5 {
        let r = page_request(&d, "GET", "/page/api/status", Some(&session), None, None);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let statuses = flood(Some(session.clone()), true);
    assert_eq!(
        statuses.iter().filter(|(s, _)| *s == 404).count(),
        1,
        "the write went through the flood: {statuses:?}"
    );
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    // 10 a second with a second's wait allowed: about a dozen pass, the rest are refused.
    assert!((5..=20).contains(&ok), "{statuses:?}");
    assert_eq!(ok + refused.len() + 1, statuses.len(), "{statuses:?}");
    assert!(
        refused.iter().all(|(_, retry)| retry.is_some()),
        "{refused:?}"
    );
}

#[test]
fn without_the_session_nothing_under_page_answers() {
    // No card needed: nothing here may reach one.
    let sim = runtime()
        .block_on(Simulator::start(scenario().sim_config()))
        .expect("simulator");
    let d = Tsunagid::start(&sim.base_url(), institution(), "");
    let origin = format!("http://{}", d.addr);

    // The page itself: 401 with Japanese instructions, and the protective headers.
    let r = page_request(&d, "GET", "/page/", None, None, None);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("tsunagi open"), "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html"),
        "{:?}",
        r.header("content-type")
    );
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    for path in ["/page/app.js", "/page/style.css"] {
        assert_eq!(
            page_request(&d, "GET", path, None, None, None).status,
            401,
            "{path}"
        );
    }
    // The page's API: 401 problem documents.
    for path in [
        "/page/api/status",
        "/page/api/pending",
        "/page/api/events",
        "/page/api/history",
        "/page/api/documents/verdict?kind=portal",
    ] {
        let r = page_request(&d, "GET", path, None, None, None);
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.json()["type"], "urn:tsunagi:problem:no-session", "{path}");
    }
    // A made-up cookie, or the API token itself, is no session.
    let fake = format!("tsunagi_page_{}={}", d.addr.port(), "ab".repeat(32));
    assert_eq!(
        page_request(&d, "GET", "/page/api/status", Some(&fake), None, None).status,
        401
    );
    let with_token = d.request("GET", "/page/api/status", Some(&d.token), None);
    assert_eq!(with_token.status, 401, "the token does not open the page");
    let r = page_request(
        &d,
        "POST",
        "/page/api/checks",
        None,
        Some(&origin),
        Some(json!({"method": "visual"})),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    for (path, body) in [
        (
            format!("/page/api/checks/{}/declaration", "0".repeat(26)),
            json!({"name": "x"}),
        ),
        ("/page/api/documents".to_string(), json!({"kind": "portal"})),
    ] {
        let r = page_request(&d, "POST", &path, None, Some(&origin), Some(body));
        assert_eq!(r.status, 401, "{path}: {}", r.text());
    }

    // A code is spent by its first use; a made-up one never works. No cookie either time.
    let (code, answer) = d.post("/v1/page/codes", &json!({}));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["expires_in_secs"], 60);
    let code = answer["code"].as_str().unwrap().to_string();
    assert!(
        code.len() == 64 && code.bytes().all(|b| b.is_ascii_hexdigit()),
        "256 bits, hex: {code}"
    );
    let path = format!("/page/signin?code={code}");
    let first = page_request(&d, "GET", &path, None, None, None);
    assert_eq!(first.status, 303);
    assert_eq!(first.header("location").as_deref(), Some("/page/"));
    let again = page_request(&d, "GET", &path, None, None, None);
    assert_eq!(again.status, 401);
    assert!(again.header("set-cookie").is_none());
    assert!(again.text().contains("tsunagi open"), "{}", again.text());
    let made_up = page_request(
        &d,
        "GET",
        &format!("/page/signin?code={}", "0".repeat(64)),
        None,
        None,
        None,
    );
    assert_eq!(made_up.status, 401);
    assert!(made_up.header("set-cookie").is_none());
    // Codes need the token.
    let r = d.request("POST", "/v1/page/codes", None, None);
    assert_eq!(r.status, 401);

    // The page under another host name (DNS rebinding) is refused even with a session.
    let cookie = session_cookie(&d);
    let req = d
        .client()
        .get(d.url("/page/api/status"))
        .header("host", format!("evil.example:{}", d.addr.port()))
        .header("cookie", &cookie);
    assert_eq!(send_no_redirect(&d, req).status, 421);
    // `tsunagi open` where no browser can be started: it says so and prints the address,
    // which signs in.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .arg("open")
        .env("TSUNAGI_CONFIG", &d.config)
        .env("PATH", empty.path())
        .env_remove("TSUNAGI_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run tsunagi open");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("xdg-open がありません"), "{stdout}");
    let printed = stdout
        .lines()
        .find(|l| l.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address printed: {stdout}"));
    let r = send_no_redirect(&d, d.client().get(printed));
    assert_eq!(r.status, 303, "the printed address signs in");

    // Nothing secret was logged.
    let log = d.log_text();
    assert!(!log.contains(&code), "a code was logged");
    assert!(
        !log.contains(cookie.split('=').nth(1).unwrap()),
        "a session was logged"
    );
}

#[test]
fn a_cross_origin_post_is_refused_and_makes_no_check() {
    let w = World::new();
    let d = &w.d;
    let cookie = session_cookie(d);
    let body = json!({"method": "visual", "card_wait_secs": 5});
    // With the session but from another origin, or with none: 403, a problem document.
    let sim_origin = w.sim.base_url().trim_end_matches('/').to_string();
    for origin in [
        Some(sim_origin),
        Some("http://evil.example".to_string()),
        Some("null".to_string()),
        None,
    ] {
        let r = page_request(
            d,
            "POST",
            "/page/api/checks",
            Some(&cookie),
            origin.as_deref(),
            Some(body.clone()),
        );
        assert_eq!(r.status, 403, "origin {origin:?}: {}", r.text());
        assert_eq!(r.json()["type"], "urn:tsunagi:problem:cross-origin");
    }
    assert!(w.checks("all").is_empty(), "no check was made");
    // The 申立書 and the document record too: writes, refused from another origin before
    // anything is looked up or recorded.
    for (path, body) in [
        (
            format!("/page/api/checks/{}/declaration", "0".repeat(26)),
            json!({"name": "x"}),
        ),
        ("/page/api/documents".to_string(), json!({"kind": "portal"})),
    ] {
        let r = page_request(
            d,
            "POST",
            &path,
            Some(&cookie),
            Some("http://evil.example"),
            Some(body),
        );
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert_eq!(r.json()["type"], "urn:tsunagi:problem:cross-origin");
    }
    assert!(w.checks("all").is_empty(), "no document was recorded");

    // From a real page on another origin of the same site (the simulator's port): the
    // browser sends the cookie (same site), the Origin refuses it.
    let refusals = || {
        d.log_text()
            .matches("page write from another origin refused")
            .count()
    };
    let refused_before = refusals();
    let (b, _) = signed_in(&w);
    b.goto(&format!("{}/", w.sim.base_url().trim_end_matches('/')));
    let target = serde_json::to_string(&d.url("/page/api/checks")).unwrap();
    let sent = b.call(
        "POST",
        &b.s("/execute/async"),
        Some(json!({
            "script": format!(
                "const done = arguments[arguments.length - 1];\
                 fetch({target}, {{method: 'POST', mode: 'no-cors', credentials: 'include', \
                   headers: {{'Content-Type': 'text/plain'}}, body: '{{\"method\":\"visual\"}}'}})\
                   .then(() => done('sent'), e => done('failed: ' + e));"
            ),
            "args": []
        })),
    );
    assert_eq!(sent, json!("sent"), "the cross-origin request was sent");
    let deadline = Instant::now() + PAGE_WAIT;
    while refusals() == refused_before {
        assert!(
            Instant::now() < deadline,
            "tsunagid never refused the cross-origin write; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(w.checks("all").is_empty(), "no check was made");

    // The same request from the page's own origin passes: the refusal was the Origin's.
    let r = page_request(
        d,
        "POST",
        "/page/api/checks",
        Some(&cookie),
        Some(&format!("http://{}", d.addr)),
        Some(body),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(w.checks("all").len(), 1);
}

#[test]
fn the_line_drops_the_banner_shows_the_copay_and_the_pending_list_empties_by_itself() {
    let w = World::new();
    let (b, _) = signed_in(&w);
    b.wait_until(
        "an empty pending list",
        "return !document.getElementById('pending-empty').hidden",
    );
    // Online first: the clinic learns the patient (and the co-payment a capture will use).
    assert_eq!(
        visual_check(&b, &["confirmed", "captured", "error", "refused"]),
        "confirmed"
    );
    let copay = w.checks("all")[0]["answer"]["ratio_percent"]
        .as_u64()
        .unwrap()
        / 10;
    assert!(
        b.js("return document.getElementById('offline').hidden") == json!(true),
        "no banner while online"
    );
    // A marker a reload would lose.
    b.js("window.__noReload = 'kept'; return true");

    capture_on_the_page(&w, &b);
    b.wait_until(
        "the capture in the pending list",
        "return document.querySelectorAll('#pending-rows tr').length === 1",
    );
    b.shot("captured");
    let banner = b.text("#offline");
    assert!(banner.contains("つながっていません"), "{banner}");
    assert!(banner.contains(&format!("{copay}割")), "{banner}");
    let pending = w.checks("pending");
    assert_eq!(pending.len(), 1, "{pending:?}");
    let id = pending[0]["id"].as_str().unwrap().to_string();
    let row_id = b.js("return document.querySelector('#pending-rows tr').dataset.checkId");
    assert_eq!(row_id, json!(id));
    let row = b.text("#pending-rows tr");
    assert!(row.contains("事後確認待ち"), "{row}");
    // The PIN pad, for a look at it.
    b.click("input[name='method'][value='pin']");
    b.click(".pad [data-digit='1']");
    b.click(".pad [data-digit='2']");
    assert_eq!(b.text("#pin-dots"), "●●（2桁）", "the PIN is masked");
    assert_eq!(
        b.js("return getComputedStyle(document.getElementById('last-try')).display"),
        json!("none"),
        "no last-try consent before the card says so"
    );
    b.shot("pin-pad");
    b.click("#pin-clear");
    // A card without a photo is offered the PIN only (R2).
    b.click("input[name='method'][value='visual']");
    b.click("#photo-less");
    assert_eq!(
        b.js(
            "const v = document.querySelector(\"input[name='method'][value='visual']\"); \
              const p = document.querySelector(\"input[name='method'][value='pin']\"); \
              return [v.disabled, p.checked, document.getElementById('pin-area').hidden]"
        ),
        json!([true, true, false]),
        "photo-less: visual disabled, PIN chosen, the pad shown"
    );
    b.click("#photo-less");
    b.click("input[name='method'][value='visual']");

    // The line comes back; the pass answers the capture; the page follows by itself.
    w.sim.faults().clear();
    w.wait_line("online");
    let (code, report) = w.d.post("/v1/reconcile", &json!({"force": true}));
    assert_eq!(code, 200, "{report}");
    assert!(w.checks("pending").is_empty(), "reconciled: {report}");
    b.wait_until(
        "the pending list emptied",
        "return document.querySelectorAll('#pending-rows tr').length === 0 && !document.getElementById('pending-empty').hidden",
    );
    b.wait_until(
        "the banner gone with the line back",
        "return document.getElementById('offline').hidden",
    );
    assert_eq!(
        b.js("return window.__noReload"),
        json!("kept"),
        "the page was not reloaded"
    );
}

#[test]
fn a_check_made_elsewhere_appears_in_the_list_with_its_overdue_mark() {
    let w = World::new();
    let (b, _) = signed_in(&w);
    b.wait_until(
        "an empty pending list",
        "return !document.getElementById('pending-empty').hidden",
    );
    // A visit on the first of the month before last, captured through the token API (the
    // receipt computer's way) while the line is down: its claim deadline (the 10th of the
    // next month) has passed.
    w.capture_through_the_api(first_of_the_month_before_last());
    let pending = w.checks("pending");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["overdue"], true, "{:?}", pending[0]);
    // The page learns it from the event stream alone.
    b.wait_until(
        "the API's capture in the list, marked overdue",
        "const r = document.querySelectorAll('#pending-rows tr'); \
         return r.length === 1 && r[0].querySelector('.overdue') !== null \
           && r[0].textContent.includes('期限切れ')",
    );
    let count = b.text("#pending-count");
    assert!(count.contains("期限切れ 1件"), "{count}");
    b.js("document.getElementById('pending').scrollIntoView(); return true");
    b.shot("overdue");
}

/// Whether `digits` stand alone in `text` (not inside a longer run of digits such as a
/// timestamp's fraction or a port).
fn has_standalone(text: &str, digits: &str) -> bool {
    text.match_indices(digits).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + digits.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// Presses the on-screen pad's digits.
fn pad(b: &Browser, digits: &str) {
    for d in digits.chars() {
        b.click(&format!(".pad [data-digit='{d}']"));
    }
}

/// The state shown in the result box.
fn result_state(b: &Browser) -> String {
    b.js("return document.getElementById('result').dataset.state")
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits for a result in `states` after the start button was pressed some other way.
fn wait_result(b: &Browser, states: &[&str]) -> String {
    let wanted = serde_json::to_string(states).unwrap();
    b.wait_until(
        &format!("a result in {states:?}"),
        &format!("return {wanted}.includes(document.getElementById('result').dataset.state)"),
    );
    result_state(b)
}

#[test]
fn captured_offline_the_declaration_is_filled_with_the_keyboard_and_saved() {
    let w = World::new();
    let (b, _) = signed_in(&w);
    // Online first: the clinic learns the patient, and the capture's co-payment with it.
    assert_eq!(
        visual_check(&b, &["confirmed", "captured", "error", "refused"]),
        "confirmed"
    );
    assert!(
        !b.shown("#declaration-panel"),
        "no 申立書 for a confirmed check"
    );
    let copay = w.checks("all")[0]["answer"]["ratio_percent"]
        .as_u64()
        .unwrap()
        / 10;

    // The line drops: the capture shows the banner with the co-payment and the form.
    capture_on_the_page(&w, &b);
    b.wait_until(
        "the 申立書 form after the capture",
        "return !document.getElementById('declaration-panel').hidden",
    );
    let banner = b.text("#offline");
    assert!(banner.contains(&format!("{copay}割")), "{banner}");
    let pending = w.checks("pending");
    assert_eq!(pending.len(), 1, "{pending:?}");
    let id = pending[0]["id"].as_str().unwrap().to_string();
    assert_eq!(pending[0]["declared"], false);
    assert_eq!(
        b.js("return document.getElementById('declaration-form').dataset.checkId"),
        json!(id),
        "the form is for the captured check"
    );
    b.shot_full("captured-offline");

    // The pending list offers the form for its row too: Enter on the row's button brings the
    // keyboard to the form's first field.
    b.wait_until(
        "the 申立書 button on the capture's row",
        &format!(
            "const r = document.querySelector('#pending-rows tr'); \
             return r !== null && r.dataset.checkId === '{id}' && r.querySelector('button') !== null"
        ),
    );
    b.js("document.querySelector('#pending-rows tr button').focus(); return true");
    b.key(ENTER);
    assert_eq!(
        b.js("return document.activeElement.id"),
        json!("decl-name"),
        "the row's button brought the keyboard to the form"
    );

    // Keyboard only: Tab into the form, type, pick with the arrow keys, Enter on the button.
    b.tab_to("decl-name", 40);
    b.type_text("模擬　花子");
    b.key(TAB);
    b.type_text("1985-06-15");
    b.key(TAB);
    b.key(ARROW_DOWN); // 男 → the first choice after 未記入
    b.key(ARROW_DOWN); // 女
    b.key(TAB);
    b.type_text("長野県木曽郡テスト町1-2");
    b.key(TAB);
    b.type_text("0264-00-0000");
    b.key(TAB);
    b.key(ARROW_DOWN); // 被用者保険（社保）
    b.key(TAB);
    b.type_text("テスト健康保険組合");
    b.key(TAB);
    b.type_text("木曽テスト製作所");
    b.key(TAB);
    b.key(ARROW_DOWN);
    b.key(ARROW_DOWN);
    b.key(ARROW_DOWN); // 3割
    assert_eq!(
        b.js("const f = document.getElementById('declaration-form').elements; \
              return [f.name.value, f.birth_date.value, f.sex.value, f.address.value, f.phone.value, \
                      f.insurance_type.value, f.insurer_name.value, f.employer.value, f.copay.value]"),
        json!([
            "模擬　花子",
            "1985-06-15",
            "female",
            "長野県木曽郡テスト町1-2",
            "0264-00-0000",
            "employee",
            "テスト健康保険組合",
            "木曽テスト製作所",
            "3"
        ]),
        "the keyboard filled the form"
    );
    b.tab_to("declaration-save", 5);
    b.key(ENTER);
    b.wait_until(
        "the page's confirmation of the saved 申立書",
        "const d = document.getElementById('declaration-done'); \
         return !d.hidden && d.textContent.includes('申立書を保存しました')",
    );
    assert!(b.text("#declaration-done").contains(&id[id.len() - 8..]));

    // Recorded by the same operation as the token API's: the check says so.
    let (code, check) = w.d.get(&format!("/v1/checks/{id}"));
    assert_eq!(code, 200, "{check}");
    assert_eq!(check["declared"], true, "{check}");
    // Nothing of it in the daemon's log.
    let log = w.d.log_text();
    for personal in ["模擬", "木曽", "0264-00-0000", "1985-06-15"] {
        assert!(!log.contains(personal), "{personal} was logged:\n{log}");
    }

    // At 200 % zoom (half the CSS width) the form reflows: nothing scrolls sideways.
    b.reflows_at_200_percent("the page with the form reflowed into 640 px");

    // A field the daemon refuses is said in Japanese, on the form.
    b.clear_field("#decl-birth");
    b.click("#decl-birth");
    b.type_text("2999-01-01");
    b.click("#declaration-save");
    b.wait_until(
        "the refusal of a birth date after the visit",
        "const e = document.getElementById('declaration-error'); \
         return !e.hidden && e.textContent.includes('生年月日')",
    );
}

#[test]
fn a_wrong_pin_then_the_right_one_after_the_last_try_is_confirmed() {
    // Two tries left: one wrong PIN leaves the last one.
    let right = "7391";
    let wrong = "8264";
    let w = World::with_card(
        card("valid-employee")
            .with_pin(right)
            .with_pin_tries_left(2),
    );
    let (b, _) = signed_in(&w);
    // Count what the page sends: the refusal below must send nothing.
    b.js("window.__checkPosts = 0; const f = window.fetch; \
          window.fetch = function (u, o) { \
            if (String(u).endsWith('/page/api/checks') && o && o.method === 'POST') window.__checkPosts++; \
            return f.apply(this, arguments); }; return true");
    b.click("input[name='method'][value='pin']");
    pad(&b, wrong);
    assert_eq!(b.text("#pin-dots"), "●●●●（4桁）", "the PIN is masked");
    b.click("#start-button");
    assert_eq!(
        wait_result(&b, &["refused", "confirmed", "error"]),
        "refused"
    );
    let tries = b.text("#pin-tries");
    assert!(tries.contains("暗証番号が違います。残り 1 回"), "{tries}");
    assert!(b.shown("#last-try"), "the last-try consent is asked for");
    assert_eq!(b.js("return window.__checkPosts"), json!(1));

    // The right PIN typed on the keyboard into the pad, without the consent: not sent.
    b.tab_to("start-button", 40);
    b.js("document.querySelector(\".pad [data-digit='5']\").focus(); return true");
    b.type_text(right);
    assert_eq!(b.text("#pin-dots"), "●●●●（4桁）");
    b.click("#start-button");
    b.wait_until(
        "the page refusing to send the last try without consent",
        "const e = document.getElementById('form-error'); \
         return !e.hidden && e.textContent.includes('残りは1回') && e.textContent.includes('同意')",
    );
    assert_eq!(
        b.js("return window.__checkPosts"),
        json!(1),
        "nothing was sent"
    );
    assert_eq!(
        b.js("return document.activeElement.id"),
        json!("confirm-last-try"),
        "the consent box has the focus"
    );
    assert_eq!(b.text("#pin-dots"), "●●●●（4桁）", "the PIN waits");
    // Consent by the keyboard, then the check goes through.
    b.key(SPACE);
    assert_eq!(
        b.js("return document.getElementById('confirm-last-try').checked"),
        json!(true)
    );
    b.click("#start-button");
    assert_eq!(
        wait_result(&b, &["confirmed", "error", "captured"]),
        "confirmed",
        "{}",
        b.text("#result")
    );
    assert!(b.text("#result").contains("有効"));
    assert_eq!(b.js("return window.__checkPosts"), json!(2));
    assert!(!b.shown("#last-try"), "the consent is gone with the answer");
    let all = w.checks("all");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["method"], "pin");

    // No PIN in the daemon's log, right or wrong.
    let log = w.d.log_text();
    assert!(!has_standalone(&log, right), "the PIN was logged:\n{log}");
    assert!(
        !has_standalone(&log, wrong),
        "the wrong PIN was logged:\n{log}"
    );
}

#[test]
fn a_photo_less_card_is_offered_the_pin_only_and_checked_by_it() {
    let w = World::with_card(card("infant"));
    let (b, _) = signed_in(&w);
    b.tab_to("photo-less", 30);
    b.key(SPACE);
    assert_eq!(
        b.js(
            "const v = document.querySelector(\"input[name='method'][value='visual']\"); \
             const p = document.querySelector(\"input[name='method'][value='pin']\"); \
             return [document.getElementById('photo-less').checked, v.disabled, v.checked, p.checked, \
                     document.getElementById('pin-area').hidden]"
        ),
        json!([true, true, false, true, false]),
        "photo-less: 目視 disabled, 暗証番号 chosen, the pad shown"
    );
    // A click on 目視 does nothing.
    b.click("input[name='method'][value='visual']");
    assert_eq!(
        b.js("return document.querySelector(\"input[name='method'][value='pin']\").checked"),
        json!(true)
    );
    pad(&b, "1234");
    b.click("#start-button");
    assert_eq!(
        wait_result(
            &b,
            &["confirmed", "refused", "error", "captured", "invalid"]
        ),
        "confirmed",
        "{}",
        b.text("#result")
    );
    let all = w.checks("all");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["method"], "pin", "checked by PIN: {:?}", all[0]);
}

#[test]
fn the_history_lists_the_viewable_checks_newest_first_without_numbers() {
    use chrono::Datelike;
    let w = World::new();
    let (b, _) = signed_in(&w);
    b.wait_until(
        "an empty history",
        "return !document.getElementById('history-empty').hidden",
    );
    // A visit of the month before last, captured through the API: past R20's viewing
    // period (the end of last month), it is not listed.
    let old = w.capture_through_the_api(first_of_the_month_before_last());
    w.sim.faults().clear();
    w.wait_line("online");

    // One check from the page, then one through the token API.
    assert_eq!(
        visual_check(&b, &["confirmed", "captured", "error", "refused"]),
        "confirmed"
    );
    let page_id = b
        .js("return document.querySelector('#result .result-id').textContent.split(': ')[1]")
        .as_str()
        .unwrap()
        .to_string();
    let (code, api) = w.d.post(
        "/v1/checks",
        &json!({"method": "visual", "card_wait_secs": 10}),
    );
    assert_eq!(code, 200, "{api}");
    assert_eq!(api["status"], "confirmed", "{api}");
    let api_id = api["check_id"].as_str().unwrap().to_string();
    assert_eq!(w.checks("all").len(), 3);

    // The API's check arrives by the event stream; newest first; the old one is not there.
    b.wait_until(
        "both of today's checks in the history",
        "return document.querySelectorAll('#history-rows tr').length === 2",
    );
    assert_eq!(
        b.js(
            "return [...document.querySelectorAll('#history-rows tr')].map(r => r.dataset.checkId)"
        ),
        json!([api_id, page_id]),
        "newest first"
    );
    assert_eq!(b.text("#history-count"), "（2件）");
    let table = b.text("#history");
    let copay = api["copay_tenths"].as_u64().unwrap();
    for row in 1..=2 {
        let text = b.text(&format!("#history-rows tr:nth-child({row})"));
        assert!(text.contains("✓") && text.contains("有効"), "{text}");
        assert!(text.contains(&format!("{copay}割")), "{text}");
        let visit = today();
        assert!(
            text.contains(&format!(
                "{}年{}月{}日",
                visit.year(),
                visit.month(),
                visit.day()
            )),
            "{text}"
        );
    }
    // No numbers, no birth date.
    let check = &w
        .checks("all")
        .into_iter()
        .find(|c| c["id"] == json!(api_id))
        .unwrap();
    let numbers = &check["answer"]["numbers"];
    let insurer = numbers["insurer"].as_str().unwrap();
    let number = numbers["number"].as_str().unwrap();
    let birth: chrono::NaiveDate = check["answer"]["birth_date"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for secret in [
        insurer.to_string(),
        number.to_string(),
        birth.to_string(),
        format!("{}年{}月{}日", birth.year(), birth.month(), birth.day()),
    ] {
        assert!(
            !table.contains(&secret),
            "{secret} in the history:\n{table}"
        );
    }
    assert!(!table.contains(&old["check_id"].as_str().unwrap()[18..]));
    b.js("document.getElementById('history').scrollIntoView(); return true");
    b.shot("history");
}

#[test]
fn the_document_helper_refuses_an_old_hokensho_accepts_a_kakuninsho_and_records_it() {
    let w = World::new();
    let (b, _) = signed_in(&w);
    // An old 保険証 on a visit after the temporary measure's end: refused (R11).
    b.tab_to("doc-kind", 60);
    b.key(ARROW_DOWN); // 健康保険証（従来の保険証）
    assert_eq!(
        b.js("return document.getElementById('doc-kind').value"),
        json!("hokensho")
    );
    b.key(TAB);
    b.type_text("2027-03-31");
    b.key(TAB);
    b.type_text("2026-04-15");
    b.key(ENTER);
    b.wait_until(
        "the verdict on the old 保険証",
        "return document.getElementById('document-verdict').dataset.state !== 'none'",
    );
    let verdict = b.text("#document-verdict");
    assert_eq!(
        b.js("return document.getElementById('document-verdict').dataset.state"),
        json!("bad"),
        "{verdict}"
    );
    assert!(verdict.contains("受け付けられません"), "{verdict}");
    assert!(verdict.contains("2025年12月1日"), "{verdict}");
    assert!(
        verdict.contains("暫定措置は2026年3月31日で終了"),
        "{verdict}"
    );
    assert!(verdict.contains("✕"), "{verdict}");
    b.js("document.getElementById('documents').scrollIntoView(); return true");
    b.shot("document-refused");

    // A 資格確認書 before its expiry: accepted (R10).
    b.tab_to("doc-kind", 60);
    b.key(ARROW_UP); // 資格確認書
    b.clear_field("#doc-expires");
    b.click("#doc-expires");
    b.type_text("2027/7/31");
    b.key(ENTER);
    b.wait_until(
        "the verdict on the 資格確認書",
        "return document.getElementById('document-verdict').dataset.state === 'ok'",
    );
    let verdict = b.text("#document-verdict");
    assert!(verdict.contains("受け付けられます"), "{verdict}");
    assert!(
        verdict.contains("資格確認書は有効期限（2027年7月31日）内で有効です"),
        "{verdict}"
    );
    assert!(verdict.contains("2026年4月15日"), "{verdict}");
    // The helper decides; it records nothing.
    assert!(w.checks("all").is_empty());

    // Today's visit with a 資格確認書 valid for a year: recorded with its numbers, by
    // keyboard, and confirmed by them later (ops::record_document, as POST /v1/documents).
    use chrono::Datelike;
    let expires = today() + chrono::Duration::days(365);
    b.clear_field("#doc-expires");
    b.clear_field("#doc-visit");
    b.click("#doc-expires");
    b.type_text(&expires.to_string());
    b.key(ENTER);
    let today_ja = format!(
        "{}年{}月{}日",
        today().year(),
        today().month(),
        today().day()
    );
    b.wait_until(
        "the verdict on today's visit",
        &format!(
            "const v = document.getElementById('document-verdict'); \
             return v.dataset.state === 'ok' && v.textContent.includes('{today_ja}')"
        ),
    );
    assert!(
        b.shown("#document-record"),
        "an acceptable document can be recorded"
    );
    let key = scenario().insurance_of("valid-employee").unwrap();
    let insurer = key.insurer.wire().trim().to_string();
    b.tab_to("doc-insurer", 10);
    b.type_text(&insurer);
    b.key(TAB);
    b.type_text(key.symbol.as_deref().unwrap_or(""));
    b.key(TAB);
    b.type_text(&key.number);
    b.key(TAB);
    b.type_text(key.branch.as_deref().unwrap_or(""));
    b.key(TAB);
    b.type_text(&key.birthdate.to_string());
    b.key(ENTER);
    b.wait_until(
        "the page's confirmation of the recorded document",
        "const d = document.getElementById('document-recorded'); \
         return !d.hidden && d.textContent.includes('資格確認書で受け付けて記録しました')",
    );
    assert!(
        !b.shown("#document-record"),
        "recorded once: the form is gone"
    );
    let all = w.checks("all");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["document"], "kakuninsho", "{:?}", all[0]);
    assert_eq!(all[0]["visit_date"], json!(today()), "{:?}", all[0]);
    let id = all[0]["id"].as_str().unwrap().to_string();
    assert!(b.text("#document-recorded").contains(&id));
    // The pending list shows it by itself; 事後確認 by its numbers confirms it.
    b.wait_until(
        "the recorded document in the pending list",
        &format!(
            "return [...document.querySelectorAll('#pending-rows tr')].some(r => r.dataset.checkId === '{id}')"
        ),
    );
    let (code, report) = w.d.post("/v1/reconcile", &json!({"force": true}));
    assert_eq!(code, 200, "{report}");
    let (code, check) = w.d.get(&format!("/v1/checks/{id}"));
    assert_eq!(code, 200, "{check}");
    assert_eq!(check["resolution"]["basis"], "current", "{check}");
    assert_eq!(
        check["resolution"]["insurer_number"],
        json!(insurer),
        "{check}"
    );
    let log = w.d.log_text();
    assert!(!log.contains(&key.number), "the number was logged:\n{log}");
}

#[test]
fn each_result_state_reads_from_two_metres() {
    let mut w = World::new();
    let (b, _) = signed_in(&w);
    let states = [
        "confirmed",
        "invalid",
        "not_found",
        "captured",
        "error",
        "refused",
    ];
    for (card_name, want, label, icon, shot) in [
        ("valid-employee", "confirmed", "有効", "✓", "valid"),
        ("lost", "invalid", "資格（無効）", "✕", "invalid"),
        ("no-coverage", "not_found", "資格情報なし", "?", "not-found"),
    ] {
        if card_name != "valid-employee" {
            w.swap_card(card(card_name));
        }
        assert_eq!(visual_check(&b, &states), want, "{}", b.text("#result"));
        let head = b.text("#result .result-head");
        assert!(head.contains(label) && head.contains(icon), "{head}");
        if want == "not_found" {
            // Nothing found: the check asks for the 申立書 (R12, R14), and the page offers it.
            let id = b
                .js("return document.querySelector('#result .result-id').textContent.split(': ')[1]")
                .as_str()
                .unwrap()
                .to_string();
            b.wait_until(
                "the 申立書 form offered for 資格情報なし",
                &format!(
                    "const f = document.getElementById('declaration-form'); \
                     return !document.getElementById('declaration-panel').hidden && f.dataset.checkId === '{id}'"
                ),
            );
        } else {
            assert!(!b.shown("#declaration-panel"), "no 申立書 for {want}");
        }
        // Large type: the state's words at least twice the body's size.
        let size = b
            .js("return parseFloat(getComputedStyle(document.querySelector('#result .result-head')).fontSize)")
            .as_f64()
            .unwrap();
        assert!(size >= 36.0, "the state is {size}px");
        b.js("document.getElementById('result').scrollIntoView({block: 'center'}); return true");
        b.shot(shot);
    }
    // Each state its own colour.
    let colours: Vec<String> = ["confirmed", "invalid", "not_found", "captured"]
        .iter()
        .map(|s| {
            b.js(&format!(
                "const r = document.getElementById('result'); r.dataset.state = '{s}'; \
                 return getComputedStyle(r).backgroundColor"
            ))
            .as_str()
            .unwrap()
            .to_string()
        })
        .collect();
    let distinct: std::collections::HashSet<_> = colours.iter().collect();
    assert_eq!(distinct.len(), 4, "{colours:?}");
}
