//! Authorization: an authenticated client may use a route when it holds a
//! subscription to the route's service and its credential carries every
//! scope the route requires.

use crate::auth::Authenticated;
use crate::config::{Route, RouteTarget};
use crate::proxy::forward::Identity;
use crate::proxy::reject::Rejection;

pub fn authorize(auth: &Authenticated, route: &Route) -> Result<Identity, Rejection> {
    let p = &auth.principal;
    let subscription_id = match &route.target {
        RouteTarget::Service(s) => match p.subscriptions.get(&s.name) {
            Some(sub) => sub.header.clone(),
            None => return Err(Rejection::NotSubscribed),
        },
        // a direct answer behind authentication has no service to subscribe to
        RouteTarget::Respond(_) => http::HeaderValue::from_static(""),
    };
    let missing: Vec<&str> = route
        .scopes
        .iter()
        .filter(|s| !auth.scopes.contains(s))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(Rejection::InsufficientScope(route.scopes.join(" ")));
    }
    Ok(Identity {
        consumer_id: p.id_header.clone(),
        consumer_name: p.name_header.clone(),
        subscription_id,
    })
}
