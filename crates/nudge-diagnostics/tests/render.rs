//! Output of every renderer for one set of diagnostics that covers labels in
//! two files, non-ASCII text before an error, help, fixes, an empty span at
//! the end of a file and a warning.

use nudge_diagnostics::codes;
use nudge_diagnostics::codes::{E0102, E0201, E0202, W0005};
use nudge_diagnostics::render::{
    FINGERPRINT_KEY, JSON_VERSION, SRCROOT, SarifOptions, human, json, sarif, short, summary_line,
};
use nudge_diagnostics::{Diagnostic, Edit, FileId, FileSpan, SourceMap, Span};
use serde_json::Value;
use std::path::Path;

const RELANCE: &str = "\
// Relance — étape 1
message relance(url: string) {
  channel sms
  text \"Panier enregistré 🛒 : {urll}\"
}

flow cart_recovery {
  trigger checkout_started
  exit on order_complted
  send relance(cart_page)
";

const EVENTS: &str = "\
event order_completed \"Order Completed\" {
  total: money
}

segment vip = profile.total_spent >= $500
";

/// The span of the first occurrence of `needle` after `after` in `text`.
fn find(text: &str, after: &str, needle: &str) -> Span {
    let base = text.find(after).expect("anchor in fixture");
    let start = base + text[base..].find(needle).expect("needle in fixture");
    Span::new(start, start + needle.len())
}

fn fixture() -> (SourceMap, Vec<Diagnostic>) {
    let mut map = SourceMap::new();
    let relance = map.add("flows/relance.flow", RELANCE);
    let events = map.add("flows/events.flow", EVENTS);
    let at = |file: FileId, span: Span| FileSpan::new(file, span);
    let urll = at(relance, find(RELANCE, "{urll", "urll"));
    let complted = at(relance, find(RELANCE, "exit on", "order_complted"));
    let diags = vec![
        Diagnostic::new(E0201, urll, "unknown name `urll`")
            .with_primary_label("not defined")
            .with_label(
                at(relance, find(RELANCE, "relance(", "url")),
                "a parameter with a similar name",
            )
            .with_help("did you mean `url`?")
            .with_fix(
                "replace with `url`",
                vec![Edit {
                    at: urll,
                    replacement: "url".into(),
                }],
            ),
        Diagnostic::new(E0202, complted, "unknown event `order_complted`")
            .with_primary_label("no event has this name")
            .with_label(
                at(events, find(EVENTS, "event", "order_completed")),
                "an event with a similar name is declared here",
            )
            .with_help("did you mean `order_completed`?")
            .with_fix(
                "replace with `order_completed`",
                vec![Edit {
                    at: complted,
                    replacement: "order_completed".into(),
                }],
            ),
        Diagnostic::new(
            E0102,
            at(relance, Span::new(RELANCE.len(), RELANCE.len())),
            "expected `}`, found end of file",
        )
        .with_primary_label("the file ends here")
        .with_label(
            at(relance, find(RELANCE, "flow cart_recovery", "{")),
            "this `{` is never closed",
        ),
        Diagnostic::new(
            W0005,
            at(events, find(EVENTS, "segment", "vip")),
            "segment `vip` is never used",
        )
        .with_primary_label("defined here")
        .with_help("use it in a flow or remove it"),
    ];
    (map, diags)
}

#[test]
fn human_without_color() {
    let (map, diags) = fixture();
    let out = human(&map, &diags, false);
    assert!(
        !out.contains('\x1b'),
        "escape codes in plain output:\n{out}"
    );
    insta::assert_snapshot!(out);
}

#[test]
fn human_with_color_uses_escape_codes_and_same_text() {
    let (map, diags) = fixture();
    let colored = human(&map, &diags, true);
    assert!(colored.contains('\x1b'));
    assert!(colored.contains("unknown event `order_complted`"));
    assert!(colored.contains("did you mean `order_completed`?"));
}

#[test]
fn human_header_and_locations() {
    let (map, diags) = fixture();
    let out = human(&map, &diags, false);
    assert!(out.starts_with("error[E0201]: unknown name `urll`\n"));
    assert!(out.contains("\nerror[E0202]: unknown event `order_complted`\n"));
    assert!(out.contains("\nwarning[W0005]: segment `vip` is never used\n"));
    // Character columns, not byte offsets, in the location lines.
    assert!(out.contains("flows/relance.flow:4:32"), "{out}");
    assert!(out.contains("flows/events.flow:1:7"), "{out}");
    // The end-of-file position is on the empty line after the last newline.
    assert!(out.contains("flows/relance.flow:11:1"), "{out}");
    assert!(out.contains("Help: did you mean `order_completed`?"));
}

#[test]
fn short_is_one_line_per_diagnostic() {
    let (map, diags) = fixture();
    let out = short(&map, &diags);
    assert_eq!(out.lines().count(), diags.len());
    assert!(out.contains("flows/relance.flow:9:11: error[E0202]: unknown event `order_complted`"));
    insta::assert_snapshot!(out);
}

#[test]
fn json_has_positions_and_every_field() {
    let (map, diags) = fixture();
    let out = json(&[(&map, &diags)]);
    assert!(out.ends_with("}\n"));
    let value: Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(value["version"], JSON_VERSION);
    let entries = value["diagnostics"].as_array().expect("an array");
    assert_eq!(entries.len(), 4);

    let first = &entries[0];
    assert_eq!(first["code"], "E0201");
    assert_eq!(first["name"], "unknown-name");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["file"], "flows/relance.flow");
    // `é` and the emoji before `urll` take more bytes than columns.
    let span = find(RELANCE, "{urll", "urll");
    assert_eq!(first["span"]["start"], span.start);
    assert_eq!(first["span"]["end"], span.end);
    assert_eq!(first["start"]["line"], 4);
    assert_eq!(first["start"]["col"], 32);
    assert_eq!(first["end"]["col"], 36);
    assert_eq!(first["labels"][0]["start"]["line"], 2);
    assert_eq!(first["labels"][0]["start"]["col"], 17);
    assert_eq!(first["fix"]["edits"][0]["replacement"], "url");

    let second = &entries[1];
    assert_eq!(second["labels"][0]["file"], "flows/events.flow");
    assert_eq!(second["labels"][0]["start"]["line"], 1);
    assert_eq!(second["labels"][0]["start"]["col"], 7);

    let eof = &entries[2];
    assert_eq!(eof["span"]["start"], RELANCE.len());
    assert_eq!(eof["span"]["end"], RELANCE.len());
    assert_eq!(eof["start"]["line"], 11);
    assert_eq!(eof["start"]["col"], 1);
    assert_eq!(eof["help"], Value::Null);
    assert_eq!(eof["fix"], Value::Null);

    assert_eq!(entries[3]["severity"], "warning");
    insta::assert_snapshot!(out);
}

#[test]
fn sarif_is_a_valid_log_with_rules_and_regions() {
    let (map, diags) = fixture();
    let options = SarifOptions {
        tool_version: "0.1.0",
        source_root: Some(Path::new("/repo")),
        working_dir: Some(Path::new("/repo/shop")),
        category: "nudge",
        help_base: Some("https://docs.example/diagnostics.md"),
    };
    let out = sarif(&[(&map, &diags)], &options);
    let log: Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(log["version"], "2.1.0");
    assert_eq!(
        log["$schema"],
        "https://json.schemastore.org/sarif-2.1.0.json"
    );
    let run = &log["runs"][0];
    assert_eq!(log["runs"].as_array().map(Vec::len), Some(1));
    assert_eq!(run["columnKind"], "unicodeCodePoints");
    assert_eq!(run["tool"]["driver"]["name"], "nudge");
    assert_eq!(run["tool"]["driver"]["version"], "0.1.0");
    assert_eq!(run["automationDetails"]["id"], "nudge/");
    assert_eq!(run["originalUriBaseIds"][SRCROOT]["uri"], "file:///repo/");
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), codes::all().count());
    for (rule, code) in rules.iter().zip(codes::all()) {
        assert_eq!(rule["id"], code.id);
        assert_eq!(rule["shortDescription"]["text"], code.summary);
        let help = rule["help"]["text"].as_str().expect("help text");
        assert!(help.starts_with(code.summary), "{help}");
        assert!(rule["help"]["markdown"].as_str().is_some());
    }
    assert_eq!(
        rules[0]["helpUri"],
        "https://docs.example/diagnostics.md#e0101-invalid-character"
    );

    let results = run["results"].as_array().expect("results");
    assert_eq!(results.len(), 4);
    let first = &results[0];
    assert_eq!(first["ruleId"], "E0201");
    let index = first["ruleIndex"].as_u64().expect("rule index") as usize;
    assert_eq!(rules[index]["id"], "E0201");
    assert_eq!(
        first["message"]["text"],
        "unknown name `urll`\n\ndid you mean `url`?"
    );
    let location = &first["locations"][0]["physicalLocation"];
    // Displayed relative to /repo/shop, so under the root it is shop/….
    assert_eq!(
        location["artifactLocation"]["uri"],
        "shop/flows/relance.flow"
    );
    assert_eq!(location["artifactLocation"]["uriBaseId"], SRCROOT);
    let fingerprints: Vec<&str> = results
        .iter()
        .map(|r| {
            r["partialFingerprints"][FINGERPRINT_KEY]
                .as_str()
                .expect("fingerprint")
        })
        .collect();
    let mut unique = fingerprints.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), fingerprints.len(), "{fingerprints:?}");
    let region = &location["region"];
    let span = find(RELANCE, "{urll", "urll");
    assert_eq!(region["startLine"], 4);
    assert_eq!(region["startColumn"], 32);
    assert_eq!(region["endLine"], 4);
    assert_eq!(region["endColumn"], 36);
    assert_eq!(region["byteOffset"], span.start);
    assert_eq!(region["byteLength"], 4);
    assert_eq!(
        first["relatedLocations"][0]["message"]["text"],
        "a parameter with a similar name"
    );
    let replacement = &first["fixes"][0]["artifactChanges"][0]["replacements"][0];
    assert_eq!(replacement["deletedRegion"]["byteOffset"], span.start);
    assert_eq!(replacement["insertedContent"]["text"], "url");

    assert_eq!(results[3]["level"], "warning");
    assert!(results[2].get("fixes").is_none());
    insta::assert_snapshot!(out);
}

#[test]
fn summary_counts_the_fixture() {
    let (_, diags) = fixture();
    assert_eq!(summary_line(&diags).as_deref(), Some("3 errors, 1 warning"));
}

#[test]
fn faulty_spans_and_unknown_files_render_without_panicking() {
    let mut map = SourceMap::new();
    let file = map.add("a.flow", "é");
    let diags = vec![
        // Inside the two-byte `é`, and past the end of the file.
        Diagnostic::new(E0201, FileSpan::new(file, Span::new(1, 40)), "bad span")
            .with_label(FileSpan::new(FileId(9), Span::new(0, 1)), "elsewhere"),
        Diagnostic::new(E0201, FileSpan::new(FileId(7), Span::new(3, 2)), "no file")
            .with_help("still shown"),
    ];
    let plain = human(&map, &diags, false);
    assert!(plain.contains("error[E0201]: bad span"));
    assert!(plain.contains("a.flow:1:1"));
    assert!(plain.contains("error[E0201]: no file\n  = help: still shown\n"));
    assert_eq!(short(&map, &diags).lines().count(), 2);
    let doc: Value = serde_json::from_str(&json(&[(&map, &diags)])).expect("valid JSON");
    let entries = &doc["diagnostics"];
    assert_eq!(entries[0]["span"]["start"], 0);
    assert_eq!(entries[0]["span"]["end"], 2);
    assert_eq!(entries[1]["file"], "<unknown file 7>");
    let out = sarif(&[(&map, &diags)], &SarifOptions::default());
    let log: Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(log["runs"][0]["results"].as_array().map(Vec::len), Some(2));
}

#[test]
fn empty_input_gives_empty_output() {
    let map = SourceMap::new();
    assert_eq!(human(&map, &[], false), "");
    assert_eq!(short(&map, &[]), "");
    let doc: Value = serde_json::from_str(&json(&[(&map, &[])])).expect("valid JSON");
    assert_eq!(doc["diagnostics"], Value::Array(vec![]));
    let log: Value =
        serde_json::from_str(&sarif(&[], &SarifOptions::default())).expect("valid JSON");
    assert_eq!(log["runs"].as_array().map(Vec::len), Some(1));
    assert_eq!(log["runs"][0]["results"], Value::Array(vec![]));
}

#[test]
fn fingerprints_survive_lines_added_above() {
    let (map, diags) = fixture();
    let shifted_text = format!("// a new first line\n{RELANCE}");
    let mut shifted = SourceMap::new();
    let relance = shifted.add("flows/relance.flow", shifted_text.as_str());
    shifted.add("flows/events.flow", EVENTS);
    let moved = vec![Diagnostic::new(
        codes::E0201,
        FileSpan::new(relance, find(&shifted_text, "{urll", "urll")),
        "unknown name `urll`",
    )];
    let print = |map: &SourceMap, diags: &[Diagnostic]| {
        let log: Value = serde_json::from_str(&sarif(&[(map, diags)], &SarifOptions::default()))
            .expect("valid JSON");
        log["runs"][0]["results"][0]["partialFingerprints"][FINGERPRINT_KEY].clone()
    };
    assert_eq!(print(&map, &diags[..1]), print(&shifted, &moved));
    // Another rule on the same line is another finding.
    let mut other = moved.clone();
    other[0].code = codes::E0202;
    assert_ne!(print(&shifted, &moved), print(&shifted, &other));
}

#[test]
fn several_projects_make_one_run() {
    let (map, diags) = fixture();
    let mut second = SourceMap::new();
    let file = second.add("other/main.flow", "flow x {\n");
    let more = vec![Diagnostic::new(
        codes::E0102,
        FileSpan::new(file, Span::new(9, 9)),
        "expected `}`, found end of file",
    )];
    let out = sarif(
        &[(&map, &diags), (&second, &more)],
        &SarifOptions::default(),
    );
    let log: Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(log["runs"].as_array().map(Vec::len), Some(1));
    let results = log["runs"][0]["results"].as_array().expect("results");
    assert_eq!(results.len(), diags.len() + 1);
    assert_eq!(
        results[4]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "other/main.flow"
    );
}
