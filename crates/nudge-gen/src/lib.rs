//! Realistic Segment event streams for benchmarks and tests, deterministic
//! by seed.
//!
//! Customers in several time zones browse in sessions (mostly in their local
//! daytime and evening), fill carts, check out and sometimes buy; orders
//! then ship, arrive and are occasionally cancelled, returned or refunded.
//! Visitors start anonymous, identify later, and some join a second device
//! with `alias`. Messaging feedback (clicks, bounces, spam reports, SMS
//! replies) and list subscriptions are mixed in.
//!
//! Lines are produced in timestamp order from a priority queue holding, per
//! customer, the rest of the current session, the next session and the
//! pending order updates. Memory therefore grows with the number of
//! customers, never with the number of events.

mod catalogue;
mod json;
mod purchases;
mod stream;

pub use purchases::{PURCHASE_DAYS, PurchaseConfig, generate_purchases, purchase_customers};

use std::collections::BTreeMap;
use std::io::{self, Write};

use chrono::{DateTime, NaiveDate, Utc};

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    /// Seeds every random choice: the same config gives the same bytes.
    pub seed: u64,
    /// How many distinct shoppers take part.
    pub customers: u32,
    /// How many lines to write, exactly.
    pub events: u64,
    /// When the stream begins.
    pub start: DateTime<Utc>,
    /// About how many days the stream spans; sessions are paced to fill it.
    pub days: u32,
    /// The fraction of lines, from 0 to 1, written malformed on purpose.
    pub bad_rate: f64,
}

impl GenConfig {
    /// A config for `events` lines with every other setting at its default:
    /// seed 1, one customer per 40 events, 30 days from 2026-01-05, no bad lines.
    pub fn new(events: u64) -> GenConfig {
        GenConfig {
            seed: 1,
            customers: default_customers(events),
            events,
            start: default_start(),
            days: 30,
            bad_rate: 0.0,
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
        if !(0.0..=1.0).contains(&self.bad_rate) {
            return Err(ConfigError::BadRate(self.bad_rate));
        }
        Ok(())
    }
}

/// The default number of customers for a stream of `events` lines: enough
/// that each has a handful of sessions over the span.
pub fn default_customers(events: u64) -> u32 {
    u32::try_from((events / 40).max(1)).unwrap_or(u32::MAX)
}

/// The default first instant, 2026-01-05T00:00:00Z (a Monday).
pub fn default_start() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2026, 1, 5)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or_default()
}

/// Reads a start time: RFC 3339 (`2026-01-05T00:00:00Z`) or a date
/// (`2026-01-05`, meaning midnight UTC).
pub fn parse_start(text: &str) -> Result<DateTime<Utc>, ConfigError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| ConfigError::Start(text.to_string()))
}

/// A setting that cannot be used.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigError {
    /// `customers` is zero.
    NoCustomers,
    /// `days` is zero.
    NoDays,
    /// `bad_rate` is outside 0..=1.
    BadRate(f64),
    /// The start time could not be read.
    Start(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::NoCustomers => f.write_str("there must be at least one customer"),
            ConfigError::NoDays => f.write_str("the span must be at least one day"),
            ConfigError::BadRate(r) => {
                write!(f, "the bad-line rate must be between 0 and 1, not {r}")
            }
            ConfigError::Start(t) => write!(
                f,
                "{t:?} is not a start time: give RFC 3339 (2026-01-05T00:00:00Z) or a date (2026-01-05)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// What was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenStats {
    /// Lines written.
    pub lines: u64,
    /// Of those, lines malformed on purpose.
    pub bad: u64,
    /// Lines by kind: the event name of track calls, `page`, `identify`, `alias`.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Distinct customers that appear in the stream.
    pub customers: u64,
    /// Orders placed (Order Completed lines).
    pub orders: u64,
    /// The first line's time.
    pub first: Option<DateTime<Utc>>,
    /// The last line's time.
    pub last: Option<DateTime<Utc>>,
}

impl GenStats {
    /// A summary for people: the counts by kind, most frequent first.
    pub fn table(&self) -> String {
        let mut rows: Vec<(&&str, &u64)> = self.by_kind.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (kind, n) in rows {
            out.push_str(&format!("  {kind:<width$}  {n:>10}\n"));
        }
        let span = match (self.first, self.last) {
            (Some(a), Some(b)) => format!(
                " from {} to {}",
                a.format("%Y-%m-%dT%H:%M:%SZ"),
                b.format("%Y-%m-%dT%H:%M:%SZ")
            ),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{} lines ({} malformed on purpose), {} customers, {} orders{span}\n",
            self.lines, self.bad, self.customers, self.orders
        ));
        out
    }
}

/// Writes `config.events` lines of Segment calls to `out`, in timestamp
/// order, and says what was written. Settings that fail
/// [`GenConfig::validate`] are an `InvalidInput` error.
pub fn generate(config: &GenConfig, out: &mut impl Write) -> io::Result<GenStats> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    let stats = stream::Stream::new(config).run(&mut out)?;
    out.flush()?;
    Ok(stats)
}
