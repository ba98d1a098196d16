//! Thompson sampling for splits that optimise (`split optimise`), and the
//! probability that each arm is the best one, for reports.
//!
//! Each arm's conversion rate is believed to follow Beta(1 + conversions,
//! 1 + entries − conversions): a uniform prior updated by what the arm did.
//! A choice draws one rate per arm and takes the highest; the floor keeps
//! every arm in play. Draws come from a small PRNG (splitmix64) seeded by
//! the caller, so the same seed gives the same choice, and the arithmetic
//! uses only operations IEEE 754 rounds exactly (the logarithm is computed
//! here, not by the platform's library), so it is the same on every
//! platform.

/// What an arm of a split that optimises has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arm {
    /// Instances that took the arm.
    pub entries: u64,
    /// Those of them that reached the flow's goal.
    pub conversions: u64,
}

impl Arm {
    /// The parameters of the Beta posterior of the arm's conversion rate.
    fn posterior(&self) -> (f64, f64) {
        let conv = self.conversions.min(self.entries);
        (1.0 + conv as f64, 1.0 + (self.entries - conv) as f64)
    }
}

/// A splitmix64 generator: small, fast and fully determined by its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in the open interval (0, 1).
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A number in `0..n` (n > 0), by multiply-and-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A standard normal draw (Marsaglia's polar method).
    fn normal(&mut self) -> f64 {
        loop {
            let u = 2.0 * self.unit() - 1.0;
            let v = 2.0 * self.unit() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return u * (-2.0 * ln(s) / s).sqrt();
            }
        }
    }

    /// A Gamma(`shape`, 1) draw for `shape` ≥ 1 (Marsaglia and Tsang's
    /// method); a smaller shape is taken as 1.
    pub fn gamma(&mut self, shape: f64) -> f64 {
        let d = shape.max(1.0) - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.unit();
            let x2 = x * x;
            if u < 1.0 - 0.0331 * x2 * x2 || ln(u) < 0.5 * x2 + d * (1.0 - v + ln(v)) {
                return d * v;
            }
        }
    }

    /// A Beta(`a`, `b`) draw (`a`, `b` ≥ 1), as the share of the first of
    /// two Gamma draws.
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        x / (x + y)
    }

    /// One rate per arm from its posterior; the index of the highest
    /// (the first of equals).
    fn best(&mut self, arms: &[Arm]) -> usize {
        let mut best = 0;
        let mut top = f64::NEG_INFINITY;
        for (i, arm) in arms.iter().enumerate() {
            let (a, b) = arm.posterior();
            let r = self.beta(a, b);
            if r > top {
                top = r;
                best = i;
            }
        }
        best
    }
}

/// The natural logarithm of `x`, from exactly rounded operations only, so
/// that draws are the same on every platform. `x` ≤ 0 gives −∞.
pub fn ln(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let (mut x, mut exp) = (x, 0i64);
    if x < f64::MIN_POSITIVE {
        // Subnormal: scale into the normal range first.
        x *= (1u64 << 54) as f64;
        exp -= 54;
    }
    let bits = x.to_bits();
    exp += ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        exp += 1;
    }
    // ln m = 2 atanh(s) = 2 (s + s³/3 + s⁵/5 + …), |s| ≤ 0.172.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    for k in 0..14 {
        sum += term / f64::from(2 * k + 1);
        term *= s2;
    }
    exp as f64 * std::f64::consts::LN_2 + 2.0 * sum
}

/// Chooses an arm: with probability `floor` × arms (the floor in basis
/// points, hundredths of a percent) an arm taken uniformly, else the arm
/// whose draw from its posterior is highest. Each arm so gets at least
/// `floor` of the choices in expectation. No arms choose arm 0.
pub fn choose(arms: &[Arm], floor: u32, seed: u64) -> usize {
    let mut rng = Rng::new(seed);
    let n = arms.len() as u64;
    if n == 0 {
        return 0;
    }
    let explore = u64::from(floor).saturating_mul(n).min(10_000);
    let r = rng.below(10_000);
    if r < explore && floor > 0 {
        return ((r / u64::from(floor)) as usize).min(arms.len() - 1);
    }
    rng.best(arms)
}

/// For each arm, the probability that its conversion rate is the highest,
/// estimated from `draws` joint draws of the posteriors (seeded by `seed`,
/// so the same counts give the same figures).
pub fn probability_best(arms: &[Arm], draws: u32, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut wins = vec![0u32; arms.len()];
    if arms.is_empty() || draws == 0 {
        return vec![0.0; arms.len()];
    }
    for _ in 0..draws {
        let i = rng.best(arms);
        wins[i] += 1;
    }
    wins.iter()
        .map(|&w| f64::from(w) / f64::from(draws))
        .collect()
}

/// A seed from the parts that make a choice: a SHA-256 of them, each part
/// ended so that no two lists of parts run together.
pub fn seed(parts: &[&[u8]]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_matches_the_platform_closely() {
        for &x in &[
            1e-300_f64, 1e-10, 0.001, 0.3, 0.5, 0.999, 1.0, 1.5, 2.0, 10.0, 12345.678, 1e300,
        ] {
            let want = x.ln();
            let got = ln(x);
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want.abs().max(1.0),
                "ln({x}) = {got}, want {want}"
            );
        }
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert_eq!(ln(-1.0), f64::NEG_INFINITY);
        let sub = f64::MIN_POSITIVE / 8.0;
        assert!((ln(sub) - sub.ln()).abs() < 1e-12);
    }

    #[test]
    fn beta_draws_have_the_right_mean_and_stay_in_range() {
        for &(a, b) in &[
            (1.0, 1.0),
            (2.0, 8.0),
            (30.0, 70.0),
            (1.0, 500.0),
            (400.0, 3.0),
        ] {
            let mut rng = Rng::new(42);
            let n = 20_000;
            let mut sum = 0.0;
            let mut sq = 0.0;
            for _ in 0..n {
                let x = rng.beta(a, b);
                assert!(x > 0.0 && x < 1.0, "Beta({a}, {b}) drew {x}");
                sum += x;
                sq += x * x;
            }
            let mean = sum / f64::from(n);
            let want = a / (a + b);
            let var = a * b / ((a + b) * (a + b) * (a + b + 1.0));
            // Four standard errors of the mean.
            let tol = 4.0 * (var / f64::from(n)).sqrt();
            assert!(
                (mean - want).abs() < tol,
                "Beta({a}, {b}): mean {mean}, want {want} ± {tol}"
            );
            let got_var = sq / f64::from(n) - mean * mean;
            assert!(
                (got_var - var).abs() < 0.1 * var,
                "Beta({a}, {b}): variance {got_var}, want {var}"
            );
        }
    }

    #[test]
    fn gamma_draws_have_the_right_mean() {
        let mut rng = Rng::new(7);
        for &k in &[1.0, 2.5, 40.0] {
            let n = 20_000;
            let mean = (0..n).map(|_| rng.gamma(k)).sum::<f64>() / f64::from(n);
            assert!(
                (mean - k).abs() < 4.0 * (k / f64::from(n)).sqrt(),
                "{k}: {mean}"
            );
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_choice() {
        let arms = [
            Arm {
                entries: 100,
                conversions: 10,
            },
            Arm {
                entries: 100,
                conversions: 12,
            },
        ];
        for s in 0..50 {
            assert_eq!(choose(&arms, 500, s), choose(&arms, 500, s));
        }
        assert_eq!(
            probability_best(&arms, 1000, 3),
            probability_best(&arms, 1000, 3)
        );
    }

    #[test]
    fn choices_follow_the_better_arm_and_keep_the_floor() {
        let arms = [
            Arm {
                entries: 500,
                conversions: 25,
            },
            Arm {
                entries: 500,
                conversions: 150,
            },
        ];
        let n = 10_000u64;
        let mut to_a = 0;
        for s in 0..n {
            if choose(&arms, 1000, s) == 0 {
                to_a += 1;
            }
        }
        // The floor: 10% for each arm, half of it to a; the better arm
        // wins every draw here, so a gets its floor share and no more.
        let share = to_a as f64 / n as f64;
        assert!((0.09..0.12).contains(&share), "a got {share}");
        // Without a floor, a gets nothing.
        assert!((0..1000).all(|s| choose(&arms, 0, s) == 1));
        // With no data every arm is as likely.
        let fresh = [Arm::default(); 3];
        let mut counts = [0u32; 3];
        for s in 0..9000 {
            counts[choose(&fresh, 0, s)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (2700..3300).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn probability_best_reflects_the_evidence() {
        let even = probability_best(&[Arm::default(), Arm::default()], 10_000, 1);
        assert!((even[0] - 0.5).abs() < 0.02, "{even:?}");
        assert!((even[0] + even[1] - 1.0).abs() < 1e-12);
        let clear = probability_best(
            &[
                Arm {
                    entries: 200,
                    conversions: 10,
                },
                Arm {
                    entries: 200,
                    conversions: 40,
                },
            ],
            10_000,
            1,
        );
        assert!(clear[1] > 0.999, "{clear:?}");
        // Close rates: neither is sure.
        let close = probability_best(
            &[
                Arm {
                    entries: 100,
                    conversions: 10,
                },
                Arm {
                    entries: 100,
                    conversions: 11,
                },
            ],
            10_000,
            1,
        );
        assert!(close[1] > 0.5 && close[1] < 0.8, "{close:?}");
    }
}
