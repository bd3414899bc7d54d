//! `tsunagi open`: opens the reception page (受付画面) in the desktop's browser, signed in.
//!
//! The command finds tsunagid and its token as every other command does
//! ([`super::client::target`], with the daemon's identity proof before the token is sent),
//! asks it for a one-time code (`POST /v1/page/codes`) and opens the sign-in address with
//! `xdg-open`. The browser gets only the code — single use, valid for a minute — never the
//! token: the page runs on a session cookie. Where no browser can be started (no desktop,
//! no `xdg-open`), or with `--print`, the address is printed for staff to open by hand.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use super::check::CommandError;
use super::client::{target, Target};
use crate::api::page::PageCode;

/// `tsunagi open`.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// Print the page's sign-in address instead of opening a browser.
    #[arg(long)]
    pub print: bool,
}

/// Why the page could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// tsunagid does not run (or this configuration names none).
    #[error("tsunagid is not running")]
    NoDaemon,
    /// tsunagid could not be reached or refused the request.
    #[error("{}", .0.message)]
    Api(CommandError),
}

impl OpenError {
    /// The message for staff.
    pub fn message_ja(&self) -> String {
        match self {
            OpenError::NoDaemon => "tsunagid が動いていないため、受付画面を開けません。tsunagid を起動してから（systemctl start tsunagid）もう一度実行してください。".into(),
            OpenError::Api(e) => e.message.clone(),
        }
    }
}

impl From<OpenError> for CommandError {
    fn from(e: OpenError) -> Self {
        CommandError::new(e.message_ja())
    }
}

/// How long `xdg-open` may take to say whether it could start a browser; one still running
/// then has started it (some launchers wait for the browser to exit).
const LAUNCH_WAIT: Duration = Duration::from_secs(5);

/// Opens (or prints) the signed-in page address.
pub async fn open(
    args: &OpenArgs,
    config: &Path,
    out: &mut dyn Write,
) -> Result<i32, CommandError> {
    let api = match target(config, None).await? {
        Target::Daemon(api) => api,
        Target::Direct(_) => return Err(OpenError::NoDaemon.into()),
    };
    let code: PageCode = api
        .post("/v1/page/codes", &serde_json::json!({}))
        .await
        .map_err(OpenError::Api)?;
    let write = |out: &mut dyn Write, text: String| {
        writeln!(out, "{text}").map_err(|e| CommandError::new(format!("出力できません: {e}")))
    };
    if args.print {
        write(out, code.url)?;
        return Ok(super::exit::OK);
    }
    match launch(&code.url) {
        Ok(()) => write(
            out,
            "受付画面をブラウザーで開きました。開かない場合は --print を付けて実行し、表示されたアドレスを開いてください。".into(),
        )?,
        Err(why) => {
            write(
                out,
                format!(
                    "ブラウザーを開けませんでした（{why}）。次のアドレスを{}秒以内にこの端末のブラウザーで開いてください（一度だけ使えます）:",
                    code.expires_in_secs
                ),
            )?;
            write(out, code.url)?;
        }
    }
    Ok(super::exit::OK)
}

/// Starts the desktop's browser on `url`; `Err` says why not, in Japanese.
fn launch(url: &str) -> Result<(), String> {
    let mut child = Command::new("xdg-open")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "xdg-open がありません".to_string(),
            _ => format!("xdg-open を起動できません: {e}"),
        })?;
    let deadline = Instant::now() + LAUNCH_WAIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(format!(
                    "xdg-open が失敗しました（終了コード {}）",
                    status.code().unwrap_or(-1)
                ))
            }
            Ok(None) if Instant::now() >= deadline => return Ok(()),
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("xdg-open の結果が分かりません: {e}")),
        }
    }
}
