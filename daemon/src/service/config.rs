//! `tsunagid`'s configuration file (TOML). Every field has a default; only the institution
//! code must be given.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::check::health::HealthConfig;
use crate::domain::FacilityType;
use crate::reconcile::ReconcileConfig;
use crate::rules::settings::RuleSettings;

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
    /// `[rules]`: rule settings that differ from the defaults (dates the ministry moved,
    /// the receipt software's field lengths); any key of [`RuleSettings`].
    #[serde(default)]
    pub rules: toml::Table,
    /// `[plugins]`: facility plugins, their trusted signers and their bounds.
    #[serde(default)]
    pub plugins: PluginsSection,
    /// `[sync]`: sync with the clinic's other devices.
    #[serde(default)]
    pub sync: SyncSection,
    /// `[folders]`: the ministry terminal's folder interface for a receipt computer.
    #[serde(default)]
    pub folders: FoldersSection,
    /// `[read_aloud]`: the reception page's read-aloud (読み上げ, R21) with Open JTalk.
    #[serde(default)]
    pub read_aloud: ReadAloudSection,
    /// Run without card readers (`tsunagid --no-reader`): an always-on device that syncs and
    /// reconciles for the others (a clinic server, a group's hub). Not in the file.
    #[serde(skip)]
    pub no_reader: bool,
}

/// `[sync]`: sync with the clinic's other devices (端末間同期) over QUIC, with paired devices
/// only. Sync runs when `listen` is set or a device is paired (`tsunagi peer add`).
///
/// ```toml
/// [sync]
/// listen = "0.0.0.0:22800"     # UDP; default: not listening, only dialling
/// [[sync.peers]]                # paired in the configuration (besides `tsunagi peer add`)
/// id = "XXXXXXX-XXXXXXX-…"
/// name = "受付PC"
/// addr = "192.168.1.10:22800"
/// discovery = true             # find paired devices without an address on the LAN
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSection {
    /// Where peers reach this device (UDP).
    pub listen: Option<std::net::SocketAddr>,
    /// Devices paired in the configuration.
    pub peers: Vec<crate::peer::book::Peer>,
    /// Announce this device on the local network and find paired devices that have no
    /// address there (UDP broadcast; only ever an address hint, the handshake still checks
    /// the key).
    pub discovery: bool,
    /// Where announcements go and are listened for (default `255.255.255.255:22801`).
    pub discovery_addr: Option<std::net::SocketAddr>,
}

/// `[plugins]`: where facility plugins are, whose signatures are trusted, how every call is
/// bounded, and which capabilities each plugin is granted.
///
/// ```toml
/// [plugins]
/// dir = "/var/lib/tsunagi/plugins"          # default <data_dir>/plugins
/// trusted_keys = ["tsunagi-plugin-key:…"]
/// call_timeout_ms = 150
/// memory_limit_mib = 32
/// output_limit_bytes = 65536
/// [plugins.grants]
/// medical = ["clocks"]                      # by file name without .wasm
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsSection {
    /// The plugin directory; default `<data_dir>/plugins`.
    pub dir: Option<PathBuf>,
    /// Public keys (`tsunagi-plugin-key:…`) whose signatures are accepted.
    pub trusted_keys: Vec<crate::plugin::PublicKey>,
    /// How long one call may run, in milliseconds.
    pub call_timeout_ms: u64,
    /// Largest memory of one plugin instance, in MiB.
    pub memory_limit_mib: u64,
    /// Largest output of one call, in bytes (strings' bytes plus one per list item).
    pub output_limit_bytes: u64,
    /// Capabilities (`clocks`, `random`, `filesystem`, `sockets`) by plugin name.
    pub grants:
        std::collections::BTreeMap<String, std::collections::BTreeSet<crate::plugin::Capability>>,
}

impl Default for PluginsSection {
    fn default() -> Self {
        let limits = crate::plugin::CallLimits::default();
        Self {
            dir: None,
            trusted_keys: Vec::new(),
            call_timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(150),
            memory_limit_mib: (limits.memory_bytes >> 20) as u64,
            output_limit_bytes: limits.output_bytes as u64,
            grants: Default::default(),
        }
    }
}

impl PluginsSection {
    /// The plugin directory.
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("plugins"))
    }

    /// The host's settings, its compile cache in `<data_dir>/plugin-cache`.
    pub fn host_settings(&self, data_dir: &Path) -> crate::plugin::HostSettings {
        crate::plugin::HostSettings {
            cache_dir: data_dir.join("plugin-cache"),
            trusted_keys: self.trusted_keys.clone(),
            limits: crate::plugin::CallLimits {
                timeout: Duration::from_millis(self.call_timeout_ms.max(1)),
                memory_bytes: usize::try_from(self.memory_limit_mib.max(1) << 20)
                    .unwrap_or(usize::MAX),
                output_bytes: usize::try_from(self.output_limit_bytes.max(1)).unwrap_or(usize::MAX),
            },
            grants: self.grants.clone(),
        }
    }
}

/// Rule settings the checks' own deadlines read from the defaults today (the fold is pure and
/// takes no settings yet): refused in `[rules]` rather than shown as set and not used.
const NOT_YET_SETTABLE: [&str; 1] = ["claim_submission_day"];

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
    /// Reads (GET requests) answered per second, all clients together; while a reception
    /// request is being served, a tenth of that. Reception requests are never limited. Keeps a
    /// client polling in a loop from taking reception's CPU.
    pub reads_per_second: u32,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8947)),
            allow_remote: false,
            token_file: None,
            max_body_bytes: 64 * 1024,
            reads_per_second: 5000,
        }
    }
}

/// `[folders]`: the ministry terminal's folder interface (フォルダ連携) for a receipt
/// computer that reads and writes `req`, `res` and `face` files. Off unless `root` is set.
///
/// ```toml
/// [folders]
/// root = "/srv/oqs"          # holds req, res and face
/// encoding = "shift_jis"     # of the result files; default "utf-8"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FoldersSection {
    /// The folder holding `req`, `res` and `face`.
    pub root: Option<PathBuf>,
    /// Encoding of the result and face files written: `utf-8` or `shift_jis`.
    pub encoding: crate::folders::xml::Encoding,
    /// Milliseconds between looks into `req`.
    pub poll_ms: u64,
    /// Write a face file for every answer to a card check.
    pub face: bool,
    /// Seconds after which a result or face file still in its folder counts as not
    /// collected (in the status).
    pub uncollected_secs: u64,
}

impl Default for FoldersSection {
    fn default() -> Self {
        Self {
            root: None,
            encoding: crate::folders::xml::Encoding::Utf8,
            poll_ms: 200,
            face: true,
            uncollected_secs: 300,
        }
    }
}

/// `[read_aloud]`: read-aloud (読み上げ, R21) of a result on the reception page, synthesised by
/// Open JTalk in the daemon. The defaults are where Debian's `open-jtalk` and
/// `open-jtalk-mecab-naist-jdic` put the engine and the dictionary, and where
/// `scripts/setup-system.sh` puts the voice.
///
/// ```toml
/// [read_aloud]
/// auto = true                  # speak every result as it is shown; default: on request
/// voice = "/opt/voices/mei_normal.htsvoice"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadAloudSection {
    /// Offer read-aloud at all.
    pub enabled: bool,
    /// Speak each result when it is shown, not only when asked.
    pub auto: bool,
    /// The `open_jtalk` program.
    pub engine: PathBuf,
    /// The MeCab dictionary Open JTalk reads (a folder holding `sys.dic`).
    pub dictionary: PathBuf,
    /// The HTS voice (`.htsvoice`).
    pub voice: PathBuf,
}

impl Default for ReadAloudSection {
    fn default() -> Self {
        Self {
            enabled: true,
            auto: false,
            engine: PathBuf::from("/usr/bin/open_jtalk"),
            dictionary: PathBuf::from("/var/lib/mecab/dic/open-jtalk/naist-jdic"),
            voice: PathBuf::from("/usr/local/share/tsunagi/voice/mei_normal.htsvoice"),
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
    /// The receipt software validates the insurer number's check digit (`77777779`);
    /// default no.
    pub software_checks_digit: Option<bool>,
}

impl Default for ReconcileSection {
    fn default() -> Self {
        Self {
            interval_secs: 30,
            concurrency: 8,
            software_checks_digit: None,
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
            ConfigError::Read { path, source } => format!(
                "設定ファイル {path} を読めません: {}。",
                crate::domain::io_error_ja(source)
            ),
            ConfigError::Invalid { path, detail } => format!(
                "設定ファイル {path} に誤りがあります: {}。",
                detail.trim_end_matches('。')
            ),
        }
    }
}

/// A TOML error in words an installer can act on: where, and what (the parser's English
/// message is kept only for the names it quotes).
fn toml_error_ja(text: &str, e: &toml::de::Error) -> String {
    let at = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
        .map(|line| format!("{line}行目: "))
        .unwrap_or_default();
    let m = e.message();
    // serde's messages quote names in backticks: `name`.
    let quoted = m.split('`').nth(1).filter(|q| !q.is_empty());
    let what = if m.starts_with("unknown field") {
        format!("「{}」という設定項目はありません", quoted.unwrap_or("?"))
    } else if m.starts_with("missing field") {
        format!("「{}」の設定が必要です", quoted.unwrap_or("?"))
    } else if m.starts_with("unknown variant") {
        format!("「{}」は使えない値です", quoted.unwrap_or("?"))
    } else if m.starts_with("invalid type") || m.starts_with("invalid value") {
        "値の種類が正しくありません（文字列は \"…\" で囲み、数値や true/false は囲みません）"
            .to_string()
    } else if m.contains("duplicate key") {
        "同じ設定項目が2回書かれています".to_string()
    } else {
        "書き方が正しくありません（「名前 = 値」の形で、文字列は \"…\" で囲みます）".to_string()
    };
    format!("{at}{what}")
}

impl ServiceConfig {
    /// Parses TOML text.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.into(),
            detail: toml_error_ja(text, &e),
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
        config
            .rule_settings()
            .map_err(|detail| ConfigError::Invalid {
                path: path.into(),
                detail,
            })?;
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
            software_checks_digit: self.reconcile.software_checks_digit.unwrap_or(false),
            field_lengths: self.rules().claim_fields,
            ..ReconcileConfig::default()
        }
    }

    /// The rule settings: the defaults with `[rules]` laid over them. (Checked when the
    /// file is parsed, so this cannot fail afterwards.)
    pub fn rules(&self) -> RuleSettings {
        self.rule_settings().unwrap_or_default()
    }

    /// The rule settings, or what in `[rules]` is wrong.
    pub fn rule_settings(&self) -> Result<RuleSettings, String> {
        let defaults =
            toml::Table::try_from(RuleSettings::default()).map_err(|e| format!("[rules]: {e}"))?;
        let mut merged = defaults.clone();
        for (key, value) in &self.rules {
            if NOT_YET_SETTABLE.contains(&key.as_str()) {
                return Err(format!(
                    "[rules] の {key} はまだ設定ファイルでは変えられません（既定値を使います）"
                ));
            }
            match (merged.get_mut(key), value) {
                (None, _) => return Err(format!("[rules] に {key} という設定はありません")),
                (Some(toml::Value::Table(inner)), toml::Value::Table(given)) => {
                    for (k, v) in given {
                        if !inner.contains_key(k) {
                            return Err(format!("[rules.{key}] に {k} という設定はありません"));
                        }
                        inner.insert(k.clone(), v.clone());
                    }
                }
                (Some(slot), v) => *slot = v.clone(),
            }
        }
        merged
            .try_into()
            .map_err(|e: toml::de::Error| format!("[rules]: {}", e.message()))
    }

    /// Every setting a command uses, with its value and whether the file set it (else it is
    /// the default), in a stable order.
    pub fn settings_with_sources(&self) -> Vec<(String, String, bool)> {
        let mut out = vec![(
            "reconcile.software_checks_digit".to_string(),
            self.reconcile
                .software_checks_digit
                .unwrap_or(false)
                .to_string(),
            self.reconcile.software_checks_digit.is_some(),
        )];
        out.push((
            "retention.extra_months".to_string(),
            self.retention.extra_months.to_string(),
            self.retention.extra_months != 0,
        ));
        let merged = toml::Table::try_from(self.rules()).unwrap_or_default();
        for (key, value) in &merged {
            match value {
                toml::Value::Table(inner) => {
                    for (k, v) in inner {
                        let set = self
                            .rules
                            .get(key)
                            .and_then(toml::Value::as_table)
                            .is_some_and(|t| t.contains_key(k));
                        out.push((format!("rules.{key}.{k}"), v.to_string(), set));
                    }
                }
                v => out.push((
                    format!("rules.{key}"),
                    v.to_string(),
                    self.rules.contains_key(key),
                )),
            }
        }
        out
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
            "institution_code = \"1319900017\"\n[rules]\nno_such_rule = 1",
            "institution_code = \"1319900017\"\n[rules]\nclaim_submission_day = 12",
            "institution_code = \"1319900017\"\n[rules]\nclaim_submission_day = \"ten\"",
            "institution_code = \"1319900017\"\n[rules.claim_fields]\nwidth = 3",
            "institution_code = \"1319900017\"\n[plugins]\nunknown = 1",
            "institution_code = \"1319900017\"\n[plugins]\ntrusted_keys = [\"ssh-ed25519 AAAA\"]",
            "institution_code = \"1319900017\"\n[plugins.grants]\nmedical = [\"everything\"]",
        ] {
            let e = ServiceConfig::parse(bad, "t").unwrap_err();
            assert!(e.message_ja().contains("設定ファイル"), "{bad}");
        }
    }

    #[test]
    fn rules_lay_over_the_defaults_and_say_where_each_came_from() {
        let c = ServiceConfig::parse(
            "institution_code = \"1319900017\"\n[reconcile]\nsoftware_checks_digit = true\n\
             [rules]\nexpired_acceptance_until = 2026-09-30\n[rules.claim_fields]\nbango = 12\n",
            "t",
        )
        .unwrap();
        let r = c.rules();
        assert_eq!(
            r.expired_acceptance_until,
            chrono::NaiveDate::from_ymd_opt(2026, 9, 30).unwrap()
        );
        assert_eq!(r.claim_fields.bango, 12);
        assert_eq!(
            r.claim_fields.kigo,
            RuleSettings::default().claim_fields.kigo
        );
        assert_eq!(c.reconcile_config().field_lengths.bango, 12);
        assert!(c.reconcile_config().software_checks_digit);
        let sources = c.settings_with_sources();
        let find = |k: &str| sources.iter().find(|(n, _, _)| n == k).unwrap().clone();
        assert!(find("rules.expired_acceptance_until").2);
        assert_eq!(
            find("rules.claim_fields.bango"),
            ("rules.claim_fields.bango".into(), "12".into(), true)
        );
        assert!(!find("rules.claim_fields.kigo").2);
        assert!(!find("rules.claim_submission_day").2);
        assert!(find("reconcile.software_checks_digit").2);
    }
}
