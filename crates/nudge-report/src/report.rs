//! `nudge report`: per flow of the project, a funnel of customers, what
//! became of each send and why, the orders credited to the flow, its split
//! arms, and its lift over the holdout group.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

use nudge_runtime::record::{DeliveryOutcome, Outcome, SendReason, What};

use crate::identity::Identities;
use crate::money::{self, Amounts};
use crate::stats::{self, Difference};
use crate::trace::{Entry, Trace};

/// Digits kept in rates written for tools.
const RATE_DIGITS: u32 = 6;

/// What the report covers: the project's flows, a time range and the
/// currency of amounts that name none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scope {
    /// The flows the project declares; records naming any other flow are ignored.
    pub flows: Vec<FlowSpec>,
    /// The first instant counted, if any.
    pub from: Option<DateTime<Utc>>,
    /// The last instant counted (inclusive), if any.
    pub to: Option<DateTime<Utc>>,
    /// The ISO 4217 code of amounts whose record names no currency.
    pub currency: Option<String>,
}

/// One flow as the project declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowSpec {
    /// The flow's name.
    pub name: String,
    /// How long after a message an order can still be credited to it: the
    /// flow's goal window; none for a flow without a goal.
    pub goal_window: Option<Duration>,
}

impl Scope {
    /// Whether a record's time falls in the range.
    fn covers(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| at >= f) && self.to.is_none_or(|t| at <= t)
    }
}

/// The whole report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// The first instant counted (RFC 3339, UTC), or none for the trace's start.
    pub from: Option<String>,
    /// The last instant counted, or none for the trace's end.
    pub to: Option<String>,
    /// The currency of amounts whose record names none, as given to the report.
    pub currency: Option<String>,
    /// Whether the trace holds any channel feedback; without it, delivery is unknown.
    pub feedback_seen: bool,
    /// Records in the range that name a flow the project does not declare.
    pub ignored_records: u64,
    /// The flows those records name.
    pub ignored_flows: Vec<String>,
    /// Feedback records that match no send of the project's flows.
    pub unmatched_feedback: u64,
    /// Per flow of the project, in declaration order.
    pub flows: Vec<FlowReport>,
    /// Orders no message can be credited with.
    pub unattributed: Orders,
    /// Every order in the range: the flows' and the unattributed together.
    pub total: Orders,
    /// What refunds took off the revenue of those orders, per currency.
    pub refunded: Amounts,
    /// Distinct customers at each stage of any flow (a customer in two
    /// flows counts once).
    pub funnel: Funnel,
    /// Send decisions of all flows together.
    pub sends: SendCounts,
}

/// A set of orders and what they brought.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Orders {
    /// How many orders.
    pub orders: u64,
    /// Distinct customers who placed them.
    pub customers: u64,
    /// Their revenue, one sum per currency.
    pub revenue: Amounts,
}

/// What one flow did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FlowReport {
    /// The flow's name.
    pub flow: String,
    /// Treated customers, stage by stage.
    pub funnel: Funnel,
    /// Instances started, treated and held out.
    pub instances: u64,
    /// Instances started in the holdout group.
    pub instances_holdout: u64,
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
    /// Send decisions of all steps together.
    pub sends: SendCounts,
    /// Per send step, by step index.
    pub steps: Vec<StepReport>,
    /// The orders credited to this flow.
    pub attributed: Orders,
    /// Per split arm, by name.
    pub arms: Vec<Arm>,
    /// When the flow's split optimises its goal: its floor and when it settled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimised: Option<Optimised>,
    /// The flow's treated customers against its holdout group.
    pub holdout: Holdout,
}

/// Distinct treated customers at each stage of a flow.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Funnel {
    /// Customers who entered outside the holdout group.
    pub entered: u64,
    /// Of those, customers sent at least one message.
    pub messaged: u64,
    /// Of those, customers with at least one message not reported bounced;
    /// none when the trace holds no feedback at all.
    pub delivered: Option<u64>,
    /// Of the messaged, customers who clicked one of the flow's messages.
    pub clicked: u64,
    /// Of the messaged, customers with an order credited to the flow.
    pub converted: u64,
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
    /// Orders credited to this step's message.
    pub orders: u64,
}

/// What became of a set of send decisions (counted in sends, not customers).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SendCounts {
    /// Messages handed to the channel.
    pub sent: u64,
    /// With delivery records in the trace: sends the destination accepted,
    /// minus bounced. Without them: sent minus bounced, and none when the
    /// trace holds no feedback at all.
    pub delivered: Option<u64>,
    /// Sends whose delivery failed (last outcome); none when the trace
    /// holds no delivery records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<u64>,
    /// Sends whose delivery got no answer (last outcome); none when the
    /// trace holds no delivery records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<u64>,
    /// Sends whose last delivery outcome is `delivered`, bounced or not.
    #[serde(skip)]
    accepted: u64,
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

/// One arm of a split.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Arm {
    /// The variant's name.
    pub variant: String,
    /// Distinct customers the split sent down this arm.
    pub entered: u64,
    /// Of those, customers whose instance reached the flow's goal.
    pub converted: u64,
    /// `converted / entered`.
    #[serde(serialize_with = "rate_str")]
    pub rate: Option<Decimal>,
    /// For a split that optimises: the probability that this arm's
    /// conversion rate is the highest (see [`PROBABILITY_DRAWS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability_best: Option<f64>,
}

/// How many joint draws of the arms' posteriors estimate the probability
/// that each arm is the best.
pub const PROBABILITY_DRAWS: u32 = 10_000;

/// The probability of being best at which a split counts as settled.
pub const SETTLED_AT: f64 = 0.95;

/// A split that optimises the flow's goal, as the report sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Optimised {
    /// The floor every arm keeps (`"5%"`).
    pub floor: String,
    /// The first day (UTC) at whose end the arm that leads at the end had
    /// a probability of being best of at least [`SETTLED_AT`], and kept it
    /// at the end of every later day with entries or conversions; none
    /// while it has not.
    #[serde(serialize_with = "date_str")]
    pub settled: Option<chrono::NaiveDate>,
}

impl Optimised {
    /// When the split settled, in words: `settled on DAY` or `not settled`.
    pub fn settled_text(&self) -> String {
        match self.settled {
            Some(d) => format!("settled on {d}"),
            None => "not settled".to_string(),
        }
    }
}

/// A day as `YYYY-MM-DD`, or null.
fn date_str<S: Serializer>(d: &Option<chrono::NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&d.to_string()),
        None => s.serialize_none(),
    }
}

/// A group of customers compared on the flow's goal.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Group {
    /// Distinct customers who entered in the group.
    pub entered: u64,
    /// Of those, customers whose instance reached the flow's goal.
    pub converted: u64,
    /// `converted / entered`.
    #[serde(serialize_with = "rate_str")]
    pub rate: Option<Decimal>,
    /// The revenue of the goal events they reached (each order once).
    pub revenue: Amounts,
}

/// The holdout comparison of a flow.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Holdout {
    /// Customers who entered outside the holdout group.
    pub treated: Group,
    /// Customers who entered in the holdout group: sent nothing.
    pub control: Group,
    /// Treated rate minus control rate with its 95% interval (Newcombe's
    /// hybrid score method); none when a group has too few customers.
    pub difference: Option<Difference>,
}

impl Holdout {
    /// The comparison in words: `+10.0 points (95% CI -5.2 to +24.1)`.
    pub fn text(&self) -> String {
        if self.control.entered == 0 {
            return "no holdout group".into();
        }
        match &self.difference {
            Some(d) => format!(
                "{} (95% CI {} to {})",
                points(d.estimate),
                signed(d.low),
                signed(d.high)
            ),
            None => format!(
                "not enough data (each group needs {} customers)",
                stats::MIN_GROUP
            ),
        }
    }
}

/// A difference of proportions in percentage points, signed: `+10.0 points`.
pub fn points(d: f64) -> String {
    format!("{} points", signed(d))
}

/// A fraction in percentage points with one decimal and its sign: `+10.0`, `-2.5`, `0.0`.
fn signed(d: f64) -> String {
    let p = (d * 1000.0).round() / 10.0;
    if p > 0.0 {
        format!("+{p:.1}")
    } else if p < 0.0 {
        format!("{p:.1}")
    } else {
        "0.0".into()
    }
}

impl SendCounts {
    fn add(&mut self, other: &SendCounts) {
        self.sent += other.sent;
        self.accepted += other.accepted;
        let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.failed = sum(self.failed, other.failed);
        self.unknown = sum(self.unknown, other.unknown);
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

    /// Counts the outcome of one send decided `sent`.
    fn delivery(&mut self, outcome: Option<DeliveryOutcome>) {
        match outcome {
            Some(DeliveryOutcome::Delivered) => self.accepted += 1,
            Some(DeliveryOutcome::Failed) => *self.failed.get_or_insert(0) += 1,
            Some(DeliveryOutcome::Unknown) => *self.unknown.get_or_insert(0) += 1,
            None => {}
        }
    }

    fn settle(&mut self, feedback_seen: bool, deliveries: bool) {
        if deliveries {
            self.delivered = Some(self.accepted.saturating_sub(self.bounced));
            self.failed.get_or_insert(0);
            self.unknown.get_or_insert(0);
        } else {
            self.delivered = feedback_seen.then(|| self.sent.saturating_sub(self.bounced));
        }
    }
}

/// A send that went out, remembered so that later feedback and orders can be credited to it.
struct Sent {
    flow: String,
    step: u16,
    message: String,
    channel: String,
    at: DateTime<Utc>,
    /// Whether the send is in the range (only those count in the funnel).
    counted: bool,
    bounced: bool,
    /// Its last delivery outcome, when the trace holds delivery records.
    outcome: Option<DeliveryOutcome>,
}

/// One order, gathered from the conversion records it caused (one per flow
/// whose goal it reached).
struct Order {
    person: String,
    at: DateTime<Utc>,
    amount: Decimal,
    currency: Option<String>,
    /// `(flow, instance, holdout)` of each conversion record.
    reached: Vec<(String, u32, bool)>,
}

/// Per-flow counters while the trace is read.
#[derive(Default)]
struct Acc {
    report: FlowReport,
    treated: BTreeSet<String>,
    held: BTreeSet<String>,
    messaged: BTreeSet<String>,
    clicked: BTreeSet<String>,
    goal_treated: BTreeSet<String>,
    goal_held: BTreeSet<String>,
    treated_revenue: Amounts,
    held_revenue: Amounts,
    attributed_customers: BTreeSet<String>,
    /// Variant per `(person, instance)`, with when the split chose it.
    variants: HashMap<(String, u32), (String, DateTime<Utc>)>,
    /// The floor of the flow's split that optimises, if it has one.
    floor: Option<String>,
    /// When each treated `(person, instance)` first reached the goal.
    goal_at: HashMap<(String, u32), DateTime<Utc>>,
    /// Held-out instances by `(person, instance)`: the split runs for them
    /// too, but they are the control group, not an arm.
    held_instances: BTreeSet<(String, u32)>,
    /// Goal reached per `(person, instance)` by treated instances.
    goal_instances: BTreeSet<(String, u32)>,
}

impl Report {
    /// Counts a trace for the flows, range and currency of `scope`.
    pub fn build(trace: &Trace, scope: &Scope) -> Report {
        let ids = Identities::of(trace);
        let finals = trace.final_deliveries();
        // Delivery records decide `delivered` when there are any; a trace
        // without them (an in-memory run, an older trace) is read by feedback.
        let deliveries = !finals.is_empty();
        let outcome_of =
            |key: &str| -> Option<DeliveryOutcome> { finals.get(key).map(|d| d.outcome) };
        let mut order: Vec<&Entry> = trace.entries.iter().collect();
        order.sort_by_key(|e| (e.at, e.line));
        let mut accs: BTreeMap<&str, Acc> = scope
            .flows
            .iter()
            .map(|f| (f.name.as_str(), Acc::default()))
            .collect();
        let mut steps: BTreeMap<(String, u16, String), StepReport> = BTreeMap::new();
        let mut sent_to: HashMap<String, Vec<Sent>> = HashMap::new();
        let mut orders: BTreeMap<String, Order> = BTreeMap::new();
        let mut refunds: HashMap<String, Decimal> = HashMap::new();
        let mut ignored: BTreeSet<String> = BTreeSet::new();
        let mut report = Report {
            from: scope.from.map(stamp),
            to: scope.to.map(stamp),
            currency: scope.currency.clone(),
            ..Report::default()
        };
        for e in order {
            let counted = scope.covers(e.at);
            if let Some(f) = e.record.what.flow()
                && !accs.contains_key(f)
            {
                if counted {
                    report.ignored_records += 1;
                    ignored.insert(f.to_string());
                }
                continue;
            }
            let person = ids.root(&e.record.customer).to_string();
            // Sends are remembered before the range too: an order in the
            // range may be credited to a message sent before it.
            if let What::Send {
                flow: f,
                step,
                message,
                channel,
                outcome: Outcome::Sent,
                key,
                ..
            } = &e.record.what
            {
                sent_to.entry(person.clone()).or_default().push(Sent {
                    flow: f.clone(),
                    step: *step,
                    message: message.clone(),
                    channel: channel.clone(),
                    at: e.at,
                    counted,
                    bounced: false,
                    outcome: outcome_of(key),
                });
            }
            // Refunds count whenever they happen: an order in the range
            // refunded after it brought only what was kept.
            if let What::Refunded {
                order_id, amount, ..
            } = &e.record.what
            {
                let amount = money::parse(amount).unwrap_or_default();
                *refunds.entry(format!("order_id {order_id}")).or_default() += amount;
            }
            if !counted {
                continue;
            }
            match &e.record.what {
                What::Joined { .. } | What::Dropped { .. } | What::Refunded { .. } => {}
                What::Entered {
                    flow: f,
                    holdout,
                    instance,
                    ..
                } => {
                    let a = acc(&mut accs, f);
                    a.report.instances += 1;
                    if *holdout {
                        a.report.instances_holdout += 1;
                        a.held_instances.insert((person.clone(), *instance));
                        a.held.insert(person);
                    } else {
                        a.treated.insert(person);
                    }
                }
                What::NotEntered { flow: f, .. } => acc(&mut accs, f).report.not_entered += 1,
                What::Variant {
                    flow: f,
                    instance,
                    variant,
                    floor,
                } => {
                    let a = acc(&mut accs, f);
                    a.variants
                        .insert((person, *instance), (variant.clone(), e.at));
                    if floor.is_some() {
                        a.floor.clone_from(floor);
                    }
                }
                What::Audience { .. } | What::Profile { .. } | What::Recommended { .. } => {}
                What::Send {
                    flow: f,
                    step,
                    message,
                    channel,
                    outcome,
                    reason,
                    code,
                    key,
                    ..
                } => {
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
                        s.counts.delivery(outcome_of(key));
                        acc(&mut accs, f).messaged.insert(person);
                    } else {
                        // Failures carry the provider's own words: they are
                        // grouped by their code, every other reason by its text
                        // (which names the cap).
                        let key = match (code, reason) {
                            (
                                Some(
                                    c @ (SendReason::DeliveryFailed
                                    | SendReason::RenderFailed
                                    | SendReason::SuppressIfFailed),
                                ),
                                _,
                            ) => format!("{}: {}", outcome.name(), c.code()),
                            (_, Some(r)) => format!("{}: {r}", outcome.name()),
                            (_, None) => outcome.name().to_string(),
                        };
                        *s.counts.held.entry(key).or_insert(0) += 1;
                    }
                }
                What::Exited { flow: f, .. } => acc(&mut accs, f).report.exited += 1,
                What::ExitedLate {
                    flow: f, messages, ..
                } => acc(&mut accs, f).report.sent_before_stop += messages.len() as u64,
                What::Completed { flow: f, .. } => acc(&mut accs, f).report.completed += 1,
                What::Error { flow: f, .. } => acc(&mut accs, f).report.errors += 1,
                What::Converted {
                    flow: f,
                    instance,
                    event,
                    revenue,
                    holdout,
                    ..
                } => {
                    let amount = revenue
                        .as_deref()
                        .and_then(money::parse)
                        .unwrap_or_default();
                    let key = match (&e.order.order_id, &e.order.message_id) {
                        (Some(id), _) => format!("order_id {id}"),
                        (None, Some(id)) => format!("message_id {id}"),
                        // Without either, the conversion records one event
                        // caused share its customer, time, event and amount.
                        (None, None) => format!("{person} {} {event} {amount}", e.at),
                    };
                    let o = orders.entry(key).or_insert_with(|| Order {
                        person: person.clone(),
                        at: e.at,
                        amount,
                        currency: e.order.currency.clone().or_else(|| scope.currency.clone()),
                        reached: Vec::new(),
                    });
                    o.reached.push((f.clone(), *instance, *holdout));
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
                        sent_to.get_mut(&person).and_then(|list| {
                            list.iter_mut().rev().find(|s| {
                                s.message == *m
                                    && (channel.is_empty() || s.channel == *channel)
                                    && named.as_ref().is_none_or(|f| s.flow == *f)
                            })
                        })
                    });
                    match hit {
                        Some(s) => {
                            let key = (s.flow.clone(), s.step, s.message.clone());
                            if let Some(step) = steps.get_mut(&key) {
                                step.counts.feedback(feedback);
                            }
                            match feedback.as_str() {
                                "bounced" => s.bounced = true,
                                "clicked" => {
                                    acc(&mut accs, &s.flow).clicked.insert(person);
                                }
                                _ => {}
                            }
                        }
                        None => report.unmatched_feedback += 1,
                    }
                }
            }
        }
        let windows: HashMap<&str, Option<Duration>> = scope
            .flows
            .iter()
            .map(|f| (f.name.as_str(), f.goal_window))
            .collect();
        let mut unattributed_customers = BTreeSet::new();
        let mut all_customers = BTreeSet::new();
        for (key, o) in orders.iter_mut() {
            // Revenue is what the store kept: refunds of the order come off,
            // never below nothing.
            if let Some(r) = refunds.get(key) {
                let taken = (*r).min(o.amount).max(Decimal::ZERO);
                o.amount -= taken;
                report.refunded.add(o.currency.as_deref(), taken);
            }
        }
        for o in orders.values() {
            let currency = o.currency.as_deref();
            all_customers.insert(o.person.clone());
            report.total.orders += 1;
            report.total.revenue.add(currency, o.amount);
            // An order reaching a flow's goal twice (two instances) is still one order.
            let mut once = BTreeSet::new();
            for (f, instance, holdout) in &o.reached {
                let a = acc(&mut accs, f);
                let fresh = once.insert((f.as_str(), *holdout));
                if *holdout {
                    a.goal_held.insert(o.person.clone());
                    if fresh {
                        a.held_revenue.add(currency, o.amount);
                    }
                } else {
                    a.goal_treated.insert(o.person.clone());
                    a.goal_instances.insert((o.person.clone(), *instance));
                    let at = a
                        .goal_at
                        .entry((o.person.clone(), *instance))
                        .or_insert(o.at);
                    *at = (*at).min(o.at);
                    if fresh {
                        a.treated_revenue.add(currency, o.amount);
                    }
                }
            }
            // The last message sent to the customer, before the order and
            // within its flow's goal window, among the flows whose goal the
            // order reached outside the holdout group.
            let credited = sent_to.get(&o.person).and_then(|list| {
                list.iter().rev().find(|s| {
                    s.at <= o.at
                        && o.reached.iter().any(|(f, _, h)| !h && *f == s.flow)
                        && windows
                            .get(s.flow.as_str())
                            .copied()
                            .flatten()
                            .is_some_and(|w| o.at - s.at <= w)
                })
            });
            match credited {
                Some(s) => {
                    // The step may have sent nothing in the range: the message came before it.
                    steps
                        .entry((s.flow.clone(), s.step, s.message.clone()))
                        .or_insert_with(|| StepReport {
                            step: s.step,
                            message: s.message.clone(),
                            channel: s.channel.clone(),
                            ..StepReport::default()
                        })
                        .orders += 1;
                    let a = acc(&mut accs, &s.flow);
                    a.report.attributed.orders += 1;
                    a.report.attributed.revenue.add(currency, o.amount);
                    a.attributed_customers.insert(o.person.clone());
                }
                None => {
                    report.unattributed.orders += 1;
                    report.unattributed.revenue.add(currency, o.amount);
                    unattributed_customers.insert(o.person.clone());
                }
            }
        }
        report.unattributed.customers = unattributed_customers.len() as u64;
        report.total.customers = all_customers.len() as u64;
        let seen = report.feedback_seen;
        for ((f, _, _), mut step) in steps {
            step.counts.settle(seen, deliveries);
            let a = acc(&mut accs, &f);
            a.report.sends.add(&step.counts);
            a.report.steps.push(step);
        }
        let mut delivered: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for (person, list) in &sent_to {
            // With delivery records, only sends the destination accepted.
            let reached = |s: &&Sent| !deliveries || s.outcome == Some(DeliveryOutcome::Delivered);
            for s in list
                .iter()
                .filter(|s| s.counted && !s.bounced)
                .filter(reached)
            {
                delivered
                    .entry(s.flow.as_str())
                    .or_default()
                    .insert(person.as_str());
            }
        }
        let mut union: [BTreeSet<String>; 5] = Default::default();
        for spec in &scope.flows {
            let Some(mut a) = accs.remove(spec.name.as_str()) else {
                continue;
            };
            let r = &mut a.report;
            r.flow = spec.name.clone();
            r.sends.settle(seen, deliveries);
            r.attributed.customers = a.attributed_customers.len() as u64;
            let messaged: BTreeSet<&String> = a.messaged.intersection(&a.treated).collect();
            let within = |set: &BTreeSet<String>| -> BTreeSet<String> {
                set.iter()
                    .filter(|p| messaged.contains(p))
                    .cloned()
                    .collect()
            };
            let reached: BTreeSet<String> =
                delivered
                    .get(spec.name.as_str())
                    .map_or_else(BTreeSet::new, |d| {
                        messaged
                            .iter()
                            .filter(|p| d.contains(p.as_str()))
                            .map(|p| p.to_string())
                            .collect()
                    });
            let stages = [
                a.treated.clone(),
                messaged.iter().map(|p| p.to_string()).collect(),
                reached,
                within(&a.clicked),
                within(&a.attributed_customers),
            ];
            r.funnel = funnel_of(&stages, seen || deliveries);
            for (u, s) in union.iter_mut().zip(stages) {
                u.extend(s);
            }
            // Per arm, when each customer first took it and first reached
            // the goal on it.
            let mut arms: ArmFirsts = BTreeMap::new();
            for ((person, instance), (variant, at)) in &a.variants {
                // Like the funnel, arms hold the treated customers who entered in the range.
                if a.held_instances.contains(&(person.clone(), *instance))
                    || !a.treated.contains(person)
                {
                    continue;
                }
                let arm = arms.entry(variant).or_default();
                let first = arm.0.entry(person).or_insert(*at);
                *first = (*first).min(*at);
                if let Some(&goal) = a.goal_at.get(&(person.clone(), *instance)) {
                    let first = arm.1.entry(person).or_insert(goal);
                    *first = (*first).min(goal);
                }
            }
            r.arms = arms
                .iter()
                .map(|(v, (entered, converted))| Arm {
                    variant: v.to_string(),
                    entered: entered.len() as u64,
                    converted: converted.len() as u64,
                    rate: money::ratio(converted.len() as u64, entered.len() as u64),
                    probability_best: None,
                })
                .collect();
            if let Some(floor) = &a.floor {
                r.optimised = Some(optimised(floor, &mut r.arms, &arms));
            }
            let group =
                |members: &BTreeSet<String>, reached: &BTreeSet<String>, revenue: Amounts| {
                    let converted = members.intersection(reached).count() as u64;
                    Group {
                        entered: members.len() as u64,
                        converted,
                        rate: money::ratio(converted, members.len() as u64),
                        revenue,
                    }
                };
            r.holdout = Holdout {
                treated: group(&a.treated, &a.goal_treated, a.treated_revenue.clone()),
                control: group(&a.held, &a.goal_held, a.held_revenue.clone()),
                difference: None,
            };
            let (t, c) = (&r.holdout.treated, &r.holdout.control);
            r.holdout.difference = stats::newcombe(t.converted, t.entered, c.converted, c.entered);
            report.flows.push(a.report);
        }
        report.funnel = funnel_of(&union, seen || deliveries);
        for f in &report.flows {
            report.sends.add(&f.sends);
        }
        report.sends.settle(seen, deliveries);
        report.ignored_flows = ignored.into_iter().collect();
        report
    }

    /// The report for people: what it covers, then per flow a summary and a
    /// table of steps, then the orders of all flows together.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let cur = self.currency.as_deref();
        let _ = writeln!(out, "period: {}", self.period());
        for note in self.notes() {
            let _ = writeln!(out, "note: {note}");
        }
        if self.flows.is_empty() {
            out.push_str("\nthe project declares no flow\n");
        }
        for f in &self.flows {
            out.push('\n');
            let _ = writeln!(out, "{}", f.flow);
            let u = &f.funnel;
            let _ = writeln!(
                out,
                "  customers: entered {}, messaged {}, delivered {}, clicked {}, converted {}",
                u.entered,
                u.messaged,
                u.delivered.map_or("-".into(), |d| d.to_string()),
                u.clicked,
                u.converted
            );
            let _ = writeln!(
                out,
                "  instances: started {} (holdout {}); not entered {}; completed {}; exited {}; errors {}",
                f.instances, f.instances_holdout, f.not_entered, f.completed, f.exited, f.errors
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
                "  orders credited: {} from {} customer(s), revenue {}",
                f.attributed.orders,
                f.attributed.customers,
                f.attributed.revenue.text(cur)
            );
            let h = &f.holdout;
            if h.control.entered > 0 {
                let _ = writeln!(
                    out,
                    "  holdout: treated {} of {} reached the goal ({}), control {} of {} ({}); difference: {}",
                    h.treated.converted,
                    h.treated.entered,
                    rate_text(h.treated.rate),
                    h.control.converted,
                    h.control.entered,
                    rate_text(h.control.rate),
                    h.text()
                );
            } else {
                let _ = writeln!(out, "  holdout: no holdout group");
            }
            if let Some(o) = &f.optimised {
                let _ = writeln!(
                    out,
                    "  split optimises the goal (floor {}): {}",
                    o.floor,
                    o.settled_text()
                );
            }
            for arm in &f.arms {
                let best = arm
                    .probability_best
                    .map(|p| format!(", best with probability {}", percent_text(p)))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  arm {}: entered {}, reached the goal {} ({}){best}",
                    arm.variant,
                    arm.entered,
                    arm.converted,
                    rate_text(arm.rate)
                );
            }
            if f.steps.is_empty() {
                let _ = writeln!(out, "  no sends");
                continue;
            }
            step_table(&mut out, f);
        }
        let _ = writeln!(
            out,
            "\nall flows\n  orders {} from {} customer(s), revenue {}\n  credited to a flow {}, unattributed {} ({})",
            self.total.orders,
            self.total.customers,
            self.total.revenue.text(cur),
            self.total.orders - self.unattributed.orders,
            self.unattributed.orders,
            self.unattributed.revenue.text(cur),
        );
        if !self.refunded.list().is_empty() {
            let _ = writeln!(
                out,
                "  refunds taken off that revenue: {}",
                self.refunded.text(cur)
            );
        }
        if self.sends.delivered.is_none() {
            out.push_str("\ndelivered: - (the trace holds no channel feedback)\n");
        }
        out
    }

    /// The range in words: `2026-11-01T00:00:00.000Z to 2026-11-30T23:59:59.999Z`.
    pub fn period(&self) -> String {
        match (&self.from, &self.to) {
            (None, None) => "the whole trace".into(),
            (Some(f), None) => format!("from {f}"),
            (None, Some(t)) => format!("until {t}"),
            (Some(f), Some(t)) => format!("{f} to {t}"),
        }
    }

    /// What a reader must know to trust the figures: records left out.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.ignored_records > 0 {
            notes.push(format!(
                "{} record(s) name flows the project does not declare and are ignored: {}",
                self.ignored_records,
                self.ignored_flows.join(", ")
            ));
        }
        if self.unmatched_feedback > 0 {
            notes.push(format!(
                "{} feedback record(s) match no send of the project's flows and are not counted",
                self.unmatched_feedback
            ));
        }
        notes
    }

    /// The report for tools.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The report as CSV, one row per flow, step and metric:
    /// `flow,step,message,channel,metric,value`. Flow-wide rows leave the
    /// step, message and channel empty, the flow's send totals have step
    /// `all`, report-wide rows have the flow `*`, and unknown values are empty.
    pub fn csv(&self) -> String {
        let mut out = String::from("flow,step,message,channel,metric,value\n");
        let mut row =
            |flow: &str, step: &str, message: &str, channel: &str, metric: &str, value: String| {
                let cells = [flow, step, message, channel, metric, &value].map(csv_cell);
                out.push_str(&cells.join(","));
                out.push('\n');
            };
        let n = |v: u64| v.to_string();
        let money_rows = |prefix: &str, a: &Amounts| -> Vec<(String, String)> {
            a.list()
                .into_iter()
                .map(|m| {
                    let metric = match &m.currency {
                        Some(c) => format!("{prefix} ({c})"),
                        None => prefix.to_string(),
                    };
                    (metric, money::plain(m.amount))
                })
                .collect()
        };
        for f in &self.flows {
            let u = &f.funnel;
            let h = &f.holdout;
            let mut flow_rows: Vec<(String, String)> = vec![
                ("customers_entered".into(), n(u.entered)),
                ("customers_messaged".into(), n(u.messaged)),
                (
                    "customers_delivered".into(),
                    u.delivered.map(n).unwrap_or_default(),
                ),
                ("customers_clicked".into(), n(u.clicked)),
                ("customers_converted".into(), n(u.converted)),
                ("instances".into(), n(f.instances)),
                ("instances_holdout".into(), n(f.instances_holdout)),
                ("not_entered".into(), n(f.not_entered)),
                ("completed".into(), n(f.completed)),
                ("exited".into(), n(f.exited)),
                ("errors".into(), n(f.errors)),
                ("orders".into(), n(f.attributed.orders)),
            ];
            flow_rows.extend(money_rows("revenue", &f.attributed.revenue));
            flow_rows.extend([
                ("treated_entered".into(), n(h.treated.entered)),
                ("treated_converted".into(), n(h.treated.converted)),
                ("treated_rate".into(), opt_rate(h.treated.rate)),
                ("control_entered".into(), n(h.control.entered)),
                ("control_converted".into(), n(h.control.converted)),
                ("control_rate".into(), opt_rate(h.control.rate)),
            ]);
            flow_rows.extend(money_rows("control_revenue", &h.control.revenue));
            let d = h.difference;
            flow_rows.extend([
                ("difference".into(), opt_f64(d.map(|d| d.estimate))),
                ("difference_low".into(), opt_f64(d.map(|d| d.low))),
                ("difference_high".into(), opt_f64(d.map(|d| d.high))),
            ]);
            if f.sent_before_stop > 0 {
                flow_rows.push(("sent_before_stop".into(), n(f.sent_before_stop)));
            }
            for arm in &f.arms {
                flow_rows.extend([
                    (format!("arm {} entered", arm.variant), n(arm.entered)),
                    (format!("arm {} converted", arm.variant), n(arm.converted)),
                    (format!("arm {} rate", arm.variant), opt_rate(arm.rate)),
                ]);
                if let Some(p) = arm.probability_best {
                    flow_rows.push((
                        format!("arm {} probability_best", arm.variant),
                        format!("{p:.4}"),
                    ));
                }
            }
            if let Some(o) = &f.optimised {
                flow_rows.push((
                    "settled".into(),
                    o.settled.map(|d| d.to_string()).unwrap_or_default(),
                ));
            }
            for (metric, value) in flow_rows {
                row(&f.flow, "", "", "", &metric, value);
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
                        Some(s.orders),
                    )
                })
                .chain(std::iter::once(("all".to_string(), "", "", &f.sends, None)));
            for (step, message, channel, c, orders) in steps {
                let mut metrics = vec![
                    ("sent".to_string(), n(c.sent)),
                    (
                        "delivered".to_string(),
                        c.delivered.map(n).unwrap_or_default(),
                    ),
                ];
                // Delivery outcomes, only from a trace that records them.
                for (name, v) in [("failed", c.failed), ("unknown", c.unknown)] {
                    if let Some(v) = v {
                        metrics.push((name.to_string(), n(v)));
                    }
                }
                metrics.extend([
                    ("bounced".to_string(), n(c.bounced)),
                    ("clicked".to_string(), n(c.clicked)),
                    ("spam".to_string(), n(c.spam)),
                ]);
                if let Some(o) = orders {
                    metrics.push(("orders".to_string(), n(o)));
                }
                metrics.extend(c.held.iter().map(|(k, v)| (k.clone(), n(*v))));
                for (metric, value) in metrics {
                    row(&f.flow, &step, message, channel, &metric, value);
                }
            }
        }
        let mut all: Vec<(String, String)> = vec![
            ("orders".into(), n(self.total.orders)),
            ("customers".into(), n(self.total.customers)),
        ];
        all.extend(money_rows("revenue", &self.total.revenue));
        all.push(("unattributed_orders".into(), n(self.unattributed.orders)));
        all.extend(money_rows(
            "unattributed_revenue",
            &self.unattributed.revenue,
        ));
        all.push(("ignored_records".into(), n(self.ignored_records)));
        all.push(("unmatched_feedback".into(), n(self.unmatched_feedback)));
        for (metric, value) in all {
            row("*", "", "", "", &metric, value);
        }
        out
    }
}

/// The step table of one flow, with its `all` row. The `failed` and
/// `unknown` delivery columns show only for a trace with delivery records.
fn step_table(out: &mut String, f: &FlowReport) {
    let outcomes = f.sends.failed.is_some();
    let mut header = vec!["step", "message", "channel", "sends", "delivered"];
    if outcomes {
        header.extend(["failed", "unknown"]);
    }
    header.extend(["bounced", "clicked", "orders", "held by reason"]);
    let opt = |v: Option<u64>| v.map_or("-".into(), |d| d.to_string());
    let row = |step: String, message: &str, channel: &str, c: &SendCounts, orders: u64| {
        let mut cells = vec![
            step,
            message.to_string(),
            channel.to_string(),
            c.sent.to_string(),
            opt(c.delivered),
        ];
        if outcomes {
            cells.extend([opt(c.failed), opt(c.unknown)]);
        }
        cells.extend([
            c.bounced.to_string(),
            c.clicked.to_string(),
            orders.to_string(),
            held_text(&c.held),
        ]);
        cells
    };
    let mut rows: Vec<Vec<String>> = f
        .steps
        .iter()
        .map(|s| {
            row(
                s.step.to_string(),
                &s.message,
                &s.channel,
                &s.counts,
                s.orders,
            )
        })
        .collect();
    rows.push(row(
        "all".into(),
        "",
        "",
        &f.sends,
        f.steps.iter().map(|s| s.orders).sum(),
    ));
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let _ = writeln!(
        out,
        "\n  sends by step (counted in messages, not customers)"
    );
    let line = |out: &mut String, cells: &[&str]| {
        let mut s = String::new();
        for ((cell, w), name) in cells.iter().zip(&widths).zip(&header) {
            // Names and reasons read left to right; numbers line up on the right.
            if matches!(*name, "message" | "channel" | "held by reason") {
                let _ = write!(s, "  {cell:<w$}");
            } else {
                let _ = write!(s, "  {cell:>w$}");
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(out, &header);
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(out, &cells);
    }
}

/// The funnel of the customers at each stage: entered, messaged,
/// delivered, clicked, converted.
fn funnel_of(stages: &[BTreeSet<String>; 5], feedback_seen: bool) -> Funnel {
    let n = |i: usize| stages[i].len() as u64;
    Funnel {
        entered: n(0),
        messaged: n(1),
        delivered: feedback_seen.then(|| n(2)),
        clicked: n(3),
        converted: n(4),
    }
}

/// The counters of a project flow (records of other flows never get here).
fn acc<'a>(accs: &'a mut BTreeMap<&str, Acc>, name: &str) -> &'a mut Acc {
    accs.get_mut(name)
        .expect("records of other flows are skipped")
}

/// An instant as the report writes it: RFC 3339, UTC, to the millisecond.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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

fn opt_rate(r: Option<Decimal>) -> String {
    r.map(|d| d.round_dp(RATE_DIGITS).normalize().to_string())
        .unwrap_or_default()
}

fn opt_f64(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.6}")).unwrap_or_default()
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
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

/// When each customer first did something, by customer.
type Firsts<'p> = BTreeMap<&'p str, DateTime<Utc>>;

/// Per arm name: when each customer first took it and first reached the goal on it.
type ArmFirsts<'p> = BTreeMap<&'p str, (Firsts<'p>, Firsts<'p>)>;

/// A probability as a percentage with one decimal (`97.3%`).
pub(crate) fn percent_text(p: f64) -> String {
    format!("{:.1}%", p * 100.0)
}

/// The probability that each arm is best, set on `shown`, and when the
/// split settled, from when each customer took each arm (`firsts`: entered
/// and converted, by arm name, in the order of `shown`).
fn optimised(floor: &str, shown: &mut [Arm], firsts: &ArmFirsts) -> Optimised {
    use nudge_runtime::bandit::{self, Arm as Counts};
    // A fixed seed: the same trace gives the same figures.
    let seed = bandit::seed(&[b"nudge report: probability best"]);
    let counts = |upto: Option<DateTime<Utc>>| -> Vec<Counts> {
        firsts
            .values()
            .map(|(entered, converted)| {
                let n =
                    |m: &Firsts| m.values().filter(|t| upto.is_none_or(|u| **t < u)).count() as u64;
                Counts {
                    entries: n(entered),
                    conversions: n(converted),
                }
            })
            .collect()
    };
    let last = bandit::probability_best(&counts(None), PROBABILITY_DRAWS, seed);
    for (arm, p) in shown.iter_mut().zip(&last) {
        arm.probability_best = Some(*p);
    }
    let leader = last
        .iter()
        .enumerate()
        .fold(None::<(usize, f64)>, |best, (i, &p)| match best {
            Some((_, q)) if q >= p => best,
            _ => Some((i, p)),
        });
    let mut settled = None;
    if let Some((leader, p)) = leader
        && p >= SETTLED_AT
    {
        // The days with entries or conversions, each judged at its end.
        let days: BTreeSet<chrono::NaiveDate> = firsts
            .values()
            .flat_map(|(e, c)| e.values().chain(c.values()))
            .map(|t| t.date_naive())
            .collect();
        for day in days.iter().rev() {
            let Some(end) = day
                .succ_opt()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
            else {
                break;
            };
            let p = bandit::probability_best(&counts(Some(end)), PROBABILITY_DRAWS, seed);
            if p.get(leader).copied().unwrap_or(0.0) < SETTLED_AT {
                break;
            }
            settled = Some(*day);
        }
    }
    Optimised {
        floor: floor.to_string(),
        settled,
    }
}
