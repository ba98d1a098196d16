//! Money and rates as exact decimals: reports add up revenue, and floats
//! would drift by cents.

use rust_decimal::Decimal;

/// Parses money as the runtime writes it: `$12.50`, `-$3.00` (a bare number is accepted too).
pub fn parse(text: &str) -> Option<Decimal> {
    let t = text.trim();
    let (neg, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let rest = rest.strip_prefix('$').unwrap_or(rest);
    let value: Decimal = rest.replace(',', "").parse().ok()?;
    Some(if neg { -value } else { value })
}

/// Formats money the way the runtime does: `$12.50`, `-$3.00`.
pub fn format(m: Decimal) -> String {
    let r = m.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    let sign = if r.is_sign_negative() && !r.is_zero() {
        "-"
    } else {
        ""
    };
    let mut abs = r.abs();
    abs.rescale(2);
    format!("{sign}${abs}")
}

/// `part / whole`, or `None` for an empty whole.
pub fn ratio(part: u64, whole: u64) -> Option<Decimal> {
    (whole > 0).then(|| Decimal::from(part) / Decimal::from(whole))
}

/// A ratio as a percent with one decimal: `12.5%`, `-40.0%`.
pub fn percent(r: Decimal) -> String {
    let mut p = (r * Decimal::ONE_HUNDRED)
        .round_dp_with_strategy(1, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    p.rescale(1);
    format!("{p}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips_exactly() {
        let total: Decimal = ["$12.50", "$89.00", "$64.00", "$0.10", "$0.20"]
            .iter()
            .map(|s| parse(s).unwrap())
            .sum();
        assert_eq!(format(total), "$165.80");
        assert_eq!(parse("-$3.00"), Some(Decimal::new(-3, 0)));
        assert_eq!(parse("$1,200.5"), Some(Decimal::new(12005, 1)));
        assert_eq!(parse("twelve"), None);
        assert_eq!(format(Decimal::new(-3, 0)), "-$3.00");
    }

    #[test]
    fn percents_have_one_decimal() {
        assert_eq!(percent(ratio(1, 8).unwrap()), "12.5%");
        assert_eq!(percent(ratio(2, 3).unwrap()), "66.7%");
        assert_eq!(percent(Decimal::new(-4, 1)), "-40.0%");
        assert_eq!(ratio(1, 0), None);
    }
}
