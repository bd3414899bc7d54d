//! The plugin host against real `wasm32-wasip2` components: one well-behaved formatter and
//! hostile ones that must be refused at load or stopped at call, after which the host still
//! serves the good one. The guests are built from `tests/hostile-plugins` by
//! `support/plugins.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/plugins.rs"]
mod guests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tsunagi::plugin::{
    api, sign, CallError, CallLimits, Capability, HostSettings, LoadError, PluginHost, PluginState,
    SecretKey,
};

/// A fresh plugin directory, cache and signing key per test.
struct Fixture {
    dir: tempfile::TempDir,
    key: SecretKey,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            key: SecretKey::generate(),
        }
    }

    fn plugins(&self) -> PathBuf {
        let p = self.dir.path().join("plugins");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("plugin-cache")
    }

    fn settings(&self) -> HostSettings {
        HostSettings {
            cache_dir: self.cache(),
            trusted_keys: vec![self.key.public()],
            limits: CallLimits::default(),
            grants: BTreeMap::new(),
        }
    }

    fn host(&self) -> PluginHost {
        PluginHost::new(self.settings()).unwrap()
    }

    /// Puts guest `crate_name` into the plugin directory as `<name>.wasm`, signed by the
    /// fixture's key.
    fn install_as(&self, crate_name: &str, name: &str) -> PathBuf {
        let bytes = guests::guest_bytes(crate_name);
        let path = self.plugins().join(format!("{name}.wasm"));
        std::fs::write(&path, &bytes).unwrap();
        std::fs::write(sign::signature_path(&path), self.key.sign(&bytes).to_text()).unwrap();
        path
    }

    fn install(&self, crate_name: &str) -> PathBuf {
        self.install_as(crate_name, crate_name)
    }
}

fn check() -> api::Check {
    api::Check {
        id: "01JDTEST0000000000000000AB".into(),
        facility: api::Facility::Medical,
        visit_date: "2026-12-01".into(),
        first_visit: false,
        next_visit: None,
        identity: api::Identity::Visual,
        document: None,
        captured_offline: true,
        answer: None,
        qualification: None,
        known_numbers: None,
        copay_tenths: Some(3),
        claim: None,
        declaration: None,
        due: Some("2026-12-31".into()),
        overdue: false,
    }
}

fn assert_good_serves(host: &PluginHost) {
    let out = host.format("good", &check()).expect("good plugin formats");
    assert_eq!(
        out.display,
        vec!["確認 01JDTEST0000000000000000AB".to_string()]
    );
    assert_eq!(out.read_aloud, "2026-12-01 の確認です");
}

fn refusal(host: &PluginHost, name: &str) -> String {
    match host.status(name).expect("status").state {
        PluginState::Refused { reason } => reason,
        other => panic!("{name} should be refused, is {other:?}"),
    }
}

fn load_err(host: &PluginHost, path: &Path) -> LoadError {
    host.load(path).expect_err("load must be refused")
}

#[test]
fn good_plugin_loads_formats_and_its_compilation_is_cached() {
    let f = Fixture::new();
    f.install("good");
    let host = f.host();
    let statuses = host.load_dir(&f.plugins());
    assert_eq!(statuses.len(), 1);
    let s = &statuses[0];
    assert_eq!(s.state, PluginState::Loaded, "{s:?}");
    assert_eq!(s.api_version.as_deref(), Some("1.0.0"));
    assert_eq!(s.title.as_deref(), Some("good 1.0.0"));
    assert_eq!(s.facilities, vec!["medical".to_string()]);
    assert_eq!(s.signer, Some(f.key.public().to_string()));
    assert!(!s.from_cache);
    assert_eq!(host.cache_stats().misses, 1);
    assert_eq!(
        host.plugin_for(api::Facility::Medical).as_deref(),
        Some("good")
    );
    assert_eq!(host.plugin_for(api::Facility::Dental), None);
    assert_good_serves(&host);
    let addition = host
        .on_moment("good", api::Moment::Captured, &check())
        .unwrap();
    assert!(addition.warnings.is_empty());

    // The artifact is on disk; a second host (a daemon restart) takes it from there.
    let artifact = host.cache_path_of(&guests::guest_bytes("good"));
    assert!(artifact.exists(), "{}", artifact.display());
    drop(host);
    let again = f.host();
    let s = again.load(&f.plugins().join("good.wasm")).unwrap();
    assert!(s.from_cache);
    assert_eq!(again.cache_stats().hits, 1);
    assert_eq!(again.cache_stats().misses, 0);
    assert_good_serves(&again);
}

#[test]
fn a_replaced_file_is_reloaded_and_a_tampered_replacement_leaves_the_old_serving() {
    let f = Fixture::new();
    let path = f.install("good");
    let host = f.host();
    host.load_dir(&f.plugins());
    assert!(
        host.reload_changed(&f.plugins()).is_empty(),
        "nothing changed yet"
    );

    // A tampered replacement: refused, and the old version keeps serving.
    let mut bytes = guests::guest_bytes("good");
    bytes.extend_from_slice(b"\0\x05extra"); // a trailing custom-section-shaped tail
    std::fs::write(&path, &bytes).unwrap();
    let touched = host.reload_changed(&f.plugins());
    assert_eq!(touched.len(), 1);
    assert_eq!(touched[0].state, PluginState::Loaded);
    assert_good_serves(&host);

    // A properly signed replacement (another guest under the same name) is swapped in.
    f.install_as("panics", "good");
    let touched = host.reload_changed(&f.plugins());
    assert_eq!(touched[0].title.as_deref(), Some("panics 1.0.0"));
    assert!(matches!(
        host.format("good", &check()),
        Err(CallError::Trapped { .. })
    ));

    // Putting the good one back re-enables the name: a new file is a new plugin.
    f.install("good");
    host.reload_changed(&f.plugins());
    assert_good_serves(&host);

    // A removed file is forgotten.
    std::fs::remove_file(&path).unwrap();
    host.reload_changed(&f.plugins());
    assert!(host.status("good").is_none());
}

#[test]
fn imports_not_granted_are_refused_at_load_naming_the_import() {
    let f = Fixture::new();
    f.install("good");
    let fs = f.install("uses-fs");
    let net = f.install("uses-net");
    let host = f.host();
    host.load_dir(&f.plugins());
    let reason = refusal(&host, "uses-fs");
    assert!(
        reason.contains("プラグイン uses-fs は許可されていない機能 wasi:filesystem/"),
        "{reason}"
    );
    assert!(matches!(
        load_err(&host, &fs),
        LoadError::NotGranted {
            capability: Capability::Filesystem,
            ..
        }
    ));
    let reason = refusal(&host, "uses-net");
    assert!(reason.contains("許可されていない機能 wasi:"), "{reason}");
    assert_good_serves(&host);

    // With the file system and clocks granted, what is left of uses-net is the network.
    let mut settings = f.settings();
    settings.grants.insert(
        "uses-net".into(),
        BTreeSet::from([Capability::Filesystem, Capability::Clocks]),
    );
    settings.grants.insert(
        "uses-fs".into(),
        BTreeSet::from([Capability::Filesystem, Capability::Clocks]),
    );
    let granted = PluginHost::new(settings).unwrap();
    let e = load_err(&granted, &net);
    assert!(
        matches!(&e, LoadError::NotGranted { capability: Capability::Sockets, import, .. } if import.starts_with("wasi:sockets/")),
        "{e:?}"
    );
    assert!(e.message_ja("uses-net").contains("wasi:sockets/"));

    // Granted the file system, uses-fs loads but still sees no file: nothing is preopened.
    granted.load(&fs).unwrap();
    let out = granted.format("uses-fs", &check()).unwrap();
    assert_eq!(out.display.len(), 1, "{:?}", out.display);
}

/// A component built against a compatible 1.1.0 contract (a new type and a new export the
/// host does not know) loads and formats like a 1.0 one.
#[test]
fn a_compatible_minor_api_version_loads_and_formats() {
    let f = Fixture::new();
    f.install_as("v1-1", "good");
    let host = f.host();
    let statuses = host.load_dir(&f.plugins());
    assert_eq!(statuses.len(), 1);
    let s = &statuses[0];
    assert_eq!(s.state, PluginState::Loaded, "{s:?}");
    assert_eq!(s.api_version.as_deref(), Some("1.1.0"));
    assert_eq!(s.title.as_deref(), Some("v1-1 1.0.0"));
    assert_good_serves(&host);
    let addition = host
        .on_moment("good", api::Moment::Resolved, &check())
        .unwrap();
    assert!(addition.warnings.is_empty());
}

#[test]
fn another_major_api_version_is_refused_naming_both_versions() {
    let f = Fixture::new();
    let v2 = f.install("v2");
    let host = f.host();
    let e = load_err(&host, &v2);
    assert!(matches!(e, LoadError::UnsupportedApi { found, supported: 1 } if found.major == 2));
    let reason = refusal(&host, "v2");
    assert!(
        reason.contains("2.0.0") && reason.contains("1.x"),
        "{reason}"
    );
}

#[test]
fn unsigned_wrongly_signed_untrusted_and_tampered_plugins_are_refused() {
    let f = Fixture::new();
    f.install("good");
    let host = f.host();

    // Unsigned.
    let unsigned = f.plugins().join("unsigned.wasm");
    std::fs::copy(guests::guest("good"), &unsigned).unwrap();
    assert!(matches!(
        load_err(&host, &unsigned),
        LoadError::Signature(sign::VerifyError::Missing { .. })
    ));
    assert!(refusal(&host, "unsigned").contains("署名ファイル"));

    // Signed, but the signature is of another file.
    let wrong = f.plugins().join("wrong.wasm");
    std::fs::copy(guests::guest("endless"), &wrong).unwrap();
    std::fs::write(
        sign::signature_path(&wrong),
        f.key.sign(&guests::guest_bytes("good")).to_text(),
    )
    .unwrap();
    assert!(matches!(
        load_err(&host, &wrong),
        LoadError::Signature(sign::VerifyError::Mismatch { .. })
    ));

    // Signed by a key nobody trusts.
    let stranger = SecretKey::generate();
    let untrusted = f.plugins().join("untrusted.wasm");
    let bytes = guests::guest_bytes("good");
    std::fs::write(&untrusted, &bytes).unwrap();
    std::fs::write(
        sign::signature_path(&untrusted),
        stranger.sign(&bytes).to_text(),
    )
    .unwrap();
    assert!(matches!(
        load_err(&host, &untrusted),
        LoadError::Signature(sign::VerifyError::Untrusted { .. })
    ));
    assert!(refusal(&host, "untrusted").contains("信頼する鍵の一覧にない鍵"));

    // Changed by one byte after signing.
    let tampered = f.install_as("good", "tampered");
    let mut bytes = std::fs::read(&tampered).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&tampered, &bytes).unwrap();
    assert!(matches!(
        load_err(&host, &tampered),
        LoadError::Signature(sign::VerifyError::Mismatch { .. })
    ));
    assert!(refusal(&host, "tampered").contains("書き換えられた"));

    host.load(&f.plugins().join("good.wasm")).unwrap();
    assert_good_serves(&host);
}

/// Loads `good` and `crate_name`, calls the hostile one, and checks that it was stopped with
/// the expected error, is disabled with a Japanese reason, and that `good` still serves.
fn stopped_at_call(crate_name: &str, expected: fn(&CallError) -> bool, reason_has: &str) {
    let f = Fixture::new();
    f.install("good");
    f.install(crate_name);
    let host = f.host();
    for s in host.load_dir(&f.plugins()) {
        assert_eq!(s.state, PluginState::Loaded, "{s:?}");
    }
    let e = host
        .format(crate_name, &check())
        .expect_err("must be stopped");
    assert!(expected(&e), "{e:?}");
    assert!(e.message_ja().contains(reason_has), "{}", e.message_ja());
    match host.status(crate_name).unwrap().state {
        PluginState::Disabled { reason } => assert!(reason.contains(reason_has), "{reason}"),
        other => panic!("{crate_name} should be disabled, is {other:?}"),
    }
    assert!(matches!(
        host.format(crate_name, &check()),
        Err(CallError::Disabled { .. })
    ));
    assert_good_serves(&host);
}

#[test]
fn an_endless_loop_is_stopped_at_the_deadline() {
    stopped_at_call(
        "endless",
        |e| matches!(e, CallError::TimedOut { .. }),
        "制限時間",
    );
}

#[test]
fn a_memory_bomb_is_stopped_at_the_memory_limit() {
    stopped_at_call(
        "memory-bomb",
        |e| matches!(e, CallError::OutOfMemory { .. }),
        "メモリの上限",
    );
}

#[test]
fn huge_output_is_refused() {
    stopped_at_call(
        "huge-output",
        |e| matches!(e, CallError::OutputTooLarge { size, .. } if *size > 1 << 20),
        "上限",
    );
}

#[test]
fn a_panic_is_a_trap_that_disables_the_plugin() {
    stopped_at_call(
        "panics",
        |e| matches!(e, CallError::Trapped { .. }),
        "異常終了",
    );
}

#[test]
fn the_endless_call_returns_within_a_small_multiple_of_its_deadline() {
    let f = Fixture::new();
    f.install("endless");
    let mut settings = f.settings();
    settings.limits.timeout = Duration::from_millis(100);
    let host = PluginHost::new(settings).unwrap();
    host.load_dir(&f.plugins());
    let started = Instant::now();
    let e = host.format("endless", &check()).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, CallError::TimedOut { .. }), "{e:?}");
    // A bound on a runaway, not a measurement: 100 ms deadline, 10 ms ticks.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

fn tsunagi(config: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_cli_makes_keys_signs_verifies_installs_and_lists() {
    let f = Fixture::new();
    let d = f.dir.path();
    let key = d.join("signing.key");
    let (code, text) = tsunagi(
        &d.join("none.toml"),
        &["plugin", "keygen", "--out", key.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{text}");
    let public = text
        .lines()
        .find(|l| l.starts_with(sign::PUBLIC_KEY_PREFIX))
        .expect("public key printed")
        .to_string();
    let (code, text) = tsunagi(
        &d.join("none.toml"),
        &["plugin", "keygen", "--out", key.to_str().unwrap()],
    );
    assert_eq!(code, 2, "never overwrites a key: {text}");

    let wasm = d.join("good.wasm");
    std::fs::copy(guests::guest("good"), &wasm).unwrap();
    let (code, text) = tsunagi(
        &d.join("none.toml"),
        &[
            "plugin",
            "sign",
            "--key",
            key.to_str().unwrap(),
            wasm.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{text}");
    let (code, text) = tsunagi(
        &d.join("none.toml"),
        &[
            "plugin",
            "verify",
            "--trusted",
            &public,
            wasm.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{text}");
    let other = SecretKey::generate().public().to_string();
    let (code, text) = tsunagi(
        &d.join("none.toml"),
        &[
            "plugin",
            "verify",
            "--trusted",
            &other,
            wasm.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("信頼する鍵の一覧にない鍵"), "{text}");

    let data = d.join("data");
    let config = d.join("tsunagi.toml");
    std::fs::write(
        &config,
        format!(
            "institution_code = \"1319900017\"\ndata_dir = {:?}\n[plugins]\ntrusted_keys = [{:?}]\n",
            data.to_str().unwrap(),
            public
        ),
    )
    .unwrap();
    let (code, text) = tsunagi(&config, &["plugin", "install", wasm.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(data.join("plugins/good.wasm").exists());
    assert!(data.join("plugins/good.wasm.sig").exists());

    let v2 = d.join("v2.wasm");
    std::fs::copy(guests::guest("v2"), &v2).unwrap();
    tsunagi(
        &config,
        &[
            "plugin",
            "sign",
            "--key",
            key.to_str().unwrap(),
            v2.to_str().unwrap(),
        ],
    );
    let (code, text) = tsunagi(&config, &["plugin", "install", v2.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("2.0.0"), "{text}");
    assert!(!data.join("plugins/v2.wasm").exists());

    let (code, text) = tsunagi(&config, &["plugin", "list"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("good: 読み込み済み"), "{text}");
    assert!(text.contains("API 1.0.0"), "{text}");
}
