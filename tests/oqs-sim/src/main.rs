//! `oqs-sim`: run the qualification-system simulator with the standard scenario, or switch
//! the faults of a running one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{NaiveDate, TimeDelta, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use oqs_sim::faults::FaultRequest;
use oqs_sim::{scenario, FaultMode, MalformedKind, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Simulator of the online qualification system (オンライン資格確認等システム) for tests and the demo.
#[derive(Debug, Parser)]
#[command(name = "oqs-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the standard scenario until Ctrl-C.
    Serve {
        /// Main listener (login and searches).
        #[arg(long, default_value = "127.0.0.1:8931")]
        bind: SocketAddr,
        /// Admin listener (`/_sim/faults`).
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// The simulator's date, YYYY-MM-DD (default: today in JST).
        #[arg(long)]
        today: Option<NaiveDate>,
        /// Write every scenario card as DIR/<name>.json (CardProfile JSON for `vcard`).
        #[arg(long, value_name = "DIR")]
        write_cards: Option<PathBuf>,
        /// Result codes to answer with: a JSON object of `SimCodes` fields, e.g.
        /// `{"expired_beyond_grace":"OQS-E2104"}` (fields left out keep their defaults).
        #[arg(long, value_name = "FILE")]
        codes: Option<PathBuf>,
    },
    /// Change the faults of a running simulator.
    Fault {
        /// Admin base URL, e.g. http://127.0.0.1:8932.
        #[arg(long)]
        admin: String,
        #[command(subcommand)]
        action: FaultAction,
    },
}

#[derive(Debug, Subcommand)]
enum FaultAction {
    /// No fault, no delay.
    Clear,
    /// Refuse TCP connections.
    Refuse,
    /// Delay every answer by MS milliseconds (the mode is kept).
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// Answer searches with this HTTP status.
    ServerError {
        /// HTTP status, e.g. 503.
        code: u16,
    },
    /// Answer searches with a broken body.
    Malformed {
        /// How it is broken.
        kind: Malformed,
    },
    /// Answer searches with 429 and Retry-After.
    RateLimit {
        /// Retry-After seconds.
        secs: u64,
    },
    /// Answer searches with SegmentOfResult 9 / SIM-E0900.
    SystemError,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Malformed {
    /// Cut JSON.
    Truncated,
    /// Not JSON at all.
    NotJson,
    /// Numbers instead of strings.
    WrongTypes,
    /// A well-formed 200 MiB answer, streamed without Content-Length.
    Huge,
    /// The real answer with an unknown code value (Sex1 = 9).
    UnknownCode,
    /// The real answer contradicting itself (validity 1, every record twice).
    Inconsistent,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            bind,
            admin,
            today,
            write_cards,
            codes,
        } => serve(bind, admin, today, write_cards, codes).await,
        Command::Fault { admin, action } => fault(&admin, action).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oqs-sim: {e}");
            ExitCode::from(2)
        }
    }
}

async fn serve(
    bind: SocketAddr,
    admin: Option<SocketAddr>,
    today: Option<NaiveDate>,
    write_cards: Option<PathBuf>,
    codes: Option<PathBuf>,
) -> Result<(), String> {
    let today = today.unwrap_or_else(|| (Utc::now().naive_utc() + TimeDelta::hours(9)).date());
    let sc = scenario::standard(today).map_err(|e| e.to_string())?;
    if let Some(dir) = write_cards {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for name in sc.card_names() {
            let Some(card) = sc.card(name) else { continue };
            let path = dir.join(format!("{name}.json"));
            let json = serde_json::to_vec_pretty(card).map_err(|e| e.to_string())?;
            std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let mut config = sc.sim_config();
    if let Some(path) = codes {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        config.codes =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    config.bind = bind;
    config.admin_bind = admin;
    let handle = Simulator::start(config).await.map_err(|e| e.to_string())?;
    println!("base_url {}", handle.base_url());
    if let Some(a) = handle.admin_url() {
        println!("admin_url {a}");
    }
    println!("institution {} today {}", sc.institution_code, sc.today);
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    handle.shutdown().await;
    Ok(())
}

async fn fault(admin: &str, action: FaultAction) -> Result<(), String> {
    let req = match action {
        FaultAction::Clear => FaultRequest {
            mode: Some(FaultMode::None),
            delay_ms: Some(0),
        },
        FaultAction::Delay { ms } => FaultRequest {
            mode: None,
            delay_ms: Some(ms),
        },
        other => FaultRequest {
            mode: Some(match other {
                FaultAction::Refuse => FaultMode::Refuse,
                FaultAction::ServerError { code } => FaultMode::ServerError(code),
                FaultAction::Malformed { kind } => FaultMode::Malformed(match kind {
                    Malformed::Truncated => MalformedKind::TruncatedJson,
                    Malformed::NotJson => MalformedKind::NotJson,
                    Malformed::WrongTypes => MalformedKind::WrongTypes,
                    Malformed::Huge => MalformedKind::Huge,
                    Malformed::UnknownCode => MalformedKind::UnknownCodeValue,
                    Malformed::Inconsistent => MalformedKind::Inconsistent,
                }),
                FaultAction::RateLimit { secs } => FaultMode::RateLimit {
                    retry_after_secs: secs,
                },
                _ => FaultMode::SystemError,
            }),
            delay_ms: None,
        },
    };
    let body = serde_json::to_string(&req).map_err(|e| e.to_string())?;
    let answer = post_json(admin, "/_sim/faults", &body).await?;
    println!("{answer}");
    Ok(())
}

/// A minimal HTTP/1.1 POST (the admin endpoint is plain HTTP on a loopback address), so the
/// binary needs no HTTP client library.
async fn post_json(base: &str, path: &str, body: &str) -> Result<String, String> {
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("admin URL must start with http://: {base}"))?
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(hostport)
        .await
        .map_err(|e| format!("{hostport}: {e}"))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_ok = head
        .lines()
        .next()
        .is_some_and(|l| l.split(' ').nth(1) == Some("200"));
    if status_ok {
        Ok(rest.to_owned())
    } else {
        Err(format!(
            "admin answered: {}",
            head.lines().next().unwrap_or("")
        ))
    }
}
