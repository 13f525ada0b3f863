//! Upstream target choice: round robin over a service's targets, skipping a
//! target that refused a connection until its cool-down has passed (then it
//! is tried again, so a recovered target comes back by itself).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Service;

const COOL_DOWN: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    /// Milliseconds since `epoch` before which the target is skipped.
    down_until_ms: AtomicU64,
}

#[derive(Debug)]
pub struct UpstreamPool {
    pub service: Arc<Service>,
    targets: Vec<Target>,
    next: AtomicUsize,
    epoch: Instant,
}

impl UpstreamPool {
    pub fn new(service: Arc<Service>) -> Self {
        let targets = service
            .upstreams
            .iter()
            .map(|a| Target {
                addr: *a,
                down_until_ms: AtomicU64::new(0),
            })
            .collect();
        UpstreamPool {
            service,
            targets,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The next target not yet `tried` by this request: a healthy one if
    /// any, else any untried one (better a likely failure than none).
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<SocketAddr> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let candidates = (0..n)
            .map(|i| &self.targets[(start + i) % n])
            .filter(|t| !tried.contains(&t.addr));
        let mut fallback = None;
        for t in candidates {
            if t.down_until_ms.load(Ordering::Relaxed) <= now {
                return Some(t.addr);
            }
            fallback.get_or_insert(t.addr);
        }
        fallback
    }

    pub fn has_untried(&self, tried: &[SocketAddr]) -> bool {
        self.targets.iter().any(|t| !tried.contains(&t.addr))
    }

    pub fn mark_down(&self, addr: SocketAddr) {
        let until = self.now_ms() + COOL_DOWN.as_millis() as u64;
        for t in self.targets.iter().filter(|t| t.addr == addr) {
            t.down_until_ms.store(until, Ordering::Relaxed);
        }
    }

    pub fn mark_up(&self, addr: SocketAddr) {
        for t in self.targets.iter().filter(|t| t.addr == addr) {
            if t.down_until_ms.load(Ordering::Relaxed) != 0 {
                t.down_until_ms.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// One pool per service of a configuration snapshot.
#[derive(Debug, Default)]
pub struct Upstreams {
    pools: HashMap<String, Arc<UpstreamPool>>,
}

impl Upstreams {
    pub fn new<'a>(services: impl Iterator<Item = &'a Arc<Service>>) -> Self {
        Upstreams {
            pools: services
                .map(|s| (s.name.clone(), Arc::new(UpstreamPool::new(s.clone()))))
                .collect(),
        }
    }

    pub fn get(&self, service: &str) -> Option<&Arc<UpstreamPool>> {
        self.pools.get(service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: u16) -> UpstreamPool {
        UpstreamPool::new(Arc::new(Service {
            name: "s".into(),
            upstreams: (1..=n)
                .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
                .collect(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            retries: 1,
            tls: None,
            http2: false,
            pool_key: 0,
        }))
    }

    #[test]
    fn round_robin_skips_down_and_tried() {
        let p = pool(3);
        let picks: Vec<u16> = (0..6).map(|_| p.pick(&[]).unwrap().port()).collect();
        assert_eq!(picks, vec![1, 2, 3, 1, 2, 3]);
        p.mark_down(SocketAddr::from(([127, 0, 0, 1], 2)));
        let picks: Vec<u16> = (0..4).map(|_| p.pick(&[]).unwrap().port()).collect();
        assert!(!picks.contains(&2), "{picks:?}");
        let tried = [
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 1], 3)),
        ];
        // only a down target is left: it is still offered
        assert_eq!(p.pick(&tried).unwrap().port(), 2);
        p.mark_up(SocketAddr::from(([127, 0, 0, 1], 2)));
        assert!((0..3).any(|_| p.pick(&[]).unwrap().port() == 2));
    }
}
