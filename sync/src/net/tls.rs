//! The TLS side of the transport: device keys as RFC 7250 raw public keys, the signer that
//! signs handshakes with the device key, and the one verifier both ends use.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ed25519_dalek::{Signer as _, SigningKey as DalekKey, VerifyingKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureAlgorithm, SignatureScheme};

use super::{Allowlist, NetError, Refusal};
use crate::device::DeviceId;

/// The ALPN protocol id of Tsunagi's sync protocol; a peer that offers nothing else is refused.
pub const ALPN: &[u8] = b"tsunagi/1";

/// The DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410 §4): SEQUENCE (42 bytes) {
/// SEQUENCE (5) { OID 1.3.101.112 }, BIT STRING (33, no unused bits) }, followed by the
/// 32 key bytes. The encoding is fixed for ed25519, so building and parsing it by hand is
/// exact and saves a DER crate.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The SPKI DER of a device's public key: what goes on the wire as its raw public key.
pub(crate) fn spki_of(key: &VerifyingKey) -> Vec<u8> {
    let mut der = Vec::with_capacity(44);
    der.extend_from_slice(&ED25519_SPKI_PREFIX);
    der.extend_from_slice(key.as_bytes());
    der
}

/// The ed25519 key in an SPKI DER, if that is exactly what it is.
pub(crate) fn key_of_spki(der: &[u8]) -> Option<VerifyingKey> {
    let raw = der.strip_prefix(&ED25519_SPKI_PREFIX)?;
    let raw: &[u8; 32] = raw.try_into().ok()?;
    VerifyingKey::from_bytes(raw).ok()
}

/// Signs TLS 1.3 handshakes (CertificateVerify) with the device key, ed25519 only.
///
/// The key stays an ed25519-dalek key: no PKCS#8 export, no second copy in ring.
pub(crate) struct DeviceSigner(DalekKey);

impl DeviceSigner {
    pub(crate) fn new(key: DalekKey) -> Self {
        Self(key)
    }
}

impl fmt::Debug for DeviceSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is redacted; the id is what a reader needs.
        let id = DeviceId::of(&self.0.verifying_key());
        f.debug_struct("DeviceSigner")
            .field("device", &id)
            .finish_non_exhaustive()
    }
}

impl rustls::sign::SigningKey for DeviceSigner {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ED25519)
            .then(|| Box::new(Ed25519Signer(self.0.clone())) as Box<dyn rustls::sign::Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(spki_of(
            &self.0.verifying_key(),
        )))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED25519
    }
}

struct Ed25519Signer(DalekKey);

impl fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519Signer").finish_non_exhaustive()
    }
}

impl rustls::sign::Signer for Ed25519Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        Ok(self.0.sign(message).to_bytes().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// What a device presents in its handshakes: its SPKI and a signer for it.
pub(crate) fn certified_key(key: &DalekKey) -> Arc<CertifiedKey> {
    Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(spki_of(&key.verifying_key()))],
        Arc::new(DeviceSigner::new(key.clone())),
    ))
}

/// The ring provider, alone: one crypto library in the build.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where a verifier records why it refused a peer, so the caller that started the handshake
/// can return a typed error (quinn reports a TLS failure only as an alert and a string).
#[derive(Debug, Clone, Default)]
pub(crate) struct RefusalSlot(Arc<Mutex<Option<Refused>>>);

/// A refusal: the presented key's device (if the key parsed) and why.
pub(crate) type Refused = (Option<DeviceId>, Refusal);

impl RefusalSlot {
    fn set(&self, peer: Option<DeviceId>, refusal: Refusal) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // The first refusal is the cause; later ones follow from it.
        slot.get_or_insert((peer, refusal));
    }

    pub(crate) fn take(&self) -> Option<Refused> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The one verifier, for both ends of a handshake (iroh's pattern, plus the allowlist).
///
/// It accepts a peer if and only if:
/// 1. it presented exactly one raw public key, an ed25519 SPKI (no chain, no certificate);
/// 2. that key's device id is on the allowlist *now* (read at every handshake);
/// 3. as a client, that id is also the one we dialled (`expected`);
/// 4. the TLS 1.3 CertificateVerify signature over the transcript verifies under that key.
///
/// Step 4 is what proves possession of the key: the SPKI alone is public, and anyone who
/// has once seen a device's handshake can present it.
#[derive(Debug)]
pub(crate) struct PeerVerifier {
    allow: Allowlist,
    expected: Option<DeviceId>,
    remote: SocketAddr,
    slot: RefusalSlot,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    pub(crate) fn new(
        allow: Allowlist,
        expected: Option<DeviceId>,
        remote: SocketAddr,
        slot: RefusalSlot,
        provider: &CryptoProvider,
    ) -> Self {
        Self {
            allow,
            expected,
            remote,
            slot,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    fn refuse(&self, peer: Option<DeviceId>, refusal: Refusal) -> rustls::Error {
        match &peer {
            Some(id) => {
                tracing::warn!(device = %id, addr = %self.remote, reason = %refusal, "refused peer")
            }
            None => tracing::warn!(addr = %self.remote, reason = %refusal, "refused peer"),
        }
        let error = match refusal {
            Refusal::BadSignature => {
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
            }
            Refusal::NotEd25519Key | Refusal::Chain => {
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
            }
            _ => rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ),
        };
        self.slot.set(peer, refusal);
        error
    }

    /// Steps 1 to 3.
    fn check_key(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let Some(key) = key_of_spki(end_entity) else {
            return Err(self.refuse(None, Refusal::NotEd25519Key));
        };
        let id = DeviceId::of(&key);
        if !intermediates.is_empty() {
            return Err(self.refuse(Some(id), Refusal::Chain));
        }
        if !self.allow.contains(&id) {
            return Err(self.refuse(Some(id), Refusal::Unpaired));
        }
        if let Some(expected) = &self.expected {
            if *expected != id {
                return Err(self.refuse(
                    Some(id),
                    Refusal::NotExpected {
                        expected: expected.clone(),
                    },
                ));
            }
        }
        Ok(())
    }

    /// Step 4.
    fn check_signature(
        &self,
        message: &[u8],
        spki: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let peer = key_of_spki(spki).map(|k| DeviceId::of(&k));
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(self.refuse(peer, Refusal::BadSignature));
        }
        let spki = SubjectPublicKeyInfoDer::from(spki.as_ref());
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
            .map_err(|_| self.refuse(peer, Refusal::BadSignature))
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The server name is a constant (see `SERVER_NAME`): the peer is pinned by key.
        self.check_key(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Unreachable with a TLS 1.3-only config; refuse rather than trust that.
        Err(rustls::PeerIncompatible::Tls12NotOffered.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No CA: the client presents its one key whatever we hint.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check_key(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::PeerIncompatible::Tls12NotOffered.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The server name a client sends. Peers are pinned by key, not by name, so it is a constant.
pub(crate) const SERVER_NAME: &str = "tsunagi";

fn config_error(e: impl fmt::Display) -> NetError {
    NetError::Config {
        reason: e.to_string(),
    }
}

/// The TLS config for one outgoing handshake.
pub(crate) fn client_config(
    provider: &Arc<CryptoProvider>,
    presented: &Arc<CertifiedKey>,
    verifier: PeerVerifier,
) -> Result<quinn::crypto::rustls::QuicClientConfig, NetError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(
            presented.clone(),
        )));
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption and no 0-RTT: a resumed session skips the key check, and a peer removed
    // from the allowlist must be refused at its very next handshake.
    tls.resumption = Resumption::disabled();
    tls.enable_early_data = false;
    quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(config_error)
}

/// The TLS config for incoming handshakes.
pub(crate) fn server_config(
    provider: &Arc<CryptoProvider>,
    presented: &Arc<CertifiedKey>,
    verifier: PeerVerifier,
) -> Result<quinn::crypto::rustls::QuicServerConfig, NetError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(
            presented.clone(),
        )));
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // See `client_config`: every handshake is a full one.
    tls.session_storage = Arc::new(NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    tls.max_early_data_size = 0;
    quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(config_error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn spki_round_trips_and_rejects_other_shapes() {
        let key = DalekKey::generate(&mut rand::rngs::OsRng).verifying_key();
        let der = spki_of(&key);
        assert_eq!(der.len(), 44);
        assert_eq!(key_of_spki(&der), Some(key));
        assert_eq!(key_of_spki(&der[..43]), None);
        let mut longer = der.clone();
        longer.push(0);
        assert_eq!(key_of_spki(&longer), None);
        let mut other_oid = der;
        other_oid[8] = 0x71; // 1.3.101.113 is ed448
        assert_eq!(key_of_spki(&other_oid), None);
    }
}
