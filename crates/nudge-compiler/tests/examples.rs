//! The example projects in `examples/` check without errors.

use nudge_compiler::{Project, check};
use nudge_diagnostics::render;

#[test]
fn examples_check_cleanly() {
    let Ok(entries) = std::fs::read_dir("../../examples") else {
        return;
    };
    let mut dirs: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut report = String::new();
    for dir in dirs {
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
