//! The confidence interval of a holdout comparison. These are statistics on
//! counts, not money, so they are computed in floating point.

use serde::Serialize;

/// The normal quantile for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The fewest customers each group needs before an interval is given.
pub const MIN_GROUP: u64 = 5;

/// A difference of two proportions with its 95% interval, as fractions
/// (`0.25` is 25 percentage points).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Difference {
    /// Treated rate minus control rate.
    #[serde(serialize_with = "six_places")]
    pub estimate: f64,
    /// The interval's lower end.
    #[serde(serialize_with = "six_places")]
    pub low: f64,
    /// The interval's upper end.
    #[serde(serialize_with = "six_places")]
    pub high: f64,
}

/// Six decimals are more than a 95% interval on counts can mean.
fn six_places<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((v * 1e6).round() / 1e6)
}

/// The Wilson score interval of `x` successes in `n` trials (`n > 0`).
pub fn wilson(x: u64, n: u64) -> (f64, f64) {
    let (x, n) = (x as f64, n as f64);
    let p = x / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Newcombe's hybrid score interval (his method 10, without continuity
/// correction) for `x1/n1 - x0/n0`; none when a group has fewer than
/// [`MIN_GROUP`] members.
pub fn newcombe(x1: u64, n1: u64, x0: u64, n0: u64) -> Option<Difference> {
    if n1 < MIN_GROUP || n0 < MIN_GROUP {
        return None;
    }
    let p1 = x1 as f64 / n1 as f64;
    let p0 = x0 as f64 / n0 as f64;
    let (l1, u1) = wilson(x1, n1);
    let (l0, u0) = wilson(x0, n0);
    let d = p1 - p0;
    Some(Difference {
        estimate: d,
        low: d - ((p1 - l1).powi(2) + (u0 - p0).powi(2)).sqrt(),
        high: d + ((u1 - p1).powi(2) + (p0 - l0).powi(2)).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newcombe_matches_his_published_example() {
        // Newcombe (1998), Table II, example (a): 56/70 against 48/80 gives
        // 0.0524 to 0.3339 by method 10.
        let d = newcombe(56, 70, 48, 80).unwrap();
        assert!((d.estimate - 0.2).abs() < 1e-12);
        assert!((d.low - 0.0524).abs() < 5e-5, "{}", d.low);
        assert!((d.high - 0.3339).abs() < 5e-5, "{}", d.high);
    }

    #[test]
    fn small_groups_get_no_interval() {
        assert_eq!(newcombe(1, 4, 0, 10), None);
        assert!(newcombe(0, 5, 0, 5).is_some());
    }
}
