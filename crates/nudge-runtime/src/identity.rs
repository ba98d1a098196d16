//! Joining identities into customers.
//!
//! A customer is everything known to be one person: user ids, anonymous
//! (device) ids and email addresses, joined by calls that carry two of them
//! and by `alias`. Joins can arrive after the events they explain, so the
//! caller gets told which customers merged and moves their state together.
//!
//! Two different user ids are never merged: a store's own ids are
//! authoritative, and a shared email or a stray alias must not fuse two
//! accounts.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use serde::{Deserialize, Serialize};

#[cfg(feature = "oracle")]
use crate::segment::{Call, CallKind};

/// A customer, stable until it is absorbed by a merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CustomerId(pub u32);

/// One identifier of a customer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Identity {
    /// The store's user id.
    User(String),
    /// A device or browser id.
    Anonymous(String),
    /// An email address, lower-cased.
    Email(String),
}

impl Identity {
    /// An email identity, normalised so case and spacing do not split a customer.
    pub fn email(address: &str) -> Identity {
        Identity::Email(normal_email(address))
    }
}

fn normal_email(address: &str) -> String {
    address.trim().to_lowercase()
}

/// Every identity a call's names may be stored under, with its kind: the
/// user id, the device id, the previous id of an alias (either kind), and
/// the normalised e-mail address `email`.
fn named<'a>(names: &Names<'a>, email: Option<&'a str>) -> impl Iterator<Item = (Kind, &'a str)> {
    [
        names.user_id.map(|t| (Kind::User, t)),
        names.anonymous_id.map(|t| (Kind::Anonymous, t)),
        names.previous_id.map(|t| (Kind::User, t)),
        names.previous_id.map(|t| (Kind::Anonymous, t)),
        email.map(|t| (Kind::Email, t)),
    ]
    .into_iter()
    .flatten()
}

/// What joining two identities did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// They were already one customer.
    Same(CustomerId),
    /// Two customers became one; `absorbed` no longer exists.
    Merged {
        /// The customer that remains.
        kept: CustomerId,
        /// The customer folded into `kept`.
        absorbed: CustomerId,
    },
    /// Not joined: each side has its own, different user id.
    Refused {
        /// The first side's customer.
        left: CustomerId,
        /// The second side's customer.
        right: CustomerId,
    },
}

/// The customer a call belongs to, and the merges it caused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The customer the call is about.
    pub customer: CustomerId,
    /// Merges in the order they happened; state of `absorbed` moves to `kept`.
    pub merges: Vec<(CustomerId, CustomerId)>,
    /// Joins refused because both sides had different user ids.
    pub refused: Vec<(CustomerId, CustomerId)>,
}

/// The identifiers one call carries, as [`Identities::observe_names`] reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Names<'a> {
    /// The call's `userId`.
    pub user_id: Option<&'a str>,
    /// The call's `anonymousId`.
    pub anonymous_id: Option<&'a str>,
    /// An alias call's `previousId`.
    pub previous_id: Option<&'a str>,
    /// An identify call's `email` trait, when it is a string.
    pub email: Option<&'a str>,
}

impl<'a> Names<'a> {
    #[cfg(feature = "oracle")]
    /// The identifiers of a parsed call.
    pub fn of(call: &'a Call) -> Names<'a> {
        let (previous_id, email) = match &call.kind {
            CallKind::Alias { previous_id } => (Some(previous_id.as_str()), None),
            CallKind::Identify { traits } => (None, traits.get("email").and_then(|e| e.as_str())),
            _ => (None, None),
        };
        Names {
            user_id: call.user_id.as_deref(),
            anonymous_id: call.anonymous_id.as_deref(),
            previous_id,
            email,
        }
    }
}

mod members;
mod seen;
mod texts;

use texts::Texts;

/// An identity's name in a store: its kind mark, then its text (the key
/// a store finds its node by, see `Pager::node_named`).
pub fn stored_name(id: &Identity) -> Vec<u8> {
    let (kind, text) = Kind::of(id);
    members::make_entry(kind, text).into_bytes()
}

/// An identity of this kind and text.
fn to_identity(kind: Kind, text: &str) -> Identity {
    let text = text.to_string();
    match kind {
        Kind::User => Identity::User(text),
        Kind::Anonymous => Identity::Anonymous(text),
        Kind::Email => Identity::Email(text),
    }
}

/// What [`Identities::user`] holds for a set without a user id.
const NO_USER: u32 = u32::MAX;

/// The kind of an [`Identity`], without its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    User,
    Anonymous,
    Email,
}

impl Kind {
    fn of(id: &Identity) -> (Kind, &str) {
        match id {
            Identity::User(s) => (Kind::User, s),
            Identity::Anonymous(s) => (Kind::Anonymous, s),
            Identity::Email(s) => (Kind::Email, s),
        }
    }
}

/// The identity graph: a union-find over identities.
///
/// Serialized as its node tables alone (the layout of [`Stored`]); the
/// index is rebuilt when read.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "Stored")]
pub struct Identities {
    /// Nodes by kind and text: node numbers, hashed by their member's kind
    /// and text, so that the text is held once (in `members`) and a call
    /// naming a known customer allocates nothing (that is almost every call).
    #[serde(skip)]
    index: HashTable<u32>,
    #[serde(skip)]
    hasher: foldhash::fast::RandomState,
    /// Nodes made or joined since the store last took them.
    #[serde(skip)]
    marks: crate::engine::marks::Marks,
    parent: Vec<u32>,
    size: Vec<u32>,
    /// The user id node of each root's set, or [`NO_USER`] (4 bytes a
    /// node where an `Option` takes 8).
    user: Vec<u32>,
    /// The nodes' texts: all of them, or only those in use once a store
    /// holds them (see [`Identities::let_texts_go`]). The index holds the
    /// nodes whose texts are here.
    texts: Texts,
    /// How many nodes' names the store holds (or a take in flight
    /// writes): a take writes the names of those made since once there
    /// are enough of them (see [`Identities::take_rows`]).
    named: u32,
}

/// [`Identities`] as stored: the node tables, in their field order.
#[derive(Deserialize, Default)]
struct Stored {
    parent: Vec<u32>,
    size: Vec<u32>,
    user: Vec<Option<u32>>,
    members: Vec<Identity>,
}

impl From<Stored> for Identities {
    fn from(s: Stored) -> Identities {
        let mut rows = NodeRows::default();
        rows.reserve(s.parent.len());
        let t = &mut rows.0;
        t.parent = s.parent;
        t.size = s.size;
        t.user = s.user.into_iter().map(|u| u.unwrap_or(NO_USER)).collect();
        for (n, id) in (0..).zip(&s.members) {
            let (kind, text) = Kind::of(id);
            t.texts.push(n, kind, text);
        }
        rows.finish()
    }
}

/// The node tables as [`Stored`] lays them out, for the whole-state
/// checkpoint (serde's form of [`Identities`]).
impl Serialize for Identities {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = serializer.serialize_struct("Identities", 4)?;
        st.serialize_field("parent", &self.parent)?;
        st.serialize_field("size", &self.size)?;
        st.serialize_field("user", &Users(&self.user))?;
        st.serialize_field("members", &MemberList(self))?;
        st.end()
    }
}

/// The user column as `Option`s, as stored.
struct Users<'a>(&'a [u32]);

impl Serialize for Users<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|&u| (u != NO_USER).then_some(u)))
    }
}

/// The members as [`Identity`] values, as stored (every text must be in
/// memory: see `Machine::page_in_all`).
struct MemberList<'a>(&'a Identities);

/// An [`Identity`] that borrows its text: the same serialized form.
#[derive(Serialize)]
#[serde(rename = "Identity")]
enum IdentityRef<'a> {
    User(&'a str),
    Anonymous(&'a str),
    Email(&'a str),
}

impl Serialize for MemberList<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = serializer.serialize_seq(Some(self.0.parent.len()))?;
        for n in 0..self.0.parent.len() as u32 {
            let (kind, text) = self.0.texts.get(n).ok_or_else(|| {
                S::Error::custom(format!("identity node {n}'s text is not in memory"))
            })?;
            seq.serialize_element(&match kind {
                Kind::User => IdentityRef::User(text),
                Kind::Anonymous => IdentityRef::Anonymous(text),
                Kind::Email => IdentityRef::Email(text),
            })?;
        }
        seq.end()
    }
}

/// One node of the graph as the store keeps it: a row per node, written
/// when the node is made and again when a join changes it. Path
/// compression is not written: a stored parent is an ancestor the node had,
/// so the stored chains still end at the same roots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRow {
    /// The node's parent (itself for a root).
    pub parent: u32,
    /// The size of the node's set, when it is a root.
    pub size: u32,
    /// The user id node of the node's set, when it is a root.
    pub user: Option<u32>,
    /// The identity the node stands for.
    pub member: Identity,
}

impl NodeRow {
    /// A node's row as a store keeps it, decoded.
    pub fn decode(bytes: &[u8]) -> Result<NodeRow, String> {
        postcard::from_bytes(bytes).map_err(|e| e.to_string())
    }
}

impl Identities {
    /// Starts following which nodes change (all or none counted as changed).
    pub(crate) fn start_marks(&mut self, all: bool) {
        self.marks.start(all);
        // A full take writes every node's name.
        if all {
            self.named = 0;
        }
    }

    /// The rows of the nodes made or joined since the last take, and the
    /// names of the nodes made since names were last taken, once there are
    /// `name_every` of them or the take is whole (a store finds a node by
    /// its name); none with `name_every` `None` (nothing reads them). Names are written in batches because a name goes
    /// anywhere in the store's index: each batch rewrites most of its
    /// pages, whatever the batch's size. Every node taken must have its
    /// text in memory (see [`Identities::marked_without_text`]): one
    /// without is named in the error.
    pub(crate) fn take_rows(&mut self, name_every: Option<u32>) -> Result<NodesTaken, u32> {
        let (nodes, all): (Vec<u32>, bool) = match self.marks.take() {
            crate::engine::marks::Taken::All => ((0..self.parent.len() as u32).collect(), true),
            crate::engine::marks::Taken::Some(list) => (list, false),
        };
        let mut out = NodesTaken::default();
        for n in nodes {
            out.rows.push((n, self.row(n).ok_or(n)?));
        }
        let len = self.parent.len() as u32;
        let due = |every: u32| all || len.saturating_sub(self.named) >= every.max(1);
        if name_every.is_some_and(due) {
            for n in self.named..len {
                let (kind, text) = self.texts.get(n).ok_or(n)?;
                out.names
                    .push((members::make_entry(kind, text).into_bytes(), n));
            }
            self.named = len;
        }
        out.named = self.named;
        Ok(out)
    }

    /// The nodes a take will write whose texts are not in memory (to be
    /// read back first, with [`Identities::learn_row`]).
    pub(crate) fn marked_without_text(&self) -> Vec<u32> {
        if !self.texts.partial() {
            return Vec::new();
        }
        match self.marks.list() {
            Some(list) => self.without_text(list.iter().copied()),
            None => self.without_text(0..self.parent.len() as u32),
        }
    }

    /// Which of `nodes` have no text in memory.
    pub(crate) fn without_text(&self, nodes: impl IntoIterator<Item = u32>) -> Vec<u32> {
        if !self.texts.partial() {
            return Vec::new();
        }
        nodes
            .into_iter()
            .filter(|&n| (n as usize) < self.parent.len() && self.texts.get(n).is_none())
            .collect()
    }

    /// Whether the nodes' texts are partly left in the store.
    pub(crate) fn texts_left(&self) -> bool {
        self.texts.partial()
    }

    /// How many nodes have their texts in memory (and are in the index).
    pub(crate) fn texts_in_memory(&self) -> usize {
        self.index.len()
    }

    /// How many nodes there are.
    pub(crate) fn len(&self) -> u32 {
        self.parent.len() as u32
    }

    /// The stored names of the identities a call names that are not in
    /// memory (while texts are left in the store): each is to be looked up
    /// in the store, and its node learnt, before the call is observed, or
    /// it would be made again as a new node.
    pub(crate) fn names_to_read(&self, names: &Names<'_>, out: &mut Vec<Vec<u8>>) {
        if !self.texts.partial() {
            return;
        }
        let email = names
            .email
            .filter(|e| !e.trim().is_empty())
            .map(normal_email);
        for (kind, text) in named(names, email.as_deref()) {
            if self.find_node(kind, text).is_none() && self.texts.may_be_stored(kind, text) {
                out.push(members::make_entry(kind, text).into_bytes());
            }
        }
    }

    /// Puts in `out` the customer (the root of the set) of each identity
    /// `names` names that the graph knows now, changing nothing: what
    /// observing them will read (see `Machine::read_ahead`).
    pub(crate) fn roots_named(&self, names: &Names<'_>, out: &mut Vec<u32>) {
        let email = names
            .email
            .filter(|e| !e.trim().is_empty())
            .map(normal_email);
        for (kind, text) in named(names, email.as_deref()) {
            if let Some(n) = self.find_node(kind, text) {
                out.push(self.root(n));
            }
        }
    }

    /// The stored name of `id`, when it is not in memory and may be stored.
    pub(crate) fn name_to_read(&self, id: &Identity) -> Option<Vec<u8>> {
        let (kind, text) = Kind::of(id);
        (self.find_node(kind, text).is_none() && self.texts.may_be_stored(kind, text))
            .then(|| members::make_entry(kind, text).into_bytes())
    }

    /// Node `n` is the one named `name` (as the store says).
    pub(crate) fn learn_name(&mut self, n: u32, name: &[u8]) -> Result<(), String> {
        let entry = std::str::from_utf8(name)
            .ok()
            .and_then(members::entry)
            .ok_or_else(|| format!("identity node {n} is stored under a damaged name"))?;
        self.learn(n, entry.0, entry.1)
    }

    /// Node `n`'s text, from its stored row.
    pub(crate) fn learn_row(&mut self, n: u32, row: &NodeRow) -> Result<(), String> {
        let (kind, text) = Kind::of(&row.member);
        self.learn(n, kind, text)
    }

    fn learn(&mut self, n: u32, kind: Kind, text: &str) -> Result<(), String> {
        if n as usize >= self.parent.len() {
            return Err(format!(
                "the store names identity node {n}, and the graph has {}",
                self.parent.len()
            ));
        }
        if self.texts.get(n).is_none() && self.texts.learn(n, kind, text) {
            self.index_node(n, kind, text);
        }
        Ok(())
    }

    /// Lets go of the texts a committed take stored by name: those of
    /// nodes numbered below `through` (the take's [`NodesTaken::named`])
    /// that changed in no take since. From then on only the texts in use
    /// are in memory; the others are read back by name or number. Returns
    /// how many were let go.
    pub(crate) fn let_texts_go(&mut self, through: u32) -> usize {
        if self.marks.list().is_none() || through == 0 {
            // Every node counts as changed (the take to come needs them
            // all), or none is stored by name yet.
            return 0;
        }
        let before = self.index.len();
        let nodes = self.parent.len() as u32;
        let marks = &self.marks;
        let keep = |n: u32| n >= through || marks.is_marked(n);
        self.texts.keep_only(nodes, keep);
        self.index.retain(|n| keep(*n));
        if self.index.capacity() > 64 && self.index.capacity() > 4 * self.index.len() {
            let (hasher, texts) = (&self.hasher, &self.texts);
            self.index.shrink_to_fit(|&m| {
                texts
                    .get(m)
                    .map_or(0, |(kind, text)| hash(hasher, kind, text))
            });
        }
        before.saturating_sub(self.index.len())
    }

    /// Every text in memory again, once each node's was read back
    /// (before the whole graph is written); false while one is missing.
    pub(crate) fn make_whole(&mut self) -> bool {
        self.texts.make_whole(self.parent.len() as u32)
    }

    /// The nodes of customer `c`'s set.
    pub(crate) fn set_nodes(&mut self, c: CustomerId) -> Vec<u32> {
        let root = self.find(c.0);
        (0..self.parent.len() as u32)
            .filter(|&n| self.find(n) == root)
            .collect()
    }

    /// The node whose text is customer `c`'s display id (see
    /// [`Identities::display_id`]).
    pub(crate) fn display_node(&mut self, c: CustomerId) -> u32 {
        let root = self.find(c.0);
        self.user_of(root).unwrap_or(root)
    }

    /// Node `n` as a row.
    fn row(&self, n: u32) -> Option<NodeRow> {
        let i = n as usize;
        Some(NodeRow {
            parent: *self.parent.get(i)?,
            size: *self.size.get(i)?,
            user: Some(*self.user.get(i)?).filter(|&u| u != NO_USER),
            member: self.identity(n)?,
        })
    }
}

/// What [`Identities::take_rows`] gives a take.
#[derive(Debug, Default)]
pub(crate) struct NodesTaken {
    /// The rows of the nodes made or changed.
    pub rows: Vec<(u32, NodeRow)>,
    /// The stored names of the nodes made, with their numbers.
    pub names: Vec<(Vec<u8>, u32)>,
    /// How many nodes' names are stored once the take is.
    pub named: u32,
}

/// Stored identity nodes read one at a time, in increasing number, into the
/// graph they make: a restart holds each node once, not as a row and again
/// in the graph.
#[derive(Default)]
pub struct NodeRows(Tables);

/// The graph's node tables, without the index.
#[derive(Default)]
struct Tables {
    parent: Vec<u32>,
    size: Vec<u32>,
    user: Vec<u32>,
    texts: Texts,
    /// How many nodes' names the store holds; `None` when it does not say
    /// (a whole-state checkpoint: a whole take follows, which names all).
    named: Option<u32>,
}

impl NodeRows {
    /// Makes room for `n` more nodes: a restart that knows how many are
    /// stored does not grow the graph's tables by doubling, which holds
    /// each table twice while it is copied.
    pub fn reserve(&mut self, n: usize) {
        let s = &mut self.0;
        s.parent.reserve_exact(n);
        s.size.reserve_exact(n);
        s.user.reserve_exact(n);
        s.texts.reserve(n);
    }

    /// Leaves the nodes' texts in the store: the graph holds only their
    /// links, and the engine reads a text back by name or number when it
    /// needs it (an engine with a `Pager`). Call it before the first push.
    pub fn leave_texts_in_store(&mut self) {
        self.0.texts = Texts::left(self.0.parent.capacity());
    }

    /// The store holds the names of the first `n` nodes: the texts of
    /// those after stay in memory, and the next take that names nodes
    /// names them.
    pub fn names_stored(&mut self, n: u32) {
        self.0.named = Some(n);
    }

    /// Node `n`, which must follow the last one without a gap.
    pub fn push(&mut self, n: u32, row: NodeRow) -> Result<(), String> {
        let s = &mut self.0;
        if n as usize != s.parent.len() {
            return Err(format!(
                "identity node {n} is stored where node {} was expected",
                s.parent.len()
            ));
        }
        s.parent.push(row.parent);
        s.size.push(row.size);
        s.user.push(row.user.unwrap_or(NO_USER));
        let (kind, text) = Kind::of(&row.member);
        if s.texts.partial() && s.named.is_some_and(|named| n < named) {
            s.texts.note(kind, text);
        } else {
            s.texts.push(n, kind, text);
        }
        Ok(())
    }

    /// Whether the nodes' texts are left in the store.
    pub fn texts_left(&self) -> bool {
        self.0.texts.partial()
    }

    /// The graph of the nodes pushed (the check on a restored state follows).
    pub fn finish(self) -> Identities {
        let Tables {
            parent,
            size,
            user,
            texts,
            named,
        } = self.0;
        let len = parent.len() as u32;
        let mut ids = Identities {
            parent,
            size,
            user,
            texts,
            named: named.unwrap_or(len).min(len),
            ..Identities::default()
        };
        let hasher = ids.hasher.clone();
        let numbers = ids.texts.numbers(len);
        let mut index = HashTable::with_capacity(numbers.len());
        for n in numbers {
            let Some((kind, text)) = ids.texts.get(n) else {
                continue;
            };
            let h = hash(&hasher, kind, text);
            // A damaged graph may name one identity twice: the first node wins.
            if index.find(h, |&m| ids.is(m, kind, text)).is_none() {
                index.insert_unique(h, n, |&m| ids.hash_of(m));
            }
        }
        ids.index = index;
        ids
    }
}

/// The hash of an identity in the index.
fn hash(hasher: &foldhash::fast::RandomState, kind: Kind, text: &str) -> u64 {
    hasher.hash_one((kind as u8, text))
}

impl Identities {
    /// Whether node `n` is the identity of this kind and text.
    fn is(&self, n: u32, kind: Kind, text: &str) -> bool {
        self.texts.get(n) == Some((kind, text))
    }

    /// Node `n`'s identity, when its text is in memory.
    fn identity(&self, n: u32) -> Option<Identity> {
        let (kind, text) = self.texts.get(n)?;
        Some(to_identity(kind, text))
    }

    /// The index hash of node `n`'s identity.
    fn hash_of(&self, n: u32) -> u64 {
        self.texts
            .get(n)
            .map_or(0, |(kind, text)| hash(&self.hasher, kind, text))
    }

    /// The node of an identity, if it has been seen.
    fn find_node(&self, kind: Kind, text: &str) -> Option<u32> {
        let h = hash(&self.hasher, kind, text);
        self.index.find(h, |&n| self.is(n, kind, text)).copied()
    }

    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// The customer an identity belongs to, if it has been seen.
    pub fn customer_of(&mut self, id: &Identity) -> Option<CustomerId> {
        let (kind, text) = Kind::of(id);
        let node = self.find_node(kind, text)?;
        Some(CustomerId(self.find(node)))
    }

    /// The customer of an identity, creating a new customer if it is new.
    pub fn customer(&mut self, id: Identity) -> CustomerId {
        let node = self.node(id);
        CustomerId(self.find(node))
    }

    /// Every identity of a customer, sorted (none for a customer the graph
    /// does not have).
    pub fn identities_of(&mut self, customer: CustomerId) -> Vec<Identity> {
        let mut out: Vec<Identity> = self
            .set_nodes(customer)
            .into_iter()
            .filter_map(|n| self.identity(n))
            .collect();
        out.sort();
        out
    }

    /// The id to show for a customer: its user id, else its first identity
    /// (empty for a customer the graph does not have).
    pub fn display_id(&mut self, customer: CustomerId) -> String {
        let node = self.display_node(customer);
        self.texts
            .get(node)
            .map_or_else(String::new, |(_, text)| text.to_string())
    }

    /// The user id node of root `root`'s set, if it has one.
    fn user_of(&self, root: u32) -> Option<u32> {
        self.user
            .get(root as usize)
            .copied()
            .filter(|&u| u != NO_USER)
    }

    /// How many nodes root `root`'s set has.
    fn size_of(&self, root: u32) -> u32 {
        self.size.get(root as usize).copied().unwrap_or(0)
    }

    /// Declares that two identities are one person.
    pub fn join(&mut self, a: Identity, b: Identity) -> Join {
        let (na, nb) = (self.node(a), self.node(b));
        self.join_nodes(na, nb)
    }

    fn join_nodes(&mut self, na: u32, nb: u32) -> Join {
        let (ra, rb) = (self.find(na), self.find(nb));
        if ra == rb {
            return Join::Same(CustomerId(ra));
        }
        if let (Some(ua), Some(ub)) = (self.user_of(ra), self.user_of(rb))
            && ua != ub
        {
            return Join::Refused {
                left: CustomerId(ra),
                right: CustomerId(rb),
            };
        }
        // Union by size keeps every find short; the customer with a user id is
        // not favoured, since ids only need to be stable, not meaningful.
        let (kept, absorbed) = if self.size_of(ra) >= self.size_of(rb) {
            (ra, rb)
        } else {
            (rb, ra)
        };
        // Both are roots `find` returned: nodes of the graph.
        let (moved, user) = (self.size_of(absorbed), self.user_of(absorbed));
        self.marks.mark(absorbed);
        self.marks.mark(kept);
        if let Some(p) = self.parent.get_mut(absorbed as usize) {
            *p = kept;
        }
        if let Some(size) = self.size.get_mut(kept as usize) {
            *size += moved;
        }
        if let Some(u) = self.user.get_mut(kept as usize)
            && *u == NO_USER
        {
            *u = user.unwrap_or(NO_USER);
        }
        Join::Merged {
            kept: CustomerId(kept),
            absorbed: CustomerId(absorbed),
        }
    }

    #[cfg(feature = "oracle")]
    /// Applies the identities a call carries and returns its customer, or
    /// None for a call that names nobody (which `parse_line` never yields).
    ///
    /// A call's user id and anonymous id are one person; `alias` joins its
    /// previous id to its user id; an `identify` with an `email` trait joins
    /// the address.
    pub fn observe(&mut self, call: &Call) -> Option<Observed> {
        self.observe_names(&Names::of(call))
    }

    /// [`Identities::observe`] for a call already taken apart.
    pub fn observe_names(&mut self, call: &Names<'_>) -> Option<Observed> {
        let mut out = Observed {
            customer: CustomerId(0),
            merges: Vec::new(),
            refused: Vec::new(),
        };
        let primary = match (call.user_id, call.anonymous_id) {
            (Some(u), _) => self.node_of(Kind::User, u),
            (None, Some(a)) => self.node_of(Kind::Anonymous, a),
            (None, None) => return None,
        };
        // Nodes are made in the same order as ever (the call's own first,
        // then each joined one as it is joined), so customer numbers do not
        // change.
        if let (Some(_), Some(a)) = (call.user_id, call.anonymous_id) {
            let other = self.node_of(Kind::Anonymous, a);
            self.join_into(&mut out, primary, other);
        }
        if let Some(previous_id) = call.previous_id {
            // The previous id may be a user id or a device id.
            let kind = if self.find_node(Kind::User, previous_id).is_some() {
                Kind::User
            } else {
                Kind::Anonymous
            };
            let other = self.node_of(kind, previous_id);
            self.join_into(&mut out, primary, other);
        }
        if let Some(email) = call.email
            && !email.trim().is_empty()
        {
            let other = self.node_of(Kind::Email, &normal_email(email));
            self.join_into(&mut out, primary, other);
        }
        out.customer = CustomerId(self.find(primary));
        Some(out)
    }

    fn join_into(&mut self, out: &mut Observed, a: u32, b: u32) {
        match self.join_nodes(a, b) {
            Join::Same(_) => {}
            Join::Merged { kept, absorbed } => out.merges.push((kept, absorbed)),
            Join::Refused { left, right } => out.refused.push((left, right)),
        }
    }

    fn node(&mut self, id: Identity) -> u32 {
        let (kind, text) = Kind::of(&id);
        self.node_of(kind, text)
    }

    /// The node of an identity, made when new.
    fn node_of(&mut self, kind: Kind, text: &str) -> u32 {
        if let Some(n) = self.find_node(kind, text) {
            return n;
        }
        let n = self.parent.len() as u32;
        self.marks.mark(n);
        self.parent.push(n);
        self.size.push(1);
        self.user.push(if kind == Kind::User { n } else { NO_USER });
        self.texts.push(n, kind, text);
        self.index_node(n, kind, text);
        n
    }

    /// Puts node `n` (whose text is in memory) in the index.
    fn index_node(&mut self, n: u32, kind: Kind, text: &str) {
        let h = hash(&self.hasher, kind, text);
        let (index, hasher, texts) = (&mut self.index, &self.hasher, &self.texts);
        index.insert_unique(h, n, |&m| {
            texts
                .get(m)
                .map_or(0, |(kind, text)| hash(hasher, kind, text))
        });
    }

    /// The root of node `n`'s set, changing nothing (see [`Identities::find`]).
    fn root(&self, n: u32) -> u32 {
        let mut root = n;
        while let Some(&p) = self.parent.get(root as usize)
            && p != root
        {
            root = p;
        }
        root
    }

    /// The root of node `n`'s set; a number that is no node is its own.
    fn find(&mut self, mut n: u32) -> u32 {
        let root = self.root(n);
        // Path compression: later finds on this chain take one step.
        while let Some(p) = self.parent.get_mut(n as usize)
            && *p != root
        {
            n = std::mem::replace(p, root);
        }
        root
    }

    /// Checks that a stored graph holds together: one entry per node in
    /// every table, every link to a node, and every chain of parents ending
    /// at a root (a cycle would make `find` loop for ever).
    pub(crate) fn check(&self) -> Result<(), String> {
        let n = self.parent.len();
        if self.size.len() != n || self.user.len() != n || !self.texts.fits(n) {
            return Err("the identity graph's tables differ in length".into());
        }
        let outside = |x: &u32| *x as usize >= n;
        if let Some(x) = self
            .index
            .iter()
            .chain(self.user.iter().filter(|&&u| u != NO_USER))
            .chain(&self.parent)
            .find(|x| outside(x))
        {
            return Err(format!(
                "the identity graph links to node {x}, and it has {n}"
            ));
        }
        // Nodes known to lead to a root; each is walked from once.
        let mut rooted = vec![false; n];
        let mut path = Vec::new();
        for start in 0..n {
            let mut x = start;
            path.clear();
            while rooted.get(x) == Some(&false) {
                let p = self.parent.get(x).map_or(x, |&p| p as usize);
                path.push(x);
                if p == x {
                    break;
                }
                if path.len() > n {
                    return Err(format!(
                        "the identity graph's parents of node {start} go round in a circle"
                    ));
                }
                x = p;
            }
            for &y in &path {
                if let Some(r) = rooted.get_mut(y) {
                    *r = true;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::parse_line;

    fn call(json: &str) -> Call {
        parse_line(json).expect("valid call")
    }

    fn observe(ids: &mut Identities, json: &str) -> Observed {
        ids.observe(&call(json)).expect("the call names a customer")
    }

    #[test]
    fn a_purchase_joined_later_reaches_the_cart_customer() {
        let mut ids = Identities::new();
        let cart = observe(
            &mut ids,
            r#"{"type":"track","event":"Checkout Started","anonymousId":"a9","timestamp":"2026-11-23T10:00:00Z"}"#,
        );
        let order = observe(
            &mut ids,
            r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-11-23T10:30:00Z"}"#,
        );
        assert_ne!(cart.customer, order.customer, "not joined yet");
        let alias = observe(
            &mut ids,
            r#"{"type":"alias","previousId":"a9","userId":"u1","timestamp":"2026-11-23T10:45:00Z"}"#,
        );
        assert_eq!(alias.merges.len(), 1, "the alias merges the two customers");
        let (kept, absorbed) = alias.merges[0];
        assert!([cart.customer, order.customer].contains(&kept));
        assert!([cart.customer, order.customer].contains(&absorbed));
        assert_eq!(
            ids.customer_of(&Identity::Anonymous("a9".into())),
            ids.customer_of(&Identity::User("u1".into()))
        );
        assert_eq!(ids.display_id(kept), "u1");
    }

    #[test]
    fn email_joins_devices_but_never_two_user_ids() {
        let mut ids = Identities::new();
        observe(
            &mut ids,
            r#"{"type":"identify","anonymousId":"phone","timestamp":"2026-11-23T10:00:00Z","traits":{"email":"Ana@Example.com "}}"#,
        );
        let laptop = observe(
            &mut ids,
            r#"{"type":"identify","anonymousId":"laptop","timestamp":"2026-11-23T10:01:00Z","traits":{"email":"ana@example.com"}}"#,
        );
        assert_eq!(laptop.merges.len(), 1);
        assert_eq!(
            ids.customer_of(&Identity::Anonymous("phone".into())),
            ids.customer_of(&Identity::Anonymous("laptop".into()))
        );

        observe(
            &mut ids,
            r#"{"type":"identify","userId":"u1","timestamp":"2026-11-23T10:02:00Z","traits":{"email":"shared@example.com"}}"#,
        );
        let second = observe(
            &mut ids,
            r#"{"type":"identify","userId":"u2","timestamp":"2026-11-23T10:03:00Z","traits":{"email":"shared@example.com"}}"#,
        );
        assert_eq!(second.refused.len(), 1);
        assert_ne!(
            ids.customer_of(&Identity::User("u1".into())),
            ids.customer_of(&Identity::User("u2".into()))
        );
    }

    #[test]
    fn identities_of_lists_the_whole_customer() {
        let mut ids = Identities::new();
        let seen = observe(
            &mut ids,
            r#"{"type":"identify","userId":"u1","anonymousId":"a1","timestamp":"2026-11-23T10:00:00Z","traits":{"email":"x@y.z"}}"#,
        );
        assert_eq!(
            ids.identities_of(seen.customer),
            vec![
                Identity::User("u1".into()),
                Identity::Anonymous("a1".into()),
                Identity::Email("x@y.z".into()),
            ]
        );
    }

    #[test]
    fn a_long_chain_of_joins_stays_one_customer() {
        let mut ids = Identities::new();
        for i in 0..10_000 {
            ids.join(
                Identity::Anonymous(format!("d{i}")),
                Identity::Anonymous(format!("d{}", i + 1)),
            );
        }
        let first = ids.customer_of(&Identity::Anonymous("d0".into()));
        let last = ids.customer_of(&Identity::Anonymous("d10000".into()));
        assert!(first.is_some());
        assert_eq!(first, last);
    }

    #[test]
    fn a_stored_graph_that_does_not_hold_together_is_found_out() {
        let mut ids = Identities::new();
        observe(
            &mut ids,
            r#"{"type":"identify","userId":"u1","anonymousId":"a1","timestamp":"2026-11-23T10:00:00Z"}"#,
        );
        observe(
            &mut ids,
            r#"{"type":"identify","userId":"u2","timestamp":"2026-11-23T10:00:00Z"}"#,
        );
        assert_eq!(ids.check(), Ok(()));
        // Parents that go round in a circle would make `find` loop for ever.
        let mut circle = ids.clone();
        circle.parent = vec![1, 2, 0];
        let err = circle.check().unwrap_err();
        assert!(err.contains("go round in a circle"), "{err}");
        let mut outside = ids.clone();
        outside.parent[2] = 7;
        let err = outside.check().unwrap_err();
        assert!(err.contains("links to node 7, and it has 3"), "{err}");
        let mut short = ids.clone();
        short.texts.pop();
        assert!(short.check().is_err());
    }

    /// The graph as the derived serde of its earlier layout wrote it: an
    /// `Option` per user column entry and an [`Identity`] per member.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Earlier {
        parent: Vec<u32>,
        size: Vec<u32>,
        user: Vec<Option<u32>>,
        members: Vec<Identity>,
    }

    #[test]
    fn the_graph_is_stored_in_the_layout_it_always_had() {
        let mut ids = Identities::new();
        observe(
            &mut ids,
            r#"{"type":"identify","userId":"u1","anonymousId":"a1","timestamp":"2026-11-23T10:00:00Z","traits":{"email":"X@y.z"}}"#,
        );
        observe(
            &mut ids,
            r#"{"type":"track","event":"Product Viewed","anonymousId":"ä2","timestamp":"2026-11-23T10:00:00Z"}"#,
        );
        let earlier = Earlier {
            parent: ids.parent.clone(),
            size: ids.size.clone(),
            user: vec![Some(0), None, None, None],
            members: vec![
                Identity::User("u1".into()),
                Identity::Anonymous("a1".into()),
                Identity::Email("x@y.z".into()),
                Identity::Anonymous("ä2".into()),
            ],
        };
        let bytes = postcard::to_allocvec(&ids).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&earlier).unwrap());
        let mut back: Identities = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.check(), Ok(()));
        assert_eq!(
            back.customer_of(&Identity::Anonymous("ä2".into())),
            Some(CustomerId(3))
        );
        assert_eq!(back.display_id(CustomerId(2)), "u1");
        let rows: Vec<NodeRow> = (0..4).filter_map(|n| back.row(n)).collect();
        let mut again = NodeRows::default();
        for (n, row) in (0..).zip(rows) {
            again.push(n, row).unwrap();
        }
        let again = again.finish();
        assert_eq!(postcard::to_allocvec(&again).unwrap(), bytes);
    }

    #[test]
    fn a_customer_the_graph_does_not_have_has_no_identities() {
        let mut ids = Identities::new();
        observe(
            &mut ids,
            r#"{"type":"identify","userId":"u1","timestamp":"2026-11-23T10:00:00Z"}"#,
        );
        assert_eq!(ids.display_id(CustomerId(5)), "");
        assert_eq!(ids.identities_of(CustomerId(5)), Vec::<Identity>::new());
        assert_eq!(ids.display_id(CustomerId(0)), "u1");
    }
}
