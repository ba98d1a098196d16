//! Reading a trace file, keeping each record's line so that problems can be
//! pointed at.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use std::collections::HashMap;

use nudge_runtime::record::{DeliveryRecord, Record, What};

/// One record of a trace with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The 1-based line of the trace file.
    pub line: usize,
    /// The record's `at`, parsed.
    pub at: DateTime<Utc>,
    /// The record as written.
    pub record: Record,
    /// Order facts a conversion may carry beyond [`Record`]'s fields.
    pub order: OrderFacts,
}

/// What identifies an order and its currency, read from a `converted`
/// record when present. Today's runtime writes none of these; the report
/// reads them so that a trace which carries them is counted by them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderFacts {
    /// The order's `order_id`.
    pub order_id: Option<String>,
    /// The goal event's Segment `messageId`.
    pub message_id: Option<String>,
    /// The ISO 4217 code of the revenue's currency.
    pub currency: Option<String>,
}

/// A whole trace, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// The records, in the order the engine wrote them.
    pub entries: Vec<Entry>,
    /// The delivery outcomes a store-backed host wrote, in file order.
    pub deliveries: Vec<Delivered>,
}

/// One delivery outcome of a trace with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivered {
    /// The 1-based line of the trace file.
    pub line: usize,
    /// The record as written.
    pub record: DeliveryRecord,
}

/// Why a trace could not be read.
#[derive(Debug)]
pub enum TraceError {
    /// There is no trace file at all.
    Missing(PathBuf),
    /// The file exists but could not be read.
    Io(PathBuf, std::io::Error),
    /// A line is not a record.
    Parse {
        /// The file (or `<input>` for text given directly).
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Missing(p) => write!(f, "no trace at {}", p.display()),
            TraceError::Io(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            TraceError::Parse {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
        }
    }
}

impl std::error::Error for TraceError {}

impl Trace {
    /// Reads a trace file.
    pub fn read(path: &Path) -> Result<Trace, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                TraceError::Missing(path.to_path_buf())
            } else {
                TraceError::Io(path.to_path_buf(), e)
            }
        })?;
        Trace::parse(&text, path)
    }

    /// Parses trace text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Trace, TraceError> {
        let mut entries = Vec::new();
        let mut deliveries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |message: String| TraceError::Parse {
                path: path.to_path_buf(),
                line,
                message,
            };
            if raw.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value =
                serde_json::from_str(raw).map_err(|e| err(format!("not a trace record: {e}")))?;
            if value.get("kind").and_then(|k| k.as_str()) == Some("delivery") {
                let record: DeliveryRecord = serde_json::from_value(value)
                    .map_err(|e| err(format!("not a delivery record: {e}")))?;
                if parse_time(&record.at).is_none() {
                    return Err(err(format!("`at` {:?} is not an RFC 3339 time", record.at)));
                }
                deliveries.push(Delivered { line, record });
                continue;
            }
            let order = order_facts(&value);
            let record: Record = serde_json::from_value(value)
                .map_err(|e| err(format!("not a trace record: {e}")))?;
            if let Some(c) = &order.currency
                && !crate::money::is_currency_code(c)
            {
                return Err(err(format!(
                    "`currency` {c:?} is not an ISO 4217 code (three capital letters)"
                )));
            }
            let at = parse_time(&record.at)
                .ok_or_else(|| err(format!("`at` {:?} is not an RFC 3339 time", record.at)))?;
            // Checked here so that rendering never meets a bad time later.
            if let What::Send {
                until, retry_at, ..
            } = &record.what
            {
                for (name, value) in [("until", until), ("retry_at", retry_at)] {
                    if let Some(v) = value
                        && parse_time(v).is_none()
                    {
                        return Err(err(format!("`{name}` {v:?} is not an RFC 3339 time")));
                    }
                }
            }
            entries.push(Entry {
                line,
                at,
                record,
                order,
            });
        }
        Ok(Trace {
            entries,
            deliveries,
        })
    }

    /// The last delivery outcome written for each idempotency key: a send
    /// delivered again after a failure (or a restart) ends as its last
    /// attempt did. Empty for a trace without delivery records (one of an
    /// in-memory run, or written before they existed).
    pub fn final_deliveries(&self) -> HashMap<&str, &DeliveryRecord> {
        self.deliveries
            .iter()
            .map(|d| (d.record.key.as_str(), &d.record))
            .collect()
    }

    /// Every display id that appears in the trace, sorted, without repeats.
    pub fn customers(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .entries
            .iter()
            .map(|e| e.record.customer.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// The order facts of a `converted` record (none for other kinds).
fn order_facts(value: &serde_json::Value) -> OrderFacts {
    if value.get("kind").and_then(|k| k.as_str()) != Some("converted") {
        return OrderFacts::default();
    }
    let text = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    OrderFacts {
        order_id: text("order_id"),
        message_id: text("message_id"),
        currency: text("currency"),
    }
}

/// Parses an RFC 3339 time into UTC.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_line() {
        let text = concat!(
            r#"{"at":"2026-11-23T10:00:00Z","customer":"u1","kind":"completed","flow":"f","instance":1}"#,
            "\n\n",
            r#"{"at":"2026-11-23T10:00:00Z","customer":"u1","kind":"nonsense"}"#,
            "\n"
        );
        let err = Trace::parse(text, Path::new("t.jsonl")).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with("t.jsonl:3: not a trace record"),
            "{shown}"
        );
    }

    #[test]
    fn bad_times_are_errors_with_lines() {
        let text =
            r#"{"at":"yesterday","customer":"u1","kind":"completed","flow":"f","instance":1}"#;
        let err = Trace::parse(text, Path::new("t.jsonl")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"t.jsonl:1: `at` "yesterday" is not an RFC 3339 time"#
        );
        let text = r#"{"at":"2026-11-23T10:00:00Z","customer":"u1","kind":"send","flow":"f","instance":1,"step":0,"message":"m","channel":"sms","outcome":"deferred","reason":"quiet_hours","until":"soon","key":"k"}"#;
        let err = Trace::parse(text, Path::new("t.jsonl")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"t.jsonl:1: `until` "soon" is not an RFC 3339 time"#
        );
    }

    #[test]
    fn delivery_records_are_kept_apart_and_the_last_one_stands() {
        let text = concat!(
            r#"{"at":"2026-11-23T10:00:00Z","customer":"u1","kind":"send","flow":"f","instance":1,"step":0,"message":"m","channel":"push","outcome":"sent","key":"k1"}"#,
            "\n",
            r#"{"kind":"delivery","at":"2026-11-23T10:00:00Z","customer":"u1","flow":"f","message":"m","channel":"push","outcome":"failed","reason":"HTTP 500","provider":"webhook","key":"k1"}"#,
            "\n",
            r#"{"kind":"delivery","at":"2026-11-23T10:00:00Z","customer":"u1","flow":"f","message":"m","channel":"push","outcome":"delivered","provider":"webhook","key":"k1"}"#,
            "\n",
        );
        let t = Trace::parse(text, Path::new("t")).unwrap();
        assert_eq!(t.entries.len(), 1);
        assert_eq!(
            t.deliveries.iter().map(|d| d.line).collect::<Vec<_>>(),
            [2, 3]
        );
        let last = t.final_deliveries();
        assert_eq!(last.len(), 1);
        assert_eq!(last["k1"].outcome.name(), "delivered");

        let bad = r#"{"kind":"delivery","at":"2026-11-23T10:00:00Z","customer":"u1","outcome":"lost","key":"k1"}"#;
        let err = Trace::parse(bad, Path::new("t")).unwrap_err().to_string();
        assert!(err.starts_with("t:1: not a delivery record"), "{err}");
    }

    #[test]
    fn a_missing_file_is_told_apart() {
        let err = Trace::read(Path::new("/nonexistent/trace.jsonl")).unwrap_err();
        assert!(matches!(err, TraceError::Missing(_)));
    }

    #[test]
    fn lines_are_kept() {
        let text = concat!(
            "\n",
            r#"{"at":"2026-11-23T10:00:00+01:00","customer":"u1","kind":"completed","flow":"f","instance":1}"#,
        );
        let t = Trace::parse(text, Path::new("t")).unwrap();
        assert_eq!(t.entries.len(), 1);
        assert_eq!(t.entries[0].line, 2);
        assert_eq!(t.entries[0].at.to_rfc3339(), "2026-11-23T09:00:00+00:00");
    }
}
