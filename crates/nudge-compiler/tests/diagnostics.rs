//! Every diagnostic code has a failing fixture and a fixed one, and the
//! documentation shows both verbatim.

use nudge_compiler::{Project, check};
use nudge_diagnostics::{CODES, render};

fn load(path: &str) -> Project {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Project::from_sources(vec![(path.to_string(), text)])
}

#[test]
fn every_code_has_a_failing_and_a_fixed_fixture() {
    let mut failures = Vec::new();
    for code in CODES {
        let bad = format!("tests/diagnostics/{}.flow", code.id);
        let good = format!("tests/diagnostics/{}.fixed.flow", code.id);
        let project = load(&bad);
        let analysis = check(&project);
        if !analysis.diagnostics.iter().any(|d| d.code == *code) {
            failures.push(format!(
                "{bad} does not produce {}; it produces {:?}",
                code.id,
                analysis
                    .diagnostics
                    .iter()
                    .map(|d| d.code.id)
                    .collect::<Vec<_>>()
            ));
        }
        let rendered = render::human(&project.sources, &analysis.diagnostics, false);
        insta::assert_snapshot!(code.id, rendered);

        let fixed = load(&good);
        let analysis = check(&fixed);
        let left: Vec<_> = analysis
            .diagnostics
            .iter()
            .filter(|d| d.code == *code)
            .map(|d| d.title.clone())
            .collect();
        if !left.is_empty() {
            failures.push(format!("{good} still produces {}: {left:?}", code.id));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fixed_fixtures_have_no_errors() {
    for code in CODES {
        let good = format!("tests/diagnostics/{}.fixed.flow", code.id);
        let analysis = check(&load(&good));
        let errors: Vec<_> = analysis
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| format!("{} {}", d.code, d.title))
            .collect();
        assert!(errors.is_empty(), "{good}: {errors:?}");
    }
}

/// The fenced `flow` blocks of one section of docs/diagnostics.md.
fn doc_examples(doc: &str, code: &str) -> Option<Vec<String>> {
    let start = doc.find(&format!("\n## {code} "))?;
    let rest = &doc[start + 1..];
    let end = rest[3..].find("\n## ").map(|i| i + 3).unwrap_or(rest.len());
    let section = &rest[..end];
    let mut blocks = Vec::new();
    let mut it = section.split("```flow\n");
    it.next();
    for chunk in it {
        if let Some(i) = chunk.find("```") {
            blocks.push(chunk[..i].to_string());
        }
    }
    Some(blocks)
}

#[test]
fn every_code_is_documented_with_its_fixtures() {
    let doc = std::fs::read_to_string("../../docs/diagnostics.md").expect("docs/diagnostics.md");
    for code in CODES {
        let heading = format!("## {} {}", code.id, code.name);
        assert!(
            doc.contains(&heading),
            "docs/diagnostics.md lacks `{heading}`"
        );
        let blocks = doc_examples(&doc, code.id).unwrap_or_default();
        assert_eq!(
            blocks.len(),
            2,
            "{}: expected a failing and a fixed example",
            code.id
        );
        let bad = std::fs::read_to_string(format!("tests/diagnostics/{}.flow", code.id)).unwrap();
        let good =
            std::fs::read_to_string(format!("tests/diagnostics/{}.fixed.flow", code.id)).unwrap();
        assert_eq!(
            blocks[0], bad,
            "{}: the failing example differs from its fixture",
            code.id
        );
        assert_eq!(
            blocks[1], good,
            "{}: the fixed example differs from its fixture",
            code.id
        );
    }
}
