//! What the engine reports as it runs: one [`Record`] per thing that happened
//! to a customer, so that any decision can be explained afterwards.

use serde::{Deserialize, Serialize};

/// One thing that happened to one customer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When, RFC 3339 in UTC.
    pub at: String,
    /// The customer's display id at that moment.
    pub customer: String,
    /// What happened.
    #[serde(flatten)]
    pub what: What,
}

/// The kinds of happening.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum What {
    /// Two customers turned out to be one person.
    Joined {
        /// The identities of the absorbed customer, now this customer's too.
        identities: Vec<String>,
    },
    /// An instance started.
    Entered {
        /// The flow.
        flow: String,
        /// Its version hash.
        version: String,
        /// The instance's number for this customer and flow, from 1.
        instance: u32,
        /// What started it: an event's wire name, `schedule`, `date` or `segment`.
        trigger: String,
        /// Whether the customer is in the holdout group (nothing will be sent).
        holdout: bool,
    },
    /// A trigger fired but the entry rule kept the customer out.
    NotEntered {
        /// The flow.
        flow: String,
        /// Why: `already_active`, `entered_before`, `entered_within_window`,
        /// `late` (the trigger arrived later than the lateness bound) or
        /// `date_passed` (a date trigger's date was learned too late).
        reason: EntryReason,
        /// For `late`: how long after it happened the trigger arrived; for
        /// `date_passed`: how long past its time the date was learned.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        late_by: Option<String>,
        /// For `date_passed`: when the date trigger was due, RFC 3339 in UTC.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        due: Option<String>,
    },
    /// A split chose a variant.
    Variant {
        /// The flow.
        flow: String,
        /// The instance's number.
        instance: u32,
        /// The variant's name.
        variant: String,
        /// For a split that optimises the flow's goal, the floor every arm
        /// keeps (`"5%"`); absent for a plain split.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        floor: Option<String>,
    },
    /// A send decision.
    Send {
        /// The flow.
        flow: String,
        /// The instance's number.
        instance: u32,
        /// The step's index in the flow.
        step: u16,
        /// The message.
        message: String,
        /// Its channel.
        channel: String,
        /// What was decided.
        outcome: Outcome,
        /// Why, in a word or two (`consent`, `quiet_hours`, `cap marketing 3 per 7d`).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        reason: Option<String>,
        /// The reason's stable code, for tools (`reason` may carry details).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        code: Option<SendReason>,
        /// For a deferral: when the holding rule ends (the quiet-hours window's
        /// end, the moment a cap frees a place).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        until: Option<String>,
        /// For a deferral: when the send will be tried again (`until`, plus the
        /// spread that keeps released sends from going out in one burst).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        retry_at: Option<String>,
        /// The recipient's zone (for quiet hours: the zone the window was read in).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        zone: Option<String>,
        /// The send's idempotency key.
        key: String,
    },
    /// Audience membership changed.
    Audience {
        /// The flow that changed it.
        flow: String,
        /// The audience.
        audience: String,
        /// `add` or `remove`.
        action: String,
    },
    /// A step wrote a profile field.
    Profile {
        /// The flow.
        flow: String,
        /// The field.
        field: String,
        /// The new value, as a flow literal.
        value: String,
    },
    /// An instance ended before its last step.
    Exited {
        /// The flow.
        flow: String,
        /// The instance's number.
        instance: u32,
        /// Why: the `exit on` event's name, `exit_if`, `exit` or `merged`.
        reason: String,
        /// The reason's stable code, for tools (`reason` names the event
        /// of an `exit on`); absent in traces written before codes.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        code: Option<ExitReason>,
    },
    /// A stopping event arrived after the instance had already sent
    /// messages it would have prevented: the sends stand, and this says so.
    ExitedLate {
        /// The flow.
        flow: String,
        /// The instance's number.
        instance: u32,
        /// The stopping event's name.
        event: String,
        /// When the stopping event happened (it arrived at the record's `at`).
        happened: String,
        /// How long after it happened it arrived.
        late_by: String,
        /// The messages sent between the event and its arrival, oldest first.
        messages: Vec<String>,
    },
    /// An instance ran its last step.
    Completed {
        /// The flow.
        flow: String,
        /// The instance's number.
        instance: u32,
    },
    /// A goal was reached within its window.
    Converted {
        /// The flow credited.
        flow: String,
        /// The instance's number.
        instance: u32,
        /// The goal event.
        event: String,
        /// The revenue, when the event carries it.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        revenue: Option<String>,
        /// Whether the instance was in the holdout group.
        holdout: bool,
        /// The flow's last message sent to the customer before the conversion
        /// (since the instance started), which the conversion is credited to.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        message: Option<String>,
        /// The goal event's `order_id`, when it has one: reports credit an order once.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        order_id: Option<String>,
        /// The goal event's `currency` (ISO 4217), when it gives one.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        currency: Option<String>,
    },
    /// An order was refunded (an `Order Refunded` event): reports take the
    /// amount off that order's revenue.
    Refunded {
        /// The order, as its `order_id`.
        order_id: String,
        /// The amount refunded: the event's `total`.
        amount: String,
        /// The event's `currency` (ISO 4217), when it gives one.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        currency: Option<String>,
    },
    /// A channel provider reported back on a message (from the customer's events).
    Feedback {
        /// `bounced`, `clicked` or `spam`.
        feedback: String,
        /// The channel.
        channel: String,
        /// The message, when the event names it.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        message: Option<String>,
        /// The flow, when the event names it.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        flow: Option<String>,
    },
    /// A property or trait of a call did not fit its type and was dropped;
    /// the call was applied without it.
    Dropped {
        /// The event's wire name, for track, page, screen and group calls.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        event: Option<String>,
        /// Where in the call: `properties.order_id`, `traits.firstName`.
        path: String,
        /// What was wrong with it.
        reason: String,
        /// What the flows saw instead, as a flow literal (its default,
        /// `none`, or its type's empty value); absent when nothing took its
        /// place (a trait left as it was, a list item left out).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        used: Option<String>,
    },
    /// `recommend` chose products for a flow's step or message.
    Recommended {
        /// The flow.
        flow: String,
        /// The products' ids, in the order served.
        products: Vec<String>,
        /// The source that served each product, in the same order:
        /// `co_purchase`, `category`, `popular` or `fallback`.
        sources: Vec<String>,
    },
    /// Code failed at run time; the instance ended.
    Error {
        /// The flow.
        flow: String,
        /// The instance's number.
        instance: u32,
        /// The error with its source position.
        message: String,
    },
}

/// What became of one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Handed to the channel plugin, which accepted it.
    Sent,
    /// Held back until a later time (quiet hours, a deferring cap).
    Deferred,
    /// Dropped by a frequency cap.
    Capped,
    /// Not allowed: no consent, no address, an opt-out.
    Blocked,
    /// A `suppress if` rule or a suppression list held it.
    Suppressed,
    /// The customer is in the flow's holdout group.
    HeldOut,
    /// The same idempotency key was already sent.
    Duplicate,
    /// The plugin failed to deliver it.
    Failed,
}

impl Outcome {
    /// Every outcome, in report order.
    pub const ALL: [Outcome; 8] = [
        Outcome::Sent,
        Outcome::Deferred,
        Outcome::Capped,
        Outcome::Blocked,
        Outcome::Suppressed,
        Outcome::HeldOut,
        Outcome::Duplicate,
        Outcome::Failed,
    ];

    /// The outcome's name in records and reports.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Deferred => "deferred",
            Outcome::Capped => "capped",
            Outcome::Blocked => "blocked",
            Outcome::Suppressed => "suppressed",
            Outcome::HeldOut => "held_out",
            Outcome::Duplicate => "duplicate",
            Outcome::Failed => "failed",
        }
    }
}

impl What {
    /// The flow the record belongs to, if it names one.
    pub fn flow(&self) -> Option<&str> {
        match self {
            What::Joined { .. } | What::Dropped { .. } | What::Refunded { .. } => None,
            What::Feedback { flow, .. } => flow.as_deref(),
            What::Entered { flow, .. }
            | What::NotEntered { flow, .. }
            | What::Variant { flow, .. }
            | What::Send { flow, .. }
            | What::Audience { flow, .. }
            | What::Profile { flow, .. }
            | What::Recommended { flow, .. }
            | What::Exited { flow, .. }
            | What::ExitedLate { flow, .. }
            | What::Completed { flow, .. }
            | What::Converted { flow, .. }
            | What::Error { flow, .. } => Some(flow),
        }
    }
}

/// Why a trigger started no instance: a stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryReason {
    /// `entry single` (or `once per`): an instance of the flow is live.
    AlreadyActive,
    /// `entry once`: the customer entered before.
    EnteredBefore,
    /// `entry once per D`: the last entry is more recent than `D`.
    EnteredWithinWindow,
    /// The trigger arrived later than the lateness bound after it happened.
    Late,
    /// A date trigger's date was learned when its time had already passed
    /// (by more than the flow's `grace`, when it has one).
    DatePassed,
}

impl EntryReason {
    /// Every reason, in report order.
    pub const ALL: [EntryReason; 5] = [
        EntryReason::AlreadyActive,
        EntryReason::EnteredBefore,
        EntryReason::EnteredWithinWindow,
        EntryReason::Late,
        EntryReason::DatePassed,
    ];

    /// The stable code, as the trace and metrics write it.
    pub fn code(self) -> &'static str {
        match self {
            EntryReason::AlreadyActive => "already_active",
            EntryReason::EnteredBefore => "entered_before",
            EntryReason::EnteredWithinWindow => "entered_within_window",
            EntryReason::Late => "late",
            EntryReason::DatePassed => "date_passed",
        }
    }
}

impl std::fmt::Display for EntryReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// Why an instance ended before its last step: a stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// An event the flow's `exit on` names arrived (and its `where` held).
    ExitOn,
    /// The flow's standing `exit if` condition held at the start of a step.
    ExitIf,
    /// The flow ran an `exit` step.
    Exit,
    /// A merge joined two customers who were both in the flow: the later
    /// instance ended and the earlier one goes on.
    Merged,
}

impl ExitReason {
    /// Every reason, in report order.
    pub const ALL: [ExitReason; 4] = [
        ExitReason::ExitOn,
        ExitReason::ExitIf,
        ExitReason::Exit,
        ExitReason::Merged,
    ];

    /// The stable code, as the trace and metrics write it.
    pub fn code(self) -> &'static str {
        match self {
            ExitReason::ExitOn => "exit_on",
            ExitReason::ExitIf => "exit_if",
            ExitReason::Exit => "exit",
            ExitReason::Merged => "merged",
        }
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a send was not made, or not made now: a stable code. The record's
/// `reason` text may say more (which cap, what failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendReason {
    /// The instance is in the holdout group.
    Holdout,
    /// The profile has no address for the channel.
    NoAddress,
    /// The address bounced hard before.
    Undeliverable,
    /// The recipient opted out of the channel for good (an SMS STOP).
    OptedOut,
    /// No consent for a marketing message on the channel.
    Consent,
    /// The flow's `suppress if` held it.
    SuppressIf,
    /// The flow's `suppress if` could not be evaluated (it holds the send).
    SuppressIfFailed,
    /// An identifier of the customer is on a suppression list.
    SuppressionList,
    /// A cap of the policy is full.
    PolicyCap,
    /// A cap of the flow is full.
    FlowCap,
    /// Quiet hours in the recipient's zone.
    QuietHours,
    /// The same idempotency key was already sent.
    IdempotencyKey,
    /// The message's content could not be rendered.
    RenderFailed,
    /// The channel plugin could not deliver it.
    DeliveryFailed,
}

impl SendReason {
    /// Every reason, in report order.
    pub const ALL: [SendReason; 14] = [
        SendReason::Holdout,
        SendReason::NoAddress,
        SendReason::Undeliverable,
        SendReason::OptedOut,
        SendReason::Consent,
        SendReason::SuppressIf,
        SendReason::SuppressIfFailed,
        SendReason::SuppressionList,
        SendReason::PolicyCap,
        SendReason::FlowCap,
        SendReason::QuietHours,
        SendReason::IdempotencyKey,
        SendReason::RenderFailed,
        SendReason::DeliveryFailed,
    ];

    /// The stable code, as the trace and metrics write it.
    pub fn code(self) -> &'static str {
        match self {
            SendReason::Holdout => "holdout",
            SendReason::NoAddress => "no_address",
            SendReason::Undeliverable => "undeliverable",
            SendReason::OptedOut => "opted_out",
            SendReason::Consent => "consent",
            SendReason::SuppressIf => "suppress_if",
            SendReason::SuppressIfFailed => "suppress_if_failed",
            SendReason::SuppressionList => "suppression_list",
            SendReason::PolicyCap => "policy_cap",
            SendReason::FlowCap => "flow_cap",
            SendReason::QuietHours => "quiet_hours",
            SendReason::IdempotencyKey => "idempotency_key",
            SendReason::RenderFailed => "render_failed",
            SendReason::DeliveryFailed => "delivery_failed",
        }
    }
}

impl std::fmt::Display for SendReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// One change of audience membership: a line of the audience's feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    /// When, RFC 3339 in UTC.
    pub at: String,
    /// The audience.
    pub audience: String,
    /// The customer's display id.
    pub customer: String,
    /// `add` or `remove`.
    pub action: String,
    /// The profile's `email` at the time of the change, which ad platforms
    /// match on (hashed by the host); absent when the profile has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The profile's `phone` at the time of the change, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl Membership {
    /// The change as the ad-audience plugins take it.
    pub fn to_change(&self) -> nudge_channels::AudienceChange {
        nudge_channels::AudienceChange {
            audience: self.audience.clone(),
            customer: self.customer.clone(),
            add: self.action == "add",
            email: self.email.clone(),
            phone: self.phone.clone(),
        }
    }
}

/// What became of one send's delivery, as a trace line of kind `delivery`:
/// written by hosts that deliver after the send is decided (from the store's
/// ledger), once the channel's plugin has answered. The engine never writes
/// it, so it is a type of its own beside [`Record`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "delivery")]
pub struct DeliveryRecord {
    /// When the send was decided, RFC 3339 in UTC: hosts replay on the
    /// events' clock, so the outcome is placed at its send's moment.
    pub at: String,
    /// The customer's display id when the send was decided.
    pub customer: String,
    /// The flow that sent it.
    pub flow: String,
    /// The message.
    pub message: String,
    /// Its channel.
    pub channel: String,
    /// What the destination made of it.
    pub outcome: DeliveryOutcome,
    /// For a failed or unknown outcome: the plugin's words.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// The plugin it went through (`outbox`, `webhook`, `ses`, ...).
    pub provider: String,
    /// The send's idempotency key, as on its `send` record.
    pub key: String,
}

/// What the destination made of a delivered send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The destination accepted it.
    Delivered,
    /// The destination refused it, or could not be reached.
    Failed,
    /// The request went out and no answer came: it may have arrived.
    Unknown,
}

impl DeliveryOutcome {
    /// The outcome's name in records and reports.
    pub fn name(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Failed => "failed",
            DeliveryOutcome::Unknown => "unknown",
        }
    }
}
