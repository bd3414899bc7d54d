//! Tsunagi (つなぎ): offline-first My Number card qualification checks for Japanese clinics.
//!
//! The crate holds the daemon's parts and the `tsunagi` CLI:
//! - [`card`]: PC/SC and the JPKI application: read the user-authentication certificate,
//!   verify the PIN, have the card sign a challenge. Never touches the individual number.
//! - [`oqs`]: the client of the qualification system (オンライン資格確認等システム), speaking
//!   its JSON message schema, and the classification of every answer.
//! - [`check`]: one qualification check from card to answer.
//! - [`rules`]: the ministry's rules as pure functions (the date is always an argument).
//! - [`report`]: the usage-rate report (マイナ保険証利用率) beside the national figures.
//! - [`cli`]: the staff-facing commands.
//!
//! I/O lives at the edges (`card`, `oqs`, the CLI); `rules` and the answer classification are
//! pure and tested with tables.

pub mod api;
pub mod card;
pub mod check;
pub mod cli;
pub mod domain;
pub mod facility;
pub mod folders;
pub mod ledger;
pub mod ops;
pub mod oqs;
pub mod peer;
pub mod plugin;
pub mod reconcile;
pub mod report;
pub mod rules;
pub mod service;
pub mod speech;
pub mod view;
