//! The simulated file system (模擬ファイルシステム): an in-memory [`Vfs`] for power-loss and
//! I/O-fault tests.
//!
//! Modelled on SQLite's test VFS and TigerBeetle's storage simulator. [`SimFs`] keeps, for
//! every file, what reads see (`live`), what would survive a power cut (`durable`) and the
//! writes made since the last successful [`VFile::sync_data`] (`pending`); every directory
//! keeps a live and a durable map of its entries. [`SimFs::crash`] cuts the power: a seeded
//! RNG builds the post-crash image, in which
//!
//! - each unsynced write is kept or lost independently (so unsynced writes are reordered),
//!   and a kept one may be torn (only a prefix lands);
//! - each directory entry changed since the directory's last [`Vfs::sync_dir`] is taken in
//!   its new or its old version, except that names linked by a rename flip together,
//!   because [`Vfs::rename`] is atomic;
//! - whatever is no longer reachable from `/` is gone, so a directory not yet synced in its
//!   parent takes its whole subtree with it.
//!
//! Until [`SimFs::restart`] every operation fails; afterwards the image is the live state and
//! every handle from before the crash fails forever. [`SimFs::fail_after`] fails a chosen
//! mutating operation with EIO, ENOSPC or a short write, and [`SimFs::set_full`] fills the
//! disk. A failed `sync_data` drops the file's pending writes from durability while reads
//! still show them, like Linux after a failed fsync ("fsyncgate",
//! <https://wiki.postgresql.org/wiki/Fsync_Errors>): those bytes can never become durable.
//!
//! Out of scope: permissions, hard links, symbolic links, `..` in paths, renames across
//! directories, metadata other than length, and anything but one process.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{LockGuard, OpenMode, VFile, Vfs};

/// EIO, the error of a failed read, write or sync.
const EIO: i32 = 5;
/// EBADF, writing through a read-only handle.
const EBADF: i32 = 9;
/// ENOSPC, disk full.
const ENOSPC: i32 = 28;

type NodeId = u64;
/// The root directory's node; it always exists.
const ROOT: NodeId = 0;

/// A fault that [`SimFs::fail_after`] injects into one mutating operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with ENOSPC (`StorageFull`, raw os error 28) and has no effect.
    DiskFull,
    /// The operation fails with EIO (raw os error 5) and has no effect; on
    /// [`VFile::sync_data`] the file's unsynced writes are lost to durability for good.
    Eio,
    /// A [`VFile::write_at`] writes about half of its buffer (nothing if the buffer is one
    /// byte), then fails with ENOSPC; any other operation fails as with [`Fault::Eio`].
    ShortWrite,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::DiskFull => disk_full(),
            Fault::Eio | Fault::ShortWrite => io::Error::from_raw_os_error(EIO),
        }
    }
}

/// An in-memory file system that forgets, reorders and tears unsynced writes at a simulated
/// crash and fails chosen operations; see the [module docs](self).
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // try_lock: Debug may be called from anywhere, and must never deadlock.
        let st = match self.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return f.write_str("SimFs { <busy> }"),
        };
        f.debug_struct("SimFs")
            .field("nodes", &st.nodes.len())
            .field("generation", &st.generation)
            .field("crashed", &st.after_crash.is_some())
            .field("mutating_ops", &st.mutating)
            .finish()
    }
}

impl SimFs {
    /// An empty file system: the root `/` only.
    pub fn new() -> Arc<SimFs> {
        Arc::new(SimFs {
            state: Arc::new(Mutex::new(State::new())),
        })
    }

    /// Cuts the power now. The post-crash image is drawn from an RNG seeded with `seed` (the
    /// same seed on the same history gives the same image); from now on every operation, on
    /// any path or handle, fails with "simulated crash" until [`SimFs::restart`]. All locks
    /// are released. A second crash before the restart does nothing: the power is already
    /// out.
    pub fn crash(&self, seed: u64) {
        let mut st = lock(&self.state);
        if st.after_crash.is_some() {
            return;
        }
        let image = st.post_crash_image(seed);
        st.after_crash = Some(image);
        st.generation += 1;
        st.locks.clear();
    }

    /// Powers back on after [`SimFs::crash`]: the post-crash image becomes the live (and
    /// durable) state. Handles opened before the crash stay dead ("stale handle after
    /// simulated crash"); all locks are free. Does nothing if there was no crash. Faults set
    /// with [`SimFs::fail_after`] or [`SimFs::set_full`] stay set.
    pub fn restart(&self) {
        let mut st = lock(&self.state);
        if let Some(image) = st.after_crash.take() {
            st.nodes = image;
        }
        st.locks.clear();
    }

    /// Makes the `n`-th next mutating operation fail with `fault` (`n = 0`: the very next
    /// one), once. Mutating operations are `write_at`, `set_len`, `sync_data`, `rename`,
    /// `remove_file`, `create_dir`, `remove_dir`, `sync_dir` and an `open` that creates a
    /// file; one that fails argument checks (a missing file, say) is not counted.
    pub fn fail_after(&self, n: u64, fault: Fault) {
        self.fail_run(n, 1, fault);
    }

    /// Like [`SimFs::fail_after`], failing `count` mutating operations in a row from the
    /// `n`-th next one (a disk that stays broken for a while).
    pub fn fail_run(&self, n: u64, count: u64, fault: Fault) {
        let mut st = lock(&self.state);
        let start = st.mutating.saturating_add(n);
        st.fail_at = Some((start, start.saturating_add(count), fault));
    }

    /// While `full`, every `write_at`, every `set_len` that grows a file and every `open`
    /// that creates one fails with ENOSPC (`StorageFull`, raw os error 28).
    pub fn set_full(&self, full: bool) {
        lock(&self.state).full = full;
    }

    /// Cancels [`SimFs::fail_after`] and [`SimFs::set_full`].
    pub fn clear_faults(&self) {
        let mut st = lock(&self.state);
        st.fail_at = None;
        st.full = false;
    }

    /// How many mutating operations were attempted so far, failed ones included (those
    /// refused by a crash or by argument checks excepted).
    pub fn mutating_ops(&self) -> u64 {
        lock(&self.state).mutating
    }

    /// Every file reachable in the live namespace whose live content contains `needle`,
    /// sorted (an empty needle matches every file).
    pub fn find_reachable(&self, needle: &[u8]) -> Vec<PathBuf> {
        let st = lock(&self.state);
        st.live_files()
            .into_iter()
            .filter(|(_, file)| contains(&file.live, needle))
            .map(|(path, _)| path)
            .collect()
    }

    /// Every file reachable in the live namespace, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        let st = lock(&self.state);
        st.live_files().into_iter().map(|(path, _)| path).collect()
    }
}

/// Locks the state, recovering from poisoning: only a bug in this simulator can panic while
/// holding the lock, and the test that hit it should report that panic, not a cascade of
/// poisoned-lock panics from every other handle.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything, behind the one mutex.
struct State {
    nodes: BTreeMap<NodeId, Node>,
    next_id: NodeId,
    /// Bumped at each crash: handles and lock guards from an older generation are dead.
    generation: u64,
    /// Set between [`SimFs::crash`] and [`SimFs::restart`]: the image to restart from.
    after_crash: Option<BTreeMap<NodeId, Node>>,
    /// The index of the mutating operation to fail, and how.
    /// Mutating operations `start..end` fail with the fault.
    fail_at: Option<(u64, u64, Fault)>,
    full: bool,
    /// Mutating operations counted so far.
    mutating: u64,
    /// Held locks: normalised path → token of the guard holding it.
    locks: BTreeMap<Vec<String>, u64>,
    next_lock: u64,
}

/// A file or a directory.
struct Node {
    /// How many directory entries (live or durable, in any directory) name this node: it is
    /// freed when no entry names it and no handle has it open.
    links: usize,
    /// Open handles.
    handles: usize,
    kind: Kind,
}

enum Kind {
    File(FileData),
    Dir(DirData),
}

#[derive(Default)]
struct FileData {
    /// What reads see.
    live: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Changes since the last `sync_data`, in order; appended to in O(1), so a file written
    /// in many small appends costs O(bytes) to sync or crash.
    pending: Vec<Op>,
}

#[derive(Default)]
struct DirData {
    live: BTreeMap<String, NodeId>,
    durable: BTreeMap<String, NodeId>,
    /// Renames since the last `sync_dir`, in order: their names flip together at a crash.
    renames: Vec<(String, String)>,
    /// Names whose live entry changed since the last `sync_dir`: only these can differ from
    /// the durable map, so a sync and a crash cost O(changes), not O(entries).
    dirty: BTreeSet<String>,
}

/// One unsynced change to a file.
enum Op {
    Write { offset: usize, bytes: Vec<u8> },
    SetLen(usize),
}

impl FileData {
    fn write(&mut self, offset: usize, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        apply_write(&mut self.live, offset, bytes);
        self.pending.push(Op::Write {
            offset,
            bytes: bytes.to_vec(),
        });
    }

    fn set_len(&mut self, len: usize) {
        self.live.resize(len, 0);
        self.pending.push(Op::SetLen(len));
    }

    /// A successful fdatasync: every pending change reaches the durable content.
    fn sync(&mut self) {
        let FileData {
            durable, pending, ..
        } = self;
        for op in pending.drain(..) {
            match op {
                Op::Write { offset, bytes } => apply_write(durable, offset, &bytes),
                Op::SetLen(len) => durable.resize(len, 0),
            }
        }
    }

    /// The content after a crash: the durable content with a random subset of the pending
    /// changes applied in order, each kept with probability 1/2, a kept write torn (only a
    /// prefix lands) with probability 1/4.
    fn after_crash(&self, rng: &mut StdRng) -> Vec<u8> {
        let mut content = self.durable.clone();
        for op in &self.pending {
            if !rng.gen_bool(0.5) {
                continue;
            }
            match op {
                Op::Write { offset, bytes } => {
                    let kept = if rng.gen_bool(0.75) {
                        bytes.len()
                    } else {
                        rng.gen_range(0..bytes.len().max(1))
                    };
                    apply_write(&mut content, *offset, &bytes[..kept]);
                }
                Op::SetLen(len) => content.resize(*len, 0),
            }
        }
        content
    }
}

/// Writes `bytes` at `offset`, zero-filling any gap past the end.
fn apply_write(content: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let end = offset + bytes.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[offset..end].copy_from_slice(bytes);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Chooses a directory's entries after a crash: each name whose live and durable entries
/// differ takes one or the other with probability 1/2, except that names linked by renames
/// since the last sync (transitively) make one choice together.
fn choose_entries(dir: &DirData, rng: &mut StdRng) -> BTreeMap<String, NodeId> {
    // Union-find over names, the smaller name being the root: deterministic, and rename
    // lists are short (they are cleared by every sync_dir).
    fn find<'a>(up: &BTreeMap<&'a str, &'a str>, mut name: &'a str) -> &'a str {
        while let Some(&next) = up.get(name) {
            name = next;
        }
        name
    }
    let mut up: BTreeMap<&str, &str> = BTreeMap::new();
    for (from, to) in &dir.renames {
        let a = find(&up, from);
        let b = find(&up, to);
        if a != b {
            up.insert(a.max(b), a.min(b));
        }
    }
    // Only names changed since the last sync can differ. Coins are drawn lazily in sorted
    // name order, so the same history gives the same image.
    let mut take_live: BTreeMap<&str, bool> = BTreeMap::new();
    let mut chosen = dir.durable.clone();
    for name in &dir.dirty {
        let live = dir.live.get(name);
        let durable = dir.durable.get(name);
        if live == durable {
            continue;
        }
        let group = find(&up, name);
        let pick = if *take_live.entry(group).or_insert_with(|| rng.gen_bool(0.5)) {
            live
        } else {
            durable
        };
        match pick {
            Some(&id) => chosen.insert(name.clone(), id),
            None => chosen.remove(name),
        };
    }
    chosen
}

impl State {
    fn new() -> State {
        let root = Node {
            // A permanent link: the root is never freed.
            links: 1,
            handles: 0,
            kind: Kind::Dir(DirData::default()),
        };
        State {
            nodes: BTreeMap::from([(ROOT, root)]),
            next_id: ROOT + 1,
            generation: 0,
            after_crash: None,
            fail_at: None,
            full: false,
            mutating: 0,
            locks: BTreeMap::new(),
            next_lock: 0,
        }
    }

    fn alive(&self) -> io::Result<()> {
        if self.after_crash.is_some() {
            Err(io::Error::other("simulated crash"))
        } else {
            Ok(())
        }
    }

    fn check_handle(&self, generation: u64) -> io::Result<()> {
        self.alive()?;
        if generation != self.generation {
            return Err(io::Error::other("stale handle after simulated crash"));
        }
        Ok(())
    }

    /// Counts one mutating operation; the fault to inject into it, if it is the chosen one.
    fn begin_mutation(&mut self) -> Option<Fault> {
        let index = self.mutating;
        self.mutating += 1;
        match self.fail_at {
            Some((start, end, fault)) if (start..end).contains(&index) => {
                if index + 1 >= end {
                    self.fail_at = None;
                }
                Some(fault)
            }
            _ => None,
        }
    }

    /// Counts one mutating operation and fails it if it is the chosen one, or if it needs
    /// space (`grows`) and the disk is full.
    fn mutate(&mut self, grows: bool) -> io::Result<()> {
        if let Some(fault) = self.begin_mutation() {
            return Err(fault.error());
        }
        if grows && self.full {
            return Err(disk_full());
        }
        Ok(())
    }

    fn node(&self, id: NodeId) -> io::Result<&Node> {
        self.nodes.get(&id).ok_or_else(vanished)
    }

    fn is_dir(&self, id: NodeId) -> bool {
        matches!(self.nodes.get(&id).map(|n| &n.kind), Some(Kind::Dir(_)))
    }

    fn dir(&self, id: NodeId) -> io::Result<&DirData> {
        match &self.node(id)?.kind {
            Kind::Dir(dir) => Ok(dir),
            Kind::File(_) => Err(vanished()),
        }
    }

    fn dir_mut(&mut self, id: NodeId) -> io::Result<&mut DirData> {
        match self.nodes.get_mut(&id).map(|n| &mut n.kind) {
            Some(Kind::Dir(dir)) => Ok(dir),
            _ => Err(vanished()),
        }
    }

    fn file(&self, id: NodeId) -> io::Result<&FileData> {
        match &self.node(id)?.kind {
            Kind::File(file) => Ok(file),
            Kind::Dir(_) => Err(vanished()),
        }
    }

    fn file_mut(&mut self, id: NodeId) -> io::Result<&mut FileData> {
        match self.nodes.get_mut(&id).map(|n| &mut n.kind) {
            Some(Kind::File(file)) => Ok(file),
            _ => Err(vanished()),
        }
    }

    /// The node at `comps` in the live namespace (`None` if some component is missing).
    fn lookup(&self, comps: &[String], path: &Path) -> io::Result<Option<NodeId>> {
        let mut id = ROOT;
        for name in comps {
            let dir = match &self.node(id)?.kind {
                Kind::Dir(dir) => dir,
                Kind::File(_) => {
                    return Err(error(io::ErrorKind::NotADirectory, path, "not a directory"))
                }
            };
            match dir.live.get(name) {
                Some(&child) => id = child,
                None => return Ok(None),
            }
        }
        Ok(Some(id))
    }

    /// The existing directory holding `comps`, and the last name.
    fn parent(&self, comps: &[String], path: &Path) -> io::Result<(NodeId, String)> {
        let Some((name, up)) = comps.split_last() else {
            return Err(error(
                io::ErrorKind::InvalidInput,
                path,
                "the root has no parent",
            ));
        };
        match self.lookup(up, path)? {
            Some(id) if self.is_dir(id) => Ok((id, name.clone())),
            Some(_) => Err(error(io::ErrorKind::NotADirectory, path, "not a directory")),
            None => Err(error(io::ErrorKind::NotFound, path, "no such directory")),
        }
    }

    fn add_node(&mut self, kind: Kind) -> NodeId {
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.insert(
            id,
            Node {
                links: 0,
                handles: 0,
                kind,
            },
        );
        id
    }

    /// Sets (or with `None` removes) an entry of `dir`'s live or durable map, keeping link
    /// counts.
    fn set_entry(
        &mut self,
        dir: NodeId,
        name: String,
        target: Option<NodeId>,
        durable: bool,
    ) -> io::Result<()> {
        let data = self.dir_mut(dir)?;
        let map = if durable {
            &mut data.durable
        } else {
            &mut data.live
        };
        let old = match target {
            Some(id) => map.insert(name.clone(), id),
            None => map.remove(&name),
        };
        if !durable {
            data.dirty.insert(name);
        }
        // Link the new node before unlinking the old: they may be the same.
        if let Some(id) = target {
            if let Some(node) = self.nodes.get_mut(&id) {
                node.links += 1;
            }
        }
        if let Some(id) = old {
            self.unlink(id);
        }
        Ok(())
    }

    /// Drops one link to `id`, freeing it (and, for a directory, what only it named) once
    /// nothing names it and no handle has it open.
    fn unlink(&mut self, id: NodeId) {
        let mut work = vec![id];
        while let Some(id) = work.pop() {
            let Some(node) = self.nodes.get_mut(&id) else {
                continue;
            };
            node.links = node.links.saturating_sub(1);
            if node.links == 0 && node.handles == 0 {
                if let Some(Node {
                    kind: Kind::Dir(dir),
                    ..
                }) = self.nodes.remove(&id)
                {
                    work.extend(dir.live.values());
                    work.extend(dir.durable.values());
                }
            }
        }
    }

    /// Closes one handle on `id`, freeing an unlinked file once its last handle is closed.
    fn close(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.handles = node.handles.saturating_sub(1);
            if node.links == 0 && node.handles == 0 {
                self.nodes.remove(&id);
            }
        }
    }

    /// Copies the live entries of `dir` to its durable map.
    fn sync_dir(&mut self, dir: NodeId) -> io::Result<()> {
        let data = self.dir_mut(dir)?;
        data.renames.clear();
        let dirty = std::mem::take(&mut data.dirty);
        for name in dirty {
            let live = self.dir(dir)?.live.get(&name).copied();
            self.set_entry(dir, name, live, true)?;
        }
        Ok(())
    }

    /// Every file reachable from `/` through live entries, sorted by path.
    fn live_files(&self) -> Vec<(PathBuf, &FileData)> {
        let mut out = Vec::new();
        let mut stack = vec![(PathBuf::from("/"), ROOT)];
        while let Some((path, id)) = stack.pop() {
            match self.nodes.get(&id).map(|n| &n.kind) {
                Some(Kind::Dir(dir)) => {
                    for (name, &child) in &dir.live {
                        stack.push((path.join(name), child));
                    }
                }
                Some(Kind::File(file)) => out.push((path, file)),
                None => {}
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The state after a power cut now, drawn from `seed`.
    fn post_crash_image(&self, seed: u64) -> BTreeMap<NodeId, Node> {
        let mut rng = StdRng::seed_from_u64(seed);
        // Every directory chooses, in node order, even one that turns out unreachable: the
        // draws must not depend on anything but the history.
        let mut chosen: BTreeMap<NodeId, BTreeMap<String, NodeId>> = BTreeMap::new();
        for (&id, node) in &self.nodes {
            if let Kind::Dir(dir) = &node.kind {
                chosen.insert(id, choose_entries(dir, &mut rng));
            }
        }
        let mut image = BTreeMap::new();
        let mut files = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut stack = vec![ROOT];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            match self.nodes.get(&id).map(|n| &n.kind) {
                Some(Kind::Dir(_)) => {
                    let mut entries = chosen.remove(&id).unwrap_or_default();
                    entries.retain(|_, child| self.nodes.contains_key(child));
                    stack.extend(entries.values());
                    let dir = DirData {
                        live: entries.clone(),
                        durable: entries,
                        renames: Vec::new(),
                        dirty: BTreeSet::new(),
                    };
                    image.insert(
                        id,
                        Node {
                            links: 0,
                            handles: 0,
                            kind: Kind::Dir(dir),
                        },
                    );
                }
                Some(Kind::File(_)) => {
                    files.insert(id);
                }
                None => {}
            }
        }
        for id in files {
            if let Some(Kind::File(file)) = self.nodes.get(&id).map(|n| &n.kind) {
                let content = file.after_crash(&mut rng);
                let data = FileData {
                    live: content.clone(),
                    durable: content,
                    pending: Vec::new(),
                };
                image.insert(
                    id,
                    Node {
                        links: 0,
                        handles: 0,
                        kind: Kind::File(data),
                    },
                );
            }
        }
        // Link counts: each entry is both live and durable; the root keeps its permanent link.
        let mut links: BTreeMap<NodeId, usize> = BTreeMap::from([(ROOT, 1)]);
        for node in image.values() {
            if let Kind::Dir(dir) = &node.kind {
                for &child in dir.live.values() {
                    *links.entry(child).or_default() += 2;
                }
            }
        }
        for (id, node) in &mut image {
            node.links = links.get(id).copied().unwrap_or(0);
        }
        image
    }
}

fn disk_full() -> io::Error {
    io::Error::from_raw_os_error(ENOSPC)
}

fn error(kind: io::ErrorKind, path: &Path, what: &str) -> io::Error {
    io::Error::new(kind, format!("{}: {what}", path.display()))
}

/// A node a handle or entry refers to is missing: a bug in this simulator, reported as an
/// error rather than a panic so that a test sees it.
fn vanished() -> io::Error {
    io::Error::other("simulated file system: node vanished (simulator bug)")
}

/// The components of an absolute path (`/` is empty). `.` is skipped; `..`, relative paths
/// and names that are not UTF-8 are refused.
fn normalise(path: &Path) -> io::Result<Vec<String>> {
    if !path.is_absolute() {
        return Err(error(
            io::ErrorKind::InvalidInput,
            path,
            "not an absolute path",
        ));
    }
    let mut comps = Vec::new();
    for comp in path.components() {
        match comp {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => match name.to_str() {
                Some(name) => comps.push(name.to_string()),
                None => {
                    return Err(error(
                        io::ErrorKind::InvalidInput,
                        path,
                        "name is not UTF-8",
                    ))
                }
            },
            Component::ParentDir | Component::Prefix(_) => {
                return Err(error(
                    io::ErrorKind::InvalidInput,
                    path,
                    "`..` is not simulated",
                ))
            }
        }
    }
    Ok(comps)
}

fn to_usize(n: u64, what: &str) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::FileTooLarge, what.to_string()))
}

/// An open file of a [`SimFs`].
struct SimFile {
    state: Arc<Mutex<State>>,
    id: NodeId,
    generation: u64,
    writable: bool,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("node", &self.id)
            .field("generation", &self.generation)
            .field("writable", &self.writable)
            .finish()
    }
}

impl SimFile {
    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(EBADF))
        }
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut st = lock(&self.state);
        if st.generation == self.generation {
            st.close(self.id);
        }
    }
}

impl VFile for SimFile {
    fn size(&self) -> io::Result<u64> {
        let st = lock(&self.state);
        st.check_handle(self.generation)?;
        Ok(st.file(self.id)?.live.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let st = lock(&self.state);
        st.check_handle(self.generation)?;
        let live = &st.file(self.id)?.live;
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= live.len() {
            return Ok(0);
        }
        let n = buf.len().min(live.len() - start);
        buf[..n].copy_from_slice(&live[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let mut st = lock(&self.state);
        st.check_handle(self.generation)?;
        self.check_writable()?;
        let offset = to_usize(offset, "write offset too large")?;
        if offset.checked_add(buf.len()).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "write past the largest offset",
            ));
        }
        st.file(self.id)?;
        match st.begin_mutation() {
            Some(Fault::ShortWrite) => {
                let prefix = &buf[..buf.len() / 2];
                st.file_mut(self.id)?.write(offset, prefix);
                return Err(disk_full());
            }
            Some(fault) => return Err(fault.error()),
            None => {}
        }
        if st.full {
            return Err(disk_full());
        }
        st.file_mut(self.id)?.write(offset, buf);
        Ok(buf.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.check_handle(self.generation)?;
        self.check_writable()?;
        let len = to_usize(len, "length too large")?;
        let grows = len > st.file(self.id)?.live.len();
        st.mutate(grows)?;
        st.file_mut(self.id)?.set_len(len);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.check_handle(self.generation)?;
        st.file(self.id)?;
        if let Some(fault) = st.begin_mutation() {
            // fsyncgate: the kernel drops the dirty pages' error state after reporting it
            // once, so the writes are lost to the disk while reads still show them.
            st.file_mut(self.id)?.pending.clear();
            return Err(fault.error());
        }
        st.file_mut(self.id)?.sync();
        Ok(())
    }
}

/// A lock held on a [`SimFs`] path.
struct SimLock {
    state: Arc<Mutex<State>>,
    key: Vec<String>,
    token: u64,
    generation: u64,
}

impl fmt::Debug for SimLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimLock")
            .field("path", &format!("/{}", self.key.join("/")))
            .field("generation", &self.generation)
            .finish()
    }
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = lock(&self.state);
        // A guard from before a crash must not release a lock taken after the restart.
        if st.generation == self.generation && st.locks.get(&self.key) == Some(&self.token) {
            st.locks.remove(&self.key);
        }
    }
}

impl SimFs {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Vfs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        let mut st = self.state();
        st.alive()?;
        let comps = normalise(path)?;
        let id = match st.lookup(&comps, path)? {
            Some(_) if mode == OpenMode::CreateNew => {
                return Err(error(io::ErrorKind::AlreadyExists, path, "already exists"))
            }
            Some(id) if st.is_dir(id) => {
                return Err(error(io::ErrorKind::IsADirectory, path, "is a directory"))
            }
            Some(id) => id,
            None => {
                if matches!(mode, OpenMode::Read | OpenMode::ReadWrite) {
                    return Err(error(io::ErrorKind::NotFound, path, "no such file"));
                }
                let (dir, name) = st.parent(&comps, path)?;
                st.mutate(true)?;
                let id = st.add_node(Kind::File(FileData::default()));
                st.set_entry(dir, name, Some(id), false)?;
                id
            }
        };
        if let Some(node) = st.nodes.get_mut(&id) {
            node.handles += 1;
        }
        Ok(Arc::new(SimFile {
            state: Arc::clone(&self.state),
            id,
            generation: st.generation,
            writable: mode != OpenMode::Read,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        let from_comps = normalise(from)?;
        let to_comps = normalise(to)?;
        let (Some((_, from_up)), Some((_, to_up))) =
            (from_comps.split_last(), to_comps.split_last())
        else {
            return Err(error(
                io::ErrorKind::InvalidInput,
                from,
                "cannot rename the root",
            ));
        };
        if from_up != to_up {
            return Err(error(
                io::ErrorKind::InvalidInput,
                to,
                "renames across directories are not simulated",
            ));
        }
        let (dir, from_name) = st.parent(&from_comps, from)?;
        let (_, to_name) = st.parent(&to_comps, to)?;
        let Some(source) = st.dir(dir)?.live.get(&from_name).copied() else {
            return Err(error(io::ErrorKind::NotFound, from, "no such file"));
        };
        if let Some(target) = st.dir(dir)?.live.get(&to_name).copied() {
            if target != source {
                match (st.is_dir(source), st.is_dir(target)) {
                    (false, true) => {
                        return Err(error(io::ErrorKind::IsADirectory, to, "is a directory"))
                    }
                    (true, false) => {
                        return Err(error(io::ErrorKind::NotADirectory, to, "not a directory"))
                    }
                    (true, true) if !st.dir(target)?.live.is_empty() => {
                        return Err(error(
                            io::ErrorKind::DirectoryNotEmpty,
                            to,
                            "directory not empty",
                        ))
                    }
                    _ => {}
                }
            }
        }
        st.mutate(false)?;
        if from_name == to_name {
            return Ok(());
        }
        st.set_entry(dir, to_name.clone(), Some(source), false)?;
        st.set_entry(dir, from_name.clone(), None, false)?;
        st.dir_mut(dir)?.renames.push((from_name, to_name));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        let comps = normalise(path)?;
        let (dir, name) = st.parent(&comps, path)?;
        match st.dir(dir)?.live.get(&name).copied() {
            None => return Err(error(io::ErrorKind::NotFound, path, "no such file")),
            Some(id) if st.is_dir(id) => {
                return Err(error(io::ErrorKind::IsADirectory, path, "is a directory"))
            }
            Some(_) => {}
        }
        st.mutate(false)?;
        st.set_entry(dir, name, None, false)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        let comps = normalise(path)?;
        if comps.is_empty() {
            return Err(error(io::ErrorKind::AlreadyExists, path, "already exists"));
        }
        let (dir, name) = st.parent(&comps, path)?;
        if st.dir(dir)?.live.contains_key(&name) {
            return Err(error(io::ErrorKind::AlreadyExists, path, "already exists"));
        }
        st.mutate(false)?;
        let id = st.add_node(Kind::Dir(DirData::default()));
        st.set_entry(dir, name, Some(id), false)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        let comps = normalise(path)?;
        if comps.is_empty() {
            return Err(error(
                io::ErrorKind::ResourceBusy,
                path,
                "cannot remove the root",
            ));
        }
        let (dir, name) = st.parent(&comps, path)?;
        match st.dir(dir)?.live.get(&name).copied() {
            None => return Err(error(io::ErrorKind::NotFound, path, "no such directory")),
            Some(id) if !st.is_dir(id) => {
                return Err(error(io::ErrorKind::NotADirectory, path, "not a directory"))
            }
            Some(id) if !st.dir(id)?.live.is_empty() => {
                return Err(error(
                    io::ErrorKind::DirectoryNotEmpty,
                    path,
                    "directory not empty",
                ))
            }
            Some(_) => {}
        }
        st.mutate(false)?;
        st.set_entry(dir, name, None, false)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        let comps = normalise(path)?;
        let dir = match st.lookup(&comps, path)? {
            None => return Err(error(io::ErrorKind::NotFound, path, "no such directory")),
            Some(id) if !st.is_dir(id) => {
                return Err(error(io::ErrorKind::NotADirectory, path, "not a directory"))
            }
            Some(id) => id,
        };
        st.mutate(false)?;
        st.sync_dir(dir)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.state();
        st.alive()?;
        let comps = normalise(path)?;
        match st.lookup(&comps, path)? {
            None => Err(error(io::ErrorKind::NotFound, path, "no such directory")),
            Some(id) if !st.is_dir(id) => {
                Err(error(io::ErrorKind::NotADirectory, path, "not a directory"))
            }
            Some(id) => Ok(st.dir(id)?.live.keys().cloned().collect()),
        }
    }

    fn is_dir(&self, path: &Path) -> io::Result<Option<bool>> {
        let st = self.state();
        st.alive()?;
        let comps = normalise(path)?;
        Ok(st.lookup(&comps, path)?.map(|id| st.is_dir(id)))
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let mut st = self.state();
        st.alive()?;
        let comps = normalise(path)?;
        match st.lookup(&comps, path)? {
            Some(id) if st.is_dir(id) => {
                return Err(error(io::ErrorKind::IsADirectory, path, "is a directory"))
            }
            Some(_) => {}
            None => {
                // A lock file is not data: created durable at once, never counted or failed.
                let (dir, name) = st.parent(&comps, path)?;
                let id = st.add_node(Kind::File(FileData::default()));
                st.set_entry(dir, name.clone(), Some(id), false)?;
                st.set_entry(dir, name, Some(id), true)?;
            }
        }
        if st.locks.contains_key(&comps) {
            return Err(error(
                io::ErrorKind::WouldBlock,
                path,
                "locked by another holder",
            ));
        }
        let token = st.next_lock;
        st.next_lock += 1;
        st.locks.insert(comps.clone(), token);
        Ok(Box::new(SimLock {
            state: Arc::clone(&self.state),
            key: comps,
            token,
            generation: st.generation,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::vfs::{read_file, write_all_at, write_atomic};

    const SEEDS: u64 = 64;

    fn p(path: &str) -> &Path {
        Path::new(path)
    }

    /// A file created (or truncated) with `bytes`, not synced.
    fn put(fs: &SimFs, path: &str, bytes: &[u8]) -> Arc<dyn VFile> {
        let file = fs.open(p(path), OpenMode::Create).unwrap();
        file.set_len(0).unwrap();
        write_all_at(file.as_ref(), bytes, 0).unwrap();
        file
    }

    /// A file created with `bytes`, its data and its directory entry durable.
    fn put_durable(fs: &SimFs, path: &str, bytes: &[u8]) {
        put(fs, path, bytes).sync_data().unwrap();
        fs.sync_dir(p(path).parent().unwrap()).unwrap();
    }

    /// The content of `path`, `None` if missing.
    fn get(fs: &SimFs, path: &str) -> Option<Vec<u8>> {
        match read_file(fs, p(path)) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => panic!("{path}: {e}"),
        }
    }

    /// A fresh file system after `history`, a crash with `seed` and a restart.
    fn after_crash(seed: u64, history: impl Fn(&SimFs)) -> Arc<SimFs> {
        let fs = SimFs::new();
        history(&fs);
        fs.crash(seed);
        fs.restart();
        fs
    }

    /// What `path` holds after `history` and a crash, for every seed.
    fn outcomes(path: &str, history: impl Fn(&SimFs)) -> Vec<Option<Vec<u8>>> {
        (0..SEEDS)
            .map(|seed| get(&after_crash(seed, &history), path))
            .collect()
    }

    fn is_crash(e: &io::Error) -> bool {
        e.kind() == io::ErrorKind::Other && e.to_string() == "simulated crash"
    }

    fn is_stale(e: &io::Error) -> bool {
        e.kind() == io::ErrorKind::Other && e.to_string() == "stale handle after simulated crash"
    }

    #[test]
    fn an_unsynced_write_is_lost_for_some_seeds_and_kept_for_others() {
        // It keeps or loses the unsynced append, and never touches the synced prefix.
        let seen = outcomes("/f", |fs| {
            put_durable(fs, "/f", b"durable");
            let file = fs.open(p("/f"), OpenMode::ReadWrite).unwrap();
            write_all_at(file.as_ref(), b"XYZ", 7).unwrap();
        });
        assert!(seen.contains(&Some(b"durable".to_vec())));
        assert!(seen.contains(&Some(b"durableXYZ".to_vec())));
        for content in seen {
            let content = content.unwrap();
            assert!(content.starts_with(b"durable"));
            assert!(b"durableXYZ".starts_with(&content));
        }
    }

    #[test]
    fn a_synced_write_always_survives() {
        // It keeps data synced with sync_data in a directory synced with sync_dir.
        let seen = outcomes("/f", |fs| {
            put_durable(fs, "/f", b"first");
            let file = fs.open(p("/f"), OpenMode::ReadWrite).unwrap();
            write_all_at(file.as_ref(), b" second", 5).unwrap();
            file.sync_data().unwrap();
        });
        assert!(seen
            .iter()
            .all(|c| c.as_deref() == Some(&b"first second"[..])));
    }

    #[test]
    fn unsynced_writes_can_be_reordered() {
        // It can keep a later unsynced write while losing an earlier one, leaving a hole.
        let seen = outcomes("/f", |fs| {
            put_durable(fs, "/f", b"");
            let file = fs.open(p("/f"), OpenMode::ReadWrite).unwrap();
            write_all_at(file.as_ref(), b"AAAA", 0).unwrap();
            write_all_at(file.as_ref(), b"BBBB", 4).unwrap();
        });
        assert!(seen.contains(&Some(b"\0\0\0\0BBBB".to_vec())));
        assert!(seen.contains(&Some(b"AAAABBBB".to_vec())));
        assert!(seen.contains(&Some(Vec::new())));
    }

    #[test]
    fn a_new_file_vanishes_unless_its_directory_was_synced() {
        // It drops the entry of a file whose directory was never synced, for some seed.
        let unsynced = outcomes("/f", |fs| {
            let file = put(fs, "/f", b"data");
            file.sync_data().unwrap();
        });
        assert!(unsynced.contains(&None));
        assert!(unsynced.contains(&Some(b"data".to_vec())));
        // It always keeps it once the directory was synced.
        let synced = outcomes("/f", |fs| put_durable(fs, "/f", b"data"));
        assert!(synced.iter().all(|c| c.as_deref() == Some(&b"data"[..])));
    }

    #[test]
    fn a_removal_not_synced_may_be_undone() {
        // It brings back a removed file whose removal was not synced, for some seed.
        let seen = outcomes("/f", |fs| {
            put_durable(fs, "/f", b"data");
            fs.remove_file(p("/f")).unwrap();
        });
        assert!(seen.contains(&None));
        assert!(seen.contains(&Some(b"data".to_vec())));
    }

    #[test]
    fn a_rename_over_a_durable_target_is_atomic() {
        // It leaves the target with the old or the new content, never neither, never both
        // names, over many seeds.
        let history = |fs: &SimFs| {
            put_durable(fs, "/t", b"old content");
            put(fs, "/t.tmp", b"new content").sync_data().unwrap();
            fs.rename(p("/t.tmp"), p("/t")).unwrap();
        };
        let mut seen = BTreeSet::new();
        for seed in 0..SEEDS {
            let fs = after_crash(seed, history);
            assert_eq!(fs.files(), vec![PathBuf::from("/t")]);
            seen.insert(get(&fs, "/t").unwrap());
        }
        let expected = BTreeSet::from([b"old content".to_vec(), b"new content".to_vec()]);
        assert_eq!(seen, expected);
    }

    #[test]
    fn chained_renames_before_a_sync_flip_together() {
        // It treats a→b→c as one atomic group: A is never lost nor duplicated.
        let history = |fs: &SimFs| {
            put_durable(fs, "/a", b"A");
            put_durable(fs, "/c", b"C");
            fs.rename(p("/a"), p("/b")).unwrap();
            fs.rename(p("/b"), p("/c")).unwrap();
        };
        let mut seen = BTreeSet::new();
        for seed in 0..SEEDS {
            let fs = after_crash(seed, history);
            seen.insert((get(&fs, "/a"), get(&fs, "/b"), get(&fs, "/c")));
        }
        let expected = BTreeSet::from([
            (Some(b"A".to_vec()), None, Some(b"C".to_vec())),
            (None, None, Some(b"A".to_vec())),
        ]);
        assert_eq!(seen, expected);
    }

    #[test]
    fn write_atomic_leaves_the_old_or_the_new_file_whatever_fails() {
        // It keeps vfs::write_atomic all-or-nothing when any of its operations fails and
        // the power is cut right after.
        let new_ops = {
            let fs = SimFs::new();
            write_atomic(&*fs, p("/t"), b"old").unwrap();
            let before = fs.mutating_ops();
            write_atomic(&*fs, p("/t"), b"new").unwrap();
            fs.mutating_ops() - before
        };
        for n in 0..new_ops {
            for fault in [Fault::Eio, Fault::DiskFull, Fault::ShortWrite] {
                for seed in 0..8 {
                    let fs = after_crash(seed, |fs| {
                        write_atomic(fs, p("/t"), b"old").unwrap();
                        fs.fail_after(n, fault);
                        let _ = write_atomic(fs, p("/t"), b"new");
                    });
                    let content = get(&fs, "/t").unwrap();
                    assert!(content == b"old" || content == b"new", "n={n} {fault:?}");
                }
            }
        }
    }

    #[test]
    fn a_failed_sync_loses_its_bytes_for_good() {
        // It models fsyncgate: bytes whose sync failed stay readable but never become
        // durable, even after a later successful sync.
        for seed in 0..SEEDS {
            let fs = after_crash(seed, |fs| {
                put_durable(fs, "/f", b"");
                let file = fs.open(p("/f"), OpenMode::ReadWrite).unwrap();
                write_all_at(file.as_ref(), b"LOST", 0).unwrap();
                fs.fail_after(0, Fault::Eio);
                let e = file.sync_data().unwrap_err();
                assert_eq!(e.raw_os_error(), Some(5));
                assert_eq!(get(fs, "/f").unwrap(), b"LOST");
                write_all_at(file.as_ref(), b"KEPT", 4).unwrap();
                file.sync_data().unwrap();
                assert_eq!(get(fs, "/f").unwrap(), b"LOSTKEPT");
            });
            assert_eq!(get(&fs, "/f").unwrap(), b"\0\0\0\0KEPT");
            assert!(fs.find_reachable(b"LOST").is_empty());
        }
    }

    #[test]
    fn fail_after_fails_exactly_the_nth_mutating_operation() {
        // It counts only mutating operations, fails exactly the chosen one, once.
        let fs = SimFs::new();
        let file = fs.open(p("/a"), OpenMode::Create).unwrap();
        assert_eq!(fs.mutating_ops(), 1);
        // It does not count opening an existing file, reads, listings or locks.
        fs.open(p("/a"), OpenMode::Create).unwrap();
        fs.open(p("/a"), OpenMode::Read).unwrap();
        file.size().unwrap();
        file.read_at(&mut [0; 4], 0).unwrap();
        fs.read_dir(p("/")).unwrap();
        fs.is_dir(p("/a")).unwrap();
        drop(fs.try_lock(p("/LOCK")).unwrap());
        assert_eq!(fs.mutating_ops(), 1);

        fs.fail_after(2, Fault::Eio);
        write_all_at(file.as_ref(), b"one", 0).unwrap();
        file.set_len(2).unwrap();
        let e = fs.create_dir(p("/d")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(5));
        // It leaves no trace of the failed operation.
        assert_eq!(fs.is_dir(p("/d")).unwrap(), None);
        assert_eq!(fs.mutating_ops(), 4);
        // It fails only once.
        fs.create_dir(p("/d")).unwrap();
        fs.sync_dir(p("/")).unwrap();
        assert_eq!(fs.mutating_ops(), 6);

        fs.fail_after(0, Fault::DiskFull);
        let e = fs.rename(p("/a"), p("/b")).unwrap_err();
        assert!(crate::vfs::is_disk_full(&e));
        assert_eq!(
            fs.files(),
            vec![PathBuf::from("/LOCK"), PathBuf::from("/a")]
        );
        assert_eq!(get(&fs, "/a").unwrap(), b"on");
    }

    #[test]
    fn a_short_write_writes_a_prefix_then_reports_disk_full() {
        // It writes about half of the buffer and fails with ENOSPC.
        let fs = SimFs::new();
        let file = fs.open(p("/f"), OpenMode::Create).unwrap();
        fs.fail_after(0, Fault::ShortWrite);
        let e = file.write_at(b"0123456789", 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(get(&fs, "/f").unwrap(), b"01234");
        // It writes nothing of a one-byte buffer.
        fs.fail_after(0, Fault::ShortWrite);
        file.write_at(b"X", 5).unwrap_err();
        assert_eq!(file.size().unwrap(), 5);
        // It fails any other operation like EIO.
        fs.fail_after(0, Fault::ShortWrite);
        let e = fs.sync_dir(p("/")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(5));
    }

    #[test]
    fn a_full_disk_refuses_growth_only() {
        // It refuses writes, growth and new files, and allows everything else.
        let fs = SimFs::new();
        let file = put(&fs, "/f", b"0123456789");
        fs.set_full(true);
        let e = file.write_at(b"x", 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(e.raw_os_error(), Some(28));
        let e = fs.open(p("/g"), OpenMode::Create).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(
            file.set_len(20).unwrap_err().kind(),
            io::ErrorKind::StorageFull
        );
        fs.open(p("/f"), OpenMode::Create).unwrap();
        file.set_len(4).unwrap();
        file.sync_data().unwrap();
        fs.rename(p("/f"), p("/h")).unwrap();
        fs.sync_dir(p("/")).unwrap();
        assert_eq!(get(&fs, "/h").unwrap(), b"0123");
        // It counts the refused operations as attempted: three for `put`, seven here.
        assert_eq!(fs.mutating_ops(), 10);
        fs.clear_faults();
        write_all_at(file.as_ref(), b"45", 4).unwrap();
        assert_eq!(get(&fs, "/h").unwrap(), b"012345");
    }

    #[test]
    fn every_operation_fails_during_a_crash_and_old_handles_stay_dead() {
        // It fails everything between crash and restart, then fails only old handles.
        let fs = SimFs::new();
        put_durable(&fs, "/f", b"data");
        let old = fs.open(p("/f"), OpenMode::ReadWrite).unwrap();
        fs.crash(1);
        assert!(is_crash(&fs.open(p("/f"), OpenMode::Read).unwrap_err()));
        assert!(is_crash(&fs.read_dir(p("/")).unwrap_err()));
        assert!(is_crash(&fs.create_dir(p("/d")).unwrap_err()));
        assert!(is_crash(&fs.try_lock(p("/LOCK")).unwrap_err()));
        assert!(is_crash(&old.size().unwrap_err()));
        assert!(is_crash(&old.write_at(b"x", 0).unwrap_err()));
        // It does not count operations refused by the crash (five ran in `put_durable`).
        assert_eq!(fs.mutating_ops(), 5);
        fs.restart();
        assert!(is_stale(&old.read_at(&mut [0; 4], 0).unwrap_err()));
        assert!(is_stale(&old.write_at(b"x", 0).unwrap_err()));
        assert!(is_stale(&old.sync_data().unwrap_err()));
        let new = fs.open(p("/f"), OpenMode::ReadWrite).unwrap();
        assert_eq!(new.size().unwrap(), 4);
        drop(old);
        assert_eq!(get(&fs, "/f").unwrap(), b"data");
    }

    #[test]
    fn locks_are_exclusive_and_released_at_a_crash() {
        // It refuses a second holder until the first guard is dropped.
        let fs = SimFs::new();
        let held = fs.try_lock(p("/LOCK")).unwrap();
        let e = fs.try_lock(p("/LOCK")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(held);
        let before_crash = fs.try_lock(p("/LOCK")).unwrap();
        // It releases every lock at a crash, and the lock file is durable at once.
        fs.crash(7);
        fs.restart();
        assert_eq!(fs.files(), vec![PathBuf::from("/LOCK")]);
        let after_restart = fs.try_lock(p("/LOCK")).unwrap();
        // It does not let an old guard release a lock taken after the restart.
        drop(before_crash);
        let e = fs.try_lock(p("/LOCK")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(after_restart);
        fs.try_lock(p("/LOCK")).unwrap();
    }

    #[test]
    fn find_reachable_sees_only_the_live_namespace() {
        // It finds the needle in reachable files only, not in unlinked ones still open.
        let fs = SimFs::new();
        fs.create_dir(p("/a")).unwrap();
        put(&fs, "/a/x", b"..needle..");
        put(&fs, "/a/y", b"hay");
        let gone = put(&fs, "/b", b"needle");
        fs.remove_file(p("/b")).unwrap();
        assert_eq!(fs.find_reachable(b"needle"), vec![PathBuf::from("/a/x")]);
        assert_eq!(
            fs.files(),
            vec![PathBuf::from("/a/x"), PathBuf::from("/a/y")]
        );
        // It lets the unlinked file be used through its handle.
        write_all_at(gone.as_ref(), b"!", 6).unwrap();
        gone.sync_data().unwrap();
        assert_eq!(gone.size().unwrap(), 7);
    }

    #[test]
    fn an_unlinked_file_is_freed_when_its_last_handle_closes() {
        // It frees a removed file once no entry names it and no handle has it open.
        let fs = SimFs::new();
        put_durable(&fs, "/f", &[7; 1000]);
        let file = fs.open(p("/f"), OpenMode::Read).unwrap();
        fs.remove_file(p("/f")).unwrap();
        fs.sync_dir(p("/")).unwrap();
        assert_eq!(fs.state().nodes.len(), 2);
        drop(file);
        assert_eq!(fs.state().nodes.len(), 1);
        // It frees a removed directory's durable children once the removal is synced.
        fs.create_dir(p("/d")).unwrap();
        put_durable(&fs, "/d/f", b"x");
        fs.sync_dir(p("/")).unwrap();
        fs.remove_file(p("/d/f")).unwrap();
        fs.remove_dir(p("/d")).unwrap();
        assert_eq!(fs.state().nodes.len(), 3);
        fs.sync_dir(p("/")).unwrap();
        assert_eq!(fs.state().nodes.len(), 1);
    }

    #[test]
    fn a_directory_not_synced_in_its_parent_takes_its_subtree_with_it() {
        // It drops the directory and its (synced) content for some seed, keeps both for
        // another, and never keeps the directory without its synced file.
        let history = |fs: &SimFs| {
            fs.create_dir(p("/d")).unwrap();
            put_durable(fs, "/d/f", b"data");
        };
        let mut seen = BTreeSet::new();
        for seed in 0..SEEDS {
            let fs = after_crash(seed, history);
            match fs.is_dir(p("/d")).unwrap() {
                None => assert!(fs.files().is_empty()),
                Some(true) => assert_eq!(get(&fs, "/d/f").unwrap(), b"data"),
                Some(false) => panic!("/d is a file"),
            }
            seen.insert(fs.is_dir(p("/d")).unwrap());
        }
        assert_eq!(seen, BTreeSet::from([None, Some(true)]));
        // It keeps the subtree once the parent is synced too.
        let seen = outcomes("/d/f", |fs| {
            history(fs);
            fs.sync_dir(p("/")).unwrap();
        });
        assert!(seen.iter().all(|c| c.as_deref() == Some(&b"data"[..])));
    }

    #[test]
    fn the_same_seed_on_the_same_history_gives_the_same_image() {
        // It is deterministic per seed, and different seeds give different images.
        let history = |fs: &SimFs| {
            fs.create_dir(p("/d")).unwrap();
            for i in 0..8u8 {
                let file = put(fs, &format!("/d/f{i}"), &[i; 100]);
                if i % 2 == 0 {
                    file.sync_data().unwrap();
                }
                write_all_at(file.as_ref(), &[i + 100; 50], 80).unwrap();
            }
            fs.rename(p("/d/f1"), p("/d/f2")).unwrap();
        };
        let image = |fs: &SimFs| -> Vec<(PathBuf, Vec<u8>)> {
            fs.files()
                .into_iter()
                .map(|path| {
                    let bytes = read_file(fs, &path).unwrap();
                    (path, bytes)
                })
                .collect()
        };
        let mut distinct = BTreeSet::new();
        for seed in 0..16 {
            let a = image(&after_crash(seed, history));
            let b = image(&after_crash(seed, history));
            assert_eq!(a, b);
            distinct.insert(a);
        }
        assert!(distinct.len() > 1);
    }

    #[test]
    fn paths_and_kinds_are_checked_like_posix() {
        // It answers each misuse with the error kind the real file system gives.
        let fs = SimFs::new();
        let kind = |r: io::Result<()>| r.unwrap_err().kind();
        let open = |path: &str, mode| fs.open(p(path), mode).map(drop);
        assert_eq!(
            kind(open("rel", OpenMode::Create)),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(open("/x/../y", OpenMode::Create)),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(open("/missing", OpenMode::Read)),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            kind(open("/missing", OpenMode::ReadWrite)),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            kind(open("/no/f", OpenMode::Create)),
            io::ErrorKind::NotFound
        );
        fs.create_dir(p("/d")).unwrap();
        assert_eq!(
            kind(open("/d", OpenMode::Read)),
            io::ErrorKind::IsADirectory
        );
        assert_eq!(
            kind(open("/", OpenMode::Create)),
            io::ErrorKind::IsADirectory
        );
        assert_eq!(kind(fs.create_dir(p("/d"))), io::ErrorKind::AlreadyExists);
        assert_eq!(kind(fs.create_dir(p("/"))), io::ErrorKind::AlreadyExists);
        put(&fs, "/d/f", b"x");
        assert_eq!(
            kind(open("/d/f", OpenMode::CreateNew)),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(
            kind(open("/d/f/g", OpenMode::Create)),
            io::ErrorKind::NotADirectory
        );
        assert_eq!(
            kind(fs.remove_dir(p("/d"))),
            io::ErrorKind::DirectoryNotEmpty
        );
        assert_eq!(kind(fs.remove_dir(p("/d/f"))), io::ErrorKind::NotADirectory);
        assert_eq!(kind(fs.remove_dir(p("/"))), io::ErrorKind::ResourceBusy);
        assert_eq!(kind(fs.remove_file(p("/d"))), io::ErrorKind::IsADirectory);
        assert_eq!(kind(fs.remove_file(p("/d/g"))), io::ErrorKind::NotFound);
        assert_eq!(
            kind(fs.rename(p("/d/f"), p("/f"))),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(fs.rename(p("/d/g"), p("/d/h"))),
            io::ErrorKind::NotFound
        );
        assert_eq!(kind(fs.sync_dir(p("/d/f"))), io::ErrorKind::NotADirectory);
        let ro = fs.open(p("/d/f"), OpenMode::Read).unwrap();
        assert_eq!(ro.write_at(b"y", 0).unwrap_err().raw_os_error(), Some(9));
        assert_eq!(fs.is_dir(p("/d/g")).unwrap(), None);
        assert_eq!(fs.is_dir(p("/d/f")).unwrap(), Some(false));
        assert_eq!(fs.is_dir(p("/./d")).unwrap(), Some(true));
        // It replaces a rename's target and lists names sorted.
        put(&fs, "/d/b", b"b");
        put(&fs, "/d/a", b"a");
        fs.rename(p("/d/a"), p("/d/f")).unwrap();
        assert_eq!(fs.read_dir(p("/d")).unwrap(), vec!["b", "f"]);
        assert_eq!(get(&fs, "/d/f").unwrap(), b"a");
        // It zero-fills a write past the end and reads short at the end.
        let file = fs.open(p("/d/b"), OpenMode::ReadWrite).unwrap();
        write_all_at(file.as_ref(), b"z", 3).unwrap();
        assert_eq!(get(&fs, "/d/b").unwrap(), b"b\0\0z");
        let mut buf = [0; 8];
        assert_eq!(file.read_at(&mut buf, 2).unwrap(), 2);
        assert_eq!(file.read_at(&mut buf, 9).unwrap(), 0);
    }

    #[test]
    fn many_small_appends_then_one_sync_survive_whole() {
        // It handles ten megabytes in small appends (linear, not quadratic, in the pending
        // list) and makes them all durable with one sync.
        let fs = SimFs::new();
        let file = fs.open(p("/log"), OpenMode::Create).unwrap();
        fs.sync_dir(p("/")).unwrap();
        let record = [0xAB; 50];
        let count = 200_000u64;
        for i in 0..count {
            write_all_at(file.as_ref(), &record, i * 50).unwrap();
        }
        file.sync_data().unwrap();
        fs.crash(3);
        fs.restart();
        let content = get(&fs, "/log").unwrap();
        assert_eq!(content.len() as u64, count * 50);
        assert!(content.iter().all(|&b| b == 0xAB));
    }
}
