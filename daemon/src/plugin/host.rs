//! The engine, loading, and bounded calls.
//!
//! One `Engine` per host, with epoch interruption; a ticker thread holding only a weak
//! reference to it advances the epoch every [`TICK`], so a call's deadline is a number of
//! ticks. One `Linker` with WASI p2 over a deny-all context (what a plugin may import is
//! decided earlier, by `inspect`). Each plugin is pre-instantiated once. An instance whose
//! call ended well serves the next call (instantiating costs more than a formatting call),
//! up to [`CALLS_PER_INSTANCE`] calls; one whose call failed in any way is dropped, and its
//! deadline is set anew for every call. A plugin sees only the check it is given, so what a
//! well-behaved one keeps between calls is its allocator's state.
//!
//! Calls are synchronous and may block for up to the deadline: call them from a blocking
//! thread (`tokio::task::spawn_blocking`) or a plain thread, never on an async worker (the
//! WASI streams behind a guest's stderr enter the current tokio runtime to run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{FacilityAdapter, FacilityAdapterPre};
use super::cache::CompileCache;
use super::inspect::inspect;
use super::limits::{CallLimiter, OutputSize};
use super::{
    api, sign, CacheStats, CallError, HostError, HostSettings, LoadError, PluginState, PluginStatus,
};

/// How often the epoch advances. A call's deadline is rounded up to whole ticks.
pub const TICK: Duration = Duration::from_millis(10);

/// What one call's store holds.
struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: CallLimiter,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Advances the engine's epoch until the engine is gone or the host is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: &Engine) -> Self {
        let weak = engine.weak();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    // A weak reference, so the ticker never keeps the engine alive.
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .ok();
        if handle.is_none() {
            tracing::error!("cannot start the plugin epoch ticker; calls will not time out");
        }
        Ticker { stop, handle }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A file's identity for the change poll: size and modification time of the wasm and its
/// signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    wasm: (u64, Option<SystemTime>),
    sig: Option<(u64, Option<SystemTime>)>,
}

impl Stamp {
    fn of(path: &Path) -> Option<Self> {
        let of = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        };
        Some(Stamp {
            wasm: of(path)?,
            sig: of(&sign::signature_path(path)),
        })
    }
}

/// A loaded plugin.
struct Loaded {
    status: PluginStatus,
    pre: FacilityAdapterPre<CallState>,
    facilities: Vec<api::Facility>,
    /// Why it was disabled, once it was.
    disabled: Mutex<Option<String>>,
    /// An instance whose last call ended well, kept for the next call: instantiating costs
    /// more than a formatting call. One that failed in any way is dropped, never reused.
    idle: Mutex<Option<(Store<CallState>, FacilityAdapter, u32)>>,
}

/// Calls one instance serves before a fresh one is made: a guest that leaks a little per
/// call is renewed long before it could reach its memory limit and be disabled for it.
const CALLS_PER_INSTANCE: u32 = 256;

impl Loaded {
    fn disabled_reason(&self) -> Option<String> {
        self.disabled.lock().ok().and_then(|d| d.clone())
    }
}

/// What the host knows of one plugin file.
enum Entry {
    Loaded {
        plugin: Arc<Loaded>,
        stamp: Option<Stamp>,
    },
    Refused {
        status: PluginStatus,
        stamp: Option<Stamp>,
    },
}

impl Entry {
    fn stamp(&self) -> Option<Stamp> {
        match self {
            Entry::Loaded { stamp, .. } | Entry::Refused { stamp, .. } => *stamp,
        }
    }
}

/// The plugin host (プラグインの実行環境). Cheap to share behind an `Arc`; every method
/// takes `&self`.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<CallState>,
    cache: CompileCache,
    settings: HostSettings,
    plugins: RwLock<BTreeMap<String, Entry>>,
    _ticker: Ticker,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("cache", &self.cache)
            .field("plugins", &self.names())
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// Builds the engine, the linker and the cache, and starts the epoch ticker.
    pub fn new(settings: HostSettings) -> Result<Self, HostError> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        // All of WASI p2 is linked, but `inspect` refuses a plugin that imports an interface
        // it was not granted before it gets here, and a component reaches only its imports.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| HostError::Link(format!("{e:#}")))?;
        let cache = CompileCache::open(&settings.cache_dir, &engine)?;
        let ticker = Ticker::start(&engine);
        Ok(Self {
            engine,
            linker,
            cache,
            settings,
            plugins: RwLock::new(BTreeMap::new()),
            _ticker: ticker,
        })
    }

    /// The compile cache's counts since start.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Where the artifact of these component bytes is (or would be) cached.
    pub fn cache_path_of(&self, wasm: &[u8]) -> PathBuf {
        self.cache.artifact_path(&sign::sha256(wasm))
    }

    /// Loads every `*.wasm` in `dir` (in name order) and returns every plugin's status. A
    /// refused one is recorded with its reason and logged; it does not stop the others. A
    /// missing directory means no plugins.
    pub fn load_dir(&self, dir: &Path) -> Vec<PluginStatus> {
        for path in wasm_files(dir) {
            let _ = self.load(&path);
        }
        self.statuses()
    }

    /// Loads (or reloads) one plugin file. On success the new plugin replaces any plugin of
    /// the same name at once; on failure a plugin already loaded under that name keeps
    /// serving, and otherwise the refusal is recorded for [`Self::statuses`].
    pub fn load(&self, path: &Path) -> Result<PluginStatus, LoadError> {
        let name = plugin_name(path);
        let stamp = Stamp::of(path);
        match self.prepare(&name, path) {
            Ok(plugin) => {
                let status = plugin.status.clone();
                tracing::info!(
                    plugin = %name,
                    api = ?status.api_version,
                    from_cache = status.from_cache,
                    "plugin loaded"
                );
                self.put(
                    name,
                    Entry::Loaded {
                        plugin: Arc::new(plugin),
                        stamp,
                    },
                );
                Ok(status)
            }
            Err(e) => {
                let reason = e.message_ja(&name);
                let mut plugins = self.write();
                match plugins.get_mut(&name) {
                    Some(Entry::Loaded { stamp: old, .. }) => {
                        tracing::warn!(plugin = %name, error = %e, "plugin replacement refused; previous version keeps serving");
                        // Remember this file so the poll does not retry it until it changes.
                        *old = stamp;
                    }
                    _ => {
                        tracing::warn!(plugin = %name, error = %e, "plugin refused");
                        plugins.insert(
                            name.clone(),
                            Entry::Refused {
                                status: PluginStatus {
                                    name,
                                    path: path.to_path_buf(),
                                    state: PluginState::Refused { reason },
                                    signer: None,
                                    api_version: None,
                                    title: None,
                                    facilities: Vec::new(),
                                    from_cache: false,
                                },
                                stamp,
                            },
                        );
                    }
                }
                Err(e)
            }
        }
    }

    /// The cheap poll the daemon calls now and then: loads `*.wasm` files in `dir` that are
    /// new or whose wasm or signature changed size or mtime, and forgets plugins whose file is
    /// gone. Returns the statuses of what it touched.
    pub fn reload_changed(&self, dir: &Path) -> Vec<PluginStatus> {
        let files = wasm_files(dir);
        let mut touched = Vec::new();
        for path in &files {
            let name = plugin_name(path);
            let known = self.read().get(&name).and_then(Entry::stamp);
            if known.is_none() || known != Stamp::of(path) {
                let _ = self.load(path);
                touched.push(name);
            }
        }
        let present: Vec<String> = files.iter().map(|p| plugin_name(p)).collect();
        {
            let mut plugins = self.write();
            plugins.retain(|name, _| {
                let keep = present.contains(name);
                if !keep {
                    tracing::info!(plugin = %name, "plugin file removed; unloaded");
                }
                keep
            });
        }
        self.statuses()
            .into_iter()
            .filter(|s| touched.contains(&s.name))
            .collect()
    }

    /// Every plugin the host knows, loaded, disabled or refused, by name.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        self.read()
            .values()
            .map(|entry| match entry {
                Entry::Loaded { plugin, .. } => {
                    let mut status = plugin.status.clone();
                    if let Some(reason) = plugin.disabled_reason() {
                        status.state = PluginState::Disabled { reason };
                    }
                    status
                }
                Entry::Refused { status, .. } => status.clone(),
            })
            .collect()
    }

    /// The status of one plugin.
    pub fn status(&self, name: &str) -> Option<PluginStatus> {
        self.statuses().into_iter().find(|s| s.name == name)
    }

    /// The first loaded, not disabled plugin (in name order) that serves `facility`.
    pub fn plugin_for(&self, facility: api::Facility) -> Option<String> {
        self.read().iter().find_map(|(name, entry)| match entry {
            Entry::Loaded { plugin, .. }
                if plugin.facilities.contains(&facility) && plugin.disabled_reason().is_none() =>
            {
                Some(name.clone())
            }
            _ => None,
        })
    }

    /// `format`: the check formatted for the facility, bounded in time, memory and size.
    pub fn format(&self, plugin: &str, check: &api::Check) -> Result<api::Output, CallError> {
        let loaded = self.loaded(plugin)?;
        let answer = self.call(&loaded, |adapter, store| adapter.call_format(store, check))?;
        declined(plugin, answer)
    }

    /// `on-moment`: what the plugin adds when a check reaches `at`.
    pub fn on_moment(
        &self,
        plugin: &str,
        at: api::Moment,
        check: &api::Check,
    ) -> Result<api::Addition, CallError> {
        let loaded = self.loaded(plugin)?;
        let answer = self.call(&loaded, |adapter, store| {
            adapter.call_on_moment(store, at, check)
        })?;
        declined(plugin, answer)
    }

    fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding the lock leaves only a map of complete entries behind (every
        // write is a single insert or retain), so a poisoned lock is still consistent.
        self.plugins.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.plugins.write().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, name: String, entry: Entry) {
        self.write().insert(name, entry);
    }

    fn loaded(&self, name: &str) -> Result<Arc<Loaded>, CallError> {
        match self.read().get(name) {
            Some(Entry::Loaded { plugin, .. }) => Ok(plugin.clone()),
            _ => Err(CallError::NotLoaded {
                plugin: name.to_string(),
            }),
        }
    }

    /// Verify, inspect, compile (or take from the cache), pre-instantiate, describe.
    fn prepare(&self, name: &str, path: &Path) -> Result<Loaded, LoadError> {
        let wasm = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let signer = sign::verify_file(path, &wasm, &self.settings.trusted_keys)?;
        let granted = self.settings.grants.get(name).cloned().unwrap_or_default();
        let inspection = inspect(name, &wasm, &granted)?;
        let digest = sign::sha256(&wasm);
        let (component, from_cache) = self
            .cache
            .component(&self.engine, &wasm, &digest)
            .map_err(LoadError::Prepare)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Prepare(format!("{e:#}")))?;
        let pre = FacilityAdapterPre::new(instance_pre)
            .map_err(|e| LoadError::Prepare(format!("{e:#}")))?;
        let mut plugin = Loaded {
            status: PluginStatus {
                name: name.to_string(),
                path: path.to_path_buf(),
                state: PluginState::Loaded,
                signer: Some(signer.to_string()),
                api_version: Some(inspection.api.to_string()),
                title: None,
                facilities: Vec::new(),
                from_cache,
            },
            pre,
            facilities: Vec::new(),
            disabled: Mutex::new(None),
            idle: Mutex::new(None),
        };
        let info = self
            .call(&plugin, |adapter, store| adapter.call_describe(store))
            .map_err(|e| LoadError::Describe(Box::new(e)))?;
        plugin.status.title = Some(format!("{} {}", info.name, info.version));
        plugin.status.facilities = info.facilities.iter().map(facility_name).collect();
        plugin.facilities = info.facilities;
        Ok(plugin)
    }

    /// One bounded call in a fresh store. A trap, timeout, memory overrun or oversized
    /// output disables the plugin.
    fn call<R: OutputSize>(
        &self,
        plugin: &Loaded,
        f: impl FnOnce(&FacilityAdapter, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let name = &plugin.status.name;
        if let Some(reason) = plugin.disabled_reason() {
            return Err(CallError::Disabled {
                plugin: name.clone(),
                reason,
            });
        }
        let limits = self.settings.limits;
        let ticks = limits.timeout.as_millis().div_ceil(TICK.as_millis()).max(1);
        let deadline = u64::try_from(ticks).unwrap_or(u64::MAX);
        // The instance the last good call left, or a fresh one. The memory limit holds over
        // an instance's whole life, and its deadline is set anew for every call.
        let kept = plugin.idle.lock().ok().and_then(|mut i| i.take());
        let (mut store, adapter, served) = match kept {
            Some(kept) => kept,
            None => {
                let mut store = Store::new(
                    &self.engine,
                    CallState {
                        wasi: WasiCtxBuilder::new().build(),
                        table: ResourceTable::new(),
                        limiter: CallLimiter::new(limits.memory_bytes),
                    },
                );
                store.limiter(|s| &mut s.limiter);
                store.set_epoch_deadline(deadline);
                match plugin.pre.instantiate(&mut store) {
                    Ok(adapter) => (store, adapter, 0),
                    Err(e) => {
                        return Err(CallError::Trapped {
                            plugin: name.clone(),
                            detail: format!("{e:#}"),
                        })
                    }
                }
            }
        };
        store.set_epoch_deadline(deadline);
        let result = f(&adapter, &mut store);
        let ended_well = result.is_ok();
        let outcome = match result {
            Ok(value) => {
                let size = value.output_size();
                if size > limits.output_bytes {
                    Err(CallError::OutputTooLarge {
                        plugin: name.clone(),
                        size,
                        limit: limits.output_bytes,
                    })
                } else {
                    Ok(value)
                }
            }
            Err(e) if store.data().limiter.memory_refused => {
                tracing::debug!(plugin = %name, error = %format!("{e:#}"), "memory limit");
                Err(CallError::OutOfMemory {
                    plugin: name.clone(),
                    limit: limits.memory_bytes,
                })
            }
            Err(e) if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => {
                Err(CallError::TimedOut {
                    plugin: name.clone(),
                    limit: limits.timeout,
                })
            }
            Err(e) => Err(CallError::Trapped {
                plugin: name.clone(),
                detail: format!("{e:#}"),
            }),
        };
        if ended_well && outcome.is_ok() && served + 1 < CALLS_PER_INSTANCE {
            if let Ok(mut idle) = plugin.idle.lock() {
                *idle = Some((store, adapter, served + 1));
            }
        }
        if let Err(e) = &outcome {
            if e.disables() {
                tracing::warn!(plugin = %name, error = %e, "plugin disabled");
                if let Ok(mut d) = plugin.disabled.lock() {
                    d.get_or_insert_with(|| e.message_ja());
                }
            }
        }
        outcome
    }
}

/// The guest's own refusal, as an error that does not disable it.
fn declined<T>(plugin: &str, answer: Result<T, api::Failure>) -> Result<T, CallError> {
    answer.map_err(|failure| {
        let (unsupported, detail) = match failure {
            api::Failure::Unsupported(d) => (true, d),
            api::Failure::Incomplete(d) => (false, d),
        };
        CallError::Declined {
            plugin: plugin.to_string(),
            unsupported,
            detail,
        }
    })
}

impl<T: OutputSize> OutputSize for Result<T, api::Failure> {
    fn output_size(&self) -> usize {
        match self {
            Ok(v) => v.output_size(),
            Err(api::Failure::Unsupported(d) | api::Failure::Incomplete(d)) => d.len(),
        }
    }
}

/// The WIT name of a facility type.
pub fn facility_name(f: &api::Facility) -> String {
    match f {
        api::Facility::Medical => "medical",
        api::Facility::Dental => "dental",
        api::Facility::Pharmacy => "pharmacy",
        api::Facility::Judo => "judo",
        api::Facility::Ahaki => "ahaki",
        api::Facility::HomeNursing => "home-nursing",
    }
    .to_string()
}

/// A plugin's name: its file name without `.wasm`.
pub fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The `*.wasm` files of a directory, in name order; none if it cannot be read.
pub fn wasm_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect(),
        Err(e) => {
            tracing::info!(dir = %dir.display(), error = %e, "no plugin directory");
            Vec::new()
        }
    };
    files.sort();
    files
}
