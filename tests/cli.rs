//! End-to-end tests of the `nudge` binary: exit codes, output formats and the
//! example projects, run the way a user runs them.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn nudge() -> Command {
    let mut cmd = Command::cargo_bin("nudge").expect("the nudge binary is built");
    cmd.env("NO_COLOR", "1");
    cmd
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A throwaway project holding the given files.
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("nudge.toml"), "").expect("write manifest");
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write file");
    }
    dir
}

const CLEAN: &str = r#"message thanks(order: order_completed) {
  channel email
  purpose transactional
  subject "Thanks for order {order.order_id}"
  body "We got it."
}

flow thank_you {
  trigger order_completed
  send thanks(trigger)
}
"#;

#[test]
fn clean_project_exits_zero() {
    let dir = project(&[("main.flow", CLEAN)]);
    nudge()
        .arg("check")
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("checked 1 file: no problems"));
}

#[test]
fn missing_path_is_a_usage_error() {
    nudge()
        .args(["check", "/definitely/not/here"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/definitely/not/here"));
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    nudge().arg("frobnicate").assert().code(2);
}

#[test]
fn warnings_fail_only_when_denied() {
    let src = format!("{CLEAN}\nsegment big_spenders = profile.total_spent > $1000\n");
    let dir = project(&[("main.flow", &src)]);
    nudge()
        .arg("check")
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("W0005"));
    nudge()
        .arg("check")
        .arg("--deny-warnings")
        .arg(dir.path())
        .assert()
        .code(1);
}

/// Copies an example project into a temp dir so a test can break it.
fn copy_example(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&examples().join(name), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read example") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// The file and byte offset of the first `exit on order_completed` in a project.
fn find_exit_rule(dir: &Path) -> (PathBuf, usize) {
    let needle = "exit on order_completed";
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "flow") {
            let text = std::fs::read_to_string(&path).expect("read");
            if let Some(at) = text.find(needle) {
                return (path, at + "exit on ".len());
            }
        }
    }
    panic!("no `{needle}` in {}", dir.display());
}

#[test]
fn a_typo_in_an_event_name_is_pinpointed_in_every_format() {
    let dir = copy_example("cart_recovery");
    let (file, offset) = find_exit_rule(dir.path());
    let text = std::fs::read_to_string(&file).expect("read");
    let broken = format!(
        "{}order_complted{}",
        &text[..offset],
        &text[offset + "order_completed".len()..]
    );
    std::fs::write(&file, &broken).expect("write");
    let line = broken[..offset].matches('\n').count() + 1;
    let col = offset - broken[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;
    let name = file.file_name().unwrap().to_string_lossy().to_string();

    nudge()
        .arg("check")
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("error[E0202]"))
        .stdout(predicate::str::contains("order_complted"))
        .stdout(predicate::str::contains("did you mean `order_completed`?"))
        .stdout(predicate::str::contains(format!("{name}:{line}:{col}")));

    nudge()
        .args(["check", "--format", "short"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!("{name}:{line}:{col}")))
        .stdout(predicate::str::contains("E0202"));

    let out = nudge()
        .args(["check", "--format", "json"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let diag = json
        .as_array()
        .expect("an array")
        .iter()
        .find(|d| d["code"] == "E0202")
        .expect("an E0202 entry");
    assert_eq!(diag["span"]["start"], offset);
    assert_eq!(diag["span"]["end"], offset + "order_complted".len());
    assert_eq!(diag["start"]["line"], line);
    assert_eq!(diag["start"]["col"], col);
    assert!(
        diag["help"]
            .as_str()
            .unwrap_or_default()
            .contains("order_completed")
    );

    let out = nudge()
        .args(["check", "--format", "sarif"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid SARIF");
    assert_eq!(sarif["version"], "2.1.0");
    let result = sarif["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["ruleId"] == "E0202")
        .expect("an E0202 result");
    let region = &result["locations"][0]["physicalLocation"]["region"];
    assert_eq!(region["startLine"], line);
    assert_eq!(region["startColumn"], col);
    assert_eq!(region["byteOffset"], offset);
}

#[test]
fn every_example_checks_clean_with_warnings_denied() {
    nudge()
        .args(["check", "--deny-warnings"])
        .arg(examples())
        .assert()
        .success()
        .stdout(predicate::str::contains("no problems"));
}

#[test]
fn every_example_is_formatted() {
    nudge()
        .args(["fmt", "--check"])
        .arg(examples())
        .assert()
        .success();
}

#[test]
fn every_journey_has_an_example_project() {
    for name in [
        "welcome_series",
        "cart_recovery",
        "browse_abandonment",
        "post_purchase",
        "replenishment",
        "win_back",
        "newsletter",
        "shipping_delay_sms",
        "ad_retargeting",
        "seasonal",
    ] {
        let dir = examples().join(name);
        for required in ["README.md", "events.jsonl", "nudge.toml"] {
            assert!(dir.join(required).is_file(), "{name} lacks {required}");
        }
        let events = std::fs::read_to_string(dir.join("events.jsonl")).expect("events");
        for (i, line) in events.lines().enumerate() {
            let call: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}/events.jsonl:{}: {e}", i + 1));
            assert!(
                call["type"].is_string(),
                "{name}/events.jsonl:{} has no type",
                i + 1
            );
            assert!(
                call["timestamp"].is_string(),
                "{name}/events.jsonl:{} has no timestamp",
                i + 1
            );
        }
    }
}

#[test]
fn fmt_rewrites_then_check_passes_and_keeps_comments() {
    let messy = "// greeting\nflow   hello{trigger signed_up   // on sign-up\n  send  welcome( )}\nmessage welcome(){channel email\nsubject \"Hi\" body \"Welcome\"}\n";
    let dir = project(&[("main.flow", messy)]);
    let file = dir.path().join("main.flow");
    nudge()
        .args(["fmt", "--check"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("would reformat"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        messy,
        "--check changes nothing"
    );

    nudge().arg("fmt").arg(dir.path()).assert().success();
    let formatted = std::fs::read_to_string(&file).unwrap();
    assert_ne!(formatted, messy);
    assert!(formatted.contains("// greeting"));
    assert!(formatted.contains("// on sign-up"));
    nudge()
        .args(["fmt", "--check"])
        .arg(dir.path())
        .assert()
        .success();
    nudge().arg("check").arg(dir.path()).assert().success();
}

#[test]
fn fmt_leaves_a_broken_file_alone() {
    let broken = "flow oops {\n  trigger signed_up\n  send (\n}\n";
    let dir = project(&[("main.flow", broken)]);
    nudge()
        .arg("fmt")
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("syntax errors"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("main.flow")).unwrap(),
        broken
    );
}
