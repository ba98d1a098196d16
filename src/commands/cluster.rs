//! `nudge cluster init`: creates a cluster's JetStream stream and
//! PostgreSQL schema from `[cluster]` in nudge.toml, recording its
//! partition count; run again, it checks that nothing differs.
//! `nudge cluster trace`: writes the decision trace the workers committed,
//! for `nudge explain` and `nudge report`.
//! `nudge cluster deploy`: compiles the project and deploys it to every
//! partition through its log, once every partition's state can follow it.
//! `nudge cluster audiences`: writes the audience feeds the workers
//! committed, as a single node's `audiences/NAME.jsonl` files.

use std::path::PathBuf;

use super::Status;
use super::run::project_config;

/// Arguments of `nudge cluster`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to do with the cluster.
    #[command(subcommand)]
    pub action: Action,
}

/// The actions of `nudge cluster`.
#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// Create the stream and the PostgreSQL schema (idempotent); refuse
    /// settings whose partition count differs from the recorded one.
    Init(InitArgs),
    /// Write the decision trace the workers committed, in time order, as
    /// `trace.jsonl` lines (for `nudge explain --trace` and `nudge report --trace`).
    Trace(TraceArgs),
    /// Compile the project and deploy it to every partition through its
    /// log, after trying it on every partition's committed state.
    Deploy(DeployArgs),
    /// Write the audience feeds the workers committed, one
    /// `NAME.jsonl` file per audience, as a single node writes them.
    Audiences(AudiencesArgs),
}

/// Arguments of `nudge cluster audiences`.
#[derive(clap::Args, Debug)]
pub struct AudiencesArgs {
    /// The project whose nudge.toml has `[cluster]`; the current directory by default.
    pub paths: Vec<PathBuf>,
    /// The folder to write them to; the project's `.nudge/audiences` by default.
    #[arg(long, short, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// Arguments of `nudge cluster deploy`.
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// The project to deploy, whose nudge.toml has `[cluster]`; the current directory by default.
    pub paths: Vec<PathBuf>,
}

/// Arguments of `nudge cluster trace`.
#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// The project whose nudge.toml has `[cluster]`; the current directory by default.
    pub paths: Vec<PathBuf>,
    /// Where to write it; standard output by default.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Arguments of `nudge cluster init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The project whose nudge.toml has `[cluster]`; the current directory by default.
    pub paths: Vec<PathBuf>,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    match args.action {
        Action::Init(args) => init(&args),
        Action::Trace(args) => trace(&args),
        Action::Deploy(args) => deploy(&args),
        Action::Audiences(args) => audiences(&args),
    }
}

fn audiences(args: &AudiencesArgs) -> Status {
    let (_, root) = match super::one_project(&args.paths, "a cluster is read from") {
        Ok(r) => r,
        Err(status) => return status,
    };
    let settings = match project_config(&root).and_then(|c| settings(&c)) {
        Ok(s) => s,
        Err(status) => return status,
    };
    let dir = args
        .output
        .clone()
        .unwrap_or_else(|| root.join(".nudge").join("audiences"));
    let runtime = match runtime() {
        Ok(r) => r,
        Err(status) => return status,
    };
    match runtime.block_on(nudge_cluster::trace::export_audiences(&settings, &dir)) {
        Ok((files, lines)) => {
            eprintln!(
                "{lines} membership changes of {files} audiences written to {}",
                dir.display()
            );
            Status::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            Status::Failure
        }
    }
}

fn deploy(args: &DeployArgs) -> Status {
    let (group, root) = match super::one_project(&args.paths, "a cluster is deployed from") {
        Ok(r) => r,
        Err(status) => return status,
    };
    let settings = match project_config(&root).and_then(|c| settings(&c)) {
        Ok(s) => s,
        Err(status) => return status,
    };
    let bundle = match super::compile(&group) {
        Ok(b) => b,
        Err(status) => return status,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(status) => return status,
    };
    match runtime.block_on(nudge_cluster::deploy::deploy(&settings, &bundle)) {
        Ok(d) => {
            println!(
                "deploy {} (code {:016x}) sent to {} partitions through their logs; {} partitions' state checked",
                d.seq, d.fingerprint as u64, d.partitions, d.checked
            );
            Status::Ok
        }
        Err(e @ nudge_cluster::ClusterError::Incompatible { .. }) => {
            eprintln!("error: {e}");
            eprintln!(
                "help: change the project as each line says, or deploy once the instances named have finished; nothing was deployed"
            );
            Status::Problems
        }
        Err(e) => {
            eprintln!("error: {e}");
            Status::Failure
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Status> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            Status::Failure
        })
}

fn trace(args: &TraceArgs) -> Status {
    let Ok(settings) = settings_of(&args.paths) else {
        return Status::Failure;
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(status) => return status,
    };
    let mut out: Box<dyn std::io::Write> = match &args.output {
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("error: cannot create {}: {e}", path.display());
                return Status::Failure;
            }
        },
    };
    let written = runtime.block_on(nudge_cluster::trace::export(&settings, &mut *out));
    match written.and_then(|n| {
        out.flush()
            .map(|()| n)
            .map_err(|e| nudge_cluster::ClusterError::Output(e.to_string()))
    }) {
        Ok(n) => {
            if let Some(path) = &args.output {
                eprintln!("{n} records written to {}", path.display());
            }
            Status::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            Status::Failure
        }
    }
}

fn init(args: &InitArgs) -> Status {
    let Ok(settings) = settings_of(&args.paths) else {
        return Status::Failure;
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(status) => return status,
    };
    match runtime.block_on(nudge_cluster::init(&settings)) {
        Ok(done) => {
            let what = if done.created {
                "created"
            } else {
                "already there"
            };
            println!(
                "cluster {what}: {} partitions, stream `{}` on {}, schema `{}`",
                done.partitions, done.stream, settings.nats, done.schema
            );
            Status::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            Status::Failure
        }
    }
}

/// The cluster settings of the project at `paths`, from its `[cluster]`;
/// the problem is reported on stderr.
pub(super) fn settings_of(paths: &[PathBuf]) -> Result<nudge_cluster::Settings, Status> {
    let (_, root) = super::one_project(paths, "a cluster is set up from")?;
    let config = project_config(&root)?;
    settings(&config)
}

/// `[cluster]` of a read nudge.toml as the cluster's settings.
pub(super) fn settings(
    config: &nudge_host::config::Config,
) -> Result<nudge_cluster::Settings, Status> {
    let Some(c) = &config.cluster else {
        eprintln!(
            "error: {} has no [cluster] section",
            nudge_project::MANIFEST
        );
        eprintln!("help: add one with at least `nats` and `postgres` (see docs/cluster.md)");
        return Err(Status::Failure);
    };
    let mut s = nudge_cluster::Settings::new(&c.nats, &c.postgres);
    if let Some(v) = &c.schema {
        s.schema.clone_from(v);
    }
    if let Some(v) = c.partitions {
        s.partitions = v;
    }
    if let Some(v) = &c.prefix {
        s.prefix.clone_from(v);
    }
    // Checked when nudge.toml was read.
    if let Ok(Some(w)) = config.cluster_window() {
        s.duplicate_window = w;
    }
    if let Ok(Some(keep)) = config.cluster_keep() {
        s.keep = keep;
    }
    if let Some(v) = c.replicas {
        s.replicas = v;
    }
    if let Some(v) = c.connections {
        s.connections = v;
    }
    if let Err(e) = s.check() {
        eprintln!("error: {}: {e}", nudge_project::MANIFEST);
        return Err(Status::Failure);
    }
    Ok(s)
}
