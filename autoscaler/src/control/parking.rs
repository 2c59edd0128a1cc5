//! The tiers below a running worker, as the control loop moves an endpoint through them:
//! parking an idled-out worker (frozen, loaded) instead of draining it, thawing parked workers
//! before starting new ones, evicting parked workers after `park_timeout_secs`, under memory
//! pressure or when their devices are needed, and demoting an endpoint's weights from the
//! page cache `weights_ram_secs` after its last worker went.

use super::{Controller, Endpoint};
use crate::actuator::Managed;
use crate::demotion::{worth_holding, ArrivalRate};
use crate::tiers;
use protocol::health::Tier;
use std::time::{Duration, Instant};

/// The window over which an endpoint's arrival rate is counted for cost-aware demotion.
const RATE_WINDOW: Duration = Duration::from_secs(3600);

/// Below this share of available memory the host is short: parked workers are evicted
/// (oldest first, one per tick) and none is parked.
const LOW_MEMORY: f64 = 0.10;

impl Controller {
    /// Note `ep`'s arrivals since the last look (`arrived`: the store's count).
    pub(super) fn count_arrivals(&mut self, ep: &str, arrived: u64) {
        let (rate, last) = self
            .rates
            .entry(ep.to_string())
            .or_insert_with(|| (ArrivalRate::new(RATE_WINDOW), None));
        if let Some(before) = *last {
            rate.add(Instant::now(), arrived.saturating_sub(before));
        }
        *last = Some(arrived);
    }

    /// Cost-aware demotion from `tier` to `colder` (see [`crate::demotion`]): `Some(false)`
    /// when `ep` holding `tier` is no longer worth `hold_price`; `None` when it is off (no
    /// `wait_price_per_sec`) or a start time is not measured yet.
    fn worth(&mut self, ep: &Endpoint, tier: Tier, colder: Tier, hold_price: f64) -> Option<bool> {
        let wait_price = ep.scaling.wait_price_per_sec;
        if wait_price <= 0.0 {
            return None;
        }
        let ms = |t| self.measured.get(&(ep.name.clone(), t)).copied();
        // A colder start not yet seen is taken as the disk's.
        let extra = ms(colder)
            .or(ms(Tier::Disk))?
            .saturating_sub(ms(tier).unwrap_or(0));
        let rate = self.rates.get_mut(&ep.name)?.0.per_sec(Instant::now());
        Some(worth_holding(
            rate,
            extra as f64 / 1e3,
            wait_price,
            hold_price,
        ))
    }

    /// Thaw up to `n` of `ep`'s parked workers, most recently parked first (the warmest);
    /// how many were thawed. The store takes them back first, so a poll the worker left open
    /// takes a queued job at once.
    pub(super) async fn thaw(
        &mut self,
        ep: &Endpoint,
        managed: &[Managed],
        n: usize,
    ) -> Result<usize, queue::QueueError> {
        let mut parked: Vec<&Managed> = managed.iter().filter(|w| w.parked.is_some()).collect();
        parked.sort_by_key(|w| std::cmp::Reverse(w.parked));
        let mut thawed = 0;
        for w in parked.into_iter().take(n) {
            self.store.reinstate(&ep.name, &w.id).await?;
            if let Err(e) = self.actuator.thaw(&w.id).await {
                tracing::warn!(worker = %w.id, "cannot thaw it: {e}");
                continue;
            }
            let t = self.tracks.entry(w.id.clone()).or_default();
            // A new start as far as readiness goes (measured from the thaw), and a worker that
            // was silent while frozen is not unhealthy.
            t.ready_ms = None;
            t.clock.restart();
            t.last_live = Some(Instant::now());
            tracing::info!(worker = %w.id, endpoint = %ep.name, "thawed a parked worker");
            thawed += 1;
        }
        Ok(thawed)
    }

    /// Park `id` (retired, holding no job) if `ep` allows one more parked worker within its
    /// memory budget and the host has memory to spare; false if it was not parked (the
    /// caller drains it).
    pub(super) async fn park(&mut self, ep: &Endpoint, id: &str, managed: &[Managed]) -> bool {
        let s = &ep.scaling;
        let parked: Vec<&Managed> = managed.iter().filter(|w| w.parked.is_some()).collect();
        if parked.len() >= s.parked_workers as usize || low_memory() {
            return false;
        }
        let held: u64 = parked
            .iter()
            .filter_map(|w| self.actuator.resident_bytes(&w.id))
            .sum();
        let mine = self.actuator.resident_bytes(id).unwrap_or(0);
        if held + mine > s.park_memory_mib << 20 {
            tracing::info!(worker = %id, resident_mib = mine >> 20, "parking it would exceed park_memory_mib");
            return false;
        }
        match self.actuator.park(id).await {
            Ok(()) => {
                tracing::info!(worker = %id, resident_mib = mine >> 20, "idle past idle_timeout; parked");
                true
            }
            Err(e) => {
                tracing::warn!(worker = %id, "cannot park it: {e}");
                false
            }
        }
    }

    /// Evict `ep`'s parked workers past `park_timeout_secs`, and the oldest parked one while
    /// the host is short of memory.
    pub(super) async fn evict_parked(&mut self, ep: &Endpoint, managed: &[Managed]) {
        let timeout = Duration::from_secs(ep.scaling.park_timeout_secs);
        let mut parked: Vec<(Instant, &str)> = managed
            .iter()
            .filter_map(|w| Some((w.parked?, w.id.as_str())))
            .collect();
        parked.sort();
        let short = low_memory();
        let price = ep.scaling.parked_price_per_sec;
        let not_worth = self.worth(ep, Tier::Parked, Tier::Ram, price) == Some(false);
        for (i, (since, id)) in parked.into_iter().enumerate() {
            let why = if since.elapsed() >= timeout {
                "parked past park_timeout"
            } else if short && i == 0 {
                "the host is short of memory"
            } else if not_worth && i == 0 {
                "holding it costs more than the waiting a colder start would cause"
            } else {
                continue;
            };
            tracing::info!(worker = %id, "{why}; evicting it");
            self.drain(id).await;
        }
    }

    /// Evict the longest-parked worker of any endpoint (its devices are wanted by a start);
    /// whether there was one.
    pub(super) async fn evict_one_parked(&mut self) -> bool {
        let oldest = self
            .endpoints
            .iter()
            .flat_map(|e| self.actuator.managed(&e.name))
            .filter_map(|w| Some((w.parked?, w.id)))
            .min();
        let Some((_, id)) = oldest else { return false };
        tracing::info!(worker = %id, "a start needs its devices; evicting a parked worker");
        self.drain(&id).await;
        true
    }

    /// The RAM tier: drop `ep`'s weights from the page cache once it has had no worker
    /// (running or parked) for `weights_ram_secs`, or sooner when holding them is no longer
    /// worth their price (cost-aware demotion).
    pub(super) fn demote_weights(&mut self, ep: &Endpoint, workers: usize) {
        if ep.weights.is_none() {
            return;
        }
        if workers > 0 {
            self.empty_since.remove(&ep.name);
            return;
        }
        let since = *self
            .empty_since
            .entry(ep.name.clone())
            .or_insert_with(|| Some(Instant::now()));
        let hold = Duration::from_secs(ep.scaling.weights_ram_secs);
        let price = ep.scaling.ram_price_per_sec;
        let cost_aware = self.worth(ep, Tier::Ram, Tier::Disk, price) == Some(false);
        if since.is_some_and(|t| t.elapsed() >= hold || cost_aware) {
            let Some(path) = &ep.weights else { return };
            tiers::demote(path);
            tracing::info!(endpoint = %ep.name, cost_aware, "no worker; weights demoted to the disk tier");
            // Once per idle spell.
            self.empty_since.insert(ep.name.clone(), None);
        }
    }
}

/// The host has under [`LOW_MEMORY`] of its memory available.
fn low_memory() -> bool {
    tiers::available_memory_share().is_some_and(|s| s < LOW_MEMORY)
}
