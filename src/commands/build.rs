//! `nudge build`: check a project and write its bytecode bundle.

use std::path::{Path, PathBuf};

use nudge_bytecode::{Bundle, Channel};
use nudge_channels::Outgoing;
use nudge_diagnostics::render;
use nudge_host::durable::{Bundles, Code, replay_history};
use nudge_runtime::engine::{Config, Engine, Fate, Sink};
use nudge_runtime::record::{Membership, Record};
use nudge_store::{Store, StoreError};

use super::{Status, load_projects, use_color};

/// Arguments of `nudge build`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files or directories of one project; the current directory by default.
    pub paths: Vec<PathBuf>,
    /// Where to write the bundle.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// A durable store (such as `.nudge/state.db`) this bundle would be
    /// deployed over: report what becomes of its instances in flight.
    #[arg(long, value_name = "STORE")]
    pub against: Option<PathBuf>,
    /// With `--against`: exit 1 when some instances in flight would stay on
    /// their old version (a stranded step), for CI.
    #[arg(long, requires = "against")]
    pub deny_stranded: bool,
}

/// Runs the command and returns its exit status.
pub fn run(args: Args) -> Status {
    let shown = args.paths.clone();
    let mut projects = match load_projects(args.paths) {
        Ok(projects) => projects,
        Err(status) => return status,
    };
    if projects.len() != 1 {
        let roots = project_roots(&shown);
        eprintln!(
            "error: `nudge build` compiles one project into one bundle, but these paths hold {} projects{}",
            projects.len(),
            if roots.is_empty() {
                String::new()
            } else {
                format!(": {}", roots.join(", "))
            }
        );
        eprintln!(
            "help: build each project on its own, such as `nudge build {} -o FILE`",
            roots.first().map_or("PATH", String::as_str)
        );
        return Status::Failure;
    }
    let project = projects.remove(0);
    let analysis = nudge_compiler::check(&project);
    if !analysis.diagnostics.is_empty() {
        // Warnings do not stop a build, but they are worth seeing before a deploy.
        let color = use_color(&std::io::stderr());
        eprint!(
            "{}",
            render::human(&project.sources, &analysis.diagnostics, color)
        );
    }
    if analysis.has_errors() {
        if let Some(summary) = render::summary_line(&analysis.diagnostics) {
            eprintln!("not built: {summary}");
        }
        return Status::Problems;
    }
    let bundle = match nudge_compiler::lower(&project, &analysis) {
        Ok(bundle) => bundle,
        Err(e) => {
            eprintln!("error: {}", e.render(&project.sources));
            return Status::Problems;
        }
    };
    let bytes = bundle.encode();
    // Write beside the target and rename, so a failed write never leaves a
    // half-written bundle where a runtime could load it.
    let mut tmp = args.output.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &args.output));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        eprintln!("error: cannot write {}: {e}", args.output.display());
        return Status::Failure;
    }
    let width = bundle.flows.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for f in &bundle.flows {
        println!("  {:<width$}  {}", f.name, f.version);
    }
    let n = bundle.flows.len();
    println!(
        "built {n} flow{} into {} ({} bytes)",
        if n == 1 { "" } else { "s" },
        args.output.display(),
        bytes.len()
    );
    match &args.against {
        Some(store) => deploy_report(&bundle, store, args.deny_stranded),
        None => Status::Ok,
    }
}

/// A sink that keeps nothing: the dry run only looks at instances.
struct Discard;

impl Sink for Discard {
    fn deliver(&mut self, _: Channel, _: &Outgoing) -> Result<(), String> {
        Ok(())
    }
    fn record(&mut self, _: Record) {}
    fn membership(&mut self, _: Membership) {}
}

/// Rebuilds the store's engine in memory (nothing is sent or written) and
/// deploys `bundle` over it, printing what becomes of the instances in flight.
fn deploy_report(bundle: &Bundle, path: &Path, deny_stranded: bool) -> Status {
    let fail = |e: &StoreError| {
        eprintln!("error: {e}");
        if let Some(h) = e.hint() {
            eprintln!("help: {h}");
        }
        Status::Failure
    };
    if !path.is_file() {
        eprintln!("error: there is no store at {}", path.display());
        eprintln!(
            "help: a project's store is `.nudge/state.db` once `nudge run` or `nudge serve` has run"
        );
        return Status::Failure;
    }
    let store = match Store::open(path) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let bundles = Bundles::new();
    let code = Code {
        current: bundle,
        bundles: &bundles,
    };
    let initial = match code.initial(&store) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let mut engine = Engine::new(initial, Discard, Config::default(), i64::MIN);
    let mut dead = Vec::new();
    let start = match store.usable_checkpoint() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let last = match replay_history(&store, &mut engine, code, start.as_ref(), &mut dead, |_| {}) {
        Ok(last) => last,
        Err(e) => return fail(&e),
    };
    match last {
        None => {
            println!("{} has no history: nothing is in flight", path.display());
            return Status::Ok;
        }
        Some(last) if last == nudge_store::portable(bundle) => {
            println!(
                "{} already runs this code: nothing to deploy",
                path.display()
            );
            return Status::Ok;
        }
        Some(_) => {}
    }
    let deployed = match engine.deploy(bundle, &bundles) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "error: this bundle cannot be deployed over {}: {e}",
                path.display()
            );
            eprintln!(
                "help: change the project as each line says, or deploy once the instances named have finished"
            );
            return Status::Problems;
        }
    };
    println!("deployed over {} it would be:\n{deployed}", path.display());
    let stranded: u64 = deployed
        .flows
        .iter()
        .flat_map(|f| &f.steps)
        .filter(|s| matches!(s.fate, Fate::Stays { .. }))
        .map(|s| s.instances)
        .sum();
    if stranded == 0 {
        println!("no instance in flight would be stranded on an old version");
        return Status::Ok;
    }
    println!(
        "{stranded} instance{} in flight would stay on {} old version (stranded steps above)",
        if stranded == 1 { "" } else { "s" },
        if stranded == 1 { "its" } else { "their" }
    );
    if deny_stranded {
        Status::Problems
    } else {
        Status::Ok
    }
}

/// The project roots below `paths`, for the message about several projects.
fn project_roots(paths: &[PathBuf]) -> Vec<String> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    nudge_project::Scan::unlimited()
        .projects(&paths)
        .iter()
        .map(|g| {
            g.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}
