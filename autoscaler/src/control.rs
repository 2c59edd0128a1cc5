//! The control loop: every tick, per endpoint, read the queue and the live workers from the
//! store, merge them with what the actuator runs into worker states, ask the policy, and carry
//! out its decision. It also hands the store a view of the fleet (states, cold starts) that
//! every gateway shows in `/v2/{endpoint}/health`.

use crate::actuator::{Actuator, ActuatorError, Exited, Managed};
use crate::policy::{decide, IdleClock, QueueState, WorkerState, WorkerView};
use protocol::config::ScalingSettings;
use protocol::health::{ColdStart, FleetState, FleetView, FleetWorker, Tier};
use protocol::metrics as m;
use queue::{LiveWorker, ScalerStore};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod parking;

/// One endpoint under control.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The endpoint's name: its queue in the store and its key in the actuator's launches.
    pub name: String,
    /// Its scaling settings (min/max workers, idle timeout, scaler), as the policy reads them.
    pub scaling: ScalingSettings,
    /// Its served weight file in the disk cache (see [`crate::Launch::weights`]): what the
    /// RAM tier demotes; `None` for custom commands.
    pub weights: Option<std::path::PathBuf>,
}

/// The control loop's timing: how often it runs, and when it gives up on a silent worker.
#[derive(Clone, Debug)]
pub struct ControlSettings {
    /// Time between two rounds of observe -> decide -> act (100 ms by default).
    pub tick: Duration,
    /// A worker not live this long after its start is unhealthy (and killed).
    pub startup_limit: Duration,
    /// A ready worker missing from the store's live list this long (counted only while the
    /// store answers) is unhealthy (and killed). Longer than a few pings: after a store outage
    /// workers need a ping to show up again.
    pub silent_limit: Duration,
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            tick: Duration::from_millis(100),
            startup_limit: Duration::from_secs(600),
            silent_limit: Duration::from_secs(30),
        }
    }
}

/// What the loop remembers about a worker between ticks.
#[derive(Default)]
struct Track {
    /// Start -> first seen live by the store (cold start to capacity).
    ready_ms: Option<u64>,
    /// Busy or idle since when.
    clock: IdleClock,
    /// Last tick (with the store answering) that found it live.
    last_live: Option<Instant>,
}

/// Least time between two steps woken by arriving jobs (ticks run regardless).
const ARRIVAL_GAP: Duration = Duration::from_millis(20);

/// A worker that ran this long after becoming ready was not in a crash loop: its crash is
/// restarted at once and resets the endpoint's back-off.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// An endpoint's worker crashes: starts are held back after each crash of a loop (a worker
/// that crashed before it was ready, or within [`STABLE_AFTER`] of it), 2 s doubling to 30 s,
/// so a broken worker (bad command, missing weights, a handler that raises at once) is
/// retried with back-off, not every tick. Shown in `/health` while it holds.
#[derive(Default)]
struct Crashes {
    /// Crashes in a row of the current loop.
    in_a_row: u32,
    /// Unexpected exits since the autoscaler started.
    restarts: u32,
    until: Option<Instant>,
    last: Option<Exited>,
}

impl Crashes {
    fn crashed(&mut self, gone: &Exited, was_ready: bool) {
        self.restarts += 1;
        if was_ready && gone.lived >= STABLE_AFTER {
            self.in_a_row = 0;
            self.until = None;
        } else {
            self.in_a_row += 1;
            let secs = (1u64 << self.in_a_row.min(5)).min(30);
            self.until = Some(Instant::now() + Duration::from_secs(secs));
        }
        self.last = Some(gone.clone());
    }

    fn holding(&self) -> bool {
        self.until.is_some_and(|t| Instant::now() < t)
    }

    /// The fleet view's entry for a crash loop that holds starts back: the crashed worker,
    /// shown unhealthy with the endpoint's restart count and its exit.
    fn view(&self) -> Option<FleetWorker> {
        let (until, last) = (self.until?, self.last.as_ref()?);
        let wait = until.checked_duration_since(Instant::now())?;
        Some(FleetWorker {
            id: last.id.clone(),
            state: FleetState::Unhealthy,
            pid: None,
            gpus: None,
            gpu_type: None,
            cpus: None,
            age_ms: None,
            cold_start: None,
            restarts: self.restarts,
            last_exit: Some(format!(
                "{} after {} ms",
                last.reason(),
                last.lived.as_millis()
            )),
            next_start_in_ms: Some(wait.as_millis() as u64),
        })
    }
}

/// The autoscaler's control loop: it owns the per-worker tracking (cold starts, idle times,
/// last sighting) and per-endpoint crash back-off between ticks; [`Controller::run`] drives it.
pub struct Controller {
    store: Arc<dyn ScalerStore>,
    actuator: Arc<dyn Actuator>,
    endpoints: Arc<[Endpoint]>,
    settings: ControlSettings,
    epoch: Instant,
    tracks: HashMap<String, Track>,
    crashes: HashMap<String, Crashes>,
    /// Exited workers the store has not been told about yet.
    gone: Vec<String>,
    /// The last step, from which the next one counts worker time.
    last_step: Option<Instant>,
    /// Per endpoint: since when it has had no worker (`None` once its weights were demoted).
    empty_since: HashMap<String, Option<Instant>>,
    /// Per endpoint: arrivals over the last hour (cost-aware demotion), and the store's
    /// arrival count at the last look.
    rates: HashMap<String, (crate::demotion::ArrivalRate, Option<u64>)>,
    /// Per endpoint and tier: the last measured start to ready, ms.
    measured: HashMap<(String, Tier), u64>,
}

impl Controller {
    /// A loop over `endpoints`, reading queues and live workers from `store` and starting and
    /// draining workers through `actuator`; nothing runs until [`Controller::run`] or
    /// [`Controller::step`].
    pub fn new(
        store: Arc<dyn ScalerStore>,
        actuator: Arc<dyn Actuator>,
        endpoints: Vec<Endpoint>,
        settings: ControlSettings,
    ) -> Self {
        Controller {
            store,
            actuator,
            endpoints: endpoints.into(),
            settings,
            epoch: Instant::now(),
            tracks: HashMap::new(),
            crashes: HashMap::new(),
            gone: Vec::new(),
            last_step: None,
            empty_since: HashMap::new(),
            rates: HashMap::new(),
            measured: HashMap::new(),
        }
    }

    /// Run until `stop` resolves, then drain every worker.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(self.settings.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let names: Vec<String> = self.endpoints.iter().map(|e| e.name.clone()).collect();
        let store = self.store.clone();
        loop {
            // A job arriving wakes the loop at once (a thaw or start need not wait up to a
            // tick), but at most every ARRIVAL_GAP, so a busy queue does not spin it.
            let gap = self
                .last_step
                .map_or(Duration::ZERO, |t| ARRIVAL_GAP.saturating_sub(t.elapsed()));
            tokio::select! {
                _ = tick.tick() => self.step().await,
                _ = async {
                    tokio::time::sleep(gap).await;
                    store.wait_arrival(&names, Duration::from_secs(5)).await;
                } => self.step().await,
                _ = &mut stop => break,
            }
        }
        self.actuator.shutdown().await;
    }

    /// Worker time since the last step of `ep`'s `alive` (unparked) workers: `min_workers` of
    /// them are the always-on (active) share, the rest flex; `parked` ones apart.
    fn count_worker_time(&self, ep: &Endpoint, alive: usize, parked: usize) {
        let Some(last) = self.last_step else { return };
        let ms = last.elapsed().as_millis() as u64;
        let active = alive.min(ep.scaling.min_workers as usize);
        let counts = [
            ("active", active),
            ("flex", alive - active),
            ("parked", parked),
        ];
        for (kind, n) in counts {
            metrics::counter!(m::WORKER_MS, "endpoint" => ep.name.clone(), "kind" => kind)
                .increment(ms * n as u64);
        }
    }

    /// One round of observe -> decide -> act, for every endpoint.
    pub async fn step(&mut self) {
        for gone in self.actuator.exited() {
            let track = self.tracks.remove(&gone.id);
            if gone.drained {
                tracing::info!(worker = %gone.id, "worker drained and exited");
            } else {
                let ready = track.is_some_and(|t| t.ready_ms.is_some());
                let c = self.crashes.entry(gone.endpoint.clone()).or_default();
                c.crashed(&gone, ready);
                tracing::warn!(
                    worker = %gone.id, reason = %gone.reason(), lived_ms = gone.lived.as_millis() as u64,
                    restarts = c.restarts, "worker exited unexpectedly"
                );
            }
            self.gone.push(gone.id);
        }
        // The store forgets them now rather than after the worker timeout, and a crashed
        // worker's jobs need not wait for its lease to run out (kept for the next tick if the
        // store is down).
        let mut still = Vec::new();
        for id in std::mem::take(&mut self.gone) {
            match self.store.lost(&id).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(worker = %id, requeued = n, "its jobs went back to the queue")
                }
                Err(_) => still.push(id),
            }
        }
        self.gone = still;
        let endpoints = self.endpoints.clone();
        for ep in endpoints.iter() {
            if let Err(e) = self.step_endpoint(ep).await {
                tracing::warn!(endpoint = %ep.name, "autoscaler: {e}");
                // Silence while the store is down is not the workers' fault.
                for t in self.tracks.values_mut() {
                    if t.last_live.is_some() {
                        t.last_live = Some(Instant::now());
                    }
                }
            }
        }
        self.last_step = Some(Instant::now());
    }

    async fn step_endpoint(&mut self, ep: &Endpoint) -> Result<(), queue::QueueError> {
        let now = self.epoch.elapsed();
        let m = self.store.metrics(&ep.name).await?;
        self.count_arrivals(&ep.name, m.arrived);
        let live: HashMap<String, LiveWorker> = self
            .store
            .workers(&ep.name)
            .await?
            .into_iter()
            .map(|w| (w.id.clone(), w))
            .collect();
        let managed = self.actuator.managed(&ep.name);
        let parked = managed.iter().filter(|w| w.parked.is_some()).count();
        self.count_worker_time(ep, managed.len() - parked, parked);
        let mut views = Vec::new();
        for w in &managed {
            let mut state = self.state_of(w, &live, now);
            // Live lists leave retired workers out, so only a missing one may have retired.
            // (Parked workers are retired by the autoscaler itself.)
            if !matches!(state, WorkerState::Draining | WorkerState::Parked)
                && !live.contains_key(&w.id)
                && self.store.is_retired(&w.id).await?
            {
                // The handler asked for a fresh worker (`stopPod`).
                self.drain(&w.id).await;
                state = WorkerState::Draining;
            }
            if state == WorkerState::Unhealthy {
                tracing::warn!(worker = %w.id, "worker unhealthy (not heard from); stopping it");
                if let Err(e) = self.actuator.kill(&w.id).await {
                    tracing::warn!(worker = %w.id, "cannot kill it: {e}");
                }
            }
            views.push(WorkerView {
                id: w.id.clone(),
                state,
            });
        }
        let q = QueueState::from(&m);
        let mut d = decide(&q, &views, &ep.scaling, now);
        if d.start > 0 && self.crashes.get(&ep.name).is_some_and(Crashes::holding) {
            tracing::debug!(endpoint = %ep.name, "workers crash in a loop; holding back");
            d.start = 0;
        }
        // Parked workers first: a thaw is a cold start of tens of ms.
        d.start -= self.thaw(ep, &managed, d.start).await?;
        self.start_workers(&ep.name, d.start, q.in_queue).await;
        for id in &d.drain {
            // No new jobs for it from now on: a worker that keeps polling while it shuts down
            // (RunPod's SDK does) would take one and sit on it until it exits.
            let held = self.store.retire(id).await?;
            if held > 0 {
                // It took a job since this tick's look: not idle after all.
                self.store.reinstate(&ep.name, id).await?;
            } else if !self.park(ep, id, &managed).await {
                tracing::info!(worker = %id, "idle past idle_timeout; draining");
                self.drain(id).await;
            }
        }
        self.evict_parked(ep, &managed).await;
        self.demote_weights(ep, managed.len());
        // Workers started just now show as initializing at once.
        let fleet = self.fleet(&ep.name, &self.actuator.managed(&ep.name), &views);
        self.store.put_fleet(&ep.name, fleet).await
    }

    /// Start `n` workers of `endpoint`; a start that fails for want of capacity is tried again
    /// at the next tick, any other failure counts as a crash (back-off).
    async fn start_workers(&mut self, endpoint: &str, n: usize, in_queue: usize) {
        for _ in 0..n {
            match self.actuator.start(endpoint).await {
                Ok(id) => {
                    tracing::info!(%endpoint, worker = %id, in_queue = in_queue, "starting a worker")
                }
                Err(ActuatorError::NoCapacity(e)) => {
                    // Capacity: try again next tick, when a worker may have released its
                    // devices (a parked one, evicted now, will).
                    tracing::debug!(%endpoint, "{e}");
                    self.evict_one_parked().await;
                    break;
                }
                Err(e) => {
                    tracing::error!(%endpoint, "cannot start a worker: {e}");
                    let failed = Exited {
                        id: format!("{endpoint}-(not started)"),
                        endpoint: endpoint.to_string(),
                        code: None,
                        signal: None,
                        drained: false,
                        lived: Duration::ZERO,
                    };
                    self.crashes
                        .entry(endpoint.to_string())
                        .or_default()
                        .crashed(&failed, false);
                    break;
                }
            }
        }
    }

    async fn drain(&self, id: &str) {
        if let Err(e) = self.actuator.drain(id).await {
            tracing::warn!(worker = %id, "cannot drain it: {e}");
        }
    }

    fn state_of(
        &mut self,
        w: &Managed,
        live: &HashMap<String, LiveWorker>,
        now: Duration,
    ) -> WorkerState {
        let t = self.tracks.entry(w.id.clone()).or_default();
        if w.draining {
            return WorkerState::Draining;
        }
        if w.parked.is_some() {
            return WorkerState::Parked;
        }
        match live.get(&w.id) {
            Some(lw) => {
                t.last_live = Some(Instant::now());
                if t.ready_ms.is_none() {
                    let ready = w.started.elapsed().as_millis() as u64;
                    t.ready_ms = Some(ready);
                    if let Some(tier) = w.tier {
                        self.measured.insert((w.endpoint.clone(), tier), ready);
                    }
                    tracing::info!(
                        worker = %w.id, spawn_ms = w.spawn_ms, load_ms = ?w.load_ms, ready_ms = ready,
                        tier = w.tier.map_or("unknown", Tier::as_str), "worker ready (cold start)"
                    );
                    let phases = [
                        ("spawn", Some(w.spawn_ms)),
                        ("load", w.load_ms),
                        ("ready", Some(ready)),
                    ];
                    for (phase, ms) in phases {
                        let tier = w.tier.map_or("unknown", Tier::as_str);
                        if let Some(ms) = ms {
                            metrics::histogram!(m::COLD_START, "endpoint" => w.endpoint.clone(), "phase" => phase, "tier" => tier)
                                .record(ms as f64 / 1e3);
                        }
                    }
                }
                t.clock.observe(lw.jobs, lw.taken, now)
            }
            // Was live, went silent for a while: unhealthy. Never live yet: still starting, up
            // to a limit.
            None if t.ready_ms.is_some() => match t.last_live {
                // Its jobs are unknown meanwhile: never drain it as idle.
                Some(at) if at.elapsed() <= self.settings.silent_limit => WorkerState::Running,
                _ => WorkerState::Unhealthy,
            },
            None if w.started.elapsed() > self.settings.startup_limit => WorkerState::Unhealthy,
            None => WorkerState::Initializing,
        }
    }

    fn fleet(&self, endpoint: &str, managed: &[Managed], views: &[WorkerView]) -> FleetView {
        let crashes = self.crashes.get(endpoint);
        let restarts = crashes.map_or(0, |c| c.restarts);
        let mut workers: Vec<FleetWorker> = managed
            .iter()
            .map(|w| {
                let state = views
                    .iter()
                    .find(|v| v.id == w.id)
                    .map_or(WorkerState::Initializing, |v| v.state);
                FleetWorker {
                    id: w.id.clone(),
                    state: fleet_state(state),
                    pid: w.pid,
                    gpus: w.gpus.clone(),
                    gpu_type: w.gpu_type.clone(),
                    cpus: w.cpus.clone(),
                    age_ms: Some(w.started.elapsed().as_millis() as u64),
                    cold_start: Some(ColdStart {
                        spawn_ms: w.spawn_ms,
                        load_ms: w.load_ms,
                        ready_ms: self.tracks.get(&w.id).and_then(|t| t.ready_ms),
                        tier: w.tier,
                        started_at_ms: w.started_at_ms,
                    }),
                    restarts,
                    last_exit: None,
                    next_start_in_ms: None,
                }
            })
            .collect();
        // A crash loop holding starts back shows as its last, unhealthy worker.
        workers.extend(crashes.filter(|c| c.holding()).and_then(Crashes::view));
        FleetView { workers }
    }
}

/// The policy's worker state as the fleet view names it.
pub fn fleet_state(s: WorkerState) -> FleetState {
    match s {
        WorkerState::Initializing => FleetState::Initializing,
        WorkerState::Idle { .. } => FleetState::Idle,
        WorkerState::Running => FleetState::Running,
        WorkerState::Draining => FleetState::Draining,
        WorkerState::Unhealthy => FleetState::Unhealthy,
        WorkerState::Parked => FleetState::Parked,
    }
}
