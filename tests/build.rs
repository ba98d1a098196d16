//! End-to-end: `nudge build` writes a bundle and `nudge disasm` lists it.

mod common;
use common::copy_example;

use nudge_test_support::{path_str, text};
use std::process::{Command, Output};

fn nudge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("nudge runs")
}

#[test]
fn build_then_disasm_the_cart_recovery_example() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cart.nudge");
    let built = nudge(&["build", "examples/cart_recovery", "-o", path_str(&out)]);
    assert_eq!(built.status.code(), Some(0), "{}", text(&built.stderr));
    let stdout = text(&built.stdout);
    assert!(stdout.contains("cart_recovery  "), "{stdout}");
    assert!(stdout.contains("built 1 flow into"), "{stdout}");
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..6], b"NUDGE\0");

    // The version printed is the one in the listing.
    let version = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("cart_recovery"))
        .map(str::trim)
        .expect("a line for the flow")
        .to_string();
    assert_eq!(version.len(), 16, "{stdout}");

    let listed = nudge(&["disasm", path_str(&out)]);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    let listing = text(&listed.stdout);
    assert!(listing.starts_with("nudge bundle, format 7"), "{listing}");
    assert!(
        listing.contains(&format!("flow cart_recovery  version {version}")),
        "{listing}"
    );
    assert!(listing.contains("  exit on order_completed"), "{listing}");
    // What the engine keeps of histories: purchases, for the exit rule and the goal.
    assert!(
        listing.contains("\nretention:\n  sends: 7d (caps)\n  products_searched: not kept\n"),
        "{listing}"
    );
    assert!(
        listing.contains(
            "\n  order_completed: while instances live: cart_recovery; goal windows: cart_recovery 5d\n"
        ),
        "{listing}"
    );
    assert!(
        listing.contains("; examples/cart_recovery/cart_recovery.flow:20  first_wait: wait 1h"),
        "{listing}"
    );

    // A second build writes the same bytes.
    let again = dir.path().join("again.nudge");
    let rebuilt = nudge(&["build", "examples/cart_recovery", "-o", path_str(&again)]);
    assert_eq!(rebuilt.status.code(), Some(0));
    assert_eq!(std::fs::read(&again).unwrap(), bytes);
}

#[test]
fn disasm_refuses_files_that_are_not_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.nudge");
    std::fs::write(&junk, b"hello, world").unwrap();
    let out = nudge(&["disasm", path_str(&junk)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a Nudge bundle (bad magic number)"));

    let good = dir.path().join("good.nudge");
    let built = nudge(&["build", "examples/win_back", "-o", path_str(&good)]);
    assert_eq!(built.status.code(), Some(0), "{}", text(&built.stderr));
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.nudge");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = nudge(&["disasm", path_str(&cut)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("truncated at byte"),
        "{}",
        text(&out.stderr)
    );

    let missing = dir.path().join("missing.nudge");
    let out = nudge(&["disasm", path_str(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read"));
}

#[test]
fn build_wants_exactly_one_project() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("all.nudge");
    let out = nudge(&["build", "examples", "-o", path_str(&out_file)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("compiles one project"), "{err}");
    assert!(err.contains("examples/cart_recovery"), "{err}");
    assert!(!out_file.exists());
}

#[test]
fn build_reports_errors_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bad.flow");
    std::fs::write(&src, "flow f {\n  trigger no_such_event\n}\n").unwrap();
    let out_file = dir.path().join("bad.nudge");
    let out = nudge(&["build", path_str(&src), "-o", path_str(&out_file)]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("unknown event `no_such_event`"), "{err}");
    assert!(err.contains("not built"), "{err}");
    assert!(!out_file.exists());
}

#[test]
fn build_against_a_store_reports_instances_that_would_be_stranded() {
    let (tmp, dir) = copy_example("cart_recovery");
    // Two shoppers asleep at `first_wait` when the history ends.
    let events = tmp.path().join("events.jsonl");
    let mut calls = String::new();
    for (user, at) in [
        ("u1", "2026-11-02T12:00:00Z"),
        ("u2", "2026-11-02T12:05:00Z"),
    ] {
        calls.push_str(&format!(
            "{{\"type\":\"identify\",\"userId\":\"{user}\",\"timestamp\":\"{at}\",\"traits\":{{\"email\":\"{user}@example.com\"}}}}\n\
             {{\"type\":\"track\",\"event\":\"Checkout Started\",\"userId\":\"{user}\",\"timestamp\":\"{at}\",\"properties\":{{\"value\":20.0}}}}\n"
        ));
    }
    std::fs::write(&events, calls).unwrap();
    let ran = nudge(&["run", path_str(&dir), "--events", path_str(&events)]);
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    let store = dir.join(".nudge/state.db");
    let bundle = tmp.path().join("b.nudge");
    let build = |extra: &[&str]| {
        let mut args = vec!["build", path_str(&dir), "-o", path_str(&bundle)];
        args.extend_from_slice(&["--against", path_str(&store)]);
        args.extend_from_slice(extra);
        nudge(&args)
    };

    let same = build(&[]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stderr));
    assert!(text(&same.stdout).contains("already runs this code"));

    // Renaming the step they sleep at strands them on the old version.
    let flow = dir.join("cart_recovery.flow");
    let source = std::fs::read_to_string(&flow).unwrap();
    std::fs::write(
        &flow,
        source.replace("first_wait: wait 1h", "hold: wait 1h"),
    )
    .unwrap();
    let renamed = build(&["--deny-stranded"]);
    let out = text(&renamed.stdout);
    assert_eq!(
        renamed.status.code(),
        Some(1),
        "{out}{}",
        text(&renamed.stderr)
    );
    assert!(out.contains("first_wait: 2 instances stay"), "{out}");
    assert!(out.contains("2 instances in flight would stay"), "{out}");
    // Without --deny-stranded it is a report, not a failure.
    assert_eq!(build(&[]).status.code(), Some(0));

    // Keeping the label carries them; the dry run changed nothing.
    std::fs::write(&flow, source.replace("wait 1h", "wait 2h")).unwrap();
    let kept = build(&["--deny-stranded"]);
    let out = text(&kept.stdout);
    assert_eq!(kept.status.code(), Some(0), "{out}");
    assert!(
        out.contains("first_wait: 2 instances carried to first_wait"),
        "{out}"
    );
    assert!(
        text(&build(&[]).stdout).contains("would be"),
        "the store was not deployed to"
    );

    // A new trait and a new event are listed and deploy; the sleepers are
    // carried as before.
    std::fs::write(
        &flow,
        format!(
            "{}\nprofile {{\n  loyalty_tier: string = \"none\"\n}}\nevent review_posted \"Review Posted\" {{\n  stars: int\n}}\n",
            source.replace("wait 1h", "wait 2h")
        ),
    )
    .unwrap();
    let grown = build(&["--deny-stranded"]);
    let out = text(&grown.stdout);
    assert_eq!(grown.status.code(), Some(0), "{out}{}", text(&grown.stderr));
    assert!(out.contains("field added: profile.loyalty_tier"), "{out}");
    assert!(out.contains("schema added: event `review_posted`"), "{out}");
    assert!(
        out.contains("first_wait: 2 instances carried to first_wait"),
        "{out}"
    );

    // A required property stored checkouts lack cannot be deployed.
    std::fs::write(
        &flow,
        format!(
            "{}\nevent checkout_started \"Checkout Started\" {{\n  store_code: string\n}}\n",
            source.replace("wait 1h", "wait 2h")
        ),
    )
    .unwrap();
    let required = build(&[]);
    let err = text(&required.stderr);
    assert_eq!(required.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot be deployed over"), "{err}");
    assert!(
        err.contains("`checkout_started.store_code` is added as required"),
        "{err}"
    );
}
