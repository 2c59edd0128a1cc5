//! Cost-aware demotion: when to move an idle endpoint down a tier (parked -> RAM -> disk).
//! Holding a tier costs its price every second; giving it up makes the next start colder by
//! `extra_start` seconds, which each request that arrives meanwhile pays in waiting. With
//! requests arriving at `rate` per second and a second of waiting priced at `wait_price`, the
//! expected cost of demoting is `rate * extra_start * wait_price` per second: hold the tier
//! while that exceeds its holding price, demote once it does not. As an endpoint idles its
//! recent arrival rate falls, so it walks down the tiers; a busy one stays warm.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Whether a tier is still worth holding (see the module's text): `rate` arrivals per
/// second, `extra_start` seconds a demotion adds to the next start, `wait_price` dollars per
/// second of a request's wait, `hold_price` dollars per second of holding the tier.
pub fn worth_holding(rate: f64, extra_start: f64, wait_price: f64, hold_price: f64) -> bool {
    rate * extra_start.max(0.0) * wait_price > hold_price
}

/// An endpoint's recent arrival rate: arrivals counted over a sliding window.
#[derive(Debug)]
pub struct ArrivalRate {
    window: Duration,
    seen: VecDeque<(Instant, u64)>,
    since: Instant,
}

impl ArrivalRate {
    /// A rate over the last `window`.
    pub fn new(window: Duration) -> Self {
        ArrivalRate {
            window,
            seen: VecDeque::new(),
            since: Instant::now(),
        }
    }

    /// Note `n` arrivals at `at`.
    pub fn add(&mut self, at: Instant, n: u64) {
        if n > 0 {
            self.seen.push_back((at, n));
        }
    }

    /// Arrivals per second over the window up to `now` (over the time observed, when that
    /// is shorter than the window).
    pub fn per_sec(&mut self, now: Instant) -> f64 {
        while self
            .seen
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            self.seen.pop_front();
        }
        let span = now
            .duration_since(self.since)
            .min(self.window)
            .as_secs_f64();
        let n: u64 = self.seen.iter().map(|(_, n)| n).sum();
        if span <= 0.0 {
            0.0
        } else {
            n as f64 / span
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_while_the_expected_cost_of_a_colder_start_exceeds_the_price() {
        // One request a minute, a thaw saves 1 s over a RAM start, a second of waiting is
        // worth $0.01: demoting costs 1/60 * 1 * 0.01 = $0.000167/s.
        let rate = 1.0 / 60.0;
        assert!(worth_holding(rate, 1.0, 0.01, 0.0001));
        assert!(!worth_holding(rate, 1.0, 0.01, 0.0002));
        // No arrivals lately, or nothing saved: never worth anything.
        assert!(!worth_holding(0.0, 1.0, 0.01, 1e-9));
        assert!(!worth_holding(rate, -1.0, 0.01, 0.0));
    }

    #[test]
    fn the_rate_counts_arrivals_in_the_window_only() {
        let mut r = ArrivalRate::new(Duration::from_secs(100));
        let t0 = r.since;
        r.add(t0 + Duration::from_secs(10), 5);
        r.add(t0 + Duration::from_secs(90), 5);
        assert!((r.per_sec(t0 + Duration::from_secs(100)) - 0.1).abs() < 1e-9);
        // At 150 s the first 5 fell out of the window.
        assert!((r.per_sec(t0 + Duration::from_secs(150)) - 0.05).abs() < 1e-9);
        assert_eq!(r.per_sec(t0 + Duration::from_secs(400)), 0.0);
    }
}
