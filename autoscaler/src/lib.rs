//! Autoscaling for sluice endpoints: the policy (a pure function of queue metrics, worker
//! states, endpoint settings and a clock, so it can be unit-tested and replayed on a trace by
//! the simulator), actuators that start and drain workers (local processes now; the trait is
//! the seam for Kubernetes), and the control loop that joins them to the job store.

#![warn(missing_docs)]

pub mod actuator;
pub mod cli;
pub mod control;
pub mod demotion;
pub mod gpus;
pub mod keda;
pub mod local;
pub mod policy;
pub mod simulate;
pub mod tiers;
pub mod trace;

pub use actuator::{Actuator, Launch};
pub use control::{ControlSettings, Controller, Endpoint};
pub use gpus::GpuPool;
pub use local::LocalProcesses;
pub use policy::{decide, Decision, QueueState, WorkerState, WorkerView};
