//! oqs-sim: a simulator of the online qualification system (オンライン資格確認等システム).
//!
//! It answers the Web API of the real system (login, search by insurance data) plus Tsunagi's
//! own card search, exactly as `/work/briefs/wire.md` and `oqs-messages.md` describe them,
//! from a fictional population with qualification histories. Tests and the demo start it
//! in-process with [`Simulator::start`] or as the `oqs-sim` binary.
//!
//! * [`model`]: people, qualifications and the pure as-of-date lookups (OQSCD006).
//! * [`registry`]: the card certificate registry and the card-operation check.
//! * [`message`]: serde types of the JSON envelope.
//! * [`codes`]: the synthetic result codes, as settings ([`SimCodes`]).
//! * [`scenario`]: the standard deterministic scenario with virtual cards.
//! * [`server`]: routes and listener loops.
//! * [`faults`]: runtime fault injection (refuse, delay, 5xx, malformed or huge, 429, system
//!   error).
//!
//! Where the reference leaves a choice, the simulator takes the reference's side: the
//! certificate grace (R3) is judged on the visit date asked about, not on the simulator's
//! clock; the consent flag the reference marks required is required; InsuredCardValidDate is
//! the card's own start; InsuredPartialContributionRatio is sent only for 後期高齢者; every
//! message-level error echoes the header (date, institution, ReferenceClassification).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod codes;
pub mod faults;
pub mod message;
pub mod model;
pub mod registry;
pub mod scenario;
pub mod server;

pub use codes::SimCodes;
pub use faults::{FaultMode, Faults, MalformedKind};

use model::Population;
use registry::CertRegistry;
use server::Shared;

/// Everything a simulator instance needs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The insured population.
    pub population: Population,
    /// Trusted CA and card records.
    pub registry: CertRegistry,
    /// Registered 10-digit institution codes (login and searches).
    pub institutions: Vec<String>,
    /// Main listener address (default `127.0.0.1:0`, any free port).
    pub bind: SocketAddr,
    /// Admin listener address, if wanted.
    pub admin_bind: Option<SocketAddr>,
    /// Fixed date for the simulator's clock (else today in JST).
    pub today: Option<NaiveDate>,
    /// Lifetime of an idToken (30 minutes by default).
    pub token_lifetime: Duration,
    /// The result codes answered (default: the reference's synthetic catalogue).
    pub codes: SimCodes,
}

impl SimConfig {
    /// A config with defaults for the addresses, clock and token lifetime.
    pub fn new(population: Population, registry: CertRegistry, institutions: Vec<String>) -> Self {
        Self {
            population,
            registry,
            institutions,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_bind: None,
            today: None,
            token_lifetime: Duration::from_secs(30 * 60),
            codes: SimCodes::default(),
        }
    }
}

/// Starting the simulator failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A listener could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// The simulator.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Binds the listeners and starts serving. Not cancel-safe only in the sense that a
    /// cancelled call drops whatever it had bound; nothing leaks.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| SimError::Bind { addr, source })
        };
        let main = bind(config.bind).await?;
        let addr = main.local_addr().map_err(|source| SimError::Bind {
            addr: config.bind,
            source,
        })?;
        let admin = match config.admin_bind {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let admin_addr = match &admin {
            Some(l) => Some(l.local_addr().map_err(|source| SimError::Bind {
                addr: config.bind,
                source,
            })?),
            None => None,
        };
        let faults = Faults::new();
        faults.attach(addr);
        let shared = Arc::new(Shared {
            population: config.population,
            registry: config.registry,
            institutions: config.institutions,
            today: config.today,
            token_lifetime: config.token_lifetime,
            codes: config.codes,
            tokens: Mutex::new(Default::default()),
            faults: faults.clone(),
            requests: AtomicU64::new(0),
            logins: AtomicU64::new(0),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(server::run_main(
            Some(main),
            addr,
            server::main_router(shared.clone()),
            faults.clone(),
            stop_rx.clone(),
        ))];
        if let Some(l) = admin {
            let router = server::admin_router(faults.clone());
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(l, router).with_graceful_shutdown(stop).await {
                    tracing::warn!(error = %e, "admin listener failed");
                }
            }));
        }
        tracing::info!(%addr, admin = ?admin_addr, "oqs-sim listening");
        Ok(SimHandle {
            addr,
            admin_addr,
            faults,
            shared,
            stop: stop_tx,
            tasks,
        })
    }
}

/// A running simulator. Dropping it without [`SimHandle::shutdown`] leaves the tasks running
/// until the runtime ends.
pub struct SimHandle {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    faults: Faults,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .field("admin_addr", &self.admin_addr)
            .field("mode", &self.faults.mode())
            .field("requests", &self.request_count())
            .field("logins", &self.login_count())
            .finish()
    }
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The admin base URL, if an admin listener runs.
    pub fn admin_url(&self) -> Option<String> {
        self.admin_addr.map(|a| format!("http://{a}"))
    }

    /// The main listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fault switches.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    /// Searches answered so far (both search routes, faulted ones included).
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Logins received so far (refused ones included), counted on arrival like
    /// [`SimHandle::request_count`]: together they are every request the main listener served.
    pub fn login_count(&self) -> u64 {
        self.shared.logins.load(Ordering::Relaxed)
    }

    /// Stops the listeners and waits for the tasks. Cancel-safe: the stop signal is sent
    /// before the first await.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
