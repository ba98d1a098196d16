//! The identity stage: every identifier a call carries mapped to its
//! canonical customer in PostgreSQL, shared by every ingest node.
//!
//! The rules are the engine's (`nudge_runtime::identity`): a call's user
//! id names its customer, else its anonymous id; its user id and anonymous
//! id are one person; an `alias` joins its `previousId` (a known user id,
//! else a device id) to it; an `identify`'s `email` trait joins the
//! address; two different user ids are never joined. When two known
//! customers join, the older (lower id) is kept and the other absorbed:
//! its row forwards to the kept one (`merged_into`), its identifiers are
//! moved over, and the merge is recorded in `merges` for the absorbed
//! customer's partition to be told.
//!
//! Concurrency: a batch of calls is read without locks, worked out in
//! memory, and written in one transaction whose every write is
//! conditional on what was read: new identifiers are inserted with
//! `ON CONFLICT DO NOTHING` (a concurrent insert of the same identifier
//! wins, and the batch is worked out again from what it wrote), and a
//! customer row is changed only while it is still unmerged and has the
//! user id that was read. Anything else (a lost condition, a deadlock, a
//! serialization failure) rolls the batch back and tries it again. Calls
//! that only name known customers, almost all of them, write nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::calls::{Identifiers, Kind, partition_of};
use crate::{ClusterError, Settings, connect_postgres};

/// Where one call goes: its canonical customer and that customer's partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The canonical customer.
    pub customer: i64,
    /// Its partition.
    pub partition: u32,
}

/// Two known customers found to be one person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merge {
    /// The customer the joining call goes to, which takes its state in
    /// (a later call of the same batch may absorb that one in turn).
    pub kept: i64,
    /// The customer folded into `kept`; calls for it go to the customer
    /// that remains from now on.
    pub absorbed: i64,
    /// `kept`'s partition, where the joining call goes.
    pub kept_partition: u32,
    /// `absorbed`'s partition, which is told of the merge.
    pub absorbed_partition: u32,
    /// When the merge was recorded, in milliseconds since the epoch (UTC).
    pub at: i64,
    /// The `messageId` of the call that joined them, if it had one.
    pub message_id: Option<String>,
    /// The time of the call that joined them (ms since the epoch, as the
    /// engine reads it), when known: the absorbed partition's clock goes
    /// there before it hands the customer over.
    pub call_at: Option<i64>,
    /// The absorbed customer's identifiers before the merge: the absorbed
    /// partition's engine finds the customer by them.
    pub identities: Vec<(Kind, String)>,
}

/// What a batch of calls came to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// One route per call, in order.
    pub routes: Vec<Route>,
    /// The merges the batch made, by absorbed customer.
    pub merges: Vec<Merge>,
    /// The call that made each merge: its place in `routes`, and the
    /// customer it absorbed. The merge record goes to the log just before
    /// the call; when the partitions differ, the kept partition takes the
    /// absorbed customer's state in before it applies the call.
    pub joins: Vec<(usize, i64)>,
}

/// The identity stage of one ingest node: a few PostgreSQL connections,
/// each taking whatever calls are waiting when it is free, so that many
/// small requests share one round of queries.
#[derive(Clone)]
pub struct Stage {
    jobs: mpsc::Sender<Job>,
}

/// Calls waiting for their routes.
struct Job {
    calls: Vec<Identifiers>,
    reply: oneshot::Sender<Result<Resolved, ClusterError>>,
}

/// One PostgreSQL connection of the stage, with the statements every batch
/// runs prepared once.
struct Connection {
    client: Client,
    /// The identifiers asked for, each with its customer's row.
    identities: tokio_postgres::Statement,
    /// Customer rows by id.
    customers: tokio_postgres::Statement,
}

impl Connection {
    /// Connects and prepares the statements.
    async fn open(settings: &Settings) -> Result<Connection, ClusterError> {
        let client = connect_postgres(settings).await?;
        let identities = client
            .prepare(&format!(
                "SELECT i.kind, i.value, i.customer, c.id, c.partition, c.user_id, c.merged_into
                 FROM unnest($1::int2[], $2::text[]) AS w(kind, value)
                 JOIN {} i ON i.kind = w.kind AND i.value = w.value
                 LEFT JOIN {} c ON c.id = i.customer",
                settings.table("identities"),
                settings.table("customers")
            ))
            .await
            .map_err(|e| ClusterError::pg("preparing statements", &e))?;
        let customers = client
            .prepare(&format!(
                "SELECT id, partition, user_id, merged_into FROM {} WHERE id = ANY($1)",
                settings.table("customers")
            ))
            .await
            .map_err(|e| ClusterError::pg("preparing statements", &e))?;
        Ok(Connection {
            client,
            identities,
            customers,
        })
    }
}

/// The most calls one transaction works out.
const GROUP: usize = 2_000;
/// How many times a batch is tried against concurrent changes.
const TRIES: u32 = 30;

impl Stage {
    /// Connects `settings.connections` times and checks that the schema
    /// holds a cluster with the same partition count and prefix.
    pub async fn connect(settings: &Settings) -> Result<Stage, ClusterError> {
        let settings = Arc::new(settings.clone());
        // Checked before the statements are prepared, so that a schema
        // without a cluster is reported as such.
        let check = connect_postgres(&settings).await?;
        crate::init::check_recorded(&check, &settings).await?;
        drop(check);
        let mut clients = Vec::new();
        for _ in 0..settings.connections.max(1) {
            clients.push(Connection::open(&settings).await?);
        }
        let (jobs, rx) = mpsc::channel::<Job>(1_024);
        let rx = Arc::new(Mutex::new(rx));
        for client in clients {
            tokio::spawn(work(client, rx.clone(), settings.clone()));
        }
        Ok(Stage { jobs })
    }

    /// The routes of `calls`, in order, and the merges they made; durable in
    /// PostgreSQL when this returns.
    pub async fn resolve(&self, calls: Vec<Identifiers>) -> Result<Resolved, ClusterError> {
        let (reply, answer) = oneshot::channel();
        let gone = || ClusterError::Postgres {
            doing: "resolving identities".into(),
            reason: "the identity stage has stopped".into(),
        };
        self.jobs
            .send(Job { calls, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// One connection's loop: take the waiting jobs, resolve them together,
/// answer each with its share.
async fn work(
    mut client: Connection,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    settings: Arc<Settings>,
) {
    loop {
        let mut jobs = Vec::new();
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut n = first.calls.len();
            jobs.push(first);
            while n < GROUP {
                match rx.try_recv() {
                    Ok(job) => {
                        n += job.calls.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
        }
        let calls: Vec<Identifiers> = jobs.iter().flat_map(|j| j.calls.iter().cloned()).collect();
        let result = resolve(&mut client, &settings, &calls).await;
        let mut at = 0;
        for job in jobs {
            let n = job.calls.len();
            let share = match &result {
                Ok(all) => {
                    // Each request publishes the merges its own calls made,
                    // each just before its call.
                    let joins: Vec<(usize, i64)> = all
                        .joins
                        .iter()
                        .filter(|(i, _)| (at..at + n).contains(i))
                        .map(|&(i, absorbed)| (i - at, absorbed))
                        .collect();
                    Ok(Resolved {
                        routes: all.routes.get(at..at + n).unwrap_or_default().to_vec(),
                        merges: all
                            .merges
                            .iter()
                            .filter(|m| joins.iter().any(|(_, a)| *a == m.absorbed))
                            .cloned()
                            .collect(),
                        joins,
                    })
                }
                Err(e) => Err(e.clone()),
            };
            at += n;
            let _ = job.reply.send(share);
        }
        if client.client.is_closed() {
            match Connection::open(&settings).await {
                Ok(c) => client = c,
                Err(e) => {
                    eprintln!("warning: identity stage: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Resolves `calls` on one connection, trying again while concurrent
/// changes get in the way.
async fn resolve(
    client: &mut Connection,
    settings: &Settings,
    calls: &[Identifiers],
) -> Result<Resolved, ClusterError> {
    for attempt in 0..TRIES {
        match attempt_once(client, settings, calls).await {
            Ok(done) => return Ok(done),
            Err(Failure::Retry) => {
                // Spread the next try so that two batches that collided do
                // not collide again in step.
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let wait = u64::from(attempt.min(8)) * 2 + u64::from(nanos % 3);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            Err(Failure::Fatal(e)) => return Err(e),
        }
    }
    Err(ClusterError::Contended { tries: TRIES })
}

/// Why one try did not finish.
enum Failure {
    /// Something it read changed before it wrote: read again.
    Retry,
    Fatal(ClusterError),
}

/// Whether a PostgreSQL error means "try again": serialization failure,
/// deadlock, or a unique key taken by a concurrent insert.
fn failure(doing: &str, e: &tokio_postgres::Error) -> Failure {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::UNIQUE_VIOLATION =>
        {
            Failure::Retry
        }
        _ => Failure::Fatal(ClusterError::pg(doing, e)),
    }
}

/// A customer as the batch sees it.
#[derive(Clone, Debug)]
struct Customer {
    partition: u32,
    /// Its user id as read (for a customer in the table), which the
    /// batch's writes are conditional on.
    read_user: Option<String>,
    /// Its user id now.
    user: Option<String>,
    /// The customer it was joined into in this batch.
    parent: Option<i64>,
}

/// The batch's view of the graph: known customers have their table ids,
/// customers new in this batch negative ones in the order they were made.
struct Graph<'s> {
    settings: &'s Settings,
    ids: HashMap<(Kind, String), i64>,
    customers: HashMap<i64, Customer>,
    /// Identifiers new in this batch, in the order they were met.
    new_ids: Vec<(Kind, String)>,
    next_new: i64,
    /// Merges of known customers: absorbed → the place in the batch of
    /// the call that joined them.
    absorbed: BTreeMap<i64, usize>,
    /// The place in the batch of the call being observed.
    call: usize,
}

impl Graph<'_> {
    /// Takes in a customer row as read: a live customer, or one absorbed
    /// (then only where it went).
    fn take(
        &mut self,
        forward: &mut HashMap<i64, i64>,
        id: i64,
        partition: i32,
        user: Option<String>,
        merged_into: Option<i64>,
    ) {
        match merged_into {
            Some(into) => {
                forward.insert(id, into);
            }
            None => {
                self.customers.entry(id).or_insert_with(|| Customer {
                    partition: u32::try_from(partition).unwrap_or(0),
                    read_user: user.clone(),
                    user,
                    parent: None,
                });
            }
        }
    }

    /// Whether customer `c` is `ancestor` or was joined into it, directly
    /// or through others, in this batch.
    fn descends(&self, mut c: i64, ancestor: i64) -> bool {
        loop {
            if c == ancestor {
                return true;
            }
            match self.customers.get(&c).and_then(|x| x.parent) {
                Some(p) => c = p,
                None => return false,
            }
        }
    }

    fn root(&self, mut c: i64) -> i64 {
        while let Some(p) = self.customers.get(&c).and_then(|x| x.parent) {
            c = p;
        }
        c
    }

    /// The customer of a known identifier (in the table or made in this batch).
    fn known(&self, kind: Kind, value: &str) -> Option<i64> {
        self.ids
            .get(&(kind, value.to_string()))
            .map(|&c| self.root(c))
    }

    /// The customer of an identifier, made (with the identifier) when new.
    fn customer(&mut self, kind: Kind, value: &str) -> i64 {
        if let Some(c) = self.known(kind, value) {
            return c;
        }
        self.next_new -= 1;
        let c = self.next_new;
        let user = (kind == Kind::User).then(|| value.to_string());
        self.customers.insert(
            c,
            Customer {
                partition: partition_of(kind, value, self.settings.partitions),
                read_user: None,
                user,
                parent: None,
            },
        );
        self.ids.insert((kind, value.to_string()), c);
        self.new_ids.push((kind, value.to_string()));
        c
    }

    /// Joins identifier `(kind, value)` to customer `to`: a new identifier
    /// simply becomes one of `to`'s (the engine makes it a customer of its
    /// own and merges it at once; no user id can refuse that).
    fn join(&mut self, to: i64, kind: Kind, value: &str) {
        let Some(other) = self.known(kind, value) else {
            self.ids.insert((kind, value.to_string()), to);
            self.new_ids.push((kind, value.to_string()));
            return;
        };
        let a = self.root(to);
        if a == other {
            return;
        }
        let (ua, ub) = (
            self.customers.get(&a).and_then(|c| c.user.clone()),
            self.customers.get(&other).and_then(|c| c.user.clone()),
        );
        if let (Some(ua), Some(ub)) = (&ua, &ub)
            && ua != ub
        {
            // Two accounts: never one person.
            return;
        }
        // The older customer is kept: a known one before a new one, and
        // among either the one made first.
        let older = |x: i64, y: i64| match (x > 0, y > 0) {
            (true, true) => x < y,
            (true, false) => true,
            (false, true) => false,
            (false, false) => x > y,
        };
        let (kept, absorbed) = if older(a, other) {
            (a, other)
        } else {
            (other, a)
        };
        if let Some(c) = self.customers.get_mut(&absorbed) {
            c.parent = Some(kept);
        }
        if let Some(c) = self.customers.get_mut(&kept)
            && c.user.is_none()
        {
            c.user = ua.or(ub);
        }
        if absorbed > 0 {
            self.absorbed.insert(absorbed, self.call);
        }
    }

    /// Applies one call's identifiers, as `Identities::observe_names`.
    fn observe(&mut self, call: &Identifiers) {
        let Some((kind, value)) = call.primary() else {
            return;
        };
        let primary = self.customer(kind, value);
        if let (Some(_), Some(a)) = (&call.user_id, &call.anonymous_id) {
            self.join(primary, Kind::Anonymous, a);
        }
        if let Some(p) = &call.previous_id {
            // The previous id may be a user id or a device id.
            let kind = if self.known(Kind::User, p).is_some() {
                Kind::User
            } else {
                Kind::Anonymous
            };
            self.join(primary, kind, p);
        }
        if let Some(e) = &call.email {
            self.join(primary, Kind::Email, e);
        }
    }
}

/// One try: read, work out, write.
async fn attempt_once(
    conn: &mut Connection,
    settings: &Settings,
    calls: &[Identifiers],
) -> Result<Resolved, Failure> {
    let fatal = |doing: &str| {
        let doing = doing.to_string();
        move |e: tokio_postgres::Error| failure(&doing, &e)
    };
    // Every identifier the calls could name (a previous id as either kind).
    let mut wanted: HashSet<(Kind, &str)> = HashSet::new();
    for c in calls {
        if let Some(u) = &c.user_id {
            wanted.insert((Kind::User, u));
        }
        if let Some(a) = &c.anonymous_id {
            wanted.insert((Kind::Anonymous, a));
        }
        if let Some(p) = &c.previous_id {
            wanted.insert((Kind::User, p));
            wanted.insert((Kind::Anonymous, p));
        }
        if let Some(e) = &c.email {
            wanted.insert((Kind::Email, e));
        }
    }
    let kinds: Vec<i16> = wanted.iter().map(|(k, _)| k.code()).collect();
    let values: Vec<&str> = wanted.iter().map(|(_, v)| *v).collect();
    let rows = conn
        .client
        .query(&conn.identities, &[&kinds, &values])
        .await
        .map_err(fatal("reading identities"))?;
    let mut graph = Graph {
        settings,
        ids: HashMap::with_capacity(rows.len() + calls.len()),
        customers: HashMap::new(),
        new_ids: Vec::new(),
        next_new: 0,
        absorbed: BTreeMap::new(),
        call: 0,
    };
    // Customers absorbed by a merge, and the customer each went to:
    // identifiers point at the absorbed customer until they are moved, and
    // may again when written concurrently with the merge.
    let mut forward: HashMap<i64, i64> = HashMap::new();
    for row in &rows {
        let kind = Kind::of_code(row.get(0)).ok_or_else(|| {
            Failure::Fatal(ClusterError::Postgres {
                doing: "reading identities".into(),
                reason: format!("unknown identifier kind {}", row.get::<_, i16>(0)),
            })
        })?;
        graph.ids.insert((kind, row.get(1)), row.get(2));
        if let Some(id) = row.get::<_, Option<i64>>(3) {
            graph.take(&mut forward, id, row.get(4), row.get(5), row.get(6));
        }
    }
    // The customers absorbed ones were merged into, until every chain ends.
    loop {
        let mut todo: Vec<i64> = forward
            .values()
            .filter(|into| !graph.customers.contains_key(into) && !forward.contains_key(into))
            .copied()
            .collect();
        if todo.is_empty() {
            break;
        }
        todo.sort_unstable();
        todo.dedup();
        let rows = conn
            .client
            .query(&conn.customers, &[&todo])
            .await
            .map_err(fatal("reading customers"))?;
        if rows.is_empty() {
            // Forwarded to a customer that is not there yet: read again.
            return Err(Failure::Retry);
        }
        for row in rows {
            graph.take(&mut forward, row.get(0), row.get(1), row.get(2), row.get(3));
        }
    }
    let live = |mut c: i64| {
        let mut steps = 0;
        while let Some(&n) = forward.get(&c) {
            c = n;
            steps += 1;
            if steps > 64 {
                break;
            }
        }
        c
    };
    for c in graph.ids.values_mut() {
        *c = live(*c);
    }
    if graph.ids.values().any(|c| !graph.customers.contains_key(c)) {
        // An identifier whose customer row is not there yet: written by a
        // transaction that has not finished. Read again.
        return Err(Failure::Retry);
    }

    // Each call's customer as it stood when the call came: a known
    // customer absorbed by a later call of the batch still gets the calls
    // before that one, in its own partition, as one engine would apply
    // them before the join.
    let mut then = Vec::with_capacity(calls.len());
    for (i, call) in calls.iter().enumerate() {
        graph.call = i;
        graph.observe(call);
        then.push(
            call.primary()
                .and_then(|(kind, value)| graph.known(kind, value)),
        );
    }

    // New customers that remain get their table ids.
    let mut made: Vec<i64> = graph
        .customers
        .iter()
        .filter(|(id, c)| **id < 0 && c.parent.is_none())
        .map(|(id, _)| *id)
        .collect();
    made.sort_unstable_by(|a, b| b.cmp(a));
    let mut real: HashMap<i64, i64> = HashMap::new();
    if !made.is_empty() {
        let rows = conn
            .client
            .query(
                &format!(
                    "SELECT nextval('{}') FROM generate_series(1, $1::int8)",
                    settings.table("customer_ids").replace('\'', "''")
                ),
                &[&(made.len() as i64)],
            )
            .await
            .map_err(fatal("numbering customers"))?;
        for (tmp, row) in made.iter().zip(rows) {
            real.insert(*tmp, row.get(0));
        }
    }
    let final_id = |g: &Graph<'_>, c: i64| -> i64 {
        let r = g.root(c);
        real.get(&r).copied().unwrap_or(r)
    };
    let partition = |g: &Graph<'_>, c: i64| g.customers.get(&g.root(c)).map_or(0, |x| x.partition);

    let mut routes = Vec::with_capacity(calls.len());
    for c in then {
        routes.push(match c {
            None => Route {
                customer: 0,
                partition: 0,
            },
            // A known customer: its state is in its partition.
            Some(c) if c > 0 => Route {
                customer: c,
                partition: graph.customers.get(&c).map_or(0, |x| x.partition),
            },
            // A customer new in this batch has no state anywhere yet: its
            // calls go where it ends up, whose engine joins what they name.
            Some(c) => Route {
                customer: final_id(&graph, c),
                partition: partition(&graph, c),
            },
        });
    }

    // Known customers whose row changes: absorbed ones, and roots that
    // took one in or gained a user id.
    let mut changed: BTreeMap<i64, Option<i64>> = BTreeMap::new();
    for &absorbed in graph.absorbed.keys() {
        changed.insert(absorbed, Some(graph.root(absorbed)));
        changed.insert(graph.root(absorbed), None);
    }
    for (&id, c) in &graph.customers {
        if id > 0 && c.parent.is_none() && c.user != c.read_user {
            changed.entry(id).or_insert(None);
        }
    }
    if changed.is_empty() && graph.new_ids.is_empty() {
        return Ok(Resolved {
            routes,
            ..Resolved::default()
        });
    }

    let now = now_millis();
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(now).unwrap_or(0));
    let tx = conn
        .client
        .transaction()
        .await
        .map_err(fatal("starting a transaction"))?;
    // Rows are changed in id order, so that two batches lock them in the
    // same order (a deadlock is still possible through the forwarding,
    // and then retried).
    for (&id, into) in &changed {
        let Some(c) = graph.customers.get(&id) else {
            continue;
        };
        let n = match into {
            Some(kept) => tx
                .execute(
                    &format!(
                        "UPDATE {} SET merged_into = $2, merged_at = $3
                         WHERE id = $1 AND merged_into IS NULL AND user_id IS NOT DISTINCT FROM $4",
                        settings.table("customers")
                    ),
                    &[&id, kept, &at, &c.read_user],
                )
                .await
                .map_err(fatal("merging customers"))?,
            None => tx
                .execute(
                    &format!(
                        "UPDATE {} SET user_id = $2
                         WHERE id = $1 AND merged_into IS NULL AND user_id IS NOT DISTINCT FROM $3",
                        settings.table("customers")
                    ),
                    &[&id, &c.user, &c.read_user],
                )
                .await
                .map_err(fatal("updating customers"))?,
        };
        if n != 1 {
            return Err(Failure::Retry);
        }
    }
    if !made.is_empty() {
        let (mut ids, mut parts, mut users) = (Vec::new(), Vec::new(), Vec::new());
        for tmp in &made {
            if let (Some(id), Some(c)) = (real.get(tmp), graph.customers.get(tmp)) {
                ids.push(*id);
                parts.push(c.partition as i32);
                users.push(c.user.clone());
            }
        }
        tx.execute(
            &format!(
                "INSERT INTO {} (id, partition, user_id)
                 SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[])",
                settings.table("customers")
            ),
            &[&ids, &parts, &users],
        )
        .await
        .map_err(fatal("adding customers"))?;
    }
    if !graph.new_ids.is_empty() {
        // In one order for every batch: two batches adding the same new
        // identifiers then wait on each other in turn, never in a circle
        // (which PostgreSQL would only break after `deadlock_timeout`).
        let mut new_ids = graph.new_ids.clone();
        new_ids.sort_unstable();
        let (mut kinds, mut values, mut owners) = (Vec::new(), Vec::new(), Vec::new());
        for (kind, value) in &new_ids {
            let owner = graph.ids.get(&(*kind, value.clone())).copied().unwrap_or(0);
            kinds.push(kind.code());
            values.push(value.as_str());
            owners.push(final_id(&graph, owner));
        }
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO {} (kind, value, customer)
                     SELECT * FROM unnest($1::int2[], $2::text[], $3::int8[])
                     ON CONFLICT (kind, value) DO NOTHING",
                    settings.table("identities")
                ),
                &[&kinds, &values, &owners],
            )
            .await
            .map_err(fatal("adding identifiers"))?;
        if inserted != graph.new_ids.len() as u64 {
            // Another node added one of them first: work the batch out
            // again with its customer.
            return Err(Failure::Retry);
        }
    }
    let mut merges = Vec::new();
    let mut joins = Vec::new();
    if !graph.absorbed.is_empty() {
        let gone: Vec<i64> = graph.absorbed.keys().copied().collect();
        let kept: Vec<i64> = gone.iter().map(|&a| graph.root(a)).collect();
        let params: [&(dyn ToSql + Sync); 2] = [&gone, &kept];
        let moved = tx
            .query(
                &format!(
                    "UPDATE {} i SET customer = m.kept
                     FROM unnest($1::int8[], $2::int8[]) AS m(absorbed, kept)
                     WHERE i.customer = m.absorbed
                     RETURNING m.absorbed, i.kind, i.value",
                    settings.table("identities")
                ),
                &params,
            )
            .await
            .map_err(fatal("moving identifiers"))?;
        let mut identities: HashMap<i64, Vec<(Kind, String)>> = HashMap::new();
        for row in moved {
            if let Some(kind) = Kind::of_code(row.get(1)) {
                identities
                    .entry(row.get(0))
                    .or_default()
                    .push((kind, row.get(2)));
            }
        }
        for (&absorbed, &call) in &graph.absorbed {
            let joining = calls.get(call);
            // The customer the joining call goes to takes it in: the one
            // it joined then (a later call of the batch may join that one
            // to another in turn, which then takes it in whole).
            let Some(&Route {
                customer: k,
                partition: kept_partition,
            }) = routes.get(call)
            else {
                continue;
            };
            // Its identifiers, with those of customers it took in earlier
            // in this batch (its partition's engine holds them as one) and
            // those it gained in this batch (written to the last customer
            // kept, but applied in its partition).
            let mut ids: Vec<(Kind, String)> = identities
                .iter()
                .filter(|(other, _)| graph.descends(**other, absorbed))
                .flat_map(|(_, ids)| ids.iter().cloned())
                .collect();
            ids.extend(
                graph
                    .new_ids
                    .iter()
                    .filter(|id| {
                        graph
                            .ids
                            .get(*id)
                            .is_some_and(|&owner| graph.descends(owner, absorbed))
                    })
                    .cloned(),
            );
            ids.sort();
            ids.dedup();
            let merge = Merge {
                kept: k,
                absorbed,
                kept_partition,
                absorbed_partition: graph.customers.get(&absorbed).map_or(0, |c| c.partition),
                at: now,
                message_id: joining.and_then(|c| c.message_id.clone()),
                call_at: joining.and_then(|c| c.at),
                identities: ids,
            };
            let (kinds, values): (Vec<i16>, Vec<&str>) = merge
                .identities
                .iter()
                .map(|(k, v)| (k.code(), v.as_str()))
                .unzip();
            tx.execute(
                &format!(
                    "INSERT INTO {} (absorbed, kept, absorbed_partition, kept_partition, at,
                         message_id, call_at, kinds, ids)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    settings.table("merges")
                ),
                &[
                    &absorbed,
                    &k,
                    &(merge.absorbed_partition as i32),
                    &(merge.kept_partition as i32),
                    &at,
                    &merge.message_id,
                    &merge.call_at,
                    &kinds,
                    &values,
                ],
            )
            .await
            .map_err(fatal("recording merges"))?;
            joins.push((call, absorbed));
            merges.push(merge);
        }
    }
    tx.commit().await.map_err(fatal("committing"))?;
    Ok(Resolved {
        routes,
        merges,
        joins,
    })
}

/// Now, in milliseconds since the epoch.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Marks merges as told to their partitions, once the log has them.
pub async fn mark_published(
    client: &Client,
    settings: &Settings,
    absorbed: &[i64],
) -> Result<(), ClusterError> {
    client
        .execute(
            &format!(
                "UPDATE {} SET published = true WHERE absorbed = ANY($1)",
                settings.table("merges")
            ),
            &[&absorbed],
        )
        .await
        .map_err(|e| ClusterError::pg("marking merges published", &e))?;
    Ok(())
}

/// Merges recorded but not yet in the log, older than `age`: a node
/// that recorded one stopped before its partition was told.
pub async fn unpublished(
    client: &Client,
    settings: &Settings,
    age: Duration,
) -> Result<Vec<Merge>, ClusterError> {
    let before = now_millis() - i64::try_from(age.as_millis()).unwrap_or(0);
    let before = UNIX_EPOCH + Duration::from_millis(u64::try_from(before).unwrap_or(0));
    read_merges(client, settings, "NOT published AND at < $1", &before).await
}

/// The merges of these absorbed customers not yet in the log, whatever
/// their age: a partition whose joining call waits for them publishes
/// them rather than wait for a node's sweep.
pub async fn unpublished_of(
    client: &Client,
    settings: &Settings,
    absorbed: &[i64],
) -> Result<Vec<Merge>, ClusterError> {
    read_merges(
        client,
        settings,
        "NOT published AND absorbed = ANY($1)",
        &absorbed,
    )
    .await
}

/// The merges `condition` (on `$1`) selects, oldest first, at most 1,000.
async fn read_merges(
    client: &Client,
    settings: &Settings,
    condition: &str,
    param: &(dyn ToSql + Sync),
) -> Result<Vec<Merge>, ClusterError> {
    let rows = client
        .query(
            &format!(
                "SELECT absorbed, kept, absorbed_partition, kept_partition,
                        (extract(epoch FROM at) * 1000)::int8, message_id, call_at,
                        coalesce(kinds, '{{}}'), coalesce(ids, '{{}}')
                 FROM {} WHERE {condition} ORDER BY at LIMIT 1000",
                settings.table("merges")
            ),
            &[param],
        )
        .await
        .map_err(|e| ClusterError::pg("reading unpublished merges", &e))?;
    Ok(rows
        .iter()
        .map(|r| Merge {
            absorbed: r.get(0),
            kept: r.get(1),
            absorbed_partition: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
            kept_partition: u32::try_from(r.get::<_, i32>(3)).unwrap_or(0),
            at: r.get(4),
            message_id: r.get(5),
            call_at: r.get(6),
            identities: r
                .get::<_, Vec<i16>>(7)
                .into_iter()
                .zip(r.get::<_, Vec<String>>(8))
                .filter_map(|(k, v)| Some((Kind::of_code(k)?, v)))
                .collect(),
        })
        .collect())
}
