//! The standard scenario: a fixed cast of fictional patients, each with a virtual card, built
//! for a given `today` so that every situation (valid, lost, expired certificate, …) holds on
//! that day.
//!
//! Keys come from vcard's disk-cached key pool (key 0 is the CA, keys 1.. the cards) and
//! serials are fixed, so the same `today` always yields the same scenario.

use std::collections::HashMap;

use chrono::{Datelike, Months, NaiveDate};
use tsunagi_vcard::card::{CardError, CardProfile};
use tsunagi_vcard::pki::{key_pool, PkiError, TestCa};

use crate::model::{
    latest_key, Disqualification, ElderlyRecipient, InsuranceKey, InsurerNumber, LimitCertificate,
    Person, PersonalFamily, Population, Qualification, Ratio, ReasonOfLoss, Sex,
};
use crate::registry::{CertRegistry, RegistryError};
use crate::SimConfig;

/// The registered institution of the standard scenario.
pub const INSTITUTION_CODE: &str = "1319900017";

/// First certificate serial; card `i` (0-based, in [`CARD_NAMES`] order) gets `SERIAL_BASE + i`.
pub const SERIAL_BASE: u64 = 1001;

/// The cards of the standard scenario, in a fixed order.
pub const CARD_NAMES: [&str; 15] = [
    "valid-employee",
    "valid-dependant",
    "kouki",
    "kokuho",
    "preschool",
    "elderly",
    "lost",
    "lost-newer",
    "no-coverage",
    "multiple",
    "infant",
    "expired-2m",
    "expired-4m",
    "revoked",
    "expiring-soon",
];

/// Building the scenario failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// Keys or certificates could not be made.
    #[error("test PKI: {0}")]
    Pki(#[from] PkiError),
    /// A card profile could not be made.
    #[error("card profile: {0}")]
    Card(#[from] CardError),
    /// The registry refused the CA certificate.
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    /// `today` is too close to the ends of the calendar.
    #[error("date out of range around {0}")]
    Date(NaiveDate),
}

/// A built scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The registered institution (`1319900017`).
    pub institution_code: String,
    /// The day the situations hold.
    pub today: NaiveDate,
    cards: Vec<(String, CardProfile)>,
    people: HashMap<String, String>,
    population: Population,
    registry: CertRegistry,
}

impl Scenario {
    /// The virtual card of a patient.
    pub fn card(&self, name: &str) -> Option<&CardProfile> {
        self.cards.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// All card names, in [`CARD_NAMES`] order.
    pub fn card_names(&self) -> Vec<&str> {
        self.cards.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// A config serving this scenario, with the clock fixed to `today`.
    pub fn sim_config(&self) -> SimConfig {
        let mut c = SimConfig::new(
            self.population.clone(),
            self.registry.clone(),
            vec![self.institution_code.clone()],
        );
        c.today = Some(self.today);
        c
    }

    /// The card data of the patient's latest qualification (none for `no-coverage`).
    pub fn insurance_of(&self, name: &str) -> Option<InsuranceKey> {
        self.person(name).and_then(latest_key)
    }

    /// The patient's record.
    pub fn person(&self, name: &str) -> Option<&Person> {
        self.people
            .get(name)
            .and_then(|id| self.population.person(id))
    }

    /// The certificate serial of a patient's card.
    pub fn serial_of(&self, name: &str) -> Option<u64> {
        let i = CARD_NAMES.iter().position(|n| *n == name)?;
        Some(SERIAL_BASE + i as u64)
    }

    /// The test CA certificate, DER.
    pub fn ca_certificate_der(&self) -> &[u8] {
        self.registry.ca_certificate_der()
    }

    /// The population.
    pub fn population(&self) -> &Population {
        &self.population
    }

    /// The certificate registry.
    pub fn registry(&self) -> &CertRegistry {
        &self.registry
    }
}

/// The standard scenario for `today`.
pub fn standard(today: NaiveDate) -> Result<Scenario, ScenarioError> {
    let out = || ScenarioError::Date(today);
    let months_before = |n: u32| today.checked_sub_months(Months::new(n)).ok_or_else(out);
    let months_after = |n: u32| today.checked_add_months(Months::new(n)).ok_or_else(out);
    let this_month = today.with_day(1).ok_or_else(out)?;
    let next_month = this_month
        .checked_add_months(Months::new(1))
        .ok_or_else(out)?;

    let mut keys = key_pool(CARD_NAMES.len() + 1)?.into_iter();
    let ca_key = keys.next().ok_or_else(out)?;
    let ca = TestCa::generate(ca_key, months_before(120)?, months_after(120)?)?;
    let ca_der = ca.certificate_der().to_vec();
    let mut registry = CertRegistry::new(&ca_der)?;
    let mut population = Population::new();
    let mut people = HashMap::new();
    let mut cards = Vec::new();

    for (i, name) in CARD_NAMES.iter().enumerate() {
        let serial = SERIAL_BASE + i as u64;
        let person = person_for(name, today, this_month, next_month).ok_or_else(out)?;
        let not_after = match *name {
            "expired-2m" => months_before(2)?,
            "expired-4m" => months_before(4)?,
            "expiring-soon" => months_after(1)?,
            _ => months_after(48)?,
        };
        let not_before = not_after
            .checked_sub_months(Months::new(60))
            .ok_or_else(out)?;
        let key = keys.next().ok_or_else(out)?;
        let cert = ca.issue_user_auth(&key.to_public_key(), serial, not_before, not_after)?;
        let mut card = CardProfile::new(name, &key, cert, ca_der.clone())?;
        card.name = person.name.clone();
        card.birth_date = person.birthdate.format("%Y%m%d").to_string();
        card.sex = match person.sex {
            Sex::Male => "1",
            Sex::Female => "2",
            Sex::Unset => "9",
        }
        .to_owned();
        if let Some(a) = &person.address {
            card.address = a.clone();
        }
        registry.register(serial, person.id.clone(), *name == "infant");
        if *name == "revoked" {
            registry.revoke(serial);
        }
        people.insert((*name).to_owned(), person.id.clone());
        population.add(person);
        cards.push(((*name).to_owned(), card));
    }
    Ok(Scenario {
        institution_code: INSTITUTION_CODE.to_owned(),
        today,
        cards,
        people,
        population,
        registry,
    })
}

fn ymd(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

/// 社保 of the fictional company all employees share.
fn shaho(
    number: &str,
    branch: &str,
    family: PersonalFamily,
    since: NaiveDate,
) -> Option<Qualification> {
    Some(Qualification {
        insurer: InsurerNumber::new("06139999").ok()?,
        insurer_name: "架空商事健康保険組合".into(),
        symbol: Some("練馬12".into()),
        number: number.into(),
        branch: Some(branch.into()),
        card_classification: "01".into(),
        personal_family: family,
        insured_name: None,
        ratio: None,
        preschool: false,
        elderly: None,
        limit: None,
        qualification_date: since,
        disqualification: None,
        card_issued: Some(since),
        card_valid_from: Some(since),
        card_expires: None,
    })
}

fn kokuho_qual(number: &str, since: NaiveDate) -> Option<Qualification> {
    Some(Qualification {
        insurer: InsurerNumber::new("123456").ok()?,
        insurer_name: "架空市".into(),
        symbol: Some("練あ".into()),
        number: number.into(),
        branch: Some("00".into()),
        card_classification: "01".into(),
        personal_family: PersonalFamily::Personal,
        insured_name: None,
        ratio: None,
        preschool: false,
        elderly: None,
        limit: None,
        qualification_date: since,
        disqualification: None,
        card_issued: Some(since),
        card_valid_from: Some(since),
        card_expires: None,
    })
}

/// The person behind each card, as of `today`.
fn person_for(
    name: &str,
    today: NaiveDate,
    this_month: NaiveDate,
    next_month: NaiveDate,
) -> Option<Person> {
    let since = ymd(2015, 4, 1)?;
    let years_ago = |n: u32| today.checked_sub_months(Months::new(12 * n));
    let base = |kanji: &str, kana: &str, birth: NaiveDate, sex: Sex| Person {
        id: format!("p-{name}"),
        name: kanji.into(),
        kana: kana.into(),
        birthdate: birth,
        sex,
        address: Some("東京都練馬区架空町一丁目2番3号".into()),
        post_number: Some("176-0000".into()),
        qualifications: Vec::new(),
    };
    let p = match name {
        "valid-employee" => {
            let mut p = base("診療　太郎", "ｼﾝﾘｮｳ ﾀﾛｳ", ymd(1985, 5, 10)?, Sex::Male);
            p.qualifications = vec![shaho("0004471", "00", PersonalFamily::Personal, since)?];
            p
        }
        "valid-dependant" => {
            let mut p = base("診療　花子", "ｼﾝﾘｮｳ ﾊﾅｺ", ymd(1988, 9, 7)?, Sex::Female);
            let mut q = shaho("0004471", "01", PersonalFamily::Family, since)?;
            q.insured_name = Some("診療　太郎".into());
            q.limit = Some(LimitCertificate {
                classification: "01".into(),
                bracket: "A04".into(),
                issued: this_month,
                valid_from: this_month,
                valid_until: this_month.checked_add_months(Months::new(12))?.pred_opt()?,
            });
            p.qualifications = vec![q];
            p
        }
        "kouki" => {
            let mut p = base("見本　トメ", "ﾐﾎﾝ ﾄﾒ", ymd(1942, 1, 30)?, Sex::Female);
            // A 後期高齢者 card runs one year from 1 August: its own validity, distinct from
            // the qualification acquired on the 75th birthday.
            let august = ymd(today.year(), 8, 1)?;
            let card_from = if today >= august {
                august
            } else {
                ymd(today.year() - 1, 8, 1)?
            };
            p.qualifications = vec![Qualification {
                insurer: InsurerNumber::new("39139912").ok()?,
                insurer_name: "東京都後期高齢者医療広域連合".into(),
                symbol: None,
                number: "00720045".into(),
                branch: None,
                card_classification: "01".into(),
                personal_family: PersonalFamily::Personal,
                insured_name: None,
                ratio: Some(Ratio::Ten),
                preschool: false,
                elderly: None,
                limit: None,
                qualification_date: ymd(2017, 1, 30)?,
                disqualification: None,
                card_issued: Some(card_from.checked_sub_days(chrono::Days::new(14))?),
                card_valid_from: Some(card_from),
                card_expires: Some(card_from.checked_add_months(Months::new(12))?.pred_opt()?),
            }];
            p
        }
        "kokuho" => {
            let mut p = base("仮名　次郎", "ｶﾒｲ ｼﾞﾛｳ", ymd(1970, 2, 2)?, Sex::Male);
            p.qualifications = vec![kokuho_qual("55102", since)?];
            p
        }
        "preschool" => {
            let mut p = base("模擬　みらい", "ﾓｷﾞ ﾐﾗｲ", years_ago(3)?, Sex::Female);
            let mut q = shaho("0004471", "02", PersonalFamily::Family, p.birthdate)?;
            q.insured_name = Some("診療　太郎".into());
            q.preschool = true;
            p.qualifications = vec![q];
            p
        }
        "elderly" => {
            let mut p = base("試験　五郎", "ｼｹﾝ ｺﾞﾛｳ", years_ago(72)?, Sex::Male);
            let mut q = kokuho_qual("55103", since)?;
            q.elderly = Some(ElderlyRecipient {
                issued: this_month,
                valid_from: this_month,
                valid_until: this_month.checked_add_months(Months::new(12))?.pred_opt()?,
                ratio: Ratio::Twenty,
            });
            p.qualifications = vec![q];
            p
        }
        "lost" => {
            let mut p = base("架空　三郎", "ｶｸｳ ｻﾌﾞﾛｳ", ymd(1979, 3, 3)?, Sex::Male);
            let mut q = shaho("0004480", "00", PersonalFamily::Personal, since)?;
            q.disqualification = Some(Disqualification {
                date: this_month,
                reason: ReasonOfLoss::Other,
            });
            p.qualifications = vec![q];
            p
        }
        "lost-newer" => {
            let mut p = base("架空　四郎", "ｶｸｳ ｼﾛｳ", ymd(1981, 4, 4)?, Sex::Male);
            let mut old = shaho("0004481", "00", PersonalFamily::Personal, since)?;
            old.disqualification = Some(Disqualification {
                date: this_month,
                reason: ReasonOfLoss::OtherInsurance,
            });
            let mut new = kokuho_qual("55104", next_month)?;
            new.card_issued = Some(today);
            new.card_valid_from = Some(next_month);
            p.qualifications = vec![old, new];
            p
        }
        "no-coverage" => base("試験　六子", "ｼｹﾝ ﾑﾂｺ", ymd(1990, 6, 6)?, Sex::Female),
        "multiple" => {
            let mut p = base("重複　七郎", "ﾁｮｳﾌｸ ｼﾁﾛｳ", ymd(1977, 7, 7)?, Sex::Male);
            // The same card data registered twice (a data error the real system reports as 5).
            p.qualifications = vec![
                shaho("0004490", "00", PersonalFamily::Personal, ymd(2018, 4, 1)?)?,
                shaho("0004490", "00", PersonalFamily::Personal, ymd(2020, 4, 1)?)?,
            ];
            p
        }
        "infant" => {
            let mut p = base("模擬　さくら", "ﾓｷﾞ ｻｸﾗ", years_ago(1)?, Sex::Female);
            let mut q = shaho("0004471", "03", PersonalFamily::Family, p.birthdate)?;
            q.insured_name = Some("診療　太郎".into());
            q.preschool = true;
            p.qualifications = vec![q];
            p
        }
        "expired-2m" => {
            let mut p = base("期限　一郎", "ｷｹﾞﾝ ｲﾁﾛｳ", ymd(1960, 10, 1)?, Sex::Male);
            p.qualifications = vec![shaho("0004501", "00", PersonalFamily::Personal, since)?];
            p
        }
        "expired-4m" => {
            let mut p = base("期限　二郎", "ｷｹﾞﾝ ｼﾞﾛｳ", ymd(1962, 10, 2)?, Sex::Male);
            p.qualifications = vec![shaho("0004502", "00", PersonalFamily::Personal, since)?];
            p
        }
        "revoked" => {
            let mut p = base("失効　三郎", "ｼｯｺｳ ｻﾌﾞﾛｳ", ymd(1964, 10, 3)?, Sex::Male);
            p.qualifications = vec![shaho("0004503", "00", PersonalFamily::Personal, since)?];
            p
        }
        "expiring-soon" => {
            let mut p = base("期限　四郎", "ｷｹﾞﾝ ｼﾛｳ", ymd(1966, 10, 4)?, Sex::Male);
            p.qualifications = vec![shaho("0004504", "00", PersonalFamily::Personal, since)?];
            p
        }
        _ => return None,
    };
    Some(p)
}
