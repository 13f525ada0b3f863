//! Metrics registry and logging setup.

pub mod logging;
pub mod metrics;

pub use metrics::{CacheCounters, Metrics, RouteMeters};
