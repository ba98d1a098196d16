//! A purchase history in the shape of a store's order export: many
//! customers, a few orders each spread over about eighteen months, short
//! lines (about 200 bytes), in time order.
//!
//! Where [`crate::generate`] writes browsing sessions (long lines, many
//! events per customer, few sends), this is what a replay through a
//! date-triggered flow such as a win-back meets: a customer per four lines,
//! and a send for many of them. Every customer is identified from the start
//! (an `identify` with an email and email consent, then `Order Completed`
//! calls), so no identity merges happen.

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{ConfigError, GenStats, json};

/// What purchase history to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct PurchaseConfig {
    /// Seeds every random choice: the same config gives the same bytes.
    pub seed: u64,
    /// How many customers order.
    pub customers: u32,
    /// At most this many lines are written: the history is cut at the
    /// time the limit is reached.
    pub events: u64,
    /// When the history begins.
    pub start: DateTime<Utc>,
    /// How many days it spans; first orders fall anywhere in it.
    pub days: u32,
}

/// The span of a purchase history by default: eighteen months.
pub const PURCHASE_DAYS: u32 = 548;

/// The default number of customers for a history of `events` lines: one
/// per three lines, slightly more customers than the lines can hold (each
/// has about 3.3 calls), so the limit cuts the last weeks and the history
/// has exactly `events` lines.
pub fn purchase_customers(events: u64) -> u32 {
    u32::try_from((events / 3).max(1)).unwrap_or(u32::MAX)
}

/// Mean days between two orders of one customer.
const MEAN_GAP_DAYS: f64 = 120.0;

/// Products: ids and prices in cents, a few dozen so that orders repeat them.
const PRICES: [i64; 12] = [
    1_250, 1_890, 2_400, 3_200, 4_590, 5_900, 7_450, 9_900, 12_900, 18_500, 24_000, 32_000,
];

const FIRST_NAMES: [&str; 8] = ["Ana", "Ben", "Chloe", "Dan", "Eva", "Femi", "Greta", "Hiro"];

/// One line to write: when, whose, and which of the customer's calls
/// (0 is the `identify`, n > 0 the n-th order).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: i64,
    customer: u32,
    call: u16,
}

impl PurchaseConfig {
    /// A history of `events` lines over [`PURCHASE_DAYS`] from
    /// `crate::default_start`, seed 1, with [`purchase_customers`].
    pub fn new(events: u64) -> PurchaseConfig {
        PurchaseConfig {
            seed: 1,
            customers: purchase_customers(events),
            events,
            start: crate::default_start(),
            days: PURCHASE_DAYS,
        }
    }

    /// Checks the settings, so that generation itself cannot fail on them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.customers == 0 {
            return Err(ConfigError::NoCustomers);
        }
        if self.days == 0 {
            return Err(ConfigError::NoDays);
        }
        Ok(())
    }
}

/// Writes the purchase history of `config` to `out` in time order (equal
/// times by customer) and says what was written. The whole history's
/// instants are held while it is sorted (16 bytes a line), never its text.
pub fn generate_purchases(config: &PurchaseConfig, out: &mut impl Write) -> io::Result<GenStats> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let start = config.start.timestamp();
    let end = start + i64::from(config.days) * 86_400;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut entries = Vec::new();
    for customer in 0..config.customers {
        let first = start + rng.random_range(0..end - start);
        entries.push(Entry {
            at: first,
            customer,
            call: 0,
        });
        // Orders follow each other at exponential gaps; the first comes
        // minutes after signing in. Between one and six are planned; the
        // ones the span cuts off are never placed.
        let planned: u16 = rng.random_range(1..=6);
        let mut at = first + rng.random_range(60..1_800);
        for call in 1..=planned {
            if at >= end {
                break;
            }
            entries.push(Entry { at, customer, call });
            let gap = -MEAN_GAP_DAYS * 86_400.0 * (1.0 - rng.random::<f64>()).ln();
            at += (gap as i64).max(3_600);
        }
    }
    entries.sort_unstable();
    let cut = usize::try_from(config.events).unwrap_or(usize::MAX);
    entries.truncate(cut);

    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    let mut stats = GenStats::default();
    let mut seen = vec![false; config.customers as usize];
    let mut buf = String::with_capacity(512);
    for e in &entries {
        buf.clear();
        line(&mut buf, e, config.seed);
        buf.push('\n');
        out.write_all(buf.as_bytes())?;
        stats.lines += 1;
        let kind = if e.call == 0 {
            "identify"
        } else {
            stats.orders += 1;
            "Order Completed"
        };
        *stats.by_kind.entry(kind).or_insert(0) += 1;
        if let Some(s) = seen.get_mut(e.customer as usize)
            && !*s
        {
            *s = true;
            stats.customers += 1;
        }
        let at = DateTime::from_timestamp(e.at, 0);
        stats.first = stats.first.or(at);
        stats.last = at.or(stats.last);
    }
    out.flush()?;
    Ok(stats)
}

/// Writes one call. Its amounts and product come from a hash of the
/// customer and the order, so a line does not depend on which lines
/// were cut.
fn line(buf: &mut String, e: &Entry, seed: u64) {
    let user = format!("c-{}", e.customer);
    let mut o = json::Obj::open(buf, false);
    if e.call == 0 {
        o.str("type", "identify");
        o.str("userId", &user);
        o.time("timestamp", e.at);
        o.fmt("messageId", format_args!("i-{}", e.customer));
        let mut traits = o.obj("traits");
        traits.fmt("email", format_args!("{user}@shop.example"));
        let name = FIRST_NAMES[(mix(seed, e.customer, 0) % FIRST_NAMES.len() as u64) as usize];
        traits.str("first_name", name);
        let mut consent = traits.obj("consent");
        consent.bool("email", true);
        consent.close();
        traits.close();
    } else {
        o.str("type", "track");
        o.str("event", "Order Completed");
        o.str("userId", &user);
        o.time("timestamp", e.at);
        let id = format!("o-{}-{}", e.customer, e.call);
        o.str("messageId", &id);
        let h = mix(seed, e.customer, e.call);
        let product = h % 48;
        let price = PRICES[(h / 48 % PRICES.len() as u64) as usize];
        let quantity = 1 + (h / 1024 % 3) as i64;
        let mut p = o.obj("properties");
        p.str("order_id", &id);
        p.money("total", price * quantity);
        p.str("currency", "USD");
        p.list("products", &[()], |item, _, _| {
            item.fmt("product_id", format_args!("p{product}"));
            item.money("price", price);
            item.int("quantity", quantity);
        });
        p.close();
    }
    o.close();
}

/// A well-mixed 64-bit hash of the seed, a customer and one of their calls
/// (SplitMix64's finalizer).
fn mix(seed: u64, customer: u32, call: u16) -> u64 {
    let mut z = seed ^ (u64::from(customer) << 16 | u64::from(call));
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(config: &PurchaseConfig) -> (String, GenStats) {
        let mut out = Vec::new();
        let stats = generate_purchases(config, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), stats)
    }

    #[test]
    fn the_history_is_in_time_order_parses_and_repeats_by_seed() {
        let config = PurchaseConfig::new(4_000);
        let (text, stats) = lines(&config);
        assert_eq!(stats.lines, text.lines().count() as u64);
        assert!(stats.lines <= 4_000 && stats.lines > 3_000, "{stats:?}");
        let mut last = String::new();
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let t = v["timestamp"].as_str().unwrap().to_string();
            assert!(t >= last, "{t} after {last}");
            last = t;
            if v["type"] == "track" {
                assert_eq!(v["event"], "Order Completed");
                let total = v["properties"]["total"].as_f64().unwrap();
                assert!(total > 0.0);
            }
        }
        assert_eq!(text, lines(&config).0);
        let other = PurchaseConfig { seed: 2, ..config };
        assert_ne!(text, lines(&other).0);
    }

    #[test]
    fn a_history_has_a_few_orders_per_customer_in_short_lines() {
        let (text, stats) = lines(&PurchaseConfig {
            events: u64::MAX,
            ..PurchaseConfig::new(40_000)
        });
        let per_customer = stats.lines as f64 / stats.customers as f64;
        assert!((3.0..5.0).contains(&per_customer), "{per_customer}");
        let mean = text.len() as f64 / stats.lines as f64;
        assert!((150.0..260.0).contains(&mean), "{mean} bytes a line");
        // Every customer's first line is its identify.
        let mut first = std::collections::HashMap::new();
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let who = v["userId"].as_str().unwrap().to_string();
            first
                .entry(who)
                .or_insert(v["type"].as_str().unwrap().to_string());
        }
        assert!(first.values().all(|t| t == "identify"));
    }

    #[test]
    fn the_limit_cuts_the_history_at_a_time() {
        let full = lines(&PurchaseConfig {
            events: u64::MAX,
            ..PurchaseConfig::new(1_000)
        })
        .0;
        let cut = lines(&PurchaseConfig {
            events: 500,
            ..PurchaseConfig::new(1_000)
        })
        .0;
        assert_eq!(cut.lines().count(), 500);
        assert!(full.starts_with(&cut));
    }
}
