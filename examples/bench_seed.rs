//! Seeds a gateway's SQLite store with many API-key clients at once, for
//! the memory and start-up cases of `benches/compare/run.sh`: creates the
//! schema (by opening the store), writes the SQL of N clients, each with an
//! active key and a subscription to SERVICE, to stdout (for `sqlite3 DB`,
//! one transaction), and the keys themselves to KEYS_FILE, one a line.
//! The stored hash is HMAC-SHA256 under PEPPER, as the gateway computes it
//! with that pepper in `TOLLGATE_PEPPER`.
//!
//!   bench_seed DB_PATH PEPPER N SERVICE KEYS_FILE | sqlite3 DB_PATH

use std::fmt::Write as _;
use std::path::PathBuf;

use tollgate::secrets::{self, Pepper};
use tollgate::store::{now, SqliteStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, pepper, n, service, keys_file] = args.as_slice() else {
        return Err("usage: bench_seed DB_PATH PEPPER N SERVICE KEYS_FILE".into());
    };
    let n: usize = n.parse().map_err(|_| "N is not a number")?;
    if !service
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("SERVICE: letters, digits, '-' and '_' only".into());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = SqliteStore::open(&PathBuf::from(db)).await?;
        store.close().await;
        Ok::<_, tollgate::store::StoreError>(())
    })?;
    let pepper = Pepper::new(pepper.as_bytes().to_vec());
    let at = now();
    let mut sql = String::with_capacity(n * 400);
    let mut keys = String::with_capacity(n * 32);
    sql.push_str("BEGIN;\n");
    for i in 0..n {
        let key = secrets::generate_api_key();
        let key = key.expose();
        let prefix = secrets::display_prefix(key, secrets::API_KEY_PREFIX);
        let hash = pepper.hash(key);
        writeln!(
            sql,
            "INSERT INTO clients (id, name, auth_type, status, created_at) VALUES ('cli_seed{i:07}', 'seed {i}', 'api_key', 'active', {at});\n\
             INSERT INTO api_keys (id, client_id, name, prefix, hash, created_at, status) VALUES ('key_seed{i:07}', 'cli_seed{i:07}', 'default', '{prefix}', '{hash}', {at}, 'active');\n\
             INSERT INTO subscriptions (id, client_id, service, created_at) VALUES ('sub_seed{i:07}', 'cli_seed{i:07}', '{service}', {at});"
        )?;
        keys.push_str(key);
        keys.push('\n');
    }
    sql.push_str("COMMIT;\n");
    std::fs::write(keys_file, keys)?;
    print!("{sql}");
    Ok(())
}
