//! Connections that outlive their request: an upgraded (WebSocket)
//! connection was authorized once, before its `101`. When anything behind
//! it changes (its client, key, secret or subscription: on this node at
//! once, on the others through the change feed), its credential is checked
//! again, as a new request would be, and the connection is cut if it no
//! longer passes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Waker;

use http::HeaderName;
use pingora::http::RequestHeader;

use crate::auth::Authenticator;
use crate::config::Route;
use crate::store::ChangeListener;

/// Set once to end one connection; the connection's stream polls it.
#[derive(Debug, Default)]
pub struct KillSwitch {
    killed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl KillSwitch {
    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Remember who to wake when the switch is thrown.
    pub fn watch(&self, waker: &Waker) {
        if let Ok(mut w) = self.waker.lock() {
            match w.as_ref() {
                Some(old) if old.will_wake(waker) => {}
                _ => *w = Some(waker.clone()),
            }
        }
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().ok().and_then(|mut w| w.take()) {
            w.wake();
        }
    }
}

/// What it takes to authorize the connection's request again.
struct Entry {
    switch: Weak<KillSwitch>,
    /// The request head with its credential headers only.
    credentials: RequestHeader,
    route: Arc<Route>,
    api_key_header: HeaderName,
}

pub struct LiveConnections {
    auth: Arc<Authenticator>,
    by_client: Mutex<HashMap<String, Vec<Entry>>>,
}

impl LiveConnections {
    pub fn new(auth: Arc<Authenticator>) -> Self {
        LiveConnections {
            auth,
            by_client: Mutex::new(HashMap::new()),
        }
    }

    /// An upgraded connection of `client_id`, authorized by the credential
    /// headers of `req` for `route`; answers the switch that ends it.
    pub fn register(
        &self,
        client_id: &str,
        req: &RequestHeader,
        route: Arc<Route>,
        api_key_header: &HeaderName,
    ) -> Arc<KillSwitch> {
        let switch = Arc::new(KillSwitch::default());
        let mut credentials = RequestHeader::from(http::Request::new(()).into_parts().0);
        for name in [api_key_header, &http::header::AUTHORIZATION] {
            for value in req.headers.get_all(name) {
                let _ = credentials.append_header(name.clone(), value.clone());
            }
        }
        if let Ok(mut map) = self.by_client.lock() {
            let entries = map.entry(client_id.to_string()).or_default();
            entries.retain(|e| e.switch.strong_count() > 0);
            entries.push(Entry {
                switch: Arc::downgrade(&switch),
                credentials,
                route,
                api_key_header: api_key_header.clone(),
            });
        }
        switch
    }

    /// Connections open now, for the gauge and tests.
    pub fn count(&self) -> usize {
        self.by_client
            .lock()
            .map(|m| {
                m.values()
                    .flatten()
                    .filter(|e| e.switch.strong_count() > 0)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Check every connection of `client_id` again (its caches were just
    /// dropped), off the caller's path.
    fn recheck(self: &Arc<Self>, client_id: Option<&str>) {
        let checks: Vec<(Arc<KillSwitch>, RequestHeader, Arc<Route>, HeaderName)> = {
            let Ok(mut map) = self.by_client.lock() else {
                return;
            };
            map.retain(|_, entries| {
                entries.retain(|e| e.switch.strong_count() > 0);
                !entries.is_empty()
            });
            let chosen: Vec<&Vec<Entry>> = match client_id {
                Some(id) => map.get(id).into_iter().collect(),
                None => map.values().collect(),
            };
            chosen
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    Some((
                        e.switch.upgrade()?,
                        e.credentials.clone(),
                        e.route.clone(),
                        e.api_key_header.clone(),
                    ))
                })
                .collect()
        };
        if checks.is_empty() {
            return;
        }
        let this = self.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("no runtime to check upgraded connections on; they stay open");
            return;
        };
        runtime.spawn(async move {
            for (switch, credentials, route, header) in checks {
                if !this.still_allowed(&credentials, &route, &header).await {
                    tracing::info!(route = %route.name, "credential behind an upgraded connection no longer passes: closing it");
                    switch.kill();
                }
            }
        });
    }

    async fn still_allowed(&self, req: &RequestHeader, route: &Route, header: &HeaderName) -> bool {
        match self.auth.authenticate(req, &route.auth, header).await {
            Ok(Some(a)) => crate::authz::authorize(&a, route).is_ok(),
            Ok(None) => true,
            // a store that cannot answer keeps the connection: the request
            // path keeps cached credentials working in an outage too
            Err(crate::auth::AuthFailure::StoreUnavailable(_)) => true,
            Err(_) => false,
        }
    }
}

/// What the admin calls (this node, at once) and the change feed (every
/// node) notify.
pub struct LiveListener(pub Arc<LiveConnections>);

impl ChangeListener for LiveListener {
    fn client_changed(&self, client_id: &str) {
        self.0.recheck(Some(client_id));
    }
}

impl LiveListener {
    /// A token was revoked: whichever connection it opened is checked.
    pub fn token_revoked(&self) {
        self.0.recheck(None);
    }
}
