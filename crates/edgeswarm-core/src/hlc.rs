//! Hybrid logical clock.
//!
//! A stamp is 64 bits: the upper 48 are milliseconds since the Unix epoch, the lower 16
//! a logical counter. Stamps from one clock are strictly increasing even when the wall
//! clock stands still or goes backwards; `observe` merges a remote stamp so causality is
//! kept across nodes; a remote stamp further ahead of our wall clock than `max_drift_ms`
//! is rejected so one node with a broken clock cannot drag every other node into the
//! future. The store persists the high-water mark and seeds the clock with it on start,
//! so a restart never reissues a stamp.
//!
//! Why not the `uhlc` crate: its stamps are 64-bit NTP time plus a 128-bit id, it cannot
//! be seeded with a persisted high-water mark, and we keep the origin in its own column.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// A hybrid logical clock stamp (48-bit ms | 16-bit counter). Ordered like a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc(pub u64);

impl Hlc {
    const LOGICAL_BITS: u32 = 16;
    const LOGICAL_MASK: u64 = (1 << Self::LOGICAL_BITS) - 1;

    /// Builds a stamp from wall-clock milliseconds and a logical counter.
    pub fn new(millis: u64, logical: u16) -> Self {
        Hlc((millis << Self::LOGICAL_BITS) | logical as u64)
    }
    /// Physical part, in milliseconds since the epoch.
    pub fn millis(self) -> u64 {
        self.0 >> Self::LOGICAL_BITS
    }
    /// Logical counter part.
    pub fn logical(self) -> u16 {
        (self.0 & Self::LOGICAL_MASK) as u16
    }
    /// As stored in SQLite (INTEGER is signed 64-bit; 48-bit millis keep the sign bit 0).
    pub fn as_i64(self) -> i64 {
        self.0 as i64
    }
    /// From a stored INTEGER.
    pub fn from_i64(v: i64) -> Self {
        Hlc(v as u64)
    }
}

/// Error from merging a remote stamp.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClockError {
    /// The remote stamp is too far in the future to be trusted.
    #[error("remote clock stamp is {ahead_ms} ms ahead of this node's clock (limit {max_ms} ms); check the remote node's clock (NTP)")]
    TooFarAhead { ahead_ms: u64, max_ms: u64 },
}

/// Source of wall-clock milliseconds; replaceable in tests.
pub type WallClock = fn() -> u64;

fn system_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A hybrid logical clock. Cheap to share behind an `Arc`; `now` takes a short lock.
pub struct HybridClock {
    /// The last stamp issued or observed; every new stamp is greater.
    last: Mutex<Hlc>,
    /// Remote stamps further ahead of the wall clock than this are rejected.
    max_drift_ms: u64,
    /// Wall clock; `system_millis` outside tests.
    wall: WallClock,
}

impl std::fmt::Debug for HybridClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridClock")
            .field("last", &self.last())
            .field("max_drift_ms", &self.max_drift_ms)
            .finish()
    }
}

impl HybridClock {
    /// Default bound on how far ahead a remote stamp may be: 60 s.
    pub const DEFAULT_MAX_DRIFT_MS: u64 = 60_000;

    /// A clock on the system wall clock, seeded with a persisted high-water mark.
    pub fn new(high_water: Hlc) -> Self {
        Self::with_wall_clock(high_water, Self::DEFAULT_MAX_DRIFT_MS, system_millis)
    }

    /// A clock with an explicit wall clock and drift bound (tests).
    ///
    /// A high-water mark more than `max_drift_ms` ahead of the wall clock is lowered to
    /// that bound: the clock never runs further ahead of the wall clock than it lets a
    /// remote stamp be (a persisted mark that far ahead was tampered with, or the wall
    /// clock was set back by more than the drift; stamps it issued meanwhile may then
    /// repeat, and equal stamps are ordered by content, so replicas still agree).
    pub fn with_wall_clock(high_water: Hlc, max_drift_ms: u64, wall: WallClock) -> Self {
        let ceiling = Hlc::new(wall().saturating_add(max_drift_ms), 0);
        HybridClock {
            last: Mutex::new(high_water.min(ceiling)),
            max_drift_ms,
            wall,
        }
    }

    /// The greatest stamp issued or observed so far (the value to persist).
    pub fn last(&self) -> Hlc {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a new stamp, strictly greater than every stamp before it.
    pub fn now(&self) -> Hlc {
        let wall = (self.wall)();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let next = if wall > last.millis() {
            Hlc::new(wall, 0)
        } else {
            // Wall clock stands still or went backwards: advance the logical part.
            // On counter overflow borrow the next millisecond.
            Hlc(last.0 + 1)
        };
        *last = next;
        next
    }

    /// Merges a stamp seen from another node so later local stamps order after it.
    pub fn observe(&self, remote: Hlc) -> Result<(), ClockError> {
        let wall = (self.wall)();
        if remote.millis() > wall + self.max_drift_ms {
            return Err(ClockError::TooFarAhead {
                ahead_ms: remote.millis() - wall,
                max_ms: self.max_drift_ms,
            });
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if remote > *last {
            *last = remote;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    static FAKE: AtomicU64 = AtomicU64::new(1_000_000);
    fn fake() -> u64 {
        FAKE.load(Ordering::SeqCst)
    }

    #[test]
    fn monotonic_when_wall_clock_goes_backwards() {
        let c = HybridClock::with_wall_clock(Hlc(0), 1000, fake);
        FAKE.store(1_000_000, Ordering::SeqCst);
        let a = c.now();
        FAKE.store(999_000, Ordering::SeqCst); // one second back
        let b = c.now();
        let d = c.now();
        assert!(a < b && b < d, "{a:?} {b:?} {d:?}");
        assert_eq!(b.millis(), 1_000_000);
        assert_eq!(d.logical(), 2);
    }

    #[test]
    fn seeded_high_water_mark_is_never_reissued() {
        let hw = Hlc::new(system_millis() + 5_000, 7);
        let c = HybridClock::new(hw);
        assert!(c.now() > hw);
    }

    #[test]
    fn observe_rejects_far_future_and_merges_near() {
        let c = HybridClock::new(Hlc(0));
        let far = Hlc::new(system_millis() + 3_600_000, 0);
        assert!(matches!(c.observe(far), Err(ClockError::TooFarAhead { .. })));
        let near = Hlc::new(system_millis() + 1_000, 3);
        c.observe(near).unwrap();
        assert!(c.now() > near);
    }

    #[test]
    fn a_far_future_high_water_mark_is_clamped_to_the_drift() {
        let hw = Hlc::new(system_millis() + 3_600_000, 0);
        let c = HybridClock::new(hw);
        let s = c.now();
        assert!(s.millis() <= system_millis() + HybridClock::DEFAULT_MAX_DRIFT_MS + 1, "{s:?}");
    }

    #[test]
    fn observe_never_moves_the_clock_past_the_drift() {
        let c = HybridClock::new(Hlc(0));
        let _ = c.observe(Hlc::new(system_millis() + 3_600_000, 0));
        let at_limit = Hlc::new(system_millis() + HybridClock::DEFAULT_MAX_DRIFT_MS - 1_000, 0);
        c.observe(at_limit).unwrap();
        assert!(c.now().millis() <= system_millis() + HybridClock::DEFAULT_MAX_DRIFT_MS);
    }

    #[test]
    fn logical_overflow_borrows_a_millisecond() {
        let c = HybridClock::new(Hlc::new(system_millis() + 10_000, u16::MAX));
        let s = c.now();
        assert_eq!(s.logical(), 0);
    }
}
