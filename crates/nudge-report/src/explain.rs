//! `nudge explain`: everything that happened to one customer, in order and
//! in plain words, including what happened under identities later joined
//! into them.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use nudge_runtime::record::{DeliveryOutcome, EntryReason, Outcome, Record, SendReason, What};

use crate::identity::Identities;
use crate::trace::{Entry, Trace, parse_time};

/// How many known ids an unknown-customer error lists.
const SHOWN_IDS: usize = 8;

/// Why a timeline could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnknownCustomer {
    /// Nobody by that id appears in the trace.
    Customer {
        /// The id asked for.
        customer: String,
        /// Ids the trace does hold, sorted.
        known: Vec<String>,
    },
    /// No record of the trace names that flow.
    Flow {
        /// The flow asked for.
        flow: String,
        /// Flows the trace does name, sorted.
        known: Vec<String>,
    },
}

impl fmt::Display for UnknownCustomer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, name, known) = match self {
            UnknownCustomer::Customer { customer, known } => ("customer", customer, known),
            UnknownCustomer::Flow { flow, known } => ("flow", flow, known),
        };
        write!(f, "no {what} {name:?} in the trace")?;
        if known.is_empty() {
            return write!(f, "; the trace is empty");
        }
        let shown: Vec<&str> = known.iter().take(SHOWN_IDS).map(String::as_str).collect();
        write!(f, "; known {what}s: {}", shown.join(", "))?;
        if known.len() > SHOWN_IDS {
            write!(f, " and {} more", known.len() - SHOWN_IDS)?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownCustomer {}

/// One customer's records, in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    /// The id asked about.
    pub customer: String,
    /// Every id whose records are included: the customer and those joined into them.
    pub identities: Vec<String>,
    /// The customer the asked id was itself later joined into, if any.
    pub joined_into: Option<String>,
    /// The flow the timeline is limited to, if any.
    pub flow: Option<String>,
    /// The selected records, by time, then by trace line.
    pub entries: Vec<Entry>,
    /// What became of each send decided `sent`, by its entry's trace line;
    /// empty when the trace holds no delivery records (then a send decided
    /// `sent` reads as sent).
    pub delivery: BTreeMap<usize, SendState>,
}

/// What became of a send decided `sent`, as far as the trace tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendState {
    /// In the ledger; no delivery outcome written yet.
    Queued,
    /// The destination accepted it.
    Delivered,
    /// The destination refused it, for this reason.
    Failed(String),
    /// No answer came, for this reason: it may have arrived.
    Unknown(String),
    /// A bounce was reported for it afterwards.
    Bounced,
}

impl SendState {
    /// The state's name, as JSON output gives it.
    pub fn name(&self) -> &'static str {
        match self {
            SendState::Queued => "queued",
            SendState::Delivered => "delivered",
            SendState::Failed(_) => "failed",
            SendState::Unknown(_) => "unknown",
            SendState::Bounced => "bounced",
        }
    }

    /// The reason, for a failed or unknown delivery.
    pub fn reason(&self) -> Option<&str> {
        match self {
            SendState::Failed(r) | SendState::Unknown(r) => Some(r),
            _ => None,
        }
    }
}

impl fmt::Display for SendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(r) => write!(f, "{} ({r})", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// The state of each send decided `sent` among `entries` (by trace line),
/// from the trace's delivery records and later bounces; empty when the
/// trace has no delivery records.
fn delivery_states(trace: &Trace, entries: &[Entry]) -> BTreeMap<usize, SendState> {
    let finals = trace.final_deliveries();
    let mut states = BTreeMap::new();
    if finals.is_empty() {
        return states;
    }
    for e in entries {
        match &e.record.what {
            What::Send {
                outcome: Outcome::Sent,
                key,
                ..
            } => {
                let state = match finals.get(key.as_str()) {
                    None => SendState::Queued,
                    Some(d) => {
                        let reason =
                            || d.reason.clone().unwrap_or_else(|| "no reason given".into());
                        match d.outcome {
                            DeliveryOutcome::Delivered => SendState::Delivered,
                            DeliveryOutcome::Failed => SendState::Failed(reason()),
                            DeliveryOutcome::Unknown => SendState::Unknown(reason()),
                        }
                    }
                };
                states.insert(e.line, state);
            }
            What::Feedback {
                feedback,
                channel,
                message: Some(m),
                flow,
            } if feedback == "bounced" => {
                // The bounce is for the latest matching send before it (the
                // entries are in time order), as the report credits it.
                let hit = entries
                    .iter()
                    .take_while(|s| s.line != e.line)
                    .filter(|s| match &s.record.what {
                        What::Send {
                            outcome: Outcome::Sent,
                            message,
                            channel: c,
                            flow: f,
                            ..
                        } => {
                            message == m
                                && (channel.is_empty() || c == channel)
                                && flow.as_ref().is_none_or(|x| x == f)
                        }
                        _ => false,
                    })
                    .last();
                if let Some(s) = hit {
                    states.insert(s.line, SendState::Bounced);
                }
            }
            _ => {}
        }
    }
    states
}

impl Timeline {
    /// Selects a customer's records, following joins, optionally for one flow.
    pub fn build(
        trace: &Trace,
        customer: &str,
        flow: Option<&str>,
    ) -> Result<Timeline, UnknownCustomer> {
        let ids = Identities::of(trace);
        let members = ids.members(customer);
        let known = trace.customers();
        let mentioned = known.iter().any(|k| k == customer) || ids.joined_into(customer).is_some();
        if !mentioned {
            return Err(UnknownCustomer::Customer {
                customer: customer.to_string(),
                known,
            });
        }
        if let Some(flow) = flow {
            let mut flows: Vec<String> = trace
                .entries
                .iter()
                .filter_map(|e| flow_of(&e.record.what))
                .map(str::to_string)
                .collect();
            flows.sort();
            flows.dedup();
            if !flows.iter().any(|f| f == flow) {
                return Err(UnknownCustomer::Flow {
                    flow: flow.to_string(),
                    known: flows,
                });
            }
        }
        let mut entries: Vec<Entry> = trace
            .entries
            .iter()
            .filter(|e| members.contains(&e.record.customer))
            .filter(|e| match flow {
                None => true,
                // Joins say who the other records belong to, so they stay.
                Some(f) => {
                    matches!(e.record.what, What::Joined { .. })
                        || flow_of(&e.record.what) == Some(f)
                }
            })
            .cloned()
            .collect();
        entries.sort_by_key(|e| (e.at, e.line));
        let root = ids.root(customer);
        let delivery = delivery_states(trace, &entries);
        Ok(Timeline {
            customer: customer.to_string(),
            identities: members.into_iter().collect(),
            joined_into: (root != customer).then(|| root.to_string()),
            flow: flow.map(str::to_string),
            entries,
            delivery,
        })
    }

    /// The timeline for people: a header, then one line per record.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "{}", self.customer);
        let others: Vec<&str> = self
            .identities
            .iter()
            .filter(|i| **i != self.customer)
            .map(String::as_str)
            .collect();
        if !others.is_empty() {
            let _ = write!(out, " (with {}, joined in)", others.join(", "));
        }
        if let Some(flow) = &self.flow {
            let _ = write!(out, " in {flow}");
        }
        let n = self.entries.len();
        let _ = writeln!(out, ": {n} record{}", if n == 1 { "" } else { "s" });
        let rows: Vec<(String, String)> = self
            .entries
            .iter()
            .map(|e| {
                let mut text = describe_as(&e.record, self.delivery.get(&e.line));
                if e.record.customer != self.customer {
                    // One bracket of context per line: add the identity to the flow's, if any.
                    let tag = format!("as {}", e.record.customer);
                    match text.strip_suffix(']') {
                        Some(head) => text = format!("{head}, {tag}]"),
                        None => text = format!("{text} [{tag}]"),
                    }
                }
                (when(e), text)
            })
            .collect();
        let width = rows
            .iter()
            .map(|(w, _)| w.chars().count())
            .max()
            .unwrap_or(0);
        for (w, text) in rows {
            let _ = writeln!(out, "  {w:<width$}  {text}");
        }
        if let Some(root) = &self.joined_into {
            let _ = writeln!(
                out,
                "note: {} was later joined into {root}; `nudge explain {root}` tells the whole story",
                self.customer
            );
        }
        out
    }

    /// The selected records as a JSON array, each as the trace wrote it; a
    /// send decided `sent` also carries `delivery` (and `delivery_reason`)
    /// when the trace holds delivery records.
    pub fn json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.entries
                .iter()
                .map(|e| {
                    let mut v = serde_json::to_value(&e.record).unwrap_or(serde_json::Value::Null);
                    if let (Some(state), Some(obj)) =
                        (self.delivery.get(&e.line), v.as_object_mut())
                    {
                        obj.insert("delivery".into(), state.name().into());
                        if let Some(r) = state.reason() {
                            obj.insert("delivery_reason".into(), r.into());
                        }
                    }
                    v
                })
                .collect(),
        )
    }
}

/// The flow a record belongs to, if it names one.
pub fn flow_of(what: &What) -> Option<&str> {
    what.flow()
}

/// The time column: UTC, and for a record read in the recipient's zone, their local time too.
fn when(e: &Entry) -> String {
    let utc = e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    match &e.record.what {
        What::Send {
            zone: Some(zone), ..
        } => match zone.parse::<Tz>() {
            Ok(tz) => format!("{utc} ({} {zone})", e.at.with_timezone(&tz).format("%H:%M")),
            Err(_) => utc,
        },
        _ => utc,
    }
}

/// One record in plain words.
pub fn describe(record: &Record) -> String {
    describe_as(record, None)
}

/// One record in plain words; a send decided `sent` reads as `state` when
/// the trace tells what became of it.
fn describe_as(record: &Record, state: Option<&SendState>) -> String {
    match &record.what {
        What::Joined { identities } => format!(
            "joined: {} now known as {}",
            identities.join(", "),
            record.customer
        ),
        What::Entered {
            flow,
            instance,
            trigger,
            holdout,
            ..
        } => {
            let mut s = format!("entered {flow} (instance {instance}) on {trigger}");
            if *holdout {
                s.push_str(", in the holdout group (nothing will be sent)");
            }
            s
        }
        What::NotEntered {
            flow,
            reason,
            late_by,
            due,
        } => {
            let why = match (reason, late_by) {
                (EntryReason::AlreadyActive, _) => "already in it".to_string(),
                (EntryReason::EnteredBefore, _) => "entered it before".to_string(),
                (EntryReason::EnteredWithinWindow, _) => "entered it too recently".to_string(),
                (EntryReason::Late, Some(by)) => {
                    format!("the trigger arrived {by} after it happened, past the lateness bound")
                }
                (EntryReason::Late, None) => {
                    "the trigger arrived past the lateness bound".to_string()
                }
                (EntryReason::DatePassed, by) => {
                    let mut s = "its date had passed when it was learned".to_string();
                    if let Some(due) = due {
                        s.push_str(&format!(" (due {due}"));
                        if let Some(by) = by {
                            s.push_str(&format!(", learned {by} later"));
                        }
                        s.push(')');
                    }
                    s
                }
            };
            format!("not entered into {flow}: {why}")
        }
        What::ExitedLate {
            flow,
            instance,
            event,
            happened,
            late_by,
            messages,
        } => format!(
            "{event} happened at {happened} but arrived {late_by} late: already sent {} [{flow} #{instance}]",
            messages.join(", ")
        ),
        What::Variant {
            flow,
            instance,
            variant,
            floor,
        } => match floor {
            None => format!("split chose variant {variant} [{flow} #{instance}]"),
            Some(_) => {
                format!("split (optimising the goal) chose variant {variant} [{flow} #{instance}]")
            }
        },
        What::Send {
            flow,
            instance,
            step,
            message,
            channel,
            outcome,
            reason,
            code,
            until,
            retry_at,
            zone,
            ..
        } => {
            let reason = reason.as_deref();
            let verdict = match outcome {
                Outcome::Sent => state.map_or_else(|| "sent".to_string(), SendState::to_string),
                Outcome::Deferred => deferral(
                    reason,
                    until.as_deref(),
                    retry_at.as_deref(),
                    zone.as_deref(),
                    &record.at,
                ),
                Outcome::Capped => format!("skipped by {}", reason.unwrap_or("a cap")),
                Outcome::Blocked => format!("blocked ({})", blocked(*code, reason, channel)),
                Outcome::Suppressed => match (code.or_else(|| reason.and_then(code_of)), reason) {
                    (Some(SendReason::SuppressionList), _) => {
                        "suppressed by the suppression list".into()
                    }
                    (Some(SendReason::SuppressIfFailed), Some(r)) => format!("suppressed: {r}"),
                    (_, Some(r)) => format!("suppressed by rule {r}"),
                    (_, None) => "suppressed".into(),
                },
                Outcome::HeldOut => "held out (holdout group)".into(),
                Outcome::Duplicate => "not sent again (same idempotency key)".into(),
                Outcome::Failed => format!("failed ({})", reason.unwrap_or("no reason given")),
            };
            format!("{message} by {channel}: {verdict} [{flow} #{instance} step {step}]")
        }
        What::Audience {
            flow,
            audience,
            action,
        } => match action.as_str() {
            "add" => format!("added to audience {audience} [{flow}]"),
            "remove" => format!("removed from audience {audience} [{flow}]"),
            other => format!("audience {audience}: {other} [{flow}]"),
        },
        What::Profile { flow, field, value } => {
            format!("profile.{field} set to {value} [{flow}]")
        }
        What::Recommended {
            flow,
            products,
            sources,
        } => format!("recommended {} [{flow}]", recommended(products, sources)),
        What::Exited {
            flow,
            instance,
            reason,
            ..
        } => format!("exited {flow}: {reason} [#{instance}]"),
        What::Completed { flow, instance } => format!("completed {flow} [#{instance}]"),
        What::Converted {
            flow,
            instance,
            event,
            revenue,
            holdout,
            message,
            ..
        } => {
            let mut s = format!("converted: {event}");
            if let Some(r) = revenue {
                s.push_str(&format!(", {r}"));
            }
            if let Some(m) = message {
                s.push_str(&format!(", after {m}"));
            }
            if *holdout {
                s.push_str(" (holdout group)");
            }
            format!("{s} [{flow} #{instance}]")
        }
        What::Refunded {
            order_id, amount, ..
        } => format!("refunded order {order_id}: {amount}"),
        What::Feedback {
            feedback,
            channel,
            message,
            flow,
        } => {
            let what = message.as_deref().unwrap_or("a message");
            let mut s = match feedback.as_str() {
                "clicked" => format!("clicked {what} ({channel})"),
                "bounced" => format!("{what} by {channel} bounced"),
                "spam" => format!("marked {what} ({channel}) as spam"),
                other => format!("{other}: {what} ({channel})"),
            };
            if let Some(f) = flow {
                s.push_str(&format!(" [{f}]"));
            }
            s
        }
        What::Error {
            flow,
            instance,
            message,
        } => format!("error in {flow}: {message} [#{instance}]"),
        What::Dropped {
            event,
            path,
            reason,
            used,
        } => {
            let mut s = format!("dropped `{path}`");
            if let Some(e) = event {
                s.push_str(&format!(" of {e}"));
            }
            s.push_str(&format!(": {reason}"));
            if let Some(u) = used {
                s.push_str(&format!(" (used {u})"));
            }
            s
        }
    }
}

/// Why a send was blocked, in words; traces written before reasons had
/// codes are read by their reason text.
fn blocked(code: Option<SendReason>, reason: Option<&str>, channel: &str) -> String {
    let ch = if channel == "sms" { "SMS" } else { channel };
    match code.or_else(|| reason.and_then(code_of)) {
        Some(SendReason::Consent) => format!("no {ch} consent"),
        Some(SendReason::NoAddress) => match channel {
            "sms" => "no phone number".into(),
            "email" => "no email address".into(),
            _ => "no address".into(),
        },
        Some(SendReason::Undeliverable) => "the address bounced before".into(),
        Some(SendReason::OptedOut) => format!("opted out of {ch}"),
        _ => reason.unwrap_or("no reason given").to_string(),
    }
}

/// The code a reason text stands for, when it is one.
fn code_of(reason: &str) -> Option<SendReason> {
    SendReason::ALL.into_iter().find(|c| c.code() == reason)
}

/// A deferral in words: which rule, until when, released when; local times for quiet hours.
fn deferral(
    reason: Option<&str>,
    until: Option<&str>,
    retry_at: Option<&str>,
    zone: Option<&str>,
    at: &str,
) -> String {
    let rule = match reason {
        Some("quiet_hours") => "quiet hours".to_string(),
        Some(r) => r.to_string(),
        None => "a rule".to_string(),
    };
    let mut s = format!("deferred by {rule}");
    let tz: Option<Tz> = zone.and_then(|z| z.parse().ok());
    let at = parse_time(at);
    let until = until.and_then(parse_time);
    let retry = retry_at.and_then(parse_time);
    if let Some(u) = until {
        // A quiet-hours window ends within a day, so its hour is enough; a cap may free up days later.
        let near = tz.is_some() && at.is_some_and(|a| u - a <= chrono::Duration::hours(24));
        let _ = write!(s, " until {}", local(u, tz, zone, near));
        if let Some(r) = retry
            && r != u
        {
            let same_day = in_zone(r, tz).0 == in_zone(u, tz).0;
            let shown = if same_day {
                in_zone(r, tz).1
            } else {
                format!("{} {}", in_zone(r, tz).0, in_zone(r, tz).1)
            };
            let _ = write!(s, " (released {shown})");
        }
    } else if let Some(r) = retry {
        let _ = write!(s, " (released {})", local(r, tz, zone, false));
    }
    s
}

/// A time in the zone (UTC without one): `08:00 America/New_York`, `2026-11-25 08:00 UTC`.
fn local(t: DateTime<Utc>, tz: Option<Tz>, zone: Option<&str>, time_only: bool) -> String {
    let (date, time) = in_zone(t, tz);
    let name = match (tz, zone) {
        (Some(_), Some(z)) => z,
        _ => "UTC",
    };
    if time_only {
        format!("{time} {name}")
    } else {
        format!("{date} {time} {name}")
    }
}

fn in_zone(t: DateTime<Utc>, tz: Option<Tz>) -> (String, String) {
    match tz {
        Some(tz) => {
            let l = t.with_timezone(&tz);
            (
                l.format("%Y-%m-%d").to_string(),
                l.format("%H:%M").to_string(),
            )
        }
        None => (
            t.format("%Y-%m-%d").to_string(),
            t.format("%H:%M").to_string(),
        ),
    }
}

/// Recommended products with their sources: `p2 (co_purchase), p9 (popular)`.
fn recommended(products: &[String], sources: &[String]) -> String {
    if products.is_empty() {
        return "nothing".into();
    }
    products
        .iter()
        .zip(
            sources
                .iter()
                .map(String::as_str)
                .chain(std::iter::repeat("?")),
        )
        .map(|(p, s)| format!("{p} ({s})"))
        .collect::<Vec<_>>()
        .join(", ")
}
