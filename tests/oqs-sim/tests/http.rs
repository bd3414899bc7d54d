//! End-to-end tests of the simulator over real HTTP (reqwest), on the standard scenario.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{NaiveDate, NaiveDateTime, TimeDelta, Utc};
use oqs_sim::message::{
    CardAuthentication, CardSearchRequest, ResultBody, ResultEnvelope, SearchRequest,
};
use oqs_sim::registry::grace_end;
use oqs_sim::scenario::{self, Scenario};
use oqs_sim::{FaultMode, MalformedKind, SimConfig, SimHandle, Simulator};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::Sha256;
use tsunagi_vcard::card::CardProfile;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
}

fn scenario() -> &'static Scenario {
    static S: OnceLock<Scenario> = OnceLock::new();
    S.get_or_init(|| scenario::standard(today()).unwrap())
}

struct Sim {
    handle: SimHandle,
    http: reqwest::Client,
    token: String,
}

impl Sim {
    async fn start() -> Sim {
        Self::with_config(scenario().sim_config()).await
    }

    async fn with_config(config: SimConfig) -> Sim {
        let mut config = config;
        config.admin_bind = Some("127.0.0.1:0".parse().unwrap());
        let handle = Simulator::start(config).await.unwrap();
        let http = reqwest::Client::new();
        let token = login(&http, &handle.base_url(), "1319900017")
            .await
            .unwrap();
        Sim {
            handle,
            http,
            token,
        }
    }

    async fn post_raw(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.handle.base_url()))
            .header("Authorization", &self.token)
            .header("Content-Type", "application/json;charset=UTF-8")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn post_json(&self, path: &str, body: &Value) -> ResultEnvelope {
        let resp = self.post_raw(path, serde_json::to_vec(body).unwrap()).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("x-sim-processing-micros"));
        resp.json().await.unwrap()
    }

    async fn search(&self, body: &Value) -> ResultEnvelope {
        self.post_json("/oqs-api-pro/MSA01030/ILI01030SV01/search", body)
            .await
    }

    async fn card(&self, body: &Value) -> ResultEnvelope {
        self.post_json("/tsunagi-ext/v1/card-search", body).await
    }
}

async fn login(http: &reqwest::Client, base: &str, code: &str) -> Result<String, u16> {
    let resp = http
        .post(format!("{base}/oqs-api-pro/MSA12020/ILI12020SV01/auth"))
        .json(&json!({ "MedicalInstitutionCode": code }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    if status != 200 {
        assert_eq!(v["status"], "1");
        return Err(status);
    }
    assert_eq!(v["status"], "0");
    assert_eq!(v["result"]["linkSysCharCd"], "1");
    Ok(v["result"]["idToken"].as_str().unwrap().to_owned())
}

fn search_body(name: &str) -> Value {
    let key = scenario().insurance_of(name).unwrap();
    serde_json::to_value(SearchRequest::search(today(), "1319900017", &key)).unwrap()
}

fn body(e: &ResultEnvelope) -> &ResultBody {
    assert_eq!(e.xml_msg.message_header.segment_of_result, "1", "{e:?}");
    e.xml_msg.message_body.as_ref().unwrap()
}

fn validity(e: &ResultEnvelope) -> &str {
    let b = body(e);
    assert_eq!(b.processing_result_status, "1", "{b:?}");
    b.qualification_validity.as_deref().unwrap()
}

fn error_code(e: &ResultEnvelope) -> &str {
    assert_eq!(e.xml_msg.message_header.segment_of_result, "9", "{e:?}");
    assert!(e.xml_msg.message_body.is_none());
    e.xml_msg.message_header.error_code.as_deref().unwrap()
}

fn person_error(e: &ResultEnvelope) -> &str {
    let b = body(e);
    assert_eq!(b.processing_result_status, "2", "{b:?}");
    b.processing_result_code.as_deref().unwrap()
}

fn jst_now_on(day: NaiveDate) -> NaiveDateTime {
    day.and_time((Utc::now().naive_utc() + TimeDelta::hours(9)).time())
}

fn challenge_at(institution: &str, at: NaiveDateTime) -> Vec<u8> {
    format!(
        "TSUNAGI-CHALLENGE/1 {institution} {} 0123456789abcdef0123456789abcdef",
        at.format("%Y%m%d%H%M%S")
    )
    .into_bytes()
}

fn card_key(card: &CardProfile) -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_der(&card.auth_key_pkcs8_der).unwrap()
}

fn sign(key: &RsaPrivateKey, data: &[u8]) -> Vec<u8> {
    SigningKey::<Sha256>::new(key.clone()).sign(data).to_vec()
}

fn card_request(
    cert: &[u8],
    challenge: Option<&[u8]>,
    signature: Option<&[u8]>,
    day: NaiveDate,
) -> Value {
    let auth = CardAuthentication {
        identity_method: if challenge.is_some() { "1" } else { "2" }.into(),
        certificate: B64.encode(cert),
        challenge: challenge.map(|c| B64.encode(c)),
        signature: signature.map(|s| B64.encode(s)),
        limit_application_certificate_related_cons_flg: None,
    };
    serde_json::to_value(CardSearchRequest::card(day, "1319900017", auth)).unwrap()
}

/// A PIN-method card request for a scenario card, signed now.
fn pin_request_on(name: &str, day: NaiveDate) -> Value {
    let card = scenario().card(name).unwrap();
    let ch = challenge_at("1319900017", jst_now_on(day));
    let sig = sign(&card_key(card), &ch);
    card_request(&card.auth_certificate_der, Some(&ch), Some(&sig), day)
}

fn pin_request(name: &str) -> Value {
    pin_request_on(name, today())
}

fn visual_request(name: &str) -> Value {
    let card = scenario().card(name).unwrap();
    card_request(&card.auth_certificate_der, None, None, today())
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn login_and_authorization() {
    let sim = Sim::start().await;
    let base = sim.handle.base_url();
    assert_eq!(login(&sim.http, &base, "1319900025").await, Err(401));
    // No token, a wrong token, and a Bearer-prefixed token are all refused.
    for auth in [
        None,
        Some("nope".to_owned()),
        Some(format!("Bearer {}", sim.token)),
    ] {
        let mut req = sim
            .http
            .post(format!("{base}/oqs-api-pro/MSA01030/ILI01030SV01/search"))
            .json(&search_body("valid-employee"));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        assert_eq!(req.send().await.unwrap().status(), 401);
    }
    assert_eq!(
        validity(&sim.search(&search_body("valid-employee")).await),
        "1"
    );
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn expired_token_is_refused() {
    let mut config = scenario().sim_config();
    config.token_lifetime = Duration::from_millis(200);
    let sim = Sim::with_config(config).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = sim
        .post_raw(
            "/oqs-api-pro/MSA01030/ILI01030SV01/search",
            serde_json::to_vec(&search_body("valid-employee")).unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 401);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn search_by_insurance_data_covers_every_validity() {
    let sim = Sim::start().await;
    let cases = [
        ("valid-employee", "1"),
        ("valid-dependant", "1"),
        ("kouki", "1"),
        ("kokuho", "1"),
        ("preschool", "1"),
        ("elderly", "1"),
        ("infant", "1"),
        ("lost", "2"),
        ("multiple", "5"),
        ("expired-4m", "1"),
    ];
    for (name, want) in cases {
        let r = sim.search(&search_body(name)).await;
        assert_eq!(validity(&r), want, "{name}");
        let h = &r.xml_msg.message_header;
        assert_eq!(h.reference_classification.as_deref(), Some("2"));
        assert_eq!(
            h.qualification_confirmation_date.as_deref(),
            Some("20261126")
        );
        assert!(body(&r).qualification_confirm_search_info.is_some());
    }
    // lost-newer: the insurance_of key is the new (future) card; the old card data says 3.
    let p = scenario().person("lost-newer").unwrap();
    let old = p
        .qualifications
        .iter()
        .find(|q| q.disqualification.is_some())
        .unwrap();
    let mut req = search_body("lost-newer");
    let info = &mut req["XmlMsg"]["MessageBody"]["QualificationConfirmSearchInfo"];
    info["InsurerNumber"] = json!(old.insurer.wire());
    info["InsuredIdentificationNumber"] = json!(old.number);
    info["InsuredCardSymbol"] = json!(old.symbol);
    let r = sim.search(&req).await;
    assert_eq!(validity(&r), "3");
    let rec = &body(&r).result_list.as_ref().unwrap()[0].result;
    assert!(rec.disqualification_date.is_some());
    assert_eq!(rec.reason_of_loss.as_deref(), Some("03"));
    // Unknown number → 4 with no ResultList.
    let mut req = search_body("valid-employee");
    req["XmlMsg"]["MessageBody"]["QualificationConfirmSearchInfo"]["InsuredIdentificationNumber"] =
        json!("9999999");
    let r = sim.search(&req).await;
    assert_eq!(validity(&r), "4");
    assert!(body(&r).result_list.is_none());
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn result_records_carry_the_scheme_details() {
    let sim = Sim::start().await;
    let rec = |r: &ResultEnvelope| body(r).result_list.as_ref().unwrap()[0].result.clone();

    let kouki = rec(&sim.search(&search_body("kouki")).await);
    assert_eq!(kouki.insurer_number.as_deref(), Some("39139912"));
    assert_eq!(kouki.insured_card_symbol, None);
    assert_eq!(kouki.insured_branch_number, None);
    assert_eq!(
        kouki.insured_partial_contribution_ratio.as_deref(),
        Some("010")
    );
    // InsuredCardValidDate is the card's own start (a 後期 card runs from 1 August), not the
    // qualification's.
    assert_eq!(kouki.qualification_date.as_deref(), Some("20170130"));
    assert_eq!(kouki.insured_card_valid_date.as_deref(), Some("20260801"));
    assert_eq!(
        kouki.insured_card_expiration_date.as_deref(),
        Some("20270731")
    );

    let kokuho = rec(&sim.search(&search_body("kokuho")).await);
    assert_eq!(kokuho.insurer_number.as_deref(), Some("  123456"));

    let dep = rec(&sim.search(&search_body("valid-dependant")).await);
    assert_eq!(dep.personal_family_classification.as_deref(), Some("2"));
    assert_eq!(dep.insured_name.as_deref(), Some("診療　太郎"));
    let limit = dep.limit_application_certificate_related_info.unwrap();
    assert_eq!(
        limit
            .limit_application_certificate_classification_flag
            .as_deref(),
        Some("A04")
    );

    // The contribution ratio is sent only for 後期高齢者 (reference §2.3); the others carry
    // what a client derives it from: 未就学, 高齢受給者証, the birth date.
    let pre = rec(&sim.search(&search_body("preschool")).await);
    assert_eq!(pre.preschool_classification.as_deref(), Some("1"));
    assert_eq!(pre.insured_partial_contribution_ratio, None);

    let old = rec(&sim.search(&search_body("elderly")).await);
    assert_eq!(old.insured_partial_contribution_ratio, None);
    let e = old.elderly_recipient_certificate_info.unwrap();
    assert_eq!(
        e.elderly_recipient_contribution_ratio.as_deref(),
        Some("020")
    );

    let emp = rec(&sim.search(&search_body("valid-employee")).await);
    assert_eq!(emp.name.as_deref(), Some("診療　太郎"));
    assert_eq!(emp.name_kana.as_deref(), Some("ｼﾝﾘｮｳ ﾀﾛｳ"));
    assert_eq!(emp.insured_partial_contribution_ratio, None);
    assert_eq!(emp.insured_branch_number.as_deref(), Some("00"));
    assert_eq!(emp.insured_card_valid_date.as_deref(), Some("20150401"));

    let multi = sim.search(&search_body("multiple")).await;
    assert_eq!(body(&multi).result_list.as_ref().unwrap().len(), 2);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn contribution_ratio_is_sent_only_for_late_elderly_even_when_recorded() {
    // A 社保 record that carries a ratio in the population still goes out without it.
    let mut config = scenario().sim_config();
    let mut p = scenario().person("valid-employee").unwrap().clone();
    p.id = "p-recorded-ratio".into();
    p.qualifications[0].number = "0009999".into();
    p.qualifications[0].ratio = Some(oqs_sim::model::Ratio::Thirty);
    let key = oqs_sim::model::latest_key(&p).unwrap();
    config.population.add(p);
    let sim = Sim::with_config(config).await;
    let req = serde_json::to_value(SearchRequest::search(today(), "1319900017", &key)).unwrap();
    let r = sim.search(&req).await;
    assert_eq!(validity(&r), "1");
    let rec = &body(&r).result_list.as_ref().unwrap()[0].result;
    assert_eq!(rec.insured_partial_contribution_ratio, None);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn six_digit_insurer_is_padded_to_eight_with_spaces_or_zeros() {
    let sim = Sim::start().await;
    let mut req = search_body("kokuho");
    let info = "/XmlMsg/MessageBody/QualificationConfirmSearchInfo/InsurerNumber";
    assert_eq!(req.pointer(info).unwrap(), "  123456");
    assert_eq!(validity(&sim.search(&req).await), "1");
    *req.pointer_mut(info).unwrap() = json!("123456");
    assert_eq!(error_code(&sim.search(&req).await), "SIM-E0003");
    // No 8-digit number starts with 00: zero padding is the same 6-digit number.
    *req.pointer_mut(info).unwrap() = json!("00123456");
    let r = sim.search(&req).await;
    assert_eq!(validity(&r), "1");
    let rec = &body(&r).result_list.as_ref().unwrap()[0].result;
    assert_eq!(rec.insurer_number.as_deref(), Some("  123456"));
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn symbols_compare_after_width_normalisation() {
    let sim = Sim::start().await;
    let mut req = search_body("valid-employee");
    let symbol = "/XmlMsg/MessageBody/QualificationConfirmSearchInfo/InsuredCardSymbol";
    assert_eq!(req.pointer(symbol).unwrap(), "練馬12");
    *req.pointer_mut(symbol).unwrap() = json!("練馬１２");
    assert_eq!(validity(&sim.search(&req).await), "1");
    *req.pointer_mut(symbol).unwrap() = json!("練馬１３");
    assert_eq!(validity(&sim.search(&req).await), "4");
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn consent_flag_is_required() {
    // OQSCD001 is required by the reference (§1.3): without it, a message-level error.
    let sim = Sim::start().await;
    let mut req = search_body("valid-dependant");
    let info = req
        .pointer_mut("/XmlMsg/MessageBody/QualificationConfirmSearchInfo")
        .unwrap()
        .as_object_mut()
        .unwrap();
    info.remove("LimitApplicationCertificateRelatedConsFlg");
    let r = sim.search(&req).await;
    assert_eq!(error_code(&r), "SIM-E0003");
    assert_eq!(
        r.xml_msg.message_header.error_message.as_deref(),
        Some("（模擬）限度額適用認定証提供同意フラグがありません")
    );
    // With "0" the answer comes, without the 限度額 information.
    let mut req = search_body("valid-dependant");
    req["XmlMsg"]["MessageBody"]["QualificationConfirmSearchInfo"]
        ["LimitApplicationCertificateRelatedConsFlg"] = json!("0");
    let r = sim.search(&req).await;
    assert_eq!(validity(&r), "1");
    let rec = &body(&r).result_list.as_ref().unwrap()[0].result;
    assert!(rec.limit_application_certificate_related_info.is_none());
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn message_level_errors_echo_the_header() {
    let sim = Sim::start().await;
    let hdr = |r: &ResultEnvelope| r.xml_msg.message_header.clone();
    // A field error: every echo as sent.
    let mut req = search_body("valid-employee");
    req["XmlMsg"]["MessageHeader"]["ArbitraryFileIdentifier"] = json!("rq-7");
    req["XmlMsg"]["MessageBody"]["QualificationConfirmSearchInfo"]["Birthdate"] = json!("1985");
    let r = sim.search(&req).await;
    assert_eq!(error_code(&r), "SIM-E0003");
    let h = hdr(&r);
    assert_eq!(
        h.qualification_confirmation_date.as_deref(),
        Some("20261126")
    );
    assert_eq!(h.medical_institution_code.as_deref(), Some("1319900017"));
    assert_eq!(h.reference_classification.as_deref(), Some("2"));
    assert_eq!(h.arbitrary_file_identifier.as_deref(), Some("rq-7"));
    assert!(h.process_execution_time.is_some());
    // A malformed date is still echoed as sent.
    let mut req = search_body("valid-employee");
    req["XmlMsg"]["MessageHeader"]["QualificationConfirmationDate"] = json!("2026-11-26");
    let h = hdr(&sim.search(&req).await);
    assert_eq!(
        h.qualification_confirmation_date.as_deref(),
        Some("2026-11-26")
    );
    // Not JSON: the route and the token still say who and what.
    let resp = sim
        .post_raw(
            "/oqs-api-pro/MSA01030/ILI01030SV01/search",
            b"<XmlMsg/>".to_vec(),
        )
        .await;
    let r: ResultEnvelope = resp.json().await.unwrap();
    assert_eq!(error_code(&r), "SIM-E0001");
    let h = hdr(&r);
    assert_eq!(h.medical_institution_code.as_deref(), Some("1319900017"));
    assert_eq!(h.reference_classification.as_deref(), Some("2"));
    assert_eq!(h.qualification_confirmation_date, None);
    // The card route says 1, and so does an injected system error.
    let mut req = pin_request("valid-employee");
    req["XmlMsg"]["MessageBody"]["TsunagiCardAuthentication"]["IdentityMethod"] = json!("3");
    let h = hdr(&sim.card(&req).await);
    assert_eq!(h.reference_classification.as_deref(), Some("1"));
    assert_eq!(
        h.qualification_confirmation_date.as_deref(),
        Some("20261126")
    );
    sim.handle.faults().set_mode(FaultMode::SystemError);
    let r = sim.card(&pin_request("valid-employee")).await;
    assert_eq!(error_code(&r), "SIM-E0900");
    let h = hdr(&r);
    assert_eq!(h.reference_classification.as_deref(), Some("1"));
    assert_eq!(
        h.qualification_confirmation_date.as_deref(),
        Some("20261126")
    );
    assert_eq!(h.medical_institution_code.as_deref(), Some("1319900017"));
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn result_codes_are_settings() {
    // Codes outside the reference's catalogue (and inside it) come from the configuration.
    let mut config = scenario().sim_config();
    config.codes.expired_beyond_grace = "OQS-E2104".into();
    config.codes.in_grace = "OQS-W0002".into();
    config.codes.system_error = "OQS-E0900".into();
    let sim = Sim::with_config(config).await;
    assert_eq!(
        person_error(&sim.card(&pin_request("expired-4m")).await),
        "OQS-E2104"
    );
    let r = sim.card(&pin_request("expired-2m")).await;
    assert_eq!(
        body(&r).processing_result_code.as_deref(),
        Some("OQS-W0002")
    );
    sim.handle.faults().set_mode(FaultMode::SystemError);
    assert_eq!(
        error_code(&sim.search(&search_body("kouki")).await),
        "OQS-E0900"
    );
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn spoiled_answers_are_well_formed_and_wrong() {
    let sim = Sim::start().await;
    sim.handle
        .faults()
        .set_mode(FaultMode::Malformed(MalformedKind::UnknownCodeValue));
    let r = sim.search(&search_body("valid-employee")).await;
    assert_eq!(validity(&r), "1");
    let rec = &body(&r).result_list.as_ref().unwrap()[0].result;
    assert_eq!(rec.sex1.as_deref(), Some("9"));
    sim.handle
        .faults()
        .set_mode(FaultMode::Malformed(MalformedKind::Inconsistent));
    let r = sim.card(&pin_request("valid-employee")).await;
    assert_eq!(validity(&r), "1");
    assert_eq!(body(&r).result_list.as_ref().unwrap().len(), 2);
    assert_eq!(
        r.xml_msg
            .message_header
            .qualification_confirmation_date
            .as_deref(),
        Some("20261126")
    );
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn huge_fault_streams_a_well_formed_answer_without_length() {
    let sim = Sim::start().await;
    sim.handle
        .faults()
        .set_mode(FaultMode::Malformed(MalformedKind::Huge));
    let mut resp = sim
        .post_raw(
            "/oqs-api-pro/MSA01030/ILI01030SV01/search",
            serde_json::to_vec(&search_body("valid-employee")).unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_none());
    let (mut total, mut head, mut tail) = (0u64, Vec::new(), Vec::new());
    while let Some(chunk) = resp.chunk().await.unwrap() {
        total += chunk.len() as u64;
        if head.len() < 64 {
            head.extend_from_slice(&chunk[..chunk.len().min(64)]);
        }
        // The last bytes of the stream, across chunk boundaries.
        tail.extend_from_slice(&chunk);
        let keep = tail.len().saturating_sub(16);
        tail.drain(..keep);
    }
    assert_eq!(total, oqs_sim::faults::HUGE_ANSWER_BYTES);
    assert!(head.starts_with(br#"{"XmlMsg":{"MessageHeader":"#));
    assert!(tail.ends_with(br#"xxx"}}}"#));
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_codes_not_panics() {
    let sim = Sim::start().await;
    let path = "/oqs-api-pro/MSA01030/ILI01030SV01/search";
    // Not JSON at all: still HTTP 200, SIM-E0001.
    let resp = sim.post_raw(path, b"<XmlMsg/>".to_vec()).await;
    assert_eq!(resp.status(), 200);
    let r: ResultEnvelope = resp.json().await.unwrap();
    assert_eq!(error_code(&r), "SIM-E0001");
    assert_eq!(
        error_code(&sim.search(&json!({"Msg": {}})).await),
        "SIM-E0001"
    );
    assert_eq!(error_code(&sim.search(&json!([1, 2])).await), "SIM-E0001");

    let base = search_body("valid-employee");
    let edit = |ptr: &str, v: Option<Value>| {
        let mut b = base.clone();
        let (parent, field) = ptr.rsplit_once('/').unwrap();
        let obj = b.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        match v {
            Some(v) => obj.insert(field.to_owned(), v),
            None => obj.remove(field),
        };
        b
    };
    let hdr = "/XmlMsg/MessageHeader";
    let info = "/XmlMsg/MessageBody/QualificationConfirmSearchInfo";
    let cases: Vec<(Value, &str)> = vec![
        (
            edit(&format!("{hdr}/MedicalInstitutionCode"), None),
            "SIM-E0002",
        ),
        (
            edit(
                &format!("{hdr}/MedicalInstitutionCode"),
                Some(json!("131990001")),
            ),
            "SIM-E0002",
        ),
        (
            edit(
                &format!("{hdr}/MedicalInstitutionCode"),
                Some(json!(1319900017u64)),
            ),
            "SIM-E0002",
        ),
        (
            edit(
                &format!("{hdr}/MedicalInstitutionCode"),
                Some(json!("1319900025")),
            ),
            "SIM-E0002",
        ),
        (
            edit(&format!("{hdr}/QualificationConfirmationDate"), None),
            "SIM-E0003",
        ),
        (
            edit(
                &format!("{hdr}/QualificationConfirmationDate"),
                Some(json!("2026-11-26")),
            ),
            "SIM-E0003",
        ),
        (
            edit(
                &format!("{hdr}/QualificationConfirmationDate"),
                Some(json!("20261131")),
            ),
            "SIM-E0003",
        ),
        (edit("/XmlMsg/MessageBody", None), "SIM-E0003"),
        (edit(&format!("{info}/InsurerNumber"), None), "SIM-E0003"),
        (
            edit(&format!("{info}/InsurerNumber"), Some(json!(6139999))),
            "SIM-E0003",
        ),
        (
            edit(&format!("{info}/InsuredIdentificationNumber"), None),
            "SIM-E0003",
        ),
        (
            edit(
                &format!("{info}/InsuredIdentificationNumber"),
                Some(json!(4471)),
            ),
            "SIM-E0003",
        ),
        (
            edit(&format!("{info}/InsuredBranchNumber"), Some(json!("0"))),
            "SIM-E0003",
        ),
        (edit(&format!("{info}/Birthdate"), None), "SIM-E0003"),
        (
            edit(&format!("{info}/Birthdate"), Some(json!("19850510x"))),
            "SIM-E0003",
        ),
        (
            edit(&format!("{info}/Birthdate"), Some(json!(19850510))),
            "SIM-E0003",
        ),
    ];
    for (req, want) in cases {
        let r = sim.search(&req).await;
        assert_eq!(error_code(&r), want, "{req}");
        assert!(r.xml_msg.message_header.error_message.is_some());
    }
    // A birthdate in the future is a person-level error.
    let r = sim
        .search(&edit(&format!("{info}/Birthdate"), Some(json!("20270101"))))
        .await;
    assert_eq!(person_error(&r), "SIM-E1001");
    // Card route: bad base64, unknown method, PIN without signature.
    let mut req = pin_request("valid-employee");
    let auth = "/XmlMsg/MessageBody/TsunagiCardAuthentication";
    req.pointer_mut(auth).unwrap()["Certificate"] = json!("!!!");
    assert_eq!(error_code(&sim.card(&req).await), "SIM-E0003");
    let mut req = pin_request("valid-employee");
    req.pointer_mut(auth).unwrap()["IdentityMethod"] = json!("3");
    assert_eq!(error_code(&sim.card(&req).await), "SIM-E0003");
    let mut req = pin_request("valid-employee");
    req.pointer_mut(auth)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("Signature");
    assert_eq!(error_code(&sim.card(&req).await), "SIM-E0003");
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn card_search_covers_every_validity_and_card_rule() {
    let sim = Sim::start().await;
    for (name, want) in [
        ("valid-employee", "1"),
        ("valid-dependant", "1"),
        ("kouki", "1"),
        ("kokuho", "1"),
        ("preschool", "1"),
        ("elderly", "1"),
        ("infant", "1"),
        ("lost", "2"),
        ("lost-newer", "3"),
        ("no-coverage", "4"),
        ("multiple", "5"),
    ] {
        let r = sim.card(&pin_request(name)).await;
        assert_eq!(validity(&r), want, "{name}");
        assert_eq!(
            r.xml_msg.message_header.reference_classification.as_deref(),
            Some("1")
        );
        assert_eq!(body(&r).processing_result_code, None, "{name}");
    }
    // Visual check works for a photo card and is refused for the photo-less infant card.
    assert_eq!(
        validity(&sim.card(&visual_request("valid-employee")).await),
        "1"
    );
    let r = sim.card(&visual_request("infant")).await;
    assert_eq!(person_error(&r), "SIM-E1105");
    assert_eq!(
        body(&r).processing_result_message.as_deref(),
        Some("顔写真のないカードのため、暗証番号による本人確認が必要です")
    );
    // Certificate states.
    let r = sim.card(&pin_request("expired-2m")).await;
    assert_eq!(validity(&r), "1");
    assert_eq!(
        body(&r).processing_result_code.as_deref(),
        Some("SIM-W2002")
    );
    let r = sim.card(&pin_request("expiring-soon")).await;
    assert_eq!(validity(&r), "1");
    assert_eq!(
        body(&r).processing_result_code.as_deref(),
        Some("SIM-W2001")
    );
    assert_eq!(
        person_error(&sim.card(&pin_request("expired-4m")).await),
        "SIM-E1104"
    );
    assert_eq!(
        person_error(&sim.card(&pin_request("revoked")).await),
        "SIM-E1103"
    );
    assert_eq!(
        person_error(&sim.card(&visual_request("revoked")).await),
        "SIM-E1103"
    );
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn card_search_rejects_forgeries_and_stale_challenges() {
    let sim = Sim::start().await;
    let card = scenario().card("valid-employee").unwrap();
    let key = card_key(card);
    let cert = &card.auth_certificate_der;
    let now = jst_now_on(today());

    // Signed by another key.
    let other = card_key(scenario().card("kouki").unwrap());
    let ch = challenge_at("1319900017", now);
    let r = sim
        .card(&card_request(
            cert,
            Some(&ch),
            Some(&sign(&other, &ch)),
            today(),
        ))
        .await;
    assert_eq!(person_error(&r), "SIM-E1102");
    // Signature over different bytes.
    let sig = sign(
        &key,
        &challenge_at("1319900017", now - TimeDelta::seconds(1)),
    );
    let r = sim
        .card(&card_request(cert, Some(&ch), Some(&sig), today()))
        .await;
    assert_eq!(person_error(&r), "SIM-E1102");
    // A proof made earlier on the visit date is accepted (事後確認 of an offline check).
    // (Just after midnight "20 minutes ago" is yesterday: stay on the visit date.)
    let start_of_day = now.date().and_hms_opt(0, 0, 0).unwrap();
    let earlier = challenge_at(
        "1319900017",
        (now - TimeDelta::minutes(20)).max(start_of_day),
    );
    let r = sim
        .card(&card_request(
            cert,
            Some(&earlier),
            Some(&sign(&key, &earlier)),
            today(),
        ))
        .await;
    assert_eq!(validity(&r), "1");
    // Stale (made the day before the visit), future, and for another institution.
    for ch in [
        challenge_at("1319900017", now - TimeDelta::days(1)),
        challenge_at("1319900017", now + TimeDelta::minutes(20)),
        challenge_at("1319900025", now),
        b"hello".to_vec(),
    ] {
        let r = sim
            .card(&card_request(
                cert,
                Some(&ch),
                Some(&sign(&key, &ch)),
                today(),
            ))
            .await;
        assert_eq!(person_error(&r), "SIM-E1107");
    }
    // A certificate from another CA (same key, same serial, different issuer key).
    let pool = tsunagi_vcard::pki::key_pool(17).unwrap();
    let rogue = tsunagi_vcard::pki::TestCa::generate(
        pool[16].clone(),
        today() - TimeDelta::days(365),
        today() + TimeDelta::days(365),
    )
    .unwrap();
    let fake = rogue
        .issue_user_auth(
            &key.to_public_key(),
            1001,
            today() - TimeDelta::days(30),
            today() + TimeDelta::days(900),
        )
        .unwrap();
    let ch = challenge_at("1319900017", now);
    let r = sim
        .card(&card_request(
            &fake,
            Some(&ch),
            Some(&sign(&key, &ch)),
            today(),
        ))
        .await;
    assert_eq!(person_error(&r), "SIM-E1101");
    let r = sim
        .card(&card_request(b"not a certificate", None, None, today()))
        .await;
    assert_eq!(person_error(&r), "SIM-E1101");
    sim.handle.shutdown().await;
}

fn visual_request_on(name: &str, day: NaiveDate) -> Value {
    let card = scenario().card(name).unwrap();
    card_request(&card.auth_certificate_der, None, None, day)
}

#[tokio::test]
async fn grace_is_judged_on_the_visit_date() {
    // The simulator's clock is a month after the scenario's day; the visits are asked about
    // afterwards, as 事後確認 does.
    let mut config = scenario().sim_config();
    let month_later = today().checked_add_months(chrono::Months::new(1)).unwrap();
    config.today = Some(month_later);
    let sim = Sim::with_config(config).await;
    let months_before = |n| today().checked_sub_months(chrono::Months::new(n)).unwrap();
    // A visit a month ago, the certificate expired 2 months before it: in grace.
    let r = sim.card(&visual_request_on("expired-2m", today())).await;
    assert_eq!(validity(&r), "1");
    assert_eq!(
        body(&r).processing_result_code.as_deref(),
        Some("SIM-W2002")
    );
    // Expired 4 months before that visit: beyond grace.
    let r = sim.card(&visual_request_on("expired-4m", today())).await;
    assert_eq!(person_error(&r), "SIM-E1104");
    // The same certificate, 5 months expired by the clock, was in grace at a visit 2 months
    // after its expiry: the visit decides, not the day of the question.
    let r = sim
        .card(&visual_request_on("expired-4m", months_before(2)))
        .await;
    assert_eq!(validity(&r), "1");
    assert_eq!(
        body(&r).processing_result_code.as_deref(),
        Some("SIM-W2002")
    );
    // And a visit before the expiry was not even in grace.
    let r = sim
        .card(&visual_request_on("expired-4m", months_before(5)))
        .await;
    assert_eq!(validity(&r), "1");
    assert_ne!(
        body(&r).processing_result_code.as_deref(),
        Some("SIM-W2002")
    );
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn grace_boundary_is_the_end_of_the_third_month() {
    // expired-2m expired on today − 2 months; move the simulator's clock to the boundary.
    let not_after = today().checked_sub_months(chrono::Months::new(2)).unwrap();
    let last = grace_end(not_after);
    for (day, in_grace) in [(last, true), (last.succ_opt().unwrap(), false)] {
        let mut config = scenario().sim_config();
        config.today = Some(day);
        let sim = Sim::with_config(config).await;
        let r = sim.card(&pin_request_on("expired-2m", day)).await;
        if in_grace {
            assert_eq!(validity(&r), "1", "{day}");
            assert_eq!(
                body(&r).processing_result_code.as_deref(),
                Some("SIM-W2002")
            );
        } else {
            assert_eq!(person_error(&r), "SIM-E1104", "{day}");
        }
        sim.handle.shutdown().await;
    }
}

#[tokio::test]
async fn fault_refuse_really_refuses_and_recovers_on_the_same_port() {
    let sim = Sim::start().await;
    let addr = sim.handle.addr();
    // Open a pooled keep-alive connection first; Refuse must kill it too.
    assert_eq!(
        validity(&sim.search(&search_body("valid-employee")).await),
        "1"
    );
    sim.handle.faults().set_mode(FaultMode::Refuse);
    let deadline = Instant::now() + Duration::from_secs(2);
    // The switch is asynchronous: a connect racing with it may be accepted-and-dropped or
    // reset from the closing backlog; after that, connects are refused outright.
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => assert!(Instant::now() < deadline, "still accepting"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = sim
        .http
        .post(format!(
            "{}/oqs-api-pro/MSA01030/ILI01030SV01/search",
            sim.handle.base_url()
        ))
        .header("Authorization", &sim.token)
        .json(&search_body("valid-employee"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    // Clearing binds the port again before it returns: a client asking at once is answered,
    // not refused (tests clear the fault and query straight away).
    sim.handle.faults().clear();
    tokio::net::TcpStream::connect(addr)
        .await
        .expect("listening again as soon as clear() returns");
    assert_eq!(
        validity(&sim.search(&search_body("valid-employee")).await),
        "1"
    );
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn faults_through_the_admin_endpoint() {
    let sim = Sim::start().await;
    let admin = format!("{}/_sim/faults", sim.handle.admin_url().unwrap());
    let search = || {
        sim.http
            .post(format!(
                "{}/oqs-api-pro/MSA01030/ILI01030SV01/search",
                sim.handle.base_url()
            ))
            .header("Authorization", &sim.token)
            .json(&search_body("valid-employee"))
            .send()
    };
    let set = |v: Value| {
        let http = sim.http.clone();
        let admin = admin.clone();
        async move {
            let r = http.post(&admin).json(&v).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };

    set(json!({"mode": {"ServerError": 503}})).await;
    let r = search().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("<html>"));

    set(json!({"mode": {"RateLimit": {"retry_after_secs": 7}}})).await;
    let r = search().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");

    for kind in ["TruncatedJson", "NotJson", "WrongTypes"] {
        set(json!({"mode": {"Malformed": kind}})).await;
        let r = search().await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(
            serde_json::from_str::<ResultEnvelope>(&text).is_err(),
            "{kind}: {text}"
        );
    }
    assert_eq!(
        sim.handle.faults().mode(),
        FaultMode::Malformed(MalformedKind::WrongTypes)
    );

    set(json!({"mode": "SystemError"})).await;
    let r: ResultEnvelope = search().await.unwrap().json().await.unwrap();
    assert_eq!(error_code(&r), "SIM-E0900");

    set(json!({"mode": "None", "delay_ms": 300})).await;
    let got: Value = sim
        .http
        .get(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, json!({"mode": "None", "delay_ms": 300}));
    let t = Instant::now();
    let r = search().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    let micros: u64 = r.headers()["x-sim-processing-micros"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(micros < 300_000, "delay is not processing time");

    // Login is untouched by search faults.
    sim.handle.faults().set_mode(FaultMode::ServerError(500));
    assert!(login(&sim.http, &sim.handle.base_url(), "1319900017")
        .await
        .is_ok());
    sim.handle.faults().clear();
    assert_eq!(search().await.unwrap().status(), 200);

    let before = sim.handle.request_count();
    sim.search(&search_body("kouki")).await;
    sim.card(&pin_request("kouki")).await;
    assert_eq!(sim.handle.request_count(), before + 2);
    let bad = sim.http.post(&admin).body("{").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn synthetic_population_is_served() {
    let mut config = scenario().sim_config();
    config.population.add_synthetic(42, 500);
    let keys = oqs_sim::model::Population::synthetic(42, 500).insurance_keys();
    let sim = Sim::with_config(config).await;
    for key in keys.iter().take(20) {
        let req = serde_json::to_value(SearchRequest::search(today(), "1319900017", key)).unwrap();
        assert_eq!(validity(&sim.search(&req).await), "1");
    }
    sim.handle.shutdown().await;
}

#[test]
fn scenario_is_deterministic_and_complete() {
    let s = scenario();
    assert_eq!(s.institution_code, "1319900017");
    assert_eq!(s.card_names().len(), 15);
    let again = scenario::standard(today()).unwrap();
    for name in s.card_names() {
        let a = s.card(name).unwrap();
        let b = again.card(name).unwrap();
        assert_eq!(a.auth_key_pkcs8_der, b.auth_key_pkcs8_der, "{name}");
        assert_eq!(a.pin, "1234");
        assert_eq!(a.ca_certificate_der, s.ca_certificate_der());
    }
    assert!(s.insurance_of("no-coverage").is_none());
    assert!(s.insurance_of("kouki").unwrap().symbol.is_none());
}
