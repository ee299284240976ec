//! Health tracking and latency-based routing.
//!
//! Each SyncActor keeps a [`HealthTracker`]: an RTT EWMA, consecutive and total
//! errors, and a state — `Healthy` (last request succeeded), `Degraded` (1 to
//! `down_after - 1` consecutive failures; still used, retried), `Down`
//! (`down_after` consecutive failures; no pushes or pulls, only probes, with the probe
//! interval doubling up to a maximum). Any success makes a region `Healthy` again.
//! The [`Router`] reads the actors' published views (a lock-free `DashMap`) and picks
//! the lowest-RTT region among `Healthy` ones, then `Degraded` ones, never `Down`.

use dashmap::DashMap;
use edgeswarm_core::ReadConsistency;
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

/// A region's health state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not contacted yet.
    #[default]
    Unknown,
    /// The last request succeeded.
    Healthy,
    /// Recent requests failed, fewer than `down_after` in a row.
    Degraded,
    /// `down_after` requests in a row failed; only probes are sent.
    Down,
}

impl Health {
    /// Name stored in `edge_replicas.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }
}

/// The seed's performance tiers by average latency.
pub fn performance_tier(ms: f64) -> &'static str {
    if ms < 50.0 {
        "Excellent"
    } else if ms < 100.0 {
        "Good"
    } else {
        "Needs Work"
    }
}

/// Health state machine of one region (pure: callers pass `now`).
#[derive(Debug, Clone)]
pub struct HealthTracker {
    /// Current state.
    pub health: Health,
    /// RTT EWMA in ms (`None` until the first sample).
    pub rtt_ewma_ms: Option<f64>,
    /// Failures in a row.
    pub consecutive_errors: u32,
    /// Failures since start.
    pub errors_total: u64,
    /// The most recent failure, for status.
    pub last_error: Option<String>,
    /// When the next probe is due.
    pub next_probe: Instant,
    /// Current probe backoff (doubles while down).
    pub backoff: Duration,
    alpha: f64,
    down_after: u32,
    probe_interval: Duration,
    max_backoff: Duration,
}

impl HealthTracker {
    /// A tracker with the given tuning.
    pub fn new(now: Instant, alpha: f64, down_after: u32, probe_interval: Duration, max_backoff: Duration) -> Self {
        HealthTracker {
            health: Health::Unknown,
            rtt_ewma_ms: None,
            consecutive_errors: 0,
            errors_total: 0,
            last_error: None,
            next_probe: now,
            backoff: probe_interval,
            alpha,
            down_after: down_after.max(1),
            probe_interval,
            max_backoff: max_backoff.max(probe_interval),
        }
    }

    /// Records a successful round trip (with its RTT, if it is a fair sample).
    pub fn success(&mut self, now: Instant, rtt: Option<Duration>) {
        if let Some(r) = rtt {
            let ms = r.as_secs_f64() * 1000.0;
            self.rtt_ewma_ms = Some(match self.rtt_ewma_ms {
                None => ms,
                Some(old) => old + self.alpha * (ms - old),
            });
        }
        self.consecutive_errors = 0;
        self.health = Health::Healthy;
        self.backoff = self.probe_interval;
        self.next_probe = now + self.probe_interval;
    }

    /// Records a failure; returns true if the region just went down.
    pub fn failure(&mut self, now: Instant, err: String) -> bool {
        self.consecutive_errors += 1;
        self.errors_total += 1;
        self.last_error = Some(err);
        let was_down = self.health == Health::Down;
        if self.consecutive_errors >= self.down_after {
            self.health = Health::Down;
            if was_down {
                self.backoff = (self.backoff * 2).min(self.max_backoff);
            }
            self.next_probe = now + self.backoff;
        } else {
            self.health = Health::Degraded;
            self.next_probe = now + self.probe_interval;
        }
        !was_down && self.health == Health::Down
    }

    /// How long to wait before retrying a failed push while not down.
    pub fn retry_delay(&self) -> Duration {
        (Duration::from_millis(25) * 2u32.saturating_pow(self.consecutive_errors.min(6))).min(self.probe_interval)
    }
}

/// What the router knows about one region.
#[derive(Debug, Clone, Serialize)]
pub struct RouteInfo {
    /// Health state.
    pub health: Health,
    /// Measured RTT EWMA, or the configured latency before any sample.
    pub rtt_ms: f64,
    /// How far the region is behind this node's writes, in ms.
    pub lag_ms: u64,
    /// Position in configuration (stable tie-break).
    pub order: usize,
}

/// Where a read should go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadTarget {
    /// The home file.
    Local,
    /// A named region.
    Region(String),
}

/// Latency-based routing over the regions' published health.
#[derive(Debug, Default)]
pub struct Router {
    routes: DashMap<String, RouteInfo>,
}

impl Router {
    /// Publishes a region's view (called by its actor).
    pub fn update(&self, region: &str, info: RouteInfo) {
        self.routes.insert(region.to_string(), info);
    }

    /// Forgets a region (removed from a running system): no read is routed to it.
    pub fn remove(&self, region: &str) {
        self.routes.remove(region);
    }

    /// A region's current view.
    pub fn get(&self, region: &str) -> Option<RouteInfo> {
        self.routes.get(region).map(|r| r.clone())
    }

    /// Known region names.
    pub fn regions(&self) -> Vec<String> {
        let mut v: Vec<(usize, String)> = self.routes.iter().map(|e| (e.value().order, e.key().clone())).collect();
        v.sort();
        v.into_iter().map(|(_, n)| n).collect()
    }

    /// The nearest usable region: healthy before degraded (unknown counts as
    /// degraded), lowest RTT first, within `max_lag` if given. `None` if none qualifies.
    pub fn nearest(&self, max_lag: Option<Duration>) -> Option<String> {
        let mut best: Option<(u8, f64, usize, String)> = None;
        for e in self.routes.iter() {
            let i = e.value();
            let rank = match i.health {
                Health::Healthy => 0,
                Health::Degraded | Health::Unknown => 1,
                Health::Down => continue,
            };
            if let Some(m) = max_lag {
                if i.lag_ms as u128 > m.as_millis() {
                    continue;
                }
            }
            let cand = (rank, i.rtt_ms, i.order, e.key().clone());
            let better = match &best {
                None => true,
                Some(b) => (cand.0, cand.1, cand.2).partial_cmp(&(b.0, b.1, b.2)) == Some(std::cmp::Ordering::Less),
            };
            if better {
                best = Some(cand);
            }
        }
        best.map(|b| b.3)
    }

    /// Resolves a read consistency level. `Nearest` falls back to `Local` when no
    /// region qualifies (the home file always serves this node's own writes).
    pub fn target(&self, rc: &ReadConsistency) -> std::result::Result<ReadTarget, String> {
        match rc {
            ReadConsistency::Local => Ok(ReadTarget::Local),
            ReadConsistency::Region(n) => {
                if self.routes.contains_key(n) {
                    Ok(ReadTarget::Region(n.clone()))
                } else {
                    Err(n.clone())
                }
            }
            ReadConsistency::Nearest { max_lag } => Ok(self.nearest(*max_lag).map(ReadTarget::Region).unwrap_or(ReadTarget::Local)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(h: Health, rtt: f64, order: usize) -> RouteInfo {
        RouteInfo {
            health: h,
            rtt_ms: rtt,
            lag_ms: 0,
            order,
        }
    }

    #[test]
    fn nearest_prefers_healthy_low_rtt_and_skips_down() {
        let r = Router::default();
        r.update("us", info(Health::Healthy, 25.0, 0));
        r.update("eu", info(Health::Healthy, 45.0, 1));
        r.update("sa", info(Health::Degraded, 5.0, 2));
        assert_eq!(r.nearest(None).as_deref(), Some("us"));
        r.update("us", info(Health::Down, 25.0, 0));
        assert_eq!(r.nearest(None).as_deref(), Some("eu"));
        r.update("eu", info(Health::Degraded, 45.0, 1));
        assert_eq!(r.nearest(None).as_deref(), Some("sa"));
        let mut lagging = info(Health::Healthy, 1.0, 3);
        lagging.lag_ms = 10_000;
        r.update("ap", lagging);
        assert_eq!(r.nearest(None).as_deref(), Some("ap"));
        assert_eq!(r.nearest(Some(Duration::from_secs(1))).as_deref(), Some("sa"));
        assert_eq!(r.target(&ReadConsistency::Region("nope".into())), Err("nope".to_string()));
    }

    #[tokio::test(start_paused = true)]
    async fn health_goes_degraded_down_and_back_with_backoff() {
        let p = Duration::from_millis(100);
        let now = Instant::now();
        let mut h = HealthTracker::new(now, 0.5, 3, p, Duration::from_millis(400));
        h.success(now, Some(Duration::from_millis(40)));
        assert_eq!(h.health, Health::Healthy);
        assert!(!h.failure(now, "x".into()));
        assert_eq!(h.health, Health::Degraded);
        assert!(!h.failure(now, "x".into()));
        assert!(h.failure(now, "x".into()));
        assert_eq!(h.health, Health::Down);
        assert_eq!(h.next_probe, now + p);
        tokio::time::advance(p).await;
        let t = Instant::now();
        h.failure(t, "x".into());
        assert_eq!(h.next_probe, t + p * 2);
        h.failure(t, "x".into());
        h.failure(t, "x".into());
        assert_eq!(h.backoff, Duration::from_millis(400), "capped");
        h.success(t, Some(Duration::from_millis(60)));
        assert_eq!(h.health, Health::Healthy);
        assert_eq!(h.rtt_ewma_ms, Some(50.0));
        assert_eq!(h.backoff, p);
    }
}
