//! Tsunagi's store (チェック台帳): qualification checks as signed, sealed events in per-month
//! automerge documents, persisted in sled.
//!
//! - [`device`]: this device's ed25519 identity and its readable id.
//! - [`hlc`]: the hybrid logical clock that orders events across devices.
//! - [`event`]: a signed event and its verification.
//! - [`seal`]: per-month keys and the AEAD that seals every event; deleting a month's key is
//!   what makes its deletion real.
//! - [`store`]: the month documents in sled, durable appends, compaction, retention, versions.
//! - [`wal`]: the capture log that makes an acknowledged capture durable with one fsync.
//!
//! The store knows nothing of what an event means: the daemon defines the payloads and folds
//! them into a check's state.

pub mod device;
pub mod event;
pub mod hlc;
pub mod seal;
pub mod store;
pub mod vfs;
pub mod wal;

pub use device::{DeviceId, DeviceKey};
pub use event::{Event, EventId, Month, SignedEvent};
pub use hlc::Timestamp;
pub use store::{Store, StoreError};
