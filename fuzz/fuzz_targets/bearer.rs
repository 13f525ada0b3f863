//! Bearer tokens through the gateway's own verification, as presented on a
//! request. Two kinds of input: raw bytes as a token (nothing may pass), and
//! a header and claims of the fuzzer's choosing signed with the built-in
//! issuer's real key, so that everything after the signature is exercised:
//! a token that passes must carry the issuer, the audience and a live `exp`.
#![no_main]

use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;
use tollgate::auth::jwt::JwtAuth;
use tollgate::config::SigningAlgorithm;

struct Fixture {
    rt: tokio::runtime::Runtime,
    jwt: JwtAuth,
    signer: p256::ecdsa::SigningKey,
}

const KID: &str = "fuzz";

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let config = tollgate::config::parse(
            "store: { cache: { ttl: 1s } }\n",
            std::path::Path::new("fuzz.yaml"),
        )
        .expect("config");
        let metrics = Arc::new(tollgate::telemetry::Metrics::new().expect("metrics"));
        let jwt = JwtAuth::new(&config, metrics);
        let mut key = tollgate::auth::keys::generate(SigningAlgorithm::Es256).expect("key");
        key.kid = KID.into();
        if let Some(obj) = key.public_jwk.as_object_mut() {
            obj.insert("kid".into(), KID.into());
        }
        jwt.set_builtin_keys(&[key.clone()]);
        let signer = p256::ecdsa::SigningKey::from_pkcs8_pem(&key.private_pem).expect("pem");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Fixture { rt, jwt, signer }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let result = f.rt.block_on(f.jwt.verify(rest));
        assert!(result.is_err(), "an unsigned token passed: {rest:?}");
        return;
    }
    let (header, claims) = match rest.iter().position(|b| *b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => return,
    };
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig: p256::ecdsa::Signature = f.signer.sign(input.as_bytes());
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));
    if f.rt.block_on(f.jwt.verify(token.as_bytes())).is_ok() {
        let h: serde_json::Value = serde_json::from_slice(header).expect("passed header is JSON");
        let c: serde_json::Value = serde_json::from_slice(claims).expect("passed claims are JSON");
        assert_eq!(h["alg"], "ES256", "{h}");
        assert!(h.get("crit").is_none(), "{h}");
        assert_eq!(c["iss"], "http://127.0.0.1:8080", "{c}");
        let aud_ok = c["aud"] == "tollgate"
            || c["aud"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == "tollgate"));
        assert!(aud_ok, "{c}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let exp = c["exp"].as_f64().expect("a passed token has a numeric exp");
        assert!(exp + 30.0 >= now, "expired token passed: {c}");
        if let Some(nbf) = c.get("nbf") {
            assert!(nbf.as_f64().is_some_and(|n| n <= now + 30.0), "{c}");
        }
    }
});
