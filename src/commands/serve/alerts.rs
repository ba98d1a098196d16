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
use std::sync::mpsc;
use std::time::Duration;

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

/// Serve's counters since it started, as the evaluator reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Calls accepted.
    pub calls: u64,
    /// Dead letters written.
    pub dead: u64,
    /// Sends a plugin took.
    pub delivered: u64,
    /// Sends that failed or whose outcome is unknown.
    pub failed: u64,
    /// Applied track calls of the watched events, by event name.
    pub events: BTreeMap<String, u64>,
}

impl Counters {
    fn event(&self, name: &str) -> u64 {
        self.events.get(name).copied().unwrap_or(0)
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

/// Evaluates the rules over a history of counter samples.
#[derive(Debug)]
pub struct Evaluator {
    rules: Vec<Rule>,
    states: Vec<State>,
    /// Samples in time order; before the first, every counter was zero.
    samples: VecDeque<(i64, Counters)>,
    /// When the first sample was taken: a baseline before it is unknown.
    started: Option<i64>,
    /// The least time between two stored samples, in milliseconds: a fine
    /// enough grid for the shortest window without one sample per tick.
    step: i64,
    /// How far back samples are needed, in milliseconds.
    horizon: i64,
    /// The counters before the first sample.
    zero: Counters,
}

impl Evaluator {
    /// An evaluator of `rules`, every alert not firing.
    pub fn new(rules: Vec<Rule>) -> Self {
        let shortest = rules.iter().map(|r| r.window).min().unwrap_or(60);
        let horizon = rules
            .iter()
            .map(|r| match r.kind {
                Kind::EventVolumeDrop { baseline, .. } => r.window + baseline,
                _ => r.window,
            })
            .max()
            .unwrap_or(0);
        Evaluator {
            states: vec![State::Ok; rules.len()],
            rules,
            samples: VecDeque::new(),
            started: None,
            step: (shortest * 1000 / 60).max(1000),
            horizon: horizon * 1000,
            zero: Counters::default(),
        }
    }

    /// Whether each rule is firing, in declaration order.
    pub fn firing(&self) -> impl Iterator<Item = (&Rule, bool)> {
        self.rules
            .iter()
            .zip(&self.states)
            .map(|(r, s)| (r, matches!(s, State::Firing { .. })))
    }

    /// Takes the counters at `now` (milliseconds) and returns the alerts
    /// that started or stopped firing. `now` never goes back.
    pub fn observe(&mut self, now: i64, counters: &Counters) -> Vec<Transition> {
        self.started.get_or_insert(now);
        let mut out = Vec::new();
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            let value = self.value(rule, now, counters);
            let over = value.is_some_and(|v| v > rule.threshold);
            let window = rule.window * 1000;
            let next = match (self.states[i], over) {
                (State::Ok, false) => State::Ok,
                (State::Ok, true) | (State::Firing { .. }, true) => {
                    State::Firing { clear_since: None }
                }
                (State::Firing { clear_since }, false) => {
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
            let status = match (self.states[i], next) {
                (State::Ok, State::Firing { .. }) => Some(Status::Firing),
                (State::Firing { .. }, State::Ok) => Some(Status::Resolved),
                _ => None,
            };
            if let Some(status) = status {
                out.push(Transition {
                    alert: rule.name.clone(),
                    kind: rule.kind.name(),
                    status,
                    value,
                    threshold: rule.threshold,
                    window: rule.window,
                    at: now,
                });
            }
            self.states[i] = next;
        }
        self.record(now, counters);
        out
    }

    fn record(&mut self, now: i64, counters: &Counters) {
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
        while self.samples.len() > 1 && self.samples[1].0 <= cut {
            self.samples.pop_front();
        }
    }

    /// The counters as they were at `t`: the latest sample at or before it,
    /// else zero (the counters start at zero with the server).
    fn at(&self, t: i64) -> &Counters {
        match self.samples.partition_point(|(when, _)| *when <= t) {
            0 => &self.zero,
            n => &self.samples[n - 1].1,
        }
    }

    /// The rule's value at `now` in percent, or `None` when the volume is
    /// too low (or the history too short) to tell.
    fn value(&self, rule: &Rule, now: i64, counters: &Counters) -> Option<f64> {
        let window = rule.window * 1000;
        let then = self.at(now.saturating_sub(window));
        let ratio = |part: u64, whole: u64| {
            (whole >= rule.min_volume.max(1)).then(|| 100.0 * part as f64 / whole as f64)
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
                let start = now.saturating_sub(window).saturating_sub(baseline * 1000);
                // A baseline from before the server started is unknown, not zero.
                if self.started.is_none_or(|s| s > start) {
                    return None;
                }
                let before = self.at(start).event(name);
                let base = then.event(name).saturating_sub(before) as f64;
                let expected = base * rule.window as f64 / *baseline as f64;
                if expected < rule.min_volume.max(1) as f64 {
                    return None;
                }
                let seen = event(name) as f64;
                Some((100.0 * (1.0 - seen / expected)).max(0.0))
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

/// The alerts of a running server: the evaluator, and the thread that
/// posts notifications (so a slow endpoint never holds the engine up).
pub struct Watch {
    evaluator: Evaluator,
    notify: Option<(mpsc::Sender<Value>, std::thread::JoinHandle<()>)>,
    /// When the last observation was taken. The loop comes round every
    /// second and after every request (every line with `--stdin`), but the
    /// rates are kept on a grid of a sixtieth of the shortest window: more
    /// observations than that would cost time and tell little more.
    last: Option<i64>,
}

impl Watch {
    /// Watches `rules`, posting to `webhook` if set; `None` without rules.
    pub fn new(rules: Vec<Rule>, webhook: Option<&AlertsWebhookSection>) -> Option<Watch> {
        if rules.is_empty() {
            return None;
        }
        let notify = webhook.map(|hook| {
            let (tx, rx) = mpsc::channel::<Value>();
            let url = hook.url.trim().to_string();
            let headers: Vec<(String, String)> = hook
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let timeout = Duration::from_secs(hook.timeout_seconds.unwrap_or(10).max(1));
            let thread = std::thread::spawn(move || post_all(&rx, &url, &headers, timeout));
            (tx, thread)
        });
        Some(Watch {
            evaluator: Evaluator::new(rules),
            notify,
            last: None,
        })
    }

    /// Whether an observation at `now` is due: a step of the grid (a
    /// sixtieth of the shortest window, at least a second) of the engine's
    /// clock after the last.
    pub fn due(&self, now: i64) -> bool {
        self.last
            .is_none_or(|t| now >= t.saturating_add(self.evaluator.step))
    }

    /// Evaluates at `now` (milliseconds), logging and posting each change;
    /// whether any alert changed.
    pub fn observe(&mut self, now: i64, counters: &Counters) -> bool {
        let transitions = self.evaluator.observe(now, counters);
        self.last = Some(now);
        let changed = !transitions.is_empty();
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
            if let Some((tx, _)) = &self.notify {
                let _ = tx.send(t.to_json());
            }
        }
        changed
    }

    /// Whether each rule is firing.
    pub fn firing(&self) -> impl Iterator<Item = (&Rule, bool)> {
        self.evaluator.firing()
    }

    /// Waits for the notifications still queued to be posted.
    pub fn finish(self) {
        if let Some((tx, thread)) = self.notify {
            drop(tx);
            let _ = thread.join();
        }
    }
}

/// Posts each notification in turn, trying each up to three times.
fn post_all(
    rx: &mpsc::Receiver<Value>,
    url: &str,
    headers: &[(String, String)],
    timeout: Duration,
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
            for t in e.observe(now, &counters(delivered, bounced)) {
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
        e.observe(T0 - MIN, &counters(100, 0));
        let fired = e.observe(T0, &counters(200, 10));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].status, Status::Firing);
        // Clear for 30s, over again, then clear: no resolve until a full
        // minute of clear after the last breach.
        assert!(e.observe(T0 + 30_000, &counters(300, 10)).is_empty());
        assert!(e.observe(T0 + 61_000, &counters(400, 30)).is_empty());
        assert!(e.observe(T0 + 100_000, &counters(700, 30)).is_empty());
        assert!(e.observe(T0 + 150_000, &counters(800, 30)).is_empty());
        let resolved = e.observe(T0 + 161_000, &counters(900, 30));
        assert_eq!(resolved.len(), 1, "{resolved:?}");
        assert_eq!(resolved[0].status, Status::Resolved);
        assert!(e.firing().all(|(_, f)| !f));
    }

    #[test]
    fn too_little_volume_is_no_opinion() {
        let mut e = Evaluator::new(vec![bounce(5.0, 600)]);
        // 3 bounces of 5 sends: 60%, but under the minimum of 10 sends.
        assert!(e.observe(T0, &counters(5, 3)).is_empty());
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
            assert!(e.observe(T0 + minute * MIN, &orders(n)).is_empty());
        }
        // Then 2 a minute: after 7 minutes the window holds 3*10 + 7*2 = 44
        // of the 100 expected, a 56% drop.
        let mut fired = Vec::new();
        for minute in 80..95 {
            n += 2;
            for t in e.observe(T0 + minute * MIN, &orders(n)) {
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
}
