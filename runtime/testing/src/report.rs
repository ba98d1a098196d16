//! Printing results: for people (a line per test, then each failure with
//! the expected and actual decisions and the customer's timeline) and as
//! JUnit XML for CI systems.

use std::fmt::Write;

use crate::TestResult;

/// The results of one project's tests.
#[derive(Clone, Debug)]
pub struct Suite {
    /// The project, as named on the command line.
    pub name: String,
    /// Its tests' results, in source order.
    pub results: Vec<TestResult>,
}

/// One line per test: `ok` or `FAIL` and its name.
pub fn summary_lines(suite: &Suite) -> String {
    let mut out = String::new();
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

fn counts(suites: &[Suite]) -> (usize, usize) {
    let all = suites.iter().flat_map(|s| &s.results);
    let passed = all.clone().filter(|r| r.passed()).count();
    (passed, all.count() - passed)
}

/// The results as a JUnit XML document: one `testsuite` per project.
pub fn junit(suites: &[Suite]) -> String {
    let (passed, failed) = counts(suites);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"nudge test\" tests=\"{}\" failures=\"{failed}\">",
        passed + failed
    );
    for s in suites {
        let failures = s.results.iter().filter(|r| !r.passed()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">",
            xml(&s.name),
            s.results.len()
        );
        for r in &s.results {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\"",
                xml(&r.name),
                xml(&s.name),
                xml(&r.file),
                r.line
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
                },
            ],
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
        assert!(x.contains("<testsuites name=\"nudge test\" tests=\"2\" failures=\"1\">"));
        assert!(x.contains("name=\"bad &lt;one&gt; &amp; &quot;quoted&quot;\""));
        assert_eq!(x.matches("<failure ").count(), 1);
        assert!(!x.contains("<one>"));
    }
}
