//! The store's behaviour, written once and run on SQLite and on PostgreSQL
//! (`TOLLGATE_TEST_PG_URL` or the local server; each test gets a fresh
//! database there). Without a server, build.rs leaves `tollgate_services`
//! unset and the PostgreSQL tests are listed as ignored.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::testing::{pg_test_url, PgTestDatabase};
use super::*;

fn audit(action: &'static str, target: &str) -> Audit {
    Audit {
        actor: "test".into(),
        action,
        target: target.into(),
        detail: serde_json::json!({"n": 1}),
    }
}

fn client(id: &str, auth_type: AuthType) -> Client {
    Client {
        id: id.into(),
        name: format!("name of {id}"),
        description: String::new(),
        auth_type,
        scopes: vec!["a:read".into(), "a:write".into()],
        issuer: None,
        external_id: None,
        status: Status::Active,
        created_at: now(),
        revoked_at: None,
        account_id: None,
        allowed_cidrs: vec![],
        allowed_referers: vec![],
    }
}

fn external(id: &str, issuer: &str, external_id: &str) -> Client {
    Client {
        issuer: Some(issuer.into()),
        external_id: Some(external_id.into()),
        ..client(id, AuthType::External)
    }
}

fn new_key(id: &str, client_id: &str, hash: &str, expires_at: Option<Timestamp>) -> NewApiKey {
    NewApiKey {
        id: id.into(),
        client_id: client_id.into(),
        name: "k".into(),
        prefix: "tg_abc".into(),
        hash: hash.into(),
        created_at: now(),
        expires_at,
    }
}

fn secret(id: &str, client_id: &str, hash: &str) -> NewSecret {
    NewSecret {
        id: id.into(),
        client_id: client_id.into(),
        hash: hash.into(),
        created_at: now(),
    }
}

fn sub(id: &str, client_id: &str, service: &str) -> Subscription {
    Subscription {
        id: id.into(),
        client_id: client_id.into(),
        service: service.into(),
        plan: Some("gold".into()),
        status: SubscriptionStatus::Active,
        created_at: now(),
    }
}

fn signing_key(kid: &str, created_at: Timestamp) -> SigningKey {
    SigningKey {
        kid: kid.into(),
        algorithm: "ES256".into(),
        private_pem: format!("pem of {kid}"),
        public_jwk: serde_json::json!({"kty": "EC", "kid": kid}),
        created_at,
        retired_at: None,
    }
}

async fn add(store: &dyn Store, c: Client, key: Option<NewApiKey>, secret: Option<NewSecret>) {
    let id = c.id.clone();
    store
        .insert_client(
            NewClient {
                client: c,
                secret,
                key,
            },
            audit("client.create", &id),
        )
        .await
        .unwrap();
}

async fn subscribe(store: &dyn Store, id: &str, client_id: &str, service: &str) -> StoreResult<()> {
    store
        .insert_subscription(
            sub(id, client_id, service),
            audit("subscription.create", id),
        )
        .await
}

async fn add_key(
    store: &dyn Store,
    id: &str,
    client_id: &str,
    hash: &str,
    expires_at: Option<Timestamp>,
) -> StoreResult<ApiKey> {
    store
        .insert_api_key(
            new_key(id, client_id, hash, expires_at),
            audit("key.create", id),
        )
        .await
}

async fn set_key(
    store: &dyn Store,
    id: &str,
    status: Status,
    expires_at: Option<Timestamp>,
) -> StoreResult<ApiKey> {
    store
        .set_api_key_state(id, status, expires_at, audit("key.state", id))
        .await
}

async fn rotate_secret(
    store: &dyn Store,
    id: &str,
    client_id: &str,
    hash: &str,
    old_valid_until: Option<Timestamp>,
) -> StoreResult<()> {
    store
        .replace_secret(
            secret(id, client_id, hash),
            old_valid_until,
            audit("client.rotate_secret", client_id),
        )
        .await
}

async fn revoke(store: &dyn Store, id: &str, at: Timestamp) -> StoreResult<Client> {
    store
        .revoke_client(id, at, audit("client.revoke", id))
        .await
}

/// The hashes of a client's valid secrets (their ids dropped).
async fn hashes(store: &dyn Store, client_id: &str, at: Timestamp) -> Vec<String> {
    let pairs = store.secret_hashes(client_id, at).await.unwrap();
    pairs.into_iter().map(|(_, h)| h).collect()
}

fn conflict<T: std::fmt::Debug>(r: StoreResult<T>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

fn not_found<T: std::fmt::Debug>(r: StoreResult<T>) -> bool {
    matches!(r, Err(StoreError::NotFound))
}

/// The (kind, target) of the changes after `seq`.
async fn changes_after(store: &dyn Store, seq: i64) -> Vec<(ChangeKind, String)> {
    store
        .changes_since(seq, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.kind, c.target))
        .collect()
}

// ---- the suite -------------------------------------------------------

async fn clients_are_inserted_listed_and_updated(store: &dyn Store) {
    let a = client("cli_a", AuthType::ApiKey);
    add(store, a.clone(), None, None).await;
    add(store, client("cli_b", AuthType::Oauth2), None, None).await;
    assert_eq!(store.get_client("cli_a").await.unwrap(), a);
    assert!(not_found(store.get_client("nope").await));
    let again = NewClient {
        client: a.clone(),
        secret: None,
        key: None,
    };
    assert!(conflict(
        store
            .insert_client(again, audit("client.create", "cli_a"))
            .await
    ));

    let all: Vec<String> = store
        .list_clients(None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(all, ["cli_a", "cli_b"]);
    assert_eq!(
        store
            .list_clients(Some(Status::Active), None)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(store
        .list_clients(Some(Status::Revoked), None)
        .await
        .unwrap()
        .is_empty());

    let rename = ClientPatch {
        name: Some("renamed".into()),
        ..ClientPatch::default()
    };
    let updated = store
        .update_client("cli_a", rename, audit("client.update", "cli_a"))
        .await
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(
        updated.scopes,
        ["a:read", "a:write"],
        "unpatched fields stay"
    );
    let rest = ClientPatch {
        description: Some("d".into()),
        scopes: Some(vec!["b:read".into()]),
        ..ClientPatch::default()
    };
    store
        .update_client("cli_a", rest, audit("client.update", "cli_a"))
        .await
        .unwrap();
    let got = store.get_client("cli_a").await.unwrap();
    assert_eq!(
        (got.name.as_str(), got.description.as_str()),
        ("renamed", "d")
    );
    assert_eq!(got.scopes, ["b:read"]);
    assert!(not_found(
        store
            .update_client(
                "nope",
                ClientPatch::default(),
                audit("client.update", "nope")
            )
            .await
    ));
}

async fn revoke_is_final_and_removes_everything(store: &dyn Store) {
    add(
        store,
        client("cli_1", AuthType::ApiKey),
        Some(new_key("key_1", "cli_1", "h1", None)),
        Some(secret("sec_1", "cli_1", "s1")),
    )
    .await;
    subscribe(store, "sub_1", "cli_1", "s").await.unwrap();
    let (k, c) = store.find_api_key("h1").await.unwrap().unwrap();
    assert_eq!((k.id.as_str(), c.id.as_str()), ("key_1", "cli_1"));

    let at = now();
    let revoked = revoke(store, "cli_1", at).await.unwrap();
    assert_eq!(
        (revoked.status, revoked.revoked_at),
        (Status::Revoked, Some(at))
    );
    assert_eq!(store.get_client("cli_1").await.unwrap(), revoked);
    assert!(store
        .list_subscriptions(Some("cli_1"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.list_api_keys("cli_1").await.unwrap()[0].status,
        "revoked"
    );
    assert!(store
        .secret_hashes("cli_1", now())
        .await
        .unwrap()
        .is_empty());
    let (k, c) = store.find_api_key("h1").await.unwrap().unwrap();
    assert!(!k.is_usable(now()));
    assert_eq!(c.status, Status::Revoked);

    // nothing brings it back
    assert!(conflict(revoke(store, "cli_1", now()).await));
    assert!(not_found(revoke(store, "nope", now()).await));
    assert!(conflict(
        store
            .update_client(
                "cli_1",
                ClientPatch::default(),
                audit("client.update", "cli_1")
            )
            .await
    ));
    assert!(conflict(subscribe(store, "sub_2", "cli_1", "s").await));
    assert!(conflict(add_key(store, "key_2", "cli_1", "h2", None).await));
    assert!(conflict(
        rotate_secret(store, "sec_2", "cli_1", "s2", None).await
    ));
    assert!(conflict(
        set_key(store, "key_1", Status::Active, None).await
    ));
    assert!(store
        .secret_hashes("cli_1", now())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.get_client("cli_1").await.unwrap().status,
        Status::Revoked
    );
    assert!(!store.get_api_key("key_1").await.unwrap().is_usable(now()));

    let actions: Vec<String> = store
        .list_audit(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["client.revoke", "subscription.create", "client.create"]
    );
}

async fn subscriptions_are_unique_per_service(store: &dyn Store) {
    add(store, client("cli_1", AuthType::ApiKey), None, None).await;
    add(store, client("cli_2", AuthType::ApiKey), None, None).await;
    let first = sub("sub_1", "cli_1", "orders");
    for s in [
        first.clone(),
        sub("sub_2", "cli_1", "billing"),
        sub("sub_3", "cli_2", "orders"),
    ] {
        let id = s.id.clone();
        store
            .insert_subscription(s, audit("subscription.create", &id))
            .await
            .unwrap();
    }
    assert!(conflict(subscribe(store, "sub_4", "cli_1", "orders").await));
    assert!(not_found(subscribe(store, "sub_5", "nope", "orders").await));
    assert_eq!(store.get_subscription("sub_1").await.unwrap(), first);
    assert_eq!(store.list_subscriptions(None).await.unwrap().len(), 3);
    let of_1: HashSet<String> = store
        .list_subscriptions(Some("cli_1"))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.service)
        .collect();
    assert_eq!(of_1, HashSet::from(["orders".into(), "billing".into()]));

    let deleted = store
        .delete_subscription("sub_1", None, audit("subscription.delete", "sub_1"))
        .await
        .unwrap();
    assert_eq!(deleted, first);
    assert!(not_found(store.get_subscription("sub_1").await));
    assert!(not_found(
        store
            .delete_subscription("sub_1", None, audit("subscription.delete", "sub_1"))
            .await
    ));
    // the service is free again
    subscribe(store, "sub_6", "cli_1", "orders").await.unwrap();
}

async fn api_keys_are_found_by_hash_and_show_their_state(store: &dyn Store) {
    let t = now();
    add(
        store,
        client("cli_1", AuthType::ApiKey),
        Some(new_key("key_1", "cli_1", "h1", Some(t + 100))),
        None,
    )
    .await;
    let expired = add_key(store, "key_2", "cli_1", "h2", Some(t - 1))
        .await
        .unwrap();
    assert_eq!(expired.status, "expired", "an active key past its expiry");
    assert!(!expired.is_usable(t));
    assert!(conflict(add_key(store, "key_3", "cli_1", "h1", None).await));
    assert!(not_found(add_key(store, "key_4", "nope", "h4", None).await));

    let (k, c) = store.find_api_key("h1").await.unwrap().unwrap();
    assert_eq!((k.id.as_str(), k.status.as_str()), ("key_1", "active"));
    assert_eq!((k.prefix.as_str(), k.expires_at), ("tg_abc", Some(t + 100)));
    assert_eq!((k.use_count, k.last_used_at), (0, None));
    assert_eq!(c.id, "cli_1");
    assert!(store.find_api_key("unknown").await.unwrap().is_none());
    assert!(not_found(store.get_api_key("nope").await));

    let ids: Vec<String> = store
        .list_api_keys("cli_1")
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, ["key_1", "key_2"]);

    let revoked = set_key(store, "key_1", Status::Revoked, Some(t + 100))
        .await
        .unwrap();
    assert_eq!(revoked.status, "revoked");
    let renewed = set_key(store, "key_2", Status::Active, Some(t + 500))
        .await
        .unwrap();
    assert_eq!(
        (renewed.status.as_str(), renewed.expires_at),
        ("active", Some(t + 500))
    );
    let forever = set_key(store, "key_2", Status::Active, None).await.unwrap();
    assert!(forever.is_usable(t + 1_000_000));
    assert!(not_found(
        set_key(store, "nope", Status::Revoked, None).await
    ));
}

async fn usage_is_added_in_batches(store: &dyn Store) {
    add(
        store,
        client("cli_1", AuthType::ApiKey),
        Some(new_key("key_1", "cli_1", "h1", None)),
        None,
    )
    .await;
    let mut usage = HashMap::new();
    usage.insert(
        "key_1".to_string(),
        KeyUsage {
            last_used_at: 1000,
            count: 5,
        },
    );
    // a key deleted meanwhile is no error
    usage.insert(
        "key_gone".to_string(),
        KeyUsage {
            last_used_at: 1000,
            count: 1,
        },
    );
    store.record_usage(&usage).await.unwrap();
    usage.insert(
        "key_1".to_string(),
        KeyUsage {
            last_used_at: 900,
            count: 2,
        },
    );
    store.record_usage(&usage).await.unwrap();
    let k = store.get_api_key("key_1").await.unwrap();
    assert_eq!(
        (k.use_count, k.last_used_at),
        (7, Some(1000)),
        "the latest use stays"
    );
}

async fn replaced_secrets_keep_a_grace_period(store: &dyn Store) {
    let t = now();
    add(
        store,
        client("cli_1", AuthType::Oauth2),
        None,
        Some(secret("sec_1", "cli_1", "s1")),
    )
    .await;
    assert_eq!(hashes(store, "cli_1", t).await, ["s1"]);

    rotate_secret(store, "sec_2", "cli_1", "s2", Some(t + 100))
        .await
        .unwrap();
    let mut both = hashes(store, "cli_1", t).await;
    both.sort();
    assert_eq!(both, ["s1", "s2"]);
    assert_eq!(hashes(store, "cli_1", t + 100).await, ["s2"]);

    // a second rotation does not lengthen the first one's grace
    rotate_secret(store, "sec_3", "cli_1", "s3", Some(t + 200))
        .await
        .unwrap();
    let mut at_150 = hashes(store, "cli_1", t + 150).await;
    at_150.sort();
    assert_eq!(at_150, ["s2", "s3"]);

    rotate_secret(store, "sec_4", "cli_1", "s4", None)
        .await
        .unwrap();
    assert_eq!(hashes(store, "cli_1", t).await, ["s4"]);
    assert!(not_found(
        rotate_secret(store, "sec_5", "nope", "s5", None).await
    ));
}

async fn external_clients_are_unique_per_issuer(store: &dyn Store) {
    let kc = external("cli_1", "keycloak", "orders-app");
    add(store, kc.clone(), None, None).await;
    add(
        store,
        external("cli_2", "cognito", "orders-app"),
        None,
        None,
    )
    .await;
    // clients without an issuer are outside the unique index
    add(store, client("cli_3", AuthType::ApiKey), None, None).await;
    add(store, client("cli_4", AuthType::ApiKey), None, None).await;

    assert_eq!(
        store
            .find_external_client("keycloak", "orders-app")
            .await
            .unwrap(),
        Some(kc)
    );
    assert_eq!(
        store
            .find_external_client("cognito", "orders-app")
            .await
            .unwrap()
            .map(|c| c.id),
        Some("cli_2".into())
    );
    assert!(store
        .find_external_client("keycloak", "other")
        .await
        .unwrap()
        .is_none());
    let dup = NewClient {
        client: external("cli_5", "keycloak", "orders-app"),
        secret: None,
        key: None,
    };
    let e = store
        .insert_client(dup, audit("client.create", "cli_5"))
        .await;
    assert!(conflict(e));
    assert!(
        not_found(store.get_client("cli_5").await),
        "nothing of it stays"
    );
}

async fn signing_keys_rotate(store: &dyn Store) {
    let t = now();
    store
        .insert_signing_key(&signing_key("k1", t - 10))
        .await
        .unwrap();
    store
        .rotate_signing_key(&signing_key("k2", t), t, audit("signing_key.rotate", "k2"))
        .await
        .unwrap();
    let keys = store.list_signing_keys().await.unwrap();
    let kids: Vec<(&str, Option<Timestamp>)> = keys
        .iter()
        .map(|k| (k.kid.as_str(), k.retired_at))
        .collect();
    assert_eq!(kids, [("k2", None), ("k1", Some(t))], "newest first");
    assert_eq!(
        keys[0].public_jwk,
        serde_json::json!({"kty": "EC", "kid": "k2"})
    );
    assert_eq!(
        (keys[0].algorithm.as_str(), keys[0].private_pem.as_str()),
        ("ES256", "pem of k2")
    );
    assert!(conflict(
        store.insert_signing_key(&signing_key("k2", t)).await
    ));
    assert_eq!(
        store.list_audit(10).await.unwrap()[0].action,
        "signing_key.rotate"
    );
}

async fn audit_is_listed_newest_first(store: &dyn Store) {
    for i in 0..5 {
        add(
            store,
            client(&format!("cli_{i}"), AuthType::ApiKey),
            None,
            None,
        )
        .await;
    }
    let entries = store.list_audit(3).await.unwrap();
    let targets: Vec<&str> = entries.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["cli_4", "cli_3", "cli_2"]);
    assert!(entries[0].id > entries[1].id);
    assert_eq!(entries[0].actor, "test");
    assert_eq!(entries[0].detail, serde_json::json!({"n": 1}));
    assert!((entries[0].at - now()).abs() <= 5);
}

async fn every_change_that_matters_is_in_the_feed(store: &dyn Store) {
    use ChangeKind::{Client as C, SigningKey as K, Token as T};
    assert_eq!(store.last_change_seq().await.unwrap(), 0);
    assert!(store.changes_since(0, 10).await.unwrap().is_empty());
    let before = now_ms();

    add(
        store,
        client("cli_1", AuthType::ApiKey),
        Some(new_key("key_1", "cli_1", "h1", None)),
        None,
    )
    .await;
    add(
        store,
        client("cli_2", AuthType::Oauth2),
        None,
        Some(secret("sec_1", "cli_2", "s1")),
    )
    .await;
    let p = ClientPatch {
        name: Some("n2".into()),
        ..ClientPatch::default()
    };
    store
        .update_client("cli_1", p, audit("client.update", "cli_1"))
        .await
        .unwrap();
    rotate_secret(store, "sec_2", "cli_2", "s2", None)
        .await
        .unwrap();
    set_key(store, "key_1", Status::Revoked, None)
        .await
        .unwrap();
    subscribe(store, "sub_1", "cli_1", "s").await.unwrap();
    store
        .delete_subscription("sub_1", None, audit("subscription.delete", "sub_1"))
        .await
        .unwrap();
    revoke(store, "cli_2", now()).await.unwrap();
    store
        .insert_signing_key(&signing_key("k1", now()))
        .await
        .unwrap();
    store
        .rotate_signing_key(
            &signing_key("k2", now()),
            now(),
            audit("signing_key.rotate", "k2"),
        )
        .await
        .unwrap();
    store.revoke_token("jti_1", now() + 60).await.unwrap();

    // what does not affect authentication is not in the feed
    let mark = store.last_change_seq().await.unwrap();
    add_key(store, "key_2", "cli_1", "h2", None).await.unwrap();
    store.record_usage(&HashMap::new()).await.unwrap();
    // nor what failed (cli_2 is revoked already)
    assert!(conflict(revoke(store, "cli_2", now()).await));
    assert!(conflict(subscribe(store, "sub_2", "cli_2", "s").await));
    // nor a token revoked again
    store.revoke_token("jti_1", now() + 60).await.unwrap();
    assert_eq!(store.last_change_seq().await.unwrap(), mark);

    let want: Vec<(ChangeKind, String)> = [
        (C, "cli_1"),
        (C, "cli_2"),
        (C, "cli_1"),
        (C, "cli_2"),
        (C, "cli_1"),
        (C, "cli_1"),
        (C, "cli_1"),
        (C, "cli_2"),
        (K, "k1"),
        (K, "k2"),
        (T, "jti_1"),
    ]
    .into_iter()
    .map(|(k, t)| (k, t.to_string()))
    .collect();
    assert_eq!(changes_after(store, 0).await, want);

    let all = store.changes_since(0, 100).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "ascending");
    assert_eq!(all.last().unwrap().seq, mark);
    assert!(all.iter().all(|c| c.at_ms >= before && c.at_ms <= now_ms()));
    let page = store.changes_since(all[2].seq, 3).await.unwrap();
    assert_eq!(page, all[3..6]);
    assert!(store.changes_since(mark, 10).await.unwrap().is_empty());
}

async fn revoked_tokens_last_until_they_expire(store: &dyn Store) {
    let t = now();
    store.revoke_token("jti_long", t + 1000).await.unwrap();
    store.revoke_token("jti_short", t + 10).await.unwrap();
    store.revoke_token("jti_long", t + 1000).await.unwrap();
    assert_eq!(
        store.revoked_tokens(t).await.unwrap(),
        [
            ("jti_long".to_string(), t + 1000),
            ("jti_short".to_string(), t + 10)
        ]
    );
    assert_eq!(
        store.revoked_tokens(t + 10).await.unwrap(),
        [("jti_long".to_string(), t + 1000)]
    );
    // an expired row is not listed, and the next revocation clears it
    store.revoke_token("jti_old", t - 1).await.unwrap();
    assert_eq!(store.revoked_tokens(t).await.unwrap().len(), 2);
    store.revoke_token("jti_next", t + 1000).await.unwrap();
    let kept: Vec<String> = store
        .revoked_tokens(0)
        .await
        .unwrap()
        .into_iter()
        .map(|(jti, _)| jti)
        .collect();
    assert_eq!(kept, ["jti_long", "jti_next", "jti_short"]);
    let tokens: Vec<String> = changes_after(store, 0)
        .await
        .into_iter()
        .map(|(_, jti)| jti)
        .collect();
    assert_eq!(tokens, ["jti_long", "jti_short", "jti_old", "jti_next"]);
}

async fn quota_usage_adds_up_and_expires(store: &dyn Store) {
    let t = now();
    let delta = |counter: &str, start: Timestamp, end: Timestamp, delta: i64| QuotaDelta {
        counter: counter.into(),
        window_start: start,
        window_end: end,
        delta,
    };
    store
        .add_quota_usage(&[
            delta("a", t - 10, t + 100, 3),
            delta("b", t - 10, t + 100, 2),
            delta("a", t - 200, t - 100, 9),
        ])
        .await
        .unwrap();
    store
        .add_quota_usage(&[
            delta("a", t - 10, t + 100, 4),
            delta("a", t + 100, t + 200, 1),
        ])
        .await
        .unwrap();
    store.add_quota_usage(&[]).await.unwrap();
    assert_eq!(
        store.quota_usage(t).await.unwrap(),
        [
            delta("a", t - 10, t + 100, 7),
            delta("a", t + 100, t + 200, 1),
            delta("b", t - 10, t + 100, 2),
        ]
    );
    assert_eq!(
        store.quota_usage(t + 100).await.unwrap(),
        [delta("a", t + 100, t + 200, 1)]
    );
    // the window that had ended is gone, not just hidden
    assert!(store
        .quota_usage(0)
        .await
        .unwrap()
        .iter()
        .all(|d| d.window_end > t));
}

/// Followers that read while changes commit concurrently must see every
/// seq: none may commit behind one a follower has already passed.
async fn concurrent_changes_are_never_skipped(store: Arc<dyn Store>) {
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    store
                        .revoke_token(&format!("jti_{w}_{i}"), i64::MAX)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    let mut last = 0;
    let follow = |seen: &mut Vec<i64>, last: &mut i64, batch: Vec<Change>| {
        for c in batch {
            seen.push(c.seq);
            *last = c.seq;
        }
    };
    while !writers.iter().all(|w| w.is_finished()) {
        let batch = store.changes_since(last, 7).await.unwrap();
        follow(&mut seen, &mut last, batch);
    }
    for w in writers {
        w.await.unwrap();
    }
    loop {
        let batch = store.changes_since(last, 7).await.unwrap();
        if batch.is_empty() {
            break;
        }
        follow(&mut seen, &mut last, batch);
    }
    let all: Vec<i64> = store
        .changes_since(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(all.len(), 100);
    assert_eq!(seen, all, "the follower saw every change once, in order");
}

/// Every call on a closed pool is an Unavailable error, not a panic.
async fn closed_store_is_unavailable<DB: sqlx::Database>(store: &SqlStore<DB>)
where
    SqlStore<DB>: Store,
{
    store.close().await;
    let unavailable = |r: StoreResult<()>| matches!(r, Err(StoreError::Unavailable(_)));
    assert!(unavailable(store.ping().await));
    assert!(unavailable(store.get_client("x").await.map(drop)));
    assert!(unavailable(store.find_api_key("h").await.map(drop)));
    assert!(unavailable(
        store
            .insert_client(
                NewClient {
                    client: client("x", AuthType::ApiKey),
                    secret: None,
                    key: None
                },
                audit("client.create", "x")
            )
            .await
    ));
    assert!(unavailable(store.changes_since(0, 1).await.map(drop)));
    assert!(unavailable(store.revoke_token("j", 1).await));
    assert!(unavailable(store.add_quota_usage(&[]).await));
}

// ---- the two backends --------------------------------------------------

struct Sqlite {
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

impl Sqlite {
    async fn open() -> Sqlite {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        Sqlite { store, _dir: dir }
    }
}

struct Postgres {
    // before `db`: the pool goes first, then the database is dropped
    store: Arc<PgStore>,
    _db: PgTestDatabase,
}

impl Postgres {
    /// A fresh database on the test server (see [`pg_test_url`]).
    async fn open() -> Postgres {
        let db = PgTestDatabase::create(&pg_test_url()).await;
        let store = Arc::new(PgStore::connect(&db.url).await.unwrap());
        Postgres { store, _db: db }
    }
}

fn account(id: &str, username: Option<&str>) -> Account {
    Account {
        id: id.into(),
        username: username.map(str::to_string),
        issuer: None,
        subject: None,
        display_name: format!("name of {id}"),
        email: String::new(),
        status: AccountStatus::Active,
        password_change_required: false,
        created_at: now(),
    }
}

fn session(id: &str, account_id: &str, hash: &str, expires_at: Timestamp) -> PortalSession {
    PortalSession {
        id: id.into(),
        hash: hash.into(),
        account_id: account_id.into(),
        created_at: now(),
        expires_at,
        password_change: false,
    }
}

async fn accounts_own_clients_and_wait_for_approval(store: &dyn Store) {
    let ann = account("acc_ann", Some("ann"));
    store
        .insert_account(
            &ann,
            Some("$argon2id$hash"),
            audit("account.create", "acc_ann"),
        )
        .await
        .unwrap();
    // a username or an identity is unique
    assert!(conflict(
        store
            .insert_account(
                &account("acc_x", Some("ann")),
                None,
                audit("account.create", "x")
            )
            .await
    ));
    let idp = Account {
        issuer: Some("kc".into()),
        subject: Some("u-1".into()),
        ..account("acc_idp", None)
    };
    store
        .insert_account(&idp, None, audit("account.create", "acc_idp"))
        .await
        .unwrap();
    assert!(conflict(
        store
            .insert_account(
                &Account {
                    id: "acc_y".into(),
                    ..idp.clone()
                },
                None,
                audit("account.create", "y")
            )
            .await
    ));
    let (found, hash) = store
        .find_account_by_username("ann")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found, hash.as_deref()),
        (ann.clone(), Some("$argon2id$hash"))
    );
    assert!(store
        .find_account_by_username("bob")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.find_account_by_identity("kc", "u-1").await.unwrap(),
        Some(idp.clone())
    );
    assert!(store
        .find_account_by_identity("kc", "u-2")
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.list_accounts().await.unwrap().len(), 2);

    // clients of an account, listed by account
    add(
        store,
        Client {
            account_id: Some(ann.id.clone()),
            ..client("c_ann", AuthType::ApiKey)
        },
        None,
        None,
    )
    .await;
    add(store, client("c_other", AuthType::ApiKey), None, None).await;
    let mine = store.list_clients(None, Some("acc_ann")).await.unwrap();
    assert_eq!(
        mine.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["c_ann"]
    );
    assert_eq!(mine[0].account_id.as_deref(), Some("acc_ann"));
    assert_eq!(
        store
            .list_clients(Some(Status::Active), None)
            .await
            .unwrap()
            .len(),
        2
    );

    // a pending subscription is stored as such and approved once
    let pending = Subscription {
        status: SubscriptionStatus::Pending,
        ..sub("s_p", "c_ann", "orders")
    };
    store
        .insert_subscription(pending, audit("subscription.create", "s_p"))
        .await
        .unwrap();
    assert_eq!(
        store.get_subscription("s_p").await.unwrap().status,
        SubscriptionStatus::Pending
    );
    let seq = store.last_change_seq().await.unwrap();
    let approved = store
        .activate_subscription("s_p", audit("subscription.approve", "s_p"))
        .await
        .unwrap();
    assert_eq!(approved.status, SubscriptionStatus::Active);
    assert!(changes_after(store, seq)
        .await
        .contains(&(ChangeKind::Client, "c_ann".into())));
    assert!(conflict(
        store
            .activate_subscription("s_p", audit("subscription.approve", "s_p"))
            .await
    ));
    assert!(not_found(
        store
            .activate_subscription("s_none", audit("subscription.approve", "s"))
            .await
    ));
    // removing only a pending one (a rejection) leaves an approved one be
    let pending = Some(SubscriptionStatus::Pending);
    assert!(conflict(
        store
            .delete_subscription("s_p", pending, audit("subscription.reject", "s_p"))
            .await
    ));
    assert!(store.get_subscription("s_p").await.is_ok());
    assert!(not_found(
        store
            .delete_subscription("s_none", pending, audit("subscription.reject", "s"))
            .await
    ));
}

async fn sessions_end_at_expiry_sign_out_disable_and_password_change(store: &dyn Store) {
    let ann = account("acc_ann", Some("ann"));
    store
        .insert_account(&ann, Some("h1"), audit("account.create", "acc_ann"))
        .await
        .unwrap();
    let at = now();
    for (id, hash) in [("ses_1", "h_1"), ("ses_2", "h_2"), ("ses_3", "h_3")] {
        store
            .insert_session(&session(id, "acc_ann", hash, at + 3600))
            .await
            .unwrap();
    }
    store
        .insert_session(&session("ses_old", "acc_ann", "h_old", at - 1))
        .await
        .unwrap();
    let (s, a) = store.find_session("h_1", at).await.unwrap().unwrap();
    assert_eq!((s.id.as_str(), a.id.as_str()), ("ses_1", "acc_ann"));
    assert!(
        store.find_session("h_old", at).await.unwrap().is_none(),
        "expired"
    );
    assert!(store.find_session("h_none", at).await.unwrap().is_none());

    store.delete_session("h_3").await.unwrap();
    assert!(
        store.find_session("h_3", at).await.unwrap().is_none(),
        "signed out"
    );
    store.delete_session("h_3").await.unwrap();

    // a password change keeps the session that made it, and only that one
    store
        .set_account_password(
            "acc_ann",
            "h2",
            false,
            Some("ses_1"),
            audit("account.change_password", "acc_ann"),
        )
        .await
        .unwrap();
    assert!(store.find_session("h_1", at).await.unwrap().is_some());
    assert!(store.find_session("h_2", at).await.unwrap().is_none());
    let (_, hash) = store
        .find_account_by_username("ann")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hash.as_deref(), Some("h2"));

    // a one-time password ends every session and is marked
    store
        .set_account_password(
            "acc_ann",
            "h3",
            true,
            None,
            audit("account.set_password", "acc_ann"),
        )
        .await
        .unwrap();
    assert!(store.find_session("h_1", at).await.unwrap().is_none());
    assert!(
        store
            .get_account("acc_ann")
            .await
            .unwrap()
            .password_change_required
    );

    // disabling ends sessions and refuses them
    store
        .insert_session(&session("ses_4", "acc_ann", "h_4", at + 3600))
        .await
        .unwrap();
    let disabled = store
        .update_account(
            "acc_ann",
            AccountPatch {
                status: Some(AccountStatus::Disabled),
                ..Default::default()
            },
            audit("account.update", "acc_ann"),
        )
        .await
        .unwrap();
    assert_eq!(disabled.status, AccountStatus::Disabled);
    assert!(store.find_session("h_4", at).await.unwrap().is_none());
    assert!(not_found(
        store
            .update_account(
                "acc_none",
                AccountPatch::default(),
                audit("account.update", "x")
            )
            .await
    ));

    // an account of an identity provider has no password to set
    let idp = Account {
        issuer: Some("kc".into()),
        subject: Some("s".into()),
        ..account("acc_idp", None)
    };
    store
        .insert_account(&idp, None, audit("account.create", "acc_idp"))
        .await
        .unwrap();
    assert!(conflict(
        store
            .set_account_password(
                "acc_idp",
                "h",
                true,
                None,
                audit("account.set_password", "acc_idp")
            )
            .await
    ));
    assert!(not_found(
        store
            .set_account_password(
                "acc_none",
                "h",
                true,
                None,
                audit("account.set_password", "x")
            )
            .await
    ));
}

async fn keys_roll_with_a_grace_period_and_expire_in_order(store: &dyn Store) {
    let t = now();
    add(
        store,
        client("cli_1", AuthType::ApiKey),
        Some(new_key("key_1", "cli_1", "h1", Some(t + 1000))),
        None,
    )
    .await;
    add(
        store,
        client("cli_2", AuthType::ApiKey),
        Some(new_key("key_2", "cli_2", "h2", Some(t + 10 * 86_400))),
        None,
    )
    .await;
    let seq = store.last_change_seq().await.unwrap();
    let new = new_key("key_1b", "cli_1", "h1b", Some(t + 5000));
    let created = store
        .roll_api_key("key_1", new, t + 300, audit("key.roll", "key_1"))
        .await
        .unwrap();
    assert_eq!(
        (created.id.as_str(), created.status.as_str()),
        ("key_1b", "active")
    );
    let old = store.get_api_key("key_1").await.unwrap();
    assert_eq!(
        (
            old.status.as_str(),
            old.expires_at,
            old.replaced_by.as_deref()
        ),
        ("expiring", Some(t + 300), Some("key_1b"))
    );
    assert!(old.is_usable(t + 299) && !old.is_usable(t + 300));
    assert!(changes_after(store, seq)
        .await
        .contains(&(ChangeKind::Client, "cli_1".into())));
    // the grace never lengthens a key's life
    let again = new_key("key_1c", "cli_1", "h1c", None);
    store
        .roll_api_key("key_1b", again, t + 99_999, audit("key.roll", "key_1b"))
        .await
        .unwrap();
    assert_eq!(
        store.get_api_key("key_1b").await.unwrap().expires_at,
        Some(t + 5000)
    );
    // a revoked key, an unknown one, a key of a revoked client
    set_key(store, "key_2", Status::Revoked, None)
        .await
        .unwrap();
    assert!(conflict(
        store
            .roll_api_key(
                "key_2",
                new_key("key_2b", "cli_2", "h2b", None),
                t,
                audit("key.roll", "key_2")
            )
            .await
    ));
    assert!(not_found(
        store
            .roll_api_key(
                "key_x",
                new_key("key_xb", "cli_1", "hxb", None),
                t,
                audit("key.roll", "key_x")
            )
            .await
    ));
    revoke(store, "cli_1", t).await.unwrap();
    assert!(conflict(
        store
            .roll_api_key(
                "key_1c",
                new_key("key_1d", "cli_1", "h1d", None),
                t,
                audit("key.roll", "key_1c")
            )
            .await
    ));

    // keys about to expire: active ones only, in the window, soonest first
    add(
        store,
        client("cli_3", AuthType::ApiKey),
        Some(new_key("key_3", "cli_3", "h3", Some(t + 3 * 86_400))),
        None,
    )
    .await;
    add_key(store, "key_4", "cli_3", "h4", Some(t + 86_400))
        .await
        .unwrap();
    add_key(store, "key_5", "cli_3", "h5", Some(t + 30 * 86_400))
        .await
        .unwrap();
    add_key(store, "key_6", "cli_3", "h6", None).await.unwrap();
    add_key(store, "key_7", "cli_3", "h7", Some(t - 10))
        .await
        .unwrap();
    let soon = store.expiring_api_keys(t, t + 7 * 86_400).await.unwrap();
    assert_eq!(
        soon.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        ["key_4", "key_3"]
    );
    let counted = store.count_expiring_api_keys(t, t + 7 * 86_400).await;
    assert_eq!(counted.unwrap(), 2);
    let counted = store.count_expiring_api_keys(t, t + 60 * 86_400).await;
    assert_eq!(counted.unwrap(), 3);
}

async fn secrets_report_their_use(store: &dyn Store) {
    let t = now();
    add(
        store,
        client("cli_1", AuthType::Oauth2),
        None,
        Some(secret("sec_1", "cli_1", "s1")),
    )
    .await;
    rotate_secret(store, "sec_2", "cli_1", "s2", Some(t + 100))
        .await
        .unwrap();
    let ids: Vec<String> = store
        .secret_hashes("cli_1", t)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 2);
    let usage = HashMap::from([
        (
            "sec_1".to_string(),
            KeyUsage {
                last_used_at: t - 5,
                count: 3,
            },
        ),
        (
            "sec_2".to_string(),
            KeyUsage {
                last_used_at: t - 1,
                count: 1,
            },
        ),
    ]);
    store.record_secret_usage(&usage).await.unwrap();
    store.record_secret_usage(&usage).await.unwrap();
    let listed = store.list_secrets("cli_1").await.unwrap();
    let by_id = |id: &str| listed.iter().find(|s| s.id == id).unwrap().clone();
    assert_eq!(
        (
            by_id("sec_1").use_count,
            by_id("sec_1").last_used_at,
            by_id("sec_1").expires_at
        ),
        (6, Some(t - 5), Some(t + 100))
    );
    assert_eq!(
        (by_id("sec_2").use_count, by_id("sec_2").expires_at),
        (2, None)
    );
}

async fn restrictions_and_usage_buckets_are_kept(store: &dyn Store) {
    add(store, client("cli_1", AuthType::ApiKey), None, None).await;
    let p = ClientPatch {
        allowed_cidrs: Some(vec!["203.0.113.0/24".into(), "2001:db8::1".into()]),
        allowed_referers: Some(vec!["https://app.example.com/*".into()]),
        ..Default::default()
    };
    let c = store
        .update_client("cli_1", p, audit("client.update", "cli_1"))
        .await
        .unwrap();
    assert_eq!(c.allowed_cidrs, ["203.0.113.0/24", "2001:db8::1"]);
    let c = store.get_client("cli_1").await.unwrap();
    assert_eq!(c.allowed_referers, ["https://app.example.com/*"]);
    let lifted = ClientPatch {
        allowed_cidrs: Some(vec![]),
        ..Default::default()
    };
    let c = store
        .update_client("cli_1", lifted, audit("client.update", "cli_1"))
        .await
        .unwrap();
    assert!(c.allowed_cidrs.is_empty() && c.allowed_referers.len() == 1);

    let bucket = |start, key: &str, c2xx, c429| UsageBucket {
        start,
        service: "orders".into(),
        key_id: key.into(),
        client_id: "cli_1".into(),
        c2xx,
        c429,
        ..Default::default()
    };
    store
        .add_usage(&[bucket(3600, "key_1", 5, 1), bucket(7200, "", 2, 0)])
        .await
        .unwrap();
    // another node adds to the same bucket: nothing lost, nothing doubled
    store
        .add_usage(&[bucket(3600, "key_1", 10, 2)])
        .await
        .unwrap();
    let rows = store.client_usage("cli_1", 0, 10_000).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].start, rows[0].c2xx, rows[0].c429), (3600, 15, 3));
    assert_eq!(
        store
            .client_usage("cli_1", 7200, 10_000)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .client_usage("cli_2", 0, 10_000)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.prune_usage(7200).await.unwrap(), 1);
    assert_eq!(
        store.client_usage("cli_1", 0, 10_000).await.unwrap().len(),
        1
    );
}

/// Each behaviour, once per backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::Sqlite::open().await;
                    super::$name(&*db.store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(
                    not(tollgate_services),
                    ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
                )]
                async fn $name() {
                    let db = super::Postgres::open().await;
                    super::$name(&*db.store).await;
                }
            )*
        }
    };
}

on_both_backends!(
    clients_are_inserted_listed_and_updated,
    revoke_is_final_and_removes_everything,
    subscriptions_are_unique_per_service,
    api_keys_are_found_by_hash_and_show_their_state,
    usage_is_added_in_batches,
    replaced_secrets_keep_a_grace_period,
    external_clients_are_unique_per_issuer,
    signing_keys_rotate,
    audit_is_listed_newest_first,
    every_change_that_matters_is_in_the_feed,
    revoked_tokens_last_until_they_expire,
    quota_usage_adds_up_and_expires,
    accounts_own_clients_and_wait_for_approval,
    sessions_end_at_expiry_sign_out_disable_and_password_change,
    keys_roll_with_a_grace_period_and_expire_in_order,
    secrets_report_their_use,
    restrictions_and_usage_buckets_are_kept,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_closed_store_is_unavailable() {
    closed_store_is_unavailable(&*Sqlite::open().await.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tollgate_services),
    ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
)]
async fn postgres_closed_store_is_unavailable() {
    let db = Postgres::open().await;
    closed_store_is_unavailable(&*db.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_changes_are_never_skipped() {
    let db = Sqlite::open().await;
    concurrent_changes_are_never_skipped(db.store.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tollgate_services),
    ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
)]
async fn postgres_concurrent_changes_are_never_skipped() {
    let db = Postgres::open().await;
    concurrent_changes_are_never_skipped(db.store.clone()).await;
}

/// Needs no server: nothing listens on port 1.
#[tokio::test]
async fn postgres_unreachable_is_a_quick_unavailable() {
    let started = Instant::now();
    let r = PgStore::connect("postgres://postgres@127.0.0.1:1/none").await;
    assert!(
        matches!(r, Err(StoreError::Unavailable(_))),
        "{:?}",
        r.err()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Nodes that start together migrate one database once, without errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tollgate_services),
    ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
)]
async fn postgres_nodes_migrate_one_database_at_once() {
    let db = PgTestDatabase::create(&pg_test_url()).await;
    let nodes = (0..4).map(|_| {
        let url = db.url.clone();
        async move { PgStore::connect(&url).await }
    });
    let stores = join_all(nodes).await;
    for s in &stores {
        s.as_ref().expect("every node starts").ping().await.unwrap();
    }
    let store = stores.into_iter().next().unwrap().unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count() as i64;
    assert_eq!(applied, shipped, "each migration applied once");
    drop(db);
}

/// Run futures concurrently on their own tasks and collect their results.
async fn join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// A write that reads first waits for another writer instead of failing
/// with "database is locked" (SQLite does not wait to upgrade a read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_wait_for_another_writer() {
    let db = Sqlite::open().await;
    let store = db.store.clone();
    // Connections opened from now on get worker threads of a name of this
    // test's own (and the store's options otherwise), so the test can see
    // one of them wait for the lock.
    let options = (*store.pool.connect_options())
        .clone()
        .thread_name(|id| format!("tg-busy-{id}"));
    store.pool.set_connect_options(options);
    add(
        &*store,
        client("cli_1", AuthType::ApiKey),
        Some(new_key("key_1", "cli_1", "h1", None)),
        None,
    )
    .await;
    // every connection opened before is back in the pool (a connection
    // returns to it in the background) ...
    let deadline = Instant::now() + Duration::from_secs(4);
    while store.pool.num_idle() < store.pool.size() as usize {
        assert!(
            Instant::now() < deadline,
            "the pool's connections come back"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut other = store.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("UPDATE clients SET name = 'other' WHERE id = 'cli_1'")
        .execute(&mut *other)
        .await
        .unwrap();
    // ... and taken, so that the write opens a connection of its own
    let mut held = Vec::new();
    while store.pool.num_idle() > 0 {
        held.push(store.pool.acquire().await.unwrap());
    }
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { set_key(&*store, "key_1", Status::Active, None).await }
    });
    // the event itself: the write's connection sleeps in SQLite's busy
    // handler, waiting for the lock `other` holds (or it failed at once)
    let deadline = Instant::now() + Duration::from_secs(4);
    while !waiting.is_finished() && !a_connection_waits_for_a_lock("tg-busy-") {
        assert!(
            Instant::now() < deadline,
            "the write neither waited for the lock nor finished"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        !waiting.is_finished(),
        "the write did not wait for the other writer: {:?}",
        waiting.await
    );
    other.rollback().await.unwrap();
    waiting.await.unwrap().unwrap();
    drop(held);
}

/// Whether a SQLite worker thread of this process whose name starts with
/// `prefix` sleeps in the busy handler (a nanosleep; an idle worker waits
/// on a futex instead). Linux only: read from /proc.
fn a_connection_waits_for_a_lock(prefix: &str) -> bool {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task (Linux)");
    tasks.flatten().any(|task| {
        let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
        read("comm").starts_with(prefix) && read("wchan").contains("nanosleep")
    })
}
