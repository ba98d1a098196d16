//! Printing results: for people (a line per test, then each failure with
//! the expected and actual decisions and the customer's timeline) and as
//! JUnit XML for CI systems.

use std::fmt::Write;
use std::time::Duration;

use crate::TestResult;

/// The results of one project's tests.
#[derive(Clone, Debug)]
pub struct Suite {
    /// The project's name (its root directory's name).
    pub name: String,
    /// Its tests' results, in source order.
    pub results: Vec<TestResult>,
    /// Why none of its tests ran (the project does not compile: the
    /// diagnostics as plain text); reported as one failing case.
    pub not_run: Option<String>,
}

/// The name of the case that stands for a project that does not compile.
pub const COMPILE_CASE: &str = "the project compiles";

/// One line per test: `ok` or `FAIL` and its name.
pub fn summary_lines(suite: &Suite) -> String {
    let mut out = String::new();
    if suite.not_run.is_some() {
        let _ = writeln!(out, "  FAIL {COMPILE_CASE}");
    }
    for r in &suite.results {
        let mark = if r.passed() { "ok  " } else { "FAIL" };
        let _ = writeln!(out, "  {mark} {}", r.name);
    }
    out
}

/// The failures of one test, for people: each expectation that did not
/// hold (`-` what the test expected, `+` what happened), then the
/// timelines of the customers concerned.
pub fn failure_text(r: &TestResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "--- {} ({}:{})", r.name, r.file, r.line);
    for f in &r.failures {
        let _ = writeln!(out, "  line {}:", f.line);
        let _ = writeln!(out, "  - expected: {}", f.expected);
        for (i, a) in f.actual.iter().enumerate() {
            let head = if i == 0 { "+ actual:  " } else { "           " };
            let _ = writeln!(out, "  {head} {a}");
        }
    }
    // Several expectations often concern one customer: show each timeline once.
    let mut shown: Vec<&str> = Vec::new();
    for (customer, lines) in r.failures.iter().flat_map(|f| &f.timelines) {
        if shown.contains(&customer.as_str()) {
            continue;
        }
        shown.push(customer);
        let _ = writeln!(out, "  timeline of {customer}:");
        if lines.is_empty() {
            let _ = writeln!(out, "    (nothing happened)");
        }
        for l in lines {
            let _ = writeln!(out, "    {l}");
        }
    }
    out
}

/// The final line: `N passed, N failed`.
pub fn totals(suites: &[Suite]) -> String {
    let (passed, failed) = counts(suites);
    format!("{passed} passed, {failed} failed")
}

/// Passed and failed cases; a project that does not compile is one failed case.
fn counts(suites: &[Suite]) -> (usize, usize) {
    let all = suites.iter().flat_map(|s| &s.results);
    let passed = all.clone().filter(|r| r.passed()).count();
    let not_run = suites.iter().filter(|s| s.not_run.is_some()).count();
    (passed, all.count() - passed + not_run)
}

/// Seconds with millisecond precision, as JUnit's `time` attributes want.
fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The results as a JUnit XML document: one `testsuite` per project, the
/// project's name as every case's `classname`, a `time` on every case, and
/// a project that does not compile as one failing case.
pub fn junit(suites: &[Suite]) -> String {
    let (passed, failed) = counts(suites);
    let total: Duration = suites
        .iter()
        .flat_map(|s| &s.results)
        .map(|r| r.duration)
        .sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"nudge test\" tests=\"{}\" failures=\"{failed}\" time=\"{}\">",
        passed + failed,
        seconds(total)
    );
    for s in suites {
        let not_run = usize::from(s.not_run.is_some());
        let failures = s.results.iter().filter(|r| !r.passed()).count() + not_run;
        let time: Duration = s.results.iter().map(|r| r.duration).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{}\">",
            xml(&s.name),
            s.results.len() + not_run,
            seconds(time)
        );
        if let Some(why) = &s.not_run {
            let _ = writeln!(
                out,
                "    <testcase name=\"{COMPILE_CASE}\" classname=\"{}\" time=\"0.000\">",
                xml(&s.name)
            );
            let _ = writeln!(
                out,
                "      <failure message=\"the project does not compile; none of its tests ran\" type=\"compile\">{}</failure>",
                xml(why)
            );
            out.push_str("    </testcase>\n");
        }
        for r in &s.results {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\" time=\"{}\"",
                xml(&r.name),
                xml(&s.name),
                xml(&r.file),
                r.line,
                seconds(r.duration)
            );
            if r.passed() {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            let message = r
                .failures
                .first()
                .map(|f| format!("line {}: {}", f.line, f.expected))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "      <failure message=\"{}\">{}</failure>",
                xml(&message),
                xml(&failure_text(r))
            );
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Text escaped for XML attributes and content; characters XML 1.0 cannot
/// hold at all are dropped.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Failure;

    fn suite() -> Suite {
        Suite {
            name: "shop".into(),
            results: vec![
                TestResult {
                    name: "good".into(),
                    file: "shop/tests.flow".into(),
                    line: 1,
                    failures: vec![],
                    duration: Duration::from_millis(12),
                },
                TestResult {
                    name: "bad <one> & \"quoted\"".into(),
                    file: "shop/tests.flow".into(),
                    line: 9,
                    failures: vec![Failure {
                        expected: "expect no send cart_reminder".into(),
                        line: 14,
                        actual: vec!["cart_reminder was sent to u1 at 2026-01-05T11:00:00Z".into()],
                        timelines: vec![(
                            "u1".into(),
                            vec![
                                "2026-01-05T10:00:00Z  > at 10:00 track u1 checkout_started".into(),
                            ],
                        )],
                    }],
                    duration: Duration::from_millis(2),
                },
            ],
            not_run: None,
        }
    }

    #[test]
    fn failures_show_expected_actual_and_timeline() {
        let s = suite();
        let text = failure_text(&s.results[1]);
        assert!(text.contains("- expected: expect no send cart_reminder"));
        assert!(text.contains("+ actual:   cart_reminder was sent to u1 at 2026-01-05T11:00:00Z"));
        assert!(text.contains("timeline of u1:"));
        assert_eq!(totals(&[s]), "1 passed, 1 failed");
    }

    #[test]
    fn junit_counts_and_escapes() {
        let x = junit(&[suite()]);
        assert!(x.contains(
            "<testsuites name=\"nudge test\" tests=\"2\" failures=\"1\" time=\"0.014\">"
        ));
        assert!(x.contains("name=\"bad &lt;one&gt; &amp; &quot;quoted&quot;\""));
        assert_eq!(x.matches("<failure ").count(), 1);
        assert!(!x.contains("<one>"));
    }

    #[test]
    fn junit_cases_have_times_and_the_project_as_classname() {
        let x = junit(&[suite()]);
        assert_eq!(x.matches("<testcase ").count(), 2);
        assert_eq!(x.matches("classname=\"shop\"").count(), 2);
        assert!(x.contains("name=\"good\" classname=\"shop\" file=\"shop/tests.flow\" line=\"1\" time=\"0.012\"/>"), "{x}");
        assert!(x.contains("line=\"9\" time=\"0.002\">"), "{x}");
        assert!(
            x.contains(
                "<testsuite name=\"shop\" tests=\"2\" failures=\"1\" errors=\"0\" time=\"0.014\">"
            ),
            "{x}"
        );
    }

    #[test]
    fn a_project_that_does_not_compile_is_a_failing_case() {
        let broken = Suite {
            name: "broken".into(),
            results: vec![],
            not_run: Some("error[E0202]: unknown event `order_complted` & more".into()),
        };
        let x = junit(&[suite(), broken.clone()]);
        assert!(
            x.contains("<testsuites name=\"nudge test\" tests=\"3\" failures=\"2\""),
            "{x}"
        );
        assert!(
            x.contains("<testsuite name=\"broken\" tests=\"1\" failures=\"1\""),
            "{x}"
        );
        assert!(
            x.contains(&format!(
                "<testcase name=\"{COMPILE_CASE}\" classname=\"broken\" time=\"0.000\">"
            )),
            "{x}"
        );
        assert!(
            x.contains("unknown event `order_complted` &amp; more</failure>"),
            "{x}"
        );
        assert_eq!(totals(&[suite(), broken.clone()]), "1 passed, 2 failed");
        assert!(summary_lines(&broken).contains(&format!("FAIL {COMPILE_CASE}")));
    }
}
