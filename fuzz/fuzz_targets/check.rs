//! The parser and the checker on any project source: diagnostics, never a
//! panic; a source that checks clean must also lower to a bundle.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|src: &str| {
    // A path in no real folder: templates the source names are not found,
    // and confinement still judges the path.
    let project = nudge_compiler::Project::from_sources(vec![(
        "/nonexistent/fuzz/input.flow".to_string(),
        src.to_string(),
    )]);
    let analysis = nudge_compiler::check(&project);
    if !analysis.has_errors() {
        let _ = nudge_compiler::lower(&project, &analysis);
    }
});
