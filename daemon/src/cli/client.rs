//! The CLI as a client of tsunagid (tsunagid 経由): when the daemon runs, commands go through
//! its local API — found, with its token, from the same configuration file the daemon reads —
//! and when it does not, they open the store themselves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::check::CommandError;
use crate::api::problem::Problem;

/// The default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/tsunagi/tsunagi.toml";

/// Where a command does its work.
#[derive(Debug)]
pub enum Target {
    /// Through the running daemon.
    Daemon(ApiClient),
    /// On the store in this directory (when there is one), opened by the command itself.
    Direct(Option<PathBuf>),
}

/// How long to try reaching the daemon before deciding it does not run.
const CONNECT: Duration = Duration::from_millis(500);

/// Finds the daemon from `config` (when the file exists) or falls back to `data_dir`.
///
/// - a configuration file that exists but cannot be used is an error, never ignored;
/// - a daemon whose token cannot be read (wrong user) is an error: going around it would
///   fail on the store's lock anyway;
/// - `data_dir` naming another directory than the daemon's means that directory, directly.
pub async fn target(config: &Path, data_dir: Option<&Path>) -> Result<Target, CommandError> {
    let service = super::settings::load_config(config)?;
    let direct = |dir: Option<&Path>| Ok(Target::Direct(dir.map(Path::to_path_buf)));
    let Some(service) = service else {
        return direct(data_dir);
    };
    if let Some(d) = data_dir {
        if !same_dir(d, &service.data_dir) {
            return direct(Some(d));
        }
    }
    let token_path = service.token_file();
    let token = match crate::api::token::read(&token_path) {
        Ok(t) => t,
        // Never started: no daemon.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return direct(Some(&service.data_dir))
        }
        Err(e) => {
            return Err(CommandError::new(format!(
                "tsunagid の APIトークン（{}）を読めません: {e}。tsunagid と同じユーザー（またはグループ）で実行してください。",
                token_path.display()
            )))
        }
    };
    let addr = service.api.listen;
    let reachable = tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(addr))
        .await
        .is_ok_and(|c| c.is_ok());
    if !reachable {
        return direct(Some(&service.data_dir));
    }
    let api = ApiClient::new(format!("http://{addr}"), token)?;
    // Whatever answers on the port must prove it holds the token before it is sent the
    // token or a PIN: while tsunagid is down, another program could be listening there.
    match api.proves_identity().await {
        Some(true) => Ok(Target::Daemon(api)),
        // Gone between the two connections: the daemon stopped.
        None => direct(Some(&service.data_dir)),
        Some(false) => {
            tracing::error!(%addr, "the program on the API port could not prove it is tsunagid; nothing was sent to it");
            Err(CommandError::new(format!(
                "{addr} で応答しているプログラムは tsunagid ではありません（トークンを持っていることを証明できませんでした）。安全のため、暗証番号もトークンも送らずに中止しました。tsunagid の状態と、そのポートを使っているプログラムを確認してください。"
            )))
        }
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

impl Target {
    /// The directory of a direct target, or the message that there is none.
    pub fn require_dir(dir: Option<PathBuf>) -> Result<PathBuf, CommandError> {
        dir.ok_or_else(|| {
            CommandError::new(
                "記録データの場所が分かりません。--data-dir（または環境変数 TSUNAGI_DATA_DIR）か、設定ファイル（--config）を指定してください。",
            )
        })
    }
}

/// A client of the local API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// The time a request may take: a reception check waits for the card and the qualification
/// system, a reconcile pass for many answers.
const REQUEST: Duration = Duration::from_secs(300);

impl ApiClient {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:8947`).
    pub fn new(base: String, token: String) -> Result<Self, CommandError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST)
            .connect_timeout(CONNECT)
            .build()
            .map_err(|e| CommandError::new(format!("HTTP クライアントを作れません: {e}")))?;
        Ok(Self { base, token, http })
    }

    /// Whether the program at the base address proves it holds this client's token
    /// (`GET /v1/identity`, sent without the token); `None` when it cannot be reached.
    pub async fn proves_identity(&self) -> Option<bool> {
        let mut nonce = [0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), &mut nonce[..]);
        let url = format!("{}/v1/identity?nonce={}", self.base, hex::encode(nonce));
        let response = match self.http.get(url).timeout(CONNECT * 4).send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return None,
            Err(_) => return Some(false),
        };
        if !response.status().is_success() {
            return Some(false);
        }
        let Ok(answer) = response.json::<crate::api::Identity>().await else {
            return Some(false);
        };
        let expected = crate::api::token::proof(&self.token, &nonce);
        Some(crate::api::token::matches(&answer.proof, &expected))
    }

    /// GET `path`.
    pub async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, CommandError> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// DELETE `path`.
    pub async fn delete<R: DeserializeOwned>(&self, path: &str) -> Result<R, CommandError> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    /// POST `body` as JSON to `path`.
    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, CommandError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn send<R: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<R, CommandError> {
        let lost = |e: reqwest::Error| {
            CommandError::new(format!(
                "tsunagid との通信に失敗しました: {e}。tsunagid が動いているか確認してください。"
            ))
        };
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(lost)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(lost)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| CommandError::new(format!("tsunagid の応答を読めません: {e}")));
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(p) => Err(CommandError::new(p.detail)),
            Err(_) => Err(CommandError::new(format!(
                "tsunagid がエラーを返しました（HTTP {}）。",
                status.as_u16()
            ))),
        }
    }
}

/// Percent-encodes a path segment (check ids are plain, but whatever staff typed is sent
/// safely).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
