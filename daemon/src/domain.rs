//! Small value types shared by the card path, the qualification client and the rules.
//!
//! Each type validates on construction, so the rest of the daemon can rely on its shape: an
//! [`InsurerNumber`] is always the 8-character wire form, a [`FacilityType`] is one of the six
//! kinds the ministry distinguishes. Parsing errors carry a Japanese message for staff
//! ([`DomainError::message_ja`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value that failed validation, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The insurer number is not 6 or 8 digits.
    #[error("insurer number must be 6 or 8 digits, got {len} characters")]
    InsurerNumberLength {
        /// Characters after trimming.
        len: usize,
    },
    /// The insurer number contains something other than ASCII digits.
    #[error("insurer number must contain digits only")]
    InsurerNumberNotDigits,
    /// An unknown facility type name.
    #[error("unknown facility type {0:?}")]
    UnknownFacility(String),
    /// An unknown identity method name.
    #[error("unknown identity method {0:?}")]
    UnknownMethod(String),
}

impl DomainError {
    /// The message shown to staff: what is wrong and what to do.
    pub fn message_ja(&self) -> String {
        match self {
            DomainError::InsurerNumberLength { len } => format!(
                "保険者番号は6桁または8桁の数字です（入力は{len}文字）。資格確認書などに書かれた番号を確認してください。"
            ),
            DomainError::InsurerNumberNotDigits => {
                "保険者番号に数字以外の文字が含まれています。数字のみで入力してください。".to_string()
            }
            DomainError::UnknownFacility(s) => format!(
                "施設種別「{s}」は使えません。medical（医科）, dental（歯科）, pharmacy（薬局）, judo（柔整）, ahaki（あはき）, home-nursing（訪問看護）のいずれかを指定してください。"
            ),
            DomainError::UnknownMethod(s) => format!(
                "本人確認方法「{s}」は使えません。visual（目視）または pin（暗証番号）を指定してください。"
            ),
        }
    }
}

/// What went wrong with a file or a socket, in words staff can act on (the operating
/// system's English text goes to the log, not to the screen).
pub fn io_error_ja(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::PermissionDenied => {
            "権限がありません。実行しているユーザーと、ファイル・フォルダーの権限を確認してください"
        }
        ErrorKind::NotFound => "見つかりません。場所を確認してください",
        ErrorKind::StorageFull => "ディスクがいっぱいです。空き容量を確保してください",
        ErrorKind::ReadOnlyFilesystem => {
            "書き込めない場所です（読み取り専用）。保存先を確認してください"
        }
        ErrorKind::AddrInUse => "別のプログラムが使用中です",
        ErrorKind::AddrNotAvailable => "この機械のアドレスではありません。設定を確認してください",
        ErrorKind::InvalidData => "内容が正しくありません（文字コードなど）",
        _ => "読み書きに失敗しました。ディスクの状態を確認してください",
    }
}

/// Insurer number (保険者番号), always held in its 8-character wire form.
///
/// 8-digit numbers (被用者保険 `0xxxxxxx`, 後期高齢者 `39xxxxxx`) are kept as they are; a
/// 6-digit 国保 number is right-aligned and padded with spaces, not zeros (`"  139917"`), as the
/// qualification system's messages require.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InsurerNumber(String);

impl InsurerNumber {
    /// Parses a number as written on a card (6 or 8 digits, surrounding spaces allowed).
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let digits = input.trim();
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(DomainError::InsurerNumberNotDigits);
        }
        match digits.len() {
            8 => Ok(Self(digits.to_string())),
            6 => Ok(Self(format!("  {digits}"))),
            len => Err(DomainError::InsurerNumberLength { len }),
        }
    }

    /// The 8-character wire form (`"  139917"` for a 6-digit number).
    pub fn as_wire(&self) -> &str {
        &self.0
    }

    /// The digits without padding, as printed on a card.
    pub fn digits(&self) -> &str {
        self.0.trim_start()
    }

    /// Whether this is a 6-digit 国保 number.
    pub fn is_six_digit(&self) -> bool {
        self.0.starts_with(' ')
    }

    /// Whether this is a 後期高齢者医療広域連合 number (法別番号 39).
    pub fn is_late_elderly(&self) -> bool {
        self.0.starts_with("39")
    }
}

impl fmt::Display for InsurerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.digits())
    }
}

impl fmt::Debug for InsurerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InsurerNumber({:?})", self.0)
    }
}

impl TryFrom<String> for InsurerNumber {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<InsurerNumber> for String {
    fn from(value: InsurerNumber) -> Self {
        value.0
    }
}

/// Identity method (本人確認方法) used at the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityMethod {
    /// Visual check (目視): staff compare the face with the card photo; no PIN.
    Visual,
    /// PIN (暗証番号): the patient enters the 4-digit PIN and the card signs a challenge.
    Pin,
}

impl IdentityMethod {
    /// The stable name used in the CLI, the API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityMethod::Visual => "visual",
            IdentityMethod::Pin => "pin",
        }
    }

    /// The Japanese label shown to staff.
    pub fn label_ja(self) -> &'static str {
        match self {
            IdentityMethod::Visual => "目視",
            IdentityMethod::Pin => "暗証番号",
        }
    }
}

impl std::str::FromStr for IdentityMethod {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "visual" => Ok(Self::Visual),
            "pin" => Ok(Self::Pin),
            other => Err(DomainError::UnknownMethod(other.to_string())),
        }
    }
}

/// Facility type (施設種別): decides which rules and which plugin apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum FacilityType {
    /// 病院・医科診療所 (医科).
    Medical,
    /// 歯科診療所 (歯科).
    Dental,
    /// 薬局.
    Pharmacy,
    /// 柔道整復 (柔整) 施術所.
    Judo,
    /// あん摩マッサージ指圧・はり・きゅう (あはき) 施術所.
    Ahaki,
    /// 訪問看護ステーション.
    HomeNursing,
}

impl FacilityType {
    /// Every facility type, in a stable order.
    pub const ALL: [FacilityType; 6] = [
        FacilityType::Medical,
        FacilityType::Dental,
        FacilityType::Pharmacy,
        FacilityType::Judo,
        FacilityType::Ahaki,
        FacilityType::HomeNursing,
    ];

    /// The stable kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FacilityType::Medical => "medical",
            FacilityType::Dental => "dental",
            FacilityType::Pharmacy => "pharmacy",
            FacilityType::Judo => "judo",
            FacilityType::Ahaki => "ahaki",
            FacilityType::HomeNursing => "home-nursing",
        }
    }

    /// The Japanese label shown to staff.
    pub fn label_ja(self) -> &'static str {
        match self {
            FacilityType::Medical => "医科",
            FacilityType::Dental => "歯科",
            FacilityType::Pharmacy => "薬局",
            FacilityType::Judo => "柔整",
            FacilityType::Ahaki => "あはき",
            FacilityType::HomeNursing => "訪問看護",
        }
    }

    /// 柔整・あはき work under 受領委任 and claim 療養費, with rules of their own (R17, R33).
    pub fn is_ryouyouhi(self) -> bool {
        matches!(self, FacilityType::Judo | FacilityType::Ahaki)
    }
}

impl std::str::FromStr for FacilityType {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| DomainError::UnknownFacility(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insurer_number_forms() {
        // It pads a 6-digit 国保 number with spaces to 8 characters.
        let n = InsurerNumber::parse("139917").expect("6 digits");
        assert_eq!(n.as_wire(), "  139917");
        assert_eq!(n.digits(), "139917");
        assert!(n.is_six_digit());
        // It accepts the padded wire form back.
        assert_eq!(InsurerNumber::parse("  139917"), Ok(n));
        // It keeps 8-digit numbers as they are.
        let k = InsurerNumber::parse("39139912").expect("8 digits");
        assert_eq!(k.as_wire(), "39139912");
        assert!(k.is_late_elderly());
        // It rejects other lengths and letters.
        assert_eq!(
            InsurerNumber::parse("1234567"),
            Err(DomainError::InsurerNumberLength { len: 7 })
        );
        assert_eq!(
            InsurerNumber::parse("12A456"),
            Err(DomainError::InsurerNumberNotDigits)
        );
        assert_eq!(
            InsurerNumber::parse("１２３４５６"),
            Err(DomainError::InsurerNumberNotDigits)
        );
    }

    #[test]
    fn facility_names_round_trip() {
        for f in FacilityType::ALL {
            assert_eq!(f.as_str().parse::<FacilityType>(), Ok(f));
        }
        assert!("clinic".parse::<FacilityType>().is_err());
    }
}
