//! Formats every file in `tests/fixtures/` and checks the output: snapshot,
//! idempotence, syntax tree round trip and comment preservation.

use std::fs;
use std::path::{Path, PathBuf};

use nudge_fmt::{format_source, is_formatted};
use nudge_syntax::{FileId, parse};
use serde_json::Value;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

/// Every fixture as (stem, text), sorted by name.
fn fixtures() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(dir("fixtures"))
        .expect("fixtures directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            (stem, fs::read_to_string(&p).expect("readable fixture"))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures found");
    out
}

fn format_ok(name: &str, src: &str) -> String {
    match format_source(FileId(0), src) {
        Ok(out) => out,
        Err(diags) => panic!("{name}: unexpected parse errors: {diags:#?}"),
    }
}

/// The parser must see declarations in every fixture; otherwise the checks below prove nothing.
fn assert_parses_items(name: &str, src: &str) {
    let parsed = parse(FileId(0), src);
    assert!(
        !parsed.file.items.is_empty(),
        "{name}: the parser returned no items"
    );
}

#[test]
fn fixtures_match_snapshots() {
    for (name, src) in fixtures() {
        assert_parses_items(&name, &src);
        let out = format_ok(&name, &src);
        insta::assert_snapshot!(name.as_str(), out);
    }
}

#[test]
fn formatting_is_idempotent() {
    for (name, src) in fixtures() {
        let once = format_ok(&name, &src);
        let twice = format_ok(&name, &once);
        assert_eq!(once, twice, "{name}: formatting twice changed the text");
        assert_eq!(is_formatted(FileId(0), &once), Ok(true), "{name}");
    }
}

/// The body of an insta `.snap` file: what follows its `---` header.
fn snapshot_body(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("---\n")?;
    let at = rest.find("\n---\n")?;
    Some(&rest[at + 5..])
}

#[test]
fn snapshots_are_already_formatted() {
    let mut seen = 0;
    for entry in fs::read_dir(dir("snapshots")).expect("snapshots directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|x| x != "snap") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("readable snapshot");
        let body = snapshot_body(&text).expect("snapshot header");
        // insta trims the final line break of a snapshot.
        let body = format!("{}\n", body.trim_end_matches('\n'));
        let out = format_ok(&path.display().to_string(), &body);
        assert_eq!(out, body, "{} is not in canonical form", path.display());
        seen += 1;
    }
    assert!(seen >= fixtures().len(), "missing snapshots");
}

/// Removes every span from a serialized syntax tree.
fn strip_spans(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("span");
            for (_, child) in map.iter_mut() {
                if is_span(child) {
                    *child = Value::Null;
                } else {
                    strip_spans(child);
                }
            }
        }
        Value::Array(items) => {
            for child in items.iter_mut() {
                if is_span(child) {
                    *child = Value::Null;
                } else {
                    strip_spans(child);
                }
            }
        }
        _ => {}
    }
}

fn is_span(v: &Value) -> bool {
    match v {
        Value::Object(map) => {
            map.len() == 2
                && map.get("start").is_some_and(Value::is_u64)
                && map.get("end").is_some_and(Value::is_u64)
        }
        _ => false,
    }
}

fn tree(src: &str) -> Value {
    let mut v = serde_json::to_value(parse(FileId(0), src).file).expect("tree serializes");
    strip_spans(&mut v);
    v
}

#[test]
fn formatting_keeps_the_syntax_tree() {
    for (name, src) in fixtures() {
        assert_parses_items(&name, &src);
        let out = format_ok(&name, &src);
        assert_eq!(tree(&src), tree(&out), "{name}: the tree changed");
    }
}

#[test]
fn formatting_keeps_every_comment_in_order() {
    for (name, src) in fixtures() {
        let out = format_ok(&name, &src);
        let texts = |s: &str| -> Vec<String> {
            parse(FileId(0), s)
                .comments
                .into_iter()
                .map(|c| c.text)
                .collect()
        };
        let before = texts(&src);
        assert!(!before.is_empty() || name != "comments");
        assert_eq!(before, texts(&out), "{name}: comments changed");
    }
}

#[test]
fn span_stripping_removes_all_positions() {
    let mut v = serde_json::json!({
        "span": {"start": 1, "end": 2},
        "Text": ["a", {"start": 3, "end": 4}],
        "Day": {"start": 5, "end": 6},
        "value": {"name": "x", "span": {"start": 7, "end": 8}}
    });
    strip_spans(&mut v);
    assert_eq!(
        v,
        serde_json::json!({"Text": ["a", null], "Day": null, "value": {"name": "x"}})
    );
}

#[test]
fn a_file_with_a_syntax_error_is_not_formatted() {
    let src = "let a = 'x'\nlet b =    2\n";
    let diags = format_source(FileId(3), src).expect_err("a lexical error must be reported");
    assert!(!diags.is_empty());
    assert!(diags.iter().all(|d| d.is_error()));
    assert!(diags.iter().all(|d| d.primary.file == FileId(3)));
    assert!(is_formatted(FileId(3), src).is_err());
}

#[test]
fn a_file_with_a_parse_error_is_not_formatted() {
    let src = "flow f {\n  wait\n}\nlet = 3\n";
    let diags = format_source(FileId(0), src).expect_err("a syntax error must be reported");
    assert!(diags.iter().any(|d| d.is_error()));
}

#[test]
fn an_empty_file_stays_empty() {
    assert_eq!(format_source(FileId(0), "").as_deref(), Ok(""));
    assert_eq!(format_source(FileId(0), "\n\n  \n").as_deref(), Ok(""));
}

#[test]
fn a_file_of_comments_keeps_them() {
    let out = format_source(FileId(0), "  // one\n\n\n// two   \n").expect("formats");
    assert_eq!(out, "// one\n\n// two\n");
}

/// Every prefix of every fixture (cut at regular intervals) either is
/// reported as broken or formats idempotently, keeping its tree and comments.
#[test]
fn truncated_fixtures_never_break_the_formatter() {
    let mut formatted = 0;
    for (name, src) in fixtures() {
        let cuts = (0..src.len())
            .step_by(13)
            .filter(|&i| src.is_char_boundary(i));
        for cut in cuts {
            let prefix = &src[..cut];
            let Ok(out) = format_source(FileId(0), prefix) else {
                continue;
            };
            formatted += 1;
            let again = format_ok(&name, &out);
            assert_eq!(out, again, "{name}[..{cut}]: not idempotent");
            assert_eq!(
                tree(prefix),
                tree(&out),
                "{name}[..{cut}]: the tree changed"
            );
            let texts = |s: &str| -> Vec<String> {
                parse(FileId(0), s)
                    .comments
                    .into_iter()
                    .map(|c| c.text)
                    .collect()
            };
            assert_eq!(
                texts(prefix),
                texts(&out),
                "{name}[..{cut}]: comments changed"
            );
        }
    }
    assert!(formatted > 20, "too few prefixes parsed: {formatted}");
}

#[test]
fn props_break_past_one_hundred_columns() {
    // `  given profile u1 { k: "…" }` is 28 columns plus the string.
    let line = |n: usize| format!("  given profile u1 {{ k: \"{}\" }}", "x".repeat(n));
    let fits = format!("test \"w\" {{\n{}\n}}\n", line(100 - 28));
    assert_eq!(line(100 - 28).chars().count(), 100);
    assert_eq!(format_ok("fits", &fits), fits);
    let long = format!("test \"w\" {{\n{}\n}}\n", line(101 - 28));
    let expected = format!(
        "test \"w\" {{\n  given profile u1 {{\n    k: \"{}\"\n  }}\n}}\n",
        "x".repeat(101 - 28)
    );
    assert_eq!(format_ok("long", &long), expected);
}

#[test]
fn blank_lines_inside_blocks_collapse_and_never_lead_or_trail() {
    let src = "flow f {\n\n\n  wait 1h\n\n\n\n  wait 2h\n\n}\n";
    assert_eq!(
        format_ok("blank", src),
        "flow f {\n  wait 1h\n\n  wait 2h\n}\n"
    );
}

#[test]
fn a_comment_inside_an_expression_moves_before_its_statement() {
    let src = "flow f {\n  wait 1h\n  exit if a and // why\n    b // done\n}\n";
    let expected = "flow f {\n  wait 1h\n  // why\n  exit if a and b  // done\n}\n";
    assert_eq!(format_ok("inside", src), expected);
}

/// Rewrites `src` with extra whitespace and line breaks between tokens
/// (never inside strings), so the formatter has to rebuild every line.
fn scatter(src: &str) -> String {
    use nudge_syntax::{Token, lex};
    let noise = ["\n\n\n", " ", "\n    ", "  \t", "\n"];
    let mut out = String::new();
    let mut last = 0;
    let mut depth = 0usize;
    for (i, (tok, span)) in lex(FileId(0), src).tokens.iter().enumerate() {
        match tok {
            Token::StrStart => depth += 1,
            Token::StrEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 {
            let end = span.end as usize;
            out.push_str(&src[last..end]);
            out.push_str(noise[i % noise.len()]);
            last = end;
        }
    }
    out.push_str(&src[last..]);
    out
}

#[test]
fn scattered_fixtures_format_to_the_same_tree() {
    for (name, src) in fixtures() {
        let noisy = scatter(&src);
        let out = format_ok(&format!("{name} (scattered)"), &noisy);
        assert_eq!(tree(&src), tree(&out), "{name}: the tree changed");
        assert_eq!(out, format_ok(&name, &out), "{name}: not idempotent");
        let texts = |s: &str| -> Vec<String> {
            parse(FileId(0), s)
                .comments
                .into_iter()
                .map(|c| c.text)
                .collect()
        };
        assert_eq!(texts(&src), texts(&out), "{name}: comments changed");
    }
}

/// Every `.flow` file under `dir`, recursively, as (path, text).
fn flow_files(dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .expect("readable directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            flow_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "flow") {
            let text = fs::read_to_string(&path).expect("readable example");
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn every_example_and_stdlib_file_round_trips() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    flow_files(&root.join("examples"), &mut files);
    flow_files(&root.join("crates/nudge-stdlib/flow"), &mut files);
    assert!(files.len() >= 20, "expected the examples and the stdlib");
    for (name, src) in files {
        assert_parses_items(&name, &src);
        let out = format_ok(&name, &src);
        assert_eq!(out, src, "{name} is not in the canonical layout");
        assert_eq!(tree(&src), tree(&out), "{name}: the tree changed");
        assert_eq!(format_ok(&name, &out), out, "{name}: not idempotent");
    }
}

#[test]
fn named_durations_keep_their_names() {
    let src = "let grace = 3d\nflow f {\n  trigger order_completed\n  goal order_completed   within grace\n\n  wait   grace\n  let d = wait for order_delivered within  grace\n}\n";
    let out = format_ok("named", src);
    assert!(
        out.contains("  goal order_completed within grace\n"),
        "{out}"
    );
    assert!(out.contains("  wait grace\n"), "{out}");
    assert!(
        out.contains("  let d = wait for order_delivered within grace\n"),
        "{out}"
    );
    assert_eq!(format_ok("named again", &out), out);
}

#[test]
fn date_triggers_keep_their_words() {
    for t in [
        "3d before profile.renews_at",
        "on profile.birthday every year at 09:00 grace 1d",
        "7d before profile.birthday every year",
        "90d after profile.last_order_at grace 2d",
    ] {
        let src = format!("flow f {{\n  trigger   {t}\n}}\n");
        let out = format_ok(t, &src);
        assert_eq!(out, format!("flow f {{\n  trigger {t}\n}}\n"));
    }
}
