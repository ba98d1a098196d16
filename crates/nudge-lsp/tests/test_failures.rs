//! The failed expectations kept from test runs: replaced by the next run of
//! the same test, cleared by a pass, shown only on the text they ran on.

use std::path::{Path, PathBuf};

use lsp_types as lsp;
use nudge_lsp::answer::{TestFailures, TestRun};
use nudge_lsp::runner::text_hash;

fn failure(line: u32, message: &str) -> lsp::Diagnostic {
    lsp::Diagnostic {
        range: lsp::Range {
            start: lsp::Position { line, character: 2 },
            end: lsp::Position { line, character: 9 },
        },
        message: message.to_string(),
        ..Default::default()
    }
}

fn run(path: &Path, name: &str, text: &str, diags: Vec<lsp::Diagnostic>) -> TestRun {
    TestRun {
        path: path.to_path_buf(),
        name: name.to_string(),
        text_hash: text_hash(text),
        diagnostics: diags,
    }
}

fn messages(f: &TestFailures, path: &Path, text: &str) -> Vec<String> {
    f.for_file(path, text)
        .into_iter()
        .map(|d| d.message)
        .collect()
}

#[test]
fn failures_follow_the_latest_run_of_each_test_on_the_same_text() {
    let path = PathBuf::from("/p/tests.flow");
    let text = "test \"a\" {}\ntest \"b\" {}\n";
    let mut f = TestFailures::default();
    assert!(f.is_empty());
    f.record(run(&path, "a", text, vec![failure(0, "a failed")]));
    f.record(run(&path, "b", text, vec![failure(1, "b failed")]));
    assert_eq!(messages(&f, &path, text), ["a failed", "b failed"]);
    // Another file, or the same file with another text, shows nothing.
    assert!(messages(&f, Path::new("/p/other.flow"), text).is_empty());
    assert!(messages(&f, &path, "test \"a\" {}\n").is_empty());

    // Run again: its failures replace the earlier ones; a pass clears them.
    f.record(run(&path, "a", text, vec![failure(0, "a failed again")]));
    assert_eq!(messages(&f, &path, text), ["a failed again", "b failed"]);
    f.record(run(&path, "b", text, Vec::new()));
    assert_eq!(messages(&f, &path, text), ["a failed again"]);

    // A run on a new text drops what was kept for the old one.
    let edited = "test \"a\" {}\n\ntest \"b\" {}\n";
    f.record(run(
        &path,
        "b",
        edited,
        vec![failure(2, "b on the new text")],
    ));
    assert_eq!(messages(&f, &path, edited), ["b on the new text"]);
    assert!(messages(&f, &path, text).is_empty());

    // Forgotten once the file's text is no longer the one run, or it is gone.
    let mut kept = f.clone();
    kept.retain(|_| Some(text_hash(edited)));
    assert!(!kept.is_empty());
    f.retain(|_| Some(text_hash(text)));
    assert!(f.is_empty());
    kept.retain(|_| None);
    assert!(kept.is_empty());
}
