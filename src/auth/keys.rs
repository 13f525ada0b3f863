//! Token-signing key material for the built-in issuer: generated on first
//! start and kept in the store so every node signs and verifies alike.
//! Private keys are PKCS#8 PEM and never leave the store and this module;
//! the public half is a JWK.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use serde_json::{json, Value};

use crate::config::SigningAlgorithm;
use crate::store::{now, SigningKey};

#[derive(Debug, thiserror::Error)]
#[error("cannot generate a signing key: {0}")]
pub struct KeyGenError(String);

pub fn algorithm_name(alg: SigningAlgorithm) -> &'static str {
    match alg {
        SigningAlgorithm::Es256 => "ES256",
        SigningAlgorithm::EdDsa => "EdDSA",
        SigningAlgorithm::Rs256 => "RS256",
    }
}

/// A new key pair: private PKCS#8 PEM and public JWK (with `kid`, `alg`, `use`).
pub fn generate(alg: SigningAlgorithm) -> Result<SigningKey, KeyGenError> {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let kid = crate::secrets::new_id("sig");
    let (private_pem, mut jwk) = match alg {
        SigningAlgorithm::Es256 => {
            let sk = p256::ecdsa::SigningKey::random(&mut OsRng);
            let pem = sk
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyGenError(e.to_string()))?;
            let point = sk.verifying_key().to_encoded_point(false);
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                return Err(KeyGenError("P-256 point without coordinates".into()));
            };
            (
                pem.to_string(),
                json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}),
            )
        }
        SigningAlgorithm::EdDsa => {
            let sk = ed25519_dalek::SigningKey::generate(&mut OsRng);
            let pem = sk
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyGenError(e.to_string()))?;
            let x = sk.verifying_key().to_bytes();
            (
                pem.to_string(),
                json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(x)}),
            )
        }
        SigningAlgorithm::Rs256 => {
            use rsa::traits::PublicKeyParts;
            let sk = rsa::RsaPrivateKey::new(&mut OsRng, 2048)
                .map_err(|e| KeyGenError(e.to_string()))?;
            let pem = sk
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyGenError(e.to_string()))?;
            let n = sk.n().to_bytes_be();
            let e = sk.e().to_bytes_be();
            (
                pem.to_string(),
                json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)}),
            )
        }
    };
    if let Value::Object(m) = &mut jwk {
        m.insert("kid".into(), json!(kid));
        m.insert("alg".into(), json!(algorithm_name(alg)));
        m.insert("use".into(), json!("sig"));
    }
    Ok(SigningKey {
        kid,
        algorithm: algorithm_name(alg).to_string(),
        private_pem,
        public_jwk: jwk,
        created_at: now(),
        retired_at: None,
    })
}

/// The encoding key for signing with a stored key.
pub fn encoding_key(
    key: &SigningKey,
) -> Result<jsonwebtoken::EncodingKey, jsonwebtoken::errors::Error> {
    let pem = key.private_pem.as_bytes();
    match key.algorithm.as_str() {
        "ES256" => jsonwebtoken::EncodingKey::from_ec_pem(pem),
        "EdDSA" => jsonwebtoken::EncodingKey::from_ed_pem(pem),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(pem),
    }
}

/// A private key parsed once, ready to sign JWS compact tokens: parsing
/// PKCS#8 (and, for RSA, its precomputation) on every token costs more than
/// the signature itself.
pub enum Signer {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
    Rs256(rsa::pkcs1v15::SigningKey<sha2::Sha256>),
}

impl Signer {
    pub fn load(key: &SigningKey) -> Result<Self, KeyGenError> {
        use p256::pkcs8::DecodePrivateKey;
        let pem = key.private_pem.as_str();
        let err = |e: &dyn std::fmt::Display| KeyGenError(format!("key {}: {e}", key.kid));
        Ok(match key.algorithm.as_str() {
            "ES256" => {
                Signer::Es256(p256::ecdsa::SigningKey::from_pkcs8_pem(pem).map_err(|e| err(&e))?)
            }
            "EdDSA" => {
                Signer::EdDsa(ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|e| err(&e))?)
            }
            "RS256" => {
                let sk = rsa::RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| err(&e))?;
                Signer::Rs256(rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(sk))
            }
            other => return Err(KeyGenError(format!("unsupported algorithm {other}"))),
        })
    }

    /// `header.claims.signature`, base64url without padding.
    pub fn sign(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        use rsa::signature::{SignatureEncoding, Signer as _};
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig: Vec<u8> = match self {
            Signer::Es256(k) => {
                let s: p256::ecdsa::Signature = k.sign(input.as_bytes());
                s.to_bytes().to_vec()
            }
            Signer::EdDsa(k) => k.sign(input.as_bytes()).to_bytes().to_vec(),
            Signer::Rs256(k) => k.sign(input.as_bytes()).to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

pub fn jwt_algorithm(name: &str) -> Option<jsonwebtoken::Algorithm> {
    use jsonwebtoken::Algorithm::*;
    Some(match name {
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_signer_agrees_with_jsonwebtoken() {
        for alg in [
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Rs256,
        ] {
            let key = generate(alg).unwrap();
            let signer = Signer::load(&key).unwrap();
            let header = json!({"alg": key.algorithm, "kid": key.kid, "typ": "at+jwt"});
            let claims = json!({"sub": "x", "exp": now() + 60, "aud": "a"});
            let token = signer.sign(&header, &claims);
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(key.public_jwk.clone()).unwrap();
            let dec = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let mut v = jsonwebtoken::Validation::new(jwt_algorithm(&key.algorithm).unwrap());
            v.set_audience(&["a"]);
            assert!(
                jsonwebtoken::decode::<Value>(&token, &dec, &v).is_ok(),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn generated_keys_sign_and_verify() {
        for alg in [
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
            SigningAlgorithm::Rs256,
        ] {
            let key = generate(alg).unwrap();
            assert!(
                key.public_jwk.get("d").is_none(),
                "no private part in the JWK"
            );
            let enc = encoding_key(&key).unwrap();
            let a = jwt_algorithm(&key.algorithm).unwrap();
            let mut header = jsonwebtoken::Header::new(a);
            header.kid = Some(key.kid.clone());
            let claims = json!({"sub": "x", "exp": now() + 60, "iss": "i", "aud": "a"});
            let token = jsonwebtoken::encode(&header, &claims, &enc).unwrap();
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(key.public_jwk.clone()).unwrap();
            let dec = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let mut v = jsonwebtoken::Validation::new(a);
            v.set_audience(&["a"]);
            assert!(
                jsonwebtoken::decode::<Value>(&token, &dec, &v).is_ok(),
                "{alg:?}"
            );
        }
    }
}
