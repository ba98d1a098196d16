//! `nudge worker`: a partition worker of the cluster `[cluster]` in
//! nudge.toml names. It leases partitions, runs the project's engine on
//! their calls with the state in PostgreSQL, and delivers the sends
//! committed, until it is stopped (SIGINT or SIGTERM: it gives its leases
//! up at once) or killed (its leases expire within seconds).

use std::path::PathBuf;

use nudge_channels::OutboxMode;
use nudge_cluster::worker::{Clock, Code, Options};
use nudge_host::durable::Bundles;
use nudge_host::setup::{engine_config, merge_routes, router};

use super::Status;
use super::run::{DeliveryArgs, parse_until, project_config, setup_failed};

/// Arguments of `nudge worker`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The project whose nudge.toml has `[cluster]`; the current directory by default.
    pub paths: Vec<PathBuf>,
    /// The worker's name in the cluster, unique among live workers; the
    /// host name and process id by default.
    #[arg(long)]
    pub id: Option<String>,
    /// What moves the engines' clocks: `wall` (production), or `calls`,
    /// the calls' own times (replaying a stream of past calls).
    #[arg(long, value_enum, default_value = "wall")]
    pub clock: WorkerClock,
    /// With `--clock calls`: once a partition has no call waiting, run its
    /// clock through this RFC 3339 time, as `nudge run --until` does.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// The most calls of one partition applied and committed together, and
    /// the most timers one step of its clock fires per commit.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Apply and commit only; leave the sends to other workers' dispatch.
    #[arg(long)]
    pub no_dispatch: bool,
    /// Where sends go.
    #[command(flatten)]
    pub delivery: DeliveryArgs,
}

/// What moves a worker's clock.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerClock {
    /// The wall clock.
    Wall,
    /// The calls' own times.
    Calls,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let (group, root) = match super::one_project(&args.paths, "a worker runs") {
        Ok(r) => r,
        Err(status) => return status,
    };
    let settings = match project_config(&root) {
        Ok(c) => c,
        Err(status) => return status,
    };
    let cluster = match super::cluster::settings(&settings) {
        Ok(c) => c,
        Err(status) => return status,
    };
    let until = match args.until.as_deref().map(parse_until).transpose() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return Status::Failure;
        }
    };
    if until.is_some() && args.clock != WorkerClock::Calls {
        eprintln!("error: --until applies to --clock calls only");
        return Status::Failure;
    }
    let bundle = match super::compile(&group) {
        Ok(b) => b,
        Err(status) => return status,
    };
    let cli_routes = match args.delivery.routes() {
        Ok(r) => r,
        Err(status) => return status,
    };
    let routes = match merge_routes(&settings, &cli_routes) {
        Ok(r) => r,
        Err(e) => return setup_failed(e),
    };
    let mut config = match engine_config(
        &bundle,
        &settings,
        &args.delivery.suppress,
        args.delivery.release_spread,
    ) {
        Ok(c) => c,
        Err(e) => return setup_failed(e),
    };
    // As `nudge serve`: on the wall clock a jump fires a schedule once.
    config.catch_up_schedules = args.clock == WorkerClock::Calls;
    let outbox = args
        .delivery
        .outbox
        .clone()
        .unwrap_or_else(|| root.join(".nudge").join("outbox.jsonl"));
    let router = if args.no_dispatch {
        None
    } else {
        // A crash can leave half a line: cut it, the send is written again whole.
        if let Err(e) = nudge_store::outbox::repair(&outbox) {
            eprintln!("error: cannot repair the outbox {}: {e}", outbox.display());
            return Status::Failure;
        }
        match router(&outbox, OutboxMode::Append, &routes) {
            Ok(r) => Some(r),
            Err(e) => return setup_failed(e),
        }
    };
    let id = args.id.clone().unwrap_or_else(default_id);
    let mut options = Options::new(&id);
    options.batch = args.batch.max(1);
    options.dispatch = !args.no_dispatch;
    let budget = settings.customers_in_memory();
    options.customers_in_memory = budget;
    options.clock = match args.clock {
        WorkerClock::Wall => Clock::Wall,
        WorkerClock::Calls => Clock::Calls { until },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return Status::Failure;
        }
    };
    let bundles = Bundles::default();
    let code = Code {
        bundle: &bundle,
        bundles: &bundles,
        config: &config,
    };
    // The engines borrow the bundle and are not sent between threads: the
    // worker runs on this thread; lease renewal runs on the runtime's.
    let done = runtime.block_on(async {
        let mut worker = nudge_cluster::Worker::connect(&cluster, options, code, router).await?;
        match budget {
            Some(n) => eprintln!(
                "worker {id} started on {}; each partition keeps at most {n} idle customers in memory",
                cluster.nats
            ),
            None => eprintln!("worker {id} started on {}", cluster.nats),
        }
        worker.run_until(stopped()).await?;
        let p = worker.progress();
        eprintln!(
            "worker {id} stopped: {} calls applied in {} commits, {} sends committed, {} delivered",
            p.applied, p.commits, p.intents, p.delivered
        );
        if budget.is_some() {
            eprintln!(
                "worker {id}: {} customers read back from PostgreSQL",
                p.customers_read_back
            );
        }
        Ok::<_, nudge_cluster::ClusterError>(())
    });
    match done {
        Ok(()) => Status::Ok,
        Err(e) => {
            eprintln!("error: {e}");
            Status::Failure
        }
    }
}

/// The host name and process id.
fn default_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// Completes on SIGINT or SIGTERM.
async fn stopped() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
