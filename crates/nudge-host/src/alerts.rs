//! Alerts of `nudge serve`: the rules `[[alerts]]` declares in nudge.toml,
//! evaluated over serve's own counters, and their Prometheus form.
//!
//! [`Evaluator`] is a pure state machine: it is fed the counters and the
//! engine's clock and hands back transitions as data, so the same logic runs
//! on the wall clock and on a virtual one. Hysteresis: an alert fires the
//! first time its value goes over the threshold and resolves only once the
//! value has stayed at or under it for a whole window, so a rate hovering
//! around its threshold notifies once, not at every tick.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::AlertsWebhookSection;

/// The standard event a provider's bounce report becomes.
pub const BOUNCED: &str = "Message Bounced";
/// The standard event a spam complaint becomes.
pub const SPAM: &str = "Marked As Spam";
/// The standard event an unsubscribe becomes.
pub const UNSUBSCRIBED: &str = "Unsubscribed";

/// What an alert watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Track calls of one event, against their own rate over a baseline
    /// before the window; the value is how far (in percent) the window fell
    /// short of what the baseline predicts.
    EventVolumeDrop {
        /// The event's name as calls send it (`Order Completed`).
        event: String,
        /// The baseline's length in seconds, before the window.
        baseline: i64,
    },
    /// `Message Bounced` events per delivered send, in percent.
    BounceRate,
    /// `Marked As Spam` events per delivered send, in percent.
    SpamRate,
    /// `Unsubscribed` events per delivered send, in percent.
    UnsubscribeRate,
    /// Deliveries that failed (or whose outcome is unknown) per delivery, in percent.
    DeliveryFailureRate,
    /// Dead letters per call accepted, in percent.
    DeadLetterRate,
}

impl Kind {
    /// The name nudge.toml spells the kind with.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::EventVolumeDrop { .. } => "event_volume_drop",
            Kind::BounceRate => "bounce_rate",
            Kind::SpamRate => "spam_rate",
            Kind::UnsubscribeRate => "unsubscribe_rate",
            Kind::DeliveryFailureRate => "delivery_failure_rate",
            Kind::DeadLetterRate => "dead_letter_rate",
        }
    }

    /// The event whose calls are counted by name for this kind, if any.
    pub fn event(&self) -> Option<&str> {
        match self {
            Kind::EventVolumeDrop { event, .. } => Some(event),
            Kind::BounceRate => Some(BOUNCED),
            Kind::SpamRate => Some(SPAM),
            Kind::UnsubscribeRate => Some(UNSUBSCRIBED),
            Kind::DeliveryFailureRate | Kind::DeadLetterRate => None,
        }
    }
}

/// One declared alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Its name, unique in the project.
    pub name: String,
    /// What it watches.
    pub kind: Kind,
    /// The percentage over which it fires (for a volume drop: the drop).
    pub threshold: f64,
    /// The window the rate is taken over, in seconds; also how long the
    /// value must stay under the threshold before the alert resolves.
    pub window: i64,
    /// The least count the rate's denominator (for a volume drop: the
    /// baseline's expectation) must reach in the window for the value to
    /// count; below it the alert holds no opinion.
    pub min_volume: u64,
}

/// Serve's counters as the evaluator reads them: counted since the store's
/// first alert observation, carried across restarts (see [`Watch`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Calls accepted.
    #[serde(default)]
    pub calls: u64,
    /// Dead letters written.
    #[serde(default)]
    pub dead: u64,
    /// Sends a plugin took.
    #[serde(default)]
    pub delivered: u64,
    /// Sends that failed or whose outcome is unknown.
    #[serde(default)]
    pub failed: u64,
    /// Applied track calls by event name.
    #[serde(default)]
    pub events: BTreeMap<String, u64>,
}

impl Counters {
    fn event(&self, name: &str) -> u64 {
        self.events.get(name).copied().unwrap_or(0)
    }

    /// The same without the events never counted, which read as 0 anyway:
    /// what is kept, since a project declares many events and a store
    /// keeps a sample a minute.
    fn compact(&self) -> Counters {
        Counters {
            events: self
                .events
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
            ..self.clone()
        }
    }

    /// `self` and `more` added field by field (an event either lacks counts 0).
    pub fn plus(&self, more: &Counters) -> Counters {
        let mut events = self.events.clone();
        for (name, n) in &more.events {
            let sum = events.entry(name.clone()).or_default();
            *sum = sum.saturating_add(*n);
        }
        Counters {
            calls: self.calls.saturating_add(more.calls),
            dead: self.dead.saturating_add(more.dead),
            delivered: self.delivered.saturating_add(more.delivered),
            failed: self.failed.saturating_add(more.failed),
            events,
        }
    }
}

/// Whether an alert started or stopped firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its value went over the threshold.
    Firing,
    /// Its value stayed at or under the threshold for a whole window.
    Resolved,
}

impl Status {
    /// The word notifications use.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One alert's change of state, to be notified.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The alert's name.
    pub alert: String,
    /// Its kind's name.
    pub kind: &'static str,
    /// Firing or resolved.
    pub status: Status,
    /// The value that decided it, in percent (none when there was too
    /// little volume to tell).
    pub value: Option<f64>,
    /// The alert's threshold, in percent.
    pub threshold: f64,
    /// The window in seconds.
    pub window: i64,
    /// When, in milliseconds since the epoch (the engine's clock).
    pub at: i64,
}

impl Transition {
    /// The JSON body POSTed to the alerts webhook.
    pub fn to_json(&self) -> Value {
        let at = chrono::DateTime::from_timestamp_millis(self.at).map_or_else(
            || self.at.to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        );
        json!({
            "alert": self.alert,
            "kind": self.kind,
            "status": self.status.as_str(),
            "value": self.value,
            "threshold": self.threshold,
            "window_seconds": self.window,
            "at": at,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Ok,
    /// Firing; `clear_since` is when the value last went under the
    /// threshold, while it stays there.
    Firing {
        clear_since: Option<i64>,
    },
}

/// What a rule's value is at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reading {
    /// The value, in percent.
    Value(f64),
    /// Too little volume in the window to tell: counts as clear.
    Low,
    /// Part of the history it needs was never observed (before the first
    /// start, or while the server was down): the alert keeps its state and
    /// a firing one restarts its clear window, so that neither a firing nor
    /// a resolve rests on counts nobody saw.
    Unknown,
}

/// Evaluates the rules over a history of counter samples.
#[derive(Debug)]
pub struct Evaluator {
    rules: Vec<Rule>,
    states: Vec<State>,
    /// Samples in time order.
    samples: VecDeque<(i64, Counters)>,
    /// When the first sample was ever taken: a baseline before it is unknown.
    started: Option<i64>,
    /// Stretches of the clock during which nothing was counted, although
    /// calls may have come (the server was down, or counts were lost with a
    /// killed process), as `(from, to)` in milliseconds.
    gaps: Vec<(i64, i64)>,
    /// The least time between two stored samples, in milliseconds: a fine
    /// enough grid for the shortest window without one sample per tick.
    step: i64,
    /// How far back samples are needed, in milliseconds.
    horizon: i64,
    /// The counters before the first sample kept, and since when they are
    /// known (`i64::MIN` for a history that starts at zero).
    floor: (i64, Counters),
}

impl Evaluator {
    /// An evaluator of `rules`, every alert not firing.
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut e = Evaluator {
            states: vec![State::Ok; rules.len()],
            rules: Vec::new(),
            samples: VecDeque::new(),
            started: None,
            gaps: Vec::new(),
            step: 1000,
            horizon: 0,
            floor: (i64::MIN, Counters::default()),
        };
        e.set_rules(rules);
        e
    }

    fn set_rules(&mut self, rules: Vec<Rule>) {
        let shortest = rules.iter().map(|r| r.window).min().unwrap_or(60);
        let horizon = rules
            .iter()
            .map(|r| match r.kind {
                Kind::EventVolumeDrop { baseline, .. } => r.window + baseline,
                _ => r.window,
            })
            .max()
            .unwrap_or(0);
        self.step = (shortest * 1000 / 60).max(1000);
        self.horizon = horizon * 1000;
        self.rules = rules;
    }

    /// Watches `rules` from now on, over the history kept so far: an alert
    /// keeps its state while its name stays (its settings may change), so a
    /// receiver never sees a name fire twice without resolving between;
    /// new names start not firing. Removed alerts that were firing resolve
    /// at `now`: they are returned.
    pub fn replace_rules(&mut self, rules: Vec<Rule>, now: i64) -> Vec<Transition> {
        let removed = self
            .rules
            .iter()
            .zip(&self.states)
            .filter(|(old, s)| {
                matches!(s, State::Firing { .. }) && !rules.iter().any(|r| r.name == old.name)
            })
            .map(|(old, _)| Transition {
                alert: old.name.clone(),
                kind: old.kind.name(),
                status: Status::Resolved,
                value: None,
                threshold: old.threshold,
                window: old.window,
                at: now,
            })
            .collect();
        let states = rules
            .iter()
            .map(|r| {
                self.rules
                    .iter()
                    .position(|old| old.name == r.name)
                    .and_then(|i| self.states.get(i).copied())
                    .unwrap_or(State::Ok)
            })
            .collect();
        self.states = states;
        self.set_rules(rules);
        removed
    }

    /// Whether each rule is firing, in declaration order.
    pub fn firing(&self) -> impl Iterator<Item = (&Rule, bool)> {
        self.rules
            .iter()
            .zip(&self.states)
            .map(|(r, s)| (r, matches!(s, State::Firing { .. })))
    }

    /// Takes the counters at `now` (milliseconds) and returns the alerts
    /// that started or stopped firing, and the sample kept of `counters`
    /// (none when the last was too recent). `now` never goes back.
    pub fn observe(
        &mut self,
        now: i64,
        counters: &Counters,
    ) -> (Vec<Transition>, Option<(i64, Counters)>) {
        self.started.get_or_insert(now);
        let mut out = Vec::new();
        for (rule, state) in self.rules.iter().zip(self.states.iter_mut()) {
            let reading = value(
                rule,
                now,
                counters,
                History {
                    samples: &self.samples,
                    floor: &self.floor,
                    started: self.started,
                    gaps: &self.gaps,
                },
            );
            let over = matches!(reading, Reading::Value(v) if v > rule.threshold);
            let window = rule.window * 1000;
            let next = match (*state, reading) {
                (_, _) if over => State::Firing { clear_since: None },
                (State::Ok, _) => State::Ok,
                (State::Firing { .. }, Reading::Unknown) => State::Firing { clear_since: None },
                (State::Firing { clear_since }, _) => {
                    let since = clear_since.unwrap_or(now);
                    if now.saturating_sub(since) >= window {
                        State::Ok
                    } else {
                        State::Firing {
                            clear_since: Some(since),
                        }
                    }
                }
            };
            let status = match (*state, next) {
                (State::Ok, State::Firing { .. }) => Some(Status::Firing),
                (State::Firing { .. }, State::Ok) => Some(Status::Resolved),
                _ => None,
            };
            if let Some(status) = status {
                out.push(Transition {
                    alert: rule.name.clone(),
                    kind: rule.kind.name(),
                    status,
                    value: match reading {
                        Reading::Value(v) => Some(v),
                        Reading::Low | Reading::Unknown => None,
                    },
                    threshold: rule.threshold,
                    window: rule.window,
                    at: now,
                });
            }
            *state = next;
        }
        let sample = self.record(now, counters);
        (out, sample)
    }

    fn record(&mut self, now: i64, counters: &Counters) -> Option<(i64, Counters)> {
        let due = self
            .samples
            .back()
            .is_none_or(|(t, _)| now.saturating_sub(*t) >= self.step);
        if due {
            self.samples.push_back((now, counters.clone()));
        }
        // The newest sample older than the horizon still answers for the
        // horizon's start; those before it are of no more use.
        let cut = now.saturating_sub(self.horizon);
        while self.samples.len() > 1 && self.samples.get(1).is_some_and(|(t, _)| *t <= cut) {
            if let Some(old) = self.samples.pop_front() {
                self.floor = old;
            }
        }
        self.gaps.retain(|(_, to)| *to > cut);
        due.then(|| (now, counters.clone()))
    }

    /// The earliest sample kept (the store may forget those before it).
    fn keep_from(&self) -> i64 {
        self.samples.front().map_or(i64::MIN, |(t, _)| *t)
    }
}

/// What a rule's value is computed from.
#[derive(Clone, Copy)]
struct History<'a> {
    samples: &'a VecDeque<(i64, Counters)>,
    floor: &'a (i64, Counters),
    started: Option<i64>,
    gaps: &'a [(i64, i64)],
}

impl History<'_> {
    /// The counters as they were at `t`: the latest sample at or before it,
    /// else the floor (zero when the history starts with the server).
    fn at(&self, t: i64) -> &Counters {
        match self.samples.partition_point(|(when, _)| *when <= t) {
            0 => &self.floor.1,
            n => self.samples.get(n - 1).map_or(&self.floor.1, |(_, c)| c),
        }
    }

    /// How much of `from..to` (milliseconds) is outside every gap.
    fn observed(&self, from: i64, to: i64) -> i64 {
        let missed: i64 = self
            .gaps
            .iter()
            .map(|(a, b)| (to.min(*b) - from.max(*a)).max(0))
            .sum();
        (to - from - missed).max(0)
    }
}

/// The rule's reading at `now`.
fn value(rule: &Rule, now: i64, counters: &Counters, history: History<'_>) -> Reading {
    let window = rule.window * 1000;
    let then = history.at(now.saturating_sub(window));
    let ratio = |part: u64, whole: u64| {
        if whole >= rule.min_volume.max(1) {
            Reading::Value(100.0 * part as f64 / whole as f64)
        } else {
            Reading::Low
        }
    };
    let delivered = counters.delivered.saturating_sub(then.delivered);
    let event = |name: &str| counters.event(name).saturating_sub(then.event(name));
    match &rule.kind {
        Kind::BounceRate => ratio(event(BOUNCED), delivered),
        Kind::SpamRate => ratio(event(SPAM), delivered),
        Kind::UnsubscribeRate => ratio(event(UNSUBSCRIBED), delivered),
        Kind::DeliveryFailureRate => {
            let failed = counters.failed.saturating_sub(then.failed);
            ratio(failed, delivered + failed)
        }
        Kind::DeadLetterRate => ratio(
            counters.dead.saturating_sub(then.dead),
            counters.calls.saturating_sub(then.calls),
        ),
        Kind::EventVolumeDrop {
            event: name,
            baseline,
        } => {
            let baseline = baseline * 1000;
            let from = now.saturating_sub(window);
            let start = from.saturating_sub(baseline);
            // A baseline from before the first observation, or before the
            // oldest counts kept, is unknown, not zero.
            let known = history.started.map_or(i64::MAX, |s| s.max(history.floor.0));
            if known > start {
                return Reading::Unknown;
            }
            // Time the server was down counts neither for the window nor
            // for the baseline: each is compared over what was observed,
            // as long as that is at least half of it.
            let seen_for = history.observed(from, now);
            let base_for = history.observed(start, from);
            if seen_for * 2 < window || base_for * 2 < baseline {
                return Reading::Unknown;
            }
            let before = history.at(start).event(name);
            let base = then.event(name).saturating_sub(before) as f64;
            let expected = base * seen_for as f64 / base_for as f64;
            if expected < rule.min_volume.max(1) as f64 {
                return Reading::Low;
            }
            let seen = event(name) as f64;
            Reading::Value((100.0 * (1.0 - seen / expected)).max(0.0))
        }
    }
}

/// The version of [`Saved`] this build writes and reads.
pub const SAVED_VERSION: u32 = 1;

/// One alert as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedAlert {
    /// Its name: the identity across restarts and reloads.
    pub name: String,
    /// Whether it was firing.
    pub firing: bool,
    /// While firing, since when its value has been clear, if it is.
    #[serde(default)]
    pub clear_since: Option<i64>,
}

/// The alerts' state as the store keeps it between two runs of `nudge
/// serve` (with the samples of their counters, kept apart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// The layout's version, [`SAVED_VERSION`].
    pub version: u32,
    /// The engine's clock at the last observation, in milliseconds.
    pub at: i64,
    /// The counters then.
    pub counters: Counters,
    /// When the first observation was ever taken.
    pub started: Option<i64>,
    /// Stretches of the clock with nothing counted (see [`Evaluator`]).
    #[serde(default)]
    pub gaps: Vec<(i64, i64)>,
    /// Every alert's state.
    pub alerts: Vec<SavedAlert>,
    /// Notifications decided and not yet known to be posted, in order.
    #[serde(default)]
    pub unposted: Vec<Value>,
}

impl Saved {
    /// Reads the state as written; why not, when it cannot be used.
    pub fn parse(text: &str) -> Result<Saved, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("it is not JSON ({e})"))?;
        match value.get("version").and_then(Value::as_u64) {
            Some(v) if v == u64::from(SAVED_VERSION) => {}
            Some(v) => {
                return Err(format!(
                    "it has version {v}, and this nudge reads version {SAVED_VERSION}"
                ));
            }
            None => return Err("it has no version".to_string()),
        }
        let saved: Saved =
            serde_json::from_value(value).map_err(|e| format!("it is not as expected ({e})"))?;
        if let Some(g) = saved.gaps.iter().find(|(from, to)| from > to) {
            return Err(format!("a gap ends before it starts ({} > {})", g.0, g.1));
        }
        Ok(saved)
    }

    /// The text the store keeps.
    pub fn to_text(&self) -> String {
        // A struct of plain fields always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Evaluator {
    /// The state to keep, as of the observation at `at` of `counters`.
    fn saved(&self, at: i64, counters: &Counters, unposted: Vec<Value>) -> Saved {
        Saved {
            version: SAVED_VERSION,
            at,
            counters: counters.compact(),
            started: self.started,
            gaps: self.gaps.clone(),
            alerts: self
                .rules
                .iter()
                .zip(&self.states)
                .map(|(r, s)| SavedAlert {
                    name: r.name.clone(),
                    firing: matches!(s, State::Firing { .. }),
                    clear_since: match s {
                        State::Firing { clear_since } => *clear_since,
                        State::Ok => None,
                    },
                })
                .collect(),
            unposted,
        }
    }

    /// Takes up where `saved` left off: the alerts of the same name get
    /// their state back, the samples their place, and the time from the
    /// last observation to `now` (when the server started again) is a gap.
    pub fn restore(&mut self, saved: &Saved, samples: Vec<(i64, Counters)>, now: i64) {
        let mut samples: Vec<(i64, Counters)> = samples
            .into_iter()
            .filter(|(t, _)| *t <= saved.at)
            .collect();
        samples.sort_by_key(|(t, _)| *t);
        if samples.last().is_none_or(|(t, _)| *t < saved.at) {
            samples.push((saved.at, saved.counters.clone()));
        }
        // Counts before the first sample kept are not known, unless it is
        // the first observation ever: the counters started at zero then.
        match samples.first() {
            Some(first) if Some(first.0) != saved.started => self.floor = first.clone(),
            _ => self.floor = (i64::MIN, Counters::default()),
        }
        self.samples = samples.into();
        self.started = saved.started.or(Some(saved.at));
        self.gaps = saved.gaps.clone();
        if now > saved.at {
            self.gaps.push((saved.at, now));
        }
        for (rule, state) in self.rules.iter().zip(self.states.iter_mut()) {
            if let Some(a) = saved.alerts.iter().find(|a| a.name == rule.name) {
                *state = if a.firing {
                    State::Firing {
                        clear_since: a.clear_since,
                    }
                } else {
                    State::Ok
                };
            }
        }
    }
}

/// The events whose track calls serve counts by name for `rules`: the
/// feedback events always (they are cheap and tell a lot), and the events
/// volume alerts watch.
pub fn watched_events(rules: &[Rule]) -> Vec<String> {
    let mut names: Vec<String> = [BOUNCED, SPAM, UNSUBSCRIBED]
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.extend(
        rules
            .iter()
            .filter_map(|r| r.kind.event().map(str::to_string)),
    );
    names.sort();
    names.dedup();
    names
}

/// The alerts of a running server: the evaluator, the counters it carries
/// over from earlier runs, and the thread that posts notifications (so a
/// slow endpoint never holds the engine up).
///
/// What a restart needs is kept in the store: the alerts' states, the
/// counters and their samples, and the notifications not yet known to be
/// posted. An observation that changes an alert is kept before its
/// notifications are queued, and a completed post within a second; quiet
/// observations at most once a second of wall time. So a restart (even
/// after SIGKILL) neither fires an alert again nor loses its resolve; a
/// notification may at worst be posted twice, when the process dies
/// within a second of its POST, and a kill loses at most a second of
/// samples, which the restart treats as a gap.
pub struct Watch {
    evaluator: Evaluator,
    notify: Option<Notifier>,
    /// When the last observation was taken. The loop comes round every
    /// second and after every request (every line with `--stdin`), but the
    /// rates are kept on a grid of a sixtieth of the shortest window: more
    /// observations than that would cost time and tell little more.
    last: Option<i64>,
    /// The counters as earlier runs left them; this run's are added.
    base: Counters,
    /// Notifications queued and not yet known to be posted, oldest first,
    /// numbered in the order the thread takes them.
    unposted: VecDeque<(u64, Value)>,
    /// The number the next queued notification gets.
    queued: u64,
    /// Samples restored from the state rather than the store's table, to
    /// write with the next observation.
    unsaved: Vec<(i64, Counters)>,
    /// Notifications kept as unposted and not yet handed to the thread:
    /// [`Watch::send`] hands them over once the state naming them is kept.
    outgoing: Vec<Value>,
    /// The last observation kept, and its counters: what an update of
    /// the notifications posted is written with.
    kept: (i64, Counters),
    /// What observations without a change left to keep: written with the
    /// next write, or once `min_interval` has passed since the last.
    pending: Option<nudge_store::AlertsWrite>,
    /// When the last write was handed over (wall clock).
    written: Option<Instant>,
    /// The least wall time between two writes that no change forces: on
    /// the calls' clock a replay comes round many windows' steps a second,
    /// and a transaction each would slow it; losing less than this to a
    /// kill only widens a gap.
    min_interval: Duration,
}

/// `pending` followed by `next`: the later state, every sample.
fn merged(
    pending: Option<nudge_store::AlertsWrite>,
    mut next: nudge_store::AlertsWrite,
) -> nudge_store::AlertsWrite {
    if let Some(mut first) = pending {
        first.samples.append(&mut next.samples);
        next.samples = first.samples;
    }
    next
}

/// The thread that posts notifications, and how many it has done with.
struct Notifier {
    tx: mpsc::Sender<Value>,
    thread: std::thread::JoinHandle<()>,
    done: Arc<AtomicU64>,
}

impl Notifier {
    fn start(hook: &AlertsWebhookSection) -> Notifier {
        let (tx, rx) = mpsc::channel::<Value>();
        let url = hook.url.trim().to_string();
        let headers: Vec<(String, String)> = hook
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let timeout = Duration::from_secs(hook.timeout_seconds.unwrap_or(10).max(1));
        let done = Arc::new(AtomicU64::new(0));
        let counted = done.clone();
        let thread = std::thread::spawn(move || post_all(&rx, &url, &headers, timeout, &counted));
        Notifier { tx, thread, done }
    }

    /// Waits for the notifications still queued to be posted.
    fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// What [`Watch::restore`] found in the store.
#[derive(Debug, Default, PartialEq)]
pub struct Restored {
    /// The alerts that were firing and still are, by name.
    pub firing: Vec<String>,
    /// Notifications queued again, not known to have been posted.
    pub requeued: usize,
    /// Samples that could not be read and were left out.
    pub bad_samples: usize,
}

impl Watch {
    /// Watches `rules`, posting to `webhook` if set; `None` without rules.
    pub fn new(rules: Vec<Rule>, webhook: Option<&AlertsWebhookSection>) -> Option<Watch> {
        if rules.is_empty() {
            return None;
        }
        Some(Watch {
            evaluator: Evaluator::new(rules),
            notify: webhook.map(Notifier::start),
            last: None,
            base: Counters::default(),
            unposted: VecDeque::new(),
            queued: 0,
            unsaved: Vec::new(),
            outgoing: Vec::new(),
            kept: (i64::MIN, Counters::default()),
            pending: None,
            written: None,
            min_interval: Duration::from_secs(1),
        })
    }

    /// Watches `rules` from now on, posting to `webhook`, over the history
    /// kept so far (see [`Evaluator::replace_rules`]). Notifications queued
    /// before are posted first, to the webhook they were queued for. When
    /// a removed alert resolves, returns the state to keep before
    /// [`Watch::send`] posts that.
    pub fn replace(
        &mut self,
        rules: Vec<Rule>,
        webhook: Option<&AlertsWebhookSection>,
        now: i64,
    ) -> Option<nudge_store::AlertsWrite> {
        if let Some(n) = self.notify.take() {
            n.finish();
        }
        self.unposted.clear();
        self.outgoing.clear();
        self.queued = 0;
        self.notify = webhook.map(Notifier::start);
        let at = self.last.map_or(now, |t| t.max(now));
        let removed = self.evaluator.replace_rules(rules, at);
        if removed.is_empty() || self.kept.0 == i64::MIN {
            return None;
        }
        log(&removed);
        for t in &removed {
            self.queue(t.to_json());
        }
        let (at, counters) = self.kept.clone();
        self.written = Some(Instant::now());
        let write = self.write(at, &counters, Vec::new());
        Some(merged(self.pending.take(), write))
    }

    /// Whether each rule is firing.
    pub fn firing(&self) -> impl Iterator<Item = (&Rule, bool)> {
        self.evaluator.firing()
    }

    /// Takes up where the state an earlier run stored left off (see
    /// [`Evaluator::restore`]); `now` is when this run's counting started.
    /// Notifications it had not posted are queued again. An unreadable
    /// state is refused whole (the caller starts afresh); an unreadable
    /// sample is left out, which only makes the history coarser.
    pub fn restore(
        &mut self,
        read: &nudge_store::AlertsRead,
        now: i64,
    ) -> Result<Restored, String> {
        let saved = Saved::parse(&read.state)?;
        let mut bad_samples = 0;
        let samples: Vec<(i64, Counters)> = read
            .samples
            .iter()
            .filter_map(|(t, text)| match serde_json::from_str(text) {
                Ok(c) => Some((*t, c)),
                Err(_) => {
                    bad_samples += 1;
                    None
                }
            })
            .collect();
        let stored: Vec<i64> = samples.iter().map(|(t, _)| *t).collect();
        self.evaluator.restore(&saved, samples, now);
        self.base = saved.counters.clone();
        self.last = Some(saved.at);
        self.kept = (saved.at, saved.counters.clone());
        self.unsaved = self
            .evaluator
            .samples
            .iter()
            .filter(|(t, _)| !stored.contains(t))
            .cloned()
            .collect();
        // Without a webhook now, there is nowhere to post them.
        let requeued = if self.notify.is_some() {
            saved.unposted.len()
        } else {
            0
        };
        for body in saved.unposted {
            self.queue(body);
        }
        Ok(Restored {
            firing: self
                .firing()
                .filter(|(_, on)| *on)
                .map(|(r, _)| r.name.clone())
                .collect(),
            requeued,
            bad_samples,
        })
    }

    /// Whether an observation at `now` is due: a step of the grid (a
    /// sixtieth of the shortest window, at least a second) of the engine's
    /// clock after the last.
    pub fn due(&self, now: i64) -> bool {
        self.last
            .is_none_or(|t| now >= t.saturating_add(self.evaluator.step))
    }

    /// Evaluates at `now` (milliseconds) over this run's counters `live`,
    /// hands what a restart needs to `keep` (the store), then logs and
    /// queues each change; whether any alert changed. A failure to keep the
    /// state is logged and the notifications go out all the same.
    pub fn observe(
        &mut self,
        now: i64,
        live: &Counters,
        keep: impl FnOnce(nudge_store::AlertsWrite) -> Result<(), String>,
    ) -> bool {
        let counters = self.base.plus(live);
        let (transitions, sample) = self.evaluator.observe(now, &counters);
        self.last = Some(now);
        let bodies: Vec<Value> = transitions.iter().map(Transition::to_json).collect();
        // Numbered before they are kept, so that the state names them.
        if self.notify.is_some() {
            for body in &bodies {
                self.unposted.push_back((self.queued, body.clone()));
                self.queued += 1;
            }
        }
        let mut samples = std::mem::take(&mut self.unsaved);
        samples.extend(sample);
        self.kept = (now, counters.clone());
        let write = merged(self.pending.take(), self.write(now, &counters, samples));
        let quiet = self
            .written
            .is_some_and(|w| w.elapsed() < self.min_interval);
        if transitions.is_empty() && quiet {
            self.pending = Some(write);
        } else {
            self.written = Some(Instant::now());
            if let Err(e) = keep(write) {
                eprintln!(
                    "warning: the alerts' state could not be stored ({e}); after a restart they may notify again"
                );
            }
        }
        log(&transitions);
        if self.notify.is_some() {
            self.outgoing.extend(bodies);
        }
        !transitions.is_empty()
    }

    /// Queues `body` for posting, numbered; [`Watch::send`] posts it.
    fn queue(&mut self, body: Value) {
        if self.notify.is_some() {
            self.unposted.push_back((self.queued, body.clone()));
            self.queued += 1;
            self.outgoing.push(body);
        }
    }

    /// Hands the notifications decided to the thread that posts them.
    /// Call it once the state naming them is kept.
    pub fn send(&mut self) {
        if let Some(n) = &self.notify {
            for body in self.outgoing.drain(..) {
                let _ = n.tx.send(body);
            }
        }
    }

    /// Notifications decided and not yet known to be posted.
    pub fn unposted(&self) -> usize {
        self.unposted.len()
    }

    /// When notifications were posted since the state was last kept: the
    /// state to keep now, so that a restart does not post them again.
    pub fn posted(&mut self) -> Option<nudge_store::AlertsWrite> {
        let done = self.notify.as_ref()?.done.load(Ordering::Acquire);
        if self.unposted.front().is_none_or(|(n, _)| *n >= done) || self.kept.0 == i64::MIN {
            return None;
        }
        let (at, counters) = self.kept.clone();
        self.written = Some(Instant::now());
        let write = self.write(at, &counters, Vec::new());
        Some(merged(self.pending.take(), write))
    }

    /// What observations without a change left to keep, once the least
    /// interval between writes has passed.
    pub fn overdue(&mut self) -> Option<nudge_store::AlertsWrite> {
        if self
            .written
            .is_some_and(|w| w.elapsed() < self.min_interval)
        {
            return None;
        }
        let write = self.pending.take()?;
        self.written = Some(Instant::now());
        Some(write)
    }

    /// What the store keeps as of the observation at `at`.
    fn write(
        &mut self,
        at: i64,
        counters: &Counters,
        samples: Vec<(i64, Counters)>,
    ) -> nudge_store::AlertsWrite {
        let done = self
            .notify
            .as_ref()
            .map_or(0, |n| n.done.load(Ordering::Acquire));
        while self.unposted.front().is_some_and(|(n, _)| *n < done) {
            self.unposted.pop_front();
        }
        let unposted = self.unposted.iter().map(|(_, b)| b.clone()).collect();
        nudge_store::AlertsWrite {
            state: self.evaluator.saved(at, counters, unposted).to_text(),
            samples: samples
                .into_iter()
                .map(|(t, c)| (t, serde_json::to_string(&c.compact()).unwrap_or_default()))
                .collect(),
            keep_from: self.evaluator.keep_from(),
        }
    }

    /// Waits for the notifications still queued to be posted, and returns
    /// the state to keep as of `now` over this run's counters `live`; none
    /// when the clock never moved and nothing was restored.
    pub fn finish(mut self, now: i64, live: &Counters) -> Option<nudge_store::AlertsWrite> {
        self.send();
        let done = self.notify.take().map(|n| {
            let done = n.done.clone();
            n.finish();
            done.load(Ordering::Acquire)
        });
        if let Some(done) = done {
            self.unposted.retain(|(n, _)| *n >= done);
        }
        let counters = self.base.plus(live);
        // The last observation may be later than the engine's clock when
        // the run restored a state and never observed.
        let at = self.last.map_or(now, |t| t.max(now));
        if at == i64::MIN {
            return None;
        }
        let samples = std::mem::take(&mut self.unsaved);
        let write = self.write(at, &counters, samples);
        Some(merged(self.pending.take(), write))
    }
}

/// Logs each change on stderr.
fn log(transitions: &[Transition]) {
    for t in transitions {
        let value = t
            .value
            .map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}%"));
        eprintln!(
            "alert: {} {} ({}: {value}, threshold {}% over {}s)",
            t.alert,
            t.status.as_str(),
            t.kind,
            t.threshold,
            t.window
        );
    }
}

/// Posts each notification in turn, trying each up to three times.
fn post_all(
    rx: &mpsc::Receiver<Value>,
    url: &str,
    headers: &[(String, String)],
    timeout: Duration,
    done: &AtomicU64,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .build()
        .into();
    for body in rx {
        let text = body.to_string();
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(u64::from(attempt)));
            }
            let mut request = agent.post(url).header("content-type", "application/json");
            for (k, v) in headers {
                request = request.header(k.as_str(), v.as_str());
            }
            match request.send(text.as_str()) {
                Ok(r) if r.status().is_success() => {
                    last.clear();
                    break;
                }
                Ok(r) => last = format!("the endpoint answered {}", r.status()),
                Err(e) => last = e.to_string(),
            }
        }
        if !last.is_empty() {
            eprintln!(
                "warning: posting an alert notification to {url} failed after 3 tries: {last}"
            );
        }
        done.fetch_add(1, Ordering::Release);
    }
}

/// A duration in seconds as Prometheus writes one (`90s`, `5m`, `1h`, `2d`).
fn prom_duration(secs: i64) -> String {
    for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs % size == 0 && secs >= size {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// A label value or string as a PromQL string literal.
fn prom_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// The rule as a PromQL expression over `nudge serve`'s metrics, true
/// while the alert's condition holds.
pub fn expr(rule: &Rule) -> String {
    let w = prom_duration(rule.window);
    let t = rule.threshold;
    let min = rule.min_volume.max(1);
    let events = |name: &str| {
        format!(
            "sum(increase(nudge_track_events_total{{event={}}}[{w}]))",
            prom_string(name)
        )
    };
    let delivered = format!("sum(increase(nudge_sends_total{{outcome=\"delivered\"}}[{w}]))");
    let per_send = |name: &str| {
        format!(
            "(100 * {} / {delivered} > {t}) and ({delivered} >= {min})",
            events(name)
        )
    };
    match &rule.kind {
        Kind::BounceRate => per_send(BOUNCED),
        Kind::SpamRate => per_send(SPAM),
        Kind::UnsubscribeRate => per_send(UNSUBSCRIBED),
        Kind::DeliveryFailureRate => {
            let all = format!("sum(increase(nudge_sends_total[{w}]))");
            format!(
                "(100 * sum(increase(nudge_sends_total{{outcome=~\"failed|unknown\"}}[{w}])) / {all} > {t}) and ({all} >= {min})"
            )
        }
        Kind::DeadLetterRate => {
            let calls = format!("sum(increase(nudge_events_total[{w}]))");
            format!(
                "(100 * sum(increase(nudge_dead_letters_total[{w}])) / {calls} > {t}) and ({calls} >= {min})"
            )
        }
        Kind::EventVolumeDrop { event, baseline } => {
            let b = prom_duration(*baseline);
            let expected = format!(
                "(sum(increase(nudge_track_events_total{{event={}}}[{b}] offset {w})) * {} / {})",
                prom_string(event),
                rule.window,
                baseline
            );
            format!(
                "(100 * (1 - {} / {expected}) > {t}) and ({expected} >= {min})",
                events(event)
            )
        }
    }
}

/// The rules as a Prometheus alerting-rules file (YAML). `keep_firing_for`
/// carries the hysteresis: a rule resolves a window after its condition
/// last held, as `nudge serve` resolves it.
pub fn prometheus_rules(rules: &[Rule]) -> String {
    let mut out = String::from("groups:\n  - name: nudge\n    rules:\n");
    if rules.is_empty() {
        out = String::from("groups:\n  - name: nudge\n    rules: []\n");
    }
    for rule in rules {
        // JSON strings are valid YAML double-quoted scalars.
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let what = match &rule.kind {
            Kind::EventVolumeDrop { event, .. } => format!(
                "`{event}` calls fell more than {}% below their baseline over {}",
                rule.threshold,
                prom_duration(rule.window)
            ),
            other => format!(
                "{} above {}% over {}",
                other.name().replace('_', " "),
                rule.threshold,
                prom_duration(rule.window)
            ),
        };
        out.push_str(&format!(
            "      - alert: {}\n        expr: {}\n        keep_firing_for: {}\n        labels:\n          source: nudge\n          kind: {}\n        annotations:\n          summary: {}\n",
            q(&rule.name),
            q(&expr(rule)),
            prom_duration(rule.window),
            rule.kind.name(),
            q(&what),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const T0: i64 = 1_780_000_000_000;

    fn bounce(threshold: f64, window: i64) -> Rule {
        Rule {
            name: "bounces".into(),
            kind: Kind::BounceRate,
            threshold,
            window,
            min_volume: 10,
        }
    }

    /// The transitions of one observation.
    fn obs(e: &mut Evaluator, now: i64, counters: &Counters) -> Vec<Transition> {
        e.observe(now, counters).0
    }

    fn counters(delivered: u64, bounced: u64) -> Counters {
        Counters {
            delivered,
            events: BTreeMap::from([(BOUNCED.to_string(), bounced)]),
            ..Counters::default()
        }
    }

    #[test]
    fn a_rate_over_its_threshold_fires_once_and_resolves_once_after_a_clear_window() {
        // 5% over a 10-minute window.
        let mut e = Evaluator::new(vec![bounce(5.0, 600)]);
        let mut transitions = Vec::new();
        let mut delivered = 0;
        let mut bounced = 0;
        // Minute by minute: 100 sends a minute, bounces at 1% for 10
        // minutes, then 20% for 5 minutes, then none for 30.
        for minute in 0..45 {
            delivered += 100;
            bounced += match minute {
                0..10 => 1,
                10..15 => 20,
                _ => 0,
            };
            let now = T0 + minute * MIN;
            for t in obs(&mut e, now, &counters(delivered, bounced)) {
                transitions.push((minute, t.status, t.value));
            }
        }
        let statuses: Vec<(i64, Status)> = transitions.iter().map(|(m, s, _)| (*m, *s)).collect();
        let (fire, clear) = expected_minutes();
        assert_eq!(
            statuses,
            vec![(fire, Status::Firing), (clear + 10, Status::Resolved)],
            "{transitions:?}"
        );
        let value = transitions[0].2.unwrap();
        assert!(value > 5.0 && value < 10.0, "{value}");
    }

    /// The first minute the bounce rate of the schedule above is over 5%,
    /// and the first after it that it is back at or under 5%, computed
    /// independently of the evaluator.
    fn expected_minutes() -> (i64, i64) {
        let per_minute = |m: i64| match m {
            0..10 => 1,
            10..15 => 20,
            _ => 0,
        };
        // The window at minute m holds minutes m-9..=m (from 0): at most
        // 1,000 sends.
        let over = |m: i64| {
            let bounces: i64 = ((m - 9).max(0)..=m).map(per_minute).sum();
            let sends = 100 * (m + 1).min(10);
            bounces * 100 > 5 * sends
        };
        let fire = (0..45).find(|&m| over(m)).unwrap();
        let clear = (fire..45).find(|&m| !over(m)).unwrap();
        (fire, clear)
    }

    #[test]
    fn a_value_back_over_the_threshold_restarts_the_clear_window() {
        let mut e = Evaluator::new(vec![bounce(5.0, 60)]);
        // 100 sends before T0: each observation below compares with these.
        obs(&mut e, T0 - MIN, &counters(100, 0));
        let fired = obs(&mut e, T0, &counters(200, 10));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].status, Status::Firing);
        // Clear for 30s, over again, then clear: no resolve until a full
        // minute of clear after the last breach.
        assert!(obs(&mut e, T0 + 30_000, &counters(300, 10)).is_empty());
        assert!(obs(&mut e, T0 + 61_000, &counters(400, 30)).is_empty());
        assert!(obs(&mut e, T0 + 100_000, &counters(700, 30)).is_empty());
        assert!(obs(&mut e, T0 + 150_000, &counters(800, 30)).is_empty());
        let resolved = obs(&mut e, T0 + 161_000, &counters(900, 30));
        assert_eq!(resolved.len(), 1, "{resolved:?}");
        assert_eq!(resolved[0].status, Status::Resolved);
        assert!(e.firing().all(|(_, f)| !f));
    }

    #[test]
    fn too_little_volume_is_no_opinion() {
        let mut e = Evaluator::new(vec![bounce(5.0, 600)]);
        // 3 bounces of 5 sends: 60%, but under the minimum of 10 sends.
        assert!(obs(&mut e, T0, &counters(5, 3)).is_empty());
    }

    #[test]
    fn an_event_volume_drop_compares_with_its_own_baseline() {
        let rule = Rule {
            name: "orders".into(),
            kind: Kind::EventVolumeDrop {
                event: "Order Completed".into(),
                baseline: 3600,
            },
            threshold: 50.0,
            window: 600,
            min_volume: 1,
        };
        let mut e = Evaluator::new(vec![rule]);
        let orders = |n: u64| Counters {
            events: BTreeMap::from([("Order Completed".to_string(), n)]),
            ..Counters::default()
        };
        // 10 orders a minute for 80 minutes: steady, never fires (and
        // holds no opinion for the first 70, the baseline being unknown).
        let mut n = 0;
        for minute in 0..80 {
            n += 10;
            assert!(obs(&mut e, T0 + minute * MIN, &orders(n)).is_empty());
        }
        // Then 2 a minute: after 7 minutes the window holds 3*10 + 7*2 = 44
        // of the 100 expected, a 56% drop.
        let mut fired = Vec::new();
        for minute in 80..95 {
            n += 2;
            for t in obs(&mut e, T0 + minute * MIN, &orders(n)) {
                fired.push((minute, t));
            }
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].0, 86);
        assert_eq!(fired[0].1.status, Status::Firing);
    }

    #[test]
    fn the_prometheus_form_names_serve_metrics() {
        let rules = vec![
            bounce(2.5, 3600),
            Rule {
                name: "orders".into(),
                kind: Kind::EventVolumeDrop {
                    event: "Order \"Completed\"".into(),
                    baseline: 86_400,
                },
                threshold: 50.0,
                window: 3600,
                min_volume: 1,
            },
        ];
        let yaml = prometheus_rules(&rules);
        assert!(yaml.contains("keep_firing_for: 1h\n"), "{yaml}");
        assert!(
            yaml.contains(r#"nudge_track_events_total{event=\"Message Bounced\"}[1h]"#),
            "{yaml}"
        );
        assert!(
            yaml.contains(r#"[1d] offset 1h)) * 3600 / 86400)"#),
            "{yaml}"
        );
        assert_eq!(prom_duration(90), "90s");
        assert_eq!(prom_duration(7200), "2h");
    }

    fn orders_rule(window: i64, baseline: i64) -> Rule {
        Rule {
            name: "orders".into(),
            kind: Kind::EventVolumeDrop {
                event: "Order Completed".into(),
                baseline,
            },
            threshold: 50.0,
            window,
            min_volume: 1,
        }
    }

    fn orders(n: u64) -> Counters {
        Counters {
            events: BTreeMap::from([("Order Completed".to_string(), n)]),
            ..Counters::default()
        }
    }

    /// A store in memory for [`Watch`]: the last state written and the
    /// samples kept, as `nudge_store::Store` keeps them.
    #[derive(Default)]
    struct Kept {
        state: String,
        samples: BTreeMap<i64, String>,
        writes: usize,
    }

    impl Kept {
        fn keep(&mut self, w: nudge_store::AlertsWrite) -> Result<(), String> {
            self.state = w.state;
            self.samples.extend(w.samples);
            self.samples.retain(|t, _| *t >= w.keep_from);
            self.writes += 1;
            Ok(())
        }

        fn read(&self) -> nudge_store::AlertsRead {
            nudge_store::AlertsRead {
                state: self.state.clone(),
                samples: self.samples.clone().into_iter().collect(),
            }
        }
    }

    /// A watch without a webhook that keeps every observation at once.
    fn eager(rules: Vec<Rule>) -> Watch {
        let mut w = Watch::new(rules, None).unwrap();
        w.min_interval = Duration::ZERO;
        w
    }

    /// Observes through `watch` and returns whether any alert changed.
    fn watch_at(watch: &mut Watch, kept: &mut Kept, now: i64, live: &Counters) -> bool {
        watch.observe(now, live, |w| kept.keep(w))
    }

    fn firing(watch: &Watch) -> Vec<bool> {
        watch.firing().map(|(_, on)| on).collect()
    }

    #[test]
    fn a_firing_alert_restored_from_the_store_neither_fires_again_nor_loses_its_resolve() {
        let rule = bounce(5.0, 600);
        let mut kept = Kept::default();
        let mut first = eager(vec![rule.clone()]);
        // 100 sends a minute; 50 bounces a minute from minute 5: fires.
        let live = |m: u64| counters(100 * (m + 1), if m >= 5 { 50 * (m - 4) } else { 0 });
        let mut changes = Vec::new();
        for m in 0..8 {
            if watch_at(&mut first, &mut kept, T0 + m as i64 * MIN, &live(m)) {
                changes.push(m);
            }
        }
        assert_eq!(changes, [5]);
        assert_eq!(firing(&first), [true]);
        // Stopped (as by SIGKILL: nothing more written than the
        // observations kept), and started again on the calls' clock where
        // it left off: its own counters start at zero.
        let saved = Saved::parse(&kept.state).unwrap();
        assert_eq!(saved.at, T0 + 7 * MIN);
        assert_eq!(saved.counters, live(7));
        assert_eq!(saved.alerts[0].name, "bounces");
        assert!(saved.alerts[0].firing);
        drop(first);
        let mut second = eager(vec![rule]);
        let restored = second.restore(&kept.read(), T0 + 7 * MIN).unwrap();
        assert_eq!(restored.firing, ["bounces"]);
        assert_eq!(restored.bad_samples, 0);
        assert_eq!(firing(&second), [true]);
        // Still bouncing for longer than a window: no second firing, and no
        // resolve (which counters restarting at zero would have given).
        for m in 8..25u64 {
            let since = counters(100 * (m - 7), 50 * (m - 7));
            assert!(!watch_at(
                &mut second,
                &mut kept,
                T0 + m as i64 * MIN,
                &since
            ));
        }
        // Then no bounces: resolved once, a window after the rate is clear.
        let mut resolved = Vec::new();
        for m in 25..60u64 {
            let since = counters(100 * (m - 7), 50 * 17);
            if watch_at(&mut second, &mut kept, T0 + m as i64 * MIN, &since) {
                resolved.push(m);
            }
        }
        assert_eq!(resolved.len(), 1, "{resolved:?}");
        assert_eq!(firing(&second), [false]);
        // The counters kept go on from the first run's.
        let saved = Saved::parse(&kept.state).unwrap();
        assert_eq!(saved.counters.delivered, 100 * 60);
        assert!(!saved.alerts[0].firing);
    }

    #[test]
    fn the_saved_state_reads_back_as_written_and_a_damaged_one_is_refused() {
        let mut e = Evaluator::new(vec![bounce(5.0, 60), orders_rule(600, 3600)]);
        obs(&mut e, T0, &counters(100, 0));
        assert_eq!(obs(&mut e, T0 + MIN, &counters(200, 50)).len(), 1);
        obs(&mut e, T0 + 2 * MIN, &counters(300, 50));
        e.gaps.push((T0 - 10 * MIN, T0 - 5 * MIN));
        let saved = e.saved(T0 + 2 * MIN, &counters(300, 50), vec![json!({"a": 1})]);
        let text = saved.to_text();
        assert_eq!(Saved::parse(&text).unwrap(), saved);
        assert_eq!(saved.alerts[0].clear_since, Some(T0 + 2 * MIN));
        assert!(!saved.alerts[1].firing);

        let refused = |text: &str| Saved::parse(text).unwrap_err();
        assert!(refused("").starts_with("it is not JSON"), "{}", refused(""));
        assert!(refused("{\"version\": 1,").starts_with("it is not JSON"));
        assert_eq!(refused("{}"), "it has no version");
        assert_eq!(
            refused(&text.replace("\"version\":1", "\"version\":2")),
            "it has version 2, and this nudge reads version 1"
        );
        let no_alerts = text.replace("\"alerts\"", "\"alarms\"");
        assert!(
            refused(&no_alerts).contains("missing field `alerts`"),
            "{}",
            refused(&no_alerts)
        );
        let backwards = serde_json::to_string(&Saved {
            gaps: vec![(5, 1)],
            ..saved.clone()
        })
        .unwrap();
        assert_eq!(refused(&backwards), "a gap ends before it starts (5 > 1)");
    }

    #[test]
    fn a_damaged_state_leaves_the_watch_as_it_was_and_bad_samples_are_left_out() {
        let mut w = eager(vec![bounce(5.0, 60)]);
        let read = |state: &str, samples: Vec<(i64, &str)>| nudge_store::AlertsRead {
            state: state.into(),
            samples: samples.into_iter().map(|(t, c)| (t, c.into())).collect(),
        };
        let err = w.restore(&read("{\"version\": 1, \"at\": \"soon\"}", vec![]), T0);
        assert!(err.unwrap_err().starts_with("it is not as expected"));
        assert_eq!(firing(&w), [false]);
        assert!(w.due(T0));

        let mut firing_state = Evaluator::new(vec![bounce(5.0, 60)]);
        obs(&mut firing_state, T0, &counters(100, 0));
        obs(&mut firing_state, T0 + MIN, &counters(200, 50));
        let state = firing_state
            .saved(T0 + MIN, &counters(200, 50), Vec::new())
            .to_text();
        let restored = w
            .restore(
                &read(
                    &state,
                    vec![(T0, "{\"delivered\": 100}"), (T0 + 1, "not json")],
                ),
                T0 + 2 * MIN,
            )
            .unwrap();
        assert_eq!(restored.bad_samples, 1);
        assert_eq!(restored.firing, ["bounces"]);
        // The next observation is due a step after the last one kept.
        assert!(!w.due(T0 + MIN));
        assert!(w.due(T0 + 2 * MIN));
    }

    #[test]
    fn time_the_server_was_down_is_no_drop_in_volume() {
        let mut kept = Kept::default();
        let mut w = eager(vec![orders_rule(600, 3600)]);
        // 10 orders a minute for two hours.
        let mut n = 0;
        for m in 0..120 {
            n += 10;
            assert!(!watch_at(&mut w, &mut kept, T0 + m * MIN, &orders(n)));
        }
        // Down for 20 minutes on the wall clock, then 10 a minute again:
        // the window holds 20 minutes nobody counted, which is no drop.
        let mut w = eager(vec![orders_rule(600, 3600)]);
        let back = T0 + 140 * MIN;
        w.restore(&kept.read(), back).unwrap();
        let mut changes = Vec::new();
        let mut since = 0;
        for m in 140..260 {
            since += 10;
            if watch_at(&mut w, &mut kept, T0 + m * MIN, &orders(since)) {
                changes.push(m);
            }
        }
        assert!(changes.is_empty(), "{changes:?}");
        // A real drop after it still fires: 1 a minute.
        for m in 260..280 {
            since += 1;
            if watch_at(&mut w, &mut kept, T0 + m * MIN, &orders(since)) {
                changes.push(m);
            }
        }
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(firing(&w), [true]);
    }

    #[test]
    fn a_firing_drop_does_not_resolve_on_time_nobody_counted() {
        let mut e = Evaluator::new(vec![orders_rule(600, 3600)]);
        let mut n = 0;
        for m in 0..80 {
            n += 10;
            obs(&mut e, T0 + m * MIN, &orders(n));
        }
        // Nothing for 10 minutes: fires.
        let mut fired = Vec::new();
        for m in 80..90 {
            fired.extend(obs(&mut e, T0 + m * MIN, &orders(n)));
        }
        assert_eq!(fired.len(), 1);
        // Down for an hour: while the window is mostly unobserved the
        // alert holds; once it is observed again the drop goes on (still
        // nothing), so it never resolves.
        e.gaps.push((T0 + 89 * MIN, T0 + 150 * MIN));
        for m in 150..185 {
            assert!(obs(&mut e, T0 + m * MIN, &orders(n)).is_empty(), "{m}");
        }
        assert!(e.firing().all(|(_, on)| on));
    }

    #[test]
    fn changed_rules_keep_the_state_of_each_name_that_stays() {
        let mut e = Evaluator::new(vec![bounce(5.0, 60)]);
        obs(&mut e, T0, &counters(100, 0));
        assert_eq!(obs(&mut e, T0 + MIN, &counters(200, 50)).len(), 1);
        let mut stricter = bounce(1.0, 120);
        stricter.min_volume = 1;
        let other = Rule {
            name: "dead".into(),
            kind: Kind::DeadLetterRate,
            threshold: 1.0,
            window: 60,
            min_volume: 1,
        };
        assert!(
            e.replace_rules(vec![other.clone(), stricter], T0 + MIN)
                .is_empty()
        );
        let on: Vec<(String, bool)> = e.firing().map(|(r, f)| (r.name.clone(), f)).collect();
        assert_eq!(on, [("dead".into(), false), ("bounces".into(), true)]);
        // Still over its new threshold: no second firing.
        assert!(obs(&mut e, T0 + 2 * MIN, &counters(300, 60)).is_empty());
        // Removed while firing: it resolves then, once.
        let resolved = e.replace_rules(vec![other], T0 + 3 * MIN);
        assert_eq!(resolved.len(), 1, "{resolved:?}");
        assert_eq!(resolved[0].alert, "bounces");
        assert_eq!(resolved[0].status, Status::Resolved);
        assert_eq!((resolved[0].value, resolved[0].at), (None, T0 + 3 * MIN));
        assert!(e.replace_rules(Vec::new(), T0 + 4 * MIN).is_empty());
    }

    #[test]
    fn quiet_observations_are_kept_with_the_next_change_or_at_the_end() {
        let mut w = Watch::new(vec![bounce(5.0, 600)], None).unwrap();
        // Longer than the test runs: only a change or the end writes.
        w.min_interval = Duration::from_secs(3600);
        let mut kept = Kept::default();
        // The first write goes out at once; the next quiet ones wait.
        for m in 0..3 {
            assert!(!watch_at(
                &mut w,
                &mut kept,
                T0 + m * MIN,
                &counters(100 * (m as u64 + 1), 0)
            ));
        }
        assert_eq!(kept.writes, 1);
        assert!(w.overdue().is_none());
        // A firing is kept at once, with the samples that waited.
        assert!(watch_at(
            &mut w,
            &mut kept,
            T0 + 3 * MIN,
            &counters(400, 50)
        ));
        assert_eq!(kept.writes, 2);
        let times: Vec<i64> = kept.samples.keys().copied().collect();
        assert_eq!(times, [T0, T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]);
        assert!(Saved::parse(&kept.state).unwrap().alerts[0].firing);
        // A quiet one after it waits, and the end keeps it.
        assert!(!watch_at(
            &mut w,
            &mut kept,
            T0 + 4 * MIN,
            &counters(500, 100)
        ));
        assert_eq!(kept.writes, 2);
        let last = w.finish(T0 + 4 * MIN, &counters(500, 100)).unwrap();
        kept.keep(last).unwrap();
        assert!(kept.samples.contains_key(&(T0 + 4 * MIN)));
        assert_eq!(Saved::parse(&kept.state).unwrap().at, T0 + 4 * MIN);
    }
}
