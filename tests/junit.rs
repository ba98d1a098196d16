//! `nudge test --junit` through the binary: a project that fails to compile
//! is a failing case, classnames are project names, every case has a time.

use assert_cmd::Command;
use nudge_test_support::{copy_project, example_dir};

#[test]
fn a_project_that_does_not_compile_is_a_failing_case_and_every_case_has_a_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_project(&example_dir("cart_recovery"), &dir.path().join("good"));
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).expect("mkdir");
    std::fs::write(broken.join("nudge.toml"), "").expect("write");
    std::fs::write(
        broken.join("main.flow"),
        "flow f {\n  trigger order_complted\n}\n",
    )
    .expect("write");
    let xml = dir.path().join("junit.xml");

    let out = Command::cargo_bin("nudge")
        .expect("binary")
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .args(["test", ".", "--junit"])
        .arg(&xml)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL the project compiles"), "{stdout}");

    let text = std::fs::read_to_string(&xml).expect("junit written");
    // The broken project is a suite with one failing case.
    assert!(
        text.contains("<testsuite name=\"broken\" tests=\"1\" failures=\"1\""),
        "{text}"
    );
    assert!(
        text.contains("<testcase name=\"the project compiles\" classname=\"broken\""),
        "{text}"
    );
    assert!(text.contains("order_complted"), "{text}");
    // The good one is named after its directory, not the path typed.
    let cases: Vec<&str> = text.split("<testcase ").skip(1).collect();
    assert!(cases.len() >= 3, "{text}");
    for case in &cases {
        let head = case.split('>').next().unwrap_or("");
        assert!(
            head.contains("classname=\"good\"") || head.contains("classname=\"broken\""),
            "{head}"
        );
        let time = head
            .split("time=\"")
            .nth(1)
            .and_then(|t| t.split('"').next())
            .unwrap_or_else(|| panic!("no time in {head}"));
        assert!(time.parse::<f64>().is_ok_and(|t| t >= 0.0), "{head}");
    }
    let tests = cases.len();
    let summary = text.lines().nth(1).unwrap_or("");
    assert!(
        summary.contains(&format!("tests=\"{tests}\" failures=\"1\"")),
        "{summary}"
    );
}
