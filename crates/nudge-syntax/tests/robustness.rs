//! Property tests: the parser never panics, whatever it is given, and every
//! span it produces lies within the source.

mod common;

use nudge_syntax::{FileId, KEYWORDS, parse};
use proptest::prelude::*;

fn check(src: &str) {
    let parsed = parse(FileId(0), src);
    common::assert_spans_within(&parsed.file, src);
    assert!(parsed.file.span.end as usize <= src.len());
    let mut last = 0;
    for d in &parsed.diagnostics {
        let s = d.primary.span;
        assert!(s.start <= s.end && s.end as usize <= src.len(), "{d:?}");
        assert!(s.start >= last, "diagnostics out of order");
        last = s.start;
        for l in &d.labels {
            assert!(l.at.span.start <= l.at.span.end && l.at.span.end as usize <= src.len());
        }
    }
}

/// Pieces of valid syntax, glued together at random.
fn piece() -> impl Strategy<Value = String> {
    const OTHER: &[&str] = &[
        "x",
        "profile",
        "every",
        "at",
        "to",
        "per",
        "once",
        "always",
        "then",
        "skip",
        "defer",
        "hours",
        "add",
        "remove",
        "template",
        "local",
        "after",
        "entering",
        "given",
        "track",
        "expect",
        "no",
        "monday",
        "day",
        "month",
        "u1",
        "42",
        "12.50",
        "$5",
        "50%",
        "1h",
        "30m",
        "2026-12-24",
        "2026-12-18T17:00:00Z",
        "21:00",
        "\"s\"",
        "\"a {x} b\"",
        "\"{",
        "(",
        ")",
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        ".",
        "?.",
        "??",
        "?",
        "=",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "+",
        "-",
        "*",
        "/",
        "%",
        "|",
        "=>",
        "\n",
        "//c\n",
        "'",
        "\\",
    ];
    prop_oneof![
        proptest::sample::select(KEYWORDS).prop_map(str::to_string),
        proptest::sample::select(OTHER).prop_map(str::to_string),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,200}") {
        check(&src);
    }

    #[test]
    fn flow_like_text_never_panics(src in "[a-z{}()\\[\\]\"0-9:.%$ \n=<>?,-]{0,200}") {
        check(&src);
    }

    #[test]
    fn token_soup_never_panics(parts in proptest::collection::vec(piece(), 0..80)) {
        check(&parts.join(" "));
    }

    #[test]
    fn token_soup_inside_a_flow_never_panics(parts in proptest::collection::vec(piece(), 0..60)) {
        check(&format!("flow f {{\n  trigger a\n  {}\n}}\nlet ok = 1", parts.join(" ")));
    }
}
