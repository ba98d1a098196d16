//! Partition workers: each holds some partitions under a lease, runs the
//! single-node engine on each partition's calls, and commits each batch —
//! the engine's changed rows, the applied stream position and the send
//! intents — in one PostgreSQL transaction fenced by the lease's epoch,
//! then acknowledges the batch's messages; its dispatcher delivers the
//! committed intents.
//!
//! - [`lease`]: claiming, renewing, releasing and the epoch fence.
//! - [`rows`]: a partition's engine state as rows in PostgreSQL.
//! - [`dispatch`]: delivering committed send intents.
//! - `pager`: reading stored customers, timers and identities back, under a budget.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use futures_util::StreamExt;
use nudge_bytecode::Bundle;
use nudge_host::durable::{self, Bundles, Captured, LedgerSink, Router};
use nudge_runtime::engine::{ClockStep, Config, Engine, Sink};
use nudge_runtime::identity::Identity;
use nudge_runtime::record::{Membership, Record};
use serde::Deserialize;
use tokio_postgres::Client;

use crate::calls::Kind;
use crate::deploy;
use crate::log::{Log, Outgoing};
use crate::{ClusterError, Settings, connect_postgres};

pub mod dispatch;
pub mod lease;
mod pager;
pub mod rows;

pub use dispatch::Dispatched;
pub use lease::Lease;

/// How long a handoff waits for its joining call by default before the
/// kept partition takes it in anyway (see `Worker::adopt_orphans`).
pub const ORPHAN_AGE: Duration = Duration::from_secs(10);

/// With a `keep` above zero, the log is trimmed once this many more
/// stream positions are old enough, not at every commit.
const TRIM_BATCH: u64 = 10_000;

/// How long a fetch of a partition's messages may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What moves a worker's engines' clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The wall clock: after each batch the engine is moved to now, firing
    /// the timers due.
    Wall,
    /// The calls' own times; once a partition has no message waiting, its
    /// clock is moved through `until` (if given), as `nudge run --until`
    /// does after its input. For replaying a stream of past calls.
    Calls {
        /// The instant (ms since the epoch) a caught-up partition runs to.
        until: Option<i64>,
    },
}

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The worker's name in `leases` and `workers`: unique among the live workers.
    pub id: String,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// How often leases are renewed and the fair share is looked at again.
    pub renew_every: Duration,
    /// The most messages of one partition applied and committed together,
    /// and the most timers a step of its clock fires per commit.
    pub batch: usize,
    /// What moves the clock.
    pub clock: Clock,
    /// Whether this worker also delivers committed send intents.
    pub dispatch: bool,
    /// How long a handoff may wait for its joining call before the kept
    /// partition takes it in anyway (see `Worker::adopt_orphans`).
    pub orphan_age: Duration,
    /// `[runtime] customers_in_memory`: the most customers each partition's
    /// engine keeps in memory once a commit holds them (those with live
    /// instances or goals stay whatever the budget); its timers due an
    /// hour or more ahead and the identities' texts are left in PostgreSQL
    /// too. They are read back when a call or a timer needs them. `None`
    /// keeps everything.
    pub customers_in_memory: Option<usize>,
}

impl Options {
    /// The defaults: 4 s leases renewed every second, batches of 1,000, the wall clock.
    pub fn new(id: &str) -> Options {
        Options {
            id: id.to_string(),
            lease: Duration::from_secs(4),
            renew_every: Duration::from_secs(1),
            batch: 1000,
            clock: Clock::Wall,
            dispatch: true,
            orphan_age: ORPHAN_AGE,
            customers_in_memory: None,
        }
    }
}

/// The code the engines run: the project compiled as `nudge serve`
/// compiles it, and the engine's configuration.
#[derive(Clone, Copy)]
pub struct Code<'b> {
    /// The current bundle.
    pub bundle: &'b Bundle,
    /// Where bundles of earlier releases restored from rows are kept.
    pub bundles: &'b Bundles,
    /// The engine's settings.
    pub config: &'b Config,
}

/// What a worker has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Calls applied to an engine and committed.
    pub applied: u64,
    /// Calls for an absorbed customer sent on to the kept one's partition.
    pub forwarded: u64,
    /// Merge records read.
    pub merges: u64,
    /// Customers handed over by another partition and taken in.
    pub taken_in: u64,
    /// Deploy records that changed a partition's code.
    pub deploys: u64,
    /// The highest stream position trimmed from a partition's log so far.
    pub trimmed_to: u64,
    /// Messages held back now (not a running total): behind a call that
    /// waits for a customer another partition has not handed over yet.
    pub held_back: u64,
    /// Messages at or below a partition's applied position, skipped.
    pub skipped: u64,
    /// Calls the engine refused (dead letters).
    pub refused: u64,
    /// Batches committed.
    pub commits: u64,
    /// Parts of clock steps committed before their step ended: a step
    /// that fires more than a batch of timers is committed a batch at a time.
    pub clock_parts: u64,
    /// Parts of deploys' arming committed: with a budget, a deploy that
    /// arms new triggers for every customer is committed a budget's worth
    /// of customers at a time.
    pub deploy_parts: u64,
    /// Send intents committed.
    pub intents: u64,
    /// Partitions taken (restored from rows).
    pub taken: u64,
    /// Partitions lost to another worker or given up.
    pub lost: u64,
    /// Commits refused by the fence: the lease had been taken.
    pub fenced: u64,
    /// Sends delivered (or found delivered) by this worker's dispatcher.
    pub delivered: u64,
    /// Customers the engines of the partitions held keep in memory now
    /// (not a running total).
    pub customers_in_memory: u64,
    /// Customers read back from PostgreSQL by the batches committed (with
    /// `customers_in_memory`).
    pub customers_read_back: u64,
}

/// A sink for everything but sends: the decision trace's records, as the
/// lines `trace.jsonl` holds, and the audience membership changes, as the
/// lines of the audience feeds, both committed with the batch that made
/// them; sends are captured by the [`LedgerSink`] in front of it.
#[derive(Default)]
pub struct Traced {
    /// Each record's instant and line, in the order they were made.
    lines: Vec<(String, String)>,
    /// Each membership change's audience, instant and line, in order.
    changes: Vec<(String, String, String)>,
}

impl Sink for Traced {
    fn deliver(
        &mut self,
        _: nudge_bytecode::Channel,
        _: &nudge_channels::Outgoing,
    ) -> Result<(), String> {
        Ok(())
    }

    fn record(&mut self, record: Record) {
        match serde_json::to_string(&record) {
            Ok(line) => self.lines.push((record.at.clone(), line)),
            Err(e) => eprintln!("warning: a trace record could not be written: {e}"),
        }
    }

    fn membership(&mut self, change: Membership) {
        match serde_json::to_string(&change) {
            Ok(line) => self.changes.push((change.audience, change.at, line)),
            Err(e) => eprintln!("warning: an audience change could not be written: {e}"),
        }
    }
}

/// A partition this worker holds.
struct Held<'b> {
    lease: Lease,
    engine: Engine<'b, LedgerSink<Traced>>,
    captured: Captured,
    /// The stream sequence of the last message committed.
    applied: u64,
    consumer: PullConsumer,
    /// Absorbed customer → (kept customer, its partition).
    forwards: HashMap<i64, (i64, u32)>,
    /// Whether `Clock::Calls`' `until` was reached and committed.
    finished: bool,
    /// Messages fetched and not applied yet: the first is a call waiting
    /// for a customer another partition has not handed over yet.
    pending: VecDeque<Message>,
    /// The highest stream sequence fetched: a held-back message delivered
    /// again is not taken twice.
    fetched: u64,
    /// The fingerprint of the code the partition's engine runs now.
    code: i64,
    /// Applied positions committed, with when: the log is trimmed up to
    /// the latest one older than `[cluster] keep`.
    committed: VecDeque<(u64, Instant)>,
    /// The log is trimmed below this sequence.
    trimmed: u64,
    /// Customers handed to this partition whose joining call never said
    /// so (see [`Worker::adopt_orphans`]), to take in at the next step.
    orphans: Vec<(i64, Option<Vec<u8>>)>,
    /// Customers the engine had read back from PostgreSQL at the last commit.
    read_back: u64,
}

/// A merge record's body, as the ingest node writes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MergeRecord {
    kept: i64,
    absorbed: i64,
    kept_partition: u32,
    absorbed_partition: u32,
    /// When the joining call happened (absent from records of older nodes).
    #[serde(default)]
    call_at: Option<String>,
    /// The absorbed customer's identifiers, as `[kind, value]`.
    #[serde(default)]
    identities: Vec<(String, String)>,
}

impl MergeRecord {
    /// When the joining call happened, in ms since the epoch.
    fn call_at(&self) -> Option<i64> {
        let t = chrono::DateTime::parse_from_rfc3339(self.call_at.as_deref()?).ok()?;
        Some(t.timestamp_millis())
    }

    /// The absorbed customer's identifiers, as the engine names them.
    fn identities(&self) -> Vec<Identity> {
        self.identities
            .iter()
            .filter_map(|(kind, value)| {
                Some(match Kind::of_name(kind)? {
                    Kind::User => Identity::User(value.clone()),
                    Kind::Anonymous => Identity::Anonymous(value.clone()),
                    Kind::Email => Identity::email(value),
                })
            })
            .collect()
    }
}

/// What a batch moves between partitions, committed with it.
#[derive(Default)]
struct Moves {
    /// Forwardings learnt: (absorbed, kept, kept's partition).
    forwards: Vec<(i64, i64, u32)>,
    /// Customers handed over to the kept customer's partition.
    gives: Vec<Give>,
    /// Absorbed customers whose handed-over state was taken in.
    takes: Vec<i64>,
}

/// An absorbed customer's state, for the kept customer's partition.
struct Give {
    absorbed: i64,
    kept: i64,
    kept_partition: u32,
    /// What [`nudge_runtime::engine::Machine::hand_off`] gave: `None` when
    /// the engine held nothing of the customer.
    state: Option<Vec<u8>>,
}

/// A partition worker.
pub struct Worker<'b> {
    settings: Arc<Settings>,
    options: Options,
    code: Code<'b>,
    /// The code's fingerprint, stored with each commit: a partition
    /// committed under other code is deployed the current one on takeover.
    fingerprint: i64,
    pg: Client,
    log: Log,
    held: BTreeMap<u32, Held<'b>>,
    /// The leases held, as the renewal task last saw them.
    leases: Arc<Mutex<BTreeMap<u32, i64>>>,
    renewal: tokio::task::JoinHandle<()>,
    router: Option<Router>,
    progress: Progress,
    balanced: Option<Instant>,
    /// Bundles of deploys read from `deploys`, by number, with their fingerprint.
    deployed: HashMap<i64, (&'b Bundle, i64)>,
    /// When handoffs nobody took were last looked for.
    orphans_checked: Option<Instant>,
    /// Reads stored customers back for the engines, with a budget (started
    /// at the first takeover).
    reader: Option<pager::Reader>,
}

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// FNV-1a of the code's portable bytes.
/// The fingerprint of a bundle's code, as `partitions.code` records it.
pub(crate) fn fingerprint_of(bundle: &Bundle) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in nudge_store::portable(bundle) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Creates the workers' tables when missing (a cluster created before
/// workers existed gets them here) and moves older layouts onto this
/// build's, under init's lock.
pub(crate) async fn ensure_tables(client: &mut Client, s: &Settings) -> Result<(), ClusterError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| ClusterError::pg("starting a transaction", &e))?;
    tx.execute("SELECT pg_advisory_xact_lock(1853189991, 1)", &[])
        .await
        .map_err(|e| ClusterError::pg("locking for the workers' tables", &e))?;
    tx.batch_execute(&rows::ddl(s))
        .await
        .map_err(|e| ClusterError::pg("creating the workers' tables", &e))?;
    tx.commit()
        .await
        .map_err(|e| ClusterError::pg("committing the workers' tables", &e))
}

impl<'b> Worker<'b> {
    /// Connects to PostgreSQL and NATS, checks the cluster, creates the
    /// workers' tables when missing and starts renewing leases. `router`
    /// delivers committed sends; `None` leaves them to other dispatchers.
    pub async fn connect(
        settings: &Settings,
        options: Options,
        code: Code<'b>,
        router: Option<Router>,
    ) -> Result<Worker<'b>, ClusterError> {
        settings
            .check()
            .map_err(|what| ClusterError::Mismatch { what })?;
        let mut pg = connect_postgres(settings).await?;
        crate::init::check_recorded(&pg, settings).await?;
        ensure_tables(&mut pg, settings).await?;
        let log = Log::connect(settings).await?;
        let settings = Arc::new(settings.clone());
        lease::heartbeat(&pg, &settings, &options.id).await?;
        let leases = Arc::new(Mutex::new(BTreeMap::new()));
        let renewal = tokio::spawn(renew(
            Arc::clone(&settings),
            options.clone(),
            Arc::clone(&leases),
        ));
        Ok(Worker {
            fingerprint: fingerprint_of(code.bundle),
            settings,
            options,
            code,
            pg,
            log,
            held: BTreeMap::new(),
            leases,
            renewal,
            router,
            progress: Progress::default(),
            balanced: None,
            deployed: HashMap::new(),
            orphans_checked: None,
            reader: None,
        })
    }

    /// The partitions held, with their engines ready.
    pub fn partitions(&self) -> Vec<u32> {
        self.held.keys().copied().collect()
    }

    /// What the worker has done so far.
    pub fn progress(&self) -> Progress {
        let mut p = self.progress;
        p.customers_in_memory = self
            .held
            .values()
            .map(|h| h.engine.paging().in_memory)
            .sum();
        p
    }

    /// One round: look at the leases (when due), apply and commit what is
    /// waiting in each partition held, and deliver committed sends.
    /// Returns whether anything was done (else the caller may wait a bit).
    pub async fn step(&mut self) -> Result<bool, ClusterError> {
        if self
            .balanced
            .is_none_or(|t| t.elapsed() >= self.options.renew_every)
        {
            self.balanced = Some(Instant::now());
            self.balance().await?;
        }
        if self
            .orphans_checked
            .is_none_or(|t| t.elapsed() >= self.options.orphan_age)
        {
            self.orphans_checked = Some(Instant::now());
            self.adopt_orphans().await?;
        }
        let mut busy = false;
        let numbers: Vec<u32> = self.held.keys().copied().collect();
        for n in numbers {
            let Some(mut held) = self.held.remove(&n) else {
                continue;
            };
            match self.step_partition(&mut held).await {
                Ok(did) => {
                    busy |= did;
                    self.held.insert(n, held);
                }
                Err(e) => {
                    // The partition is rebuilt from its rows if it is still
                    // ours; what this engine applied past them is dropped.
                    self.progress.lost += 1;
                    if let ClusterError::LeaseLost { .. } = e {
                        self.progress.fenced += 1;
                        self.forget(held.lease);
                    } else {
                        eprintln!("warning: partition {n}: {e}; taking it again from its rows");
                    }
                }
            }
        }
        self.progress.held_back = self.held.values().map(|h| h.pending.len() as u64).sum();
        if self.options.dispatch
            && let Some(router) = self.router.as_mut()
        {
            let done = dispatch::dispatch_once(
                &mut self.pg,
                &self.settings,
                &self.options.id,
                router,
                500,
                self.options.lease * 2,
            )
            .await?;
            self.progress.delivered += (done.delivered + done.found) as u64;
            busy |= done.total() > 0;
        }
        Ok(busy)
    }

    /// Runs rounds until `stop` completes, then gives the leases up; a
    /// round that fails (a service away) is tried again after a second.
    pub async fn run_until(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), ClusterError> {
        tokio::pin!(stop);
        loop {
            let stepped = tokio::select! {
                () = &mut stop => break,
                r = self.step() => r,
            };
            let busy = match stepped {
                Ok(busy) => busy,
                Err(e) => {
                    // PostgreSQL or NATS went away: try again shortly. The
                    // leases lapse meanwhile if it lasts, and others (or
                    // this worker, later) take the partitions from their rows.
                    eprintln!("warning: {e}; trying again in a second");
                    tokio::select! {
                        () = &mut stop => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    if self.pg.is_closed() {
                        match connect_postgres(&self.settings).await {
                            Ok(c) => self.pg = c,
                            Err(e) => eprintln!("warning: {e}"),
                        }
                    }
                    continue;
                }
            };
            if !busy {
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
        self.shutdown().await
    }

    /// Stops renewing and gives every lease up at once, so that other
    /// workers take the partitions without waiting for them to expire.
    pub async fn shutdown(&mut self) -> Result<(), ClusterError> {
        self.renewal.abort();
        // Every lease, including one whose engine a round cut short by the
        // stop had in hand.
        let mut held: BTreeMap<u32, i64> = self
            .leases
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        held.extend(
            self.held
                .values()
                .map(|h| (h.lease.partition, h.lease.epoch)),
        );
        self.held.clear();
        for (partition, epoch) in held {
            lease::release(
                &self.pg,
                &self.settings,
                &self.options.id,
                Lease { partition, epoch },
            )
            .await?;
        }
        lease::leave(&self.pg, &self.settings, &self.options.id).await
    }

    fn forget(&mut self, lost: Lease) {
        if let Ok(mut leases) = self.leases.lock()
            && leases.get(&lost.partition) == Some(&lost.epoch)
        {
            leases.remove(&lost.partition);
        }
    }

    /// Claims partitions up to the fair share, gives up those beyond it,
    /// drops engines whose lease was lost and takes over new ones.
    async fn balance(&mut self) -> Result<(), ClusterError> {
        let (s, id) = (&self.settings, self.options.id.as_str());
        lease::heartbeat(&self.pg, s, id).await?;
        let share = lease::fair_share(&self.pg, s, self.options.lease).await?;
        let count = self.leases.lock().map(|l| l.len()).unwrap_or(0);
        if count < share {
            let claimed = lease::claim(&self.pg, s, id, share - count, self.options.lease).await?;
            if let Ok(mut shared) = self.leases.lock() {
                for l in claimed {
                    shared.insert(l.partition, l.epoch);
                }
            }
        } else if count > share {
            // The highest go: a joining worker claims from the lowest free.
            let extra: Vec<Lease> = self
                .leases
                .lock()
                .map(|l| {
                    l.iter()
                        .rev()
                        .take(count - share)
                        .map(|(&partition, &epoch)| Lease { partition, epoch })
                        .collect()
                })
                .unwrap_or_default();
            for l in extra {
                self.held.remove(&l.partition);
                if let Ok(mut shared) = self.leases.lock() {
                    shared.remove(&l.partition);
                }
                lease::release(&self.pg, s, id, l).await?;
            }
        }
        let leases: BTreeMap<u32, i64> = self.leases.lock().map(|l| l.clone()).unwrap_or_default();
        // Engines whose lease is gone, or was taken again at a new epoch.
        let stale: Vec<u32> = self
            .held
            .iter()
            .filter(|(p, h)| leases.get(p) != Some(&h.lease.epoch))
            .map(|(p, _)| *p)
            .collect();
        for p in stale {
            self.held.remove(&p);
            self.progress.lost += 1;
        }
        for (&partition, &epoch) in &leases {
            if self.held.contains_key(&partition) {
                continue;
            }
            let l = Lease { partition, epoch };
            match self.take_over(l).await {
                Ok(h) => {
                    self.held.insert(partition, h);
                    self.progress.taken += 1;
                }
                Err(e) => eprintln!("warning: cannot take partition {partition}: {e}"),
            }
        }
        Ok(())
    }

    /// Restores a partition's engine from its rows (no replay of history)
    /// and reads its log from the message after the applied position.
    async fn take_over(&mut self, l: Lease) -> Result<Held<'b>, ClusterError> {
        let Code {
            bundle,
            bundles,
            config,
        } = self.code;
        let budget = self.options.customers_in_memory.is_some();
        let stored = rows::read(&self.pg, &self.settings, l.partition, budget).await?;
        let (sink, captured) = LedgerSink::new(Traced::default());
        // The worker's budget is the engine's (a deploy arms in parts of it).
        let config = nudge_runtime::engine::Config {
            customers_in_memory: self.options.customers_in_memory,
            ..config.clone()
        };
        let mut engine = Engine::new(bundle, sink, config, i64::MIN);
        if budget {
            let reader = match self.reader.take() {
                Some(r) => r,
                None => pager::Reader::start(&self.settings)?,
            };
            // Before the restore: it leaves the customers' rows in PostgreSQL.
            engine.set_pager(Box::new(reader.pager(l.partition)));
            self.reader = Some(reader);
        }
        let engine_err = |doing: &str, e: String| ClusterError::Engine {
            partition: l.partition,
            reason: format!("{doing}: {e}"),
        };
        let mut code = self.fingerprint;
        let restored = match (stored.rows, stored.lazy) {
            (Some(rows), _) => engine.restore_rows(rows, bundle, bundles).map(|()| true),
            (None, Some(r)) => engine.restore_from(r, bundle, bundles).map(|()| true),
            (None, None) => Ok(false),
        }
        .map_err(|e| engine_err("restoring its state", e.to_string()))?;
        if restored {
            code = stored.code;
            // Once code is deployed through the log, the log says what each
            // partition runs; before, a worker brings its own.
            if stored.code != self.fingerprint && !deploy::any(&self.pg, &self.settings).await? {
                engine
                    .deploy(bundle, bundles)
                    .map_err(|e| engine_err("deploying the current code", e.to_string()))?;
                code = self.fingerprint;
            }
        }
        let consumer = self.consumer(l, stored.applied).await?;
        Ok(Held {
            lease: l,
            engine,
            captured,
            applied: stored.applied,
            consumer,
            forwards: stored
                .forwards
                .into_iter()
                .map(|(absorbed, kept, kp)| (absorbed, (kept, kp)))
                .collect(),
            finished: false,
            pending: VecDeque::new(),
            fetched: stored.applied,
            code,
            committed: VecDeque::new(),
            trimmed: 0,
            orphans: Vec::new(),
            read_back: 0,
        })
    }

    /// The partition's consumer for this lease, starting after `applied`.
    /// Each epoch has its own, so a worker that lost the lease and still
    /// fetches takes nothing from the new holder; messages it fetched and
    /// could not commit come to the new holder at once, without waiting
    /// for an acknowledgement timeout. The previous holder's consumer is
    /// left for the server to remove once idle (a minute).
    async fn consumer(&self, l: Lease, applied: u64) -> Result<PullConsumer, ClusterError> {
        let name = format!("{}-p{}-e{}", self.settings.prefix, l.partition, l.epoch);
        let stream = self
            .log
            .jetstream()
            .get_stream(self.settings.stream())
            .await
            .map_err(|e| ClusterError::nats("looking up the stream", e))?;
        let deliver_policy = if applied == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: applied + 1,
            }
        };
        stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    name: Some(name.clone()),
                    filter_subject: self.settings.subject(l.partition),
                    deliver_policy,
                    ack_policy: AckPolicy::All,
                    ack_wait: Duration::from_secs(60),
                    max_ack_pending: 100_000,
                    inactive_threshold: Duration::from_secs(60),
                    ..pull::Config::default()
                },
            )
            .await
            .map_err(|e| ClusterError::nats(&format!("creating consumer `{name}`"), e))
    }

    /// Applies what is waiting in one partition and commits it; moves the
    /// clock as [`Clock`] says. Returns whether anything was committed.
    ///
    /// A call that joins a customer of another partition waits, with every
    /// message after it, until that partition has handed the customer over
    /// (`handoffs`): the customer's state is taken in, then the call is
    /// applied, as one engine holding both would apply it.
    async fn step_partition(&mut self, h: &mut Held<'b>) -> Result<bool, ClusterError> {
        let nats = |e: &dyn std::fmt::Display| ClusterError::nats("reading a partition", e);
        let mut batch: Vec<Message> = h.pending.drain(..).collect();
        let room = self.options.batch.max(1).saturating_sub(batch.len());
        if room > 0 {
            // A consumer removed under a worker that lost its lease answers
            // nothing: the fetch is bounded.
            let fetched = tokio::time::timeout(FETCH_TIMEOUT, async {
                let mut messages = h
                    .consumer
                    .fetch()
                    .max_messages(room)
                    .messages()
                    .await
                    .map_err(|e| nats(&e))?;
                let mut got = Vec::new();
                while let Some(m) = messages.next().await {
                    got.push(m.map_err(|e| nats(&e))?);
                }
                Ok::<_, ClusterError>(got)
            })
            .await
            .map_err(|_| ClusterError::nats("reading a partition", "no answer in time"))?;
            for m in fetched? {
                let seq = m.info().map_err(|e| nats(&e))?.stream_sequence;
                // A message held back and delivered again meanwhile.
                if seq > h.fetched || seq <= h.applied {
                    h.fetched = h.fetched.max(seq);
                    batch.push(m);
                }
            }
        }
        let mut moves = Moves::default();
        // A partition taken over between two parts of a deploy's arming
        // goes on with them before any call.
        self.arm_in_parts(h, None, &moves).await?;
        for (absorbed, state) in std::mem::take(&mut h.orphans) {
            self.take_in(h, &mut moves, absorbed, state);
        }
        let mut forward = Vec::new();
        let mut last = None;
        let mut applied = 0u64;
        let mut dead = Vec::new();
        let mut held_from = None;
        if self.options.customers_in_memory.is_some() {
            // On the wall clock the batch is followed by a step to now.
            let now = matches!(self.options.clock, Clock::Wall).then(now_ms);
            read_ahead(&mut h.engine, &batch, h.applied, now, self.options.batch);
        }
        for (i, m) in batch.iter().enumerate() {
            let seq = m.info().map_err(|e| nats(&e))?.stream_sequence;
            if seq <= h.applied {
                // Committed before; its acknowledgement was lost.
                self.progress.skipped += 1;
                continue;
            }
            let header = |name: &str| {
                m.headers
                    .as_ref()
                    .and_then(|hs| hs.get(name))
                    .map(|v| v.as_str().to_string())
            };
            match header("Nudge-Kind").as_deref() {
                Some("call") => {
                    let customer = header("Nudge-Customer").and_then(|c| c.parse::<i64>().ok());
                    let absorbs: Vec<i64> = header("Nudge-Absorbs")
                        .map(|l| l.split(',').filter_map(|a| a.trim().parse().ok()).collect())
                        .unwrap_or_default();
                    if let Some(&(kept, kept_partition)) = customer.and_then(|c| h.forwards.get(&c))
                    {
                        let line = String::from_utf8_lossy(&m.payload).into_owned();
                        forward.push(Outgoing::Call {
                            partition: kept_partition,
                            customer: kept,
                            message_id: Some(format!("nudge-forward:{}:{seq}", h.lease.partition)),
                            line,
                            absorbs,
                        });
                    } else {
                        if !absorbs.is_empty() {
                            let Some(states) = self.handed_over(&absorbs).await? else {
                                held_from = Some(i);
                                break;
                            };
                            for (absorbed, state) in states {
                                self.take_in(h, &mut moves, absorbed, state);
                            }
                        }
                        durable::apply_line(&mut h.engine, &m.payload, seq, &mut dead);
                        applied += 1;
                    }
                }
                Some("merge") => {
                    self.progress.merges += 1;
                    if let Ok(r) = serde_json::from_slice::<MergeRecord>(&m.payload)
                        && r.absorbed_partition == h.lease.partition
                        && r.kept_partition != h.lease.partition
                    {
                        h.forwards.insert(r.absorbed, (r.kept, r.kept_partition));
                        moves.forwards.push((r.absorbed, r.kept, r.kept_partition));
                        // The customer as one engine would have it when the
                        // joining call came: its timers due before then fired.
                        if let Some(t) = r.call_at()
                            && t > h.engine.now()
                        {
                            h.engine.advance_before(t);
                        }
                        let state = h.engine.hand_off(&r.identities()).map_err(|e| {
                            ClusterError::Engine {
                                partition: h.lease.partition,
                                reason: format!("handing customer {} over: {e}", r.absorbed),
                            }
                        })?;
                        moves.gives.push(Give {
                            absorbed: r.absorbed,
                            kept: r.kept,
                            kept_partition: r.kept_partition,
                            state,
                        });
                    }
                }
                Some("deploy") => {
                    if let Some(n) = header("Nudge-Deploy").and_then(|n| n.parse::<i64>().ok()) {
                        let (bundle, code) = self.deployed_bundle(n).await?;
                        if code != h.code {
                            match h.engine.deploy(bundle, self.code.bundles) {
                                Ok(_) => {
                                    h.code = code;
                                    self.progress.deploys += 1;
                                    if h.engine.arming() {
                                        // Its parts are committed below; the
                                        // messages after it wait for them.
                                        held_from = Some(i + 1);
                                        last = Some(seq);
                                        break;
                                    }
                                }
                                Err(e) => eprintln!(
                                    "error: partition {}: deploy {n} refused, the partition keeps its code: {e}",
                                    h.lease.partition
                                ),
                            }
                        }
                    }
                }
                _ => {}
            }
            last = Some(seq);
        }
        if let Some(i) = held_from {
            h.pending.extend(batch.drain(i..));
        }

        for d in &dead {
            eprintln!(
                "warning: partition {}: message {} refused: {}",
                h.lease.partition, d.line, d.reason
            );
        }
        let idle = batch.is_empty() && h.pending.is_empty();
        if !forward.is_empty() {
            // Before any commit (a step of the clock may commit in parts):
            // a crash in between forwards again, and the log drops the
            // repeat by its id.
            self.log.publish(&forward).await?;
            self.progress.forwarded += forward.len() as u64;
        }
        self.arm_in_parts(h, last, &moves).await?;
        match self.options.clock {
            // While a call waits for a customer handed over, the clock
            // waits too: no timer of the person fires before the join.
            Clock::Wall if !h.pending.is_empty() => {}
            Clock::Wall => {
                let now = now_ms();
                if now > h.engine.now() {
                    self.advance(h, ClockStep::Until(now), last, &moves).await?;
                }
            }
            Clock::Calls { until: Some(t) } if idle && !h.finished => {
                self.advance(h, ClockStep::Until(t), last, &moves).await?;
                h.finished = true;
                // The state reached is committed even without a send.
                self.commit(h, None, &moves).await?;
                return Ok(true);
            }
            Clock::Calls { .. } => {}
        }
        if !idle {
            h.finished = false;
        }
        if last.is_none()
            && moves.takes.is_empty()
            && h.captured.is_empty()
            && h.engine.sink_mut().feeds_mut().lines.is_empty()
            && h.engine.sink_mut().feeds_mut().changes.is_empty()
        {
            // Nothing new (a tick that sent and recorded nothing is redone
            // after a restart, to the same effect).
            if let Some(m) = batch.last() {
                m.ack().await.map_err(|e| nats(&e))?;
            }
            return Ok(false);
        }
        self.commit(h, last, &moves).await?;
        self.trim(h).await;
        self.progress.applied += applied;
        self.progress.refused += dead.len() as u64;
        if let Some(m) = batch.last() {
            // Every message up to this one (the consumer acknowledges all);
            // messages held back are acknowledged once applied.
            if let Err(e) = m.ack().await {
                eprintln!(
                    "warning: partition {}: acknowledging: {e}",
                    h.lease.partition
                );
            }
        }
        Ok(true)
    }

    /// Arms a deploy's new triggers a budget's worth of customers at a
    /// time, committing each part (through `applied`, and `moves`, as
    /// [`Worker::advance`] does) so that its customers are let go before
    /// the next; any input would arm the rest at once.
    async fn arm_in_parts(
        &mut self,
        h: &mut Held<'b>,
        applied: Option<u64>,
        moves: &Moves,
    ) -> Result<(), ClusterError> {
        let part = self.options.customers_in_memory.unwrap_or(usize::MAX);
        while h.engine.arming() {
            h.engine.arm_part(part).map_err(|e| ClusterError::Engine {
                partition: h.lease.partition,
                reason: format!("arming a deploy's new triggers: {e}"),
            })?;
            self.commit(h, applied, moves).await?;
            self.progress.deploy_parts += 1;
        }
        Ok(())
    }

    /// Takes `step` of the partition's clock a batch of timers at a time,
    /// committing each part but the last (the caller's commit takes it,
    /// with the calls applied before, through `applied`, and `moves`, which
    /// every part commits again to the same effect): after downtime a tick
    /// may fire every timer of the partition, and its sends and trace
    /// would otherwise wait in memory until it ended. The parts decide
    /// what the step whole decides.
    async fn advance(
        &mut self,
        h: &mut Held<'b>,
        step: ClockStep,
        applied: Option<u64>,
        moves: &Moves,
    ) -> Result<(), ClusterError> {
        let timers = self.options.batch.max(1);
        // With a budget, each part's timers' customers are read back
        // together before it fires them.
        let budget = self.options.customers_in_memory.is_some();
        let ahead = |engine: &mut Engine<'b, _>| {
            if budget && let ClockStep::Until(through) = step {
                engine.read_timers_ahead(through, timers);
            }
        };
        ahead(&mut h.engine);
        while h.engine.advance_part(step, timers).is_some() {
            self.commit(h, applied, moves).await?;
            self.progress.clock_parts += 1;
            ahead(&mut h.engine);
        }
        Ok(())
    }

    /// Removes from the log the partition's messages committed longer
    /// than `[cluster] keep` ago (with a `keep` above zero, once [`TRIM_BATCH`]
    /// positions are old enough): they are
    /// in the partition's rows, and a worker taking it over reads after its
    /// applied position. A failure is only said: the next commit tries again.
    async fn trim(&mut self, h: &mut Held<'b>) {
        let Some(keep) = self.settings.keep else {
            return;
        };
        let now = Instant::now();
        if h.committed.back().is_none_or(|&(seq, _)| seq < h.applied) {
            h.committed.push_back((h.applied, now));
        }
        let mut upto = None;
        while let Some(&(seq, at)) = h.committed.front() {
            if now.duration_since(at) < keep {
                break;
            }
            upto = Some(seq);
            h.committed.pop_front();
        }
        let Some(upto) = upto else {
            return;
        };
        // Keep the newest position that is old enough as the next bound.
        h.committed
            .push_front((upto, now.checked_sub(keep).unwrap_or(now)));
        if upto < h.trimmed
            || (keep > Duration::ZERO && h.trimmed > 0 && upto - h.trimmed < TRIM_BATCH)
        {
            return;
        }
        let purged = async {
            let stream = self
                .log
                .jetstream()
                .get_stream(self.settings.stream())
                .await
                .map_err(|e| e.to_string())?;
            stream
                .purge()
                .filter(self.settings.subject(h.lease.partition))
                .sequence(upto + 1)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match purged {
            Ok(_) => {
                h.trimmed = upto + 1;
                self.progress.trimmed_to = self.progress.trimmed_to.max(upto);
            }
            Err(e) => eprintln!(
                "warning: partition {}: trimming the log: {e}",
                h.lease.partition
            ),
        }
    }

    /// Takes customer `absorbed`'s handed-over state (if its partition's
    /// engine held any) into partition `h`'s engine, and notes the handoff
    /// taken for the batch's commit. State that cannot be read is said and
    /// dropped rather than stopping the partition for ever.
    fn take_in(
        &mut self,
        h: &mut Held<'b>,
        moves: &mut Moves,
        absorbed: i64,
        state: Option<Vec<u8>>,
    ) {
        if let Some(bytes) = state
            && let Err(e) = h.engine.take_in(&bytes, self.code.bundles)
        {
            eprintln!(
                "error: partition {}: customer {absorbed} handed over cannot be taken in, and is lost: {e}",
                h.lease.partition
            );
        }
        moves.takes.push(absorbed);
        self.progress.taken_in += 1;
    }

    /// Finds customers handed to a partition this worker holds more than
    /// `orphan_age` ago and still not taken in. Their joining call came
    /// without `Nudge-Absorbs` (a request that failed after the identity
    /// stage committed the merge and was retried: the retry joins nothing
    /// new); they are taken in at the partition's next step, so nothing
    /// handed over is lost. A joining call that does come later finds them
    /// taken and goes on.
    async fn adopt_orphans(&mut self) -> Result<(), ClusterError> {
        let held: Vec<i32> = self.held.keys().map(|&p| p as i32).collect();
        if held.is_empty() {
            return Ok(());
        }
        let rows = self
            .pg
            .query(
                &format!(
                    "SELECT kept_partition, absorbed, state FROM {}
                     WHERE taken_at IS NULL AND kept_partition = ANY($1)
                       AND made_at < now() - $2::float8 * interval '1 second'",
                    self.settings.table("handoffs")
                ),
                &[&held, &self.options.orphan_age.as_secs_f64()],
            )
            .await
            .map_err(|e| ClusterError::pg("looking for handoffs not taken", &e))?;
        for r in rows {
            let p = u32::try_from(r.get::<_, i32>(0)).unwrap_or(u32::MAX);
            if let Some(h) = self.held.get_mut(&p) {
                let absorbed: i64 = r.get(1);
                if !h.orphans.iter().any(|(a, _)| *a == absorbed) {
                    h.orphans.push((absorbed, r.get(2)));
                }
            }
        }
        Ok(())
    }

    /// Deploy `seq`'s bundle (kept for the worker's life) and fingerprint.
    async fn deployed_bundle(&mut self, seq: i64) -> Result<(&'b Bundle, i64), ClusterError> {
        if let Some(&found) = self.deployed.get(&seq) {
            return Ok(found);
        }
        let (bundle, code) = deploy::bundle_of(&self.pg, &self.settings, seq).await?;
        let bundles: &'b Bundles = self.code.bundles;
        let bundle: &'b Bundle = bundles.alloc(bundle);
        self.deployed.insert(seq, (bundle, code));
        Ok((bundle, code))
    }

    /// The states handed over for `absorbed` customers, once every one is
    /// there: `None` for one already taken in. `None` while any is missing
    /// (its partition has not reached the merge record yet).
    async fn handed_over(
        &self,
        absorbed: &[i64],
    ) -> Result<Option<Vec<(i64, Option<Vec<u8>>)>>, ClusterError> {
        let rows = self
            .pg
            .query(
                &format!(
                    "SELECT absorbed, state, taken_at IS NOT NULL FROM {} WHERE absorbed = ANY($1)",
                    self.settings.table("handoffs")
                ),
                &[&absorbed],
            )
            .await
            .map_err(|e| ClusterError::pg("reading handoffs", &e))?;
        if rows.len() < absorbed.len() {
            // A merge record an ingest node failed to publish: published
            // here, so the absorbed partition is told now rather than at
            // the next sweep (the log drops a repeat by its id).
            let missing = crate::stage::unpublished_of(&self.pg, &self.settings, absorbed).await?;
            if !missing.is_empty() {
                let records: Vec<Outgoing> = missing.iter().cloned().map(Outgoing::Merge).collect();
                self.log.publish(&records).await?;
                let ids: Vec<i64> = missing.iter().map(|m| m.absorbed).collect();
                crate::stage::mark_published(&self.pg, &self.settings, &ids).await?;
            }
            return Ok(None);
        }
        Ok(Some(
            rows.iter()
                .filter(|r| !r.get::<_, bool>(2))
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        ))
    }

    /// Commits the engine's changes, the applied position and the send
    /// intents of partition `h` in one transaction, fenced by its lease.
    async fn commit(
        &mut self,
        h: &mut Held<'b>,
        applied: Option<u64>,
        moves: &Moves,
    ) -> Result<(), ClusterError> {
        let engine_err = |e: String| ClusterError::Engine {
            partition: h.lease.partition,
            reason: e,
        };
        let changes = h
            .engine
            .take_changes()
            .map_err(|e| engine_err(e.to_string()))?;
        let (timer_seq, names_stored) = (changes.timer_seq, changes.names_stored);
        let sends = h.captured.take();
        let trace = std::mem::take(&mut h.engine.sink_mut().feeds_mut().lines);
        let memberships = std::mem::take(&mut h.engine.sink_mut().feeds_mut().changes);
        let s = &*self.settings;
        let p = h.lease.partition as i32;
        let tx = self
            .pg
            .transaction()
            .await
            .map_err(|e| ClusterError::pg("starting a commit", &e))?;
        lease::fence(&tx, s, &self.options.id, h.lease).await?;
        rows::write(&tx, s, h.lease.partition, changes).await?;
        let position = applied.unwrap_or(h.applied);
        tx.execute(
            &format!(
                "INSERT INTO {} (partition, applied, code, clock, committed_at)
                 VALUES ($1, $2, $3, $4, now())
                 ON CONFLICT (partition) DO UPDATE SET applied = excluded.applied,
                     code = excluded.code, clock = excluded.clock, committed_at = now()",
                s.table("partitions")
            ),
            &[&p, &(position as i64), &h.code, &h.engine.now()],
        )
        .await
        .map_err(|e| ClusterError::pg("writing the applied position", &e))?;
        for g in &moves.gives {
            tx.execute(
                &format!(
                    "INSERT INTO {} (absorbed, kept, partition, kept_partition, state)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (absorbed) DO NOTHING",
                    s.table("handoffs")
                ),
                &[
                    &g.absorbed,
                    &g.kept,
                    &p,
                    &(g.kept_partition as i32),
                    &g.state,
                ],
            )
            .await
            .map_err(|e| ClusterError::pg("writing a handoff", &e))?;
        }
        if !moves.takes.is_empty() {
            tx.execute(
                &format!(
                    "UPDATE {} SET taken_at = now(), state = NULL WHERE absorbed = ANY($1)",
                    s.table("handoffs")
                ),
                &[&moves.takes],
            )
            .await
            .map_err(|e| ClusterError::pg("marking handoffs taken", &e))?;
        }
        for (absorbed, kept, kept_partition) in &moves.forwards {
            tx.execute(
                &format!(
                    "INSERT INTO {} (absorbed, partition, kept, kept_partition)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (absorbed) DO NOTHING",
                    s.table("forwards")
                ),
                &[absorbed, &p, kept, &(*kept_partition as i32)],
            )
            .await
            .map_err(|e| ClusterError::pg("writing a forwarding", &e))?;
        }
        if !sends.is_empty() {
            let mut keys = Vec::with_capacity(sends.len());
            let mut channels = Vec::with_capacity(sends.len());
            let mut contents = Vec::with_capacity(sends.len());
            for m in &sends {
                keys.push(m.idempotency_key.clone());
                channels.push(m.channel.clone());
                contents.push(serde_json::to_string(m).map_err(|e| engine_err(e.to_string()))?);
            }
            tx.execute(
                &format!(
                    "INSERT INTO {} (key, partition, channel, contents)
                     SELECT k, $1, c, m FROM unnest($2::text[], $3::text[], $4::text[]) AS u(k, c, m)
                     ON CONFLICT (key) DO NOTHING",
                    s.table("send_intents")
                ),
                &[&p, &keys, &channels, &contents],
            )
            .await
            .map_err(|e| ClusterError::pg("writing send intents", &e))?;
        }
        if !trace.is_empty() {
            let (ats, lines): (Vec<String>, Vec<String>) = trace.into_iter().unzip();
            tx.execute(
                &format!(
                    "INSERT INTO {} (partition, at, line)
                     SELECT $1, a, l FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(a, l, n)
                     ORDER BY n",
                    s.table("trace")
                ),
                &[&p, &ats, &lines],
            )
            .await
            .map_err(|e| ClusterError::pg("writing the trace", &e))?;
        }
        if !memberships.is_empty() {
            let (mut audiences, mut ats, mut lines) = (Vec::new(), Vec::new(), Vec::new());
            for (audience, at, line) in memberships {
                audiences.push(audience);
                ats.push(at);
                lines.push(line);
            }
            tx.execute(
                &format!(
                    "INSERT INTO {} (partition, audience, at, line)
                     SELECT $1, au, a, l FROM unnest($2::text[], $3::text[], $4::text[])
                         WITH ORDINALITY AS u(au, a, l, n)
                     ORDER BY n",
                    s.table("audience_changes")
                ),
                &[&p, &audiences, &ats, &lines],
            )
            .await
            .map_err(|e| ClusterError::pg("writing audience changes", &e))?;
        }
        tx.commit()
            .await
            .map_err(|e| ClusterError::pg("committing a batch", &e))?;
        h.applied = position;
        if let Some(budget) = self.options.customers_in_memory {
            // PostgreSQL holds every customer and timer as this engine has them.
            h.engine.let_timers_go(timer_seq);
            h.engine.let_texts_go(names_stored);
            h.engine.let_go(budget, &[]);
            let read_back = h.engine.paging().read_back;
            self.progress.customers_read_back += read_back.saturating_sub(h.read_back);
            h.read_back = read_back;
        }
        self.progress.commits += 1;
        self.progress.intents += sends.len() as u64;
        Ok(())
    }
}

/// Reads back from PostgreSQL, in a few requests, the identities and
/// customers the calls of `batch` past `applied` need, and the customers
/// of up to `most` timers due by the last call (or by `now`), instead of a
/// round trip per customer as each call or timer meets them. Only a
/// reading ahead: a row it cannot read is the engine's page fault, which
/// refuses the commit.
fn read_ahead<S: Sink>(
    engine: &mut Engine<'_, S>,
    batch: &[Message],
    applied: u64,
    now: Option<i64>,
    most: usize,
) {
    let calls: Vec<&str> = batch
        .iter()
        .filter(|m| m.info().is_ok_and(|i| i.stream_sequence > applied))
        .filter(|m| {
            m.headers
                .as_ref()
                .and_then(|hs| hs.get("Nudge-Kind"))
                .is_some_and(|k| k.as_str() == "call")
        })
        .filter_map(|m| std::str::from_utf8(&m.payload).ok())
        .collect();
    let decoder = engine.decoder();
    let decoded: Vec<_> = calls.iter().map(|line| decoder.decode(line)).collect();
    let parts = || {
        decoded.iter().filter_map(|d| match d {
            nudge_runtime::ingest::Decoded::Call(parts) => Some(parts),
            nudge_runtime::ingest::Decoded::Bad(_) => None,
        })
    };
    let through = parts().map(|p| p.at()).max().max(now);
    if engine.read_ahead(parts().map(|p| p.names()))
        && let Some(through) = through
    {
        engine.read_timers_ahead(through, most);
    }
}

/// Renews the worker's leases every `renew_every` until aborted; a lease
/// another worker took is dropped from `leases` (its engine goes at the
/// next round, and its commits fail at the fence meanwhile).
async fn renew(settings: Arc<Settings>, options: Options, leases: Arc<Mutex<BTreeMap<u32, i64>>>) {
    let mut client: Option<Client> = None;
    loop {
        tokio::time::sleep(options.renew_every).await;
        if client.is_none() {
            match connect_postgres(&settings).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    eprintln!("warning: renewing leases: {e}");
                    continue;
                }
            }
        }
        let Some(c) = client.as_ref() else {
            continue;
        };
        let held: Vec<Lease> = leases
            .lock()
            .map(|l| {
                l.iter()
                    .map(|(&partition, &epoch)| Lease { partition, epoch })
                    .collect()
            })
            .unwrap_or_default();
        let renewed = async {
            lease::heartbeat(c, &settings, &options.id).await?;
            lease::renew(c, &settings, &options.id, &held, options.lease).await
        }
        .await;
        match renewed {
            Ok(kept) => {
                if let Ok(mut shared) = leases.lock() {
                    for l in &held {
                        if !kept.contains(l) && shared.get(&l.partition) == Some(&l.epoch) {
                            shared.remove(&l.partition);
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("warning: renewing leases: {e}");
                if c.is_closed() {
                    client = None;
                }
            }
        }
    }
}
