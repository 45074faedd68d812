//! The mock provider's service-time distribution: fixed, uniform or lognormal, each given
//! by its median and 99th percentile, sampled from a seeded generator.

use std::time::Duration;

use rand::Rng;

/// z of the 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_347_874;

/// Which shape the latency has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Always the median.
    Fixed,
    /// Uniform over the interval whose median and 99th percentile are as given.
    Uniform,
    /// Lognormal with the given median and 99th percentile: a realistic long tail.
    Lognormal,
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    shape: Shape,
    p50_ms: f64,
    p99_ms: f64,
}

impl Latency {
    /// `p99_ms` below `p50_ms` is raised to it. A uniform shape whose interval would start
    /// below zero starts at zero (its median is then higher than asked).
    pub fn new(shape: Shape, p50_ms: f64, p99_ms: f64) -> Latency {
        let p50_ms = p50_ms.max(0.0);
        Latency {
            shape,
            p50_ms,
            p99_ms: p99_ms.max(p50_ms),
        }
    }

    /// One sample.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        let ms = match self.shape {
            Shape::Fixed => self.p50_ms,
            Shape::Uniform => {
                // Median (a+b)/2 and p99 a + 0.99(b-a) give the width (p99-p50)/0.49.
                let width = (self.p99_ms - self.p50_ms) / 0.49;
                let low = (self.p50_ms - width / 2.0).max(0.0);
                low + rng.gen::<f64>() * width
            }
            Shape::Lognormal => {
                if self.p50_ms <= 0.0 {
                    0.0
                } else {
                    let sigma = (self.p99_ms / self.p50_ms).ln() / Z99;
                    (self.p50_ms.ln() + sigma * standard_normal(rng)).exp()
                }
            }
        };
        Duration::from_secs_f64((ms.max(0.0) / 1000.0).min(3_600.0))
    }
}

/// Box-Muller.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.gen::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn percentiles(l: Latency) -> (f64, f64) {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut v: Vec<f64> = (0..100_000)
            .map(|_| l.sample(&mut rng).as_secs_f64() * 1000.0)
            .collect();
        v.sort_by(f64::total_cmp);
        (v[50_000], v[99_000])
    }

    #[test]
    fn percentiles_come_out_as_configured() {
        for (shape, want50, want99) in [(Shape::Uniform, 20.0, 38.0), (Shape::Lognormal, 8.0, 40.0)]
        {
            let (p50, p99) = percentiles(Latency::new(shape, want50, want99));
            assert!((p50 - want50).abs() < 0.5, "{shape:?} p50 {p50}");
            assert!((p99 - want99).abs() < 3.0, "{shape:?} p99 {p99}");
        }
        assert_eq!(
            percentiles(Latency::new(Shape::Fixed, 3.0, 9.0)),
            (3.0, 3.0)
        );
    }
}
