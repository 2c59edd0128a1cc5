//! Replay a request trace against the policy with a virtual clock and a cold-start model, and
//! add up what users pay for: queue delay, worker-seconds and cost. Time is integer
//! milliseconds, so a hand-computed trace gives exact results.

use crate::demotion::worth_holding;
use crate::policy::{decide, Decision, QueueState, WorkerState, WorkerView};
use protocol::config::ScalingSettings;
use std::collections::VecDeque;
use std::time::Duration;

/// One request of a trace: when it arrives and how long it runs, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Request {
    /// When it arrives, in ms from the start of the trace.
    pub arrival_ms: u64,
    /// How long it runs once a worker takes it, in ms.
    pub service_ms: u64,
    /// A low-priority job: it waits for existing workers and never causes a scale-up
    /// (false when the JSONL line leaves it out).
    #[serde(default)]
    pub low_priority: bool,
}

/// The simulated world: how long a worker takes to become ready from each tier of the
/// weight cache, and the clock's step.
#[derive(Clone, Copy, Debug)]
pub struct Model {
    /// Time from starting a worker until it can take jobs, in ms, its weights read from
    /// disk (the disk tier).
    pub cold_start_ms: u64,
    /// The same with its weights in the page cache (the RAM tier: the endpoint had a worker
    /// within `weights_ram_secs`).
    pub ram_start_ms: u64,
    /// Time from thawing a parked worker until it takes jobs, in ms.
    pub thaw_ms: u64,
    /// The virtual clock's step, in ms: the policy runs and workers are billed once per
    /// tick (0 is taken as 1).
    pub tick_ms: u64,
}

/// Prices: flex workers per second, active (always-on, `min_workers`) workers per hour, and
/// what holding the lower tiers costs.
#[derive(Clone, Copy, Debug)]
pub struct Prices {
    /// Dollars per second of a flex (serverless, scale-to-zero) worker.
    pub flex_per_sec: f64,
    /// Dollars per hour of an active (always-on) worker.
    pub active_per_hour: f64,
    /// Dollars per second of a parked worker (its memory, held while it uses no compute).
    pub parked_per_sec: f64,
    /// Dollars per second of an endpoint's weights held in RAM with no worker.
    pub ram_per_sec: f64,
}

/// What one simulated run gave: each request's queue delay, the worker-seconds billed, and
/// the cold starts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Queue delay (arrival to a worker taking it) of every request that ran, ms, in the
    /// order workers took them.
    pub delays_ms: Vec<u64>,
    /// Seconds workers existed beyond the `min_workers` always-on ones (billed per second).
    pub flex_seconds: f64,
    /// Seconds of the always-on (`min_workers`) workers.
    pub active_seconds: f64,
    /// Workers started or thawed (each one cold start).
    pub cold_starts: usize,
    /// Of those: thaws of a parked worker, starts from the RAM tier, from the disk tier.
    pub starts_by_tier: [usize; 3],
    /// Seconds of parked workers.
    pub parked_seconds: f64,
    /// Seconds the weights were held in RAM with no worker (running or parked).
    pub ram_seconds: f64,
}

impl Outcome {
    /// Total cost in dollars: flex seconds at `p.flex_per_sec` plus active hours at
    /// `p.active_per_hour`.
    pub fn cost(&self, p: &Prices) -> f64 {
        self.flex_seconds * p.flex_per_sec
            + self.active_seconds / 3600.0 * p.active_per_hour
            + self.parked_seconds * p.parked_per_sec
            + self.ram_seconds * p.ram_per_sec
    }

    /// The `pct` percentile (0..=100) of the queue delays, in ms: the nearest-rank value at
    /// `round(pct / 100 * (n - 1))` of the sorted delays; 0 when no request ran.
    pub fn delay_percentile(&self, pct: f64) -> f64 {
        let mut d: Vec<f64> = self.delays_ms.iter().map(|&x| x as f64).collect();
        d.sort_by(f64::total_cmp);
        if d.is_empty() {
            return 0.0;
        }
        let rank = ((pct / 100.0) * (d.len() - 1) as f64).round() as usize;
        d[rank]
    }
}

struct Sim {
    id: String,
    ready_at: u64,
    busy_until: Option<u64>,
    idle_since: u64,
}

/// The simulated workers and queue at one virtual time.
#[derive(Default)]
struct World {
    workers: Vec<Sim>,
    queue: VecDeque<Request>,
    started: usize,
    /// Parked workers: id, parked since (ms).
    parked: Vec<(String, u64)>,
    /// The weights stay in RAM until then (ms), unless a worker holds them longer.
    ram_until: u64,
    /// Arrival times (ms) over the last hour, for cost-aware demotion.
    arrivals: VecDeque<u64>,
}

impl World {
    /// Jobs that ended by `t` free their workers; workers ready this tick start idle.
    fn settle(&mut self, t: u64, tick: u64) {
        for w in &mut self.workers {
            if w.busy_until.is_some_and(|end| end <= t) {
                w.busy_until = None;
                w.idle_since = t;
            }
            if w.ready_at <= t && w.ready_at + tick > t {
                w.idle_since = t;
            }
        }
    }

    /// Free ready workers take queued jobs, normal priority before low; each job's queue
    /// delay goes into `delays_ms`.
    fn assign(&mut self, t: u64, delays_ms: &mut Vec<u64>) {
        for w in self
            .workers
            .iter_mut()
            .filter(|w| w.ready_at <= t && w.busy_until.is_none())
        {
            let pick = self
                .queue
                .iter()
                .position(|r| !r.low_priority)
                .or(if self.queue.is_empty() { None } else { Some(0) });
            let Some(i) = pick else { break };
            let r = self.queue.remove(i).expect("index from position");
            delays_ms.push(t - r.arrival_ms);
            w.busy_until = Some(t + r.service_ms);
        }
    }

    /// What the store would report at `t`.
    fn queue_state(&self, t: u64) -> QueueState {
        let normal: Vec<&Request> = self.queue.iter().filter(|r| !r.low_priority).collect();
        QueueState {
            in_queue: normal.len(),
            in_queue_low: self.queue.len() - normal.len(),
            in_progress: self
                .workers
                .iter()
                .filter(|w| w.busy_until.is_some())
                .count(),
            oldest_queued: Duration::from_millis(
                normal.first().map(|r| t - r.arrival_ms).unwrap_or(0),
            ),
        }
    }

    /// What the control loop would see of each worker at `t`.
    fn views(&self, t: u64) -> Vec<WorkerView> {
        self.workers
            .iter()
            .map(|w| WorkerView {
                id: w.id.clone(),
                state: if w.ready_at > t {
                    WorkerState::Initializing
                } else if w.busy_until.is_some() {
                    WorkerState::Running
                } else {
                    WorkerState::Idle {
                        since: Duration::from_millis(w.idle_since),
                    }
                },
            })
            .collect()
    }

    /// Carry out the policy's decision as the control loop does: drained workers (idle here)
    /// are parked up to `parked_workers`, else stopped; parked ones past `park_timeout_secs`
    /// are evicted; starts thaw parked workers first, then start from the RAM tier while the
    /// weights are held (a worker or parked worker exists, or `weights_ram_secs` since the
    /// last did), else from disk. Counts starts by tier into `by_tier`.
    fn apply(
        &mut self,
        d: &Decision,
        t: u64,
        (model, cfg): (Model, &ScalingSettings),
        by_tier: &mut [usize; 3],
    ) {
        for id in &d.drain {
            self.workers.retain(|w| &w.id != id);
            if self.parked.len() < cfg.parked_workers as usize {
                self.parked.push((id.clone(), t));
            }
        }
        let timeout = cfg.park_timeout_secs * 1000;
        // Cost-aware demotion, as the control loop does it (`crate::demotion`).
        let worth = |hold_price: f64, extra_ms: u64| {
            cfg.wait_price_per_sec <= 0.0
                || worth_holding(
                    self.rate(t),
                    extra_ms as f64 / 1e3,
                    cfg.wait_price_per_sec,
                    hold_price,
                )
        };
        let keep_parked = worth(
            cfg.parked_price_per_sec,
            model.ram_start_ms.saturating_sub(model.thaw_ms),
        );
        let keep_ram = worth(
            cfg.ram_price_per_sec,
            model.cold_start_ms.saturating_sub(model.ram_start_ms),
        );
        self.parked
            .retain(|(_, at)| t - at < timeout && keep_parked);
        if !keep_ram && self.workers.is_empty() && self.parked.is_empty() {
            self.ram_until = self.ram_until.min(t);
        }
        let in_ram = !self.workers.is_empty() || !self.parked.is_empty() || t < self.ram_until;
        for _ in 0..d.start {
            let (id, ready_at) = if let Some((id, _)) = self.parked.pop() {
                by_tier[0] += 1;
                (id, t + model.thaw_ms)
            } else {
                self.started += 1;
                let (tier, ms) = if in_ram {
                    (1, model.ram_start_ms)
                } else {
                    (2, model.cold_start_ms)
                };
                by_tier[tier] += 1;
                (format!("w{}", self.started), t + ms)
            };
            self.workers.push(Sim {
                id,
                ready_at,
                busy_until: None,
                idle_since: t,
            });
        }
        if !self.workers.is_empty() || !self.parked.is_empty() {
            self.ram_until = t + cfg.weights_ram_secs * 1000;
        }
    }

    /// Arrivals per second over the last hour (`arrivals` holds that hour; over the time so
    /// far, before an hour has passed).
    fn rate(&self, t: u64) -> f64 {
        self.arrivals.len() as f64 / (t.clamp(1, 3_600_000) as f64 / 1e3)
    }

    fn idle(&self) -> bool {
        self.queue.is_empty() && self.workers.iter().all(|w| w.busy_until.is_none())
    }
}

/// Run `trace` (sorted by arrival) to completion under `cfg`.
pub fn run(trace: &[Request], cfg: &ScalingSettings, model: Model) -> Outcome {
    let tick = model.tick_ms.max(1);
    let mut out = Outcome::default();
    let mut world = World::default();
    let mut next = 0;
    let mut t = 0u64;
    let end_of_arrivals = trace.last().map(|r| r.arrival_ms).unwrap_or(0);
    loop {
        world.settle(t, tick);
        while next < trace.len() && trace[next].arrival_ms <= t {
            world.queue.push_back(trace[next]);
            world.arrivals.push_back(trace[next].arrival_ms);
            next += 1;
        }
        while world.arrivals.front().is_some_and(|&a| a + 3_600_000 < t) {
            world.arrivals.pop_front();
        }
        world.assign(t, &mut out.delays_ms);
        let d = decide(
            &world.queue_state(t),
            &world.views(t),
            cfg,
            Duration::from_millis(t),
        );
        world.apply(&d, t, (model, cfg), &mut out.starts_by_tier);
        out.cold_starts += d.start;
        let done = next >= trace.len() && world.idle();
        let n = world.workers.len();
        if done && t >= end_of_arrivals && n <= cfg.min_workers as usize {
            break;
        }
        // Bill this tick: the first `min_workers` workers are the always-on ones.
        let secs = tick as f64 / 1000.0;
        let active = n.min(cfg.min_workers as usize);
        out.active_seconds += active as f64 * secs;
        out.flex_seconds += (n - active) as f64 * secs;
        out.parked_seconds += world.parked.len() as f64 * secs;
        if n == 0 && world.parked.is_empty() && t < world.ram_until {
            out.ram_seconds += secs;
        }
        t += tick;
        // A trace that never drains (max_workers 0 with work queued) still ends.
        if t > end_of_arrivals + 24 * 3_600_000 {
            break;
        }
    }
    out
}

/// Hours per day a workload must keep a worker busy before always-on is cheaper than flex.
pub fn break_even_hours_per_day(p: &Prices) -> f64 {
    24.0 * p.active_per_hour / (p.flex_per_sec * 3600.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::config::Scaler;

    fn cfg(min: u32, max: u32) -> ScalingSettings {
        ScalingSettings {
            min_workers: min,
            max_workers: max,
            idle_timeout_secs: 5,
            scaler: Scaler::QueueDelay,
            scaler_value: 4.0,
            ..ScalingSettings::default()
        }
    }

    const MODEL: Model = Model {
        cold_start_ms: 5_000,
        ram_start_ms: 5_000,
        thaw_ms: 100,
        tick_ms: 100,
    };

    const PRICES: Prices = Prices {
        flex_per_sec: 0.001,
        active_per_hour: 3.6,
        parked_per_sec: 0.0002,
        ram_per_sec: 0.00001,
    };

    fn req(arrival_s: u64, service_s: u64) -> Request {
        Request {
            arrival_ms: arrival_s * 1000,
            service_ms: service_s * 1000,
            low_priority: false,
        }
    }

    /// Two 10 s jobs 100 s apart, scale from zero, 5 s cold start, 5 s idle timeout: each job
    /// waits 5 s, and each time a worker lives 5 + 10 + 5 = 20 s.
    #[test]
    fn hand_computed_trace_from_zero() {
        let o = run(&[req(0, 10), req(100, 10)], &cfg(0, 1), MODEL);
        assert_eq!(o.delays_ms, vec![5_000, 5_000]);
        assert_eq!(o.cold_starts, 2);
        assert!((o.flex_seconds - 40.0).abs() < 1e-9, "{}", o.flex_seconds);
        assert_eq!(o.active_seconds, 0.0);
        let p = Prices {
            ram_per_sec: 0.0,
            ..PRICES
        };
        assert!((o.cost(&p) - 0.04).abs() < 1e-12);
    }

    /// With one always-on worker the same trace has no queue delay and no flex time; the
    /// active worker is billed for the whole run.
    #[test]
    fn hand_computed_trace_with_an_active_worker() {
        let o = run(&[req(0, 10), req(100, 10)], &cfg(1, 1), MODEL);
        // It starts cold at t=0 (the run begins empty), then stays.
        assert_eq!(o.delays_ms, vec![5_000, 0]);
        assert_eq!(o.cold_starts, 1);
        assert_eq!(o.flex_seconds, 0.0);
        assert!(
            (o.active_seconds - 110.0).abs() < 1e-9,
            "{}",
            o.active_seconds
        );
    }

    /// The same two jobs with one parked worker allowed: the first waits for a disk start
    /// (5 s), the worker idles 5 s and is parked (not billed as flex), and the second job
    /// thaws it (100 ms). Worker time: 5 + 10 + 5 s flex, then 0.1 + 10 + 5 s flex; parked
    /// from 20 s to 100 s.
    #[test]
    fn hand_computed_trace_with_a_parked_worker() {
        let mut c = cfg(0, 1);
        c.parked_workers = 1;
        let o = run(&[req(0, 10), req(100, 10)], &c, MODEL);
        assert_eq!(o.delays_ms, vec![5_000, 100]);
        assert_eq!(o.starts_by_tier, [1, 0, 1]);
        assert!((o.flex_seconds - 35.1).abs() < 1e-6, "{}", o.flex_seconds);
        assert!(
            (o.parked_seconds - 80.0).abs() < 1e-6,
            "{}",
            o.parked_seconds
        );
        // Without parking but with the weights held in RAM, the second start is a RAM one.
        let ram = Model {
            ram_start_ms: 2_000,
            ..MODEL
        };
        let o = run(&[req(0, 10), req(100, 10)], &cfg(0, 1), ram);
        assert_eq!(o.delays_ms, vec![5_000, 2_000]);
        assert_eq!(o.starts_by_tier, [0, 1, 1]);
        assert!((o.ram_seconds - 80.0).abs() < 1e-6, "{}", o.ram_seconds);
        // With no RAM hold, both start from disk.
        let mut c = cfg(0, 1);
        c.weights_ram_secs = 0;
        assert_eq!(
            run(&[req(0, 10), req(100, 10)], &c, ram).starts_by_tier,
            [0, 0, 2]
        );
    }

    #[test]
    fn low_priority_work_alone_gets_one_worker() {
        let mut reqs: Vec<Request> = (1..5).map(|i| req(0, i)).collect();
        reqs.iter_mut().for_each(|r| r.low_priority = true);
        let o = run(&reqs, &cfg(0, 2), MODEL);
        assert_eq!(o.delays_ms.len(), 4, "every request ran");
        assert_eq!(o.cold_starts, 1, "on one worker, not two");
    }

    #[test]
    fn break_even_matches_the_arithmetic_users_do() {
        // An A100 at $1.89/h always-on vs $0.00076/s flex: 1.89 / (0.00076 * 3600) of a day.
        let h = break_even_hours_per_day(&Prices {
            flex_per_sec: 0.00076,
            active_per_hour: 1.89,
            ..PRICES
        });
        assert!((h - 16.58).abs() < 0.01, "{h}");
    }
}
