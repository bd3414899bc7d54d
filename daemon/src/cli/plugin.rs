//! `tsunagi plugin` (プラグイン): signing keys, signatures, the plugin directory.
//!
//! - `keygen --out KEYFILE`: a new signing key (file `0600`); prints its public key.
//! - `sign --key KEYFILE FILE.wasm`: writes `FILE.wasm.sig`.
//! - `verify [--trusted KEY]… FILE.wasm`: checks the signature against the given keys, else
//!   the configuration's `[plugins] trusted_keys`.
//! - `list`: every plugin in the configured directory, loaded as the daemon would load it.
//! - `install FILE.wasm`: checks it as the daemon would (signature, API version, capabilities,
//!   compilation) and only then moves it and its signature into the plugin directory.
//!
//! Exit codes: 0 done, 1 refused (signature, version, capability), 2 error.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::exit;
use crate::ledger::fold::CheckState;
use crate::plugin::{sign, PluginHost, PluginState, PublicKey, SecretKey};
use crate::service::config::PluginsSection;
use crate::view::{CheckView, FacilityView};

/// `tsunagi plugin …`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Make a new signing key and print its public key.
    Keygen(KeygenArgs),
    /// Sign a plugin (writes FILE.wasm.sig).
    Sign(SignArgs),
    /// Check a plugin's signature.
    Verify(VerifyArgs),
    /// The plugins in the plugin directory and their state.
    List(ListArgs),
    /// Check a plugin and copy it (with its signature) into the plugin directory.
    Install(InstallArgs),
}

/// `tsunagi plugin keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the secret key (must not exist yet).
    #[arg(long)]
    pub out: PathBuf,
}

/// `tsunagi plugin sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The secret key file.
    #[arg(long)]
    pub key: PathBuf,
    /// The plugin.
    pub file: PathBuf,
}

/// `tsunagi plugin verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A trusted public key (`tsunagi-plugin-key:…`); repeatable. Default: the configuration's.
    #[arg(long)]
    pub trusted: Vec<String>,
    /// The plugin.
    pub file: PathBuf,
}

/// `tsunagi plugin list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `tsunagi plugin install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The plugin; its signature must be beside it as FILE.wasm.sig.
    pub file: PathBuf,
}

/// A `tsunagi plugin` command could not do its work (exit 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginCliError {
    /// A key file.
    #[error("{0}")]
    Key(#[from] sign::KeyError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file.
    #[error("{0}")]
    Config(String),
    /// The plugin host could not start.
    #[error("{0}")]
    Host(#[from] crate::plugin::HostError),
}

impl PluginCliError {
    /// The message for the operator.
    pub fn message_ja(&self) -> String {
        match self {
            PluginCliError::Key(e) => e.message_ja(),
            PluginCliError::Io { path, source } => {
                format!("{} を読み書きできません: {source}", path.display())
            }
            PluginCliError::Config(m) => m.clone(),
            PluginCliError::Host(e) => e.message_ja(),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PluginCliError + '_ {
    move |source| PluginCliError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn out_err(e: std::io::Error) -> PluginCliError {
    PluginCliError::Io {
        path: PathBuf::from("<stdout>"),
        source: e,
    }
}

/// Runs a `tsunagi plugin` command; returns the exit code.
pub fn run(cmd: &PluginCommand, config: &Path, out: &mut dyn Write) -> Result<i32, PluginCliError> {
    match cmd {
        PluginCommand::Keygen(a) => keygen(a, out),
        PluginCommand::Sign(a) => sign_file(a, out),
        PluginCommand::Verify(a) => verify(a, config, out),
        PluginCommand::List(a) => list(a, config, out),
        PluginCommand::Install(a) => install(a, config, out),
    }
}

fn keygen(args: &KeygenArgs, out: &mut dyn Write) -> Result<i32, PluginCliError> {
    let key = SecretKey::generate();
    key.write_new(&args.out)?;
    writeln!(
        out,
        "署名用の鍵を {} に作りました（この機械の外に出さないでください）。\n公開鍵（設定の [plugins] trusted_keys に書きます）:\n{}",
        args.out.display(),
        key.public()
    )
    .map_err(out_err)?;
    Ok(exit::OK)
}

fn sign_file(args: &SignArgs, out: &mut dyn Write) -> Result<i32, PluginCliError> {
    let key = SecretKey::read(&args.key)?;
    let wasm = std::fs::read(&args.file).map_err(io(&args.file))?;
    let sig_path = sign::signature_path(&args.file);
    write_atomically(&sig_path, key.sign(&wasm).to_text().as_bytes())?;
    writeln!(
        out,
        "{} に署名しました: {}（鍵 {}）",
        args.file.display(),
        sig_path.display(),
        key.public()
    )
    .map_err(out_err)?;
    Ok(exit::OK)
}

/// What `[plugins]` says, and the data directory it hangs off.
fn plugins_config(config: &Path) -> Result<(PluginsSection, PathBuf), PluginCliError> {
    let loaded =
        super::settings::load_config(config).map_err(|e| PluginCliError::Config(e.message))?;
    Ok(match loaded {
        Some(c) => (c.plugins, c.data_dir),
        None => (PluginsSection::default(), PathBuf::from("/var/lib/tsunagi")),
    })
}

fn verify(args: &VerifyArgs, config: &Path, out: &mut dyn Write) -> Result<i32, PluginCliError> {
    let trusted: Vec<PublicKey> = if args.trusted.is_empty() {
        plugins_config(config)?.0.trusted_keys
    } else {
        args.trusted
            .iter()
            .map(|k| k.parse())
            .collect::<Result<_, _>>()?
    };
    let wasm = std::fs::read(&args.file).map_err(io(&args.file))?;
    match sign::verify_file(&args.file, &wasm, &trusted) {
        Ok(key) => {
            writeln!(out, "{}: 署名は正しいです（鍵 {key}）", args.file.display())
                .map_err(out_err)?;
            Ok(exit::OK)
        }
        Err(e) => {
            writeln!(out, "{}: {}", args.file.display(), e.message_ja()).map_err(out_err)?;
            Ok(exit::NOT_CONFIRMED)
        }
    }
}

/// A host like the daemon's. Its compile cache is the daemon's when this user may write it,
/// else a private directory removed afterwards (never a shared one: the cache holds native
/// code that is loaded without further checks).
fn host_like_daemon(
    section: &PluginsSection,
    data_dir: &Path,
) -> Result<(PluginHost, Option<PathBuf>), PluginCliError> {
    let settings = section.host_settings(data_dir);
    match PluginHost::new(settings.clone()) {
        Ok(host) => Ok((host, None)),
        Err(first) => {
            let private = std::env::temp_dir().join(format!(
                "tsunagi-plugin-cache-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            ));
            // `create_dir`, not `create_dir_all`: it must be new, and so ours.
            std::fs::create_dir(&private).map_err(|_| PluginCliError::Host(first))?;
            let host = PluginHost::new(crate::plugin::HostSettings {
                cache_dir: private.clone(),
                ..settings
            })?;
            Ok((host, Some(private)))
        }
    }
}

/// The facility plugin's output for a check (its fold `state`, viewed as `view`), for a
/// command working on the store itself because tsunagid is not running.
///
/// The plugins load as tsunagid loads them — the configuration's `[plugins]` directory,
/// trusted keys, grants and limits — and share its compile cache, so a plugin tsunagid (or an
/// earlier command) compiled costs a read of the artifact, not a compilation. Without a
/// configuration file no key is trusted and no plugin could load: there is no output, as
/// there is none from a tsunagid without plugins. A host that cannot be made is logged and
/// the check is shown without it: a check never depends on its plugin.
pub async fn direct_facility_output(
    config: &Path,
    state: CheckState,
    view: &CheckView,
) -> Option<FacilityView> {
    let service = super::settings::load_config(config).ok()??;
    if service.plugins.trusted_keys.is_empty() {
        return None;
    }
    let view = view.clone();
    let made = tokio::task::spawn_blocking(move || {
        let (section, data_dir) = (service.plugins, service.data_dir);
        let (host, private) = match host_like_daemon(&section, &data_dir) {
            Ok(made) => made,
            Err(e) => {
                tracing::warn!(error = %e, "the plugin host could not be made; showing the check without plugins");
                return None;
            }
        };
        for status in host.load_dir(&section.dir(&data_dir)) {
            if status.state != PluginState::Loaded {
                tracing::warn!(plugin = %status.name, state = ?status.state, "facility plugin not loaded");
            }
        }
        let output = crate::facility::view(&host, &state, &view);
        drop(host);
        if let Some(p) = private {
            let _ = std::fs::remove_dir_all(p);
        }
        output
    })
    .await;
    made.ok().flatten()
}

fn list(args: &ListArgs, config: &Path, out: &mut dyn Write) -> Result<i32, PluginCliError> {
    let (section, data_dir) = plugins_config(config)?;
    let dir = section.dir(&data_dir);
    let (host, private) = host_like_daemon(&section, &data_dir)?;
    let statuses = host.load_dir(&dir);
    drop(host);
    if let Some(p) = private {
        let _ = std::fs::remove_dir_all(p);
    }
    if args.json {
        let text = serde_json::to_string_pretty(&statuses).unwrap_or_else(|_| "[]".into());
        writeln!(out, "{text}").map_err(out_err)?;
        return Ok(exit::OK);
    }
    writeln!(out, "プラグインのディレクトリ: {}", dir.display()).map_err(out_err)?;
    if section.trusted_keys.is_empty() {
        writeln!(
            out,
            "信頼する鍵が設定されていません（[plugins] trusted_keys）。どのプラグインも読み込みません。"
        )
        .map_err(out_err)?;
    }
    if statuses.is_empty() {
        writeln!(out, "プラグインはありません。").map_err(out_err)?;
    }
    for s in &statuses {
        writeln!(out, "  {}", s.line_ja()).map_err(out_err)?;
    }
    Ok(exit::OK)
}

fn install(args: &InstallArgs, config: &Path, out: &mut dyn Write) -> Result<i32, PluginCliError> {
    let (section, data_dir) = plugins_config(config)?;
    let dir = section.dir(&data_dir);
    let Some(file_name) = args
        .file
        .file_name()
        .filter(|_| args.file.extension().is_some_and(|x| x == "wasm"))
    else {
        writeln!(
            out,
            "{} は .wasm ファイルではありません",
            args.file.display()
        )
        .map_err(out_err)?;
        return Ok(exit::NOT_CONFIRMED);
    };
    let wasm = std::fs::read(&args.file).map_err(io(&args.file))?;
    let sig_src = sign::signature_path(&args.file);
    let sig = match std::fs::read(&sig_src) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            writeln!(
                out,
                "{}",
                sign::VerifyError::Missing { path: sig_src }.message_ja()
            )
            .map_err(out_err)?;
            return Ok(exit::NOT_CONFIRMED);
        }
        Err(e) => return Err(io(&sig_src)(e)),
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    // Stage inside the plugin directory (same file system, so the final renames are atomic)
    // in a subdirectory the daemon's poll does not look into, and check exactly the bytes
    // that will be installed.
    let staging = dir.join(format!(".install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(io(&staging))?;
    let result = (|| {
        let staged = staging.join(file_name);
        let staged_sig = sign::signature_path(&staged);
        write_atomically(&staged, &wasm)?;
        write_atomically(&staged_sig, &sig)?;
        let (host, private) = host_like_daemon(&section, &data_dir)?;
        let checked = host.load(&staged);
        drop(host);
        if let Some(p) = private {
            let _ = std::fs::remove_dir_all(p);
        }
        let status = match checked {
            Ok(status) => status,
            Err(e) => {
                let name = crate::plugin::plugin_name(&staged);
                writeln!(out, "入れませんでした: {}", e.message_ja(&name)).map_err(out_err)?;
                return Ok(exit::NOT_CONFIRMED);
            }
        };
        let target = dir.join(file_name);
        let target_sig = sign::signature_path(&target);
        // The signature first: a poll between the two renames sees the old wasm with the new
        // signature, refuses that pair, and the old plugin keeps serving until the wasm lands.
        std::fs::rename(&staged_sig, &target_sig).map_err(io(&target_sig))?;
        std::fs::rename(&staged, &target).map_err(io(&target))?;
        debug_assert!(matches!(status.state, PluginState::Loaded));
        writeln!(
            out,
            "{} を入れました: {}",
            target.display(),
            status.line_ja()
        )
        .map_err(out_err)?;
        Ok(exit::OK)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Writes a file through a temporary file and a rename, so no reader sees half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PluginCliError> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}
