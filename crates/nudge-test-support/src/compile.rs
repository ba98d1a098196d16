//! Bundles compiled from inline sources or from the example projects.

use nudge_compiler::Project;
use nudge_compiler::bytecode::Bundle;

use crate::examples::example_dir;

/// Checks and lowers in-memory `(path, text)` sources as one project.
pub fn build(files: &[(&str, &str)]) -> Bundle {
    let project = Project::from_sources(
        files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect(),
    );
    build_project(&project)
}

/// Checks and lowers a loaded project; the panic carries every diagnostic
/// when it does not check, so a failing test shows what to fix.
pub fn build_project(project: &Project) -> Bundle {
    let analysis = nudge_compiler::check(project);
    assert!(
        !analysis.has_errors(),
        "{}",
        nudge_diagnostics::render::short(&project.sources, &analysis.diagnostics)
    );
    match nudge_compiler::lower(project, &analysis) {
        Ok(bundle) => bundle,
        Err(e) => panic!("{}", e.render(&project.sources)),
    }
}

/// The example project `name`, compiled.
pub fn example_bundle(name: &str) -> Bundle {
    let dir = example_dir(name);
    let project = Project::load(std::slice::from_ref(&dir))
        .unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()));
    build_project(&project)
}
