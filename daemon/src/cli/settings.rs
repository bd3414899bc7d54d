//! `tsunagi settings` (設定の一覧): every setting a command uses, its value, and where it came
//! from — the configuration file or the default. Commands take their rule settings from here,
//! never from defaults of their own.

use std::io::Write;
use std::path::Path;

use super::check::{io_error, CommandError};
use crate::rules::settings::RuleSettings;
use crate::service::config::ServiceConfig;

/// The configuration file, when there is one.
pub fn load_config(config: &Path) -> Result<Option<ServiceConfig>, CommandError> {
    match std::fs::read_to_string(config) {
        Ok(text) => ServiceConfig::parse(&text, &config.display().to_string())
            .map(Some)
            .map_err(|e| CommandError::new(e.message_ja())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CommandError::new(format!(
            "設定ファイル {} を読めません: {}。",
            config.display(),
            crate::domain::io_error_ja(&e)
        ))),
    }
}

/// The rule settings commands use: the file's, else the defaults.
pub fn rule_settings(config: &Path) -> Result<RuleSettings, CommandError> {
    Ok(load_config(config)?.map(|c| c.rules()).unwrap_or_default())
}

/// `tsunagi settings`.
pub fn print(config: &Path, out: &mut dyn Write) -> Result<i32, CommandError> {
    let loaded = load_config(config)?;
    let rows = match &loaded {
        Some(c) => {
            writeln!(out, "設定ファイル: {}", config.display()).map_err(io_error)?;
            c.settings_with_sources()
        }
        None => {
            writeln!(
                out,
                "設定ファイル {} はありません（すべて既定値）。",
                config.display()
            )
            .map_err(io_error)?;
            let empty = ServiceConfig::parse("institution_code = \"0000000000\"\n", "既定値")
                .map_err(|e| CommandError::new(e.message_ja()))?;
            empty.settings_with_sources()
        }
    };
    for (name, value, from_file) in rows {
        let source = if from_file {
            "設定ファイル"
        } else {
            "既定値"
        };
        writeln!(out, "  {name} = {value}（{source}）").map_err(io_error)?;
    }
    let extra = loaded.as_ref().map_or(0, |c| c.retention.extra_months);
    let kept = if extra == 0 {
        "受診月の翌月末まで".to_string()
    } else {
        format!("受診月の翌月末から、さらに{extra}か月")
    };
    writeln!(
        out,
        "保存期間: 確認の記録と、患者さんの前回確認情報（保険者番号・負担割合など。資格確認システムにつながらない時の受付で使います）は{kept}保存します（事後確認が終わっていない確認は終わるまで）。期間が過ぎると消去します。"
    )
    .map_err(io_error)?;
    Ok(super::exit::OK)
}
