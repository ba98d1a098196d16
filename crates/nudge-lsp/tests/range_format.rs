//! Range formatting: only the lines asked for change, and they change as
//! `nudge fmt` changes them.

use nudge_diagnostics::{FileId, Span};
use nudge_lsp::actions::format_range;

const MESSY: &str = "flow   first {\ntrigger order_completed\n      wait 1d\n}\n\nflow second {\n    trigger subscribed\nwait 2h\n}\n";

fn apply(text: &str, edits: &[(Span, String)]) -> String {
    let mut out = text.to_string();
    // Back to front, so earlier spans stay valid.
    for (span, new) in edits.iter().rev() {
        out.replace_range(span.range(), new);
    }
    out
}

fn span_of(text: &str, needle: &str) -> Span {
    let at = text.find(needle).expect("the needle is in the text");
    Span::new(at, at + needle.len())
}

#[test]
fn formatting_a_range_changes_only_the_lines_in_it() {
    let formatted = nudge_fmt::format_source(FileId(0), MESSY).unwrap();
    // The second flow's body only.
    let edits = format_range(MESSY, span_of(MESSY, "    trigger subscribed\nwait 2h"));
    assert_eq!(edits.len(), 1, "{edits:?}");
    let out = apply(MESSY, &edits);
    assert_eq!(
        out,
        "flow   first {\ntrigger order_completed\n      wait 1d\n}\n\nflow second {\n  trigger subscribed\n  wait 2h\n}\n"
    );
    // A cursor on one line (an empty range) takes the whole run of
    // changed lines around it, here the first flow's first three lines.
    let cursor = MESSY.find("wait 1d").unwrap();
    let edits = format_range(MESSY, Span::new(cursor, cursor));
    assert_eq!(
        apply(MESSY, &edits),
        "flow first {\n  trigger order_completed\n  wait 1d\n}\n\nflow second {\n    trigger subscribed\nwait 2h\n}\n"
    );
    // The whole text: exactly what `nudge fmt` writes.
    let edits = format_range(MESSY, Span::new(0, MESSY.len()));
    assert!(edits.len() >= 2, "separate hunks: {edits:?}");
    assert_eq!(apply(MESSY, &edits), formatted);
    // Lines that are already formatted: nothing.
    let clean_start = formatted.find("flow second").unwrap();
    let partly = format!(
        "{}{}",
        &MESSY[..MESSY.find("flow second").unwrap()],
        &formatted[clean_start..]
    );
    assert!(format_range(&partly, span_of(&partly, "  trigger subscribed")).is_empty());
}

#[test]
fn a_file_that_does_not_parse_gets_no_edits() {
    let broken = "flow f {\n      wait\n";
    assert!(format_range(broken, Span::new(0, broken.len())).is_empty());
}
