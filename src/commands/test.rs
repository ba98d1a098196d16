//! `nudge test`: run the `test` blocks of projects on the runtime's virtual
//! clock and report like a test runner.

use std::path::PathBuf;

use nudge_diagnostics::render;
use nudge_testing::report::{self, Suite};

use super::Status;

/// Arguments of `nudge test`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Projects or directories holding projects; the current directory by default.
    pub paths: Vec<PathBuf>,
    /// Run only the tests whose name contains this text (ignoring case).
    #[arg(long, value_name = "NAME")]
    pub filter: Option<String>,
    /// Also write the results as JUnit XML to this file, for CI systems.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// Runs the command and returns its exit status: `Problems` when a test
/// fails or a project does not compile.
pub fn run(args: Args) -> Status {
    let groups = match super::project_groups(&args.paths) {
        Ok(g) => g,
        Err(status) => return status,
    };
    let mut suites = Vec::new();
    let mut worst = Status::Ok;
    for group in &groups {
        let name = project_name(group);
        let shown = shown_paths(group);
        match test_project(group, args.filter.as_deref()) {
            Ok(results) => {
                let suite = Suite {
                    name,
                    results,
                    not_run: None,
                };
                if !suite.results.is_empty() {
                    println!("{shown}");
                    print!("{}", report::summary_lines(&suite));
                }
                suites.push(suite);
            }
            Err((status, why)) => {
                println!("{shown}: not run");
                if status as u8 > worst as u8 {
                    worst = status;
                }
                let suite = Suite {
                    name,
                    results: Vec::new(),
                    not_run: Some(why),
                };
                print!("{}", report::summary_lines(&suite));
                suites.push(suite);
            }
        }
    }
    let failed: Vec<_> = suites
        .iter()
        .flat_map(|s| &s.results)
        .filter(|r| !r.passed())
        .collect();
    if !failed.is_empty() {
        println!("\nfailures:\n");
        for r in &failed {
            println!("{}", report::failure_text(r));
        }
        if worst == Status::Ok {
            worst = Status::Problems;
        }
    }
    println!("\n{}", report::totals(&suites));
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, report::junit(&suites))
    {
        eprintln!("error: cannot write {}: {e}", path.display());
        return Status::Failure;
    }
    worst
}

/// Compiles one project (diagnostics go to stderr) and runs its tests; when
/// it cannot, the status and why, as plain text for the JUnit report.
fn test_project(
    group: &[PathBuf],
    filter: Option<&str>,
) -> Result<Vec<nudge_testing::TestResult>, (Status, String)> {
    let project = nudge_compiler::Project::load(group).map_err(|e| {
        let why = e.to_string();
        (super::load_failed(e), why)
    })?;
    let analysis = nudge_compiler::check(&project);
    if analysis.has_errors() {
        let render = |color| render::human(&project.sources, &analysis.diagnostics, color);
        eprint!("{}", render(super::use_color(&std::io::stderr())));
        let mut why = render(false);
        if let Some(summary) = render::summary_line(&analysis.diagnostics) {
            eprintln!("not run: {summary}");
            why.push_str(&summary);
        }
        return Err((Status::Problems, why));
    }
    let bundle = nudge_compiler::lower(&project, &analysis).map_err(|e| {
        let why = e.render(&project.sources);
        eprintln!("error: {why}");
        (Status::Problems, why)
    })?;
    Ok(nudge_testing::run_tests(
        &project, &analysis, &bundle, filter,
    ))
}

/// A project's name in reports: its root directory's name (`cart_recovery`
/// for `examples/cart_recovery/` or for `.` inside it); for loose files,
/// the name of the directory holding the first.
fn project_name(group: &[PathBuf]) -> String {
    let root = super::run::project_root(group);
    let absolute = root.canonicalize().unwrap_or(root);
    absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| shown_paths(group))
}

/// The project's paths as given on the command line, for people.
fn shown_paths(group: &[PathBuf]) -> String {
    match group {
        [one] => one.display().to_string(),
        many => many
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
    .trim_end_matches(std::path::MAIN_SEPARATOR)
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn projects_are_named_after_their_root_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let shop = dir.path().join("shop");
        std::fs::create_dir_all(&shop).expect("mkdir");
        assert_eq!(project_name(std::slice::from_ref(&shop)), "shop");
        let dotted = shop.join(".");
        assert_eq!(project_name(&[dotted]), "shop");
        let file = shop.join("a.flow");
        std::fs::write(&file, "").expect("write");
        assert_eq!(project_name(&[file]), "shop");
    }

    #[test]
    fn shown_paths_are_the_paths_given() {
        assert_eq!(
            shown_paths(&[PathBuf::from("examples/newsletter/")]),
            "examples/newsletter"
        );
        assert_eq!(
            shown_paths(&[Path::new("a.flow").into(), Path::new("b.flow").into()]),
            "a.flow, b.flow"
        );
    }
}
