//! The engine's state as rows: what a store keeps so that each commit
//! writes only what changed since the last one, and a restart loads state.
//!
//! The state is split by what changes together: one row per customer, per
//! live instance slot and per identity node; the timers as rows named by
//! their insertion number and indexed by the store on their due time; the
//! remembered message ids with their generation; the releases' bundles;
//! and a *head* holding the rest (the clock, counters and the small
//! tables), written whole with each commit.
//!
//! Once a host asks for changes ([`Machine::take_changes`]), the tables
//! note what they change. The first take (unless the engine was restored
//! from rows) and the first after a change to a whole table (a deploy)
//! hold everything (`full`), which the store writes in place of what it had. Rows are postcard, like the whole-state checkpoint, and
//! [`FORMAT`] versions both.

use nudge_bytecode::Bundle;
use serde::{Deserialize, Serialize};

use super::checkpoint::{
    CheckpointError, FORMAT, ROWS_FORMAT_6, State, customers_as_current, in_rows, layout,
};
use super::marks::Taken;
use super::{Bundles, Machine};
use crate::dedupe::{Dedupe, DedupeHead};
use crate::identity::{NodeRow, NodeRows};
use crate::timers::{Timer, Timers};

/// What changed in the engine's state since the last take, as rows.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    /// The layout version of every row ([`FORMAT`]).
    pub format: u32,
    /// Everything is here: the store replaces all it held.
    pub full: bool,
    /// The head: clock, counters and small tables (always written).
    pub head: Vec<u8>,
    /// Every release's bundle, oldest first, when they changed.
    pub releases: Option<Vec<Vec<u8>>>,
    /// Customers by number: the row, or `None` for one that is gone.
    pub customers: Vec<(u32, Option<Vec<u8>>)>,
    /// Instance slots: the live instance's row, or `None` for a freed slot.
    pub instances: Vec<(u32, Option<Vec<u8>>)>,
    /// Identity nodes made or changed.
    pub nodes: Vec<(u32, Vec<u8>)>,
    /// The names of the identity nodes made (see
    /// [`crate::identity::stored_name`]), which a store finds them by.
    pub names: Vec<(Vec<u8>, u32)>,
    /// How many identity nodes' names the store holds once this take is
    /// committed (the first ones): [`Machine::let_texts_go`] takes it.
    pub names_stored: u32,
    /// Timers set: insertion number, due time (ms), row.
    pub timers: Vec<(u64, i64, Vec<u8>)>,
    /// Insertion numbers of timers that fired (removed after `timers` is added).
    pub fired: Vec<u64>,
    /// Message ids remembered, with their generation.
    pub message_ids: Vec<(u128, u64)>,
    /// Ids of generations before this one are forgotten.
    pub forget_ids_before: Option<u64>,
    /// The timers' last insertion number as of this take: once it is
    /// committed, [`Machine::let_timers_go`] takes it.
    pub timer_seq: u64,
    /// The set of every send made that stores of layouts before 7 kept is
    /// emptied: this take's instance rows hold the keys of their own.
    pub forget_sent_keys: bool,
}

/// The engine's state as a store holds it, read back whole.
#[derive(Debug, Default)]
pub struct Rows {
    /// The head.
    pub head: Vec<u8>,
    /// Every release's bundle, oldest first.
    pub releases: Vec<Vec<u8>>,
    /// Customers by number.
    pub customers: Vec<(u32, Vec<u8>)>,
    /// Customers the store holds whose rows were not read: the engine
    /// reads each back when first needed (see [`super::Pager`]). Only for
    /// rows of this layout ([`FORMAT`]).
    pub stored: Vec<u32>,
    /// Live instances by slot.
    pub instances: Vec<(u32, Vec<u8>)>,
    /// Identity nodes, in increasing number.
    pub nodes: Vec<(u32, Vec<u8>)>,
    /// Pending timers.
    pub timers: Vec<Vec<u8>>,
    /// Remembered message ids with their generation.
    pub message_ids: Vec<(u128, u64)>,
    /// Fingerprints of every send made, as layouts before 7 kept them
    /// (handed to the live instances that made them at the restore).
    pub sent_keys: Vec<u128>,
    /// Timers due an hour or more past the clock are left in the store
    /// (those of `timers` that are, are not restored): the engine reads
    /// them back when needed (see [`super::Pager`]).
    pub timers_left: bool,
    /// The identity nodes' texts are left in the store (`nodes` are read
    /// for their links): the engine reads them back by name or number
    /// when needed (see [`super::Pager`]).
    pub texts_left: bool,
    /// How many identity nodes' names the store holds (the first ones);
    /// `None` for a store that does not say (every node is named).
    pub names_stored: Option<u32>,
}

/// The head's own values besides the state's small tables.
#[derive(Default, Serialize, Deserialize)]
struct Head {
    format: u32,
    /// How many instance slots there are.
    slots: u32,
    /// The timers' last insertion number.
    timer_seq: u64,
    dedupe: DedupeHead,
    /// The state without its tables.
    state: State,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CheckpointError> {
    postcard::to_allocvec(value).map_err(|e| CheckpointError::Decode(e.to_string()))
}

fn decode<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Result<T, CheckpointError> {
    postcard::from_bytes(bytes).map_err(|e| CheckpointError::Decode(format!("{what}: {e}")))
}

impl<'b> Machine<'b> {
    /// Whether the engine follows its changes for a store.
    pub fn follows_changes(&self) -> bool {
        self.following
    }

    /// The changes last taken were not stored (their commit failed): the
    /// next take holds everything, so that the store cannot miss them.
    pub fn retake_all(&mut self) {
        self.start_following(true);
    }

    /// Starts following changes: the next take holds everything (`full`),
    /// or only what changes from now on (the store holds the state as it is).
    fn start_following(&mut self, full: bool) {
        self.customers.start_marks(full);
        self.instances.start_marks(full);
        self.identities.start_marks(full);
        self.timers.start_log();
        self.dedupe.start_log();
        self.following = true;
        self.releases_changed = full;
    }

    /// What changed since the last take, as rows for a store to write in
    /// the transaction of the calls that changed it. The first take (and
    /// the first after a restore or a change to a whole table, such as a
    /// deploy) holds everything.
    pub fn take_changes(&mut self) -> Result<Changes, CheckpointError> {
        if !self.follows_changes() {
            self.start_following(true);
        }
        if let Some(reason) = self.page_fault() {
            return Err(CheckpointError::Decode(format!(
                "cannot read a customer back from the store: {reason}"
            )));
        }
        let customers = self.customers.take_marks();
        let instances = self.instances.take_marks();
        let full = customers == Taken::All || instances == Taken::All;
        if full {
            // Everything is written in place of what the store holds.
            self.page_in_all()?;
        }
        let mut out = Changes {
            format: FORMAT,
            full,
            forget_sent_keys: std::mem::take(&mut self.forget_sent_keys),
            ..Changes::default()
        };
        out.head = self.head()?;
        if std::mem::take(&mut self.releases_changed) || full {
            out.releases = Some(self.encoded_releases());
        }
        let customers = match customers {
            Taken::Some(list) if !full => list,
            _ => self.customers.keys().collect(),
        };
        for c in customers {
            // A frozen customer's bytes are its row already.
            let row = match self.customers.frozen(c) {
                Some(row) => Some(row.to_vec()),
                None => self
                    .customers
                    .get(&c)
                    .map(|cust| self.tables.encode(cust, Vec::new()))
                    .transpose()
                    .map_err(|e| CheckpointError::Decode(e.to_string()))?,
            };
            out.customers.push((c, row));
        }
        let slots = match instances {
            Taken::Some(list) if !full => list,
            _ => (0..self.instances.len() as u32).collect(),
        };
        for id in slots {
            let row = self.instances.get(id).map(encode).transpose()?;
            if full && row.is_none() {
                continue;
            }
            out.instances.push((id, row));
        }
        if full {
            // The log's lists are dropped: the whole tables are written.
            self.identities.start_marks(true);
        }
        // A node taken whose text was let go has it read back, for its row.
        let textless = self.identities.marked_without_text();
        if !self.texts_in(&textless) {
            self.no_fault()?;
        }
        // Names are written a batch at a time: a few times the budget's
        // customers' worth of nodes (their texts are what waits in memory).
        // Only an engine with a pager reads names back: without one they
        // are not written (the store says none are, and an engine with a
        // pager that restarts on it keeps those texts until it names them).
        let name_every = self.pager.as_ref().map(|_| {
            self.config.customers_in_memory.map_or(1, |b| {
                u32::try_from(b.saturating_mul(8)).unwrap_or(u32::MAX)
            })
        });
        let taken = self.identities.take_rows(name_every).map_err(|n| {
            CheckpointError::Decode(format!("identity node {n}'s text is not in memory"))
        })?;
        for (n, row) in taken.rows {
            out.nodes.push((n, encode(&row)?));
        }
        out.names = taken.names;
        out.names_stored = taken.named;
        let timers = self.timers.take_changes();
        out.timer_seq = self.timers.seq();
        let dedupe = self.dedupe.take_changes();
        if full {
            for t in self.timers.all() {
                out.timers.push((t.seq, t.due, encode(&t)?));
            }
            out.message_ids = self.dedupe.all();
        } else {
            for t in &timers.set {
                out.timers.push((t.seq, t.due, encode(t)?));
            }
            out.fired = timers.fired;
            out.message_ids = dedupe.added;
            out.forget_ids_before = dedupe.drop_before;
        }
        Ok(out)
    }

    /// The head row: the state's values and small tables.
    fn head(&mut self) -> Result<Vec<u8>, CheckpointError> {
        let mut head = Head {
            format: FORMAT,
            slots: self.instances.len() as u32,
            timer_seq: self.timers.seq(),
            dedupe: self.dedupe.head(),
            state: self.small_state(FORMAT, false)?,
        };
        self.swap_small(&mut head.state);
        let bytes = encode(&head);
        // Put the tables back before anything can fail.
        self.swap_small(&mut head.state);
        let mut bytes = bytes?;
        // What the events taught of the products follows the head: a head
        // written before there was any reads as nothing learned.
        bytes.extend(encode(&self.learned)?);
        // A deploy's arming still to do follows that: a head written before
        // there was any reads as none.
        if self.arming.is_some() {
            bytes.extend(encode(&self.arming)?);
        }
        Ok(bytes)
    }

    /// Replaces this engine's state with the one `rows` hold (as
    /// [`Machine::restore`] does for a whole-state checkpoint). On error
    /// the engine is unchanged. Changes are followed from here: the next
    /// take holds what changes after the restore.
    pub fn restore_rows(
        &mut self,
        rows: Rows,
        current: &'b Bundle,
        arena: &'b Bundles,
    ) -> Result<(), CheckpointError> {
        let mut r = Restore::new(&rows.head, rows.releases)?;
        if rows.timers_left {
            r.leave_timers_in_store();
        }
        if rows.texts_left {
            r.leave_texts_in_store();
        }
        if let Some(n) = rows.names_stored {
            r.names_stored(n);
        }
        for (c, bytes) in rows.customers {
            r.customer(c, &bytes)?;
        }
        for c in rows.stored {
            r.stored(c)?;
        }
        for (id, bytes) in rows.instances {
            r.instance(id, &bytes)?;
        }
        for (n, bytes) in rows.nodes {
            r.node(n, &bytes)?;
        }
        for bytes in rows.timers {
            r.timer(&bytes)?;
        }
        for &(id, generation) in &rows.message_ids {
            r.count_message_id(id, generation);
        }
        for (id, generation) in rows.message_ids {
            r.message_id(id, generation);
        }
        for key in rows.sent_keys {
            r.sent_key(key);
        }
        self.restore_from(r, current, arena)
    }

    /// Replaces this engine's state with the one a [`Restore`] was given,
    /// as [`Machine::restore_rows`] does. On error the engine is unchanged.
    pub fn restore_from(
        &mut self,
        r: Restore,
        current: &'b Bundle,
        arena: &'b Bundles,
    ) -> Result<(), CheckpointError> {
        let Restore {
            format,
            head,
            learned,
            arming,
            mut state,
            live,
            nodes,
            timers,
            timers_left,
            mut dedupe,
            sent_keys,
        } = r;
        if nodes.texts_left() && self.pager.is_none() {
            return Err(CheckpointError::Decode(
                "identities were left in the store, and the engine has no store to read them from"
                    .into(),
            ));
        }
        if timers_left.is_some() && self.pager.is_none() {
            return Err(CheckpointError::Decode(
                "timers were left in the store, and the engine has no store to read them from"
                    .into(),
            ));
        }
        state.instances =
            super::instance::Slots::from_rows(head.slots, live).map_err(CheckpointError::Decode)?;
        state.identities = nodes.finish();
        let mut timers = timers;
        timers.set_seq(head.timer_seq);
        if let Some((from, count)) = timers_left {
            timers.leave_in_store(from, head.timer_seq, count);
        }
        state.timers = timers;
        dedupe.set_window(crate::millis::ms(self.config.dedupe_window));
        // Sorted here, so that the first call after a restart is not the one
        // that waits for it.
        dedupe.settle();
        state.dedupe = dedupe;
        state.sent_keys = sent_keys;
        let _layout = layout::at(format);
        self.install(state, current, arena)?;
        self.learned = learned;
        self.arming = arming;
        // Rows of an older layout are written again whole, in this one: a
        // store must not hold rows of two layouts under one head. Only the
        // instances' rows and the head of layout 6 differ from this one's,
        // so those are all the next take writes (with the old set of sends
        // emptied), and its customers stay where they are.
        self.start_following(!customers_as_current(format));
        if format == ROWS_FORMAT_6 {
            self.instances.mark_live();
            self.forget_sent_keys = true;
        }
        Ok(())
    }
}

/// The engine's state as a store reads it back, one row at a time: each
/// row is decoded as it comes, so a restart never holds the stored bytes
/// of every row beside the state they decode to. Rows of each table come
/// in increasing number; [`Machine::restore_from`] puts the state in place.
pub struct Restore {
    format: u32,
    head: Head,
    learned: crate::catalogue::Learned,
    /// A deploy's triggers still to arm, if the head was taken between parts.
    arming: Option<super::deploy::PendingArming>,
    /// The state, its tables filled as the rows come.
    state: State,
    live: Vec<(u32, super::Instance)>,
    nodes: NodeRows,
    timers: Timers,
    /// Timers due from this time on are left in the store, and how many
    /// of them were seen (see [`Restore::leave_timers_in_store`]).
    timers_left: Option<(i64, usize)>,
    /// The remembered message ids, put in as they come (the window is the
    /// engine's own, set when the state is put in place).
    dedupe: Dedupe,
    sent_keys: crate::fast::Set<u128>,
}

impl Restore {
    /// A restore from the head row and every release's bundle, oldest first.
    pub fn new(head: &[u8], releases: Vec<Vec<u8>>) -> Result<Restore, CheckpointError> {
        let format: u32 = postcard::take_from_bytes(head)
            .map(|(f, _)| f)
            .map_err(|e| CheckpointError::Decode(e.to_string()))?;
        if !in_rows(format) {
            return Err(CheckpointError::Format { found: format });
        }
        // Rows of layout 5 read with no counts for splits that optimise.
        let _layout = layout::at(format);
        let (mut head, rest): (Head, &[u8]) = postcard::take_from_bytes(head)
            .map_err(|e| CheckpointError::Decode(format!("the head: {e}")))?;
        let (learned, rest) = if rest.is_empty() {
            (Default::default(), rest)
        } else {
            postcard::take_from_bytes(rest)
                .map_err(|e| CheckpointError::Decode(format!("the products learned: {e}")))?
        };
        let arming = if rest.is_empty() {
            None
        } else {
            decode("the deploy's triggers still to arm", rest)?
        };
        let mut state = std::mem::take(&mut head.state);
        state.releases = releases;
        let dedupe = Dedupe::at(head.dedupe, 0);
        Ok(Restore {
            format,
            head,
            learned,
            arming,
            state,
            live: Vec::new(),
            nodes: NodeRows::default(),
            timers: Timers::default(),
            timers_left: None,
            dedupe,
            sent_keys: Default::default(),
        })
    }

    /// Makes room for the rows to come, when the store knows how many:
    /// identity nodes and sends made (message ids are counted instead:
    /// see [`Restore::count_message_id`]). Tables grown by doubling hold
    /// their old and new space at once.
    pub fn reserve(&mut self, nodes: usize, sent_keys: usize) {
        self.nodes.reserve(nodes);
        self.sent_keys.reserve(sent_keys);
    }

    /// Counts a remembered message id that [`Restore::message_id`] will
    /// give: a store that counts every id first (a pass over the same
    /// rows) lets each be put straight where it belongs, so the restore
    /// holds each id once.
    pub fn count_message_id(&mut self, id: u128, generation: u64) {
        self.dedupe.count(id, generation);
    }

    /// Customer `c`'s row.
    pub fn customer(&mut self, c: u32, bytes: &[u8]) -> Result<(), CheckpointError> {
        let _layout = layout::at(self.format);
        let customer = self
            .state
            .tables
            .read(bytes)
            .map_err(|e| CheckpointError::Decode(format!("customer {c}: {e}")))?;
        self.state.customers.insert(c, customer);
        Ok(())
    }

    /// Customer `c` is stored, its row left to be read when first needed
    /// (see [`super::Pager`]); only rows that read as this layout's can be
    /// (see [`customers_as_current`]).
    pub fn stored(&mut self, c: u32) -> Result<(), CheckpointError> {
        if !customers_as_current(self.format) {
            return Err(CheckpointError::Decode(format!(
                "customers of layout {} are left to be read when needed, and only layouts {ROWS_FORMAT_6} to {FORMAT} can be",
                self.format
            )));
        }
        self.state.customers.note_stored(c);
        Ok(())
    }

    /// The live instance in slot `id`.
    pub fn instance(&mut self, id: u32, bytes: &[u8]) -> Result<(), CheckpointError> {
        let _layout = layout::at(self.format);
        let instance = decode(&format!("the instance in slot {id}"), bytes)?;
        self.live.push((id, instance));
        Ok(())
    }

    /// Identity node `n`.
    pub fn node(&mut self, n: u32, bytes: &[u8]) -> Result<(), CheckpointError> {
        let _layout = layout::at(self.format);
        let row: NodeRow = decode(&format!("identity node {n}"), bytes)?;
        self.nodes.push(n, row).map_err(CheckpointError::Decode)
    }

    /// Leaves the timers due an hour or more past the stored clock in the
    /// store, for an engine with a [`super::Pager`] to read back when
    /// needed; returns the due time from which they are left. A store may
    /// then give only the timers due before it, and count the others with
    /// [`Restore::timers_in_store`].
    pub fn leave_timers_in_store(&mut self) -> i64 {
        let from = self.state.now().saturating_add(crate::timers::AHEAD);
        let count = self.timers_left.map_or(0, |(_, n)| n);
        self.timers_left = Some((from, count));
        from
    }

    /// Leaves the identity nodes' texts in the store: `node` keeps each
    /// node's links only, for an engine with a [`super::Pager`] to read
    /// texts back by name or number when needed. Call it before the first node.
    pub fn leave_texts_in_store(&mut self) {
        self.nodes.leave_texts_in_store();
    }

    /// The store holds the names of the first `n` identity nodes (the
    /// texts of those after stay in memory until a take names them).
    pub fn names_stored(&mut self, n: u32) {
        self.nodes.names_stored(n);
    }

    /// `n` more timers are left in the store (not given to [`Restore::timer`]).
    pub fn timers_in_store(&mut self, n: usize) {
        if let Some((_, count)) = &mut self.timers_left {
            *count += n;
        }
    }

    /// A pending timer.
    pub fn timer(&mut self, bytes: &[u8]) -> Result<(), CheckpointError> {
        let _layout = layout::at(self.format);
        let timer = decode::<Timer>("a timer", bytes)?;
        match &mut self.timers_left {
            Some((from, count)) if timer.due >= *from => *count += 1,
            _ => self.timers.restore(timer),
        }
        Ok(())
    }

    /// A remembered message id with its generation.
    pub fn message_id(&mut self, id: u128, generation: u64) {
        self.dedupe.restore(id, generation);
    }

    /// The fingerprint of a send made, from a store of a layout before 7
    /// (see [`Rows::sent_keys`]).
    pub fn sent_key(&mut self, key: u128) {
        self.sent_keys.insert(key);
    }
}

/// Rows kept in memory as a store keeps them: the reference for what a
/// store does with [`Changes`], and a store for tests.
#[derive(Debug, Default, Clone)]
pub struct MemoryRows {
    head: Vec<u8>,
    releases: Vec<Vec<u8>>,
    customers: std::collections::BTreeMap<u32, Vec<u8>>,
    instances: std::collections::BTreeMap<u32, Vec<u8>>,
    nodes: std::collections::BTreeMap<u32, Vec<u8>>,
    names: std::collections::BTreeMap<Vec<u8>, u32>,
    names_stored: u32,
    timers: std::collections::BTreeMap<u64, (i64, Vec<u8>)>,
    message_ids: std::collections::BTreeMap<u128, u64>,
}

impl MemoryRows {
    /// Writes one take's changes.
    pub fn apply(&mut self, changes: Changes) {
        if changes.full {
            *self = MemoryRows::default();
        }
        self.head = changes.head;
        if let Some(releases) = changes.releases {
            self.releases = releases;
        }
        for (c, row) in changes.customers {
            match row {
                Some(row) => self.customers.insert(c, row),
                None => self.customers.remove(&c),
            };
        }
        for (id, row) in changes.instances {
            match row {
                Some(row) => self.instances.insert(id, row),
                None => self.instances.remove(&id),
            };
        }
        self.nodes.extend(changes.nodes);
        self.names.extend(changes.names);
        self.names_stored = changes.names_stored;
        for (seq, due, row) in changes.timers {
            self.timers.insert(seq, (due, row));
        }
        for seq in changes.fired {
            self.timers.remove(&seq);
        }
        self.message_ids.extend(changes.message_ids);
        if let Some(before) = changes.forget_ids_before {
            self.message_ids.retain(|_, g| *g >= before);
        }
    }

    /// Customer `c`'s row, as a [`super::Pager`] reads it.
    pub fn customer(&self, c: u32) -> Option<Vec<u8>> {
        self.customers.get(&c).cloned()
    }

    /// The number of the identity node named `name`, as a [`super::Pager`] reads it.
    pub fn node_named(&self, name: &[u8]) -> Option<u32> {
        self.names.get(name).copied()
    }

    /// Identity node `n`'s row, as a [`super::Pager`] reads it.
    pub fn node(&self, n: u32) -> Option<Vec<u8>> {
        self.nodes.get(&n).cloned()
    }

    /// The timers a [`super::Pager`] reads back.
    pub fn timers(&self, read: crate::timers::ToRead) -> Vec<Vec<u8>> {
        self.timers
            .range(..=read.through)
            .filter(|(_, (due, _))| (read.from..=read.until).contains(due))
            .map(|(_, (_, row))| row.clone())
            .collect()
    }

    /// Everything held, as a restore that reads customers and far timers
    /// when first needed reads it: customers by number only.
    pub fn rows_without_customers(&self) -> Rows {
        Rows {
            customers: Vec::new(),
            stored: self.customers.keys().copied().collect(),
            timers_left: true,
            texts_left: true,
            ..self.rows()
        }
    }

    /// Everything held, as a restore reads it.
    pub fn rows(&self) -> Rows {
        Rows {
            head: self.head.clone(),
            releases: self.releases.clone(),
            customers: self
                .customers
                .iter()
                .map(|(&c, r)| (c, r.clone()))
                .collect(),
            stored: Vec::new(),
            instances: self
                .instances
                .iter()
                .map(|(&c, r)| (c, r.clone()))
                .collect(),
            nodes: self.nodes.iter().map(|(&c, r)| (c, r.clone())).collect(),
            timers: self.timers.values().map(|(_, row)| row.clone()).collect(),
            message_ids: self.message_ids.iter().map(|(&k, &g)| (k, g)).collect(),
            sent_keys: Vec::new(),
            timers_left: false,
            texts_left: false,
            names_stored: Some(self.names_stored),
        }
    }
}
