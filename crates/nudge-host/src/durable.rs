//! A durable replay: rebuild the engine from the store, deliver what was
//! left pending, then apply the rest of the events file in batches, each
//! committed (calls, send intents, read position) before its sends go out.
//!
//! Ordering: a run streams the file and applies its lines in time order
//! within a reorder window, like the in-memory replay (file order when the
//! file is sorted, a stable sort of this run's lines when no line is out of
//! order by more than the window; see [`nudge_runtime::window`]). Lines
//! already applied are never applied again; lines earlier than the clock a
//! previous run reached are applied at that clock and counted as `late`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nudge_bytecode::{Bundle, Channel};
use nudge_channels::{
    Delivery, DeliveryError, InvalidToken, InvalidTokens, Outgoing, Plugin, Receipt,
};
use nudge_runtime::engine::{ClockStep, Deployed, Engine, Sink};
use nudge_runtime::record::{DeliveryOutcome, DeliveryRecord, Membership, Record};
use nudge_runtime::replay::{DeadLetter, Horizon};
use nudge_runtime::segment;
use nudge_runtime::window::Window;

use nudge_store::{
    Batch, Checkpoint, Compaction, EngineState, Intent, LedgerCounts, Mark, NewCall, Saved,
    SourcePos, Store, StoreError, Stored, TAIL, portable, tail_hash_of,
};

/// Bundles decoded from a history's deploys: they live as long as the engine
/// whose older releases run them.
pub use nudge_runtime::engine::Bundles;

/// The code a store's history runs under.
#[derive(Clone, Copy)]
pub struct Code<'b> {
    /// The project as compiled now: deployed if the history ends on other code.
    pub current: &'b Bundle,
    /// Where bundles of earlier deploys are decoded to.
    pub bundles: &'b Bundles,
}

impl<'b> Code<'b> {
    /// The bundle an engine over `store` must be made with: the history's
    /// first deploy, or the current bundle for a store with no history.
    pub fn initial(&self, store: &Store) -> Result<&'b Bundle, StoreError> {
        match store.first_deploy()? {
            Some(bytes) => self.bundle(store, &bytes),
            None => Ok(self.current),
        }
    }

    /// The bundle of a stored deploy; the current one when it is the same code.
    fn bundle(&self, store: &Store, bytes: &[u8]) -> Result<&'b Bundle, StoreError> {
        if bytes == portable(self.current).as_slice() {
            return Ok(self.current);
        }
        let bundle = Bundle::decode(bytes).map_err(|e| StoreError::NotAStore {
            path: store.path().to_path_buf(),
            reason: format!("a deployed bundle in the history cannot be read: {e}"),
        })?;
        Ok(self.bundles.alloc(bundle))
    }
}

/// What [`resume`] found.
pub struct Resumed {
    /// Lines of the source applied past its read position (only an unsorted
    /// run leaves any), which must not be applied again.
    pub beyond: HashSet<u64>,
    /// The project's code differed from the history's last deploy and was
    /// deployed: what became of the instances in flight.
    pub deployed: Option<Deployed>,
    /// Pending sends not delivered because there were more than the
    /// router's hold limit (see [`Router::hold_resends_over`]); they stay
    /// pending in the ledger.
    pub held: Held,
}

/// Sends the engine made since they were last taken, shared with the
/// [`LedgerSink`] that collects them.
#[derive(Clone, Default)]
pub struct Captured(Rc<RefCell<Vec<Outgoing>>>);

impl Captured {
    /// True when the engine made no send since they were last taken.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    /// How many sends the engine made since they were last taken.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    /// The sends made since they were last taken, in order; a host
    /// commits them as intents.
    pub fn take(&self) -> Vec<Outgoing> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

/// A sink that holds sends back until they are in the ledger; records and
/// audience changes go straight to `feeds`, which are rewritten each run.
pub struct LedgerSink<S> {
    feeds: S,
    captured: Captured,
}

impl<S> LedgerSink<S> {
    /// The sink that records and memberships go on to.
    pub fn feeds_mut(&mut self) -> &mut S {
        &mut self.feeds
    }

    /// A ledger sink over `feeds`, and the handle its sends are taken from.
    pub fn new(feeds: S) -> (Self, Captured) {
        let captured = Captured::default();
        (
            LedgerSink {
                feeds,
                captured: captured.clone(),
            },
            captured,
        )
    }

    /// Gives back the feeds.
    pub fn into_feeds(self) -> S {
        self.feeds
    }
}

impl<S: Sink> Sink for LedgerSink<S> {
    /// Accepts the send as an intent: the engine counts it as sent, and the
    /// ledger sees it delivered (or failed) after the batch commits.
    fn deliver(&mut self, _: Channel, message: &Outgoing) -> Result<(), String> {
        self.captured.0.borrow_mut().push(message.clone());
        Ok(())
    }

    fn record(&mut self, record: Record) {
        self.feeds.record(record);
    }

    fn membership(&mut self, change: Membership) {
        self.feeds.membership(change);
    }
}

/// Where each channel's messages are delivered.
pub struct Router {
    default: Box<dyn Plugin>,
    outbox: Option<PathBuf>,
    routes: HashMap<String, Box<dyn Plugin>>,
    /// More pending sends than this at resume are held, not delivered.
    hold_over: Option<usize>,
    /// Where push plugins report device tokens the provider refused.
    invalid_tokens: Vec<InvalidTokens>,
}

impl Router {
    /// Every channel goes to `default`; `outbox` names the file it writes,
    /// so messages already there after a crash are not written twice.
    pub fn new(default: Box<dyn Plugin>, outbox: Option<PathBuf>) -> Self {
        Router {
            default,
            outbox,
            routes: HashMap::new(),
            hold_over: None,
            invalid_tokens: Vec::new(),
        }
    }

    /// Also takes the device tokens a push plugin reports invalid through
    /// `reports`: a run unsets them in the profiles (see [`token_removals`]).
    pub fn watch_invalid_tokens(&mut self, reports: InvalidTokens) {
        self.invalid_tokens.push(reports);
    }

    /// The device tokens reported invalid since the last call.
    pub fn take_invalid_tokens(&self) -> Vec<InvalidToken> {
        self.invalid_tokens.iter().flat_map(|t| t.take()).collect()
    }

    /// At resume, more than `limit` pending sends are handed back in
    /// [`Resumed::held`] instead of being delivered: a host with a send
    /// circuit breaker must not have a held flood go out on a restart.
    pub fn hold_resends_over(&mut self, limit: usize) {
        self.hold_over = Some(limit);
    }

    /// The name of the plugin `channel`'s messages go to ("outbox", "webhook", ...).
    pub fn provider(&self, channel: &str) -> &str {
        match self.routes.get(channel) {
            Some(p) => p.name(),
            None => self.default.name(),
        }
    }

    /// Sends one channel to `plugin` instead.
    pub fn route(&mut self, channel: Channel, plugin: Box<dyn Plugin>) {
        self.routes.insert(channel.name().to_string(), plugin);
    }

    fn deliver(&mut self, msg: &Outgoing) -> Result<Receipt, DeliveryError> {
        match self.routes.get_mut(&msg.channel) {
            Some(p) => p.deliver(msg),
            None => self.default.deliver(msg),
        }
    }

    /// The idempotency keys of `intents` the outbox file already holds:
    /// written before a crash, before their delivery was recorded.
    pub fn already_delivered(&self, intents: &[Intent]) -> std::io::Result<HashSet<String>> {
        let Some(path) = &self.outbox else {
            return Ok(HashSet::new());
        };
        let wanted: HashSet<&str> = intents
            .iter()
            .filter(|i| !self.routes.contains_key(&i.message.channel))
            .map(|i| i.message.idempotency_key.as_str())
            .collect();
        if wanted.is_empty() {
            return Ok(HashSet::new());
        }
        nudge_store::outbox::keys_present(path, |key| wanted.contains(key))
    }

    /// Makes every delivery so far durable.
    pub fn flush(&mut self) -> Result<(), DeliveryError> {
        self.default.flush()?;
        for p in self.routes.values_mut() {
            p.flush()?;
        }
        Ok(())
    }
}

/// Output a host derives from the engine's records (the trace, audience
/// feeds): a checkpoint notes where it stood, so that a restart from the
/// checkpoint can cut it back there and write the rest again.
pub trait Feed {
    /// Writes out what is buffered and says where the output stands, in the
    /// host's own words (given back to it on a restart).
    fn mark(&mut self) -> Result<String, String>;

    /// Writes what became of one send's delivery to the trace.
    fn delivery(&mut self, record: &DeliveryRecord);

    /// The idempotency keys whose delivery outcome the trace held when it
    /// was opened (kept from before a restart), taken once: [`resume`]
    /// writes the outcomes the ledger holds that the trace lost.
    fn take_recorded(&mut self) -> Result<nudge_store::Recorded, String>;
}

impl<S: Feed> Feed for LedgerSink<S> {
    fn mark(&mut self) -> Result<String, String> {
        self.feeds.mark()
    }

    fn delivery(&mut self, record: &DeliveryRecord) {
        self.feeds.delivery(record);
    }

    fn take_recorded(&mut self) -> Result<nudge_store::Recorded, String> {
        self.feeds.take_recorded()
    }
}

/// The trace line saying what became of `intent`'s delivery, as `mark`
/// records it, through the plugin `router` sends its channel to.
pub fn delivery_record(router: &Router, intent: &Intent, mark: &Mark) -> DeliveryRecord {
    let m = &intent.message;
    let (outcome, reason) = match (outcome_of(mark), mark) {
        (Delivery::Delivered, _) | (_, Mark::Done { .. }) => (DeliveryOutcome::Delivered, None),
        (Delivery::Unknown, Mark::Failed { reason, .. }) => (
            DeliveryOutcome::Unknown,
            Some(reason.strip_prefix(UNKNOWN).unwrap_or(reason).to_string()),
        ),
        (Delivery::Failed, Mark::Failed { reason, .. }) => {
            (DeliveryOutcome::Failed, Some(reason.clone()))
        }
    };
    DeliveryRecord {
        at: m.at.clone(),
        customer: m.customer.clone(),
        flow: m.flow.clone(),
        message: m.message.clone(),
        channel: m.channel.clone(),
        outcome,
        reason,
        provider: router.provider(&m.channel).to_string(),
        key: m.idempotency_key.clone(),
    }
}

/// Writes the delivery record of each intent beside its mark (in order).
fn record_deliveries<F: Feed>(feeds: &mut F, router: &Router, intents: &[Intent], marks: &[Mark]) {
    for (intent, mark) in intents.iter().zip(marks) {
        feeds.delivery(&delivery_record(router, intent, mark));
    }
}

/// Calls removed from the log in one commit at most: a host compacting as
/// it goes spreads a large backlog (a retention set on an old store) over
/// its checkpoints instead of stalling one of them.
pub const COMPACT_STEP: u64 = 100_000;

/// Whether a batch ends with a checkpoint: `every` calls after the last
/// one (0: never by count), or, with a `budget` of customers in memory,
/// once more customers than it changed since the last one, since those
/// are held until a checkpoint writes them. `nudge run` and `nudge serve`
/// both ask this.
pub fn checkpoint_due(
    since: u64,
    every: u64,
    budget: Option<usize>,
    engine: &nudge_runtime::engine::Machine<'_>,
) -> bool {
    (every > 0 && since >= every) || budget.is_some_and(|b| engine.changed_beyond(b))
}

/// What a checkpoint's commit removes from the log when calls are kept
/// for `keep_calls` milliseconds (`None`: kept for ever) and the engine's
/// clock stands at `now`.
pub fn compaction(keep_calls: Option<i64>, now: i64) -> Option<Compaction> {
    let keep = keep_calls?;
    // A clock that never moved dates nothing: keep everything.
    (now != i64::MIN).then(|| Compaction {
        before: now.saturating_sub(keep),
        limit: COMPACT_STEP,
    })
}

/// Takes a checkpoint of `engine` as of now: the state it changed, where
/// its feeds stand, and the dead letters after the first `written` of
/// `dead`, every dead letter so far (of stored calls, and of lines refused
/// before they were stored, which no replay finds again). The store holds
/// the first `written` (every one is written when the state is written
/// whole). The caller then counts `dead` as written.
pub fn checkpoint_of<'b, S: Sink + Feed>(
    store: &Path,
    engine: &mut Engine<'b, S>,
    dead: &[DeadLetter],
    written: usize,
) -> Result<Checkpoint, StoreError> {
    let broken = |reason: String| StoreError::Write {
        path: store.to_path_buf(),
        reason,
    };
    let feeds = engine
        .sink_mut()
        .mark()
        .map_err(|e| broken(format!("cannot write out the feeds for a checkpoint: {e}")))?;
    let state = engine
        .take_changes()
        .map_err(|e| broken(format!("cannot take a checkpoint: {e}")))?;
    let dead_whole = state.full;
    let from = if dead_whole { 0 } else { written };
    let mut lines = String::new();
    for d in dead.get(from..).unwrap_or_default() {
        let line = serde_json::to_string(d).map_err(|e| broken(e.to_string()))?;
        lines.push_str(&line);
        lines.push('\n');
    }
    Ok(Checkpoint {
        format: nudge_runtime::engine::checkpoint::FORMAT,
        engine: EngineState::Rows(Box::new(state)),
        feeds,
        dead: lines,
        dead_whole,
    })
}

/// Bounds the customers `engine` keeps in memory to `budget` (`[runtime]
/// customers_in_memory`), reading the others back from `store` when first
/// needed. Call it before the engine is restored. A store in memory keeps
/// every customer: nothing else can read it.
pub fn bound_memory<S: Sink>(
    store: &Store,
    engine: &mut Engine<'_, S>,
    budget: Option<usize>,
) -> Result<(), StoreError> {
    if budget.is_some()
        && let Some(pager) = store.pager()?
    {
        engine.set_pager(Box::new(pager));
    }
    Ok(())
}

/// What a checkpoint stores of the timers and identities, when it stores
/// the state as rows: once it is committed, the engine can let go of the
/// timers not due soon and the identities' texts (see [`InStore::let_go`]).
pub fn in_store(checkpoint: &nudge_store::Checkpoint) -> Option<InStore> {
    match &checkpoint.engine {
        EngineState::Rows(c) => Some(InStore {
            timers: c.timer_seq,
            nodes: c.names_stored,
        }),
        _ => None,
    }
}

/// What a committed checkpoint stored of the state an engine lets go of
/// (see [`InStore::let_go`]): its timers through an insertion number, and
/// its identity nodes' texts below a node count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InStore {
    /// The timers' last insertion number the checkpoint stored.
    pub timers: u64,
    /// How many identity nodes the checkpoint stored.
    pub nodes: u32,
}

impl InStore {
    /// Lets `engine` go of the timers and identities' texts the committed
    /// checkpoint stored (it reads them back when needed).
    pub fn let_go<S: Sink>(self, engine: &mut Engine<'_, S>) {
        engine.let_timers_go(self.timers);
        engine.let_texts_go(self.nodes);
    }
}

/// What a batch writes of the engine's customers.
#[derive(Debug, PartialEq, Eq)]
enum Saves {
    /// No checkpoint.
    Nothing,
    /// A checkpoint writing these customers' rows, and the timers and
    /// identities it stores.
    Customers(Vec<u32>, InStore),
    /// A checkpoint writing the whole state (as rows: with the timers and
    /// identities it stores).
    Everything(Option<InStore>),
}

impl Saves {
    fn of(batch: &Batch<'_>) -> Saves {
        match batch.checkpoint.as_ref().map(|c| &c.engine) {
            None => Saves::Nothing,
            Some(EngineState::Rows(c)) => {
                let stored = InStore {
                    timers: c.timer_seq,
                    nodes: c.names_stored,
                };
                if c.full {
                    Saves::Everything(Some(stored))
                } else {
                    Saves::Customers(c.customers.iter().map(|(n, _)| *n).collect(), stored)
                }
            }
            Some(_) => Saves::Everything(None),
        }
    }

    /// What the checkpoint stored of the timers and identities.
    fn stored(&self) -> Option<InStore> {
        match self {
            Saves::Nothing | Saves::Everything(None) => None,
            Saves::Customers(_, stored) | Saves::Everything(Some(stored)) => Some(*stored),
        }
    }

    /// The customers the batches in flight write, or `None` when one writes
    /// everything (nothing can be let go until it is committed).
    fn unsaved(flights: &std::collections::VecDeque<Saves>) -> Option<Vec<u32>> {
        let mut out = Vec::new();
        for f in flights {
            match f {
                Saves::Nothing => {}
                Saves::Customers(list, _) => out.extend_from_slice(list),
                Saves::Everything(_) => return None,
            }
        }
        Some(out)
    }
}

/// Fails when the engine could not read a customer back from the store: its
/// decisions since are not to be committed or delivered.
pub fn no_page_fault<S: Sink>(store: &Path, engine: &Engine<'_, S>) -> Result<(), StoreError> {
    match engine.page_fault() {
        None => Ok(()),
        Some(reason) => Err(StoreError::NotAStore {
            path: store.to_path_buf(),
            reason: format!("a customer's state cannot be read back from it ({reason})"),
        }),
    }
}

/// Commits a deploy's arming of new triggers (see
/// [`nudge_runtime::engine::Machine::arm_part`]) a budget's worth of
/// customers at a time, each part with a checkpoint, letting go of the
/// customers it read back once committed. `calls` (the deploy) go with the
/// first part. Returns how many parts were committed; none when nothing is
/// left to arm. `dead_written` follows the checkpoints' dead letters.
pub fn commit_arming<'b, S: Sink + Feed>(
    store: &mut Store,
    engine: &mut Engine<'b, S>,
    budget: usize,
    calls: &mut Vec<NewCall>,
    dead: &[DeadLetter],
    dead_written: &mut usize,
) -> Result<u64, StoreError> {
    let path = store.path().to_path_buf();
    let mut parts = 0;
    while engine.arming() {
        // A fault is the engine's own too: `no_page_fault` says it.
        let _ = engine.arm_part(budget);
        no_page_fault(&path, engine)?;
        let mut b = Batch {
            calls: std::mem::take(calls),
            ..Batch::default()
        };
        b.meta.push(("clock", engine.now().to_string()));
        b.checkpoint = Some(checkpoint_of(&path, engine, dead, *dead_written)?);
        *dead_written = dead.len();
        let took = Saves::of(&b);
        store.commit(&mut b)?;
        engine.let_go(budget, &[]);
        if let Some(stored) = took.stored() {
            stored.let_go(engine);
        }
        parts += 1;
    }
    Ok(parts)
}

/// How many dead letters the store holds as of checkpoint `start`.
pub fn stored_dead(start: Option<&Saved>) -> usize {
    start.map_or(0, |s| s.dead.lines().filter(|l| !l.is_empty()).count())
}

/// How the run goes on after the input.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Fire timers due up to this instant after the input.
    pub until: Option<i64>,
    /// Fire timers until only schedules remain after the input.
    pub drain: bool,
    /// Lines per transaction.
    pub batch_lines: usize,
    /// Lines beyond it are refused and never stored (see [`Horizon`]).
    pub horizon: Option<Horizon>,
    /// Lines of the file held to put them in time order (see
    /// [`nudge_runtime::window`]).
    pub window: usize,
    /// Calls between two checkpoints within the run (0: one at its end only).
    pub checkpoint_every: u64,
    /// How long calls stay in the log, in milliseconds (`[store]
    /// keep_calls`): older ones go with each checkpoint that covers them.
    pub keep_calls: Option<i64>,
    /// The checkpoint to start from (see [`usable_checkpoint`]); `None`
    /// replays the whole history.
    pub start: Option<Saved>,
    /// The send circuit breaker: when one line or one clock step makes more
    /// sends than this, delivery pauses for the rest of the run and every
    /// send from then on stays pending in the ledger (see [`Report::paused`]).
    pub max_sends_per_step: Option<usize>,
    /// The most customers kept in memory after each checkpoint (see
    /// [`bound_memory`]); `None` keeps every one.
    pub customers_in_memory: Option<usize>,
}

/// The events file of this run.
pub struct Input<'a> {
    /// Its name in the store (a canonical path).
    pub name: &'a str,
    /// Where it is read from.
    pub path: &'a Path,
}

/// What a durable run did, beyond the engine's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Stored calls replayed to rebuild the state.
    pub rebuilt: u64,
    /// Stored calls whose effect was loaded from the checkpoint rather than replayed.
    pub restored: u64,
    /// New lines applied by this run.
    pub applied: u64,
    /// New lines dated before the clock an earlier run reached: late, judged by when they happened.
    pub late: u64,
    /// New lines stamped beyond the file's horizon: refused, not stored.
    pub beyond_horizon: u64,
    /// New lines out of order by more than the reorder window: applied
    /// after later-stamped ones, as late calls.
    pub past_window: u64,
    /// Pending intents of an earlier run delivered (or found already delivered).
    pub retried: u64,
    /// New messages delivered by this run.
    pub delivered: u64,
    /// Deliveries the plugins refused in this run.
    pub failed: u64,
    /// The first refusal's reason.
    pub first_failure: Option<String>,
    /// The ledger's counts after the run.
    pub ledger: LedgerCounts,
    /// True when rebuilding produced a different number of sends than the
    /// ledger holds: the history was not replayed as it was first applied.
    pub diverged: bool,
    /// The project's code changed since the history's last deploy and was
    /// deployed before the new input: what became of instances in flight.
    pub deployed: Option<String>,
    /// New lines whose time, corrected for the sender's clock, was later than
    /// their `receivedAt`: applied at their receipt.
    pub clamped: u64,
    /// Why delivery paused: the send circuit breaker tripped (one line or
    /// clock step made more sends than allowed), or more sends than that
    /// were pending when the run started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Sends the paused breaker left pending in the ledger, undelivered.
    pub held: u64,
    /// Checkpoints a deploy's arming of new triggers was committed in
    /// (with `[runtime] customers_in_memory`; 0 when it armed nothing).
    #[serde(skip_serializing_if = "is_zero")]
    pub deploy_parts: u64,
    /// Customers in memory and read back, when `[runtime]
    /// customers_in_memory` bounds them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
}

/// Leaves a count of nothing out of the report.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How a run with `[runtime] customers_in_memory` held its customers: with
/// a store, those beyond it are let go and read back from the store; in
/// memory, frozen and decoded (counted as let go and read back).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    /// The budget: the most customers kept in memory after each checkpoint.
    pub budget: u64,
    /// Customers the engine has, in memory or in the store only.
    pub customers: u64,
    /// Customers in memory when the run ended.
    pub in_memory: u64,
    /// Customers read back from the store during the run.
    pub read_back: u64,
    /// Customers let go during the run.
    pub let_go: u64,
    /// Timers pending when the run ended, in memory or in the store.
    pub timers: u64,
    /// Timers in memory when the run ended (those due an hour or more
    /// past the clock wait in the store).
    pub timers_in_memory: u64,
    /// Identities (user ids, anonymous ids, addresses) the engine knows.
    pub identities: u64,
    /// Identities whose texts were in memory when the run ended (the
    /// others are looked up in the store by name when a call names them).
    pub identities_in_memory: u64,
    /// Identities read back from the store during the run.
    pub identities_read: u64,
}

impl Memory {
    /// What `engine` did under `budget`, if there is one.
    pub fn of<S: Sink>(engine: &Engine<'_, S>, budget: Option<usize>) -> Option<Memory> {
        let budget = budget?;
        let p = engine.paging();
        Some(Memory {
            budget: budget as u64,
            customers: p.customers,
            in_memory: p.in_memory,
            read_back: p.read_back,
            let_go: p.let_go,
            timers: engine.timers_pending() as u64,
            timers_in_memory: engine.timers_in_memory() as u64,
            identities: p.identities,
            identities_in_memory: p.identities_in_memory,
            identities_read: p.texts_read,
        })
    }
}

impl Report {
    /// Pauses delivery for the rest of the run; the first reason is kept.
    fn trip(&mut self, reason: impl FnOnce() -> String) {
        if self.paused.is_none() {
            self.paused = Some(reason());
        }
    }
}

/// Rebuilds `engine` (fresh, over a [`LedgerSink`]) from `store`, delivers
/// pending intents, applies the unread part of `input`, then runs the clock
/// as `settings` say. Returns the report and every refused line of the
/// history, in line order.
///
/// The file is read as a stream, up to the length it had when the run
/// began; lines are applied in time order within the reorder window, so
/// memory holds the window and a batch, not the file.
pub fn run<'b, S: Sink + Feed>(
    store: &mut Store,
    engine: &mut Engine<'b, LedgerSink<S>>,
    code: Code<'b>,
    captured: &Captured,
    router: &mut Router,
    input: Input<'_>,
    settings: Settings,
) -> Result<(Report, Vec<DeadLetter>), StoreError> {
    let mut report = Report::default();
    let mut dead = Vec::new();
    let source = store.source(input.name)?;
    let tokens = store.source(TOKEN_SOURCE)?.id;
    // Removals of invalid device tokens made after the last batch went to
    // the writer, stored with the run's last commit.
    let mut late_calls = Vec::new();
    let mut file = SourceFile::open(input.path)?;
    check_source(&source, &mut file, &input)?;
    let mut batch = Batch::default();
    let Resumed {
        beyond,
        deployed,
        held,
    } = resume(
        store,
        engine,
        code,
        Resume {
            captured,
            router,
            source: &source,
            start: settings.start.as_ref(),
            page: part_timers(settings.customers_in_memory),
        },
        &mut report,
        &mut dead,
        &mut batch,
    )?;
    let store_path = store.path().to_path_buf();
    let mut since_checkpoint = 0u64;
    let mut dead_written = stored_dead(settings.start.as_ref());
    // Lines applied past the read position, stored with it: a restart from a
    // checkpoint replays too few calls to find them again.
    let mut ahead: std::collections::BTreeSet<u64> = beyond.iter().copied().collect();
    report.deployed = deployed.map(|d| d.to_string());
    if !held.is_empty() {
        // A flood held by an earlier run stays held until released.
        report.held += held.total();
        report.trip(|| format!("{} sends were pending when the run started", held.total()));
    }
    let max_sends = settings.max_sends_per_step;
    // A deploy is stored before any line applied after it.
    let mut first = std::mem::take(&mut batch.calls);
    // One that arms new triggers for every customer is committed in parts
    // first, each letting the customers it read back go.
    if let Some(budget) = settings.customers_in_memory {
        report.deploy_parts =
            commit_arming(store, engine, budget, &mut first, &dead, &mut dead_written)?;
    }

    let read_err = |e: std::io::Error| StoreError::Source {
        path: input.path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut reader = file.lines_from(source.position).map_err(read_err)?;
    // Each held line: where it starts in the file, and its bytes.
    // A window of one line applies the file in file order; none would let a
    // line out before it is counted in a batch.
    let mut window: Window<(u64, Vec<u8>)> = Window::new(settings.window.max(1));
    let mut last = i64::MIN;
    let clock = engine.now();
    // The end of the last line read, and the number of that line.
    let mut offset = source.position;
    let mut end_line = source.line;
    let batch_lines = settings.batch_lines.max(1);
    // Group commit on a second thread: while the writer commits batch k,
    // this thread applies batch k + 1; batch k's sends go out only once the
    // writer has acknowledged its commit.
    let mut marks = std::mem::take(&mut batch.marks);
    let mut committed = (source.position, source.line);
    std::thread::scope(|scope| -> Result<(), StoreError> {
        let (to_writer, inbox) = std::sync::mpsc::sync_channel::<Batch<'_>>(1);
        let (ack, acks) = std::sync::mpsc::channel::<Result<Vec<Intent>, StoreError>>();
        let writer = &mut *store;
        scope.spawn(move || {
            for mut b in inbox {
                let r = writer.commit(&mut b).map(|()| b.intents);
                let failed = r.is_err();
                if ack.send(r).is_err() || failed {
                    return;
                }
            }
        });
        let mut in_flight = 0usize;
        // What each batch in flight writes of the customers: customers are
        // let go once a checkpoint is committed, except those a later
        // checkpoint still in flight writes.
        let mut flights: std::collections::VecDeque<Saves> = Default::default();
        let mut next = Batch::default();
        let mut pending = 0usize;
        let mut buf = Vec::new();
        let mut done = false;
        while !done {
            // Read one line, or note the end of the input.
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(read_err)?;
            if n == 0 {
                done = true;
            } else {
                let start = offset;
                offset += n as u64;
                end_line += 1;
                let number = end_line;
                let raw = buf.strip_suffix(b"\n").unwrap_or(&buf);
                if raw.iter().all(u8::is_ascii_whitespace) || beyond.contains(&number) {
                    continue;
                }
                let timed = std::str::from_utf8(raw)
                    .ok()
                    .and_then(segment::time_and_clamp_of);
                let t = timed.map(|(t, _)| t);
                // Refused lines are not stored, so a rebuild never meets them.
                if let (Some(t), Some(h)) = (t, settings.horizon)
                    && let Err(reason) = h.judge(t, last.max(clock))
                {
                    engine.count_dead_letter();
                    report.beyond_horizon += 1;
                    dead.push(DeadLetter {
                        line: number as usize,
                        reason,
                        input: String::from_utf8_lossy(raw).into_owned(),
                    });
                    continue;
                }
                if t.is_some_and(|t| t < clock) {
                    report.late += 1;
                }
                if timed.is_some_and(|(_, clamped)| clamped) {
                    report.clamped += 1;
                }
                let t = t.unwrap_or(last);
                last = last.max(t);
                window.push(t, number, (start, raw.to_vec()));
            }
            loop {
                let due = if done {
                    window.pop()
                } else {
                    window.next_due()
                };
                if let Some((_, number, (_, body))) = due {
                    let before = captured.len();
                    apply_line(engine, &body, number, &mut dead);
                    ahead.insert(number);
                    let made = captured.len() - before;
                    if max_sends.is_some_and(|max| made > max) {
                        report.trip(|| format!("line {number} made {made} sends"));
                    }
                    next.calls.push(NewCall::Read {
                        source: source.id,
                        line: number,
                        body,
                    });
                    pending += 1;
                    since_checkpoint += 1;
                    report.applied += 1;
                    if pending < batch_lines {
                        continue;
                    }
                } else if !done || pending == 0 {
                    // Nothing due yet, or everything committed. (A line
                    // stamped far ahead can empty the window before the
                    // end: what was let out is committed at the end.)
                    break;
                }
                // Everything before the position is applied; later lines
                // applied out of file order are found through their line
                // numbers.
                let (position, line) = match window.oldest() {
                    Some((number, &(start, _))) => (start, number - 1),
                    None => (offset, end_line),
                };
                let mut b = std::mem::take(&mut next);
                pending = 0;
                b.calls.splice(0..0, std::mem::take(&mut first));
                ahead = ahead.split_off(&(line + 1));
                b.source = Some(SourcePos {
                    id: source.id,
                    position,
                    line,
                    tail_hash: file.tail_hash(position).map_err(read_err)?,
                    beyond: ahead.iter().copied().collect(),
                });
                committed = (position, line);
                b.intents = captured
                    .take()
                    .into_iter()
                    .map(|message| Intent { message })
                    .collect();
                b.marks = std::mem::take(&mut marks);
                b.meta.push(("clock", engine.now().to_string()));
                if checkpoint_due(
                    since_checkpoint,
                    settings.checkpoint_every,
                    settings.customers_in_memory,
                    engine,
                ) {
                    since_checkpoint = 0;
                    b.checkpoint = Some(checkpoint_of(&store_path, engine, &dead, dead_written)?);
                    dead_written = dead.len();
                    b.compact = compaction(settings.keep_calls, engine.now());
                }
                no_page_fault(&store_path, engine)?;
                let took = Saves::of(&b);
                if to_writer.send(b).is_err() {
                    // The writer stopped on an error; its ack says which.
                    done = true;
                    break;
                }
                flights.push_back(took);
                in_flight += 1;
                if in_flight > 1 {
                    let intents = acks.recv().map_err(|_| writer_gone())??;
                    in_flight -= 1;
                    let acked = flights.pop_front().unwrap_or(Saves::Nothing);
                    dispatch_and_record(engine, router, &intents, &mut marks, &mut report);
                    // Counted as pending, so that the batch holding them
                    // is committed even when no line follows.
                    pending +=
                        clear_invalid_tokens(engine, router, tokens, &mut next.calls, &mut dead);
                    if acked != Saves::Nothing
                        && let Some(budget) = settings.customers_in_memory
                        && let Some(unsaved) = Saves::unsaved(&flights)
                    {
                        engine.let_go(budget, &unsaved);
                    }
                    if let Some(stored) = acked.stored() {
                        stored.let_go(engine);
                    }
                }
            }
        }
        drop(to_writer);
        for _ in 0..in_flight {
            let intents = acks.recv().map_err(|_| writer_gone())??;
            dispatch_and_record(engine, router, &intents, &mut marks, &mut report);
            clear_invalid_tokens(engine, router, tokens, &mut late_calls, &mut dead);
        }
        Ok(())
    })?;
    report.past_window = window.late();
    batch.marks = marks;
    batch.calls.extend(first);
    batch.calls.append(&mut late_calls);
    if committed != (offset, end_line) {
        // Only blank or refused lines followed: still move past them.
        batch.source = Some(SourcePos {
            id: source.id,
            position: offset,
            line: end_line,
            tail_hash: file.tail_hash(offset).map_err(read_err)?,
            // Every line read was applied or refused.
            beyond: Vec::new(),
        });
    }

    // Every line's sends were taken with its batch: what is captured now,
    // the clock step made.
    let mut clock = Clock {
        max_sends,
        budget: settings.customers_in_memory,
        dead_written,
    };
    let steps = settings.until.map(ClockStep::Until).into_iter();
    for step in steps.chain(settings.drain.then_some(ClockStep::Drain)) {
        clock.step(
            step,
            engine,
            store,
            captured,
            router,
            &mut batch,
            &mut report,
            &dead,
        )?;
        clear_invalid_tokens(engine, router, tokens, &mut batch.calls, &mut dead);
    }
    let dead_written = clock.dead_written;
    // The last delivery results, the clock, the counters, and the state
    // the next run starts from.
    batch.meta.push(("clock", engine.now().to_string()));
    batch.meta.push((
        "stats",
        serde_json::to_string(&engine.stats()).unwrap_or_default(),
    ));
    // A run that stored nothing and refused nothing leaves the state it
    // started from: its checkpoint still holds, and is not written again,
    // unless it is of an older layout (each start would read it whole).
    let unchanged = settings
        .start
        .is_some_and(|s| s.format == nudge_runtime::engine::checkpoint::FORMAT)
        && report.rebuilt == 0
        && report.applied == 0
        && report.beyond_horizon == 0
        && report.deployed.is_none()
        && settings.until.is_none()
        && !settings.drain;
    if !unchanged {
        batch.checkpoint = Some(checkpoint_of(&store_path, engine, &dead, dead_written)?);
        batch.compact = compaction(settings.keep_calls, engine.now());
    }
    no_page_fault(&store_path, engine)?;
    store.commit(&mut batch)?;
    report.ledger = store.counts()?;
    report.memory = Memory::of(engine, settings.customers_in_memory);
    dead.sort_by_key(|d: &DeadLetter| d.line);
    Ok((report, dead))
}

/// The events file of a run: its length when the run began (lines appended
/// during the run are left to the next one) and a second handle to read
/// the bytes before a read position back for its [`nudge_store::tail_hash`].
struct SourceFile {
    path: PathBuf,
    len: u64,
    back: File,
}

impl SourceFile {
    fn open(path: &Path) -> Result<SourceFile, StoreError> {
        let err = |e: std::io::Error| StoreError::Source {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let back = File::open(path).map_err(err)?;
        let len = back.metadata().map_err(err)?.len();
        Ok(SourceFile {
            path: path.to_path_buf(),
            len,
            back,
        })
    }

    /// A buffered reader of the file from `position` to its length at the start.
    fn lines_from(&self, position: u64) -> std::io::Result<impl BufRead + use<>> {
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(position))?;
        Ok(BufReader::with_capacity(
            1 << 20,
            f.take(self.len.saturating_sub(position)),
        ))
    }

    /// [`nudge_store::tail_hash`] of the file's first `position` bytes.
    fn tail_hash(&mut self, position: u64) -> std::io::Result<String> {
        let start = position.saturating_sub(TAIL as u64);
        let mut tail = vec![0; (position - start) as usize];
        self.back.seek(SeekFrom::Start(start))?;
        self.back.read_exact(&mut tail)?;
        Ok(tail_hash_of(&tail, position))
    }
}

/// Feeds every call of `store`'s history to `engine` (fresh, made with
/// [`Code::initial`]), deploying its bundles where they were deployed;
/// `after` sees each call once it is applied (deploys are code, not calls,
/// and are not shown). Refused lines go to `dead`. Returns the history's
/// last deployed bundle, in its stored encoding.
pub fn replay_history<'b, S: Sink>(
    store: &Store,
    engine: &mut Engine<'b, S>,
    code: Code<'b>,
    start: Option<&Saved>,
    dead: &mut Vec<DeadLetter>,
    mut after: impl FnMut(&Stored<'_>),
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut last_deploy: Option<Vec<u8>> = None;
    let mut from = 0;
    if let Some(saved) = start {
        let damaged = |reason: String| StoreError::NotAStore {
            path: store.path().to_path_buf(),
            reason: format!("its checkpoint (as of call {}): {reason}", saved.call),
        };
        if nudge_runtime::engine::checkpoint::in_rows(saved.format) {
            // An engine that reads customers back when first needed loads
            // none of them now (rows of an older layout whose customers'
            // rows differ are read whole, to be written again in this one).
            let lazy = engine.pages()
                && nudge_runtime::engine::checkpoint::customers_as_current(saved.format);
            let rows = store.restore_state(lazy).map_err(|e| match e {
                StoreError::NotAStore { reason, .. } => damaged(reason),
                e => e,
            })?;
            engine
                .restore_from(rows, code.current, code.bundles)
                .map_err(|e| damaged(e.to_string()))?;
        } else {
            // An earlier release's whole state: its next checkpoint writes
            // it as rows.
            let bytes = store.checkpoint_bytes()?;
            engine
                .restore(&bytes, code.current, code.bundles)
                .map_err(|e| damaged(e.to_string()))?;
        }
        for line in saved.dead.lines() {
            dead.push(serde_json::from_str(line).map_err(|e| damaged(e.to_string()))?);
        }
        last_deploy = store.deploy_through(saved.call)?;
        from = saved.call;
    }
    store.for_each_call_after(from, |call| {
        match &call {
            Stored::Line { line, body, .. } => apply_line(engine, body, *line, dead),
            Stored::Until(t) => engine.advance_through(*t),
            Stored::Drain => engine.drain(),
            Stored::Part { step, through } => engine.replay_part(*step, *through),
            Stored::Deploy(bytes) => {
                // The first deploy is the code the engine was made with.
                if last_deploy.is_some() {
                    let bundle = code.bundle(store, bytes)?;
                    engine
                        .deploy(bundle, code.bundles)
                        .map_err(|e| StoreError::Deploy {
                            path: store.path().to_path_buf(),
                            reason: format!("replaying a deploy of the history: {e}"),
                        })?;
                }
                last_deploy = Some(bytes.to_vec());
                return Ok(());
            }
        }
        after(&call);
        Ok(())
    })?;
    Ok(last_deploy)
}

/// What [`resume`] works with besides the store and the engine.
pub struct Resume<'r> {
    /// Where the engine's sends are taken from.
    pub captured: &'r Captured,
    /// Delivers the sends an earlier run left pending.
    pub router: &'r mut Router,
    /// How far the input was read.
    pub source: &'r SourcePos,
    /// The checkpoint to start from; `None` replays the whole history.
    pub start: Option<&'r Saved>,
    /// How many pending sends are read, delivered and their results
    /// stored at a time.
    pub page: usize,
}

/// Rebuilds `engine` (fresh, over a [`LedgerSink`], made with
/// [`Code::initial`]) from `store`: from its checkpoint and the calls after
/// it, or from every call. Then deploys the current code if the history ends
/// on other code, and delivers the intents an earlier run left pending. The
/// deploy call and the delivery results go into `batch`, to be committed
/// before anything else. Refused lines of the history go to `dead`.
pub fn resume<'b, S: Sink + Feed>(
    store: &mut Store,
    engine: &mut Engine<'b, LedgerSink<S>>,
    code: Code<'b>,
    with: Resume<'_>,
    report: &mut Report,
    dead: &mut Vec<DeadLetter>,
    batch: &mut Batch<'_>,
) -> Result<Resumed, StoreError> {
    let Resume {
        captured,
        router,
        source,
        start,
        page,
    } = with;
    // Rebuild. Lines of this file applied past the read position (only an
    // unsorted run leaves any) are skipped below: the store keeps them with
    // the position; a store written before it did has them in its calls.
    let mut beyond: HashSet<u64> = source.beyond.iter().copied().collect();
    // Sends made before the checkpoint are in the ledger as it was then.
    let mut rebuilt_sends = start.map_or(0, |s| s.sends);
    report.restored = start.map_or(0, |s| s.call as u64);
    let last_deploy = replay_history(store, engine, code, start, dead, |call| {
        if let Stored::Line {
            source: s, line, ..
        } = call
            && *s == source.id
            && *line > source.line
        {
            beyond.insert(*line);
        }
        rebuilt_sends += captured.take().len() as u64;
        report.rebuilt += 1;
    })?;
    let before = store.counts()?;
    report.diverged = rebuilt_sends != before.done + before.pending + before.failed;

    let now = portable(code.current);
    let mut deployed = None;
    match last_deploy {
        Some(last) if last == now => {}
        Some(_) => {
            let d = engine
                .deploy(code.current, code.bundles)
                .map_err(|e| StoreError::Deploy {
                    path: store.path().to_path_buf(),
                    reason: e.to_string(),
                })?;
            deployed = Some(d);
            batch.calls.push(NewCall::Deploy(now));
        }
        // A new history starts with the code it is applied under.
        None => batch.calls.push(NewCall::Deploy(now)),
    }

    // Outcomes the ledger holds whose trace lines are gone: written after
    // the checkpoint the trace was cut back to, or in a trace rewritten in
    // full. They come after the rebuilt decisions, in ledger order.
    // A numbered checkpoint tells them by the ledger's index; otherwise the
    // trace's delivery records are read to pass over the ones it kept.
    let after = match start.and_then(|s| s.epoch) {
        Some(epoch) => store.settled_after(epoch)?,
        None => None,
    };
    let (settled, recorded) = match after {
        Some(settled) => (settled, nudge_store::Recorded::default()),
        None => {
            let recorded =
                engine
                    .sink_mut()
                    .take_recorded()
                    .map_err(|reason| StoreError::Open {
                        path: store.path().to_path_buf(),
                        reason: format!("cannot read the trace's delivery records: {reason}"),
                    })?;
            (store.settled(&recorded)?, recorded)
        }
    };
    for (intent, mark) in settled {
        engine
            .sink_mut()
            .delivery(&delivery_record(router, &intent, &mark));
    }

    // Intents committed but not known delivered when the last run stopped,
    // read a page at a time: a held flood may be hundreds of thousands.
    let present = pending_sends(store, router)?;
    report.retried += present.pending;
    let held = present.held(router.hold_over);
    if held.is_empty() || !present.keys.is_empty() {
        let mut after = None;
        while let Some(read) = store.pending_page(after, None, page)? {
            after = Some(read.last);
            let (done, todo): (Vec<Intent>, Vec<Intent>) = read
                .intents
                .into_iter()
                .partition(|i| present.keys.contains(&i.message.idempotency_key));
            for i in done {
                let mark = Mark::Done {
                    key: i.message.idempotency_key.clone(),
                    attempts: 0,
                };
                if !recorded.contains(&i.message.idempotency_key) {
                    engine
                        .sink_mut()
                        .delivery(&delivery_record(router, &i, &mark));
                }
                batch.marks.push(mark);
            }
            if held.is_empty() {
                // Counted as retried, not as this run's new deliveries.
                let delivered = report.delivered;
                let first = batch.marks.len();
                dispatch(router, &todo, &mut batch.marks, report);
                report.delivered = delivered;
                record_deliveries(
                    engine.sink_mut(),
                    router,
                    &todo,
                    batch.marks.get(first..).unwrap_or_default(),
                );
            }
            // Each page's results are stored before the next is read, so
            // neither the intents nor their marks pile up.
            if !batch.marks.is_empty() {
                store.commit(&mut Batch {
                    marks: std::mem::take(&mut batch.marks),
                    ..Batch::default()
                })?;
            }
        }
    }
    Ok(Resumed {
        beyond,
        deployed,
        held,
    })
}

/// The most timers one committed part of a clock step fires (see
/// [`Clock::step`]): each commit rewrites the pages its rows fall on, so
/// smaller parts write more (docs/benchmarks.md, "Clock steps in parts").
const CLOCK_PART_TIMERS: usize = 50_000;

/// How many timers one committed part of a clock step fires: with a
/// `budget` of customers in memory, at most the budget, since each timer
/// may read a customer back and hold it until the part's checkpoint. Also
/// how many pending sends are read back, delivered and their results
/// stored at a time (at a restart or a release of held sends).
/// `nudge run` and `nudge serve` both ask this.
pub fn part_timers(budget: Option<usize>) -> usize {
    budget.map_or(CLOCK_PART_TIMERS, |b| b.clamp(1, CLOCK_PART_TIMERS))
}

/// How `nudge run` takes the clock steps after its input.
struct Clock {
    /// The send circuit breaker's limit.
    max_sends: Option<usize>,
    /// `[runtime] customers_in_memory`.
    budget: Option<usize>,
    /// Dead letters the store holds (see [`checkpoint_of`]).
    dead_written: usize,
}

impl Clock {
    /// Takes `step` in parts of [`part_timers`] timers, each committed
    /// with its sends (and, with a budget, a checkpoint once more customers
    /// than it changed, so that they can be let go): a step that fires
    /// every customer's timer, as `--until` after months without input
    /// does, holds one part in memory, not the step. The step's sends go
    /// out once it is done, unless it made more than the breaker allows:
    /// then every one of them stays pending in the ledger, held, as when
    /// the step was taken whole. A run stopped between parts has committed
    /// the parts before, which a rebuild replays as they were taken.
    #[allow(clippy::too_many_arguments)]
    fn step<S: Sink + Feed>(
        &mut self,
        step: ClockStep,
        engine: &mut Engine<'_, LedgerSink<S>>,
        store: &mut Store,
        captured: &Captured,
        router: &mut Router,
        batch: &mut Batch,
        report: &mut Report,
        dead: &[DeadLetter],
    ) -> Result<(), StoreError> {
        let name = match step {
            ClockStep::Until(_) => "the clock step of --until",
            ClockStep::Drain => "the clock step of --drain",
        };
        let store_path = store.path().to_path_buf();
        let mut made = 0;
        let mut committed = 0;
        let mut to_send = Vec::new();
        let timers = part_timers(self.budget);
        loop {
            let part = engine.advance_part(step, timers);
            made += captured.len();
            match part {
                Some(through) => {
                    batch.calls.push(NewCall::Part { step, through });
                    if checkpoint_due(0, 0, self.budget, engine) {
                        batch.checkpoint =
                            Some(checkpoint_of(&store_path, engine, dead, self.dead_written)?);
                        self.dead_written = dead.len();
                    }
                }
                None => batch.calls.push(match step {
                    ClockStep::Until(t) => NewCall::Until(t),
                    ClockStep::Drain => NewCall::Drain,
                }),
            }
            batch.meta.push(("clock", engine.now().to_string()));
            no_page_fault(&store_path, engine)?;
            let intents = commit_captured(store, captured, batch)?;
            committed += intents.len() as u64;
            if self.max_sends.is_some_and(|max| made > max) {
                // Held, whatever the rest of the step makes.
                to_send = Vec::new();
            } else {
                to_send.extend(intents);
            }
            if part.is_none() {
                break;
            }
            if let Some(budget) = self.budget {
                engine.let_go(budget, &[]);
            }
        }
        if self.max_sends.is_some_and(|max| made > max) {
            report.trip(|| format!("{name} made {made} sends"));
            report.held += committed;
        } else {
            dispatch_and_record(engine, router, &to_send, &mut batch.marks, report);
        }
        Ok(())
    }
}

/// The source the calls that unset invalid device tokens are stored under:
/// not a file, so their line numbers say nothing.
pub const TOKEN_SOURCE: &str = "nudge:invalid-device-tokens";

/// Identify calls that unset `device_token` for each customer whose token
/// the push provider reported invalid, stamped at the engine's clock (at
/// `fallback`, in milliseconds, before anything set it). A customer whose
/// token changed since the send keeps the new one; each send's report
/// gives one call however often it comes (its `messageId`).
pub fn token_removals<S: Sink>(
    engine: &mut Engine<'_, S>,
    gone: Vec<InvalidToken>,
    fallback: i64,
) -> Vec<String> {
    let now = engine.now();
    // `i64::MIN`: nothing has set the clock yet.
    let at = nudge_bytecode::format_instant_ms(if now == i64::MIN { fallback } else { now });
    let mut lines = Vec::new();
    for token in gone {
        let Some((field, id)) = engine.caller_of(&token.customer) else {
            continue;
        };
        let current = match engine.profile_field(&id, "device_token") {
            Some(nudge_bytecode::Value::Str(s)) => s.trim() == token.token,
            _ => false,
        };
        if !current {
            continue;
        }
        let mut call = serde_json::json!({
            "type": "identify",
            "traits": {"device_token": null},
            "messageId": format!("fcm-invalid:{}", token.idempotency_key),
            "timestamp": at,
        });
        if let Some(fields) = call.as_object_mut() {
            fields.insert(field.to_string(), serde_json::json!(id));
        }
        lines.push(call.to_string());
    }
    lines
}

/// Applies the removals of device tokens the provider reported invalid
/// since the last call, and adds them to `calls` (stored under `source`)
/// so that a rebuild applies them at the same place; returns how many.
fn clear_invalid_tokens<S: Sink + Feed>(
    engine: &mut Engine<'_, LedgerSink<S>>,
    router: &Router,
    source: i64,
    calls: &mut Vec<NewCall<'_>>,
    dead: &mut Vec<DeadLetter>,
) -> usize {
    let gone = router.take_invalid_tokens();
    if gone.is_empty() {
        return 0;
    }
    let before = calls.len();
    // Deliveries follow applied calls, so the clock is set; the wall clock
    // only stands in should that ever change.
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    for line in token_removals(engine, gone, wall) {
        apply_line(engine, line.as_bytes(), 0, dead);
        calls.push(NewCall::Read {
            source,
            line: 0,
            body: line.into_bytes(),
        });
    }
    calls.len() - before
}

/// [`dispatch_or_hold`], then the trace learns what became of each send
/// delivered (held ones have no outcome yet).
fn dispatch_and_record<S: Sink + Feed>(
    engine: &mut Engine<'_, LedgerSink<S>>,
    router: &mut Router,
    intents: &[Intent],
    marks: &mut Vec<Mark>,
    report: &mut Report,
) {
    let first = marks.len();
    dispatch_or_hold(router, intents, marks, report);
    record_deliveries(
        engine.sink_mut(),
        router,
        intents,
        marks.get(first..).unwrap_or_default(),
    );
}

/// Delivers committed intents, or, while the breaker has delivery paused,
/// leaves them pending in the ledger and counts them as held.
fn dispatch_or_hold(
    router: &mut Router,
    intents: &[Intent],
    marks: &mut Vec<Mark>,
    report: &mut Report,
) {
    if report.paused.is_some() {
        report.held += intents.len() as u64;
    } else {
        dispatch(router, intents, marks, report);
    }
}

/// Commits `batch` with the sends the engine made since they were last
/// taken, then delivers the ones the ledger did not already hold; their
/// results are left in `batch.marks` to ride on the next commit. Returns
/// each delivered message's channel and what became of it.
pub fn commit_and_deliver(
    store: &mut Store,
    captured: &Captured,
    router: &mut Router,
    batch: &mut Batch,
    report: &mut Report,
) -> Result<Vec<(String, Delivery)>, StoreError> {
    let intents = commit_captured(store, captured, batch)?;
    Ok(deliver(router, &intents, &mut batch.marks, report))
}

/// Commits `batch` with the sends the engine made since they were last
/// taken; returns the intents the ledger did not already hold, to deliver
/// (see [`deliver`]) once the commit is acknowledged.
pub fn commit_captured(
    store: &mut Store,
    captured: &Captured,
    batch: &mut Batch,
) -> Result<Vec<Intent>, StoreError> {
    batch.intents.extend(
        captured
            .take()
            .into_iter()
            .map(|message| Intent { message }),
    );
    store.commit(batch)?;
    Ok(std::mem::take(&mut batch.intents))
}

/// Hands committed intents to their plugins, pushing each result onto
/// `marks` for the next commit. Returns each message's channel and what
/// became of it: delivered, failed, or unknown (the request went out and no
/// answer came, so the destination may have it).
pub fn deliver(
    router: &mut Router,
    intents: &[Intent],
    marks: &mut Vec<Mark>,
    report: &mut Report,
) -> Vec<(String, Delivery)> {
    let first = marks.len();
    dispatch(router, intents, marks, report);
    intents
        .iter()
        .zip(marks.get(first..).unwrap_or_default())
        .map(|(i, m)| (i.message.channel.clone(), outcome_of(m)))
        .collect()
}

/// How `DeliveryError::unknown` starts a reason.
const UNKNOWN: &str = "outcome unknown: ";

/// The outcome a mark records. An unknown outcome is kept in the ledger as
/// a failure whose reason says so (`DeliveryError::unknown` starts it with
/// `outcome unknown: `).
pub fn outcome_of(mark: &Mark) -> Delivery {
    match mark {
        Mark::Done { .. } => Delivery::Delivered,
        Mark::Failed { reason, .. } if reason.starts_with(UNKNOWN) => Delivery::Unknown,
        Mark::Failed { .. } => Delivery::Failed,
    }
}

fn dispatch(router: &mut Router, intents: &[Intent], marks: &mut Vec<Mark>, report: &mut Report) {
    if intents.is_empty() {
        return;
    }
    let first = marks.len();
    for i in intents {
        let key = i.message.idempotency_key.clone();
        match router.deliver(&i.message) {
            Ok(r) => {
                report.delivered += 1;
                marks.push(Mark::Done {
                    key,
                    attempts: r.attempts,
                });
            }
            Err(e) => {
                report.failed += 1;
                report.first_failure.get_or_insert_with(|| e.to_string());
                marks.push(Mark::Failed {
                    key,
                    attempts: e.attempts,
                    reason: e.reason,
                    retryable: e.retryable,
                });
            }
        }
    }
    // Nothing is done until it is durable at the destination; if that
    // fails, the messages stay pending and the next run tries them again.
    if let Err(e) = router.flush() {
        report.first_failure.get_or_insert_with(|| e.to_string());
        for m in marks.get_mut(first..).unwrap_or_default() {
            if let Mark::Done { key, attempts } = m {
                report.delivered -= 1;
                report.failed += 1;
                *m = Mark::Failed {
                    key: std::mem::take(key),
                    attempts: *attempts,
                    reason: e.reason.clone(),
                    retryable: true,
                };
            }
        }
    }
}

/// The sends pending in `store`: how many, by channel, and which of them
/// the outbox already holds (a run stopped between writing a message
/// there and storing that it was delivered). Only their keys are read,
/// and the outbox once, matching 16-byte fingerprints of the keys.
fn pending_sends(store: &Store, router: &Router) -> Result<Pending, StoreError> {
    // Each channel met: its name, its count, and whether the outbox is
    // where it goes; looked at once per channel, not once per send.
    let mut channels: Vec<(String, u64, bool)> = Vec::new();
    let mut to_outbox: HashMap<u128, usize> = HashMap::new();
    let mut pending = Pending::default();
    store.each_pending_key(|key, channel| {
        pending.pending += 1;
        let at = match channels.iter().position(|(c, ..)| c == channel) {
            Some(at) => at,
            None => {
                let outbox = router.outbox.is_some() && !router.routes.contains_key(channel);
                channels.push((channel.to_string(), 0, outbox));
                channels.len() - 1
            }
        };
        if let Some((_, n, outbox)) = channels.get_mut(at) {
            *n += 1;
            if *outbox {
                to_outbox.insert(nudge_runtime::dedupe::fingerprint(key), at);
            }
        }
    })?;
    if let Some(path) = router.outbox.as_ref().filter(|_| !to_outbox.is_empty()) {
        pending.keys = nudge_store::outbox::keys_present(path, |key| {
            to_outbox.contains_key(&nudge_runtime::dedupe::fingerprint(key))
        })
        .map_err(|e| StoreError::Open {
            path: store.path().to_path_buf(),
            reason: format!("cannot read the outbox to reconcile pending sends: {e}"),
        })?;
    }
    for key in &pending.keys {
        let at = to_outbox.get(&nudge_runtime::dedupe::fingerprint(key));
        if let Some((_, n, _)) = at.and_then(|&at| channels.get_mut(at)) {
            *n = n.saturating_sub(1);
        }
    }
    for (channel, n, _) in &channels {
        pending.todo.add(channel, *n);
    }
    Ok(pending)
}

/// The sends an earlier run left pending (see [`pending_sends`]).
#[derive(Default)]
struct Pending {
    /// How many there are.
    pending: u64,
    /// Those the outbox holds: delivered, their results not stored.
    keys: HashSet<String>,
    /// The others, by channel.
    todo: Held,
}

impl Pending {
    /// The sends held rather than delivered: all still to deliver when
    /// more than `limit`, none otherwise.
    fn held(&self, limit: Option<usize>) -> Held {
        let over = limit.is_some_and(|l| self.todo.total() > l as u64);
        if over {
            self.todo.clone()
        } else {
            Held::default()
        }
    }
}

/// Sends the breaker holds, pending in the ledger until released: how
/// many on each channel. Counted, not kept: the ledger has them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held(BTreeMap<String, u64>);

impl Held {
    /// Counts `n` more held sends on `channel`.
    pub fn add(&mut self, channel: &str, n: u64) {
        if n == 0 {
            return;
        }
        match self.0.get_mut(channel) {
            Some(c) => *c += n,
            None => {
                self.0.insert(channel.to_string(), n);
            }
        }
    }

    /// Counts `n` fewer held sends on `channel`.
    fn remove(&mut self, channel: &str, n: u64) {
        if let Some(c) = self.0.get_mut(channel) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                self.0.remove(channel);
            }
        }
    }

    /// Counts the sends of `intents` as held.
    pub fn hold(&mut self, intents: &[Intent]) {
        for i in intents {
            self.add(&i.message.channel, 1);
        }
    }

    /// Counts the sends of `intents` as no longer held.
    pub fn release(&mut self, intents: &[Intent]) {
        for i in intents {
            self.remove(&i.message.channel, 1);
        }
    }

    /// How many sends are held on all channels.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// True when no send is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each channel with held sends, and how many.
    pub fn channels(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(c, n)| (c.as_str(), *n))
    }
}

fn writer_gone() -> StoreError {
    StoreError::Open {
        path: PathBuf::from("state.db"),
        reason: "the store's writer thread stopped".into(),
    }
}

fn check_source(
    source: &SourcePos,
    file: &mut SourceFile,
    input: &Input<'_>,
) -> Result<(), StoreError> {
    let changed = |reason: String| StoreError::SourceChanged {
        path: PathBuf::from(input.name),
        reason,
    };
    let pos = source.position;
    if file.len < pos {
        return Err(changed(format!(
            "it has {} bytes, but {pos} were already applied",
            file.len
        )));
    }
    let hash = file.tail_hash(pos).map_err(|e| StoreError::Source {
        path: input.path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if hash != source.tail_hash {
        return Err(changed(format!(
            "its first {pos} bytes are not the ones applied before"
        )));
    }
    Ok(())
}

/// Applies one line as the in-memory replay does; a refused line becomes a
/// dead letter.
pub fn apply_line<S: Sink>(
    engine: &mut Engine<'_, S>,
    raw: &[u8],
    line: u64,
    dead: &mut Vec<DeadLetter>,
) {
    let (reason, input) = match std::str::from_utf8(raw) {
        Err(err) => (
            format!("not UTF-8 text: {err}"),
            String::from_utf8_lossy(raw).into_owned(),
        ),
        Ok(text) => {
            let text = text.trim_end_matches('\r');
            match nudge_runtime::ingest::apply_line(engine, text) {
                Ok(()) => return,
                Err(reason) => (reason, text.to_string()),
            }
        }
    };
    engine.count_dead_letter();
    dead.push(DeadLetter {
        line: line as usize,
        reason,
        input,
    });
}
