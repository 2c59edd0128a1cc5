//! Autoscaling for sluice endpoints. This first part is the policy: a pure function of
//! (queue metrics, worker states, endpoint settings, now) -> workers to start and to stop, so it
//! can be unit-tested and replayed on a trace with a virtual clock. Actuators come later.

pub mod cli;
pub mod policy;
pub mod simulate;
pub mod trace;

pub use policy::{decide, Decision, QueueState, WorkerState, WorkerView};
