//! Reading a partition's stored state back from PostgreSQL while its
//! engine runs, for a worker with `[runtime] customers_in_memory`: the
//! engine lets customers, timers and identities' texts go once a commit
//! holds them and asks for them again (a customer or node by number,
//! timers by due time, a node by name) when a call or a timer needs them
//! (see [`nudge_runtime::engine::Pager`]).
//!
//! The engine asks synchronously, in the middle of applying a call, while
//! the worker's own connection may be inside an open transaction and the
//! worker's task cannot be suspended. So the reads go through a
//! connection of their own, on a thread of their own with its own runtime:
//! the engine sends a request and waits for the answer on a channel, which
//! is safe whatever runtime the worker itself runs on.

use std::collections::HashMap;
use std::sync::mpsc;

use nudge_runtime::engine::Pager;
use nudge_runtime::timers::ToRead;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::{ClusterError, Settings};

/// What the engine asks the reading thread, with where to answer. A single
/// customer or name is asked as a list of one: `= ANY` finds it by the
/// same index.
enum Request {
    /// The rows of the timers a read names.
    Timers(i32, ToRead, mpsc::SyncSender<Result<Vec<Vec<u8>>, String>>),
    /// An identity node's row.
    Node(i32, u32, mpsc::SyncSender<Result<Option<Vec<u8>>, String>>),
    /// Several customers' rows, in the order asked.
    Customers(
        i32,
        Vec<u32>,
        mpsc::SyncSender<Result<Vec<Option<Vec<u8>>>, String>>,
    ),
    /// The nodes stored under several names, in the order asked.
    NodesNamed(
        i32,
        Vec<Vec<u8>>,
        mpsc::SyncSender<Result<Vec<Option<u32>>, String>>,
    ),
}

/// The worker's reading thread: one connection for every partition it
/// holds. Dropping it ends the thread once the pagers made from it are gone.
pub(crate) struct Reader {
    requests: mpsc::Sender<Request>,
}

impl Reader {
    /// Connects a reading thread to the cluster's PostgreSQL.
    pub(crate) fn start(settings: &Settings) -> Result<Reader, ClusterError> {
        let (requests, incoming) = mpsc::channel::<Request>();
        let (ready, started) = mpsc::sync_channel::<Result<(), ClusterError>>(1);
        let settings = settings.clone();
        std::thread::Builder::new()
            .name("nudge-pager".into())
            .spawn(move || serve(&settings, &incoming, &ready))
            .map_err(|e| ClusterError::Postgres {
                doing: "starting the thread that reads stored customers back".into(),
                reason: e.to_string(),
            })?;
        started.recv().unwrap_or_else(|_| {
            Err(ClusterError::Postgres {
                doing: "starting the thread that reads stored customers back".into(),
                reason: "it stopped before connecting".into(),
            })
        })?;
        Ok(Reader { requests })
    }

    /// A pager for partition `partition`'s engine.
    pub(crate) fn pager(&self, partition: u32) -> PartitionPager {
        PartitionPager {
            partition: partition as i32,
            requests: self.requests.clone(),
        }
    }
}

/// The reading thread: answers requests until every sender is gone.
fn serve(
    settings: &Settings,
    incoming: &mpsc::Receiver<Request>,
    ready: &mpsc::SyncSender<Result<(), ClusterError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(ClusterError::Postgres {
                doing: "starting the thread that reads stored customers back".into(),
                reason: e.to_string(),
            }));
            return;
        }
    };
    let mut client = match runtime.block_on(connect(settings)) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let table = |name: &str| settings.table(name);
    let node = format!(
        "SELECT body FROM {} WHERE partition = $1 AND node = $2",
        table("state_nodes")
    );
    let customers = format!(
        "SELECT customer, body FROM {} WHERE partition = $1 AND customer = ANY($2)",
        table("state_customers")
    );
    let nodes_named = format!(
        "SELECT name, node FROM {} WHERE partition = $1 AND name = ANY($2)",
        table("state_node_names")
    );
    let timers = format!(
        "SELECT body FROM {} WHERE partition = $1 AND due BETWEEN $2 AND $3 AND seq <= $4",
        table("state_timers")
    );
    // A connection PostgreSQL closed (a restart, a failover) is opened
    // again and the request tried once more; if it cannot be, the request
    // fails and says why.
    let mut query = |sql: &str, params: &[&(dyn ToSql + Sync)]| -> Result<Vec<Row>, String> {
        let mut tried = false;
        loop {
            if client.is_closed()
                && let Ok(c) = runtime.block_on(connect(settings))
            {
                client = c;
            }
            match runtime.block_on(client.query(sql, params)) {
                Ok(rows) => return Ok(rows),
                Err(_) if !tried && client.is_closed() => tried = true,
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let node_number = |n: i64| u32::try_from(n).map_err(|_| format!("a node numbered {n}"));
    for request in incoming {
        // An engine that stopped waiting (its worker failed) is not answered.
        match request {
            Request::Node(p, n, answer) => {
                let row = query(&node, &[&p, &i64::from(n)]);
                let _ = answer.send(row.map(|rows| rows.first().map(|r| r.get(0))));
            }
            Request::Customers(p, numbers, answer) => {
                let keys: Vec<i64> = numbers.iter().map(|&n| i64::from(n)).collect();
                let rows = query(&customers, &[&p, &keys]).map(|rows| {
                    let mut found: HashMap<i64, Vec<u8>> =
                        rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
                    keys.iter().map(|k| found.remove(k)).collect()
                });
                let _ = answer.send(rows);
            }
            Request::NodesNamed(p, names, answer) => {
                let rows = query(&nodes_named, &[&p, &names]).and_then(|rows| {
                    let mut found = HashMap::new();
                    for r in rows {
                        found.insert(r.get::<_, Vec<u8>>(0), node_number(r.get(1))?);
                    }
                    Ok(names.iter().map(|name| found.get(name).copied()).collect())
                });
                let _ = answer.send(rows);
            }
            Request::Timers(p, read, answer) => {
                // Insertion numbers are stored as PostgreSQL's signed integers.
                let through = i64::try_from(read.through).unwrap_or(i64::MAX);
                let rows = query(&timers, &[&p, &read.from, &read.until, &through])
                    .map(|rows| rows.into_iter().map(|r| r.get(0)).collect());
                let _ = answer.send(rows);
            }
        }
    }
}

/// The reading thread's connection, named `nudge-pager:SCHEMA` in
/// PostgreSQL's `pg_stat_activity` so that an operator can tell it apart.
async fn connect(settings: &Settings) -> Result<tokio_postgres::Client, ClusterError> {
    let pg = |e: tokio_postgres::Error| ClusterError::pg("connecting to read customers back", &e);
    let mut config: tokio_postgres::Config = settings.postgres.parse().map_err(pg)?;
    config.application_name(format!("nudge-pager:{}", settings.schema));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(pg)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("warning: PostgreSQL connection reading customers back closed: {e}");
        }
    });
    Ok(client)
}

/// One partition's view of the reading thread, handed to its engine.
pub(crate) struct PartitionPager {
    partition: i32,
    requests: mpsc::Sender<Request>,
}

impl PartitionPager {
    /// Sends a request made with a fresh answer channel and waits for the answer.
    fn ask<T>(&self, request: impl FnOnce(mpsc::SyncSender<T>) -> Request) -> Result<T, String> {
        let (answer, answered) = mpsc::sync_channel(1);
        self.requests
            .send(request(answer))
            .map_err(|_| "the thread reading PostgreSQL has stopped".to_string())?;
        answered
            .recv()
            .map_err(|_| "the thread reading PostgreSQL stopped before answering".to_string())
    }
}

impl Pager for PartitionPager {
    fn customer(&mut self, number: u32) -> Result<Option<Vec<u8>>, String> {
        Ok(self.customers(&[number])?.pop().flatten())
    }

    fn timers(&mut self, read: ToRead) -> Result<Vec<Vec<u8>>, String> {
        let p = self.partition;
        self.ask(|a| Request::Timers(p, read, a))?
    }

    fn node_named(&mut self, name: &[u8]) -> Result<Option<u32>, String> {
        Ok(self.nodes_named(&[name.to_vec()])?.pop().flatten())
    }

    fn node(&mut self, n: u32) -> Result<Option<Vec<u8>>, String> {
        let p = self.partition;
        self.ask(|a| Request::Node(p, n, a))?
    }

    fn customers(&mut self, numbers: &[u32]) -> Result<Vec<Option<Vec<u8>>>, String> {
        let p = self.partition;
        let numbers = numbers.to_vec();
        self.ask(|a| Request::Customers(p, numbers, a))?
    }

    fn nodes_named(&mut self, names: &[Vec<u8>]) -> Result<Vec<Option<u32>>, String> {
        let p = self.partition;
        let names = names.to_vec();
        self.ask(|a| Request::NodesNamed(p, names, a))?
    }
}
