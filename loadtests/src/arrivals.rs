//! Open-loop arrival times, as vLLM's benchmark draws them: gaps between requests follow a
//! gamma distribution with shape `burstiness` and mean `1 / rate` (burstiness 1 is a Poisson
//! process; below 1 burstier, above 1 more regular). Seeded, so a run can be repeated exactly.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Gamma};
use std::time::Duration;

/// Send offsets from the start of the run for `n` requests (vLLM's `get_request`: gamma gaps,
/// scaled so the last is at `n / rate`). An infinite `rate` sends all at once.
pub fn schedule(n: usize, rate: f64, burstiness: f64, seed: u64) -> anyhow::Result<Vec<Duration>> {
    if rate.is_nan() || rate <= 0.0 {
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
    // As vLLM: each request waits its own gap (the first too), and the send times are then
    // scaled so that the last is at exactly n / rate.
    let mut t = 0.0;
    let times: Vec<f64> = (0..n)
        .map(|_| {
            t += gamma.sample(&mut rng);
            t
        })
        .collect();
    let scale = match times.last() {
        Some(&last) if last > 0.0 => n as f64 / rate / last,
        _ => 1.0,
    };
    Ok(times
        .into_iter()
        .map(|t| Duration::from_secs_f64(t * scale))
        .collect())
}

/// Send offsets for consecutive phases `RATE:SECONDS,...`: each phase draws arrivals at its
/// rate for its duration (rate 0 is an idle gap).
pub fn phases(spec: &str, burstiness: f64, seed: u64) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::new();
    let mut start = 0.0;
    for (i, phase) in spec.split(',').enumerate() {
        let (rate, secs) = phase
            .split_once(':')
            .and_then(|(r, s)| Some((r.trim().parse::<f64>().ok()?, s.trim().parse::<f64>().ok()?)))
            .filter(|(r, s)| *r >= 0.0 && r.is_finite() && *s > 0.0)
            .ok_or_else(|| anyhow::anyhow!("--phases: `{phase}` is not RATE:SECONDS"))?;
        if rate > 0.0 {
            // Enough draws to cover the phase; the ones past its end are dropped.
            let n = (rate * secs * 2.0).ceil() as usize + 16;
            let offs = schedule(n, rate, burstiness, seed.wrapping_add(i as u64))?;
            // The process starts at the phase start (the first arrival comes one gap later).
            let begin = Duration::from_secs_f64(start);
            out.extend(
                offs.into_iter()
                    .skip(1)
                    .map(|o| o + begin)
                    .take_while(|o| o.as_secs_f64() < start + secs),
            );
        }
        start += secs;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed_rate(offsets: &[Duration]) -> f64 {
        offsets.len() as f64 / offsets.last().unwrap().as_secs_f64()
    }

    #[test]
    fn the_last_request_is_sent_at_n_over_rate_as_in_vllm() {
        let s = schedule(40, 20.0, 1.0, 1).unwrap();
        assert!((s[39].as_secs_f64() - 2.0).abs() < 1e-9, "{:?}", s[39]);
        assert!(s[0] > Duration::ZERO, "the first request waits its gap too");
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
    fn phases_place_arrivals_inside_their_windows() {
        let offs = phases("0:10,50:4,0:5,5:20", 1.0, 1).unwrap();
        let secs: Vec<f64> = offs.iter().map(|d| d.as_secs_f64()).collect();
        assert!(secs
            .iter()
            .all(|&t| (10.0..14.0).contains(&t) || (19.0..39.0).contains(&t)));
        let burst = secs.iter().filter(|&&t| t < 14.0).count() as f64;
        assert!((burst - 200.0).abs() < 40.0, "burst arrivals {burst}");
        let tail = secs.iter().filter(|&&t| t >= 19.0).count() as f64;
        assert!((tail - 100.0).abs() < 30.0, "tail arrivals {tail}");
        assert!(phases("3", 1.0, 0).is_err());
        assert!(phases("-1:3", 1.0, 0).is_err());
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
