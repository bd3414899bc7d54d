//! `tsunagi`: parse, dispatch, map the result to an exit code (see `cli::exit`).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use tsunagi::cli::{self, Cli, Command};

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("tsunagi: {message}");
            cli::exit::ERROR
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(2))
}

fn run(cli: Cli) -> Result<i32, String> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let config = cli.config.as_path();
    let result = match cli.command {
        Command::Check(args) => runtime()?
            .block_on(cli::check::check(&args, config, &mut out))
            .map_err(|e| e.message),
        Command::Pending(args) => runtime()?
            .block_on(cli::ledger::pending(&args, config, &mut out))
            .map_err(|e| e.message),
        Command::Show(args) => runtime()?
            .block_on(cli::ledger::show(&args, config, &mut out))
            .map_err(|e| e.message),
        Command::Reconcile(args) => runtime()?
            .block_on(cli::ledger::reconcile(&args, config, &mut out))
            .map_err(|e| e.message),
        Command::Declare(args) => runtime()?
            .block_on(cli::ledger::declare(&args, config, &mut out))
            .map_err(|e| e.message),
        Command::Amend(args) => runtime()?
            .block_on(cli::ledger::amend(&args, config, &mut out))
            .map_err(|e| e.message),
        Command::Claimed(args) => runtime()?
            .block_on(cli::ledger::claimed(&args, config, &mut out))
            .map_err(|e| e.message),
        Command::RecordDocument(args) => runtime()?
            .block_on(cli::ledger::record_document(&args, config, &mut out))
            .map_err(|e| e.message),
        Command::Status(args) => runtime()?
            .block_on(cli::ledger::status(&args, config, &mut out))
            .map_err(|e| e.message),
        Command::Open(args) => runtime()?
            .block_on(cli::open::open(&args, config, &mut out))
            .map_err(|e| e.message),
        Command::Readers(args) => cli::check::readers(&args, &mut out).map_err(|e| e.message),
        #[cfg(feature = "demo")]
        Command::Demo(args) => runtime()?
            .block_on(cli::demo::run(&args, &mut out))
            .map_err(|e| e.message),
        Command::Rules(cmd) => {
            let today = tsunagi::check::now_jst().date_naive();
            let stdin = std::io::stdin();
            let interactive = stdin.is_terminal();
            let mut input = stdin.lock();
            match cli::settings::rule_settings(config) {
                Ok(settings) => tsunagi::cli::rules::run_rules(
                    &cmd,
                    today,
                    &settings,
                    &mut out,
                    &mut input,
                    interactive,
                )
                .map_err(|e| e.message_ja()),
                Err(e) => Err(e.message),
            }
        }
        Command::Settings => cli::settings::print(config, &mut out).map_err(|e| e.message),
        Command::Report(cmd) => {
            let today = tsunagi::check::now_jst().date_naive();
            tsunagi::cli::rules::run_report(&cmd, today, &mut out).map_err(|e| e.message_ja())
        }
        Command::Id(args) => runtime()?
            .block_on(cli::peer::id(&args, config, &mut out))
            .map_err(|e| e.message),
        Command::Peer(cmd) => runtime()?
            .block_on(cli::peer::run(&cmd, config, &mut out))
            .map_err(|e| e.message),
        Command::Plugin(cmd) => {
            cli::plugin::run(&cmd, config, &mut out).map_err(|e| e.message_ja())
        }
    };
    let _ = out.flush();
    result
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("実行環境を起動できません: {e}"))
}

/// Logs go to stderr, English, filtered by `TSUNAGI_LOG` (default: warnings only, so the
/// operator's Japanese output stays readable).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TSUNAGI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, never into journald or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
