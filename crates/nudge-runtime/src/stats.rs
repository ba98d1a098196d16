//! Counters of a run and the summary table printed at its end.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;

use nudge_bytecode::Bundle;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::record::{ExitReason, Outcome};

/// Counters for one flow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowStats {
    /// Instances started.
    pub entered: u64,
    /// Triggers refused by the entry rule.
    pub not_entered: u64,
    /// Instances still live at the end.
    pub active: u64,
    /// Instances that ran their last step.
    pub completed: u64,
    /// Instances that ended early, by reason (the `exit on` event's name,
    /// or the code).
    pub exited: BTreeMap<String, u64>,
    /// Instances that ended early, by reason code: few, stable values, for metrics.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exits: BTreeMap<ExitReason, u64>,
    /// Instances ended by a run-time error.
    pub errors: u64,
    /// Instances in the holdout group.
    pub held_out: u64,
    /// Messages sent, by channel.
    pub sends: BTreeMap<String, u64>,
    /// Send decisions by outcome and reason (`blocked: consent`).
    pub decisions: BTreeMap<String, u64>,
    /// Send decisions by outcome and reason code (`("blocked", "consent")`;
    /// the code is empty for a send): few, stable values, for metrics.
    #[serde(skip)]
    pub by_code: BTreeMap<(&'static str, &'static str), u64>,
    /// Split variants chosen.
    pub variants: BTreeMap<String, u64>,
    /// Goals reached by treated instances.
    pub conversions: u64,
    /// Revenue of those conversions, all currencies added (the summary
    /// table's figure; see `revenue_by_currency`).
    pub revenue: Decimal,
    /// Revenue of those conversions by the goal event's `currency` (empty
    /// when it gives none): amounts in different currencies never add up.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revenue_by_currency: BTreeMap<String, Decimal>,
    /// Goals reached by held-out instances.
    pub holdout_conversions: u64,
    /// Treated conversions by the last message sent before them.
    pub attributed: BTreeMap<String, u64>,
    /// Messages sent after a stopping event had happened but before it
    /// arrived: what a marketer watches to tune waits against late data.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sent_before_stop: u64,
}

/// Whether a counter is zero (left out of the JSON summary then).
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl FlowStats {
    /// Counts one send decision.
    pub fn decide(&mut self, outcome: Outcome, reason: Option<&str>) {
        add_one(&mut self.decisions, &decision_key(outcome, reason));
    }

    /// Takes back one [`FlowStats::decide`] (a send a host could not hand over).
    pub fn undecide(&mut self, outcome: Outcome, reason: Option<&str>) {
        take_one(&mut self.decisions, &*decision_key(outcome, reason));
    }
}

/// The key of [`FlowStats::decisions`]: the outcome, and its reason if any.
/// A send has no reason: its key is the outcome's name, not built again.
fn decision_key(outcome: Outcome, reason: Option<&str>) -> Cow<'static, str> {
    match reason {
        Some(r) => Cow::Owned(format!("{}: {r}", outcome.name())),
        None => Cow::Borrowed(outcome.name()),
    }
}

/// The kinds of feedback [`Stats::feedback`] counts.
pub const FEEDBACK_KINDS: [&str; 5] = ["bounce", "spam", "unsubscribe", "click", "stop"];

/// Counters for a whole run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Calls applied.
    pub events: u64,
    /// Calls dropped as repeats of a `messageId`.
    pub duplicates: u64,
    /// Lines refused as bad input.
    pub dead_letters: u64,
    /// Properties and traits dropped for not fitting their types (their
    /// calls were applied without them).
    pub dropped: u64,
    /// Track calls of events the project does not declare: accepted,
    /// otherwise ignored.
    pub undeclared: u64,
    /// Group calls.
    pub groups: u64,
    /// Distinct customers.
    pub customers: u64,
    /// Feedback by kind (`bounce`, `spam`, `unsubscribe`, `stop`, `click`)
    /// and the flow its event names (empty when it names none of the
    /// project's): few, stable values, for metrics.
    #[serde(skip)]
    pub feedback: BTreeMap<(&'static str, String), u64>,
    /// Per flow, by name.
    pub flows: BTreeMap<String, FlowStats>,
}

impl Stats {
    /// Zero counters for every flow of a bundle.
    pub fn new(bundle: &Bundle) -> Stats {
        Stats {
            flows: bundle
                .flows
                .iter()
                .map(|f| (f.name.clone(), FlowStats::default()))
                .collect(),
            ..Stats::default()
        }
    }

    /// Counts one piece of feedback; a flow that is not the project's is
    /// counted under none, so label values stay few.
    pub fn count_feedback(&mut self, kind: &'static str, flow: String) {
        let flow = if self.flows.contains_key(&flow) {
            flow
        } else {
            String::new()
        };
        *self.feedback.entry((kind, flow)).or_insert(0) += 1;
    }

    /// The counters of one flow.
    #[allow(clippy::expect_used)] // inserted just before when missing
    pub fn flow_mut(&mut self, name: &str) -> &mut FlowStats {
        // Every flow of the bundle is there from the start: its name is
        // copied only for one that is not (a deploy's new flow).
        if !self.flows.contains_key(name) {
            self.flows.insert(name.to_string(), FlowStats::default());
        }
        self.flows.get_mut(name).expect("inserted above")
    }

    /// The summary table people read at the end of a run.
    pub fn table(&self) -> String {
        let header = [
            "flow",
            "entered",
            "active",
            "completed",
            "exited",
            "sends",
            "conversions",
        ];
        let mut rows: Vec<[String; 7]> = Vec::new();
        for (name, f) in &self.flows {
            rows.push([
                name.clone(),
                f.entered.to_string(),
                f.active.to_string(),
                f.completed.to_string(),
                join_counts(&f.exited, f.errors),
                join_counts(&f.sends, 0),
                if f.revenue.is_zero() {
                    f.conversions.to_string()
                } else {
                    format!(
                        "{} ({})",
                        f.conversions,
                        nudge_bytecode::format_money(f.revenue)
                    )
                },
            ]);
        }
        let mut widths = header.map(str::len);
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[&str]| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i == 0 {
                    let _ = write!(s, "{cell:<w$}");
                } else {
                    let _ = write!(s, "  {cell:>w$}");
                }
            }
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(&mut out, &header);
        for r in &rows {
            let cells: Vec<&str> = r.iter().map(String::as_str).collect();
            line(&mut out, &cells);
        }
        let _ = writeln!(
            out,
            "{} events applied, {} duplicates dropped, {} dead letters, {} customers",
            self.events, self.duplicates, self.dead_letters, self.customers
        );
        // Only when there is something to say, so clean runs read as before.
        let noted: Vec<String> = [
            (self.dropped, "properties dropped"),
            (self.undeclared, "undeclared events"),
            (self.groups, "group calls"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if !noted.is_empty() {
            let _ = writeln!(out, "accepted with notes: {}", noted.join(", "));
        }
        let held: Vec<String> = self
            .flows
            .iter()
            .flat_map(|(name, f)| {
                f.decisions
                    .iter()
                    .filter(|(k, _)| !k.starts_with("sent"))
                    .map(move |(k, n)| format!("{name}: {k} ×{n}"))
            })
            .collect();
        if !held.is_empty() {
            let _ = writeln!(out, "not sent at once: {}", held.join("; "));
        }
        out
    }
}

fn join_counts(m: &BTreeMap<String, u64>, errors: u64) -> String {
    let mut parts: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if errors > 0 {
        parts.push(format!("error {errors}"));
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join(", ")
    }
}

/// Adds one to `key`'s count, copying the key only when it is new.
pub(crate) fn add_one(counts: &mut BTreeMap<String, u64>, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_string(), 1);
        }
    }
}

/// Takes one off a counter, dropping it at zero (as if never counted).
pub(crate) fn take_one<K, Q>(counts: &mut BTreeMap<K, u64>, key: &Q)
where
    K: Ord + std::borrow::Borrow<Q>,
    Q: Ord + ?Sized,
{
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}
