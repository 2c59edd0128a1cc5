//! The local-process actuator: each worker is a child process (`sluice worker`, or a custom
//! endpoint's command), its output prefixed into ours. Draining is SIGTERM (a sluice worker
//! then finishes its jobs and exits; SIGKILL if it is still there after `drain_grace`).

use crate::actuator::{
    Actuator, ActuatorError, Device, DevicePool, Exited, Launch, Managed, NoCapacity,
};
use crate::gpus::{GpuGrant, GpuPool};
use async_trait::async_trait;
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// The line a worker prints when its weights are loaded: `SLUICE_PHASE loaded load_ms=N`.
const PHASE_MARK: &str = "SLUICE_PHASE loaded";

/// What a worker prints (on stdout) when its weights are loaded, for the cold-start accounting.
pub fn phase_line(load: Duration) -> String {
    format!("{PHASE_MARK} load_ms={}", load.as_millis())
}

/// The local-process [`Actuator`]: starts each endpoint's workers from its [`Launch`] as child
/// processes of ours, hands them GPUs and CPU cores from its pools, and drains them by SIGTERM
/// (SIGKILL after the drain grace).
pub struct LocalProcesses {
    launches: HashMap<String, Launch>,
    drain_grace: Duration,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    running: HashMap<String, Managed>,
    exited: Vec<Exited>,
    gpus: GpuPool,
    cpus: DevicePool,
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Signal a worker's whole process group (it leads its own), so a wrapper script's children
/// are stopped too.
fn signal(pid: Option<u32>, sig: i32) {
    #[cfg(unix)]
    if let Some(pid) = pid {
        // SAFETY: kill(2) on the group of a pid we spawned; the waiter task has not reaped it
        // while it is listed as running.
        unsafe {
            libc::kill(-(pid as libc::pid_t), sig);
        }
    }
}

impl LocalProcesses {
    /// `gpus`: the GPUs workers may be given, by type (may be empty); `cpus`: the CPU cores
    /// workers that ask for pinning may be pinned to (`CUDA_VISIBLE_DEVICES` style; see
    /// [`allowed_cpus`]).
    pub fn new(launches: Vec<Launch>, gpus: GpuPool, cpus: &str, drain_grace: Duration) -> Self {
        LocalProcesses {
            launches: launches
                .into_iter()
                .map(|l| (l.endpoint.clone(), l))
                .collect(),
            drain_grace,
            state: Arc::new(Mutex::new(State {
                gpus,
                cpus: DevicePool::parse(cpus),
                ..State::default()
            })),
        }
    }
}

/// The CPU cores this process may run on (its affinity mask), `CUDA_VISIBLE_DEVICES` style:
/// the cores pinned workers are given. Empty where the mask cannot be read.
pub fn allowed_cpus() -> String {
    #[cfg(target_os = "linux")]
    // SAFETY: sched_getaffinity(2) fills a zeroed cpu_set_t of the size we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) == 0 {
            return (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",");
        }
    }
    String::new()
}

/// The command that starts worker `id` of `launch` with its GPUs (`CUDA_VISIBLE_DEVICES`,
/// their type in `SLUICE_GPU_TYPE`) and pinned to `cpus` (none: unpinned), in its own process
/// group, dying with us.
fn command(launch: &Launch, id: &str, gpus: Option<&GpuGrant>, cpus: &[String]) -> Command {
    let mut cmd = Command::new(&launch.program);
    cmd.args(launch.args_for(id))
        .envs(launch.env_for(id))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // A worker given no GPUs sees none, not every GPU the launcher can see.
    cmd.env(
        "CUDA_VISIBLE_DEVICES",
        gpus.map(|g| g.ids.join(",")).unwrap_or_default(),
    );
    if let Some(g) = gpus {
        // CUDA numbers GPUs fastest first by default; nvidia-smi (and so our pool) by PCI bus.
        cmd.env("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
        if let Some(t) = &g.gpu_type {
            cmd.env("SLUICE_GPU_TYPE", t);
        }
    }
    if !cpus.is_empty() {
        // candle and mistral.rs size their thread pools by this (default: every core).
        cmd.env("RAYON_NUM_THREADS", cpus.len().to_string());
    }
    let cores: Vec<usize> = cpus.iter().filter_map(|c| c.parse().ok()).collect();
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(2) and sched_setaffinity(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Workers stop with us even if we die without cleaning up (SIGKILL, OOM), so no
            // orphan keeps a GPU that a restarted autoscaler would hand out again. SIGKILL, not
            // SIGTERM: a parked (stopped) worker would never act on a SIGTERM. Its jobs, if
            // any, go back to the queue by their lease.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if !cores.is_empty() {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                for &c in &cores {
                    libc::CPU_SET(c, &mut set);
                }
                if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    // Their own process group: a Ctrl-C at the terminal reaches us, and we drain them.
    #[cfg(unix)]
    cmd.process_group(0);
    if let Some(dir) = &launch.cwd {
        cmd.current_dir(dir);
    }
    cmd
}

impl LocalProcesses {
    /// The GPUs and CPU cores a new worker of `launch` gets, all or nothing.
    fn take_devices(&self, launch: &Launch) -> Result<(Option<GpuGrant>, Vec<String>), NoCapacity> {
        let mut st = lock(&self.state);
        let short = |device, wanted| NoCapacity {
            device,
            wanted,
            endpoint: launch.endpoint.clone(),
        };
        let gpus = if launch.gpu_types.is_empty() && launch.gpus_per_worker == 0 {
            None
        } else {
            let wanted = launch
                .gpu_types
                .first()
                .map_or(launch.gpus_per_worker, |t| t.1);
            let grant = st.gpus.take(&launch.gpu_types, launch.gpus_per_worker);
            Some(grant.ok_or_else(|| short(Device::Gpu, wanted as usize))?)
        };
        let cpus = match launch.cpus_per_worker {
            0 => Vec::new(),
            n => match st.cpus.take(n) {
                Some(c) => c,
                None => {
                    if let Some(g) = gpus {
                        st.gpus.give(g);
                    }
                    return Err(short(Device::CpuCore, n));
                }
            },
        };
        Ok((gpus, cpus))
    }
}

/// Forward a worker's output with a prefix, noting its load time when it reports it. Bytes
/// that are not UTF-8 are shown lossily; the pipe is drained to the end either way, so a
/// worker never dies of a closed pipe.
async fn forward(r: impl AsyncRead + Unpin, id: String, state: Arc<Mutex<State>>) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => return,
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if let Some(rest) = line.strip_prefix(PHASE_MARK) {
            let load = rest
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("load_ms=")?.parse().ok());
            if let Some(w) = lock(&state).running.get_mut(&id) {
                w.load_ms = load;
            }
            continue;
        }
        eprintln!("[{id}] {line}");
    }
}

#[async_trait]
impl Actuator for LocalProcesses {
    async fn start(&self, endpoint: &str) -> Result<String, ActuatorError> {
        let launch = self
            .launches
            .get(endpoint)
            .ok_or_else(|| ActuatorError::UnknownEndpoint(endpoint.to_string()))?;
        let id = format!("{endpoint}-{:08x}", rand::random::<u32>());
        let (gpus, cpus) = self.take_devices(launch)?;
        let tier = crate::tiers::tier_of(launch.weights.as_deref());
        if let (Some(protocol::health::Tier::Disk), Some(w)) = (tier, &launch.weights) {
            // Start reading the weights while the process starts.
            crate::tiers::promote(w);
        }
        let started_at_ms = protocol::health::epoch_ms();
        let visible = gpus.as_ref().map(|g| g.ids.join(","));
        let gpu_type = gpus.as_ref().and_then(|g| g.gpu_type.clone());
        let pinned = (!cpus.is_empty()).then(|| cpus.join(","));
        let mut cmd = command(launch, &id, gpus.as_ref(), &cpus);
        let t0 = Instant::now();
        let spawned = cmd.spawn();
        let spawn_ms = t0.elapsed().as_millis() as u64;
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let mut st = lock(&self.state);
                if let Some(g) = gpus {
                    st.gpus.give(g);
                }
                st.cpus.give(cpus);
                return Err(ActuatorError::Spawn {
                    program: launch.program.display().to_string(),
                    source: e,
                });
            }
        };
        let managed = Managed {
            id: id.clone(),
            endpoint: endpoint.to_string(),
            pid: child.id(),
            started: t0,
            spawn_ms,
            load_ms: None,
            draining: false,
            gpus: visible,
            gpu_type,
            cpus: pinned,
            parked: None,
            tier,
            started_at_ms,
        };
        lock(&self.state).running.insert(id.clone(), managed);
        for out in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            tokio::spawn(forward(out, id.clone(), self.state.clone()));
        }
        let state = self.state.clone();
        let (wid, ep) = (id.clone(), endpoint.to_string());
        tokio::spawn(async move {
            let status = child.wait().await;
            let mut st = lock(&state);
            let gone = st.running.remove(&wid);
            if let Some(g) = gpus {
                st.gpus.give(g);
            }
            st.cpus.give(cpus);
            #[cfg(unix)]
            let signal = {
                use std::os::unix::process::ExitStatusExt;
                status.as_ref().ok().and_then(|s| s.signal())
            };
            #[cfg(not(unix))]
            let signal = None;
            st.exited.push(Exited {
                id: wid,
                endpoint: ep,
                code: status.ok().and_then(|s| s.code()),
                signal,
                drained: gone.is_some_and(|m| m.draining),
                lived: t0.elapsed(),
            });
        });
        Ok(id)
    }

    async fn drain(&self, id: &str) -> Result<(), ActuatorError> {
        let (pid, parked) = {
            let mut st = lock(&self.state);
            let Some(w) = st.running.get_mut(id) else {
                return Ok(());
            };
            w.draining = true;
            (w.pid, w.parked.take().is_some())
        };
        signal(pid, libc::SIGTERM);
        if parked {
            // A stopped process acts on its SIGTERM once continued.
            signal(pid, libc::SIGCONT);
        }
        let (state, id, grace) = (self.state.clone(), id.to_string(), self.drain_grace);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let pid = lock(&state).running.get(&id).and_then(|w| w.pid);
            signal(pid, libc::SIGKILL);
        });
        Ok(())
    }

    async fn kill(&self, id: &str) -> Result<(), ActuatorError> {
        let pid = lock(&self.state).running.get(id).and_then(|w| w.pid);
        signal(pid, libc::SIGKILL);
        Ok(())
    }

    async fn park(&self, id: &str) -> Result<(), ActuatorError> {
        let pid = {
            let mut st = lock(&self.state);
            let Some(w) = st.running.get_mut(id).filter(|w| !w.draining) else {
                return Ok(());
            };
            w.parked = Some(Instant::now());
            w.pid
        };
        signal(pid, libc::SIGSTOP);
        Ok(())
    }

    async fn thaw(&self, id: &str) -> Result<(), ActuatorError> {
        let pid = {
            let mut st = lock(&self.state);
            let Some(w) = st.running.get_mut(id) else {
                return Ok(());
            };
            w.parked = None;
            // The thaw is this worker's new start: tier `parked`, phases from now.
            w.started = Instant::now();
            w.started_at_ms = protocol::health::epoch_ms();
            w.spawn_ms = 0;
            w.load_ms = Some(0);
            w.tier = Some(protocol::health::Tier::Parked);
            w.pid
        };
        signal(pid, libc::SIGCONT);
        Ok(())
    }

    fn resident_bytes(&self, id: &str) -> Option<u64> {
        let pid = lock(&self.state).running.get(id)?.pid?;
        crate::tiers::resident_bytes(pid)
    }

    fn managed(&self, endpoint: &str) -> Vec<Managed> {
        let mut v: Vec<Managed> = lock(&self.state)
            .running
            .values()
            .filter(|w| w.endpoint == endpoint)
            .cloned()
            .collect();
        v.sort_by_key(|w| w.started);
        v
    }

    fn exited(&self) -> Vec<Exited> {
        std::mem::take(&mut lock(&self.state).exited)
    }

    async fn shutdown(&self) {
        let ids: Vec<String> = lock(&self.state).running.keys().cloned().collect();
        for id in &ids {
            let _ = self.drain(id).await;
        }
        let deadline = Instant::now() + Duration::from_secs(12);
        while Instant::now() < deadline && !lock(&self.state).running.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left: Vec<String> = lock(&self.state).running.keys().cloned().collect();
        for id in &left {
            let _ = self.kill(id).await;
        }
    }
}
