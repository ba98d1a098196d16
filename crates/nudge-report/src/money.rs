//! Money and rates as exact decimals: reports add up revenue, and floats
//! would drift by cents.

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

/// Parses money as the runtime writes it: `$12.50`, `-$3.00` (a bare number is accepted too).
///
/// The `$` is the flow language's notation for money, not a currency: the
/// runtime's amounts carry no currency of their own.
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

/// An amount in one currency; `currency` is an ISO 4217 code, or none when
/// neither the trace nor the command line says which currency it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Money {
    /// The ISO 4217 code (`EUR`), or none when unknown.
    pub currency: Option<String>,
    /// The exact amount.
    #[serde(serialize_with = "plain_str")]
    pub amount: Decimal,
}

/// Amounts kept apart by currency, in code order (unknown first): amounts in
/// different currencies are never added together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Amounts(std::collections::BTreeMap<Option<String>, Decimal>);

impl Amounts {
    /// Adds an amount to its currency's sum.
    pub fn add(&mut self, currency: Option<&str>, amount: Decimal) {
        *self.0.entry(currency.map(str::to_string)).or_default() += amount;
    }

    /// Adds every sum of `other`.
    pub fn add_all(&mut self, other: &Amounts) {
        for (c, a) in &other.0 {
            self.add(c.as_deref(), *a);
        }
    }

    /// The sums, one per currency.
    pub fn list(&self) -> Vec<Money> {
        self.0
            .iter()
            .map(|(c, a)| Money {
                currency: c.clone(),
                amount: *a,
            })
            .collect()
    }

    /// The sum in one currency (zero when there is none).
    pub fn get(&self, currency: Option<&str>) -> Decimal {
        self.0
            .get(&currency.map(str::to_string))
            .copied()
            .unwrap_or_default()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// For people: `€1,234.50 + USD 3.00`, or `0.00` (in `currency`) when empty.
    pub fn text(&self, currency: Option<&str>) -> String {
        if self.0.is_empty() {
            return format(Decimal::ZERO, currency);
        }
        self.0
            .iter()
            .map(|(c, a)| format(*a, c.as_deref()))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

impl Serialize for Amounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.list().serialize(s)
    }
}

/// The symbol shown before amounts of a currency; other codes are written out.
fn symbol(code: &str) -> Option<&'static str> {
    match code {
        "EUR" => Some("€"),
        "USD" => Some("$"),
        "GBP" => Some("£"),
        _ => None,
    }
}

/// Money for people, rounded to cents with thousands separated:
/// `€1,234.50`, `-$3.00`, `CHF 12.00`, and `1,234.50` when the currency is unknown.
pub fn format(m: Decimal, currency: Option<&str>) -> String {
    let r = m.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    let sign = if r.is_sign_negative() && !r.is_zero() {
        "-"
    } else {
        ""
    };
    let mut abs = r.abs();
    abs.rescale(2);
    let digits = abs.to_string();
    let (whole, cents) = digits.split_once('.').unwrap_or((&digits, "00"));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let number = format!("{grouped}.{cents}");
    match currency {
        None => format!("{sign}{number}"),
        Some(code) => match symbol(code) {
            Some(s) => format!("{sign}{s}{number}"),
            None => format!("{sign}{code} {number}"),
        },
    }
}

/// Money for tools: a plain decimal with at least two places (`45.00`).
pub fn plain(d: Decimal) -> String {
    let mut d = d;
    d.rescale(d.scale().max(2));
    d.to_string()
}

fn plain_str<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&plain(*d))
}

/// Whether `code` looks like an ISO 4217 code: three capital letters.
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
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
        assert_eq!(format(total, Some("USD")), "$165.80");
        assert_eq!(parse("-$3.00"), Some(Decimal::new(-3, 0)));
        assert_eq!(parse("$1,200.5"), Some(Decimal::new(12005, 1)));
        assert_eq!(parse("twelve"), None);
        assert_eq!(format(Decimal::new(-3, 0), Some("USD")), "-$3.00");
    }

    #[test]
    fn currencies_keep_their_own_sign() {
        let m = Decimal::new(123450, 2);
        assert_eq!(format(m, Some("EUR")), "€1,234.50");
        assert_eq!(format(m, Some("CHF")), "CHF 1,234.50");
        assert_eq!(format(m, None), "1,234.50");
        assert_eq!(format(Decimal::new(123456789, 1), None), "12,345,678.90");
        assert_eq!(format(Decimal::new(5, 3), Some("GBP")), "£0.01");
        let mut a = Amounts::default();
        a.add(Some("EUR"), m);
        a.add(Some("USD"), Decimal::new(300, 2));
        a.add(Some("EUR"), Decimal::new(50, 2));
        assert_eq!(a.text(None), "€1,235.00 + $3.00");
        assert_eq!(Amounts::default().text(Some("EUR")), "€0.00");
    }

    #[test]
    fn percents_have_one_decimal() {
        assert_eq!(percent(ratio(1, 8).unwrap()), "12.5%");
        assert_eq!(percent(ratio(2, 3).unwrap()), "66.7%");
        assert_eq!(percent(Decimal::new(-4, 1)), "-40.0%");
        assert_eq!(ratio(1, 0), None);
    }
}
