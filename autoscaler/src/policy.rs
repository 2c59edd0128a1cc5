//! RunPod's scaler semantics (`docs/runpod-protocol.md` section 4) as a pure function.
//!
//! - `queue_delay`: add a worker while the oldest normal-priority job has waited longer than
//!   `scaler_value` seconds; from zero workers, the first queued job starts one at once.
//! - `request_count`: desired = ceil((in_queue + in_progress) / scaler_value).
//! - Always within `min_workers..=max_workers`; low-priority jobs (RunPod's `lowPriority`,
//!   sluice's batch lines) never add workers to an endpoint that has some, but an endpoint at
//!   zero with no other work starts one for them, so a batch is never stranded.
//! - Scale-down only of workers idle for `idle_timeout`, longest idle first; a worker holding a
//!   job is never stopped (it is drained: it finishes, takes nothing new, then exits).

use protocol::config::{Scaler, ScalingSettings};
use std::time::Duration;

/// What the queue says about one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QueueState {
    /// Normal-priority jobs waiting.
    pub in_queue: usize,
    /// Low-priority jobs waiting (they run on existing workers only).
    pub in_queue_low: usize,
    /// Jobs taken by workers and not yet finished.
    pub in_progress: usize,
    /// How long the oldest normal-priority job has waited.
    pub oldest_queued: Duration,
}

impl From<&queue::QueueMetrics> for QueueState {
    /// What the store's numbers say (the control loop's and the KEDA scaler's view).
    fn from(m: &queue::QueueMetrics) -> Self {
        QueueState {
            in_queue: m.in_queue,
            in_queue_low: m.in_queue_low_priority,
            in_progress: m.in_progress,
            oldest_queued: Duration::from_millis(m.oldest_queued_ms),
        }
    }
}

/// A worker's state as the policy sees it (the control loop derives it from the actuator and
/// the store's live list; the simulator from its model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// Started, not yet taking jobs (spawn, weight load).
    Initializing,
    /// Up, holding no job since `since` (a time on the policy's clock).
    Idle {
        /// When it was first seen holding no job, as a time on the policy's clock.
        since: Duration,
    },
    /// Holding at least one job (or its jobs are unknown for now): never drained as idle.
    Running,
    /// Told to stop: finishing its jobs, taking none.
    Draining,
    /// Not heard from: never live within the startup limit, or silent too long after it was.
    /// It does not count toward capacity (the control loop kills it).
    Unhealthy,
    /// Loaded and frozen (SIGSTOP), taking no jobs: no capacity until the control loop thaws
    /// it, which it does before starting any new worker.
    Parked,
}

/// One worker of the endpoint, as the policy is given it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerView {
    /// The worker's id (what [`Decision::drain`] lists).
    pub id: String,
    /// Its current state.
    pub state: WorkerState,
}

/// What an observer remembers of a live worker between looks, to tell busy from idle: the
/// control loop and the KEDA scaler both judge a worker by it.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdleClock {
    /// Jobs it had taken at the last look ([`queue::LiveWorker::taken`]).
    taken: u64,
    idle_since: Option<Duration>,
}

impl IdleClock {
    /// The worker's state at `now` (the policy's clock) from what the store says: `jobs` held,
    /// `taken` since the store first heard of it. Jobs taken since the last look count as
    /// work even if they all ended in between (short jobs are never seen held).
    pub fn observe(&mut self, jobs: usize, taken: u64, now: Duration) -> WorkerState {
        let worked = std::mem::replace(&mut self.taken, taken) != taken;
        if jobs > 0 || worked {
            self.idle_since = None;
        }
        if jobs > 0 {
            WorkerState::Running
        } else {
            WorkerState::Idle {
                since: *self.idle_since.get_or_insert(now),
            }
        }
    }

    /// Start the idle time over (a thawed worker).
    pub fn restart(&mut self) {
        self.idle_since = None;
    }
}

/// Workers to start, and ids of workers to drain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// How many new workers to start.
    pub start: usize,
    /// Idle workers to drain, longest idle first (empty whenever `start` is not 0).
    pub drain: Vec<String>,
}

/// Workers that count toward capacity: not draining, not unhealthy, not parked.
fn counted(w: &WorkerView) -> bool {
    !matches!(
        w.state,
        WorkerState::Draining | WorkerState::Unhealthy | WorkerState::Parked
    )
}

/// The number of workers the endpoint should have, before the min/max bounds.
fn wanted(q: &QueueState, workers: &[WorkerView], cfg: &ScalingSettings) -> usize {
    let active = workers.iter().filter(|w| counted(w)).count();
    // Low-priority work alone keeps (or starts) one worker, never more.
    let low_floor = usize::from(q.in_queue_low > 0);
    let wanted = match cfg.scaler {
        Scaler::RequestCount => {
            let per = cfg.scaler_value.max(f64::MIN_POSITIVE);
            ((q.in_queue + q.in_progress) as f64 / per).ceil() as usize
        }
        Scaler::QueueDelay => {
            if q.in_queue > 0 && active == 0 {
                return 1;
            }
            let waiting_too_long =
                q.in_queue > 0 && q.oldest_queued.as_secs_f64() > cfg.scaler_value;
            // One worker at a time, and none while another is still starting: a cold start
            // is slower than the threshold, so without this every tick would add one.
            let starting = workers.iter().any(|w| w.state == WorkerState::Initializing);
            if waiting_too_long && !starting {
                active + 1
            } else {
                active
            }
        }
    };
    wanted.max(low_floor)
}

/// The scaling decision for one endpoint at time `now` (the clock of [`WorkerState::Idle`]'s
/// `since`): start workers up to the scaler's target, bounded by `min_workers..=max_workers`;
/// or else drain workers idle for at least `idle_timeout_secs`, longest idle first, down to
/// `min_workers` (queue_delay) or the target (request_count). Draining and unhealthy workers
/// do not count as capacity. Pure, so the simulator replays it on a virtual clock.
pub fn decide(
    q: &QueueState,
    workers: &[WorkerView],
    cfg: &ScalingSettings,
    now: Duration,
) -> Decision {
    let active: Vec<&WorkerView> = workers.iter().filter(|w| counted(w)).collect();
    let (min, max) = (cfg.min_workers as usize, cfg.max_workers as usize);
    let desired = wanted(q, workers, cfg).clamp(min, max.max(min));
    if desired > active.len() {
        return Decision {
            start: desired - active.len(),
            drain: Vec::new(),
        };
    }
    let idle_timeout = Duration::from_secs(cfg.idle_timeout_secs);
    let mut idle: Vec<(Duration, &str)> = active
        .iter()
        .filter_map(|w| match w.state {
            WorkerState::Idle { since } if now.saturating_sub(since) >= idle_timeout => {
                Some((since, w.id.as_str()))
            }
            _ => None,
        })
        .collect();
    idle.sort();
    // queue_delay keeps a worker until it has idled out (down to min_workers); request_count
    // keeps as many as the work asks for.
    let keep = match cfg.scaler {
        Scaler::QueueDelay => min,
        Scaler::RequestCount => desired,
    };
    let surplus = active.len().saturating_sub(keep);
    Decision {
        start: 0,
        drain: idle
            .into_iter()
            .take(surplus)
            .map(|(_, id)| id.to_string())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(scaler: Scaler, value: f64, min: u32, max: u32) -> ScalingSettings {
        ScalingSettings {
            min_workers: min,
            max_workers: max,
            idle_timeout_secs: 5,
            scaler,
            scaler_value: value,
            ..ScalingSettings::default()
        }
    }

    fn w(id: &str, state: WorkerState) -> WorkerView {
        WorkerView {
            id: id.into(),
            state,
        }
    }

    fn idle(id: &str, since_s: u64) -> WorkerView {
        w(
            id,
            WorkerState::Idle {
                since: Duration::from_secs(since_s),
            },
        )
    }

    fn queued(n: usize, oldest_s: u64) -> QueueState {
        QueueState {
            in_queue: n,
            oldest_queued: Duration::from_secs(oldest_s),
            ..QueueState::default()
        }
    }

    const T: Duration = Duration::from_secs(100);

    #[test]
    fn parked_workers_are_no_capacity_and_never_drained() {
        // A parked worker is as good as none: the first job asks for a worker (the control
        // loop thaws the parked one), and an idle-timeout pass never lists it.
        let c = cfg(Scaler::QueueDelay, 4.0, 0, 3);
        let parked = [w("p", WorkerState::Parked)];
        assert_eq!(decide(&queued(1, 0), &parked, &c, T).start, 1);
        assert_eq!(
            decide(&QueueState::default(), &parked, &c, T),
            Decision::default()
        );
        let rc = cfg(Scaler::RequestCount, 1.0, 0, 3);
        let two = [w("p", WorkerState::Parked), idle("i", 0)];
        assert_eq!(decide(&queued(2, 0), &two, &rc, T).start, 1);
    }

    #[test]
    fn first_job_starts_a_worker_from_zero_at_once() {
        let c = cfg(Scaler::QueueDelay, 4.0, 0, 3);
        assert_eq!(decide(&queued(1, 0), &[], &c, T).start, 1);
        assert_eq!(
            decide(&QueueState::default(), &[], &c, T),
            Decision::default()
        );
    }

    #[test]
    fn low_priority_jobs_start_one_worker_from_zero_and_never_more() {
        let c = cfg(Scaler::QueueDelay, 4.0, 0, 3);
        let rc = cfg(Scaler::RequestCount, 1.0, 0, 3);
        let q = QueueState {
            in_queue_low: 50,
            oldest_queued: Duration::from_secs(600),
            ..QueueState::default()
        };
        assert_eq!(decide(&q, &[], &c, T).start, 1, "no other work: one worker");
        assert_eq!(decide(&q, &[], &rc, T).start, 1);
        let running = [w("a", WorkerState::Running)];
        assert_eq!(decide(&q, &running, &c, T).start, 0);
        assert_eq!(decide(&q, &running, &rc, T).start, 0);
        // Its worker is not drained while low-priority work waits.
        let idle = [w(
            "a",
            WorkerState::Idle {
                since: Duration::ZERO,
            },
        )];
        assert!(decide(&q, &idle, &rc, T).drain.is_empty());
    }

    #[test]
    fn queue_delay_adds_one_worker_past_the_threshold_and_waits_for_starting_ones() {
        let c = cfg(Scaler::QueueDelay, 4.0, 0, 3);
        let running = [w("a", WorkerState::Running)];
        assert_eq!(
            decide(&queued(3, 2), &running, &c, T).start,
            0,
            "under the threshold"
        );
        assert_eq!(decide(&queued(3, 5), &running, &c, T).start, 1);
        let starting = [
            w("a", WorkerState::Running),
            w("b", WorkerState::Initializing),
        ];
        assert_eq!(
            decide(&queued(3, 9), &starting, &c, T).start,
            0,
            "one cold start at a time"
        );
    }

    #[test]
    fn request_count_is_ceil_of_work_over_value_within_bounds() {
        let c = cfg(Scaler::RequestCount, 2.0, 1, 3);
        let q = QueueState {
            in_queue: 3,
            in_progress: 2,
            ..QueueState::default()
        };
        // ceil(5 / 2) = 3 workers wanted, one exists.
        assert_eq!(decide(&q, &[w("a", WorkerState::Running)], &c, T).start, 2);
        let big = QueueState {
            in_queue: 100,
            ..QueueState::default()
        };
        assert_eq!(decide(&big, &[], &c, T).start, 3, "max_workers caps it");
        assert_eq!(
            decide(&QueueState::default(), &[], &c, T).start,
            1,
            "min_workers stay on"
        );
    }

    #[test]
    fn only_workers_idle_past_the_timeout_are_drained_longest_idle_first() {
        let c = cfg(Scaler::QueueDelay, 4.0, 0, 3);
        let ws = [
            idle("recent", 98),
            idle("old", 10),
            idle("older", 5),
            w("busy", WorkerState::Running),
        ];
        let d = decide(
            &QueueState {
                in_progress: 1,
                ..Default::default()
            },
            &ws,
            &c,
            T,
        );
        // Work remains for the busy worker: three surplus, two idle long enough.
        assert_eq!(d.drain, vec!["older".to_string(), "old".to_string()]);
        assert_eq!(d.start, 0);
    }

    #[test]
    fn a_worker_holding_a_job_is_never_stopped() {
        let c = cfg(Scaler::RequestCount, 1.0, 0, 3);
        let ws = [w("a", WorkerState::Running), w("b", WorkerState::Running)];
        assert!(decide(&QueueState::default(), &ws, &c, T).drain.is_empty());
    }

    #[test]
    fn min_workers_are_kept_even_when_idle() {
        let c = cfg(Scaler::QueueDelay, 4.0, 1, 3);
        let ws = [idle("a", 0), idle("b", 0)];
        assert_eq!(
            decide(&QueueState::default(), &ws, &c, T).drain,
            vec!["a".to_string()]
        );
    }

    #[test]
    fn draining_and_unhealthy_workers_do_not_count_as_capacity() {
        let c = cfg(Scaler::QueueDelay, 4.0, 0, 3);
        let ws = [
            w("a", WorkerState::Draining),
            w("b", WorkerState::Unhealthy),
        ];
        assert_eq!(decide(&queued(1, 0), &ws, &c, T).start, 1);
    }

    /// Steady load that the current workers handle: decisions stay "nothing" tick after tick,
    /// with no start/stop oscillation.
    #[test]
    fn steady_load_does_not_flap() {
        for c in [
            cfg(Scaler::QueueDelay, 4.0, 0, 5),
            cfg(Scaler::RequestCount, 2.0, 0, 5),
        ] {
            let ws = [w("a", WorkerState::Running), w("b", WorkerState::Running)];
            let q = QueueState {
                in_queue: 1,
                in_progress: 2,
                oldest_queued: Duration::from_secs(1),
                ..Default::default()
            };
            for tick in 0..60 {
                let d = decide(&q, &ws, &c, Duration::from_secs(tick));
                assert_eq!(d, Decision::default(), "{:?} at tick {tick}", c.scaler);
            }
        }
    }
}
