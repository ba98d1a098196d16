//! `nudge.toml` checking: every code has a failing and a fixed fixture in
//! `tests/diagnostics/`, which docs/diagnostics.md shows verbatim.

use nudge_diagnostics::codes::{E0501, E0502, E0503, E0504, PROJECT_CODES};
use nudge_diagnostics::{Code, SourceMap, render};
use nudge_project::manifest::{self, RuntimeSection};

/// The codes `manifest::check` reports, each with fixtures.
const CHECKED: [Code; 3] = [E0502, E0503, E0504];

fn fixture(name: &str) -> String {
    let path = format!("tests/diagnostics/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Checks `text` as the manifest `shown`, with the rendering of its problems.
fn check(shown: &str, text: &str) -> (Vec<Code>, String) {
    let mut sources = SourceMap::new();
    let file = sources.add(shown, text);
    let (_, diagnostics) = manifest::check(file, text);
    let rendered = render::human(&sources, &diagnostics, false);
    (diagnostics.iter().map(|d| d.code).collect(), rendered)
}

#[test]
fn every_checked_code_has_a_failing_and_a_fixed_fixture() {
    for code in CHECKED {
        let bad = format!("{}.toml", code.id);
        let (codes, rendered) = check(&bad, &fixture(&bad));
        assert!(codes.contains(&code), "{bad} gives {codes:?}");
        insta::assert_snapshot!(code.id, rendered);
        let good = format!("{}.fixed.toml", code.id);
        let (codes, rendered) = check(&good, &fixture(&good));
        assert!(codes.is_empty(), "{good}:\n{rendered}");
    }
}

/// The fenced `toml` blocks of one section of docs/diagnostics.md.
fn doc_examples(doc: &str, code: &str) -> Vec<String> {
    let Some(start) = doc.find(&format!("\n## {code} ")) else {
        return Vec::new();
    };
    let rest = &doc[start + 1..];
    let end = rest[3..].find("\n#").map_or(rest.len(), |i| i + 3);
    rest[..end]
        .split("```toml\n")
        .skip(1)
        .filter_map(|chunk| chunk.find("```").map(|i| chunk[..i].to_string()))
        .collect()
}

#[test]
fn every_project_code_is_documented_and_checked_ones_with_their_fixtures() {
    let doc = std::fs::read_to_string("../../docs/diagnostics.md").expect("docs/diagnostics.md");
    for code in PROJECT_CODES {
        let heading = format!("## {} {}", code.id, code.name);
        assert!(
            doc.contains(&heading),
            "docs/diagnostics.md lacks `{heading}`"
        );
    }
    for code in CHECKED {
        let blocks = doc_examples(&doc, code.id);
        let fixtures = [
            fixture(&format!("{}.toml", code.id)),
            fixture(&format!("{}.fixed.toml", code.id)),
        ];
        assert_eq!(
            blocks, fixtures,
            "{}: the examples differ from the fixtures",
            code.id
        );
    }
}

#[test]
fn runtime_settings_are_read_and_everything_else_is_left_to_the_host() {
    let text = "[runtime]\nmax_lateness = \"2h\"\nreorder_window = 5\n\n[channels.email]\nplugin = \"anything\"\n";
    let mut sources = SourceMap::new();
    let file = sources.add("nudge.toml", text);
    let (m, diagnostics) = manifest::check(file, text);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(
        m.runtime,
        RuntimeSection {
            max_lateness: Some("2h".into()),
            reorder_window: Some(5),
            ..RuntimeSection::default()
        }
    );
}

#[test]
fn problems_point_at_their_place_and_several_are_reported_at_once() {
    let text = "[runtme]\nx = 1\n[runtime]\nforget_every = true\n[sotre]\n";
    let mut sources = SourceMap::new();
    let file = sources.add("nudge.toml", text);
    let (_, diagnostics) = manifest::check(file, text);
    let found: Vec<(Code, &str, Option<&str>)> = diagnostics
        .iter()
        .map(|d| (d.code, &text[d.primary.span.range()], d.help.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            (E0503, "runtme", Some("did you mean `runtime`?")),
            (E0503, "sotre", Some("did you mean `store`?")),
            (E0504, "true", None),
        ]
    );
}

#[test]
fn a_manifest_is_read_into_the_source_map_or_is_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sources = SourceMap::new();
    assert!(manifest::read(tmp.path(), &mut sources).is_none());
    assert!(sources.is_empty());
    std::fs::write(tmp.path().join("nudge.toml"), "[store]\npath = \"x\"\n").unwrap();
    let found = manifest::read(tmp.path(), &mut sources).expect("read");
    assert!(found.diagnostics.is_empty());
    assert!(sources.get(found.file).path.ends_with("nudge.toml"));
    // A manifest that is a folder cannot be read: said, not a panic.
    let odd = tempfile::tempdir().unwrap();
    std::fs::create_dir(odd.path().join("nudge.toml")).unwrap();
    let found = manifest::read(odd.path(), &mut sources).expect("reported");
    assert_eq!(found.diagnostics[0].code, E0501);
}
