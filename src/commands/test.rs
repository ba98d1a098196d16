//! `nudge test`: run the `test` blocks of projects on the runtime's virtual
//! clock and report like a test runner.

use std::path::PathBuf;

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
        let name = suite_name(group);
        match test_project(group, args.filter.as_deref()) {
            Ok(results) => {
                let suite = Suite { name, results };
                if !suite.results.is_empty() {
                    println!("{}", suite.name);
                    print!("{}", report::summary_lines(&suite));
                }
                suites.push(suite);
            }
            Err(status) => {
                println!("{name}: not run");
                if status as u8 > worst as u8 {
                    worst = status;
                }
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

/// Compiles one project (diagnostics go to stderr) and runs its tests.
fn test_project(
    group: &[PathBuf],
    filter: Option<&str>,
) -> Result<Vec<nudge_testing::TestResult>, Status> {
    let (project, bundle) = super::compile_project(group)?;
    Ok(nudge_testing::run_tests(&project, &bundle, filter))
}

/// A project's name in reports: its root as given on the command line.
fn suite_name(group: &[PathBuf]) -> String {
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
    fn suite_names_are_the_paths_given() {
        assert_eq!(
            suite_name(&[PathBuf::from("examples/newsletter")]),
            "examples/newsletter"
        );
        assert_eq!(
            suite_name(&[Path::new("a.flow").into(), Path::new("b.flow").into()]),
            "a.flow, b.flow"
        );
    }
}
