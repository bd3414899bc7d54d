//! Facility plugins (施設別プラグイン): the host that runs them.
//!
//! A plugin is a WebAssembly component built against the frozen contract in `wit/v1`
//! (`tsunagi:clinic@1.0.0`, world `facility-adapter`). It turns a folded check into what one
//! kind of facility needs (claim fields, reception lines, read-aloud text, warnings). The host
//! treats every plugin as untrusted code that may loop, hoard memory, return garbage or try to
//! reach the file system or the network, and makes sure none of that can cost a check.
//!
//! # What happens to a plugin file
//!
//! 1. **Signature** ([`sign`]): `X.wasm` must come with `X.wasm.sig`, an ed25519 signature by a
//!    key in the configured trusted list, over the file's sha256. Nothing else is read first.
//! 2. **Inspection** (`inspect`): the component's top-level imports are read with wasmparser
//!    *before* compiling. They give the API version it was built against (the
//!    `tsunagi:clinic/types@X.Y.Z` import: 1.x loads, another major is refused) and the WASI
//!    interfaces it wants, each checked against the capabilities granted to that plugin
//!    ([`Capability`]). A plugin that wants what it was not granted is refused at load, with
//!    the import named.
//! 3. **Compilation** (`cache`): compiled once; the artifact is kept in a cache directory the
//!    daemon owns, keyed by the component's sha256 and the engine's compatibility hash.
//! 4. **Pre-instantiation** (`host`): imports are resolved once (`InstancePre`); calls run in
//!    a `Store` with a memory limit and a fresh epoch deadline (an instance whose last call
//!    ended well is reused, a failed one is dropped), and output is measured against a size
//!    limit (`limits`).
//!
//! A plugin that traps, runs out of time or memory, or returns oversized or invalid output is
//! **disabled** and reported ([`PluginState::Disabled`], with the reason in Japanese); the
//! caller gets a [`CallError`] and keeps the raw check. Replacing the file on disk and calling
//! [`PluginHost::reload_changed`] (a cheap poll by size and mtime) loads the new one; the old
//! one keeps serving until the new one is verified, compiled and pre-instantiated.
//!
//! # WASI
//!
//! A Rust guest built for `wasm32-wasip2` imports some WASI through std even if it does no I/O:
//! `wasi:cli/{environment,exit,stdin,stdout,stderr,terminal-*}` and `wasi:io/{error,poll,streams}`.
//! Those are allowed to every plugin: the context behind them is deny-all (no environment
//! variables, no arguments, stdin closed, stdout and stderr discarded), so they reveal nothing.
//! Clocks, randomness, the file system and sockets are capabilities a plugin must be granted
//! by name in `[plugins.grants]`; even then the file system has no preopened directory and
//! sockets may reach no address. Everything else (`wasi:http`, unknown packages) is refused.
//!
//! Out of scope here: choosing which plugin formats which check (the caller, by
//! [`PluginStatus::facilities`]) and storing what a plugin returned.

mod cache;
mod host;
mod inspect;
mod limits;
pub mod sign;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use host::{facility_name, plugin_name, wasm_files, PluginHost, TICK};
pub use inspect::{ApiVersion, SUPPORTED_MAJOR};
pub use sign::{PublicKey, SecretKey};

/// The contract's types, generated from `wit/v1` (`tsunagi:clinic/types@1.0.0`).
#[allow(missing_docs, missing_debug_implementations)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/v1",
        world: "facility-adapter",
    });
}

/// The data a plugin is given and returns: `Check`, `Output`, `Moment`, `Addition`, `Info`,
/// `Failure` and the records inside them, as generated from the WIT.
pub use bindings::tsunagi::clinic::types as api;

/// A capability a plugin may be granted (権限), by its name in `[plugins.grants]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// `wasi:clocks/*`: the wall clock and the monotonic clock.
    Clocks,
    /// `wasi:random/*`: random bytes.
    Random,
    /// `wasi:filesystem/*`: linked, but no directory is ever opened to the plugin.
    Filesystem,
    /// `wasi:sockets/*`: linked, but no address may be reached.
    Sockets,
}

impl Capability {
    /// Its name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Clocks => "clocks",
            Capability::Random => "random",
            Capability::Filesystem => "filesystem",
            Capability::Sockets => "sockets",
        }
    }
}

/// The bounds every call runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// How long one call may run before it is stopped.
    pub timeout: Duration,
    /// Largest linear memory a plugin instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Largest output: the bytes of all its strings plus one per list item.
    pub output_bytes: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(150),
            memory_bytes: 32 << 20,
            output_bytes: 64 << 10,
        }
    }
}

/// What the host is built with.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Where compiled plugins are kept (the daemon uses `<data_dir>/plugin-cache`). Only the
    /// host writes there; it is created `0700`.
    pub cache_dir: PathBuf,
    /// Keys whose signatures are accepted.
    pub trusted_keys: Vec<PublicKey>,
    /// Per-call bounds.
    pub limits: CallLimits,
    /// Capabilities granted, by plugin name (the file name without `.wasm`).
    pub grants: BTreeMap<String, BTreeSet<Capability>>,
}

/// Where a plugin stands (プラグインの状態). Stable kebab-case names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum PluginState {
    /// Verified, compiled and ready for calls.
    Loaded,
    /// It misbehaved during a call and serves no more calls until its file is replaced.
    Disabled {
        /// Why, in Japanese.
        reason: String,
    },
    /// It was not loaded.
    Refused {
        /// Why, in Japanese.
        reason: String,
    },
}

/// A plugin as the daemon can show it (`tsunagi plugin list`, the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// The plugin's name: its file name without `.wasm`.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// Loaded, disabled or refused.
    #[serde(flatten)]
    pub state: PluginState,
    /// The key that signed it, once verified.
    pub signer: Option<String>,
    /// The API version it was built against, once read.
    pub api_version: Option<String>,
    /// What it says it is (`describe`): its own name and version.
    pub title: Option<String>,
    /// The facility types it serves (`describe`), as the WIT names them.
    pub facilities: Vec<String>,
    /// The compiled code came from the cache rather than a fresh compilation.
    pub from_cache: bool,
}

impl PluginStatus {
    /// One line for staff, in Japanese.
    pub fn line_ja(&self) -> String {
        let what = match &self.state {
            PluginState::Loaded => "読み込み済み".to_string(),
            PluginState::Disabled { reason } => format!("停止中: {reason}"),
            PluginState::Refused { reason } => format!("読み込み拒否: {reason}"),
        };
        let mut parts = vec![format!("{}: {what}", self.name)];
        if let Some(title) = &self.title {
            parts.push(format!("名前 {title}"));
        }
        if let Some(v) = &self.api_version {
            parts.push(format!("API {v}"));
        }
        if !self.facilities.is_empty() {
            parts.push(format!("施設 {}", self.facilities.join(", ")));
        }
        if let Some(k) = &self.signer {
            parts.push(format!("署名 {k}"));
        }
        parts.join(" / ")
    }
}

/// Counts of the compile cache since the host started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Components loaded from a cached artifact.
    pub hits: u64,
    /// Components compiled (and then cached).
    pub misses: u64,
}

/// The host could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The engine could not be built with this configuration.
    #[error("cannot build the wasm engine: {0}")]
    Engine(String),
    /// WASI could not be linked.
    #[error("cannot link wasi: {0}")]
    Link(String),
    /// The cache directory could not be made.
    #[error("cannot create the plugin cache {path}: {source}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl HostError {
    /// The message for staff or whoever installs the service.
    pub fn message_ja(&self) -> String {
        match self {
            HostError::Engine(d) => format!("プラグインの実行環境を用意できません: {d}"),
            HostError::Link(d) => format!("プラグインの実行環境を用意できません（WASI）: {d}"),
            HostError::CacheDir { path, source } => format!(
                "プラグインのキャッシュ {} を作れません: {source}。データディレクトリの権限を確かめてください",
                path.display()
            ),
        }
    }
}

/// A plugin was not loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Its file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Its signature is missing, malformed, not by a trusted key, or does not match.
    #[error("signature refused: {0}")]
    Signature(#[from] sign::VerifyError),
    /// It is not a well-formed component.
    #[error("not a component: {0}")]
    Malformed(String),
    /// It does not import the contract, so its API version cannot be told.
    #[error("no tsunagi:clinic import: cannot tell its api version")]
    NoApiVersion,
    /// It was built for an API major version the host does not run.
    #[error("built for api {found}, host runs {supported}.x")]
    UnsupportedApi {
        /// The version it targets.
        found: ApiVersion,
        /// The major version the host runs.
        supported: u64,
    },
    /// It imports a capability it was not granted.
    #[error("plugin {plugin} imports {import}, capability {capability:?} not granted")]
    NotGranted {
        /// The plugin.
        plugin: String,
        /// The import.
        import: String,
        /// The capability that would allow it.
        capability: Capability,
    },
    /// It imports something no plugin may have.
    #[error("plugin {plugin} imports {import}, which no plugin may use")]
    Forbidden {
        /// The plugin.
        plugin: String,
        /// The import.
        import: String,
    },
    /// Compiling, caching or pre-instantiating failed.
    #[error("cannot prepare: {0}")]
    Prepare(String),
    /// `describe` failed when it was asked who it is.
    #[error("describe failed: {0}")]
    Describe(Box<CallError>),
}

impl LoadError {
    /// The message for staff, naming the plugin.
    pub fn message_ja(&self, plugin: &str) -> String {
        match self {
            LoadError::Read { path, source } => format!(
                "プラグイン {plugin} のファイル {} を読めません: {source}",
                path.display()
            ),
            LoadError::Signature(e) => format!("プラグイン {plugin} の署名を確認できません: {}", e.message_ja()),
            LoadError::Malformed(d) => format!(
                "プラグイン {plugin} は正しいWebAssemblyコンポーネントではありません（{d}）"
            ),
            LoadError::NoApiVersion => format!(
                "プラグイン {plugin} はどの版のプラグインAPI（tsunagi:clinic）向けか分かりません。wit/v1 から作り直してください"
            ),
            LoadError::UnsupportedApi { found, supported } => format!(
                "プラグイン {plugin} はプラグインAPI {found} 向けです。このtsunagiが使えるのは {supported}.x です。{supported}.x 向けの版を入れてください"
            ),
            LoadError::NotGranted { import, capability, .. } => format!(
                "プラグイン {plugin} は許可されていない機能 {import} を使おうとしています（読み込みません。必要なら設定の [plugins.grants] で {} を許可してください）",
                capability.name()
            ),
            LoadError::Forbidden { import, .. } => format!(
                "プラグイン {plugin} はプラグインには使えない機能 {import} を使おうとしています（読み込みません）"
            ),
            LoadError::Prepare(d) => format!("プラグイン {plugin} を準備できません: {d}"),
            LoadError::Describe(e) => format!(
                "プラグイン {plugin} が自分の情報を返しません: {}",
                e.message_ja()
            ),
        }
    }
}

/// A call to a plugin failed. The check itself is untouched; the caller decides what to show.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No plugin of that name is loaded.
    #[error("plugin {plugin} is not loaded")]
    NotLoaded {
        /// The plugin.
        plugin: String,
    },
    /// The plugin was disabled earlier.
    #[error("plugin {plugin} is disabled")]
    Disabled {
        /// The plugin.
        plugin: String,
        /// Why, in Japanese.
        reason: String,
    },
    /// It ran past its deadline and was stopped; it is now disabled.
    #[error("plugin {plugin} timed out")]
    TimedOut {
        /// The plugin.
        plugin: String,
        /// The deadline.
        limit: Duration,
    },
    /// It wanted more memory than allowed and was stopped; it is now disabled.
    #[error("plugin {plugin} exceeded its memory limit")]
    OutOfMemory {
        /// The plugin.
        plugin: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// It returned more than allowed; it is now disabled.
    #[error("plugin {plugin} output of {size} exceeds {limit}")]
    OutputTooLarge {
        /// The plugin.
        plugin: String,
        /// What it returned.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// It trapped (a panic, an invalid value, …); it is now disabled.
    #[error("plugin {plugin} trapped: {detail}")]
    Trapped {
        /// The plugin.
        plugin: String,
        /// Wasmtime's account, in English.
        detail: String,
    },
    /// It declined the check (its own `failure`); it stays loaded.
    #[error("plugin {plugin} declined: {detail}")]
    Declined {
        /// The plugin.
        plugin: String,
        /// Unsupported facility (`true`) or an incomplete check (`false`).
        unsupported: bool,
        /// The plugin's text, in Japanese.
        detail: String,
    },
}

impl CallError {
    /// The message for staff.
    pub fn message_ja(&self) -> String {
        match self {
            CallError::NotLoaded { plugin } => format!(
                "プラグイン {plugin} は読み込まれていません。確認の記録はそのまま残っています"
            ),
            CallError::Disabled { plugin, reason } => format!(
                "プラグイン {plugin} は停止中です（{reason}）。確認の記録はそのまま残っています。新しい版に入れ替えてください"
            ),
            CallError::TimedOut { plugin, limit } => format!(
                "プラグイン {plugin} が制限時間（{} ミリ秒）内に終わらないため止めて、停止しました。確認の記録はそのまま残っています",
                limit.as_millis()
            ),
            CallError::OutOfMemory { plugin, limit } => format!(
                "プラグイン {plugin} がメモリの上限（{} MiB）を超えようとしたため止めて、停止しました。確認の記録はそのまま残っています",
                limit >> 20
            ),
            CallError::OutputTooLarge { plugin, size, limit } => format!(
                "プラグイン {plugin} の出力（{size} バイト）が上限（{limit} バイト）を超えたため使わず、停止しました。確認の記録はそのまま残っています"
            ),
            CallError::Trapped { plugin, .. } => format!(
                "プラグイン {plugin} が異常終了したため停止しました。確認の記録はそのまま残っています"
            ),
            CallError::Declined { plugin, unsupported: true, detail } => format!(
                "プラグイン {plugin} はこの施設の種類に対応していません（{detail}）"
            ),
            CallError::Declined { plugin, unsupported: false, detail } => format!(
                "プラグイン {plugin} は出力を作れませんでした: {detail}"
            ),
        }
    }

    /// The plugin is disabled by this error.
    pub fn disables(&self) -> bool {
        matches!(
            self,
            CallError::TimedOut { .. }
                | CallError::OutOfMemory { .. }
                | CallError::OutputTooLarge { .. }
                | CallError::Trapped { .. }
        )
    }
}
