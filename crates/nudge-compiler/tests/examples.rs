//! The example projects in `examples/` check without errors.

use nudge_compiler::{Project, check};
use nudge_diagnostics::render;
use nudge_test_support::example_dirs;

#[test]
fn examples_check_cleanly() {
    let mut report = String::new();
    for dir in example_dirs() {
        let Ok(project) = Project::load(std::slice::from_ref(&dir)) else {
            continue;
        };
        let analysis = check(&project);
        let user: Vec<_> = project.user_files().collect();
        let symbols = analysis
            .symbols
            .iter()
            .filter(|s| user.contains(&s.at.file))
            .count();
        assert!(symbols > 0, "{}: no declarations found", dir.display());
        if !analysis.diagnostics.is_empty() {
            report.push_str(&render::human(
                &project.sources,
                &analysis.diagnostics,
                false,
            ));
        }
    }
    assert!(report.is_empty(), "{report}");
}
