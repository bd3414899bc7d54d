//! Tsunagi's store (チェック台帳): qualification checks as signed, sealed events in per-month
//! append-only segment files, indexed by sled and summarised for sync by automerge.
//!
//! - [`device`]: this device's ed25519 identity and its readable id.
//! - [`net`]: QUIC between paired devices, each side pinned to the other's device key.
//! - [`hlc`]: the hybrid logical clock that orders events across devices.
//! - [`event`]: a signed event, its id and its verification; the visit month.
//! - [`replica`]: replication with a paired device: the sync protocol, free of network I/O.
//! - [`seal`]: the AEAD that seals every event under a month key.
//! - [`store`]: the store — segments, group commit, index, documents, month keys,
//!   retention and recovery behind one facade; `sync/README.md` states its contract.
//! - [`vfs`]: the file layer every file the store writes goes through, with a simulated file
//!   system for power-cut and I/O-fault tests.
//!
//! The store knows nothing of what an event means: the daemon defines the payloads, folds
//! them into a check's state, and tells the index what a check's events make of it
//! ([`store::Classifier`]).

pub mod device;
pub mod event;
pub mod hlc;
pub mod net;
pub mod replica;
pub mod seal;
pub mod store;
pub mod vfs;

pub use device::{DeviceId, DeviceKey};
pub use event::{Event, EventId, Month, SignedEvent};
pub use hlc::Timestamp;
pub use store::{SharedDoc, Store, StoreError};
