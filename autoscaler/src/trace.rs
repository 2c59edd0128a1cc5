//! Request traces for the simulator: a JSONL file (`{"arrival_ms", "service_ms",
//! "low_priority"}` per line) or a generated one (steady, bursty, diurnal Poisson arrivals).

use crate::simulate::Request;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// A JSONL trace, sorted by arrival.
pub fn load(path: &Path) -> anyhow::Result<Vec<Request>> {
    let mut out: Vec<Request> = protocol::jsonl::read(path)?;
    out.sort_by_key(|r| r.arrival_ms);
    Ok(out)
}

/// Poisson arrivals over `duration_s` at a rate that may vary with time (`rate_at(t)`, per s,
/// at most `peak`), drawn by thinning; each request runs `service_ms`.
fn poisson(
    duration_s: f64,
    peak: f64,
    rate_at: impl Fn(f64) -> f64,
    service_ms: u64,
    seed: u64,
) -> Vec<Request> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = 0.0;
    let mut out = Vec::new();
    loop {
        t += -(1.0 - rng.random::<f64>()).ln() / peak;
        if t >= duration_s {
            return out;
        }
        if rng.random::<f64>() * peak <= rate_at(t) {
            out.push(Request {
                arrival_ms: (t * 1000.0) as u64,
                service_ms,
                low_priority: false,
            });
        }
    }
}

/// The shape of a generated trace.
///
/// `steady`: `rate` all along; `bursty`: 4x `rate` for the first 10 minutes of every hour,
/// nothing otherwise; `diurnal`: `rate` * (1 - cos) over a 24 h day (peak 2x at midday).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Poisson arrivals at the rate.
    Steady,
    /// 4x the rate for 10 minutes of every hour, nothing otherwise (mean 2/3 of the rate).
    Bursty,
    /// A daily sine around the rate (0 at midnight, 2x at noon).
    Diurnal,
}

/// A generated trace of shape `kind`: Poisson arrivals over `duration_s` seconds at `rate`
/// requests/s (varied by the shape), each running `service_ms` ms, none low-priority; the same
/// `seed` gives the same trace. Sorted by arrival.
///
/// Errors: `rate` or `duration_s` is not positive.
pub fn generate(
    kind: Shape,
    duration_s: f64,
    rate: f64,
    service_ms: u64,
    seed: u64,
) -> anyhow::Result<Vec<Request>> {
    anyhow::ensure!(
        rate > 0.0 && duration_s > 0.0,
        "rate and duration must be positive"
    );
    Ok(match kind {
        Shape::Steady => poisson(duration_s, rate, |_| rate, service_ms, seed),
        Shape::Bursty => poisson(
            duration_s,
            4.0 * rate,
            |t| if t % 3600.0 < 600.0 { 4.0 * rate } else { 0.0 },
            service_ms,
            seed,
        ),
        Shape::Diurnal => poisson(
            duration_s,
            2.0 * rate,
            |t| rate * (1.0 - (2.0 * std::f64::consts::PI * t / 86_400.0).cos()),
            service_ms,
            seed,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_traces_have_their_shape() {
        let steady = generate(Shape::Steady, 10_000.0, 0.5, 100, 1).unwrap();
        assert!(
            (steady.len() as f64 - 5_000.0).abs() < 250.0,
            "{}",
            steady.len()
        );
        let bursty = generate(Shape::Bursty, 7_200.0, 0.5, 100, 1).unwrap();
        assert!(bursty.iter().all(|r| (r.arrival_ms / 1000) % 3600 < 600));
        assert!(
            (bursty.len() as f64 - 2_400.0).abs() < 200.0,
            "{}",
            bursty.len()
        );
        assert!(generate(Shape::Steady, 0.0, 1.0, 1, 0).is_err());
    }
}
