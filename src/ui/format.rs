//! How the pages write numbers: counts as plain integers, money in major units with every
//! significant digit of its micros (never rounded), rates as percentages, differences of
//! rates in percentage points. Each is a pure function; templates escape what they return.

/// Micros as a decimal amount in major units: at least two decimals, no trailing zeros past
/// them, exact (`45_000` → `0.045`, `5_400_000` → `5.40`, `-1` → `-0.000001`).
pub fn money(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let mut fraction = format!("{:06}", abs % 1_000_000);
    while fraction.len() > 2 && fraction.ends_with('0') {
        fraction.pop();
    }
    format!("{sign}{}.{fraction}", abs / 1_000_000)
}

/// A rate as a percentage with two decimals; `–` without a base.
pub fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".to_string(), |r| format!("{:.2}%", r * 100.0))
}

/// A difference of rates in percentage points, signed.
pub fn points(difference: f64) -> String {
    format!("{:+.2} pp", difference * 100.0)
}

/// A 95% interval of a difference of rates, in percentage points.
pub fn interval(low: f64, high: f64) -> String {
    format!("{:+.2} to {:+.2} pp", low * 100.0, high * 100.0)
}

/// A p-value: four decimals, or scientific notation below 0.0001.
pub fn p_value(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// The share of `part` in `whole` as a whole percentage for a bar, 0 to 100.
pub fn bar(part: u64, whole: u64) -> u32 {
    if whole == 0 {
        return 0;
    }
    ((part.min(whole) as f64 / whole as f64) * 100.0).round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_every_micro() {
        assert_eq!(money(0), "0.00");
        assert_eq!(money(45_000), "0.045");
        assert_eq!(money(5_400_000), "5.40");
        assert_eq!(money(1_234_567), "1.234567");
        assert_eq!(money(-1), "-0.000001");
        assert_eq!(money(-2_500_000), "-2.50");
        assert_eq!(money(i64::MIN), "-9223372036854.775808");
    }

    #[test]
    fn rates_and_differences_read_as_percentages() {
        assert_eq!(percent(Some(0.975)), "97.50%");
        assert_eq!(percent(None), "–");
        assert_eq!(points(-0.0123), "-1.23 pp");
        assert_eq!(points(0.05), "+5.00 pp");
        assert_eq!(interval(-0.02, 0.001), "-2.00 to +0.10 pp");
        assert_eq!(p_value(0.01234), "0.0123");
        assert_eq!(p_value(0.000012), "1.2e-5");
    }

    #[test]
    fn bars_are_capped_shares() {
        assert_eq!(bar(5, 0), 0);
        assert_eq!(bar(1, 3), 33);
        assert_eq!(bar(7, 5), 100);
    }
}
