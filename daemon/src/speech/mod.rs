//! Read-aloud (読み上げ, R21): a result spoken for practitioners who cannot read the screen.
//! The page asks; the daemon synthesises with Open JTalk and answers a WAV.
//!
//! - What is said is [`script::sentences`]: pure, from the report the page shows.
//! - Each sentence is synthesised on its own by the `open_jtalk` program (one at a time: a
//!   two-core counter PC also serves the card and the page), with a time limit, and the
//!   sentences are joined ([`wav::join`]).
//! - Sentences are cached by their SHA-256, in memory only, bounded in bytes and in age: a
//!   name is personal data and never reaches the disk or a log.
//! - Open JTalk missing, its dictionary or its voice missing: the status says which, in
//!   Japanese, and everything else works.

pub mod script;
pub mod wav;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;

use crate::service::config::ReadAloudSection;

/// Longest one sentence's synthesis may take (a sentence is at most
/// [`script::MAX_SENTENCE_CHARS`] characters; Open JTalk speaks one in well under a second).
pub const SYNTHESIS_LIMIT: Duration = Duration::from_secs(10);
/// Bytes of sound kept in the sentence cache (about three minutes of speech).
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;
/// A cached sentence is dropped this long after it was made, whether used or not: a
/// patient's name is not kept in memory for the day.
pub const CACHE_AGE: Duration = Duration::from_secs(60 * 60);
/// Silence between sentences.
const GAP_MS: u32 = 250;
/// What the engine may write at most for one sentence (a 160-character sentence is about
/// 3 MB at 48 kHz).
const MAX_SOUND_BYTES: usize = 32 * 1024 * 1024;

/// Why read-aloud cannot be offered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// Turned off in the configuration.
    #[error("read-aloud is turned off")]
    Disabled,
    /// No `open_jtalk` program.
    #[error("no Open JTalk program at {0}")]
    NoEngine(PathBuf),
    /// No dictionary.
    #[error("no Open JTalk dictionary at {0}")]
    NoDictionary(PathBuf),
    /// No voice.
    #[error("no HTS voice at {0}")]
    NoVoice(PathBuf),
}

impl Unavailable {
    /// For the reception page.
    pub fn message_ja(&self) -> String {
        match self {
            Unavailable::Disabled => {
                "読み上げは設定で無効になっています（[read_aloud] enabled）。".to_string()
            }
            Unavailable::NoEngine(p) => format!(
                "読み上げは使えません: 音声合成の Open JTalk（{}）が見つかりません。scripts/setup-system.sh で導入できます。",
                p.display()
            ),
            Unavailable::NoDictionary(p) => format!(
                "読み上げは使えません: Open JTalk の辞書（{}）が見つかりません。scripts/setup-system.sh で導入できます。",
                p.display()
            ),
            Unavailable::NoVoice(p) => format!(
                "読み上げは使えません: 音声ファイル（{}）が見つかりません。scripts/setup-system.sh で導入できます。",
                p.display()
            ),
        }
    }
}

/// Why a result could not be spoken.
#[derive(Debug, thiserror::Error)]
pub enum SpeakError {
    /// Read-aloud is not available here.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The engine could not be started.
    #[error("cannot start Open JTalk: {0}")]
    Start(#[source] std::io::Error),
    /// The engine failed (its exit status; what it printed is in the log).
    #[error("Open JTalk failed ({0})")]
    Failed(String),
    /// The engine took longer than [`SYNTHESIS_LIMIT`].
    #[error("Open JTalk took longer than {SYNTHESIS_LIMIT:?}")]
    TimedOut,
    /// The engine wrote something that is not a sound this module reads.
    #[error("Open JTalk wrote no usable sound: {0}")]
    BadSound(#[from] wav::WavError),
}

impl SpeakError {
    /// For the reception page.
    pub fn message_ja(&self) -> String {
        match self {
            SpeakError::Unavailable(u) => u.message_ja(),
            SpeakError::Start(_) | SpeakError::Failed(_) | SpeakError::BadSound(_) => {
                "読み上げの音声を作れませんでした（Open JTalk のエラー）。結果は画面で確認してください。".to_string()
            }
            SpeakError::TimedOut => {
                "読み上げの音声を作るのに時間がかかりすぎました。結果は画面で確認してください。".to_string()
            }
        }
    }
}

/// Read-aloud as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReadAloudStatus {
    /// Whether a result can be spoken now.
    pub available: bool,
    /// Whether each result is spoken as it is shown.
    pub auto: bool,
    /// Why not, for staff, when not.
    pub problem_ja: Option<String>,
    /// Sentences synthesised since the daemon started (a cached one is not made again).
    pub synthesised: u64,
}

struct Cached {
    sound: Arc<wav::Pcm>,
    made: Instant,
    used: Instant,
}

/// Sentences already spoken, by the SHA-256 of their text.
#[derive(Default)]
struct Cache {
    entries: HashMap<[u8; 32], Cached>,
    bytes: usize,
}

impl Cache {
    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<Arc<wav::Pcm>> {
        let fresh = self
            .entries
            .get(key)
            .is_some_and(|c| now.saturating_duration_since(c.made) < CACHE_AGE);
        if !fresh {
            if let Some(old) = self.entries.remove(key) {
                self.bytes -= old.sound.data.len();
            }
            return None;
        }
        let entry = self.entries.get_mut(key)?;
        entry.used = now;
        Some(entry.sound.clone())
    }

    fn put(&mut self, key: [u8; 32], sound: Arc<wav::Pcm>, now: Instant) {
        if sound.data.len() > CACHE_BYTES {
            return;
        }
        let bytes = &mut self.bytes;
        self.entries.retain(|_, c| {
            let fresh = now.saturating_duration_since(c.made) < CACHE_AGE;
            if !fresh {
                *bytes -= c.sound.data.len();
            }
            fresh
        });
        while self.bytes + sound.data.len() > CACHE_BYTES {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(c) = self.entries.remove(&oldest) {
                self.bytes -= c.sound.data.len();
            }
        }
        self.bytes += sound.data.len();
        if let Some(old) = self.entries.insert(
            key,
            Cached {
                sound,
                made: now,
                used: now,
            },
        ) {
            self.bytes -= old.sound.data.len();
        }
    }
}

/// The daemon's read-aloud: the configured engine, one synthesis at a time, and the cache.
pub struct ReadAloud {
    config: ReadAloudSection,
    cache: Mutex<Cache>,
    /// One synthesis at a time.
    gate: tokio::sync::Semaphore,
    synthesised: AtomicU64,
}

impl std::fmt::Debug for ReadAloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The cache holds names: only its size.
        f.debug_struct("ReadAloud")
            .field("engine", &self.config.engine)
            .field("cached", &lock(&self.cache).entries.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl ReadAloud {
    /// Read-aloud as configured; nothing is checked or started until asked.
    pub fn new(config: ReadAloudSection) -> Self {
        Self {
            config,
            cache: Mutex::default(),
            gate: tokio::sync::Semaphore::new(1),
            synthesised: AtomicU64::new(0),
        }
    }

    /// Why a result cannot be spoken now, if it cannot. Looked at on every ask (three
    /// `stat`s): installing Open JTalk needs no restart.
    pub fn unavailable(&self) -> Option<Unavailable> {
        let c = &self.config;
        if !c.enabled {
            Some(Unavailable::Disabled)
        } else if !is_executable(&c.engine) {
            Some(Unavailable::NoEngine(c.engine.clone()))
        } else if !c.dictionary.join("sys.dic").is_file() {
            Some(Unavailable::NoDictionary(c.dictionary.clone()))
        } else if !c.voice.is_file() {
            Some(Unavailable::NoVoice(c.voice.clone()))
        } else {
            None
        }
    }

    /// What the page shows.
    pub fn status(&self) -> ReadAloudStatus {
        let problem = self.unavailable();
        ReadAloudStatus {
            available: problem.is_none(),
            auto: self.config.auto,
            problem_ja: problem.map(|p| p.message_ja()),
            synthesised: self.synthesised.load(Ordering::Relaxed),
        }
    }

    /// `sentences` spoken in order, as one WAV file.
    pub async fn speak(&self, sentences: &[String]) -> Result<Vec<u8>, SpeakError> {
        if let Some(u) = self.unavailable() {
            return Err(u.into());
        }
        let mut parts = Vec::with_capacity(sentences.len());
        for sentence in sentences {
            parts.push(self.sentence(sentence).await?);
        }
        Ok(wav::join(&parts, GAP_MS)?)
    }

    async fn sentence(&self, sentence: &str) -> Result<Arc<wav::Pcm>, SpeakError> {
        let key: [u8; 32] = Sha256::digest(sentence.as_bytes()).into();
        if let Some(sound) = lock(&self.cache).get(&key, Instant::now()) {
            return Ok(sound);
        }
        // A closed gate never happens (it is never closed); synthesising without it is
        // still correct, only slower.
        let _turn = self.gate.acquire().await.ok();
        // Another request may have made it while this one waited.
        if let Some(sound) = lock(&self.cache).get(&key, Instant::now()) {
            return Ok(sound);
        }
        let sound = Arc::new(wav::read(&self.synthesise(sentence).await?)?);
        self.synthesised.fetch_add(1, Ordering::Relaxed);
        lock(&self.cache).put(key, sound.clone(), Instant::now());
        Ok(sound)
    }

    /// One run of the engine: the sentence on its standard input, the WAV on its standard
    /// output (no file holds either).
    async fn synthesise(&self, sentence: &str) -> Result<Vec<u8>, SpeakError> {
        let c = &self.config;
        let mut child = tokio::process::Command::new(&c.engine)
            .arg("-x")
            .arg(&c.dictionary)
            .arg("-m")
            .arg(&c.voice)
            .arg("-ow")
            .arg("/dev/stdout")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(SpeakError::Start)?;
        let started = Instant::now();
        let run = async {
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(format!("{sentence}\n").as_bytes())
                    .await
                    .map_err(SpeakError::Start)?;
                // Dropped: the engine sees the end of its input.
            }
            child.wait_with_output().await.map_err(SpeakError::Start)
        };
        let output = tokio::time::timeout(SYNTHESIS_LIMIT, run)
            .await
            .map_err(|_| SpeakError::TimedOut)??;
        if !output.status.success() {
            // Not what it printed: its warnings may quote the words read, and the first
            // sentence is a patient's name.
            tracing::warn!(
                status = %output.status,
                stderr_bytes = output.stderr.len(),
                "open_jtalk failed"
            );
            return Err(SpeakError::Failed(output.status.to_string()));
        }
        if output.stdout.len() > MAX_SOUND_BYTES {
            return Err(wav::WavError::NotWav.into());
        }
        tracing::debug!(
            chars = sentence.chars().count(),
            bytes = output.stdout.len(),
            ms = started.elapsed().as_millis() as u64,
            "sentence synthesised"
        );
        Ok(output.stdout)
    }
}

/// How long a shown result can be asked to be read aloud.
pub const SCRIPT_AGE: Duration = Duration::from_secs(30 * 60);
/// Results kept for read-aloud at most (the last few at the counter).
const MAX_SCRIPTS: usize = 32;

/// The sentences of the results the page showed, by a random id the page holds: the page asks
/// for a result's sound by that id and can never choose the words. In memory only.
#[derive(Default)]
pub struct Scripts {
    by_id: Mutex<HashMap<String, (Vec<String>, Instant)>>,
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripts")
            .field("kept", &lock(&self.by_id).len())
            .finish()
    }
}

impl Scripts {
    /// Keeps `sentences` and returns the id to ask for them by (128 random bits, hex).
    pub fn keep(&self, sentences: Vec<String>, now: Instant) -> String {
        use rand::RngCore;
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let id = hex::encode(bytes);
        let mut by_id = lock(&self.by_id);
        by_id.retain(|_, (_, at)| now.saturating_duration_since(*at) < SCRIPT_AGE);
        while by_id.len() >= MAX_SCRIPTS {
            let Some(oldest) = by_id
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            by_id.remove(&oldest);
        }
        by_id.insert(id.clone(), (sentences, now));
        id
    }

    /// The sentences kept under `id`, while they are.
    pub fn get(&self, id: &str, now: Instant) -> Option<Vec<String>> {
        let by_id = lock(&self.by_id);
        let (sentences, at) = by_id.get(id)?;
        (now.saturating_duration_since(*at) < SCRIPT_AGE).then(|| sentences.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pcm(bytes: usize) -> Arc<wav::Pcm> {
        Arc::new(wav::Pcm {
            format: [0; 16],
            data: vec![0; bytes],
        })
    }

    #[test]
    fn scripts_are_found_by_their_id_for_half_an_hour_and_bounded() {
        let s = Scripts::default();
        let t0 = Instant::now();
        let id = s.keep(vec!["資格は有効です。".into()], t0);
        assert_eq!(id.len(), 32);
        assert_eq!(s.get(&id, t0).unwrap(), ["資格は有効です。"]);
        assert!(s.get(&id, t0 + SCRIPT_AGE).is_none());
        assert!(s.get("00", t0).is_none());
        for i in 0..MAX_SCRIPTS {
            s.keep(vec![], t0 + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(lock(&s.by_id).len(), MAX_SCRIPTS);
        assert!(s.get(&id, t0).is_none(), "the oldest went first");
    }

    #[test]
    fn the_cache_is_bounded_in_bytes_and_in_age() {
        let mut c = Cache::default();
        let t0 = Instant::now();
        let third = CACHE_BYTES / 3;
        c.put([1; 32], pcm(third), t0);
        c.put([2; 32], pcm(third), t0 + Duration::from_secs(1));
        c.put([3; 32], pcm(third), t0 + Duration::from_secs(2));
        // 1 was used last: 2 is the one pushed out by a fourth.
        assert!(c.get(&[1; 32], t0 + Duration::from_secs(3)).is_some());
        c.put([4; 32], pcm(third), t0 + Duration::from_secs(4));
        assert!(c.get(&[2; 32], t0 + Duration::from_secs(5)).is_none());
        assert!(c.get(&[1; 32], t0 + Duration::from_secs(5)).is_some());
        assert!(c.bytes <= CACHE_BYTES);
        assert_eq!(
            c.bytes,
            c.entries
                .values()
                .map(|e| e.sound.data.len())
                .sum::<usize>()
        );
        // However often it is used, a sentence goes after its hour.
        assert!(c.get(&[1; 32], t0 + CACHE_AGE).is_none());
        // Bigger than the whole cache: not kept.
        c.put([5; 32], pcm(CACHE_BYTES + 1), t0);
        assert!(c.get(&[5; 32], t0).is_none());
    }

    #[test]
    fn a_missing_engine_dictionary_or_voice_is_named_in_japanese() {
        let dir = tempfile::tempdir().unwrap();
        let engine = dir.path().join("open_jtalk");
        let mut config = ReadAloudSection {
            enabled: true,
            auto: false,
            engine: engine.clone(),
            dictionary: dir.path().join("dic"),
            voice: dir.path().join("v.htsvoice"),
        };
        let said = |c: &ReadAloudSection| ReadAloud::new(c.clone()).unavailable();
        assert_eq!(said(&config), Some(Unavailable::NoEngine(engine.clone())));
        std::fs::write(&engine, "#!/bin/sh\n").unwrap();
        // Present but not executable is still missing.
        assert!(matches!(said(&config), Some(Unavailable::NoEngine(_))));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&engine, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(said(&config), Some(Unavailable::NoDictionary(_))));
        std::fs::create_dir(dir.path().join("dic")).unwrap();
        std::fs::write(dir.path().join("dic/sys.dic"), "").unwrap();
        assert!(matches!(said(&config), Some(Unavailable::NoVoice(_))));
        std::fs::write(dir.path().join("v.htsvoice"), "").unwrap();
        assert_eq!(said(&config), None);
        config.enabled = false;
        let off = ReadAloud::new(config).status();
        assert!(!off.available);
        assert!(off.problem_ja.unwrap().contains("無効"));
        let missing = Unavailable::NoEngine(engine).message_ja();
        assert!(missing.contains("Open JTalk") && missing.contains("setup-system.sh"));
    }

    #[tokio::test]
    async fn an_engine_that_fails_hangs_or_writes_noise_is_an_error_not_a_sound() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dic")).unwrap();
        std::fs::write(dir.path().join("dic/sys.dic"), "").unwrap();
        std::fs::write(dir.path().join("v.htsvoice"), "").unwrap();
        let engine = |name: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            ReadAloud::new(ReadAloudSection {
                enabled: true,
                auto: false,
                engine: p,
                dictionary: dir.path().join("dic"),
                voice: dir.path().join("v.htsvoice"),
            })
        };
        let s = ["資格は有効です。".to_string()];
        let failing = engine("fails", "cat >/dev/null; echo no voice >&2; exit 1");
        assert!(matches!(
            failing.speak(&s).await,
            Err(SpeakError::Failed(_))
        ));
        let noisy = engine("noisy", "cat >/dev/null; echo not a wav");
        assert!(matches!(
            noisy.speak(&s).await,
            Err(SpeakError::BadSound(_))
        ));
        assert_eq!(noisy.status().synthesised, 0);
        assert!(SpeakError::TimedOut.message_ja().contains("画面"));
    }
}
