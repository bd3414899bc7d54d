//! Read-aloud (R21, issue 14) through the real parts: a live `tsunagid` with Open JTalk from
//! Debian and the voice `scripts/setup-system.sh` installs, the simulator, and the virtual card
//! on the machine's pcscd. The sound is measured with `sox`, as a person would judge it: long
//! enough for the words, not silence, in the range of a voice.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/tsunagid.rs"]
mod tsunagid;

#[path = "support/page.rs"]
mod page;

#[path = "support/fixtures.rs"]
mod fixtures;

#[path = "support/counter.rs"]
mod counter;

#[path = "support/browser.rs"]
mod browser;
use browser::Browser;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use counter::{card, World};
use page::{page_check, page_request, session_cookie};
use tsunagid::Reply;

/// A world with the scenario's valid card and `extra` configuration.
fn world(extra: &str) -> World {
    World::configured(card("valid-employee"), extra)
}

fn read_aloud_status(w: &World, cookie: &str) -> Value {
    let r = page_request(&w.d, "GET", "/page/api/status", Some(cookie), None, None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["read_aloud"].clone()
}

/// The page in a browser, signed in with a one-time code, after one visual check from it.
fn page_after_a_check(w: &World) -> Browser {
    let (code, answer) = w.d.post("/v1/page/codes", &json!({}));
    assert_eq!(code, 200, "{answer}");
    let b = Browser::start();
    b.goto(answer["url"].as_str().unwrap());
    b.wait_until(
        "the reception page",
        "return location.pathname === '/page/' && document.getElementById('check-form') !== null",
    );
    b.click("#start-button");
    b.wait_until(
        "a valid result",
        "return document.getElementById('result').dataset.state === 'confirmed'",
    );
    b
}

fn speech(w: &World, cookie: &str, id: &str) -> Reply {
    page_request(
        &w.d,
        "GET",
        &format!("/page/api/speech/{id}"),
        Some(cookie),
        None,
        None,
    )
}

/// What `sox` measures of a sound file.
#[derive(Debug)]
struct Measured {
    seconds: f64,
    rms: f64,
    rough_hz: f64,
    rate: u32,
}

fn sox(file: &Path) -> Measured {
    let out = Command::new("sox")
        .arg(file)
        .args(["-n", "stat"])
        .output()
        .expect("sox (scripts/setup-system.sh installs it)");
    // `stat` reports on stderr.
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "sox stat failed:\n{text}");
    let field = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in sox's stat:\n{text}"))
    };
    let info = Command::new("soxi")
        .arg("-r")
        .arg(file)
        .output()
        .expect("soxi");
    let rate = String::from_utf8_lossy(&info.stdout)
        .trim()
        .parse()
        .unwrap();
    Measured {
        seconds: field("Length (seconds)"),
        rms: field("RMS     amplitude"),
        rough_hz: field("Rough   frequency"),
        rate,
    }
}

/// Characters a voice says: everything but punctuation and spaces.
fn spoken_chars(text: &str) -> usize {
    text.chars()
        .filter(|c| !c.is_whitespace() && !"。、，．！？　".contains(*c))
        .count()
}

#[test]
fn a_result_is_spoken_as_japanese_speech_of_plausible_length_and_served_as_wav() {
    let w = world("");
    let cookie = session_cookie(&w.d);
    let status = read_aloud_status(&w, &cookie);
    assert_eq!(status["available"], true, "{status}");
    assert_eq!(status["synthesised"], 0, "{status}");

    let r = page_check(&w.d, &cookie, json!({"method": "visual"}));
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(report["status"], "confirmed", "{report}");
    let copay = report["copay_tenths"].as_u64().expect("a co-payment");
    let kana = report["qualification"]["kana"]
        .as_str()
        .expect("the answer's kana")
        .to_string();
    let name = report["qualification"]["name"]
        .as_str()
        .expect("the answer's name")
        .to_string();
    let id = report["speech_id"]
        .as_str()
        .expect("a speech id")
        .to_string();

    let sound = speech(&w, &cookie, &id);
    assert_eq!(sound.status, 200, "{}", sound.text());
    assert_eq!(sound.header("content-type").as_deref(), Some("audio/wav"));
    assert_eq!(sound.header("cache-control").as_deref(), Some("no-store"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("result.wav");
    std::fs::write(&file, &sound.body).unwrap();
    let m = sox(&file);

    // What was said: the name from its kana, the answer, the co-payment.
    let said = format!("{kana}さん。資格は有効です。負担割合は{copay}割です。");
    let chars = spoken_chars(&said) as f64;
    let per_char = m.seconds / chars;
    // Japanese at a calm pace is about 6–8 morae a second; a kanji is one to three. Open
    // JTalk's Mei says this sentence at about 0.2 s a character.
    assert!(
        (0.08..0.5).contains(&per_char),
        "{m:?}: {per_char:.3} s per character of {said:?}"
    );
    // A voice, not silence and not noise: loud enough, and sox's rough frequency in the
    // range of speech (silence measures over 10 kHz, white noise about 12 kHz).
    assert!(m.rms > 0.02, "{m:?}");
    assert!((150.0..5000.0).contains(&m.rough_hz), "{m:?}");
    assert_eq!(m.rate, 48_000, "the Mei voice's rate: {m:?}");

    // Three sentences, each made once.
    assert_eq!(read_aloud_status(&w, &cookie)["synthesised"], 3);
    let again = speech(&w, &cookie, &id);
    assert_eq!(again.status, 200);
    assert_eq!(again.body, sound.body, "the same words, the same sound");
    // The same patient again: a new result, every sentence from the cache.
    let second = page_check(&w.d, &cookie, json!({"method": "visual"})).json();
    assert_eq!(second["status"], "confirmed", "{second}");
    let second_id = second["speech_id"].as_str().unwrap();
    assert_ne!(second_id, id);
    assert_eq!(speech(&w, &cookie, second_id).body, sound.body);
    assert_eq!(read_aloud_status(&w, &cookie)["synthesised"], 3);

    // Only the page's own results, only with a session.
    let unknown = speech(&w, &cookie, &"0".repeat(32));
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["detail"]
        .as_str()
        .unwrap()
        .contains("読み上げる結果"));
    let signed_out = page_request(
        &w.d,
        "GET",
        &format!("/page/api/speech/{id}"),
        None,
        None,
        None,
    );
    assert_eq!(signed_out.status, 401);

    // The name was spoken, never written down.
    let log = w.d.log_text();
    for personal in [kana.as_str(), name.as_str()] {
        assert!(!log.contains(personal), "{personal:?} in the log:\n{log}");
    }
}

#[test]
fn without_open_jtalk_the_page_says_so_and_checks_still_work() {
    let w = world("[read_aloud]\nengine = \"/nonexistent/open_jtalk\"\n");
    let cookie = session_cookie(&w.d);
    let status = read_aloud_status(&w, &cookie);
    assert_eq!(status["available"], false, "{status}");
    let problem = status["problem_ja"].as_str().expect("why, in Japanese");
    assert!(problem.contains("Open JTalk"), "{problem}");
    assert!(problem.contains("/nonexistent/open_jtalk"), "{problem}");

    let report = page_check(&w.d, &cookie, json!({"method": "visual"})).json();
    assert_eq!(report["status"], "confirmed", "{report}");
    let sound = speech(&w, &cookie, report["speech_id"].as_str().unwrap());
    assert_eq!(sound.status, 503, "{}", sound.text());
    let detail = sound.json()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("読み上げは使えません"), "{detail}");
    // The check itself is recorded as any other.
    let (code, list) = w.d.get("/v1/checks?state=all");
    assert_eq!(code, 200);
    assert_eq!(list["checks"].as_array().unwrap().len(), 1, "{list}");
}

/// The page's button plays the daemon's sound; configured to, the page speaks by itself.
#[test]
fn the_page_reads_a_result_aloud_on_request_and_by_itself_when_configured() {
    for auto in [false, true] {
        let w = world(&format!("[read_aloud]\nauto = {auto}\n"));
        let b = page_after_a_check(&w);
        b.wait_until(
            "the read-aloud button",
            "const s = document.getElementById('speak-button'); return !s.hidden && !s.disabled",
        );
        if !auto {
            // Nothing is spoken until asked.
            assert_eq!(
                b.js("return document.getElementById('speech-audio').dataset.state || ''"),
                json!("")
            );
            b.click("#speak-button");
        }
        // The browser loaded a sound of some seconds from the daemon (playing it needs no
        // speaker: the element's duration is the file's).
        b.wait_until(
            "the sound loaded",
            "const a = document.getElementById('speech-audio'); return a.readyState >= 1 && a.duration > 1.5",
        );
        let src = b.js("return document.getElementById('speech-audio').currentSrc");
        assert!(src.as_str().unwrap().contains("/page/api/speech/"), "{src}");
        assert!(
            b.js("return document.getElementById('speech-problem').hidden") == json!(true),
            "{}",
            b.text("#speech-problem")
        );
    }
}

#[test]
fn without_open_jtalk_the_page_shows_why_and_the_result_stands() {
    let w = world("[read_aloud]\nvoice = \"/nonexistent/mei.htsvoice\"\n");
    let b = page_after_a_check(&w);
    b.wait_until(
        "the reason read-aloud cannot be used",
        "const p = document.getElementById('speech-problem'); \
         return !p.hidden && p.textContent.includes('読み上げは使えません')",
    );
    assert_eq!(
        b.js("return document.getElementById('speak-button').disabled"),
        json!(true)
    );
    assert!(b.text("#result").contains("有効"));
}

/// An engine that fails (here one that prints what it read and exits 1): the page says the
/// sound could not be made, the result stands, and nothing the engine printed reaches the
/// daemon's log (its warnings may quote the words, and the first is a patient's name).
#[test]
fn a_failing_engine_is_said_on_the_page_and_what_it_printed_is_not_logged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let engine = dir.path().join("open_jtalk");
    std::fs::write(
        &engine,
        "#!/bin/sh\nread words\necho \"warning: $words ENGINE-SAID\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&engine, std::fs::Permissions::from_mode(0o755)).unwrap();
    let w = world(&format!(
        "[read_aloud]\nengine = {:?}\n",
        engine.display().to_string()
    ));
    let b = page_after_a_check(&w);
    b.click("#speak-button");
    b.wait_until(
        "the failure said on the page",
        "const p = document.getElementById('speech-problem'); \
         return !p.hidden && p.textContent.includes('作れませんでした')",
    );
    assert!(b.text("#result").contains("有効"));
    let log = w.d.log_text();
    assert!(log.contains("open_jtalk failed"), "{log}");
    assert!(!log.contains("ENGINE-SAID"), "{log}");
}
