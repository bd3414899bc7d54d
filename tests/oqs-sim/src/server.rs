//! HTTP side: axum routes, request validation, and the listener loops.
//!
//! Routes of the main listener (wire.md §1–§3):
//! * `POST /oqs-api-pro/MSA12020/ILI12020SV01/auth` — login.
//! * `POST /oqs-api-pro/MSA01030/ILI01030SV01/search` — search by insurance data.
//! * `POST /tsunagi-ext/v1/card-search` — search by card.
//!
//! Admin listener: `GET`/`POST /_sim/faults`.
//!
//! Decisions the contract left open:
//! * Message-level errors are always HTTP 200 with SegmentOfResult 9, even when the body is
//!   not JSON at all (SIM-E0001), so a client needs only one path for them. They carry the
//!   header echoes every answer carries: ReferenceClassification (from the route), the
//!   institution (the request's, else the one the token was issued to), and the date and file
//!   id when the request sent them as strings, even if they were what was wrong.
//! * Faults other than Refuse and Delay hit only the two search routes; login keeps working,
//!   so a test sees the fault on the search it makes and not on the login before it.
//! * The main listener is served by a hand-written accept loop: Refuse drops the listener and
//!   aborts every open connection, and clearing it binds the same port again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use chrono::{NaiveDate, NaiveDateTime, TimeDelta, Utc};
use rand::RngCore;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::codes::SimCodes;
use crate::faults::{FaultMode, FaultRequest, Faults, MalformedKind, HUGE_ANSWER_BYTES};
use crate::message::{
    parse_yyyymmdd, yyyymmdd, ElderlyRecipientCertificateInfo, Envelope,
    LimitApplicationCertificateRelatedInfo, LoginResponse, LoginTokens, QualificationResult,
    ResultBody, ResultEnvelope, ResultHeader, ResultItem, ResultMessage, SearchInfo,
};
use crate::model::{InsuranceKey, InsurerNumber, Lookup, Person, Population, Qualification};
use crate::registry::{CardOperation, CertRegistry, IdentityMethod};

/// Login path.
pub const LOGIN_PATH: &str = "/oqs-api-pro/MSA12020/ILI12020SV01/auth";
/// Search-by-insurance-data path.
pub const SEARCH_PATH: &str = "/oqs-api-pro/MSA01030/ILI01030SV01/search";
/// Card-search path.
pub const CARD_SEARCH_PATH: &str = "/tsunagi-ext/v1/card-search";
/// Admin path for faults.
pub const FAULTS_PATH: &str = "/_sim/faults";
/// Response header with the simulator's own processing time.
pub const PROCESSING_MICROS_HEADER: &str = "x-sim-processing-micros";

/// State shared by all handlers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) population: Population,
    pub(crate) registry: CertRegistry,
    pub(crate) institutions: Vec<String>,
    pub(crate) today: Option<NaiveDate>,
    pub(crate) token_lifetime: Duration,
    pub(crate) codes: SimCodes,
    pub(crate) tokens: Mutex<HashMap<String, (String, Instant)>>,
    pub(crate) faults: Faults,
    pub(crate) requests: AtomicU64,
    pub(crate) logins: AtomicU64,
}

impl Shared {
    /// The simulator's JST wall clock: the real time of day, on the overridden date if any.
    pub(crate) fn now_jst(&self) -> NaiveDateTime {
        let real = Utc::now().naive_utc() + TimeDelta::hours(9);
        match self.today {
            Some(d) => d.and_time(real.time()),
            None => real,
        }
    }
}

/// The main router.
pub(crate) fn main_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(LOGIN_PATH, post(login))
        .route(SEARCH_PATH, post(search))
        .route(CARD_SEARCH_PATH, post(card_search))
        .with_state(shared)
}

/// The admin router.
pub(crate) fn admin_router(faults: Faults) -> Router {
    Router::new()
        .route(FAULTS_PATH, get(get_faults).post(post_faults))
        .with_state(faults)
}

async fn get_faults(State(f): State<Faults>) -> Json<FaultRequest> {
    Json(FaultRequest {
        mode: Some(f.mode()),
        delay_ms: Some(u64::try_from(f.delay().as_millis()).unwrap_or(u64::MAX)),
    })
}

async fn post_faults(State(f): State<Faults>, body: Bytes) -> Response {
    match serde_json::from_slice::<FaultRequest>(&body) {
        Ok(req) => {
            if let Some(m) = req.mode {
                f.set_mode(m);
            }
            if let Some(ms) = req.delay_ms {
                f.set_delay(Duration::from_millis(ms));
            }
            tracing::info!(mode = ?f.mode(), delay = ?f.delay(), "faults set");
            get_faults(State(f)).await.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Login

async fn login(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    s.logins.fetch_add(1, Ordering::Relaxed);
    delay(&s).await;
    let fail = |status: StatusCode, msg: &str| {
        let body = LoginResponse {
            status: "1".into(),
            msg: msg.into(),
            result: None,
        };
        (status, Json(body)).into_response()
    };
    let code = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.get("MedicalInstitutionCode")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let Some(code) = code else {
        return fail(
            StatusCode::BAD_REQUEST,
            "MedicalInstitutionCode is required",
        );
    };
    if !s.institutions.contains(&code) {
        return fail(StatusCode::UNAUTHORIZED, "unknown institution");
    }
    let id_token = random_token();
    s.tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id_token.clone(), (code, Instant::now() + s.token_lifetime));
    let body = LoginResponse {
        status: "0".into(),
        msg: String::new(),
        result: Some(LoginTokens {
            access_token: random_token(),
            refresh_token: random_token(),
            id_token,
            link_sys_char_cd: "1".into(),
        }),
    };
    Json(body).into_response()
}

fn random_token() -> String {
    let mut b = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

// ---------------------------------------------------------------------------------------------
// Searches

#[derive(Clone, Copy, PartialEq, Eq)]
enum Operation {
    Insurance,
    Card,
}

impl Operation {
    /// ReferenceClassification (OQSCD002): `1` card, `2` insurance data.
    fn reference_classification(self) -> &'static str {
        match self {
            Operation::Card => "1",
            Operation::Insurance => "2",
        }
    }
}

async fn search(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(s, headers, body, Operation::Insurance).await
}

async fn card_search(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(s, headers, body, Operation::Card).await
}

async fn delay(s: &Shared) {
    let d = s.faults.delay();
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

async fn handle(s: Arc<Shared>, headers: HeaderMap, body: Bytes, op: Operation) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    delay(&s).await;
    let started = Instant::now();
    match s.faults.mode() {
        FaultMode::ServerError(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let html = format!(
                "<!DOCTYPE html><html><head><title>{status}</title></head>\
                 <body><h1>{status}</h1><p>oqs-sim injected fault</p></body></html>"
            );
            return (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response();
        }
        FaultMode::RateLimit { retry_after_secs } => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after_secs.to_string())],
                "rate limited",
            )
                .into_response();
        }
        FaultMode::Malformed(
            kind @ (MalformedKind::TruncatedJson
            | MalformedKind::NotJson
            | MalformedKind::WrongTypes
            | MalformedKind::Huge),
        ) => return malformed(kind),
        FaultMode::Malformed(MalformedKind::UnknownCodeValue | MalformedKind::Inconsistent)
        | FaultMode::None
        | FaultMode::Refuse
        | FaultMode::SystemError => {}
    }
    let token_institution = match authorize(&s, &headers) {
        Some(i) => i,
        None => {
            let body = LoginResponse {
                status: "1".into(),
                msg: "unauthorized".into(),
                result: None,
            };
            return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
        }
    };
    let now = s.now_jst();
    let envelope = if s.faults.mode() == FaultMode::SystemError {
        let echo = Echo::of_request(&body, op, &token_institution);
        message_error(
            now,
            &echo,
            &s.codes.system_error,
            "（模擬）システムエラーが発生しました。しばらくしてから再度照会してください。",
        )
    } else {
        let mut envelope = process(&s, &body, op, &token_institution, now);
        if let FaultMode::Malformed(kind) = s.faults.mode() {
            spoil(&mut envelope, kind);
        }
        envelope
    };
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let mut resp = Json(envelope).into_response();
    if let Ok(v) = HeaderValue::from_str(&micros.to_string()) {
        resp.headers_mut().insert(PROCESSING_MICROS_HEADER, v);
    }
    resp
}

/// The institution the token was issued to, if the token is known and fresh.
fn authorize(s: &Shared, headers: &HeaderMap) -> Option<String> {
    let token = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let mut tokens = s.tokens.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    tokens.retain(|_, (_, exp)| *exp > now);
    tokens.get(token).map(|(i, _)| i.clone())
}

fn malformed(kind: MalformedKind) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    match kind {
        MalformedKind::TruncatedJson => {
            let full = r#"{"XmlMsg":{"MessageHeader":{"SegmentOfResult":"1","CharacterCodeIdentifier":"0"},"MessageBody":{"ProcessingResultStatus":"1","QualificationValidity":"1","ResultList":[{"ResultOfQualificationConfirmation":{"InsurerNumber":"06139999","Name":"診療　太郎"}}]}}}"#;
            (json, full[..full.len() / 2].to_owned()).into_response()
        }
        MalformedKind::NotJson => (json, "this is not JSON\n").into_response(),
        MalformedKind::WrongTypes => {
            let body = serde_json::json!({"XmlMsg":{
                "MessageHeader":{"SegmentOfResult":1,"CharacterCodeIdentifier":0},
                "MessageBody":{"ProcessingResultStatus":1,"QualificationValidity":1,
                    "ResultList":[{"ResultOfQualificationConfirmation":{
                        "InsurerNumber":6139999,"InsuredBranchNumber":0,"Birthdate":19800401}}]}}});
            (json, body.to_string()).into_response()
        }
        MalformedKind::Huge => (json, huge_body()).into_response(),
        // Answered from the request (see `spoil`); never reached.
        MalformedKind::UnknownCodeValue | MalformedKind::Inconsistent => {
            (json, "{}").into_response()
        }
    }
}

/// Makes a real answer well-formed but wrong, for the faults that need one.
fn spoil(envelope: &mut ResultEnvelope, kind: MalformedKind) {
    let Some(body) = envelope.xml_msg.message_body.as_mut() else {
        return;
    };
    match kind {
        MalformedKind::UnknownCodeValue => {
            for item in body.result_list.iter_mut().flatten() {
                item.result.sex1 = Some("9".into());
            }
        }
        MalformedKind::Inconsistent => {
            if let Some(list) = body.result_list.as_mut() {
                let twice: Vec<ResultItem> = list.iter().chain(list.iter()).cloned().collect();
                *list = twice;
                body.qualification_validity = Some("1".into());
            }
        }
        MalformedKind::TruncatedJson
        | MalformedKind::NotJson
        | MalformedKind::WrongTypes
        | MalformedKind::Huge => {}
    }
}

/// A well-formed "no match" envelope with a padding element that makes it
/// [`HUGE_ANSWER_BYTES`] long, streamed from one shared 64 KiB chunk (no `Content-Length`).
fn huge_body() -> axum::body::Body {
    const PREFIX: &str = r#"{"XmlMsg":{"MessageHeader":{"SegmentOfResult":"1","ReferenceClassification":"2","CharacterCodeIdentifier":"0"},"MessageBody":{"ProcessingResultStatus":"1","QualificationValidity":"4","Padding":""#;
    const SUFFIX: &str = r#""}}}"#;
    const CHUNK: usize = 64 * 1024;
    static PAD: [u8; CHUNK] = [b'x'; CHUNK];
    let pad_len = HUGE_ANSWER_BYTES - (PREFIX.len() + SUFFIX.len()) as u64;
    let full = pad_len / CHUNK as u64;
    let rest = (pad_len % CHUNK as u64) as usize;
    let chunks = std::iter::once(Bytes::from_static(PREFIX.as_bytes()))
        .chain((0..full).map(|_| Bytes::from_static(&PAD)))
        .chain(std::iter::once(Bytes::from_static(&PAD[..rest])))
        .chain(std::iter::once(Bytes::from_static(SUFFIX.as_bytes())))
        .map(Ok::<_, std::convert::Infallible>);
    axum::body::Body::from_stream(tokio_stream::iter(chunks))
}

/// A message-level error (SegmentOfResult 9), with the header echoes.
fn message_error(now: NaiveDateTime, echo: &Echo, code: &str, message: &str) -> ResultEnvelope {
    let header = ResultHeader {
        process_execution_time: Some(now.format("%Y%m%d%H%M%S").to_string()),
        qualification_confirmation_date: echo.date.clone(),
        medical_institution_code: echo.institution.clone(),
        arbitrary_file_identifier: echo.file_id.clone(),
        reference_classification: Some(echo.reference_classification.into()),
        segment_of_result: "9".into(),
        error_code: Some(code.into()),
        error_message: Some(message.into()),
        character_code_identifier: Some("0".into()),
    };
    Envelope {
        xml_msg: ResultMessage {
            message_header: header,
            message_body: None,
        },
    }
}

/// What the result header echoes from the request.
struct Echo {
    reference_classification: &'static str,
    institution: Option<String>,
    date: Option<String>,
    file_id: Option<String>,
}

impl Echo {
    /// The echoes of a request read leniently: string header fields as sent, the token's
    /// institution when the request names none.
    fn of_request(body: &[u8], op: Operation, token_institution: &str) -> Echo {
        let root: Option<Value> = serde_json::from_slice(body).ok();
        let header = root
            .as_ref()
            .and_then(|r| r.pointer("/XmlMsg/MessageHeader"))
            .and_then(Value::as_object);
        let field = |name: &str| {
            header
                .and_then(|h| h.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Echo {
            reference_classification: op.reference_classification(),
            institution: field("MedicalInstitutionCode")
                .or_else(|| Some(token_institution.to_owned())),
            date: field("QualificationConfirmationDate"),
            file_id: field("ArbitraryFileIdentifier"),
        }
    }
}

/// Which setting's code a message-level rejection carries.
#[derive(Clone, Copy)]
enum RejectCode {
    Unparseable,
    Institution,
    RequestField,
}

/// A message-level rejection.
struct Reject {
    code: RejectCode,
    message: String,
}

fn e0003(message: impl Into<String>) -> Reject {
    Reject {
        code: RejectCode::RequestField,
        message: message.into(),
    }
}

/// An optional string field: absent or null is `None`; another type is an error.
fn opt_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, Reject> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(e0003(format!("（模擬）{field} の型が不正です"))),
    }
}

fn req_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, Reject> {
    opt_str(obj, field)?.ok_or_else(|| e0003(format!("（模擬）{field} がありません")))
}

fn process(
    s: &Shared,
    body: &[u8],
    op: Operation,
    token_institution: &str,
    now: NaiveDateTime,
) -> ResultEnvelope {
    match process_inner(s, body, op, token_institution, now) {
        Ok(env) => env,
        Err(r) => {
            let code = match r.code {
                RejectCode::Unparseable => &s.codes.unparseable,
                RejectCode::Institution => &s.codes.institution,
                RejectCode::RequestField => &s.codes.request_field,
            };
            let echo = Echo::of_request(body, op, token_institution);
            message_error(now, &echo, code, &r.message)
        }
    }
}

fn process_inner(
    s: &Shared,
    body: &[u8],
    op: Operation,
    token_institution: &str,
    now: NaiveDateTime,
) -> Result<ResultEnvelope, Reject> {
    let e0001 = || Reject {
        code: RejectCode::Unparseable,
        message: "（模擬）要求電文を解析できません".into(),
    };
    let root: Value = serde_json::from_slice(body).map_err(|_| e0001())?;
    let msg = root
        .get("XmlMsg")
        .and_then(Value::as_object)
        .ok_or_else(e0001)?;
    let e0002 = |m: &str| Reject {
        code: RejectCode::Institution,
        message: format!("（模擬）医療機関コード{m}"),
    };
    let empty = Map::new();
    let header = match msg.get("MessageHeader") {
        Some(Value::Object(h)) => h,
        None => &empty,
        Some(_) => return Err(e0003("（模擬）MessageHeader の型が不正です")),
    };
    let institution = match header.get("MedicalInstitutionCode") {
        Some(Value::String(c)) => c,
        None | Some(Value::Null) => return Err(e0002("がありません")),
        Some(_) => return Err(e0002("の型が不正です")),
    };
    let file_id = opt_str(header, "ArbitraryFileIdentifier")?.map(str::to_owned);
    if institution.len() != 10 || !institution.bytes().all(|b| b.is_ascii_digit()) {
        return Err(e0002("は10桁の数字で指定してください"));
    }
    if !s.institutions.contains(institution) || institution != token_institution {
        return Err(e0002("が登録されていません"));
    }
    let date_text = req_str(header, "QualificationConfirmationDate")?;
    let date = parse_yyyymmdd(date_text)
        .ok_or_else(|| e0003("（模擬）資格確認日の形式が不正です（yyyyMMdd）"))?;
    let body = match msg.get("MessageBody") {
        Some(Value::Object(b)) => b,
        None => return Err(e0003("（模擬）MessageBody がありません")),
        Some(_) => return Err(e0003("（模擬）MessageBody の型が不正です")),
    };
    let result_header = ResultHeader {
        process_execution_time: Some(now.format("%Y%m%d%H%M%S").to_string()),
        qualification_confirmation_date: Some(date_text.to_owned()),
        medical_institution_code: Some(institution.clone()),
        arbitrary_file_identifier: file_id,
        reference_classification: Some(op.reference_classification().into()),
        segment_of_result: "1".into(),
        character_code_identifier: Some("0".into()),
        ..ResultHeader::default()
    };
    let result_body = match op {
        Operation::Insurance => insurance_search(s, body, date, now)?,
        Operation::Card => card_search_body(s, body, institution, date, now)?,
    };
    Ok(Envelope {
        xml_msg: ResultMessage {
            message_header: result_header,
            message_body: Some(result_body),
        },
    })
}

fn insurance_search(
    s: &Shared,
    body: &Map<String, Value>,
    date: NaiveDate,
    now: NaiveDateTime,
) -> Result<ResultBody, Reject> {
    let info = match body.get("QualificationConfirmSearchInfo") {
        Some(Value::Object(i)) => i,
        None => return Err(e0003("（模擬）QualificationConfirmSearchInfo がありません")),
        Some(_) => {
            return Err(e0003(
                "（模擬）QualificationConfirmSearchInfo の型が不正です",
            ))
        }
    };
    let insurer_text = req_str(info, "InsurerNumber")?;
    let insurer = InsurerNumber::from_wire(insurer_text)
        .map_err(|_| e0003("（模擬）保険者番号の桁数が不正です"))?;
    let symbol = opt_str(info, "InsuredCardSymbol")?.filter(|s| !s.is_empty());
    if symbol.is_some_and(|s| s.chars().count() > 20) {
        return Err(e0003("（模擬）被保険者証記号が長すぎます"));
    }
    let number = req_str(info, "InsuredIdentificationNumber")?;
    if number.is_empty() || number.chars().count() > 20 {
        return Err(e0003("（模擬）被保険者証番号の桁数が不正です"));
    }
    let branch = opt_str(info, "InsuredBranchNumber")?.filter(|s| !s.is_empty());
    if branch.is_some_and(|b| b.len() != 2 || !b.bytes().all(|c| c.is_ascii_digit())) {
        return Err(e0003("（模擬）被保険者証枝番は2桁の数字で指定してください"));
    }
    let birth_text = req_str(info, "Birthdate")?;
    let birthdate = parse_yyyymmdd(birth_text)
        .ok_or_else(|| e0003("（模擬）生年月日の形式が不正です（yyyyMMdd）"))?;
    // Required by the reference (§1.3, OQSCD001): the patient's answer must be sent either way.
    let consent = opt_str(info, "LimitApplicationCertificateRelatedConsFlg")?
        .ok_or_else(|| e0003("（模擬）限度額適用認定証提供同意フラグがありません"))?;
    if consent != "0" && consent != "1" {
        return Err(e0003("（模擬）限度額適用認定証提供同意フラグが不正です"));
    }
    let echo_info = SearchInfo {
        insurer_number: insurer_text.to_owned(),
        insured_card_symbol: symbol.map(str::to_owned),
        insured_identification_number: number.to_owned(),
        insured_branch_number: branch.map(str::to_owned),
        birthdate: birth_text.to_owned(),
        limit_application_certificate_related_cons_flg: consent.to_owned(),
        arbitrary_identifier: opt_str(info, "ArbitraryIdentifier")?.map(str::to_owned),
    };
    if birthdate > date {
        return Ok(ResultBody {
            qualification_confirm_search_info: Some(echo_info),
            processing_result_status: "2".into(),
            processing_result_code: Some(s.codes.search_key.clone()),
            processing_result_message: Some(
                "（模擬）検索条件が不正です（生年月日が未来日付です）".into(),
            ),
            ..ResultBody::default()
        });
    }
    let key = InsuranceKey {
        insurer,
        symbol: symbol.map(str::to_owned),
        number: number.to_owned(),
        branch: branch.map(str::to_owned),
        birthdate,
    };
    let lookup = s.population.lookup_by_insurance(&key, date);
    let mut body = lookup_body(&lookup, consent == "1", now);
    body.qualification_confirm_search_info = Some(echo_info);
    Ok(body)
}

fn card_search_body(
    s: &Shared,
    body: &Map<String, Value>,
    institution: &str,
    date: NaiveDate,
    now: NaiveDateTime,
) -> Result<ResultBody, Reject> {
    let auth = match body.get("TsunagiCardAuthentication") {
        Some(Value::Object(a)) => a,
        None => return Err(e0003("（模擬）TsunagiCardAuthentication がありません")),
        Some(_) => return Err(e0003("（模擬）TsunagiCardAuthentication の型が不正です")),
    };
    let method = match req_str(auth, "IdentityMethod")? {
        "1" => IdentityMethod::Pin,
        "2" => IdentityMethod::Visual,
        _ => return Err(e0003("（模擬）本人確認方法が不正です")),
    };
    let b64 = |field: &str| -> Result<Option<Vec<u8>>, Reject> {
        opt_str(auth, field)?
            .map(|t| {
                base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .map_err(|_| e0003(format!("（模擬）{field} の形式が不正です（base64）")))
            })
            .transpose()
    };
    let certificate_der = b64("Certificate")?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| e0003("（模擬）Certificate がありません"))?;
    let challenge = b64("Challenge")?;
    let signature = b64("Signature")?;
    if method == IdentityMethod::Pin && (challenge.is_none() || signature.is_none()) {
        return Err(e0003(
            "（模擬）暗証番号方式では Challenge と Signature が必要です",
        ));
    }
    let consent = opt_str(auth, "LimitApplicationCertificateRelatedConsFlg")?;
    if consent.is_some_and(|c| c != "0" && c != "1") {
        return Err(e0003("（模擬）限度額適用認定証提供同意フラグが不正です"));
    }
    let op = CardOperation {
        method,
        certificate_der,
        challenge,
        signature,
    };
    let card = match s.registry.verify(&op, institution, now, date) {
        Ok(c) => c,
        Err(e) => {
            let code = s.codes.card_error(e);
            tracing::debug!(code, "card refused");
            return Ok(ResultBody {
                processing_result_status: "2".into(),
                processing_result_code: Some(code.into()),
                processing_result_message: Some(e.message_ja().into()),
                ..ResultBody::default()
            });
        }
    };
    let lookup = match &card.person_id {
        Some(id) => s.population.lookup_by_person(id, date),
        None => s.population.lookup_by_person("", date),
    };
    let mut body = lookup_body(&lookup, consent != Some("0"), now);
    if let Some(w) = card.warning {
        body.processing_result_code = Some(s.codes.warning(w).into());
        body.processing_result_message = Some(w.message_ja().into());
    }
    Ok(body)
}

fn lookup_body(lookup: &Lookup<'_>, consent: bool, now: NaiveDateTime) -> ResultBody {
    let list: Vec<ResultItem> = lookup
        .records
        .iter()
        .map(|(p, q)| ResultItem {
            result: record(p, q, consent, now),
        })
        .collect();
    ResultBody {
        processing_result_status: "1".into(),
        qualification_validity: Some(lookup.validity.code().into()),
        result_list: (!list.is_empty()).then_some(list),
        ..ResultBody::default()
    }
}

/// One `ResultOfQualificationConfirmation`.
pub(crate) fn record(
    p: &Person,
    q: &Qualification,
    consent: bool,
    now: NaiveDateTime,
) -> QualificationResult {
    let limit = q.limit.as_ref().filter(|_| consent);
    QualificationResult {
        insured_card_classification: Some(q.card_classification.clone()),
        insurer_number: Some(q.insurer.wire()),
        insured_card_symbol: q.symbol.clone(),
        insured_identification_number: Some(q.number.clone()),
        insured_branch_number: q.branch.clone(),
        personal_family_classification: Some(q.personal_family.code().into()),
        insured_name: q.insured_name.clone(),
        name: Some(p.name.clone()),
        name_kana: Some(p.kana.clone()),
        sex1: Some(p.sex.code().into()),
        birthdate: Some(yyyymmdd(p.birthdate)),
        address: p.address.clone(),
        post_number: p.post_number.clone(),
        qualification_date: Some(yyyymmdd(q.qualification_date)),
        disqualification_date: q.disqualification.as_ref().map(|d| yyyymmdd(d.date)),
        insured_certificate_issuance_date: q.card_issued.map(yyyymmdd),
        insured_card_valid_date: q.card_valid_from.map(yyyymmdd),
        insured_card_expiration_date: q.card_expires.map(yyyymmdd),
        // The reference: set mainly for 後期高齢者. Sent only for them, so that a client cannot
        // lean on it for anyone else.
        insured_partial_contribution_ratio: q
            .ratio
            .filter(|_| q.insurer.is_late_elderly())
            .map(|r| r.code().into()),
        preschool_classification: q.preschool.then(|| "1".into()),
        reason_of_loss: q.disqualification.as_ref().map(|d| d.reason.code().into()),
        insurer_name: Some(q.insurer_name.clone()),
        elderly_recipient_certificate_info: q.elderly.as_ref().map(|e| {
            ElderlyRecipientCertificateInfo {
                elderly_recipient_certificate_date: Some(yyyymmdd(e.issued)),
                elderly_recipient_valid_start_date: Some(yyyymmdd(e.valid_from)),
                elderly_recipient_valid_end_date: Some(yyyymmdd(e.valid_until)),
                elderly_recipient_contribution_ratio: Some(e.ratio.code().into()),
            }
        }),
        limit_application_certificate_related_cons_flg: limit.map(|_| "1".into()),
        limit_application_certificate_related_cons_time: limit
            .map(|_| now.format("%Y%m%d%H%M%S").to_string()),
        limit_application_certificate_related_info: limit.map(|l| {
            LimitApplicationCertificateRelatedInfo {
                limit_application_certificate_classification: Some(l.classification.clone()),
                limit_application_certificate_classification_flag: Some(l.bracket.clone()),
                limit_application_certificate_date: Some(yyyymmdd(l.issued)),
                limit_application_certificate_valid_start_date: Some(yyyymmdd(l.valid_from)),
                limit_application_certificate_valid_end_date: Some(yyyymmdd(l.valid_until)),
            }
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Listener loops

/// Serves the main router on `listener` until `shutdown` turns true, closing the listener
/// and every connection while the fault mode is Refuse and binding `addr` again after.
pub(crate) async fn run_main(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    router: Router,
    faults: Faults,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut modes = faults.subscribe();
    loop {
        if let Some(l) = listener.take() {
            // Listening: runs until Refuse or shutdown. Dropping `conns` aborts every open
            // connection, so pooled keep-alive connections die with the listener.
            let mut conns = JoinSet::new();
            loop {
                if modes.borrow_and_update().mode == FaultMode::Refuse {
                    break;
                }
                tokio::select! {
                    _ = shutdown.changed() => return,
                    r = modes.changed() => if r.is_err() { return },
                    acc = l.accept() => match acc {
                        Ok((stream, _)) => {
                            // The mode may have changed since the watch was last read.
                            if faults.mode() == FaultMode::Refuse {
                                continue;
                            }
                            conns.spawn(serve_connection(stream, router.clone()));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            drop(l);
            drop(conns);
            tracing::info!(%addr, "refusing connections");
        }
        // Refusing: wait until the mode changes away from Refuse, then bind again.
        while modes.borrow_and_update().mode == FaultMode::Refuse {
            tokio::select! {
                _ = shutdown.changed() => return,
                r = modes.changed() => if r.is_err() { return },
            }
        }
        if let Some(l) = faults
            .take_ready()
            .and_then(|l| TcpListener::from_std(l).ok())
        {
            tracing::info!(%addr, "listening again");
            listener = Some(l);
            continue;
        }
        loop {
            match TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(%addr, "listening again");
                    listener = Some(l);
                    break;
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "rebind failed, retrying");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            }
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, router: Router) {
    let io = hyper_util::rt::TokioIo::new(stream);
    let svc = hyper_util::service::TowerToHyperService::new(router);
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .await
    {
        tracing::debug!(error = %e, "connection ended with error");
    }
}
