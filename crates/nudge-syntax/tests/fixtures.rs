//! Snapshot tests over the `.flow` files in `tests/fixtures`: valid files must
//! parse without diagnostics, invalid ones must report each error and still
//! yield a tree for everything else.

mod common;

use std::path::Path;

use nudge_syntax::{FileId, parse};

fn fixtures(dir: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .expect("fixture directory exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", root.display());
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&p).expect("fixture is readable");
            (name, text)
        })
        .collect()
}

#[test]
fn valid_fixtures_parse_cleanly() {
    for (name, src) in fixtures("valid") {
        let parsed = parse(FileId(0), &src);
        assert!(
            parsed.diagnostics.is_empty(),
            "{name}.flow:\n{}",
            common::diagnostics(&src, &parsed.diagnostics)
        );
        common::assert_spans_within(&parsed.file, &src);
        insta::assert_snapshot!(format!("valid_{name}"), common::dump(&parsed.file));
    }
}

#[test]
fn invalid_fixtures_report_and_recover() {
    for (name, src) in fixtures("invalid") {
        let parsed = parse(FileId(0), &src);
        assert!(
            !parsed.diagnostics.is_empty(),
            "{name}.flow has no diagnostics"
        );
        common::assert_spans_within(&parsed.file, &src);
        let out = format!(
            "{}\n--- recovered ---\n{}",
            common::diagnostics(&src, &parsed.diagnostics),
            common::dump(&parsed.file)
        );
        insta::assert_snapshot!(format!("invalid_{name}"), out);
    }
}
