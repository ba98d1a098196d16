//! The "Run test" code lens: one per `test` block, running the block with
//! the runner `nudge test` uses.

mod common;

use std::path::{Path, PathBuf};

use nudge_lsp::Snapshot;
use nudge_lsp::runner::{run_test, test_blocks};

fn example(replace: Option<(&str, &str)>) -> (Snapshot, PathBuf) {
    let dir = nudge_test_support::example_dir("ad_retargeting");
    let mut files = Vec::new();
    for name in ["ad_retargeting.flow", "tests.flow"] {
        let mut text = std::fs::read_to_string(dir.join(name)).unwrap();
        if let Some((from, to)) = replace
            && name == "tests.flow"
        {
            assert!(text.contains(from));
            text = text.replacen(from, to, 1);
        }
        files.push((dir.join(name), text));
    }
    let snap = Snapshot::analyse(files, Path::new(common::STDLIB));
    (snap, dir.join("tests.flow"))
}

const FIRST: &str = "a shopper who leaves the cart joins the cart audience";

#[test]
fn every_test_block_gets_a_lens_on_its_header() {
    let (snap, tests) = example(None);
    let file = snap.file_id(&tests).unwrap();
    let blocks = test_blocks(&snap, file);
    let text = snap.text(file);
    assert_eq!(blocks.len(), text.matches("\ntest \"").count() + 1);
    assert_eq!(blocks[0].name, FIRST);
    assert_eq!(&text[blocks[0].header.range()], format!("test \"{FIRST}\""));
    // The flow file has no tests.
    let flow = snap
        .file_id(&tests.with_file_name("ad_retargeting.flow"))
        .unwrap();
    assert!(test_blocks(&snap, flow).is_empty());
}

#[test]
fn running_a_test_reports_a_pass_a_failure_or_why_it_did_not_run() {
    let (snap, tests) = example(None);
    let file = snap.file_id(&tests).unwrap();
    let passed = run_test(&snap, file, FIRST).unwrap();
    assert!(passed.passed, "{passed:?}");
    assert!(
        passed
            .summary
            .starts_with(&format!("test \"{FIRST}\" passed (")),
        "{}",
        passed.summary
    );

    // The expectation turned round: the same runner sees it fail.
    let (snap, tests) = example(Some((
        "expect audience \"cart_abandoners\" has u1",
        "expect no audience \"cart_abandoners\" has u1",
    )));
    let file = snap.file_id(&tests).unwrap();
    let failed = run_test(&snap, file, FIRST).unwrap();
    assert!(!failed.passed);
    assert_eq!(
        failed.failures.iter().map(|f| f.line).collect::<Vec<_>>(),
        [5]
    );
    assert!(
        failed.summary.contains(
            "failed: line 5: `expect no audience \"cart_abandoners\" has u1` does not hold, got "
        ),
        "{}",
        failed.summary
    );
    assert!(
        failed.details.contains("timeline of u1"),
        "{}",
        failed.details
    );

    assert!(
        run_test(&snap, file, "no such test")
            .unwrap_err()
            .contains("there is no test")
    );
    let (snap, tests) = example(Some(("run 2h", "run 2h\n  track")));
    let file = snap.file_id(&tests).unwrap();
    let why = run_test(&snap, file, FIRST).unwrap_err();
    assert!(why.contains("not run: the project has"), "{why}");
}
