//! `tsunagid`'s configuration file (TOML). Every field has a default; only the institution
//! code must be given.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::check::health::HealthConfig;
use crate::domain::FacilityType;
use crate::reconcile::ReconcileConfig;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Where the ledger lives.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// This facility's 10-digit 医療機関コード.
    pub institution_code: String,
    /// Facility type.
    #[serde(default = "default_facility")]
    pub facility: FacilityType,
    /// The qualification system.
    #[serde(default)]
    pub oqs: OqsSection,
    /// 事後確認.
    #[serde(default)]
    pub reconcile: ReconcileSection,
    /// The breaker.
    #[serde(default)]
    pub health: HealthSection,
    /// Retention (R20).
    #[serde(default)]
    pub retention: RetentionSection,
    /// The local HTTP API.
    #[serde(default)]
    pub api: ApiSection,
}

/// `[api]`: the local HTTP API (ローカルAPI) the CLI, the receipt computer, the reception page
/// and the tray use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Address to listen on. Loopback unless `allow_remote` says otherwise.
    pub listen: std::net::SocketAddr,
    /// Allow a non-loopback `listen` (the token is then the only guard: use with care).
    pub allow_remote: bool,
    /// The bearer token's file; default `<data_dir>/api.token`. Created on first start,
    /// readable only by the service user.
    pub token_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8947)),
            allow_remote: false,
            token_file: None,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// `[oqs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OqsSection {
    /// Base URL.
    pub url: String,
    /// Time budget of one query, ms.
    pub timeout_ms: u64,
}

impl Default for OqsSection {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8931".into(),
            timeout_ms: 3000,
        }
    }
}

/// `[reconcile]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSection {
    /// Seconds between passes.
    pub interval_secs: u64,
    /// Checks asked about at once.
    pub concurrency: usize,
    /// The receipt software validates the insurer number's check digit (`77777779`).
    pub software_checks_digit: bool,
}

impl Default for ReconcileSection {
    fn default() -> Self {
        Self {
            interval_secs: 30,
            concurrency: 8,
            software_checks_digit: false,
        }
    }
}

/// `[health]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// Failures in a row before offline.
    pub offline_after: u32,
    /// Seconds between probes while offline.
    pub probe_secs: u64,
}

impl Default for HealthSection {
    fn default() -> Self {
        Self {
            offline_after: 3,
            probe_secs: 10,
        }
    }
}

/// `[retention]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Months kept beyond the end of the month after the visit (R20 default: 0).
    pub extra_months: u32,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/tsunagi")
}

fn default_facility() -> FacilityType {
    FacilityType::Medical
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML for this schema.
    #[error("{path}: {detail}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

impl ConfigError {
    /// The message for whoever installs the service.
    pub fn message_ja(&self) -> String {
        match self {
            ConfigError::Read { path, source } => {
                format!("設定ファイル {path} を読めません: {source}")
            }
            ConfigError::Invalid { path, detail } => {
                format!("設定ファイル {path} に誤りがあります: {detail}")
            }
        }
    }
}

impl ServiceConfig {
    /// Parses TOML text.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.into(),
            detail: e.to_string(),
        })?;
        if config.institution_code.len() != 10
            || !config.institution_code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ConfigError::Invalid {
                path: path.into(),
                detail: format!(
                    "institution_code は10桁の数字です（{}）",
                    config.institution_code
                ),
            });
        }
        if !config.api.allow_remote && !config.api.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                path: path.into(),
                detail: format!(
                    "[api] listen = \"{}\" はこの機械の外から届くアドレスです。ループバック（127.0.0.1）にするか、allow_remote = true を明示してください",
                    config.api.listen
                ),
            });
        }
        Ok(config)
    }

    /// Reads a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// The breaker's settings.
    pub fn health(&self) -> HealthConfig {
        HealthConfig {
            offline_after: self.health.offline_after.max(1),
            probe_every: Duration::from_secs(self.health.probe_secs.max(1)),
        }
    }

    /// The reconciler's settings.
    pub fn reconcile_config(&self) -> ReconcileConfig {
        ReconcileConfig {
            concurrency: self.reconcile.concurrency.max(1),
            software_checks_digit: self.reconcile.software_checks_digit,
            ..ReconcileConfig::default()
        }
    }

    /// The API token's file.
    pub fn token_file(&self) -> PathBuf {
        self.api
            .token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("api.token"))
    }

    /// Seconds between passes.
    pub fn reconcile_interval(&self) -> Duration {
        Duration::from_secs(self.reconcile.interval_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let c = ServiceConfig::parse("institution_code = \"1319900017\"\n", "t").unwrap();
        assert_eq!(c.oqs.timeout_ms, 3000);
        assert_eq!(c.reconcile.interval_secs, 30);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/tsunagi"));
        let c = ServiceConfig::parse(
            "institution_code = \"1319900017\"\nfacility = \"judo\"\n[oqs]\ntimeout_ms = 1500\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.facility, FacilityType::Judo);
        assert_eq!(c.oqs.timeout_ms, 1500);
        for bad in [
            "",
            "institution_code = \"12\"",
            "institution_code = \"1319900017\"\nunknown = 1",
            "institution_code = \"1319900017\"\n[oqs]\ntimeout_ms = \"fast\"",
            "institution_code = \"1319900017\"\n[api]\nlisten = \"0.0.0.0:8947\"",
        ] {
            let e = ServiceConfig::parse(bad, "t").unwrap_err();
            assert!(e.message_ja().contains("設定ファイル"), "{bad}");
        }
    }
}
