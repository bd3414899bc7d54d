//! A virtual My Number card (JPKI) for tests and the demo.
//!
//! * [`pki`]: a test CA standing in for J-LIS, and a disk-cached RSA key pool.
//! * [`card`]: the card profile and the APDU state machine.
//! * [`vpcd`]: serving a card to pcscd through the vpcd driver.
//! * [`harness`]: one shared pcscd for tests.

pub mod card;
pub mod harness;
pub mod pki;
pub mod vpcd;
