//! The simulated insured population and its as-of-date lookups.
//!
//! A [`Person`] carries a history of [`Qualification`]s (資格). A qualification covers the days
//! from its acquisition date (資格取得年月日) up to, but not including, its loss date
//! (資格喪失年月日), which is how the insurers count it: the loss date is the first day without
//! coverage. [`Population`] answers the two questions the system is asked, "what does this
//! insurance card data say on date D" and "what does this person hold on date D", with a
//! [`QualificationValidity`] (資格有効性, OQSCD006). Everything here is pure: the date is an
//! argument, never the clock.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Insurer number (保険者番号), stored as its 6 or 8 digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InsurerNumber(String);

/// Why an insurer number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsurerNumberError {
    /// Not 6 or 8 ASCII digits.
    #[error("insurer number must be 6 or 8 digits, got {0:?}")]
    Digits(String),
    /// The wire form is not exactly 8 characters.
    #[error("insurer number on the wire must be 8 characters, got {0:?}")]
    WireLength(String),
}

impl InsurerNumber {
    /// Builds from the bare digits (6 for 国保, 8 otherwise).
    pub fn new(digits: &str) -> Result<Self, InsurerNumberError> {
        let ok =
            (digits.len() == 6 || digits.len() == 8) && digits.bytes().all(|b| b.is_ascii_digit());
        if ok {
            Ok(Self(digits.to_owned()))
        } else {
            Err(InsurerNumberError::Digits(digits.to_owned()))
        }
    }

    /// Parses the 8-character wire form: a 6-digit number is right-aligned, padded with
    /// spaces as the reference says (`"  123456"`), or with zeros as some clients send it
    /// (`"00123456"`). No 8-digit insurer number starts with `00` (there is no 法別番号 00), so
    /// two leading zeros can only be padding.
    pub fn from_wire(wire: &str) -> Result<Self, InsurerNumberError> {
        if wire.chars().count() != 8 {
            return Err(InsurerNumberError::WireLength(wire.to_owned()));
        }
        let digits = wire.trim_start_matches(' ');
        if digits.len() != 8 && digits.len() != 6 {
            return Err(InsurerNumberError::Digits(wire.to_owned()));
        }
        match digits.strip_prefix("00") {
            Some(six) if digits.len() == 8 => Self::new(six),
            _ => Self::new(digits),
        }
    }

    /// Whether this is a 後期高齢者医療広域連合 number (法別番号 39).
    pub fn is_late_elderly(&self) -> bool {
        self.0.len() == 8 && self.0.starts_with("39")
    }

    /// The 8-character wire form (`"  123456"` for a 6-digit number).
    pub fn wire(&self) -> String {
        format!("{:>8}", self.0)
    }

    /// The bare digits.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

/// Sex (性別, OQSCD007).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sex {
    /// 男 (1).
    Male,
    /// 女 (2).
    Female,
    /// 未設定 (3).
    Unset,
}

impl Sex {
    /// Wire code.
    pub fn code(self) -> &'static str {
        match self {
            Sex::Male => "1",
            Sex::Female => "2",
            Sex::Unset => "3",
        }
    }
}

/// Insured person or dependant (本人・家族の別, OQSCD009).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PersonalFamily {
    /// 本人 (1).
    Personal,
    /// 家族 (2).
    Family,
}

impl PersonalFamily {
    /// Wire code.
    pub fn code(self) -> &'static str {
        match self {
            PersonalFamily::Personal => "1",
            PersonalFamily::Family => "2",
        }
    }
}

/// Contribution ratio (一部負担金割合), a 3-digit percent on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ratio {
    /// 10% (`010`).
    Ten,
    /// 20% (`020`).
    Twenty,
    /// 30% (`030`).
    Thirty,
}

impl Ratio {
    /// Wire code.
    pub fn code(self) -> &'static str {
        match self {
            Ratio::Ten => "010",
            Ratio::Twenty => "020",
            Ratio::Thirty => "030",
        }
    }
}

/// Reason of loss (資格喪失事由, OQSCD008).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReasonOfLoss {
    /// 死亡 (01).
    Death,
    /// 生活保護受給開始 (02).
    PublicAssistance,
    /// 医療保険等の資格取得 (03).
    OtherInsurance,
    /// その他 (99).
    Other,
}

impl ReasonOfLoss {
    /// Wire code.
    pub fn code(self) -> &'static str {
        match self {
            ReasonOfLoss::Death => "01",
            ReasonOfLoss::PublicAssistance => "02",
            ReasonOfLoss::OtherInsurance => "03",
            ReasonOfLoss::Other => "99",
        }
    }
}

/// Loss of a qualification (資格喪失).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disqualification {
    /// 資格喪失年月日: the first day without coverage.
    pub date: NaiveDate,
    /// 資格喪失事由.
    pub reason: ReasonOfLoss,
}

/// Elderly recipient certificate (高齢受給者証), ages 70–74.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElderlyRecipient {
    /// 交付年月日.
    pub issued: NaiveDate,
    /// 有効開始年月日.
    pub valid_from: NaiveDate,
    /// 有効終了年月日.
    pub valid_until: NaiveDate,
    /// 一部負担金割合 (20% or 30%).
    pub ratio: Ratio,
}

/// Limit certificate (限度額適用認定証) information.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitCertificate {
    /// OQSCD011 code, e.g. `01`.
    pub classification: String,
    /// OQSCD012 bracket code, e.g. `A04`.
    pub bracket: String,
    /// 交付年月日.
    pub issued: NaiveDate,
    /// 有効開始年月日.
    pub valid_from: NaiveDate,
    /// 有効終了年月日.
    pub valid_until: NaiveDate,
}

/// One qualification (資格) of a person under one insurer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qualification {
    /// 保険者番号.
    pub insurer: InsurerNumber,
    /// 保険者名称.
    pub insurer_name: String,
    /// 被保険者証記号 (none for 後期高齢者).
    pub symbol: Option<String>,
    /// 被保険者証番号 (leading zeros kept).
    pub number: String,
    /// 被保険者証枝番 (none for 後期高齢者).
    pub branch: Option<String>,
    /// 被保険者証区分 (OQSCD010), e.g. `01`.
    pub card_classification: String,
    /// 本人・家族の別.
    pub personal_family: PersonalFamily,
    /// 被保険者氏名: the holder's name, for dependants.
    pub insured_name: Option<String>,
    /// 被保険者証一部負担金割合. The reference says the system sets it mainly for 後期高齢者, and
    /// the simulator sends it only for them (see `server::record`); everyone else's ratio is
    /// for the client to derive from age, 高齢受給者証 and 未就学 (R13).
    pub ratio: Option<Ratio>,
    /// 未就学区分.
    pub preschool: bool,
    /// 高齢受給者証.
    pub elderly: Option<ElderlyRecipient>,
    /// 限度額適用認定証.
    pub limit: Option<LimitCertificate>,
    /// 資格取得年月日: the first covered day.
    pub qualification_date: NaiveDate,
    /// 資格喪失, if lost.
    pub disqualification: Option<Disqualification>,
    /// 被保険者証交付年月日.
    pub card_issued: Option<NaiveDate>,
    /// 被保険者証有効開始年月日: the card's own start, not the qualification's (a 後期高齢者
    /// card runs from 1 August, a reissued card from its reissue).
    pub card_valid_from: Option<NaiveDate>,
    /// 被保険者証有効終了年月日.
    pub card_expires: Option<NaiveDate>,
}

impl Qualification {
    /// Whether the qualification covers `date`.
    pub fn covers(&self, date: NaiveDate) -> bool {
        self.qualification_date <= date
            && self.disqualification.as_ref().is_none_or(|d| date < d.date)
    }

    /// Whether the card data matches: number exact, symbol after width normalisation
    /// (`ＡＢ１２` = `AB12`), branch only when given.
    fn matches(&self, key: &InsuranceKey) -> bool {
        self.insurer == key.insurer
            && self.number == key.number
            && norm(&self.symbol) == norm(&key.symbol)
            && key
                .branch
                .as_deref()
                .is_none_or(|b| self.branch.as_deref() == Some(b))
    }
}

fn norm(s: &Option<String>) -> Option<String> {
    s.as_deref().map(fold_width).filter(|s| !s.is_empty())
}

/// Folds full-width ASCII (ＡＢ１２－３) and the ideographic space to half-width and trims, so
/// a 記号 written in either width compares equal. Kanji and kana are left as they are.
pub fn fold_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFF01 + 0x21).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// An insured person with their qualification history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Simulator-internal id, the link from a card certificate to the person.
    pub id: String,
    /// 氏名, with a full-width space.
    pub name: String,
    /// 氏名カナ, half-width with a half-width space.
    pub kana: String,
    /// 生年月日.
    pub birthdate: NaiveDate,
    /// 性別1.
    pub sex: Sex,
    /// 住所.
    pub address: Option<String>,
    /// 郵便番号 (`nnn-nnnn`).
    pub post_number: Option<String>,
    /// Qualification history, in any order.
    pub qualifications: Vec<Qualification>,
}

/// The data printed on an insurance card, the key of a search by insurance data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsuranceKey {
    /// 保険者番号.
    pub insurer: InsurerNumber,
    /// 記号.
    pub symbol: Option<String>,
    /// 番号.
    pub number: String,
    /// 枝番.
    pub branch: Option<String>,
    /// 生年月日.
    pub birthdate: NaiveDate,
}

/// 資格有効性 (OQSCD006).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QualificationValidity {
    /// 1 有効.
    Valid,
    /// 2 無効.
    Invalid,
    /// 3 無効（新しい資格あり）.
    InvalidNewerExists,
    /// 4 該当資格なし.
    NotFound,
    /// 5 複数該当.
    Multiple,
}

impl QualificationValidity {
    /// Wire code `1`..`5`.
    pub fn code(self) -> &'static str {
        match self {
            QualificationValidity::Valid => "1",
            QualificationValidity::Invalid => "2",
            QualificationValidity::InvalidNewerExists => "3",
            QualificationValidity::NotFound => "4",
            QualificationValidity::Multiple => "5",
        }
    }
}

/// The answer of a lookup: the validity and the records to return.
#[derive(Clone, Debug)]
pub struct Lookup<'a> {
    /// 資格有効性.
    pub validity: QualificationValidity,
    /// Records for `ResultList` (empty for 4, one for 1/2/3, all candidates for 5).
    pub records: Vec<(&'a Person, &'a Qualification)>,
}

impl Lookup<'_> {
    fn not_found() -> Self {
        Lookup {
            validity: QualificationValidity::NotFound,
            records: Vec::new(),
        }
    }
}

/// Everyone the simulated system knows, with indexes for fast lookups.
#[derive(Clone, Debug, Default)]
pub struct Population {
    people: Vec<Person>,
    by_id: HashMap<String, usize>,
    // (insurer, number) → (person index, qualification index); symbol, branch and birthdate
    // are checked on the few candidates.
    by_card: HashMap<(InsurerNumber, String), Vec<(usize, usize)>>,
}

impl Population {
    /// An empty population.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a person (replacing one with the same id).
    pub fn add(&mut self, person: Person) {
        if let Some(&idx) = self.by_id.get(&person.id) {
            self.people[idx] = person;
            self.reindex();
            return;
        }
        let idx = self.people.len();
        self.index_person(idx, &person);
        self.by_id.insert(person.id.clone(), idx);
        self.people.push(person);
    }

    fn index_person(&mut self, idx: usize, person: &Person) {
        for (qi, q) in person.qualifications.iter().enumerate() {
            self.by_card
                .entry((q.insurer.clone(), q.number.clone()))
                .or_default()
                .push((idx, qi));
        }
    }

    fn reindex(&mut self) {
        self.by_card.clear();
        self.by_id.clear();
        let people = std::mem::take(&mut self.people);
        for (idx, p) in people.iter().enumerate() {
            self.index_person(idx, p);
            self.by_id.insert(p.id.clone(), idx);
        }
        self.people = people;
    }

    /// Number of people.
    pub fn len(&self) -> usize {
        self.people.len()
    }

    /// Whether nobody is known.
    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// Everyone, in insertion order.
    pub fn people(&self) -> &[Person] {
        &self.people
    }

    /// A person by id.
    pub fn person(&self, id: &str) -> Option<&Person> {
        self.by_id.get(id).map(|&i| &self.people[i])
    }

    /// The card data of each person's latest qualification (for benchmarks).
    pub fn insurance_keys(&self) -> Vec<InsuranceKey> {
        self.people.iter().filter_map(latest_key).collect()
    }

    /// Search by insurance card data as of `date`.
    pub fn lookup_by_insurance(&self, key: &InsuranceKey, date: NaiveDate) -> Lookup<'_> {
        let Some(cands) = self.by_card.get(&(key.insurer.clone(), key.number.clone())) else {
            return Lookup::not_found();
        };
        let cands: Vec<(&Person, &Qualification)> = cands
            .iter()
            .map(|&(pi, qi)| (&self.people[pi], &self.people[pi].qualifications[qi]))
            .filter(|(p, q)| p.birthdate == key.birthdate && q.matches(key))
            .collect();
        resolve(cands, date)
    }

    /// Lookup of everything a person holds as of `date` (the card route).
    pub fn lookup_by_person(&self, id: &str, date: NaiveDate) -> Lookup<'_> {
        let Some(p) = self.person(id) else {
            return Lookup::not_found();
        };
        resolve(p.qualifications.iter().map(|q| (p, q)).collect(), date)
    }

    /// Builds `n` fictional people, deterministically from `seed`, all covered from 2000-04-01.
    pub fn synthetic(seed: u64, n: usize) -> Population {
        let mut pop = Population::new();
        pop.add_synthetic(seed, n);
        pop
    }

    /// Adds `n` fictional people (ids `syn-<seed>-<i>`), deterministically from `seed`.
    pub fn add_synthetic(&mut self, seed: u64, n: usize) {
        const FAMILY: [(&str, &str); 6] = [
            ("架空", "ｶｸｳ"),
            ("見本", "ﾐﾎﾝ"),
            ("仮名", "ｶﾒｲ"),
            ("試験", "ｼｹﾝ"),
            ("模擬", "ﾓｷﾞ"),
            ("診療", "ｼﾝﾘｮｳ"),
        ];
        const GIVEN: [(&str, &str); 6] = [
            ("太郎", "ﾀﾛｳ"),
            ("花子", "ﾊﾅｺ"),
            ("一郎", "ｲﾁﾛｳ"),
            ("次郎", "ｼﾞﾛｳ"),
            ("和子", "ｶｽﾞｺ"),
            ("三郎", "ｻﾌﾞﾛｳ"),
        ];
        let mut rng = StdRng::seed_from_u64(seed);
        let start = ymd(2000, 4, 1);
        for i in 0..n {
            let (f, fk) = FAMILY[rng.gen_range(0..FAMILY.len())];
            let (g, gk) = GIVEN[rng.gen_range(0..GIVEN.len())];
            let birthdate = ymd(
                rng.gen_range(1950..2000),
                rng.gen_range(1..=12),
                rng.gen_range(1..=28),
            );
            // Synthetic 社保 insurers 0698xxxx never collide with the scenario's numbers.
            let insurer = InsurerNumber(format!("0698{:04}", rng.gen_range(0..10_000)));
            let q = Qualification {
                insurer,
                insurer_name: "架空合成健康保険組合".into(),
                symbol: Some(format!("{}", rng.gen_range(1..1000))),
                number: format!("{seed:03}{i:07}"),
                branch: Some("00".into()),
                card_classification: "01".into(),
                personal_family: PersonalFamily::Personal,
                insured_name: None,
                ratio: None,
                preschool: false,
                elderly: None,
                limit: None,
                qualification_date: start,
                disqualification: None,
                card_issued: Some(start),
                card_valid_from: Some(start),
                card_expires: None,
            };
            self.add(Person {
                id: format!("syn-{seed}-{i}"),
                name: format!("{f}　{g}"),
                kana: format!("{fk} {gk}"),
                birthdate,
                sex: if rng.gen_bool(0.5) {
                    Sex::Male
                } else {
                    Sex::Female
                },
                address: None,
                post_number: None,
                qualifications: vec![q],
            });
        }
    }
}

/// The card data of the latest qualification of a person.
pub fn latest_key(p: &Person) -> Option<InsuranceKey> {
    p.qualifications
        .iter()
        .max_by_key(|q| q.qualification_date)
        .map(|q| InsuranceKey {
            insurer: q.insurer.clone(),
            symbol: q.symbol.clone(),
            number: q.number.clone(),
            branch: q.branch.clone(),
            birthdate: p.birthdate,
        })
}

/// The OQSCD006 decision over the matching records.
fn resolve<'a>(cands: Vec<(&'a Person, &'a Qualification)>, date: NaiveDate) -> Lookup<'a> {
    if cands.is_empty() {
        return Lookup::not_found();
    }
    let active: Vec<_> = cands
        .iter()
        .copied()
        .filter(|(_, q)| q.covers(date))
        .collect();
    match active.len() {
        1 => {
            return Lookup {
                validity: QualificationValidity::Valid,
                records: active,
            }
        }
        n if n > 1 => {
            return Lookup {
                validity: QualificationValidity::Multiple,
                records: active,
            }
        }
        _ => {}
    }
    // Nothing covers the date: report the latest record that had started by then. A record
    // that only starts later is not "found" on that date.
    let Some((p, q)) = cands
        .iter()
        .copied()
        .filter(|(_, q)| q.qualification_date <= date)
        .max_by_key(|(_, q)| q.qualification_date)
    else {
        return Lookup::not_found();
    };
    let newer = p
        .qualifications
        .iter()
        .any(|o| o.qualification_date > q.qualification_date);
    Lookup {
        validity: if newer {
            QualificationValidity::InvalidNewerExists
        } else {
            QualificationValidity::Invalid
        },
        records: vec![(p, q)],
    }
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    // Callers pass in-range literals or values drawn from 1..=28.
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

/// Age in whole years on `date`.
pub fn age_on(birthdate: NaiveDate, date: NaiveDate) -> i32 {
    let mut age = date.year() - birthdate.year();
    if (date.month(), date.day()) < (birthdate.month(), birthdate.day()) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn qual(number: &str, from: &str, lost: Option<&str>) -> Qualification {
        Qualification {
            insurer: InsurerNumber::new("06139999").unwrap(),
            insurer_name: "架空健保".into(),
            symbol: Some("12".into()),
            number: number.into(),
            branch: Some("00".into()),
            card_classification: "01".into(),
            personal_family: PersonalFamily::Personal,
            insured_name: None,
            ratio: None,
            preschool: false,
            elderly: None,
            limit: None,
            qualification_date: d(from),
            disqualification: lost.map(|l| Disqualification {
                date: d(l),
                reason: ReasonOfLoss::OtherInsurance,
            }),
            card_issued: None,
            card_valid_from: None,
            card_expires: None,
        }
    }

    fn person(id: &str, quals: Vec<Qualification>) -> Person {
        Person {
            id: id.into(),
            name: "試験　太郎".into(),
            kana: "ｼｹﾝ ﾀﾛｳ".into(),
            birthdate: d("1980-01-02"),
            sex: Sex::Male,
            address: None,
            post_number: None,
            qualifications: quals,
        }
    }

    fn key(number: &str) -> InsuranceKey {
        InsuranceKey {
            insurer: InsurerNumber::new("06139999").unwrap(),
            symbol: Some("12".into()),
            number: number.into(),
            branch: Some("00".into()),
            birthdate: d("1980-01-02"),
        }
    }

    #[test]
    fn insurer_wire_form_pads_with_spaces() {
        assert_eq!(InsurerNumber::new("123456").unwrap().wire(), "  123456");
        assert_eq!(InsurerNumber::new("39139912").unwrap().wire(), "39139912");
        assert_eq!(
            InsurerNumber::from_wire("  123456").unwrap().digits(),
            "123456"
        );
        assert!(InsurerNumber::from_wire("123456").is_err());
        assert!(InsurerNumber::from_wire(" 1234567").is_err());
        assert!(InsurerNumber::from_wire("0612345x").is_err());
        // Zero padding is accepted as well as spaces: it is the same 6-digit number.
        assert_eq!(
            InsurerNumber::from_wire("00123456").unwrap(),
            InsurerNumber::from_wire("  123456").unwrap()
        );
        assert!(InsurerNumber::new("39139912").unwrap().is_late_elderly());
        assert!(!InsurerNumber::new("123456").unwrap().is_late_elderly());
    }

    #[test]
    fn symbols_match_after_width_normalisation() {
        let mut pop = Population::new();
        pop.add(person("p", vec![qual("1", "2020-04-01", None)]));
        let mut k = key("1");
        k.symbol = Some("１２".into());
        assert_eq!(
            pop.lookup_by_insurance(&k, d("2026-11-26")).validity,
            QualificationValidity::Valid
        );
        assert_eq!(fold_width("　ＡＢ１２－３"), "AB12-3");
        k.symbol = Some("13".into());
        assert_eq!(
            pop.lookup_by_insurance(&k, d("2026-11-26")).validity,
            QualificationValidity::NotFound
        );
    }

    #[test]
    fn coverage_ends_the_day_before_the_loss_date() {
        let q = qual("1", "2020-04-01", Some("2026-10-01"));
        assert!(!q.covers(d("2020-03-31")));
        assert!(q.covers(d("2020-04-01")));
        assert!(q.covers(d("2026-09-30")));
        assert!(!q.covers(d("2026-10-01")));
    }

    #[test]
    fn validity_codes_by_person() {
        let mut pop = Population::new();
        pop.add(person("valid", vec![qual("1", "2020-04-01", None)]));
        pop.add(person(
            "lost",
            vec![qual("2", "2020-04-01", Some("2026-10-01"))],
        ));
        pop.add(person(
            "newer",
            vec![
                qual("3", "2020-04-01", Some("2026-10-01")),
                qual("4", "2026-12-01", None),
            ],
        ));
        pop.add(person("none", vec![]));
        pop.add(person(
            "multi",
            vec![qual("5", "2020-04-01", None), qual("6", "2021-04-01", None)],
        ));
        let today = d("2026-11-26");
        let v = |id| pop.lookup_by_person(id, today).validity;
        assert_eq!(v("valid"), QualificationValidity::Valid);
        assert_eq!(v("lost"), QualificationValidity::Invalid);
        assert_eq!(v("newer"), QualificationValidity::InvalidNewerExists);
        assert_eq!(v("none"), QualificationValidity::NotFound);
        assert_eq!(v("nobody"), QualificationValidity::NotFound);
        assert_eq!(v("multi"), QualificationValidity::Multiple);
        assert_eq!(pop.lookup_by_person("multi", today).records.len(), 2);
        // Once the new qualification starts, the person is simply valid.
        assert_eq!(
            pop.lookup_by_person("newer", d("2026-12-01")).validity,
            QualificationValidity::Valid
        );
        // Before the first qualification started there was nothing to find.
        assert_eq!(
            pop.lookup_by_person("valid", d("2019-01-01")).validity,
            QualificationValidity::NotFound
        );
    }

    #[test]
    fn validity_codes_by_insurance() {
        let mut pop = Population::new();
        pop.add(person(
            "newer",
            vec![
                qual("3", "2020-04-01", Some("2026-10-01")),
                qual("4", "2026-12-01", None),
            ],
        ));
        let today = d("2026-11-26");
        let old = pop.lookup_by_insurance(&key("3"), today);
        assert_eq!(old.validity, QualificationValidity::InvalidNewerExists);
        assert_eq!(old.records[0].1.number, "3");
        assert_eq!(
            pop.lookup_by_insurance(&key("4"), today).validity,
            QualificationValidity::NotFound
        );
        let mut wrong_birth = key("3");
        wrong_birth.birthdate = d("1980-01-03");
        assert_eq!(
            pop.lookup_by_insurance(&wrong_birth, today).validity,
            QualificationValidity::NotFound
        );
        let mut no_branch = key("3");
        no_branch.branch = None;
        assert_eq!(
            pop.lookup_by_insurance(&no_branch, d("2025-01-01"))
                .validity,
            QualificationValidity::Valid
        );
        let mut other_branch = key("3");
        other_branch.branch = Some("01".into());
        assert_eq!(
            pop.lookup_by_insurance(&other_branch, d("2025-01-01"))
                .validity,
            QualificationValidity::NotFound
        );
    }

    #[test]
    fn synthetic_population_is_deterministic_and_findable() {
        let a = Population::synthetic(7, 50);
        let b = Population::synthetic(7, 50);
        assert_eq!(a.people(), b.people());
        assert_eq!(a.len(), 50);
        for k in a.insurance_keys() {
            assert_eq!(
                a.lookup_by_insurance(&k, d("2026-11-26")).validity,
                QualificationValidity::Valid
            );
        }
    }

    #[test]
    fn age_counts_birthdays() {
        assert_eq!(age_on(d("1955-06-15"), d("2026-06-14")), 70);
        assert_eq!(age_on(d("1955-06-15"), d("2026-06-15")), 71);
    }
}
