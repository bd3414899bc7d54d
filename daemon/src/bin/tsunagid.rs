//! `tsunagid`: the Tsunagi daemon. `tsunagid --config /etc/tsunagi/tsunagi.toml`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tsunagi::oqs::{OqsClient, OqsConfig};
use tsunagi::service::config::ServiceConfig;

/// Tsunagi daemon: keeps the line's health, confirms captured checks (事後確認) and ends
/// months whose retention is over.
#[derive(Debug, Parser)]
#[command(name = "tsunagid", version, about)]
struct Args {
    /// The configuration file (TOML).
    #[arg(
        long,
        env = "TSUNAGI_CONFIG",
        default_value = "/etc/tsunagi/tsunagi.toml"
    )]
    config: PathBuf,
    /// Run without card readers: an always-on device that syncs and reconciles for the
    /// clinic's other devices (a server, a group's hub).
    #[arg(long)]
    no_reader: bool,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TSUNAGI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, never into journald or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let args = Args::parse();
    let mut config = match ServiceConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tsunagid: {}", e.message_ja());
            return ExitCode::from(2);
        }
    };
    config.no_reader = args.no_reader;
    if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
        eprintln!(
            "tsunagid: データディレクトリ {} を作れません: {e}",
            config.data_dir.display()
        );
        return ExitCode::from(2);
    }
    let client = match OqsClient::new(OqsConfig {
        base_url: config.oqs.url.clone(),
        institution_code: config.institution_code.clone(),
        timeout: Duration::from_millis(config.oqs.timeout_ms),
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tsunagid: {}", e.message_ja());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tsunagid: 実行環境を起動できません: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async move {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut service = tokio::spawn(tsunagi::service::run(config, client, stopped));
        // A daemon that cannot start (store in use, port taken) ends before any signal.
        tokio::select! {
            result = &mut service => return result,
            () = wait_for_signal() => {}
        }
        let _ = stop.send(true);
        service.await
    });
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("tsunagid: {}", e.message_ja());
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = %e, "service task failed");
            ExitCode::from(2)
        }
    }
}

/// SIGTERM (systemd) or Ctrl-C.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
