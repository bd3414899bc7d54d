//! Sync with the clinic's other devices (端末間同期): tsunagid's side of replication.
//!
//! One QUIC endpoint ([`tsunagi_sync::net`]) accepts paired devices and dials those with an
//! address; each connection carries one stream each way and runs one
//! [`tsunagi_sync::replica::Session`]. The session's store work runs on the blocking pool;
//! the connection's task only moves bytes. Between two devices one connection is kept: if
//! both dialled at once, the one dialled by the smaller device id stays (both sides decide
//! the same without talking).
//!
//! Local writes (captures, answers, resolutions) and records received from one peer wake
//! every connection, which pushes what its peer now lacks: that is how a check reaches the
//! other devices as it happens, and how an always-on device (a hub) passes records on.
//!
//! Every task is owned: connections, the acceptor and the dialler are tracked and end at
//! shutdown after closing their connections with a reason.

pub mod book;
pub mod discovery;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tsunagi_sync::net::{self, Allowlist, Endpoint, PeerConnection};
use tsunagi_sync::replica::link::Link;
use tsunagi_sync::replica::{Host, Session};
use tsunagi_sync::{DeviceId, Month, Store, StoreError};

use crate::check::now_jst;
use book::Peer;

/// Dialling a peer that cannot be reached waits this long at first, doubling up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A session that ends sooner than this after its connection was made counts as a failed
/// dial (the backoff keeps growing): a session that ends on a local error (a full disk), or a
/// peer that closes every session at once, would otherwise be dialled again at once, over and
/// over.
const STEADY: Duration = MAX_BACKOFF;
/// How often the month documents are compacted and let go of in memory.
const MAINTAIN_EVERY: Duration = Duration::from_secs(60);
/// QUIC application close codes (beside the transport's own, [`net::CLOSE_SHUTDOWN`] and
/// [`net::CLOSE_REFUSED`]).
const CLOSE_DUPLICATE: u32 = tsunagi_sync::replica::link::CLOSE_DUPLICATE;
const CLOSE_UNPAIRED: u32 = 11;

/// A peer's state, for `tsunagi status` and the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerStatus {
    /// Its device id.
    pub id: String,
    /// Its name, if given at pairing.
    pub name: Option<String>,
    /// Where it is dialled, if anywhere.
    pub addr: Option<String>,
    /// Whether a connection is up now.
    pub connected: bool,
    /// When the two devices last held the same (RFC 3339, JST).
    pub last_sync: Option<String>,
    /// Documents not yet the same on both sides (0 when in sync; only while connected).
    pub behind: usize,
    /// Records received from it on the current (or last) connection.
    pub records_in: u64,
    /// Records sent to it on the current (or last) connection.
    pub records_out: u64,
    /// Things it sent that were refused, on the current (or last) connection.
    pub refused: u64,
    /// The last problem with it (English, for support).
    pub last_error: Option<String>,
}

impl PeerStatus {
    /// A paired device not connected since tsunagid started.
    pub fn not_connected(peer: &Peer) -> Self {
        Self {
            id: peer.id.to_string(),
            name: peer.name.clone(),
            addr: peer.addr.clone(),
            connected: false,
            last_sync: None,
            behind: 0,
            records_in: 0,
            records_out: 0,
            refused: 0,
            last_error: None,
        }
    }
}

/// Where sync stands: this device and its peers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncStatus {
    /// This device's id.
    pub device_id: String,
    /// The address peers reach this device at, when sync listens.
    pub listening: Option<String>,
    /// The paired devices.
    pub peers: Vec<PeerStatus>,
    /// Why sync does not run, for staff (Japanese), if it could not start.
    #[serde(default)]
    pub problem: Option<String>,
}

/// Why sync could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyncStartError {
    /// The list of peers.
    #[error(transparent)]
    Book(#[from] book::BookError),
    /// The endpoint.
    #[error(transparent)]
    Net(#[from] net::NetError),
}

impl SyncStartError {
    /// The message for staff.
    pub fn message_ja(&self) -> String {
        match self {
            SyncStartError::Book(e) => e.message_ja(),
            SyncStartError::Net(e) => format!(
                "端末間同期を開始できません（{e}）。設定の [sync] listen のアドレスとポートを確認してください。"
            ),
        }
    }
}

/// tsunagid's sync: cheap to clone.
#[derive(Clone)]
pub struct SyncService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SyncService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncService").finish_non_exhaustive()
    }
}

struct Inner {
    store: Store,
    data_dir: std::path::PathBuf,
    me: DeviceId,
    endpoint: Endpoint,
    allow: Allowlist,
    /// Paired devices from the configuration (kept when the list in the data directory
    /// changes).
    configured: Vec<Peer>,
    peers: Mutex<Vec<Peer>>,
    states: Mutex<BTreeMap<DeviceId, PeerStatus>>,
    /// Addresses paired devices announced on the local network ([`discovery`]), for
    /// those paired without one.
    discovered: Mutex<HashMap<DeviceId, SocketAddr>>,
    /// The connection kept per peer, and who dialled it.
    live: Mutex<HashMap<DeviceId, (quinn::Connection, DeviceId)>>,
    /// Peers not to be dialled before a time, and the wait that set it (doubling).
    backoff: Mutex<HashMap<DeviceId, (Instant, Duration)>>,
    host: Arc<dyn Host>,
    /// Bumped by every local write and every batch of records received.
    changed: watch::Sender<u64>,
    /// Told when records arrived from a peer (the daemon's event stream re-reads).
    on_received: Arc<dyn Fn() + Send + Sync>,
    stopping: watch::Receiver<bool>,
    tasks: tokio_util::task::TaskTracker,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each critical section replaces whole values; a panic leaves nothing half-changed.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SyncService {
    /// Binds `listen` and starts accepting and dialling the paired devices (the list in
    /// the data directory, plus `configured`).
    pub fn start(
        store: Store,
        data_dir: &std::path::Path,
        listen: SocketAddr,
        configured: Vec<Peer>,
        host: Arc<dyn Host>,
        on_received: Arc<dyn Fn() + Send + Sync>,
        stopping: watch::Receiver<bool>,
    ) -> Result<Self, SyncStartError> {
        let me = store.device().id().clone();
        let peers = merged(book::load(data_dir)?, &configured);
        let allow: Allowlist = peers.iter().map(|p| p.id.clone()).collect();
        let endpoint = Endpoint::bind(listen, store.device(), allow.clone())?;
        let (changed, _) = watch::channel(0);
        let this = Self {
            inner: Arc::new(Inner {
                store,
                data_dir: data_dir.to_path_buf(),
                me,
                endpoint,
                allow,
                configured,
                peers: Mutex::new(peers),
                states: Mutex::default(),
                discovered: Mutex::default(),
                live: Mutex::default(),
                backoff: Mutex::default(),
                host,
                changed,
                on_received,
                stopping,
                tasks: tokio_util::task::TaskTracker::new(),
            }),
        };
        let accepting = this.clone();
        this.inner
            .tasks
            .spawn(async move { accepting.accept().await });
        let dialling = this.clone();
        this.inner.tasks.spawn(async move { dialling.dial().await });
        let maintaining = this.clone();
        this.inner
            .tasks
            .spawn(async move { maintaining.maintain().await });
        Ok(this)
    }

    /// The address peers reach this device at.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.endpoint.local_addr().ok()
    }

    /// Runs `task` as one of this service's own: [`SyncService::stop`] waits for it.
    pub fn track(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.inner.tasks.spawn(task);
    }

    /// Announces this device to `target` and listens there for paired devices
    /// ([`discovery`]), in a task this service owns.
    pub fn start_discovery(&self, target: SocketAddr) {
        let Some(local) = self.local_addr() else {
            return;
        };
        self.inner.tasks.spawn(discovery::run(
            self.clone(),
            self.inner.me.clone(),
            local.port(),
            target,
            self.inner.stopping.clone(),
        ));
    }

    /// A device announced itself at `addr` on the local network: if it is paired without
    /// an address, it is dialled there (its key is checked in the handshake as always).
    pub fn discovered(&self, id: &DeviceId, addr: SocketAddr) {
        let paired_without_addr = lock(&self.inner.peers)
            .iter()
            .any(|p| &p.id == id && p.addr.is_none());
        if !paired_without_addr {
            return;
        }
        let previous = lock(&self.inner.discovered).insert(id.clone(), addr);
        if previous != Some(addr) {
            tracing::info!(peer = %id, %addr, "paired device found on the local network");
        }
    }

    /// Something was written here: every connection pushes what its peer lacks.
    pub fn local_change(&self) {
        self.inner.changed.send_modify(|n| *n += 1);
    }

    /// Where sync stands.
    pub fn status(&self) -> SyncStatus {
        let states = lock(&self.inner.states);
        let live = lock(&self.inner.live);
        let peers = lock(&self.inner.peers)
            .iter()
            .map(|p| {
                let mut s = states
                    .get(&p.id)
                    .cloned()
                    .unwrap_or_else(|| PeerStatus::not_connected(p));
                s.name = p.name.clone();
                s.addr = p.addr.clone();
                s.connected = live.contains_key(&p.id);
                if !s.connected {
                    s.behind = 0;
                }
                s
            })
            .collect();
        SyncStatus {
            device_id: self.inner.me.to_string(),
            listening: self.local_addr().map(|a| a.to_string()),
            peers,
            problem: None,
        }
    }

    /// Pairs `peer` (or updates its name and address): saved, then allowed at once.
    pub fn add_peer(&self, peer: Peer) -> Result<Vec<Peer>, book::BookError> {
        let saved = book::add(&self.inner.data_dir, &self.inner.me, peer)?;
        self.reload_peers(saved);
        self.local_change();
        Ok(lock(&self.inner.peers).clone())
    }

    /// Unpairs `id`: removed from the list, refused from its next handshake, and its
    /// connection closed now. A peer from the configuration stays until the configuration
    /// changes.
    pub fn remove_peer(&self, id: &DeviceId) -> Result<bool, book::BookError> {
        let removed = book::remove(&self.inner.data_dir, id)?;
        let saved = book::load(&self.inner.data_dir)?;
        self.reload_peers(saved);
        Ok(removed)
    }

    fn reload_peers(&self, saved: Vec<Peer>) {
        let peers = merged(saved, &self.inner.configured);
        for id in self.inner.allow.snapshot() {
            if !peers.iter().any(|p| p.id == id) {
                // Under the `live` lock, so no connection registers between the two.
                let mut live = lock(&self.inner.live);
                self.inner.allow.remove(&id);
                if let Some((c, _)) = live.remove(&id) {
                    c.close(CLOSE_UNPAIRED.into(), b"unpaired");
                }
                drop(live);
                tracing::info!(peer = %id, "peer removed; its connections are refused from now on");
            }
        }
        for p in &peers {
            self.inner.allow.add(p.id.clone());
        }
        *lock(&self.inner.peers) = peers;
    }

    /// Closes every connection with a reason and waits for the connection tasks.
    pub async fn stop(&self) {
        self.inner.endpoint.close().await;
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Every [`MAINTAIN_EVERY`]: the month documents sync keeps up to date are compacted
    /// when their changes outweigh their snapshot, and let go of in memory (the next change
    /// loads what it needs).
    async fn maintain(&self) {
        let mut stopping = self.inner.stopping.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(MAINTAIN_EVERY) => {}
                _ = stopping.changed() => return,
            }
            let store = self.inner.store.clone();
            match tokio::task::spawn_blocking(move || store.maintain()).await {
                Ok(Ok(m)) if m.compacted > 0 => {
                    tracing::info!(compacted = m.compacted, "month documents compacted")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "month documents not maintained"),
                Err(e) => tracing::warn!(error = %e, "document maintenance task failed"),
            }
        }
    }

    async fn accept(&self) {
        let mut stopping = self.inner.stopping.clone();
        loop {
            let incoming = tokio::select! {
                i = self.inner.endpoint.accept_incoming() => i,
                _ = stopping.changed() => return,
            };
            let Some(handshaking) = incoming else {
                return;
            };
            // Each handshake in its own task: a peer that stalls its handshake holds up no
            // other.
            let this = self.clone();
            self.inner.tasks.spawn(async move {
                match handshaking.finish().await {
                    Ok(conn) => {
                        let dialler = conn.peer.clone();
                        this.connected(conn, dialler);
                    }
                    // Refused handshakes are logged by the endpoint with the presented id.
                    Err(e) => tracing::debug!(error = %e, "incoming connection failed"),
                }
            });
        }
    }

    /// Dials each peer with an address while it has no connection, backing off while it
    /// cannot be reached.
    async fn dial(&self) {
        let mut stopping = self.inner.stopping.clone();
        loop {
            let due: Vec<(DeviceId, String)> = {
                let live = lock(&self.inner.live);
                let discovered = lock(&self.inner.discovered);
                let next = lock(&self.inner.backoff);
                lock(&self.inner.peers)
                    .iter()
                    .filter(|p| !live.contains_key(&p.id))
                    .filter_map(|p| {
                        p.addr
                            .clone()
                            .or_else(|| discovered.get(&p.id).map(|a| a.to_string()))
                            .map(|a| (p.id.clone(), a))
                    })
                    .filter(|(id, _)| next.get(id).is_none_or(|(at, _)| Instant::now() >= *at))
                    .collect()
            };
            for (id, addr) in due {
                let outcome = tokio::select! {
                    r = self.connect(&id, &addr) => r,
                    _ = stopping.changed() => return,
                };
                match outcome {
                    Ok(conn) => {
                        let me = self.inner.me.clone();
                        self.connected(conn, me);
                    }
                    Err(e) => {
                        let backoff = self.back_off(&id);
                        tracing::debug!(peer = %id, %addr, error = %e, retry_in = ?backoff, "peer not reached");
                        self.note_error(&id, e.to_string());
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stopping.changed() => return,
            }
        }
    }

    /// `id` is not to be dialled for a while (twice as long as last time, up to
    /// [`MAX_BACKOFF`]); returns how long.
    fn back_off(&self, id: &DeviceId) -> Duration {
        let mut next = lock(&self.inner.backoff);
        let backoff = next
            .get(id)
            .map_or(FIRST_BACKOFF, |(_, b)| (*b * 2).min(MAX_BACKOFF));
        next.insert(id.clone(), (Instant::now() + backoff, backoff));
        backoff
    }

    async fn connect(&self, id: &DeviceId, addr: &str) -> Result<PeerConnection, String> {
        let resolved = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| format!("cannot resolve {addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("{addr} has no address"))?;
        tokio::time::timeout(
            Duration::from_secs(10),
            self.inner.endpoint.connect(resolved, id),
        )
        .await
        .map_err(|_| format!("{addr} did not answer"))?
        .map_err(|e| e.to_string())
    }

    /// A verified connection with `conn.peer`, dialled by `dialler`: kept (and run) unless
    /// the two devices already have one that wins.
    fn connected(&self, conn: PeerConnection, dialler: DeviceId) {
        let peer = conn.peer.clone();
        {
            let mut live = lock(&self.inner.live);
            // Unpaired between its handshake and now: refused after all.
            if !self.inner.allow.contains(&peer) {
                conn.connection.close(CLOSE_UNPAIRED.into(), b"unpaired");
                return;
            }
            if let Some((existing, existing_dialler)) = live.get(&peer) {
                if existing.close_reason().is_none() && *existing_dialler <= dialler {
                    conn.connection
                        .close(CLOSE_DUPLICATE.into(), b"already connected");
                    return;
                }
                existing.close(CLOSE_DUPLICATE.into(), b"already connected");
            }
            live.insert(peer.clone(), (conn.connection.clone(), dialler.clone()));
        }
        tracing::info!(peer = %peer, remote = %conn.connection.remote_address(), "peer connected");
        let this = self.clone();
        let initiator = dialler == self.inner.me;
        self.inner.tasks.spawn(async move {
            let connection = conn.connection.clone();
            let observer = this.clone();
            let link = Link {
                store: this.inner.store.clone(),
                changed: this.inner.changed.clone(),
                stopping: this.inner.stopping.clone(),
                observe: Arc::new(move |s: &Session| observer.note_session(s)),
                on_received: this.inner.on_received.clone(),
            };
            let session = Session::new(peer.clone(), this.inner.host.clone());
            let began = Instant::now();
            let outcome = link.run(&conn, initiator, session).await;
            // A session that lasted resets the backoff; one that ended soon after its
            // connection was made extends it, like a dial that failed — however it ended: a
            // peer that closes each session at once closes some of them in order (a close
            // that arrives between messages reads as the end of the session), and sessions
            // are kept up while both sides run, so a short one is never the normal case.
            let failed_soon = began.elapsed() < STEADY;
            if failed_soon {
                this.back_off(&peer);
            } else {
                lock(&this.inner.backoff).remove(&peer);
            }
            {
                let mut live = lock(&this.inner.live);
                if live
                    .get(&peer)
                    .is_some_and(|(c, _)| c.stable_id() == connection.stable_id())
                {
                    live.remove(&peer);
                }
            }
            match outcome {
                Ok(stats) => tracing::info!(peer = %peer, records_in = stats.records_in, records_out = stats.records_out, "peer disconnected"),
                Err(e) => {
                    tracing::warn!(peer = %peer, error = %e, "sync with peer ended");
                    this.note_error(&peer, e.to_string());
                }
            }
        });
    }

    fn note_error(&self, id: &DeviceId, error: String) {
        let mut states = lock(&self.inner.states);
        let s = states.entry(id.clone()).or_insert_with(|| blank(id));
        s.last_error = Some(error);
    }

    fn note_session(&self, session: &Session) {
        let mut states = lock(&self.inner.states);
        let s = states
            .entry(session.peer().clone())
            .or_insert_with(|| blank(session.peer()));
        let stats = session.stats();
        s.behind = session.behind();
        s.records_in = stats.records_in;
        s.records_out = stats.records_out;
        s.refused = stats.refused;
        s.last_error = None;
        if s.behind == 0 {
            s.last_sync = Some(now_jst().to_rfc3339());
        }
    }
}

fn blank(id: &DeviceId) -> PeerStatus {
    PeerStatus::not_connected(&Peer {
        id: id.clone(),
        name: None,
        addr: None,
    })
}

/// The saved list with the configured peers added (a saved entry's name and address win).
fn merged(mut saved: Vec<Peer>, configured: &[Peer]) -> Vec<Peer> {
    for c in configured {
        if !saved.iter().any(|p| p.id == c.id) {
            saved.push(c.clone());
        }
    }
    saved
}

/// Ends a month a paired device ended, if its retention has ended here too (R20, by this
/// device's clock and settings): its open checks are carried over as this device's own
/// retention does.
#[derive(Debug)]
pub struct RetentionHost {
    /// The daemon's ledger.
    pub ledger: crate::ledger::Ledger,
    /// `retention.extra_months`.
    pub extra_months: u32,
}

impl Host for RetentionHost {
    fn purge_month(&self, _store: &Store, month: Month) -> Result<bool, StoreError> {
        let today = now_jst().date_naive();
        if !crate::service::retention_over(month, today, self.extra_months) {
            return Ok(false);
        }
        crate::service::end_month(&self.ledger, month, today).map_err(|e| match e {
            crate::ledger::LedgerError::Store(s) => s,
            other => StoreError::Task(other.to_string()),
        })
    }
}
