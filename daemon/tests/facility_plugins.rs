//! The shipped facility plugins inside tsunagid (issue 11, item 5), through the real parts:
//! the six components built from `plugins/` for wasm32-wasip2, signed, installed in the
//! daemon's plugin directory, run by wasmtime in tsunagid; checks recorded through the API.
//! The check view carries the facility's output beside the raw check; a plugin replaced on
//! disk is picked up without a restart; a plugin that misbehaves costs nothing but itself.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/tsunagid.rs"]
mod tsunagid;

#[path = "support/plugins.rs"]
mod guests;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{scenario, today};

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tsunagi::plugin::sign::signature_path;
use tsunagi::plugin::SecretKey;
use tsunagid::Tsunagid;

/// The six facility plugins, named as their facility types.
fn six() -> [&'static str; 6] {
    tsunagi::domain::FacilityType::ALL.map(tsunagi::domain::FacilityType::as_str)
}

/// Copies `wasm` to `<dir>/<name>.wasm` with a signature by `key`.
fn install(dir: &Path, name: &str, wasm: &[u8], key: &SecretKey) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(signature_path(&path), key.sign(wasm).to_text()).unwrap();
    std::fs::write(&path, wasm).unwrap();
}

fn record_document(d: &Tsunagid, facility: &str, number: &str) -> String {
    let (code, doc) = d.post(
        "/v1/documents",
        &json!({
            "kind": "kakuninsho",
            "facility": facility,
            "visit_date": today(),
            "first_visit": true,
            "expires": today().checked_add_months(chrono::Months::new(6)).unwrap(),
            "insurer": "06139999", "symbol": "練馬12", "number": number, "branch": "01",
            "birth_date": "1980-04-01",
        }),
    );
    assert_eq!(code, 200, "{doc}");
    doc["check_id"].as_str().unwrap().to_string()
}

fn view(d: &Tsunagid, id: &str) -> Value {
    let (code, v) = d.get(&format!("/v1/checks/{id}"));
    assert_eq!(code, 200, "{v}");
    v
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v["facility_output"]["output"]["claim_fields"]
        .as_array()?
        .iter()
        .find(|f| f["key"] == key)?["value"]
        .as_str()
}

/// Waits (up to two minutes: six components compile on a cold cache in a debug build on a
/// shared machine) until the status satisfies `ok`.
fn wait_until(d: &Tsunagid, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, s) = d.get("/v1/status");
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never {what}: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn plugin_state(status: &Value, name: &str) -> Option<String> {
    status["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["state"].as_str().unwrap_or_default().to_string())
}

#[test]
fn the_facility_plugins_format_checks_in_tsunagid_and_are_replaced_live() {
    let key = SecretKey::generate();
    let dir = tempfile::tempdir().unwrap();
    let plugins = tsunagid::data_dir_of(dir.path()).join("plugins");
    for name in six() {
        let bytes = std::fs::read(guests::facility_plugin(name)).unwrap();
        install(&plugins, name, &bytes, &key);
    }
    let d = Tsunagid::start_in(
        dir,
        "http://127.0.0.1:9",
        &scenario().institution_code,
        &format!(
            "[plugins]\ntrusted_keys = [\"{}\"]\n[reconcile]\ninterval_secs = 3600\n",
            key.public()
        ),
    );
    let status = wait_until(&d, "six plugins loaded", |s| {
        six()
            .iter()
            .all(|n| plugin_state(s, n).as_deref() == Some("loaded"))
    });
    println!("plugins: {}", status["plugins"]);

    // A 医科 check: the receipt's fields beside the raw check.
    let medical = record_document(&d, "medical", "0004471");
    let v = view(&d, &medical);
    assert_eq!(v["facility_output"]["plugin"], "medical", "{v}");
    assert_eq!(field(&v, "insurer-number"), Some("06139999"), "{v}");
    assert_eq!(field(&v, "number"), Some("0004471"), "{v}");
    assert!(
        v["known_numbers"]["insurer"].is_string(),
        "the raw check stays: {v}"
    );
    // A 柔整 check: the 療養費 form, 初検, and no 枝番 field.
    let judo = record_document(&d, "judo", "0004472");
    let v = view(&d, &judo);
    assert_eq!(v["facility_output"]["plugin"], "judo", "{v}");
    assert!(field(&v, "first-treatment").is_some(), "{v}");
    assert!(field(&v, "branch").is_none(), "{v}");
    let text = v["facility_output"].to_string();
    assert!(!text.contains("R17"), "no rule ids for staff: {text}");
    // At its capture the 柔整 plugin added what must happen next; the daemon recorded it
    // with the check (beside it, after the capture: polled).
    let deadline = Instant::now() + Duration::from_secs(20);
    let noted = loop {
        let v = view(&d, &judo);
        if let Some(n) = v["plugin_notes"]
            .as_array()
            .and_then(|n| n.first())
            .cloned()
        {
            break n;
        }
        assert!(Instant::now() < deadline, "no plugin note recorded: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(noted["plugin"], "judo", "{noted}");
    assert_eq!(noted["moment"], "captured", "{noted}");
    assert!(
        !noted["warnings"].as_array().unwrap().is_empty() || noted["next_action"].is_object(),
        "{noted}"
    );
    println!("judo's note at capture: {noted}");

    // Replaced on disk by one that loops: picked up without a restart, stopped at the
    // deadline, disabled; the check is still served whole, with the reason.
    let endless = std::fs::read(guests::guest("endless")).unwrap();
    install(&plugins, "medical", &endless, &key);
    wait_until(&d, "the replacement loaded", |s| {
        s["plugins"].as_array().is_some_and(|ps| {
            ps.iter().any(|p| {
                p["name"] == "medical"
                    && p["state"] == "loaded"
                    && p["title"].as_str().is_some_and(|t| t.contains("endless"))
            })
        })
    });
    let started = Instant::now();
    let v = view(&d, &medical);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(v["facility_output"]["output"].is_null(), "{v}");
    let why = v["facility_output"]["error_ja"]
        .as_str()
        .unwrap_or_default();
    assert!(!why.is_empty(), "{v}");
    assert_eq!(v["id"], medical.as_str(), "the raw check is served: {v}");
    let status = wait_until(&d, "medical disabled", |s| {
        plugin_state(s, "medical").as_deref() == Some("disabled")
    });
    println!("after the loop: {}", status["plugins"]);
    // The other facilities' plugins go on serving.
    assert_eq!(view(&d, &judo)["facility_output"]["plugin"], "judo");

    // The real one back: served again, without a restart.
    let bytes = std::fs::read(guests::facility_plugin("medical")).unwrap();
    install(&plugins, "medical", &bytes, &key);
    wait_until(&d, "medical loaded again", |s| {
        plugin_state(s, "medical").as_deref() == Some("loaded")
    });
    let v = view(&d, &medical);
    assert_eq!(field(&v, "insurer-number"), Some("06139999"), "{v}");
}

/// One `tsunagi` run with no tsunagid: the command opens the store itself.
fn tsunagi_direct(config: &Path, sim: &oqs_sim::SimHandle, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args(args)
        .env("TSUNAGI_CONFIG", config)
        .env("TSUNAGI_OQS_URL", sim.base_url())
        .env("TSUNAGI_INSTITUTION_CODE", &scenario().institution_code)
        .env("TSUNAGI_OQS_TIMEOUT_MS", "1500")
        .env_remove("TSUNAGI_DATA_DIR")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Without tsunagid, `tsunagi check` and `tsunagi show` load the configured plugins
/// themselves (same directory, same trusted keys) and carry the same facility output: claim
/// fields, display lines, warnings and the next action. Real card over pcscd, real simulator,
/// real signed components.
#[test]
fn direct_mode_check_and_show_carry_the_facility_output() {
    use tsunagi_vcard::card::VirtualCard;
    use tsunagi_vcard::harness;
    use tsunagi_vcard::vpcd::AttachOptions;

    let key = SecretKey::generate();
    let dir = tempfile::tempdir().unwrap();
    let data = tsunagid::data_dir_of(dir.path());
    for name in ["medical", "judo"] {
        let bytes = std::fs::read(guests::facility_plugin(name)).unwrap();
        install(&data.join("plugins"), name, &bytes, &key);
    }
    let config = dir.path().join("tsunagi.toml");
    // tsunagid never started here: no token, so every command works on the store directly.
    std::fs::write(
        &config,
        tsunagid::config_text(
            &data,
            "http://127.0.0.1:9",
            &scenario().institution_code,
            std::net::SocketAddr::from(([127, 0, 0, 1], tsunagid::free_port())),
            &format!("[plugins]\ntrusted_keys = [\"{}\"]\n", key.public()),
        ),
    )
    .unwrap();

    let _pcscd = harness::pcscd().expect("pcscd harness");
    let sim = fixtures::runtime()
        .block_on(oqs_sim::Simulator::start(scenario().sim_config()))
        .expect("simulator");
    let profile = scenario().card("valid-employee").unwrap().clone();
    let card = harness::insert(
        VirtualCard::new(profile.clone()),
        0,
        AttachOptions::default(),
    )
    .expect("insert card");
    let reader = harness::reader_name(0);
    let check = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--method",
            "visual",
            "--reader",
            &reader,
            "--card-wait",
            "10",
        ];
        args.extend_from_slice(extra);
        tsunagi_direct(&config, &sim, &args)
    };

    // A confirmed 医科 check: the receipt's fields beside the report.
    let started = Instant::now();
    let (code, out, err) = check(&["--facility", "medical", "--json"]);
    println!(
        "direct check with plugins loaded (cold cache): {:?}",
        started.elapsed()
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let report = json_of(&out);
    let medical = report["check_id"].as_str().unwrap().to_string();
    assert_eq!(report["facility_output"]["plugin"], "medical", "{report}");
    assert_eq!(field(&report, "number"), Some("0004471"), "{report}");
    let insurer = report["qualification"]["insurer_number"].as_str().unwrap();
    assert_eq!(
        field(&report, "insurer-number"),
        Some(insurer.trim()),
        "{report}"
    );
    // `show` gives what `check` gave.
    let started = Instant::now();
    let (code, out, err) = tsunagi_direct(&config, &sim, &["show", &medical, "--json"]);
    println!("direct show (warm cache): {:?}", started.elapsed());
    assert_eq!(code, 0, "{out}\n{err}");
    let shown = json_of(&out);
    assert_eq!(
        shown["facility_output"], report["facility_output"],
        "{shown}"
    );
    let (code, text, err) = tsunagi_direct(&config, &sim, &["show", &medical]);
    assert_eq!(code, 0, "{text}\n{err}");
    assert!(text.contains("【medical】"), "{text}");
    assert!(
        text.contains(&format!("保険者番号: {}", insurer.trim())),
        "{text}"
    );

    // A 柔整 first treatment captured while the qualification system is down: the plugin's
    // warning and next action, in the check's text and again in `show`.
    drop(card);
    let _card = harness::insert(VirtualCard::new(profile), 0, AttachOptions::default())
        .expect("insert card again");
    sim.faults().set_mode(oqs_sim::FaultMode::Refuse);
    let next_visit = (today() + chrono::Days::new(7)).to_string();
    let (code, text, err) = check(&[
        "--facility",
        "judo",
        "--first-visit",
        "--next-visit",
        &next_visit,
    ]);
    assert_eq!(code, 3, "captured: {text}\n{err}");
    println!("{text}");
    for wanted in [
        "【judo】",
        "初検: 該当",
        "初検のため、資格を後で必ず確認してください",
        "次の対応: ",
    ] {
        assert!(text.contains(wanted), "{wanted}: {text}");
    }
    let judo = text
        .split("確認ID: ")
        .nth(1)
        .and_then(|t| t.split('）').next())
        .unwrap_or_else(|| panic!("no check id: {text}"))
        .to_string();
    let (code, shown, err) = tsunagi_direct(&config, &sim, &["show", &judo, "--json"]);
    assert_eq!(code, 0, "{shown}\n{err}");
    let shown = json_of(&shown);
    let output = &shown["facility_output"]["output"];
    assert_eq!(
        output["next_action"]["code"], "confirm-at-next-visit",
        "{shown}"
    );
    assert!(
        output["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "confirm-at-next-visit"),
        "{shown}"
    );
    assert!(!output["display"].as_array().unwrap().is_empty(), "{shown}");
}
