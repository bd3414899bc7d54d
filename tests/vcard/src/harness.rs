//! pcscd for tests: one pcscd per machine, shared by every test that takes a [`PcscdSession`].
//!
//! Facts found on Debian 12 (pcscd 1.9.9, vsmartcard-vpcd 3.3):
//! * `/etc/reader.conf.d/vpcd` makes pcscd load vpcd, which listens on 0.0.0.0:35963 and
//!   :35964; the PC/SC reader names are `Virtual PCD 00 00` and `Virtual PCD 00 01`.
//! * `pcscd --config DIR` reads reader configs only from DIR, so an empty DIR gives a pcscd
//!   with no readers at all.
//! * Plain `pcscd` daemonises and writes `/run/pcscd/pcscd.pid`; SIGTERM removes the pid
//!   file and socket. After SIGKILL they stay behind, and pcscd refuses to start while the
//!   pid file names a live process, which includes an unreaped zombie, as containers whose
//!   init does not reap leave them. So stale files are removed before a start.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Errors managing pcscd.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file or command could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A PC/SC call failed.
    #[error("PC/SC: {0}")]
    Pcsc(#[from] pcsc::Error),
    /// A command ran but failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// The command.
        what: String,
        /// Exit status and output.
        detail: String,
    },
    /// pcscd did not reach the wanted state in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// Attaching the card to vpcd failed.
    #[error(transparent)]
    Attach(#[from] crate::vpcd::VpcdError),
}

/// First vpcd port (slot 0); slot n listens on this + n.
const VPCD_BASE_PORT: u16 = 0x8C7B;
const RUN_DIR: &str = "/run/pcscd";
const LOCK_FILE: &str = "/tmp/tsunagi-pcscd.lock";
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

/// Tests in one process take turns; the file lock extends that to other processes.
static IN_PROCESS: Mutex<()> = Mutex::new(());

/// The address of vpcd slot `slot`: 127.0.0.1:35963+slot.
pub fn slot_addr(slot: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], VPCD_BASE_PORT + u16::from(slot)))
}

/// The PC/SC reader name pcscd gives vpcd slot `slot` (checked on Debian 12: "Virtual PCD 00 00").
pub fn reader_name(slot: u8) -> String {
    format!("Virtual PCD 00 {slot:02}")
}

/// Waits until pcscd reports vpcd slot `slot` with (`present`) or without a card.
///
/// Needed when cards are swapped: pcscd notices a vpcd card leaving only at its next poll,
/// so a card attached right after another was removed can look "not present" for a moment.
pub fn wait_for_card(slot: u8, present: bool, timeout: Duration) -> Result<(), HarnessError> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User)?;
    let name = std::ffi::CString::new(reader_name(slot))
        .map_err(|_| HarnessError::Timeout("reader name"))?;
    let mut states = vec![pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
    let deadline = Instant::now() + timeout;
    loop {
        match ctx.get_status_change(Duration::from_millis(250), &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(e) => return Err(e.into()),
        }
        if states[0].event_state().contains(pcsc::State::PRESENT) == present {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout("the card state of a vpcd reader"));
        }
        states[0].sync_current_state();
    }
}

/// Inserts `card` into vpcd slot `slot` the way a test wants it: waits for the slot to be
/// empty (a previous card may still be registered), attaches, then waits until pcscd sees it.
pub fn insert(
    card: crate::card::VirtualCard,
    slot: u8,
    options: crate::vpcd::AttachOptions,
) -> Result<crate::vpcd::AttachedCard, HarnessError> {
    let patience = Duration::from_secs(10);
    wait_for_card(slot, false, patience)?;
    let attached = crate::vpcd::attach(card, slot_addr(slot), options)?;
    wait_for_card(slot, true, patience)?;
    Ok(attached)
}

/// Exclusive use of the machine's pcscd. While a session lives, no other test (in this or
/// another process using this harness) touches pcscd or the vpcd slots. Dropping a session
/// that changed pcscd restores the normal pcscd with vpcd.
#[derive(Debug)]
pub struct PcscdSession {
    changed: bool,
    _file_lock: File,
    _guard: MutexGuard<'static, ()>,
}

/// Takes the pcscd lock and makes sure a pcscd with the vpcd readers is running.
pub fn pcscd() -> Result<PcscdSession, HarnessError> {
    // A test that panicked while holding the lock leaves nothing half-done in the guard.
    let guard = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .map_err(io(format!("opening {LOCK_FILE}")))?;
    file.lock().map_err(io(format!("locking {LOCK_FILE}")))?;
    let session = PcscdSession {
        changed: false,
        _file_lock: file,
        _guard: guard,
    };
    ensure_normal_pcscd()?;
    Ok(session)
}

impl PcscdSession {
    /// Restarts pcscd with an empty reader configuration, so that no vpcd reader exists.
    pub fn start_pcscd_without_readers(&mut self) -> Result<(), HarnessError> {
        self.changed = true;
        stop_all()?;
        let empty = empty_config_dir()?;
        start(&["--config", &empty.to_string_lossy()])?;
        wait_until("pcscd without readers", || {
            !pcscd_pids().is_empty() && socket_ready()
        })
    }

    /// Stops pcscd (clients then see "service not available").
    pub fn stop_pcscd(&mut self) -> Result<(), HarnessError> {
        self.changed = true;
        stop_all()
    }

    /// Starts the normal pcscd with vpcd again (also done on drop if anything changed).
    pub fn restore_pcscd(&mut self) -> Result<(), HarnessError> {
        stop_all()?;
        ensure_normal_pcscd()?;
        self.changed = false;
        Ok(())
    }
}

impl Drop for PcscdSession {
    fn drop(&mut self) {
        if self.changed {
            if let Err(e) = self.restore_pcscd() {
                tracing::error!(error = %e, "could not restore pcscd with vpcd");
            }
        }
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> HarnessError {
    move |source| HarnessError::Io { what, source }
}

fn ensure_normal_pcscd() -> Result<(), HarnessError> {
    let running = !pcscd_pids().is_empty();
    if running && vpcd_listening() {
        return Ok(());
    }
    if running {
        // A pcscd without vpcd (left by a crashed test, or started by hand): replace it.
        stop_all()?;
    }
    if which("pcscd").is_none() || !Path::new("/etc/reader.conf.d/vpcd").exists() {
        install_packages()?;
    }
    start(&[])?;
    wait_until("pcscd with vpcd readers", || {
        vpcd_listening() && socket_ready()
    })?;
    // The reader is registered right after vpcd opens its port; give clients a moment.
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

fn wait_until(what: &'static str, mut ready: impl FnMut() -> bool) -> Result<(), HarnessError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
    Err(HarnessError::Timeout(what))
}

fn socket_ready() -> bool {
    Path::new(RUN_DIR).join("pcscd.comm").exists()
}

/// Starts a daemonised pcscd (it forks and the parent exits), after clearing stale files.
fn start(args: &[&str]) -> Result<(), HarnessError> {
    if pcscd_pids().is_empty() {
        for f in ["pcscd.pid", "pcscd.comm"] {
            let _ = fs::remove_file(Path::new(RUN_DIR).join(f));
        }
    }
    let mut cmd = privileged("pcscd");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = cmd.output().map_err(io("running pcscd".into()))?;
    if !out.status.success() {
        return Err(HarnessError::Command {
            what: format!("pcscd {}", args.join(" ")),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(())
}

/// Stops every live pcscd by pid, SIGTERM first, SIGKILL if it lingers.
fn stop_all() -> Result<(), HarnessError> {
    let pids = pcscd_pids();
    if pids.is_empty() {
        return Ok(());
    }
    signal(&pids, "-TERM")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if pcscd_pids().is_empty() {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
    let left = pcscd_pids();
    signal(&left, "-KILL")?;
    wait_until("pcscd to exit", || pcscd_pids().is_empty())?;
    for f in ["pcscd.pid", "pcscd.comm"] {
        let _ = fs::remove_file(Path::new(RUN_DIR).join(f));
    }
    Ok(())
}

fn signal(pids: &[u32], sig: &str) -> Result<(), HarnessError> {
    let mut cmd = privileged("kill");
    cmd.arg(sig).args(pids.iter().map(|p| p.to_string()));
    let out = cmd.output().map_err(io("running kill".into()))?;
    // A pid that exited meanwhile is not an error worth failing on.
    if !out.status.success() {
        tracing::debug!(stderr = %String::from_utf8_lossy(&out.stderr), "kill reported an error");
    }
    Ok(())
}

/// Live (not zombie) processes named exactly `pcscd`.
fn pcscd_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(e.path().join("stat")).ok()?;
        // stat is "pid (comm) state ..."; comm may contain spaces, so split at the last ')'.
        let (head, tail) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1;
        let state = tail.trim_start().chars().next()?;
        (comm == "pcscd" && state != 'Z' && state != 'X').then_some(pid)
    })
    .collect()
}

/// Whether something listens on vpcd's slot-0 port, read from /proc/net/tcp so that no
/// connection is made (a connection would look like a card being inserted).
fn vpcd_listening() -> bool {
    let want = format!(":{VPCD_BASE_PORT:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        fs::read_to_string(f).is_ok_and(|s| {
            s.lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && cols[1].ends_with(&want) && cols[3] == "0A"
            })
        })
    })
}

fn empty_config_dir() -> Result<PathBuf, HarnessError> {
    let dir = std::env::temp_dir().join("tsunagi-pcscd-no-readers");
    fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    // Keep it empty: anything left in it would be loaded as a reader config.
    if let Ok(entries) = fs::read_dir(&dir) {
        for e in entries.flatten() {
            let _ = fs::remove_file(e.path());
        }
    }
    Ok(dir)
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// `program` run directly as root, else through `sudo -n` (never prompts).
fn privileged(program: &str) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", program]);
        c
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn install_packages() -> Result<(), HarnessError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup-system.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(io(format!("running {}", script.display())))?;
    if !out.status.success() {
        return Err(HarnessError::Command {
            what: script.display().to_string(),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(reader_name(0), "Virtual PCD 00 00");
        assert_eq!(reader_name(1), "Virtual PCD 00 01");
        assert_eq!(slot_addr(1).port(), 35964);
    }
}
