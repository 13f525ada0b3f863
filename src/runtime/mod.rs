//! What one configuration compiles to at run time: the router, the upstream
//! pools and the plans, swapped whole on reload. The proxy reads it; the
//! control plane (reload, admin registry, token service) builds and reads it.

pub mod router;
pub mod upstream;

use std::sync::Arc;

use crate::config::Config;
use crate::ratelimit::Plans;
use router::Router;
use upstream::Upstreams;

/// Everything derived from one configuration; a request keeps the
/// snapshot it started with.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub router: Router,
    pub upstreams: Upstreams,
    pub plans: Plans,
}

impl Snapshot {
    pub fn new(config: Arc<Config>) -> Self {
        Snapshot {
            router: Router::new(&config.routes),
            upstreams: Upstreams::new(config.services.values()),
            plans: Plans::new(&config),
            config,
        }
    }
}
