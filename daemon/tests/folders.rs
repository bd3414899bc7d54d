//! The folder interface driven as a receipt computer drives the ministry's terminal: request
//! files built elsewhere and renamed into `req`, results waited for in `res` and `face`, parsed
//! with an XML parser (roxmltree, not the writer's crate) and compared field by field with the
//! simulator's own people. Real parts: tsunagid as a process, the simulator over HTTP, the
//! store on disk, and for face files pcscd with the virtual card.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/tsunagid.rs"]
mod tsunagid;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{runtime, scenario, today};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oqs_sim::{FaultMode, SimHandle, Simulator};
use serde_json::Value;
use tsunagid::Tsunagid;

const WAIT: Duration = Duration::from_secs(30);

fn institution() -> &'static str {
    &scenario().institution_code
}

fn sim() -> SimHandle {
    runtime()
        .block_on(Simulator::start(scenario().sim_config()))
        .expect("simulator")
}

/// A tsunagid with the folder interface on `root`.
fn daemon_on(sim_url: &str, root: &Path, encoding: &str) -> Tsunagid {
    Tsunagid::start(sim_url, institution(), &folders_toml(root, encoding))
}

fn folders_toml(root: &Path, encoding: &str) -> String {
    format!(
        "[folders]\nroot = \"{}\"\nencoding = \"{encoding}\"\npoll_ms = 50\nuncollected_secs = 1\n[reconcile]\ninterval_secs = 3600\n",
        root.display()
    )
}

/// The fields of a request, in the reference's order.
struct Req<'a> {
    insurer: String,
    symbol: Option<&'a str>,
    number: &'a str,
    branch: Option<&'a str>,
    birth: String,
    file_id: &'a str,
}

fn request_xml(r: &Req<'_>, encoding: &str) -> String {
    let mut search = format!("    <InsurerNumber>{}</InsurerNumber>\n", r.insurer);
    if let Some(s) = r.symbol {
        search.push_str(&format!("    <InsuredCardSymbol>{s}</InsuredCardSymbol>\n"));
    }
    search.push_str(&format!(
        "    <InsuredIdentificationNumber>{}</InsuredIdentificationNumber>\n",
        r.number
    ));
    if let Some(b) = r.branch {
        search.push_str(&format!(
            "    <InsuredBranchNumber>{b}</InsuredBranchNumber>\n"
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"{encoding}\" standalone=\"no\"?>\n<XmlMsg>\n  <MessageHeader>\n    <QualificationConfirmationDate>{}</QualificationConfirmationDate>\n    <MedicalInstitutionCode>{}</MedicalInstitutionCode>\n    <ArbitraryFileIdentifier>{}</ArbitraryFileIdentifier>\n  </MessageHeader>\n  <MessageBody>\n  <QualificationConfirmSearchInfo>\n{search}    <Birthdate>{}</Birthdate>\n    <LimitApplicationCertificateRelatedConsFlg>0</LimitApplicationCertificateRelatedConsFlg>\n  </QualificationConfirmSearchInfo>\n  </MessageBody>\n</XmlMsg>\n",
        today().format("%Y%m%d"),
        institution(),
        r.file_id,
        r.birth
    )
}

/// The request of a scenario patient, as their card reads.
fn request_of(
    name: &str,
    file_id: &'static str,
) -> (Req<'static>, &'static oqs_sim::model::Person) {
    let s = scenario();
    let key = Box::leak(Box::new(s.insurance_of(name).expect("insured patient")));
    let person = s.person(name).expect("person");
    (
        Req {
            insurer: key.insurer.wire(),
            symbol: key.symbol.as_deref(),
            number: &key.number,
            branch: key.branch.as_deref(),
            birth: key.birthdate.format("%Y%m%d").to_string(),
            file_id,
        },
        person,
    )
}

fn shift_jis(text: &str) -> Vec<u8> {
    encoding_rs::SHIFT_JIS.encode(text).0.into_owned()
}

/// Writes the request whole beside `req` and renames it in, as a receipt computer does.
fn drop_request(root: &Path, id: &str, bytes: &[u8]) {
    wait_for("tsunagid to make req", WAIT, || root.join("req").is_dir());
    let staging = root.join(format!("staging-{id}"));
    std::fs::write(&staging, bytes).unwrap();
    std::fs::rename(&staging, req_path(root, id)).unwrap();
}

fn req_path(root: &Path, id: &str) -> PathBuf {
    root.join("req").join(format!("OQSsiquc01req_{id}.xml"))
}

fn res_path(root: &Path, id: &str) -> PathBuf {
    root.join("res").join(format!("OQSsiquc01res_{id}.xml"))
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_file(path: &Path, limit: Duration) -> Vec<u8> {
    wait_for(&path.display().to_string(), limit, || path.exists());
    std::fs::read(path).unwrap()
}

/// A result file read as a receipt computer reads it: decoded by its declaration, parsed,
/// flattened to `path → text` (paths below `XmlMsg`, repeated items numbered).
struct Parsed {
    encoding: String,
    fields: BTreeMap<String, String>,
}

impl Parsed {
    fn of(bytes: &[u8]) -> Self {
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
        let encoding = head
            .split("encoding=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("an XML declaration with its encoding")
            .to_string();
        let text = match encoding.as_str() {
            "UTF-8" => String::from_utf8(bytes.to_vec()).expect("valid UTF-8"),
            "Shift_JIS" => encoding_rs::SHIFT_JIS
                .decode_without_bom_handling_and_without_replacement(bytes)
                .expect("valid Shift_JIS")
                .into_owned(),
            other => panic!("unexpected encoding {other}"),
        };
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "XmlMsg");
        let mut fields = BTreeMap::new();
        fn walk(n: roxmltree::Node<'_, '_>, at: &str, out: &mut BTreeMap<String, String>) {
            let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
            for c in n.children().filter(|c| c.is_element()) {
                let name = c.tag_name().name();
                let k = seen.entry(name).or_default();
                let path = if *k == 0 {
                    format!("{at}{name}")
                } else {
                    format!("{at}{name}[{k}]")
                };
                *k += 1;
                if c.children().any(|g| g.is_element()) {
                    walk(c, &format!("{path}/"), out);
                } else {
                    out.insert(path, c.text().unwrap_or_default().to_string());
                }
            }
        }
        walk(root, "", &mut fields);
        Self { encoding, fields }
    }

    fn get(&self, path: &str) -> Option<&str> {
        self.fields.get(path).map(String::as_str)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.get(&format!("MessageHeader/{name}"))
    }

    fn qualification(&self, name: &str) -> Option<&str> {
        self.get(&format!(
            "MessageBody/ResultList/ResultOfQualificationConfirmation/{name}"
        ))
    }
}

/// A result file made ready ahead by tsunagid (`.spare.tsunagi-<mark>-<n>.tmp`).
fn is_spare(name: &str) -> bool {
    name.starts_with(".spare.tsunagi-") && name.ends_with(".tmp")
}

/// The spares in `res`, leaving out those of `other_mark`.
fn spares_in(root: &Path, other_mark: &str) -> Vec<String> {
    std::fs::read_dir(root.join("res"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_spare(n) && !n.contains(other_mark))
        .collect()
}

fn folders_status(d: &Tsunagid) -> Value {
    let (status, body) = d.get("/v1/status");
    assert_eq!(status, 200, "{body}");
    body["folders"].clone()
}

#[test]
fn requests_are_answered_in_res_field_by_field_in_either_encoding() {
    let sim = sim();
    let root = tempfile::tempdir().unwrap();
    let d = daemon_on(&sim.base_url(), root.path(), "shift_jis");
    // A confirmed employee, asked in Shift_JIS; a 国保 patient with a 6-digit insurer number
    // space-padded, asked in UTF-8; a patient whose qualification was lost; numbers nobody has.
    let (employee, person) = request_of("valid-employee", "rc-0001");
    drop_request(
        root.path(),
        "202601010001",
        &shift_jis(&request_xml(&employee, "Shift_JIS")),
    );
    let (kokuho, kokuho_person) = request_of("kokuho", "rc-0002");
    assert!(
        kokuho.insurer.starts_with("  "),
        "the 国保 number goes out space-padded: {:?}",
        kokuho.insurer
    );
    drop_request(
        root.path(),
        "202601010002",
        request_xml(&kokuho, "UTF-8").as_bytes(),
    );
    let (lost, _) = request_of("lost", "rc-0003");
    drop_request(
        root.path(),
        "202601010003",
        request_xml(&lost, "UTF-8").as_bytes(),
    );
    let nobody = Req {
        insurer: "06139917".into(),
        symbol: Some("99"),
        number: "999999",
        branch: Some("00"),
        birth: "19800101".into(),
        file_id: "rc-0004",
    };
    drop_request(
        root.path(),
        "202601010004",
        request_xml(&nobody, "UTF-8").as_bytes(),
    );

    let r = Parsed::of(&wait_file(&res_path(root.path(), "202601010001"), WAIT));
    // Results are written in the configured encoding whatever the request's.
    assert_eq!(r.encoding, "Shift_JIS");
    assert_eq!(r.header("SegmentOfResult"), Some("1"));
    assert_eq!(r.header("ReferenceClassification"), Some("2"));
    assert_eq!(r.header("CharacterCodeIdentifier"), Some("1"));
    assert_eq!(r.header("MedicalInstitutionCode"), Some(institution()));
    assert_eq!(r.header("ArbitraryFileIdentifier"), Some("rc-0001"));
    assert_eq!(
        r.header("QualificationConfirmationDate"),
        Some(today().format("%Y%m%d").to_string().as_str())
    );
    let processed = r.header("ProcessExecutionTime").unwrap();
    assert_eq!(processed.len(), 14, "{processed}");
    assert_eq!(r.get("MessageBody/ProcessingResultStatus"), Some("1"));
    assert_eq!(r.get("MessageBody/QualificationValidity"), Some("1"));
    // The search block is echoed as sent.
    assert_eq!(
        r.get("MessageBody/QualificationConfirmSearchInfo/InsuredIdentificationNumber"),
        Some(employee.number)
    );
    assert_eq!(r.qualification("Name"), Some(person.name.as_str()));
    assert_eq!(r.qualification("NameKana"), Some(person.kana.as_str()));
    assert_eq!(r.qualification("Birthdate"), Some(employee.birth.as_str()));
    assert_eq!(
        r.qualification("InsurerNumber"),
        Some(employee.insurer.as_str())
    );
    assert_eq!(r.qualification("InsuredCardSymbol"), employee.symbol);
    assert_eq!(
        r.qualification("InsuredIdentificationNumber"),
        Some(employee.number)
    );
    assert_eq!(r.qualification("InsuredBranchNumber"), employee.branch);
    assert!(r
        .qualification("InsurerName")
        .is_some_and(|n| !n.is_empty()));
    // The request file is gone once answered; nothing half-written is left in res.
    wait_for("the request removed", WAIT, || {
        !req_path(root.path(), "202601010001").exists()
    });

    let r = Parsed::of(&wait_file(&res_path(root.path(), "202601010002"), WAIT));
    assert_eq!(r.get("MessageBody/QualificationValidity"), Some("1"));
    assert_eq!(r.qualification("Name"), Some(kokuho_person.name.as_str()));
    assert_eq!(
        r.qualification("InsurerNumber"),
        Some(kokuho.insurer.as_str()),
        "8 characters, space-padded as on the wire"
    );

    let r = Parsed::of(&wait_file(&res_path(root.path(), "202601010003"), WAIT));
    assert!(
        matches!(r.get("MessageBody/QualificationValidity"), Some("2" | "3")),
        "{:?}",
        r.fields
    );
    assert!(r.qualification("DisqualificationDate").is_some());

    let r = Parsed::of(&wait_file(&res_path(root.path(), "202601010004"), WAIT));
    assert_eq!(r.header("SegmentOfResult"), Some("1"));
    assert_eq!(r.get("MessageBody/QualificationValidity"), Some("4"));
    assert!(r.qualification("Name").is_none());

    // Only the four results stay, beside the spares made ahead: no temporary file of a
    // result is left behind.
    let res_entries = || -> Vec<String> {
        std::fs::read_dir(root.path().join("res"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !is_spare(n))
            .collect()
    };
    wait_for("only the four results in res", WAIT, || {
        res_entries().len() == 4
    });
    wait_for("four answered", WAIT, || {
        folders_status(&d)["answered"] == 4
    });
    let status = folders_status(&d);
    assert_eq!(status["refused"], 0, "{status}");
    assert!(status["problem"].is_null(), "{status}");
}

#[test]
fn bad_requests_get_an_error_result_and_good_ones_are_still_answered() {
    let sim = sim();
    let root = tempfile::tempdir().unwrap();
    let d = daemon_on(&sim.base_url(), root.path(), "utf-8");
    let (good, _) = request_of("valid-employee", "rc-good");
    let good_xml = request_xml(&good, "UTF-8");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "notxml",
            b"this is not XML at all".to_vec(),
            "TSUNAGI-E0101",
        ),
        (
            "eucjp",
            request_xml(&good, "EUC-JP").into_bytes(),
            "TSUNAGI-E0102",
        ),
        ("huge", vec![b'<'; 2 * 1024 * 1024], "TSUNAGI-E0104"),
        (
            "nobirth",
            good_xml
                .replace(&format!("<Birthdate>{}</Birthdate>", good.birth), "")
                .into_bytes(),
            "TSUNAGI-E0103",
        ),
        (
            "otherinst",
            good_xml.replace(institution(), "9999999999").into_bytes(),
            "TSUNAGI-E0105",
        ),
        // Cut and never finished: answered as cut once it stops changing.
        (
            "cut",
            good_xml.as_bytes()[..good_xml.len() / 2].to_vec(),
            "TSUNAGI-E0101",
        ),
    ];
    for (id, bytes, _) in &cases {
        drop_request(root.path(), id, bytes);
    }
    // A request moved away by other software before it is read is no error.
    drop_request(root.path(), "vanishes", good_xml.as_bytes());
    let _ = std::fs::remove_file(req_path(root.path(), "vanishes"));
    // Written in place, slowly, over longer than the settling time: never read half-written.
    let slow = req_path(root.path(), "slow");
    let writer = {
        let slow = slow.clone();
        let bytes = good_xml.clone().into_bytes();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(&slow).unwrap();
            for piece in bytes.chunks(bytes.len() / 12 + 1) {
                f.write_all(piece).unwrap();
                f.flush().unwrap();
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    for (id, _, code) in &cases {
        let r = Parsed::of(&wait_file(&res_path(root.path(), id), WAIT));
        assert_eq!(
            r.header("SegmentOfResult"),
            Some("9"),
            "{id}: {:?}",
            r.fields
        );
        assert_eq!(r.header("ErrorCode"), Some(*code), "{id}: {:?}", r.fields);
        let message = r.header("ErrorMessage").unwrap_or_default();
        assert!(
            message
                .chars()
                .any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)),
            "{id}: a Japanese message, got {message:?}"
        );
        assert!(r.get("MessageBody/ProcessingResultStatus").is_none());
        wait_for(&format!("{id} removed"), WAIT, || {
            !req_path(root.path(), id).exists()
        });
    }
    let r = Parsed::of(&std::fs::read(res_path(root.path(), "nobirth")).unwrap());
    assert!(
        r.header("ErrorMessage").unwrap().contains("Birthdate"),
        "names the field: {:?}",
        r.fields
    );
    // The slow writer was left alone while it wrote, and is answered once whole.
    writer.join().unwrap();
    let r = Parsed::of(&wait_file(&res_path(root.path(), "slow"), WAIT));
    assert_eq!(r.header("SegmentOfResult"), Some("1"), "{:?}", r.fields);
    assert_eq!(r.get("MessageBody/QualificationValidity"), Some("1"));
    assert!(!res_path(root.path(), "vanishes").exists());
    wait_for("every refusal counted", WAIT, || {
        folders_status(&d)["refused"] == cases.len()
    });
}

#[test]
fn a_result_is_never_overwritten_and_one_not_collected_is_counted() {
    let sim = sim();
    let root = tempfile::tempdir().unwrap();
    let d = daemon_on(&sim.base_url(), root.path(), "utf-8");
    let (first, _) = request_of("valid-employee", "first");
    drop_request(root.path(), "same", request_xml(&first, "UTF-8").as_bytes());
    let kept = wait_file(&res_path(root.path(), "same"), WAIT);
    // The receipt computer does not collect it, and sends another request with the same id.
    let (second, _) = request_of("kokuho", "second");
    drop_request(
        root.path(),
        "same",
        request_xml(&second, "UTF-8").as_bytes(),
    );
    wait_for("the second request held", WAIT, || {
        folders_status(&d)["held"] == 1
    });
    wait_for("the old result counted as not collected", WAIT, || {
        folders_status(&d)["uncollected"] == 1
    });
    assert_eq!(
        std::fs::read(res_path(root.path(), "same")).unwrap(),
        kept,
        "never overwritten"
    );
    assert!(req_path(root.path(), "same").exists(), "the request waits");
    // Collected: the waiting request is answered into a fresh file.
    std::fs::rename(
        res_path(root.path(), "same"),
        root.path().join("collected.xml"),
    )
    .unwrap();
    let r = Parsed::of(&wait_file(&res_path(root.path(), "same"), WAIT));
    assert_eq!(r.header("ArbitraryFileIdentifier"), Some("second"));
    wait_for("nothing held", WAIT, || folders_status(&d)["held"] == 0);
}

#[test]
fn offline_requests_are_captured_and_answered_when_reconciled_even_across_a_restart() {
    let sim = sim();
    let root = tempfile::tempdir().unwrap();
    sim.faults().set_mode(FaultMode::Refuse);
    let d = daemon_on(&sim.base_url(), root.path(), "utf-8");
    let (req, person) = request_of("valid-employee", "offline-1");
    drop_request(
        root.path(),
        "offline1",
        request_xml(&req, "UTF-8").as_bytes(),
    );
    wait_for("the request captured", WAIT, || {
        folders_status(&d)["waiting"] == 1
    });
    wait_for("the request removed", WAIT, || {
        !req_path(root.path(), "offline1").exists()
    });
    assert!(!res_path(root.path(), "offline1").exists());
    // Captured like any check: it waits for 事後確認.
    let (_, pending) = d.get("/v1/checks?state=pending");
    let checks = pending["checks"].as_array().expect("a list").clone();
    assert_eq!(checks.len(), 1, "{pending}");
    // A restart while still offline loses nothing.
    let (_, dir) = d.stop_keeping_dir();
    let d = Tsunagid::start_in(
        dir,
        &sim.base_url(),
        institution(),
        &folders_toml(root.path(), "utf-8"),
    );
    wait_for("the journal read again", WAIT, || {
        folders_status(&d)["waiting"] == 1
    });
    // The line returns; 事後確認 asks by the request's numbers and the result is written.
    sim.faults().clear();
    wait_for("the line back", WAIT, || {
        d.get("/v1/status").1["line"] == "online"
    });
    let (status, reply) = d.post("/v1/reconcile", &serde_json::json!({}));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["ran"], true, "{reply}");
    let answered = res_path(root.path(), "offline1");
    let deadline = Instant::now() + WAIT;
    while !answered.exists() {
        assert!(
            Instant::now() < deadline,
            "not answered; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = Parsed::of(&std::fs::read(&answered).unwrap());
    assert_eq!(r.header("SegmentOfResult"), Some("1"));
    assert_eq!(r.header("ArbitraryFileIdentifier"), Some("offline-1"));
    assert_eq!(r.get("MessageBody/QualificationValidity"), Some("1"));
    assert_eq!(r.qualification("Name"), Some(person.name.as_str()));
    wait_for("nothing waiting", WAIT, || {
        folders_status(&d)["waiting"] == 0
    });
    let journal = d.data_dir.join("folders").join("pending");
    assert_eq!(std::fs::read_dir(&journal).unwrap().count(), 0);
}

#[test]
fn a_folder_that_disappears_is_reported_and_served_again_when_back() {
    let sim = sim();
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("share");
    std::fs::create_dir(&root).unwrap();
    let d = daemon_on(&sim.base_url(), &root, "utf-8");
    wait_for("the folders made", WAIT, || root.join("req").is_dir());
    std::fs::remove_dir_all(&root).unwrap();
    wait_for("the problem shown", WAIT, || {
        folders_status(&d)["problem"]
            .as_str()
            .is_some_and(|p| p.contains("見つかりません"))
    });
    // The mount point comes back empty (the share not mounted yet): the folders are not
    // made on the local disk, where the receipt computer would never look.
    std::fs::create_dir(&root).unwrap();
    wait_for("the missing folders reported", WAIT, || {
        folders_status(&d)["problem"]
            .as_str()
            .is_some_and(|p| p.contains("共有フォルダが外れていないか"))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!root.join("req").exists(), "never made again");
    // The share is back with its folders.
    for name in ["req", "res", "face"] {
        std::fs::create_dir(root.join(name)).unwrap();
    }
    let (req, _) = request_of("valid-employee", "back");
    drop_request(&root, "back", request_xml(&req, "UTF-8").as_bytes());
    let r = Parsed::of(&wait_file(&res_path(&root, "back"), WAIT));
    assert_eq!(r.get("MessageBody/QualificationValidity"), Some("1"));
    wait_for("no problem left", WAIT, || {
        folders_status(&d)["problem"].is_null()
    });
}

/// The face files, as a receipt computer lists them: by their name (a file still being
/// written has a hidden temporary name).
fn face_files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("face"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with("OQSsiquc01res_face_") && n.ends_with(".xml")
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn every_card_check_writes_a_face_file_online_at_once_and_offline_when_reconciled() {
    use tsunagi_vcard::card::VirtualCard;
    use tsunagi_vcard::harness;
    use tsunagi_vcard::vpcd::AttachOptions;

    let _pcscd = harness::pcscd().expect("pcscd harness");
    let sim = sim();
    let profile = scenario().card("valid-employee").unwrap().clone();
    let person = scenario().person("valid-employee").unwrap();
    let _card = harness::insert(VirtualCard::new(profile), 0, AttachOptions::default())
        .expect("insert card into vpcd slot 0");
    let root = tempfile::tempdir().unwrap();
    let d = daemon_on(&sim.base_url(), root.path(), "utf-8");
    let check = serde_json::json!({
        "method": "visual",
        "reader": harness::reader_name(0),
        "card_wait_secs": 10,
    });
    let (status, report) = d.post("/v1/checks", &check);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "confirmed", "{report}");
    wait_for("a face file", WAIT, || face_files(root.path()).len() == 1);
    let face = face_files(root.path()).remove(0);
    let name = face.file_name().unwrap().to_string_lossy().into_owned();
    // OQSsiquc01res_face_<institution code + id>_<yyyyMMddHHmmss>.xml
    let stem = name
        .strip_prefix("OQSsiquc01res_face_")
        .and_then(|s| s.strip_suffix(".xml"))
        .unwrap_or_else(|| panic!("face file name {name}"));
    let (id, stamp) = stem.rsplit_once('_').unwrap();
    assert!(id.starts_with(institution()), "{name}");
    assert_eq!(stamp.len(), 14, "{name}");
    let r = Parsed::of(&std::fs::read(&face).unwrap());
    assert_eq!(r.encoding, "UTF-8");
    assert_eq!(r.header("ReferenceClassification"), Some("1"));
    assert_eq!(r.header("SegmentOfResult"), Some("1"));
    assert_eq!(r.header("CharacterCodeIdentifier"), Some("0"));
    assert_eq!(r.header("ProcessExecutionTime"), Some(stamp));
    assert!(
        r.get("MessageBody/QualificationConfirmSearchInfo/InsurerNumber")
            .is_none(),
        "a face file has no search block"
    );
    assert_eq!(r.get("MessageBody/QualificationValidity"), Some("1"));
    assert_eq!(r.qualification("Name"), Some(person.name.as_str()));
    assert_eq!(
        r.qualification("Birthdate"),
        Some(person.birthdate.format("%Y%m%d").to_string().as_str())
    );

    // Offline: captured, no face yet; when 事後確認 confirms the card, its face is written.
    sim.faults().set_mode(FaultMode::Refuse);
    let (status, report) = d.post("/v1/checks", &check);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "captured", "{report}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(face_files(root.path()).len(), 1);
    sim.faults().clear();
    wait_for("the line back", WAIT, || {
        d.get("/v1/status").1["line"] == "online"
    });
    let (_, reply) = d.post("/v1/reconcile", &serde_json::json!({}));
    assert_eq!(reply["ran"], true, "{reply}");
    wait_for("a second face file", WAIT, || {
        face_files(root.path()).len() == 2
    });
    wait_for("two faces counted", WAIT, || {
        folders_status(&d)["faces"] == 2
    });
}

#[test]
fn the_api_asks_by_numbers_as_the_folder_does_and_captures_when_offline() {
    let sim = sim();
    let root = tempfile::tempdir().unwrap();
    let d = daemon_on(&sim.base_url(), root.path(), "utf-8");
    let (req, person) = request_of("valid-employee", "api");
    let body = serde_json::json!({
        "insurer": req.insurer.trim(),
        "symbol": req.symbol,
        "number": req.number,
        "branch": req.branch,
        "birth_date": scenario().insurance_of("valid-employee").unwrap().birthdate,
    });
    let (status, report) = d.post("/v1/insurance-checks", &body);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "confirmed", "{report}");
    assert_eq!(
        report["qualification"]["name"],
        person.name.as_str(),
        "{report}"
    );
    assert!(report["check_id"].is_null(), "{report}");
    // The folder answers the same request with the same person.
    drop_request(
        root.path(),
        "same-as-api",
        request_xml(&req, "UTF-8").as_bytes(),
    );
    let r = Parsed::of(&wait_file(&res_path(root.path(), "same-as-api"), WAIT));
    assert_eq!(r.qualification("Name"), Some(person.name.as_str()));
    // A bad field is named.
    let mut bad = body.clone();
    bad["branch"] = Value::String("0".into());
    let (status, problem) = d.post("/v1/insurance-checks", &bad);
    assert_eq!(status, 400, "{problem}");
    // Offline: captured for 事後確認, with its id.
    sim.faults().set_mode(FaultMode::Refuse);
    let (status, report) = d.post("/v1/insurance-checks", &body);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "captured", "{report}");
    let id = report["check_id"].as_str().expect("a check id").to_string();
    let (_, pending) = d.get("/v1/checks?state=pending");
    assert!(
        pending["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id.as_str()),
        "{pending}"
    );
}

#[test]
fn a_request_renamed_in_is_picked_up_at_once_where_the_folder_sends_events() {
    let sim = sim();
    let root = tempfile::tempdir().unwrap();
    // Looks every minute: only the watch can answer within seconds.
    let d = Tsunagid::start(
        &sim.base_url(),
        institution(),
        &format!(
            "[folders]\nroot = \"{}\"\npoll_ms = 60000\n",
            root.path().display()
        ),
    );
    wait_for("req made", WAIT, || root.path().join("req").is_dir());
    // The watch is made within a second of the folder being there.
    std::thread::sleep(Duration::from_millis(1500));
    let (req, _) = request_of("valid-employee", "watched");
    for i in 0..3 {
        let id = format!("watched{i}");
        drop_request(root.path(), &id, request_xml(&req, "UTF-8").as_bytes());
        let r = Parsed::of(&wait_file(
            &res_path(root.path(), &id),
            Duration::from_secs(10),
        ));
        assert_eq!(r.get("MessageBody/QualificationValidity"), Some("1"));
    }
    drop(d);
}

#[test]
fn results_go_into_files_made_ready_ahead_and_none_outlives_the_daemon() {
    let sim = sim();
    let root = tempfile::tempdir().unwrap();
    let res = root.path().join("res");
    std::fs::create_dir_all(&res).unwrap();
    // An earlier run crashed with temporary files in res: the old one is removed at the
    // start; a young one may be another writer's, and stays.
    let old = res.join(".OQSsiquc01res_old.xml.tsunagi-0badcafe-1.tmp");
    std::fs::File::create(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(600))
        .unwrap();
    // Young however long the test takes: dated ahead, as by a file server whose clock runs
    // fast.
    let young = res.join(".spare.tsunagi-0badcafe-2.tmp");
    std::fs::File::create(&young)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();

    let d = daemon_on(&sim.base_url(), root.path(), "utf-8");
    wait_for("the old leftover removed", WAIT, || !old.exists());
    assert!(
        young.exists(),
        "a young temporary file is not taken for a leftover"
    );
    // Spares are made once requests come (an idle clinic's disk is left alone).
    assert!(spares_in(root.path(), "0badcafe").is_empty());
    let (req, _) = request_of("valid-employee", "spare");
    drop_request(root.path(), "s0", request_xml(&req, "UTF-8").as_bytes());
    let r = Parsed::of(&wait_file(&res_path(root.path(), "s0"), WAIT));
    assert_eq!(r.get("MessageBody/QualificationValidity"), Some("1"));
    wait_for("spares made", WAIT, || {
        spares_in(root.path(), "0badcafe").len() == 4
    });

    // A spare was made before the request: a file made for it after would be younger (file
    // times run up to a tick behind the clock, hence the margin). Inode numbers cannot tell:
    // a removed spare's number is given to the next new file.
    std::thread::sleep(Duration::from_millis(200));
    let asked_at = std::time::SystemTime::now();
    drop_request(root.path(), "s1", request_xml(&req, "UTF-8").as_bytes());
    let bytes = wait_file(&res_path(root.path(), "s1"), WAIT);
    let r = Parsed::of(&bytes);
    assert_eq!(r.get("MessageBody/QualificationValidity"), Some("1"));
    assert_eq!(r.header("ArbitraryFileIdentifier"), Some("spare"));
    let made = std::fs::metadata(res_path(root.path(), "s1"))
        .unwrap()
        .created()
        .expect("file birth times (statx)");
    assert!(
        made < asked_at - Duration::from_millis(100),
        "the result went into a spare made before the request: made {made:?}, asked {asked_at:?}"
    );
    assert_eq!(
        std::fs::metadata(res_path(root.path(), "s1"))
            .unwrap()
            .len(),
        bytes.len() as u64,
        "exactly the result, nothing of the spare's block after it"
    );

    // Another program clears what it does not know from res: results are still written.
    for name in spares_in(root.path(), "0badcafe") {
        let _ = std::fs::remove_file(res.join(name));
    }
    drop_request(root.path(), "s2", request_xml(&req, "UTF-8").as_bytes());
    let r = Parsed::of(&wait_file(&res_path(root.path(), "s2"), WAIT));
    assert_eq!(r.get("MessageBody/QualificationValidity"), Some("1"));
    wait_for("spares made again", WAIT, || {
        spares_in(root.path(), "0badcafe").len() == 4
    });

    assert!(d.stop().success());
    assert!(
        spares_in(root.path(), "0badcafe").is_empty(),
        "no spare outlives the daemon"
    );
    let mut left: Vec<String> = std::fs::read_dir(&res)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            ".spare.tsunagi-0badcafe-2.tmp".to_string(),
            "OQSsiquc01res_s0.xml".to_string(),
            "OQSsiquc01res_s1.xml".to_string(),
            "OQSsiquc01res_s2.xml".to_string()
        ]
    );
}
