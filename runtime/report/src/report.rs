//! `nudge report`: per flow and per step, how many customers entered, what
//! became of each send and why, and what the flow earned, with the holdout
//! group as the baseline.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

use nudge_runtime::record::{Outcome, What};

use crate::identity::Identities;
use crate::money;
use crate::trace::Trace;

/// Digits kept in rates written for tools.
const RATE_DIGITS: u32 = 6;

/// The whole report: one entry per flow, by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Whether the trace holds any channel feedback; without it, delivery is unknown.
    pub feedback_seen: bool,
    /// Feedback records that name no flow and match no earlier send.
    pub unmatched_feedback: u64,
    /// Per flow, sorted by name.
    pub flows: Vec<FlowReport>,
}

/// What one flow did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FlowReport {
    /// The flow's name.
    pub flow: String,
    /// Instances started, treated and held out.
    pub entered: u64,
    /// Instances started outside the holdout group.
    pub entered_treated: u64,
    /// Instances started in the holdout group.
    pub entered_holdout: u64,
    /// Triggers the entry rule refused.
    pub not_entered: u64,
    /// Instances that ran their last step.
    pub completed: u64,
    /// Instances that ended early.
    pub exited: u64,
    /// Instances ended by a run-time error.
    pub errors: u64,
    /// Messages that went out after a stopping event (a purchase) had
    /// happened but before it arrived: the figure to watch when tuning
    /// waits against late data.
    #[serde(skip_serializing_if = "is_zero")]
    pub sent_before_stop: u64,
    /// All steps together.
    pub total: SendCounts,
    /// Per send step, by step index.
    pub steps: Vec<StepReport>,
    /// Goals reached by treated instances.
    pub conversions: u64,
    /// Revenue of those conversions.
    #[serde(serialize_with = "decimal_str")]
    pub revenue: Decimal,
    /// Goals reached by held-out instances.
    pub holdout_conversions: u64,
    /// Revenue of those conversions.
    #[serde(serialize_with = "decimal_str")]
    pub holdout_revenue: Decimal,
    /// Treated conversions per treated entry.
    #[serde(serialize_with = "rate_str")]
    pub treated_rate: Option<Decimal>,
    /// Held-out conversions per held-out entry.
    #[serde(serialize_with = "rate_str")]
    pub holdout_rate: Option<Decimal>,
    /// `treated_rate / holdout_rate - 1`; none without a converting holdout group.
    #[serde(serialize_with = "rate_str")]
    pub lift: Option<Decimal>,
}

/// One send step of a flow.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StepReport {
    /// The step's index in the flow.
    pub step: u16,
    /// The message it sends.
    pub message: String,
    /// The message's channel.
    pub channel: String,
    /// What became of its sends.
    #[serde(flatten)]
    pub counts: SendCounts,
    /// Treated conversions credited to this step: its message was the flow's
    /// last one sent to the customer before they converted.
    pub conversions: u64,
}

/// What became of a set of send decisions.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SendCounts {
    /// Messages handed to the channel.
    pub sent: u64,
    /// Sent minus bounced; none when the trace holds no feedback at all.
    pub delivered: Option<u64>,
    /// Bounce reports.
    pub bounced: u64,
    /// Click reports.
    pub clicked: u64,
    /// Spam complaints.
    pub spam: u64,
    /// Every other decision by `outcome: reason` (`blocked: consent`); a
    /// deferred send that later went out counts here and under `sent`.
    pub held: BTreeMap<String, u64>,
}

impl SendCounts {
    fn add(&mut self, other: &SendCounts) {
        self.sent += other.sent;
        self.bounced += other.bounced;
        self.clicked += other.clicked;
        self.spam += other.spam;
        for (k, n) in &other.held {
            *self.held.entry(k.clone()).or_insert(0) += n;
        }
    }

    fn feedback(&mut self, kind: &str) {
        match kind {
            "bounced" => self.bounced += 1,
            "clicked" => self.clicked += 1,
            "spam" => self.spam += 1,
            _ => {}
        }
    }

    fn settle(&mut self, feedback_seen: bool) {
        self.delivered = feedback_seen.then(|| self.sent.saturating_sub(self.bounced));
    }
}

/// A send that went out, remembered so that later feedback can be credited to it.
struct Sent {
    flow: String,
    step: u16,
    message: String,
    channel: String,
}

impl Report {
    /// Counts a whole trace.
    pub fn build(trace: &Trace) -> Report {
        let ids = Identities::of(trace);
        let mut order: Vec<&crate::trace::Entry> = trace.entries.iter().collect();
        order.sort_by_key(|e| (e.at, e.line));
        let mut flows: BTreeMap<String, FlowReport> = BTreeMap::new();
        let mut steps: BTreeMap<(String, u16, String), StepReport> = BTreeMap::new();
        // Feedback a flow is named for but no step can be found for.
        let mut loose: BTreeMap<String, SendCounts> = BTreeMap::new();
        let mut sent_to: HashMap<String, Vec<Sent>> = HashMap::new();
        let mut report = Report::default();
        for e in order {
            let person = ids.root(&e.record.customer).to_string();
            match &e.record.what {
                What::Joined { .. } | What::Dropped { .. } => {}
                What::Entered {
                    flow: f, holdout, ..
                } => {
                    let r = flow_mut(&mut flows, f);
                    r.entered += 1;
                    if *holdout {
                        r.entered_holdout += 1;
                    } else {
                        r.entered_treated += 1;
                    }
                }
                What::NotEntered { flow: f, .. } => {
                    flow_mut(&mut flows, f).not_entered += 1;
                }
                What::Variant { flow: f, .. }
                | What::Audience { flow: f, .. }
                | What::Profile { flow: f, .. } => {
                    flow_mut(&mut flows, f);
                }
                What::Send {
                    flow: f,
                    step,
                    message,
                    channel,
                    outcome,
                    reason,
                    ..
                } => {
                    flow_mut(&mut flows, f);
                    let s = steps
                        .entry((f.clone(), *step, message.clone()))
                        .or_insert_with(|| StepReport {
                            step: *step,
                            message: message.clone(),
                            channel: channel.clone(),
                            ..StepReport::default()
                        });
                    if *outcome == Outcome::Sent {
                        s.counts.sent += 1;
                        sent_to.entry(person).or_default().push(Sent {
                            flow: f.clone(),
                            step: *step,
                            message: message.clone(),
                            channel: channel.clone(),
                        });
                    } else {
                        let key = match reason {
                            Some(r) => format!("{}: {r}", outcome.name()),
                            None => outcome.name().to_string(),
                        };
                        *s.counts.held.entry(key).or_insert(0) += 1;
                    }
                }
                What::Exited { flow: f, .. } => {
                    flow_mut(&mut flows, f).exited += 1;
                }
                What::ExitedLate {
                    flow: f, messages, ..
                } => {
                    flow_mut(&mut flows, f).sent_before_stop += messages.len() as u64;
                }
                What::Completed { flow: f, .. } => {
                    flow_mut(&mut flows, f).completed += 1;
                }
                What::Error { flow: f, .. } => {
                    flow_mut(&mut flows, f).errors += 1;
                }
                What::Converted {
                    flow: f,
                    revenue,
                    holdout,
                    message,
                    ..
                } => {
                    if !*holdout
                        && let Some(m) = message
                        && let Some(s) = sent_to
                            .get(&person)
                            .and_then(|l| l.iter().rev().find(|s| s.flow == *f && s.message == *m))
                        && let Some(step) =
                            steps.get_mut(&(s.flow.clone(), s.step, s.message.clone()))
                    {
                        step.conversions += 1;
                    }
                    let r = flow_mut(&mut flows, f);
                    let amount = revenue
                        .as_deref()
                        .and_then(money::parse)
                        .unwrap_or_default();
                    if *holdout {
                        r.holdout_conversions += 1;
                        r.holdout_revenue += amount;
                    } else {
                        r.conversions += 1;
                        r.revenue += amount;
                    }
                }
                What::Feedback {
                    feedback,
                    channel,
                    message,
                    flow: named,
                } => {
                    report.feedback_seen = true;
                    // Credit the latest matching send to this person: the message it reports on.
                    let hit = message.as_ref().and_then(|m| {
                        sent_to.get(&person).and_then(|list| {
                            list.iter().rev().find(|s| {
                                s.message == *m
                                    && (channel.is_empty() || s.channel == *channel)
                                    && named.as_ref().is_none_or(|f| s.flow == *f)
                            })
                        })
                    });
                    match (hit, named) {
                        (Some(s), _) => {
                            let key = (s.flow.clone(), s.step, s.message.clone());
                            if let Some(step) = steps.get_mut(&key) {
                                step.counts.feedback(feedback);
                            }
                        }
                        (None, Some(f)) => {
                            flow_mut(&mut flows, f);
                            loose.entry(f.clone()).or_default().feedback(feedback);
                        }
                        (None, None) => report.unmatched_feedback += 1,
                    }
                }
            }
        }
        let seen = report.feedback_seen;
        for ((f, _, _), mut step) in steps {
            step.counts.settle(seen);
            let r = flows.get_mut(&f).expect("every send's flow is counted");
            r.total.add(&step.counts);
            r.steps.push(step);
        }
        for (f, counts) in loose {
            if let Some(r) = flows.get_mut(&f) {
                r.total.add(&counts);
            }
        }
        for r in flows.values_mut() {
            r.total.settle(seen);
            r.treated_rate = money::ratio(r.conversions, r.entered_treated);
            r.holdout_rate = money::ratio(r.holdout_conversions, r.entered_holdout);
            r.lift = match (r.treated_rate, r.holdout_rate) {
                (Some(t), Some(h)) if !h.is_zero() => Some(t / h - Decimal::ONE),
                _ => None,
            };
        }
        report.flows = flows.into_values().collect();
        report
    }

    /// The report for people: per flow, a summary and a table of steps.
    pub fn table(&self) -> String {
        let mut out = String::new();
        if self.flows.is_empty() {
            out.push_str("no flow activity in the trace\n");
            return out;
        }
        for (i, f) in self.flows.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "{}", f.flow);
            let _ = writeln!(
                out,
                "  entered {} (treated {}, holdout {}); not entered {}; completed {}; exited {}; errors {}",
                f.entered,
                f.entered_treated,
                f.entered_holdout,
                f.not_entered,
                f.completed,
                f.exited,
                f.errors
            );
            if f.sent_before_stop > 0 {
                let _ = writeln!(
                    out,
                    "  sent before a stopping event was known: {}",
                    f.sent_before_stop
                );
            }
            let _ = writeln!(
                out,
                "  conversions {} ({}), rate {}; holdout conversions {} ({}), rate {}; lift {}",
                f.conversions,
                money::format(f.revenue),
                rate_text(f.treated_rate),
                f.holdout_conversions,
                money::format(f.holdout_revenue),
                rate_text(f.holdout_rate),
                lift_text(f.lift),
            );
            if f.steps.is_empty() {
                let _ = writeln!(out, "  no sends");
                continue;
            }
            let header = [
                "step",
                "message",
                "channel",
                "sent",
                "delivered",
                "bounced",
                "clicked",
                "converted",
                "held by reason",
            ];
            let row = |step: String, message: &str, channel: &str, c: &SendCounts, conv: u64| {
                [
                    step,
                    message.to_string(),
                    channel.to_string(),
                    c.sent.to_string(),
                    c.delivered.map_or("-".into(), |d| d.to_string()),
                    c.bounced.to_string(),
                    c.clicked.to_string(),
                    conv.to_string(),
                    held_text(&c.held),
                ]
            };
            let mut rows: Vec<[String; 9]> = f
                .steps
                .iter()
                .map(|s| {
                    row(
                        s.step.to_string(),
                        &s.message,
                        &s.channel,
                        &s.counts,
                        s.conversions,
                    )
                })
                .collect();
            rows.push(row("all".into(), "", "", &f.total, f.conversions));
            let mut widths = header.map(str::len);
            for r in &rows {
                for (w, cell) in widths.iter_mut().zip(r) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let _ = writeln!(out);
            let line = |out: &mut String, cells: &[&str]| {
                let mut s = String::new();
                for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                    // Names and reasons read left to right; numbers line up on the right.
                    if matches!(i, 1 | 2 | 8) {
                        let _ = write!(s, "  {cell:<w$}");
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
        }
        if !self.feedback_seen {
            out.push_str("\ndelivered: - (the trace holds no channel feedback)\n");
        }
        if self.unmatched_feedback > 0 {
            let _ = writeln!(
                out,
                "\n{} feedback record(s) name no flow and match no send",
                self.unmatched_feedback
            );
        }
        out
    }

    /// The report for tools.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The report as CSV, one row per flow, step and metric:
    /// `flow,step,message,channel,metric,value`. Flow-wide rows leave the
    /// step, message and channel empty, the flow's send totals have step
    /// `all`, and unknown values are empty.
    pub fn csv(&self) -> String {
        let mut out = String::from("flow,step,message,channel,metric,value\n");
        let mut row =
            |flow: &str, step: &str, message: &str, channel: &str, metric: &str, value: String| {
                let cells = [flow, step, message, channel, metric, &value].map(csv_cell);
                out.push_str(&cells.join(","));
                out.push('\n');
            };
        for f in &self.flows {
            let n = |v: u64| v.to_string();
            let flow_rows: [(&str, String); 14] = [
                ("entered", n(f.entered)),
                ("entered_treated", n(f.entered_treated)),
                ("entered_holdout", n(f.entered_holdout)),
                ("not_entered", n(f.not_entered)),
                ("completed", n(f.completed)),
                ("exited", n(f.exited)),
                ("errors", n(f.errors)),
                ("conversions", n(f.conversions)),
                ("revenue", money_text(f.revenue)),
                ("holdout_conversions", n(f.holdout_conversions)),
                ("holdout_revenue", money_text(f.holdout_revenue)),
                ("treated_rate", opt_rate(f.treated_rate)),
                ("holdout_rate", opt_rate(f.holdout_rate)),
                ("lift", opt_rate(f.lift)),
            ];
            for (metric, value) in flow_rows {
                row(&f.flow, "", "", "", metric, value);
            }
            if f.sent_before_stop > 0 {
                row(
                    &f.flow,
                    "",
                    "",
                    "",
                    "sent_before_stop",
                    n(f.sent_before_stop),
                );
            }
            let steps = f
                .steps
                .iter()
                .map(|s| {
                    (
                        s.step.to_string(),
                        s.message.as_str(),
                        s.channel.as_str(),
                        &s.counts,
                        s.conversions,
                    )
                })
                .chain(std::iter::once((
                    "all".to_string(),
                    "",
                    "",
                    &f.total,
                    f.conversions,
                )));
            for (step, message, channel, c, conversions) in steps {
                let mut metrics = vec![
                    ("sent".to_string(), n(c.sent)),
                    (
                        "delivered".to_string(),
                        c.delivered.map(n).unwrap_or_default(),
                    ),
                    ("bounced".to_string(), n(c.bounced)),
                    ("clicked".to_string(), n(c.clicked)),
                    ("spam".to_string(), n(c.spam)),
                    ("conversions".to_string(), n(conversions)),
                ];
                metrics.extend(c.held.iter().map(|(k, v)| (k.clone(), n(*v))));
                for (metric, value) in metrics {
                    row(&f.flow, &step, message, channel, &metric, value);
                }
            }
        }
        out
    }
}

/// The flow's counters, created at its first record.
fn flow_mut<'a>(flows: &'a mut BTreeMap<String, FlowReport>, name: &str) -> &'a mut FlowReport {
    flows.entry(name.to_string()).or_insert_with(|| FlowReport {
        flow: name.to_string(),
        ..FlowReport::default()
    })
}

/// `blocked: consent 1, deferred: quiet_hours 1`, or `-`.
fn held_text(held: &BTreeMap<String, u64>) -> String {
    if held.is_empty() {
        return "-".into();
    }
    held.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rate as a percent, or `n/a`.
pub fn rate_text(r: Option<Decimal>) -> String {
    r.map_or("n/a".into(), money::percent)
}

/// A lift as a signed percent, or `n/a`.
pub fn lift_text(r: Option<Decimal>) -> String {
    match r {
        Some(l) if l.is_sign_positive() && !l.is_zero() => format!("+{}", money::percent(l)),
        Some(l) => money::percent(l),
        None => "n/a".into(),
    }
}

fn opt_rate(r: Option<Decimal>) -> String {
    r.map(|d| d.round_dp(RATE_DIGITS).normalize().to_string())
        .unwrap_or_default()
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Money for tools: a plain decimal with at least two places (`45.00`).
fn money_text(d: Decimal) -> String {
    let mut d = d;
    d.rescale(d.scale().max(2));
    d.to_string()
}

fn decimal_str<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&money_text(*d))
}

fn rate_str<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&d.round_dp(RATE_DIGITS).normalize().to_string()),
        None => s.serialize_none(),
    }
}

/// Whether a counter is zero (such counters are left out of the JSON).
fn is_zero(n: &u64) -> bool {
    *n == 0
}
