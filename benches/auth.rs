//! Credential checks on the hot path, against a store of many clients.
//!
//!   cargo bench --bench auth            # 100k clients with keys
//!   TOLLGATE_BENCH_CLIENTS=10000 cargo bench --bench auth
//!
//! Reports: the store lookup of a key by its value (cold: no cache), the
//! cached check (hit), an unknown key (negative cache), a malformed key
//! (checksum only), and the database size; then JWT verification cold
//! (ES256, RS256, EdDSA) and cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::auth::api_key::ApiKeyAuth;
use tollgate::config::CacheSettings;
use tollgate::secrets::{self, Pepper};
use tollgate::store::testing::add_api_key_client;
use tollgate::store::{now, SqliteStore, Store};
use tollgate::telemetry::Metrics;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    pepper: Pepper,
    keys: Vec<String>,
}

fn clients_wanted() -> usize {
    let full = std::env::args().any(|a| a == "--bench");
    std::env::var("TOLLGATE_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 100_000 } else { 500 })
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    let n = clients_wanted();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let pepper = Pepper::new(b"bench-pepper".to_vec());
    let started = Instant::now();
    let (store, keys) = rt.block_on(async {
        let store = SqliteStore::open(&path).await.expect("open store");
        let mut keys = Vec::with_capacity(n);
        for i in 0..n {
            let key = add_api_key_client(&store, &pepper, &format!("{i:08}"))
                .await
                .expect("insert");
            keys.push(key);
        }
        (Arc::new(store) as Arc<dyn Store>, keys)
    });
    let size: u64 = std::fs::read_dir(dir.path())
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    println!(
        "fixture: {n} clients with one key each, created in {:.1}s; database files {:.1} MiB ({:.0} bytes per client)",
        started.elapsed().as_secs_f64(),
        size as f64 / (1024.0 * 1024.0),
        size as f64 / n as f64
    );
    Fixture {
        _dir: dir,
        store,
        pepper,
        keys,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let f = fixture(&rt);
    let settings = CacheSettings {
        ttl: Duration::from_secs(300),
        negative_ttl: Duration::from_secs(300),
        max_entries: 1_000_000,
    };
    let metrics = Metrics::new().expect("metrics");
    let usage = Arc::new(tollgate::auth::usage::UsageRecorder::default());
    let auth = ApiKeyAuth::new(
        f.store.clone(),
        f.pepper.clone(),
        &settings,
        usage,
        &metrics,
    );

    let mut g = c.benchmark_group("api_key");
    let mut i = 0usize;
    g.bench_function("store_lookup_cold", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 7919) % f.keys.len();
            let hash = f.pepper.hash(&f.keys[i]);
            let store = f.store.clone();
            async move {
                store
                    .find_api_key(&hash)
                    .await
                    .expect("lookup")
                    .expect("found")
            }
        })
    });
    let hot = f.keys[0].clone();
    rt.block_on(auth.authenticate(hot.as_bytes()))
        .expect("valid key");
    g.bench_function("check_cached_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { auth.authenticate(hot.as_bytes()).await.expect("valid") })
    });
    let unknown = secrets::generate_api_key().expose().to_string();
    let _ = rt.block_on(auth.authenticate(unknown.as_bytes()));
    g.bench_function("check_unknown_negative_cached", |b| {
        b.to_async(&rt).iter(|| async {
            auth.authenticate(unknown.as_bytes())
                .await
                .expect_err("unknown")
        })
    });
    // the checksum's last character changed (to one it is not)
    let last = if hot.ends_with('x') { 'y' } else { 'x' };
    let malformed = format!("{}{last}", &hot[..hot.len() - 1]);
    g.bench_function("check_malformed", |b| {
        b.to_async(&rt).iter(|| async {
            auth.authenticate(malformed.as_bytes())
                .await
                .expect_err("malformed")
        })
    });
    g.bench_function("pepper_hash_only", |b| b.iter(|| f.pepper.hash(&hot)));
    g.finish();
}

fn bench_jwt(c: &mut Criterion) {
    use tollgate::auth::jwt::JwtAuth;
    use tollgate::auth::keys;
    use tollgate::config::SigningAlgorithm;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let yaml = "auth:\n  tokens: { issuer: \"http://bench\", audience: tollgate }\n";
    let config = tollgate::config::parse(yaml, std::path::Path::new("bench.yaml")).expect("config");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let jwt = JwtAuth::new(&config, metrics);
    let algs = [
        SigningAlgorithm::Es256,
        SigningAlgorithm::Rs256,
        SigningAlgorithm::EdDsa,
    ];
    let signing: Vec<_> = algs
        .iter()
        .map(|a| keys::generate(*a).expect("key"))
        .collect();
    jwt.set_builtin_keys(&signing);
    let mut g = c.benchmark_group("jwt");
    for key in &signing {
        let alg = keys::jwt_algorithm(&key.algorithm).expect("alg");
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some(key.kid.clone());
        let claims = serde_json::json!({"iss": "http://bench", "aud": "tollgate", "sub": "cli_bench",
                                        "exp": now() + 3600, "iat": now(), "scope": "a b"});
        let token = jsonwebtoken::encode(&header, &claims, &keys::encoding_key(key).expect("enc"))
            .expect("token");
        g.bench_function(format!("verify_cold_{}", key.algorithm), |b| {
            b.to_async(&rt)
                .iter(|| async { jwt.verify_uncached(&token).await.expect("valid") })
        });
        // the signature check alone, to read the rest of a cold verification
        let jwk =
            serde_json::from_value::<jsonwebtoken::jwk::Jwk>(key.public_jwk.clone()).expect("jwk");
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
        let (signed, sig) = token.rsplit_once('.').expect("compact token");
        let sig = URL_SAFE_NO_PAD.decode(sig).expect("base64url");
        g.bench_function(format!("signature_{}", key.algorithm), |b| {
            b.iter(|| {
                assert!(tollgate::auth::jwt::verify_signature(
                    alg,
                    &decoding,
                    signed.as_bytes(),
                    &sig
                ))
            })
        });
        if key.algorithm == "ES256" {
            rt.block_on(jwt.verify(token.as_bytes())).expect("valid");
            g.bench_function("verify_cached", |b| {
                b.to_async(&rt)
                    .iter(|| async { jwt.verify(token.as_bytes()).await.expect("valid") })
            });
        }
    }
    g.finish();
}

/// Tokens signed per second by the token endpoint's own signing path, for
/// each configurable algorithm.
fn bench_issue(c: &mut Criterion) {
    use arc_swap::ArcSwap;
    use tollgate::auth::jwt::JwtAuth;
    use tollgate::auth::keys;
    use tollgate::config::SigningAlgorithm;
    use tollgate::control::token::TokenService;
    use tollgate::runtime::Snapshot;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(
        rt.block_on(SqliteStore::open(&dir.path().join("t.db")))
            .expect("store"),
    );
    let mut g = c.benchmark_group("token_issue");
    for (alg, name) in [
        (SigningAlgorithm::Es256, "ES256"),
        (SigningAlgorithm::EdDsa, "EdDSA"),
        (SigningAlgorithm::Rs256, "RS256"),
    ] {
        let yaml = format!("auth:\n  tokens: {{ issuer: \"http://bench\", audience: tollgate, algorithm: {name} }}\n");
        let config = Arc::new(
            tollgate::config::parse(&yaml, std::path::Path::new("bench.yaml")).expect("config"),
        );
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let jwt = Arc::new(JwtAuth::new(&config, metrics.clone()));
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::new(config)));
        let key = keys::generate(alg).expect("key");
        let svc = TokenService::new(
            store.clone(),
            Pepper::new(b"p".to_vec()),
            jwt,
            snapshot,
            metrics.clone(),
            vec![key],
            Arc::new(tollgate::ratelimit::Limiter::new(None, metrics)),
        );
        let scopes = vec!["orders:read".to_string(), "orders:write".to_string()];
        g.bench_function(name, |b| {
            b.iter(|| svc.issue("cli_bench", &scopes).expect("token"))
        });
    }
    g.finish();
}

/// One limit decision: no plan (the baseline), counters in memory, counters
/// in Redis (`TOLLGATE_TEST_REDIS_URL`, else redis://127.0.0.1:6379; left
/// out with a message when it does not answer).
fn bench_limit(c: &mut Criterion) {
    use tollgate::ratelimit::{Limiter, PlanChoice, Plans};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let yaml = "plans:\n  roomy: { rate: 100000000/s, quota: 1000000000000/month }\n  open: {}\nredis: { url: \"REDIS\" }\n";
    let url = std::env::var("TOLLGATE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let config = tollgate::config::parse(
        &yaml.replace("REDIS", &url),
        std::path::Path::new("bench.yaml"),
    )
    .expect("config");
    let plans = Plans::new(&config);
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let local = Limiter::new(None, metrics.clone());
    let shared = {
        let _rt = rt.enter();
        Limiter::new(config.redis.as_ref(), metrics)
    };
    let PlanChoice::Limited(_, policy) = plans.choose(Some("roomy")) else {
        panic!("roomy is a limited plan");
    };
    let mut g = c.benchmark_group("limit");
    g.bench_function("unlimited", |b| {
        b.iter(|| matches!(plans.choose(Some("open")), PlanChoice::Unlimited))
    });
    let mut n = 0u64;
    g.bench_function("local", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let key = format!("sub:{}", n % 1000);
            let local = &local;
            async move { assert!(local.check(&key, &policy, 1).await.allowed) }
        })
    });
    // a decision made without Redis reports nothing remaining
    let reachable = rt
        .block_on(shared.check("bench-probe", &policy, 0))
        .remaining
        > 0;
    if reachable {
        g.bench_function("redis", |b| {
            b.to_async(&rt).iter(|| {
                n += 1;
                let key = format!("sub:{}", n % 1000);
                let shared = &shared;
                async move { assert!(shared.check(&key, &policy, 1).await.allowed) }
            })
        });
    } else {
        eprintln!("limit/redis left out: {url} does not answer");
    }
    g.finish();
}

criterion_group!(benches, bench, bench_jwt, bench_issue, bench_limit);
criterion_main!(benches);
