//! `nudge build`: check a project and write its bytecode bundle.

use std::path::PathBuf;

use nudge_diagnostics::render;

use super::{Status, load_projects, use_color};

/// Arguments of `nudge build`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files or directories of one project; the current directory by default.
    pub paths: Vec<PathBuf>,
    /// Where to write the bundle.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
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
    Status::Ok
}

/// The project roots below `paths`, for the message about several projects.
fn project_roots(paths: &[PathBuf]) -> Vec<String> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    crate::workspace::projects(&paths)
        .map(|groups| {
            groups
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        })
        .unwrap_or_default()
}
