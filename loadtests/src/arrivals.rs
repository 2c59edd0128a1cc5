//! Open-loop arrival times, as vLLM's benchmark draws them: gaps between requests follow a
//! gamma distribution with shape `burstiness` and mean `1 / rate` (burstiness 1 is a Poisson
//! process; below 1 burstier, above 1 more regular). Seeded, so a run can be repeated exactly.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Gamma};
use std::time::Duration;

/// Send offsets from the start of the run for `n` requests. An infinite `rate` sends all at once.
pub fn schedule(n: usize, rate: f64, burstiness: f64, seed: u64) -> anyhow::Result<Vec<Duration>> {
    if !(rate > 0.0) {
        anyhow::bail!("--request-rate must be positive (or inf)");
    }
    if rate.is_infinite() {
        return Ok(vec![Duration::ZERO; n]);
    }
    if !(burstiness > 0.0 && burstiness.is_finite()) {
        anyhow::bail!("--burstiness must be a positive number");
    }
    let gamma = Gamma::new(burstiness, 1.0 / (rate * burstiness))?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = 0.0;
    Ok((0..n)
        .map(|i| {
            if i > 0 {
                t += gamma.sample(&mut rng);
            }
            Duration::from_secs_f64(t)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed_rate(offsets: &[Duration]) -> f64 {
        (offsets.len() - 1) as f64 / offsets.last().unwrap().as_secs_f64()
    }

    #[test]
    fn mean_rate_matches_for_poisson_and_bursty() {
        for (burstiness, seed) in [(1.0, 1), (0.5, 2), (4.0, 3)] {
            let s = schedule(20_000, 5.0, burstiness, seed).unwrap();
            let r = observed_rate(&s);
            assert!(
                (r - 5.0).abs() / 5.0 < 0.05,
                "burstiness {burstiness}: rate {r}"
            );
            assert!(s.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn burstiness_changes_the_spread_of_gaps() {
        let cv = |b: f64| {
            let s = schedule(20_000, 10.0, b, 7).unwrap();
            let gaps: Vec<f64> = s.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
            var.sqrt() / mean
        };
        // Coefficient of variation of gamma gaps is 1/sqrt(shape).
        assert!((cv(1.0) - 1.0).abs() < 0.05);
        assert!((cv(4.0) - 0.5).abs() < 0.05);
        assert!(cv(0.25) > 1.8);
    }

    #[test]
    fn same_seed_same_schedule_and_infinite_rate_is_immediate() {
        assert_eq!(
            schedule(50, 3.0, 1.0, 9).unwrap(),
            schedule(50, 3.0, 1.0, 9).unwrap()
        );
        assert_ne!(
            schedule(50, 3.0, 1.0, 9).unwrap(),
            schedule(50, 3.0, 1.0, 10).unwrap()
        );
        assert!(schedule(5, f64::INFINITY, 1.0, 0)
            .unwrap()
            .iter()
            .all(|d| d.is_zero()));
        assert!(schedule(5, 0.0, 1.0, 0).is_err());
    }
}
