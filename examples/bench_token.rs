//! Mints access tokens with the built-in issuer's newest signing key, read
//! from a gateway's SQLite store: for load runs (`benches/load.sh`,
//! `benches/compare/run.sh`) before a token endpoint is involved.
//!
//!   bench_token DB_PATH ISSUER AUDIENCE CLIENT_ID [SCOPE]
//!
//! One token by default. `BENCH_TOKENS=N` prints N distinct tokens, one a
//! line (each its own `jti`), and `BENCH_TOKEN_KEY=FILE` also writes the
//! signing key's private PEM to FILE (for another verifier's public key).

use std::path::PathBuf;

use tollgate::auth::keys;
use tollgate::store::{now, SqliteStore, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, iss, aud, sub, rest @ ..] = args.as_slice() else {
        return Err("usage: bench_token DB_PATH ISSUER AUDIENCE CLIENT_ID [SCOPE]".into());
    };
    let scope = rest.first().cloned().unwrap_or_default();
    let count: usize = match std::env::var("BENCH_TOKENS") {
        Ok(v) => v.parse().map_err(|_| "BENCH_TOKENS is not a number")?,
        Err(_) => 1,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let key = rt.block_on(async {
        let store = SqliteStore::open(&PathBuf::from(db)).await?;
        let keys = store.list_signing_keys().await?;
        store.close().await;
        keys.into_iter()
            .next()
            .ok_or(tollgate::store::StoreError::NotFound)
    })?;
    if let Ok(file) = std::env::var("BENCH_TOKEN_KEY") {
        std::fs::write(file, &key.private_pem)?;
    }
    let signer = keys::Signer::load(&key)?;
    let header = serde_json::json!({"alg": key.algorithm, "typ": "JWT", "kid": key.kid});
    let mut out = String::new();
    for _ in 0..count {
        let claims = serde_json::json!({
            "iss": iss, "aud": aud, "sub": sub, "client_id": sub, "scope": scope,
            "iat": now(), "exp": now() + 3600, "jti": tollgate::secrets::new_id("jti"),
        });
        out.push_str(&signer.sign(&header, &claims));
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}
