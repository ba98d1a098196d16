//! The live host of `nudge serve`: the engine with its store, plugins,
//! feeds and alerts, on the wall clock (or the calls' own clock). One
//! thread owns it; the HTTP side hands it calls and asks it questions.
//! Each group of calls is applied and committed with its send intents in
//! one transaction before it is answered, then delivered: the same ledger
//! path as `nudge run`, so an answer means the calls are durable.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use nudge_bytecode::{Bundle, Channel};
use nudge_channels::PluginSpec;
use nudge_runtime::engine::{ClockStep, Config, Engine};
use nudge_runtime::replay::DeadLetter;
use nudge_store::{Batch, Intent, Mark, NewCall, SourcePos, Store, StoreError};
use serde_json::{Value, json};

use crate::alerts;
use crate::durable::{self, Bundles, Captured, Code, LedgerSink, Report};
use crate::feeds::{Feeds, write_dead_letters};
use crate::metrics::{Metrics, declared_events, flow_metrics, waiting_metrics};
use crate::retry;
use crate::setup::{SetupError, audience_plugin, open_store};

/// The store's name for calls that came through `nudge serve`.
pub const SOURCE: &str = "nudge serve";

/// An answer to an operator's request: an HTTP status and a JSON body.
pub type Answer = (u16, Value);

/// Compiles the project again (on reload): its bundle, or its problems as text.
pub type Recompile = Box<dyn Fn() -> Result<Bundle, String>>;

/// What a live host is opened with.
pub struct Opening<'a> {
    /// The project's root: its `.nudge` folder and `nudge.toml`.
    pub root: &'a Path,
    /// The project's settings.
    pub settings: &'a crate::config::Config,
    /// Where sends go when no plugin takes their channel.
    pub outbox: PathBuf,
    /// The channel plugins.
    pub routes: Vec<(Channel, PluginSpec)>,
    /// The engine's configuration.
    pub config: Config,
    /// The store file (`:memory:` for none kept).
    pub store: PathBuf,
    /// Whether the alerts count from the wall clock's now (serving HTTP on
    /// the wall clock), else from the engine's clock.
    pub wall: bool,
}

/// Reports a store error with its hint, on the server's log.
fn report(e: &StoreError) {
    eprintln!("error: {e}");
    if let Some(h) = e.hint() {
        eprintln!("help: {h}");
    }
}

/// The engine with its store, plugins and feeds.
pub struct Live<'b> {
    /// The store calls, sends and checkpoints are committed to.
    pub store: Store,
    /// The engine, whose effects go to the ledger and the feeds.
    pub engine: Engine<'b, LedgerSink<Feeds>>,
    /// The code served now, and where reloaded bundles are kept.
    code: Code<'b>,
    /// Compiles the project again, on reload.
    recompile: Recompile,
    captured: Captured,
    router: durable::Router,
    /// Device tokens the push plugins found invalid, to remove from profiles.
    invalid_tokens: Vec<nudge_channels::InvalidTokens>,
    /// Where the calls of this server go in the store, and the last line's number.
    pub source: SourcePos,
    /// Delivery results waiting for the next commit.
    marks: Vec<Mark>,
    /// Committed sends not yet handed to their plugins.
    to_deliver: Vec<Intent>,
    /// Sends whose delivery failed, waiting for their next round.
    retries: retry::Retries,
    /// A wall-clock advance not yet in the history: stored before the next
    /// lines, so a rebuild applies them at the same clock.
    until: Option<i64>,
    report: Report,
    dead: BufWriter<File>,
    dead_path: PathBuf,
    /// The counters, shared with the HTTP side.
    pub metrics: Arc<Metrics>,
    /// The send circuit breaker: the most sends one call or one clock step
    /// may make before sending pauses.
    max_sends: usize,
    /// Why sending is paused, while it is.
    paused: Option<String>,
    /// Committed sends held while sending is paused, counted by channel:
    /// they are pending in the ledger, which a release reads them back
    /// from a page at a time.
    held: durable::Held,
    /// The release under way, if one is.
    releasing: Option<Releasing>,
    /// The declared alerts and where they are notified; `None` without any.
    alerts: Option<alerts::Watch>,
    /// The dead letters of every stored call, for the next checkpoint.
    stored_dead: Vec<DeadLetter>,
    /// How many of `stored_dead` the store holds.
    dead_written: usize,
    /// Calls stored since the last checkpoint, and how many make the next one due.
    since_checkpoint: u64,
    checkpoint_every: u64,
    /// The most customers kept in memory after each checkpoint (`[runtime]
    /// customers_in_memory`); `None` keeps every one.
    customers_in_memory: Option<usize>,
    /// `[store] keep_calls` in milliseconds: older calls leave the log with
    /// each checkpoint that covers them.
    keep_calls: Option<i64>,
    /// The `[alerts_webhook]` the alerts were set up with, as written, to
    /// tell on reload whether it changed.
    alerts_webhook: String,
    /// The project's root, whose nudge.toml a reload reads again.
    root: PathBuf,
}

/// A release of held sends under way: the ledger's pending sends from
/// after `after` through `through`, a page at a time.
struct Releasing {
    /// Where the last page delivered ended.
    after: Option<nudge_store::PendingAfter>,
    /// The last send pending when the release began.
    through: nudge_store::PendingAfter,
    /// Sends that were waiting for another round then: not the release's.
    retrying: HashSet<String>,
    /// The held sends not delivered yet, by channel.
    left: durable::Held,
}

impl<'b> Live<'b> {
    /// Opens the project's store, restores the engine from it (its
    /// checkpoint and the calls after it), stores what the restart decided
    /// (a deploy, the results of sends left pending), and is ready for calls.
    pub fn open(
        bundle: &'b Bundle,
        bundles: &'b Bundles,
        opening: Opening<'_>,
        metrics: Arc<Metrics>,
        recompile: Recompile,
    ) -> Result<Live<'b>, SetupError> {
        let Opening {
            root,
            settings,
            outbox,
            routes,
            config,
            store: store_path,
            wall,
        } = opening;
        let state = root.join(".nudge");
        let retry_first = settings
            .retry_backoff()
            .map_err(SetupError::new)?
            .map_or(retry::FIRST, |s| Duration::from_secs(s.unsigned_abs()));
        let (mut store, mut router) = open_store(&store_path, false, &config, &outbox, &routes)?;
        // Checked when nudge.toml was read.
        let max_sends = settings
            .max_sends_per_step()
            .unwrap_or(crate::config::DEFAULT_MAX_SENDS_PER_STEP);
        router.hold_resends_over(max_sends);
        let (mut feeds, start) =
            Feeds::open(&store, &state.join("trace.jsonl"), &state.join("audiences"))
                .map_err(SetupError::new)?;
        if let Some(plugin) = audience_plugin(settings)? {
            feeds.sync_audiences(plugin);
        }
        let code = Code {
            current: bundle,
            bundles,
        };
        let initial = code.initial(&store)?;
        let (sink, captured) = LedgerSink::new(feeds);
        let mut engine = Engine::new(initial, sink, config, i64::MIN);
        let customers_in_memory = settings.customers_in_memory();
        durable::bound_memory(&store, &mut engine, customers_in_memory)?;
        let source = store.source(SOURCE)?;
        let mut report = Report::default();
        let mut history = Vec::new();
        let mut batch = Batch::default();
        let resumed = durable::resume(
            &mut store,
            &mut engine,
            code,
            durable::Resume {
                captured: &captured,
                router: &mut router,
                source: &source,
                start: start.as_ref(),
                page: durable::part_timers(customers_in_memory),
            },
            &mut report,
            &mut history,
            &mut batch,
        )?;
        if let Some(d) = &resumed.deployed {
            eprintln!(
                "note: the project changed since the store was last served; deployed it:\n{d}"
            );
        }
        // The deploy (if any) and the delivery results of pending sends are
        // stored before anything else happens.
        batch.meta.push(("clock", engine.now().to_string()));
        durable::no_page_fault(store.path(), &engine)?;
        store.commit(&mut batch)?;
        let mut dead_written = durable::stored_dead(start.as_ref());
        // A deploy arming new triggers for every customer is committed in
        // parts before anything is served.
        if let Some(budget) = customers_in_memory {
            durable::commit_arming(
                &mut store,
                &mut engine,
                budget,
                &mut Vec::new(),
                &history,
                &mut dead_written,
            )?;
        }
        let marks = std::mem::take(&mut batch.marks);
        let dead_path = state.join("dead_letters.jsonl");
        let dead = write_dead_letters(&dead_path, &history)
            .and_then(|()| {
                OpenOptions::new()
                    .append(true)
                    .open(&dead_path)
                    .map_err(|e| format!("cannot open {}: {e}", dead_path.display()))
            })
            .map_err(SetupError::new)?;
        let mut live = Live {
            store,
            engine,
            code,
            recompile,
            captured,
            router,
            invalid_tokens: routes
                .iter()
                .filter_map(|(_, spec)| match spec {
                    nudge_channels::PluginSpec::Fcm(c) => Some(c.invalid_tokens.clone()),
                    _ => None,
                })
                .collect(),
            source,
            marks,
            to_deliver: Vec::new(),
            retries: retry::Retries::new(retry_first),
            until: None,
            report,
            dead: BufWriter::new(dead),
            dead_path,
            metrics,
            max_sends,
            paused: None,
            held: durable::Held::default(),
            releasing: None,
            alerts: None,
            stored_dead: history,
            dead_written,
            since_checkpoint: 0,
            checkpoint_every: settings.checkpoint_every(),
            customers_in_memory,
            keep_calls: settings.keep_calls_ms(),
            alerts_webhook: String::new(),
            root: root.to_path_buf(),
        };
        live.metrics.watch_events(declared_events(bundle));
        // Checked when nudge.toml was read.
        let rules = settings.alert_rules().unwrap_or_default();
        live.set_alerts(rules, settings);
        // Counting starts now: on the wall clock, the time the server was
        // down was not observed; on the calls' clock, nothing was missed
        // beyond what the last run counted and did not keep.
        let counting_from = if wall {
            chrono::Utc::now().timestamp_millis()
        } else {
            live.engine.now()
        };
        live.restore_alerts(counting_from);
        if !resumed.held.is_empty() {
            // A flood held before a restart stays held after it.
            live.trip(format!(
                "{} sends were pending when the server started",
                resumed.held.total()
            ));
            live.held = resumed.held;
            live.metrics
                .held
                .store(live.held.total(), Ordering::Relaxed);
        }
        Ok(live)
    }

    /// Watches `rules`, notifying through the settings' `[alerts_webhook]`.
    /// Alerts watched before keep their history, and their state while
    /// their name stays (notifications queued before are posted first).
    fn set_alerts(&mut self, rules: Vec<alerts::Rule>, settings: &crate::config::Config) {
        self.metrics.watch_events(alerts::watched_events(&rules));
        self.alerts_webhook = format!("{:?}", settings.alerts_webhook);
        let now = self.engine.now();
        let empty = rules.is_empty();
        if let Some(watch) = self.alerts.as_mut() {
            // Removed alerts that were firing resolve: kept, then posted.
            if let Some(write) = watch.replace(rules, settings.alerts_webhook.as_ref(), now)
                && !self.metrics.broken.load(Ordering::Relaxed)
                && let Err(e) = self.store.commit(&mut Batch {
                    alerts: Some(write),
                    ..Batch::default()
                })
            {
                eprintln!("warning: the alerts' state could not be stored ({e})");
            }
            watch.send();
            if empty && let Some(old) = self.alerts.take() {
                self.keep_alerts(old);
            }
        } else if !empty {
            self.alerts = alerts::Watch::new(rules, settings.alerts_webhook.as_ref());
        }
        self.show_alerts(true);
    }

    /// Puts each alert's state on `/metrics`; `all` drops alerts no longer
    /// declared.
    fn show_alerts(&self, all: bool) {
        if let Ok(mut firing) = self.metrics.alerts_firing.lock() {
            if all {
                firing.clear();
            }
            for (rule, on) in self.alerts.iter().flat_map(|w| w.firing()) {
                firing.insert(rule.name.clone(), on);
            }
        }
    }

    /// Takes up the alerts' state an earlier run kept in the store; `now`
    /// is when this run's counting started. A state that cannot be read
    /// is reported and the alerts start afresh, not firing.
    fn restore_alerts(&mut self, now: i64) {
        let Some(watch) = self.alerts.as_mut() else {
            return;
        };
        let restored = self
            .store
            .alerts()
            .map_err(|e| e.to_string())
            .and_then(|read| read.map(|r| watch.restore(&r, now)).transpose());
        match restored {
            Ok(None) => {}
            Ok(Some(r)) => {
                for name in &r.firing {
                    eprintln!("note: alert {name} was firing when the server stopped; it still is");
                }
                if r.requeued > 0 {
                    eprintln!(
                        "note: {} alert notifications not known to be posted are posted again",
                        r.requeued
                    );
                }
                if r.bad_samples > 0 {
                    eprintln!(
                        "warning: {} stored samples of the alerts' counters cannot be read and are left out",
                        r.bad_samples
                    );
                }
            }
            Err(e) => eprintln!(
                "warning: the alerts' state in the store cannot be read ({e}); the alerts start again, not firing"
            ),
        }
        if let Some(watch) = self.alerts.as_mut() {
            self.metrics
                .alerts_unposted
                .store(watch.unposted() as u64, Ordering::Relaxed);
            watch.send();
        }
        self.show_alerts(true);
    }

    /// Keeps the state of `watch`, which stops, in the store.
    fn keep_alerts(&mut self, watch: alerts::Watch) {
        let write = watch.finish(self.engine.now(), &self.metrics.alert_counters());
        if let Some(write) = write
            && !self.metrics.broken.load(Ordering::Relaxed)
            && let Err(e) = self.store.commit(&mut Batch {
                alerts: Some(write),
                ..Batch::default()
            })
        {
            eprintln!(
                "warning: the alerts' state could not be stored ({e}); after a restart they may notify again"
            );
        }
    }

    /// Reads `[[alerts]]` and `[alerts_webhook]` again; alerts whose
    /// settings did not change keep their state. Says what happened, or
    /// why nothing could.
    fn reload_alerts(&mut self) -> Result<&'static str, String> {
        // The error names the file.
        let settings = crate::config::Config::load(&self.root).map_err(|e| e.to_string())?;
        let rules = settings
            .alert_rules()
            .map_err(|e| format!("nudge.toml: {e}"))?;
        // The catalogue file is read again with the settings; a bad row
        // keeps the catalogue read before.
        let catalogue = settings
            .catalogue()
            .map_err(|e| format!("nudge.toml: {e}"))?;
        if **self.engine.catalogue() != catalogue {
            eprintln!(
                "note: [catalogue] read again: {} products in the file",
                catalogue.products.len()
            );
            self.engine.set_catalogue(std::sync::Arc::new(catalogue));
        }
        let before: Vec<alerts::Rule> = self
            .alerts
            .iter()
            .flat_map(|w| w.firing().map(|(r, _)| r.clone()))
            .collect();
        if before == rules && self.alerts_webhook == format!("{:?}", settings.alerts_webhook) {
            return Ok("unchanged");
        }
        eprintln!("note: [[alerts]] read again: {} declared", rules.len());
        self.set_alerts(rules, &settings);
        Ok("reloaded")
    }

    /// Pauses sending: every send committed from now on is held until
    /// [`Live::release`].
    fn trip(&mut self, reason: String) {
        if self.paused.is_some() {
            return;
        }
        eprintln!(
            "alert: sending paused by the circuit breaker (max_sends_per_step = {}): {reason}; sends are held in the ledger until POST /admin/release-sends",
            self.max_sends
        );
        self.metrics.trips.fetch_add(1, Ordering::Relaxed);
        self.metrics.paused.store(true, Ordering::Relaxed);
        self.paused = Some(reason);
    }

    /// The operator's release: sending resumes, and the held sends go out
    /// a page at a time between requests (see [`Live::release_page`]).
    pub fn release(&mut self) -> Answer {
        if self.paused.is_none() {
            return (200, json!({"paused": false, "released": 0}));
        }
        if self.metrics.broken.load(Ordering::Relaxed) {
            // Their results could not be stored: they stay held.
            return (
                503,
                json!({"error": "the store failed earlier: the held sends stay held"}),
            );
        }
        match self.start_release() {
            Ok(released) => {
                let reason = self.paused.take().unwrap_or_default();
                self.metrics.paused.store(false, Ordering::Relaxed);
                eprintln!("note: sending resumed by the operator; {released} held sends released");
                self.release_page();
                (
                    200,
                    json!({"paused": false, "released": released, "reason": reason}),
                )
            }
            Err(e) => {
                self.broken(&e);
                (
                    503,
                    json!({"error": format!("the held sends could not be released: {e}")}),
                )
            }
        }
    }

    /// Marks the sends pending in the ledger now, other than those waiting
    /// for another round, for delivery by [`Live::release_page`]; returns
    /// how many the breaker held.
    fn start_release(&mut self) -> Result<u64, StoreError> {
        // Once what waits for delivery is delivered and its results are
        // stored, the ledger's pending sends are the held ones and those
        // waiting for another round (or for a restart, past the retries'
        // limit, which a release may as well try now). Sends committed
        // after this are delivered as they come: the release stops before
        // them.
        self.deliver();
        self.store_marks()?;
        let through = self.store.pending_last()?;
        let held = std::mem::take(&mut self.held);
        let released = held.total();
        let mut left = held;
        if let Some(earlier) = self.releasing.take() {
            // A release under way starts again from the first pending
            // send: what it delivered is no longer pending.
            for (channel, n) in earlier.left.channels() {
                left.add(channel, n);
            }
        }
        if let Some(through) = through {
            self.releasing = Some(Releasing {
                after: None,
                through,
                retrying: self.retries.keys().map(str::to_string).collect(),
                left,
            });
        }
        self.count_held();
        Ok(released)
    }

    /// Delivers the next page of a release and stores its results; the
    /// serve loop calls it between requests until none is left, so a
    /// release of a flood does not stop calls from being taken.
    pub fn release_page(&mut self) {
        let Some(mut r) = self.releasing.take() else {
            return;
        };
        if self.metrics.broken.load(Ordering::Relaxed) {
            // Left pending in the ledger, as the last words say.
            self.releasing = Some(r);
            return;
        }
        let page = durable::part_timers(self.customers_in_memory);
        let read = match self.store.pending_page(r.after, Some(r.through), page) {
            Ok(read) => read,
            Err(e) => {
                self.broken(&e);
                self.releasing = Some(r);
                return;
            }
        };
        if let Some(read) = read {
            let last_page = read.intents.len() < page;
            r.after = Some(read.last);
            let held: Vec<Intent> = read
                .intents
                .into_iter()
                .filter(|i| !r.retrying.contains(&i.message.idempotency_key))
                .collect();
            r.left.release(&held);
            self.to_deliver.extend(held);
            if !last_page {
                self.releasing = Some(r);
            }
            self.deliver();
            if let Err(e) = self.store_marks() {
                self.broken(&e);
            }
        }
        self.count_held();
    }

    /// Whether a release has pages left to deliver (none is delivered once
    /// the store failed: they stay pending).
    pub fn releasing(&self) -> bool {
        self.releasing.is_some() && !self.metrics.broken.load(Ordering::Relaxed)
    }

    /// Publishes how many sends are held, or released and not yet out.
    fn count_held(&self) {
        let left = self.releasing.as_ref().map_or(0, |r| r.left.total());
        self.metrics
            .held
            .store(self.held.total() + left, Ordering::Relaxed);
    }

    /// Stores the delivery results made since the last commit, in a
    /// commit of their own.
    fn store_marks(&mut self) -> Result<(), StoreError> {
        if self.marks.is_empty() {
            return Ok(());
        }
        self.store.commit(&mut Batch {
            marks: std::mem::take(&mut self.marks),
            ..Batch::default()
        })
    }

    /// Trips the breaker when one step made more sends than allowed.
    fn check_step(&mut self, made: usize, step: impl FnOnce() -> String) {
        if made > self.max_sends {
            let reason = format!("{} made {made} sends", step());
            self.trip(reason);
        }
    }

    /// Applies `lines` and commits them with their sends in one
    /// transaction; [`Live::deliver`] sends them after.
    pub fn ingest<'l>(
        &mut self,
        lines: impl IntoIterator<Item = &'l String>,
    ) -> Result<(), StoreError> {
        let mut batch = Batch {
            marks: std::mem::take(&mut self.marks),
            ..Batch::default()
        };
        if let Some(t) = self.until.take() {
            batch.calls.push(NewCall::Until(t));
        }
        let mut dead = Vec::new();
        let mut count = 0;
        let applied_at = chrono::Utc::now().timestamp_millis();
        for line in lines {
            count += 1;
            self.source.line += 1;
            let before = self.captured.len();
            let refused = dead.len();
            durable::apply_line(
                &mut self.engine,
                line.as_bytes(),
                self.source.line,
                &mut dead,
            );
            if dead.len() == refused {
                self.metrics.count_event(line, applied_at);
            }
            let made = self.captured.len().saturating_sub(before);
            let at = self.source.line;
            self.check_step(made, || format!("call {at} of `nudge serve`"));
            batch.calls.push(NewCall::Line {
                source: self.source.id,
                line: self.source.line,
                body: line.as_bytes(),
            });
        }
        batch.source = Some(self.source.clone());
        self.stored_dead.extend(dead.iter().cloned());
        self.since_checkpoint += count;
        if durable::checkpoint_due(
            self.since_checkpoint,
            self.checkpoint_every,
            self.customers_in_memory,
            &self.engine,
        ) {
            batch.checkpoint = Some(self.checkpoint()?);
            batch.compact = durable::compaction(self.keep_calls, self.engine.now());
        }
        self.commit(&mut batch)?;
        self.metrics.events.fetch_add(count, Ordering::Relaxed);
        self.metrics
            .last_event
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        let counters = self.engine.counters();
        self.metrics
            .dropped
            .store(counters.dropped, Ordering::Relaxed);
        self.metrics
            .undeclared
            .store(counters.undeclared, Ordering::Relaxed);
        self.metrics
            .groups
            .store(counters.groups, Ordering::Relaxed);
        self.write_dead(&dead);
        Ok(())
    }

    /// Compiles the project again and deploys it: new instances start on the
    /// new code, in-flight ones stay on theirs unless carried by step label.
    /// The deploy is durable before the answer.
    pub fn reload(&mut self) -> Answer {
        if self.metrics.broken.load(Ordering::Relaxed) {
            return (
                503,
                json!({"error": "the store failed earlier; restart the server"}),
            );
        }
        let alerts = match self.reload_alerts() {
            Ok(done) => done,
            Err(e) => {
                eprintln!("reload refused: {e}");
                return (
                    422,
                    json!({"error": e, "help": "fix nudge.toml; the alerts and code deployed before keep running"}),
                );
            }
        };
        let (status, mut body) = self.redeploy();
        if let Some(fields) = body.as_object_mut() {
            fields.insert("alerts".into(), json!(alerts));
        }
        (status, body)
    }

    /// The code half of [`Live::reload`].
    fn redeploy(&mut self) -> Answer {
        let bundle = match (self.recompile)() {
            Ok(b) => b,
            Err(problems) => {
                eprintln!("reload refused: the project does not compile:\n{problems}");
                return (
                    422,
                    json!({"error": "the project does not compile; still serving the code deployed before", "problems": problems}),
                );
            }
        };
        let bytes = nudge_store::portable(&bundle);
        if bytes == nudge_store::portable(self.code.current) {
            return (
                200,
                json!({"deployed": false, "reason": "the project did not change"}),
            );
        }
        let bundle: &'b Bundle = self.code.bundles.alloc(bundle);
        let deployed = match self.engine.deploy(bundle, self.code.bundles) {
            Ok(d) => d,
            Err(e) => {
                // A stored customer that could not be read back leaves the
                // deploy half done: the server stops, as on a failed commit.
                if let Err(fault) = durable::no_page_fault(self.store.path(), &self.engine) {
                    self.broken(&fault);
                    return (
                        503,
                        json!({"error": format!("the deploy could not read the stored state: {fault}")}),
                    );
                }
                eprintln!("reload refused: {e}");
                return (
                    409,
                    json!({"error": e.to_string(), "help": "change the project as each problem says; the code deployed before keeps serving"}),
                );
            }
        };
        self.code.current = bundle;
        self.metrics.watch_events(declared_events(bundle));
        let mut batch = Batch {
            marks: std::mem::take(&mut self.marks),
            ..Batch::default()
        };
        batch.calls.extend(self.until.take().map(NewCall::Until));
        batch.calls.push(NewCall::Deploy(bytes));
        // A deploy that arms new triggers for every customer does so in
        // parts, each committed with a checkpoint that lets the customers
        // it read back go; one that held customers beyond the budget as
        // rows takes a checkpoint with the deploy.
        loop {
            let arming = self.engine.arming();
            if arming {
                let _ = self
                    .engine
                    .arm_part(self.customers_in_memory.unwrap_or(usize::MAX));
            }
            let taken = if arming
                || durable::checkpoint_due(0, 0, self.customers_in_memory, &self.engine)
            {
                self.checkpoint().map(|c| batch.checkpoint = Some(c))
            } else {
                Ok(())
            };
            if let Err(e) = taken.and_then(|()| self.commit(&mut batch)) {
                // The engine runs code the store does not know of: stop taking calls.
                self.broken(&e);
                return (
                    503,
                    json!({"error": format!("the deploy could not be stored: {e}")}),
                );
            }
            if !self.engine.arming() {
                break;
            }
            batch = Batch::default();
        }
        self.deliver();
        eprintln!("deployed release {}:\n{deployed}", deployed.release);
        (200, json!({"deployed": true, "report": deployed}))
    }

    /// Moves the clock to `now`, firing due timers; their sends are made
    /// durable (with the clock mark) before they are delivered.
    pub fn tick(&mut self, now: i64) -> Result<(), StoreError> {
        let lag = now.saturating_sub(self.engine.now()).max(0);
        self.metrics.lag.store(lag, Ordering::Relaxed);
        if now <= self.engine.now() {
            return Ok(());
        }
        // A step after downtime may fire every customer's timer: it is
        // committed in parts, each with its sends and, with a budget, a
        // checkpoint that lets its customers go (see `durable::Clock`).
        let step = ClockStep::Until(now);
        let timers = durable::part_timers(self.customers_in_memory);
        let before = self.captured.len();
        let to_deliver = self.to_deliver.len();
        let mut made = 0;
        while let Some(through) = self.engine.advance_part(step, timers) {
            made += self.captured.len();
            let mut batch = Batch {
                marks: std::mem::take(&mut self.marks),
                ..Batch::default()
            };
            batch.calls.extend(self.until.take().map(NewCall::Until));
            batch.calls.push(NewCall::Part { step, through });
            if durable::checkpoint_due(0, 0, self.customers_in_memory, &self.engine) {
                batch.checkpoint = Some(self.checkpoint()?);
            }
            self.commit_as(&mut batch, false)?;
            if self.paused.is_none() && made.saturating_sub(before) > self.max_sends {
                // Over the limit already: the step's sends will be held,
                // so they are counted as they come instead of waiting in
                // memory for the step's end, where the breaker trips.
                let parts = self
                    .to_deliver
                    .split_off(to_deliver.min(self.to_deliver.len()));
                self.held.hold(&parts);
                self.count_held();
            }
        }
        let made = (made + self.captured.len()).saturating_sub(before);
        let paused = self.paused.is_some();
        self.check_step(made, || {
            let to = chrono::DateTime::from_timestamp_millis(now).map_or_else(
                || now.to_string(),
                |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            );
            format!("the clock step to {to}")
        });
        if !paused && self.paused.is_some() {
            // The parts committed before the step went over the limit are
            // held with the rest of it: none of a flood goes out.
            let parts = self
                .to_deliver
                .split_off(to_deliver.min(self.to_deliver.len()));
            self.held.hold(&parts);
            self.count_held();
        }
        self.until = Some(now);
        if self.captured.is_empty() && self.marks.is_empty() {
            return Ok(());
        }
        let mut batch = Batch {
            marks: std::mem::take(&mut self.marks),
            ..Batch::default()
        };
        batch.calls.extend(self.until.take().map(NewCall::Until));
        self.commit(&mut batch)
    }

    /// Commits `batch` with the engine's new sends; they wait in
    /// `to_deliver` until [`Live::deliver`], so a request can be answered
    /// as soon as its calls are durable.
    fn commit(&mut self, batch: &mut Batch) -> Result<(), StoreError> {
        self.commit_as(batch, true)
    }

    /// [`Live::commit`]; a part of a clock step keeps the timers it stored
    /// (`timers_go` false): those due by the step's end would be read back
    /// by each part after it.
    fn commit_as(&mut self, batch: &mut Batch, timers_go: bool) -> Result<(), StoreError> {
        batch.meta.push(("clock", self.engine.now().to_string()));
        let started = Instant::now();
        let with_state = batch.checkpoint.is_some();
        let timers = batch.checkpoint.as_ref().and_then(durable::in_store);
        durable::no_page_fault(self.store.path(), &self.engine)?;
        let intents = durable::commit_captured(&mut self.store, &self.captured, batch)
            .inspect_err(|_| {
                if with_state {
                    self.engine.retake_all();
                }
            })?;
        if with_state && let Some(budget) = self.customers_in_memory {
            // The checkpoint is committed: what it wrote can be read back.
            self.engine.let_go(budget, &[]);
        }
        if let Some(stored) = timers
            && timers_go
        {
            stored.let_go(&mut self.engine);
        }
        self.metrics.commit(started.elapsed());
        self.marks.append(&mut batch.marks);
        if self.paused.is_some() {
            self.held.hold(&intents);
            self.count_held();
        } else {
            self.to_deliver.extend(intents);
        }
        Ok(())
    }

    /// Delivers what the last commits made durable; the results ride on the
    /// next commit.
    /// Failed sends that may be retried come back in later rounds (see
    /// [`retry`]); the trace and feeds are flushed so readers see them.
    pub fn deliver(&mut self) {
        let now = Instant::now();
        let mut work: Vec<(Intent, u32)> = std::mem::take(&mut self.to_deliver)
            .into_iter()
            .map(|i| (i, 0))
            .collect();
        work.extend(self.retries.due(now));
        if !work.is_empty() {
            let (intents, rounds): (Vec<Intent>, Vec<u32>) = work.into_iter().unzip();
            let first = self.marks.len();
            let sent = durable::deliver(
                &mut self.router,
                &intents,
                &mut self.marks,
                &mut self.report,
            );
            if let Ok(mut sends) = self.metrics.sends.lock() {
                for (channel, outcome) in &sent {
                    *sends
                        .entry((channel.clone(), outcome.as_str()))
                        .or_default() += 1;
                }
            }
            if let Ok(mut providers) = self.metrics.providers.lock() {
                for (channel, outcome) in &sent {
                    if *outcome != nudge_channels::Delivery::Delivered {
                        let provider = self.router.provider(channel).to_string();
                        providers.entry(provider).or_default().failed += 1;
                    }
                }
            }
            let retries = &mut self.retries;
            let marks = self.marks.get_mut(first..).unwrap_or_default();
            // Every attempt's result goes to the trace: a retry's record
            // follows the failure before it, and the last one stands.
            let mut records = Vec::with_capacity(intents.len());
            for ((intent, round), mark) in intents.into_iter().zip(rounds).zip(marks) {
                records.push(durable::delivery_record(&self.router, &intent, mark));
                let Mark::Failed {
                    retryable: retryable @ true,
                    reason,
                    ..
                } = mark
                else {
                    continue;
                };
                let provider = self.router.provider(&intent.message.channel).to_string();
                match retries.failed(intent, round, now) {
                    retry::Next::RetryAt(_) => {
                        self.metrics.retried.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut providers) = self.metrics.providers.lock() {
                            providers.entry(provider).or_default().retried += 1;
                        }
                    }
                    retry::Next::GiveUp => {
                        *retryable = false;
                        *reason = format!("gave up after {} rounds: {reason}", retry::ROUNDS);
                        if let Some(r) = records.last_mut() {
                            r.reason = Some(match r.reason.take() {
                                Some(why) => {
                                    format!("gave up after {} rounds: {why}", retry::ROUNDS)
                                }
                                None => reason.clone(),
                            });
                        }
                        self.metrics.given_up.fetch_add(1, Ordering::Relaxed);
                    }
                    retry::Next::Later => {}
                }
            }
            self.metrics
                .retrying
                .store(self.retries.len() as u64, Ordering::Relaxed);
            if let Ok(mut by_message) = self.metrics.message_sends.lock() {
                for r in &records {
                    let key = (
                        r.flow.clone(),
                        r.message.clone(),
                        r.channel.clone(),
                        r.outcome.name(),
                    );
                    *by_message.entry(key).or_default() += 1;
                }
            }
            let feeds = self.engine.sink_mut().feeds_mut();
            for r in &records {
                durable::Feed::delivery(feeds, r);
            }
            self.remove_invalid_tokens();
        }
        self.engine.sink_mut().feeds_mut().flush();
        self.watch();
    }

    /// Unsets the device tokens the push provider reported invalid, as
    /// identify calls through the same path as any call.
    fn remove_invalid_tokens(&mut self) {
        let gone: Vec<_> = self.invalid_tokens.iter().flat_map(|t| t.take()).collect();
        if gone.is_empty() || self.metrics.broken.load(Ordering::Relaxed) {
            return;
        }
        let lines = durable::token_removals(
            &mut self.engine,
            gone,
            chrono::Utc::now().timestamp_millis(),
        );
        if lines.is_empty() {
            return;
        }
        if let Err(e) = self.ingest(lines.iter()) {
            self.broken(&e);
        }
    }

    /// Evaluates the alerts on the engine's clock (the wall clock, or the
    /// calls' own times with `--clock events`) and notifies their changes.
    fn watch(&mut self) {
        let Some(watch) = &mut self.alerts else {
            return;
        };
        let now = self.engine.now();
        // `i64::MIN`: nothing has set the clock yet.
        if now == i64::MIN {
            return;
        }
        let store = &mut self.store;
        let broken = self.metrics.broken.load(Ordering::Relaxed);
        let mut keep = |write| {
            if broken {
                return Err("the store failed earlier".to_string());
            }
            store
                .commit(&mut Batch {
                    alerts: Some(write),
                    ..Batch::default()
                })
                .map_err(|e| e.to_string())
        };
        // Posted notifications are kept as such, so a restart does not
        // post them again; quiet observations are kept within a second.
        if let Some(write) = watch.posted().or_else(|| watch.overdue())
            && let Err(e) = keep(write)
        {
            eprintln!("warning: the alerts' state could not be stored ({e})");
        }
        let changed = watch.due(now) && watch.observe(now, &self.metrics.alert_counters(), keep);
        self.metrics
            .alerts_unposted
            .store(watch.unposted() as u64, Ordering::Relaxed);
        watch.send();
        if changed {
            self.show_alerts(false);
        }
    }

    /// Counts the sends committed and not yet delivered, by provider:
    /// waiting for delivery, for their next round, or held by the breaker.
    fn count_pending(&self) {
        let Ok(mut providers) = self.metrics.providers.lock() else {
            return;
        };
        for p in providers.values_mut() {
            p.pending = 0;
        }
        let waiting = self.to_deliver.iter().map(|i| i.message.channel.as_str());
        let channels = waiting.chain(self.retries.channels()).map(|c| (c, 1));
        let left = self.releasing.iter().flat_map(|r| r.left.channels());
        for (channel, n) in channels.chain(self.held.channels()).chain(left) {
            let provider = self.router.provider(channel).to_string();
            providers.entry(provider).or_default().pending += n;
        }
    }

    /// Writes dead letters to the file and counts them by reason.
    pub fn write_dead(&mut self, dead: &[DeadLetter]) {
        for d in dead {
            self.metrics.dead.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut reasons) = self.metrics.dead_reasons.lock() {
                *reasons.entry(crate::dead::code(&d.reason)).or_default() += 1;
            }
            let written = serde_json::to_string(d)
                .map_err(std::io::Error::other)
                .and_then(|l| writeln!(self.dead, "{l}"));
            if let Err(e) = written {
                eprintln!("warning: writing {}: {e}", self.dead_path.display());
            }
        }
        let _ = self.dead.flush();
    }

    /// Renders the engine's per-flow counters for `/metrics`.
    pub fn publish_flows(&mut self) {
        // Here rather than after each delivery: an outage can leave many
        // sends between rounds, too many to count after every request.
        self.count_pending();
        self.metrics
            .timers
            .store(self.engine.timers_pending() as u64, Ordering::Relaxed);
        let paging = self.engine.paging();
        let m = &self.metrics;
        m.customers.store(paging.customers, Ordering::Relaxed);
        m.customers_in_memory
            .store(paging.in_memory, Ordering::Relaxed);
        m.customers_read_back
            .store(paging.read_back, Ordering::Relaxed);
        m.timers_in_memory
            .store(self.engine.timers_in_memory() as u64, Ordering::Relaxed);
        m.identities.store(paging.identities, Ordering::Relaxed);
        m.identities_in_memory
            .store(paging.identities_in_memory, Ordering::Relaxed);
        m.identities_read_back
            .store(paging.texts_read, Ordering::Relaxed);
        let mut text = flow_metrics(&self.engine.stats(), self.engine.releases().count());
        text.push_str(&waiting_metrics(&self.engine.instances_by_step()));
        if let Ok(mut flows) = self.metrics.flows.lock() {
            *flows = text;
        }
    }

    /// The engine's state as of its last call, for the next commit.
    fn checkpoint(&mut self) -> Result<nudge_store::Checkpoint, StoreError> {
        self.since_checkpoint = 0;
        let c = durable::checkpoint_of(
            self.store.path(),
            &mut self.engine,
            &self.stored_dead,
            self.dead_written,
        )?;
        self.dead_written = self.stored_dead.len();
        Ok(c)
    }

    /// A commit failed: says why and stops taking calls (the engine is
    /// ahead of the store).
    pub fn broken(&self, e: &StoreError) {
        eprintln!("error: {e}");
        self.metrics.broken.store(true, Ordering::Relaxed);
    }

    /// Stores the last delivery results, the clock and the counters;
    /// whether everything was stored and written.
    pub fn finish(mut self) -> bool {
        self.deliver();
        let mut batch = Batch {
            marks: std::mem::take(&mut self.marks),
            ..Batch::default()
        };
        batch.calls.extend(self.until.take().map(NewCall::Until));
        batch.meta.push((
            "stats",
            serde_json::to_string(&self.engine.stats()).unwrap_or_default(),
        ));
        let mut ok = true;
        if !self.metrics.broken.load(Ordering::Relaxed) {
            // The next start loads this state instead of replaying the calls.
            let mut committed = self.checkpoint().map(|c| batch.checkpoint = Some(c));
            batch.compact = durable::compaction(self.keep_calls, self.engine.now());
            // Nothing new is sent here; should a commit still hand back
            // sends, deliver them and store their results too.
            if committed.is_ok() {
                committed = self.commit(&mut batch);
            }
            if committed.is_ok() && !self.to_deliver.is_empty() {
                self.deliver();
                let mut last = Batch {
                    marks: std::mem::take(&mut self.marks),
                    ..Batch::default()
                };
                committed = self.commit(&mut last);
            }
            if let Err(e) = committed {
                report(&e);
                ok = false;
            }
        }
        if let Some(r) = self.releasing.as_ref().filter(|r| !r.left.is_empty()) {
            eprintln!(
                "warning: {} released sends were not delivered yet and stay pending in the store; the next start delivers them, or holds them again past max_sends_per_step",
                r.left.total()
            );
        }
        if !self.held.is_empty() {
            eprintln!(
                "warning: {} sends held by the circuit breaker stay pending in the store; the next start holds them again until POST /admin/release-sends",
                self.held.total()
            );
        }
        if let Some(f) = &self.report.first_failure {
            eprintln!(
                "warning: {} deliveries failed; first: {f}",
                self.report.failed
            );
        }
        if let Some(watch) = self.alerts.take() {
            self.keep_alerts(watch);
        }
        let flushed = self.dead.flush();
        let mut feeds = self.engine.into_sink().into_feeds();
        if let Some(synced) = feeds.finish_sync() {
            crate::run::print_synced(&synced);
        }
        if let Err(e) = feeds.finish() {
            eprintln!("error: {e}");
            ok = false;
        }
        if let Err(e) = flushed {
            eprintln!("error: writing {}: {e}", self.dead_path.display());
            ok = false;
        }
        if self.metrics.broken.load(Ordering::Relaxed) {
            ok = false;
        }
        ok
    }
}

/// What to tell the sender of calls once they are durable, or why they
/// are not.
pub type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Work to run on the live host's thread between requests (a question
/// about a customer, a reload), which answers through its own channel.
pub type Task = Box<dyn for<'l, 'b> FnOnce(&'l mut Live<'b>) + Send>;

/// A request to the live host's thread.
pub enum Msg {
    /// Validated calls as JSON lines, batch items refused on arrival (for
    /// the dead letters), and whom to tell once they are durable.
    Lines(Vec<String>, Vec<DeadLetter>, Reply),
    /// Work to run on the thread, in arrival order with the calls.
    Ask(Task),
    /// No more requests will come.
    Stop,
}

/// At most this many calls share one commit: enough to take what piles up
/// while a commit runs, few enough that the first request is not kept
/// waiting long.
pub const GROUP_CALLS: usize = 5_000;

/// The live host's thread: applies requests in arrival order and, when
/// `wall`, moves the engine's clock with the wall clock once a second
/// (firing due timers, delivering, retrying and publishing the counters
/// at each tick); returns on [`Msg::Stop`] or when every sender is gone.
/// `wedge_at` is for debugging: the thread stops taking work then, as a
/// wedged one would.
pub fn serve(live: &mut Live<'_>, rx: &mpsc::Receiver<Msg>, wall: bool, wedge_at: Option<Instant>) {
    const TICK: Duration = Duration::from_secs(1);
    let mut next_tick = Instant::now();
    // A message taken off the queue while grouping, handled next.
    let mut held = None;
    loop {
        live.metrics.beat();
        if wedge_at.is_some_and(|at| Instant::now() >= at) {
            // Never come round again, as a thread stuck in a long step
            // would; the watchdog ends the process.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        if Instant::now() >= next_tick {
            if wall && let Err(e) = live.tick(chrono::Utc::now().timestamp_millis()) {
                live.broken(&e);
            }
            live.deliver();
            live.publish_flows();
            next_tick = Instant::now() + TICK;
        }
        // A release delivers a page a round, between requests.
        live.release_page();
        let wait = if live.releasing() {
            Duration::ZERO
        } else {
            next_tick.saturating_duration_since(Instant::now())
        };
        let msg = match held.take() {
            Some(msg) => Ok(msg),
            None => rx.recv_timeout(wait),
        };
        match msg {
            Ok(Msg::Lines(lines, refused, reply)) => {
                // Requests that queued while the last commit ran share the
                // next one: one transaction (and one sync) for all of them.
                let mut calls = lines.len();
                let mut group = vec![(lines, reply)];
                let mut refused = refused;
                while calls < GROUP_CALLS {
                    match rx.try_recv() {
                        Ok(Msg::Lines(lines, more, reply)) => {
                            calls += lines.len();
                            group.push((lines, reply));
                            refused.extend(more);
                        }
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                // The clock reaches the wall clock before the calls are
                // applied: every call is then at or before it (its time is
                // never later than its receipt), so none moves it, and a
                // late call's overdue timers wait for the next tick, after
                // the calls that came with it (one may be its purchase).
                if wall
                    && !live.metrics.broken.load(Ordering::Relaxed)
                    && let Err(e) = live.tick(chrono::Utc::now().timestamp_millis())
                {
                    live.broken(&e);
                }
                // Numbered after the calls applied before them.
                for d in &mut refused {
                    d.line = live.source.line as usize;
                }
                live.write_dead(&refused);
                let result = if live.metrics.broken.load(Ordering::Relaxed) {
                    Err("the store failed earlier; restart the server".to_string())
                } else {
                    live.ingest(group.iter().flat_map(|(lines, _)| lines))
                        .map_err(|e| {
                            live.broken(&e);
                            e.to_string()
                        })
                };
                // Answered once durable; the sends go out after.
                for (_, reply) in group {
                    reply(result.clone());
                }
                live.deliver();
            }
            Ok(Msg::Ask(task)) => task(live),
            Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}
