//! Finding tsunagid (tsunagid の場所) the way the CLI does: the address and the API token's
//! file come from the daemon's own configuration file.
//!
//! Only three settings are read — `data_dir`, `[api] listen` and `[api] token_file` — with the
//! daemon's defaults (`/var/lib/tsunagi`, `127.0.0.1:8947`, `<data_dir>/api.token`); every
//! other key is the daemon's business and ignored here. The token is read from its file at
//! each connection, never taken from the command line or the environment, where other users
//! of the machine could read it (`/proc/<pid>/cmdline`, `/proc/<pid>/environ`).
//!
//! Out of scope: validating the daemon's whole schema (tsunagid refuses a bad file itself).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default configuration file, the same as the daemon's and the CLI's.
pub const DEFAULT_CONFIG: &str = "/etc/tsunagi/tsunagi.toml";

/// What the tray needs of the daemon's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Where to connect (a wildcard `listen` becomes loopback).
    pub addr: SocketAddr,
    /// The API token's file.
    pub token_file: PathBuf,
}

#[derive(Debug, Deserialize)]
struct FileView {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default)]
    api: ApiView,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct ApiView {
    listen: SocketAddr,
    token_file: Option<PathBuf>,
}

impl Default for ApiView {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8947)),
            token_file: None,
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/tsunagi")
}

/// Why tsunagid cannot be found or its token not read.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// The configuration file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid for the settings read here.
    #[error("{path}: {detail}")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        detail: String,
    },
    /// No token file: tsunagid has never started with this configuration.
    #[error("no token file at {0}")]
    NoToken(PathBuf),
    /// The token file cannot be read (usually: permissions).
    #[error("cannot read the token file {path}: {source}")]
    ReadToken {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token file does not hold a token.
    #[error("the token file {0} does not hold a token")]
    BadToken(PathBuf),
}

impl LocateError {
    /// The message for staff: what happened and what to do.
    pub fn message_ja(&self) -> String {
        match self {
            LocateError::ReadConfig { path, source } => format!(
                "設定ファイル {} を読めません（{}）。",
                path.display(),
                io_ja(source)
            ),
            LocateError::InvalidConfig { path, .. } => format!(
                "設定ファイル {} に誤りがあります。管理者に確認してください。",
                path.display()
            ),
            LocateError::NoToken(path) => format!(
                "tsunagid がまだ起動していません（APIトークン {} がありません）。",
                path.display()
            ),
            LocateError::ReadToken { path, source } => format!(
                "tsunagid のAPIトークン {} を読めません（{}）。このユーザーが読めるよう、管理者に設定を確認してもらってください。",
                path.display(),
                io_ja(source)
            ),
            LocateError::BadToken(path) => format!(
                "tsunagid のAPIトークン {} の中身が正しくありません。tsunagid を再起動してください。",
                path.display()
            ),
        }
    }
}

fn io_ja(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "権限がありません",
        std::io::ErrorKind::NotFound => "ありません",
        _ => "読み込みに失敗しました",
    }
}

/// Reads the configuration file; a missing file means the daemon's defaults (the daemon
/// itself cannot run without one, so the tray will say it is not reachable). Blocking.
pub fn locate(config: &Path) -> Result<Located, LocateError> {
    let text = match std::fs::read_to_string(config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(LocateError::ReadConfig {
                path: config.to_path_buf(),
                source,
            })
        }
    };
    parse(&text, config)
}

/// [`locate`] on text already read.
pub fn parse(text: &str, path: &Path) -> Result<Located, LocateError> {
    let view: FileView = toml::from_str(text).map_err(|e| LocateError::InvalidConfig {
        path: path.to_path_buf(),
        detail: e.message().to_string(),
    })?;
    let token_file = view
        .api
        .token_file
        .unwrap_or_else(|| view.data_dir.join("api.token"));
    Ok(Located {
        addr: dialable(view.api.listen),
        token_file,
    })
}

/// A wildcard address (`0.0.0.0`, `::`) is reached through loopback on this machine.
fn dialable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The API token (APIトークン). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// The token's text, for the `Authorization` header and the HMAC key.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Takes the token from text; the daemon's rule: at least 32 hex digits.
    pub fn parse(text: &str) -> Option<Token> {
        let t = text.trim();
        (t.len() >= 32 && t.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Token(t.to_string()))
    }
}

/// Reads the token in `path`. Blocking.
pub fn read_token(path: &Path) -> Result<Token, LocateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Token::parse(&text).ok_or_else(|| LocateError::BadToken(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(LocateError::NoToken(path.to_path_buf()))
        }
        Err(source) => Err(LocateError::ReadToken {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_the_daemons() {
        let l = parse("institution_code = \"1319900017\"\n", Path::new("t")).unwrap();
        assert_eq!(l.addr, "127.0.0.1:8947".parse().unwrap());
        assert_eq!(l.token_file, PathBuf::from("/var/lib/tsunagi/api.token"));
    }

    #[test]
    fn the_file_sets_the_address_and_the_token_file() {
        let text = "data_dir = \"/srv/t\"\ninstitution_code = \"1319900017\"\n\
                    [oqs]\nurl = \"http://x\"\n[api]\nlisten = \"127.0.0.1:9000\"\nmax_body_bytes = 10\n";
        let l = parse(text, Path::new("t")).unwrap();
        assert_eq!(l.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(l.token_file, PathBuf::from("/srv/t/api.token"));
        let l = parse(
            "[api]\nlisten = \"0.0.0.0:9001\"\ntoken_file = \"/run/t/token\"\n",
            Path::new("t"),
        )
        .unwrap();
        // It dials loopback for a wildcard listen.
        assert_eq!(l.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(l.token_file, PathBuf::from("/run/t/token"));
        let l = parse("[api]\nlisten = \"[::]:9002\"\n", Path::new("t")).unwrap();
        assert_eq!(l.addr, "[::1]:9002".parse().unwrap());
    }

    #[test]
    fn a_broken_file_is_an_error_a_missing_one_the_defaults() {
        let e = parse("[api]\nlisten = \"nowhere\"\n", Path::new("/etc/x.toml")).unwrap_err();
        assert!(e.message_ja().contains("/etc/x.toml"), "{}", e.message_ja());
        let dir = tempfile::tempdir().unwrap();
        let l = locate(&dir.path().join("none.toml")).unwrap();
        assert_eq!(l.addr.port(), 8947);
    }

    #[test]
    fn tokens_are_read_checked_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.token");
        assert!(matches!(read_token(&path), Err(LocateError::NoToken(_))));
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(read_token(&path), Err(LocateError::BadToken(_))));
        let secret = "ab".repeat(32);
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        let t = read_token(&path).unwrap();
        assert_eq!(t.expose(), secret);
        assert!(!format!("{t:?}").contains("abab"));
    }
}
