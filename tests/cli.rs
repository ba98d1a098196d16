//! End-to-end tests of the `nudge` binary: exit codes, output formats and the
//! example projects, run the way a user runs them.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use nudge_test_support::{copy_project, examples_root};
use predicates::prelude::*;

fn nudge() -> Command {
    let mut cmd = Command::cargo_bin("nudge").expect("the nudge binary is built");
    cmd.env("NO_COLOR", "1");
    cmd
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
    copy_project(&examples_root().join(name), dir.path());
    dir
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
    assert_eq!(json["version"], 1);
    let diag = json["diagnostics"]
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
        .arg(examples_root())
        .assert()
        .success()
        .stdout(predicate::str::contains("no problems"));
}

#[test]
fn every_example_is_formatted() {
    nudge()
        .args(["fmt", "--check"])
        .arg(examples_root())
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
        "category_interest",
    ] {
        let dir = examples_root().join(name);
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
fn fmt_of_one_file_touches_only_that_file_of_its_project() {
    let messy = |name: &str| format!("flow   {name} {{\ntrigger signed_up\n      wait 1d\n}}\n");
    let dir = project(&[("a.flow", &messy("a")), ("sub/b.flow", &messy("b"))]);
    let (a, b) = (dir.path().join("a.flow"), dir.path().join("sub/b.flow"));
    nudge()
        .args(["fmt", "--check"])
        .arg(&a)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("a.flow"))
        .stdout(predicate::str::contains("b.flow").not())
        .stderr(predicate::str::contains("1 file would be reformatted"));
    // A folder inside the project: the files below it.
    nudge()
        .args(["fmt", "--check"])
        .arg(dir.path().join("sub"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("b.flow"))
        .stdout(predicate::str::contains("a.flow").not());
    nudge().arg("fmt").arg(&a).assert().success();
    assert_ne!(std::fs::read_to_string(&a).unwrap(), messy("a"));
    assert_eq!(
        std::fs::read_to_string(&b).unwrap(),
        messy("b"),
        "b.flow left alone"
    );
    // The whole project still means every file.
    nudge()
        .args(["fmt", "--check"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("b.flow"))
        .stdout(predicate::str::contains("a.flow").not());
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

/// Breaks `exit on order_completed` in a copy of an example.
fn broken_example(name: &str) -> tempfile::TempDir {
    let dir = copy_example(name);
    let (file, offset) = find_exit_rule(dir.path());
    let text = std::fs::read_to_string(&file).expect("read");
    let broken = format!(
        "{}order_complted{}",
        &text[..offset],
        &text[offset + "order_completed".len()..]
    );
    std::fs::write(&file, broken).expect("write");
    dir
}

#[cfg(unix)]
#[test]
fn a_reader_that_closes_the_pipe_early_ends_the_command_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command as Std, Stdio};

    let binary = assert_cmd::cargo::cargo_bin("nudge");
    // Like `nudge gen … | head -c 100`: far more output than is read.
    let mut child = Std::new(&binary)
        .args(["gen", "--events", "200000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).expect("some output");
    drop(stdout);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{:?}", out.status);
    assert!(
        out.status.success() || out.status.signal() == Some(libc_sigpipe()),
        "{:?}",
        out.status
    );

    // Like `nudge run … | head`: the reader is gone before the summary.
    let dir = copy_example("cart_recovery");
    let mut child = Std::new(&binary)
        .arg("run")
        .arg(dir.path())
        .args(["--in-memory", "--drain"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{:?}", out.status);
}

/// SIGPIPE's number on every Unix this runs on.
#[cfg(unix)]
fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn completions_are_generated_for_the_real_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = nudge().args(["completions", shell]).output().expect("run");
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        for sub in ["check", "run", "serve", "test", "report", "completions"] {
            assert!(text.contains(sub), "{shell} completions lack {sub}");
        }
        assert!(text.contains("deny-warnings"), "{shell}: no flags of check");
    }
    nudge().args(["completions", "tcsh-or-so"]).assert().code(2);
}

#[test]
fn the_man_page_lists_the_real_subcommands() {
    let out = nudge().arg("man").output().expect("run");
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH nudge 1"),
        "{page}"
    );
    assert!(page.contains(".TH nudge 1"));
    for sub in ["check", "run", "serve", "test", "explain"] {
        assert!(page.contains(sub), "the man page lacks {sub}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    nudge()
        .args(["man", "--dir"])
        .arg(dir.path())
        .assert()
        .success();
    let check = std::fs::read_to_string(dir.path().join("nudge-check.1")).expect("nudge-check.1");
    assert!(check.contains("deny\\-warnings"), "{check}");
}

#[test]
fn color_never_and_always_are_obeyed_whatever_the_stream() {
    let dir = broken_example("cart_recovery");
    // NO_COLOR is set by `nudge()`; `always` wins over it and over a pipe.
    let out = nudge()
        .args(["--color", "always", "check"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.contains(&0x1b),
        "no escape codes with --color always"
    );
    for args in [
        vec!["--color", "never", "check"],
        vec!["check", "--color=never"],
    ] {
        let out = nudge()
            .env_remove("NO_COLOR")
            .args(&args)
            .arg(dir.path())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1));
        assert!(!out.stdout.contains(&0x1b), "{args:?}");
        assert!(!out.stderr.contains(&0x1b), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("error[E0202]"));
    }
    // Diagnostics printed on stderr by other commands follow it too.
    let out = nudge()
        .args(["--color", "always", "test"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(out.stderr.contains(&0x1b));
    nudge()
        .args(["--color", "sometimes", "check"])
        .assert()
        .code(2);
}

#[test]
fn a_broken_nudge_toml_is_an_error_with_its_place() {
    let dir = project(&[("main.flow", CLEAN)]);
    std::fs::write(
        dir.path().join("nudge.toml"),
        "[serve]\nlisten = \"127.0.0.1:8080\"\nlisen = \"x\"\n",
    )
    .expect("write");
    nudge()
        .arg("check")
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "error[E0503]: unknown field `lisen`",
        ))
        .stdout(predicate::str::contains("nudge.toml:3:1"))
        .stdout(predicate::str::contains("checked 2 files: 1 error"));
    nudge()
        .args(["check", "--format", "short"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("nudge.toml:3:1: error[E0503]"));

    // A TOML syntax error, placed where the parser stopped.
    std::fs::write(dir.path().join("nudge.toml"), "[store]\npath = \n").expect("write");
    let out = nudge()
        .args(["check", "--format", "json"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let diag = &doc["diagnostics"][0];
    assert_eq!(diag["code"], "E0502");
    assert!(diag["file"].as_str().unwrap_or("").ends_with("nudge.toml"));
    assert_eq!(diag["start"]["line"], 2);

    // A setting checked beyond TOML: an unknown channel.
    std::fs::write(
        dir.path().join("nudge.toml"),
        "# ok so far\n[channels.fax]\nplugin = \"stdout\"\n",
    )
    .expect("write");
    nudge()
        .arg("check")
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("unknown channel"))
        .stdout(predicate::str::contains("nudge.toml:2:1"));
}

#[test]
fn an_unknown_section_is_refused_by_check_and_run_alike() {
    let dir = project(&[("main.flow", CLEAN)]);
    std::fs::write(
        dir.path().join("nudge.toml"),
        "[runtime]\n\n[stroe]\npath = \"x\"\n",
    )
    .expect("write");
    nudge()
        .args(["check", "--format", "short"])
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "nudge.toml:3:2: error[E0503]: unknown section `stroe`",
        ));
    nudge()
        .args(["run", "--in-memory"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error[E0503]: unknown section `stroe`",
        ))
        .stderr(predicate::str::contains("did you mean `store`?"));
}

#[test]
fn paths_that_cannot_be_read_are_diagnostics_with_codes() {
    // Outside every project: a missing path inside one means that project.
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nowhere");
    nudge()
        .arg("check")
        .arg(&missing)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error[E0601]: no such file or directory",
        ))
        .stderr(predicate::str::contains(missing.display().to_string()));
    let empty = tempfile::tempdir().expect("temp dir");
    // A project inside installed packages is not one of the user's.
    std::fs::create_dir_all(empty.path().join("node_modules/pkg")).expect("mkdir");
    std::fs::write(empty.path().join("node_modules/pkg/nudge.toml"), "").expect("write");
    std::fs::write(empty.path().join("node_modules/pkg/a.flow"), CLEAN).expect("write");
    nudge()
        .arg("check")
        .arg(empty.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error[E0603]: no .flow files found",
        ));
}

#[test]
fn sarif_has_one_run_for_every_project_with_uris_from_the_repository_root() {
    // Two broken projects below one repository root.
    let repo = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(repo.path().join(".git")).expect("mkdir .git");
    copy_project(
        broken_example("cart_recovery").path(),
        &repo.path().join("shops/a"),
    );
    copy_project(
        broken_example("browse_abandonment").path(),
        &repo.path().join("shops/b"),
    );
    // Run from inside `shops`, so paths as displayed are `a/…` and `b/…`.
    let out = nudge()
        .current_dir(repo.path().join("shops"))
        .args([
            "check",
            ".",
            "--format",
            "sarif",
            "--sarif-category",
            "flows",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).expect("SARIF");
    let runs = log["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "one run per invocation");
    let run = &runs[0];
    assert_eq!(run["automationDetails"]["id"], "flows/");
    let root = repo.path().canonicalize().expect("canonical");
    let base = run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
        .as_str()
        .expect("a base URI");
    assert!(
        base.starts_with("file:///") && base.ends_with('/'),
        "{base}"
    );
    assert!(
        base.trim_end_matches('/')
            .ends_with(&*root.file_name().expect("name").to_string_lossy()),
        "{base}"
    );
    let results = run["results"].as_array().expect("results");
    let uris: Vec<&str> = results
        .iter()
        .map(|r| {
            let at = &r["locations"][0]["physicalLocation"]["artifactLocation"];
            assert_eq!(at["uriBaseId"], "%SRCROOT%");
            at["uri"].as_str().expect("uri")
        })
        .collect();
    assert!(uris.iter().any(|u| u.starts_with("shops/a/")), "{uris:?}");
    assert!(uris.iter().any(|u| u.starts_with("shops/b/")), "{uris:?}");
    for r in results {
        assert!(r["partialFingerprints"]["nudgeFingerprint/v1"].is_string());
    }
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    assert!(rules.iter().all(|r| r["help"]["text"].is_string()));

    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/nudge-diagnostics/tests/fixtures/sarif-schema-2.1.0.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("schema"))
            .expect("schema JSON");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles");
    let errors: Vec<String> = validator.iter_errors(&log).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    // Over the 1 MiB from which a terminal would show the bar.
    let dir = copy_example("cart_recovery");
    let events = dir.path().join("big.jsonl");
    let out = nudge()
        .args(["gen", "--events", "4000"])
        .output()
        .expect("gen");
    assert!(out.status.success());
    assert!(out.stdout.len() > 1 << 20, "{} bytes", out.stdout.len());
    std::fs::write(&events, &out.stdout).expect("write events");
    let out = nudge()
        .arg("run")
        .arg(dir.path())
        .arg("--events")
        .arg(&events)
        .args(["--in-memory", "--drain"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("replaying"), "{stderr}");
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("events applied"));
}
