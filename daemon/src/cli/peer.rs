//! `tsunagi id` and `tsunagi peer add|list|remove`: this device's id and the devices it is
//! paired with (ペアリング). Through tsunagid when it runs (it allows or refuses a peer at
//! once); otherwise on the data directory directly (tsunagid reads the list when it starts).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use tsunagi_sync::DeviceId;

use super::check::{io_error, open_ledger, CommandError};
use super::client::{segment, target, Target};
use super::ledger::DataDir;
use crate::peer::book::{self, Peer};
use crate::peer::{PeerStatus, SyncStatus};

/// `tsunagi id`.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// The ledger.
    #[command(flatten)]
    pub dir: DataDir,
}

/// `tsunagi peer …`.
#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// Pair with a device (do the same on that device with this one's id).
    Add(AddArgs),
    /// The paired devices and how sync with each stands.
    List(ListArgs),
    /// Unpair a device: it is refused from its next connection.
    Remove(RemoveArgs),
}

/// `tsunagi peer add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The other device's id (`tsunagi id` there).
    pub id: String,
    /// A name for staff (受付PC, 訪問用タブレット1).
    #[arg(long)]
    pub name: Option<String>,
    /// Where to reach it (`HOST:PORT`); leave out for a device that connects here.
    #[arg(long)]
    pub addr: Option<String>,
    /// The ledger.
    #[command(flatten)]
    pub dir: DataDir,
}

/// `tsunagi peer list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// JSON for programs.
    #[arg(long)]
    pub json: bool,
    /// The ledger.
    #[command(flatten)]
    pub dir: DataDir,
}

/// `tsunagi peer remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The device's id.
    pub id: String,
    /// The ledger.
    #[command(flatten)]
    pub dir: DataDir,
}

/// The body of `POST /v1/peers`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AddPeerRequest {
    /// The device id.
    pub id: String,
    /// A name for staff.
    pub name: Option<String>,
    /// `HOST:PORT`.
    pub addr: Option<String>,
}

/// The answer of `DELETE /v1/peers/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RemovePeerAnswer {
    /// Whether the device was paired.
    pub removed: bool,
}

/// Parses a device id as staff type it (dashes and spaces optional, any case).
pub fn parse_id(text: &str) -> Result<DeviceId, CommandError> {
    text.parse().map_err(|_| {
        CommandError::new(format!(
            "端末ID「{text}」が正しくありません。相手の端末で `tsunagi id` を実行して表示された56文字（7文字ずつ8組）をそのまま指定してください。"
        ))
    })
}

fn dir_of(dir: Option<PathBuf>) -> Result<PathBuf, CommandError> {
    Target::require_dir(dir)
}

/// `tsunagi id`: prints this device's id.
pub async fn id(args: &IdArgs, config: &Path, out: &mut dyn Write) -> Result<i32, CommandError> {
    let id = match target(config, args.dir.data_dir.as_deref()).await? {
        Target::Daemon(api) => api.get::<SyncStatus>("/v1/peers").await?.device_id,
        Target::Direct(dir) => {
            let ledger = open_ledger(&dir_of(dir)?)?;
            ledger.store().device().id().to_string()
        }
    };
    writeln!(out, "{id}").map_err(io_error)?;
    Ok(super::exit::OK)
}

/// `tsunagi peer …`.
pub async fn run(
    command: &PeerCommand,
    config: &Path,
    out: &mut dyn Write,
) -> Result<i32, CommandError> {
    match command {
        PeerCommand::Add(args) => {
            let id = parse_id(&args.id)?;
            if let Some(a) = &args.addr {
                book::check_addr(a).map_err(|e| CommandError::new(e.message_ja()))?;
            }
            let request = AddPeerRequest {
                id: id.to_string(),
                name: args.name.clone(),
                addr: args.addr.clone(),
            };
            let daemon = match target(config, args.dir.data_dir.as_deref()).await? {
                Target::Daemon(api) => {
                    let _: SyncStatus = api.post("/v1/peers", &request).await?;
                    true
                }
                Target::Direct(dir) => {
                    let dir = dir_of(dir)?;
                    let me = open_ledger(&dir)?.store().device().id().clone();
                    book::add(
                        &dir,
                        &me,
                        Peer {
                            id: id.clone(),
                            name: args.name.clone(),
                            addr: args.addr.clone(),
                        },
                    )
                    .map_err(|e| CommandError::new(e.message_ja()))?;
                    false
                }
            };
            writeln!(out, "端末 {id} とペアリングしました。").map_err(io_error)?;
            writeln!(
                out,
                "相手の端末でも、この端末のID（tsunagi id）を tsunagi peer add で登録してください。両方で登録すると同期が始まります。"
            )
            .map_err(io_error)?;
            if !daemon {
                writeln!(out, "（tsunagid を起動すると接続します）").map_err(io_error)?;
            }
        }
        PeerCommand::List(args) => {
            let status = match target(config, args.dir.data_dir.as_deref()).await? {
                Target::Daemon(api) => api.get::<SyncStatus>("/v1/peers").await?,
                Target::Direct(dir) => {
                    let dir = dir_of(dir)?;
                    let me = open_ledger(&dir)?.store().device().id().to_string();
                    let peers = book::load(&dir).map_err(|e| CommandError::new(e.message_ja()))?;
                    SyncStatus {
                        device_id: me,
                        listening: None,
                        peers: peers.iter().map(PeerStatus::not_connected).collect(),
                        problem: Some("tsunagid が動いていないため、同期していません。".into()),
                    }
                }
            };
            if args.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&status)
                        .map_err(|e| CommandError::new(e.to_string()))?
                )
                .map_err(io_error)?;
            } else {
                for line in status_lines_ja(&status) {
                    writeln!(out, "{line}").map_err(io_error)?;
                }
            }
        }
        PeerCommand::Remove(args) => {
            let id = parse_id(&args.id)?;
            let removed = match target(config, args.dir.data_dir.as_deref()).await? {
                Target::Daemon(api) => {
                    api.delete::<RemovePeerAnswer>(&format!(
                        "/v1/peers/{}",
                        segment(&id.to_string())
                    ))
                    .await?
                    .removed
                }
                Target::Direct(dir) => book::remove(&dir_of(dir)?, &id)
                    .map_err(|e| CommandError::new(e.message_ja()))?,
            };
            if removed {
                writeln!(
                    out,
                    "端末 {id} のペアリングを解除しました。これ以降の接続は拒否され、新しい月の鍵も送られません。"
                )
                .map_err(io_error)?;
            } else {
                writeln!(out, "端末 {id} はペアリングされていません。").map_err(io_error)?;
            }
        }
    }
    Ok(super::exit::OK)
}

/// Sync's state for staff, one line each: this device, then each paired device.
pub fn status_lines_ja(sync: &SyncStatus) -> Vec<String> {
    let mut lines = vec![format!("この端末のID: {}", sync.device_id)];
    if let Some(addr) = &sync.listening {
        lines.push(format!("同期の待ち受け: {addr}"));
    }
    if let Some(p) = &sync.problem {
        lines.push(format!("端末間同期: {p}"));
    }
    if sync.peers.is_empty() {
        lines.push("ペアリング済みの端末: なし".into());
    }
    for p in &sync.peers {
        let name = p.name.as_deref().unwrap_or("（名前なし）");
        let state = if p.connected {
            if p.behind == 0 {
                "接続中・同期済み".to_string()
            } else {
                format!("接続中・同期中（残り{}文書）", p.behind)
            }
        } else {
            "未接続".to_string()
        };
        let last = p
            .last_sync
            .as_deref()
            .map(|t| format!("、最終同期 {}", t.get(..16).unwrap_or(t).replace('T', " ")))
            .unwrap_or_default();
        let refused = if p.refused > 0 {
            format!("、拒否したデータ {}件", p.refused)
        } else {
            String::new()
        };
        lines.push(format!("端末 {name}（{}）: {state}{last}{refused}", p.id));
    }
    lines
}
