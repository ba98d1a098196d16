//! Customers read from the store when first needed, and let go again: the
//! engine's memory is bounded by a budget of customers, not by how many
//! customers the store has ever seen.
//!
//! A customer is let go only when the store holds its record as it is: it
//! has not changed since the last take of changes, and the host says that
//! take is committed ([`Machine::let_go`]). It is read back, unchanged,
//! when a call, a timer or a lookup reaches it ([`Machine::page_in`]), so a
//! run with a budget decides exactly what one without does.
//!
//! Without a store, the same budget freezes customers instead
//! ([`Machine::freeze`]): each is held as the bytes of the row a store
//! would write, and decoded by [`Machine::page_in`] as a row read back.
//!
//! Kept in memory whatever the budget: customers with live instances or
//! goal watches (their rules run on timers and other customers' merges,
//! and the history horizons read every goal), those whose segments are
//! still to be looked at, and everything that is not a customer record
//! (instances, the small tables, the identity graph's links) except timers
//! and identities' texts: with a store, only the timers due within the hour
//! and those not yet committed stay ([`Machine::let_timers_go`]), and only
//! the texts of identities not yet named in a committed take, changed
//! since, or read back since ([`Machine::let_texts_go`]); a call's
//! identities are looked up in the store by name before the call is
//! observed.

use super::Machine;
use super::checkpoint::CheckpointError;
use super::customer::Customer;
use crate::identity::{CustomerId, Identity, Names, NodeRow};
use crate::timers::{Timer, ToRead};

/// Where an engine reads back the customers it let go: the rows the host's
/// store wrote from [`Machine::take_changes`].
pub trait Pager: Send {
    /// The stored row of customer `number`, as the last committed take
    /// wrote it; `None` when the store has none.
    fn customer(&mut self, number: u32) -> Result<Option<Vec<u8>>, String>;

    /// The stored rows of the timers `read` names (due from `read.from`
    /// through `read.until`, numbered at most `read.through`), as the last
    /// committed take wrote them, in any order.
    fn timers(&mut self, read: ToRead) -> Result<Vec<Vec<u8>>, String>;

    /// The number of the identity node stored under `name` (see
    /// [`crate::identity::stored_name`]), as the last committed take
    /// wrote it; `None` when the store has none.
    fn node_named(&mut self, name: &[u8]) -> Result<Option<u32>, String>;

    /// The stored row of identity node `n`, as the last committed take
    /// wrote it; `None` when the store has none.
    fn node(&mut self, n: u32) -> Result<Option<Vec<u8>>, String>;

    /// [`Pager::customer`] for each of `numbers`, in their order: a store
    /// across a network answers them in one request.
    fn customers(&mut self, numbers: &[u32]) -> Result<Vec<Option<Vec<u8>>>, String> {
        numbers.iter().map(|&n| self.customer(n)).collect()
    }

    /// [`Pager::node_named`] for each of `names`, in their order.
    fn nodes_named(&mut self, names: &[Vec<u8>]) -> Result<Vec<Option<u32>>, String> {
        names.iter().map(|name| self.node_named(name)).collect()
    }
}

/// What [`Machine::paging`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Paging {
    /// Customers, in memory or stored.
    pub customers: u64,
    /// Customers in memory.
    pub in_memory: u64,
    /// Customers stored, held frozen: in memory as the bytes of their rows.
    pub frozen: u64,
    /// Customers read back from the store since the engine was made.
    pub read_back: u64,
    /// Customers let go since the engine was made.
    pub let_go: u64,
    /// Identities read back from the store by name or number (their texts
    /// were let go) since the engine was made.
    pub texts_read: u64,
    /// Identity nodes the graph has.
    pub identities: u64,
    /// Identity nodes whose texts are in memory.
    pub identities_in_memory: u64,
    /// Where the next pass of [`Machine::let_go`] starts.
    pub(super) hand: u32,
}

/// Whether a customer's rules run on timers and other customers' merges
/// (live instances), or the history horizons read it (goal watches): it
/// stays a record whatever the budget.
fn busy(cust: &Customer) -> bool {
    !cust.instances.is_empty() || !cust.rare().goals.is_empty()
}

/// [`busy`], at `now`: a goal whose window has passed reads nothing any
/// more, so a customer whose watches have all passed can be let go before
/// a sweep drops them (a sweep comes only with calls; the stored row keeps
/// the passed watches until the customer is next read back and swept).
fn busy_at(releases: &[super::Release<'_>], now: i64, cust: &Customer) -> bool {
    !cust.instances.is_empty()
        || cust
            .rare()
            .goals
            .iter()
            .any(|g| !super::goal_expired(releases, now, g))
}

impl<'b> Machine<'b> {
    /// Goes round the customer table from where the last pass stopped (so
    /// that passes do not empty the low numbers first), offering each
    /// customer in memory to `go` until `over` have gone. Returns how many.
    fn go_round(&mut self, over: usize, mut go: impl FnMut(&mut Self, u32) -> bool) -> usize {
        let mut gone = 0;
        let slots = self.customers.slots_len() as u32;
        let mut n = self.paging.hand.min(slots);
        for _ in 0..slots {
            if gone == over {
                break;
            }
            if n >= slots {
                n = 0;
            }
            let c = n;
            n += 1;
            if self.customers.peek(c).is_some() && go(self, c) {
                gone += 1;
            }
        }
        self.paging.hand = n;
        self.paging.let_go += gone as u64;
        gone
    }

    /// Gives the engine a store to read back the customers and timers it
    /// lets go. Without one, every customer and timer stays in memory.
    pub fn set_pager(&mut self, pager: Box<dyn Pager>) {
        self.pager = Some(pager);
        if !self.timers.leaves_in_store() {
            self.timers.leave_in_store(i64::MAX, 0, 0);
        }
    }

    /// Whether the engine has a store to read customers back from.
    pub fn pages(&self) -> bool {
        self.pager.is_some()
    }

    /// Why a customer could not be read back, if one could not: the engine's
    /// decisions since are not to be trusted, and the host stops before it
    /// commits or delivers them.
    pub fn page_fault(&self) -> Option<&str> {
        self.page_fault.as_deref()
    }

    /// How many customers the engine has, how many of them are in memory,
    /// and how many it has read back and let go so far.
    pub fn paging(&self) -> Paging {
        Paging {
            customers: self.customers.len() as u64,
            in_memory: self.customers.in_memory() as u64,
            frozen: self.customers.frozen_len() as u64,
            identities: u64::from(self.identities.len()),
            identities_in_memory: self.identities.texts_in_memory() as u64,
            ..self.paging
        }
    }

    /// Whether more than `budget` customers changed since the store last
    /// took the changes (or every customer counts as changed, with more
    /// than `budget` in memory): they cannot be let go until a checkpoint
    /// writes them, so a host with a budget takes one now rather than at
    /// its usual count of calls, and memory stays near the budget.
    pub fn changed_beyond(&self, budget: usize) -> bool {
        match self.customers.changed() {
            Some(n) => n > budget,
            None => self.customers.in_memory() > budget,
        }
    }

    /// Makes sure customer `c`, if stored, is in memory, moved onto the
    /// newest tables (see [`super::tables`]). False (with
    /// [`Machine::page_fault`] set) when its row cannot be read.
    pub(super) fn page_in(&mut self, c: u32) -> bool {
        if !self.customers.is_stored(c) {
            return true;
        }
        // A frozen row is dropped only once it decoded: a fault keeps it.
        let read = match self.customers.frozen(c) {
            Some(row) => self.tables.read(row),
            None => self.read_back(c),
        };
        self.bring_back(c, read)
    }

    /// Puts stored customer `c`, as read back, in memory; a customer that
    /// could not be read or does not fit the bundle is a page fault.
    fn bring_back(&mut self, c: u32, read: Result<Customer, String>) -> bool {
        let checked = read.and_then(|customer| {
            super::checkpoint::check_customer(&customer, self.bundle())?;
            Ok(customer)
        });
        match checked {
            Ok(customer) => {
                self.customers.thaw(c);
                self.customers.bring_back(c, customer);
                self.paging.read_back += 1;
                true
            }
            Err(reason) => {
                self.page_fault
                    .get_or_insert_with(|| format!("customer {c}: {reason}"));
                false
            }
        }
    }

    /// Reads back, in as few requests to the store as it can, what
    /// applying calls naming each of `names` reads from it first: the
    /// identities' texts left there and the customers let go. Applying them
    /// then finds those in memory; a host whose store is across a network
    /// saves a round trip per customer. It only reads ahead: what the calls
    /// decide does not change. False (with [`Machine::page_fault`] set)
    /// when the store cannot give them.
    pub fn read_ahead<'n>(&mut self, names: impl IntoIterator<Item = Names<'n>>) -> bool {
        if self.pager.is_none() {
            return true;
        }
        let names: Vec<Names<'n>> = names.into_iter().collect();
        if self.identities.texts_left() {
            let mut wanted = Vec::new();
            for n in &names {
                self.identities.names_to_read(n, &mut wanted);
            }
            wanted.sort_unstable();
            wanted.dedup();
            if !wanted.is_empty() && !self.read_names(&wanted) {
                return false;
            }
        }
        let mut stored = Vec::new();
        for n in &names {
            self.identities.roots_named(n, &mut stored);
        }
        self.read_customers(stored)
    }

    /// Reads back together the stored customers of up to `most` timers due
    /// at or before `through` (milliseconds since the epoch), as
    /// [`Machine::read_ahead`] does for calls: a step of the clock then
    /// finds them in memory. The timers the store holds due by then are read
    /// first, as the step would. False (with [`Machine::page_fault`] set)
    /// when the store cannot give them.
    pub fn read_timers_ahead(&mut self, through: i64, most: usize) -> bool {
        if self.pager.is_none() {
            return true;
        }
        if !self.timers_through(through) {
            return false;
        }
        let customers = self
            .timers
            .waking_through(through, most)
            .into_iter()
            .filter_map(|wake| self.woken(wake))
            .collect();
        self.read_customers(customers)
    }

    /// Reads back together those of `stored` that the store holds and
    /// memory does not.
    fn read_customers(&mut self, mut stored: Vec<u32>) -> bool {
        stored.retain(|&c| self.customers.is_stored(c) && self.customers.frozen(c).is_none());
        stored.sort_unstable();
        stored.dedup();
        if stored.is_empty() {
            return true;
        }
        let read = self
            .pager
            .as_mut()
            .map_or(Ok(Vec::new()), |pager| pager.customers(&stored));
        let rows = match read {
            Ok(rows) if rows.len() == stored.len() => rows,
            Ok(rows) => {
                self.page_fault.get_or_insert_with(|| {
                    format!(
                        "the store gave {} rows for {} customers",
                        rows.len(),
                        stored.len()
                    )
                });
                return false;
            }
            Err(reason) => {
                self.page_fault
                    .get_or_insert_with(|| format!("customers read ahead: {reason}"));
                return false;
            }
        };
        for (c, row) in stored.into_iter().zip(rows) {
            let read = row
                .ok_or_else(|| "the store has no row for it".to_string())
                .and_then(|row| self.tables.read(&row));
            if !self.bring_back(c, read) {
                return false;
            }
        }
        true
    }

    /// Learns the nodes stored under `names`, asked together.
    fn read_names(&mut self, names: &[Vec<u8>]) -> bool {
        if names.is_empty() {
            return true;
        }
        let read = self
            .pager
            .as_mut()
            .ok_or_else(|| "identities were left in a store the engine cannot read".to_string())
            .and_then(|pager| pager.nodes_named(names));
        let learnt = read.and_then(|nodes| {
            if nodes.len() != names.len() {
                return Err(format!(
                    "the store gave {} nodes for {} names",
                    nodes.len(),
                    names.len()
                ));
            }
            for (name, n) in names.iter().zip(nodes) {
                if let Some(n) = n {
                    self.paging.texts_read += 1;
                    self.identities.learn_name(n, name)?;
                }
            }
            Ok(())
        });
        if let Err(reason) = learnt {
            self.page_fault
                .get_or_insert_with(|| format!("an identity: {reason}"));
            return false;
        }
        true
    }

    fn read_back(&mut self, c: u32) -> Result<Customer, String> {
        let pager = self
            .pager
            .as_mut()
            .ok_or("the engine let it go and has no store to read it from")?;
        let row = pager.customer(c)?.ok_or("the store has no row for it")?;
        self.tables.read(&row)
    }

    /// Makes sure every timer due through `limit` is in memory. False (with
    /// [`Machine::page_fault`] set) when the store cannot give them.
    pub(super) fn timers_through(&mut self, limit: i64) -> bool {
        match self.timers.to_read(limit) {
            Some(read) => self.read_timers(read),
            None => true,
        }
    }

    /// Reads every timer left in the store back.
    pub(super) fn all_timers(&mut self) -> bool {
        match self.timers.to_read_all() {
            Some(read) => self.read_timers(read),
            None => true,
        }
    }

    fn read_timers(&mut self, read: ToRead) -> bool {
        let timers = self
            .pager
            .as_mut()
            .ok_or_else(|| "the engine let them go and has no store to read them from".to_string())
            .and_then(|pager| pager.timers(read))
            .and_then(|rows| {
                rows.iter()
                    .map(|row| postcard::from_bytes::<Timer>(row).map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()
            });
        match timers {
            Ok(timers) => {
                self.timers.read_back(read, timers);
                true
            }
            Err(reason) => {
                self.page_fault
                    .get_or_insert_with(|| format!("the timers due from {}: {reason}", read.from));
                false
            }
        }
    }

    /// With no store to read customers back from, freezes customers until
    /// at most `budget` are held as records: each other one is held as the
    /// bytes of its row (as a store would write it) and decoded when a
    /// call, a timer or a lookup needs it ([`Machine::page_in`]). Customers
    /// with live instances or goal watches stay records. Returns how many
    /// were frozen.
    pub fn freeze(&mut self, budget: usize) -> usize {
        if self.pager.is_some() || self.page_fault.is_some() {
            return 0;
        }
        let over = self.customers.in_memory().saturating_sub(budget);
        if over == 0 {
            return 0;
        }
        let dirty = std::mem::take(&mut self.dirty);
        let frozen = self.go_round(over, |m, c| !dirty.contains(&c) && m.freeze_one(c));
        self.dirty = dirty;
        frozen
    }

    /// Freezes customer `c` unless it is busy (see [`busy`]) or not in
    /// memory. A record that cannot be encoded stays a record.
    pub(super) fn freeze_one(&mut self, c: u32) -> bool {
        let Some(cust) = self.customers.peek(c) else {
            return false;
        };
        if busy(cust) {
            return false;
        }
        let buffer = std::mem::take(&mut self.freeze_buffer);
        let Ok(mut buffer) = self.tables.encode(cust, buffer) else {
            return false;
        };
        let row = Box::from(buffer.as_slice());
        buffer.clear();
        self.freeze_buffer = buffer;
        self.customers.freeze(c, row)
    }

    /// Within a step of the clock that fires many timers (`--until`, a
    /// drain, a server back after downtime), freezes customer `c`, whose
    /// timer just fired, once records are an eighth over `[runtime]
    /// customers_in_memory`; with a store too, where what the step changed
    /// is written by the next take only (a take writes a frozen customer's
    /// bytes as its row, and [`Machine::let_go`] drops them once committed).
    /// Otherwise every customer such a step reads back stays a record
    /// until the step's take. A busy customer stays a record.
    pub(super) fn keep_fired_to_budget(&mut self, c: u32) {
        if let Some(budget) = self.config.customers_in_memory
            && self.page_fault.is_none()
            && self.customers.in_memory() > budget.saturating_add(budget / 8)
            && !self.dirty.contains(&c)
        {
            self.freeze_one(c);
        }
    }

    /// Freezes customers down to `[runtime] customers_in_memory` once they
    /// are an eighth over it (see [`Machine::freeze`]).
    pub(super) fn keep_to_budget(&mut self) {
        if let Some(budget) = self.config.customers_in_memory
            && self.customers.in_memory() > budget.saturating_add(budget / 8)
        {
            self.freeze(budget);
        }
    }

    /// Lets go of the timers due an hour or more past the clock that a
    /// committed take stored: `through` is that take's
    /// [`super::rows::Changes::timer_seq`]. Call it once the take is
    /// committed, as [`Machine::let_go`]. Does nothing without a store to
    /// read them back from. Returns how many were let go.
    pub fn let_timers_go(&mut self, through: u64) -> usize {
        if self.pager.is_none() || !self.follows_changes() || self.page_fault.is_some() {
            return 0;
        }
        self.timers.let_go(self.now, through)
    }

    /// Lets go of the identities' texts a committed take stored, keeping
    /// the graph's links: `through` is that take's
    /// [`super::rows::Changes::names_stored`]. Call it once the take is
    /// committed, as [`Machine::let_timers_go`]. Does nothing without a
    /// store to read them back from. Returns how many were let go.
    pub fn let_texts_go(&mut self, through: u32) -> usize {
        if self.pager.is_none() || !self.follows_changes() || self.page_fault.is_some() {
            return 0;
        }
        self.identities.let_texts_go(through)
    }

    /// Makes sure the nodes of the identities a call names are in memory
    /// when the graph leaves texts in the store: a node not looked up would
    /// be made again. False (with [`Machine::page_fault`] set) when the
    /// store cannot say.
    pub(super) fn names_in(&mut self, names: &Names<'_>) -> bool {
        if !self.identities.texts_left() {
            return true;
        }
        let mut wanted = Vec::new();
        self.identities.names_to_read(names, &mut wanted);
        self.read_names(&wanted)
    }

    /// The customer known by `id`, looking it up in the store when the
    /// graph leaves texts there.
    pub(super) fn customer_known_as(&mut self, id: &Identity) -> Option<CustomerId> {
        self.identity_in(id);
        self.identities.customer_of(id)
    }

    /// Makes sure `id`'s node, if stored, is in memory (before a join
    /// that names it).
    pub(super) fn identity_in(&mut self, id: &Identity) -> bool {
        match self.identities.name_to_read(id) {
            Some(name) => self.read_names(&[name]),
            None => true,
        }
    }

    /// Makes sure the texts of identity nodes `nodes` are in memory.
    pub(super) fn texts_in(&mut self, nodes: &[u32]) -> bool {
        for &n in nodes {
            let read = self
                .pager
                .as_mut()
                .ok_or_else(|| "its text was let go and the engine has no store".to_string())
                .and_then(|pager| pager.node(n))
                .and_then(|row| row.ok_or_else(|| "the store has no row for it".to_string()))
                .and_then(|row| NodeRow::decode(&row))
                .and_then(|row| self.identities.learn_row(n, &row));
            if let Err(reason) = read {
                self.page_fault
                    .get_or_insert_with(|| format!("identity node {n}: {reason}"));
                return false;
            }
            self.paging.texts_read += 1;
        }
        true
    }

    /// The id customer `c` is shown by (see
    /// [`crate::identity::Identities::display_id`]), its text read back
    /// when let go.
    pub(super) fn display_id(&mut self, c: u32) -> String {
        let node = self.identities.display_node(CustomerId(c));
        let missing = self.identities.without_text([node]);
        self.texts_in(&missing);
        self.identities.display_id(CustomerId(c))
    }

    /// Every identity of customer `c`, their texts read back when let go.
    pub(super) fn identities_of(&mut self, c: CustomerId) -> Vec<Identity> {
        let nodes = self.identities.set_nodes(c);
        let missing = self.identities.without_text(nodes);
        self.texts_in(&missing);
        self.identities.identities_of(c)
    }

    /// Reads every stored customer and timer back (before a change that
    /// reaches all of them: a deploy, or a take that writes the whole state).
    pub(super) fn page_in_all(&mut self) -> Result<(), CheckpointError> {
        self.all_timers();
        let missing = self.identities.without_text(0..self.identities.len());
        if self.texts_in(&missing) {
            self.identities.make_whole();
        }
        for c in self.customers.stored() {
            if !self.page_in(c) {
                break;
            }
        }
        self.no_fault()
    }

    /// An error for the page fault, if there is one.
    pub(super) fn no_fault(&self) -> Result<(), CheckpointError> {
        match &self.page_fault {
            Some(reason) => Err(CheckpointError::Decode(format!(
                "cannot read a customer back from the store: {reason}"
            ))),
            None => Ok(()),
        }
    }

    /// Lets customers go until at most `budget` are in memory. Call it once
    /// a take of changes is committed, with `unsaved` the customers of the
    /// takes since that are not committed yet: a customer let go is read
    /// back from the store, so it must hold the customer as it is. Does
    /// nothing without a store to read them back from ([`Machine::set_pager`]).
    /// Returns how many were let go.
    pub fn let_go(&mut self, budget: usize, unsaved: &[u32]) -> usize {
        if self.pager.is_none() || !self.follows_changes() || self.page_fault.is_some() {
            return 0;
        }
        let over = self.customers.in_memory().saturating_sub(budget);
        if over == 0 && self.customers.frozen_len() == 0 {
            return 0;
        }
        let mut dirty: crate::fast::Set<u32> = self.dirty.iter().copied().collect();
        dirty.extend(unsaved.iter().copied());
        // Customers a deploy froze (see `Machine::arm_next`): once a committed
        // take wrote their bytes, the store holds them.
        let mut gone = 0;
        for c in self.customers.frozen_numbers() {
            if !self.customers.changed_since_take(c)
                && !dirty.contains(&c)
                && self.customers.let_frozen_go(c)
            {
                gone += 1;
            }
        }
        self.paging.let_go += gone as u64;
        gone + self.go_round(over, |m, c| {
            let Some(cust) = m.customers.peek(c) else {
                return false;
            };
            let keep = m.customers.changed_since_take(c)
                || busy_at(&m.releases, m.now, cust)
                || dirty.contains(&c);
            !keep && m.customers.let_go(c)
        })
    }
}
