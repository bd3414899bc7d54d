//! The simulator and the client against the public reference (`oqs-messages.md`, `rules.md`
//! R3 and R13), issue 10 item 6.
//!
//! Each behaviour is tried twice: over HTTP with raw JSON written from the reference, as a
//! third-party client would send it (nothing from `oqs_sim::message`), and through
//! `tsunagi::oqs::OqsClient`, as the daemon asks. The reconciler part runs the real store on
//! disk; the memory part runs in a child process of this test binary, so that no other test's
//! allocations can hide or fake its peak.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use chrono::{Months, NaiveDate};
use oqs_sim::scenario::{self, Scenario};
use oqs_sim::{FaultMode, MalformedKind, SimConfig, SimHandle, Simulator};
use serde_json::{json, Value};
use tsunagi::check::now_jst;
use tsunagi::domain::{FacilityType, IdentityMethod, InsurerNumber};
use tsunagi::ledger::event::{Captured, CardRecord, CheckEvent};
use tsunagi::ledger::{new_check_id, Ledger};
use tsunagi::oqs::{
    Answer, CardQuery, CodeMeaning, Inconsistency, InsuranceQuery, OqsClient, OqsConfig,
    QueryError, ResultCodes,
};
use tsunagi::reconcile::{ReconcileConfig, Reconciler};

const INSTITUTION: &str = "1319900017";
const LOGIN: &str = "/oqs-api-pro/MSA12020/ILI12020SV01/auth";
const SEARCH: &str = "/oqs-api-pro/MSA01030/ILI01030SV01/search";
const CARD_SEARCH: &str = "/tsunagi-ext/v1/card-search";

/// The scenario's day: the situations (expired 2 and 4 months, …) hold on it.
fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
}

fn months_before(d: NaiveDate, n: u32) -> NaiveDate {
    d.checked_sub_months(Months::new(n)).unwrap()
}

fn scenario() -> &'static Scenario {
    static S: OnceLock<Scenario> = OnceLock::new();
    S.get_or_init(|| scenario::standard(day()).unwrap())
}

fn yyyymmdd(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

/// A simulator of the scenario whose clock shows `clock`, and a raw HTTP session to it.
struct Raw {
    sim: SimHandle,
    http: reqwest::Client,
    token: String,
}

impl Raw {
    async fn start(config: SimConfig) -> Raw {
        let sim = Simulator::start(config).await.unwrap();
        let http = reqwest::Client::new();
        // §1.4 step 1: login; the raw idToken goes into Authorization, no "Bearer ".
        let v: Value = http
            .post(format!("{}{LOGIN}", sim.base_url()))
            .header("Content-Type", "application/json;charset=UTF-8")
            .body(json!({ "MedicalInstitutionCode": INSTITUTION }).to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = v["result"]["idToken"].as_str().unwrap().to_string();
        Raw { sim, http, token }
    }

    async fn on(clock: NaiveDate) -> Raw {
        let mut config = scenario().sim_config();
        config.today = Some(clock);
        Raw::start(config).await
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.sim.base_url()))
            .header("Content-Type", "application/json;charset=UTF-8")
            .header("Accept", "application/json")
            .header("Authorization", &self.token)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    fn client(&self) -> OqsClient {
        OqsClient::new(OqsConfig {
            base_url: self.sim.base_url(),
            institution_code: INSTITUTION.to_string(),
            timeout: Duration::from_secs(10),
        })
        .unwrap()
    }
}

/// §5.1: a lookup by insurance card data, written by hand from the scenario's card.
fn raw_search(name: &str, visit: NaiveDate) -> Value {
    let key = scenario().insurance_of(name).unwrap();
    let mut info = json!({
        "InsurerNumber": key.insurer.wire(),
        "InsuredIdentificationNumber": key.number,
        "Birthdate": yyyymmdd(key.birthdate),
        "LimitApplicationCertificateRelatedConsFlg": "1",
        "ArbitraryIdentifier": format!("pt-{name}"),
    });
    if let Some(s) = &key.symbol {
        info["InsuredCardSymbol"] = json!(s);
    }
    if let Some(b) = &key.branch {
        info["InsuredBranchNumber"] = json!(b);
    }
    json!({ "XmlMsg": {
        "MessageHeader": {
            "QualificationConfirmationDate": yyyymmdd(visit),
            "MedicalInstitutionCode": INSTITUTION,
            "ArbitraryFileIdentifier": format!("rq-{name}"),
        },
        "MessageBody": { "QualificationConfirmSearchInfo": info },
    }})
}

/// Tsunagi's own card search (visual method: the certificate only).
fn raw_card(name: &str, visit: NaiveDate) -> Value {
    let cert = &scenario().card(name).unwrap().auth_certificate_der;
    json!({ "XmlMsg": {
        "MessageHeader": {
            "QualificationConfirmationDate": yyyymmdd(visit),
            "MedicalInstitutionCode": INSTITUTION,
        },
        "MessageBody": { "TsunagiCardAuthentication": {
            "IdentityMethod": "2",
            "Certificate": base64::engine::general_purpose::STANDARD.encode(cert),
        }},
    }})
}

fn header(v: &Value) -> &Value {
    &v["XmlMsg"]["MessageHeader"]
}

fn body(v: &Value) -> &Value {
    assert_eq!(header(v)["SegmentOfResult"], "1", "{v}");
    &v["XmlMsg"]["MessageBody"]
}

fn record(v: &Value) -> &Value {
    &body(v)["ResultList"][0]["ResultOfQualificationConfirmation"]
}

fn card_query(name: &str, visit: NaiveDate) -> CardQuery {
    CardQuery {
        visit_date: visit,
        method: IdentityMethod::Visual,
        certificate_der: scenario().card(name).unwrap().auth_certificate_der.clone(),
        challenge: None,
        signature: None,
        file_id: format!("ref-{name}"),
    }
}

fn insurance_query(name: &str, visit: NaiveDate) -> InsuranceQuery {
    let key = scenario().insurance_of(name).unwrap();
    InsuranceQuery {
        visit_date: visit,
        insurer: InsurerNumber::parse(&key.insurer.wire()).unwrap(),
        symbol: key.symbol.clone(),
        number: key.number.clone(),
        branch: key.branch.clone(),
        birth_date: key.birthdate,
        limit_consent: true,
        file_id: format!("ref-{name}"),
    }
}

// ---------------------------------------------------------------------------------------------
// R3: the grace is measured on the visit date.

#[tokio::test]
async fn grace_is_measured_on_the_visit_date() {
    // The question arrives a month after the visit (事後確認); the certificate's age is what
    // it was at the visit.
    let visit = day();
    let raw = Raw::on(visit.checked_add_months(Months::new(1)).unwrap()).await;

    // Raw: expired 2 months before the visit → in grace (有効, SIM-W2002).
    let r = raw.post(CARD_SEARCH, &raw_card("expired-2m", visit)).await;
    assert_eq!(body(&r)["QualificationValidity"], "1", "{r}");
    assert_eq!(body(&r)["ProcessingResultCode"], "SIM-W2002", "{r}");
    // Expired 4 months before the visit → beyond grace (person-level error SIM-E1104).
    let r = raw.post(CARD_SEARCH, &raw_card("expired-4m", visit)).await;
    assert_eq!(body(&r)["ProcessingResultStatus"], "2", "{r}");
    assert_eq!(body(&r)["ProcessingResultCode"], "SIM-E1104", "{r}");
    // The certificate 5 months expired by the simulator's clock was in grace at a visit two
    // months after its expiry: measured on today this would be refused.
    let early = months_before(visit, 2);
    let r = raw.post(CARD_SEARCH, &raw_card("expired-4m", early)).await;
    assert_eq!(body(&r)["QualificationValidity"], "1", "{r}");
    assert_eq!(header(&r)["QualificationConfirmationDate"], yyyymmdd(early));

    // Through the client.
    let c = raw.client();
    match c.query_by_card(&card_query("expired-2m", visit)).await {
        Ok(Answer::Confirmed { notices, .. }) => {
            assert_eq!(notices.len(), 1);
            assert!(
                notices[0].message_ja().contains("猶予期間中"),
                "{notices:?}"
            );
        }
        other => panic!("expired 2 months before the visit: {other:?}"),
    }
    let e = c
        .query_by_card(&card_query("expired-4m", visit))
        .await
        .unwrap_err();
    assert!(matches!(e, QueryError::CertificateExpired), "{e:?}");
    assert!(!e.is_transient());
    let a = c.query_by_card(&card_query("expired-4m", early)).await;
    assert!(matches!(a, Ok(Answer::Confirmed { .. })), "{a:?}");
    raw.sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// §1.3: the consent flag is required.

#[tokio::test]
async fn consent_flag_is_required() {
    let raw = Raw::on(day()).await;
    let mut req = raw_search("valid-dependant", day());
    req["XmlMsg"]["MessageBody"]["QualificationConfirmSearchInfo"]
        .as_object_mut()
        .unwrap()
        .remove("LimitApplicationCertificateRelatedConsFlg");
    let r = raw.post(SEARCH, &req).await;
    let h = header(&r);
    assert_eq!(h["SegmentOfResult"], "9", "{r}");
    assert_eq!(h["ErrorCode"], "SIM-E0003", "{r}");
    assert!(r["XmlMsg"].get("MessageBody").is_none(), "{r}");

    // With the flag, the 限度額 information follows it.
    let r = raw
        .post(SEARCH, &raw_search("valid-dependant", day()))
        .await;
    assert_eq!(
        record(&r)["LimitApplicationCertificateRelatedInfo"]
            ["LimitApplicationCertificateClassificationFlag"],
        "A04"
    );
    // The client always sends it: "1" with consent, "0" without.
    let c = raw.client();
    let mut q = insurance_query("valid-dependant", day());
    for (consent, has_limit) in [(true, true), (false, false)] {
        q.limit_consent = consent;
        let Ok(Answer::Confirmed { qualification, .. }) = c.query_by_insurance(&q).await else {
            panic!("consent {consent}: not confirmed");
        };
        assert_eq!(
            qualification.limit.is_some(),
            has_limit,
            "consent {consent}"
        );
    }
    raw.sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// §2.3: InsuredCardValidDate is its own field; InsuredPartialContributionRatio only for 後期.

#[tokio::test]
async fn card_valid_date_is_its_own_field() {
    let raw = Raw::on(day()).await;
    let r = raw.post(SEARCH, &raw_search("kouki", day())).await;
    let rec = record(&r);
    assert_eq!(rec["QualificationDate"], "20170130", "{rec}");
    assert_eq!(rec["InsuredCardValidDate"], "20260801", "{rec}");
    assert_eq!(rec["InsuredCardExpirationDate"], "20270731", "{rec}");
    let Ok(Answer::Confirmed { qualification, .. }) = raw
        .client()
        .query_by_insurance(&insurance_query("kouki", day()))
        .await
    else {
        panic!("kouki not confirmed");
    };
    assert_eq!(
        qualification.qualification_date,
        NaiveDate::from_ymd_opt(2017, 1, 30)
    );
    assert_eq!(
        qualification.card_valid_from,
        NaiveDate::from_ymd_opt(2026, 8, 1)
    );
    raw.sim.shutdown().await;
}

#[tokio::test]
async fn contribution_ratio_only_for_late_elderly_and_copay_derived_for_everyone() {
    let raw = Raw::on(day()).await;
    let c = raw.client();
    // (card, ratio the daemon must tell staff, in percent)
    let cases = [
        ("kouki", Some(10)),
        ("elderly", Some(20)),
        ("preschool", Some(20)),
        ("infant", Some(20)),
        ("valid-employee", Some(30)),
        ("valid-dependant", Some(30)),
        ("kokuho", Some(30)),
    ];
    for (name, want) in cases {
        let r = raw.post(SEARCH, &raw_search(name, day())).await;
        let rec = record(&r);
        let late = rec["InsurerNumber"].as_str().unwrap().starts_with("39");
        assert_eq!(
            rec.get("InsuredPartialContributionRatio").is_some(),
            late,
            "{name}: the ratio is sent only for 後期高齢者: {rec}"
        );
        let Ok(a @ Answer::Confirmed { .. }) =
            c.query_by_insurance(&insurance_query(name, day())).await
        else {
            panic!("{name} not confirmed");
        };
        let Answer::Confirmed { qualification, .. } = &a else {
            unreachable!()
        };
        assert_eq!(qualification.ratio_percent, want, "{name}");
        assert_eq!(
            qualification
                .copay_on(day())
                .and_then(|i| i.ratio)
                .map(|r| r.percent()),
            want,
            "{name}"
        );
        let tenths = want.unwrap() / 10;
        assert!(
            a.message_ja().contains(&format!("負担割合 {tenths}割")),
            "{name}: {}",
            a.message_ja()
        );
    }
    // The 72-year-old's ratio comes from the 高齢受給者証: after it ends, staff are told to
    // look at the certificate rather than a guessed ratio.
    let Ok(Answer::Confirmed { qualification, .. }) = c
        .query_by_insurance(&insurance_query("elderly", day()))
        .await
    else {
        panic!("elderly not confirmed");
    };
    let after = qualification
        .elderly_valid_until
        .unwrap()
        .succ_opt()
        .unwrap();
    let i = qualification.copay_on(after).unwrap();
    assert_eq!(i.ratio, None);
    assert!(i.note_ja.contains("高齢受給者証"), "{}", i.note_ja);
    raw.sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// §2.1, §4: message-level errors carry the header echoes; SegmentOfResult 9 is "offline".

#[tokio::test]
async fn message_level_errors_echo_the_header_and_guide_the_operator_offline() {
    let raw = Raw::on(day()).await;
    // A request the system rejects: the echoes every answer carries are there.
    let mut req = raw_search("valid-employee", day());
    req["XmlMsg"]["MessageBody"]["QualificationConfirmSearchInfo"]["InsurerNumber"] =
        json!("139917");
    let r = raw.post(SEARCH, &req).await;
    let h = header(&r);
    assert_eq!(h["SegmentOfResult"], "9", "{r}");
    assert_eq!(h["ErrorCode"], "SIM-E0003");
    assert_eq!(h["QualificationConfirmationDate"], yyyymmdd(day()), "{r}");
    assert_eq!(h["MedicalInstitutionCode"], INSTITUTION, "{r}");
    assert_eq!(h["ReferenceClassification"], "2", "{r}");
    assert_eq!(h["ArbitraryFileIdentifier"], "rq-valid-employee", "{r}");
    assert!(
        h["ProcessExecutionTime"].as_str().unwrap().len() == 14,
        "{r}"
    );

    // An injected system error, on the card route.
    raw.sim.faults().set_mode(FaultMode::SystemError);
    let r = raw
        .post(CARD_SEARCH, &raw_card("valid-employee", day()))
        .await;
    let h = header(&r);
    assert_eq!(h["ErrorCode"], "SIM-E0900", "{r}");
    assert_eq!(h["QualificationConfirmationDate"], yyyymmdd(day()), "{r}");
    assert_eq!(h["MedicalInstitutionCode"], INSTITUTION, "{r}");
    assert_eq!(h["ReferenceClassification"], "1", "{r}");

    // Through the client: transient (reception captures the check) with the offline guidance.
    let c = raw.client();
    let e = c
        .query_by_card(&card_query("valid-employee", day()))
        .await
        .unwrap_err();
    assert!(matches!(&e, QueryError::SystemError { .. }), "{e:?}");
    assert!(e.is_transient());
    assert!(e
        .message_ja()
        .contains("通常の負担割合で受け付け、後で再確認します。"));
    raw.sim.shutdown().await;

    // A SegmentOfResult 9 whose code the client does not know: still offline, not a refusal.
    let mut config = scenario().sim_config();
    config.today = Some(day());
    config.codes.system_error = "OQS-E9001".into();
    let raw = Raw::start(config).await;
    raw.sim.faults().set_mode(FaultMode::SystemError);
    let e = raw
        .client()
        .query_by_insurance(&insurance_query("valid-employee", day()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, QueryError::MessageError { code, .. } if code == "OQS-E9001"),
        "{e:?}"
    );
    assert!(e.is_transient());
    assert_eq!(e.kind(), "message-error");
    assert_eq!(
        e.message_ja(),
        "資格確認システムが照会を処理できませんでした（OQS-E9001: （模擬）システムエラーが発生しました。しばらくしてから再度照会してください。）。通常の負担割合で受け付け、後で再確認します。"
    );
    // Told what the code means, the client calls it a system error.
    let c = raw
        .client()
        .with_result_codes(ResultCodes::reference().with("OQS-E9001", CodeMeaning::SystemError));
    let e = c
        .query_by_insurance(&insurance_query("valid-employee", day()))
        .await
        .unwrap_err();
    assert!(matches!(e, QueryError::SystemError { .. }), "{e:?}");
    raw.sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Codes outside the reference's catalogue are settings, on both sides.

#[tokio::test]
async fn card_codes_are_settings_on_both_sides() {
    let mut config = scenario().sim_config();
    config.today = Some(day());
    config.codes.expired_beyond_grace = "OQS-E2104".into();
    let raw = Raw::start(config).await;
    let r = raw.post(CARD_SEARCH, &raw_card("expired-4m", day())).await;
    assert_eq!(body(&r)["ProcessingResultCode"], "OQS-E2104", "{r}");
    // With the reference's table the client shows the unknown code as the system's text…
    let e = raw
        .client()
        .query_by_card(&card_query("expired-4m", day()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, QueryError::Rejected { code, .. } if code == "OQS-E2104"),
        "{e:?}"
    );
    // …and with the setting it knows what to tell staff.
    let c = raw.client().with_result_codes(
        ResultCodes::reference().with("OQS-E2104", CodeMeaning::CertificateExpired),
    );
    let e = c
        .query_by_card(&card_query("expired-4m", day()))
        .await
        .unwrap_err();
    assert!(matches!(e, QueryError::CertificateExpired), "{e:?}");
    raw.sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Unknown code value: malformed, reported, not retried in a loop.

fn captured(s: &Scenario, visit: NaiveDate) -> Captured {
    let profile = s.card("valid-employee").unwrap();
    Captured {
        visit_date: visit,
        facility: FacilityType::Medical,
        first_visit: false,
        next_visit: None,
        card: Some(CardRecord {
            method: IdentityMethod::Visual,
            certificate: base64::engine::general_purpose::STANDARD
                .encode(&profile.auth_certificate_der),
            challenge: None,
            signature: None,
            serial: String::new(),
        }),
        document: None,
        reason: Some("unreachable".into()),
        last_known: None,
        captured_at: now_jst(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_code_value_is_final_and_the_reconciler_does_not_loop() {
    let today = now_jst().date_naive();
    let s = scenario::standard(today).unwrap();
    let sim = Simulator::start(s.sim_config()).await.unwrap();
    sim.faults()
        .set_mode(FaultMode::Malformed(MalformedKind::UnknownCodeValue));
    let c = OqsClient::new(OqsConfig {
        base_url: sim.base_url(),
        institution_code: INSTITUTION.to_string(),
        timeout: Duration::from_secs(10),
    })
    .unwrap();

    // The client names it and calls it final: reception does not capture it for a retry
    // (workflow::perform captures only `is_transient` errors).
    let query = CardQuery {
        visit_date: today,
        method: IdentityMethod::Visual,
        certificate_der: s
            .card("valid-employee")
            .unwrap()
            .auth_certificate_der
            .clone(),
        challenge: None,
        signature: None,
        file_id: "ref-unknown-code".to_string(),
    };
    let e = c.query_by_card(&query).await.unwrap_err();
    assert!(
        matches!(&e, QueryError::UnknownCode { field, value } if field == "Sex1" && value == "9"),
        "{e:?}"
    );
    assert!(!e.is_transient());
    assert_eq!(e.kind(), "unknown-code");
    assert_eq!(
        e.message_ja(),
        "資格確認システムの応答に想定外のコード値（Sex1: 9）があり、結果を確定できません。資格確認書・マイナポータルの資格情報画面（PDF）など別の方法で資格を確認してください。この照会は自動では再照会しません。"
    );

    // A check captured earlier (line down) meets the same answer in 事後確認: the attempt is
    // recorded once with the error's name, the check waits for staff, and it is never asked
    // again — not on later passes, not with retry delays ignored, not by a new reconciler
    // (a restart).
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let id = new_check_id();
    ledger
        .record(&id, today, &CheckEvent::Captured(captured(&s, today)))
        .await
        .unwrap();
    let reconciler = Reconciler::new(ledger.clone(), c.background(), ReconcileConfig::default());
    let asked = sim.request_count();
    let first = reconciler.run_pass(now_jst(), false).await.unwrap();
    assert_eq!((first.failed, first.needs_staff), (0, 1), "{first:?}");
    assert_eq!(sim.request_count(), asked + 1);
    for force in [false, true, true] {
        let again = reconciler.run_pass(now_jst(), force).await.unwrap();
        assert_eq!(again.failed, 0, "{again:?}");
    }
    let restarted = Reconciler::new(ledger.clone(), c.background(), ReconcileConfig::default());
    restarted.run_pass(now_jst(), true).await.unwrap();
    assert_eq!(sim.request_count(), asked + 1, "asked again");
    assert_eq!(
        ledger.check(&id).unwrap().phase(),
        tsunagi::ledger::fold::Phase::NeedsStaff
    );
    let check = ledger.check(&id).unwrap();
    assert_eq!(check.attempts, 1);
    assert_eq!(check.last_error.as_deref(), Some("unknown-code"));
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Inconsistent answers are named.

#[tokio::test]
async fn inconsistent_answer_is_named_to_the_operator() {
    let raw = Raw::on(day()).await;
    raw.sim
        .faults()
        .set_mode(FaultMode::Malformed(MalformedKind::Inconsistent));
    let r = raw.post(SEARCH, &raw_search("valid-employee", day())).await;
    assert_eq!(body(&r)["QualificationValidity"], "1");
    assert_eq!(body(&r)["ResultList"].as_array().unwrap().len(), 2, "{r}");
    let e = raw
        .client()
        .query_by_insurance(&insurance_query("valid-employee", day()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            QueryError::Inconsistent(Inconsistency::ResultCount { validity, got: 2 }) if validity == "1"
        ),
        "{e:?}"
    );
    assert!(!e.is_transient());
    assert_eq!(e.kind(), "inconsistent");
    assert_eq!(
        e.message_ja(),
        "資格確認システムの応答が矛盾しています（資格有効性が「有効」なのに資格情報が2件あります）。結果を確定できないため、資格確認書・マイナポータルの資格情報画面（PDF）など別の方法で資格を確認してください。この照会は自動では再照会しません。"
    );
    raw.sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// §1.2: 6-digit insurer numbers padded with zeros; 記号 in either width.

#[tokio::test]
async fn zero_padded_six_digit_insurer_number() {
    let raw = Raw::on(day()).await;
    let mut req = raw_search("kokuho", day());
    let info = &mut req["XmlMsg"]["MessageBody"]["QualificationConfirmSearchInfo"];
    assert_eq!(info["InsurerNumber"], "  123456");
    info["InsurerNumber"] = json!("00123456");
    let r = raw.post(SEARCH, &req).await;
    assert_eq!(body(&r)["QualificationValidity"], "1", "{r}");
    assert_eq!(record(&r)["InsurerNumber"], "  123456");
    // Through the client, from a number typed with zeros.
    let mut q = insurance_query("kokuho", day());
    q.insurer = InsurerNumber::parse("00123456").unwrap();
    let Ok(Answer::Confirmed { qualification, .. }) = raw.client().query_by_insurance(&q).await
    else {
        panic!("zero-padded kokuho not confirmed");
    };
    assert_eq!(qualification.insurer_number.digits(), "123456");
    assert!(qualification.insurer_number.is_six_digit());
    raw.sim.shutdown().await;
}

#[tokio::test]
async fn full_width_symbol_matches() {
    let raw = Raw::on(day()).await;
    let mut req = raw_search("valid-employee", day());
    req["XmlMsg"]["MessageBody"]["QualificationConfirmSearchInfo"]["InsuredCardSymbol"] =
        json!("練馬１２");
    let r = raw.post(SEARCH, &req).await;
    assert_eq!(body(&r)["QualificationValidity"], "1", "{r}");
    // The client sends the symbol as typed and accepts the half-width record it gets back.
    let mut q = insurance_query("valid-employee", day());
    q.symbol = Some("練馬１２".to_string());
    let a = raw.client().query_by_insurance(&q).await;
    let Ok(Answer::Confirmed { qualification, .. }) = a else {
        panic!("full-width symbol: {a:?}");
    };
    assert_eq!(qualification.symbol.as_deref(), Some("練馬12"));
    raw.sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Answer size limit, with memory measured in a process of its own.

/// Peak resident set (VmHWM) of this process, in kB.
fn peak_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

const CHILD_ENV: &str = "TSUNAGI_OQS_REFERENCE_HUGE_CHILD";

#[test]
#[ignore = "run in its own process by huge_answer_is_refused_with_bounded_memory"]
fn huge_answer_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let raw = Raw::on(day()).await;
        let c = raw.client();
        // Warm everything up (connection pool, TLS-free HTTP stack, classifier) first.
        let warm = c
            .query_by_insurance(&insurance_query("valid-employee", day()))
            .await;
        assert!(matches!(warm, Ok(Answer::Confirmed { .. })), "{warm:?}");
        raw.sim
            .faults()
            .set_mode(FaultMode::Malformed(MalformedKind::Huge));
        let before = peak_kb();
        let r = c
            .query_by_insurance(&insurance_query("valid-employee", day()))
            .await;
        let after = peak_kb();
        println!("HUGE-RESULT {r:?}");
        println!("HUGE-PEAK-KB {before} {after}");
        raw.sim.shutdown().await;
    });
}

#[test]
fn huge_answer_is_refused_with_bounded_memory() {
    // The simulator streams a well-formed 200 MiB answer with no Content-Length. Before the
    // limit, the client read it whole: a peak of 417,536 kB for one query (measured on the
    // previous client with the same 200 MB answer). Now it stops at 1 MiB.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "huge_answer_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The harness prints "test huge_answer_child ... " on the same line as the first output.
    let after = |tag: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(tag).map(|(_, rest)| rest.to_string()))
            .unwrap_or_else(|| panic!("no {tag}in {stdout}"))
    };
    let result = after("HUGE-RESULT ");
    assert!(result.starts_with("Err(Malformed"), "{result}");
    assert!(
        result.contains("over the limit of 1048576 bytes"),
        "{result}"
    );
    let peaks: Vec<u64> = after("HUGE-PEAK-KB ")
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    let grown = peaks[1].saturating_sub(peaks[0]);
    println!(
        "peak before {} kB, after {} kB, grown {grown} kB",
        peaks[0], peaks[1]
    );
    assert!(
        grown < 16 * 1024,
        "the peak grew by {grown} kB for one refused answer"
    );
}
