//! Changes made on any node (read from the store's change feed) applied to
//! this node's caches: a changed client's cached credentials are dropped, a
//! revoked token is refused, rotated signing keys are loaded.

use std::sync::{Arc, OnceLock};

use crate::auth::jwt::JwtAuth;
use crate::auth::Authenticator;
use crate::control::token::TokenService;
use crate::live::LiveListener;
use crate::store::feed::ChangeSink;
use crate::store::{Change, ChangeKind, ChangeListener};

struct Targets {
    auth: Arc<Authenticator>,
    jwt: Arc<JwtAuth>,
    oauth: Arc<TokenService>,
    live: Arc<LiveListener>,
}

/// Bound once the gateway's parts exist. The feed starts before them (so
/// no change committed during start-up is missed) but delivers only after.
#[derive(Default)]
pub struct CacheSync {
    targets: OnceLock<Targets>,
}

impl CacheSync {
    pub fn bind(
        &self,
        auth: Arc<Authenticator>,
        jwt: Arc<JwtAuth>,
        oauth: Arc<TokenService>,
        live: Arc<LiveListener>,
    ) {
        let _ = self.targets.set(Targets {
            auth,
            jwt,
            oauth,
            live,
        });
    }
}

impl ChangeSink for CacheSync {
    fn apply(&self, change: &Change) {
        let Some(t) = self.targets.get() else {
            tracing::error!(
                seq = change.seq,
                "change feed delivered before the gateway was ready"
            );
            return;
        };
        match change.kind {
            ChangeKind::Client => {
                t.auth.client_changed(&change.target);
                t.live.client_changed(&change.target);
            }
            ChangeKind::Token => {
                let (jwt, jti, live) = (t.jwt.clone(), change.target.clone(), t.live.clone());
                tokio::spawn(async move {
                    jwt.revoke_jti(&jti).await;
                    live.token_revoked();
                });
            }
            ChangeKind::Other => {
                tracing::warn!(seq = change.seq, "a change of a kind this version does not know; dropping every cached credential");
                t.auth.forget_all();
            }
            ChangeKind::SigningKey => {
                let oauth = t.oauth.clone();
                tokio::spawn(async move {
                    if let Err(e) = oauth.reload_signing_keys().await {
                        tracing::warn!(error = %e, "cannot load rotated signing keys; the next change or restart retries");
                    }
                });
            }
        }
    }
}
