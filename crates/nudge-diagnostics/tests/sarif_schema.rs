//! The SARIF output validates against the OASIS SARIF 2.1.0 JSON schema
//! (vendored in `tests/fixtures`), with and without a source root, for
//! diagnostics with fixes, labels in other files and faulty spans.

use std::path::Path;

use nudge_diagnostics::codes::{E0201, E0202, E0501, W0005};
use nudge_diagnostics::render::{SarifOptions, sarif};
use nudge_diagnostics::{Diagnostic, Edit, FileId, FileSpan, SourceMap, Span};
use serde_json::Value;

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sarif-schema-2.1.0.json"),
    )
    .expect("the vendored schema");
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles")
}

fn assert_valid(log: &str) {
    let instance: Value = serde_json::from_str(log).expect("valid JSON");
    let errors: Vec<String> = validator()
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{}\n{log}", errors.join("\n"));
}

fn projects() -> Vec<(SourceMap, Vec<Diagnostic>)> {
    let mut shop = SourceMap::new();
    let text = "flow cart {\n  trigger checkout_started\n  exit on order_complted\n}\n";
    let main = shop.add("shop/main.flow", text);
    let events = shop.add("shop/my events.flow", "event order_completed {}\n");
    let at = text.find("order_complted").expect("typo");
    let typo = FileSpan::new(main, Span::new(at, at + 14));
    let shop_diags = vec![
        Diagnostic::new(E0202, typo, "unknown event `order_complted`")
            .with_primary_label("no event has this name")
            .with_label(
                FileSpan::new(events, Span::new(6, 21)),
                "a similar event is declared here",
            )
            .with_help("did you mean `order_completed`?")
            .with_fix(
                "replace with `order_completed`",
                vec![Edit {
                    at: typo,
                    replacement: "order_completed".into(),
                }],
            ),
        Diagnostic::new(W0005, FileSpan::new(main, Span::new(0, 4)), "unused"),
        // A span past the end and a file the map does not hold.
        Diagnostic::new(E0201, FileSpan::new(main, Span::new(900, 901)), "far")
            .with_label(FileSpan::new(FileId(9), Span::new(0, 1)), "elsewhere"),
    ];
    let mut manifest = SourceMap::new();
    let toml = manifest.add("/abs/repo/site/nudge.toml", "[serve]\nlisen = 1\n");
    let manifest_diags = vec![Diagnostic::new(
        E0501,
        FileSpan::new(toml, Span::new(8, 13)),
        "unknown field `lisen`",
    )];
    vec![(shop, shop_diags), (manifest, manifest_diags)]
}

#[test]
fn logs_validate_against_the_sarif_2_1_0_schema() {
    let projects = projects();
    let inputs: Vec<(&SourceMap, &[Diagnostic])> =
        projects.iter().map(|(m, d)| (m, d.as_slice())).collect();
    let rooted = SarifOptions {
        tool_version: "0.1.0",
        source_root: Some(Path::new("/abs/repo")),
        working_dir: Some(Path::new("/abs/repo")),
        category: "nudge",
        help_base: Some("https://docs.example/diagnostics.md"),
    };
    assert_valid(&sarif(&inputs, &rooted));
    assert_valid(&sarif(&inputs, &SarifOptions::default()));
    assert_valid(&sarif(&[], &rooted));
}

#[test]
fn the_schema_refuses_a_broken_log() {
    // The validator really checks: a result without its message is refused.
    let projects = projects();
    let inputs: Vec<(&SourceMap, &[Diagnostic])> =
        projects.iter().map(|(m, d)| (m, d.as_slice())).collect();
    let mut log: Value =
        serde_json::from_str(&sarif(&inputs, &SarifOptions::default())).expect("valid JSON");
    if let Some(result) = log["runs"][0]["results"][0].as_object_mut() {
        result.remove("message");
    }
    log["runs"][0]["originalUriBaseIds"] = Value::String("not an object".into());
    assert!(!validator().is_valid(&log));
}
