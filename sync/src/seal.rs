//! Sealing (封緘): every event is stored encrypted under a month key (see `store::keys`),
//! with associated data that binds it to its month, key and id.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const NONCE_LEN: usize = 24;

/// The sealed bytes do not open with the key (tampered, truncated, or another key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sealed value does not open (damaged or not ours)")]
pub struct SealError;

/// Seals `plain` under `key`; `aad` binds the value to its place.
pub fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    // Encryption with a valid key and nonce length cannot fail.
    let sealed = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens what [`seal`] produced.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(SealError);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
        .map_err(|_| SealError)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seal_open_and_refuse_tampering() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"id", b"hello");
        assert_eq!(open(&key, b"id", &sealed).unwrap(), b"hello");
        assert!(open(&key, b"other-id", &sealed).is_err());
        assert!(open(&[8u8; 32], b"id", &sealed).is_err());
        assert!(open(&key, b"id", &sealed[..10]).is_err());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(open(&key, b"id", &flipped).is_err());
    }
}
