//! The statistics of an A/B comparison of two rates (clicks or opens over messages sent):
//! the difference with a 95% confidence interval (Wald, unpooled) and the two-sided p-value
//! of a two-proportion z-test (pooled). Written out here because they are a dozen lines and
//! the report must not depend on a numerics crate for them.

use serde::Serialize;

/// The 97.5th percentile of the standard normal distribution.
pub const Z_975: f64 = 1.959_963_984_540_054;

/// One rate compared with another (the best variant's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// This rate minus the other.
    pub difference: f64,
    /// 95% confidence interval of the difference.
    pub ci95_low: f64,
    pub ci95_high: f64,
    pub z: f64,
    /// Two-sided p-value of the hypothesis that both rates are the same.
    pub p_value: f64,
}

/// Compares `hits_a / n_a` with `hits_b / n_b`; `None` when a side has no messages.
pub fn compare(hits_a: u64, n_a: u64, hits_b: u64, n_b: u64) -> Option<Comparison> {
    if n_a == 0 || n_b == 0 {
        return None;
    }
    let (na, nb) = (n_a as f64, n_b as f64);
    let (pa, pb) = (hits_a as f64 / na, hits_b as f64 / nb);
    let difference = pa - pb;
    let pooled = (hits_a + hits_b) as f64 / (na + nb);
    let se_pooled = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    let z = if se_pooled > 0.0 {
        difference / se_pooled
    } else {
        0.0
    };
    let se = (pa * (1.0 - pa) / na + pb * (1.0 - pb) / nb).sqrt();
    Some(Comparison {
        difference,
        ci95_low: difference - Z_975 * se,
        ci95_high: difference + Z_975 * se,
        z,
        p_value: erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0),
    })
}

/// The standard normal distribution function.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The complementary error function, with a fractional error below 1.2e-7 everywhere
/// (the Chebyshev fit of Press et al., Numerical Recipes, 2nd ed., §6.2).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative closeness, for values that come from an approximation good to ~1e-7.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * b.abs().max(1e-12) || (a - b).abs() < 1e-12
    }

    // Expected values computed with Python's statistics.NormalDist:
    //   p = (x1+x2)/(n1+n2); z = (p1-p2)/sqrt(p(1-p)(1/n1+1/n2)); pv = 2(1-cdf(|z|));
    //   ci = d -+ inv_cdf(0.975) sqrt(p1(1-p1)/n1 + p2(1-p2)/n2).

    #[test]
    fn normal_cdf_matches_reference_values() {
        assert!(close(normal_cdf(1.0), 0.841_344_746_068_542_9));
        assert!(close(normal_cdf(-2.5), 0.006_209_665_325_776_159));
        assert!(close(normal_cdf(0.0), 0.5));
        assert!(close(normal_cdf(Z_975), 0.975));
    }

    #[test]
    fn a_lower_click_rate_is_significant_at_five_percent() {
        let c = compare(90, 1000, 120, 1000).expect("comparison");
        assert!(close(c.difference, -0.03));
        assert!(close(c.z, -2.188_265_884_622_723_4), "{c:?}");
        assert!(close(c.p_value, 0.028_650_240_398_448_545), "{c:?}");
        assert!(close(c.ci95_low, -0.056_837_912_155_757_35), "{c:?}");
        assert!(close(c.ci95_high, -0.003_162_087_844_242_649), "{c:?}");
    }

    #[test]
    fn unequal_groups() {
        let c = compare(48, 400, 30, 410).expect("comparison");
        assert!(close(c.difference, 0.046_829_268_292_682_93));
        assert!(close(c.z, 2.258_806_160_726_827), "{c:?}");
        assert!(close(c.p_value, 0.023_895_445_144_242_355), "{c:?}");
        assert!(close(c.ci95_low, 0.006_214_635_159_396_062), "{c:?}");
        assert!(close(c.ci95_high, 0.087_443_901_425_969_79), "{c:?}");
    }

    #[test]
    fn equal_rates_are_not_different_and_empty_groups_are_not_compared() {
        let c = compare(5, 50, 5, 50).expect("comparison");
        assert_eq!((c.difference, c.z, c.p_value), (0.0, 0.0, 1.0));
        assert!(close(c.ci95_high, 0.117_597_839_072_403_23), "{c:?}");
        assert!(compare(0, 0, 3, 10).is_none());
        // No clicks anywhere: no spread, nothing to test.
        let none = compare(0, 10, 0, 10).expect("comparison");
        assert_eq!((none.z, none.p_value), (0.0, 1.0));
    }
}
