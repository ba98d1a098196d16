//! The live host's counters, read by `GET /metrics` (Prometheus text) and
//! by the alerts: written by the engine thread and the HTTP side, read by
//! either, so every counter is atomic or behind a lock.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::alerts;

/// Counters for `GET /metrics`, written by the engine thread.
#[derive(Default)]
pub struct Metrics {
    /// Calls applied.
    pub events: AtomicU64,
    /// Dead letters written.
    pub dead: AtomicU64,
    /// Properties or traits dropped from calls that were applied.
    pub dropped: AtomicU64,
    /// Track calls for events the project does not declare.
    pub undeclared: AtomicU64,
    /// Segment `group` calls.
    pub groups: AtomicU64,
    /// Delivery attempts by channel and outcome.
    pub sends: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// How far the engine's clock was behind the wall clock at the last tick, in milliseconds.
    pub lag: AtomicI64,
    /// Time spent committing, in microseconds.
    pub commit_micros: AtomicU64,
    /// Commits made.
    pub commits: AtomicU64,
    /// A commit failed: the engine is ahead of the store, so nothing more is accepted.
    pub broken: AtomicBool,
    /// Requests answered 503 because the engine's queue was full.
    pub busy: AtomicU64,
    /// Failed deliveries scheduled for another round.
    pub retried: AtomicU64,
    /// Sends given up after their last round.
    pub given_up: AtomicU64,
    /// Sends waiting for their next round now.
    pub retrying: AtomicU64,
    /// Connections closed and requests cut short by the HTTP limits, by limit.
    pub timeouts: Mutex<BTreeMap<&'static str, u64>>,
    /// The send circuit breaker is open: sending is paused.
    pub paused: AtomicBool,
    /// Times the breaker opened.
    pub trips: AtomicU64,
    /// Sends held while it is open.
    pub held: AtomicU64,
    /// When the engine thread last came round its loop, in milliseconds
    /// since the epoch.
    pub heartbeat: AtomicI64,
    /// The server is shutting down: the engine may be finishing its queue.
    pub stopping: AtomicBool,
    /// Applied track calls by event name, for the events alerts watch (a
    /// fixed set, so the label's values stay few).
    pub track_events: Mutex<BTreeMap<String, u64>>,
    /// When a track call of each of those events was last applied, in
    /// milliseconds since the epoch (wall clock).
    pub track_last: Mutex<BTreeMap<String, i64>>,
    /// Delivery attempts by flow, message, channel and outcome.
    pub message_sends: Mutex<BTreeMap<MessageOutcome, u64>>,
    /// Whether each alert is firing, by name.
    pub alerts_firing: Mutex<BTreeMap<String, bool>>,
    /// Alert notifications decided and not yet known to be posted.
    pub alerts_unposted: AtomicU64,
    /// The per-flow families, rendered from the engine's counters by the
    /// engine thread once a second (the counters live on that thread).
    pub flows: Mutex<String>,
    /// Requests answered, by route (its pattern, so values stay few) and status.
    pub requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// When the last call was committed, in milliseconds since the epoch (0: none yet).
    pub last_event: AtomicI64,
    /// Timers set and not yet due, after the last tick.
    pub timers: AtomicU64,
    /// Customers the engine has, in memory or in the store only.
    pub customers: AtomicU64,
    /// Customers in memory (see `[runtime] customers_in_memory`).
    pub customers_in_memory: AtomicU64,
    /// Customers read back from the store since the server started.
    pub customers_read_back: AtomicU64,
    /// Timers in memory (with a budget, the others wait in the store).
    pub timers_in_memory: AtomicU64,
    /// Identities (user ids, anonymous ids, addresses) the engine knows.
    pub identities: AtomicU64,
    /// Identities whose texts are in memory (with a budget, the others
    /// are looked up in the store by name).
    pub identities_in_memory: AtomicU64,
    /// Identities read back from the store since the server started.
    pub identities_read_back: AtomicU64,
    /// Calls whose time was later than their receipt, applied at it.
    pub clamped: AtomicU64,
    /// Commits by the histogram's buckets (see [`COMMIT_BUCKETS`]); the last
    /// counts those slower than every bound.
    pub commit_buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    /// Dead letters by reason code (see [`crate::dead::code`]).
    pub dead_reasons: Mutex<BTreeMap<&'static str, u64>>,
    /// Deliveries by provider (the plugin's name).
    pub providers: Mutex<BTreeMap<String, ProviderCounts>>,
}

/// A delivery's flow, message, channel and outcome: the labels of
/// `nudge_message_sends_total`.
pub type MessageOutcome = (String, String, String, &'static str);

/// The upper bounds, in seconds, of the commit latency histogram's buckets:
/// from a commit that only appends to the WAL to one stuck behind a slow disk.
pub const COMMIT_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// What became of one provider's deliveries.
#[derive(Default)]
pub struct ProviderCounts {
    /// Committed sends waiting for delivery, for their next round, or held.
    pub pending: u64,
    /// Failed deliveries scheduled for another round.
    pub retried: u64,
    /// Deliveries that failed, or whose outcome is unknown.
    pub failed: u64,
}

impl Metrics {
    /// Notes that the engine thread is alive and taking work.
    pub fn beat(&self) {
        self.heartbeat
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// How long since the engine thread last came round its loop.
    pub fn since_beat(&self) -> Duration {
        let last = self.heartbeat.load(Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp_millis();
        Duration::from_millis(now.saturating_sub(last).max(0) as u64)
    }

    /// Starts counting track calls of `events` by name (and of any other
    /// event as `other`).
    pub fn watch_events(&self, events: impl IntoIterator<Item = String>) {
        if let Ok(mut counts) = self.track_events.lock() {
            counts.entry(OTHER_EVENTS.to_string()).or_default();
            for e in events {
                counts.entry(e).or_default();
            }
        }
    }

    /// Counts `line` by its event if it is a track call applied at `now`
    /// (milliseconds, wall clock).
    pub fn count_event(&self, line: &str, now: i64) {
        let Some(name) = track_event(line) else {
            return;
        };
        let Ok(mut counts) = self.track_events.lock() else {
            return;
        };
        // Only names counted from the start are labels, so their values
        // stay few whatever clients send.
        let key = if counts.contains_key(name.as_ref()) {
            name.as_ref()
        } else {
            OTHER_EVENTS
        };
        if let Some(n) = counts.get_mut(key) {
            *n += 1;
        }
        if let Ok(mut last) = self.track_last.lock() {
            last.insert(key.to_string(), now);
        }
    }

    /// The counters alerts are evaluated over.
    pub fn alert_counters(&self) -> alerts::Counters {
        let (mut delivered, mut failed) = (0, 0);
        if let Ok(sends) = self.sends.lock() {
            for ((_, outcome), n) in sends.iter() {
                match *outcome {
                    "delivered" => delivered += n,
                    _ => failed += n,
                }
            }
        }
        alerts::Counters {
            calls: self.events.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
            delivered,
            failed,
            events: self
                .track_events
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
        }
    }

    /// Counts a connection or request cut short by the `limit` timeout.
    pub fn timeout(&self, limit: &'static str) {
        if let Ok(mut counts) = self.timeouts.lock() {
            *counts.entry(limit).or_default() += 1;
        }
    }

    /// Counts a commit that took `took`, in the total and the histogram.
    pub fn commit(&self, took: Duration) {
        self.commit_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = COMMIT_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(COMMIT_BUCKETS.len());
        // Past the last bound is the `+Inf` slot, one past the bounds.
        if let Some(b) = self.commit_buckets.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        };
        let events = self.events.load(Ordering::Relaxed);
        metric(
            "nudge_events_total",
            "counter",
            "Calls accepted and committed since the server started.",
            vec![format!("nudge_events_total {events}")],
        );
        let dead = self.dead.load(Ordering::Relaxed);
        metric(
            "nudge_dead_letters_total",
            "counter",
            "Accepted calls the engine refused (they are in the dead-letter file).",
            vec![format!("nudge_dead_letters_total {dead}")],
        );
        let reasons = self
            .dead_reasons
            .lock()
            .map(|r| {
                crate::dead::CODES
                    .iter()
                    .map(|code| {
                        let n = r.get(code).copied().unwrap_or(0);
                        format!("nudge_dead_letters_by_reason_total{{reason=\"{code}\"}} {n}")
                    })
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_dead_letters_by_reason_total",
            "counter",
            "Dead letters by reason code (the dead-letter file keeps the full reason).",
            reasons,
        );
        let clamped = self.clamped.load(Ordering::Relaxed);
        metric(
            "nudge_calls_clamped_total",
            "counter",
            "Calls stamped later than their receipt (after correcting for the sender's clock): applied at their receipt.",
            vec![format!("nudge_calls_clamped_total {clamped}")],
        );
        let mut pending = Vec::new();
        let mut retried = Vec::new();
        let mut failed = Vec::new();
        if let Ok(providers) = self.providers.lock() {
            for (provider, c) in providers.iter() {
                let p = label_value(provider);
                pending.push(format!(
                    "nudge_provider_deliveries_pending{{provider={p}}} {}",
                    c.pending
                ));
                retried.push(format!(
                    "nudge_provider_retries_total{{provider={p}}} {}",
                    c.retried
                ));
                failed.push(format!(
                    "nudge_provider_failures_total{{provider={p}}} {}",
                    c.failed
                ));
            }
        }
        metric(
            "nudge_provider_deliveries_pending",
            "gauge",
            "Committed sends not yet delivered, by provider (the plugin): waiting, between retry rounds, or held by the breaker.",
            pending,
        );
        metric(
            "nudge_provider_retries_total",
            "counter",
            "Failed deliveries scheduled for another round, by provider.",
            retried,
        );
        metric(
            "nudge_provider_failures_total",
            "counter",
            "Delivery attempts that failed or whose outcome is unknown, by provider.",
            failed,
        );
        // Counted since the store began (the engine's counters are rebuilt
        // with its history), unlike the counters above.
        for (name, help, value) in [
            (
                "nudge_dropped_properties_total",
                "Properties and traits dropped from calls that were applied (the trace says which).",
                &self.dropped,
            ),
            (
                "nudge_undeclared_events_total",
                "Track calls for events the project does not declare: accepted and counted.",
                &self.undeclared,
            ),
            (
                "nudge_group_calls_total",
                "Segment group calls accepted.",
                &self.groups,
            ),
        ] {
            let n = value.load(Ordering::Relaxed);
            metric(name, "counter", help, vec![format!("{name} {n}")]);
        }
        let busy = self.busy.load(Ordering::Relaxed);
        metric(
            "nudge_http_busy_total",
            "counter",
            "Requests answered 503 with Retry-After because the engine's queue was full.",
            vec![format!("nudge_http_busy_total {busy}")],
        );
        for (name, kind, help, value) in [
            (
                "nudge_delivery_retries_total",
                "counter",
                "Failed deliveries scheduled for another round while serving.",
                &self.retried,
            ),
            (
                "nudge_delivery_given_up_total",
                "counter",
                "Sends given up after their last round of delivery.",
                &self.given_up,
            ),
            (
                "nudge_delivery_retrying",
                "gauge",
                "Sends waiting for their next round of delivery.",
                &self.retrying,
            ),
        ] {
            let n = value.load(Ordering::Relaxed);
            metric(name, kind, help, vec![format!("{name} {n}")]);
        }
        let timeouts = self
            .timeouts
            .lock()
            .map(|t| {
                ["header", "body", "idle", "request"]
                    .iter()
                    .map(|limit| {
                        let n = t.get(limit).copied().unwrap_or(0);
                        format!("nudge_http_timeouts_total{{limit=\"{limit}\"}} {n}")
                    })
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_http_timeouts_total",
            "counter",
            "Connections closed or requests answered early by the [serve] timeouts, by limit.",
            timeouts,
        );
        for (name, kind, help, value) in [
            (
                "nudge_send_breaker_open",
                "gauge",
                "1 while the send circuit breaker holds every send (POST /admin/release-sends resumes).",
                u64::from(self.paused.load(Ordering::Relaxed)),
            ),
            (
                "nudge_send_breaker_trips_total",
                "counter",
                "Times one call or clock step made more sends than [runtime] max_sends_per_step.",
                self.trips.load(Ordering::Relaxed),
            ),
            (
                "nudge_sends_held",
                "gauge",
                "Committed sends the open breaker holds.",
                self.held.load(Ordering::Relaxed),
            ),
        ] {
            metric(name, kind, help, vec![format!("{name} {value}")]);
        }
        let sends = self
            .sends
            .lock()
            .map(|s| {
                s.iter()
                    .map(|((channel, outcome), n)| {
                        format!(
                            "nudge_sends_total{{channel=\"{channel}\",outcome=\"{outcome}\"}} {n}"
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_sends_total",
            "counter",
            "Messages handed to plugins, by channel and outcome.",
            sends,
        );
        let by_name = |map: &Mutex<BTreeMap<String, u64>>, name: &str, label: &str| {
            map.lock()
                .map(|m| {
                    m.iter()
                        .map(|(k, n)| format!("{name}{{{label}={}}} {n}", label_value(k)))
                        .collect()
                })
                .unwrap_or_default()
        };
        metric(
            "nudge_track_events_total",
            "counter",
            "Applied track calls since the server started, by event: the project's declared events, and `other`.",
            by_name(&self.track_events, "nudge_track_events_total", "event"),
        );
        let firing = self
            .alerts_firing
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, on)| (k.clone(), u64::from(*on)))
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_alerts_firing",
            "gauge",
            "1 while the alert declared in [[alerts]] is firing.",
            by_name(&Mutex::new(firing), "nudge_alerts_firing", "alert"),
        );
        let unposted = self.alerts_unposted.load(Ordering::Relaxed);
        metric(
            "nudge_alert_notifications_unposted",
            "gauge",
            "Alert notifications decided and not yet known to be posted (kept in the store: a restart posts them).",
            vec![format!("nudge_alert_notifications_unposted {unposted}")],
        );
        let lag = self.lag.load(Ordering::Relaxed);
        metric(
            "nudge_timer_lag_seconds",
            "gauge",
            "How far the engine clock was behind the wall clock at the last tick.",
            vec![format!("nudge_timer_lag_seconds {}", lag as f64 / 1000.0)],
        );
        let sum = self.commit_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let count = self.commits.load(Ordering::Relaxed);
        let mut lines = Vec::new();
        let mut below = 0;
        for (le, n) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            below += n.load(Ordering::Relaxed);
            lines.push(format!(
                "nudge_commit_seconds_bucket{{le=\"{le}\"}} {below}"
            ));
        }
        lines.push(format!(
            "nudge_commit_seconds_bucket{{le=\"+Inf\"}} {count}"
        ));
        lines.push(format!("nudge_commit_seconds_sum {sum}"));
        lines.push(format!("nudge_commit_seconds_count {count}"));
        metric(
            "nudge_commit_seconds",
            "histogram",
            "Time to commit a batch of calls with its send intents.",
            lines,
        );
        let requests: Vec<String> = self
            .requests
            .lock()
            .map(|r| {
                r.iter()
                    .map(|((route, status), n)| {
                        format!(
                            "nudge_http_requests_total{{route={},status=\"{status}\"}} {n}",
                            label_value(route)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_http_requests_total",
            "counter",
            "HTTP requests answered, by route pattern and status.",
            requests,
        );
        let last_by_event = self
            .track_last
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(event, ms)| {
                        format!(
                            "nudge_track_event_last_timestamp_seconds{{event={}}} {}",
                            label_value(event),
                            *ms as f64 / 1000.0
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_track_event_last_timestamp_seconds",
            "gauge",
            "When a track call of the event was last applied, by event (as nudge_track_events_total names them); absent before the first.",
            last_by_event,
        );
        let by_message = self
            .message_sends
            .lock()
            .map(|m| {
                m.iter()
                    .map(|((flow, message, channel, outcome), n)| {
                        format!(
                            "nudge_message_sends_total{{flow={},message={},channel={},outcome=\"{outcome}\"}} {n}",
                            label_value(flow),
                            label_value(message),
                            label_value(channel)
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        metric(
            "nudge_message_sends_total",
            "counter",
            "Messages handed to plugins, by flow, message, channel and outcome (every round of a retried send counts).",
            by_message,
        );
        let last = self.last_event.load(Ordering::Relaxed);
        metric(
            "nudge_last_event_timestamp_seconds",
            "gauge",
            "When the last call was committed (0 before the first).",
            vec![format!(
                "nudge_last_event_timestamp_seconds {}",
                last as f64 / 1000.0
            )],
        );
        let timers = self.timers.load(Ordering::Relaxed);
        metric(
            "nudge_timers_pending",
            "gauge",
            "Timers set and not yet due (waits, deadlines, deferred sends, schedules; a timer a later change made stale counts until its time).",
            vec![format!("nudge_timers_pending {timers}")],
        );
        let gauges = [
            (
                "nudge_customers",
                "gauge",
                "Customers the engine has, in memory or in the store only.",
                &self.customers,
            ),
            (
                "nudge_customers_in_memory",
                "gauge",
                "Customers in memory; `[runtime] customers_in_memory` bounds them after each checkpoint.",
                &self.customers_in_memory,
            ),
            (
                "nudge_customers_read_back_total",
                "counter",
                "Customers read back from the store when a call, a timer or a lookup needed them, since the server started.",
                &self.customers_read_back,
            ),
            (
                "nudge_timers_in_memory",
                "gauge",
                "Pending timers in memory; with `[runtime] customers_in_memory`, those due an hour or more ahead wait in the store.",
                &self.timers_in_memory,
            ),
            (
                "nudge_identities",
                "gauge",
                "Identities (user ids, anonymous ids, addresses) the engine knows.",
                &self.identities,
            ),
            (
                "nudge_identities_in_memory",
                "gauge",
                "Identities whose texts are in memory; with `[runtime] customers_in_memory`, the others are looked up in the store by name.",
                &self.identities_in_memory,
            ),
            (
                "nudge_identities_read_back_total",
                "counter",
                "Identities read back from the store when a call or a lookup named them, since the server started.",
                &self.identities_read_back,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let v = value.load(Ordering::Relaxed);
            metric(name, kind, help, vec![format!("{name} {v}")]);
        }
        if let Ok(flows) = self.flows.lock() {
            out.push_str(&flows);
        }
        out
    }
}

/// The engine's counters as Prometheus families: per flow, since the store
/// began (the engine rebuilds them with its history). Reasons are stable
/// codes, so label values stay few.
pub fn flow_metrics(stats: &nudge_runtime::stats::Stats, releases: usize) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    };
    let per_flow = |name: &str, value: &dyn Fn(&nudge_runtime::stats::FlowStats) -> String| {
        stats
            .flows
            .iter()
            .map(|(flow, f)| format!("{name}{{flow={}}} {}", label_value(flow), value(f)))
            .collect::<Vec<_>>()
    };
    family(
        "nudge_build_info",
        "gauge",
        "The running nudge's version.",
        vec![format!(
            "nudge_build_info{{version={}}} 1",
            label_value(env!("CARGO_PKG_VERSION"))
        )],
    );
    family(
        "nudge_releases",
        "gauge",
        "Releases the engine runs: the first bundle, then one per deploy.",
        vec![format!("nudge_releases {releases}")],
    );
    family(
        "nudge_deploys_total",
        "counter",
        "Deploys applied to the store since it began (each adds a release).",
        vec![format!(
            "nudge_deploys_total {}",
            releases.saturating_sub(1)
        )],
    );
    family(
        "nudge_flow_entered_total",
        "counter",
        "Instances started, per flow.",
        per_flow("nudge_flow_entered_total", &|f| f.entered.to_string()),
    );
    family(
        "nudge_flow_not_entered_total",
        "counter",
        "Triggers the entry rule refused, per flow.",
        per_flow("nudge_flow_not_entered_total", &|f| {
            f.not_entered.to_string()
        }),
    );
    family(
        "nudge_flow_instances_active",
        "gauge",
        "Instances live now (waiting or running), per flow.",
        per_flow("nudge_flow_instances_active", &|f| f.active.to_string()),
    );
    family(
        "nudge_flow_completed_total",
        "counter",
        "Instances that ran their last step, per flow.",
        per_flow("nudge_flow_completed_total", &|f| f.completed.to_string()),
    );
    let mut exits = Vec::new();
    for (flow, f) in &stats.flows {
        for (code, n) in &f.exits {
            exits.push(format!(
                "nudge_flow_exited_total{{flow={},reason={}}} {n}",
                label_value(flow),
                label_value(code.code())
            ));
        }
    }
    family(
        "nudge_flow_exited_total",
        "counter",
        "Instances that ended before their last step, per flow and reason code (exit_on, exit_if, exit, merged).",
        exits,
    );
    let mut decisions = Vec::new();
    for (flow, f) in &stats.flows {
        for ((outcome, code), n) in &f.by_code {
            let reason = if code.is_empty() {
                String::new()
            } else {
                format!(",reason={}", label_value(code))
            };
            decisions.push(format!(
                "nudge_flow_decisions_total{{flow={},outcome={}{reason}}} {n}",
                label_value(flow),
                label_value(outcome)
            ));
        }
    }
    family(
        "nudge_flow_decisions_total",
        "counter",
        "Send decisions per flow, by outcome and reason code (see docs/runtime.md, Files out).",
        decisions,
    );
    let mut sends = Vec::new();
    for (flow, f) in &stats.flows {
        for (channel, n) in &f.sends {
            sends.push(format!(
                "nudge_flow_sends_total{{flow={},channel={}}} {n}",
                label_value(flow),
                label_value(channel)
            ));
        }
    }
    family(
        "nudge_flow_sends_total",
        "counter",
        "Messages handed to a channel, per flow and channel.",
        sends,
    );
    let mut conversions = Vec::new();
    for (flow, f) in &stats.flows {
        for (group, n) in [
            ("treated", f.conversions),
            ("holdout", f.holdout_conversions),
        ] {
            conversions.push(format!(
                "nudge_flow_conversions_total{{flow={},group=\"{group}\"}} {n}",
                label_value(flow)
            ));
        }
    }
    family(
        "nudge_flow_conversions_total",
        "counter",
        "Goals reached, per flow, by treated and held-out instances.",
        conversions,
    );
    let feedback = stats
        .feedback
        .iter()
        .map(|((kind, flow), n)| {
            format!(
                "nudge_feedback_total{{kind=\"{kind}\",flow={}}} {n}",
                label_value(flow)
            )
        })
        .collect();
    family(
        "nudge_feedback_total",
        "counter",
        "Feedback by kind (bounce, spam, unsubscribe, stop, click) and the flow its event names (empty: none of the project's).",
        feedback,
    );
    let mut revenue = Vec::new();
    for (flow, f) in &stats.flows {
        for (currency, amount) in &f.revenue_by_currency {
            revenue.push(format!(
                "nudge_flow_revenue_total{{flow={},currency={}}} {}",
                label_value(flow),
                label_value(currency),
                amount.normalize()
            ));
        }
    }
    family(
        "nudge_flow_revenue_total",
        "counter",
        "Revenue of treated conversions, per flow and the goal event's currency (empty: the event gave none); currencies are never added together.",
        revenue,
    );
    out
}

/// Live instances by flow and step as a Prometheus family.
pub fn waiting_metrics(by_step: &BTreeMap<(String, String), u64>) -> String {
    let mut out = String::from(
        "# HELP nudge_flow_instances_waiting Live instances by flow and the step they wait at (its label, or `step N (what)`).\n# TYPE nudge_flow_instances_waiting gauge\n",
    );
    for ((flow, step), n) in by_step {
        out.push_str(&format!(
            "nudge_flow_instances_waiting{{flow={},step={}}} {n}\n",
            label_value(flow),
            label_value(step)
        ));
    }
    out
}

/// The event of a track call line (empty when it names none); `None` for
/// other calls. This runs on the engine thread for every call, so the usual
/// line (compact, as the HTTP side writes it, with `"type"` and `"event"`
/// keys once each and no escapes) is read without a JSON parser; anything
/// else is parsed.
pub fn track_event(line: &str) -> Option<std::borrow::Cow<'_, str>> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        event: Option<std::borrow::Cow<'a, str>>,
    }
    if !line.contains("track") {
        return None;
    }
    let once = |key: &str| line.matches(key).count() == 1;
    if !line.contains('\\') && once("\"type\":") && once("\"event\":\"") {
        // A key's quotes cannot occur inside a string without escapes, so
        // each key found once is the envelope's own or a nested object's;
        // a nested one would make the call's own missing, and such a call
        // is refused before it is counted.
        if !line.contains("\"type\":\"track\"") {
            return None;
        }
        let rest = &line[line.find("\"event\":\"")? + "\"event\":\"".len()..];
        return Some(std::borrow::Cow::Borrowed(&rest[..rest.find('"')?]));
    }
    let head = serde_json::from_str::<Head<'_>>(line).ok()?;
    if head.kind.as_deref() != Some("track") {
        return None;
    }
    Some(head.event.unwrap_or_default())
}

/// The label of track calls for events the project does not declare.
pub const OTHER_EVENTS: &str = "other";

/// The wire names of the events `bundle` declares.
pub fn declared_events(bundle: &nudge_bytecode::Bundle) -> Vec<String> {
    bundle
        .schemas
        .iter()
        .filter(|s| s.kind == nudge_bytecode::SchemaKind::Event)
        .filter_map(|s| s.wire.clone())
        .collect()
}

/// A Prometheus label value, quoted and escaped.
pub fn label_value(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_counters_are_labelled_by_code_and_currency() {
        use nudge_runtime::record::ExitReason;
        let mut stats = nudge_runtime::stats::Stats::default();
        let cart = stats.flow_mut("cart");
        cart.exits.insert(ExitReason::ExitOn, 3);
        cart.exits.insert(ExitReason::Merged, 1);
        cart.revenue_by_currency
            .insert("EUR".into(), "12.50".parse().unwrap());
        cart.revenue_by_currency
            .insert("USD".into(), "7".parse().unwrap());
        let text = flow_metrics(&stats, 3);
        assert!(text.contains("\nnudge_deploys_total 2\n"), "{text}");
        for line in [
            "nudge_flow_revenue_total{flow=\"cart\",currency=\"EUR\"} 12.5",
            "nudge_flow_revenue_total{flow=\"cart\",currency=\"USD\"} 7",
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "{line} in {text}");
        }
        assert!(
            text.contains("# TYPE nudge_flow_exited_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("\nnudge_flow_exited_total{flow=\"cart\",reason=\"exit_on\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("\nnudge_flow_exited_total{flow=\"cart\",reason=\"merged\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn dead_letter_reasons_have_stable_codes() {
        for (reason, code) in [
            ("not UTF-8 text: invalid utf-8 sequence", "not_utf8"),
            ("malformed JSON at column 2", "malformed_json"),
            ("expected a JSON object, found an array", "malformed_json"),
            (
                "`timestamp` is given twice: a call's envelope keys must each appear once",
                "duplicate_key",
            ),
            (
                "item 3 of the batch is 40000 bytes, over the limit of 32 KB for one call",
                "too_large",
            ),
            ("missing `timestamp`", "invalid_envelope"),
            (
                "the call names no customer: give `userId` or `anonymousId`",
                "invalid_envelope",
            ),
            (
                "unsupported call type `nope`: expected track",
                "invalid_envelope",
            ),
        ] {
            assert_eq!(crate::dead::code(reason), code, "{reason}");
            assert!(crate::dead::CODES.contains(&code));
        }
    }

    #[test]
    fn the_commit_histogram_counts_each_commit_in_its_bucket_and_above() {
        let m = Metrics::default();
        m.commit(Duration::from_micros(300));
        m.commit(Duration::from_millis(7));
        m.commit(Duration::from_secs(9));
        let text = m.render();
        for line in [
            "nudge_commit_seconds_bucket{le=\"0.0005\"} 1",
            "nudge_commit_seconds_bucket{le=\"0.005\"} 1",
            "nudge_commit_seconds_bucket{le=\"0.01\"} 2",
            "nudge_commit_seconds_bucket{le=\"5\"} 2",
            "nudge_commit_seconds_bucket{le=\"+Inf\"} 3",
            "nudge_commit_seconds_count 3",
            "# TYPE nudge_commit_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn a_track_call_is_read_for_its_event_with_or_without_a_parse() {
        for (line, event) in [
            (
                r#"{"type":"track","event":"Order Completed","userId":"u"}"#,
                Some("Order Completed"),
            ),
            (
                r#"{"event":"A","type":"track","properties":{"x":1}}"#,
                Some("A"),
            ),
            // Spaced, escaped or nested: parsed, with the same answers.
            (r#"{"type": "track", "event": "A"}"#, Some("A")),
            (
                r#"{"type":"track","event":"Say \"hi\""}"#,
                Some("Say \"hi\""),
            ),
            (
                r#"{"type":"track","event":"A","properties":{"type":"b"}}"#,
                Some("A"),
            ),
            (
                r#"{"type":"track","event":"A","properties":{"event":"B"}}"#,
                Some("A"),
            ),
            (r#"{"type":"identify","traits":{"event":"track"}}"#, None),
            (r#"{"type":"page","name":"track"}"#, None),
            (r#"{"type":"identify"}"#, None),
        ] {
            assert_eq!(track_event(line).as_deref(), event, "{line}");
        }
    }
}
