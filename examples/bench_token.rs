//! Mints an access token with the built-in issuer's newest signing key, read
//! from a gateway's SQLite store: for load runs (`benches/load.sh`) before a
//! token endpoint is involved.
//!
//!   bench_token DB_PATH ISSUER AUDIENCE CLIENT_ID [SCOPE]

use std::path::PathBuf;

use tollgate::auth::keys;
use tollgate::store::{now, SqliteStore, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, iss, aud, sub, rest @ ..] = args.as_slice() else {
        return Err("usage: bench_token DB_PATH ISSUER AUDIENCE CLIENT_ID [SCOPE]".into());
    };
    let scope = rest.first().cloned().unwrap_or_default();
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
    let alg = keys::jwt_algorithm(&key.algorithm).ok_or("unknown algorithm")?;
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(key.kid.clone());
    let claims = serde_json::json!({
        "iss": iss, "aud": aud, "sub": sub, "client_id": sub, "scope": scope,
        "iat": now(), "exp": now() + 3600, "jti": tollgate::secrets::new_id("jti"),
    });
    println!(
        "{}",
        jsonwebtoken::encode(&header, &claims, &keys::encoding_key(&key)?)?
    );
    Ok(())
}
