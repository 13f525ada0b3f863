//! Issuers and their keys: the built-in issuer's keys come from the store,
//! an external issuer's from its JWKS, fetched with a timeout, refreshed
//! periodically, refetched on an unknown `kid` at most once per issuer per
//! 30 s (single-flight), and kept when the JWKS URL fails.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::{comb, crypto, JwtAuth, MAX_JWKS_BYTES, REFETCH_COOLDOWN};
use crate::auth::keys::jwt_algorithm;
use crate::config::Config;
use crate::store::SigningKey;

/// A public key, with what it may be used for.
pub(super) struct VerifyKey {
    pub(super) key: DecodingKey,
    /// Algorithms this key may verify: its JWK `alg` if pinned, else its family.
    pub(super) algorithms: Vec<Algorithm>,
    /// An ES256 key's table, built when the key is published rather than
    /// at its first token, and kept as long as the key is.
    pub(super) es256: Option<Arc<comb::Key>>,
}

impl VerifyKey {
    /// An ES256 key gets its table now while fewer than
    /// [`PREPARED_PER_SET`] keys of its set have one (`prepared` counts
    /// them).
    fn new(key: DecodingKey, algorithms: Vec<Algorithm>, prepared: &mut usize) -> VerifyKey {
        let es256 = (*prepared < PREPARED_PER_SET && algorithms.contains(&Algorithm::ES256))
            .then(|| crypto::es256_table(&key))
            .flatten();
        *prepared += usize::from(es256.is_some());
        VerifyKey {
            key,
            algorithms,
            es256,
        }
    }

    /// Checks `signature` of `signing_input` with this key, for `alg`.
    pub(super) fn verify(&self, alg: Algorithm, signing_input: &[u8], signature: &[u8]) -> bool {
        match &self.es256 {
            Some(table) if alg == Algorithm::ES256 => table.verify(signing_input, signature),
            _ => super::verify_signature(alg, &self.key, signing_input, signature),
        }
    }
}

/// ES256 keys of one key set whose tables are built when it is published
/// (151 KB each). Keys past these get theirs at their first token, from
/// the shared cache of tables.
pub(super) const PREPARED_PER_SET: usize = 16;

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

#[derive(Debug)]
pub(super) enum Source {
    BuiltIn,
    External {
        name: String,
        jwks_url: String,
        client_claim: String,
    },
}

#[derive(Debug)]
pub struct Issuer {
    pub(super) source: Source,
    pub(super) audiences: Vec<String>,
    pub(super) algorithms: Vec<Algorithm>,
    pub(super) leeway: u64,
    pub(super) keys: ArcSwap<HashMap<String, Arc<VerifyKey>>>,
    /// When the JWKS was last fetched because of an unknown kid.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Issuer {
    pub fn label(&self) -> &str {
        match &self.source {
            Source::BuiltIn => "builtin",
            Source::External { name, .. } => name,
        }
    }

    /// The claim that names the client, for an external issuer (the
    /// built-in issuer's is `sub`, the client id).
    pub(super) fn client_claim(&self) -> Option<&str> {
        match &self.source {
            Source::BuiltIn => None,
            Source::External { client_claim, .. } => Some(client_claim),
        }
    }
}

/// The issuers of a configuration, by `iss`, with the client claims of the
/// external ones (each name once): a token's claims are read before its
/// issuer is known, keeping every one of them.
#[derive(Default)]
pub(super) struct Issuers {
    pub(super) by_iss: HashMap<String, Arc<Issuer>>,
    pub(super) client_claims: Vec<String>,
}

/// Key families; a JWK of one family never verifies another's algorithm.
fn family_algorithms(jwk: &jsonwebtoken::jwk::Jwk) -> Vec<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => vec![],
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => vec![],
        },
        // symmetric keys (and anything newer) are never taken from a key set
        _ => vec![],
    }
}

/// Usable verification keys of a JWK set, by kid. Keys for encryption,
/// symmetric keys, keys without kid and keys that do not parse are skipped.
pub(super) fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<VerifyKey>>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("not a JWK set: {e}"))?;
    let mut out = HashMap::new();
    let mut prepared = 0;
    for raw in set.keys {
        if raw
            .get("use")
            .and_then(|u| u.as_str())
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        if raw.get("kty").and_then(|k| k.as_str()) == Some("oct") {
            continue;
        }
        let Some(kid) = raw.get("kid").and_then(|k| k.as_str()).map(str::to_string) else {
            continue;
        };
        let Ok(jwk) = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(raw.clone()) else {
            continue;
        };
        let mut algorithms = family_algorithms(&jwk);
        if let Some(pinned) = raw.get("alg").and_then(|a| a.as_str()) {
            algorithms.retain(|a| jwt_algorithm(pinned) == Some(*a));
        }
        if algorithms.is_empty() {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        out.insert(
            kid,
            Arc::new(VerifyKey::new(key, algorithms, &mut prepared)),
        );
    }
    Ok(out)
}

impl JwtAuth {
    /// (Re)build the issuers of a configuration; keys of issuers that stay
    /// are kept.
    pub fn configure(&self, config: &Config) {
        let old = &self.issuers.load_full().by_iss;
        let mut issuers = HashMap::new();
        let t = &config.auth.tokens;
        let builtin = Arc::new(Issuer {
            source: Source::BuiltIn,
            audiences: vec![t.audience.clone()],
            algorithms: vec![Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256],
            leeway: t.leeway.as_secs(),
            keys: ArcSwap::from_pointee(
                old.get(&t.issuer)
                    .map(|i| (**i.keys.load()).clone())
                    .unwrap_or_default(),
            ),
            last_refetch: tokio::sync::Mutex::new(None),
        });
        issuers.insert(t.issuer.clone(), builtin.clone());
        for e in &config.auth.issuers {
            let algorithms = e
                .algorithms
                .iter()
                .filter_map(|a| jwt_algorithm(a.as_str()))
                .collect();
            issuers.insert(
                e.issuer.clone(),
                Arc::new(Issuer {
                    source: Source::External {
                        name: e.name.clone(),
                        jwks_url: e.jwks_url.clone(),
                        client_claim: e.client_claim.clone(),
                    },
                    audiences: e.audiences.clone(),
                    algorithms,
                    leeway: e.leeway.as_secs(),
                    keys: ArcSwap::from_pointee(
                        old.get(&e.issuer)
                            .map(|i| (**i.keys.load()).clone())
                            .unwrap_or_default(),
                    ),
                    last_refetch: tokio::sync::Mutex::new(None),
                }),
            );
        }
        let mut client_claims: Vec<String> = issuers
            .values()
            .filter_map(|i| i.client_claim().map(str::to_string))
            .collect();
        client_claims.sort_unstable();
        client_claims.dedup();
        self.builtin.store(Arc::new(Some(builtin)));
        self.issuers.store(Arc::new(Issuers {
            by_iss: issuers,
            client_claims,
        }));
        self.keys_changed();
        self.keep_claims(config.routes.iter().any(|r| !r.forward_claims.is_empty()));
    }

    /// Publish the built-in issuer's keys (from the store).
    pub fn set_builtin_keys(&self, keys: &[SigningKey]) {
        let Some(builtin) = self.builtin.load_full().as_ref().clone() else {
            return;
        };
        let mut map = HashMap::new();
        let mut prepared = 0;
        for k in keys {
            let Ok(jwk) = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(k.public_jwk.clone())
            else {
                continue;
            };
            let (Ok(key), Some(alg)) = (DecodingKey::from_jwk(&jwk), jwt_algorithm(&k.algorithm))
            else {
                continue;
            };
            map.insert(
                k.kid.clone(),
                Arc::new(VerifyKey::new(key, vec![alg], &mut prepared)),
            );
        }
        builtin.keys.store(Arc::new(map));
        self.keys_changed();
    }

    /// Fetch one external issuer's JWKS; on failure its keys stay as they were.
    pub async fn refresh(&self, issuer: &Issuer) -> bool {
        let Source::External { jwks_url, name, .. } = &issuer.source else {
            return true;
        };
        let result = self.fetch_jwks(jwks_url).await;
        let ok = match result {
            Ok(keys) if !keys.is_empty() => {
                issuer.keys.store(Arc::new(keys));
                self.keys_changed();
                true
            }
            Ok(_) => {
                tracing::warn!(issuer = %name, "JWKS has no usable keys; keeping the previous ones");
                false
            }
            Err(e) => {
                tracing::warn!(issuer = %name, error = %e, "JWKS refresh failed; keeping the previous keys");
                false
            }
        };
        self.metrics.jwks_refresh(name, ok);
        ok
    }

    /// Refresh every external issuer (the periodic task).
    pub async fn refresh_all(&self) {
        let issuers: Vec<Arc<Issuer>> = self.issuers.load().by_iss.values().cloned().collect();
        for i in issuers {
            if matches!(i.source, Source::External { .. }) {
                self.refresh(&i).await;
            }
        }
    }

    async fn fetch_jwks(&self, url: &str) -> Result<HashMap<String, Arc<VerifyKey>>, String> {
        let resp = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_JWKS_BYTES {
            return Err("JWKS too large".into());
        }
        // ES256 tables take about a millisecond each: built beside the
        // threads that serve requests
        tokio::task::spawn_blocking(move || parse_jwks(&body))
            .await
            .map_err(|e| format!("reading the JWKS failed: {e}"))?
    }

    /// An unknown kid: refetch once per cooldown, one fetch at a time.
    pub(super) async fn refetch_for_kid(
        &self,
        issuer: &Issuer,
        kid: &str,
    ) -> Option<Arc<VerifyKey>> {
        if !matches!(issuer.source, Source::External { .. }) {
            return None;
        }
        let mut last = issuer.last_refetch.lock().await;
        if let Some(k) = issuer.keys.load().get(kid) {
            return Some(k.clone());
        }
        if last.is_some_and(|t| t.elapsed() < REFETCH_COOLDOWN) {
            return None;
        }
        *last = Some(Instant::now());
        self.refresh(issuer).await;
        issuer.keys.load().get(kid).cloned()
    }
}
