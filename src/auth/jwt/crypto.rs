//! Token signatures checked with the fastest library at hand for each
//! algorithm. What a token seen for the first time costs, and what each
//! forged token of a flood costs, is mostly its signature check:
//!
//! - ES256: a table of the issuer's key over RustCrypto's P-256 arithmetic
//!   (`comb`), on every CPU;
//! - ES384: graviola (formally verified assembly) where the CPU has what it
//!   needs, ring elsewhere;
//! - RS256..RS512, PS256..PS512 with a modulus of 2,048 to 8,192 bits: ring;
//! - EdDSA, and RSA keys outside those sizes: RustCrypto.
//!
//! This is jsonwebtoken's process-wide crypto provider; all signing stays
//! with the RustCrypto backend. Figures: docs/performance.md.

use std::sync::OnceLock;

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtVerifier};
use jsonwebtoken::errors::Result;
use jsonwebtoken::signature::{Error, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use ring::signature::{self as rs, RsaPublicKeyComponents, UnparsedPublicKey};

/// Which library checks ES384 signatures (ES256 has its own tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EcBackend {
    /// Needs x86_64 with AES-NI, CLMUL, AVX2, BMI1/2 and ADX, or aarch64
    /// with its AES, SHA-2 and PMULL extensions.
    Graviola,
    Ring,
}

/// Graviola when this CPU runs it, ring otherwise (decided once).
fn ec_backend() -> EcBackend {
    static BACKEND: OnceLock<EcBackend> = OnceLock::new();
    *BACKEND.get_or_init(|| {
        if graviola_runs_here() {
            EcBackend::Graviola
        } else {
            EcBackend::Ring
        }
    })
}

#[cfg(target_arch = "x86_64")]
pub(super) fn graviola_runs_here() -> bool {
    std::is_x86_feature_detected!("aes")
        && std::is_x86_feature_detected!("pclmulqdq")
        && std::is_x86_feature_detected!("ssse3")
        && std::is_x86_feature_detected!("avx")
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("bmi1")
        && std::is_x86_feature_detected!("bmi2")
        && std::is_x86_feature_detected!("adx")
}

#[cfg(target_arch = "aarch64")]
pub(super) fn graviola_runs_here() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("sha2")
        && std::arch::is_aarch64_feature_detected!("pmull")
        && std::arch::is_aarch64_feature_detected!("neon")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) fn graviola_runs_here() -> bool {
    false
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod fast_ec {
    //! ES384 with graviola. Loading a key builds a table of its multiples
    //! (a few µs), so each thread keeps the last key it loaded: an issuer
    //! signs with one key at a time.

    use std::cell::RefCell;
    use std::sync::Arc;

    use graviola::hashing::Sha384;
    use graviola::signing::ecdsa::{VerifyingKey, P384};

    type Last = RefCell<Option<(Box<[u8]>, Arc<VerifyingKey<P384>>)>>;

    thread_local! {
        static LAST: Last = const { RefCell::new(None) };
    }

    pub(in crate::auth::jwt) struct Key(Arc<VerifyingKey<P384>>);

    impl Key {
        pub(super) fn p384(point: &[u8]) -> Option<Self> {
            LAST.with(|cell| {
                if let Some((p, key)) = &*cell.borrow() {
                    if **p == *point {
                        return Some(Key(key.clone()));
                    }
                }
                let key = Arc::new(VerifyingKey::<P384>::from_x962_uncompressed(point).ok()?);
                *cell.borrow_mut() = Some((point.into(), key.clone()));
                Some(Key(key))
            })
        }

        pub(super) fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
            self.0.verify::<Sha384>(&[msg], sig).is_ok()
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod fast_ec {
    pub(in crate::auth::jwt) enum Key {}

    impl Key {
        pub(super) fn p384(_: &[u8]) -> Option<Self> {
            None
        }

        pub(super) fn verify(&self, _: &[u8], _: &[u8]) -> bool {
            match *self {}
        }
    }
}

pub(super) enum Check {
    /// ES256: the issuer's key with its table.
    P256(std::sync::Arc<super::comb::Key>),
    FastEc(fast_ec::Key),
    /// A fixed-length signature and an uncompressed point.
    RingEc(&'static rs::EcdsaVerificationAlgorithm, Box<[u8]>),
    /// The modulus and the exponent.
    RingRsa(&'static rs::RsaParameters, Box<[u8]>, Box<[u8]>),
}

struct Ours {
    alg: Algorithm,
    check: Check,
}

impl Verifier<Vec<u8>> for Ours {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), Error> {
        let ok = match &self.check {
            Check::P256(key) => key.verify(msg, signature),
            Check::FastEc(key) => key.verify(msg, signature),
            Check::RingEc(alg, point) => UnparsedPublicKey::new(*alg, &point[..])
                .verify(msg, signature)
                .is_ok(),
            Check::RingRsa(params, n, e) => RsaPublicKeyComponents {
                n: &n[..],
                e: &e[..],
            }
            .verify(params, msg, signature)
            .is_ok(),
        };
        ok.then_some(()).ok_or_else(Error::new)
    }
}

impl JwtVerifier for Ours {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn rsa_params(alg: Algorithm) -> Option<&'static rs::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &rs::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &rs::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &rs::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &rs::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &rs::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &rs::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// The check for `alg` with `key` that is faster than RustCrypto's, if
/// there is one for this key.
pub(super) fn faster_check(alg: Algorithm, key: &DecodingKey, ec: EcBackend) -> Option<Check> {
    match (key.family(), key.kind()) {
        (AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            let uncompressed = |len: usize| point.len() == len && point[0] == 4;
            match alg {
                Algorithm::ES256 if uncompressed(65) => super::comb::key(point).map(Check::P256),
                Algorithm::ES384 if uncompressed(97) => match ec {
                    EcBackend::Graviola => fast_ec::Key::p384(point).map(Check::FastEc),
                    EcBackend::Ring => Some(Check::RingEc(
                        &rs::ECDSA_P384_SHA384_FIXED,
                        point[..].into(),
                    )),
                },
                _ => None,
            }
        }
        (AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            let params = rsa_params(alg)?;
            let n = strip_zeros(n);
            let bits = n.len() * 8 - n.first()?.leading_zeros() as usize;
            (2048..=8192)
                .contains(&bits)
                .then(|| Check::RingRsa(params, n.into(), strip_zeros(e).into()))
        }
        _ => None,
    }
}

/// An ES256 key's table (from the shared cache of tables, or built now),
/// with the generator's table built too; `None` for any other key.
pub(super) fn es256_table(key: &DecodingKey) -> Option<std::sync::Arc<super::comb::Key>> {
    match faster_check(Algorithm::ES256, key, EcBackend::Ring) {
        Some(Check::P256(table)) => super::comb::generator_ready().then_some(table),
        _ => None,
    }
}

pub(super) fn new_verifier_with(
    alg: &Algorithm,
    key: &DecodingKey,
    ec: EcBackend,
) -> Result<Box<dyn JwtVerifier>> {
    match faster_check(*alg, key, ec) {
        Some(check) => Ok(Box::new(Ours { alg: *alg, check })),
        None => (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key),
    }
}

pub(super) fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    new_verifier_with(alg, key, ec_backend())
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
