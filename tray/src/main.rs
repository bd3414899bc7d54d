//! `tsunagi-tray`: the tray indicator (トレイ表示) of tsunagid, for the staff at reception.
//!
//! A small per-user process of the desktop session (started from XDG autostart), separate from
//! the daemon, which is a system service without a session bus. It finds tsunagid from the
//! daemon's own configuration file, proves the daemon's identity before it sends the API token,
//! follows the status and the event stream, and shows one of five states — online, degraded,
//! offline, overdue 事後確認, tsunagid not reachable — with the queue size and the overdue count
//! in the tooltip, and a menu: 受付画面を開く, 状態を表示, 今すぐ事後確認, 終了. Where the
//! desktop shows no tray, it sends desktop notifications on the changes that matter instead.
//!
//! Modules: [`locate`] (configuration and token), [`api`] (the proven connection), [`sse`]
//! (the event-stream format), [`view`] (what is shown, pure), [`icon`] (pixmaps), [`item`]
//! (the StatusNotifierItem), [`notify`] (notifications), [`follow`] (the loop that ties them).
//!
//! Exit codes: 0 after 終了, SIGTERM or SIGINT; 2 when it cannot start (no session bus).

mod api;
mod follow;
mod icon;
mod item;
mod locate;
mod notify;
mod sse;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ksni::TrayMethods;
use tokio_util::sync::CancellationToken;

/// Tray indicator for tsunagid: the line's state, the 事後確認 queue and a menu. The API token
/// is read from the file the daemon's configuration names, never from the command line.
#[derive(Debug, Parser)]
#[command(name = "tsunagi-tray", version, about)]
struct Args {
    /// tsunagid's configuration file (TOML): where its API listens and its token file.
    #[arg(long, env = "TSUNAGI_CONFIG", default_value = locate::DEFAULT_CONFIG)]
    config: PathBuf,
    /// Read the status at least this often (seconds); events make it read sooner.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    refresh_secs: u64,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TSUNAGI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let args = Args::parse();
    // Two threads are plenty for one item, two connections and a notification.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tsunagi-tray: 実行環境を起動できません: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = follow::Settings {
        config: args.config,
        refresh: Duration::from_secs(args.refresh_secs),
    };
    runtime.block_on(run(settings))
}

async fn run(settings: follow::Settings) -> ExitCode {
    let cancel = CancellationToken::new();
    let (commands, received) = tokio::sync::mpsc::unbounded_channel();
    let item = item::Item::new(commands);
    // assume_sni_available: with no watcher on the bus yet, ksni calls watcher_offline (the
    // notification fallback) and registers the item when a watcher appears, instead of
    // failing here.
    let handle = match item.assume_sni_available(true).spawn().await {
        Ok(h) => Some(h),
        Err(ksni::Error::Dbus(e)) => {
            tracing::error!(error = %e, "no session bus");
            eprintln!(
                "tsunagi-tray: デスクトップのセッションバス（D-Bus）に接続できません。デスクトップにログインした状態で起動してください。"
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            tracing::warn!(error = %e, "no tray item; notifications only");
            None
        }
    };
    let follower = follow::Follower::new(settings, handle, received, cancel.clone());
    let signals = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("signal received");
            cancel.cancel();
        }
    });
    follower.run().await;
    signals.abort();
    ExitCode::SUCCESS
}

/// SIGTERM (the session ending) or SIGINT.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
