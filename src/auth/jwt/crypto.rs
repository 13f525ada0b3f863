//! ES256 signatures checked with ring, the library rustls already builds
//! on for TLS: a P-256 verification costs a fraction of the pure-Rust
//! backend's, which is what a token seen for the first time costs, and
//! what each forged token of a flood costs. It is installed as
//! jsonwebtoken's process-wide crypto provider; every other algorithm, and
//! all signing, stays with the RustCrypto backend.

use std::sync::OnceLock;

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtVerifier};
use jsonwebtoken::errors::Result;
use jsonwebtoken::signature::{Error, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

/// An uncompressed P-256 point (0x04 || x || y), as JWKs and the built-in
/// issuer's keys give it.
struct Es256([u8; 65]);

impl Verifier<Vec<u8>> for Es256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), Error> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.0[..])
            .verify(msg, signature)
            .map_err(|_| Error::new())
    }
}

impl JwtVerifier for Es256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

/// ring for ES256 with an uncompressed point; RustCrypto for the rest
/// (including any other encoding of an EC key, and its errors).
pub(super) fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *alg == Algorithm::ES256 && key.family() == AlgorithmFamily::Ec {
        if let Some(point) = key
            .try_get_as_bytes()
            .ok()
            .and_then(|b| <[u8; 65]>::try_from(b).ok())
            .filter(|p| p[0] == 4)
        {
            return Ok(Box::new(Es256(point)));
        }
    }
    (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key)
}

static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();

/// Makes this the provider of `jsonwebtoken::decode` for the process.
/// Call it before anything else uses jsonwebtoken: the first use fixes the
/// provider. Returns whether it is in place (true on every later call too).
pub fn install_crypto_provider() -> bool {
    let ours = PROVIDER.get_or_init(|| CryptoProvider {
        signer_factory: rust_crypto::DEFAULT_PROVIDER.signer_factory,
        verifier_factory: new_verifier,
        key_utils: rust_crypto::DEFAULT_PROVIDER.key_utils.clone(),
    });
    match ours.install_default() {
        Ok(()) => true,
        Err(current) => std::ptr::eq(current, ours),
    }
}
